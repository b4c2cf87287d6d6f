//! What the bench measures: latency histograms (HdrHistogram, microseconds)
//! per second of the run and per operation, kept by each connection for the
//! second it is in and handed to the collector when the second ends, so the
//! connections share nothing per operation.

use super::workload::Op;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies from 1 µs to 100 s, two significant digits (1% resolution).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 2).expect("valid histogram bounds")
}

/// One connection's (or the run's) measurements of one second.
#[derive(Debug, Clone)]
pub struct Second {
    pub index: u64,
    pub latency: Histogram<u64>,
    pub ops: [u64; 4],
    pub errors: u64,
    /// The first error of the second, as the server worded it.
    pub error: Option<String>,
}

impl Second {
    pub fn new(index: u64) -> Second {
        Second {
            index,
            latency: histogram(),
            ops: [0; 4],
            errors: 0,
            error: None,
        }
    }

    pub fn record(&mut self, op: Op, micros: u64) {
        self.latency.saturating_record(micros.max(1));
        self.ops[op_index(op)] += 1;
    }

    pub fn add(&mut self, other: &Second) {
        let _ = self.latency.add(&other.latency);
        for (a, b) in self.ops.iter_mut().zip(other.ops) {
            *a += b;
        }
        self.errors += other.errors;
        if self.error.is_none() {
            self.error.clone_from(&other.error);
        }
    }

    pub fn total_ops(&self) -> u64 {
        self.ops.iter().sum()
    }
}

pub fn op_index(op: Op) -> usize {
    Op::ALL.iter().position(|o| *o == op).unwrap_or(0)
}

/// Percentiles of a histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

/// The whole run, assembled by the collector.
#[derive(Debug, Clone)]
pub struct Run {
    /// Second `i` of the measured part of the run at index `i`.
    pub seconds: Vec<Second>,
    /// Per operation, over the run.
    pub by_op: [Histogram<u64>; 4],
    pub total: Histogram<u64>,
    /// Distinct error messages seen (the first few).
    pub error_samples: Vec<String>,
}

/// Distinct error messages a run keeps.
const ERROR_SAMPLES: usize = 5;

impl Default for Run {
    fn default() -> Self {
        Run {
            seconds: Vec::new(),
            by_op: [histogram(), histogram(), histogram(), histogram()],
            total: histogram(),
            error_samples: Vec::new(),
        }
    }
}

impl Run {
    /// Adds one connection's second.
    pub fn add(&mut self, s: &Second) {
        let i = s.index as usize;
        while self.seconds.len() <= i {
            let next = self.seconds.len() as u64;
            self.seconds.push(Second::new(next));
        }
        self.seconds[i].add(s);
        let _ = self.total.add(&s.latency);
        if let Some(e) = &s.error {
            if self.error_samples.len() < ERROR_SAMPLES && !self.error_samples.contains(e) {
                self.error_samples.push(e.clone());
            }
        }
    }

    /// Adds one connection's per-operation histograms (at its end).
    pub fn add_ops(&mut self, by_op: &[Histogram<u64>; 4]) {
        for (a, b) in self.by_op.iter_mut().zip(by_op) {
            let _ = a.add(b);
        }
    }

    pub fn ops(&self) -> u64 {
        self.seconds.iter().map(Second::total_ops).sum()
    }

    pub fn errors(&self) -> u64 {
        self.seconds.iter().map(|s| s.errors).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_merge_into_the_run() {
        let mut run = Run::default();
        let mut a = Second::new(0);
        let mut b = Second::new(2);
        for us in [100, 200, 300] {
            a.record(Op::Read, us);
        }
        b.record(Op::Write, 1000);
        b.errors = 1;
        run.add(&a);
        run.add(&b);
        assert_eq!(run.seconds.len(), 3);
        assert_eq!(run.ops(), 4);
        assert_eq!(run.errors(), 1);
        assert_eq!(run.seconds[2].ops[op_index(Op::Write)], 1);
        let l = Latency::of(&run.total);
        assert_eq!(l.max / 10, 100);
        assert_eq!(l.p50 / 10, 20);
        assert_eq!(Latency::of(&histogram()), Latency::default());
    }
}
