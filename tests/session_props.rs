//! Property tests: round trips, single-bit tampering, index monotonicity, expiry under virtual
//! time, determinism. Case counts are modest (debug-mode secp256k1 is slow).
//!
//! Tampering rule, stated precisely: after flipping one bit of a valid frame (skipping flips
//! that make the text invalid UTF-8), the node must reject it with exactly one error frame and
//! no state change — unless the flip only touches what the protocol does not authenticate:
//! * init: envelope `session_id`, `chain_id`, `alg`, and the *case* of hex digits
//!   (`a` ↔ `A` decode to the same bytes);
//! * message: `id`, `web_search`, `max_searches`, `search_queries`, and hex case.
//!
//! Such a frame may be accepted, and then it must carry the same authenticated content (same
//! recovered client, same session key; same prompt).

mod support {
    pub mod session;
}

use proptest::prelude::*;
use sealwire::session::*;
use sealwire::time::{Duration, Instant};
use serde_json::{json, Value};
use support::session::*;

const K1: [u8; 32] = [0xa1; 32];
const T0: Instant = Instant::from_secs(100);

type TestNode = sealwire::session::Node<rand_chacha::ChaCha20Rng>;

fn established(seed: u64) -> (TestNode, ConnectionId) {
    let mut node = node(NodeConfig::default(), seed);
    let conn = node.connect().unwrap();
    establish(&mut node, T0, conn, &init_frame(K1, 1, "1", "2")).unwrap();
    assert_eq!(drain(&mut node).len(), 1);
    (node, conn)
}

fn flip(frame: &str, byte: usize, bit: u8) -> Option<String> {
    let mut b = frame.as_bytes().to_vec();
    let i = byte % b.len();
    b[i] ^= 1 << (bit % 8);
    String::from_utf8(b).ok()
}

fn lower(v: &Value) -> Value {
    match v.as_str() {
        Some(s) => Value::String(s.to_lowercase()),
        None => v.clone(),
    }
}

/// The authenticated content of an init, as the node must see it.
fn norm_init(v: &Value) -> Value {
    let p = &v["payload"];
    json!({
        "type": v["type"], "job_id": v["job_id"],
        "payload": {
            "ephPubHex": lower(&p["ephPubHex"]), "saltHex": lower(&p["saltHex"]),
            "nonceHex": lower(&p["nonceHex"]), "ciphertextHex": lower(&p["ciphertextHex"]),
            "signatureHex": lower(&p["signatureHex"]), "recid": p["recid"],
            "info": p["info"], "aadHex": lower(&p["aadHex"]),
        }
    })
}

fn norm_message(v: &Value) -> Value {
    let p = &v["payload"];
    json!({
        "type": v["type"], "session_id": v["session_id"],
        "payload": {
            "ciphertextHex": lower(&p["ciphertextHex"]), "nonceHex": lower(&p["nonceHex"]),
            "aadHex": lower(&p["aadHex"]),
        }
    })
}

/// Splits `text` into pieces at the given character positions.
fn split_chars(text: &str, cuts: &[usize]) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (chars.len() + 1)).collect();
    points.push(chars.len());
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for p in points {
        if p > start {
            out.push(chars[start..p].iter().collect());
            start = p;
        }
    }
    out
}

fn original_init() -> &'static str {
    static F: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    F.get_or_init(|| init_frame(K1, 1, "1", "2"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn client_node_round_trip_for_any_prompt_ids_and_chunking(
        prompt in "\\PC{0,64}",
        answer in "\\PC{0,64}",
        session in 0u64..u64::MAX,
        job in 0u64..u64::MAX,
        cuts in proptest::collection::vec(0usize..80, 0..6),
        seed in any::<u64>(),
    ) {
        let (sid, jid) = (session.to_string(), job.to_string());
        let mut node = node(NodeConfig::default(), seed);
        let conn = node.connect().unwrap();
        let mut c = client(K1, seed);
        c.start_session(T0, params(&sid, &jid)).unwrap();
        establish(&mut node, T0, conn, &c.poll_transmit().unwrap()).unwrap();
        for f in drain(&mut node) { c.handle_frame(T0, &f).unwrap(); }
        prop_assert_eq!(c.poll_event(), Some(ClientEvent::SessionReady));
        let rid = c.send_prompt(T0, &Prompt::new(prompt.clone())).unwrap();
        node.handle_frame(T0, conn, &c.poll_transmit().unwrap()).unwrap();
        let got = events(&mut node);
        let Some(NodeEvent::Prompt(p)) = got.first() else { panic!("no prompt") };
        prop_assert_eq!(p.prompt.as_str(), prompt.as_str());
        prop_assert_eq!(&p.session_id, &sid);
        let pieces = split_chars(&answer, &cuts);
        for (i, piece) in pieces.iter().enumerate() {
            node.send_chunk(T0, conn, &sid, &rid, piece, i + 1 == pieces.len()).unwrap();
        }
        node.finish(T0, conn, &sid, &rid, StreamEnd::complete(1, 1, 1)).unwrap();
        for f in drain(&mut node) { c.handle_frame(T0, &f).unwrap(); }
        let mut chunks = Vec::new();
        let mut finished = None;
        while let Some(e) = c.poll_event() {
            match e {
                ClientEvent::Chunk { text, .. } => chunks.push(text),
                ClientEvent::Finished { text, authenticated: true, .. } => finished = Some(text),
                e => panic!("{e:?}"),
            }
        }
        prop_assert_eq!(chunks, pieces);
        prop_assert_eq!(finished, Some(answer));
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_single_bit_flip_of_an_init_is_rejected_or_only_touches_unauthenticated_fields(
        byte in any::<usize>(), bit in 0u8..8,
    ) {
        let original = original_init();
        let Some(mutated) = flip(original, byte, bit) else { return Ok(()) };
        let benign = serde_json::from_str::<Value>(&mutated)
            .map(|m| norm_init(&m) == norm_init(&serde_json::from_str(original).unwrap()))
            .unwrap_or(false);
        let mut node = node(NodeConfig::default(), 1);
        let conn = node.connect().unwrap();
        let r = node.handle_frame(T0, conn, &mutated);
        let evs = events(&mut node);
        let mut accepted = false;
        for e in &evs {
            if let NodeEvent::SessionRequested(req) = e {
                if req.client_address == Some(client_address()) {
                    node.accept(T0, conn, &req.session_id).unwrap();
                    accepted = true;
                    prop_assert!(benign, "accepted a tampered init: {mutated}");
                    // Same session key: a chunk opens under K1.
                    node.send_chunk(T0, conn, &req.session_id, "p", "probe", false).unwrap();
                    let f = drain(&mut node);
                    prop_assert_eq!(open(&K1, f.last().unwrap()).unwrap().0, b"probe".to_vec());
                } else {
                    node.reject(conn, &req.session_id, "no").unwrap();
                }
            }
        }
        if !accepted {
            let frames = drain(&mut node);
            prop_assert_eq!(frames.len(), 1, "{:?} {:?}", r, frames);
            prop_assert!(error_code(&frames[0]).is_some());
            let st = node.stats();
            prop_assert_eq!(st.sessions_active + st.sessions_pending, 0);
        }
    }

    #[test]
    fn any_single_bit_flip_of_a_message_is_rejected_or_only_touches_unauthenticated_fields(
        byte in any::<usize>(), bit in 0u8..8,
    ) {
        let original = indexed_message(&K1, "1", 0, "hello");
        let Some(mutated) = flip(&original, byte, bit) else { return Ok(()) };
        let benign = serde_json::from_str::<Value>(&mutated)
            .map(|m| norm_message(&m) == norm_message(&serde_json::from_str(&original).unwrap()))
            .unwrap_or(false);
        let (mut node, conn) = established(1);
        let r = node.handle_frame(T0, conn, &mutated);
        let evs = events(&mut node);
        let frames = drain(&mut node);
        match r {
            Ok(()) => {
                prop_assert!(benign, "accepted a tampered message: {mutated}");
                let Some(NodeEvent::Prompt(p)) = evs.first() else { panic!("{evs:?}") };
                prop_assert_eq!(p.prompt.as_str(), "hello");
            }
            Err(_) => {
                prop_assert_eq!(frames.len(), 1);
                prop_assert!(evs.is_empty());
                // State unchanged: the untampered message (index 0) is still accepted.
                node.handle_frame(T0, conn, &original).unwrap();
                prop_assert!(matches!(events(&mut node).first(), Some(NodeEvent::Prompt(_))));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn indices_are_accepted_iff_strictly_above_the_highest_accepted(
        indices in proptest::collection::vec(0u64..16, 1..12),
    ) {
        let (mut node, conn) = established(2);
        let mut highest: Option<u64> = None;
        for (k, i) in indices.into_iter().enumerate() {
            let r = node.handle_frame(T0, conn, &indexed_message(&K1, "1", i, &format!("m{k}")));
            events(&mut node);
            let frames = drain(&mut node);
            let should = highest.is_none_or(|h| i > h);
            prop_assert_eq!(r.is_ok(), should, "index {} after {:?}", i, highest);
            if should {
                highest = Some(i);
            } else {
                let code = error_code(&frames[0]);
                prop_assert_eq!(code.as_deref(), Some("REPLAYED_MESSAGE"));
            }
        }
    }

    #[test]
    fn keys_live_exactly_until_ttl_or_idle_under_virtual_time(
        ttl in 10u64..100, idle in 5u64..50,
        ops in proptest::collection::vec((0u64..40, any::<bool>()), 1..12),
    ) {
        let cfg = NodeConfig {
            session_ttl: Duration::from_secs(ttl),
            idle_timeout: Duration::from_secs(idle),
            ..NodeConfig::default()
        };
        let mut node = node(cfg, 3);
        let conn = node.connect().unwrap();
        establish(&mut node, T0, conn, &init_frame(K1, 1, "1", "2")).unwrap();
        drain(&mut node);
        let (mut t, mut last, mut index) = (T0, T0, 0u64);
        let mut alive = true;
        for (advance, send) in ops {
            t += Duration::from_secs(advance);
            // Drive time the way an embedder does: every deadline up to now.
            while let Some(d) = node.poll_timeout() {
                if d > t { break; }
                node.handle_timeout(d);
            }
            let model_alive = alive
                && t < T0 + Duration::from_secs(ttl)
                && t < last + Duration::from_secs(idle);
            let closed = events(&mut node)
                .iter()
                .any(|e| matches!(e, NodeEvent::SessionClosed { .. }));
            prop_assert_eq!(closed, alive && !model_alive);
            alive = model_alive;
            prop_assert_eq!(node.stats().sessions_active, usize::from(alive));
            if send {
                let r = node.handle_frame(t, conn, &indexed_message(&K1, "1", index, "x"));
                events(&mut node);
                drain(&mut node);
                prop_assert_eq!(r.is_ok(), alive);
                if alive {
                    last = t;
                    index += 1;
                }
            }
        }
    }

    #[test]
    fn same_seed_gives_the_same_bytes(seed in any::<u64>()) {
        let run = |seed: u64| {
            let mut node = node(NodeConfig::default(), seed);
            let conn = node.connect().unwrap();
            let mut c = client(K1, seed);
            let mut transcript = Vec::new();
            c.start_session(T0, params("7", "8")).unwrap();
            let init = c.poll_transmit().unwrap();
            transcript.push(init.clone());
            establish(&mut node, T0, conn, &init).unwrap();
            for f in drain(&mut node) { c.handle_frame(T0, &f).unwrap(); transcript.push(f); }
            let rid = c.send_prompt(T0, &Prompt::new("determinism")).unwrap();
            let m = c.poll_transmit().unwrap();
            transcript.push(m.clone());
            node.handle_frame(T0, conn, &m).unwrap();
            node.send_chunk(T0, conn, "7", &rid, "a", false).unwrap();
            node.send_chunk(T0, conn, "7", &rid, "b", true).unwrap();
            node.finish(T0, conn, "7", &rid, StreamEnd::complete(1, 2, 3)).unwrap();
            transcript.extend(drain(&mut node));
            transcript
        };
        let a = run(seed);
        prop_assert_eq!(&a, &run(seed));
        prop_assert_eq!(a.len(), 7);
    }
}

/// A JSON value of a random type (for field-type confusion).
fn any_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        "[0-9a-fA-Fx]{0,80}".prop_map(Value::String),
        "\\PC{0,20}".prop_map(Value::String),
        Just(json!([])),
        Just(json!({})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Garbage and type confusion never panic, always get exactly one error frame, and never
    /// disturb an established session.
    #[test]
    fn arbitrary_frames_get_one_error_frame_and_leave_sessions_untouched(
        raw in "\\PC{0,200}",
        which in 0usize..2,
        path in 0usize..12,
        value in any_json(),
    ) {
        let (mut node, conn) = established(4);
        let base: Value = serde_json::from_str(if which == 0 {
            original_init()
        } else {
            original_message()
        })
        .unwrap();
        // Replace one field (envelope or payload) with a value of a random type.
        let mut confused = base.clone();
        let keys: Vec<(bool, String)> = confused
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (false, k.clone()))
            .chain(confused["payload"].as_object().unwrap().keys().map(|k| (true, k.clone())))
            .collect();
        let (in_payload, key) = keys[path % keys.len()].clone();
        if in_payload {
            confused["payload"][&key] = value.clone();
        } else {
            confused[&key] = value.clone();
        }
        for frame in [raw, confused.to_string()] {
            let r = node.handle_frame(T0, conn, &frame);
            let evs = events(&mut node);
            let frames = drain(&mut node);
            if r.is_err() {
                prop_assert_eq!(frames.len(), 1, "{}", frame);
                prop_assert!(error_code(&frames[0]).is_some());
                prop_assert!(evs.is_empty());
            }
            // Whatever happened, the established session still takes its next message.
        }
        let next = indexed_message(&K1, "1", 1_000, "still fine");
        node.handle_frame(T0, conn, &next).unwrap();
        let ok = matches!(events(&mut node).first(), Some(NodeEvent::Prompt(p)) if p.prompt.as_str() == "still fine");
        prop_assert!(ok);
    }
}

fn original_message() -> &'static str {
    static F: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    F.get_or_init(|| indexed_message(&K1, "1", 0, "hello"))
}
