//! Typed values that config strings stand for: what a consistent-hash pool
//! hashes on, what a rate limit counts by, cookie names, VIP addresses, and
//! the values of a whole gateway document ([`DocumentValues`]). Parsed once,
//! by validation; the data plane compiles from them and parses nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;

use http::{HeaderName, Method};

use crate::pattern::{HeaderMatch, HostPattern, PathPattern, Rewrite};

/// What a consistent-hash pool hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    ClientIp,
    Header(HeaderName),
    Cookie(String),
}

impl HashOn {
    pub fn parse(s: &str) -> Option<Self> {
        if s == "client_ip" {
            return Some(HashOn::ClientIp);
        }
        if let Some(name) = s.strip_prefix("header:") {
            return HeaderName::from_bytes(name.as_bytes()).ok().map(HashOn::Header);
        }
        if let Some(name) = s.strip_prefix("cookie:") {
            if !name.is_empty() && name.bytes().all(is_cookie_name_byte) {
                return Some(HashOn::Cookie(name.to_string()));
            }
        }
        None
    }
}

/// What a route's rate limit counts requests by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitKey {
    ClientIp,
    /// One budget for the whole route.
    Route,
    /// A request header's value (an API key, a tenant id).
    Header(HeaderName),
    /// The authenticated consumer (needs `auth`); its own `limits` apply
    /// instead of the route's when it has some.
    Consumer,
    /// The credential that authenticated the request (an API key's id, a JWT provider).
    Credential,
}

impl RateLimitKey {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_ip" => Some(Self::ClientIp),
            "route" => Some(Self::Route),
            "consumer" => Some(Self::Consumer),
            "credential" => Some(Self::Credential),
            _ => HeaderName::from_bytes(s.strip_prefix("header:")?.as_bytes()).ok().map(Self::Header),
        }
    }
}

/// The typed values of one route of a validated document.
#[derive(Debug, Clone)]
pub struct RouteValues {
    pub hosts: Vec<HostPattern>,
    pub path: PathPattern,
    pub methods: Vec<Method>,
    pub headers: Vec<(HeaderName, HeaderMatch)>,
    pub rewrite: Option<Rewrite>,
    pub rate_limit_key: Option<RateLimitKey>,
    pub cache_key_headers: Vec<HeaderName>,
    /// Protocols the route tunnels after `101`, lower-cased.
    pub upgrades: Vec<String>,
    /// Authentication, authorization and CORS.
    pub access: super::RouteAccessValues,
    /// Header and query edits, templates compiled.
    pub transform: super::TransformValues,
    /// Body schemas and parameter checks, compiled.
    pub validate: Option<super::ValidateValues>,
}

/// The typed values of one upstream of a validated document.
#[derive(Debug, Clone, Default)]
pub struct UpstreamValues {
    pub hash_on: Option<HashOn>,
}

/// Every typed value of a validated document, beside the document itself
/// (which stays as written: it is what a region replicates).
#[derive(Debug, Clone, Default)]
pub struct DocumentValues {
    /// One per route, in the document's order.
    pub routes: Vec<RouteValues>,
    pub upstreams: BTreeMap<String, UpstreamValues>,
    /// Keys and algorithms of each JWT provider.
    pub jwt_providers: BTreeMap<String, super::JwtProviderValues>,
}

/// RFC 6265 token characters.
pub fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A VIP as configured: `10.0.0.100/24`. Parsed where the node file is read;
/// a bad one is refused there with its key path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VipAddr {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl VipAddr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s.split_once('/').ok_or("expected address/prefix, e.g. 10.0.0.100/24")?;
        let ip: IpAddr = ip.parse().map_err(|_| format!("invalid IP address \"{ip}\""))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("invalid prefix \"{prefix}\""))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("prefix {prefix} is longer than {max}"));
        }
        Ok(Self { ip, prefix })
    }
}

impl TryFrom<String> for VipAddr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).map_err(|reason| format!("invalid VIP \"{s}\": {reason}"))
    }
}

impl From<VipAddr> for String {
    fn from(v: VipAddr) -> String {
        v.to_string()
    }
}

impl std::fmt::Display for VipAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_on_parsing() {
        assert_eq!(HashOn::parse("client_ip"), Some(HashOn::ClientIp));
        assert_eq!(HashOn::parse("header:X-User"), Some(HashOn::Header(HeaderName::from_static("x-user"))));
        assert_eq!(HashOn::parse("cookie:sid"), Some(HashOn::Cookie("sid".into())));
        assert_eq!(HashOn::parse("cookie:"), None);
        assert_eq!(HashOn::parse("ip"), None);
    }

    #[test]
    fn rate_limit_keys() {
        assert_eq!(RateLimitKey::parse("client_ip"), Some(RateLimitKey::ClientIp));
        assert_eq!(RateLimitKey::parse("route"), Some(RateLimitKey::Route));
        assert_eq!(
            RateLimitKey::parse("header:X-Api-Key"),
            Some(RateLimitKey::Header(HeaderName::from_static("x-api-key")))
        );
        assert_eq!(RateLimitKey::parse("header:"), None);
        assert_eq!(RateLimitKey::parse("cookie:sid"), None);
    }

    #[test]
    fn vip_addresses() {
        assert_eq!(VipAddr::parse("10.0.0.100/24").map(|v| v.to_string()), Ok("10.0.0.100/24".to_string()));
        assert!(VipAddr::parse("10.0.0.100").is_err());
        assert!(VipAddr::parse("10.0.0.100/33").is_err());
        assert!(VipAddr::parse("fd00::1/129").is_err());
    }
}
