//! Interop with `snow` (an independent Noise implementation): the handshake completes in both
//! roles, and messages built from snow's `Split()` keys with the raw primitives are accepted
//! by sealwire, and sealwire's messages open under them.

mod support {
    pub mod chat;
}

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::chat::{Chat, ChatConfig, ChatEvent, ChatId};
use sealwire::crypto::ed25519::IdentityKey;
use sealwire::time::Instant;
use support::chat::*;

const CHAT: [u8; 16] = *b"interop-chat-id!";
const SEED_SNOW: [u8; 32] = [0x51; 32];
const SEED_OURS: [u8; 32] = [0x0e; 32];

fn events<R: rand_core::CryptoRng>(c: &mut Chat<R>) -> Vec<ChatEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn body(frame: &[u8], kind: u8, epoch: u32) -> Vec<u8> {
    assert_eq!(&frame[..30], &header(kind, &CHAT, epoch, 0)[..]);
    frame[30..].to_vec()
}

fn snow_builder<'a>(static_key: &'a [u8], prologue: &'a [u8]) -> snow::Builder<'a> {
    snow::Builder::new(NOISE.parse().unwrap())
        .local_private_key(static_key)
        .unwrap()
        .prologue(prologue)
        .unwrap()
}

#[test]
fn snow_initiator_completes_handshake_with_sealwire_responder_and_messages_flow() {
    let now = Instant::ZERO;
    let pro = prologue(&CHAT, 0);
    let snow_static = [0x22u8; 32];
    let mut snow_i = snow_builder(&snow_static, &pro).build_initiator().unwrap();
    let mut ours = Chat::responder(
        IdentityKey::from_seed(SEED_OURS),
        ChatConfig::new(ChatId::new(CHAT)),
        ChaCha20Rng::from_seed([9; 32]),
    )
    .unwrap();

    let mut buf = [0u8; 1024];
    let n = snow_i.write_message(&[], &mut buf).unwrap();
    let mut f1 = header(1, &CHAT, 0, 0);
    f1.extend_from_slice(&buf[..n]);
    ours.handle_frame(now, &f1).unwrap();

    let f2 = ours.poll_transmit().unwrap();
    let mut payload = [0u8; 1024];
    let n = snow_i.read_message(&body(&f2, 2, 0), &mut payload).unwrap();
    let our_id =
        check_identity_payload(&payload[..n], snow_i.get_remote_static().unwrap(), &CHAT, 0);
    assert_eq!(
        our_id,
        *IdentityKey::from_seed(SEED_OURS).public().as_bytes()
    );

    let snow_pub = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(snow_static));
    let p3 = identity_payload(&SEED_SNOW, snow_pub.as_bytes(), &CHAT, 0);
    let n = snow_i.write_message(&p3, &mut buf).unwrap();
    let mut f3 = header(3, &CHAT, 0, 0);
    f3.extend_from_slice(&buf[..n]);
    ours.handle_frame(now, &f3).unwrap();

    let ev = events(&mut ours);
    let snow_hash = snow_i.get_handshake_hash().to_vec();
    assert!(ev.contains(&ChatEvent::PeerIdentity {
        identity: IdentityKey::from_seed(SEED_SNOW).public()
    }));
    assert!(ev.iter().any(|e| matches!(e, ChatEvent::Established { epoch: 0, handshake_hash } if handshake_hash[..] == snow_hash[..])));

    let (k_i2r, k_r2i) = snow_i.dangerously_get_raw_split();
    // sealwire's confirmation: an empty data frame, counter 0, under snow's responder chain.
    let conf = ours.poll_transmit().unwrap();
    assert_eq!(&conf[..30], &header(0x10, &CHAT, 0, 0)[..]);
    assert_eq!(open_frame(&message_key(&k_r2i, 0), &conf).unwrap(), b"");
    // snow side → sealwire, counters 0 and 1 (delivered in reverse order).
    let m0 = seal_frame(0x10, &CHAT, 0, 0, &message_key(&k_i2r, 0), b"from snow 0");
    let m1 = seal_frame(0x10, &CHAT, 0, 1, &message_key(&k_i2r, 1), b"from snow 1");
    ours.handle_frame(now, &m1).unwrap();
    ours.handle_frame(now, &m0).unwrap();
    let got: Vec<_> = events(&mut ours)
        .into_iter()
        .filter_map(|e| match e {
            ChatEvent::Message {
                counter, plaintext, ..
            } => Some((counter, plaintext)),
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        vec![(1, b"from snow 1".to_vec()), (0, b"from snow 0".to_vec())]
    );
    // sealwire → snow side.
    assert_eq!(ours.send(now, b"from sealwire").unwrap(), 1);
    let f = ours.poll_transmit().unwrap();
    assert_eq!(
        open_frame(&message_key(&k_r2i, 1), &f).unwrap(),
        b"from sealwire"
    );
}

#[test]
fn sealwire_initiator_completes_handshake_with_snow_responder_and_messages_flow() {
    let now = Instant::ZERO;
    let pro = prologue(&CHAT, 0);
    let snow_static = [0x33u8; 32];
    let mut snow_r = snow_builder(&snow_static, &pro).build_responder().unwrap();
    let mut ours = Chat::initiator(
        now,
        IdentityKey::from_seed(SEED_OURS),
        ChatConfig::new(ChatId::new(CHAT)),
        ChaCha20Rng::from_seed([8; 32]),
    )
    .unwrap();

    let f1 = ours.poll_transmit().unwrap();
    let mut out = [0u8; 1024];
    assert_eq!(snow_r.read_message(&body(&f1, 1, 0), &mut out).unwrap(), 0);

    let snow_pub = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(snow_static));
    let p2 = identity_payload(&SEED_SNOW, snow_pub.as_bytes(), &CHAT, 0);
    let mut buf = [0u8; 1024];
    let n = snow_r.write_message(&p2, &mut buf).unwrap();
    let mut f2 = header(2, &CHAT, 0, 0);
    f2.extend_from_slice(&buf[..n]);
    ours.handle_frame(now, &f2).unwrap();

    let f3 = ours.poll_transmit().unwrap();
    let n = snow_r.read_message(&body(&f3, 3, 0), &mut out).unwrap();
    let our_id = check_identity_payload(&out[..n], snow_r.get_remote_static().unwrap(), &CHAT, 0);
    assert_eq!(
        our_id,
        *IdentityKey::from_seed(SEED_OURS).public().as_bytes()
    );
    assert!(snow_r.is_handshake_finished());
    let snow_hash = snow_r.get_handshake_hash().to_vec();
    let (k_i2r, k_r2i) = snow_r.dangerously_get_raw_split();

    // Until the responder speaks in the new epoch, sealwire does not send in it.
    assert_eq!(
        ours.send(now, b"too early"),
        Err(sealwire::chat::ChatError::NotEstablished)
    );
    let hello = seal_frame(
        0x10,
        &CHAT,
        0,
        0,
        &message_key(&k_r2i, 0),
        b"hello from snow",
    );
    ours.handle_frame(now, &hello).unwrap();
    let ev = events(&mut ours);
    assert!(ev.contains(&ChatEvent::PeerIdentity {
        identity: IdentityKey::from_seed(SEED_SNOW).public()
    }));
    assert!(ev.iter().any(|e| matches!(e, ChatEvent::Established { epoch: 0, handshake_hash } if handshake_hash[..] == snow_hash[..])));
    assert!(ev.iter().any(|e| matches!(e, ChatEvent::Message { counter: 0, plaintext, .. } if plaintext == b"hello from snow")));

    for i in 0..3u64 {
        assert_eq!(ours.send(now, format!("msg {i}").as_bytes()).unwrap(), i);
        let f = ours.poll_transmit().unwrap();
        assert_eq!(
            open_frame(&message_key(&k_i2r, i), &f).unwrap(),
            format!("msg {i}").as_bytes()
        );
    }
}

#[test]
fn snow_rejects_a_sealwire_handshake_under_another_chat_id_and_vice_versa() {
    let now = Instant::ZERO;
    let other = prologue(b"another-chat-id!", 0);
    let snow_static = [0x44u8; 32];
    let mut snow_r = snow_builder(&snow_static, &other)
        .build_responder()
        .unwrap();
    let mut ours = Chat::initiator(
        now,
        IdentityKey::from_seed(SEED_OURS),
        ChatConfig::new(ChatId::new(CHAT)),
        ChaCha20Rng::from_seed([7; 32]),
    )
    .unwrap();
    let f1 = ours.poll_transmit().unwrap();
    let mut out = [0u8; 1024];
    snow_r.read_message(&body(&f1, 1, 0), &mut out).unwrap();
    let mut buf = [0u8; 1024];
    let snow_pub = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(snow_static));
    let p2 = identity_payload(&SEED_SNOW, snow_pub.as_bytes(), &CHAT, 0);
    let n = snow_r.write_message(&p2, &mut buf).unwrap();
    let mut f2 = header(2, &CHAT, 0, 0);
    f2.extend_from_slice(&buf[..n]);
    // Different prologue ⇒ different transcript hash ⇒ the encrypted static does not open.
    assert_eq!(
        ours.handle_frame(now, &f2),
        Err(sealwire::chat::ChatError::HandshakeFailed)
    );
    assert!(ours.poll_transmit().is_none());
}
