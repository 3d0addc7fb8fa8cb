//! The dudect method (Reparaz, Balasch, Verbauwhede: "Dude, is my code constant time?", 2017)
//! in a few dozen lines: time one operation on inputs of two classes, interleaved at random,
//! and compare the two timing distributions with Welch's t-test, on all samples and on samples
//! cropped at a ladder of percentiles (which removes the long tail that interrupts add). The
//! largest |t| is the verdict: above ~4.5, the time depends on the class.
//!
//! Statistics only, no cryptography: written here rather than pulling in a crate whose
//! command-line dependencies carry advisories.

use std::hint::black_box;
use std::time::Instant;

/// Which of the two input classes a sample belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Left,
    Right,
}

/// Collects the timings of one test.
#[derive(Default)]
pub struct CtRunner {
    samples: Vec<(Class, u64)>,
}

impl CtRunner {
    /// Times one call of `f` on an input of `class`.
    pub fn run_one<T>(&mut self, class: Class, f: impl FnOnce() -> T) {
        let start = Instant::now();
        black_box(f());
        let ns = start.elapsed().as_nanos();
        self.samples
            .push((class, u64::try_from(ns).unwrap_or(u64::MAX)));
    }

    /// The largest |t| over the uncropped samples and every percentile crop, and the number of
    /// samples per class.
    pub fn max_t(&self) -> (f64, usize, usize) {
        let mut sorted: Vec<u64> = self.samples.iter().map(|s| s.1).collect();
        sorted.sort_unstable();
        // dudect's ladder: thresholds at the 1 - 0.5^(10 (i + 1) / 100) percentiles.
        let mut thresholds = vec![u64::MAX];
        for i in 0..100 {
            let p = 1.0 - 0.5f64.powf(10.0 * f64::from(i + 1) / 100.0);
            let at = ((sorted.len() as f64) * p) as usize;
            thresholds.push(sorted[at.min(sorted.len().saturating_sub(1))]);
        }
        let mut max_t: f64 = 0.0;
        for &limit in &thresholds {
            let (mut l, mut r) = (Welford::default(), Welford::default());
            for &(class, ns) in &self.samples {
                if ns <= limit {
                    match class {
                        Class::Left => l.push(ns as f64),
                        Class::Right => r.push(ns as f64),
                    }
                }
            }
            if let Some(t) = welch_t(&l, &r) {
                max_t = max_t.max(t.abs());
            }
        }
        let left = self.samples.iter().filter(|s| s.0 == Class::Left).count();
        (max_t, left, self.samples.len() - left)
    }
}

/// Running mean and variance (Welford).
#[derive(Default)]
struct Welford {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Welford {
    fn push(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }
}

/// Welch's t statistic of two samples, if both have at least two values and some variance.
fn welch_t(a: &Welford, b: &Welford) -> Option<f64> {
    if a.n < 2.0 || b.n < 2.0 {
        return None;
    }
    let se = (a.m2 / (a.n - 1.0) / a.n + b.m2 / (b.n - 1.0) / b.n).sqrt();
    (se > 0.0).then(|| (a.mean - b.mean) / se)
}
