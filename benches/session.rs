//! Session benchmarks: each group (`session/init`, `session/prompt-open-1k`,
//! `session/chunk-seal-64`) holds `sealwire` and its raw-primitive `floor` (the same cryptographic work with the same crates, no parsing and no state), so the ratio
//! of the two in one run is the figure that matters.
//!
//! Run: `cargo bench --bench session` (add `-- --quick` for a fast pass); the ratios read from
//! `target/criterion/<group>/<function>/new/estimates.json`.

use std::hint::black_box;

#[path = "common/clock.rs"]
mod clock;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sealwire::session::{
    Client, ClientConfig, ConnectionId, Node, NodeConfig, NodeEvent, Prompt, SecretKey,
    SessionParams,
};
use sealwire::time::Instant;
use sha2::Digest;

/// The first `accept` vector of the SDK-generated session_init.json.
struct InitVector {
    frame: String,
    node_key: [u8; 32],
    eph_pub: Vec<u8>,
    nonce: [u8; 24],
    ciphertext: Vec<u8>,
    preimage: Vec<u8>,
    signature: Vec<u8>,
}

fn load_init_vector() -> InitVector {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/vectors/fabstir/session_init.json"
    ))
    .expect("vectors/fabstir/session_init.json");
    let file: serde_json::Value = serde_json::from_str(&text).expect("vector JSON");
    let v = &file["vectors"][0];
    let frame = v["frame"].as_str().expect("frame").to_string();
    let parsed: serde_json::Value = serde_json::from_str(&frame).expect("frame JSON");
    let p = &parsed["payload"];
    let h = |s: &serde_json::Value| hex::decode(s.as_str().expect("hex field")).expect("hex");
    InitVector {
        node_key: h(&v["node_private_key"]).try_into().expect("32 bytes"),
        eph_pub: h(&p["ephPubHex"]),
        nonce: h(&p["nonceHex"]).try_into().expect("24 bytes"),
        ciphertext: h(&p["ciphertextHex"]),
        preimage: h(&v["intermediate"]["signature_preimage"]),
        signature: h(&p["signatureHex"]),
        frame,
    }
}

/// The raw work of a node session init: ECDH, HKDF, XChaCha open, SHA-256 of the signature
/// preimage, ECDSA public-key recovery, keccak-256 address.
fn floor_init(v: &InitVector) -> [u8; 20] {
    let node = k256::SecretKey::from_slice(&v.node_key).expect("key");
    let eph = k256::PublicKey::from_sec1_bytes(&v.eph_pub).expect("point");
    let shared = k256::ecdh::diffie_hellman(node.to_nonzero_scalar(), eph.as_affine());
    let mut key = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(&[0u8; 32]), shared.raw_secret_bytes())
        .expand(&[], &mut key)
        .expect("hkdf");
    let (ct, tag) = v.ciphertext.split_at(v.ciphertext.len() - 16);
    let tag: [u8; 16] = tag.try_into().expect("tag");
    let mut buf = ct.to_vec();
    XChaCha20Poly1305::new(&key.into())
        .decrypt_inout_detached(&v.nonce.into(), &[], buf.as_mut_slice().into(), &tag.into())
        .expect("open");
    let digest: [u8; 32] = sha2::Sha256::digest(&v.preimage).into();
    let sig = k256::ecdsa::Signature::from_slice(&v.signature[..64]).expect("sig");
    let recid = k256::ecdsa::RecoveryId::from_byte(v.signature[64]).expect("recid");
    let pk = k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &sig, recid).expect("rec");
    let unc = pk.to_sec1_point(false);
    let h: [u8; 32] = sha3::Keccak256::digest(&unc.as_bytes()[1..]).into();
    black_box(&buf);
    h[12..].try_into().expect("20 bytes")
}

fn bench_init(c: &mut Criterion<clock::Clock>) {
    let v = load_init_vector();
    assert_eq!(
        sealwire::crypto::hex::encode(&floor_init(&v)),
        "6e792c2bfa2ed64f68d98b8ab658621f1239d169",
        "floor recovers the vector's client address"
    );
    let mut g = c.benchmark_group("session/init");
    g.bench_function("sealwire", |b| {
        b.iter_batched(
            || {
                let key = SecretKey::from_bytes(&v.node_key).expect("node key");
                Node::new(key, NodeConfig::default(), ChaCha20Rng::from_seed([1; 32]))
                    .expect("valid config")
            },
            |mut node| {
                let conn = node.connect().expect("connect");
                node.handle_frame(Instant::ZERO, conn, &v.frame)
                    .expect("accepted");
                match node.poll_event() {
                    Some(NodeEvent::SessionRequested(r)) => black_box(r.client_address),
                    _ => panic!("no SessionRequested"),
                };
                node
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("floor", |b| b.iter(|| floor_init(black_box(&v))));
    g.finish();

    // A replayed init (the same frame again, on a new connection): refused with
    // REPLAYED_SESSION_INIT. The replay cache is consulted with the decoded ephemeral point
    // before any recovery, ECDH or AEAD, so this costs parsing and one lookup.
    let key = SecretKey::from_bytes(&v.node_key).expect("node key");
    let mut node =
        Node::new(key, NodeConfig::default(), ChaCha20Rng::from_seed([1; 32])).expect("config");
    let conn = node.connect().expect("connect");
    node.handle_frame(Instant::ZERO, conn, &v.frame)
        .expect("first copy accepted");
    while node.poll_event().is_some() {}
    let mut g = c.benchmark_group("session/init-replayed");
    g.bench_function("sealwire", |b| {
        b.iter(|| {
            let r = node.handle_frame(Instant::ZERO, conn, black_box(&v.frame));
            assert!(r.is_err(), "a replay is refused");
            black_box(node.poll_transmit());
        })
    });
    g.finish();
}

/// A node and a client with an accepted encrypted session.
fn established() -> (Node<ChaCha20Rng>, ConnectionId, Client<ChaCha20Rng>) {
    let node_key = SecretKey::from_bytes(&[0x42; 32]).expect("node key");
    let node_pub = node_key.public_key();
    let mut node = Node::new(
        node_key,
        NodeConfig::default(),
        ChaCha20Rng::from_seed([2; 32]),
    )
    .expect("valid config");
    let identity = SecretKey::from_bytes(&[0x24; 32]).expect("client key");
    let mut client = Client::new(
        identity,
        node_pub,
        ClientConfig::default(),
        ChaCha20Rng::from_seed([3; 32]),
    )
    .expect("valid config");
    let now = Instant::ZERO;
    let conn = node.connect().expect("connect");
    client
        .start_session(
            now,
            SessionParams {
                session_id: "1".into(),
                job_id: "1".into(),
                chain_id: 84532,
                model: "echo".into(),
                price_per_token: 0,
                vector_database: None,
            },
        )
        .expect("init");
    let init = client.poll_transmit().expect("init frame");
    node.handle_frame(now, conn, &init).expect("init accepted");
    while node.poll_event().is_some() {}
    node.accept(now, conn, "1").expect("accept");
    let ack = node.poll_transmit().expect("ack");
    client.handle_frame(now, &ack.frame).expect("ack ok");
    while client.poll_event().is_some() {}
    (node, conn, client)
}

fn prompt_1k() -> Prompt {
    let mut p = Prompt::new("x".repeat(1024));
    p.request_id = Some("1764000000000-abc123".into());
    p
}

fn bench_prompt_open(c: &mut Criterion<clock::Clock>) {
    let (mut node, conn, mut client) = established();
    let prompt = prompt_1k();
    // One frame for the floor: the same ciphertext size, nonce and AAD the node opens.
    client.send_prompt(Instant::ZERO, &prompt).expect("prompt");
    let sample = client.poll_transmit().expect("message frame");
    let parsed: serde_json::Value = serde_json::from_str(&sample).expect("frame JSON");
    let ct_hex = parsed["payload"]["ciphertextHex"]
        .as_str()
        .expect("ct")
        .to_string();
    let nonce: [u8; 24] = hex::decode(parsed["payload"]["nonceHex"].as_str().expect("n"))
        .expect("hex")
        .try_into()
        .expect("24");
    let aad = hex::decode(parsed["payload"]["aadHex"].as_str().expect("aad")).expect("hex");
    // The session key is the client's secret; recover the floor key the same way the node
    // does is not possible from outside, so the floor opens a same-size ciphertext under a
    // known key.
    let floor_key = [9u8; 32];
    let floor_plain = vec![b'x'; hex::decode(&ct_hex).expect("hex").len() - 16];
    let mut floor_ct = floor_plain.clone();
    let tag = XChaCha20Poly1305::new(&floor_key.into())
        .encrypt_inout_detached(&nonce.into(), &aad, floor_ct.as_mut_slice().into())
        .expect("seal");
    floor_ct.extend_from_slice(&tag);
    let floor_hex = hex::encode(&floor_ct);
    node.handle_frame(Instant::ZERO, conn, &sample)
        .expect("first message");
    while node.poll_event().is_some() {}

    let mut g = c.benchmark_group("session/prompt-open-1k");
    g.bench_function("sealwire", |b| {
        b.iter_batched(
            || {
                client.send_prompt(Instant::ZERO, &prompt).expect("prompt");
                client.poll_transmit().expect("frame")
            },
            |frame| {
                node.handle_frame(Instant::ZERO, conn, &frame)
                    .expect("opened");
                match node.poll_event() {
                    Some(NodeEvent::Prompt(p)) => black_box(p.prompt.len()),
                    _ => panic!("no prompt"),
                };
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("floor", |b| {
        b.iter(|| {
            let mut buf = hex::decode(black_box(&floor_hex)).expect("hex");
            let (ct, tag) = buf.split_at_mut(floor_ct.len() - 16);
            let tag: [u8; 16] = (&*tag).try_into().expect("tag");
            XChaCha20Poly1305::new(&floor_key.into())
                .decrypt_inout_detached(&nonce.into(), &aad, ct.into(), &tag.into())
                .expect("open");
            black_box(&buf);
        })
    });
    g.finish();
}

fn bench_chunk_seal(c: &mut Criterion<clock::Clock>) {
    let (mut node, conn, _client) = established();
    let text = "y".repeat(64);
    let mut out = String::with_capacity(1024);
    let mut g = c.benchmark_group("session/chunk-seal-64");
    g.bench_function("sealwire", |b| {
        b.iter(|| {
            node.seal_chunk_into(
                Instant::ZERO,
                conn,
                "1",
                "req-1",
                black_box(&text),
                false,
                &mut out,
            )
            .expect("sealed");
            black_box(out.len());
        })
    });
    let mut rng = ChaCha20Rng::from_seed([5; 32]);
    let key = [7u8; 32];
    let mut hex_out = vec![0u8; 2 * (64 + 16)];
    g.bench_function("floor", |b| {
        b.iter(|| {
            let mut nonce = [0u8; 24];
            rng.fill_bytes(&mut nonce);
            let mut buf = [0u8; 64 + 16];
            buf[..64].copy_from_slice(black_box(text.as_bytes()));
            let tag = XChaCha20Poly1305::new(&key.into())
                .encrypt_inout_detached(&nonce.into(), b"chunk_7", (&mut buf[..64]).into())
                .expect("seal");
            buf[64..].copy_from_slice(&tag);
            hex::encode_to_slice(buf, &mut hex_out).expect("hex");
            black_box(&hex_out);
        })
    });
    g.finish();
}

/// 100,000 sessions in one node: the next deadline must stay cheap (O(log n) or better).
/// Sessions are plaintext ones so that building the fixture takes seconds, not minutes; they
/// sit in the same tables and deadline structure as encrypted sessions.
fn bench_scale(c: &mut Criterion<clock::Clock>) {
    let config = NodeConfig {
        allow_plaintext: true,
        max_sessions: 200_000,
        max_connections: 200_000,
        ..NodeConfig::default()
    };
    let key = SecretKey::from_bytes(&[0x11; 32]).expect("key");
    let mut node = Node::new(key, config, ChaCha20Rng::from_seed([4; 32])).expect("valid config");
    let mut conns = Vec::new();
    for i in 0..100_000u64 {
        let now = Instant::from_nanos(i * 1_000);
        let conn = node.connect().expect("connect");
        let frame = format!(
            r#"{{"type":"session_init","chain_id":84532,"session_id":"{i}","jobId":"{i}","user_address":"0x6e792C2BfA2eD64F68d98b8AB658621f1239d169","id":"i{i}"}}"#
        );
        node.handle_frame(now, conn, &frame)
            .expect("plaintext init");
        while node.poll_event().is_some() {}
        node.accept(now, conn, &i.to_string()).expect("accept");
        while node.poll_transmit().is_some() {}
        conns.push(conn);
    }
    let mut g = c.benchmark_group("session/poll-timeout-100k");
    g.bench_function("sealwire", |b| b.iter(|| black_box(node.poll_timeout())));
    let mut k = 0usize;
    g.bench_function("ping-among-100k", |b| {
        b.iter(|| {
            k = (k + 7919) % conns.len();
            node.handle_frame(Instant::from_secs(1), conns[k], r#"{"type":"ping"}"#)
                .expect("pong");
            black_box(node.poll_transmit());
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = clock::config();
    targets = bench_init, bench_prompt_open, bench_chunk_seal, bench_scale
}
criterion_main!(benches);
