//! Device behaviour against boringtun peers: bad input is dropped with a counted reason and
//! leaves the peer untouched, cryptokey routing both ways, roaming, timers on exact deadlines.

mod tunnel_common;

use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
use sealwire::crypto::x25519::StaticSecret;
use sealwire::time::{Duration, Instant};
use sealwire::tunnel::{
    timers, Device, DeviceConfig, DropReason, Error, Event, PeerConfig, PeerStatus, WallTime,
};
use tunnel_common::*;

type Dev = Device<ChaCha20Rng>;

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

fn status(us: &Dev, now: Instant) -> PeerStatus {
    us.peer_status(now, &their_pub()).unwrap()
}

fn assert_dropped(us: &mut Dev, now: Instant, dg: &[u8], reason: DropReason) {
    let before = status(us, now);
    let count = us.stats().drops(reason);
    assert_eq!(us_recv(us, now, dg), Us::Err(Error::Dropped(reason)));
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
        Us::Err(Error::Dropped(DropReason::UnknownPeer))
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
        r == Us::Err(Error::Dropped(DropReason::InitiationFlood))
            || r == Us::Err(Error::Dropped(DropReason::ReplayedTimestamp)),
        "{r:?}"
    );
    assert_eq!(status(&us, now), before);
}

#[test]
fn roaming_follows_authenticated_packets_only() {
    let (mut us, mut them, now) = established();
    assert_eq!(status(&us, now).endpoint, Some(addr(THEIRS)));
    let moved = addr("203.0.113.9:7777");
    // Garbage from elsewhere does not move the endpoint.
    let mut junk = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"a")));
    let last = junk.len() - 1;
    junk[last] ^= 1;
    assert!(matches!(
        us_recv_from(&mut us, now, moved, &junk),
        Us::Err(_)
    ));
    assert_eq!(status(&us, now).endpoint, Some(addr(THEIRS)));
    // An authenticated packet from the new address does.
    let good = bt_net(&bt_send(&mut them, &ipv4(THEIR_IP4, OUR_IP4, b"b")));
    while us.poll_event().is_some() {}
    assert!(matches!(
        us_recv_from(&mut us, now, moved, &good),
        Us::Tunnel(..)
    ));
    assert_eq!(status(&us, now).endpoint, Some(moved));
    assert_eq!(
        us.poll_event(),
        Some(Event::EndpointChanged {
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
        Err(Error::BufferTooSmall { needed })
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
        Err(Error::BufferTooSmall { .. })
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
        Us::Err(Error::Dropped(DropReason::NoRoute))
    );
    assert_eq!(
        us_send(&mut us, now, &[0x10, 0, 0]),
        Us::Err(Error::Dropped(DropReason::Malformed))
    );
    assert_eq!(us.stats().drops(DropReason::NoRoute), 1);
}

/// Three boringtun peers with distinct keys and prefixes behind one device.
#[test]
fn many_peers_longest_prefix_routing_and_identity_by_static_key() {
    let mut us = Device::new(DeviceConfig::new(our_key()), ChaCha20Rng::seed_from_u64(11));
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
        Us::Err(Error::Dropped(DropReason::SourceNotAllowed))
    );
    let dg = bt_net(&bt_send(&mut peers[1], &ipv4([10, 1, 2, 7], OUR_IP4, b"x")));
    assert!(matches!(
        us_recv_from(&mut us, now, shared_src, &dg),
        Us::Tunnel(..)
    ));
}

#[test]
fn poll_timeout_with_ten_thousand_peers_is_the_earliest_deadline() {
    let mut us = Device::new(DeviceConfig::new(our_key()), ChaCha20Rng::seed_from_u64(12));
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
    let mut us = Device::new(DeviceConfig::new(our_key()), ChaCha20Rng::seed_from_u64(13));
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
