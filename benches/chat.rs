//! Chat benchmarks (DESIGN §8): `chat/roundtrip-1k` and `chat/handshake`.
//!
//! `floor` is the same work with the raw primitives only: one ChaCha20-Poly1305 seal and one
//! open of 1 KiB plus the four HMAC-SHA256 of two ratchet steps. `snow-ed25519` is snow's XX
//! handshake plus the two Ed25519 signatures and two verifications our payloads need.

use std::hint::black_box;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::chat::{Chat, ChatConfig, ChatId, Opened};
use sealwire::crypto::ed25519::IdentityKey;
use sealwire::time::Instant;
use sha2::Sha256;

fn cfg(seed: u8) -> ChatConfig {
    let mut c = ChatConfig::new(ChatId::new([7; 16]), IdentityKey::from_seed([seed; 32]));
    c.rekey.after_messages = u64::MAX;
    c
}

fn handshake(seed: u8) -> (Chat<ChaCha20Rng>, Chat<ChaCha20Rng>) {
    handshake_with((cfg(1), cfg(2)), seed)
}

fn handshake_with(
    (ca, cb): (ChatConfig, ChatConfig),
    seed: u8,
) -> (Chat<ChaCha20Rng>, Chat<ChaCha20Rng>) {
    let now = Instant::ZERO;
    let mut a = Chat::initiator(ca, ChaCha20Rng::from_seed([seed; 32]), now).unwrap();
    let mut b = Chat::responder(cb, ChaCha20Rng::from_seed([seed ^ 1; 32])).unwrap();
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
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}
    (a, b)
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().into()
}

fn roundtrip(c: &mut Criterion) {
    let mut g = c.benchmark_group("chat/roundtrip-1k");
    let plaintext = [0x42u8; 1024];
    let (mut a, mut b) = handshake(1);
    let mut buf = vec![0u8; 2048];
    g.bench_function("sealwire", |bench| {
        bench.iter(|| {
            let n = a
                .seal_into(Instant::ZERO, black_box(&plaintext), &mut buf)
                .unwrap();
            match b.open_in_place(Instant::ZERO, &mut buf[..n]).unwrap() {
                Opened::Message { plaintext, .. } => black_box(plaintext.len()),
                Opened::Control => unreachable!(),
                _ => unreachable!(),
            }
        })
    });
    let mut ck_send = [1u8; 32];
    let mut ck_recv = [1u8; 32];
    let header = [0u8; 30];
    g.bench_function("floor", |bench| {
        bench.iter(|| {
            let mk = hmac(&ck_send, &[1]);
            ck_send = hmac(&ck_send, &[2]);
            let mut body = plaintext;
            let tag = ChaCha20Poly1305::new(&mk.into())
                .encrypt_inout_detached(&[0u8; 12].into(), &header, body.as_mut_slice().into())
                .unwrap();
            let mk2 = hmac(&ck_recv, &[1]);
            ck_recv = hmac(&ck_recv, &[2]);
            ChaCha20Poly1305::new(&mk2.into())
                .decrypt_inout_detached(
                    &[0u8; 12].into(),
                    &header,
                    body.as_mut_slice().into(),
                    &tag,
                )
                .unwrap();
            black_box(body[0])
        })
    });
    g.finish();
}

fn handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("chat/handshake");
    // The identities are long-term (built once, like snow's signing keys below); each
    // iteration runs the whole handshake with fresh per-epoch keys.
    g.bench_function("sealwire", |bench| {
        bench.iter_batched(
            || (cfg(1), cfg(2)),
            |cfgs| black_box(handshake_with(cfgs, 3)),
            BatchSize::SmallInput,
        )
    });
    let params: snow::params::NoiseParams = "Noise_XX_25519_ChaChaPoly_SHA256".parse().unwrap();
    let (sk_i, sk_r) = (
        SigningKey::from_bytes(&[1; 32]),
        SigningKey::from_bytes(&[2; 32]),
    );
    g.bench_function("snow-ed25519", |bench| {
        bench.iter(|| {
            let bi = snow::Builder::new(params.clone());
            let ki = bi.generate_keypair().unwrap();
            let mut i = bi
                .local_private_key(&ki.private)
                .unwrap()
                .prologue(b"p")
                .unwrap()
                .build_initiator()
                .unwrap();
            let br = snow::Builder::new(params.clone());
            let kr = br.generate_keypair().unwrap();
            let mut r = br
                .local_private_key(&kr.private)
                .unwrap()
                .prologue(b"p")
                .unwrap()
                .build_responder()
                .unwrap();
            let (mut m, mut p) = ([0u8; 512], [0u8; 512]);
            let n = i.write_message(&[], &mut m).unwrap();
            r.read_message(&m[..n], &mut p).unwrap();
            let sig_r = sk_r.sign(&kr.public);
            let mut pay = sk_r.verifying_key().to_bytes().to_vec();
            pay.extend_from_slice(&sig_r.to_bytes());
            let n = r.write_message(&pay, &mut m).unwrap();
            let k = i.read_message(&m[..n], &mut p).unwrap();
            let vk = ed25519_dalek::VerifyingKey::from_bytes(p[..32].try_into().unwrap()).unwrap();
            vk.verify_strict(
                i.get_remote_static().unwrap(),
                &ed25519_dalek::Signature::from_bytes(p[32..k].try_into().unwrap()),
            )
            .unwrap();
            let sig_i = sk_i.sign(&ki.public);
            let mut pay = sk_i.verifying_key().to_bytes().to_vec();
            pay.extend_from_slice(&sig_i.to_bytes());
            let n = i.write_message(&pay, &mut m).unwrap();
            let k = r.read_message(&m[..n], &mut p).unwrap();
            let vk = ed25519_dalek::VerifyingKey::from_bytes(p[..32].try_into().unwrap()).unwrap();
            vk.verify_strict(
                r.get_remote_static().unwrap(),
                &ed25519_dalek::Signature::from_bytes(p[32..k].try_into().unwrap()),
            )
            .unwrap();
            black_box((
                i.into_transport_mode().unwrap(),
                r.into_transport_mode().unwrap(),
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, roundtrip, handshakes);
criterion_main!(benches);
