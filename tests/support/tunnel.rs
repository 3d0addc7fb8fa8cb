//! Shared helpers for the tunnel tests (included by each `tests/tunnel_*.rs` as
//! `mod support { pub mod tunnel; }`): IP packet builders, our device and a boringtun peer
//! with fixed keys, and owned views of both sides' outputs.
#![allow(dead_code)]

use boringtun::noise::{rate_limiter::RateLimiter, Tunn, TunnResult};
use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
use sealwire::crypto::x25519::{PublicKey, StaticSecret};
use sealwire::time::{Instant, WallTime};
use sealwire::tunnel::{Action, Device, DeviceConfig, DeviceError, PeerConfig};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub const OURS: &str = "192.0.2.1:51820";
pub const THEIRS: &str = "198.51.100.7:40000";
pub const OUR_IP4: [u8; 4] = [10, 0, 0, 1];
pub const THEIR_IP4: [u8; 4] = [10, 0, 0, 2];
pub const OUR_IP6: &str = "fd00::1";
pub const THEIR_IP6: &str = "fd00::2";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn checksum(h: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in h.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A valid IPv4/UDP packet with a correct header checksum.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&1234u16.to_be_bytes());
    p[22..24].copy_from_slice(&5678u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

/// A valid IPv6/UDP packet.
pub fn ipv6(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    let s: std::net::Ipv6Addr = src.parse().unwrap();
    let d: std::net::Ipv6Addr = dst.parse().unwrap();
    let plen = 8 + payload.len();
    let mut p = vec![0u8; 40 + plen];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&s.octets());
    p[24..40].copy_from_slice(&d.octets());
    p[40..42].copy_from_slice(&1234u16.to_be_bytes());
    p[42..44].copy_from_slice(&5678u16.to_be_bytes());
    p[44..46].copy_from_slice(&(plen as u16).to_be_bytes());
    p[48..].copy_from_slice(payload);
    p
}

pub fn our_key() -> StaticSecret {
    StaticSecret::from_bytes([0x11; 32])
}
pub fn their_key_bytes() -> [u8; 32] {
    [0x22; 32]
}

pub const WALL: u64 = 1_750_000_000;

/// Our device with the boringtun peer configured.
pub fn our_device(psk: Option<[u8; 32]>, seed: u64, rate_limit: u32) -> Device<ChaCha20Rng> {
    let mut cfg = DeviceConfig::default();
    cfg.handshake_rate_limit = rate_limit;
    let mut d = Device::new(our_key(), cfg, ChaCha20Rng::seed_from_u64(seed)).unwrap();
    let their_pub = StaticSecret::from_bytes(their_key_bytes()).public_key();
    let mut p = PeerConfig::new(their_pub);
    p.endpoint = Some(addr(THEIRS));
    p.preshared_key = psk.map(sealwire::crypto::SecretBytes::new);
    p.allowed_ips.push("10.0.0.2/32".parse().unwrap());
    p.allowed_ips.push("fd00::2/128".parse().unwrap());
    d.add_peer(Instant::ZERO, p).unwrap();
    d.set_wall_clock(Instant::ZERO, WallTime::from_unix(WALL, 0));
    d
}

pub fn their_pub() -> PublicKey {
    StaticSecret::from_bytes(their_key_bytes()).public_key()
}

/// boringtun's side; `limit` = Some(n) gives it a shared rate limiter of n handshakes.
pub fn boringtun(psk: Option<[u8; 32]>, limit: Option<u64>) -> Tunn {
    boringtun_keyed(their_key_bytes(), psk, limit)
}

/// A boringtun peer with its own static key `key` (talking to our static key).
pub fn boringtun_keyed(key: [u8; 32], psk: Option<[u8; 32]>, limit: Option<u64>) -> Tunn {
    let sk = boringtun::x25519::StaticSecret::from(key);
    let ours = boringtun::x25519::PublicKey::from(*our_key().public_key().as_bytes());
    let own_pub = boringtun::x25519::PublicKey::from(&sk);
    let rl = limit.map(|l| Arc::new(RateLimiter::new(&own_pub, l)));
    Tunn::new(sk, ours, psk, None, 7, rl)
}

/// boringtun's output, owned.
#[derive(Debug, PartialEq)]
pub enum Bt {
    Done,
    Network(Vec<u8>),
    Tunnel(Vec<u8>, IpAddr),
    Err(String),
}

pub fn bt(r: TunnResult<'_>) -> Bt {
    match r {
        TunnResult::Done => Bt::Done,
        TunnResult::Err(e) => Bt::Err(format!("{e:?}")),
        TunnResult::WriteToNetwork(b) => Bt::Network(b.to_vec()),
        TunnResult::WriteToTunnelV4(b, a) => Bt::Tunnel(b.to_vec(), IpAddr::V4(a)),
        TunnResult::WriteToTunnelV6(b, a) => Bt::Tunnel(b.to_vec(), IpAddr::V6(a)),
    }
}

/// Feeds a datagram from us to boringtun; returns its immediate result plus anything it
/// queued (boringtun wants repeated calls with an empty datagram).
pub fn bt_recv(t: &mut Tunn, datagram: &[u8]) -> Vec<Bt> {
    let mut buf = vec![0u8; 65536];
    let src = Some(addr(OURS).ip());
    let mut out = vec![bt(t.decapsulate(src, datagram, &mut buf))];
    if matches!(out[0], Bt::Network(_)) {
        loop {
            let r = bt(t.decapsulate(src, &[], &mut buf));
            if r == Bt::Done {
                break;
            }
            out.push(r);
        }
    }
    out
}

pub fn bt_send(t: &mut Tunn, packet: &[u8]) -> Bt {
    let mut buf = vec![0u8; 65536];
    bt(t.encapsulate(packet, &mut buf))
}

/// Our side's output, owned: the action's bytes.
#[derive(Debug, PartialEq)]
pub enum Us {
    Done,
    Network(Vec<u8>),
    Tunnel(Vec<u8>, IpAddr),
    Err(DeviceError),
}

pub fn us_recv(d: &mut Device<ChaCha20Rng>, now: Instant, datagram: &[u8]) -> Us {
    us_recv_from(d, now, addr(THEIRS), datagram)
}

pub fn us_recv_from(
    d: &mut Device<ChaCha20Rng>,
    now: Instant,
    src: SocketAddr,
    datagram: &[u8],
) -> Us {
    let mut out = vec![0u8; 65536];
    match d.decapsulate(now, src, datagram, &mut out) {
        Ok(Action::Done) => Us::Done,
        Ok(Action::WriteToNetwork { to, len }) => {
            assert_eq!(to, src);
            Us::Network(out[..len].to_vec())
        }
        Ok(Action::WriteToTunnel { len, source }) => Us::Tunnel(out[..len].to_vec(), source),
        Err(e) => Us::Err(e),
    }
}

pub fn us_send(d: &mut Device<ChaCha20Rng>, now: Instant, packet: &[u8]) -> Us {
    us_send_to(d, now, packet).0
}

/// Like `us_send`, also returning the endpoint the datagram goes to.
pub fn us_send_to(
    d: &mut Device<ChaCha20Rng>,
    now: Instant,
    packet: &[u8],
) -> (Us, Option<SocketAddr>) {
    let mut out = vec![0u8; 65536];
    let r = d.encapsulate(now, packet, &mut out);
    let to = match r {
        Ok(Action::WriteToNetwork { to, .. }) => Some(to),
        _ => None,
    };
    let us = match r {
        Ok(Action::Done) => Us::Done,
        Ok(Action::WriteToNetwork { len, .. }) => Us::Network(out[..len].to_vec()),
        Ok(Action::WriteToTunnel { .. }) => panic!("encapsulate never writes to the tunnel"),
        Err(e) => Us::Err(e),
    };
    (us, to)
}

/// Like `us_send` through [`Device::encapsulate_in_place`]: the packet is placed at
/// `buf[16..]` of an exactly sized buffer (`cap` bytes) and sealed there.
pub fn us_send_in_place(
    d: &mut Device<ChaCha20Rng>,
    now: Instant,
    packet: &[u8],
    cap: usize,
) -> Us {
    let mut buf = vec![0xeeu8; cap.max(16 + packet.len())];
    buf[16..16 + packet.len()].copy_from_slice(packet);
    buf.truncate(cap);
    match d.encapsulate_in_place(now, &mut buf, packet.len()) {
        Ok(Action::Done) => Us::Done,
        Ok(Action::WriteToNetwork { len, .. }) => Us::Network(buf[..len].to_vec()),
        Ok(Action::WriteToTunnel { .. }) => panic!("encapsulate never writes to the tunnel"),
        Err(e) => Us::Err(e),
    }
}

/// Like `us_recv` through [`Device::decapsulate_in_place`]: the datagram is placed at the
/// start of a buffer of exactly its length (so no byte beyond it can be used) and opened there.
pub fn us_recv_in_place(d: &mut Device<ChaCha20Rng>, now: Instant, datagram: &[u8]) -> Us {
    let mut buf = datagram.to_vec();
    let src = addr(THEIRS);
    match d.decapsulate_in_place(now, src, &mut buf, datagram.len()) {
        Ok(Action::Done) => Us::Done,
        Ok(Action::WriteToNetwork { to, len }) => {
            assert_eq!(to, src);
            Us::Network(buf[..len].to_vec())
        }
        Ok(Action::WriteToTunnel { len, source }) => Us::Tunnel(
            buf[sealwire::tunnel::DATA_HEADER_LEN..][..len].to_vec(),
            source,
        ),
        Err(e) => Us::Err(e),
    }
}

pub fn drain(d: &mut Device<ChaCha20Rng>) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    while let Some(t) = d.poll_transmit() {
        v.push(t.payload);
    }
    v
}

pub fn net(x: Us) -> Vec<u8> {
    match x {
        Us::Network(b) => b,
        other => panic!("expected a datagram from us, got {other:?}"),
    }
}

pub fn bt_net(x: &Bt) -> Vec<u8> {
    match x {
        Bt::Network(b) => b.clone(),
        other => panic!("expected a datagram from boringtun, got {other:?}"),
    }
}
