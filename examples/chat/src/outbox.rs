//! The app's outbox: chat frames kept, in order, until a relay node has stored them.
//!
//! Every frame the chat machine produces goes here first. The app sends the oldest frame that
//! is not on its way yet, at most [`Outbox::window`] at a time, and keeps each one until the
//! node answers it: `stored` removes it, `rejected` either puts it back to be sent again later
//! (the node is full for now: [`Answer::Retry`]) or removes it as failed, which the app reports
//! ([`Answer::Failed`]). When the stream to the node is lost, every frame on its way goes back
//! to the front, in order, and is sent again on the next stream: a frame is delivered at least
//! once, and the chat machine drops the copies as replays. Nothing is ever dropped to make
//! room: [`Outbox::is_full`] tells the app to stop reading input until the node catches up.
//!
//! With a window of 1 (what `grpc_chat_app` uses) a frame leaves only after the one before it
//! was stored, so frames reach the peer in order even when one must be retried.
//!
//! A node keeps what it stored in memory, so one that dies may take frames it had not
//! delivered yet. [`Outbox::keeping`] keeps the latest stored frames too and sends them again,
//! first, after every lost stream: the next node gets them again, and the peer drops the
//! copies it already has.
//!
//! [`Outbox::encode`] and [`Outbox::decode`] give the bytes that `grpc_chat_app` seals under the
//! chat state's key (`sealwire::seal`, magic `SWOB`, bound to the chat id) beside the sealed
//! state, so an app that crashes sends them on its next start.

use std::collections::VecDeque;

/// One frame and, once sent, its uplink index on the current stream.
#[derive(Clone, Debug)]
struct Entry {
    frame: Vec<u8>,
    sent_as: Option<u64>,
}

/// Frames waiting for a node to store them (see the module documentation).
#[derive(Clone, Debug)]
pub struct Outbox {
    entries: VecDeque<Entry>,
    /// The latest frames nodes stored, oldest first: sent again after a lost stream, since
    /// the node that stored them may have died before delivering them.
    history: VecDeque<Vec<u8>>,
    keep: usize,
    /// Which stored frames are worth keeping.
    worth: fn(&[u8]) -> bool,
    limit: usize,
    window: usize,
}

/// What a node's answer to a sent frame means for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Stored by the node: removed from the outbox.
    Stored,
    /// Refused for now (the node or the peer's mailbox is full, the chat is throttled): the
    /// frame waits to be sent again.
    Retry,
    /// Refused for good: removed; the frame is given back so the app can report it.
    Failed(Vec<u8>),
    /// No frame of the outbox was sent as this uplink (a late answer from an earlier stream,
    /// or an answer to a message that is not a frame).
    Unknown,
}

/// The first bytes of an encoded outbox.
const MAGIC: &[u8; 8] = b"SWOUTBX1";

impl Outbox {
    /// An empty outbox that counts as full at `limit` frames and has at most `window` frames
    /// on their way at once (both at least 1).
    pub fn new(limit: usize, window: usize) -> Self {
        Outbox {
            entries: VecDeque::new(),
            history: VecDeque::new(),
            keep: 0,
            worth: |_| true,
            limit: limit.max(1),
            window: window.max(1),
        }
    }

    /// Also keeps the latest `keep` stored frames for which `worth` is true and sends them
    /// again after a lost stream (the node that stored them may have died before delivering
    /// them; the peer drops the copies it has). 0 (the default) keeps none.
    pub fn keeping(mut self, keep: usize, worth: fn(&[u8]) -> bool) -> Self {
        self.keep = keep;
        self.worth = worth;
        self
    }

    /// Adds a frame after all others.
    pub fn push(&mut self, frame: Vec<u8>) {
        self.entries.push_back(Entry {
            frame,
            sent_as: None,
        });
    }

    /// Frames kept, sent or not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no frame waits to be stored (stored frames kept with [`Outbox::keeping`] do not
    /// count).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the app should stop producing frames until nodes store some.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.limit
    }

    /// The uplink index of the oldest frame on its way, if any.
    pub fn oldest_in_flight(&self) -> Option<u64> {
        self.entries.iter().filter_map(|e| e.sent_as).min()
    }

    /// Frames on their way now (sent, not answered).
    pub fn in_flight(&self) -> usize {
        self.entries.iter().filter(|e| e.sent_as.is_some()).count()
    }

    /// Frames allowed on their way at once.
    pub fn window(&self) -> usize {
        self.window
    }

    /// The next frame to send, if the window has room: the oldest not on its way. Call
    /// [`Outbox::sent`] with its position once it is handed to the stream.
    pub fn next_to_send(&self) -> Option<(usize, &[u8])> {
        let on_the_way = self.entries.iter().filter(|e| e.sent_as.is_some()).count();
        if on_the_way >= self.window {
            return None;
        }
        self.entries
            .iter()
            .position(|e| e.sent_as.is_none())
            .map(|at| (at, self.entries[at].frame.as_slice()))
    }

    /// The frame sent as uplink `index` of the current stream, if it is still kept.
    pub fn frame(&self, index: u64) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|e| e.sent_as == Some(index))
            .map(|e| e.frame.as_slice())
    }

    /// The frame at `position` left as uplink `index` of the current stream.
    pub fn sent(&mut self, position: usize, index: u64) {
        if let Some(e) = self.entries.get_mut(position) {
            e.sent_as = Some(index);
        }
    }

    /// The node answered uplink `index`: `stored` (true) or refused, and then whether the
    /// refusal is for now only (`retry`).
    pub fn answer(&mut self, index: u64, stored: bool, retry: bool) -> Answer {
        let Some(at) = self.entries.iter().position(|e| e.sent_as == Some(index)) else {
            return Answer::Unknown;
        };
        if stored {
            if let Some(e) = self.entries.remove(at) {
                if self.keep > 0 && (self.worth)(&e.frame) {
                    if self.history.len() >= self.keep {
                        self.history.pop_front();
                    }
                    self.history.push_back(e.frame);
                }
            }
            return Answer::Stored;
        }
        if retry {
            // It and everything sent after it go again, in order.
            for e in self.entries.iter_mut().skip(at) {
                e.sent_as = None;
            }
            return Answer::Retry;
        }
        match self.entries.remove(at) {
            Some(e) => Answer::Failed(e.frame),
            None => Answer::Unknown,
        }
    }

    /// The stream is gone: whatever was on its way is sent again on the next one, after the
    /// latest stored frames (kept with [`Outbox::keeping`]), in order.
    pub fn stream_lost(&mut self) {
        for e in &mut self.entries {
            e.sent_as = None;
        }
        while let Some(frame) = self.history.pop_back() {
            self.entries.push_front(Entry {
                frame,
                sent_as: None,
            });
        }
    }

    /// The frames, oldest first (the stored ones kept with [`Outbox::keeping`], then those not
    /// stored yet), as bytes for a file: `SWOUTBX1`, then per frame its length (4 bytes, big
    /// endian) and the frame. [`Outbox::decode`] reads them all as not stored yet: after a
    /// crash they are all sent again (the peer drops the copies it has).
    pub fn encode(&self) -> Vec<u8> {
        let frames = self
            .history
            .iter()
            .chain(self.entries.iter().map(|e| &e.frame));
        let size = frames.clone().map(|f| 4 + f.len()).sum::<usize>();
        let mut out = Vec::with_capacity(MAGIC.len() + size);
        out.extend_from_slice(MAGIC);
        for f in frames {
            let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&f[..len as usize]);
        }
        out
    }

    /// Reads [`Outbox::encode`]'s bytes back (none on their way). Refuses a wrong header, a
    /// truncated frame, a frame longer than `max_frame` and more than `max_frames` frames.
    pub fn decode(
        bytes: &[u8],
        limit: usize,
        window: usize,
        max_frame: usize,
        max_frames: usize,
    ) -> Result<Self, String> {
        let mut rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or("not an outbox file (wrong header)")?;
        let mut outbox = Outbox::new(limit, window);
        while !rest.is_empty() {
            if outbox.len() >= max_frames {
                return Err(format!("more than {max_frames} frames"));
            }
            let (len, tail) = rest.split_first_chunk::<4>().ok_or("truncated length")?;
            let len = u32::from_be_bytes(*len) as usize;
            if len > max_frame {
                return Err(format!("a frame of {len} bytes (at most {max_frame})"));
            }
            if tail.len() < len {
                return Err("truncated frame".into());
            }
            let (frame, tail) = tail.split_at(len);
            outbox.push(frame.to_vec());
            rest = tail;
        }
        Ok(outbox)
    }
}
