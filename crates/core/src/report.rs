//! Region health reports: what a region's leader tells every global
//! balancer, and how the balancer knows it is genuine and fresh.
//!
//! The body is JSON; `X-Meridian-Signature` carries hex HMAC-SHA256 of the
//! body under the secret of the region `X-Meridian-Region` names, checked
//! before the body is parsed. The body holds a timestamp and a random
//! nonce: a balancer refuses reports outside its replay window and nonces it
//! has already seen inside it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "x-meridian-signature";
/// The region a report speaks for: it names the secret to check the
/// signature with, before the body is parsed at all.
pub const REGION_HEADER: &str = "x-meridian-region";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub region: String,
    /// Unix milliseconds at the sender.
    pub timestamp_ms: u64,
    /// Random, unique per report.
    pub nonce: String,
    /// The member that sent it (the region's leader).
    pub sender: u64,
    /// Members the leader considers healthy.
    pub healthy_nodes: Vec<u64>,
    /// VIP (`address/prefix`) → owner; `None` while unowned.
    pub vips: BTreeMap<String, Option<u64>>,
    pub config_version: u64,
    /// Requests in flight on the sender, a coarse load signal.
    pub load: f64,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()))
}

/// Hex signature of `body`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(body);
    m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Why a report was refused (the label of the refusal metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed report")]
    Malformed,
    #[error("unknown region")]
    UnknownRegion,
    #[error("bad signature")]
    BadSignature,
    #[error("outside the replay window")]
    Stale,
    #[error("replayed nonce")]
    Replayed,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::UnknownRegion => "unknown_region",
            Refusal::BadSignature => "bad_signature",
            Refusal::Stale => "stale",
            Refusal::Replayed => "replayed",
        }
    }
}

/// Checks reports: signature first (nothing unauthenticated is parsed),
/// then freshness and nonces seen (per region). Shared by every connection;
/// only the nonce record takes a lock, for as long as a lookup.
pub struct Verifier {
    secrets: HashMap<String, Vec<u8>>,
    window_ms: u64,
    seen: std::sync::Mutex<HashMap<String, VecDeque<(u64, String)>>>,
}

impl Verifier {
    pub fn new(secrets: HashMap<String, Vec<u8>>, window_ms: u64) -> Self {
        Self { secrets, window_ms, seen: std::sync::Mutex::new(HashMap::new()) }
    }

    /// Verify `body`, said to come from `region` and signed with
    /// `signature`, at local Unix time `now_ms`.
    pub fn verify(
        &self,
        region: &str,
        body: &[u8],
        signature: Option<&str>,
        now_ms: u64,
    ) -> Result<HealthReport, Refusal> {
        let secret = self.secrets.get(region).ok_or(Refusal::UnknownRegion)?;
        let given = signature.and_then(unhex).ok_or(Refusal::BadSignature)?;
        let mut m = mac(secret);
        m.update(body);
        m.verify_slice(&given).map_err(|_| Refusal::BadSignature)?;
        let report: HealthReport = serde_json::from_slice(body).map_err(|_| Refusal::Malformed)?;
        if report.region != region {
            return Err(Refusal::Malformed);
        }
        if now_ms.abs_diff(report.timestamp_ms) > self.window_ms {
            return Err(Refusal::Stale);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let seen = seen.entry(report.region.clone()).or_default();
        while seen.front().is_some_and(|(t, _)| now_ms.saturating_sub(*t) > 2 * self.window_ms) {
            seen.pop_front();
        }
        if seen.iter().any(|(_, n)| *n == report.nonce) {
            return Err(Refusal::Replayed);
        }
        seen.push_back((now_ms, report.nonce.clone()));
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ts: u64, nonce: &str) -> Vec<u8> {
        serde_json::to_vec(&HealthReport {
            region: "eu".into(),
            timestamp_ms: ts,
            nonce: nonce.into(),
            sender: 1,
            healthy_nodes: vec![1, 2],
            vips: BTreeMap::new(),
            config_version: 3,
            load: 0.0,
        })
        .unwrap()
    }

    #[test]
    fn signatures_windows_and_replays() {
        let v = Verifier::new(HashMap::from([("eu".to_string(), b"secret".to_vec())]), 5_000);
        let body = report(100_000, "a");
        assert!(v.verify("eu", &body, Some(&sign(b"secret", &body)), 100_100).is_ok());
        assert_eq!(v.verify("eu", &body, Some(&sign(b"secret", &body)), 100_200), Err(Refusal::Replayed));
        assert_eq!(v.verify("eu", &body, Some(&sign(b"other", &body)), 100_200), Err(Refusal::BadSignature));
        let old = report(10_000, "b");
        assert_eq!(v.verify("eu", &old, Some(&sign(b"secret", &old)), 100_200), Err(Refusal::Stale));
        assert_eq!(v.verify("us", &body, Some(&sign(b"secret", &body)), 100_200), Err(Refusal::UnknownRegion));
        // Garbage is never parsed unless signed; signed garbage is malformed.
        assert_eq!(v.verify("eu", b"{", Some("00"), 1), Err(Refusal::BadSignature));
        assert_eq!(v.verify("eu", b"{", Some(&sign(b"secret", b"{")), 1), Err(Refusal::Malformed));
    }
}
