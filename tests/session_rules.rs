//! One test per rule of the node and the client ([docs/fabstir-wire.md §2.5, §3, §6, §7],
//! the crate's conventions, and the allocation-free answer path).

mod support {
    pub mod session;
}

use rand_chacha::rand_core::SeedableRng;
use sealwire::crypto::hex;
use sealwire::session::*;
use sealwire::time::{Duration, Instant};
use serde_json::Value;
use support::session::*;

const K1: [u8; 32] = [0xa1; 32];
const K2: [u8; 32] = [0xa2; 32];
const T0: Instant = Instant::from_secs(100);

/// Node with one accepted session "1" (job "2") under key K1 on a fresh connection.
fn established(
    config: NodeConfig,
) -> (
    sealwire::session::Node<rand_chacha::ChaCha20Rng>,
    ConnectionId,
) {
    let mut node = node(config, 1);
    let conn = node.connect().unwrap();
    establish(&mut node, T0, conn, &init_frame(K1, 1, "1", "2")).unwrap();
    let frames = drain(&mut node);
    assert_eq!(frames.len(), 1);
    assert!(frames[0].starts_with(r#"{"type":"session_init_ack""#));
    (node, conn)
}

/// Sends a message and returns (Ok?, frames, prompt texts).
fn send(
    node: &mut sealwire::session::Node<rand_chacha::ChaCha20Rng>,
    now: Instant,
    conn: ConnectionId,
    frame: &str,
) -> (Result<(), NodeError>, Vec<String>, Vec<String>) {
    let r = node.handle_frame(now, conn, frame);
    let prompts = events(node)
        .into_iter()
        .filter_map(|e| match e {
            NodeEvent::Prompt(p) => Some(p.prompt.to_string()),
            _ => None,
        })
        .collect();
    (r, drain(node), prompts)
}

fn assert_rejected(r: &(Result<(), NodeError>, Vec<String>, Vec<String>), code: &str) {
    assert!(r.0.is_err(), "expected rejection {code}");
    assert_eq!(r.1.len(), 1, "exactly one error frame: {:?}", r.1);
    assert_eq!(error_code(&r.1[0]).as_deref(), Some(code));
    assert!(r.2.is_empty());
}

#[test]
fn replayed_session_init_is_rejected_and_state_unchanged() {
    let (mut node, conn) = established(NodeConfig::default());
    let init = init_frame(K1, 1, "1", "2");
    let before = node.stats();
    // Verbatim, upper-case hex, 0x-prefixed: all the same decoded ephemeral point.
    let upper = {
        let mut v: Value = serde_json::from_str(&init).unwrap();
        let eph = v["payload"]["ephPubHex"].as_str().unwrap().to_uppercase();
        v["payload"]["ephPubHex"] = Value::String(format!("0x{eph}"));
        // Keep the SDK key order irrelevant: receivers must not depend on it.
        v.to_string()
    };
    let other = node.connect().unwrap();
    for (c, f) in [(conn, &init), (conn, &upper), (other, &init)] {
        let r = send(&mut node, T0, c, f);
        assert_rejected(&r, "REPLAYED_SESSION_INIT");
    }
    let after = node.stats();
    assert_eq!(after.sessions_active, before.sessions_active);
    assert_eq!(after.replay_cache_len, before.replay_cache_len);
    // The live session still works with its original key and index.
    let r = send(
        &mut node,
        T0,
        conn,
        &indexed_message(&K1, "1", 0, "still here"),
    );
    assert_eq!(r.2, vec!["still here".to_string()]);
}

/// The replay cache is consulted with the decoded ephemeral key before the signature is
/// recovered and before any ECDH or AEAD: a replay costs a parse and a lookup. So a replay
/// whose signature or ciphertext was altered as well is refused as a replay (its ephemeral key
/// alone condemns it), not as `INVALID_SIGNATURE` or `DECRYPTION_FAILED`.
#[test]
fn a_replayed_init_is_refused_before_any_costly_work() {
    let (mut node, conn) = established(NodeConfig::default());
    let init: Value = serde_json::from_str(&init_frame(K1, 1, "1", "2")).unwrap();
    let tampered = |field: &str, at: usize| {
        let mut v = init.clone();
        let mut bytes = hex::decode(v["payload"][field].as_str().unwrap()).unwrap();
        bytes[at] ^= 0x55;
        v["payload"][field] = Value::String(hex::encode(&bytes));
        v.to_string()
    };
    let before = node.stats();
    // r and s (the recovery id byte, 64, is checked with the syntax), and the ciphertext.
    for f in [
        tampered("signatureHex", 3),
        tampered("signatureHex", 40),
        tampered("ciphertextHex", 5),
    ] {
        assert_rejected(&send(&mut node, T0, conn, &f), "REPLAYED_SESSION_INIT");
    }
    assert_eq!(
        node.stats().errors(ErrorCode::ReplayedSessionInit),
        before.errors(ErrorCode::ReplayedSessionInit) + 3
    );
    // The same tampering on a fresh ephemeral key is caught by the check it breaks.
    let fresh: Value = serde_json::from_str(&init_frame(K2, 7, "1", "2")).unwrap();
    let mut v = fresh.clone();
    let mut ct = hex::decode(v["payload"]["ciphertextHex"].as_str().unwrap()).unwrap();
    ct[5] ^= 0x55;
    v["payload"]["ciphertextHex"] = Value::String(hex::encode(&ct));
    assert_rejected(
        &send(&mut node, T0, conn, &v.to_string()),
        "DECRYPTION_FAILED",
    );
}

/// The public-key recovery comes after the AEAD open (an init made for another node's key,
/// or a recorded one with a flipped byte, costs an ECDH and no recovery): an init whose
/// signature recovers nothing and whose ciphertext is wrong is `DECRYPTION_FAILED`; with the
/// right ciphertext it is `INVALID_SIGNATURE`. A malformed signature (high S) is refused
/// before any of it.
#[test]
fn the_signer_is_recovered_only_from_an_init_that_decrypts() {
    let mut node = node(NodeConfig::default(), 1);
    let conn = node.connect().unwrap();
    let init: Value = serde_json::from_str(&init_frame(K1, 1, "1", "2")).unwrap();
    let mut sig = hex::decode(init["payload"]["signatureHex"].as_str().unwrap()).unwrap();
    // An r that is no point's x-coordinate: nothing can be recovered from it.
    let digest = [0u8; 32];
    let unrecoverable = (1u8..=255)
        .map(|b| [[0u8; 31].as_slice(), &[b]].concat())
        .find(|r| {
            let mut rs = r.clone();
            rs.extend_from_slice(&sig[32..64]);
            let Ok(sig) = k256::ecdsa::Signature::from_slice(&rs) else {
                return false;
            };
            (0..2).all(|v| {
                k256::ecdsa::VerifyingKey::recover_from_prehash(
                    &digest,
                    &sig,
                    k256::ecdsa::RecoveryId::from_byte(v).unwrap(),
                )
                .is_err()
            })
        })
        .unwrap();
    sig[..32].copy_from_slice(&unrecoverable);
    let with = |sig: &[u8], flip_ct: bool| {
        let mut v = init.clone();
        v["payload"]["signatureHex"] = Value::String(hex::encode(sig));
        if flip_ct {
            let mut ct = hex::decode(v["payload"]["ciphertextHex"].as_str().unwrap()).unwrap();
            ct[0] ^= 1;
            v["payload"]["ciphertextHex"] = Value::String(hex::encode(&ct));
        }
        v.to_string()
    };
    assert_rejected(
        &send(&mut node, T0, conn, &with(&sig, true)),
        "DECRYPTION_FAILED",
    );
    assert_rejected(
        &send(&mut node, T0, conn, &with(&sig, false)),
        "INVALID_SIGNATURE",
    );
    // High S (n - s), with a wrong ciphertext as well: the form is checked first.
    let mut high = hex::decode(init["payload"]["signatureHex"].as_str().unwrap()).unwrap();
    let n =
        hex::decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141").unwrap();
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(n[i]) - i16::from(high[32 + i]) - borrow;
        high[32 + i] = d.rem_euclid(256) as u8;
        borrow = i16::from(d < 0);
    }
    assert_rejected(
        &send(&mut node, T0, conn, &with(&high, true)),
        "INVALID_SIGNATURE",
    );
}

#[test]
fn a_reinit_that_changes_the_chain_is_not_authorized_and_the_key_is_kept() {
    let (mut node, conn) = established(NodeConfig::default());
    let mut c = client(K2, 5);
    c.start_session(
        T0,
        SessionParams {
            chain_id: 1,
            ..params("1", "2")
        },
    )
    .unwrap();
    let r = send(&mut node, T0, conn, &c.poll_transmit().unwrap());
    assert_rejected(&r, "NOT_AUTHORIZED");
    assert_eq!(
        send(&mut node, T0, conn, &indexed_message(&K1, "1", 0, "mine")).2,
        ["mine"]
    );
    // The same in plaintext mode: the session's chain is part of what the embedder accepted.
    let mut node = node_with_plaintext();
    let conn = node.connect().unwrap();
    let init = |chain: u64| {
        format!(r#"{{"type":"session_init","chain_id":{chain},"session_id":"1","jobId":"2"}}"#)
    };
    node.handle_frame(T0, conn, &init(84532)).unwrap();
    events(&mut node);
    node.accept(T0, conn, "1").unwrap();
    drain(&mut node);
    assert!(node.handle_frame(T0, conn, &init(84532)).is_ok());
    drain(&mut node);
    assert_rejected(&send(&mut node, T0, conn, &init(1)), "NOT_AUTHORIZED");
}

fn node_with_plaintext() -> sealwire::session::Node<rand_chacha::ChaCha20Rng> {
    node(
        NodeConfig {
            allow_plaintext: true,
            ..NodeConfig::default()
        },
        1,
    )
}

/// Measured before the replay state existed: an init and a prompt recorded on the wire were
/// accepted again by a restarted node, and the prompt ran again under the victim's address.
#[test]
fn an_init_recorded_before_a_restart_is_refused_after_it_with_the_replay_state() {
    use sealwire::time::WallTime;
    let wall = WallTime::from_unix(1_700_000_000, 0);
    let (mut first, conn) = established(NodeConfig::default());
    let init = init_frame(K1, 1, "1", "2");
    let prompt = indexed_message(&K1, "1", 0, "transfer everything");
    assert_eq!(
        send(&mut first, T0, conn, &prompt).2,
        ["transfer everything"]
    );
    let state = first.replay_state(T0, wall);
    drop(first);

    // The restarted process: its clock starts again at zero, a minute later.
    let restart = |restore: bool| {
        let mut n = node(NodeConfig::default(), 2);
        if restore {
            let later = wall.saturating_add(Duration::from_secs(60));
            assert_eq!(n.restore_replay_state(Instant::ZERO, later, &state), Ok(1));
            assert_eq!(n.stats().replay_cache_inserts, 1);
        }
        let c = n.connect().unwrap();
        (n, c)
    };
    // Without the state the recording works again: the prompt runs under the victim's name.
    let (mut n, c) = restart(false);
    establish(&mut n, Instant::ZERO, c, &init).unwrap();
    assert!(drain(&mut n)[0].contains("session_init_ack"));
    assert_eq!(
        send(&mut n, Instant::ZERO, c, &prompt).2,
        ["transfer everything"]
    );
    // With it, the init is a replay and the prompt finds no key.
    let (mut n, c) = restart(true);
    assert_rejected(
        &send(&mut n, Instant::ZERO, c, &init),
        "REPLAYED_SESSION_INIT",
    );
    assert_rejected(
        &send(&mut n, Instant::ZERO, c, &prompt),
        "SESSION_KEY_NOT_FOUND",
    );
    // Garbage is not a state, and nothing is restored from it.
    let mut n = node(NodeConfig::default(), 3);
    assert!(matches!(
        n.restore_replay_state(Instant::ZERO, wall, b"not a state"),
        Err(NodeError::InvalidReplayState(_))
    ));
    assert_eq!(n.stats().replay_cache_len, 0);
}

#[test]
fn message_index_must_strictly_increase_per_key() {
    let (mut node, conn) = established(NodeConfig::default());
    assert_eq!(
        send(&mut node, T0, conn, &indexed_message(&K1, "1", 3, "a")).2,
        ["a"]
    );
    // Gaps are allowed, equal and lower are not.
    assert_rejected(
        &send(&mut node, T0, conn, &indexed_message(&K1, "1", 3, "b")),
        "REPLAYED_MESSAGE",
    );
    assert_rejected(
        &send(&mut node, T0, conn, &indexed_message(&K1, "1", 1, "c")),
        "REPLAYED_MESSAGE",
    );
    assert_eq!(
        send(&mut node, T0, conn, &indexed_message(&K1, "1", 10, "d")).2,
        ["d"]
    );
}

#[test]
fn message_aad_must_be_message_canonical_decimal() {
    let (mut node, conn) = established(NodeConfig::default());
    for aad in [
        &b""[..],
        b"message_01",
        b"message_+1",
        b"chunk_0",
        b"encrypted_response_final",
        b"message_",
    ] {
        let f = message(&K1, "1", "r", aad, &prompt_json("x"), [7; 24]);
        assert_rejected(&send(&mut node, T0, conn, &f), "INVALID_AAD");
    }
}

#[test]
fn reinit_with_same_identity_replaces_the_key_and_restarts_the_index() {
    let (mut node, conn) = established(NodeConfig::default());
    assert_eq!(
        send(&mut node, T0, conn, &indexed_message(&K1, "1", 0, "one")).2,
        ["one"]
    );
    node.handle_frame(T0, conn, &init_frame(K2, 2, "1", "2"))
        .unwrap();
    let ev = events(&mut node);
    assert!(matches!(&ev[..], [NodeEvent::SessionRekeyed { session_id, .. }] if session_id == "1"));
    assert!(drain(&mut node)[0].contains("session_init_ack"));
    // Old key gone; the index restarts under the new one.
    assert_rejected(
        &send(&mut node, T0, conn, &indexed_message(&K1, "1", 5, "old")),
        "DECRYPTION_FAILED",
    );
    assert_eq!(
        send(&mut node, T0, conn, &indexed_message(&K2, "1", 0, "two")).2,
        ["two"]
    );
}

#[test]
fn init_for_another_identitys_session_is_not_authorized_and_the_key_is_kept() {
    let (mut node, conn) = established(NodeConfig::default());
    // A different client key signs an init for the same session id.
    let mut intruder = Client::new(
        SecretKey::from_bytes(&[0x33; 32]).unwrap(),
        node.public_key(),
        ClientConfig::default(),
        Recorded::new(&K2, 9),
    )
    .unwrap();
    intruder.start_session(T0, params("1", "2")).unwrap();
    let r = send(&mut node, T0, conn, &intruder.poll_transmit().unwrap());
    assert_rejected(&r, "NOT_AUTHORIZED");
    // Same identity but another job: also refused.
    let r = send(&mut node, T0, conn, &init_frame(K2, 3, "1", "7"));
    assert_rejected(&r, "NOT_AUTHORIZED");
    assert_eq!(
        send(&mut node, T0, conn, &indexed_message(&K1, "1", 0, "mine")).2,
        ["mine"]
    );
}

#[test]
fn rejected_session_gets_not_authorized_and_no_key() {
    let mut node = node(NodeConfig::default(), 1);
    let conn = node.connect().unwrap();
    node.handle_frame(T0, conn, &init_frame(K1, 1, "1", "2"))
        .unwrap();
    assert!(
        drain(&mut node).is_empty(),
        "no ack before the embedder decides"
    );
    let ev = events(&mut node);
    let NodeEvent::SessionRequested(req) = &ev[0] else {
        panic!()
    };
    assert_eq!(req.client_address, Some(client_address()));
    node.reject(conn, "1", "job 2 belongs to someone else")
        .unwrap();
    let f = drain(&mut node);
    assert_eq!(error_code(&f[0]).as_deref(), Some("NOT_AUTHORIZED"));
    assert!(f[0].contains("job 2 belongs to someone else"));
    assert_rejected(
        &send(&mut node, T0, conn, &indexed_message(&K1, "1", 0, "x")),
        "SESSION_KEY_NOT_FOUND",
    );
    assert_eq!(
        node.stats().sessions_pending + node.stats().sessions_active,
        0
    );
}

#[test]
fn prompts_before_accept_are_refused() {
    let mut node = node(NodeConfig::default(), 1);
    let conn = node.connect().unwrap();
    node.handle_frame(T0, conn, &init_frame(K1, 1, "1", "2"))
        .unwrap();
    assert_rejected(
        &send(&mut node, T0, conn, &indexed_message(&K1, "1", 0, "x")),
        "SESSION_NOT_ACCEPTED",
    );
    // And the embedder cannot stream into a pending session.
    assert_eq!(
        node.send_chunk(T0, conn, "1", "r", "x", false),
        Err(NodeError::SessionNotAccepted)
    );
}

#[test]
fn unanswered_session_request_times_out_with_one_error_frame() {
    let mut node = node(NodeConfig::default(), 1);
    let conn = node.connect().unwrap();
    node.handle_frame(T0, conn, &init_frame(K1, 1, "1", "2"))
        .unwrap();
    events(&mut node);
    let due = node.poll_timeout().unwrap();
    assert_eq!(due, T0 + Duration::from_secs(60));
    node.handle_timeout(due - Duration::from_nanos(1));
    assert!(drain(&mut node).is_empty());
    node.handle_timeout(due);
    let f = drain(&mut node);
    assert_eq!(f.len(), 1);
    assert_eq!(error_code(&f[0]).as_deref(), Some("SESSION_NOT_ACCEPTED"));
    assert!(matches!(
        &events(&mut node)[..],
        [NodeEvent::SessionClosed {
            reason: CloseReason::Expired,
            ..
        }]
    ));
    assert_eq!(node.accept(due, conn, "1"), Err(NodeError::UnknownSession));
}

#[test]
fn keys_expire_after_the_idle_timeout_and_are_wiped() {
    let cfg = NodeConfig {
        idle_timeout: Duration::from_secs(30),
        ..NodeConfig::default()
    };
    let (mut node, conn) = established(cfg);
    // Activity at T0+20 moves the idle deadline to T0+50.
    let t = T0 + Duration::from_secs(20);
    assert_eq!(
        send(&mut node, t, conn, &indexed_message(&K1, "1", 0, "a")).2,
        ["a"]
    );
    let due = node.poll_timeout().unwrap();
    assert_eq!(
        due,
        T0 + Duration::from_secs(30),
        "early deadline; re-armed lazily"
    );
    node.handle_timeout(due);
    assert!(events(&mut node).is_empty());
    assert_eq!(node.poll_timeout(), Some(T0 + Duration::from_secs(50)));
    node.handle_timeout(T0 + Duration::from_secs(50));
    assert!(matches!(
        &events(&mut node)[..],
        [NodeEvent::SessionClosed {
            reason: CloseReason::Idle,
            ..
        }]
    ));
    let r = send(
        &mut node,
        T0 + Duration::from_secs(51),
        conn,
        &indexed_message(&K1, "1", 1, "b"),
    );
    assert_rejected(&r, "SESSION_KEY_NOT_FOUND");
    // Only lazily deleted entries remain: they fire without effect and then are gone.
    while let Some(t) = node.poll_timeout() {
        node.handle_timeout(t);
        assert!(events(&mut node).is_empty());
        assert!(drain(&mut node).is_empty());
    }
}

#[test]
fn keys_expire_after_the_ttl_even_when_busy() {
    let cfg = NodeConfig {
        session_ttl: Duration::from_secs(100),
        idle_timeout: Duration::from_secs(30),
        ..NodeConfig::default()
    };
    let (mut node, conn) = established(cfg);
    let mut t = T0;
    for i in 0..10u64 {
        t += Duration::from_secs(20);
        node.handle_timeout(t);
        let r = send(&mut node, t, conn, &indexed_message(&K1, "1", i, "x"));
        if t < T0 + Duration::from_secs(100) {
            assert!(r.0.is_ok(), "alive at {t:?}");
        } else {
            assert_rejected(&r, "SESSION_KEY_NOT_FOUND");
        }
    }
}

#[test]
fn sessions_are_bound_to_their_connection() {
    let (mut node, conn) = established(NodeConfig::default());
    let other = node.connect().unwrap();
    assert_rejected(
        &send(&mut node, T0, other, &indexed_message(&K1, "1", 0, "x")),
        "SESSION_KEY_NOT_FOUND",
    );
    assert_eq!(
        send(&mut node, T0, conn, &indexed_message(&K1, "1", 0, "y")).2,
        ["y"]
    );
}

#[test]
fn disconnect_wipes_every_key_and_reports_each_session() {
    let (mut node, conn) = established(NodeConfig::default());
    establish(&mut node, T0, conn, &init_frame(K2, 2, "5", "6")).unwrap();
    drain(&mut node);
    node.disconnect(conn);
    let closed: Vec<_> = events(&mut node)
        .into_iter()
        .map(|e| match e {
            NodeEvent::SessionClosed {
                session_id,
                reason: CloseReason::Disconnected,
                ..
            } => session_id,
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(closed.len(), 2);
    assert_eq!(node.stats().sessions_active, 0);
    assert_eq!(
        node.handle_frame(T0, conn, r#"{"type":"ping"}"#),
        Err(NodeError::UnknownConnection)
    );
    assert!(
        drain(&mut node).is_empty(),
        "no frame for an unknown connection"
    );
}

#[test]
fn close_session_wipes_the_key() {
    let (mut node, conn) = established(NodeConfig::default());
    node.close_session(conn, "1").unwrap();
    assert!(matches!(
        &events(&mut node)[..],
        [NodeEvent::SessionClosed {
            reason: CloseReason::Closed,
            ..
        }]
    ));
    assert_rejected(
        &send(&mut node, T0, conn, &indexed_message(&K1, "1", 0, "x")),
        "SESSION_KEY_NOT_FOUND",
    );
}

#[test]
fn oversized_frame_is_rejected_before_parsing() {
    let cfg = NodeConfig {
        max_frame_len: 1600,
        ..NodeConfig::default()
    };
    let (mut node, conn) = established(cfg);
    let big = indexed_message(&K1, "1", 0, &"x".repeat(2000));
    assert_rejected(&send(&mut node, T0, conn, &big), "MESSAGE_TOO_LARGE");
    assert_rejected(
        &send(&mut node, T0, conn, &"{".repeat(5000)),
        "MESSAGE_TOO_LARGE",
    );
    assert_eq!(
        send(&mut node, T0, conn, &indexed_message(&K1, "1", 0, "ok")).2,
        ["ok"]
    );
}

#[test]
fn plaintext_frames_are_refused_unless_enabled() {
    let mut node = node(NodeConfig::default(), 1);
    let conn = node.connect().unwrap();
    let init = r#"{"type":"session_init","chain_id":84532,"session_id":"301","jobId":"302","user_address":"0x6e792C2BfA2eD64F68d98b8AB658621f1239d169","id":"1-a"}"#;
    let r = send(&mut node, T0, conn, init);
    assert_rejected(&r, "PLAINTEXT_DISABLED");
    let v: Value = serde_json::from_str(&r.1[0]).unwrap();
    assert_eq!(
        v["id"], "1-a",
        "the SDK only notices errors carrying its id"
    );
    let mut open_node = support::session::node(
        NodeConfig {
            allow_plaintext: true,
            ..NodeConfig::default()
        },
        1,
    );
    let c = open_node.connect().unwrap();
    open_node.handle_frame(T0, c, init).unwrap();
    let ev = events(&mut open_node);
    assert!(
        matches!(&ev[..], [NodeEvent::SessionRequested(r)] if !r.encrypted && r.client_address.is_none())
    );
}

#[test]
fn plaintext_prompt_selects_its_session_by_job_or_by_session_id() {
    let mut node = support::session::node(
        NodeConfig {
            allow_plaintext: true,
            ..NodeConfig::default()
        },
        1,
    );
    let c = node.connect().unwrap();
    let init = r#"{"type":"session_init","chain_id":84532,"session_id":"301","jobId":"302","user_address":"0x6e792C2BfA2eD64F68d98b8AB658621f1239d169","id":"1-a"}"#;
    node.handle_frame(T0, c, init).unwrap();
    events(&mut node);
    node.accept(T0, c, "301").unwrap();
    drain(&mut node);
    // The SDK names the job; other legacy clients name the session.
    for (frame, rid) in [
        (
            r#"{"type":"prompt","chain_id":84532,"jobId":"302","prompt":"by job","id":"p-1"}"#,
            "p-1",
        ),
        (
            r#"{"type":"prompt","session_id":"301","prompt":"by session","id":"p-2"}"#,
            "p-2",
        ),
    ] {
        node.handle_frame(T0, c, frame).unwrap();
        let ev = events(&mut node);
        assert!(
            matches!(&ev[..], [NodeEvent::Prompt(p)] if p.session_id == "301" && p.request_id == rid && !p.encrypted),
            "{frame}"
        );
    }
    // Neither, or a session/job this connection does not hold: one error each.
    for (frame, code) in [
        (
            r#"{"type":"prompt","prompt":"x","id":"p-3"}"#,
            "INVALID_MESSAGE",
        ),
        (
            r#"{"type":"prompt","session_id":"999","prompt":"x","id":"p-4"}"#,
            "SESSION_KEY_NOT_FOUND",
        ),
        (
            r#"{"type":"prompt","jobId":"999","session_id":"301","prompt":"x","id":"p-5"}"#,
            "SESSION_KEY_NOT_FOUND",
        ),
    ] {
        let r = send(&mut node, T0, c, frame);
        assert_rejected(&r, code);
    }
}

#[test]
fn bad_input_leaves_other_sessions_untouched() {
    let (mut node, conn) = established(NodeConfig::default());
    let other = node.connect().unwrap();
    let garbage = [
        "",
        "null",
        "[]",
        "[\"ping\"]",
        "{}",
        r#"{"type":1}"#,
        r#"{"type":"nope"}"#,
        r#"{"type":"encrypted_message"}"#,
        r#"{"type":"encrypted_message","session_id":"1","id":"x"}"#,
        r#"{"type":"encrypted_message","session_id":"1","id":"x","payload":{"ciphertextHex":"zz","nonceHex":"00","aadHex":""}}"#,
        r#"{"type":"encrypted_message","session_id":"1","id":"x","payload":{"ciphertextHex":"00","nonceHex":"000000000000000000000000000000000000000000000000","aadHex":""}}"#,
        r#"{"type":"encrypted_session_init","session_id":"1","job_id":"2","chain_id":1,"payload":5}"#,
        r#"{"type":"encrypted_session_init","session_id":"1","job_id":"2","chain_id":-1,"payload":{}}"#,
        r#"{"type":"stream_cancel","session_id":"9"}"#,
        "{\"type\":\"ping\",\"type\":\"ping\"}",
    ];
    let before = node.stats();
    for (i, g) in garbage.iter().enumerate() {
        let c = if i % 2 == 0 { conn } else { other };
        let r = send(&mut node, T0, c, g);
        assert!(r.0.is_err(), "{g}");
        assert_eq!(r.1.len(), 1, "{g}");
        assert!(error_code(&r.1[0]).is_some(), "{g}");
    }
    assert_eq!(
        node.stats().frames_rejected,
        before.frames_rejected + garbage.len() as u64
    );
    assert_eq!(node.stats().sessions_active, 1);
    assert_eq!(
        send(&mut node, T0, conn, &indexed_message(&K1, "1", 0, "fine")).2,
        ["fine"]
    );
}

#[test]
fn chunks_use_ordered_chunk_aads_per_request_and_never_the_message_form() {
    let (mut node, conn) = established(NodeConfig::default());
    for (rid, n) in [("r1", 3), ("r2", 2)] {
        for i in 0..n {
            node.send_chunk(T0, conn, "1", rid, &format!("t{i}"), i + 1 == n)
                .unwrap();
        }
        node.finish(T0, conn, "1", rid, StreamEnd::complete(1, 2, 8192))
            .unwrap();
        let frames = drain(&mut node);
        for (i, f) in frames.iter().take(n).enumerate() {
            let (pt, aad) = open(&K1, f).unwrap();
            assert_eq!(aad, format!("chunk_{i}").as_bytes());
            assert_eq!(pt, format!("t{i}").as_bytes());
            let v: Value = serde_json::from_str(f).unwrap();
            assert_eq!(v["id"], rid);
            assert_eq!(
                v["final"].as_bool(),
                if i + 1 == n { Some(true) } else { None }
            );
        }
        // The sealed end of answer binds the number of chunks before it.
        let (pt, aad) = open(&K1, &frames[n]).unwrap();
        assert_eq!(pt, b"stop");
        assert_eq!(aad, format!("encrypted_response_final_{n}").as_bytes());
        let end: Value = serde_json::from_str(&frames[n + 1]).unwrap();
        assert_eq!(end["type"], "stream_end");
        assert_eq!(end["usage"]["total_tokens"], 3);
    }
    // A chunk reflected back as a message fails (its AAD is not message_<n>).
    node.send_chunk(T0, conn, "1", "r3", "reflect", false)
        .unwrap();
    let chunk: Value = serde_json::from_str(&drain(&mut node)[0]).unwrap();
    let reflected = serde_json::json!({"type":"encrypted_message","session_id":"1","id":"x","payload":chunk["payload"]}).to_string();
    assert_rejected(&send(&mut node, T0, conn, &reflected), "INVALID_AAD");
}

#[test]
fn seal_chunk_into_writes_the_same_frame_as_send_chunk() {
    let (mut a, ca) = established(NodeConfig::default());
    let (mut b, cb) = established(NodeConfig::default());
    let mut out = String::with_capacity(1024);
    a.seal_chunk_into(T0, ca, "1", "r", "héllo", false, &mut out)
        .unwrap();
    b.send_chunk(T0, cb, "1", "r", "héllo", false).unwrap();
    assert_eq!(out, drain(&mut b)[0]);
    assert_eq!(open(&K1, &out).unwrap().0, "héllo".as_bytes());
    // Large chunks (beyond the stack buffer) too.
    let big = "ü".repeat(2000);
    a.seal_chunk_into(T0, ca, "1", "r", &big, true, &mut out)
        .unwrap();
    assert_eq!(open(&K1, &out).unwrap().0, big.as_bytes());
}

#[test]
fn ping_gets_pong_and_cancel_is_reported() {
    let (mut node, conn) = established(NodeConfig::default());
    assert_eq!(
        send(&mut node, T0, conn, r#"{"type":"ping"}"#).1,
        [r#"{"type":"pong"}"#]
    );
    node.handle_frame(
        T0,
        conn,
        r#"{"type":"stream_cancel","session_id":"1","reason":"user_cancelled"}"#,
    )
    .unwrap();
    assert!(
        matches!(&events(&mut node)[..], [NodeEvent::Cancel { reason, .. }] if reason == "user_cancelled")
    );
}

#[test]
fn capacity_limits_fail_closed_with_capacity_code() {
    let cfg = NodeConfig {
        max_sessions_per_connection: 1,
        max_connections: 2,
        ..NodeConfig::default()
    };
    let (mut node, conn) = established(cfg);
    let r = send(&mut node, T0, conn, &init_frame(K2, 2, "5", "6"));
    assert_rejected(&r, "CAPACITY");
    node.connect().unwrap();
    assert_eq!(node.connect(), Err(NodeError::Capacity("connections")));
}

#[test]
fn replay_cache_full_of_live_keys_refuses_new_inits() {
    let cfg = NodeConfig {
        replay_cache_capacity: 1,
        ..NodeConfig::default()
    };
    let (mut node, _conn) = established(cfg);
    let c2 = node.connect().unwrap();
    assert_rejected(
        &send(&mut node, T0, c2, &init_frame(K2, 2, "5", "6")),
        "CAPACITY",
    );
}

/// One client re-keying before every prompt fills only its own share of a half-full replay
/// cache: past the quota its inits get `CAPACITY` (its session keeps the last key), another
/// client still opens a session, and the quota frees up as its entries reach the key
/// lifetime.
#[test]
fn a_client_past_its_replay_quota_is_refused_while_others_get_in() {
    // Capacity 6: the quota of 3 applies from the third entry on (half full).
    let cfg = NodeConfig {
        replay_cache_capacity: 6,
        replay_cache_per_client: 3,
        ..NodeConfig::default()
    };
    let ttl = cfg.session_ttl;
    let (mut node, conn) = established(cfg); // entry 1 of the test client
    for (i, key) in [[0xb1; 32], [0xb2; 32]].into_iter().enumerate() {
        node.handle_frame(T0, conn, &init_frame(key, 10 + i as u64, "1", "2"))
            .unwrap();
        assert!(
            drain(&mut node)[0].contains("session_init_ack"),
            "re-key {i}"
        );
    }
    assert_rejected(
        &send(&mut node, T0, conn, &init_frame([0xb3; 32], 20, "1", "2")),
        "CAPACITY",
    );
    // The session still runs on the last accepted key.
    assert_eq!(
        send(
            &mut node,
            T0,
            conn,
            &indexed_message(&[0xb2; 32], "1", 0, "still here")
        )
        .2,
        ["still here"]
    );
    // Another client (another signing key, so another address) gets a session.
    let other_key = SecretKey::from_bytes(&[0x33; 32]).unwrap();
    let mut other = Client::new(
        other_key,
        SecretKey::from_bytes(&NODE_KEY).unwrap().public_key(),
        ClientConfig::default(),
        Recorded::new(&[0xc1; 32], 30),
    )
    .unwrap();
    other.start_session(T0, params("7", "8")).unwrap();
    let c2 = node.connect().unwrap();
    node.handle_frame(T0, c2, &other.poll_transmit().unwrap())
        .unwrap();
    assert!(
        events(&mut node)
            .iter()
            .any(|e| matches!(e, NodeEvent::SessionRequested(r) if r.session_id == "7")),
        "the other client reaches the embedder"
    );
    // A key lifetime later the test client's entries have expired and it re-keys again.
    // (Its old session expired too, so this is a fresh session on a new connection.)
    let later = T0 + ttl;
    let c3 = node.connect().unwrap();
    establish(&mut node, later, c3, &init_frame([0xb4; 32], 40, "9", "2")).unwrap();
    assert!(drain(&mut node)
        .iter()
        .any(|f| f.contains("session_init_ack")));
}

#[test]
fn debug_output_never_shows_prompts_or_keys() {
    let (mut node, conn) = established(NodeConfig::default());
    node.handle_frame(T0, conn, &indexed_message(&K1, "1", 0, "top secret prompt"))
        .unwrap();
    let ev = events(&mut node);
    let dbg = format!("{ev:?} {node:?}");
    assert!(!dbg.contains("top secret"), "{dbg}");
    assert!(!dbg.contains(&hex::encode(&K1)));
    let mut c = client(K1, 1);
    c.start_session(T0, params("1", "2")).unwrap();
    let p = Prompt::new("top secret prompt");
    let dbg = format!(
        "{c:?} {p:?} {:?}",
        SecretKey::from_bytes(&CLIENT_KEY).unwrap()
    );
    assert!(
        !dbg.contains("top secret")
            && !dbg.contains(&hex::encode(&CLIENT_KEY))
            && !dbg.contains(&hex::encode(&K1))
    );
    let chunk = ClientEvent::Chunk {
        text: "top secret".into(),
        index: 0,
        is_final: false,
    };
    assert!(!format!("{chunk:?}").contains("top secret"));
    let delta = CheckpointDelta {
        session_id: "1".into(),
        checkpoint_index: 0,
        proof_hash: "0x00".into(),
        start_token: 0,
        end_token: 1,
        messages: vec![CheckpointMessage {
            role: "user".into(),
            content: "top secret conversation".into(),
            timestamp: 1,
            metadata: None,
        }],
        host_signature: "0x".into(),
    };
    assert!(!format!("{delta:?}").contains("top secret"));
}

#[test]
fn a_flood_of_pongs_leaves_one_pending_event() {
    let mut c = client(K1, 1);
    for _ in 0..100_000 {
        c.handle_frame(T0, r#"{"type":"pong"}"#).unwrap();
    }
    let mut n = 0;
    while let Some(e) = c.poll_event() {
        assert!(matches!(e, ClientEvent::Pong));
        n += 1;
    }
    assert_eq!(n, 1);
}

#[test]
fn error_messages_are_fixed_sentences_without_input() {
    let (mut node, conn) = established(NodeConfig::default());
    let f = message(
        &K1,
        "1",
        "r",
        b"message_x_secret",
        &prompt_json("prompt secret"),
        [1; 24],
    );
    let r = send(&mut node, T0, conn, &f);
    let v: Value = serde_json::from_str(&r.1[0]).unwrap();
    let msg = v["message"].as_str().unwrap();
    assert!(!msg.contains("secret"));
    assert_eq!(v["session_id"], "1");
    assert_eq!(v["id"], "r");
}

// --------------------------------------------------------------------------- client

fn client_with_answer(cfg: ClientConfig) -> (Client<Recorded>, String) {
    let mut c = client_cfg(K1, 1, cfg);
    c.start_session(T0, params("1", "2")).unwrap();
    c.poll_transmit().unwrap();
    c.handle_frame(T0, r#"{"type":"session_init_ack"}"#)
        .unwrap();
    let mut p = Prompt::new("q");
    p.request_id = Some("r".into());
    c.send_prompt(T0, &p).unwrap();
    c.poll_transmit().unwrap();
    while c.poll_event().is_some() {}
    (c, "r".into())
}

fn node_chunks(texts: &[&str]) -> Vec<String> {
    let (mut node, conn) = established(NodeConfig::default());
    for (i, t) in texts.iter().enumerate() {
        node.send_chunk(T0, conn, "1", "r", t, i + 1 == texts.len())
            .unwrap();
    }
    node.finish(T0, conn, "1", "r", StreamEnd::complete(1, 1, 1))
        .unwrap();
    drain(&mut node)
}

#[test]
fn client_fails_the_answer_on_reordered_chunks() {
    let mut frames = node_chunks(&["a", "b", "c"]);
    frames.swap(0, 1);
    let (mut c, _) = client_with_answer(ClientConfig::default());
    assert_eq!(c.handle_frame(T0, &frames[0]), Err(ClientError::OutOfOrder));
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::AnswerFailed {
            error: ClientError::OutOfOrder
        })
    );
    // The rest of that answer is ignored: no Finished with a truncated text.
    for f in &frames[1..] {
        let _ = c.handle_frame(T0, f);
    }
    while let Some(e) = c.poll_event() {
        assert!(!matches!(e, ClientEvent::Finished { .. }));
    }
}

#[test]
fn client_fails_the_answer_on_a_dropped_chunk() {
    let mut frames = node_chunks(&["a", "b", "c"]);
    frames.remove(1);
    let (mut c, _) = client_with_answer(ClientConfig::default());
    c.handle_frame(T0, &frames[0]).unwrap();
    assert_eq!(c.handle_frame(T0, &frames[1]), Err(ClientError::OutOfOrder));
}

#[test]
fn client_ignores_frames_of_other_requests_and_sessions() {
    let frames = node_chunks(&["a"]);
    let (mut c, _) = client_with_answer(ClientConfig::default());
    let mut v: Value = serde_json::from_str(&frames[0]).unwrap();
    v["id"] = "other".into();
    c.handle_frame(T0, &v.to_string()).unwrap();
    v["id"] = "r".into();
    v["session_id"] = "9".into();
    c.handle_frame(T0, &v.to_string()).unwrap();
    assert_eq!(c.poll_event(), None);
    for f in &frames {
        c.handle_frame(T0, f).unwrap();
    }
    let mut last = None;
    while let Some(e) = c.poll_event() {
        last = Some(e);
    }
    assert!(matches!(last, Some(ClientEvent::Finished { text, .. }) if text == "a"));
}

/// Feeds `frames` (ignoring per-frame errors) and returns every event.
fn feed(c: &mut Client<Recorded>, frames: &[String]) -> Vec<ClientEvent> {
    let mut events = Vec::new();
    for f in frames {
        let _ = c.handle_frame(T0, f);
        while let Some(e) = c.poll_event() {
            events.push(e);
        }
    }
    events
}

fn ends(events: &[ClientEvent]) -> Vec<&ClientEvent> {
    events
        .iter()
        .filter(|e| !matches!(e, ClientEvent::Chunk { .. }))
        .collect()
}

#[test]
fn an_answer_finishes_only_on_the_sealed_chunk_count() {
    let frames = node_chunks(&["a", "b", "c"]);
    let (mut c, _) = client_with_answer(ClientConfig::default());
    // Every chunk and the sealed end: the answer is not over before stream_end (its usage).
    assert!(ends(&feed(&mut c, &frames[..4])).is_empty());
    let events = feed(&mut c, &frames[4..]);
    assert_eq!(
        ends(&events),
        [&ClientEvent::Finished {
            text: "abc".into(),
            finish_reason: Some("stop".into()),
            tokens_used: Some(1),
            authenticated: true,
        }]
    );
    // Without stream_end, the grace after the sealed end finishes it all the same.
    let (mut c, _) = client_with_answer(ClientConfig::default());
    assert!(ends(&feed(&mut c, &frames[..4])).is_empty());
    let due = c.poll_timeout().unwrap();
    assert_eq!(due, T0 + Duration::from_secs(3));
    c.handle_timeout(due);
    assert!(matches!(
        c.poll_event(),
        Some(ClientEvent::Finished { text, authenticated: true, .. }) if text == "abc"
    ));
}

/// The attack reproduced from outside with ws_client (tests/e2e_fabstir.sh): an on-path
/// attacker holds back the last chunk, drops the sealed end and forwards `stream_end`.
#[test]
fn an_answer_cut_short_on_the_path_ends_truncated_not_finished() {
    let frames = node_chunks(&["one ", "two ", "three ", "four ", "five"]);
    assert_eq!(frames.len(), 7);
    let cut = [&frames[..4], &frames[6..]].concat();
    let (mut c, _) = client_with_answer(ClientConfig::default());
    let events = feed(&mut c, &cut);
    assert_eq!(
        ends(&events),
        [&ClientEvent::Truncated {
            text: "one two three four ".into()
        }]
    );
    // The answer is over: the held-back frames, sent late, change nothing.
    assert!(feed(&mut c, &frames[4..6]).is_empty());
}

#[test]
fn the_final_flag_or_a_timeout_alone_ends_an_answer_truncated() {
    let frames = node_chunks(&["a", "b", "c"]);
    // All chunks, the last marked final, then silence: the grace ends it, truncated.
    let (mut c, _) = client_with_answer(ClientConfig::default());
    assert!(ends(&feed(&mut c, &frames[..3])).is_empty());
    let due = c.poll_timeout().unwrap();
    assert_eq!(due, T0 + Duration::from_secs(3));
    c.handle_timeout(due);
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Truncated { text: "abc".into() })
    );
    // Two chunks, then nothing: the chunk timeout ends it, with the text so far.
    let (mut c, _) = client_with_answer(ClientConfig::default());
    feed(&mut c, &frames[..2]);
    let due = c.poll_timeout().unwrap();
    assert_eq!(due, T0 + Duration::from_secs(60));
    c.handle_timeout(due);
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Truncated { text: "ab".into() })
    );
}

#[test]
fn a_sealed_end_counting_chunks_that_never_came_truncates_at_once() {
    let frames = node_chunks(&["a", "b", "c"]);
    let held_back = [&frames[..2], &frames[3..4]].concat();
    let (mut c, _) = client_with_answer(ClientConfig::default());
    let events = feed(&mut c, &held_back);
    assert_eq!(
        ends(&events),
        [&ClientEvent::Truncated { text: "ab".into() }]
    );
}

#[test]
fn chunks_beyond_the_sealed_count_fail_the_answer() {
    // Three chunks of a longer answer, then the sealed end of a two-chunk answer under the
    // same key: more chunks than the node sealed.
    let three = node_chunks(&["a", "b", "c", "d"]);
    let two = node_chunks(&["x", "y"]);
    let spliced = [&three[..3], &two[2..3]].concat();
    let (mut c, _) = client_with_answer(ClientConfig::default());
    let events = feed(&mut c, &spliced);
    assert_eq!(
        ends(&events),
        [&ClientEvent::AnswerFailed {
            error: ClientError::OutOfOrder
        }]
    );
    // A chunk after the sealed end is not the answer's either.
    let (mut c, _) = client_with_answer(ClientConfig::default());
    let late = [&two[..3], &three[2..3], &two[3..]].concat();
    let events = feed(&mut c, &late);
    assert_eq!(
        ends(&events),
        [&ClientEvent::AnswerFailed {
            error: ClientError::OutOfOrder
        }]
    );
}

/// Two answers under one key: the ids of answer frames are not authenticated and chunk AADs
/// restart at `chunk_0`, so without the client remembering which frames it already had, the
/// sealed end of an earlier, shorter answer would cut a later one short (and its chunks
/// would fit in).
#[test]
fn frames_of_an_earlier_answer_under_the_key_do_not_fit_a_later_one() {
    let (mut node, conn) = established(NodeConfig::default());
    let mut c = client_cfg(K1, 1, ClientConfig::default());
    c.start_session(T0, params("1", "2")).unwrap();
    c.poll_transmit().unwrap();
    c.handle_frame(T0, r#"{"type":"session_init_ack"}"#)
        .unwrap();
    assert_eq!(c.poll_event(), Some(ClientEvent::SessionReady));
    let mut answer = |c: &mut Client<Recorded>, texts: &[&str]| {
        let rid = c.send_prompt(T0, &Prompt::new("q")).unwrap();
        c.poll_transmit().unwrap();
        for (i, t) in texts.iter().enumerate() {
            node.send_chunk(T0, conn, "1", &rid, t, i + 1 == texts.len())
                .unwrap();
        }
        node.finish(T0, conn, "1", &rid, StreamEnd::complete(1, 1, 1))
            .unwrap();
        (rid, drain(&mut node))
    };
    // The first answer arrives whole.
    let (first_id, first) = answer(&mut c, &["x", "y"]);
    let events = feed(&mut c, &first);
    assert!(
        matches!(
            ends(&events)[..],
            [ClientEvent::Finished {
                authenticated: true,
                ..
            }]
        ),
        "{events:?}"
    );
    // The second: its first two chunks, then the first answer's sealed end posing as its own.
    let (second_id, second) = answer(&mut c, &["a", "b", "c"]);
    let mut stale_end: Value = serde_json::from_str(&first[2]).unwrap();
    stale_end["id"] = Value::String(second_id.clone());
    assert_ne!(first_id, second_id);
    let attack = [second[0].clone(), second[1].clone(), stale_end.to_string()];
    let events = feed(&mut c, &attack);
    assert_eq!(
        ends(&events),
        [&ClientEvent::AnswerFailed {
            error: ClientError::OutOfOrder
        }]
    );
    // Nor does an earlier chunk fit a later answer.
    let (third_id, third) = answer(&mut c, &["p", "q"]);
    let mut stale_chunk: Value = serde_json::from_str(&first[0]).unwrap();
    stale_chunk["id"] = Value::String(third_id);
    let events = feed(&mut c, &[stale_chunk.to_string()]);
    assert_eq!(
        ends(&events),
        [&ClientEvent::AnswerFailed {
            error: ClientError::OutOfOrder
        }]
    );
    drop(third);
}

#[test]
fn a_key_that_brought_its_limit_of_frames_takes_no_more() {
    let frames = node_chunks(&["a", "b", "c"]);
    let (mut c, _) = client_with_answer(ClientConfig {
        max_frames_per_key: 2,
        ..ClientConfig::default()
    });
    let events = feed(&mut c, &frames);
    assert_eq!(
        ends(&events),
        [&ClientEvent::AnswerFailed {
            error: ClientError::KeyExhausted
        }]
    );
}

#[test]
fn a_cancelled_answer_is_finished_but_not_authenticated() {
    let frames = node_chunks(&["a", "b", "c"]);
    let (mut c, _) = client_with_answer(ClientConfig::default());
    feed(&mut c, &frames[..1]);
    c.cancel().unwrap();
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Finished {
            text: "a".into(),
            finish_reason: None,
            tokens_used: None,
            authenticated: false,
        })
    );
}

#[test]
fn client_never_sends_search_queries_in_clear() {
    let mut c = client(K1, 1);
    c.start_session(T0, params("1", "2")).unwrap();
    c.poll_transmit().unwrap();
    c.handle_frame(T0, r#"{"type":"session_init_ack"}"#)
        .unwrap();
    let mut p = Prompt::new("latest news about secret project");
    p.web_search = true;
    p.search_queries = vec!["latest news about secret project".into()];
    c.send_prompt(T0, &p).unwrap();
    let f = c.poll_transmit().unwrap();
    assert!(!f.contains("secret"));
    let v: Value = serde_json::from_str(&f).unwrap();
    assert!(v["search_queries"].is_null());
    let (pt, aad) = open(&K1, &f).unwrap();
    assert_eq!(aad, b"message_0");
    let inner: Value = serde_json::from_slice(&pt).unwrap();
    assert_eq!(
        inner["search_queries"][0],
        "latest news about secret project"
    );
}

#[test]
fn client_times_out_waiting_for_ack_and_chunks() {
    let mut c = client(K1, 1);
    c.start_session(T0, params("1", "2")).unwrap();
    assert_eq!(c.poll_timeout(), Some(T0 + Duration::from_secs(30)));
    c.handle_timeout(T0 + Duration::from_secs(30));
    assert_eq!(c.poll_event(), Some(ClientEvent::TimedOut));
    let (mut c, _) = client_with_answer(ClientConfig::default());
    assert_eq!(c.poll_timeout(), Some(T0 + Duration::from_secs(180)));
    c.handle_timeout(T0 + Duration::from_secs(180));
    assert_eq!(c.poll_event(), Some(ClientEvent::TimedOut));
}

#[test]
fn client_messages_count_up_from_zero_after_each_init() {
    let mut c = client(K1, 1);
    c.start_session(T0, params("1", "2")).unwrap();
    c.poll_transmit().unwrap();
    c.handle_frame(T0, r#"{"type":"session_init_ack"}"#)
        .unwrap();
    for i in 0..3 {
        c.send_prompt(T0, &Prompt::new("x")).unwrap();
        let f = c.poll_transmit().unwrap();
        assert_eq!(open(&K1, &f).unwrap().1, format!("message_{i}").as_bytes());
    }
}

#[test]
fn per_session_memory_is_documented_and_bounded() {
    // 100 000 established sessions (plaintext, to keep the debug-mode test fast: the per-session
    // state is the same struct) and the deadline heap holds one live entry each.
    let cfg = NodeConfig {
        allow_plaintext: true,
        max_sessions_per_connection: 100,
        queue_capacity: 1_000,
        ..NodeConfig::default()
    };
    let mut node = node(cfg, 1);
    let mut conns = Vec::new();
    for i in 0..100_000u64 {
        if i % 100 == 0 {
            conns.push(node.connect().unwrap());
        }
        let conn = *conns.last().unwrap();
        let t = T0 + Duration::from_millis(i);
        let f = format!(
            r#"{{"type":"session_init","chain_id":1,"session_id":"{i}","jobId":"{i}","id":"x"}}"#
        );
        node.handle_frame(t, conn, &f).unwrap();
        events(&mut node);
        node.accept(t, conn, &i.to_string()).unwrap();
        drain(&mut node);
    }
    assert_eq!(node.stats().sessions_active, 100_000);
    // The earliest deadline is the first session's idle timeout (the accept-timeout entries
    // were lazily deleted).
    let first_idle = T0 + Duration::from_secs(30 * 60);
    assert!(node.poll_timeout().unwrap() <= first_idle);
    node.handle_timeout(first_idle + Duration::from_millis(49_999));
    assert_eq!(node.stats().sessions_active, 50_000);
    assert_eq!(
        node.poll_timeout(),
        Some(first_idle + Duration::from_millis(50_000))
    );
    // Every expired session was reported once, or counted as dropped when the bounded event
    // queue (here 1 000) was full because the embedder did not drain it.
    let closed = events(&mut node).len() as u64;
    assert_eq!(closed, 1_000);
    assert_eq!(closed + node.stats().events_dropped, 50_000);
}

/// A field's name and how to set it to zero.
type Zeroed<C> = (&'static str, fn(&mut C));

#[test]
fn a_node_configuration_it_cannot_run_with_is_refused_at_construction() {
    let zeroed: [Zeroed<NodeConfig>; 9] = [
        ("max_frame_len", |c| c.max_frame_len = 0),
        ("max_connections", |c| c.max_connections = 0),
        ("max_sessions", |c| c.max_sessions = 0),
        ("max_sessions_per_connection", |c| {
            c.max_sessions_per_connection = 0
        }),
        ("replay_cache_capacity", |c| c.replay_cache_capacity = 0),
        ("queue_capacity", |c| c.queue_capacity = 0),
        ("session_ttl", |c| c.session_ttl = Duration::ZERO),
        ("idle_timeout", |c| c.idle_timeout = Duration::ZERO),
        ("accept_timeout", |c| c.accept_timeout = Duration::ZERO),
    ];
    for (field, zero) in zeroed {
        let mut cfg = NodeConfig::default();
        zero(&mut cfg);
        let node = Node::new(
            SecretKey::from_bytes(&NODE_KEY).unwrap(),
            cfg,
            rand_chacha::ChaCha20Rng::from_seed([0; 32]),
        );
        assert_eq!(node.err(), Some(NodeError::InvalidConfig(field)));
    }
    // A zero per-client quota is a documented policy, not a mistake.
    let cfg = NodeConfig {
        replay_cache_per_client: 0,
        ..NodeConfig::default()
    };
    node(cfg, 1);
}

#[test]
fn a_client_configuration_it_cannot_run_with_is_refused_at_construction() {
    let zeroed: [Zeroed<ClientConfig>; 7] = [
        ("max_frame_len", |c| c.max_frame_len = 0),
        ("max_answer_len", |c| c.max_answer_len = 0),
        ("queue_capacity", |c| c.queue_capacity = 0),
        ("max_frames_per_key", |c| c.max_frames_per_key = 0),
        ("ack_timeout", |c| c.ack_timeout = Duration::ZERO),
        ("first_chunk_timeout", |c| {
            c.first_chunk_timeout = Duration::ZERO
        }),
        ("chunk_timeout", |c| c.chunk_timeout = Duration::ZERO),
    ];
    for (field, zero) in zeroed {
        let mut cfg = ClientConfig::default();
        zero(&mut cfg);
        let client = Client::new(
            SecretKey::from_bytes(&CLIENT_KEY).unwrap(),
            SecretKey::from_bytes(&NODE_KEY).unwrap().public_key(),
            cfg,
            Recorded::new(&K1, 1),
        );
        assert_eq!(client.err(), Some(ClientError::InvalidConfig(field)));
    }
    // No grace after a final chunk is allowed: the answer then ends at the next timeout.
    client_cfg(
        K1,
        1,
        ClientConfig {
            final_grace: Duration::ZERO,
            ..ClientConfig::default()
        },
    );
}

#[test]
fn the_client_transmit_queue_is_bounded_and_a_call_that_would_overflow_it_is_refused() {
    let mut c = client_cfg(
        K1,
        1,
        ClientConfig {
            queue_capacity: 2,
            ..ClientConfig::default()
        },
    );
    c.start_session(T0, params("1", "2")).unwrap();
    c.ping().unwrap();
    assert_eq!(c.ping(), Err(ClientError::Capacity));
    assert_eq!(
        c.start_session(T0, params("1", "2")),
        Err(ClientError::Capacity)
    );
    // Refused calls changed nothing: the two frames wait, nothing was dropped.
    assert!(c
        .poll_transmit()
        .unwrap()
        .contains("encrypted_session_init"));
    assert_eq!(c.poll_transmit().as_deref(), Some(r#"{"type":"ping"}"#));
    assert_eq!(c.poll_transmit(), None);
    assert_eq!(c.stats(), ClientStats::default());
    c.ping().unwrap();
}

#[test]
fn embedder_calls_are_refused_when_the_transmit_queue_is_full_and_change_nothing() {
    let mut node = node(
        NodeConfig {
            queue_capacity: 2,
            ..NodeConfig::default()
        },
        1,
    );
    let conn = node.connect().unwrap();
    node.handle_frame(T0, conn, &init_frame(K1, 1, "1", "2"))
        .unwrap();
    assert_eq!(events(&mut node).len(), 1);
    for _ in 0..2 {
        node.handle_frame(T0, conn, r#"{"type":"ping"}"#).unwrap();
    }
    let full = Err(NodeError::Capacity("transmit queue"));
    assert_eq!(node.reject(conn, "1", "no"), full);
    assert_eq!(node.accept(T0, conn, "1"), full);
    assert_eq!(node.stats().sessions_pending, 1);
    // An input's output that does not fit is dropped and counted (here the pong and then the
    // error frame saying so).
    assert!(node.handle_frame(T0, conn, r#"{"type":"ping"}"#).is_err());
    assert_eq!(node.stats().transmits_dropped, 2);
    assert_eq!(drain(&mut node).len(), 2);
    node.reject(conn, "1", "no").unwrap();
    assert_eq!(
        error_code(&drain(&mut node)[0]).as_deref(),
        Some("NOT_AUTHORIZED")
    );
    assert_eq!(node.stats().sessions_pending, 0);
}

/// The answer's hot path allocates nothing (heap allocations counted per thread by a counting
/// global allocator): `seal_chunk_into` with a pre-sized output.
#[test]
fn chunk_sealing_into_a_sized_buffer_allocates_nothing() {
    use allocation_counter::measure;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    let node_key = SecretKey::from_bytes(&[0x42; 32]).unwrap();
    let mut client = Client::new(
        SecretKey::from_bytes(&[0x24; 32]).unwrap(),
        node_key.public_key(),
        ClientConfig::default(),
        ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap();
    let mut node = Node::new(
        node_key,
        NodeConfig::default(),
        ChaCha20Rng::seed_from_u64(2),
    )
    .unwrap();
    let now = Instant::ZERO;
    let conn = node.connect().unwrap();
    client.start_session(now, params("1", "1")).unwrap();
    node.handle_frame(now, conn, &client.poll_transmit().unwrap())
        .unwrap();
    while node.poll_event().is_some() {}
    node.accept(now, conn, "1").unwrap();
    client
        .handle_frame(now, &node.poll_transmit().unwrap().frame)
        .unwrap();
    client.send_prompt(now, &Prompt::new("hi")).unwrap();
    node.handle_frame(now, conn, &client.poll_transmit().unwrap())
        .unwrap();
    let Some(NodeEvent::Prompt(p)) = node.poll_event() else {
        panic!("prompt")
    };

    let text = "y".repeat(64);
    let mut out = String::with_capacity(1024);
    // The first chunk of a request records the request id (one allocation, once).
    node.seal_chunk_into(now, conn, "1", &p.request_id, &text, false, &mut out)
        .unwrap();
    let info = measure(|| {
        for _ in 0..100 {
            node.seal_chunk_into(now, conn, "1", &p.request_id, &text, false, &mut out)
                .unwrap();
        }
    });
    assert!(out.starts_with(r#"{"type":"encrypted_chunk""#), "{out}");
    assert_eq!(info.count_total, 0, "chunk sealing allocated: {info:?}");
}
