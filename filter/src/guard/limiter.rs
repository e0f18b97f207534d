//! An adaptive concurrency limit for statements sent to mysqld: additive increase while
//! latency stays near its baseline, multiplicative decrease when it rises past a
//! tolerance (AIMD on latency, as TCP does on loss). The db role refuses statements
//! beyond the limit with a retryable error instead of letting a struggling mysqld queue
//! them. Time comes in as measured latencies; nothing here reads a clock.

/// The limit's state.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveLimit {
    limit: f64,
    min: f64,
    max: f64,
    /// Latency considered normal, in microseconds: follows drops quickly, rises slowly.
    baseline_us: f64,
    /// A sample slower than `baseline * tolerance` counts as congestion.
    tolerance: f64,
}

/// Multiplicative decrease factor.
const BACKOFF: f64 = 0.9;

impl AdaptiveLimit {
    /// Starts at `max`; `tolerance` is at least 1.1.
    pub fn new(min: usize, max: usize, tolerance: f64) -> Self {
        let min = min.max(1) as f64;
        let max = (max as f64).max(min);
        AdaptiveLimit {
            limit: max,
            min,
            max,
            baseline_us: 0.0,
            tolerance: tolerance.max(1.1),
        }
    }

    /// Statements allowed in flight now.
    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    pub fn baseline_us(&self) -> u64 {
        self.baseline_us as u64
    }

    /// Records one statement's latency, with `inflight` statements running when it ended.
    pub fn on_sample(&mut self, latency_us: u64, inflight: usize) {
        let l = latency_us.max(1) as f64;
        if self.baseline_us == 0.0 {
            self.baseline_us = l;
            return;
        }
        if l < self.baseline_us {
            self.baseline_us = 0.5 * self.baseline_us + 0.5 * l;
        } else {
            self.baseline_us = 0.999 * self.baseline_us + 0.001 * l;
        }
        if l > self.baseline_us * self.tolerance {
            self.limit = (self.limit * BACKOFF).max(self.min);
        } else if inflight as f64 >= self.limit / 2.0 {
            // Grow only while the limit is actually being used.
            self.limit = (self.limit + 1.0 / self.limit.max(1.0)).min(self.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_latency_keeps_the_limit_and_a_spike_backs_off_then_recovers() {
        let mut l = AdaptiveLimit::new(4, 100, 2.0);
        for _ in 0..1000 {
            l.on_sample(1_000, 60);
        }
        assert_eq!(l.limit(), 100);
        for _ in 0..50 {
            l.on_sample(10_000, 60);
        }
        assert!(l.limit() < 20, "limit {} after a latency spike", l.limit());
        for _ in 0..50 {
            l.on_sample(20_000, 60);
        }
        assert_eq!(l.limit(), 4, "never below the minimum");
        for _ in 0..20_000 {
            l.on_sample(1_000, 100);
        }
        assert_eq!(l.limit(), 100, "recovers to the maximum");
    }

    #[test]
    fn an_idle_limit_does_not_grow() {
        let mut l = AdaptiveLimit::new(4, 100, 2.0);
        for _ in 0..30 {
            l.on_sample(1_000, 1);
            l.on_sample(50_000, 1);
        }
        let low = l.limit();
        for _ in 0..1000 {
            l.on_sample(1_000, 1);
        }
        assert_eq!(l.limit(), low);
    }
}
