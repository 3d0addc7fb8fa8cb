//! Virtual, caller-supplied time.
//!
//! sealwire never reads a clock. Every `handle_*` method takes `now: Instant`, an opaque
//! monotonic timestamp in nanoseconds from an origin the caller picks (process start, a test's
//! zero, ...). Machines report their next deadline through `poll_timeout()` and act on it only
//! when the caller calls `handle_timeout(now)`. Tests therefore run faster than real time and
//! are deterministic.
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

    /// Converts a sealwire [`Instant`] back to a `std::time::Instant`.
    pub fn to_std(&self, t: Instant) -> std::time::Instant {
        self.origin + Duration::from_nanos(t.as_nanos())
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
}
