//! The real client address: PROXY protocol v1/v2 and `X-Forwarded-For`, each
//! believed only from trusted proxies, deciding rate limits, connection caps
//! and what the upstream is told.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const GET: &str = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

/// One request per client address per minute.
async fn limited_gateway(listener: &str) -> (meridian_lab::backend::Backend, meridian_region::gateway::RunningGateway) {
    let b = backend("b").await;
    let doc = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"all\"\nupstream = \"u\"\n\
         rate_limit = {{ key = \"client_ip\", limits = [{{ requests = 1, per = \"60s\" }}] }}",
        b.addr
    );
    let gw = gateway_listener(&doc, listener).await;
    (b, gw)
}

fn v1(src: &str) -> String {
    let family = if src.contains(':') { "TCP6" } else { "TCP4" };
    let dst = if src.contains(':') { "::1" } else { "127.0.0.1" };
    format!("PROXY {family} {src} {dst} 40000 80\r\n")
}

fn v2(src: [u8; 4]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend([0x21, 0x11, 0, 12]);
    h.extend(src);
    h.extend([127, 0, 0, 1, 0x9c, 0x40, 0, 80]);
    h
}

fn status(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The `X-Forwarded-For` the backend received.
fn forwarded_for(response: &str) -> String {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["headers"]["x-forwarded-for"].as_str().unwrap_or("").to_string()
}

async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    raw_exchange(addr, bytes, false).await
}

#[tokio::test]
async fn a_trusted_proxy_header_names_the_client_for_limits_and_the_upstream() {
    let (_b, gw) = limited_gateway("proxy_protocol = true\ntrusted_proxies = [\"127.0.0.0/8\"]").await;
    let addr = gw.http_addr();
    let r = exchange(addr, format!("{}{GET}", v1("198.51.100.7")).as_bytes()).await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(forwarded_for(&r), "198.51.100.7");
    // Same client through the proxy: its own budget is spent.
    assert_eq!(status(&exchange(addr, format!("{}{GET}", v1("198.51.100.7")).as_bytes()).await), 429);
    // Another client (binary header): a budget of its own.
    let mut req = v2([198, 51, 100, 8]);
    req.extend(GET.as_bytes());
    let r = exchange(addr, &req).await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(forwarded_for(&r), "198.51.100.8");
    // The same client as an IPv4-mapped IPv6 address is the same client.
    assert_eq!(status(&exchange(addr, format!("{}{GET}", v1("::ffff:198.51.100.8")).as_bytes()).await), 429);
    // The proxy's own connection (health check): the peer itself.
    let r = exchange(addr, format!("PROXY UNKNOWN\r\n{GET}").as_bytes()).await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(forwarded_for(&r), "127.0.0.1");
    // No header, or a malformed one: closed unanswered.
    assert_eq!(exchange(addr, GET.as_bytes()).await, "");
    assert_eq!(exchange(addr, format!("PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n{GET}").as_bytes()).await, "");
    let m = metrics(gw.admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_proxy_protocol_total", &[("result", "client")]), 4.0);
    assert_eq!(metric_value(&m, "meridian_proxy_protocol_total", &[("result", "local")]), 1.0);
    assert_eq!(metric_value(&m, "meridian_proxy_protocol_total", &[("result", "invalid")]), 2.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_proxy_header_from_an_untrusted_peer_is_not_believed() {
    let (_b, gw) = limited_gateway("proxy_protocol = true\ntrusted_proxies = [\"192.0.2.0/24\"]").await;
    let addr = gw.http_addr();
    let r = exchange(addr, format!("{}{GET}", v1("198.51.100.7")).as_bytes()).await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(forwarded_for(&r), "127.0.0.1");
    // Claiming another address does not buy another budget.
    assert_eq!(status(&exchange(addr, format!("{}{GET}", v1("198.51.100.9")).as_bytes()).await), 429);
    let m = metrics(gw.admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_proxy_protocol_total", &[("result", "untrusted")]), 2.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn forwarded_for_counts_the_right_most_untrusted_entry_from_trusted_proxies_only() {
    let (_b, gw) = limited_gateway("forwarded_for = true\ntrusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]").await;
    let addr = gw.http_addr();
    let with = |xff: &str| format!("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n");
    let r = exchange(addr, with("6.6.6.6, 203.0.113.9, 10.1.2.3").as_bytes()).await;
    assert_eq!(status(&r), 200, "{r}");
    // The upstream gets the list with this hop appended.
    assert_eq!(forwarded_for(&r), "6.6.6.6, 203.0.113.9, 10.1.2.3, 127.0.0.1");
    // What the client wrote on the left does not buy another budget.
    assert_eq!(status(&exchange(addr, with("7.7.7.7, 203.0.113.9").as_bytes()).await), 429);
    assert_eq!(status(&exchange(addr, with("203.0.113.10").as_bytes()).await), 200);
    gw.shutdown().await;

    // From a peer that is not a trusted proxy the header is the client's own words.
    let (_b, gw) = limited_gateway("forwarded_for = true\ntrusted_proxies = [\"192.0.2.0/24\"]").await;
    let addr = gw.http_addr();
    assert_eq!(status(&exchange(addr, with("203.0.113.9").as_bytes()).await), 200);
    assert_eq!(status(&exchange(addr, with("203.0.113.10").as_bytes()).await), 429);
    gw.shutdown().await;
}

/// Opens a connection, sends `prefix` and a keep-alive request, reads its answer and keeps it open.
async fn held(addr: std::net::SocketAddr, prefix: &[u8]) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(prefix).await.ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.ok()?;
    let mut buf = [0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.ok()?.ok()?;
    String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200").then_some(s)
}

#[tokio::test]
async fn per_client_caps_count_the_real_client_and_spare_trusted_proxies() {
    let b = backend("b").await;
    let doc = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"all\"\nupstream = \"u\"",
        b.addr
    );
    let gw = gateway_listener(
        &doc,
        "proxy_protocol = true\ntrusted_proxies = [\"127.0.0.0/8\"]\nmax_connections_per_client = 1",
    )
    .await;
    let addr = gw.http_addr();
    let a = held(addr, v1("198.51.100.7").as_bytes()).await;
    assert!(a.is_some(), "the first client's connection");
    let b2 = held(addr, v1("198.51.100.8").as_bytes()).await;
    assert!(b2.is_some(), "another client through the same proxy");
    assert!(held(addr, v1("198.51.100.7").as_bytes()).await.is_none(), "a second connection of the first client");
    let m = metrics(gw.admin_addr).await;
    assert_eq!(
        metric_value(&m, "meridian_connections_refused_total", &[("reason", "max_connections_per_client")]),
        1.0
    );
    gw.shutdown().await;

    // Behind a balancer that sends X-Forwarded-For: the balancer is trusted and not capped.
    let gw = gateway_listener(
        &doc,
        "forwarded_for = true\ntrusted_proxies = [\"127.0.0.0/8\"]\nmax_connections_per_client = 1",
    )
    .await;
    let addr = gw.http_addr();
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(held(addr, b"").await.expect("a balancer connection"));
    }
    gw.shutdown().await;
}

#[test]
fn believing_clients_needs_trusted_proxies() {
    for listener in ["proxy_protocol = true", "forwarded_for = true"] {
        let text = format!(
            "[node]\nname = \"n\"\n[[listeners]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n{listener}\n\
             [admin]\naddress = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n[gateway]\n"
        );
        let node = meridian_core::config::parse(&text, meridian_core::config::Format::Toml).expect("parses");
        let err = meridian_core::config::validate_node(node).expect_err("refused").to_string();
        assert!(err.contains("listeners[0].trusted_proxies"), "{err}");
    }
}

#[tokio::test]
async fn an_oversized_or_slow_proxy_header_closes_the_connection() {
    let b = backend("b").await;
    let doc = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"all\"\nupstream = \"u\"",
        b.addr
    );
    let node = node_config_full(
        &doc,
        "proxy_protocol = true\ntrusted_proxies = [\"127.0.0.0/8\"]",
        "[limits]\nheader_read_timeout = \"300ms\"",
    );
    let gw = meridian_region::gateway::start(node).await.unwrap();
    let addr = gw.http_addr();
    // A binary header that claims 2 KiB of addresses and TLVs: more than is ever read.
    let mut big = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    big.extend([0x21, 0x11, 0x08, 0x00]);
    big.extend(vec![0u8; 1100]);
    assert_eq!(exchange(addr, &big).await, "");
    // Half a header, then nothing: closed at the header deadline.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PROXY TCP4 198.51").await.unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    let m = metrics(gw.admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_proxy_protocol_total", &[("result", "invalid")]), 1.0);
    assert_eq!(metric_value(&m, "meridian_proxy_protocol_total", &[("result", "timeout")]), 1.0);
    gw.shutdown().await;
}
