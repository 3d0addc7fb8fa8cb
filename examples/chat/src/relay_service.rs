//! The relay node's gRPC service: the `sealwire::chat::relay::Relay` machine pumped over
//! tonic. Shared by `grpc_chat_node` (which adds its command line) and the package's tests.
//!
//! Every rule is the machine's; this only moves messages. One task per `RouteChat` stream
//! feeds its uplink messages to `Relay::handle_uplink` and sends the machine's answers back
//! (waiting for room, so a stream that does not read stops being read); a stream takes frames
//! from its app's mailbox (`Relay::poll_frame`) only when it has room, after the machine said
//! frames wait (`RelayEvent::FramesWaiting`); one more task sleeps until
//! `Relay::poll_timeout`. The machine sits behind one lock, held only while it runs.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rand_core::UnwrapErr;
use sealwire::chat::relay::{
    ConnId, Delivered, Downlink, Forward, Relay, RelayError, RelayEvent, Transmit, Uplink,
};
use sealwire::crypto::ed25519::IdentityPublic;
use sealwire::crypto::hex;
use sealwire::time::{Clock, Instant};
use tokio::sync::{mpsc, oneshot, Notify};
use tonic::codegen::tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::limits::RateLimits;
use crate::membership::Members;
use crate::mesh::{Mesh, MeshIn, MeshOut};
use crate::metrics::Metrics;
use crate::proto as chat_relay;
use chat_relay::chat_relay_server::{ChatRelay, ChatRelayServer};
use chat_relay::{downlink, uplink};
use sealwire::chat::{FrameHeader, FrameKind};

/// Room kept in the mesh's publication queue: below it, frames from apps are refused for now.
const MESH_HEADROOM: usize = 256;

/// The operating system's generator, which the relay draws its challenges from.
pub type NodeRng = UnwrapErr<getrandom::SysRng>;

/// The gRPC service over `relay`, each stream buffering at most `stream_queue` downlink
/// messages. Spawns the machine's timer task, so it must be called within a tokio runtime.
pub fn relay_service(relay: Relay<NodeRng>, stream_queue: usize) -> ChatRelayServer<Node> {
    mesh_relay_service(relay, stream_queue, None)
}

/// [`relay_service`] as one node of a mesh joined through NATS by `nats` (see
/// [`crate::mesh`]); `relay` must be configured with `mesh: true`. Without `nats`, a lone node.
pub fn mesh_relay_service(
    relay: Relay<NodeRng>,
    stream_queue: usize,
    nats: Option<async_nats::Client>,
) -> ChatRelayServer<Node> {
    ChatRelayServer::new(mesh_relay_node(relay, stream_queue, nats))
}

/// The node behind [`mesh_relay_service`], kept by the caller to act on it while it serves
/// (e.g. [`Node::shut_down`]); wrap it with `ChatRelayServer::new`.
pub fn mesh_relay_node(
    relay: Relay<NodeRng>,
    stream_queue: usize,
    nats: Option<async_nats::Client>,
) -> Node {
    let shared = Arc::new(Shared {
        hub: Mutex::new(Hub {
            relay,
            streams: HashMap::new(),
            armed: None,
        }),
        clock: Clock::new(),
        timer: Notify::new(),
        stream_queue,
        mesh: OnceLock::new(),
        limits: OnceLock::new(),
        members: OnceLock::new(),
        metrics: Metrics::new(),
    });
    if let Some(client) = nats {
        // The mesh task holds the hub weakly: it delivers into it while the service lives.
        let weak = Arc::downgrade(&shared);
        let deliver = Arc::new(move |m: MeshIn| {
            if let Some(shared) = weak.upgrade() {
                shared.on_mesh(m);
            }
        });
        let _ = shared.mesh.set(Mesh::start(client, deliver));
        tokio::spawn(republish_waiting(Arc::downgrade(&shared)));
    }
    tokio::spawn(run_timers(shared.clone()));
    Node(shared)
}

type Tx = mpsc::Sender<Result<chat_relay::Downlink, Status>>;

/// How often copies still waiting for their peer are published again (see
/// `Relay::republish_waiting`): a frame lost between nodes with nothing after it reaches the
/// peer within two periods.
const REPUBLISH_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// Copies published again per period, at most (the rest follow on the next).
const REPUBLISH_MAX: usize = 4096;

async fn republish_waiting(weak: std::sync::Weak<Shared>) {
    let mut every = tokio::time::interval(REPUBLISH_PERIOD);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(shared) = weak.upgrade() else { return };
        let Some(mesh) = shared.mesh.get() else {
            return;
        };
        // Only while the publication queue has room for them and for the apps' frames.
        let max = REPUBLISH_MAX.min(mesh.room().saturating_sub(1024));
        let again = shared.hub().relay.republish_waiting(max);
        if !again.is_empty() {
            tracing::debug!(
                frames = again.len(),
                "copies still waiting: published again"
            );
        }
        publish_again(&shared.metrics, mesh, again);
    }
}

/// Publishes copies again, counted in `frames_republished`.
fn publish_again(metrics: &Metrics, mesh: &Mesh, again: Vec<Forward>) {
    metrics.republished.inc_by(again.len() as u64);
    for f in again {
        mesh.send(MeshOut::Frame(f));
    }
}

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
    relay: Relay<NodeRng>,
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
    /// The mesh, when the node is one node of many.
    mesh: OnceLock<Mesh>,
    /// Token buckets per app and per chat, when set.
    limits: OnceLock<RateLimits>,
    /// The mesh-wide membership table, in a mesh.
    members: OnceLock<Members>,
    metrics: Metrics,
}

impl Shared {
    fn hub(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock would be a bug in this file; keep serving anyway.
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A frame or an announcement from the mesh, into the machine.
    fn on_mesh(&self, m: MeshIn) {
        let mut hub = self.hub();
        let now = self.clock.now();
        match m {
            MeshIn::Frame { sender, frame } => {
                if let Err(e) = hub.relay.handle_forwarded(now, sender, frame) {
                    // Our own frames come back (NATS echoes) and find no recipient here.
                    tracing::debug!(code = e.code(), message = %e, "mesh frame not queued here");
                }
            }
            MeshIn::Who { chat_id, reply } => {
                let held: Vec<_> = hub
                    .relay
                    .members_pinned(&chat_id)
                    .into_iter()
                    .map(|(id, pin)| (*id.as_bytes(), pin))
                    .collect();
                if let Some(mesh) = self.mesh.get() {
                    mesh.send(MeshOut::Reply {
                        subject: reply,
                        payload: crate::membership::answer(&held),
                    });
                }
            }
            MeshIn::Joined { chat_id, identity } => {
                let held = hub.relay.handle_remote_join(&chat_id, &identity);
                if let Some(mesh) = self.mesh.get() {
                    for f in held {
                        mesh.send(MeshOut::Frame(f));
                    }
                }
            }
            MeshIn::Delivered(notices) => {
                let again = hub.relay.handle_remote_delivered(&notices);
                if !again.is_empty() {
                    tracing::info!(
                        frames = again.len(),
                        "frames lost between nodes: published again"
                    );
                }
                if let Some(mesh) = self.mesh.get() {
                    publish_again(&self.metrics, mesh, again);
                }
            }
        }
        self.dispatch(&mut hub, None);
    }

    fn publish_delivered(&self, notices: Vec<Delivered>) {
        if let Some(mesh) = self.mesh.get() {
            mesh.send(MeshOut::Delivered(notices));
        }
    }

    /// Drains the machine after an input: returns the messages for stream `me` (sent by its
    /// own task, which may wait for room) and the status `me` must end with, if any; ends
    /// other streams, wakes the streams whose mailbox got frames, logs events, re-arms the timer.
    fn dispatch(&self, hub: &mut Hub, me: Option<ConnId>) -> (Vec<downlink::Msg>, Option<Status>) {
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
        while let Some(forward) = hub.relay.poll_forward() {
            if let Some(mesh) = self.mesh.get() {
                mesh.send(MeshOut::Frame(forward));
            }
        }
        // What apps here now have for good, one notice per chat and recipient in a row.
        let mut notices: Vec<Delivered> = Vec::new();
        while let Some(d) = hub.relay.poll_delivered() {
            let same = notices.last().is_some_and(|l| {
                l.recipient == d.recipient && l.header.chat_id == d.header.chat_id
            });
            if !same && !notices.is_empty() {
                self.publish_delivered(std::mem::take(&mut notices));
            }
            notices.push(d);
        }
        if !notices.is_empty() {
            self.publish_delivered(notices);
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
                    tracing::info!(identity = %short(&identity), chat = %hex::encode(chat_id.as_bytes()), "joined chat");
                    if let Some(mesh) = self.mesh.get() {
                        mesh.send(MeshOut::Joined(chat_id, identity));
                    }
                }
                RelayEvent::ChatExpired {
                    chat_id,
                    frames_dropped,
                } => {
                    tracing::info!(chat = %hex::encode(chat_id.as_bytes()), frames_dropped, "chat expired");
                    if let Some(mesh) = self.mesh.get() {
                        mesh.send(MeshOut::Expired(chat_id));
                    }
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
            acks: r.acks,
        },
        uplink::Msg::Proof(p) => Uplink::Proof {
            signature: p.signature,
        },
        uplink::Msg::Start(s) => Uplink::Start {
            chat_id: s.chat_id,
            peer_identity: s.peer_identity,
        },
        uplink::Msg::Frame(f) => Uplink::Frame(f),
        uplink::Msg::Ack(a) => Uplink::Ack { frames: a.frames },
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
        Downlink::Stored { uplink_index } => {
            downlink::Msg::Stored(chat_relay::Stored { uplink_index })
        }
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
                // In a mesh, a `start` first claims its seat in the shared membership table.
                let claimed = match (&msg, shared.members.get()) {
                    (uplink::Msg::Start(start), Some(members)) => claim(shared, conn, members, start).await,
                    _ => Ok(()),
                };
                let (own, ended) = {
                    let mut hub = shared.hub();
                    let now = shared.clock.now();
                    let header = match &msg {
                        uplink::Msg::Frame(f) => FrameHeader::parse(f).ok().map(|(h, _)| (h, f.len())),
                        _ => None,
                    };
                    let limited = match (&header, shared.limits.get(), hub.relay.identity(conn)) {
                        (Some((h, _)), Some(limits), Some(app)) => {
                            let handshake = !matches!(h.kind, FrameKind::Data | FrameKind::Close);
                            limits.check(app.as_bytes(), h.chat_id.as_bytes(), handshake).err()
                        }
                        _ => None,
                    };
                    if let Some((scope, kind)) = limited {
                        shared.metrics.rate_limited(scope, kind);
                    }
                    // A frame that may have to leave through the mesh is refused (the app
                    // sends it again) rather than acknowledged and then dropped for want of
                    // room in the publication queue.
                    let mesh_full = header.is_some()
                        && shared.mesh.get().is_some_and(|m| m.room() < MESH_HEADROOM);
                    let refusal = claimed
                        .err()
                        .or(limited.map(|_| RelayError::RateLimited))
                        .or(mesh_full.then_some(RelayError::QueuesFull));
                    let result = match refusal {
                        Some(e) => hub.relay.refuse_uplink(conn, e).and(Err(e)),
                        None => hub.relay.handle_uplink(now, conn, from_proto(msg)),
                    };
                    match (result, header) {
                        (Ok(()), Some((h, len))) => shared.metrics.frame_accepted(h.kind, h.epoch, len),
                        (Ok(()), None) => {}
                        (Err(e), _) => {
                            shared.metrics.refused(&e);
                            tracing::debug!(conn = conn.get(), code = e.code(), message = %e, "refused");
                        }
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

/// Claims the seat of `conn`'s identity in the chat of `start` in the mesh-wide table. A
/// malformed `start` (or one before registration) is left to the machine, which refuses it.
async fn claim(
    shared: &Shared,
    conn: ConnId,
    members: &Members,
    start: &chat_relay::StartChat,
) -> Result<(), RelayError> {
    let me = shared.hub().relay.identity(conn);
    let chat: Result<[u8; 16], _> = start.chat_id.as_slice().try_into();
    let pin = match start.peer_identity.len() {
        0 => Some(None),
        32 => start.peer_identity.as_slice().try_into().ok().map(Some),
        _ => None,
    };
    match (me, chat, pin) {
        (Some(me), Ok(chat), Some(pin)) => {
            // Each question costs every node that holds the chat an answer: a start takes a
            // token of the handshake buckets first.
            if let Some(limits) = shared.limits.get() {
                if let Err((scope, _)) = limits.check(me.as_bytes(), &chat, true) {
                    shared.metrics.rate_limited(scope, "start");
                    return Err(RelayError::RateLimited);
                }
            }
            members
                .claim(&sealwire::chat::ChatId::new(chat), *me.as_bytes(), pin)
                .await
        }
        _ => Ok(()),
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

/// The `ChatRelay` service (see [`relay_service`]).
#[derive(Clone)]
pub struct Node(Arc<Shared>);

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

impl Node {
    /// Turns on token-bucket rate limits (see [`RateLimits`]); the idle buckets are forgotten
    /// every minute. Only the first call counts. Must be called within a tokio runtime.
    pub fn set_rate_limits(&self, limits: RateLimits) {
        if self.0.limits.set(limits).is_err() {
            return;
        }
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                every.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                if let Some(l) = shared.limits.get() {
                    l.forget_idle();
                }
            }
        });
    }

    /// Shares chat membership with the other nodes of the mesh through `members` (see
    /// [`crate::membership`]). Only the first call counts.
    pub fn set_members(&self, members: Members) {
        let _ = self.0.members.set(members);
    }

    /// The Prometheus text exposition of the node's counters (see [`Metrics`]).
    pub fn metrics_text(&self) -> String {
        let stats = self.0.hub().relay.stats();
        self.0.metrics.encode(&stats)
    }

    /// Tells every app first that the node is going away: ends each open stream with
    /// `UNAVAILABLE` ("the node is shutting down"), so apps fail over at once instead of
    /// waiting for a broken connection. Returns how many streams were told.
    pub fn shut_down(&self) -> usize {
        let mut hub = self.0.hub();
        let mut told = 0;
        for h in hub.streams.values_mut() {
            if let Some(end) = h.end.take() {
                let _ = end.send(Status::unavailable("the node is shutting down"));
                told += 1;
            }
        }
        told
    }
}

/// First 8 bytes of an identity in hex, for logs.
fn short(identity: &IdentityPublic) -> String {
    hex::encode(&identity.as_bytes()[..8])
}
