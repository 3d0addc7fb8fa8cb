//! Node frame input with an established session: any sequence of frames (separated by 0xff,
//! which never occurs in UTF-8) must give typed errors, at most one error frame per frame,
//! bounded queues, and leave the established session usable.
//!
//! Speed: the node with its accepted session is built once and cloned per
//! input (cargo-fuzz builds with `--cfg fuzzing`, which makes the machines `Clone`); a fresh
//! init per input cost about a millisecond. Depth: a segment starting with 0xfe stands for one
//! of the valid client frames built at start (prompts, a re-init, a new session, a replay, a
//! cancel, plaintext frames), optionally with one byte flipped: `0xfe k pos_hi pos_lo xor`;
//! one starting with 0xfd advances the clock by `u16` seconds and runs the node's timers.
//! Every other segment is a frame as is.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use segments::Segment;

#[path = "session_segments.rs"]
mod segments;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::session::{
    Address, Client, ClientConfig, ConnectionId, Node, NodeConfig, NodeEvent, Prompt, PromptImage,
    SecretKey, SessionParams, StreamEnd,
};
use sealwire::time::{Duration, Instant};

/// Everything built once: two nodes (plaintext off and on) with session "1" accepted on
/// `conn`, valid client frames, and the prompt that checks at the end that the session
/// still works (the client's next after three prompts, so none of the templates replays it).
struct Base {
    nodes: [Node<ChaCha20Rng>; 2],
    conn: ConnectionId,
    address: Address,
    templates: Vec<String>,
    still_alive: String,
}

fn params(session_id: &str) -> SessionParams {
    SessionParams {
        session_id: session_id.into(),
        job_id: "1".into(),
        chain_id: 84532,
        model: "m".into(),
        price_per_token: 0,
        vector_database: None,
    }
}

fn client(seed: u8) -> Client<ChaCha20Rng> {
    let node_pub = SecretKey::from_bytes(&[0x42; 32])
        .expect("valid key")
        .public_key();
    let identity = SecretKey::from_bytes(&[0x24; 32]).expect("valid key");
    Client::new(
        identity,
        node_pub,
        ClientConfig::default(),
        ChaCha20Rng::from_seed([seed; 32]),
    )
    .expect("valid config")
}

static BASE: LazyLock<Base> = LazyLock::new(|| {
    let t0 = Instant::ZERO;
    let mut c = client(2);
    c.start_session(t0, params("1")).expect("init");
    let init = c.poll_transmit().expect("init frame");
    let mut nodes = [false, true].map(|allow_plaintext| {
        let config = NodeConfig {
            allow_plaintext,
            max_frame_len: 64 * 1024,
            ..NodeConfig::default()
        };
        let key = SecretKey::from_bytes(&[0x42; 32]).expect("valid key");
        Node::new(key, config, ChaCha20Rng::from_seed([1; 32])).expect("valid config")
    });
    let mut conn = None;
    for node in &mut nodes {
        let cn = node.connect().expect("connect");
        node.handle_frame(t0, cn, &init).expect("init ok");
        while node.poll_event().is_some() {}
        node.accept(t0, cn, "1").expect("accept");
        conn = Some(cn);
    }
    let ack = nodes[0].poll_transmit().expect("ack");
    while nodes[1].poll_transmit().is_some() {}
    c.handle_frame(t0, &ack.frame).expect("ack ok");
    while c.poll_event().is_some() {}

    let mut templates = vec![init];
    // Prompts 0, 1 (with everything a prompt can carry) and 2 (escapes), then a cancel.
    let mut rich = Prompt::new("what \"is\"\n\u{1} é→😀");
    rich.thinking = Some("high".into());
    rich.images = vec![PromptImage {
        data: "aGk=".to_string().into(),
        format: "png".into(),
    }];
    rich.search_queries = vec!["latest \\ news".into()];
    rich.web_search = true;
    for p in [Prompt::new("hello"), rich, Prompt::new("a\\\"b")] {
        c.send_prompt(t0, &p).expect("prompt");
        templates.push(c.poll_transmit().expect("prompt frame"));
    }
    c.cancel().expect("cancel");
    templates.push(c.poll_transmit().expect("cancel frame"));
    while c.poll_event().is_some() {}
    // A re-init of session "1" (same identity: an automatic re-key) and a new session "2".
    let mut other = client(3);
    other.start_session(t0, params("1")).expect("re-init");
    templates.push(other.poll_transmit().expect("re-init frame"));
    other.start_session(t0, params("2")).expect("init 2");
    templates.push(other.poll_transmit().expect("init 2 frame"));
    // Legacy plaintext frames.
    let mut plain = client(4);
    plain
        .start_plaintext_session(t0, params("3"), "0xabc")
        .expect("plain init");
    templates.push(plain.poll_transmit().expect("plain init frame"));
    plain
        .handle_frame(t0, r#"{"type":"session_init_ack"}"#)
        .expect("ack");
    plain.send_prompt(t0, &Prompt::new("plain")).expect("plain");
    templates.push(plain.poll_transmit().expect("plain prompt frame"));
    templates.push(r#"{"type":"ping"}"#.into());
    let mut prompt = Prompt::new("still alive");
    prompt.request_id = Some("after-fuzz".into());
    c.send_prompt(t0, &prompt).expect("prompt");
    let still_alive = c.poll_transmit().expect("message frame");
    Base {
        nodes,
        conn: conn.expect("connected"),
        address: c.address(),
        templates,
        still_alive,
    }
});

fuzz_target!(|data: &[u8]| {
    let base = &*BASE;
    let mut node = base.nodes[usize::from(data.first().is_some_and(|b| b & 1 == 1))].clone();
    let conn = base.conn;
    let mut now = Instant::ZERO;
    // Whether the input may legitimately have replaced or closed session "1".
    let mut disturbed = false;
    // One init per input: each costs an ECDH (and a recovery when it decrypts), dearer under
    // the sanitizers than all the rest of an input; one reaches every path of the init.
    let mut init_seen = false;

    // At most MAX_SEGMENTS frames per input: a session's states are a few frames deep, and
    // inputs of hundreds of frames would only repeat them at a hundred times the price.
    for segment in data.split(|b| *b == 0xff).take(segments::MAX_SEGMENTS) {
        now += Duration::from_millis(1);
        match Segment::parse(segment, &base.templates) {
            Segment::Wait(secs) => {
                now += Duration::from_secs(u64::from(secs));
                node.handle_timeout(now);
                disturbed = true;
                while node.poll_transmit().is_some() {}
            }
            Segment::Frame(text) => {
                if text.contains("session_init") {
                    if init_seen {
                        continue;
                    }
                    init_seen = true;
                }
                let result = node.handle_frame(now, conn, &text);
                let errors = std::iter::from_fn(|| node.poll_transmit())
                    .filter(|t| t.frame.starts_with(r#"{"type":"error""#))
                    .count();
                if result.is_err() {
                    assert_eq!(errors, 1, "exactly one error frame per rejected frame");
                } else {
                    assert_eq!(errors, 0, "no error frame for an accepted frame");
                }
            }
        }
        // The embedder: accept its own client, refuse strangers, answer prompts.
        while let Some(e) = node.poll_event() {
            match e {
                NodeEvent::SessionRequested(r) => {
                    let _ = if r.client_address == Some(base.address) {
                        node.accept(now, r.conn, &r.session_id)
                    } else {
                        node.reject(r.conn, &r.session_id, "not yours")
                    };
                }
                NodeEvent::Prompt(p) => {
                    // One chunk and the sealed end: each seal is dear under the sanitizers.
                    let _ =
                        node.send_chunk(now, p.conn, &p.session_id, &p.request_id, &p.prompt, true);
                    let _ = node.finish(
                        now,
                        p.conn,
                        &p.session_id,
                        &p.request_id,
                        StreamEnd::complete(1, 1, 1),
                    );
                }
                NodeEvent::Cancel {
                    conn, session_id, ..
                } => {
                    let _ = node.finish(now, conn, &session_id, "c", StreamEnd::complete(0, 0, 0));
                }
                NodeEvent::SessionRekeyed { .. } | NodeEvent::SessionClosed { .. } => {
                    disturbed = true;
                }
                _ => {}
            }
        }
        while node.poll_transmit().is_some() {}
    }

    // Unless the input re-keyed or closed it, the established session still works. Checked
    // for one input in eight (chosen by its length): the AEAD open of the check, slow under the
    // sanitizers, cost more than the rest of a short input, and the fuzzer varies lengths.
    if !disturbed && data.len() % 8 == 0 {
        node.handle_frame(now, conn, &base.still_alive)
            .expect("session survives any garbage");
        let mut got = false;
        while let Some(e) = node.poll_event() {
            if let NodeEvent::Prompt(p) = e {
                got |= &*p.prompt == "still alive";
            }
        }
        assert!(got, "prompt delivered after fuzz input");
    }
});
