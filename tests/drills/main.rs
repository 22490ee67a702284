//! The whole system on one machine: every drill in its short form (each on
//! a cluster of its own), and a cluster on loopback brought up, inspected
//! and removed.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn namespaces(name: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("mrd{name}-")))
        .map(str::to_string)
        .collect()
}

/// Removes the cluster whatever happens to the test.
struct Down(&'static str, String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .current_dir(root())
            .args(["cluster", "down", "--topology", self.0, "--name", &self.1])
            .output();
    }
}

fn drill(name: &str, cluster: &str, out: &Path) -> serde_json::Value {
    let run = Command::new(BIN)
        .current_dir(root())
        .args(["chaos", "run", &format!("chaos/{name}.toml"), "--short", "--name", cluster, "--out"])
        .arg(out)
        .output()
        .expect("meridian chaos run");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    println!("{stdout}");
    let report = std::fs::read_to_string(out.join(format!("{name}.json")))
        .unwrap_or_else(|e| panic!("{name}: no report ({e})\n{stdout}\n{stderr}"));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert!(run.status.success(), "{name} broke a bound:\n{stdout}\n{stderr}\n{:#}", report["checks"]);
    assert_eq!(report["passed"], true);
    report
}

/// A cluster of its own for one drill, removed whatever happens; `None`
/// (and the test skipped) where namespaces cannot be made.
fn drill_cluster() -> Option<(String, Down, tempfile::TempDir)> {
    if let Err(why) = meridian_lab::netns::available() {
        eprintln!("skipping the drill: {why}");
        return None;
    }
    let cluster = format!("d{:04x}", fastrand::u16(..));
    let down = Down("cluster/local.toml", cluster.clone());
    Some((cluster, down, tempfile::tempdir().unwrap()))
}

fn figure(f: &serde_json::Value, name: &str) -> u64 {
    f[name].as_u64().unwrap_or_else(|| panic!("figure {name} missing: {f}"))
}

#[test]
fn drill_process_kill_leaves_no_address_behind() {
    let Some((cluster, _down, out)) = drill_cluster() else { return };
    let r = drill("process-kill", &cluster, out.path());
    let f = &r["figures"];
    assert!(figure(f, "requests") > 500, "{f}");
    assert!(figure(f, "takeover_ms") <= 1000, "{f}");
    assert_eq!(f["double_owner_samples"], 0, "{f}");
    assert_eq!(f["failed_tasks"], 0, "{f}");
}

#[test]
fn drill_process_hang_bounds_the_overlap_and_fences_on_resume() {
    let Some((cluster, _down, out)) = drill_cluster() else { return };
    let r = drill("process-hang", &cluster, out.path());
    let f = &r["figures"];
    assert!(figure(f, "requests") > 500, "{f}");
    assert!(figure(f, "takeover_ms") <= 1000, "{f}");
    assert!(figure(f, "double_owner_samples") <= 300, "{f}");
    assert_eq!(f["failed_tasks"], 0, "{f}");
}

#[test]
fn drill_node_kill_moves_the_vip_within_a_second() {
    let Some((cluster, _down, out)) = drill_cluster() else { return };
    let r = drill("node-kill", &cluster, out.path());
    let f = &r["figures"];
    assert!(figure(f, "requests") > 500, "{f}");
    assert!(figure(f, "failed") > 0, "the fault was not felt: {f}");
    assert!(figure(f, "takeover_ms") <= 1000, "{f}");
    assert_eq!(f["double_owner_samples"], 0, "{f}");
    assert_eq!(f["failed_tasks"], 0, "{f}");
    assert!(figure(f, "vip_rounds") > 200, "VIP presence was not sampled every 10 ms: {f}");
    assert!(std::fs::read_to_string(out.path().join("node-kill.html")).unwrap().contains("<svg"));
    assert!(namespaces(&cluster).is_empty(), "the drill left namespaces behind");
}

#[test]
fn drill_node_partition_never_shows_two_owners() {
    let Some((cluster, _down, out)) = drill_cluster() else { return };
    let r = drill("node-partition", &cluster, out.path());
    let f = &r["figures"];
    assert!(figure(f, "vip_rounds") > 200, "{f}");
    assert_eq!(f["double_owner_samples"], 0, "{f}");
    assert!(figure(f, "takeover_ms") <= 1500, "{f}");
    assert!(namespaces(&cluster).is_empty(), "the drill left namespaces behind");
}

#[test]
fn drill_leader_kill_loses_no_acknowledged_write() {
    let Some((cluster, _down, out)) = drill_cluster() else { return };
    let r = drill("leader-kill-during-writes", &cluster, out.path());
    let f = &r["figures"];
    // Every write is a different document, so the check is on content.
    assert!(figure(f, "acked_writes") >= 30, "too few writes to judge: {f}");
    assert_eq!(f["lost_writes"], 0, "{f}");
    assert_eq!(f["double_owner_samples"], 0, "{f}");
    assert!(namespaces(&cluster).is_empty(), "the drill left namespaces behind");
}

#[test]
fn drill_region_down_moves_clients_to_the_other_region() {
    let Some((cluster, _down, out)) = drill_cluster() else { return };
    let r = drill("region-down", &cluster, out.path());
    let f = &r["figures"];
    assert!(figure(f, "dns_exit_ms") <= 2000, "{f}");
    assert!(figure(f, "recovery_ms") <= 4000, "{f}");
    // eu's client ends up served by us while eu is down.
    let served_by_us_during_fault = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| {
            let at = b["at_ms"].as_u64().unwrap();
            at > r["fault_at_ms"].as_u64().unwrap() + 4000 && at < r["heal_at_ms"].as_u64().unwrap()
        })
        .all(|b| b["by_region"]["eu"].is_null());
    assert!(served_by_us_during_fault, "eu answered while it was down");
    assert!(namespaces(&cluster).is_empty(), "the drill left namespaces behind");
}

#[test]
fn drill_redis_down_fails_no_request() {
    let Some((cluster, _down, out)) = drill_cluster() else { return };
    let r = drill("redis-down", &cluster, out.path());
    let f = &r["figures"];
    assert!(figure(f, "requests") > 500, "{f}");
    assert_eq!(f["failed"], 0, "{f}");
    assert!(namespaces(&cluster).is_empty(), "the drill left namespaces behind");
}

#[test]
fn drill_gslb_down_fails_no_resolution() {
    let Some((cluster, _down, out)) = drill_cluster() else { return };
    let r = drill("gslb-down", &cluster, out.path());
    let f = &r["figures"];
    assert!(figure(f, "requests") > 500, "{f}");
    assert_eq!(f["failed_resolutions"], 0, "{f}");
    assert_eq!(f["failed"], 0, "{f}");
    assert!(namespaces(&cluster).is_empty(), "the drill left namespaces behind");
}

#[test]
fn a_loopback_cluster_comes_up_reports_status_and_goes_down_twice() {
    let cluster = format!("l{:04x}", fastrand::u16(..));
    let _down = Down("cluster/local.toml", cluster.clone());
    let ctl = |args: &[&str]| {
        let out = Command::new(BIN)
            .current_dir(root())
            .args(args)
            .args(["--topology", "cluster/local.toml", "--name", &cluster])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, up_text) = ctl(&["cluster", "up", "--loopback"]);
    assert!(ok, "{up_text}");
    assert!(up_text.contains("loopback"), "the note about what is not real is missing:\n{up_text}");
    let (ok, text) = ctl(&["cluster", "status", "--output", "json"]);
    assert!(ok, "{text}");
    let s: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(s["mode"], "loopback");
    let nodes = s["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 6);
    assert!(nodes.iter().all(|n| n["ready"] == true && n["config_version"] == 1), "{s:#}");
    assert_eq!(nodes.iter().filter(|n| n["role"] == "Leader").count(), 2, "{s:#}");
    for d in s["dns"].as_array().unwrap() {
        assert_eq!(d["served"]["Ok"], serde_json::json!(["eu", "us"]), "{s:#}");
    }
    let (ok, text) = ctl(&["cluster", "status"]);
    assert!(ok && text.contains("REGION") && text.contains("eu-n1"), "{text}");
    // The admin APIs speak HTTPS with the cluster's CA; `ctl` reaches them with the written ctl.toml.
    let dir = up_text.lines().find_map(|l| l.strip_prefix("logs and files: ")).expect("the cluster's directory");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{dir}/state.json")).unwrap()).unwrap();
    // Files with secrets are the owner's alone; the token is 32 random bytes.
    for f in ["state.json", "eu.cluster-secret", "us.report-secret", "eu-n1.toml", "eu-n1.admin.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(format!("{dir}/{f}")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f} is {mode:o}");
    }
    assert_eq!(state["token"].as_str().unwrap().len(), 64);
    let out = Command::new(BIN)
        .args(["ctl", "--config", &format!("{dir}/ctl.toml"), "status", "--all-regions", "--output", "json"])
        .env("MERIDIAN_ADMIN_TOKEN", state["token"].as_str().unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("\"health\": \"ok\"").count(), 6, "{text}");
    let (ok, text) = ctl(&["cluster", "down"]);
    assert!(ok, "{text}");
    let (ok, text) = ctl(&["cluster", "down"]);
    assert!(ok, "down is not idempotent: {text}");
    let (ok, _) = ctl(&["cluster", "status"]);
    assert!(!ok, "status of a removed cluster succeeded");
}

/// `terraform test` of the region module and of the local example (which
/// renders every file and has `meridian validate` check it), offline.
#[test]
fn terraform_module_and_example_tests_pass() {
    let Ok(version) = Command::new("terraform").arg("version").output() else {
        eprintln!("skipping: terraform is not on PATH");
        return;
    };
    assert!(version.status.success());
    for dir in ["terraform/modules/region", "terraform/examples/local"] {
        let data = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let o = Command::new("terraform")
                .current_dir(root().join(dir))
                .args(args)
                .env("TF_DATA_DIR", data.path())
                .env("TF_IN_AUTOMATION", "1")
                .env("TF_VAR_meridian", BIN)
                .env("TF_VAR_out_dir", out.path())
                .env("NO_COLOR", "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success(), "terraform {args:?} in {dir}:\n{text}");
            text
        };
        run(&["init", "-backend=false", "-input=false", "-no-color"]);
        let text = run(&["test", "-no-color"]);
        assert!(text.contains("0 failed"), "{dir}:\n{text}");
    }
    assert!(root().join("terraform/examples/local/out").read_dir().is_err(), "the example wrote into the repository");
}

#[test]
fn drill_region_down_authenticated_keeps_keys_and_tokens_working_in_the_other_region() {
    let Some((cluster, _down, out)) = drill_cluster() else { return };
    let r = drill("region-down-authenticated", &cluster, out.path());
    let f = &r["figures"];
    assert!(figure(f, "recovery_ms") <= 4000, "{f}");
    // Every request carried a credential (a key or a token, in turn) on a
    // route that refuses requests without one: successes after the fault
    // are authenticated requests served by us.
    let served_after_fault: u64 = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["at_ms"].as_u64().unwrap() > r["fault_at_ms"].as_u64().unwrap() + 4000)
        .map(|b| b["by_region"]["us"].as_u64().unwrap_or(0))
        .sum();
    assert!(served_after_fault > 20, "us served {served_after_fault} authenticated requests after the fault: {f}");
    assert!(f["success_ratio"].as_f64().unwrap() > 0.8, "{f}");
    assert!(namespaces(&cluster).is_empty(), "the drill left namespaces behind");
}
