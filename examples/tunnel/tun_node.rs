//! `tun_node --config FILE --interface NAME [--replace] [--workers N] [--no-offload]`: a
//! WireGuard-compatible node on a Linux TUN.
//!
//! A thin pump around [`sealwire::tunnel::Device`]; no protocol logic lives here.
//!
//! * Reads the wg-quick style FILE ([`sealwire::tunnel::wg_quick`]) into memory that is wiped
//!   when dropped (its keys stay in the library's wiped types); a bad file prints the line and
//!   the problem, never any text of the file, and exits with status 2. Endpoints given as DNS
//!   names are resolved once, at start; the library turns the file into the device.
//! * Creates the TUN NAME in the current network namespace, sets the MTU (1420 unless `MTU`
//!   says otherwise), assigns every `Address` and brings the link up with `ip(8)` (the host
//!   plumbing is in this package's library, [`tunnel_examples`]). It never deletes a link it
//!   did not create: an existing NAME is deleted only when it is an unused plain TUN device,
//!   what a killed instance or a crashed setup leaves (so a restart after `kill -9` comes
//!   back cleanly); a bridge, a kernel WireGuard link, a TUN another process holds or anything
//!   else makes it exit with status 1 and a message naming the link, unless `--replace`.
//! * Binds unconnected UDP sockets (one per worker, sharing the port with `SO_REUSEPORT`) on
//!   all local addresses at `ListenPort` (`[::]`, dual-stack, or `0.0.0.0` when IPv6 is
//!   unavailable), so it keeps working when the host's own addresses change.
//! * Pumps on worker threads (`--workers N`; by default one per two CPUs, 1 to 4) sharing the
//!   device behind a mutex held only for the device's bookkeeping, never for the encryption
//!   or a syscall. Each worker has a TUN queue (`IFF_MULTI_QUEUE`: the kernel keeps each flow on
//!   one queue, so a flow's packets stay in order) and a UDP socket of the listen port
//!   (`SO_REUSEPORT`: the kernel keeps each peer on one socket), and two threads:
//!   - TUN ⇒ UDP: the queue is opened with virtio-net headers and TSO/GRO offloads
//!     (`IFF_VNET_HDR`, `TUNSETOFFLOAD`, through `tun-rs`), so a read gets one of the
//!     kernel's TCP super-packets (up to 64 KiB), split into MTU-sized packets (wireguard-go's
//!     scheme). The thread takes everything the (non-blocking) queue holds, up to 128
//!     packets; under the lock `encapsulate_batch_unsealed` routes them, copies them into
//!     runs of equal-size datagrams per peer and takes their counters in order (about 3 µs
//!     for 64 packets); after it, the returned `SealJob`s encrypt, and each run goes out
//!     with one `sendmsg` using UDP GSO (`UDP_SEGMENT`).
//!   - UDP ⇒ TUN: `recvmmsg` with UDP GRO (several datagrams per buffer); under the lock
//!     `decapsulate_begin` checks each datagram (handshake messages are handled whole
//!     there), after it `Opening::open` decrypts in place, then under the lock again
//!     `decapsulate_finish` accepts the packets (replay window, AllowedIPs, roaming,
//!     timers); they are written to the TUN together, TCP segments of one flow coalesced
//!     into one super-packet per write, and replies are sent.
//!
//!   Batches of one peer sealed by two workers may reach the wire out of counter order (by
//!   at most a batch); every WireGuard receiver's replay window (2,048 to 8,192 counters)
//!   takes that. GSO, GRO and batched receive come from `quinn-udp`, which falls back to one
//!   datagram per `sendmsg` / per buffer where the kernel lacks them; without TUN offloads it
//!   is one packet per TUN read and write; without multi-queue TUN or `SO_REUSEPORT`, fewer
//!   workers. What was chosen is logged at start (`UDP send: ...; TUN offload: ...` and
//!   `workers: ...`). A timer thread sleeps on a condition variable until `poll_timeout`
//!   (woken when an operation moves it earlier) ⇒ `handle_timeout`. After each step the
//!   queued `poll_transmit` datagrams and `poll_event` events are taken under the lock and
//!   sent/logged after it. Buffers are allocated once per thread: up to about 13 MiB per
//!   worker, most of it 4 MiB of UDP receive buffers and 128 TUN write buffers with room for a
//!   64 KiB super-packet each (tun-rs coalesces a flow's segments only within a buffer's
//!   capacity); one worker measured 15 MB resident after bulk transfers. Each UDP socket asks
//!   for 4 MiB of kernel buffers each way. (Measured figures: see the README.)
//! * Logs handshakes and roaming. The main thread waits for SIGTERM or Ctrl-C, then exits;
//!   the kernel closes the TUN and removes the link.
//!
//! Randomness is the OS generator; TAI64N timestamps come from the system clock. Log level
//! from `RUST_LOG` (default `info`).

use std::io::IoSliceMut;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use quinn_udp::{RecvMeta, UdpSocketState, BATCH_SIZE};
use rustix::event::{PollFd, PollFlags};
use tun_rs::{GROTable, VIRTIO_NET_HDR_LEN};

use rand_core::UnwrapErr;
use sealwire::time::{Clock, Instant, WallTime};
use sealwire::tunnel::wg_quick::WgQuick;
use sealwire::tunnel::{
    Action, Begun, Device, DeviceError, DeviceEvent, Opened, Opening, SealJob, Transmit,
    DATA_HEADER_LEN, DATA_OVERHEAD,
};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{debug, info, warn};
use tunnel_examples::{bind_udp, create_tun, read_secret_file, wire_addr};

/// One receive buffer: a datagram, or with GRO several (the kernel stops coalescing at 64
/// datagrams or 64 KiB; twice that leaves room should a kernel coalesce more).
const GRO_BUF_LEN: usize = 128 * 1024;
/// The largest IP packet a TUN read can return.
const MAX_PACKET: usize = 65_535;
/// TUN packets read (and sealed) per round at most.
const TUN_BURST: usize = 128;
/// Packets handed to tun-rs per TUN write call (coalesced into fewer writes with offloads).
const TUN_WRITE_BATCH: usize = 128;
/// Buffers a TUN read may need: one TCP super-packet (64 KiB) split into MTU-sized packets.
const MAX_SPLIT: usize = 64;
/// Packet workers at most (`--workers`).
const MAX_WORKERS: usize = 16;
/// Packet workers by default at most (one per two CPUs up to this).
const DEFAULT_WORKERS: usize = 4;
/// Bytes of one GSO send at most: what IPv4 allows in one UDP datagram (65,507), rounded down.
const GSO_MAX_BYTES: usize = 65_000;

type Rng = UnwrapErr<getrandom::SysRng>;

const HELP: &str = "\
tun_node — a WireGuard-compatible node on a Linux TUN device (sealwire example)

USAGE:
    tun_node --config FILE --interface NAME [--replace] [--workers N] [--no-offload]

OPTIONS:
    --config FILE        a wg-quick style file (also the output of `wg showconf`):
                           [Interface] PrivateKey, ListenPort, Address, MTU
                           [Peer]      PublicKey, PresharedKey, AllowedIPs, Endpoint,
                                       PersistentKeepalive
                         DNS, Table, Pre/PostUp, Pre/PostDown, SaveConfig and FwMark are
                         accepted and ignored (a warning names each); any other key, or a bad
                         value, is an error that names its line
    --interface NAME     the TUN link to create (1 to 15 characters, no '/' or spaces). A
                         link of that name is deleted first only if it is an unused plain
                         TUN device (a leftover of a killed tun_node or a crashed setup);
                         any other link (a bridge, a kernel WireGuard link, a TUN another
                         program holds, ...) is left alone and tun_node exits with status 1
    --replace            delete an existing link named NAME whatever it is, then create the
                         TUN (for a link you know is yours to replace)
    --workers N          packet workers, 1 to 16 (default: one per two CPUs, 1 to 4). Each
                         has a TUN queue (the kernel keeps a flow on one queue) and a UDP
                         socket of the listen port (SO_REUSEPORT: the kernel keeps a peer on
                         one socket), and encrypts without holding the shared device
    --no-offload         open the TUN without virtio-net headers and TSO/GRO offloads: one
                         packet per TUN read and write (slower; for a kernel or setup where
                         the offloads misbehave). Without this flag the offloads are asked
                         for and tun_node falls back to this by itself where the kernel
                         refuses them
    -h, --help           print this help

Needs CAP_NET_ADMIN (root) and `ip` from iproute2. Sets the MTU (1420 unless MTU says
otherwise), every Address, brings the link up and listens on ListenPort (random if absent)
on all local addresses. Stops on SIGTERM or Ctrl-C; the link goes away with the process.

ENVIRONMENT:
    RUST_LOG             log filter (default info); logs go to stderr

EXIT STATUS:
    0 after SIGTERM/Ctrl-C; 1 on a runtime failure (TUN, socket, `ip`, or NAME taken by a
    link tun_node did not create); 2 on bad usage or a bad config file.
";

fn usage() -> ExitCode {
    eprintln!(
        "usage: tun_node --config FILE --interface NAME [--replace] [--workers N] [--no-offload]   (tun_node --help for more)"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let mut config_path = None;
    let mut ifname = None;
    let mut replace = false;
    let mut workers = None;
    let mut offload = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config_path = args.next(),
            "--interface" => ifname = args.next(),
            "--replace" => replace = true,
            "--no-offload" => offload = false,
            "--workers" => match args.next().and_then(|n| n.parse::<usize>().ok()) {
                Some(n @ 1..=MAX_WORKERS) => workers = Some(n),
                _ => {
                    eprintln!("tun_node: --workers takes a number from 1 to {MAX_WORKERS}");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                print!("{HELP}");
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        }
    }
    let (Some(config_path), Some(ifname)) = (config_path, ifname) else {
        return usage();
    };
    if ifname.is_empty() || ifname.len() > 15 || ifname.contains(['/', ' ', '\0']) {
        eprintln!("tun_node: interface name must be 1 to 15 characters without '/' or spaces");
        return ExitCode::from(2);
    }

    // The text holds the private key and PSKs: it lives in a wiped buffer, sized once.
    let text = match read_secret_file(std::path::Path::new(&config_path)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tun_node: {e}");
            return ExitCode::from(2);
        }
    };
    // Parse errors name a line and a key, never text from the file.
    let parsed = WgQuick::parse(&text);
    drop(text);
    let mut file = match parsed {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tun_node: {config_path}: {e}");
            return ExitCode::from(2);
        }
    };
    for k in &file.ignored {
        warn!(
            "{config_path}: line {}: {} is ignored by tun_node",
            k.line, k.key
        );
    }
    // Names are resolved once, at start (a runtime failure, like the TUN or the socket).
    let resolve = |host: &str, port| -> Result<SocketAddr, String> {
        let mut addrs = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("resolve {host}: {e}"))?;
        addrs.next().ok_or(format!("resolve {host}: no address"))
    };
    if let Err(e) = file.resolve_endpoints(resolve) {
        eprintln!("tun_node: {e}");
        return ExitCode::FAILURE;
    }

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tun_node: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // By default one worker per two CPUs (a worker is two threads, one each way), at least
    // one and at most DEFAULT_WORKERS (each has up to about 13 MiB of buffers).
    let workers = workers.unwrap_or_else(|| {
        (std::thread::available_parallelism().map_or(1, |n| n.get()) / 2).clamp(1, DEFAULT_WORKERS)
    });
    match runtime.block_on(run(file, ifname, replace, workers, offload)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tun_node: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the worker threads share. The device sits behind a mutex held only for the
/// device's bookkeeping (routing, counters, replay windows, timers, queue drains): the
/// encryption and every syscall happen outside it.
struct Shared {
    core: Mutex<Core>,
    /// Wakes the timer thread when an operation moved the next deadline earlier.
    timer: Condvar,
    clock: Clock,
    /// The UDP sockets of the listen port (`SO_REUSEPORT`: the kernel keeps each peer on
    /// one), one per worker where the kernel allows.
    ports: Vec<Port>,
    udp_v6: bool,
    /// The TUN queues (tun-rs; offloads on where the kernel allows them): the kernel keeps
    /// each flow on one queue. Reads and writes take `&self`.
    tuns: Vec<tun_rs::SyncDevice>,
    /// Bytes of one packet buffer: the link's MTU and room for headers.
    packet_buf: usize,
    /// Whether the TUN has virtio-net headers and TSO/GRO offloads.
    tun_offload: bool,
    /// Set once a GSO send failed and quinn-udp fell back to one datagram per send.
    gso_failed: AtomicBool,
    /// A worker that cannot go on reports here; `run` then exits with failure.
    fatal: tokio::sync::mpsc::UnboundedSender<String>,
}

/// One UDP socket and quinn-udp's view of it (which made it non-blocking): GSO and GRO as
/// the kernel offers them.
struct Port {
    udp: UdpSocket,
    state: UdpSocketState,
}

struct Core {
    device: Device<Rng>,
    /// The deadline the timer thread sleeps until (`None`: it waits for a notification).
    timer_at: Option<Instant>,
}

/// Per-thread scratch: what the device queued, moved out under the lock, handled after it.
#[derive(Default)]
struct Pending {
    transmits: Vec<Transmit>,
    events: Vec<DeviceEvent>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The socket worker `i` sends and receives on, and the TUN queue it reads and writes.
    /// (Both lists hold at least one: `run` makes them so.)
    fn port(&self, i: usize) -> &Port {
        &self.ports[i % self.ports.len()]
    }

    fn tun(&self, i: usize) -> &tun_rs::SyncDevice {
        &self.tuns[i % self.tuns.len()]
    }

    /// With the lock held after an operation: moves queued datagrams and events to `pending`
    /// and wakes the timer thread if the next deadline is now earlier than its sleep.
    fn collect(&self, core: &mut Core, pending: &mut Pending) {
        while let Some(t) = core.device.poll_transmit() {
            pending.transmits.push(t);
        }
        while let Some(e) = core.device.poll_event() {
            pending.events.push(e);
        }
        if let Some(next) = core.device.poll_timeout() {
            if core.timer_at.is_none_or(|t| next < t) {
                core.timer_at = Some(next);
                self.timer.notify_one();
            }
        }
    }

    /// Without the lock: sends (on `port`) and logs what [`collect`](Self::collect) gathered.
    fn flush(&self, port: &Port, pending: &mut Pending) {
        for t in pending.transmits.drain(..) {
            self.send(port, t.to, &t.payload);
        }
        for e in pending.events.drain(..) {
            log_event(e);
        }
    }

    fn send(&self, port: &Port, to: SocketAddr, bytes: &[u8]) {
        self.send_segments(port, to, bytes, bytes.len());
    }

    /// Sends `bytes` to `to` as datagrams of `segment` bytes (the last possibly shorter): one
    /// GSO `sendmsg` when there are several. Waits while the socket buffer is full.
    fn send_segments(&self, port: &Port, to: SocketAddr, bytes: &[u8], segment: usize) {
        let gso = bytes.len() > segment;
        let transmit = quinn_udp::Transmit {
            destination: wire_addr(to, self.udp_v6),
            ecn: None,
            contents: bytes,
            segment_size: gso.then_some(segment),
            src_ip: None,
        };
        loop {
            match port.state.send((&port.udp).into(), &transmit) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    wait_udp(port, PollFlags::OUT)
                }
                Err(e) => {
                    debug!("send to {to}: {e}");
                    return;
                }
            }
        }
        // quinn-udp turns GSO off for good when the kernel refuses a segmented send (and
        // drops that send): say so once, and send those datagrams one by one.
        if gso && port.state.max_gso_segments() == 1 {
            if !self.gso_failed.swap(true, Relaxed) {
                warn!("UDP GSO failed; sending one datagram per sendmsg from now on");
            }
            for d in bytes.chunks(segment.max(1)) {
                self.send(port, to, d);
            }
        }
    }
}

/// Blocks until the UDP socket is ready for `flags` (it is non-blocking).
fn wait_udp(port: &Port, flags: PollFlags) {
    let mut fds = [PollFd::new(&port.udp, flags)];
    if let Err(e) = rustix::event::poll(&mut fds, None) {
        debug!("poll: {e}");
    }
}

fn log_event(event: DeviceEvent) {
    match event {
        DeviceEvent::HandshakeCompleted {
            peer,
            endpoint,
            initiator,
        } => {
            let role = if initiator { "initiator" } else { "responder" };
            info!(
                "handshake completed with peer {} at {endpoint} (we were {role})",
                peer.to_base64()
            );
        }
        DeviceEvent::EndpointChanged { peer, endpoint } => {
            info!("peer {} roamed to {endpoint}", peer.to_base64());
        }
        DeviceEvent::HandshakeGaveUp { peer } => {
            warn!(
                "no handshake response from peer {}; staged packets dropped",
                peer.to_base64()
            );
        }
        DeviceEvent::KeysWiped { peer } => info!("session keys of peer {} wiped", peer.to_base64()),
        other => info!("{other:?}"),
    }
}

/// One UDP send prepared under the lock: `out[start..start + len]` to `to`, in datagrams of
/// `segment` bytes (the last possibly shorter).
struct UdpSend {
    to: SocketAddr,
    start: usize,
    len: usize,
    segment: usize,
}

/// TUN queue `i` ⇒ `encapsulate_batch_unsealed` ⇒ seal ⇒ UDP (GSO). Reads what the queue has
/// ready: with offloads (virtio-net headers) one read is a whole TCP super-packet of up to
/// 64 KiB, which tun-rs splits into MTU-sized packets; without, one packet. It reads until
/// fewer than [`MAX_SPLIT`] of its [`TUN_BURST`] buffers are free (the fd is non-blocking;
/// the thread waits for readiness only when the queue is empty), prepares the run under the
/// lock into runs of equal-size datagrams per peer (counters taken in order), seals them
/// after letting the lock go, and sends each run with one `sendmsg` (UDP_SEGMENT), or
/// datagram by datagram without GSO.
fn tun_to_udp(sh: &Shared, i: usize) {
    let fail = |e: String| {
        let _ = sh.fatal.send(e);
    };
    let (tun, port) = (sh.tun(i), sh.port(i));
    let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + MAX_PACKET];
    let mut bufs: Vec<Vec<u8>> = (0..TUN_BURST).map(|_| vec![0u8; sh.packet_buf]).collect();
    let mut sizes = [0usize; TUN_BURST];
    let mut out = vec![0u8; TUN_BURST * (sh.packet_buf + DATA_OVERHEAD + 16)];
    let mut sends: Vec<UdpSend> = Vec::with_capacity(TUN_BURST);
    let mut jobs: Vec<(usize, SealJob)> = Vec::with_capacity(TUN_BURST);
    let mut pending = Pending::default();
    loop {
        // Every packet the queue holds now, then wait for more only when it had none.
        let mut count = 0;
        while count + MAX_SPLIT <= TUN_BURST {
            let (Some(free), Some(free_sizes)) = (bufs.get_mut(count..), sizes.get_mut(count..))
            else {
                break;
            };
            match tun.recv_multiple(&mut original, free, free_sizes, 0) {
                Ok(n) => count += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // The kernel's own errors end the tunnel; a super-packet tun-rs cannot split
                // is dropped.
                Err(e) if e.raw_os_error().is_some() => return fail(format!("TUN read: {e}")),
                Err(e) => debug!("TUN packet dropped: {e}"),
            }
        }
        if count == 0 {
            let mut fds = [PollFd::new(tun, PollFlags::IN)];
            if let Err(e) = rustix::event::poll(&mut fds, None) {
                debug!("poll: {e}");
            }
            continue;
        }
        let run: Vec<&[u8]> = bufs
            .iter()
            .zip(sizes)
            .take(count)
            .map(|(b, n)| b.get(..n).unwrap_or_default())
            .collect();
        sends.clear();
        {
            let mut core = sh.lock();
            let now = sh.clock.now();
            let max_segments = port.state.max_gso_segments().clamp(1, 64);
            let (mut i, mut off) = (0, 0);
            while i < count {
                let batch_end = (i + max_segments).min(count);
                let room = out.len().saturating_sub(off).min(GSO_MAX_BYTES);
                let (Some(batch), Some(buf)) =
                    (run.get(i..batch_end), out.get_mut(off..off + room))
                else {
                    break;
                };
                match core.device.encapsulate_batch_unsealed(now, batch, buf) {
                    Ok((b, job)) => {
                        i += b.consumed.max(1);
                        if let Some(job) = job {
                            jobs.push((off, job));
                        }
                        if let Action::WriteToNetwork { to, len } = b.action {
                            sends.push(UdpSend {
                                to,
                                start: off,
                                len,
                                segment: b.segment_size,
                            });
                            off += len;
                        }
                    }
                    Err(e) => {
                        i += 1;
                        match e {
                            DeviceError::Dropped(reason) => {
                                debug!("outbound packet dropped: {reason}")
                            }
                            e => debug!("outbound packet: {e}"),
                        }
                    }
                }
            }
            sh.collect(&mut core, &mut pending);
        }
        // The encryption, without the lock. A job that cannot seal (not reached: each has
        // the buffer it was made for) leaves its datagrams unsent.
        let mut unsealed = Vec::new();
        for (start, job) in jobs.drain(..) {
            if let Err(e) = out.get_mut(start..).map_or(Ok(()), |b| job.seal(b)) {
                debug!("seal: {e}");
                unsealed.push(start);
            }
        }
        for s in sends.iter().filter(|s| !unsealed.contains(&s.start)) {
            if let Some(bytes) = out.get(s.start..s.start + s.len) {
                sh.send_segments(port, s.to, bytes, s.segment);
            }
        }
        sh.flush(port, &mut pending);
    }
}

/// Where one received datagram lies: buffer `k`, bytes `start..start + len`, from `src`.
#[derive(Clone, Copy)]
struct Datagram {
    k: usize,
    start: usize,
    len: usize,
    src: SocketAddr,
}

/// UDP socket `i` (recvmmsg, GRO) ⇒ check ⇒ open ⇒ accept ⇒ TUN queue `i` (or a reply
/// over UDP). Each receive fills up to [`quinn_udp::BATCH_SIZE`] buffers, each holding one
/// datagram or, with GRO, several of one stride. Every datagram is checked under the lock
/// (`decapsulate_begin`: handshake messages are handled there), decrypted in place after it
/// (`Opening::open`), and accepted under the lock again (`decapsulate_finish`); the packets
/// are then written to the TUN together: with offloads tun-rs coalesces TCP segments of one
/// flow into super-packets (GRO), one write each; without, one write per packet.
fn udp_to_tun(sh: &Shared, i: usize) {
    let (tun, port) = (sh.tun(i), sh.port(i));
    let mut bufs: [Vec<u8>; BATCH_SIZE] = std::array::from_fn(|_| vec![0u8; GRO_BUF_LEN]);
    let mut metas = [RecvMeta::default(); BATCH_SIZE];
    // Plaintext packets for the TUN (buffer, start, len); replies (buffer, start, len, to).
    let mut writes: Vec<(usize, usize, usize)> = Vec::with_capacity(BATCH_SIZE * 64);
    let mut replies: Vec<(usize, usize, usize, SocketAddr)> = Vec::new();
    let mut openings: Vec<(Datagram, Opening)> = Vec::with_capacity(BATCH_SIZE * 64);
    let mut opened: Vec<(Datagram, Opened)> = Vec::with_capacity(BATCH_SIZE * 64);
    // Packets for the TUN, each behind room for a virtio-net header, and tun-rs's table of
    // flows to coalesce (both reused). With offloads tun-rs appends a flow's segments to the
    // buffer of its first one, but only within the buffer's capacity (it never reallocates):
    // each buffer gets room for a whole 64 KiB super-packet, as wireguard-go's do.
    let capacity = if sh.tun_offload {
        2 * VIRTIO_NET_HDR_LEN + usize::from(u16::MAX)
    } else {
        VIRTIO_NET_HDR_LEN + sh.packet_buf
    };
    let mut tun_out: Vec<Vec<u8>> = (0..TUN_WRITE_BATCH)
        .map(|_| Vec::with_capacity(capacity))
        .collect();
    let mut gro = GROTable::default();
    let mut pending = Pending::default();
    let log_drop = |src: SocketAddr, e: DeviceError| match e {
        DeviceError::Dropped(reason) => debug!("datagram from {src} dropped: {reason}"),
        e => debug!("datagram from {src}: {e}"),
    };
    loop {
        let n = {
            let mut iovs = bufs.each_mut().map(|b| IoSliceMut::new(b));
            match port.state.recv((&port.udp).into(), &mut iovs, &mut metas) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    wait_udp(port, PollFlags::IN);
                    continue;
                }
                // ICMP errors and interruptions surface here; keep going.
                Err(e) => {
                    debug!("UDP receive: {e}");
                    continue;
                }
            }
        };
        writes.clear();
        replies.clear();
        {
            let mut core = sh.lock();
            let now = sh.clock.now();
            for (k, (meta, buf)) in metas.iter().zip(bufs.iter_mut()).enumerate().take(n) {
                // Report v4 peers as v4 even though they arrived on the dual-stack socket.
                let src = SocketAddr::new(meta.addr.ip().to_canonical(), meta.addr.port());
                let Some(received) = buf.get_mut(..meta.len) else {
                    continue;
                };
                let stride = if meta.stride == 0 {
                    meta.len
                } else {
                    meta.stride
                };
                for (j, segment) in received.chunks_mut(stride.max(1)).enumerate() {
                    let d = Datagram {
                        k,
                        start: j * stride,
                        len: segment.len(),
                        src,
                    };
                    match core.device.decapsulate_begin(now, src, segment, d.len) {
                        Ok(Begun::Open(o)) => openings.push((d, o)),
                        Ok(Begun::Done(Action::WriteToNetwork { to, len })) => {
                            replies.push((k, d.start, len, to))
                        }
                        Ok(_) => {}
                        Err(e) => log_drop(src, e),
                    }
                }
            }
            sh.collect(&mut core, &mut pending);
        }
        // The decryption, without the lock.
        for (d, o) in openings.drain(..) {
            if let Some(segment) = bufs.get_mut(d.k).and_then(|b| b.get_mut(d.start..)) {
                opened.push((d, o.open(segment)));
            }
        }
        if !opened.is_empty() {
            let mut core = sh.lock();
            let now = sh.clock.now();
            for (d, o) in opened.drain(..) {
                let Some(segment) = bufs.get(d.k).and_then(|b| b.get(d.start..)) else {
                    continue;
                };
                match core.device.decapsulate_finish(now, d.src, o, segment) {
                    // The packet sits behind the 16-byte data header, where it was decrypted.
                    Ok(Action::WriteToTunnel { len, .. }) => {
                        writes.push((d.k, d.start + DATA_HEADER_LEN, len))
                    }
                    Ok(_) => {}
                    Err(e) => log_drop(d.src, e),
                }
            }
            sh.collect(&mut core, &mut pending);
        }
        for chunk in writes.chunks(TUN_WRITE_BATCH) {
            let mut count = 0;
            for &(k, start, len) in chunk {
                let bytes = bufs.get(k).and_then(|b| b.get(start..start + len));
                if let (Some(bytes), Some(b)) = (bytes, tun_out.get_mut(count)) {
                    b.clear();
                    b.resize(VIRTIO_NET_HDR_LEN, 0);
                    b.extend_from_slice(bytes);
                    count += 1;
                }
            }
            if let Some(packets) = tun_out.get_mut(..count).filter(|p| !p.is_empty()) {
                if let Err(e) = tun.send_multiple(&mut gro, packets, VIRTIO_NET_HDR_LEN) {
                    debug!("TUN write: {e}");
                }
            }
        }
        for &(k, start, len, to) in &replies {
            if let Some(bytes) = bufs.get(k).and_then(|b| b.get(start..start + len)) {
                sh.send(port, to, bytes);
            }
        }
        sh.flush(port, &mut pending);
    }
}

/// Sleeps until `poll_timeout` (or a notification that it moved earlier), then runs
/// `handle_timeout`.
fn timers(sh: &Shared) {
    let mut pending = Pending::default();
    let mut core = sh.lock();
    loop {
        let now = sh.clock.now();
        match core.device.poll_timeout() {
            Some(t) if t <= now => {
                core.device.handle_timeout(now);
                sh.collect(&mut core, &mut pending);
                drop(core);
                sh.flush(sh.port(0), &mut pending);
                core = sh.lock();
            }
            Some(t) => {
                core.timer_at = Some(t);
                let wait = sh
                    .clock
                    .to_std(t)
                    .saturating_duration_since(std::time::Instant::now());
                core = sh
                    .timer
                    .wait_timeout(core, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            None => {
                core.timer_at = None;
                core = sh.timer.wait(core).unwrap_or_else(PoisonError::into_inner);
            }
        }
    }
}

async fn run(
    file: WgQuick,
    ifname: String,
    replace: bool,
    workers: usize,
    offload: bool,
) -> Result<(), String> {
    let clock = Clock::new();
    let mut device = file
        .device(clock.now(), UnwrapErr(getrandom::SysRng))
        .map_err(|e| format!("peer configuration: {e}"))?;
    device.set_wall_clock(clock.now(), WallTime::now());
    let peer_count = file.peers.len();

    // Padding stops at the link's MTU, as in WireGuard: the device and the link share it.
    let mtu = file.device_config().mtu;
    let tun = create_tun(
        &ifname,
        mtu,
        &file.interface.addresses,
        replace,
        workers,
        offload,
    )?;
    let (sockets, udp_v6) = bind_udp(file.interface.listen_port.unwrap_or(0), workers)?;
    let local = sockets
        .first()
        .ok_or("no UDP socket")?
        .local_addr()
        .map_err(|e| e.to_string())?;
    info!(
        "{ifname} up: public key {}, UDP {local}, {} peer(s)",
        device.public_key().to_base64(),
        peer_count
    );

    // The TUN readers wait for readiness only when their queue is empty (see `tun_to_udp`).
    for q in &tun.queues {
        q.set_nonblocking(true)
            .map_err(|e| format!("TUN non-blocking: {e}"))?;
    }
    let mut ports = Vec::with_capacity(sockets.len());
    for udp in sockets {
        let state = UdpSocketState::new((&udp).into()).map_err(|e| format!("UDP socket: {e}"))?;
        ports.push(Port { udp, state });
    }
    let (gso, gro) = ports.first().map_or((1, 1), |p| {
        (p.state.max_gso_segments(), p.state.gro_segments())
    });
    info!(
        "UDP send: {}; UDP receive: {}recvmmsg of up to {BATCH_SIZE} buffers; TUN offload: {}",
        if gso > 1 {
            format!("GSO, up to {} datagrams per sendmsg", gso.min(64))
        } else {
            "one datagram per sendmsg (no GSO)".to_string()
        },
        if gro > 1 {
            format!("GRO (up to {gro} datagrams per buffer) + ")
        } else {
            "no GRO, ".to_string()
        },
        match &tun.offload {
            Ok(()) => "TSO/GRO on (virtio-net headers: reads split TCP super-packets, writes coalesce TCP segments)".to_string(),
            Err(_) if !offload => "off (--no-offload): one packet per TUN read and write".to_string(),
            Err(why) => format!("off ({why}): one packet per TUN read and write"),
        },
    );
    info!(
        "workers: {} TUN queue(s) and {} UDP socket(s) of port {} (asked for {workers}){}; \
         the device lock is held for bookkeeping only, encryption runs outside it",
        tun.queues.len(),
        ports.len(),
        local.port(),
        tun.queues_refused
            .as_ref()
            .map(|why| format!("; fewer TUN queues: {why}"))
            .unwrap_or_default(),
    );
    let (fatal, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel();
    let (tun_readers, udp_readers) = (tun.queues.len(), ports.len());
    let shared = Arc::new(Shared {
        core: Mutex::new(Core {
            device,
            timer_at: None,
        }),
        timer: Condvar::new(),
        clock,
        ports,
        udp_v6,
        tuns: tun.queues,
        packet_buf: usize::from(mtu) + 256,
        tun_offload: tun.offload.is_ok(),
        gso_failed: AtomicBool::new(false),
        fatal,
    });
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(f)
            .map(drop)
            .map_err(|e| format!("thread {name}: {e}"))
    };
    // Every TUN queue and every socket needs its reader: the kernel hashes flows (TUN) and
    // peers (UDP) onto all of them.
    for i in 0..tun_readers {
        let sh = Arc::clone(&shared);
        spawn(
            format!("tun-to-udp-{i}"),
            Box::new(move || tun_to_udp(&sh, i)),
        )?;
    }
    for i in 0..udp_readers {
        let sh = Arc::clone(&shared);
        spawn(
            format!("udp-to-tun-{i}"),
            Box::new(move || udp_to_tun(&sh, i)),
        )?;
    }
    let sh = Arc::clone(&shared);
    spawn("timers".into(), Box::new(move || timers(&sh)))?;

    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => info!("interrupted: shutting down"),
        e = fatal_rx.recv() => return Err(e.unwrap_or_default()),
    }
    // The workers are blocked in syscalls; leaving `main` ends the process, whose exit closes
    // the TUN so the kernel removes the link.
    Ok(())
}
