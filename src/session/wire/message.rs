//! `encrypted_message` and the prompt it seals ([docs/fabstir-wire.md §3]), both directions:
//! the client emits them, the node parses them; and the prompt body the plaintext `prompt`
//! (`plaintext.rs`) shares.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::client_frames::ClientFrame;
use super::json::{
    exact, exact_frame, parse_object_bytes, secret_str, str_of, JsonObject, JsonOut, Obj, WriteJson,
};
use super::{decode_sealed, Aad, PayloadFields, Sealed, SealedIn};
use crate::crypto::hex;
use crate::session::error::NodeError;
use crate::session::PromptImage;
use serde_json::value::RawValue;

/// `encrypted_message` ([docs/fabstir-wire.md §3]) as the client emits it. The envelope's
/// `search_queries` is always `null`: the queries travel only inside the ciphertext.
pub(crate) struct EncryptedMessage<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) id: &'a str,
    pub(crate) payload: Sealed<'a>,
    pub(crate) web_search: bool,
    pub(crate) max_searches: u64,
}

impl WriteJson for EncryptedMessage<'_> {
    fn write_json<O: JsonOut + ?Sized>(&self, out: &mut O) {
        let mut o = JsonObject::open(out);
        o.lit("type", "encrypted_message")
            .str("session_id", self.session_id)
            .str("id", self.id);
        let mut p = o.object("payload");
        self.payload.write(&mut p);
        p.close();
        o.bool("web_search", self.web_search)
            .u64("max_searches", self.max_searches)
            .null("search_queries");
        o.close();
    }
}

impl EncryptedMessage<'_> {
    /// The frame, in a string of exactly its size.
    pub(crate) fn emit(&self) -> String {
        exact_frame(self)
    }

    /// The envelope of a received `encrypted_message`. Its payload is decoded by
    /// [`MessageEnvelope::sealed`], after the node has found the session's key (the order of
    /// [docs/fabstir-wire.md §3]).
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

/// What a prompt asks for: the plaintext of `encrypted_message` ([docs/fabstir-wire.md §3])
/// and the `request` of the plaintext `prompt` (§5.3) carry the same settings in different key
/// orders.
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
    /// in wiped storage of exactly its size (measured first: a growing buffer would leave
    /// pieces of the prompt in freed memory).
    pub(crate) fn emit_sealed_plaintext(&self) -> Zeroizing<String> {
        exact(&SealedPrompt(self))
    }

    /// The `request` of a plaintext `prompt`: `{"model","prompt","max_tokens","temperature","stream"[,"thinking"]}`.
    pub(super) fn write_request<O: JsonOut + ?Sized>(&self, o: &mut JsonObject<'_, O>) {
        o.str("model", self.model).str("prompt", self.text);
        self.write_settings(o);
    }

    /// The settings both bodies share, in their common order.
    fn write_settings<O: JsonOut + ?Sized>(&self, o: &mut JsonObject<'_, O>) {
        o.u64("max_tokens", self.max_tokens)
            .js_number("temperature", self.temperature)
            .bool("stream", true);
        if let Some(t) = self.thinking {
            o.str("thinking", t);
        }
    }
}

/// The plaintext of `encrypted_message` being written.
struct SealedPrompt<'b, 'a>(&'b PromptBody<'a>);

impl WriteJson for SealedPrompt<'_, '_> {
    fn write_json<O: JsonOut + ?Sized>(&self, out: &mut O) {
        let body = self.0;
        let mut o = JsonObject::open(out);
        o.str("prompt", body.text).str("model", body.model);
        body.write_settings(&mut o);
        if !body.images.is_empty() {
            let mut list = o.array("images");
            for img in body.images {
                let mut i = list.object();
                i.str("data", &img.data).str("format", &img.format);
                i.close();
            }
            list.close();
        }
        if !body.search_queries.is_empty() {
            let mut list = o.array("search_queries");
            for q in body.search_queries {
                list.str(q);
            }
            list.close();
        }
        o.close();
    }
}

/// The decrypted plaintext of `encrypted_message`, as the node reads it. What the user wrote
/// (the prompt, the search queries, the images) is borrowed as raw JSON and unescaped by
/// [`secret_str`] into wiped storage, never by serde_json into its unwiped scratch buffer.
#[derive(Deserialize)]
pub(crate) struct PromptPlaintext<'a> {
    #[serde(borrow)]
    prompt: &'a RawValue,
    #[serde(borrow, default)]
    pub(crate) model: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) max_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) temperature: Option<f64>,
    #[serde(borrow, default)]
    pub(crate) thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    images: Option<Vec<ImageFields<'a>>>,
    #[serde(borrow, default)]
    search_queries: Option<Vec<&'a RawValue>>,
}

/// One image of a prompt.
#[derive(Deserialize)]
struct ImageFields<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(borrow)]
    format: Cow<'a, str>,
}

impl<'a> PromptPlaintext<'a> {
    /// A JSON object with at least a string `prompt`; the other fields, when present, of the
    /// right types.
    pub(crate) fn parse(plain: &'a [u8]) -> Result<Self, NodeError> {
        const BAD: NodeError = NodeError::InvalidMessage("prompt payload");
        let p: Self = parse_object_bytes(plain).ok_or(BAD)?;
        // Every borrowed token must be a string: checked here, so the takers cannot fail.
        let strings = core::iter::once(p.prompt)
            .chain(p.search_queries.iter().flatten().copied())
            .chain(p.images.iter().flatten().map(|i| i.data));
        for raw in strings {
            if !raw.get().starts_with('"') {
                return Err(BAD);
            }
        }
        Ok(p)
    }

    /// The prompt text, unescaped into wiped storage.
    pub(crate) fn prompt(&self) -> Result<Zeroizing<String>, NodeError> {
        secret_str(self.prompt).ok_or(NodeError::InvalidMessage("prompt payload"))
    }

    /// The search queries, each unescaped into wiped storage.
    pub(crate) fn search_queries(&self) -> Result<Zeroizing<Vec<String>>, NodeError> {
        let raw = self.search_queries.as_deref().unwrap_or_default();
        let mut out = Zeroizing::new(Vec::with_capacity(raw.len()));
        for q in raw {
            let mut text = secret_str(q).ok_or(NodeError::InvalidMessage("prompt payload"))?;
            // The String moves (its buffer stays put) into the wiped list.
            out.push(core::mem::take(&mut *text));
        }
        Ok(out)
    }

    /// The images, their data unescaped into wiped storage.
    pub(crate) fn images(&self) -> Result<Vec<PromptImage>, NodeError> {
        let raw = self.images.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(raw.len());
        for i in raw {
            out.push(PromptImage {
                data: secret_str(i.data).ok_or(NodeError::InvalidMessage("prompt payload"))?,
                format: String::from(&*i.format),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    //! The message frame and the prompt it seals equal serde_json's serialisation of the same
    //! fields in the SDK's order, and parse back.
    use super::*;
    use serde::Serialize;

    const TRICKY: &str = "p \"q\" \\ \r\n\u{1f}é→😀";

    #[test]
    fn the_message_frame_is_serde_json_s_and_parses_back() {
        let (sealed, nonce) = ([0x42; 30], [3; 24]);
        let frame = EncryptedMessage {
            session_id: "9",
            id: TRICKY,
            payload: Sealed {
                sealed: &sealed,
                nonce: &nonce,
                aad: b"message_0",
            },
            web_search: true,
            max_searches: 5,
        }
        .emit();
        #[derive(Serialize)]
        #[allow(non_snake_case)]
        struct Payload {
            ciphertextHex: String,
            nonceHex: String,
            aadHex: String,
        }
        #[derive(Serialize)]
        struct Frame {
            r#type: &'static str,
            session_id: &'static str,
            id: &'static str,
            payload: Payload,
            web_search: bool,
            max_searches: u64,
            search_queries: Option<()>,
        }
        let want = Frame {
            r#type: "encrypted_message",
            session_id: "9",
            id: TRICKY,
            payload: Payload {
                ciphertextHex: hex::encode(&sealed),
                nonceHex: hex::encode(&nonce),
                aadHex: hex::encode(b"message_0"),
            },
            web_search: true,
            max_searches: 5,
            search_queries: None,
        };
        assert_eq!(frame, serde_json::to_string(&want).unwrap());
        let parsed = ClientFrame::parse(&frame).unwrap();
        let envelope = EncryptedMessage::parse(&parsed).unwrap();
        assert_eq!((envelope.session_id, envelope.id), ("9", TRICKY));
        assert!(envelope.web_search);
        let back = envelope.sealed().unwrap();
        assert_eq!((&back.sealed[..], back.nonce), (&sealed[..], nonce));
        assert_eq!(back.aad.as_slice(), b"message_0");
    }

    /// The prompt's plaintext is written into a buffer of exactly its size (no reallocation
    /// leaves a piece of it in freed memory), whatever it holds.
    #[test]
    fn the_sealed_prompt_never_outgrows_its_buffer() {
        let nasty = "\u{2}\"\\\n".repeat(200);
        let images = [PromptImage {
            data: Zeroizing::new(nasty.clone()),
            format: nasty.clone(),
        }];
        let queries = [nasty.clone(), nasty.clone()];
        let body = PromptBody {
            text: &nasty,
            model: &nasty,
            max_tokens: u64::MAX,
            temperature: -0.123_456_789,
            thinking: Some(&nasty),
            images: &images,
            search_queries: &queries,
        };
        let text = body.emit_sealed_plaintext();
        assert_eq!(text.capacity(), text.len());
        assert!(text.len() > 7 * 2 * nasty.len());
    }

    #[test]
    fn the_sealed_prompt_is_serde_json_s_and_parses_back() {
        let images = [PromptImage {
            data: Zeroizing::new("aGk=".into()),
            format: "png".into(),
        }];
        let queries = [String::from(TRICKY)];
        let body = PromptBody {
            text: TRICKY,
            model: "llama",
            max_tokens: 4000,
            temperature: 0.7,
            thinking: Some("high"),
            images: &images,
            search_queries: &queries,
        };
        #[derive(Serialize)]
        struct Image {
            data: &'static str,
            format: &'static str,
        }
        #[derive(Serialize)]
        struct Plain {
            prompt: &'static str,
            model: &'static str,
            max_tokens: u64,
            temperature: f64,
            stream: bool,
            thinking: &'static str,
            images: [Image; 1],
            search_queries: [&'static str; 1],
        }
        let want = Plain {
            prompt: TRICKY,
            model: "llama",
            max_tokens: 4000,
            temperature: 0.7,
            stream: true,
            thinking: "high",
            images: [Image {
                data: "aGk=",
                format: "png",
            }],
            search_queries: [TRICKY],
        };
        let text = body.emit_sealed_plaintext();
        assert_eq!(*text, serde_json::to_string(&want).unwrap());
        let back = PromptPlaintext::parse(text.as_bytes()).unwrap();
        assert_eq!(back.prompt().unwrap().as_str(), TRICKY);
        assert_eq!((back.max_tokens, back.temperature), (Some(4000), Some(0.7)));
        assert_eq!(back.images().unwrap(), images);
        assert_eq!(*back.search_queries().unwrap(), [TRICKY]);
    }
}
