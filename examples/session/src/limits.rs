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
}

impl Default for Limits {
    /// 10,000 connections, 64 per address, 64 live sessions per address, 1 MiB frames.
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
