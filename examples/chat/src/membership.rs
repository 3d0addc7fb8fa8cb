//! Chat membership across the nodes of a mesh: before a node lets an app start a chat, it asks
//! every node that holds the chat (a request on the chat's subject, kind 2, answered by each
//! node with the participants it holds and their pins) and applies the relay's rules to the
//! union, so the first two identities that start a chat own it on every node, and a stranger
//! who learns the chat id cannot start it on another node either.
//!
//! The rules are the relay machine's, applied mesh-wide before the machine sees the `start`:
//! a third identity is refused ([`RelayError::ChatFull`]), a seat the first participant
//! reserved by its pin goes to exactly that identity ([`RelayError::SeatReserved`]), and a pin
//! that does not match the other participant is refused ([`RelayError::PinMismatch`]).
//! If NATS cannot be asked, the node logs it and lets its local machine decide (which still
//! enforces the pins of the participants it holds). Two strangers racing for the empty second
//! seat on two nodes within the answer window could both pass this check; the participants'
//! pins (the example app always pins) and the chat handshake still refuse them.
//!
//! Answer: for each participant (one or two), its identity (32 bytes), then 1 byte (1 if it
//! pinned a peer) and the pin (32 bytes, zeros without one).

use std::time::Duration;

use sealwire::chat::relay::RelayError;
use sealwire::chat::ChatId;
use tonic::codegen::tokio_stream::StreamExt;

use crate::mesh::{subject, KIND_WHO};

/// How long a node collects the other nodes' answers before deciding a `start`.
pub const ANSWER_WINDOW: Duration = Duration::from_millis(150);

/// One participant: its identity and the peer it pinned, if any.
pub type Member = ([u8; 32], Option<[u8; 32]>);

/// The mesh-wide membership check of a node.
#[derive(Clone)]
pub struct Members {
    client: async_nats::Client,
}

fn encode(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::with_capacity(members.len() * 65);
    for (id, pin) in members {
        out.extend_from_slice(id);
        out.push(u8::from(pin.is_some()));
        out.extend_from_slice(&pin.unwrap_or([0; 32]));
    }
    out
}

fn decode(bytes: &[u8]) -> Option<Vec<Member>> {
    if !bytes.len().is_multiple_of(65) || bytes.len() > 130 {
        return None;
    }
    bytes
        .chunks_exact(65)
        .map(|c| {
            let id: [u8; 32] = c[..32].try_into().ok()?;
            let pin: [u8; 32] = c[33..].try_into().ok()?;
            match c[32] {
                0 => Some((id, None)),
                1 => Some((id, Some(pin))),
                _ => None,
            }
        })
        .collect()
}

/// What the table says of `me` starting a chat whose record is `members`: `Ok(None)` if `me`
/// is already a participant, `Ok(Some(new record))` to write, or the refusal.
pub fn decide(members: &[Member], me: Member) -> Result<Option<Vec<Member>>, RelayError> {
    if members.iter().any(|(id, _)| *id == me.0) {
        return Ok(None);
    }
    match members {
        [] => Ok(Some(vec![me])),
        [first] => {
            if first.1.is_some_and(|pin| pin != me.0) {
                return Err(RelayError::SeatReserved);
            }
            if me.1.is_some_and(|pin| pin != first.0) {
                return Err(RelayError::PinMismatch);
            }
            Ok(Some(vec![*first, me]))
        }
        _ => Err(RelayError::ChatFull),
    }
}

impl Members {
    /// Membership over `client` (the node's NATS connection).
    pub fn new(client: async_nats::Client) -> Self {
        Members { client }
    }

    /// Claims a seat in `chat_id` for `me` (pinning `pin`), mesh-wide; see the module
    /// documentation for the rules. If NATS cannot be asked, the start is allowed (the local
    /// machine still decides).
    pub async fn claim(
        &self,
        chat_id: &ChatId,
        me: [u8; 32],
        pin: Option<[u8; 32]>,
    ) -> Result<(), RelayError> {
        let members = match self.ask(chat_id, me).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask the mesh for the chat's members; the node decides alone");
                return Ok(());
            }
        };
        decide(&members, (me, pin)).map(drop)
    }

    /// Asks every node that holds `chat_id` for its participants and merges the answers
    /// that arrive within [`ANSWER_WINDOW`].
    async fn ask(&self, chat_id: &ChatId, me: [u8; 32]) -> Result<Vec<Member>, String> {
        let inbox = self.client.new_inbox();
        let mut answers = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| e.to_string())?;
        let mut question = Vec::with_capacity(33);
        question.push(KIND_WHO);
        question.extend_from_slice(&me);
        self.client
            .publish_with_reply(subject(chat_id), inbox, question.into())
            .await
            .map_err(|e| e.to_string())?;
        let mut members: Vec<Member> = Vec::new();
        let deadline = tokio::time::Instant::now() + ANSWER_WINDOW;
        while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, answers.next()).await {
            for m in decode(&answer.payload).unwrap_or_default() {
                if !members.iter().any(|(id, _)| *id == m.0) && members.len() < 2 {
                    members.push(m);
                }
            }
        }
        Ok(members)
    }
}

/// The answer to a question of [`Members::claim`] from the participants a node holds.
pub fn answer(members: &[Member]) -> Vec<u8> {
    encode(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];
    const S: [u8; 32] = [9; 32];

    #[test]
    fn the_first_two_own_the_chat_and_pins_reserve_the_seat() {
        assert_eq!(decide(&[], (A, Some(B))), Ok(Some(vec![(A, Some(B))])));
        assert_eq!(
            decide(&[(A, Some(B))], (S, None)),
            Err(RelayError::SeatReserved)
        );
        assert_eq!(
            decide(&[(A, None)], (B, Some(S))),
            Err(RelayError::PinMismatch)
        );
        assert_eq!(
            decide(&[(A, Some(B))], (B, Some(A))),
            Ok(Some(vec![(A, Some(B)), (B, Some(A))]))
        );
        assert_eq!(
            decide(&[(A, None), (B, None)], (S, None)),
            Err(RelayError::ChatFull)
        );
        assert_eq!(decide(&[(A, None), (B, None)], (B, None)), Ok(None));
    }

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let m = vec![(A, Some(B)), (B, None)];
        assert_eq!(decode(&encode(&m)), Some(m));
        assert_eq!(decode(&[0; 64]), None);
        assert_eq!(
            decode(&[]),
            Some(vec![]),
            "a node that holds nobody answers empty"
        );
        let mut bad = encode(&[(A, None)]);
        bad[32] = 7;
        assert_eq!(decode(&bad), None);
    }
}
