//! TLS termination: rustls server configs whose certificate is chosen by SNI
//! (exact names, then `*.suffix` wildcards, then the listener's default),
//! from a [`CertStore`] that reloads its files when they change or on
//! SIGHUP. A reload swaps what new handshakes get; connections already
//! established keep theirs. Files that fail to load leave the previous
//! certificates serving.

pub mod client_auth;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

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
    let listeners = node.listeners.iter().enumerate().map(|(i, l)| (format!("listeners[{i}].tls"), l.tls.as_ref()));
    let admin = std::iter::once(("admin.tls".to_string(), node.admin.tls.as_ref()));
    for (at, tls) in listeners.chain(admin) {
        for (j, c) in tls.iter().flat_map(|t| t.certificates.iter()).enumerate() {
            if let Err(e) = load_certified_key(&c.cert, &c.key) {
                errors.push(format!("{at}.certificates[{j}]"), ConfigErrorKind::Tls { file: e.file, reason: e.reason });
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

pub(crate) fn file_error(path: &Path, reason: impl ToString) -> TlsFileError {
    TlsFileError { file: path.display().to_string(), reason: reason.to_string() }
}

/// The process-wide crypto providers: ring for TLS, aws-lc for JWT
/// signatures (a verification without one would panic). Installing twice
/// is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
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

/// What a file looked like when it was loaded: a change of any of these
/// (an editor's write, `mv` of a new file, a symlink swap as Kubernetes
/// does for secrets) means it is read again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp { modified: m.modified().ok(), len: m.len(), inode: m.ino() })
}

/// The certificates of one TLS endpoint (a listener, the admin API),
/// reloadable while it serves.
#[derive(Debug)]
pub struct CertStore {
    /// `listeners[i].tls`, `admin.tls`: in logs and metrics.
    pub name: String,
    config: TlsConfig,
    current: ArcSwap<SniResolver>,
    stamps: Mutex<Vec<Option<FileStamp>>>,
    /// Bumped by every successful reload (handshake setups rebuild on it).
    generation: std::sync::atomic::AtomicU64,
}

/// How a reload went.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Reloaded,
}

impl CertStore {
    pub fn load(name: impl Into<String>, config: &TlsConfig) -> Result<Arc<Self>, TlsFileError> {
        let stamps = Self::stamps_of(config);
        let resolver = SniResolver::new(config)?;
        Ok(Arc::new(Self {
            name: name.into(),
            config: config.clone(),
            current: ArcSwap::from_pointee(resolver),
            stamps: Mutex::new(stamps),
            generation: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    fn stamps_of(config: &TlsConfig) -> Vec<Option<FileStamp>> {
        let mut out: Vec<Option<FileStamp>> =
            config.certificates.iter().flat_map(|c| [stamp(&c.cert), stamp(&c.key)]).collect();
        for auth in Self::client_auths(config) {
            out.push(stamp(&auth.ca));
            out.extend(auth.crls.iter().map(|c| stamp(c)));
        }
        out
    }

    /// Every client-certificate setting of `config`: the listener's and the certificates'.
    fn client_auths(config: &TlsConfig) -> impl Iterator<Item = &meridian_core::config::ClientAuthConfig> {
        config.client_auth.iter().chain(config.certificates.iter().filter_map(|c| c.client_auth.as_ref()))
    }

    /// How many times the files were reloaded.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Read the files again if any changed (always with `force`); on an
    /// error the certificates in use stay.
    pub fn reload(&self, force: bool) -> Result<Reload, TlsFileError> {
        let now = Self::stamps_of(&self.config);
        let mut seen = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
        if !force && *seen == now {
            return Ok(Reload::Unchanged);
        }
        // Remember what was tried, so a broken file is reported once, not on every check.
        *seen = now;
        let resolver = SniResolver::new(&self.config)?;
        // Client CAs and CRLs must load too before anything changes.
        for auth in Self::client_auths(&self.config) {
            client_auth::client_verifier(auth)?;
        }
        self.current.store(Arc::new(resolver));
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(Reload::Reloaded)
    }

    /// A rustls server config whose certificate comes from this store, with
    /// these ALPN protocols.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        install_crypto_provider();
        let mut config = rustls::ServerConfig::builder().with_no_client_auth().with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// As [`CertStore::server_config`], asking for client certificates as
    /// `client_auth` says.
    pub fn server_config_with(
        self: &Arc<Self>,
        alpn: &[&[u8]],
        client_auth: Option<&meridian_core::config::ClientAuthConfig>,
    ) -> Result<Arc<rustls::ServerConfig>, TlsFileError> {
        let Some(auth) = client_auth else { return Ok(self.server_config(alpn)) };
        let verifier = client_auth::client_verifier(auth)?;
        let mut config =
            rustls::ServerConfig::builder().with_client_cert_verifier(verifier).with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// What this store was loaded from.
    pub fn config(&self) -> &TlsConfig {
        &self.config
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load().resolve(hello)
    }
}

/// ALPN of a data-plane listener: HTTP/2 first.
pub const ALPN_H2_HTTP1: &[&[u8]] = &[b"h2", b"http/1.1"];
