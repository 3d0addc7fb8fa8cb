//! Node frame input with an established session: any sequence of frames (separated by 0xff,
//! which never occurs in UTF-8) must give typed errors, at most one error frame per frame,
//! bounded queues, and leave the established session usable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::session::{
    Client, ClientConfig, ClientEvent, Node, NodeConfig, NodeEvent, Prompt, SecretKey,
    SessionParams,
};
use sealwire::time::Instant;

fuzz_target!(|data: &[u8]| {
    let node_key = SecretKey::from_bytes(&[0x42; 32]).expect("valid key");
    let node_pub = node_key.public_key();
    let config = NodeConfig {
        allow_plaintext: data.first().is_some_and(|b| b & 1 == 1),
        max_frame_len: 64 * 1024,
        ..NodeConfig::default()
    };
    let mut node =
        Node::new(node_key, config, ChaCha20Rng::from_seed([1; 32])).expect("valid config");
    let identity = SecretKey::from_bytes(&[0x24; 32]).expect("valid key");
    let mut client = Client::new(
        identity,
        node_pub,
        ClientConfig::default(),
        ChaCha20Rng::from_seed([2; 32]),
    )
    .expect("valid config");
    let t0 = Instant::ZERO;
    let conn = node.connect().expect("connect");
    client
        .start_session(
            t0,
            SessionParams {
                session_id: "1".into(),
                job_id: "1".into(),
                chain_id: 84532,
                model: "m".into(),
                price_per_token: 0,
                vector_database: None,
            },
        )
        .expect("init");
    let init = client.poll_transmit().expect("init frame");
    node.handle_frame(t0, conn, &init).expect("init ok");
    while node.poll_event().is_some() {}
    node.accept(t0, conn, "1").expect("accept");
    while let Some(t) = node.poll_transmit() {
        let _ = client.handle_frame(t0, &t.frame);
    }
    while client.poll_event().is_some() {}

    let mut now = t0;
    for frame in data.split(|b| *b == 0xff) {
        now += sealwire::time::Duration::from_millis(1);
        let text = String::from_utf8_lossy(frame);
        let before = node.stats();
        let result = node.handle_frame(now, conn, &text);
        let mut errors = 0;
        while let Some(t) = node.poll_transmit() {
            if t.frame.starts_with(r#"{"type":"error""#) {
                errors += 1;
            }
        }
        if result.is_err() {
            assert_eq!(errors, 1, "exactly one error frame per rejected frame");
        }
        while node.poll_event().is_some() {}
        let _ = before;
    }

    // The established session still works: a fresh prompt opens.
    let mut prompt = Prompt::new("still alive");
    prompt.request_id = Some("after-fuzz".into());
    client.send_prompt(now, &prompt).expect("prompt");
    let frame = client.poll_transmit().expect("message frame");
    node.handle_frame(now, conn, &frame)
        .expect("session survives any garbage");
    let mut got = false;
    while let Some(e) = node.poll_event() {
        if let NodeEvent::Prompt(p) = e {
            got |= &*p.prompt == "still alive";
        }
    }
    assert!(got, "prompt delivered after fuzz input");
    let _ = ClientEvent::SessionReady;
});
