//! Datagram and packet input to a `Device` with two peers, one with an established session:
//! any sequence of operations must give typed drops (never a panic), never deliver an inner
//! packet whose source is outside the sender's AllowedIPs, deliver the peer's genuine packets
//! intact, and leave the established session usable.
//!
//! The two devices are built and their handshake run once; every input starts from a clone of
//! that state (`Device` is `Clone` only in cargo-fuzz builds, `--cfg fuzzing`), so an input
//! costs its own operations, not two key setups and a handshake.
//!
//! Input: a sequence of records `op (1) | len (2, LE) | bytes`; `op % 8` =
//! 0: datagram from the peer's endpoint, 1: datagram from another address (both through
//! `decapsulate` for an even `len`, `decapsulate_in_place` for `len % 4 == 1`, else the
//! worker's steps `decapsulate_begin`/`Opening::open`/`decapsulate_finish`), 2: outbound IP packet
//! (through `encapsulate` for an even `len`, else `encapsulate_in_place`), 3: advance time by
//! `len` milliseconds and run timers, 4: the peer sends `bytes` in a genuine packet (from a
//! new address for an odd `len`: roaming), 5: A sends `bytes` in a packet to the peer, which
//! opens it (data both ways), 6: the peer's genuine packet with `bytes` XORed into it
//! (tampered: authenticated drops; in steps for an odd `len`), 7: the queued datagrams of both sides are delivered (a
//! handshake or cookie exchange the timers started completes). At most 32 records are read.
#![no_main]

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::crypto::x25519::StaticSecret;
use sealwire::time::{Duration, Instant, WallTime};
use sealwire::tunnel::{Action, Begun, Device, DeviceConfig, DeviceError, PeerConfig};

type Dev = Device<ChaCha20Rng>;

const A_ADDR: &str = "192.0.2.1:51820";
const B_ADDR: &str = "192.0.2.2:51820";
const B_ROAMED: &str = "198.51.100.9:40000";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn device(key: u8, peer: u8, allowed: &str, endpoint: &str, seed: u64) -> Dev {
    let mut d = Device::new(
        StaticSecret::from_bytes([key; 32]),
        DeviceConfig::default(),
        ChaCha20Rng::seed_from_u64(seed),
    )
    .expect("the default configuration is valid");
    let mut p = PeerConfig::new(StaticSecret::from_bytes([peer; 32]).public_key());
    p.allowed_ips.push(allowed.parse().expect("cidr"));
    p.endpoint = Some(endpoint.parse().expect("endpoint"));
    d.add_peer(Instant::ZERO, p).expect("peer");
    // Far in the future: initiations recorded in the seed corpus are then old, i.e. replays.
    d.set_wall_clock(Instant::ZERO, WallTime::from_unix(4_102_444_800, 0));
    d
}

/// A minimal IPv4 packet from `src` to `dst` (header checksum is not checked by WireGuard).
fn ipv4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0,
        0,
        64,
        17,
        0,
        0,
    ];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// Delivers datagrams between A and B (replies written into the output buffer and queued
/// transmits alike) until both are quiet; returns the inner packets A wrote to its tunnel.
/// B's datagrams reach A from `b_from`.
fn pump(
    a: &mut Dev,
    b: &mut Dev,
    now: Instant,
    b_from: SocketAddr,
    mut to_a: Vec<Vec<u8>>,
) -> Vec<Vec<u8>> {
    let mut to_b: Vec<Vec<u8>> = Vec::new();
    let mut delivered = Vec::new();
    let mut out = vec![0u8; 2048];
    for _ in 0..64 {
        while let Some(t) = a.poll_transmit() {
            to_b.push(t.payload.to_vec());
        }
        while let Some(t) = b.poll_transmit() {
            to_a.push(t.payload.to_vec());
        }
        if to_a.is_empty() && to_b.is_empty() {
            break;
        }
        for d in std::mem::take(&mut to_b) {
            if let Ok(Action::WriteToNetwork { len, .. }) =
                b.decapsulate(now, addr(A_ADDR), &d, &mut out)
            {
                to_a.push(out[..len].to_vec());
            }
        }
        for d in std::mem::take(&mut to_a) {
            match a.decapsulate(now, b_from, &d, &mut out) {
                Ok(Action::WriteToNetwork { len, .. }) => to_b.push(out[..len].to_vec()),
                Ok(Action::WriteToTunnel { len, source }) => {
                    assert_eq!(source, IpAddr::from([10, 0, 0, 2]), "cryptokey routing");
                    delivered.push(out[..len].to_vec())
                }
                _ => {}
            }
        }
    }
    delivered
}

/// `decapsulate_in_place` in the steps a worker takes (`decapsulate_begin`, `Opening::open`,
/// `decapsulate_finish`) on the datagram `buf`.
fn split_open(
    a: &mut Dev,
    now: Instant,
    src: SocketAddr,
    buf: &mut [u8],
) -> Result<Action, DeviceError> {
    let n = buf.len();
    match a.decapsulate_begin(now, src, buf, n)? {
        Begun::Done(action) => Ok(action),
        Begun::Open(opening) => {
            let opened = opening.open(buf);
            a.decapsulate_finish(now, src, opened, buf)
        }
    }
}

/// B seals `packet` (staging it behind a handshake if needed): its first datagram, if any.
fn b_seals(b: &mut Dev, now: Instant, packet: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![0u8; 2048];
    match b.encapsulate(now, packet, &mut out) {
        Ok(Action::WriteToNetwork { len, .. }) => vec![out[..len].to_vec()],
        _ => Vec::new(),
    }
}

/// B sends `packet` from `from`; returns what reaches A's tunnel.
fn b_sends(
    a: &mut Dev,
    b: &mut Dev,
    now: Instant,
    from: SocketAddr,
    packet: &[u8],
) -> Vec<Vec<u8>> {
    let first = b_seals(b, now, packet);
    pump(a, b, now, from, first)
}

/// A (the device under test, peer B at 10.0.0.2/32, a second peer never handshaken) and B
/// (its peer), with an established session.
struct World {
    a: Dev,
    b: Dev,
}

fn established() -> World {
    let mut a = device(0x11, 0x22, "10.0.0.2/32", B_ADDR, 1);
    let mut b = device(0x22, 0x11, "10.0.0.1/32", A_ADDR, 2);
    let mut p = PeerConfig::new(StaticSecret::from_bytes([0x33; 32]).public_key());
    p.allowed_ips.push("10.0.0.3/32".parse().expect("cidr"));
    a.add_peer(Instant::ZERO, p).expect("peer");
    // Establish A <-> B: B sends a packet, which stages it and starts a handshake.
    let hello = ipv4([10, 0, 0, 2], [10, 0, 0, 1], b"hello");
    let got = b_sends(&mut a, &mut b, Instant::ZERO, addr(B_ADDR), &hello);
    assert_eq!(got, vec![hello], "A and B connect");
    World { a, b }
}

static ESTABLISHED: OnceLock<World> = OnceLock::new();

/// Records read per input; the rest of a longer input is ignored.
const MAX_OPS: usize = 32;

fuzz_target!(|data: &[u8]| {
    let world = ESTABLISHED.get_or_init(established);
    let (mut a, mut b) = (world.a.clone(), world.b.clone());
    let mut now = Instant::ZERO;
    let mut out = vec![0u8; 2048];
    // Every packet B was asked to send: what comes out of A's tunnel must be one of them,
    // intact (staged ones arrive later, after a handshake).
    let mut b_packets: Vec<Vec<u8>> = Vec::new();
    let genuine = |delivered: Vec<Vec<u8>>, sent: &[Vec<u8>]| {
        for got in delivered {
            assert!(
                sent.contains(&got),
                "a packet B never sent came out of A's tunnel"
            );
        }
    };

    let mut rest = data;
    let mut ops = 0;
    // At most MAX_OPS records: deep states are a few operations away from the established
    // start, and a bounded input keeps every execution cheap.
    while let ([op, l0, l1, tail @ ..], true) = (rest, ops < MAX_OPS) {
        ops += 1;
        let len = usize::from(u16::from_le_bytes([*l0, *l1]));
        let (bytes, next) = tail.split_at(len.min(tail.len()));
        rest = next;
        match op % 8 {
            0 | 1 => {
                let src = if op % 8 == 0 {
                    addr(B_ADDR)
                } else {
                    addr("198.51.100.7:4444")
                };
                // Odd lengths go through the zero-copy path, the datagram in a buffer of
                // exactly its size.
                let mut in_place = bytes.to_vec();
                let result = if len % 2 == 0 {
                    a.decapsulate(now, src, bytes, &mut out)
                } else if len % 4 == 1 {
                    a.decapsulate_in_place(now, src, &mut in_place, bytes.len())
                } else {
                    split_open(&mut a, now, src, &mut in_place)
                };
                if let Ok(Action::WriteToTunnel { len, source }) = result {
                    // Cryptokey routing: only B's inner address can come out of the tunnel
                    // (nobody else holds a session).
                    assert_eq!(source, IpAddr::from([10, 0, 0, 2]));
                    assert!(len <= out.len());
                    assert!(len + 32 <= bytes.len());
                }
            }
            2 if len % 2 == 0 => {
                let _ = a.encapsulate(now, bytes, &mut out);
            }
            2 => {
                // The zero-copy path, with buffers from exactly sized to short: a too-short
                // buffer is an error that leaves the buffer as it was.
                let cap = 16 + bytes.len() + (len / 2) % 48;
                let mut buf = vec![0u8; cap];
                buf[16..16 + bytes.len()].copy_from_slice(bytes);
                let before = buf.clone();
                match a.encapsulate_in_place(now, &mut buf, bytes.len()) {
                    Ok(Action::WriteToNetwork { len, .. }) => assert!(len <= cap),
                    Err(sealwire::tunnel::DeviceError::BufferTooSmall { needed }) => {
                        assert!(needed > cap);
                        assert_eq!(buf, before);
                        // A buffer of the size asked for is enough.
                        let mut bigger = vec![0u8; needed.max(16 + bytes.len())];
                        bigger[16..16 + bytes.len()].copy_from_slice(bytes);
                        assert!(!matches!(
                            a.encapsulate_in_place(now, &mut bigger, bytes.len()),
                            Err(sealwire::tunnel::DeviceError::BufferTooSmall { .. })
                        ));
                    }
                    _ => {}
                }
            }
            3 => {
                now += Duration::from_millis(len as u64);
                a.handle_timeout(now);
                b.handle_timeout(now);
            }
            4 => {
                // A genuine packet from B: delivered intact, whatever A went through.
                let from = if len % 2 == 0 {
                    addr(B_ADDR)
                } else {
                    addr(B_ROAMED)
                };
                let packet = ipv4([10, 0, 0, 2], [10, 0, 0, 1], bytes);
                b_packets.push(packet.clone());
                genuine(b_sends(&mut a, &mut b, now, from, &packet), &b_packets);
            }
            5 => {
                // A to B, opened by B (in place for an odd length); B's reply (when A had to
                // start a handshake) goes back to A.
                let packet = ipv4([10, 0, 0, 1], [10, 0, 0, 2], bytes);
                let mut replies = Vec::new();
                if let Ok(Action::WriteToNetwork { len: n, .. }) =
                    a.encapsulate(now, &packet, &mut out)
                {
                    let mut dg = out[..n].to_vec();
                    let mut opened = vec![0u8; 2048];
                    let (result, buf) = if len % 2 == 0 {
                        (b.decapsulate(now, addr(A_ADDR), &dg, &mut opened), &opened)
                    } else {
                        let n = dg.len();
                        (b.decapsulate_in_place(now, addr(A_ADDR), &mut dg, n), &dg)
                    };
                    match result {
                        Ok(Action::WriteToTunnel { len: m, source }) => {
                            assert_eq!(source, IpAddr::from([10, 0, 0, 1]));
                            let at = if len % 2 == 0 { 0 } else { 16 };
                            assert_eq!(&buf[at..at + m], &packet[..], "A's packet arrives intact");
                        }
                        Ok(Action::WriteToNetwork { len: m, .. }) => {
                            replies.push(buf[..m].to_vec())
                        }
                        _ => {}
                    }
                }
                genuine(pump(&mut a, &mut b, now, addr(B_ADDR), replies), &b_packets);
            }
            6 => {
                // B's genuine datagram, tampered with: dropped unless untouched.
                let packet = ipv4([10, 0, 0, 2], [10, 0, 0, 1], b"tamper with me");
                b_packets.push(packet.clone());
                for mut dg in b_seals(&mut b, now, &packet) {
                    let n = dg.len().max(1);
                    for (i, x) in bytes.iter().enumerate() {
                        if let Some(d) = dg.get_mut(i % n) {
                            *d ^= x;
                        }
                    }
                    let n = dg.len();
                    let result = if len % 2 == 0 {
                        a.decapsulate_in_place(now, addr(B_ADDR), &mut dg, n)
                    } else {
                        split_open(&mut a, now, addr(B_ADDR), &mut dg)
                    };
                    if let Ok(Action::WriteToTunnel { len, .. }) = result {
                        assert_eq!(&dg[16..16 + len], &packet[..], "a forgery was accepted");
                    }
                }
            }
            _ => {
                genuine(
                    pump(&mut a, &mut b, now, addr(B_ADDR), Vec::new()),
                    &b_packets,
                );
            }
        }
        while a.poll_transmit().is_some() {}
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
    }

    // B's traffic still reaches A: at once over the same session, or over a new one that B's
    // timers establish (cookies under load, retransmissions and expiry included).
    let packet = ipv4([10, 0, 0, 2], [10, 0, 0, 1], b"after fuzz");
    let mut delivered = b_sends(&mut a, &mut b, now, addr(B_ADDR), &packet).contains(&packet);
    for _ in 0..40 {
        if delivered {
            break;
        }
        now += Duration::from_secs(6);
        a.handle_timeout(now);
        b.handle_timeout(now);
        delivered = b_sends(&mut a, &mut b, now, addr(B_ADDR), &packet).contains(&packet);
    }
    assert!(delivered, "the peer's traffic gets through after any input");
});
