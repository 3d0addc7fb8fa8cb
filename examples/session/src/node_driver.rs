//! The tokio driver of a [`sealwire::session::Node`]: one actor task owns the node (its
//! methods take `&mut self`) and pumps it — frames from connection tasks in, `Transmit`s routed
//! to their connection, `NodeEvent`s answered with the [`Service`]'s policy (the allow-list) or
//! fed to its [`Model`], and a sleep until `Node::poll_timeout`. [`serve`] puts it behind one
//! axum listener: the WebSocket at `/v1/ws` and `POST /v1/auth/challenge`.
//!
//! No protocol rule lives here: every check is the node's. Connection tasks talk to the actor
//! over a channel and receive their outgoing frames on a bounded per-connection channel (a
//! connection that cannot keep up is disconnected). Prompts and keys are never logged.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo as PeerInfo;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::stream::BoxStream;
use futures_util::{SinkExt, StreamExt};
use sealwire::session::{
    Address, ConnectionId, ErrorCode, Node, NodeEvent, PromptRequest, SessionRequest, StreamEnd,
};
use sealwire::time::Clock;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::admission::Admission;
use crate::limits::{ConnectionSlots, Limits, PerAddressRate, Refused, Slot};
use crate::metrics::Metrics;
use crate::model::{Model, Output};
use crate::replay_file::ReplayFile;
use crate::sleep_until;

/// Outgoing frames buffered per connection before the connection counts as too slow.
const CONNECTION_QUEUE: usize = 1024;
/// A frame for a connection's writer; `end_of_answer` frames go out after the end gap.
struct Outgoing {
    frame: String,
    end_of_answer: bool,
}

/// Commands buffered for the node task.
const COMMAND_QUEUE: usize = 4096;

// ---------------------------------------------------------------------------------------------
// The node task: owns the Node, routes transmits, applies policy, runs the model.

enum Command {
    Connect {
        ip: IpAddr,
        /// Live sessions on this connection, kept by the node task; the reader applies the
        /// idle timeout while it is 0.
        live: Arc<AtomicUsize>,
        /// Bytes queued for this connection's writer (added by the node task, taken off by
        /// the writer once written).
        queued: Arc<AtomicUsize>,
        reply: oneshot::Sender<Option<(ConnectionId, mpsc::Receiver<Outgoing>)>>,
    },
    Frame {
        conn: ConnectionId,
        text: axum::extract::ws::Utf8Bytes,
    },
    Disconnect {
        conn: ConnectionId,
    },
    Challenge {
        body: Bytes,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Model {
        stream: u64,
        piece: Piece,
    },
    Admitted {
        id: u64,
        admitted: bool,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

enum Piece {
    Chunk {
        text: String,
        is_final: bool,
    },
    End {
        finish_reason: String,
        prompt_tokens: Option<u64>,
        completion_tokens: Option<u64>,
    },
    Failed {
        code: ErrorCode,
        message: &'static str,
    },
}

struct ActiveStream {
    conn: ConnectionId,
    session_id: String,
    request_id: String,
    /// Aborts the task pumping the model: dropping its stream aborts the upstream request.
    cancel: tokio::task::AbortHandle,
    prompt_tokens: u64,
    chunks: u64,
    /// When the prompt arrived (for the first-piece latency).
    asked: std::time::Instant,
}

struct NodeTask<R> {
    node: Node<R>,
    clock: Clock,
    replay_file: Option<ReplayFile>,
    allow: Option<HashSet<Address>>,
    model: Arc<dyn Model>,
    max_streams: usize,
    commands: mpsc::WeakSender<Command>,
    conns: HashMap<ConnectionId, mpsc::Sender<Outgoing>>,
    /// Connections whose answer just ended: their next frames are the end of that answer.
    ending: HashSet<ConnectionId>,
    streams: HashMap<u64, ActiveStream>,
    next_stream: u64,
    /// The model name of each accepted session (sent upstream with its prompts).
    models: HashMap<(ConnectionId, String), String>,
    /// The client address of each connection, and the live sessions opened from each.
    conn_ip: HashMap<ConnectionId, IpAddr>,
    /// Live sessions of each connection, shared with its reader.
    conn_live: HashMap<ConnectionId, Arc<AtomicUsize>>,
    /// Bytes queued for each connection's writer, shared with it.
    conn_queued: HashMap<ConnectionId, Arc<AtomicUsize>>,
    sessions_per_ip: HashMap<IpAddr, usize>,
    max_sessions_per_ip: usize,
    max_queued_bytes: usize,
    metrics: Arc<Metrics>,
    admission: Option<Arc<Admission>>,
    /// Session requests waiting for the admission hook's answer.
    admitting: HashMap<u64, SessionRequest>,
    next_admission: u64,
}

impl<R: rand_core::CryptoRng + Send + 'static> NodeTask<R> {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let done = loop {
            let deadline = self
                .node
                .poll_timeout()
                .map(|t| tokio::time::Instant::from_std(self.clock.to_std(t)));
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Shutdown { done }) => break Some(done),
                    Some(cmd) => self.handle(cmd),
                    None => break None,
                },
                () = sleep_until(deadline) => {
                    self.node.handle_timeout(self.clock.now());
                }
            }
            self.flush();
        };
        self.shutdown();
        // Dropping the node wipes its key and every session key before we report back.
        drop(self);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn handle(&mut self, cmd: Command) {
        let now = self.clock.now();
        match cmd {
            Command::Connect {
                ip,
                live,
                queued,
                reply,
            } => {
                let result = match self.node.connect() {
                    Ok(conn) => {
                        self.conn_ip.insert(conn, ip);
                        self.conn_live.insert(conn, live);
                        self.conn_queued.insert(conn, queued);
                        let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
                        self.conns.insert(conn, tx);
                        debug!(?conn, "connected");
                        Some((conn, rx))
                    }
                    Err(e) => {
                        warn!(error = %e, "connection refused");
                        None
                    }
                };
                if let Some((conn, _)) = reply.send(result).err().flatten() {
                    self.drop_connection(conn);
                }
            }
            Command::Frame { conn, text } => {
                self.metrics.frame_bytes("in", text.len());
                if let Err(e) = self.node.handle_frame(now, conn, text.as_str()) {
                    // The node has already queued the `error` frame for the client.
                    let code = e.code().as_str();
                    debug!(?conn, code, error = %e, "frame rejected");
                    self.metrics.error(code);
                    if text.as_str().contains("session_init") {
                        self.metrics.init_rejected(code);
                    }
                }
            }
            Command::Disconnect { conn } => self.drop_connection(conn),
            Command::Challenge { body, reply } => {
                let answer = self.node.answer_challenge(&body).map_err(|e| {
                    debug!(code = e.code().as_str(), error = %e, "challenge rejected");
                    serde_json::json!({ "error": e.code().as_str(), "message": e.to_string() })
                        .to_string()
                });
                let _ = reply.send(answer);
            }
            Command::Model { stream, piece } => self.model_output(stream, piece),
            Command::Admitted { id, admitted } => {
                let Some(req) = self.admitting.remove(&id) else {
                    return;
                };
                if admitted {
                    self.admit(req);
                } else {
                    warn!(conn = ?req.conn, session_id = req.session_id, job_id = req.job_id,
                        "session rejected by the admission hook");
                    self.refuse(&req, "job not admitted by this host");
                }
            }
            Command::Shutdown { .. } => {}
        }
    }

    /// Drains the node's outputs until both queues are empty (handling an event may queue more).
    fn flush(&mut self) {
        loop {
            if let Some(event) = self.node.poll_event() {
                self.event(event);
                continue;
            }
            if let Some(t) = self.node.poll_transmit() {
                // An init's ack leaves only once its ephemeral key is on disk.
                self.save_replay_state();
                let Some(tx) = self.conns.get(&t.conn) else {
                    continue; // the connection is already gone
                };
                let len = t.frame.len();
                self.metrics.frame_bytes("out", len);
                let queued = self.conn_queued.get(&t.conn);
                let backlog = queued.map_or(0, |q| q.load(AtomicOrdering::Relaxed));
                let out = Outgoing {
                    end_of_answer: self.ending.contains(&t.conn),
                    frame: t.frame,
                };
                // Whichever bound comes first: frames (CONNECTION_QUEUE) or bytes.
                let full = backlog.saturating_add(len) > self.max_queued_bytes;
                if !full {
                    if let Some(q) = queued {
                        q.fetch_add(len, AtomicOrdering::Relaxed);
                    }
                }
                if full || tx.try_send(out).is_err() {
                    self.metrics.refused("slow_reader");
                    warn!(conn = ?t.conn, "connection too slow or closed; disconnecting");
                    self.drop_connection(t.conn);
                }
                continue;
            }
            break;
        }
        self.ending.clear();
    }

    /// Writes the replay state if the node recorded a key since the last write. A failure is
    /// logged (replays recorded since would be let in after a restart) and retried next time.
    fn save_replay_state(&mut self) {
        if let Some(file) = &mut self.replay_file {
            if let Err(e) = file.save_if_changed(&self.node, self.clock.now()) {
                error!(error = e, "replay state not saved");
            }
        }
    }

    fn drop_connection(&mut self, conn: ConnectionId) {
        // Dropping the sender ends the connection's writer, which closes the socket.
        if self.conns.remove(&conn).is_some() {
            debug!(?conn, "disconnected");
        }
        self.node.disconnect(conn);
        let gone: Vec<_> = self
            .models
            .keys()
            .filter(|(c, _)| *c == conn)
            .cloned()
            .collect();
        for key in gone {
            self.session_gone(&key);
        }
        self.conn_ip.remove(&conn);
        self.conn_live.remove(&conn);
        self.conn_queued.remove(&conn);
        self.streams.retain(|_, s| {
            let keep = s.conn != conn;
            if !keep {
                s.cancel.abort();
            }
            keep
        });
    }

    fn event(&mut self, event: NodeEvent) {
        let now = self.clock.now();
        match event {
            NodeEvent::SessionRequested(req) => self.session_requested(req),
            NodeEvent::SessionRekeyed { conn, session_id } => {
                debug!(?conn, session_id, "session rekeyed");
            }
            NodeEvent::Prompt(p) => self.prompt(p),
            NodeEvent::Cancel {
                conn,
                session_id,
                reason,
            } => {
                info!(?conn, session_id, reason, "stream cancelled by the client");
                let ids: Vec<u64> = self
                    .streams
                    .iter()
                    .filter(|(_, s)| s.conn == conn && s.session_id == session_id)
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    if let Some(s) = self.streams.remove(&id) {
                        s.cancel.abort();
                        self.finish(now, &s, "cancelled");
                    }
                }
            }
            NodeEvent::SessionClosed {
                conn,
                session_id,
                reason,
            } => {
                debug!(?conn, session_id, ?reason, "session closed");
                self.session_gone(&(conn, session_id.clone()));
                self.streams.retain(|_, s| {
                    let keep = !(s.conn == conn && s.session_id == session_id);
                    if !keep {
                        s.cancel.abort();
                    }
                    keep
                });
            }
            other => debug!(?other, "unhandled node event"),
        }
    }

    /// Forgets an accepted session and gives its address's session slot back.
    fn session_gone(&mut self, key: &(ConnectionId, String)) {
        if self.models.remove(key).is_none() {
            return;
        }
        self.metrics.session_ended();
        if let Some(live) = self.conn_live.get(&key.0) {
            live.fetch_sub(1, AtomicOrdering::Relaxed);
        }
        if let Some(ip) = self.conn_ip.get(&key.0) {
            if let Some(n) = self.sessions_per_ip.get_mut(ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.sessions_per_ip.remove(ip);
                }
            }
        }
    }

    /// Policy: the per-address session cap, then the allow-list (standing in for the on-chain
    /// job-ownership check).
    fn session_requested(&mut self, req: SessionRequest) {
        let key = (req.conn, req.session_id.clone());
        let ip = self.conn_ip.get(&req.conn).copied();
        let live = ip.and_then(|ip| self.sessions_per_ip.get(&ip)).copied();
        if !self.models.contains_key(&key) && live.unwrap_or(0) >= self.max_sessions_per_ip {
            warn!(conn = ?req.conn, "session refused: too many live sessions from this address");
            self.metrics.refused("sessions_per_address");
            self.refuse(&req, "too many sessions from this address, try again later");
            return;
        }
        let allowed = match (&self.allow, req.client_address) {
            (None, _) => true,
            (Some(set), Some(addr)) => set.contains(&addr),
            // A plaintext session's address is only claimed, never proven.
            (Some(_), None) => false,
        };
        if !allowed {
            warn!(conn = ?req.conn, session_id = req.session_id, job_id = req.job_id,
                "session rejected: address not allowed");
            self.refuse(&req, "client address not allowed for this job");
            return;
        }
        let Some(admission) = self.admission.clone() else {
            self.admit(req);
            return;
        };
        // The hook is asked about proven addresses only: a plaintext session is refused.
        let (Some(address), Some(commands)) = (req.client_address, self.commands.upgrade()) else {
            self.refuse(&req, "client address not proven (plaintext session)");
            return;
        };
        let id = self.next_admission;
        self.next_admission += 1;
        let (job_id, chain_id, model) = (req.job_id.clone(), req.chain_id, req.model.clone());
        self.admitting.insert(id, req);
        tokio::spawn(async move {
            let admitted = admission.admits(address, &job_id, chain_id, &model).await;
            let _ = commands.send(Command::Admitted { id, admitted }).await;
        });
    }

    /// Refuses a session request (NOT_AUTHORIZED with `why`).
    fn refuse(&mut self, req: &SessionRequest, why: &str) {
        self.metrics.init_rejected("NOT_AUTHORIZED");
        if let Err(e) = self.node.reject(req.conn, &req.session_id, why) {
            warn!(conn = ?req.conn, error = %e, "reject failed");
        }
    }

    /// Accepts a session request that passed every check (unless its connection went away or
    /// its address filled its session slots meanwhile).
    fn admit(&mut self, req: SessionRequest) {
        let now = self.clock.now();
        if !self.conns.contains_key(&req.conn) {
            return; // gone while the hook was asked
        }
        let key = (req.conn, req.session_id.clone());
        let ip = self.conn_ip.get(&req.conn).copied();
        let live = ip.and_then(|ip| self.sessions_per_ip.get(&ip)).copied();
        if !self.models.contains_key(&key) && live.unwrap_or(0) >= self.max_sessions_per_ip {
            self.metrics.refused("sessions_per_address");
            self.refuse(&req, "too many sessions from this address, try again later");
            return;
        }
        let who = req
            .client_address
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unverified (plaintext)".into());
        info!(conn = ?req.conn, session_id = req.session_id, job_id = req.job_id,
            chain_id = req.chain_id, client = who, encrypted = req.encrypted, "session accepted");
        if self.models.insert(key, req.model.clone()).is_none() {
            if let Some(ip) = ip {
                *self.sessions_per_ip.entry(ip).or_insert(0) += 1;
            }
            if let Some(live) = self.conn_live.get(&req.conn) {
                live.fetch_add(1, AtomicOrdering::Relaxed);
            }
            self.metrics.session_accepted();
        }
        if let Err(e) = self.node.accept(now, req.conn, &req.session_id) {
            warn!(conn = ?req.conn, error = %e, "accept failed");
        }
    }

    fn prompt(&mut self, p: PromptRequest) {
        self.metrics.prompt();
        if self.streams.len() >= self.max_streams {
            self.metrics.error(ErrorCode::Capacity.as_str());
            warn!(conn = ?p.conn, "too many answers in progress; prompt refused");
            let _ = self.node.send_error(
                p.conn,
                Some(&p.session_id),
                Some(&p.request_id),
                ErrorCode::Capacity,
                "node busy, try again later",
            );
            return;
        }
        debug!(conn = ?p.conn, session_id = p.session_id, request_id = p.request_id,
            len = p.prompt.len(), encrypted = p.encrypted, "prompt");
        let id = self.next_stream;
        self.next_stream += 1;
        let model = p
            .model
            .as_deref()
            .filter(|m| !m.is_empty())
            .or_else(|| {
                self.models
                    .get(&(p.conn, p.session_id.clone()))
                    .map(String::as_str)
            })
            .unwrap_or_default();
        let pieces = self.model.generate(model, &p.prompt);
        let commands = self.commands.clone();
        let pump = tokio::spawn(pump_model(pieces, id, commands));
        self.streams.insert(
            id,
            ActiveStream {
                conn: p.conn,
                session_id: p.session_id.clone(),
                request_id: p.request_id.clone(),
                cancel: pump.abort_handle(),
                prompt_tokens: p.prompt.split_whitespace().count() as u64,
                chunks: 0,
                asked: std::time::Instant::now(),
            },
        );
    }

    fn model_output(&mut self, id: u64, piece: Piece) {
        let now = self.clock.now();
        match piece {
            Piece::Chunk { text, is_final } => {
                let Some(s) = self.streams.get_mut(&id) else {
                    return; // cancelled or the session is gone
                };
                if s.chunks == 0 {
                    self.metrics.first_piece(s.asked.elapsed().as_secs_f64());
                }
                s.chunks += 1;
                self.metrics.chunk();
                let sent = self.node.send_chunk(
                    now,
                    s.conn,
                    &s.session_id,
                    &s.request_id,
                    &text,
                    is_final,
                );
                if let Err(e) = sent {
                    warn!(conn = ?s.conn, error = %e, "answer stopped");
                    s.cancel.abort();
                    self.streams.remove(&id);
                }
            }
            Piece::End {
                finish_reason,
                prompt_tokens,
                completion_tokens,
            } => {
                if let Some(s) = self.streams.remove(&id) {
                    let end = StreamEnd {
                        finish_reason,
                        ..StreamEnd::complete(
                            prompt_tokens.unwrap_or(s.prompt_tokens),
                            completion_tokens.unwrap_or(s.chunks),
                            self.model.context_window(),
                        )
                    };
                    self.send_end(now, &s, end);
                }
            }
            Piece::Failed { code, message } => {
                if let Some(s) = self.streams.remove(&id) {
                    warn!(conn = ?s.conn, code = code.as_str(), "answer failed");
                    self.metrics.error(code.as_str());
                    let sent = self.node.send_error(
                        s.conn,
                        Some(&s.session_id),
                        Some(&s.request_id),
                        code,
                        message,
                    );
                    if let Err(e) = sent {
                        warn!(conn = ?s.conn, error = %e, "could not report the failure");
                    }
                }
            }
        }
    }

    fn finish(&mut self, now: sealwire::time::Instant, s: &ActiveStream, reason: &str) {
        let end = StreamEnd {
            reason: reason.into(),
            ..StreamEnd::complete(s.prompt_tokens, s.chunks, self.model.context_window())
        };
        self.send_end(now, s, end);
    }

    fn send_end(&mut self, now: sealwire::time::Instant, s: &ActiveStream, end: StreamEnd) {
        // Every chunk of this answer was handed to the writer by the flush that followed it;
        // what `finish` queues now is the end of the answer.
        self.ending.insert(s.conn);
        if let Err(e) = self
            .node
            .finish(now, s.conn, &s.session_id, &s.request_id, end)
        {
            warn!(conn = ?s.conn, error = %e, "could not finish the answer");
        }
    }

    fn shutdown(&mut self) {
        let conns: Vec<ConnectionId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.drop_connection(conn);
        }
        self.flush();
        self.save_replay_state();
        info!("all connections closed; wiping node keys");
    }
}

/// Feeds one model answer to the node task, holding back one text piece so the last is
/// `is_final`. The node task aborts this task to cancel (dropping the model's stream).
async fn pump_model(
    mut pieces: BoxStream<'static, Output>,
    stream: u64,
    commands: mpsc::WeakSender<Command>,
) {
    let Some(commands) = commands.upgrade() else {
        return;
    };
    let send = |piece| {
        let commands = commands.clone();
        async move {
            commands
                .send(Command::Model { stream, piece })
                .await
                .is_ok()
        }
    };
    let mut pending: Option<String> = None;
    let mut last = Piece::End {
        finish_reason: "stop".into(),
        prompt_tokens: None,
        completion_tokens: None,
    };
    while let Some(output) = pieces.next().await {
        match output {
            Output::Text(text) => {
                if let Some(text) = pending.replace(text) {
                    let piece = Piece::Chunk {
                        text,
                        is_final: false,
                    };
                    if !send(piece).await {
                        return;
                    }
                }
            }
            Output::End {
                finish_reason,
                prompt_tokens,
                completion_tokens,
            } => {
                last = Piece::End {
                    finish_reason,
                    prompt_tokens,
                    completion_tokens,
                };
                break;
            }
            Output::Failed { code, message } => {
                // Text already sent stays; the held-back piece is dropped with the answer.
                let _ = send(Piece::Failed { code, message }).await;
                return;
            }
        }
    }
    if let Some(text) = pending {
        let piece = Piece::Chunk {
            text,
            is_final: true,
        };
        if !send(piece).await {
            return;
        }
    }
    let _ = send(last).await;
}

// ---------------------------------------------------------------------------------------------
// HTTP and WebSocket handlers.

#[derive(Clone)]
struct App {
    commands: mpsc::Sender<Command>,
    max_message: usize,
    end_gap: Duration,
    idle_timeout: Duration,
    init_rate: PerAddressRate,
    challenge_rate: PerAddressRate,
    metrics: Arc<Metrics>,
}

async fn ws_upgrade(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::Extension(slot): axum::Extension<Arc<Slot>>,
    ws: WebSocketUpgrade,
) -> Response {
    // The connection's slot (total and per address) was taken when it was accepted; the
    // WebSocket keeps it, since the HTTP connection's task ends at the upgrade.
    let ip = peer.ip();
    ws.max_message_size(app.max_message)
        .max_frame_size(app.max_message)
        .on_upgrade(move |socket| async move {
            connection(app, ip, socket).await;
            drop(slot);
        })
}

async fn connection(app: App, ip: IpAddr, socket: WebSocket) {
    let App {
        commands,
        end_gap,
        idle_timeout,
        init_rate,
        metrics,
        ..
    } = app;
    let live = Arc::new(AtomicUsize::new(0));
    let queued = Arc::new(AtomicUsize::new(0));
    let (reply, answer) = oneshot::channel();
    let connect = Command::Connect {
        ip,
        live: live.clone(),
        queued: queued.clone(),
        reply,
    };
    if commands.send(connect).await.is_err() {
        return;
    }
    let Ok(Some((conn, mut outgoing))) = answer.await else {
        return; // refused (capacity) or shutting down: dropping the socket closes it
    };
    let (mut sink, mut incoming) = socket.split();
    let close_code = Arc::new(AtomicU16::new(0));
    let reader_close = close_code.clone();
    let writer = tokio::spawn(async move {
        let mut gap_done = false;
        while let Some(out) = outgoing.recv().await {
            // Frames queued together go out in one write (flushed when the queue runs dry,
            // or when the transport's write buffer fills). The chunks before the end of an
            // answer are flushed first, and a pause keeps the end out of the client's read of
            // the last chunks.
            if out.end_of_answer && !gap_done && !end_gap.is_zero() {
                if sink.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(end_gap).await;
            }
            gap_done = out.end_of_answer;
            let len = out.frame.len();
            if sink.feed(Message::Text(out.frame.into())).await.is_err() {
                return;
            }
            queued.fetch_sub(len, AtomicOrdering::Relaxed);
            if outgoing.is_empty() && sink.flush().await.is_err() {
                return;
            }
        }
        let code = close_code.load(AtomicOrdering::Relaxed);
        let close = (code != 0).then(|| CloseFrame {
            code,
            reason: "".into(),
        });
        let _ = sink.send(Message::Close(close)).await;
    });
    // A connection without a live session is closed (1008) after `idle_timeout` without one,
    // however many messages or pings it sends meanwhile.
    let mut idle_since = tokio::time::Instant::now();
    loop {
        if live.load(AtomicOrdering::Relaxed) > 0 {
            idle_since = tokio::time::Instant::now();
        }
        let msg = match tokio::time::timeout_at(idle_since + idle_timeout, incoming.next()).await {
            Ok(Some(msg)) => msg,
            Ok(None) => break,
            Err(_) if live.load(AtomicOrdering::Relaxed) > 0 => continue,
            Err(_) => {
                debug!(
                    ?conn,
                    "closing a connection without a session (idle timeout)"
                );
                reader_close.store(1008, AtomicOrdering::Relaxed);
                break;
            }
        };
        let text = match msg {
            Ok(Message::Text(text)) => text,
            Ok(Message::Binary(bytes)) => match axum::extract::ws::Utf8Bytes::try_from(bytes) {
                Ok(text) => text,
                Err(_) => {
                    debug!(?conn, "ignoring a binary frame that is not UTF-8");
                    continue;
                }
            },
            Ok(Message::Close(_)) => break,
            Err(e) => {
                // Say why in the close frame where the protocol has a code for it.
                let code = close_code_for(e);
                reader_close.store(code, AtomicOrdering::Relaxed);
                debug!(?conn, code, "connection closed on a transport error");
                break;
            }
            Ok(_) => continue, // WebSocket ping/pong are answered by the transport
        };
        // Session inits (`session_init`, `encrypted_session_init`: words that cannot occur in
        // the hex of an encrypted payload) are rate-limited per address.
        if text.as_str().contains("session_init") && !init_rate.allow(ip) {
            metrics.refused("inits_rate");
            debug!(?conn, "session init over the address's rate; closing");
            reader_close.store(1008, AtomicOrdering::Relaxed);
            break;
        }
        if commands.send(Command::Frame { conn, text }).await.is_err() {
            break;
        }
    }
    let _ = commands.send(Command::Disconnect { conn }).await;
    let _ = writer.await;
}

/// The close code for a read error: 1009 for a frame or message over `--max-frame` (refused
/// from its header, never buffered), 1007 for a text frame that is not UTF-8, 0 (none) else.
fn close_code_for(e: axum::Error) -> u16 {
    use tungstenite::error::{CapacityError, Error};
    match e.into_inner().downcast_ref::<Error>() {
        Some(Error::Capacity(
            CapacityError::MessageTooLong { .. } | CapacityError::TooManyHeaders,
        )) => 1009,
        Some(Error::Utf8(_)) => 1007,
        _ => 0,
    }
}

/// `GET /metrics`: the Prometheus text exposition.
async fn serve_metrics(State(app): State<App>) -> Response {
    let kind = [(
        header::CONTENT_TYPE,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )];
    (StatusCode::OK, kind, app.metrics.encode()).into_response()
}

async fn challenge(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    if !app.challenge_rate.allow(peer.ip()) {
        app.metrics.refused("challenges_rate");
        return StatusCode::TOO_MANY_REQUESTS.into_response();
    }
    let (reply, answer) = oneshot::channel();
    if app
        .commands
        .send(Command::Challenge { body, reply })
        .await
        .is_err()
    {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let json = [(header::CONTENT_TYPE, "application/json")];
    match answer.await {
        Ok(Ok(body)) => (StatusCode::OK, json, body).into_response(),
        Ok(Err(body)) => (StatusCode::BAD_REQUEST, json, body).into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// The node's policy and model (what the command line configures).
pub struct Service {
    /// Client addresses allowed to open sessions; `None` = everyone.
    pub allow: Option<HashSet<Address>>,
    /// The LLM backend.
    pub model: Arc<dyn Model>,
    /// Answers generated at the same time, node-wide.
    pub max_streams: usize,
    /// The clock the node runs on (the one a replay state was restored with).
    pub clock: Clock,
    /// Where the replay cache is kept across restarts, if anywhere.
    pub replay_file: Option<ReplayFile>,
    /// Pause between the last chunk of an answer and its end (`encrypted_response`,
    /// `stream_end`), so a client that handles all frames of one socket read at once (the
    /// Node.js SDK 1.36.0) has decrypted every chunk before it sees the end. Costs this much
    /// latency at the end of each answer, on that connection only.
    pub end_gap: Duration,
    /// Caps on connections and sessions that hold before authentication.
    pub limits: Limits,
    /// Serve `wss://` and `https://` with this certificate (see [`tls_acceptor`]); `None`
    /// serves plain `ws://` and `http://`.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Asked before every session is accepted (after `allow`); `None` accepts without asking.
    pub admission: Option<Admission>,
}

/// A TLS acceptor (rustls, TLS 1.2 and 1.3, the `ring` provider) for the PEM certificate
/// chain in `cert` and the PEM private key in `key`.
///
/// ```no_run
/// let acceptor = session_examples::node_driver::tls_acceptor(
///     std::path::Path::new("/etc/ws_node/cert.pem"),
///     std::path::Path::new("/etc/ws_node/key.pem"),
/// )?;
/// # Ok::<(), String>(())
/// ```
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    // rustls deprecates the `ring` provider for lacking post-quantum key exchange; the
    // alternative (aws-lc-rs) needs a C toolchain and cmake in every build of this package.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `node` on `listener` (`/v1/ws` and `/v1/auth/challenge`) until `shutdown` completes,
/// then disconnects every client and drops the node, wiping its keys. `false` if the node task
/// failed.
///
/// ```no_run
/// use std::sync::Arc;
/// use sealwire::session::{Node, NodeConfig, SecretKey};
/// use session_examples::model::EchoModel;
/// use session_examples::node_driver::{serve, Service};
/// # async fn run() -> std::io::Result<()> {
/// let key = SecretKey::generate(&mut session_examples::system_rng());
/// let node = Node::new(key, NodeConfig::default(), session_examples::system_rng()).unwrap();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let model = Arc::new(EchoModel { delay: std::time::Duration::ZERO });
/// let clock = sealwire::time::Clock::new();
/// let end_gap = std::time::Duration::from_millis(10);
/// let service = Service { allow: None, model, max_streams: 16, clock, replay_file: None, end_gap,
///     limits: Default::default(), tls: None, admission: None };
/// serve(listener, node, service, async { let _ = tokio::signal::ctrl_c().await; }).await;
/// # Ok(()) }
/// ```
pub async fn serve<R>(
    listener: tokio::net::TcpListener,
    node: Node<R>,
    service: Service,
    shutdown: impl std::future::Future<Output = ()>,
) -> bool
where
    R: rand_core::CryptoRng + Send + 'static,
{
    // The transport refuses frames well beyond the node's own limit; frames just above it
    // still reach the node, which answers with its MESSAGE_TOO_LARGE error frame.
    // `--max-frame`, and never beyond what the node itself could take.
    let max_message = service
        .limits
        .max_frame
        .min(node.config().max_frame_len.saturating_add(1 << 20));
    let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
    let metrics = Arc::new(Metrics::new());
    let task = NodeTask {
        node,
        clock: service.clock,
        replay_file: service.replay_file,
        allow: service.allow,
        model: service.model,
        max_streams: service.max_streams,
        commands: commands.downgrade(),
        conns: HashMap::new(),
        ending: HashSet::new(),
        streams: HashMap::new(),
        next_stream: 0,
        models: HashMap::new(),
        conn_ip: HashMap::new(),
        conn_live: HashMap::new(),
        conn_queued: HashMap::new(),
        sessions_per_ip: HashMap::new(),
        max_sessions_per_ip: service.limits.max_sessions_per_ip,
        max_queued_bytes: service.limits.max_queued_bytes,
        metrics: metrics.clone(),
        admission: service.admission.map(Arc::new),
        admitting: HashMap::new(),
        next_admission: 0,
    };
    let node_task = tokio::spawn(task.run(rx));

    let limits = service.limits;
    let app = Router::new()
        .route("/v1/ws", get(ws_upgrade))
        .route("/v1/auth/challenge", post(challenge))
        .route("/metrics", get(serve_metrics))
        .with_state(App {
            commands: commands.clone(),
            max_message,
            end_gap: service.end_gap,
            idle_timeout: limits.idle_timeout,
            init_rate: PerAddressRate::per_minute(limits.inits_per_minute),
            challenge_rate: PerAddressRate::per_minute(limits.challenges_per_minute),
            metrics: metrics.clone(),
        });
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(accept_loop(
        listener,
        app,
        ConnectionSlots::new(limits),
        limits,
        service.tls,
        metrics,
        stopped,
    ));

    shutdown.await;
    info!("shutting down");
    let _ = stop.send(());
    let (done, finished) = oneshot::channel();
    if commands.send(Command::Shutdown { done }).await.is_ok() {
        let _ = finished.await;
    }
    drop(commands);
    if node_task.await.is_err() {
        error!("node task failed");
        return false;
    }
    // The accept loop gives connections 3 s to finish, then drops them.
    let _ = server.await;
    true
}

/// Accepts connections until `stopped`: each takes a slot (total and per address) or is
/// answered 503 at once without being read; then TLS if configured, then HTTP/1.1 with a
/// header read timeout (and WebSocket upgrades). An `accept` error (e.g. out of file
/// descriptors) is logged and retried after a pause instead of spinning.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    slots: ConnectionSlots,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics: Arc<Metrics>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let (tcp, peer) = tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small frames leave at once: the end gap separates writes, not Nagle's batching.
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(error = %e, "TCP_NODELAY not set");
        }
        let slot = match slots.take(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                debug!(?why, "connection refused: too many connections");
                metrics.refused(match why {
                    Refused::Total => "connections_total",
                    Refused::PerAddress => "connections_per_address",
                });
                if tls.is_none() {
                    tasks.spawn(refuse(tcp));
                }
                continue;
            }
        };
        let slot = Arc::new(slot);
        let router = app
            .clone()
            .layer(axum::Extension(PeerInfo(peer)))
            .layer(axum::Extension(slot.clone()));
        let tls = tls.clone();
        tasks.spawn(async move {
            let _slot = slot;
            match tls {
                None => serve_http(tcp, router, limits).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_http(stream, router, limits).await,
                        Ok(Err(e)) => debug!(error = %e, "TLS handshake failed"),
                        Err(_) => debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(3), drain)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
}

/// HTTP/1.1 on one connection, with the header read timeout and upgrades.
async fn serve_http<S>(stream: S, router: Router, limits: Limits)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let service = hyper_util::service::TowerToHyperService::new(router);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    if let Err(e) = http.serve_connection(io, service).with_upgrades().await {
        debug!(error = %e, "connection ended with an error");
    }
}

/// Answers a connection over the caps with 503 without parsing it, and closes it: at most a
/// second and 16 KiB of its request are read and discarded, so that closing does not reset the
/// connection before the client reads the answer.
async fn refuse(mut tcp: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer =
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tcp.write_all(answer).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut read = 0;
        while read < 16 << 10 {
            match tcp.read(&mut sink).await? {
                0 => break,
                n => read += n,
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}
