//! The frames a client sends to a node, both directions: the [`Client`](crate::session::Client)
//! emits them, the [`Node`](crate::session::Node) parses them. This file holds the view every
//! client frame is parsed into ([`ClientFrame`]), the heartbeat and `stream_cancel`
//! ([docs/fabstir-wire.md §4.1]); the session frames have their own files: `init.rs` (§2),
//! `message.rs` (§3), `plaintext.rs` (§5.3).
//!
//! Parsers report the first failure as the [`NodeError`] whose code the node's `error` frame
//! carries, in the order of [docs/fabstir-wire.md §2.5, §3].

use alloc::string::String;

use serde::Deserialize;

use super::json::{parse_object, str_of, u64_of, Field, JsonObject, Obj};
use super::plaintext::PlainRequest;
use super::{is_decimal, PayloadFields, SnakeVectorDatabase, MAX_ECHO_LEN};
use crate::session::error::NodeError;

/// `{"type":"ping"}` (the heartbeat; the node answers `pong`).
pub(crate) const PING: &str = r#"{"type":"ping"}"#;

/// Every field any client→node frame can carry (unknown fields are skipped).
#[derive(Deserialize)]
pub(crate) struct ClientFrame<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) ty: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) payload: Option<Obj<PayloadFields<'a>>>,
    #[serde(borrow)]
    pub(super) session_id: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) job_id: Option<Field<'a>>,
    #[serde(rename = "jobId", borrow)]
    pub(super) job_id_camel: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) chain_id: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) id: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) user_address: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) vector_database: Option<Obj<SnakeVectorDatabase<'a>>>,
    #[serde(borrow)]
    pub(super) prompt: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) request: Option<Obj<PlainRequest<'a>>>,
    #[serde(borrow)]
    pub(super) reason: Option<Field<'a>>,
    #[serde(borrow)]
    pub(super) web_search: Option<Field<'a>>,
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
    pub(super) fn short_id(&self) -> Option<&str> {
        str_of(&self.id).filter(|s| s.len() <= MAX_ECHO_LEN)
    }

    /// Envelope `id` of a request: required, echoed in every answer frame.
    pub(super) fn request_id(&self) -> Result<&str, NodeError> {
        self.short_id().ok_or(NodeError::InvalidMessage("id"))
    }

    pub(super) fn chain_id(&self) -> Result<u64, NodeError> {
        u64_of(&self.chain_id).ok_or(NodeError::InvalidMessage("chain_id"))
    }

    pub(super) fn payload(&self) -> Result<&PayloadFields<'a>, NodeError> {
        self.payload
            .as_ref()
            .and_then(Obj::get)
            .ok_or(NodeError::MissingPayload)
    }

    pub(super) fn web_search(&self) -> bool {
        self.web_search.as_ref().and_then(Field::as_bool) == Some(true)
    }
}

pub(super) fn decimal_of<'x>(f: &'x Option<Field<'_>>) -> Option<&'x str> {
    str_of(f).filter(|s| is_decimal(s))
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
        o.lit("type", "stream_cancel")
            .str("session_id", self.session_id)
            .str("reason", self.reason);
        o.close();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_is_serde_json_s_and_parses_back_with_a_bounded_reason() {
        #[derive(serde::Serialize)]
        struct Cancel<'a> {
            r#type: &'a str,
            session_id: &'a str,
            reason: &'a str,
        }
        let reason = "é\"".repeat(200);
        let text = StreamCancel {
            session_id: "5",
            reason: &reason,
        }
        .emit();
        let want = Cancel {
            r#type: "stream_cancel",
            session_id: "5",
            reason: &reason,
        };
        assert_eq!(text, serde_json::to_string(&want).unwrap());
        let frame = ClientFrame::parse(&text).unwrap();
        assert_eq!(frame.kind(), Ok(ClientFrameKind::StreamCancel));
        let back = StreamCancel::parse(&frame).unwrap();
        assert_eq!(back.session_id, "5");
        assert!(back.reason.len() <= MAX_ECHO_LEN && reason.starts_with(back.reason));
        let bare = ClientFrame::parse(r#"{"type":"stream_cancel","session_id":"5"}"#).unwrap();
        assert_eq!(StreamCancel::parse(&bare).unwrap().reason, "user_cancelled");
    }

    #[test]
    fn ping_is_a_ping_and_unknown_types_are_refused() {
        assert_eq!(
            ClientFrame::parse(PING).unwrap().kind(),
            Ok(ClientFrameKind::Ping)
        );
        let other = ClientFrame::parse(r#"{"type":"pong"}"#).unwrap();
        assert_eq!(other.kind(), Err(NodeError::InvalidMessage("unknown type")));
        assert!(ClientFrame::parse("[1]").is_err());
    }
}
