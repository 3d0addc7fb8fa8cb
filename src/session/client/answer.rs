//! Receiving an answer: chunk decryption and the strict checks the SDK lacks.
//!
//! Why strict: the SDK decrypts each chunk under whatever `aadHex` says, skips chunks that fail,
//! ignores `index`, and resolves on any plaintext `stream_end` — so a network attacker can drop,
//! reorder or (with a reflected client message) inject pieces of an answer unnoticed. Here a
//! chunk must carry AAD `chunk_<i>` for the next `i` (policy [`ChunkAadPolicy::Ordered`]),
//! decrypt, and be whole UTF-8; otherwise the answer fails.

use super::*;

impl<R: rand_core::CryptoRng> Client<R> {
    /// Frames naming another session or request are not part of this answer.
    pub(super) fn belongs_to_answer(&self, env: &NodeFrame<'_>) -> bool {
        let Some(s) = &self.session else {
            return false;
        };
        if let Some(sid) = env.session_id.as_ref().and_then(Field::as_str) {
            if sid != s.params.session_id {
                return false;
            }
        }
        if let (Some(id), Some(a)) = (env.id.as_ref().and_then(Field::as_str), &s.answer) {
            if id != a.request_id {
                return false;
            }
        }
        true
    }

    pub(super) fn on_chunk(
        &mut self,
        now: Instant,
        env: &NodeFrame<'_>,
    ) -> Result<(), ClientError> {
        // Bound the event queue even against a flood of empty chunks.
        if self.events.len() >= MAX_EVENTS {
            return Err(ClientError::AnswerTooLarge);
        }
        let policy = self.config.chunk_aad;
        let max_answer = self.config.max_answer_len;
        let chunk_timeout = self.config.chunk_timeout;
        let final_grace = self.config.final_grace;
        let s = self.session.as_mut().ok_or(ClientError::NotReady)?;
        let key = s.key.as_ref().ok_or(ClientError::Malformed(
            "encrypted chunk in plaintext session",
        ))?;
        let a = s.answer.as_mut().ok_or(ClientError::NotReady)?;
        // Payload nested in `payload` or flat on the frame (the SDK accepts both).
        let (ct, nonce, aad, index) = match env.payload.as_ref().and_then(|p| p.get()) {
            Some(p) => (&p.ciphertextHex, &p.nonceHex, &p.aadHex, &p.index),
            None => (&env.ciphertextHex, &env.nonceHex, &env.aadHex, &env.index),
        };
        let text = open_payload(key, ct, nonce, aad, |aad| match policy {
            ChunkAadPolicy::Ordered => {
                let mut buf = [0u8; 32];
                aad == wire::indexed_label(&mut buf, b"chunk_", a.next_index)
            }
            _ => true,
        })?;
        if policy == ChunkAadPolicy::Ordered {
            if let Some(i) = index {
                if i.as_u64() != Some(a.next_index) {
                    return Err(ClientError::OutOfOrder);
                }
            }
        }
        let text = String::from_utf8(text.to_vec()).map_err(|_| ClientError::InvalidUtf8)?;
        if a.text.len().saturating_add(text.len()) > max_answer {
            return Err(ClientError::AnswerTooLarge);
        }
        a.text.push_str(&text);
        let idx = a.next_index;
        a.next_index += 1;
        let is_final = env.is_final.as_ref().is_some_and(truthy);
        if is_final {
            a.final_seen = true;
        }
        s.deadline = Some(if a.final_seen {
            now + final_grace
        } else {
            now + chunk_timeout
        });
        self.events.push_back(ClientEvent::Chunk {
            text,
            index: idx,
            is_final,
        });
        Ok(())
    }

    pub(super) fn on_plain_chunk(
        &mut self,
        now: Instant,
        env: &NodeFrame<'_>,
    ) -> Result<(), ClientError> {
        // Bound the event queue even against a flood of empty chunks.
        if self.events.len() >= MAX_EVENTS {
            return Err(ClientError::AnswerTooLarge);
        }
        let chunk_timeout = self.config.chunk_timeout;
        let max_answer = self.config.max_answer_len;
        let s = self.session.as_mut().ok_or(ClientError::NotReady)?;
        if s.key.is_some() {
            // A plaintext chunk inside an encrypted session is an injection attempt.
            return Err(ClientError::Malformed(
                "plaintext chunk in encrypted session",
            ));
        }
        let a = s.answer.as_mut().ok_or(ClientError::NotReady)?;
        let text = env
            .content
            .as_ref()
            .and_then(Field::as_str)
            .ok_or(ClientError::Malformed("content"))?
            .to_string();
        if a.text.len().saturating_add(text.len()) > max_answer {
            return Err(ClientError::AnswerTooLarge);
        }
        a.text.push_str(&text);
        let idx = a.next_index;
        a.next_index += 1;
        s.deadline = Some(now + chunk_timeout);
        self.events.push_back(ClientEvent::Chunk {
            text,
            index: idx,
            is_final: false,
        });
        Ok(())
    }

    pub(super) fn on_response(
        &mut self,
        now: Instant,
        env: &NodeFrame<'_>,
    ) -> Result<(), ClientError> {
        let policy = self.config.chunk_aad;
        let grace = self.config.final_grace;
        let s = self.session.as_mut().ok_or(ClientError::NotReady)?;
        let key = s.key.as_ref().ok_or(ClientError::Malformed(
            "encrypted response in plaintext session",
        ))?;
        let a = s.answer.as_mut().ok_or(ClientError::NotReady)?;
        if let Some(p) = env.payload.as_ref().and_then(|p| p.get()) {
            if p.ciphertextHex.is_some() {
                // Decrypted and discarded, as in the SDK, but it must authenticate.
                open_payload(key, &p.ciphertextHex, &p.nonceHex, &p.aadHex, |aad| {
                    policy != ChunkAadPolicy::Ordered || aad == RESPONSE_FINAL_AAD
                })?;
            }
        }
        a.final_seen = true;
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
                self.events.push_back(ClientEvent::Finished {
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

pub(super) fn truthy(f: &Field<'_>) -> bool {
    match f {
        Field::Bool(b) => *b,
        Field::U64(n) => *n != 0,
        Field::I64(_) | Field::Array | Field::Object => true,
        Field::F64(x) => *x != 0.0 && !x.is_nan(),
        Field::Str(s) => !s.is_empty(),
        Field::Null => false,
    }
}

pub(super) fn node_error(env: &NodeFrame<'_>) -> ClientEvent {
    let get = |f: &Option<Field<'_>>| f.as_ref().and_then(Field::as_str).map(ToString::to_string);
    ClientEvent::NodeError {
        code: get(&env.code).unwrap_or_default(),
        message: get(&env.message).unwrap_or_else(|| String::from("Request failed")),
    }
}

/// Strict-hex decode, AAD check, then AEAD open under the session key.
pub(super) fn open_payload(
    key: &SecretBytes<32>,
    ct: &Option<Field<'_>>,
    nonce: &Option<Field<'_>>,
    aad: &Option<Field<'_>>,
    aad_ok: impl FnOnce(&[u8]) -> bool,
) -> Result<Zeroizing<Vec<u8>>, ClientError> {
    let ct = ct
        .as_ref()
        .and_then(Field::as_str)
        .ok_or(ClientError::Malformed("ciphertextHex"))?;
    let nonce = nonce
        .as_ref()
        .and_then(Field::as_str)
        .ok_or(ClientError::Malformed("nonceHex"))?;
    let aad = match aad {
        None => "",
        Some(f) => f.as_str().ok_or(ClientError::Malformed("aadHex"))?,
    };
    let nonce: [u8; 24] = hex::decode_array(nonce).map_err(|_| ClientError::DecryptionFailed)?;
    let aad = hex::decode(aad).map_err(|_| ClientError::DecryptionFailed)?;
    if !aad_ok(&aad) {
        return Err(ClientError::OutOfOrder);
    }
    let sealed = hex::decode(ct).map_err(|_| ClientError::DecryptionFailed)?;
    if sealed.len() < TAG_LEN {
        return Err(ClientError::DecryptionFailed);
    }
    aead::xchacha_open(key.expose(), &nonce, &aad, &sealed)
        .map_err(|_| ClientError::DecryptionFailed)
}

/// Every field a node→client frame can carry.
#[derive(serde::Deserialize)]
#[allow(non_snake_case)]
pub(super) struct NodeFrame<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) ty: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) payload: Option<wire::Obj<InPayload<'a>>>,
    #[serde(borrow)]
    pub(super) session_id: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) id: Option<Field<'a>>,
    #[serde(rename = "final", borrow)]
    pub(super) is_final: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) ciphertextHex: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) nonceHex: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) aadHex: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) index: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) content: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) code: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) message: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) finish_reason: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) tokens_used: Option<Field<'a>>,
}
