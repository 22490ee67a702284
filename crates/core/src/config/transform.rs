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

/// A JSON document inside the gateway document (a JSON Schema): written as
/// a table, or as a string of JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JsonDoc(pub serde_json::Value);

// JSON has no NaN: equality of JSON values is an equivalence.
impl Eq for JsonDoc {}

impl JsonDoc {
    /// The document: a string is read as JSON text.
    pub fn value(&self) -> Result<std::borrow::Cow<'_, serde_json::Value>, String> {
        match &self.0 {
            serde_json::Value::String(text) => {
                serde_json::from_str(text).map(std::borrow::Cow::Owned).map_err(|e| format!("not JSON: {e}"))
            }
            v => Ok(std::borrow::Cow::Borrowed(v)),
        }
    }
}

/// Request validation of a route (`docs/transform.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateConfig {
    /// Method → JSON Schema (draft 2020-12) the body must match.
    #[serde(default)]
    pub body: BTreeMap<String, JsonDoc>,
    /// A larger body is refused (413) before it is parsed.
    #[serde(default = "default_validate_max_body")]
    pub max_body_bytes: usize,
    /// A body nested deeper is refused (400) before it is parsed.
    #[serde(default = "default_validate_max_depth")]
    pub max_depth: usize,
    /// Query parameters by name.
    #[serde(default)]
    pub query: BTreeMap<String, ParamSpec>,
    /// Request headers by name.
    #[serde(default)]
    pub headers: BTreeMap<String, ParamSpec>,
    /// Most failures listed in a 400.
    #[serde(default = "default_validate_max_errors")]
    pub max_errors: usize,
}

fn default_validate_max_body() -> usize {
    1 << 20
}
fn default_validate_max_depth() -> usize {
    32
}
fn default_validate_max_errors() -> usize {
    10
}

/// What a query parameter or header must be.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(default)]
    pub required: bool,
    #[serde(default, rename = "type")]
    pub kind: ParamType,
    /// The values allowed (before `type` applies).
    #[serde(default, rename = "enum")]
    pub one_of: Vec<String>,
    /// A regular expression the whole value must match (linear-time engine).
    pub pattern: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    #[default]
    String,
    Integer,
    Number,
    Boolean,
}

/// A REST route onto a SOAP service (`docs/transform.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoapConfig {
    #[serde(default)]
    pub version: SoapVersion,
    /// `SOAPAction` (1.1) or the `action` media type parameter (1.2).
    pub action: Option<String>,
    /// The content of the envelope's `Body`: a template whose values are
    /// XML-escaped; `$(body.…)` reads the JSON request body.
    pub body: String,
    /// A larger JSON request body is refused (413).
    #[serde(default = "default_soap_max_request")]
    pub max_request_bytes: usize,
    /// The status of a client fault (`Client`, `Sender`); server faults are 502.
    #[serde(default = "default_client_fault_status")]
    pub client_fault_status: u16,
    /// How the answer is read; `always_array` paths start at the element
    /// inside `Body` (`GetBalanceResponse.entry`).
    #[serde(default)]
    pub response: XmlConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SoapVersion {
    #[default]
    #[serde(rename = "1.1")]
    V11,
    #[serde(rename = "1.2")]
    V12,
}

fn default_soap_max_request() -> usize {
    64 << 10
}
fn default_client_fault_status() -> u16 {
    400
}

/// A REST route onto a fixed GraphQL query (`docs/transform.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphqlConfig {
    /// The query sent, its operation chosen by `operation_name` when it has several.
    pub query: String,
    pub operation_name: Option<String>,
    /// Variable → template. Values are converted to the variable's declared
    /// type (`Int`, `Float`, `Boolean`; others as strings); a template that is
    /// one `$(body.…)` passes that JSON value as it is.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// A larger JSON request body is refused (413).
    #[serde(default = "default_soap_max_request")]
    pub max_request_bytes: usize,
    /// A larger answer is a 502.
    #[serde(default = "default_graphql_max_response")]
    pub max_response_bytes: usize,
}

fn default_graphql_max_response() -> usize {
    8 << 20
}

/// Limits on the GraphQL queries a route proxies, checked before the upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphqlLimitsConfig {
    /// Deepest field nesting (fragments expanded).
    #[serde(default = "default_graphql_depth")]
    pub max_depth: usize,
    /// Most aliased fields.
    #[serde(default = "default_graphql_aliases")]
    pub max_aliases: usize,
    /// Most fields, each counted once per item a `first`/`last`/`limit`
    /// argument of an enclosing field asks for.
    #[serde(default = "default_graphql_cost")]
    pub max_cost: u64,
    /// Most operations in one batched request.
    #[serde(default = "default_graphql_batch")]
    pub max_batch: usize,
    /// A larger query body is refused (413).
    #[serde(default = "default_soap_max_request")]
    pub max_body_bytes: usize,
}

fn default_graphql_depth() -> usize {
    10
}
fn default_graphql_aliases() -> usize {
    30
}
fn default_graphql_cost() -> u64 {
    1000
}
fn default_graphql_batch() -> usize {
    10
}

/// A route answered by several backend calls made at once, their JSON
/// objects merged (`docs/transform.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    pub backends: Vec<AggregateBackend>,
    /// A backend answer larger than this counts as failed.
    #[serde(default = "default_xml_max_bytes")]
    pub max_backend_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateBackend {
    /// The upstream called (the route's when absent).
    pub upstream: Option<String>,
    /// Path and query sent, a template; values are percent-encoded.
    pub path: String,
    #[serde(default = "default_aggregate_method")]
    pub method: String,
    /// Time for this call (never past the route's `timeout`).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<std::time::Duration>,
    /// Put this backend's answer under this key.
    pub group: Option<String>,
    /// Dot paths kept (all when empty).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Dot paths removed.
    #[serde(default)]
    pub deny: Vec<String>,
}

fn default_aggregate_method() -> String {
    "GET".to_string()
}
