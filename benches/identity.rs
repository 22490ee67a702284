//! What identity costs in-process: a token verification per algorithm
//! (every token new, so every one is verified in full), a verified-token
//! cache hit, and an API-key lookup. Keys come from `openssl genpkey`.
//!
//! `cargo bench --bench identity -- [tokens per algorithm] [json out]`
//! `cargo bench --bench identity -- sign <RS256|ES256> <private.pem> <n> <out>`:
//! write `n` distinct tokens, one per line (for the end-to-end benchmark).

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use meridian_core::config::{parse_document, Format};
use meridian_dataplane::identity::jwt::Provider;
use meridian_dataplane::telemetry::GatewayMetrics;

fn openssl(args: &[&str], dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(format!("{name}.pem"));
    let ok = std::process::Command::new("openssl").arg("genpkey").args(args).arg("-out").arg(&key).status();
    assert!(ok.is_ok_and(|s| s.success()), "openssl genpkey {args:?}");
    let public =
        std::process::Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&key).output().expect("openssl");
    (std::fs::read_to_string(&key).expect("key"), String::from_utf8(public.stdout).expect("PEM"))
}

fn encoding_key(alg: Algorithm, pem: &str) -> EncodingKey {
    match alg {
        Algorithm::RS256 | Algorithm::PS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
        _ => EncodingKey::from_ed_pem(pem.as_bytes()),
    }
    .expect("a private key")
}

fn sign(alg: Algorithm, key: &EncodingKey, i: usize) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({ "iss": "https://bench.test", "aud": "api", "sub": format!("user-{i}"), "exp": now + 86_400, "iat": now });
    let mut h = Header::new(alg);
    h.kid = Some("k".into());
    jsonwebtoken::encode(&h, &claims, key).expect("signed")
}

fn provider(alg: &str, public_pem: &str) -> Arc<Provider> {
    let doc = format!(
        "[jwt_providers.bench]\nissuer = \"https://bench.test\"\naudiences = [\"api\"]\nalgorithms = [\"{alg}\"]\nkeys = [{{ kid = \"k\", pem = \"\"\"\n{public_pem}\"\"\" }}]\n"
    );
    let (doc, values) = parse_document(&doc, Format::Toml).expect("the bench document").into_inner().into_parts();
    let metrics = Arc::new(GatewayMetrics::new("bench", "bench"));
    Provider::new("bench", &doc.jwt_providers["bench"], &values.jwt_providers["bench"], metrics, Default::default())
        .expect("a provider")
}

fn main() {
    meridian_dataplane::tls::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("sign") {
        let alg: Algorithm = args[1].parse().expect("an algorithm");
        let key = encoding_key(alg, &std::fs::read_to_string(&args[2]).expect("the private key"));
        let n: usize = args[3].parse().expect("a count");
        let tokens: Vec<String> = (0..n).map(|i| sign(alg, &key, i)).collect();
        std::fs::write(&args[4], tokens.join("\n") + "\n").expect("written");
        return;
    }
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let out = args.get(1).cloned();
    let dir = tempfile::tempdir().expect("a temp dir");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let mut results = serde_json::Map::new();
    let cases: [(&str, Algorithm, &[&str]); 4] = [
        ("RS256", Algorithm::RS256, &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
        ("PS256", Algorithm::PS256, &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
        ("ES256", Algorithm::ES256, &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
        ("EdDSA", Algorithm::EdDSA, &["-algorithm", "ED25519"]),
    ];
    for (name, alg, gen) in cases {
        let (private, public) = openssl(gen, dir.path(), name);
        let key = encoding_key(alg, &private);
        let tokens: Vec<String> = (0..n).map(|i| sign(alg, &key, i)).collect();
        let p = provider(name, &public);
        // The crate alone: one decode with a key and checks built beforehand.
        let dkey = match alg {
            Algorithm::RS256 | Algorithm::PS256 => jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()),
            Algorithm::ES256 => jsonwebtoken::DecodingKey::from_ec_pem(public.as_bytes()),
            _ => jsonwebtoken::DecodingKey::from_ed_pem(public.as_bytes()),
        }
        .expect("a public key");
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.set_issuer(&["https://bench.test"]);
        validation.set_audience(&["api"]);
        let t = Instant::now();
        for tok in &tokens {
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(tok, &dkey, &validation).expect("valid");
        }
        let bare = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        let (miss, hit) = rt.block_on(async {
            let t = Instant::now();
            for tok in &tokens {
                p.verify(tok).await.expect("a valid token");
            }
            let miss = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            let t = Instant::now();
            for _ in 0..n {
                p.verify(&tokens[0]).await.expect("a valid token");
            }
            (miss, t.elapsed().as_secs_f64() * 1e6 / n as f64)
        });
        println!(
            "{name:<6} jsonwebtoken::decode {bare:>8.2} µs   meridian verify (cache miss) {miss:>8.2} µs   cache hit {hit:>6.2} µs   ({n} tokens)"
        );
        results.insert(
            name.into(),
            serde_json::json!({ "crate_decode_us": bare, "miss_us": miss, "hit_us": hit, "tokens": n }),
        );
    }
    // An API key: the peppered hash and the lookup.
    let pepper = meridian_core::apikey::Pepper::new(b"bench-pepper-0123456789");
    let key = "mk_bench-key-0123456789abcdefghijklmnopqrstu";
    let consumers = vec![meridian_core::config::ConsumerConfig {
        name: "bench".into(),
        groups: vec![],
        metadata: Default::default(),
        api_keys: vec![meridian_core::config::ApiKeyCredential {
            id: "k".into(),
            hash: pepper.hash_hex(key.as_bytes()),
            prefix: "mk_bench".into(),
        }],
        certificates: vec![],
        limits: vec![],
    }];
    let directory = meridian_dataplane::identity::Directory::new(&consumers, Some(Arc::new(pepper)));
    let rounds = n * 100;
    let t = Instant::now();
    for _ in 0..rounds {
        assert!(directory.find_key(std::hint::black_box(key.as_bytes())).is_some());
    }
    let lookup = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    println!("API key lookup (HMAC-SHA256 + map) {lookup:.3} µs");
    results.insert("api_key".into(), serde_json::json!({ "lookup_us": lookup, "rounds": rounds }));
    if let Some(out) = out {
        std::fs::write(&out, serde_json::to_vec_pretty(&results).expect("JSON")).expect("written");
        println!("raw: {out}");
    }
}
