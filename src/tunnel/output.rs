//! What a [`Device`](super::Device) hands back: the [`Action`] for the caller's buffer after
//! each packet, the [`Transmit`]s it queued, and the [`DeviceEvent`]s worth logging.

use crate::crypto::x25519::PublicKey;
use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};

/// What the caller must do after [`Device::encapsulate`](super::Device::encapsulate) or
/// [`Device::decapsulate`](super::Device::decapsulate) (and their in-place forms). In every
/// case, afterwards drain [`Device::poll_transmit`](super::Device::poll_transmit) too.
///
/// ```
/// use sealwire::tunnel::Action;
/// let a = Action::WriteToNetwork { to: "192.0.2.1:51820".parse().unwrap(), len: 148 };
/// assert_ne!(a, Action::Done);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Send `out[..len]` as one UDP datagram to `to`.
    WriteToNetwork {
        /// Destination endpoint.
        to: SocketAddr,
        /// Bytes of `out` to send.
        len: usize,
    },
    /// Write `out[..len]`, a verified IP packet from `source`, to the TUN device.
    WriteToTunnel {
        /// Bytes of `out` to write.
        len: usize,
        /// The packet's inner source address (already checked against AllowedIPs).
        source: IpAddr,
    },
    /// Nothing to write (a keepalive, a handshake step with no reply, a staged packet).
    Done,
}

/// Something the embedder may want to log or act on; drained with
/// [`Device::poll_event`](super::Device::poll_event).
///
/// ```
/// use sealwire::crypto::x25519::PublicKey;
/// use sealwire::tunnel::DeviceEvent;
/// let e = DeviceEvent::HandshakeGaveUp { peer: PublicKey::from_bytes([1; 32]) };
/// assert!(matches!(e, DeviceEvent::HandshakeGaveUp { .. }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceEvent {
    /// A handshake with `peer` completed and a new session exists. As responder the session
    /// becomes usable for sending once the initiator's first packet arrives.
    HandshakeCompleted {
        /// The peer.
        peer: PublicKey,
        /// Where it is now.
        endpoint: SocketAddr,
        /// Whether we initiated.
        initiator: bool,
    },
    /// An authenticated packet arrived from a new address: the peer roamed.
    EndpointChanged {
        /// The peer.
        peer: PublicKey,
        /// Its new endpoint.
        endpoint: SocketAddr,
    },
    /// No response after every retry (about REKEY_ATTEMPT_TIME): staged packets were dropped.
    HandshakeGaveUp {
        /// The peer.
        peer: PublicKey,
    },
    /// All session keys of `peer` were wiped (3 × REJECT_AFTER_TIME without a new session).
    KeysWiped {
        /// The peer.
        peer: PublicKey,
    },
}

/// A datagram the device wants sent that did not fit the call that produced it (timer
/// messages, staged packets flushed after a handshake, rekey initiations); drained with
/// [`Device::poll_transmit`](super::Device::poll_transmit).
///
/// ```
/// let t = sealwire::tunnel::Transmit { to: "192.0.2.1:51820".parse().unwrap(), payload: vec![4, 0, 0, 0] };
/// assert_eq!(t.payload.len(), 4);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination endpoint.
    pub to: SocketAddr,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// What [`Device::encapsulate_batch`](super::Device::encapsulate_batch) did: how many packets
/// from the front of the run it took, and the datagrams it wrote for them.
///
/// For [`Action::WriteToNetwork`]`{ to, len }`, `out[..len]` is `segments` datagrams for `to`
/// laid end to end, each `segment_size` bytes long except the last, which may be shorter:
/// exactly what one UDP GSO send takes (`UDP_SEGMENT` = `segment_size`), or send them one by
/// one with `out[..len].chunks(segment_size)`. [`Action::Done`]: nothing to send (the packet
/// was staged behind a handshake in flight, or the run was empty).
///
/// ```
/// use sealwire::tunnel::{Action, SealedBatch};
/// let b = SealedBatch {
///     consumed: 3,
///     action: Action::WriteToNetwork { to: "192.0.2.1:51820".parse().unwrap(), len: 3 * 1452 },
///     segment_size: 1452,
///     segments: 3,
/// };
/// let Action::WriteToNetwork { len, .. } = b.action else { panic!() };
/// assert_eq!(vec![0u8; len].chunks(b.segment_size).count(), b.segments);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct SealedBatch {
    /// Packets taken from the front of the run (sealed, or staged); continue with the rest.
    pub consumed: usize,
    /// Where to send `out[..len]`, or [`Action::Done`] (never [`Action::WriteToTunnel`]).
    pub action: Action,
    /// The length of every datagram but the last (0 with [`Action::Done`]).
    pub segment_size: usize,
    /// How many datagrams `out[..len]` holds (0 with [`Action::Done`]).
    pub segments: usize,
}
