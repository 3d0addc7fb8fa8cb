//! The relay machine as one node of a mesh (`RelayConfig::mesh`, issue #13): the rules of
//! forwarding between nodes, one test per rule. The "bus" here is the test itself handing each
//! node's `poll_forward` output to the other nodes' `handle_forwarded`, as the NATS pump does.

mod support {
    pub mod chat;
}

use sealwire::chat::relay::{ConnId, Forward, RelayError, RelayEvent, Uplink};
use sealwire::chat::ChatId;
use sealwire::time::Instant;
use support::chat::*;

const CHAT: [u8; 16] = [0xd1; 16];
const SEED_C: [u8; 32] = [0xc3; 32];

fn node() -> TestRelay {
    relay_with(|c| c.mesh = true)
}

fn forwards(relay: &mut TestRelay) -> Vec<Forward> {
    std::iter::from_fn(|| relay.poll_forward()).collect()
}

fn send(relay: &mut TestRelay, now: Instant, conn: ConnId, frame: Vec<u8>) {
    relay
        .handle_uplink(now, conn, Uplink::Frame(frame))
        .unwrap();
    transmits(relay);
}

/// Node 1 holds A, node 2 holds B; both started `CHAT`, each pinning the other.
fn two_nodes(now: Instant) -> (TestRelay, ConnId, TestRelay, ConnId) {
    let (mut n1, mut n2) = (node(), node());
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
        send(&mut n1, now, a, data_frame(CHAT, seq, 8));
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
    send(&mut n1, now, a, data_frame(CHAT, 0, 8));
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
    let mut n1 = node();
    let (a, _) = register(&mut n1, now, SEED_A);
    let (b, _) = register(&mut n1, now, SEED_B);
    start(&mut n1, now, a, CHAT, None).unwrap();
    start(&mut n1, now, b, CHAT, None).unwrap();
    // Both here and live: local delivery, nothing forwarded.
    send(&mut n1, now, a, data_frame(CHAT, 0, 8));
    assert!(forwards(&mut n1).is_empty());
    assert_eq!(deliver_all(&mut n1, b).len(), 1);
    // B goes offline (it may have failed over to another node): the frame goes to the mesh,
    // and the bus's echo queues it here too, for a B that comes back.
    n1.disconnect(b);
    send(&mut n1, now, a, data_frame(CHAT, 1, 8));
    let f = forwards(&mut n1).pop().expect("forwarded");
    assert_eq!(n1.stats().queued_frames, 0);
    n1.handle_forwarded(now, f.sender, f.frame).unwrap();
    let (b2, queued) = register(&mut n1, now, SEED_B);
    assert_eq!(queued, 1);
    assert_eq!(deliver_all(&mut n1, b2), [data_frame(CHAT, 1, 8)]);
}

#[test]
fn mesh_frames_sent_before_the_peer_joined_elsewhere_are_handed_over_once_it_announces() {
    let now = Instant::ZERO;
    let mut n1 = node();
    let (a, _) = register(&mut n1, now, SEED_A);
    start(&mut n1, now, a, CHAT, None).unwrap();
    send(&mut n1, now, a, handshake_init(CHAT, 0));
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
    assert_eq!(n1.stats().queued_frames, 0);
    // From now on nothing is held: the peer is on another node.
    send(&mut n1, now, a, data_frame(CHAT, 0, 8));
    assert_eq!(forwards(&mut n1).len(), 1);
    assert_eq!(n1.stats().queued_frames, 0);
    assert!(n1.handle_remote_join(&id, &b).is_empty());
}

#[test]
fn mesh_a_pinned_chat_hands_nothing_over_to_a_stranger_announcing_itself() {
    let now = Instant::ZERO;
    let mut n1 = node();
    let (a, _) = register(&mut n1, now, SEED_A);
    let pin = *identity(SEED_B).public().as_bytes();
    start(&mut n1, now, a, CHAT, Some(pin)).unwrap();
    send(&mut n1, now, a, handshake_init(CHAT, 0));
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
        send(&mut n1, now, a, handshake_init(CHAT, epoch));
    }
    let r = n1.handle_uplink(now, a, Uplink::Frame(handshake_init(CHAT, 2)));
    assert_eq!(r, Err(RelayError::HandshakesThrottled));
    assert_eq!(forwards(&mut n1).len(), 2);
}

#[test]
fn a_lone_relay_never_forwards() {
    let now = Instant::ZERO;
    let mut relay = relay_with(|_| {});
    let (a, _) = register(&mut relay, now, SEED_A);
    start(&mut relay, now, a, CHAT, None).unwrap();
    send(&mut relay, now, a, data_frame(CHAT, 0, 8));
    assert!(forwards(&mut relay).is_empty());
    assert_eq!(relay.stats().queued_frames, 1, "held for the joiner");
}
