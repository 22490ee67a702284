//! Identity is global: `ctl consumers` and `ctl keys` write to every region,
//! each region enforces a change on every member at the same version, and a
//! region that cannot be reached is retried and reported, never skipped.

use crate::harness::{ctl_async, doc, Region};
use crate::support::*;
use std::io::Write;

/// Every running member of `r` answers `path` with `key` as `status`, at `version`.
async fn enforced(r: &Region, version: u64, key: &str, status: u16) {
    r.converged(version).await;
    for (i, n) in r.running() {
        let got = get_with(n.http_addr(), "/x", &[("x-api-key", key)]).await.status;
        assert_eq!(got, status, "member {i} at version {version}");
    }
}

#[tokio::test]
async fn consumers_and_keys_reach_every_region_and_every_member() {
    let mut pepper = tempfile::NamedTempFile::new().unwrap();
    pepper.write_all(b"cluster-test-pepper-0123456789").unwrap();
    let node_extra = format!("[identity]\npepper_file = \"{}\"\n", pepper.path().display());
    let eu = Region::start_with(3, "", &node_extra).await;
    let mut us = Region::start_with(1, "", &node_extra).await;
    eu.converged(1).await;
    us.converged(1).await;
    let endpoints =
        |r: &Region| r.running().map(|(_, n)| format!("\"http://{}\"", n.admin_addr)).collect::<Vec<_>>().join(", ");
    let cfg = eu.dir.path().join("ctl.toml");
    std::fs::write(
        &cfg,
        format!("[regions.eu]\nadmin = [{}]\n[regions.us]\nadmin = [{}]\n", endpoints(&eu), endpoints(&us)),
    )
    .unwrap();
    let file = eu.dir.path().join("doc.toml");
    std::fs::write(&file, format!("{}auth = {{ api_key = {{}} }}\n", doc(eu.backend.addr, "keyed"))).unwrap();
    let (ok, out, err) = ctl_async(&cfg, &["apply", "-f", file.to_str().unwrap(), "--all-regions"]).await;
    assert!(ok, "{out}{err}");

    let (ok, out, err) =
        ctl_async(&cfg, &["consumers", "add", "alice", "--group", "staff", "--meta", "tier=gold"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("eu: done (version 3)") && out.contains("us: done (version 3)"), "{out}");
    // Said twice, it is already so (a retried write changes nothing).
    let (ok, out, _) = ctl_async(&cfg, &["consumers", "add", "alice", "--group", "staff", "--meta", "tier=gold"]).await;
    assert!(ok && out.contains("eu: already so"), "{out}");

    let (ok, out, err) = ctl_async(&cfg, &["keys", "issue", "alice", "--id", "alice-1"]).await;
    assert!(ok, "{out}{err}");
    let key = out.lines().last().unwrap().trim().to_string();
    assert!(key.starts_with("mk_"), "{out}");
    enforced(&eu, 4, &key, 200).await;
    enforced(&us, 4, &key, 200).await;
    enforced(&eu, 4, "mk_not-the-key-0000000000000000", 401).await;

    // Documents and listings hold the hash and the prefix, never the key.
    let (ok, out, _) = ctl_async(&cfg, &["consumers", "list"]).await;
    assert!(ok && out.contains("alice-1 (mk_") && !out.contains(&key), "{out}");
    let config = admin(eu.nodes[0].as_ref().unwrap().admin_addr, "GET", "/config", "").await.text();
    assert!(!config.contains(&key) && config.contains("\"hash\""), "{config}");

    // A region that cannot be reached is retried, then reported.
    us.stop_node(0).await;
    let (ok, out, err) = ctl_async(&cfg, &["keys", "revoke", "alice", "alice-1", "--retries", "1"]).await;
    assert!(!ok, "a failed region must fail the command");
    assert!(out.contains("eu: done") && out.contains("us: FAILED"), "{out}{err}");
    assert!(err.contains("retrying") && err.contains("not written to: us"), "{err}");
    enforced(&eu, 5, &key, 401).await;
}
