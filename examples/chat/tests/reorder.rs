//! Property test of `chat_examples::reorder`, the app's hold of frames behind a gap: once the
//! epoch is up, frames of one sender arrive in any order a mesh can produce (a copy published
//! again lands after frames sent later; any frame may come twice), every one of them before
//! the hold expires.
//! The app then hands each frame to the chat machine once in its sender's order, and a frame
//! it hands over again is only ever a copy of one already handed over (which the machine drops
//! as a replay).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chat_examples::reorder::Reorder;
use proptest::prelude::*;

/// Arrival orders of frames 0..n: each frame moved back by up to `shift` places, some
/// arriving twice.
fn arrivals() -> impl Strategy<Value = Vec<u64>> {
    (1usize..120).prop_flat_map(|n| {
        (
            proptest::collection::vec(0usize..16, n),
            proptest::collection::vec(any::<bool>(), n),
        )
            .prop_map(move |(shift, dup)| {
                let mut order: Vec<(usize, u64)> = (0..n)
                    .map(|i| (i + shift[i], i as u64))
                    .chain(
                        (0..n)
                            .filter(|&i| dup[i])
                            .map(|i| (i + 2 * shift[i] + 1, i as u64)),
                    )
                    .collect();
                order.sort();
                order.into_iter().map(|(_, seq)| seq).collect()
            })
    })
}

proptest! {
    #[test]
    fn frames_reach_the_machine_once_each_in_order_whatever_the_arrival_order(
        order in arrivals(),
        epoch in 0u32..4,
    ) {
        let t0 = Instant::now();
        let mut r = Reorder::new(Duration::from_secs(3));
        // The app learns the epoch is up (its handshake completed) before any of its frames.
        prop_assert!(r.expect_at_least(epoch, 0).is_empty());
        let mut handed: Vec<u64> = Vec::new();
        for (step, &seq) in order.iter().enumerate() {
            // Every arrival comes before the hold expires.
            let now = t0 + Duration::from_millis(step as u64);
            handed.extend(r.push(now, epoch, seq, seq));
            prop_assert!(r.expire(now).is_empty(), "nothing expires before its time");
        }
        prop_assert_eq!(r.held().count(), 0, "nothing stays held once the gaps are filled");
        let n = order.iter().max().map_or(0, |m| m + 1);
        let mut first = Vec::new();
        let mut seen = HashSet::new();
        for seq in handed {
            if seen.insert(seq) {
                first.push(seq);
            }
        }
        prop_assert_eq!(first, (0..n).collect::<Vec<_>>(), "first hand-overs in order");
    }

    #[test]
    fn a_gap_never_filled_holds_what_follows_only_until_the_deadline(
        n in 2u64..60,
        missing in 1u64..60,
    ) {
        let missing = 1 + (missing - 1) % (n - 1);
        let t0 = Instant::now();
        let hold = Duration::from_secs(3);
        let mut r = Reorder::new(hold);
        let mut handed = Vec::new();
        for seq in (0..n).filter(|&s| s != missing) {
            handed.extend(r.push(t0, 0, seq, seq));
        }
        prop_assert_eq!(handed, (0..missing).collect::<Vec<_>>(), "everything before the gap goes");
        let held: Vec<u64> = (missing + 1..n).collect();
        prop_assert_eq!(r.held().copied().collect::<Vec<_>>(), held.clone());
        prop_assert!(r.expire(t0 + hold - Duration::from_millis(1)).is_empty());
        prop_assert_eq!(r.expire(t0 + hold), held, "released in order at the deadline");
        prop_assert_eq!(r.held().count(), 0);
    }
}
