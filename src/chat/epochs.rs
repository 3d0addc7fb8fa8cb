//! A chat's key epochs and the table that holds them: the current epoch (sending and
//! receiving), the one the initiator installed but the responder has not confirmed yet, the
//! previous epoch's receive chain (kept for a grace period), and the handshake in flight.
//!
//! The table answers "which receive chain does a frame of epoch E go to", installs a new epoch
//! (the old one becoming the previous), enforces the total bound on skipped keys over all its
//! chains, wipes everything on close, and accounts for its memory. Why one owner: the four
//! slots change together during a rekey (a chat is established *and* handshaking, and the old
//! epoch still receives), and every rule about them is easier to check in one place.

use alloc::boxed::Box;
use alloc::vec::Vec;

use zeroize::Zeroizing;

use crate::crypto::ed25519::IdentityPublic;
use crate::time::{Duration, Instant};

use super::config::SkipWindow;
use super::error::ChatError;
use super::noise::{Handshake, HandshakeOutput, Role};
use super::ratchet::{Advance, ChainKey, RecvChain, SendChain};

/// One established key epoch.
// Crate-private copies only where the original is then dropped (and wiped).
#[derive(Clone)]
pub(crate) struct Epoch {
    pub(crate) number: u32,
    pub(crate) send: SendChain,
    pub(crate) recv: RecvChain,
    /// When this process first held the epoch (its handshake, or its restore) ...
    pub(crate) established_at: Instant,
    /// ... and how old the epoch already was then (zero unless restored). Kept apart because
    /// a restored process's clock may start after the epoch was born: `Instant` cannot go
    /// below its origin.
    pub(crate) head_start: Duration,
    pub(crate) handshake_hash: [u8; 32],
    /// Responder only: SHA-256 of the message 3 body that established this epoch, so a
    /// retransmitted message 3 is answered with a fresh confirmation.
    pub(crate) msg3_digest: Option<[u8; 32]>,
    /// Responder only: the ephemeral key of the message 1 that started this epoch, so a
    /// duplicate of it is told apart from a peer redoing the epoch.
    pub(crate) peer_msg1_ephemeral: Option<[u8; 32]>,
}

impl Epoch {
    /// How old the epoch is at `now`.
    pub(crate) fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.established_at)
            .saturating_add(self.head_start)
    }

    /// The instant the epoch reaches age `age` (its origin when it is already older).
    pub(crate) fn at_age(&self, age: Duration) -> Instant {
        self.established_at
            .saturating_add(age.saturating_sub(self.head_start))
    }

    /// The epoch a completed handshake yields for `role`: `Split()`'s first key sends from the
    /// initiator, the second from the responder; both chains start at counter 0.
    pub(crate) fn from_handshake(
        number: u32,
        role: Role,
        out: HandshakeOutput,
        now: Instant,
        msg3_digest: Option<[u8; 32]>,
    ) -> Epoch {
        let HandshakeOutput {
            handshake_hash,
            initiator_to_responder,
            responder_to_initiator,
        } = out;
        let (send, recv) = match role {
            Role::Initiator => (initiator_to_responder, responder_to_initiator),
            Role::Responder => (responder_to_initiator, initiator_to_responder),
        };
        Epoch {
            number,
            send: SendChain {
                chain: ChainKey::new(send, 0),
            },
            recv: RecvChain::new(ChainKey::new(recv, 0)),
            established_at: now,
            head_start: Duration::ZERO,
            handshake_hash,
            msg3_digest,
            peer_msg1_ephemeral: None,
        }
    }
}

/// An epoch the initiator has keys for but the responder has not confirmed yet.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct Unconfirmed {
    pub(crate) epoch: Epoch,
    pub(crate) msg3_frame: Vec<u8>,
    pub(crate) resend_at: Instant,
    pub(crate) resends_left: u8,
    pub(crate) peer: IdentityPublic,
}

/// The receive chain of the epoch before the current one, kept for a grace period.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct Previous {
    pub(crate) number: u32,
    pub(crate) recv: RecvChain,
    pub(crate) until: Instant,
}

/// A handshake in flight.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct Pending {
    pub(crate) epoch: u32,
    pub(crate) hs: Handshake,
    pub(crate) started: Instant,
    /// The last handshake frame we sent, re-sent when the peer's previous message is repeated.
    pub(crate) last_sent: Vec<u8>,
}

/// The receive chain a data or close frame goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Current,
    Unconfirmed,
    Previous,
}

/// What the unconfirmed epoch's message-3 timer asks for.
pub(crate) enum Resend {
    /// Nothing due.
    Nothing,
    /// Send message 3 again.
    Frame(Vec<u8>),
    /// Every resend went unanswered: the epoch's keys are dropped.
    Abandoned {
        /// The abandoned epoch.
        epoch: u32,
    },
}

/// The epochs of one chat. See the module documentation.
#[derive(Default)]
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct Epochs {
    current: Option<Epoch>,
    unconfirmed: Option<Box<Unconfirmed>>,
    previous: Option<Box<Previous>>,
    pending: Option<Box<Pending>>,
}

impl Epochs {
    /// The table of a chat restored from a sealed record (no handshake survives a seal).
    pub(crate) fn restored(current: Epoch, previous: Option<Previous>) -> Self {
        Epochs {
            current: Some(current),
            previous: previous.map(Box::new),
            ..Epochs::default()
        }
    }

    pub(crate) fn current(&self) -> Option<&Epoch> {
        self.current.as_ref()
    }

    pub(crate) fn current_mut(&mut self) -> Option<&mut Epoch> {
        self.current.as_mut()
    }

    pub(crate) fn previous(&self) -> Option<&Previous> {
        self.previous.as_deref()
    }

    pub(crate) fn pending(&self) -> Option<&Pending> {
        self.pending.as_deref()
    }

    /// Whether the initiator holds keys the responder has not confirmed yet.
    pub(crate) fn has_unconfirmed(&self) -> bool {
        self.unconfirmed.is_some()
    }

    /// Whether a rekey (or the first handshake) is under way: a handshake in flight, or keys
    /// awaiting the responder's confirmation.
    pub(crate) fn handshaking(&self) -> bool {
        self.pending.is_some() || self.unconfirmed.is_some()
    }

    /// Which receive chain takes a data or close frame of `epoch` at `now`. The misses are the
    /// errors of such a frame: no keys yet (or the next epoch, not agreed here yet) ⇒
    /// `NotEstablished`; an epoch left behind (or whose grace is over) ⇒ `Replayed`; an epoch
    /// never agreed ⇒ `Desync` (unauthenticated: see the desync rule of the module docs).
    pub(crate) fn lookup(&self, now: Instant, epoch: u32) -> Result<Slot, ChatError> {
        if self
            .unconfirmed
            .as_ref()
            .is_some_and(|u| u.epoch.number == epoch)
        {
            return Ok(Slot::Unconfirmed);
        }
        if self.current.as_ref().is_some_and(|c| c.number == epoch) {
            return Ok(Slot::Current);
        }
        if self
            .previous
            .as_ref()
            .is_some_and(|p| p.number == epoch && now < p.until)
        {
            return Ok(Slot::Previous);
        }
        match &self.current {
            None => Err(ChatError::NotEstablished),
            Some(c) if epoch < c.number => Err(ChatError::Replayed),
            Some(c) if epoch == c.number.saturating_add(1) => Err(ChatError::NotEstablished),
            Some(_) => Err(ChatError::Desync),
        }
    }

    /// The receive chain in `slot`.
    pub(crate) fn recv(&self, slot: Slot) -> Option<&RecvChain> {
        match slot {
            Slot::Current => self.current.as_ref().map(|c| &c.recv),
            Slot::Unconfirmed => self.unconfirmed.as_ref().map(|u| &u.epoch.recv),
            Slot::Previous => self.previous.as_ref().map(|p| &p.recv),
        }
    }

    /// Applies a successful open to the chain in `slot`, then holds the skipped keys of all
    /// chains to `window.total`: the previous epoch's go first, then the oldest of the current.
    pub(crate) fn commit(&mut self, slot: Slot, adv: Advance, window: SkipWindow) {
        let chain = match slot {
            Slot::Current => self.current.as_mut().map(|c| &mut c.recv),
            Slot::Unconfirmed => self.unconfirmed.as_mut().map(|u| &mut u.epoch.recv),
            Slot::Previous => self.previous.as_mut().map(|p| &mut p.recv),
        };
        if let Some(chain) = chain {
            chain.commit(adv, window.per_chain);
        }
        let total = window.total as usize;
        let mut held = self.skipped_keys();
        if held <= total {
            return;
        }
        if let Some(p) = &mut self.previous {
            let keep = p
                .recv
                .skipped
                .len()
                .saturating_sub(held.saturating_sub(total));
            held = held.saturating_sub(p.recv.skipped.len().saturating_sub(keep));
            p.recv.trim(keep);
        }
        if held > total {
            if let Some(c) = &mut self.current {
                let keep = c
                    .recv
                    .skipped
                    .len()
                    .saturating_sub(held.saturating_sub(total));
                c.recv.trim(keep);
            }
        }
    }

    /// Starts tracking a handshake in flight (replacing any earlier one).
    pub(crate) fn begin(&mut self, pending: Pending) {
        self.pending = Some(Box::new(pending));
    }

    /// Ends the handshake in flight, handing it over.
    pub(crate) fn take_pending(&mut self) -> Option<Box<Pending>> {
        self.pending.take()
    }

    /// Keeps the initiator's new keys until the responder confirms them.
    pub(crate) fn await_confirmation(&mut self, unconfirmed: Unconfirmed) {
        self.unconfirmed = Some(Box::new(unconfirmed));
    }

    /// The unconfirmed epoch, once the responder proved it has its keys.
    pub(crate) fn take_unconfirmed(&mut self) -> Option<Box<Unconfirmed>> {
        self.unconfirmed.take()
    }

    /// Makes `epoch` current: an unconfirmed epoch it supersedes is dropped, and the old
    /// current epoch's receive chain stays for `grace` (its send chain is wiped here).
    pub(crate) fn install(&mut self, now: Instant, epoch: Epoch, grace: Duration) {
        if self
            .unconfirmed
            .as_ref()
            .is_some_and(|u| u.epoch.number <= epoch.number)
        {
            self.unconfirmed = None;
        }
        if let Some(old) = self.current.replace(epoch) {
            self.previous = Some(Box::new(Previous {
                number: old.number,
                recv: old.recv,
                until: now.saturating_add(grace),
            }));
        }
    }

    /// The handshake in flight if it has outlived `timeout` at `now`: it is dropped, and its
    /// role and epoch returned so the caller can retry.
    pub(crate) fn expire_pending(
        &mut self,
        now: Instant,
        timeout: Duration,
    ) -> Option<(Role, u32)> {
        let pd = self.pending.as_ref()?;
        if now < pd.started.saturating_add(timeout) {
            return None;
        }
        let out = (pd.hs.role(), pd.epoch);
        self.pending = None;
        Some(out)
    }

    /// Runs the unconfirmed epoch's message-3 timer: resend (`timeout` apart) while resends
    /// are left, then abandon the keys.
    pub(crate) fn resend_due(&mut self, now: Instant, timeout: Duration) -> Resend {
        let Some(u) = &mut self.unconfirmed else {
            return Resend::Nothing;
        };
        if now < u.resend_at {
            return Resend::Nothing;
        }
        if u.resends_left == 0 {
            let epoch = u.epoch.number;
            self.unconfirmed = None;
            return Resend::Abandoned { epoch };
        }
        u.resends_left = u.resends_left.saturating_sub(1);
        u.resend_at = now.saturating_add(timeout);
        Resend::Frame(u.msg3_frame.clone())
    }

    /// Drops the previous epoch once its grace is over.
    pub(crate) fn expire_previous(&mut self, now: Instant) {
        if self.previous.as_ref().is_some_and(|p| now >= p.until) {
            self.previous = None;
        }
    }

    /// The earliest deadline of the table: the handshake timeout, the message-3 resend, the
    /// end of the grace period and the current epoch's expiry (`reject_after`).
    pub(crate) fn next_deadline(
        &self,
        handshake_timeout: Duration,
        reject_after: Duration,
    ) -> Option<Instant> {
        [
            self.pending
                .as_ref()
                .map(|p| p.started.saturating_add(handshake_timeout)),
            self.unconfirmed.as_ref().map(|u| u.resend_at),
            self.previous.as_ref().map(|p| p.until),
            self.current.as_ref().map(|c| c.at_age(reject_after)),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Drops every epoch and handshake (each key is wiped on drop).
    pub(crate) fn wipe(&mut self) {
        *self = Epochs::default();
    }

    /// Skipped message keys held over all chains.
    pub(crate) fn skipped_keys(&self) -> usize {
        // Each chain holds at most `per_chain` (a u32): the sum cannot overflow; saturate anyway.
        [
            self.current.as_ref().map(|e| e.recv.skipped.len()),
            self.previous.as_ref().map(|p| p.recv.skipped.len()),
            self.unconfirmed
                .as_ref()
                .map(|u| u.epoch.recv.skipped.len()),
        ]
        .into_iter()
        .flatten()
        .fold(0, usize::saturating_add)
    }

    /// Heap bytes held: skipped keys, the boxed slots and the frames they keep for resending.
    /// (The current epoch lives inline in the table.)
    pub(crate) fn heap_bytes(&self) -> usize {
        let skipped = [
            self.current.as_ref().map(|e| e.recv.skipped.capacity()),
            self.previous.as_ref().map(|p| p.recv.skipped.capacity()),
            self.unconfirmed
                .as_ref()
                .map(|u| u.epoch.recv.skipped.capacity()),
        ]
        .into_iter()
        .flatten()
        .fold(0, usize::saturating_add)
        .saturating_mul(core::mem::size_of::<(u64, Zeroizing<[u8; 32]>)>());
        let pending = self.pending.as_ref().map_or(0, |p| {
            core::mem::size_of::<Pending>().saturating_add(p.last_sent.capacity())
        });
        let unconfirmed = self.unconfirmed.as_ref().map_or(0, |u| {
            core::mem::size_of::<Unconfirmed>().saturating_add(u.msg3_frame.capacity())
        });
        let previous = self
            .previous
            .as_ref()
            .map_or(0, |_| core::mem::size_of::<Previous>());
        [skipped, pending, unconfirmed, previous]
            .into_iter()
            .fold(0, usize::saturating_add)
    }
}
