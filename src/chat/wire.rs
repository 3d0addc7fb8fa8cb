//! The chat frame: a fixed 30-byte header followed by the body. No crypto state lives here, so
//! relays use the same parser (see [`crate::chat::relay`]).
//!
//! | offset | size | field                                   |
//! |-------:|-----:|-----------------------------------------|
//! | 0      | 1    | version = 1                             |
//! | 1      | 1    | kind (1, 2, 3 handshake; 0x10 data; 0x20 close) |
//! | 2      | 16   | chat id                                 |
//! | 18     | 4    | epoch, u32 big-endian                   |
//! | 22     | 8    | counter, u64 big-endian (0 for handshake frames) |
//! | 30     | ..   | body                                    |

use core::fmt;

use super::error::ChatError;

/// The only protocol version.
pub const VERSION: u8 = 1;
/// Length of the frame header.
pub const HEADER_LEN: usize = 30;
/// Length of the Poly1305 tag closing every encrypted body.
pub const TAG_LEN: usize = 16;
/// Length of the handshake payload of messages 2 and 3: identity (32) ‖ signature (64).
pub const IDENTITY_PAYLOAD_LEN: usize = 96;
/// Body length of handshake message 1 (`e`).
pub const MSG1_BODY_LEN: usize = 32;
/// Body length of handshake message 2 (`e`, encrypted `s`, encrypted payload).
pub const MSG2_BODY_LEN: usize = 32 + (32 + TAG_LEN) + (IDENTITY_PAYLOAD_LEN + TAG_LEN);
/// Body length of handshake message 3 (encrypted `s`, encrypted payload).
pub const MSG3_BODY_LEN: usize = (32 + TAG_LEN) + (IDENTITY_PAYLOAD_LEN + TAG_LEN);
/// Body length of a close frame (one encrypted reason byte).
pub const CLOSE_BODY_LEN: usize = 1 + TAG_LEN;

/// A 16-byte chat identifier, chosen by the embedder (e.g. random per conversation).
///
/// ```
/// use sealwire::chat::ChatId;
/// let id = ChatId::new([1u8; 16]);
/// assert_eq!(id.as_bytes(), &[1u8; 16]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChatId([u8; 16]);

impl ChatId {
    /// Wraps 16 bytes.
    pub const fn new(bytes: [u8; 16]) -> Self {
        ChatId(bytes)
    }

    /// The 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for ChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChatId({})", crate::crypto::hex::encode(&self.0))
    }
}

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// Noise message 1 (`-> e`), from the initiator of an epoch.
    HandshakeInit,
    /// Noise message 2 (`<- e, ee, s, es` + identity payload).
    HandshakeResponse,
    /// Noise message 3 (`-> s, se` + identity payload).
    HandshakeFinish,
    /// An application message under the sender's ratchet.
    Data,
    /// Authenticated teardown under the sender's ratchet.
    Close,
}

impl FrameKind {
    /// The wire byte.
    ///
    /// ```
    /// use sealwire::chat::FrameKind;
    /// assert_eq!(FrameKind::Data.to_byte(), 0x10);
    /// assert_eq!(FrameKind::from_byte(0x20), Some(FrameKind::Close));
    /// assert_eq!(FrameKind::from_byte(4), None);
    /// ```
    pub const fn to_byte(self) -> u8 {
        match self {
            FrameKind::HandshakeInit => 1,
            FrameKind::HandshakeResponse => 2,
            FrameKind::HandshakeFinish => 3,
            FrameKind::Data => 0x10,
            FrameKind::Close => 0x20,
        }
    }

    /// Parses the wire byte.
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(FrameKind::HandshakeInit),
            2 => Some(FrameKind::HandshakeResponse),
            3 => Some(FrameKind::HandshakeFinish),
            0x10 => Some(FrameKind::Data),
            0x20 => Some(FrameKind::Close),
            _ => None,
        }
    }

    /// Whether this is one of the three handshake messages.
    pub const fn is_handshake(self) -> bool {
        matches!(
            self,
            FrameKind::HandshakeInit | FrameKind::HandshakeResponse | FrameKind::HandshakeFinish
        )
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Frame kind.
    pub kind: FrameKind,
    /// The chat this frame belongs to.
    pub chat_id: ChatId,
    /// Key epoch (0 for the first handshake, +1 per rekey).
    pub epoch: u32,
    /// Message counter in the sender's chain (0 for handshake frames).
    pub counter: u64,
}

impl FrameHeader {
    /// Encodes the 30 header bytes.
    ///
    /// ```
    /// use sealwire::chat::{ChatId, FrameHeader, FrameKind, HEADER_LEN};
    /// let h = FrameHeader { kind: FrameKind::Data, chat_id: ChatId::new([9; 16]), epoch: 2, counter: 7 };
    /// let bytes = h.encode();
    /// assert_eq!(bytes.len(), HEADER_LEN);
    /// assert_eq!(FrameHeader::parse(&bytes).unwrap(), (h, &[][..]));
    /// ```
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = VERSION;
        out[1] = self.kind.to_byte();
        out[2..18].copy_from_slice(&self.chat_id.0);
        out[18..22].copy_from_slice(&self.epoch.to_be_bytes());
        out[22..30].copy_from_slice(&self.counter.to_be_bytes());
        out
    }

    /// Splits a frame into its header and body, checking only the version and the kind.
    pub fn parse(frame: &[u8]) -> Result<(FrameHeader, &[u8]), ChatError> {
        let (head, body) = frame
            .split_at_checked(HEADER_LEN)
            .ok_or(ChatError::Malformed)?;
        let head: &[u8; HEADER_LEN] = head.try_into().map_err(|_| ChatError::Malformed)?;
        let [version, kind, rest @ ..] = head;
        if *version != VERSION {
            return Err(ChatError::Malformed);
        }
        let kind = FrameKind::from_byte(*kind).ok_or(ChatError::Malformed)?;
        let (chat_id, rest) = rest.split_first_chunk::<16>().ok_or(ChatError::Malformed)?;
        let (epoch, rest) = rest.split_first_chunk::<4>().ok_or(ChatError::Malformed)?;
        let counter: [u8; 8] = (*rest).try_into().map_err(|_| ChatError::Malformed)?;
        Ok((
            FrameHeader {
                kind,
                chat_id: ChatId(*chat_id),
                epoch: u32::from_be_bytes(*epoch),
                counter: u64::from_be_bytes(counter),
            },
            body,
        ))
    }

    /// Parses and checks the size rules every frame obeys: handshake frames have counter 0 and
    /// their exact body length, close frames their exact length, data frames a tag and at most
    /// `max_plaintext` bytes of plaintext. Relays use this to drop garbage without keys.
    ///
    /// ```
    /// use sealwire::chat::{ChatError, ChatId, FrameHeader, FrameKind};
    /// let h = FrameHeader { kind: FrameKind::HandshakeInit, chat_id: ChatId::new([0; 16]), epoch: 0, counter: 0 };
    /// let mut frame = h.encode().to_vec();
    /// assert_eq!(FrameHeader::parse_checked(&frame, 1024), Err(ChatError::Malformed));
    /// frame.extend_from_slice(&[0u8; 32]);
    /// assert!(FrameHeader::parse_checked(&frame, 1024).is_ok());
    /// ```
    pub fn parse_checked(
        frame: &[u8],
        max_plaintext: usize,
    ) -> Result<(FrameHeader, &[u8]), ChatError> {
        let (h, body) = Self::parse(frame)?;
        let ok = match h.kind {
            FrameKind::HandshakeInit => h.counter == 0 && body.len() == MSG1_BODY_LEN,
            FrameKind::HandshakeResponse => h.counter == 0 && body.len() == MSG2_BODY_LEN,
            FrameKind::HandshakeFinish => h.counter == 0 && body.len() == MSG3_BODY_LEN,
            FrameKind::Close => body.len() == CLOSE_BODY_LEN,
            FrameKind::Data => body
                .len()
                .checked_sub(TAG_LEN)
                .is_some_and(|n| n <= max_plaintext),
        };
        if ok {
            Ok((h, body))
        } else {
            Err(ChatError::Malformed)
        }
    }
}

/// Total frame length of a data frame carrying `plaintext_len` bytes.
///
/// ```
/// assert_eq!(sealwire::chat::data_frame_len(10), 30 + 10 + 16);
/// ```
pub const fn data_frame_len(plaintext_len: usize) -> usize {
    HEADER_LEN
        .saturating_add(TAG_LEN)
        .saturating_add(plaintext_len)
}
