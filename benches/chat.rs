//! Chat benches (ids `GROUP/FUNCTION`, each group beside its floor): one 1 KiB message sent
//! and received, and the full XX handshake with signed statics.
//!
//! The `ring` feature swaps the crate's ChaCha20-Poly1305 seam globally, so a default build
//! registers `sealwire` and `floor`, a `--features ring` build `sealwire-ring` and
//! `floor-ring` (ring's AEAD, the same HMACs). The handshake group runs in the default build.

#[path = "common/clock.rs"]
mod clock;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use hmac::{Hmac, KeyInit, Mac};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::chat::{data_frame_len, Chat, ChatConfig, ChatId, Opened, HEADER_LEN};
use sealwire::crypto::ed25519::IdentityKey;
use sealwire::time::Instant;
use sha2::Sha256;

const MSG_LEN: usize = 1024;
const CHAT_ID: [u8; 16] = [7; 16];
const SEED_A: [u8; 32] = [1; 32];
const SEED_B: [u8; 32] = [2; 32];

#[cfg(not(feature = "ring"))]
const SEALWIRE: &str = "sealwire";
#[cfg(feature = "ring")]
const SEALWIRE: &str = "sealwire-ring";

type C = Chat<ChaCha20Rng>;

/// One side's identity and configuration.
type Side = (IdentityKey, ChatConfig);

/// Both sides; no automatic rekey may interrupt a long run of messages.
fn sides() -> (Side, Side) {
    let mut cfg = ChatConfig::new(ChatId::new(CHAT_ID));
    cfg.rekey.after_messages = u64::MAX;
    (
        (IdentityKey::from_seed(SEED_A), cfg.clone()),
        (IdentityKey::from_seed(SEED_B), cfg),
    )
}

/// The whole first handshake (three messages and the responder's confirmation), both sides.
fn sealwire_handshake(a: Side, b: Side, ra: ChaCha20Rng, rb: ChaCha20Rng) -> (C, C) {
    let now = Instant::ZERO;
    let mut a = Chat::initiator(now, a.0, a.1, ra).unwrap();
    let mut b = Chat::responder(b.0, b.1, rb).unwrap();
    loop {
        let mut moved = false;
        while let Some(f) = a.poll_transmit() {
            b.handle_frame(now, &f).unwrap();
            moved = true;
        }
        while let Some(f) = b.poll_transmit() {
            a.handle_frame(now, &f).unwrap();
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(a.is_established() && b.is_established());
    (a, b)
}

// ----------------------------------------------------------------------------- the floors

type HmacSha256 = Hmac<Sha256>;

/// One ratchet step with the raw crate: `(HMAC(ck, 1), HMAC(ck, 2))`.
fn step(ck: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(ck).unwrap();
    m.update(&[1]);
    let mk = m.finalize().into_bytes().into();
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(ck).unwrap();
    m.update(&[2]);
    (mk, m.finalize().into_bytes().into())
}

#[cfg(not(feature = "ring"))]
mod aead {
    use chacha20poly1305::aead::AeadInOut;
    use chacha20poly1305::{ChaCha20Poly1305, KeyInit};

    pub const FLOOR: &str = "floor";

    pub fn seal(key: &[u8; 32], ad: &[u8], buf: &mut [u8]) -> [u8; 16] {
        ChaCha20Poly1305::new(key.into())
            .encrypt_inout_detached(&[0u8; 12].into(), ad, buf.into())
            .unwrap()
            .into()
    }

    pub fn open(key: &[u8; 32], ad: &[u8], buf: &mut [u8], tag: &[u8; 16]) {
        ChaCha20Poly1305::new(key.into())
            .decrypt_inout_detached(&[0u8; 12].into(), ad, buf.into(), tag.into())
            .unwrap()
    }
}

#[cfg(feature = "ring")]
mod aead {
    use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};

    pub const FLOOR: &str = "floor-ring";

    fn key(k: &[u8; 32]) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, k).unwrap())
    }

    pub fn seal(k: &[u8; 32], ad: &[u8], buf: &mut [u8]) -> [u8; 16] {
        let n = Nonce::assume_unique_for_key([0; 12]);
        let t = key(k)
            .seal_in_place_separate_tag(n, Aad::from(ad), buf)
            .unwrap();
        t.as_ref().try_into().unwrap()
    }

    pub fn open(k: &[u8; 32], ad: &[u8], buf: &mut [u8], tag: &[u8; 16]) {
        let n = Nonce::assume_unique_for_key([0; 12]);
        key(k)
            .open_in_place_separate_tag(n, Aad::from(ad), Tag::from(*tag), buf, 0..)
            .unwrap();
    }
}

// -------------------------------------------------------------------------------- benches

fn roundtrip(c: &mut Criterion<clock::Clock>) {
    let mut g = c.benchmark_group("chat/roundtrip-1k");
    let now = Instant::from_secs(1);
    let msg = [0x5a_u8; MSG_LEN];

    let (ca, cb) = sides();
    let (mut a, mut b) = sealwire_handshake(
        ca,
        cb,
        ChaCha20Rng::from_seed([3; 32]),
        ChaCha20Rng::from_seed([4; 32]),
    );
    let mut frame = vec![0u8; data_frame_len(MSG_LEN)];
    g.bench_function(SEALWIRE, |bch| {
        bch.iter(|| {
            let n = a.seal_into(now, black_box(&msg), &mut frame).unwrap();
            match b.open_in_place(now, &mut frame[..n]).unwrap() {
                Opened::Message { plaintext, .. } => plaintext.len(),
                other => panic!("not a message: {other:?}"),
            }
        })
    });

    // One seal and one open of 1 KiB under a fresh message key, the 30-byte header as AD,
    // and the four HMAC-SHA256 of the sender's and the receiver's ratchet step.
    let ck = [9u8; 32];
    let header = [1u8; HEADER_LEN];
    let mut buf = [0u8; MSG_LEN];
    g.bench_function(aead::FLOOR, |bch| {
        bch.iter(|| {
            let (mk, next_send) = step(black_box(&ck));
            buf.copy_from_slice(black_box(&msg));
            let tag = aead::seal(&mk, &header, &mut buf);
            let (mk, next_recv) = step(black_box(&ck));
            aead::open(&mk, &header, &mut buf, &tag);
            black_box((next_send, next_recv));
        })
    });
    g.finish();
}

#[cfg(not(feature = "ring"))]
fn handshake(c: &mut Criterion<clock::Clock>) {
    use criterion::BatchSize;
    use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

    let mut g = c.benchmark_group("chat/handshake");
    let mut seed = 0u8;
    g.bench_function("sealwire", |bch| {
        bch.iter_batched(
            || {
                seed = seed.wrapping_add(2);
                let (a, b) = sides();
                (
                    a,
                    b,
                    ChaCha20Rng::from_seed([seed; 32]),
                    ChaCha20Rng::from_seed([seed + 1; 32]),
                )
            },
            |(a, b, ra, rb)| sealwire_handshake(a, b, ra, rb),
            BatchSize::SmallInput,
        )
    });

    // snow's XX with the same prologue and payloads: a fresh static per side (sealwire makes
    // one per epoch), `identity_pub ‖ Ed25519(identity, label ‖ static_pub ‖ chat_id ‖ epoch)`
    // in messages 2 and 3, each checked against the static the peer just proved.
    fn prologue() -> Vec<u8> {
        [&b"sealwire/chat/1"[..], &CHAT_ID, &0u32.to_be_bytes()].concat()
    }
    fn signed(static_pub: &[u8]) -> Vec<u8> {
        [
            &b"sealwire/chat/1 static"[..],
            static_pub,
            &CHAT_ID,
            &0u32.to_be_bytes(),
        ]
        .concat()
    }
    fn payload(id: &SigningKey, static_pub: &[u8]) -> [u8; 96] {
        let mut p = [0u8; 96];
        p[..32].copy_from_slice(id.verifying_key().as_bytes());
        p[32..].copy_from_slice(&id.sign(&signed(static_pub)).to_bytes());
        p
    }
    fn check(payload: &[u8], remote_static: &[u8]) {
        let id: [u8; 32] = payload[..32].try_into().unwrap();
        let sig = Signature::from_bytes(payload[32..96].try_into().unwrap());
        let vk = VerifyingKey::from_bytes(&id).unwrap();
        vk.verify_strict(&signed(remote_static), &sig).unwrap();
    }
    let params: snow::params::NoiseParams = "Noise_XX_25519_ChaChaPoly_SHA256".parse().unwrap();
    let (id_a, id_b) = (
        SigningKey::from_bytes(&SEED_A),
        SigningKey::from_bytes(&SEED_B),
    );
    let pro = prologue();
    g.bench_function("snow-ed25519", |bch| {
        bch.iter_batched(
            || (params.clone(), params.clone()),
            |(pa, pb)| {
                let (mut m1, mut m2, mut m3) = ([0u8; 256], [0u8; 256], [0u8; 256]);
                let mut pl = [0u8; 256];
                let ba = snow::Builder::new(pa);
                let sa = ba.generate_keypair().unwrap();
                let a = ba
                    .local_private_key(&sa.private)
                    .unwrap()
                    .prologue(&pro)
                    .unwrap();
                let mut a = a.build_initiator().unwrap();
                let bb = snow::Builder::new(pb);
                let sb = bb.generate_keypair().unwrap();
                let b = bb
                    .local_private_key(&sb.private)
                    .unwrap()
                    .prologue(&pro)
                    .unwrap();
                let mut b = b.build_responder().unwrap();
                // -> e
                let n1 = a.write_message(&[], &mut m1).unwrap();
                b.read_message(&m1[..n1], &mut pl).unwrap();
                // <- e, ee, s, es, {id_B ‖ sig_B}
                let n2 = b
                    .write_message(&payload(&id_b, &sb.public), &mut m2)
                    .unwrap();
                let k = a.read_message(&m2[..n2], &mut pl).unwrap();
                check(&pl[..k], a.get_remote_static().unwrap());
                // -> s, se, {id_A ‖ sig_A}
                let n3 = a
                    .write_message(&payload(&id_a, &sa.public), &mut m3)
                    .unwrap();
                let k = b.read_message(&m3[..n3], &mut pl).unwrap();
                check(&pl[..k], b.get_remote_static().unwrap());
                (
                    a.into_transport_mode().unwrap(),
                    b.into_transport_mode().unwrap(),
                )
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

#[cfg(not(feature = "ring"))]
criterion_group! {
    name = benches;
    config = clock::config();
    targets = roundtrip, handshake
}
#[cfg(feature = "ring")]
criterion_group! {
    name = benches;
    config = clock::config();
    targets = roundtrip
}
criterion_main!(benches);
