//! The [`Chat`] machine's state and public surface: construction, queries, inputs, outputs,
//! deadlines and teardown. Its handshake side is in `handshake.rs`, its message side in
//! `messages.rs`, the epochs in `epochs.rs`, the rekey throttle in `throttle.rs`, sealed state
//! in `sealed.rs`.

use alloc::vec::Vec;
use core::fmt;

use zeroize::Zeroizing;

use crate::crypto::ed25519::{IdentityKey, IdentityPublic};
use crate::queue::Outbox;
use crate::time::Instant;

use super::config::ChatConfig;
use super::epochs::{Epochs, Resend};
use super::error::ChatError;
use super::event::{ChatEvent, ChatStats, CloseReason, Opened};
use super::noise::Role;
use super::throttle::Throttle;
use super::wire::{data_frame_len, ChatId, FrameHeader, FrameKind};

/// A per-chat forward-secret channel: one machine per chat and side, handling the first
/// handshake, messages, rekeys and teardown. See the [module documentation](crate::chat).
///
/// ```
/// use sealwire::chat::{Chat, ChatConfig, ChatEvent, ChatId};
/// use sealwire::crypto::ed25519::IdentityKey;
/// use sealwire::time::Instant;
/// use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
///
/// let cfg = ChatConfig::new(ChatId::new([7; 16]));
/// let now = Instant::ZERO;
/// let mut alice = Chat::initiator(now, IdentityKey::from_seed([1; 32]), cfg.clone(),
///                                 ChaCha20Rng::from_seed([1; 32])).unwrap();
/// let mut bob = Chat::responder(IdentityKey::from_seed([2; 32]), cfg,
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
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Chat<R> {
    pub(super) config: ChatConfig,
    /// Our long-term Ed25519 identity (wiped on drop).
    pub(super) identity: IdentityKey,
    pub(super) rng: R,
    pub(super) role: Role,
    pub(super) epochs: Epochs,
    pub(super) peer: Option<IdentityPublic>,
    pub(super) throttle: Throttle,
    /// Re-confirmations of a retransmitted message 3: each costs a send counter and a frame,
    /// so a relay replaying message 3 gets them at the rekey throttle's rate, no faster.
    pub(super) reconfirm: Throttle,
    /// A restore wanted a fresh epoch but the throttle was spent: rekey as soon as it allows.
    pub(super) rekey_due: bool,
    pub(super) transmit: Outbox<Vec<u8>>,
    pub(super) events: Outbox<ChatEvent>,
    pub(super) closed: bool,
    pub(super) seal_seq: u64,
    /// `(epoch, first counter not covered)` of the last seal.
    pub(super) lease: Option<(u32, u64)>,
    /// The restored epoch whose send chain must not be used (the record was not proven the
    /// newest): cleared when a handshake installs a fresh epoch.
    pub(super) awaiting_rekey: Option<u32>,
}

impl<R> fmt::Debug for Chat<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chat")
            .field("chat_id", &self.config.chat_id)
            .field("role", &self.role)
            .field("epoch", &self.epochs.current().map(|e| e.number))
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl<R: rand_core::CryptoRng> Chat<R> {
    pub(super) fn blank(
        identity: IdentityKey,
        config: ChatConfig,
        rng: R,
        role: Role,
    ) -> Result<Self, ChatError> {
        config.validate()?;
        Ok(Chat {
            throttle: Throttle::new(config.rekey.throttle_max, config.rekey.throttle_period),
            reconfirm: Throttle::new(config.rekey.throttle_max, config.rekey.throttle_period),
            transmit: Outbox::new(config.queue_capacity),
            events: Outbox::new(config.queue_capacity),
            config,
            identity,
            rng,
            role,
            epochs: Epochs::default(),
            peer: None,
            rekey_due: false,
            closed: false,
            seal_seq: 0,
            lease: None,
            awaiting_rekey: None,
        })
    }

    /// Creates the side that starts the first handshake; its message 1 is queued at once
    /// (drain [`Chat::poll_transmit`]). The machine owns `identity` and wipes it on drop.
    ///
    /// ```
    /// # use sealwire::chat::{Chat, ChatConfig, ChatId};
    /// # use sealwire::crypto::ed25519::IdentityKey;
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// let cfg = ChatConfig::new(ChatId::new([0; 16]));
    /// let mut c = Chat::initiator(sealwire::time::Instant::ZERO, IdentityKey::from_seed([1; 32]),
    ///                             cfg, ChaCha20Rng::from_seed([0; 32])).unwrap();
    /// assert_eq!(c.poll_transmit().unwrap().len(), 30 + 32);
    /// ```
    pub fn initiator(
        now: Instant,
        identity: IdentityKey,
        config: ChatConfig,
        rng: R,
    ) -> Result<Self, ChatError> {
        let mut chat = Self::blank(identity, config, rng, Role::Initiator)?;
        chat.start_handshake(now, 0)?;
        Ok(chat)
    }

    /// Creates the side that waits for the peer's message 1.
    ///
    /// ```
    /// # use sealwire::chat::{Chat, ChatConfig, ChatId};
    /// # use sealwire::crypto::ed25519::IdentityKey;
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// let cfg = ChatConfig::new(ChatId::new([0; 16]));
    /// let mut c = Chat::responder(IdentityKey::from_seed([2; 32]), cfg,
    ///                             ChaCha20Rng::from_seed([0; 32])).unwrap();
    /// assert!(c.poll_transmit().is_none());
    /// ```
    pub fn responder(identity: IdentityKey, config: ChatConfig, rng: R) -> Result<Self, ChatError> {
        Self::blank(identity, config, rng, Role::Responder)
    }

    // ---------------------------------------------------------------- queries

    /// The chat id.
    pub fn chat_id(&self) -> ChatId {
        self.config.chat_id
    }

    /// The current (sending) epoch, once established.
    pub fn epoch(&self) -> Option<u32> {
        self.epochs.current().map(|e| e.number)
    }

    /// Whether the chat has an epoch (it may still refuse to send: see
    /// [`Chat::is_awaiting_rekey`] and the seal lease).
    pub fn is_established(&self) -> bool {
        !self.closed && self.epochs.current().is_some()
    }

    /// Whether sends are held back ([`ChatError::AwaitingRekey`]) because this chat was
    /// restored from a record not proven to be the newest, and the fresh epoch its restore
    /// started is not established yet. Keep what the user typed and send it after
    /// [`ChatEvent::Rekeyed`].
    ///
    /// ```
    /// # use sealwire::chat::{Chat, ChatConfig, ChatId};
    /// # use sealwire::crypto::ed25519::IdentityKey;
    /// # use sealwire::time::Instant;
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// let cfg = ChatConfig::new(ChatId::new([0; 16]));
    /// let c = Chat::initiator(Instant::ZERO, IdentityKey::from_seed([1; 32]), cfg, ChaCha20Rng::from_seed([0; 32])).unwrap();
    /// assert!(!c.is_awaiting_rekey()); // only a restored chat ever waits
    /// ```
    pub fn is_awaiting_rekey(&self) -> bool {
        !self.closed && self.awaiting_rekey.is_some_and(|e| self.epoch() == Some(e))
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
        self.epochs.skipped_keys()
    }

    /// Counters: outputs dropped because a bounded queue was full.
    pub fn stats(&self) -> ChatStats {
        ChatStats {
            transmits_dropped: self.transmit.dropped(),
            events_dropped: self.events.dropped(),
        }
    }

    /// Approximate bytes this machine holds, not counting the RNG it owns (zero-sized for the OS
    /// generator): its own size plus heap for skipped keys, queued frames and events, handshakes
    /// in flight and the previous epoch. An idle established chat holds under 1 KiB plus
    /// 40 bytes per skipped key.
    pub fn memory_bytes(&self) -> usize {
        let frames = self
            .transmit
            .iter()
            .map(|f| f.capacity())
            .fold(0, usize::saturating_add);
        [
            core::mem::size_of::<Self>().saturating_sub(core::mem::size_of::<R>()),
            frames,
            self.transmit.storage_bytes(),
            self.events.storage_bytes(),
            self.throttle.heap_bytes(),
            self.reconfirm.heap_bytes(),
            self.epochs.heap_bytes(),
        ]
        .into_iter()
        .fold(0, usize::saturating_add)
    }

    // ---------------------------------------------------------------- outputs

    /// The next frame to send to the peer (through the relay), if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let f = self.transmit.pop();
        if self.transmit.is_empty() {
            // An idle chat holds no queue memory.
            self.transmit.clear();
        }
        f
    }

    /// The next event for the embedder, if any.
    pub fn poll_event(&mut self) -> Option<ChatEvent> {
        let e = self.events.pop();
        if self.events.is_empty() {
            self.events.clear();
        }
        e
    }

    /// The next instant at which [`Chat::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let p = &self.config.rekey;
        let table = self
            .epochs
            .next_deadline(p.handshake_timeout, p.reject_after_time);
        let rekey = self
            .epochs
            .current()
            .filter(|_| !self.epochs.handshaking())
            .map(|cur| {
                let due = if self.rekey_due {
                    Instant::ZERO
                } else {
                    cur.at_age(p.after_time)
                };
                due.max(self.throttle.free_at())
            });
        [table, rekey].into_iter().flatten().min()
    }

    // ---------------------------------------------------------------- inputs

    /// Handles one frame from the peer. Messages become [`ChatEvent::Message`] events;
    /// handshake frames may queue replies. A rejected frame leaves the keys, counters, epochs
    /// and the open/closed state unchanged; the one side effect is that a [`ChatError::Desync`]
    /// may start a (throttled) rekey, see the [module documentation](crate::chat).
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), ChatError> {
        if self.closed {
            return Err(ChatError::Closed);
        }
        let (h, body) = FrameHeader::parse_checked(frame, self.config.max_message_len)?;
        if h.chat_id != self.config.chat_id {
            return Err(ChatError::WrongChat);
        }
        match h.kind {
            FrameKind::HandshakeInit => self.on_msg1(now, &h, body),
            FrameKind::HandshakeResponse => self.on_msg2(now, &h, body),
            FrameKind::HandshakeFinish => self.on_msg3(now, &h, body),
            FrameKind::Data | FrameKind::Close => {
                // Refused before any key moves, so the frame can be delivered again.
                if !self.events.has_room(4) {
                    return Err(ChatError::Capacity);
                }
                let mut buf = Zeroizing::new(frame.to_vec());
                let (epoch, counter, range) = self.open_authenticated(now, &h, &mut buf)?;
                if h.kind == FrameKind::Data && !range.is_empty() {
                    let plaintext = buf.get(range).unwrap_or_default().to_vec();
                    self.events.push(ChatEvent::Message {
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
    /// # let cfg = ChatConfig::new(ChatId::new([7; 16])); let now = Instant::ZERO;
    /// # let mut a = Chat::initiator(now, IdentityKey::from_seed([1; 32]), cfg.clone(), ChaCha20Rng::from_seed([1; 32])).unwrap();
    /// # let mut b = Chat::responder(IdentityKey::from_seed([2; 32]), cfg, ChaCha20Rng::from_seed([2; 32])).unwrap();
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
    pub fn open_in_place(&mut self, now: Instant, frame: &mut [u8]) -> Result<Opened, ChatError> {
        if self.closed {
            return Err(ChatError::Closed);
        }
        let (h, _) = FrameHeader::parse_checked(frame, self.config.max_message_len)?;
        if h.chat_id != self.config.chat_id {
            return Err(ChatError::WrongChat);
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
    pub fn send(&mut self, now: Instant, plaintext: &[u8]) -> Result<u64, ChatError> {
        if !self.transmit.has_room(1) {
            return Err(ChatError::Capacity);
        }
        let mut frame = alloc::vec![0u8; data_frame_len(plaintext.len())];
        let (counter, _) = self.seal_frame(FrameKind::Data, plaintext, &mut frame)?;
        self.transmit.push(frame);
        self.after_send(now);
        Ok(counter)
    }

    /// Buffer API for the send hot path: writes the data frame for `plaintext` into `out` and
    /// returns its length; allocates nothing and queues nothing. If `out` is too small it is
    /// left untouched, no key is used, and `Err(BufferTooSmall { needed })` is returned.
    ///
    /// ```
    /// # use sealwire::chat::{Chat, ChatConfig, ChatError, ChatId};
    /// # use sealwire::crypto::ed25519::IdentityKey;
    /// # use sealwire::time::Instant;
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// # let cfg = ChatConfig::new(ChatId::new([0; 16]));
    /// # let mut c = Chat::initiator(Instant::ZERO, IdentityKey::from_seed([1; 32]), cfg, ChaCha20Rng::from_seed([0; 32])).unwrap();
    /// let mut small = [0u8; 8];
    /// // Before the handshake there is no key; the size is still checked first.
    /// assert_eq!(c.seal_into(Instant::ZERO, b"hello", &mut small),
    ///            Err(ChatError::BufferTooSmall { needed: 30 + 5 + 16 }));
    /// ```
    pub fn seal_into(
        &mut self,
        now: Instant,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, ChatError> {
        let (_, n) = self.seal_frame(FrameKind::Data, plaintext, out)?;
        self.after_send(now);
        Ok(n)
    }

    /// Starts a rekey: a new XX handshake for the next epoch, with this side as initiator.
    /// Messages keep flowing in the current epoch until it completes.
    pub fn rekey(&mut self, now: Instant) -> Result<(), ChatError> {
        if self.closed {
            return Err(ChatError::Closed);
        }
        let Some(cur) = self.epochs.current() else {
            return Err(ChatError::NotEstablished);
        };
        if self.epochs.handshaking() {
            return Err(ChatError::RekeyInProgress);
        }
        if !self.throttle.allows(now) {
            return Err(ChatError::RekeyThrottled);
        }
        let next = cur.number.checked_add(1).ok_or(ChatError::Desync)?;
        self.start_handshake(now, next)
    }

    /// Closes the chat: queues an authenticated close frame (when established) and wipes every
    /// key. A [`ChatEvent::Closed`] event follows. Refused with [`ChatError::Capacity`] (and
    /// nothing changed) while the queues have no room for them.
    pub fn close(&mut self) -> Result<(), ChatError> {
        if self.closed {
            return Err(ChatError::Closed);
        }
        if !self.transmit.has_room(1) || !self.events.has_room(1) {
            return Err(ChatError::Capacity);
        }
        self.fail_closed(CloseReason::Normal);
        Ok(())
    }

    /// Acts on deadlines reached by `now`: handshake timeouts and retries, message-3
    /// retransmission, end of the previous epoch's grace, epoch expiry, automatic rekeys.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        let p = self.config.rekey;
        if let Some((role, epoch)) = self.epochs.expire_pending(now, p.handshake_timeout) {
            if role == Role::Initiator && !self.epochs.has_unconfirmed() {
                // The first handshake always retries; rekeys retry within the throttle.
                if epoch == 0 && self.epochs.current().is_none() {
                    let _ = self.start_handshake(now, 0);
                } else if self.throttle.allows(now) {
                    let _ = self.start_handshake(now, epoch);
                }
            }
        }
        match self.epochs.resend_due(now, p.handshake_timeout) {
            Resend::Nothing => {}
            Resend::Frame(f) => {
                self.transmit.push(f);
            }
            Resend::Abandoned { epoch } => {
                // The responder never confirmed: its keys are gone; a first epoch starts over.
                if epoch == 0 && self.epochs.current().is_none() && self.epochs.pending().is_none()
                {
                    let _ = self.start_handshake(now, 0);
                }
            }
        }
        if self.role == Role::Initiator
            && self.epochs.current().is_none()
            && !self.epochs.handshaking()
        {
            // Every attempt at a first epoch failed: the initiator starts over.
            let _ = self.start_handshake(now, 0);
        }
        self.epochs.expire_previous(now);
        let Some(cur) = self.epochs.current() else {
            return;
        };
        if cur.age(now) >= p.reject_after_time {
            self.fail_closed(CloseReason::Expired);
            return;
        }
        if !self.epochs.handshaking()
            && (self.rekey_due || cur.age(now) >= p.after_time)
            && !matches!(self.rekey(now), Err(ChatError::RekeyThrottled))
        {
            // Started, or impossible for a reason waiting will not fix: no longer due.
            self.rekey_due = false;
        }
    }

    /// Queues an authenticated close (if there are keys), wipes everything, reports `Closed`.
    fn fail_closed(&mut self, reason: CloseReason) {
        if self.epochs.current().is_some() {
            let mut frame = alloc::vec![0u8; data_frame_len(1)];
            // Within the lease (its last counter is kept for this frame) and never under a
            // restored epoch awaiting its rekey: a key a restore could hand out again is never
            // used, not even for a close. Where it cannot go out the chat still closes here,
            // and the peer learns it from the epoch's expiry.
            if self
                .seal_frame(FrameKind::Close, &[reason.code()], &mut frame)
                .is_ok()
            {
                self.transmit.push(frame);
            }
        }
        self.wipe();
        self.events.push(ChatEvent::Closed {
            reason,
            by_peer: false,
        });
    }

    pub(super) fn wipe(&mut self) {
        self.epochs.wipe();
        self.closed = true;
    }
}
