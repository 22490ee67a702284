use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

#[tokio::test]
async fn h2c_prior_knowledge_end_to_end() {
    let b = backend("b").await;
    let gw = gateway(&format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"all\"\nupstream = \"u\"",
        b.addr
    ))
    .await;
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    // Several streams at once on one connection, with request bodies.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let c = c.clone();
        let url = format!("http://{}/stream/{i}", gw.http_addr());
        tasks.push(tokio::spawn(async move {
            send(&c, http::Request::post(url).body(vec![b'y'; 1000 * i].into()).unwrap()).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["path"], format!("/stream/{i}"));
        assert_eq!(v["body_bytes"], 1000 * i);
        assert_eq!(v["headers"]["via"], "2 meridian");
    }
    gw.shutdown().await;
}

/// A WebSocket echo server.
async fn ws_echo() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_echo_through_the_gateway() {
    let echo = ws_echo().await;
    let gw = gateway(&format!("[upstreams.ws]\ntargets = [{{ address = \"{echo}\" }}]\n[[routes]]\nname = \"ws\"\npath_prefix = \"/ws\"\nupstream = \"ws\"")).await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.http_addr())).await.unwrap();
    assert_eq!(resp.status(), 101);
    assert!(resp.headers().contains_key("x-request-id"));
    for i in 0..20 {
        let msg = format!("hello {i}");
        ws.send(Message::text(msg.clone())).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), msg);
    }
    ws.send(Message::binary(vec![7u8; 100_000])).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().into_data().len(), 100_000);
    ws.close(None).await.unwrap();
    gw.shutdown().await;
}

/// `Upgrade: h2c` is never tunnelled, and a route tunnels only what it lists:
/// the request goes on as plain HTTP and the refusal is counted.
#[tokio::test]
async fn upgrades_happen_only_where_the_route_allows_them() {
    let b = backend("b").await;
    let doc = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"plain\"\npath_prefix = \"/plain\"\nupgrades = []\nupstream = \"u\"\n[[routes]]\nname = \"all\"\nupstream = \"u\"",
        b.addr
    );
    let gw = gateway(&doc).await;
    let addr = gw.http_addr();
    let h2c = "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let resp = raw(addr, h2c.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let ws = "GET /plain HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let resp = raw(addr, ws.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let m = metrics(gw.admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_upgrades_total", &[("protocol", "h2c"), ("result", "refused")]), 1.0);
    assert_eq!(
        metric_value(
            &m,
            "meridian_upgrades_total",
            &[("route", "plain"), ("protocol", "websocket"), ("result", "refused")]
        ),
        1.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_route_cannot_list_h2c() {
    let doc = "[upstreams.u]\ntargets = [{ address = \"127.0.0.1:1\" }]\n[[routes]]\nname = \"r\"\nupgrades = [\"h2c\"]\nupstream = \"u\"";
    let errors = meridian_core::config::parse_document(doc, meridian_core::config::Format::Toml).unwrap_err();
    assert!(errors.to_string().starts_with("routes[0].upgrades[0]"), "{errors}");
}

/// A tunnel that goes quiet is closed after the idle timeout, like any
/// connection, and the open-tunnel gauge follows.
#[tokio::test]
async fn an_idle_websocket_tunnel_is_closed() {
    let echo = ws_echo().await;
    let doc =
        format!("[upstreams.ws]\ntargets = [{{ address = \"{echo}\" }}]\n[[routes]]\nname = \"ws\"\nupstream = \"ws\"");
    let gw = gateway_with(&doc, "[limits]\nidle_timeout = \"1s\"").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.http_addr())).await.unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().into_text().unwrap().as_str(), "hi");
    assert_eq!(metric_value(&metrics(gw.admin_addr).await, "meridian_tunnels", &[]), 1.0);
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await;
    match end {
        Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {}
        other => panic!("the idle tunnel stayed open: {other:?}"),
    }
    assert!(
        eventually(std::time::Duration::from_secs(2), || async {
            metric_value(&metrics(gw.admin_addr).await, "meridian_tunnels", &[]) == 0.0
        })
        .await
    );
    gw.shutdown().await;
}
