//! Logs: one `tracing` subscriber per process, pretty or JSON, filtered by
//! the node's `log_level` or `MERIDIAN_LOG`.

use crate::config::{LogFormat, TelemetryConfig};

/// Install the global subscriber. Call once, from `main`.
pub fn init_logging(cfg: &TelemetryConfig) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MERIDIAN_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.log_level))
        .map_err(|e| e.to_string())?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let result = match cfg.log_format {
        LogFormat::Pretty => builder.compact().try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
    result.map_err(|e| e.to_string())
}
