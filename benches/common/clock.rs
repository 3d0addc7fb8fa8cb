//! Shared by the bench files (`#[path = "common/clock.rs"] mod clock;`).
//!
//! The benchmark thread's CPU time, or with `SEALWIRE_BENCH_CLOCK=wall` wall time (criterion's
//! default clock). The machines are single-threaded and never sleep, so their CPU time is their
//! cost; on a shared, loaded machine wall time also counts the time spent descheduled, which
//! lands on one function and not its neighbour and moved `--quick` ratios by 30% and more
//! between runs, while CPU-time ratios repeat within a few percent.

use criterion::Criterion;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use rustix::time::{clock_gettime, ClockId};

pub struct Clock {
    id: ClockId,
    wall: WallTime,
}

impl Clock {
    pub fn from_env() -> Self {
        let wall = std::env::var("SEALWIRE_BENCH_CLOCK").is_ok_and(|v| v == "wall");
        let id = if wall {
            ClockId::Monotonic
        } else {
            ClockId::ThreadCPUTime
        };
        Clock { id, wall: WallTime }
    }

    fn now_ns(&self) -> u64 {
        let t = clock_gettime(self.id);
        (t.tv_sec as u64) * 1_000_000_000 + t.tv_nsec as u64
    }
}

impl Measurement for Clock {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        self.now_ns()
    }
    fn end(&self, start: u64) -> u64 {
        self.now_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Values are nanoseconds either way.
        self.wall.formatter()
    }
}
/// `--quick` stops once two samples agree within 2% (criterion's default is 5%) or after 3 s.
pub fn config() -> Criterion<Clock> {
    Criterion::default()
        .with_measurement(Clock::from_env())
        .significance_level(0.02)
        .measurement_time(std::time::Duration::from_secs(3))
}
