//! A chat app over the gRPC relay: one `sealwire::chat::Chat` pumped between stdin/stdout and a
//! `grpc_chat_node`.
//!
//! ```text
//! CHAT_PASSPHRASE=... cargo run --example grpc_chat_app -- \
//!     --identity alice.key --chat 00112233445566778899aabbccddeeff \
//!     --initiator --peer-identity HEX --peer-name bob --state alice.state
//! ```
//!
//! * `--identity FILE`: the Ed25519 identity seed (hex), created (mode 0600) if missing.
//!   `--show-identity` prints the public key in hex and exits.
//! * `--chat HEX`: the 16-byte chat id both apps use; `--initiator` or `--responder` picks who
//!   sends the first handshake message; `--peer-identity HEX` pins the peer (the chat fails
//!   closed on anyone else); `--peer-name NAME` is how received lines are labelled.
//! * `--state FILE`: the chat state is sealed (Argon2id + XChaCha20-Poly1305, passphrase from
//!   the environment variable `CHAT_PASSPHRASE`) and written atomically (temp file, fsync,
//!   rename) after every change. If FILE exists at start the chat resumes from it with no new
//!   initial handshake: it starts a fresh epoch at once, and lines typed meanwhile wait for
//!   it (`event: held`), because the file may be an older copy; so no message key is ever used
//!   twice. The app holds an exclusive lock on `FILE.lock` while it runs: a second instance on
//!   the same state exits 1. `--passphrase-file PATH` reads the passphrase from a file instead
//!   of `CHAT_PASSPHRASE`. `--kdf-memory-kib N --kdf-iterations N` lower the Argon2id cost
//!   (tests only; at least 19456 KiB and 2 iterations).
//!
//! Each stdin line is sent as one message; `/rekey` starts a rekey, `/close` closes the chat,
//! `/quit` (or end of input) exits leaving the chat resumable. Each received message is printed
//! to stdout as `<peer> text`. Events go to stderr as `event: KIND key=value ...` lines.
//!
//! If the node goes away the app keeps its chat, holds outgoing frames in a bounded outbox,
//! and reconnects with backoff (`event: relay-lost`, `event: relay-reconnected`).
//!
//! The app is a pump: frames from the node go to `Chat::handle_frame`, lines to `Chat::send`,
//! deadlines to `Chat::handle_timeout`; whatever the machine queues is sent to the node.

use chat_examples::cli::args_or_exit;
use chat_examples::proto as chat_relay;
#[allow(dead_code)]
use chat_examples::relay_client;

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chat_examples::outbox::{Answer, Outbox};
use chat_examples::reorder::Reorder;
use chat_relay::downlink;
use rand_core::UnwrapErr;
use relay_client::{describe_end, BoxError, ProofMode, RelayStream};
use sealwire::chat::{Chat, ChatConfig, ChatError, ChatEvent, ChatId, FrameHeader, FrameKind};
use sealwire::crypto::ed25519::{IdentityKey, IdentityPublic};
use sealwire::crypto::hex;
use sealwire::seal::{seal, KdfLimits, KdfParams, SealKey, UnsealWith};
use sealwire::time::{Clock, WallTime};
use tokio::io::AsyncBufReadExt;
use zeroize::Zeroizing;

type Rng = UnwrapErr<getrandom::SysRng>;

const HELP: &str = "\
grpc_chat_app — a sealwire::chat app on stdin/stdout over grpc_chat_node (sealwire example)

USAGE:
    grpc_chat_app --identity FILE --show-identity
    grpc_chat_app --identity FILE --chat HEX32 (--initiator | --responder) [OPTIONS]

OPTIONS:
    --identity FILE         the Ed25519 identity seed (64 hex digits); created (mode 0600)
                            if missing. Required
    --show-identity         print the identity's public key (64 hex digits) and exit
    --node URL[,URL...]     the relay node(s) (default http://127.0.0.1:50051): the app uses
                            the first that answers and, when its node goes away, fails over
                            to the others in turn; https://HOST:PORT connects over TLS
    --ca FILE               PEM certificate(s) to trust for https:// nodes (the node's CA)
    --name NAME             the app id this app registers with at the node (default app;
                            the node takes at most 64 bytes without control characters)
    --chat HEX32            the 16-byte chat id both apps use (32 hex digits)
    --initiator             send the first handshake message
    --responder             wait for the peer's first handshake message
                            (one of the two is required unless --state resumes a chat)
    --peer-identity HEX64   pin the peer's public key; anyone else is refused
                            (default: accept the first peer)
    --peer-name NAME        label of received messages (default: the first 16 hex digits
                            of the peer's key)
    --state FILE            seal the chat state to FILE (Argon2id + XChaCha20-Poly1305,
                            passphrase from CHAT_PASSPHRASE or --passphrase-file), rewritten
                            atomically after every change and deleted when the chat closes;
                            if FILE exists the chat resumes from it without a new initial
                            handshake (it rekeys at once; lines typed meanwhile are held and
                            sent in order once the fresh epoch is up). The app locks
                            FILE.lock: a second instance on the same FILE exits 1
    --passphrase-file PATH  read the passphrase of --state from PATH (its first line)
    --kdf-memory-kib N      Argon2id memory cost of the sealing key (default 65536, 64 MiB)
    --kdf-iterations N      Argon2id time cost of the sealing key (default 3); lower both
                            for tests only: the least accepted is 19456 KiB and 2
    -h, --help              print this help

INPUT (stdin, one line each):
    TEXT                    send TEXT as one message
    /rekey                  start a rekey (a new epoch)
    /close                  close the chat (the peer is told; the app exits)
    /quit                   exit, leaving the chat resumable (so does end of input)

OUTPUT:
    stdout                  each received message as `<PEER-NAME> text` (control characters
                            replaced); with --show-identity only the public key
    stderr                  events as `event: KIND key=value ...` and problems as
                            `error: ...`. The events: registered, relay-chat-started (the
                            node has the chat; peer= is empty while the peer is on another
                            node or not yet there), peer-identity, established, resumed,
                            held (input kept until a fresh epoch), rekeyed, closed,
                            outbox-restored (frames kept from the last run), outbox-retry,
                            duplicate-dropped (a copy of a frame already shown), relay-lost,
                            relay-retry, relay-reconnected, handshake-frame-refused,
                            stale-handshake-frames, frames-after-a-gap

Every outgoing frame is kept until a node says it stored it (with --state, in STATE.outbox,
sealed under the state's passphrase, so a crash loses none: the next start sends them, so
`outbox-restored` may count up to 2048: the unstored frames and the stored ones kept), and
the latest 1024 stored messages are sent again after a lost stream (the node may have died
before delivering them; the peer drops copies as `event: duplicate-dropped`). If the node goes
away the app keeps the chat and its frames and reconnects with backoff, trying the next node
of --node first; only the first connection must succeed (to one of the nodes). A frame the
node refuses for now (a full mailbox) is sent again 500 ms later; at 1024 kept frames the app
stops reading input until nodes catch up. Nothing is dropped: a message refused for good is
reported as `error: the node refused a message for good ...`, and at the end of input the
app waits up to 10 s for the nodes, then names what was not stored.

ENVIRONMENT:
    CHAT_PASSPHRASE         passphrase of the sealed state; required with --state unless
                            --passphrase-file is given

EXIT STATUS:
    0 at /quit, end of input or the chat's close, and after --show-identity; 1 on a runtime
    failure (identity file, --chat or a role missing, passphrase, state file or its lock held
    by another instance, first connection to the node); 2 on bad usage (unknown flag, missing or malformed value, no
    --identity).
";

const USAGE: &str =
    "usage: grpc_chat_app --identity FILE [OPTIONS]   (grpc_chat_app --help for more)";

struct Args {
    identity: PathBuf,
    show_identity: bool,
    nodes: Vec<String>,
    ca: Option<PathBuf>,
    name: String,
    chat: Option<[u8; 16]>,
    initiator: Option<bool>,
    peer_identity: Option<[u8; 32]>,
    peer_name: Option<String>,
    state: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
    kdf: KdfParams,
}

/// The arguments, or `None` when `--help` was asked for.
fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        identity: PathBuf::new(),
        show_identity: false,
        nodes: vec!["http://127.0.0.1:50051".into()],
        ca: None,
        name: "app".into(),
        chat: None,
        initiator: None,
        peer_identity: None,
        peer_name: None,
        state: None,
        passphrase_file: None,
        kdf: KdfParams::default(),
    };
    let mut identity = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--identity" => identity = Some(PathBuf::from(value()?)),
            "--show-identity" => a.show_identity = true,
            "--node" => {
                a.nodes = value()?
                    .split(',')
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.is_empty())
                    .collect();
                if a.nodes.is_empty() {
                    return Err("--node needs at least one URL".into());
                }
            }
            "--ca" => a.ca = Some(PathBuf::from(value()?)),
            "--name" => a.name = value()?,
            "--chat" => {
                let v = value()?;
                a.chat = Some(decode_hex(&v).ok_or("--chat: expected 32 hex digits")?);
            }
            "--initiator" => a.initiator = Some(true),
            "--responder" => a.initiator = Some(false),
            "--peer-identity" => {
                let v = value()?;
                a.peer_identity =
                    Some(decode_hex(&v).ok_or("--peer-identity: expected 64 hex digits")?);
            }
            "--peer-name" => a.peer_name = Some(value()?),
            "--state" => a.state = Some(PathBuf::from(value()?)),
            "--passphrase-file" => a.passphrase_file = Some(PathBuf::from(value()?)),
            "--kdf-memory-kib" => a.kdf.memory_kib = number(&value()?)?,
            "--kdf-iterations" => a.kdf.iterations = number(&value()?)?,
            "-h" | "--help" => return Ok(None),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    a.identity = identity.ok_or_else(|| format!("--identity is required\n{USAGE}"))?;
    Ok(Some(a))
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("not a number: {s}"))
}

fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    hex::decode_array(s.trim()).ok()
}

/// Loads the identity seed, or creates it (0600, atomically) if the file does not exist. The
/// seed is kept (wiped on drop) because the chat machine takes its own `IdentityKey` (it wipes
/// it) while the relay link signs registrations with another.
fn load_identity(path: &Path) -> Result<Zeroizing<[u8; 32]>, BoxError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            Ok(Zeroizing::new(decode_hex::<32>(&text).ok_or_else(
                || format!("{}: not a 64-digit hex seed", path.display()),
            )?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = Zeroizing::new([0u8; 32]);
            getrandom::fill(&mut seed[..]).map_err(|e| format!("no OS randomness: {e}"))?;
            let text = Zeroizing::new(format!("{}\n", hex::encode(&seed[..])));
            write_atomically(path, text.as_bytes())?;
            Ok(seed)
        }
        Err(e) => Err(format!("{}: {e}", path.display()).into()),
    }
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new content: write a
/// temp file beside it, fsync it, rename it over `path`, fsync the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Where and how the chat state is sealed.
/// Whether a frame is a message (data or close), worth sending again after a lost stream; the
/// machine repeats its handshake frames on its own clock.
fn is_message(frame: &[u8]) -> bool {
    FrameHeader::parse(frame)
        .is_ok_and(|(h, _)| matches!(h.kind, FrameKind::Data | FrameKind::Close))
}

/// Where the outbox is kept beside the state file: `STATE.outbox`.
fn outbox_path(state: &Path) -> PathBuf {
    let mut name = state.file_name().unwrap_or_default().to_os_string();
    name.push(".outbox");
    state.with_file_name(name)
}

struct Persist {
    path: PathBuf,
    key: SealKey,
    /// The exclusive lock on `PATH.lock`, held for the life of the app.
    _lock: std::fs::File,
}

/// Takes the exclusive lock on `state`'s lock file (`STATE.lock`, created if missing; the state
/// file itself is replaced at every seal, so it cannot carry the lock). A second instance on
/// the same state would restore the same record and hand out the same keys.
fn lock_state(state: &Path) -> Result<std::fs::File, BoxError> {
    let mut name = state.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    let path = state.with_file_name(name);
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "{} is in use by another grpc_chat_app (its lock {} is held)",
            state.display(),
            path.display()
        )
        .into()),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("{}: {e}", path.display()).into()),
    }
}

/// The passphrase of the sealed state: the first line of `--passphrase-file`, else
/// `CHAT_PASSPHRASE`.
fn passphrase(file: Option<&Path>) -> Result<Zeroizing<String>, BoxError> {
    match file {
        Some(path) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
            );
            let line = text.lines().next().unwrap_or_default();
            if line.is_empty() {
                return Err(format!("{}: no passphrase in the file", path.display()).into());
            }
            Ok(Zeroizing::new(line.to_owned()))
        }
        None => Ok(Zeroizing::new(std::env::var("CHAT_PASSPHRASE").map_err(
            |_| "--state needs the passphrase in CHAT_PASSPHRASE or --passphrase-file",
        )?)),
    }
}

fn event(line: &str) {
    eprintln!("event: {line}");
}

/// Printable form of a received message: control characters are replaced so a peer cannot
/// drive the terminal.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// How to (re)join the chat at a node.
struct Link {
    /// The nodes of `--node`, in order.
    nodes: Vec<String>,
    /// The node of the current (or last) stream.
    current: usize,
    /// PEM certificates trusted for `https://` nodes (`--ca`).
    ca: Option<Vec<u8>>,
    identity: IdentityKey,
    name: String,
    chat_id: [u8; 16],
    pin: Option<[u8; 32]>,
}

/// Longest wait for one node to accept, register and start the chat.
const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// An error with every cause in its chain (tonic's "transport error" alone names none).
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

impl Link {
    /// Registers and starts the chat at one node.
    async fn join(&self, node: &str) -> Result<(RelayStream, u32), String> {
        let attempt = async {
            let (relay, queued) = RelayStream::connect_with(
                node,
                self.ca.as_deref(),
                &self.identity,
                &self.name,
                ProofMode::Honest,
                true,
            )
            .await?;
            relay.start_chat(self.chat_id, self.pin).await?;
            Ok::<_, BoxError>((relay, queued))
        };
        match tokio::time::timeout(NODE_TIMEOUT, attempt).await {
            Ok(Ok(joined)) => Ok(joined),
            Ok(Err(e)) => Err(with_causes(e.as_ref())),
            Err(_) => Err(format!("no answer within {} s", NODE_TIMEOUT.as_secs())),
        }
    }

    /// Tries every node once, in order from `first` (wrapping), and keeps the first that
    /// works; the error names each node and why it failed.
    async fn connect_from(&mut self, first: usize) -> Result<(RelayStream, u32), String> {
        let mut failures = Vec::new();
        for i in 0..self.nodes.len() {
            let at = (first + i) % self.nodes.len();
            let node = self.nodes[at].clone();
            match self.join(&node).await {
                Ok(joined) => {
                    self.current = at;
                    return Ok(joined);
                }
                Err(why) => failures.push(format!("{node}: {why}")),
            }
        }
        Err(format!("no relay node reachable ({})", failures.join("; ")))
    }

    /// The node of the current stream.
    fn node(&self) -> &str {
        &self.nodes[self.current]
    }
}

/// Frames kept until a node stored them; at this many the app stops reading input (it never
/// drops one).
const OUTBOX_LIMIT: usize = 1024;
/// Frames on their way at once: 1, so that a frame refused for now and sent again cannot be
/// overtaken by the next one (the peer gets them in order).
const OUTBOX_WINDOW: usize = 1;
/// Stored frames kept in memory and sent again after a lost stream: the node that stored them
/// may have died before delivering them (the peer drops the copies it already has).
const OUTBOX_KEEP: usize = 1024;
/// How long to wait before sending a frame the node refused for now (full, throttled).
const OUTBOX_RETRY: Duration = Duration::from_millis(500);
/// How long the node may take to answer a frame before the stream is given up as lost.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a message after a gap waits for the gap to fill before it is shown anyway.
const REORDER_HOLD: Duration = Duration::from_secs(3);
/// The magic of the sealed outbox record (`STATE.outbox`).
const OUTBOX_MAGIC: [u8; 4] = *b"SWOB";
/// Downlink messages already waiting that are handled together, sealed once.
const DOWNLINK_BATCH: usize = 256;
/// At the end of input, how long the app waits for nodes to store what is still kept.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines typed while a resumed chat waits for its fresh epoch (`ChatError::AwaitingRekey`);
/// beyond this a line is refused with an error.
const HELD_CAPACITY: usize = 1024;
/// Reconnect backoff bounds.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

struct App {
    chat: Chat<Rng>,
    clock: Clock,
    link: Link,
    /// The stream to the node; `None` while reconnecting.
    relay: Option<RelayStream>,
    /// Frames until a node stored them (kept beside the sealed state as `STATE.outbox`).
    outbox: Outbox,
    /// Set after a node refused a frame for now: nothing is sent before it.
    resend_at: Option<tokio::time::Instant>,
    /// While frames are on their way: when the node must have answered one, else the stream
    /// is given up as lost (its frames go again on the next).
    answer_due: Option<tokio::time::Instant>,
    /// The peer's data and close frames, handed to the machine in the order they were sent
    /// (held briefly after a gap in the clear header's counters), each with its number on the
    /// stream that delivered it (0: a stream lost since).
    reorder: Reorder<(u64, Vec<u8>)>,
    /// Frames delivered on the current stream, and how many of them the node was told are
    /// kept (`Ack`): every one before the first still held, once the state is sealed.
    received: u64,
    acked: u64,
    /// Lines waiting for a resumed chat's fresh epoch, in order (wiped when dropped).
    held: VecDeque<Zeroizing<String>>,
    retry_at: tokio::time::Instant,
    backoff: Duration,
    /// Stale handshake frames refused so far (reported once).
    stale_handshakes: u64,
    persist: Option<Persist>,
    peer_label: Option<String>,
}

impl App {
    fn label(&self) -> String {
        match (&self.peer_label, self.chat.peer_identity()) {
            (Some(name), _) => name.clone(),
            (None, Some(peer)) => hex::encode(&peer.as_bytes()[..8]),
            (None, None) => "peer".into(),
        }
    }

    fn peer_hex(&self) -> String {
        self.chat
            .peer_identity()
            .map(|p| hex::encode(p.as_bytes()))
            .unwrap_or_default()
    }

    /// After every input: keep the frames the machine produced in the outbox file, show the
    /// machine's events, seal the new state, then send what may be sent. A crash at any point
    /// loses no frame: one kept but not sealed is from counters the resumed state never uses
    /// again (resuming rekeys first), and a received frame is acknowledged to the node only
    /// after the seal, so one shown but not sealed is delivered (and shown) again.
    async fn flush(&mut self) -> Result<(), BoxError> {
        self.drain()?;
        self.seal()?;
        self.send_outbox().await;
        Ok(())
    }

    /// Moves what the machine produced into the outbox (file first) and shows its events.
    fn drain(&mut self) -> Result<(), BoxError> {
        let mut produced = false;
        while let Some(frame) = self.chat.poll_transmit() {
            self.outbox.push(frame);
            produced = true;
        }
        if produced {
            self.save_outbox()?;
        }
        let mut out = std::io::stdout().lock();
        while let Some(ev) = self.chat.poll_event() {
            match ev {
                ChatEvent::Message { plaintext, .. } => {
                    writeln!(out, "<{}> {}", self.label(), printable(&plaintext))?;
                }
                ChatEvent::PeerIdentity { identity } => event(&format!(
                    "peer-identity peer={}",
                    hex::encode(identity.as_bytes())
                )),
                ChatEvent::Established { epoch, .. } => event(&format!(
                    "established epoch={epoch} peer={}",
                    self.peer_hex()
                )),
                ChatEvent::Rekeyed { epoch, .. } => event(&format!("rekeyed epoch={epoch}")),
                ChatEvent::SealAdvised => {}
                ChatEvent::Closed { reason, by_peer } => {
                    event(&format!("closed reason={reason:?} by_peer={by_peer}"))
                }
                other => event(&format!("other {other:?}")),
            }
        }
        out.flush()?;
        Ok(())
    }

    fn seal(&mut self) -> Result<(), BoxError> {
        let Some(p) = &self.persist else {
            return Ok(());
        };
        if self.chat.is_closed() {
            // Every key is wiped: nothing to resume, so nothing may remain on disk.
            if p.path.exists() {
                std::fs::remove_file(&p.path)?;
            }
            return Ok(());
        }
        if !self.chat.is_established() {
            return Ok(()); // nothing worth keeping before the first handshake completes
        }
        let record = self.chat.seal(self.clock.now(), WallTime::now(), &p.key)?;
        write_atomically(&p.path, &record)?;
        Ok(())
    }

    /// Seals the outbox under the state's key (its own record, bound to the chat id) and writes
    /// it beside the sealed state; removes the file when the outbox is empty.
    fn save_outbox(&self) -> Result<(), BoxError> {
        let Some(p) = &self.persist else {
            return Ok(());
        };
        let path = outbox_path(&p.path);
        if self.outbox.is_empty() || self.chat.is_closed() {
            if path.exists() {
                std::fs::remove_file(&path)?;
            }
            return Ok(());
        }
        let encoded = Zeroizing::new(self.outbox.encode());
        let mut rng = UnwrapErr(getrandom::SysRng);
        let record = seal(&p.key, OUTBOX_MAGIC, &self.link.chat_id, &encoded, &mut rng);
        write_atomically(&path, &record)?;
        Ok(())
    }

    /// Hands kept frames to the node, as many as the outbox's window allows, while the stream
    /// is up and no refused frame waits for its retry.
    async fn send_outbox(&mut self) {
        if self.resend_at.is_some() {
            return;
        }
        let Some(relay) = &self.relay else { return };
        while let Some((at, frame)) = self.outbox.next_to_send() {
            match relay.send_frame(frame.to_vec()).await {
                Ok(index) => {
                    self.outbox.sent(at, index);
                    self.answer_due
                        .get_or_insert_with(|| tokio::time::Instant::now() + ANSWER_TIMEOUT);
                }
                Err(_) => {
                    self.lost("the stream is closed");
                    return;
                }
            }
        }
    }

    /// The node's answer to an uplink: a frame stored, or a message refused.
    fn answered(&mut self, index: u64, refusal: Option<(tonic::Code, &str)>) {
        self.apply_answer(index, refusal);
        // The node answers: the next frame on its way gets a fresh allowance.
        self.answer_due =
            (self.outbox.in_flight() > 0).then(|| tokio::time::Instant::now() + ANSWER_TIMEOUT);
    }

    fn apply_answer(&mut self, index: u64, refusal: Option<(tonic::Code, &str)>) {
        let Some((code, message)) = refusal else {
            self.outbox.answer(index, true, false);
            return;
        };
        let handshake = self
            .outbox
            .frame(index)
            .and_then(|f| FrameHeader::parse(f).ok())
            .is_some_and(|(h, _)| !matches!(h.kind, FrameKind::Data | FrameKind::Close));
        // A message refused for now is sent again; a handshake frame is not (the machine
        // repeats its handshake on its own clock, and a throttled one must not hold the data).
        let retry = !handshake
            && matches!(
                code,
                tonic::Code::ResourceExhausted | tonic::Code::Unavailable
            );
        match self.outbox.answer(index, false, retry) {
            Answer::Retry => {
                event(&format!("outbox-retry reason={message:?}"));
                self.resend_at = Some(tokio::time::Instant::now() + OUTBOX_RETRY);
            }
            Answer::Failed(_) if handshake => {
                event(&format!("handshake-frame-refused reason={message:?}"))
            }
            Answer::Failed(_) => eprintln!(
                "error: the node refused a message for good ({code:?}: {message}); it was not delivered"
            ),
            Answer::Stored | Answer::Unknown => {
                eprintln!("error: node refused uplink #{index}: {code:?}: {message}")
            }
        }
    }

    /// Reports a refused frame. Handshake frames the node kept from an earlier run (the peer's
    /// messages of a handshake this app no longer has) are expected after a restart: they are
    /// reported once, as stale, and counted, not as one verification error each.
    fn refused(&mut self, frame: &[u8], e: &ChatError) {
        let handshake = FrameHeader::parse(frame).is_ok_and(|(h, _)| {
            matches!(
                h.kind,
                FrameKind::HandshakeInit
                    | FrameKind::HandshakeResponse
                    | FrameKind::HandshakeFinish
            )
        });
        let stale = handshake
            && matches!(
                e,
                ChatError::HandshakeFailed
                    | ChatError::UnexpectedHandshake
                    | ChatError::Replayed
                    | ChatError::AuthenticationFailed
                    | ChatError::Desync
            );
        if !stale {
            if matches!(e, ChatError::Replayed) {
                // Relays deliver at least once (a mesh may hand a frame over twice): a second
                // copy is expected, not a failure.
                event("duplicate-dropped");
            } else {
                eprintln!("error: frame refused: {e}");
            }
            return;
        }
        self.stale_handshakes += 1;
        if self.stale_handshakes == 1 {
            event("stale-handshake-frames ignored (queued at the node by an earlier run)");
        }
    }

    /// One frame into the chat machine (its queues drained first when they are full: a frame
    /// refused for that would be acknowledged and lost).
    fn open(&mut self, frame: &[u8]) {
        let mut result = self.chat.handle_frame(self.clock.now(), frame);
        if matches!(result, Err(ChatError::Capacity)) {
            if let Err(e) = self.drain() {
                eprintln!("error: {e}");
            }
            result = self.chat.handle_frame(self.clock.now(), frame);
        }
        if let Err(e) = result {
            self.refused(frame, &e);
        }
    }

    /// After the state is sealed: tells the node which frames of this stream are kept (all
    /// before the first one still held behind a gap).
    async fn send_ack(&mut self) {
        let held = self.reorder.held().map(|(at, _)| *at).min();
        let kept = held.map_or(self.received, |at| at.saturating_sub(1));
        if kept <= self.acked {
            return;
        }
        let Some(relay) = &self.relay else { return };
        let ack = chat_relay::uplink::Msg::Ack(chat_relay::Ack { frames: kept });
        if relay.send(ack).await.is_ok() {
            self.acked = kept;
        }
    }

    fn lost(&mut self, why: &str) {
        event(&format!("relay-lost reason={why:?}"));
        // The next stream counts from 1; frames still held came on this one and hold back
        // the next stream's acknowledgements until they are handed over.
        (self.received, self.acked) = (0, 0);
        for (at, _) in self.reorder.held_mut() {
            *at = 0;
        }
        self.outbox.stream_lost();
        self.answer_due = None;
        self.relay = None;
        self.backoff = RETRY_MIN;
        self.retry_at = tokio::time::Instant::now() + self.backoff;
    }

    async fn reconnect(&mut self) {
        // The node that went away is tried last.
        let next = (self.link.current + 1) % self.link.nodes.len();
        match self.link.connect_from(next).await {
            Ok((relay, queued)) => {
                event(&format!(
                    "relay-reconnected node={} queued={queued}",
                    self.link.node()
                ));
                self.relay = Some(relay);
                self.send_outbox().await;
            }
            Err(why) => {
                event(&format!("relay-retry reason={why:?}"));
                self.backoff = (self.backoff * 2).min(RETRY_MAX);
                self.retry_at = tokio::time::Instant::now() + self.backoff;
            }
        }
    }

    /// Handles one message (or the end) of the node's stream; returns whether the chat
    /// machine took an input (a frame), which must then be sealed.
    fn on_downlink(&mut self, msg: Result<Option<downlink::Msg>, tonic::Status>) -> bool {
        match msg {
            Ok(Some(downlink::Msg::Frame(frame))) => {
                self.received += 1;
                match FrameHeader::parse(&frame) {
                    Ok((h, _)) if matches!(h.kind, FrameKind::Data | FrameKind::Close) => {
                        let now = std::time::Instant::now();
                        let item = (self.received, frame);
                        for (_, frame) in self.reorder.push(now, h.epoch, h.counter, item) {
                            self.open(&frame);
                        }
                    }
                    _ => {
                        self.open(&frame);
                        // A handshake may have brought an epoch up: the peer's frames of it
                        // start at counter 0, and earlier epochs' frames are late from now on.
                        if let Some(epoch) = self.chat.epoch() {
                            for (_, frame) in self.reorder.expect_at_least(epoch, 0) {
                                self.open(&frame);
                            }
                        }
                    }
                }
                return true;
            }
            Ok(Some(downlink::Msg::Rejected(r))) => {
                self.answered(
                    r.uplink_index,
                    Some((tonic::Code::from(r.code), &r.message)),
                );
            }
            Ok(Some(downlink::Msg::Stored(s))) => self.answered(s.uplink_index, None),
            Ok(Some(downlink::Msg::Started(s))) => event(&format!(
                "relay-chat-started peer={}",
                hex::encode(&s.peer_identity)
            )),
            Ok(Some(other)) => eprintln!("error: unexpected message from the node: {other:?}"),
            Ok(None) => self.lost("the node closed the stream"),
            Err(status) => self.lost(&describe_end(&status)),
        }
        false
    }

    /// Sends `text`, or holds it (in order) while the resumed chat waits for its fresh epoch.
    fn send_line(&mut self, now: sealwire::time::Instant, text: &str) -> Result<(), ChatError> {
        if self.held.is_empty() {
            match self.chat.send(now, text.as_bytes()) {
                Err(ChatError::AwaitingRekey) => {}
                other => return other.map(|_| ()),
            }
        }
        if self.held.len() >= HELD_CAPACITY {
            return Err(ChatError::Capacity);
        }
        self.held.push_back(Zeroizing::new(text.to_owned()));
        event(&format!(
            "held lines={} reason=awaiting-fresh-epoch",
            self.held.len()
        ));
        Ok(())
    }

    /// Sends the held lines, in order, once the chat may send; each is sealed and flushed
    /// before the next (so the counter lease never runs out).
    async fn release_held(&mut self) -> Result<(), BoxError> {
        while let Some(line) = self.held.front() {
            if self.chat.is_closed() || self.chat.is_awaiting_rekey() {
                return Ok(());
            }
            match self.chat.send(self.clock.now(), line.as_bytes()) {
                Err(ChatError::AwaitingRekey) => return Ok(()),
                Err(e) => eprintln!("error: a held line was not sent: {e}"),
                Ok(_) => {}
            }
            self.held.pop_front();
            self.flush().await?;
        }
        Ok(())
    }

    /// Runs until end of input, `/quit`, or the chat closes; then lets queued frames reach the
    /// node before returning.
    async fn run(mut self) -> Result<(), BoxError> {
        let result = self.pump().await;
        // Show what still waits behind a gap.
        let later = std::time::Instant::now() + REORDER_HOLD;
        if !self.reorder.expire(later).is_empty() {
            // Not handed to the machine, so not kept: the node delivers them again next time.
            event("frames-after-a-gap left for the next start");
        }
        if !self.outbox.is_empty() {
            let kept = match &self.persist {
                Some(p) if !self.chat.is_closed() => format!(
                    "kept in {}, sent on the next start",
                    outbox_path(&p.path).display()
                ),
                _ => "not delivered".into(),
            };
            eprintln!(
                "error: {} message(s) not stored by any node within {} s ({kept})",
                self.outbox.len(),
                DRAIN_TIMEOUT.as_secs()
            );
        }
        self.save_outbox()?;
        if !self.held.is_empty() {
            eprintln!(
                "error: {} held line(s) not sent: the resumed chat's fresh epoch did not come up",
                self.held.len()
            );
        }
        if let Some(relay) = self.relay.take() {
            relay.finish(Duration::from_secs(2)).await;
        }
        result
    }

    async fn pump(&mut self) -> Result<(), BoxError> {
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        self.flush().await?;
        // Set at the end of input (or `/quit`, or a close): from then on the app only waits,
        // until this deadline, for the nodes to store what the outbox keeps.
        let mut draining: Option<tokio::time::Instant> = None;
        loop {
            // Let the connection's own task run between inputs: on this single-threaded
            // runtime, buffered input lines are ready without ever yielding, and a burst of
            // them (each sealed to disk) would otherwise hold back the frames already handed to
            // the stream, for seconds.
            tokio::task::yield_now().await;
            if self.chat.is_closed() && draining.is_none() {
                draining = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
            }
            if let Some(until) = draining {
                if self.outbox.is_empty() || tokio::time::Instant::now() >= until {
                    return Ok(());
                }
            }
            let reading = draining.is_none() && !self.outbox.is_full();
            let drain_until = draining.unwrap_or_else(tokio::time::Instant::now);
            let resend_at = self.resend_at;
            let reorder_at = self.reorder.deadline().map(tokio::time::Instant::from_std);
            let answer_due = self.answer_due;
            let deadline = self.chat.poll_timeout().map(|t| self.clock.to_std(t));
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            let retry_at = self.retry_at;
            let offline = self.relay.is_none();
            let relay = async {
                match self.relay.as_mut() {
                    Some(r) => r.next().await,
                    None => std::future::pending().await,
                }
            };
            // Whether the chat machine took an input (then its state is sealed again); a node's
            // answer to a frame only moves the outbox.
            let mut touched = true;
            tokio::select! {
                line = stdin.next_line(), if reading => match line? {
                    None => draining = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT),
                    Some(line) => {
                        let now = self.clock.now();
                        let result = match line.trim_end() {
                            "/rekey" => self.chat.rekey(now),
                            "/close" => self.chat.close(),
                            "/quit" => {
                                draining = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                                Ok(())
                            }
                            text => self.send_line(now, text),
                        };
                        if let Err(e) = result {
                            eprintln!("error: {e}");
                        }
                    }
                },
                msg = relay => {
                    touched = self.on_downlink(msg);
                    // Take what else has arrived before sealing once for all of it.
                    for _ in 0..DOWNLINK_BATCH {
                        let Some(r) = self.relay.as_mut() else { break };
                        match tokio::time::timeout(Duration::ZERO, r.next()).await {
                            Ok(msg) => touched |= self.on_downlink(msg),
                            Err(_) => break,
                        }
                    }
                }
                () = tokio::time::sleep_until(retry_at), if offline => self.reconnect().await,
                () = tokio::time::sleep_until(resend_at.unwrap_or(retry_at)), if resend_at.is_some() => {
                    touched = false;
                    self.resend_at = None;
                }
                () = tokio::time::sleep_until(drain_until), if draining.is_some() => {}
                () = tokio::time::sleep_until(answer_due.unwrap_or(retry_at)), if answer_due.is_some() && !offline => {
                    touched = false;
                    let index = self.outbox.oldest_in_flight().unwrap_or_default();
                    let at = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis();
                    self.lost(&format!(
                        "no answer from the node within {} s to uplink #{index} (unix ms {at})",
                        ANSWER_TIMEOUT.as_secs()
                    ));
                }
                () = tokio::time::sleep_until(reorder_at.unwrap_or(retry_at)), if reorder_at.is_some() => {
                    for (_, frame) in self.reorder.expire(std::time::Instant::now()) {
                        self.open(&frame);
                    }
                }
                () = sleep => self.chat.handle_timeout(self.clock.now()),
            }
            if touched {
                self.flush().await?;
                self.send_ack().await;
                self.release_held().await?;
            } else {
                self.send_outbox().await;
            }
        }
    }
}

async fn start(args: Args) -> Result<(), BoxError> {
    let seed = load_identity(&args.identity)?;
    let identity = IdentityKey::from_seed(*seed);
    if args.show_identity {
        println!("{}", hex::encode(identity.public().as_bytes()));
        return Ok(());
    }
    let chat_id = args.chat.ok_or("--chat is required")?;
    let pin = match args.peer_identity {
        Some(p) => Some(IdentityPublic::from_bytes(p).ok_or("--peer-identity is not a key")?),
        None => None,
    };
    let mut config = ChatConfig::new(ChatId::new(chat_id));
    config.pinned_peer = pin;
    let chat_identity = || IdentityKey::from_seed(*seed);
    let clock = Clock::new();
    let mut rng: Rng = UnwrapErr(getrandom::SysRng);

    let mut persist = None;
    let mut resumed = None;
    let mut outbox = Outbox::new(OUTBOX_LIMIT, OUTBOX_WINDOW).keeping(OUTBOX_KEEP, is_message);
    if let Some(path) = &args.state {
        let lock = lock_state(path)?;
        let passphrase = passphrase(args.passphrase_file.as_deref())?;
        if path.exists() {
            let record = std::fs::read(path)?;
            let chat = Chat::unseal(
                clock.now(),
                WallTime::now(),
                chat_identity(),
                config.clone(),
                &record,
                UnsealWith::Passphrase(passphrase.as_bytes()),
                None,
                UnwrapErr(getrandom::SysRng),
            )
            .map_err(|e| format!("cannot resume from {}: {e}", path.display()))?;
            resumed = Some(chat);
            let kept = outbox_path(path);
            if kept.exists() {
                let record = std::fs::read(&kept)?;
                let with = UnsealWith::Passphrase(passphrase.as_bytes());
                let opened =
                    sealwire::seal::unseal(with, OUTBOX_MAGIC, &record, &KdfLimits::default())
                        .map_err(|e| format!("cannot open {}: {e}", kept.display()))?;
                if opened.context != chat_id {
                    return Err(format!("{} belongs to another chat", kept.display()).into());
                }
                let max_frame = sealwire::chat::data_frame_len(config.max_message_len);
                outbox = Outbox::decode(
                    &opened.plaintext,
                    OUTBOX_LIMIT,
                    OUTBOX_WINDOW,
                    max_frame,
                    1 << 16,
                )
                .map_err(|e| format!("cannot read {}: {e}", kept.display()))?
                .keeping(OUTBOX_KEEP, is_message);
                event(&format!("outbox-restored frames={}", outbox.len()));
            }
        }
        let key = SealKey::from_passphrase(passphrase.as_bytes(), args.kdf, &mut rng)
            .map_err(|e| format!("cannot derive the sealing key: {e}"))?;
        persist = Some(Persist {
            path: path.clone(),
            key,
            _lock: lock,
        });
    }

    let ca = match &args.ca {
        Some(path) => Some(
            std::fs::read(path).map_err(|e| format!("cannot read --ca {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let mut link = Link {
        nodes: args.nodes,
        current: 0,
        ca,
        identity,
        name: args.name,
        chat_id,
        pin: args.peer_identity,
    };
    // The first connection must work (a wrong address should fail fast); later losses are
    // retried with backoff while the chat keeps its state.
    let (relay, queued) = link.connect_from(0).await?;
    event(&format!("registered node={} queued={queued}", link.node()));

    let chat = match resumed {
        Some(chat) => {
            event(&format!(
                "resumed epoch={} peer={}",
                chat.epoch().unwrap_or(0),
                chat.peer_identity()
                    .map(|p| hex::encode(p.as_bytes()))
                    .unwrap_or_default()
            ));
            chat
        }
        None => match args.initiator {
            Some(true) => Chat::initiator(clock.now(), chat_identity(), config, rng)?,
            Some(false) => Chat::responder(chat_identity(), config, rng)?,
            None => return Err("--initiator or --responder is required".into()),
        },
    };
    App {
        chat,
        clock,
        link,
        relay: Some(relay),
        outbox,
        resend_at: None,
        answer_due: None,
        reorder: Reorder::new(REORDER_HOLD),
        received: 0,
        acked: 0,
        held: VecDeque::new(),
        retry_at: tokio::time::Instant::now(),
        backoff: RETRY_MIN,
        stale_handshakes: 0,
        persist,
        peer_label: args.peer_name,
    }
    .run()
    .await
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = args_or_exit(parse_args(), HELP);
    let code = match start(args).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    // Exit now: tokio's stdin reader is a blocking thread that would hold the runtime's shutdown
    // until another line arrives.
    std::process::exit(code);
}
