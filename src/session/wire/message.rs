//! `encrypted_message` and the prompt it seals ([docs/fabstir-wire.md §3]), both directions:
//! the client emits them, the node parses them; and the prompt body the plaintext `prompt`
//! (`plaintext.rs`) shares.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::client_frames::ClientFrame;
use super::json::{parse_object_bytes, str_of, JsonObject, Obj};
use super::{decode_sealed, Aad, PayloadFields, Sealed, SealedIn};
use crate::crypto::hex;
use crate::session::error::NodeError;
use crate::session::PromptImage;

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
    pub(super) fn write_request(&self, o: &mut JsonObject<'_>) {
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
