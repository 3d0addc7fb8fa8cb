//! What `GET /metrics` serves: counters of the node's work in the Prometheus text format
//! ([`prometheus-client`](https://docs.rs/prometheus-client)).
//!
//! Labels are only fixed words (error codes, refusal reasons, directions): never a key, a
//! client address, a session id or any text of a prompt or answer, so a scrape links no one to
//! anything they asked.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// One fixed-word label.
type Label = [(&'static str, &'static str); 1];

/// The node's counters, shared by the node task and the accept loop.
///
/// ```
/// let m = session_examples::metrics::Metrics::new();
/// m.session_accepted();
/// m.prompt();
/// let text = m.encode();
/// assert!(text.contains("ws_node_sessions_active 1"));
/// assert!(text.contains("ws_node_prompts_total 1"));
/// ```
pub struct Metrics {
    registry: Registry,
    sessions_active: Gauge,
    sessions: Counter,
    inits: Family<Vec<(&'static str, &'static str)>, Counter>,
    prompts: Counter,
    chunks: Counter,
    bytes: Family<Label, Counter>,
    errors: Family<Label, Counter>,
    refused: Family<Label, Counter>,
    first_piece: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every counter at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ws_node");
        let sessions_active = Gauge::default();
        let sessions = Counter::default();
        let inits = Family::default();
        let prompts = Counter::default();
        let chunks = Counter::default();
        let bytes = Family::default();
        let errors = Family::default();
        let refused = Family::default();
        // 1 ms to ~33 s.
        let first_piece = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16),
        );
        registry.register(
            "sessions_active",
            "Sessions open now",
            sessions_active.clone(),
        );
        registry.register("sessions", "Sessions accepted", sessions.clone());
        registry.register(
            "inits",
            "Session inits by result (accepted, rejected) and error code",
            inits.clone(),
        );
        registry.register("prompts", "Prompts received", prompts.clone());
        registry.register("chunks", "Answer chunks sent", chunks.clone());
        registry.register(
            "frame_bytes",
            "WebSocket frame bytes by direction (in, out)",
            bytes.clone(),
        );
        registry.register("errors", "Error frames sent, by error code", errors.clone());
        registry.register(
            "connections_refused",
            "Connections and requests refused by a limit, by reason",
            refused.clone(),
        );
        registry.register(
            "model_first_piece_seconds",
            "Time from a prompt to the model's (or upstream server's) first piece",
            first_piece.clone(),
        );
        Metrics {
            registry,
            sessions_active,
            sessions,
            inits,
            prompts,
            chunks,
            bytes,
            errors,
            refused,
            first_piece,
        }
    }

    /// The Prometheus text exposition of every counter.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A session was accepted (it is active until [`Metrics::session_ended`]).
    pub fn session_accepted(&self) {
        self.sessions.inc();
        self.sessions_active.inc();
        self.inits
            .get_or_create(&vec![("result", "accepted"), ("code", "")])
            .inc();
    }

    /// An accepted session ended.
    pub fn session_ended(&self) {
        self.sessions_active.dec();
    }

    /// A session init was refused with `code`.
    pub fn init_rejected(&self, code: &'static str) {
        self.inits
            .get_or_create(&vec![("result", "rejected"), ("code", code)])
            .inc();
    }

    /// A prompt arrived.
    pub fn prompt(&self) {
        self.prompts.inc();
    }

    /// A chunk of an answer was sent.
    pub fn chunk(&self) {
        self.chunks.inc();
    }

    /// A frame of `len` bytes came in (`"in"`) or went out (`"out"`).
    pub fn frame_bytes(&self, direction: &'static str, len: usize) {
        self.bytes
            .get_or_create(&[("direction", direction)])
            .inc_by(len as u64);
    }

    /// An error frame with `code` was sent.
    pub fn error(&self, code: &'static str) {
        self.errors.get_or_create(&[("code", code)]).inc();
    }

    /// A connection or request was refused by a limit (`reason`: a fixed word).
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&[("reason", reason)]).inc();
    }

    /// The model's first piece of an answer came `seconds` after its prompt.
    pub fn first_piece(&self, seconds: f64) {
        self.first_piece.observe(seconds);
    }
}
