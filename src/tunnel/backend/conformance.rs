//! The backend contract as a runnable check ([`run_conformance`]): any [`TunnelBackend`], ours
//! or a wrapper of a kernel or wireguard-go interface, can prove it keeps the rules a control
//! plane relies on.

use super::{BackendError, ExitMode, Route, TunnelBackend};
use crate::crypto::x25519::PublicKey;
use crate::time::Instant;
use crate::tunnel::allowed_ips::Cidr;
use crate::tunnel::config::PeerConfig;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A conformance check that failed: which rule, and what happened instead.
///
/// ```
/// let f = sealwire::tunnel::backend::ConformanceFailure { check: "start succeeds", detail: "Err(..)".into() };
/// assert_eq!(f.to_string(), "start succeeds: Err(..)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConformanceFailure {
    /// The rule, as a sentence.
    pub check: &'static str,
    /// What the backend did.
    pub detail: String,
}

impl fmt::Display for ConformanceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.check, self.detail)
    }
}

fn expect<T: fmt::Debug>(
    check: &'static str,
    got: T,
    ok: impl FnOnce(&T) -> bool,
) -> Result<(), ConformanceFailure> {
    if ok(&got) {
        Ok(())
    } else {
        Err(ConformanceFailure {
            check,
            detail: format!("{got:?}"),
        })
    }
}

/// Runs the backend contract against fresh backends from `factory` (each check group gets
/// a new one). Returns the first rule broken.
///
/// ```
/// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
/// use sealwire::crypto::x25519::StaticSecret;
/// use sealwire::tunnel::backend::{run_conformance, UserspaceBackend};
/// use sealwire::tunnel::DeviceConfig;
/// let fresh = || {
///     let key = StaticSecret::from_bytes([1; 32]);
///     UserspaceBackend::new(key, DeviceConfig::default(), ChaCha20Rng::seed_from_u64(1)).unwrap()
/// };
/// assert_eq!(run_conformance(fresh), Ok(()));
/// ```
///
/// Rules: lifecycle (`start` twice ⇒ `AlreadyRunning`, queries and `shutdown` when stopped ⇒
/// `NotRunning`); configuration is kept across `shutdown`/`start`; our own key as a peer,
/// unknown peers, routes or exits via unknown peers ⇒ `InvalidInput` and nothing changes;
/// endpoints reflect configuration; removing a peer removes its routes; capabilities are
/// honoured (an IPv6 prefix on a backend without IPv6 ⇒ `InvalidInput` or `Unsupported`).
pub fn run_conformance<B, F>(mut factory: F) -> Result<(), ConformanceFailure>
where
    B: TunnelBackend,
    F: FnMut() -> B,
{
    let now = Instant::from_secs(1);
    let peer_a = PublicKey::from_bytes([0xa1; 32]);
    let peer_b = PublicKey::from_bytes([0xb2; 32]);
    let ep: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 51820);
    let ep2: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)), 51821);
    let v4 = |a, b, c, d, l| Cidr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), l);
    let host_a = v4(10, 9, 0, 1, 32).into_iter().collect::<Vec<_>>();

    // Lifecycle.
    let mut b = factory();
    let caps = b.capabilities();
    expect("stats before start is NotRunning", b.stats(), |r| {
        *r == Err(BackendError::NotRunning)
    })?;
    expect("shutdown before start is NotRunning", b.shutdown(), |r| {
        *r == Err(BackendError::NotRunning)
    })?;
    expect("start succeeds", b.start(now), |r| r.is_ok())?;
    expect("start twice is AlreadyRunning", b.start(now), |r| {
        *r == Err(BackendError::AlreadyRunning)
    })?;
    expect("stats when running start at zero peers", b.stats(), |r| {
        r.as_ref().is_ok_and(|s| s.peers == 0 && s.handshakes == 0)
    })?;
    expect("shutdown succeeds", b.shutdown(), |r| r.is_ok())?;
    expect("shutdown twice is NotRunning", b.shutdown(), |r| {
        *r == Err(BackendError::NotRunning)
    })?;
    expect(
        "queries when stopped are NotRunning",
        b.peer_endpoint(&peer_a),
        |r| *r == Err(BackendError::NotRunning),
    )?;

    // Peers.
    let mut b = factory();
    let own = b.public_key();
    expect("start succeeds", b.start(now), |r| r.is_ok())?;
    expect(
        "our own key as a peer is InvalidInput",
        b.configure_peer(now, PeerConfig::new(own)),
        |r| matches!(r, Err(BackendError::InvalidInput(_))),
    )?;
    let mut a = PeerConfig::new(peer_a);
    a.endpoint = Some(ep);
    a.allowed_ips = host_a.clone();
    expect("a valid peer is accepted", b.configure_peer(now, a), |r| {
        r.is_ok()
    })?;
    expect(
        "the endpoint reflects configuration",
        b.peer_endpoint(&peer_a),
        |r| *r == Ok(Some(ep)),
    )?;
    expect("no handshake yet", b.latest_handshake(&peer_a), |r| {
        *r == Ok(None)
    })?;
    expect(
        "unknown peers are InvalidInput",
        b.peer_endpoint(&peer_b),
        |r| matches!(r, Err(BackendError::InvalidInput(_))),
    )?;
    let mut a2 = PeerConfig::new(peer_a);
    a2.endpoint = Some(ep2);
    a2.allowed_ips = host_a.clone();
    expect(
        "reconfiguring a peer is accepted",
        b.configure_peer(now, a2),
        |r| r.is_ok(),
    )?;
    expect(
        "reconfiguring moves the endpoint",
        b.peer_endpoint(&peer_a),
        |r| *r == Ok(Some(ep2)),
    )?;
    expect("one peer counted", b.stats(), |r| {
        r.as_ref().is_ok_and(|s| s.peers == 1)
    })?;

    // Routes and exit.
    // A valid prefix: `v4` cannot fail here, but the suite reports rather than panics.
    let Some(lan_prefix) = v4(192, 168, 50, 0, 24) else {
        return Err(ConformanceFailure {
            check: "the suite's LAN prefix is valid",
            detail: "None".into(),
        });
    };
    let lan = Route {
        prefix: lan_prefix,
        via: peer_a,
    };
    let bad = Route {
        prefix: lan.prefix,
        via: peer_b,
    };
    if caps.lan_routes {
        expect(
            "a route via an unknown peer is InvalidInput",
            b.replace_routes(now, &[lan, bad]),
            |r| matches!(r, Err(BackendError::InvalidInput(_))),
        )?;
        expect(
            "routes via known peers are accepted",
            b.replace_routes(now, &[lan]),
            |r| r.is_ok(),
        )?;
        expect(
            "an empty route set is accepted",
            b.replace_routes(now, &[]),
            |r| r.is_ok(),
        )?;
    } else {
        expect(
            "LAN routes without the capability are Unsupported",
            b.replace_routes(now, &[lan]),
            |r| *r == Err(BackendError::Unsupported),
        )?;
    }
    if caps.exit_node {
        expect(
            "an exit via an unknown peer is InvalidInput",
            b.set_exit_mode(now, ExitMode::UseExit { peer: peer_b }),
            |r| matches!(r, Err(BackendError::InvalidInput(_))),
        )?;
        expect(
            "an exit via a known peer is accepted",
            b.set_exit_mode(now, ExitMode::UseExit { peer: peer_a }),
            |r| r.is_ok(),
        )?;
        expect(
            "exit off is accepted",
            b.set_exit_mode(now, ExitMode::Off),
            |r| r.is_ok(),
        )?;
    }
    if !caps.exit_serving {
        expect(
            "serving as exit without the capability is Unsupported",
            b.set_exit_mode(now, ExitMode::ServeExit),
            |r| *r == Err(BackendError::Unsupported),
        )?;
    }
    let mut v6 = PeerConfig::new(peer_b);
    v6.allowed_ips = Cidr::new(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)), 128)
        .into_iter()
        .collect();
    let r = b.configure_peer(now, v6);
    if caps.ipv6 {
        expect(
            "IPv6 AllowedIPs are accepted with the ipv6 capability",
            r,
            |r| r.is_ok(),
        )?;
        expect("removing a peer succeeds", b.remove_peer(&peer_b), |r| {
            r.is_ok()
        })?;
    } else {
        expect("IPv6 without the capability is refused", r, |r| {
            matches!(
                r,
                Err(BackendError::InvalidInput(_)) | Err(BackendError::Unsupported)
            )
        })?;
    }
    expect(
        "removing an unknown peer is InvalidInput",
        b.remove_peer(&peer_b),
        |r| matches!(r, Err(BackendError::InvalidInput(_))),
    )?;

    // Configuration survives a restart.
    expect("shutdown succeeds", b.shutdown(), |r| r.is_ok())?;
    expect("start again succeeds", b.start(now), |r| r.is_ok())?;
    expect(
        "peers survive shutdown/start",
        b.peer_endpoint(&peer_a),
        |r| *r == Ok(Some(ep2)),
    )?;
    expect("removing the peer succeeds", b.remove_peer(&peer_a), |r| {
        r.is_ok()
    })?;
    expect(
        "a removed peer is unknown",
        b.latest_handshake(&peer_a),
        |r| matches!(r, Err(BackendError::InvalidInput(_))),
    )?;
    expect("zero peers after removal", b.stats(), |r| {
        r.as_ref().is_ok_and(|s| s.peers == 0)
    })?;
    Ok(())
}
