//! Interop with boringtun 0.7 (an independent WireGuard implementation), in process, with our
//! side on virtual time. Every test has boringtun on one end.

mod support {
    pub mod tunnel;
}

use sealwire::time::{Duration, Instant};
use sealwire::tunnel::{timers, DeviceError, DropReason};
use support::tunnel::*;

const PSK: [u8; 32] = [0x5a; 32];

/// Our initiator ↔ boringtun responder; returns both after data flowed both ways.
fn handshake_we_initiate(
    psk: Option<[u8; 32]>,
) -> (
    sealwire::tunnel::Device<rand_chacha::ChaCha20Rng>,
    boringtun::noise::Tunn,
    Instant,
) {
    let mut us = our_device(psk, 1, 100);
    let mut them = boringtun(psk, None);
    let now = Instant::from_secs(10);
    let pkt = ipv4(OUR_IP4, THEIR_IP4, b"hello boringtun");
    let init = net(us_send(&mut us, now, &pkt));
    assert_eq!(init.len(), 148);
    let r = bt_recv(&mut them, &init);
    let resp = bt_net(&r[0]);
    assert_eq!(resp.len(), 92);
    // The response completes our handshake; the staged packet goes out via poll_transmit.
    assert_eq!(us_recv(&mut us, now, &resp), Us::Done);
    let queued = drain(&mut us);
    assert_eq!(queued.len(), 1);
    let got = bt_recv(&mut them, &queued[0]);
    assert_eq!(got[0], Bt::Tunnel(pkt.clone(), "10.0.0.1".parse().unwrap()));
    // And back.
    let back = ipv4(THEIR_IP4, OUR_IP4, b"hello sealwire");
    let dg = bt_net(&bt_send(&mut them, &back));
    assert_eq!(
        us_recv(&mut us, now, &dg),
        Us::Tunnel(back, "10.0.0.2".parse().unwrap())
    );
    (us, them, now)
}

#[test]
fn we_initiate_boringtun_responds_no_psk() {
    let (mut us, _, now) = handshake_we_initiate(None);
    assert_eq!(
        us.poll_event(),
        Some(sealwire::tunnel::DeviceEvent::HandshakeCompleted {
            peer: their_pub(),
            endpoint: addr(THEIRS),
            initiator: true
        })
    );
    assert!(us.has_session(now, &their_pub()));
    assert_eq!(us.stats().handshakes_completed, 1);
    assert_eq!(us.stats().total_drops(), 0);
}

#[test]
fn we_initiate_boringtun_responds_with_psk() {
    let (us, _, _) = handshake_we_initiate(Some(PSK));
    assert_eq!(us.stats().handshakes_completed, 1);
}

#[test]
fn psk_mismatch_fails_against_boringtun() {
    let mut us = our_device(Some(PSK), 1, 100);
    let mut them = boringtun(None, None);
    let now = Instant::from_secs(10);
    let init = net(us_send(&mut us, now, &ipv4(OUR_IP4, THEIR_IP4, b"x")));
    let r = bt_recv(&mut them, &init);
    let resp = bt_net(&r[0]);
    // boringtun answers (it cannot know), but the response does not authenticate for us.
    assert_eq!(
        us_recv(&mut us, now, &resp),
        Us::Err(DeviceError::Dropped(DropReason::HandshakeDecrypt))
    );
    assert_eq!(us.stats().drops(DropReason::HandshakeDecrypt), 1);
}

fn handshake_they_initiate(
    psk: Option<[u8; 32]>,
    rate_limit: u32,
) -> (
    sealwire::tunnel::Device<rand_chacha::ChaCha20Rng>,
    boringtun::noise::Tunn,
    Instant,
) {
    let mut us = our_device(psk, 2, rate_limit);
    let mut them = boringtun(psk, None);
    let now = Instant::from_secs(10);
    let mut buf = vec![0u8; 2048];
    let init = bt_net(&bt(them.format_handshake_initiation(&mut buf, false)));
    let resp = net(us_recv(&mut us, now, &init));
    assert_eq!(resp.len(), 92);
    let r = bt_recv(&mut them, &resp);
    // boringtun confirms with a keepalive, which promotes our `next` session.
    let keepalive = bt_net(&r[0]);
    assert_eq!(keepalive.len(), 32);
    assert_eq!(us_recv(&mut us, now, &keepalive), Us::Done);
    let pkt = ipv6(OUR_IP6, THEIR_IP6, b"v6 from us");
    let dg = net(us_send(&mut us, now, &pkt));
    assert_eq!(
        bt_recv(&mut them, &dg)[0],
        Bt::Tunnel(pkt, OUR_IP6.parse().unwrap())
    );
    let back = ipv6(THEIR_IP6, OUR_IP6, b"v6 from boringtun");
    let dg = bt_net(&bt_send(&mut them, &back));
    assert_eq!(
        us_recv(&mut us, now, &dg),
        Us::Tunnel(back, THEIR_IP6.parse().unwrap())
    );
    (us, them, now)
}

#[test]
fn boringtun_initiates_we_respond_no_psk() {
    let (us, _, _) = handshake_they_initiate(None, 100);
    assert_eq!(us.stats().handshakes_completed, 1);
}

#[test]
fn boringtun_initiates_we_respond_with_psk() {
    handshake_they_initiate(Some(PSK), 100);
}

#[test]
fn replayed_boringtun_initiation_is_rejected() {
    let mut us = our_device(None, 2, 100);
    let mut them = boringtun(None, None);
    let now = Instant::from_secs(10);
    let mut buf = vec![0u8; 2048];
    let init = bt_net(&bt(them.format_handshake_initiation(&mut buf, false)));
    let _ = net(us_recv(&mut us, now, &init));
    assert_eq!(
        us_recv(&mut us, now + Duration::from_secs(1), &init),
        Us::Err(DeviceError::Dropped(DropReason::ReplayedTimestamp))
    );
}

#[test]
fn rekey_after_rekey_after_time_with_boringtun() {
    let (mut us, mut them, t0) = handshake_we_initiate(Some(PSK));
    let first_idx = drain(&mut us);
    assert!(first_idx.is_empty());
    // Just before REKEY_AFTER_TIME: data, no initiation.
    let t1 = t0 + timers::REKEY_AFTER_TIME - Duration::from_millis(1);
    let p = ipv4(OUR_IP4, THEIR_IP4, b"before");
    let dg = net(us_send(&mut us, t1, &p));
    assert!(matches!(bt_recv(&mut them, &dg)[0], Bt::Tunnel(..)));
    assert!(drain(&mut us).is_empty());
    // At REKEY_AFTER_TIME: data still goes out on the old session, plus an initiation.
    let t2 = t0 + timers::REKEY_AFTER_TIME;
    // boringtun sends on the old session; it will arrive after the rekey completes.
    let old_from_them = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"in flight")));
    let p = ipv4(OUR_IP4, THEIR_IP4, b"after");
    let dg = net(us_send(&mut us, t2, &p));
    let q = drain(&mut us);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].len(), 148);
    let resp = bt_recv(&mut them, &q[0]);
    let resp = bt_net(&resp[0]);
    // The old-session packet arrives after the new handshake: it is still accepted.
    let keepalive = net(us_recv(&mut us, t2, &resp));
    assert_eq!(keepalive.len(), 32);
    assert_eq!(bt_recv(&mut them, &keepalive)[0], Bt::Done);
    assert!(matches!(bt_recv(&mut them, &dg)[0], Bt::Tunnel(..)));
    assert_eq!(us.stats().handshakes_completed, 2);
    // The in-flight packet on the old session is still accepted (previous keypair).
    assert!(matches!(
        us_recv(&mut us, t2, &old_from_them),
        Us::Tunnel(..)
    ));
    // New session carries data both ways.
    let p = ipv4(OUR_IP4, THEIR_IP4, b"new session");
    let dg = net(us_send(&mut us, t2, &p));
    assert_eq!(
        bt_recv(&mut them, &dg)[0],
        Bt::Tunnel(p, "10.0.0.1".parse().unwrap())
    );
    let back = ipv4(THEIR_IP4, OUR_IP4, b"new back");
    let dg = bt_net(&bt_send(&mut them, &back));
    assert!(matches!(us_recv(&mut us, t2, &dg), Us::Tunnel(..)));
}

#[test]
fn boringtun_under_load_sends_cookie_we_retry_with_mac2() {
    let mut us = our_device(None, 3, 100);
    // limit 0: boringtun demands a valid mac2 on every handshake message.
    let mut them = boringtun(None, Some(0));
    let now = Instant::from_secs(10);
    let pkt = ipv4(OUR_IP4, THEIR_IP4, b"through the cookie");
    let init = net(us_send(&mut us, now, &pkt));
    let r = bt_recv(&mut them, &init);
    let cookie = bt_net(&r[0]);
    assert_eq!(cookie.len(), 64);
    assert_eq!(cookie[0], 3);
    assert_eq!(us_recv(&mut us, now, &cookie), Us::Done);
    assert_eq!(us.stats().cookie_replies_received, 1);
    // A second copy of the reply is no longer expected (one reply per mac1).
    assert_eq!(
        us_recv(&mut us, now, &cookie),
        Us::Err(DeviceError::Dropped(DropReason::Unexpected))
    );
    // The retransmit timer fires after REKEY_TIMEOUT + jitter (exact deadline, no tick).
    let deadline = us.poll_timeout().unwrap();
    assert!(deadline >= now + timers::REKEY_TIMEOUT);
    assert!(deadline <= now + timers::REKEY_TIMEOUT + timers::REKEY_TIMEOUT_JITTER_MAX);
    us.handle_timeout(deadline - Duration::from_nanos(1));
    assert!(drain(&mut us).is_empty());
    us.handle_timeout(deadline);
    let retry = drain(&mut us);
    assert_eq!(retry.len(), 1);
    assert_ne!(&retry[0][132..148], &[0u8; 16], "mac2 is set");
    let r = bt_recv(&mut them, &retry[0]);
    let resp = bt_net(&r[0]);
    assert_eq!(resp.len(), 92);
    assert_eq!(us_recv(&mut us, deadline, &resp), Us::Done);
    let staged = drain(&mut us);
    assert_eq!(
        bt_recv(&mut them, &staged[0])[0],
        Bt::Tunnel(pkt, "10.0.0.1".parse().unwrap())
    );
}

#[test]
fn we_under_load_send_cookie_boringtun_retries_with_mac2() {
    let mut us = our_device(None, 4, 0);
    let mut them = boringtun(None, None);
    let now = Instant::from_secs(10);
    let mut buf = vec![0u8; 2048];
    let init = bt_net(&bt(them.format_handshake_initiation(&mut buf, false)));
    let cookie = net(us_recv(&mut us, now, &init));
    assert_eq!(cookie.len(), 64);
    assert_eq!(us.stats().cookie_replies_sent, 1);
    assert_eq!(us.stats().drops(DropReason::CookieRequired), 1);
    assert_eq!(us.stats().handshakes_completed, 0);
    assert_eq!(bt_recv(&mut them, &cookie)[0], Bt::Done);
    let init2 = bt_net(&bt(them.format_handshake_initiation(&mut buf, true)));
    assert_ne!(&init2[132..148], &[0u8; 16]);
    let resp = net(us_recv(&mut us, now + Duration::from_millis(100), &init2));
    assert_eq!(resp.len(), 92);
    let r = bt_recv(&mut them, &resp);
    assert_eq!(us_recv(&mut us, now, &bt_net(&r[0])), Us::Done);
    assert_eq!(us.stats().handshakes_completed, 1);
}

#[test]
fn lost_initiation_is_retransmitted_to_boringtun() {
    let mut us = our_device(None, 5, 100);
    let mut them = boringtun(None, None);
    let now = Instant::from_secs(10);
    let pkt = ipv4(OUR_IP4, THEIR_IP4, b"lost then found");
    let _lost = net(us_send(&mut us, now, &pkt));
    // More packets while the handshake is in flight are staged, not re-initiated.
    assert_eq!(
        us_send(&mut us, now + Duration::from_secs(1), &pkt),
        Us::Done
    );
    let t = us.poll_timeout().unwrap();
    us.handle_timeout(t);
    let retry = drain(&mut us);
    assert_eq!(retry.len(), 1);
    let resp = bt_net(&bt_recv(&mut them, &retry[0])[0]);
    assert_eq!(us_recv(&mut us, t, &resp), Us::Done);
    let staged = drain(&mut us);
    assert_eq!(staged.len(), 2);
    for s in staged {
        assert!(matches!(bt_recv(&mut them, &s)[0], Bt::Tunnel(..)));
    }
}

#[test]
fn reordered_and_duplicated_data_from_boringtun_delivered_once() {
    let (mut us, mut them, now) = handshake_they_initiate(None, 100);
    let mut dgs = Vec::new();
    for i in 0..64u32 {
        let p = ipv4(THEIR_IP4, OUR_IP4, &i.to_be_bytes());
        dgs.push((i, bt_net(&bt_send(&mut them, &p))));
    }
    // Deterministic shuffle with duplicates.
    let mut order: Vec<usize> = (0..64).chain((0..64).step_by(3)).collect();
    let mut x = 0x9e37_79b9u32;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        order.swap(i, (x as usize) % (i + 1));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut replays = 0;
    for &k in &order {
        match us_recv(&mut us, now, &dgs[k].1) {
            Us::Tunnel(p, _) => assert!(seen.insert(p[28..32].to_vec())),
            Us::Err(DeviceError::Dropped(DropReason::ReplayedCounter)) => replays += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen.len(), 64);
    assert_eq!(replays, order.len() - 64);
    assert_eq!(
        us.stats().drops(DropReason::ReplayedCounter),
        replays as u64
    );
}

#[test]
fn reordered_data_to_boringtun_delivered_once() {
    let (mut us, mut them, now) = handshake_we_initiate(None);
    let mut dgs = Vec::new();
    for i in 0..40u32 {
        let p = ipv4(OUR_IP4, THEIR_IP4, &i.to_be_bytes());
        dgs.push(net(us_send(&mut us, now, &p)));
    }
    dgs.reverse();
    let dup = dgs[5].clone();
    dgs.push(dup);
    let delivered = dgs
        .iter()
        .filter(|d| matches!(bt_recv(&mut them, d)[0], Bt::Tunnel(..)))
        .count();
    assert_eq!(delivered, 40);
}

/// The zero-copy path: a handshake started by `encapsulate_in_place` (the packet is staged
/// out of the caller's buffer before the initiation overwrites it), then data sealed in
/// exactly sized buffers, all delivered by boringtun; and byte for byte what the copying
/// `encapsulate` of an identically seeded device sends.
#[test]
fn in_place_encapsulation_reaches_boringtun_and_matches_the_copying_path() {
    let now = Instant::from_secs(10);
    let mut us = our_device(None, 1, 100);
    let mut twin = our_device(None, 1, 100);
    let mut them = boringtun(None, None);
    let first = ipv4(OUR_IP4, THEIR_IP4, b"staged from the caller's buffer");
    let init = net(us_send_in_place(&mut us, now, &first, 148));
    assert_eq!(init, net(us_send(&mut twin, now, &first)));
    let resp = bt_net(&bt_recv(&mut them, &init)[0]);
    assert_eq!(us_recv(&mut us, now, &resp), Us::Done);
    // The twin sent the same initiation, so boringtun's one response completes it too and
    // both hold the same session keys.
    assert_eq!(us_recv(&mut twin, now, &resp), Us::Done);
    let staged = drain(&mut us);
    assert_eq!(staged.len(), 1);
    assert_eq!(
        bt_recv(&mut them, &staged[0])[0],
        Bt::Tunnel(first, "10.0.0.1".parse().unwrap())
    );
    drain(&mut twin);
    // Payload lengths around the 16-byte padding boundary; the buffer is exactly
    // 16 + padded + 16 bytes, so the padding is written inside it.
    for n in [0usize, 1, 11, 12, 13, 27, 28, 29, 100, 1380] {
        let pkt = ipv4(OUR_IP4, THEIR_IP4, &vec![n as u8; n]);
        let cap = 32 + pkt.len().div_ceil(16) * 16;
        let dg = net(us_send_in_place(&mut us, now, &pkt, cap));
        assert_eq!(dg.len(), cap);
        assert_eq!(
            dg,
            net(us_send(&mut twin, now, &pkt)),
            "length {}",
            pkt.len()
        );
        assert_eq!(
            bt_recv(&mut them, &dg)[0],
            Bt::Tunnel(pkt, "10.0.0.1".parse().unwrap())
        );
    }
    assert_eq!(us.stats().total_drops(), 0);
}

/// A buffer one byte short fails with the size it needs and changes nothing: the packet
/// still sits in the buffer and the next (big enough) call sends counter 0.
#[test]
fn in_place_encapsulation_with_a_short_buffer_changes_nothing() {
    let (mut us, mut them, now) = handshake_we_initiate(None);
    let pkt = ipv4(OUR_IP4, THEIR_IP4, b"0123456789abcdef");
    let needed = 32 + pkt.len().div_ceil(16) * 16;
    let mut buf = vec![0u8; needed - 1];
    buf[16..16 + pkt.len()].copy_from_slice(&pkt);
    let before = buf.clone();
    assert_eq!(
        us.encapsulate_in_place(now, &mut buf, pkt.len()),
        Err(DeviceError::BufferTooSmall { needed })
    );
    assert_eq!(buf, before);
    let dg = net(us_send_in_place(&mut us, now, &pkt, needed));
    assert_eq!(dg[8..16], 1u64.to_le_bytes()[..]);
    assert_eq!(
        bt_recv(&mut them, &dg)[0],
        Bt::Tunnel(pkt, "10.0.0.1".parse().unwrap())
    );
    // A packet that does not even fit the buffer: the size asked for is enough for the
    // datagram (and would be for an initiation), and a buffer of that size then works.
    let big = ipv4(OUR_IP4, THEIR_IP4, &[7u8; 72]);
    let mut buf = vec![0u8; 64];
    let Err(DeviceError::BufferTooSmall { needed }) =
        us.encapsulate_in_place(now, &mut buf, big.len())
    else {
        panic!("a 100-byte packet does not fit 64 bytes")
    };
    assert_eq!(needed, 148);
    assert_eq!(buf, [0u8; 64]);
    let dg = net(us_send_in_place(&mut us, now, &big, needed));
    assert_eq!(
        bt_recv(&mut them, &dg)[0],
        Bt::Tunnel(big, "10.0.0.1".parse().unwrap())
    );
    // No route for this destination: counted, nothing sent.
    let stray = ipv4(OUR_IP4, [192, 0, 2, 99], b"x");
    assert_eq!(
        us_send_in_place(&mut us, now, &stray, 64),
        Us::Err(DeviceError::Dropped(DropReason::NoRoute))
    );
    assert_eq!(us.stats().drops(DropReason::NoRoute), 1);
}

/// The zero-copy receive path against boringtun: its initiation answered, its keepalive
/// confirming the session, its data in both families delivered in place; a tampered, a
/// replayed and a truncated datagram are dropped with their reasons and change nothing;
/// every result equals the copying path's on an identically seeded device.
#[test]
fn in_place_decapsulation_of_boringtun_traffic_matches_the_copying_path() {
    let now = Instant::from_secs(10);
    let mut us = our_device(None, 2, 100);
    let mut twin = our_device(None, 2, 100);
    let mut them = boringtun(None, None);
    let mut buf = vec![0u8; 2048];
    let init = bt_net(&bt(them.format_handshake_initiation(&mut buf, false)));
    let resp = net(us_recv_in_place(&mut us, now, &init));
    assert_eq!(resp, net(us_recv(&mut twin, now, &init)));
    let keepalive = bt_net(&bt_recv(&mut them, &resp)[0]);
    assert_eq!(us_recv_in_place(&mut us, now, &keepalive), Us::Done);
    assert_eq!(us_recv(&mut twin, now, &keepalive), Us::Done);
    let mut sent = Vec::new();
    for (i, n) in [0usize, 1, 15, 16, 17, 100, 1350].into_iter().enumerate() {
        let pkt = if i % 2 == 0 {
            ipv4(THEIR_IP4, OUR_IP4, &vec![n as u8; n])
        } else {
            ipv6(THEIR_IP6, OUR_IP6, &vec![n as u8; n])
        };
        let dg = bt_net(&bt_send(&mut them, &pkt));
        let got = us_recv_in_place(&mut us, now, &dg);
        assert_eq!(got, us_recv(&mut twin, now, &dg));
        let Us::Tunnel(p, _) = got else {
            panic!("not delivered: {got:?}")
        };
        assert_eq!(p, pkt);
        sent.push(dg);
    }
    // Replayed.
    assert_eq!(
        us_recv_in_place(&mut us, now, &sent[2]),
        Us::Err(DeviceError::Dropped(DropReason::ReplayedCounter))
    );
    // Tampered, then the genuine packet still arrives.
    let pkt = ipv4(THEIR_IP4, OUR_IP4, b"genuine");
    let dg = bt_net(&bt_send(&mut them, &pkt));
    let mut bad = dg.clone();
    bad[20] ^= 1;
    assert_eq!(
        us_recv_in_place(&mut us, now, &bad),
        Us::Err(DeviceError::Dropped(DropReason::DecryptFailed))
    );
    assert_eq!(
        us_recv_in_place(&mut us, now, &dg[..31]),
        Us::Err(DeviceError::Dropped(DropReason::Malformed))
    );
    assert_eq!(
        us_recv_in_place(&mut us, now, &dg),
        Us::Tunnel(pkt, "10.0.0.2".parse().unwrap())
    );
    assert_eq!(us.stats().drops(DropReason::ReplayedCounter), 1);
    assert_eq!(us.stats().drops(DropReason::DecryptFailed), 1);
    assert_eq!(us.stats().drops(DropReason::Malformed), 1);
    // A length beyond the buffer is refused without touching anything.
    let mut short = dg.clone();
    assert_eq!(
        us.decapsulate_in_place(now, addr(THEIRS), &mut short, dg.len() + 1),
        Err(DeviceError::BufferTooSmall {
            needed: dg.len() + 1
        })
    );
    assert_eq!(short, dg);
}

#[test]
fn our_keepalive_timer_answers_boringtun_data() {
    let (mut us, mut them, now) = handshake_they_initiate(None, 100);
    let dg = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"ping")));
    assert!(matches!(us_recv(&mut us, now, &dg), Us::Tunnel(..)));
    // We received data and sent nothing: KEEPALIVE_TIMEOUT later a keepalive is due.
    assert_eq!(us.poll_timeout(), Some(now + timers::KEEPALIVE_TIMEOUT));
    us.handle_timeout(now + timers::KEEPALIVE_TIMEOUT);
    let ka = drain(&mut us);
    assert_eq!(ka.len(), 1);
    assert_eq!(ka[0].len(), 32);
    assert_eq!(bt_recv(&mut them, &ka[0])[0], Bt::Done);
}

#[test]
fn our_replay_window_spans_8128_packets_of_boringtun() {
    let (mut us, mut them, now) = handshake_they_initiate(None, 100);
    // boringtun's counters: the keepalive used 0, the data packet in setup used 1.
    let mut dgs = Vec::new();
    for i in 0..9000u32 {
        let p = ipv4(THEIR_IP4, OUR_IP4, &i.to_be_bytes());
        dgs.push(bt_net(&bt_send(&mut them, &p)));
    }
    let counter = |d: &[u8]| u64::from_le_bytes(d[8..16].try_into().unwrap());
    let newest = dgs.last().unwrap().clone();
    assert!(matches!(us_recv(&mut us, now, &newest), Us::Tunnel(..)));
    let top = counter(&newest);
    let at = |c: u64| dgs.iter().find(|d| counter(d) == c).unwrap().clone();
    // Exactly 8128 behind the newest is still inside the window; one more is not.
    assert!(matches!(
        us_recv(&mut us, now, &at(top - 8128)),
        Us::Tunnel(..)
    ));
    assert_eq!(
        us_recv(&mut us, now, &at(top - 8129)),
        Us::Err(DeviceError::Dropped(DropReason::ReplayedCounter))
    );
    assert!(matches!(
        us_recv(&mut us, now, &at(top - 1000)),
        Us::Tunnel(..)
    ));
}

#[test]
fn inner_packets_with_bad_headers_from_boringtun_are_dropped() {
    let (mut us, mut them, now) = handshake_they_initiate(None, 100);
    // IPv4 total length larger than what was sent.
    let mut long = ipv4(THEIR_IP4, OUR_IP4, b"short");
    long[2..4].copy_from_slice(&500u16.to_be_bytes());
    let dg = bt_net(&bt_send(&mut them, &long));
    // (boringtun refuses to encapsulate nothing; it encrypts whatever it gets.)
    assert_eq!(
        us_recv(&mut us, now, &dg),
        Us::Err(DeviceError::Dropped(DropReason::Malformed))
    );
    let state = |us: &sealwire::tunnel::Device<_>| {
        (
            us.peer_status(&their_pub()).unwrap(),
            us.has_session(now, &their_pub()),
        )
    };
    let before = state(&us);
    let mut v5 = ipv4(THEIR_IP4, OUR_IP4, b"v5");
    v5[0] = 0x55;
    let dg = bt_net(&bt_send(&mut them, &v5));
    assert_eq!(
        us_recv(&mut us, now, &dg),
        Us::Err(DeviceError::Dropped(DropReason::Malformed))
    );
    assert_eq!(state(&us), before);
}

#[test]
fn under_load_a_cookie_holding_source_is_still_rate_limited() {
    let mut us = our_device(None, 4, 0);
    let mut them = boringtun(None, None);
    let now = Instant::from_secs(10);
    let mut buf = vec![0u8; 2048];
    let init = bt_net(&bt(them.format_handshake_initiation(&mut buf, false)));
    let cookie = net(us_recv(&mut us, now, &init));
    assert_eq!(bt_recv(&mut them, &cookie)[0], Bt::Done);
    // Six initiations with a valid mac2 in the same instant: the burst is five.
    let mut limited = 0;
    for _ in 0..6 {
        let i = bt_net(&bt(them.format_handshake_initiation(&mut buf, true)));
        if us_recv(&mut us, now, &i) == Us::Err(DeviceError::Dropped(DropReason::RateLimited)) {
            limited += 1;
        }
    }
    assert_eq!(limited, 1);
    assert_eq!(us.stats().drops(DropReason::RateLimited), 1);
    // 50 ms later one more token has accrued.
    let i = bt_net(&bt(them.format_handshake_initiation(&mut buf, true)));
    assert_ne!(
        us_recv(&mut us, now + Duration::from_millis(50), &i),
        Us::Err(DeviceError::Dropped(DropReason::RateLimited))
    );
}

#[test]
fn boringtun_under_load_cookies_our_response_and_we_answer_with_mac2() {
    let mut us = our_device(None, 8, 100);
    let mut them = boringtun(None, Some(0));
    let now = Instant::from_secs(10);
    let mut buf = vec![0u8; 2048];
    let init = bt_net(&bt(them.format_handshake_initiation(&mut buf, false)));
    let resp = net(us_recv(&mut us, now, &init));
    // boringtun demands a cookie even for our response; the reply is addressed to our
    // response's sender index.
    let cookie = bt_net(&bt_recv(&mut them, &resp)[0]);
    assert_eq!(cookie.len(), 64);
    assert_eq!(us_recv(&mut us, now, &cookie), Us::Done);
    assert_eq!(us.stats().cookie_replies_received, 1);
    // boringtun tries again; our new response carries mac2 and is accepted.
    let init2 = bt_net(&bt(them.format_handshake_initiation(&mut buf, true)));
    let later = now + Duration::from_millis(100);
    let resp2 = net(us_recv(&mut us, later, &init2));
    assert_ne!(&resp2[76..92], &[0u8; 16], "mac2 is set");
    let ka = bt_net(&bt_recv(&mut them, &resp2)[0]);
    assert_eq!(ka.len(), 32);
    assert_eq!(us_recv(&mut us, later, &ka), Us::Done);
    let pkt = ipv4(OUR_IP4, THEIR_IP4, b"after two cookies");
    let dg = net(us_send(&mut us, later, &pkt));
    assert_eq!(
        bt_recv(&mut them, &dg)[0],
        Bt::Tunnel(pkt, "10.0.0.1".parse().unwrap())
    );
}

#[test]
fn any_mutated_byte_of_a_boringtun_cookie_reply_is_rejected() {
    let mut us = our_device(None, 3, 100);
    let mut them = boringtun(None, Some(0));
    let now = Instant::from_secs(10);
    let init = net(us_send(&mut us, now, &ipv4(OUR_IP4, THEIR_IP4, b"c")));
    let cookie = bt_net(&bt_recv(&mut them, &init)[0]);
    for i in 0..cookie.len() {
        let mut bad = cookie.clone();
        bad[i] ^= 0x04;
        assert!(
            matches!(us_recv(&mut us, now, &bad), Us::Err(_)),
            "byte {i}"
        );
    }
    assert_eq!(us.stats().cookie_replies_received, 0);
    // The genuine reply still works: nothing was consumed by the forgeries.
    assert_eq!(us_recv(&mut us, now, &cookie), Us::Done);
    assert_eq!(us.stats().cookie_replies_received, 1);
}

#[test]
fn boringtun_rekey_as_initiator_drops_no_in_flight_packet() {
    let (mut us, mut them, now) = handshake_they_initiate(None, 100);
    let t = now + Duration::from_secs(30);
    let old_p0 = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"p0")));
    let old_p1 = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"p1")));
    let mut buf = vec![0u8; 2048];
    // boringtun starts a new handshake (as its rekey timer would).
    let init = bt_net(&bt(them.format_handshake_initiation(&mut buf, true)));
    let resp = net(us_recv(&mut us, t, &init));
    // We keep sending on the old session until the initiator confirms the new one.
    let q_old = net(us_send(&mut us, t, &ipv4(OUR_IP4, THEIR_IP4, b"q-old")));
    let confirm = bt_net(&bt_recv(&mut them, &resp)[0]);
    assert!(matches!(us_recv(&mut us, t, &old_p1), Us::Tunnel(..)));
    assert!(matches!(bt_recv(&mut them, &q_old)[0], Bt::Tunnel(..)));
    assert_eq!(us_recv(&mut us, t, &confirm), Us::Done);
    // New session both ways; the oldest packet still opens via `previous`.
    let p2 = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"p2")));
    assert!(matches!(us_recv(&mut us, t, &p2), Us::Tunnel(..)));
    let q_new = net(us_send(&mut us, t, &ipv4(OUR_IP4, THEIR_IP4, b"q-new")));
    assert_ne!(q_new[4..8], q_old[4..8], "sent on the new session");
    assert!(matches!(bt_recv(&mut them, &q_new)[0], Bt::Tunnel(..)));
    assert!(matches!(us_recv(&mut us, t, &old_p0), Us::Tunnel(..)));
    assert_eq!(us.stats().total_drops(), 0);
}
