use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
    leaves: Vec<CertificateDer<'static>>,
}

impl Pki {
    /// A new certificate for `name`, written over `leafN.pem` / `leafN.key`
    /// (each file replaced whole, as a deployment tool does).
    fn reissue(&self, i: usize, name: &str) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .unwrap();
        let write = |file: String, text: String| {
            let tmp = self.dir.path().join(format!("{file}.tmp"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, self.dir.path().join(file)).unwrap();
        };
        write(format!("leaf{i}.key"), key.serialize_pem());
        write(format!("leaf{i}.pem"), cert.pem());
        cert.der().clone()
    }

    fn ca_file(&self) -> std::path::PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, self.ca_cert.pem()).unwrap();
        path
    }
}

/// A CA and one leaf per name, written as PEM files `leafN.pem` / `leafN.key`.
fn pki(names: &[&str]) -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut leaves = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.path().join(format!("leaf{i}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.path().join(format!("leaf{i}.key")), key.serialize_pem()).unwrap();
        leaves.push(cert.der().clone());
    }
    Pki { dir, ca: ca.der().clone(), ca_cert: ca, ca_key, leaves }
}

fn client_config(ca: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    meridian_dataplane::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut c = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

async fn tls_gateway(p: &Pki) -> (meridian_lab::backend::Backend, meridian_region::gateway::RunningGateway) {
    let b = backend("b").await;
    let d = p.dir.path().display();
    let gw = gateway_with(
        &format!(
            "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"all\"\nupstream = \"u\"",
            b.addr
        ),
        &format!(
            r#"
[[listeners]]
name = "https"
address = "127.0.0.1:0"
[[listeners.tls.certificates]]
cert = "{d}/leaf0.pem"
key = "{d}/leaf0.key"
server_names = ["a.test"]
[[listeners.tls.certificates]]
cert = "{d}/leaf1.pem"
key = "{d}/leaf1.key"
server_names = ["*.b.test"]
"#
        ),
    )
    .await;
    (b, gw)
}

#[tokio::test]
async fn sni_picks_the_certificate() {
    let p = pki(&["a.test", "*.b.test"]);
    let (_b, gw) = tls_gateway(&p).await;
    let addr = gw.addr("https").unwrap();
    for (sni, expect) in [("a.test", 0), ("x.b.test", 1)] {
        let connector = tokio_rustls::TlsConnector::from(client_config(&p.ca, &[b"http/1.1"]));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = connector
            .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
            .await
            .unwrap_or_else(|e| panic!("handshake for {sni}: {e}"));
        let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        assert_eq!(peer, p.leaves[expect], "certificate for {sni}");
        tls.write_all(format!("GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("\"x-forwarded-proto\":\"https\""), "{text}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn http2_over_tls_by_alpn() {
    let p = pki(&["a.test", "*.b.test"]);
    let (_b, gw) = tls_gateway(&p).await;
    let addr = gw.addr("https").unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config(&p.ca, &[b"h2", b"http/1.1"]));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector.connect(ServerName::try_from("a.test").unwrap(), tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    for i in 0..5 {
        let req = http::Request::get(format!("https://a.test/h2/{i}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["path"], format!("/h2/{i}"));
        assert_eq!(v["headers"]["via"], "2 meridian");
        assert_eq!(v["headers"]["host"], "a.test");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_certificate_files_are_refused_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("bad.key"), "not a key").unwrap();
    let text = r#"
[node]
name = "n"
[[listeners]]
name = "https"
address = "127.0.0.1:0"
[[listeners.tls.certificates]]
cert = "bad.pem"
key = "bad.key"
"#;
    let path = dir.path().join("node.toml");
    std::fs::write(&path, text).unwrap();
    let errors = meridian_region::gateway::load_node_file(&path).unwrap_err();
    let line = errors.to_string();
    assert!(line.starts_with("listeners[0].tls.certificates[0]: "), "{line}");
    assert!(line.contains("bad.pem"), "{line}");
}

/// The certificate a new connection to `addr` gets for `sni`.
async fn served_certificate(p: &Pki, addr: std::net::SocketAddr, sni: &str) -> Option<CertificateDer<'static>> {
    let connector = tokio_rustls::TlsConnector::from(client_config(&p.ca, &[b"http/1.1"]));
    let tcp = TcpStream::connect(addr).await.ok()?;
    let tls = connector.connect(ServerName::try_from(sni.to_string()).ok()?, tcp).await.ok()?;
    Some(tls.get_ref().1.peer_certificates()?[0].clone())
}

/// One keep-alive request on an open TLS connection.
async fn request_on(tls: &mut tokio_rustls::client::TlsStream<TcpStream>) -> String {
    tls.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(2), tls.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

async fn reloading_gateway(
    p: &Pki,
    check: &str,
) -> (meridian_lab::backend::Backend, meridian_region::gateway::RunningGateway) {
    let b = backend("b").await;
    let d = p.dir.path().display();
    let gw = gateway_with(
        &format!(
            "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"all\"\nupstream = \"u\"",
            b.addr
        ),
        &format!(
            r#"
[limits]
certificate_check_interval = "{check}"
[[listeners]]
name = "https"
address = "127.0.0.1:0"
[[listeners.tls.certificates]]
cert = "{d}/leaf0.pem"
key = "{d}/leaf0.key"
"#
        ),
    )
    .await;
    (b, gw)
}

#[tokio::test]
async fn changed_certificate_files_are_reloaded_and_open_connections_stay() {
    let p = pki(&["a.test"]);
    let (_b, gw) = reloading_gateway(&p, "100ms").await;
    let addr = gw.addr("https").unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config(&p.ca, &[b"http/1.1"]));
    let mut open = connector
        .connect(ServerName::try_from("a.test").unwrap(), TcpStream::connect(addr).await.unwrap())
        .await
        .unwrap();
    assert!(request_on(&mut open).await.starts_with("HTTP/1.1 200"));
    assert_eq!(served_certificate(&p, addr, "a.test").await, Some(p.leaves[0].clone()));

    let renewed = p.reissue(0, "a.test");
    assert!(
        eventually(std::time::Duration::from_secs(3), || async {
            served_certificate(&p, addr, "a.test").await == Some(renewed.clone())
        })
        .await,
        "new connections never got the renewed certificate"
    );
    // The connection opened before the reload still serves.
    assert!(request_on(&mut open).await.starts_with("HTTP/1.1 200"));

    // A broken file is reported; the certificate in use stays.
    std::fs::write(p.dir.path().join("leaf0.pem"), "not a certificate").unwrap();
    let m = gw.admin_addr;
    assert!(
        eventually(std::time::Duration::from_secs(3), || async {
            metric_value(&metrics(m).await, "meridian_tls_certificate_reloads_total", &[("result", "failed")]) >= 1.0
        })
        .await
    );
    assert_eq!(served_certificate(&p, addr, "a.test").await, Some(renewed));
    let text = metrics(m).await;
    assert!(
        metric_value(&text, "meridian_tls_certificate_reloads_total", &[("listener", "https"), ("result", "ok")])
            >= 1.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn without_watching_certificates_are_reloaded_on_request() {
    let p = pki(&["a.test"]);
    let (_b, gw) = reloading_gateway(&p, "0s").await;
    let addr = gw.addr("https").unwrap();
    let renewed = p.reissue(0, "a.test");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(served_certificate(&p, addr, "a.test").await, Some(p.leaves[0].clone()), "reloaded unasked");
    // What SIGHUP does.
    gw.reload_certificates();
    assert_eq!(served_certificate(&p, addr, "a.test").await, Some(renewed));
    gw.shutdown().await;
}

#[tokio::test]
async fn the_admin_api_serves_https_and_ctl_verifies_it() {
    let p = pki(&["127.0.0.1"]);
    let d = p.dir.path().display();
    let gw =
        gateway_with("", &format!("[[admin.tls.certificates]]\ncert = \"{d}/leaf0.pem\"\nkey = \"{d}/leaf0.key\"\n"))
            .await;
    let ca = p.ca_file();
    let client = meridian_core::client::admin_client(Some(&ca)).unwrap();
    let url = format!("https://127.0.0.1:{}/healthz", gw.admin_addr.port());
    let resp = client.request(http::Request::get(&url).body(Default::default()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), 200);
    // Plain HTTP gets no answer; a client that does not trust the CA gets no connection.
    assert_eq!(raw(gw.admin_addr, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n").await.find("200"), None);
    let stranger = meridian_core::client::admin_client(None).unwrap();
    assert!(stranger.request(http::Request::get(&url).body(Default::default()).unwrap()).await.is_err());

    let admin = format!("https://127.0.0.1:{}", gw.admin_addr.port());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["ctl", "--admin", &admin, "--cacert", ca.to_str().unwrap(), "--token", TOKEN, "get", "config"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    gw.shutdown().await;
}

#[tokio::test]
async fn sighup_reloads_the_certificates_of_a_running_gateway() {
    let p = pki(&["a.test"]);
    let d = p.dir.path().display();
    let (port, admin_port) = (closed_port().port(), closed_port().port());
    let path = p.dir.path().join("node.toml");
    std::fs::write(
        &path,
        format!(
            "[node]\nname = \"n\"\n[limits]\ncertificate_check_interval = \"0s\"\n[[listeners]]\nname = \"https\"\naddress = \"127.0.0.1:{port}\"\n[[listeners.tls.certificates]]\ncert = \"{d}/leaf0.pem\"\nkey = \"{d}/leaf0.key\"\n[admin]\naddress = \"127.0.0.1:{admin_port}\"\n[gateway]\n"
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["gateway", "--config"])
        .arg(&path)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        eventually(std::time::Duration::from_secs(10), || async {
            served_certificate(&p, addr, "a.test").await == Some(p.leaves[0].clone())
        })
        .await
    );
    let renewed = p.reissue(0, "a.test");
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            served_certificate(&p, addr, "a.test").await == Some(renewed.clone())
        })
        .await,
        "SIGHUP did not reload the certificate"
    );
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(15), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
}
