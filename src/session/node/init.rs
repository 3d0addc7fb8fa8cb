//! `encrypted_session_init` ([docs/fabstir-wire.md §2]): verification in the spec's order,
//! the replay check, and the hand-off to the embedder (or an automatic re-key).
//!
//! Why this order: cheap syntactic checks first (envelope, fields, hex, lengths, parameters,
//! the point, the recovery id byte: [`EncryptedSessionInit::parse`]), then the replay cache,
//! looked up with the decoded ephemeral point, so that a replayed init costs a parse and a
//! lookup (microseconds) instead of a recovery, an ECDH and an AEAD (~150 µs); then the
//! expensive work, then what needs the plaintext (`jobId`). The cache is *filled* last, so
//! that only well-formed, decryptable inits occupy it. A replay whose other fields were
//! altered after the recovery id (a bad `r`/`s`, a tampered ciphertext) is therefore answered
//! `REPLAYED_SESSION_INIT`, not `INVALID_SIGNATURE` or `DECRYPTION_FAILED`: its ephemeral key
//! alone condemns it ([docs/fabstir-wire.md §2.5]).

use alloc::string::{String, ToString};

use super::table::NewSession;
use super::*;
use crate::crypto::aead::{self, TAG_LEN};
use crate::crypto::{kdf, SecretBytes};
use crate::session::replay::{EphKey, Full};
use crate::session::wire::{EncryptedSessionInit, InitPlaintext};
use crate::session::VectorDatabase;

/// What an init proved and carried, once opened.
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
    pub(super) fn on_encrypted_init(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        frame: &ClientFrame<'_>,
    ) -> Result<(), NodeError> {
        let mut init = EncryptedSessionInit::parse(frame)?;
        // docs/fabstir-wire.md §7.1: node-wide, within the key lifetime, keyed on the decoded
        // point, and before any costly work so that replays are cheap to refuse.
        if self.replay.contains(now, &init.eph_pub.to_compressed()) {
            return Err(NodeError::ReplayedSessionInit);
        }
        let v = self.open_init(&mut init)?;
        let (session_id, job_id, chain_id) = (init.session_id, init.job_id, init.chain_id);

        // docs/fabstir-wire.md §7.3: an init never takes over a session of another identity,
        // job or chain.
        if let Some(slot) = self.table.find(conn, session_id) {
            let s = self.table.get(slot).ok_or(NodeError::UnknownConnection)?;
            if s.is_pending() {
                return Err(NodeError::SessionNotAccepted);
            }
            if !s.rekeyable_by(&v.client, job_id, chain_id) {
                return Err(NodeError::NotAuthorized);
            }
            // Automatic re-key (docs/fabstir-wire.md §2.1): the SDK re-inits before every prompt.
            self.ensure_room(1, 1)?;
            self.replay_room(now, &v.client)?;
            self.replay.insert(now, v.eph, v.client);
            if let Some(s) = self.table.get_mut(slot) {
                s.rekey(now, v.session_key); // the old key is wiped
            }
            let ack = InitAck {
                session_id,
                job_id,
                chain_id,
                id: None,
            }
            .emit();
            self.queue(conn, ack)?;
            self.events.push(NodeEvent::SessionRekeyed {
                conn,
                session_id: session_id.to_string(),
            });
            return Ok(());
        }
        self.table.check_room(conn)?;
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
        let new = NewSession {
            session_id,
            job_id,
            chain_id,
            client_address: Some(v.client),
            encrypted: true,
            key: v.session_key,
            pending: table::Pending {
                eph: Some(v.eph),
                init_id: None,
            },
        };
        self.table.insert_pending(now, conn, new);
        self.events.push(NodeEvent::SessionRequested(request));
        Ok(())
    }

    /// Room in the replay cache for one more key of `client` (node-wide and within the
    /// client's quota), or the `CAPACITY` error naming which limit was hit.
    fn replay_room(&mut self, now: Instant, client: &Address) -> Result<(), NodeError> {
        self.replay
            .room_for(now, client)
            .map_err(|full| match full {
                Full::Node => NodeError::Capacity("replay cache"),
                Full::Client => NodeError::Capacity("replay cache quota of this client"),
            })
    }

    /// [docs/fabstir-wire.md §2.5] from the parsed frame to the checked plaintext: check the
    /// signature's form, derive the key, open the ciphertext in place, recover the signer,
    /// read the plaintext, compare the job ids.
    ///
    /// Why the recovery comes after the AEAD: anyone can write a well-formed signature and a
    /// ciphertext for another node's key, or flip a byte of a recorded one; such inits now
    /// cost an ECDH and fail at the tag, without the public-key recovery that would double
    /// their price. An init is accepted only once both hold, so the order changes no outcome
    /// but the code of an init wrong in both ways (`DECRYPTION_FAILED`).
    fn open_init(&self, init: &mut EncryptedSessionInit<'_>) -> Result<VerifiedInit, NodeError> {
        use NodeError as E;
        let digest = init.digest(&self.public_compressed);
        let (rs, v) = init.signature.split_at(64);
        let rs: [u8; 64] = rs.try_into().map_err(|_| E::InvalidSignature)?;
        let v = v.first().copied().unwrap_or(0xff);
        // The form (1 ≤ r, s < n, low S): cheap, and the same check the recovery makes.
        match k256::ecdsa::Signature::from_slice(&rs) {
            Ok(sig) if sig.normalize_s() == sig => {}
            _ => return Err(E::InvalidSignature),
        }

        // ECDH (raw x) → HKDF(zero salt, empty info) → XChaCha20-Poly1305 open.
        let x = self.key.ecdh_x(&init.eph_pub);
        let k = kdf::hkdf_sha256(&[0u8; 32], &x[..], b"");
        let body_len = init
            .sealed
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(E::DecryptionFailed)?;
        let (body, tag) = init.sealed.split_at_mut(body_len);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| E::DecryptionFailed)?;
        aead::xchacha_open_in_place(&k, &init.nonce, &init.aad, body, &tag)
            .map_err(|_| E::DecryptionFailed)?;

        let client = PublicKey::recover_from_prehash(&digest, &rs, v)
            .map_err(|_| E::InvalidSignature)?
            .address();
        let plain = InitPlaintext::parse(body)?;
        if plain.job_id != init.job_id {
            return Err(E::JobIdMismatch);
        }
        Ok(VerifiedInit {
            eph: init.eph_pub.to_compressed(),
            client,
            session_key: plain.session_key,
            model: plain.model.into_owned(),
            price: plain.price_per_token,
            recovery: plain.recovery_public_key,
            vdb: plain.vector_database,
        })
    }
}
