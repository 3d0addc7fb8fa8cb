//! Nothing secret is left in freed memory (issue #12, item 3).
//!
//! This test binary's global allocator ([`watch`]) searches every block freed on the test
//! thread for a registered set of secrets, and zeroes every freed block afterwards (so a hit
//! always names the free that left the secret behind). Each test:
//!
//! 1. runs a realistic flow once, disarmed, recording the random bytes each machine drew and
//!    the frames on the wire;
//! 2. derives from those, independently of sealwire ([`keys`]: the Noise XX and WireGuard key
//!    schedules, the Fabstir init key, the ratchet), every secret the flow handles, checks
//!    the derivation against the recorded frames (the derived keys must open them, so the
//!    search can never be vacuous), and registers them;
//! 3. runs the same flow again (same seeds, same virtual times: same bytes), armed, machines
//!    dropped inside it, and asserts no freed block held any of those secrets.
//!
//! The allocator is the only `unsafe` code of the project, confined to this test binary
//! (`tests/freed_memory/watch.rs`); the library stays `forbid(unsafe_code)`.
//!
//! The `ring` feature is checked too: the tunnel keeps ring's prepared keys in heap blocks it
//! zeroes whole (the stack copies `ring` leaves are outside this test's reach: docs/SECURITY.md,
//! §4). Set `FREED_MEMORY_BACKTRACE=1` to print a backtrace at the first
//! hit of each secret (where it was freed).

#[path = "freed_memory/harness.rs"]
mod harness;
#[path = "freed_memory/keys.rs"]
mod keys;
#[path = "freed_memory/watch.rs"]
mod watch;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, XChaCha20Poly1305};
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use keys::Secrets;

use harness::{assert_clean, serial, watch_flow};

/// Replays a protocol flow armed (see [`watch_flow`]) and checks that it put the same frames
/// on the wire as the dry run `dry` the secrets were derived from.
fn replay_armed(
    secrets: &Secrets,
    dry: &Recording,
    flow: impl FnOnce(&Log),
) -> (Vec<String>, Vec<String>) {
    let log = Log::digest_only();
    let found = watch_flow("armed run", secrets, || flow(&log));
    assert_eq!(
        log.take().digest.finalize(),
        dry.digest.clone().finalize(),
        "the armed run differs from the dry run: the secrets would not be the ones it used"
    );
    found
}

// ------------------------------------------------------------------ recording a dry run

/// What a run records: a digest of the frames on the wire and, in the dry run (`keep`),
/// every random draw per machine and every frame.
#[derive(Default)]
struct Recording {
    keep: bool,
    draws: Vec<(&'static str, Zeroizing<Vec<u8>>)>,
    frames: Vec<Vec<u8>>,
    digest: Sha256,
}

/// A handle to the run's recording. The armed run keeps only the digest: it holds no secret
/// the flow could free.
#[derive(Clone)]
struct Log(Option<Arc<Mutex<Recording>>>);

impl Log {
    fn recording() -> Self {
        Log(Some(Arc::new(Mutex::new(Recording {
            keep: true,
            ..Recording::default()
        }))))
    }
    fn digest_only() -> Self {
        Log(Some(Arc::default()))
    }
    fn frame(&self, f: &[u8]) {
        if let Some(r) = &self.0 {
            let mut r = r.lock().unwrap();
            r.digest.update((f.len() as u64).to_be_bytes());
            r.digest.update(f);
            if r.keep {
                r.frames.push(f.to_vec());
            }
        }
    }
    fn take(&self) -> Recording {
        std::mem::take(&mut *self.0.as_ref().unwrap().lock().unwrap())
    }
}

/// A seeded ChaCha20 stream that reports every draw to the log (when there is one).
struct Tap {
    rng: ChaCha20Rng,
    who: &'static str,
    log: Log,
}

fn tap(who: &'static str, seed: u8, log: &Log) -> Tap {
    Tap {
        rng: ChaCha20Rng::from_seed(seeded(seed)),
        who,
        log: log.clone(),
    }
}

impl rand_core::TryRng for Tap {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.rng.fill_bytes(dst);
        if let Some(r) = &self.log.0 {
            let mut r = r.lock().unwrap();
            if r.keep {
                r.draws.push((self.who, Zeroizing::new(dst.to_vec())));
            }
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for Tap {}

/// A 32-byte seed or key that looks random (test keys must not be runs of one byte: the
/// needles would match fills and padding).
fn seeded(n: u8) -> [u8; 32] {
    let mut out = [0u8; 32];
    ChaCha20Rng::from_seed([n; 32]).fill_bytes(&mut out);
    out
}

/// The 32-byte draws of `who`, in order.
fn draws32(rec: &Recording, who: &str) -> Vec<[u8; 32]> {
    rec.draws
        .iter()
        .filter(|(w, d)| *w == who && d.len() == 32)
        .map(|(_, d)| d[..].try_into().unwrap())
        .collect()
}

// ------------------------------------------------------------------ the planted leak

#[test]
fn the_watch_finds_a_key_left_in_freed_memory_and_only_then() {
    let _g = serial();
    let key = seeded(0xee);
    let mut s = Secrets::default();
    s.add("planted key", &key);

    // A copy dropped without wiping: found.
    let (found, _) = watch_flow("control", &s, || drop(std::hint::black_box(key.to_vec())));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("planted key: in 1 freed block(s), the first of 32 bytes"));

    // Wiped before the free: nothing.
    let (found, _) = watch_flow("control", &s, || {
        drop(std::hint::black_box(Zeroizing::new(key.to_vec())));
    });
    assert_eq!(found, Vec::<String>::new());

    // A wiped vector that grew while it held the key: the old block kept it.
    let (found, _) = watch_flow("control", &s, || {
        let mut v = Zeroizing::new(Vec::with_capacity(40));
        v.extend_from_slice(&key);
        v.extend_from_slice(&[0u8; 64]);
        drop(std::hint::black_box(v));
    });
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("of 40 bytes at offset 0"), "{found:?}");

    // Half a key is still found (each 16-byte half is a needle).
    let (found, _) = watch_flow("control", &s, || {
        drop(std::hint::black_box(key[16..].to_vec()));
    });
    assert_eq!(found.len(), 1, "{found:?}");
}

// ------------------------------------------------------------------ session

mod session_flow {
    use super::*;
    use sealwire::session::*;
    use sealwire::time::{Duration, Instant};

    pub const SESSION_ID: &str = "918273645546372819001122334455667788990011223344";
    pub const JOB_ID: &str = "1029384756102938475610293847561029384756";

    pub fn host_key() -> [u8; 32] {
        seeded(0x51)
    }
    pub fn client_key() -> [u8; 32] {
        seeded(0x52)
    }
    pub const CLIENT_SEED: u8 = 0x53;
    const NODE_SEED: u8 = 0x54;

    pub fn params() -> SessionParams {
        SessionParams {
            session_id: SESSION_ID.into(),
            job_id: JOB_ID.into(),
            chain_id: 84532,
            model: "a-model-with-a-rather-long-name-for-the-frame-builder".into(),
            price_per_token: 0,
            vector_database: Some(VectorDatabase {
                // Escapes make the JSON longer than the text (`\u0001` is six bytes for one).
                manifest_path: format!("s5://{}/manifest.json", "db\u{1}\u{2}\u{3}\"\\".repeat(24)),
                user_address: "0x6e792C2BfA2eD64F68d98b8AB658621f1239d169".into(),
            }),
        }
    }

    pub fn client(log: &Log) -> Client<Tap> {
        let node_pub = SecretKey::from_bytes(&host_key()).unwrap().public_key();
        Client::new(
            SecretKey::from_bytes(&client_key()).unwrap(),
            node_pub,
            ClientConfig::default(),
            tap("client", CLIENT_SEED, log),
        )
        .unwrap()
    }

    fn answer_piece(i: usize) -> String {
        // Pieces below and above the node's 512-byte stack buffer.
        format!("answer piece {i} ")
            + &"lorem ipsum dolor sit amet ".repeat(if i == 2 { 40 } else { 2 })
    }

    /// An init with long ids and a vector database, several prompts each answered in chunks
    /// and a final response, then the session is closed and both machines dropped.
    pub fn run(log: &Log) {
        let mut now = Instant::from_secs(10);
        let mut node = Node::new(
            SecretKey::from_bytes(&host_key()).unwrap(),
            NodeConfig::default(),
            tap("node", NODE_SEED, log),
        )
        .unwrap();
        let mut client = client(log);
        let conn = node.connect().unwrap();
        client.start_session(now, params()).unwrap();
        let mut finished = 0;
        for round in 0..=4 {
            if round > 0 {
                let text =
                    format!("prompt {round}: ") + &"tell me more about it ".repeat(30 * round);
                client.send_prompt(now, &Prompt::new(text)).unwrap();
            }
            // Pump until both sides are quiet.
            loop {
                let mut moved = false;
                while let Some(f) = client.poll_transmit() {
                    log.frame(f.as_bytes());
                    moved = true;
                    let _ = node.handle_frame(now, conn, &f);
                }
                while let Some(e) = node.poll_event() {
                    match e {
                        NodeEvent::SessionRequested(r) => {
                            node.accept(now, conn, &r.session_id).unwrap();
                        }
                        NodeEvent::Prompt(p) => {
                            for i in 0..4 {
                                node.send_chunk(
                                    now,
                                    conn,
                                    &p.session_id,
                                    &p.request_id,
                                    &answer_piece(i),
                                    false,
                                )
                                .unwrap();
                            }
                            let end = StreamEnd::complete(12, 4, 8192);
                            node.finish(now, conn, &p.session_id, &p.request_id, end)
                                .unwrap();
                        }
                        _ => {}
                    }
                }
                while let Some(t) = node.poll_transmit() {
                    log.frame(t.frame.as_bytes());
                    moved = true;
                    let _ = client.handle_frame(now, &t.frame);
                }
                while let Some(e) = client.poll_event() {
                    finished += usize::from(matches!(e, ClientEvent::Finished { .. }));
                }
                if !moved {
                    break;
                }
            }
            now += Duration::from_secs(1);
            client.handle_timeout(now);
            node.handle_timeout(now);
            while let Some(e) = client.poll_event() {
                finished += usize::from(matches!(e, ClientEvent::Finished { .. }));
            }
        }
        assert_eq!(finished, 4, "every prompt was answered");
        node.close_session(conn, SESSION_ID).unwrap();
        while let Some(t) = node.poll_transmit() {
            let _ = client.handle_frame(now, &t.frame);
        }
        while node.poll_event().is_some() {}
        node.disconnect(conn);
        drop(client);
        drop(node);
    }
}

/// The session's secrets: both long-term keys, the session key (raw and as the init's hex),
/// the ephemeral seed and key, the ECDH x and the HKDF key; each checked against the init.
fn session_secrets() -> (Secrets, Recording) {
    let log = Log::recording();
    session_flow::run(&log);
    let rec = log.take();
    let draws: Vec<&Zeroizing<Vec<u8>>> = rec
        .draws
        .iter()
        .filter(|(w, _)| *w == "client")
        .map(|(_, d)| d)
        .collect();
    // The SDK's order: session key (32), ephemeral seed (48), nonce (24).
    let session_key: [u8; 32] = draws[0][..].try_into().unwrap();
    let seed48: [u8; 48] = draws[1][..].try_into().unwrap();
    let eph = keys::ephemeral_from_seed48(&seed48);
    let host = session_flow::host_key();
    let client = session_flow::client_key();

    // Check the derivation against the init on the wire: its ephemeral key, its ciphertext.
    let init: serde_json::Value = serde_json::from_slice(&rec.frames[0]).unwrap();
    let p = &init["payload"];
    let eph_pub = hex::decode(p["ephPubHex"].as_str().unwrap()).unwrap();
    assert_eq!(
        eph_pub,
        keys::secp256k1_pub(&eph),
        "ephemeral key re-derived"
    );
    let x = keys::secp256k1_ecdh_x(&host, &eph_pub);
    let k = keys::fabstir_init_key(&x);
    let nonce = hex::decode(p["nonceHex"].as_str().unwrap()).unwrap();
    let mut sealed = hex::decode(p["ciphertextHex"].as_str().unwrap()).unwrap();
    let tag = sealed.split_off(sealed.len() - 16);
    XChaCha20Poly1305::new(&k.into())
        .decrypt_inout_detached(
            nonce.as_slice().try_into().unwrap(),
            b"",
            sealed.as_mut_slice().into(),
            tag.as_slice().try_into().unwrap(),
        )
        .expect("the re-derived init key opens the init");
    let plain = Zeroizing::new(String::from_utf8(sealed).unwrap());
    assert!(
        plain.contains(&hex::encode(session_key)),
        "the session key re-derived"
    );

    let mut s = Secrets::default();
    for (name, key) in [("host key", host), ("client key", client)] {
        s.add_with_hex(name, &key);
        let mut le = key;
        le.reverse();
        s.add(format!("{name} (little-endian limbs)"), &le);
    }
    s.add_with_hex("session key", &session_key);
    s.add("ephemeral seed (48 bytes)", &seed48);
    s.add("ephemeral key", &eph);
    let mut le = eph;
    le.reverse();
    s.add("ephemeral key (little-endian limbs)", &le);
    s.add("ECDH x", &x);
    s.add("init HKDF key", &k);
    (s, rec)
}

#[test]
fn a_session_run_leaves_no_secret_in_freed_memory() {
    let _g = serial();
    let (secrets, dry) = session_secrets();
    assert_clean("session", replay_armed(&secrets, &dry, session_flow::run));
}

// ------------------------------------------------------------------ chat

mod chat_flow {
    use super::*;
    use sealwire::chat::{Chat, ChatConfig, ChatId};
    use sealwire::crypto::ed25519::IdentityKey;
    use sealwire::seal::{KdfParams, SealKey, UnsealWith};
    use sealwire::time::{Duration, Instant, WallTime};

    const WALL: WallTime = WallTime::from_unix(1_700_000_000, 0);
    pub const CHAT: [u8; 16] = *b"freed-memory-cht";
    pub fn seed_a() -> [u8; 32] {
        seeded(0xa1)
    }
    pub fn seed_b() -> [u8; 32] {
        seeded(0xb2)
    }
    pub fn seal_key() -> [u8; 32] {
        seeded(0x5e)
    }
    pub const PASSPHRASE: &[u8] = b"correct horse battery staple, freed memory";
    /// The cheapest accepted: the test is about where Argon2's 19 MiB go, not their cost.
    pub const KDF: KdfParams = KdfParams::MINIMUM;
    pub const SALT_SEED: u8 = 0x5f;

    type C = Chat<Tap>;

    fn config() -> ChatConfig {
        ChatConfig::new(ChatId::new(CHAT))
    }

    /// Delivers every queued frame both ways until both are quiet; events are dropped.
    fn pump(a: &mut C, b: &mut C, now: Instant, log: &Log) {
        loop {
            let mut moved = false;
            while let Some(f) = a.poll_transmit() {
                log.frame(&f);
                moved = true;
                let _ = b.handle_frame(now, &f);
            }
            while let Some(f) = b.poll_transmit() {
                log.frame(&f);
                moved = true;
                let _ = a.handle_frame(now, &f);
            }
            while a.poll_event().is_some() {}
            while b.poll_event().is_some() {}
            if !moved {
                return;
            }
        }
    }

    /// `n` messages from `from`, taken off its queue (and logged) instead of delivered.
    fn hold(from: &mut C, now: Instant, n: usize, log: &Log) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let text = format!("message {i}: ") + &"some chat text ".repeat(i % 7 + 1);
                from.send(now, text.as_bytes()).unwrap();
                let f = from.poll_transmit().unwrap();
                log.frame(&f);
                f
            })
            .collect()
    }

    /// Delivers the held frames at `order` (others are lost, or delivered later).
    fn deliver(to: &mut C, now: Instant, held: &[Vec<u8>], order: &[usize]) {
        for &i in order {
            let _ = to.handle_frame(now, &held[i]);
        }
        while to.poll_event().is_some() {}
    }

    /// A handshake, messages lost and reordered both ways (skipped keys), the buffer API, a
    /// rekey with late frames of the old epoch, a seal and restore with a raw key and with a
    /// passphrase, a close; every machine dropped at the end.
    pub fn run(log: &Log) {
        let mut now = Instant::from_secs(1000);
        let mut a = Chat::initiator(
            now,
            IdentityKey::from_seed(seed_a()),
            config(),
            tap("a", 1, log),
        )
        .unwrap();
        let mut b =
            Chat::responder(IdentityKey::from_seed(seed_b()), config(), tap("b", 2, log)).unwrap();
        pump(&mut a, &mut b, now, log);
        assert!(a.is_established() && b.is_established());

        // Epoch 0: loss and reordering, a jump that skips many keys at once.
        let held = hold(&mut a, now, 60, log);
        deliver(
            &mut b,
            now,
            &held,
            &[0, 3, 2, 9, 1, 40, 12, 11, 39, 20, 59, 58],
        );
        let back = hold(&mut b, now, 12, log);
        deliver(&mut a, now, &back, &[1, 0, 5, 3, 11]);

        // The buffer API both ways.
        let mut buf = vec![0u8; 256];
        let len = a
            .seal_into(now, b"through the buffer api", &mut buf)
            .unwrap();
        log.frame(&buf[..len]);
        b.open_in_place(now, &mut buf[..len]).unwrap();

        // Rekey; late frames of epoch 0 still open during the grace period.
        a.rekey(now).unwrap();
        pump(&mut a, &mut b, now, log);
        deliver(&mut b, now, &held, &[4, 5, 30, 41]);
        let held1 = hold(&mut b, now, 20, log);
        deliver(&mut a, now, &held1, &[0, 2, 1, 19, 7]);
        pump(&mut a, &mut b, now, log);

        // The grace period ends: the old epoch (and its skipped keys) goes.
        now += Duration::from_secs(61);
        a.handle_timeout(now);
        b.handle_timeout(now);
        pump(&mut a, &mut b, now, log);

        // Seal with a raw key and restore; the restored side rekeys, seals again, sends.
        let key = SealKey::from_bytes(seal_key());
        let record = a.seal(now, WALL, &key).unwrap();
        let seen = a.seal_sequence();
        drop(a);
        let mut a = Chat::unseal(
            now,
            WALL,
            IdentityKey::from_seed(seed_a()),
            config(),
            &record,
            UnsealWith::Key(&key),
            Some(seen),
            tap("a2", 3, log),
        )
        .unwrap();
        pump(&mut a, &mut b, now, log);
        a.seal(now, WALL, &key).unwrap();
        let held2 = hold(&mut a, now, 10, log);
        deliver(&mut b, now, &held2, &[0, 2, 9]);
        pump(&mut a, &mut b, now, log);

        // Seal under a passphrase (Argon2id) and restore with the passphrase.
        now += Duration::from_secs(31);
        let pkey = SealKey::from_passphrase(
            PASSPHRASE,
            KDF,
            &mut ChaCha20Rng::from_seed([SALT_SEED; 32]),
        )
        .unwrap();
        let record = a.seal(now, WALL, &pkey).unwrap();
        drop(a);
        drop(pkey);
        let mut a = Chat::unseal(
            now,
            WALL,
            IdentityKey::from_seed(seed_a()),
            config(),
            &record,
            UnsealWith::Passphrase(PASSPHRASE),
            None,
            tap("a3", 4, log),
        )
        .unwrap();
        pump(&mut a, &mut b, now, log);

        // Close.
        a.close().unwrap();
        pump(&mut a, &mut b, now, log);
        drop(a);
        drop(b);
    }
}

/// Every secret of the chat run, checked against the frames: the identity seeds and their
/// expanded keys, the seal key, the passphrase and the Argon2 memory, every X25519 key drawn,
/// and for each handshake on the wire its whole Noise schedule and both ratchets far enough
/// to cover every counter used and every sealed lease.
fn chat_secrets() -> (Secrets, Recording) {
    let log = Log::recording();
    chat_flow::run(&log);
    let rec = log.take();
    let mut s = Secrets::default();

    for (name, seed) in [
        ("identity A", chat_flow::seed_a()),
        ("identity B", chat_flow::seed_b()),
    ] {
        s.add(format!("{name} seed"), &seed);
        let h = Sha512::digest(seed);
        s.add(format!("{name} expanded scalar bytes"), &h[..32]);
        s.add(format!("{name} expanded hash prefix"), &h[32..]);
    }
    s.add_with_hex("seal key", &chat_flow::seal_key());
    s.add("passphrase", chat_flow::PASSPHRASE);
    // The Argon2id run of the passphrase seal, with the salt the sealer draws: its key and
    // samples of its memory blocks (one pass: the blocks stay as computed).
    let mut salt = [0u8; 16];
    ChaCha20Rng::from_seed([chat_flow::SALT_SEED; 32]).fill_bytes(&mut salt);
    let k = chat_flow::KDF;
    let params = argon2::Params::new(k.memory_kib, k.iterations, k.parallelism, Some(32)).unwrap();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut blocks = vec![argon2::Block::new(); k.memory_kib as usize];
    let mut derived = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into_with_memory(chat_flow::PASSPHRASE, &salt, &mut derived[..], &mut blocks)
        .unwrap();
    s.add("passphrase seal key (Argon2id output)", &derived[..]);
    for i in [0, 1, 2, 7, 64, 128, 200, 255] {
        let bytes: Vec<u8> = blocks[i].as_ref()[..4]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        s.add(format!("Argon2 memory block {i}"), &bytes);
    }
    // (Dropped while disarmed: the watch scrubs it, so no later scan sees these bytes.)
    drop(blocks);

    // Every X25519 key drawn, by machine, in (static, ephemeral) pairs.
    let mut pairs: Vec<(String, [u8; 32], [u8; 32])> = Vec::new();
    for who in ["a", "b", "a2", "a3"] {
        let d = draws32(&rec, who);
        assert!(
            d.len().is_multiple_of(2),
            "{who} draws X25519 keys in pairs"
        );
        for (n, p) in d.chunks(2).enumerate() {
            s.add(format!("{who} handshake {n} Noise static"), &p[0]);
            s.add(format!("{who} handshake {n} ephemeral"), &p[1]);
            pairs.push((format!("{who}#{n}"), p[0], p[1]));
        }
    }
    let find = |e_pub: &[u8]| {
        pairs
            .iter()
            .find(|(_, _, e)| keys::x25519_pub(e) == e_pub)
            .cloned()
    };

    // Frames: version 1 | kind | chat_id 16 | epoch u32 | counter u64 | body.
    let epoch = |f: &[u8]| u32::from_be_bytes(f[18..22].try_into().unwrap());
    let counter = |f: &[u8]| u64::from_be_bytes(f[22..30].try_into().unwrap());
    let kind = |f: &[u8]| f[1];
    let mut schedules = 0;
    let mut done: Vec<(String, String)> = Vec::new();
    for m1 in rec.frames.iter().filter(|f| kind(f) == 1) {
        for m2 in rec
            .frames
            .iter()
            .filter(|f| kind(f) == 2 && epoch(f) == epoch(m1))
        {
            let (Some((ni, s_i, e_i)), Some((nr, s_r, e_r))) =
                (find(&m1[30..62]), find(&m2[30..62]))
            else {
                continue;
            };
            if done.contains(&(ni.clone(), nr.clone())) {
                continue;
            }
            done.push((ni.clone(), nr.clone()));
            let ep = epoch(m1);
            let label = format!("epoch {ep} ({ni}→{nr})");
            let (i2r, r2i) = keys::noise_xx(
                &label,
                &s_i,
                &e_i,
                &keys::x25519_pub(&s_r),
                &keys::x25519_pub(&e_r),
                &mut s,
            );
            // The data and close frames of this epoch that these chains open.
            let data: Vec<&Vec<u8>> = rec
                .frames
                .iter()
                .filter(|f| matches!(kind(f), 0x10 | 0x20) && epoch(f) == ep)
                .collect();
            let top = data.iter().map(|f| counter(f)).max().unwrap_or(0);
            let mut opened = 0;
            for (dir, ck0) in [("i→r", i2r), ("r→i", r2i)] {
                // Far enough for every counter used and a sealed lease (128) past it.
                let chain = keys::ratchet(&ck0, top + 200);
                for f in &data {
                    let (h, rest) = f.split_at(30);
                    let (ct, tag) = rest.split_at(rest.len() - 16);
                    let mut buf = ct.to_vec();
                    let mk = chain[counter(f) as usize].1;
                    opened += usize::from(
                        ChaCha20Poly1305::new(&mk.into())
                            .decrypt_inout_detached(
                                &[0u8; 12].into(),
                                h,
                                buf.as_mut_slice().into(),
                                tag.try_into().unwrap(),
                            )
                            .is_ok(),
                    );
                }
                for (n, (ck, mk)) in chain.iter().enumerate() {
                    s.add(format!("{label} {dir} chain key {n}"), ck);
                    s.add(format!("{label} {dir} message key {n}"), mk);
                }
            }
            if opened > 0 {
                schedules += 1;
            }
        }
    }
    // Epochs 0 and 1, the raw-key restore's epoch and the passphrase restore's epoch.
    assert!(
        schedules >= 4,
        "only {schedules} handshakes re-derived from the wire"
    );
    (s, rec)
}

#[test]
fn a_chat_run_leaves_no_secret_in_freed_memory() {
    let _g = serial();
    let (secrets, dry) = chat_secrets();
    assert_clean("chat", replay_armed(&secrets, &dry, chat_flow::run));
}

// ------------------------------------------------------------------ tunnel

mod tunnel_flow {
    use super::*;
    use sealwire::crypto::x25519::StaticSecret;
    use sealwire::crypto::SecretBytes;
    use sealwire::time::{Duration, Instant, WallTime};
    use sealwire::tunnel::{Action, Device, DeviceConfig, PeerConfig};
    use std::collections::VecDeque;
    use std::net::SocketAddr;

    pub fn key_a() -> [u8; 32] {
        seeded(0x71)
    }
    pub fn key_b() -> [u8; 32] {
        seeded(0x72)
    }
    pub fn psk() -> [u8; 32] {
        seeded(0x73)
    }

    type D = Device<Tap>;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// An IPv4/UDP packet `src` → `dst` (header checksum not needed by the device).
    fn packet(src: [u8; 4], dst: [u8; 4], n: usize) -> Vec<u8> {
        let payload = format!("tunnel payload {n} ").repeat(n % 5 + 1);
        let total = 28 + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        p[28..].copy_from_slice(payload.as_bytes());
        p
    }

    struct Net {
        to_a: VecDeque<Vec<u8>>,
        to_b: VecDeque<Vec<u8>>,
        delivered: usize,
    }

    impl Net {
        /// Moves datagrams until both devices are quiet.
        fn pump(&mut self, a: &mut D, b: &mut D, now: Instant, log: &Log) {
            let (addr_a, addr_b) = (addr("192.0.2.1:51820"), addr("192.0.2.2:51820"));
            let mut out = [0u8; 2048];
            loop {
                while let Some(t) = a.poll_transmit() {
                    self.to_b.push_back(t.payload);
                }
                while let Some(t) = b.poll_transmit() {
                    self.to_a.push_back(t.payload);
                }
                let (dev, from, d, back) = if let Some(d) = self.to_b.pop_front() {
                    (&mut *b, addr_a, d, &mut self.to_a)
                } else if let Some(d) = self.to_a.pop_front() {
                    (&mut *a, addr_b, d, &mut self.to_b)
                } else {
                    break;
                };
                log.frame(&d);
                match dev.decapsulate(now, from, &d, &mut out) {
                    Ok(Action::WriteToNetwork { len, .. }) => back.push_back(out[..len].to_vec()),
                    Ok(Action::WriteToTunnel { .. }) => self.delivered += 1,
                    _ => {}
                }
            }
            while a.poll_event().is_some() {}
            while b.poll_event().is_some() {}
        }

        fn send(&mut self, from: &mut D, now: Instant, packet: &[u8], to_b: bool) {
            let mut out = [0u8; 2048];
            if let Ok(Action::WriteToNetwork { len, .. }) = from.encapsulate(now, packet, &mut out)
            {
                let q = if to_b { &mut self.to_b } else { &mut self.to_a };
                q.push_back(out[..len].to_vec());
            }
        }

        /// Traffic both ways.
        fn traffic(&mut self, a: &mut D, b: &mut D, now: Instant, log: &Log) {
            for n in 0..6 {
                self.send(a, now, &packet([10, 0, 0, 1], [10, 0, 0, 2], n), true);
                self.send(b, now, &packet([10, 0, 0, 2], [10, 0, 0, 1], n), false);
                self.pump(a, b, now, log);
            }
        }

        /// Runs both devices' timers up to `until`, delivering what they send.
        fn run_timers(
            &mut self,
            a: &mut D,
            b: &mut D,
            mut now: Instant,
            until: Instant,
            log: &Log,
        ) -> Instant {
            loop {
                let next = [a.poll_timeout(), b.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                match next {
                    Some(t) if t <= until => now = t.max(now),
                    _ => return until,
                }
                a.handle_timeout(now);
                b.handle_timeout(now);
                self.pump(a, b, now, log);
            }
        }
    }

    /// Two devices with a pre-shared key: a handshake, data both ways, a rekey after
    /// REKEY_AFTER_TIME from each side, the old sessions expiring, both peers removed, both
    /// devices dropped.
    pub fn run(log: &Log) {
        let mut a = Device::new(
            StaticSecret::from_bytes(key_a()),
            DeviceConfig::default(),
            tap("a", 5, log),
        )
        .unwrap();
        let mut b = Device::new(
            StaticSecret::from_bytes(key_b()),
            DeviceConfig::default(),
            tap("b", 6, log),
        )
        .unwrap();
        let (pa, pb) = (a.public_key(), b.public_key());
        let mut peer_b = PeerConfig::new(pb);
        peer_b.endpoint = Some(addr("192.0.2.2:51820"));
        peer_b.preshared_key = Some(SecretBytes::new(psk()));
        peer_b.allowed_ips.push("10.0.0.2/32".parse().unwrap());
        a.add_peer(Instant::ZERO, peer_b).unwrap();
        let mut peer_a = PeerConfig::new(pa);
        peer_a.endpoint = Some(addr("192.0.2.1:51820"));
        peer_a.preshared_key = Some(SecretBytes::new(psk()));
        peer_a.allowed_ips.push("10.0.0.1/32".parse().unwrap());
        b.add_peer(Instant::ZERO, peer_a).unwrap();
        let mut now = Instant::from_secs(1);
        a.set_wall_clock(now, WallTime::from_unix(1_750_000_000, 0));
        b.set_wall_clock(now, WallTime::from_unix(1_750_000_000, 0));
        let mut net = Net {
            to_a: VecDeque::new(),
            to_b: VecDeque::new(),
            delivered: 0,
        };

        net.traffic(&mut a, &mut b, now, log);
        assert!(net.delivered >= 10, "data flows: {}", net.delivered);
        // Past REKEY_AFTER_TIME (120 s): the next packet from a starts a new handshake.
        for _ in 0..2 {
            now = net.run_timers(&mut a, &mut b, now, now + Duration::from_secs(125), log);
            net.traffic(&mut a, &mut b, now, log);
            net.traffic(&mut b, &mut a, now, log);
        }
        // Past REJECT_AFTER_TIME × 3: every session and handshake is erased.
        now = net.run_timers(&mut a, &mut b, now, now + Duration::from_secs(600), log);
        net.traffic(&mut a, &mut b, now, log);
        a.remove_peer(&pb).unwrap();
        b.remove_peer(&pa).unwrap();
        drop(a);
        drop(b);
    }
}

/// Every secret of the tunnel run, checked against the frames: both static keys, the PSK,
/// every key the devices drew (ephemerals, cookie secrets), and for each handshake on the
/// wire its whole WireGuard schedule and transport keys (these must open the data that
/// followed).
fn tunnel_secrets() -> (Secrets, Recording) {
    let log = Log::recording();
    tunnel_flow::run(&log);
    let rec = log.take();
    let mut s = Secrets::default();
    let (ka, kb, psk) = (
        tunnel_flow::key_a(),
        tunnel_flow::key_b(),
        tunnel_flow::psk(),
    );
    s.add_with_hex("static key A", &ka);
    s.add_with_hex("static key B", &kb);
    s.add_with_hex("preshared key", &psk);
    for (name, k) in [("A", ka), ("B", kb)] {
        s.add(
            format!("static key {name} (base64)"),
            sealwire::crypto::base64::encode(&k).as_bytes(),
        );
    }
    let draws: Vec<(&str, [u8; 32])> = ["a", "b"]
        .into_iter()
        .flat_map(|w| draws32(&rec, w).into_iter().map(move |d| (w, d)))
        .collect();
    for (n, (who, d)) in draws.iter().enumerate() {
        s.add(
            format!("device {who} draw {n} (ephemeral or cookie secret)"),
            d,
        );
    }
    let find = |e_pub: &[u8]| {
        draws
            .iter()
            .find(|(_, d)| keys::x25519_pub(d) == e_pub)
            .copied()
    };

    // Initiation: type 1 | sender 4 | ephemeral 32 | …; response: type 2 | sender 4 |
    // receiver 4 | ephemeral 32 | …; data: type 4 | receiver 4 | counter 8 | sealed.
    let ty = |f: &[u8]| f[0];
    let mut opened = 0;
    let mut schedules = 0;
    let mut done = Vec::new();
    for init in rec.frames.iter().filter(|f| ty(f) == 1 && f.len() == 148) {
        let resp = rec
            .frames
            .iter()
            .find(|f| ty(f) == 2 && f.len() == 92 && f[8..12] == init[4..8]);
        let (Some((wi, e_i)), Some((_, e_r))) =
            (find(&init[8..40]), resp.and_then(|r| find(&r[12..44])))
        else {
            continue;
        };
        if done.contains(&e_i) {
            continue;
        }
        done.push(e_i);
        let (s_i, s_r) = if wi == "a" { (ka, kb) } else { (kb, ka) };
        let label = format!("handshake {schedules} ({wi} initiates)");
        let (i2r, r2i) = keys::wireguard(
            &label,
            &s_i,
            &e_i,
            &keys::x25519_pub(&s_r),
            &e_r,
            &psk,
            &mut s,
        );
        schedules += 1;
        for (dir, k) in [("i→r", i2r), ("r→i", r2i)] {
            for f in rec.frames.iter().filter(|f| ty(f) == 4 && f.len() >= 32) {
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&f[8..16]);
                let (ct, tag) = f[16..].split_at(f.len() - 32);
                let mut buf = ct.to_vec();
                opened += usize::from(
                    ChaCha20Poly1305::new(&k.into())
                        .decrypt_inout_detached(
                            &nonce.into(),
                            b"",
                            buf.as_mut_slice().into(),
                            tag.try_into().unwrap(),
                        )
                        .is_ok(),
                );
            }
            // Under `ring` too: the keypair's heap block (ring's prepared key inline) is
            // zeroed whole when it goes.
            s.add(format!("{label} transport key {dir}"), &k);
        }
    }
    assert!(
        schedules >= 3,
        "only {schedules} handshakes re-derived from the wire"
    );
    assert!(
        opened >= 30,
        "the re-derived transport keys open the data ({opened})"
    );
    (s, rec)
}

#[test]
fn a_tunnel_run_leaves_no_secret_in_freed_memory() {
    let _g = serial();
    let (secrets, dry) = tunnel_secrets();
    assert_clean("tunnel", replay_armed(&secrets, &dry, tunnel_flow::run));
}
