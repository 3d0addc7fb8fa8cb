//! Answers: encrypted chunks (AAD `chunk_<i>`), the sealed end of answer (the finish reason
//! under AAD `encrypted_response_final_<chunk count>`), `stream_end`, and error frames on
//! behalf of the embedder.
//!
//! Why `chunk_<i>` in order: the client and node share one key in both directions; emitting
//! only `chunk_<i>`/`encrypted_response_final_<n>` (never `message_<n>`) stops a chunk from being
//! reflected back as a prompt, and ordered indices let a strict client detect dropped or
//! reordered chunks ([docs/fabstir-wire.md §7.4, §7.5]).

use alloc::string::String;

use zeroize::Zeroize;

use super::*;
use crate::crypto::aead::{self, TAG_LEN};
use crate::crypto::SecretBytes;
use crate::session::wire::{
    self, EncryptedChunk, EncryptedResponse, Sealed, StreamChunk, StreamEndFrame, TokenLimit,
    CHUNK_AAD, RESPONSE_END_AAD,
};

/// Texts up to this size are sealed in a stack buffer (no allocation).
const STACK_SEAL_LEN: usize = 512;

impl<R: rand_core::CryptoRng> Node<R> {
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
    ) -> Result<(), NodeError> {
        self.ensure_room(1, 0)?;
        let hex_len = text.len().saturating_add(TAG_LEN).saturating_mul(2);
        let mut out = String::with_capacity(
            hex_len
                .saturating_add(240)
                .saturating_add(session_id.len())
                .saturating_add(request_id.len()),
        );
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
    /// # let mut node = Node::new(SecretKey::from_bytes(&[7; 32]).unwrap(), NodeConfig::default(), ChaCha20Rng::from_seed([0; 32])).unwrap();
    /// # let conn = node.connect().unwrap();
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
    ) -> Result<(), NodeError> {
        let s = self.table.active_mut(conn, session_id)?;
        let index = s.next_chunk(now, request_id);
        let (encrypted, key) = (s.is_encrypted(), s.key().clone_secret());
        out.clear();
        if !encrypted {
            StreamChunk {
                content: text,
                id: request_id,
                is_final,
            }
            .emit_into(out);
            return Ok(());
        }
        let nonce = crate::crypto::random_array::<24, R>(&mut self.rng);
        let mut aad_buf = [0u8; wire::LABEL_LEN];
        let aad = wire::indexed_label(&mut aad_buf, CHUNK_AAD, index);
        self.with_sealed(&key, &nonce, aad, text.as_bytes(), |sealed| {
            EncryptedChunk {
                session_id,
                id: request_id,
                payload: Sealed {
                    sealed,
                    nonce: &nonce,
                    aad,
                },
                index,
                is_final,
            }
            .emit_into(out)
        });
        Ok(())
    }

    /// Seals `plain` (in a stack buffer when short, else in the scratch buffer) and hands
    /// ciphertext ‖ tag to `write`. The plaintext copy is encrypted in place; the bytes used are
    /// wiped anyway before the buffer is released (only those: the rest was never written, and
    /// wiping all 528 bytes would cost more than the chunk's hex).
    fn with_sealed<T>(
        &mut self,
        key: &SecretBytes<32>,
        nonce: &[u8; 24],
        aad: &[u8],
        plain: &[u8],
        write: impl FnOnce(&[u8]) -> T,
    ) -> T {
        let mut stack = [0u8; STACK_SEAL_LEN + TAG_LEN];
        // A slice's length is at most isize::MAX: adding the tag cannot saturate.
        let sealed_len = plain.len().saturating_add(TAG_LEN);
        let buf: &mut [u8] = match stack.get_mut(..sealed_len) {
            Some(b) => b,
            None => {
                // Every use wipes the bytes it used, so a reallocation frees only zeros.
                self.scratch.clear();
                self.scratch.resize(sealed_len, 0);
                self.scratch.as_mut_slice()
            }
        };
        let (body, tag_out) = buf.split_at_mut(plain.len());
        body.copy_from_slice(plain);
        let tag = aead::xchacha_seal_in_place(key.expose(), nonce, aad, body);
        tag_out.copy_from_slice(&tag);
        let result = write(buf);
        buf.zeroize();
        result
    }

    /// Ends an answer: `encrypted_response` (the finish reason, sealed under AAD
    /// `encrypted_response_final_<n>` with `n` the number of chunks sent for `request_id`),
    /// then `stream_end`; plaintext sessions get only `stream_end`.
    ///
    /// Why the count in the AAD: `stream_end` and the chunks' `final` flag travel in clear, so
    /// an attacker on the path could hold back the last chunks and end the answer early. The
    /// sealed count lets a [`Client`](crate::session::Client) finish an answer only when it
    /// holds every chunk; the SDK decrypts this frame under whatever `aadHex` says and discards
    /// it ([docs/fabstir-wire.md §4.1]).
    pub fn finish(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        session_id: &str,
        request_id: &str,
        end: StreamEnd,
    ) -> Result<(), NodeError> {
        let slot = self.table.active(conn, session_id)?;
        self.ensure_room(2, 0)?;
        let s = self.table.get_mut(slot).ok_or(NodeError::UnknownSession)?;
        let chunks = s.end_answer(now, request_id);
        let (encrypted, key) = (s.is_encrypted(), s.key().clone_secret());
        if encrypted {
            let nonce = crate::crypto::random_array::<24, R>(&mut self.rng);
            let reason = end.finish_reason.as_bytes();
            let mut aad_buf = [0u8; wire::LABEL_LEN];
            let aad = wire::indexed_label(&mut aad_buf, RESPONSE_END_AAD, chunks);
            let frame = self.with_sealed(&key, &nonce, aad, reason, |sealed| {
                EncryptedResponse {
                    session_id,
                    id: request_id,
                    payload: Sealed {
                        sealed,
                        nonce: &nonce,
                        aad,
                    },
                }
                .emit()
            });
            self.queue(conn, frame)?;
        }
        let frame = StreamEndFrame {
            session_id,
            id: request_id,
            end: &end,
        }
        .emit();
        self.queue(conn, frame)
    }

    /// Queues an `error` frame with a stable code (model failures, token limits, ...).
    pub fn send_error(
        &mut self,
        conn: ConnectionId,
        session_id: Option<&str>,
        request_id: Option<&str>,
        code: ErrorCode,
        message: &str,
    ) -> Result<(), NodeError> {
        self.send_error_frame(
            ErrorFrame {
                code,
                message,
                sentence: [""; 3],
                session_id,
                id: request_id,
                token_limit: None,
            },
            conn,
        )
    }

    /// Queues the one error the SDK interprets: `TOKEN_LIMIT_EXCEEDED` with `prompt_tokens` and
    /// `context_window_size`, which the SDK turns into a `ContextLimitError`.
    ///
    /// ```
    /// # use sealwire::session::{Node, NodeConfig, SecretKey};
    /// # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// # let mut node = Node::new(SecretKey::from_bytes(&[7; 32]).unwrap(), NodeConfig::default(), ChaCha20Rng::from_seed([0; 32])).unwrap();
    /// let conn = node.connect().unwrap();
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
    ) -> Result<(), NodeError> {
        let frame = ErrorFrame {
            code: ErrorCode::TokenLimitExceeded,
            message: "Prompt exceeds context window",
            sentence: [""; 3],
            session_id,
            id: request_id,
            token_limit: Some(TokenLimit {
                prompt_tokens,
                context_window_size,
            }),
        };
        self.send_error_frame(frame, conn)
    }

    fn send_error_frame(
        &mut self,
        frame: ErrorFrame<'_>,
        conn: ConnectionId,
    ) -> Result<(), NodeError> {
        if !self.table.contains(conn) {
            return Err(NodeError::UnknownConnection);
        }
        self.ensure_room(1, 0)?;
        self.queue(conn, frame.emit())
    }
}
