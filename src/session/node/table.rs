//! The node's session table: every open connection with its sessions, the deadline heap that
//! expires them, and the counts [`NodeStats`](super::NodeStats) reports. One [`NodeSession`]
//! holds one key and its counters; only this file changes a session's fields.
//!
//! Why a heap with lazy deletion: `poll_timeout` must stay O(1) and expiry O(log n) with
//! 100 000 sessions. Each session has exactly one live heap entry (its `armed` deadline);
//! entries of closed sessions or superseded deadlines stay in the heap and are skipped when
//! they surface, and the heap is rebuilt when they outnumber the live ones.
//!
//! Memory (64-bit, established session): the [`NodeSession`] (≤ [`NodeSession::SIZE_BOUND`],
//! asserted by a test) in its connection's exactly-sized `Vec` and its boxed key (48 B with the
//! allocator's header), one heap entry (32 B), one
//! replay-cache entry (≈ 80 B in the B-tree + 41 B in the expiry queue), the client's quota
//! counter in the replay cache (≈ 40 B, shared by all its sessions) and, for the usual one
//! session per connection, the connection's B-tree entry (≈ 48 B): ≈ 400 B, plus the heap
//! bytes of `session_id` and `job_id` (≤ 78 each). Transiently a `Pending` (≈ 56 B, until
//! accept) or an `AnswerStream` (32 B + request id, while answering).

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BinaryHeap};
use alloc::vec::Vec;
use core::cmp::{min, Reverse};

use super::{CloseReason, ConnectionId};
use crate::crypto::secp256k1::Address;
use crate::crypto::SecretBytes;
use crate::session::config::NodeConfig;
use crate::session::error::NodeError;
use crate::session::replay::EphKey;
use crate::time::{Duration, Instant};

/// A heap entry: (deadline, connection, session uid), earliest first.
type Deadline = Reverse<(Instant, ConnectionId, u64)>;

/// The limits and timers of the table, copied from the [`NodeConfig`].
#[derive(Clone, Copy)]
struct Limits {
    max_connections: usize,
    max_sessions: usize,
    max_per_connection: usize,
    accept_timeout: Duration,
    session_ttl: Duration,
    idle_timeout: Duration,
}

/// Where a session sits: valid until the table next changes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    conn: ConnectionId,
    pos: usize,
}

/// What only a pending (not yet accepted) session needs.
#[cfg_attr(fuzzing, derive(Clone))]
pub(super) struct Pending {
    /// The init's ephemeral key, forgotten by the replay cache if the session never opens.
    pub(super) eph: Option<EphKey>,
    /// The plaintext `session_init`'s `id`, echoed by the ack or the error.
    pub(super) init_id: Option<Box<str>>,
}

/// The answer being streamed: its request and the next `chunk_<i>`.
#[cfg_attr(fuzzing, derive(Clone))]
struct AnswerStream {
    request_id: Box<str>,
    next_index: u64,
}

/// A new session as the embedder is asked about it.
pub(super) struct NewSession<'a> {
    pub(super) session_id: &'a str,
    pub(super) job_id: &'a str,
    pub(super) chain_id: u64,
    pub(super) client_address: Option<Address>,
    pub(super) encrypted: bool,
    pub(super) key: SecretBytes<32>,
    pub(super) pending: Pending,
}

/// One session on a connection: its key and counters.
pub(crate) struct NodeSession {
    session_id: Box<str>,
    job_id: Box<str>,
    uid: u64,
    /// Boxed so that it never moves: a session moves when its connection's `Vec` grows or
    /// `swap_remove`s, and a move leaves the old bytes behind unwiped. In its box the key is
    /// written once and wiped in place (on re-key, close, expiry and drop).
    key: Box<SecretBytes<32>>,
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

/// Fuzz targets clone an established node per input (cargo-fuzz builds with `--cfg fuzzing`);
/// no other build can copy a session key.
#[cfg(fuzzing)]
impl Clone for NodeSession {
    fn clone(&self) -> Self {
        NodeSession {
            session_id: self.session_id.clone(),
            job_id: self.job_id.clone(),
            uid: self.uid,
            key: Box::new(self.key.clone_secret()),
            last_index: self.last_index,
            installed: self.installed,
            last_active: self.last_active,
            armed: self.armed,
            chain_id: self.chain_id,
            client_address: self.client_address,
            encrypted: self.encrypted,
            pending: self.pending.clone(),
            stream: self.stream.clone(),
        }
    }
}

impl NodeSession {
    /// Upper bound of `size_of::<NodeSession>()` the memory test enforces.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) const SIZE_BOUND: usize = 136;

    pub(super) fn session_id(&self) -> &str {
        &self.session_id
    }

    pub(super) fn job_id(&self) -> &str {
        &self.job_id
    }

    pub(super) fn chain_id(&self) -> u64 {
        self.chain_id
    }

    pub(super) fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// Still waiting for the embedder's accept or reject.
    pub(super) fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    pub(super) fn pending(&self) -> Option<&Pending> {
        self.pending.as_deref()
    }

    pub(super) fn key(&self) -> &SecretBytes<32> {
        &self.key
    }

    /// Whether a re-init from `client` for `job_id` on `chain_id` may replace this session's
    /// key: only an encrypted session of the same recovered address, job and chain
    /// ([docs/fabstir-wire.md §7.3]; the embedder checked job ownership on that chain).
    pub(super) fn rekeyable_by(&self, client: &Address, job_id: &str, chain_id: u64) -> bool {
        self.encrypted
            && self.client_address.as_ref() == Some(client)
            && &*self.job_id == job_id
            && self.chain_id == chain_id
    }

    /// Replaces the key (the old one is wiped in place) and restarts the message index.
    pub(super) fn rekey(&mut self, now: Instant, key: SecretBytes<32>) {
        *self.key = key;
        self.last_index = None;
        self.installed = now;
        self.last_active = now;
        self.stream = None;
    }

    /// Whether message `index` is above every accepted one.
    pub(super) fn is_fresh(&self, index: u64) -> bool {
        self.last_index.is_none_or(|last| index > last)
    }

    /// Records an accepted message.
    pub(super) fn record_message(&mut self, now: Instant, index: u64) {
        self.last_index = Some(index);
        self.last_active = now;
    }

    /// Records activity (a cancel, a plaintext prompt).
    pub(super) fn touch(&mut self, now: Instant) {
        self.last_active = now;
    }

    /// The index of the next chunk of the answer to `request_id`: 0 for a new request.
    pub(super) fn next_chunk(&mut self, now: Instant, request_id: &str) -> u64 {
        self.last_active = now;
        match &mut self.stream {
            Some(st) if &*st.request_id == request_id => {
                let index = st.next_index;
                st.next_index = st.next_index.saturating_add(1);
                index
            }
            slot => {
                *slot = Some(Box::new(AnswerStream {
                    request_id: request_id.into(),
                    next_index: 1,
                }));
                0
            }
        }
    }

    /// The answer to `request_id` ended: how many chunks it had (0 when none was sent for it).
    pub(super) fn end_answer(&mut self, now: Instant, request_id: &str) -> u64 {
        self.last_active = now;
        match self.stream.take() {
            Some(st) if &*st.request_id == request_id => st.next_index,
            _ => 0,
        }
    }

    /// When this session expires: the accept timeout while pending, else the earlier of its
    /// key lifetime and its idle timeout.
    fn deadline(&self, limits: &Limits) -> Instant {
        if self.pending.is_some() {
            self.installed.saturating_add(limits.accept_timeout)
        } else {
            min(
                self.installed.saturating_add(limits.session_ttl),
                self.last_active.saturating_add(limits.idle_timeout),
            )
        }
    }
}

/// A session removed because its deadline passed.
pub(super) struct Expired {
    pub(super) conn: ConnectionId,
    pub(super) session: NodeSession,
    pub(super) reason: CloseReason,
}

/// Every connection and session of a node, with their deadlines.
#[cfg_attr(fuzzing, derive(Clone))]
pub(super) struct SessionTable {
    conns: BTreeMap<ConnectionId, Vec<NodeSession>>,
    next_conn: u64,
    next_uid: u64,
    sessions: usize,
    pending: usize,
    deadlines: BinaryHeap<Deadline>,
    limits: Limits,
}

impl SessionTable {
    pub(super) fn new(config: &NodeConfig) -> Self {
        SessionTable {
            conns: BTreeMap::new(),
            next_conn: 1,
            next_uid: 1,
            sessions: 0,
            pending: 0,
            deadlines: BinaryHeap::new(),
            limits: Limits {
                max_connections: config.max_connections,
                max_sessions: config.max_sessions,
                max_per_connection: config.max_sessions_per_connection,
                accept_timeout: config.accept_timeout,
                session_ttl: config.session_ttl,
                idle_timeout: config.idle_timeout,
            },
        }
    }

    // ------------------------------------------------------------------------- connections

    pub(super) fn connect(&mut self) -> Result<ConnectionId, NodeError> {
        if self.conns.len() >= self.limits.max_connections {
            return Err(NodeError::Capacity("connections"));
        }
        let id = ConnectionId(self.next_conn);
        self.next_conn = self
            .next_conn
            .checked_add(1)
            .ok_or(NodeError::Capacity("connections"))?;
        self.conns.insert(id, Vec::new());
        Ok(id)
    }

    /// Removes the connection; returns its sessions (to report and wipe).
    pub(super) fn disconnect(&mut self, conn: ConnectionId) -> Vec<NodeSession> {
        let sessions = self.conns.remove(&conn).unwrap_or_default();
        for s in &sessions {
            self.uncount(s);
        }
        sessions
    }

    pub(super) fn contains(&self, conn: ConnectionId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// Open connections.
    pub(super) fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Sessions, pending ones included.
    pub(super) fn sessions(&self) -> usize {
        self.sessions
    }

    /// Sessions waiting for the embedder.
    pub(super) fn pending(&self) -> usize {
        self.pending
    }

    // ---------------------------------------------------------------------------- lookups

    /// The first session on `conn` for which `matches` holds.
    pub(super) fn find_where(
        &self,
        conn: ConnectionId,
        matches: impl Fn(&NodeSession) -> bool,
    ) -> Option<Slot> {
        let pos = self.conns.get(&conn)?.iter().position(matches)?;
        Some(Slot { conn, pos })
    }

    /// `session_id` on `conn`, pending or accepted.
    pub(super) fn find(&self, conn: ConnectionId, session_id: &str) -> Option<Slot> {
        self.find_where(conn, |s| &*s.session_id == session_id)
    }

    /// Like [`Self::find`], with the error an embedder call gets.
    pub(super) fn locate(&self, conn: ConnectionId, session_id: &str) -> Result<Slot, NodeError> {
        let sessions = self.conns.get(&conn).ok_or(NodeError::UnknownConnection)?;
        let pos = sessions
            .iter()
            .position(|s| &*s.session_id == session_id)
            .ok_or(NodeError::UnknownSession)?;
        Ok(Slot { conn, pos })
    }

    /// An accepted session, or the error an embedder call gets.
    pub(super) fn active(&self, conn: ConnectionId, session_id: &str) -> Result<Slot, NodeError> {
        let slot = self.locate(conn, session_id)?;
        match self.get(slot) {
            Some(s) if !s.is_pending() => Ok(slot),
            Some(_) => Err(NodeError::SessionNotAccepted),
            None => Err(NodeError::UnknownSession),
        }
    }

    /// [`Self::active`] in one lookup, for the answer path.
    pub(super) fn active_mut(
        &mut self,
        conn: ConnectionId,
        session_id: &str,
    ) -> Result<&mut NodeSession, NodeError> {
        let sessions = self
            .conns
            .get_mut(&conn)
            .ok_or(NodeError::UnknownConnection)?;
        let s = sessions
            .iter_mut()
            .find(|s| &*s.session_id == session_id)
            .ok_or(NodeError::UnknownSession)?;
        if s.is_pending() {
            return Err(NodeError::SessionNotAccepted);
        }
        Ok(s)
    }

    pub(super) fn get(&self, slot: Slot) -> Option<&NodeSession> {
        self.conns.get(&slot.conn)?.get(slot.pos)
    }

    pub(super) fn get_mut(&mut self, slot: Slot) -> Option<&mut NodeSession> {
        self.conns.get_mut(&slot.conn)?.get_mut(slot.pos)
    }

    // -------------------------------------------------------------------------- lifecycle

    /// Whether one more session fits node-wide and on `conn`.
    pub(super) fn check_room(&self, conn: ConnectionId) -> Result<(), NodeError> {
        if self.sessions >= self.limits.max_sessions {
            return Err(NodeError::Capacity("sessions"));
        }
        let n = self.conns.get(&conn).map_or(0, Vec::len);
        if n >= self.limits.max_per_connection {
            return Err(NodeError::Capacity("sessions per connection"));
        }
        Ok(())
    }

    /// Adds a pending session (the caller checked [`Self::check_room`]); it expires after the
    /// accept timeout unless accepted.
    pub(super) fn insert_pending(&mut self, now: Instant, conn: ConnectionId, new: NewSession) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let uid = self.next_uid;
        // One per session ever opened: 2^64 is out of reach, and wrapping would only reuse
        // the uid of a session long gone.
        self.next_uid = self.next_uid.wrapping_add(1);
        let armed = now.saturating_add(self.limits.accept_timeout);
        // Exact growth: the SDK opens one session per connection, and `Vec`'s default first
        // allocation (4 slots) would quadruple its memory.
        c.reserve_exact(1);
        c.push(NodeSession {
            session_id: new.session_id.into(),
            job_id: new.job_id.into(),
            uid,
            key: Box::new(new.key),
            last_index: None,
            installed: now,
            last_active: now,
            armed,
            chain_id: new.chain_id,
            client_address: new.client_address,
            encrypted: new.encrypted,
            pending: Some(Box::new(new.pending)),
            stream: None,
        });
        // Bounded by `max_sessions` (the caller checked `check_room`).
        self.sessions = self.sessions.saturating_add(1);
        self.pending = self.pending.saturating_add(1);
        self.deadlines.push(Reverse((armed, conn, uid)));
    }

    /// Marks a pending session accepted at `now`: its key lifetime starts.
    pub(super) fn accept(&mut self, slot: Slot, now: Instant) -> Result<(), NodeError> {
        let deadline = now.saturating_add(min(self.limits.session_ttl, self.limits.idle_timeout));
        let s = self.get_mut(slot).ok_or(NodeError::UnknownSession)?;
        if s.pending.take().is_none() {
            return Err(NodeError::UnknownSession);
        }
        s.installed = now;
        s.last_active = now;
        // Keep exactly one live heap entry: re-arm only if the deadline moved earlier;
        // otherwise the pending entry fires first and re-arms itself.
        let rearm = (deadline < s.armed).then(|| {
            s.armed = deadline;
            s.uid
        });
        self.pending = self.pending.saturating_sub(1);
        if let Some(uid) = rearm {
            self.deadlines.push(Reverse((deadline, slot.conn, uid)));
        }
        Ok(())
    }

    /// Removes a session (its heap entry goes stale).
    pub(super) fn remove(&mut self, slot: Slot) -> Option<NodeSession> {
        let c = self.conns.get_mut(&slot.conn)?;
        if slot.pos >= c.len() {
            return None;
        }
        let s = c.swap_remove(slot.pos);
        self.uncount(&s);
        Some(s)
    }

    fn uncount(&mut self, s: &NodeSession) {
        self.sessions = self.sessions.saturating_sub(1);
        if s.pending.is_some() {
            self.pending = self.pending.saturating_sub(1);
        }
    }

    // -------------------------------------------------------------------------- deadlines

    /// The earliest deadline (O(1): the heap's top). It may be early — a session active since
    /// — in which case [`Self::next_expired`] simply re-arms it.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Removes and returns the next session whose deadline is at or before `now`
    /// (O(log n) per heap entry it pops), or `None` when no more are due.
    pub(super) fn next_expired(&mut self, now: Instant) -> Option<Expired> {
        while let Some(&Reverse((due, conn, uid))) = self.deadlines.peek() {
            if due > now {
                break;
            }
            self.deadlines.pop();
            let Some(sessions) = self.conns.get_mut(&conn) else {
                continue; // the connection is gone
            };
            let Some(pos) = sessions.iter().position(|s| s.uid == uid) else {
                continue; // the session is gone
            };
            let Some(s) = sessions.get_mut(pos) else {
                continue;
            };
            if s.armed != due {
                continue; // superseded entry
            }
            let actual = s.deadline(&self.limits);
            if actual > now {
                s.armed = actual;
                self.deadlines.push(Reverse((actual, conn, uid)));
                continue;
            }
            let idle = s.pending.is_none()
                && s.last_active.saturating_add(self.limits.idle_timeout) <= now;
            let reason = if idle {
                CloseReason::Idle
            } else {
                CloseReason::Expired
            };
            if let Some(session) = self.remove(Slot { conn, pos }) {
                return Some(Expired {
                    conn,
                    session,
                    reason,
                });
            }
        }
        // Stale entries (closed sessions) are bounded: rebuild when they dominate.
        if self.deadlines.len() > self.sessions.saturating_mul(2).saturating_add(64) {
            self.rebuild_deadlines();
        }
        None
    }

    fn rebuild_deadlines(&mut self) {
        let mut v = Vec::with_capacity(self.sessions);
        for (conn, sessions) in self.conns.iter_mut() {
            for s in sessions.iter_mut() {
                s.armed = s.deadline(&self.limits);
                v.push(Reverse((s.armed, *conn, s.uid)));
            }
        }
        self.deadlines = BinaryHeap::from(v);
    }

    /// Slots allocated for `conn`'s sessions (memory tests).
    #[cfg(test)]
    pub(super) fn slots(&self, conn: ConnectionId) -> usize {
        self.conns.get(&conn).map_or(0, Vec::capacity)
    }

    /// Entries in the deadline heap, stale ones included (memory tests).
    #[cfg(test)]
    pub(super) fn deadline_entries(&self) -> usize {
        self.deadlines.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_session_struct_stays_within_its_memory_budget() {
        let size = core::mem::size_of::<NodeSession>();
        assert!(
            size <= NodeSession::SIZE_BOUND,
            "NodeSession is {size} bytes"
        );
        // Beside the ids: struct + boxed key + timer entry + replay entry (B-tree ≈ 60 B incl.
        // node overhead, expiry queue 41 B) + a connection's B-tree entry (≈ 48 B) ≤ 512 B.
        let boxed_key = core::mem::size_of::<SecretBytes<32>>() + 16;
        let replay_entry = 60 + core::mem::size_of::<(Instant, [u8; 33])>();
        let timer_entry = core::mem::size_of::<Deadline>();
        let conn_entry = 48;
        assert!(size + boxed_key + replay_entry + timer_entry + conn_entry <= 512);
    }
}
