//! Checkpoint deltas (§5.2): the node encrypts a conversation slice to the session's
//! `recoveryPublicKey`; the client decrypts it during recovery.
//!
//! `x` = x-coordinate of `e·RecoveryPub`, `K` = HKDF-SHA256(SHA-256(x), zero salt,
//! `"checkpoint-delta-encryption-v1"`), XChaCha20-Poly1305 with an empty AAD over the delta as
//! compact JSON with keys sorted at every level. The published object is signed (EIP-191) by
//! the host over the hex of keccak-256(ciphertext); the delta's inner `hostSignature` is the
//! EIP-191 signature of the sorted compact JSON of `messages` itself.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::error::SessionError;
use super::wire;
use crate::crypto::secp256k1::{eip191_digest, PublicKey, SecretKey};
use crate::crypto::{aead, hex, kdf};

const INFO: &[u8] = b"checkpoint-delta-encryption-v1";

/// One conversation message inside a checkpoint delta. `Debug` hides the text.
#[derive(Clone, PartialEq)]
pub struct CheckpointMessage {
    /// `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
    /// Milliseconds since the epoch.
    pub timestamp: u64,
    /// Optional metadata object (serialised with sorted keys).
    pub metadata: Option<Map<String, Value>>,
}

/// The delta a node publishes per checkpoint. `Debug` hides the conversation.
#[derive(Clone, PartialEq)]
pub struct CheckpointDelta {
    /// Session id (decimal).
    pub session_id: String,
    /// Checkpoint number.
    pub checkpoint_index: u64,
    /// `0x` + hex of the proof hash.
    pub proof_hash: String,
    /// First token of the slice.
    pub start_token: u64,
    /// Last token of the slice.
    pub end_token: u64,
    /// The messages of the slice.
    pub messages: Vec<CheckpointMessage>,
    /// EIP-191 host signature over the messages (see
    /// [`Node::sign_checkpoint_messages`](super::Node::sign_checkpoint_messages)).
    pub host_signature: String,
}

impl core::fmt::Debug for CheckpointMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CheckpointMessage")
            .field("role", &self.role)
            .field("content", &"[redacted]")
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for CheckpointDelta {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CheckpointDelta")
            .field("session_id", &self.session_id)
            .field("checkpoint_index", &self.checkpoint_index)
            .field("start_token", &self.start_token)
            .field("end_token", &self.end_token)
            .field("messages", &self.messages)
            .finish_non_exhaustive()
    }
}

fn push_messages(out: &mut String, messages: &[CheckpointMessage]) -> Result<(), SessionError> {
    out.push('[');
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"content":"#);
        wire::push_json_str(out, &m.content);
        if let Some(meta) = &m.metadata {
            out.push_str(r#","metadata":"#);
            // serde_json's map is a BTreeMap here: keys sorted at every level.
            let text = serde_json::to_string(meta)
                .map_err(|_| SessionError::InvalidSideProtocol("metadata"))?;
            out.push_str(&text);
        }
        out.push_str(r#","role":"#);
        wire::push_json_str(out, &m.role);
        out.push_str(r#","timestamp":"#);
        wire::push_u64(out, m.timestamp);
        out.push('}');
    }
    out.push(']');
    Ok(())
}

/// The sorted compact JSON of a delta (the plaintext).
pub(crate) fn delta_json(d: &CheckpointDelta) -> Result<String, SessionError> {
    let mut out = String::with_capacity(256);
    out.push_str(r#"{"checkpointIndex":"#);
    wire::push_u64(&mut out, d.checkpoint_index);
    out.push_str(r#","endToken":"#);
    wire::push_u64(&mut out, d.end_token);
    out.push_str(r#","hostSignature":"#);
    wire::push_json_str(&mut out, &d.host_signature);
    out.push_str(r#","messages":"#);
    push_messages(&mut out, &d.messages)?;
    out.push_str(r#","proofHash":"#);
    wire::push_json_str(&mut out, &d.proof_hash);
    out.push_str(r#","sessionId":"#);
    wire::push_json_str(&mut out, &d.session_id);
    out.push_str(r#","startToken":"#);
    wire::push_u64(&mut out, d.start_token);
    out.push('}');
    Ok(out)
}

/// `0x` ‖ r ‖ s ‖ v (27/28) — EIP-191 `personal_sign` of `text`.
fn personal_sign(key: &SecretKey, text: &[u8]) -> String {
    let sig = key.sign_prehash_recoverable(&eip191_digest(text));
    let mut out = String::with_capacity(132);
    out.push_str("0x");
    let (rs, v) = sig.split_at(64);
    hex::encode_to(rs, &mut out);
    hex::encode_to(&[27 + v.first().copied().unwrap_or(0)], &mut out);
    out
}

fn derive_key(x: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let s = Zeroizing::new(kdf::sha256(&[x]));
    kdf::hkdf_sha256(&[0u8; 32], &s[..], INFO)
}

pub(crate) fn sign_messages(
    key: &SecretKey,
    messages: &[CheckpointMessage],
) -> Result<String, SessionError> {
    // The reference node signs the sorted compact JSON text itself (checked against
    // checkpoint_delta.json), unlike the outer signature, which signs a hash.
    let mut json = String::new();
    push_messages(&mut json, messages)?;
    Ok(personal_sign(key, json.as_bytes()))
}

pub(crate) fn encrypt<R: rand_core::CryptoRng>(
    host: &SecretKey,
    recovery: &PublicKey,
    delta: &CheckpointDelta,
    rng: &mut R,
) -> Result<String, SessionError> {
    let plain = Zeroizing::new(delta_json(delta)?);
    let eph = SecretKey::generate(rng);
    let nonce = crate::crypto::random_array::<24, R>(rng);
    let x = eph.ecdh_x(recovery);
    let k = derive_key(&x);
    let ct = aead::xchacha_seal(&k, &nonce, b"", plain.as_bytes());
    let ct_hash = hex::encode(&kdf::keccak256(&ct));
    let mut out = String::with_capacity(ct.len() * 2 + 400);
    out.push_str(r#"{"encrypted":true,"version":1,"userRecoveryPubKey":"0x"#);
    hex::encode_to(&recovery.to_compressed(), &mut out);
    out.push_str(r#"","ephemeralPublicKey":"0x"#);
    hex::encode_to(&eph.public_key().to_compressed(), &mut out);
    out.push_str(r#"","nonce":""#);
    hex::encode_to(&nonce, &mut out);
    out.push_str(r#"","ciphertext":""#);
    hex::encode_to(&ct, &mut out);
    out.push_str(r#"","hostSignature":""#);
    out.push_str(&personal_sign(host, ct_hash.as_bytes()));
    out.push_str("\"}");
    Ok(out)
}

fn bad(what: &'static str) -> SessionError {
    SessionError::InvalidSideProtocol(what)
}

fn get_str(o: &Map<String, Value>, k: &'static str) -> Result<String, SessionError> {
    o.get(k)
        .and_then(Value::as_str)
        .map(ToString::to_string)
        .ok_or(bad(k))
}

fn get_u64(o: &Map<String, Value>, k: &'static str) -> Result<u64, SessionError> {
    o.get(k).and_then(Value::as_u64).ok_or(bad(k))
}

/// Client side: decrypts a published checkpoint delta with the session's recovery key.
///
/// Requires `encrypted: true`, `version: 1`, a 24-byte nonce, a valid tag and the seven
/// delta fields with the right JSON types (the host signatures are not verified, as in the
/// SDK).
///
/// ```
/// use sealwire::session::{decrypt_checkpoint_delta, CheckpointDelta, Node, NodeConfig, SecretKey};
/// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
/// let mut node = Node::new(SecretKey::from_bytes(&[7; 32]).unwrap(), NodeConfig::default(), ChaCha20Rng::from_seed([0; 32]));
/// let user = SecretKey::from_bytes(&[8; 32]).unwrap();
/// let delta = CheckpointDelta { session_id: "1".into(), checkpoint_index: 0, proof_hash: "0xab".into(),
///     start_token: 0, end_token: 10, messages: vec![], host_signature: "0x".into() };
/// let published = node.encrypt_checkpoint_delta(&user.public_key(), &delta).unwrap();
/// assert_eq!(decrypt_checkpoint_delta(&user, &published).unwrap(), delta);
/// ```
pub fn decrypt_checkpoint_delta(
    user_key: &SecretKey,
    published: &str,
) -> Result<CheckpointDelta, SessionError> {
    let v: Value = serde_json::from_str(published).map_err(|_| bad("published delta"))?;
    let o = v.as_object().ok_or(bad("published delta"))?;
    if o.get("encrypted") != Some(&Value::Bool(true)) {
        return Err(bad("encrypted"));
    }
    if o.get("version").and_then(Value::as_u64) != Some(1) {
        return Err(bad("version"));
    }
    let eph_hex = o
        .get("ephemeralPublicKey")
        .and_then(Value::as_str)
        .ok_or(bad("ephemeralPublicKey"))?;
    let eph = PublicKey::from_hex(eph_hex).map_err(|_| SessionError::InvalidPublicKey)?;
    let nonce_hex = o.get("nonce").and_then(Value::as_str).ok_or(bad("nonce"))?;
    let nonce: [u8; 24] =
        hex::decode_array(nonce_hex).map_err(|_| SessionError::InvalidNonceSize)?;
    let ct_hex = o
        .get("ciphertext")
        .and_then(Value::as_str)
        .ok_or(bad("ciphertext"))?;
    let ct = hex::decode(ct_hex).map_err(|_| SessionError::InvalidHex("ciphertext"))?;
    let x = user_key.ecdh_x(&eph);
    let k = derive_key(&x);
    let plain =
        aead::xchacha_open(&k, &nonce, b"", &ct).map_err(|_| SessionError::DecryptionFailed)?;
    let d: Value = serde_json::from_slice(&plain).map_err(|_| bad("delta JSON"))?;
    let d = d.as_object().ok_or(bad("delta JSON"))?;
    let msgs = d
        .get("messages")
        .and_then(Value::as_array)
        .ok_or(bad("messages"))?;
    let mut messages = Vec::with_capacity(msgs.len());
    for m in msgs {
        let m = m.as_object().ok_or(bad("messages"))?;
        let metadata = match m.get("metadata") {
            None => None,
            Some(Value::Object(meta)) => Some(meta.clone()),
            Some(_) => return Err(bad("metadata")),
        };
        messages.push(CheckpointMessage {
            role: get_str(m, "role")?,
            content: get_str(m, "content")?,
            timestamp: get_u64(m, "timestamp")?,
            metadata,
        });
    }
    Ok(CheckpointDelta {
        session_id: get_str(d, "sessionId")?,
        checkpoint_index: get_u64(d, "checkpointIndex")?,
        proof_hash: get_str(d, "proofHash")?,
        start_token: get_u64(d, "startToken")?,
        end_token: get_u64(d, "endToken")?,
        messages,
        host_signature: get_str(d, "hostSignature")?,
    })
}
