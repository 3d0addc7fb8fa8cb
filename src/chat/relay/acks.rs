//! Acknowledged delivery: nothing the relay accepted is lost when a node or an app dies.
//!
//! * **Apps.** An app that registers with `acks` answers the frames delivered to it with
//!   [`Uplink::Ack`](super::Uplink::Ack) once it has kept them (sealed them in its state). Until
//!   then each delivered frame stays in its mailbox, and its next stream gets the unacknowledged
//!   ones again, first: an app that crashed between receiving and keeping a frame loses none.
//!   The chat protocol drops a frame it had already kept as a replay.
//! * **Mesh.** A frame that leaves a node's mailbox for good (acknowledged, or delivered to an
//!   app that does not acknowledge) becomes a [`Delivered`] for the other nodes
//!   ([`Relay::poll_delivered`]). The node that forwarded the frame keeps a copy until that
//!   notice comes back ([`Relay::handle_remote_delivered`]); with
//!   [`RelayConfig::mesh_replay_frames`](super::RelayConfig::mesh_replay_frames) copies waiting
//!   in a chat, its sender is refused for now ([`RelayError::QueuesFull`]) instead of a copy
//!   being dropped. A bus delivers one publisher's messages in order, so a notice for a frame
//!   published after a copy that is still waiting means that copy was lost on the way (a slow
//!   subscriber's dropped message, a full mailbox): it is published again at once.

use alloc::vec::Vec;

use crate::crypto::ed25519::IdentityPublic;

use super::super::wire::{FrameHeader, HEADER_LEN};
use super::mesh::Forward;
use super::wire::ConnId;
use super::{Relay, RelayError};

/// A frame its recipient has (it acknowledged it, or took it without acknowledgements), for
/// the other nodes of a mesh: the node that forwarded it drops its copy. Frames are named by
/// their clear header (chat, kind, epoch, counter) and the recipient.
///
/// ```
/// use sealwire::chat::relay::Delivered;
/// use sealwire::chat::{ChatId, FrameHeader, FrameKind};
/// use sealwire::crypto::ed25519::IdentityKey;
/// let d = Delivered {
///     recipient: IdentityKey::from_seed([2; 32]).public(),
///     header: FrameHeader { kind: FrameKind::Data, chat_id: ChatId::new([7; 16]), epoch: 0, counter: 3 },
/// };
/// assert_eq!(d.header.counter, 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The app that has the frame.
    pub recipient: IdentityPublic,
    /// The frame's clear header.
    pub header: FrameHeader,
}

impl<R> Relay<R> {
    pub(super) fn on_ack(&mut self, conn: ConnId, frames: u64) -> Result<(), RelayError> {
        let identity = self.streams.identity(conn)?;
        for frame in self.apps.acknowledge(&identity, conn, frames)? {
            self.left(identity, &frame);
        }
        Ok(())
    }

    /// `frame` left `recipient`'s mailbox for good: its bytes leave the budget, and a mesh
    /// node tells the others.
    pub(super) fn left(&mut self, recipient: IdentityPublic, frame: &[u8]) {
        self.release(1, frame.len());
        if !self.config.mesh {
            return;
        }
        if let Ok((header, _)) = FrameHeader::parse(frame) {
            // Bounded: a notice the embedder did not take in time only costs a copy published
            // once more.
            if self.delivered.len() >= self.config.mailbox_frames {
                self.delivered.pop_front();
            }
            self.delivered.push_back(Delivered { recipient, header });
        }
    }

    /// The next frame an app here has for good, to tell the other nodes of the mesh (only
    /// with [`RelayConfig::mesh`](super::RelayConfig::mesh); at most
    /// [`RelayConfig::mailbox_frames`](super::RelayConfig::mailbox_frames) wait, the oldest
    /// give way). Drain it after every input, like [`Relay::poll_forward`].
    ///
    /// ```
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// # use sealwire::chat::relay::{Relay, RelayConfig};
    /// let config = RelayConfig { mesh: true, ..RelayConfig::default() };
    /// let mut node = Relay::new(config, ChaCha20Rng::from_seed([0; 32])).unwrap();
    /// assert_eq!(node.poll_delivered(), None); // nothing delivered yet
    /// ```
    pub fn poll_delivered(&mut self) -> Option<Delivered> {
        self.delivered.pop_front()
    }

    /// Notices from the mesh (any node's [`Relay::poll_delivered`], this one's included):
    /// the copies they name are dropped, and the copies still waiting that were published
    /// before one of them are returned, to publish again (they were lost on the way).
    ///
    /// ```
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// # use sealwire::chat::relay::{Delivered, Relay, RelayConfig};
    /// # use sealwire::chat::{ChatId, FrameHeader, FrameKind};
    /// # use sealwire::crypto::ed25519::IdentityKey;
    /// let config = RelayConfig { mesh: true, ..RelayConfig::default() };
    /// let mut node = Relay::new(config, ChaCha20Rng::from_seed([0; 32])).unwrap();
    /// let notice = Delivered {
    ///     recipient: IdentityKey::from_seed([2; 32]).public(),
    ///     header: FrameHeader { kind: FrameKind::Data, chat_id: ChatId::new([7; 16]), epoch: 0, counter: 0 },
    /// };
    /// // The chat is not held here: no copy to drop, nothing to publish again.
    /// assert!(node.handle_remote_delivered(&[notice]).is_empty());
    /// ```
    pub fn handle_remote_delivered(&mut self, delivered: &[Delivered]) -> Vec<Forward> {
        // Per chat and recipient, the latest publication a notice named.
        let mut newest: Vec<(Delivered, u64)> = Vec::new();
        let (mut frames, mut bytes) = (0usize, 0usize);
        for d in delivered {
            let Some(chat) = self.chats.get_mut(&d.header.chat_id) else {
                continue;
            };
            let header = d.header.encode();
            let found = chat.recent.iter().position(|k| {
                k.frame.get(..HEADER_LEN) == Some(&header[..])
                    && chat.is_peer_of(&k.sender, &d.recipient)
            });
            let Some(kept) = found.and_then(|i| chat.recent.remove(i)) else {
                continue;
            };
            frames = frames.saturating_add(1);
            bytes = bytes.saturating_add(kept.frame.len());
            let same = |n: &&mut (Delivered, u64)| {
                n.0.recipient == d.recipient && n.0.header.chat_id == d.header.chat_id
            };
            match newest.iter_mut().find(same) {
                Some(n) => n.1 = n.1.max(kept.published),
                None => newest.push((*d, kept.published)),
            }
        }
        self.release(frames, bytes);
        let mut again = Vec::new();
        for (d, published) in newest {
            let chat_id = d.header.chat_id;
            if let Some(chat) = self.chats.get_mut(&chat_id) {
                chat.publish_again_for(chat_id, &d.recipient, published, &mut again);
            }
        }
        self.counters.frames_forwarded = self
            .counters
            .frames_forwarded
            .saturating_add(again.len() as u64);
        again
    }

    /// The copies that have waited for their peer since the previous call, published again
    /// (at most `max`; the rest follow on the next call). Call it on a steady period (the
    /// example node: every 5 s): a frame lost on the way with nothing acknowledged after it,
    /// so that no notice shows the loss, is then published again within two periods. The
    /// receiving node drops a copy whose first publication still waits there.
    ///
    /// ```
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// # use sealwire::chat::relay::{Relay, RelayConfig};
    /// let config = RelayConfig { mesh: true, ..RelayConfig::default() };
    /// let mut node = Relay::new(config, ChaCha20Rng::from_seed([0; 32])).unwrap();
    /// assert!(node.republish_waiting(1024).is_empty()); // no copies
    /// ```
    pub fn republish_waiting(&mut self, max: usize) -> Vec<Forward> {
        let mut out = Vec::new();
        'chats: for (chat_id, chat) in self.chats.iter_mut() {
            let checked = chat.checked;
            for kept in chat.recent.iter_mut().filter(|k| k.published <= checked) {
                if out.len() >= max {
                    break 'chats;
                }
                out.push(kept.publish_again(&mut chat.publications, *chat_id));
            }
            chat.checked = chat.publications;
        }
        self.counters.frames_forwarded = self
            .counters
            .frames_forwarded
            .saturating_add(out.len() as u64);
        out
    }
}
