//! Nothing secret of the tunnel is left in freed memory where the tunnel's own containers
//! grow, shift or drop (issue #12, item 3): the device's peer table growing while its peers
//! hold PSKs, precomputed DH and handshake state; the staging buffer's plaintext; a wg-quick
//! file with many peers; a control-plane backend that reconfigures and removes peers; and a
//! session's transport keys in both AEAD backends (with `ring`, its prepared keys are
//! overwritten by the keypair's `Drop`).
//!
//! The allocator and the independent key schedules are those of `tests/freed_memory.rs`
//! (`tests/freed_memory/`): every block freed on the armed test thread is searched for the
//! registered secrets, and every freed block is zeroed afterwards. Each test runs its flow
//! twice with the same seeds: once disarmed to record what the machines drew (ephemerals),
//! then armed, dropping everything inside the run.

#[path = "freed_memory/harness.rs"]
mod harness;
#[allow(dead_code)] // the chat and session schedules are not used here
#[path = "freed_memory/keys.rs"]
mod keys;
#[path = "freed_memory/watch.rs"]
mod watch;

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use keys::Secrets;
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sealwire::crypto::base64;
use sealwire::crypto::x25519::{PublicKey, StaticSecret};
use sealwire::crypto::SecretBytes;
use sealwire::time::{Instant, WallTime};
use sealwire::tunnel::backend::{TunnelBackend, UserspaceBackend};
use sealwire::tunnel::wg_quick::WgQuick;
use sealwire::tunnel::{Action, Device, DeviceConfig, PeerConfig};
use zeroize::Zeroizing;

use harness::serial;

/// Runs `flow` armed against `secrets` and fails naming every secret found in freed memory.
fn assert_clean(what: &str, secrets: &Secrets, flow: impl FnOnce()) {
    let found = harness::watch_flow(what, secrets, flow);
    assert!(found.1.is_empty(), "nothing is exempt here: {:?}", found.1);
    harness::assert_clean(what, found);
}

/// 32 bytes that look random, from `(tag, n)` (a run of one byte would match fills).
fn seeded(tag: u8, n: u8) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[0] = tag;
    seed[1] = n;
    let mut out = [0u8; 32];
    ChaCha20Rng::from_seed(seed).fill_bytes(&mut out);
    out
}

fn public(private: &[u8; 32]) -> PublicKey {
    PublicKey::from_bytes(keys::x25519_pub(private))
}

/// Every 32-byte draw of a run (the dry run records; the armed one must not allocate for it).
type Draws = Rc<RefCell<Vec<[u8; 32]>>>;

/// A seeded ChaCha20 stream that records its 32-byte draws (ephemerals, cookie secrets).
struct Rec {
    rng: ChaCha20Rng,
    draws: Option<Draws>,
}

fn rec(seed: u8, draws: Option<&Draws>) -> Rec {
    Rec {
        rng: ChaCha20Rng::from_seed(seeded(0xd0, seed)),
        draws: draws.cloned(),
    }
}

impl rand_core::TryRng for Rec {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.rng.next_u32())
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.rng.next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.rng.fill_bytes(dst);
        if let (Some(d), Ok(k)) = (&self.draws, <[u8; 32]>::try_from(&*dst)) {
            d.borrow_mut().push(k);
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for Rec {}

/// The draws of a dry run of `flow`, registered as secrets ("ephemeral or cookie secret").
fn add_draws(s: &mut Secrets, flow: impl FnOnce(Option<&Draws>)) -> Vec<[u8; 32]> {
    let draws = Draws::default();
    flow(Some(&draws));
    let draws = draws.take();
    for (n, d) in draws.iter().enumerate() {
        s.add(format!("draw {n} (ephemeral or cookie secret)"), d);
    }
    draws
}

/// A key and its `wg genkey` spelling.
fn add_key(s: &mut Secrets, name: &str, key: &[u8; 32]) {
    s.add(name, key);
    s.add(format!("{name} (base64)"), base64::encode(key).as_bytes());
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// An IPv4/UDP packet `src` → `dst` carrying `payload`.
fn packet(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

// ------------------------------------------------------------------ the peer table

const TABLE_PEERS: u8 = 40;

/// One device; 40 peers, each added with a PSK and then sent a packet, which is staged while
/// an initiation goes out (the peer now holds handshake state). The peer table grows four
/// times while its peers hold all that; half the peers are removed, then the device dropped.
fn table_flow(draws: Option<&Draws>) {
    let now = Instant::from_secs(1);
    let mut a = Device::new(
        StaticSecret::from_bytes(seeded(0xa0, 0)),
        DeviceConfig::default(),
        rec(1, draws),
    )
    .unwrap();
    a.set_wall_clock(now, WallTime::from_unix(1_750_000_000, 0));
    let mut out = [0u8; 2048];
    for i in 0..TABLE_PEERS {
        let mut p = PeerConfig::new(public(&seeded(0xa1, i)));
        p.preshared_key = Some(SecretBytes::new(seeded(0xa2, i)));
        p.endpoint = Some(addr(&format!("192.0.2.{}:51820", i + 1)));
        p.allowed_ips
            .push(format!("10.1.{i}.0/24").parse().unwrap());
        a.add_peer(now, p).unwrap();
        // The test's own copy is wiped: only the device's could leave the plaintext.
        let pkt = Zeroizing::new(packet([10, 9, 9, 9], [10, 1, i, 1], &seeded(0xa3, i)));
        let r = a.encapsulate(now, &pkt, &mut out).unwrap();
        assert!(matches!(r, Action::WriteToNetwork { len: 148, .. }));
    }
    while a.poll_transmit().is_some() {}
    for i in (0..TABLE_PEERS).step_by(2) {
        a.remove_peer(&public(&seeded(0xa1, i))).unwrap();
    }
    drop(a);
}

#[test]
fn a_growing_peer_table_leaves_no_peer_secret_and_no_staged_packet_behind() {
    let _g = serial();
    let mut s = Secrets::default();
    let ka = seeded(0xa0, 0);
    add_key(&mut s, "static key", &ka);
    for i in 0..TABLE_PEERS {
        let psk = seeded(0xa2, i);
        add_key(&mut s, &format!("PSK of peer {i}"), &psk);
        let peer = keys::x25519_pub(&seeded(0xa1, i));
        s.add(
            format!("static-static DH with peer {i}"),
            &keys::x25519(&ka, &peer),
        );
        s.add(format!("staged plaintext for peer {i}"), &seeded(0xa3, i));
    }
    let draws = add_draws(&mut s, table_flow);
    assert!(
        draws.len() >= usize::from(TABLE_PEERS),
        "one ephemeral per initiation"
    );
    assert_clean("the peer table", &s, || table_flow(None));
}

// ------------------------------------------------------------------ a wg-quick file

const FILE_PEERS: u8 = 20;

fn wg_quick_text() -> Zeroizing<String> {
    let mut t = Zeroizing::new(String::new());
    let ka = Zeroizing::new(base64::encode(&seeded(0xb0, 0)));
    t.push_str(&format!(
        "[Interface]\nPrivateKey = {}\nListenPort = 51820\n",
        *ka
    ));
    for i in 0..FILE_PEERS {
        let psk = Zeroizing::new(base64::encode(&seeded(0xb2, i)));
        t.push_str(&format!(
            "\n[Peer]\nPublicKey = {}\nPresharedKey = {}\nAllowedIPs = 10.2.{i}.0/24\n\
             Endpoint = 192.0.2.{}:51820\n",
            public(&seeded(0xb1, i)).to_base64(),
            *psk,
            i + 1
        ));
    }
    t
}

#[test]
fn a_wg_quick_file_with_many_peers_leaves_no_key_behind() {
    let _g = serial();
    let mut s = Secrets::default();
    let ka = seeded(0xb0, 0);
    add_key(&mut s, "PrivateKey", &ka);
    for i in 0..FILE_PEERS {
        add_key(&mut s, &format!("PresharedKey {i}"), &seeded(0xb2, i));
        let peer = keys::x25519_pub(&seeded(0xb1, i));
        s.add(
            format!("static-static DH with peer {i}"),
            &keys::x25519(&ka, &peer),
        );
    }
    // The text is the caller's (zeroizing) buffer: it lives through the armed run.
    let text = wg_quick_text();
    assert_clean("a wg-quick file", &s, || {
        let file = WgQuick::parse(&text).unwrap();
        assert_eq!(file.peers.len(), usize::from(FILE_PEERS));
        let device = file.device(Instant::ZERO, rec(2, None)).unwrap();
        drop(device);
        drop(file);
    });
}

// ------------------------------------------------------------------ the backend

const BACKEND_PEERS: u8 = 30;

fn backend_peer(i: u8, psk_tag: u8) -> PeerConfig {
    let mut p = PeerConfig::new(public(&seeded(0xc1, i)));
    p.preshared_key = Some(SecretBytes::new(seeded(psk_tag, i)));
    p.endpoint = Some(addr(&format!("192.0.2.{}:51820", i + 1)));
    p.allowed_ips
        .push(format!("10.3.{i}.0/24").parse().unwrap());
    p
}

#[test]
fn a_backend_that_reconfigures_and_removes_peers_leaves_no_psk_behind() {
    let _g = serial();
    let mut s = Secrets::default();
    let ka = seeded(0xc0, 0);
    add_key(&mut s, "static key", &ka);
    for i in 0..BACKEND_PEERS {
        add_key(&mut s, &format!("first PSK of peer {i}"), &seeded(0xc2, i));
        add_key(&mut s, &format!("second PSK of peer {i}"), &seeded(0xc3, i));
    }
    assert_clean("the backend", &s, || {
        let now = Instant::from_secs(1);
        let mut b = UserspaceBackend::new(
            StaticSecret::from_bytes(ka),
            DeviceConfig::default(),
            rec(3, None),
        )
        .unwrap();
        // Configured before and after start, so both the stored table and the device fill.
        for i in 0..BACKEND_PEERS / 2 {
            b.configure_peer(now, backend_peer(i, 0xc2)).unwrap();
        }
        b.start(now).unwrap();
        for i in BACKEND_PEERS / 2..BACKEND_PEERS {
            b.configure_peer(now, backend_peer(i, 0xc2)).unwrap();
        }
        // A new PSK for every third peer (the old one is replaced), every other peer removed.
        for i in (0..BACKEND_PEERS).step_by(3) {
            b.configure_peer(now, backend_peer(i, 0xc3)).unwrap();
        }
        for i in (0..BACKEND_PEERS).step_by(2) {
            b.remove_peer(&public(&seeded(0xc1, i))).unwrap();
        }
        b.shutdown().unwrap();
        drop(b);
    });
}

// ------------------------------------------------------------------ a session's keys

/// A and B with a PSK: one handshake, data both ways, both devices dropped. Returns the
/// initiation, the response and A's first data packet.
fn session_flow(draws_a: Option<&Draws>, draws_b: Option<&Draws>) -> [Vec<u8>; 3] {
    let now = Instant::from_secs(1);
    let (ka, kb, psk) = (seeded(0xe0, 0), seeded(0xe0, 1), seeded(0xe0, 2));
    let (addr_a, addr_b) = (addr("192.0.2.1:51820"), addr("192.0.2.2:51820"));
    let mut a = Device::new(
        StaticSecret::from_bytes(ka),
        DeviceConfig::default(),
        rec(4, draws_a),
    )
    .unwrap();
    let mut b = Device::new(
        StaticSecret::from_bytes(kb),
        DeviceConfig::default(),
        rec(5, draws_b),
    )
    .unwrap();
    let mut peer_b = PeerConfig::new(public(&kb));
    peer_b.endpoint = Some(addr_b);
    peer_b.preshared_key = Some(SecretBytes::new(psk));
    peer_b.allowed_ips.push("10.0.0.2/32".parse().unwrap());
    a.add_peer(now, peer_b).unwrap();
    let mut peer_a = PeerConfig::new(public(&ka));
    peer_a.preshared_key = Some(SecretBytes::new(psk));
    peer_a.allowed_ips.push("10.0.0.1/32".parse().unwrap());
    b.add_peer(now, peer_a).unwrap();
    a.set_wall_clock(now, WallTime::from_unix(1_750_000_000, 0));

    let (mut buf, mut out) = ([0u8; 2048], [0u8; 2048]);
    let ping = packet([10, 0, 0, 1], [10, 0, 0, 2], b"ping over the tunnel");
    let Ok(Action::WriteToNetwork { len, .. }) = a.encapsulate(now, &ping, &mut buf) else {
        panic!("an initiation")
    };
    let init = buf[..len].to_vec();
    let Ok(Action::WriteToNetwork { len, .. }) = b.decapsulate(now, addr_a, &init, &mut out) else {
        panic!("a response")
    };
    let response = out[..len].to_vec();
    assert_eq!(
        a.decapsulate(now, addr_b, &response, &mut buf),
        Ok(Action::Done)
    );
    let staged = a.poll_transmit().unwrap().payload;
    assert!(matches!(
        b.decapsulate(now, addr_a, &staged, &mut out),
        Ok(Action::WriteToTunnel { .. })
    ));
    let pong = packet([10, 0, 0, 2], [10, 0, 0, 1], b"pong over the tunnel");
    let Ok(Action::WriteToNetwork { len, .. }) = b.encapsulate(now, &pong, &mut out) else {
        panic!("data")
    };
    assert!(matches!(
        a.decapsulate(now, addr_b, &out[..len], &mut buf),
        Ok(Action::WriteToTunnel { .. })
    ));
    if std::env::var("EXP").is_ok() {
        a.remove_peer(&public(&kb)).unwrap();
        b.remove_peer(&public(&ka)).unwrap();
    }
    drop(a);
    drop(b);
    [init, response, staged]
}

#[test]
fn a_sessions_transport_keys_are_wiped_with_it_in_either_aead_backend() {
    let _g = serial();
    let mut s = Secrets::default();
    let (ka, kb, psk) = (seeded(0xe0, 0), seeded(0xe0, 1), seeded(0xe0, 2));
    add_key(&mut s, "static key A", &ka);
    add_key(&mut s, "static key B", &kb);
    add_key(&mut s, "PSK", &psk);
    let (da, db) = (Draws::default(), Draws::default());
    let [init, response, data] = session_flow(Some(&da), Some(&db));
    let (da, db) = (da.take(), db.take());
    let find = |draws: &[[u8; 32]], e_pub: &[u8]| {
        *draws
            .iter()
            .find(|d| keys::x25519_pub(d) == e_pub)
            .expect("the ephemeral is one of the draws")
    };
    let e_i = find(&da, &init[8..40]);
    let e_r = find(&db, &response[12..44]);
    for (n, d) in da.iter().chain(&db).enumerate() {
        s.add(format!("draw {n} (ephemeral or cookie secret)"), d);
    }
    // The whole IKpsk2 schedule, and the transport keys (not exempt under `ring` either).
    let (i2r, r2i) = keys::wireguard(
        "handshake",
        &ka,
        &e_i,
        &keys::x25519_pub(&kb),
        &e_r,
        &psk,
        &mut s,
    );
    // The derivation is the one the devices used: its key opens A's data packet.
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&data[8..16]);
    let (ct, tag) = data[16..].split_at(data.len() - 32);
    let mut plain = ct.to_vec();
    ChaCha20Poly1305::new(&i2r.into())
        .decrypt_inout_detached(
            &nonce.into(),
            b"",
            plain.as_mut_slice().into(),
            tag.try_into().unwrap(),
        )
        .expect("the re-derived key opens the data");
    s.add("transport key i→r", &i2r);
    s.add("transport key r→i", &r2i);
    assert_clean("a session", &s, || {
        session_flow(None, None);
    });
}
