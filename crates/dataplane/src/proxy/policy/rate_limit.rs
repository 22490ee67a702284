//! The rate-limit policy: count the request against the route's limits
//! (local or the region's budget) by the configured key; answer 429 when a
//! limit is spent, and tell every answer the client's state
//! (`RateLimit-Policy`, `RateLimit`).

use http::HeaderValue;

use super::Flow;
use crate::limit::local::Verdict;
use crate::limit::{key_digest_of, secs, Outcome};
use crate::proxy::context::RequestCtx;
use crate::proxy::error::ProxyError;
use crate::proxy::headers;
use meridian_core::config::RateLimitKey;

/// A route's rate limit: how the key is taken from a request, and the limiter.
pub struct RouteLimit {
    pub key: RateLimitKey,
    pub limiter: crate::limit::RouteLimiter,
    /// `RateLimit-Policy` value, built once.
    pub policy_header: HeaderValue,
    /// Names of the limits (`60s`, ...), as used in the headers.
    pub names: Vec<String>,
    pub config: meridian_core::config::RateLimitConfig,
    /// `meridian_ratelimit_decisions_total` of this route: allowed, limited,
    /// allowed_fallback, limited_fallback, unavailable.
    pub decisions: [prometheus::IntCounter; 5],
    /// Consumers with limits of their own (routes counting by consumer).
    pub overrides: std::collections::HashMap<std::sync::Arc<str>, std::sync::Arc<RouteLimit>>,
    /// Groups with limits, by name: for consumers without their own.
    pub group_overrides: Vec<(std::sync::Arc<str>, std::sync::Arc<RouteLimit>)>,
}

impl RouteLimit {
    /// `RateLimit` for the most constrained limit: the one a client needs to know about.
    fn state(&self, verdicts: &[Verdict]) -> Option<HeaderValue> {
        let (i, v) = verdicts.iter().enumerate().min_by_key(|(_, v)| (v.allowed, v.remaining))?;
        let text = format!("\"{}\";r={};t={}", self.names.get(i)?, v.remaining, secs(v.reset_ms));
        HeaderValue::from_str(&text).ok()
    }
}

pub(super) async fn on_request(route: &RouteLimit, ctx: &mut RequestCtx<'_>) -> Result<Flow, ProxyError> {
    let rl = match (&route.key, &ctx.caller) {
        (RateLimitKey::Consumer | RateLimitKey::Credential, Some(c)) => match route.overrides.get(&c.consumer) {
            Some(own) => own,
            None => route.group_overrides.iter().find(|(g, _)| c.in_group(g)).map_or(route, |(_, l)| &**l),
        },
        _ => route,
    };
    // Each kind of key has its own prefix, so a header value can never name
    // an address's budget. A request without the key header is counted by
    // its client address (not in one bucket shared by every such request).
    // Hashed from its parts: raw header bytes, nothing joined or re-encoded.
    let client: [&[u8]; 2] = [b"ip:", ctx.client.text.as_bytes()];
    let key = match &rl.key {
        RateLimitKey::ClientIp => key_digest_of(&client),
        RateLimitKey::Route => key_digest_of(&[b"route"]),
        RateLimitKey::Header(h) => match ctx.head.headers.get(h) {
            Some(v) => key_digest_of(&[b"h:", v.as_bytes()]),
            None => key_digest_of(&client),
        },
        // A route that counts by consumer has `auth`; without a caller
        // (not reachable) the request is counted by its address.
        RateLimitKey::Consumer => match &ctx.caller {
            Some(c) => key_digest_of(&[b"consumer:", c.consumer.as_bytes()]),
            None => key_digest_of(&client),
        },
        RateLimitKey::Credential => match &ctx.caller {
            Some(c) => {
                // Length-prefixed: an id may hold any character a name may.
                let len = (c.credential.id.len() as u32).to_be_bytes();
                key_digest_of(&[b"credential:", &len, c.credential.id.as_bytes(), c.consumer.as_bytes()])
            }
            None => key_digest_of(&client),
        },
    };
    match rl.limiter.check(&key).await {
        Outcome::Allowed { verdicts, fallback } => {
            rl.decisions[if fallback { 2 } else { 0 }].inc();
            if let Some(state) = rl.state(&verdicts) {
                ctx.response_headers.push((&headers::RATELIMIT_POLICY, rl.policy_header.clone()));
                ctx.response_headers.push((&headers::RATELIMIT, state));
            }
            Ok(Flow::Next)
        }
        Outcome::Limited { verdicts, fallback } => {
            rl.decisions[if fallback { 3 } else { 1 }].inc();
            let retry_after =
                verdicts.iter().filter(|v| !v.allowed).map(|v| secs(v.reset_ms)).max().unwrap_or(1).max(1);
            Err(ProxyError::RateLimited {
                retry_after_secs: retry_after,
                policy: rl.policy_header.clone(),
                state: rl.state(&verdicts),
            })
        }
        Outcome::Unavailable => {
            rl.decisions[4].inc();
            Err(ProxyError::LimiterUnavailable)
        }
    }
}
