//! XML → JSON of upstream answers through real sockets: the mapping,
//! always-array paths, hostile documents refused with a 502, size caps,
//! answers that are not XML passed through, converted answers cached.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::support::*;

/// A gateway whose route `api` converts what `peer` answers.
async fn xml_gateway(peer: &Peer, route: &str) -> meridian_region::gateway::RunningGateway {
    let doc = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"api\"\nupstream = \"u\"\n{route}\n",
        peer.addr
    );
    gateway(&doc).await
}

/// Answers the XML document named by the request path.
async fn xml_peer() -> Peer {
    peer(|seen| async move {
        let body = match seen.uri.path() {
            "/accounts" => ACCOUNTS.to_string(),
            "/one" => "<accounts><account id=\"7\"><balance>1</balance></account></accounts>".to_string(),
            "/laughs" => LAUGHS.to_string(),
            "/xxe" => XXE.to_string(),
            "/deep" => "<a>".repeat(100) + &"</a>".repeat(100),
            "/html" => return answer(200, "text/html", "<html><body>not xml</body></html>"),
            "/broken" => "<a><b></a>".to_string(),
            _ => return answer(404, "text/plain", "no such document"),
        };
        answer(200, "application/xml; charset=utf-8", body)
    })
    .await
}

const ACCOUNTS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<b:accounts xmlns:b="urn:bank" owner="Ann">
  <b:account id="1"><balance currency="EUR">10.50</balance></b:account>
  <b:account id="2"><balance currency="EUR">0</balance><closed/></b:account>
</b:accounts>"#;

const LAUGHS: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>"#;

const XXE: &str = r#"<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<r>&secret;</r>"#;

#[tokio::test]
async fn xml_answers_become_json_with_the_documented_mapping() {
    let p = xml_peer().await;
    let gw = xml_gateway(&p, "[routes.xml_to_json]\nalways_array = [\"accounts.account\"]").await;
    let r = get(gw.http_addr(), "/accounts").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["content-length"], r.body.len().to_string());
    assert_eq!(
        r.json(),
        json!({ "accounts": {
            "@owner": "Ann",
            "account": [
                { "@id": "1", "balance": { "@currency": "EUR", "#text": "10.50" } },
                { "@id": "2", "balance": { "@currency": "EUR", "#text": "0" }, "closed": null }
            ]
        }})
    );
    // One account is still an array: the type does not depend on the count.
    let one = get(gw.http_addr(), "/one").await.json();
    assert_eq!(one, json!({ "accounts": { "account": [{ "@id": "7", "balance": "1" }] } }));
    gw.shutdown().await;
}

#[tokio::test]
async fn hostile_and_broken_documents_are_a_502_that_says_why() {
    let p = xml_peer().await;
    let gw = xml_gateway(&p, "[routes.xml_to_json]\nmax_depth = 32").await;
    for (path, reason) in [
        ("/laughs", "DOCTYPE is not accepted"),
        ("/xxe", "DOCTYPE is not accepted"),
        ("/deep", "deeper than 32"),
        ("/broken", "malformed XML"),
    ] {
        let r = get(gw.http_addr(), path).await;
        assert_eq!(r.status, 502, "{path}");
        let body = r.json();
        assert_eq!(body["error"], "upstream_format", "{path}");
        assert!(body["message"].as_str().unwrap().contains(reason), "{path}: {body}");
        assert!(!r.text().contains("root:"), "nothing of a local file leaks");
    }
    let m = metrics(gw.admin_addr).await;
    let failed = metric_value(
        &m,
        "meridian_transforms_total",
        &[("route", "api"), ("stage", "xml_to_json"), ("result", "failed")],
    );
    assert_eq!(failed, 4.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn an_answer_over_the_size_cap_is_refused_and_other_types_pass_untouched() {
    let p = xml_peer().await;
    let gw = xml_gateway(&p, "[routes.xml_to_json]\nmax_bytes = 64").await;
    let r = get(gw.http_addr(), "/accounts").await;
    assert_eq!(r.status, 502);
    assert!(r.json()["message"].as_str().unwrap().contains("larger than 64 bytes"));
    let html = get(gw.http_addr(), "/html").await;
    assert_eq!(html.status, 200);
    assert_eq!(html.headers["content-type"], "text/html");
    assert_eq!(html.text(), "<html><body>not xml</body></html>");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_converted_answer_is_cached_converted() {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    let p = peer(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
        async { answer(200, "text/xml", "<r><v>1</v></r>") }
    })
    .await;
    let gw = xml_gateway(&p, "cache = { ttl = \"60s\" }\n[routes.xml_to_json]").await;
    let first = get(gw.http_addr(), "/doc").await;
    assert_eq!(first.headers["x-cache"], "MISS");
    let second = get(gw.http_addr(), "/doc").await;
    assert_eq!(second.headers["x-cache"], "HIT");
    for r in [&first, &second] {
        assert_eq!(r.json(), json!({ "r": { "v": "1" } }));
        assert_eq!(r.headers["content-type"], "application/json");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    gw.shutdown().await;
}
