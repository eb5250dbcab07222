//! Measurements shared by every scenario: latency histograms that survive a trip through a
//! worker's JSON line, error tallies, and rates.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency a histogram records, in microseconds (larger values are clamped).
const MAX_MICROS: u64 = 120_000_000;
/// Significant decimal digits kept: 3 means at most 0.1% error on any percentile.
const SIGFIGS: u8 = 3;

/// Round-trip or connect latencies in microseconds, HDR-style (log-linear buckets).
#[derive(Clone, Debug)]
pub struct Latency {
    hist: Histogram<u64>,
}

/// A histogram as a worker sends it: the non-empty buckets as `[value, count]` pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyData(pub Vec<(u64, u64)>);

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        let hist = Histogram::new_with_bounds(1, MAX_MICROS, SIGFIGS)
            .expect("static histogram bounds are valid");
        Latency { hist }
    }

    pub fn record(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.record_micros(micros);
    }

    pub fn record_micros(&mut self, micros: u64) {
        self.hist.saturating_record(micros.clamp(1, MAX_MICROS));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// The value at `q` (0.0..=1.0) in microseconds; 0 when empty.
    pub fn quantile_micros(&self, q: f64) -> u64 {
        if self.is_empty() {
            0
        } else {
            self.hist.value_at_quantile(q)
        }
    }

    pub fn max_micros(&self) -> u64 {
        if self.is_empty() {
            0
        } else {
            self.hist.max()
        }
    }

    pub fn mean_micros(&self) -> f64 {
        if self.is_empty() {
            0.0
        } else {
            self.hist.mean()
        }
    }

    pub fn to_data(&self) -> LatencyData {
        LatencyData(
            self.hist
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    pub fn from_data(data: &LatencyData) -> Self {
        let mut l = Latency::new();
        for &(value, count) in &data.0 {
            let _ = l.hist.record_n(value.clamp(1, MAX_MICROS), count);
        }
        l
    }

    /// The usual percentiles, for a report.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.len(),
            mean_us: self.mean_micros(),
            p50_us: self.quantile_micros(0.50),
            p90_us: self.quantile_micros(0.90),
            p99_us: self.quantile_micros(0.99),
            p999_us: self.quantile_micros(0.999),
            max_us: self.max_micros(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl LatencySummary {
    /// `p50 1.23 ms  p99 4.56 ms  ...` for a human-readable line.
    pub fn human(&self) -> String {
        format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (n={})",
            fmt_micros(self.p50_us),
            fmt_micros(self.p90_us),
            fmt_micros(self.p99_us),
            fmt_micros(self.p999_us),
            fmt_micros(self.max_us),
            self.count
        )
    }
}

/// `850 µs`, `1.25 ms`, `2.500 s`.
pub fn fmt_micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.3} s", us as f64 / 1e6)
    }
}

/// Failures by kind (`tcp_connect`, `handshake`, ...), kept sorted for stable output.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors(pub BTreeMap<String, u64>);

impl Errors {
    pub fn add(&mut self, kind: &str, n: u64) {
        if n > 0 {
            *self.0.entry(kind.to_string()).or_insert(0) += n;
        }
    }

    pub fn merge(&mut self, other: &Errors) {
        for (k, v) in &other.0 {
            self.add(k, *v);
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `none` or `handshake=3 tcp_connect=1`.
    pub fn human(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Events per second over `elapsed`; 0 for an empty interval.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        count as f64 / secs
    }
}

/// Memory growth per connection in KiB; `None` without connections.
pub fn kib_per_connection(before_bytes: u64, after_bytes: u64, connections: u64) -> Option<f64> {
    if connections == 0 {
        return None;
    }
    let grown = after_bytes as f64 - before_bytes as f64;
    Some(grown / 1024.0 / connections as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut l = Latency::new();
        for us in 1..=10_000 {
            l.record_micros(us);
        }
        let s = l.summary();
        assert_eq!(s.count, 10_000);
        // Three significant figures: within 0.1% of the exact answer.
        assert!((4_995..=5_005).contains(&s.p50_us), "{s:?}");
        assert!((9_890..=9_910).contains(&s.p99_us), "{s:?}");
        assert!((9_980..=10_010).contains(&s.p999_us), "{s:?}");
        assert!((10_000..=10_010).contains(&s.max_us), "{s:?}");
    }

    #[test]
    fn data_round_trip_keeps_every_count() {
        let mut l = Latency::new();
        l.record(Duration::from_micros(120));
        l.record(Duration::from_micros(120));
        l.record(Duration::from_millis(3));
        l.record(Duration::from_secs(1));
        let json = serde_json::to_string(&l.to_data()).unwrap();
        let back = Latency::from_data(&serde_json::from_str(&json).unwrap());
        assert_eq!(back.len(), 4);
        assert_eq!(back.summary(), l.summary());
    }

    #[test]
    fn merging_workers_equals_recording_in_one() {
        let (mut a, mut b, mut all) = (Latency::new(), Latency::new(), Latency::new());
        for us in 0..1000u64 {
            let v = 50 + us * 7;
            if us % 3 == 0 {
                a.record_micros(v)
            } else {
                b.record_micros(v)
            }
            all.record_micros(v);
        }
        let mut merged = Latency::from_data(&a.to_data());
        merged.merge(&Latency::from_data(&b.to_data()));
        assert_eq!(merged.summary(), all.summary());
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let mut l = Latency::new();
        l.record_micros(0);
        l.record(Duration::from_secs(10_000));
        assert_eq!(l.len(), 2);
        assert_eq!(l.quantile_micros(0.0), 1);
        assert!(l.max_micros() >= MAX_MICROS);
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let s = Latency::new().summary();
        assert_eq!((s.count, s.p50_us, s.p99_us, s.max_us), (0, 0, 0, 0));
    }

    #[test]
    fn errors_merge_and_skip_zeros() {
        let mut a = Errors::default();
        a.add("handshake", 2);
        a.add("timeout", 0);
        let mut b = Errors::default();
        b.add("handshake", 1);
        b.add("tcp_connect", 4);
        a.merge(&b);
        assert_eq!(a.total(), 7);
        assert_eq!(a.human(), "handshake=3 tcp_connect=4");
        assert_eq!(Errors::default().human(), "none");
    }

    #[test]
    fn rates_and_memory_per_connection() {
        assert_eq!(rate(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
        assert_eq!(kib_per_connection(10 << 20, 20 << 20, 1280), Some(8.0));
        assert_eq!(kib_per_connection(1, 2, 0), None);
        // Shrinking memory gives a negative figure rather than wrapping around.
        assert!(kib_per_connection(2048, 1024, 1).unwrap() < 0.0);
    }

    #[test]
    fn human_durations() {
        assert_eq!(fmt_micros(850), "850 µs");
        assert_eq!(fmt_micros(1_250), "1.25 ms");
        assert_eq!(fmt_micros(2_500_000), "2.500 s");
    }
}
