//! Any bytes as the start of a connection and as `X-Forwarded-For`: the
//! PROXY header parser never claims bytes it was not given, and the
//! forwarded-for walk only ever names an address the header holds, one that
//! is not a trusted proxy unless every entry it passed was.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use meridian_dataplane::proxy::client::{parse_proxy_header, ClientPolicy, Parsed, ProxySource};

fuzz_target!(|data: &[u8]| {
    if let Parsed::Header { len, source } = parse_proxy_header(data) {
        assert!(len > 0 && len <= data.len());
        if let ProxySource::Client(ip) = source {
            assert_eq!(ip, ip.to_canonical());
        }
    }
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static("x-forwarded-for"), value);
    let policy = ClientPolicy::new(false, true, vec!["10.0.0.0/8".parse().expect("a network")]);
    let proxy = "10.0.0.1".parse().expect("an address");
    if let Some(client) = policy.forwarded_client(proxy, &headers) {
        let text = std::str::from_utf8(data).expect("a parsed entry means text");
        let entries: Vec<std::net::IpAddr> =
            text.split(',').filter_map(|e| e.trim().parse::<std::net::IpAddr>().ok()).map(|ip| ip.to_canonical()).collect();
        assert!(entries.contains(&client), "{client} is not in {text:?}");
        if !policy.trusts(client) {
            return;
        }
        // A trusted answer: every entry to its right was trusted too.
        let right = text.rsplit(',').take_while(|e| e.trim().parse::<std::net::IpAddr>().ok().map(|i| i.to_canonical()) != Some(client));
        for e in right {
            let ip: std::net::IpAddr = e.trim().parse().expect("walked entries are addresses");
            assert!(policy.trusts(ip), "{ip} was passed but is not trusted");
        }
    }
});
