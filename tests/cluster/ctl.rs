use crate::harness::{ctl, doc, Region};
use crate::support::*;

#[tokio::test]
async fn ctl_applies_reads_and_reports_status() {
    let r = Region::start(3, "").await;
    r.converged(1).await;
    let dir = r.dir.path();
    // The first endpoint is dead: ctl moves on to the next.
    let endpoints: Vec<String> = std::iter::once(format!("\"http://{}\"", closed_port()))
        .chain(r.running().map(|(_, n)| format!("\"http://{}\"", n.admin_addr)))
        .collect();
    let cfg = dir.join("ctl.toml");
    std::fs::write(&cfg, format!("default_region = \"eu\"\n[regions.eu]\nadmin = [{}]\n", endpoints.join(", ")))
        .unwrap();
    let file = dir.join("doc.toml");
    std::fs::write(&file, doc(r.backend.addr, "via-ctl")).unwrap();

    let (ok, out, err) = tokio::task::spawn_blocking({
        let (cfg, file) = (cfg.clone(), file.clone());
        move || ctl(&cfg, &["apply", "-f", file.to_str().unwrap(), "--region", "eu"])
    })
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    assert!(out.contains("eu: applied, version 2"), "{out}");
    r.converged(2).await;

    // A document with errors is refused locally, with its key paths.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[routes]]\nname = \"x\"\nupstream = \"nowhere\"\n").unwrap();
    let (ok, _, err) = tokio::task::spawn_blocking({
        let (cfg, bad) = (cfg.clone(), bad.clone());
        move || ctl(&cfg, &["apply", "-f", bad.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(err.contains("routes[0].upstream: unknown upstream \"nowhere\""), "{err}");

    let (ok, out, _) = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || ctl(&cfg, &["get", "config"])
    })
    .await
    .unwrap();
    assert!(ok);
    assert!(out.contains("via-ctl"), "{out}");

    let (ok, out, err) = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || ctl(&cfg, &["status", "--output", "json"])
    })
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows.iter().filter(|r| r["role"] == "Leader").count(), 1);
    assert!(rows.iter().all(|r| r["health"] == "ok" && r["applied_version"] == 2), "{rows:?}");
    let (ok, table, _) = tokio::task::spawn_blocking(move || ctl(&cfg, &["status"])).await.unwrap();
    assert!(ok);
    assert!(table.starts_with("REGION"), "{table}");
    assert_eq!(table.lines().count(), 4);
    r.shutdown().await;
}
