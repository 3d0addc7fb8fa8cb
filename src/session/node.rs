//! The node (inference host) side: many concurrent sessions over many connections.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BinaryHeap, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::fmt;

use zeroize::Zeroizing;

use super::config::NodeConfig;
use super::error::{ErrorCode, SessionError};
use super::replay::{EphKey, ReplayCache};
use super::wire::{self, Field, InFrame, InPayload};
use super::{CheckpointDelta, VectorDatabase};
use crate::crypto::aead::{self, TAG_LEN};
use crate::crypto::secp256k1::{Address, PublicKey, SecretKey};
use crate::crypto::{hex, kdf, SecretBytes};
use crate::time::Instant;

pub use super::events::{
    CloseReason, ConnectionId, NodeEvent, PromptImage, PromptRequest, SessionRequest, StreamEnd,
    Transmit,
};

mod answer;
mod init;
mod message;
mod plaintext;

/// AAD of the encrypted finish reason (what the reference node uses).
pub(crate) const RESPONSE_FINAL_AAD: &[u8] = b"encrypted_response_final";
/// Longest request id / reason text echoed back.
const MAX_ECHO_LEN: usize = 256;
/// Texts up to this size are sealed in a stack buffer (no allocation).
const STACK_SEAL_LEN: usize = 512;

/// Counters of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Frames passed to `handle_frame`.
    pub frames_received: u64,
    /// Frames rejected with an error frame.
    pub frames_rejected: u64,
    /// Open connections.
    pub connections: usize,
    /// Established sessions.
    pub sessions_active: usize,
    /// Sessions waiting for accept/reject.
    pub sessions_pending: usize,
    /// Remembered ephemeral keys.
    pub replay_cache_len: usize,
    /// Frames dropped because the transmit queue was full.
    pub transmits_dropped: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    errors: [u64; ErrorCode::COUNT],
}

impl NodeStats {
    /// Rejections with `code`.
    pub fn errors(&self, code: ErrorCode) -> u64 {
        self.errors.get(code.index()).copied().unwrap_or(0)
    }

    /// `(code, count)` for every code seen at least once.
    pub fn errors_by_code(&self) -> impl Iterator<Item = (ErrorCode, u64)> + '_ {
        ErrorCode::all()
            .iter()
            .map(|c| (*c, self.errors(*c)))
            .filter(|(_, n)| *n > 0)
    }
}

/// Ongoing answer: the request and the next chunk index.
struct AnswerStream {
    request_id: Box<str>,
    next_index: u64,
}

/// State only a pending (not yet accepted) session needs.
struct Pending {
    eph: Option<EphKey>,
    init_id: Option<Box<str>>,
}

/// One session on a connection: its key and counters.
///
/// Accounting (64-bit, established session): this struct (160 B, ≤ [`NodeSession::SIZE_BOUND`]
/// asserted by a test) stored in its connection's exactly-sized `Vec`, one deadline-heap entry
/// (32 B), one replay-cache entry (≈ 80 B in the B-tree + 41 B in the expiry queue), the
/// client's quota counter in the replay cache (≈ 40 B, shared by all its sessions) and, for
/// the usual one session per connection, the connection's B-tree entry (≈ 48 B): ≈ 400 B,
/// plus the heap bytes of `session_id` and `job_id` (≤ 78 each). Transiently a `Pending`
/// (≈ 56 B, until accept) or an `AnswerStream` (32 B + request id, while answering).
pub(crate) struct NodeSession {
    session_id: Box<str>,
    job_id: Box<str>,
    uid: u64,
    key: SecretBytes<32>,
    last_index: Option<u64>,
    installed: Instant,
    last_active: Instant,
    /// Deadline of this session's one live heap entry (others are stale and skipped).
    armed: Instant,
    chain_id: u64,
    client_address: Option<Address>,
    encrypted: bool,
    pending: Option<Box<Pending>>,
    stream: Option<Box<AnswerStream>>,
}

impl NodeSession {
    /// Upper bound of `size_of::<NodeSession>()` the memory test enforces.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) const SIZE_BOUND: usize = 160;

    fn deadline(&self, cfg: &NodeConfig) -> Instant {
        if self.pending.is_some() {
            self.installed + cfg.accept_timeout
        } else {
            core::cmp::min(
                self.installed + cfg.session_ttl,
                self.last_active + cfg.idle_timeout,
            )
        }
    }
}

#[derive(Default)]
struct Conn {
    sessions: Vec<NodeSession>,
}

/// Context for the error frame of a rejected input.
#[derive(Default)]
struct Echo<'f> {
    session_id: Option<&'f str>,
    id: Option<&'f str>,
}

/// The node: verifies and decrypts SDK frames for many sessions, encrypts answers.
///
/// ```
/// use sealwire::session::{Node, NodeConfig, NodeEvent, SecretKey};
/// use sealwire::time::Instant;
/// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
///
/// let mut node = Node::new(SecretKey::from_bytes(&[7; 32]).unwrap(), NodeConfig::default(), ChaCha20Rng::from_seed([0; 32]));
/// let conn = node.connect(Instant::ZERO).unwrap();
/// node.handle_frame(Instant::ZERO, conn, r#"{"type":"ping"}"#).unwrap();
/// assert_eq!(node.poll_transmit().unwrap().frame, r#"{"type":"pong"}"#);
/// // A bad frame gets exactly one error frame and changes nothing else.
/// assert!(node.handle_frame(Instant::ZERO, conn, "not json").is_err());
/// assert!(node.poll_transmit().unwrap().frame.contains(r#""code":"INVALID_MESSAGE""#));
/// ```
pub struct Node<R> {
    key: SecretKey,
    public: PublicKey,
    public_compressed: [u8; 33],
    address: Address,
    config: NodeConfig,
    rng: R,
    conns: BTreeMap<ConnectionId, Conn>,
    next_conn: u64,
    next_uid: u64,
    sessions: usize,
    pending: usize,
    timers: BinaryHeap<Reverse<(Instant, ConnectionId, u64)>>,
    replay: ReplayCache,
    transmits: VecDeque<Transmit>,
    events: VecDeque<NodeEvent>,
    stats: NodeStats,
    scratch: Zeroizing<Vec<u8>>,
}

impl<R> fmt::Debug for Node<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("address", &self.address)
            .field("connections", &self.conns.len())
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

fn str_field<'x>(f: &'x Option<Field<'_>>) -> Option<&'x str> {
    f.as_ref().and_then(Field::as_str)
}

fn decimal_field<'x>(f: &'x Option<Field<'_>>) -> Option<&'x str> {
    str_field(f).filter(|s| wire::is_decimal(s))
}

fn truncate_chars(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

impl<R: rand_core::CryptoRng> Node<R> {
    /// A node with the host key `key`.
    pub fn new(key: SecretKey, config: NodeConfig, rng: R) -> Self {
        let public = key.public_key();
        let replay = ReplayCache::new(
            config.replay_cache_capacity,
            config.replay_cache_per_client,
            config.session_ttl,
        );
        Node {
            public_compressed: public.to_compressed(),
            address: public.address(),
            public,
            key,
            config,
            rng,
            conns: BTreeMap::new(),
            next_conn: 1,
            next_uid: 1,
            sessions: 0,
            pending: 0,
            timers: BinaryHeap::new(),
            replay,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: NodeStats::default(),
            scratch: Zeroizing::new(Vec::new()),
        }
    }

    /// The host public key (what the SDK encrypts to).
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// The host address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Registers a new WebSocket connection.
    pub fn connect(&mut self, _now: Instant) -> Result<ConnectionId, SessionError> {
        if self.conns.len() >= self.config.max_connections {
            return Err(SessionError::Capacity("connections"));
        }
        let id = ConnectionId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(id, Conn::default());
        Ok(id)
    }

    /// Wipes every key of the connection and emits `SessionClosed` for each.
    pub fn disconnect(&mut self, _now: Instant, conn: ConnectionId) {
        if let Some(c) = self.conns.remove(&conn) {
            for s in c.sessions {
                self.forget_session_counts(&s);
                self.push_event(NodeEvent::SessionClosed {
                    conn,
                    session_id: s.session_id.to_string(),
                    reason: CloseReason::Disconnected,
                });
                // `s` drops here: its key is wiped.
            }
        }
        self.transmits.retain(|t| t.conn != conn);
    }

    /// Handles one WebSocket text frame from `conn`.
    ///
    /// On `Err` exactly one `error` frame is queued for `conn` (except for
    /// [`SessionError::UnknownConnection`]) and no session changed.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        frame: &str,
    ) -> Result<(), SessionError> {
        if !self.conns.contains_key(&conn) {
            return Err(SessionError::UnknownConnection);
        }
        self.stats.frames_received += 1;
        let mut echo = Echo::default();
        let result = if frame.len() > self.config.max_frame_len {
            Err(SessionError::FrameTooLarge)
        } else {
            match wire::parse_object::<InFrame<'_>>(frame) {
                None => Err(SessionError::InvalidMessage("frame is not a JSON object")),
                Some(env) => {
                    let r = self.dispatch(now, conn, &env, &mut echo);
                    if let Err(e) = r {
                        let message = e.to_string();
                        self.reject_frame(conn, &echo, e.code(), &message);
                    }
                    return r;
                }
            }
        };
        if let Err(e) = result {
            let message = e.to_string();
            self.reject_frame(conn, &echo, e.code(), &message);
        }
        result
    }

    fn reject_frame(&mut self, conn: ConnectionId, echo: &Echo<'_>, code: ErrorCode, msg: &str) {
        self.stats.frames_rejected += 1;
        if let Some(n) = self.stats.errors.get_mut(code.index()) {
            *n += 1;
        }
        let frame = error_frame(code, msg, echo.session_id, echo.id);
        let _ = self.queue(conn, frame);
    }

    fn dispatch<'f>(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        env: &'f InFrame<'f>,
        echo: &mut Echo<'f>,
    ) -> Result<(), SessionError> {
        echo.id = str_field(&env.id).filter(|s| s.len() <= MAX_ECHO_LEN);
        echo.session_id = decimal_field(&env.session_id);
        let ty = str_field(&env.ty).ok_or(SessionError::InvalidMessage("no string type"))?;
        match ty {
            "encrypted_session_init" => self.on_encrypted_init(now, conn, env),
            "encrypted_message" => self.on_encrypted_message(now, conn, env),
            "session_init" => self.on_plain_init(now, conn, env),
            "prompt" => self.on_plain_prompt(now, conn, env, echo),
            "ping" => self.queue(conn, String::from(r#"{"type":"pong"}"#)),
            "stream_cancel" => self.on_cancel(now, conn, env),
            _ => Err(SessionError::InvalidMessage("unknown type")),
        }
    }

    fn on_cancel(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        env: &InFrame<'_>,
    ) -> Result<(), SessionError> {
        let session_id =
            decimal_field(&env.session_id).ok_or(SessionError::InvalidMessage("session_id"))?;
        let pos = self
            .find(conn, session_id)
            .ok_or(SessionError::SessionKeyNotFound)?;
        if self.session(conn, pos).is_some_and(|s| s.pending.is_some()) {
            return Err(SessionError::SessionNotAccepted);
        }
        let reason = str_field(&env.reason).unwrap_or("user_cancelled");
        self.ensure_room(0, 1)?;
        if let Some(s) = self.session_mut(conn, pos) {
            s.last_active = now;
        }
        self.push_event(NodeEvent::Cancel {
            conn,
            session_id: session_id.to_string(),
            reason: truncate_chars(reason, MAX_ECHO_LEN).to_string(),
        });
        Ok(())
    }

    // ---------------------------------------------------------------- embedder decisions

    /// Accepts a [`NodeEvent::SessionRequested`]: the key is installed and `session_init_ack`
    /// queued.
    pub fn accept(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        session_id: &str,
    ) -> Result<(), SessionError> {
        let pos = self.locate(conn, session_id)?;
        let (job_id, chain_id, init_id) = {
            let s = self
                .session(conn, pos)
                .ok_or(SessionError::UnknownSession)?;
            let p = s.pending.as_ref().ok_or(SessionError::UnknownSession)?;
            (s.job_id.clone(), s.chain_id, p.init_id.clone())
        };
        let ack = ack_frame(
            session_id,
            Some(&job_id),
            Some(chain_id),
            init_id.as_deref(),
        );
        self.queue(conn, ack)?;
        let deadline = now + core::cmp::min(self.config.session_ttl, self.config.idle_timeout);
        let rearm = match self.session_mut(conn, pos) {
            Some(s) => {
                s.pending = None;
                s.installed = now;
                s.last_active = now;
                // Keep exactly one live heap entry: re-arm only if the deadline moved earlier;
                // otherwise the pending entry fires first and re-arms itself.
                if deadline < s.armed {
                    s.armed = deadline;
                    Some(s.uid)
                } else {
                    None
                }
            }
            None => return Err(SessionError::UnknownSession),
        };
        self.pending = self.pending.saturating_sub(1);
        if let Some(uid) = rearm {
            self.timers.push(Reverse((deadline, conn, uid)));
        }
        Ok(())
    }

    /// Rejects a [`NodeEvent::SessionRequested`]: an `error` frame `NOT_AUTHORIZED` with
    /// `message` is queued and the key material wiped.
    pub fn reject(
        &mut self,
        _now: Instant,
        conn: ConnectionId,
        session_id: &str,
        message: &str,
    ) -> Result<(), SessionError> {
        let pos = self.locate(conn, session_id)?;
        if self.session(conn, pos).is_some_and(|s| s.pending.is_none()) {
            return Err(SessionError::UnknownSession);
        }
        let s = self
            .remove_session(conn, pos)
            .ok_or(SessionError::UnknownSession)?;
        if let Some(eph) = s.pending.as_ref().and_then(|p| p.eph) {
            self.replay.forget(&eph);
        }
        let init_id = s.pending.as_ref().and_then(|p| p.init_id.as_deref());
        let frame = error_frame(
            ErrorCode::NotAuthorized,
            truncate_chars(message, 1024),
            Some(session_id),
            init_id,
        );
        self.stats.frames_rejected += 1;
        if let Some(n) = self.stats.errors.get_mut(ErrorCode::NotAuthorized.index()) {
            *n += 1;
        }
        self.queue(conn, frame)
    }

    /// Explicit close: wipes the key and emits `SessionClosed`.
    pub fn close_session(
        &mut self,
        _now: Instant,
        conn: ConnectionId,
        session_id: &str,
    ) -> Result<(), SessionError> {
        let pos = self.locate(conn, session_id)?;
        let s = self
            .remove_session(conn, pos)
            .ok_or(SessionError::UnknownSession)?;
        if let Some(eph) = s.pending.as_ref().and_then(|p| p.eph) {
            self.replay.forget(&eph);
        }
        self.push_event(NodeEvent::SessionClosed {
            conn,
            session_id: session_id.to_string(),
            reason: CloseReason::Closed,
        });
        Ok(())
    }

    // ---------------------------------------------------------------- outputs and time

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the embedder.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// The next deadline (O(1): the top of a binary heap). It may be early — a session that
    /// was active since — in which case `handle_timeout` simply re-arms it.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Expires keys (TTL, idle) and unanswered requests due at `now`. O(k log n) for k due
    /// entries.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((due, conn, uid))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            let Some(pos) = self
                .conns
                .get(&conn)
                .and_then(|c| c.sessions.iter().position(|s| s.uid == uid))
            else {
                continue; // lazily deleted
            };
            let Some(s) = self.session(conn, pos) else {
                continue;
            };
            if s.armed != due {
                continue; // superseded entry
            }
            let actual = s.deadline(&self.config);
            if actual > now {
                if let Some(s) = self.session_mut(conn, pos) {
                    s.armed = actual;
                }
                self.timers.push(Reverse((actual, conn, uid)));
                continue;
            }
            let pending = s.pending.is_some();
            let idle = !pending && s.last_active + self.config.idle_timeout <= now;
            if let Some(s) = self.remove_session(conn, pos) {
                if let Some(p) = &s.pending {
                    if let Some(eph) = p.eph {
                        self.replay.forget(&eph);
                    }
                    // Tell the waiting client (one error frame for its init).
                    let frame = error_frame(
                        ErrorCode::SessionNotAccepted,
                        "session was not accepted in time",
                        Some(&s.session_id),
                        p.init_id.as_deref(),
                    );
                    let _ = self.queue(conn, frame);
                }
                self.push_event(NodeEvent::SessionClosed {
                    conn,
                    session_id: s.session_id.to_string(),
                    reason: if idle {
                        CloseReason::Idle
                    } else {
                        CloseReason::Expired
                    },
                });
            }
        }
        // Stale entries (closed sessions) are bounded: rebuild when they dominate.
        if self.timers.len() > self.sessions.saturating_mul(2).saturating_add(64) {
            self.rebuild_timers();
        }
    }

    fn rebuild_timers(&mut self) {
        let mut v = Vec::with_capacity(self.sessions);
        for (conn, c) in self.conns.iter_mut() {
            for s in c.sessions.iter_mut() {
                s.armed = s.deadline(&self.config);
                v.push(Reverse((s.armed, *conn, s.uid)));
            }
        }
        self.timers = BinaryHeap::from(v);
    }

    /// Host-key challenge (§5.1): the JSON body of `POST /v1/auth/challenge` → the JSON
    /// response body `{"signature":"<r‖s hex>","recid":n}`.
    pub fn answer_challenge(&self, body: &[u8]) -> Result<String, SessionError> {
        super::challenge::answer(&self.key, body)
    }

    /// Checkpoint delta for a session's `recoveryPublicKey` (§5.2) → the published JSON
    /// object text.
    pub fn encrypt_checkpoint_delta(
        &mut self,
        recovery_public_key: &PublicKey,
        delta: &CheckpointDelta,
    ) -> Result<String, SessionError> {
        super::checkpoint::encrypt(&self.key, recovery_public_key, delta, &mut self.rng)
    }

    /// The inner `hostSignature` of a checkpoint delta: EIP-191 signature by the host key
    /// over the sorted compact JSON text of `messages` (as the reference node does).
    pub fn sign_checkpoint_messages(
        &self,
        messages: &[super::CheckpointMessage],
    ) -> Result<String, SessionError> {
        super::checkpoint::sign_messages(&self.key, messages)
    }

    /// Counters.
    pub fn stats(&self) -> NodeStats {
        let mut s = self.stats.clone();
        s.connections = self.conns.len();
        s.sessions_pending = self.pending;
        s.sessions_active = self.sessions.saturating_sub(self.pending);
        s.replay_cache_len = self.replay.len();
        s
    }

    // ---------------------------------------------------------------- internals

    fn find(&self, conn: ConnectionId, session_id: &str) -> Option<usize> {
        self.conns
            .get(&conn)?
            .sessions
            .iter()
            .position(|s| &*s.session_id == session_id)
    }

    /// The position of `session_id` on `conn`, accepted or pending.
    fn locate(&self, conn: ConnectionId, session_id: &str) -> Result<usize, SessionError> {
        let c = self
            .conns
            .get(&conn)
            .ok_or(SessionError::UnknownConnection)?;
        c.sessions
            .iter()
            .position(|s| &*s.session_id == session_id)
            .ok_or(SessionError::UnknownSession)
    }

    fn session(&self, conn: ConnectionId, pos: usize) -> Option<&NodeSession> {
        self.conns.get(&conn)?.sessions.get(pos)
    }

    fn session_mut(&mut self, conn: ConnectionId, pos: usize) -> Option<&mut NodeSession> {
        self.conns.get_mut(&conn)?.sessions.get_mut(pos)
    }

    /// Position of an accepted session, or the embedder-facing error.
    fn active(&self, conn: ConnectionId, session_id: &str) -> Result<usize, SessionError> {
        let pos = self.locate(conn, session_id)?;
        match self.session(conn, pos) {
            Some(s) if s.pending.is_none() => Ok(pos),
            Some(_) => Err(SessionError::SessionNotAccepted),
            None => Err(SessionError::UnknownSession),
        }
    }

    fn remove_session(&mut self, conn: ConnectionId, pos: usize) -> Option<NodeSession> {
        let c = self.conns.get_mut(&conn)?;
        if pos >= c.sessions.len() {
            return None;
        }
        let s = c.sessions.swap_remove(pos);
        self.forget_session_counts(&s);
        Some(s)
    }

    fn forget_session_counts(&mut self, s: &NodeSession) {
        self.sessions = self.sessions.saturating_sub(1);
        if s.pending.is_some() {
            self.pending = self.pending.saturating_sub(1);
        }
    }

    fn check_new_session_room(&self, conn: ConnectionId) -> Result<(), SessionError> {
        if self.sessions >= self.config.max_sessions {
            return Err(SessionError::Capacity("sessions"));
        }
        let n = self.conns.get(&conn).map_or(0, |c| c.sessions.len());
        if n >= self.config.max_sessions_per_connection {
            return Err(SessionError::Capacity("sessions per connection"));
        }
        Ok(())
    }

    /// Fails (before any state change) unless `transmits` more frames and `events` more
    /// events fit.
    fn ensure_room(&mut self, transmits: usize, events: usize) -> Result<(), SessionError> {
        if self.transmits.len().saturating_add(transmits) > self.config.max_transmit_queue {
            self.stats.transmits_dropped += 1;
            return Err(SessionError::Capacity("transmit queue"));
        }
        if self.events.len().saturating_add(events) > self.config.max_transmit_queue {
            self.stats.events_dropped += 1;
            return Err(SessionError::Capacity("event queue"));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn install_pending(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        session_id: &str,
        job_id: &str,
        chain_id: u64,
        client_address: Option<Address>,
        encrypted: bool,
        key: SecretBytes<32>,
        pending: Pending,
    ) {
        let uid = self.next_uid;
        self.next_uid += 1;
        let s = NodeSession {
            session_id: session_id.into(),
            job_id: job_id.into(),
            uid,
            key,
            last_index: None,
            installed: now,
            last_active: now,
            armed: now + self.config.accept_timeout,
            chain_id,
            client_address,
            encrypted,
            pending: Some(Box::new(pending)),
            stream: None,
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            // Exact growth: the SDK opens one session per connection, and `Vec`'s default
            // first allocation (4 slots) would quadruple its memory.
            c.sessions.reserve_exact(1);
            c.sessions.push(s);
            self.sessions += 1;
            self.pending += 1;
            self.timers
                .push(Reverse((now + self.config.accept_timeout, conn, uid)));
        }
    }

    fn queue(&mut self, conn: ConnectionId, frame: String) -> Result<(), SessionError> {
        if self.transmits.len() >= self.config.max_transmit_queue {
            self.stats.transmits_dropped += 1;
            return Err(SessionError::Capacity("transmit queue"));
        }
        self.transmits.push_back(Transmit { conn, frame });
        Ok(())
    }

    fn push_event(&mut self, e: NodeEvent) {
        if self.events.len() >= self.config.max_transmit_queue {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(e);
    }
}

/// `{"type":"session_init_ack","status":"success","session_id":..,"job_id":..,"chain_id":..,"message":..[,"id":..]}`
fn ack_frame(
    session_id: &str,
    job_id: Option<&str>,
    chain_id: Option<u64>,
    id: Option<&str>,
) -> String {
    let mut f = String::with_capacity(160);
    f.push_str(r#"{"type":"session_init_ack","status":"success","session_id":"#);
    wire::push_json_str(&mut f, session_id);
    if let Some(j) = job_id {
        f.push_str(r#","job_id":"#);
        wire::push_json_str(&mut f, j);
    }
    if let Some(c) = chain_id {
        f.push_str(r#","chain_id":"#);
        wire::push_u64(&mut f, c);
    }
    f.push_str(r#","message":"Session initialized""#);
    if let Some(i) = id {
        f.push_str(r#","id":"#);
        wire::push_json_str(&mut f, i);
    }
    f.push('}');
    f
}

/// `{"type":"error","code":..,"message":..[,"session_id":..][,"id":..]}`
pub(crate) fn error_frame(
    code: ErrorCode,
    message: &str,
    session_id: Option<&str>,
    id: Option<&str>,
) -> String {
    let mut f = String::with_capacity(96 + message.len());
    f.push_str(r#"{"type":"error","code":""#);
    f.push_str(code.as_str());
    f.push_str(r#"","message":"#);
    wire::push_json_str(&mut f, message);
    if let Some(s) = session_id {
        f.push_str(r#","session_id":"#);
        wire::push_json_str(&mut f, s);
    }
    if let Some(i) = id {
        f.push_str(r#","id":"#);
        wire::push_json_str(&mut f, i);
    }
    f.push('}');
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_session_per_connection_allocates_one_slot() {
        use rand_core::SeedableRng;
        let cfg = NodeConfig {
            allow_plaintext: true,
            ..NodeConfig::default()
        };
        let key = SecretKey::from_bytes(&[7; 32]).unwrap();
        let mut node = Node::new(key, cfg, rand_chacha::ChaCha20Rng::from_seed([0; 32]));
        let conn = node.connect(Instant::ZERO).unwrap();
        let init = r#"{"type":"session_init","chain_id":1,"session_id":"1","jobId":"2"}"#;
        node.handle_frame(Instant::ZERO, conn, init).unwrap();
        node.accept(Instant::ZERO, conn, "1").unwrap();
        assert_eq!(node.conns[&conn].sessions.capacity(), 1);
        // Exactly one live deadline entry per session, also after it re-arms.
        assert_eq!(node.timers.len(), 1);
        let due = node.poll_timeout().unwrap();
        node.handle_timeout(due);
        assert_eq!(node.timers.len(), 1);
        assert_eq!(node.stats().sessions_active, 1);
    }

    #[test]
    fn per_session_struct_stays_within_its_memory_budget() {
        let size = core::mem::size_of::<NodeSession>();
        assert!(
            size <= NodeSession::SIZE_BOUND,
            "NodeSession is {size} bytes"
        );
        // Beside the ids: struct + timer entry + replay entry (B-tree ≈ 60 B incl. node
        // overhead, expiry queue 41 B) + a connection's B-tree entry (≈ 48 B) ≤ 512 B.
        let replay_entry = 60 + core::mem::size_of::<(Instant, [u8; 33])>();
        let timer_entry = core::mem::size_of::<Reverse<(Instant, ConnectionId, u64)>>();
        let conn_entry = 48;
        assert!(size + replay_entry + timer_entry + conn_entry <= 512);
    }

    #[test]
    fn error_frames_have_the_sdk_shape() {
        assert_eq!(
            error_frame(ErrorCode::InvalidAad, "bad \"aad\"", Some("7"), Some("1-a")),
            r#"{"type":"error","code":"INVALID_AAD","message":"bad \"aad\"","session_id":"7","id":"1-a"}"#
        );
    }
}
