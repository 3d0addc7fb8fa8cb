//! The backend contract: our userspace backend passes the conformance suite, a broken
//! backend fails it, and a backend-configured device really talks to boringtun.

mod tunnel_common;

use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
use sealwire::time::Instant;
use sealwire::tunnel::backend::*;
use sealwire::tunnel::{Action, WallTime};
use std::net::SocketAddr;
use tunnel_common::*;

fn ours(seed: u64) -> UserspaceBackend<ChaCha20Rng> {
    UserspaceBackend::new([seed as u8 + 1; 32], ChaCha20Rng::seed_from_u64(seed))
}

#[test]
fn userspace_backend_passes_the_conformance_suite() {
    let mut n = 0;
    run_conformance(|| {
        n += 1;
        ours(n)
    })
    .unwrap();
}

/// Wraps our backend but lies about one rule each, so the suite must catch it.
struct Broken {
    inner: UserspaceBackend<ChaCha20Rng>,
    flaw: u8,
}

impl TunnelBackend for Broken {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }
    fn start(&mut self, now: Instant) -> Result<(), BackendError> {
        let r = self.inner.start(now);
        if self.flaw == 0 && r == Err(BackendError::AlreadyRunning) {
            return Ok(());
        }
        r
    }
    fn shutdown(&mut self) -> Result<(), BackendError> {
        self.inner.shutdown()
    }
    fn configure_peer(&mut self, now: Instant, peer: PeerSpec) -> Result<(), BackendError> {
        self.inner.configure_peer(now, peer)
    }
    fn remove_peer(&mut self, k: &[u8; 32]) -> Result<(), BackendError> {
        if self.flaw == 1 {
            return Ok(());
        }
        self.inner.remove_peer(k)
    }
    fn peer_endpoint(&self, k: &[u8; 32]) -> Result<Option<SocketAddr>, BackendError> {
        self.inner.peer_endpoint(k)
    }
    fn latest_handshake(&self, k: &[u8; 32]) -> Result<Option<Instant>, BackendError> {
        self.inner.latest_handshake(k)
    }
    fn replace_routes(&mut self, now: Instant, r: &[Route]) -> Result<(), BackendError> {
        if self.flaw == 2 {
            return Ok(());
        }
        self.inner.replace_routes(now, r)
    }
    fn set_exit_mode(&mut self, now: Instant, m: ExitMode) -> Result<(), BackendError> {
        self.inner.set_exit_mode(now, m)
    }
    fn stats(&self) -> Result<BackendStats, BackendError> {
        self.inner.stats()
    }
}

#[test]
fn broken_backends_fail_the_conformance_suite() {
    for flaw in 0..3u8 {
        let r = run_conformance(|| Broken {
            inner: ours(7),
            flaw,
        });
        assert!(r.is_err(), "flaw {flaw} went unnoticed");
    }
}

#[test]
fn backend_configured_device_handshakes_with_boringtun_and_reports_it() {
    let mut b = UserspaceBackend::new(*our_key_bytes(), ChaCha20Rng::seed_from_u64(3));
    b.set_wall_clock(Instant::ZERO, WallTime::from_unix(WALL, 0));
    let mut spec = PeerSpec::new(*their_pub().as_bytes());
    spec.endpoint = Some(addr(THEIRS));
    spec.allowed_ips.push("10.0.0.2/32".parse().unwrap());
    b.configure_peer(Instant::ZERO, spec).unwrap();
    b.start(Instant::ZERO).unwrap();
    // Exit through boringtun: an Internet destination now routes to it.
    b.set_exit_mode(
        Instant::ZERO,
        ExitMode::UseExit {
            peer: *their_pub().as_bytes(),
        },
    )
    .unwrap();
    let mut them = boringtun(None, None);
    let now = Instant::from_secs(2);
    let pkt = ipv4(OUR_IP4, [1, 1, 1, 1], b"via exit");
    let mut out = vec![0u8; 2048];
    let Ok(Action::WriteToNetwork { len, .. }) = b.device_mut().encapsulate(now, &pkt, &mut out)
    else {
        panic!("no initiation")
    };
    let resp = bt_net(&bt_recv(&mut them, &out[..len])[0]);
    let mut out2 = vec![0u8; 2048];
    let r = b
        .device_mut()
        .decapsulate(now, addr(THEIRS), &resp, &mut out2);
    assert_eq!(r, Ok(Action::Done));
    let t = b.device_mut().poll_transmit().unwrap();
    assert_eq!(
        bt_recv(&mut them, &t.payload)[0],
        Bt::Tunnel(pkt, "10.0.0.1".parse().unwrap())
    );
    assert_eq!(b.latest_handshake(their_pub().as_bytes()), Ok(Some(now)));
    assert_eq!(b.stats().unwrap().handshakes, 1);
    // Exit off: the same destination has no route any more.
    b.set_exit_mode(now, ExitMode::Off).unwrap();
    assert!(b
        .device_mut()
        .encapsulate(now, &ipv4(OUR_IP4, [1, 1, 1, 1], b"x"), &mut out)
        .is_err());
}

fn our_key_bytes() -> &'static [u8; 32] {
    &[0x11; 32]
}
