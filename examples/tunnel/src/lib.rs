//! The host side of `tun_node`: the Linux plumbing around a [`sealwire::tunnel::Device`] that
//! is no part of the protocol. Creating the TUN link with `ip(8)` (MTU, addresses, link up)
//! and binding the one unconnected UDP socket, dual-stack where the host has IPv6.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::Command;

use sealwire::tunnel::wg_quick::InterfaceAddress;
use tracing::{debug, warn};

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

/// Creates the TUN `ifname` in the current network namespace (deleting a stale link of that
/// name first), sets its MTU, assigns every address and brings the link up.
pub fn create_tun(
    ifname: &str,
    mtu: u16,
    addresses: &[InterfaceAddress],
) -> Result<tun::Device, String> {
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
        // Addresses, MTU and link state are set with ip(8) below. The crate's default is
        // IFF_NO_PI (no packet-information header), so reads and writes go straight between
        // the fd and our buffers.
        p.ensure_root_privileges(false);
    });
    let dev = tun::create(&tun_config).map_err(|e| format!("create TUN {ifname}: {e}"))?;
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
    Ok(dev)
}

/// One unconnected UDP socket on every local address: `[::]` with IPV6_V6ONLY off (IPv4
/// peers arrive v4-mapped), or `0.0.0.0` where IPv6 is unavailable. Returns whether it is v6.
pub fn bind_udp(port: u16) -> Result<(UdpSocket, bool), String> {
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
    // Room for bursts while a worker is busy (the kernel caps these at its rmem/wmem_max).
    for (what, r) in [
        ("SO_RCVBUF", socket.set_recv_buffer_size(SOCKET_BUF)),
        ("SO_SNDBUF", socket.set_send_buffer_size(SOCKET_BUF)),
    ] {
        if let Err(e) = r {
            debug!("{what}: {e}");
        }
    }
    Ok((socket.into(), v6))
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
}
