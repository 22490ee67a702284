//! The real client address, decided in one place for limits, connection
//! caps, balancing, logs and (next) IP rules.
//!
//! A connection's client is its socket peer, or, on a listener with
//! `proxy_protocol`, the source address of the PROXY header a trusted proxy
//! sent first. A request's client is its connection's, or, on a listener
//! with `forwarded_for` and a connection from a trusted proxy, the
//! right-most `X-Forwarded-For` entry that is not a trusted proxy itself
//! (entries to its left were written by the client and prove nothing).
//! IPv4-mapped IPv6 addresses count as the IPv4 address they carry.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use http::HeaderMap;
use ipnet::IpNet;
use meridian_core::config::ListenerConfig;
use ppp::v1::Addresses as V1Addresses;
use ppp::v2::{Addresses as V2Addresses, Command};
use ppp::{HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::headers::X_FORWARDED_FOR;

/// Longest PROXY header read: a v1 header is at most 107 bytes; v2 carries
/// 16 bytes, the addresses (36 for IPv6) and whatever TLVs the proxy adds
/// (cloud balancers add a few hundred bytes at most).
pub const MAX_PROXY_HEADER: usize = 1024;

/// `X-Forwarded-For` entries looked at, right to left.
pub const MAX_FORWARDED_HOPS: usize = 32;

/// Who a listener believes about the client's address.
#[derive(Debug, Clone, Default)]
pub struct ClientPolicy {
    pub proxy_protocol: bool,
    pub forwarded_for: bool,
    trusted: Vec<IpNet>,
}

impl ClientPolicy {
    pub fn new(proxy_protocol: bool, forwarded_for: bool, trusted: Vec<IpNet>) -> Self {
        Self { proxy_protocol, forwarded_for, trusted }
    }

    pub fn of(l: &ListenerConfig) -> Self {
        Self::new(l.proxy_protocol, l.forwarded_for, l.trusted_proxies.clone())
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request on a connection whose client is `conn`, when
    /// `X-Forwarded-For` names another one; `None`: the connection's.
    pub fn forwarded_client(&self, conn: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        if !self.forwarded_for || !self.trusts(conn) {
            return None;
        }
        let mut client = None;
        let entries = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("!").rsplit(','))
            .take(MAX_FORWARDED_HOPS);
        for entry in entries {
            // An entry that is not an address ends the walk: the hop to its
            // right (trusted) is as far as anything can be believed.
            let Ok(ip) = entry.trim().parse::<IpAddr>() else { break };
            let ip = ip.to_canonical();
            client = Some(ip);
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// What a PROXY header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxySource {
    /// The proxy relays a client from this address.
    Client(IpAddr),
    /// A connection of the proxy's own (`LOCAL`, `UNKNOWN`: its health checks).
    Local,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("no PROXY header within the header read timeout")]
    Timeout,
    #[error("connection closed before a PROXY header")]
    Closed,
    #[error("not a PROXY header: {0}")]
    Invalid(String),
    #[error("PROXY header longer than {MAX_PROXY_HEADER} bytes")]
    TooLong,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl ProxyHeaderError {
    pub fn label(&self) -> &'static str {
        match self {
            ProxyHeaderError::Timeout => "timeout",
            ProxyHeaderError::Closed => "closed",
            ProxyHeaderError::Invalid(_) | ProxyHeaderError::TooLong => "invalid",
            ProxyHeaderError::Io(_) => "io_error",
        }
    }
}

/// Read the PROXY header (v1 or v2) a connection starts with, and nothing
/// after it: what follows (TLS, HTTP) is left in the socket.
pub async fn read_proxy_header(stream: &mut TcpStream, timeout: Duration) -> Result<ProxySource, ProxyHeaderError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; MAX_PROXY_HEADER];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => return Err(ProxyHeaderError::Timeout),
        };
        if n == 0 {
            return Err(ProxyHeaderError::Closed);
        }
        let (len, source) = match parse_proxy_header(&buf[..n]) {
            Parsed::Incomplete if n == buf.len() => return Err(ProxyHeaderError::TooLong),
            Parsed::Incomplete => {
                // Part of a header: wait for the rest (peek would return at once).
                if tokio::time::Instant::now() >= deadline {
                    return Err(ProxyHeaderError::Timeout);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
            Parsed::Invalid(e) => return Err(ProxyHeaderError::Invalid(e)),
            Parsed::Header { len, source } => (len, source),
        };
        stream.read_exact(&mut buf[..len]).await?;
        return Ok(source);
    }
}

/// A PROXY header at the start of `bytes`.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Header { len: usize, source: ProxySource },
    Incomplete,
    Invalid(String),
}

pub fn parse_proxy_header(bytes: &[u8]) -> Parsed {
    let result = HeaderResult::parse(bytes);
    if result.is_incomplete() {
        return Parsed::Incomplete;
    }
    let client = |ip: IpAddr| ProxySource::Client(ip.to_canonical());
    match result {
        HeaderResult::V1(Ok(h)) => {
            let source = match h.addresses {
                V1Addresses::Tcp4(a) => client(a.source_address.into()),
                V1Addresses::Tcp6(a) => client(a.source_address.into()),
                V1Addresses::Unknown => ProxySource::Local,
            };
            Parsed::Header { len: h.header.len(), source }
        }
        HeaderResult::V2(Ok(h)) => {
            let source = match (h.command, h.addresses) {
                (Command::Proxy, V2Addresses::IPv4(a)) => client(a.source_address.into()),
                (Command::Proxy, V2Addresses::IPv6(a)) => client(a.source_address.into()),
                _ => ProxySource::Local,
            };
            Parsed::Header { len: h.len(), source }
        }
        HeaderResult::V1(Err(e)) => Parsed::Invalid(e.to_string()),
        HeaderResult::V2(Err(e)) => Parsed::Invalid(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn policy(forwarded_for: bool, trusted: &[&str]) -> ClientPolicy {
        ClientPolicy::new(false, forwarded_for, trusted.iter().map(|t| t.parse().unwrap()).collect())
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(&X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies_and_only_up_to_the_first_untrusted_hop() {
        let p = policy(true, &["10.0.0.0/8"]);
        let lb = ip("10.0.0.5");
        // The client wrote the left part; the balancer appended the client's address.
        let h = xff(&["6.6.6.6, 203.0.113.9"]);
        assert_eq!(p.forwarded_client(lb, &h), Some(ip("203.0.113.9")));
        // A chain of trusted proxies is skipped.
        let h = xff(&["203.0.113.9, 10.1.1.1", "10.2.2.2"]);
        assert_eq!(p.forwarded_client(lb, &h), Some(ip("203.0.113.9")));
        // Every entry trusted: the left-most.
        assert_eq!(p.forwarded_client(lb, &xff(&["10.1.1.1, 10.2.2.2"])), Some(ip("10.1.1.1")));
        // Not from a trusted proxy: the header is the client's own words.
        assert_eq!(p.forwarded_client(ip("203.0.113.1"), &xff(&["1.2.3.4"])), None);
        // Off: never.
        assert_eq!(policy(false, &["10.0.0.0/8"]).forwarded_client(lb, &xff(&["1.2.3.4"])), None);
        // Garbage stops the walk at the last believable hop.
        assert_eq!(p.forwarded_client(lb, &xff(&["1.2.3.4, nonsense"])), None);
        assert_eq!(p.forwarded_client(lb, &xff(&["1.2.3.4, junk, 10.9.9.9"])), Some(ip("10.9.9.9")));
        // IPv4-mapped addresses are their IPv4 address, for trust and for the answer.
        assert_eq!(p.forwarded_client(ip("::ffff:10.0.0.5"), &xff(&["::ffff:198.51.100.7"])), Some(ip("198.51.100.7")));
        assert!(p.trusts(ip("::ffff:10.3.3.3")));
    }

    /// Every input the `client_address` fuzz target found keeps its properties.
    #[test]
    fn the_fuzz_corpus_keeps_its_properties() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/client_address");
        let p = policy(true, &["10.0.0.0/8"]);
        for entry in std::fs::read_dir(dir).expect("the corpus is in the repository") {
            let bytes = std::fs::read(entry.expect("a corpus entry").path()).expect("readable");
            if let Parsed::Header { len, .. } = parse_proxy_header(&bytes) {
                assert!(len > 0 && len <= bytes.len());
            }
            let Ok(v) = HeaderValue::from_bytes(&bytes) else { continue };
            let text = String::from_utf8_lossy(&bytes);
            if let Some(client) = p.forwarded_client(ip("10.0.0.1"), &xff(&[v.to_str().unwrap_or("")])) {
                assert!(text
                    .split(',')
                    .any(|e| e.trim().parse::<IpAddr>().ok().map(|i| i.to_canonical()) == Some(client)));
            }
        }
    }

    #[test]
    fn proxy_headers_of_both_versions_are_read() {
        let v1 = b"PROXY TCP4 198.51.100.7 10.0.0.1 51000 80\r\nGET / HTTP/1.1\r\n";
        assert_eq!(parse_proxy_header(v1), Parsed::Header { len: 43, source: ProxySource::Client(ip("198.51.100.7")) });
        let v1_6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n";
        assert_eq!(
            parse_proxy_header(v1_6),
            Parsed::Header { len: v1_6.len(), source: ProxySource::Client(ip("2001:db8::7")) }
        );
        assert_eq!(parse_proxy_header(b"PROXY UNKNOWN\r\n"), Parsed::Header { len: 15, source: ProxySource::Local });
        assert_eq!(parse_proxy_header(b"PROXY TCP4 198.51"), Parsed::Incomplete);
        assert!(matches!(parse_proxy_header(b"GET / HTTP/1.1\r\n"), Parsed::Invalid(_)));
        assert!(matches!(parse_proxy_header(b"PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n"), Parsed::Invalid(_)));

        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v2.extend([0x21, 0x11, 0, 12, 198, 51, 100, 7, 10, 0, 0, 1, 0xc7, 0x38, 0, 80]);
        let len = v2.len();
        v2.extend(b"GET /");
        assert_eq!(parse_proxy_header(&v2), Parsed::Header { len, source: ProxySource::Client(ip("198.51.100.7")) });
        let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(parse_proxy_header(&local), Parsed::Header { len: 16, source: ProxySource::Local });
        assert_eq!(parse_proxy_header(&v2[..20]), Parsed::Incomplete);
    }
}
