//! The authorization policy: whether the authenticated caller may make this
//! request. `deny` first, then `allow`, the methods of the caller's groups,
//! required scopes and claims; any failure is a 403.

use std::sync::Arc;

use http::Method;

use super::Flow;
use crate::identity::Caller;
use crate::proxy::context::RequestCtx;
use crate::proxy::error::ProxyError;
use meridian_core::config::Principal;

pub struct RouteAccess {
    pub route: Arc<str>,
    pub allow: Vec<Principal>,
    pub deny: Vec<Principal>,
    pub methods_by_group: Vec<(String, Vec<Method>)>,
    pub required_scopes: Vec<String>,
    pub required_claims: Vec<(String, Vec<String>)>,
    pub metrics: Arc<crate::telemetry::GatewayMetrics>,
}

fn names(p: &Principal, c: &Caller) -> bool {
    match p {
        Principal::Consumer(n) => *c.consumer == **n,
        Principal::Group(g) => c.in_group(g),
    }
}

impl RouteAccess {
    /// Why `caller` may not call with `method`, as (metric label, message).
    pub fn refusal(&self, caller: &Caller, method: &Method) -> Option<(&'static str, &'static str)> {
        if self.deny.iter().any(|p| names(p, caller)) {
            return Some(("denied", "this consumer may not call this route"));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|p| names(p, caller)) {
            return Some(("not_allowed", "this consumer may not call this route"));
        }
        if !self.methods_by_group.is_empty() && !self.method_allowed(caller, method) {
            return Some(("method", "this consumer may not use this method here"));
        }
        if !self.required_scopes.iter().all(|s| caller.has_scope(s)) {
            return Some(("scope", "a required scope is missing"));
        }
        if !self.required_claims.iter().all(|(c, accepted)| caller.claim_is_one_of(c, accepted)) {
            return Some(("claim", "a required claim is missing or has another value"));
        }
        None
    }

    fn method_allowed(&self, caller: &Caller, method: &Method) -> bool {
        self.methods_by_group.iter().any(|(g, methods)| caller.in_group(g) && methods.contains(method))
    }

    /// Methods some group may call (for CORS preflights); `None`: any.
    pub fn callable_methods(&self) -> Option<Vec<Method>> {
        if self.methods_by_group.is_empty() {
            return None;
        }
        let mut all: Vec<Method> = Vec::new();
        for (_, methods) in &self.methods_by_group {
            for m in methods {
                if !all.contains(m) {
                    all.push(m.clone());
                }
            }
        }
        Some(all)
    }
}

pub(super) fn on_request(a: &RouteAccess, ctx: &mut RequestCtx<'_>) -> Result<Flow, ProxyError> {
    let Some(caller) = &ctx.caller else {
        // Validation requires `auth` beside `access`; without a caller nobody is allowed.
        return Err(ProxyError::Forbidden("no authenticated caller"));
    };
    match a.refusal(caller, &ctx.head.method) {
        None => {
            a.metrics.access_decisions.with_label_values(&[&a.route, "allowed"]).inc();
            Ok(Flow::Next)
        }
        Some((label, message)) => {
            a.metrics.access_decisions.with_label_values(&[&a.route, label]).inc();
            tracing::debug!(route = %a.route, consumer = %caller.consumer, reason = label, "request forbidden");
            Err(ProxyError::Forbidden(message))
        }
    }
}
