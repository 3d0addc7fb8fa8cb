//! `ws_node`'s OpenAI-compatible backend through the real WebSocket path: `node_driver::serve`
//! with an `UpstreamModel` pointed at a stand-in chat-completions server written here (axum),
//! and a `session::Client` over tokio-tungstenite. The stand-in plays a scripted stream per
//! test: deltas, an HTTP error, malformed or broken streams, a stall, an endless stream to
//! cancel, a held request to fill the slots.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::session::{Client, ClientConfig, ClientEvent, Prompt, SecretKey, SessionParams};
use sealwire::time::Clock;
use session_examples::upstream::{UpstreamConfig, UpstreamModel};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{stop, LIMIT};

type Running = common::Running<StandIn>;

/// What the stand-in answers.
#[derive(Clone, Copy)]
enum Script {
    /// Three deltas, `finish_reason: length`, usage, `[DONE]`.
    Deltas,
    /// HTTP 500.
    Error,
    /// One delta, then a line that is not JSON.
    Malformed,
    /// One delta, then the body ends without a finish reason.
    Broken,
    /// One delta, then nothing for 10 s.
    Stall,
    /// A delta every 20 ms, forever (until the client goes away).
    Endless,
}

/// The JSON bodies and `Authorization` headers the stand-in received.
type Seen = Arc<Mutex<Vec<(serde_json::Value, Option<String>)>>>;

#[derive(Clone)]
struct StandIn {
    script: Script,
    seen: Seen,
    /// Set when the stand-in's response body is dropped (the node hung up).
    aborted: Arc<AtomicBool>,
    running: Arc<AtomicUsize>,
}

struct OnDrop(Arc<AtomicBool>, Arc<AtomicUsize>);
impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
        self.1.fetch_sub(1, Ordering::SeqCst);
    }
}

fn sse(data: &str) -> Result<String, std::io::Error> {
    Ok(format!("data: {data}\n\n"))
}

fn delta(text: &str) -> String {
    serde_json::json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
        .to_string()
}

async fn completions(State(s): State<StandIn>, headers: HeaderMap, body: String) -> Response {
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    s.seen.lock().unwrap().push((json, auth));
    s.running.fetch_add(1, Ordering::SeqCst);
    let guard = OnDrop(s.aborted.clone(), s.running.clone());
    let events: Vec<Result<String, std::io::Error>> = match s.script {
        Script::Error => {
            drop(guard);
            return (StatusCode::INTERNAL_SERVER_ERROR, "model exploded").into_response();
        }
        Script::Deltas => vec![
            sse(r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#),
            sse(&delta("Hel")),
            sse(&delta("lo ")),
            sse(&delta("wörld")),
            sse(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#),
            sse(
                r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
            ),
            sse("[DONE]"),
        ],
        Script::Malformed => vec![sse(&delta("Hel")), sse("{not json")],
        Script::Broken | Script::Stall | Script::Endless => vec![sse(&delta("Hel"))],
    };
    let head = futures_util::stream::iter(events);
    let tail = match s.script {
        Script::Stall => futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            sse(&delta("late"))
        })
        .boxed(),
        Script::Endless => futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((sse(&delta("more ")), ()))
        })
        .boxed(),
        _ => futures_util::stream::empty().boxed(),
    };
    let body = head.chain(tail).map(move |item| {
        let _keep = &guard;
        item
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(body))
        .unwrap()
}

async fn start(script: Script, max_inflight: usize, max_queued: usize) -> Running {
    let stand_in = StandIn {
        script,
        seen: Arc::default(),
        aborted: Arc::default(),
        running: Arc::default(),
    };
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(stand_in.clone());
    tokio::spawn(async move { axum::serve(upstream, app).await });

    let model = UpstreamModel::new(UpstreamConfig {
        base_url: format!("http://{upstream_addr}/v1/"),
        model: None,
        api_key: Some(Arc::new("sk-test".to_owned().into())),
        timeout: Duration::from_millis(500),
        max_inflight,
        max_queued,
        context_window: 4096,
    })
    .unwrap();
    common::start(common::service(Arc::new(model)), stand_in).await
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Answer {
        chunks: Vec<String>,
        text: String,
        finish_reason: Option<String>,
        tokens_used: Option<u64>,
    },
    Cancelled {
        text: String,
        aborted: bool,
    },
    NodeError(String),
}

/// Opens an encrypted session for model `llama-test`, sends `prompt`, collects the answer;
/// with `cancel_after` chunks, cancels the answer there and returns once the stand-in saw
/// the upstream request dropped, the WebSocket still open (`Cancelled { aborted: false }`
/// if that takes over 3 s).
async fn ask(node: &Running, seed: u8, prompt: &str, cancel_after: Option<usize>) -> Outcome {
    let clock = Clock::new();
    let identity = SecretKey::from_bytes(&[seed; 32]).unwrap();
    let mut client = Client::new(
        identity,
        node.public_key,
        ClientConfig::default(),
        ChaCha20Rng::from_seed([seed; 32]),
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
        model: "llama-test".into(),
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
                ClientEvent::Chunk { text, .. } => {
                    chunks.push(text);
                    if cancel_after == Some(chunks.len()) {
                        client.cancel().unwrap();
                    }
                }
                ClientEvent::Finished {
                    text,
                    authenticated: false,
                    ..
                } if cancel_after.is_some() => {
                    while let Some(frame) = client.poll_transmit() {
                        sink.send(Message::text(frame)).await.unwrap(); // the stream_cancel
                    }
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
                    while !node.extra.aborted.load(Ordering::SeqCst) {
                        if tokio::time::Instant::now() > deadline {
                            return Outcome::Cancelled {
                                text,
                                aborted: false,
                            };
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    drop(sink);
                    return Outcome::Cancelled {
                        text,
                        aborted: true,
                    };
                }
                ClientEvent::Finished {
                    text,
                    finish_reason,
                    tokens_used,
                    authenticated: true,
                } => {
                    return Outcome::Answer {
                        chunks,
                        text,
                        finish_reason,
                        tokens_used,
                    }
                }
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

#[tokio::test]
async fn upstream_deltas_become_chunks_and_finish_reason_and_usage_end_the_answer() {
    tokio::time::timeout(LIMIT, async {
        let node = start(Script::Deltas, 4, 4).await;
        let out = ask(&node, 0x11, "say hello", None).await;
        assert_eq!(
            out,
            Outcome::Answer {
                chunks: vec!["Hel".into(), "lo ".into(), "wörld".into()],
                text: "Hello wörld".into(),
                finish_reason: Some("length".into()),
                tokens_used: Some(3),
            }
        );
        let seen = node.extra.seen.lock().unwrap().clone();
        let (body, auth) = &seen[0];
        assert_eq!(body["model"], "llama-test");
        assert_eq!(body["stream"], true);
        assert_eq!(
            body["messages"],
            serde_json::json!([{"role": "user", "content": "say hello"}])
        );
        assert_eq!(auth.as_deref(), Some("Bearer sk-test"));
        stop(node).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn upstream_failures_become_inference_failed() {
    tokio::time::timeout(LIMIT, async {
        for script in [
            Script::Error,
            Script::Malformed,
            Script::Broken,
            Script::Stall,
        ] {
            let node = start(script, 4, 4).await;
            let out = ask(&node, 0x12, "hi", None).await;
            assert_eq!(out, Outcome::NodeError("INFERENCE_FAILED".into()));
            stop(node).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn stream_cancel_aborts_the_upstream_request() {
    tokio::time::timeout(LIMIT, async {
        let node = start(Script::Endless, 4, 4).await;
        let out = ask(&node, 0x13, "go on forever", Some(3)).await;
        assert!(
            matches!(out, Outcome::Cancelled { ref text, aborted: true } if text.starts_with("Helmore ")),
            "upstream request still running after stream_cancel: {out:?}"
        );
        stop(node).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn max_inflight_queues_then_refuses() {
    tokio::time::timeout(LIMIT, async {
        // One slot, one queue place: the third concurrent prompt is refused.
        let node = start(Script::Endless, 1, 1).await;
        let node = Arc::new(node);
        let hold = |seed| {
            let node = node.clone();
            tokio::spawn(async move { ask(&node, seed, "hold", Some(50)).await })
        };
        let first = hold(0x21);
        while node.extra.running.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let second = hold(0x22);
        // Let the second prompt reach the queue (it cannot reach the stand-in).
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(node.extra.running.load(Ordering::SeqCst), 1);
        let third = ask(&node, 0x23, "refused", None).await;
        assert_eq!(third, Outcome::NodeError("CAPACITY".into()));
        // The queued prompt runs once the first is cancelled.
        assert!(matches!(first.await.unwrap(), Outcome::Cancelled { .. }));
        assert!(matches!(second.await.unwrap(), Outcome::Cancelled { .. }));
        assert_eq!(node.extra.seen.lock().unwrap().len(), 2);
        let node = Arc::into_inner(node).unwrap();
        stop(node).await;
    })
    .await
    .unwrap();
}
