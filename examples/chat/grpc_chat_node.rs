//! A keyless gRPC relay for `sealwire::chat`: the `sealwire::chat::relay::Relay` machine pumped
//! over tonic.
//!
//! ```text
//! cargo run --example grpc_chat_node -- [--listen 127.0.0.1:50051]
//! ```
//!
//! Apps open one `RouteChat` stream each (see `proto/chat_relay.proto`), prove their Ed25519
//! identity by signing a fresh challenge, start chats by id, and send chat frames. Every rule
//! (registration, membership, mailboxes and budgets, the per-chat handshake throttle, idle
//! expiry) is the relay machine's; this program only moves messages: each uplink message goes
//! to `Relay::handle_uplink`, the machine's answers go back on their stream, a stream takes
//! frames from its app's mailbox (`Relay::poll_frame`) only when it has room, and one task
//! sleeps until `Relay::poll_timeout`. Every refusal is a gRPC status code, in-band for one
//! message (`Downlink.rejected`) or ending the stream when the stream itself is unusable.
//!
//! State is in memory: after a restart apps re-register and re-start their chats (the example
//! app reconnects by itself); frames queued at the moment of the crash are lost, which the chat
//! protocol tolerates. Delivery has no acknowledgements.

use chat_examples::proto as chat_relay;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration as StdDuration;

use chat_relay::chat_relay_server::{ChatRelay, ChatRelayServer};
use chat_relay::{downlink, uplink};
use rand_core::UnwrapErr;
use sealwire::chat::data_frame_len;
use sealwire::chat::relay::{
    ConnId, Downlink, Relay, RelayConfig, RelayError, RelayEvent, Transmit, Uplink,
};
use sealwire::crypto::ed25519::IdentityPublic;
use sealwire::crypto::hex;
use sealwire::time::{Clock, Instant};
use tokio::sync::{mpsc, oneshot, Notify};
use tonic::codegen::tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Code, Request, Response, Status, Streaming};

type Rng = UnwrapErr<getrandom::SysRng>;

#[derive(Clone, Debug)]
struct Config {
    listen: SocketAddr,
    /// The relay machine's bounds.
    relay: RelayConfig,
    /// Downlink messages buffered per stream before the node waits for the app to read.
    stream_queue: usize,
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
    --max-message BYTES       largest plaintext of a data frame; larger frames are refused
                              (default 65536)
    --max-handshakes N        handshake frames per chat per 30 s (default 6)
    --mailbox FRAMES          frames queued per app identity, online or offline (default 1024)
    --pending FRAMES          frames held for a chat's second participant before it joins
                              (default 64)
    --max-queued-bytes N      bytes of frames queued over all mailboxes and pending lists
                              (default 268435456, 256 MiB)
    --max-apps N              identities known at once; an idle one (offline, empty mailbox)
                              is forgotten to make room (default 10000)
    --max-streams N           open RouteChat streams, registering ones included
                              (default 10000)
    --max-chats N             chats held; new ones are refused beyond it, and a chat idle
                              for 7 days expires with its queued frames (default 100000)
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
    0 after SIGTERM/Ctrl-C; 1 if it cannot listen or the server fails; 2 on bad usage.
";

const USAGE: &str = "usage: grpc_chat_node [OPTIONS]   (grpc_chat_node --help for more)";

/// Every flag that takes a value (all of them but `--help`).
const FLAGS: &[&str] = &[
    "--listen",
    "--max-message",
    "--max-handshakes",
    "--mailbox",
    "--pending",
    "--max-queued-bytes",
    "--max-apps",
    "--max-streams",
    "--max-chats",
    "--max-chats-per-stream",
    "--stream-queue",
];

/// The configuration, or `None` when `--help` was asked for.
fn parse_args() -> Result<Option<Config>, String> {
    let mut cfg = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
        relay: RelayConfig::default(),
        stream_queue: 64,
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
            "--max-message" => r.max_message_len = number()?,
            "--max-handshakes" => {
                r.max_handshakes =
                    u32::try_from(number()?).map_err(|_| format!("{flag}: too large"))?
            }
            "--mailbox" => r.mailbox_frames = number()?,
            "--pending" => r.pending_frames = number()?,
            "--max-queued-bytes" => r.max_queued_bytes = number()?,
            "--max-apps" => r.max_apps = number()?,
            "--max-streams" => r.max_streams = number()?,
            "--max-chats" => r.max_chats = number()?,
            "--max-chats-per-stream" => r.max_chats_per_stream = number()?,
            "--stream-queue" => cfg.stream_queue = number()?,
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    Ok(Some(cfg))
}

// ------------------------------------------------------------------ the pump

type Tx = mpsc::Sender<Result<chat_relay::Downlink, Status>>;

/// What the node keeps of one open stream, to reach its task.
struct StreamHandle {
    /// Wakes the task when frames wait in its app's mailbox.
    wake: Arc<Notify>,
    /// Ends the stream with a status (the machine ended it: replaced, registration timeout).
    end: Option<oneshot::Sender<Status>>,
    tx: Tx,
}

/// The relay machine and the streams it talks to, behind one lock.
struct Hub {
    relay: Relay<Rng>,
    streams: HashMap<ConnId, StreamHandle>,
    /// The deadline the timer task sleeps until.
    armed: Option<Instant>,
}

struct Shared {
    hub: Mutex<Hub>,
    clock: Clock,
    /// Wakes the timer task when an input brought the machine's deadline forward.
    timer: Notify,
    stream_queue: usize,
}

impl Shared {
    fn hub(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock would be a bug in this file; keep serving anyway.
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drains the machine after an input: returns the messages for stream `me` (sent by its
    /// own task, which may wait for room) and the status `me` must end with, if any; ends
    /// other streams, wakes the streams whose mailbox got frames, logs events, re-arms the timer.
    fn dispatch(
        &self,
        hub: &mut Hub,
        me: Option<ConnId>,
    ) -> (Vec<downlink::Msg>, Option<Status>) {
        let (mut own, mut end) = (Vec::new(), None);
        while let Some(Transmit { to, message }) = hub.relay.poll_transmit() {
            match (message, hub.streams.get_mut(&to)) {
                (Downlink::End(e), _) if Some(to) == me => end = Some(status(e)),
                (Downlink::End(e), Some(h)) => {
                    if let Some(end) = h.end.take() {
                        let _ = end.send(status(e));
                    }
                }
                (msg, _) if Some(to) == me => own.extend(to_proto(msg)),
                // The machine answers the stream that spoke; this is only for completeness.
                (msg, Some(h)) => {
                    if let Some(m) = to_proto(msg) {
                        let _ = h.tx.try_send(down(m));
                    }
                }
                (_, None) => {}
            }
        }
        while let Some(event) = hub.relay.poll_event() {
            match event {
                RelayEvent::FramesWaiting { conn } => {
                    if let Some(h) = hub.streams.get(&conn) {
                        h.wake.notify_one();
                    }
                }
                RelayEvent::AppRegistered {
                    identity,
                    app_id,
                    queued_frames,
                    ..
                } => {
                    tracing::info!(identity = %short(&identity), app_id, queued = queued_frames, "app registered")
                }
                RelayEvent::AppDisconnected { identity, .. } => {
                    tracing::info!(identity = %short(&identity), "app disconnected")
                }
                RelayEvent::ChatJoined { chat_id, identity } => {
                    tracing::info!(identity = %short(&identity), chat = %hex::encode(chat_id.as_bytes()), "joined chat")
                }
                RelayEvent::ChatExpired {
                    chat_id,
                    frames_dropped,
                } => {
                    tracing::info!(chat = %hex::encode(chat_id.as_bytes()), frames_dropped, "chat expired")
                }
                other => tracing::debug!(?other, "relay event"),
            }
        }
        let next = hub.relay.poll_timeout();
        if next.is_some_and(|t| hub.armed.is_none_or(|armed| t < armed)) {
            hub.armed = next;
            self.timer.notify_one();
        }
        (own, end)
    }
}

fn status(e: RelayError) -> Status {
    Status::new(Code::from(e.code()), e.to_string())
}

fn down(msg: downlink::Msg) -> Result<chat_relay::Downlink, Status> {
    Ok(chat_relay::Downlink { msg: Some(msg) })
}

fn from_proto(msg: uplink::Msg) -> Uplink {
    match msg {
        uplink::Msg::Register(r) => Uplink::Register {
            identity: r.identity,
            app_id: r.app_id,
        },
        uplink::Msg::Proof(p) => Uplink::Proof {
            signature: p.signature,
        },
        uplink::Msg::Start(s) => Uplink::Start {
            chat_id: s.chat_id,
            peer_identity: s.peer_identity,
        },
        uplink::Msg::Frame(f) => Uplink::Frame(f),
    }
}

/// The gRPC form of a machine message (`End` is not a message: it ends the stream).
fn to_proto(msg: Downlink) -> Option<downlink::Msg> {
    Some(match msg {
        Downlink::Challenge { nonce } => downlink::Msg::Challenge(chat_relay::Challenge {
            nonce: nonce.to_vec(),
        }),
        Downlink::Registered { queued_frames } => {
            downlink::Msg::Registered(chat_relay::Registered { queued_frames })
        }
        Downlink::Started {
            chat_id,
            peer_identity,
            peer_app_id,
        } => downlink::Msg::Started(chat_relay::ChatStarted {
            chat_id: chat_id.as_bytes().to_vec(),
            peer_identity: peer_identity
                .map(|p| p.as_bytes().to_vec())
                .unwrap_or_default(),
            peer_app_id,
        }),
        Downlink::Rejected {
            error,
            uplink_index,
        } => downlink::Msg::Rejected(chat_relay::Rejected {
            code: error.code(),
            message: error.to_string(),
            uplink_index,
        }),
        _ => return None,
    })
}

/// Reads the next uplink message, turning a closed stream into `Ok(None)`.
async fn next(inbound: &mut Streaming<chat_relay::Uplink>) -> Result<Option<uplink::Msg>, Status> {
    match inbound.message().await? {
        None => Ok(None),
        // An empty oneof carries nothing; refuse it rather than skip it.
        Some(chat_relay::Uplink { msg: None }) => {
            Err(Status::invalid_argument("empty uplink message"))
        }
        Some(chat_relay::Uplink { msg: Some(m) }) => Ok(Some(m)),
    }
}

async fn send(tx: &Tx, msg: downlink::Msg) -> Result<(), Status> {
    tx.send(down(msg))
        .await
        .map_err(|_| Status::cancelled("the app went away"))
}

/// One stream until it ends: uplink messages into the machine, its answers and the app's
/// frames back.
async fn serve(
    shared: &Shared,
    conn: ConnId,
    mut inbound: Streaming<chat_relay::Uplink>,
    tx: &Tx,
    wake: &Notify,
    mut end: oneshot::Receiver<Status>,
) -> Result<(), Status> {
    loop {
        tokio::select! {
            biased;
            ended = &mut end => return Err(ended.unwrap_or_else(|_| Status::aborted("ended"))),
            () = wake.notified() => deliver(shared, conn, tx).await?,
            msg = next(&mut inbound) => {
                let Some(msg) = msg? else { return Ok(()) };
                let (own, ended) = {
                    let mut hub = shared.hub();
                    let now = shared.clock.now();
                    if let Err(e) = hub.relay.handle_uplink(now, conn, from_proto(msg)) {
                        tracing::debug!(conn = conn.get(), code = e.code(), message = %e, "refused");
                    }
                    shared.dispatch(&mut hub, Some(conn))
                };
                for m in own {
                    send(tx, m).await?;
                }
                if let Some(status) = ended {
                    return Err(status);
                }
            }
        }
    }
}

/// Moves mailbox frames to the stream, one downlink slot at a time, so a frame leaves the
/// mailbox only when the stream has room for it.
async fn deliver(shared: &Shared, conn: ConnId, tx: &Tx) -> Result<(), Status> {
    loop {
        let permit = tx
            .reserve()
            .await
            .map_err(|_| Status::cancelled("the app went away"))?;
        let Some(frame) = shared.hub().relay.poll_frame(conn) else {
            return Ok(());
        };
        permit.send(down(downlink::Msg::Frame(frame)));
    }
}

/// Sleeps until the machine's deadline and acts on it (registration timeouts, idle chats).
async fn run_timers(shared: Arc<Shared>) {
    loop {
        let deadline = {
            let mut hub = shared.hub();
            hub.armed = hub.relay.poll_timeout();
            hub.armed
        };
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(shared.clock.to_std(t).into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {
                let mut hub = shared.hub();
                hub.relay.handle_timeout(shared.clock.now());
                shared.dispatch(&mut hub, None);
            }
            () = shared.timer.notified() => {}
        }
    }
}

#[derive(Clone)]
struct Node(Arc<Shared>);

type DownlinkStream = Pin<Box<dyn Stream<Item = Result<chat_relay::Downlink, Status>> + Send>>;

#[tonic::async_trait]
impl ChatRelay for Node {
    type RouteChatStream = DownlinkStream;

    async fn route_chat(
        &self,
        request: Request<Streaming<chat_relay::Uplink>>,
    ) -> Result<Response<Self::RouteChatStream>, Status> {
        let shared = self.0.clone();
        let (tx, rx) = mpsc::channel(shared.stream_queue);
        let wake = Arc::new(Notify::new());
        let (end_tx, end_rx) = oneshot::channel();
        let conn = {
            let mut hub = shared.hub();
            let conn = hub.relay.connect(shared.clock.now()).map_err(status)?;
            let handle = StreamHandle {
                wake: wake.clone(),
                end: Some(end_tx),
                tx: tx.clone(),
            };
            hub.streams.insert(conn, handle);
            shared.dispatch(&mut hub, Some(conn));
            conn
        };
        let peer = request.remote_addr();
        let inbound = request.into_inner();
        tokio::spawn(async move {
            let result = serve(&shared, conn, inbound, &tx, &wake, end_rx).await;
            {
                let mut hub = shared.hub();
                hub.relay.disconnect(conn);
                hub.streams.remove(&conn);
                shared.dispatch(&mut hub, None);
            }
            if let Err(status) = result {
                tracing::info!(?peer, code = ?status.code(), reason = status.message(), "stream ended");
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// First 8 bytes of an identity in hex, for logs.
fn short(identity: &IdentityPublic) -> String {
    hex::encode(&identity.as_bytes()[..8])
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
    let cfg = match parse_args() {
        Ok(Some(cfg)) => cfg,
        Ok(None) => {
            print!("{HELP}");
            return;
        }
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
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
    let shared = Arc::new(Shared {
        hub: Mutex::new(Hub {
            relay,
            streams: HashMap::new(),
            armed: None,
        }),
        clock: Clock::new(),
        timer: Notify::new(),
        stream_queue: cfg.stream_queue,
    });
    tokio::spawn(run_timers(shared.clone()));
    let service = ChatRelayServer::new(Node(shared)).max_decoding_message_size(max_message);
    // The e2e script waits for this line.
    println!("listening on {local}");
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    // Ctrl-C or SIGTERM (what service managers and `kill` send) shut down cleanly.
    let shutdown = async {
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
    };
    if let Err(e) = tonic::transport::Server::builder()
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
