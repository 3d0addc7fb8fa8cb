//! Cryptokey routing: longest-prefix match over AllowedIPs (paper §2).
//!
//! Sorted prefix tables: one ordered map per address family keyed by `(prefix length, masked
//! address)`, plus a count of entries per length. A lookup probes only the lengths in use,
//! longest first: at most 33 (IPv4) or 129 (IPv6) `O(log n)` probes, no allocation.
//!
//! Why both ways: outbound, the destination picks the one peer allowed to receive it;
//! inbound, a decrypted packet is only forwarded if its source is in the sending peer's
//! AllowedIPs, so a peer can never spoof another peer's addresses.

use alloc::collections::BTreeMap;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

/// An IP prefix such as `10.0.0.0/24` or `fd00::/64`; host bits are cleared on creation.
///
/// ```
/// use sealwire::tunnel::Cidr;
/// let c: Cidr = "10.1.2.3/16".parse().unwrap();
/// assert_eq!(c.to_string(), "10.1.0.0/16");
/// assert!("10.0.0.0/33".parse::<Cidr>().is_err());
/// assert!(c.contains("10.1.200.1".parse().unwrap()));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

/// The prefix text was not `ADDRESS/LENGTH` with a length that fits the address.
///
/// ```
/// use sealwire::tunnel::{Cidr, CidrError};
/// assert_eq!("10.0.0.0/33".parse::<Cidr>(), Err(CidrError));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CidrError;

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the prefix is not ADDRESS/LENGTH with a valid length")
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CidrError {}

/// The first `len` bits of `a` (a length beyond 32 keeps them all; 0 keeps none: the shift
/// by 32 does not exist).
fn mask4(a: u32, len: u8) -> u32 {
    let shift = 32u32.saturating_sub(u32::from(len));
    a & u32::MAX.checked_shl(shift).unwrap_or(0)
}

/// The first `len` bits of `a`, as [`mask4`].
fn mask6(a: u128, len: u8) -> u128 {
    let shift = 128u32.saturating_sub(u32::from(len));
    a & u128::MAX.checked_shl(shift).unwrap_or(0)
}

impl Cidr {
    /// A prefix of `len` bits of `addr`; `None` if `len` exceeds the address size.
    ///
    /// ```
    /// # use sealwire::tunnel::Cidr;
    /// assert!(Cidr::new("::1".parse().unwrap(), 128).is_some());
    /// assert!(Cidr::new("::1".parse().unwrap(), 129).is_none());
    /// ```
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let addr = match addr {
            IpAddr::V4(a) if len <= 32 => IpAddr::V4(Ipv4Addr::from(mask4(u32::from(a), len))),
            IpAddr::V6(a) if len <= 128 => IpAddr::V6(Ipv6Addr::from(mask6(u128::from(a), len))),
            _ => return None,
        };
        Some(Cidr { addr, len })
    }

    /// The (masked) network address.
    ///
    /// ```
    /// # use sealwire::tunnel::Cidr;
    /// let c: Cidr = "fd00::7/64".parse().unwrap();
    /// assert_eq!((c.addr().to_string(), c.prefix_len()), ("fd00::".to_string(), 64));
    /// assert!(!c.is_default_route() && "::/0".parse::<Cidr>().unwrap().is_default_route());
    /// ```
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether this is a zero-length prefix (`0.0.0.0/0` or `::/0`).
    pub fn is_default_route(&self) -> bool {
        self.len == 0
    }

    /// Whether `ip` lies inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask4(u32::from(a), self.len) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask6(u128::from(a), self.len) == u128::from(n),
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let s = s.trim();
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| CidrError)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
                l.parse::<u8>().map_err(|_| CidrError)?
            }
            Some(_) => return Err(CidrError),
            None => max,
        };
        Cidr::new(addr, len).ok_or(CidrError)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Removes every prefix of one address family mapped to `value`, keeping the count of
/// prefixes per length (`lens`) in step.
fn remove_family<A: Ord, T: PartialEq>(
    table: &mut BTreeMap<(u8, A), T>,
    lens: &mut [u32],
    value: T,
) {
    table.retain(|(l, _), v| {
        let keep = *v != value;
        if !keep {
            if let Some(c) = lens.get_mut(usize::from(*l)) {
                *c = c.saturating_sub(1);
            }
        }
        keep
    });
}

/// Longest-prefix table mapping prefixes to values (peer slots).
#[derive(Clone, Debug)]
pub(crate) struct AllowedIps<T> {
    v4: BTreeMap<(u8, u32), T>,
    v6: BTreeMap<(u8, u128), T>,
    /// How many prefixes of each length exist.
    v4_lens: [u32; 33],
    v6_lens: [u32; 129],
    /// Bit `l` set iff some prefix has length `l`: a lookup probes only those lengths,
    /// longest first.
    v4_mask: u64,
    v6_mask: [u64; 3],
    /// The last [`Self::lookup_cached`] (destination and result), dropped on every change of
    /// the table: a flow's packets share one destination, so most outbound lookups hit it.
    last: Option<(IpAddr, Option<T>)>,
}

impl<T> Default for AllowedIps<T> {
    fn default() -> Self {
        AllowedIps {
            v4: BTreeMap::new(),
            v6: BTreeMap::new(),
            v4_lens: [0; 33],
            v6_lens: [0; 129],
            v4_mask: 0,
            v6_mask: [0; 3],
            last: None,
        }
    }
}

impl<T: Copy + PartialEq> AllowedIps<T> {
    /// Inserts or replaces (a prefix belongs to exactly one peer, as in WireGuard).
    pub(crate) fn insert(&mut self, cidr: Cidr, value: T) -> Option<T> {
        self.last = None;
        let len = cidr.len;
        let prev = match cidr.addr {
            IpAddr::V4(a) => self.v4.insert((len, u32::from(a)), value),
            IpAddr::V6(a) => self.v6.insert((len, u128::from(a)), value),
        };
        if prev.is_none() {
            let counts: &mut [u32] = if cidr.addr.is_ipv4() {
                &mut self.v4_lens
            } else {
                &mut self.v6_lens
            };
            if let Some(c) = counts.get_mut(usize::from(len)) {
                *c = c.saturating_add(1);
            }
            self.refresh_masks();
        }
        prev
    }

    /// Removes every prefix mapped to `value`.
    pub(crate) fn remove_value(&mut self, value: T) {
        self.last = None;
        remove_family(&mut self.v4, &mut self.v4_lens, value);
        remove_family(&mut self.v6, &mut self.v6_lens, value);
        self.refresh_masks();
    }

    /// Recomputes the length bitmaps from the counts (on every change of the table, which
    /// is rare; lookups are the hot path).
    fn refresh_masks(&mut self) {
        self.v4_mask = 0;
        for (l, c) in self.v4_lens.iter().enumerate() {
            if *c > 0 {
                self.v4_mask |= 1 << l;
            }
        }
        self.v6_mask = [0; 3];
        for (l, c) in self.v6_lens.iter().enumerate() {
            if *c > 0 {
                if let Some(w) = self.v6_mask.get_mut(l / 64) {
                    *w |= 1 << (l % 64);
                }
            }
        }
    }

    /// [`Self::lookup`] that remembers its last answer until the table changes.
    #[inline]
    pub(crate) fn lookup_cached(&mut self, ip: IpAddr) -> Option<T> {
        if let Some((last_ip, value)) = self.last {
            if last_ip == ip {
                return value;
            }
        }
        let value = self.lookup(ip);
        self.last = Some((ip, value));
        value
    }

    /// The value of the longest prefix containing `ip`.
    #[inline]
    pub(crate) fn lookup(&self, ip: IpAddr) -> Option<T> {
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                let mut m = self.v4_mask;
                // Longest first: the highest set bit is the longest length present.
                while let Some(l) = m.checked_ilog2() {
                    m &= !(1u64 << l);
                    // l <= 32: the mask only holds bits of lengths 0..=32.
                    let l = l as u8;
                    if let Some(v) = self.v4.get(&(l, mask4(a, l))) {
                        return Some(*v);
                    }
                }
                None
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                // Word `w` holds lengths `64 * w ..`: its base ORed with a bit below 64 is
                // their sum, and the mask only holds lengths 0..=128, so it fits a u8.
                for (base, mut m) in [0u8, 64, 128].into_iter().zip(self.v6_mask).rev() {
                    while let Some(bit) = m.checked_ilog2() {
                        m &= !(1u64 << bit);
                        let l = base | bit as u8;
                        if let Some(v) = self.v6.get(&(l, mask6(a, l))) {
                            return Some(*v);
                        }
                    }
                }
                None
            }
        }
    }

    /// The prefixes mapped to `value`.
    pub(crate) fn prefixes_of(&self, value: T) -> impl Iterator<Item = Cidr> + '_ {
        let v4 = self
            .v4
            .iter()
            .filter(move |(_, v)| **v == value)
            .filter_map(|((l, a), _)| Cidr::new(IpAddr::V4(Ipv4Addr::from(*a)), *l));
        let v6 = self
            .v6
            .iter()
            .filter(move |(_, v)| **v == value)
            .filter_map(|((l, a), _)| Cidr::new(IpAddr::V6(Ipv6Addr::from(*a)), *l));
        v4.chain(v6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_both_families() {
        let mut t = AllowedIps::default();
        t.insert("0.0.0.0/0".parse().unwrap(), 1);
        t.insert("10.0.0.0/8".parse().unwrap(), 2);
        t.insert("10.1.0.0/16".parse().unwrap(), 3);
        t.insert("10.1.2.3/32".parse().unwrap(), 4);
        t.insert("fd00::/8".parse().unwrap(), 5);
        t.insert("fd00:1::/32".parse().unwrap(), 6);
        assert_eq!(t.lookup(ip("8.8.8.8")), Some(1));
        assert_eq!(t.lookup(ip("10.2.0.1")), Some(2));
        assert_eq!(t.lookup(ip("10.1.9.9")), Some(3));
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(4));
        assert_eq!(t.lookup(ip("fd00:1::5")), Some(6));
        assert_eq!(t.lookup(ip("fd77::5")), Some(5));
        assert_eq!(t.lookup(ip("2001:db8::1")), None);
        t.remove_value(3);
        assert_eq!(t.lookup(ip("10.1.9.9")), Some(2));
        assert_eq!(t.prefixes_of(4).count(), 1);
        // Re-inserting a prefix moves it to the new peer.
        t.insert("10.0.0.0/8".parse().unwrap(), 9);
        assert_eq!(t.lookup(ip("10.2.0.1")), Some(9));
        t.remove_value(2);
        assert_eq!(t.lookup(ip("10.2.0.1")), Some(9));
    }

    // Model check against a linear longest-prefix scan (independent of the table layout).
    /// The cached lookup answers like the uncached one after every kind of change:
    /// a new prefix, a replaced prefix (same prefix, other value) and a removed value.
    #[test]
    fn cached_lookup_follows_every_change() {
        let mut t = AllowedIps::default();
        let a = ip("10.1.2.3");
        assert_eq!(t.lookup_cached(a), None);
        t.insert("10.0.0.0/8".parse().unwrap(), 1u32);
        assert_eq!(t.lookup_cached(a), Some(1));
        assert_eq!(t.lookup_cached(a), Some(1));
        t.insert("10.1.0.0/16".parse().unwrap(), 2);
        assert_eq!(t.lookup_cached(a), Some(2));
        t.insert("10.1.0.0/16".parse().unwrap(), 3);
        assert_eq!(t.lookup_cached(a), Some(3));
        assert_eq!(t.lookup_cached(ip("10.9.9.9")), Some(1));
        assert_eq!(t.lookup_cached(a), Some(3));
        t.remove_value(3);
        assert_eq!(t.lookup_cached(a), Some(1));
        t.remove_value(1);
        assert_eq!(t.lookup_cached(a), None);
        assert_eq!(t.lookup_cached(ip("fd00::1")), None);
    }

    #[test]
    fn lookup_matches_a_linear_scan() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut t = AllowedIps::default();
        let mut model: std::vec::Vec<(Cidr, u32)> = std::vec::Vec::new();
        for v in 0..300u32 {
            let r = next();
            let c = if r % 3 == 0 {
                Cidr::new(
                    IpAddr::V6(Ipv6Addr::from(u128::from(r) << 64 | 0xfd)),
                    (r % 129) as u8,
                )
            } else {
                // Small address space so prefixes overlap a lot.
                Cidr::new(
                    IpAddr::V4(Ipv4Addr::from((r as u32) & 0x0a0f_0f0f)),
                    (r % 33) as u8,
                )
            }
            .unwrap();
            t.insert(c, v);
            model.retain(|(m, _)| *m != c);
            model.push((c, v));
            if v % 50 == 49 {
                let gone = (next() % u64::from(v)) as u32;
                t.remove_value(gone);
                model.retain(|(_, m)| *m != gone);
            }
        }
        for _ in 0..5000 {
            let r = next();
            let ip = if r % 3 == 0 {
                IpAddr::V6(Ipv6Addr::from(u128::from(r) << 64 | u128::from(r >> 60)))
            } else {
                IpAddr::V4(Ipv4Addr::from((r as u32) & 0x0a0f_0f0f))
            };
            let expect = model
                .iter()
                .filter(|(c, _)| c.contains(ip))
                .max_by_key(|(c, _)| c.prefix_len())
                .map(|(_, v)| *v);
            assert_eq!(t.lookup(ip), expect, "{ip}");
        }
    }

    #[test]
    fn cidr_parsing_is_strict() {
        assert!("10.0.0.1".parse::<Cidr>().unwrap().prefix_len() == 32);
        for bad in [
            "10.0.0.0/",
            "10.0.0.0/+1",
            "10.0.0.0/x",
            "1.2.3/8",
            "::/129",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod word_boundaries {
    use super::*;

    /// IPv6 lengths on both sides of each 64-bit word of the length bitmap: removing the
    /// longest prefix each time, the next longest always wins.
    #[test]
    fn v6_lengths_at_the_bitmap_word_edges_are_found_longest_first() {
        let a: Ipv6Addr = "fd00:1:2:3:4:5:6:7".parse().unwrap();
        let lens = [0u8, 1, 62, 63, 64, 65, 126, 127, 128];
        let mut t = AllowedIps::default();
        for l in lens {
            t.insert(Cidr::new(IpAddr::V6(a), l).unwrap(), l);
        }
        for l in lens.iter().rev() {
            assert_eq!(t.lookup(IpAddr::V6(a)), Some(*l));
            t.remove_value(*l);
        }
        assert_eq!(t.lookup(IpAddr::V6(a)), None);
        // And v4 at its ends.
        let b = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        for l in [0u8, 31, 32] {
            t.insert(Cidr::new(b, l).unwrap(), l);
        }
        for l in [32u8, 31, 0] {
            assert_eq!(t.lookup(b), Some(l));
            t.remove_value(l);
        }
        assert_eq!(t.lookup(b), None);
    }
}
