//! The node's pump over real gRPC streams in one process: two apps register and exchange a
//! frame through the relay machine, a third identity is refused the chat, and frames queued
//! for an offline app wait for its next registration. (tests/e2e_chat.sh drives the programs.)

use chat_examples::proto::downlink;
use chat_examples::relay_client::{ProofMode, RelayStream};
use chat_examples::relay_service::relay_service;
use rand_core::UnwrapErr;
use sealwire::chat::relay::{Relay, RelayConfig};
use sealwire::chat::{ChatId, FrameHeader, FrameKind, MSG1_BODY_LEN};
use sealwire::crypto::ed25519::IdentityKey;
use tonic::Code;

async fn node() -> String {
    let relay = Relay::new(RelayConfig::default(), UnwrapErr(getrandom::SysRng)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = relay_service(relay, 8);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    format!("http://{addr}")
}

fn init(chat: [u8; 16]) -> Vec<u8> {
    let h = FrameHeader {
        kind: FrameKind::HandshakeInit,
        chat_id: ChatId::new(chat),
        epoch: 0,
        counter: 0,
    };
    let mut f = h.encode().to_vec();
    f.extend_from_slice(&[7; MSG1_BODY_LEN]);
    f
}

/// The next message that is not a `started` answer.
async fn next_other(s: &mut RelayStream) -> Option<downlink::Msg> {
    loop {
        match s.next().await.unwrap() {
            Some(downlink::Msg::Started(_)) => continue,
            other => return other,
        }
    }
}

#[tokio::test]
async fn apps_talk_through_the_pumped_relay_and_a_stranger_is_refused() {
    let node = node().await;
    let chat = [0x33; 16];
    let (alice, bob, carol) = (
        IdentityKey::from_seed([1; 32]),
        IdentityKey::from_seed([2; 32]),
        IdentityKey::from_seed([3; 32]),
    );
    let (mut a, _) = RelayStream::connect(&node, &alice, "alice", ProofMode::Honest)
        .await
        .unwrap();
    a.start_chat(chat, Some(*bob.public().as_bytes()))
        .await
        .unwrap();
    // Bob is offline: Alice's first frame waits for him, and the node says it stored it
    // (uplink 3: register, proof and start came first).
    a.send_frame(init(chat)).await.unwrap();
    assert_eq!(
        next_other(&mut a).await,
        Some(downlink::Msg::Stored(chat_examples::proto::Stored {
            uplink_index: 3
        }))
    );
    // Carol knows the chat id, but Alice reserved the seat for Bob.
    let (mut c, _) = RelayStream::connect(&node, &carol, "carol", ProofMode::Honest)
        .await
        .unwrap();
    c.start_chat(chat, None).await.unwrap();
    match c.next().await.unwrap() {
        Some(downlink::Msg::Rejected(r)) => {
            assert_eq!(Code::from(r.code), Code::PermissionDenied)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let (mut b, queued) = RelayStream::connect(&node, &bob, "bob", ProofMode::Honest)
        .await
        .unwrap();
    assert_eq!(
        queued, 0,
        "held for a participant that has not joined, not yet his"
    );
    b.start_chat(chat, Some(*alice.public().as_bytes()))
        .await
        .unwrap();
    assert_eq!(
        next_other(&mut b).await,
        Some(downlink::Msg::Frame(init(chat)))
    );
    // And back.
    let mut reply = init(chat);
    reply[30] = 9;
    b.send_frame(reply.clone()).await.unwrap();
    assert_eq!(
        next_other(&mut b).await,
        Some(downlink::Msg::Stored(chat_examples::proto::Stored {
            uplink_index: 3
        }))
    );
    assert_eq!(next_other(&mut a).await, Some(downlink::Msg::Frame(reply)));
    // A forged registration ends its stream.
    let forged = RelayStream::connect(&node, &carol, "carol", ProofMode::Forged).await;
    let status = forged
        .err()
        .and_then(|e| e.downcast_ref::<tonic::Status>().map(|s| s.code()));
    assert_eq!(status, Some(Code::Unauthenticated));
}
