//! REST → SOAP through real sockets: a small SOAP service started by the
//! test answers envelopes and faults behind REST routes (1.1 and 1.2).

use std::sync::{Arc, Mutex};

use http::Request;
use http_body_util::Full;
use serde_json::json;

use crate::support::*;

const ENV_11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const ENV_12: &str = "http://www.w3.org/2003/05/soap-envelope";

/// Between `<tag>` and `</tag>` in `text`.
fn inside<'t>(text: &'t str, tag: &str) -> Option<&'t str> {
    let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    Some(&text[start..end])
}

/// A bank's SOAP service: `GetBalance` (1.1) answers two entries, account
/// `0` is a client fault, account `9` a server fault (HTTP 500);
/// `Transfer` (1.2) echoes its fields.
async fn bank(seen: Arc<Mutex<Vec<Seen>>>) -> Peer {
    peer(move |req: Seen| {
        seen.lock().unwrap().push(req.clone());
        async move {
            let body = String::from_utf8_lossy(&req.body).into_owned();
            if req.uri.path() != "/BankService" || req.method != http::Method::POST {
                return answer(404, "text/plain", "not here");
            }
            if body.contains("Transfer") {
                let reply = format!(
                    "<e:Envelope xmlns:e=\"{ENV_12}\"><e:Body><TransferResponse><from>{}</from><amount>{}</amount><memo>{}</memo></TransferResponse></e:Body></e:Envelope>",
                    inside(&body, "b:from").unwrap_or("?"),
                    inside(&body, "b:amount").unwrap_or("?"),
                    inside(&body, "b:memo").unwrap_or("?"),
                );
                return answer(200, "application/soap+xml; charset=utf-8", reply);
            }
            let account = inside(&body, "b:account").unwrap_or("");
            let envelope = |content: String| format!("<s:Envelope xmlns:s=\"{ENV_11}\"><s:Body>{content}</s:Body></s:Envelope>");
            match account {
                "0" => answer(
                    500,
                    "text/xml; charset=utf-8",
                    envelope("<s:Fault><faultcode>s:Client</faultcode><faultstring>unknown account</faultstring><detail><account>0</account></detail></s:Fault>".into()),
                ),
                "9" => answer(
                    500,
                    "text/xml; charset=utf-8",
                    envelope("<s:Fault><faultcode>s:Server</faultcode><faultstring>ledger offline</faultstring></s:Fault>".into()),
                ),
                _ => answer(
                    200,
                    "text/xml; charset=utf-8",
                    envelope(format!(
                        "<r:GetBalanceResponse xmlns:r=\"urn:bank\"><r:account>{account}</r:account><r:currency>{}</r:currency><r:entry amount=\"10\">salary</r:entry></r:GetBalanceResponse>",
                        inside(&body, "b:currency").unwrap_or("")
                    )),
                ),
            }
        }
    })
    .await
}

async fn bank_gateway() -> (Peer, Arc<Mutex<Vec<Seen>>>, meridian_region::gateway::RunningGateway) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let service = bank(seen.clone()).await;
    let doc = format!(
        r#"
[upstreams.bank]
targets = [{{ address = "{}" }}]

[[routes]]
name = "balance"
upstream = "bank"
methods = ["GET"]
path_template = "/accounts/{{id}}/balance"
rewrite = "/BankService"
[routes.soap]
action = "urn:bank#GetBalance"
body = '<b:GetBalance xmlns:b="urn:bank"><b:account>$(path.id)</b:account><b:currency>$(query.currency)</b:currency></b:GetBalance>'
[routes.soap.response]
always_array = ["GetBalanceResponse.entry"]

[[routes]]
name = "transfer"
upstream = "bank"
methods = ["POST"]
path_exact = "/transfers"
rewrite = "/BankService"
[routes.soap]
version = "1.2"
action = "urn:bank#Transfer"
body = '<b:Transfer xmlns:b="urn:bank"><b:from>$(body.from.iban)</b:from><b:amount>$(body.amount)</b:amount><b:memo>$(body.memo)</b:memo></b:Transfer>'
"#,
        service.addr
    );
    let gw = gateway(&doc).await;
    (service, seen, gw)
}

#[tokio::test]
async fn a_rest_call_reaches_the_service_as_an_envelope_and_its_answer_comes_back_as_json() {
    let (_service, seen, gw) = bank_gateway().await;
    let r = get(gw.http_addr(), "/accounts/42/balance?currency=EUR").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(
        r.json(),
        json!({ "GetBalanceResponse": {
            "account": "42", "currency": "EUR",
            "entry": [{ "@amount": "10", "#text": "salary" }]
        }})
    );
    let sent = seen.lock().unwrap()[0].clone();
    assert_eq!(sent.method, http::Method::POST);
    assert_eq!(sent.headers["soapaction"], "\"urn:bank#GetBalance\"");
    assert_eq!(sent.headers["content-type"], "text/xml; charset=utf-8");
    assert_eq!(sent.headers["content-length"], sent.body.len().to_string());
    let envelope = String::from_utf8_lossy(&sent.body);
    assert!(envelope.contains(&format!("xmlns:soap=\"{ENV_11}\"")), "{envelope}");
    assert!(envelope.contains("<b:account>42</b:account>"), "{envelope}");
    gw.shutdown().await;
}

#[tokio::test]
async fn soap_1_2_takes_json_body_fields_escaped_and_the_action_parameter() {
    let (_service, seen, gw) = bank_gateway().await;
    let body = json!({ "from": { "iban": "DE44 5001" }, "amount": 125.5, "memo": "rent <May> & more" }).to_string();
    let req = Request::post(format!("http://{}/transfers", gw.http_addr()))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let r = send(&client(), req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The service read the escaped memo back as text; the gateway unescaped it.
    assert_eq!(
        r.json(),
        json!({ "TransferResponse": { "from": "DE44 5001", "amount": "125.5", "memo": "rent <May> & more" } })
    );
    let sent = seen.lock().unwrap()[0].clone();
    assert_eq!(sent.headers["content-type"], "application/soap+xml; charset=utf-8; action=\"urn:bank#Transfer\"");
    assert!(sent.headers.get("soapaction").is_none());
    assert!(String::from_utf8_lossy(&sent.body).contains("<b:memo>rent &lt;May&gt; &amp; more</b:memo>"));
    // A field the body lacks is the client's mistake, named.
    let req = Request::post(format!("http://{}/transfers", gw.http_addr()))
        .body(Full::new(bytes::Bytes::from(r#"{"amount": 1}"#)))
        .unwrap();
    let r = send(&client(), req).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["failures"][0]["path"], "$(body.from.iban)");
    assert_eq!(seen.lock().unwrap().len(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn faults_map_to_a_status_with_a_json_error() {
    let (_service, _seen, gw) = bank_gateway().await;
    let client_fault = get(gw.http_addr(), "/accounts/0/balance?currency=EUR").await;
    assert_eq!(client_fault.status, 400);
    let body = client_fault.json();
    assert_eq!(body["error"], "soap_fault");
    assert_eq!(body["fault"], json!({ "code": "Client", "message": "unknown account", "detail": { "account": "0" } }));
    let server_fault = get(gw.http_addr(), "/accounts/9/balance?currency=EUR").await;
    assert_eq!(server_fault.status, 502);
    assert_eq!(server_fault.json()["fault"]["code"], "Server");
    let m = metrics(gw.admin_addr).await;
    let faults =
        metric_value(&m, "meridian_transforms_total", &[("route", "balance"), ("stage", "soap"), ("result", "fault")]);
    assert_eq!(faults, 2.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn an_envelope_template_that_is_not_xml_is_refused_with_its_path() {
    let doc = r#"
[upstreams.bank]
targets = [{ address = "127.0.0.1:9" }]
[[routes]]
name = "broken"
upstream = "bank"
[routes.soap]
body = '<b:Op><b:x>$(query.x)</b:Op>'
"#;
    let parsed: meridian_core::config::GatewayDocument =
        meridian_core::config::parse(doc, meridian_core::config::Format::Toml).unwrap();
    let errors = meridian_core::config::validate_document(parsed).unwrap_err();
    assert!(errors.0.iter().any(|e| e.path == "routes[0].soap.body"), "{errors}");
    assert!(errors.to_string().contains("not XML"), "{errors}");
}
