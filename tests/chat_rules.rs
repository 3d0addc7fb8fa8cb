//! One test per rule of the chat protocol (docs/chat-protocol.md) and of its keyless relay
//! (`sealwire::chat::relay`), named for the rule; the allocation-free message path too.

mod support {
    pub mod chat;
}

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::chat::relay::{
    prove_registration, ConnId, Delivered, Downlink, Forward, Relay, RelayConfig, RelayError,
    RelayEvent, Transmit, Uplink,
};
use sealwire::chat::{
    Chat, ChatError, ChatEvent, ChatId, CloseReason, FrameHeader, FrameKind, Opened,
};
use sealwire::crypto::ed25519::IdentityKey;
use sealwire::seal::{KdfParams, SealError, SealKey, UnsealWith};
use sealwire::time::{Duration, Instant, WallTime};
use support::chat::*;

fn send_frame(c: &mut Chat<ChaCha20Rng>, now: Instant, msg: &[u8]) -> Vec<u8> {
    c.send(now, msg).unwrap();
    c.poll_transmit().unwrap()
}

// ------------------------------------------------------------------ handshake

#[test]
fn handshake_establishes_both_sides_and_reports_the_verified_peer_identity() {
    let mut p = Pair::new(1);
    p.pump().unwrap();
    let (ea, eb) = (p.a_events(), p.b_events());
    let id_a = IdentityKey::from_seed(SEED_A).public();
    let id_b = IdentityKey::from_seed(SEED_B).public();
    assert_eq!(ea[0], ChatEvent::PeerIdentity { identity: id_b });
    assert_eq!(eb[0], ChatEvent::PeerIdentity { identity: id_a });
    let hh = |ev: &[ChatEvent]| {
        ev.iter()
            .find_map(|e| match e {
                ChatEvent::Established {
                    epoch: 0,
                    handshake_hash,
                } => Some(*handshake_hash),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(hh(&ea), hh(&eb));
    assert_eq!(p.a.epoch(), Some(0));
    assert_eq!(p.b.peer_identity(), Some(id_a));
}

#[test]
fn pinned_identity_mismatch_is_rejected_without_closing_on_either_side() {
    // The responder pins someone else: message 3 is rejected, nothing closes.
    let wrong = IdentityKey::from_seed([0xee; 32]).public();
    let mut p = Pair::new(2);
    let mut cb = config();
    cb.pinned_peer = Some(wrong);
    p.b = Chat::responder(identity(SEED_B), cb, ChaCha20Rng::from_seed([3; 32])).unwrap();
    assert_eq!(p.pump(), Err(ChatError::IdentityMismatch));
    assert!(!p.b.is_closed() && !p.b.is_established());
    assert_eq!(p.b.peer_identity(), None);
    assert!(!p
        .b_events()
        .iter()
        .any(|e| matches!(e, ChatEvent::Closed { .. } | ChatEvent::PeerIdentity { .. })));
    assert!(p.b.poll_transmit().is_none(), "no close frame is sent");
    // The initiator pins someone else: message 2 is rejected, nothing closes.
    let mut p = Pair::with(4, |c| c.pinned_peer = Some(wrong));
    let f1 = p.a.poll_transmit().unwrap();
    p.b.handle_frame(p.now, &f1).unwrap();
    let f2 = p.b.poll_transmit().unwrap();
    assert_eq!(
        p.a.handle_frame(p.now, &f2),
        Err(ChatError::IdentityMismatch)
    );
    assert!(!p.a.is_closed() && !p.a.is_established());
    assert!(p.a.poll_transmit().is_none(), "no message 3 and no close");
    // The right pin works.
    let right = IdentityKey::from_seed(SEED_B).public();
    let mut p = Pair::new(5);
    let mut ca = config();
    ca.pinned_peer = Some(right);
    p.a = Chat::initiator(p.now, identity(SEED_A), ca, ChaCha20Rng::from_seed([5; 32])).unwrap();
    p.pump().unwrap();
    assert!(p.a.is_established());
}

#[test]
fn stranger_answering_a_rekey_is_rejected_and_the_genuine_peer_completes_it() {
    let mut p = Pair::established(9);
    // Mallory has her own identity, sees every frame and answers A's message 1 herself.
    let mut mallory = Chat::responder(
        identity([0x3e; 32]),
        config(),
        ChaCha20Rng::from_seed([0x3e; 32]),
    )
    .unwrap();
    p.a.rekey(p.now).unwrap();
    let f1 = p.a.poll_transmit().unwrap();
    mallory.handle_frame(p.now, &f1).unwrap();
    let forged2 = mallory.poll_transmit().unwrap();
    assert_eq!(
        FrameHeader::parse(&forged2).unwrap().0.kind,
        FrameKind::HandshakeResponse
    );
    assert_eq!(
        p.a.handle_frame(p.now, &forged2),
        Err(ChatError::IdentityMismatch)
    );
    assert!(!p.a.is_closed());
    assert_eq!(p.a.epoch(), Some(0));
    assert!(p.a.poll_transmit().is_none(), "no message 3 and no close");
    // Epoch 0 still carries messages, and B's genuine message 2 completes the rekey.
    let m = send_frame(&mut p.a, p.now, b"still epoch 0");
    p.b.handle_frame(p.now, &f1).unwrap();
    p.b.handle_frame(p.now, &m).unwrap();
    p.pump().unwrap();
    assert_eq!((p.a.epoch(), p.b.epoch()), (Some(1), Some(1)));
    let m = send_frame(&mut p.a, p.now, b"epoch 1");
    p.b.handle_frame(p.now, &m).unwrap();
    let got = messages(&p.b_events());
    assert_eq!(
        got,
        vec![
            (0, 0, b"still epoch 0".to_vec()),
            (1, 0, b"epoch 1".to_vec())
        ]
    );
}

#[test]
fn stranger_finishing_a_handshake_with_the_responder_is_rejected_without_closing() {
    let mut p = Pair::established(10);
    // Mallory starts a handshake of her own towards B (as if A redid epoch 0) and finishes it
    // with her identity: B rejects message 3 and keeps the chat with A.
    let mut mallory = Chat::initiator(
        p.now,
        identity([0x3e; 32]),
        config(),
        ChaCha20Rng::from_seed([0x3f; 32]),
    )
    .unwrap();
    let m1 = mallory.poll_transmit().unwrap();
    p.b.handle_frame(p.now, &m1).unwrap();
    let m2 = p.b.poll_transmit().unwrap();
    mallory.handle_frame(p.now, &m2).unwrap();
    let m3 = mallory.poll_transmit().unwrap();
    assert_eq!(
        FrameHeader::parse(&m3).unwrap().0.kind,
        FrameKind::HandshakeFinish
    );
    assert_eq!(
        p.b.handle_frame(p.now, &m3),
        Err(ChatError::IdentityMismatch)
    );
    assert!(!p.b.is_closed());
    assert!(
        p.b.poll_transmit().is_none(),
        "no confirmation and no close"
    );
    assert!(p.b_events().is_empty());
    let m = send_frame(&mut p.a, p.now, b"hello");
    p.b.handle_frame(p.now, &m).unwrap();
    let m = send_frame(&mut p.b, p.now, b"back");
    p.a.handle_frame(p.now, &m).unwrap();
    // (B's counter 0 was its key confirmation.)
    assert_eq!(messages(&p.a_events()), vec![(0, 1, b"back".to_vec())]);
}

#[test]
fn forged_message_one_does_not_abandon_an_epoch_awaiting_confirmation() {
    let mut p = Pair::established(11);
    p.a.rekey(p.now).unwrap();
    let f1 = p.a.poll_transmit().unwrap();
    p.b.handle_frame(p.now, &f1).unwrap();
    let f2 = p.b.poll_transmit().unwrap();
    p.a.handle_frame(p.now, &f2).unwrap();
    let f3 = p.a.poll_transmit().unwrap();
    p.b.handle_frame(p.now, &f3).unwrap();
    assert_eq!(p.b.epoch(), Some(1));
    let confirmation = p.b.poll_transmit().unwrap();
    // Before the confirmation reaches A, anyone injects a message 1 for epoch 1 (its body is
    // just an ephemeral key, so it needs no secret).
    let mut forged = f1.clone();
    forged[30..].copy_from_slice(&[0x77; 32]);
    let _ = p.a.handle_frame(p.now, &forged);
    // (A's answer to it goes to the forger.)
    while p.a.poll_transmit().is_some() {}
    // A still holds the epoch B installed, and B's confirmation completes it.
    p.a.handle_frame(p.now, &confirmation).unwrap();
    assert_eq!(p.a.epoch(), Some(1));
    let m = send_frame(&mut p.a, p.now, b"epoch 1");
    p.b.handle_frame(p.now, &m).unwrap();
    let m = send_frame(&mut p.b, p.now, b"epoch 1 back");
    p.a.handle_frame(p.now, &m).unwrap();
    assert!(messages(&p.a_events())
        .iter()
        .any(|m| m.2 == b"epoch 1 back"));
    assert!(messages(&p.b_events()).iter().any(|m| m.2 == b"epoch 1"));
}

#[test]
fn forged_handshake_message_is_rejected_and_the_real_one_still_completes() {
    let mut p = Pair::new(6);
    let f1 = p.a.poll_transmit().unwrap();
    p.b.handle_frame(p.now, &f1).unwrap();
    let f2 = p.b.poll_transmit().unwrap();
    let mut bad = f2.clone();
    bad[100] ^= 1;
    assert_eq!(
        p.a.handle_frame(p.now, &bad),
        Err(ChatError::HandshakeFailed)
    );
    p.a.handle_frame(p.now, &f2).unwrap();
    p.pump().unwrap();
    assert!(p.a.is_established() && p.b.is_established());
}

#[test]
fn lost_message_three_is_retransmitted_until_the_responder_confirms() {
    let mut p = Pair::new(7);
    let f1 = p.a.poll_transmit().unwrap();
    p.b.handle_frame(p.now, &f1).unwrap();
    let f2 = p.b.poll_transmit().unwrap();
    p.a.handle_frame(p.now, &f2).unwrap();
    let _lost = p.a.poll_transmit().unwrap();
    assert!(!p.a.is_established());
    let t = p.a.poll_timeout().unwrap();
    p.now = t;
    p.a.handle_timeout(t);
    p.pump().unwrap();
    assert!(p.a.is_established() && p.b.is_established());
}

#[test]
fn lost_message_one_is_retried_after_the_handshake_timeout() {
    let mut p = Pair::new(8);
    let _lost = p.a.poll_transmit().unwrap();
    let t = p.a.poll_timeout().unwrap();
    assert_eq!(t, p.now + Duration::from_secs(10));
    p.now = t;
    p.a.handle_timeout(t);
    p.pump().unwrap();
    assert!(p.a.is_established() && p.b.is_established());
}

// ------------------------------------------------------------------ messages

#[test]
fn messages_flow_both_ways_at_once() {
    let mut p = Pair::established(10);
    let fa = send_frame(&mut p.a, p.now, b"from a");
    let fb = send_frame(&mut p.b, p.now, b"from b");
    p.b.handle_frame(p.now, &fa).unwrap();
    p.a.handle_frame(p.now, &fb).unwrap();
    assert_eq!(messages(&p.b_events()), vec![(0, 0, b"from a".to_vec())]);
    // b's counter 0 went to the confirmation frame.
    assert_eq!(messages(&p.a_events()), vec![(0, 1, b"from b".to_vec())]);
}

#[test]
fn frame_header_is_authenticated_as_associated_data() {
    let mut p = Pair::established(11);
    let f = send_frame(&mut p.a, p.now, b"x");
    let mut moved = f.clone();
    moved[29] ^= 1; // counter
    assert_eq!(
        p.b.handle_frame(p.now, &moved),
        Err(ChatError::AuthenticationFailed)
    );
    let mut kind = f.clone();
    kind[1] = 0x20;
    assert!(p.b.handle_frame(p.now, &kind).is_err());
    p.b.handle_frame(p.now, &f).unwrap();
}

#[test]
fn seal_into_too_small_buffer_is_untouched_and_uses_no_key() {
    let mut p = Pair::established(12);
    let mut small = [0xaau8; 40];
    assert_eq!(
        p.a.seal_into(p.now, b"hello world", &mut small),
        Err(ChatError::BufferTooSmall {
            needed: 30 + 11 + 16
        })
    );
    assert_eq!(small, [0xaa; 40]);
    let mut buf = [0u8; 100];
    let n = p.a.seal_into(p.now, b"hello world", &mut buf).unwrap();
    assert_eq!(n, 57);
    // Counter 0: the failed call consumed nothing.
    assert_eq!(FrameHeader::parse(&buf[..n]).unwrap().0.counter, 0);
    let mut frame = buf[..n].to_vec();
    match p.b.open_in_place(p.now, &mut frame).unwrap() {
        Opened::Message {
            counter, plaintext, ..
        } => {
            assert_eq!(counter, 0);
            assert_eq!(&frame[plaintext], b"hello world");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn open_in_place_leaves_a_rejected_frame_unchanged() {
    let mut p = Pair::established(13);
    let mut f = send_frame(&mut p.a, p.now, b"payload");
    f[40] ^= 0xff;
    let copy = f.clone();
    assert_eq!(
        p.b.open_in_place(p.now, &mut f),
        Err(ChatError::AuthenticationFailed)
    );
    if cfg!(feature = "ring") {
        // ring zeroes what it decrypted when the tag fails: the header is intact and the body
        // is either the original ciphertext or zeros, never unauthenticated plaintext.
        let header = sealwire::chat::HEADER_LEN;
        assert_eq!(f[..header], copy[..header]);
        assert!(f[header..] == copy[header..] || f[header..f.len() - 16].iter().all(|b| *b == 0));
    } else {
        assert_eq!(f, copy);
    }
}

#[test]
fn message_larger_than_the_maximum_is_refused() {
    let mut p = Pair::with(14, |c| c.max_message_len = 8);
    p.pump().unwrap();
    assert_eq!(p.a.send(p.now, &[0u8; 9]), Err(ChatError::MessageTooLarge));
    assert!(p.a.send(p.now, &[0u8; 8]).is_ok());
}

// ------------------------------------------------------------------ order and replay

#[test]
fn out_of_order_frames_within_the_window_are_delivered() {
    let mut p = Pair::established(20);
    let frames: Vec<_> = (0..10u8)
        .map(|i| send_frame(&mut p.a, p.now, &[i]))
        .collect();
    for i in [9usize, 3, 0, 5, 1, 2, 8, 4, 7, 6] {
        p.b.handle_frame(p.now, &frames[i]).unwrap();
    }
    let mut got = messages(&p.b_events());
    got.sort();
    assert_eq!(
        got,
        (0..10u8)
            .map(|i| (0, i as u64, vec![i]))
            .collect::<Vec<_>>()
    );
    assert_eq!(p.b.skipped_keys(), 0);
}

#[test]
fn replayed_counter_is_rejected_and_state_unchanged() {
    let mut p = Pair::established(21);
    let f0 = send_frame(&mut p.a, p.now, b"0");
    let f1 = send_frame(&mut p.a, p.now, b"1");
    let f2 = send_frame(&mut p.a, p.now, b"2");
    p.b.handle_frame(p.now, &f2).unwrap();
    p.b.handle_frame(p.now, &f0).unwrap();
    assert_eq!(p.b.handle_frame(p.now, &f2), Err(ChatError::Replayed));
    assert_eq!(p.b.handle_frame(p.now, &f0), Err(ChatError::Replayed));
    assert_eq!(p.b.skipped_keys(), 1);
    p.b.handle_frame(p.now, &f1).unwrap();
    assert_eq!(p.b_events().len(), 3);
}

#[test]
fn counter_older_than_the_kept_skipped_keys_is_replayed() {
    let mut p = Pair::with(22, |c| {
        c.window.per_chain = 4;
        c.seal_lease = 4;
    });
    p.pump().unwrap();
    let frames: Vec<_> = (0..10u8)
        .map(|i| send_frame(&mut p.a, p.now, &[i]))
        .collect();
    p.b.handle_frame(p.now, &frames[4]).unwrap(); // skips 0..=3 (4 keys)
    p.b.handle_frame(p.now, &frames[8]).unwrap(); // skips 5..=7; the oldest (0..=2) go
    assert_eq!(p.b.skipped_keys(), 4);
    for old in &frames[..3] {
        assert_eq!(p.b.handle_frame(p.now, old), Err(ChatError::Replayed));
    }
    p.b.handle_frame(p.now, &frames[3]).unwrap();
    p.b.handle_frame(p.now, &frames[6]).unwrap();
}

fn no_close(ev: &[ChatEvent]) -> bool {
    !ev.iter().any(|e| matches!(e, ChatEvent::Closed { .. }))
}

fn kinds(c: &mut Chat<ChaCha20Rng>) -> Vec<(FrameKind, u32)> {
    std::iter::from_fn(|| c.poll_transmit())
        .map(|f| {
            let h = FrameHeader::parse(&f).unwrap().0;
            (h.kind, h.epoch)
        })
        .collect()
}

#[test]
fn frame_beyond_the_window_is_desync_and_changes_nothing() {
    let mut p = Pair::with(23, |c| {
        c.window.per_chain = 4;
        c.seal_lease = 4;
    });
    p.pump().unwrap();
    p.a_events();
    p.b_events();
    let frames: Vec<_> = (0..6u8)
        .map(|i| send_frame(&mut p.a, p.now, &[i]))
        .collect();
    // The genuine frame 5 and a forged one far ahead (a relay can write any counter): both
    // are beyond the window of 4 and neither is authenticated.
    let mut forged = frames[0].clone();
    forged[22..30].copy_from_slice(&u64::MAX.to_be_bytes());
    for f in [&frames[5], &forged] {
        assert_eq!(p.b.handle_frame(p.now, f), Err(ChatError::Desync));
        assert!(!p.b.is_closed() && p.b.is_established());
        assert_eq!(p.b.epoch(), Some(0));
        assert_eq!(p.b.skipped_keys(), 0);
        assert!(no_close(&p.b_events()));
    }
    // The one side effect: a rekey was started (only once: it is then in progress); no close.
    assert_eq!(kinds(&mut p.b), vec![(FrameKind::HandshakeInit, 1)]);
    // The receive counter did not move: frame 0 and every in-window frame still open, in order.
    for f in &frames[..5] {
        p.b.handle_frame(p.now, f).unwrap();
    }
    assert_eq!(p.b.skipped_keys(), 0);
    let got: Vec<_> = messages(&p.b_events())
        .into_iter()
        .map(|m| (m.1, m.2))
        .collect();
    assert_eq!(
        got,
        (0..5u8)
            .map(|i| (u64::from(i), vec![i]))
            .collect::<Vec<_>>()
    );
    // The send side did not move either: B's next message is its counter 1 (0 was its key
    // confirmation) and opens at A.
    let back = send_frame(&mut p.b, p.now, b"back");
    assert_eq!(FrameHeader::parse(&back).unwrap().0.counter, 1);
    p.a.handle_frame(p.now, &back).unwrap();
    assert!(p.a.is_established() && no_close(&p.a_events()));
}

#[test]
fn genuine_desync_is_resynchronised_by_the_rekey_it_starts() {
    let mut p = Pair::with(26, |c| {
        c.window.per_chain = 4;
        c.seal_lease = 4;
    });
    p.pump().unwrap();
    p.a_events();
    p.b_events();
    // More than a window of A's frames is lost.
    for i in 0..6u8 {
        let _lost = send_frame(&mut p.a, p.now, &[i]);
    }
    let late = send_frame(&mut p.a, p.now, b"late");
    assert_eq!(p.b.handle_frame(p.now, &late), Err(ChatError::Desync));
    // B's rekey is A's notice; the handshake puts both chains back at counter 0.
    p.pump().unwrap();
    assert_eq!((p.a.epoch(), p.b.epoch()), (Some(1), Some(1)));
    // A answered B's handshake, so A's counter 0 was its key confirmation.
    let m = send_frame(&mut p.a, p.now, b"in step");
    assert_eq!(FrameHeader::parse(&m).unwrap().0.counter, 1);
    p.b.handle_frame(p.now, &m).unwrap();
    assert_eq!(messages(&p.b_events()), vec![(1, 1, b"in step".to_vec())]);
    assert!(no_close(&p.a_events()));
}

#[test]
fn forged_desync_frames_start_no_more_rekeys_than_the_throttle_allows() {
    let mut p = Pair::established(27);
    let mut forged = send_frame(&mut p.a, p.now, b"x");
    forged[22..30].copy_from_slice(&1_000_000u64.to_be_bytes());
    let start = p.now;
    let mut inits = 0;
    // One forged frame a second for 30 s (one throttle period); B's handshakes go nowhere
    // (the attacker drops them), so each times out and may be retried.
    while p.now < start + Duration::from_secs(30) {
        assert_eq!(p.b.handle_frame(p.now, &forged), Err(ChatError::Desync));
        p.b.handle_timeout(p.now);
        inits += kinds(&mut p.b)
            .iter()
            .filter(|k| k.0 == FrameKind::HandshakeInit)
            .count();
        p.now += Duration::from_secs(1);
    }
    assert!((1..=3).contains(&inits), "{inits} handshakes started");
    assert_eq!(p.b.epoch(), Some(0));
    // The chat is unharmed.
    let m = send_frame(&mut p.a, p.now, b"fine");
    p.b.handle_frame(p.now, &m).unwrap();
    assert_eq!(messages(&p.b_events()), vec![(0, 1, b"fine".to_vec())]);
}

#[test]
fn total_skipped_keys_are_bounded_across_chains() {
    let mut p = Pair::with(24, |c| {
        c.window.per_chain = 8;
        c.seal_lease = 8;
        c.window.total = 10;
    });
    p.pump().unwrap();
    // Epoch 0: b skips 8 keys, then a rekey keeps them in the previous chain.
    let frames: Vec<_> = (0..9u8)
        .map(|i| send_frame(&mut p.a, p.now, &[i]))
        .collect();
    p.b.handle_frame(p.now, &frames[8]).unwrap();
    assert_eq!(p.b.skipped_keys(), 8);
    p.a.rekey(p.now).unwrap();
    p.pump().unwrap();
    let next: Vec<_> = (0..7u8)
        .map(|i| send_frame(&mut p.a, p.now, &[i]))
        .collect();
    p.b.handle_frame(p.now, &next[6]).unwrap(); // 6 more skipped: 14 > 10
    assert_eq!(p.b.skipped_keys(), 10);
    // The newest epoch's keys were kept; the previous epoch's oldest went first.
    p.b.handle_frame(p.now, &next[0]).unwrap();
    assert_eq!(
        p.b.handle_frame(p.now, &frames[0]),
        Err(ChatError::Replayed)
    );
    p.b.handle_frame(p.now, &frames[7]).unwrap();
}

#[test]
fn frame_for_another_chat_or_malformed_is_rejected() {
    let mut p = Pair::established(25);
    let mut f = send_frame(&mut p.a, p.now, b"x");
    f[5] ^= 1;
    assert_eq!(p.b.handle_frame(p.now, &f), Err(ChatError::WrongChat));
    assert_eq!(
        p.b.handle_frame(p.now, &[1, 0x10]),
        Err(ChatError::Malformed)
    );
    let mut v2 = send_frame(&mut p.a, p.now, b"x");
    v2[0] = 2;
    assert_eq!(p.b.handle_frame(p.now, &v2), Err(ChatError::Malformed));
    let mut unknown = v2.clone();
    unknown[0] = 1;
    unknown[1] = 0x11;
    assert_eq!(p.b.handle_frame(p.now, &unknown), Err(ChatError::Malformed));
    assert_eq!(
        p.b.handle_frame(p.now, &v2[..45]),
        Err(ChatError::Malformed)
    );
}

// ------------------------------------------------------------------ rekey

#[test]
fn rekey_on_demand_moves_to_the_next_epoch_and_in_flight_messages_still_open() {
    let mut p = Pair::established(30);
    let old = send_frame(&mut p.a, p.now, b"old epoch");
    p.a.rekey(p.now).unwrap();
    p.pump().unwrap();
    assert_eq!(p.a.epoch(), Some(1));
    assert_eq!(p.b.epoch(), Some(1));
    assert!(p
        .a_events()
        .iter()
        .any(|e| matches!(e, ChatEvent::Rekeyed { epoch: 1, .. })));
    let new = send_frame(&mut p.a, p.now, b"new epoch");
    assert_eq!(FrameHeader::parse(&new).unwrap().0.epoch, 1);
    p.b.handle_frame(p.now, &new).unwrap();
    p.b.handle_frame(p.now, &old).unwrap();
    let got = messages(&p.b_events());
    assert_eq!(
        got,
        vec![(1, 0, b"new epoch".to_vec()), (0, 0, b"old epoch".to_vec())]
    );
}

#[test]
fn previous_epoch_after_the_grace_period_is_replayed() {
    let mut p = Pair::established(31);
    let old = send_frame(&mut p.a, p.now, b"late");
    p.a.rekey(p.now).unwrap();
    p.pump().unwrap();
    p.now += Duration::from_secs(61);
    p.b.handle_timeout(p.now);
    assert_eq!(p.b.handle_frame(p.now, &old), Err(ChatError::Replayed));
}

#[test]
fn stale_handshake_epoch_is_replayed_and_skipped_epoch_is_desync() {
    let mut p = Pair::established(32);
    let mut f1 = Vec::new();
    p.a.rekey(p.now).unwrap();
    while let Some(f) = p.a.poll_transmit() {
        f1 = f.clone();
        p.b.handle_frame(p.now, &f).unwrap();
    }
    p.pump().unwrap();
    assert_eq!(p.b.epoch(), Some(1));
    // Message 1 of epoch 1 again: stale.
    assert_eq!(p.b.handle_frame(p.now, &f1), Err(ChatError::Replayed));
    // A data frame claiming epoch 3: skipped an epoch.
    let mut f = send_frame(&mut p.a, p.now, b"x");
    f[21] = 3;
    assert_eq!(p.b.handle_frame(p.now, &f), Err(ChatError::Desync));
    assert!(!p.b.is_closed());
    assert_eq!(p.b.epoch(), Some(1));
    f[21] = 1;
    p.b.handle_frame(p.now, &f).unwrap();
}

#[test]
fn rekey_starts_after_the_message_limit() {
    let mut p = Pair::with(33, |c| c.rekey.after_messages = 5);
    p.pump().unwrap();
    for i in 0..5u8 {
        p.a.send(p.now, &[i]).unwrap();
    }
    p.pump().unwrap();
    assert_eq!(p.a.epoch(), Some(1));
    assert_eq!(p.b.epoch(), Some(1));
}

#[test]
fn rekey_starts_after_the_time_limit() {
    let mut p = Pair::established(34);
    let due = p.a.poll_timeout().unwrap();
    assert_eq!(due, p.now + Duration::from_secs(24 * 3600));
    p.now = due;
    // Both sides reach the limit at once: a simultaneous rekey.
    p.a.handle_timeout(p.now);
    p.b.handle_timeout(p.now);
    p.pump().unwrap();
    assert!(p.a.poll_timeout().unwrap() > p.now);
    assert_eq!(p.a.epoch(), Some(1));
    assert_eq!(p.b.epoch(), Some(1));
}

#[test]
fn rekeys_beyond_the_throttle_are_refused() {
    let mut p = Pair::established(35);
    for _ in 0..3 {
        p.a.rekey(p.now).unwrap();
        p.pump().unwrap();
    }
    assert_eq!(p.a.epoch(), Some(3));
    assert_eq!(p.a.rekey(p.now), Err(ChatError::RekeyThrottled));
    // The peer's throttle also refuses a rekey it is offered.
    assert_eq!(p.b.rekey(p.now), Err(ChatError::RekeyThrottled));
    p.now += Duration::from_secs(31);
    p.a.rekey(p.now).unwrap();
    p.pump().unwrap();
    assert_eq!(p.b.epoch(), Some(4));
}

#[test]
fn simultaneous_rekey_from_both_sides_converges() {
    for seed in 40..50u8 {
        let mut p = Pair::established(seed);
        p.a.rekey(p.now).unwrap();
        p.b.rekey(p.now).unwrap();
        let fa = p.a.poll_transmit().unwrap();
        let fb = p.b.poll_transmit().unwrap();
        // Exactly one of the crossing message-1 frames is answered (the one with the larger
        // ephemeral key, bytes 30..62 of the frame).
        p.a.handle_frame(p.now, &fb).unwrap();
        p.b.handle_frame(p.now, &fa).unwrap();
        let a_answered = p.a.poll_transmit();
        let b_answered = p.b.poll_transmit();
        assert!(a_answered.is_some() != b_answered.is_some());
        assert_eq!(b_answered.is_some(), fa[30..62] > fb[30..62]);
        if let Some(f) = a_answered {
            p.b.handle_frame(p.now, &f).unwrap();
        }
        if let Some(f) = b_answered {
            p.a.handle_frame(p.now, &f).unwrap();
        }
        p.pump().unwrap();
        assert_eq!(p.a.epoch(), Some(1));
        assert_eq!(p.b.epoch(), Some(1));
        let f = send_frame(&mut p.b, p.now, b"after");
        p.a.handle_frame(p.now, &f).unwrap();
    }
}

// ------------------------------------------------------------------ teardown

#[test]
fn close_is_authenticated_and_wipes_both_sides() {
    let mut p = Pair::established(50);
    // A forged close (right header, random body) is rejected.
    let mut forged = sealwire::chat::FrameHeader {
        kind: FrameKind::Close,
        chat_id: sealwire::chat::ChatId::new(PAIR_CHAT),
        epoch: 0,
        counter: 0,
    }
    .encode()
    .to_vec();
    forged.extend_from_slice(&[0u8; 17]);
    assert_eq!(
        p.b.handle_frame(p.now, &forged),
        Err(ChatError::AuthenticationFailed)
    );
    p.a.close().unwrap();
    assert!(p.a.is_closed());
    assert_eq!(p.a.send(p.now, b"x"), Err(ChatError::Closed));
    p.pump().unwrap();
    assert!(p.b.is_closed());
    assert!(p.b_events().contains(&ChatEvent::Closed {
        reason: CloseReason::Normal,
        by_peer: true
    }));
    assert_eq!(p.b.epoch(), None);
    assert_eq!(p.b.skipped_keys(), 0);
    assert_eq!(
        p.b.seal(p.now, WALL, &SealKey::from_bytes([1; 32]))
            .unwrap_err(),
        ChatError::Closed
    );
    assert_eq!(p.b.poll_timeout(), None);
}

#[test]
fn epoch_expires_without_a_successful_rekey() {
    let mut p = Pair::with(51, |c| c.rekey.throttle_max = 1);
    p.pump().unwrap();
    // Use up the throttle so the automatic rekey cannot help, then drop its frames.
    p.a.rekey(p.now).unwrap();
    while p.a.poll_transmit().is_some() {}
    p.now += Duration::from_secs(48 * 3600);
    p.a.handle_timeout(p.now);
    assert!(p.a.is_closed());
    assert!(p.a_events().contains(&ChatEvent::Closed {
        reason: CloseReason::Expired,
        by_peer: false
    }));
}

// ------------------------------------------------------------------ sealed state

fn small_kdf() -> KdfParams {
    KdfParams::MINIMUM
}

#[test]
fn sealed_state_restores_and_never_reuses_a_message_key() {
    let mut p = Pair::established(60);
    let key = SealKey::from_bytes([3; 32]);
    p.a.send(p.now, b"before").unwrap();
    let record = p.a.seal(p.now, WALL, &key).unwrap();
    // The live machine keeps sending after the seal (counters 1..3) ...
    for i in 1..4u8 {
        p.a.send(p.now, &[i]).unwrap();
    }
    p.pump().unwrap();
    p.b_events();
    // ... then crashes. The restore resumes at the end of the lease (1 + 128).
    let mut restored = restore_a(p.now, &record, &key, Some(1), 61).unwrap();
    assert_eq!(restored.send(p.now, b"x"), Err(ChatError::LeaseExhausted));
    restored.seal(p.now, WALL, &key).unwrap();
    assert_eq!(restored.send(p.now, b"after restore").unwrap(), 129);
    // First out: message 1 of a fresh epoch (a restore always rekeys), then the message.
    let f1 = restored.poll_transmit().unwrap();
    assert_eq!(
        FrameHeader::parse(&f1).unwrap().0.kind,
        FrameKind::HandshakeInit
    );
    let f = restored.poll_transmit().unwrap();
    p.b.handle_frame(p.now, &f).unwrap();
    assert_eq!(
        messages(&p.b_events()),
        vec![(0, 129, b"after restore".to_vec())]
    );
}

#[test]
fn restores_beyond_the_rekey_throttle_still_reach_a_fresh_epoch() {
    let mut p = Pair::established(63);
    let key = SealKey::from_bytes([4; 32]);
    let mut record = p.a.seal(p.now, WALL, &key).unwrap();
    // Crash and restore repeatedly within one throttle period: only the first restores can
    // start their fresh epoch at once.
    let mut restored = None;
    for i in 0..5u8 {
        let mut r = restore_a(p.now, &record, &key, None, 70 + i).unwrap();
        record = r.seal(p.now, WALL, &key).unwrap();
        restored = Some(r);
    }
    let mut r = restored.unwrap();
    let epoch = r.epoch().expect("established");
    while r.poll_transmit().is_some() {}
    // The rekey is still due: poll_timeout names the moment the throttle frees up, and the
    // handshake for the next epoch starts then.
    let due = r.poll_timeout().expect("a deadline");
    assert!(due > p.now && due <= p.now + sealwire::time::Duration::from_secs(30));
    r.handle_timeout(due);
    let f = r.poll_transmit().expect("message 1 of a fresh epoch");
    let (h, _) = FrameHeader::parse(&f).unwrap();
    assert_eq!(h.kind, FrameKind::HandshakeInit);
    assert_eq!(h.epoch, epoch + 1);
}

#[test]
fn live_machine_refuses_to_send_past_its_sealed_lease() {
    let mut p = Pair::with(62, |c| c.seal_lease = 4);
    p.pump().unwrap();
    let key = SealKey::from_bytes([3; 32]);
    p.a.seal(p.now, WALL, &key).unwrap();
    // Three data frames: the lease's last counter is kept for a close.
    for i in 0..3u8 {
        p.a.send(p.now, &[i]).unwrap();
    }
    assert!(p.a_events().contains(&ChatEvent::SealAdvised));
    assert_eq!(p.a.send(p.now, b"x"), Err(ChatError::LeaseExhausted));
    p.a.seal(p.now, WALL, &key).unwrap();
    p.a.send(p.now, b"x").unwrap();
}

/// Every data frame `c` queued, as (epoch, counter); handshake frames are skipped.
fn queued_data(c: &mut Chat<ChaCha20Rng>) -> Vec<(u32, u64, Vec<u8>)> {
    std::iter::from_fn(|| c.poll_transmit())
        .filter_map(|f| {
            let (h, _) = FrameHeader::parse(&f).unwrap();
            matches!(h.kind, FrameKind::Data | FrameKind::Close).then_some((h.epoch, h.counter, f))
        })
        .collect()
}

#[test]
fn a_chat_restored_from_an_unproven_record_sends_nothing_until_its_fresh_epoch() {
    // An older copy of the state file, or two instances on one file: both restores of one
    // record would hand out the same lease. Neither may send under the restored epoch.
    let mut p = Pair::established(64);
    let key = SealKey::from_bytes([5; 32]);
    p.a.send(p.now, b"before").unwrap();
    let record = p.a.seal(p.now, WALL, &key).unwrap();
    let restore =
        |seed: u8, seen: Option<u64>| restore_a(p.now, &record, &key, seen, seed).unwrap();
    let (mut twin1, mut twin2) = (restore(90, None), restore(91, Some(0)));
    let restored_epoch = twin1.epoch().unwrap();
    let mut sent = Vec::new();
    for twin in [&mut twin1, &mut twin2] {
        assert!(twin.is_awaiting_rekey());
        twin.seal(p.now, WALL, &key).unwrap();
        assert_eq!(twin.send(p.now, b"secret"), Err(ChatError::AwaitingRekey));
        let mut out = vec![0u8; 256];
        assert_eq!(
            twin.seal_into(p.now, b"secret", &mut out),
            Err(ChatError::AwaitingRekey)
        );
        sent.extend(queued_data(twin));
    }
    assert_eq!(sent, vec![], "a data frame under the restored epoch");
    // A close would use a key the twin could use too: the chat closes without one.
    twin2.close().unwrap();
    assert_eq!(queued_data(&mut twin2), vec![]);
    assert!(twin2.is_closed());

    // Twin 1's fresh epoch (message 1 went out at unseal; resend it) completes with the peer:
    // then it sends, under the new epoch only.
    let mut b = p.b;
    let mut hs = Vec::new();
    twin1.handle_timeout(p.now + Duration::from_secs(10));
    hs.extend(std::iter::from_fn(|| twin1.poll_transmit()));
    let now = p.now + Duration::from_secs(10);
    for _ in 0..4 {
        for f in hs.drain(..) {
            let _ = b.handle_frame(now, &f);
        }
        while let Some(f) = b.poll_transmit() {
            let _ = twin1.handle_frame(now, &f);
        }
        hs.extend(std::iter::from_fn(|| twin1.poll_transmit()));
    }
    assert!(!twin1.is_awaiting_rekey());
    assert_eq!(twin1.epoch(), Some(restored_epoch + 1));
    twin1.seal(now, WALL, &key).unwrap();
    twin1.send(now, b"after the rekey").unwrap();
    let data = queued_data(&mut twin1);
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].0, restored_epoch + 1);
    b.handle_frame(now, &data[0].2).unwrap();
    let got: Vec<_> = std::iter::from_fn(|| b.poll_event()).collect();
    assert_eq!(
        messages(&got),
        vec![(restored_epoch + 1, 0, b"after the rekey".to_vec())]
    );
}

#[test]
fn a_record_proven_newest_sends_under_its_restored_epoch_after_a_seal() {
    let mut p = Pair::established(65);
    let key = SealKey::from_bytes([6; 32]);
    let record = p.a.seal(p.now, WALL, &key).unwrap(); // sequence 1
    let mut r = restore_a(p.now, &record, &key, Some(1), 92).unwrap();
    assert!(!r.is_awaiting_rekey());
    assert_eq!(r.send(p.now, b"x"), Err(ChatError::LeaseExhausted));
    r.seal(p.now, WALL, &key).unwrap();
    assert_eq!(r.send(p.now, b"x"), Ok(128));
}

#[test]
fn a_close_uses_the_last_counter_of_the_lease_and_no_later_one() {
    let mut p = Pair::with(66, |c| c.seal_lease = 4);
    p.pump().unwrap();
    let key = SealKey::from_bytes([7; 32]);
    let record = p.a.seal(p.now, WALL, &key).unwrap();
    for i in 0..3u8 {
        p.a.send(p.now, &[i]).unwrap();
    }
    assert_eq!(p.a.send(p.now, b"x"), Err(ChatError::LeaseExhausted));
    p.a.close().unwrap();
    let frames = queued_data(&mut p.a);
    let (epoch, counter, close) = frames.last().unwrap().clone();
    assert_eq!(FrameHeader::parse(&close).unwrap().0.kind, FrameKind::Close);
    assert_eq!(counter, 3, "the close takes the lease's last counter");
    // A restore of that record (proven newest) starts after the whole lease: past the close.
    let mut cfg = config();
    cfg.seal_lease = 4;
    let mut r = Chat::unseal(
        p.now,
        WALL,
        identity(SEED_A),
        cfg,
        &record,
        UnsealWith::Key(&key),
        Some(1),
        ChaCha20Rng::from_seed([93; 32]),
    )
    .unwrap();
    r.seal(p.now, WALL, &key).unwrap();
    while r.poll_transmit().is_some() {}
    r.send(p.now, b"y").unwrap();
    let after = queued_data(&mut r);
    assert_eq!((after[0].0, after[0].1), (epoch, 4));
}

#[test]
fn a_lease_of_fewer_than_two_counters_is_refused() {
    let build = |lease: u64| {
        let mut c = config();
        c.seal_lease = lease;
        Chat::responder(identity(SEED_B), c, ChaCha20Rng::from_seed([94; 32])).map(|_| ())
    };
    assert_eq!(build(1), Err(ChatError::InvalidConfig("seal_lease")));
    assert_eq!(build(2), Ok(()));
}

#[test]
fn passphrase_sealed_state_round_trips() {
    let mut p = Pair::established(63);
    let key = SealKey::from_passphrase(
        b"hunter2",
        small_kdf(),
        &mut ChaCha20Rng::from_seed([1; 32]),
    )
    .unwrap();
    let record = p.b.seal(p.now, WALL, &key).unwrap();
    let r = Chat::unseal(
        p.now,
        WALL,
        identity(SEED_B),
        config(),
        &record,
        UnsealWith::Passphrase(b"hunter2"),
        None,
        ChaCha20Rng::from_seed([2; 32]),
    )
    .unwrap();
    assert_eq!(r.epoch(), Some(0));
    assert_eq!(
        r.peer_identity(),
        Some(IdentityKey::from_seed(SEED_A).public())
    );
    let wrong = Chat::unseal(
        p.now,
        WALL,
        identity(SEED_B),
        config(),
        &record,
        UnsealWith::Passphrase(b"hunter3"),
        None,
        ChaCha20Rng::from_seed([2; 32]),
    );
    assert_eq!(
        wrong.unwrap_err(),
        ChatError::Sealed(SealError::AuthenticationFailed)
    );
}

#[test]
fn tampered_truncated_foreign_and_stale_sealed_records_are_rejected() {
    let mut p = Pair::established(64);
    let key = SealKey::from_bytes([3; 32]);
    let first = p.a.seal(p.now, WALL, &key).unwrap();
    let second = p.a.seal(p.now, WALL, &key).unwrap();
    let open = |rec: &[u8], cfg_seed: [u8; 32], seen: Option<u64>| {
        Chat::unseal(
            Instant::ZERO,
            WALL,
            identity(cfg_seed),
            config(),
            rec,
            UnsealWith::Key(&key),
            seen,
            ChaCha20Rng::from_seed([0; 32]),
        )
    };
    assert!(open(&second, SEED_A, Some(2)).is_ok());
    assert_eq!(
        open(&first, SEED_A, Some(2)).unwrap_err(),
        ChatError::SealedStale { record: 1, seen: 2 }
    );
    assert_eq!(
        open(&second, SEED_B, None).unwrap_err(),
        ChatError::SealedForeign
    );
    let mut other_chat = config();
    other_chat.chat_id = sealwire::chat::ChatId::new([0; 16]);
    let r = Chat::unseal(
        Instant::ZERO,
        WALL,
        identity(SEED_A),
        other_chat,
        &second,
        UnsealWith::Key(&key),
        None,
        ChaCha20Rng::from_seed([0; 32]),
    );
    assert_eq!(r.unwrap_err(), ChatError::SealedForeign);
    // The version rule (docs/chat-protocol.md §11): a record of another format version is
    // refused as such, before any key is derived, whatever else it holds.
    for version in [0u8, 2, 0xff] {
        let mut other = second.clone();
        other[4] = version;
        assert_eq!(
            open(&other, SEED_A, None).unwrap_err(),
            ChatError::Sealed(SealError::UnsupportedVersion),
            "format version {version}"
        );
    }
    for i in (0..second.len()).step_by(7) {
        let mut bad = second.clone();
        bad[i] ^= 0x10;
        assert!(open(&bad, SEED_A, None).is_err(), "tamper at {i}");
    }
    for n in [0, 10, 60, second.len() - 1] {
        assert!(open(&second[..n], SEED_A, None).is_err());
    }
    let other_key = SealKey::from_bytes([4; 32]);
    let r = Chat::unseal(
        Instant::ZERO,
        WALL,
        identity(SEED_A),
        config(),
        &second,
        UnsealWith::Key(&other_key),
        None,
        ChaCha20Rng::from_seed([0; 32]),
    );
    assert_eq!(
        r.unwrap_err(),
        ChatError::Sealed(SealError::AuthenticationFailed)
    );
}

// ------------------------------------------------------------------ bounds, determinism, relay

#[test]
fn idle_chat_holds_under_one_kibibyte_plus_its_skipped_keys() {
    let mut p = Pair::established(70);
    let idle = p.b.memory_bytes();
    assert!(idle < 1024, "idle chat holds {idle} bytes");
    let frames: Vec<_> = (0..11u8)
        .map(|i| send_frame(&mut p.a, p.now, &[i]))
        .collect();
    p.b.handle_frame(p.now, &frames[10]).unwrap();
    p.b_events();
    assert_eq!(p.b.skipped_keys(), 10);
    let with_skipped = p.b.memory_bytes();
    assert!(with_skipped <= 1024 + 40 * 20, "{with_skipped}");
    eprintln!("idle chat: {idle} bytes; with 10 skipped keys: {with_skipped} bytes");
}

#[test]
fn same_seed_same_inputs_give_identical_bytes() {
    let run = || {
        let mut p = Pair::established(71);
        let mut out = Vec::new();
        out.push(send_frame(&mut p.a, p.now, b"det"));
        p.a.rekey(p.now).unwrap();
        while let Some(f) = p.a.poll_transmit() {
            out.push(f);
        }
        out
    };
    assert_eq!(run(), run());
}

#[test]
fn machines_are_send_and_secrets_print_redacted() {
    fn assert_send<T: Send>() {}
    assert_send::<Chat<ChaCha20Rng>>();
    assert_send::<Relay<ChaCha20Rng>>();
    // The configuration holds no secret; the identity key prints redacted.
    let cfg = config();
    assert!(!format!("{cfg:?}").contains(&hex(&SEED_A)));
    let id = identity(SEED_A);
    assert!(!format!("{id:?}").contains(&hex(&SEED_A)));
    assert!(format!("{id:?}").contains("[redacted]"));
    let p = Pair::established(80);
    let dbg = format!("{:?}", p.a);
    assert!(dbg.contains("Chat") && !dbg.contains("ck") && !dbg.contains(&hex(&SEED_A)));
}

#[test]
fn chat_config_is_checked_at_construction_and_names_the_field() {
    type Edit = fn(&mut sealwire::chat::ChatConfig);
    let bad: [(&str, Edit); 4] = [
        ("window.per_chain", |c| c.window.per_chain = 0),
        ("window.total", |c| c.window.total = c.window.per_chain - 1),
        ("seal_lease", |c| {
            c.seal_lease = u64::from(c.window.per_chain) + 1
        }),
        ("queue_capacity", |c| c.queue_capacity = 3),
    ];
    for (field, edit) in bad {
        let mut cfg = config();
        edit(&mut cfg);
        let r = Chat::initiator(
            Instant::ZERO,
            identity(SEED_A),
            cfg.clone(),
            ChaCha20Rng::from_seed([0; 32]),
        );
        assert_eq!(r.unwrap_err(), ChatError::InvalidConfig(field));
        let r = Chat::responder(identity(SEED_B), cfg, ChaCha20Rng::from_seed([0; 32]));
        assert_eq!(r.unwrap_err(), ChatError::InvalidConfig(field));
    }
}

#[test]
fn embedder_calls_whose_output_would_not_fit_are_refused_with_capacity() {
    let mut p = Pair::with(81, |c| c.queue_capacity = 4);
    p.pump().unwrap();
    p.a_events();
    p.b_events();
    for i in 0..4u8 {
        p.a.send(p.now, &[i]).unwrap();
    }
    assert_eq!(p.a.send(p.now, b"one too many"), Err(ChatError::Capacity));
    assert_eq!(p.a.close(), Err(ChatError::Capacity));
    assert!(!p.a.is_closed());
    // Nothing was dropped: the refused calls changed nothing, and the queued frames all open.
    assert_eq!(p.a.stats().transmits_dropped, 0);
    let mut received = Vec::new();
    while let Some(f) = p.a.poll_transmit() {
        // An input whose events would not fit is refused before any key moves, too.
        p.b.handle_frame(p.now, &f).unwrap();
        // Its event waits: an input whose events might not fit is refused before any key
        // moves (so nothing is lost), and goes through once the events are drained.
        assert_eq!(p.b.handle_frame(p.now, &f), Err(ChatError::Capacity));
        received.extend(messages(&p.b_events()));
        assert_eq!(p.b.handle_frame(p.now, &f), Err(ChatError::Replayed));
    }
    assert_eq!(received.len(), 4);
    p.a.close().unwrap();
    assert!(p.a.is_closed());
}

// ------------------------------------------------------------------ allocation

#[test]
fn chat_seal_into_and_open_in_place_allocate_nothing() {
    use allocation_counter::measure;
    let mut p = Pair::established(82);
    let msg = [0x61u8; 1024];
    let mut frame = vec![0u8; 2048];
    let mut opened = 0;
    let (now, a, b) = (p.now, &mut p.a, &mut p.b);
    let info = measure(|| {
        for _ in 0..100 {
            let n = a.seal_into(now, &msg, &mut frame).unwrap();
            if let Ok(Opened::Message { plaintext, .. }) = b.open_in_place(now, &mut frame[..n]) {
                opened += usize::from(frame[plaintext] == msg[..]);
            }
        }
    });
    assert_eq!(opened, 100, "every message opens");
    assert_eq!(info.count_total, 0, "chat message path allocated: {info:?}");
}

// ------------------------------------------------------------------ the relay

const CHAT: [u8; 16] = [0xc1; 16];
const SEED_C: [u8; 32] = [0xc3; 32];

fn code_of(t: &Transmit) -> Option<i32> {
    match &t.message {
        Downlink::Rejected { error, .. } | Downlink::End(error) => Some(error.code()),
        _ => None,
    }
}

/// A registered pair of apps (A first, then B) that both started `CHAT`.
fn relay_pair(relay: &mut TestRelay, now: Instant) -> (ConnId, ConnId) {
    let (a, _) = register(relay, now, SEED_A);
    let (b, _) = register(relay, now, SEED_B);
    assert_eq!(start(relay, now, a, CHAT, None), Ok(None));
    let id_a = identity(SEED_A).public();
    assert_eq!(start(relay, now, b, CHAT, None), Ok(Some(id_a)));
    (a, b)
}

#[test]
fn relay_registration_needs_a_proof_of_the_identity_key() {
    let now = Instant::ZERO;
    let mut relay = relay_with(|_| {});
    let key = identity(SEED_A);
    let hello = Uplink::Register {
        identity: key.public().as_bytes().to_vec(),
        app_id: "a".into(),
        acks: false,
    };
    // A forged proof ends the stream, unauthenticated.
    let conn = relay.connect(now).unwrap();
    relay.handle_uplink(now, conn, hello.clone()).unwrap();
    transmits(&mut relay);
    let forged = Uplink::Proof {
        signature: vec![0; 64],
    };
    assert_eq!(
        relay.handle_uplink(now, conn, forged),
        Err(RelayError::BadSignature)
    );
    let out = transmits(&mut relay);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].message, Downlink::End(RelayError::BadSignature));
    assert_eq!(code_of(&out[0]), Some(16));
    assert_eq!(relay.identity(conn), None);
    // A proof for another nonce (a replayed one) does not verify either.
    let conn = relay.connect(now).unwrap();
    relay.handle_uplink(now, conn, hello.clone()).unwrap();
    transmits(&mut relay);
    let replayed = Uplink::Proof {
        signature: prove_registration(&key, &[0; 32]).to_vec(),
    };
    assert_eq!(
        relay.handle_uplink(now, conn, replayed),
        Err(RelayError::BadSignature)
    );
    // Whatever comes first but `Register`, or second but `Proof`, ends the stream.
    let cases: [(Vec<Uplink>, RelayError); 5] = [
        (
            vec![Uplink::Frame(handshake_init(CHAT, 0))],
            RelayError::NotRegistered,
        ),
        (
            vec![Uplink::Proof {
                signature: vec![0; 64],
            }],
            RelayError::NotRegistered,
        ),
        (
            vec![hello.clone(), Uplink::Frame(vec![1])],
            RelayError::ExpectedProof,
        ),
        (
            vec![Uplink::Register {
                identity: vec![1; 31],
                app_id: "a".into(),
                acks: false,
            }],
            RelayError::IdentityLength,
        ),
        (
            vec![Uplink::Register {
                identity: key.public().as_bytes().to_vec(),
                app_id: "bell\u{7}".into(),
                acks: false,
            }],
            RelayError::AppId,
        ),
    ];
    for (ups, error) in cases {
        let conn = relay.connect(now).unwrap();
        let mut last = Ok(());
        for up in ups {
            last = relay.handle_uplink(now, conn, up);
        }
        assert_eq!(last, Err(error));
        let end = transmits(&mut relay).pop().unwrap();
        assert_eq!(
            end,
            Transmit {
                to: conn,
                message: Downlink::End(error)
            }
        );
        // The relay takes nothing more from an ended stream.
        assert_eq!(
            relay.handle_uplink(now, conn, Uplink::Frame(vec![])),
            Err(RelayError::UnknownStream)
        );
        assert!(transmits(&mut relay).is_empty());
        relay.disconnect(conn);
    }
    // The honest proof registers.
    let (conn, queued) = register(&mut relay, now, SEED_A);
    assert_eq!((relay.identity(conn), queued), (Some(key.public()), 0));
}

#[test]
fn relay_registration_must_finish_within_the_timeout() {
    let now = Instant::from_secs(100);
    let mut relay = relay_with(|c| c.register_timeout = Duration::from_secs(10));
    let slow = relay.connect(now).unwrap();
    let (fast, _) = register(&mut relay, now, SEED_A);
    assert_eq!(relay.poll_timeout(), Some(now + Duration::from_secs(10)));
    relay.handle_timeout(now + Duration::from_secs(9));
    assert!(transmits(&mut relay).is_empty());
    relay.handle_timeout(now + Duration::from_secs(10));
    assert_eq!(
        transmits(&mut relay),
        [Transmit {
            to: slow,
            message: Downlink::End(RelayError::RegistrationTimeout)
        }]
    );
    assert_eq!(relay.identity(fast), Some(identity(SEED_A).public()));
    // Nothing else is due: no stream registering, no chat to expire.
    assert_eq!(relay.poll_timeout(), None);
}

#[test]
fn relay_second_registration_replaces_the_first_stream() {
    let now = Instant::ZERO;
    let mut relay = relay_with(|_| {});
    let (a, b) = relay_pair(&mut relay, now);
    let first = a;
    let key = identity(SEED_A);
    let (second, proved) = try_register(&mut relay, now, SEED_A);
    proved.unwrap();
    let out = transmits(&mut relay);
    assert!(out.contains(&Transmit {
        to: first,
        message: Downlink::End(RelayError::Replaced)
    }));
    assert_eq!(
        out.iter().find(|t| t.to == first).and_then(code_of),
        Some(10)
    );
    assert!(
        relay_events(&mut relay).contains(&RelayEvent::AppDisconnected {
            conn: first,
            identity: key.public()
        })
    );
    // Frames for A now reach the new stream only.
    relay
        .handle_uplink(now, b, Uplink::Frame(data_frame(CHAT, 1, 8)))
        .unwrap();
    assert_eq!(relay.poll_frame(first), None);
    assert_eq!(deliver_all(&mut relay, second).len(), 1);
}

#[test]
fn relay_chat_members_are_the_first_two_identities_and_a_third_is_refused() {
    let now = Instant::ZERO;
    let mut relay = relay_with(|_| {});
    let (a, _) = relay_pair(&mut relay, now);
    let (c, _) = register(&mut relay, now, SEED_C);
    assert_eq!(
        start(&mut relay, now, c, CHAT, None),
        Err(RelayError::ChatFull)
    );
    assert_eq!(RelayError::ChatFull.code(), 7);
    // The stranger may not send into the chat either.
    let r = relay.handle_uplink(now, c, Uplink::Frame(data_frame(CHAT, 0, 8)));
    assert_eq!(r, Err(RelayError::NotStarted));
    assert_eq!(code_of(&transmits(&mut relay)[0]), Some(5));
    // A participant that goes offline keeps its seat.
    relay.disconnect(a);
    assert_eq!(
        start(&mut relay, now, c, CHAT, None),
        Err(RelayError::ChatFull)
    );
    let members: Vec<_> = relay.members(&ChatId::new(CHAT)).collect();
    assert_eq!(
        members,
        [identity(SEED_A).public(), identity(SEED_B).public()]
    );
}

#[test]
fn relay_pinned_seat_cannot_be_squatted_by_a_stranger() {
    let now = Instant::ZERO;
    let mut relay = relay_with(|_| {});
    let (a, _) = register(&mut relay, now, SEED_A);
    let (b, _) = register(&mut relay, now, SEED_B);
    let (c, _) = register(&mut relay, now, SEED_C);
    let id_b = *identity(SEED_B).public().as_bytes();
    assert_eq!(start(&mut relay, now, a, CHAT, Some(id_b)), Ok(None));
    // The stranger knows the chat id and comes first: the seat is B's.
    assert_eq!(
        start(&mut relay, now, c, CHAT, None),
        Err(RelayError::SeatReserved)
    );
    assert_eq!(RelayError::SeatReserved.code(), 7);
    assert_eq!(
        start(&mut relay, now, b, CHAT, None),
        Ok(Some(identity(SEED_A).public()))
    );
}

#[test]
fn relay_pin_of_the_joining_participant_must_match_the_other() {
    let now = Instant::ZERO;
    let mut relay = relay_with(|_| {});
    let (c, _) = register(&mut relay, now, SEED_C);
    let (b, _) = register(&mut relay, now, SEED_B);
    assert_eq!(start(&mut relay, now, c, CHAT, None), Ok(None));
    let id_a = *identity(SEED_A).public().as_bytes();
    assert_eq!(
        start(&mut relay, now, b, CHAT, Some(id_a)),
        Err(RelayError::PinMismatch)
    );
    assert_eq!(relay.members(&ChatId::new(CHAT)).count(), 1);
}

#[test]
fn relay_frames_go_only_to_the_other_participant_in_order() {
    let now = Instant::ZERO;
    let mut relay = relay_with(|_| {});
    let (a, b) = relay_pair(&mut relay, now);
    let (c, _) = register(&mut relay, now, SEED_C);
    for seq in 0..5 {
        relay
            .handle_uplink(now, a, Uplink::Frame(data_frame(CHAT, seq, 8)))
            .unwrap();
    }
    assert!(relay_events(&mut relay).contains(&RelayEvent::FramesWaiting { conn: b }));
    assert_eq!(relay.poll_frame(a), None, "never back to the sender");
    assert_eq!(relay.poll_frame(c), None, "never to a stranger");
    let got = deliver_all(&mut relay, b);
    assert_eq!(
        got,
        (0..5).map(|s| data_frame(CHAT, s, 8)).collect::<Vec<_>>()
    );
    let s = relay.stats();
    assert_eq!(
        (
            s.frames_routed,
            s.frames_delivered,
            s.queued_frames,
            s.queued_bytes
        ),
        (5, 5, 0, 0)
    );
}

#[test]
fn relay_frames_wait_in_the_mailbox_while_the_recipient_is_offline() {
    let now = Instant::ZERO;
    let mut relay = relay_with(|_| {});
    let (a, b) = relay_pair(&mut relay, now);
    relay.disconnect(b);
    assert!(
        relay_events(&mut relay).contains(&RelayEvent::AppDisconnected {
            conn: b,
            identity: identity(SEED_B).public()
        })
    );
    for seq in 0..3 {
        relay
            .handle_uplink(now, a, Uplink::Frame(data_frame(CHAT, seq, 8)))
            .unwrap();
    }
    // Each accepted frame is acknowledged to its sender with its uplink index (register,
    // proof and start were 0, 1 and 2), so the app can let go of it.
    let stored = |uplink_index| Transmit {
        to: a,
        message: Downlink::Stored { uplink_index },
    };
    assert_eq!(transmits(&mut relay), [stored(3), stored(4), stored(5)]);
    assert!(relay_events(&mut relay).is_empty(), "nobody to wake");
    assert_eq!(relay.poll_frame(b), None);
    let (b2, queued) = register(&mut relay, now, SEED_B);
    assert_eq!(queued, 3);
    assert_eq!(deliver_all(&mut relay, b2).len(), 3);
}

#[test]
fn relay_frames_for_a_participant_not_yet_joined_are_held_then_delivered() {
    let now = Instant::ZERO;
    let mut relay = relay_with(|c| c.pending_frames = 2);
    let (a, _) = register(&mut relay, now, SEED_A);
    let (b, _) = register(&mut relay, now, SEED_B);
    start(&mut relay, now, a, CHAT, None).unwrap();
    for seq in 0..2 {
        relay
            .handle_uplink(now, a, Uplink::Frame(data_frame(CHAT, seq, 8)))
            .unwrap();
    }
    let r = relay.handle_uplink(now, a, Uplink::Frame(data_frame(CHAT, 2, 8)));
    assert_eq!(r, Err(RelayError::PendingFull));
    // Two acknowledged, the third refused: exactly one answer per frame.
    assert_eq!(
        transmits(&mut relay),
        [
            Transmit {
                to: a,
                message: Downlink::Stored { uplink_index: 3 }
            },
            Transmit {
                to: a,
                message: Downlink::Stored { uplink_index: 4 }
            },
            Transmit {
                to: a,
                message: Downlink::Rejected {
                    error: RelayError::PendingFull,
                    uplink_index: 5
                }
            }
        ]
    );
    start(&mut relay, now, b, CHAT, None).unwrap();
    assert_eq!(
        deliver_all(&mut relay, b),
        [data_frame(CHAT, 0, 8), data_frame(CHAT, 1, 8)]
    );
}

#[test]
fn relay_budgets_refuse_instead_of_growing() {
    let now = Instant::ZERO;
    // The recipient's mailbox.
    let mut relay = relay_with(|c| c.mailbox_frames = 3);
    let (a, b) = relay_pair(&mut relay, now);
    for seq in 0..3 {
        relay
            .handle_uplink(now, a, Uplink::Frame(data_frame(CHAT, seq, 8)))
            .unwrap();
    }
    let r = relay.handle_uplink(now, a, Uplink::Frame(data_frame(CHAT, 3, 8)));
    assert_eq!(r, Err(RelayError::MailboxFull));
    assert_eq!(relay.stats().queued_frames, 3);
    deliver_all(&mut relay, b);
    // The byte budget over all queues.
    let frame = data_frame(CHAT, 0, 1000);
    let mut relay = relay_with(|c| c.max_queued_bytes = 2 * frame.len());
    let (a, _) = relay_pair(&mut relay, now);
    for _ in 0..2 {
        relay
            .handle_uplink(now, a, Uplink::Frame(frame.clone()))
            .unwrap();
    }
    let r = relay.handle_uplink(now, a, Uplink::Frame(frame.clone()));
    assert_eq!(r, Err(RelayError::QueuesFull));
    assert_eq!(relay.stats().queued_bytes, 2 * frame.len());
    // The frame size.
    let mut relay = relay_with(|c| c.max_message_len = 100);
    let (a, _) = relay_pair(&mut relay, now);
    let r = relay.handle_uplink(now, a, Uplink::Frame(data_frame(CHAT, 0, 101)));
    assert_eq!(r, Err(RelayError::FrameTooLarge));
    assert_eq!(code_of(&transmits(&mut relay)[0]), Some(8));
    // Chats, chats per stream, streams.
    let mut relay = relay_with(|c| {
        c.max_chats = 2;
        c.max_chats_per_stream = 1;
        c.max_streams = 3;
    });
    let (a, _) = register(&mut relay, now, SEED_A);
    let (b, _) = register(&mut relay, now, SEED_B);
    start(&mut relay, now, a, [1; 16], None).unwrap();
    assert_eq!(
        start(&mut relay, now, a, [2; 16], None),
        Err(RelayError::TooManyChatsOnStream)
    );
    start(&mut relay, now, b, [2; 16], None).unwrap();
    let (c, _) = register(&mut relay, now, SEED_C);
    assert_eq!(
        start(&mut relay, now, c, [3; 16], None),
        Err(RelayError::TooManyChats)
    );
    assert_eq!(relay.connect(now), Err(RelayError::TooManyStreams));
    // Apps: an idle one (offline, empty mailbox) is forgotten to make room, a busy one is not.
    let mut relay = relay_with(|c| c.max_apps = 2);
    let (a, b) = relay_pair(&mut relay, now);
    relay
        .handle_uplink(now, b, Uplink::Frame(data_frame(CHAT, 0, 8)))
        .unwrap();
    transmits(&mut relay);
    relay.disconnect(a); // offline with a frame waiting: not idle
    let c_key = identity(SEED_C);
    let (_, proved) = try_register(&mut relay, now, SEED_C);
    assert_eq!(proved, Err(RelayError::TooManyApps));
    transmits(&mut relay);
    let (a2, queued) = register(&mut relay, now, SEED_A);
    assert_eq!(queued, 1);
    deliver_all(&mut relay, a2);
    relay.disconnect(a2); // now idle: its entry may go
    let (c, _) = register(&mut relay, now, SEED_C);
    assert_eq!(relay.identity(c), Some(c_key.public()));
}

#[test]
fn relay_handshake_initiations_are_throttled_per_chat_and_garbage_is_dropped() {
    let now = Instant::from_secs(1000);
    let mut relay = relay_with(|_| {});
    let (a, b) = relay_pair(&mut relay, now);
    let mut p = Pair::new(72);
    let f1 = p.a.poll_transmit().unwrap();
    let mut chat_f1 = f1.clone();
    chat_f1[2..18].copy_from_slice(&CHAT);
    for _ in 0..6 {
        relay
            .handle_uplink(now, a, Uplink::Frame(chat_f1.clone()))
            .unwrap();
    }
    let r = relay.handle_uplink(now, a, Uplink::Frame(chat_f1.clone()));
    assert_eq!(r, Err(RelayError::HandshakesThrottled));
    assert_eq!(deliver_all(&mut relay, b).len(), 6);
    // Other frames are not throttled; the limit slides.
    relay
        .handle_uplink(now, a, Uplink::Frame(data_frame(CHAT, 0, 8)))
        .unwrap();
    let later = now + Duration::from_secs(31);
    relay
        .handle_uplink(later, a, Uplink::Frame(chat_f1.clone()))
        .unwrap();
    // The keyless checks: a truncated data frame, a handshake with a counter, garbage.
    p.b.handle_frame(p.now, &f1).unwrap();
    p.pump().unwrap();
    let mut data = send_frame(&mut p.a, p.now, b"hello");
    data[2..18].copy_from_slice(&CHAT);
    relay
        .handle_uplink(later, a, Uplink::Frame(data.clone()))
        .unwrap();
    let mut hs = chat_f1.clone();
    hs[29] = 1;
    for bad in [data[..40].to_vec(), hs, b"garbage".to_vec()] {
        let r = relay.handle_uplink(later, a, Uplink::Frame(bad));
        assert_eq!(r, Err(RelayError::Malformed));
    }
    assert_eq!(RelayError::Malformed.code(), 3);
}

#[test]
fn relay_idle_chat_expires_and_its_state_is_wiped() {
    let now = Instant::ZERO;
    let idle = Duration::from_secs(3600);
    let mut relay = relay_with(|c| c.chat_idle_timeout = idle);
    let (a, b) = relay_pair(&mut relay, now);
    relay.disconnect(b);
    relay
        .handle_uplink(now, a, Uplink::Frame(data_frame(CHAT, 0, 8)))
        .unwrap();
    relay_events(&mut relay);
    assert_eq!(relay.poll_timeout(), Some(now + idle));
    relay.handle_timeout(now + idle);
    assert_eq!(
        relay_events(&mut relay),
        [RelayEvent::ChatExpired {
            chat_id: ChatId::new(CHAT),
            frames_dropped: 1
        }]
    );
    let s = relay.stats();
    assert_eq!(
        (s.chats, s.chats_expired, s.queued_frames, s.queued_bytes),
        (0, 1, 0, 0)
    );
    assert_eq!(relay.members(&ChatId::new(CHAT)).count(), 0);
    // The participant's stream may no longer send into it, and B finds nothing waiting.
    let r = relay.handle_uplink(now + idle, a, Uplink::Frame(data_frame(CHAT, 1, 8)));
    assert_eq!(r, Err(RelayError::NotStarted));
    transmits(&mut relay);
    let (_, queued) = register(&mut relay, now + idle, SEED_B);
    assert_eq!(queued, 0);
    // The id is free again.
    let (c, _) = register(&mut relay, now + idle, SEED_C);
    assert_eq!(start(&mut relay, now + idle, c, CHAT, None), Ok(None));
}

#[test]
fn relay_activity_postpones_expiry() {
    let now = Instant::ZERO;
    let idle = Duration::from_secs(3600);
    let mut relay = relay_with(|c| c.chat_idle_timeout = idle);
    let (a, b) = relay_pair(&mut relay, now);
    let half = now + Duration::from_secs(1800);
    relay
        .handle_uplink(half, a, Uplink::Frame(data_frame(CHAT, 0, 8)))
        .unwrap();
    deliver_all(&mut relay, b);
    relay_events(&mut relay);
    relay.handle_timeout(now + idle);
    assert_eq!(relay_events(&mut relay), []);
    assert_eq!(relay.stats().chats, 1);
    assert_eq!(relay.poll_timeout(), Some(half + idle));
    relay.handle_timeout(half + idle);
    assert_eq!(relay.stats().chats_expired, 1);
}

#[test]
fn relay_refusals_after_registration_are_in_band_and_the_stream_goes_on() {
    let now = Instant::ZERO;
    let mut relay = relay_with(|_| {});
    let (a, b) = relay_pair(&mut relay, now);
    // register (0), proof (1), start (2), then:
    let bad = [
        (
            Uplink::Start {
                chat_id: vec![1; 15],
                peer_identity: vec![],
            },
            RelayError::ChatIdLength,
        ),
        (
            Uplink::Start {
                chat_id: vec![1; 16],
                peer_identity: vec![1; 5],
            },
            RelayError::PinLength,
        ),
        (
            Uplink::Register {
                identity: vec![],
                app_id: String::new(),
                acks: false,
            },
            RelayError::AlreadyRegistered,
        ),
        (
            Uplink::Frame(handshake_init([9; 16], 0)),
            RelayError::NotStarted,
        ),
    ];
    for (i, (up, error)) in bad.into_iter().enumerate() {
        assert_eq!(relay.handle_uplink(now, a, up), Err(error));
        let uplink_index = 3 + i as u64;
        assert_eq!(
            transmits(&mut relay),
            [Transmit {
                to: a,
                message: Downlink::Rejected {
                    error,
                    uplink_index
                }
            }]
        );
    }
    relay
        .handle_uplink(now, a, Uplink::Frame(data_frame(CHAT, 0, 8)))
        .unwrap();
    assert_eq!(deliver_all(&mut relay, b).len(), 1);
    assert_eq!(relay.stats().uplinks_refused, 4);
}

#[test]
fn relay_config_is_checked_at_construction() {
    type Edit = fn(&mut RelayConfig);
    let bad: [(&str, Edit); 3] = [
        ("mailbox_frames", |c| c.mailbox_frames = 0),
        ("chat_idle_timeout", |c| {
            c.chat_idle_timeout = Duration::ZERO
        }),
        ("queue_capacity", |c| c.queue_capacity = 1),
    ];
    for (field, edit) in bad {
        let mut cfg = RelayConfig::default();
        edit(&mut cfg);
        let r = Relay::new(cfg, ChaCha20Rng::from_seed([0; 32]));
        assert_eq!(r.unwrap_err(), RelayError::InvalidConfig(field));
    }
}

#[test]
fn two_chats_talk_through_the_keyless_relay() {
    let mut relay = relay_with(|_| {});
    let mut p = Pair::new(83);
    let (a, b) = (
        register(&mut relay, p.now, SEED_A).0,
        register(&mut relay, p.now, SEED_B).0,
    );
    start(
        &mut relay,
        p.now,
        a,
        PAIR_CHAT,
        Some(*identity(SEED_B).public().as_bytes()),
    )
    .unwrap();
    start(
        &mut relay,
        p.now,
        b,
        PAIR_CHAT,
        Some(*identity(SEED_A).public().as_bytes()),
    )
    .unwrap();
    p.a.send(p.now, b"early").unwrap_err();
    for _ in 0..8 {
        while let Some(f) = p.a.poll_transmit() {
            relay.handle_uplink(p.now, a, Uplink::Frame(f)).unwrap();
        }
        while let Some(f) = p.b.poll_transmit() {
            relay.handle_uplink(p.now, b, Uplink::Frame(f)).unwrap();
        }
        for f in deliver_all(&mut relay, b) {
            p.b.handle_frame(p.now, &f).unwrap();
        }
        for f in deliver_all(&mut relay, a) {
            p.a.handle_frame(p.now, &f).unwrap();
        }
        if p.a.is_established() && p.b.is_established() && p.a.send(p.now, b"via the relay").is_ok()
        {
            break;
        }
    }
    let f = p.a.poll_transmit().unwrap();
    relay.handle_uplink(p.now, a, Uplink::Frame(f)).unwrap();
    for f in deliver_all(&mut relay, b) {
        p.b.handle_frame(p.now, &f).unwrap();
    }
    assert!(messages(&p.b_events())
        .iter()
        .any(|m| m.2 == b"via the relay"));
}

#[test]
fn a_replayed_message_3_is_confirmed_at_the_throttle_rate_and_within_the_queue() {
    let mut p = Pair::new(67);
    // Run the first handshake by hand, keeping A's message 3.
    let mut msg3 = None;
    for _ in 0..4 {
        while let Some(f) = p.a.poll_transmit() {
            if FrameHeader::parse(&f).unwrap().0.kind == FrameKind::HandshakeFinish {
                msg3 = Some(f.clone());
            }
            p.b.handle_frame(p.now, &f).unwrap();
        }
        while let Some(f) = p.b.poll_transmit() {
            p.a.handle_frame(p.now, &f).unwrap();
        }
    }
    let msg3 = msg3.expect("message 3");
    assert!(p.b.is_established());
    // A relay replays message 3 a hundred times at once: three confirmations (the rekey
    // throttle: 3 per 30 s), the rest refused, and B's queue never holds more.
    let mut confirmations = 0;
    let mut throttled = 0;
    for _ in 0..100 {
        match p.b.handle_frame(p.now, &msg3) {
            Ok(()) => confirmations += 1,
            Err(ChatError::RekeyThrottled) => throttled += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((confirmations, throttled), (3, 97));
    assert_eq!(std::iter::from_fn(|| p.b.poll_transmit()).count(), 3);
    // Without draining, the bounded queue refuses before the throttle would allow more.
    let later = p.now + Duration::from_secs(30);
    let mut queued = 0;
    for i in 0..100u64 {
        match p.b.handle_frame(later + Duration::from_secs(30 * i), &msg3) {
            Ok(()) => queued += 1,
            Err(ChatError::Capacity) => break,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(queued <= config().queue_capacity, "{queued} frames queued");
    // The genuine initiator still talks to B.
    p.a.send(later, b"still here").unwrap();
    let f = std::iter::from_fn(|| p.a.poll_transmit()).last().unwrap();
    p.b.handle_frame(later, &f).unwrap();
}

#[test]
fn a_restored_epoch_keeps_its_true_age_across_time_on_disk() {
    // Epoch established at p.now, sealed an hour later, restored 46 h after that by a process
    // whose clock starts anew: the epoch is 47 h old and must expire (48 h) within the hour.
    let mut p = Pair::established(68);
    let key = SealKey::from_bytes([8; 32]);
    let hour = Duration::from_secs(3600);
    let record = p.a.seal(p.now + hour, WALL, &key).unwrap();
    let restore = |wall: WallTime| {
        Chat::unseal(
            Instant::from_secs(5),
            wall,
            identity(SEED_A),
            config(),
            &record,
            UnsealWith::Key(&key),
            Some(1),
            ChaCha20Rng::from_seed([95; 32]),
        )
        .unwrap()
    };
    let t0 = Instant::from_secs(5);
    let mut r = restore(WALL.saturating_add(hour * 46));
    r.handle_timeout(t0 + hour - Duration::from_secs(1));
    assert!(!r.is_closed(), "47 h 59 min 59 s old: still alive");
    r.handle_timeout(t0 + hour);
    assert!(r.is_closed(), "48 h old: expired");
    // With no time on disk the same record lives 47 h more.
    let mut r = restore(WALL);
    r.handle_timeout(t0 + hour * 46);
    assert!(!r.is_closed());
    r.handle_timeout(t0 + hour * 47);
    assert!(r.is_closed());
    // A wall clock set back counts as no time on disk (the epoch never gets younger).
    let mut r = restore(WallTime::from_unix(1_000, 0));
    r.handle_timeout(t0 + hour * 46);
    assert!(!r.is_closed());
    r.handle_timeout(t0 + hour * 47);
    assert!(r.is_closed());
}

// ------------------------------------------------------------------ the relay as a mesh node
// `RelayConfig::mesh` (issue #13): the "bus" is the test handing each node's `poll_forward`
// output to the other nodes' `handle_forwarded`, as the NATS pump of grpc_chat_node does.

fn mesh_node() -> TestRelay {
    relay_with(|c| c.mesh = true)
}

fn forwards(relay: &mut TestRelay) -> Vec<Forward> {
    std::iter::from_fn(|| relay.poll_forward()).collect()
}

fn send_up(relay: &mut TestRelay, now: Instant, conn: ConnId, frame: Vec<u8>) {
    relay
        .handle_uplink(now, conn, Uplink::Frame(frame))
        .unwrap();
    transmits(relay);
}

/// Node 1 holds A, node 2 holds B; both started `CHAT`, each pinning the other.
fn two_nodes(now: Instant) -> (TestRelay, ConnId, TestRelay, ConnId) {
    let (mut n1, mut n2) = (mesh_node(), mesh_node());
    let (a, _) = register(&mut n1, now, SEED_A);
    let (b, _) = register(&mut n2, now, SEED_B);
    let id_a = *identity(SEED_A).public().as_bytes();
    let id_b = *identity(SEED_B).public().as_bytes();
    assert_eq!(start(&mut n1, now, a, CHAT, Some(id_b)), Ok(None));
    assert_eq!(start(&mut n2, now, b, CHAT, Some(id_a)), Ok(None));
    (n1, a, n2, b)
}

#[test]
fn mesh_a_frame_for_a_peer_not_here_is_forwarded_and_delivered_in_order_on_its_node() {
    let now = Instant::ZERO;
    let (mut n1, a, mut n2, b) = two_nodes(now);
    for seq in 0..5 {
        send_up(&mut n1, now, a, data_frame(CHAT, seq, 8));
    }
    let out = forwards(&mut n1);
    assert_eq!(out.len(), 5);
    assert!(out
        .iter()
        .all(|f| f.chat_id == ChatId::new(CHAT) && f.sender == identity(SEED_A).public()));
    assert_eq!(n1.poll_frame(a), None, "never back to the sender");
    for f in out {
        n2.handle_forwarded(now, f.sender, f.frame).unwrap();
    }
    assert!(relay_events(&mut n2).contains(&RelayEvent::FramesWaiting { conn: b }));
    let want: Vec<_> = (0..5).map(|s| data_frame(CHAT, s, 8)).collect();
    assert_eq!(deliver_all(&mut n2, b), want);
    let (s1, s2) = (n1.stats(), n2.stats());
    assert_eq!(
        (s1.frames_forwarded, s2.forwarded_in, s2.frames_delivered),
        (5, 5, 5)
    );
}

#[test]
fn mesh_a_stranger_from_another_node_cannot_reach_a_pinned_participant() {
    let now = Instant::ZERO;
    let (_, _, mut n2, b) = two_nodes(now);
    let stranger = identity(SEED_C).public();
    assert_eq!(
        n2.handle_forwarded(now, stranger, data_frame(CHAT, 0, 8)),
        Err(RelayError::SeatReserved)
    );
    assert_eq!(n2.poll_frame(b), None);
    assert_eq!(n2.stats().forwarded_refused, 1);
}

#[test]
fn mesh_own_frames_echoed_back_find_no_recipient_and_are_refused() {
    let now = Instant::ZERO;
    let (mut n1, a, _, _) = two_nodes(now);
    send_up(&mut n1, now, a, data_frame(CHAT, 0, 8));
    let f = forwards(&mut n1).pop().unwrap();
    assert_eq!(
        n1.handle_forwarded(now, f.sender, f.frame),
        Err(RelayError::NoSuchChat)
    );
    assert_eq!(n1.poll_frame(a), None);
}

#[test]
fn mesh_frames_for_an_offline_local_peer_are_forwarded_and_echoes_fill_its_mailbox() {
    let now = Instant::ZERO;
    let mut n1 = mesh_node();
    let (a, _) = register(&mut n1, now, SEED_A);
    let (b, _) = register(&mut n1, now, SEED_B);
    start(&mut n1, now, a, CHAT, None).unwrap();
    start(&mut n1, now, b, CHAT, None).unwrap();
    // Both here and live: local delivery, nothing forwarded.
    send_up(&mut n1, now, a, data_frame(CHAT, 0, 8));
    assert!(forwards(&mut n1).is_empty());
    assert_eq!(deliver_all(&mut n1, b).len(), 1);
    // B goes offline (it may have failed over to another node): the frame goes to the mesh,
    // and the bus's echo queues it here too, for a B that comes back.
    n1.disconnect(b);
    send_up(&mut n1, now, a, data_frame(CHAT, 1, 8));
    let f = forwards(&mut n1).pop().expect("forwarded");
    assert_eq!(n1.stats().queued_frames, 1, "a copy kept to publish again");
    n1.handle_forwarded(now, f.sender, f.frame).unwrap();
    // B announces itself from another node: the copy is published again for it there.
    let again = n1.handle_remote_join(&ChatId::new(CHAT), &identity(SEED_B).public());
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].frame, data_frame(CHAT, 1, 8));
    let (b2, queued) = register(&mut n1, now, SEED_B);
    assert_eq!(queued, 1);
    assert_eq!(deliver_all(&mut n1, b2), [data_frame(CHAT, 1, 8)]);
}

#[test]
fn mesh_frames_sent_before_the_peer_joined_elsewhere_are_handed_over_once_it_announces() {
    let now = Instant::ZERO;
    let mut n1 = mesh_node();
    let (a, _) = register(&mut n1, now, SEED_A);
    start(&mut n1, now, a, CHAT, None).unwrap();
    send_up(&mut n1, now, a, handshake_init(CHAT, 0));
    // Nobody held the chat elsewhere yet: the forwarded copy is lost, a copy waits here.
    assert_eq!(forwards(&mut n1).len(), 1);
    assert_eq!(n1.stats().queued_frames, 1);
    let id = ChatId::new(CHAT);
    let (b, c) = (identity(SEED_B).public(), identity(SEED_A).public());
    // The sender's own join announcement (echo) hands nothing over.
    assert!(n1.handle_remote_join(&id, &c).is_empty());
    let handed = n1.handle_remote_join(&id, &b);
    assert_eq!(handed.len(), 1);
    assert_eq!(
        (handed[0].sender, &handed[0].frame),
        (c, &handshake_init(CHAT, 0))
    );
    assert_eq!(
        n1.stats().queued_frames,
        1,
        "kept as the latest forwarded frame"
    );
    // From now on nothing is held for a joiner (the peer is on another node), but the latest
    // forwarded frames are kept and published again when the peer (re)joins somewhere.
    send_up(&mut n1, now, a, data_frame(CHAT, 0, 8));
    assert_eq!(forwards(&mut n1).len(), 1);
    assert_eq!(n1.stats().queued_frames, 2);
    let again: Vec<_> = n1
        .handle_remote_join(&id, &b)
        .into_iter()
        .map(|f| (f.sender, f.frame))
        .collect();
    assert_eq!(
        again,
        [(c, handshake_init(CHAT, 0)), (c, data_frame(CHAT, 0, 8))]
    );
    assert!(
        n1.handle_remote_join(&id, &c).is_empty(),
        "never to the sender"
    );
}

#[test]
fn mesh_copies_wait_for_the_peer_and_a_full_set_refuses_for_now_instead_of_dropping() {
    let now = Instant::ZERO;
    let frame = data_frame(CHAT, 0, 100);
    let mut n1 = relay_with(|c| {
        c.mesh = true;
        c.mesh_replay_frames = 3;
        c.max_queued_bytes = 2 * frame.len();
    });
    let (a, _) = register(&mut n1, now, SEED_A);
    start(&mut n1, now, a, CHAT, None).unwrap();
    let id = ChatId::new(CHAT);
    let b = identity(SEED_B).public();
    n1.handle_remote_join(&id, &b); // B is elsewhere: nothing held for a joiner
                                    // The byte budget (two frames) bounds the copies below the count bound (three): the third
                                    // frame is refused for now, and nothing kept gives way.
    send_up(&mut n1, now, a, data_frame(CHAT, 0, 100));
    send_up(&mut n1, now, a, data_frame(CHAT, 1, 100));
    assert_eq!(
        n1.handle_uplink(now, a, Uplink::Frame(data_frame(CHAT, 2, 100))),
        Err(RelayError::QueuesFull)
    );
    transmits(&mut n1);
    assert_eq!(
        forwards(&mut n1).len(),
        2,
        "only the accepted frames are forwarded"
    );
    let kept: Vec<_> = n1
        .handle_remote_join(&id, &b)
        .into_iter()
        .map(|f| f.frame)
        .collect();
    assert_eq!(kept, [data_frame(CHAT, 0, 100), data_frame(CHAT, 1, 100)]);
    assert_eq!(n1.stats().queued_bytes, 2 * frame.len());
    // B's node says B has frame 0: its copy goes, and the frame refused before now fits.
    let header = |seq| FrameHeader::parse(&data_frame(CHAT, seq, 100)).unwrap().0;
    let notice = |seq| Delivered {
        recipient: b,
        header: header(seq),
    };
    assert!(n1.handle_remote_delivered(&[notice(0)]).is_empty());
    assert_eq!(n1.stats().queued_bytes, frame.len());
    send_up(&mut n1, now, a, data_frame(CHAT, 2, 100));
    assert_eq!(forwards(&mut n1).len(), 1);
    // A notice naming a frame nobody kept here, or naming the sender as the recipient,
    // changes nothing.
    let foreign = Delivered {
        recipient: identity(SEED_A).public(),
        header: header(1),
    };
    assert!(n1.handle_remote_delivered(&[foreign, notice(9)]).is_empty());
    assert_eq!(n1.stats().queued_bytes, 2 * frame.len());
}

#[test]
fn mesh_a_copy_published_before_an_acknowledged_one_was_lost_and_is_published_again_once() {
    let now = Instant::ZERO;
    let (mut n1, a, mut n2, b) = two_nodes(now);
    // B's node announced B (grpc_chat_node does on every start): node 1 keeps copies.
    let (id, id_b) = (ChatId::new(CHAT), identity(SEED_B).public());
    assert!(n1.handle_remote_join(&id, &id_b).is_empty());
    for seq in 0..4 {
        send_up(&mut n1, now, a, data_frame(CHAT, seq, 8));
    }
    let mut out = forwards(&mut n1);
    // The bus drops frame 1 (a slow subscriber); node 2 queues the others for B.
    out.remove(1);
    for f in out {
        n2.handle_forwarded(now, f.sender, f.frame).unwrap();
    }
    let got = deliver_all(&mut n2, b);
    assert_eq!(got.len(), 3);
    let notices: Vec<Delivered> = std::iter::from_fn(|| n2.poll_delivered()).collect();
    assert_eq!(
        notices.len(),
        3,
        "B took them without acknowledgements: delivered for good"
    );
    // Node 1 hears of 0, 2 and 3: frame 1, published before 2, is published again, once.
    let again = n1.handle_remote_delivered(&notices);
    assert_eq!(
        again.iter().map(|f| f.frame.clone()).collect::<Vec<_>>(),
        [data_frame(CHAT, 1, 8)]
    );
    assert!(
        n1.handle_remote_delivered(&notices).is_empty(),
        "not for old notices"
    );
    n2.handle_forwarded(now, again[0].sender, again[0].frame.clone())
        .unwrap();
    assert_eq!(deliver_all(&mut n2, b), [data_frame(CHAT, 1, 8)]);
    let last: Vec<Delivered> = std::iter::from_fn(|| n2.poll_delivered()).collect();
    assert!(n1.handle_remote_delivered(&last).is_empty());
    assert_eq!(n1.stats().queued_frames, 0, "every copy released");
}

#[test]
fn an_app_that_acknowledges_gets_what_it_did_not_acknowledge_again_on_its_next_stream() {
    let now = Instant::ZERO;
    let mut relay = relay_with(|c| c.mailbox_frames = 4);
    let (a, _) = register(&mut relay, now, SEED_A);
    let (b, proved) = try_register_with(&mut relay, now, SEED_B, true);
    proved.unwrap();
    transmits(&mut relay);
    let id_a = *identity(SEED_A).public().as_bytes();
    let id_b = *identity(SEED_B).public().as_bytes();
    start(&mut relay, now, a, CHAT, Some(id_b)).unwrap();
    start(&mut relay, now, b, CHAT, Some(id_a)).unwrap();
    for seq in 0..3 {
        send_up(&mut relay, now, a, data_frame(CHAT, seq, 8));
    }
    let want: Vec<_> = (0..3).map(|s| data_frame(CHAT, s, 8)).collect();
    assert_eq!(deliver_all(&mut relay, b), want);
    // B kept the first one; the others still count in its mailbox (4 frames).
    relay
        .handle_uplink(now, b, Uplink::Ack { frames: 1 })
        .unwrap();
    assert_eq!(relay.stats().queued_frames, 2);
    send_up(&mut relay, now, a, data_frame(CHAT, 3, 8));
    send_up(&mut relay, now, a, data_frame(CHAT, 4, 8));
    assert_eq!(
        relay.handle_uplink(now, a, Uplink::Frame(data_frame(CHAT, 5, 8))),
        Err(RelayError::MailboxFull),
        "unacknowledged frames hold their place"
    );
    transmits(&mut relay);
    // An acknowledgement that goes back, or past what was delivered, is refused.
    for frames in [0, 4] {
        assert_eq!(
            relay.handle_uplink(now, b, Uplink::Ack { frames }),
            Err(RelayError::Malformed)
        );
    }
    transmits(&mut relay);
    // B crashes; its next stream gets frames 1 and 2 again, first, then 3 and 4.
    relay.disconnect(b);
    let (b2, proved) = try_register_with(&mut relay, now, SEED_B, true);
    proved.unwrap();
    transmits(&mut relay);
    start(&mut relay, now, b2, CHAT, Some(id_a)).unwrap();
    let want: Vec<_> = (1..5).map(|s| data_frame(CHAT, s, 8)).collect();
    assert_eq!(deliver_all(&mut relay, b2), want);
    relay
        .handle_uplink(now, b2, Uplink::Ack { frames: 4 })
        .unwrap();
    assert_eq!(relay.stats().queued_frames, 0);
    // An app that does not acknowledge cannot send one.
    assert_eq!(
        relay.handle_uplink(now, a, Uplink::Ack { frames: 0 }),
        Err(RelayError::Malformed)
    );
}

#[test]
fn mesh_a_pinned_chat_hands_nothing_over_to_a_stranger_announcing_itself() {
    let now = Instant::ZERO;
    let mut n1 = mesh_node();
    let (a, _) = register(&mut n1, now, SEED_A);
    let pin = *identity(SEED_B).public().as_bytes();
    start(&mut n1, now, a, CHAT, Some(pin)).unwrap();
    send_up(&mut n1, now, a, handshake_init(CHAT, 0));
    forwards(&mut n1);
    let stranger = identity(SEED_C).public();
    assert!(n1
        .handle_remote_join(&ChatId::new(CHAT), &stranger)
        .is_empty());
    assert_eq!(
        n1.stats().queued_frames,
        1,
        "still held for the pinned peer"
    );
}

#[test]
fn mesh_the_handshake_throttle_applies_before_forwarding() {
    let now = Instant::ZERO;
    let mut n1 = relay_with(|c| {
        c.mesh = true;
        c.max_handshakes = 2;
    });
    let (a, _) = register(&mut n1, now, SEED_A);
    start(&mut n1, now, a, CHAT, None).unwrap();
    for epoch in 0..2 {
        send_up(&mut n1, now, a, handshake_init(CHAT, epoch));
    }
    let r = n1.handle_uplink(now, a, Uplink::Frame(handshake_init(CHAT, 2)));
    assert_eq!(r, Err(RelayError::HandshakesThrottled));
    assert_eq!(forwards(&mut n1).len(), 2);
}

#[test]
fn relay_alone_never_forwards() {
    let now = Instant::ZERO;
    let mut relay = relay_with(|_| {});
    let (a, _) = register(&mut relay, now, SEED_A);
    start(&mut relay, now, a, CHAT, None).unwrap();
    send_up(&mut relay, now, a, data_frame(CHAT, 0, 8));
    assert!(forwards(&mut relay).is_empty());
    assert_eq!(relay.stats().queued_frames, 1, "held for the joiner");
}
