//! Helpers shared by the chat integration tests (`mod support { pub mod chat; }`). The frame,
//! key and signature helpers are written against the raw primitive crates (hmac, sha2,
//! chacha20poly1305, ed25519-dalek), not against sealwire, so the tests check sealwire against
//! an independent construction of the same bytes; `Pair` drives two sealwire machines.
#![allow(dead_code)]

use std::convert::Infallible;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use ed25519_dalek::Signer;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// An RNG that hands out a fixed script of bytes (then zeros), so the machine's keys are known.
pub struct Script {
    bytes: Vec<u8>,
    pos: usize,
}

impl Script {
    pub fn new(parts: &[&[u8]]) -> Self {
        Script {
            bytes: parts.concat(),
            pos: 0,
        }
    }
    pub fn used(&self) -> usize {
        self.pos
    }
}

impl rand_core::TryRng for Script {
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
        for d in dst.iter_mut() {
            *d = self.bytes.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for Script {}

pub fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().into()
}

/// Message key number `n` of the chain starting at `ck0`.
pub fn message_key(ck0: &[u8; 32], n: u64) -> [u8; 32] {
    let mut ck = *ck0;
    for _ in 0..n {
        ck = hmac(&ck, &[2]);
    }
    hmac(&ck, &[1])
}

pub fn header(kind: u8, chat_id: &[u8; 16], epoch: u32, counter: u64) -> Vec<u8> {
    let mut h = vec![1u8, kind];
    h.extend_from_slice(chat_id);
    h.extend_from_slice(&epoch.to_be_bytes());
    h.extend_from_slice(&counter.to_be_bytes());
    h
}

/// A data (0x10) or close (0x20) frame built from the raw primitives.
pub fn seal_frame(
    kind: u8,
    chat_id: &[u8; 16],
    epoch: u32,
    counter: u64,
    mk: &[u8; 32],
    pt: &[u8],
) -> Vec<u8> {
    let h = header(kind, chat_id, epoch, counter);
    let mut body = pt.to_vec();
    let c = ChaCha20Poly1305::new(mk.into());
    let tag = c
        .encrypt_inout_detached(&[0u8; 12].into(), &h, body.as_mut_slice().into())
        .unwrap();
    let mut f = h;
    f.extend_from_slice(&body);
    f.extend_from_slice(&tag);
    f
}

/// Opens a frame built by anyone, with the raw primitives.
pub fn open_frame(mk: &[u8; 32], frame: &[u8]) -> Option<Vec<u8>> {
    let (h, rest) = frame.split_at(30);
    let (ct, tag) = rest.split_at(rest.len() - 16);
    let mut buf = ct.to_vec();
    let c = ChaCha20Poly1305::new(mk.into());
    c.decrypt_inout_detached(
        &[0u8; 12].into(),
        h,
        buf.as_mut_slice().into(),
        tag.try_into().ok()?,
    )
    .ok()?;
    Some(buf)
}

/// `identity_pub ‖ Ed25519(seed, "sealwire/chat/1 static" ‖ static ‖ chat_id ‖ epoch)`.
pub fn identity_payload(
    seed: &[u8; 32],
    static_pub: &[u8],
    chat_id: &[u8; 16],
    epoch: u32,
) -> Vec<u8> {
    let sk = ed25519_dalek::SigningKey::from_bytes(seed);
    let mut msg = b"sealwire/chat/1 static".to_vec();
    msg.extend_from_slice(static_pub);
    msg.extend_from_slice(chat_id);
    msg.extend_from_slice(&epoch.to_be_bytes());
    let sig = sk.sign(&msg).to_bytes();
    let mut p = sk.verifying_key().to_bytes().to_vec();
    p.extend_from_slice(&sig);
    p
}

/// Checks a peer's identity payload against the Noise static key it proved.
pub fn check_identity_payload(
    payload: &[u8],
    static_pub: &[u8],
    chat_id: &[u8; 16],
    epoch: u32,
) -> [u8; 32] {
    assert_eq!(payload.len(), 96);
    let id: [u8; 32] = payload[..32].try_into().unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(payload[32..].try_into().unwrap());
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&id).unwrap();
    let mut msg = b"sealwire/chat/1 static".to_vec();
    msg.extend_from_slice(static_pub);
    msg.extend_from_slice(chat_id);
    msg.extend_from_slice(&epoch.to_be_bytes());
    vk.verify_strict(&msg, &sig)
        .expect("identity signature verifies");
    id
}

pub fn prologue(chat_id: &[u8; 16], epoch: u32) -> Vec<u8> {
    let mut p = b"sealwire/chat/1".to_vec();
    p.extend_from_slice(chat_id);
    p.extend_from_slice(&epoch.to_be_bytes());
    p
}

pub const NOISE: &str = "Noise_XX_25519_ChaChaPoly_SHA256";

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::chat::{Chat, ChatConfig, ChatError, ChatEvent, ChatId};
use sealwire::crypto::ed25519::IdentityKey;
use sealwire::time::{Instant, WallTime};

pub const SEED_A: [u8; 32] = [0xa1; 32];
pub const SEED_B: [u8; 32] = [0xb2; 32];
pub const PAIR_CHAT: [u8; 16] = [0x5c; 16];

/// The configuration of the pair's chat.
/// The wall-clock time the chat tests seal and restore at (one moment: no time on disk).
pub const WALL: WallTime = WallTime::from_unix(1_700_000_000, 0);

/// A's chat restored at `now` (and [`WALL`]) from `record` under the raw `key`, with the
/// default config, `seen` as the proven seal sequence and a generator seeded with `seed`.
pub fn restore_a(
    now: Instant,
    record: &[u8],
    key: &sealwire::seal::SealKey,
    seen: Option<u64>,
    seed: u8,
) -> Result<Chat<ChaCha20Rng>, ChatError> {
    Chat::unseal(
        now,
        WALL,
        identity(SEED_A),
        config(),
        record,
        sealwire::seal::UnsealWith::Key(key),
        seen,
        ChaCha20Rng::from_seed([seed; 32]),
    )
}

pub fn config() -> ChatConfig {
    ChatConfig::new(ChatId::new(PAIR_CHAT))
}

/// The identity key made from `seed`.
pub fn identity(seed: [u8; 32]) -> IdentityKey {
    IdentityKey::from_seed(seed)
}

/// Two machines and a clock; frames are moved by hand or with `pump`.
pub struct Pair {
    pub a: Chat<ChaCha20Rng>,
    pub b: Chat<ChaCha20Rng>,
    pub now: Instant,
}

impl Pair {
    pub fn with(seed: u8, edit: impl Fn(&mut ChatConfig)) -> Pair {
        let mut ca = config();
        let mut cb = config();
        edit(&mut ca);
        edit(&mut cb);
        let now = Instant::from_secs(1000);
        let a = Chat::initiator(
            now,
            identity(SEED_A),
            ca,
            ChaCha20Rng::from_seed([seed; 32]),
        )
        .unwrap();
        let b = Chat::responder(
            identity(SEED_B),
            cb,
            ChaCha20Rng::from_seed([seed.wrapping_add(1); 32]),
        )
        .unwrap();
        Pair { a, b, now }
    }

    pub fn new(seed: u8) -> Pair {
        Self::with(seed, |_| {})
    }

    /// A pair whose first epoch is established, events drained.
    pub fn established(seed: u8) -> Pair {
        let mut p = Self::new(seed);
        p.pump().unwrap();
        assert!(p.a.is_established() && p.b.is_established());
        p.a_events();
        p.b_events();
        p
    }

    /// Delivers every queued frame both ways until both are quiet; stops at the first error.
    pub fn pump(&mut self) -> Result<(), ChatError> {
        loop {
            let mut moved = false;
            while let Some(f) = self.a.poll_transmit() {
                self.b.handle_frame(self.now, &f)?;
                moved = true;
            }
            while let Some(f) = self.b.poll_transmit() {
                self.a.handle_frame(self.now, &f)?;
                moved = true;
            }
            if !moved {
                return Ok(());
            }
        }
    }

    pub fn a_events(&mut self) -> Vec<ChatEvent> {
        std::iter::from_fn(|| self.a.poll_event()).collect()
    }

    pub fn b_events(&mut self) -> Vec<ChatEvent> {
        std::iter::from_fn(|| self.b.poll_event()).collect()
    }
}

pub fn messages(ev: &[ChatEvent]) -> Vec<(u32, u64, Vec<u8>)> {
    ev.iter()
        .filter_map(|e| match e {
            ChatEvent::Message {
                epoch,
                counter,
                plaintext,
            } => Some((*epoch, *counter, plaintext.clone())),
            _ => None,
        })
        .collect()
}

// ------------------------------------------------------------------ the relay

use sealwire::chat::relay::{
    prove_registration, ConnId, Downlink, Relay, RelayConfig, RelayError, RelayEvent, Transmit,
    Uplink,
};
use sealwire::chat::{FrameHeader, FrameKind, MSG1_BODY_LEN, TAG_LEN};
use sealwire::crypto::ed25519::IdentityPublic;

pub type TestRelay = Relay<ChaCha20Rng>;

/// A relay with the default configuration changed by `edit`.
pub fn relay_with(edit: impl FnOnce(&mut RelayConfig)) -> TestRelay {
    let mut cfg = RelayConfig::default();
    edit(&mut cfg);
    Relay::new(cfg, ChaCha20Rng::from_seed([0x4e; 32])).unwrap()
}

/// Everything the relay queued for the streams.
pub fn transmits(relay: &mut TestRelay) -> Vec<Transmit> {
    std::iter::from_fn(|| relay.poll_transmit()).collect()
}

/// Everything the relay reported.
pub fn relay_events(relay: &mut TestRelay) -> Vec<RelayEvent> {
    std::iter::from_fn(|| relay.poll_event()).collect()
}

/// Opens a stream and sends `Register` and an honest `Proof` for the identity of `seed`.
/// Returns the stream and the outcome of the proof; the relay's answers stay queued.
pub fn try_register(
    relay: &mut TestRelay,
    now: Instant,
    seed: [u8; 32],
) -> (ConnId, Result<(), RelayError>) {
    try_register_with(relay, now, seed, false)
}

/// [`try_register`], registering with `acks` (the app acknowledges what it kept).
pub fn try_register_with(
    relay: &mut TestRelay,
    now: Instant,
    seed: [u8; 32],
    acks: bool,
) -> (ConnId, Result<(), RelayError>) {
    let key = IdentityKey::from_seed(seed);
    let conn = relay.connect(now).unwrap();
    let identity = key.public().as_bytes().to_vec();
    let app_id = format!("app-{:02x}", seed[0]);
    relay
        .handle_uplink(
            now,
            conn,
            Uplink::Register {
                identity,
                app_id,
                acks,
            },
        )
        .unwrap();
    let nonce = match transmits(relay).as_slice() {
        [Transmit {
            to,
            message: Downlink::Challenge { nonce },
        }] if *to == conn => *nonce,
        other => panic!("expected one challenge, got {other:?}"),
    };
    let signature = prove_registration(&key, &nonce).to_vec();
    let proved = relay.handle_uplink(now, conn, Uplink::Proof { signature });
    (conn, proved)
}

/// Opens a stream and registers the identity of `seed` on it. Returns the stream and the
/// frames that waited for the identity; the relay's queues are drained.
pub fn register(relay: &mut TestRelay, now: Instant, seed: [u8; 32]) -> (ConnId, u32) {
    let (conn, proved) = try_register(relay, now, seed);
    proved.unwrap();
    let queued = transmits(relay)
        .into_iter()
        .find_map(|t| match t.message {
            Downlink::Registered { queued_frames } if t.to == conn => Some(queued_frames),
            _ => None,
        })
        .expect("registered");
    relay_events(relay);
    (conn, queued)
}

/// `conn` starts `chat`, pinning `pin` if given. `Ok(peer)` from the `Started` answer, or the
/// error of the `Rejected` one; the relay's queues are drained.
pub fn start(
    relay: &mut TestRelay,
    now: Instant,
    conn: ConnId,
    chat: [u8; 16],
    pin: Option<[u8; 32]>,
) -> Result<Option<IdentityPublic>, RelayError> {
    let up = Uplink::Start {
        chat_id: chat.to_vec(),
        peer_identity: pin.map(|p| p.to_vec()).unwrap_or_default(),
    };
    let result = relay.handle_uplink(now, conn, up);
    let answer = transmits(relay)
        .into_iter()
        .find(|t| t.to == conn)
        .expect("an answer");
    relay_events(relay);
    match (result, answer.message) {
        (Ok(()), Downlink::Started { peer_identity, .. }) => Ok(peer_identity),
        (Err(e), Downlink::Rejected { error, .. }) if e == error => Err(e),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// A well-formed handshake message 1 for `chat` at `epoch` (no keys needed).
pub fn handshake_init(chat: [u8; 16], epoch: u32) -> Vec<u8> {
    let mut f = FrameHeader {
        kind: FrameKind::HandshakeInit,
        chat_id: ChatId::new(chat),
        epoch,
        counter: 0,
    }
    .encode()
    .to_vec();
    f.extend_from_slice(&[0x42; MSG1_BODY_LEN]);
    f
}

/// A well-formed (keyless, so unauthenticated) data frame for `chat` whose counter is `seq`
/// and whose body carries `seq` too, so a test can tell frames apart after routing.
pub fn data_frame(chat: [u8; 16], seq: u64, plaintext_len: usize) -> Vec<u8> {
    let mut f = FrameHeader {
        kind: FrameKind::Data,
        chat_id: ChatId::new(chat),
        epoch: 0,
        counter: seq,
    }
    .encode()
    .to_vec();
    let mut body = vec![0u8; plaintext_len.max(8) + TAG_LEN];
    body[..8].copy_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&body);
    f
}

/// Every frame waiting for `conn`, in delivery order.
pub fn deliver_all(relay: &mut TestRelay, conn: ConnId) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| relay.poll_frame(conn)).collect()
}
