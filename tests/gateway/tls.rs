use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    leaves: Vec<CertificateDer<'static>>,
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
    Pki { dir, ca: ca.der().clone(), leaves }
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
