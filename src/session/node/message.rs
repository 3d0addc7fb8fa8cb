//! `encrypted_message` ([docs/fabstir-wire.md §3]): key lookup by `(connection, session_id)`,
//! AEAD open, AAD `message_<n>` with a strictly increasing `n`, then the inner prompt JSON.
//!
//! Why the index is recorded only after the inner JSON parses: a rejected frame must leave the
//! session exactly as it was.

use alloc::string::ToString;

use super::*;
use crate::crypto::aead::{self, TAG_LEN};
use crate::session::wire::message::PromptPlaintext;
use crate::session::wire::{self, EncryptedMessage};

impl<R: rand_core::CryptoRng> Node<R> {
    pub(super) fn on_encrypted_message(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        frame: &ClientFrame<'_>,
    ) -> Result<(), NodeError> {
        use NodeError as E;
        let envelope = EncryptedMessage::parse(frame)?;
        let slot = self
            .table
            .find(conn, envelope.session_id)
            .ok_or(E::SessionKeyNotFound)?;
        let key = {
            let s = self.table.get(slot).ok_or(E::SessionKeyNotFound)?;
            if s.is_pending() {
                return Err(E::SessionNotAccepted);
            }
            if !s.is_encrypted() {
                return Err(E::SessionKeyNotFound);
            }
            s.key().clone_secret()
        };
        let mut sealed = envelope.sealed()?;
        let aad = sealed.aad.as_slice();
        let body_len = sealed
            .sealed
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(E::DecryptionFailed)?;
        let (body, tag) = sealed.sealed.split_at_mut(body_len);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| E::DecryptionFailed)?;
        aead::xchacha_open_in_place(key.expose(), &sealed.nonce, aad, body, &tag)
            .map_err(|_| E::DecryptionFailed)?;
        // docs/fabstir-wire.md §7.4: only `message_<n>` inbound (never what the node emits).
        let index = wire::parse_message_aad(aad).ok_or(E::InvalidAad)?;
        if !self.table.get(slot).is_some_and(|s| s.is_fresh(index)) {
            return Err(E::ReplayedMessage);
        }
        let inner = PromptPlaintext::parse(body)?;
        let request = prompt_request(
            conn,
            envelope.session_id,
            envelope.id,
            inner,
            envelope.web_search,
            index,
        )?;
        self.ensure_room(0, 1)?;
        if let Some(s) = self.table.get_mut(slot) {
            s.record_message(now, index);
        }
        self.events.push(NodeEvent::Prompt(request));
        Ok(())
    }
}

/// The event for a decrypted prompt.
fn prompt_request(
    conn: ConnectionId,
    session_id: &str,
    request_id: &str,
    inner: PromptPlaintext<'_>,
    web_search: bool,
    index: u64,
) -> Result<PromptRequest, NodeError> {
    let images = inner.images()?;
    let (prompt, search_queries) = (inner.prompt()?, inner.search_queries()?);
    Ok(PromptRequest {
        conn,
        session_id: session_id.to_string(),
        request_id: request_id.to_string(),
        prompt,
        model: inner.model.map(|m| m.into_owned()),
        max_tokens: inner.max_tokens,
        temperature: inner.temperature,
        thinking: inner.thinking.map(|t| t.into_owned()),
        image_count: images.len(),
        images,
        web_search,
        search_queries,
        index: Some(index),
        encrypted: true,
    })
}
