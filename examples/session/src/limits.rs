//! The node's bounds before authentication: [`Limits`] (what the command line sets) and
//! [`ConnectionSlots`], the count of open WebSocket connections in total and per client
//! address, taken before the upgrade and given back when the connection ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Caps that hold before (and regardless of) any authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open WebSocket connections, node-wide.
    pub max_connections: usize,
    /// Open WebSocket connections from one client address.
    pub max_connections_per_ip: usize,
    /// Live (accepted) sessions opened from one client address.
    pub max_sessions_per_ip: usize,
    /// Largest WebSocket frame or message read; a larger one is refused from its header
    /// (never buffered) and the connection closed with code 1009.
    pub max_frame: usize,
    /// Session inits per minute from one address (a token bucket holding as many; 0 = no
    /// limit). Over it the connection is closed with code 1008.
    pub inits_per_minute: u32,
    /// `POST /v1/auth/challenge` per minute from one address (0 = no limit); over it, HTTP 429.
    pub challenges_per_minute: u32,
    /// Bytes of outgoing frames queued for one connection that does not read them; beyond it
    /// (or beyond 1024 frames) the connection is dropped as too slow.
    pub max_queued_bytes: usize,
    /// Time a connection has to send its request headers (and finish a TLS handshake).
    pub header_timeout: std::time::Duration,
    /// Time a WebSocket may stay open without a live session (from its start, or from the end
    /// of its last session); then it is closed with code 1008.
    pub idle_timeout: std::time::Duration,
}

impl Default for Limits {
    /// 10,000 connections, 64 per address, 64 live sessions per address, 1 MiB frames, 600
    /// inits and 600 challenges a minute per address, 4 MiB queued for a connection, 10 s for
    /// the request headers, 30 s without a session.
    ///
    /// ```
    /// let limits = session_examples::limits::Limits::default();
    /// assert_eq!(limits.max_connections_per_ip, 64);
    /// ```
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_connections_per_ip: 64,
            max_sessions_per_ip: 64,
            max_frame: 1 << 20,
            inits_per_minute: 600,
            challenges_per_minute: 600,
            max_queued_bytes: 4 << 20,
            header_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// Descriptors kept for everything but client connections (the listener, upstream requests,
/// the replay-state file, logs).
pub const DESCRIPTOR_HEADROOM: u64 = 256;

impl Limits {
    /// Lowers `max_connections` so that connections plus [`DESCRIPTOR_HEADROOM`] fit in
    /// `descriptors` (the process's file-descriptor limit): the listener never runs out.
    /// Returns the lowered value, or `None` when it already fit.
    ///
    /// ```
    /// use session_examples::limits::Limits;
    /// let mut limits = Limits::default(); // 10,000 connections
    /// assert_eq!(limits.fit_descriptors(1024), Some(768));
    /// assert_eq!(limits.max_connections, 768);
    /// assert_eq!(limits.fit_descriptors(1 << 20), None);
    /// assert_eq!(Limits::default().fit_descriptors(100), Some(0));
    /// ```
    pub fn fit_descriptors(&mut self, descriptors: u64) -> Option<usize> {
        let fits = descriptors.saturating_sub(DESCRIPTOR_HEADROOM);
        let fits = usize::try_from(fits).unwrap_or(usize::MAX);
        if self.max_connections > fits {
            self.max_connections = fits;
            Some(fits)
        } else {
            None
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The node-wide cap.
    Total,
    /// The per-address cap.
    PerAddress,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Open connections in total and per address.
///
/// ```
/// use session_examples::limits::{ConnectionSlots, Limits, Refused};
/// let slots = ConnectionSlots::new(Limits { max_connections: 3, max_connections_per_ip: 2, ..Limits::default() });
/// let a = "127.0.0.2".parse().unwrap();
/// let b = "127.0.0.3".parse().unwrap();
/// let first = slots.take(a).unwrap();
/// let _second = slots.take(a).unwrap();
/// assert_eq!(slots.take(a).err(), Some(Refused::PerAddress));
/// let _third = slots.take(b).unwrap();
/// assert_eq!(slots.take(b).err(), Some(Refused::Total));
/// drop(first);
/// assert!(slots.take(a).is_ok());
/// ```
#[derive(Clone)]
pub struct ConnectionSlots {
    limits: Limits,
    counts: Arc<Mutex<Counts>>,
}

/// One connection's slot, given back on drop.
pub struct Slot {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl ConnectionSlots {
    /// No connection open yet.
    pub fn new(limits: Limits) -> Self {
        ConnectionSlots {
            limits,
            counts: Arc::default(),
        }
    }

    /// A slot for a connection from `ip`, or why not.
    pub fn take(&self, ip: IpAddr) -> Result<Slot, Refused> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= self.limits.max_connections {
            return Err(Refused::Total);
        }
        let mine = counts.per_ip.entry(ip).or_insert(0);
        if *mine >= self.limits.max_connections_per_ip {
            return Err(Refused::PerAddress);
        }
        *mine += 1;
        counts.total += 1;
        Ok(Slot {
            ip,
            counts: self.counts.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

type Keyed = governor::DefaultKeyedRateLimiter<IpAddr>;

/// A token bucket per client address (`governor`), or no limit.
///
/// ```
/// use session_examples::limits::PerAddressRate;
/// let rate = PerAddressRate::per_minute(2);
/// let a = "127.0.0.2".parse().unwrap();
/// assert!(rate.allow(a) && rate.allow(a));
/// assert!(!rate.allow(a));
/// assert!(rate.allow("127.0.0.3".parse().unwrap()));
/// assert!(PerAddressRate::per_minute(0).allow(a));
/// ```
#[derive(Clone)]
pub struct PerAddressRate {
    limiter: Option<Arc<Keyed>>,
    checks: Arc<std::sync::atomic::AtomicU32>,
}

impl PerAddressRate {
    /// `n` a minute per address, in bursts of up to `n`; 0 = no limit.
    pub fn per_minute(n: u32) -> Self {
        let limiter = std::num::NonZeroU32::new(n)
            .map(|n| Arc::new(governor::RateLimiter::keyed(governor::Quota::per_minute(n))));
        PerAddressRate {
            limiter,
            checks: Arc::default(),
        }
    }

    /// Takes a token for `ip`: `false` when its bucket is empty.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let Some(limiter) = &self.limiter else {
            return true;
        };
        // Forget full buckets now and then, so addresses seen once do not pile up.
        let n = self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % 4096 == 4095 {
            limiter.retain_recent();
        }
        limiter.check_key(&ip).is_ok()
    }
}
