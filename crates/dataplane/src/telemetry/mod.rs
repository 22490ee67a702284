//! Metrics: each node has its own Prometheus registry so several nodes in
//! one process stay apart. (Logging is set up by `meridian_core::logging`.)

mod metrics;

pub use metrics::{status_class, GatewayMetrics, RouteMetrics};
