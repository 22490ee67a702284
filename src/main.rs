//! The `meridian` binary, the one composition root: parse the command line,
//! load and validate config, start telemetry and run the chosen role. The
//! roles live in the crates under `crates/` (core → dataplane → region →
//! gslb, lab); `ctl` is the operator CLI over the admin API. The lab roles
//! (`cluster`, `chaos`, `backend`) come with the default `lab` feature.

mod ctl;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use meridian_core::config::{self, Format};

/// The version string `meridian version` prints.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The request path allocates a few small objects per request (header maps,
/// channels); mimalloc serves them faster than glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "meridian", version = VERSION, about = "A multi-region, active-active API gateway cluster")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a gateway node.
    Gateway {
        /// The node file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a node file, balancer file, topology or drill (or, with --document, a gateway
    /// document) and print every error.
    Validate {
        file: PathBuf,
        /// The file is a bare gateway document, as sent to `PUT /config`.
        #[arg(long)]
        document: bool,
    },
    /// Run a DNS global balancer instance.
    Gslb {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Operate a running cluster through its admin API.
    Ctl(ctl::CtlArgs),
    /// Start, inspect or remove a whole multi-region cluster on this machine.
    #[cfg(feature = "lab")]
    Cluster(meridian_lab::cluster::ClusterArgs),
    /// Failover drills against a cluster.
    #[cfg(feature = "lab")]
    Chaos(meridian_lab::chaos::ChaosArgs),
    /// Run the sample backend used by the demo and the tests.
    #[cfg(feature = "lab")]
    Backend {
        #[arg(long, default_value = "127.0.0.1:9001")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = "backend")]
        name: String,
    },
    /// Print the version.
    Version,
    /// Started by `gateway` itself: removes the node's VIPs when the gateway process ends.
    #[command(hide = true)]
    VipGuard {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version => {
            println!("meridian {}", VERSION);
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { file, document } => validate(&file, document),
        Command::Gateway { config } => run_gateway(config),
        Command::VipGuard { config } => run_vip_guard(&config),
        Command::Gslb { config } => run_gslb(config),
        #[cfg(feature = "lab")]
        Command::Backend { listen, name } => run_backend(listen, name),
        #[cfg(feature = "lab")]
        Command::Cluster(args) => meridian_lab::cluster::run(args),
        #[cfg(feature = "lab")]
        Command::Chaos(args) => meridian_lab::chaos::run(args),
        Command::Ctl(args) => runtime(1).and_then(|rt| rt.block_on(ctl::run(args))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("meridian: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(file: &std::path::Path, document: bool) -> anyhow::Result<ExitCode> {
    let table: toml::Table =
        std::fs::read_to_string(file).ok().and_then(|t| toml::from_str(&t).ok()).unwrap_or_default();
    let is_gslb = table.contains_key("gslb");
    let result = if let Some(checked) = validate_lab_file(&table, file) {
        checked
    } else if is_gslb {
        meridian_gslb::config::load(file).map(|_| ())
    } else if document {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let format = if file.extension().is_some_and(|e| e == "json") { Format::Json } else { Format::Toml };
        config::parse_document(&text, format).map(|_| ())
    } else {
        meridian_region::gateway::load_node_file(file).map(|node| {
            for w in node.timing_warnings() {
                eprintln!("{}: warning: {w}", file.display());
            }
        })
    };
    match result {
        Ok(()) => {
            println!("{}: ok", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("{}: {e}", file.display());
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// Topologies and drills are lab files: checked when the lab is built in.
#[cfg(feature = "lab")]
fn validate_lab_file(table: &toml::Table, file: &std::path::Path) -> Option<Result<(), config::ConfigErrors>> {
    if table.contains_key("wan") && table.contains_key("regions") {
        Some(meridian_lab::cluster::topology::Topology::load(file).map(|_| ()))
    } else if table.contains_key("fault") {
        Some(meridian_lab::chaos::drill::Drill::load(file).map(|_| ()))
    } else {
        None
    }
}

#[cfg(not(feature = "lab"))]
fn validate_lab_file(_: &toml::Table, _: &std::path::Path) -> Option<Result<(), config::ConfigErrors>> {
    None
}

fn runtime(worker_threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = if worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if worker_threads > 1 {
            b.worker_threads(worker_threads);
        }
        b
    };
    b.enable_all().build().context("starting the runtime")
}

fn run_gateway(path: PathBuf) -> anyhow::Result<ExitCode> {
    let node = match meridian_region::gateway::load_node_file(&path) {
        Ok(n) => n,
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("{}: {e}", path.display());
            }
            return Ok(ExitCode::from(2));
        }
    };
    meridian_core::logging::init_logging(&node.telemetry).map_err(anyhow::Error::msg)?;
    // Lives as long as this process: when it ends, however, the guard removes the VIPs.
    let _vip_guard = match &node.vip {
        Some(v) => meridian_region::vip::guard::spawn(&path, v).context("starting the VIP guard")?,
        None => None,
    };
    let rt = runtime(node.runtime.worker_threads)?;
    rt.block_on(async move {
        let running = meridian_region::gateway::start(node).await?;
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    running.reload_certificates();
                    match running.reload(&path).await {
                        Ok(v) => tracing::info!(version = v, file = %path.display(), "reloaded on SIGHUP"),
                        Err(errors) => tracing::error!(file = %path.display(), errors = %errors, "reload refused; still serving the previous document"),
                    }
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        tracing::info!("shutting down: draining connections");
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn run_vip_guard(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let node = config::load_node_file(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?.into_inner();
    meridian_core::logging::init_logging(&node.telemetry).map_err(anyhow::Error::msg)?;
    if let Some(v) = &node.vip {
        meridian_region::vip::guard::run(v)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_gslb(path: PathBuf) -> anyhow::Result<ExitCode> {
    let cfg = match meridian_gslb::config::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("{}: {e}", path.display());
            }
            return Ok(ExitCode::from(2));
        }
    };
    let mut telemetry = cfg.telemetry.clone();
    if !telemetry.log_level.contains("hickory") {
        // hickory logs every query at info.
        telemetry.log_level = format!("{},hickory_server=warn", telemetry.log_level);
    }
    meridian_core::logging::init_logging(&telemetry).map_err(anyhow::Error::msg)?;
    let rt = runtime(0)?;
    rt.block_on(async move {
        let running = meridian_gslb::start(cfg).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(feature = "lab")]
fn run_backend(listen: std::net::SocketAddr, name: String) -> anyhow::Result<ExitCode> {
    let rt = runtime(1)?;
    rt.block_on(async move {
        let backend = meridian_lab::backend::start(listen, &name).await.with_context(|| format!("binding {listen}"))?;
        eprintln!("backend {name} listening on {}", backend.addr);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = backend.stopped => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}
