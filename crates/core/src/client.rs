//! The HTTP client of the operator's tools (`meridian ctl`, the local
//! cluster, drills): plain HTTP, or HTTPS verified against the given CA
//! certificate (`--cacert`), else the system's roots.

use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

pub type AdminClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{file}: {reason}")]
    CaFile { file: String, reason: String },
    #[error("no system root certificates: {0}")]
    NativeRoots(String),
}

/// A client for `http://` and `https://` URLs; HTTPS servers must present a
/// certificate signed by `cacert` (PEM, one or more certificates) or, without
/// it, by a root the system trusts.
pub fn admin_client(cacert: Option<&Path>) -> Result<AdminClient, ClientError> {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let https = match cacert {
        Some(path) => {
            let fail = |reason: String| ClientError::CaFile { file: path.display().to_string(), reason };
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(e.to_string()))? {
                roots.add(cert.map_err(|e| fail(e.to_string()))?).map_err(|e| fail(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(fail("no certificate found".into()));
            }
            let config = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
            HttpsConnectorBuilder::new().with_tls_config(config)
        }
        None => {
            HttpsConnectorBuilder::new().with_native_roots().map_err(|e| ClientError::NativeRoots(e.to_string()))?
        }
    };
    let connector = https.https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}
