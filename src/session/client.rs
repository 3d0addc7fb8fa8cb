//! The client (SDK side) machine: what a Rust SDK would link. It opens one session at a time
//! with a node and receives its answers; `answer.rs` holds the receiving side.
//!
//! Frames are byte-identical in form to the SDK's (same keys, key order, compact JSON as
//! `JSON.stringify`, U+2192 raw in `alg`; written by `wire`). Where the SDK is lenient the
//! client is strict: chunk AADs must be `chunk_0, chunk_1, …` in order (configurable), an
//! undecryptable chunk fails the answer, chunks must be valid UTF-8, and the prompt never goes
//! into the clear envelope.

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

use zeroize::Zeroizing;

use super::config::{ChunkAadPolicy, ClientConfig};
use super::error::ClientError;
use super::wire::{
    self, EncryptedMessage, EncryptedSessionInit, InitPlaintext, NodeFrame, NodeFrameKind,
    PlainPrompt, PlainSessionInit, PromptBody, Sealed, StreamCancel, MESSAGE_AAD, PING,
};
use crate::crypto::aead;
use crate::crypto::secp256k1::{Address, PublicKey, SecretKey};
use crate::crypto::{kdf, SecretBytes};
use crate::queue::Outbox;
use crate::time::Instant;

mod answer;
use answer::EndedBy;
mod events;
mod prompt;

pub use events::{ClientEvent, ClientStats};
pub use prompt::{Prompt, SessionParams};

#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
enum Phase {
    /// Init sent, waiting for the ack.
    AwaitingAck,
    /// Ready for a prompt.
    Ready,
    /// Receiving an answer.
    Answering,
}

#[cfg_attr(fuzzing, derive(Clone))]
struct Answer {
    request_id: String,
    text: Zeroizing<String>,
    /// Chunks received (the next chunk's index).
    next_index: u64,
    ending: Ending,
}

/// How far the end of an answer got ([docs/fabstir-wire.md §4.1]).
#[cfg_attr(fuzzing, derive(Clone))]
enum Ending {
    /// Chunks may still come.
    Open,
    /// The node said the answer is over (a `final` chunk, or an `encrypted_response` that does
    /// not seal the chunk count), but nothing proves it: the answer ends as `Truncated`.
    Claimed,
    /// The sealed end of answer (`encrypted_response_final_<n>`) checked out against the
    /// chunks received: the answer is whole; only `stream_end` (usage) or the grace is awaited.
    Sealed {
        /// The finish reason it sealed.
        finish_reason: Option<String>,
    },
}

struct ClientSession {
    params: SessionParams,
    /// The nonces (first 8 bytes) of every chunk and end of answer received under `key`.
    /// Why: the ids of answer frames are not authenticated and the chunk AADs restart at
    /// `chunk_0` with each answer, so a frame of an earlier answer under the same key would
    /// otherwise fit a later one (a chunk swapped in, or a shorter answer's sealed end
    /// cutting it short). The node draws a fresh random nonce for each frame it seals.
    seen: BTreeSet<u64>,
    /// Boxed so that it never moves (a move leaves the old bytes behind unwiped); wiped in
    /// place when the session is replaced or dropped.
    key: Option<Box<SecretBytes<32>>>,
    user_address: Option<String>,
    next_message: u64,
    phase: Phase,
    answer: Option<Answer>,
    deadline: Option<Instant>,
}

impl ClientSession {
    /// Records a sealed frame's nonce (first 8 bytes), refusing one already seen under this
    /// key (`OutOfOrder`) and a key that received `max` frames (`KeyExhausted`).
    fn first_use(&mut self, nonce_id: u64, max: usize) -> Result<(), ClientError> {
        if self.seen.contains(&nonce_id) {
            return Err(ClientError::OutOfOrder);
        }
        if self.seen.len() >= max {
            return Err(ClientError::KeyExhausted);
        }
        self.seen.insert(nonce_id);
        Ok(())
    }
}

/// The SDK side of the protocol.
///
/// ```
/// use sealwire::session::*;
/// use sealwire::time::Instant;
/// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
///
/// let t = Instant::ZERO;
/// let node_key = SecretKey::from_bytes(&[7; 32])?;
/// let node_pub = node_key.public_key();
/// let mut node = Node::new(node_key, NodeConfig::default(), ChaCha20Rng::from_seed([1; 32]))?;
/// let me = SecretKey::from_bytes(&[8; 32])?;
/// let my_address = me.public_key().address();
/// let mut client = Client::new(me, node_pub, ClientConfig::default(), ChaCha20Rng::from_seed([2; 32]))?;
/// let conn = node.connect()?;
///
/// client.start_session(t, SessionParams { session_id: "1".into(), job_id: "2".into(), chain_id: 84532,
///     model: "m".into(), price_per_token: 0, vector_database: None })?;
/// node.handle_frame(t, conn, &client.poll_transmit().unwrap())?;
/// let Some(NodeEvent::SessionRequested(req)) = node.poll_event() else { panic!() };
/// assert_eq!(req.client_address, Some(my_address)); // check job ownership here
/// node.accept(t, conn, &req.session_id)?;
/// client.handle_frame(t, &node.poll_transmit().unwrap().frame)?;
/// assert_eq!(client.poll_event(), Some(ClientEvent::SessionReady));
///
/// let rid = client.send_prompt(t, &Prompt::new("Hello"))?;
/// node.handle_frame(t, conn, &client.poll_transmit().unwrap())?;
/// let Some(NodeEvent::Prompt(p)) = node.poll_event() else { panic!() };
/// assert_eq!(p.prompt.as_str(), "Hello");
/// node.send_chunk(t, conn, "1", &rid, "Hi!", true)?;
/// node.finish(t, conn, "1", &rid, StreamEnd::complete(1, 1, 8192))?;
/// while let Some(tx) = node.poll_transmit() { client.handle_frame(t, &tx.frame)?; }
/// let mut last = None;
/// while let Some(e) = client.poll_event() { last = Some(e); }
/// assert!(matches!(last, Some(ClientEvent::Finished { ref text, .. }) if text == "Hi!"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Client<R> {
    /// Boxed like the session key: moving the client never copies it.
    identity: Box<SecretKey>,
    node_public: PublicKey,
    node_compressed: [u8; 33],
    config: ClientConfig,
    rng: R,
    session: Option<ClientSession>,
    transmits: Outbox<String>,
    events: Outbox<ClientEvent>,
    id_counter: u64,
}

#[cfg(fuzzing)]
impl Clone for ClientSession {
    fn clone(&self) -> Self {
        ClientSession {
            params: self.params.clone(),
            seen: self.seen.clone(),
            key: self.key.as_ref().map(|k| Box::new(k.clone_secret())),
            user_address: self.user_address.clone(),
            next_message: self.next_message,
            phase: self.phase.clone(),
            answer: self.answer.clone(),
            deadline: self.deadline,
        }
    }
}

/// Fuzz targets clone a client in the middle of a session per input (cargo-fuzz builds with
/// `--cfg fuzzing`); no other build can copy its keys.
#[cfg(fuzzing)]
impl<R: Clone> Clone for Client<R> {
    fn clone(&self) -> Self {
        Client {
            identity: self.identity.clone(),
            node_public: self.node_public,
            node_compressed: self.node_compressed,
            config: self.config.clone(),
            rng: self.rng.clone(),
            session: self.session.clone(),
            transmits: self.transmits.clone(),
            events: self.events.clone(),
            id_counter: self.id_counter,
        }
    }
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
    /// A client with identity key `identity` talking to the node key `node_public_key`;
    /// `Err(InvalidConfig(field))` for a configuration it cannot run with.
    ///
    /// ```
    /// use sealwire::session::{Client, ClientConfig, ClientError, SecretKey};
    /// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// let node = SecretKey::from_bytes(&[7; 32]).unwrap().public_key();
    /// let config = ClientConfig { max_frame_len: 0, ..ClientConfig::default() };
    /// let client = Client::new(SecretKey::from_bytes(&[8; 32]).unwrap(), node, config, ChaCha20Rng::from_seed([0; 32]));
    /// assert_eq!(client.err(), Some(ClientError::InvalidConfig("max_frame_len")));
    /// ```
    pub fn new(
        identity: SecretKey,
        node_public_key: PublicKey,
        config: ClientConfig,
        rng: R,
    ) -> Result<Self, ClientError> {
        config.check()?;
        Ok(Client {
            identity: Box::new(identity),
            node_compressed: node_public_key.to_compressed(),
            node_public: node_public_key,
            transmits: Outbox::new(config.queue_capacity),
            events: Outbox::new(config.queue_capacity),
            config,
            rng,
            session: None,
            id_counter: 0,
        })
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
        self.ensure_room()?;
        let session_key = Box::new(SecretBytes::new(crate::crypto::random_array::<32, R>(
            &mut self.rng,
        )));
        let seed = Zeroizing::new(crate::crypto::random_array::<48, R>(&mut self.rng));
        let nonce = crate::crypto::random_array::<24, R>(&mut self.rng);
        let eph = SecretKey::from_seed48(&seed)
            .map_err(|_| ClientError::InvalidParameter("ephemeral key"))?;

        // docs/fabstir-wire.md §2.3 plaintext, then §2.4: ECDH x → HKDF(zero salt, empty info) → XChaCha20-Poly1305
        // with an empty AAD, and the signature over the preimage.
        let plain = InitPlaintext {
            session_key: session_key.clone_secret(),
            job_id: params.job_id.as_str().into(),
            model: params.model.as_str().into(),
            price_per_token: params.price_per_token,
            recovery_public_key: Some(self.identity.public_key()),
            vector_database: params.vector_database.clone(),
        }
        .emit();
        let x = eph.ecdh_x(&self.node_public);
        let k = kdf::hkdf_sha256(&[0u8; 32], &x[..], b"");
        let mut init = EncryptedSessionInit {
            session_id: &params.session_id,
            job_id: &params.job_id,
            chain_id: params.chain_id,
            eph_pub: eph.public_key(),
            nonce,
            signature: [0; 65],
            aad: Vec::new(),
            sealed: Zeroizing::new(aead::xchacha_seal(&k, &nonce, b"", plain.as_bytes())),
        };
        init.signature = self
            .identity
            .sign_prehash_recoverable(&init.digest(&self.node_compressed));
        let frame = init.emit();
        self.open(now, params, Some(session_key), None);
        self.transmits.push(frame);
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
        self.ensure_room()?;
        let id = self.next_id(now);
        let frame = PlainSessionInit {
            session_id: &params.session_id,
            job_id: &params.job_id,
            chain_id: params.chain_id,
            user_address: Some(user_address),
            vector_database: params.vector_database.clone(),
            id: Some(&id),
        }
        .emit();
        self.open(now, params, None, Some(user_address.to_string()));
        self.transmits.push(frame);
        Ok(())
    }

    /// Replaces the session (the old key is wiped): it waits for the ack.
    fn open(
        &mut self,
        now: Instant,
        params: SessionParams,
        key: Option<Box<SecretBytes<32>>>,
        user_address: Option<String>,
    ) {
        self.session = Some(ClientSession {
            params,
            seen: BTreeSet::new(),
            key,
            user_address,
            next_message: 0,
            phase: Phase::AwaitingAck,
            answer: None,
            deadline: Some(now.saturating_add(self.config.ack_timeout)),
        });
    }

    fn next_id(&mut self, now: Instant) -> String {
        const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        // Ids need only differ between nearby requests: wrapping after 2^64 would be harmless.
        self.id_counter = self.id_counter.wrapping_add(1);
        let mut s = String::with_capacity(40);
        let _ = write!(s, "{}-", now.as_nanos() / 1_000_000);
        // Base-36 counter, like the SDK's `Math.random().toString(36)` suffix in form
        // (13 digits hold any u64).
        let mut digits = [0u8; 13];
        let mut n = self.id_counter;
        let mut start = digits.len();
        for slot in digits.iter_mut().rev() {
            if n == 0 {
                break;
            }
            *slot = BASE36.get((n % 36) as usize).copied().unwrap_or(b'0');
            n /= 36;
            start = start.saturating_sub(1);
        }
        s.push_str(core::str::from_utf8(digits.get(start..).unwrap_or(&[])).unwrap_or(""));
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
        self.ensure_room()?;
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
        let body = PromptBody {
            text: &prompt.text,
            model: prompt.model.as_deref().unwrap_or(&s.params.model),
            max_tokens: prompt.max_tokens,
            temperature: prompt.temperature,
            thinking: prompt.thinking.as_deref(),
            images: &prompt.images,
            search_queries: &prompt.search_queries,
        };
        let frame = match &s.key {
            Some(key) => {
                let inner = body.emit_sealed_plaintext();
                let nonce = crate::crypto::random_array::<24, R>(&mut self.rng);
                let mut aad_buf = [0u8; wire::LABEL_LEN];
                let aad = wire::indexed_label(&mut aad_buf, MESSAGE_AAD, s.next_message);
                let sealed = aead::xchacha_seal(key.expose(), &nonce, aad, inner.as_bytes());
                s.next_message = s.next_message.saturating_add(1);
                EncryptedMessage {
                    session_id: &s.params.session_id,
                    id: &id,
                    payload: Sealed {
                        sealed: &sealed,
                        nonce: &nonce,
                        aad,
                    },
                    web_search: prompt.web_search,
                    max_searches: prompt.max_searches,
                }
                .emit()
            }
            // Legacy plaintext prompt (docs/fabstir-wire.md §5.3).
            None => PlainPrompt {
                chain_id: s.params.chain_id,
                job_id: &s.params.job_id,
                body,
                web_search: prompt.web_search,
                max_searches: prompt.max_searches,
                id: &id,
            }
            .emit(),
        };
        s.phase = Phase::Answering;
        s.answer = Some(Answer {
            request_id: id.clone(),
            text: Zeroizing::new(String::new()),
            next_index: 0,
            ending: Ending::Open,
        });
        s.deadline = Some(now.saturating_add(self.config.first_chunk_timeout));
        self.transmits.push(frame);
        Ok(id)
    }

    /// Cancels the answer in progress (`stream_cancel`); the partial text is delivered as
    /// `Finished` with `authenticated: false`.
    pub fn cancel(&mut self) -> Result<(), ClientError> {
        let s = self.session.as_ref().ok_or(ClientError::NotReady)?;
        if !matches!(s.phase, Phase::Answering) {
            return Err(ClientError::NotReady);
        }
        self.ensure_room()?;
        let frame = StreamCancel {
            session_id: &s.params.session_id,
            reason: "user_cancelled",
        }
        .emit();
        self.transmits.push(frame);
        self.end_answer(EndedBy::Cancel);
        Ok(())
    }

    /// Sends the heartbeat `{"type":"ping"}` (`Capacity` when the transmit queue is full).
    pub fn ping(&mut self) -> Result<(), ClientError> {
        self.ensure_room()?;
        self.transmits.push(PING.into());
        Ok(())
    }

    /// Handles one frame from the node.
    ///
    /// An `Err` for a frame of the current answer also fails the answer
    /// ([`ClientEvent::AnswerFailed`]); unrelated frames are ignored (`Ok`).
    pub fn handle_frame(&mut self, now: Instant, frame: &str) -> Result<(), ClientError> {
        if frame.len() > self.config.max_frame_len {
            return Err(ClientError::FrameTooLarge);
        }
        let frame = NodeFrame::parse(frame)?;
        let Some(kind) = frame.kind() else {
            return Ok(()); // the SDK drops frames without a type
        };
        if kind == NodeFrameKind::Pong {
            // Heartbeat answers carry nothing: one pending `Pong` stands for any number, so a
            // node flooding pongs cannot grow the queue.
            if self.events.iter().last() != Some(&ClientEvent::Pong) {
                self.events.push(ClientEvent::Pong);
            }
            return Ok(());
        }
        let Some(s) = self.session.as_mut() else {
            return Ok(());
        };
        match s.phase {
            Phase::AwaitingAck => match kind {
                NodeFrameKind::SessionInitAck => {
                    s.phase = Phase::Ready;
                    s.deadline = None;
                    self.events.push(ClientEvent::SessionReady);
                }
                NodeFrameKind::Error => {
                    self.session = None; // the init failed: wipe the key
                    self.events.push(node_error(&frame));
                }
                _ => {}
            },
            Phase::Ready => {}
            Phase::Answering => {
                if !self.belongs_to_answer(&frame) {
                    return Ok(());
                }
                let r = match kind {
                    NodeFrameKind::EncryptedChunk => self.on_chunk(now, &frame),
                    NodeFrameKind::StreamChunk => self.on_plain_chunk(now, &frame),
                    NodeFrameKind::EncryptedResponse => self.on_response(now, &frame),
                    NodeFrameKind::StreamEnd => {
                        let (reason, tokens) = frame.stream_end();
                        self.end_answer(EndedBy::StreamEnd(reason, tokens));
                        Ok(())
                    }
                    NodeFrameKind::Error => {
                        self.abort_answer();
                        self.events.push(node_error(&frame));
                        Ok(())
                    }
                    _ => Ok(()),
                };
                if let Err(e) = r {
                    self.abort_answer();
                    self.events.push(ClientEvent::AnswerFailed { error: e });
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<String> {
        self.transmits.pop()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop()
    }

    /// The next deadline (ack wait, chunk wait, final grace).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.session.as_ref().and_then(|s| s.deadline)
    }

    /// Acts on a deadline: a missing ack, or no answer at all ⇒ `TimedOut`; the grace after
    /// the sealed end of answer ⇒ `Finished`; an answer cut off after some of it arrived (a
    /// missing chunk, a `final` flag or an unsealed end and then silence) ⇒ `Truncated` with
    /// the text so far.
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
                self.events.push(ClientEvent::TimedOut);
            }
            Phase::Answering => self.end_answer(EndedBy::Timeout),
            Phase::Ready => s.deadline = None,
        }
    }

    /// The claimed user address of a plaintext session.
    pub fn plaintext_user_address(&self) -> Option<&str> {
        self.session
            .as_ref()
            .and_then(|s| s.user_address.as_deref())
    }

    /// Counters.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            transmits_dropped: self.transmits.dropped(),
            events_dropped: self.events.dropped(),
        }
    }

    /// Refuses a call (before any change) whose frame would not fit.
    fn ensure_room(&self) -> Result<(), ClientError> {
        if self.transmits.has_room(1) {
            Ok(())
        } else {
            Err(ClientError::Capacity)
        }
    }
}

/// The event for a node's `error` frame.
fn node_error(frame: &NodeFrame<'_>) -> ClientEvent {
    let (code, message) = frame.error();
    ClientEvent::NodeError { code, message }
}
