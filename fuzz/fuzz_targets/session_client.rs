//! Client frame input: a client waiting for an answer receives arbitrary node frames
//! (separated by 0xff). It must never panic, and its queues stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::session::{Client, ClientConfig, Prompt, SecretKey, SessionParams};
use sealwire::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let node_pub = SecretKey::from_bytes(&[0x42; 32])
        .expect("key")
        .public_key();
    let identity = SecretKey::from_bytes(&[0x24; 32]).expect("key");
    let config = ClientConfig {
        max_frame_len: 64 * 1024,
        ..ClientConfig::default()
    };
    let mut client = Client::new(identity, node_pub, config, ChaCha20Rng::from_seed([2; 32]))
        .expect("valid config");
    let mut now = Instant::ZERO;
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
        .expect("init");
    let mut sent_prompt = false;
    for frame in data.split(|b| *b == 0xff) {
        now += Duration::from_millis(5);
        let text = String::from_utf8_lossy(frame);
        let _ = client.handle_frame(now, &text);
        if !sent_prompt {
            sent_prompt = client.send_prompt(now, &Prompt::new("hello")).is_ok();
        }
        let mut n = 0;
        while client.poll_event().is_some() {
            n += 1;
            assert!(n < 10_000, "event queue is bounded");
        }
        while client.poll_transmit().is_some() {}
        if let Some(t) = client.poll_timeout() {
            if t <= now {
                client.handle_timeout(now);
            }
        }
    }
});
