//! Receiving an answer: chunk decryption and the strict checks the SDK lacks.
//!
//! Why strict: the SDK decrypts each chunk under whatever `aadHex` says, skips chunks that fail,
//! ignores `index`, and resolves on any plaintext `stream_end` — so a network attacker can drop,
//! reorder or (with a reflected client message) inject pieces of an answer unnoticed
//! ([docs/fabstir-wire.md §7.5]). Here a chunk must carry AAD `chunk_<i>` for the next `i`
//! (policy [`ChunkAadPolicy::Ordered`]), decrypt, and be whole UTF-8; otherwise the answer
//! fails.

use crate::crypto::aead::TAG_LEN;
use crate::crypto::hex;
use crate::session::wire::node_frames::SealedFields;
use crate::session::wire::{CHUNK_AAD, RESPONSE_FINAL_AAD};

use super::*;

impl<R: rand_core::CryptoRng> Client<R> {
    /// Frames naming another session or request are not part of this answer.
    pub(super) fn belongs_to_answer(&self, frame: &NodeFrame<'_>) -> bool {
        let Some(s) = &self.session else {
            return false;
        };
        if frame
            .session_id()
            .is_some_and(|sid| sid != s.params.session_id)
        {
            return false;
        }
        match (frame.request_id(), &s.answer) {
            (Some(id), Some(a)) => id == a.request_id,
            _ => true,
        }
    }

    pub(super) fn on_chunk(
        &mut self,
        now: Instant,
        frame: &NodeFrame<'_>,
    ) -> Result<(), ClientError> {
        self.room_for_chunk()?;
        let policy = self.config.chunk_aad;
        let s = self.session.as_ref().ok_or(ClientError::NotReady)?;
        let key = s.key.as_ref().ok_or(ClientError::Malformed(
            "encrypted chunk in plaintext session",
        ))?;
        let a = s.answer.as_ref().ok_or(ClientError::NotReady)?;
        let chunk = frame.chunk()?;
        let text = open_sealed(key, &chunk.sealed, |aad| match policy {
            ChunkAadPolicy::Ordered => {
                let mut buf = [0u8; 32];
                aad == wire::indexed_label(&mut buf, CHUNK_AAD, a.next_index)
            }
            _ => true,
        })?;
        if policy == ChunkAadPolicy::Ordered {
            if let Some(i) = chunk.index {
                if i.as_u64() != Some(a.next_index) {
                    return Err(ClientError::OutOfOrder);
                }
            }
        }
        let text = String::from_utf8(text.to_vec()).map_err(|_| ClientError::InvalidUtf8)?;
        self.append_chunk(now, text, chunk.is_final)
    }

    pub(super) fn on_plain_chunk(
        &mut self,
        now: Instant,
        frame: &NodeFrame<'_>,
    ) -> Result<(), ClientError> {
        self.room_for_chunk()?;
        let s = self.session.as_ref().ok_or(ClientError::NotReady)?;
        if s.key.is_some() {
            // A plaintext chunk inside an encrypted session is an injection attempt.
            return Err(ClientError::Malformed(
                "plaintext chunk in encrypted session",
            ));
        }
        if s.answer.is_none() {
            return Err(ClientError::NotReady);
        }
        let text = frame.content()?.to_string();
        // Plaintext chunks carry no trustworthy end marker: only `stream_end` ends them.
        self.append_chunk(now, text, false)
    }

    /// A chunk's event must fit: the event queue stays bounded even against a flood of
    /// empty chunks, and an answer whose pieces cannot all be reported fails.
    fn room_for_chunk(&self) -> Result<(), ClientError> {
        if self.events.has_room(1) {
            Ok(())
        } else {
            Err(ClientError::AnswerTooLarge)
        }
    }

    /// Adds a checked piece to the answer and reports it; the next deadline is the chunk
    /// timeout, or the final grace once the node marked the answer final.
    fn append_chunk(
        &mut self,
        now: Instant,
        text: String,
        is_final: bool,
    ) -> Result<(), ClientError> {
        let (chunk_timeout, final_grace) = (self.config.chunk_timeout, self.config.final_grace);
        let max_answer = self.config.max_answer_len;
        let s = self.session.as_mut().ok_or(ClientError::NotReady)?;
        let a = s.answer.as_mut().ok_or(ClientError::NotReady)?;
        if a.text.len().saturating_add(text.len()) > max_answer {
            return Err(ClientError::AnswerTooLarge);
        }
        a.text.push_str(&text);
        let index = a.next_index;
        a.next_index += 1;
        a.final_seen |= is_final;
        s.deadline = Some(if a.final_seen {
            now + final_grace
        } else {
            now + chunk_timeout
        });
        self.events.push(ClientEvent::Chunk {
            text,
            index,
            is_final,
        });
        Ok(())
    }

    pub(super) fn on_response(
        &mut self,
        now: Instant,
        frame: &NodeFrame<'_>,
    ) -> Result<(), ClientError> {
        let policy = self.config.chunk_aad;
        let grace = self.config.final_grace;
        let s = self.session.as_mut().ok_or(ClientError::NotReady)?;
        let key = s.key.as_ref().ok_or(ClientError::Malformed(
            "encrypted response in plaintext session",
        ))?;
        if s.answer.is_none() {
            return Err(ClientError::NotReady);
        }
        if let Some(sealed) = frame.response()? {
            // Decrypted and discarded, as in the SDK, but it must authenticate.
            open_sealed(key, &sealed, |aad| {
                policy != ChunkAadPolicy::Ordered || aad == RESPONSE_FINAL_AAD
            })?;
        }
        if let Some(a) = s.answer.as_mut() {
            a.final_seen = true;
        }
        s.deadline = Some(now + grace);
        Ok(())
    }

    pub(super) fn finish_answer(
        &mut self,
        finish_reason: Option<String>,
        tokens_used: Option<u64>,
    ) {
        if let Some(s) = self.session.as_mut() {
            if let Some(a) = s.answer.take() {
                self.events.push(ClientEvent::Finished {
                    text: a.text.to_string(),
                    finish_reason,
                    tokens_used,
                });
            }
            s.phase = Phase::Ready;
            s.deadline = None;
        }
    }

    pub(super) fn abort_answer(&mut self) {
        if let Some(s) = self.session.as_mut() {
            s.answer = None;
            s.phase = Phase::Ready;
            s.deadline = None;
        }
    }
}

/// Strict-hex decode, AAD check, then AEAD open under the session key.
fn open_sealed(
    key: &SecretBytes<32>,
    fields: &SealedFields<'_>,
    aad_ok: impl FnOnce(&[u8]) -> bool,
) -> Result<Zeroizing<Vec<u8>>, ClientError> {
    let nonce: [u8; 24] =
        hex::decode_array(fields.nonce).map_err(|_| ClientError::DecryptionFailed)?;
    let aad = hex::decode(fields.aad).map_err(|_| ClientError::DecryptionFailed)?;
    if !aad_ok(&aad) {
        return Err(ClientError::OutOfOrder);
    }
    let sealed = hex::decode(fields.ciphertext).map_err(|_| ClientError::DecryptionFailed)?;
    if sealed.len() < TAG_LEN {
        return Err(ClientError::DecryptionFailed);
    }
    aead::xchacha_open(key.expose(), &nonce, &aad, &sealed)
        .map_err(|_| ClientError::DecryptionFailed)
}
