//! The host-key challenge ([docs/fabstir-wire.md §5.1]), both sides: `POST
//! /v1/auth/challenge` lets a client learn the node's public key when the on-chain metadata
//! has none. The node signs ([`Node::answer_challenge`](super::Node::answer_challenge)), the
//! client checks ([`verify_challenge_response`]); the JSON of both is in `wire/side.rs`.
//!
//! Why the checks on the client side: the SDK recovers the key from `(signature, recid)` and
//! pins it to the registered host address; a high-S, a 65-byte, a `0x`-prefixed signature or a
//! `recid` that is not the number 0 or 1 is refused, exactly like the SDK.

use alloc::string::String;

use super::error::NodeError;
use super::wire::side;
use crate::crypto::kdf;
use crate::crypto::secp256k1::{Address, PublicKey, SecretKey};

/// Signs SHA-256 of the 32 challenge bytes (not the hex text, not EIP-191).
pub(crate) fn answer(key: &SecretKey, body: &[u8]) -> Result<String, NodeError> {
    let challenge = side::parse_challenge(body)?;
    let digest = kdf::sha256(&[&challenge]);
    let sig = key.sign_prehash_recoverable(&digest);
    let (rs, v) = sig.split_at(64);
    Ok(side::emit_challenge_response(
        rs,
        v.first().copied().unwrap_or(0),
    ))
}

/// Client side of the host-key challenge: checks a node's response body for `challenge` and
/// returns the recovered host key if its address is `expected`.
///
/// ```
/// use sealwire::session::{verify_challenge_response, Node, NodeConfig, SecretKey};
/// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
/// let node = Node::new(SecretKey::from_bytes(&[7; 32]).unwrap(), NodeConfig::default(), ChaCha20Rng::from_seed([0; 32])).unwrap();
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
) -> Result<PublicKey, NodeError> {
    let (rs, recid) = side::parse_challenge_response(response_body)?;
    let digest = kdf::sha256(&[challenge]);
    let key = PublicKey::recover_from_prehash(&digest, &rs, recid)
        .map_err(|_| NodeError::InvalidSignature)?;
    if key.address() != *expected {
        return Err(NodeError::AddressMismatch);
    }
    Ok(key)
}
