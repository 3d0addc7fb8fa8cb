//! The relay's streams: each one's stage (registering until its deadline, with the challenge
//! once sent; registered as a proven identity, with the chats it started; or ended and waiting
//! for the transport to close it), the count of its uplink messages, and the registration
//! deadlines in order.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;

use crate::crypto::ed25519::IdentityPublic;
use crate::time::{Duration, Instant};

use super::super::wire::ChatId;
use super::error::RelayError;
use super::wire::ConnId;

/// The challenge sent to a registering stream, and what it claimed.
#[derive(Clone)]
pub(super) struct Challenge {
    pub(super) identity: IdentityPublic,
    pub(super) app_id: String,
    pub(super) nonce: [u8; 32],
    pub(super) acks: bool,
}

#[derive(Clone)]
enum Stage {
    Registering {
        deadline: Instant,
        challenge: Option<Challenge>,
    },
    /// `chats`: the chats it started, the only ones it may send to.
    Registered {
        identity: IdentityPublic,
        chats: BTreeSet<ChatId>,
    },
    Ended,
}

#[derive(Clone)]
struct Stream {
    stage: Stage,
    /// Uplink messages read so far (the index of the next one).
    uplinks: u64,
}

/// Every open stream. See the module documentation.
#[derive(Clone)]
pub(super) struct Streams {
    table: BTreeMap<ConnId, Stream>,
    next: u64,
    registering: BTreeSet<(Instant, ConnId)>,
    max: usize,
    register_timeout: Duration,
}

impl Streams {
    pub(super) fn new(max: usize, register_timeout: Duration) -> Self {
        Streams {
            table: BTreeMap::new(),
            next: 0,
            registering: BTreeSet::new(),
            max,
            register_timeout,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// A new stream, which must register by `now + register_timeout`.
    pub(super) fn open(&mut self, now: Instant) -> Result<ConnId, RelayError> {
        if self.table.len() >= self.max {
            return Err(RelayError::TooManyStreams);
        }
        let conn = ConnId(self.next);
        self.next = self.next.wrapping_add(1);
        let deadline = now.saturating_add(self.register_timeout);
        self.registering.insert((deadline, conn));
        let stage = Stage::Registering {
            deadline,
            challenge: None,
        };
        self.table.insert(conn, Stream { stage, uplinks: 0 });
        Ok(conn)
    }

    /// Counts one uplink message of `conn`: returns its index and whether the stream is
    /// registered. An unknown or ended stream takes no input.
    pub(super) fn uplink(&mut self, conn: ConnId) -> Result<(u64, bool), RelayError> {
        let s = self.table.get_mut(&conn).ok_or(RelayError::UnknownStream)?;
        let registered = match s.stage {
            Stage::Ended => return Err(RelayError::UnknownStream),
            Stage::Registering { .. } => false,
            Stage::Registered { .. } => true,
        };
        let index = s.uplinks;
        s.uplinks = s.uplinks.saturating_add(1);
        Ok((index, registered))
    }

    /// Where the challenge for a `Register` of `conn` goes: only a stream that has not sent
    /// one yet may register.
    pub(super) fn challenge_slot(
        &mut self,
        conn: ConnId,
    ) -> Result<&mut Option<Challenge>, RelayError> {
        match &mut self
            .table
            .get_mut(&conn)
            .ok_or(RelayError::UnknownStream)?
            .stage
        {
            Stage::Registering {
                challenge: Some(_), ..
            } => Err(RelayError::ExpectedProof),
            Stage::Registering { challenge, .. } => Ok(challenge),
            _ => Err(RelayError::AlreadyRegistered),
        }
    }

    /// The challenge a `Proof` of `conn` answers.
    pub(super) fn challenge(&self, conn: ConnId) -> Result<&Challenge, RelayError> {
        match &self
            .table
            .get(&conn)
            .ok_or(RelayError::UnknownStream)?
            .stage
        {
            Stage::Registering {
                challenge: Some(c), ..
            } => Ok(c),
            Stage::Registering { .. } => Err(RelayError::NotRegistered),
            _ => Err(RelayError::AlreadyRegistered),
        }
    }

    /// `conn` proved `identity`.
    pub(super) fn promote(&mut self, conn: ConnId, identity: IdentityPublic) {
        if let Some(s) = self.table.get_mut(&conn) {
            if let Stage::Registering { deadline, .. } = s.stage {
                self.registering.remove(&(deadline, conn));
            }
            s.stage = Stage::Registered {
                identity,
                chats: BTreeSet::new(),
            };
        }
    }

    /// The identity proven on `conn`, or why the stream may not act yet.
    pub(super) fn identity(&self, conn: ConnId) -> Result<IdentityPublic, RelayError> {
        match self.table.get(&conn).map(|s| &s.stage) {
            Some(Stage::Registered { identity, .. }) => Ok(*identity),
            Some(Stage::Registering {
                challenge: None, ..
            }) => Err(RelayError::NotRegistered),
            Some(Stage::Registering { .. }) => Err(RelayError::ExpectedProof),
            _ => Err(RelayError::UnknownStream),
        }
    }

    /// The chats `conn` started, if it is registered.
    pub(super) fn started(&mut self, conn: ConnId) -> Option<&mut BTreeSet<ChatId>> {
        match &mut self.table.get_mut(&conn)?.stage {
            Stage::Registered { chats, .. } => Some(chats),
            _ => None,
        }
    }

    /// Marks `conn` ended. `None` if it is unknown or already ended, else the identity it was
    /// registered as (if it was).
    pub(super) fn end(&mut self, conn: ConnId) -> Option<Option<IdentityPublic>> {
        let s = self.table.get_mut(&conn)?;
        match core::mem::replace(&mut s.stage, Stage::Ended) {
            Stage::Registering { deadline, .. } => {
                self.registering.remove(&(deadline, conn));
                Some(None)
            }
            Stage::Registered { identity, .. } => Some(Some(identity)),
            Stage::Ended => None,
        }
    }

    /// Forgets `conn`; returns the identity it was registered as, unless it had ended.
    pub(super) fn remove(&mut self, conn: ConnId) -> Option<IdentityPublic> {
        match self.table.remove(&conn)?.stage {
            Stage::Registering { deadline, .. } => {
                self.registering.remove(&(deadline, conn));
                None
            }
            Stage::Registered { identity, .. } => Some(identity),
            Stage::Ended => None,
        }
    }

    /// The earliest registration deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.registering.first().map(|(t, _)| *t)
    }

    /// A stream whose registration deadline has passed at `now`, if any.
    pub(super) fn overdue(&mut self, now: Instant) -> Option<ConnId> {
        match self.registering.first() {
            Some(&(deadline, conn)) if deadline <= now => {
                self.registering.pop_first();
                Some(conn)
            }
            _ => None,
        }
    }
}
