use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

fn doc(a: std::net::SocketAddr, b: std::net::SocketAddr, route: &str) -> String {
    format!(
        r#"
[upstreams.u]
targets = [{{ address = "{a}" }}, {{ address = "{b}" }}]

[[routes]]
name = "{route}"
upstream = "u"
"#
    )
}

#[tokio::test]
async fn reload_under_load_loses_no_request() {
    let a = backend("a").await;
    let b = backend("b").await;
    let gw = gateway(&doc(a.addr, b.addr, "r0")).await;
    let addr = gw.http_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let c = client();
            // Bounded: at most 5000 requests per worker.
            for _ in 0..5000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let req = http::Request::get(format!("http://{addr}/x")).body(Default::default()).unwrap();
                match c.request(req).await {
                    Ok(r) if r.status() == 200 => {
                        let _ = http_body_util::BodyExt::collect(r.into_body()).await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Twenty versions: routes renamed, targets reordered, one target dropped and re-added.
    for v in 1..=20 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let body = if v % 3 == 0 {
            format!(
                "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"r{v}\"\nupstream = \"u\"",
                a.addr
            )
        } else {
            doc(b.addr, a.addr, &format!("r{v}"))
        };
        let r = admin(gw.admin_addr, "PUT", "/config", &body).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) > 100, "{}", ok.load(Ordering::Relaxed));
    assert_eq!(gw.gateway.version(), 21);
    gw.shutdown().await;
}

#[tokio::test]
async fn invalid_documents_are_refused_and_the_old_one_keeps_serving() {
    let a = backend("a").await;
    let b = backend("b").await;
    let gw = gateway(&doc(a.addr, b.addr, "r0")).await;
    let bad = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"r\"\nupstream = \"u\"\n[[routes]]\nname = \"s\"\nupstream = \"orders\"",
        a.addr
    );
    let r = admin(gw.admin_addr, "PUT", "/config", &bad).await;
    assert_eq!(r.status, 422);
    let v = r.json();
    assert_eq!(v["errors"][0]["path"], "routes[1].upstream");
    assert_eq!(v["errors"][0]["message"], "unknown upstream \"orders\"");
    let r = admin(gw.admin_addr, "PUT", "/config", "this is = not toml [").await;
    assert_eq!(r.status, 422);
    assert_eq!(gw.gateway.version(), 1);
    assert_eq!(get(gw.http_addr(), "/").await.status, 200);
    let m = metrics(gw.admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_config_applies_total", &[("result", "invalid")]), 2.0);

    // The same through the node file (what SIGHUP does).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(
        &path,
        format!("[node]\nname = \"n\"\n[gateway]\n{bad}")
            .replace("[upstreams", "[gateway.upstreams")
            .replace("[[routes]]", "[[gateway.routes]]"),
    )
    .unwrap();
    let errors = gw.reload(&path).await.unwrap_err();
    assert!(errors.to_string().contains("gateway.routes[1].upstream: unknown upstream \"orders\""), "{errors}");
    assert_eq!(get(gw.http_addr(), "/").await.status, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn sighup_reloads_the_node_file() {
    let a = backend("a").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    let port = closed_port().port();
    let admin_port = closed_port().port();
    let write = |route: &str| {
        std::fs::write(
            &path,
            format!(
                "[node]\nname = \"n\"\n[[listeners]]\nname = \"http\"\naddress = \"127.0.0.1:{port}\"\n[admin]\naddress = \"127.0.0.1:{admin_port}\"\n[gateway.upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[gateway.routes]]\nname = \"r\"\npath_prefix = \"{route}\"\nupstream = \"u\"\n",
                a.addr
            ),
        )
        .unwrap()
    };
    write("/one");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["gateway", "--config"])
        .arg(&path)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(eventually(Duration::from_secs(10), || async { tokio::net::TcpStream::connect(addr).await.is_ok() }).await);
    assert_eq!(get(addr, "/one").await.status, 200);
    assert_eq!(get(addr, "/two").await.status, 404);
    write("/two");
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    assert!(eventually(Duration::from_secs(5), || async { get(addr, "/two").await.status == 200 }).await);
    assert_eq!(get(addr, "/one").await.status, 404);
    // SIGTERM drains and exits cleanly.
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
}
