//! Load and latency of chat relay nodes: frames per second through one node or across two
//! nodes of a mesh, and the one-way latency of a frame (p50/p99), measured from outside over
//! the real gRPC path. The frames are well-formed keyless chat frames with random bodies (a
//! relay never decrypts), so the figures are the relay's, not the chat machine's.
//!
//! ```text
//! chat_load --node URL [--peer-node URL] [--chats N] [--frames N] [--size BYTES]
//!           [--window N] [--latency-frames N]
//! ```
//!
//! Each chat has two fresh identities: A registers at `--node`, B at `--peer-node` (default
//! the same node). Throughput phase: every A sends `--frames` data frames of `--size` bytes of
//! plaintext, keeping at most `--window` frames unacknowledged (`stored`), while every B reads.
//! Latency phase: one chat, one frame at a time (the next leaves when the previous arrived),
//! each carrying its send time. A frame the node refuses for now is sent again 10 ms later and
//! counted in `frames_refused`. Output, one `key value` per line:
//!
//! ```text
//! chats 200
//! frames_received 200000
//! frames_refused 0
//! frames_per_second 21034
//! latency_p50_us 412
//! latency_p99_us 1210
//! ```

use std::time::{Duration, Instant};

use chat_examples::cli::args_or_exit;
use chat_examples::proto::downlink;
use chat_examples::relay_client::{BoxError, ProofMode, RelayStream};
use sealwire::chat::{ChatId, FrameHeader, FrameKind, TAG_LEN};
use sealwire::crypto::ed25519::IdentityKey;

const HELP: &str = "\
chat_load — frames per second and latency through grpc_chat_node(s) (sealwire example)

USAGE:
    chat_load --node URL [OPTIONS]

OPTIONS:
    --node URL            where the senders (A) register
    --peer-node URL       where the receivers (B) register (default: --node); another node of
                          the same mesh measures the cross-node path through NATS
    --chats N             concurrent chats (default 20)
    --frames N            frames each sender sends in the throughput phase (default 1000)
    --size BYTES          plaintext bytes per frame (default 1024)
    --window N            unacknowledged frames per sender (default 32)
    --latency-frames N    frames of the latency phase, one at a time (default 1000; 0 skips)
    -h, --help            print this help

The nodes' rate limits apply: start them with a --rate-data above the per-chat rate you load.
";

const USAGE: &str = "usage: chat_load --node URL [OPTIONS]   (chat_load --help for more)";

struct Args {
    node: String,
    peer_node: Option<String>,
    chats: usize,
    frames: u64,
    size: usize,
    window: u64,
    latency_frames: u64,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        node: String::new(),
        peer_node: None,
        chats: 20,
        frames: 1000,
        size: 1024,
        window: 32,
        latency_frames: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--node" => a.node = value,
            "--peer-node" => a.peer_node = Some(value),
            "--chats" => a.chats = number()?.max(1) as usize,
            "--frames" => a.frames = number()?,
            "--size" => a.size = number()?.clamp(8, 65_536) as usize,
            "--window" => a.window = number()?.max(1),
            "--latency-frames" => a.latency_frames = number()?,
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if a.node.is_empty() {
        return Err(format!("--node is required\n{USAGE}"));
    }
    Ok(Some(a))
}

/// A data frame of `chat` with counter `seq` whose body starts with `stamp` (8 bytes).
fn frame(chat: [u8; 16], seq: u64, size: usize, stamp: u64) -> Vec<u8> {
    let mut f = FrameHeader {
        kind: FrameKind::Data,
        chat_id: ChatId::new(chat),
        epoch: 0,
        counter: seq,
    }
    .encode()
    .to_vec();
    let mut body = vec![0x5a; size + TAG_LEN];
    body[..8].copy_from_slice(&stamp.to_be_bytes());
    f.extend_from_slice(&body);
    f
}

fn identity() -> IdentityKey {
    IdentityKey::generate(&mut rand_core::UnwrapErr(getrandom::SysRng))
}

/// Opens one chat: A at `node`, B at `peer_node`, each pinning the other.
async fn open_chat(
    node: &str,
    peer_node: &str,
) -> Result<([u8; 16], RelayStream, RelayStream), BoxError> {
    let (a_key, b_key) = (identity(), identity());
    let mut chat = [0u8; 16];
    getrandom::fill(&mut chat).map_err(|e| e.to_string())?;
    let (mut a, _) = RelayStream::connect(node, &a_key, "load-a", ProofMode::Honest).await?;
    let (mut b, _) = RelayStream::connect(peer_node, &b_key, "load-b", ProofMode::Honest).await?;
    a.start_chat(chat, Some(*b_key.public().as_bytes())).await?;
    started(&mut a).await?;
    b.start_chat(chat, Some(*a_key.public().as_bytes())).await?;
    started(&mut b).await?;
    Ok((chat, a, b))
}

async fn started(s: &mut RelayStream) -> Result<(), BoxError> {
    match s.next().await? {
        Some(downlink::Msg::Started(_)) => Ok(()),
        other => Err(format!("expected `started`, got {other:?}").into()),
    }
}

/// Sends `frames` frames keeping at most `window` unanswered, sending a refused one again
/// (as the app does) after 10 ms; returns how many refusals there were.
async fn send_all(
    a: &mut RelayStream,
    chat: [u8; 16],
    frames: u64,
    size: usize,
    window: u64,
) -> Result<u64, BoxError> {
    let (mut next, mut stored, mut refused) = (0u64, 0u64, 0u64);
    let mut in_flight = std::collections::HashMap::new();
    let mut again = Vec::new();
    while stored < frames {
        while (in_flight.len() as u64) < window {
            let seq = match again.pop() {
                Some(seq) => seq,
                None if next < frames => {
                    next += 1;
                    next - 1
                }
                None => break,
            };
            let index = a.send_frame(frame(chat, seq, size, 0)).await?;
            in_flight.insert(index, seq);
        }
        match a.next().await? {
            Some(downlink::Msg::Stored(s)) => {
                if in_flight.remove(&s.uplink_index).is_some() {
                    stored += 1;
                }
            }
            Some(downlink::Msg::Rejected(r)) => {
                if let Some(seq) = in_flight.remove(&r.uplink_index) {
                    refused += 1;
                    again.push(seq);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Some(_) => {}
            None => return Err("the node closed the stream".into()),
        }
    }
    Ok(refused)
}

/// Reads frames until `expected` arrived or nothing came for 5 s; returns the count.
async fn receive(b: &mut RelayStream, expected: u64) -> u64 {
    let mut got = 0;
    while got < expected {
        match tokio::time::timeout(Duration::from_secs(5), b.next()).await {
            Ok(Ok(Some(downlink::Msg::Frame(_)))) => got += 1,
            Ok(Ok(Some(_))) => {}
            _ => break,
        }
    }
    got
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

async fn run(a: Args) -> Result<(), BoxError> {
    let peer_node = a.peer_node.clone().unwrap_or_else(|| a.node.clone());
    let mut chats = Vec::with_capacity(a.chats);
    for _ in 0..a.chats {
        chats.push(open_chat(&a.node, &peer_node).await?);
    }
    println!("chats {}", chats.len());

    // Throughput.
    let begin = Instant::now();
    let mut tasks = Vec::new();
    for (chat, mut sender, mut receiver) in chats {
        let (frames, size, window) = (a.frames, a.size, a.window);
        tasks.push(tokio::spawn(async move {
            let send =
                tokio::spawn(
                    async move { send_all(&mut sender, chat, frames, size, window).await },
                );
            let got = receive(&mut receiver, frames).await;
            let refused = send
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((got, refused))
        }));
    }
    let (mut received, mut refused) = (0u64, 0u64);
    for t in tasks {
        let (got, r) = t.await.map_err(|e| e.to_string())??;
        received += got;
        refused += r;
    }
    let elapsed = begin.elapsed().as_secs_f64();
    println!("frames_received {received}");
    println!("frames_refused {refused}");
    println!(
        "frames_per_second {:.0}",
        received as f64 / elapsed.max(1e-9)
    );

    // Latency: one frame at a time.
    if a.latency_frames > 0 {
        let (chat, mut sender, mut receiver) = open_chat(&a.node, &peer_node).await?;
        let origin = Instant::now();
        let mut samples = Vec::with_capacity(a.latency_frames as usize);
        for seq in 0..a.latency_frames {
            let stamp = origin.elapsed().as_nanos() as u64;
            sender.send_frame(frame(chat, seq, a.size, stamp)).await?;
            loop {
                match tokio::time::timeout(Duration::from_secs(5), receiver.next()).await {
                    Ok(Ok(Some(downlink::Msg::Frame(f)))) => {
                        let body = &f[sealwire::chat::HEADER_LEN..];
                        let sent = u64::from_be_bytes(body[..8].try_into()?);
                        samples
                            .push((origin.elapsed().as_nanos() as u64).saturating_sub(sent) / 1000);
                        break;
                    }
                    Ok(Ok(Some(_))) => {}
                    _ => return Err(format!("frame {seq} did not arrive within 5 s").into()),
                }
            }
            // Drain the `stored` answer so the sender's stream does not back up.
            let _ = tokio::time::timeout(Duration::from_millis(50), sender.next()).await;
        }
        samples.sort_unstable();
        println!("latency_p50_us {}", percentile(&samples, 0.50));
        println!("latency_p99_us {}", percentile(&samples, 0.99));
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let args = args_or_exit(parse_args(), HELP);
    if let Err(e) = run(args).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
