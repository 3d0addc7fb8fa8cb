//! `ws_node`'s bounds before authentication, over real loopback sockets from distinct source
//! addresses (127.0.0.2, 127.0.0.3, ...): connections per address and in total, live sessions
//! per address. A flood from one address must not refuse a client from another.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::session::{Client, ClientConfig, ClientEvent, Prompt, SecretKey, SessionParams};
use sealwire::time::Clock;
use session_examples::limits::Limits;
use session_examples::node_driver::Service;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

mod common;
use common::{stop, Running, LIMIT};

async fn start(limits: Limits) -> Running {
    start_with(limits, None, None).await
}

async fn start_with(
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    admission: Option<session_examples::admission::Admission>,
) -> Running {
    let service = Service {
        limits,
        tls,
        admission,
        ..common::service(common::echo())
    };
    common::start(service, ()).await
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A WebSocket to the node from source address `from`, or the refusal's HTTP status.
async fn connect(node: &Running, from: IpAddr) -> Result<WebSocketStream<TcpStream>, u16> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let tcp = socket.connect(node.addr).await.unwrap();
    let url = format!("ws://{}/v1/ws", node.addr);
    match tokio_tungstenite::client_async(url, tcp).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// A client of `node` with identity and randomness from `seed`.
fn client_for(node: &Running, seed: u8) -> Client<ChaCha20Rng> {
    Client::new(
        SecretKey::from_bytes(&[seed; 32]).unwrap(),
        node.public_key,
        ClientConfig::default(),
        ChaCha20Rng::from_seed([seed; 32]),
    )
    .unwrap()
}

/// The session every test opens (job 9, chain 84532, the echo model).
fn session_params() -> SessionParams {
    SessionParams {
        session_id: "5".into(),
        job_id: "9".into(),
        chain_id: 84532,
        model: "echo".into(),
        price_per_token: 0,
        vector_database: None,
    }
}

/// Opens an encrypted session on `ws` and asks "hi": `Ok(answer)` or `Err(error code)`.
async fn session<S>(node: &Running, ws: &mut WebSocketStream<S>, seed: u8) -> Result<String, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let clock = Clock::new();
    let mut client = client_for(node, seed);
    let params = session_params();
    client.start_session(clock.now(), params).unwrap();
    loop {
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::SessionReady => {
                    client.send_prompt(clock.now(), &Prompt::new("hi")).unwrap();
                }
                ClientEvent::Chunk { .. } => {}
                ClientEvent::Finished { text, .. } => return Ok(text),
                ClientEvent::NodeError { code, .. } => return Err(code),
                other => panic!("unexpected client event {other:?}"),
            }
        }
        while let Some(frame) = client.poll_transmit() {
            ws.send(Message::text(frame)).await.unwrap();
        }
        match ws.next().await {
            Some(Ok(Message::Text(t))) => client.handle_frame(clock.now(), t.as_str()).unwrap(),
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
}

#[tokio::test]
async fn connections_per_address_are_capped_without_refusing_other_addresses() {
    tokio::time::timeout(LIMIT, async {
        let limits = Limits {
            max_connections_per_ip: 3,
            ..Limits::default()
        };
        let node = start(limits).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(connect(&node, ip(2)).await.unwrap());
        }
        assert_eq!(connect(&node, ip(2)).await.err(), Some(503));
        let mut other = connect(&node, ip(3)).await.unwrap();
        assert_eq!(session(&node, &mut other, 0x31).await.as_deref(), Ok("hi"));
        // A closed connection gives its slot back.
        let mut first = held.remove(0);
        first.close(None).await.unwrap();
        while first.next().await.is_some() {}
        let mut again = None;
        for _ in 0..100 {
            if let Ok(ws) = connect(&node, ip(2)).await {
                again = Some(ws);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            again.is_some(),
            "the slot of a closed connection was not given back"
        );
        stop(node).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn connections_in_total_are_capped() {
    tokio::time::timeout(LIMIT, async {
        let limits = Limits {
            max_connections: 2,
            ..Limits::default()
        };
        let node = start(limits).await;
        let _a = connect(&node, ip(2)).await.unwrap();
        let _b = connect(&node, ip(3)).await.unwrap();
        assert_eq!(connect(&node, ip(4)).await.err(), Some(503));
        stop(node).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn live_sessions_per_address_are_capped_without_refusing_other_addresses() {
    tokio::time::timeout(LIMIT, async {
        let limits = Limits {
            max_sessions_per_ip: 2,
            ..Limits::default()
        };
        let node = start(limits).await;
        // A flood from 127.0.0.2: throwaway keys, each a live session on its own connection.
        let mut held = Vec::new();
        for seed in 0..2 {
            let mut ws = connect(&node, ip(2)).await.unwrap();
            assert_eq!(
                session(&node, &mut ws, 0x40 + seed).await.as_deref(),
                Ok("hi")
            );
            held.push(ws);
        }
        let mut ws = connect(&node, ip(2)).await.unwrap();
        assert_eq!(
            session(&node, &mut ws, 0x50).await,
            Err("NOT_AUTHORIZED".into())
        );
        // 127.0.0.3 is still served.
        let mut other = connect(&node, ip(3)).await.unwrap();
        assert_eq!(session(&node, &mut other, 0x51).await.as_deref(), Ok("hi"));
        // A session that ends (its connection closed) gives its slot back.
        let mut first = held.remove(0);
        first.close(None).await.unwrap();
        while first.next().await.is_some() {}
        let mut served = false;
        for attempt in 0..100u8 {
            let mut ws = connect(&node, ip(2)).await.unwrap();
            if session(&node, &mut ws, 0x60u8.wrapping_add(attempt))
                .await
                .is_ok()
            {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            served,
            "the session slot of a closed connection was not given back"
        );
        stop(node).await;
    })
    .await
    .unwrap();
}

/// Reads until the node closes the connection; the close code it gave (0 = none).
async fn close_code(ws: &mut WebSocketStream<TcpStream>) -> u16 {
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Close(frame)) => return frame.map_or(0, |f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return 0,
        }
    }
    0
}

#[tokio::test]
async fn frames_over_max_frame_close_with_1009_and_invalid_utf8_with_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    tokio::time::timeout(LIMIT, async {
        let limits = Limits {
            max_frame: 64 * 1024,
            ..Limits::default()
        };
        let node = start(limits).await;
        let mut ws = connect(&node, ip(2)).await.unwrap();
        ws.send(Message::text("x".repeat(100 * 1024)))
            .await
            .unwrap();
        assert_eq!(close_code(&mut ws).await, 1009);

        let mut ws = connect(&node, ip(2)).await.unwrap();
        let bad = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
        ws.send(Message::Frame(bad)).await.unwrap();
        assert_eq!(close_code(&mut ws).await, 1007);

        // A frame under the limit is still served.
        let mut ws = connect(&node, ip(3)).await.unwrap();
        assert_eq!(session(&node, &mut ws, 0x71).await.as_deref(), Ok("hi"));
        stop(node).await;
    })
    .await
    .unwrap();
}

/// `POST /v1/auth/challenge` with an empty JSON body from `from`: the HTTP status.
async fn challenge_status(node: &Running, from: IpAddr) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let mut tcp = socket.connect(node.addr).await.unwrap();
    let request = format!(
        "POST /v1/auth/challenge HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}",
        node.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    response.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn challenges_are_rate_limited_per_address() {
    tokio::time::timeout(LIMIT, async {
        let limits = Limits {
            challenges_per_minute: 3,
            ..Limits::default()
        };
        let node = start(limits).await;
        for _ in 0..3 {
            assert_ne!(challenge_status(&node, ip(2)).await, 429);
        }
        assert_eq!(challenge_status(&node, ip(2)).await, 429);
        assert_ne!(challenge_status(&node, ip(3)).await, 429);
        stop(node).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn session_inits_are_rate_limited_per_address() {
    tokio::time::timeout(LIMIT, async {
        let limits = Limits {
            inits_per_minute: 2,
            ..Limits::default()
        };
        let node = start(limits).await;
        for seed in 0..2 {
            let mut ws = connect(&node, ip(2)).await.unwrap();
            assert_eq!(
                session(&node, &mut ws, 0x80 + seed).await.as_deref(),
                Ok("hi")
            );
        }
        // The third init from 127.0.0.2 within the minute closes its connection (1008).
        let mut ws = connect(&node, ip(2)).await.unwrap();
        let mut client = client_for(&node, 0x90);
        let params = session_params();
        client.start_session(Clock::new().now(), params).unwrap();
        ws.send(Message::text(client.poll_transmit().unwrap()))
            .await
            .unwrap();
        assert_eq!(close_code(&mut ws).await, 1008);
        // 127.0.0.3 is still served.
        let mut other = connect(&node, ip(3)).await.unwrap();
        assert_eq!(session(&node, &mut other, 0x91).await.as_deref(), Ok("hi"));
        stop(node).await;
    })
    .await
    .unwrap();
}

/// Opens a plain TCP connection to the node from `from`.
async fn tcp_from(node: &Running, from: IpAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(node.addr).await
}

/// Reads until the peer closes (`true`) or `within` passes (`false`).
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_headers_is_closed_after_the_header_timeout() {
    tokio::time::timeout(LIMIT, async {
        let limits = Limits {
            header_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let node = start(limits).await;
        let mut slow = tcp_from(&node, ip(2)).await.unwrap();
        use tokio::io::AsyncWriteExt;
        slow.write_all(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // Not closed early: the timeout is the node's, not an accident.
        assert!(!closed_within(&mut slow, Duration::from_millis(100)).await);
        assert!(
            closed_within(&mut slow, Duration::from_secs(3)).await,
            "a slowloris connection outlived the header timeout"
        );
        stop(node).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_websocket_without_a_session_is_closed_after_the_idle_timeout_but_a_session_keeps_it() {
    tokio::time::timeout(LIMIT, async {
        let limits = Limits {
            idle_timeout: Duration::from_millis(400),
            ..Limits::default()
        };
        let node = start(limits).await;
        let mut idle = connect(&node, ip(2)).await.unwrap();
        let mut busy = connect(&node, ip(3)).await.unwrap();
        assert_eq!(session(&node, &mut busy, 0x41).await.as_deref(), Ok("hi"));
        // Pings are not a session: the idle connection is closed with 1008 all the same.
        idle.send(Message::Ping(vec![1].into())).await.unwrap();
        let started = std::time::Instant::now();
        assert_eq!(close_code(&mut idle).await, 1008);
        assert!(started.elapsed() < Duration::from_secs(3));
        // The connection with a live session outlives the idle timeout and still answers.
        tokio::time::sleep(Duration::from_millis(800)).await;
        busy.send(Message::Ping(vec![2].into())).await.unwrap();
        let pong = tokio::time::timeout(Duration::from_secs(2), busy.next()).await;
        assert!(
            matches!(pong, Ok(Some(Ok(Message::Pong(_))))),
            "the connection with a session was closed: {pong:?}"
        );
        stop(node).await;
    })
    .await
    .unwrap();
}

/// 2,000 idle connections and 500 slowloris connections from 127.0.0.2 do not delay a session
/// from 127.0.0.3 by more than a second.
#[tokio::test]
async fn idle_and_slowloris_floods_from_one_address_do_not_delay_another() {
    // The test process holds every flood socket (and the node's side of the accepted ones).
    let _ = rlimit::increase_nofile_limit(8192);
    tokio::time::timeout(Duration::from_secs(60), async {
        let node = start(Limits::default()).await;
        let mut held = Vec::new();
        for _ in 0..2000 {
            if let Ok(tcp) = tcp_from(&node, ip(2)).await {
                held.push(tcp);
            }
        }
        use tokio::io::AsyncWriteExt;
        for _ in 0..500 {
            if let Ok(mut tcp) = tcp_from(&node, ip(2)).await {
                let _ = tcp.write_all(b"GET /v1/ws HTTP/1.1\r\nHo").await;
                held.push(tcp);
            }
        }
        assert!(
            held.len() >= 2000,
            "the flood could not be opened ({})",
            held.len()
        );
        let started = std::time::Instant::now();
        let mut ws = connect(&node, ip(3)).await.unwrap();
        assert_eq!(session(&node, &mut ws, 0x51).await.as_deref(), Ok("hi"));
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "the session took {took:?} under the flood"
        );
        drop(held);
        stop(node).await;
    })
    .await
    .unwrap();
}

/// A self-signed certificate for `localhost` in `dir`: (cert.pem, key.pem, the certificate).
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = dir.join("cert.pem");
    let key_pem = dir.join("key.pem");
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    (cert_pem, key_pem, cert.cert.der().to_vec())
}

#[tokio::test]
async fn wss_serves_an_encrypted_session_and_refuses_plain_websocket() {
    tokio::time::timeout(LIMIT, async {
        let dir = std::env::temp_dir().join(format!("ws_node_tls_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert_pem, key_pem, der) = certificate(&dir);
        let acceptor = session_examples::node_driver::tls_acceptor(&cert_pem, &key_pem).unwrap();
        let node = start_with(Limits::default(), Some(acceptor), None).await;

        let mut roots = rustls::RootCertStore::empty();
        roots.add(der.into()).unwrap();
        #[allow(deprecated)]
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tcp_from(&node, ip(2)).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        let url = format!("wss://localhost:{}/v1/ws", node.addr.port());
        let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
        assert_eq!(session(&node, &mut ws, 0x61).await.as_deref(), Ok("hi"));

        // Plain ws:// to the TLS listener gets no WebSocket.
        let plain = tcp_from(&node, ip(3)).await.unwrap();
        let url = format!("ws://{}/v1/ws", node.addr);
        assert!(tokio_tungstenite::client_async(url, plain).await.is_err());
        let _ = std::fs::remove_dir_all(&dir);
        stop(node).await;
    })
    .await
    .unwrap();
}

/// The test process's peak resident memory (VmHWM), in KiB; the node runs in this process.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A WebSocket upgrade by hand, then one binary frame that announces `len` bytes and streams
/// them from a small buffer until the node closes the connection (the client holds no 8 MB).
/// Returns the payload bytes the node took before it closed.
async fn send_huge_frame(node: &Running, from: IpAddr, len: u64) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tcp_from(node, from).await.unwrap();
    let request = "GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(tcp.read(&mut byte).await.unwrap(), 1, "no upgrade answer");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "no upgrade");
    let mut frame = vec![0x82, 0xff];
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&frame).await.unwrap();
    let block = [0x5au8; 64 << 10];
    let mut sent = 0;
    while sent < len {
        if tcp.write_all(&block).await.is_err() {
            break;
        }
        sent += block.len() as u64;
    }
    sent
}

/// 100 connections that each send one 8 MB frame leave the node's peak resident memory under
/// 256 MiB, and it serves a normal session right after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_8_mb_frames_keep_the_node_under_256_mib() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let node = start(Limits::default()).await;
        let floods = (0..100u8).map(|i| send_huge_frame(&node, ip(10 + i % 4), 8 << 20));
        let sent = futures_util::future::join_all(floods).await;
        let peak = peak_rss_kib();
        assert!(peak < 256 << 10, "peak resident memory {peak} KiB");
        // Refused from the frame header: none of them got far (kernel buffers aside).
        assert!(
            sent.iter().all(|&n| n < 8 << 20),
            "a frame was read whole: {sent:?}"
        );
        let mut ws = connect(&node, ip(3)).await.unwrap();
        assert_eq!(session(&node, &mut ws, 0x71).await.as_deref(), Ok("hi"));
        stop(node).await;
    })
    .await
    .unwrap();
}

/// `GET /metrics` from `from`: the body.
async fn scrape(node: &Running, from: IpAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tcp_from(node, from).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_sessions_prompts_chunks_and_refusals_and_name_no_one() {
    tokio::time::timeout(LIMIT, async {
        let limits = Limits {
            max_connections_per_ip: 1,
            ..Limits::default()
        };
        let node = start(limits).await;
        let before = scrape(&node, ip(4)).await;
        assert_eq!(metric(&before, "ws_node_sessions_total"), Some(0.0));
        let mut ws = connect(&node, ip(3)).await.unwrap();
        assert_eq!(session(&node, &mut ws, 0x77).await.as_deref(), Ok("hi"));
        assert_eq!(connect(&node, ip(3)).await.err(), Some(503));
        let text = scrape(&node, ip(4)).await;
        assert_eq!(metric(&text, "ws_node_sessions_total"), Some(1.0));
        assert_eq!(metric(&text, "ws_node_sessions_active"), Some(1.0));
        assert_eq!(metric(&text, "ws_node_prompts_total"), Some(1.0));
        assert_eq!(metric(&text, "ws_node_chunks_total"), Some(1.0));
        assert_eq!(
            metric(&text, "ws_node_inits_total{result=\"accepted\",code=\"\"}"),
            Some(1.0)
        );
        assert_eq!(
            metric(
                &text,
                "ws_node_connections_refused_total{reason=\"connections_per_address\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            metric(&text, "ws_node_model_first_piece_seconds_count"),
            Some(1.0)
        );
        assert!(metric(&text, "ws_node_frame_bytes_total{direction=\"in\"}").unwrap() > 0.0);
        // No key, client address or source address.
        let client = SecretKey::from_bytes(&[0x77; 32]).unwrap();
        let address = client.public_key().address().to_string();
        for secret in [
            address.to_lowercase(),
            address[2..].to_lowercase(),
            sealwire::crypto::hex::encode(&node.public_key.to_compressed()),
            "127.0.0.3".to_string(),
        ] {
            assert!(
                !text.to_lowercase().contains(&secret),
                "metrics show {secret}"
            );
        }
        // The session ends with its connection.
        ws.close(None).await.unwrap();
        while ws.next().await.is_some() {}
        let mut active = None;
        for _ in 0..100 {
            active = metric(&scrape(&node, ip(4)).await, "ws_node_sessions_active");
            if active == Some(0.0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(active, Some(0.0));
        stop(node).await;
    })
    .await
    .unwrap();
}

/// An admission hook stand-in: admits job 9 only, answers `/slow` after 5 s; records bodies.
async fn admission_hook() -> (SocketAddr, Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use axum::routing::post;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new()
        .route(
            "/admit",
            post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let record = record.clone();
                async move {
                    let ok = body["jobId"] == "9";
                    record.lock().unwrap().push(body);
                    if ok {
                        axum::http::StatusCode::NO_CONTENT
                    } else {
                        axum::http::StatusCode::FORBIDDEN
                    }
                }
            }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                axum::http::StatusCode::OK
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

#[tokio::test]
async fn the_admission_hook_admits_on_2xx_and_refuses_otherwise_or_when_slow() {
    tokio::time::timeout(LIMIT, async {
        let (hook, seen) = admission_hook().await;
        let admit = |path: &str, timeout_ms| {
            session_examples::admission::Admission::new(
                format!("http://{hook}{path}"),
                Duration::from_millis(timeout_ms),
            )
            .unwrap()
        };
        // Job 9 is admitted; the hook saw the proven address, job, chain and model.
        let node = start_with(Limits::default(), None, Some(admit("/admit", 2000))).await;
        let mut ws = connect(&node, ip(2)).await.unwrap();
        assert_eq!(session(&node, &mut ws, 0x21).await.as_deref(), Ok("hi"));
        let body = seen.lock().unwrap()[0].clone();
        let address = SecretKey::from_bytes(&[0x21; 32])
            .unwrap()
            .public_key()
            .address();
        assert_eq!(body["address"], address.to_string());
        assert_eq!(
            (body["jobId"].as_str(), body["chainId"].as_u64()),
            (Some("9"), Some(84532))
        );
        assert_eq!(body["model"], "echo");
        stop(node).await;

        // A hook that answers 403 refuses.
        let node = start_with(Limits::default(), None, Some(admit("/missing", 2000))).await;
        let mut ws = connect(&node, ip(2)).await.unwrap();
        assert_eq!(
            session(&node, &mut ws, 0x22).await,
            Err("NOT_AUTHORIZED".to_string())
        );
        stop(node).await;

        // A hook slower than the timeout refuses (fails closed), in about the timeout.
        let node = start_with(Limits::default(), None, Some(admit("/slow", 300))).await;
        let mut ws = connect(&node, ip(2)).await.unwrap();
        let started = std::time::Instant::now();
        assert_eq!(
            session(&node, &mut ws, 0x23).await,
            Err("NOT_AUTHORIZED".to_string())
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        stop(node).await;
    })
    .await
    .unwrap();
}

/// A client that sends a prompt with a long answer and never reads is dropped once its queue
/// passes `max_queued_bytes`, and counted.
#[tokio::test]
async fn a_client_that_does_not_read_is_dropped_at_the_byte_bound() {
    tokio::time::timeout(LIMIT, async {
        let limits = Limits {
            max_frame: 8 << 20,
            max_queued_bytes: 256 << 10,
            ..Limits::default()
        };
        let node = start(limits).await;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind(SocketAddr::new(ip(2), 0)).unwrap();
        let tcp = socket.connect(node.addr).await.unwrap();
        let url = format!("ws://{}/v1/ws", node.addr);
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config))
            .await
            .unwrap();
        // Open the session, then ask for an answer of eight 400 KB words (about 6 MB of
        // frames out) and stop reading.
        let clock = Clock::new();
        let mut client = client_for(&node, 0x33);
        let params = session_params();
        client.start_session(clock.now(), params).unwrap();
        ws.send(Message::text(client.poll_transmit().unwrap()))
            .await
            .unwrap();
        while client.poll_event() != Some(ClientEvent::SessionReady) {
            let Some(Ok(Message::Text(t))) = ws.next().await else {
                panic!("no ack")
            };
            client.handle_frame(clock.now(), t.as_str()).unwrap();
        }
        let word = "w".repeat(400_000);
        let prompt = [word.as_str(); 8].join(" ");
        client
            .send_prompt(clock.now(), &Prompt::new(prompt))
            .unwrap();
        ws.send(Message::text(client.poll_transmit().unwrap()))
            .await
            .unwrap();
        let mut dropped = false;
        for _ in 0..200 {
            let text = scrape(&node, ip(4)).await;
            if metric(
                &text,
                "ws_node_connections_refused_total{reason=\"slow_reader\"}",
            ) == Some(1.0)
            {
                dropped = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(dropped, "the non-reading client was not dropped");
        drop(ws);
        stop(node).await;
    })
    .await
    .unwrap();
}
