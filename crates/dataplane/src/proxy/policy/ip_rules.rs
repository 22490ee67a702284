//! The IP-rules policy: a route serves only the client addresses it allows
//! (deny first). The address is the request's client (from the listener's
//! trusted proxies) or the socket peer, as configured; IPv4-mapped IPv6
//! addresses are compared as IPv4.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::Flow;
use crate::proxy::context::RequestCtx;
use crate::proxy::error::ProxyError;
use meridian_core::config::IpSource;

/// Networks allowed and denied, and which address they judge.
pub struct IpMatcher {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    pub source: IpSource,
}

impl IpMatcher {
    pub fn of(cfg: &meridian_core::config::IpRulesConfig) -> Self {
        Self { allow: cfg.allow.clone(), deny: cfg.deny.clone(), source: cfg.source }
    }

    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip))
    }
}

/// A route's IP rules.
pub struct IpRules {
    pub scope: Arc<str>,
    pub rules: IpMatcher,
    pub metrics: Arc<crate::telemetry::GatewayMetrics>,
}

pub(super) fn on_request(r: &IpRules, ctx: &mut RequestCtx<'_>) -> Result<Flow, ProxyError> {
    let ip = match r.rules.source {
        IpSource::Client => ctx.client.ip,
        IpSource::Peer => ctx.conn.peer.ip(),
    };
    if r.rules.admits(ip) {
        r.metrics.ip_decisions.with_label_values(&[&r.scope, "allowed"]).inc();
        return Ok(Flow::Next);
    }
    r.metrics.ip_decisions.with_label_values(&[&r.scope, "denied"]).inc();
    tracing::debug!(route = %r.scope, client = %ip.to_canonical(), "address refused by the route's IP rules");
    Err(ProxyError::Forbidden("this address may not call this route"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_wins_and_mapped_addresses_match_their_ipv4_network() {
        let r = IpMatcher {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            deny: vec!["10.9.0.0/16".parse().unwrap()],
            source: IpSource::Client,
        };
        assert!(r.admits("10.1.2.3".parse().unwrap()));
        assert!(r.admits("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!r.admits("10.9.2.3".parse().unwrap()));
        assert!(!r.admits("::ffff:10.9.2.3".parse().unwrap()));
        assert!(!r.admits("192.0.2.1".parse().unwrap()));
    }
}
