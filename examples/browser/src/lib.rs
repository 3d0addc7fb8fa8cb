//! sealwire's session [`Client`] in the browser: a wasm-bindgen wrapper that the JS module
//! `www/sealwire.js` drives over a WebSocket. The protocol (frames, keys, checks) is entirely
//! the Rust `Client`; this file only converts arguments and events, and JS only moves frames
//! and times.
//!
//! Randomness comes from the browser's `crypto.getRandomValues` (getrandom's `wasm_js`
//! backend); times are the page's `performance.now()` in milliseconds, passed in by JS.

use js_sys::{Object, Reflect};
use sealwire::session::{
    Client, ClientConfig, ClientEvent, Prompt, PublicKey, SecretKey, SessionParams,
};
use sealwire::time::{Duration, Instant};
use wasm_bindgen::prelude::*;

#[cfg(feature = "bench")]
mod bench;
#[cfg(feature = "bench")]
pub use bench::{bench_session_init, ChunkBench};

/// The browser's `crypto.getRandomValues`, as a `CryptoRng` (panics if it ever fails, which
/// the Web Crypto API does not do for these sizes).
type BrowserRng = rand_core::UnwrapErr<getrandom::SysRng>;

fn browser_rng() -> BrowserRng {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// A page time in milliseconds (`performance.now()`) as the machine's instant.
fn instant(ms: f64) -> Instant {
    if ms.is_finite() && ms > 0.0 {
        Instant::from_nanos((ms * 1e6) as u64)
    } else {
        Instant::ZERO
    }
}

fn js_err(e: impl core::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Generates a fresh client identity key (64 hex digits) from `crypto.getRandomValues`, for a
/// page that wants to keep it (e.g. to be on a node's allow-list).
#[wasm_bindgen(js_name = generateClientKey)]
pub fn generate_client_key() -> String {
    let key = SecretKey::generate(&mut browser_rng());
    let bytes = key.to_bytes();
    let mut s = String::with_capacity(64);
    for b in bytes.expose() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The session client (one WebSocket, one session at a time).
#[wasm_bindgen]
pub struct WasmClient {
    inner: Client<BrowserRng>,
}

#[wasm_bindgen]
impl WasmClient {
    /// A client for the node whose public key is `node_public_key` (hex, 33 or 65 bytes,
    /// optional 0x), with identity `client_key` (64 hex digits) or a fresh random one. The
    /// timeouts (milliseconds) default to the Rust client's: the ack (30 s), the first piece of
    /// an answer (180 s), each later piece (60 s).
    #[wasm_bindgen(constructor)]
    pub fn new(
        node_public_key: &str,
        client_key: Option<String>,
        ack_timeout_ms: Option<f64>,
        first_piece_timeout_ms: Option<f64>,
        piece_timeout_ms: Option<f64>,
    ) -> Result<WasmClient, JsError> {
        let node = PublicKey::from_hex(node_public_key.trim())
            .map_err(|e| js_err(format!("bad node public key: {e}")))?;
        let identity = match client_key {
            Some(k) => SecretKey::from_hex(k.trim()).map_err(|_| js_err("bad client key"))?,
            None => SecretKey::generate(&mut browser_rng()),
        };
        let mut config = ClientConfig::default();
        for (ms, field) in [
            (ack_timeout_ms, &mut config.ack_timeout),
            (first_piece_timeout_ms, &mut config.first_chunk_timeout),
            (piece_timeout_ms, &mut config.chunk_timeout),
        ] {
            if let Some(ms) = ms {
                if !(ms.is_finite() && ms > 0.0) {
                    return Err(js_err(
                        "a timeout must be a positive number of milliseconds",
                    ));
                }
                *field = Duration::from_micros((ms * 1000.0) as u64);
            }
        }
        let inner = Client::new(identity, node, config, browser_rng()).map_err(js_err)?;
        Ok(WasmClient { inner })
    }

    /// This client's address (0x…, checksummed): what a node's allow-list holds.
    pub fn address(&self) -> String {
        self.inner.address().to_string()
    }

    /// Queues `encrypted_session_init`.
    #[wasm_bindgen(js_name = startSession)]
    pub fn start_session(
        &mut self,
        now_ms: f64,
        session_id: String,
        job_id: String,
        chain_id: f64,
        model: String,
    ) -> Result<(), JsError> {
        if !(chain_id.is_finite()
            && chain_id >= 0.0
            && chain_id.fract() == 0.0
            && chain_id < 9.007e15)
        {
            return Err(js_err("chain id must be a non-negative integer"));
        }
        self.inner
            .start_session(
                instant(now_ms),
                SessionParams {
                    session_id,
                    job_id,
                    chain_id: chain_id as u64,
                    model,
                    price_per_token: 0,
                    vector_database: None,
                },
            )
            .map_err(js_err)
    }

    /// Queues an `encrypted_message` with `prompt`; returns its request id.
    #[wasm_bindgen(js_name = sendPrompt)]
    pub fn send_prompt(
        &mut self,
        now_ms: f64,
        prompt: &str,
        model: Option<String>,
    ) -> Result<String, JsError> {
        let p = Prompt {
            model,
            ..Prompt::new(prompt)
        };
        self.inner.send_prompt(instant(now_ms), &p).map_err(js_err)
    }

    /// Asks the node to stop the answer (`stream_cancel`).
    pub fn cancel(&mut self) -> Result<(), JsError> {
        self.inner.cancel().map_err(js_err)
    }

    /// A text frame from the node.
    #[wasm_bindgen(js_name = handleFrame)]
    pub fn handle_frame(&mut self, now_ms: f64, frame: &str) -> Result<(), JsError> {
        self.inner
            .handle_frame(instant(now_ms), frame)
            .map_err(js_err)
    }

    /// Call when the time `pollTimeout` gave has come.
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(&mut self, now_ms: f64) {
        self.inner.handle_timeout(instant(now_ms));
    }

    /// The next frame to send, if any.
    #[wasm_bindgen(js_name = pollTransmit)]
    pub fn poll_transmit(&mut self) -> Option<String> {
        self.inner.poll_transmit()
    }

    /// When to call `handleTimeout` (page milliseconds), if anything is awaited.
    #[wasm_bindgen(js_name = pollTimeout)]
    pub fn poll_timeout(&self) -> Option<f64> {
        self.inner.poll_timeout().map(|t| t.as_nanos() as f64 / 1e6)
    }

    /// The next event as a plain object `{type, ...}`, or `undefined`.
    #[wasm_bindgen(js_name = pollEvent)]
    pub fn poll_event(&mut self) -> JsValue {
        match self.inner.poll_event() {
            Some(e) => event_object(e).into(),
            None => JsValue::UNDEFINED,
        }
    }
}

fn set(o: &Object, k: &str, v: impl Into<JsValue>) {
    // Reflect.set on a plain object cannot fail.
    let _ = Reflect::set(o, &JsValue::from_str(k), &v.into());
}

fn event_object(e: ClientEvent) -> Object {
    let o = Object::new();
    match e {
        ClientEvent::SessionReady => set(&o, "type", "ready"),
        ClientEvent::Chunk {
            text,
            index,
            is_final,
        } => {
            set(&o, "type", "chunk");
            set(&o, "text", text);
            set(&o, "index", index as f64);
            set(&o, "final", is_final);
        }
        ClientEvent::Finished {
            text,
            finish_reason,
            tokens_used,
            authenticated,
        } => {
            set(&o, "type", "finished");
            set(&o, "text", text);
            set(
                &o,
                "finishReason",
                finish_reason.map_or(JsValue::NULL, JsValue::from),
            );
            set(
                &o,
                "tokensUsed",
                tokens_used.map_or(JsValue::NULL, |t| JsValue::from(t as f64)),
            );
            set(&o, "authenticated", authenticated);
        }
        ClientEvent::Truncated { text } => {
            set(&o, "type", "truncated");
            set(&o, "text", text);
        }
        ClientEvent::NodeError { code, message } => {
            set(&o, "type", "nodeError");
            set(&o, "code", code);
            set(&o, "message", message);
        }
        ClientEvent::TimedOut => set(&o, "type", "timeout"),
        ClientEvent::Pong => set(&o, "type", "pong"),
        ClientEvent::AnswerFailed { error } => {
            set(&o, "type", "answerFailed");
            set(&o, "message", error.to_string());
        }
        other => {
            set(&o, "type", "other");
            set(&o, "message", format!("{other:?}"));
        }
    }
    o
}
