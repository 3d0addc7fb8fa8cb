//! Legacy plaintext mode (spec §5.3): `session_init` and `prompt`, behind
//! [`NodeConfig::allow_plaintext`](crate::session::NodeConfig::allow_plaintext).
//!
//! Why opt-in: nothing here is authenticated — the claimed `user_address` is just text, and the
//! prompt travels in clear. Sessions are flagged `encrypted: false` in every event.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use zeroize::Zeroizing;

use super::*;

impl<R: rand_core::CryptoRng> Node<R> {
    // ---------------------------------------------------------------- plaintext mode

    pub(super) fn on_plain_init(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        env: &InFrame<'_>,
    ) -> Result<(), SessionError> {
        use SessionError as E;
        if !self.config.allow_plaintext {
            return Err(E::PlaintextDisabled);
        }
        let session_id = decimal_field(&env.session_id).ok_or(E::InvalidMessage("session_id"))?;
        let job_id = decimal_field(&env.job_id_camel)
            .or_else(|| decimal_field(&env.job_id))
            .ok_or(E::InvalidMessage("jobId"))?;
        let chain_id = env
            .chain_id
            .as_ref()
            .and_then(Field::as_u64)
            .ok_or(E::InvalidMessage("chain_id"))?;
        let user = match &env.user_address {
            None => None,
            Some(f) => Some(f.as_str().ok_or(E::InvalidMessage("user_address"))?),
        };
        let vdb = match &env.vector_database {
            None => None,
            Some(o) => {
                let o = o.get().ok_or(E::InvalidMessage("vector_database"))?;
                Some(VectorDatabase {
                    manifest_path: str_field(&o.manifest_path)
                        .ok_or(E::InvalidMessage("vector_database"))?
                        .to_string(),
                    user_address: str_field(&o.user_address)
                        .ok_or(E::InvalidMessage("vector_database"))?
                        .to_string(),
                })
            }
        };
        let init_id = str_field(&env.id).filter(|s| s.len() <= MAX_ECHO_LEN);
        if let Some(pos) = self.find(conn, session_id) {
            let s = self.session(conn, pos).ok_or(E::UnknownConnection)?;
            if s.pending.is_some() {
                return Err(E::SessionNotAccepted);
            }
            if s.encrypted || &*s.job_id != job_id {
                return Err(E::NotAuthorized);
            }
            // Idempotent re-init of an accepted plaintext session.
            let ack = ack_frame(session_id, Some(job_id), Some(chain_id), init_id);
            return self.queue(conn, ack);
        }
        self.check_new_session_room(conn)?;
        self.ensure_room(0, 1)?;
        let request = SessionRequest {
            conn,
            session_id: session_id.to_string(),
            job_id: job_id.to_string(),
            chain_id,
            client_address: None,
            claimed_user_address: user.map(ToString::to_string),
            model: String::new(),
            price_per_token: 0,
            recovery_public_key: None,
            vector_database: vdb,
            encrypted: false,
        };
        self.install_pending(
            now,
            conn,
            session_id,
            job_id,
            chain_id,
            None,
            false,
            SecretBytes::new([0u8; 32]),
            Pending {
                eph: None,
                init_id: init_id.map(Into::into),
            },
        );
        self.push_event(NodeEvent::SessionRequested(request));
        Ok(())
    }

    pub(super) fn on_plain_prompt<'f>(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        env: &'f InFrame<'f>,
        echo: &mut Echo<'f>,
    ) -> Result<(), SessionError> {
        use SessionError as E;
        if !self.config.allow_plaintext {
            return Err(E::PlaintextDisabled);
        }
        // The SDK's plaintext prompt names the job (`jobId`), not the session; other legacy
        // clients name the session (`session_id`). Either selects this connection's accepted
        // plaintext session; the job wins when both are present.
        let job_id = decimal_field(&env.job_id_camel);
        let named_session = decimal_field(&env.session_id);
        if job_id.is_none() && named_session.is_none() {
            return Err(E::InvalidMessage("jobId"));
        }
        let request_id = str_field(&env.id)
            .filter(|s| s.len() <= MAX_ECHO_LEN)
            .ok_or(E::InvalidMessage("id"))?;
        let selects = |s: &NodeSession| match (job_id, named_session) {
            (Some(job), _) => &*s.job_id == job,
            (None, Some(sid)) => &*s.session_id == sid,
            (None, None) => false,
        };
        let pos = self
            .conns
            .get(&conn)
            .and_then(|c| {
                c.sessions
                    .iter()
                    .position(|s| !s.encrypted && s.pending.is_none() && selects(s))
            })
            .ok_or(E::SessionKeyNotFound)?;
        let session_id = self
            .session(conn, pos)
            .map(|s| s.session_id.to_string())
            .ok_or(E::SessionKeyNotFound)?;
        let _ = echo;
        let req = env.request.as_ref().and_then(|r| r.get());
        let prompt = req
            .and_then(|r| str_field(&r.prompt))
            .or_else(|| str_field(&env.prompt))
            .ok_or(E::InvalidMessage("prompt"))?;
        self.ensure_room(0, 1)?;
        let request = PromptRequest {
            conn,
            session_id,
            request_id: request_id.to_string(),
            prompt: Zeroizing::new(prompt.to_string()),
            model: req
                .and_then(|r| str_field(&r.model))
                .map(ToString::to_string),
            max_tokens: req.and_then(|r| r.max_tokens.as_ref().and_then(Field::as_u64)),
            temperature: req.and_then(|r| r.temperature.as_ref().and_then(Field::as_f64)),
            thinking: req
                .and_then(|r| str_field(&r.thinking))
                .map(ToString::to_string),
            image_count: 0,
            images: Vec::new(),
            web_search: env.web_search.as_ref().and_then(Field::as_bool) == Some(true),
            search_queries: Zeroizing::new(Vec::new()),
            index: None,
            encrypted: false,
        };
        if let Some(s) = self.session_mut(conn, pos) {
            s.last_active = now;
        }
        self.push_event(NodeEvent::Prompt(request));
        Ok(())
    }
}
