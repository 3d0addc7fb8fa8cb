//! The hot paths allocate nothing (DESIGN §2): chat `seal_into`/`open_in_place`, and the
//! session's `seal_chunk_into` with a pre-sized output. (The tunnel's test is in
//! tests/tunnel_rules.rs.) Heap allocations are counted per thread by a counting global allocator.

use allocation_counter::measure;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::time::{Duration, Instant};

#[test]
fn chat_seal_into_and_open_in_place_allocate_nothing() {
    use sealwire::chat::{Chat, ChatConfig, ChatId, Opened};
    use sealwire::crypto::ed25519::IdentityKey;

    let id = ChatId::new([5; 16]);
    let mut now = Instant::ZERO;
    let mut a = Chat::initiator(
        ChatConfig::new(id, IdentityKey::from_seed([1; 32])),
        ChaCha20Rng::seed_from_u64(1),
        now,
    )
    .unwrap();
    let mut b = Chat::responder(
        ChatConfig::new(id, IdentityKey::from_seed([2; 32])),
        ChaCha20Rng::seed_from_u64(2),
    )
    .unwrap();
    for _ in 0..10 {
        let mut quiet = true;
        while let Some(f) = a.poll_transmit() {
            quiet = false;
            let _ = b.handle_frame(now, &f);
        }
        while let Some(f) = b.poll_transmit() {
            quiet = false;
            let _ = a.handle_frame(now, &f);
        }
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        if quiet && a.is_established() && b.is_established() {
            break;
        }
        now += Duration::from_millis(1);
    }
    assert!(a.is_established() && b.is_established());

    let msg = [0x61u8; 1024];
    let mut frame = vec![0u8; 2048];
    let mut opened = 0;
    let info = measure(|| {
        for _ in 0..100 {
            let n = a.seal_into(now, &msg, &mut frame).unwrap();
            if let Ok(Opened::Message { plaintext, .. }) = b.open_in_place(now, &mut frame[..n]) {
                opened += usize::from(frame[plaintext] == msg[..]);
            }
        }
    });
    assert_eq!(opened, 100, "every message opens");
    assert_eq!(info.count_total, 0, "chat message path allocated: {info:?}");
}

#[test]
fn session_chunk_sealing_into_a_sized_buffer_allocates_nothing() {
    use sealwire::session::{
        Client, ClientConfig, Node, NodeConfig, NodeEvent, Prompt, SecretKey, SessionParams,
    };

    let node_key = SecretKey::from_bytes(&[0x42; 32]).unwrap();
    let mut client = Client::new(
        SecretKey::from_bytes(&[0x24; 32]).unwrap(),
        node_key.public_key(),
        ClientConfig::default(),
        ChaCha20Rng::seed_from_u64(1),
    );
    let mut node = Node::new(
        node_key,
        NodeConfig::default(),
        ChaCha20Rng::seed_from_u64(2),
    );
    let now = Instant::ZERO;
    let conn = node.connect(now).unwrap();
    client
        .start_session(
            now,
            SessionParams {
                session_id: "1".into(),
                job_id: "1".into(),
                chain_id: 84532,
                model: "m".into(),
                price_per_token: 0,
                vector_database: None,
            },
        )
        .unwrap();
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
