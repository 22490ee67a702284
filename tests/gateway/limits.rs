use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

async fn echo_gateway(extra_node: &str) -> (meridian_lab::backend::Backend, meridian_region::gateway::RunningGateway) {
    let b = backend("b").await;
    let gw = gateway_with(
        &format!(
            "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"all\"\nupstream = \"u\"",
            b.addr
        ),
        extra_node,
    )
    .await;
    (b, gw)
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let (_b, gw) = echo_gateway("[limits]\nmax_header_bytes = 4096").await;
    let big = "x".repeat(8000);
    let resp = raw(gw.http_addr(), format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    // Normal requests still pass.
    assert_eq!(get(gw.http_addr(), "/").await.status, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_declared_or_streamed() {
    let (b, gw) = echo_gateway("[limits]\nmax_body_bytes = 1000").await;
    let c = client();
    let url = format!("http://{}/", gw.http_addr());
    let r = send(&c, http::Request::post(&url).body(vec![b'x'; 2000].into()).unwrap()).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"], "body_too_large");
    assert_eq!(b.control.requests(), 0, "nothing reached the backend");

    // Chunked: no length up front, the limit trips while streaming.
    let chunk = "x".repeat(600);
    let body = format!("258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n");
    let resp = raw(
        gw.http_addr(),
        format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}")
            .as_bytes(),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");

    let r = send(&c, http::Request::post(&url).body(vec![b'x'; 900].into()).unwrap()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_bytes"], 900);
    gw.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_the_gateway_keeps_serving() {
    let (_b, gw) = echo_gateway("").await;
    let addr = gw.http_addr();
    let cases: &[&[u8]] = &[
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",                                 // no Host
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", // bad length
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: a\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", // TLS on a plain port
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ];
    for case in cases {
        let resp = raw(addr, case).await;
        let status: u16 = resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        assert!((400..500).contains(&status) || resp.is_empty(), "{:?} → {resp:?}", String::from_utf8_lossy(case));
    }
    assert_eq!(get(addr, "/").await.status, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let (_b, gw) = echo_gateway("[limits]\nheader_read_timeout = \"300ms\"").await;
    let mut s = TcpStream::connect(gw.http_addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "the gateway closed the connection");
    assert!(started.elapsed() < Duration::from_secs(2));
    gw.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let (_b, gw) = echo_gateway("[limits]\nidle_timeout = \"200ms\"").await;
    let mut s = TcpStream::connect(gw.http_addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest)).await;
    assert!(r.is_ok(), "idle connection closed");
    assert!(started.elapsed() >= Duration::from_millis(150), "{:?}", started.elapsed());
    gw.shutdown().await;
}

/// A header-keyed limit: a request without the header is counted by its
/// client address, and no header value can name that budget.
#[tokio::test]
async fn a_missing_key_header_counts_by_client_address() {
    let b = backend("b").await;
    let doc = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"api\"\nupstream = \"u\"\nrate_limit = {{ key = \"header:x-api-key\", limits = [{{ requests = 1, per = \"60s\" }}] }}",
        b.addr
    );
    let gw = gateway(&doc).await;
    let addr = gw.http_addr();
    assert_eq!(get(addr, "/").await.status, 200);
    assert_eq!(get(addr, "/").await.status, 429, "requests without the header share the client's budget");
    // Neither "-" (the old shared bucket) nor the client's address as a header value is that budget.
    assert_eq!(get_with(addr, "/", &[("x-api-key", "-")]).await.status, 200);
    assert_eq!(get_with(addr, "/", &[("x-api-key", "127.0.0.1")]).await.status, 200);
    assert_eq!(get_with(addr, "/", &[("x-api-key", "alice")]).await.status, 200);
    assert_eq!(get_with(addr, "/", &[("x-api-key", "alice")]).await.status, 429);
    gw.shutdown().await;
}

/// One client cannot hold more than its share of a listener's connections.
#[tokio::test]
async fn connections_over_the_per_client_cap_are_closed_and_counted() {
    let b = backend("b").await;
    let doc = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"all\"\nupstream = \"u\"",
        b.addr
    );
    let gw = gateway_listener(&doc, "max_connections_per_client = 2").await;
    let addr = gw.http_addr();
    let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(req).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // The third is closed at once, unanswered.
    let third = raw(addr, req).await;
    assert!(third.is_empty(), "{third}");
    let m = metrics(gw.admin_addr).await;
    assert_eq!(
        metric_value(&m, "meridian_connections_refused_total", &[("reason", "max_connections_per_client")]),
        1.0
    );
    // A slot comes back when a connection closes.
    drop(held.pop());
    assert!(
        eventually(Duration::from_secs(2), || async { raw(addr, req).await.starts_with("HTTP/1.1 200") }).await,
        "the freed slot was not reused"
    );
    gw.shutdown().await;
}

/// What a VIP handoff waits for: connections on the address that wait for
/// or serve a request; an idle keep-alive connection is not busy.
#[tokio::test]
async fn busy_connections_are_counted_per_local_address() {
    let b = backend("b").await;
    let doc = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"all\"\nupstream = \"u\"",
        b.addr
    );
    let gw = gateway(&doc).await;
    let addr = gw.http_addr();
    let load = gw.gateway.address_load.clone();
    let busy = || load.busy(addr.ip());
    assert_eq!(busy(), 0);
    // Connected, no request yet: busy (a handoff must not cut it).
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert!(eventually(Duration::from_secs(2), || async { busy() == 1 }).await, "{}", busy());
    // A slow request: still busy while it is served.
    s.write_all(b"GET /?delay_ms=400 HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(busy(), 1);
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Answered and kept alive: idle, not busy.
    assert!(eventually(Duration::from_secs(2), || async { busy() == 0 }).await, "{}", busy());
    // The next request on it counts again; closing gives everything back.
    s.write_all(b"GET /?delay_ms=300 HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    assert!(eventually(Duration::from_secs(2), || async { busy() == 1 }).await, "{}", busy());
    let opened = TcpStream::connect(addr).await.unwrap();
    assert!(eventually(Duration::from_secs(2), || async { busy() == 2 }).await, "{}", busy());
    drop(opened);
    drop(s);
    assert!(eventually(Duration::from_secs(3), || async { busy() == 0 }).await, "{}", busy());
    gw.shutdown().await;
}
