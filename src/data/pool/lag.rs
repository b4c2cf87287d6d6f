//! Replica lag as the proxy measures it, in time, from WAL positions alone.
//!
//! The health checker samples the primary's WAL position every round and
//! keeps the samples of the last while. A replica that has replayed up to
//! position R lacks exactly the WAL written after R; the first sample past
//! R was taken when the primary already had some of that WAL, so the
//! replica is at least `now - that sample's time` behind (and less than one
//! round more). An idle primary writes no WAL, so its replicas show no lag
//! however old their last replayed transaction is: the flaw of
//! `now() - pg_last_xact_replay_timestamp()`, which also mixes two clocks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Samples kept: enough for a lag of this many rounds to be measured; a
/// replica further behind is reported at the oldest sample's age.
const KEPT: usize = 512;

/// The primary's WAL positions over time.
#[derive(Debug, Default)]
pub struct LagHistory {
    /// (when, primary's WAL position), oldest first, positions rising.
    samples: VecDeque<(Instant, u64)>,
}

impl LagHistory {
    /// Records the primary's position at `at`. A position below the last
    /// one (a new primary) starts the history again.
    pub fn record(&mut self, at: Instant, lsn: u64) {
        match self.samples.back() {
            Some(&(_, last)) if lsn < last => self.samples.clear(),
            Some(&(_, last)) if lsn == last => return, // nothing new written
            _ => {}
        }
        if self.samples.len() == KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back((at, lsn));
    }

    /// Forgets every sample (the primary changed).
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// How far behind a replica that has replayed up to `replayed` is at
    /// `now`: zero when it has everything sampled, else the age of the
    /// first sample past its position. None before any sample.
    pub fn lag(&self, replayed: u64, now: Instant) -> Option<Duration> {
        let &(_, last) = self.samples.back()?;
        if replayed >= last {
            return Some(Duration::ZERO);
        }
        // Positions rise: the first sample past `replayed`.
        let i = self.samples.partition_point(|&(_, lsn)| lsn <= replayed);
        let (at, _) = self.samples[i];
        Some(now.saturating_duration_since(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_age_of_the_first_wal_the_replica_lacks() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut h = LagHistory::default();
        assert_eq!(h.lag(0, t0), None);
        h.record(ms(0), 100);
        h.record(ms(500), 100); // idle primary: no new sample
        h.record(ms(1000), 200);
        h.record(ms(1500), 300);
        // Caught up, or ahead of the last sample (sampled a moment later).
        assert_eq!(h.lag(300, ms(1600)), Some(Duration::ZERO));
        assert_eq!(h.lag(350, ms(1600)), Some(Duration::ZERO));
        // Lacks what came after 200: first seen at 1500.
        assert_eq!(h.lag(200, ms(1600)), Some(Duration::from_millis(100)));
        assert_eq!(h.lag(150, ms(1600)), Some(Duration::from_millis(600)));
        assert_eq!(h.lag(0, ms(1600)), Some(Duration::from_millis(1600)));
        // A new primary's lower positions start over.
        h.record(ms(2000), 50);
        assert_eq!(h.lag(40, ms(2100)), Some(Duration::from_millis(100)));
        assert_eq!(h.lag(50, ms(2100)), Some(Duration::ZERO));
    }

    #[test]
    fn history_is_bounded() {
        let t0 = Instant::now();
        let mut h = LagHistory::default();
        for i in 0..(KEPT as u64 * 2) {
            h.record(t0 + Duration::from_millis(i), i + 1);
        }
        assert_eq!(h.samples.len(), KEPT);
        // Further behind than the history reaches: the oldest sample's age.
        let now = t0 + Duration::from_millis(KEPT as u64 * 2);
        assert_eq!(h.lag(0, now), Some(Duration::from_millis(KEPT as u64)));
    }
}
