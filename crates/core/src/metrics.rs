//! The one way meridian builds a metric: the `prometheus` crate, names in
//! the `meridian` namespace, registered in the registry of the node or
//! balancer that owns it (several can share a process in tests).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Register `m` in `r`.
pub fn reg<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: M) -> M {
    // Names are fixed and unique within this registry, so registration cannot fail.
    let _ = r.register(Box::new(m.clone()));
    m
}

pub fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(
        r,
        IntCounterVec::new(Opts::new(name, help).namespace("meridian"), labels)
            .unwrap_or_else(|e| panic!("metric {name}: {e}")),
    )
}

pub fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    reg(
        r,
        IntGauge::with_opts(Opts::new(name, help).namespace("meridian"))
            .unwrap_or_else(|e| panic!("metric {name}: {e}")),
    )
}

pub fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    reg(
        r,
        IntCounter::with_opts(Opts::new(name, help).namespace("meridian"))
            .unwrap_or_else(|e| panic!("metric {name}: {e}")),
    )
}

pub fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    reg(
        r,
        IntGaugeVec::new(Opts::new(name, help).namespace("meridian"), labels)
            .unwrap_or_else(|e| panic!("metric {name}: {e}")),
    )
}

pub fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    reg(
        r,
        Histogram::with_opts(HistogramOpts::new(name, help).namespace("meridian").buckets(buckets.to_vec()))
            .unwrap_or_else(|e| panic!("metric {name}: {e}")),
    )
}

pub fn histogram_vec(r: &Registry, name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    reg(
        r,
        HistogramVec::new(HistogramOpts::new(name, help).namespace("meridian").buckets(buckets.to_vec()), labels)
            .unwrap_or_else(|e| panic!("metric {name}: {e}")),
    )
}
