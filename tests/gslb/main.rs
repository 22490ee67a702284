//! The global balancer on loopback: two fake regions (a backend per VIP for
//! the probes, signed reports from the test), queried with real DNS messages
//! over UDP and TCP.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use meridian_core::clock::unix_ms;
use meridian_core::report::{sign, HealthReport, REGION_HEADER, SIGNATURE_HEADER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const EU: &str = "127.0.1.1";
const US: &str = "127.0.2.1";

struct Fixture {
    _dir: tempfile::TempDir,
    gslb: meridian_gslb::RunningGslb,
    eu: meridian_lab::backend::Backend,
    us: meridian_lab::backend::Backend,
    /// Reports are sent for a region while its flag is set.
    reporting: BTreeMap<&'static str, Arc<AtomicBool>>,
}

fn config(dir: &std::path::Path, probe_port: u16) -> String {
    let d = dir.display();
    format!(
        r#"
[gslb]
name = "test"
dns = "127.0.0.1:0"
api = "127.0.0.1:0"
report_freshness = "800ms"
replay_window = "5s"

[telemetry]
log_level = "warn"

[zone]
origin = "example.test."
nameservers = ["ns1"]
[[zone.records]]
name = "ns1"
type = "A"
value = "127.0.0.53"
[[zone.records]]
name = "www"
type = "CNAME"
value = "api"
[[zone.records]]
name = "info"
type = "TXT"
value = "meridian test zone"

[[regions]]
name = "eu"
secret_file = "{d}/eu.secret"
location = {{ lat = 50.1, lon = 8.7 }}
vips = ["{EU}"]
probe = {{ port = {probe_port}, interval = "100ms", timeout = "80ms", rise = 2, fall = 2 }}
weight = 3

[[regions]]
name = "us"
secret_file = "{d}/us.secret"
location = {{ lat = 38.9, lon = -77.0 }}
vips = ["{US}"]
probe = {{ port = {probe_port}, interval = "100ms", timeout = "80ms", rise = 2, fall = 2 }}
weight = 1

[[services]]
name = "api"
policy = "nearest"
ttl = 5

[[services]]
name = "fo"
policy = "failover"
order = ["us", "eu"]

[[services]]
name = "wt"
policy = "weighted"

[[geo]]
cidr = "10.1.0.0/16"
location = {{ lat = 48.9, lon = 2.35 }}

[[geo]]
cidr = "10.2.0.0/16"
location = {{ lat = 40.7, lon = -74.0 }}

[[geo]]
cidr = "127.0.0.0/8"
order = ["us", "eu"]
"#
    )
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("eu.secret"), "eu-report-secret-0123").unwrap();
    std::fs::write(dir.path().join("us.secret"), "us-report-secret-0123").unwrap();
    // One port for both fake regions' backends, on their own loopback addresses.
    let eu = meridian_lab::backend::start(format!("{EU}:0").parse().unwrap(), "eu").await.unwrap();
    let port = eu.addr.port();
    let us = meridian_lab::backend::start(format!("{US}:{port}").parse().unwrap(), "us").await.unwrap();
    let path = dir.path().join("gslb.toml");
    std::fs::write(&path, config(dir.path(), port)).unwrap();
    let cfg = meridian_gslb::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let gslb = meridian_gslb::start(cfg).await.unwrap();
    let mut reporting = BTreeMap::new();
    for (region, secret) in [("eu", "eu-report-secret-0123"), ("us", "us-report-secret-0123")] {
        let flag = Arc::new(AtomicBool::new(true));
        reporting.insert(region, flag.clone());
        let api = gslb.api_addr;
        tokio::spawn(async move {
            loop {
                if flag.load(Ordering::Relaxed) {
                    let _ = post_report(api, region, secret.as_bytes(), None).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    let f = Fixture { _dir: dir, gslb, eu, us, reporting };
    // Both regions served: reports in, probes passed twice.
    assert!(wait(Duration::from_secs(5), || async { served(&f).await.len() == 2 }).await, "regions not served");
    f
}

fn report(region: &str) -> HealthReport {
    HealthReport {
        region: region.into(),
        timestamp_ms: unix_ms(),
        nonce: format!("{:032x}", fastrand::u128(..)),
        sender: 1,
        healthy_nodes: vec![1, 2, 3],
        vips: BTreeMap::new(),
        config_version: 1,
        load: 0.0,
    }
}

async fn post(api: SocketAddr, region: &str, body: Vec<u8>, signature: &str) -> u16 {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = http::Request::post(format!("http://{api}/v1/report"))
        .header(SIGNATURE_HEADER, signature)
        .header(REGION_HEADER, region)
        .body(body.into())
        .unwrap();
    client.request(req).await.map(|r| r.status().as_u16()).unwrap_or(0)
}

async fn post_report(api: SocketAddr, region: &str, secret: &[u8], body: Option<Vec<u8>>) -> u16 {
    let body = body.unwrap_or_else(|| serde_json::to_vec(&report(region)).unwrap());
    let sig = sign(secret, &body);
    post(api, region, body, &sig).await
}

async fn served(f: &Fixture) -> Vec<String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let Ok(r) = client.get(format!("http://{}/v1/regions", f.gslb.api_addr).parse().unwrap()).await else {
        return vec![];
    };
    let b = http_body_util::BodyExt::collect(r.into_body()).await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["served"] == true)
        .map(|r| r["region"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn wait<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn query(name: &str, qtype: RecordType, ecs: Option<(&str, u8)>) -> Message {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = false;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    if let Some((net, prefix)) = ecs {
        edns.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(net.parse().unwrap(), prefix, 0)));
    }
    msg.set_edns(edns);
    msg
}

async fn udp(server: SocketAddr, msg: &Message) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(server).await.unwrap();
    sock.send(&msg.to_vec().unwrap()).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf)).await.expect("answer in time").unwrap();
    let resp = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(resp.metadata.id, msg.metadata.id);
    resp
}

async fn tcp(server: SocketAddr, msg: &Message) -> Message {
    let mut s = TcpStream::connect(server).await.unwrap();
    let body = msg.to_vec().unwrap();
    let mut framed = (body.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    s.write_all(&framed).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut len)).await.unwrap().unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn addresses(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn ecs_picks_the_nearest_region_and_is_echoed() {
    let f = start().await;
    let paris = udp(f.gslb.dns_addr, &query("api.example.test.", RecordType::A, Some(("10.1.7.0", 24)))).await;
    assert_eq!(addresses(&paris), vec![ip(EU)]);
    assert!(paris.metadata.authoritative);
    assert_eq!(paris.answers[0].ttl, 5);
    let echo = match paris.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)) {
        Some(EdnsOption::Subnet(cs)) => *cs,
        other => panic!("no ECS echoed: {other:?}"),
    };
    assert_eq!((echo.addr(), echo.source_prefix(), echo.scope_prefix()), (ip("10.1.7.0"), 24, 16));
    let nyc = udp(f.gslb.dns_addr, &query("api.example.test.", RecordType::A, Some(("10.2.0.0", 16)))).await;
    assert_eq!(addresses(&nyc), vec![ip(US)]);
}

#[tokio::test]
async fn without_ecs_the_source_address_decides() {
    let f = start().await;
    let mut q = query("API.Example.Test.", RecordType::A, None);
    q.edns = None;
    let r = udp(f.gslb.dns_addr, &q).await;
    // 127.0.0.0/8 prefers us, then eu.
    assert_eq!(addresses(&r), vec![ip(US)]);
    assert!(r.edns.is_none(), "no OPT in the answer to a query without one");
    assert_eq!(r.answers[0].name.to_ascii(), "API.Example.Test.");
}

#[tokio::test]
async fn a_region_whose_reports_stop_leaves_and_comes_back() {
    let f = start().await;
    let paris = || query("api.example.test.", RecordType::A, Some(("10.1.0.0", 16)));
    f.reporting["eu"].store(false, Ordering::Relaxed);
    let stopped = Instant::now();
    assert!(
        wait(Duration::from_secs(3), || async { addresses(&udp(f.gslb.dns_addr, &paris()).await) == vec![ip(US)] })
            .await
    );
    let took = stopped.elapsed();
    eprintln!("eu left the answers {} ms after its last report", took.as_millis());
    assert!(took <= Duration::from_secs(2), "{took:?}");
    f.reporting["eu"].store(true, Ordering::Relaxed);
    assert!(
        wait(Duration::from_secs(3), || async { addresses(&udp(f.gslb.dns_addr, &paris()).await) == vec![ip(EU)] })
            .await
    );
}

#[tokio::test]
async fn a_region_whose_probes_fail_leaves_and_returns_after_rise() {
    let f = start().await;
    let paris = || query("api.example.test.", RecordType::A, Some(("10.1.0.0", 16)));
    f.eu.control.healthy.store(false, Ordering::Relaxed);
    let failed = Instant::now();
    assert!(
        wait(Duration::from_secs(3), || async { addresses(&udp(f.gslb.dns_addr, &paris()).await) == vec![ip(US)] })
            .await
    );
    assert!(failed.elapsed() <= Duration::from_secs(2));
    f.eu.control.healthy.store(true, Ordering::Relaxed);
    let back = Instant::now();
    assert!(
        wait(Duration::from_secs(3), || async { addresses(&udp(f.gslb.dns_addr, &paris()).await) == vec![ip(EU)] })
            .await
    );
    // rise = 2 probes at 100 ms.
    assert!(back.elapsed() >= Duration::from_millis(100), "{:?}", back.elapsed());
}

#[tokio::test]
async fn forged_and_replayed_reports_are_refused() {
    let f = start().await;
    let api = f.gslb.api_addr;
    assert_eq!(post_report(api, "eu", b"not-the-secret", None).await, 401);
    assert_eq!(post_report(api, "mars", b"whatever", None).await, 401);
    let body = serde_json::to_vec(&report("eu")).unwrap();
    assert_eq!(post_report(api, "eu", b"eu-report-secret-0123", Some(body.clone())).await, 204);
    assert_eq!(post_report(api, "eu", b"eu-report-secret-0123", Some(body)).await, 401, "replay refused");
    let mut old = report("eu");
    old.timestamp_ms -= 60_000;
    assert_eq!(post_report(api, "eu", b"eu-report-secret-0123", Some(serde_json::to_vec(&old).unwrap())).await, 401);
    // Unsigned garbage is not even parsed; signed garbage is malformed.
    assert_eq!(post(api, "", b"not json".to_vec(), "00").await, 401);
    assert_eq!(post(api, "eu", b"not json".to_vec(), "00").await, 401);
    assert_eq!(post(api, "eu", b"not json".to_vec(), &sign(b"eu-report-secret-0123", b"not json")).await, 400);
    let m = http_body_util::BodyExt::collect(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Full<bytes::Bytes>>()
            .get(format!("http://{api}/metrics").parse().unwrap())
            .await
            .unwrap()
            .into_body(),
    )
    .await
    .unwrap()
    .to_bytes();
    let m = String::from_utf8_lossy(&m);
    for reason in ["bad_signature", "unknown_region", "replayed", "stale", "malformed"] {
        assert!(m.contains(&format!("result=\"{reason}\"")), "no {reason} in metrics");
    }
}

#[tokio::test]
async fn every_region_down_answers_everything() {
    let f = start().await;
    for flag in f.reporting.values() {
        flag.store(false, Ordering::Relaxed);
    }
    assert!(wait(Duration::from_secs(3), || async { served(&f).await.is_empty() }).await);
    let r = udp(f.gslb.dns_addr, &query("api.example.test.", RecordType::A, Some(("10.1.0.0", 16)))).await;
    let mut got = addresses(&r);
    got.sort();
    assert_eq!(got, vec![ip(EU), ip(US)]);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
}

#[tokio::test]
async fn tcp_static_records_and_negative_answers() {
    let f = start().await;
    let dns = f.gslb.dns_addr;
    let r = tcp(dns, &query("fo.example.test.", RecordType::A, None)).await;
    assert_eq!(addresses(&r), vec![ip(US)], "failover order starts with us");
    let r = udp(dns, &query("info.example.test.", RecordType::TXT, None)).await;
    assert!(matches!(&r.answers[0].data, RData::TXT(_)));
    let r = udp(dns, &query("www.example.test.", RecordType::A, None)).await;
    assert!(matches!(&r.answers[0].data, RData::CNAME(_)));
    let r = udp(dns, &query("example.test.", RecordType::SOA, None)).await;
    assert!(matches!(&r.answers[0].data, RData::SOA(_)));
    let r = udp(dns, &query("example.test.", RecordType::NS, None)).await;
    assert!(matches!(&r.answers[0].data, RData::NS(_)));
    let r = udp(dns, &query("nope.example.test.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.metadata.authoritative);
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    let r = udp(dns, &query("api.example.test.", RecordType::MX, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    let r = udp(dns, &query("example.org.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(!r.metadata.authoritative);
}

#[tokio::test]
async fn malformed_and_oversized_queries_do_not_hurt() {
    let f = start().await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(f.gslb.dns_addr).await.unwrap();
    let mut rng = fastrand::Rng::with_seed(42);
    for len in [0usize, 5, 12, 13, 40, 300, 3000] {
        let junk: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        sock.send(&junk).await.unwrap();
    }
    // A header claiming a query, then garbage: FORMERR.
    let mut bad = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    bad.extend_from_slice(&[0xff; 20]);
    sock.send(&bad).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut formerr = false;
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut buf)).await {
            if n >= 4 && buf[0] == 0x12 && buf[1] == 0x34 {
                formerr |= buf[3] & 0x0f == 1;
            }
        }
    }
    assert!(formerr, "a malformed query gets FORMERR");
    // Two questions in one query: FORMERR too.
    let mut two = query("api.example.test.", RecordType::A, None);
    two.add_query(Query::query(Name::from_ascii("fo.example.test.").unwrap(), RecordType::A));
    assert_eq!(udp(f.gslb.dns_addr, &two).await.metadata.response_code, ResponseCode::FormErr);
    // Still serving.
    let r = udp(f.gslb.dns_addr, &query("api.example.test.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
}

#[tokio::test]
async fn weighted_answers_follow_the_weights() {
    let f = start().await;
    let mut eu = 0;
    for _ in 0..400 {
        if addresses(&udp(f.gslb.dns_addr, &query("wt.example.test.", RecordType::A, None)).await) == vec![ip(EU)] {
            eu += 1;
        }
    }
    // Weights 3:1 → 300 expected; 4 standard deviations is about ±35.
    assert!((265..=335).contains(&eu), "eu got {eu} of 400");
}

#[tokio::test]
async fn two_instances_answer_alike() {
    let a = start().await;
    let b = start().await;
    for (net, len) in [("10.1.0.0", 16), ("10.2.0.0", 16)] {
        let x = addresses(&udp(a.gslb.dns_addr, &query("api.example.test.", RecordType::A, Some((net, len)))).await);
        let y = addresses(&udp(b.gslb.dns_addr, &query("api.example.test.", RecordType::A, Some((net, len)))).await);
        assert_eq!(x, y);
    }
    let _ = (&a.us, &b.us);
}
