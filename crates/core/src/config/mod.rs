//! Configuration: the node file (identity, listeners, admin, limits, logs) and
//! the gateway document (upstreams, routes) that a region replicates.
//!
//! Parsing reports the key path of a bad field; [`validate_document`] and
//! [`validate_node`] then check every rule and report all broken ones at once.

mod document;
mod error;
mod identity;
mod node;
mod transform;
mod validate;
mod validate_identity;
mod validate_transform;
mod values;

use std::path::Path;

pub use document::*;
pub use error::{ConfigError, ConfigErrorKind, ConfigErrors};
pub use identity::*;
pub use node::*;
pub use transform::*;
pub use validate::check_address;
pub use validate::route_path as validate_route_path;
pub use validate::{validate_document, validate_node, CheckedDocument, Validated, MAX_RETRIES};
pub use validate_identity::{
    normalise_origin, CorsValues, CredentialSource, JwtAuthValues, JwtKey, JwtProviderValues, OriginPattern, Principal,
    RouteAccessValues,
};
pub use validate_transform::{
    compile_schema, graphql_nesting_exceeds, Edits, GraphqlValues, ParamCheck, SoapValues, TransformValues,
    ValidateValues, VarKind, GRAPHQL_MAX_NESTING,
};
pub use values::{is_cookie_name_byte, DocumentValues, HashOn, RateLimitKey, RouteValues, UpstreamValues, VipAddr};

/// Encodings the admin API accepts for a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

/// Parse TOML or JSON into `T`, naming the key path of the first bad field.
pub fn parse<T: serde::de::DeserializeOwned>(text: &str, format: Format) -> Result<T, ConfigErrors> {
    match format {
        Format::Toml => {
            let de = toml::Deserializer::parse(text).map_err(|e| toml_syntax_error(text, &e))?;
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                ConfigError::new(clean_path(&path), ConfigErrorKind::Syntax(inner.message().to_string())).into()
            })
        }
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                ConfigError::new(clean_path(&path), ConfigErrorKind::Syntax(format!("{inner}"))).into()
            })
        }
    }
}

/// `serde_path_to_error` writes `.` for the root.
fn clean_path(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        path.to_string()
    }
}

fn toml_syntax_error(text: &str, e: &toml::de::Error) -> ConfigErrors {
    let path = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}")
        }
        None => String::new(),
    };
    ConfigError::new(path, ConfigErrorKind::Syntax(e.message().to_string())).into()
}

/// Read and parse a TOML file (any of meridian's file kinds); an unreadable
/// file is an error like any other, naming the file.
pub fn parse_file<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::from(ConfigError::new(
            "",
            ConfigErrorKind::Io { file: path.display().to_string(), reason: e.to_string() },
        ))
    })?;
    parse(&text, Format::Toml)
}

/// Read, parse and validate a node file. Relative certificate paths are
/// resolved against the file's directory.
pub fn load_node_file(path: &Path) -> Result<Validated<NodeConfig>, ConfigErrors> {
    let mut node: NodeConfig = parse_file(path)?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    if let Some(r) = &mut node.report {
        if let Some(f) = &mut r.secret_file {
            *f = base.join(&*f);
        }
    }
    if let Some(f) = &mut node.identity.pepper_file {
        *f = base.join(&*f);
    }
    if let Some(c) = &mut node.cluster {
        c.data_dir = base.join(&c.data_dir);
        if let Some(f) = &mut c.secret_file {
            *f = base.join(&*f);
        }
    }
    let admin_tls = node.admin.tls.as_mut();
    for tls in node.listeners.iter_mut().filter_map(|l| l.tls.as_mut()).chain(admin_tls) {
        let resolve = |c: &mut ClientAuthConfig| {
            c.ca = base.join(&c.ca);
            for crl in &mut c.crls {
                *crl = base.join(&*crl);
            }
        };
        if let Some(c) = &mut tls.client_auth {
            resolve(c);
        }
        for cert in &mut tls.certificates {
            cert.cert = base.join(&cert.cert);
            cert.key = base.join(&cert.key);
            if let Some(c) = &mut cert.client_auth {
                resolve(c);
            }
        }
    }
    validate_node(node)
}

/// Parse and validate a gateway document on its own (admin API, `ctl apply`).
pub fn parse_document(text: &str, format: Format) -> Result<Validated<CheckedDocument>, ConfigErrors> {
    validate_document(parse(text, format)?)
}
