//! `/consumers`: consumers and their API keys, changed one at a time on top
//! of the document served (compare-and-set, retried when another write got
//! there first). Keys are hashed with the node's pepper; the document never
//! holds a key. Every change is idempotent, so `ctl` can retry a region
//! whose answer it did not get.
//!
//! - `GET /consumers`
//! - `PUT /consumers/{name}` (groups, metadata, limits; keys stay)
//! - `DELETE /consumers/{name}`
//! - `POST /consumers/{name}/keys` (`{"id", "key"}`, both optional)
//! - `DELETE /consumers/{name}/keys/{id}`

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use super::{error, read_json, AdminResponse, AdminState};
use meridian_core::admin::{ConsumerPut, ConsumerView, ConsumersView, IdentityChange, KeyIssue, KeyView};
use meridian_core::apikey;
use meridian_core::config::{validate_document, ApiKeyCredential, ConsumerConfig, GatewayDocument};
use meridian_core::http_server::json_response;

/// Attempts of a change when other writes keep getting there first.
const ATTEMPTS: usize = 5;

/// Why a change cannot be made.
enum Refusal {
    NotFound(String),
    Conflict(String),
}

impl Refusal {
    fn response(&self) -> AdminResponse {
        match self {
            Refusal::NotFound(m) => error(StatusCode::NOT_FOUND, m),
            Refusal::Conflict(m) => error(StatusCode::CONFLICT, m),
        }
    }
}

/// What a change did to a document.
enum Edit {
    Changed { key: Option<KeyView> },
    Unchanged { key: Option<KeyView> },
}

impl AdminState {
    pub(super) async fn consumers(&self, req: Request<Incoming>) -> AdminResponse {
        let path = req.uri().path().trim_start_matches("/consumers").trim_start_matches('/').to_string();
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (req.method().clone(), parts.as_slice()) {
            (Method::GET, []) => self.list_consumers().await,
            (Method::PUT, [name]) => {
                let put: ConsumerPut = match read_json(req, "{\"groups\": [...], \"metadata\": {...}}").await {
                    Ok(p) => p,
                    Err(r) => return *r,
                };
                let name = name.to_string();
                self.edit(&name, None, |doc| put_consumer(doc, &name, &put)).await
            }
            (Method::DELETE, [name]) => {
                let name = name.to_string();
                self.edit(&name, None, |doc| remove_consumer(doc, &name)).await
            }
            (Method::POST, [name, "keys"]) => {
                let issue: KeyIssue = match read_json(req, "{\"id\": \"...\", \"key\": \"...\"}").await {
                    Ok(k) => k,
                    Err(r) => return *r,
                };
                let Some(pepper) = self.gateway.settings.pepper.clone() else {
                    return error(StatusCode::CONFLICT, "this node has no identity pepper: API keys cannot be hashed");
                };
                let (key, made_here) = match issue.key {
                    Some(k) if k.len() >= 16 && k.len() <= 256 && k.bytes().all(|b| b.is_ascii_graphic()) => (k, false),
                    Some(_) => return error(StatusCode::BAD_REQUEST, "a key is 16 to 256 visible ASCII characters"),
                    None => match apikey::generate_key() {
                        Ok(k) => (k, true),
                        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                    },
                };
                let id = match issue.id.map_or_else(apikey::generate_id, Ok) {
                    Ok(id) => id,
                    Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                };
                let cred = ApiKeyCredential {
                    id,
                    hash: pepper.hash_hex(key.as_bytes()),
                    prefix: apikey::display_prefix(&key),
                };
                let name = name.to_string();
                let secret = made_here.then_some(key);
                self.edit(&name, secret, |doc| add_key(doc, &name, &cred)).await
            }
            (Method::DELETE, [name, "keys", id]) => {
                let (name, id) = (name.to_string(), id.to_string());
                self.edit(&name, None, |doc| revoke_key(doc, &name, &id)).await
            }
            _ => error(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// The document this node serves, and its version; in a region, the
    /// region's latest applied one.
    async fn current(&self) -> (GatewayDocument, u64) {
        if let Some(region) = &self.region {
            let state = region.state().await;
            if let Some(doc) = crate::raft::state::document_of(&state) {
                return (doc, state.version());
            }
        }
        let snap = self.gateway.snapshot();
        ((*snap.document).clone(), snap.version)
    }

    async fn list_consumers(&self) -> AdminResponse {
        let (doc, version) = self.current().await;
        let consumers = doc
            .consumers
            .iter()
            .map(|c| ConsumerView {
                name: c.name.clone(),
                groups: c.groups.clone(),
                metadata: c.metadata.clone(),
                keys: c.api_keys.iter().map(|k| KeyView { id: k.id.clone(), prefix: k.prefix.clone() }).collect(),
            })
            .collect();
        json_response(StatusCode::OK, &ConsumersView { version, consumers })
    }

    /// Apply `change` to the current document and commit it at that version;
    /// again (on the newer document) when another write got there first.
    async fn edit(
        &self,
        consumer: &str,
        secret: Option<String>,
        change: impl Fn(&mut GatewayDocument) -> Result<Edit, Refusal>,
    ) -> AdminResponse {
        for _ in 0..ATTEMPTS {
            let (mut doc, version) = self.current().await;
            let key = match change(&mut doc) {
                Err(r) => return r.response(),
                Ok(Edit::Unchanged { key }) => {
                    let answer = IdentityChange { version, consumer: consumer.into(), key, secret, unchanged: true };
                    return json_response(StatusCode::OK, &answer);
                }
                Ok(Edit::Changed { key }) => key,
            };
            let checked = match validate_document(doc) {
                Ok(d) => d,
                Err(errors) => {
                    return json_response(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &meridian_core::admin::ApiError::invalid(&errors),
                    )
                }
            };
            let answer = self.commit(checked, Some(version)).await;
            if answer.status() == StatusCode::CONFLICT {
                continue;
            }
            if answer.status() != StatusCode::OK {
                return answer;
            }
            tracing::info!(
                consumer,
                key = key.as_ref().map(|k| k.id.as_str()),
                version = version + 1,
                "consumers changed"
            );
            let answer =
                IdentityChange { version: version + 1, consumer: consumer.into(), key, secret, unchanged: false };
            return json_response(StatusCode::OK, &answer);
        }
        error(StatusCode::CONFLICT, "the document kept changing; try again")
    }
}

fn find<'a>(doc: &'a mut GatewayDocument, name: &str) -> Result<&'a mut ConsumerConfig, Refusal> {
    doc.consumers
        .iter_mut()
        .find(|c| c.name == name)
        .ok_or_else(|| Refusal::NotFound(format!("no consumer \"{name}\"")))
}

fn put_consumer(doc: &mut GatewayDocument, name: &str, put: &ConsumerPut) -> Result<Edit, Refusal> {
    match doc.consumers.iter_mut().find(|c| c.name == name) {
        Some(c) if c.groups == put.groups && c.metadata == put.metadata && c.limits == put.limits => {
            Ok(Edit::Unchanged { key: None })
        }
        Some(c) => {
            c.groups = put.groups.clone();
            c.metadata = put.metadata.clone();
            c.limits = put.limits.clone();
            Ok(Edit::Changed { key: None })
        }
        None => {
            doc.consumers.push(ConsumerConfig {
                name: name.to_string(),
                groups: put.groups.clone(),
                metadata: put.metadata.clone(),
                api_keys: Vec::new(),
                certificates: Vec::new(),
                limits: put.limits.clone(),
            });
            Ok(Edit::Changed { key: None })
        }
    }
}

fn remove_consumer(doc: &mut GatewayDocument, name: &str) -> Result<Edit, Refusal> {
    let before = doc.consumers.len();
    doc.consumers.retain(|c| c.name != name);
    Ok(if doc.consumers.len() == before { Edit::Unchanged { key: None } } else { Edit::Changed { key: None } })
}

fn add_key(doc: &mut GatewayDocument, name: &str, cred: &ApiKeyCredential) -> Result<Edit, Refusal> {
    let view = Some(KeyView { id: cred.id.clone(), prefix: cred.prefix.clone() });
    if let Some(owner) = doc.consumers.iter().find(|c| c.api_keys.iter().any(|k| k.id == cred.id)) {
        let same = owner.name == name && owner.api_keys.iter().any(|k| k.id == cred.id && k.hash == cred.hash);
        return if same {
            Ok(Edit::Unchanged { key: view })
        } else {
            Err(Refusal::Conflict(format!("another key has the id \"{}\"", cred.id)))
        };
    }
    find(doc, name)?.api_keys.push(cred.clone());
    Ok(Edit::Changed { key: view })
}

fn revoke_key(doc: &mut GatewayDocument, name: &str, id: &str) -> Result<Edit, Refusal> {
    let c = find(doc, name)?;
    let before = c.api_keys.len();
    c.api_keys.retain(|k| k.id != id);
    Ok(if c.api_keys.len() == before { Edit::Unchanged { key: None } } else { Edit::Changed { key: None } })
}
