//! Refusals decided by the embedder (its own rate limits, say): the machine answers them as its
//! own, so every uplink message still gets exactly one answer under its index.

use alloc::vec::Vec;

use super::super::wire::ChatId;
use super::{ConnId, Downlink, Relay, RelayError, Transmit};
use crate::crypto::ed25519::IdentityPublic;

impl<R: rand_core::CryptoRng> Relay<R> {
    /// Refuses the next uplink message of `conn` without handling it, as the embedder decided
    /// (e.g. [`RelayError::RateLimited`] by its token buckets): the message takes its uplink
    /// index and is answered with [`Downlink::Rejected`] like a refusal of the machine's own,
    /// so the app's count of answers stays right. Before registration the stream ends instead.
    /// [`RelayError::Capacity`] and [`RelayError::UnknownStream`] change nothing.
    ///
    /// ```
    /// # use sealwire::chat::relay::{Downlink, Relay, RelayConfig, RelayError, Uplink};
    /// # use sealwire::time::Instant;
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// let mut relay = Relay::new(RelayConfig::default(), ChaCha20Rng::from_seed([0; 32])).unwrap();
    /// let conn = relay.connect(Instant::ZERO).unwrap();
    /// // Refused before it registered: the stream ends.
    /// relay.refuse_uplink(conn, RelayError::RateLimited).unwrap();
    /// let t = relay.poll_transmit().unwrap();
    /// assert_eq!((t.to, t.message), (conn, Downlink::End(RelayError::RateLimited)));
    /// ```
    pub fn refuse_uplink(&mut self, conn: ConnId, error: RelayError) -> Result<(), RelayError> {
        if !self.transmit.has_room(2) || !self.events.has_room(3) {
            return Err(RelayError::Capacity);
        }
        let (index, registered) = self.streams.uplink(conn)?;
        self.answer_refusal(conn, index, registered, error);
        Ok(())
    }

    /// Counts a refused uplink message and answers it: `Rejected` on a registered stream;
    /// before that the stream ends (until it has proven an identity, it gets no second chance).
    pub(super) fn answer_refusal(
        &mut self,
        conn: ConnId,
        index: u64,
        registered: bool,
        error: RelayError,
    ) {
        self.counters.uplinks_refused = self.counters.uplinks_refused.saturating_add(1);
        if registered {
            let message = Downlink::Rejected {
                error,
                uplink_index: index,
            };
            self.transmit.push(Transmit { to: conn, message });
        } else {
            self.end(conn, error);
        }
    }

    /// The participants of `chat_id` held here with the peer each pinned (first come first;
    /// empty if the relay does not hold the chat): what a mesh node tells the others so that
    /// membership holds on every node.
    ///
    /// ```
    /// # use sealwire::chat::{relay::{Relay, RelayConfig}, ChatId};
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// let relay = Relay::new(RelayConfig::default(), ChaCha20Rng::from_seed([0; 32])).unwrap();
    /// assert!(relay.members_pinned(&ChatId::new([1; 16])).is_empty());
    /// ```
    pub fn members_pinned(&self, chat_id: &ChatId) -> Vec<(IdentityPublic, Option<[u8; 32]>)> {
        self.chats
            .get(chat_id)
            .map(|c| c.members_pinned().collect())
            .unwrap_or_default()
    }
}
