//! The `meridian` binary: parse the command line, load and validate config,
//! start telemetry and run the chosen role.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use meridian_core::config::{self, Format};

/// The request path allocates a few small objects per request (header maps,
/// channels); mimalloc serves them faster than glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "meridian", version = meridian::VERSION, about = "A multi-region, active-active API gateway cluster")]
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
    Ctl(meridian::ctl::CtlArgs),
    /// Start, inspect or remove a whole multi-region cluster on this machine.
    Cluster(meridian::cluster::ClusterArgs),
    /// Failover drills against a cluster.
    Chaos(meridian::chaos::ChaosArgs),
    /// Run the sample backend used by the demo and the tests.
    Backend {
        #[arg(long, default_value = "127.0.0.1:9001")]
        listen: SocketAddr,
        #[arg(long, default_value = "backend")]
        name: String,
    },
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version => {
            println!("meridian {}", meridian::VERSION);
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { file, document } => validate(&file, document),
        Command::Gateway { config } => run_gateway(config),
        Command::Gslb { config } => run_gslb(config),
        Command::Backend { listen, name } => run_backend(listen, name),
        Command::Cluster(args) => meridian::cluster::run(args),
        Command::Chaos(args) => meridian::chaos::run(args),
        Command::Ctl(args) => runtime(1).and_then(|rt| rt.block_on(meridian::ctl::run(args))),
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
    let result = if table.contains_key("wan") && table.contains_key("regions") {
        meridian::cluster::topology::Topology::load(file).map(|_| ())
    } else if table.contains_key("fault") {
        meridian::chaos::drill::Drill::load(file).map(|_| ())
    } else if is_gslb {
        meridian_gslb::config::load(file).map(|_| ())
    } else if document {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let format = if file.extension().is_some_and(|e| e == "json") { Format::Json } else { Format::Toml };
        config::parse_document(&text, format).map(|_| ())
    } else {
        meridian_region::gateway::load_node_file(file).map(|_| ())
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
    let rt = runtime(node.runtime.worker_threads)?;
    rt.block_on(async move {
        let running = meridian_region::gateway::start(node).await?;
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = hup.recv() => match running.reload(&path).await {
                    Ok(v) => tracing::info!(version = v, file = %path.display(), "reloaded on SIGHUP"),
                    Err(errors) => tracing::error!(file = %path.display(), errors = %errors, "reload refused; still serving the previous document"),
                },
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        tracing::info!("shutting down: draining connections");
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
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

fn run_backend(listen: SocketAddr, name: String) -> anyhow::Result<ExitCode> {
    let rt = runtime(1)?;
    rt.block_on(async move {
        let backend = meridian::backend::start(listen, &name).await.with_context(|| format!("binding {listen}"))?;
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
