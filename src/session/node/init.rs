//! `encrypted_session_init` (spec §2): verification in the spec's order, replay check, and the
//! hand-off to the embedder (or an automatic re-key).
//!
//! Why this order: cheap syntactic checks first (envelope, fields, hex, lengths, parameters),
//! then the point and the signature's form, then the expensive work (one recovery, one ECDH,
//! one AEAD), then what needs the plaintext (`jobId`), and the replay cache last so that only
//! well-formed, decryptable inits occupy it.

use super::message::decode_ciphertext;
use super::*;
use crate::session::replay::Full;

/// Decoded, checked fields of an `encrypted_session_init`.
struct VerifiedInit {
    eph: EphKey,
    client: Address,
    session_key: SecretBytes<32>,
    model: String,
    price: u64,
    recovery: Option<PublicKey>,
    vdb: Option<VectorDatabase>,
}

impl<R: rand_core::CryptoRng> Node<R> {
    // ---------------------------------------------------------------- encrypted init

    pub(super) fn on_encrypted_init(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        env: &InFrame<'_>,
    ) -> Result<(), SessionError> {
        let session_id =
            decimal_field(&env.session_id).ok_or(SessionError::InvalidMessage("session_id"))?;
        let job_id = decimal_field(&env.job_id).ok_or(SessionError::InvalidMessage("job_id"))?;
        let chain_id = env
            .chain_id
            .as_ref()
            .and_then(Field::as_u64)
            .ok_or(SessionError::InvalidMessage("chain_id"))?;
        let payload = env
            .payload
            .as_ref()
            .and_then(|p| p.get())
            .ok_or(SessionError::MissingPayload)?;
        let v = self.verify_init(payload, job_id)?;

        // §7.1: node-wide, within the key lifetime, keyed on the decoded point.
        if self.replay.contains(now, &v.eph) {
            return Err(SessionError::ReplayedSessionInit);
        }
        // §7.3: an init never takes over a session of another identity or job.
        let existing = self
            .conns
            .get(&conn)
            .and_then(|c| c.sessions.iter().position(|s| &*s.session_id == session_id));
        if let Some(pos) = existing {
            let s = self
                .conns
                .get(&conn)
                .and_then(|c| c.sessions.get(pos))
                .ok_or(SessionError::UnknownConnection)?;
            if s.pending.is_some() {
                return Err(SessionError::SessionNotAccepted);
            }
            if !s.encrypted || s.client_address != Some(v.client) || &*s.job_id != job_id {
                return Err(SessionError::NotAuthorized);
            }
            // Automatic re-key (§2.1): the SDK re-inits before every prompt.
            self.ensure_room(1, 1)?;
            self.replay_room(now, &v.client)?;
            self.replay.insert(now, v.eph, v.client);
            if let Some(s) = self
                .conns
                .get_mut(&conn)
                .and_then(|c| c.sessions.get_mut(pos))
            {
                // Assigning drops (and wipes) the old key.
                s.key = v.session_key;
                s.last_index = None;
                s.installed = now;
                s.last_active = now;
                s.chain_id = chain_id;
                s.stream = None;
            }
            let ack = ack_frame(session_id, Some(job_id), Some(chain_id), None);
            self.queue(conn, ack)?;
            self.push_event(NodeEvent::SessionRekeyed {
                conn,
                session_id: session_id.to_string(),
            });
            return Ok(());
        }
        self.check_new_session_room(conn)?;
        self.replay_room(now, &v.client)?;
        self.ensure_room(0, 1)?;
        self.replay.insert(now, v.eph, v.client);
        let request = SessionRequest {
            conn,
            session_id: session_id.to_string(),
            job_id: job_id.to_string(),
            chain_id,
            client_address: Some(v.client),
            claimed_user_address: None,
            model: v.model,
            price_per_token: v.price,
            recovery_public_key: v.recovery,
            vector_database: v.vdb,
            encrypted: true,
        };
        self.install_pending(
            now,
            conn,
            session_id,
            job_id,
            chain_id,
            Some(v.client),
            true,
            v.session_key,
            Pending {
                eph: Some(v.eph),
                init_id: None,
            },
        );
        self.push_event(NodeEvent::SessionRequested(request));
        Ok(())
    }

    /// Room in the replay cache for one more key of `client` (node-wide and within the
    /// client's quota), or the `CAPACITY` error naming which limit was hit.
    fn replay_room(&mut self, now: Instant, client: &Address) -> Result<(), SessionError> {
        self.replay
            .room_for(now, client)
            .map_err(|full| match full {
                Full::Node => SessionError::Capacity("replay cache"),
                Full::Client => SessionError::Capacity("replay cache quota of this client"),
            })
    }

    /// Spec §2.5 from the payload fields to the decrypted, checked plaintext.
    fn verify_init(&self, p: &InPayload<'_>, job_id: &str) -> Result<VerifiedInit, SessionError> {
        use SessionError as E;
        let eph_hex = str_field(&p.ephPubHex).ok_or(E::MissingPayloadField("ephPubHex"))?;
        let salt_hex = str_field(&p.saltHex).ok_or(E::MissingPayloadField("saltHex"))?;
        let nonce_hex = str_field(&p.nonceHex).ok_or(E::MissingPayloadField("nonceHex"))?;
        let ct_hex = str_field(&p.ciphertextHex).ok_or(E::MissingPayloadField("ciphertextHex"))?;
        let sig_hex = str_field(&p.signatureHex).ok_or(E::MissingPayloadField("signatureHex"))?;
        let info_hex = str_field(&p.info).ok_or(E::MissingPayloadField("info"))?;
        let aad_hex = str_field(&p.aadHex).ok_or(E::MissingPayloadField("aadHex"))?;
        let recid = p
            .recid
            .as_ref()
            .and_then(Field::as_u64)
            .ok_or(E::MissingPayloadField("recid"))?;

        for (name, h) in [
            ("ephPubHex", eph_hex),
            ("saltHex", salt_hex),
            ("nonceHex", nonce_hex),
            ("signatureHex", sig_hex),
            ("info", info_hex),
            ("aadHex", aad_hex),
        ] {
            hex::check(h).map_err(|_| E::InvalidHex(name))?;
        }
        // Decoding validates: one pass over the largest field.
        let mut buf = decode_ciphertext(ct_hex)?;
        let bad_hex = |_| E::InvalidHex("payload");
        if hex::decoded_len(eph_hex).map_err(bad_hex)? != 33 {
            return Err(E::InvalidPublicKey);
        }
        if hex::decoded_len(nonce_hex).map_err(bad_hex)? != 24 {
            return Err(E::InvalidNonceSize);
        }
        if hex::decoded_len(sig_hex).map_err(bad_hex)? != 65 {
            return Err(E::InvalidSignature);
        }
        // Parameters: the SDK only ever sends the zero salt and an empty info.
        let salt: [u8; 32] = hex::decode_array(salt_hex).map_err(|_| E::UnsupportedParameters)?;
        if salt != [0u8; 32] || hex::decoded_len(info_hex).map_err(bad_hex)? != 0 {
            return Err(E::UnsupportedParameters);
        }
        let eph_bytes: [u8; 33] = hex::decode_array(eph_hex).map_err(bad_hex)?;
        let eph = PublicKey::from_compressed(&eph_bytes).map_err(|_| E::InvalidPublicKey)?;
        let nonce: [u8; 24] = hex::decode_array(nonce_hex).map_err(bad_hex)?;
        let sig: [u8; 65] = hex::decode_array(sig_hex).map_err(bad_hex)?;
        let (rs, v) = sig.split_at(64);
        let v = v.first().copied().unwrap_or(0xff);
        if v > 1 || recid != u64::from(v) {
            return Err(E::InvalidSignature);
        }
        let rs: &[u8; 64] = rs.try_into().map_err(|_| E::InvalidSignature)?;
        let mut aad = Vec::new();
        if !aad_hex.is_empty() {
            aad = hex::decode(aad_hex).map_err(bad_hex)?;
        }
        // §2.4.5: preimage over EphPub, NodePub, salt, nonce, info (and AAD if any).
        let sep: &[u8] = b"|";
        let aad_parts: [&[u8]; 2] = if aad.is_empty() {
            [&[], &[]]
        } else {
            [sep, &aad]
        };
        let digest = kdf::sha256(&[
            b"E2EEv1|",
            &eph_bytes,
            sep,
            &self.public_compressed,
            sep,
            &salt,
            sep,
            &nonce,
            sep,
            aad_parts[0],
            aad_parts[1],
        ]);
        let client = PublicKey::recover_from_prehash(&digest, rs, v)
            .map_err(|_| E::InvalidSignature)?
            .address();

        // ECDH (raw x) → HKDF(zero salt, empty info) → XChaCha20-Poly1305 open.
        let x = self.key.ecdh_x(&eph);
        let k = kdf::hkdf_sha256(&salt, &x[..], b"");
        let body_len = buf.len().checked_sub(TAG_LEN).ok_or(E::DecryptionFailed)?;
        let (body, tag) = buf.split_at_mut(body_len);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| E::DecryptionFailed)?;
        aead::xchacha_open_in_place(&k, &nonce, &aad, body, &tag)
            .map_err(|_| E::DecryptionFailed)?;

        let plain: wire::InitPlain<'_> =
            wire::parse_object_bytes(body).ok_or(E::InvalidSessionInit("not a JSON object"))?;
        let sk_hex = str_field(&plain.sessionKey).ok_or(E::InvalidSessionInit("sessionKey"))?;
        let session_key = SecretBytes::new(
            hex::decode_array::<32>(sk_hex).map_err(|_| E::InvalidSessionInit("sessionKey"))?,
        );
        let inner_job = decimal_field(&plain.jobId).ok_or(E::InvalidSessionInit("jobId"))?;
        let model = str_field(&plain.modelName).ok_or(E::InvalidSessionInit("modelName"))?;
        let price = plain
            .pricePerToken
            .as_ref()
            .and_then(Field::as_u64)
            .ok_or(E::InvalidSessionInit("pricePerToken"))?;
        let recovery = match &plain.recoveryPublicKey {
            None | Some(Field::Null) => None,
            Some(f) => {
                let h = f
                    .as_str()
                    .ok_or(E::InvalidSessionInit("recoveryPublicKey"))?;
                let b: [u8; 33] =
                    hex::decode_array(h).map_err(|_| E::InvalidSessionInit("recoveryPublicKey"))?;
                Some(
                    PublicKey::from_compressed(&b)
                        .map_err(|_| E::InvalidSessionInit("recoveryPublicKey"))?,
                )
            }
        };
        let vdb = match &plain.vectorDatabase {
            None => None,
            Some(o) => {
                let o = o.get().ok_or(E::InvalidSessionInit("vectorDatabase"))?;
                Some(VectorDatabase {
                    manifest_path: str_field(&o.manifestPath)
                        .ok_or(E::InvalidSessionInit("vectorDatabase"))?
                        .to_string(),
                    user_address: str_field(&o.userAddress)
                        .ok_or(E::InvalidSessionInit("vectorDatabase"))?
                        .to_string(),
                })
            }
        };
        if inner_job != job_id {
            return Err(E::JobIdMismatch);
        }
        Ok(VerifiedInit {
            eph: eph_bytes,
            client,
            session_key,
            model: model.to_string(),
            price,
            recovery,
            vdb,
        })
    }
}
