//! # chat — per-chat forward secrecy between two apps
//!
//! Two apps talk through relays (e.g. gRPC nodes) that see only frames. Each chat runs a
//! [`Chat`] machine on both ends:
//!
//! ```text
//!   initiator (A)                      relay                     responder (B)
//!   ── epoch 0 ───────────────────────────────────────────────────────────────
//!   kind 1: -> e                     ──────────▶
//!                                    ◀──────────   kind 2: <- e, ee, s, es, {id_B ‖ sig_B}
//!   kind 3: -> s, se, {id_A ‖ sig_A} ──────────▶                    (B: Established 0)
//!                                    ◀──────────   kind 0x10 counter 0: empty (confirmation)
//!   (A: Established 0)
//!   kind 0x10 counter n: ChaCha20-Poly1305(MK_n, nonce 0, ad = header)  ⇄ both ways
//!   ── rekey: the same three messages with epoch + 1, started by either side ──
//!   kind 0x20: close (encrypted reason code), every key wiped
//! ```
//!
//! ## Handshake
//! `Noise_XX_25519_ChaChaPoly_SHA256` with prologue `"sealwire/chat/1" ‖ chat_id (16) ‖
//! epoch (u32 BE)`. Each side's Noise static key is a fresh X25519 key per epoch, signed by its
//! long-term Ed25519 identity: the payload of messages 2 and 3 is `identity_pub (32) ‖
//! sig (64)`, `sig = Ed25519(identity, "sealwire/chat/1 static" ‖ noise_static_pub ‖ chat_id ‖
//! epoch)`. Why: the static key changes every epoch (so compromise of one epoch's keys says
//! nothing about the next), while the signature binds it to the long-term identity, the chat
//! and the epoch (a signature cannot be replayed into another chat or epoch). The embedder
//! learns the identity from [`ChatEvent::PeerIdentity`] and may pin it
//! ([`ChatConfig::pinned_peer`]); after the first epoch every rekey must prove the same
//! identity. A message proving another identity is dropped (it does not close the chat:
//! anyone with an Ed25519 key could make one), and the handshake waits for the genuine peer.
//!
//! The initiator installs the new keys when it reads message 2 but keeps sending in the old
//! epoch until the responder confirms with any authenticated frame of the new epoch (it sends
//! an empty data frame right after message 3); message 3 is re-sent up to three times, one
//! handshake timeout apart, then the attempt is abandoned. Why: message 3 can be lost, and a
//! sender that switched early would be sending into keys the peer does not have.
//!
//! ## Messages
//! `Split()` yields the initiator→responder and responder→initiator chain keys. Per message:
//! `MK = HMAC-SHA256(CK, 0x01)`, `CK' = HMAC-SHA256(CK, 0x02)`; the frame counter is the
//! message's index in the chain. Body = ChaCha20-Poly1305(key = MK, nonce = 0, ad = the 30-byte
//! header). Why nonce 0: every key encrypts exactly one frame. Why the header as AD: a relay
//! cannot move a body to another chat, epoch, counter or kind.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 1 | version = 1 |
//! | 1 | 1 | kind: 1, 2, 3 handshake; 0x10 data; 0x20 close |
//! | 2 | 16 | chat id |
//! | 18 | 4 | epoch, u32 BE |
//! | 22 | 8 | counter, u64 BE (0 in handshake frames) |
//! | 30 | .. | body (handshake: 32 / 192 / 160 bytes; close: 17; data: plaintext + 16) |
//!
//! ## Order, replay, desync
//! Frames may arrive out of order: keys for skipped counters are kept (at most
//! [`SkipWindow::per_chain`] per chain, [`SkipWindow::total`] per chat; the oldest go first).
//! A counter already used, or older than every kept key ⇒ [`ChatError::Replayed`]. A counter more
//! than `per_chain` ahead (or a data frame of an epoch more than one ahead) ⇒
//! [`ChatError::Desync`]. Every rejected frame leaves keys, counters, skipped keys and epochs
//! exactly as they were (trial decryption on copies, commit on success), and none closes the
//! chat.
//!
//! **The desync rule.** A desync frame is dropped *unauthenticated*: ratcheting that far to
//! check its tag would let a forger make us burn unbounded work, so we never learn whether the
//! peer sent it. It therefore must not change anything an attacker could want changed: the
//! chat is not closed and no close is sent (otherwise anyone able to inject one frame, such
//! as a relay or an off-path attacker, could kill any chat, and a close is permanent where
//! dropping traffic is not). What it may do is start a rekey ([`Chat::rekey`]), if the chat is
//! established, no handshake is in flight and the rekey throttle allows. Why: a genuine desync
//! (more than a window of the peer's frames lost) needs exactly that: the new epoch starts both
//! chains at counter 0, so the peer is resynchronised when the handshake completes, and the
//! handshake itself is the peer being told. An attacker gains little: at most
//! [`RekeyPolicy::throttle_max`] extra rekeys per [`RekeyPolicy::throttle_period`], each
//! completed only by the genuine peer, and the current epoch keeps working meanwhile.
//!
//! ## Rekey
//! A new XX handshake with `epoch + 1`: on demand ([`Chat::rekey`]), after
//! [`RekeyPolicy::after_messages`] sent messages, or when the epoch is
//! [`RekeyPolicy::after_time`] old. The previous epoch's receive chain stays for
//! [`RekeyPolicy::grace`] so in-flight messages still open. At most
//! [`RekeyPolicy::throttle_max`] rekeys per [`RekeyPolicy::throttle_period`] ⇒
//! [`ChatError::RekeyThrottled`]. Simultaneous rekey: both sides sent message 1 of the same epoch;
//! the one whose ephemeral key is larger (32 bytes compared lexicographically) stays
//! initiator, the other abandons its attempt and answers. Both compute the same comparison, so
//! they converge. A frame of an older epoch (after its grace) ⇒ [`ChatError::Replayed`]; a data
//! frame of an epoch never agreed ⇒ [`ChatError::Desync`] (the desync rule above).
//!
//! ## Teardown and secrets
//! [`Chat::close`] sends kind 0x20 with an encrypted reason code under the next send key, so a
//! relay cannot forge a close. Every key is wiped on close, on expiry
//! ([`RekeyPolicy::reject_after_time`]) and on drop.
//!
//! ## Sealed state
//! [`Chat::seal`] / [`Chat::unseal`] persist the whole state (see [`crate::seal`]) with a
//! counter lease, so a crash-and-restore never reuses a message key: the live machine never
//! sends past the lease of its last seal (the lease's last counter is kept for a close frame),
//! and a restored one resumes after it. A restored machine starts a fresh epoch at once when
//! the rekey throttle allows, because its record may predate a rekey the peer completed; the
//! peer accepts a handshake that redoes its current epoch or jumps ahead, since the epoch is
//! bound into the prologue and signatures. Until that fresh epoch is established it sends
//! nothing ([`ChatError::AwaitingRekey`], [`Chat::is_awaiting_rekey`]): the record may be an
//! older copy of the file, or a second instance may run from it, and either would hand out the
//! restored epoch's keys again. An embedder that keeps the sequence of its last seal where a
//! rollback cannot reach (a counter on a server, a TPM) proves the record is the newest by
//! passing that sequence to [`Chat::unseal`]; then the restored epoch may send after the next
//! seal. If the throttle is spent (several restores within its period), the rekey stays due
//! and starts as soon as the throttle allows ([`Chat::poll_timeout`] names the moment).
//!
//! The record holds the chat, not the identity key: [`Chat::unseal`] needs the same
//! [`IdentityKey`](crate::crypto::ed25519::IdentityKey) again. Keep its seed
//! ([`IdentityKey::to_seed`](crate::crypto::ed25519::IdentityKey::to_seed), 32 bytes to store
//! as secretly as the sealing key) beside the record. The whole recipe:
//!
//! ```
//! use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
//! use sealwire::chat::{Chat, ChatConfig, ChatId};
//! use sealwire::crypto::ed25519::IdentityKey;
//! use sealwire::seal::{KdfParams, SealKey, UnsealWith};
//! use sealwire::time::{Instant, WallTime};
//!
//! let mut rng = ChaCha20Rng::from_seed([1; 32]); // production: rand_core::UnwrapErr(getrandom::SysRng)
//! let now = Instant::ZERO;
//! let cfg = ChatConfig::new(ChatId::new([7; 16]));
//!
//! // 1. Create the identity once, and save its seed (e.g. a 0600 file or the OS keystore).
//! let identity = IdentityKey::generate(&mut rng);
//! let saved_seed: [u8; 32] = *identity.to_seed();
//!
//! // 2. Chat, then seal the state under a passphrase (small Argon2id cost for this example).
//! let mut alice = Chat::initiator(now, identity, cfg.clone(), ChaCha20Rng::from_seed([2; 32]))?;
//! let mut bob = Chat::responder(IdentityKey::from_seed([3; 32]), cfg.clone(), ChaCha20Rng::from_seed([4; 32]))?;
//! while !(alice.is_established() && bob.is_established()) {
//!     while let Some(f) = alice.poll_transmit() { bob.handle_frame(now, &f)?; }
//!     while let Some(f) = bob.poll_transmit() { alice.handle_frame(now, &f)?; }
//! }
//! let kdf = KdfParams::MINIMUM; // the cheapest accepted; the default costs more
//! let key = SealKey::from_passphrase(b"correct horse", kdf, &mut rng)?;
//! let wall = WallTime::from_unix(1_700_000_000, 0); // e.g. WallTime::now()
//! let record = alice.seal(now, wall, &key)?;
//! drop(alice); // the process ends
//!
//! // 3. Later: restore the identity from its seed, and the chat from its record.
//! let identity = IdentityKey::from_seed(saved_seed);
//! let mut alice = Chat::unseal(now, wall, identity, cfg, &record, UnsealWith::Passphrase(b"correct horse"),
//!                              None, ChaCha20Rng::from_seed([5; 32]))?;
//! // The record could be an older copy of the file: alice sends nothing under its epoch, and
//! // waits for the fresh epoch her restore started (`Some(sequence)` would prove it newest).
//! assert!(alice.is_awaiting_rekey());
//! while alice.is_awaiting_rekey() {
//!     while let Some(f) = alice.poll_transmit() { bob.handle_frame(now, &f)?; }
//!     while let Some(f) = bob.poll_transmit() { alice.handle_frame(now, &f)?; }
//! }
//! alice.seal(now, wall, &key)?; // a new lease before the first send
//! alice.send(now, b"back")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Why one machine, not typestate
//! A chat is established *and* handshaking during every rekey, and the old epoch keeps
//! receiving during the grace period, so the phases overlap; one [`Chat`] holds the current,
//! previous, unconfirmed and pending epochs and every method is valid at any time, returning
//! [`ChatError::NotEstablished`] or [`ChatError::Closed`] where it cannot act.
//!
//! The full specification (byte layouts, KDFs, every rule) is `docs/chat-protocol.md`.
//!
//! ## Relays
//! A relay sees frames, never keys. [`relay::Relay`] is the relay protocol as a keyless
//! machine: an app registers by signing a fresh challenge with its identity key, a chat's
//! participants are the first two identities that start it (a participant's pin reserves the
//! second seat, so no stranger can squat it), frames wait in bounded mailboxes while their
//! recipient is offline, handshakes are rate-limited per chat, and an idle chat expires with
//! its relay state wiped. It checks frames with [`FrameHeader::parse_checked`] only.

mod config;
mod epochs;
mod error;
mod event;
mod handshake;
mod machine;
mod messages;
pub(crate) mod noise;
mod ratchet;
pub mod relay;
mod sealed;
mod throttle;
mod wire;

pub use config::{ChatConfig, RekeyPolicy, SkipWindow};
pub use error::ChatError;
pub use event::{ChatEvent, ChatStats, CloseReason, Opened};
pub use machine::Chat;
pub use sealed::SEALED_CHAT_MAGIC;
pub use wire::{
    data_frame_len, ChatId, FrameHeader, FrameKind, CLOSE_BODY_LEN, HEADER_LEN,
    IDENTITY_PAYLOAD_LEN, MSG1_BODY_LEN, MSG2_BODY_LEN, MSG3_BODY_LEN, TAG_LEN, VERSION,
};
