//! The legacy plaintext frames ([docs/fabstir-wire.md §5.3]), both directions: the client
//! emits `session_init` and `prompt`, the node parses them (only with
//! [`NodeConfig::allow_plaintext`](crate::session::NodeConfig::allow_plaintext)). Nothing in
//! them is authenticated.

use alloc::string::String;

use serde::Deserialize;

use super::client_frames::{decimal_of, ClientFrame};
use super::json::{exact_frame, str_of, u64_of, Field, JsonObject, JsonOut, Obj, WriteJson};
use super::message::PromptBody;
use super::{read_vector_database, write_vector_database};
use crate::session::error::NodeError;
use crate::session::VectorDatabase;

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
        let vector_database =
            read_vector_database(&frame.vector_database, Invalid("vector_database"))?;
        Ok(PlainSessionInit {
            session_id,
            job_id,
            chain_id,
            user_address,
            vector_database,
            id: frame.short_id(),
        })
    }

    /// The frame, in a string of exactly its size.
    pub(crate) fn emit(&self) -> String {
        exact_frame(self)
    }
}

impl WriteJson for PlainSessionInit<'_> {
    fn write_json<O: JsonOut + ?Sized>(&self, out: &mut O) {
        let mut o = JsonObject::open(out);
        o.lit("type", "session_init")
            .u64("chain_id", self.chain_id)
            .str("session_id", self.session_id)
            .str("jobId", self.job_id);
        if let Some(a) = self.user_address {
            o.str("user_address", a);
        }
        write_vector_database(&mut o, self.vector_database.as_ref(), false);
        if let Some(id) = self.id {
            o.str("id", id);
        }
        o.close();
    }
}

// --------------------------------------------------------------------- plaintext prompt

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

/// `request` of the plaintext `prompt`.
#[derive(Deserialize)]
pub(super) struct PlainRequest<'a> {
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

impl WriteJson for PlainPrompt<'_> {
    fn write_json<O: JsonOut + ?Sized>(&self, out: &mut O) {
        let mut o = JsonObject::open(out);
        o.lit("type", "prompt")
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
    }
}

impl PlainPrompt<'_> {
    /// The frame, in a string of exactly its size.
    pub(crate) fn emit(&self) -> String {
        exact_frame(self)
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

#[cfg(test)]
mod tests {
    //! The legacy frames equal serde_json's serialisation of the same fields in the SDK's
    //! order, and parse back.
    use super::*;
    use crate::session::wire::message::PromptBody;
    use serde::Serialize;

    const TRICKY: &str = "u \"q\" \\ \u{8}\u{c}é";

    #[test]
    fn the_plaintext_session_init_is_serde_json_s_and_parses_back() {
        let init = PlainSessionInit {
            session_id: "3",
            job_id: "4",
            chain_id: 1,
            user_address: Some(TRICKY),
            vector_database: Some(VectorDatabase {
                manifest_path: "m/p".into(),
                user_address: TRICKY.into(),
            }),
            id: Some("1-a"),
        };
        #[derive(Serialize)]
        struct Vdb {
            manifest_path: &'static str,
            user_address: &'static str,
        }
        #[derive(Serialize)]
        #[allow(non_snake_case)]
        struct Frame {
            r#type: &'static str,
            chain_id: u64,
            session_id: &'static str,
            jobId: &'static str,
            user_address: &'static str,
            vector_database: Vdb,
            id: &'static str,
        }
        let want = Frame {
            r#type: "session_init",
            chain_id: 1,
            session_id: "3",
            jobId: "4",
            user_address: TRICKY,
            vector_database: Vdb {
                manifest_path: "m/p",
                user_address: TRICKY,
            },
            id: "1-a",
        };
        let text = init.emit();
        assert_eq!(text, serde_json::to_string(&want).unwrap());
        let frame = ClientFrame::parse(&text).unwrap();
        let back = PlainSessionInit::parse(&frame).unwrap();
        assert_eq!((back.session_id, back.job_id, back.chain_id), ("3", "4", 1));
        assert_eq!((back.user_address, back.id), (Some(TRICKY), Some("1-a")));
        assert_eq!(back.vector_database, init.vector_database);
    }

    #[test]
    fn the_plaintext_prompt_is_serde_json_s_and_parses_back() {
        let prompt = PlainPrompt {
            chain_id: 1,
            job_id: "4",
            body: PromptBody {
                text: TRICKY,
                model: "llama",
                max_tokens: 10,
                temperature: 1.0,
                thinking: None,
                images: &[],
                search_queries: &[],
            },
            web_search: false,
            max_searches: 0,
            id: "2-b",
        };
        #[derive(Serialize)]
        struct Request {
            model: &'static str,
            prompt: &'static str,
            max_tokens: u64,
            // JavaScript prints the number 1.0 as `1`.
            temperature: u64,
            stream: bool,
        }
        #[derive(Serialize)]
        #[allow(non_snake_case)]
        struct Frame {
            r#type: &'static str,
            chain_id: u64,
            jobId: &'static str,
            prompt: &'static str,
            web_search: bool,
            max_searches: u64,
            search_queries: Option<()>,
            request: Request,
            id: &'static str,
        }
        let want = Frame {
            r#type: "prompt",
            chain_id: 1,
            jobId: "4",
            prompt: TRICKY,
            web_search: false,
            max_searches: 0,
            search_queries: None,
            request: Request {
                model: "llama",
                prompt: TRICKY,
                max_tokens: 10,
                temperature: 1,
                stream: true,
            },
            id: "2-b",
        };
        let text = prompt.emit();
        assert_eq!(text, serde_json::to_string(&want).unwrap());
        let frame = ClientFrame::parse(&text).unwrap();
        let back = PlainPrompt::parse(&frame).unwrap();
        assert_eq!(
            (back.job_id, back.session_id, back.id),
            (Some("4"), None, "2-b")
        );
        assert_eq!(back.prompt(), Ok(TRICKY));
        assert_eq!((back.model(), back.max_tokens()), (Some("llama"), Some(10)));
        assert_eq!((back.temperature(), back.thinking()), (Some(1.0), None));
    }
}
