//! Relays as nodes of a mesh: the two apps of a chat may register at different nodes, joined by
//! a message bus (the example node uses NATS). The machine stays the authority for its own
//! streams (registration, membership of the chats started here, budgets, the handshake
//! throttle); the bus only carries frames between nodes.
//!
//! With [`RelayConfig::mesh`](super::RelayConfig::mesh) set, a frame whose recipient has no
//! live stream on this node (it has not started the chat here, or it is offline here) is not
//! held: after the same checks as a local frame it becomes a [`Forward`], which the embedder
//! publishes for the chat ([`Relay::poll_forward`]). Every node that holds the chat hands it to
//! [`Relay::handle_forwarded`], which queues it in the mailbox of the participant that is not
//! the sender, if that participant is known here (live or offline), and refuses it otherwise.
//! The node that published may see its own frame again (a bus that echoes): it then lands in
//! the mailbox of a local participant that is offline, so an app that comes back to the same
//! node still finds it.

use alloc::vec::Vec;

use crate::crypto::ed25519::IdentityPublic;
use crate::time::Instant;

use super::super::wire::{ChatId, FrameHeader};
use super::chats::Kept;
use super::{Relay, RelayError, RelayEvent};

/// A frame for the other nodes of a mesh: the chat it belongs to (the bus routes by it), the
/// proven identity of the app that sent it (the receiving node finds the recipient by it), and
/// the frame itself, unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// The chat (from the frame's clear header).
    pub chat_id: ChatId,
    /// The sender, as it proved itself to this node.
    pub sender: IdentityPublic,
    /// The chat frame.
    pub frame: Vec<u8>,
}

impl<R> Relay<R> {
    /// The next frame to publish to the other nodes of the mesh (only with
    /// [`RelayConfig::mesh`](super::RelayConfig::mesh)). Drain it after every input.
    ///
    /// ```
    /// use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// use sealwire::chat::relay::{prove_registration, Downlink, Relay, RelayConfig, Uplink};
    /// use sealwire::chat::{ChatId, FrameHeader, FrameKind, MSG1_BODY_LEN};
    /// use sealwire::crypto::ed25519::IdentityKey;
    /// use sealwire::time::Instant;
    ///
    /// let config = RelayConfig { mesh: true, ..RelayConfig::default() };
    /// let mut node = Relay::new(config, ChaCha20Rng::from_seed([0; 32]))?;
    /// let (now, chat, alice) = (Instant::ZERO, ChatId::new([7; 16]), IdentityKey::from_seed([1; 32]));
    /// let conn = node.connect(now)?;
    /// let identity = alice.public().as_bytes().to_vec();
    /// node.handle_uplink(now, conn, Uplink::Register { identity, app_id: "alice".into(), acks: false })?;
    /// let Some(Downlink::Challenge { nonce }) = node.poll_transmit().map(|t| t.message) else {
    ///     panic!("a challenge")
    /// };
    /// let signature = prove_registration(&alice, &nonce).to_vec();
    /// node.handle_uplink(now, conn, Uplink::Proof { signature })?;
    /// let start = Uplink::Start { chat_id: chat.as_bytes().to_vec(), peer_identity: vec![] };
    /// node.handle_uplink(now, conn, start)?;
    /// // Bob is on another node: Alice's frame leaves through the mesh.
    /// let mut frame = FrameHeader { kind: FrameKind::HandshakeInit, chat_id: chat, epoch: 0, counter: 0 }
    ///     .encode().to_vec();
    /// frame.extend_from_slice(&[0x42; MSG1_BODY_LEN]);
    /// node.handle_uplink(now, conn, Uplink::Frame(frame.clone()))?;
    /// let out = node.poll_forward().unwrap();
    /// assert_eq!((out.chat_id, out.sender, out.frame), (chat, alice.public(), frame));
    /// assert_eq!(node.poll_forward(), None);
    /// # Ok::<(), sealwire::chat::relay::RelayError>(())
    /// ```
    pub fn poll_forward(&mut self) -> Option<Forward> {
        self.forward.pop()
    }

    /// A frame that `sender` sent through another node of the mesh: queued for the
    /// participant of its chat here that is not `sender` (see the module documentation).
    /// Refused (and counted) when the frame is malformed, the chat is not held here, nobody
    /// here is its recipient, `sender` is a stranger to the chat here, or a bound is reached.
    /// [`RelayError::Capacity`] (the event queue is full) changes nothing.
    ///
    /// ```
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// # use sealwire::chat::relay::{Relay, RelayConfig, RelayError};
    /// # use sealwire::chat::{ChatId, FrameHeader, FrameKind, MSG1_BODY_LEN};
    /// # use sealwire::crypto::ed25519::IdentityKey;
    /// # use sealwire::time::Instant;
    /// let config = RelayConfig { mesh: true, ..RelayConfig::default() };
    /// let mut node = Relay::new(config, ChaCha20Rng::from_seed([0; 32]))?;
    /// let chat = ChatId::new([7; 16]);
    /// let mut frame = FrameHeader { kind: FrameKind::HandshakeInit, chat_id: chat, epoch: 0, counter: 0 }
    ///     .encode().to_vec();
    /// frame.extend_from_slice(&[0x42; MSG1_BODY_LEN]);
    /// let sender = IdentityKey::from_seed([1; 32]).public();
    /// // Nobody here started the chat.
    /// assert_eq!(node.handle_forwarded(Instant::ZERO, sender, frame), Err(RelayError::NoSuchChat));
    /// assert_eq!(node.stats().forwarded_refused, 1);
    /// # Ok::<(), RelayError>(())
    /// ```
    pub fn handle_forwarded(
        &mut self,
        now: Instant,
        sender: IdentityPublic,
        frame: Vec<u8>,
    ) -> Result<(), RelayError> {
        if !self.events.has_room(1) {
            return Err(RelayError::Capacity);
        }
        let result = self.queue_forwarded(now, sender, frame);
        let counter = match result {
            Ok(()) => &mut self.counters.forwarded_in,
            Err(_) => &mut self.counters.forwarded_refused,
        };
        *counter = counter.saturating_add(1);
        result
    }

    fn queue_forwarded(
        &mut self,
        now: Instant,
        sender: IdentityPublic,
        frame: Vec<u8>,
    ) -> Result<(), RelayError> {
        let max_message = self.config.max_message_len;
        let (header, _) =
            FrameHeader::parse_checked(&frame, max_message).map_err(|_| RelayError::Malformed)?;
        let chat_id = header.chat_id;
        let to = self.chats.remote_recipient(&chat_id, &sender)?;
        if self.chats.sole_member(&chat_id) == Some(to) {
            // The peer sends from another node: stop holding copies for it here.
            let dropped = self.chats.peer_is_remote(&chat_id);
            self.release_held(&dropped);
        }
        if self.apps.get(&to).is_some_and(|app| app.holds(&frame)) {
            // A copy published again (or echoed) while the first still waits here.
            return Ok(());
        }
        let len = frame.len();
        if self.queued_bytes.saturating_add(len) > self.config.max_queued_bytes {
            return Err(RelayError::QueuesFull);
        }
        if let Some(wake) = self.apps.enqueue(to, frame)? {
            self.events.push(RelayEvent::FramesWaiting { conn: wake });
        }
        self.queued_frames = self.queued_frames.saturating_add(1);
        self.queued_bytes = self.queued_bytes.saturating_add(len);
        self.chats.touch(&chat_id, now);
        Ok(())
    }

    /// `peer` started `chat_id` on another node of the mesh (its node announced it): the
    /// frames this node held for the chat's second participant, if `peer` may take that seat
    /// here (the chat has one participant, not `peer`, which pinned `peer` or nobody), to be
    /// published for it; and, whenever a peer of a participant here (re)joins elsewhere, the
    /// copies of frames forwarded to it that it has not acknowledged yet (at most
    /// [`RelayConfig::mesh_replay_frames`](super::RelayConfig::mesh_replay_frames)), which may
    /// have been published while its node was dying or before its new node subscribed. They
    /// were published when sent as well, so the peer may get them twice or more; the chat
    /// protocol drops the copies as replays.
    ///
    /// ```
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// # use sealwire::chat::relay::{Relay, RelayConfig};
    /// # use sealwire::chat::ChatId;
    /// # use sealwire::crypto::ed25519::IdentityKey;
    /// let config = RelayConfig { mesh: true, ..RelayConfig::default() };
    /// let mut node = Relay::new(config, ChaCha20Rng::from_seed([0; 32])).unwrap();
    /// let bob = IdentityKey::from_seed([2; 32]).public();
    /// // The chat is not held here: nothing to hand over.
    /// assert!(node.handle_remote_join(&ChatId::new([7; 16]), &bob).is_empty());
    /// ```
    pub fn handle_remote_join(&mut self, chat_id: &ChatId, peer: &IdentityPublic) -> Vec<Forward> {
        if let Some(sender) = self.chats.sole_member(chat_id) {
            if let Some(held) = self.chats.take_held_for(chat_id, peer) {
                // Handed over once; from now on the peer is elsewhere.
                self.chats.peer_is_remote(chat_id);
                if held.is_empty() {
                    return self.replay_for(chat_id, peer);
                }
                self.release_held(&held);
                let out: Vec<_> = held
                    .into_iter()
                    .map(|frame| Forward {
                        chat_id: *chat_id,
                        sender,
                        frame,
                    })
                    .collect();
                // Kept as copies from now on, until the peer has them.
                for f in &out {
                    self.remember_forwarded(chat_id, sender, &f.frame);
                }
                return out;
            }
        }
        self.replay_for(chat_id, peer)
    }

    /// The copies of frames forwarded to `peer` that it has not acknowledged, to publish
    /// again (stamped as published now): some may have been published while its node was
    /// dying or before its new node subscribed.
    fn replay_for(&mut self, chat_id: &ChatId, peer: &IdentityPublic) -> Vec<Forward> {
        let mut out = Vec::new();
        if let Some(chat) = self.chats.get_mut(chat_id) {
            chat.publish_again_for(*chat_id, peer, u64::MAX, &mut out);
        }
        out
    }

    /// Whether a frame of `len` bytes bound for another node has room for its copy: fewer
    /// than [`RelayConfig::mesh_replay_frames`](super::RelayConfig::mesh_replay_frames) copies
    /// wait for the peer's acknowledgement in the chat, and the byte budget holds it.
    pub(super) fn copy_has_room(&self, chat_id: &ChatId, len: usize) -> bool {
        let max = self.config.mesh_replay_frames;
        max == 0
            || self.chats.get(chat_id).is_none_or(|c| c.recent.len() < max)
                && self.queued_bytes.saturating_add(len) <= self.config.max_queued_bytes
    }

    /// Keeps a copy of a frame forwarded to a peer on another node until the peer
    /// acknowledges it (see [`Relay::handle_remote_delivered`]); the caller checked
    /// [`Relay::copy_has_room`]. Copies count in the byte budget.
    pub(super) fn remember_forwarded(
        &mut self,
        chat_id: &ChatId,
        sender: IdentityPublic,
        frame: &[u8],
    ) {
        if self.config.mesh_replay_frames == 0 {
            return;
        }
        let Some(chat) = self.chats.get_mut(chat_id) else {
            return;
        };
        chat.publications = chat.publications.saturating_add(1);
        chat.recent.push_back(Kept {
            published: chat.publications,
            sender,
            frame: frame.to_vec(),
        });
        self.queued_frames = self.queued_frames.saturating_add(1);
        self.queued_bytes = self.queued_bytes.saturating_add(frame.len());
    }

    fn release_held(&mut self, held: &alloc::collections::VecDeque<Vec<u8>>) {
        let bytes: usize = held.iter().map(Vec::len).sum();
        self.release(held.len(), bytes);
    }

    /// Keeps a copy of a frame sent before the chat's second participant joined here (a mesh
    /// node forwards it too), while the pending list and the byte budget have room; never
    /// refuses the frame for it. Returns whether it kept the copy.
    pub(super) fn keep_for_joiner(&mut self, chat_id: &ChatId, frame: &[u8]) -> bool {
        let len = frame.len();
        if !self.chats.holds_for_joiner(chat_id)
            || self.queued_bytes.saturating_add(len) > self.config.max_queued_bytes
        {
            return false;
        }
        let max = self.config.pending_frames;
        let kept = self.chats.hold(chat_id, frame.to_vec(), max).is_ok();
        if kept {
            self.queued_frames = self.queued_frames.saturating_add(1);
            self.queued_bytes = self.queued_bytes.saturating_add(len);
        }
        kept
    }

    /// Whether a frame for `to` (the chat's other participant here, if any) leaves through
    /// the mesh: a mesh node, and `to` has no live stream here.
    pub(super) fn is_remote(&self, to: Option<IdentityPublic>) -> bool {
        self.config.mesh
            && to
                .and_then(|peer| self.apps.get(&peer))
                .and_then(|app| app.live)
                .is_none()
    }

    pub(super) fn forward_frame(
        &mut self,
        chat_id: ChatId,
        sender: IdentityPublic,
        frame: Vec<u8>,
    ) {
        self.counters.frames_forwarded = self.counters.frames_forwarded.saturating_add(1);
        self.counters.frames_routed = self.counters.frames_routed.saturating_add(1);
        self.forward.push(Forward {
            chat_id,
            sender,
            frame,
        });
    }
}
