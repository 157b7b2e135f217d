//! `/metrics`: the OpenMetrics exposition flattened into samples by
//! `openmetrics-parser`, and polling a metric until it reaches a value.

use std::collections::HashMap;
use std::time::Duration;

use super::{http, poll, Server};

/// Every sample of an OpenMetrics exposition, parsed by a real parser (which
/// also rejects a malformed exposition), keyed `name{label="value",...}` with
/// the labels sorted; counters under `name_total`, histograms as
/// `name_count` and `name_sum`.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    use openmetrics_parser::OpenMetricsValue;
    let exposition = openmetrics_parser::openmetrics::parse_openmetrics(text)
        .unwrap_or_else(|e| panic!("/metrics is not valid OpenMetrics ({e:?}):\n{text}"));
    let mut out = HashMap::new();
    for (name, family) in &exposition.families {
        for sample in family.iter_samples() {
            let labelset = sample.get_labelset().expect("a sample's labels match its family");
            let mut labels: Vec<_> = labelset.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            labels.sort();
            let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
            let mut put = |suffix: &str, v: f64| out.insert(format!("{name}{suffix}{labels}"), v);
            match &sample.value {
                OpenMetricsValue::Counter(c) => put("_total", c.value.as_f64()),
                OpenMetricsValue::Gauge(v) | OpenMetricsValue::Unknown(v) => put("", v.as_f64()),
                OpenMetricsValue::Histogram(h) => {
                    put("_count", h.count.unwrap_or(0) as f64);
                    put("_sum", h.sum.as_ref().map_or(0.0, |s| s.as_f64()))
                }
                other => panic!("unexpected metric kind for {name}: {other:?}"),
            };
        }
    }
    out
}

/// Sum of every sample of metric `name` (any labels).
pub fn metric_sum(samples: &HashMap<String, f64>, name: &str) -> f64 {
    samples.iter().filter(|(k, _)| *k == name || k.starts_with(&format!("{name}{{"))).map(|(_, v)| v).sum()
}

/// The `Accept` header of Prometheus's scrapes (2.x and 3.x default).
pub const PROMETHEUS_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
     version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

impl Server {
    /// `/metrics` in OpenMetrics, asked for as Prometheus asks.
    pub fn metrics(&self) -> String {
        let r = http(self.port, "GET", "/metrics", &[("Accept", PROMETHEUS_ACCEPT)], None);
        assert_eq!(r.status, 200, "/metrics: {r:?}\n{}", self.output_dump());
        r.body
    }

    /// Every sample of `/metrics`.
    pub fn metric_samples(&self) -> HashMap<String, f64> {
        parse_metrics(&self.metrics())
    }

    /// Sum of every sample of metric `name`.
    pub fn metric(&self, name: &str) -> f64 {
        metric_sum(&self.metric_samples(), name)
    }

    /// Polls `/metrics` until `pred(sum of name)` holds (bounded); returns it.
    pub fn wait_metric(&self, name: &str, timeout: Duration, pred: impl Fn(f64) -> bool) -> f64 {
        poll(timeout, Duration::from_millis(50), || self.metric(name), |v| pred(*v))
            .unwrap_or_else(|v| panic!("metric {name} stayed {v} for {timeout:?}\n{}", self.output_dump()))
    }

    /// `realtime_connections{shard="0"}` and `{shard="1"}`.
    pub fn shard_gauges(&self) -> (f64, f64) {
        let m = self.metric_samples();
        let g = |i: u32| m.get(&format!("realtime_connections{{shard=\"{i}\"}}")).copied().unwrap_or(0.0);
        (g(0), g(1))
    }
}
