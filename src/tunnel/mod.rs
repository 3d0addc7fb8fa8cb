//! # tunnel — a WireGuard-compatible tunnel, sans-IO
//!
//! Byte-compatible with WireGuard (the paper "WireGuard: Next Generation Kernel Network
//! Tunnel", the Linux kernel module, wireguard-go, boringtun): the handshake is
//! `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s` with WireGuard's identifiers, the transport is
//! ChaCha20-Poly1305 with 64-bit counter nonces. [`Device`] holds many peers behind one
//! static key and does cryptokey routing; it never touches a socket, a TUN or a clock.
//!
//! ## Handshake and data
//!
//! ```text
//!  Initiator                                              Responder
//!  ---------                                              ---------
//!  encapsulate(ip) → no session: stage, send
//!    [1] initiation  sender=I, e_i, AEAD(s_i), AEAD(TAI64N), mac1, mac2 ─────►
//!                                       mac1 ok? under load ⇒ mac2 ok? else ◄── [3] cookie reply
//!                                       decrypt s_i ⇒ peer; timestamp newer?
//!    ◄──────────────── [2] response  sender=R, receiver=I, e_r, AEAD(ε), mac1, mac2
//!  keys ⇒ current; send staged (or keepalive)                 keys ⇒ next
//!    [4] data  receiver=R, counter, AEAD(ip ‖ pad) ─────────────────────►
//!                                                  first data ⇒ next becomes current
//!    ◄───────────────────────────────────── [4] data receiver=I, counter, ...
//!  after REKEY_AFTER_TIME (initiator) the roles repeat; old keys stay as `previous`
//! ```
//!
//! ## Wire (all integers little-endian)
//!
//! | type | size | fields |
//! |---|---|---|
//! | 1 initiation | 148 | type‖0³, sender u32, ephemeral 32, static 32+16, timestamp 12+16, mac1 16, mac2 16 |
//! | 2 response | 92 | type‖0³, sender u32, receiver u32, ephemeral 32, empty 0+16, mac1 16, mac2 16 |
//! | 3 cookie reply | 64 | type‖0³, receiver u32, nonce 24, cookie 16+16 |
//! | 4 data | 32 + n | type‖0³, receiver u32, counter u64, ciphertext n (padded to 16) + 16 |
//!
//! ## Why each check
//!
//! * **Exact sizes and type words** — anything else is noise; dropped before any crypto.
//! * **mac1** (`MAC(HASH("mac1----" ‖ S_responder), msg)`) — only someone who knows our public
//!   key can make us run X25519.
//! * **mac2 and cookies under load** — one global rate limiter; above it a handshake needs a
//!   cookie bound to the sender's IP and port, so spoofed floods get only cheap 64-byte
//!   replies. The cookie secret rotates every 2 minutes.
//! * **Per-source limit under load** — even with a valid cookie, one source (IPv6: one /64)
//!   gets at most 20 handshakes per second, burst 5 (the kernel's ratelimiter), so a single
//!   real host cannot monopolise the responder.
//! * **Peer from the decrypted static key** — never from the source address, so anyone can
//!   roam and nobody can impersonate by address.
//! * **TAI64N strictly increasing and ≤ 50 initiations/s per peer** — a captured initiation
//!   replayed later cannot reset a session or burn CPU.
//! * **Random indices** — indices are looked up in a table; random values reveal nothing
//!   about the number of peers or sessions.
//! * **Replay window of 8128 counters** — each counter is a nonce; accepted once, out of order
//!   allowed within the window ([`replay`]).
//! * **Session limits** — REKEY_AFTER_TIME 120 s, REJECT_AFTER_TIME 180 s,
//!   REKEY_AFTER_MESSAGES 2^60, REJECT_AFTER_MESSAGES 2^64 − 2^13 − 1 ([`timers`]).
//! * **AllowedIPs both ways** — outbound picks the peer by longest prefix; inbound drops a
//!   packet whose inner source is not the sender's (counted as
//!   [`DropReason::SourceNotAllowed`], never forwarded).
//! * **Roaming** — the endpoint follows only authenticated packets (a valid handshake or a
//!   decrypted data packet), so a spoofed source cannot redirect traffic.
//!
//! ## Where things are
//!
//! | file | owns |
//! |---|---|
//! | `wire.rs` | message sizes, offsets and parsing (no crypto state) |
//! | `handshake.rs` | Noise IKpsk2: building and opening initiations and responses |
//! | `cookie.rs` | mac1, mac2 and cookie replies |
//! | `rate_limit.rs` | the global handshake limiter ("under load") and the per-source buckets |
//! | [`replay`] | the anti-replay window |
//! | `keypair.rs` | one transport session: its two keys, send counter and replay window |
//! | [`timers`] | the protocol constants and the five per-peer timers |
//! | `peer.rs` | one peer: keys, keypair slots (current, previous, next), endpoint, staging |
//! | `peer_table.rs` | the peers by slot, by public key and by session index; index allocation |
//! | `schedule.rs` | the timer deadlines of all peers and the rescheduling rule |
//! | `allowed_ips.rs` | [`Cidr`] and the longest-prefix tables of cryptokey routing |
//! | `device/mod.rs` | the [`Device`]: construction, peer management, outputs, timers |
//! | `device/outbound.rs` | the send path: routing, sealing, staging, initiations, keepalives |
//! | `device/inbound.rs` | the receive path: macs and cookies, handshakes, transport data |
//! | `device/batch.rs` | both paths in runs: [`Device::encapsulate_batch`] (one GSO send), [`Device::decapsulate_batch`] (one GRO receive) |
//! | `output.rs` | [`Action`], [`Transmit`], [`DeviceEvent`] |
//! | `config.rs`, `error.rs`, `stats.rs` | [`DeviceConfig`] and [`PeerConfig`]; [`DeviceError`] and [`DropReason`]; [`DeviceStats`] and [`PeerStatus`] |
//! | [`wg_quick`] | the wg-quick file format, parsed into peers and a device |
//! | [`backend`] | the control-plane trait, its capability model, [`backend::UserspaceBackend`] and the conformance suite |
//!
//! ## Sizes
//!
//! Measured with `size_of` on 64-bit targets and checked by a test ([`sizes`]): an idle peer
//! (no session) is **672 bytes** plus about 40 bytes per AllowedIPs entry and ~72 bytes of
//! table entries (key map, schedule); each live session adds one heap block for its keypair
//! of **1192 bytes** (1024 of them the 8192-bit replay bitmap, 64 the raw keys that
//! [`SealJob`]s and [`Opening`]s lend to workers) plus one index-map entry. A peer holds at
//! most three sessions (previous, current, next): under 4.2 KiB at worst. With the
//! `ring` feature a keypair also keeps ring's two prepared keys (built once per session, not
//! per packet; ring sizes each for AES) and is **2224 bytes**: under 7.2 KiB per peer at
//! worst. Staged packets (at most `max_staged_packets`, default 128) are extra and only exist
//! while a handshake is in flight.
//!
//! ## Secrets in memory
//!
//! Every key the device holds is wiped when it goes, and so is the heap block it lived in:
//! the peer slots (PSK, precomputed static-static DH, handshake state, cookies) are zeroed as
//! a whole when the table grows and when the device is dropped, each session's keypair
//! lives in a block that is zeroed when the session ends (rekey, expiry, removal), and staged
//! packets (plaintext waiting for a handshake) are wiped when they are sent or dropped. So a
//! freed block never holds a key or staged plaintext, in either AEAD backend; with `ring`
//! this zeroing is what wipes ring's prepared keys, which have no `Drop`. What stays
//! unwiped is on the stack (temporary copies while a key is derived or ring prepares it, and
//! ring's per-packet Poly1305 key), and the buffers the caller passes in, which hold the
//! packet in the clear. `tests/freed_memory_tunnel.rs` searches every freed block for the
//! keys of such runs.
//!
//! ## Bounds
//!
//! Every table and queue has a knob in [`DeviceConfig`], checked by [`Device::new`]:
//! `max_peers` peers; `max_rate_limited_sources` sources tracked under load; the transmit and
//! event queues hold `queue_capacity` items each, and an output that does not fit is dropped,
//! newest first, and counted in [`DeviceStats::transmits_dropped`] and
//! [`DeviceStats::events_dropped`] (a caller that drains after every call never sees one).
//! The staging buffer is different: it is each peer's packets waiting for a handshake, not an
//! output, so when `max_staged_packets` is reached the **oldest** packet makes room (as in the
//! kernel: once the session is up, the newest data is the most useful), counted as
//! [`DropReason::QueueFull`].
//!
//! ## Driving a device
//!
//! ```text
//! tun packet  → device.encapsulate(now, pkt, &mut buf)   → WriteToNetwork{to,len}: udp.send_to(&buf[..len], to)
//! udp datagram→ device.decapsulate(now, src, dg, &mut buf) → WriteToTunnel{len,..}: tun.write(&buf[..len])
//!                                                         → WriteToNetwork{to,len}: udp.send_to(...)
//! after each call: while let Some(t) = device.poll_transmit() { udp.send_to(&t.payload, t.to) }
//!                  while let Some(e) = device.poll_event()    { log(e) }
//! sleep until device.poll_timeout(), then device.handle_timeout(now)
//! at start (and when the system clock steps): device.set_wall_clock(now, WallTime::now())
//!                                            (sealwire::time::WallTime)
//! ```
//!
//! `encapsulate` needs at most `max(MTU, packet length) + 32` bytes (and 148 when it starts a
//! handshake); `decapsulate` never needs more than the datagram's length.
//!
//! To save a copy of every packet, use the zero-copy pair (this is what the `tun_node` example
//! program does): read the packet from the TUN straight into `buf[DATA_HEADER_LEN..]` and call
//! [`Device::encapsulate_in_place`]`(now, &mut buf, len)`, which seals the datagram around it;
//! receive a datagram into `buf` and call [`Device::decapsulate_in_place`]`(now, src, &mut buf,
//! len)`, which decrypts it where it lies and leaves the packet at `buf[DATA_HEADER_LEN..]`.
//!
//! To save system calls too, batch: [`Device::encapsulate_batch`] seals a run of TUN packets
//! for one peer into equal-size datagrams of one buffer (one UDP GSO send, `UDP_SEGMENT` =
//! its `segment_size`), and [`Device::decapsulate_batch`] opens a buffer of datagrams that
//! arrived together (one UDP GRO receive, its `stride`) in place, one at a time. Both give
//! exactly what the single-packet calls give for the same packets in the same order.

mod allowed_ips;
pub mod backend;
mod config;
mod cookie;
mod device;
mod error;
mod handshake;
mod keypair;
mod output;
mod peer;
mod peer_table;
mod rate_limit;
pub mod replay;
mod schedule;
mod stats;
pub mod timers;
pub mod wg_quick;
mod wiped;
mod wire;

pub use allowed_ips::{Cidr, CidrError};
pub use config::{DeviceConfig, PeerConfig};
pub use device::{Begun, DecapsulateBatch, Device, Opened, Opening, SealJob};
pub use error::{DeviceError, DropReason};
pub use output::{Action, DeviceEvent, SealedBatch, Transmit};
pub use stats::{DeviceStats, PeerStatus};
pub use wire::{COOKIE_REPLY_LEN, DATA_HEADER_LEN, DATA_OVERHEAD, INITIATION_LEN, RESPONSE_LEN};

/// Sizes of the per-peer state, for capacity planning (documented and tested).
///
/// ```
/// let s = sealwire::tunnel::sizes();
/// assert!(s.peer < 1024 && s.keypair < 1300);
/// ```
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Sizes {
    /// Bytes of one peer without sessions (excluding AllowedIPs and staged packets).
    pub peer: usize,
    /// Bytes of one transport session (each of current/previous/next, boxed).
    pub keypair: usize,
}

/// The in-memory sizes of per-peer and per-session state on this target.
///
/// ```
/// assert!(sealwire::tunnel::sizes().keypair >= 1024); // the replay bitmap alone
/// ```
pub fn sizes() -> Sizes {
    Sizes {
        peer: core::mem::size_of::<peer::Peer>(),
        keypair: core::mem::size_of::<keypair::Keypair>(),
    }
}

#[cfg(test)]
mod size_tests {
    #[test]
    fn device_is_send() {
        fn send<T: Send>() {}
        send::<super::Device<rand_chacha::ChaCha20Rng>>();
        send::<super::backend::UserspaceBackend<rand_chacha::ChaCha20Rng>>();
    }

    // The figures the module docs promise (64-bit targets).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn bytes_per_peer_and_per_session_match_the_docs() {
        let s = super::sizes();
        assert!(
            s.peer <= 672,
            "peer grew to {} bytes: update the docs",
            s.peer
        );
        let keypair_max = if cfg!(feature = "ring") { 2224 } else { 1192 };
        assert!(
            s.keypair <= keypair_max,
            "keypair grew to {} bytes: update the docs",
            s.keypair
        );
        // The replay bitmap dominates a session: 8192 bits.
        assert!(s.keypair >= 1024);
    }
}
