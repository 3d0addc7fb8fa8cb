//! WireGuard's protocol constants and the per-peer timers (paper §6, the kernel's timers.c).
//!
//! Every timer is an exact deadline (`Option<Instant>`); the peer's next deadline is their
//! minimum, and the device's schedule orders all peers by it. There is no tick.
//!
//! | timer | armed when | fires ⇒ |
//! |---|---|---|
//! | retransmit handshake | an initiation is sent (REKEY_TIMEOUT + jitter) | resend, up to REKEY_ATTEMPT_TIME |
//! | send keepalive | data received and none pending (KEEPALIVE_TIMEOUT) | send an empty packet |
//! | new handshake | data sent and none pending (KEEPALIVE + REKEY_TIMEOUT + jitter) | initiate: the peer went quiet |
//! | zero key material | a session is derived (3 × REJECT_AFTER_TIME) | wipe all keys |
//! | persistent keepalive | any authenticated packet sent or received (interval) | send an empty packet |
//!
//! Authenticated traffic cancels: any packet sent cancels "send keepalive"; any packet
//! received cancels "new handshake"; a completed handshake cancels "retransmit".

use crate::time::{Duration, Instant};

/// Rekey (as initiator) after this many messages on a session.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// Never send or accept a counter at or beyond this.
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
/// Rekey (as initiator) when sending on a session older than this.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// Sessions older than this are unusable.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// Give up retrying a handshake after this long.
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// Retry an unanswered initiation after this (plus jitter); also the minimum gap between
/// initiations.
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Send a keepalive if data was received but nothing sent for this long.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound of the random jitter added to handshake retries (kernel: HZ/3).
pub const REKEY_TIMEOUT_JITTER_MAX: Duration = Duration::from_millis(333);
/// [`REJECT_AFTER_TIME`] in nanoseconds (for per-packet integer comparisons).
pub(crate) const REJECT_AFTER_TIME_NS: u64 = REJECT_AFTER_TIME.as_nanos() as u64;
/// [`REKEY_AFTER_TIME`] in nanoseconds.
pub(crate) const REKEY_AFTER_TIME_NS: u64 = REKEY_AFTER_TIME.as_nanos() as u64;
/// Keys are wiped this long after the last session was derived (3 × REJECT_AFTER_TIME).
pub(crate) const ZERO_KEY_MATERIAL_AFTER: Duration = REJECT_AFTER_TIME.saturating_mul(3);
/// An initiator that receives on a session this old starts a rekey (REJECT_AFTER_TIME −
/// KEEPALIVE_TIMEOUT − REKEY_TIMEOUT = 165 s), in nanoseconds.
pub(crate) const REKEY_ON_RECEIVE_AFTER_NS: u64 = REJECT_AFTER_TIME
    .saturating_sub(KEEPALIVE_TIMEOUT)
    .saturating_sub(REKEY_TIMEOUT)
    .as_nanos() as u64;
/// Retries of one handshake attempt: REKEY_ATTEMPT_TIME / REKEY_TIMEOUT.
pub(crate) const MAX_TIMER_HANDSHAKES: u32 = 18;
/// Minimum gap between two initiations accepted from one peer (50 per second).
pub(crate) const INITIATION_MIN_GAP: Duration = Duration::from_millis(20);

/// The five timers of one peer plus the small state they need.
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerTimers {
    pub(crate) retransmit_handshake: Option<Instant>,
    pub(crate) send_keepalive: Option<Instant>,
    pub(crate) new_handshake: Option<Instant>,
    pub(crate) zero_key_material: Option<Instant>,
    pub(crate) persistent_keepalive: Option<Instant>,
    pub(crate) handshake_attempts: u32,
    pub(crate) need_another_keepalive: bool,
    /// Set once we initiated because the session is about to expire on receive.
    pub(crate) sent_lastminute_handshake: bool,
    pub(crate) persistent_interval: Option<Duration>,
}

impl PeerTimers {
    /// The earliest armed deadline.
    ///
    /// Runs on every packet (the device keeps its schedule entry a lower bound of it), so it is a branch-free minimum over
    /// the five timers, an unarmed one counting as `u64::MAX` nanoseconds.
    #[inline]
    pub(crate) fn next(&self) -> Option<Instant> {
        let ns = |t: Option<Instant>| t.map_or(u64::MAX, Instant::as_nanos);
        let m = ns(self.retransmit_handshake)
            .min(ns(self.send_keepalive))
            .min(ns(self.new_handshake))
            .min(ns(self.zero_key_material))
            .min(ns(self.persistent_keepalive));
        if m != u64::MAX {
            return Some(Instant::from_nanos(m));
        }
        // Nothing below the sentinel: either nothing is armed or a timer sits at the very
        // end of time (Instant::MAX, reachable only by saturating arithmetic).
        let armed = self.retransmit_handshake.is_some()
            || self.send_keepalive.is_some()
            || self.new_handshake.is_some()
            || self.zero_key_material.is_some()
            || self.persistent_keepalive.is_some();
        armed.then_some(Instant::MAX)
    }

    pub(crate) fn data_sent(&mut self, now: Instant, jitter: Duration) {
        if self.new_handshake.is_none() {
            self.new_handshake = Some(
                now.saturating_add(KEEPALIVE_TIMEOUT)
                    .saturating_add(REKEY_TIMEOUT)
                    .saturating_add(jitter),
            );
        }
    }

    pub(crate) fn data_received(&mut self, now: Instant) {
        if self.send_keepalive.is_none() {
            self.send_keepalive = Some(now.saturating_add(KEEPALIVE_TIMEOUT));
        } else {
            self.need_another_keepalive = true;
        }
    }

    pub(crate) fn any_authenticated_packet_sent(&mut self) {
        self.send_keepalive = None;
    }

    pub(crate) fn any_authenticated_packet_received(&mut self) {
        self.new_handshake = None;
    }

    pub(crate) fn any_authenticated_packet_traversal(&mut self, now: Instant) {
        if let Some(i) = self.persistent_interval {
            self.persistent_keepalive = Some(now.saturating_add(i));
        }
    }

    pub(crate) fn handshake_initiated(&mut self, now: Instant, jitter: Duration) {
        self.retransmit_handshake = Some(now.saturating_add(REKEY_TIMEOUT).saturating_add(jitter));
    }

    pub(crate) fn handshake_complete(&mut self) {
        self.retransmit_handshake = None;
        self.handshake_attempts = 0;
        self.sent_lastminute_handshake = false;
    }

    pub(crate) fn session_derived(&mut self, now: Instant) {
        self.zero_key_material = Some(now.saturating_add(ZERO_KEY_MATERIAL_AFTER));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_the_paper() {
        assert_eq!(REJECT_AFTER_MESSAGES, 18_446_744_073_709_543_423);
        assert_eq!(REJECT_AFTER_TIME_NS, 180_000_000_000);
        assert_eq!(REKEY_AFTER_TIME_NS, 120_000_000_000);
        assert_eq!(ZERO_KEY_MATERIAL_AFTER, Duration::from_secs(540));
        assert_eq!(REKEY_ON_RECEIVE_AFTER_NS, 165_000_000_000);
        assert_eq!(
            MAX_TIMER_HANDSHAKES as u64,
            REKEY_ATTEMPT_TIME.as_secs() / REKEY_TIMEOUT.as_secs()
        );
    }

    #[test]
    fn next_is_the_minimum_and_traffic_cancels() {
        let mut t = PeerTimers::default();
        assert_eq!(t.next(), None);
        let now = Instant::from_secs(100);
        t.data_received(now);
        t.data_sent(now, Duration::ZERO);
        assert_eq!(t.next(), Some(now + KEEPALIVE_TIMEOUT));
        t.any_authenticated_packet_sent();
        assert_eq!(t.next(), Some(now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT));
        t.any_authenticated_packet_received();
        assert_eq!(t.next(), None);
    }

    #[test]
    fn next_matches_a_plain_minimum_for_every_combination() {
        // Independent model: the minimum over the armed timers, by sorting.
        let values = [
            None,
            Some(Instant::ZERO),
            Some(Instant::from_secs(7)),
            Some(Instant::from_nanos(u64::MAX - 1)),
            Some(Instant::MAX),
        ];
        let n = values.len();
        for code in 0..n.pow(5) {
            let pick = |k: u32| values[(code / n.pow(k)) % n];
            let t = PeerTimers {
                retransmit_handshake: pick(0),
                send_keepalive: pick(1),
                new_handshake: pick(2),
                zero_key_material: pick(3),
                persistent_keepalive: pick(4),
                ..PeerTimers::default()
            };
            let mut armed: alloc::vec::Vec<Instant> = (0..5).filter_map(pick).collect();
            armed.sort();
            assert_eq!(t.next(), armed.first().copied(), "combination {code}");
        }
    }
}
