//! Property tests of the app's outbox (`chat_examples::outbox`) against a simulated relay that
//! stores, refuses for now, refuses for good, loses the stream before or after storing, and an
//! app that crashes (its outbox read back from the file's bytes). Whatever happens, every frame
//! handed to the outbox ends either stored by the relay (maybe more than once: the chat
//! machine drops copies) or reported failed, never silently lost; and with a window of 1 the
//! relay stores first copies in the order the frames were handed over.

use std::collections::{BTreeSet, HashSet};

use chat_examples::outbox::{Answer, Outbox};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
enum Op {
    /// The app hands over a new frame.
    Push,
    /// The app sends what its window allows.
    Send,
    /// The relay answers the oldest frame on its way.
    Answer(Reply),
    /// The stream ends; the relay may have stored what was on its way first.
    Lost { stored_first: bool },
    /// The app crashes and restarts from its outbox file.
    Crash,
    /// The node hands what it stored to the peer.
    Deliver,
    /// The node dies with what it stored and had not delivered yet.
    NodeDies,
}

#[derive(Clone, Copy, Debug)]
enum Reply {
    Stored,
    Retry,
    Failed,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Push),
        4 => Just(Op::Send),
        3 => Just(Op::Answer(Reply::Stored)),
        1 => Just(Op::Answer(Reply::Retry)),
        1 => Just(Op::Answer(Reply::Failed)),
        1 => any::<bool>().prop_map(|stored_first| Op::Lost { stored_first }),
        1 => Just(Op::Crash),
        2 => Just(Op::Deliver),
        1 => Just(Op::NodeDies),
    ]
}

/// The relay's side: what it handed to the peer (in order), what it stored and has not handed
/// over yet, and the frames on their way on the stream.
#[derive(Default)]
struct Relay {
    stored: Vec<u32>,
    in_node: Vec<u32>,
    on_the_way: Vec<(u64, Vec<u8>)>,
    next_index: u64,
}

/// Stored frames the app keeps to send again: more than a run can push, so that a node dying
/// with undelivered frames never loses one.
const KEEP: usize = 1024;

fn number(frame: &[u8]) -> u32 {
    u32::from_be_bytes(frame.try_into().expect("4-byte test frame"))
}

fn send(outbox: &mut Outbox, relay: &mut Relay) {
    while let Some((at, frame)) = outbox.next_to_send() {
        let frame = frame.to_vec();
        let index = relay.next_index;
        relay.next_index += 1;
        relay.on_the_way.push((index, frame));
        outbox.sent(at, index);
    }
}

fn new_stream(relay: &mut Relay) {
    relay.on_the_way.clear();
    // Register, proof and start come first on every stream.
    relay.next_index = 3;
}

fn run(ops: &[Op], window: usize) -> Result<(), TestCaseError> {
    let (limit, max_frame, max_frames) = (16, 64, 1 << 10);
    let mut outbox = Outbox::new(limit, window).keeping(KEEP, |_| true);
    let mut relay = Relay::default();
    new_stream(&mut relay);
    let (mut pushed, mut failed) = (0u32, HashSet::new());
    for op in ops {
        match *op {
            Op::Push => {
                if !outbox.is_full() {
                    outbox.push(pushed.to_be_bytes().to_vec());
                    pushed += 1;
                }
            }
            Op::Send => send(&mut outbox, &mut relay),
            Op::Answer(reply) => {
                if relay.on_the_way.is_empty() {
                    continue;
                }
                let (index, frame) = relay.on_the_way.remove(0);
                let answer = match reply {
                    Reply::Stored => {
                        relay.in_node.push(number(&frame));
                        outbox.answer(index, true, false)
                    }
                    Reply::Retry => outbox.answer(index, false, true),
                    Reply::Failed => outbox.answer(index, false, false),
                };
                match (reply, answer) {
                    (Reply::Stored, Answer::Stored) | (Reply::Retry, Answer::Retry) => {}
                    (Reply::Failed, Answer::Failed(f)) => {
                        prop_assert_eq!(&f, &frame);
                        failed.insert(number(&f));
                    }
                    // A frame put back by an earlier retry is no longer on its way under
                    // this index: the relay's answer to it is ignored, as the app does.
                    (Reply::Stored | Reply::Failed, Answer::Unknown) => {}
                    (r, a) => prop_assert!(false, "{r:?} answered {a:?}"),
                }
                if matches!(reply, Reply::Retry) {
                    // The relay refused it; what it sent after it is refused too (the app
                    // sends it all again).
                    relay.on_the_way.clear();
                }
            }
            Op::Lost { stored_first } => {
                if stored_first {
                    for (_, f) in &relay.on_the_way {
                        relay.in_node.push(number(f));
                    }
                }
                new_stream(&mut relay);
                outbox.stream_lost();
            }
            Op::Crash => {
                // The app restarts from its file: everything in it is sent again.
                let bytes = outbox.encode();
                outbox = Outbox::decode(&bytes, limit, window, max_frame, max_frames)
                    .map_err(|e| TestCaseError::fail(format!("decode: {e}")))?
                    .keeping(KEEP, |_| true);
                new_stream(&mut relay);
            }
            Op::Deliver => relay.stored.append(&mut relay.in_node),
            Op::NodeDies => {
                relay.in_node.clear();
                new_stream(&mut relay);
                outbox.stream_lost();
            }
        }
        // Bounded: the limit (reading stops there) plus the stored frames it keeps.
        prop_assert!(
            outbox.len() <= limit + KEEP,
            "the outbox grew past its bound"
        );
    }
    // The node comes back and stores everything.
    new_stream(&mut relay);
    outbox.stream_lost();
    for _ in 0..=(limit + KEEP) {
        if outbox.is_empty() {
            break;
        }
        send(&mut outbox, &mut relay);
        for (index, frame) in std::mem::take(&mut relay.on_the_way) {
            relay.in_node.push(number(&frame));
            outbox.answer(index, true, false);
        }
    }
    relay.stored.append(&mut relay.in_node);
    prop_assert!(outbox.is_empty(), "{} frames never stored", outbox.len());
    let mut first_copies = Vec::new();
    let mut seen = BTreeSet::new();
    for n in &relay.stored {
        prop_assert!(*n < pushed, "the relay stored a frame never handed over");
        if seen.insert(*n) {
            first_copies.push(*n);
        }
    }
    for n in 0..pushed {
        prop_assert!(
            seen.contains(&n) || failed.contains(&n),
            "frame {n} was neither stored nor reported failed"
        );
    }
    if window == 1 {
        prop_assert!(
            first_copies.windows(2).all(|w| w[0] < w[1]),
            "out of order: {first_copies:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn nothing_is_lost_and_order_holds_with_a_window_of_one(ops in prop::collection::vec(op(), 0..200)) {
        run(&ops, 1)?;
    }

    #[test]
    fn nothing_is_lost_with_a_wider_window(ops in prop::collection::vec(op(), 0..200)) {
        run(&ops, 4)?;
    }
}

#[test]
fn decode_refuses_damaged_files() {
    let mut outbox = Outbox::new(8, 1);
    outbox.push(vec![1, 2, 3]);
    outbox.push(vec![4; 10]);
    let bytes = outbox.encode();
    let back = Outbox::decode(&bytes, 8, 1, 64, 8).unwrap();
    assert_eq!(back.encode(), bytes);
    assert!(
        Outbox::decode(b"SWOUTBX2", 8, 1, 64, 8).is_err(),
        "wrong header"
    );
    assert!(
        Outbox::decode(&bytes[..bytes.len() - 1], 8, 1, 64, 8).is_err(),
        "truncated"
    );
    assert!(
        Outbox::decode(&bytes, 8, 1, 5, 8).is_err(),
        "a frame over the limit"
    );
    assert!(
        Outbox::decode(&bytes, 8, 1, 64, 1).is_err(),
        "too many frames"
    );
}
