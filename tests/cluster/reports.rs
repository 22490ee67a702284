//! The gateway side of the global balancer: only the leader reports, and the
//! reports follow leadership.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meridian_core::clock::unix_ms;
use meridian_core::report::{Verifier, REGION_HEADER, SIGNATURE_HEADER};

use crate::harness::Region;
use crate::support::*;

/// A report receiver that keeps (arrival, sender) of every verified report.
async fn receiver(secret: &[u8]) -> (std::net::SocketAddr, Arc<Mutex<Vec<(Instant, u64)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let verifier = Arc::new(Verifier::new(HashMap::from([("eu".to_string(), secret.to_vec())]), 30_000));
    let sink = got.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let (sink, verifier) = (sink.clone(), verifier.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (sink, verifier) = (sink.clone(), verifier.clone());
                    async move {
                        let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
                        let (sig, region) = (header(SIGNATURE_HEADER), header(REGION_HEADER).unwrap_or_default());
                        let body = http_body_util::BodyExt::collect(req.into_body()).await.unwrap().to_bytes();
                        let status = match verifier.verify(&region, &body, sig.as_deref(), unix_ms()) {
                            Ok(r) => {
                                sink.lock().unwrap().push((Instant::now(), r.sender));
                                204
                            }
                            Err(_) => 401,
                        };
                        let mut resp = http::Response::new(http_body_util::Full::<bytes::Bytes>::default());
                        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, got)
}

#[tokio::test]
async fn only_the_leader_reports_and_a_new_leader_takes_over() {
    let secret = b"eu-report-secret-for-tests";
    let (addr, got) = receiver(secret).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("report.secret"), secret).unwrap();
    let extra = format!(
        "[report]\nendpoints = [\"http://{addr}\"]\ninterval = \"200ms\"\nsecret_file = \"{}/report.secret\"\n",
        dir.path().display()
    );
    let mut r = Region::start_with(3, "", &extra).await;
    r.converged(1).await;
    let leader = r.leader().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let senders: Vec<u64> = got.lock().unwrap().iter().map(|(_, s)| *s).collect();
    assert!(senders.len() >= 3, "{senders:?}");
    assert!(senders.iter().all(|s| *s == (leader + 1) as u64), "reports from non-leaders: {senders:?}");

    r.stop_node(leader).await;
    let killed = Instant::now();
    let new = r.leader().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            got.lock().unwrap().iter().any(|(at, s)| *at > killed && *s == (new + 1) as u64)
        })
        .await,
        "the new leader reports"
    );
    let after: Vec<u64> = got
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at > killed + Duration::from_millis(100))
        .map(|(_, s)| *s)
        .collect();
    assert!(after.iter().all(|s| *s == (new + 1) as u64), "{after:?}");
    let m = metrics(r.node(new).admin_addr).await;
    assert!(metric_value(&m, "meridian_gslb_reports_total", &[("result", "ok")]) >= 1.0);
    r.shutdown().await;
}
