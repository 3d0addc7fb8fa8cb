//! The frames a node sends to a client, both directions: the [`Node`](crate::session::Node)
//! emits them, the [`Client`](crate::session::Client) parses them ([docs/fabstir-wire.md
//! §2.6, §4, §5.3]).
//!
//! The client reads them the way the SDK does where that is safe (a chunk's payload may be
//! nested or flat, any truthy `final` counts) and strictly where the SDK is not (see
//! `client/answer.rs`).

use alloc::string::String;

use serde::Deserialize;

use super::json::{parse_object, str_of, u64_of, Field, JsonObject, Obj};
use super::{truncate_chars, PayloadFields, Sealed, MAX_ERROR_MESSAGE_LEN};
use crate::session::error::{ClientError, ErrorCode};
use crate::session::StreamEnd;

/// `{"type":"pong"}` (the answer to `ping`).
pub(crate) const PONG: &str = r#"{"type":"pong"}"#;

/// Every field a node→client frame can carry (unknown fields are skipped).
#[derive(Deserialize)]
#[allow(non_snake_case)]
pub(crate) struct NodeFrame<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<Field<'a>>,
    #[serde(borrow)]
    payload: Option<Obj<PayloadFields<'a>>>,
    #[serde(borrow)]
    session_id: Option<Field<'a>>,
    #[serde(borrow)]
    id: Option<Field<'a>>,
    #[serde(rename = "final", borrow)]
    is_final: Option<Field<'a>>,
    #[serde(borrow)]
    ciphertextHex: Option<Field<'a>>,
    #[serde(borrow)]
    nonceHex: Option<Field<'a>>,
    #[serde(borrow)]
    aadHex: Option<Field<'a>>,
    #[serde(borrow)]
    index: Option<Field<'a>>,
    #[serde(borrow)]
    content: Option<Field<'a>>,
    #[serde(borrow)]
    code: Option<Field<'a>>,
    #[serde(borrow)]
    message: Option<Field<'a>>,
    #[serde(borrow)]
    finish_reason: Option<Field<'a>>,
    #[serde(borrow)]
    tokens_used: Option<Field<'a>>,
}

/// The frame types a client acts on; everything else is ignored, as by the SDK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeFrameKind {
    SessionInitAck,
    Error,
    EncryptedChunk,
    StreamChunk,
    EncryptedResponse,
    StreamEnd,
    Pong,
    Other,
}

/// The sealed fields of a received chunk or response, as text (decoded by the client, whose
/// checks come in between).
pub(crate) struct SealedFields<'f> {
    pub(crate) ciphertext: &'f str,
    pub(crate) nonce: &'f str,
    /// `""` (an empty AAD) when absent.
    pub(crate) aad: &'f str,
}

impl<'f> SealedFields<'f> {
    fn read(
        ct: &'f Option<Field<'f>>,
        nonce: &'f Option<Field<'f>>,
        aad: &'f Option<Field<'f>>,
    ) -> Result<Self, ClientError> {
        Ok(SealedFields {
            ciphertext: str_of(ct).ok_or(ClientError::Malformed("ciphertextHex"))?,
            nonce: str_of(nonce).ok_or(ClientError::Malformed("nonceHex"))?,
            aad: match aad {
                None => "",
                Some(f) => f.as_str().ok_or(ClientError::Malformed("aadHex"))?,
            },
        })
    }
}

/// A received `encrypted_chunk`.
pub(crate) struct ChunkFields<'f> {
    pub(crate) sealed: SealedFields<'f>,
    /// The `index` beside the payload, if any (not authenticated).
    pub(crate) index: Option<&'f Field<'f>>,
    pub(crate) is_final: bool,
}

impl<'a> NodeFrame<'a> {
    /// Parses any node frame (a JSON object; nested containers are skipped).
    pub(crate) fn parse(text: &'a str) -> Result<Self, ClientError> {
        parse_object(text).ok_or(ClientError::Malformed("not a JSON object"))
    }

    /// The frame's type; `None` when it has no string `type` (the SDK drops those).
    pub(crate) fn kind(&self) -> Option<NodeFrameKind> {
        Some(match str_of(&self.ty)? {
            "session_init_ack" => NodeFrameKind::SessionInitAck,
            "error" => NodeFrameKind::Error,
            "encrypted_chunk" => NodeFrameKind::EncryptedChunk,
            "stream_chunk" => NodeFrameKind::StreamChunk,
            "encrypted_response" => NodeFrameKind::EncryptedResponse,
            "stream_end" => NodeFrameKind::StreamEnd,
            "pong" => NodeFrameKind::Pong,
            _ => NodeFrameKind::Other,
        })
    }

    /// `session_id`, when the frame names one.
    pub(crate) fn session_id(&self) -> Option<&str> {
        str_of(&self.session_id)
    }

    /// `id` (the request), when the frame names one.
    pub(crate) fn request_id(&self) -> Option<&str> {
        str_of(&self.id)
    }

    /// An `error` frame's `(code, message)`; `message` defaults to the SDK's "Request failed".
    pub(crate) fn error(&self) -> (String, String) {
        (
            str_of(&self.code).unwrap_or_default().into(),
            str_of(&self.message).unwrap_or("Request failed").into(),
        )
    }

    /// An `encrypted_chunk`: its payload nested in `payload` or flat on the frame (the SDK
    /// accepts both).
    pub(crate) fn chunk(&self) -> Result<ChunkFields<'_>, ClientError> {
        let (sealed, index) = match self.payload.as_ref().and_then(Obj::get) {
            Some(p) => (
                SealedFields::read(&p.ciphertextHex, &p.nonceHex, &p.aadHex)?,
                p.index.as_ref(),
            ),
            None => (
                SealedFields::read(&self.ciphertextHex, &self.nonceHex, &self.aadHex)?,
                self.index.as_ref(),
            ),
        };
        Ok(ChunkFields {
            sealed,
            index,
            is_final: self.is_final.as_ref().is_some_and(truthy),
        })
    }

    /// An `encrypted_response`'s sealed payload, if it carries a ciphertext (the SDK decrypts
    /// it only then).
    pub(crate) fn response(&self) -> Result<Option<SealedFields<'_>>, ClientError> {
        match self.payload.as_ref().and_then(Obj::get) {
            Some(p) if p.ciphertextHex.is_some() => Ok(Some(SealedFields::read(
                &p.ciphertextHex,
                &p.nonceHex,
                &p.aadHex,
            )?)),
            _ => Ok(None),
        }
    }

    /// A `stream_chunk`'s text.
    pub(crate) fn content(&self) -> Result<&str, ClientError> {
        str_of(&self.content).ok_or(ClientError::Malformed("content"))
    }

    /// A `stream_end`'s `finish_reason` and `tokens_used` (what the SDK reads of it).
    pub(crate) fn stream_end(&self) -> (Option<String>, Option<u64>) {
        (
            str_of(&self.finish_reason).map(String::from),
            u64_of(&self.tokens_used),
        )
    }
}

/// JavaScript truthiness of a JSON value (how the SDK reads `final`).
fn truthy(f: &Field<'_>) -> bool {
    match f {
        Field::Bool(b) => *b,
        Field::U64(n) => *n != 0,
        Field::I64(_) | Field::Array | Field::Object => true,
        Field::F64(x) => *x != 0.0 && !x.is_nan(),
        Field::Str(s) => !s.is_empty(),
        Field::Null => false,
    }
}

// ------------------------------------------------------------------------- session_init_ack

/// `session_init_ack` ([docs/fabstir-wire.md §2.6]); the SDK reads only its type.
pub(crate) struct InitAck<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) job_id: &'a str,
    pub(crate) chain_id: u64,
    /// The plaintext `session_init`'s `id` (the SDK's legacy client waits for it).
    pub(crate) id: Option<&'a str>,
}

impl InitAck<'_> {
    pub(crate) fn emit(&self) -> String {
        let mut out = String::with_capacity(160);
        let mut o = JsonObject::open(&mut out);
        o.lit("type", "session_init_ack")
            .lit("status", "success")
            .str("session_id", self.session_id)
            .str("job_id", self.job_id)
            .u64("chain_id", self.chain_id)
            .lit("message", "Session initialized");
        if let Some(id) = self.id {
            o.str("id", id);
        }
        o.close();
        out
    }
}

// ------------------------------------------------------------------------------------ error

/// `error` ([docs/fabstir-wire.md §4.2, §6]): one per rejected client frame.
pub(crate) struct ErrorFrame<'a> {
    pub(crate) code: ErrorCode,
    /// Cut to [`MAX_ERROR_MESSAGE_LEN`] bytes.
    pub(crate) message: &'a str,
    /// Fixed text after `message` (a [`NodeError`](crate::session::NodeError)'s sentence, in
    /// pieces so that no temporary string is formatted for each rejected frame).
    pub(crate) sentence: [&'static str; 3],
    pub(crate) session_id: Option<&'a str>,
    pub(crate) id: Option<&'a str>,
    /// Only with `TOKEN_LIMIT_EXCEEDED`, the one code the SDK reads.
    pub(crate) token_limit: Option<TokenLimit>,
}

/// What `TOKEN_LIMIT_EXCEEDED` tells the SDK (it becomes a `ContextLimitError`).
#[derive(Clone, Copy)]
pub(crate) struct TokenLimit {
    pub(crate) prompt_tokens: u64,
    pub(crate) context_window_size: u64,
}

impl ErrorFrame<'_> {
    pub(crate) fn emit(&self) -> String {
        let message = truncate_chars(self.message, MAX_ERROR_MESSAGE_LEN);
        // Room for everything but escapes, so that the usual frame is written in one go.
        let texts = [
            message,
            self.session_id.unwrap_or(""),
            self.id.unwrap_or(""),
        ];
        let len = texts
            .iter()
            .chain(&self.sentence)
            .fold(160usize, |n, t| n.saturating_add(t.len()));
        let mut out = String::with_capacity(len);
        let mut o = JsonObject::open(&mut out);
        o.lit("type", "error").lit("code", self.code.as_str()).strs(
            "message",
            &[
                message,
                self.sentence[0],
                self.sentence[1],
                self.sentence[2],
            ],
        );
        if let Some(s) = self.session_id {
            o.str("session_id", s);
        }
        if let Some(i) = self.id {
            o.str("id", i);
        }
        if let Some(t) = self.token_limit {
            o.u64("prompt_tokens", t.prompt_tokens)
                .u64("context_window_size", t.context_window_size);
        }
        o.close();
        out
    }
}

// ---------------------------------------------------------------------------- answer frames

/// `encrypted_chunk` ([docs/fabstir-wire.md §4.1]): one sealed piece of an answer.
pub(crate) struct EncryptedChunk<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) id: &'a str,
    pub(crate) payload: Sealed<'a>,
    pub(crate) index: u64,
    pub(crate) is_final: bool,
}

impl EncryptedChunk<'_> {
    /// Appends the frame to `out` (allocates nothing when `out` has room).
    pub(crate) fn emit_into(&self, out: &mut String) {
        let mut o = JsonObject::open(out);
        o.lit("type", "encrypted_chunk")
            .str("session_id", self.session_id)
            .str("id", self.id)
            .u64("tokens", 1);
        let mut p = o.object("payload");
        self.payload.write(&mut p);
        p.u64("index", self.index);
        p.close();
        if self.is_final {
            o.bool("final", true);
        }
        o.close();
    }
}

/// `encrypted_response`: the sealed finish reason (AAD `encrypted_response_final`).
pub(crate) struct EncryptedResponse<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) id: &'a str,
    pub(crate) payload: Sealed<'a>,
}

impl EncryptedResponse<'_> {
    pub(crate) fn emit(&self) -> String {
        let mut out = String::with_capacity(
            self.payload
                .sealed
                .len()
                .saturating_mul(2)
                .saturating_add(256),
        );
        let mut o = JsonObject::open(&mut out);
        o.lit("type", "encrypted_response")
            .str("session_id", self.session_id)
            .str("id", self.id);
        let mut p = o.object("payload");
        self.payload.write(&mut p);
        p.close();
        o.close();
        out
    }
}

/// `stream_chunk`: a piece of an answer in clear (plaintext sessions,
/// [docs/fabstir-wire.md §5.3]).
pub(crate) struct StreamChunk<'a> {
    pub(crate) content: &'a str,
    pub(crate) id: &'a str,
    pub(crate) is_final: bool,
}

impl StreamChunk<'_> {
    /// Appends the frame to `out`.
    pub(crate) fn emit_into(&self, out: &mut String) {
        let mut o = JsonObject::open(out);
        o.lit("type", "stream_chunk")
            .str("content", self.content)
            .str("id", self.id);
        if self.is_final {
            o.bool("final", true);
        }
        o.close();
    }
}

/// `stream_end`: the end of an answer, in clear, with the token usage.
pub(crate) struct StreamEndFrame<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) id: &'a str,
    pub(crate) end: &'a StreamEnd,
}

impl StreamEndFrame<'_> {
    pub(crate) fn emit(&self) -> String {
        let end = self.end;
        let mut out = String::with_capacity(320);
        let mut o = JsonObject::open(&mut out);
        o.lit("type", "stream_end")
            .str("session_id", self.session_id)
            .str("id", self.id)
            .str("reason", &end.reason)
            .u64("tokens_used", end.tokens_used)
            .str("finish_reason", &end.finish_reason);
        let mut u = o.object("usage");
        u.u64("prompt_tokens", end.prompt_tokens)
            .u64("completion_tokens", end.completion_tokens)
            .u64(
                "total_tokens",
                end.prompt_tokens.saturating_add(end.completion_tokens),
            )
            .u64("context_window_size", end.context_window_size);
        u.close();
        o.close();
        out
    }
}

#[cfg(test)]
mod tests {
    //! Every frame the node emits equals serde_json's serialisation of the same fields in the
    //! same order (so its escaping and number formatting are serde_json's), and parses back.
    use super::*;
    use proptest::prelude::*;
    use serde::Serialize;

    fn serde<T: Serialize>(t: &T) -> String {
        serde_json::to_string(t).unwrap()
    }

    const TRICKY: &str = "a \"q\" \\ b\n\t\u{1}\u{7f}é→😀";

    #[derive(Serialize)]
    struct Payload<'a> {
        #[serde(rename = "ciphertextHex")]
        ct: &'a str,
        #[serde(rename = "nonceHex")]
        nonce: &'a str,
        #[serde(rename = "aadHex")]
        aad: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        index: Option<u64>,
    }

    #[test]
    fn ack_and_error_frames_are_serde_json_s() {
        #[derive(Serialize)]
        struct Ack<'a> {
            r#type: &'a str,
            status: &'a str,
            session_id: &'a str,
            job_id: &'a str,
            chain_id: u64,
            message: &'a str,
            id: &'a str,
        }
        let ack = InitAck {
            session_id: "1",
            job_id: "22",
            chain_id: 84532,
            id: Some(TRICKY),
        };
        let want = Ack {
            r#type: "session_init_ack",
            status: "success",
            session_id: "1",
            job_id: "22",
            chain_id: 84532,
            message: "Session initialized",
            id: TRICKY,
        };
        assert_eq!(ack.emit(), serde(&want));

        #[derive(Serialize)]
        struct Error<'a> {
            r#type: &'a str,
            code: &'a str,
            message: &'a str,
            session_id: &'a str,
            id: &'a str,
            prompt_tokens: u64,
            context_window_size: u64,
        }
        let error = ErrorFrame {
            code: ErrorCode::TokenLimitExceeded,
            message: TRICKY,
            sentence: [""; 3],
            session_id: Some("7"),
            id: Some("r"),
            token_limit: Some(TokenLimit {
                prompt_tokens: 9000,
                context_window_size: 8192,
            }),
        };
        let want = Error {
            r#type: "error",
            code: "TOKEN_LIMIT_EXCEEDED",
            message: TRICKY,
            session_id: "7",
            id: "r",
            prompt_tokens: 9000,
            context_window_size: 8192,
        };
        let text = error.emit();
        assert_eq!(text, serde(&want));
        let parsed = NodeFrame::parse(&text).unwrap();
        assert_eq!(parsed.kind(), Some(NodeFrameKind::Error));
        assert_eq!(
            parsed.error(),
            ("TOKEN_LIMIT_EXCEEDED".into(), TRICKY.into())
        );
    }

    #[test]
    fn error_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_ERROR_MESSAGE_LEN);
        let frame = ErrorFrame {
            code: ErrorCode::Internal,
            message: &long,
            sentence: [""; 3],
            session_id: None,
            id: None,
            token_limit: None,
        }
        .emit();
        let (_, message) = NodeFrame::parse(&frame).unwrap().error();
        assert_eq!(message.len(), MAX_ERROR_MESSAGE_LEN);
    }

    #[test]
    fn answer_frames_are_serde_json_s_and_parse_back() {
        let sealed = [0xab; 20];
        let nonce = [7; 24];
        #[derive(Serialize)]
        struct Chunk<'a> {
            r#type: &'a str,
            session_id: &'a str,
            id: &'a str,
            tokens: u64,
            payload: Payload<'a>,
            #[serde(rename = "final")]
            is_final: bool,
        }
        let (ct_hex, nonce_hex) = (hex_of(&sealed), hex_of(&nonce));
        let mut out = String::new();
        EncryptedChunk {
            session_id: "1",
            id: TRICKY,
            payload: Sealed {
                sealed: &sealed,
                nonce: &nonce,
                aad: b"chunk_3",
            },
            index: 3,
            is_final: true,
        }
        .emit_into(&mut out);
        let want = Chunk {
            r#type: "encrypted_chunk",
            session_id: "1",
            id: TRICKY,
            tokens: 1,
            payload: Payload {
                ct: &ct_hex,
                nonce: &nonce_hex,
                aad: &hex_of(b"chunk_3"),
                index: Some(3),
            },
            is_final: true,
        };
        assert_eq!(out, serde(&want));
        let parsed = NodeFrame::parse(&out).unwrap();
        let chunk = parsed.chunk().unwrap();
        assert_eq!(parsed.kind(), Some(NodeFrameKind::EncryptedChunk));
        assert_eq!(parsed.request_id(), Some(TRICKY));
        assert_eq!(chunk.sealed.ciphertext, ct_hex);
        assert_eq!(chunk.index.and_then(Field::as_u64), Some(3));
        assert!(chunk.is_final);

        #[derive(Serialize)]
        struct Response<'a> {
            r#type: &'a str,
            session_id: &'a str,
            id: &'a str,
            payload: Payload<'a>,
        }
        let response = EncryptedResponse {
            session_id: "1",
            id: "r",
            payload: Sealed {
                sealed: &sealed,
                nonce: &nonce,
                aad: b"encrypted_response_final",
            },
        }
        .emit();
        let want = Response {
            r#type: "encrypted_response",
            session_id: "1",
            id: "r",
            payload: Payload {
                ct: &ct_hex,
                nonce: &nonce_hex,
                aad: &hex_of(b"encrypted_response_final"),
                index: None,
            },
        };
        assert_eq!(response, serde(&want));
        let parsed = NodeFrame::parse(&response).unwrap();
        assert_eq!(
            parsed.response().unwrap().map(|s| s.nonce),
            Some(&*nonce_hex)
        );

        #[derive(Serialize)]
        struct Usage {
            prompt_tokens: u64,
            completion_tokens: u64,
            total_tokens: u64,
            context_window_size: u64,
        }
        #[derive(Serialize)]
        struct End<'a> {
            r#type: &'a str,
            session_id: &'a str,
            id: &'a str,
            reason: &'a str,
            tokens_used: u64,
            finish_reason: &'a str,
            usage: Usage,
        }
        let end = StreamEnd {
            finish_reason: TRICKY.into(),
            ..StreamEnd::complete(12, 3, 8192)
        };
        let frame = StreamEndFrame {
            session_id: "1",
            id: "r",
            end: &end,
        }
        .emit();
        let want = End {
            r#type: "stream_end",
            session_id: "1",
            id: "r",
            reason: "complete",
            tokens_used: 3,
            finish_reason: TRICKY,
            usage: Usage {
                prompt_tokens: 12,
                completion_tokens: 3,
                total_tokens: 15,
                context_window_size: 8192,
            },
        };
        assert_eq!(frame, serde(&want));
        assert_eq!(
            NodeFrame::parse(&frame).unwrap().stream_end(),
            (Some(TRICKY.into()), Some(3))
        );
    }

    fn hex_of(b: &[u8]) -> String {
        crate::crypto::hex::encode(b)
    }

    #[derive(Serialize)]
    struct PlainChunk<'a> {
        r#type: &'a str,
        content: &'a str,
        id: &'a str,
        #[serde(rename = "final", skip_serializing_if = "std::ops::Not::not")]
        is_final: bool,
    }

    proptest! {
        /// Whatever text a plaintext chunk or an error carries, the frame is serde_json's.
        #[test]
        fn any_text_is_escaped_as_serde_json_does(text in any::<String>(), id in any::<String>(), is_final in any::<bool>()) {
            let mut out = String::new();
            StreamChunk { content: &text, id: &id, is_final }.emit_into(&mut out);
            let want = PlainChunk { r#type: "stream_chunk", content: &text, id: &id, is_final };
            prop_assert_eq!(&out, &serde(&want));
            let parsed = NodeFrame::parse(&out).unwrap();
            prop_assert_eq!(parsed.content().unwrap(), text.as_str());
            prop_assert_eq!(parsed.chunk().is_err(), true);
        }
    }
}
