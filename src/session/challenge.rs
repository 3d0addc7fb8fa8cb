//! Host-key challenge (§5.1): `POST /v1/auth/challenge` lets a client learn the node's public
//! key when the on-chain metadata has none.
//!
//! Why the checks on the client side: the SDK recovers the key from `(signature, recid)` and
//! pins it to the registered host address; a high-S, a 65-byte, a `0x`-prefixed signature or a
//! `recid` that is not the number 0 or 1 is refused, exactly like the SDK.

use alloc::string::String;

use super::error::SessionError;
use super::wire::{self, Field};
use crate::crypto::secp256k1::{Address, PublicKey, SecretKey};
use crate::crypto::{hex, kdf};

#[derive(serde::Deserialize)]
struct ChallengeBody<'a> {
    #[serde(borrow)]
    challenge: Option<Field<'a>>,
}

#[derive(serde::Deserialize)]
struct ChallengeResponse<'a> {
    #[serde(borrow)]
    signature: Option<Field<'a>>,
    #[serde(borrow)]
    recid: Option<Field<'a>>,
}

/// Signs SHA-256 of the 32 challenge bytes (not the hex text, not EIP-191).
pub(crate) fn answer(key: &SecretKey, body: &[u8]) -> Result<String, SessionError> {
    let req: ChallengeBody<'_> = wire::parse_object_bytes(body)
        .ok_or(SessionError::InvalidSideProtocol("challenge body"))?;
    let hex_text = req
        .challenge
        .as_ref()
        .and_then(Field::as_str)
        .ok_or(SessionError::InvalidSideProtocol("challenge"))?;
    let challenge: [u8; 32] =
        hex::decode_array(hex_text).map_err(|_| SessionError::InvalidSideProtocol("challenge"))?;
    let digest = kdf::sha256(&[&challenge]);
    let sig = key.sign_prehash_recoverable(&digest);
    let (rs, v) = sig.split_at(64);
    let mut out = String::with_capacity(160);
    out.push_str(r#"{"signature":""#);
    hex::encode_to(rs, &mut out);
    out.push_str(r#"","recid":"#);
    wire::push_u64(&mut out, u64::from(v.first().copied().unwrap_or(0)));
    out.push('}');
    Ok(out)
}

/// Client side of the host-key challenge: checks a node's response body for `challenge` and
/// returns the recovered host key if its address is `expected`.
///
/// ```
/// use sealwire::session::{verify_challenge_response, Node, NodeConfig, SecretKey};
/// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
/// let node = Node::new(SecretKey::from_bytes(&[7; 32]).unwrap(), NodeConfig::default(), ChaCha20Rng::from_seed([0; 32]));
/// let challenge = [9u8; 32];
/// let body = format!(r#"{{"challenge":"{}"}}"#, sealwire::crypto::hex::encode(&challenge));
/// let response = node.answer_challenge(body.as_bytes()).unwrap();
/// let key = verify_challenge_response(&challenge, &response, &node.address()).unwrap();
/// assert_eq!(key, node.public_key());
/// ```
pub fn verify_challenge_response(
    challenge: &[u8; 32],
    response_body: &str,
    expected: &Address,
) -> Result<PublicKey, SessionError> {
    let resp: ChallengeResponse<'_> = wire::parse_object(response_body)
        .ok_or(SessionError::InvalidSideProtocol("challenge response"))?;
    let sig_hex = resp
        .signature
        .as_ref()
        .and_then(Field::as_str)
        .ok_or(SessionError::InvalidSideProtocol("signature"))?;
    // Exactly r ‖ s as 128 hex digits, no prefix (the SDK refuses 65 bytes and `0x`).
    if sig_hex.len() != 128 || sig_hex.starts_with("0x") || sig_hex.starts_with("0X") {
        return Err(SessionError::InvalidSignature);
    }
    let rs: [u8; 64] = hex::decode_array(sig_hex).map_err(|_| SessionError::InvalidSignature)?;
    let recid = match resp.recid.as_ref().and_then(Field::as_u64) {
        Some(r @ (0 | 1)) => r as u8,
        _ => return Err(SessionError::InvalidSignature),
    };
    let digest = kdf::sha256(&[challenge]);
    let key = PublicKey::recover_from_prehash(&digest, &rs, recid)
        .map_err(|_| SessionError::InvalidSignature)?;
    if key.address() != *expected {
        return Err(SessionError::AddressMismatch);
    }
    Ok(key)
}
