//! Checkpoint deltas ([docs/fabstir-wire.md §5.2]), both sides: the node encrypts a
//! conversation slice to the session's `recoveryPublicKey`; the client decrypts it during
//! recovery. The JSON of the delta and of the published object is in `wire/side.rs`.
//!
//! `x` = x-coordinate of `e·RecoveryPub`, `K` = HKDF-SHA256(SHA-256(x), zero salt,
//! `"checkpoint-delta-encryption-v1"`), XChaCha20-Poly1305 with an empty AAD over the delta as
//! compact JSON with keys sorted at every level. The published object is signed (EIP-191) by
//! the host over the hex of keccak-256(ciphertext); the delta's inner `hostSignature` is the
//! EIP-191 signature of the sorted compact JSON of `messages` itself.

use alloc::string::String;
use alloc::vec::Vec;

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::error::NodeError;
use super::wire::side;
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

/// `0x` ‖ r ‖ s ‖ v (27/28) — EIP-191 `personal_sign` of `text`.
fn personal_sign(key: &SecretKey, text: &[u8]) -> String {
    let sig = key.sign_prehash_recoverable(&eip191_digest(text));
    let mut out = String::with_capacity(132);
    out.push_str("0x");
    let (rs, v) = sig.split_at(64);
    hex::encode_to(rs, &mut out);
    // EIP-191's v is 27 + the recovery id (0 or 1): no overflow.
    hex::encode_to(
        &[27u8.saturating_add(v.first().copied().unwrap_or(0))],
        &mut out,
    );
    out
}

fn derive_key(x: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let s = Zeroizing::new(kdf::sha256(&[x]));
    kdf::hkdf_sha256(&[0u8; 32], &s[..], INFO)
}

pub(crate) fn sign_messages(
    key: &SecretKey,
    messages: &[CheckpointMessage],
) -> Result<String, NodeError> {
    // The reference node signs the sorted compact JSON text itself (checked against
    // checkpoint_delta.json), unlike the outer signature, which signs a hash.
    let json = crate::session::wire::json::exact(&side::MessagesJson(messages));
    Ok(personal_sign(key, json.as_bytes()))
}

pub(crate) fn encrypt<R: rand_core::CryptoRng>(
    host: &SecretKey,
    recovery: &PublicKey,
    delta: &CheckpointDelta,
    rng: &mut R,
) -> Result<String, NodeError> {
    let plain = side::emit_checkpoint_delta(delta);
    let eph = SecretKey::generate(rng);
    let nonce = crate::crypto::random_array::<24, R>(rng);
    let x = eph.ecdh_x(recovery);
    let k = derive_key(&x);
    let ciphertext = aead::xchacha_seal(&k, &nonce, b"", plain.as_bytes());
    let ct_hash = hex::encode(&kdf::keccak256(&ciphertext));
    let host_signature = personal_sign(host, ct_hash.as_bytes());
    Ok(side::PublishedDelta {
        recovery_public_key: recovery,
        ephemeral_public_key: eph.public_key(),
        nonce,
        ciphertext,
        host_signature: &host_signature,
    }
    .emit())
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
/// let mut node = Node::new(SecretKey::from_bytes(&[7; 32]).unwrap(), NodeConfig::default(), ChaCha20Rng::from_seed([0; 32])).unwrap();
/// let user = SecretKey::from_bytes(&[8; 32]).unwrap();
/// let delta = CheckpointDelta { session_id: "1".into(), checkpoint_index: 0, proof_hash: "0xab".into(),
///     start_token: 0, end_token: 10, messages: vec![], host_signature: "0x".into() };
/// let published = node.encrypt_checkpoint_delta(&user.public_key(), &delta).unwrap();
/// assert_eq!(decrypt_checkpoint_delta(&user, &published).unwrap(), delta);
/// ```
pub fn decrypt_checkpoint_delta(
    user_key: &SecretKey,
    published: &str,
) -> Result<CheckpointDelta, NodeError> {
    let (eph, nonce, ct) = side::parse_published_delta(published)?;
    let x = user_key.ecdh_x(&eph);
    let k = derive_key(&x);
    let plain =
        aead::xchacha_open(&k, &nonce, b"", &ct).map_err(|_| NodeError::DecryptionFailed)?;
    side::parse_checkpoint_delta(&plain)
}
