//! `tun_node --config FILE --interface NAME`: a WireGuard-compatible node on a Linux TUN.
//!
//! A thin tokio pump around [`sealwire::tunnel::Device`]; no protocol logic lives here.
//!
//! * Reads the wg-quick style FILE ([`sealwire::tunnel::conf`]); a bad file prints the line
//!   and the problem and exits with status 2.
//! * Creates the TUN NAME in the current network namespace (deleting a stale link of the same
//!   name first, so a restart after `kill -9` comes back cleanly), sets the MTU (1420 unless
//!   `MTU` says otherwise), assigns every `Address` and brings the link up with `ip(8)`.
//! * Binds one unconnected UDP socket on all local addresses at `ListenPort` (`[::]`,
//!   dual-stack, or `0.0.0.0` when IPv6 is unavailable), so it keeps working when the host's
//!   own addresses change.
//! * Pumps: TUN read ⇒ `encapsulate` ⇒ UDP send; UDP receive ⇒ `decapsulate` ⇒ TUN write or
//!   UDP send; sleep until `poll_timeout` ⇒ `handle_timeout`; after each step drain
//!   `poll_transmit` and `poll_event`. Logs handshakes and roaming. Stops on SIGTERM or Ctrl-C.
//!
//! Randomness is the OS generator; TAI64N timestamps come from the system clock. Log level
//! from `RUST_LOG` (default `info`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::process::{Command, ExitCode};

use rand_core::UnwrapErr;
use sealwire::crypto::x25519::{PublicKey, StaticSecret};
use sealwire::time::Clock;
use sealwire::tunnel::conf::{Config, Endpoint};
use sealwire::tunnel::{Action, Device, DeviceConfig, Error, Event, PeerConfig, WallTime};
use tokio::net::UdpSocket;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{debug, info, warn};

const DEFAULT_MTU: u16 = 1420;
/// Room for the largest IP packet plus the WireGuard data overhead and padding.
const BUF_LEN: usize = 65_535 + 64;

type Rng = UnwrapErr<getrandom::SysRng>;

fn usage() -> ExitCode {
    eprintln!("usage: tun_node --config FILE --interface NAME");
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
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config_path = args.next(),
            "--interface" => ifname = args.next(),
            "-h" | "--help" => return usage(),
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

    let text = match std::fs::read_to_string(&config_path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tun_node: {config_path}: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::parse(&text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tun_node: {config_path}: {e}");
            return ExitCode::from(2);
        }
    };
    for k in &config.ignored {
        warn!(
            "{config_path}: line {}: {} is ignored by tun_node",
            k.line, k.key
        );
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
    match runtime.block_on(run(config, ifname)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tun_node: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `ip ARGS...`, failing with its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn create_tun(config: &Config, ifname: &str) -> Result<tun::AsyncDevice, String> {
    // A link left by a killed instance (or anything else with this name) would make TUNSETIFF
    // fail or attach us to the wrong device.
    if Command::new("ip")
        .args(["link", "show", "dev", ifname])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        warn!("deleting stale interface {ifname}");
        ip(&["link", "del", "dev", ifname])?;
    }
    let mut tun_config = tun::Configuration::default();
    tun_config.tun_name(ifname);
    tun_config.platform_config(|p| {
        // Addresses, MTU and link state are set with ip(8) below.
        p.ensure_root_privileges(false);
    });
    let dev = tun::create_as_async(&tun_config).map_err(|e| format!("create TUN {ifname}: {e}"))?;
    let mtu = config.interface.mtu.unwrap_or(DEFAULT_MTU).to_string();
    ip(&["link", "set", "dev", ifname, "mtu", &mtu])?;
    for a in &config.interface.addresses {
        let cidr = a.to_string();
        match a.addr {
            IpAddr::V4(_) => ip(&["-4", "addr", "replace", &cidr, "dev", ifname])?,
            // nodad: the address is usable at once, not after duplicate detection.
            IpAddr::V6(_) => ip(&["-6", "addr", "replace", &cidr, "dev", ifname, "nodad"])?,
        }
    }
    ip(&["link", "set", "dev", ifname, "up"])?;
    Ok(dev)
}

/// One unconnected UDP socket on every local address: `[::]` with IPV6_V6ONLY off (IPv4
/// peers arrive v4-mapped), or `0.0.0.0` where IPv6 is unavailable. Returns whether it is v6.
fn bind_udp(port: u16) -> Result<(UdpSocket, bool), String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let dual_stack = || -> std::io::Result<Socket> {
        let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_only_v6(false)?;
        s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
        Ok(s)
    };
    let (socket, v6) = match dual_stack() {
        Ok(s) => (s, true),
        Err(e6) => {
            warn!("no dual-stack IPv6 socket ({e6}); using 0.0.0.0");
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
                .and_then(|s| {
                    s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
                    Ok(s)
                })
                .map_err(|e| format!("bind UDP port {port}: {e}"))?;
            (s, false)
        }
    };
    socket
        .set_nonblocking(true)
        .and_then(|()| UdpSocket::from_std(socket.into()))
        .map(|s| (s, v6))
        .map_err(|e| format!("UDP socket: {e}"))
}

fn key_b64(key: &PublicKey) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(44);
    for chunk in key.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

struct Node {
    device: Device<Rng>,
    clock: Clock,
    udp: UdpSocket,
    udp_v6: bool,
    tun: tun::AsyncDevice,
}

impl Node {
    /// The wire address for `to` on our socket: v4 destinations become v4-mapped on `[::]`.
    fn wire_addr(&self, to: SocketAddr) -> SocketAddr {
        match to {
            SocketAddr::V4(v4) if self.udp_v6 => {
                SocketAddr::from((v4.ip().to_ipv6_mapped(), v4.port()))
            }
            other => other,
        }
    }

    async fn send(&self, to: SocketAddr, bytes: &[u8]) {
        if let Err(e) = self.udp.send_to(bytes, self.wire_addr(to)).await {
            debug!("send to {to}: {e}");
        }
    }

    /// Sends what the device queued and logs its events (after every input).
    async fn flush_transmits(&mut self) {
        while let Some(t) = self.device.poll_transmit() {
            self.send(t.to, &t.payload).await;
        }
        self.log_events();
    }

    fn log_events(&mut self) {
        while let Some(event) = self.device.poll_event() {
            match event {
                Event::HandshakeCompleted {
                    peer,
                    endpoint,
                    initiator,
                } => {
                    let role = if initiator { "initiator" } else { "responder" };
                    info!(
                        "handshake completed with peer {} at {endpoint} (we were {role})",
                        key_b64(&peer)
                    );
                }
                Event::EndpointChanged { peer, endpoint } => {
                    info!("peer {} roamed to {endpoint}", key_b64(&peer));
                }
                Event::HandshakeGaveUp { peer } => {
                    warn!(
                        "no handshake response from peer {}; staged packets dropped",
                        key_b64(&peer)
                    );
                }
                Event::KeysWiped { peer } => info!("session keys of peer {} wiped", key_b64(&peer)),
                other => info!("{other:?}"),
            }
        }
    }

    async fn on_tun_packet(&mut self, packet: &[u8], out: &mut [u8]) {
        let now = self.clock.now();
        match self.device.encapsulate(now, packet, out) {
            Ok(Action::WriteToNetwork { to, len }) => {
                if let Some(bytes) = out.get(..len) {
                    self.send(to, bytes).await;
                }
            }
            Ok(_) => {}
            Err(Error::Dropped(reason)) => debug!("outbound packet dropped: {reason}"),
            Err(e) => debug!("outbound packet: {e}"),
        }
        self.flush_transmits().await;
    }

    async fn on_datagram(&mut self, src: SocketAddr, datagram: &[u8], out: &mut [u8]) {
        // Report v4 peers as v4 even though they arrived on the dual-stack socket.
        let src = SocketAddr::new(src.ip().to_canonical(), src.port());
        let now = self.clock.now();
        match self.device.decapsulate(now, src, datagram, out) {
            Ok(Action::WriteToNetwork { to, len }) => {
                if let Some(bytes) = out.get(..len) {
                    self.send(to, bytes).await;
                }
            }
            Ok(Action::WriteToTunnel { len, .. }) => {
                if let Some(bytes) = out.get(..len) {
                    if let Err(e) = self.tun.send(bytes).await {
                        debug!("TUN write: {e}");
                    }
                }
            }
            Ok(_) => {}
            Err(Error::Dropped(reason)) => debug!("datagram from {src} dropped: {reason}"),
            Err(e) => debug!("datagram from {src}: {e}"),
        }
        self.flush_transmits().await;
    }

    async fn on_timeout(&mut self) {
        let now = self.clock.now();
        self.device.handle_timeout(now);
        self.flush_transmits().await;
    }
}

async fn resolve(endpoint: &Endpoint) -> Result<SocketAddr, String> {
    match endpoint {
        Endpoint::Addr(a) => Ok(*a),
        Endpoint::Host { host, port } => tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(|e| format!("resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("resolve {host}: no address")),
    }
}

async fn run(mut config: Config, ifname: String) -> Result<(), String> {
    let clock = Clock::new();
    let mut device = Device::new(
        DeviceConfig::new(StaticSecret::from_bytes(
            *config.interface.private_key.expose(),
        )),
        UnwrapErr(getrandom::SysRng),
    );
    device.set_wall_clock(clock.now(), WallTime::now());
    let peer_count = config.peers.len();
    for peer in config.peers.drain(..) {
        let mut pc = PeerConfig::new(PublicKey::from_bytes(peer.public_key));
        pc.preshared_key = peer.preshared_key;
        pc.allowed_ips = peer.allowed_ips;
        pc.endpoint = match &peer.endpoint {
            Some(e) => Some(resolve(e).await?),
            None => None,
        };
        pc.persistent_keepalive = peer.persistent_keepalive;
        let key = pc.public_key;
        device
            .add_peer(clock.now(), pc)
            .map_err(|e| format!("peer {}: {e}", key_b64(&key)))?;
    }

    let tun = create_tun(&config, &ifname)?;
    let (udp, udp_v6) = bind_udp(config.interface.listen_port.unwrap_or(0))?;
    let local = udp.local_addr().map_err(|e| e.to_string())?;
    info!(
        "{ifname} up: public key {}, UDP {local}, {} peer(s)",
        key_b64(&device.public_key()),
        peer_count
    );

    let mut node = Node {
        device,
        clock,
        udp,
        udp_v6,
        tun,
    };
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut tun_buf = vec![0u8; BUF_LEN];
    let mut udp_buf = vec![0u8; BUF_LEN];
    let mut out = vec![0u8; BUF_LEN];
    // Far enough to never fire when the device has no deadline.
    let idle = std::time::Duration::from_secs(3600);

    loop {
        let deadline = match node.device.poll_timeout() {
            Some(t) => tokio::time::Instant::from_std(node.clock.to_std(t)),
            None => tokio::time::Instant::now() + idle,
        };
        tokio::select! {
            r = node.tun.recv(&mut tun_buf) => match r {
                Ok(n) => {
                    if let Some(packet) = tun_buf.get(..n) {
                        node.on_tun_packet(packet, &mut out).await;
                    }
                }
                Err(e) => return Err(format!("TUN read: {e}")),
            },
            r = node.udp.recv_from(&mut udp_buf) => match r {
                Ok((n, src)) => {
                    if let Some(datagram) = udp_buf.get(..n) {
                        node.on_datagram(src, datagram, &mut out).await;
                    }
                }
                // ICMP errors (port unreachable) surface here on Linux; keep going.
                Err(e) => debug!("UDP receive: {e}"),
            },
            _ = tokio::time::sleep_until(deadline) => node.on_timeout().await,
            _ = term.recv() => {
                info!("SIGTERM: shutting down");
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                info!("interrupted: shutting down");
                break;
            }
        }
    }
    // Dropping the TUN closes it and the kernel removes the link.
    Ok(())
}
