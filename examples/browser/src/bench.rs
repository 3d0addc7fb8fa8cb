//! The Rust half of the size-and-speed page (`www/bench.html`): the same client-side work the
//! page times with the noble libraries, driven through the real [`Client`]. JS does the timing
//! (`performance.now()` around these calls); nothing here is used by the session API.

use sealwire::session::{
    Client, ClientConfig, ClientEvent, Node, NodeConfig, NodeEvent, Prompt, PublicKey, SecretKey,
    SessionParams,
};
use sealwire::time::Instant;
use wasm_bindgen::prelude::*;

use crate::{browser_rng, js_err, BrowserRng};

fn params() -> SessionParams {
    SessionParams {
        session_id: "1".into(),
        job_id: "1".into(),
        chain_id: 84532,
        model: "echo".into(),
        price_per_token: 0,
        vector_database: None,
    }
}

/// Runs `n` client-side session inits against `node_public_key` (hex) on one client with the
/// identity key `client_key` (hex): each `start_session` draws a session key, an ephemeral key
/// (public key, ECDH), derives the key (HKDF), seals the init (XChaCha20-Poly1305), signs it
/// (recoverable ECDSA) and writes the frame, which is taken. Returns the total length of the
/// frames (so nothing is optimised away).
#[wasm_bindgen(js_name = benchSessionInit)]
pub fn bench_session_init(node_public_key: &str, client_key: &str, n: u32) -> Result<f64, JsError> {
    let node = PublicKey::from_hex(node_public_key).map_err(js_err)?;
    let identity = SecretKey::from_hex(client_key).map_err(|_| js_err("bad client key"))?;
    let mut client =
        Client::new(identity, node, ClientConfig::default(), browser_rng()).map_err(js_err)?;
    let mut total = 0usize;
    for _ in 0..n {
        client
            .start_session(Instant::ZERO, params())
            .map_err(js_err)?;
        total += client.poll_transmit().map_or(0, |f| f.len());
    }
    Ok(total as f64)
}

/// An established session (client and node in this module) with one answer of `n` sealed
/// chunks waiting: `run` hands them all to the client (what is timed).
#[wasm_bindgen]
pub struct ChunkBench {
    client: Client<BrowserRng>,
    frames: Vec<String>,
}

#[wasm_bindgen]
impl ChunkBench {
    /// Sets up the session and seals `n` chunks of `text` (untimed).
    #[wasm_bindgen(constructor)]
    pub fn new(n: u32, text: &str) -> Result<ChunkBench, JsError> {
        let t = Instant::ZERO;
        let node_key = SecretKey::generate(&mut browser_rng());
        let node_pub = node_key.public_key();
        let mut node = Node::new(node_key, NodeConfig::default(), browser_rng()).map_err(js_err)?;
        let me = SecretKey::generate(&mut browser_rng());
        let mut client =
            Client::new(me, node_pub, ClientConfig::default(), browser_rng()).map_err(js_err)?;
        let conn = node.connect().map_err(js_err)?;
        client.start_session(t, params()).map_err(js_err)?;
        let init = client.poll_transmit().ok_or_else(|| js_err("no init"))?;
        node.handle_frame(t, conn, &init).map_err(js_err)?;
        let Some(NodeEvent::SessionRequested(req)) = node.poll_event() else {
            return Err(js_err("no session request"));
        };
        node.accept(t, conn, &req.session_id).map_err(js_err)?;
        let ack = node.poll_transmit().ok_or_else(|| js_err("no ack"))?;
        client.handle_frame(t, &ack.frame).map_err(js_err)?;
        while client.poll_event().is_some() {}
        let rid = client
            .send_prompt(t, &Prompt::new("bench"))
            .map_err(js_err)?;
        let msg = client.poll_transmit().ok_or_else(|| js_err("no prompt"))?;
        node.handle_frame(t, conn, &msg).map_err(js_err)?;
        while node.poll_event().is_some() {}
        let mut frames = Vec::with_capacity(n as usize);
        for _ in 0..n {
            node.send_chunk(t, conn, "1", &rid, text, false)
                .map_err(js_err)?;
            while let Some(tx) = node.poll_transmit() {
                frames.push(tx.frame);
            }
        }
        Ok(ChunkBench { client, frames })
    }

    /// Opens every chunk (parse, decrypt, order and UTF-8 checks); returns the bytes of text
    /// received, or an error if any chunk failed.
    pub fn run(&mut self) -> Result<f64, JsError> {
        let mut bytes = 0usize;
        for f in &self.frames {
            self.client.handle_frame(Instant::ZERO, f).map_err(js_err)?;
            while let Some(e) = self.client.poll_event() {
                match e {
                    ClientEvent::Chunk { text, .. } => bytes += text.len(),
                    other => return Err(js_err(format!("unexpected event {other:?}"))),
                }
            }
        }
        Ok(bytes as f64)
    }
}
