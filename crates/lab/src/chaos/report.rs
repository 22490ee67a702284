//! From raw observations to figures, bounds, and the JSON and HTML reports.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::drill::{Bounds, Drill};
#[cfg(test)]
use super::observe::AckedWrite;
use super::observe::{DnsSample, Request, VipSamples, Writes};

pub const BUCKET_MS: u64 = 100;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bucket {
    pub at_ms: u64,
    pub ok: u64,
    pub failed: u64,
    /// Successful requests by the region that answered.
    pub by_region: BTreeMap<String, u64>,
    /// Direct DNS samples (all balancers) that named each region.
    pub dns: BTreeMap<String, u64>,
    pub dns_samples: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    pub failed_resolutions: u64,
    pub success_ratio: f64,
    /// First failure → steady success (nothing fails for 1 s), ms (0 when
    /// nothing failed); failures after it still count in `failed`.
    pub takeover_ms: Option<u64>,
    /// Fault → steady success, ms.
    pub recovery_ms: Option<u64>,
    /// Fault → the region is in no balancer's answer, ms.
    pub dns_exit_ms: Option<u64>,
    pub vip_rounds: Option<u64>,
    pub double_owner_samples: Option<u64>,
    /// 10 ms rounds in which some VIP was on no (live) node.
    pub unowned_samples: Option<u64>,
    pub acked_writes: Option<u64>,
    pub failed_writes: Option<u64>,
    pub lost_writes: Option<u64>,
    /// Measuring tasks (clients, samplers, the writer) that died; their
    /// samples are missing, so any of them fails the drill.
    #[serde(default)]
    pub failed_tasks: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub bound: String,
    pub limit: String,
    pub measured: String,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub drill: String,
    pub description: String,
    pub cluster: String,
    pub mode: String,
    /// What was done, with its time (ms since the start).
    pub events: Vec<(u64, String)>,
    pub fault_at_ms: u64,
    pub heal_at_ms: u64,
    pub end_ms: u64,
    pub figures: Figures,
    pub checks: Vec<Check>,
    pub passed: bool,
    pub timeline: Vec<Bucket>,
    pub vip_examples: Vec<(u64, std::net::Ipv4Addr, Vec<String>)>,
    /// The first and last failures, for diagnosis.
    pub sample_errors: Vec<String>,
}

pub struct Inputs {
    pub requests: Vec<Request>,
    pub dns: Vec<DnsSample>,
    pub vips: Option<VipSamples>,
    pub writes: Option<Writes>,
    /// (version, digest) of the revisions in the region's history after the drill.
    pub history: Option<Vec<(u64, String)>>,
    pub fault_at_ms: u64,
    pub heal_at_ms: u64,
    pub end_ms: u64,
    /// Region of a DNS answer address.
    pub region_of: Box<dyn Fn(std::net::Ipv4Addr) -> Option<String>>,
    pub fault_region: Option<String>,
    /// Why a measuring task died, one line each.
    pub failed_tasks: Vec<String>,
}

/// Per client, first failure → steady success; the worst client counts.
fn takeover_all(reqs: &[Request], from: u64) -> (Option<u64>, Option<u64>) {
    let clients: std::collections::BTreeSet<&str> = reqs.iter().map(|r| r.client.as_str()).collect();
    let mut worst = (Some(0), Some(0));
    for c in clients {
        let mine: Vec<Request> = reqs.iter().filter(|r| r.client == c).cloned().collect();
        let (t, r) = takeover(&mine, from);
        // A client that never recovered makes the whole figure "not reached".
        worst = (worst.0.zip(t).map(|(a, b)| a.max(b)), worst.1.zip(r).map(|(a, b)| a.max(b)));
    }
    worst
}

/// Success is steady once no request fails for this long after it.
const STEADY_MS: u64 = 1000;

/// First failure → steady success: the first success (at or after `from`)
/// after which nothing fails for [`STEADY_MS`] (or until the end).
fn takeover(reqs: &[Request], from: u64) -> (Option<u64>, Option<u64>) {
    let after: Vec<&Request> = reqs.iter().filter(|r| r.at_ms >= from).collect();
    let Some(first) = after.iter().position(|r| !r.ok) else { return (Some(0), Some(0)) };
    let mut i = first;
    loop {
        let Some(s) = after[i..].iter().position(|r| r.ok).map(|k| k + i) else { return (None, None) };
        let t = after[s].at_ms;
        match after[s..].iter().position(|r| !r.ok).map(|k| k + s) {
            Some(f) if after[f].at_ms < t + STEADY_MS => i = f,
            _ => return (Some(t - after[first].at_ms), Some(t - from)),
        }
    }
}

pub fn analyse(drill: &Drill, mut i: Inputs) -> (Figures, Vec<Bucket>, Vec<String>) {
    i.requests.sort_by_key(|r| r.at_ms);
    let ok = i.requests.iter().filter(|r| r.ok).count() as u64;
    let total = i.requests.len() as u64;
    // While the fault lasts; what the heal costs shows in the totals.
    let during: Vec<Request> = i.requests.iter().filter(|r| r.at_ms < i.heal_at_ms).cloned().collect();
    let (takeover_ms, recovery_ms) = takeover_all(&during, i.fault_at_ms);
    let dns_exit_ms = i.fault_region.as_ref().filter(|_| drill.bounds.max_dns_exit.is_some()).and_then(|region| {
        let during: Vec<&DnsSample> =
            i.dns.iter().filter(|d| d.at_ms >= i.fault_at_ms && d.at_ms < i.heal_at_ms).collect();
        let names = |d: &DnsSample| -> bool {
            d.answer.as_ref().is_ok_and(|a| a.iter().any(|ip| (i.region_of)(*ip).as_deref() == Some(region.as_str())))
        };
        match during.iter().rev().find(|d| names(d)) {
            None => Some(0),
            Some(last) => during.iter().find(|d| d.at_ms > last.at_ms).map(|d| d.at_ms - i.fault_at_ms),
        }
    });
    let lost = match (&i.writes, &i.history) {
        // Lost: the region's history does not hold the acknowledged content
        // at the acknowledged version, or two acknowledgements share a version.
        (Some(w), Some(h)) => {
            let history: BTreeMap<u64, &str> = h.iter().map(|(v, d)| (*v, d.as_str())).collect();
            let mut seen = std::collections::BTreeSet::new();
            let lost = w
                .acked
                .iter()
                .filter(|a| history.get(&a.version) != Some(&a.digest.as_str()) || !seen.insert(a.version))
                .count();
            Some(lost as u64)
        }
        (Some(w), None) => Some(w.acked.len() as u64),
        _ => None,
    };
    let figures = Figures {
        requests: total,
        ok,
        failed: total - ok,
        failed_resolutions: i.requests.iter().filter(|r| r.resolve_failed).count() as u64,
        success_ratio: if total == 0 { 0.0 } else { ok as f64 / total as f64 },
        takeover_ms,
        recovery_ms,
        dns_exit_ms,
        vip_rounds: i.vips.as_ref().map(|v| v.rounds),
        double_owner_samples: i.vips.as_ref().map(|v| v.double_owner),
        unowned_samples: i.vips.as_ref().map(|v| v.unowned),
        acked_writes: i.writes.as_ref().map(|w| w.acked.len() as u64),
        failed_writes: i.writes.as_ref().map(|w| w.failed),
        lost_writes: lost,
        failed_tasks: i.failed_tasks.len() as u64,
    };
    // Whole buckets only: a last, partial one would look like a drop.
    let n = (i.end_ms / BUCKET_MS) as usize;
    let mut buckets: Vec<Bucket> =
        (0..n).map(|k| Bucket { at_ms: k as u64 * BUCKET_MS, ..Default::default() }).collect();
    for r in &i.requests {
        if let Some(b) = buckets.get_mut((r.at_ms / BUCKET_MS) as usize) {
            if r.ok {
                b.ok += 1;
                *b.by_region.entry(r.region.clone().unwrap_or_default()).or_default() += 1;
            } else {
                b.failed += 1;
            }
        }
    }
    for d in &i.dns {
        if let Some(b) = buckets.get_mut((d.at_ms / BUCKET_MS) as usize) {
            b.dns_samples += 1;
            if let Ok(a) = &d.answer {
                let mut regions: Vec<String> = a.iter().filter_map(|ip| (i.region_of)(*ip)).collect();
                regions.dedup();
                for r in regions {
                    *b.dns.entry(r).or_default() += 1;
                }
            }
        }
    }
    // The first and the last failures, for diagnosis.
    let failed: Vec<&Request> = i.requests.iter().filter(|r| !r.ok).collect();
    let shown: Vec<&&Request> = if failed.len() <= 12 {
        failed.iter().collect()
    } else {
        failed.iter().take(6).chain(failed.iter().skip(failed.len() - 6)).collect()
    };
    let errors = i
        .failed_tasks
        .iter()
        .cloned()
        .chain(shown.into_iter().map(|r| format!("{} ms {}: {}", r.at_ms, r.client, r.error.as_deref().unwrap_or("?"))))
        .collect();
    (figures, buckets, errors)
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

pub fn check(b: &Bounds, f: &Figures) -> Vec<Check> {
    let mut out = Vec::new();
    let mut at_most = |name: &str, limit: Option<u64>, measured: Option<u64>, unit: &str| {
        if let Some(l) = limit {
            out.push(Check {
                bound: name.into(),
                limit: format!("≤ {l}{unit}"),
                measured: measured.map_or("not reached".into(), |m| format!("{m}{unit}")),
                ok: measured.is_some_and(|m| m <= l),
            });
        }
    };
    at_most("measuring tasks that died", Some(0), Some(f.failed_tasks), "");
    at_most("takeover", b.max_takeover.map(ms), f.takeover_ms, " ms");
    at_most("recovery", b.max_recovery.map(ms), f.recovery_ms, " ms");
    at_most("region out of DNS answers", b.max_dns_exit.map(ms), f.dns_exit_ms, " ms");
    at_most("double-owner samples", b.max_double_owner_samples, f.double_owner_samples, "");
    at_most("lost acknowledged writes", b.max_lost_writes, f.lost_writes, "");
    at_most("failed requests", b.max_failed_requests, Some(f.failed), "");
    at_most("failed resolutions", b.max_failed_resolutions, Some(f.failed_resolutions), "");
    if let Some(r) = b.min_success_ratio {
        out.push(Check {
            bound: "success ratio".into(),
            limit: format!("≥ {r}"),
            measured: format!("{:.4}", f.success_ratio),
            ok: f.success_ratio >= r,
        });
    }
    out
}

pub fn summary(r: &Report) -> String {
    let f = &r.figures;
    let opt = |v: Option<u64>, unit: &str| v.map_or("-".into(), |v| format!("{v}{unit}"));
    let failed: Vec<String> =
        r.checks.iter().filter(|c| !c.ok).map(|c| format!("{} {} (bound {})", c.bound, c.measured, c.limit)).collect();
    format!(
        "drill {}: {} | requests {} ok {} failed {} | takeover {} recovery {} dns exit {} | double-owner {} | writes acked {} lost {}{}",
        r.drill,
        if r.passed { "PASS" } else { "FAIL" },
        f.requests,
        f.ok,
        f.failed,
        opt(f.takeover_ms, " ms"),
        opt(f.recovery_ms, " ms"),
        opt(f.dns_exit_ms, " ms"),
        opt(f.double_owner_samples, ""),
        opt(f.acked_writes, ""),
        opt(f.lost_writes, ""),
        if failed.is_empty() { String::new() } else { format!(" | broken: {}", failed.join("; ")) }
    )
}

/// The timeline as an SVG: requests ok / failed per 100 ms, and the share of
/// DNS answers naming each region; the fault and the heal marked.
pub fn svg(r: &Report) -> Result<String, String> {
    use plotters::prelude::*;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (960, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, bottom) = root.split_vertically(330);
        let secs = r.end_ms as f64 / 1000.0;
        let ymax = r.timeline.iter().map(|b| b.ok + b.failed).max().unwrap_or(1).max(1) as f64 * 1.15;
        let mut chart = ChartBuilder::on(&top)
            .caption(format!("{}: requests per 100 ms", r.drill), ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..secs, 0f64..ymax)
            .map_err(|e| e.to_string())?;
        chart.configure_mesh().x_desc("seconds").draw().map_err(|e| e.to_string())?;
        let series = |f: fn(&Bucket) -> u64| -> Vec<(f64, f64)> {
            r.timeline.iter().map(|b| (b.at_ms as f64 / 1000.0, f(b) as f64)).collect()
        };
        chart
            .draw_series(LineSeries::new(series(|b| b.ok), GREEN.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label("ok")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], GREEN));
        chart
            .draw_series(LineSeries::new(series(|b| b.failed), RED.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label("failed")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        for (at, color) in [(r.fault_at_ms, &MAGENTA), (r.heal_at_ms, &BLUE)] {
            let x = at as f64 / 1000.0;
            chart.draw_series(LineSeries::new(vec![(x, 0.0), (x, ymax)], color)).map_err(|e| e.to_string())?;
        }
        chart.configure_series_labels().border_style(BLACK).draw().map_err(|e| e.to_string())?;

        let mut dns = ChartBuilder::on(&bottom)
            .caption(
                "share of DNS answers naming each region, 500 ms windows (fault: magenta, heal: blue)",
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..secs, 0f64..1.05f64)
            .map_err(|e| e.to_string())?;
        dns.configure_mesh().x_desc("seconds").draw().map_err(|e| e.to_string())?;
        let regions: std::collections::BTreeSet<String> =
            r.timeline.iter().flat_map(|b| b.dns.keys().cloned()).collect();
        for (k, region) in regions.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            // Over 500 ms windows: a 100 ms bucket holds only a few samples.
            let pts: Vec<(f64, f64)> = r
                .timeline
                .windows(5)
                .filter_map(|w| {
                    let samples: u64 = w.iter().map(|b| b.dns_samples).sum();
                    let naming: u64 = w.iter().map(|b| b.dns.get(region).copied().unwrap_or(0)).sum();
                    (samples > 0).then(|| (w[4].at_ms as f64 / 1000.0, naming as f64 / samples as f64))
                })
                .collect();
            dns.draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(region.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        for (at, color) in [(r.fault_at_ms, &MAGENTA), (r.heal_at_ms, &BLUE)] {
            let x = at as f64 / 1000.0;
            dns.draw_series(LineSeries::new(vec![(x, 0.0), (x, 1.05)], color)).map_err(|e| e.to_string())?;
        }
        dns.configure_series_labels().border_style(BLACK).draw().map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A self-contained page: summary, bounds, figures, events, the plot.
pub fn html(r: &Report) -> String {
    let plot = svg(r).unwrap_or_else(|e| format!("<p>plot unavailable: {}</p>", escape(&e)));
    let checks: String = r
        .checks
        .iter()
        .map(|c| {
            format!(
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if c.ok { "ok" } else { "bad" },
                escape(&c.bound),
                escape(&c.limit),
                escape(&c.measured),
                if c.ok { "pass" } else { "FAIL" }
            )
        })
        .collect();
    let events: String = r
        .events
        .iter()
        .map(|(at, e)| format!("<tr><td>{:.1} s</td><td>{}</td></tr>", *at as f64 / 1000.0, escape(e)))
        .collect();
    let figures = serde_json::to_string_pretty(&r.figures).unwrap_or_default();
    let errors: String = r.sample_errors.iter().map(|e| format!("<li>{}</li>", escape(e))).collect();
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>meridian drill {name}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px}} tr.ok td:last-child{{color:#080}} tr.bad td{{color:#c00;font-weight:bold}}
pre{{background:#f6f6f6;padding:8px}}</style></head><body>
<h1>Drill {name}: {verdict}</h1>
<p>{desc}</p>
<p>Cluster <code>{cluster}</code> ({mode}).</p>
<h2>Bounds</h2>
<table><tr><th>bound</th><th>limit</th><th>measured</th><th></th></tr>{checks}</table>
<h2>Timeline</h2>
{plot}
<h2>Events</h2>
<table>{events}</table>
<h2>Figures</h2>
<pre>{figures}</pre>
<h2>First and last failures</h2>
<ul>{errors}</ul>
</body></html>
"#,
        name = escape(&r.drill),
        verdict = if r.passed { "PASS" } else { "FAIL" },
        desc = escape(&r.description),
        cluster = escape(&r.cluster),
        mode = escape(&r.mode),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(at_ms: u64, ok: bool) -> Request {
        Request { client: "c".into(), at_ms, ok, region: None, resolve_failed: false, error: None }
    }

    #[test]
    fn takeover_runs_from_first_failure_to_steady_success() {
        let reqs = vec![
            req(0, true),
            req(1000, true),
            req(1100, false),
            req(1200, true),
            req(1300, false),
            req(1400, true),
            req(1500, true),
        ];
        assert_eq!(takeover(&reqs, 1000), (Some(300), Some(400)));
        assert_eq!(takeover(&[req(0, true), req(2000, true)], 1000), (Some(0), Some(0)));
        assert_eq!(takeover(&[req(1000, false), req(2000, false)], 1000), (None, None));
        // A lone failure long after the takeover does not stretch it.
        let mut reqs = vec![req(1000, false)];
        reqs.extend((1..30).map(|k| req(1000 + k * 100, true)));
        reqs.push(req(4050, false));
        reqs.push(req(4100, true));
        assert_eq!(takeover(&reqs, 1000), (Some(100), Some(100)));
    }

    #[test]
    fn bounds_fail_when_not_reached_or_exceeded() {
        let b =
            Bounds { max_takeover: Some(Duration::from_secs(1)), max_failed_requests: Some(0), ..Default::default() };
        let mut f = Figures {
            requests: 10,
            ok: 10,
            failed: 0,
            failed_resolutions: 0,
            success_ratio: 1.0,
            takeover_ms: Some(900),
            recovery_ms: Some(900),
            dns_exit_ms: None,
            vip_rounds: None,
            double_owner_samples: None,
            unowned_samples: None,
            acked_writes: None,
            failed_writes: None,
            lost_writes: None,
            failed_tasks: 0,
        };
        assert!(check(&b, &f).iter().all(|c| c.ok));
        f.takeover_ms = None;
        f.failed = 1;
        assert_eq!(check(&b, &f).iter().filter(|c| !c.ok).count(), 2);
        f.failed_tasks = 1;
        assert_eq!(check(&b, &f).iter().filter(|c| !c.ok).count(), 3, "a dead measuring task did not fail the drill");
    }

    fn inputs(writes: Writes, history: Vec<(u64, &str)>) -> Inputs {
        Inputs {
            requests: vec![req(0, true)],
            dns: Vec::new(),
            vips: None,
            writes: Some(writes),
            history: Some(history.into_iter().map(|(v, d)| (v, d.to_string())).collect()),
            fault_at_ms: 0,
            heal_at_ms: 0,
            end_ms: 0,
            region_of: Box::new(|_| None),
            fault_region: None,
            failed_tasks: vec!["paris: request task: panicked".into()],
        }
    }

    #[test]
    fn a_write_is_lost_when_its_version_holds_other_content() {
        let text = "name = \"w\"\n[fault]\nkind = \"leader_kill\"\nregion = \"eu\"\n";
        let drill: Drill = meridian_core::config::parse(text, meridian_core::config::Format::Toml).expect("drill");
        let acked = |version: u64, digest: &str| AckedWrite { at_ms: 0, version, digest: digest.into() };
        let w = Writes { acked: vec![acked(2, "aa"), acked(3, "bb"), acked(4, "cc")], failed: 0 };
        // Version 3 was acknowledged with "bb" but the log holds another write there.
        let (f, _, errors) = analyse(&drill, inputs(w.clone(), vec![(1, "00"), (2, "aa"), (3, "xx"), (4, "cc")]));
        assert_eq!(f.lost_writes, Some(1));
        assert_eq!(f.failed_tasks, 1);
        assert!(errors[0].contains("request task"), "{errors:?}");
        let (f, _, _) = analyse(&drill, inputs(w.clone(), vec![(2, "aa"), (3, "bb"), (4, "cc")]));
        assert_eq!(f.lost_writes, Some(0));
        // A version missing from the history is lost too.
        let (f, _, _) = analyse(&drill, inputs(w, vec![(2, "aa"), (4, "cc")]));
        assert_eq!(f.lost_writes, Some(1));
    }
}
