//! The client (SDK) side: what a Rust SDK would link.
//!
//! Frames are byte-identical in form to the SDK's (same keys, key order, compact JSON as
//! `JSON.stringify`, U+2192 raw in `alg`). Where the SDK is lenient the client is strict: chunk
//! AADs must be `chunk_0, chunk_1, …` in order (configurable), an undecryptable chunk fails
//! the answer, chunks must be valid UTF-8, and the prompt never goes into the clear envelope.

use alloc::collections::VecDeque;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

use k256::elliptic_curve::bigint::{NonZero, U256, U384};
use zeroize::Zeroizing;

use super::config::{ChunkAadPolicy, ClientConfig};
use super::error::ClientError;
use super::node::{PromptImage, RESPONSE_FINAL_AAD};
use super::wire::{self, Field, InPayload};
use super::VectorDatabase;
use crate::crypto::aead::{self, TAG_LEN};
use crate::crypto::secp256k1::{Address, PublicKey, SecretKey};
use crate::crypto::{hex, kdf, SecretBytes};
use crate::time::Instant;

mod answer;
use answer::{node_error, NodeFrame};

/// Largest number of undrained events (a node cannot grow the queue without bound).
const MAX_EVENTS: usize = 65_536;

/// `alg` of the init payload, byte for byte (U+2192 raw).
const ALG: &str = "secp256k1-ecdh(ephemeral\u{2192}static)+hkdf(sha256)+xchacha20-poly1305";

/// n − 1 of secp256k1 (noble's `randomPrivateKey` reduces modulo it, then adds 1).
const N_MINUS_1: NonZero<U256> = NonZero::<U256>::from_be_hex(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364140",
);

/// Noble's `randomPrivateKey`: 48 random bytes, `mod (n − 1)`, `+ 1` — a scalar in `1..n`.
fn scalar_from_seed48(seed: &[u8; 48]) -> Zeroizing<[u8; 32]> {
    let wide = U384::from_be_slice(seed);
    let reduced: U256 = wide.rem(&N_MINUS_1).wrapping_add(&U256::ONE);
    let bytes: [u8; 32] = reduced.to_be_bytes().into();
    Zeroizing::new(bytes)
}

/// The session a client opens (envelope ids and the encrypted init's content).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionParams {
    /// Session id (decimal).
    pub session_id: String,
    /// Job id (decimal).
    pub job_id: String,
    /// Chain id.
    pub chain_id: u64,
    /// Model name, passed through.
    pub model: String,
    /// Price per token (the SDK always sends 0).
    pub price_per_token: u64,
    /// Optional RAG database reference.
    pub vector_database: Option<VectorDatabase>,
}

/// One prompt. `Debug` hides the text.
#[derive(Clone)]
pub struct Prompt {
    /// The prompt text.
    pub text: String,
    /// Model (default: the session's).
    pub model: Option<String>,
    /// `max_tokens` (default 4000, the SDK's).
    pub max_tokens: u64,
    /// `temperature` (default 0.7).
    pub temperature: f64,
    /// `thinking` mode.
    pub thinking: Option<String>,
    /// Attached images.
    pub images: Vec<PromptImage>,
    /// Envelope `web_search` (sent in clear, as the SDK does).
    pub web_search: bool,
    /// Envelope `max_searches`.
    pub max_searches: u64,
    /// Search queries — only ever sent *inside* the ciphertext; the envelope says `null`.
    pub search_queries: Vec<String>,
    /// Request id to use (the SDK's is `Date.now()-<base36>`); `None` = derived from `now`
    /// and a counter.
    pub request_id: Option<String>,
}

impl Prompt {
    /// A prompt with the SDK's defaults.
    ///
    /// ```
    /// let p = sealwire::session::Prompt::new("hi");
    /// assert_eq!(p.max_tokens, 4000);
    /// assert!(!format!("{p:?}").contains("hi"));
    /// ```
    pub fn new(text: impl Into<String>) -> Self {
        Prompt {
            text: text.into(),
            model: None,
            max_tokens: 4000,
            temperature: 0.7,
            thinking: None,
            images: Vec::new(),
            web_search: false,
            max_searches: 0,
            search_queries: Vec::new(),
            request_id: None,
        }
    }
}

impl fmt::Debug for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prompt")
            .field("text", &"[redacted]")
            .field("model", &self.model)
            .field("images", &self.images.len())
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

/// What the client tells its application.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// `session_init_ack` arrived: prompts may be sent.
    SessionReady,
    /// One decrypted piece of the answer.
    Chunk {
        /// The text.
        text: String,
        /// Its index in the answer.
        index: u64,
        /// The node marked it final.
        is_final: bool,
    },
    /// The answer is complete (`stream_end`, or the grace period after a final chunk).
    Finished {
        /// The whole answer.
        text: String,
        /// `finish_reason` of `stream_end`.
        finish_reason: Option<String>,
        /// `tokens_used` of `stream_end`.
        tokens_used: Option<u64>,
    },
    /// The node sent an `error` frame (fails the init or the answer).
    NodeError {
        /// The node's code (`TOKEN_LIMIT_EXCEEDED`, ...).
        code: String,
        /// The node's message.
        message: String,
    },
    /// The ack or the next chunk did not come in time.
    TimedOut,
    /// `pong` (heartbeat answer).
    Pong,
    /// The answer failed on the client's checks (undecryptable or reordered chunk, ...).
    AnswerFailed {
        /// Why.
        error: ClientError,
    },
}

impl fmt::Debug for ClientEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientEvent::SessionReady => f.write_str("SessionReady"),
            ClientEvent::Chunk {
                text,
                index,
                is_final,
            } => write!(
                f,
                "Chunk {{ index: {index}, is_final: {is_final}, {} bytes }}",
                text.len()
            ),
            ClientEvent::Finished { text, .. } => write!(f, "Finished({} bytes)", text.len()),
            ClientEvent::NodeError { code, .. } => write!(f, "NodeError({code})"),
            ClientEvent::TimedOut => f.write_str("TimedOut"),
            ClientEvent::Pong => f.write_str("Pong"),
            ClientEvent::AnswerFailed { error } => write!(f, "AnswerFailed({error:?})"),
        }
    }
}

#[derive(Debug)]
enum Phase {
    /// Init sent, waiting for the ack.
    AwaitingAck,
    /// Ready for a prompt.
    Ready,
    /// Receiving an answer.
    Answering,
}

struct Answer {
    request_id: String,
    text: Zeroizing<String>,
    next_index: u64,
    /// A final chunk or `encrypted_response` arrived: resolve after the grace period.
    final_seen: bool,
}

struct ClientSession {
    params: SessionParams,
    key: Option<SecretBytes<32>>,
    user_address: Option<String>,
    next_message: u64,
    phase: Phase,
    answer: Option<Answer>,
    deadline: Option<Instant>,
}

/// The SDK side of the protocol.
///
/// ```
/// use sealwire::session::*;
/// use sealwire::time::Instant;
/// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
///
/// let t = Instant::ZERO;
/// let node_key = SecretKey::from_bytes(&[7; 32]).unwrap();
/// let node_pub = node_key.public_key();
/// let mut node = Node::new(node_key, NodeConfig::default(), ChaCha20Rng::from_seed([1; 32]));
/// let me = SecretKey::from_bytes(&[8; 32]).unwrap();
/// let my_address = me.public_key().address();
/// let mut client = Client::new(me, node_pub, ClientConfig::default(), ChaCha20Rng::from_seed([2; 32]));
/// let conn = node.connect(t).unwrap();
///
/// client.start_session(t, SessionParams { session_id: "1".into(), job_id: "2".into(), chain_id: 84532,
///     model: "m".into(), price_per_token: 0, vector_database: None }).unwrap();
/// node.handle_frame(t, conn, &client.poll_transmit().unwrap()).unwrap();
/// let Some(NodeEvent::SessionRequested(req)) = node.poll_event() else { panic!() };
/// assert_eq!(req.client_address, Some(my_address)); // check job ownership here
/// node.accept(t, conn, &req.session_id).unwrap();
/// client.handle_frame(t, &node.poll_transmit().unwrap().frame).unwrap();
/// assert_eq!(client.poll_event(), Some(ClientEvent::SessionReady));
///
/// let rid = client.send_prompt(t, &Prompt::new("Hello")).unwrap();
/// node.handle_frame(t, conn, &client.poll_transmit().unwrap()).unwrap();
/// let Some(NodeEvent::Prompt(p)) = node.poll_event() else { panic!() };
/// assert_eq!(p.prompt.as_str(), "Hello");
/// node.send_chunk(t, conn, "1", &rid, "Hi!", true).unwrap();
/// node.finish(t, conn, "1", &rid, StreamEnd::complete(1, 1, 8192)).unwrap();
/// while let Some(tx) = node.poll_transmit() { client.handle_frame(t, &tx.frame).unwrap(); }
/// let mut last = None;
/// while let Some(e) = client.poll_event() { last = Some(e); }
/// assert!(matches!(last, Some(ClientEvent::Finished { ref text, .. }) if text == "Hi!"));
/// ```
pub struct Client<R> {
    identity: SecretKey,
    node_public: PublicKey,
    node_compressed: [u8; 33],
    config: ClientConfig,
    rng: R,
    session: Option<ClientSession>,
    transmits: VecDeque<String>,
    events: VecDeque<ClientEvent>,
    id_counter: u64,
}

impl<R> fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.identity.public_key().address())
            .field("node", &self.node_public)
            .finish_non_exhaustive()
    }
}

impl<R: rand_core::CryptoRng> Client<R> {
    /// A client with identity key `identity` talking to the node key `node_public_key`.
    pub fn new(
        identity: SecretKey,
        node_public_key: PublicKey,
        config: ClientConfig,
        rng: R,
    ) -> Self {
        Client {
            identity,
            node_compressed: node_public_key.to_compressed(),
            node_public: node_public_key,
            config,
            rng,
            session: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            id_counter: 0,
        }
    }

    /// The address the node recovers (the SDK's `getWsClientAddress`).
    pub fn address(&self) -> Address {
        self.identity.public_key().address()
    }

    /// Sends a fresh `encrypted_session_init` (a new session key, a new ephemeral key; the
    /// message counter restarts at 0). Random draws in the SDK's order: session key (32),
    /// ephemeral seed (48, reduced as noble's `randomPrivateKey`), nonce (24) — so the frame is
    /// byte-identical to the SDK's for the same randomness.
    pub fn start_session(
        &mut self,
        now: Instant,
        params: SessionParams,
    ) -> Result<(), ClientError> {
        if !wire::is_decimal(&params.session_id) {
            return Err(ClientError::InvalidParameter("session_id"));
        }
        if !wire::is_decimal(&params.job_id) {
            return Err(ClientError::InvalidParameter("job_id"));
        }
        let session_key = SecretBytes::new(crate::crypto::random_array::<32, R>(&mut self.rng));
        let seed = Zeroizing::new(crate::crypto::random_array::<48, R>(&mut self.rng));
        let nonce = crate::crypto::random_array::<24, R>(&mut self.rng);
        let eph_scalar = scalar_from_seed48(&seed);
        let eph = SecretKey::from_bytes(&eph_scalar)
            .map_err(|_| ClientError::InvalidParameter("ephemeral key"))?;
        let eph_pub = eph.public_key().to_compressed();

        // §2.3 plaintext, key order as the SDK.
        let mut plain = Zeroizing::new(String::with_capacity(256 + params.model.len()));
        plain.push_str(r#"{"sessionKey":""#);
        hex::encode_to(session_key.expose(), &mut plain);
        plain.push_str(r#"","jobId":"#);
        wire::push_json_str(&mut plain, &params.job_id);
        plain.push_str(r#","modelName":"#);
        wire::push_json_str(&mut plain, &params.model);
        plain.push_str(r#","pricePerToken":"#);
        wire::push_u64(&mut plain, params.price_per_token);
        plain.push_str(r#","recoveryPublicKey":"0x"#);
        hex::encode_to(&self.identity.public_key().to_compressed(), &mut plain);
        plain.push('"');
        if let Some(v) = &params.vector_database {
            plain.push_str(r#","vectorDatabase":{"manifestPath":"#);
            wire::push_json_str(&mut plain, &v.manifest_path);
            plain.push_str(r#","userAddress":"#);
            wire::push_json_str(&mut plain, &v.user_address);
            plain.push('}');
        }
        plain.push('}');

        // §2.4: ECDH x → HKDF(zero salt, empty info) → XChaCha20-Poly1305, AAD empty.
        let x = eph.ecdh_x(&self.node_public);
        let salt = [0u8; 32];
        let k = kdf::hkdf_sha256(&salt, &x[..], b"");
        let ct = aead::xchacha_seal(&k, &nonce, b"", plain.as_bytes());
        let digest = kdf::sha256(&[
            b"E2EEv1|",
            &eph_pub,
            b"|",
            &self.node_compressed,
            b"|",
            &salt,
            b"|",
            &nonce,
            b"|",
        ]);
        let sig = self.identity.sign_prehash_recoverable(&digest);
        let recid = sig.get(64).copied().unwrap_or(0);

        let mut f = String::with_capacity(ct.len() * 2 + 600);
        f.push_str(r#"{"type":"encrypted_session_init","payload":{"ephPubHex":""#);
        hex::encode_to(&eph_pub, &mut f);
        f.push_str(r#"","saltHex":""#);
        hex::encode_to(&salt, &mut f);
        f.push_str(r#"","nonceHex":""#);
        hex::encode_to(&nonce, &mut f);
        f.push_str(r#"","ciphertextHex":""#);
        hex::encode_to(&ct, &mut f);
        f.push_str(r#"","signatureHex":""#);
        hex::encode_to(&sig, &mut f);
        f.push_str(r#"","recid":"#);
        wire::push_u64(&mut f, u64::from(recid));
        f.push_str(r#","alg":""#);
        f.push_str(ALG);
        f.push_str(r#"","info":"","aadHex":""},"chain_id":"#);
        wire::push_u64(&mut f, params.chain_id);
        f.push_str(r#","session_id":"#);
        wire::push_json_str(&mut f, &params.session_id);
        f.push_str(r#","job_id":"#);
        wire::push_json_str(&mut f, &params.job_id);
        f.push('}');

        self.session = Some(ClientSession {
            params,
            key: Some(session_key),
            user_address: None,
            next_message: 0,
            phase: Phase::AwaitingAck,
            answer: None,
            deadline: Some(now + self.config.ack_timeout),
        });
        self.transmits.push_back(f);
        Ok(())
    }

    /// Opens a legacy plaintext session (`session_init`, nothing authenticated): only for
    /// nodes that have no key. `user_address` is the claimed (unverified) address.
    pub fn start_plaintext_session(
        &mut self,
        now: Instant,
        params: SessionParams,
        user_address: &str,
    ) -> Result<(), ClientError> {
        if !wire::is_decimal(&params.session_id) || !wire::is_decimal(&params.job_id) {
            return Err(ClientError::InvalidParameter("ids"));
        }
        let id = self.next_id(now);
        let mut f = String::with_capacity(256);
        f.push_str(r#"{"type":"session_init","chain_id":"#);
        wire::push_u64(&mut f, params.chain_id);
        f.push_str(r#","session_id":"#);
        wire::push_json_str(&mut f, &params.session_id);
        f.push_str(r#","jobId":"#);
        wire::push_json_str(&mut f, &params.job_id);
        f.push_str(r#","user_address":"#);
        wire::push_json_str(&mut f, user_address);
        if let Some(v) = &params.vector_database {
            f.push_str(r#","vector_database":{"manifest_path":"#);
            wire::push_json_str(&mut f, &v.manifest_path);
            f.push_str(r#","user_address":"#);
            wire::push_json_str(&mut f, &v.user_address);
            f.push('}');
        }
        f.push_str(r#","id":"#);
        wire::push_json_str(&mut f, &id);
        f.push('}');
        self.session = Some(ClientSession {
            params,
            key: None,
            user_address: Some(user_address.to_string()),
            next_message: 0,
            phase: Phase::AwaitingAck,
            answer: None,
            deadline: Some(now + self.config.ack_timeout),
        });
        self.transmits.push_back(f);
        Ok(())
    }

    fn next_id(&mut self, now: Instant) -> String {
        self.id_counter += 1;
        let mut s = String::with_capacity(32);
        let _ = write!(s, "{}-", now.as_nanos() / 1_000_000);
        // Base-36 counter, like the SDK's `Math.random().toString(36)` suffix in form.
        let mut digits = [0u8; 16];
        let mut n = self.id_counter;
        let mut i = digits.len();
        while n > 0 && i > 0 {
            i -= 1;
            let d = (n % 36) as u8;
            if let Some(slot) = digits.get_mut(i) {
                *slot = if d < 10 { b'0' + d } else { b'a' + d - 10 };
            }
            n /= 36;
        }
        s.push_str(core::str::from_utf8(digits.get(i..).unwrap_or(&[])).unwrap_or(""));
        s
    }

    /// Sends a prompt: `encrypted_message` with AAD `message_<n>` (n counting from 0 since
    /// the last init). Returns the request id. An unfinished previous answer is abandoned
    /// (its remaining frames are ignored). The envelope's `search_queries` is always
    /// `null`: the queries travel only inside the ciphertext.
    pub fn send_prompt(&mut self, now: Instant, prompt: &Prompt) -> Result<String, ClientError> {
        let id = match &prompt.request_id {
            Some(id) => id.clone(),
            None => self.next_id(now),
        };
        let s = self.session.as_mut().ok_or(ClientError::NotReady)?;
        match s.phase {
            // One answer at a time: a new prompt supersedes an unfinished answer, whose later
            // frames are then ignored (they carry the old request id).
            Phase::Ready | Phase::Answering => {}
            Phase::AwaitingAck => return Err(ClientError::NotReady),
        }
        if !prompt.temperature.is_finite() {
            return Err(ClientError::InvalidParameter("temperature"));
        }
        let model = prompt.model.as_deref().unwrap_or(&s.params.model);
        let mut f = String::with_capacity(prompt.text.len() * 2 + 512);
        match &s.key {
            Some(key) => {
                let mut inner = Zeroizing::new(String::with_capacity(prompt.text.len() + 160));
                inner.push_str(r#"{"prompt":"#);
                wire::push_json_str(&mut inner, &prompt.text);
                inner.push_str(r#","model":"#);
                wire::push_json_str(&mut inner, model);
                inner.push_str(r#","max_tokens":"#);
                wire::push_u64(&mut inner, prompt.max_tokens);
                inner.push_str(r#","temperature":"#);
                wire::push_js_number(&mut inner, prompt.temperature);
                inner.push_str(r#","stream":true"#);
                if let Some(t) = &prompt.thinking {
                    inner.push_str(r#","thinking":"#);
                    wire::push_json_str(&mut inner, t);
                }
                if !prompt.images.is_empty() {
                    inner.push_str(r#","images":["#);
                    for (i, img) in prompt.images.iter().enumerate() {
                        if i > 0 {
                            inner.push(',');
                        }
                        inner.push_str(r#"{"data":"#);
                        wire::push_json_str(&mut inner, &img.data);
                        inner.push_str(r#","format":"#);
                        wire::push_json_str(&mut inner, &img.format);
                        inner.push('}');
                    }
                    inner.push(']');
                }
                if !prompt.search_queries.is_empty() {
                    inner.push_str(r#","search_queries":["#);
                    for (i, q) in prompt.search_queries.iter().enumerate() {
                        if i > 0 {
                            inner.push(',');
                        }
                        wire::push_json_str(&mut inner, q);
                    }
                    inner.push(']');
                }
                inner.push('}');
                let nonce = crate::crypto::random_array::<24, R>(&mut self.rng);
                let mut aad_buf = [0u8; 32];
                let aad = wire::indexed_label(&mut aad_buf, b"message_", s.next_message);
                let ct = aead::xchacha_seal(key.expose(), &nonce, aad, inner.as_bytes());
                f.push_str(r#"{"type":"encrypted_message","session_id":"#);
                wire::push_json_str(&mut f, &s.params.session_id);
                f.push_str(r#","id":"#);
                wire::push_json_str(&mut f, &id);
                f.push_str(r#","payload":{"ciphertextHex":""#);
                hex::encode_to(&ct, &mut f);
                f.push_str(r#"","nonceHex":""#);
                hex::encode_to(&nonce, &mut f);
                f.push_str(r#"","aadHex":""#);
                hex::encode_to(aad, &mut f);
                f.push_str(r#""},"web_search":"#);
                f.push_str(if prompt.web_search { "true" } else { "false" });
                f.push_str(r#","max_searches":"#);
                wire::push_u64(&mut f, prompt.max_searches);
                f.push_str(r#","search_queries":null}"#);
                s.next_message = s.next_message.saturating_add(1);
            }
            None => {
                // Legacy plaintext prompt (§5.3) — with the real prompt, not the SDK bug.
                f.push_str(r#"{"type":"prompt","chain_id":"#);
                wire::push_u64(&mut f, s.params.chain_id);
                f.push_str(r#","jobId":"#);
                wire::push_json_str(&mut f, &s.params.job_id);
                f.push_str(r#","prompt":"#);
                wire::push_json_str(&mut f, &prompt.text);
                f.push_str(r#","web_search":"#);
                f.push_str(if prompt.web_search { "true" } else { "false" });
                f.push_str(r#","max_searches":"#);
                wire::push_u64(&mut f, prompt.max_searches);
                f.push_str(r#","search_queries":null,"request":{"model":"#);
                wire::push_json_str(&mut f, model);
                f.push_str(r#","prompt":"#);
                wire::push_json_str(&mut f, &prompt.text);
                f.push_str(r#","max_tokens":"#);
                wire::push_u64(&mut f, prompt.max_tokens);
                f.push_str(r#","temperature":"#);
                wire::push_js_number(&mut f, prompt.temperature);
                f.push_str(r#","stream":true"#);
                if let Some(t) = &prompt.thinking {
                    f.push_str(r#","thinking":"#);
                    wire::push_json_str(&mut f, t);
                }
                f.push_str(r#"},"id":"#);
                wire::push_json_str(&mut f, &id);
                f.push('}');
            }
        }
        s.phase = Phase::Answering;
        s.answer = Some(Answer {
            request_id: id.clone(),
            text: Zeroizing::new(String::new()),
            next_index: 0,
            final_seen: false,
        });
        s.deadline = Some(now + self.config.first_chunk_timeout);
        self.transmits.push_back(f);
        Ok(id)
    }

    /// Cancels the answer in progress (`stream_cancel`); the partial text is delivered as
    /// `Finished`.
    pub fn cancel(&mut self, _now: Instant) -> Result<(), ClientError> {
        let s = self.session.as_mut().ok_or(ClientError::NotReady)?;
        if !matches!(s.phase, Phase::Answering) {
            return Err(ClientError::NotReady);
        }
        let mut f = String::with_capacity(96);
        f.push_str(r#"{"type":"stream_cancel","session_id":"#);
        wire::push_json_str(&mut f, &s.params.session_id);
        f.push_str(r#","reason":"user_cancelled"}"#);
        self.transmits.push_back(f);
        self.finish_answer(None, None);
        Ok(())
    }

    /// Sends the heartbeat `{"type":"ping"}`.
    pub fn ping(&mut self) {
        self.transmits.push_back(String::from(r#"{"type":"ping"}"#));
    }

    /// Handles one frame from the node.
    ///
    /// An `Err` for a frame of the current answer also fails the answer
    /// ([`ClientEvent::AnswerFailed`]); unrelated frames are ignored (`Ok`).
    pub fn handle_frame(&mut self, now: Instant, frame: &str) -> Result<(), ClientError> {
        if frame.len() > self.config.max_frame_len {
            return Err(ClientError::FrameTooLarge);
        }
        let env: NodeFrame<'_> =
            wire::parse_object(frame).ok_or(ClientError::Malformed("not a JSON object"))?;
        let ty = match env.ty.as_ref().and_then(Field::as_str) {
            Some(t) => t,
            None => return Ok(()), // the SDK drops frames without a type
        };
        if ty == "pong" {
            // Heartbeat answers carry nothing: one pending `Pong` stands for any number, so a
            // node flooding pongs cannot grow the queue.
            if self.events.back() != Some(&ClientEvent::Pong) && self.events.len() < MAX_EVENTS {
                self.events.push_back(ClientEvent::Pong);
            }
            return Ok(());
        }
        let Some(s) = self.session.as_mut() else {
            return Ok(());
        };
        match s.phase {
            Phase::AwaitingAck => match ty {
                "session_init_ack" => {
                    s.phase = Phase::Ready;
                    s.deadline = None;
                    self.events.push_back(ClientEvent::SessionReady);
                }
                "error" => {
                    let ev = node_error(&env);
                    self.session = None; // the init failed: wipe the key
                    self.events.push_back(ev);
                }
                _ => {}
            },
            Phase::Ready => {}
            Phase::Answering => {
                if !self.belongs_to_answer(&env) {
                    return Ok(());
                }
                let r = match ty {
                    "encrypted_chunk" => self.on_chunk(now, &env),
                    "stream_chunk" => self.on_plain_chunk(now, &env),
                    "encrypted_response" => self.on_response(now, &env),
                    "stream_end" => {
                        let reason = env
                            .finish_reason
                            .as_ref()
                            .and_then(Field::as_str)
                            .map(ToString::to_string);
                        let tokens = env.tokens_used.as_ref().and_then(Field::as_u64);
                        self.finish_answer(reason, tokens);
                        Ok(())
                    }
                    "error" => {
                        let ev = node_error(&env);
                        self.abort_answer();
                        self.events.push_back(ev);
                        Ok(())
                    }
                    _ => Ok(()),
                };
                if let Err(e) = r {
                    self.abort_answer();
                    self.events
                        .push_back(ClientEvent::AnswerFailed { error: e });
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<String> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// The next deadline (ack wait, chunk wait, final grace).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.session.as_ref().and_then(|s| s.deadline)
    }

    /// Acts on a deadline: a missing ack or chunk ⇒ `TimedOut`; the grace after a final chunk
    /// ⇒ `Finished` with the text so far.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        match s.deadline {
            Some(d) if d <= now => {}
            _ => return,
        }
        match s.phase {
            Phase::AwaitingAck => {
                self.session = None;
                self.events.push_back(ClientEvent::TimedOut);
            }
            Phase::Answering => {
                if s.answer.as_ref().is_some_and(|a| a.final_seen) {
                    self.finish_answer(None, None);
                } else {
                    self.abort_answer();
                    self.events.push_back(ClientEvent::TimedOut);
                }
            }
            Phase::Ready => s.deadline = None,
        }
    }

    /// The claimed user address of a plaintext session.
    pub fn plaintext_user_address(&self) -> Option<&str> {
        self.session
            .as_ref()
            .and_then(|s| s.user_address.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noble_random_private_key_reduction_matches_the_sdk_vector() {
        // session_init.json / init_basic: seed48 → ephemeral_private_key.
        let seed: [u8; 48] = hex::decode_array("9989c93175818614646978a4b1a2dfd8702b108d8c78e57470df356ed88aa1a92f55b4be51e37db9226a7b582e72071c").unwrap();
        assert_eq!(
            hex::encode(&scalar_from_seed48(&seed)[..]),
            "3347a69f04abf55b0c8070ff0bffafa6378850f5b07e03ef83129a29e31df7dd"
        );
    }
}
