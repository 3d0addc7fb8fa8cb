//! What `grpc_chat_node --metrics ADDR` serves at `GET /metrics`: the relay's counters in the
//! Prometheus text format ([`prometheus-client`](https://docs.rs/prometheus-client)).
//!
//! Labels are fixed words only (frame kinds, refusal reasons, limit scopes): never an
//! identity, a chat id or an address, so a scrape links no one to anyone.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sealwire::chat::relay::{RelayError, RelayStats};
use sealwire::chat::FrameKind;

type Labels = Vec<(&'static str, String)>;
/// How to read a counter and a gauge of the relay machine's stats.
type ReadCounter = fn(&RelayStats) -> u64;
type ReadGauge = fn(&RelayStats) -> usize;
type StatCounter = (ReadCounter, Counter);
type StatGauge = (ReadGauge, Gauge);

/// The node's counters.
///
/// ```
/// use chat_examples::metrics::Metrics;
/// use sealwire::chat::FrameKind;
/// let m = Metrics::new();
/// m.frame_accepted(FrameKind::Data, 0, 100);
/// let text = m.encode(&Default::default());
/// assert!(text.contains("chat_node_frames_total{kind=\"data\"} 1"));
/// assert!(text.contains("chat_node_frame_bytes_total 100"));
/// ```
pub struct Metrics {
    registry: Registry,
    frames: Family<Labels, Counter>,
    frame_bytes: Counter,
    rekeys: Counter,
    refused: Family<Labels, Counter>,
    rate_limited: Family<Labels, Counter>,
    /// Copies published again because a frame published after them was acknowledged first.
    pub republished: Counter,
    stats_counters: Vec<StatCounter>,
    stats_gauges: Vec<StatGauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every counter at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chat_node");
        let frames = Family::<Labels, Counter>::default();
        let frame_bytes = Counter::default();
        let rekeys = Counter::default();
        let refused = Family::<Labels, Counter>::default();
        let rate_limited = Family::<Labels, Counter>::default();
        registry.register(
            "frames",
            "Frames accepted from apps, by kind in the keyless header",
            frames.clone(),
        );
        registry.register(
            "frame_bytes",
            "Bytes of accepted frames",
            frame_bytes.clone(),
        );
        registry.register(
            "rekeys",
            "Handshake initiations of an epoch after the first (rekeys)",
            rekeys.clone(),
        );
        registry.register(
            "refused",
            "Uplink messages refused, by reason",
            refused.clone(),
        );
        registry.register(
            "rate_limited",
            "Frames refused by a token bucket, by scope (app, chat) and kind (data, handshake)",
            rate_limited.clone(),
        );
        let republished = Counter::default();
        registry.register(
            "frames_republished",
            "Copies published again to other nodes: a later frame was acknowledged first",
            republished.clone(),
        );
        let counters: [(&str, &str, ReadCounter); 8] = [
            ("registrations", "Identities registered", |s| {
                s.registrations
            }),
            (
                "frames_routed",
                "Frames routed to a mailbox or pending list",
                |s| s.frames_routed,
            ),
            (
                "frames_delivered",
                "Frames handed to an app's stream",
                |s| s.frames_delivered,
            ),
            ("frames_forwarded", "Frames published to other nodes", |s| {
                s.frames_forwarded
            }),
            ("forwarded_in", "Frames from other nodes queued here", |s| {
                s.forwarded_in
            }),
            (
                "forwarded_refused",
                "Frames from other nodes refused",
                |s| s.forwarded_refused,
            ),
            ("chats_expired", "Chats expired (idle) and wiped", |s| {
                s.chats_expired
            }),
            (
                "frames_expired",
                "Queued frames dropped with an expired chat",
                |s| s.frames_dropped,
            ),
        ];
        let stats_counters = counters
            .into_iter()
            .map(|(name, help, get)| {
                let c = Counter::default();
                registry.register(name, help, c.clone());
                (get, c)
            })
            .collect();
        let gauges: [(&str, &str, ReadGauge); 5] = [
            ("streams", "Open streams", |s| s.streams),
            ("apps", "Identities known", |s| s.apps),
            ("chats", "Chats held", |s| s.chats),
            (
                "mailbox_frames",
                "Frames queued in mailboxes and pending lists",
                |s| s.queued_frames,
            ),
            (
                "mailbox_bytes",
                "Bytes queued in mailboxes and pending lists",
                |s| s.queued_bytes,
            ),
        ];
        let stats_gauges = gauges
            .into_iter()
            .map(|(name, help, get)| {
                let g = Gauge::default();
                registry.register(name, help, g.clone());
                (get, g)
            })
            .collect();
        Metrics {
            registry,
            frames,
            frame_bytes,
            rekeys,
            refused,
            rate_limited,
            republished,
            stats_counters,
            stats_gauges,
        }
    }

    /// The text exposition, with the relay machine's `stats` brought up to date first.
    pub fn encode(&self, stats: &RelayStats) -> String {
        for (get, counter) in &self.stats_counters {
            let now = get(stats);
            counter.inc_by(now.saturating_sub(counter.get()));
        }
        for (get, gauge) in &self.stats_gauges {
            gauge.set(i64::try_from(get(stats)).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A frame of `kind` in `epoch`, `len` bytes, was accepted.
    pub fn frame_accepted(&self, kind: FrameKind, epoch: u32, len: usize) {
        self.frames
            .get_or_create(&vec![("kind", kind_name(kind).into())])
            .inc();
        self.frame_bytes.inc_by(len as u64);
        if kind == FrameKind::HandshakeInit && epoch > 0 {
            self.rekeys.inc();
        }
    }

    /// An uplink message was refused.
    pub fn refused(&self, e: &RelayError) {
        let reason = format!("{e:?}");
        self.refused.get_or_create(&vec![("reason", reason)]).inc();
    }

    /// A token bucket refused a frame.
    pub fn rate_limited(&self, scope: &'static str, kind: &'static str) {
        self.rate_limited
            .get_or_create(&vec![("scope", scope.into()), ("kind", kind.into())])
            .inc();
    }
}

fn kind_name(kind: FrameKind) -> &'static str {
    match kind {
        FrameKind::HandshakeInit => "handshake_init",
        FrameKind::HandshakeResponse => "handshake_response",
        FrameKind::HandshakeFinish => "handshake_finish",
        FrameKind::Data => "data",
        FrameKind::Close => "close",
        _ => "other",
    }
}
