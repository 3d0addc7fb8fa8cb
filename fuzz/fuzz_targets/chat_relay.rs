//! The keyless relay machine under arbitrary input. Setup, built once and cloned per input:
//! apps A and B registered and sharing chat X (A pinned B; B acknowledges what it kept), app C
//! registered alone in chat Y.
//! The input is a list of operations, each one byte of opcode and its operands: a new stream;
//! `Register`, `Proof`, `Start` or `Frame` with arbitrary bytes on any stream; a well-formed
//! frame into X or Y (so routing, budgets and throttles are reached); an honest registration
//! of one of four identities on a new stream (replacing A's, B's or C's, or a fifth app);
//! deliveries; acknowledgements (honest registrations may ask for them); disconnects; and clock jumps through registration timeouts and idle expiry. At most
//! 32 operations, 2 of them honest registrations, are read per input.
//!
//! Properties: nothing panics; the relay's queues never drop (the harness drains them); a frame
//! is only ever delivered to a registered stream whose identity is a participant of the frame's
//! chat; the byte budget holds; every accepted frame is queued, delivered or counted as dropped.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::chat::relay::{
    prove_registration, ConnId, Downlink, Relay, RelayConfig, Transmit, Uplink,
};
use sealwire::chat::{ChatId, FrameHeader, FrameKind, MSG1_BODY_LEN, TAG_LEN};
use sealwire::crypto::ed25519::IdentityKey;
use sealwire::time::{Duration, Instant};

const CHAT_X: [u8; 16] = [0x58; 16];
const CHAT_Y: [u8; 16] = [0x59; 16];
const SEEDS: [[u8; 32]; 4] = [[0xa1; 32], [0xb2; 32], [0xc3; 32], [0xd4; 32]];

type R = Relay<ChaCha20Rng>;

fn config() -> RelayConfig {
    let mut c = RelayConfig::default();
    c.mailbox_frames = 8;
    c.pending_frames = 4;
    c.max_queued_bytes = 4096;
    c.max_apps = 4;
    c.max_streams = 8;
    c.max_chats = 4;
    c.max_chats_per_stream = 3;
    c.chat_idle_timeout = Duration::from_secs(600);
    c
}

/// The identity of `seed`, derived once per process (a key setup per input would dominate).
fn identity(seed: [u8; 32]) -> &'static IdentityKey {
    static KEYS: OnceLock<Vec<IdentityKey>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| SEEDS.iter().map(|s| IdentityKey::from_seed(*s)).collect());
    let i = SEEDS.iter().position(|s| *s == seed).expect("a known seed");
    &keys[i]
}

/// Operations read per input, and honest registrations among them (each costs a signature and
/// its check): deep states are a few operations away, and bounded inputs stay cheap.
const MAX_OPS: usize = 32;
const MAX_REGISTRATIONS: usize = 2;

/// Registers `seed` on a new stream; `None` if the relay refused.
fn register(relay: &mut R, now: Instant, seed: [u8; 32], acks: bool) -> Option<ConnId> {
    let key = identity(seed);
    let conn = relay.connect(now).ok()?;
    let up = Uplink::Register {
        identity: key.public().as_bytes().to_vec(),
        app_id: "fuzz".into(),
        acks,
    };
    relay.handle_uplink(now, conn, up).ok()?;
    let nonce = std::iter::from_fn(|| relay.poll_transmit()).find_map(|t| match t.message {
        Downlink::Challenge { nonce } if t.to == conn => Some(nonce),
        _ => None,
    })?;
    let signature = prove_registration(&key, &nonce).to_vec();
    relay
        .handle_uplink(now, conn, Uplink::Proof { signature })
        .ok()?;
    Some(conn)
}

fn start(relay: &mut R, now: Instant, conn: ConnId, chat: [u8; 16], pin: Option<usize>) {
    let up = Uplink::Start {
        chat_id: chat.to_vec(),
        peer_identity: pin
            .map(|i| {
                IdentityKey::from_seed(SEEDS[i])
                    .public()
                    .as_bytes()
                    .to_vec()
            })
            .unwrap_or_default(),
    };
    let _ = relay.handle_uplink(now, conn, up);
}

struct Setup {
    relay: R,
    conns: Vec<ConnId>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let now = Instant::from_secs(1);
        let mut relay = Relay::new(config(), ChaCha20Rng::from_seed([7; 32])).expect("config");
        let a = register(&mut relay, now, SEEDS[0], false).expect("A");
        let b = register(&mut relay, now, SEEDS[1], true).expect("B");
        let c = register(&mut relay, now, SEEDS[2], false).expect("C");
        start(&mut relay, now, a, CHAT_X, Some(1));
        start(&mut relay, now, b, CHAT_X, None);
        start(&mut relay, now, c, CHAT_Y, None);
        while relay.poll_transmit().is_some() {}
        while relay.poll_event().is_some() {}
        assert_eq!(relay.members(&ChatId::new(CHAT_X)).count(), 2);
        Setup {
            relay,
            conns: vec![a, b, c],
        }
    })
}

fn frame(chat: [u8; 16], kind: u8, len: usize) -> Vec<u8> {
    let (kind, body) = if kind & 1 == 0 {
        (FrameKind::Data, (len % 300) + TAG_LEN)
    } else {
        (FrameKind::HandshakeInit, MSG1_BODY_LEN)
    };
    let h = FrameHeader {
        kind,
        chat_id: ChatId::new(chat),
        epoch: 0,
        counter: 0,
    };
    let mut f = h.encode().to_vec();
    f.resize(f.len() + body, 0x17);
    f
}

/// Reads a length-prefixed chunk (one byte of length).
fn chunk<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let Some((&len, rest)) = data.split_first() else {
        return &[];
    };
    let (c, rest) = rest.split_at(usize::from(len).min(rest.len()));
    *data = rest;
    c
}

fn byte(data: &mut &[u8]) -> u8 {
    let Some((&b, rest)) = data.split_first() else {
        return 0;
    };
    *data = rest;
    b
}

fuzz_target!(|data: &[u8]| {
    let s = setup();
    let mut relay = s.relay.clone();
    let mut conns = s.conns.clone();
    let mut now = Instant::from_secs(2);
    let mut data = data;
    let max_bytes = config().max_queued_bytes;
    let (mut ops, mut registrations) = (0, 0);
    while !data.is_empty() && ops < MAX_OPS {
        ops += 1;
        let op = byte(&mut data);
        let pick = |conns: &[ConnId], b: u8| conns[usize::from(b) % conns.len()];
        match op % 12 {
            0 => {
                if let Ok(c) = relay.connect(now) {
                    conns.push(c);
                }
            }
            1 => {
                let c = pick(&conns, byte(&mut data));
                let identity = chunk(&mut data).to_vec();
                let app_id = String::from_utf8_lossy(chunk(&mut data)).into_owned();
                let acks = byte(&mut data) & 1 == 1;
                let up = Uplink::Register {
                    identity,
                    app_id,
                    acks,
                };
                let _ = relay.handle_uplink(now, c, up);
            }
            2 => {
                let c = pick(&conns, byte(&mut data));
                let signature = chunk(&mut data).to_vec();
                let _ = relay.handle_uplink(now, c, Uplink::Proof { signature });
            }
            3 => {
                let c = pick(&conns, byte(&mut data));
                let chat_id = chunk(&mut data).to_vec();
                let peer_identity = chunk(&mut data).to_vec();
                let up = Uplink::Start {
                    chat_id,
                    peer_identity,
                };
                let _ = relay.handle_uplink(now, c, up);
            }
            4 => {
                let c = pick(&conns, byte(&mut data));
                let f = chunk(&mut data).to_vec();
                let _ = relay.handle_uplink(now, c, Uplink::Frame(f));
            }
            5 | 6 => {
                let c = pick(&conns, byte(&mut data));
                let chat = if op % 12 == 5 { CHAT_X } else { CHAT_Y };
                let (kind, len) = (byte(&mut data), byte(&mut data));
                let f = frame(chat, kind, usize::from(len) * 3);
                let _ = relay.handle_uplink(now, c, Uplink::Frame(f));
            }
            7 if registrations < MAX_REGISTRATIONS => {
                registrations += 1;
                let b = byte(&mut data);
                let seed = SEEDS[usize::from(b) % SEEDS.len()];
                if let Some(c) = register(&mut relay, now, seed, b & 0x80 != 0) {
                    conns.push(c);
                    let chat = if byte(&mut data) & 1 == 0 {
                        CHAT_X
                    } else {
                        CHAT_Y
                    };
                    start(&mut relay, now, c, chat, None);
                }
            }
            7 => {} // the input's honest registrations are spent
            8 => {
                let c = pick(&conns, byte(&mut data));
                let recipient = relay.identity(c);
                for _ in 0..=(byte(&mut data) % 16) {
                    let Some(f) = relay.poll_frame(c) else { break };
                    let (h, _) = FrameHeader::parse_checked(&f, 65_536)
                        .expect("routed frames are well-formed");
                    let recipient = recipient.expect("only a registered stream gets frames");
                    assert!(
                        relay.members(&h.chat_id).any(|m| m == recipient),
                        "delivered to a non-member"
                    );
                }
            }
            9 => {
                let c = pick(&conns, byte(&mut data));
                relay.disconnect(c);
            }
            10 => {
                // An acknowledgement, in range or not, from any stream.
                let c = pick(&conns, byte(&mut data));
                let frames = u64::from(byte(&mut data) % 24);
                let _ = relay.handle_uplink(now, c, Uplink::Ack { frames });
            }
            _ => {
                now += Duration::from_secs(u64::from(byte(&mut data)) * 10);
                for _ in 0..16 {
                    match relay.poll_timeout() {
                        Some(t) if t <= now => relay.handle_timeout(now),
                        _ => break,
                    }
                    while relay.poll_event().is_some() {}
                    while relay.poll_transmit().is_some() {}
                }
            }
        }
        // The transport's side: every message goes out, every ended stream is closed.
        while let Some(Transmit { to, message }) = relay.poll_transmit() {
            if let Downlink::End(_) = message {
                relay.disconnect(to);
            }
        }
        while relay.poll_event().is_some() {}
        let st = relay.stats();
        assert!(st.queued_bytes <= max_bytes);
        // Every routed frame is delivered, dropped (counted) or still queued; a frame an app
        // has not acknowledged is both delivered and queued, and may be delivered again.
        assert!(
            st.frames_routed <= st.frames_delivered + st.frames_dropped + st.queued_frames as u64
        );
        assert_eq!((st.transmits_dropped, st.events_dropped), (0, 0));
    }
});
