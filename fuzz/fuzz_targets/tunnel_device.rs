//! Datagram and packet input to a `Device` with two peers, one with an established session:
//! any sequence of operations must give typed drops (never a panic), never deliver an inner
//! packet whose source is outside the sender's AllowedIPs, and leave the established session
//! usable.
//!
//! Input: a sequence of records `op (1) | len (2, LE) | bytes`; `op % 4` = 0: datagram from
//! the peer's endpoint, 1: datagram from another address (both through `decapsulate` for an
//! even `len`, else `decapsulate_in_place`), 2: outbound IP packet (through
//! `encapsulate` for an even `len`, else `encapsulate_in_place`), 3: advance time by `len`
//! milliseconds and run timers.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::crypto::x25519::StaticSecret;
use sealwire::time::{Duration, Instant, WallTime};
use sealwire::tunnel::{Action, Device, DeviceConfig, PeerConfig};

const A_ADDR: &str = "192.0.2.1:51820";
const B_ADDR: &str = "192.0.2.2:51820";

fn device(key: u8, peer: u8, allowed: &str, endpoint: &str, seed: u64) -> Device<ChaCha20Rng> {
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
fn pump(
    a: &mut Device<ChaCha20Rng>,
    b: &mut Device<ChaCha20Rng>,
    now: Instant,
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
                b.decapsulate(now, A_ADDR.parse().expect("addr"), &d, &mut out)
            {
                to_a.push(out[..len].to_vec());
            }
        }
        for d in std::mem::take(&mut to_a) {
            match a.decapsulate(now, B_ADDR.parse().expect("addr"), &d, &mut out) {
                Ok(Action::WriteToNetwork { len, .. }) => to_b.push(out[..len].to_vec()),
                Ok(Action::WriteToTunnel { len, .. }) => delivered.push(out[..len].to_vec()),
                _ => {}
            }
        }
    }
    delivered
}

/// B sends `packet` (staging it behind a handshake if needed); returns what reaches A's tunnel.
fn b_sends(
    a: &mut Device<ChaCha20Rng>,
    b: &mut Device<ChaCha20Rng>,
    now: Instant,
    packet: &[u8],
) -> Vec<Vec<u8>> {
    let mut out = vec![0u8; 2048];
    let first = match b.encapsulate(now, packet, &mut out) {
        Ok(Action::WriteToNetwork { len, .. }) => vec![out[..len].to_vec()],
        _ => Vec::new(),
    };
    pump(a, b, now, first)
}

fuzz_target!(|data: &[u8]| {
    // A = the device under test (peer B at 10.0.0.2/32); B = its peer.
    let mut a = device(0x11, 0x22, "10.0.0.2/32", B_ADDR, 1);
    let mut b = device(0x22, 0x11, "10.0.0.1/32", A_ADDR, 2);
    // Second peer on A, never handshaken.
    let mut p = PeerConfig::new(StaticSecret::from_bytes([0x33; 32]).public_key());
    p.allowed_ips.push("10.0.0.3/32".parse().expect("cidr"));
    a.add_peer(Instant::ZERO, p).expect("peer");

    let mut now = Instant::ZERO;
    let mut out = vec![0u8; 2048];
    // Establish A <-> B: B sends a packet, which stages it and starts a handshake.
    let hello = ipv4([10, 0, 0, 2], [10, 0, 0, 1], b"hello");
    assert_eq!(
        b_sends(&mut a, &mut b, now, &hello),
        vec![hello],
        "A and B connect"
    );

    let mut rest = data;
    while let [op, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*l0, *l1]));
        let (bytes, next) = tail.split_at(len.min(tail.len()));
        rest = next;
        match op % 4 {
            0 | 1 => {
                let src: SocketAddr = if op % 4 == 0 {
                    B_ADDR.parse().expect("addr")
                } else {
                    "198.51.100.7:4444".parse().expect("addr")
                };
                // Odd lengths go through the zero-copy path, the datagram in a buffer of
                // exactly its size.
                let mut in_place = bytes.to_vec();
                let result = if len % 2 == 0 {
                    a.decapsulate(now, src, bytes, &mut out)
                } else {
                    a.decapsulate_in_place(now, src, &mut in_place, bytes.len())
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
            _ => {
                now += Duration::from_millis(len as u64);
                a.handle_timeout(now);
                b.handle_timeout(now);
            }
        }
        while a.poll_transmit().is_some() {}
        while a.poll_event().is_some() {}
    }

    // B's traffic still reaches A: over the same session, or over a new one that B's timers
    // establish (cookies under load, retransmissions and expiry included).
    let packet = ipv4([10, 0, 0, 2], [10, 0, 0, 1], b"after fuzz");
    let mut delivered = false;
    for _ in 0..40 {
        now += Duration::from_secs(6);
        a.handle_timeout(now);
        b.handle_timeout(now);
        delivered = b_sends(&mut a, &mut b, now, &packet).contains(&packet);
        if delivered {
            break;
        }
    }
    assert!(delivered, "the peer's traffic gets through after any input");
});
