//! The node driver that `ws_node` runs, over real loopback sockets: `node_driver::serve`
//! serves a `session::Node`, and a `session::Client` talks to it through tokio-tungstenite;
//! the challenge endpoint is called with a hand-written HTTP request. (The check against a
//! client that is not ours is `tests/e2e_fabstir.sh`.)

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::session::{
    verify_challenge_response, Address, Client, ClientConfig, ClientEvent, Prompt, PublicKey,
    SecretKey, SessionParams,
};
use sealwire::time::Clock;
use session_examples::model::EchoModel;
use session_examples::node_driver::Service;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{stop, Running, LIMIT};

async fn start(allow: Option<HashSet<Address>>, delay_ms: u64) -> Running {
    start_with_gap(allow, delay_ms, Duration::ZERO).await
}

async fn start_with_gap(
    allow: Option<HashSet<Address>>,
    delay_ms: u64,
    end_gap: Duration,
) -> Running {
    let model = Arc::new(EchoModel {
        delay: Duration::from_millis(delay_ms),
    });
    let service = Service {
        allow,
        end_gap,
        ..common::service(model)
    };
    common::start(service, ()).await
}

/// What one prompt ended with.
#[derive(Debug, PartialEq)]
enum Outcome {
    Answer { chunks: Vec<String>, text: String },
    NodeError(String),
}

/// Opens an encrypted session with `identity`, sends `prompt`, collects the answer.
async fn ask(
    addr: std::net::SocketAddr,
    node_pub: PublicKey,
    identity: SecretKey,
    prompt: &str,
) -> Outcome {
    let clock = Clock::new();
    let mut client = Client::new(
        identity,
        node_pub,
        ClientConfig::default(),
        ChaCha20Rng::from_seed([2; 32]),
    )
    .unwrap();
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws"))
        .await
        .unwrap();
    let (mut sink, mut incoming) = ws.split();
    let params = SessionParams {
        session_id: "5".into(),
        job_id: "9".into(),
        chain_id: 84532,
        model: "echo".into(),
        price_per_token: 0,
        vector_database: None,
    };
    client.start_session(clock.now(), params).unwrap();
    let mut prompt = Some(Prompt::new(prompt));
    let mut chunks = Vec::new();
    loop {
        while let Some(frame) = client.poll_transmit() {
            sink.send(Message::text(frame)).await.unwrap();
        }
        let mut handled = false;
        while let Some(event) = client.poll_event() {
            handled = true;
            match event {
                ClientEvent::SessionReady => {
                    let p = prompt.take().expect("one ack per session");
                    client.send_prompt(clock.now(), &p).unwrap();
                }
                ClientEvent::Chunk { text, .. } => chunks.push(text),
                ClientEvent::Finished {
                    text,
                    authenticated: true,
                    ..
                } => return Outcome::Answer { chunks, text },
                ClientEvent::NodeError { code, .. } => return Outcome::NodeError(code),
                other => panic!("unexpected client event {other:?}"),
            }
        }
        if handled {
            continue;
        }
        match incoming.next().await {
            Some(Ok(Message::Text(t))) => client.handle_frame(clock.now(), t.as_str()).unwrap(),
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
}

/// `POST /v1/auth/challenge` over a raw TCP stream → (status, body).
async fn post_challenge(addr: std::net::SocketAddr, body: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /v1/auth/challenge HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap();
    (status, body)
}

#[tokio::test]
async fn echo_streams_the_prompt_word_by_word_over_websocket() {
    tokio::time::timeout(LIMIT, async {
        let node = start(None, 0).await;
        let me = SecretKey::from_bytes(&[0x11; 32]).unwrap();
        let out = ask(node.addr, node.public_key, me, "héllo  wide 😀 world ").await;
        assert_eq!(
            out,
            Outcome::Answer {
                chunks: vec![
                    "héllo  ".into(),
                    "wide ".into(),
                    "😀 ".into(),
                    "world ".into()
                ],
                text: "héllo  wide 😀 world ".into(),
            }
        );
        stop(node).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn allow_list_admits_listed_addresses_and_refuses_others() {
    tokio::time::timeout(LIMIT, async {
        let listed = SecretKey::from_bytes(&[0x21; 32]).unwrap();
        let stranger = SecretKey::from_bytes(&[0x22; 32]).unwrap();
        let allow = HashSet::from([listed.public_key().address()]);
        let node = start(Some(allow), 0).await;
        let out = ask(node.addr, node.public_key, stranger, "hi").await;
        assert_eq!(out, Outcome::NodeError("NOT_AUTHORIZED".into()));
        let out = ask(node.addr, node.public_key, listed, "hi").await;
        assert!(
            matches!(out, Outcome::Answer { ref text, .. } if text == "hi"),
            "{out:?}"
        );
        stop(node).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn challenge_endpoint_signs_with_the_node_key_and_refuses_bad_bodies() {
    tokio::time::timeout(LIMIT, async {
        let node = start(None, 0).await;
        let challenge = [0x5a; 32];
        let body = format!(
            r#"{{"challenge":"{}"}}"#,
            sealwire::crypto::hex::encode(&challenge)
        );
        let (status, response) = post_challenge(node.addr, &body).await;
        assert_eq!(status, 200, "{response}");
        let key = verify_challenge_response(&challenge, &response, &node.address).unwrap();
        assert_eq!(key, node.public_key);

        let (status, response) = post_challenge(node.addr, r#"{"challenge":"zz"}"#).await;
        assert_eq!(status, 400);
        let json: serde_json::Value = serde_json::from_str(&response).unwrap();
        assert!(json["error"].is_string(), "{response}");
        stop(node).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn shutdown_closes_open_connections_and_returns() {
    tokio::time::timeout(LIMIT, async {
        let node = start(None, 0).await;
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", node.addr))
            .await
            .unwrap();
        let (mut sink, mut incoming) = ws.split();
        // The node answers the heartbeat, so the connection is registered with it.
        sink.send(Message::text(r#"{"type":"ping"}"#))
            .await
            .unwrap();
        match incoming.next().await {
            Some(Ok(Message::Text(t))) => assert!(t.as_str().contains("pong"), "{t}"),
            other => panic!("no pong: {other:?}"),
        }
        stop(node).await;
        // The node closed the socket: a close frame (or the end of the stream) follows.
        match incoming.next().await {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {}
            Some(Ok(other)) => panic!("unexpected frame after shutdown: {other:?}"),
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn stream_cancel_stops_the_answer_with_a_cancelled_stream_end() {
    tokio::time::timeout(LIMIT, async {
        let node = start(None, 20).await;
        let clock = Clock::new();
        let me = SecretKey::from_bytes(&[0x31; 32]).unwrap();
        let mut client = Client::new(
            me,
            node.public_key,
            ClientConfig::default(),
            ChaCha20Rng::from_seed([3; 32]),
        )
        .unwrap();
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", node.addr))
            .await
            .unwrap();
        let (mut sink, mut incoming) = ws.split();
        let params = SessionParams {
            session_id: "1".into(),
            job_id: "1".into(),
            chain_id: 84532,
            model: "echo".into(),
            price_per_token: 0,
            vector_database: None,
        };
        client.start_session(clock.now(), params).unwrap();
        let words: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let mut prompt = Some(Prompt::new(words.join(" ")));
        let mut chunks_seen = 0;
        let mut cancelled = false;
        loop {
            while let Some(frame) = client.poll_transmit() {
                sink.send(Message::text(frame)).await.unwrap();
            }
            while let Some(event) = client.poll_event() {
                match event {
                    ClientEvent::SessionReady => {
                        let p = prompt.take().unwrap();
                        client.send_prompt(clock.now(), &p).unwrap();
                    }
                    ClientEvent::Chunk { .. } if !cancelled => {
                        client.cancel().unwrap();
                        cancelled = true;
                    }
                    _ => {}
                }
            }
            while let Some(frame) = client.poll_transmit() {
                sink.send(Message::text(frame)).await.unwrap();
            }
            let Some(Ok(Message::Text(t))) = incoming.next().await else {
                panic!("connection ended before stream_end");
            };
            if t.as_str().contains(r#""type":"encrypted_chunk""#) {
                chunks_seen += 1;
            }
            if t.as_str().contains(r#""type":"stream_end""#) {
                assert!(cancelled, "the answer ended before the cancel: {t}");
                assert!(t.as_str().contains(r#""reason":"cancelled""#), "{t}");
                break;
            }
            let _ = client.handle_frame(clock.now(), t.as_str());
        }
        assert!(
            chunks_seen < words.len(),
            "{chunks_seen} chunks: not stopped"
        );
        stop(node).await;
    })
    .await
    .unwrap();
}

/// The end of an answer (`encrypted_response`, `stream_end`) leaves after the end gap, in
/// writes of its own: a client reading as fast as it can sees the last chunk well before it.
#[tokio::test]
async fn end_of_answer_leaves_after_the_end_gap() {
    tokio::time::timeout(LIMIT, async {
        let gap = Duration::from_millis(300);
        let node = start_with_gap(None, 0, gap).await;
        let clock = Clock::new();
        let me = SecretKey::from_bytes(&[0x31; 32]).unwrap();
        let mut client = Client::new(
            me,
            node.public_key,
            ClientConfig::default(),
            ChaCha20Rng::from_seed([3; 32]),
        )
        .unwrap();
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", node.addr))
            .await
            .unwrap();
        let (mut sink, mut incoming) = ws.split();
        let params = SessionParams {
            session_id: "5".into(),
            job_id: "9".into(),
            chain_id: 84532,
            model: "echo".into(),
            price_per_token: 0,
            vector_database: None,
        };
        client.start_session(clock.now(), params).unwrap();
        // (frame type, arrival) of every frame until the answer is finished.
        let mut arrivals = Vec::new();
        'answer: loop {
            while let Some(event) = client.poll_event() {
                match event {
                    ClientEvent::SessionReady => {
                        let p = Prompt::new("one two three four");
                        client.send_prompt(clock.now(), &p).unwrap();
                    }
                    ClientEvent::Chunk { .. } => {}
                    ClientEvent::Finished {
                        authenticated: true,
                        ..
                    } => break 'answer,
                    other => panic!("unexpected client event {other:?}"),
                }
            }
            while let Some(frame) = client.poll_transmit() {
                sink.send(Message::text(frame)).await.unwrap();
            }
            let Some(Ok(Message::Text(t))) = incoming.next().await else {
                panic!("connection ended");
            };
            let json: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            let kind = json["type"].as_str().unwrap().to_owned();
            arrivals.push((kind, std::time::Instant::now()));
            client.handle_frame(clock.now(), t.as_str()).unwrap();
        }
        let last_chunk = arrivals
            .iter()
            .rposition(|(kind, _)| kind == "encrypted_chunk")
            .unwrap();
        assert_eq!(last_chunk, arrivals.len() - 3, "{arrivals:?}");
        let (_, chunk_at) = &arrivals[last_chunk];
        let (end_kind, end_at) = &arrivals[last_chunk + 1];
        assert_eq!(end_kind, "encrypted_response");
        let waited = end_at.duration_since(*chunk_at);
        assert!(
            waited >= gap - Duration::from_millis(50),
            "end came {waited:?} after the last chunk"
        );
        stop(node).await;
    })
    .await
    .unwrap();
}
