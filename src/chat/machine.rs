//! The chat state machine: handshake, ratchet, rekey, teardown.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use zeroize::Zeroizing;

use crate::crypto::ed25519::IdentityPublic;
use crate::time::Instant;

use super::config::ChatConfig;
use super::error::Error;
use super::event::{ChatEvent, CloseReason, Opened};
use super::noise::{Handshake, Role};
use super::ratchet::{seal_with, RecvChain, SendChain};
use super::wire::{FrameHeader, FrameKind, HEADER_LEN, TAG_LEN};

/// Protocol label, first part of the prologue.
pub(crate) const PROLOGUE_LABEL: &[u8] = b"sealwire/chat/1";
/// Domain separator of the identity signature over the Noise static key.
pub(crate) const STATIC_SIG_LABEL: &[u8] = b"sealwire/chat/1 static";
/// How many times an initiator re-sends message 3 before abandoning an unconfirmed epoch.
pub(crate) const MSG3_RESENDS: u8 = 3;

/// One established key epoch.
pub(crate) struct Epoch {
    pub(crate) number: u32,
    pub(crate) send: SendChain,
    pub(crate) recv: RecvChain,
    pub(crate) established_at: Instant,
    pub(crate) handshake_hash: [u8; 32],
    /// Responder only: SHA-256 of the message 3 body that established this epoch, so a
    /// retransmitted message 3 is answered with a fresh confirmation.
    pub(crate) msg3_digest: Option<[u8; 32]>,
    /// Responder only: the ephemeral key of the message 1 that started this epoch, so a
    /// duplicate of it is told apart from a peer redoing the epoch.
    pub(crate) peer_msg1_ephemeral: Option<[u8; 32]>,
}

/// An epoch the initiator has keys for but the responder has not confirmed yet.
pub(crate) struct Unconfirmed {
    pub(crate) epoch: Epoch,
    pub(crate) msg3_frame: Vec<u8>,
    pub(crate) resend_at: Instant,
    pub(crate) resends_left: u8,
    pub(crate) peer: IdentityPublic,
}

/// The receive chain of the epoch before the current one, kept for a grace period.
pub(crate) struct Previous {
    pub(crate) number: u32,
    pub(crate) recv: RecvChain,
    pub(crate) until: Instant,
}

/// A handshake in flight.
pub(crate) struct Pending {
    pub(crate) epoch: u32,
    pub(crate) hs: Handshake,
    pub(crate) started: Instant,
    /// The last handshake frame we sent, re-sent when the peer's previous message is repeated.
    pub(crate) last_sent: Vec<u8>,
}

/// A per-chat forward-secret channel: one machine per chat and side, handling the first
/// handshake, messages, rekeys and teardown. See the [module documentation](crate::chat).
///
/// ```
/// use sealwire::chat::{Chat, ChatConfig, ChatEvent, ChatId};
/// use sealwire::crypto::ed25519::IdentityKey;
/// use sealwire::time::Instant;
/// use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
///
/// let id = ChatId::new([7; 16]);
/// let now = Instant::ZERO;
/// let mut alice = Chat::initiator(ChatConfig::new(id, IdentityKey::from_seed([1; 32])),
///                                 ChaCha20Rng::from_seed([1; 32]), now).unwrap();
/// let mut bob = Chat::responder(ChatConfig::new(id, IdentityKey::from_seed([2; 32])),
///                               ChaCha20Rng::from_seed([2; 32])).unwrap();
/// // Pump frames both ways until quiet.
/// loop {
///     let mut moved = false;
///     while let Some(f) = alice.poll_transmit() { bob.handle_frame(now, &f).unwrap(); moved = true; }
///     while let Some(f) = bob.poll_transmit() { alice.handle_frame(now, &f).unwrap(); moved = true; }
///     if !moved { break; }
/// }
/// assert!(alice.is_established() && bob.is_established());
/// alice.send(now, b"hi bob").unwrap();
/// let frame = alice.poll_transmit().unwrap();
/// bob.handle_frame(now, &frame).unwrap();
/// let events: Vec<_> = core::iter::from_fn(|| bob.poll_event()).collect();
/// assert!(events.iter().any(|e| matches!(e, ChatEvent::Message { plaintext, .. } if plaintext == b"hi bob")));
/// ```
pub struct Chat<R> {
    pub(crate) config: ChatConfig,
    pub(crate) rng: R,
    pub(crate) role: Role,
    pub(crate) current: Option<Epoch>,
    pub(crate) unconfirmed: Option<Box<Unconfirmed>>,
    pub(crate) previous: Option<Box<Previous>>,
    pub(crate) pending: Option<Box<Pending>>,
    pub(crate) peer: Option<IdentityPublic>,
    pub(crate) rekey_log: Vec<Instant>,
    /// A restore wanted a fresh epoch but the throttle was spent: rekey as soon as it allows.
    pub(crate) rekey_due: bool,
    pub(crate) transmit: VecDeque<Vec<u8>>,
    pub(crate) events: VecDeque<ChatEvent>,
    pub(crate) closed: bool,
    pub(crate) seal_seq: u64,
    /// `(epoch, first counter not covered)` of the last seal.
    pub(crate) lease: Option<(u32, u64)>,
}

impl<R> fmt::Debug for Chat<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chat")
            .field("chat_id", &self.config.chat_id)
            .field("role", &self.role)
            .field("epoch", &self.current.as_ref().map(|e| e.number))
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl<R: rand_core::CryptoRng> Chat<R> {
    pub(crate) fn blank(config: ChatConfig, rng: R, role: Role) -> Result<Self, Error> {
        if !config.validate() {
            return Err(Error::InvalidConfig);
        }
        Ok(Chat {
            config,
            rng,
            role,
            current: None,
            unconfirmed: None,
            previous: None,
            pending: None,
            peer: None,
            rekey_log: Vec::new(),
            rekey_due: false,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            closed: false,
            seal_seq: 0,
            lease: None,
        })
    }

    /// Creates the side that starts the first handshake; its message 1 is queued at once
    /// (drain [`Chat::poll_transmit`]).
    ///
    /// ```
    /// # use sealwire::chat::{Chat, ChatConfig, ChatId};
    /// # use sealwire::crypto::ed25519::IdentityKey;
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// let cfg = ChatConfig::new(ChatId::new([0; 16]), IdentityKey::from_seed([1; 32]));
    /// let mut c = Chat::initiator(cfg, ChaCha20Rng::from_seed([0; 32]), sealwire::time::Instant::ZERO).unwrap();
    /// assert_eq!(c.poll_transmit().unwrap().len(), 30 + 32);
    /// ```
    pub fn initiator(config: ChatConfig, rng: R, now: Instant) -> Result<Self, Error> {
        let mut chat = Self::blank(config, rng, Role::Initiator)?;
        chat.start_handshake(now, 0)?;
        Ok(chat)
    }

    /// Creates the side that waits for the peer's message 1.
    ///
    /// ```
    /// # use sealwire::chat::{Chat, ChatConfig, ChatId};
    /// # use sealwire::crypto::ed25519::IdentityKey;
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// let cfg = ChatConfig::new(ChatId::new([0; 16]), IdentityKey::from_seed([2; 32]));
    /// let mut c = Chat::responder(cfg, ChaCha20Rng::from_seed([0; 32])).unwrap();
    /// assert!(c.poll_transmit().is_none());
    /// ```
    pub fn responder(config: ChatConfig, rng: R) -> Result<Self, Error> {
        Self::blank(config, rng, Role::Responder)
    }

    // ---------------------------------------------------------------- queries

    /// The chat id.
    pub fn chat_id(&self) -> super::ChatId {
        self.config.chat_id
    }

    /// The current (sending) epoch, once established.
    pub fn epoch(&self) -> Option<u32> {
        self.current.as_ref().map(|e| e.number)
    }

    /// Whether messages can be sent.
    pub fn is_established(&self) -> bool {
        !self.closed && self.current.is_some()
    }

    /// Whether the chat is closed (every key wiped).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The verified peer identity, once known.
    pub fn peer_identity(&self) -> Option<IdentityPublic> {
        self.peer
    }

    /// The sequence number the next [`Chat::seal`] will carry minus one (0 before any seal).
    pub fn seal_sequence(&self) -> u64 {
        self.seal_seq
    }

    /// Number of skipped message keys currently held (over all chains).
    pub fn skipped_keys(&self) -> usize {
        self.current.as_ref().map_or(0, |e| e.recv.skipped.len())
            + self.previous.as_ref().map_or(0, |p| p.recv.skipped.len())
            + self
                .unconfirmed
                .as_ref()
                .map_or(0, |u| u.epoch.recv.skipped.len())
    }

    /// Approximate bytes this machine holds, not counting the RNG it owns (zero-sized for the OS
    /// generator): its own size plus heap for skipped keys, queued frames and events, handshakes
    /// in flight and the previous epoch. An idle established chat holds under 1 KiB plus
    /// 40 bytes per skipped key.
    pub fn memory_bytes(&self) -> usize {
        let skipped = [
            self.current.as_ref().map(|e| e.recv.skipped.capacity()),
            self.previous.as_ref().map(|p| p.recv.skipped.capacity()),
            self.unconfirmed
                .as_ref()
                .map(|u| u.epoch.recv.skipped.capacity()),
        ]
        .into_iter()
        .flatten()
        .sum::<usize>()
            * core::mem::size_of::<(u64, Zeroizing<[u8; 32]>)>();
        let queued: usize = self.transmit.iter().map(|f| f.capacity()).sum::<usize>()
            + self.transmit.capacity() * core::mem::size_of::<Vec<u8>>()
            + self.events.capacity() * core::mem::size_of::<ChatEvent>();
        let pending = self.pending.as_ref().map_or(0, |p| {
            core::mem::size_of::<Pending>() + p.last_sent.capacity()
        }) + self.unconfirmed.as_ref().map_or(0, |u| {
            core::mem::size_of::<Unconfirmed>() + u.msg3_frame.capacity()
        });
        // The current epoch lives inline; the previous one is boxed.
        let epochs = self
            .previous
            .as_ref()
            .map_or(0, |_| core::mem::size_of::<Previous>());
        core::mem::size_of::<Self>() - core::mem::size_of::<R>()
            + self.rekey_log.capacity() * core::mem::size_of::<Instant>()
            + skipped
            + queued
            + pending
            + epochs
    }

    // ---------------------------------------------------------------- outputs

    /// The next frame to send to the peer (through the relay), if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let f = self.transmit.pop_front();
        if f.is_none() && self.transmit.capacity() > 0 {
            // An idle chat holds no queue memory.
            self.transmit = VecDeque::new();
        }
        f
    }

    /// The next event for the embedder, if any.
    pub fn poll_event(&mut self) -> Option<ChatEvent> {
        let e = self.events.pop_front();
        if e.is_none() && self.events.capacity() > 0 {
            self.events = VecDeque::new();
        }
        e
    }

    /// The next instant at which [`Chat::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let p = &self.config.rekey;
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(pd) = &self.pending {
            at(pd.started + p.handshake_timeout);
        }
        if let Some(u) = &self.unconfirmed {
            at(u.resend_at);
        }
        if let Some(prev) = &self.previous {
            at(prev.until);
        }
        if let Some(cur) = &self.current {
            at(cur.established_at + p.reject_after_time);
            if self.pending.is_none() && self.unconfirmed.is_none() {
                let due = if self.rekey_due {
                    Instant::ZERO
                } else {
                    cur.established_at + p.after_time
                };
                at(due.max(self.throttle_free_at()));
            }
        }
        next
    }

    // ---------------------------------------------------------------- inputs

    /// Handles one frame from the peer. Messages become [`ChatEvent::Message`] events;
    /// handshake frames may queue replies. A rejected frame leaves the keys, counters, epochs
    /// and the open/closed state unchanged; the one side effect is that an [`Error::Desync`]
    /// may start a (throttled) rekey, see the [module documentation](crate::chat).
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        let (h, body) = FrameHeader::parse_checked(frame, self.config.max_message_len)?;
        if h.chat_id != self.config.chat_id {
            return Err(Error::WrongChat);
        }
        match h.kind {
            FrameKind::HandshakeInit => self.on_msg1(now, &h, body),
            FrameKind::HandshakeResponse => self.on_msg2(now, &h, body),
            FrameKind::HandshakeFinish => self.on_msg3(now, &h, body),
            FrameKind::Data | FrameKind::Close => {
                if self.events.len() + 4 > self.config.queue_capacity {
                    return Err(Error::QueueFull);
                }
                let mut buf = Zeroizing::new(frame.to_vec());
                let (epoch, counter, range) = self.open_authenticated(now, &h, &mut buf)?;
                if h.kind == FrameKind::Data && !range.is_empty() {
                    let plaintext = buf.get(range).unwrap_or_default().to_vec();
                    self.events.push_back(ChatEvent::Message {
                        epoch,
                        counter,
                        plaintext,
                    });
                }
                Ok(())
            }
        }
    }

    /// Buffer API for the receive hot path: decrypts a data frame in place and returns where
    /// the plaintext lies; no allocation, no event. Other frames are handed to
    /// [`Chat::handle_frame`] and reported as [`Opened::Control`] (as is an empty data frame, a
    /// key confirmation). A rejected frame leaves the buffer unchanged, except that with the
    /// `ring` feature a frame whose tag fails has its body zeroed by `ring` (never left as
    /// unauthenticated plaintext).
    ///
    /// ```
    /// # use sealwire::chat::{Chat, ChatConfig, ChatId, Opened};
    /// # use sealwire::crypto::ed25519::IdentityKey;
    /// # use sealwire::time::Instant;
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// # let id = ChatId::new([7; 16]); let now = Instant::ZERO;
    /// # let mut a = Chat::initiator(ChatConfig::new(id, IdentityKey::from_seed([1; 32])), ChaCha20Rng::from_seed([1; 32]), now).unwrap();
    /// # let mut b = Chat::responder(ChatConfig::new(id, IdentityKey::from_seed([2; 32])), ChaCha20Rng::from_seed([2; 32])).unwrap();
    /// # loop { let mut m = false;
    /// #   while let Some(f) = a.poll_transmit() { b.handle_frame(now, &f).unwrap(); m = true; }
    /// #   while let Some(f) = b.poll_transmit() { a.handle_frame(now, &f).unwrap(); m = true; }
    /// #   if !m { break; } }
    /// let mut buf = [0u8; 128];
    /// let n = a.seal_into(now, b"in place", &mut buf).unwrap();
    /// match b.open_in_place(now, &mut buf[..n]).unwrap() {
    ///     Opened::Message { plaintext, .. } => assert_eq!(&buf[plaintext], b"in place"),
    ///     _ => unreachable!(),
    /// }
    /// ```
    pub fn open_in_place(&mut self, now: Instant, frame: &mut [u8]) -> Result<Opened, Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        let (h, _) = FrameHeader::parse_checked(frame, self.config.max_message_len)?;
        if h.chat_id != self.config.chat_id {
            return Err(Error::WrongChat);
        }
        if h.kind != FrameKind::Data {
            self.handle_frame(now, frame)?;
            return Ok(Opened::Control);
        }
        let (epoch, counter, range) = self.open_authenticated(now, &h, frame)?;
        if range.is_empty() {
            return Ok(Opened::Control);
        }
        Ok(Opened::Message {
            epoch,
            counter,
            plaintext: range,
        })
    }

    /// Encrypts `plaintext` as the next data frame and queues it for [`Chat::poll_transmit`].
    /// Returns the counter used. (An empty message is a keepalive: the peer does not report it.)
    pub fn send(&mut self, now: Instant, plaintext: &[u8]) -> Result<u64, Error> {
        if self.transmit.len() >= self.config.queue_capacity {
            return Err(Error::QueueFull);
        }
        let mut frame = alloc::vec![0u8; super::wire::data_frame_len(plaintext.len())];
        let (counter, _) = self.seal_frame(now, FrameKind::Data, plaintext, &mut frame)?;
        self.transmit.push_back(frame);
        self.after_send(now);
        Ok(counter)
    }

    /// Buffer API for the send hot path: writes the data frame for `plaintext` into `out` and
    /// returns its length; allocates nothing and queues nothing. If `out` is too small it is
    /// left untouched, no key is used, and `Err(BufferTooSmall { needed })` is returned.
    ///
    /// ```
    /// # use sealwire::chat::{Chat, ChatConfig, ChatId, Error};
    /// # use sealwire::crypto::ed25519::IdentityKey;
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// # let cfg = ChatConfig::new(ChatId::new([0; 16]), IdentityKey::from_seed([1; 32]));
    /// # let mut c = Chat::initiator(cfg, ChaCha20Rng::from_seed([0; 32]), sealwire::time::Instant::ZERO).unwrap();
    /// let mut small = [0u8; 8];
    /// // Before the handshake there is no key; the size is still checked first.
    /// assert_eq!(c.seal_into(sealwire::time::Instant::ZERO, b"hello", &mut small),
    ///            Err(Error::BufferTooSmall { needed: 30 + 5 + 16 }));
    /// ```
    pub fn seal_into(
        &mut self,
        now: Instant,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let (_, n) = self.seal_frame(now, FrameKind::Data, plaintext, out)?;
        self.after_send(now);
        Ok(n)
    }

    /// Starts a rekey: a new XX handshake for the next epoch, with this side as initiator.
    /// Messages keep flowing in the current epoch until it completes.
    pub fn rekey(&mut self, now: Instant) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        let Some(cur) = &self.current else {
            return Err(Error::NotEstablished);
        };
        if self.pending.is_some() || self.unconfirmed.is_some() {
            return Err(Error::RekeyInProgress);
        }
        if !self.throttle_allows(now) {
            return Err(Error::RekeyThrottled);
        }
        let next = cur.number.checked_add(1).ok_or(Error::Desync)?;
        self.start_handshake(now, next)
    }

    /// Closes the chat: queues an authenticated close frame (when established) and wipes every
    /// key. A [`ChatEvent::Closed`] event follows.
    pub fn close(&mut self, now: Instant) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.fail_closed(now, CloseReason::Normal);
        Ok(())
    }

    /// Acts on deadlines reached by `now`: handshake timeouts and retries, message-3
    /// retransmission, end of the previous epoch's grace, epoch expiry, automatic rekeys.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        let p = self.config.rekey;
        if let Some(pd) = &self.pending {
            if now >= pd.started + p.handshake_timeout {
                let was_initiator = pd.hs.role() == Role::Initiator;
                let epoch = pd.epoch;
                self.pending = None;
                if was_initiator && self.unconfirmed.is_none() {
                    // The first handshake always retries; rekeys retry within the throttle.
                    if epoch == 0 && self.current.is_none() {
                        let _ = self.start_handshake(now, 0);
                    } else if self.throttle_allows(now) {
                        let _ = self.start_handshake(now, epoch);
                    }
                }
            }
        }
        if let Some(u) = &mut self.unconfirmed {
            if now >= u.resend_at {
                if u.resends_left == 0 {
                    // The responder never confirmed: abandon the new keys.
                    let epoch = u.epoch.number;
                    self.unconfirmed = None;
                    if epoch == 0 && self.current.is_none() && self.pending.is_none() {
                        let _ = self.start_handshake(now, 0);
                    }
                } else {
                    u.resends_left -= 1;
                    u.resend_at = now + p.handshake_timeout;
                    let f = u.msg3_frame.clone();
                    if self.transmit.len() < self.config.queue_capacity {
                        self.transmit.push_back(f);
                    }
                }
            }
        }
        if self.role == Role::Initiator
            && self.current.is_none()
            && self.pending.is_none()
            && self.unconfirmed.is_none()
        {
            // Every attempt at a first epoch failed: the initiator starts over.
            let _ = self.start_handshake(now, 0);
        }
        if self.previous.as_ref().is_some_and(|prev| now >= prev.until) {
            self.previous = None;
        }
        let Some(cur) = &self.current else { return };
        if now >= cur.established_at + p.reject_after_time {
            self.fail_closed(now, CloseReason::Expired);
            return;
        }
        if self.pending.is_none()
            && self.unconfirmed.is_none()
            && (self.rekey_due || now >= cur.established_at + p.after_time)
            && !matches!(self.rekey(now), Err(Error::RekeyThrottled))
        {
            // Started, or impossible for a reason waiting will not fix: no longer due.
            self.rekey_due = false;
        }
    }

    // ---------------------------------------------------------------- internals

    pub(crate) fn push_event(&mut self, e: ChatEvent) {
        self.events.push_back(e);
    }

    pub(crate) fn throttle_allows(&self, now: Instant) -> bool {
        let period = self.config.rekey.throttle_period;
        let recent = self.rekey_log.iter().filter(|t| now < **t + period).count();
        recent < self.config.rekey.throttle_max as usize
    }

    fn throttle_free_at(&self) -> Instant {
        if self.rekey_log.len() < self.config.rekey.throttle_max as usize {
            return Instant::ZERO;
        }
        self.rekey_log
            .iter()
            .min()
            .map_or(Instant::ZERO, |t| *t + self.config.rekey.throttle_period)
    }

    pub(crate) fn log_rekey(&mut self, now: Instant) {
        let max = self.config.rekey.throttle_max as usize;
        if self.rekey_log.len() >= max {
            if let Some(pos) = self
                .rekey_log
                .iter()
                .enumerate()
                .min_by_key(|(_, t)| **t)
                .map(|(i, _)| i)
            {
                self.rekey_log.swap_remove(pos);
            }
        }
        self.rekey_log.push(now);
    }

    pub(crate) fn frame(&self, kind: FrameKind, epoch: u32, counter: u64, body: &[u8]) -> Vec<u8> {
        let h = FrameHeader {
            kind,
            chat_id: self.config.chat_id,
            epoch,
            counter,
        };
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&h.encode());
        out.extend_from_slice(body);
        out
    }

    /// Encrypts into `out` (header ‖ ciphertext ‖ tag). Nothing changes unless it succeeds.
    pub(crate) fn seal_frame(
        &mut self,
        _now: Instant,
        kind: FrameKind,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<(u64, usize), Error> {
        let needed = super::wire::data_frame_len(plaintext.len());
        if out.len() < needed {
            return Err(Error::BufferTooSmall { needed });
        }
        if self.closed {
            return Err(Error::Closed);
        }
        if plaintext.len() > self.config.max_message_len {
            return Err(Error::MessageTooLarge);
        }
        let lease = self.lease;
        let Some(cur) = self.current.as_mut() else {
            return Err(Error::NotEstablished);
        };
        if let Some((e, end)) = lease {
            if e == cur.number && cur.send.chain.index() >= end {
                return Err(Error::LeaseExhausted);
            }
        }
        let (counter, mk) = cur.send.next_key().ok_or(Error::Desync)?;
        let header = FrameHeader {
            kind,
            chat_id: self.config.chat_id,
            epoch: cur.number,
            counter,
        }
        .encode();
        let (head, rest) = out.split_at_mut(HEADER_LEN);
        head.copy_from_slice(&header);
        let (body, tail) = rest.split_at_mut(plaintext.len());
        body.copy_from_slice(plaintext);
        let tag = seal_with(&mk, &header, body);
        if let Some(t) = tail.get_mut(..TAG_LEN) {
            t.copy_from_slice(&tag);
        }
        if let Some((e, end)) = lease {
            let half = self.config.seal_lease / 2;
            if e == cur.number && counter.saturating_add(1).saturating_add(half) == end {
                self.events.push_back(ChatEvent::SealAdvised);
            }
        }
        Ok((counter, needed))
    }

    fn after_send(&mut self, now: Instant) {
        let Some(cur) = &self.current else { return };
        if cur.send.chain.index() >= self.config.rekey.after_messages
            && self.pending.is_none()
            && self.unconfirmed.is_none()
        {
            let _ = self.rekey(now);
        }
    }

    /// Authenticates and decrypts a data or close frame in `frame` (whole frame, in place).
    /// Returns the plaintext range. The chain advances only on success.
    fn open_authenticated(
        &mut self,
        now: Instant,
        h: &FrameHeader,
        frame: &mut [u8],
    ) -> Result<(u32, u64, Range<usize>), Error> {
        let per = self.config.window.per_chain;
        let (header, rest) = frame
            .split_at_mut_checked(HEADER_LEN)
            .ok_or(Error::Malformed)?;
        let ct_len = rest.len().checked_sub(TAG_LEN).ok_or(Error::Malformed)?;
        let (ct, tag) = rest.split_at_mut(ct_len);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| Error::Malformed)?;

        #[derive(Clone, Copy)]
        enum Which {
            Current,
            Unconfirmed,
            Previous,
        }
        let which = if self
            .unconfirmed
            .as_ref()
            .is_some_and(|u| u.epoch.number == h.epoch)
        {
            Which::Unconfirmed
        } else if self.current.as_ref().is_some_and(|c| c.number == h.epoch) {
            Which::Current
        } else if self
            .previous
            .as_ref()
            .is_some_and(|p| p.number == h.epoch && now < p.until)
        {
            Which::Previous
        } else {
            match &self.current {
                None => return Err(Error::NotEstablished),
                // An epoch already left behind (or whose grace is over).
                Some(c) if h.epoch < c.number => return Err(Error::Replayed),
                // The next epoch, whose handshake has not completed here (yet, or at all).
                Some(c) if h.epoch == c.number.saturating_add(1) => {
                    return Err(Error::NotEstablished)
                }
                // An epoch we never agreed on. Unauthenticated: see `on_desync`.
                Some(_) => return Err(self.on_desync(now)),
            }
        };
        let chain = match which {
            Which::Current => self.current.as_ref().map(|c| &c.recv),
            Which::Unconfirmed => self.unconfirmed.as_ref().map(|u| &u.epoch.recv),
            Which::Previous => self.previous.as_ref().map(|p| &p.recv),
        }
        .ok_or(Error::NotEstablished)?;
        let adv = match chain.open(h.counter, per, header, ct, &tag) {
            Ok(a) => a,
            // A counter beyond the window, never authenticated: see `on_desync`.
            Err(Error::Desync) => return Err(self.on_desync(now)),
            Err(e) => return Err(e),
        };
        if h.kind == FrameKind::Close && ct.len() != 1 {
            return Err(Error::Malformed);
        }
        let chain = match which {
            Which::Current => self.current.as_mut().map(|c| &mut c.recv),
            Which::Unconfirmed => self.unconfirmed.as_mut().map(|u| &mut u.epoch.recv),
            Which::Previous => self.previous.as_mut().map(|p| &mut p.recv),
        }
        .ok_or(Error::NotEstablished)?;
        chain.commit(adv, per);
        self.enforce_total_skipped();
        if let Which::Unconfirmed = which {
            // Any authenticated frame in the new epoch proves the responder has its keys.
            if let Some(u) = self.unconfirmed.take() {
                let peer = u.peer;
                let Unconfirmed { epoch, .. } = *u;
                self.install(now, epoch, peer);
            }
        }
        if h.kind == FrameKind::Close {
            let code = ct.first().copied().unwrap_or(0);
            self.wipe();
            self.events.push_back(ChatEvent::Closed {
                reason: CloseReason::from_code(code),
                by_peer: true,
            });
            return Ok((h.epoch, h.counter, HEADER_LEN..HEADER_LEN));
        }
        Ok((h.epoch, h.counter, HEADER_LEN..HEADER_LEN + ct_len))
    }

    fn enforce_total_skipped(&mut self) {
        let total = self.config.window.total as usize;
        let mut held = self.skipped_keys();
        if held <= total {
            return;
        }
        // The previous epoch's keys go first, then the oldest of the current epoch.
        if let Some(p) = &mut self.previous {
            let keep = p.recv.skipped.len().saturating_sub(held - total);
            held -= p.recv.skipped.len() - keep;
            p.recv.trim(keep);
        }
        if held > total {
            if let Some(c) = &mut self.current {
                let keep = c.recv.skipped.len().saturating_sub(held - total);
                c.recv.trim(keep);
            }
        }
    }

    /// A data or close frame that would need a jump beyond what we accept (a counter more than
    /// the window ahead, or an epoch more than one ahead). Such a frame was never authenticated
    /// (we refuse to derive that far), so it must not cost the chat anything: every key,
    /// counter and skipped key stays as it was, and the chat stays open. Why not fail closed:
    /// anyone who can inject one frame (a relay, an on-path or off-path attacker) could then
    /// destroy any chat, and closing is permanent where dropping traffic is not.
    ///
    /// The one thing it may do is what a genuine desync needs and an attacker cannot abuse:
    /// start a rekey, if established, no handshake is in flight and the rekey throttle allows
    /// ([`Chat::rekey`]'s rules). A fresh epoch starts both chains at counter 0, so a peer whose
    /// frames really are out of reach (more than a window of them lost) is resynchronised as
    /// soon as the handshake completes; a forged frame buys at most `throttle_max` extra rekeys
    /// per `throttle_period`, each of which only moves the chat to a new epoch with the
    /// genuine peer (an attacker cannot complete it as the peer).
    fn on_desync(&mut self, now: Instant) -> Error {
        let _ = self.rekey(now);
        Error::Desync
    }

    /// Queues an authenticated close (if there are keys), wipes everything, reports `Closed`.
    pub(crate) fn fail_closed(&mut self, now: Instant, reason: CloseReason) {
        let _ = now;
        if self.current.is_some() {
            let mut frame = alloc::vec![0u8; super::wire::data_frame_len(1)];
            self.lease = None;
            if self
                .seal_frame(now, FrameKind::Close, &[reason.code()], &mut frame)
                .is_ok()
            {
                self.transmit.push_back(frame);
            }
        }
        self.wipe();
        self.events.push_back(ChatEvent::Closed {
            reason,
            by_peer: false,
        });
    }

    fn wipe(&mut self) {
        self.current = None;
        self.previous = None;
        self.pending = None;
        self.unconfirmed = None;
        self.closed = true;
    }
}
