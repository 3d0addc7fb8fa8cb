//! An on-path attacker between a Fabstir client and node, for the end-to-end tests
//! (`tests/e2e_fabstir.sh`); not a program an operator runs.
//!
//! ```text
//! cargo run --example ws_mitm -- --upstream ws://127.0.0.1:8080/v1/ws --mode cut-answer
//! cargo run --example ws_mitm -- replay --upstream ws://127.0.0.1:8080/v1/ws --frames rec.jsonl
//! ```
//!
//! As a proxy it accepts WebSocket connections and relays each to the node, frame by frame;
//! `cut-answer` plays the attack the sealed end of answer stops (hold back the last
//! `encrypted_chunk` of each answer, drop `encrypted_response`, forward `stream_end`), and
//! `--record` keeps what the client sent. `replay` sends recorded frames to a node again, as
//! an attacker who captured them would.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use session_examples::options_or_exit;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

const USAGE: &str = "\
ws_mitm — an on-path attacker between a Fabstir client and node (sealwire test tool)

USAGE:
    ws_mitm --upstream URL [--listen ADDR] [--mode pass|cut-answer] [--record FILE]
    ws_mitm replay --upstream URL --frames FILE

PROXY:
    --upstream URL       the node's WebSocket (ws://HOST:PORT/v1/ws)
    --listen ADDR        where clients connect (default 127.0.0.1:0); once listening, one line
                         `ws_mitm listen=ADDR` goes to stdout
    --mode pass          relay every frame unchanged (default)
    --mode cut-answer    hold back the last encrypted_chunk of every answer, drop
                         encrypted_response, forward stream_end
    --record FILE        append every frame the client sends to FILE, one per line

REPLAY:
    --frames FILE        send each line of FILE to the node, in order, on one connection, and
                         print the node's answer to each: `ack`, `answer` (a stream_end after
                         chunks), `error:CODE`, or `none` (nothing within 5 s)
";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Pass,
    CutAnswer,
}

struct Options {
    replay: bool,
    upstream: String,
    listen: String,
    mode: Mode,
    record: Option<String>,
    frames: Option<String>,
}

fn parse_args() -> Result<Option<Options>, String> {
    let mut opts = Options {
        replay: false,
        upstream: String::new(),
        listen: "127.0.0.1:0".into(),
        mode: Mode::Pass,
        record: None,
        frames: None,
    };
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("replay") {
        opts.replay = true;
        args.next();
    }
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--upstream" => opts.upstream = value("--upstream")?,
            "--listen" => opts.listen = value("--listen")?,
            "--mode" => {
                opts.mode = match value("--mode")?.as_str() {
                    "pass" => Mode::Pass,
                    "cut-answer" => Mode::CutAnswer,
                    other => return Err(format!("--mode: unknown mode {other:?}")),
                }
            }
            "--record" => opts.record = Some(value("--record")?),
            "--frames" => opts.frames = Some(value("--frames")?),
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    if opts.upstream.is_empty() {
        return Err("--upstream is required".into());
    }
    if opts.replay && opts.frames.is_none() {
        return Err("replay needs --frames".into());
    }
    Ok(Some(opts))
}

/// A frame's `type`, if it is a JSON object with one.
fn frame_type(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("type")?.as_str().map(String::from)
}

/// What the attacker does to the node's frames of one connection.
struct Cutter {
    mode: Mode,
    /// The newest `encrypted_chunk`, held until the next one shows it was not the last.
    held: Option<String>,
}

impl Cutter {
    /// The frames to pass on for one frame from the node.
    fn on_node_frame(&mut self, text: String) -> Vec<String> {
        if self.mode == Mode::Pass {
            return vec![text];
        }
        match frame_type(&text).as_deref() {
            Some("encrypted_chunk") => self.held.replace(text).into_iter().collect(),
            Some("encrypted_response") => {
                eprintln!("ws_mitm: dropped encrypted_response");
                Vec::new()
            }
            Some("stream_end") => {
                if self.held.take().is_some() {
                    eprintln!("ws_mitm: held back the last encrypted_chunk");
                }
                vec![text]
            }
            _ => vec![text],
        }
    }
}

async fn relay(client: TcpStream, upstream: String, mode: Mode, record: Option<String>) {
    let Ok(client) = tokio_tungstenite::accept_async(client).await else {
        return;
    };
    let Ok((node, _)) = tokio_tungstenite::connect_async(upstream.as_str()).await else {
        eprintln!("ws_mitm: cannot connect to {upstream}");
        return;
    };
    let (mut to_client, mut from_client) = client.split();
    let (mut to_node, mut from_node) = node.split();
    let mut cutter = Cutter { mode, held: None };
    loop {
        tokio::select! {
            msg = from_client.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if let Some(path) = &record {
                        let line = format!("{}\n", t.as_str());
                        let written = std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(path)
                            .and_then(|mut f| f.write_all(line.as_bytes()));
                        if let Err(e) = written {
                            eprintln!("ws_mitm: cannot record to {path}: {e}");
                        }
                    }
                    if to_node.send(Message::Text(t)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            msg = from_node.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    for frame in cutter.on_node_frame(t.as_str().to_owned()) {
                        if to_client.send(Message::text(frame)).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = to_client.send(Message::Close(None)).await;
    let _ = to_node.send(Message::Close(None)).await;
}

async fn proxy(opts: Options) -> Result<(), String> {
    let listener = TcpListener::bind(&opts.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", opts.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("ws_mitm listen={local}");
    let _ = std::io::stdout().flush();
    loop {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        tokio::spawn(relay(
            tcp,
            opts.upstream.clone(),
            opts.mode,
            opts.record.clone(),
        ));
    }
}

async fn replay(opts: Options) -> Result<(), String> {
    let path = opts.frames.unwrap_or_default();
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let (ws, _) = tokio_tungstenite::connect_async(opts.upstream.as_str())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", opts.upstream))?;
    let (mut sink, mut incoming) = ws.split();
    for frame in text.lines().filter(|l| !l.trim().is_empty()) {
        sink.send(Message::text(frame))
            .await
            .map_err(|e| format!("send failed: {e}"))?;
        let mut chunks = 0;
        let outcome = loop {
            let next = tokio::time::timeout(Duration::from_secs(5), incoming.next()).await;
            let Ok(Some(Ok(Message::Text(t)))) = next else {
                if matches!(next, Ok(Some(Ok(_)))) {
                    continue;
                }
                break "none".to_owned();
            };
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
            match v["type"].as_str() {
                Some("session_init_ack") => break "ack".to_owned(),
                Some("error") => break format!("error:{}", v["code"].as_str().unwrap_or("")),
                Some("encrypted_chunk") => chunks += 1,
                Some("stream_end") if chunks > 0 => break "answer".to_owned(),
                Some("stream_end") => break "end-without-chunks".to_owned(),
                _ => {}
            }
        };
        println!("{outcome}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let opts = match options_or_exit("ws_mitm", USAGE, parse_args()) {
        Ok(opts) => opts,
        Err(exit) => return exit,
    };
    let result = if opts.replay {
        replay(opts).await
    } else {
        proxy(opts).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws_mitm: {e}");
            ExitCode::FAILURE
        }
    }
}
