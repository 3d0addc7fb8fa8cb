//! # chat::relay — the keyless relay between chat apps
//!
//! Two apps talk through a relay that never holds a chat key: it reads only the clear 30-byte
//! frame header ([`FrameHeader::parse_checked`]) to route a frame by its chat id, drop garbage
//! and throttle handshakes. [`Relay`] is that protocol as a sans-IO machine; a transport (the
//! gRPC node of the examples) gives it one stream per app connection:
//!
//! ```text
//!   app                                     relay
//!    | Register {identity, app_id, acks} ->  |
//!    |  <- Challenge {nonce}                 |   32 fresh random bytes
//!    | Proof {Ed25519 signature}         ->  |   over "sealwire/chat-relay/1 register" ‖ nonce ‖ identity
//!    |  <- Registered {queued_frames}        |   the frames that waited for this identity follow
//!    | Start {chat_id, peer pin}         ->  |   become a participant of the chat
//!    |  <- Started {peer, peer_app_id}       |
//!    | Frame {chat frame}                ->  |   routed to the chat's other participant
//!    |  <- frame                             |   from the app's mailbox (poll_frame)
//!    | Ack {frames}                      ->  |   with `acks`: the first `frames` are kept
//!    |  <- Stored {uplink_index}             |   a frame accepted (queued or forwarded)
//!    |  <- Rejected {error, uplink_index}    |   one message refused; the stream goes on
//!    |  <- End(error)                        |   the stream is unusable and ends
//! ```
//!
//! ## Rules
//! * **Registration.** A stream must register within `register_timeout` by signing a fresh
//!   challenge with the identity key ([`prove_registration`]); anything else ends it. Why: a
//!   mailbox belongs to an identity, so only its key holder may read it. A second registration
//!   of an identity replaces the first stream ([`RelayError::Replaced`]).
//! * **Membership.** A chat's participants are the first two identities that start it, and
//!   stay bound to it: a third is refused ([`RelayError::ChatFull`]), and a participant that
//!   pinned its peer reserves the second seat for exactly that identity
//!   ([`RelayError::SeatReserved`]), so a stranger who learns a chat id cannot squat it. A
//!   stream may send frames only in chats it started, and a frame goes only to the other
//!   participant's mailbox, never to anyone else.
//! * **Mailboxes and budgets.** Frames wait in the recipient's mailbox (at most
//!   `mailbox_frames`) while it is offline, or in the chat (at most `pending_frames`) while
//!   the second participant has not joined; all of them together hold at most
//!   `max_queued_bytes`. Over a bound the sender is refused; nothing grows. Each mailbox is
//!   first in, first out, so every sender's frames arrive in the order the relay accepted them.
//!   An app that registers with `acks` keeps each delivered frame in its mailbox until it
//!   acknowledges it, and gets the unacknowledged ones again on its next stream (in a mesh,
//!   the node that forwarded a frame also keeps it until then: see [`Delivered`]).
//! * **Handshake throttle.** At most `max_handshakes` handshake initiations per chat per
//!   `handshake_period` (the apps throttle rekeys too; this stops a flood earlier).
//! * **Expiry.** A chat without a frame or a start for `chat_idle_timeout` expires: its
//!   membership, held frames and queued frames are wiped and counted
//!   ([`RelayEvent::ChatExpired`]); its id is free again.
//!
//! ## Driving it
//! Per stream: [`Relay::connect`], then [`Relay::handle_uplink`] for every message, and
//! [`Relay::disconnect`] when it closes. After each call drain [`Relay::poll_transmit`] (each
//! [`Transmit`] names its stream) and [`Relay::poll_event`]; on
//! [`RelayEvent::FramesWaiting`] take frames with [`Relay::poll_frame`] while that stream has
//! room, so a slow reader's frames stay in its bounded mailbox instead of a socket buffer.
//! Sleep until [`Relay::poll_timeout`] and call [`Relay::handle_timeout`].
//!
//! Membership ([`Relay::members`]) and routing are the machine's own operations. A relay that
//! is one node of a mesh ([`RelayConfig::mesh`]) also drains [`Relay::poll_forward`] and
//! [`Relay::poll_delivered`] for the other nodes, hands what they publish to
//! [`Relay::handle_forwarded`], [`Relay::handle_remote_join`] and
//! [`Relay::handle_remote_delivered`], and calls [`Relay::republish_waiting`] on a period.
//!
//! ```
//! use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
//! use sealwire::chat::relay::{prove_registration, Downlink, Relay, RelayConfig, Uplink};
//! use sealwire::chat::{ChatId, FrameHeader, FrameKind, MSG1_BODY_LEN};
//! use sealwire::crypto::ed25519::IdentityKey;
//! use sealwire::time::Instant;
//!
//! let mut relay = Relay::new(RelayConfig::default(), ChaCha20Rng::from_seed([0; 32]))?;
//! let now = Instant::ZERO;
//! let chat = ChatId::new([7; 16]);
//! let mut join = |relay: &mut Relay<_>, key: &IdentityKey| {
//!     let conn = relay.connect(now).unwrap();
//!     let identity = key.public().as_bytes().to_vec();
//!     relay.handle_uplink(now, conn, Uplink::Register { identity, app_id: "app".into(), acks: false }).unwrap();
//!     let Some(Downlink::Challenge { nonce }) = relay.poll_transmit().map(|t| t.message) else {
//!         panic!("a challenge")
//!     };
//!     let signature = prove_registration(key, &nonce).to_vec();
//!     relay.handle_uplink(now, conn, Uplink::Proof { signature }).unwrap();
//!     let start = Uplink::Start { chat_id: chat.as_bytes().to_vec(), peer_identity: vec![] };
//!     relay.handle_uplink(now, conn, start).unwrap();
//!     while relay.poll_transmit().is_some() {} // Registered, Started
//!     conn
//! };
//! let alice = join(&mut relay, &IdentityKey::from_seed([1; 32]));
//! let bob = join(&mut relay, &IdentityKey::from_seed([2; 32]));
//! let mut frame = FrameHeader { kind: FrameKind::HandshakeInit, chat_id: chat, epoch: 0, counter: 0 }
//!     .encode().to_vec();
//! frame.extend_from_slice(&[0x42; MSG1_BODY_LEN]);
//! relay.handle_uplink(now, alice, Uplink::Frame(frame.clone()))?;
//! assert_eq!(relay.poll_frame(bob), Some(frame));
//! assert_eq!(relay.poll_frame(alice), None);
//! # Ok::<(), sealwire::chat::relay::RelayError>(())
//! ```

mod acks;
mod apps;
mod chats;
mod config;
mod error;
mod event;
mod mesh;
mod policy;
mod streams;
mod wire;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::crypto::ed25519::IdentityPublic;
use crate::queue::Outbox;
use crate::time::Instant;

use super::wire::{data_frame_len, ChatId, FrameHeader, FrameKind};
use apps::Apps;
use chats::{ChatEntry, Chats};
use streams::{Challenge, Streams};

pub use acks::Delivered;
pub use config::RelayConfig;
pub use error::RelayError;
pub use event::{RelayEvent, RelayStats};
pub use mesh::Forward;
pub use wire::{
    prove_registration, registration_message, ConnId, Downlink, Transmit, Uplink, REGISTER_CONTEXT,
    REGISTRATION_MESSAGE_LEN,
};

#[derive(Clone, Default)]
struct Counters {
    registrations: u64,
    frames_routed: u64,
    frames_delivered: u64,
    uplinks_refused: u64,
    frames_dropped: u64,
    chats_expired: u64,
    frames_forwarded: u64,
    forwarded_in: u64,
    forwarded_refused: u64,
}

/// The relay machine: registration, membership, mailboxes and budgets, handshake throttle and
/// idle expiry for many apps and chats. See the [module documentation](self).
///
/// It holds no secret, so it is `Clone` (with a `Clone` RNG): a fuzzer or a simulation can
/// build a state once and explore from copies of it.
#[derive(Clone)]
pub struct Relay<R> {
    config: RelayConfig,
    rng: R,
    streams: Streams,
    apps: Apps,
    chats: Chats,
    queued_frames: usize,
    queued_bytes: usize,
    transmit: Outbox<Transmit>,
    events: Outbox<RelayEvent>,
    /// Frames for other nodes of a mesh (only with `config.mesh`).
    forward: Outbox<Forward>,
    /// Frames apps here have for good, for the other nodes (only with `config.mesh`).
    delivered: alloc::collections::VecDeque<Delivered>,
    counters: Counters,
}

impl<R> fmt::Debug for Relay<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("streams", &self.streams.len())
            .field("apps", &self.apps.len())
            .field("chats", &self.chats.len())
            .field("queued_bytes", &self.queued_bytes)
            .field("transmits_waiting", &self.transmit.len())
            .finish_non_exhaustive()
    }
}

impl<R: rand_core::CryptoRng> Relay<R> {
    /// A relay with `config` (checked: [`RelayError::InvalidConfig`] names a bad field) and
    /// the RNG its challenges come from. It holds no key.
    pub fn new(config: RelayConfig, rng: R) -> Result<Self, RelayError> {
        config.validate()?;
        Ok(Relay {
            apps: Apps::new(config.max_apps, config.mailbox_frames),
            chats: Chats::new(
                config.max_chats,
                config.chat_idle_timeout,
                config.max_handshakes,
                config.handshake_period,
            ),
            streams: Streams::new(config.max_streams, config.register_timeout),
            transmit: Outbox::new(config.queue_capacity),
            events: Outbox::new(config.queue_capacity),
            forward: Outbox::new(config.queue_capacity),
            delivered: alloc::collections::VecDeque::new(),
            config,
            rng,
            queued_frames: 0,
            queued_bytes: 0,
            counters: Counters::default(),
        })
    }

    // ---------------------------------------------------------------- streams

    /// A new stream; it must register within `register_timeout`. Refused with
    /// [`RelayError::TooManyStreams`] at `max_streams`.
    pub fn connect(&mut self, now: Instant) -> Result<ConnId, RelayError> {
        self.streams.open(now)
    }

    /// Handles one message of `conn`. A refused message is answered on the stream (a
    /// [`Downlink::Rejected`] once registered; before that, [`Downlink::End`]) and its error
    /// returned for the embedder's logs. [`RelayError::Capacity`] (the output queues are full)
    /// and [`RelayError::UnknownStream`] change nothing and send nothing.
    pub fn handle_uplink(
        &mut self,
        now: Instant,
        conn: ConnId,
        uplink: Uplink,
    ) -> Result<(), RelayError> {
        if !self.transmit.has_room(2) || !self.events.has_room(3) || !self.forward.has_room(1) {
            return Err(RelayError::Capacity);
        }
        let (index, registered) = self.streams.uplink(conn)?;
        let result = match uplink {
            Uplink::Register {
                identity,
                app_id,
                acks,
            } => self.on_register(conn, &identity, app_id, acks),
            Uplink::Proof { signature } => self.on_proof(conn, &signature),
            Uplink::Start {
                chat_id,
                peer_identity,
            } => self.on_start(now, conn, &chat_id, &peer_identity),
            Uplink::Frame(frame) => self.on_frame(now, conn, frame).map(|()| {
                let message = Downlink::Stored {
                    uplink_index: index,
                };
                self.transmit.push(Transmit { to: conn, message });
            }),
            Uplink::Ack { frames } => self.on_ack(conn, frames),
        };
        if let Err(error) = result {
            self.answer_refusal(conn, index, registered, error);
        }
        result
    }

    /// The transport closed `conn` (or the app went away). Its identity's mailbox stays;
    /// messages still queued for the stream are dropped.
    pub fn disconnect(&mut self, conn: ConnId) {
        self.transmit.retain(|t| t.to != conn);
        if let Some(identity) = self.streams.remove(conn) {
            self.detach(conn, identity);
        }
    }

    // ---------------------------------------------------------------- outputs

    /// The next message for one of the streams.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmit.pop()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop()
    }

    /// Delivers to the app on `conn`: the oldest frame of its mailbox, which leaves the relay
    /// now, or when the app acknowledges it if it registered with `acks` (see
    /// [`Uplink::Ack`]). Call it when that stream has room for one more frame (after
    /// [`RelayEvent::FramesWaiting`], until `None`).
    pub fn poll_frame(&mut self, conn: ConnId) -> Option<Vec<u8>> {
        let identity = self.streams.identity(conn).ok()?;
        let (frame, kept) = self.apps.dequeue(&identity, conn)?;
        if !kept {
            self.left(identity, &frame);
        }
        self.counters.frames_delivered = self.counters.frames_delivered.saturating_add(1);
        Some(frame)
    }

    /// The next instant at which [`Relay::handle_timeout`] has work: a registration deadline
    /// or an idle chat's expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.streams.next_deadline(), self.chats.next_expiry()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Ends the streams that did not register in time and expires idle chats. Work whose
    /// outputs do not fit the queues waits for the next call (`poll_timeout` then returns a
    /// time already reached).
    ///
    /// ```
    /// # use sealwire::chat::relay::{Downlink, Relay, RelayConfig, RelayError};
    /// # use sealwire::time::{Duration, Instant};
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// let mut relay = Relay::new(RelayConfig::default(), ChaCha20Rng::from_seed([0; 32])).unwrap();
    /// let conn = relay.connect(Instant::ZERO).unwrap(); // and it never registers
    /// let due = relay.poll_timeout().unwrap();
    /// assert_eq!(due, Instant::ZERO + Duration::from_secs(10));
    /// relay.handle_timeout(due);
    /// let t = relay.poll_transmit().unwrap();
    /// assert_eq!((t.to, t.message), (conn, Downlink::End(RelayError::RegistrationTimeout)));
    /// ```
    pub fn handle_timeout(&mut self, now: Instant) {
        while self.transmit.has_room(1) && self.events.has_room(1) {
            let Some(conn) = self.streams.overdue(now) else {
                break;
            };
            self.end(conn, RelayError::RegistrationTimeout);
        }
        while self.events.has_room(1) {
            let Some((chat_id, chat)) = self.chats.expire_one(now) else {
                break;
            };
            self.wipe(chat_id, chat);
        }
    }

    // ---------------------------------------------------------------- queries

    /// The participants of `chat_id` (none if the relay does not hold it), first come first.
    ///
    /// ```
    /// # use sealwire::chat::{relay::{Relay, RelayConfig}, ChatId};
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// let relay = Relay::new(RelayConfig::default(), ChaCha20Rng::from_seed([0; 32])).unwrap();
    /// assert_eq!(relay.members(&ChatId::new([1; 16])).count(), 0);
    /// ```
    pub fn members(&self, chat_id: &ChatId) -> impl Iterator<Item = IdentityPublic> + '_ {
        self.chats
            .get(chat_id)
            .into_iter()
            .flat_map(ChatEntry::members)
    }

    /// The identity registered on `conn`, once proven.
    pub fn identity(&self, conn: ConnId) -> Option<IdentityPublic> {
        self.streams.identity(conn).ok()
    }

    /// Counters and gauges.
    pub fn stats(&self) -> RelayStats {
        let c = &self.counters;
        RelayStats {
            streams: self.streams.len(),
            apps: self.apps.len(),
            chats: self.chats.len(),
            queued_frames: self.queued_frames,
            queued_bytes: self.queued_bytes,
            registrations: c.registrations,
            frames_routed: c.frames_routed,
            frames_delivered: c.frames_delivered,
            uplinks_refused: c.uplinks_refused,
            frames_dropped: c.frames_dropped,
            chats_expired: c.chats_expired,
            frames_forwarded: c.frames_forwarded,
            forwarded_in: c.forwarded_in,
            forwarded_refused: c.forwarded_refused,
            transmits_dropped: self.transmit.dropped(),
            events_dropped: self.events.dropped(),
        }
    }

    // ---------------------------------------------------------------- registration

    fn on_register(
        &mut self,
        conn: ConnId,
        identity: &[u8],
        app_id: String,
        acks: bool,
    ) -> Result<(), RelayError> {
        let challenge = self.streams.challenge_slot(conn)?;
        let identity: [u8; 32] = identity
            .try_into()
            .map_err(|_| RelayError::IdentityLength)?;
        let identity = IdentityPublic::from_bytes(identity).ok_or(RelayError::NotAKey)?;
        if app_id.len() > 64 || app_id.chars().any(char::is_control) {
            return Err(RelayError::AppId);
        }
        let nonce = crate::crypto::random_array::<32, _>(&mut self.rng);
        *challenge = Some(Challenge {
            identity,
            app_id,
            nonce,
            acks,
        });
        let message = Downlink::Challenge { nonce };
        self.transmit.push(Transmit { to: conn, message });
        Ok(())
    }

    fn on_proof(&mut self, conn: ConnId, signature: &[u8]) -> Result<(), RelayError> {
        let challenge = self.streams.challenge(conn)?;
        let signature: [u8; 64] = signature
            .try_into()
            .map_err(|_| RelayError::SignatureLength)?;
        let identity = challenge.identity;
        let signed = registration_message(&challenge.nonce, &identity);
        if !identity.verify(&signed, &signature) {
            return Err(RelayError::BadSignature);
        }
        let (app_id, acks) = (challenge.app_id.clone(), challenge.acks);
        let app = self.apps.entry(identity)?;
        app.app_id.clone_from(&app_id);
        let replaced = app.attach(conn, acks);
        let queued_frames = app.queued();
        self.streams.promote(conn, identity);
        if let Some(old) = replaced.filter(|old| *old != conn) {
            self.end(old, RelayError::Replaced);
        }
        self.counters.registrations = self.counters.registrations.saturating_add(1);
        let message = Downlink::Registered {
            queued_frames: u32::try_from(queued_frames).unwrap_or(u32::MAX),
        };
        self.transmit.push(Transmit { to: conn, message });
        self.events.push(RelayEvent::AppRegistered {
            conn,
            identity,
            app_id,
            queued_frames,
        });
        if queued_frames > 0 {
            self.events.push(RelayEvent::FramesWaiting { conn });
        }
        Ok(())
    }

    /// Ends `conn` with `error`: the relay takes no more input from it.
    fn end(&mut self, conn: ConnId, error: RelayError) {
        match self.streams.end(conn) {
            None => return,
            Some(Some(identity)) => self.detach(conn, identity),
            Some(None) => {}
        }
        let message = Downlink::End(error);
        self.transmit.push(Transmit { to: conn, message });
    }

    /// `identity`'s stream `conn` is gone: the app is offline unless a newer stream took over.
    fn detach(&mut self, conn: ConnId, identity: IdentityPublic) {
        if let Some(app) = self.apps.get_mut(&identity) {
            if app.live == Some(conn) {
                app.live = None;
            }
        }
        self.events
            .push(RelayEvent::AppDisconnected { conn, identity });
    }

    // ---------------------------------------------------------------- chats and frames

    fn on_start(
        &mut self,
        now: Instant,
        conn: ConnId,
        chat_id: &[u8],
        pin: &[u8],
    ) -> Result<(), RelayError> {
        let identity = self.streams.identity(conn)?;
        let chat_id: [u8; 16] = chat_id.try_into().map_err(|_| RelayError::ChatIdLength)?;
        let chat_id = ChatId::new(chat_id);
        let pin: Option<[u8; 32]> = match pin {
            [] => None,
            pin => Some(pin.try_into().map_err(|_| RelayError::PinLength)?),
        };
        let max = self.config.max_chats_per_stream;
        let started = self
            .streams
            .started(conn)
            .ok_or(RelayError::UnknownStream)?;
        if !started.contains(&chat_id) && started.len() >= max {
            return Err(RelayError::TooManyChatsOnStream);
        }
        let joined = self.chats.start(now, chat_id, identity, pin)?;
        if let Some(started) = self.streams.started(conn) {
            started.insert(chat_id);
        }
        if joined.new {
            self.events
                .push(RelayEvent::ChatJoined { chat_id, identity });
            // Frames sent before we joined were meant for us.
            for frame in joined.held {
                let len = frame.len();
                match self.apps.enqueue(identity, frame) {
                    Ok(Some(wake)) => {
                        self.events.push(RelayEvent::FramesWaiting { conn: wake });
                    }
                    Ok(None) => {}
                    Err(_) => {
                        self.release(1, len);
                        self.counters.frames_dropped =
                            self.counters.frames_dropped.saturating_add(1);
                    }
                }
            }
        }
        let peer_app_id = joined
            .peer
            .and_then(|p| self.apps.get(&p))
            .map(|a| a.app_id.clone())
            .unwrap_or_default();
        let message = Downlink::Started {
            chat_id,
            peer_identity: joined.peer,
            peer_app_id,
        };
        self.transmit.push(Transmit { to: conn, message });
        Ok(())
    }

    fn on_frame(&mut self, now: Instant, conn: ConnId, frame: Vec<u8>) -> Result<(), RelayError> {
        let sender = self.streams.identity(conn)?;
        let max_message = self.config.max_message_len;
        if frame.len() > data_frame_len(max_message) {
            return Err(RelayError::FrameTooLarge);
        }
        // The keyless checks: version, kind, exact handshake sizes, data size.
        let (header, _) =
            FrameHeader::parse_checked(&frame, max_message).map_err(|_| RelayError::Malformed)?;
        let chat_id = header.chat_id;
        if !self
            .streams
            .started(conn)
            .is_some_and(|started| started.contains(&chat_id))
        {
            return Err(RelayError::NotStarted);
        }
        let to = self.chats.route(
            now,
            &chat_id,
            &sender,
            header.kind == FrameKind::HandshakeInit,
        )?;
        // The peer may yet join here or announce itself from another node.
        if self.is_remote(to) && !self.copy_has_room(&chat_id, frame.len()) {
            return Err(RelayError::QueuesFull);
        }
        let held = self.config.mesh && to.is_none() && self.keep_for_joiner(&chat_id, &frame);
        if self.is_remote(to) {
            // A mesh node: the recipient is not here; the frame leaves through the mesh (and
            // a copy stays to publish again when the peer (re)joins, unless held already).
            self.chats.touch(&chat_id, now);
            if !held {
                self.remember_forwarded(&chat_id, sender, &frame);
            }
            self.forward_frame(chat_id, sender, frame);
            return Ok(());
        }
        let len = frame.len();
        if self.queued_bytes.saturating_add(len) > self.config.max_queued_bytes {
            return Err(RelayError::QueuesFull);
        }
        match to {
            // The other participant has not joined yet: hold the frame for it.
            None => self
                .chats
                .hold(&chat_id, frame, self.config.pending_frames)?,
            Some(peer) => {
                if let Some(wake) = self.apps.enqueue(peer, frame)? {
                    self.events.push(RelayEvent::FramesWaiting { conn: wake });
                }
            }
        }
        self.queued_frames = self.queued_frames.saturating_add(1);
        self.queued_bytes = self.queued_bytes.saturating_add(len);
        self.chats.touch(&chat_id, now);
        self.counters.frames_routed = self.counters.frames_routed.saturating_add(1);
        Ok(())
    }
}
