//! The errors of the two session machines ([`NodeError`], [`ClientError`]) and the stable wire
//! codes a node error maps to ([`ErrorCode`], [docs/fabstir-wire.md §6]).

use core::fmt;

/// The stable `code` of an `error` frame ([docs/fabstir-wire.md §6], plus sealwire's own codes).
///
/// The SDK reads none of these except `TOKEN_LIMIT_EXCEEDED`; they are stable so that logs and
/// dashboards can rely on them.
///
/// ```
/// use sealwire::session::ErrorCode;
/// assert_eq!(ErrorCode::ReplayedSessionInit.as_str(), "REPLAYED_SESSION_INIT");
/// assert_eq!(ErrorCode::from_wire("INVALID_AAD"), Some(ErrorCode::InvalidAad));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Frame not a JSON object, no string `type`, unknown type, bad envelope ids or chain id,
    /// or an invalid inner prompt JSON.
    InvalidMessage,
    /// No `payload` object.
    MissingPayload,
    /// A required payload field is missing or not a string.
    MissingPayloadFields,
    /// Odd length or a non-hex character in a hex field.
    InvalidHexEncoding,
    /// The ephemeral key is not a valid 33-byte compressed point.
    InvalidPublicKey,
    /// The nonce is not 24 bytes.
    InvalidNonceSize,
    /// The signature is malformed, out of range, high-S or has a bad recovery id.
    InvalidSignature,
    /// Salt not 32 zero bytes or a non-empty info.
    UnsupportedParameters,
    /// The AEAD tag did not verify.
    DecryptionFailed,
    /// The decrypted init is not the expected JSON.
    InvalidSessionInit,
    /// The decrypted `jobId` differs from the envelope `job_id`.
    JobIdMismatch,
    /// The ephemeral public key was already used.
    ReplayedSessionInit,
    /// The recovered address may not use this job (the embedder rejected it).
    NotAuthorized,
    /// No key for this session on this connection.
    SessionKeyNotFound,
    /// The message AAD is not `message_<canonical decimal>`.
    InvalidAad,
    /// The message index is not above the highest accepted one.
    ReplayedMessage,
    /// The frame exceeds the configured size limit (sealwire).
    MessageTooLarge,
    /// A plaintext frame while plaintext sessions are disabled (sealwire).
    PlaintextDisabled,
    /// A table or queue of the node is full (sealwire).
    Capacity,
    /// The session exists but the embedder has not accepted it (yet) (sealwire).
    SessionNotAccepted,
    /// The prompt does not fit the model's context window (read by the SDK).
    TokenLimitExceeded,
    /// The model failed while answering.
    InferenceFailed,
    /// An internal failure of the node.
    Internal,
}

/// Every code with its wire spelling, in declaration order (a test checks the order, so
/// `code as usize` indexes this table).
const CODES: [(ErrorCode, &str); 23] = [
    (ErrorCode::InvalidMessage, "INVALID_MESSAGE"),
    (ErrorCode::MissingPayload, "MISSING_PAYLOAD"),
    (ErrorCode::MissingPayloadFields, "MISSING_PAYLOAD_FIELDS"),
    (ErrorCode::InvalidHexEncoding, "INVALID_HEX_ENCODING"),
    (ErrorCode::InvalidPublicKey, "INVALID_PUBLIC_KEY"),
    (ErrorCode::InvalidNonceSize, "INVALID_NONCE_SIZE"),
    (ErrorCode::InvalidSignature, "INVALID_SIGNATURE"),
    (ErrorCode::UnsupportedParameters, "UNSUPPORTED_PARAMETERS"),
    (ErrorCode::DecryptionFailed, "DECRYPTION_FAILED"),
    (ErrorCode::InvalidSessionInit, "INVALID_SESSION_INIT"),
    (ErrorCode::JobIdMismatch, "JOB_ID_MISMATCH"),
    (ErrorCode::ReplayedSessionInit, "REPLAYED_SESSION_INIT"),
    (ErrorCode::NotAuthorized, "NOT_AUTHORIZED"),
    (ErrorCode::SessionKeyNotFound, "SESSION_KEY_NOT_FOUND"),
    (ErrorCode::InvalidAad, "INVALID_AAD"),
    (ErrorCode::ReplayedMessage, "REPLAYED_MESSAGE"),
    (ErrorCode::MessageTooLarge, "MESSAGE_TOO_LARGE"),
    (ErrorCode::PlaintextDisabled, "PLAINTEXT_DISABLED"),
    (ErrorCode::Capacity, "CAPACITY"),
    (ErrorCode::SessionNotAccepted, "SESSION_NOT_ACCEPTED"),
    (ErrorCode::TokenLimitExceeded, "TOKEN_LIMIT_EXCEEDED"),
    (ErrorCode::InferenceFailed, "INFERENCE_FAILED"),
    (ErrorCode::Internal, "INTERNAL"),
];

impl ErrorCode {
    /// Number of distinct codes (for per-code counters).
    pub(crate) const COUNT: usize = CODES.len();

    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        CODES.get(self.index()).map_or("INTERNAL", |(_, s)| *s)
    }

    /// Parses a wire code.
    pub fn from_wire(s: &str) -> Option<ErrorCode> {
        CODES.iter().find(|(_, w)| *w == s).map(|(c, _)| *c)
    }

    /// Position in `CODES` (and in per-code counters).
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Every code, in declaration order.
    pub(crate) fn all() -> impl Iterator<Item = ErrorCode> {
        CODES.iter().map(|(c, _)| *c)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the [`Node`](super::Node) refused an input, an embedder call or its configuration.
///
/// `Display` is a sentence that never contains key material, plaintext or attacker-chosen
/// text; it is what the node puts into the `message` of the error frame.
///
/// ```
/// use sealwire::session::{NodeError, ErrorCode};
/// assert_eq!(NodeError::ReplayedMessage.code(), ErrorCode::ReplayedMessage);
/// assert!(!NodeError::DecryptionFailed.to_string().is_empty());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeError {
    /// The frame is longer than `max_frame_len`.
    FrameTooLarge,
    /// The frame is not valid JSON, or its envelope is malformed; the text names the field.
    InvalidMessage(&'static str),
    /// The frame has no `payload` object.
    MissingPayload,
    /// A payload field is missing or has the wrong JSON type; the text names it.
    MissingPayloadField(&'static str),
    /// A hex field is malformed; the text names it.
    InvalidHex(&'static str),
    /// The ephemeral public key is not a valid compressed point.
    InvalidPublicKey,
    /// The nonce is not 24 bytes.
    InvalidNonceSize,
    /// The signature is malformed, out of range, high-S, has a bad recovery id or recovers
    /// nothing.
    InvalidSignature,
    /// Non-zero salt or non-empty info.
    UnsupportedParameters,
    /// The AEAD tag did not verify.
    DecryptionFailed,
    /// The decrypted init is malformed; the text names the field.
    InvalidSessionInit(&'static str),
    /// Decrypted `jobId` ≠ envelope `job_id`.
    JobIdMismatch,
    /// The ephemeral key of this init was seen before.
    ReplayedSessionInit,
    /// The embedder rejected the session, or an init tried to take over another identity's
    /// session.
    NotAuthorized,
    /// No key for this session on this connection.
    SessionKeyNotFound,
    /// The message AAD is not `message_<canonical decimal>`.
    InvalidAad,
    /// The message index is not above the highest accepted one.
    ReplayedMessage,
    /// A plaintext frame while plaintext sessions are disabled.
    PlaintextDisabled,
    /// A bounded table or queue is full; the text names it.
    Capacity(&'static str),
    /// The session is still waiting for the embedder's decision.
    SessionNotAccepted,
    /// The connection id is not (or no longer) known. No error frame is queued.
    UnknownConnection,
    /// The embedder named a session or request that does not exist on this connection.
    UnknownSession,
    /// The side-protocol input (challenge, checkpoint) is malformed; the text names the part.
    InvalidSideProtocol(&'static str),
    /// A challenge response recovered a different address than expected.
    AddressMismatch,
    /// [`Node::new`](super::Node::new) was given a configuration it cannot run with; the text
    /// names the field.
    InvalidConfig(&'static str),
    /// [`Node::restore_replay_state`](super::Node::restore_replay_state) was given bytes that
    /// are not a replay state, or one with more live entries than `replay_cache_capacity`;
    /// the text says which. Nothing was restored.
    InvalidReplayState(&'static str),
}

impl NodeError {
    /// The stable wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            NodeError::FrameTooLarge => ErrorCode::MessageTooLarge,
            NodeError::InvalidMessage(_) => ErrorCode::InvalidMessage,
            NodeError::MissingPayload => ErrorCode::MissingPayload,
            NodeError::MissingPayloadField(_) => ErrorCode::MissingPayloadFields,
            NodeError::InvalidHex(_) => ErrorCode::InvalidHexEncoding,
            NodeError::InvalidPublicKey => ErrorCode::InvalidPublicKey,
            NodeError::InvalidNonceSize => ErrorCode::InvalidNonceSize,
            NodeError::InvalidSignature => ErrorCode::InvalidSignature,
            NodeError::UnsupportedParameters => ErrorCode::UnsupportedParameters,
            NodeError::DecryptionFailed => ErrorCode::DecryptionFailed,
            NodeError::InvalidSessionInit(_) => ErrorCode::InvalidSessionInit,
            NodeError::JobIdMismatch => ErrorCode::JobIdMismatch,
            NodeError::ReplayedSessionInit => ErrorCode::ReplayedSessionInit,
            NodeError::NotAuthorized => ErrorCode::NotAuthorized,
            NodeError::SessionKeyNotFound => ErrorCode::SessionKeyNotFound,
            NodeError::InvalidAad => ErrorCode::InvalidAad,
            NodeError::ReplayedMessage => ErrorCode::ReplayedMessage,
            NodeError::PlaintextDisabled => ErrorCode::PlaintextDisabled,
            NodeError::Capacity(_) => ErrorCode::Capacity,
            NodeError::SessionNotAccepted => ErrorCode::SessionNotAccepted,
            NodeError::UnknownConnection => ErrorCode::Internal,
            NodeError::UnknownSession => ErrorCode::SessionKeyNotFound,
            NodeError::InvalidSideProtocol(_) => ErrorCode::InvalidMessage,
            NodeError::AddressMismatch => ErrorCode::NotAuthorized,
            NodeError::InvalidConfig(_) => ErrorCode::Internal,
            NodeError::InvalidReplayState(_) => ErrorCode::Internal,
        }
    }
}

impl NodeError {
    /// The sentence `Display` writes, in three pieces (a fixed text, a field name, a fixed
    /// text), so that the error frame can be written without formatting into a temporary
    /// string.
    pub(crate) fn sentence(&self) -> [&'static str; 3] {
        match self {
            NodeError::FrameTooLarge => ["frame exceeds the size limit", "", ""],
            NodeError::InvalidMessage(what) => ["malformed frame: ", what, ""],
            NodeError::MissingPayload => ["frame has no payload object", "", ""],
            NodeError::MissingPayloadField(what) => [
                "payload field ",
                what,
                " is missing or not of the right type",
            ],
            NodeError::InvalidHex(what) => ["field ", what, " is not valid hex"],
            NodeError::InvalidPublicKey => [
                "ephemeral public key is not a valid compressed secp256k1 point",
                "",
                "",
            ],
            NodeError::InvalidNonceSize => ["nonce must be 24 bytes", "", ""],
            NodeError::InvalidSignature => ["signature is invalid", "", ""],
            NodeError::UnsupportedParameters => {
                ["salt must be 32 zero bytes and info must be empty", "", ""]
            }
            NodeError::DecryptionFailed => ["decryption failed", "", ""],
            NodeError::InvalidSessionInit(what) => ["session init payload is invalid: ", what, ""],
            NodeError::JobIdMismatch => [
                "encrypted job id does not match the envelope job_id",
                "",
                "",
            ],
            NodeError::ReplayedSessionInit => ["session init was replayed", "", ""],
            NodeError::NotAuthorized => ["not authorized for this job", "", ""],
            NodeError::SessionKeyNotFound => ["no session key for this session", "", ""],
            NodeError::InvalidAad => ["message AAD must be message_<index>", "", ""],
            NodeError::ReplayedMessage => {
                ["message index is not above the last accepted one", "", ""]
            }
            NodeError::PlaintextDisabled => ["plaintext sessions are disabled", "", ""],
            NodeError::Capacity(what) => ["node capacity reached: ", what, ""],
            NodeError::SessionNotAccepted => ["session has not been accepted", "", ""],
            NodeError::UnknownConnection => ["unknown connection", "", ""],
            NodeError::UnknownSession => ["unknown session or request", "", ""],
            NodeError::InvalidSideProtocol(what) => ["invalid input: ", what, ""],
            NodeError::AddressMismatch => {
                ["recovered address differs from the expected one", "", ""]
            }
            NodeError::InvalidConfig(field) => ["invalid configuration: ", field, ""],
            NodeError::InvalidReplayState(what) => ["invalid replay state: ", what, ""],
        }
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.sentence()
            .iter()
            .try_for_each(|part| f.write_str(part))
    }
}

#[cfg(feature = "std")]
impl std::error::Error for NodeError {}

/// Why the [`Client`](super::Client) refused an input, a call or its configuration.
///
/// ```
/// use sealwire::session::ClientError;
/// assert!(ClientError::NotReady.to_string().contains("ready"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// The frame exceeds `max_frame_len`.
    FrameTooLarge,
    /// The frame is not a JSON object with a string `type`, or a field has the wrong type.
    Malformed(&'static str),
    /// A chunk or response failed to decrypt; the answer is failed.
    DecryptionFailed,
    /// A chunk carried an unexpected AAD or index (reordered, dropped or reflected).
    OutOfOrder,
    /// A chunk's plaintext is not UTF-8 (the node split a character).
    InvalidUtf8,
    /// The answer grew beyond `max_answer_len`.
    AnswerTooLarge,
    /// No session, or the session is not ready for this call.
    NotReady,
    /// A parameter cannot be encoded (e.g. a non-decimal id, a non-finite temperature).
    InvalidParameter(&'static str),
    /// The transmit queue holds `queue_capacity` frames: drain it before calling again.
    Capacity,
    /// The session key received [`ClientConfig::max_frames_per_key`](super::ClientConfig)
    /// sealed frames: start a new session (a fresh key) for more.
    KeyExhausted,
    /// [`Client::new`](super::Client::new) was given a configuration it cannot run with; the
    /// text names the field.
    InvalidConfig(&'static str),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::FrameTooLarge => f.write_str("frame exceeds the size limit"),
            ClientError::Malformed(what) => write!(f, "malformed frame: {what}"),
            ClientError::DecryptionFailed => f.write_str("answer chunk failed to decrypt"),
            ClientError::OutOfOrder => f.write_str("answer chunk out of order"),
            ClientError::InvalidUtf8 => f.write_str("answer chunk is not valid UTF-8"),
            ClientError::AnswerTooLarge => f.write_str("answer exceeds the size limit"),
            ClientError::NotReady => f.write_str("session is not ready"),
            ClientError::InvalidParameter(what) => write!(f, "invalid parameter: {what}"),
            ClientError::Capacity => f.write_str("transmit queue is full"),
            ClientError::KeyExhausted => {
                f.write_str("the session key received its limit of frames: start a new session")
            }
            ClientError::InvalidConfig(field) => write!(f, "invalid configuration: {field}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ClientError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_table_is_in_declaration_order_and_round_trips() {
        for (i, (code, wire)) in CODES.iter().enumerate() {
            assert_eq!(code.index(), i, "{wire} is out of order");
            assert_eq!(code.as_str(), *wire);
            assert_eq!(ErrorCode::from_wire(wire), Some(*code));
        }
        assert_eq!(ErrorCode::all().count(), ErrorCode::COUNT);
        assert_eq!(ErrorCode::from_wire("NOPE"), None);
    }
}
