//! The side protocols' JSON ([docs/fabstir-wire.md §5.1, §5.2]), both directions: the
//! host-key challenge body and response, and the checkpoint delta with its published object.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::Deserialize;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::json::{
    exact, parse_object, parse_object_bytes, str_of, u64_of, Field, JsonArray, JsonObject, JsonOut,
    WriteJson,
};
use crate::crypto::hex;
use crate::crypto::secp256k1::PublicKey;
use crate::session::error::NodeError;
use crate::session::{CheckpointDelta, CheckpointMessage};

fn bad(what: &'static str) -> NodeError {
    NodeError::InvalidSideProtocol(what)
}

// ------------------------------------------------------------------- host-key challenge

#[derive(Deserialize)]
struct ChallengeFields<'a> {
    #[serde(borrow)]
    challenge: Option<Field<'a>>,
    #[serde(borrow)]
    signature: Option<Field<'a>>,
    #[serde(borrow)]
    recid: Option<Field<'a>>,
}

/// `{"challenge":"<64 hex>"}` → the 32 challenge bytes.
pub(crate) fn parse_challenge(body: &[u8]) -> Result<[u8; 32], NodeError> {
    let f: ChallengeFields<'_> = parse_object_bytes(body).ok_or(bad("challenge body"))?;
    let text = str_of(&f.challenge).ok_or(bad("challenge"))?;
    hex::decode_array(text).map_err(|_| bad("challenge"))
}

/// `{"signature":"<r ‖ s, 128 hex>","recid":0|1}`.
pub(crate) fn emit_challenge_response(rs: &[u8], recid: u8) -> String {
    let mut out = String::with_capacity(160);
    let mut o = JsonObject::open(&mut out);
    o.hex("signature", "", rs).u64("recid", u64::from(recid));
    o.close();
    out
}

/// A challenge response as the SDK reads it: exactly r ‖ s as 128 hex digits (no `0x`, not
/// 65 bytes) and a numeric `recid` of 0 or 1.
pub(crate) fn parse_challenge_response(body: &str) -> Result<([u8; 64], u8), NodeError> {
    let f: ChallengeFields<'_> = parse_object(body).ok_or(bad("challenge response"))?;
    let sig_hex = str_of(&f.signature).ok_or(bad("signature"))?;
    if sig_hex.len() != 128 || sig_hex.starts_with("0x") || sig_hex.starts_with("0X") {
        return Err(NodeError::InvalidSignature);
    }
    let rs: [u8; 64] = hex::decode_array(sig_hex).map_err(|_| NodeError::InvalidSignature)?;
    match u64_of(&f.recid) {
        Some(r @ (0 | 1)) => Ok((rs, r as u8)),
        _ => Err(NodeError::InvalidSignature),
    }
}

// --------------------------------------------------------------------- checkpoint deltas

/// `messages` as compact JSON with keys sorted at every level (what the inner host
/// signature signs, and part of the delta).
pub(crate) struct MessagesJson<'a>(pub(crate) &'a [CheckpointMessage]);

impl WriteJson for MessagesJson<'_> {
    fn write_json<O: JsonOut + ?Sized>(&self, out: &mut O) {
        let mut list = JsonArray::open(out);
        for m in self.0 {
            let mut o = list.object();
            o.str("content", &m.content);
            if let Some(meta) = &m.metadata {
                // serde_json's map is a BTreeMap here: keys sorted at every level.
                o.map("metadata", meta);
            }
            o.str("role", &m.role).u64("timestamp", m.timestamp);
            o.close();
        }
        list.close();
    }
}

/// The delta's plaintext: compact JSON, keys sorted at every level.
struct DeltaJson<'a>(&'a CheckpointDelta);

impl WriteJson for DeltaJson<'_> {
    fn write_json<O: JsonOut + ?Sized>(&self, out: &mut O) {
        let d = self.0;
        let mut o = JsonObject::open(out);
        o.u64("checkpointIndex", d.checkpoint_index)
            .u64("endToken", d.end_token)
            .str("hostSignature", &d.host_signature)
            .nested("messages", &MessagesJson(&d.messages))
            .str("proofHash", &d.proof_hash)
            .str("sessionId", &d.session_id)
            .u64("startToken", d.start_token);
        o.close();
    }
}

/// The delta's plaintext (a conversation) in wiped storage of exactly its size.
pub(crate) fn emit_checkpoint_delta(d: &CheckpointDelta) -> Zeroizing<String> {
    exact(&DeltaJson(d))
}

/// The published object of a checkpoint delta.
pub(crate) struct PublishedDelta<'a> {
    pub(crate) recovery_public_key: &'a PublicKey,
    pub(crate) ephemeral_public_key: PublicKey,
    pub(crate) nonce: [u8; 24],
    pub(crate) ciphertext: Vec<u8>,
    /// `0x` ‖ r ‖ s ‖ v, EIP-191 over the hex of keccak-256(ciphertext).
    pub(crate) host_signature: &'a str,
}

impl PublishedDelta<'_> {
    pub(crate) fn emit(&self) -> String {
        let mut out =
            String::with_capacity(self.ciphertext.len().saturating_mul(2).saturating_add(400));
        let mut o = JsonObject::open(&mut out);
        o.bool("encrypted", true)
            .u64("version", 1)
            .hex(
                "userRecoveryPubKey",
                "0x",
                &self.recovery_public_key.to_compressed(),
            )
            .hex(
                "ephemeralPublicKey",
                "0x",
                &self.ephemeral_public_key.to_compressed(),
            )
            .hex("nonce", "", &self.nonce)
            .hex("ciphertext", "", &self.ciphertext)
            .str("hostSignature", self.host_signature);
        o.close();
        out
    }
}

/// A published object as the SDK reads it: `encrypted: true`, `version: 1`, the ephemeral
/// key, a 24-byte nonce and the ciphertext (the host signature is not checked, as in the SDK).
pub(crate) fn parse_published_delta(
    published: &str,
) -> Result<(PublicKey, [u8; 24], Vec<u8>), NodeError> {
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
    let eph = PublicKey::from_hex(eph_hex).map_err(|_| NodeError::InvalidPublicKey)?;
    let nonce_hex = o.get("nonce").and_then(Value::as_str).ok_or(bad("nonce"))?;
    let nonce: [u8; 24] = hex::decode_array(nonce_hex).map_err(|_| NodeError::InvalidNonceSize)?;
    let ct_hex = o
        .get("ciphertext")
        .and_then(Value::as_str)
        .ok_or(bad("ciphertext"))?;
    let ct = hex::decode(ct_hex).map_err(|_| NodeError::InvalidHex("ciphertext"))?;
    Ok((eph, nonce, ct))
}

fn get_str(o: &Map<String, Value>, k: &'static str) -> Result<String, NodeError> {
    o.get(k)
        .and_then(Value::as_str)
        .map(ToString::to_string)
        .ok_or(bad(k))
}

fn get_u64(o: &Map<String, Value>, k: &'static str) -> Result<u64, NodeError> {
    o.get(k).and_then(Value::as_u64).ok_or(bad(k))
}

/// The decrypted delta: the seven fields with the right JSON types.
pub(crate) fn parse_checkpoint_delta(plain: &[u8]) -> Result<CheckpointDelta, NodeError> {
    let d: Value = serde_json::from_slice(plain).map_err(|_| bad("delta JSON"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_response_is_serde_json_s_and_reads_back() {
        let rs = [0x5a; 64];
        let text = emit_challenge_response(&rs, 1);
        #[derive(serde::Serialize)]
        struct Response {
            signature: String,
            recid: u8,
        }
        let want = Response {
            signature: hex::encode(&rs),
            recid: 1,
        };
        assert_eq!(text, serde_json::to_string(&want).unwrap());
        assert_eq!(parse_challenge_response(&text), Ok((rs, 1)));
        let body = alloc::format!(r#"{{"challenge":"{}"}}"#, hex::encode(&[3; 32]));
        assert_eq!(parse_challenge(body.as_bytes()), Ok([3; 32]));
    }

    #[test]
    fn the_delta_is_sorted_compact_json_as_serde_json_writes_it() {
        let mut metadata = Map::new();
        metadata.insert("z\"".into(), Value::from(1));
        metadata.insert("a".into(), serde_json::json!({"y": [1, "é"], "b": null}));
        let delta = CheckpointDelta {
            session_id: "1".into(),
            checkpoint_index: 2,
            proof_hash: "0xab".into(),
            start_token: 3,
            end_token: 4,
            messages: alloc::vec![CheckpointMessage {
                role: "user".into(),
                content: "hi \"there\"\n".into(),
                timestamp: 5,
                metadata: Some(metadata.clone()),
            }],
            host_signature: "0xsig".into(),
        };
        // serde_json's map keeps keys sorted: its compact text is the reference.
        let want = serde_json::json!({
            "sessionId": "1", "checkpointIndex": 2, "proofHash": "0xab", "startToken": 3,
            "endToken": 4, "hostSignature": "0xsig",
            "messages": [{"role": "user", "content": "hi \"there\"\n", "timestamp": 5,
                          "metadata": metadata}],
        });
        let text = emit_checkpoint_delta(&delta);
        assert_eq!(*text, want.to_string());
        assert_eq!(parse_checkpoint_delta(text.as_bytes()), Ok(delta));
    }
}
