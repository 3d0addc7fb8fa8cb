//! `encrypted_session_init` and the plaintext sealed inside it ([docs/fabstir-wire.md §2.2,
//! §2.3]), both directions: the client emits them, the node parses them in the order of §2.5
//! up to the cryptography (which is the node's).

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use serde::Deserialize;
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use super::client_frames::{decimal_of, ClientFrame};
use super::json::{
    exact, exact_frame, parse_object_bytes, str_of, u64_of, Field, JsonObject, JsonOut, Obj,
    WriteJson,
};
use super::{
    decode_sealed, is_decimal, read_vector_database, write_vector_database, CamelVectorDatabase,
    ALG,
};
use crate::crypto::secp256k1::PublicKey;
use crate::crypto::{hex, kdf, SecretBytes};
use crate::session::error::NodeError;
use crate::session::VectorDatabase;

/// `encrypted_session_init` ([docs/fabstir-wire.md §2.2]), decoded. The salt is always 32
/// zero bytes and the info empty (the node refuses anything else), so they are not fields.
pub(crate) struct EncryptedSessionInit<'f> {
    pub(crate) session_id: &'f str,
    pub(crate) job_id: &'f str,
    pub(crate) chain_id: u64,
    pub(crate) eph_pub: PublicKey,
    pub(crate) nonce: [u8; 24],
    /// r ‖ s ‖ recovery id (0 or 1).
    pub(crate) signature: [u8; 65],
    /// The AEAD's AAD, also appended to the signed preimage when not empty (never by the SDK).
    pub(crate) aad: Vec<u8>,
    /// Ciphertext ‖ tag (wiped on drop: the node opens it in place).
    pub(crate) sealed: Zeroizing<Vec<u8>>,
}

impl<'f> EncryptedSessionInit<'f> {
    /// Reads the frame in the order of [docs/fabstir-wire.md §2.5], up to the signature's recovery: envelope ids,
    /// payload fields present, strict hex, lengths, parameters, the point, the recovery id.
    pub(crate) fn parse(frame: &'f ClientFrame<'_>) -> Result<Self, NodeError> {
        use NodeError as E;
        let session_id = frame.session_id()?;
        let job_id = decimal_of(&frame.job_id).ok_or(E::InvalidMessage("job_id"))?;
        let chain_id = frame.chain_id()?;
        let p = frame.payload()?;
        let field = |f, name| str_of(f).ok_or(E::MissingPayloadField(name));
        let eph_hex = field(&p.ephPubHex, "ephPubHex")?;
        let salt_hex = field(&p.saltHex, "saltHex")?;
        let nonce_hex = field(&p.nonceHex, "nonceHex")?;
        let ct_hex = field(&p.ciphertextHex, "ciphertextHex")?;
        let sig_hex = field(&p.signatureHex, "signatureHex")?;
        let info_hex = field(&p.info, "info")?;
        let aad_hex = field(&p.aadHex, "aadHex")?;
        let recid = u64_of(&p.recid).ok_or(E::MissingPayloadField("recid"))?;
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
        let sealed = decode_sealed(ct_hex)?;
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
        let eph_pub = PublicKey::from_compressed(&eph_bytes).map_err(|_| E::InvalidPublicKey)?;
        let nonce: [u8; 24] = hex::decode_array(nonce_hex).map_err(bad_hex)?;
        let signature: [u8; 65] = hex::decode_array(sig_hex).map_err(bad_hex)?;
        let v = signature.get(64).copied().unwrap_or(0xff);
        if v > 1 || recid != u64::from(v) {
            return Err(E::InvalidSignature);
        }
        let aad = if aad_hex.is_empty() {
            Vec::new()
        } else {
            hex::decode(aad_hex).map_err(bad_hex)?
        };
        Ok(EncryptedSessionInit {
            session_id,
            job_id,
            chain_id,
            eph_pub,
            nonce,
            signature,
            aad,
            sealed,
        })
    }

    /// SHA-256 of the signed preimage ([docs/fabstir-wire.md §2.4.5]): `"E2EEv1|" ‖ EphPub ‖
    /// "|" ‖ NodePub ‖ "|" ‖ salt ‖ "|" ‖ nonce ‖ "|" ‖ info` (and `"|" ‖ AAD` if any). The
    /// ciphertext and the envelope ids are not covered.
    pub(crate) fn digest(&self, node_public: &[u8; 33]) -> [u8; 32] {
        let sep: &[u8] = b"|";
        let aad_parts: [&[u8]; 2] = if self.aad.is_empty() {
            [&[], &[]]
        } else {
            [sep, &self.aad]
        };
        kdf::sha256(&[
            b"E2EEv1|",
            &self.eph_pub.to_compressed(),
            sep,
            node_public,
            sep,
            &[0u8; 32],
            sep,
            &self.nonce,
            sep,
            aad_parts[0],
            aad_parts[1],
        ])
    }

    /// The frame, in the SDK's key order, in a string of exactly its size.
    pub(crate) fn emit(&self) -> String {
        exact_frame(self)
    }
}

impl WriteJson for EncryptedSessionInit<'_> {
    fn write_json<O: JsonOut + ?Sized>(&self, out: &mut O) {
        let mut o = JsonObject::open(out);
        o.lit("type", "encrypted_session_init");
        let mut p = o.object("payload");
        p.hex("ephPubHex", "", &self.eph_pub.to_compressed())
            .hex("saltHex", "", &[0u8; 32])
            .hex("nonceHex", "", &self.nonce)
            .hex("ciphertextHex", "", &self.sealed)
            .hex("signatureHex", "", &self.signature)
            .u64(
                "recid",
                u64::from(self.signature.get(64).copied().unwrap_or(0)),
            )
            .str("alg", ALG)
            .str("info", "")
            .hex("aadHex", "", &self.aad);
        p.close();
        o.u64("chain_id", self.chain_id)
            .str("session_id", self.session_id)
            .str("job_id", self.job_id);
        o.close();
    }
}

/// The plaintext sealed inside `encrypted_session_init` ([docs/fabstir-wire.md §2.3]).
pub(crate) struct InitPlaintext<'f> {
    pub(crate) session_key: SecretBytes<32>,
    pub(crate) job_id: Cow<'f, str>,
    pub(crate) model: Cow<'f, str>,
    pub(crate) price_per_token: u64,
    /// `0x` + the compressed key (always sent by the SDK).
    pub(crate) recovery_public_key: Option<PublicKey>,
    pub(crate) vector_database: Option<VectorDatabase>,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct InitFields<'a> {
    /// Raw, so that serde_json never copies the key into its (unwiped) scratch buffer.
    #[serde(borrow)]
    sessionKey: Option<&'a RawValue>,
    #[serde(borrow)]
    jobId: Option<Field<'a>>,
    #[serde(borrow)]
    modelName: Option<Field<'a>>,
    #[serde(borrow)]
    pricePerToken: Option<Field<'a>>,
    #[serde(borrow)]
    recoveryPublicKey: Option<Field<'a>>,
    #[serde(borrow)]
    vectorDatabase: Option<Obj<CamelVectorDatabase<'a>>>,
}

impl<'f> InitPlaintext<'f> {
    /// Reads the decrypted plaintext: a UTF-8 JSON object with a 32-byte `sessionKey`
    /// (decoded in constant time, straight from the wiped plaintext: a key written with JSON
    /// escapes, which the SDK never does, is refused), a decimal `jobId`, a string
    /// `modelName`, an integer `pricePerToken` and optional `recoveryPublicKey` and
    /// `vectorDatabase`.
    pub(crate) fn parse(plain: &'f [u8]) -> Result<Self, NodeError> {
        use NodeError::InvalidSessionInit as Invalid;
        let f: InitFields<'f> = parse_object_bytes(plain).ok_or(Invalid("not a JSON object"))?;
        let key_hex = f
            .sessionKey
            .and_then(|raw| raw.get().strip_prefix('"')?.strip_suffix('"'))
            .ok_or(Invalid("sessionKey"))?;
        let key = hex::decode_secret::<32>(key_hex).map_err(|_| Invalid("sessionKey"))?;
        let session_key = SecretBytes::from_slice(&key[..]).ok_or(Invalid("sessionKey"))?;
        let job_id = field_cow(f.jobId)
            .filter(|j| is_decimal(j))
            .ok_or(Invalid("jobId"))?;
        let model = field_cow(f.modelName).ok_or(Invalid("modelName"))?;
        let price_per_token = u64_of(&f.pricePerToken).ok_or(Invalid("pricePerToken"))?;
        let recovery_public_key = match &f.recoveryPublicKey {
            None | Some(Field::Null) => None,
            Some(k) => {
                let bad = Invalid("recoveryPublicKey");
                let h = k.as_str().ok_or(bad)?;
                let b: [u8; 33] = hex::decode_array(h).map_err(|_| bad)?;
                Some(PublicKey::from_compressed(&b).map_err(|_| bad)?)
            }
        };
        let vector_database = read_vector_database(&f.vectorDatabase, Invalid("vectorDatabase"))?;
        Ok(InitPlaintext {
            session_key,
            job_id,
            model,
            price_per_token,
            recovery_public_key,
            vector_database,
        })
    }

    /// The plaintext in the SDK's key order, in wiped storage of exactly its size (measured
    /// first: a growing buffer would leave the `sessionKey` hex in freed memory, whatever the
    /// length of the ids, the model or the vector database).
    pub(crate) fn emit(&self) -> Zeroizing<String> {
        exact(self)
    }
}

impl WriteJson for InitPlaintext<'_> {
    fn write_json<O: JsonOut + ?Sized>(&self, out: &mut O) {
        let mut o = JsonObject::open(out);
        o.secret_hex("sessionKey", self.session_key.expose())
            .str("jobId", &self.job_id)
            .str("modelName", &self.model)
            .u64("pricePerToken", self.price_per_token);
        if let Some(k) = &self.recovery_public_key {
            o.hex("recoveryPublicKey", "0x", &k.to_compressed());
        }
        write_vector_database(&mut o, self.vector_database.as_ref(), true);
        o.close();
    }
}

/// A string field as a `Cow` (borrowed when the frame had no escapes).
fn field_cow(f: Option<Field<'_>>) -> Option<Cow<'_, str>> {
    match f {
        Some(Field::Str(s)) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    //! The init and its plaintext equal serde_json's serialisation of the same fields in the
    //! SDK's order, and parse back to what was emitted.
    use super::*;
    use crate::crypto::secp256k1::SecretKey;
    use serde::Serialize;

    const TRICKY: &str = "m \"q\" \\ \n\u{2}é→";

    #[test]
    fn the_init_frame_is_serde_json_s_and_parses_back() {
        let eph = SecretKey::from_bytes(&[5; 32]).unwrap().public_key();
        let mut signature = [0x11; 65];
        signature[64] = 1;
        let init = EncryptedSessionInit {
            session_id: "12",
            job_id: "345",
            chain_id: 84532,
            eph_pub: eph,
            nonce: [9; 24],
            signature,
            aad: Vec::new(),
            sealed: Zeroizing::new(alloc::vec![0xcd; 40]),
        };
        #[derive(Serialize)]
        #[allow(non_snake_case)]
        struct Payload {
            ephPubHex: String,
            saltHex: String,
            nonceHex: String,
            ciphertextHex: String,
            signatureHex: String,
            recid: u8,
            alg: &'static str,
            info: &'static str,
            aadHex: &'static str,
        }
        #[derive(Serialize)]
        struct Frame {
            r#type: &'static str,
            payload: Payload,
            chain_id: u64,
            session_id: &'static str,
            job_id: &'static str,
        }
        let want = Frame {
            r#type: "encrypted_session_init",
            payload: Payload {
                ephPubHex: hex::encode(&eph.to_compressed()),
                saltHex: "00".repeat(32),
                nonceHex: "09".repeat(24),
                ciphertextHex: "cd".repeat(40),
                signatureHex: hex::encode(&signature),
                recid: 1,
                alg: ALG,
                info: "",
                aadHex: "",
            },
            chain_id: 84532,
            session_id: "12",
            job_id: "345",
        };
        let text = init.emit();
        assert_eq!(text, serde_json::to_string(&want).unwrap());

        let frame = ClientFrame::parse(&text).unwrap();
        let back = EncryptedSessionInit::parse(&frame).unwrap();
        assert_eq!(
            (back.session_id, back.job_id, back.chain_id),
            ("12", "345", 84532)
        );
        assert_eq!(back.eph_pub, eph);
        assert_eq!((back.nonce, back.signature), (init.nonce, init.signature));
        assert_eq!((&back.aad, &*back.sealed), (&init.aad, &*init.sealed));
        assert_eq!(back.digest(&[2; 33]), init.digest(&[2; 33]));
    }

    #[test]
    fn the_init_plaintext_is_serde_json_s_and_parses_back() {
        let recovery = SecretKey::from_bytes(&[6; 32]).unwrap().public_key();
        let plain = InitPlaintext {
            session_key: SecretBytes::new([0xa5; 32]),
            job_id: "345".into(),
            model: TRICKY.into(),
            price_per_token: 0,
            recovery_public_key: Some(recovery),
            vector_database: Some(VectorDatabase {
                manifest_path: TRICKY.into(),
                user_address: "0xabc".into(),
            }),
        };
        #[derive(Serialize)]
        #[allow(non_snake_case)]
        struct Vdb {
            manifestPath: &'static str,
            userAddress: &'static str,
        }
        #[derive(Serialize)]
        #[allow(non_snake_case)]
        struct Plain {
            sessionKey: String,
            jobId: &'static str,
            modelName: &'static str,
            pricePerToken: u64,
            recoveryPublicKey: String,
            vectorDatabase: Vdb,
        }
        let want = Plain {
            sessionKey: "a5".repeat(32),
            jobId: "345",
            modelName: TRICKY,
            pricePerToken: 0,
            recoveryPublicKey: alloc::format!("0x{}", hex::encode(&recovery.to_compressed())),
            vectorDatabase: Vdb {
                manifestPath: TRICKY,
                userAddress: "0xabc",
            },
        };
        let text = plain.emit();
        assert_eq!(*text, serde_json::to_string(&want).unwrap());
        let back = InitPlaintext::parse(text.as_bytes()).unwrap();
        assert!(back.session_key == plain.session_key);
        assert_eq!((&*back.job_id, &*back.model), ("345", TRICKY));
        assert_eq!(back.recovery_public_key, Some(recovery));
        assert_eq!(back.vector_database, plain.vector_database);
    }

    /// The plaintext holding the `sessionKey` is written into a buffer of exactly its size,
    /// whatever the ids, model and vector database (control characters escape to six bytes
    /// each): it never reallocates, so no copy of the key is left in freed memory.
    #[test]
    fn the_init_plaintext_never_outgrows_its_buffer() {
        let nasty = "\u{1}\u{1f}\"\\é→".repeat(100);
        let plain = InitPlaintext {
            session_key: SecretBytes::new([0xa5; 32]),
            job_id: "9".repeat(78).into(),
            model: nasty.as_str().into(),
            price_per_token: u64::MAX,
            recovery_public_key: Some(SecretKey::from_bytes(&[6; 32]).unwrap().public_key()),
            vector_database: Some(VectorDatabase {
                manifest_path: nasty.clone(),
                user_address: nasty.clone(),
            }),
        };
        let text = plain.emit();
        assert_eq!(text.capacity(), text.len());
        assert!(text.len() > 6 * nasty.len());
    }

    #[test]
    fn a_session_key_that_is_not_32_bytes_of_hex_is_refused() {
        // Hex written with JSON escapes (`\u0030` is "0") is refused too: the key would
        // have passed through serde_json's unwiped scratch buffer.
        let escaped = "\\u0030".repeat(64);
        for key in ["zz", "00", &"0g".repeat(32), &escaped] {
            let text = alloc::format!(
                r#"{{"sessionKey":"{key}","jobId":"1","modelName":"m","pricePerToken":0}}"#
            );
            assert_eq!(
                InitPlaintext::parse(text.as_bytes()).err(),
                Some(NodeError::InvalidSessionInit("sessionKey"))
            );
        }
    }
}
