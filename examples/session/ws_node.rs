//! A Fabstir-compatible WebSocket LLM node: the command line around the session node driver
//! (`session_examples::node_driver`, a thin tokio pump around [`sealwire::session::Node`]).
//!
//! ```text
//! HOST_PRIVATE_KEY=0x… cargo run --example ws_node -- --listen 127.0.0.1:8080 [--allow 0xADDR]… [--plaintext]
//! cargo run --example ws_node -- --key-file host.key --replay-state replay.bin
//! cargo run --example ws_node -- --upstream http://127.0.0.1:8000/v1 [--upstream-model NAME] [--max-inflight N]
//! ```
//!
//! One port serves the WebSocket at `/v1/ws` (the path the SDK appends to a host's endpoint) and
//! `POST /v1/auth/challenge` (the host-key challenge). This file holds the command line, the
//! wiring and the logs; the pump is in `src/node_driver.rs` and the built-in echo model, which
//! streams the prompt back word by word so the node runs without an LLM, in `src/model.rs`.
//! Prompts and keys are never logged; the key is read into wiped storage.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use sealwire::crypto::hex;
use sealwire::session::{Address, Node, NodeConfig, SecretKey};
use sealwire::time::Clock;
use session_examples::admission::Admission;
use session_examples::limits::Limits;
use session_examples::model::{EchoModel, Model};
use session_examples::node_driver::{serve, tls_acceptor, Service};
use session_examples::replay_file::ReplayFile;
use session_examples::upstream::{UpstreamConfig, UpstreamModel};
use session_examples::{options_or_exit, read_key_file, secret_env, system_rng};
use tracing::{info, warn};

const USAGE: &str = "\
ws_node — a Fabstir-compatible WebSocket LLM node (sealwire example) with a built-in echo model

USAGE:
    ws_node [OPTIONS]

OPTIONS:
    --listen ADDR        address to listen on (default 127.0.0.1:8080)
    --allow ADDRESS      accept sessions only from this client address (0x…, repeatable);
                         without it every address is accepted (a warning is logged)
    --plaintext          also accept legacy unencrypted session_init/prompt sessions (with
                         --allow they are still refused: their address is only claimed)
    --echo-delay-ms N    pause N ms before each echoed word (default 0)
    --max-streams N      answers generated at the same time, node-wide (default 1024)
    --upstream URL       answer with an OpenAI-compatible server instead of the echo model:
                         each prompt is a streaming POST URL/chat/completions (URL is the
                         base, e.g. http://127.0.0.1:8000/v1); the key is UPSTREAM_API_KEY
    --upstream-model NAME  model name sent upstream (default: the session's model)
    --upstream-timeout-ms N  longest wait for the upstream's headers and for each piece of
                         its stream after them (default 60000); then INFERENCE_FAILED
    --max-inflight N     upstream requests running at once (default 16)
    --max-queued N       prompts waiting for an upstream slot before CAPACITY (default 64)
    --max-connections N  open connections, node-wide (default 10000, lowered to fit the
                         file-descriptor limit); beyond it a connection gets HTTP 503 unread
    --max-connections-per-ip N  open connections from one address (default 64)
    --max-sessions-per-ip N  live sessions opened from one address (default 64); beyond it
                         an init is refused (NOT_AUTHORIZED, too many sessions)
    --max-frame BYTES    largest WebSocket frame or message (default 1048576); a larger one
                         is refused from its header and the connection closed (code 1009)
    --inits-per-minute N  session inits a minute from one address (token bucket, default
                         600, 0 = no limit); over it the connection is closed (code 1008)
    --challenges-per-minute N  POST /v1/auth/challenge a minute from one address (default
                         600, 0 = no limit); over it HTTP 429
    --max-queue-bytes N  outgoing bytes queued for a connection that does not read them
                         (default 4194304); beyond it (or 1024 frames) it is dropped
    --header-timeout-ms N  time a connection has for its TLS handshake and request headers
                         (default 10000); then it is closed
    --idle-timeout-ms N  time a WebSocket may stay open without a live session (default
                         30000); then it is closed (code 1008)
    --admission-url URL  before accepting a session, POST {address, jobId, chainId, model}
                         (JSON) to URL and accept only on a 2xx answer within the timeout
                         (fails closed; plaintext sessions are refused); after --allow
    --admission-timeout-ms N  longest wait for the admission answer (default 2000)
    --tls-cert FILE      serve wss:// and https:// with this PEM certificate chain (rustls);
                         needs --tls-key
    --tls-key FILE       the PEM private key of --tls-cert
    --end-gap-ms N       pause between the last chunk of an answer and its end (default 10):
                         the end leaves in its own write, so a client that handles a whole
                         socket read at once (Node.js SDK 1.36.0) decrypts every chunk
                         first; costs N ms at the end of each answer (0 disables it)
    --context-window N   context window reported at the end of an upstream answer (default 8192)
    --key-file FILE      read the node's key from FILE (64 hex digits, optional 0x)
    --replay-state FILE  keep the replay cache in FILE across restarts: loaded at start,
                         rewritten atomically before an accepted init is acknowledged
                         (without it a restarted node accepts inits recorded before again)
    -h, --help           print this help

ENVIRONMENT:
    UPSTREAM_API_KEY     bearer key for --upstream (optional)
    HOST_PRIVATE_KEY_FILE  a file holding the node's key (when --key-file is not given)
    HOST_PRIVATE_KEY     the node's secp256k1 key (64 hex digits, optional 0x), when neither
                         --key-file nor HOST_PRIVATE_KEY_FILE is given; when none is, a fresh
                         development key is generated and its public key printed
    RUST_LOG             log filter (default info); logs go to stderr

On startup one line goes to stdout:
    ws_node listen=ADDR public_key=HEX66 address=0x…
";

// ---------------------------------------------------------------------------------------------
// Command line.

struct Options {
    listen: SocketAddr,
    allow: Vec<Address>,
    plaintext: bool,
    echo_delay: Duration,
    max_streams: usize,
    key_file: Option<PathBuf>,
    replay_state: Option<PathBuf>,
    upstream: Option<String>,
    upstream_model: Option<String>,
    upstream_timeout: Duration,
    max_inflight: usize,
    max_queued: usize,
    context_window: u64,
    end_gap: Duration,
    limits: Limits,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    admission_url: Option<String>,
    admission_timeout: Duration,
}

fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("{name}: bad number {v:?}"))
}

fn parse_args() -> Result<Option<Options>, String> {
    let mut opts = Options {
        listen: "127.0.0.1:8080"
            .parse()
            .map_err(|_| "bad default address")?,
        allow: Vec::new(),
        plaintext: false,
        echo_delay: Duration::ZERO,
        max_streams: 1024,
        key_file: None,
        replay_state: None,
        upstream: None,
        upstream_model: None,
        upstream_timeout: Duration::from_secs(60),
        max_inflight: 16,
        max_queued: 64,
        context_window: 8192,
        end_gap: Duration::from_millis(10),
        limits: Limits::default(),
        tls_cert: None,
        tls_key: None,
        admission_url: None,
        admission_timeout: Duration::from_secs(2),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => {
                let v = value("--listen")?;
                opts.listen = v
                    .parse()
                    .map_err(|_| format!("--listen: bad address {v:?}"))?;
            }
            "--allow" => {
                let v = value("--allow")?;
                let a = v
                    .parse::<Address>()
                    .map_err(|_| format!("--allow: bad address {v:?} (want 0x + 40 hex)"))?;
                opts.allow.push(a);
            }
            "--plaintext" => opts.plaintext = true,
            "--echo-delay-ms" => {
                let v = value("--echo-delay-ms")?;
                let ms = v
                    .parse()
                    .map_err(|_| format!("--echo-delay-ms: bad number {v:?}"))?;
                opts.echo_delay = Duration::from_millis(ms);
            }
            "--max-streams" => {
                let v = value("--max-streams")?;
                opts.max_streams = v
                    .parse()
                    .map_err(|_| format!("--max-streams: bad number {v:?}"))?;
            }
            "--key-file" => opts.key_file = Some(value("--key-file")?.into()),
            "--replay-state" => opts.replay_state = Some(value("--replay-state")?.into()),
            "--upstream" => {
                let v = value("--upstream")?;
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    return Err(format!(
                        "--upstream: want an http:// or https:// URL, got {v:?}"
                    ));
                }
                opts.upstream = Some(v);
            }
            "--upstream-model" => opts.upstream_model = Some(value("--upstream-model")?),
            "--upstream-timeout-ms" => {
                let v = value("--upstream-timeout-ms")?;
                opts.upstream_timeout = Duration::from_millis(number("--upstream-timeout-ms", &v)?);
            }
            "--max-inflight" => {
                let v = value("--max-inflight")?;
                opts.max_inflight = number("--max-inflight", &v)?;
            }
            "--max-queued" => {
                let v = value("--max-queued")?;
                opts.max_queued = number("--max-queued", &v)?;
            }
            "--max-connections" => {
                let v = value("--max-connections")?;
                opts.limits.max_connections = number("--max-connections", &v)?;
            }
            "--max-connections-per-ip" => {
                let v = value("--max-connections-per-ip")?;
                opts.limits.max_connections_per_ip = number("--max-connections-per-ip", &v)?;
            }
            "--max-sessions-per-ip" => {
                let v = value("--max-sessions-per-ip")?;
                opts.limits.max_sessions_per_ip = number("--max-sessions-per-ip", &v)?;
            }
            "--max-frame" => {
                let v = value("--max-frame")?;
                opts.limits.max_frame = number("--max-frame", &v)?;
            }
            "--inits-per-minute" => {
                let v = value("--inits-per-minute")?;
                opts.limits.inits_per_minute = number("--inits-per-minute", &v)?;
            }
            "--challenges-per-minute" => {
                let v = value("--challenges-per-minute")?;
                opts.limits.challenges_per_minute = number("--challenges-per-minute", &v)?;
            }
            "--max-queue-bytes" => {
                let v = value("--max-queue-bytes")?;
                opts.limits.max_queued_bytes = number("--max-queue-bytes", &v)?;
            }
            "--header-timeout-ms" => {
                let v = value("--header-timeout-ms")?;
                opts.limits.header_timeout =
                    Duration::from_millis(number("--header-timeout-ms", &v)?);
            }
            "--idle-timeout-ms" => {
                let v = value("--idle-timeout-ms")?;
                opts.limits.idle_timeout = Duration::from_millis(number("--idle-timeout-ms", &v)?);
            }
            "--admission-url" => opts.admission_url = Some(value("--admission-url")?),
            "--admission-timeout-ms" => {
                let v = value("--admission-timeout-ms")?;
                opts.admission_timeout =
                    Duration::from_millis(number("--admission-timeout-ms", &v)?);
            }
            "--tls-cert" => opts.tls_cert = Some(PathBuf::from(value("--tls-cert")?)),
            "--tls-key" => opts.tls_key = Some(PathBuf::from(value("--tls-key")?)),
            "--end-gap-ms" => {
                let v = value("--end-gap-ms")?;
                opts.end_gap = Duration::from_millis(number("--end-gap-ms", &v)?);
            }
            "--context-window" => {
                let v = value("--context-window")?;
                opts.context_window = number("--context-window", &v)?;
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(Some(opts))
}

/// The host key from `--key-file`, else `HOST_PRIVATE_KEY_FILE`, else `HOST_PRIVATE_KEY`, else
/// a fresh development key (`true` = generated). The text goes into wiped storage and is
/// decoded in constant time; errors name where it came from, never what it was.
fn host_key(key_file: Option<&Path>) -> Result<(SecretKey, bool), String> {
    let env_file = std::env::var_os("HOST_PRIVATE_KEY_FILE").filter(|p| !p.is_empty());
    let (text, source) = if let Some(path) = key_file {
        (read_key_file(path)?, "--key-file")
    } else if let Some(path) = env_file {
        (read_key_file(Path::new(&path))?, "HOST_PRIVATE_KEY_FILE")
    } else if let Some(text) = secret_env("HOST_PRIVATE_KEY") {
        (text, "HOST_PRIVATE_KEY")
    } else {
        return Ok((SecretKey::generate(&mut system_rng()), true));
    };
    SecretKey::from_hex(&text)
        .map(|k| (k, false))
        .map_err(|_| format!("{source}: not a valid secp256k1 key (64 hex digits)"))
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let opts = match options_or_exit("ws_node", USAGE, parse_args()) {
        Ok(opts) => opts,
        Err(exit) => return exit,
    };
    let (key, generated) = match host_key(opts.key_file.as_deref()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("ws_node: {e}");
            return ExitCode::from(2);
        }
    };

    let config = NodeConfig {
        allow_plaintext: opts.plaintext,
        ..NodeConfig::default()
    };
    let mut node = match Node::new(key, config, system_rng()) {
        Ok(node) => node,
        Err(e) => {
            eprintln!("ws_node: {e}");
            return ExitCode::from(2);
        }
    };
    let clock = Clock::new();
    let replay_file = match opts.replay_state {
        Some(path) => match ReplayFile::open(path, &mut node, clock.now()) {
            Ok((file, restored)) => {
                info!(file = %file.path().display(), restored, "replay state loaded");
                Some(file)
            }
            Err(e) => {
                eprintln!("ws_node: --replay-state {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let public_key = hex::encode(&node.public_key().to_compressed());
    let address = node.address();

    if generated {
        warn!("no host key given (--key-file, HOST_PRIVATE_KEY_FILE, HOST_PRIVATE_KEY): using a fresh development key (lost on exit)");
    }
    let allow = if opts.allow.is_empty() {
        warn!("no --allow given: sessions from every client address are accepted");
        None
    } else {
        Some(opts.allow.iter().copied().collect::<HashSet<_>>())
    };
    if opts.plaintext {
        warn!("--plaintext: legacy unencrypted sessions are accepted");
    }
    if replay_file.is_none() && !generated {
        warn!("no --replay-state: inits recorded before a restart are accepted again after it");
    }

    let tls = match (&opts.tls_cert, &opts.tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => match tls_acceptor(cert, key) {
            Ok(acceptor) => Some(acceptor),
            Err(e) => {
                eprintln!("ws_node: TLS: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => {
            eprintln!("ws_node: --tls-cert and --tls-key go together");
            return ExitCode::from(2);
        }
    };
    let admission = match opts.admission_url {
        Some(url) => match Admission::new(url, opts.admission_timeout) {
            Ok(hook) => Some(hook),
            Err(e) => {
                eprintln!("ws_node: --admission-url: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let mut limits = opts.limits;
    fit_descriptor_limit(&mut limits);

    let listener = match tokio::net::TcpListener::bind(opts.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ws_node: cannot listen on {}: {e}", opts.listen);
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(opts.listen);
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    println!("ws_node listen={local} public_key={public_key} address={address}");
    info!(url = format!("{scheme}://{local}/v1/ws"), "serving");
    info!(%local, public_key, %address, "listening (WebSocket at /v1/ws, challenge at /v1/auth/challenge)");

    let model: Arc<dyn Model> = match opts.upstream {
        Some(base_url) => {
            let config = UpstreamConfig {
                base_url,
                model: opts.upstream_model,
                api_key: secret_env("UPSTREAM_API_KEY").map(Arc::new),
                timeout: opts.upstream_timeout,
                max_inflight: opts.max_inflight,
                max_queued: opts.max_queued,
                context_window: opts.context_window,
            };
            match UpstreamModel::new(config) {
                Ok(m) => Arc::new(m),
                Err(e) => {
                    eprintln!("ws_node: --upstream: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => Arc::new(EchoModel {
            delay: opts.echo_delay,
        }),
    };
    let service = Service {
        allow,
        model,
        max_streams: opts.max_streams,
        clock,
        replay_file,
        end_gap: opts.end_gap,
        limits,
        tls,
        admission,
    };
    if serve(listener, node, service, shutdown_signal()).await {
        info!("stopped");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Raises the soft file-descriptor limit to the hard one and fits `--max-connections` below it
/// (see [`Limits::fit_descriptors`]).
fn fit_descriptor_limit(limits: &mut Limits) {
    let available = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "the file-descriptor limit could not be read or raised");
            return;
        }
    };
    match limits.fit_descriptors(available) {
        Some(lowered) => warn!(
            descriptors = available,
            max_connections = lowered,
            "--max-connections lowered to fit the file-descriptor limit"
        ),
        None => info!(descriptors = available, "file-descriptor limit"),
    }
}
