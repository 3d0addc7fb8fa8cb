//! Helpers shared by the session test files (`session_vectors`, `session_rules`,
//! `session_props`): a replaying RNG, an established node/client pair,
//! and hand-made frames sealed with the chacha20poly1305 crate directly.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sealwire::crypto::hex;
use sealwire::session::*;
use sealwire::time::Instant;
use serde_json::Value;

/// Replays recorded bytes, then continues with a seeded ChaCha20 stream.
pub struct Recorded {
    queue: VecDeque<u8>,
    rest: ChaCha20Rng,
}

impl Recorded {
    pub fn new(prefix: &[u8], seed: u64) -> Self {
        Recorded {
            queue: prefix.iter().copied().collect(),
            rest: ChaCha20Rng::seed_from_u64(seed),
        }
    }
}

impl rand_core::TryRng for Recorded {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for d in dst.iter_mut() {
            *d = match self.queue.pop_front() {
                Some(b) => b,
                None => {
                    let mut one = [0u8; 1];
                    self.rest.fill_bytes(&mut one);
                    one[0]
                }
            };
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for Recorded {}

pub const NODE_KEY: [u8; 32] = [0x11; 32];
pub const CLIENT_KEY: [u8; 32] = [0x22; 32];

pub fn node(config: NodeConfig, seed: u64) -> Node<ChaCha20Rng> {
    Node::new(
        SecretKey::from_bytes(&NODE_KEY).unwrap(),
        config,
        ChaCha20Rng::seed_from_u64(seed),
    )
    .unwrap()
}

pub fn client_address() -> Address {
    SecretKey::from_bytes(&CLIENT_KEY)
        .unwrap()
        .public_key()
        .address()
}

pub fn params(session_id: &str, job_id: &str) -> SessionParams {
    SessionParams {
        session_id: session_id.into(),
        job_id: job_id.into(),
        chain_id: 84532,
        model: "llama".into(),
        price_per_token: 0,
        vector_database: None,
    }
}

/// A client whose first drawn 32 bytes (the session key) are `session_key`.
pub fn client(session_key: [u8; 32], seed: u64) -> Client<Recorded> {
    client_cfg(session_key, seed, ClientConfig::default())
}

pub fn client_cfg(session_key: [u8; 32], seed: u64, cfg: ClientConfig) -> Client<Recorded> {
    Client::new(
        SecretKey::from_bytes(&CLIENT_KEY).unwrap(),
        SecretKey::from_bytes(&NODE_KEY).unwrap().public_key(),
        cfg,
        Recorded::new(&session_key, seed),
    )
    .unwrap()
}

/// The client's init frame for `session_id`/`job_id`, under `session_key`.
pub fn init_frame(session_key: [u8; 32], seed: u64, session_id: &str, job_id: &str) -> String {
    let mut c = client(session_key, seed);
    c.start_session(Instant::ZERO, params(session_id, job_id))
        .unwrap();
    c.poll_transmit().unwrap()
}

/// Drains every transmit for `conn` and returns the frames.
pub fn drain(node: &mut Node<ChaCha20Rng>) -> Vec<String> {
    let mut v = Vec::new();
    while let Some(t) = node.poll_transmit() {
        v.push(t.frame);
    }
    v
}

pub fn events(node: &mut Node<ChaCha20Rng>) -> Vec<NodeEvent> {
    let mut v = Vec::new();
    while let Some(e) = node.poll_event() {
        v.push(e);
    }
    v
}

/// Sends an init and accepts it if the recovered address is the test client's.
pub fn establish(
    node: &mut Node<ChaCha20Rng>,
    now: Instant,
    conn: ConnectionId,
    frame: &str,
) -> Result<(), NodeError> {
    node.handle_frame(now, conn, frame)?;
    for e in events(node) {
        if let NodeEvent::SessionRequested(r) = e {
            if r.client_address == Some(client_address()) {
                node.accept(now, conn, &r.session_id).unwrap();
            } else {
                node.reject(conn, &r.session_id, "no").unwrap();
            }
        }
    }
    Ok(())
}

pub fn error_code(frame: &str) -> Option<String> {
    let v: Value = serde_json::from_str(frame).ok()?;
    if v["type"] == "error" {
        v["code"].as_str().map(String::from)
    } else {
        None
    }
}

/// An `encrypted_message` sealed by hand (independently of sealwire's client).
pub fn message(
    key: &[u8; 32],
    session_id: &str,
    id: &str,
    aad: &[u8],
    inner: &str,
    nonce: [u8; 24],
) -> String {
    let mut buf = inner.as_bytes().to_vec();
    let tag = XChaCha20Poly1305::new(key.into())
        .encrypt_inout_detached(&nonce.into(), aad, buf.as_mut_slice().into())
        .unwrap();
    buf.extend_from_slice(&tag);
    format!(
        r#"{{"type":"encrypted_message","session_id":"{session_id}","id":"{id}","payload":{{"ciphertextHex":"{}","nonceHex":"{}","aadHex":"{}"}},"web_search":false,"max_searches":0,"search_queries":null}}"#,
        hex::encode(&buf),
        hex::encode(&nonce),
        hex::encode(aad)
    )
}

pub fn prompt_json(text: &str) -> String {
    serde_json::json!({"prompt": text, "model": "llama", "max_tokens": 4000, "temperature": 0.7, "stream": true}).to_string()
}

pub fn indexed_message(key: &[u8; 32], session_id: &str, index: u64, text: &str) -> String {
    let mut nonce = [0u8; 24];
    nonce[..8].copy_from_slice(&index.to_le_bytes());
    nonce[8] = text.len() as u8;
    message(
        key,
        session_id,
        &format!("req-{index}"),
        format!("message_{index}").as_bytes(),
        &prompt_json(text),
        nonce,
    )
}

/// XChaCha20-Poly1305 open of `sealed` (ciphertext ‖ tag) with the chacha20poly1305 crate
/// directly, independently of sealwire's wrapper.
pub fn xchacha_open(key: &[u8], nonce: &[u8], aad: &[u8], mut sealed: Vec<u8>) -> Option<Vec<u8>> {
    let tag = sealed.split_off(sealed.len().checked_sub(16)?);
    XChaCha20Poly1305::new_from_slice(key)
        .ok()?
        .decrypt_inout_detached(
            nonce.try_into().ok()?,
            aad,
            sealed.as_mut_slice().into(),
            tag.as_slice().try_into().ok()?,
        )
        .ok()?;
    Some(sealed)
}

/// Opens a node frame's payload with `key` (independent AEAD): (plaintext, AAD).
pub fn open(key: &[u8; 32], frame: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let v: Value = serde_json::from_str(frame).ok()?;
    let p = &v["payload"];
    let nonce = hex::decode(p["nonceHex"].as_str()?).ok()?;
    let aad = hex::decode(p["aadHex"].as_str()?).ok()?;
    let sealed = hex::decode(p["ciphertextHex"].as_str()?).ok()?;
    let plain = xchacha_open(key, &nonce, &aad, sealed)?;
    Some((plain, aad))
}
