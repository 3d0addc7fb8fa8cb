//! The OpenAI-compatible backend ([`UpstreamModel`]): each prompt becomes a streaming
//! `POST {base}/chat/completions` (vLLM, llama.cpp's server, Ollama and most others speak it),
//! its server-sent-event deltas become [`Output::Text`] pieces as they arrive, `finish_reason`
//! and `usage` the [`Output::End`], and an upstream error, timeout or malformed stream an
//! [`Output::Failed`] with `INFERENCE_FAILED`. At most `max_inflight` requests run at once;
//! up to `max_queued` more wait for a slot, and beyond that a prompt is refused (`CAPACITY`).
//! Dropping the answer stream drops the HTTP response, which aborts the upstream request.
//!
//! Neither the prompt nor anything the upstream says is logged or forwarded to the client.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use sealwire::session::ErrorCode;
use tokio::sync::Semaphore;
use tracing::warn;
use zeroize::Zeroizing;

use crate::model::{Model, Output};

/// Longest server-sent-event line accepted (a delta is a few hundred bytes).
const MAX_LINE: usize = 1 << 20;

/// How to reach the upstream server (what the command line configures).
#[derive(Clone)]
pub struct UpstreamConfig {
    /// Base URL, e.g. `http://127.0.0.1:8000/v1` (`/chat/completions` is appended).
    pub base_url: String,
    /// Model name sent upstream instead of the session's, if set.
    pub model: Option<String>,
    /// Bearer key (`UPSTREAM_API_KEY`), if any.
    pub api_key: Option<Arc<Zeroizing<String>>>,
    /// Longest wait for the response headers, and for each piece of the stream after them.
    pub timeout: Duration,
    /// Requests running at once.
    pub max_inflight: usize,
    /// Requests waiting for a slot before prompts are refused.
    pub max_queued: usize,
    /// Context window reported in `stream_end`.
    pub context_window: u64,
}

/// An OpenAI-compatible chat-completions server as the node's [`Model`].
///
/// ```
/// use std::time::Duration;
/// use session_examples::upstream::{UpstreamConfig, UpstreamModel};
/// let model = UpstreamModel::new(UpstreamConfig {
///     base_url: "http://127.0.0.1:8000/v1".into(),
///     model: None,
///     api_key: None,
///     timeout: Duration::from_secs(60),
///     max_inflight: 8,
///     max_queued: 32,
///     context_window: 8192,
/// }).unwrap();
/// # drop(model);
/// ```
pub struct UpstreamModel {
    http: reqwest::Client,
    url: String,
    config: UpstreamConfig,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

impl UpstreamModel {
    /// A backend for `config` (an error if the HTTP client cannot be built).
    pub fn new(config: UpstreamConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Ok(UpstreamModel {
            http,
            url,
            slots: Arc::new(Semaphore::new(config.max_inflight.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            config,
        })
    }
}

/// Counts a request waiting for a slot while it exists (dropped when it gets one, or when the
/// client cancels while waiting).
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

const FAILED: Output = Output::Failed {
    code: ErrorCode::InferenceFailed,
    message: "inference failed",
};

impl Model for UpstreamModel {
    fn generate(&self, model: &str, prompt: &str) -> BoxStream<'static, Output> {
        let body = serde_json::json!({
            "model": self.config.model.as_deref().unwrap_or(model),
            "messages": [{ "role": "user", "content": prompt }],
            "stream": true,
            "stream_options": { "include_usage": true },
        });
        // The body holds the prompt: serialize it into wiped storage.
        let body = Zeroizing::new(body.to_string().into_bytes());
        let mut request = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key.as_str());
        }
        let timeout = self.config.timeout;
        let slots = self.slots.clone();
        let waiting = self.waiting.clone();
        let max_queued = self.config.max_queued;
        let start = async move {
            let permit = match slots.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    if waiting.fetch_add(1, Ordering::Relaxed) >= max_queued {
                        drop(Waiting(waiting));
                        return Err(Output::Failed {
                            code: ErrorCode::Capacity,
                            message: "node busy, try again later",
                        });
                    }
                    let queued = Waiting(waiting);
                    let permit = slots.acquire_owned().await.map_err(|_| FAILED)?;
                    drop(queued);
                    permit
                }
            };
            let request = request.body(body.to_vec());
            drop(body);
            let response = match tokio::time::timeout(timeout, request.send()).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    warn!(error = %without_url(e), "upstream request failed");
                    return Err(FAILED);
                }
                Err(_) => {
                    warn!("upstream did not answer in time");
                    return Err(FAILED);
                }
            };
            if !response.status().is_success() {
                warn!(
                    status = response.status().as_u16(),
                    "upstream refused the request"
                );
                return Err(FAILED);
            }
            Ok(Sse {
                body: response.bytes_stream().boxed(),
                line: Vec::new(),
                ready: VecDeque::new(),
                finish: None,
                usage: (None, None),
                done: false,
                timeout,
                _permit: permit,
            })
        };
        futures_util::stream::once(start)
            .flat_map(|started| match started {
                Ok(sse) => futures_util::stream::unfold(sse, Sse::next_output).boxed(),
                Err(failed) => futures_util::stream::iter([failed]).boxed(),
            })
            .boxed()
    }

    fn context_window(&self) -> u64 {
        self.config.context_window
    }
}

/// The error without the URL (it may carry credentials in its user-info part).
fn without_url(e: reqwest::Error) -> reqwest::Error {
    e.without_url()
}

/// A server-sent-event stream being decoded.
struct Sse {
    body: BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
    line: Vec<u8>,
    ready: VecDeque<Output>,
    finish: Option<String>,
    usage: (Option<u64>, Option<u64>),
    done: bool,
    timeout: Duration,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Sse {
    async fn next_output(mut self) -> Option<(Output, Self)> {
        loop {
            if let Some(out) = self.ready.pop_front() {
                return Some((out, self));
            }
            if self.done {
                return None;
            }
            let next = tokio::time::timeout(self.timeout, self.body.next()).await;
            match next {
                Ok(Some(Ok(bytes))) => {
                    if let Err(why) = self.feed(&bytes) {
                        warn!(why, "malformed upstream stream");
                        self.fail();
                    }
                }
                Ok(Some(Err(e))) => {
                    warn!(error = %without_url(e), "upstream stream broke");
                    self.fail();
                }
                Ok(None) => {
                    // The body ended: a normal end needs a finish_reason first.
                    match self.finish.take() {
                        Some(finish_reason) => self.end(finish_reason),
                        None => {
                            warn!("upstream stream ended without finish_reason");
                            self.fail();
                        }
                    }
                }
                Err(_) => {
                    warn!("upstream stream stalled");
                    self.fail();
                }
            }
        }
    }

    fn fail(&mut self) {
        self.ready.push_back(FAILED);
        self.done = true;
    }

    fn end(&mut self, finish_reason: String) {
        self.ready.push_back(Output::End {
            finish_reason,
            prompt_tokens: self.usage.0,
            completion_tokens: self.usage.1,
        });
        self.done = true;
    }

    /// Splits `bytes` into lines and handles each complete `data:` line.
    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), &'static str> {
        while !bytes.is_empty() && !self.done {
            let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
                if self.line.len().saturating_add(bytes.len()) > MAX_LINE {
                    return Err("line too long");
                }
                self.line.extend_from_slice(bytes);
                return Ok(());
            };
            let (head, rest) = bytes.split_at(nl);
            bytes = rest.get(1..).unwrap_or_default();
            if self.line.len().saturating_add(head.len()) > MAX_LINE {
                return Err("line too long");
            }
            self.line.extend_from_slice(head);
            let line = std::mem::take(&mut self.line);
            self.line_done(&line)?;
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8]) -> Result<(), &'static str> {
        let line = std::str::from_utf8(line).map_err(|_| "not UTF-8")?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        // Comments, `event:`/`id:` fields and blank separators carry nothing we use.
        let Some(data) = line.strip_prefix("data:") else {
            return Ok(());
        };
        let data = data.trim_start();
        if data == "[DONE]" {
            let finish = self.finish.take().ok_or("[DONE] without finish_reason")?;
            self.end(finish);
            return Ok(());
        }
        let event: serde_json::Value = serde_json::from_str(data).map_err(|_| "not JSON")?;
        if event.get("error").is_some() {
            return Err("error event");
        }
        if let Some(usage) = event.get("usage").filter(|u| !u.is_null()) {
            let count = |k: &str| usage.get(k).and_then(serde_json::Value::as_u64);
            self.usage = (count("prompt_tokens"), count("completion_tokens"));
        }
        let choices = event.get("choices").ok_or("no choices")?;
        let choices = choices.as_array().ok_or("choices not a list")?;
        for choice in choices {
            let content = choice.get("delta").and_then(|d| d.get("content"));
            if let Some(text) = content.and_then(serde_json::Value::as_str) {
                if !text.is_empty() {
                    self.ready.push_back(Output::Text(text.to_owned()));
                }
            }
            if let Some(reason) = choice
                .get("finish_reason")
                .and_then(serde_json::Value::as_str)
            {
                self.finish = Some(reason.to_owned());
            }
        }
        Ok(())
    }
}
