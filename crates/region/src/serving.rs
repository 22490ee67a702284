//! Applied versus serving. The region's log decides which document every
//! member serves (applied); compiling it into this node's data plane can
//! still fail here alone — a node-local file it names is missing, or this
//! binary is older than the member that validated it. Then the node keeps
//! serving the previous version and says so: `serving_version` and
//! `serving_error` in `/cluster` and `ctl status`, the
//! `meridian_config_applied_version` gauge beside `meridian_config_version`,
//! `meridian_config_serve_failures_total`, and an error log line.

use std::sync::Arc;

use meridian_core::config::{parse_document, Format};
use meridian_dataplane::proxy::Gateway;
use tokio_util::sync::CancellationToken;

use crate::raft::state::ConfigRecord;
use crate::raft::{RegionNode, Serving};

/// Serve every document the region applies, until shutdown. The one place
/// a replicated document is parsed on a member.
pub async fn follow(region: Arc<RegionNode>, gateway: Arc<Gateway>, shutdown: CancellationToken) {
    let mut documents = region.documents();
    loop {
        let record = documents.borrow_and_update().clone();
        if let Some(record) = record {
            let status = serve(&region, &gateway, &record);
            region.serving().send_replace(status);
        }
        tokio::select! {
            changed = documents.changed() => if changed.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
    }
}

fn serve(region: &RegionNode, gateway: &Gateway, record: &ConfigRecord) -> Serving {
    let version = record.version;
    region.metrics().config_applied_version.set(version as i64);
    if gateway.version() == version {
        return Serving { applied: version, serving: version, error: None };
    }
    let result = parse_document(&record.document, Format::Json).and_then(|doc| gateway.apply(doc, version));
    match result {
        Ok(()) => {
            gateway.metrics.config_applies.with_label_values(&["region", "ok"]).inc();
            tracing::info!(version, "serving the region's document");
            Serving { applied: version, serving: version, error: None }
        }
        Err(errors) => {
            gateway.metrics.config_applies.with_label_values(&["region", "failed"]).inc();
            region.metrics().config_serve_failures.inc();
            let serving = gateway.version();
            tracing::error!(
                version,
                serving,
                errors = %errors,
                "the region's document cannot be served here; still serving the previous version"
            );
            Serving { applied: version, serving, error: Some(errors.to_string()) }
        }
    }
}
