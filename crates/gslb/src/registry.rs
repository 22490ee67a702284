//! Region health as one balancer sees it: the latest signed report of each
//! region and its own probes of each VIP. A region is served while its report
//! is fresh and at least one VIP passes the probes; only those VIPs are
//! answered. The result is published as an [`AnswerTable`] that queries read
//! without locks.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::steer::Coordinates;
use meridian_core::report::HealthReport;

/// One VIP's probe verdict (written by its prober).
#[derive(Debug)]
pub struct VipHealth {
    pub ip: IpAddr,
    pub up: AtomicBool,
}

#[derive(Debug)]
pub struct RegionHealthState {
    pub name: String,
    pub location: Option<Coordinates>,
    pub weight: u32,
    pub vips: Vec<Arc<VipHealth>>,
    last_report: Mutex<Option<(Instant, HealthReport)>>,
}

impl RegionHealthState {
    pub fn new(name: &str, location: Option<Coordinates>, weight: u32, vips: &[IpAddr]) -> Self {
        Self {
            name: name.to_string(),
            location,
            weight,
            // A VIP counts as down until its probes pass: a new balancer does not
            // answer with addresses it has never seen work.
            vips: vips.iter().map(|ip| Arc::new(VipHealth { ip: *ip, up: AtomicBool::new(false) })).collect(),
            last_report: Mutex::new(None),
        }
    }

    pub fn record(&self, at: Instant, report: HealthReport) {
        if let Ok(mut r) = self.last_report.lock() {
            *r = Some((at, report));
        }
    }

    pub fn last_report(&self) -> Option<(Instant, HealthReport)> {
        self.last_report.lock().ok().and_then(|r| r.clone())
    }
}

/// Why a region is or is not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Served,
    NoReport,
    StaleReport,
    ProbesFailing,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Served => "served",
            Verdict::NoReport => "no report yet",
            Verdict::StaleReport => "report stale",
            Verdict::ProbesFailing => "probes failing",
        }
    }
}

/// What a region answers with right now.
#[derive(Debug, Clone)]
pub struct RegionAnswer {
    pub name: String,
    pub location: Option<Coordinates>,
    pub weight: u32,
    pub verdict: Verdict,
    /// VIPs that pass probes and have an owner (when the report lists them).
    pub healthy: Vec<IpAddr>,
    pub all: Vec<IpAddr>,
}

/// Everything a query needs; replaced whole on every change.
#[derive(Debug, Clone, Default)]
pub struct AnswerTable {
    /// Configuration order.
    pub regions: Vec<RegionAnswer>,
}

impl AnswerTable {
    pub fn served(&self) -> impl Iterator<Item = &RegionAnswer> {
        self.regions.iter().filter(|r| r.verdict == Verdict::Served)
    }
}

/// Compute a region's verdict at `now`.
pub fn judge(state: &RegionHealthState, now: Instant, freshness: Duration) -> RegionAnswer {
    let report = state.last_report();
    let all: Vec<IpAddr> = state.vips.iter().map(|v| v.ip).collect();
    let owned = |ip: &IpAddr| match &report {
        // A VIP the report lists without an owner is not answered; one it does not list is.
        Some((_, r)) => {
            !r.vips.iter().any(|(vip, owner)| owner.is_none() && vip.split('/').next() == Some(&ip.to_string()))
        }
        None => true,
    };
    let healthy: Vec<IpAddr> =
        state.vips.iter().filter(|v| v.up.load(Ordering::Relaxed) && owned(&v.ip)).map(|v| v.ip).collect();
    let verdict = match &report {
        None => Verdict::NoReport,
        Some((at, _)) if now.duration_since(*at) > freshness => Verdict::StaleReport,
        Some(_) if healthy.is_empty() => Verdict::ProbesFailing,
        Some(_) => Verdict::Served,
    };
    RegionAnswer { name: state.name.clone(), location: state.location, weight: state.weight, verdict, healthy, all }
}

/// Registry of every configured region.
pub struct Registry {
    pub regions: BTreeMap<String, Arc<RegionHealthState>>,
    /// Configuration order.
    pub order: Vec<String>,
    pub freshness: Duration,
}

impl Registry {
    pub fn table(&self, now: Instant) -> AnswerTable {
        AnswerTable {
            regions: self
                .order
                .iter()
                .filter_map(|n| self.regions.get(n))
                .map(|r| judge(r, now, self.freshness))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(vips: &[(&str, Option<u64>)]) -> HealthReport {
        HealthReport {
            region: "eu".into(),
            timestamp_ms: 0,
            nonce: "n".into(),
            sender: 1,
            healthy_nodes: vec![1],
            vips: vips.iter().map(|(v, o)| (v.to_string(), *o)).collect(),
            config_version: 1,
            load: 0.0,
        }
    }

    #[test]
    fn served_needs_a_fresh_report_and_a_passing_probe() {
        let s = RegionHealthState::new("eu", None, 1, &["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()]);
        let t0 = Instant::now();
        let f = Duration::from_millis(1500);
        assert_eq!(judge(&s, t0, f).verdict, Verdict::NoReport);
        s.record(t0, report(&[("10.0.0.1/24", Some(1)), ("10.0.0.2/24", None)]));
        assert_eq!(judge(&s, t0, f).verdict, Verdict::ProbesFailing);
        s.vips[0].up.store(true, Ordering::Relaxed);
        s.vips[1].up.store(true, Ordering::Relaxed);
        let a = judge(&s, t0, f);
        assert_eq!(a.verdict, Verdict::Served);
        // The unowned VIP is left out even though it answers probes.
        assert_eq!(a.healthy, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(judge(&s, t0 + Duration::from_secs(2), f).verdict, Verdict::StaleReport);
    }
}
