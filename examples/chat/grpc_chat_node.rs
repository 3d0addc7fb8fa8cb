//! A keyless gRPC relay for `sealwire::chat`.
//!
//! ```text
//! cargo run --example grpc_chat_node -- [--listen 127.0.0.1:50051]
//! ```
//!
//! Apps open one `RouteChat` stream each (see `proto/chat_relay.proto`), prove their Ed25519
//! identity by signing a fresh challenge, start chats by id, and send chat frames. The node routes
//! each frame by the chat id in its clear header to the chat's other participant, queueing it in
//! that participant's bounded mailbox while it is offline (so an app killed and restarted from its
//! sealed state receives what was sent meanwhile). It never holds a chat key: it only runs the
//! chat module's keyless relay checks, which drop garbage (bad version, kind, size) and enforce
//! the per-chat rekey throttle. Every refusal is a gRPC status code, in-band for one message
//! (`Downlink.rejected`) or ending the stream when the stream itself is unusable.
//!
//! Bounds (flags, see `--help`): largest message (so frame size), handshakes per chat per 30 s,
//! frames per mailbox, frames held for a participant that has not joined yet, total queued
//! bytes, apps (idle ones are forgotten at capacity), open streams, chats, chats per stream, and
//! the per-stream downlink queue. Registration must finish within 10 s.
//!
//! State is in memory: after a restart apps re-register and re-start their chats (the example
//! app reconnects by itself); frames queued at the moment of the crash are lost, which the chat
//! protocol tolerates.
//!
//! Limits of this example: a chat's two participants are fixed for the node's lifetime, chats
//! never expire (once `--max-chats` exist, new ones are refused), and delivery has no
//! acknowledgements.

use chat_examples::proto as chat_relay;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration as StdDuration;

use chat_relay::chat_relay_server::{ChatRelay, ChatRelayServer};
use chat_relay::{downlink, uplink, Downlink, Uplink};
use sealwire::chat::{data_frame_len, ChatId, Error as ChatError, FrameHeader};
use sealwire::chat::{RelayConfig, RelayFilter};
use sealwire::crypto::ed25519::IdentityPublic;
use sealwire::crypto::hex;
use sealwire::time::Clock;
use tokio::sync::{mpsc, Notify, Semaphore};
use tonic::codegen::tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Code, Request, Response, Status, Streaming};

/// Domain separation of the registration proof (see `Proof` in the proto).
const REGISTER_CONTEXT: &[u8] = b"sealwire/chat-relay/1 register";

#[derive(Clone, Debug)]
struct Config {
    listen: SocketAddr,
    /// The chat module's keyless checks: largest plaintext, per-chat handshake rate.
    relay: RelayConfig,
    /// Frames queued per identity (online or offline).
    mailbox: usize,
    /// Frames held for a chat's second participant before it has joined.
    pending_per_chat: usize,
    /// Bytes of frames queued over all mailboxes and pending lists.
    max_queued_bytes: usize,
    max_apps: usize,
    /// Open `RouteChat` streams (including ones still registering).
    max_streams: usize,
    max_chats: usize,
    max_chats_per_stream: usize,
    /// Downlink messages buffered per stream before the node waits for the app to read.
    stream_queue: usize,
    /// Time an app has to register and answer the challenge.
    register_timeout: StdDuration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            relay: RelayConfig::default(),
            mailbox: 1024,
            pending_per_chat: 64,
            max_queued_bytes: 256 << 20,
            max_apps: 10_000,
            max_streams: 10_000,
            max_chats: 100_000,
            max_chats_per_stream: 64,
            stream_queue: 64,
            register_timeout: StdDuration::from_secs(10),
        }
    }
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
    --max-chats N             chats held; they never expire, new ones are refused beyond it
                              (default 100000). Also caps the chats tracked by the handshake
                              throttle (65536 unless this flag is given)
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

impl Config {
    /// Largest frame accepted: a data frame with the largest plaintext.
    fn max_frame(&self) -> usize {
        data_frame_len(self.relay.max_message_len)
    }
}

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
    let mut cfg = Config::default();
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
        match flag.as_str() {
            "--listen" => {
                cfg.listen = value
                    .parse()
                    .map_err(|e| format!("--listen {value}: {e}"))?
            }
            "--max-message" => cfg.relay.max_message_len = number()?,
            "--max-handshakes" => {
                cfg.relay.max_handshakes =
                    u32::try_from(number()?).map_err(|_| format!("{flag}: too large"))?
            }
            "--mailbox" => cfg.mailbox = number()?,
            "--pending" => cfg.pending_per_chat = number()?,
            "--max-queued-bytes" => cfg.max_queued_bytes = number()?,
            "--max-apps" => cfg.max_apps = number()?,
            "--max-streams" => cfg.max_streams = number()?,
            "--max-chats" => {
                cfg.max_chats = number()?;
                cfg.relay.max_chats = cfg.max_chats;
            }
            "--max-chats-per-stream" => cfg.max_chats_per_stream = number()?,
            "--stream-queue" => cfg.stream_queue = number()?,
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    Ok(Some(cfg))
}

type Identity = [u8; 32];

/// What the node knows of one identity: its mailbox survives the app's disconnects.
struct App {
    app_id: String,
    /// Bumped by every registration; a stream whose generation is stale has been replaced.
    generation: u64,
    /// Wakes the live stream (if any) when its mailbox gets a frame or it is replaced.
    live: Option<Arc<Notify>>,
    mailbox: VecDeque<Vec<u8>>,
}

/// One chat: at most two participants, identified by the first two identities that start it.
struct Chat {
    members: Vec<Identity>,
    /// Frames sent before the second participant joined; moved to its mailbox when it does.
    pending: VecDeque<Vec<u8>>,
}

struct Registry {
    apps: HashMap<Identity, App>,
    chats: HashMap<ChatId, Chat>,
    /// Keyless frame checks and the per-chat handshake throttle.
    filter: RelayFilter,
    /// Bytes of all queued frames (mailboxes and pending lists), against `max_queued_bytes`.
    queued_bytes: usize,
}

impl Registry {
    /// The entry of `identity`, created if missing. At capacity an idle entry (offline, empty
    /// mailbox) is forgotten to make room; if there is none, `None`.
    fn app_entry(&mut self, identity: Identity, max_apps: usize) -> Option<&mut App> {
        if !self.apps.contains_key(&identity) && self.apps.len() >= max_apps {
            let idle = self
                .apps
                .iter()
                .find(|(_, a)| a.live.is_none() && a.mailbox.is_empty())
                .map(|(id, _)| *id)?;
            self.apps.remove(&idle);
        }
        Some(self.apps.entry(identity).or_insert_with(|| App {
            app_id: String::new(),
            generation: 0,
            live: None,
            mailbox: VecDeque::new(),
        }))
    }
}

struct Relay {
    cfg: Config,
    clock: Clock,
    registry: Mutex<Registry>,
    /// One permit per open stream.
    streams: Arc<Semaphore>,
}

impl Relay {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock would be a bug in this file; keep serving anyway.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Clone)]
struct Node(Arc<Relay>);

type DownlinkStream = Pin<Box<dyn Stream<Item = Result<Downlink, Status>> + Send>>;

#[tonic::async_trait]
impl ChatRelay for Node {
    type RouteChatStream = DownlinkStream;

    async fn route_chat(
        &self,
        request: Request<Streaming<Uplink>>,
    ) -> Result<Response<Self::RouteChatStream>, Status> {
        let permit =
            self.0.streams.clone().try_acquire_owned().map_err(|_| {
                Status::resource_exhausted("the node serves its maximum of streams")
            })?;
        let peer = request.remote_addr();
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(self.0.cfg.stream_queue);
        let relay = self.0.clone();
        tokio::spawn(async move {
            if let Err(status) = serve_stream(&relay, inbound, &tx).await {
                tracing::info!(?peer, code = ?status.code(), reason = status.message(), "stream ended");
                let _ = tx.send(Err(status)).await;
            }
            drop(permit);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

type Tx = mpsc::Sender<Result<Downlink, Status>>;

fn down(msg: downlink::Msg) -> Result<Downlink, Status> {
    Ok(Downlink { msg: Some(msg) })
}

async fn send(tx: &Tx, msg: downlink::Msg) -> Result<(), Status> {
    tx.send(down(msg))
        .await
        .map_err(|_| Status::cancelled("the app went away"))
}

/// Reads the next uplink message, turning a closed stream into `Ok(None)`.
async fn next(inbound: &mut Streaming<Uplink>) -> Result<Option<uplink::Msg>, Status> {
    match inbound.message().await? {
        None => Ok(None),
        // An empty oneof carries nothing; refuse it rather than skip it.
        Some(Uplink { msg: None }) => Err(Status::invalid_argument("empty uplink message")),
        Some(Uplink { msg: Some(m) }) => Ok(Some(m)),
    }
}

/// Registration: `register`, a challenge, a valid signature. Returns the proven identity.
async fn register(inbound: &mut Streaming<Uplink>, tx: &Tx) -> Result<(Identity, String), Status> {
    let first = next(inbound)
        .await?
        .ok_or_else(|| Status::invalid_argument("stream closed before registering"))?;
    let uplink::Msg::Register(reg) = first else {
        return Err(Status::invalid_argument(
            "the first message must be `register`",
        ));
    };
    let identity: Identity = reg
        .identity
        .as_slice()
        .try_into()
        .map_err(|_| Status::invalid_argument("identity must be 32 bytes"))?;
    let public = IdentityPublic::from_bytes(identity)
        .ok_or_else(|| Status::invalid_argument("identity is not an Ed25519 public key"))?;
    if reg.app_id.len() > 64 || reg.app_id.chars().any(char::is_control) {
        return Err(Status::invalid_argument(
            "app_id must be at most 64 bytes without control characters",
        ));
    }
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|_| Status::internal("no randomness"))?;
    send(
        tx,
        downlink::Msg::Challenge(chat_relay::Challenge {
            nonce: nonce.to_vec(),
        }),
    )
    .await?;
    let proof = next(inbound)
        .await?
        .ok_or_else(|| Status::unauthenticated("stream closed before the proof"))?;
    let uplink::Msg::Proof(proof) = proof else {
        return Err(Status::unauthenticated(
            "expected `proof` after the challenge",
        ));
    };
    let signature: [u8; 64] = proof
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| Status::unauthenticated("signature must be 64 bytes"))?;
    let mut signed = Vec::with_capacity(REGISTER_CONTEXT.len() + 64);
    signed.extend_from_slice(REGISTER_CONTEXT);
    signed.extend_from_slice(&nonce);
    signed.extend_from_slice(&identity);
    if !public.verify(&signed, &signature) {
        return Err(Status::unauthenticated(
            "registration signature does not verify",
        ));
    }
    Ok((identity, reg.app_id))
}

/// One app stream from registration to its end.
async fn serve_stream(
    relay: &Relay,
    mut inbound: Streaming<Uplink>,
    tx: &Tx,
) -> Result<(), Status> {
    let (identity, app_id) =
        match tokio::time::timeout(relay.cfg.register_timeout, register(&mut inbound, tx)).await {
            Ok(r) => r?,
            Err(_) => return Err(Status::deadline_exceeded("registration took too long")),
        };

    // Attach: this stream becomes the identity's live stream; an older one is told to stop.
    let notify = Arc::new(Notify::new());
    let (generation, queued) = {
        let mut reg = relay.registry();
        let Some(app) = reg.app_entry(identity, relay.cfg.max_apps) else {
            return Err(Status::resource_exhausted(
                "the node serves its maximum of apps",
            ));
        };
        app.app_id = app_id.clone();
        app.generation = app.generation.wrapping_add(1);
        if let Some(old) = app.live.replace(notify.clone()) {
            old.notify_one();
        }
        (app.generation, app.mailbox.len())
    };
    tracing::info!(identity = %short(&identity), app_id, queued, "app registered");
    send(
        tx,
        downlink::Msg::Registered(chat_relay::Registered {
            queued_frames: u32::try_from(queued).unwrap_or(u32::MAX),
        }),
    )
    .await?;
    // Deliver what waited while the app was away.
    notify.notify_one();

    let mut session = Session {
        relay,
        identity,
        generation,
        chats: HashSet::new(),
        uplink_index: 0,
    };
    let result = session.run(&mut inbound, tx, &notify).await;
    tracing::info!(identity = %short(&identity), "app disconnected");

    let mut reg = relay.registry();
    if let Some(app) = reg.apps.get_mut(&identity) {
        if app.generation == generation {
            app.live = None;
        }
    }
    result
}

struct Session<'a> {
    relay: &'a Relay,
    identity: Identity,
    generation: u64,
    /// Chats this stream started: frames of any other chat id are refused (NotFound).
    chats: HashSet<ChatId>,
    /// Index of the last uplink message read (`register` is 0, `proof` 1).
    uplink_index: u64,
}

/// Why one uplink message was refused.
struct Reject(Code, &'static str);

impl Session<'_> {
    async fn run(
        &mut self,
        inbound: &mut Streaming<Uplink>,
        tx: &Tx,
        notify: &Notify,
    ) -> Result<(), Status> {
        self.uplink_index = 1;
        loop {
            tokio::select! {
                biased;
                () = notify.notified() => self.deliver(tx).await?,
                msg = next(inbound) => {
                    let Some(msg) = msg? else { return Ok(()) };
                    self.uplink_index += 1;
                    let reply = match msg {
                        uplink::Msg::Register(_) | uplink::Msg::Proof(_) => {
                            Err(Reject(Code::InvalidArgument, "already registered"))
                        }
                        uplink::Msg::Start(start) => self.start(start),
                        uplink::Msg::Frame(frame) => self.route(frame).map(|()| None),
                    };
                    match reply {
                        Ok(Some(started)) => send(tx, downlink::Msg::Started(started)).await?,
                        Ok(None) => {}
                        Err(Reject(code, message)) => {
                            tracing::debug!(identity = %short(&self.identity), ?code, message, "refused");
                            send(
                                tx,
                                downlink::Msg::Rejected(chat_relay::Rejected {
                                    code: code as i32,
                                    message: message.to_string(),
                                    uplink_index: self.uplink_index,
                                }),
                            )
                            .await?;
                        }
                    }
                }
            }
        }
    }

    /// Moves mailbox frames to the stream, one downlink slot at a time, so a frame leaves the
    /// mailbox only when the stream has room for it.
    async fn deliver(&self, tx: &Tx) -> Result<(), Status> {
        loop {
            let permit = tx
                .reserve()
                .await
                .map_err(|_| Status::cancelled("the app went away"))?;
            let frame = {
                let mut guard = self.relay.registry();
                let reg = &mut *guard;
                let Some(app) = reg.apps.get_mut(&self.identity) else {
                    return Ok(());
                };
                if app.generation != self.generation {
                    return Err(Status::aborted("a newer stream registered this identity"));
                }
                let frame = app.mailbox.pop_front();
                if let Some(f) = &frame {
                    reg.queued_bytes = reg.queued_bytes.saturating_sub(f.len());
                }
                frame
            };
            match frame {
                Some(frame) => permit.send(down(downlink::Msg::Frame(frame))),
                None => return Ok(()),
            }
        }
    }

    fn start(
        &mut self,
        start: chat_relay::StartChat,
    ) -> Result<Option<chat_relay::ChatStarted>, Reject> {
        let id: [u8; 16] = start
            .chat_id
            .as_slice()
            .try_into()
            .map_err(|_| Reject(Code::InvalidArgument, "chat_id must be 16 bytes"))?;
        let pin: Option<Identity> = match start.peer_identity.len() {
            0 => None,
            32 => start.peer_identity.as_slice().try_into().ok(),
            _ => {
                return Err(Reject(
                    Code::InvalidArgument,
                    "peer_identity must be empty or 32 bytes",
                ))
            }
        };
        let chat_id = ChatId::new(id);
        if !self.chats.contains(&chat_id) && self.chats.len() >= self.relay.cfg.max_chats_per_stream
        {
            return Err(Reject(
                Code::ResourceExhausted,
                "this stream has started its maximum of chats",
            ));
        }
        let cfg = &self.relay.cfg;
        let mut guard = self.relay.registry();
        let reg = &mut *guard;
        let chats_len = reg.chats.len();
        let chat = match reg.chats.get_mut(&chat_id) {
            Some(chat) => chat,
            None if chats_len >= cfg.max_chats => {
                return Err(Reject(
                    Code::ResourceExhausted,
                    "the node holds its maximum of chats",
                ))
            }
            None => reg.chats.entry(chat_id).or_insert(Chat {
                members: Vec::with_capacity(2),
                pending: VecDeque::new(),
            }),
        };
        let other = chat.members.iter().find(|m| **m != self.identity).copied();
        if let (Some(pin), Some(other)) = (pin, other) {
            if pin != other {
                return Err(Reject(
                    Code::PermissionDenied,
                    "the chat's other participant is not the pinned identity",
                ));
            }
        }
        let joined = !chat.members.contains(&self.identity);
        if joined {
            if chat.members.len() >= 2 {
                return Err(Reject(
                    Code::PermissionDenied,
                    "the chat already has two other participants",
                ));
            }
            chat.members.push(self.identity);
            // Frames sent before we joined were meant for us.
            if chat.members.len() == 2 {
                let held = std::mem::take(&mut chat.pending);
                if let Some(app) = reg.apps.get_mut(&self.identity) {
                    for frame in held {
                        if app.mailbox.len() < cfg.mailbox {
                            app.mailbox.push_back(frame);
                        } else {
                            reg.queued_bytes = reg.queued_bytes.saturating_sub(frame.len());
                        }
                    }
                    if let Some(live) = &app.live {
                        live.notify_one();
                    }
                }
            }
        }
        self.chats.insert(chat_id);
        let (peer_identity, peer_app_id) = match other {
            Some(other) => (
                other.to_vec(),
                reg.apps
                    .get(&other)
                    .map(|a| a.app_id.clone())
                    .unwrap_or_default(),
            ),
            None => (Vec::new(), String::new()),
        };
        if joined {
            tracing::info!(identity = %short(&self.identity), chat = %hex::encode(&id), "joined chat");
        }
        Ok(Some(chat_relay::ChatStarted {
            chat_id: id.to_vec(),
            peer_identity,
            peer_app_id,
        }))
    }

    fn route(&mut self, frame: Vec<u8>) -> Result<(), Reject> {
        let cfg = &self.relay.cfg;
        if frame.len() > cfg.max_frame() {
            return Err(Reject(
                Code::ResourceExhausted,
                "frame larger than the node accepts",
            ));
        }
        // Keyless validation by the chat module: version, kind, exact handshake sizes, data size.
        let (header, _) = FrameHeader::parse_checked(&frame, cfg.relay.max_message_len)
            .map_err(|_| Reject(Code::InvalidArgument, "not a well-formed chat frame"))?;
        if !self.chats.contains(&header.chat_id) {
            return Err(Reject(Code::NotFound, "no such chat on this stream"));
        }
        let now = self.relay.clock.now();
        let mut guard = self.relay.registry();
        let reg = &mut *guard;
        // The per-chat handshake throttle counts only frames that would be routed.
        reg.filter.check(now, &frame).map_err(|e| match e {
            ChatError::RekeyThrottled => {
                Reject(Code::ResourceExhausted, "too many handshakes for this chat")
            }
            ChatError::QueueFull => Reject(
                Code::ResourceExhausted,
                "the node tracks its maximum of chats in handshake",
            ),
            _ => Reject(Code::InvalidArgument, "not a well-formed chat frame"),
        })?;
        if reg.queued_bytes.saturating_add(frame.len()) > cfg.max_queued_bytes {
            return Err(Reject(
                Code::ResourceExhausted,
                "the node's queues are full",
            ));
        }
        let Some(chat) = reg.chats.get_mut(&header.chat_id) else {
            return Err(Reject(Code::NotFound, "no such chat"));
        };
        let Some(other) = chat.members.iter().find(|m| **m != self.identity).copied() else {
            // The other participant has not joined yet: hold the frame for it.
            if chat.pending.len() >= cfg.pending_per_chat {
                return Err(Reject(
                    Code::ResourceExhausted,
                    "too many frames held for a participant that has not joined",
                ));
            }
            reg.queued_bytes += frame.len();
            chat.pending.push_back(frame);
            return Ok(());
        };
        // The peer's entry may have been forgotten while idle; its mailbox starts again.
        let Some(app) = reg.app_entry(other, cfg.max_apps) else {
            return Err(Reject(
                Code::ResourceExhausted,
                "the node serves its maximum of apps",
            ));
        };
        if app.mailbox.len() >= cfg.mailbox {
            return Err(Reject(
                Code::ResourceExhausted,
                "the peer's mailbox is full",
            ));
        }
        let len = frame.len();
        app.mailbox.push_back(frame);
        if let Some(live) = &app.live {
            live.notify_one();
        }
        reg.queued_bytes += len;
        Ok(())
    }
}

/// First 8 bytes of an identity in hex, for logs.
fn short(identity: &Identity) -> String {
    hex::encode(identity.get(..8).unwrap_or(identity))
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
    let max_message = cfg.max_frame() + 1024;
    let relay = Arc::new(Relay {
        registry: Mutex::new(Registry {
            apps: HashMap::new(),
            chats: HashMap::new(),
            filter: RelayFilter::new(cfg.relay),
            queued_bytes: 0,
        }),
        streams: Arc::new(Semaphore::new(cfg.max_streams)),
        cfg,
        clock: Clock::new(),
    });
    let service = ChatRelayServer::new(Node(relay)).max_decoding_message_size(max_message);
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
