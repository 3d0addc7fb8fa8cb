//! Frames into an established chat. Setup, once per process: an initiator A and a responder B
//! complete the first handshake in-process and exchange a message; every input starts from a
//! clone of that pair (`Chat` is `Clone` only in cargo-fuzz builds, `--cfg fuzzing`), so an
//! input pays for its own frames, not for two identities and a handshake. The input is then cut into chunks (byte 0,
//! bit 0: separated by 0xff, or each prefixed by a u16 BE length) and each chunk is one frame
//! injected into one side (bit 1: B, else A; bit 2: through `open_in_place`, else
//! `handle_frame`). A 2-byte chunk `0xfe, op` is instead a step of genuine traffic, so the
//! fuzzer reaches rekeys, skipped keys and grace periods: A or B sends a message that is
//! delivered, a rekey, or one second passes. At most 32 chunks are read.
//!
//! Properties: nothing panics; no injected frame closes a chat (only an authenticated close
//! does, and nobody here sends one, nor can the input forge one); skipped keys and queues stay
//! bounded; and afterwards, once queued frames are delivered, a fresh message from the genuine
//! peer still opens on both sides.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::chat::{Chat, ChatConfig, ChatEvent, ChatId, Opened};
use sealwire::crypto::ed25519::IdentityKey;
use sealwire::time::{Duration, Instant};

/// The chat id of `vectors/chat/`, so the seed frames pass the chat id check.
const CHAT_ID: [u8; 16] = *b"sealwire-vector!";

type C = Chat<ChaCha20Rng>;

fn config() -> ChatConfig {
    let mut c = ChatConfig::new(ChatId::new(CHAT_ID));
    // One handshake per throttle period (default 3) and one genuine rekey per input: a
    // handshake costs as much as a hundred frames, and this keeps the target above 5 000
    // inputs/s. Rekeys the throttle refuses are retried by the timers of the final check; the
    // simultaneous-rekey tie-break is held by tests/chat_rules.rs and chat_props.rs.
    c.rekey.throttle_max = 1;
    c
}

/// Drains `c`'s events; no chat may report a close.
fn drain(c: &mut C) -> Vec<Vec<u8>> {
    let mut msgs = Vec::new();
    while let Some(e) = c.poll_event() {
        match e {
            ChatEvent::Closed { .. } => panic!("closed without an authenticated close: {e:?}"),
            ChatEvent::Message { plaintext, .. } => msgs.push(plaintext),
            _ => {}
        }
    }
    msgs
}

/// Delivers every queued frame both ways until quiet. Errors are expected here (replies to
/// injected handshake messages reach a side that is not waiting for them).
fn pump(a: &mut C, b: &mut C, now: Instant) {
    for _ in 0..64 {
        let mut moved = false;
        while let Some(f) = a.poll_transmit() {
            let _ = b.handle_frame(now, &f);
            moved = true;
        }
        while let Some(f) = b.poll_transmit() {
            let _ = a.handle_frame(now, &f);
            moved = true;
        }
        if !moved {
            return;
        }
    }
    panic!("the pair never went quiet");
}

fn inject(target: &mut C, now: Instant, frame: &[u8], in_place: bool) {
    if in_place {
        let mut buf = frame.to_vec();
        if let Ok(Opened::Message { plaintext, .. }) = target.open_in_place(now, &mut buf) {
            assert!(plaintext.end <= buf.len());
        }
    } else {
        let _ = target.handle_frame(now, frame);
    }
    assert!(!target.is_closed(), "an injected frame closed the chat");
    assert!(target.skipped_keys() <= 1024);
}

/// The established pair every input starts from, and the time it was built at.
fn established() -> (C, C, Instant) {
    let now = Instant::from_secs(1000);
    let (id_a, id_b) = (
        IdentityKey::from_seed([0x11; 32]),
        IdentityKey::from_seed([0x22; 32]),
    );
    let mut a =
        Chat::initiator(now, id_a, config(), ChaCha20Rng::from_seed([1; 32])).expect("initiator");
    let mut b =
        Chat::responder(id_b, config(), ChaCha20Rng::from_seed([2; 32])).expect("responder");
    pump(&mut a, &mut b, now);
    assert!(a.is_established() && b.is_established());
    a.send(now, b"hello").expect("send");
    b.send(now, b"hello back").expect("send");
    pump(&mut a, &mut b, now);
    assert_eq!(drain(&mut b), [b"hello".to_vec()]);
    assert_eq!(drain(&mut a), [b"hello back".to_vec()]);
    (a, b, now)
}

static ESTABLISHED: OnceLock<(C, C, Instant)> = OnceLock::new();

/// Chunks read per input; the rest of a longer input is ignored.
const MAX_CHUNKS: usize = 32;
/// Genuine rekeys started per input.
const MAX_REKEYS: usize = 1;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (a0, b0, t0) = ESTABLISHED.get_or_init(established);
    let (mut a, mut b, mut now) = (a0.clone(), b0.clone(), *t0);

    let chunks: Vec<&[u8]> = if flags & 1 == 0 {
        rest.split(|x| *x == 0xff).collect()
    } else {
        let mut v = Vec::new();
        let mut r = rest;
        while let Some((len, tail)) = r.split_first_chunk::<2>() {
            let (frame, tail) =
                tail.split_at(usize::from(u16::from_be_bytes(*len)).min(tail.len()));
            v.push(frame);
            r = tail;
        }
        v
    };
    let to_b = flags & 2 != 0;
    let in_place = flags & 4 != 0;
    // At most MAX_CHUNKS frames or steps: deep states are a few steps from the established
    // start, and a bounded input keeps every execution cheap.
    let mut rekeys = 0;
    for chunk in chunks.into_iter().take(MAX_CHUNKS) {
        match *chunk {
            [0xfe, op] => {
                match op % 5 {
                    0 => {
                        let _ = a.send(now, &[op]);
                    }
                    1 => {
                        let _ = b.send(now, &[op]);
                    }
                    // One genuine rekey per input (see `config`).
                    2 | 3 if rekeys < MAX_REKEYS => {
                        rekeys += 1;
                        let _ = if op % 5 == 2 {
                            a.rekey(now)
                        } else {
                            b.rekey(now)
                        };
                    }
                    2 | 3 => {}
                    _ => {
                        now += Duration::from_secs(1);
                        a.handle_timeout(now);
                        b.handle_timeout(now);
                    }
                }
                pump(&mut a, &mut b, now);
            }
            _ => {
                let target = if to_b { &mut b } else { &mut a };
                inject(target, now, chunk, in_place);
            }
        }
        drain(&mut a);
        drain(&mut b);
    }

    // Deliver what is queued (e.g. a rekey started by a desync), let every timer fire, then
    // both genuine peers must still reach each other.
    pump(&mut a, &mut b, now);
    for _ in 0..4 {
        now += Duration::from_secs(11);
        a.handle_timeout(now);
        b.handle_timeout(now);
        pump(&mut a, &mut b, now);
    }
    drain(&mut a);
    drain(&mut b);
    assert!(a.is_established() && b.is_established());
    a.send(now, b"after the fuzz").expect("A can still send");
    b.send(now, b"and back").expect("B can still send");
    pump(&mut a, &mut b, now);
    assert!(
        drain(&mut b).contains(&b"after the fuzz".to_vec()),
        "B no longer opens A"
    );
    assert!(
        drain(&mut a).contains(&b"and back".to_vec()),
        "A no longer opens B"
    );
});
