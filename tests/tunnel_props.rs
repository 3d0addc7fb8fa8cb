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
