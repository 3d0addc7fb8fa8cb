//! One test per rule of the chat protocol (docs/chat-protocol.md), named for the rule.

mod chat_util;

use chat_util::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::chat::{
    Chat, ChatEvent, CloseReason, Error, FrameHeader, FrameKind, Opened, RelayConfig, RelayFilter,
};
use sealwire::crypto::ed25519::IdentityKey;
use sealwire::seal::{KdfParams, SealError, SealKey, UnsealWith};
use sealwire::time::{Duration, Instant};

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
    let mut cb = config(SEED_B);
    cb.pinned_peer = Some(wrong);
    p.b = Chat::responder(cb, ChaCha20Rng::from_seed([3; 32])).unwrap();
    assert_eq!(p.pump(), Err(Error::IdentityMismatch));
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
    assert_eq!(p.a.handle_frame(p.now, &f2), Err(Error::IdentityMismatch));
    assert!(!p.a.is_closed() && !p.a.is_established());
    assert!(p.a.poll_transmit().is_none(), "no message 3 and no close");
    // The right pin works.
    let right = IdentityKey::from_seed(SEED_B).public();
    let mut p = Pair::new(5);
    let mut ca = config(SEED_A);
    ca.pinned_peer = Some(right);
    p.a = Chat::initiator(ca, ChaCha20Rng::from_seed([5; 32]), p.now).unwrap();
    p.pump().unwrap();
    assert!(p.a.is_established());
}

#[test]
fn stranger_answering_a_rekey_is_rejected_and_the_genuine_peer_completes_it() {
    let mut p = Pair::established(9);
    // Mallory has her own identity, sees every frame and answers A's message 1 herself.
    let mut mallory =
        Chat::responder(config([0x3e; 32]), ChaCha20Rng::from_seed([0x3e; 32])).unwrap();
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
        Err(Error::IdentityMismatch)
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
        config([0x3e; 32]),
        ChaCha20Rng::from_seed([0x3f; 32]),
        p.now,
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
    assert_eq!(p.b.handle_frame(p.now, &m3), Err(Error::IdentityMismatch));
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
    assert_eq!(p.a.handle_frame(p.now, &bad), Err(Error::HandshakeFailed));
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
        Err(Error::AuthenticationFailed)
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
        Err(Error::BufferTooSmall {
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
        Err(Error::AuthenticationFailed)
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
    assert_eq!(p.a.send(p.now, &[0u8; 9]), Err(Error::MessageTooLarge));
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
    assert_eq!(p.b.handle_frame(p.now, &f2), Err(Error::Replayed));
    assert_eq!(p.b.handle_frame(p.now, &f0), Err(Error::Replayed));
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
        assert_eq!(p.b.handle_frame(p.now, old), Err(Error::Replayed));
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
        assert_eq!(p.b.handle_frame(p.now, f), Err(Error::Desync));
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
    assert_eq!(p.b.handle_frame(p.now, &late), Err(Error::Desync));
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
        assert_eq!(p.b.handle_frame(p.now, &forged), Err(Error::Desync));
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
    assert_eq!(p.b.handle_frame(p.now, &frames[0]), Err(Error::Replayed));
    p.b.handle_frame(p.now, &frames[7]).unwrap();
}

#[test]
fn frame_for_another_chat_or_malformed_is_rejected() {
    let mut p = Pair::established(25);
    let mut f = send_frame(&mut p.a, p.now, b"x");
    f[5] ^= 1;
    assert_eq!(p.b.handle_frame(p.now, &f), Err(Error::WrongChat));
    assert_eq!(p.b.handle_frame(p.now, &[1, 0x10]), Err(Error::Malformed));
    let mut v2 = send_frame(&mut p.a, p.now, b"x");
    v2[0] = 2;
    assert_eq!(p.b.handle_frame(p.now, &v2), Err(Error::Malformed));
    let mut unknown = v2.clone();
    unknown[0] = 1;
    unknown[1] = 0x11;
    assert_eq!(p.b.handle_frame(p.now, &unknown), Err(Error::Malformed));
    assert_eq!(p.b.handle_frame(p.now, &v2[..45]), Err(Error::Malformed));
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
    assert_eq!(p.b.handle_frame(p.now, &old), Err(Error::Replayed));
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
    assert_eq!(p.b.handle_frame(p.now, &f1), Err(Error::Replayed));
    // A data frame claiming epoch 3: skipped an epoch.
    let mut f = send_frame(&mut p.a, p.now, b"x");
    f[21] = 3;
    assert_eq!(p.b.handle_frame(p.now, &f), Err(Error::Desync));
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
    assert_eq!(p.a.rekey(p.now), Err(Error::RekeyThrottled));
    // The peer's throttle also refuses a rekey it is offered.
    assert_eq!(p.b.rekey(p.now), Err(Error::RekeyThrottled));
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
        Err(Error::AuthenticationFailed)
    );
    p.a.close(p.now).unwrap();
    assert!(p.a.is_closed());
    assert_eq!(p.a.send(p.now, b"x"), Err(Error::Closed));
    p.pump().unwrap();
    assert!(p.b.is_closed());
    assert!(p.b_events().contains(&ChatEvent::Closed {
        reason: CloseReason::Normal,
        by_peer: true
    }));
    assert_eq!(p.b.epoch(), None);
    assert_eq!(p.b.skipped_keys(), 0);
    assert_eq!(
        p.b.seal(p.now, &SealKey::from_bytes([1; 32])).unwrap_err(),
        Error::Closed
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
    KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    }
}

#[test]
fn sealed_state_restores_and_never_reuses_a_message_key() {
    let mut p = Pair::established(60);
    let key = SealKey::from_bytes([3; 32]);
    p.a.send(p.now, b"before").unwrap();
    let record = p.a.seal(p.now, &key).unwrap();
    // The live machine keeps sending after the seal (counters 1..3) ...
    for i in 1..4u8 {
        p.a.send(p.now, &[i]).unwrap();
    }
    p.pump().unwrap();
    p.b_events();
    // ... then crashes. The restore resumes at the end of the lease (1 + 128).
    let mut restored = Chat::unseal(
        config(SEED_A),
        ChaCha20Rng::from_seed([61; 32]),
        p.now,
        &record,
        UnsealWith::Key(&key),
        Some(1),
    )
    .unwrap();
    assert_eq!(restored.send(p.now, b"x"), Err(Error::LeaseExhausted));
    restored.seal(p.now, &key).unwrap();
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
    let mut record = p.a.seal(p.now, &key).unwrap();
    // Crash and restore repeatedly within one throttle period: only the first restores can
    // start their fresh epoch at once.
    let mut restored = None;
    for i in 0..5u8 {
        let mut r = Chat::unseal(
            config(SEED_A),
            ChaCha20Rng::from_seed([70 + i; 32]),
            p.now,
            &record,
            UnsealWith::Key(&key),
            None,
        )
        .unwrap();
        record = r.seal(p.now, &key).unwrap();
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
    p.a.seal(p.now, &key).unwrap();
    for i in 0..4u8 {
        p.a.send(p.now, &[i]).unwrap();
    }
    assert!(p.a_events().contains(&ChatEvent::SealAdvised));
    assert_eq!(p.a.send(p.now, b"x"), Err(Error::LeaseExhausted));
    p.a.seal(p.now, &key).unwrap();
    p.a.send(p.now, b"x").unwrap();
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
    let record = p.b.seal(p.now, &key).unwrap();
    let r = Chat::unseal(
        config(SEED_B),
        ChaCha20Rng::from_seed([2; 32]),
        p.now,
        &record,
        UnsealWith::Passphrase(b"hunter2"),
        None,
    )
    .unwrap();
    assert_eq!(r.epoch(), Some(0));
    assert_eq!(
        r.peer_identity(),
        Some(IdentityKey::from_seed(SEED_A).public())
    );
    let wrong = Chat::unseal(
        config(SEED_B),
        ChaCha20Rng::from_seed([2; 32]),
        p.now,
        &record,
        UnsealWith::Passphrase(b"hunter3"),
        None,
    );
    assert_eq!(
        wrong.unwrap_err(),
        Error::Sealed(SealError::AuthenticationFailed)
    );
}

#[test]
fn tampered_truncated_foreign_and_stale_sealed_records_are_rejected() {
    let mut p = Pair::established(64);
    let key = SealKey::from_bytes([3; 32]);
    let first = p.a.seal(p.now, &key).unwrap();
    let second = p.a.seal(p.now, &key).unwrap();
    let open = |rec: &[u8], cfg_seed: [u8; 32], seen: Option<u64>| {
        Chat::unseal(
            config(cfg_seed),
            ChaCha20Rng::from_seed([0; 32]),
            Instant::ZERO,
            rec,
            UnsealWith::Key(&key),
            seen,
        )
    };
    assert!(open(&second, SEED_A, Some(2)).is_ok());
    assert_eq!(
        open(&first, SEED_A, Some(2)).unwrap_err(),
        Error::SealedStale { record: 1, seen: 2 }
    );
    assert_eq!(
        open(&second, SEED_B, None).unwrap_err(),
        Error::SealedForeign
    );
    let mut other_chat = config(SEED_A);
    other_chat.chat_id = sealwire::chat::ChatId::new([0; 16]);
    let r = Chat::unseal(
        other_chat,
        ChaCha20Rng::from_seed([0; 32]),
        Instant::ZERO,
        &second,
        UnsealWith::Key(&key),
        None,
    );
    assert_eq!(r.unwrap_err(), Error::SealedForeign);
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
        config(SEED_A),
        ChaCha20Rng::from_seed([0; 32]),
        Instant::ZERO,
        &second,
        UnsealWith::Key(&other_key),
        None,
    );
    assert_eq!(
        r.unwrap_err(),
        Error::Sealed(SealError::AuthenticationFailed)
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
fn relay_filter_drops_garbage_and_throttles_handshakes_per_chat() {
    let mut relay = RelayFilter::new(RelayConfig::default());
    let mut p = Pair::new(72);
    let f1 = p.a.poll_transmit().unwrap();
    for _ in 0..6 {
        assert_eq!(
            relay.check(p.now, &f1).unwrap().kind,
            FrameKind::HandshakeInit
        );
    }
    assert_eq!(relay.check(p.now, &f1), Err(Error::RekeyThrottled));
    assert!(relay.check(p.now + Duration::from_secs(31), &f1).is_ok());
    p.b.handle_frame(p.now, &f1).unwrap();
    p.pump().unwrap();
    let data = send_frame(&mut p.a, p.now, b"hello");
    assert_eq!(relay.check(p.now, &data).unwrap().counter, 0);
    assert_eq!(relay.check(p.now, &data[..40]), Err(Error::Malformed));
    let mut hs = f1.clone();
    hs[29] = 1; // handshake with a counter
    assert_eq!(relay.check(p.now, &hs), Err(Error::Malformed));
}

#[test]
fn machines_are_send_and_secrets_print_redacted() {
    fn assert_send<T: Send>() {}
    assert_send::<Chat<ChaCha20Rng>>();
    assert_send::<RelayFilter>();
    let cfg = config(SEED_A);
    assert!(!format!("{cfg:?}").contains(&hex(&SEED_A)));
    assert!(format!("{cfg:?}").contains("[redacted]"));
    let p = Pair::established(80);
    let dbg = format!("{:?}", p.a);
    assert!(dbg.contains("Chat") && !dbg.contains("ck"));
}
