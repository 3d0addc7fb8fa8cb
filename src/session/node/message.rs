//! `encrypted_message` (spec §3): key lookup by `(connection, session_id)`, AEAD open, AAD
//! `message_<n>` with a strictly increasing `n`, then the inner prompt JSON.
//!
//! Why the index is recorded only after the inner JSON parses: a rejected frame must leave the
//! session exactly as it was.

use super::*;

impl<R: rand_core::CryptoRng> Node<R> {
    // ---------------------------------------------------------------- encrypted message

    pub(super) fn on_encrypted_message(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        env: &InFrame<'_>,
    ) -> Result<(), SessionError> {
        use SessionError as E;
        let session_id = decimal_field(&env.session_id).ok_or(E::InvalidMessage("session_id"))?;
        let request_id = str_field(&env.id)
            .filter(|s| s.len() <= MAX_ECHO_LEN)
            .ok_or(E::InvalidMessage("id"))?;
        let pos = self.find(conn, session_id).ok_or(E::SessionKeyNotFound)?;
        let (pending, encrypted, last_index, key) = {
            let s = self.session(conn, pos).ok_or(E::SessionKeyNotFound)?;
            (
                s.pending.is_some(),
                s.encrypted,
                s.last_index,
                s.key.clone_secret(),
            )
        };
        if pending {
            return Err(E::SessionNotAccepted);
        }
        if !encrypted {
            return Err(E::SessionKeyNotFound);
        }
        let p = env
            .payload
            .as_ref()
            .and_then(|p| p.get())
            .ok_or(E::MissingPayload)?;
        let ct_hex = str_field(&p.ciphertextHex).ok_or(E::MissingPayloadField("ciphertextHex"))?;
        let nonce_hex = str_field(&p.nonceHex).ok_or(E::MissingPayloadField("nonceHex"))?;
        let aad_hex = str_field(&p.aadHex).ok_or(E::MissingPayloadField("aadHex"))?;
        let mut buf = decode_ciphertext(ct_hex)?;
        for (name, h) in [("nonceHex", nonce_hex), ("aadHex", aad_hex)] {
            hex::check(h).map_err(|_| E::InvalidHex(name))?;
        }
        let bad_hex = |_| E::InvalidHex("payload");
        if hex::decoded_len(nonce_hex).map_err(bad_hex)? != 24 {
            return Err(E::InvalidNonceSize);
        }
        let nonce: [u8; 24] = hex::decode_array(nonce_hex).map_err(bad_hex)?;
        let aad_len = hex::decoded_len(aad_hex).map_err(bad_hex)?;
        let mut aad_stack = [0u8; 64];
        let aad_heap;
        let aad: &[u8] = if aad_len <= aad_stack.len() {
            let dst = aad_stack.get_mut(..aad_len).ok_or(E::InvalidAad)?;
            hex::decode_to_slice(aad_hex, dst).map_err(bad_hex)?;
            dst
        } else {
            aad_heap = hex::decode(aad_hex).map_err(bad_hex)?;
            &aad_heap
        };
        let body_len = buf.len().checked_sub(TAG_LEN).ok_or(E::DecryptionFailed)?;
        let (body, tag) = buf.split_at_mut(body_len);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| E::DecryptionFailed)?;
        aead::xchacha_open_in_place(key.expose(), &nonce, aad, body, &tag)
            .map_err(|_| E::DecryptionFailed)?;
        // §7.4: only `message_<n>` inbound (never what the node emits).
        let index = wire::parse_message_aad(aad).ok_or(E::InvalidAad)?;
        if last_index.is_some_and(|last| index <= last) {
            return Err(E::ReplayedMessage);
        }
        let inner: wire::PromptPlain<'_> =
            wire::parse_object_bytes(body).ok_or(E::InvalidMessage("prompt payload"))?;
        self.ensure_room(0, 1)?;
        let web_search = env.web_search.as_ref().and_then(Field::as_bool) == Some(true);
        let request = build_prompt(
            conn,
            session_id,
            request_id,
            inner,
            web_search,
            Some(index),
            true,
        );
        if let Some(s) = self.session_mut(conn, pos) {
            s.last_index = Some(index);
            s.last_active = now;
        }
        self.push_event(NodeEvent::Prompt(request));
        Ok(())
    }
}

/// Strictly decodes `ciphertextHex` straight into a (wiped-on-drop) buffer.
pub(super) fn decode_ciphertext(ct_hex: &str) -> Result<Zeroizing<Vec<u8>>, SessionError> {
    let bad = |_| SessionError::InvalidHex("ciphertextHex");
    let len = hex::decoded_len(ct_hex).map_err(bad)?;
    let mut buf = Zeroizing::new(alloc::vec![0u8; len]);
    hex::decode_to_slice(ct_hex, &mut buf).map_err(bad)?;
    Ok(buf)
}

pub(super) fn build_prompt(
    conn: ConnectionId,
    session_id: &str,
    request_id: &str,
    inner: wire::PromptPlain<'_>,
    web_search: bool,
    index: Option<u64>,
    encrypted: bool,
) -> PromptRequest {
    let images: Vec<PromptImage> = inner
        .images
        .unwrap_or_default()
        .into_iter()
        .map(|i| PromptImage {
            data: i.data.into_owned(),
            format: i.format.into_owned(),
        })
        .collect();
    PromptRequest {
        conn,
        session_id: session_id.to_string(),
        request_id: request_id.to_string(),
        prompt: Zeroizing::new(inner.prompt.into_owned()),
        model: inner.model.map(|m| m.into_owned()),
        max_tokens: inner.max_tokens,
        temperature: inner.temperature,
        thinking: inner.thinking.map(|t| t.into_owned()),
        image_count: images.len(),
        images,
        web_search,
        search_queries: Zeroizing::new(
            inner
                .search_queries
                .unwrap_or_default()
                .into_iter()
                .map(|q| q.into_owned())
                .collect(),
        ),
        index,
        encrypted,
    }
}
