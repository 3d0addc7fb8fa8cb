//! The relay's app table: per proven identity its display name, its live stream (if any) and
//! its bounded mailbox of frames, which survives the app's disconnects so an app that comes back
//! receives what was sent meanwhile. An app that acknowledges (it registered with `acks`)
//! also has the frames delivered to it and not yet acknowledged: they count in its mailbox and
//! are delivered again, first, on its next stream (it may have crashed before keeping them).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use crate::crypto::ed25519::IdentityPublic;

use super::super::wire::{ChatId, FrameHeader, FrameKind, HEADER_LEN};
use super::error::RelayError;
use super::wire::ConnId;

/// What the relay knows of one identity.
#[derive(Clone, Default)]
pub(super) struct App {
    pub(super) app_id: String,
    /// The registered stream, while the app is connected.
    pub(super) live: Option<ConnId>,
    mailbox: VecDeque<Vec<u8>>,
    /// Delivered on the live stream and not acknowledged yet, oldest first (`None`: wiped
    /// with its chat, still counted by the app's acknowledgements).
    unacked: VecDeque<Option<Vec<u8>>>,
    /// The live stream acknowledges what it kept.
    acks: bool,
    /// Frames delivered on the live stream, and how many of them it acknowledged.
    delivered: u64,
    acked: u64,
}

impl App {
    pub(super) fn queued(&self) -> usize {
        self.mailbox.len().saturating_add(self.unacked.len())
    }

    fn idle(&self) -> bool {
        self.live.is_none() && self.mailbox.is_empty() && self.unacked.is_empty()
    }

    /// Whether `frame`, a data or close frame, waits for the app already (queued, or
    /// delivered and not acknowledged): one with the same clear header, which names the chat,
    /// epoch and counter. (Handshake frames all have counter 0: never taken for copies.)
    pub(super) fn holds(&self, frame: &[u8]) -> bool {
        let counted = FrameHeader::parse(frame)
            .is_ok_and(|(h, _)| matches!(h.kind, FrameKind::Data | FrameKind::Close));
        let Some(header) = frame.get(..HEADER_LEN).filter(|_| counted) else {
            return false;
        };
        let same = |f: &Vec<u8>| f.get(..HEADER_LEN) == Some(header);
        self.mailbox.iter().any(same) || self.unacked.iter().flatten().any(same)
    }

    /// A new stream `conn` took over: what the old one did not acknowledge is delivered again,
    /// first, in order.
    pub(super) fn attach(&mut self, conn: ConnId, acks: bool) -> Option<ConnId> {
        while let Some(frame) = self.unacked.pop_back() {
            if let Some(frame) = frame {
                self.mailbox.push_front(frame);
            }
        }
        (self.acks, self.delivered, self.acked) = (acks, 0, 0);
        self.live.replace(conn)
    }
}

/// Every identity the relay knows. See the module documentation.
#[derive(Clone)]
pub(super) struct Apps {
    table: BTreeMap<IdentityPublic, App>,
    max_apps: usize,
    mailbox_frames: usize,
}

impl Apps {
    pub(super) fn new(max_apps: usize, mailbox_frames: usize) -> Self {
        Apps {
            table: BTreeMap::new(),
            max_apps,
            mailbox_frames,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn get(&self, identity: &IdentityPublic) -> Option<&App> {
        self.table.get(identity)
    }

    pub(super) fn get_mut(&mut self, identity: &IdentityPublic) -> Option<&mut App> {
        self.table.get_mut(identity)
    }

    /// The entry of `identity`, created if missing. At capacity an idle entry (offline, empty
    /// mailbox) is forgotten to make room; if there is none, `TooManyApps`.
    pub(super) fn entry(&mut self, identity: IdentityPublic) -> Result<&mut App, RelayError> {
        if !self.table.contains_key(&identity) && self.table.len() >= self.max_apps {
            let idle = self
                .table
                .iter()
                .find(|(_, app)| app.idle())
                .map(|(id, _)| *id)
                .ok_or(RelayError::TooManyApps)?;
            self.table.remove(&idle);
        }
        Ok(self.table.entry(identity).or_default())
    }

    /// Queues `frame` for `identity`. Returns the stream to wake when its mailbox was empty
    /// and the app is connected.
    pub(super) fn enqueue(
        &mut self,
        identity: IdentityPublic,
        frame: Vec<u8>,
    ) -> Result<Option<ConnId>, RelayError> {
        let cap = self.mailbox_frames;
        let app = self.entry(identity)?;
        if app.queued() >= cap {
            return Err(RelayError::MailboxFull);
        }
        let wake = app.mailbox.is_empty();
        app.mailbox.push_back(frame);
        Ok(app.live.filter(|_| wake))
    }

    /// The oldest frame for the app connected on `conn`, and whether a copy stays until the
    /// app acknowledges it.
    pub(super) fn dequeue(
        &mut self,
        identity: &IdentityPublic,
        conn: ConnId,
    ) -> Option<(Vec<u8>, bool)> {
        let app = self.table.get_mut(identity)?;
        if app.live != Some(conn) {
            return None;
        }
        let Some(frame) = app.mailbox.pop_front() else {
            if app.mailbox.capacity() > 16 {
                // A drained mailbox gives back what a burst made it hold.
                app.mailbox = VecDeque::new();
            }
            return None;
        };
        app.delivered = app.delivered.saturating_add(1);
        if app.acks {
            app.unacked.push_back(Some(frame.clone()));
        }
        Some((frame, app.acks))
    }

    /// The app on `conn` kept the first `frames` frames delivered on it: those not
    /// acknowledged before leave the relay, returned oldest first.
    pub(super) fn acknowledge(
        &mut self,
        identity: &IdentityPublic,
        conn: ConnId,
        frames: u64,
    ) -> Result<Vec<Vec<u8>>, RelayError> {
        let app = self
            .table
            .get_mut(identity)
            .filter(|app| app.live == Some(conn) && app.acks)
            .ok_or(RelayError::Malformed)?;
        if frames < app.acked || frames > app.delivered {
            return Err(RelayError::Malformed);
        }
        let n = usize::try_from(frames.saturating_sub(app.acked)).unwrap_or(usize::MAX);
        app.acked = frames;
        let n = n.min(app.unacked.len());
        let released: Vec<Vec<u8>> = app.unacked.drain(..n).flatten().collect();
        if app.unacked.is_empty() && app.unacked.capacity() > 16 {
            app.unacked = VecDeque::new();
        }
        Ok(released)
    }

    /// Removes every queued frame of `chat_id` from `identity`'s mailbox; returns their count
    /// and bytes.
    pub(super) fn purge(&mut self, identity: &IdentityPublic, chat_id: &ChatId) -> (usize, usize) {
        let Some(app) = self.table.get_mut(identity) else {
            return (0, 0);
        };
        let (mut frames, mut bytes) = (0usize, 0usize);
        let mut keep = |f: &Vec<u8>| {
            let of_chat = FrameHeader::parse(f).is_ok_and(|(h, _)| h.chat_id == *chat_id);
            if of_chat {
                frames = frames.saturating_add(1);
                bytes = bytes.saturating_add(f.len());
            }
            !of_chat
        };
        app.mailbox.retain(&mut keep);
        // Acknowledgements count delivered frames: a wiped unacknowledged one leaves a hole.
        for slot in &mut app.unacked {
            if slot.as_ref().is_some_and(|f| !keep(f)) {
                *slot = None;
            }
        }
        (frames, bytes)
    }
}
