//! TLS termination: rustls server configs whose certificate is chosen by SNI
//! (exact names, then `*.suffix` wildcards, then the listener's default).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use meridian_core::config::{ConfigErrorKind, ConfigErrors, NodeConfig, TlsConfig};
use meridian_core::pattern::HostPattern;

/// Every listener certificate and key of a node file loads. Validation
/// reads no files; whoever starts or checks a node calls this after it, so a
/// bad file is refused with its key path before anything listens.
pub fn check_certificates(node: &NodeConfig) -> ConfigErrors {
    let mut errors = ConfigErrors::default();
    for (i, l) in node.listeners.iter().enumerate() {
        for (j, c) in l.tls.iter().flat_map(|t| t.certificates.iter()).enumerate() {
            if let Err(e) = load_certified_key(&c.cert, &c.key) {
                errors.push(
                    format!("listeners[{i}].tls.certificates[{j}]"),
                    ConfigErrorKind::Tls { file: e.file, reason: e.reason },
                );
            }
        }
    }
    errors
}

/// A certificate or key file that could not be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct TlsFileError {
    pub file: String,
    pub reason: String,
}

fn file_error(path: &Path, reason: impl ToString) -> TlsFileError {
    TlsFileError { file: path.display().to_string(), reason: reason.to_string() }
}

/// The process-wide crypto provider (ring). Installing twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Load a PEM chain and key and check that they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsFileError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert, e))?;
    if chain.is_empty() {
        return Err(file_error(cert, "no certificate found"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider.key_provider.load_private_key(key_der).map_err(|e| file_error(key, e))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|e| file_error(key, format!("does not match the certificate: {e}")))?;
    Ok(certified)
}

/// Picks a certificate by the client's SNI name.
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// Longest suffix first.
    wildcard: Vec<(HostPattern, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let name = name.to_ascii_lowercase();
        if let Some(k) = self.exact.get(name.as_str()) {
            return Some(k.clone());
        }
        self.wildcard
            .iter()
            .find(|(p, _)| p.matches(&name))
            .map(|(_, k)| k.clone())
            .or_else(|| Some(self.default.clone()))
    }
}

impl SniResolver {
    pub fn new(tls: &TlsConfig) -> Result<Self, TlsFileError> {
        let mut exact = HashMap::new();
        let mut wildcard = Vec::new();
        let mut default = None;
        for c in &tls.certificates {
            let key = Arc::new(load_certified_key(&c.cert, &c.key)?);
            default.get_or_insert_with(|| key.clone());
            for n in &c.server_names {
                match HostPattern::parse(n).map_err(|e| file_error(&c.cert, e))? {
                    HostPattern::Exact(h) => {
                        exact.entry(h).or_insert_with(|| key.clone());
                    }
                    p @ HostPattern::Suffix(_) => wildcard.push((p, key.clone())),
                }
            }
        }
        wildcard.sort_by_key(|(p, _)| usize::MAX - p.to_string().len());
        let default = default.ok_or_else(|| file_error(Path::new("tls.certificates"), "no certificate configured"))?;
        Ok(Self { exact, wildcard, default })
    }
}

/// A rustls server config offering h2 and http/1.1 by ALPN.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsFileError> {
    install_crypto_provider();
    let resolver = SniResolver::new(tls)?;
    let mut config = rustls::ServerConfig::builder().with_no_client_auth().with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
