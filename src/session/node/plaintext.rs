//! Legacy plaintext mode ([docs/fabstir-wire.md §5.3]): `session_init` and `prompt`, behind
//! [`NodeConfig::allow_plaintext`](crate::session::NodeConfig::allow_plaintext).
//!
//! Why opt-in (checked before these handlers run): nothing here is authenticated — the claimed
//! `user_address` is just text, and the prompt travels in clear. Sessions are flagged
//! `encrypted: false` in every event.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::table::{NewSession, Pending};
use super::*;
use crate::crypto::SecretBytes;
use crate::session::wire::{PlainPrompt, PlainSessionInit};

impl<R: rand_core::CryptoRng> Node<R> {
    pub(super) fn on_plain_init(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        frame: &ClientFrame<'_>,
    ) -> Result<(), NodeError> {
        let init = PlainSessionInit::parse(frame)?;
        if let Some(slot) = self.table.find(conn, init.session_id) {
            let s = self.table.get(slot).ok_or(NodeError::UnknownConnection)?;
            if s.is_pending() {
                return Err(NodeError::SessionNotAccepted);
            }
            if s.is_encrypted() || s.job_id() != init.job_id || s.chain_id() != init.chain_id {
                return Err(NodeError::NotAuthorized);
            }
            // Idempotent re-init of an accepted plaintext session.
            let ack = InitAck {
                session_id: init.session_id,
                job_id: init.job_id,
                chain_id: init.chain_id,
                id: init.id,
            }
            .emit();
            return self.queue(conn, ack);
        }
        self.table.check_room(conn)?;
        self.ensure_room(0, 1)?;
        let request = SessionRequest {
            conn,
            session_id: init.session_id.to_string(),
            job_id: init.job_id.to_string(),
            chain_id: init.chain_id,
            client_address: None,
            claimed_user_address: init.user_address.map(ToString::to_string),
            model: String::new(),
            price_per_token: 0,
            recovery_public_key: None,
            vector_database: init.vector_database,
            encrypted: false,
        };
        let new = NewSession {
            session_id: init.session_id,
            job_id: init.job_id,
            chain_id: init.chain_id,
            client_address: None,
            encrypted: false,
            key: SecretBytes::new([0u8; 32]),
            pending: Pending {
                eph: None,
                init_id: init.id.map(Into::into),
            },
        };
        self.table.insert_pending(now, conn, new);
        self.events.push(NodeEvent::SessionRequested(request));
        Ok(())
    }

    pub(super) fn on_plain_prompt(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        frame: &ClientFrame<'_>,
    ) -> Result<(), NodeError> {
        let prompt = PlainPrompt::parse(frame)?;
        // Either id selects this connection's accepted plaintext session; the job wins when
        // both are present.
        let selects = |s: &NodeSession| match (prompt.job_id, prompt.session_id) {
            (Some(job), _) => s.job_id() == job,
            (None, Some(sid)) => s.session_id() == sid,
            (None, None) => false,
        };
        let slot = self
            .table
            .find_where(conn, |s| !s.is_encrypted() && !s.is_pending() && selects(s))
            .ok_or(NodeError::SessionKeyNotFound)?;
        let session_id = self
            .table
            .get(slot)
            .map(|s| s.session_id().to_string())
            .ok_or(NodeError::SessionKeyNotFound)?;
        let text = prompt.prompt()?;
        self.ensure_room(0, 1)?;
        let request = PromptRequest {
            conn,
            session_id,
            request_id: prompt.id.to_string(),
            prompt: Zeroizing::new(text.to_string()),
            model: prompt.model().map(ToString::to_string),
            max_tokens: prompt.max_tokens(),
            temperature: prompt.temperature(),
            thinking: prompt.thinking().map(ToString::to_string),
            image_count: 0,
            images: Vec::new(),
            web_search: prompt.web_search,
            search_queries: Zeroizing::new(Vec::new()),
            index: None,
            encrypted: false,
        };
        if let Some(s) = self.table.get_mut(slot) {
            s.touch(now);
        }
        self.events.push(NodeEvent::Prompt(request));
        Ok(())
    }
}
