//! Tunnel benches (ids `GROUP/FUNCTION`, each group beside its floor): transport data at 1420
//! bytes, one packet at a time and in runs of 64 (`tunnel/encap-batch-1420x64`,
//! `tunnel/decap-batch-1420x64`: one UDP GSO send / GRO receive, `sealwire-single` being the
//! same 64 packets through the single-packet calls, `sealwire-split` the steps a `tun_node`
//! worker takes to encrypt outside the device lock, `sealwire-unsealed` the part of them
//! under the lock), the full handshake, and routing and timers with 10 000 peers.
//!
//! The `ring` feature swaps the crate's ChaCha20-Poly1305 seam globally, so one binary cannot
//! hold both backends: a default build registers `sealwire`, `sealwire-copy` and `floor`, a
//! `--features ring` build `sealwire-ring`, `sealwire-ring-copy` and `floor-ring`; `boringtun`
//! runs in both, so each ratio goal compares figures of one run. The handshake group runs in
//! both builds (`sealwire-ring` in a ring build); the scale group only in the default build.
//!
//! Transport data: every function gets each packet or datagram in a fresh buffer made by
//! untimed setup, as the TUN read or UDP receive would leave it, and is timed until the
//! datagram or packet is ready. `sealwire` is the zero-copy API `tun_node` uses
//! (`encapsulate_in_place`/`decapsulate_in_place`: the AEAD runs where the bytes lie);
//! `sealwire-copy` is the copying `encapsulate`/`decapsulate`, the same shape as boringtun's
//! `Tunn` API, which copies each packet once more. Decapsulation always gets a fresh counter
//! (the replay window rejects repeats): each iteration's datagram is made, untimed, by the
//! peer's own `encapsulate`, for sealwire and boringtun alike.

#[path = "common/clock.rs"]
mod clock;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use boringtun::noise::{Tunn, TunnResult};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::crypto::x25519::StaticSecret;
use sealwire::time::{Instant, WallTime};
use sealwire::tunnel::{Action, Begun, Device, DeviceConfig, PeerConfig};

/// The tunnel MTU (wg-quick's default) and the inner packet length of the data benches.
const PACKET_LEN: usize = 1420;
/// Datagrams made ahead per timed batch of decapsulations.
const DECAP_BATCH: u64 = 256;

#[cfg(not(feature = "ring"))]
const SEALWIRE: &str = "sealwire";
#[cfg(feature = "ring")]
const SEALWIRE: &str = "sealwire-ring";
/// The copying `encapsulate`/`decapsulate` (same API shape as boringtun's).
#[cfg(not(feature = "ring"))]
const SEALWIRE_COPY: &str = "sealwire-copy";
#[cfg(feature = "ring")]
const SEALWIRE_COPY: &str = "sealwire-ring-copy";

const ADDR_A: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 51820);
const ADDR_B: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 51820);
const KEY_A: [u8; 32] = [0x11; 32];
const KEY_B: [u8; 32] = [0x22; 32];

/// An IPv4 packet of `len` bytes from `src` to `dst` (UDP, payload bytes 0..).
fn ipv4_packet(len: usize, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    for (i, b) in p[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

fn data_packet() -> Vec<u8> {
    ipv4_packet(PACKET_LEN, [10, 0, 0, 1], [10, 0, 0, 2])
}

// ------------------------------------------------------------------------------- sealwire

type Dev = Device<ChaCha20Rng>;

/// Two devices that know each other (A = 10.0.0.1 at ADDR_A, B = 10.0.0.2 at ADDR_B); no
/// session yet. All the per-peer precomputation happens here.
fn sealwire_pair(seed: u64) -> (Dev, Dev) {
    let (ka, kb) = (
        StaticSecret::from_bytes(KEY_A),
        StaticSecret::from_bytes(KEY_B),
    );
    let (pa, pb) = (ka.public_key(), kb.public_key());
    let cfg = DeviceConfig::default();
    let mut a = Device::new(ka, cfg.clone(), ChaCha20Rng::seed_from_u64(seed)).unwrap();
    let mut b = Device::new(kb, cfg, ChaCha20Rng::seed_from_u64(seed + 1)).unwrap();
    let mut peer_b = PeerConfig::new(pb);
    peer_b.endpoint = Some(ADDR_B);
    peer_b.allowed_ips.push("10.0.0.2/32".parse().unwrap());
    a.add_peer(Instant::ZERO, peer_b).unwrap();
    let mut peer_a = PeerConfig::new(pa);
    peer_a.endpoint = Some(ADDR_A);
    peer_a.allowed_ips.push("10.0.0.1/32".parse().unwrap());
    b.add_peer(Instant::ZERO, peer_a).unwrap();
    a.set_wall_clock(Instant::ZERO, WallTime::from_unix(1_700_000_000, 0));
    b.set_wall_clock(Instant::ZERO, WallTime::from_unix(1_700_000_000, 0));
    (a, b)
}

/// Initiation, response, and the first (staged) data packet delivered to B. Returns the
/// length of the packet B wrote to its TUN.
fn sealwire_handshake(
    a: &mut Dev,
    b: &mut Dev,
    now: Instant,
    pkt: &[u8],
    bufs: &mut Bufs,
) -> usize {
    let Ok(Action::WriteToNetwork { len, .. }) = a.encapsulate(now, pkt, &mut bufs.0) else {
        panic!("no initiation");
    };
    let Ok(Action::WriteToNetwork { len, .. }) =
        b.decapsulate(now, ADDR_A, &bufs.0[..len], &mut bufs.1)
    else {
        panic!("no response");
    };
    assert_eq!(
        a.decapsulate(now, ADDR_B, &bufs.1[..len], &mut bufs.0),
        Ok(Action::Done)
    );
    let data = a.poll_transmit().expect("staged packet");
    let Ok(Action::WriteToTunnel { len, .. }) =
        b.decapsulate(now, ADDR_A, &data.payload, &mut bufs.1)
    else {
        panic!("first data not delivered");
    };
    len
}

struct Bufs([u8; 2048], [u8; 2048]);

impl Bufs {
    fn new() -> Box<Self> {
        Box::new(Bufs([0; 2048], [0; 2048]))
    }
}

/// An established pair at `now` (B has confirmed the session).
fn sealwire_established(now: Instant) -> (Dev, Dev) {
    let (mut a, mut b) = sealwire_pair(1);
    let n = sealwire_handshake(&mut a, &mut b, now, &data_packet(), &mut Bufs::new());
    assert_eq!(n, PACKET_LEN);
    (a, b)
}

// ------------------------------------------------------------------------------ boringtun

fn boringtun_pair() -> (Tunn, Tunn) {
    use boringtun::x25519;
    let (ka, kb) = (
        x25519::StaticSecret::from(KEY_A),
        x25519::StaticSecret::from(KEY_B),
    );
    let (pa, pb) = (x25519::PublicKey::from(&ka), x25519::PublicKey::from(&kb));
    (
        Tunn::new(ka, pb, None, None, 1, None),
        Tunn::new(kb, pa, None, None, 2, None),
    )
}

fn network(r: TunnResult<'_>) -> Vec<u8> {
    match r {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        other => panic!("expected a datagram, got {other:?}"),
    }
}

/// The same steps as [`sealwire_handshake`] in boringtun's shape: initiation, response, the
/// initiator's keepalive, then the queued packet.
fn boringtun_handshake(a: &mut Tunn, b: &mut Tunn, pkt: &[u8], bufs: &mut Bufs) -> usize {
    let (ip_a, ip_b) = (Some(ADDR_A.ip()), Some(ADDR_B.ip()));
    let init = network(a.encapsulate(pkt, &mut bufs.0));
    let resp = network(b.decapsulate(ip_a, &init, &mut bufs.1));
    let keepalive = network(a.decapsulate(ip_b, &resp, &mut bufs.0));
    assert!(matches!(
        b.decapsulate(ip_a, &keepalive, &mut bufs.1),
        TunnResult::Done
    ));
    let data = network(a.decapsulate(None, &[], &mut bufs.0));
    match b.decapsulate(ip_a, &data, &mut bufs.1) {
        TunnResult::WriteToTunnelV4(p, _) => p.len(),
        other => panic!("first data not delivered: {other:?}"),
    }
}

fn boringtun_established() -> (Tunn, Tunn) {
    let (mut a, mut b) = boringtun_pair();
    assert_eq!(
        boringtun_handshake(&mut a, &mut b, &data_packet(), &mut Bufs::new()),
        PACKET_LEN
    );
    (a, b)
}

// ----------------------------------------------------------------------------- the floors

/// `ciphertext ‖ tag` length of a 1420-byte packet (the floors seal it unpadded).
const SEALED_LEN: usize = PACKET_LEN + 16;

fn nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    n
}

#[cfg(not(feature = "ring"))]
mod floor {
    use super::{nonce, PACKET_LEN};
    use chacha20poly1305::aead::AeadInOut;
    use chacha20poly1305::{ChaCha20Poly1305, KeyInit};

    pub const NAME: &str = "floor";

    pub struct Key(ChaCha20Poly1305);

    impl Key {
        pub fn new(k: &[u8; 32]) -> Self {
            Key(ChaCha20Poly1305::new(k.into()))
        }

        /// Seals `buf[..1420]` in place, tag into `buf[1420..]`.
        pub fn seal(&self, counter: u64, buf: &mut [u8]) {
            let (body, tag) = buf.split_at_mut(PACKET_LEN);
            let t = self
                .0
                .encrypt_inout_detached(&nonce(counter).into(), &[], body.into())
                .unwrap();
            tag.copy_from_slice(&t);
        }

        pub fn open(&self, counter: u64, buf: &mut [u8]) {
            let (body, tag) = buf.split_at_mut(PACKET_LEN);
            let tag: &[u8; 16] = (&*tag).try_into().unwrap();
            self.0
                .decrypt_inout_detached(&nonce(counter).into(), &[], body.into(), tag.into())
                .unwrap();
        }
    }
}

#[cfg(feature = "ring")]
mod floor {
    use super::{nonce, PACKET_LEN};
    use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};

    pub const NAME: &str = "floor-ring";

    pub struct Key(LessSafeKey);

    impl Key {
        pub fn new(k: &[u8; 32]) -> Self {
            Key(LessSafeKey::new(
                UnboundKey::new(&CHACHA20_POLY1305, k).unwrap(),
            ))
        }

        pub fn seal(&self, counter: u64, buf: &mut [u8]) {
            let (body, tag) = buf.split_at_mut(PACKET_LEN);
            let t = self
                .0
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce(counter)),
                    Aad::empty(),
                    body,
                )
                .unwrap();
            tag.copy_from_slice(t.as_ref());
        }

        pub fn open(&self, counter: u64, buf: &mut [u8]) {
            let (body, tag) = buf.split_at_mut(PACKET_LEN);
            let tag: [u8; 16] = (&*tag).try_into().unwrap();
            self.0
                .open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce(counter)),
                    Aad::empty(),
                    Tag::from(tag),
                    body,
                    0..,
                )
                .unwrap();
        }
    }
}

// -------------------------------------------------------------------------------- benches

/// Every function gets each packet in a fresh buffer made by untimed setup (as a TUN read
/// would leave it) and turns it into a datagram: `sealwire` seals it where it lies
/// (`encapsulate_in_place`, what `tun_node` does), `sealwire-copy` and `boringtun` copy it
/// into an output buffer first (their `encapsulate`), `floor` is the bare AEAD in place.
fn encap(c: &mut Criterion<clock::Clock>) {
    let mut g = c.benchmark_group("tunnel/encap-1420");
    let pkt = data_packet();
    let now = Instant::from_secs(1);
    let mut out = vec![0u8; 2048];
    let batch = BatchSize::NumIterations(DECAP_BATCH);
    let in_place = || {
        let mut buf = vec![0u8; 2048];
        buf[16..16 + PACKET_LEN].copy_from_slice(&pkt);
        buf
    };

    let (mut a, _b) = sealwire_established(now);
    g.bench_function(SEALWIRE, |bch| {
        bch.iter_batched_ref(
            in_place,
            |buf| match a.encapsulate_in_place(now, buf, PACKET_LEN) {
                Ok(Action::WriteToNetwork { len, .. }) => len,
                other => panic!("no datagram: {other:?}"),
            },
            batch,
        )
    });
    g.bench_function(SEALWIRE_COPY, |bch| {
        bch.iter_batched_ref(
            || pkt.clone(),
            |src| match a.encapsulate(now, src, &mut out) {
                Ok(Action::WriteToNetwork { len, .. }) => len,
                other => panic!("no datagram: {other:?}"),
            },
            batch,
        )
    });

    let (mut ta, _tb) = boringtun_established();
    g.bench_function("boringtun", |bch| {
        bch.iter_batched_ref(
            || pkt.clone(),
            |src| match ta.encapsulate(src, &mut out) {
                TunnResult::WriteToNetwork(d) => d.len(),
                _ => panic!("no datagram"),
            },
            batch,
        )
    });

    let key = floor::Key::new(&[7; 32]);
    let mut counter = 0u64;
    g.bench_function(floor::NAME, |bch| {
        bch.iter_batched_ref(
            || {
                let mut buf = vec![0u8; SEALED_LEN];
                buf[..PACKET_LEN].copy_from_slice(&pkt);
                buf
            },
            |buf| {
                key.seal(counter, buf);
                counter += 1;
            },
            batch,
        )
    });
    g.finish();
}

/// Every function gets each datagram in a fresh buffer made by untimed setup (as a UDP
/// receive would leave it): `sealwire` opens it where it lies (`decapsulate_in_place`, what
/// `tun_node` does), `sealwire-copy` and `boringtun` decrypt it into an output buffer (their
/// `decapsulate`), `floor` is the bare AEAD in place.
fn decap(c: &mut Criterion<clock::Clock>) {
    let mut g = c.benchmark_group("tunnel/decap-1420");
    let pkt = data_packet();
    let now = Instant::from_secs(1);
    let mut out = vec![0u8; 2048];
    let batch = BatchSize::NumIterations(DECAP_BATCH);

    let (mut a, mut b) = sealwire_established(now);
    // Each iteration's datagram, made untimed by the peer: a fresh counter every time.
    let mut datagram = || {
        let mut dg = vec![0u8; 2048];
        let Ok(Action::WriteToNetwork { len, .. }) = a.encapsulate(now, &pkt, &mut dg) else {
            panic!("no datagram");
        };
        dg.truncate(len);
        dg
    };
    g.bench_function(SEALWIRE, |bch| {
        bch.iter_batched_ref(
            &mut datagram,
            |dg| {
                let n = dg.len();
                match b.decapsulate_in_place(now, ADDR_A, dg, n) {
                    Ok(Action::WriteToTunnel { len, .. }) => len,
                    other => panic!("not delivered: {other:?}"),
                }
            },
            batch,
        )
    });
    g.bench_function(SEALWIRE_COPY, |bch| {
        bch.iter_batched_ref(
            &mut datagram,
            |dg| match b.decapsulate(now, ADDR_A, dg, &mut out) {
                Ok(Action::WriteToTunnel { len, .. }) => len,
                other => panic!("not delivered: {other:?}"),
            },
            batch,
        )
    });

    let (mut ta, mut tb) = boringtun_established();
    let ip_a = Some(ADDR_A.ip());
    g.bench_function("boringtun", |bch| {
        bch.iter_batched_ref(
            || network(ta.encapsulate(&pkt, &mut [0u8; 2048])),
            |dg| match tb.decapsulate(ip_a, dg, &mut out) {
                TunnResult::WriteToTunnelV4(p, _) => p.len(),
                other => panic!("not delivered: {other:?}"),
            },
            batch,
        )
    });

    let key = floor::Key::new(&[7; 32]);
    let mut counter = 0u64;
    g.bench_function(floor::NAME, |bch| {
        bch.iter_batched_ref(
            || {
                let mut buf = vec![0u8; SEALED_LEN];
                buf[..PACKET_LEN].copy_from_slice(&pkt);
                key.seal(counter, &mut buf);
                counter += 1;
                (counter - 1, buf)
            },
            |(n, buf)| key.open(*n, buf),
            batch,
        )
    });
    g.finish();
}

/// Packets per batch in the `*-batch-1420x64` groups (Linux's most segments per GSO send).
const BATCH: usize = 64;
/// Timed iterations per setup round of the batch groups (each holds 64 packets).
const BATCH_ROUNDS: u64 = 16;

/// A run of 64 packets for one peer, each in its own fresh buffer made by untimed setup (as
/// 64 TUN reads would leave them), turned into one buffer of 64 equal-size datagrams (one
/// UDP GSO send): `sealwire` is `encapsulate_batch` (which copies each packet into its
/// segment and seals it there), `sealwire-single` is 64 calls of `encapsulate_in_place`,
/// `floor` the bare AEAD 64 times in place.
fn encap_batch(c: &mut Criterion<clock::Clock>) {
    let mut g = c.benchmark_group("tunnel/encap-batch-1420x64");
    let pkt = data_packet();
    let now = Instant::from_secs(1);
    let rounds = BatchSize::NumIterations(BATCH_ROUNDS);
    let mut out = vec![0u8; BATCH * (PACKET_LEN + 32)];

    let (mut a, _b) = sealwire_established(now);
    g.bench_function(SEALWIRE, |bch| {
        bch.iter_batched_ref(
            || vec![pkt.clone(); BATCH],
            |run| {
                let b = a.encapsulate_batch(now, run, &mut out).unwrap();
                assert_eq!(b.segments, BATCH);
                b.segment_size
            },
            rounds,
        )
    });
    g.bench_function(format!("{SEALWIRE}-single"), |bch| {
        bch.iter_batched_ref(
            || {
                let mut buf = vec![0u8; 2048];
                buf[16..16 + PACKET_LEN].copy_from_slice(&pkt);
                vec![buf; BATCH]
            },
            |bufs| {
                for buf in bufs.iter_mut() {
                    match a.encapsulate_in_place(now, buf, PACKET_LEN) {
                        Ok(Action::WriteToNetwork { .. }) => {}
                        other => panic!("no datagram: {other:?}"),
                    }
                }
            },
            rounds,
        )
    });

    // A worker's two steps: the part under the device lock alone, then both.
    g.bench_function(format!("{SEALWIRE}-unsealed"), |bch| {
        bch.iter_batched_ref(
            || vec![pkt.clone(); BATCH],
            |run| {
                let (b, job) = a.encapsulate_batch_unsealed(now, run, &mut out).unwrap();
                assert_eq!(b.segments, BATCH);
                job
            },
            rounds,
        )
    });
    g.bench_function(format!("{SEALWIRE}-split"), |bch| {
        bch.iter_batched_ref(
            || vec![pkt.clone(); BATCH],
            |run| {
                let (b, job) = a.encapsulate_batch_unsealed(now, run, &mut out).unwrap();
                job.unwrap().seal(&mut out).unwrap();
                b.segment_size
            },
            rounds,
        )
    });

    let key = floor::Key::new(&[7; 32]);
    let mut counter = 0u64;
    g.bench_function(floor::NAME, |bch| {
        bch.iter_batched_ref(
            || {
                let mut buf = vec![0u8; SEALED_LEN];
                buf[..PACKET_LEN].copy_from_slice(&pkt);
                vec![buf; BATCH]
            },
            |bufs| {
                for buf in bufs.iter_mut() {
                    key.seal(counter, buf);
                    counter += 1;
                }
            },
            rounds,
        )
    });
    g.finish();
}

/// One buffer of 64 datagrams as UDP GRO hands it over (made untimed by the peer's
/// `encapsulate_batch`, fresh counters every time), opened to 64 packets: `sealwire` is
/// `decapsulate_batch` (in place), `sealwire-single` 64 calls of `decapsulate_in_place` on
/// the same buffer's datagrams, `floor` the bare AEAD 64 times in place.
fn decap_batch(c: &mut Criterion<clock::Clock>) {
    let mut g = c.benchmark_group("tunnel/decap-batch-1420x64");
    let run = vec![data_packet(); BATCH];
    let now = Instant::from_secs(1);
    let rounds = BatchSize::NumIterations(BATCH_ROUNDS);

    let (mut a, mut b) = sealwire_established(now);
    let mut gro = || {
        let mut buf = vec![0u8; BATCH * (PACKET_LEN + 32)];
        let batch = a.encapsulate_batch(now, &run, &mut buf).unwrap();
        assert_eq!(batch.segments, BATCH);
        (buf, batch.segment_size)
    };
    g.bench_function(SEALWIRE, |bch| {
        bch.iter_batched_ref(
            &mut gro,
            |(buf, stride)| {
                let mut n = 0;
                for (r, _) in b.decapsulate_batch(now, ADDR_A, buf, *stride) {
                    if let Ok(Action::WriteToTunnel { len, .. }) = r {
                        n += len;
                    }
                }
                assert_eq!(n, BATCH * PACKET_LEN);
            },
            rounds,
        )
    });
    g.bench_function(format!("{SEALWIRE}-single"), |bch| {
        bch.iter_batched_ref(
            &mut gro,
            |(buf, stride)| {
                for dg in buf.chunks_mut(*stride) {
                    let n = dg.len();
                    match b.decapsulate_in_place(now, ADDR_A, dg, n) {
                        Ok(Action::WriteToTunnel { .. }) => {}
                        other => panic!("not delivered: {other:?}"),
                    }
                }
            },
            rounds,
        )
    });
    // A worker's three steps: every datagram checked, opened, then accepted.
    let mut opened = Vec::with_capacity(BATCH);
    g.bench_function(format!("{SEALWIRE}-split"), |bch| {
        bch.iter_batched_ref(
            &mut gro,
            |(buf, stride)| {
                let mut openings = Vec::with_capacity(BATCH);
                for dg in buf.chunks_mut(*stride) {
                    let n = dg.len();
                    match b.decapsulate_begin(now, ADDR_A, dg, n) {
                        Ok(Begun::Open(o)) => openings.push(o),
                        other => panic!("not opened: {other:?}"),
                    }
                }
                for (o, dg) in openings.into_iter().zip(buf.chunks_mut(*stride)) {
                    opened.push(o.open(dg));
                }
                for (o, dg) in opened.drain(..).zip(buf.chunks(*stride)) {
                    match b.decapsulate_finish(now, ADDR_A, o, dg) {
                        Ok(Action::WriteToTunnel { .. }) => {}
                        other => panic!("not delivered: {other:?}"),
                    }
                }
            },
            rounds,
        )
    });

    let key = floor::Key::new(&[7; 32]);
    let mut counter = 0u64;
    g.bench_function(floor::NAME, |bch| {
        bch.iter_batched_ref(
            || {
                let mut buf = vec![0u8; SEALED_LEN];
                buf[..PACKET_LEN].copy_from_slice(&data_packet());
                (0..BATCH)
                    .map(|_| {
                        let mut b = buf.clone();
                        key.seal(counter, &mut b);
                        counter += 1;
                        (counter - 1, b)
                    })
                    .collect::<Vec<_>>()
            },
            |bufs| {
                for (n, buf) in bufs.iter_mut() {
                    key.open(*n, buf);
                }
            },
            rounds,
        )
    });
    g.finish();
}

/// In a `ring` build this registers `sealwire-ring` beside `boringtun` (which uses ring too).
fn handshake(c: &mut Criterion<clock::Clock>) {
    let mut g = c.benchmark_group("tunnel/handshake");
    let pkt = data_packet();
    let mut bufs = Bufs::new();
    let now = Instant::from_secs(1);
    let mut seed = 0u64;
    g.bench_function(SEALWIRE, |bch| {
        bch.iter_batched_ref(
            || {
                seed += 2;
                sealwire_pair(seed)
            },
            |(a, b)| sealwire_handshake(a, b, now, &pkt, &mut bufs),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("boringtun", |bch| {
        bch.iter_batched_ref(
            boringtun_pair,
            |(a, b)| boringtun_handshake(a, b, &pkt, &mut bufs),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Number of peers of the scale benches.
#[cfg(not(feature = "ring"))]
const PEERS: usize = 10_000;

/// Routing with 10 000 peers: each has one IPv4 /32 (10.0.0.0/16) and one IPv6 /128, every
/// tenth also a /24 (172.16.0.0/12), so lookups walk several prefix lengths. `sealwire` is
/// `encapsulate` to peers without an endpoint: inner header parse, longest-prefix match, peer
/// fetch, and the `NoEndpoint` drop, no crypto. `poll-timeout` is the device's next deadline
/// with every peer's persistent-keepalive timer armed.
#[cfg(not(feature = "ring"))]
fn lookup(c: &mut Criterion<clock::Clock>) {
    use sealwire::crypto::x25519::PublicKey;
    use sealwire::tunnel::{DeviceError, DropReason};

    fn peer(i: usize, endpoint: bool) -> PeerConfig {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        key[31] = 0x40;
        let mut p = PeerConfig::new(PublicKey::from_bytes(key));
        let (hi, lo) = ((i >> 8) as u8, i as u8);
        p.allowed_ips
            .push(format!("10.0.{hi}.{lo}/32").parse().unwrap());
        p.allowed_ips
            .push(format!("fd00::{hi:x}:{lo:x}/128").parse().unwrap());
        if i.is_multiple_of(10) {
            let j = i / 10;
            p.allowed_ips.push(
                format!("172.{}.{}.0/24", 16 + (j >> 8), j & 0xff)
                    .parse()
                    .unwrap(),
            );
        }
        if endpoint {
            p.endpoint = Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(192, 0, hi, lo)),
                51820,
            ));
            p.persistent_keepalive = Some(25);
        }
        p
    }
    fn device(endpoints: bool) -> Dev {
        let key = StaticSecret::from_bytes(KEY_A);
        let mut d =
            Device::new(key, DeviceConfig::default(), ChaCha20Rng::seed_from_u64(9)).unwrap();
        for i in 0..PEERS {
            // Staggered deadlines, as peers added over time have.
            d.add_peer(
                Instant::from_nanos(i as u64 * 1_000_000),
                peer(i, endpoints),
            )
            .unwrap();
        }
        d
    }

    let mut g = c.benchmark_group("tunnel/lookup-10k-peers");
    let mut d = device(false);
    // 1024 destinations spread over all peers, a tenth of them in the /24s.
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let packets: Vec<Vec<u8>> = (0..1024)
        .map(|k| {
            use rand_chacha::rand_core::Rng;
            let i = (rng.next_u32() as usize) % PEERS;
            let dst = if k % 10 == 0 {
                let j = i / 10;
                [172, 16 + (j >> 8) as u8, j as u8, 77]
            } else {
                [10, 0, (i >> 8) as u8, i as u8]
            };
            ipv4_packet(64, [10, 9, 9, 9], dst)
        })
        .collect();
    let mut out = vec![0u8; 2048];
    let mut k = 0usize;
    g.bench_function("sealwire", |bch| {
        bch.iter(|| {
            k = (k + 1) & 1023;
            let r = d.encapsulate(Instant::ZERO, std::hint::black_box(&packets[k]), &mut out);
            assert!(matches!(
                r,
                Err(DeviceError::Dropped(DropReason::NoEndpoint))
            ));
        })
    });
    drop(d);

    let d = device(true);
    assert!(d.poll_timeout().is_some());
    g.bench_function("poll-timeout", |bch| {
        bch.iter(|| std::hint::black_box(&d).poll_timeout())
    });
    g.finish();
}

#[cfg(not(feature = "ring"))]
criterion_group! {
    name = benches;
    config = clock::config();
    targets = encap, decap, encap_batch, decap_batch, handshake, lookup
}
#[cfg(feature = "ring")]
criterion_group! {
    name = benches;
    config = clock::config();
    targets = encap, decap, encap_batch, decap_batch, handshake
}
criterion_main!(benches);
