//! Statistical timing tests, dudect style (Reparaz, Balasch, Verbauwhede: "Dude, is my code
//! constant time?", 2017), with the small harness in `benches/common/dudect.rs`: each test times one operation on
//! inputs of two classes, interleaved at random, and Welch's t-test compares the two timing
//! distributions (cropped at many percentiles; the largest |t| is reported). |t| above ~4.5
//! suggests the time depends on the class, i.e. on the secret that tells them apart.
//!
//! ```text
//! cargo bench --bench timing                        # every test, 200 000 samples each
//! cargo bench --bench timing -- --filter hex        # the tests whose name contains `hex`
//! cargo bench --bench timing -- --samples 2000000   # longer runs
//! ```
//!
//! What is compared (secret ⇒ two classes of the same length and public shape):
//! * `crypto::ct_eq` on 32-byte tags: equal, or different in the first byte (a byte-wise
//!   early exit would return sooner on the second);
//! * the tag check inside an AEAD open, through the public paths: a chat data frame through
//!   `Chat::open_in_place` and a tunnel datagram through `Device::decapsulate_in_place`, both
//!   with a forged tag that is wrong in the first byte or only in the last byte (how far a
//!   forgery matches must not show); and, for scale, valid vs forged tags, which differ by
//!   design (a valid frame is then decrypted and accepted: validity is public, the t of that
//!   pair is expected to be large and is not a leak);
//! * `crypto::hex::decode_secret` on 64 hex digits that are all decimal digits or all letters,
//!   `crypto::base64::decode_array` on base64 keys made of upper-case letters only or of
//!   digits, `+` and `/` only (a table or branch per character class would show);
//! * the positive control: `==` on 1 KiB slices that differ in the first or in the last byte,
//!   which returns early and must be flagged (if it is not, the measurement sees nothing).
//!
//! The bench is a plain binary (`harness = false`): `cargo test` never runs it, and it does not
//! touch the criterion benches (`cargo bench --bench session|chat|tunnel`).

#[path = "common/dudect.rs"]
mod dudect;

use dudect::{Class, CtRunner};
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sealwire::chat::{Chat, ChatConfig, ChatId};
use sealwire::crypto::ed25519::IdentityKey;
use sealwire::crypto::x25519::StaticSecret;
use sealwire::time::{Duration, Instant, WallTime};
use sealwire::tunnel::{Action, Device, DeviceConfig, PeerConfig};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Samples per test (`--samples N`).
static SAMPLES: AtomicUsize = AtomicUsize::new(200_000);

fn samples() -> usize {
    SAMPLES.load(Ordering::Relaxed)
}

/// The inputs' generator (seeded: the same inputs every run).
type BenchRng = ChaCha20Rng;

/// A uniform index below `n` (the bias of a 32-bit modulus is irrelevant here).
fn below(rng: &mut BenchRng, n: usize) -> usize {
    rng.next_u32() as usize % n
}

/// A class chosen by a fair coin.
fn coin(rng: &mut BenchRng) -> Class {
    if rng.next_u32() & 1 == 0 {
        Class::Left
    } else {
        Class::Right
    }
}

fn random_bytes<const N: usize>(rng: &mut BenchRng) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill_bytes(&mut out);
    out
}

// ------------------------------------------------------------------ comparisons

/// `crypto::ct_eq` on 32-byte tags: equal (Left) or different in the first byte (Right).
fn ct_eq_tag_equal_vs_first_byte_differs(runner: &mut CtRunner, rng: &mut BenchRng) {
    let inputs: Vec<(Class, [u8; 32], [u8; 32])> = (0..samples())
        .map(|_| {
            let class = coin(rng);
            let a = random_bytes::<32>(rng);
            let mut b = a;
            if let Class::Right = class {
                b[0] ^= 0x01;
            }
            (class, a, b)
        })
        .collect();
    for (class, a, b) in &inputs {
        runner.run_one(*class, || {
            sealwire::crypto::ct_eq(black_box(a), black_box(b))
        });
    }
}

/// `crypto::ct_eq` on 1 KiB: different in the first (Left) or in the last byte (Right); the
/// same inputs as the positive control below.
fn ct_eq_1k_first_vs_last_byte_differs(runner: &mut CtRunner, rng: &mut BenchRng) {
    for (class, a, b) in early_late_pairs(rng) {
        runner.run_one(class, || {
            sealwire::crypto::ct_eq(black_box(&a), black_box(&b))
        });
    }
}

/// The positive control: `==` on 1 KiB returns at the first difference, so the first-byte
/// class (Left) is faster. The test must flag it.
fn control_variable_time_eq_must_be_flagged(runner: &mut CtRunner, rng: &mut BenchRng) {
    for (class, a, b) in early_late_pairs(rng) {
        runner.run_one(class, || black_box(&a[..]) == black_box(&b[..]));
    }
}

fn early_late_pairs(rng: &mut BenchRng) -> Vec<(Class, Vec<u8>, Vec<u8>)> {
    (0..samples() / 4)
        .map(|_| {
            let class = coin(rng);
            let mut a = vec![0u8; 1024];
            rng.fill_bytes(&mut a);
            let mut b = a.clone();
            let at = if let Class::Left = class { 0 } else { 1023 };
            b[at] ^= 0x01;
            (class, a, b)
        })
        .collect()
}

// ------------------------------------------------------------------ AEAD opens

const CHAT_ID: [u8; 16] = [7; 16];

/// A receiving chat and `n` data frames from its peer, in counter order.
fn chat_frames(n: usize) -> (Chat<ChaCha20Rng>, Vec<Vec<u8>>) {
    let now = Instant::ZERO;
    let mut cfg = ChatConfig::new(ChatId::new(CHAT_ID));
    cfg.rekey.after_messages = u64::MAX;
    let mut a = Chat::initiator(
        now,
        IdentityKey::from_seed([1; 32]),
        cfg.clone(),
        ChaCha20Rng::from_seed([1; 32]),
    )
    .unwrap();
    let mut b = Chat::responder(
        IdentityKey::from_seed([2; 32]),
        cfg,
        ChaCha20Rng::from_seed([2; 32]),
    )
    .unwrap();
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
    while b.poll_event().is_some() {}
    let frames = (0..n)
        .map(|_| {
            let mut out = vec![0u8; 128];
            let len = a.seal_into(now, &[0x42; 64], &mut out).unwrap();
            out.truncate(len);
            out
        })
        .collect();
    (b, frames)
}

/// Which two kinds of frames a run compares.
#[derive(Clone, Copy)]
enum Pair {
    /// Left: the tag is wrong in its first byte; Right: only in its last byte.
    ForgedFirstVsLast,
    /// Left: valid; Right: the tag is wrong in its first byte (differs by design).
    ValidVsForged,
}

/// The frames of one run: frame `k` is the next one the receiver expects; a forged copy of it
/// does the same work up to the tag check and leaves the receiver as it was, so the next
/// sample still expects `k`.
fn schedule(pair: Pair, frames: &[Vec<u8>], rng: &mut BenchRng) -> Vec<(Class, Vec<u8>)> {
    let mut next = 0;
    let mut out = Vec::new();
    while out.len() < frames.len() && next < frames.len() {
        let class = coin(rng);
        let mut f = frames[next].clone();
        let last = f.len() - 1;
        let tag_first = f.len() - 16;
        match (pair, class) {
            (Pair::ForgedFirstVsLast, Class::Left) | (Pair::ValidVsForged, Class::Right) => {
                f[tag_first] ^= 0x01
            }
            (Pair::ForgedFirstVsLast, Class::Right) => f[last] ^= 0x01,
            (Pair::ValidVsForged, Class::Left) => next += 1,
        }
        out.push((class, f));
    }
    out
}

fn chat_open(pair: Pair, runner: &mut CtRunner, rng: &mut BenchRng) {
    let (mut chat, frames) = chat_frames(samples() / 2);
    let mut inputs = schedule(pair, &frames, rng);
    let now = Instant::ZERO;
    for (class, f) in &mut inputs {
        // `run_one` takes a `Fn`: the machine and the buffer go through cells.
        let chat = std::cell::RefCell::new(&mut chat);
        let frame = std::cell::RefCell::new(&mut f[..]);
        runner.run_one(*class, || {
            chat.borrow_mut()
                .open_in_place(now, &mut frame.borrow_mut()[..])
                .is_ok()
        });
    }
}

fn chat_open_tag_first_vs_last_byte_wrong(runner: &mut CtRunner, rng: &mut BenchRng) {
    chat_open(Pair::ForgedFirstVsLast, runner, rng);
}

fn chat_open_valid_vs_forged_differs_by_design(runner: &mut CtRunner, rng: &mut BenchRng) {
    chat_open(Pair::ValidVsForged, runner, rng);
}

/// A receiving device and `n` transport datagrams from its peer, in counter order.
fn tunnel_datagrams(n: usize) -> (Device<ChaCha20Rng>, Vec<Vec<u8>>) {
    let (ka, kb) = (
        StaticSecret::from_bytes([1; 32]),
        StaticSecret::from_bytes([2; 32]),
    );
    let (pa, pb) = (ka.public_key(), kb.public_key());
    let mut a = Device::new(ka, DeviceConfig::default(), ChaCha20Rng::seed_from_u64(1)).unwrap();
    let mut b = Device::new(kb, DeviceConfig::default(), ChaCha20Rng::seed_from_u64(2)).unwrap();
    let (addr_a, addr_b) = (
        "192.0.2.1:51820".parse().unwrap(),
        "192.0.2.2:51820".parse().unwrap(),
    );
    let mut peer_b = PeerConfig::new(pb);
    peer_b.endpoint = Some(addr_b);
    peer_b.allowed_ips.push("10.0.0.2/32".parse().unwrap());
    a.add_peer(Instant::ZERO, peer_b).unwrap();
    let mut peer_a = PeerConfig::new(pa);
    peer_a.endpoint = Some(addr_a);
    peer_a.allowed_ips.push("10.0.0.1/32".parse().unwrap());
    b.add_peer(Instant::ZERO, peer_a).unwrap();
    let now = Instant::from_secs(1);
    a.set_wall_clock(now, WallTime::from_unix(1_700_000_000, 0));
    let mut ip = [0u8; 64];
    ip[0] = 0x45;
    ip[3] = 64;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let (mut buf, mut out) = ([0u8; 2048], [0u8; 2048]);
    let Ok(Action::WriteToNetwork { len, .. }) = a.encapsulate(now, &ip, &mut buf) else {
        panic!("initiation")
    };
    let Ok(Action::WriteToNetwork { len, .. }) = b.decapsulate(now, addr_a, &buf[..len], &mut out)
    else {
        panic!("response")
    };
    let _ = a.decapsulate(now, addr_b, &out[..len], &mut buf).unwrap();
    let staged = a.poll_transmit().unwrap().payload;
    let _ = b.decapsulate(now, addr_a, &staged, &mut out).unwrap();
    let datagrams = (0..n)
        .map(|_| {
            let Ok(Action::WriteToNetwork { len, .. }) = a.encapsulate(now, &ip, &mut buf) else {
                panic!("data")
            };
            buf[..len].to_vec()
        })
        .collect();
    (b, datagrams)
}

fn tunnel_open(pair: Pair, runner: &mut CtRunner, rng: &mut BenchRng) {
    let (mut dev, datagrams) = tunnel_datagrams(samples() / 2);
    let mut inputs = schedule(pair, &datagrams, rng);
    let now = Instant::from_secs(1) + Duration::from_millis(1);
    let from = "192.0.2.1:51820".parse().unwrap();
    for (class, d) in &mut inputs {
        let len = d.len();
        let dev = std::cell::RefCell::new(&mut dev);
        let buf = std::cell::RefCell::new(&mut d[..]);
        runner.run_one(*class, || {
            dev.borrow_mut()
                .decapsulate_in_place(now, from, &mut buf.borrow_mut()[..], len)
                .is_ok()
        });
    }
}

fn tunnel_decapsulate_tag_first_vs_last_byte_wrong(runner: &mut CtRunner, rng: &mut BenchRng) {
    tunnel_open(Pair::ForgedFirstVsLast, runner, rng);
}

fn tunnel_decapsulate_valid_vs_forged_differs_by_design(runner: &mut CtRunner, rng: &mut BenchRng) {
    tunnel_open(Pair::ValidVsForged, runner, rng);
}

// ------------------------------------------------------------------ secret decoding

/// 64 hex digits of one class: decimal digits only (Left) or letters only, mixed case (Right).
fn hex_decode_secret_digits_vs_letters(runner: &mut CtRunner, rng: &mut BenchRng) {
    const DIGITS: &[u8] = b"0123456789";
    const LETTERS: &[u8] = b"abcdefABCDEF";
    let inputs: Vec<(Class, String)> = (0..samples())
        .map(|_| {
            let class = coin(rng);
            let alphabet = if let Class::Left = class {
                DIGITS
            } else {
                LETTERS
            };
            let s = (0..64).map(|_| alphabet[below(rng, alphabet.len())] as char);
            (class, s.collect())
        })
        .collect();
    for (class, s) in &inputs {
        runner.run_one(*class, || {
            sealwire::crypto::hex::decode_secret::<32>(black_box(s)).is_ok()
        });
    }
}

/// Canonical base64 of 32 bytes from one class: upper-case letters only (Left) or digits,
/// `+` and `/` only (Right). The 43rd character carries 2 unused bits, which must be zero.
fn base64_decode_array_letters_vs_digits(runner: &mut CtRunner, rng: &mut BenchRng) {
    const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const LETTERS_LAST: &[u8] = b"AEIMQUY"; // values 0, 4, …, 24
    const DIGITS: &[u8] = b"0123456789+/";
    const DIGITS_LAST: &[u8] = b"048"; // values 52, 56, 60
    let inputs: Vec<(Class, String)> = (0..samples())
        .map(|_| {
            let class = coin(rng);
            let (body, last) = if let Class::Left = class {
                (LETTERS, LETTERS_LAST)
            } else {
                (DIGITS, DIGITS_LAST)
            };
            let mut s: String = (0..42)
                .map(|_| body[below(rng, body.len())] as char)
                .collect();
            s.push(last[below(rng, last.len())] as char);
            s.push('=');
            (class, s)
        })
        .collect();
    for (class, s) in &inputs {
        runner.run_one(*class, || {
            sealwire::crypto::base64::decode_array::<32>(black_box(s)).is_ok()
        });
    }
}

// ------------------------------------------------------------------ main

/// One test: a name and the function that fills a runner.
type BenchFn = fn(&mut CtRunner, &mut BenchRng);

fn main() {
    // A small command line: `cargo bench` passes `--bench` (and criterion flags such as
    // `--quick` when run for every bench), which must not make this binary fail.
    let mut filter: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--filter" => filter = args.next(),
            "--samples" => {
                let n = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--samples N");
                SAMPLES.store(n, Ordering::Relaxed);
            }
            _ => {} // --bench, --quick, ...
        }
    }
    let benches: [(&str, BenchFn); 9] = [
        (
            "ct_eq_tag_equal_vs_first_byte_differs",
            ct_eq_tag_equal_vs_first_byte_differs,
        ),
        (
            "ct_eq_1k_first_vs_last_byte_differs",
            ct_eq_1k_first_vs_last_byte_differs,
        ),
        (
            "control_variable_time_eq_must_be_flagged",
            control_variable_time_eq_must_be_flagged,
        ),
        (
            "chat_open_tag_first_vs_last_byte_wrong",
            chat_open_tag_first_vs_last_byte_wrong,
        ),
        (
            "chat_open_valid_vs_forged_differs_by_design",
            chat_open_valid_vs_forged_differs_by_design,
        ),
        (
            "tunnel_decapsulate_tag_first_vs_last_byte_wrong",
            tunnel_decapsulate_tag_first_vs_last_byte_wrong,
        ),
        (
            "tunnel_decapsulate_valid_vs_forged_differs_by_design",
            tunnel_decapsulate_valid_vs_forged_differs_by_design,
        ),
        (
            "hex_decode_secret_digits_vs_letters",
            hex_decode_secret_digits_vs_letters,
        ),
        (
            "base64_decode_array_letters_vs_digits",
            base64_decode_array_letters_vs_digits,
        ),
    ];
    println!(
        "dudect t-tests, {} samples each; |t| > 4.5 suggests a leak",
        samples()
    );
    for (i, (name, bench)) in benches.into_iter().enumerate() {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        // Fixed seeds: the same inputs every run.
        let mut rng = BenchRng::seed_from_u64(0x5ea1_0000 + i as u64);
        let mut runner = CtRunner::default();
        bench(&mut runner, &mut rng);
        let (t, left, right) = runner.max_t();
        // The control and the valid-vs-forged pairs must differ (validity is public).
        let expected = name.contains("control") || name.contains("by_design");
        let verdict = match (t > 4.5, expected) {
            (true, true) => "differs, as expected",
            (false, true) => "NOT FLAGGED: the measurement sees nothing",
            (true, false) => "LEAK?",
            (false, false) => "ok",
        };
        println!("{name:55} max |t| = {t:8.2}  ({left} + {right} samples)  {verdict}");
    }
}
