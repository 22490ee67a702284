//! Configuration errors: every broken rule names the key path and the values involved.

use std::fmt;

/// One broken rule, located by its key path (e.g. `routes[3].upstream`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct ConfigError {
    pub path: String,
    pub kind: ConfigErrorKind,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, kind: ConfigErrorKind) -> Self {
        Self { path: path.into(), kind }
    }
}

/// The rule that was broken, with the offending values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigErrorKind {
    #[error("{0}")]
    Syntax(String),
    #[error("cannot read {file}: {reason}")]
    Io { file: String, reason: String },
    #[error("unknown upstream \"{0}\"")]
    UnknownUpstream(String),
    #[error("duplicate name \"{name}\" (also at {first})")]
    Duplicate { name: String, first: String },
    #[error("must not be empty")]
    Empty,
    #[error("an upstream needs at least one target")]
    NoTargets,
    #[error("invalid address \"{value}\": {reason}")]
    InvalidAddress { value: String, reason: String },
    #[error("invalid host pattern \"{value}\": {reason}")]
    InvalidHost { value: String, reason: String },
    #[error("invalid path pattern \"{value}\": {reason}")]
    InvalidPath { value: String, reason: String },
    #[error("only one of path_prefix, path_exact and path_template may be set (found {found})")]
    ConflictingPathMatch { found: String },
    #[error("invalid HTTP method \"{0}\"")]
    InvalidMethod(String),
    #[error("invalid header name \"{0}\"")]
    InvalidHeaderName(String),
    #[error("invalid value \"{value}\" for header \"{name}\"")]
    InvalidHeaderValue { name: String, value: String },
    #[error("algorithm \"consistent_hash\" needs hash_on")]
    MissingHashOn,
    #[error("invalid hash_on \"{0}\": expected client_ip, header:<name> or cookie:<name>")]
    InvalidHashOn(String),
    #[error("invalid rate-limit key \"{0}\": expected client_ip, route, consumer, credential or header:<name>")]
    InvalidRateLimitKey(String),
    #[error("rewrite \"{rewrite}\" uses {{{param}}} which path_template does not capture")]
    UnknownRewriteParam { rewrite: String, param: String },
    #[error("strip_prefix needs path_prefix")]
    StripPrefixWithoutPrefix,
    #[error("strip_prefix and rewrite cannot both be set")]
    StripAndRewrite,
    #[error("{value} is out of range: {rule}")]
    OutOfRange { value: String, rule: &'static str },
    #[error("invalid status code {0}")]
    InvalidStatus(u16),
    #[error("{file}: {reason}")]
    Tls { file: String, reason: String },
    #[error("admin token: {0}")]
    AdminToken(String),
    #[error("invalid value \"{value}\": {reason}")]
    Invalid { value: String, reason: String },
    #[error("unknown {what} \"{name}\"")]
    Unknown { what: &'static str, name: String },
}

/// All broken rules of one file or document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn push(&mut self, path: impl Into<String>, kind: ConfigErrorKind) {
        self.0.push(ConfigError::new(path, kind));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }

    /// `Ok(value)` when no rule was broken.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// Prefix every path, e.g. with `gateway.` when a document sits in a node file.
    pub fn prefixed(mut self, prefix: &str) -> Self {
        for e in &mut self.0 {
            e.path = if e.path.is_empty() {
                prefix.trim_end_matches('.').to_string()
            } else {
                format!("{prefix}{}", e.path)
            };
        }
        self
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
