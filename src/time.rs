//! Virtual, caller-supplied time.
//!
//! sealwire never reads a clock. Every `handle_*` method takes `now: Instant`, an opaque
//! monotonic timestamp in nanoseconds from an origin the caller picks (process start, a test's
//! zero, ...). Machines report their next deadline through `poll_timeout()` and act on it only
//! when the caller calls `handle_timeout(now)`. Tests therefore run faster than real time and
//! are deterministic. Wall-clock time, where a protocol needs it, is a separate input:
//! [`WallTime`].
//!
//! ```
//! use sealwire::time::{Duration, Instant};
//! let t0 = Instant::ZERO;
//! let t1 = t0 + Duration::from_secs(30);
//! assert_eq!(t1.saturating_duration_since(t0), Duration::from_secs(30));
//! assert!(t1 > t0);
//! ```

pub use core::time::Duration;

/// A monotonic point in time: nanoseconds since a caller-defined origin.
///
/// Arithmetic saturates instead of overflowing, so a hostile or buggy caller can never make a
/// machine panic through time.
///
/// ```
/// use sealwire::time::{Duration, Instant};
/// let t = Instant::from_nanos(5);
/// assert_eq!(t.as_nanos(), 5);
/// assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant(0);
    /// The last representable instant (about 584 years after the origin).
    pub const MAX: Instant = Instant(u64::MAX);

    /// An instant `nanos` nanoseconds after the origin.
    ///
    /// ```
    /// # use sealwire::time::Instant;
    /// assert_eq!(Instant::from_nanos(1_000).as_nanos(), 1_000);
    /// ```
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// An instant `secs` seconds after the origin.
    ///
    /// ```
    /// # use sealwire::time::Instant;
    /// assert_eq!(Instant::from_secs(2).as_nanos(), 2_000_000_000);
    /// ```
    pub const fn from_secs(secs: u64) -> Self {
        Instant(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the origin.
    ///
    /// ```
    /// # use sealwire::time::Instant;
    /// assert_eq!(Instant::ZERO.as_nanos(), 0);
    /// ```
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    ///
    /// ```
    /// # use sealwire::time::{Duration, Instant};
    /// let a = Instant::from_secs(1);
    /// assert_eq!(Instant::ZERO.saturating_duration_since(a), Duration::ZERO);
    /// ```
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    ///
    /// ```
    /// # use sealwire::time::{Duration, Instant};
    /// assert_eq!(Instant::ZERO.saturating_add(Duration::from_nanos(3)).as_nanos(), 3);
    /// ```
    pub fn saturating_add(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }

    /// `self - d`, saturating at [`Instant::ZERO`].
    ///
    /// ```
    /// # use sealwire::time::{Duration, Instant};
    /// assert_eq!(Instant::from_secs(1).saturating_sub(Duration::from_secs(5)), Instant::ZERO);
    /// ```
    pub fn saturating_sub(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_sub(nanos))
    }
}

impl core::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl core::ops::AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = self.saturating_add(d);
    }
}

impl core::ops::Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        self.saturating_sub(d)
    }
}

impl core::ops::Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// Wall-clock time: seconds and nanoseconds since the Unix epoch.
///
/// Machines never read the system clock; a protocol that needs wall-clock time (WireGuard's
/// TAI64N initiation timestamps) takes it as an input of its own, separate from the monotonic
/// [`Instant`] (see `tunnel::Device::set_wall_clock`).
///
/// ```
/// use sealwire::time::{Duration, WallTime};
/// let w = WallTime::from_unix(1_700_000_000, 999_999_999);
/// assert_eq!(w.secs(), 1_700_000_000);
/// let later = w.saturating_add(Duration::from_nanos(2));
/// assert_eq!((later.secs(), later.subsec_nanos()), (1_700_000_001, 1));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallTime {
    secs: u64,
    nanos: u32,
}

impl WallTime {
    /// The Unix epoch.
    pub const UNIX_EPOCH: WallTime = WallTime { secs: 0, nanos: 0 };

    /// `secs` seconds and `nanos` nanoseconds (clamped below 10^9) after the Unix epoch.
    ///
    /// ```
    /// # use sealwire::time::WallTime;
    /// assert_eq!(WallTime::from_unix(5, 2_000_000_000).subsec_nanos(), 999_999_999);
    /// ```
    pub const fn from_unix(secs: u64, nanos: u32) -> Self {
        let nanos = if nanos > 999_999_999 {
            999_999_999
        } else {
            nanos
        };
        WallTime { secs, nanos }
    }

    /// Whole seconds since the Unix epoch.
    ///
    /// ```
    /// # use sealwire::time::WallTime;
    /// assert_eq!(WallTime::from_unix(7, 1).secs(), 7);
    /// ```
    pub const fn secs(&self) -> u64 {
        self.secs
    }

    /// The nanoseconds past [`secs`](Self::secs) (below 10^9).
    ///
    /// ```
    /// # use sealwire::time::WallTime;
    /// assert_eq!(WallTime::from_unix(7, 1).subsec_nanos(), 1);
    /// ```
    pub const fn subsec_nanos(&self) -> u32 {
        self.nanos
    }

    /// `self + d`, saturating at the last representable second.
    ///
    /// ```
    /// # use sealwire::time::{Duration, WallTime};
    /// let w = WallTime::from_unix(u64::MAX, 0).saturating_add(Duration::from_secs(1));
    /// assert_eq!(w.secs(), u64::MAX);
    /// ```
    pub fn saturating_add(self, d: Duration) -> Self {
        // Both parts are below 10^9, so the sum of nanoseconds (below 2 * 10^9, far from
        // u32::MAX) carries at most one second.
        let total = self.nanos.saturating_add(d.subsec_nanos());
        let carry = u64::from(total / 1_000_000_000);
        WallTime {
            secs: self.secs.saturating_add(d.as_secs()).saturating_add(carry),
            nanos: total % 1_000_000_000,
        }
    }

    /// The time from `earlier` to `self`; zero when `earlier` is later (a clock set back).
    ///
    /// ```
    /// # use sealwire::time::{Duration, WallTime};
    /// let (a, b) = (WallTime::from_unix(10, 500), WallTime::from_unix(12, 400));
    /// assert_eq!(b.saturating_duration_since(a), Duration::new(1, 999_999_900));
    /// assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
    /// ```
    pub fn saturating_duration_since(self, earlier: WallTime) -> Duration {
        if self <= earlier {
            return Duration::ZERO;
        }
        // `self > earlier`: borrow a second when the nanoseconds go below zero.
        let (secs, nanos) = match self.nanos.checked_sub(earlier.nanos) {
            Some(n) => (self.secs.saturating_sub(earlier.secs), n),
            None => (
                self.secs.saturating_sub(earlier.secs).saturating_sub(1),
                self.nanos
                    .saturating_add(1_000_000_000)
                    .saturating_sub(earlier.nanos),
            ),
        };
        Duration::new(secs, nanos)
    }

    /// The current system time (std only).
    ///
    /// ```
    /// assert!(sealwire::time::WallTime::now().secs() > 1_600_000_000);
    /// ```
    #[cfg(feature = "std")]
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        WallTime::from_unix(d.as_secs(), d.subsec_nanos())
    }
}

/// Maps `std::time::Instant` to [`Instant`] from a fixed origin (for the tokio examples).
///
/// ```
/// let clock = sealwire::time::Clock::new();
/// let a = clock.now();
/// let b = clock.now();
/// assert!(b >= a);
/// ```
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: std::time::Instant,
}

#[cfg(feature = "std")]
impl Clock {
    /// A clock whose origin is the moment of this call.
    pub fn new() -> Self {
        Clock {
            origin: std::time::Instant::now(),
        }
    }

    /// The current time as a sealwire [`Instant`].
    pub fn now(&self) -> Instant {
        self.from_std(std::time::Instant::now())
    }

    /// Converts a `std::time::Instant` (before the origin maps to [`Instant::ZERO`]).
    pub fn from_std(&self, t: std::time::Instant) -> Instant {
        let d = t.saturating_duration_since(self.origin);
        Instant::ZERO.saturating_add(d)
    }

    /// Converts a sealwire [`Instant`] back to a `std::time::Instant`. An instant the
    /// platform cannot represent (centuries ahead: only [`Instant::MAX`]-like deadlines) maps
    /// to about 136 years after the origin, still later than any real deadline.
    pub fn to_std(&self, t: Instant) -> std::time::Instant {
        let d = Duration::from_nanos(t.as_nanos());
        self.origin
            .checked_add(d)
            .or_else(|| {
                self.origin
                    .checked_add(Duration::from_secs(u64::from(u32::MAX)))
            })
            .unwrap_or(self.origin)
    }
}

#[cfg(feature = "std")]
impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        assert_eq!(Instant::MAX + Duration::MAX, Instant::MAX);
        assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(Instant::ZERO - Instant::MAX, Duration::ZERO);
        assert_eq!(
            Instant::from_secs(3) - Instant::from_secs(1),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn wall_time_carries_nanoseconds_into_seconds() {
        let w = WallTime::from_unix(10, 600_000_000);
        let later = w.saturating_add(Duration::new(3, 500_000_000));
        assert_eq!((later.secs(), later.subsec_nanos()), (14, 100_000_000));
        assert_eq!(
            WallTime::from_unix(1, 999_999_999).saturating_add(Duration::from_nanos(1)),
            WallTime::from_unix(2, 0)
        );
    }
}
