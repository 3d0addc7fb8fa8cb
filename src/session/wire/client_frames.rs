//! The frames a client sends to a node, both directions: the [`Client`](crate::session::Client)
//! emits them, the [`Node`](crate::session::Node) parses them ([docs/fabstir-wire.md §2, §3,
//! §4.1 for `stream_cancel`, §5.3 for the plaintext frames]).
//!
//! Parsers report the first failure as the [`NodeError`] whose code the node's `error` frame
//! carries, in the order of §2.5 and §3.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::json::{parse_object, parse_object_bytes, str_of, u64_of, Field, JsonObject, Obj};
use super::{
    decode_sealed, is_decimal, read_vector_database, write_vector_database, Aad,
    CamelVectorDatabase, PayloadFields, Sealed, SealedIn, SnakeVectorDatabase, ALG, MAX_ECHO_LEN,
};
use crate::crypto::secp256k1::PublicKey;
use crate::crypto::{hex, kdf, SecretBytes};
use crate::session::error::NodeError;
use crate::session::{PromptImage, VectorDatabase};

/// `{"type":"ping"}` (the heartbeat; the node answers `pong`).
pub(crate) const PING: &str = r#"{"type":"ping"}"#;

/// Every field any client→node frame can carry (unknown fields are skipped).
#[derive(Deserialize)]
pub(crate) struct ClientFrame<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<Field<'a>>,
    #[serde(borrow)]
    payload: Option<Obj<PayloadFields<'a>>>,
    #[serde(borrow)]
    session_id: Option<Field<'a>>,
    #[serde(borrow)]
    job_id: Option<Field<'a>>,
    #[serde(rename = "jobId", borrow)]
    job_id_camel: Option<Field<'a>>,
    #[serde(borrow)]
    chain_id: Option<Field<'a>>,
    #[serde(borrow)]
    id: Option<Field<'a>>,
    #[serde(borrow)]
    user_address: Option<Field<'a>>,
    #[serde(borrow)]
    vector_database: Option<Obj<SnakeVectorDatabase<'a>>>,
    #[serde(borrow)]
    prompt: Option<Field<'a>>,
    #[serde(borrow)]
    request: Option<Obj<PlainRequest<'a>>>,
    #[serde(borrow)]
    reason: Option<Field<'a>>,
    #[serde(borrow)]
    web_search: Option<Field<'a>>,
    // `search_queries` in the envelope is deliberately not read: it repeats the prompt in
    // clear ([docs/fabstir-wire.md §7.6]); the node uses the copy inside the ciphertext.
}

/// The frame types a node accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientFrameKind {
    EncryptedSessionInit,
    EncryptedMessage,
    SessionInit,
    Prompt,
    Ping,
    StreamCancel,
}

/// What the `error` frame for a rejected frame echoes back: its `session_id` (if decimal) and
/// `id` (if short enough).
#[derive(Clone, Copy, Default)]
pub(crate) struct Echo<'f> {
    pub(crate) session_id: Option<&'f str>,
    pub(crate) id: Option<&'f str>,
}

impl<'a> ClientFrame<'a> {
    /// Parses any client frame (a JSON object; nested containers are skipped).
    pub(crate) fn parse(text: &'a str) -> Result<Self, NodeError> {
        parse_object(text).ok_or(NodeError::InvalidMessage("frame is not a JSON object"))
    }

    /// The frame's type.
    pub(crate) fn kind(&self) -> Result<ClientFrameKind, NodeError> {
        let ty = str_of(&self.ty).ok_or(NodeError::InvalidMessage("no string type"))?;
        Ok(match ty {
            "encrypted_session_init" => ClientFrameKind::EncryptedSessionInit,
            "encrypted_message" => ClientFrameKind::EncryptedMessage,
            "session_init" => ClientFrameKind::SessionInit,
            "prompt" => ClientFrameKind::Prompt,
            "ping" => ClientFrameKind::Ping,
            "stream_cancel" => ClientFrameKind::StreamCancel,
            _ => return Err(NodeError::InvalidMessage("unknown type")),
        })
    }

    /// What an error frame about this frame echoes.
    pub(crate) fn echo(&self) -> Echo<'_> {
        Echo {
            session_id: self.session_id().ok(),
            id: self.short_id(),
        }
    }

    /// Envelope `session_id`: a canonical decimal.
    pub(crate) fn session_id(&self) -> Result<&str, NodeError> {
        str_of(&self.session_id)
            .filter(|s| is_decimal(s))
            .ok_or(NodeError::InvalidMessage("session_id"))
    }

    /// Envelope `id` when it is short enough to be echoed.
    fn short_id(&self) -> Option<&str> {
        str_of(&self.id).filter(|s| s.len() <= MAX_ECHO_LEN)
    }

    /// Envelope `id` of a request: required, echoed in every answer frame.
    fn request_id(&self) -> Result<&str, NodeError> {
        self.short_id().ok_or(NodeError::InvalidMessage("id"))
    }

    fn chain_id(&self) -> Result<u64, NodeError> {
        u64_of(&self.chain_id).ok_or(NodeError::InvalidMessage("chain_id"))
    }

    fn payload(&self) -> Result<&PayloadFields<'a>, NodeError> {
        self.payload
            .as_ref()
            .and_then(Obj::get)
            .ok_or(NodeError::MissingPayload)
    }

    fn web_search(&self) -> bool {
        self.web_search.as_ref().and_then(Field::as_bool) == Some(true)
    }
}

fn decimal_of<'x>(f: &'x Option<Field<'_>>) -> Option<&'x str> {
    str_of(f).filter(|s| is_decimal(s))
}

// ------------------------------------------------------------------ encrypted_session_init

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
    /// Reads the frame in the order of §2.5, up to the signature's recovery: envelope ids,
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

    /// The frame, in the SDK's key order.
    pub(crate) fn emit(&self) -> String {
        let mut out = String::with_capacity(self.sealed.len() * 2 + 600);
        let mut o = JsonObject::open(&mut out);
        o.str("type", "encrypted_session_init");
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
        out
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
    #[serde(borrow)]
    sessionKey: Option<Field<'a>>,
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
    /// (decoded in constant time), a decimal `jobId`, a string `modelName`, an integer
    /// `pricePerToken` and optional `recoveryPublicKey` and `vectorDatabase`.
    pub(crate) fn parse(plain: &'f [u8]) -> Result<Self, NodeError> {
        use NodeError::InvalidSessionInit as Invalid;
        let f: InitFields<'f> = parse_object_bytes(plain).ok_or(Invalid("not a JSON object"))?;
        let key_hex = str_of(&f.sessionKey).ok_or(Invalid("sessionKey"))?;
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
        let vector_database = match &f.vectorDatabase {
            None => None,
            Some(o) => {
                let bad = Invalid("vectorDatabase");
                let o = o.get().ok_or(bad)?;
                Some(read_vector_database(
                    &o.manifest_path,
                    &o.user_address,
                    bad,
                )?)
            }
        };
        Ok(InitPlaintext {
            session_key,
            job_id,
            model,
            price_per_token,
            recovery_public_key,
            vector_database,
        })
    }

    /// The plaintext in the SDK's key order, in wiped storage sized up front.
    pub(crate) fn emit(&self) -> Zeroizing<String> {
        let vdb_len = self.vector_database.as_ref().map_or(0, |v| {
            2 * (v.manifest_path.len() + v.user_address.len()) + 64
        });
        let mut out = Zeroizing::new(String::with_capacity(
            256 + 2 * (self.model.len() + self.job_id.len()) + vdb_len,
        ));
        let mut o = JsonObject::open(&mut out);
        o.secret_hex("sessionKey", self.session_key.expose())
            .str("jobId", &self.job_id)
            .str("modelName", &self.model)
            .u64("pricePerToken", self.price_per_token);
        if let Some(k) = &self.recovery_public_key {
            o.hex("recoveryPublicKey", "0x", &k.to_compressed());
        }
        if let Some(v) = &self.vector_database {
            let mut d = o.object("vectorDatabase");
            write_vector_database(v, &mut d, true);
            d.close();
        }
        o.close();
        out
    }
}

/// A string field as a `Cow` (borrowed when the frame had no escapes).
fn field_cow(f: Option<Field<'_>>) -> Option<Cow<'_, str>> {
    match f {
        Some(Field::Str(s)) => Some(s),
        _ => None,
    }
}

// ------------------------------------------------------------------------ encrypted_message

/// `encrypted_message` ([docs/fabstir-wire.md §3]) as the client emits it. The envelope's
/// `search_queries` is always `null`: the queries travel only inside the ciphertext.
pub(crate) struct EncryptedMessage<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) id: &'a str,
    pub(crate) payload: Sealed<'a>,
    pub(crate) web_search: bool,
    pub(crate) max_searches: u64,
}

impl EncryptedMessage<'_> {
    pub(crate) fn emit(&self) -> String {
        let mut out = String::with_capacity(self.payload.sealed.len() * 2 + 320);
        let mut o = JsonObject::open(&mut out);
        o.str("type", "encrypted_message")
            .str("session_id", self.session_id)
            .str("id", self.id);
        let mut p = o.object("payload");
        self.payload.write(&mut p);
        p.close();
        o.bool("web_search", self.web_search)
            .u64("max_searches", self.max_searches)
            .null("search_queries");
        o.close();
        out
    }

    /// The envelope of a received `encrypted_message`. Its payload is decoded by
    /// [`MessageEnvelope::sealed`], after the node has found the session's key (§3 order).
    pub(crate) fn parse<'f>(frame: &'f ClientFrame<'_>) -> Result<MessageEnvelope<'f>, NodeError> {
        Ok(MessageEnvelope {
            session_id: frame.session_id()?,
            id: frame.request_id()?,
            web_search: frame.web_search(),
            payload: frame.payload.as_ref().and_then(Obj::get),
        })
    }
}

/// A received `encrypted_message` before its payload is decoded.
pub(crate) struct MessageEnvelope<'f> {
    pub(crate) session_id: &'f str,
    pub(crate) id: &'f str,
    pub(crate) web_search: bool,
    payload: Option<&'f PayloadFields<'f>>,
}

impl MessageEnvelope<'_> {
    /// The payload, strictly decoded: fields present, strict hex, a 24-byte nonce.
    pub(crate) fn sealed(&self) -> Result<SealedIn, NodeError> {
        use NodeError as E;
        let p = self.payload.ok_or(E::MissingPayload)?;
        let ct_hex = str_of(&p.ciphertextHex).ok_or(E::MissingPayloadField("ciphertextHex"))?;
        let nonce_hex = str_of(&p.nonceHex).ok_or(E::MissingPayloadField("nonceHex"))?;
        let aad_hex = str_of(&p.aadHex).ok_or(E::MissingPayloadField("aadHex"))?;
        let sealed = decode_sealed(ct_hex)?;
        for (name, h) in [("nonceHex", nonce_hex), ("aadHex", aad_hex)] {
            hex::check(h).map_err(|_| E::InvalidHex(name))?;
        }
        let bad_hex = |_| E::InvalidHex("payload");
        if hex::decoded_len(nonce_hex).map_err(bad_hex)? != 24 {
            return Err(E::InvalidNonceSize);
        }
        let nonce: [u8; 24] = hex::decode_array(nonce_hex).map_err(bad_hex)?;
        Ok(SealedIn {
            sealed,
            nonce,
            aad: Aad::decode(aad_hex)?,
        })
    }
}

// ------------------------------------------------------------------------- prompt bodies

/// What a prompt asks for: the plaintext of `encrypted_message` (§3) and the `request` of the
/// plaintext `prompt` (§5.3) carry the same settings in different key orders.
pub(crate) struct PromptBody<'a> {
    pub(crate) text: &'a str,
    pub(crate) model: &'a str,
    pub(crate) max_tokens: u64,
    pub(crate) temperature: f64,
    pub(crate) thinking: Option<&'a str>,
    pub(crate) images: &'a [PromptImage],
    pub(crate) search_queries: &'a [String],
}

impl PromptBody<'_> {
    /// The sealed plaintext of `encrypted_message`:
    /// `{"prompt","model","max_tokens","temperature","stream"[,"thinking"][,"images"][,"search_queries"]}`,
    /// in wiped storage sized up front.
    pub(crate) fn emit_sealed_plaintext(&self) -> Zeroizing<String> {
        let extra: usize = self.images.iter().map(|i| i.data.len() + 40).sum::<usize>()
            + self
                .search_queries
                .iter()
                .map(|q| 2 * q.len() + 4)
                .sum::<usize>();
        let mut out = Zeroizing::new(String::with_capacity(
            2 * (self.text.len() + self.model.len()) + 160 + extra,
        ));
        let mut o = JsonObject::open(&mut out);
        o.str("prompt", self.text).str("model", self.model);
        self.write_settings(&mut o);
        if !self.images.is_empty() {
            let mut list = o.array("images");
            for img in self.images {
                let mut i = list.object();
                i.str("data", &img.data).str("format", &img.format);
                i.close();
            }
            list.close();
        }
        if !self.search_queries.is_empty() {
            let mut list = o.array("search_queries");
            for q in self.search_queries {
                list.str(q);
            }
            list.close();
        }
        o.close();
        out
    }

    /// The `request` of a plaintext `prompt`: `{"model","prompt","max_tokens","temperature","stream"[,"thinking"]}`.
    fn write_request(&self, o: &mut JsonObject<'_>) {
        o.str("model", self.model).str("prompt", self.text);
        self.write_settings(o);
    }

    /// The settings both bodies share, in their common order.
    fn write_settings(&self, o: &mut JsonObject<'_>) {
        o.u64("max_tokens", self.max_tokens)
            .js_number("temperature", self.temperature)
            .bool("stream", true);
        if let Some(t) = self.thinking {
            o.str("thinking", t);
        }
    }
}

/// The decrypted plaintext of `encrypted_message`, as the node reads it.
#[derive(Deserialize)]
pub(crate) struct PromptPlaintext<'a> {
    #[serde(borrow)]
    pub(crate) prompt: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) model: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) max_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) temperature: Option<f64>,
    #[serde(borrow, default)]
    pub(crate) thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) images: Option<Vec<ImageFields<'a>>>,
    #[serde(borrow, default)]
    pub(crate) search_queries: Option<Vec<Cow<'a, str>>>,
}

/// One image of a prompt.
#[derive(Deserialize)]
pub(crate) struct ImageFields<'a> {
    #[serde(borrow)]
    pub(crate) data: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) format: Cow<'a, str>,
}

impl<'a> PromptPlaintext<'a> {
    /// A JSON object with at least a string `prompt`; the other fields, when present, of the
    /// right types.
    pub(crate) fn parse(plain: &'a [u8]) -> Result<Self, NodeError> {
        parse_object_bytes(plain).ok_or(NodeError::InvalidMessage("prompt payload"))
    }
}

// -------------------------------------------------------- plaintext session_init (§5.3)

/// The legacy plaintext `session_init` ([docs/fabstir-wire.md §5.3]); nothing in it is
/// authenticated.
pub(crate) struct PlainSessionInit<'f> {
    pub(crate) session_id: &'f str,
    pub(crate) job_id: &'f str,
    pub(crate) chain_id: u64,
    /// The address the client claims (not proven).
    pub(crate) user_address: Option<&'f str>,
    pub(crate) vector_database: Option<VectorDatabase>,
    pub(crate) id: Option<&'f str>,
}

impl<'f> PlainSessionInit<'f> {
    /// `jobId` (the SDK's spelling) or `job_id`.
    pub(crate) fn parse(frame: &'f ClientFrame<'_>) -> Result<Self, NodeError> {
        use NodeError::InvalidMessage as Invalid;
        let session_id = frame.session_id()?;
        let job_id = decimal_of(&frame.job_id_camel)
            .or_else(|| decimal_of(&frame.job_id))
            .ok_or(Invalid("jobId"))?;
        let chain_id = frame.chain_id()?;
        let user_address = match &frame.user_address {
            None => None,
            Some(f) => Some(f.as_str().ok_or(Invalid("user_address"))?),
        };
        let vector_database = match &frame.vector_database {
            None => None,
            Some(o) => {
                let bad = Invalid("vector_database");
                let o = o.get().ok_or(bad)?;
                Some(read_vector_database(
                    &o.manifest_path,
                    &o.user_address,
                    bad,
                )?)
            }
        };
        Ok(PlainSessionInit {
            session_id,
            job_id,
            chain_id,
            user_address,
            vector_database,
            id: frame.short_id(),
        })
    }

    pub(crate) fn emit(&self) -> String {
        let mut out = String::with_capacity(256);
        let mut o = JsonObject::open(&mut out);
        o.str("type", "session_init")
            .u64("chain_id", self.chain_id)
            .str("session_id", self.session_id)
            .str("jobId", self.job_id);
        if let Some(a) = self.user_address {
            o.str("user_address", a);
        }
        if let Some(v) = &self.vector_database {
            let mut d = o.object("vector_database");
            write_vector_database(v, &mut d, false);
            d.close();
        }
        if let Some(id) = self.id {
            o.str("id", id);
        }
        o.close();
        out
    }
}

// --------------------------------------------------------------- plaintext prompt (§5.3)

/// The legacy plaintext `prompt` as the client emits it — with the real prompt in `prompt`
/// and `request.prompt`, not the session id the SDK 1.36.0 puts there by mistake.
pub(crate) struct PlainPrompt<'a> {
    pub(crate) chain_id: u64,
    pub(crate) job_id: &'a str,
    pub(crate) body: PromptBody<'a>,
    pub(crate) web_search: bool,
    pub(crate) max_searches: u64,
    pub(crate) id: &'a str,
}

#[derive(Deserialize)]
struct PlainRequest<'a> {
    #[serde(borrow)]
    model: Option<Field<'a>>,
    #[serde(borrow)]
    prompt: Option<Field<'a>>,
    #[serde(borrow)]
    max_tokens: Option<Field<'a>>,
    #[serde(borrow)]
    temperature: Option<Field<'a>>,
    #[serde(borrow)]
    thinking: Option<Field<'a>>,
}

impl PlainPrompt<'_> {
    pub(crate) fn emit(&self) -> String {
        let mut out = String::with_capacity(2 * self.body.text.len() * 2 + 400);
        let mut o = JsonObject::open(&mut out);
        o.str("type", "prompt")
            .u64("chain_id", self.chain_id)
            .str("jobId", self.job_id)
            .str("prompt", self.body.text)
            .bool("web_search", self.web_search)
            .u64("max_searches", self.max_searches)
            .null("search_queries");
        let mut r = o.object("request");
        self.body.write_request(&mut r);
        r.close();
        o.str("id", self.id);
        o.close();
        out
    }

    /// The envelope of a received plaintext `prompt`: which session it names and its `id`.
    /// The prompt itself is read after the node found the session
    /// ([`PlainPromptEnvelope::prompt`]).
    pub(crate) fn parse<'f>(
        frame: &'f ClientFrame<'_>,
    ) -> Result<PlainPromptEnvelope<'f>, NodeError> {
        // The SDK's plaintext prompt names the job (`jobId`), not the session; other legacy
        // clients name the session (`session_id`).
        let job_id = decimal_of(&frame.job_id_camel);
        let session_id = decimal_of(&frame.session_id);
        if job_id.is_none() && session_id.is_none() {
            return Err(NodeError::InvalidMessage("jobId"));
        }
        Ok(PlainPromptEnvelope {
            job_id,
            session_id,
            id: frame.request_id()?,
            web_search: frame.web_search(),
            request: frame.request.as_ref().and_then(Obj::get),
            prompt: str_of(&frame.prompt),
        })
    }
}

/// A received plaintext `prompt`.
pub(crate) struct PlainPromptEnvelope<'f> {
    pub(crate) job_id: Option<&'f str>,
    pub(crate) session_id: Option<&'f str>,
    pub(crate) id: &'f str,
    pub(crate) web_search: bool,
    request: Option<&'f PlainRequest<'f>>,
    prompt: Option<&'f str>,
}

impl<'f> PlainPromptEnvelope<'f> {
    /// `request.prompt`, else the envelope's `prompt`.
    pub(crate) fn prompt(&self) -> Result<&'f str, NodeError> {
        self.request
            .and_then(|r| str_of(&r.prompt))
            .or(self.prompt)
            .ok_or(NodeError::InvalidMessage("prompt"))
    }

    pub(crate) fn model(&self) -> Option<&'f str> {
        self.request.and_then(|r| str_of(&r.model))
    }

    pub(crate) fn max_tokens(&self) -> Option<u64> {
        self.request.and_then(|r| u64_of(&r.max_tokens))
    }

    pub(crate) fn temperature(&self) -> Option<f64> {
        self.request
            .and_then(|r| r.temperature.as_ref().and_then(Field::as_f64))
    }

    pub(crate) fn thinking(&self) -> Option<&'f str> {
        self.request.and_then(|r| str_of(&r.thinking))
    }
}

// ---------------------------------------------------------------------------- stream_cancel

/// `stream_cancel` ([docs/fabstir-wire.md §4.1]): the client abandons the answer.
pub(crate) struct StreamCancel<'a> {
    pub(crate) session_id: &'a str,
    /// At most [`MAX_ECHO_LEN`] bytes when parsed (`user_cancelled` when absent).
    pub(crate) reason: &'a str,
}

impl<'f> StreamCancel<'f> {
    pub(crate) fn parse(frame: &'f ClientFrame<'_>) -> Result<Self, NodeError> {
        Ok(StreamCancel {
            session_id: frame.session_id()?,
            reason: super::truncate_chars(
                str_of(&frame.reason).unwrap_or("user_cancelled"),
                MAX_ECHO_LEN,
            ),
        })
    }

    pub(crate) fn emit(&self) -> String {
        let mut out = String::with_capacity(96);
        let mut o = JsonObject::open(&mut out);
        o.str("type", "stream_cancel")
            .str("session_id", self.session_id)
            .str("reason", self.reason);
        o.close();
        out
    }
}
