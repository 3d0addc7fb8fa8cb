//! The node (inference host) machine: frames from many connections in, events for the
//! embedder and frames out, and the embedder's decisions (accept, reject, answers) in.
//!
//! The node owns its host key, a [`SessionTable`](table) (connections, sessions, deadlines),
//! the replay cache and its two bounded queues. Each kind of frame is handled in its own file:
//! `init.rs` (`encrypted_session_init`), `message.rs` (`encrypted_message`), `plaintext.rs`
//! (the legacy frames), `answer.rs` (what the node sends while answering).

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use zeroize::Zeroizing;

use super::config::NodeConfig;
use super::error::{ErrorCode, NodeError};
use super::replay::{ReplayCache, RestoreError};
use super::wire::client_frames::Echo;
use super::wire::{ClientFrame, ClientFrameKind, ErrorFrame, InitAck, StreamCancel, PONG};
use super::{CheckpointDelta, CheckpointMessage};
use crate::crypto::secp256k1::{Address, PublicKey, SecretKey};
use crate::queue::Outbox;
use crate::time::{Instant, WallTime};

pub use super::events::{
    CloseReason, ConnectionId, NodeEvent, NodeStats, PromptImage, PromptRequest, SessionRequest,
    StreamEnd, Transmit,
};

mod answer;
mod init;
mod message;
mod plaintext;
mod table;

use table::{Expired, NodeSession, SessionTable};

/// The node: verifies and decrypts SDK frames for many sessions, encrypts answers.
///
/// ```
/// use sealwire::session::{Node, NodeConfig, NodeEvent, SecretKey};
/// use sealwire::time::Instant;
/// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
///
/// let key = SecretKey::from_bytes(&[7; 32])?;
/// let mut node = Node::new(key, NodeConfig::default(), ChaCha20Rng::from_seed([0; 32]))?;
/// let conn = node.connect()?;
/// node.handle_frame(Instant::ZERO, conn, r#"{"type":"ping"}"#)?;
/// assert_eq!(node.poll_transmit().unwrap().frame, r#"{"type":"pong"}"#);
/// // A bad frame gets exactly one error frame and changes nothing else.
/// assert!(node.handle_frame(Instant::ZERO, conn, "not json").is_err());
/// assert!(node.poll_transmit().unwrap().frame.contains(r#""code":"INVALID_MESSAGE""#));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Node<R> {
    /// Boxed so that moving the node never copies the host key (a move leaves the old bytes
    /// behind unwiped); wiped in place on drop.
    key: Box<SecretKey>,
    public: PublicKey,
    public_compressed: [u8; 33],
    address: Address,
    config: NodeConfig,
    rng: R,
    table: SessionTable,
    replay: ReplayCache,
    transmits: Outbox<Transmit>,
    events: Outbox<NodeEvent>,
    stats: NodeStats,
    /// Plaintexts too long for the stack are sealed here (wiped on drop).
    scratch: Zeroizing<Vec<u8>>,
}

/// Fuzz targets clone an established node per input (cargo-fuzz builds with `--cfg fuzzing`);
/// no other build can copy the host key or a session key.
#[cfg(fuzzing)]
impl<R: Clone> Clone for Node<R> {
    fn clone(&self) -> Self {
        Node {
            key: self.key.clone(),
            public: self.public,
            public_compressed: self.public_compressed,
            address: self.address,
            config: self.config.clone(),
            rng: self.rng.clone(),
            table: self.table.clone(),
            replay: self.replay.clone(),
            transmits: self.transmits.clone(),
            events: self.events.clone(),
            stats: self.stats.clone(),
            scratch: self.scratch.clone(),
        }
    }
}

impl<R> fmt::Debug for Node<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("address", &self.address)
            .field("connections", &self.table.connections())
            .field("sessions", &self.table.sessions())
            .finish_non_exhaustive()
    }
}

impl<R: rand_core::CryptoRng> Node<R> {
    /// A node with the host key `key`; `Err(InvalidConfig(field))` for a configuration it
    /// cannot run with (a zero capacity, size or timer).
    ///
    /// ```
    /// use sealwire::session::{Node, NodeConfig, NodeError, SecretKey};
    /// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// let config = NodeConfig { queue_capacity: 0, ..NodeConfig::default() };
    /// let node = Node::new(SecretKey::from_bytes(&[7; 32]).unwrap(), config, ChaCha20Rng::from_seed([0; 32]));
    /// assert_eq!(node.err(), Some(NodeError::InvalidConfig("queue_capacity")));
    /// ```
    pub fn new(key: SecretKey, config: NodeConfig, rng: R) -> Result<Self, NodeError> {
        config.check()?;
        let public = key.public_key();
        Ok(Node {
            public_compressed: public.to_compressed(),
            address: public.address(),
            public,
            key: Box::new(key),
            table: SessionTable::new(&config),
            replay: ReplayCache::new(
                config.replay_cache_capacity,
                config.replay_cache_per_client,
                config.session_ttl,
            ),
            transmits: Outbox::new(config.queue_capacity),
            events: Outbox::new(config.queue_capacity),
            config,
            rng,
            stats: NodeStats::default(),
            scratch: Zeroizing::new(Vec::new()),
        })
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

    /// Registers a new WebSocket connection (`Capacity` beyond `max_connections`).
    pub fn connect(&mut self) -> Result<ConnectionId, NodeError> {
        self.table.connect()
    }

    /// Forgets a connection: wipes the key of each of its sessions, emits `SessionClosed` for
    /// each and drops the frames still queued for it.
    pub fn disconnect(&mut self, conn: ConnectionId) {
        for s in self.table.disconnect(conn) {
            self.events.push(NodeEvent::SessionClosed {
                conn,
                session_id: s.session_id().to_string(),
                reason: CloseReason::Disconnected,
            });
            // `s` drops here: its key is wiped.
        }
        self.transmits.retain(|t| t.conn != conn);
    }

    /// Handles one WebSocket text frame from `conn`.
    ///
    /// On `Err` exactly one `error` frame is queued for `conn` (except for
    /// [`NodeError::UnknownConnection`]) and no session changed.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        frame: &str,
    ) -> Result<(), NodeError> {
        if !self.table.contains(conn) {
            return Err(NodeError::UnknownConnection);
        }
        self.stats.frames_received = self.stats.frames_received.saturating_add(1);
        // Bound memory before serde sees a byte.
        if frame.len() > self.config.max_frame_len {
            self.reject_frame(conn, Echo::default(), NodeError::FrameTooLarge);
            return Err(NodeError::FrameTooLarge);
        }
        let parsed = ClientFrame::parse(frame);
        let result = match &parsed {
            Ok(f) => self.dispatch(now, conn, f),
            Err(e) => Err(*e),
        };
        if let Err(e) = result {
            let echo = parsed.as_ref().map(ClientFrame::echo).unwrap_or_default();
            self.reject_frame(conn, echo, e);
        }
        result
    }

    fn dispatch(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        frame: &ClientFrame<'_>,
    ) -> Result<(), NodeError> {
        let kind = frame.kind()?;
        // The legacy frames authenticate nothing: refused unless the node opted in.
        let plaintext = matches!(kind, ClientFrameKind::SessionInit | ClientFrameKind::Prompt);
        if plaintext && !self.config.allow_plaintext {
            return Err(NodeError::PlaintextDisabled);
        }
        match kind {
            ClientFrameKind::EncryptedSessionInit => self.on_encrypted_init(now, conn, frame),
            ClientFrameKind::EncryptedMessage => self.on_encrypted_message(now, conn, frame),
            ClientFrameKind::SessionInit => self.on_plain_init(now, conn, frame),
            ClientFrameKind::Prompt => self.on_plain_prompt(now, conn, frame),
            ClientFrameKind::Ping => self.queue(conn, PONG.into()),
            ClientFrameKind::StreamCancel => self.on_cancel(now, conn, frame),
        }
    }

    /// The one `error` frame of a rejected input (dropped and counted if the queue is full).
    fn reject_frame(&mut self, conn: ConnectionId, echo: Echo<'_>, e: NodeError) {
        self.stats.count_rejection(e.code());
        let frame = ErrorFrame {
            code: e.code(),
            message: "",
            sentence: e.sentence(),
            session_id: echo.session_id,
            id: echo.id,
            token_limit: None,
        }
        .emit();
        self.transmits.push(Transmit { conn, frame });
    }

    fn on_cancel(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        frame: &ClientFrame<'_>,
    ) -> Result<(), NodeError> {
        let cancel = StreamCancel::parse(frame)?;
        let slot = self
            .table
            .find(conn, cancel.session_id)
            .ok_or(NodeError::SessionKeyNotFound)?;
        if self.table.get(slot).is_some_and(NodeSession::is_pending) {
            return Err(NodeError::SessionNotAccepted);
        }
        self.ensure_room(0, 1)?;
        if let Some(s) = self.table.get_mut(slot) {
            s.touch(now);
        }
        self.events.push(NodeEvent::Cancel {
            conn,
            session_id: cancel.session_id.to_string(),
            reason: cancel.reason.to_string(),
        });
        Ok(())
    }

    // ---------------------------------------------------------------- embedder decisions

    /// Accepts a [`NodeEvent::SessionRequested`]: `session_init_ack` is queued and the key's
    /// lifetime starts at `now` (which is why `accept` takes the time and
    /// [`reject`](Self::reject) does not). `Capacity` when the transmit queue is full.
    pub fn accept(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        session_id: &str,
    ) -> Result<(), NodeError> {
        let slot = self.table.locate(conn, session_id)?;
        let ack = {
            let s = self.table.get(slot).ok_or(NodeError::UnknownSession)?;
            let pending = s.pending().ok_or(NodeError::UnknownSession)?;
            InitAck {
                session_id,
                job_id: s.job_id(),
                chain_id: s.chain_id(),
                id: pending.init_id.as_deref(),
            }
            .emit()
        };
        self.ensure_room(1, 0)?;
        self.table.accept(slot, now)?;
        self.queue(conn, ack)
    }

    /// Rejects a [`NodeEvent::SessionRequested`]: an `error` frame `NOT_AUTHORIZED` with
    /// `message` (what the client shows) is queued and the key material wiped. Unlike
    /// [`accept`](Self::accept) it takes no time (nothing starts) but the text the client
    /// sees. `Capacity` when the transmit queue is full (the request then stays pending).
    pub fn reject(
        &mut self,
        conn: ConnectionId,
        session_id: &str,
        message: &str,
    ) -> Result<(), NodeError> {
        let slot = self.table.locate(conn, session_id)?;
        if !self.table.get(slot).is_some_and(NodeSession::is_pending) {
            return Err(NodeError::UnknownSession);
        }
        self.ensure_room(1, 0)?;
        let s = self.table.remove(slot).ok_or(NodeError::UnknownSession)?;
        let pending = s.pending();
        if let Some(eph) = pending.and_then(|p| p.eph) {
            self.replay.forget(&eph);
        }
        let frame = ErrorFrame {
            code: ErrorCode::NotAuthorized,
            message,
            sentence: [""; 3],
            session_id: Some(session_id),
            id: pending.and_then(|p| p.init_id.as_deref()),
            token_limit: None,
        }
        .emit();
        self.stats.count_rejection(ErrorCode::NotAuthorized);
        self.queue(conn, frame)
    }

    /// Closes a session: wipes its key and emits `SessionClosed`. Never refused for a full
    /// event queue (wiping the key matters more than the event, which is then dropped and
    /// counted).
    pub fn close_session(&mut self, conn: ConnectionId, session_id: &str) -> Result<(), NodeError> {
        let slot = self.table.locate(conn, session_id)?;
        let s = self.table.remove(slot).ok_or(NodeError::UnknownSession)?;
        if let Some(eph) = s.pending().and_then(|p| p.eph) {
            self.replay.forget(&eph);
        }
        self.events.push(NodeEvent::SessionClosed {
            conn,
            session_id: session_id.to_string(),
            reason: CloseReason::Closed,
        });
        Ok(())
    }

    // ---------------------------------------------------------------- outputs and time

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop()
    }

    /// The next event for the embedder.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop()
    }

    /// The next deadline (O(1): the top of a binary heap). It may be early — a session that
    /// was active since — in which case `handle_timeout` simply re-arms it.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.table.poll_timeout()
    }

    /// Expires keys (TTL, idle) and unanswered requests due at `now` (O(log n) per due
    /// entry). A request the embedder never answered gets its client one `error` frame
    /// (`SESSION_NOT_ACCEPTED`).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Expired {
            conn,
            session,
            reason,
        }) = self.table.next_expired(now)
        {
            if let Some(p) = session.pending() {
                if let Some(eph) = p.eph {
                    self.replay.forget(&eph);
                }
                let frame = ErrorFrame {
                    code: ErrorCode::SessionNotAccepted,
                    message: "session was not accepted in time",
                    sentence: [""; 3],
                    session_id: Some(session.session_id()),
                    id: p.init_id.as_deref(),
                    token_limit: None,
                }
                .emit();
                self.transmits.push(Transmit { conn, frame });
            }
            self.events.push(NodeEvent::SessionClosed {
                conn,
                session_id: session.session_id().to_string(),
                reason,
            });
        }
    }

    // ---------------------------------------------------------------- side protocols

    /// Host-key challenge ([docs/fabstir-wire.md §5.1]): the JSON body of `POST
    /// /v1/auth/challenge` → the JSON response body `{"signature":"<r‖s hex>","recid":n}`.
    pub fn answer_challenge(&self, body: &[u8]) -> Result<String, NodeError> {
        super::challenge::answer(&self.key, body)
    }

    /// Checkpoint delta for a session's `recoveryPublicKey` ([docs/fabstir-wire.md §5.2]) →
    /// the published JSON object text.
    pub fn encrypt_checkpoint_delta(
        &mut self,
        recovery_public_key: &PublicKey,
        delta: &CheckpointDelta,
    ) -> Result<String, NodeError> {
        super::checkpoint::encrypt(&self.key, recovery_public_key, delta, &mut self.rng)
    }

    /// The inner `hostSignature` of a checkpoint delta: EIP-191 signature by the host key
    /// over the sorted compact JSON text of `messages` (as the reference node does).
    pub fn sign_checkpoint_messages(
        &self,
        messages: &[CheckpointMessage],
    ) -> Result<String, NodeError> {
        super::checkpoint::sign_messages(&self.key, messages)
    }

    /// Counters.
    pub fn stats(&self) -> NodeStats {
        let mut s = self.stats.clone();
        s.connections = self.table.connections();
        s.sessions_pending = self.table.pending();
        s.sessions_active = self.table.sessions().saturating_sub(self.table.pending());
        s.replay_cache_len = self.replay.len();
        s.replay_cache_inserts = self.replay.inserts();
        s.transmits_dropped = self.transmits.dropped();
        s.events_dropped = self.events.dropped();
        s
    }

    // ---------------------------------------------------------------- replay state

    /// The replay cache as bytes to keep across a restart: every ephemeral key seen within
    /// the key lifetime, with the client it belongs to and what is left of its lifetime at
    /// `now`, stamped with the wall-clock time `wall` of the same moment.
    ///
    /// Why: a node that forgets which inits it saw accepts every init recorded on the wire
    /// within the key lifetime again after a restart, and runs the prompt that follows under
    /// the victim's address. Save this whenever [`NodeStats::replay_cache_inserts`] changed,
    /// before sending the frames the same input queued (the ack of an accepted init), and
    /// hand it to [`Node::restore_replay_state`] at start. The bytes hold public values only
    /// (ephemeral keys and addresses seen on the wire); their integrity is the embedder's
    /// (a file only the node can write): an entry removed from them is a replay let in.
    ///
    /// ```
    /// use sealwire::session::{Node, NodeConfig, SecretKey};
    /// use sealwire::time::{Instant, WallTime};
    /// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// let key = || SecretKey::from_bytes(&[7; 32]).unwrap();
    /// let node = Node::new(key(), NodeConfig::default(), ChaCha20Rng::from_seed([0; 32]))?;
    /// let state = node.replay_state(Instant::ZERO, WallTime::from_unix(1_700_000_000, 0));
    /// // … the process restarts; its clock starts again at zero …
    /// let mut node = Node::new(key(), NodeConfig::default(), ChaCha20Rng::from_seed([1; 32]))?;
    /// let restored = node.restore_replay_state(Instant::ZERO, WallTime::from_unix(1_700_000_060, 0), &state)?;
    /// assert_eq!(restored, 0); // nothing was seen yet
    /// # Ok::<(), sealwire::session::NodeError>(())
    /// ```
    pub fn replay_state(&self, now: Instant, wall: WallTime) -> Vec<u8> {
        self.replay.export(now, wall)
    }

    /// Adds the entries of a [`Node::replay_state`] to the replay cache: each lives on for what
    /// was left of its lifetime minus the wall-clock time passed since the state was taken
    /// (`wall` now against the state's stamp; a clock that went backwards counts as no time).
    /// Returns how many entries were added. `Err(InvalidReplayState(…))`, with nothing
    /// changed, for bytes that are not such a state or that hold more live entries than
    /// [`NodeConfig::replay_cache_capacity`].
    pub fn restore_replay_state(
        &mut self,
        now: Instant,
        wall: WallTime,
        state: &[u8],
    ) -> Result<usize, NodeError> {
        self.replay.restore(now, wall, state).map_err(|e| match e {
            RestoreError::Malformed => NodeError::InvalidReplayState("not a replay state"),
            RestoreError::TooMany => {
                NodeError::InvalidReplayState("more entries than replay_cache_capacity")
            }
        })
    }

    // ---------------------------------------------------------------- queues

    /// Fails (before any state change) unless `transmits` more frames and `events` more
    /// events fit: an input or a call whose outputs cannot all be queued does nothing.
    fn ensure_room(&self, transmits: usize, events: usize) -> Result<(), NodeError> {
        if !self.transmits.has_room(transmits) {
            return Err(NodeError::Capacity("transmit queue"));
        }
        if !self.events.has_room(events) {
            return Err(NodeError::Capacity("event queue"));
        }
        Ok(())
    }

    /// Queues a frame for `conn`; a full queue drops (and counts) it and says `Capacity`.
    fn queue(&mut self, conn: ConnectionId, frame: String) -> Result<(), NodeError> {
        if self.transmits.push(Transmit { conn, frame }) {
            Ok(())
        } else {
            Err(NodeError::Capacity("transmit queue"))
        }
    }
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
        let mut node = Node::new(key, cfg, rand_chacha::ChaCha20Rng::from_seed([0; 32])).unwrap();
        let conn = node.connect().unwrap();
        let init = r#"{"type":"session_init","chain_id":1,"session_id":"1","jobId":"2"}"#;
        node.handle_frame(Instant::ZERO, conn, init).unwrap();
        node.accept(Instant::ZERO, conn, "1").unwrap();
        assert_eq!(node.table.slots(conn), 1);
        // Exactly one live deadline entry per session, also after it re-arms.
        assert_eq!(node.table.deadline_entries(), 1);
        let due = node.poll_timeout().unwrap();
        node.handle_timeout(due);
        assert_eq!(node.table.deadline_entries(), 1);
        assert_eq!(node.stats().sessions_active, 1);
    }

    #[test]
    fn error_frames_have_the_sdk_shape() {
        let frame = ErrorFrame {
            code: ErrorCode::InvalidAad,
            message: "bad \"aad\"",
            sentence: [""; 3],
            session_id: Some("7"),
            id: Some("1-a"),
            token_limit: None,
        };
        assert_eq!(
            frame.emit(),
            r#"{"type":"error","code":"INVALID_AAD","message":"bad \"aad\"","session_id":"7","id":"1-a"}"#
        );
    }
}
