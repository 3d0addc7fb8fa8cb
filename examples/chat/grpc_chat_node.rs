//! A keyless gRPC relay for `sealwire::chat`: the `sealwire::chat::relay::Relay` machine pumped
//! over tonic (the pump is `chat_examples::relay_service`), and its command line.
//!
//! ```text
//! cargo run --example grpc_chat_node -- [--listen 127.0.0.1:50051] [--nats URL [--node-id NAME]]
//! ```
//!
//! With `--nats` the node is one node of a mesh joined through a NATS server: the two apps of
//! a chat may register at different nodes (see `chat_examples::mesh` and docs/mesh.md).
//!
//! Apps open one `RouteChat` stream each (see `proto/chat_relay.proto`), prove their Ed25519
//! identity by signing a fresh challenge, start chats by id, and send chat frames. Every rule
//! (registration, membership, mailboxes and budgets, the per-chat handshake throttle, idle
//! expiry) is the relay machine's; this program only moves messages. Every refusal is a gRPC
//! status code, in-band for one message (`Downlink.rejected`) or ending the stream when the
//! stream itself is unusable.
//!
//! State is in memory: after a restart apps re-register and re-start their chats (the example
//! app reconnects by itself). The node answers every frame with `stored` or `rejected`; the
//! app keeps a frame until it was stored and sends it again otherwise. Frames a node stored
//! and had not delivered when it was killed are lost with it, unless (in a mesh) the sender's
//! node still keeps a copy to publish again (docs/mesh.md).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use chat_examples::cli::args_or_exit;
use chat_examples::limits::RateLimits;
use chat_examples::membership::Members;
use chat_examples::proto::chat_relay_server::ChatRelayServer;
use chat_examples::relay_service::mesh_relay_node;
use rand_core::UnwrapErr;
use sealwire::chat::data_frame_len;
use sealwire::chat::relay::{Relay, RelayConfig};

#[derive(Clone, Debug)]
struct Config {
    listen: SocketAddr,
    /// The relay machine's bounds.
    relay: RelayConfig,
    /// Downlink messages buffered per stream before the node waits for the app to read.
    stream_queue: usize,
    /// The NATS server of the mesh; `None` runs the node alone.
    nats: Option<String>,
    /// This node's name in the mesh (its NATS client name and its logs).
    node_id: String,
    /// PEM certificate chain and private key: serve gRPC over TLS.
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) to trust for a `tls://` NATS server.
    nats_ca: Option<PathBuf>,
    /// Where to serve `GET /metrics`.
    metrics: Option<SocketAddr>,
    /// Data frames per second, per app and per chat.
    rate_data: NonZeroU32,
    /// Handshake frames per minute, per app and per chat.
    rate_handshakes: NonZeroU32,
}

const HELP: &str = "\
grpc_chat_node — a keyless gRPC relay for sealwire::chat (sealwire example)

USAGE:
    grpc_chat_node [OPTIONS]

Apps open one RouteChat stream each (proto/chat_relay.proto), register an Ed25519 identity
by signing a challenge (within 10 s), start chats by id and send frames; the node routes
each frame to the chat's other participant and queues it while that one is offline. It
never holds a chat key. State is in memory only.

OPTIONS:
    --listen ADDR             address to listen on (default 127.0.0.1:50051; port 0 picks a
                              free port, the startup line shows it)
    --nats URL                join the mesh of nodes on this NATS server (e.g.
                              nats://127.0.0.1:4222): a frame whose recipient is not
                              connected here is published on the chat's subject
                              sealwire.chat.v1.<chat id hex>, and frames published by other
                              nodes reach the apps here (docs/mesh.md). Without it the node
                              runs alone
    --node-id NAME            this node's name in the mesh (NATS client name, logs;
                              default node-<pid>)
    --nats-ca FILE            PEM CA certificate(s) for a NATS server that requires TLS
                              (tls://HOST:PORT)
    --tls-cert FILE           PEM certificate chain: serve gRPC over TLS (apps connect to
                              https://HOST:PORT with --ca); needs --tls-key
    --tls-key FILE            PEM private key of --tls-cert
    --metrics ADDR            serve Prometheus text at http://ADDR/metrics (registrations,
                              frames and bytes relayed, mailbox depth, expiries, refusals by
                              reason, handshake and rekey frames, rate-limited frames); a
                              second stdout line says `metrics on ADDR`
    --rate-data N             data frames per second per app and per chat, token bucket
                              with a burst of N (default 1000); beyond it a frame is
                              refused with RESOURCE_EXHAUSTED and the app sends it again
    --rate-handshakes N       handshake frames (and, in a mesh, chat starts) per minute
                              per app and per chat, the same way (default 60)
    --max-message BYTES       largest plaintext of a data frame; larger frames are refused
                              (default 65536)
    --max-handshakes N        handshake frames per chat per 30 s (default 6)
    --mailbox FRAMES          frames queued per app identity, online or offline (default 1024)
    --pending FRAMES          frames held for a chat's second participant before it joins
                              (default 64)
    --mesh-copies FRAMES      with --nats: copies kept per chat of frames forwarded to a
                              peer on another node until it has them, published again when
                              it (re)joins, when one sent later is acknowledged first, and
                              every 5 s; with that many waiting its sender is refused for
                              now (default 1024, a mailbox's worth; they count in
                              --max-queued-bytes)
    --max-queued-bytes N      bytes of frames queued over all mailboxes and pending lists
                              (default 268435456, 256 MiB)
    --max-apps N              identities known at once; an idle one (offline, empty mailbox)
                              is forgotten to make room (default 10000)
    --max-streams N           open RouteChat streams, registering ones included
                              (default 10000)
    --max-chats N             chats held; new ones are refused beyond it (default 100000)
    --chat-idle SECONDS       a chat with no frame and no start for this long expires with
                              its queued frames, on every node that holds it (default
                              604800, 7 days)
    --max-chats-per-stream N  chats one stream may start (default 64)
    --stream-queue N          downlink messages buffered per stream before the node waits
                              for the app to read (default 64)
    -h, --help                print this help

Every N, BYTES and FRAMES value must be a positive integer.

ENVIRONMENT:
    RUST_LOG                  log filter (default info); logs go to stderr

On startup one line goes to stdout:
    listening on ADDR

EXIT STATUS:
    0 after SIGTERM/Ctrl-C; 1 if it cannot listen, cannot reach --nats or the server fails;
    2 on bad usage.
";

const USAGE: &str = "usage: grpc_chat_node [OPTIONS]   (grpc_chat_node --help for more)";

/// Every flag that takes a value (all of them but `--help`).
const FLAGS: &[&str] = &[
    "--listen",
    "--nats",
    "--node-id",
    "--nats-ca",
    "--tls-cert",
    "--tls-key",
    "--metrics",
    "--rate-data",
    "--rate-handshakes",
    "--max-message",
    "--max-handshakes",
    "--mailbox",
    "--pending",
    "--mesh-copies",
    "--max-queued-bytes",
    "--max-apps",
    "--max-streams",
    "--max-chats",
    "--chat-idle",
    "--max-chats-per-stream",
    "--stream-queue",
];

/// The configuration, or `None` when `--help` was asked for.
fn parse_args() -> Result<Option<Config>, String> {
    let mut cfg = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
        relay: RelayConfig::default(),
        stream_queue: 64,
        nats: None,
        node_id: format!("node-{}", std::process::id()),
        tls_cert: None,
        tls_key: None,
        nats_ca: None,
        metrics: None,
        rate_data: NonZeroU32::new(1000).expect("non-zero"),
        rate_handshakes: NonZeroU32::new(60).expect("non-zero"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        // Name an unknown flag as such, not as one missing its value.
        if !FLAGS.contains(&flag.as_str()) {
            return Err(format!("unknown flag {flag}\n{USAGE}"));
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = || {
            value
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{flag}: not a positive number: {value}"))
        };
        let r = &mut cfg.relay;
        match flag.as_str() {
            "--listen" => {
                cfg.listen = value
                    .parse()
                    .map_err(|e| format!("--listen {value}: {e}"))?
            }
            "--nats" => cfg.nats = Some(value),
            "--node-id" => cfg.node_id = value,
            "--nats-ca" => cfg.nats_ca = Some(PathBuf::from(value)),
            "--tls-cert" => cfg.tls_cert = Some(PathBuf::from(value)),
            "--tls-key" => cfg.tls_key = Some(PathBuf::from(value)),
            "--metrics" => {
                cfg.metrics = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--metrics {value}: {e}"))?,
                )
            }
            "--rate-data" => {
                cfg.rate_data = NonZeroU32::new(u32::try_from(number()?).unwrap_or(u32::MAX))
                    .ok_or_else(|| format!("{flag}: must be positive"))?
            }
            "--rate-handshakes" => {
                cfg.rate_handshakes = NonZeroU32::new(u32::try_from(number()?).unwrap_or(u32::MAX))
                    .ok_or_else(|| format!("{flag}: must be positive"))?
            }
            "--max-message" => r.max_message_len = number()?,
            "--max-handshakes" => {
                r.max_handshakes =
                    u32::try_from(number()?).map_err(|_| format!("{flag}: too large"))?
            }
            "--mailbox" => r.mailbox_frames = number()?,
            "--pending" => r.pending_frames = number()?,
            "--mesh-copies" => r.mesh_replay_frames = number()?,
            "--max-queued-bytes" => r.max_queued_bytes = number()?,
            "--max-apps" => r.max_apps = number()?,
            "--max-streams" => r.max_streams = number()?,
            "--max-chats" => r.max_chats = number()?,
            "--chat-idle" => {
                r.chat_idle_timeout = sealwire::time::Duration::from_secs(number()? as u64)
            }
            "--max-chats-per-stream" => r.max_chats_per_stream = number()?,
            "--stream-queue" => cfg.stream_queue = number()?,
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if cfg.tls_cert.is_some() != cfg.tls_key.is_some() {
        return Err(format!("--tls-cert and --tls-key go together\n{USAGE}"));
    }
    Ok(Some(cfg))
}

/// The server's TLS identity from `--tls-cert`/`--tls-key`, if given.
fn tls_identity(cfg: &Config) -> Result<Option<tonic::transport::Identity>, String> {
    let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) else {
        return Ok(None);
    };
    let read =
        |p: &PathBuf| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    Ok(Some(tonic::transport::Identity::from_pem(
        read(cert)?,
        read(key)?,
    )))
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut cfg = args_or_exit(parse_args(), HELP);
    cfg.relay.mesh = cfg.nats.is_some();
    let nats = match &cfg.nats {
        None => None,
        Some(url) => {
            let mut options = async_nats::ConnectOptions::new().name(&cfg.node_id);
            if let Some(ca) = &cfg.nats_ca {
                options = options.add_root_certificates(ca.clone()).require_tls(true);
            }
            match options.connect(url.as_str()).await {
                Ok(client) => {
                    tracing::info!(node = %cfg.node_id, nats = %url, "joined the mesh");
                    Some(client)
                }
                Err(e) => {
                    eprintln!("cannot connect to NATS at {url}: {e}");
                    std::process::exit(1);
                }
            }
        }
    };
    let relay = match Relay::new(cfg.relay.clone(), UnwrapErr(getrandom::SysRng)) {
        Ok(relay) => relay,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", cfg.listen);
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().unwrap_or(cfg.listen);
    // Leave room for the protobuf envelope around the largest frame; larger messages end the
    // stream with OUT_OF_RANGE in the transport before they are buffered.
    let max_message = data_frame_len(cfg.relay.max_message_len) + 1024;
    let members = nats.clone().map(Members::new);
    let node = mesh_relay_node(relay, cfg.stream_queue, nats);
    if let Some(m) = members {
        node.set_members(m);
    }
    node.set_rate_limits(RateLimits::new(cfg.rate_data, cfg.rate_handshakes));
    let service = ChatRelayServer::new(node.clone()).max_decoding_message_size(max_message);
    let mut builder = tonic::transport::Server::builder();
    match tls_identity(&cfg) {
        Ok(None) => {}
        Ok(Some(identity)) => {
            let tls = tonic::transport::ServerTlsConfig::new().identity(identity);
            builder = match builder.tls_config(tls) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("bad --tls-cert/--tls-key: {e}");
                    std::process::exit(1);
                }
            };
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
    // The e2e script waits for this line.
    println!("listening on {local}");
    if let Some(addr) = cfg.metrics {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on --metrics {addr}: {e}");
                std::process::exit(1);
            }
        };
        println!("metrics on {}", listener.local_addr().unwrap_or(addr));
        let node = node.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let node = node.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        node.metrics_text(),
                    )
                }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "metrics server ended");
            }
        });
    }
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    // Ctrl-C or SIGTERM (what service managers and `kill` send) shut down cleanly: the apps
    // are told first (their streams end with UNAVAILABLE) so they fail over at once.
    let shutdown = async move {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        let told = node.shut_down();
        tracing::info!(streams = told, "shutting down: told the apps");
        // Let the final statuses reach the apps before the connections close.
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    };
    if let Err(e) = builder
        // One app needs one stream; a few more allow reconnects racing the old stream's end.
        .max_concurrent_streams(Some(8))
        // Notice dead peers (a killed app behind a NAT, a cut cable) within about a minute.
        .http2_keepalive_interval(Some(StdDuration::from_secs(30)))
        .http2_keepalive_timeout(Some(StdDuration::from_secs(20)))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
    {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}
