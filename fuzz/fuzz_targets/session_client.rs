//! Client frame input: a client waiting for an answer receives arbitrary node frames
//! (separated by 0xff). It must never panic, its queues stay bounded, and an answer is
//! `Finished` (authenticated) only when every chunk and the sealed end of answer arrived.
//!
//! Speed: the client with its session and a prompt in flight is built once and cloned per
//! input (cargo-fuzz builds with `--cfg fuzzing`, which makes the machines `Clone`); a fresh
//! session per input cost an ECDH and a signature. Depth: a segment starting with 0xfe stands
//! for one of the valid node frames built at start (the answer's chunks, its sealed end,
//! `stream_end`, frames of another answer, an ack, an error, a pong), optionally with one byte
//! flipped: `0xfe k pos_hi pos_lo xor`; one starting with 0xfd advances the clock by `u16`
//! milliseconds. Every other segment is a frame as is.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use segments::Segment;

#[path = "session_segments.rs"]
mod segments;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::session::{
    Client, ClientConfig, ClientEvent, ErrorCode, Node, NodeConfig, Prompt, SecretKey,
    SessionParams, StreamEnd,
};
use sealwire::time::{Duration, Instant};

/// Everything built once: a client whose prompt "r" is waiting for its answer (after an
/// earlier answer "s" under the same key), and the node frames of both answers and others.
struct Base {
    client: Client<ChaCha20Rng>,
    templates: Vec<String>,
}

/// The texts of the answer to "r", in chunks.
const ANSWER: [&str; 3] = ["Hello ", "wide ", "world"];

static BASE: LazyLock<Base> = LazyLock::new(|| {
    let t0 = Instant::ZERO;
    let node_key = SecretKey::from_bytes(&[0x42; 32]).expect("key");
    let node_pub = node_key.public_key();
    let mut node = Node::new(
        node_key,
        NodeConfig::default(),
        ChaCha20Rng::from_seed([1; 32]),
    )
    .expect("node");
    let identity = SecretKey::from_bytes(&[0x24; 32]).expect("key");
    let config = ClientConfig {
        max_frame_len: 64 * 1024,
        ..ClientConfig::default()
    };
    let mut client =
        Client::new(identity, node_pub, config, ChaCha20Rng::from_seed([2; 32])).expect("client");
    let params = SessionParams {
        session_id: "1".into(),
        job_id: "1".into(),
        chain_id: 84532,
        model: "m".into(),
        price_per_token: 0,
        vector_database: None,
    };
    client.start_session(t0, params).expect("init");
    let conn = node.connect().expect("connect");
    node.handle_frame(t0, conn, &client.poll_transmit().expect("init frame"))
        .expect("init ok");
    while node.poll_event().is_some() {}
    node.accept(t0, conn, "1").expect("accept");
    let mut templates = Vec::new();
    let ack = node.poll_transmit().expect("ack").frame;
    client.handle_frame(t0, &ack).expect("ack ok");
    templates.push(ack);
    while client.poll_event().is_some() {}

    // An earlier answer "s" under the same key, received whole, then the answer to "r"
    // (waited for). Frames of "s" replayed must not fit "r", even with its id.
    for (rid, texts) in [("s", &ANSWER[..2]), ("r", &ANSWER[..])] {
        let mut prompt = Prompt::new("q");
        prompt.request_id = Some(rid.into());
        client.send_prompt(t0, &prompt).expect("prompt");
        let message = client.poll_transmit().expect("message");
        node.handle_frame(t0, conn, &message).expect("prompt ok");
        while node.poll_event().is_some() {}
        for (i, t) in texts.iter().enumerate() {
            node.send_chunk(t0, conn, "1", rid, t, i + 1 == texts.len())
                .expect("chunk");
        }
        node.finish(t0, conn, "1", rid, StreamEnd::complete(1, 3, 8192))
            .expect("finish");
        while let Some(t) = node.poll_transmit() {
            if rid == "s" {
                client.handle_frame(t0, &t.frame).expect("earlier answer");
            }
            templates.push(t.frame);
        }
        while client.poll_event().is_some() {}
    }
    node.send_error(
        conn,
        Some("1"),
        Some("r"),
        ErrorCode::InferenceFailed,
        "boom",
    )
    .expect("error");
    node.send_token_limit_error(conn, Some("1"), Some("r"), 9000, 8192)
        .expect("token limit");
    while let Some(t) = node.poll_transmit() {
        templates.push(t.frame);
    }
    templates.push(r#"{"type":"pong"}"#.into());
    templates.push(r#"{"type":"stream_chunk","content":"plain","id":"r"}"#.into());
    Base { client, templates }
});

fuzz_target!(|data: &[u8]| {
    let base = &*BASE;
    let mut client = base.client.clone();
    let mut now = Instant::ZERO;
    let mut chunks = Vec::new();
    // At most MAX_SEGMENTS frames per input: a session's states are a few frames deep, and
    // inputs of hundreds of frames would only repeat them at a hundred times the price.
    for segment in data.split(|b| *b == 0xff).take(segments::MAX_SEGMENTS) {
        now += Duration::from_millis(5);
        match Segment::parse(segment, &base.templates) {
            Segment::Wait(ms) => now += Duration::from_millis(u64::from(ms)),
            Segment::Frame(frame) => {
                let _ = client.handle_frame(now, &frame);
            }
        }
        if client.poll_timeout().is_some_and(|t| t <= now) {
            client.handle_timeout(now);
        }
        let mut n = 0;
        let mut ended = false;
        while let Some(e) = client.poll_event() {
            n += 1;
            assert!(n < 10_000, "event queue is bounded");
            match e {
                ClientEvent::Chunk { text, .. } => chunks.push(text),
                // An authenticated end is the whole answer, in order: nothing an attacker
                // on the path can shorten, reorder, extend or splice from the earlier one.
                ClientEvent::Finished {
                    text,
                    authenticated: true,
                    ..
                } => {
                    assert_eq!(text, ANSWER.concat());
                    assert_eq!(chunks, ANSWER);
                    ended = true;
                }
                ClientEvent::Truncated { text } => {
                    assert!(ANSWER.concat().starts_with(&text), "a prefix: {text:?}");
                    ended = true;
                }
                ClientEvent::Pong | ClientEvent::SessionReady => {}
                _ => ended = true,
            }
        }
        while client.poll_transmit().is_some() {}
        // A new prompt once the answer is over (the frames above then belong to no answer,
        // unless a flipped byte took their id away).
        if ended {
            chunks.clear();
            let _ = client.send_prompt(now, &Prompt::new("again"));
        }
    }
});
