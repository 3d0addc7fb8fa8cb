//! The four WireGuard messages: sizes, offsets, parsing into borrowed views. No crypto state.
//!
//! All integers are little-endian. The first four bytes are the message type as a `u32`: one
//! type byte followed by three reserved zero bytes (the reference implementations compare
//! the whole word, so non-zero reserved bytes are rejected here too).

use super::error::DropReason;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Handshake initiation.
pub(crate) const MSG_INITIATION: u32 = 1;
/// Handshake response.
pub(crate) const MSG_RESPONSE: u32 = 2;
/// Cookie reply.
pub(crate) const MSG_COOKIE_REPLY: u32 = 3;
/// Transport data.
pub(crate) const MSG_DATA: u32 = 4;

/// Size of a handshake initiation.
pub const INITIATION_LEN: usize = 148;
/// Size of a handshake response.
pub const RESPONSE_LEN: usize = 92;
/// Size of a cookie reply.
pub const COOKIE_REPLY_LEN: usize = 64;
/// Transport header: type (4) ‖ receiver (4) ‖ counter (8).
pub const DATA_HEADER_LEN: usize = 16;
/// Per-packet overhead of transport data: header plus Poly1305 tag.
pub const DATA_OVERHEAD: usize = DATA_HEADER_LEN + 16;

/// A parsed datagram, borrowing from the input.
#[derive(Debug)]
pub(crate) enum Message<'a> {
    Initiation(&'a [u8; INITIATION_LEN]),
    Response(&'a [u8; RESPONSE_LEN]),
    CookieReply(&'a [u8; COOKIE_REPLY_LEN]),
    Data {
        receiver: u32,
        counter: u64,
        /// Ciphertext ‖ tag (at least 16 bytes).
        sealed: &'a [u8],
    },
}

/// The little-endian `u32` at `off` (0 where `b` is too short: callers check lengths first).
#[inline]
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    match b.get(off..).and_then(<[u8]>::first_chunk) {
        Some(w) => u32::from_le_bytes(*w),
        None => 0,
    }
}

/// The little-endian `u64` at `off` (0 where `b` is too short).
#[inline]
pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    match b.get(off..).and_then(<[u8]>::first_chunk) {
        Some(w) => u64::from_le_bytes(*w),
        None => 0,
    }
}

/// Classifies `datagram` by its type word and exact length.
///
/// Why exact lengths: every handshake message has one fixed size, so anything else is noise
/// or an attack and is dropped before any crypto runs.
pub(crate) fn parse(datagram: &[u8]) -> Result<Message<'_>, DropReason> {
    if datagram.len() < 4 {
        return Err(DropReason::Malformed);
    }
    match (u32_at(datagram, 0), datagram.len()) {
        (MSG_INITIATION, INITIATION_LEN) => datagram
            .try_into()
            .map(Message::Initiation)
            .map_err(|_| DropReason::Malformed),
        (MSG_RESPONSE, RESPONSE_LEN) => datagram
            .try_into()
            .map(Message::Response)
            .map_err(|_| DropReason::Malformed),
        (MSG_COOKIE_REPLY, COOKIE_REPLY_LEN) => datagram
            .try_into()
            .map(Message::CookieReply)
            .map_err(|_| DropReason::Malformed),
        (MSG_DATA, n) if n >= DATA_OVERHEAD => Ok(Message::Data {
            receiver: u32_at(datagram, 4),
            counter: u64_at(datagram, 8),
            sealed: datagram
                .get(DATA_HEADER_LEN..)
                .ok_or(DropReason::Malformed)?,
        }),
        _ => Err(DropReason::Malformed),
    }
}

/// Field offsets of the initiation: type 0, sender 4, ephemeral 8, static 40 (48),
/// timestamp 88 (28), mac1 116, mac2 132.
pub(crate) mod init {
    pub const SENDER: usize = 4;
    pub const EPHEMERAL: usize = 8;
    pub const STATIC: usize = 40;
    pub const TIMESTAMP: usize = 88;
}

/// Field offsets of the response: type 0, sender 4, receiver 8, ephemeral 12, empty 44 (16),
/// mac1 60, mac2 76.
pub(crate) mod resp {
    pub const SENDER: usize = 4;
    pub const RECEIVER: usize = 8;
    pub const EPHEMERAL: usize = 12;
    pub const EMPTY: usize = 44;
}

/// Field offsets of the cookie reply: type 0, receiver 4, nonce 8 (24), cookie 32 (32).
pub(crate) mod cookie {
    pub const RECEIVER: usize = 4;
    pub const NONCE: usize = 8;
    pub const COOKIE: usize = 32;
}

/// Inner destination (outbound) or source (inbound) address of an IP packet, and its
/// length from the header.
#[inline]
pub(crate) fn inner_ip(packet: &[u8], want_source: bool) -> Option<(IpAddr, usize)> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let len = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
            let off = if want_source { 12 } else { 16 };
            let a: [u8; 4] = *packet.get(off..)?.first_chunk()?;
            Some((IpAddr::V4(Ipv4Addr::from(a)), len))
        }
        6 if packet.len() >= 40 => {
            let len = 40 + usize::from(u16::from_be_bytes([*packet.get(4)?, *packet.get(5)?]));
            let off = if want_source { 8 } else { 24 };
            let a: [u8; 16] = *packet.get(off..)?.first_chunk()?;
            Some((IpAddr::V6(Ipv6Addr::from(a)), len))
        }
        _ => None,
    }
}

/// Transport payloads are padded to a multiple of 16 bytes (paper §5.4.6).
pub(crate) fn padded_len(len: usize) -> usize {
    len.div_ceil(16).saturating_mul(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_types_are_checked() {
        let mut init = [0u8; INITIATION_LEN];
        init[0] = 1;
        assert!(matches!(parse(&init), Ok(Message::Initiation(_))));
        assert!(parse(&init[..147]).is_err());
        init[1] = 1; // reserved byte set
        assert!(parse(&init).is_err());
        let mut data = [0u8; 32];
        data[0] = 4;
        assert!(matches!(parse(&data), Ok(Message::Data { .. })));
        assert!(parse(&data[..31]).is_err());
        assert!(parse(&[]).is_err());
        let mut cookie = [0u8; COOKIE_REPLY_LEN];
        cookie[0] = 3;
        assert!(matches!(parse(&cookie), Ok(Message::CookieReply(_))));
        let mut resp = [0u8; RESPONSE_LEN];
        resp[0] = 2;
        assert!(matches!(parse(&resp), Ok(Message::Response(_))));
        resp[0] = 5;
        assert!(parse(&resp).is_err());
    }
}
