//! JWT authentication against a real JWK Set server started by the test:
//! every algorithm, hostile tokens, key rotation, a JWKS outage at start
//! and later, and the throttle on unknown `kid`s.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::support::*;

const ISS: &str = "https://idp.test";

/// A key pair made by `openssl genpkey`.
struct Pair {
    private: EncodingKey,
    public_pem: String,
}

fn genpkey(args: &[&str]) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let out = std::process::Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .arg("-out")
        .arg(&key)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pem = std::fs::read(&key).unwrap();
    let public = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .expect("openssl runs");
    let private = match args.iter().find(|a| a.contains("RSA") || a.contains("EC") || a.contains("ED")) {
        Some(a) if a.contains("RSA") => EncodingKey::from_rsa_pem(&pem).unwrap(),
        Some(a) if a.contains("EC") => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => EncodingKey::from_ed_pem(&pem).unwrap(),
    };
    Pair { private, public_pem: String::from_utf8(public.stdout).unwrap() }
}

fn rsa() -> Pair {
    genpkey(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
}
fn ec() -> Pair {
    genpkey(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
}
fn ed() -> Pair {
    genpkey(&["-algorithm", "ED25519"])
}

fn jwk(p: &Pair, alg: Algorithm, kid: &str) -> Jwk {
    if alg == Algorithm::EdDSA {
        // An Ed25519 SubjectPublicKeyInfo ends with the 32-byte key.
        let b64body: String = p.public_pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(b64body).unwrap();
        let x = b64(&der[der.len() - 32..]);
        return serde_json::from_value(json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid })).unwrap();
    }
    let mut j = Jwk::from_encoding_key(&p.private, alg).unwrap();
    j.common.key_id = Some(kid.to_string());
    j
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn claims(sub: &str) -> serde_json::Value {
    json!({ "iss": ISS, "aud": "api", "sub": sub, "exp": now() + 300, "iat": now(), "scope": "read write" })
}

fn sign(p: &Pair, alg: Algorithm, kid: Option<&str>, claims: &serde_json::Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&h, claims, &p.private).unwrap()
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// A JWK Set server: serves the set it holds (503 while it holds none) and
/// counts requests.
struct JwksServer {
    addr: SocketAddr,
    set: Arc<Mutex<Option<String>>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: Option<Vec<Jwk>>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Self { addr, set: Arc::new(Mutex::new(None)), hits: Arc::new(AtomicUsize::new(0)) };
        server.serve(keys);
        let (set, hits) = (server.set.clone(), server.hits.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (set, hits) = (set.clone(), hits.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let body = set.lock().unwrap().clone();
                        async move {
                            let mut resp =
                                http::Response::new(Full::new(Bytes::from(body.clone().unwrap_or_default())));
                            if body.is_none() {
                                *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        server
    }

    fn serve(&self, keys: Option<Vec<Jwk>>) {
        *self.set.lock().unwrap() = keys.map(|k| serde_json::to_string(&JwkSet { keys: k }).unwrap());
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A gateway whose route `/` needs a token of provider `idp` (JWKS at
/// `jwks`) and, when `hs_secret` is set, of provider `hs` too.
async fn jwt_gateway(
    jwks: SocketAddr,
    provider_extra: &str,
    route_extra: &str,
) -> (meridian_lab::backend::Backend, meridian_region::gateway::RunningGateway) {
    let b = backend("b").await;
    let doc = format!(
        r#"
[upstreams.u]
targets = [{{ address = "{}" }}]

[jwt_providers.idp]
issuer = "{ISS}"
audiences = ["api"]
algorithms = ["RS256", "PS256", "ES256", "EdDSA"]
jwks_uri = "http://{jwks}/.well-known/jwks.json"
{provider_extra}

[[routes]]
name = "api"
upstream = "u"
{route_extra}
[routes.auth.jwt]
providers = ["idp"]
claims_to_headers = {{ sub = "x-user" }}
"#,
        b.addr
    );
    (b, gateway(&doc).await)
}

async fn call(addr: SocketAddr, token: &str) -> Reply {
    get_with(addr, "/x", &[("authorization", &format!("Bearer {token}"))]).await
}

#[tokio::test]
async fn every_algorithm_verifies_and_claims_reach_the_upstream() {
    let (r, e, d) = (rsa(), ec(), ed());
    let keys = vec![jwk(&r, Algorithm::RS256, "rsa"), jwk(&e, Algorithm::ES256, "ec"), jwk(&d, Algorithm::EdDSA, "ed")];
    let jwks = JwksServer::start(Some(keys)).await;
    let (_b, gw) = jwt_gateway(jwks.addr, "", "").await;
    let addr = gw.http_addr();
    for (pair, alg, kid) in [
        (&r, Algorithm::RS256, "rsa"),
        (&r, Algorithm::PS256, "rsa"),
        (&e, Algorithm::ES256, "ec"),
        (&d, Algorithm::EdDSA, "ed"),
    ] {
        let token = sign(pair, alg, Some(kid), &claims("alice"));
        let reply = call(addr, &token).await;
        assert_eq!(reply.status, 200, "{alg:?}: {}", reply.text());
        let echo = reply.json();
        assert_eq!(echo["headers"]["x-consumer-name"], "alice");
        assert_eq!(echo["headers"]["x-user"], "alice");
        assert_eq!(echo["headers"]["x-credential-id"], "jwt:idp");
        // The same token again: from the cache.
        assert_eq!(call(addr, &token).await.status, 200);
    }
    let m = metrics(gw.admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_jwt_cache_total", &[("provider", "idp"), ("result", "hit")]), 4.0);
    assert_eq!(jwks.hits(), 1, "the set was fetched once, before serving");
    gw.shutdown().await;
}

#[tokio::test]
async fn hmac_tokens_verify_with_an_inline_secret_and_a_token_picks_its_provider_by_issuer() {
    let secret = [7u8; 32];
    let jwks = JwksServer::start(Some(vec![])).await;
    let b = backend("b").await;
    let doc = format!(
        r#"
[upstreams.u]
targets = [{{ address = "{}" }}]
[jwt_providers.hs]
issuer = "https://hs.test"
algorithms = ["HS256"]
keys = [{{ secret = "{}" }}]
[jwt_providers.other]
issuer = "https://other.test"
algorithms = ["ES256"]
jwks_uri = "http://{}/jwks"
[[routes]]
name = "api"
upstream = "u"
auth = {{ jwt = {{ providers = ["other", "hs"] }} }}
"#,
        b.addr,
        base64::engine::general_purpose::STANDARD.encode(secret),
        jwks.addr
    );
    let gw = gateway(&doc).await;
    let c = json!({ "iss": "https://hs.test", "sub": "svc", "exp": now() + 60 });
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &c, &EncodingKey::from_secret(&secret)).unwrap();
    let r = call(gw.http_addr(), &token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-consumer-name"], "svc");
    let wrong =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &c, &EncodingKey::from_secret(&[8u8; 32])).unwrap();
    assert_eq!(call(gw.http_addr(), &wrong).await.status, 401);
    gw.shutdown().await;
}

#[tokio::test]
async fn hostile_tokens_are_refused_with_401() {
    let r = rsa();
    let e = ec();
    let jwks = JwksServer::start(Some(vec![jwk(&r, Algorithm::RS256, "rsa"), jwk(&e, Algorithm::ES256, "ec")])).await;
    let (b, gw) = jwt_gateway(jwks.addr, "max_lifetime = \"1h\"", "").await;
    let addr = gw.http_addr();
    let good = sign(&r, Algorithm::RS256, Some("rsa"), &claims("alice"));
    assert_eq!(call(addr, &good).await.status, 200);
    let (h, p, _) = {
        let mut parts = good.split('.');
        (parts.next().unwrap().to_string(), parts.next().unwrap().to_string(), parts.next().unwrap().to_string())
    };
    let payload = b64(claims("alice").to_string().as_bytes());
    let header = |v: serde_json::Value| b64(v.to_string().as_bytes());
    // The public key as an HMAC secret, in PEM and JWK (`n`) forms.
    let pem_secret = EncodingKey::from_secret(r.public_pem.as_bytes());
    let jwk_n = match &jwk(&r, Algorithm::RS256, "rsa").algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::RSA(p) => p.n.clone(),
        _ => unreachable!(),
    };
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("rsa".into());
    let confused_pem = jsonwebtoken::encode(&hs, &claims("alice"), &pem_secret).unwrap();
    let confused_jwk =
        jsonwebtoken::encode(&hs, &claims("alice"), &EncodingKey::from_secret(jwk_n.as_bytes())).unwrap();
    let mut crit = Header::new(Algorithm::RS256);
    crit.kid = Some("rsa".into());
    crit.crit = Some(vec!["x-unknown".into()]);
    crit.extras.insert("x-unknown".into(), "1".into());
    let critical = jsonwebtoken::encode(&crit, &claims("alice"), &r.private).unwrap();
    let expired = sign(
        &r,
        Algorithm::RS256,
        Some("rsa"),
        &json!({ "iss": ISS, "aud": "api", "sub": "a", "exp": now() - 120, "iat": now() - 600 }),
    );
    let no_exp = sign(&r, Algorithm::RS256, Some("rsa"), &json!({ "iss": ISS, "aud": "api", "sub": "a" }));
    let wrong_iss = sign(
        &r,
        Algorithm::RS256,
        Some("rsa"),
        &json!({ "iss": "https://evil.test", "aud": "api", "sub": "a", "exp": now() + 60 }),
    );
    let wrong_aud = sign(
        &r,
        Algorithm::RS256,
        Some("rsa"),
        &json!({ "iss": ISS, "aud": ["web", "other"], "sub": "a", "exp": now() + 60 }),
    );
    let too_long = sign(
        &r,
        Algorithm::RS256,
        Some("rsa"),
        &json!({ "iss": ISS, "aud": "api", "sub": "a", "exp": now() + 7200, "iat": now() }),
    );
    let zero_sig = format!("{}.{payload}.{}", header(json!({ "alg": "ES256", "kid": "ec" })), b64(&[0u8; 64]));
    let hostile: Vec<(&str, String)> = vec![
        ("alg none", format!("{}.{payload}.", header(json!({ "alg": "none" })))),
        ("alg NONE", format!("{}.{payload}.", header(json!({ "alg": "NONE", "kid": "rsa" })))),
        ("HS256 with the PEM public key", confused_pem),
        ("HS256 with the JWK public key", confused_jwk),
        ("empty signature", format!("{h}.{p}.")),
        ("two segments", format!("{h}.{p}")),
        ("wrong iss", wrong_iss),
        ("wrong aud", wrong_aud),
        ("expired beyond leeway", expired),
        ("missing exp", no_exp),
        ("longer than max_lifetime", too_long),
        ("kid path", sign(&r, Algorithm::RS256, Some("../../../etc/passwd"), &claims("a"))),
        ("kid 10 KB", sign(&r, Algorithm::RS256, Some(&"k".repeat(10_000)), &claims("a"))),
        ("unknown crit", critical),
        ("ES256 r = s = 0", zero_sig),
        ("garbage", "a.b.c".into()),
        (
            "payload swapped",
            format!(
                "{h}.{}.{}",
                b64(json!({"iss": ISS, "aud": "api", "sub": "root", "exp": now() + 60}).to_string().as_bytes()),
                good.rsplit('.').next().unwrap()
            ),
        ),
    ];
    for (what, token) in &hostile {
        let reply = call(addr, token).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.text());
        let challenge = reply.headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer realm=\"meridian\""), "{what}: {challenge}");
        assert!(!reply.text().contains(token.as_str()) || token.len() < 4, "{what}: token echoed");
    }
    let r = get(addr, "/x").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"meridian\"");
    assert_eq!(b.control.requests(), 1, "only the good token reached the upstream");
    // The unknown kids were refetched at most once per interval (30 s default).
    assert!(jwks.hits() <= 2, "{} fetches", jwks.hits());
    gw.shutdown().await;
}

#[tokio::test]
async fn a_new_key_is_fetched_once_and_unknown_kids_cannot_force_more_fetches() {
    let (a, bk) = (ec(), ec());
    let jwks = JwksServer::start(Some(vec![jwk(&a, Algorithm::ES256, "a")])).await;
    let (_b, gw) = jwt_gateway(jwks.addr, "min_refetch_interval = \"60s\"", "").await;
    let addr = gw.http_addr();
    assert_eq!(jwks.hits(), 1);
    // Rotation: the set now has a second key, which a token uses.
    jwks.serve(Some(vec![jwk(&a, Algorithm::ES256, "a"), jwk(&bk, Algorithm::ES256, "b")]));
    let r = call(addr, &sign(&bk, Algorithm::ES256, Some("b"), &claims("bob"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(jwks.hits(), 2, "one refetch for the new kid");
    // 1,000 tokens with random unknown kids, 50 at a time: no more fetches.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000u32 {
        let token = sign(&a, Algorithm::ES256, Some(&format!("rand-{i}-{}", fastrand::u64(..))), &claims("x"));
        tasks.spawn(async move { call(addr, &token).await.status.as_u16() });
        if tasks.len() >= 50 {
            assert_eq!(tasks.join_next().await.unwrap().unwrap(), 401);
        }
    }
    while let Some(s) = tasks.join_next().await {
        assert_eq!(s.unwrap(), 401);
    }
    assert_eq!(jwks.hits(), 2, "unknown kids forced fetches");
    let m = metrics(gw.admin_addr).await;
    assert!(metric_value(&m, "meridian_jwks_fetches_total", &[("provider", "idp"), ("result", "throttled")]) >= 1.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_jwks_outage_at_start_answers_503_until_the_keys_arrive_then_old_keys_outlive_an_outage() {
    let k = ec();
    let jwks = JwksServer::start(None).await;
    let (_b, gw) = jwt_gateway(jwks.addr, "min_refetch_interval = \"1s\"\ncache_duration = \"1s\"", "").await;
    let addr = gw.http_addr();
    let token = sign(&k, Algorithm::ES256, Some("k"), &claims("alice"));
    let r = call(addr, &token).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "auth_unavailable");
    jwks.serve(Some(vec![jwk(&k, Algorithm::ES256, "k")]));
    assert!(eventually(Duration::from_secs(5), || async { call(addr, &token).await.status == 200 }).await);
    // The set goes away: the last good keys keep working, also for new tokens.
    jwks.serve(None);
    let before = jwks.hits();
    assert!(eventually(Duration::from_secs(5), || async { jwks.hits() > before + 1 }).await);
    let fresh = sign(&k, Algorithm::ES256, Some("k"), &claims("carol"));
    assert_eq!(call(addr, &fresh).await.status, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_key_removed_from_the_set_stops_admitting_its_cached_tokens() {
    let (a, bk) = (ec(), ec());
    let both = vec![jwk(&a, Algorithm::ES256, "a"), jwk(&bk, Algorithm::ES256, "b")];
    let jwks = JwksServer::start(Some(both)).await;
    let (_b, gw) = jwt_gateway(jwks.addr, "min_refetch_interval = \"1s\"\ncache_duration = \"1s\"", "").await;
    let addr = gw.http_addr();
    let token = sign(&bk, Algorithm::ES256, Some("b"), &claims("bob"));
    assert_eq!(call(addr, &token).await.status, 200);
    assert_eq!(call(addr, &token).await.status, 200);
    jwks.serve(Some(vec![jwk(&a, Algorithm::ES256, "a")]));
    assert!(eventually(Duration::from_secs(5), || async { call(addr, &token).await.status == 401 }).await);
    gw.shutdown().await;
}

/// A JWK Set served over TLS by a certificate of a CA of the test's own.
async fn https_jwks(set: String) -> (SocketAddr, tempfile::TempDir) {
    meridian_dataplane::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, set) = (acceptor.clone(), set.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let svc = service_fn(move |_req| {
                    let body = set.clone();
                    async move { Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    });
    (addr, dir)
}

#[tokio::test]
async fn a_jwk_set_over_https_is_verified_against_the_configured_ca() {
    let k = ec();
    let set = serde_json::to_string(&JwkSet { keys: vec![jwk(&k, Algorithm::ES256, "k")] }).unwrap();
    let (addr, dir) = https_jwks(set).await;
    let b = backend("b").await;
    let doc = |ca: &str| {
        format!(
            "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[jwt_providers.idp]\nissuer = \"{ISS}\"\n\
             algorithms = [\"ES256\"]\njwks_uri = \"https://{addr}/jwks\"\n{ca}\n[[routes]]\nname = \"api\"\n\
             upstream = \"u\"\nauth = {{ jwt = {{ providers = [\"idp\"] }} }}\n",
            b.addr
        )
    };
    let token = sign(&k, Algorithm::ES256, Some("k"), &claims("alice"));
    // The test CA named: fetched and used.
    let gw = gateway(&doc(&format!("jwks_ca_file = \"{}\"", dir.path().join("ca.pem").display()))).await;
    assert_eq!(call(gw.http_addr(), &token).await.status, 200);
    gw.shutdown().await;
    // The system's roots do not know it: no key, 503, never a blind accept.
    let gw = gateway(&doc("")).await;
    assert_eq!(call(gw.http_addr(), &token).await.status, 503);
    let m = metrics(gw.admin_addr).await;
    assert!(metric_value(&m, "meridian_jwks_fetches_total", &[("provider", "idp"), ("result", "failed")]) >= 1.0);
    gw.shutdown().await;
}
