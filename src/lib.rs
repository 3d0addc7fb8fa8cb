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
//! let mut bob_cfg = ChatConfig::new(id, bob_id);
//! bob_cfg.pinned_peer = Some(alice_id.public()); // fail closed on anyone else
//! let mut now = Instant::ZERO;
//! let mut alice = Chat::initiator(ChatConfig::new(id, alice_id), ChaCha20Rng::from_seed([3; 32]), now)?;
//! let mut bob = Chat::responder(bob_cfg, ChaCha20Rng::from_seed([4; 32]))?;
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
//! # Ok::<(), sealwire::chat::Error>(())
//! ```
//!
//! The README shows the same for a Fabstir [`session`] node and client; [`tunnel::Device`]'s
//! docs show two WireGuard devices exchanging a packet. The runnable tokio programs in
//! `examples/` (`ws_node`, `ws_client`, `grpc_chat_node`, `grpc_chat_app`, `tun_node`) are the
//! same loop with real sockets, a TUN device and the system clock ([`time::Clock`]).
//!
//! ## Conventions
//!
//! * Time is [`time::Instant`], nanoseconds from an origin the caller chooses.
//! * Randomness is an `R: rand_core::CryptoRng` owned by the machine; seed it in tests
//!   (`rand_chacha::ChaCha20Rng`) and use the OS generator in production. Same seed, same
//!   inputs, same times ⇒ byte-identical outputs.
//! * Secrets zeroize on drop and print `[redacted]`; every queue and table is bounded by a
//!   config knob.
//! * `#![no_std]` + `alloc`; the default `std` feature adds `std::error::Error` impls and
//!   [`time::Clock`].
//!
//! ## Cargo features
//!
//! * `std` (default): see above.
//! * `ring`: moves the ChaCha20-Poly1305 data paths (tunnel transport, chat messages) from
//!   RustCrypto onto `ring`, about three times faster on x86-64. The trade-off: `ring` offers
//!   no zeroize, and each tunnel session keeps one prepared `ring` key per direction (built
//!   once per session rather than per packet), which is **not wiped on drop**: its bytes stay
//!   in freed memory until reused. Our own copy of every key is still zeroized. The default
//!   build keeps every key zeroizing.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod chat;
pub mod crypto;
pub mod seal;
pub mod session;
pub mod time;
pub mod tunnel;

// The README's embedding example is compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
