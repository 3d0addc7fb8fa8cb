//! The errors of the [`Device`](super::Device) API ([`DeviceError`]) and the counted reasons an
//! input was dropped ([`DropReason`]).
//!
//! Detailed reasons are for the embedder's logs and metrics; never echo them to the network
//! (WireGuard answers nothing to a bad packet, and neither do we).

use core::fmt;

/// Why an incoming datagram or outgoing packet was dropped. Each reason has a counter in
/// [`DeviceStats`](super::DeviceStats).
///
/// ```
/// use sealwire::tunnel::DropReason;
/// assert_eq!(DropReason::ALL.len(), 17);
/// assert_eq!(DropReason::NoRoute.to_string(), "no peer is allowed to receive this destination");
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Wrong size or type word for any WireGuard message, or an inner packet that is not IPv4/IPv6.
    Malformed,
    /// mac1 did not verify: the sender does not know our public key.
    InvalidMac1,
    /// Under load and mac2 missing or invalid: a cookie reply was sent instead.
    CookieRequired,
    /// Under load, this source sent more handshakes than its per-source allowance
    /// (20 per second, burst 5), even with a valid cookie.
    RateLimited,
    /// A handshake message failed to decrypt or authenticate.
    HandshakeDecrypt,
    /// The initiation's static key belongs to no configured peer.
    UnknownPeer,
    /// The initiation's timestamp is not newer than the last accepted one (replay).
    ReplayedTimestamp,
    /// Initiations from this peer arrive faster than 50 per second.
    InitiationFlood,
    /// The receiver index matches no handshake or session of ours.
    UnknownIndex,
    /// A response, cookie reply or data packet we have no pending state for.
    Unexpected,
    /// The transport counter was already received or is below the replay window.
    ReplayedCounter,
    /// A transport packet failed authentication.
    DecryptFailed,
    /// The session is older than REJECT_AFTER_TIME or its counter is exhausted.
    SessionExpired,
    /// The inner source address is not in the sending peer's AllowedIPs.
    SourceNotAllowed,
    /// No peer's AllowedIPs contain the destination of an outgoing packet.
    NoRoute,
    /// The peer has no known endpoint, so nothing can be sent to it yet.
    NoEndpoint,
    /// The peer's staging buffer (packets waiting for a handshake) was full, so its oldest
    /// packet was dropped; or nothing may be staged (`max_staged_packets` is 0). Drops of
    /// the output queues are counted apart, in
    /// [`DeviceStats::transmits_dropped`](super::DeviceStats::transmits_dropped) and
    /// [`DeviceStats::events_dropped`](super::DeviceStats::events_dropped).
    QueueFull,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 17] = [
        DropReason::Malformed,
        DropReason::InvalidMac1,
        DropReason::CookieRequired,
        DropReason::RateLimited,
        DropReason::HandshakeDecrypt,
        DropReason::UnknownPeer,
        DropReason::ReplayedTimestamp,
        DropReason::InitiationFlood,
        DropReason::UnknownIndex,
        DropReason::Unexpected,
        DropReason::ReplayedCounter,
        DropReason::DecryptFailed,
        DropReason::SessionExpired,
        DropReason::SourceNotAllowed,
        DropReason::NoRoute,
        DropReason::NoEndpoint,
        DropReason::QueueFull,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::Malformed => "the packet is malformed",
            DropReason::InvalidMac1 => "mac1 did not verify",
            DropReason::CookieRequired => {
                "under load without a valid cookie; a cookie reply was sent"
            }
            DropReason::RateLimited => "this source exceeded its handshake rate under load",
            DropReason::HandshakeDecrypt => "the handshake message did not authenticate",
            DropReason::UnknownPeer => "the initiator's static key is not a configured peer",
            DropReason::ReplayedTimestamp => {
                "the initiation timestamp is not newer than the last one"
            }
            DropReason::InitiationFlood => "initiations arrive too fast from this peer",
            DropReason::UnknownIndex => "the receiver index is unknown",
            DropReason::Unexpected => "no pending state matches this message",
            DropReason::ReplayedCounter => "the transport counter was replayed or is too old",
            DropReason::DecryptFailed => "the transport packet did not authenticate",
            DropReason::SessionExpired => "the session has expired",
            DropReason::SourceNotAllowed => "the inner source address is not allowed for this peer",
            DropReason::NoRoute => "no peer is allowed to receive this destination",
            DropReason::NoEndpoint => "the peer has no endpoint yet",
            DropReason::QueueFull => "the staging buffer is full",
        })
    }
}

/// Errors of the [`Device`](super::Device) API. `Display` names fields and reasons only,
/// never a key or a byte of the input, so errors are safe to log (but do not echo them to the
/// network: WireGuard answers nothing to a bad packet).
///
/// ```
/// use sealwire::tunnel::{DeviceError, DropReason};
/// let e = DeviceError::from(DropReason::ReplayedCounter);
/// assert_eq!(e.to_string(), "packet dropped: the transport counter was replayed or is too old");
/// assert_eq!(DeviceError::InvalidConfig("mtu").to_string(), "invalid configuration: mtu");
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// The output buffer is too small; it was left untouched. Retry with `needed` bytes.
    BufferTooSmall {
        /// Bytes the output needs.
        needed: usize,
    },
    /// The input was dropped (and counted in [`DeviceStats`](super::DeviceStats)).
    Dropped(DropReason),
    /// A peer with this public key already exists.
    DuplicatePeer,
    /// No peer with this public key exists.
    UnknownPeer,
    /// The configured peer limit (`max_peers`) is reached.
    TooManyPeers,
    /// A configuration value makes no sense; the field is named: a [`DeviceConfig`] field
    /// (`"mtu"`, `"queue_capacity"`, ...) at [`Device::new`], or `"public_key"` for a peer
    /// with the device's own key.
    ///
    /// [`DeviceConfig`]: super::DeviceConfig
    /// [`Device::new`]: super::Device::new
    InvalidConfig(&'static str),
}

impl From<DropReason> for DeviceError {
    fn from(r: DropReason) -> Self {
        DeviceError::Dropped(r)
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::BufferTooSmall { needed } => {
                write!(f, "the output buffer is too small: {needed} bytes needed")
            }
            DeviceError::Dropped(r) => write!(f, "packet dropped: {r}"),
            DeviceError::DuplicatePeer => f.write_str("a peer with this public key already exists"),
            DeviceError::UnknownPeer => f.write_str("no peer with this public key exists"),
            DeviceError::TooManyPeers => f.write_str("the peer limit is reached"),
            DeviceError::InvalidConfig(field) => write!(f, "invalid configuration: {field}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DeviceError {}
