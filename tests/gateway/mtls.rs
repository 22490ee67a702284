//! Mutual TLS: client certificates asked for at the handshake (per listener
//! and per SNI name), verified against the configured CA and CRL, mapped to
//! consumers by SAN or exact subject DN; requests without one get 403 over
//! HTTP/1.1 and 421 over HTTP/2.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    Ca { cert: p.self_signed(&key).unwrap(), key }
}

/// A client certificate: subject `CN=<cn>, O=<org>`, optional URI SAN, serial.
fn client_cert(
    issuer: &Ca,
    cn: &str,
    org: &str,
    uri: Option<&str>,
    serial: u64,
) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name.push(DnType::OrganizationName, org);
    if let Some(u) = uri {
        p.subject_alt_names.push(SanType::URI(u.try_into().unwrap()));
    }
    p.serial_number = Some(rcgen::SerialNumber::from(serial));
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer.cert, &issuer.key).unwrap();
    (cert.der().clone(), PrivateKeyDer::try_from(key.serialize_der()).unwrap())
}

struct Setup {
    dir: tempfile::TempDir,
    server_ca: Ca,
    client_ca: Ca,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server CA");
    let client_ca = ca("client CA");
    for (i, name) in ["api.test", "strict.test"].iter().enumerate() {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &server_ca.cert, &server_ca.key)
            .unwrap();
        std::fs::write(dir.path().join(format!("s{i}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.path().join(format!("s{i}.key")), key.serialize_pem()).unwrap();
    }
    std::fs::write(dir.path().join("client-ca.pem"), client_ca.cert.pem()).unwrap();
    Setup { dir, server_ca, client_ca }
}

fn tls_client(
    s: &Setup,
    cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    alpn: &[&[u8]],
) -> tokio_rustls::TlsConnector {
    meridian_dataplane::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(s.server_ca.cert.der().clone()).unwrap();
    let b = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut c = match cert {
        Some((c, k)) => b.with_client_auth_cert(vec![c], k).unwrap(),
        None => b.with_no_client_auth(),
    };
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(c))
}

async fn mtls_gateway(
    s: &Setup,
    crl: Option<&str>,
) -> (meridian_lab::backend::Backend, meridian_region::gateway::RunningGateway) {
    let b = backend("b").await;
    let d = s.dir.path().display();
    let crls = crl.map(|c| format!("crls = [\"{c}\"]")).unwrap_or_default();
    let doc = format!(
        r#"
[upstreams.u]
targets = [{{ address = "{}" }}]
[[consumers]]
name = "alice"
certificates = [{{ id = "alice-cert", san = "spiffe://example.test/alice" }}]
[[consumers]]
name = "dave"
certificates = [{{ id = "dave-cert", subject = "CN=dave, O=Example" }}]
[[routes]]
name = "secure"
upstream = "u"
auth = {{ mtls = {{}} }}
"#,
        b.addr
    );
    let node = format!(
        r#"
[limits]
certificate_check_interval = "100ms"

[[listeners]]
name = "https"
address = "127.0.0.1:0"
[listeners.tls.client_auth]
ca = "{d}/client-ca.pem"
{crls}
[[listeners.tls.certificates]]
cert = "{d}/s0.pem"
key = "{d}/s0.key"
server_names = ["api.test"]
[[listeners.tls.certificates]]
cert = "{d}/s1.pem"
key = "{d}/s1.key"
server_names = ["strict.test"]
client_auth = {{ ca = "{d}/client-ca.pem", required = true }}
"#
    );
    (b, gateway_with(&doc, &node).await)
}

/// One HTTP/1.1 GET over TLS with SNI `host`; the status, or `None` when
/// the handshake failed.
async fn get_tls(
    gw: &meridian_region::gateway::RunningGateway,
    connector: &tokio_rustls::TlsConnector,
    host: &str,
    extra: &str,
) -> Option<(u16, String)> {
    let addr = gw.addr("https").unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = connector.connect(ServerName::try_from(host.to_string()).unwrap(), tcp).await.ok()?;
    let req = format!("GET /x HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
    // TLS 1.3: a refused client certificate shows on the first read.
    tls.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text))
}

#[tokio::test]
async fn certificates_name_consumers_by_san_or_exact_subject() {
    let s = setup();
    let (_b, gw) = mtls_gateway(&s, None).await;
    let alice = client_cert(&s.client_ca, "alice", "Example", Some("spiffe://example.test/alice"), 1);
    let (status, text) =
        get_tls(&gw, &tls_client(&s, Some(alice), &[b"http/1.1"]), "api.test", "X-Forwarded-Client-Cert: By=spoof\r\n")
            .await
            .expect("handshake");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"x-consumer-name\":\"alice\""), "{text}");
    assert!(text.contains("\"x-credential-id\":\"alice-cert\""), "{text}");
    assert!(!text.contains("spoof"), "a client-sent certificate header reached the upstream: {text}");

    let dave = client_cert(&s.client_ca, "dave", "Example", None, 2);
    let (status, text) = get_tls(&gw, &tls_client(&s, Some(dave), &[b"http/1.1"]), "api.test", "").await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"x-consumer-name\":\"dave\""));

    // CN "dave" in another organisation is not dave: the whole DN must match.
    let not_dave = client_cert(&s.client_ca, "dave", "Elsewhere", None, 3);
    let (status, _) = get_tls(&gw, &tls_client(&s, Some(not_dave), &[b"http/1.1"]), "api.test", "").await.unwrap();
    assert_eq!(status, 403);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_the_handshake_and_none_gets_403_or_421() {
    let s = setup();
    let (b, gw) = mtls_gateway(&s, None).await;
    let stranger = client_cert(&ca("other CA"), "alice", "Example", Some("spiffe://example.test/alice"), 1);
    assert!(get_tls(&gw, &tls_client(&s, Some(stranger), &[b"http/1.1"]), "api.test", "").await.is_none());

    let (status, text) = get_tls(&gw, &tls_client(&s, None, &[b"http/1.1"]), "api.test", "").await.unwrap();
    assert_eq!(status, 403, "{text}");

    // HTTP/2 without a certificate: 421, the client may try a new connection.
    let addr = gw.addr("https").unwrap();
    let tls = tls_client(&s, None, &[b"h2"])
        .connect(ServerName::try_from("api.test").unwrap(), TcpStream::connect(addr).await.unwrap())
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://api.test/x").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 421);
    assert_eq!(b.control.requests(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_name_that_requires_a_certificate_refuses_the_handshake_without_one() {
    let s = setup();
    let (_b, gw) = mtls_gateway(&s, None).await;
    assert!(get_tls(&gw, &tls_client(&s, None, &[b"http/1.1"]), "strict.test", "").await.is_none());
    let alice = client_cert(&s.client_ca, "alice", "Example", Some("spiffe://example.test/alice"), 1);
    let (status, _) = get_tls(&gw, &tls_client(&s, Some(alice), &[b"http/1.1"]), "strict.test", "").await.unwrap();
    assert_eq!(status, 200);
    gw.shutdown().await;
}

fn crl(s: &Setup, revoked: &[u64]) -> String {
    rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2025, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: rcgen::SerialNumber::from(revoked.len() as u64 + 1),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|serial| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(*serial),
                revocation_time: rcgen::date_time_ymd(2025, 6, 1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&s.client_ca.cert, &s.client_ca.key)
    .unwrap()
    .pem()
    .unwrap()
}

#[tokio::test]
async fn a_new_crl_takes_effect_without_a_restart() {
    let s = setup();
    let path = s.dir.path().join("client.crl");
    std::fs::write(&path, crl(&s, &[])).unwrap();
    let (_b, gw) = mtls_gateway(&s, Some(path.to_str().unwrap())).await;
    let cert = client_cert(&s.client_ca, "alice", "Example", Some("spiffe://example.test/alice"), 9);
    let connector = tls_client(&s, Some(cert), &[b"http/1.1"]);
    assert_eq!(get_tls(&gw, &connector, "api.test", "").await.unwrap().0, 200);
    // Written whole, as a deployment tool does.
    let tmp = s.dir.path().join("client.crl.tmp");
    std::fs::write(&tmp, crl(&s, &[9])).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            get_tls(&gw, &connector, "api.test", "").await.is_none()
        })
        .await,
        "the revoked certificate is still accepted"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_revoked_certificate_is_refused() {
    let s = setup();
    let crl = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2025, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from(7u64),
            revocation_time: rcgen::date_time_ymd(2025, 6, 1),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&s.client_ca.cert, &s.client_ca.key)
    .unwrap();
    let path = s.dir.path().join("client.crl");
    std::fs::write(&path, crl.pem().unwrap()).unwrap();
    let (_b, gw) = mtls_gateway(&s, Some(path.to_str().unwrap())).await;
    let revoked = client_cert(&s.client_ca, "alice", "Example", Some("spiffe://example.test/alice"), 7);
    assert!(get_tls(&gw, &tls_client(&s, Some(revoked), &[b"http/1.1"]), "api.test", "").await.is_none());
    let fine = client_cert(&s.client_ca, "alice", "Example", Some("spiffe://example.test/alice"), 8);
    assert_eq!(get_tls(&gw, &tls_client(&s, Some(fine), &[b"http/1.1"]), "api.test", "").await.unwrap().0, 200);
    gw.shutdown().await;
}
