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
