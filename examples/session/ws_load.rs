//! A load tool for `ws_node` (a measurement, not a test): how many encrypted sessions a second
//! it opens, how many answer chunks a second it streams, and, given the node's process id, the
//! node's CPU time per chunk.
//!
//! ```text
//! cargo run --release --example ws_node -- --listen 127.0.0.1:8080 &
//! cargo run --release --example ws_load -- --url ws://127.0.0.1:8080/v1/ws --node-pub 02… \
//!     --node-pid $(pgrep ws_node) --clients 8 --seconds 10
//! ```
//!
//! Phase 1 opens sessions as fast as `--clients` connections can (a new connection and a new
//! client key for each); phase 2 keeps one session per connection and sends prompts of
//! `--words` words, which the echo model answers one chunk per word.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use futures_util::{SinkExt, StreamExt};
use sealwire::session::{
    Client, ClientConfig, ClientEvent, Prompt, PublicKey, SecretKey, SessionParams,
};
use sealwire::time::Clock;
use session_examples::{options_or_exit, system_rng};
use tokio_tungstenite::tungstenite::Message;

const USAGE: &str = "\
ws_load — measure ws_node: sessions/s, chunks/s, node CPU per chunk (sealwire example)

USAGE:
    ws_load --node-pub HEX [OPTIONS]

OPTIONS:
    --url URL        the node's WebSocket (default ws://127.0.0.1:8080/v1/ws)
    --node-pub HEX   the node's public key (hex)
    --node-pid PID   the node's process id: report its CPU time per chunk (from /proc)
    --clients N      concurrent connections (default 8)
    --seconds N      length of each phase (default 5)
    --words N        words per prompt in the chunk phase (default 200)
    --word-bytes N   bytes per word, so per chunk of the echo model (default 64)
    -h, --help       print this help

Prints one line per phase: `sessions N in S s = R/s` and `chunks N in S s = R/s`, then
`node cpu per chunk = X us` when --node-pid is given.
";

struct Options {
    url: String,
    node_public_key: PublicKey,
    node_pid: Option<u32>,
    clients: usize,
    seconds: u64,
    words: usize,
    word_bytes: usize,
}

fn parse_args() -> Result<Option<Options>, String> {
    let mut url = "ws://127.0.0.1:8080/v1/ws".to_owned();
    let mut node_public_key = None;
    let mut node_pid = None;
    let mut clients = 8;
    let mut seconds = 5;
    let mut words = 200;
    let mut word_bytes = 64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, v: String| -> Result<u64, String> {
            v.parse().map_err(|_| format!("{name}: bad number {v:?}"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--url" => url = value("--url")?,
            "--node-pub" => {
                let v = value("--node-pub")?;
                node_public_key =
                    Some(PublicKey::from_hex(&v).map_err(|e| format!("--node-pub: {e}"))?);
            }
            "--node-pid" => node_pid = Some(number("--node-pid", value("--node-pid")?)? as u32),
            "--clients" => clients = number("--clients", value("--clients")?)? as usize,
            "--seconds" => seconds = number("--seconds", value("--seconds")?)?,
            "--words" => words = number("--words", value("--words")?)? as usize,
            "--word-bytes" => word_bytes = number("--word-bytes", value("--word-bytes")?)? as usize,
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    let node_public_key = node_public_key.ok_or("--node-pub is required")?;
    Ok(Some(Options {
        url,
        node_public_key,
        node_pid,
        clients: clients.max(1),
        seconds: seconds.max(1),
        words: words.max(1),
        word_bytes: word_bytes.max(1),
    }))
}

/// User plus system CPU time of `pid`, in seconds (fields 14 and 15 of /proc/PID/stat, in
/// clock ticks of 1/100 s on Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A connection with an open session.
struct Session {
    ws: Ws,
    client: Client<rand_core::UnwrapErr<getrandom::SysRng>>,
    clock: Clock,
}

async fn open(url: &str, node: PublicKey, id: u64) -> Result<Session, String> {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let clock = Clock::new();
    let key = SecretKey::generate(&mut system_rng());
    let mut client =
        Client::new(key, node, ClientConfig::default(), system_rng()).map_err(|e| e.to_string())?;
    let params = SessionParams {
        session_id: id.to_string(),
        job_id: "1".into(),
        chain_id: 84532,
        model: "echo".into(),
        price_per_token: 0,
        vector_database: None,
    };
    client
        .start_session(clock.now(), params)
        .map_err(|e| e.to_string())?;
    let mut s = Session { ws, client, clock };
    s.until(|e| matches!(e, ClientEvent::SessionReady)).await?;
    Ok(s)
}

impl Session {
    /// Pumps frames until an event matches `done`; counts chunks on the way.
    async fn until(&mut self, done: impl Fn(&ClientEvent) -> bool) -> Result<u64, String> {
        let mut chunks = 0;
        loop {
            while let Some(frame) = self.client.poll_transmit() {
                self.ws
                    .send(Message::text(frame))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            while let Some(event) = self.client.poll_event() {
                match &event {
                    ClientEvent::Chunk { .. } => chunks += 1,
                    e if done(e) => return Ok(chunks),
                    ClientEvent::NodeError { code, message, .. } => {
                        return Err(format!("node error {code}: {message}"))
                    }
                    _ => {}
                }
            }
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => self
                    .client
                    .handle_frame(self.clock.now(), t.as_str())
                    .map_err(|e| e.to_string())?,
                Some(Ok(_)) => {}
                other => return Err(format!("connection ended: {other:?}")),
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let opts = match options_or_exit("ws_load", USAGE, parse_args()) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let opts = Arc::new(opts);
    let phase = Duration::from_secs(opts.seconds);

    // Phase 1: sessions per second.
    let sessions = Arc::new(AtomicU64::new(0));
    let started = StdInstant::now();
    let mut tasks = Vec::new();
    for c in 0..opts.clients {
        let (opts, sessions) = (opts.clone(), sessions.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while started.elapsed() < phase {
                let id = (c as u64) << 32 | n;
                open(&opts.url, opts.node_public_key, id).await?;
                n += 1;
                sessions.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            eprintln!("ws_load: {e}");
            return ExitCode::FAILURE;
        }
    }
    let took = started.elapsed().as_secs_f64();
    let n = sessions.load(Ordering::Relaxed);
    println!("sessions {n} in {took:.1} s = {:.0}/s", n as f64 / took);

    // Phase 2: chunks per second, one session per connection.
    let word = "w".repeat(opts.word_bytes);
    let prompt = vec![word.as_str(); opts.words].join(" ");
    let chunks = Arc::new(AtomicU64::new(0));
    let mut open_sessions = Vec::new();
    for c in 0..opts.clients {
        match open(&opts.url, opts.node_public_key, 1 << 40 | c as u64).await {
            Ok(s) => open_sessions.push(s),
            Err(e) => {
                eprintln!("ws_load: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let cpu_before = opts.node_pid.and_then(cpu_seconds);
    let started = StdInstant::now();
    let mut tasks = Vec::new();
    for mut s in open_sessions {
        let (chunks, prompt) = (chunks.clone(), prompt.clone());
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < phase {
                s.client
                    .send_prompt(s.clock.now(), &Prompt::new(prompt.as_str()))
                    .map_err(|e| e.to_string())?;
                let n = s
                    .until(|e| matches!(e, ClientEvent::Finished { .. }))
                    .await?;
                chunks.fetch_add(n, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            eprintln!("ws_load: {e}");
            return ExitCode::FAILURE;
        }
    }
    let took = started.elapsed().as_secs_f64();
    let n = chunks.load(Ordering::Relaxed);
    println!("chunks {n} in {took:.1} s = {:.0}/s", n as f64 / took);
    if let (Some(before), Some(after)) = (cpu_before, opts.node_pid.and_then(cpu_seconds)) {
        if n > 0 {
            let per_chunk = (after - before) / n as f64 * 1e6;
            println!(
                "node cpu per chunk = {per_chunk:.2} us ({:.2} s for {n} chunks)",
                after - before
            );
        }
    }
    ExitCode::SUCCESS
}
