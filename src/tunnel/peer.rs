//! One peer's state: handshake keys, pending initiation, the three keypair slots, endpoint,
//! cookie jar, timers and the packets staged behind a handshake. The device finds peers in
//! its [`PeerTable`](super::peer_table::PeerTable).
//!
//! Keypair slots (paper §6.1, kernel noise.c): `current` sends; `previous` still receives
//! in-flight packets of the session before; `next` is a session we derived as responder and
//! may not send on until the initiator proves it has it (its first data packet). This is how
//! a rekey never drops packets that were in flight.

use super::cookie::CookieJar;
use super::handshake::{InitiatorState, PeerKeys, Tai64N};
use super::keypair::Keypair;
use super::timers::PeerTimers;
use super::wiped::WipedBox;
use crate::time::Instant;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::SocketAddr;
use zeroize::Zeroizing;

/// One transport session on the heap, where it never moves; its block is zeroed as a whole
/// when it goes (with the `ring` feature this is what wipes ring's prepared keys).
type Session = WipedBox<Keypair>;

// Fuzz targets clone an established device per input (cargo-fuzz builds with `--cfg
// fuzzing`); no other build can copy these keys.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct Peer {
    pub(crate) keys: PeerKeys,
    pub(crate) endpoint: Option<SocketAddr>,
    pub(crate) handshake: Option<InitiatorState>,
    pub(crate) last_initiation_sent: Option<Instant>,
    pub(crate) cookies: CookieJar,
    pub(crate) latest_timestamp: Option<Tai64N>,
    pub(crate) last_initiation_consumed: Option<Instant>,
    current: Option<Session>,
    previous: Option<Session>,
    next: Option<Session>,
    pub(crate) timers: PeerTimers,
    /// Plaintext IP packets waiting for a session: each is wiped when it leaves (sent,
    /// displaced, given up on, or with the peer).
    pub(crate) staged: VecDeque<Zeroizing<Vec<u8>>>,
    pub(crate) last_handshake: Option<Instant>,
    pub(crate) rx_bytes: u64,
    pub(crate) tx_bytes: u64,
}

impl Peer {
    pub(crate) fn new(keys: PeerKeys, endpoint: Option<SocketAddr>) -> Self {
        Peer {
            keys,
            endpoint,
            handshake: None,
            last_initiation_sent: None,
            cookies: CookieJar::default(),
            latest_timestamp: None,
            last_initiation_consumed: None,
            current: None,
            previous: None,
            next: None,
            timers: PeerTimers::default(),
            staged: VecDeque::new(),
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
        }
    }

    /// Holds `packet` until a session exists, in a buffer of at most `max` packets where the
    /// oldest makes room (the kernel's staged-packet queue: once the session is up the newest
    /// data is the most useful). Returns whether a packet was dropped (the oldest, or this
    /// one when `max` is 0).
    pub(crate) fn stage(&mut self, packet: &[u8], max: usize) -> bool {
        if max == 0 {
            return true;
        }
        let dropped = self.staged.len() >= max && self.staged.pop_front().is_some();
        self.staged.push_back(Zeroizing::new(packet.to_vec()));
        dropped
    }

    /// Whether the current session may send at `now`.
    #[inline]
    pub(crate) fn can_send(&self, now: Instant) -> bool {
        self.current().is_some_and(|k| k.can_send(now))
    }

    /// The session we send on.
    #[inline]
    pub(crate) fn current(&self) -> Option<&Keypair> {
        self.current.as_ref().and_then(WipedBox::get)
    }

    /// The session we send on, mutably.
    #[inline]
    pub(crate) fn current_mut(&mut self) -> Option<&mut Keypair> {
        self.current.as_mut().and_then(WipedBox::get_mut)
    }

    /// Installs a fresh keypair; adds the local indices of keypairs it displaced to `freed`.
    pub(crate) fn add_keypair(&mut self, kp: Keypair, freed: &mut Vec<u32>) {
        let initiator = kp.initiator;
        let kp = WipedBox::new(kp);
        let mut drop = |k: Option<Session>| {
            if let Some(k) = k.as_ref().and_then(WipedBox::get) {
                freed.push(k.local_index);
            }
        };
        if initiator {
            // Initiator: the new session is confirmed (we got the response), send on it now.
            if let Some(next) = self.next.take() {
                drop(self.previous.replace(next));
                drop(self.current.take());
            } else {
                let cur = self.current.take();
                drop(core::mem::replace(&mut self.previous, cur));
            }
            self.current = Some(kp);
        } else {
            // Responder: wait for the initiator's first packet before sending on it.
            drop(self.next.replace(kp));
            drop(self.previous.take());
        }
    }

    /// Finds the keypair with `local_index`: 0 = current, 1 = previous, 2 = next.
    pub(crate) fn keypair_mut(&mut self, local_index: u32) -> Option<(u8, &mut Keypair)> {
        fn find(s: &mut Option<Session>, local_index: u32) -> Option<&mut Keypair> {
            s.as_mut()
                .and_then(WipedBox::get_mut)
                .filter(|k| k.local_index == local_index)
        }
        if let Some(k) = find(&mut self.current, local_index) {
            return Some((0, k));
        }
        if let Some(k) = find(&mut self.previous, local_index) {
            return Some((1, k));
        }
        if let Some(k) = find(&mut self.next, local_index) {
            return Some((2, k));
        }
        None
    }

    /// The initiator used `next`: it becomes current, current becomes previous.
    pub(crate) fn promote_next(&mut self, freed: &mut Vec<u32>) {
        if let Some(next) = self.next.take() {
            let cur = self.current.replace(next);
            let old = core::mem::replace(&mut self.previous, cur);
            if let Some(old) = old.as_ref().and_then(WipedBox::get) {
                freed.push(old.local_index);
            }
        }
    }

    /// Wipes every session and the pending handshake (zero-key-material timer, removal).
    pub(crate) fn clear_sessions(&mut self, freed: &mut Vec<u32>) {
        for k in [self.current.take(), self.previous.take(), self.next.take()]
            .into_iter()
            .flatten()
        {
            if let Some(k) = k.get() {
                freed.push(k.local_index);
            }
        }
        if let Some(h) = self.handshake.take() {
            freed.push(h.local_index);
        }
    }
}
