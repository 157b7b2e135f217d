//! A log-linear histogram of microsecond values: exact below 64, then 32
//! buckets per power of two (about 3 % relative error), fixed size, cheap to
//! record into and to merge across executors and processes.

use serde::{Deserialize, Serialize};

/// Values below this are counted exactly.
const LINEAR: u64 = 64;
/// log2 of the buckets per power of two above `LINEAR`.
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Exponent of `LINEAR` (2^6).
const FIRST_EXP: u32 = 6;
const BUCKETS: usize = LINEAR as usize + (64 - FIRST_EXP as usize) * SUB;

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    sum: u128,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self { counts: Box::new([0; BUCKETS]), total: 0, sum: 0, max: 0 }
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let sub = (v >> (exp - SUB_BITS)) as usize & (SUB - 1);
    LINEAR as usize + (exp - FIRST_EXP) as usize * SUB + sub
}

/// The highest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    if i < LINEAR as usize {
        return i as u64;
    }
    let exp = FIRST_EXP + ((i - LINEAR as usize) / SUB) as u32;
    let sub = ((i - LINEAR as usize) % SUB) as u64;
    let low = (SUB as u64 + sub) << (exp - SUB_BITS);
    low.saturating_add((1u64 << (exp - SUB_BITS)) - 1)
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
        self.sum += u128::from(v);
        self.max = self.max.max(v);
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` (0..=1): the upper edge of the bucket that
    /// holds it, never above the largest value recorded.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max);
            }
        }
        self.max
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    /// Percentiles in milliseconds, for the JSON report.
    pub fn summary_ms(&self) -> serde_json::Value {
        let ms = |us: u64| us as f64 / 1000.0;
        serde_json::json!({
            "count": self.total,
            "mean": self.mean().round() / 1000.0,
            "p50": ms(self.quantile(0.50)),
            "p90": ms(self.quantile(0.90)),
            "p99": ms(self.quantile(0.99)),
            "p999": ms(self.quantile(0.999)),
            "max": ms(self.max),
        })
    }
}

/// The wire form between processes: only the buckets that are not empty.
#[derive(Serialize, Deserialize, Default)]
pub struct SparseHistogram {
    buckets: Vec<(u16, u64)>,
    sum: u128,
    max: u64,
}

impl From<&Histogram> for SparseHistogram {
    fn from(h: &Histogram) -> Self {
        let buckets =
            h.counts.iter().enumerate().filter(|(_, &c)| c > 0).map(|(i, &c)| (i as u16, c)).collect();
        Self { buckets, sum: h.sum, max: h.max }
    }
}

impl From<&SparseHistogram> for Histogram {
    fn from(s: &SparseHistogram) -> Self {
        let mut h = Histogram::default();
        for &(i, c) in &s.buckets {
            if let Some(slot) = h.counts.get_mut(usize::from(i)) {
                *slot += c;
                h.total += c;
            }
        }
        h.sum = s.sum;
        h.max = s.max;
        h
    }
}

impl Serialize for Histogram {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SparseHistogram::from(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Histogram {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Histogram::from(&SparseHistogram::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::MAX / 2, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS);
            assert!(i >= last);
            assert!(upper(i) >= v, "{v} above the upper edge of its bucket");
            last = i;
        }
    }

    #[test]
    fn quantiles_are_close() {
        let mut h = Histogram::default();
        for v in 1..=10_000 {
            h.record(v);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.04, "{p50}");
        assert_eq!(h.quantile(1.0), 10_000);
        let round: Histogram = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(round.total, h.total);
        assert_eq!(round.quantile(0.99), h.quantile(0.99));
    }
}
