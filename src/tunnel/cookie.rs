//! mac1, mac2 and cookie replies (WireGuard paper §5.4.4, §5.4.7). When the device is "under
//! load" is decided by the rate limiters in [`rate_limit`](super::rate_limit).
//!
//! Why: a handshake costs the responder four X25519 operations. mac1 (keyed by the
//! responder's public key) lets it drop packets from anyone who does not know that key before
//! any DH. Under load it additionally demands mac2, keyed by a cookie that only someone who can
//! receive packets at the claimed source address can obtain, so a spoofing flooder gets
//! nothing but cheap cookie replies, and the cookie secret rotates every two minutes.

use super::wire::{self, COOKIE_REPLY_LEN};
use crate::crypto::aead::{xchacha_open_in_place, xchacha_seal_in_place, TAG_LEN};
use crate::crypto::blake2s::mac;
use crate::time::{Duration, Instant};
use core::net::{IpAddr, SocketAddr};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The cookie secret is replaced after this long (paper: 2 minutes).
pub(crate) const COOKIE_SECRET_MAX_AGE: Duration = Duration::from_secs(120);
/// A received cookie is used for mac2 only while younger than this (max age minus latency).
pub(crate) const COOKIE_USABLE_FOR: Duration = Duration::from_secs(120 - 5);

/// `mac1 = MAC(HASH(LABEL_MAC1 ‖ receiver_pub), msg[..mac1_off])`.
pub(crate) fn compute_mac1(key: &[u8; 32], msg_before_mac1: &[u8]) -> [u8; 16] {
    mac(key, &[msg_before_mac1])
}

/// `mac2 = MAC(cookie, msg[..mac2_off])`.
pub(crate) fn compute_mac2(cookie: &[u8; 16], msg_before_mac2: &[u8]) -> [u8; 16] {
    mac(cookie, &[msg_before_mac2])
}

/// Splits a handshake message into (`bytes before mac1`, `mac1`, `mac2`).
pub(crate) fn macs(msg: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let off = msg.len().checked_sub(32)?;
    let (body, tail) = msg.split_at_checked(off)?;
    let (m1, m2) = tail.split_at_checked(16)?;
    Some((body, m1, m2))
}

/// Checks mac1 of a message addressed to us (constant time).
pub(crate) fn mac1_valid(our_mac1_key: &[u8; 32], msg: &[u8]) -> bool {
    match macs(msg) {
        Some((body, m1, _)) => crate::crypto::ct_eq(&compute_mac1(our_mac1_key, body), m1),
        None => false,
    }
}

fn address_bytes(src: &SocketAddr, out: &mut [u8; 18]) -> usize {
    match src.ip() {
        IpAddr::V4(a) => {
            out[..4].copy_from_slice(&a.octets());
            out[4..6].copy_from_slice(&src.port().to_be_bytes());
            6
        }
        IpAddr::V6(a) => {
            out[..16].copy_from_slice(&a.octets());
            out[16..18].copy_from_slice(&src.port().to_be_bytes());
            18
        }
    }
}

/// The responder side: a rotating secret and the cookies derived from it.
#[derive(Zeroize, ZeroizeOnDrop)]
// Fuzz targets clone an established device per input (cargo-fuzz builds with `--cfg
// fuzzing`); no other build can copy these keys.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct CookieChecker {
    secret: [u8; 32],
    #[zeroize(skip)]
    secret_born: Option<Instant>,
}

impl CookieChecker {
    pub(crate) fn new() -> Self {
        CookieChecker {
            secret: [0u8; 32],
            secret_born: None,
        }
    }

    fn refresh<R: rand_core::CryptoRng + ?Sized>(&mut self, now: Instant, rng: &mut R) {
        let stale = match self.secret_born {
            None => true,
            Some(b) => now.saturating_duration_since(b) >= COOKIE_SECRET_MAX_AGE,
        };
        if stale {
            rng.fill_bytes(&mut self.secret);
            self.secret_born = Some(now);
        }
    }

    /// `τ = MAC(secret, source ip ‖ port)`.
    fn cookie<R: rand_core::CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        src: &SocketAddr,
    ) -> [u8; 16] {
        self.refresh(now, rng);
        let mut a = [0u8; 18];
        let n = address_bytes(src, &mut a);
        mac(&self.secret, &[a.get(..n).unwrap_or(&[])])
    }

    /// Whether mac2 of `msg` carries a valid cookie for `src`.
    pub(crate) fn mac2_valid<R: rand_core::CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        src: &SocketAddr,
        msg: &[u8],
    ) -> bool {
        let Some(off) = msg.len().checked_sub(16) else {
            return false;
        };
        let Some((body, m2)) = msg.split_at_checked(off) else {
            return false;
        };
        let c = self.cookie(now, rng, src);
        crate::crypto::ct_eq(&compute_mac2(&c, body), m2)
    }

    /// Builds a cookie reply to `msg` (an initiation or response) from `src`.
    pub(crate) fn reply<R: rand_core::CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        our_cookie_key: &[u8; 32],
        src: &SocketAddr,
        msg: &[u8],
        out: &mut [u8; COOKIE_REPLY_LEN],
    ) {
        let c = self.cookie(now, rng, src);
        let sender = wire::u32_at(msg, 4);
        let mac1: [u8; 16] = macs(msg)
            .and_then(|(_, m1, _)| m1.try_into().ok())
            .unwrap_or([0u8; 16]);
        let nonce: [u8; 24] = crate::crypto::random_array(rng);
        out.fill(0);
        out[..4].copy_from_slice(&wire::MSG_COOKIE_REPLY.to_le_bytes());
        out[wire::cookie::RECEIVER..wire::cookie::RECEIVER + 4]
            .copy_from_slice(&sender.to_le_bytes());
        out[wire::cookie::NONCE..wire::cookie::NONCE + 24].copy_from_slice(&nonce);
        let field = &mut out[wire::cookie::COOKIE..];
        let (pt, tag) = field.split_at_mut(16);
        pt.copy_from_slice(&c);
        tag.copy_from_slice(&xchacha_seal_in_place(our_cookie_key, &nonce, &mac1, pt));
    }
}

/// The initiator side, per peer: the mac1 we last sent and the cookie we last received.
#[derive(Default, Zeroize, ZeroizeOnDrop)]
// Fuzz targets clone an established device per input (cargo-fuzz builds with `--cfg
// fuzzing`); no other build can copy these keys.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct CookieJar {
    last_mac1: Option<[u8; 16]>,
    cookie: Option<[u8; 16]>,
    #[zeroize(skip)]
    received_at: Option<Instant>,
}

impl CookieJar {
    /// Writes mac1 and (if we hold a fresh cookie) mac2 into the last 32 bytes of `msg`.
    pub(crate) fn stamp(&mut self, now: Instant, peer_mac1_key: &[u8; 32], msg: &mut [u8]) {
        // `msg` = body ‖ mac1 ‖ mac2; mac2 covers body ‖ mac1.
        let Some((before_mac2, mac2)) = msg.split_last_chunk_mut::<16>() else {
            return;
        };
        let Some((body, mac1)) = before_mac2.split_last_chunk_mut::<16>() else {
            return;
        };
        let m1 = compute_mac1(peer_mac1_key, body);
        *mac1 = m1;
        self.last_mac1 = Some(m1);
        let fresh = match (self.cookie, self.received_at) {
            (Some(c), Some(t)) if now.saturating_duration_since(t) < COOKIE_USABLE_FOR => Some(c),
            _ => None,
        };
        *mac2 = match fresh {
            Some(c) => compute_mac2(&c, before_mac2),
            None => [0u8; 16],
        };
    }

    /// Decrypts a cookie reply with the peer's cookie key; the AAD is the mac1 we last sent,
    /// so a reply to anything we did not send fails. State changes only on success.
    pub(crate) fn consume_reply(
        &mut self,
        now: Instant,
        peer_cookie_key: &[u8; 32],
        reply: &[u8; COOKIE_REPLY_LEN],
    ) -> bool {
        let Some(mac1) = self.last_mac1 else {
            return false;
        };
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&reply[wire::cookie::NONCE..wire::cookie::NONCE + 24]);
        let mut c = [0u8; 16];
        c.copy_from_slice(&reply[wire::cookie::COOKIE..wire::cookie::COOKIE + 16]);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&reply[wire::cookie::COOKIE + 16..]);
        if xchacha_open_in_place(peer_cookie_key, &nonce, &mac1, &mut c, &tag).is_err() {
            return false;
        }
        self.cookie = Some(c);
        self.received_at = Some(now);
        // A reply is good for one mac1 only (the reference implementations do the same).
        self.last_mac1 = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};

    #[test]
    fn cookie_round_trip_and_mac2() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let now = Instant::from_secs(1);
        let src: SocketAddr = "192.0.2.1:51820".parse().unwrap();
        let mut checker = CookieChecker::new();
        let cookie_key = [3u8; 32];
        let mac1_key = [4u8; 32];
        let mut jar = CookieJar::default();
        let mut msg = [0u8; 148];
        msg[0] = 1;
        jar.stamp(now, &mac1_key, &mut msg);
        assert!(mac1_valid(&mac1_key, &msg));
        assert!(!checker.mac2_valid(now, &mut rng, &src, &msg));
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        checker.reply(now, &mut rng, &cookie_key, &src, &msg, &mut reply);
        assert!(!jar.consume_reply(now, &[9u8; 32], &reply));
        assert!(jar.consume_reply(now, &cookie_key, &reply));
        jar.stamp(now, &mac1_key, &mut msg);
        assert!(checker.mac2_valid(now, &mut rng, &src, &msg));
        let other: SocketAddr = "192.0.2.2:51820".parse().unwrap();
        assert!(!checker.mac2_valid(now, &mut rng, &other, &msg));
        // After the secret rotates the old cookie is worthless.
        let later = now + COOKIE_SECRET_MAX_AGE;
        assert!(!checker.mac2_valid(later, &mut rng, &src, &msg));
    }

    /// A received cookie stamps mac2 for 115 s (the kernel's COOKIE_SECRET_MAX_AGE minus
    /// COOKIE_SECRET_LATENCY: 120 - 5 s), and not a nanosecond longer.
    #[test]
    fn a_cookie_is_used_for_115_seconds_exactly() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let t = Instant::from_secs(10);
        let src: SocketAddr = "192.0.2.1:51820".parse().unwrap();
        let mut checker = CookieChecker::new();
        let (cookie_key, mac1_key) = ([5u8; 32], [6u8; 32]);
        let mut jar = CookieJar::default();
        let mut msg = [0u8; 148];
        msg[0] = 1;
        jar.stamp(t, &mac1_key, &mut msg);
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        checker.reply(t, &mut rng, &cookie_key, &src, &msg, &mut reply);
        assert!(jar.consume_reply(t, &cookie_key, &reply));
        let mac2_at = |jar: &mut CookieJar, at: Instant| {
            let mut m = [0u8; 148];
            m[0] = 1;
            jar.stamp(at, &mac1_key, &mut m);
            m[132..] != [0u8; 16]
        };
        let last = t + Duration::from_secs(115) - Duration::from_nanos(1);
        assert!(mac2_at(&mut jar, t), "fresh cookie");
        assert!(mac2_at(&mut jar, last), "still fresh 1 ns before 115 s");
        assert!(
            !mac2_at(&mut jar, t + Duration::from_secs(115)),
            "stale at 115 s"
        );
        assert!(
            !mac2_at(&mut jar, t + Duration::from_secs(125)),
            "stale later"
        );
    }
}
