//! The transformation part of a route (`docs/transform.md`): header and
//! query edits on the request and the response.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a route changes in the request it forwards and the answer it returns.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    #[serde(default)]
    pub request: RequestTransformConfig,
    #[serde(default)]
    pub response: ResponseTransformConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestTransformConfig {
    #[serde(default)]
    pub headers: EditsConfig,
    #[serde(default)]
    pub query: EditsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseTransformConfig {
    #[serde(default)]
    pub headers: EditsConfig,
}

/// Edits of headers or query parameters, applied in this order: remove →
/// rename → replace → add → append. Values are templates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditsConfig {
    /// Names removed.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Old name → new name, when the old one is present (values kept).
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Name → value, only when the name is present (all its values replaced).
    #[serde(default)]
    pub replace: BTreeMap<String, String>,
    /// Name → value, only when the name is absent: never overrides the client.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Name → value, added beside any values already there.
    #[serde(default)]
    pub append: BTreeMap<String, String>,
}

impl EditsConfig {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }
}
