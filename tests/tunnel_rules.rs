//! The tunnel's rules, one test each, named for the rule; a boringtun peer plays the other
//! side wherever one is needed. Bad input is dropped with a counted reason and leaves the
//! peer untouched; cryptokey routing holds both ways; the endpoint roams only with
//! authenticated packets; timers fire on exact virtual deadlines (no tick); configuration is
//! checked at construction; the output queues are bounded and count their drops; a
//! wg-quick file becomes a working device; backends keep the control-plane contract; the
//! data path allocates nothing.

mod support {
    pub mod tunnel;
}

use allocation_counter::measure;
use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
use sealwire::crypto::x25519::{PublicKey, StaticSecret};
use sealwire::time::{Duration, Instant, WallTime};
use sealwire::tunnel::backend::*;
use sealwire::tunnel::wg_quick::WgQuick;
use sealwire::tunnel::{
    timers, Action, Device, DeviceConfig, DeviceError, DeviceEvent, DropReason, PeerConfig,
    PeerStatus,
};
use std::net::SocketAddr;
use support::tunnel::*;

type Dev = Device<ChaCha20Rng>;

// ------------------------------------------------------------------ input and routing

/// We respond to boringtun; session confirmed; returns at `now`.
fn established() -> (Dev, boringtun::noise::Tunn, Instant) {
    let mut us = our_device(None, 9, 100);
    let mut them = boringtun(None, None);
    let now = Instant::from_secs(10);
    let mut buf = vec![0u8; 2048];
    let init = bt_net(&bt(them.format_handshake_initiation(&mut buf, false)));
    let resp = net(us_recv(&mut us, now, &init));
    let ka = bt_net(&bt_recv(&mut them, &resp)[0]);
    assert_eq!(us_recv(&mut us, now, &ka), Us::Done);
    (us, them, now)
}

/// What a dropped packet must leave as it was: the peer's status and whether it can send.
fn status(us: &Dev, now: Instant) -> (PeerStatus, bool) {
    (
        us.peer_status(&their_pub()).unwrap(),
        us.has_session(now, &their_pub()),
    )
}

fn assert_dropped(us: &mut Dev, now: Instant, dg: &[u8], reason: DropReason) {
    let before = status(us, now);
    let count = us.stats().drops(reason);
    assert_eq!(us_recv(us, now, dg), Us::Err(DeviceError::Dropped(reason)));
    assert_eq!(us.stats().drops(reason), count + 1);
    assert_eq!(
        status(us, now),
        before,
        "peer state changed by a dropped packet"
    );
}

#[test]
fn malformed_datagrams_are_dropped_and_counted() {
    let (mut us, mut them, now) = established();
    let good = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"x")));
    for bad in [
        vec![],
        vec![4],
        vec![4, 0, 0, 0],
        good[..31].to_vec(),
        {
            let mut b = good.clone();
            b[1] = 1; // reserved byte
            b
        },
        vec![9u8; 148],
        vec![1u8; 147],
    ] {
        assert_dropped(&mut us, now, &bad, DropReason::Malformed);
    }
}

#[test]
fn tampered_data_is_dropped_and_then_the_genuine_packet_still_arrives() {
    let (mut us, mut them, now) = established();
    let good = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"payload")));
    for i in 16..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x80;
        assert_dropped(&mut us, now, &bad, DropReason::DecryptFailed);
    }
    // Counter bytes are authenticated too (they are the nonce).
    let mut bad = good.clone();
    bad[9] ^= 1;
    assert_dropped(&mut us, now, &bad, DropReason::DecryptFailed);
    let mut bad = good.clone();
    bad[4] ^= 1;
    assert_dropped(&mut us, now, &bad, DropReason::UnknownIndex);
    assert!(matches!(us_recv(&mut us, now, &good), Us::Tunnel(..)));
    assert_dropped(&mut us, now, &good, DropReason::ReplayedCounter);
}

#[test]
fn stale_session_is_rejected_after_reject_after_time() {
    let (mut us, mut them, now) = established();
    let good = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"late")));
    let late = now + timers::REJECT_AFTER_TIME;
    assert_dropped(&mut us, late, &good, DropReason::SessionExpired);
    // One nanosecond earlier it is still fine.
    let ok = late - Duration::from_nanos(1);
    assert!(matches!(us_recv(&mut us, ok, &good), Us::Tunnel(..)));
}

#[test]
fn spoofed_inner_source_is_dropped_never_forwarded() {
    let (mut us, mut them, now) = established();
    // boringtun happily encrypts anything; our inbound AllowedIPs check must stop it.
    let spoof = bt_net(&bt_send(
        &mut them,
        &ipv4([10, 0, 0, 99], OUR_IP4, b"spoof"),
    ));
    assert_dropped(&mut us, now, &spoof, DropReason::SourceNotAllowed);
    let spoof6 = bt_net(&bt_send(&mut them, &ipv6("fd00::99", OUR_IP6, b"spoof")));
    assert_dropped(&mut us, now, &spoof6, DropReason::SourceNotAllowed);
    // Never forwarded, and the window was not moved: a genuine packet still flows.
    let good = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"ok")));
    assert!(matches!(us_recv(&mut us, now, &good), Us::Tunnel(..)));
}

#[test]
fn handshake_garbage_is_dropped_without_state_change() {
    let (mut us, mut them, now) = established();
    let mut buf = vec![0u8; 2048];
    // Bad mac1.
    let mut init = bt_net(&bt(them.format_handshake_initiation(&mut buf, true)));
    init[120] ^= 1;
    assert_dropped(&mut us, now, &init, DropReason::InvalidMac1);
    // A response nobody asked for (its receiver index is not ours).
    let mut resp = vec![0u8; 92];
    resp[0] = 2;
    assert_dropped(&mut us, now, &resp, DropReason::InvalidMac1);
    // A cookie reply for an unknown index.
    let mut cookie = vec![0u8; 64];
    cookie[0] = 3;
    assert_dropped(&mut us, now, &cookie, DropReason::UnknownIndex);
}

#[test]
fn initiation_from_unconfigured_key_is_unknown_peer() {
    let mut us = our_device(None, 9, 100);
    let mut stranger = boringtun_keyed([0x33; 32], None, None);
    let mut buf = vec![0u8; 2048];
    let init = bt_net(&bt(stranger.format_handshake_initiation(&mut buf, false)));
    let before = status(&us, Instant::ZERO);
    assert_eq!(
        us_recv(&mut us, Instant::ZERO, &init),
        Us::Err(DeviceError::Dropped(DropReason::UnknownPeer))
    );
    assert_eq!(status(&us, Instant::ZERO), before);
}

#[test]
fn initiation_flood_from_one_peer_is_limited() {
    let mut us = our_device(None, 9, 100);
    let mut them = boringtun(None, None);
    let mut buf = vec![0u8; 2048];
    let now = Instant::from_secs(5);
    let i1 = bt_net(&bt(them.format_handshake_initiation(&mut buf, false)));
    std::thread::yield_now();
    let i2 = bt_net(&bt(them.format_handshake_initiation(&mut buf, true)));
    assert!(matches!(us_recv(&mut us, now, &i1), Us::Network(_)));
    let before = status(&us, now);
    let r = us_recv(&mut us, now + Duration::from_millis(10), &i2);
    // Either the timestamps collided (same TAI64N granule) or the flood gate caught it.
    assert!(
        r == Us::Err(DeviceError::Dropped(DropReason::InitiationFlood))
            || r == Us::Err(DeviceError::Dropped(DropReason::ReplayedTimestamp)),
        "{r:?}"
    );
    assert_eq!(status(&us, now), before);
}

#[test]
fn roaming_follows_authenticated_packets_only() {
    let (mut us, mut them, now) = established();
    assert_eq!(status(&us, now).0.endpoint, Some(addr(THEIRS)));
    let moved = addr("203.0.113.9:7777");
    // Garbage from elsewhere does not move the endpoint.
    let mut junk = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"a")));
    let last = junk.len() - 1;
    junk[last] ^= 1;
    assert!(matches!(
        us_recv_from(&mut us, now, moved, &junk),
        Us::Err(_)
    ));
    assert_eq!(status(&us, now).0.endpoint, Some(addr(THEIRS)));
    // An authenticated packet from the new address does.
    let good = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"b")));
    while us.poll_event().is_some() {}
    assert!(matches!(
        us_recv_from(&mut us, now, moved, &good),
        Us::Tunnel(..)
    ));
    assert_eq!(status(&us, now).0.endpoint, Some(moved));
    assert_eq!(
        us.poll_event(),
        Some(DeviceEvent::EndpointChanged {
            peer: their_pub(),
            endpoint: moved
        })
    );
    let (_, to) = us_send_to(&mut us, now, &ipv4(OUR_IP4, THEIR_IP4, b"reply"));
    assert_eq!(to, Some(moved));
}

#[test]
fn buffer_too_small_leaves_everything_untouched() {
    let (mut us, mut them, now) = established();
    let pkt = ipv4(OUR_IP4, THEIR_IP4, &[7u8; 100]);
    let needed = 32 + (pkt.len().div_ceil(16) * 16);
    let mut small = vec![0xeeu8; needed - 1];
    assert_eq!(
        us.encapsulate(now, &pkt, &mut small),
        Err(DeviceError::BufferTooSmall { needed })
    );
    assert!(small.iter().all(|b| *b == 0xee));
    // The counter did not advance: the next packet uses counter 0 and boringtun takes it.
    let dg = net(us_send(&mut us, now, &pkt));
    assert_eq!(u64::from_le_bytes(dg[8..16].try_into().unwrap()), 0);
    assert!(matches!(bt_recv(&mut them, &dg)[0], Bt::Tunnel(..)));
    let incoming = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, &[1u8; 64])));
    let mut small = vec![0xeeu8; incoming.len() - 33];
    assert!(matches!(
        us.decapsulate(now, addr(THEIRS), &incoming, &mut small),
        Err(DeviceError::BufferTooSmall { .. })
    ));
    assert!(small.iter().all(|b| *b == 0xee));
    assert!(matches!(us_recv(&mut us, now, &incoming), Us::Tunnel(..)));
}

#[test]
fn padding_is_to_sixteen_bytes_capped_at_the_mtu() {
    let (mut us, mut them, now) = established();
    for n in [1usize, 15, 16, 17, 100] {
        let pkt = ipv4(OUR_IP4, THEIR_IP4, &vec![1u8; n]);
        let dg = net(us_send(&mut us, now, &pkt));
        assert_eq!(dg.len(), 32 + pkt.len().div_ceil(16) * 16);
        assert_eq!(
            bt_recv(&mut them, &dg)[0],
            Bt::Tunnel(pkt, "10.0.0.1".parse().unwrap())
        );
    }
    // Never padded beyond the MTU (1420 by default), as the kernel does.
    for (total, wire_len) in [(1420usize, 1420 + 32), (1410, 1420 + 32), (1500, 1500 + 32)] {
        let pkt = ipv4(OUR_IP4, THEIR_IP4, &vec![2u8; total - 28]);
        let dg = net(us_send(&mut us, now, &pkt));
        assert_eq!(dg.len(), wire_len, "packet of {total}");
        assert_eq!(
            bt_recv(&mut them, &dg)[0],
            Bt::Tunnel(pkt, "10.0.0.1".parse().unwrap())
        );
    }
}

#[test]
fn no_route_and_unparseable_outbound_are_counted() {
    let (mut us, _, now) = established();
    let pkt = ipv4(OUR_IP4, [192, 168, 1, 1], b"nowhere");
    assert_eq!(
        us_send(&mut us, now, &pkt),
        Us::Err(DeviceError::Dropped(DropReason::NoRoute))
    );
    assert_eq!(
        us_send(&mut us, now, &[0x10, 0, 0]),
        Us::Err(DeviceError::Dropped(DropReason::Malformed))
    );
    assert_eq!(us.stats().drops(DropReason::NoRoute), 1);
}

/// Three boringtun peers with distinct keys and prefixes behind one device.
#[test]
fn many_peers_longest_prefix_routing_and_identity_by_static_key() {
    let mut us = Device::new(
        our_key(),
        DeviceConfig::default(),
        ChaCha20Rng::seed_from_u64(11),
    )
    .unwrap();
    us.set_wall_clock(Instant::ZERO, WallTime::from_unix(WALL, 0));
    let keys = [[0x41u8; 32], [0x42; 32], [0x43; 32]];
    let prefixes = [["10.1.0.0/16"], ["10.1.2.0/24"], ["0.0.0.0/0"]];
    let mut peers = Vec::new();
    for (k, pfx) in keys.iter().zip(prefixes) {
        let mut p = PeerConfig::new(StaticSecret::from_bytes(*k).public_key());
        p.allowed_ips = pfx.iter().map(|s| s.parse().unwrap()).collect();
        us.add_peer(Instant::ZERO, p).unwrap();
        peers.push(boringtun_keyed(*k, None, None));
    }
    let now = Instant::from_secs(1);
    let mut buf = vec![0u8; 2048];
    // Every peer initiates from the SAME address: identity comes from the key, not the source.
    let shared_src = addr("198.51.100.50:1000");
    for t in peers.iter_mut() {
        let init = bt_net(&bt(t.format_handshake_initiation(&mut buf, false)));
        let resp = net(us_recv_from(&mut us, now, shared_src, &init));
        let ka = bt_net(&bt_recv(t, &resp)[0]);
        assert_eq!(us_recv_from(&mut us, now, shared_src, &ka), Us::Done);
    }
    assert_eq!(us.stats().handshakes_completed, 3);
    // Outbound: longest prefix picks the peer; only that boringtun can decrypt.
    for (dst, who) in [([10, 1, 2, 3], 1), ([10, 1, 9, 9], 0), ([8, 8, 8, 8], 2)] {
        let pkt = ipv4(OUR_IP4, dst, b"route me");
        let dg = net(us_send(&mut us, now, &pkt));
        for (i, t) in peers.iter_mut().enumerate() {
            let r = bt_recv(t, &dg);
            assert_eq!(
                matches!(r[0], Bt::Tunnel(..)),
                i == who,
                "dst {dst:?} peer {i}: {r:?}"
            );
        }
    }
    // Inbound: peer 0 may not send from 10.1.2.x (that /24 belongs to peer 1).
    let dg = bt_net(&bt_send(&mut peers[0], &ipv4([10, 1, 2, 7], OUR_IP4, b"x")));
    assert_eq!(
        us_recv_from(&mut us, now, shared_src, &dg),
        Us::Err(DeviceError::Dropped(DropReason::SourceNotAllowed))
    );
    let dg = bt_net(&bt_send(&mut peers[1], &ipv4([10, 1, 2, 7], OUR_IP4, b"x")));
    assert!(matches!(
        us_recv_from(&mut us, now, shared_src, &dg),
        Us::Tunnel(..)
    ));
}

#[test]
fn poll_timeout_with_ten_thousand_peers_is_the_earliest_deadline() {
    let mut us = Device::new(
        our_key(),
        DeviceConfig::default(),
        ChaCha20Rng::seed_from_u64(12),
    )
    .unwrap();
    for i in 0..10_000u32 {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_le_bytes());
        k[31] = 0x40;
        // Public keys need not be valid points for the routing/timer tables.
        let mut p = PeerConfig::new(sealwire::crypto::x25519::PublicKey::from_bytes(k));
        p.endpoint = Some(addr("192.0.2.9:1"));
        p.persistent_keepalive = Some((i % 1000 + 1) as u16);
        us.add_peer(Instant::ZERO, p).unwrap();
    }
    assert_eq!(us.peer_count(), 10_000);
    // Persistent keepalives start due immediately.
    assert_eq!(us.poll_timeout(), Some(Instant::ZERO));
    let t = std::time::Instant::now();
    for _ in 0..10_000 {
        assert_eq!(us.poll_timeout(), Some(Instant::ZERO));
    }
    assert!(t.elapsed() < std::time::Duration::from_millis(500));
}

/// Hub: boringtun A → our device → boringtun B, the way a relay node forwards between peers.
#[test]
fn hub_forwards_between_two_boringtun_peers() {
    let mut us = Device::new(
        our_key(),
        DeviceConfig::default(),
        ChaCha20Rng::seed_from_u64(13),
    )
    .unwrap();
    us.set_wall_clock(Instant::ZERO, WallTime::from_unix(WALL, 0));
    let (ka, kb) = ([0x51u8; 32], [0x52u8; 32]);
    let (src_a, src_b) = (addr("198.51.100.1:1111"), addr("198.51.100.2:2222"));
    for (k, net_) in [(ka, "10.1.0.0/16"), (kb, "10.2.0.0/16")] {
        let mut p = PeerConfig::new(StaticSecret::from_bytes(k).public_key());
        p.allowed_ips.push(net_.parse().unwrap());
        us.add_peer(Instant::ZERO, p).unwrap();
    }
    let mut a = boringtun_keyed(ka, None, None);
    let mut b = boringtun_keyed(kb, None, None);
    let now = Instant::from_secs(1);
    let mut buf = vec![0u8; 2048];
    for (t, src) in [(&mut a, src_a), (&mut b, src_b)] {
        let init = bt_net(&bt(t.format_handshake_initiation(&mut buf, false)));
        let resp = net(us_recv_from(&mut us, now, src, &init));
        let ka = bt_net(&bt_recv(t, &resp)[0]);
        assert_eq!(us_recv_from(&mut us, now, src, &ka), Us::Done);
    }
    let pkt = ipv4([10, 1, 0, 5], [10, 2, 0, 9], b"through the hub");
    let dg = bt_net(&bt_send(&mut a, &pkt));
    let Us::Tunnel(inner, source) = us_recv_from(&mut us, now, src_a, &dg) else {
        panic!("not delivered")
    };
    assert_eq!(source, "10.1.0.5".parse::<std::net::IpAddr>().unwrap());
    let (out, to) = us_send_to(&mut us, now, &inner);
    assert_eq!(to, Some(src_b));
    assert_eq!(bt_recv(&mut b, &net(out))[0], Bt::Tunnel(pkt, source));
}

// -------------------------------------------------------------------------- timers

fn device_with_keepalive(keepalive: Option<u16>) -> Dev {
    let mut d = Device::new(
        our_key(),
        DeviceConfig::default(),
        ChaCha20Rng::seed_from_u64(21),
    )
    .unwrap();
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
    let events: Vec<DeviceEvent> = std::iter::from_fn(|| us.poll_event()).collect();
    assert_eq!(
        events,
        vec![DeviceEvent::HandshakeGaveUp { peer: their_pub() }]
    );
    assert!(us.peer_status(&their_pub()).unwrap().tx_bytes == 0);
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
    assert!(!us.has_session(end, &their_pub()));
    let events: Vec<DeviceEvent> = std::iter::from_fn(|| us.poll_event()).collect();
    assert!(
        events.contains(&DeviceEvent::KeysWiped { peer: their_pub() }),
        "{events:?}"
    );
    // The session's index is gone: its packets are now unknown, not merely expired.
    assert_eq!(
        us_recv(&mut us, end, &dg),
        Us::Err(DeviceError::Dropped(DropReason::UnknownIndex))
    );
}

#[test]
fn no_timer_is_armed_for_an_idle_peer_without_keepalive() {
    let us = device_with_keepalive(None);
    assert_eq!(us.poll_timeout(), None);
}

// ------------------------------------------------------- configuration and bounds

/// Our device with the boringtun peer (endpoint known) under `cfg`.
fn configured(cfg: DeviceConfig) -> Dev {
    let mut d = Device::new(our_key(), cfg, ChaCha20Rng::seed_from_u64(31)).unwrap();
    let mut p = PeerConfig::new(their_pub());
    p.endpoint = Some(addr(THEIRS));
    p.allowed_ips.push("10.0.0.2/32".parse().unwrap());
    d.add_peer(Instant::ZERO, p).unwrap();
    d.set_wall_clock(Instant::ZERO, WallTime::from_unix(WALL, 0));
    d
}

#[test]
fn a_configuration_that_makes_no_sense_is_refused_at_construction_naming_the_field() {
    let new = |cfg| Device::new(our_key(), cfg, ChaCha20Rng::seed_from_u64(1)).map(|_| ());
    type Spoil = fn(&mut DeviceConfig);
    let cases: [(&str, Spoil); 4] = [
        ("mtu", |c| c.mtu = DeviceConfig::MIN_MTU - 1),
        ("max_peers", |c| c.max_peers = 0),
        ("max_rate_limited_sources", |c| {
            c.max_rate_limited_sources = 0
        }),
        ("queue_capacity", |c| c.queue_capacity = 0),
    ];
    for (field, spoil) in cases {
        let mut cfg = DeviceConfig::default();
        spoil(&mut cfg);
        assert_eq!(new(cfg), Err(DeviceError::InvalidConfig(field)));
    }
    // Zero where zero means something is accepted: a cookie for every handshake, no staging.
    let mut cfg = DeviceConfig::default();
    cfg.handshake_rate_limit = 0;
    cfg.max_staged_packets = 0;
    cfg.mtu = DeviceConfig::MIN_MTU;
    assert_eq!(new(cfg), Ok(()));
}

#[test]
fn a_peer_with_the_devices_own_key_is_refused() {
    let mut us = Device::new(
        our_key(),
        DeviceConfig::default(),
        ChaCha20Rng::seed_from_u64(1),
    );
    let us = us.as_mut().unwrap();
    let own = PeerConfig::new(our_key().public_key());
    assert_eq!(
        us.add_peer(Instant::ZERO, own),
        Err(DeviceError::InvalidConfig("public_key"))
    );
    assert_eq!(us.peer_count(), 0);
}

#[test]
fn the_peer_limit_is_enforced() {
    let mut cfg = DeviceConfig::default();
    cfg.max_peers = 1;
    let mut us = configured(cfg);
    let other = PeerConfig::new(PublicKey::from_bytes([0x44; 32]));
    assert_eq!(
        us.add_peer(Instant::ZERO, other),
        Err(DeviceError::TooManyPeers)
    );
    assert_eq!(us.peer_count(), 1);
}

/// The staging buffer is a per-peer buffer, not an output queue: when it is full the oldest
/// packet makes room, counted as `QueueFull`.
#[test]
fn staged_packets_beyond_the_limit_drop_the_oldest() {
    let mut cfg = DeviceConfig::default();
    cfg.max_staged_packets = 2;
    let mut us = configured(cfg);
    let mut them = boringtun(None, None);
    let now = Instant::from_secs(1);
    let pkts: Vec<_> = (0..3u8).map(|i| ipv4(OUR_IP4, THEIR_IP4, &[i])).collect();
    let init = net(us_send(&mut us, now, &pkts[0]));
    assert_eq!(us_send(&mut us, now, &pkts[1]), Us::Done);
    assert_eq!(us_send(&mut us, now, &pkts[2]), Us::Done);
    assert_eq!(us.stats().drops(DropReason::QueueFull), 1);
    let resp = bt_net(&bt_recv(&mut them, &init)[0]);
    assert_eq!(us_recv(&mut us, now, &resp), Us::Done);
    let source: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let got: Vec<Bt> = drain(&mut us)
        .iter()
        .map(|d| bt_recv(&mut them, d).remove(0))
        .collect();
    assert_eq!(
        got,
        [
            Bt::Tunnel(pkts[1].clone(), source),
            Bt::Tunnel(pkts[2].clone(), source)
        ]
    );
}

#[test]
fn with_no_staging_a_packet_before_the_session_is_dropped_and_counted() {
    let mut cfg = DeviceConfig::default();
    cfg.max_staged_packets = 0;
    let mut us = configured(cfg);
    let mut them = boringtun(None, None);
    let now = Instant::from_secs(1);
    let init = net(us_send(&mut us, now, &ipv4(OUR_IP4, THEIR_IP4, b"lost")));
    assert_eq!(us.stats().drops(DropReason::QueueFull), 1);
    let resp = bt_net(&bt_recv(&mut them, &init)[0]);
    // Nothing staged: the session is confirmed with a keepalive instead.
    let ka = net(us_recv(&mut us, now, &resp));
    assert_eq!(ka.len(), 32);
    assert_eq!(bt_recv(&mut them, &ka)[0], Bt::Done);
    assert!(drain(&mut us).is_empty());
}

/// An output produced while handling input that does not fit is dropped, newest first, and
/// counted; what was queued first still goes out.
#[test]
fn a_full_transmit_queue_drops_the_newest_datagram_and_counts_it() {
    let mut cfg = DeviceConfig::default();
    cfg.queue_capacity = 1;
    let mut us = configured(cfg);
    let mut them = boringtun(None, None);
    let now = Instant::from_secs(1);
    let pkts: Vec<_> = (0..3u8).map(|i| ipv4(OUR_IP4, THEIR_IP4, &[i])).collect();
    let init = net(us_send(&mut us, now, &pkts[0]));
    assert_eq!(us_send(&mut us, now, &pkts[1]), Us::Done);
    assert_eq!(us_send(&mut us, now, &pkts[2]), Us::Done);
    let resp = bt_net(&bt_recv(&mut them, &init)[0]);
    // The response flushes three staged packets into a queue of one.
    assert_eq!(us_recv(&mut us, now, &resp), Us::Done);
    assert_eq!(us.stats().transmits_dropped, 2);
    let out = drain(&mut us);
    assert_eq!(out.len(), 1);
    assert_eq!(
        bt_recv(&mut them, &out[0])[0],
        Bt::Tunnel(pkts[0].clone(), "10.0.0.1".parse().unwrap())
    );
}

#[test]
fn a_full_event_queue_drops_the_newest_event_and_counts_it() {
    let mut cfg = DeviceConfig::default();
    cfg.queue_capacity = 1;
    let mut us = configured(cfg);
    let mut them = boringtun(None, None);
    let now = Instant::from_secs(1);
    let mut buf = vec![0u8; 2048];
    let init = bt_net(&bt(them.format_handshake_initiation(&mut buf, false)));
    let resp = net(us_recv(&mut us, now, &init));
    let ka = bt_net(&bt_recv(&mut them, &resp)[0]);
    assert_eq!(us_recv(&mut us, now, &ka), Us::Done);
    // The peer roams while the handshake event still waits: no room for the second event.
    let moved = addr("203.0.113.9:7777");
    let dg = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"roamed")));
    assert!(matches!(
        us_recv_from(&mut us, now, moved, &dg),
        Us::Tunnel(..)
    ));
    assert_eq!(us.stats().events_dropped, 1);
    assert!(matches!(
        us.poll_event(),
        Some(DeviceEvent::HandshakeCompleted {
            initiator: false,
            ..
        })
    ));
    assert_eq!(us.poll_event(), None);
    // Only the report was lost: the endpoint did move.
    assert_eq!(us.peer_status(&their_pub()).unwrap().endpoint, Some(moved));
}

#[test]
fn a_wg_quick_file_becomes_a_device_that_talks_to_boringtun() {
    let text = format!(
        "[Interface]\nPrivateKey = {}\nMTU = 1380\n\
         [Peer]\nPublicKey = {}\nAllowedIPs = 10.0.0.2/32\nEndpoint = {THEIRS}\n",
        sealwire::crypto::base64::encode(&our_key().to_bytes()),
        their_pub().to_base64()
    );
    let file = WgQuick::parse(&text).unwrap();
    let mut us = file
        .device(Instant::ZERO, ChaCha20Rng::seed_from_u64(41))
        .unwrap();
    us.set_wall_clock(Instant::ZERO, WallTime::from_unix(WALL, 0));
    let mut them = boringtun(None, None);
    let now = Instant::from_secs(1);
    let pkt = ipv4(OUR_IP4, THEIR_IP4, b"from a file");
    let init = net(us_send(&mut us, now, &pkt));
    let resp = bt_net(&bt_recv(&mut them, &init)[0]);
    assert_eq!(us_recv(&mut us, now, &resp), Us::Done);
    let staged = drain(&mut us);
    assert_eq!(
        bt_recv(&mut them, &staged[0])[0],
        Bt::Tunnel(pkt, "10.0.0.1".parse().unwrap())
    );
    // The file's MTU reached the device: 1378 bytes pad to 1380, not to 1392.
    let big = ipv4(OUR_IP4, THEIR_IP4, &[0u8; 1378 - 28]);
    assert_eq!(net(us_send(&mut us, now, &big)).len(), 1380 + 32);
    // An endpoint given as a name must be resolved before a device is made.
    let named = WgQuick::parse(&text.replace(THEIRS, "vpn.example.com:51820")).unwrap();
    let refused = named.device(Instant::ZERO, ChaCha20Rng::seed_from_u64(42));
    assert_eq!(refused.err(), Some(DeviceError::InvalidConfig("endpoint")));
}

// ---------------------------------------------------------------------- backends

fn ours(seed: u64) -> UserspaceBackend<ChaCha20Rng> {
    let key = StaticSecret::from_bytes([seed as u8 + 1; 32]);
    UserspaceBackend::new(
        key,
        DeviceConfig::default(),
        ChaCha20Rng::seed_from_u64(seed),
    )
    .unwrap()
}

#[test]
fn the_userspace_backend_passes_the_conformance_suite() {
    let mut n = 0;
    run_conformance(|| {
        n += 1;
        ours(n)
    })
    .unwrap();
}

/// Wraps our backend but lies about one rule each, so the suite must catch it.
struct Broken {
    inner: UserspaceBackend<ChaCha20Rng>,
    flaw: u8,
}

impl TunnelBackend for Broken {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn public_key(&self) -> PublicKey {
        self.inner.public_key()
    }
    fn start(&mut self, now: Instant) -> Result<(), BackendError> {
        let r = self.inner.start(now);
        if self.flaw == 0 && r == Err(BackendError::AlreadyRunning) {
            return Ok(());
        }
        r
    }
    fn shutdown(&mut self) -> Result<(), BackendError> {
        self.inner.shutdown()
    }
    fn configure_peer(&mut self, now: Instant, peer: PeerConfig) -> Result<(), BackendError> {
        self.inner.configure_peer(now, peer)
    }
    fn remove_peer(&mut self, k: &PublicKey) -> Result<(), BackendError> {
        if self.flaw == 1 {
            return Ok(());
        }
        self.inner.remove_peer(k)
    }
    fn peer_endpoint(&self, k: &PublicKey) -> Result<Option<SocketAddr>, BackendError> {
        self.inner.peer_endpoint(k)
    }
    fn latest_handshake(&self, k: &PublicKey) -> Result<Option<Instant>, BackendError> {
        self.inner.latest_handshake(k)
    }
    fn replace_routes(&mut self, now: Instant, r: &[Route]) -> Result<(), BackendError> {
        if self.flaw == 2 {
            return Ok(());
        }
        self.inner.replace_routes(now, r)
    }
    fn set_exit_mode(&mut self, now: Instant, m: ExitMode) -> Result<(), BackendError> {
        self.inner.set_exit_mode(now, m)
    }
    fn stats(&self) -> Result<BackendStats, BackendError> {
        self.inner.stats()
    }
}

#[test]
fn broken_backends_fail_the_conformance_suite() {
    for flaw in 0..3u8 {
        let r = run_conformance(|| Broken {
            inner: ours(7),
            flaw,
        });
        assert!(r.is_err(), "flaw {flaw} went unnoticed");
    }
}

#[test]
fn backend_configured_device_handshakes_with_boringtun_and_reports_it() {
    let rng = ChaCha20Rng::seed_from_u64(3);
    let mut b = UserspaceBackend::new(our_key(), DeviceConfig::default(), rng).unwrap();
    b.set_wall_clock(Instant::ZERO, WallTime::from_unix(WALL, 0));
    let mut spec = PeerConfig::new(their_pub());
    spec.endpoint = Some(addr(THEIRS));
    spec.allowed_ips.push("10.0.0.2/32".parse().unwrap());
    b.configure_peer(Instant::ZERO, spec).unwrap();
    b.start(Instant::ZERO).unwrap();
    // Exit through boringtun: an Internet destination now routes to it.
    b.set_exit_mode(Instant::ZERO, ExitMode::UseExit { peer: their_pub() })
        .unwrap();
    let mut them = boringtun(None, None);
    let now = Instant::from_secs(2);
    let pkt = ipv4(OUR_IP4, [1, 1, 1, 1], b"via exit");
    let mut out = vec![0u8; 2048];
    let Ok(Action::WriteToNetwork { len, .. }) = b.device_mut().encapsulate(now, &pkt, &mut out)
    else {
        panic!("no initiation")
    };
    let resp = bt_net(&bt_recv(&mut them, &out[..len])[0]);
    let mut out2 = vec![0u8; 2048];
    let r = b
        .device_mut()
        .decapsulate(now, addr(THEIRS), &resp, &mut out2);
    assert_eq!(r, Ok(Action::Done));
    let t = b.device_mut().poll_transmit().unwrap();
    assert_eq!(
        bt_recv(&mut them, &t.payload)[0],
        Bt::Tunnel(pkt, "10.0.0.1".parse().unwrap())
    );
    assert_eq!(b.latest_handshake(&their_pub()), Ok(Some(now)));
    assert_eq!(b.stats().unwrap().handshakes, 1);
    // Exit off: the same destination has no route any more.
    b.set_exit_mode(now, ExitMode::Off).unwrap();
    assert!(b
        .device_mut()
        .encapsulate(now, &ipv4(OUR_IP4, [1, 1, 1, 1], b"x"), &mut out)
        .is_err());
}

// ---------------------------------------------------------------- no allocation

#[test]
fn encapsulate_and_decapsulate_allocate_nothing() {
    let (ka, kb) = (
        StaticSecret::from_bytes([1; 32]),
        StaticSecret::from_bytes([2; 32]),
    );
    let (pa, pb) = (ka.public_key(), kb.public_key());
    let mut a = Device::new(ka, DeviceConfig::default(), ChaCha20Rng::seed_from_u64(1)).unwrap();
    let mut b = Device::new(kb, DeviceConfig::default(), ChaCha20Rng::seed_from_u64(2)).unwrap();
    let addr_a = "192.0.2.1:51820".parse().unwrap();
    let addr_b = "192.0.2.2:51820".parse().unwrap();
    let mut peer_b = PeerConfig::new(pb);
    peer_b.endpoint = Some(addr_b);
    peer_b.allowed_ips.push("10.0.0.2/32".parse().unwrap());
    a.add_peer(Instant::ZERO, peer_b).unwrap();
    let mut peer_a = PeerConfig::new(pa);
    peer_a.endpoint = Some(addr_a);
    peer_a.allowed_ips.push("10.0.0.1/32".parse().unwrap());
    b.add_peer(Instant::ZERO, peer_a).unwrap();
    let now = Instant::from_secs(1);
    a.set_wall_clock(now, WallTime::from_unix(1_700_000_000, 0));
    b.set_wall_clock(now, WallTime::from_unix(1_700_000_000, 0));

    // A 1420-byte IPv4 packet 10.0.0.1 -> 10.0.0.2.
    let mut ip = vec![0u8; 1420];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&1420u16.to_be_bytes());
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let (mut buf, mut out) = (vec![0u8; 2048], vec![0u8; 2048]);

    // Handshake (allocations allowed here: sessions are created).
    let Ok(Action::WriteToNetwork { len, .. }) = a.encapsulate(now, &ip, &mut buf) else {
        panic!("initiation")
    };
    let Ok(Action::WriteToNetwork { len, .. }) = b.decapsulate(now, addr_a, &buf[..len], &mut out)
    else {
        panic!("response")
    };
    let _ = a.decapsulate(now, addr_b, &out[..len], &mut buf).unwrap();
    let staged = a.poll_transmit().expect("staged packet").payload.to_vec();
    let _ = b.decapsulate(now, addr_a, &staged, &mut out).unwrap();
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}

    let mut delivered = 0;
    let info = measure(|| {
        for i in 0..100u64 {
            let t = now + Duration::from_millis(i);
            let Ok(Action::WriteToNetwork { len, .. }) = a.encapsulate(t, &ip, &mut buf) else {
                panic!("data")
            };
            if let Ok(Action::WriteToTunnel { len, .. }) =
                b.decapsulate(t, addr_a, &buf[..len], &mut out)
            {
                delivered += usize::from(out[..len] == ip[..]);
            }
        }
    });
    assert_eq!(delivered, 100, "every packet arrives");
    assert_eq!(info.count_total, 0, "tunnel data path allocated: {info:?}");

    // The zero-copy variants: the packet is placed at buf[16..] and sealed there, and the
    // datagram is opened where it lies.
    let mut delivered = 0;
    let info = measure(|| {
        for i in 100..200u64 {
            let t = now + Duration::from_millis(i);
            buf[16..16 + ip.len()].copy_from_slice(&ip);
            let Ok(Action::WriteToNetwork { len, .. }) =
                a.encapsulate_in_place(t, &mut buf, ip.len())
            else {
                panic!("data")
            };
            if let Ok(Action::WriteToTunnel { len, .. }) =
                b.decapsulate_in_place(t, addr_a, &mut buf, len)
            {
                delivered += usize::from(buf[16..16 + len] == ip[..]);
            }
        }
    });
    assert_eq!(delivered, 100, "every packet arrives");
    assert_eq!(
        info.count_total, 0,
        "in-place data path allocated: {info:?}"
    );

    // The batch pair: 16 packets sealed into one GSO buffer, opened as one GRO buffer.
    let run = vec![ip.clone(); 16];
    let mut gso = vec![0u8; 16 * 1452];
    let mut delivered = 0;
    let info = measure(|| {
        for i in 200..210u64 {
            let t = now + Duration::from_millis(i);
            let batch = a.encapsulate_batch(t, &run, &mut gso).unwrap();
            assert_eq!((batch.consumed, batch.segment_size), (16, 1452));
            let Action::WriteToNetwork { len, .. } = batch.action else {
                panic!("data")
            };
            for (r, seg) in b.decapsulate_batch(t, addr_a, &mut gso[..len], batch.segment_size) {
                if let Ok(Action::WriteToTunnel { len, .. }) = r {
                    delivered += usize::from(seg[16..16 + len] == ip[..]);
                }
            }
        }
    });
    assert_eq!(delivered, 160, "every packet arrives");
    assert_eq!(info.count_total, 0, "batch data path allocated: {info:?}");
}
