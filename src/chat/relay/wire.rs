//! The relay protocol's messages, transport-neutral: what an app sends on its stream
//! ([`Uplink`]), what the relay answers ([`Downlink`], addressed by a [`Transmit`]), and the
//! registration proof both sides compute. A transport (the gRPC example, a future mesh) only
//! converts these to and from its own encoding; every check lives in the
//! [`Relay`](super::Relay) machine.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::crypto::ed25519::{IdentityKey, IdentityPublic, SIGNATURE_LEN};

use super::super::wire::ChatId;
use super::error::RelayError;

/// Domain separation of the registration proof: the app signs
/// `REGISTER_CONTEXT ‖ nonce (32) ‖ identity (32)` with its identity key.
pub const REGISTER_CONTEXT: &[u8] = b"sealwire/chat-relay/1 register";

/// Length of the message an app signs to register (see [`registration_message`]).
pub const REGISTRATION_MESSAGE_LEN: usize = 30 + 32 + 32;

/// The bytes an app signs to prove it holds `identity`'s key, for the relay's `nonce`.
///
/// ```
/// use sealwire::chat::relay::{registration_message, REGISTER_CONTEXT};
/// use sealwire::crypto::ed25519::IdentityKey;
/// let id = IdentityKey::from_seed([1; 32]).public();
/// let m = registration_message(&[9; 32], &id);
/// assert!(m.starts_with(REGISTER_CONTEXT));
/// assert_eq!(&m[62..], id.as_bytes());
/// ```
pub fn registration_message(
    nonce: &[u8; 32],
    identity: &IdentityPublic,
) -> [u8; REGISTRATION_MESSAGE_LEN] {
    let mut m = [0u8; REGISTRATION_MESSAGE_LEN];
    let (context, rest) = m.split_at_mut(REGISTER_CONTEXT.len());
    context.copy_from_slice(REGISTER_CONTEXT);
    let (n, id) = rest.split_at_mut(32);
    n.copy_from_slice(nonce);
    id.copy_from_slice(identity.as_bytes());
    m
}

/// The app's answer to a [`Downlink::Challenge`]: its signature over
/// [`registration_message`].
///
/// ```
/// use sealwire::chat::relay::{prove_registration, registration_message};
/// use sealwire::crypto::ed25519::IdentityKey;
/// let key = IdentityKey::from_seed([1; 32]);
/// let sig = prove_registration(&key, &[9; 32]);
/// assert!(key.public().verify(&registration_message(&[9; 32], &key.public()), &sig));
/// ```
pub fn prove_registration(identity: &IdentityKey, nonce: &[u8; 32]) -> [u8; SIGNATURE_LEN] {
    identity.sign(&registration_message(nonce, &identity.public()))
}

/// One stream between the relay and an app, numbered by the relay
/// ([`Relay::connect`](super::Relay::connect)).
///
/// ```
/// # use sealwire::chat::relay::{Relay, RelayConfig};
/// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
/// let mut relay = Relay::new(RelayConfig::default(), ChaCha20Rng::from_seed([0; 32])).unwrap();
/// let (a, b) = (relay.connect(sealwire::time::Instant::ZERO).unwrap(),
///               relay.connect(sealwire::time::Instant::ZERO).unwrap());
/// assert_ne!(a, b);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub(super) u64);

impl ConnId {
    /// The number, for logs.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A message from an app, as its transport received it. Fields are the bytes on the wire; the
/// relay checks them (sizes, key encodings), so a transport needs no rules of its own.
///
/// ```
/// use sealwire::chat::relay::Uplink;
/// let up = Uplink::Frame(vec![0u8; 46]);
/// assert_eq!(format!("{up:?}"), "Frame(46 bytes)");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Uplink {
    /// First message of a stream: the app's Ed25519 identity (32 bytes) and a display name
    /// (at most 64 bytes, no control characters; not authenticated).
    Register {
        /// The identity public key.
        identity: Vec<u8>,
        /// The display name.
        app_id: String,
        /// The app acknowledges the frames it kept ([`Uplink::Ack`]): the relay keeps each
        /// delivered frame until then and delivers it again on the app's next stream. Without
        /// it a frame leaves the relay when it is delivered.
        acks: bool,
    },
    /// The answer to the challenge: a signature (64 bytes) over [`registration_message`].
    Proof {
        /// The signature.
        signature: Vec<u8>,
    },
    /// Join a chat (16-byte id), optionally pinning the other participant (empty or 32 bytes).
    Start {
        /// The chat id.
        chat_id: Vec<u8>,
        /// The pin, or empty.
        peer_identity: Vec<u8>,
    },
    /// One chat frame, routed by the chat id in its header.
    Frame(Vec<u8>),
    /// The app kept (sealed in its state) the first `frames` frames delivered on this stream,
    /// counted from 1; the count only grows. Only on a stream registered with `acks`.
    Ack {
        /// Frames kept so far on this stream.
        frames: u64,
    },
}

impl fmt::Debug for Uplink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uplink::Register { app_id, .. } => write!(f, "Register({app_id:?})"),
            Uplink::Proof { .. } => f.write_str("Proof"),
            Uplink::Start { .. } => f.write_str("Start"),
            Uplink::Frame(frame) => write!(f, "Frame({} bytes)", frame.len()),
            Uplink::Ack { frames } => write!(f, "Ack({frames})"),
        }
    }
}

/// A message of the relay to one app's stream (see [`Transmit`]). Chat frames are not among
/// them: a frame waits in its recipient's mailbox until the embedder takes it with
/// [`Relay::poll_frame`](super::Relay::poll_frame), when that stream has room.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Downlink {
    /// 32 random bytes the app signs to register.
    Challenge {
        /// The nonce.
        nonce: [u8; 32],
    },
    /// The app is registered; this many frames wait for it (deliver them next).
    Registered {
        /// Frames in its mailbox.
        queued_frames: u32,
    },
    /// The answer to a `Start`: the app is a participant of the chat.
    Started {
        /// The chat.
        chat_id: ChatId,
        /// The other participant, once it has started the chat.
        peer_identity: Option<IdentityPublic>,
        /// Its display name, if known (empty otherwise).
        peer_app_id: String,
    },
    /// A frame of this stream was accepted: it is queued in its recipient's mailbox (or the
    /// pending list of a chat whose second participant has not joined yet), or handed to
    /// [`Relay::poll_forward`](super::Relay::poll_forward) in a mesh. Every frame a registered
    /// stream sends gets exactly one answer, this or [`Downlink::Rejected`], so an app keeps
    /// a frame until one of them arrives and sends it again on another stream otherwise.
    Stored {
        /// Index of the frame on its stream (`Register` is 0).
        uplink_index: u64,
    },
    /// One uplink message was refused; the stream goes on.
    Rejected {
        /// Why (its [`RelayError::code`] and text go on the wire).
        error: RelayError,
        /// Index of the refused message on its stream (`Register` is 0).
        uplink_index: u64,
    },
    /// The stream is unusable and ends with this error: close it. The relay takes no more
    /// input from it; call [`Relay::disconnect`](super::Relay::disconnect) once it is closed.
    End(RelayError),
}

/// A [`Downlink`] message and the stream it goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The app's stream.
    pub to: ConnId,
    /// The message.
    pub message: Downlink,
}
