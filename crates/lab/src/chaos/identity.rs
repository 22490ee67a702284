//! Credentials for drills whose clients authenticate (`load.auth`): a
//! consumer with an API key, written to every region as `meridian ctl`
//! writes it, a JWT provider (HS256, a secret made for the drill), and a
//! route `/auth` that requires one or the other. Clients then alternate
//! between the key and a token, so a region failing over has to honour
//! both in the region that takes its clients.

use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;

use crate::cluster::Cluster;

/// The drill's consumer and the path its clients request.
pub const CONSUMER: &str = "drill-client";
pub const AUTH_PATH: &str = "/auth/hello";

/// Request headers the clients take turns with.
pub type Credentials = Vec<(String, String)>;

/// Set up the consumer, key, provider and route in every region.
pub fn setup(c: &Cluster) -> anyhow::Result<Credentials> {
    let key = meridian_core::apikey::generate_key()?;
    let secret: [u8; 32] = meridian_core::secret::random_bytes()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let claims =
        serde_json::json!({ "iss": "https://drill.meridian.test", "sub": CONSUMER, "exp": now + 3600, "iat": now });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )?;
    let secret_b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    for r in &c.topo.regions {
        let node = format!("{}-n1", r.name);
        let (admin, base) = (c.admin(), c.admin_url(&node, ""));
        let (key, secret_b64) = (key.clone(), secret_b64.clone());
        c.from_vantage(move || async move { write_identity(&admin, &base, &key, &secret_b64).await })?
            .with_context(|| format!("region {}: writing the drill's credentials", r.name))?;
    }
    Ok(vec![("x-api-key".into(), key), ("authorization".into(), format!("Bearer {token}"))])
}

async fn write_identity(
    admin: &crate::cluster::AdminAccess,
    base: &str,
    key: &str,
    secret_b64: &str,
) -> anyhow::Result<()> {
    let t = Duration::from_secs(5);
    let json = |v: serde_json::Value| Some(("application/json", v.to_string()));
    let call = |method: &'static str, path: String, body: Option<(&'static str, String)>| async move {
        let (status, answer) = admin.call(method, &format!("{base}{path}"), body, t).await?;
        if status != 200 {
            bail!("{method} {path}: {status} {}", String::from_utf8_lossy(&answer));
        }
        Ok::<_, anyhow::Error>(answer)
    };
    call("PUT", format!("/consumers/{CONSUMER}"), json(serde_json::json!({ "groups": ["drill"] }))).await?;
    call("POST", format!("/consumers/{CONSUMER}/keys"), json(serde_json::json!({ "id": "drill-key", "key": key })))
        .await?;
    // The provider and the route, on top of the region's document.
    let current = call("GET", "/config".into(), None).await?;
    let mut doc: serde_json::Value = serde_json::from_slice(&current)?;
    let version = doc["version"].as_u64().context("the document's version")?;
    doc["jwt_providers"]["drill"] = serde_json::json!({
        "issuer": "https://drill.meridian.test",
        "algorithms": ["HS256"],
        "keys": [{ "secret": secret_b64 }],
    });
    let routes = doc["routes"].as_array_mut().context("the document's routes")?;
    routes.retain(|r| r["name"] != "authenticated");
    routes.insert(
        0,
        serde_json::json!({
            "name": "authenticated",
            "path_prefix": "/auth",
            "strip_prefix": true,
            "upstream": "app",
            "auth": { "api_key": {}, "jwt": { "providers": ["drill"] } },
        }),
    );
    call("PUT", format!("/config?expected_version={version}"), json(doc)).await?;
    Ok(())
}
