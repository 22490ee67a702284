//! The authority a request names (`Host`, or the request-target's in
//! absolute form): accepted only as a host name or IPv4 address with an
//! optional numeric port, or a bracketed IPv6 literal with an optional port.
//! Anything else (quotes, markup, user info, empty ports) is refused, so a
//! cache key or a log line never carries what a client invented.

use std::net::Ipv6Addr;

/// Why an authority was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error("empty host")]
    Empty,
    #[error("invalid host name")]
    Name,
    #[error("invalid IPv6 literal")]
    Ipv6,
    #[error("invalid port")]
    Port,
}

fn port(p: &str) -> Result<(), AuthorityError> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 && !p.starts_with('+') && p.len() <= 5 => Ok(()),
        _ => Err(AuthorityError::Port),
    }
}

/// A DNS name (letters, digits, `-`, labels joined by `.`, optionally one
/// trailing `.`) or a dotted IPv4 address: both fit this shape.
fn reg_name(h: &str) -> Result<(), AuthorityError> {
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.is_empty() || h.len() > 253 {
        return Err(AuthorityError::Name);
    }
    for label in h.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(AuthorityError::Name);
        }
    }
    Ok(())
}

/// Check `authority` (`host`, `host:port`, `[v6]`, `[v6]:port`).
pub fn check_authority(authority: &str) -> Result<(), AuthorityError> {
    if authority.is_empty() {
        return Err(AuthorityError::Empty);
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or(AuthorityError::Ipv6)?;
        addr.parse::<Ipv6Addr>().map_err(|_| AuthorityError::Ipv6)?;
        return match after {
            "" => Ok(()),
            p => port(p.strip_prefix(':').ok_or(AuthorityError::Port)?),
        };
    }
    match authority.split_once(':') {
        Some((host, p)) => {
            reg_name(host)?;
            port(p)
        }
        None => reg_name(authority),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input in the fuzz corpus: what is accepted holds only
    /// host-name, address and port characters.
    #[test]
    fn the_fuzz_corpus_keeps_its_properties() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/authority");
        for entry in std::fs::read_dir(dir).expect("the corpus is in the repository") {
            let bytes = std::fs::read(entry.expect("a corpus entry").path()).expect("readable");
            if let Ok(host) = std::str::from_utf8(&bytes) {
                if check_authority(host).is_ok() {
                    assert!(host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b)), "{host:?}");
                }
            }
        }
    }

    #[test]
    fn host_names_addresses_and_ports() {
        for ok in
            ["site.test", "site.test:8080", "SITE.test.", "10.0.0.1", "10.0.0.1:80", "[::1]", "[::1]:8443", "a_b.test"]
        {
            assert_eq!(check_authority(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", AuthorityError::Empty),
            ("site.test:\"><script>x</script>", AuthorityError::Port),
            ("site.test:", AuthorityError::Port),
            ("site.test:0", AuthorityError::Port),
            ("site.test:65536", AuthorityError::Port),
            ("site.test:80:80", AuthorityError::Port),
            ("user@site.test", AuthorityError::Name),
            ("site..test", AuthorityError::Name),
            ("-site.test", AuthorityError::Name),
            ("si te.test", AuthorityError::Name),
            ("[::1", AuthorityError::Ipv6),
            ("[zz]:80", AuthorityError::Ipv6),
            ("[::1]80", AuthorityError::Port),
        ] {
            assert_eq!(check_authority(bad), Err(why), "{bad}");
        }
    }
}
