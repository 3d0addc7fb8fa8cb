//! Timers on exact virtual deadlines (no tick), each checked against boringtun.

mod tunnel_common;

use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
use sealwire::time::{Duration, Instant};
use sealwire::tunnel::{
    timers, Device, DeviceConfig, DropReason, Error, Event, PeerConfig, WallTime,
};
use tunnel_common::*;

type Dev = Device<ChaCha20Rng>;

fn device_with_keepalive(keepalive: Option<u16>) -> Dev {
    let mut d = Device::new(DeviceConfig::new(our_key()), ChaCha20Rng::seed_from_u64(21));
    let mut p = PeerConfig::new(their_pub());
    p.endpoint = Some(addr(THEIRS));
    p.allowed_ips.push("10.0.0.2/32".parse().unwrap());
    p.persistent_keepalive = keepalive;
    d.add_peer(Instant::ZERO, p).unwrap();
    d.set_wall_clock(Instant::ZERO, WallTime::from_unix(WALL, 0));
    d
}

/// We initiate (at `now`), boringtun answers; returns after our confirming keepalive.
fn we_initiate(us: &mut Dev, them: &mut boringtun::noise::Tunn, now: Instant) {
    let init = net(us_send(us, now, &ipv4(OUR_IP4, THEIR_IP4, b"first")));
    let resp = bt_net(&bt_recv(them, &init)[0]);
    assert_eq!(us_recv(us, now, &resp), Us::Done);
    for dg in drain(us) {
        assert!(matches!(bt_recv(them, &dg)[0], Bt::Tunnel(..)));
    }
}

/// Runs timers deadline by deadline until the device emits something; returns when and what.
fn run_until_output(us: &mut Dev, limit: Instant) -> (Instant, Vec<Vec<u8>>) {
    while let Some(t) = us.poll_timeout() {
        assert!(t <= limit, "nothing was sent before {limit:?}");
        us.handle_timeout(t);
        let out = drain(us);
        if !out.is_empty() {
            return (t, out);
        }
    }
    panic!("no timer left");
}

#[test]
fn persistent_keepalive_fires_exactly_on_its_interval() {
    let mut us = device_with_keepalive(Some(25));
    let mut them = boringtun(None, None);
    // Configured with an endpoint: the first keepalive is due at once and starts a handshake.
    assert_eq!(us.poll_timeout(), Some(Instant::ZERO));
    us.handle_timeout(Instant::ZERO);
    let init = drain(&mut us);
    assert_eq!(init.len(), 1);
    assert_eq!(init[0].len(), 148);
    let t1 = Instant::from_secs(1);
    let resp = bt_net(&bt_recv(&mut them, &init[0])[0]);
    let ka = net(us_recv(&mut us, t1, &resp));
    assert_eq!(bt_recv(&mut them, &ka)[0], Bt::Done);
    // Last authenticated traversal at t1 ⇒ next persistent keepalive at t1 + 25 s exactly.
    let due = t1 + Duration::from_secs(25);
    us.handle_timeout(due - Duration::from_nanos(1));
    assert!(drain(&mut us).is_empty());
    us.handle_timeout(due);
    let out = drain(&mut us);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].len(), 32);
    assert_eq!(bt_recv(&mut them, &out[0])[0], Bt::Done);
}

/// Traffic pushes the persistent keepalive on (data sent through both encapsulation paths,
/// keepalives received): it fires exactly 25 s after the last authenticated packet, never
/// earlier, and nothing else fires meanwhile (each of our data packets is answered, so no
/// new handshake is due).
#[test]
fn persistent_keepalive_restarts_from_the_last_traversal() {
    let mut us = device_with_keepalive(Some(25));
    let mut them = boringtun(None, None);
    us.handle_timeout(Instant::ZERO);
    let init = drain(&mut us);
    let t1 = Instant::from_secs(1);
    let resp = bt_net(&bt_recv(&mut them, &init[0])[0]);
    let ka = net(us_recv(&mut us, t1, &resp));
    assert_eq!(bt_recv(&mut them, &ka)[0], Bt::Done);
    let mut last = t1;
    for (i, secs) in [2u64, 5, 8, 11].into_iter().enumerate() {
        let sent = t1 + Duration::from_secs(secs);
        us.handle_timeout(sent);
        assert!(drain(&mut us).is_empty(), "nothing due at {sent:?}");
        let pkt = ipv4(OUR_IP4, THEIR_IP4, b"data");
        let dg = if i % 2 == 0 {
            net(us_send(&mut us, sent, &pkt))
        } else {
            net(us_send_in_place(&mut us, sent, &pkt, 64))
        };
        assert!(matches!(bt_recv(&mut them, &dg)[0], Bt::Tunnel(..)));
        // boringtun answers with a keepalive one second later.
        last = sent + Duration::from_secs(1);
        let reply = bt_net(&bt_send(&mut them, &[]));
        assert_eq!(reply.len(), 32);
        assert_eq!(us_recv(&mut us, last, &reply), Us::Done);
    }
    let due = last + Duration::from_secs(25);
    let (fired, out) = run_until_output(&mut us, due);
    assert_eq!(fired, due);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].len(), 32, "a keepalive");
    assert_eq!(bt_recv(&mut them, &out[0])[0], Bt::Done);
}

/// A data packet that arms the new-handshake timer moves `poll_timeout` earlier at once,
/// through both encapsulation paths, even when the only deadline before it was minutes away.
#[test]
fn data_after_a_quiet_spell_moves_poll_timeout_to_the_new_handshake_deadline() {
    for in_place in [false, true] {
        let mut us = device_with_keepalive(None);
        let mut them = boringtun(None, None);
        let t0 = Instant::from_secs(1);
        we_initiate(&mut us, &mut them, t0);
        // boringtun's keepalive cancels our new-handshake timer and our keepalive is sent,
        // so the next deadline is far away.
        let reply = bt_net(&bt_send(&mut them, &[]));
        assert_eq!(us_recv(&mut us, t0, &reply), Us::Done);
        while let Some(t) = us.poll_timeout() {
            if t > t0 + Duration::from_secs(60) {
                break;
            }
            us.handle_timeout(t);
            for dg in drain(&mut us) {
                let _ = bt_recv(&mut them, &dg);
            }
        }
        let quiet = us.poll_timeout().expect("key wipe at least");
        assert!(quiet > t0 + Duration::from_secs(60));
        let t1 = t0 + Duration::from_secs(30);
        let pkt = ipv4(OUR_IP4, THEIR_IP4, b"after a quiet spell");
        let dg = if in_place {
            net(us_send_in_place(&mut us, t1, &pkt, 96))
        } else {
            net(us_send(&mut us, t1, &pkt))
        };
        assert!(matches!(bt_recv(&mut them, &dg)[0], Bt::Tunnel(..)));
        let next = us.poll_timeout().expect("armed");
        assert!(
            next <= t1
                + timers::KEEPALIVE_TIMEOUT
                + timers::REKEY_TIMEOUT
                + timers::REKEY_TIMEOUT_JITTER_MAX,
            "in_place {in_place}: poll_timeout {next:?} is later than the new-handshake timer"
        );
    }
}

#[test]
fn handshake_gives_up_after_max_attempts_and_drops_staged() {
    let mut us = device_with_keepalive(None);
    let mut now = Instant::from_secs(1);
    let _ = net(us_send(&mut us, now, &ipv4(OUR_IP4, THEIR_IP4, b"never")));
    let mut sent = 1;
    // Nobody answers: retries at REKEY_TIMEOUT + jitter each.
    while let Some(t) = us.poll_timeout() {
        if t > now + Duration::from_secs(600) {
            break;
        }
        if t - now > Duration::from_secs(60) {
            break; // given up: only the zero-key-material timer is left
        }
        if us.stats().initiations_sent == sent {
            let gap = t - now;
            assert!(gap >= timers::REKEY_TIMEOUT, "{gap:?}");
            assert!(gap <= timers::REKEY_TIMEOUT + timers::REKEY_TIMEOUT_JITTER_MAX);
        }
        now = t;
        us.handle_timeout(now);
        sent = us.stats().initiations_sent;
        drain(&mut us);
        if sent > 40 {
            break;
        }
    }
    // Kernel: MAX_TIMER_HANDSHAKES + 2 = 20 attempts, then give up.
    assert_eq!(us.stats().initiations_sent, 20);
    let events: Vec<Event> = std::iter::from_fn(|| us.poll_event()).collect();
    assert_eq!(events, vec![Event::HandshakeGaveUp { peer: their_pub() }]);
    assert!(us.peer_status(now, &their_pub()).unwrap().tx_bytes == 0);
    // The packet staged before giving up was dropped: a later handshake sends only the new one.
    let mut them = boringtun(None, None);
    let later = now + Duration::from_secs(1);
    let fresh = ipv4(OUR_IP4, THEIR_IP4, b"fresh");
    let init = net(us_send(&mut us, later, &fresh));
    let resp = bt_net(&bt_recv(&mut them, &init)[0]);
    assert_eq!(us_recv(&mut us, later, &resp), Us::Done);
    let out = drain(&mut us);
    assert_eq!(out.len(), 1);
    assert_eq!(
        bt_recv(&mut them, &out[0])[0],
        Bt::Tunnel(fresh, "10.0.0.1".parse().unwrap())
    );
}

#[test]
fn new_handshake_when_peer_goes_quiet_after_our_data() {
    let mut us = device_with_keepalive(None);
    let mut them = boringtun(None, None);
    let t0 = Instant::from_secs(1);
    we_initiate(&mut us, &mut them, t0);
    // We send data at t1 and hear nothing back.
    let t1 = t0 + Duration::from_secs(2);
    let dg = net(us_send(&mut us, t1, &ipv4(OUR_IP4, THEIR_IP4, b"hello?")));
    let _ = bt_recv(&mut them, &dg);
    // The timer was armed by the first data packet (t0) and not re-armed by later ones
    // (kernel: "if !timer_pending"), so the initiation goes out 15 s + jitter after t0.
    // (poll_timeout may wake us earlier for timers that traffic cancelled; nothing is sent then.)
    let (due, out) = run_until_output(&mut us, t0 + Duration::from_secs(60));
    assert!(due >= t0 + timers::KEEPALIVE_TIMEOUT + timers::REKEY_TIMEOUT);
    assert!(
        due <= t0
            + timers::KEEPALIVE_TIMEOUT
            + timers::REKEY_TIMEOUT
            + timers::REKEY_TIMEOUT_JITTER_MAX
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].len(), 148);
    // boringtun accepts the new initiation.
    let resp = bt_net(&bt_recv(&mut them, &out[0])[0]);
    assert_eq!(resp.len(), 92);
    assert!(matches!(us_recv(&mut us, due, &resp), Us::Network(_)));
    assert_eq!(us.stats().handshakes_completed, 2);
}

#[test]
fn initiator_rekeys_on_receive_before_reject_after_time() {
    let mut us = device_with_keepalive(None);
    let mut them = boringtun(None, None);
    let t0 = Instant::from_secs(1);
    we_initiate(&mut us, &mut them, t0);
    // REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT = 165 s: a received packet
    // makes the initiator start a new handshake, once.
    let early = t0 + Duration::from_secs(164);
    let dg = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"a")));
    assert!(matches!(us_recv(&mut us, early, &dg), Us::Tunnel(..)));
    assert!(drain(&mut us).iter().all(|d| d.len() != 148));
    let t = t0 + Duration::from_secs(165);
    let dg = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"b")));
    assert!(matches!(us_recv(&mut us, t, &dg), Us::Tunnel(..)));
    let q = drain(&mut us);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].len(), 148);
    let dg = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"c")));
    assert!(matches!(us_recv(&mut us, t, &dg), Us::Tunnel(..)));
    assert!(drain(&mut us).is_empty(), "only one last-minute handshake");
    let resp = bt_net(&bt_recv(&mut them, &q[0])[0]);
    assert!(matches!(us_recv(&mut us, t, &resp), Us::Network(_)));
}

#[test]
fn keys_are_wiped_after_three_times_reject_after_time() {
    let mut us = device_with_keepalive(None);
    let mut them = boringtun(None, None);
    let t0 = Instant::from_secs(1);
    we_initiate(&mut us, &mut them, t0);
    let dg = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"old")));
    // Run every timer until 3 × REJECT_AFTER_TIME, answering nothing.
    let end = t0 + timers::REJECT_AFTER_TIME * 3;
    while let Some(t) = us.poll_timeout() {
        if t > end {
            break;
        }
        us.handle_timeout(t);
        drain(&mut us);
    }
    assert!(!us.peer_status(end, &their_pub()).unwrap().has_session);
    let events: Vec<Event> = std::iter::from_fn(|| us.poll_event()).collect();
    assert!(
        events.contains(&Event::KeysWiped { peer: their_pub() }),
        "{events:?}"
    );
    // The session's index is gone: its packets are now unknown, not merely expired.
    assert_eq!(
        us_recv(&mut us, end, &dg),
        Us::Err(Error::Dropped(DropReason::UnknownIndex))
    );
}

#[test]
fn no_timer_is_armed_for_an_idle_peer_without_keepalive() {
    let us = device_with_keepalive(None);
    assert_eq!(us.poll_timeout(), None);
}
