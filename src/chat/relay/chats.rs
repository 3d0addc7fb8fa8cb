//! The relay's chat table: who the participants of each chat are (at most two, bound to the
//! identities that started it, a seat reservable by a pin), the frames held for a participant
//! that has not joined yet, each chat's handshake throttle, and idle expiry.
//!
//! Why the seat rules: the relay cannot know who *should* own a fresh chat id, but once two
//! identities hold it nobody else may take either place, and a participant that pinned its peer
//! keeps the second seat for exactly that peer, so a stranger who learns the chat id cannot
//! squat it before the genuine peer arrives.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;

use crate::crypto::ed25519::IdentityPublic;
use crate::time::{Duration, Instant};

use super::super::throttle::Throttle;
use super::super::wire::ChatId;
use super::error::RelayError;

/// One participant: its proven identity and the peer it pinned, if any.
#[derive(Clone, Copy, Debug)]
struct Member {
    identity: IdentityPublic,
    pin: Option<[u8; 32]>,
}

/// One chat the relay routes.
#[derive(Clone)]
pub(super) struct ChatEntry {
    first: Member,
    second: Option<Member>,
    /// Frames the first participant sent before the second joined (moved to its mailbox when
    /// it joins).
    pub(super) held: VecDeque<Vec<u8>>,
    handshakes: Throttle,
    last_active: Instant,
    /// A mesh node saw the peer on another node (it joined there, or sent from there).
    remote_peer: bool,
    /// A mesh node's copies of the frames it forwarded to a peer on another node and that
    /// the peer has not acknowledged yet, oldest first.
    pub(super) recent: VecDeque<Kept>,
    /// Publications of this chat's frames so far (stamps [`Kept::published`]).
    pub(super) publications: u64,
    /// `publications` at the previous [`Relay::republish_waiting`](super::Relay::republish_waiting).
    pub(super) checked: u64,
}

/// A mesh node's copy of a frame it forwarded: published again when the peer (re)joins at
/// some node, or when the peer acknowledged a frame published after it (so it was lost).
#[derive(Clone)]
pub(super) struct Kept {
    /// The chat's publication count when it was last published.
    pub(super) published: u64,
    pub(super) sender: IdentityPublic,
    pub(super) frame: Vec<u8>,
}

impl Kept {
    /// The copy as a frame to publish again, stamped with the chat's next publication
    /// (`publications` is the chat's count).
    pub(super) fn publish_again(
        &mut self,
        publications: &mut u64,
        chat_id: ChatId,
    ) -> super::mesh::Forward {
        *publications = publications.saturating_add(1);
        self.published = *publications;
        super::mesh::Forward {
            chat_id,
            sender: self.sender,
            frame: self.frame.clone(),
        }
    }
}

impl ChatEntry {
    fn other(&self, identity: &IdentityPublic) -> Option<&Member> {
        if self.first.identity == *identity {
            self.second.as_ref()
        } else {
            Some(&self.first)
        }
    }

    /// Publishes again, into `out`, the copies for `peer` (their sender is its peer here)
    /// last published before `before`.
    pub(super) fn publish_again_for(
        &mut self,
        chat_id: ChatId,
        peer: &IdentityPublic,
        before: u64,
        out: &mut Vec<super::mesh::Forward>,
    ) {
        let due: Vec<bool> = self
            .recent
            .iter()
            .map(|k| k.published < before && self.is_peer_of(&k.sender, peer))
            .collect();
        for (kept, _) in self.recent.iter_mut().zip(due).filter(|(_, d)| *d) {
            out.push(kept.publish_again(&mut self.publications, chat_id));
        }
    }

    pub(super) fn is_member(&self, identity: &IdentityPublic) -> bool {
        self.first.identity == *identity || self.second.is_some_and(|m| m.identity == *identity)
    }

    /// Whether `peer`, announcing itself from another node, is (or may become) the other
    /// participant of `sender` here: a member itself, or the pinned (or any, without a pin)
    /// second participant of a chat `sender` holds alone.
    pub(super) fn is_peer_of(&self, sender: &IdentityPublic, peer: &IdentityPublic) -> bool {
        if sender == peer || !self.is_member(sender) {
            return false;
        }
        match self.second {
            Some(_) => self.is_member(peer),
            None => self.first.pin.is_none_or(|p| p == *peer.as_bytes()),
        }
    }

    /// The participants with the peer each pinned, first come first.
    pub(super) fn members_pinned(
        &self,
    ) -> impl Iterator<Item = (IdentityPublic, Option<[u8; 32]>)> + '_ {
        core::iter::once(self.first)
            .chain(self.second)
            .map(|m| (m.identity, m.pin))
    }

    /// The participants, first come first.
    pub(super) fn members(&self) -> impl Iterator<Item = IdentityPublic> + '_ {
        core::iter::once(self.first.identity).chain(self.second.map(|m| m.identity))
    }
}

/// The answer to a successful start.
pub(super) struct Joined {
    /// The other participant, if it has started the chat.
    pub(super) peer: Option<IdentityPublic>,
    /// Whether the caller just became a participant.
    pub(super) new: bool,
    /// Frames that waited for the caller (it completed the chat).
    pub(super) held: VecDeque<Vec<u8>>,
}

/// Every chat of the relay. See the module documentation.
#[derive(Clone)]
pub(super) struct Chats {
    table: BTreeMap<ChatId, ChatEntry>,
    /// Idle deadlines, one per chat. An entry may be early (the chat was active since it was
    /// set): it is then moved to the chat's real deadline when it comes due, so a frame costs
    /// no tree update.
    expiry: BTreeSet<(Instant, ChatId)>,
    max_chats: usize,
    idle: Duration,
    max_handshakes: u32,
    handshake_period: Duration,
}

impl Chats {
    pub(super) fn new(
        max_chats: usize,
        idle: Duration,
        max_handshakes: u32,
        handshake_period: Duration,
    ) -> Self {
        Chats {
            table: BTreeMap::new(),
            expiry: BTreeSet::new(),
            max_chats,
            idle,
            max_handshakes,
            handshake_period,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn get(&self, chat_id: &ChatId) -> Option<&ChatEntry> {
        self.table.get(chat_id)
    }

    /// `identity` starts `chat_id`, pinning its peer to `pin` if given: it becomes a
    /// participant if a seat is free to it, or is one already.
    pub(super) fn start(
        &mut self,
        now: Instant,
        chat_id: ChatId,
        identity: IdentityPublic,
        pin: Option<[u8; 32]>,
    ) -> Result<Joined, RelayError> {
        let me = Member { identity, pin };
        let Some(chat) = self.table.get_mut(&chat_id) else {
            if self.table.len() >= self.max_chats {
                return Err(RelayError::TooManyChats);
            }
            self.table.insert(
                chat_id,
                ChatEntry {
                    first: me,
                    second: None,
                    held: VecDeque::new(),
                    handshakes: Throttle::new(self.max_handshakes, self.handshake_period),
                    last_active: now,
                    remote_peer: false,
                    recent: VecDeque::new(),
                    publications: 0,
                    checked: 0,
                },
            );
            self.expiry.insert((now.saturating_add(self.idle), chat_id));
            return Ok(Joined {
                peer: None,
                new: true,
                held: VecDeque::new(),
            });
        };
        let other = chat.other(&identity).copied();
        if let (Some(pin), Some(other)) = (pin, other) {
            if pin != *other.identity.as_bytes() {
                return Err(RelayError::PinMismatch);
            }
        }
        let new = !chat.is_member(&identity);
        if new {
            if chat.second.is_some() {
                return Err(RelayError::ChatFull);
            }
            // The first participant named its peer: the seat is kept for exactly that one.
            if chat.first.pin.is_some_and(|p| p != *identity.as_bytes()) {
                return Err(RelayError::SeatReserved);
            }
            chat.second = Some(me);
        }
        chat.last_active = now;
        Ok(Joined {
            peer: other.map(|m| m.identity),
            new,
            held: if new {
                core::mem::take(&mut chat.held)
            } else {
                VecDeque::new()
            },
        })
    }

    /// Where a frame from participant `sender` in `chat_id` goes: the other participant, or
    /// `None` when it has not joined yet (hold the frame with [`Chats::hold`]). A handshake
    /// initiation counts against the chat's throttle.
    pub(super) fn route(
        &mut self,
        now: Instant,
        chat_id: &ChatId,
        sender: &IdentityPublic,
        handshake_init: bool,
    ) -> Result<Option<IdentityPublic>, RelayError> {
        let chat = self.table.get_mut(chat_id).ok_or(RelayError::NoSuchChat)?;
        if !chat.is_member(sender) {
            return Err(RelayError::NotStarted);
        }
        if handshake_init && !chat.handshakes.try_record(now) {
            return Err(RelayError::HandshakesThrottled);
        }
        Ok(chat.other(sender).map(|m| m.identity))
    }

    /// Who here receives a frame that `sender` sent in `chat_id` through another node of a
    /// mesh: the participant that is not `sender`. A sender that is not a participant here may
    /// only be the peer of a chat with one participant, and only the pinned one if it pinned.
    pub(super) fn remote_recipient(
        &self,
        chat_id: &ChatId,
        sender: &IdentityPublic,
    ) -> Result<IdentityPublic, RelayError> {
        let chat = self.table.get(chat_id).ok_or(RelayError::NoSuchChat)?;
        if chat.is_member(sender) {
            return chat
                .other(sender)
                .map(|m| m.identity)
                .ok_or(RelayError::NoSuchChat);
        }
        if chat.second.is_some() {
            return Err(RelayError::ChatFull);
        }
        if chat.first.pin.is_some_and(|p| p != *sender.as_bytes()) {
            return Err(RelayError::SeatReserved);
        }
        Ok(chat.first.identity)
    }

    /// The frames held in `chat_id` for its second participant, if `peer` (which joined the
    /// chat on another node of a mesh) may take that seat: the chat has one participant here,
    /// not `peer`, which pinned `peer` or nobody. `None` otherwise.
    pub(super) fn take_held_for(
        &mut self,
        chat_id: &ChatId,
        peer: &IdentityPublic,
    ) -> Option<VecDeque<Vec<u8>>> {
        match self.table.get_mut(chat_id) {
            Some(chat)
                if chat.second.is_none()
                    && chat.first.identity != *peer
                    && chat.first.pin.is_none_or(|p| p == *peer.as_bytes()) =>
            {
                Some(core::mem::take(&mut chat.held))
            }
            _ => None,
        }
    }

    /// The peer of `chat_id` showed itself from another node of a mesh: frames need no
    /// longer be held for a joiner here. Returns the held frames dropped.
    pub(super) fn peer_is_remote(&mut self, chat_id: &ChatId) -> VecDeque<Vec<u8>> {
        match self.table.get_mut(chat_id) {
            Some(chat) => {
                chat.remote_peer = true;
                core::mem::take(&mut chat.held)
            }
            None => VecDeque::new(),
        }
    }

    /// Whether frames of `chat_id` are still held for a joiner (a mesh node stops once the
    /// peer showed itself from another node).
    pub(super) fn holds_for_joiner(&self, chat_id: &ChatId) -> bool {
        self.table.get(chat_id).is_some_and(|c| !c.remote_peer)
    }

    /// The chat, to change it.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (&ChatId, &mut ChatEntry)> {
        self.table.iter_mut()
    }

    pub(super) fn get_mut(&mut self, chat_id: &ChatId) -> Option<&mut ChatEntry> {
        self.table.get_mut(chat_id)
    }

    /// The first participant of `chat_id`, while it has only one.
    pub(super) fn sole_member(&self, chat_id: &ChatId) -> Option<IdentityPublic> {
        self.table
            .get(chat_id)
            .filter(|chat| chat.second.is_none())
            .map(|chat| chat.first.identity)
    }

    /// Holds a frame for the participant that has not joined `chat_id` yet.
    pub(super) fn hold(
        &mut self,
        chat_id: &ChatId,
        frame: Vec<u8>,
        max: usize,
    ) -> Result<(), RelayError> {
        let chat = self.table.get_mut(chat_id).ok_or(RelayError::NoSuchChat)?;
        if chat.held.len() >= max {
            return Err(RelayError::PendingFull);
        }
        chat.held.push_back(frame);
        Ok(())
    }

    /// Marks `chat_id` active at `now` (a frame was routed): its idle deadline moves.
    pub(super) fn touch(&mut self, chat_id: &ChatId, now: Instant) {
        if let Some(chat) = self.table.get_mut(chat_id) {
            chat.last_active = now;
        }
    }

    /// The earliest idle deadline (possibly early, see `expiry`).
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.expiry.first().map(|(t, _)| *t)
    }

    /// Removes and returns one chat whose idle deadline has passed at `now`, moving early
    /// deadlines on the way; `None` when no chat is due.
    pub(super) fn expire_one(&mut self, now: Instant) -> Option<(ChatId, ChatEntry)> {
        while let Some(&(at, chat_id)) = self.expiry.first() {
            if at > now {
                return None;
            }
            self.expiry.pop_first();
            let Some(chat) = self.table.get(&chat_id) else {
                continue;
            };
            let due = chat.last_active.saturating_add(self.idle);
            if due > now {
                self.expiry.insert((due, chat_id));
                continue;
            }
            return self.table.remove(&chat_id).map(|chat| (chat_id, chat));
        }
        None
    }
}

impl<R> super::Relay<R> {
    /// Wipes an expired chat: its held frames, its frames in its participants' mailboxes, and
    /// the right of their streams to send to it.
    pub(super) fn wipe(&mut self, chat_id: ChatId, chat: ChatEntry) {
        let mut frames = chat.held.len().saturating_add(chat.recent.len());
        let recent: usize = chat.recent.iter().map(|k| k.frame.len()).sum();
        let mut bytes = recent.saturating_add(chat.held.iter().map(Vec::len).sum());
        for member in chat.members() {
            let (f, b) = self.apps.purge(&member, &chat_id);
            frames = frames.saturating_add(f);
            bytes = bytes.saturating_add(b);
            if let Some(conn) = self.apps.get(&member).and_then(|a| a.live) {
                if let Some(started) = self.streams.started(conn) {
                    started.remove(&chat_id);
                }
            }
        }
        self.release(frames, bytes);
        self.counters.frames_dropped = self.counters.frames_dropped.saturating_add(frames as u64);
        self.counters.chats_expired = self.counters.chats_expired.saturating_add(1);
        self.events.push(super::RelayEvent::ChatExpired {
            chat_id,
            frames_dropped: frames,
        });
    }

    pub(super) fn release(&mut self, frames: usize, bytes: usize) {
        self.queued_frames = self.queued_frames.saturating_sub(frames);
        self.queued_bytes = self.queued_bytes.saturating_sub(bytes);
    }
}
