//! Receiving an answer: chunk decryption, the strict checks the SDK lacks, and the end of
//! answer.
//!
//! Why strict: the SDK decrypts each chunk under whatever `aadHex` says, skips chunks that fail,
//! ignores `index`, and resolves on any plaintext `stream_end` — so a network attacker can drop,
//! reorder or (with a reflected client message) inject pieces of an answer unnoticed
//! ([docs/fabstir-wire.md §7.5]). Here a chunk must carry AAD `chunk_<i>` for the next `i`
//! (policy [`ChunkAadPolicy::Ordered`]), decrypt, and be whole UTF-8; otherwise the answer
//! fails. And an encrypted answer is finished only by the node's sealed end of answer,
//! `encrypted_response` under AAD `encrypted_response_final_<n>` with `n` equal to the chunks
//! received: `stream_end` and `final` travel in clear, so an attacker holding back the last
//! chunks could otherwise end the answer early. Without that frame the answer ends as
//! [`ClientEvent::Truncated`].

use crate::crypto::aead::TAG_LEN;
use crate::crypto::hex;
use crate::session::wire::node_frames::SealedFields;
use crate::session::wire::{CHUNK_AAD, RESPONSE_FINAL_AAD};

use super::*;

/// What ended an answer ([`Client::end_answer`]).
pub(super) enum EndedBy {
    /// `stream_end` arrived, with its (unauthenticated) finish reason and token count.
    StreamEnd(Option<String>, Option<u64>),
    /// The deadline passed (the chunk wait, or the grace after an end).
    Timeout,
    /// The sealed end of answer counts chunks that never arrived.
    CountShort,
    /// The application cancelled.
    Cancel,
}

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
        if matches!(a.ending, Ending::Sealed { .. }) {
            // The node sealed how many chunks the answer has: one more is not its.
            return Err(ClientError::OutOfOrder);
        }
        let chunk = frame.chunk()?;
        let opened = open_sealed(key, &chunk.sealed, |aad| match policy {
            ChunkAadPolicy::Ordered => {
                let mut buf = [0u8; wire::LABEL_LEN];
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
        let text =
            String::from_utf8(opened.plain.to_vec()).map_err(|_| ClientError::InvalidUtf8)?;
        self.first_use(opened.nonce_id)?;
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
    /// timeout, or the final grace once the node said the answer is over.
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
        push_wiped(&mut a.text, &text);
        let index = a.next_index;
        // One chunk per frame, each at least a frame's overhead: the count cannot reach
        // u64::MAX before memory runs out, and saturating keeps it well defined regardless.
        a.next_index = a.next_index.saturating_add(1);
        if is_final && matches!(a.ending, Ending::Open) {
            a.ending = Ending::Claimed;
        }
        s.deadline = Some(if matches!(a.ending, Ending::Open) {
            now.saturating_add(chunk_timeout)
        } else {
            now.saturating_add(final_grace)
        });
        self.events.push(ClientEvent::Chunk {
            text,
            index,
            is_final,
        });
        Ok(())
    }

    /// `encrypted_response`: the node's end of answer. Sealed under
    /// `encrypted_response_final_<n>` with `n` the chunks received, it proves the answer whole;
    /// the reference node's `encrypted_response_final` (no count) or a missing payload only
    /// claims the end; a count above the chunks received proves chunks missing (`Truncated`
    /// at once), one below proves chunks that are not this answer's (`OutOfOrder`).
    pub(super) fn on_response(
        &mut self,
        now: Instant,
        frame: &NodeFrame<'_>,
    ) -> Result<(), ClientError> {
        let policy = self.config.chunk_aad;
        let grace = self.config.final_grace;
        let max_frames = self.config.max_frames_per_key;
        let s = self.session.as_mut().ok_or(ClientError::NotReady)?;
        let key = s.key.as_ref().ok_or(ClientError::Malformed(
            "encrypted response in plaintext session",
        ))?;
        let a = s.answer.as_ref().ok_or(ClientError::NotReady)?;
        if matches!(a.ending, Ending::Sealed { .. }) {
            return Err(ClientError::OutOfOrder); // a second end of the same answer
        }
        let ending = match frame.response()? {
            // Decrypted and discarded by the SDK; here it must authenticate, and only the
            // count-sealing form ends the answer.
            Some(sealed) => {
                let opened = open_sealed(key, &sealed, |aad| {
                    policy != ChunkAadPolicy::Ordered
                        || aad == RESPONSE_FINAL_AAD
                        || wire::parse_response_end_aad(aad).is_some()
                })?;
                s.first_use(opened.nonce_id, max_frames)?;
                let a = s.answer.as_mut().ok_or(ClientError::NotReady)?;
                match wire::parse_response_end_aad(&opened.aad) {
                    Some(n) if n == a.next_index => Ending::Sealed {
                        finish_reason: core::str::from_utf8(&opened.plain).ok().map(String::from),
                    },
                    Some(n) if n > a.next_index => {
                        self.end_answer(EndedBy::CountShort);
                        return Ok(());
                    }
                    Some(_) => return Err(ClientError::OutOfOrder),
                    None => Ending::Claimed,
                }
            }
            None => Ending::Claimed,
        };
        let a = s.answer.as_mut().ok_or(ClientError::NotReady)?;
        a.ending = ending;
        s.deadline = Some(now.saturating_add(grace));
        Ok(())
    }

    /// Records a sealed frame's nonce, refusing one seen before under this key.
    fn first_use(&mut self, nonce_id: u64) -> Result<(), ClientError> {
        let max = self.config.max_frames_per_key;
        self.session
            .as_mut()
            .ok_or(ClientError::NotReady)?
            .first_use(nonce_id, max)
    }

    /// Ends the answer in progress and reports how: `Finished` when its end is proven (or
    /// nothing can be: plaintext, cancel), `Truncated` when part of it arrived but not its
    /// sealed end, `TimedOut` when nothing arrived.
    pub(super) fn end_answer(&mut self, end: EndedBy) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let plaintext = s.key.is_none();
        let answer = s.answer.take();
        s.phase = Phase::Ready;
        s.deadline = None;
        let Some(a) = answer else {
            return;
        };
        let text = || String::from(a.text.as_str());
        let event = match (end, &a.ending) {
            (EndedBy::Cancel, _) => ClientEvent::Finished {
                text: text(),
                finish_reason: None,
                tokens_used: None,
                authenticated: false,
            },
            (EndedBy::StreamEnd(reason, tokens), Ending::Sealed { finish_reason }) => {
                ClientEvent::Finished {
                    text: text(),
                    finish_reason: finish_reason.clone().or(reason),
                    tokens_used: tokens,
                    authenticated: true,
                }
            }
            (EndedBy::Timeout, Ending::Sealed { finish_reason }) => ClientEvent::Finished {
                text: text(),
                finish_reason: finish_reason.clone(),
                tokens_used: None,
                authenticated: true,
            },
            // Legacy plaintext answers have nothing to authenticate: stream_end ends them.
            (EndedBy::StreamEnd(reason, tokens), _) if plaintext => ClientEvent::Finished {
                text: text(),
                finish_reason: reason,
                tokens_used: tokens,
                authenticated: false,
            },
            (EndedBy::Timeout, Ending::Open) if a.next_index == 0 => ClientEvent::TimedOut,
            (EndedBy::StreamEnd(..) | EndedBy::Timeout | EndedBy::CountShort, _) => {
                ClientEvent::Truncated { text: text() }
            }
        };
        self.events.push(event);
    }

    pub(super) fn abort_answer(&mut self) {
        if let Some(s) = self.session.as_mut() {
            s.answer = None;
            s.phase = Phase::Ready;
            s.deadline = None;
        }
    }
}

/// Appends `piece` to `buf` without leaving a copy of `buf`'s text in freed memory: when it
/// must grow, the text moves to a new buffer (at least twice as large) and the old one is
/// wiped as it drops (`String::push_str` would reallocate and free it unwiped).
fn push_wiped(buf: &mut Zeroizing<String>, piece: &str) {
    let needed = buf.len().saturating_add(piece.len());
    if needed > buf.capacity() {
        let mut bigger = Zeroizing::new(String::with_capacity(
            needed.max(buf.capacity().saturating_mul(2)),
        ));
        bigger.push_str(buf);
        *buf = bigger;
    }
    buf.push_str(piece);
}

/// Strict-hex decode, AAD check, then AEAD open under the session key: (plaintext, AAD).
fn open_sealed(
    key: &SecretBytes<32>,
    fields: &SealedFields<'_>,
    aad_ok: impl FnOnce(&[u8]) -> bool,
) -> Result<Opened, ClientError> {
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
    let plain = aead::xchacha_open(key.expose(), &nonce, &aad, &sealed)
        .map_err(|_| ClientError::DecryptionFailed)?;
    let mut id = [0u8; 8];
    id.copy_from_slice(nonce.get(..8).unwrap_or(&[0; 8]));
    Ok(Opened {
        plain,
        aad,
        nonce_id: u64::from_le_bytes(id),
    })
}

/// What [`open_sealed`] returns.
struct Opened {
    plain: Zeroizing<Vec<u8>>,
    aad: Vec<u8>,
    /// The first 8 bytes of the (random) nonce: tells this frame from every other one the
    /// node sealed under the key.
    nonce_id: u64,
}
