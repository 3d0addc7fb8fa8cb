//! Why the relay refused one uplink message or ended a stream. Each variant's `Display` is the
//! short reason the relay sends back (never frame contents), and [`RelayError::code`] the
//! status code that goes with it on the wire.

use core::fmt;

/// What the relay refused, and why.
///
/// ```
/// use sealwire::chat::relay::RelayError;
/// assert_eq!(RelayError::MailboxFull.to_string(), "the peer's mailbox is full");
/// assert_eq!(RelayError::MailboxFull.code(), 8); // RESOURCE_EXHAUSTED
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayError {
    // -- registration (each ends the stream)
    /// A stream's first message was not `Register` (or `Proof` came before it).
    NotRegistered,
    /// The identity is not 32 bytes.
    IdentityLength,
    /// The identity is not an Ed25519 public key.
    NotAKey,
    /// The display name is longer than 64 bytes or holds control characters.
    AppId,
    /// Something other than `Proof` followed the challenge.
    ExpectedProof,
    /// The proof is not 64 bytes.
    SignatureLength,
    /// The proof does not verify: the app does not hold the identity's key.
    BadSignature,
    /// The stream did not finish registering within `register_timeout`.
    RegistrationTimeout,
    /// A newer stream registered the same identity; this one ends.
    Replaced,
    // -- one uplink message of a registered stream (the stream goes on)
    /// `Register` or `Proof` again.
    AlreadyRegistered,
    /// The chat id is not 16 bytes.
    ChatIdLength,
    /// The pin is neither empty nor 32 bytes.
    PinLength,
    /// Not a well-formed chat frame (version, kind, sizes: the keyless header checks).
    Malformed,
    /// A frame of a chat this stream has not started.
    NotStarted,
    /// The chat no longer exists (it expired).
    NoSuchChat,
    /// The chat's other participant is not the identity this app pinned.
    PinMismatch,
    /// The chat already has its two participants.
    ChatFull,
    /// The chat's participant pinned another identity as its peer: nobody else takes the seat.
    SeatReserved,
    // -- bounds
    /// The relay serves its maximum of streams.
    TooManyStreams,
    /// The relay knows its maximum of identities and none is idle.
    TooManyApps,
    /// The relay holds its maximum of chats.
    TooManyChats,
    /// This stream has started its maximum of chats.
    TooManyChatsOnStream,
    /// The frame is larger than a data frame with the largest accepted message.
    FrameTooLarge,
    /// Too many handshake initiations in this chat within the throttle period.
    HandshakesThrottled,
    /// The relay's queues hold their maximum of bytes.
    QueuesFull,
    /// Too many frames wait for a participant that has not joined yet.
    PendingFull,
    /// The recipient's mailbox is full.
    MailboxFull,
    /// The embedder's own rate limit refused the message ([`Relay::refuse_uplink`]).
    ///
    /// [`Relay::refuse_uplink`]: super::Relay::refuse_uplink
    RateLimited,
    /// The machine's transmit or event queue has no room: drain them first. Nothing changed.
    Capacity,
    // -- misuse
    /// The stream is unknown or has ended.
    UnknownStream,
    /// The configuration is unusable; names the field.
    InvalidConfig(&'static str),
}

impl RelayError {
    /// The status code that goes with the error on the wire (google.rpc.Code numbering, as
    /// gRPC uses): 3 invalid argument, 4 deadline exceeded, 5 not found, 7 permission denied,
    /// 8 resource exhausted, 10 aborted, 16 unauthenticated, 9 failed precondition (misuse).
    pub const fn code(self) -> i32 {
        use RelayError::*;
        match self {
            NotRegistered | IdentityLength | NotAKey | AppId | AlreadyRegistered | ChatIdLength
            | PinLength | Malformed => 3,
            RegistrationTimeout => 4,
            NotStarted | NoSuchChat => 5,
            PinMismatch | ChatFull | SeatReserved => 7,
            TooManyStreams | TooManyApps | TooManyChats | TooManyChatsOnStream | FrameTooLarge
            | HandshakesThrottled | QueuesFull | PendingFull | MailboxFull | RateLimited
            | Capacity => 8,
            UnknownStream | InvalidConfig(_) => 9,
            Replaced => 10,
            ExpectedProof | SignatureLength | BadSignature => 16,
        }
    }
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RelayError::*;
        let text = match self {
            NotRegistered => "the first message must be `register`",
            IdentityLength => "identity must be 32 bytes",
            NotAKey => "identity is not an Ed25519 public key",
            AppId => "app_id must be at most 64 bytes without control characters",
            ExpectedProof => "expected `proof` after the challenge",
            SignatureLength => "signature must be 64 bytes",
            BadSignature => "registration signature does not verify",
            RegistrationTimeout => "registration took too long",
            Replaced => "a newer stream registered this identity",
            AlreadyRegistered => "already registered",
            ChatIdLength => "chat_id must be 16 bytes",
            PinLength => "peer_identity must be empty or 32 bytes",
            Malformed => "not a well-formed chat frame",
            NotStarted => "no such chat on this stream",
            NoSuchChat => "no such chat",
            PinMismatch => "the chat's other participant is not the pinned identity",
            ChatFull => "the chat already has two other participants",
            SeatReserved => "the chat's participant expects another identity",
            TooManyStreams => "the node serves its maximum of streams",
            TooManyApps => "the node serves its maximum of apps",
            TooManyChats => "the node holds its maximum of chats",
            TooManyChatsOnStream => "this stream has started its maximum of chats",
            FrameTooLarge => "frame larger than the node accepts",
            HandshakesThrottled => "too many handshakes for this chat",
            RateLimited => "rate limited: slow down",
            QueuesFull => "the node's queues are full",
            PendingFull => "too many frames held for a participant that has not joined",
            MailboxFull => "the peer's mailbox is full",
            Capacity => "the relay's output queues are full",
            UnknownStream => "no such stream",
            InvalidConfig(field) => {
                return write!(f, "the relay configuration is invalid: {field}")
            }
        };
        f.write_str(text)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for RelayError {}
