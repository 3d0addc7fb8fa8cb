//! # sealwire
//!
//! Sans-IO state machines for three secure protocols:
//!
//! * [`session`] — the Fabstir LLM end-to-end encryption, byte-compatible with the Fabstir SDK
//!   (secp256k1 ECDH + HKDF-SHA256 + XChaCha20-Poly1305, recoverable ECDSA client identity),
//!   hardened against replay and with keys that expire and are wiped.
//! * [`tunnel`] — a WireGuard-compatible tunnel device (Noise IKpsk2, cookies, cryptokey
//!   routing, exact timers), interoperable with boringtun and the reference implementations.
//! * [`chat`] — per-chat forward secrecy between two apps over untrusted relays:
//!   `Noise_XX_25519_ChaChaPoly_SHA256` with Ed25519-signed per-epoch statics, a symmetric
//!   ratchet per direction, rekeys, and sealed (persisted) state ([`seal`]).
//!
//! Every machine is a plain struct: it consumes bytes, time and randomness handed to it by the
//! caller and produces bytes to send, events, and its next deadline. It never touches a socket,
//! a clock, a thread or a file, so the same code runs under tokio, in a fuzzer, or in a test
//! that simulates hours of traffic in milliseconds.
//!
//! ## The loop
//!
//! Every machine is driven the same way, whatever the protocol and whatever runs it:
//!
//! ```text
//! loop {
//!     // 1. drain what the machine wants to say
//!     while let Some(t) = machine.poll_transmit() { socket.send(t) }
//!     while let Some(e) = machine.poll_event()    { app.handle(e) }   // may call accept()/send()
//!     // 2. wait for input or the machine's deadline, whichever is first
//!     select! {
//!         bytes = socket.recv()                      => machine.handle_*(now, bytes),
//!         _ = sleep_until(machine.poll_timeout())    => machine.handle_timeout(now),
//!     }
//! }
//! ```
//!
//! Inputs are of three kinds: bytes from the network (`handle_frame`, `decapsulate`, ...),
//! decisions of the embedder (`accept`, `reject`, `send`, `rekey`, ...), and time
//! (`handle_timeout`). Outputs are of three kinds too: bytes to transmit (`poll_transmit`, or
//! the caller's buffer on the hot paths), events (`poll_event`), and the next deadline
//! (`poll_timeout`). A bad input returns an `Err` for that input only; it never poisons the
//! machine or touches other sessions, chats or peers.
//!
//! Here the loop runs two [`chat`] endpoints against each other over an in-memory "network",
//! with a virtual clock that jumps straight to the next deadline (no test here ever sleeps):
//!
//! ```
//! use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
//! use sealwire::chat::{Chat, ChatConfig, ChatEvent, ChatId};
//! use sealwire::crypto::ed25519::IdentityKey;
//! use sealwire::time::{Duration, Instant};
//!
//! let id = ChatId::new([7; 16]);
//! let (alice_id, bob_id) = (IdentityKey::from_seed([1; 32]), IdentityKey::from_seed([2; 32]));
//! let mut bob_cfg = ChatConfig::new(id);
//! bob_cfg.pinned_peer = Some(alice_id.public()); // fail closed on anyone else
//! let mut now = Instant::ZERO;
//! let mut alice = Chat::initiator(now, alice_id, ChatConfig::new(id), ChaCha20Rng::from_seed([3; 32]))?;
//! let mut bob = Chat::responder(bob_id, bob_cfg, ChaCha20Rng::from_seed([4; 32]))?;
//!
//! let (mut received, mut sent) = (Vec::new(), false);
//! for _ in 0..20 {
//!     if alice.is_established() && !sent {
//!         alice.send(now, b"hello bob")?; // before the handshake: Err(NotEstablished)
//!         sent = true;
//!     }
//!     // The "network": deliver until both sides are quiet. An `Err` would concern that one
//!     // frame only (a duplicate, a forgery); the machine goes on.
//!     let mut quiet = false;
//!     while !quiet {
//!         quiet = true;
//!         while let Some(f) = alice.poll_transmit() { quiet = false; let _ = bob.handle_frame(now, &f); }
//!         while let Some(f) = bob.poll_transmit() { quiet = false; let _ = alice.handle_frame(now, &f); }
//!     }
//!     while let Some(e) = bob.poll_event() {
//!         if let ChatEvent::Message { plaintext, .. } = e { received.push(plaintext); }
//!     }
//!     while alice.poll_event().is_some() {}
//!     // Time only moves to the next deadline either machine asked for.
//!     let next = [alice.poll_timeout(), bob.poll_timeout()].into_iter().flatten().min();
//!     now = next.unwrap_or(now + Duration::from_secs(1)).max(now);
//!     alice.handle_timeout(now);
//!     bob.handle_timeout(now);
//! }
//! assert_eq!(received, [b"hello bob".to_vec()]);
//! # Ok::<(), sealwire::chat::ChatError>(())
//! ```
//!
//! The README shows the same for a Fabstir [`session`] node and client; [`tunnel::Device`]'s
//! docs show two WireGuard devices exchanging a packet. The runnable tokio programs in
//! `examples/` (`ws_node`, `ws_client`, `grpc_chat_node`, `grpc_chat_app`, `tun_node`) are the
//! same loop with real sockets, a TUN device and the system clock ([`time::Clock`]).
//!
//! ## Conventions
//!
//! The four machines ([`session::Node`], [`session::Client`], [`chat::Chat`],
//! [`tunnel::Device`]) and the keyless [`chat::relay::Relay`] follow one set of rules, so
//! what you learn on one holds for the others.
//!
//! **Names.** A machine is a noun (`Node`, `Client`, `Chat`, `Device`, `Relay`). Its types
//! carry its name: `NodeConfig`, `NodeEvent`, `NodeError`, `NodeStats`; `ChatConfig`,
//! `ChatEvent`, `ChatError`, `ChatStats`; `DeviceConfig`, `DeviceEvent`, `DeviceError`,
//! `DeviceStats`; and so on. Errors of a helper are named after it (`HexError`, `CidrError`,
//! `WgQuickError`). Why the machine's name rather than one `Error` per module: `session`
//! holds two machines, and an embedder that runs a chat and a session glob-imports both.
//!
//! **Construction.** `Machine::new(key, config, rng)` (`Chat` has `responder` with these
//! arguments and `initiator`, which sends at once, with `now` first; `Client` adds the node's
//! public key after its own):
//! * the long-term secret key comes first, moved in: the machine owns it and wipes it;
//! * the config is plain data (`Clone`, `Debug`, `Default` or a `new` taking only what has no
//!   default; no secrets inside), checked by the constructor, which returns
//!   `Err(…Error::InvalidConfig(field))` rather than clamp or panic later;
//! * the RNG comes last: an `R: rand_core::CryptoRng` (rand_core 0.10) the machine owns.
//!   Tests seed `rand_chacha::ChaCha20Rng`; production code uses the operating system's
//!   generator, which is what the example programs do:
//!   `rand_core::UnwrapErr(getrandom::SysRng)` (getrandom 0.4, feature `sys_rng`).
//!
//! **Time.** `now: Instant` is the first argument after `self` of every method that reads
//! the clock, and only of those. Wall-clock time, where a protocol needs it (WireGuard's
//! TAI64N), is a separate input ([`time::WallTime`]).
//!
//! **Inputs and outputs.** Bytes from the network enter through `handle_*`
//! (`handle_frame`, `decapsulate`, …); an `Err` concerns that input only. Outputs are drained
//! with `poll_transmit()` (a `Transmit { to, … }` where the machine talks to many peers, the
//! bare frame where it has one), `poll_event()` and `poll_timeout()`, and
//! `handle_timeout(now)` acts on the deadline. The hot paths also write into a caller buffer
//! (`seal_into`, `open_in_place`, `encapsulate_in_place`, …): they allocate nothing, and a
//! buffer that is too small gets `Err(BufferTooSmall { needed })` with the buffer untouched.
//!
//! **Bounds.** Every table and queue has a capacity in the config; nothing grows without a
//! bound. Each machine's transmit and event queues hold at most `queue_capacity` items. A call
//! of the embedder (`send`, `accept`, …) or an input whose outputs would not fit is refused
//! with `Capacity` before anything changes, so no key is spent on a message that is then
//! lost; what the machine produces on its own (timer work, the tunnel's replies to datagrams,
//! which the network may drop anyway) is dropped when it does not fit and counted in
//! `stats().transmits_dropped` and `stats().events_dropped`. A loop that drains after every
//! call never sees either.
//!
//! **Secrets.** Keys live in types that are wiped on drop, print `[redacted]` in `Debug` and
//! compare in constant time; secret strings (hex, base64) are decoded in constant time.
//! Error values and their `Display` never contain secret or attacker-chosen bytes, only
//! fixed texts and field names, so they are safe to log, but do not echo detailed errors to
//! a peer (the protocols that have wire errors send one stable code).
//!
//! ## Cargo features
//!
//! * `std` (default): see above.
//! * `ring`: moves the ChaCha20-Poly1305 data paths (tunnel transport, chat messages) from
//!   RustCrypto onto `ring`, about three times faster on x86-64. The trade-off: `ring` offers
//!   no zeroize. A tunnel session's prepared `ring` keys (built once per session rather than
//!   per packet) sit in a heap block the tunnel zeroes whole when the session goes, but the
//!   stack copy made while building them, and the `ring` key each chat message builds on the
//!   stack, are **not wiped**: they stay in the stack until overwritten. Our own copy of every
//!   key is zeroized. The default build wipes every copy it makes (docs/SECURITY.md, §4).

#![no_std]
#![forbid(unsafe_code)]
// No panic reachable from input: the library (not its tests) indexes with `get`, splits with
// `split_at_checked`, and does arithmetic checked, saturating or wrapping as the meaning asks.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects
    )
)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod chat;
pub mod crypto;
mod queue;
pub mod seal;
pub mod session;
pub mod time;
pub mod tunnel;

// The README's embedding example is compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
