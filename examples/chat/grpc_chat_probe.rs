//! Sends bad input to a `grpc_chat_node` and prints the gRPC status code it answers with, one
//! `CASE Code` line per case. Used by `tests/e2e_chat.sh` to check that the node refuses garbage
//! with a status (not a crash) and keeps serving. Uses fresh identities and random chat ids, so
//! it never disturbs real chats.
//!
//! ```text
//! cargo run --example grpc_chat_probe -- --node http://127.0.0.1:50051
//! ```

use chat_examples::proto as chat_relay;
#[allow(dead_code)]
use chat_examples::relay_client;

use chat_relay::downlink;
use relay_client::{BoxError, ProofMode, RelayStream};
use sealwire::chat::relay::RelayConfig;
use sealwire::chat::{data_frame_len, ChatId, FrameHeader, FrameKind, MSG1_BODY_LEN};
use sealwire::crypto::ed25519::IdentityKey;
use tonic::Code;

fn identity() -> IdentityKey {
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    IdentityKey::generate(&mut rng)
}

fn random_chat() -> [u8; 16] {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).expect("OS randomness");
    id
}

/// A well-formed first handshake message for `chat` at `epoch` (random `e`, no keys needed).
fn handshake_init(chat: [u8; 16], epoch: u32) -> Vec<u8> {
    let header = FrameHeader {
        kind: FrameKind::HandshakeInit,
        chat_id: ChatId::new(chat),
        epoch,
        counter: 0,
    };
    let mut frame = header.encode().to_vec();
    frame.extend_from_slice(&[0x42; MSG1_BODY_LEN]);
    frame
}

/// After an input followed by a `start` marker: how the node answered the input. That is the
/// code of a `rejected` that came before the marker's `started`, `Ok` if none did, or the
/// status that ended the stream.
async fn answer(stream: &mut RelayStream) -> Code {
    let mut refused = None;
    loop {
        match stream.next().await {
            Ok(Some(downlink::Msg::Rejected(r))) => refused = refused.or(Some(Code::from(r.code))),
            Ok(Some(downlink::Msg::Started(_))) => return refused.unwrap_or(Code::Ok),
            Ok(Some(_)) => continue,
            Ok(None) => return Code::Unknown,
            Err(status) => return status.code(),
        }
    }
}

/// The answer to a lone `start`: `Ok` for `started`, the code of a `rejected`, or the status that
/// ended the stream.
async fn start_answer(stream: &mut RelayStream) -> Code {
    loop {
        match stream.next().await {
            Ok(Some(downlink::Msg::Rejected(r))) => return Code::from(r.code),
            Ok(Some(downlink::Msg::Started(_))) => return Code::Ok,
            Ok(Some(_)) => continue,
            Ok(None) => return Code::Unknown,
            Err(status) => return status.code(),
        }
    }
}

/// Sends frames until one is refused (or all were accepted, which is `Ok`). Accepted frames get
/// no answer, so each one is followed by a `start` of the same chat as a marker.
async fn first_refusal(
    stream: &mut RelayStream,
    chat: [u8; 16],
    frames: impl IntoIterator<Item = Vec<u8>>,
) -> Result<Code, BoxError> {
    for frame in frames {
        stream.send_frame(frame).await?;
        stream.start_chat(chat, None).await?;
        match answer(stream).await {
            Code::Ok => continue,
            refused => return Ok(refused),
        }
    }
    Ok(Code::Ok)
}

async fn run(node: &str) -> Result<(), BoxError> {
    let report = |case: &str, code: Code| println!("{case} {code:?}");

    let owner = identity();
    let (mut s, _) = RelayStream::connect(node, &owner, "probe", ProofMode::Honest).await?;
    let chat = random_chat();
    s.start_chat(chat, None).await?;
    let started = start_answer(&mut s).await;
    if started != Code::Ok {
        return Err(format!("could not start a chat: {started:?}").into());
    }

    let one = |frame: Vec<u8>| [frame];
    report(
        "garbage",
        first_refusal(&mut s, chat, one(b"garbage".to_vec())).await?,
    );
    let mut bad_version = handshake_init(chat, 0);
    bad_version[0] = 2;
    report(
        "bad-version",
        first_refusal(&mut s, chat, one(bad_version)).await?,
    );
    let mut bad_size = handshake_init(chat, 0);
    bad_size.pop(); // message 1 must carry exactly 32 bytes
    report(
        "bad-size",
        first_refusal(&mut s, chat, one(bad_size)).await?,
    );
    let mut bad_kind = handshake_init(chat, 0);
    bad_kind[1] = 0x7f;
    report(
        "bad-kind",
        first_refusal(&mut s, chat, one(bad_kind)).await?,
    );
    report(
        "unknown-chat",
        first_refusal(&mut s, chat, one(handshake_init(random_chat(), 0))).await?,
    );
    let mut oversized = FrameHeader {
        kind: FrameKind::Data,
        chat_id: ChatId::new(chat),
        epoch: 0,
        counter: 0,
    }
    .encode()
    .to_vec();
    // One byte more than the largest frame the node accepts by default.
    oversized.resize(
        data_frame_len(RelayConfig::default().max_message_len) + 1,
        0,
    );
    report(
        "oversized",
        first_refusal(&mut s, chat, one(oversized)).await?,
    );
    // Rekey handshakes (epoch 1, 2, ...) of one chat: the node's throttle must cut in.
    let rekeys = (1..=10).map(|epoch| handshake_init(chat, epoch));
    report("rekey-throttle", first_refusal(&mut s, chat, rekeys).await?);

    // A chat has two participants; a third identity is refused.
    let (second, _) = RelayStream::connect(node, &identity(), "probe-2", ProofMode::Honest).await?;
    let mut second = second;
    second.start_chat(chat, None).await?;
    let joined = start_answer(&mut second).await;
    if joined != Code::Ok {
        return Err(format!("second participant refused: {joined:?}").into());
    }
    let (mut third, _) =
        RelayStream::connect(node, &identity(), "probe-3", ProofMode::Honest).await?;
    third.start_chat(chat, None).await?;
    report("third-participant", start_answer(&mut third).await);

    // A participant that stops reading: its stream queue, then its bounded mailbox fill up, and
    // the sender is told RESOURCE_EXHAUSTED instead of the node growing without bound.
    let chat2 = random_chat();
    s.start_chat(chat2, None).await?;
    start_answer(&mut s).await;
    let (sleeper, _) =
        RelayStream::connect(node, &identity(), "probe-sleeper", ProofMode::Honest).await?;
    let mut sleeper = sleeper;
    sleeper.start_chat(chat2, None).await?;
    start_answer(&mut sleeper).await;
    let data = |counter: u64| {
        let mut frame = FrameHeader {
            kind: FrameKind::Data,
            chat_id: ChatId::new(chat2),
            epoch: 0,
            counter,
        }
        .encode()
        .to_vec();
        frame.resize(frame.len() + 1024, 0x17);
        frame
    };
    report(
        "mailbox-full",
        first_refusal(&mut s, chat2, (0..5000).map(data)).await?,
    );
    drop(sleeper);

    // A forged registration proof ends the stream.
    let forged = RelayStream::connect(node, &identity(), "probe-forged", ProofMode::Forged).await;
    let code = match forged {
        Ok(_) => Code::Ok,
        Err(e) => match e.downcast_ref::<tonic::Status>() {
            Some(status) => status.code(),
            None => Code::Unknown,
        },
    };
    report("bad-signature", code);

    // A second registration of the same identity (an app restarted before the node noticed
    // the old connection die) replaces the first stream, which ends with ABORTED.
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("OS randomness");
    let (mut first, _) = RelayStream::connect(
        node,
        &IdentityKey::from_seed(seed),
        "probe-twice",
        ProofMode::Honest,
    )
    .await?;
    let (_second, _) = RelayStream::connect(
        node,
        &IdentityKey::from_seed(seed),
        "probe-twice",
        ProofMode::Honest,
    )
    .await?;
    report("replaced", start_answer(&mut first).await);

    // A message beyond the transport limit ends that stream only.
    let (mut huge, _) =
        RelayStream::connect(node, &identity(), "probe-huge", ProofMode::Honest).await?;
    huge.send_frame(vec![0u8; 1 << 20]).await?;
    report("huge", start_answer(&mut huge).await);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut node = "http://127.0.0.1:50051".to_string();
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--node", Some(url)) => node = url,
            _ => {
                eprintln!("usage: grpc_chat_probe [--node URL]");
                std::process::exit(2);
            }
        }
    }
    if let Err(e) = run(&node).await {
        eprintln!("probe failed: {e}");
        std::process::exit(1);
    }
}
