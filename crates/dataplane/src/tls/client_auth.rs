//! Mutual TLS: the verifier that asks clients for a certificate (per
//! listener, or per SNI name), the handshake setup that picks it from the
//! ClientHello, and what a verified certificate says ([`PeerCert`]).

use std::sync::Arc;

use arc_swap::ArcSwap;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::server::{Acceptor, WebPkiClientVerifier};
use rustls::RootCertStore;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};

use super::{file_error, install_crypto_provider, CertStore, TlsFileError};
use meridian_core::config::ClientAuthConfig;
use meridian_core::pattern::HostPattern;

/// The verifier of `cfg`: its CA bundle and CRLs; optional unless `required`.
pub fn client_verifier(
    cfg: &ClientAuthConfig,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsFileError> {
    install_crypto_provider();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&cfg.ca).map_err(|e| file_error(&cfg.ca, e))? {
        roots.add(cert.map_err(|e| file_error(&cfg.ca, e))?).map_err(|e| file_error(&cfg.ca, e))?;
    }
    if roots.is_empty() {
        return Err(file_error(&cfg.ca, "no CA certificate found"));
    }
    let mut crls = Vec::new();
    for path in &cfg.crls {
        for crl in CertificateRevocationListDer::pem_file_iter(path).map_err(|e| file_error(path, e))? {
            crls.push(crl.map_err(|e| file_error(path, e))?);
        }
    }
    let mut builder = WebPkiClientVerifier::builder(Arc::new(roots)).with_crls(crls);
    if !cfg.required {
        builder = builder.allow_unauthenticated();
    }
    builder.build().map_err(|e| file_error(&cfg.ca, e))
}

/// How a TLS listener does its handshakes: one config, or one per SNI name
/// when certificates ask for client certificates differently. Client CA
/// bundles and CRLs are read again after the store reloads (a CRL update
/// takes effect without a restart): the first handshake after a reload
/// builds the new configs, and a set that fails to build leaves the old one.
#[derive(Clone)]
pub struct TlsSetup {
    store: Arc<CertStore>,
    alpn: Arc<Vec<Vec<u8>>>,
    current: Arc<ArcSwap<Configs>>,
}

/// The configs of one reload generation of the store.
struct Configs {
    generation: u64,
    default_config: Arc<rustls::ServerConfig>,
    by_name: Vec<(HostPattern, Arc<rustls::ServerConfig>)>,
}

impl Configs {
    fn build(store: &Arc<CertStore>, alpn: &[&[u8]]) -> Result<Self, TlsFileError> {
        let generation = store.generation();
        let cfg = store.config();
        let default_config = store.server_config_with(alpn, cfg.client_auth.as_ref())?;
        let mut by_name = Vec::new();
        for c in &cfg.certificates {
            let Some(auth) = &c.client_auth else { continue };
            let config = store.server_config_with(alpn, Some(auth))?;
            for n in &c.server_names {
                by_name.push((HostPattern::parse(n).map_err(|e| file_error(&c.cert, e))?, config.clone()));
            }
        }
        Ok(Self { generation, default_config, by_name })
    }
}

impl TlsSetup {
    pub fn new(store: &Arc<CertStore>, alpn: &[&[u8]]) -> Result<Self, TlsFileError> {
        let configs = Configs::build(store, alpn)?;
        Ok(Self {
            store: store.clone(),
            alpn: Arc::new(alpn.iter().map(|p| p.to_vec()).collect()),
            current: Arc::new(ArcSwap::from_pointee(configs)),
        })
    }

    /// The configs for the store's current files.
    fn configs(&self) -> Arc<Configs> {
        let c = self.current.load_full();
        if c.generation == self.store.generation() {
            return c;
        }
        let alpn: Vec<&[u8]> = self.alpn.iter().map(Vec::as_slice).collect();
        match Configs::build(&self.store, &alpn) {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                self.current.store(fresh.clone());
                fresh
            }
            Err(e) => {
                // The reload checked these files a moment ago; keep serving.
                tracing::error!(listener = %self.store.name, error = %e, "client CAs not reloaded; the previous ones stay");
                c
            }
        }
    }

    /// The server side of a handshake on `stream`.
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let c = self.configs();
        if c.by_name.is_empty() {
            return TlsAcceptor::from(c.default_config.clone()).accept(stream).await;
        }
        let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
        let name = start.client_hello().server_name().map(str::to_ascii_lowercase);
        let config = name
            .and_then(|n| c.by_name.iter().find(|(p, _)| p.matches(&n)).map(|(_, c)| c.clone()))
            .unwrap_or_else(|| c.default_config.clone());
        start.into_stream(config).await
    }
}

/// A verified client certificate, as routes map it to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// The subject DN, e.g. `CN=client, O=Example`.
    pub subject: String,
    /// Subject alternative names: URIs, DNS names and e-mail addresses, as written.
    pub sans: Vec<String>,
}

impl PeerCert {
    /// The leaf of a chain the handshake verified; `None` if it cannot be read.
    pub fn of(der: &[u8]) -> Option<Self> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for n in &ext.value.general_names {
                match n {
                    GeneralName::URI(s) | GeneralName::DNSName(s) | GeneralName::RFC822Name(s) => {
                        sans.push(s.to_string())
                    }
                    _ => {}
                }
            }
        }
        Some(Self { subject: cert.subject().to_string(), sans })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_and_alternative_names_are_read_whole() {
        let mut params = rcgen::CertificateParams::new(vec!["svc.example.test".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, "client-1");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Example");
        params.subject_alt_names.push(rcgen::SanType::URI("spiffe://example.test/svc".try_into().unwrap()));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let p = PeerCert::of(cert.der()).unwrap();
        assert_eq!(p.subject, "CN=client-1, O=Example");
        assert_eq!(p.sans, ["svc.example.test", "spiffe://example.test/svc"]);
        assert_eq!(PeerCert::of(b"not a certificate"), None);
    }
}
