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

/// How XML is read and mapped to JSON (`docs/transform.md`: the mapping).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmlConfig {
    /// Dot paths of element names from the root that are always arrays,
    /// e.g. `accounts.account`.
    #[serde(default)]
    pub always_array: Vec<String>,
    /// Larger documents are refused (502 for an answer).
    #[serde(default = "default_xml_max_bytes")]
    pub max_bytes: usize,
    #[serde(default = "default_xml_max_depth")]
    pub max_depth: usize,
    #[serde(default = "default_xml_max_elements")]
    pub max_elements: usize,
    /// Per element.
    #[serde(default = "default_xml_max_attributes")]
    pub max_attributes: usize,
    /// Keep namespace prefixes (`soap:Body`) and `xmlns` attributes.
    #[serde(default)]
    pub keep_prefixes: bool,
}

impl Default for XmlConfig {
    fn default() -> Self {
        Self {
            always_array: Vec::new(),
            max_bytes: default_xml_max_bytes(),
            max_depth: default_xml_max_depth(),
            max_elements: default_xml_max_elements(),
            max_attributes: default_xml_max_attributes(),
            keep_prefixes: false,
        }
    }
}

fn default_xml_max_bytes() -> usize {
    1 << 20
}
fn default_xml_max_depth() -> usize {
    64
}
fn default_xml_max_elements() -> usize {
    10_000
}
fn default_xml_max_attributes() -> usize {
    64
}
