//! Property tests: our device ↔ boringtun through a hostile network (loss, duplication,
//! reordering) and clock jumps on our side. Properties: no packet is ever delivered twice
//! (so no replayed counter is accepted), and once the network behaves, a session always comes
//! back and carries data both ways.

mod support {
    pub mod tunnel;
}

use proptest::prelude::*;
use sealwire::time::{Duration, Instant};
use std::collections::BTreeSet;
use support::tunnel::*;

#[derive(Clone, Debug)]
enum Op {
    UsSend,
    ThemSend,
    /// Deliver the in-flight datagram at `idx` (modulo the queue) towards us or them;
    /// `dup` keeps a copy in flight.
    Deliver {
        to_us: bool,
        idx: usize,
        dup: bool,
    },
    Lose {
        to_us: bool,
        idx: usize,
    },
    Advance(u64),
    Timers,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::UsSend),
        3 => Just(Op::ThemSend),
        6 => (any::<bool>(), 0usize..16, prop::bool::weighted(0.2))
            .prop_map(|(to_us, idx, dup)| Op::Deliver { to_us, idx, dup }),
        1 => (any::<bool>(), 0usize..16).prop_map(|(to_us, idx)| Op::Lose { to_us, idx }),
        1 => prop_oneof![1u64..2_000, 5_000u64..20_000, 100_000u64..200_000].prop_map(Op::Advance),
        2 => Just(Op::Timers),
    ]
}

struct World {
    us: sealwire::tunnel::Device<rand_chacha::ChaCha20Rng>,
    them: boringtun::noise::Tunn,
    now: Instant,
    to_us: Vec<Vec<u8>>,
    to_them: Vec<Vec<u8>>,
    next_id: u32,
    got_us: BTreeSet<u32>,
    got_them: BTreeSet<u32>,
}

impl World {
    fn us_send(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        let p = ipv4(OUR_IP4, THEIR_IP4, &id.to_be_bytes());
        if let Us::Network(d) = us_send(&mut self.us, self.now, &p) {
            self.to_them.push(d);
        }
        self.to_them.extend(drain(&mut self.us));
        id
    }

    fn them_send(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        let p = ipv4(THEIR_IP4, OUR_IP4, &id.to_be_bytes());
        if let Bt::Network(d) = bt_send(&mut self.them, &p) {
            self.to_us.push(d);
        }
        id
    }

    fn deliver(&mut self, to_us: bool, idx: usize, dup: bool) {
        let q = if to_us {
            &mut self.to_us
        } else {
            &mut self.to_them
        };
        if q.is_empty() {
            return;
        }
        let i = idx % q.len();
        let d = if dup { q[i].clone() } else { q.remove(i) };
        if to_us {
            match us_recv(&mut self.us, self.now, &d) {
                Us::Network(r) => self.to_them.push(r),
                Us::Tunnel(p, _) => {
                    let id = u32::from_be_bytes(p[28..32].try_into().unwrap());
                    assert!(self.got_us.insert(id), "packet {id} delivered to us twice");
                }
                Us::Done | Us::Err(_) => {}
            }
            self.to_them.extend(drain(&mut self.us));
        } else {
            for r in bt_recv(&mut self.them, &d) {
                match r {
                    Bt::Network(x) => self.to_us.push(x),
                    Bt::Tunnel(p, _) => {
                        let id = u32::from_be_bytes(p[28..32].try_into().unwrap());
                        assert!(
                            self.got_them.insert(id),
                            "packet {id} delivered to boringtun twice"
                        );
                    }
                    _ => {}
                }
            }
        }
    }

    fn timers(&mut self) {
        if let Some(t) = self.us.poll_timeout() {
            self.now = self.now.max(t);
            self.us.handle_timeout(self.now);
            self.to_them.extend(drain(&mut self.us));
        }
    }

    fn flush(&mut self) {
        for _ in 0..64 {
            if self.to_us.is_empty() && self.to_them.is_empty() {
                return;
            }
            while !self.to_them.is_empty() {
                self.deliver(false, 0, false);
            }
            while !self.to_us.is_empty() {
                self.deliver(true, 0, false);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn hostile_network_never_duplicates_and_always_recovers(
        ops in prop::collection::vec(op(), 1..80),
        seed in any::<u64>(),
    ) {
        let mut w = World {
            us: our_device(None, seed, 100),
            them: boringtun(None, None),
            now: Instant::from_secs(1),
            to_us: Vec::new(),
            to_them: Vec::new(),
            next_id: 0,
            got_us: BTreeSet::new(),
            got_them: BTreeSet::new(),
        };
        for o in ops {
            match o {
                Op::UsSend => { w.us_send(); }
                Op::ThemSend => { w.them_send(); }
                Op::Deliver { to_us, idx, dup } => w.deliver(to_us, idx, dup),
                Op::Lose { to_us, idx } => {
                    let q = if to_us { &mut w.to_us } else { &mut w.to_them };
                    if !q.is_empty() { let i = idx % q.len(); q.remove(i); }
                }
                Op::Advance(ms) => w.now += Duration::from_millis(ms),
                Op::Timers => w.timers(),
            }
        }
        // Heal: the network is now perfect. A session must come back and carry data both ways.
        let mut ok_out = false;
        let mut ok_in = false;
        for _ in 0..60 {
            w.flush();
            let a = w.us_send();
            w.flush();
            ok_out |= w.got_them.contains(&a);
            if ok_out {
                let b = w.them_send();
                w.flush();
                ok_in |= w.got_us.contains(&b);
            }
            if ok_out && ok_in {
                break;
            }
            w.now += Duration::from_millis(500);
            w.timers();
        }
        prop_assert!(ok_out, "no session towards boringtun after healing");
        prop_assert!(ok_in, "no data from boringtun after healing");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any single-byte change to boringtun's response (outside mac2) is rejected and our
    /// pending handshake survives: the genuine response still completes it afterwards.
    #[test]
    fn mutated_boringtun_response_is_rejected(pos in 0usize..76, flip in 1u8..=255) {
        let mut us = our_device(None, 5, 100);
        let mut them = boringtun(None, None);
        let now = Instant::from_secs(3);
        let init = net(us_send(&mut us, now, &ipv4(OUR_IP4, THEIR_IP4, b"m")));
        let resp = bt_net(&bt_recv(&mut them, &init)[0]);
        let mut bad = resp.clone();
        bad[pos] ^= flip;
        prop_assert!(matches!(us_recv(&mut us, now, &bad), Us::Err(_)));
        prop_assert_eq!(us.stats().handshakes_completed, 0);
        prop_assert_eq!(us_recv(&mut us, now, &resp), Us::Done);
        prop_assert_eq!(us.stats().handshakes_completed, 1);
    }

    /// Arbitrary datagrams never panic, never deliver, and leave an established peer as it was.
    #[test]
    fn arbitrary_datagrams_change_nothing(
        kind in 0u8..6,
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut us = our_device(None, 6, 100);
        let mut them = boringtun(None, None);
        let now = Instant::from_secs(3);
        let init = net(us_send(&mut us, now, &ipv4(OUR_IP4, THEIR_IP4, b"m")));
        let resp = bt_net(&bt_recv(&mut them, &init)[0]);
        prop_assert_eq!(us_recv(&mut us, now, &resp), Us::Done);
        let state = |us: &sealwire::tunnel::Device<_>| {
            (us.peer_status(&their_pub()).unwrap(), us.has_session(now, &their_pub()))
        };
        let before = state(&us);
        let mut d = body;
        if let Some(b) = d.first_mut() { *b = kind; }
        for b in d.iter_mut().skip(1).take(3) { *b = 0; }
        let r = us_recv(&mut us, now, &d);
        prop_assert!(matches!(r, Us::Err(_)), "{:?}", r);
        prop_assert_eq!(state(&us), before);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary outbound bytes and buffer sizes never panic; what goes out, boringtun opens.
    #[test]
    fn arbitrary_outbound_packets_are_handled(
        version in prop_oneof![Just(0x45u8), Just(0x60u8), any::<u8>()],
        body in prop::collection::vec(any::<u8>(), 0..120),
        out_len in 0usize..200,
    ) {
        let mut us = our_device(None, 6, 100);
        let mut them = boringtun(None, None);
        let now = Instant::from_secs(3);
        let init = net(us_send(&mut us, now, &ipv4(OUR_IP4, THEIR_IP4, b"m")));
        let resp = bt_net(&bt_recv(&mut them, &init)[0]);
        prop_assert_eq!(us_recv(&mut us, now, &resp), Us::Done);
        for d in drain(&mut us) {
            let _ = bt_recv(&mut them, &d);
        }
        let mut pkt = body;
        if let Some(b) = pkt.first_mut() { *b = version; }
        if pkt.len() >= 20 && version == 0x45 { pkt[16..20].copy_from_slice(&THEIR_IP4); }
        let mut out = vec![0u8; out_len];
        match us.encapsulate(now, &pkt, &mut out) {
            Ok(sealwire::tunnel::Action::WriteToNetwork { len, .. }) => {
                // Data boringtun decrypts; it may reject the inner packet, never the crypto.
                let r = bt_recv(&mut them, &out[..len]);
                prop_assert!(
                    !matches!(&r[0], Bt::Err(e) if e.contains("InvalidAeadTag")),
                    "{:?}", r
                );
            }
            Ok(other) => prop_assert!(false, "unexpected {:?}", other),
            Err(_) => {}
        }
    }
}

// ------------------------------------------------------------------ batches (GSO / GRO)
//
// Two copies of the same world (same keys, same RNG seeds, same clock): in one, A seals every
// packet with `encapsulate` and B opens every datagram with `decapsulate`; in the other, A
// seals runs with `encapsulate_batch` and B opens each batch as one GRO buffer with
// `decapsulate_batch`; in a third, the same in steps, as workers do (`encapsulate_batch_unsealed`
// then the job's seal; every datagram of a batch begun, then opened, then finished). Everything either side emits (datagrams byte for byte, results,
// plaintexts, replies, queued transmits, events) and every counter, timer deadline and peer
// status must be the same after every step, through rekeys, replays and losses.

mod batch {
    use super::support::tunnel::*;
    use proptest::prelude::*;
    use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    use sealwire::crypto::x25519::StaticSecret;
    use sealwire::time::{Duration, Instant, WallTime};
    use sealwire::tunnel::{Action, Begun, Device, DeviceConfig, DeviceError, PeerConfig};
    use std::net::SocketAddr;

    type Dev = Device<ChaCha20Rng>;

    const OTHER: &str = "203.0.113.9:51820";

    /// A: our device with B (boringtun's keys, here a second device of ours) and a third
    /// peer C at OTHER that never answers. B: the other end, which knows only A.
    fn pair(seed: u64) -> (Dev, Dev) {
        let mut a = our_device(None, seed, 100);
        let mut c = PeerConfig::new(StaticSecret::from_bytes([0x33; 32]).public_key());
        c.endpoint = Some(addr(OTHER));
        c.allowed_ips.push("10.0.0.3/32".parse().unwrap());
        a.add_peer(Instant::ZERO, c).unwrap();
        let mut b = Device::new(
            StaticSecret::from_bytes(their_key_bytes()),
            DeviceConfig::default(),
            ChaCha20Rng::seed_from_u64(seed ^ 0x5a5a),
        )
        .unwrap();
        let mut p = PeerConfig::new(our_key().public_key());
        p.endpoint = Some(addr(OURS));
        p.allowed_ips.push("10.0.0.1/32".parse().unwrap());
        p.allowed_ips.push("fd00::1/128".parse().unwrap());
        b.add_peer(Instant::ZERO, p).unwrap();
        b.set_wall_clock(Instant::ZERO, WallTime::from_unix(WALL, 0));
        (a, b)
    }

    #[derive(Clone, Debug)]
    enum Kind {
        ToB,
        ToB6,
        ToC,
        NoRoute,
        Malformed,
        BadSource,
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// A sends these packets (kind, payload length); the batch world's `out` holds
        /// `out_len` bytes.
        Send(Vec<(Kind, usize)>, usize),
        Deliver {
            idx: usize,
            dup: bool,
        },
        Lose(usize),
        Advance(u64),
        Timers,
    }

    fn packet(kind: &Kind, plen: usize, id: u8) -> Vec<u8> {
        let payload = vec![id; plen];
        match kind {
            Kind::ToB => ipv4(OUR_IP4, THEIR_IP4, &payload),
            Kind::ToB6 => ipv6(OUR_IP6, THEIR_IP6, &payload[..plen.saturating_sub(20)]),
            Kind::ToC => ipv4(OUR_IP4, [10, 0, 0, 3], &payload),
            Kind::NoRoute => ipv4(OUR_IP4, [10, 9, 9, 9], &payload),
            Kind::Malformed => payload,
            Kind::BadSource => ipv4([10, 0, 0, 77], THEIR_IP4, &payload),
        }
    }

    fn op() -> impl Strategy<Value = Op> {
        let kind = prop_oneof![
            12 => Just(Kind::ToB),
            2 => Just(Kind::ToB6),
            1 => Just(Kind::ToC),
            1 => Just(Kind::NoRoute),
            1 => Just(Kind::Malformed),
            1 => Just(Kind::BadSource),
        ];
        // Mostly full-size packets (1420 bytes), as in a bulk transfer.
        let plen = prop_oneof![4 => Just(1392usize), 1 => 0usize..1392];
        let out_len = prop_oneof![Just(1452usize), Just(2048), Just(5000), Just(64 * 1452)];
        prop_oneof![
            4 => (prop::collection::vec((kind, plen), 1..40), out_len)
                .prop_map(|(p, o)| Op::Send(p, o)),
            4 => (0usize..8, prop::bool::weighted(0.2)).prop_map(|(idx, dup)| Op::Deliver { idx, dup }),
            1 => (0usize..8).prop_map(Op::Lose),
            1 => prop_oneof![1u64..2_000, 5_000u64..20_000, 60_000u64..130_000].prop_map(Op::Advance),
            1 => Just(Op::Timers),
        ]
    }

    /// Everything one world emits, in order.
    #[derive(Debug, PartialEq)]
    enum Rec {
        /// A datagram from A (sealed, or queued), or A's error for a packet.
        Out(SocketAddr, Vec<u8>),
        OutErr(DeviceError),
        /// B's result for a datagram and the bytes it names (plaintext or reply).
        AtB(Result<Action, DeviceError>, Vec<u8>),
        AtA(Result<Action, DeviceError>, Vec<u8>),
        State(String),
    }

    struct World {
        a: Dev,
        b: Dev,
        log: Vec<Rec>,
    }

    /// A datagram from B reaches A; A's reply or transmits go in flight towards B.
    fn at_a(a: &mut Dev, log: &mut Vec<Rec>, now: Instant, d: &[u8], to_b: &mut Vec<Vec<u8>>) {
        let mut out = vec![0u8; 65536];
        let r = a.decapsulate(now, addr(THEIRS), d, &mut out);
        let bytes = match r {
            Ok(Action::WriteToNetwork { len, .. }) | Ok(Action::WriteToTunnel { len, .. }) => {
                out[..len].to_vec()
            }
            _ => Vec::new(),
        };
        if let Ok(Action::WriteToNetwork { .. }) = r {
            to_b.push(bytes.clone());
        }
        log.push(Rec::AtA(r, bytes));
    }

    impl World {
        /// A's queued transmits: logged; the ones for B returned to go in flight.
        fn drain_a(&mut self) -> Vec<Vec<u8>> {
            let mut v = Vec::new();
            while let Some(t) = self.a.poll_transmit() {
                self.log.push(Rec::Out(t.to, t.payload.clone()));
                if t.to == addr(THEIRS) {
                    v.push(t.payload);
                }
            }
            v
        }

        /// B's queued transmits reach A at once.
        fn drain_b(&mut self, now: Instant, to_b: &mut Vec<Vec<u8>>) {
            while let Some(t) = self.b.poll_transmit() {
                at_a(&mut self.a, &mut self.log, now, &t.payload, to_b);
            }
        }

        fn state(&mut self, now: Instant) {
            let mut events = Vec::new();
            while let Some(e) = self.a.poll_event() {
                events.push(format!("a {e:?}"));
            }
            while let Some(e) = self.b.poll_event() {
                events.push(format!("b {e:?}"));
            }
            let s = format!(
                "{:?} {:?} {:?} {:?} {:?} {:?} {} {} {:?}",
                self.a.stats(),
                self.b.stats(),
                self.a.poll_timeout(),
                self.b.poll_timeout(),
                self.a.peer_status(&their_pub()),
                self.b.peer_status(&our_key().public_key()),
                self.a.has_session(now, &their_pub()),
                self.b.has_session(now, &our_key().public_key()),
                events,
            );
            self.log.push(Rec::State(s));
        }
    }

    /// The single-packet world sends `packets`; returns the datagrams for B.
    fn send_one(w: &mut World, now: Instant, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut to_b = Vec::new();
        for p in packets {
            let mut out = vec![0u8; 2048];
            match w.a.encapsulate(now, p, &mut out) {
                Ok(Action::WriteToNetwork { to, len }) => {
                    w.log.push(Rec::Out(to, out[..len].to_vec()));
                    if to == addr(THEIRS) {
                        to_b.push(out[..len].to_vec());
                    }
                }
                Ok(Action::Done) => {}
                Ok(a) => panic!("encapsulate gave {a:?}"),
                Err(e) => w.log.push(Rec::OutErr(e)),
            }
        }
        to_b.extend(w.drain_a());
        to_b
    }

    /// The batch world sends `packets`; returns the batches for B (each a list of
    /// datagrams) and the largest number of segments in one batch.
    /// With `split`, each batch is prepared with `encapsulate_batch_unsealed` and sealed by
    /// its job afterwards, as a worker does outside the device.
    fn send_batch(
        w: &mut World,
        now: Instant,
        packets: &[Vec<u8>],
        out_len: usize,
        split: bool,
    ) -> (Vec<Vec<Vec<u8>>>, usize) {
        let mut groups = Vec::new();
        let mut most = 0;
        let mut rest = packets;
        let mut out = vec![0u8; out_len];
        while !rest.is_empty() {
            let result = if split {
                w.a.encapsulate_batch_unsealed(now, rest, &mut out)
                    .map(|(b, job)| {
                        if let Some(job) = job {
                            job.seal(&mut out).unwrap();
                        }
                        b
                    })
            } else {
                w.a.encapsulate_batch(now, rest, &mut out)
            };
            match result {
                Ok(b) => {
                    assert!(b.consumed >= 1 && b.consumed <= rest.len());
                    rest = &rest[b.consumed..];
                    if let Action::WriteToNetwork { to, len } = b.action {
                        let segs: Vec<Vec<u8>> = out[..len]
                            .chunks(b.segment_size)
                            .map(<[u8]>::to_vec)
                            .collect();
                        assert_eq!(segs.len(), b.segments);
                        // Every segment but the last has the full size (UDP_SEGMENT).
                        assert!(segs[..segs.len() - 1]
                            .iter()
                            .all(|s| s.len() == b.segment_size));
                        most = most.max(b.segments);
                        for s in &segs {
                            w.log.push(Rec::Out(to, s.clone()));
                        }
                        if to == addr(THEIRS) {
                            groups.push(segs);
                        }
                    }
                }
                Err(DeviceError::Dropped(r)) => {
                    w.log.push(Rec::OutErr(DeviceError::Dropped(r)));
                    rest = &rest[1..];
                }
                Err(e) => panic!("batch error {e:?}"),
            }
        }
        groups.extend(w.drain_a().into_iter().map(|d| vec![d]));
        (groups, most)
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        /// One datagram per `decapsulate`.
        Single,
        /// One GRO buffer through `decapsulate_batch`.
        Gro,
        /// In steps, as workers do: every datagram of the batch begun, then every one
        /// opened (no device), then every one finished.
        Split,
    }

    /// B receives one batch: datagram by datagram, as one GRO buffer, or in steps.
    fn deliver(w: &mut World, now: Instant, group: &[Vec<u8>], mode: Mode) -> Vec<Vec<u8>> {
        let mut to_b = Vec::new();
        if mode == Mode::Split {
            let mut segs = group.to_vec();
            let begun: Vec<_> = segs
                .iter_mut()
                .map(|s| {
                    let len = s.len();
                    w.b.decapsulate_begin(now, addr(OURS), s, len)
                })
                .collect();
            let opened: Vec<_> = begun
                .into_iter()
                .zip(segs.iter_mut())
                .map(|(r, s)| {
                    r.map(|b| match b {
                        Begun::Done(a) => Err(a),
                        Begun::Open(o) => Ok(o.open(s)),
                    })
                })
                .collect();
            for (r, seg) in opened.into_iter().zip(&segs) {
                let r = match r {
                    Err(e) => Err(e),
                    Ok(Err(action)) => Ok(action),
                    Ok(Ok(opened)) => w.b.decapsulate_finish(now, addr(OURS), opened, seg),
                };
                let bytes = match r {
                    Ok(Action::WriteToTunnel { len, .. }) => seg[16..16 + len].to_vec(),
                    Ok(Action::WriteToNetwork { len, .. }) => seg[..len].to_vec(),
                    _ => Vec::new(),
                };
                w.log.push(Rec::AtB(r, bytes.clone()));
                if let Ok(Action::WriteToNetwork { .. }) = r {
                    at_a(&mut w.a, &mut w.log, now, &bytes, &mut to_b);
                }
            }
        } else if mode == Mode::Gro {
            let mut buf = group.concat();
            let stride = if group.len() > 1 { group[0].len() } else { 0 };
            let World { a, b, log } = w;
            for (r, seg) in b.decapsulate_batch(now, addr(OURS), &mut buf, stride) {
                let bytes = match r {
                    Ok(Action::WriteToTunnel { len, .. }) => seg[16..16 + len].to_vec(),
                    Ok(Action::WriteToNetwork { len, .. }) => seg[..len].to_vec(),
                    _ => Vec::new(),
                };
                log.push(Rec::AtB(r, bytes.clone()));
                if let Ok(Action::WriteToNetwork { .. }) = r {
                    at_a(a, log, now, &bytes, &mut to_b);
                }
            }
        } else {
            for d in group {
                let mut out = vec![0u8; 65536];
                let r = w.b.decapsulate(now, addr(OURS), d, &mut out);
                let bytes = match r {
                    Ok(Action::WriteToTunnel { len, .. })
                    | Ok(Action::WriteToNetwork { len, .. }) => out[..len].to_vec(),
                    _ => Vec::new(),
                };
                w.log.push(Rec::AtB(r, bytes.clone()));
                if let Ok(Action::WriteToNetwork { .. }) = r {
                    at_a(&mut w.a, &mut w.log, now, &bytes, &mut to_b);
                }
            }
        }
        w.drain_b(now, &mut to_b);
        to_b.extend(w.drain_a());
        to_b
    }

    fn run(ops: Vec<Op>, seed: u64) -> Result<(), TestCaseError> {
        let mk = || {
            let (a, b) = pair(seed);
            World {
                a,
                b,
                log: Vec::new(),
            }
        };
        let (mut one, mut two, mut three) = (mk(), mk(), mk());
        let mut now = Instant::from_secs(1);
        let mut flight: Vec<Vec<Vec<u8>>> = Vec::new();
        // Start with a handshake and a run of eight full-size packets, so that every case
        // has a session and at least one batch of several segments.
        let start = vec![
            Op::Send(vec![(Kind::ToB, 1392)], 2048),
            Op::Deliver { idx: 0, dup: false },
            Op::Deliver { idx: 0, dup: false },
            Op::Send(vec![(Kind::ToB, 1392); 8], 64 * 1452),
        ];
        let n_start = start.len();
        // And end by delivering what is still in flight.
        let heal = vec![Op::Deliver { idx: 0, dup: false }; 24];
        for (i, o) in start.into_iter().chain(ops).chain(heal).enumerate() {
            match o {
                Op::Send(spec, out_len) => {
                    let packets: Vec<Vec<u8>> = spec
                        .iter()
                        .enumerate()
                        .map(|(j, (k, plen))| packet(k, *plen, j as u8))
                        .collect();
                    let flat = send_one(&mut one, now, &packets);
                    let (groups, most) = send_batch(&mut two, now, &packets, out_len, false);
                    prop_assert_eq!(&flat, &groups.concat());
                    let (split, _) = send_batch(&mut three, now, &packets, out_len, true);
                    prop_assert_eq!(&groups, &split);
                    if i == n_start - 1 {
                        prop_assert_eq!(most, 8, "eight full-size packets make one batch");
                    }
                    flight.extend(groups);
                }
                Op::Deliver { idx, dup } => {
                    if flight.is_empty() {
                        continue;
                    }
                    let k = idx % flight.len();
                    let group = if dup {
                        flight[k].clone()
                    } else {
                        flight.remove(k)
                    };
                    let r1 = deliver(&mut one, now, &group, Mode::Single);
                    let r2 = deliver(&mut two, now, &group, Mode::Gro);
                    prop_assert_eq!(&r1, &r2);
                    let r3 = deliver(&mut three, now, &group, Mode::Split);
                    prop_assert_eq!(&r1, &r3);
                    flight.extend(r2.into_iter().map(|d| vec![d]));
                }
                Op::Lose(idx) => {
                    if !flight.is_empty() {
                        let k = idx % flight.len();
                        flight.remove(k);
                    }
                }
                Op::Advance(ms) => now += Duration::from_millis(ms),
                Op::Timers => {
                    let due = [one.a.poll_timeout(), one.b.poll_timeout()]
                        .into_iter()
                        .flatten()
                        .min();
                    if let Some(t) = due {
                        now = now.max(t);
                    }
                    let mut to_b = Vec::new();
                    for w in [&mut one, &mut two, &mut three] {
                        w.a.handle_timeout(now);
                        w.b.handle_timeout(now);
                        let mut v = Vec::new();
                        w.drain_b(now, &mut v);
                        v.extend(w.drain_a());
                        to_b.push(v);
                    }
                    prop_assert_eq!(&to_b[0], &to_b[1]);
                    prop_assert_eq!(&to_b[0], &to_b[2]);
                    flight.extend(to_b.swap_remove(1).into_iter().map(|d| vec![d]));
                }
            }
            for w in [&mut one, &mut two, &mut three] {
                w.state(now);
            }
            for other in [&two, &three] {
                prop_assert_eq!(one.log.len(), other.log.len(), "step {}", i);
                for (r1, r2) in one.log.iter().zip(&other.log) {
                    prop_assert_eq!(r1, r2, "step {}", i);
                }
            }
        }
        // The run did carry data (both worlds alike, checked above).
        let accepted = two
            .log
            .iter()
            .filter(|r| matches!(r, Rec::AtB(Ok(Action::WriteToTunnel { .. }), _)))
            .count();
        prop_assert!(accepted >= 1, "the first packet arrived ({accepted})");
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// A batch gives byte for byte what the same packets one by one give, on both
        /// sides, with the same counters, replay window, timers and events.
        #[test]
        fn batches_match_single_packets(ops in prop::collection::vec(op(), 0..40), seed in any::<u64>()) {
            run(ops, seed)?;
        }
    }
}
