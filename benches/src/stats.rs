//! Percentiles over samples, in microseconds.

use serde::Serialize;

/// Summary of a sample set, all in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

/// Summarises `samples` (any order); an empty set gives all zeros.
pub fn summarize(samples: &[f64]) -> Summary {
    if samples.is_empty() {
        return Summary::default();
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        // Nearest-rank percentile: the smallest value with at least q of the samples at or below it.
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    };
    Summary {
        n: v.len(),
        mean: v.iter().sum::<f64>() / v.len() as f64,
        p50: pick(0.50),
        p99: pick(0.99),
        p999: pick(0.999),
        max: v[v.len() - 1],
    }
}

/// A duration in microseconds, as the summaries take them.
pub fn us(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Formats microseconds readably (µs below 1 ms, ms above).
pub fn fmt_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}us")
    } else {
        format!("{:.2}ms", us / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let s = summarize(&v);
        assert_eq!(
            (s.n, s.p50, s.p99, s.p999, s.max),
            (1000, 500.0, 990.0, 999.0, 1000.0)
        );
        assert_eq!(summarize(&[]), Summary::default());
        assert_eq!(summarize(&[7.0]).p99, 7.0);
    }
}
