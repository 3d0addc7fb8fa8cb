//! Answers: encrypted chunks (AAD `chunk_<i>`), the encrypted finish reason, `stream_end`,
//! and error frames on behalf of the embedder.
//!
//! Why `chunk_<i>` in order: the client and node share one key in both directions; emitting
//! only `chunk_<i>`/`encrypted_response_final` (never `message_<n>`) stops a chunk from being
//! reflected back as a prompt, and ordered indices let a strict client detect dropped or
//! reordered chunks.

use alloc::boxed::Box;
use alloc::string::String;

use zeroize::Zeroize;

use super::*;

impl<R: rand_core::CryptoRng> Node<R> {
    // ---------------------------------------------------------------- answers

    /// Streams one piece of an answer: `encrypted_chunk` (AAD `chunk_<i>`, a fresh random
    /// nonce, `i` counting from 0 per request) or `stream_chunk` for plaintext sessions.
    /// `text` must hold whole characters (it is a `&str`, so it does).
    pub fn send_chunk(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        session_id: &str,
        request_id: &str,
        text: &str,
        is_final: bool,
    ) -> Result<(), SessionError> {
        if self.transmits.len() >= self.config.max_transmit_queue {
            self.stats.transmits_dropped += 1;
            return Err(SessionError::Capacity("transmit queue"));
        }
        let mut out = String::with_capacity(text.len() * 2 + 240 + session_id.len());
        self.seal_chunk_into(now, conn, session_id, request_id, text, is_final, &mut out)?;
        self.queue(conn, out)
    }

    /// The buffer API of [`Node::send_chunk`]: clears `out` and writes the frame into it
    /// instead of queueing it. With `out` pre-sized (≈ 2 × text + 240 bytes) and `text` up to
    /// 512 bytes nothing is allocated, except once per request (the first chunk of a new
    /// `request_id` records it for the `chunk_<i>` counter); longer texts reuse one internal
    /// scratch buffer.
    ///
    /// ```
    /// # use sealwire::session::{Node, NodeConfig, SecretKey};
    /// # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// # let mut node = Node::new(SecretKey::from_bytes(&[7; 32]).unwrap(), NodeConfig::default(), ChaCha20Rng::from_seed([0; 32]));
    /// # let conn = node.connect(sealwire::time::Instant::ZERO).unwrap();
    /// let mut out = String::with_capacity(512);
    /// // No session "1" on this connection:
    /// assert!(node.seal_chunk_into(sealwire::time::Instant::ZERO, conn, "1", "r", "hi", false, &mut out).is_err());
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn seal_chunk_into(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        session_id: &str,
        request_id: &str,
        text: &str,
        is_final: bool,
        out: &mut String,
    ) -> Result<(), SessionError> {
        let pos = self.active(conn, session_id)?;
        let mut key = SecretBytes::new([0u8; 32]);
        let mut index = 0;
        let mut encrypted = true;
        if let Some(s) = self.session_mut(conn, pos) {
            encrypted = s.encrypted;
            key = s.key.clone_secret();
            match &mut s.stream {
                Some(st) if &*st.request_id == request_id => {
                    index = st.next_index;
                    st.next_index = st.next_index.saturating_add(1);
                }
                slot => {
                    *slot = Some(Box::new(AnswerStream {
                        request_id: request_id.into(),
                        next_index: 1,
                    }));
                }
            }
            s.last_active = now;
        }
        out.clear();
        if !encrypted {
            out.push_str(r#"{"type":"stream_chunk","content":"#);
            wire::push_json_str(out, text);
            out.push_str(r#","id":"#);
            wire::push_json_str(out, request_id);
            if is_final {
                out.push_str(r#","final":true"#);
            }
            out.push('}');
            return Ok(());
        }
        let nonce = crate::crypto::random_array::<24, R>(&mut self.rng);
        let mut aad_buf = [0u8; 32];
        let aad = wire::indexed_label(&mut aad_buf, b"chunk_", index);
        out.push_str(r#"{"type":"encrypted_chunk","session_id":"#);
        wire::push_json_str(out, session_id);
        out.push_str(r#","id":"#);
        wire::push_json_str(out, request_id);
        out.push_str(r#","tokens":1,"payload":{"ciphertextHex":""#);
        self.seal_hex(&key, &nonce, aad, text.as_bytes(), out);
        out.push_str(r#"","nonceHex":""#);
        hex::encode_to(&nonce, out);
        out.push_str(r#"","aadHex":""#);
        hex::encode_to(aad, out);
        out.push_str(r#"","index":"#);
        wire::push_u64(out, index);
        out.push('}');
        if is_final {
            out.push_str(r#","final":true"#);
        }
        out.push('}');
        Ok(())
    }

    /// Seals `plain` and appends hex(ciphertext ‖ tag) to `out`.
    fn seal_hex(
        &mut self,
        key: &SecretBytes<32>,
        nonce: &[u8; 24],
        aad: &[u8],
        plain: &[u8],
        out: &mut String,
    ) {
        let mut stack = [0u8; STACK_SEAL_LEN];
        let buf: &mut [u8] = match stack.get_mut(..plain.len()) {
            Some(b) => b,
            None => {
                self.scratch.clear();
                self.scratch.extend_from_slice(plain);
                &mut self.scratch[..]
            }
        };
        if buf.len() == plain.len() {
            buf.copy_from_slice(plain);
        }
        let tag = aead::xchacha_seal_in_place(key.expose(), nonce, aad, buf);
        hex::encode_to(buf, out);
        hex::encode_to(&tag, out);
        stack.zeroize();
    }

    /// Ends an answer: `encrypted_response` (the finish reason under AAD
    /// `encrypted_response_final`) then `stream_end`; plaintext sessions get only
    /// `stream_end`.
    pub fn finish(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        session_id: &str,
        request_id: &str,
        end: StreamEnd,
    ) -> Result<(), SessionError> {
        let pos = self.active(conn, session_id)?;
        if self.transmits.len().saturating_add(2) > self.config.max_transmit_queue {
            self.stats.transmits_dropped += 1;
            return Err(SessionError::Capacity("transmit queue"));
        }
        let mut key = SecretBytes::new([0u8; 32]);
        let mut encrypted = true;
        if let Some(s) = self.session_mut(conn, pos) {
            encrypted = s.encrypted;
            key = s.key.clone_secret();
            s.stream = None;
            s.last_active = now;
        }
        if encrypted {
            let nonce = crate::crypto::random_array::<24, R>(&mut self.rng);
            let mut f = String::with_capacity(256 + end.finish_reason.len() * 2);
            f.push_str(r#"{"type":"encrypted_response","session_id":"#);
            wire::push_json_str(&mut f, session_id);
            f.push_str(r#","id":"#);
            wire::push_json_str(&mut f, request_id);
            f.push_str(r#","payload":{"ciphertextHex":""#);
            self.seal_hex(
                &key,
                &nonce,
                RESPONSE_FINAL_AAD,
                end.finish_reason.as_bytes(),
                &mut f,
            );
            f.push_str(r#"","nonceHex":""#);
            hex::encode_to(&nonce, &mut f);
            f.push_str(r#"","aadHex":""#);
            hex::encode_to(RESPONSE_FINAL_AAD, &mut f);
            f.push_str("\"}}");
            self.queue(conn, f)?;
        }
        let mut f = String::with_capacity(320);
        f.push_str(r#"{"type":"stream_end","session_id":"#);
        wire::push_json_str(&mut f, session_id);
        f.push_str(r#","id":"#);
        wire::push_json_str(&mut f, request_id);
        f.push_str(r#","reason":"#);
        wire::push_json_str(&mut f, &end.reason);
        f.push_str(r#","tokens_used":"#);
        wire::push_u64(&mut f, end.tokens_used);
        f.push_str(r#","finish_reason":"#);
        wire::push_json_str(&mut f, &end.finish_reason);
        f.push_str(r#","usage":{"prompt_tokens":"#);
        wire::push_u64(&mut f, end.prompt_tokens);
        f.push_str(r#","completion_tokens":"#);
        wire::push_u64(&mut f, end.completion_tokens);
        f.push_str(r#","total_tokens":"#);
        wire::push_u64(
            &mut f,
            end.prompt_tokens.saturating_add(end.completion_tokens),
        );
        f.push_str(r#","context_window_size":"#);
        wire::push_u64(&mut f, end.context_window_size);
        f.push_str("}}");
        self.queue(conn, f)
    }

    /// Queues an `error` frame with a stable code (model failures, token limits, ...).
    pub fn send_error(
        &mut self,
        conn: ConnectionId,
        session_id: Option<&str>,
        request_id: Option<&str>,
        code: ErrorCode,
        message: &str,
    ) -> Result<(), SessionError> {
        if !self.conns.contains_key(&conn) {
            return Err(SessionError::UnknownConnection);
        }
        let frame = error_frame(code, truncate_chars(message, 1024), session_id, request_id);
        self.queue(conn, frame)
    }

    /// Queues the one error the SDK interprets: `TOKEN_LIMIT_EXCEEDED` with `prompt_tokens` and
    /// `context_window_size`, which the SDK turns into a `ContextLimitError`.
    ///
    /// ```
    /// # use sealwire::session::{Node, NodeConfig, SecretKey};
    /// # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// # let mut node = Node::new(SecretKey::from_bytes(&[7; 32]).unwrap(), NodeConfig::default(), ChaCha20Rng::from_seed([0; 32]));
    /// let conn = node.connect(sealwire::time::Instant::ZERO).unwrap();
    /// node.send_token_limit_error(conn, Some("1"), Some("r"), 9000, 8192).unwrap();
    /// assert_eq!(node.poll_transmit().unwrap().frame,
    ///     r#"{"type":"error","code":"TOKEN_LIMIT_EXCEEDED","message":"Prompt exceeds context window","session_id":"1","id":"r","prompt_tokens":9000,"context_window_size":8192}"#);
    /// ```
    pub fn send_token_limit_error(
        &mut self,
        conn: ConnectionId,
        session_id: Option<&str>,
        request_id: Option<&str>,
        prompt_tokens: u64,
        context_window_size: u64,
    ) -> Result<(), SessionError> {
        if !self.conns.contains_key(&conn) {
            return Err(SessionError::UnknownConnection);
        }
        let mut frame = error_frame(
            ErrorCode::TokenLimitExceeded,
            "Prompt exceeds context window",
            session_id,
            request_id,
        );
        frame.pop(); // the closing brace
        frame.push_str(r#","prompt_tokens":"#);
        wire::push_u64(&mut frame, prompt_tokens);
        frame.push_str(r#","context_window_size":"#);
        wire::push_u64(&mut frame, context_window_size);
        frame.push('}');
        self.queue(conn, frame)
    }
}
