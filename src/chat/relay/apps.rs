//! The relay's app table: per proven identity its display name, its live stream (if any) and
//! its bounded mailbox of frames, which survives the app's disconnects so an app that comes back
//! receives what was sent meanwhile.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use crate::crypto::ed25519::IdentityPublic;

use super::super::wire::{ChatId, FrameHeader};
use super::error::RelayError;
use super::wire::ConnId;

/// What the relay knows of one identity.
#[derive(Clone, Default)]
pub(super) struct App {
    pub(super) app_id: String,
    /// The registered stream, while the app is connected.
    pub(super) live: Option<ConnId>,
    mailbox: VecDeque<Vec<u8>>,
}

impl App {
    pub(super) fn queued(&self) -> usize {
        self.mailbox.len()
    }

    fn idle(&self) -> bool {
        self.live.is_none() && self.mailbox.is_empty()
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
        if app.mailbox.len() >= cap {
            return Err(RelayError::MailboxFull);
        }
        let wake = app.mailbox.is_empty();
        app.mailbox.push_back(frame);
        Ok(app.live.filter(|_| wake))
    }

    /// The oldest frame for the app connected on `conn`.
    pub(super) fn dequeue(&mut self, identity: &IdentityPublic, conn: ConnId) -> Option<Vec<u8>> {
        let app = self.table.get_mut(identity)?;
        if app.live != Some(conn) {
            return None;
        }
        let frame = app.mailbox.pop_front();
        if frame.is_none() && app.mailbox.capacity() > 16 {
            // A drained mailbox gives back what a burst made it hold.
            app.mailbox = VecDeque::new();
        }
        frame
    }

    /// Removes every queued frame of `chat_id` from `identity`'s mailbox; returns their count
    /// and bytes.
    pub(super) fn purge(&mut self, identity: &IdentityPublic, chat_id: &ChatId) -> (usize, usize) {
        let Some(app) = self.table.get_mut(identity) else {
            return (0, 0);
        };
        let (mut frames, mut bytes) = (0usize, 0usize);
        app.mailbox.retain(|f| {
            let of_chat = FrameHeader::parse(f).is_ok_and(|(h, _)| h.chat_id == *chat_id);
            if of_chat {
                frames = frames.saturating_add(1);
                bytes = bytes.saturating_add(f.len());
            }
            !of_chat
        });
        (frames, bytes)
    }
}
