//! The host side of `tun_node`: the Linux plumbing around a [`sealwire::tunnel::Device`] that
//! is no part of the protocol. Reading the config file into wiped memory, creating the TUN
//! link with `ip(8)` (MTU, addresses, link up) without ever deleting a link tun_node did not
//! create, and binding the one unconnected UDP socket, dual-stack where the host has IPv6.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sealwire::tunnel::wg_quick::InterfaceAddress;
use tracing::{debug, warn};
use zeroize::{Zeroize, Zeroizing};

/// Requested UDP socket buffer size, each way.
const SOCKET_BUF: usize = 4 << 20;

/// Runs `ip ARGS...`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
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

/// The most bytes a config file may have (a wg-quick file with thousands of peers fits).
pub const MAX_CONFIG_LEN: u64 = 4 << 20;

/// Reads the file at `path` (a config holding private keys) into a string that is wiped when
/// dropped. The buffer is sized once from the file's length, so no copy of the text is left
/// behind by a growing buffer; a file that is longer than [`MAX_CONFIG_LEN`], grows while it
/// is read, or is not UTF-8 is refused, and no error quotes its content.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, String> {
    let shown = path.display();
    let mut file = std::fs::File::open(path).map_err(|e| format!("{shown}: {e}"))?;
    let len = file.metadata().map_err(|e| format!("{shown}: {e}"))?.len();
    if len > MAX_CONFIG_LEN {
        return Err(format!("{shown}: larger than {MAX_CONFIG_LEN} bytes"));
    }
    // One spare byte: filling it means the file grew after its length was read.
    let room = usize::try_from(len)
        .map_err(|e| format!("{shown}: {e}"))?
        .saturating_add(1);
    let mut buf = Zeroizing::new(vec![0u8; room]);
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..) {
        match file.read(rest) {
            Ok(0) => break,
            Ok(k) => n = n.saturating_add(k),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{shown}: {e}")),
        }
        if n >= room {
            return Err(format!("{shown}: the file changed while it was read"));
        }
    }
    buf.truncate(n);
    // The bytes move into the string without a copy; on failure they come back and are wiped.
    match String::from_utf8(std::mem::take(&mut *buf)) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(e) => {
            e.into_bytes().zeroize();
            Err(format!("{shown}: not UTF-8 text"))
        }
    }
}

/// What already holds the interface name tun_node was asked to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExistingLink {
    /// Nothing: the name is free.
    Absent,
    /// A TUN link in the shape tun_node makes (a plain TUN: no packet information, no vnet
    /// header, one queue, no owner or group) that is persistent and has no carrier, so no
    /// process holds it: what a crashed setup or a killed instance can leave behind. Deleted
    /// at start, as a leftover.
    Leftover,
    /// A non-persistent TUN link, or one with carrier: a running process holds it (another
    /// tun_node, wireguard-go, boringtun, ...).
    InUse,
    /// Any other link, described (`a bridge link`, `a TAP device`, ...).
    Foreign(String),
}

impl ExistingLink {
    /// How the link is described in messages.
    pub fn describe(&self) -> String {
        match self {
            ExistingLink::Absent => "no link".into(),
            ExistingLink::Leftover => "an unused TUN device".into(),
            ExistingLink::InUse => {
                "a TUN device held by a running process (another tun_node, wireguard-go or \
                 boringtun?)"
                    .into()
            }
            ExistingLink::Foreign(what) => what.clone(),
        }
    }
}

/// Classifies the output of `ip -details -json link show dev NAME` (see [`ExistingLink`]).
pub fn classify_link(ip_json: &str) -> Result<ExistingLink, String> {
    let links: serde_json::Value =
        serde_json::from_str(ip_json).map_err(|e| format!("unexpected output of ip -j: {e}"))?;
    let Some(link) = links.as_array().and_then(|a| a.first()) else {
        return Ok(ExistingLink::Absent);
    };
    let info = &link["linkinfo"];
    let Some(kind) = info["info_kind"].as_str() else {
        return Ok(ExistingLink::Foreign(
            "a link without a kind (a physical or loopback device)".into(),
        ));
    };
    if kind != "tun" {
        return Ok(ExistingLink::Foreign(format!("a {kind} link")));
    }
    let data = &info["info_data"];
    if data["type"].as_str() != Some("tun") {
        return Ok(ExistingLink::Foreign("a TAP device".into()));
    }
    let on = |flag: &str| data[flag].as_bool().unwrap_or(false);
    let carrier = link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f.as_str() == Some("LOWER_UP")));
    if !on("persist") || carrier {
        return Ok(ExistingLink::InUse);
    }
    if on("pi") || on("vnet_hdr") || on("multi_queue") {
        return Ok(ExistingLink::Foreign(
            "a TUN device with options tun_node never sets (packet information, vnet header or \
             several queues)"
                .into(),
        ));
    }
    if !data["user"].is_null() || !data["group"].is_null() {
        return Ok(ExistingLink::Foreign(
            "a TUN device with an owner (made for another program)".into(),
        ));
    }
    Ok(ExistingLink::Leftover)
}

/// What holds `ifname` in the current network namespace now.
pub fn existing_link(ifname: &str) -> Result<ExistingLink, String> {
    let out = Command::new("ip")
        .args(["-details", "-json", "link", "show", "dev", ifname])
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        return classify_link(&String::from_utf8_lossy(&out.stdout));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("does not exist") {
        Ok(ExistingLink::Absent)
    } else {
        Err(format!("ip link show dev {ifname}: {}", err.trim()))
    }
}

/// Frees the name `ifname` for a new TUN, or refuses. tun_node deletes only what it can tell
/// is a leftover ([`ExistingLink::Leftover`]); anything else (a bridge, a kernel WireGuard
/// link, a TUN another process holds, ...) is left alone unless `replace` (`--replace`) says
/// to delete it.
pub fn claim_name(ifname: &str, replace: bool) -> Result<(), String> {
    let mut link = existing_link(ifname)?;
    // The TUN of a process that was just killed goes with it: give it a second (a supervisor
    // may restart us at once).
    for _ in 0..20 {
        if link != ExistingLink::InUse {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        link = existing_link(ifname)?;
    }
    match link {
        ExistingLink::Absent => Ok(()),
        ExistingLink::Leftover => {
            warn!("deleting stale interface {ifname} (an unused TUN device, as a crash leaves)");
            ip(&["link", "del", "dev", ifname])
        }
        other if replace => {
            warn!(
                "deleting the existing interface {ifname} ({}) because of --replace",
                other.describe()
            );
            ip(&["link", "del", "dev", ifname])
        }
        other => Err(format!(
            "interface {ifname} already exists ({}) and tun_node did not create it: it is left \
             alone. Choose another --interface, delete it yourself (ip link del {ifname}), or \
             pass --replace to let tun_node delete it",
            other.describe()
        )),
    }
}

/// A TUN device as [`create_tun`] made it: one file descriptor per queue, and what the
/// kernel granted.
pub struct Tun {
    /// The queues (`IFF_MULTI_QUEUE`): the kernel spreads packets over them by flow, each
    /// flow staying on one. One when several were not asked for or not granted.
    pub queues: Vec<tun_rs::SyncDevice>,
    /// Virtio-net headers and TSO/GRO offloads on, or why not.
    pub offload: Result<(), String>,
    /// Why fewer queues than asked for, if so.
    pub queues_refused: Option<String>,
}

/// Creates the TUN `ifname` in the current network namespace (after [`claim_name`]: a
/// leftover of the same name is deleted, anything else only with `replace`), with `queues`
/// queues (`IFF_MULTI_QUEUE` when more than one), sets its MTU, assigns every address and
/// brings the link up. Unless `offload` is false it asks for virtio-net headers and TSO/GRO
/// offloads first; where the kernel refuses them it makes a plain TUN and says why
/// ([`Tun::offload`]); where it
/// refuses several queues, or a further queue, it goes on with those it has
/// ([`Tun::queues_refused`]).
pub fn create_tun(
    ifname: &str,
    mtu: u16,
    addresses: &[InterfaceAddress],
    replace: bool,
    queues: usize,
    offload: bool,
) -> Result<Tun, String> {
    // An existing link would make TUNSETIFF fail or attach us to the wrong device.
    claim_name(ifname, replace)?;
    // Addresses, MTU and link state are set with ip(8) below. No packet-information header.
    let build = |offload: bool, multi_queue: bool| {
        tun_rs::DeviceBuilder::new()
            .name(ifname)
            .packet_information(false)
            .offload(offload)
            .multi_queue(multi_queue)
            .build_sync()
    };
    // TUNSETIFF with IFF_VNET_HDR or TUNSETOFFLOAD refused: the half-made device went with
    // its fd; make a plain one (a real problem, such as the name, shows again there).
    let build_any = |multi_queue: bool| match build(offload, multi_queue) {
        Ok(dev) if !offload => Ok((dev, Err("turned off by the caller".to_string()))),
        Ok(dev) if dev.tcp_gso() => Ok((dev, Ok(()))),
        Ok(dev) => Ok((dev, Err("the kernel has no IFF_VNET_HDR".to_string()))),
        Err(e) => build(false, multi_queue)
            .map(|dev| (dev, Err(format!("the kernel refused them: {e}"))))
            .map_err(|e| format!("create TUN {ifname}: {e}")),
    };
    let mut queues_refused = None;
    let (first, offload) = if queues > 1 {
        match build_any(true) {
            Ok(made) => made,
            Err(e) => {
                queues_refused = Some(format!("IFF_MULTI_QUEUE refused: {e}"));
                build_any(false)?
            }
        }
    } else {
        build_any(false)?
    };
    let mut all = vec![first];
    while queues_refused.is_none() && all.len() < queues {
        match all.first().map(tun_rs::SyncDevice::try_clone) {
            Some(Ok(q)) => all.push(q),
            Some(Err(e)) => queues_refused = Some(format!("queue {}: {e}", all.len() + 1)),
            None => break,
        }
    }
    ip(&["link", "set", "dev", ifname, "mtu", &mtu.to_string()])?;
    for a in addresses {
        let cidr = a.to_string();
        match a.addr {
            IpAddr::V4(_) => ip(&["-4", "addr", "replace", &cidr, "dev", ifname])?,
            // nodad: the address is usable at once, not after duplicate detection.
            IpAddr::V6(_) => ip(&["-6", "addr", "replace", &cidr, "dev", ifname, "nodad"])?,
        }
    }
    ip(&["link", "set", "dev", ifname, "up"])?;
    Ok(Tun {
        queues: all,
        offload,
        queues_refused,
    })
}

/// `count` unconnected UDP sockets sharing one port on every local address (`SO_REUSEPORT`,
/// which the kernel balances by the peers' addresses, each peer staying on one socket):
/// `[::]` with IPV6_V6ONLY off (IPv4 peers arrive v4-mapped), or `0.0.0.0` where IPv6 is
/// unavailable. `port` 0 picks one. Returns at least one socket (fewer than `count` where a
/// further one cannot join, with a warning) and whether they are v6.
pub fn bind_udp(port: u16, count: usize) -> Result<(Vec<UdpSocket>, bool), String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let several = count > 1;
    let open = |domain: Domain, port: u16| -> std::io::Result<Socket> {
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if domain == Domain::IPV6 {
            s.set_only_v6(false)?;
        }
        if several {
            s.set_reuse_port(true)?;
        }
        let ip: IpAddr = if domain == Domain::IPV6 {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        s.bind(&SocketAddr::new(ip, port).into())?;
        // Room for bursts while a worker is busy (the kernel caps these at its rmem/wmem_max).
        for (what, r) in [
            ("SO_RCVBUF", s.set_recv_buffer_size(SOCKET_BUF)),
            ("SO_SNDBUF", s.set_send_buffer_size(SOCKET_BUF)),
        ] {
            if let Err(e) = r {
                debug!("{what}: {e}");
            }
        }
        Ok(s)
    };
    let (first, domain) = match open(Domain::IPV6, port) {
        Ok(s) => (s, Domain::IPV6),
        Err(e6) => {
            warn!("no dual-stack IPv6 socket ({e6}); using 0.0.0.0");
            let s = open(Domain::IPV4, port).map_err(|e| format!("bind UDP port {port}: {e}"))?;
            (s, Domain::IPV4)
        }
    };
    let bound = first
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map_or(port, |a| a.port());
    let mut sockets: Vec<UdpSocket> = vec![first.into()];
    while sockets.len() < count {
        match open(domain, bound) {
            Ok(s) => sockets.push(s.into()),
            Err(e) => {
                warn!(
                    "UDP port {bound}: socket {} of {count} cannot join (SO_REUSEPORT: {e}); \
                     going on with {}",
                    sockets.len() + 1,
                    sockets.len()
                );
                break;
            }
        }
    }
    Ok((sockets, domain == Domain::IPV6))
}

/// The address to send to on a socket from [`bind_udp`]: IPv4 destinations become v4-mapped
/// on a dual-stack socket.
pub fn wire_addr(to: SocketAddr, dual_stack: bool) -> SocketAddr {
    match to {
        SocketAddr::V4(v4) if dual_stack => SocketAddr::from((v4.ip().to_ipv6_mapped(), v4.port())),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_destinations_are_mapped_only_on_a_dual_stack_socket() {
        let v4: SocketAddr = "192.0.2.1:51820".parse().unwrap();
        assert_eq!(
            wire_addr(v4, true),
            "[::ffff:192.0.2.1]:51820".parse().unwrap()
        );
        assert_eq!(wire_addr(v4, false), v4);
        let v6: SocketAddr = "[2001:db8::1]:51820".parse().unwrap();
        assert_eq!(wire_addr(v6, true), v6);
    }

    /// `ip -details -json link show` of one link (iproute2 6.1), trimmed to what matters.
    fn link(flags: &str, linkinfo: &str) -> String {
        format!(
            r#"[{{"ifindex":2,"ifname":"wg0","flags":[{flags}],"mtu":1500,"linkinfo":{linkinfo}}}]"#
        )
    }

    fn tun(flags: &str, data: &str) -> String {
        link(
            flags,
            &format!(r#"{{"info_kind":"tun","info_data":{{{data}}}}}"#),
        )
    }

    const PLAIN: &str = r#""type":"tun","pi":false,"vnet_hdr":false,"multi_queue":false"#;

    #[test]
    fn only_an_unused_plain_tun_is_a_leftover_everything_else_is_someone_elses() {
        let c = |json: &str| classify_link(json).unwrap();
        // What `ip tuntap add dev wg0 mode tun` leaves, up or down: a leftover.
        let down = r#""POINTOPOINT","MULTICAST","NOARP""#;
        let up_no_carrier = r#""NO-CARRIER","POINTOPOINT","MULTICAST","NOARP","UP""#;
        let persistent = format!(r#"{PLAIN},"persist":true"#);
        assert_eq!(c(&tun(down, &persistent)), ExistingLink::Leftover);
        assert_eq!(c(&tun(up_no_carrier, &persistent)), ExistingLink::Leftover);
        // A process holds it: not persistent (it lives as long as its file descriptor), or
        // carrier on (a process is attached).
        let up = r#""POINTOPOINT","MULTICAST","NOARP","UP","LOWER_UP""#;
        let held = format!(r#"{PLAIN},"persist":false"#);
        assert_eq!(c(&tun(up, &held)), ExistingLink::InUse);
        assert_eq!(c(&tun(down, &held)), ExistingLink::InUse);
        assert_eq!(c(&tun(up, &persistent)), ExistingLink::InUse);
        // Made for another program: an owner or group, TAP, packet information.
        let owned = format!(r#"{persistent},"user":"nobody""#);
        assert!(matches!(c(&tun(down, &owned)), ExistingLink::Foreign(_)));
        let grouped = format!(r#"{persistent},"group":"netdev""#);
        assert!(matches!(c(&tun(down, &grouped)), ExistingLink::Foreign(_)));
        let tap = r#""type":"tap","pi":false,"vnet_hdr":false,"multi_queue":false,"persist":true"#;
        assert_eq!(
            c(&tun(down, tap)),
            ExistingLink::Foreign("a TAP device".into())
        );
        let pi = r#""type":"tun","pi":true,"vnet_hdr":false,"multi_queue":false,"persist":true"#;
        assert!(matches!(c(&tun(down, pi)), ExistingLink::Foreign(_)));
        // Other kinds, and a link with no kind at all (a physical device).
        let bridge = link(
            down,
            r#"{"info_kind":"bridge","info_data":{"stp_state":0}}"#,
        );
        assert_eq!(c(&bridge), ExistingLink::Foreign("a bridge link".into()));
        let wg = link(up, r#"{"info_kind":"wireguard"}"#);
        assert_eq!(c(&wg), ExistingLink::Foreign("a wireguard link".into()));
        let eth = r#"[{"ifindex":2,"ifname":"eth0","flags":["UP"]}]"#;
        assert!(matches!(c(eth), ExistingLink::Foreign(_)));
        assert_eq!(c("[]"), ExistingLink::Absent);
        assert!(classify_link("not json").is_err());
    }

    fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("tun_node-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_config_is_read_whole_into_a_buffer_of_its_size() {
        let text = "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n";
        let path = temp_file("ok", text.as_bytes());
        let read = read_secret_file(&path).unwrap();
        assert_eq!(read.as_str(), text);
        // Sized once from the file: no growth left a copy behind.
        assert_eq!(read.capacity(), text.len() + 1);
        std::fs::remove_file(&path).unwrap();
        let empty = temp_file("empty", b"");
        assert_eq!(read_secret_file(&empty).unwrap().as_str(), "");
        std::fs::remove_file(&empty).unwrap();
    }

    #[test]
    fn a_bad_config_file_is_refused_without_quoting_it() {
        let secret = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
        let mut bytes = format!("PrivateKey = {secret}\n").into_bytes();
        bytes.push(0xff);
        let path = temp_file("binary", &bytes);
        let err = read_secret_file(&path).unwrap_err();
        assert!(err.ends_with("not UTF-8 text"), "{err}");
        assert!(!err.contains(&secret[..8]), "{err}");
        std::fs::remove_file(&path).unwrap();
        let missing = std::env::temp_dir().join("tun_node-no-such-file");
        assert!(read_secret_file(&missing).is_err());
    }
}
