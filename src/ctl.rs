//! `meridian ctl`: the operator's CLI over the admin API of one or more regions.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use serde::Deserialize;

use meridian_core::admin::{
    AddMember, ClusterView, ConsumerPut, ConsumersView, KeyIssue, VipMove, VipTableView, WriteAck,
};
use meridian_core::client::{admin_client, AdminClient};
use meridian_core::config::{parse_document, Format};

#[derive(Args, Debug)]
pub struct CtlArgs {
    /// Admin API base URL (overrides the ctl config), e.g. http://127.0.0.1:9901
    #[arg(long, global = true)]
    admin: Option<String>,
    /// Bearer token of the admin API.
    #[arg(long, env = "MERIDIAN_ADMIN_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Regions and their admin endpoints (TOML).
    #[arg(long, env = "MERIDIAN_CTL_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// CA certificate (PEM) that signed the admin APIs' certificates, for
    /// https:// endpoints (overrides the ctl config's `cacert`); without
    /// one, the system's roots.
    #[arg(long, env = "MERIDIAN_CACERT", global = true)]
    cacert: Option<PathBuf>,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand, Debug)]
enum CtlCommand {
    /// Apply a gateway document to a region (or every region).
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[arg(long, conflicts_with = "all_regions")]
        region: Option<String>,
        #[arg(long)]
        all_regions: bool,
        /// Only apply if the region serves this version now (compare-and-set).
        #[arg(long)]
        expected_version: Option<u64>,
    },
    /// Show what a region serves.
    Get {
        #[command(subcommand)]
        what: GetWhat,
    },
    /// Members of each region: role, term, applied version, health.
    Status {
        #[arg(long, conflicts_with = "all_regions")]
        region: Option<String>,
        #[arg(long)]
        all_regions: bool,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Virtual IPs: who owns what; graceful moves.
    Vip {
        #[command(subcommand)]
        op: VipOp,
        #[arg(long)]
        region: Option<String>,
    },
    /// Drain a member (its VIPs move away gracefully), or take it back with --undo.
    Node {
        #[command(subcommand)]
        op: NodeOp,
        #[arg(long)]
        region: Option<String>,
    },
    /// Consumers of the APIs. Changes go to every region (identity is
    /// global) unless --region names one; a region that does not answer is
    /// retried, then reported.
    Consumers {
        #[command(subcommand)]
        op: ConsumersOp,
        #[arg(long, global = true)]
        region: Option<String>,
        /// Further attempts on a region that does not answer (backoff from 0.5 s, doubling).
        #[arg(long, default_value_t = 4, global = true)]
        retries: u32,
    },
    /// API keys of consumers, in every region unless --region names one. A
    /// new key is printed once and stored nowhere but in the caller's hands.
    Keys {
        #[command(subcommand)]
        op: KeysOp,
        #[arg(long, global = true)]
        region: Option<String>,
        /// Further attempts on a region that does not answer (backoff from 0.5 s, doubling).
        #[arg(long, default_value_t = 4, global = true)]
        retries: u32,
    },
    /// Change the membership of a region's group.
    Members {
        #[command(subcommand)]
        op: MembersOp,
        #[arg(long)]
        region: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum GetWhat {
    /// The gateway document being served.
    Config {
        #[arg(long)]
        region: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum ConsumersOp {
    /// Consumers, their groups and their keys (id and prefix) in each region.
    List {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Create a consumer, or set its groups and metadata (keys stay).
    Add {
        name: String,
        #[arg(long = "group")]
        groups: Vec<String>,
        /// key=value, repeatable.
        #[arg(long = "meta")]
        metadata: Vec<String>,
    },
    /// Remove a consumer and its keys.
    Remove { name: String },
}

#[derive(Subcommand, Debug)]
enum KeysOp {
    /// Make a key for a consumer and store its hash in every region.
    Issue {
        consumer: String,
        /// The credential's id (default: key-<8 hex digits>).
        #[arg(long)]
        id: Option<String>,
        /// Store a key read from standard input instead of making one (to
        /// finish an issue in a region that was unreachable).
        #[arg(long)]
        key_stdin: bool,
    },
    /// Revoke a key by id.
    Revoke { consumer: String, id: String },
}

#[derive(Subcommand, Debug)]
enum MembersOp {
    /// Add a node (it must be running, without bootstrap) as a learner, then a voter.
    Add { id: u64, address: String },
    /// Remove a node from the voters.
    Remove { id: u64 },
}

#[derive(Subcommand, Debug)]
enum VipOp {
    /// Every VIP of the region, its owner and epoch.
    List {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Hand a VIP to another member without two owners at once.
    Move {
        vip: String,
        #[arg(long)]
        to: u64,
    },
}

#[derive(Subcommand, Debug)]
enum NodeOp {
    Drain {
        id: u64,
        #[arg(long)]
        undo: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Output {
    Table,
    Json,
}

/// `meridian-ctl.toml`: which admin endpoints belong to which region.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CtlConfig {
    #[serde(default)]
    default_region: Option<String>,
    /// CA certificate for https:// endpoints, relative to this file.
    #[serde(default)]
    cacert: Option<PathBuf>,
    regions: BTreeMap<String, RegionEndpoints>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionEndpoints {
    admin: Vec<String>,
}

struct Ctl {
    regions: BTreeMap<String, Vec<String>>,
    default_region: String,
    token: Option<String>,
    client: AdminClient,
}

struct Answer {
    status: u16,
    body: serde_json::Value,
}

impl Ctl {
    fn new(args: &CtlArgs) -> anyhow::Result<Self> {
        let mut cacert = args.cacert.clone();
        let (regions, default_region) = match (&args.admin, &args.config) {
            (Some(url), _) => (BTreeMap::from([("default".to_string(), vec![url.clone()])]), "default".to_string()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                let cfg: CtlConfig = meridian_core::config::parse(&text, Format::Toml)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                let default = cfg
                    .default_region
                    .clone()
                    .or_else(|| cfg.regions.keys().next().cloned())
                    .context("the ctl config lists no region")?;
                let base = path.parent().unwrap_or_else(|| std::path::Path::new("."));
                cacert = cacert.or_else(|| cfg.cacert.as_ref().map(|c| base.join(c)));
                (cfg.regions.into_iter().map(|(k, v)| (k, v.admin)).collect(), default)
            }
            (None, None) => (
                BTreeMap::from([("default".to_string(), vec!["http://127.0.0.1:9901".to_string()])]),
                "default".to_string(),
            ),
        };
        Ok(Self { regions, default_region, token: args.token.clone(), client: admin_client(cacert.as_deref())? })
    }

    fn pick(&self, region: Option<&String>, all: bool) -> anyhow::Result<Vec<String>> {
        if all {
            return Ok(self.regions.keys().cloned().collect());
        }
        let r = region.cloned().unwrap_or_else(|| self.default_region.clone());
        if !self.regions.contains_key(&r) {
            bail!("unknown region \"{r}\" (known: {})", self.regions.keys().cloned().collect::<Vec<_>>().join(", "));
        }
        Ok(vec![r])
    }

    /// Call the first endpoint of `region` that answers.
    async fn call(
        &self,
        region: &str,
        method: &str,
        path: &str,
        body: Option<(String, &str)>,
    ) -> anyhow::Result<Answer> {
        let endpoints = self.regions.get(region).context("unknown region")?;
        let mut last_err = None;
        for base in endpoints {
            let mut b = http::Request::builder().method(method).uri(format!("{}{}", base.trim_end_matches('/'), path));
            if let Some(t) = &self.token {
                b = b.header("authorization", format!("Bearer {t}"));
            }
            let req = match &body {
                Some((text, ct)) => b.header("content-type", *ct).body(Full::new(Bytes::from(text.clone()))),
                None => b.body(Full::default()),
            }
            .context("building the request")?;
            match self.client.request(req).await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let bytes = resp.into_body().collect().await.context("reading the answer")?.to_bytes();
                    let body = serde_json::from_slice(&bytes)
                        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()));
                    return Ok(Answer { status, body });
                }
                Err(e) => last_err = Some(format!("{base}: {e}")),
            }
        }
        bail!("region {region}: no admin endpoint answered ({})", last_err.unwrap_or_default())
    }
}

/// The first pause between attempts of an identity change.
const IDENTITY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(500);

/// Send one identity change to every region in `regions`, retrying a region
/// that cannot be reached or has no leader; `true` when any region failed.
async fn write_everywhere(
    ctl: &Ctl,
    regions: &[String],
    attempts: u32,
    method: &str,
    path: &str,
    body: Option<String>,
) -> bool {
    let mut failed = Vec::new();
    for r in regions {
        let mut pause = IDENTITY_BACKOFF;
        let mut last = String::new();
        let mut done = false;
        for attempt in 1..=attempts {
            let call = ctl.call(r, method, path, body.clone().map(|b| (b, "application/json"))).await;
            match call {
                Ok(a) if a.status == 200 => {
                    let unchanged = a.body["unchanged"].as_bool().unwrap_or(false);
                    let version = a.body["version"].as_u64().unwrap_or(0);
                    println!("{r}: {} (version {version})", if unchanged { "already so" } else { "done" });
                    done = true;
                    break;
                }
                // The request itself is wrong: retrying will not help.
                Ok(a) if a.status != 503 && a.status != 409 => {
                    last = format!("{} {}", a.status, a.body);
                    break;
                }
                Ok(a) => last = format!("{} {}", a.status, a.body),
                Err(e) => last = e.to_string(),
            }
            if attempt < attempts {
                eprintln!("{r}: attempt {attempt} failed ({last}); retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        if !done {
            println!("{r}: FAILED: {last}");
            failed.push(r.clone());
        }
    }
    if !failed.is_empty() {
        eprintln!(
            "not written to: {} — run the same command with --region for each once it is reachable (changes are idempotent)",
            failed.join(", ")
        );
    }
    !failed.is_empty()
}

fn identity_regions(ctl: &Ctl, region: Option<&String>) -> anyhow::Result<Vec<String>> {
    ctl.pick(region, region.is_none())
}

async fn consumers(ctl: &Ctl, op: &ConsumersOp, region: Option<&String>, attempts: u32) -> anyhow::Result<bool> {
    let regions = identity_regions(ctl, region)?;
    match op {
        ConsumersOp::List { output } => {
            let mut failed = false;
            let mut all = BTreeMap::new();
            for r in &regions {
                match ctl.call(r, "GET", "/consumers", None).await {
                    Ok(a) if a.status == 200 => {
                        let view: ConsumersView = serde_json::from_value(a.body).context("reading consumers")?;
                        all.insert(r.clone(), view);
                    }
                    Ok(a) => {
                        failed = true;
                        println!("{r}: {} {}", a.status, a.body);
                    }
                    Err(e) => {
                        failed = true;
                        println!("{r}: {e}");
                    }
                }
            }
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&all)?),
                Output::Table => {
                    println!("{:<10} {:<20} {:<24} KEYS", "REGION", "CONSUMER", "GROUPS");
                    for (r, view) in &all {
                        for c in &view.consumers {
                            let keys: Vec<String> =
                                c.keys.iter().map(|k| format!("{} ({}…)", k.id, k.prefix)).collect();
                            println!("{:<10} {:<20} {:<24} {}", r, c.name, c.groups.join(","), keys.join(" "));
                        }
                    }
                }
            }
            Ok(failed)
        }
        ConsumersOp::Add { name, groups, metadata } => {
            let mut put = ConsumerPut { groups: groups.clone(), ..ConsumerPut::default() };
            for m in metadata {
                let (k, v) = m.split_once('=').with_context(|| format!("--meta {m}: expected key=value"))?;
                put.metadata.insert(k.to_string(), v.to_string());
            }
            let body = serde_json::to_string(&put)?;
            Ok(write_everywhere(ctl, &regions, attempts, "PUT", &format!("/consumers/{name}"), Some(body)).await)
        }
        ConsumersOp::Remove { name } => {
            Ok(write_everywhere(ctl, &regions, attempts, "DELETE", &format!("/consumers/{name}"), None).await)
        }
    }
}

async fn keys(ctl: &Ctl, op: &KeysOp, region: Option<&String>, attempts: u32) -> anyhow::Result<bool> {
    let regions = identity_regions(ctl, region)?;
    match op {
        KeysOp::Issue { consumer, id, key_stdin } => {
            // Made here, so every region stores the same key under the same id.
            let key = if *key_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("reading the key from standard input")?;
                line.trim().to_string()
            } else {
                meridian_core::apikey::generate_key()?
            };
            let id = match id {
                Some(id) => id.clone(),
                None => meridian_core::apikey::generate_id()?,
            };
            let body = serde_json::to_string(&KeyIssue { id: Some(id.clone()), key: Some(key.clone()) })?;
            let failed =
                write_everywhere(ctl, &regions, attempts, "POST", &format!("/consumers/{consumer}/keys"), Some(body))
                    .await;
            if *key_stdin {
                println!("key {id} for {consumer} stored");
            } else {
                println!("key {id} for {consumer} (shown this once; store it now):\n{key}");
            }
            if failed {
                eprintln!("finish with: echo <key> | meridian ctl keys issue {consumer} --id {id} --key-stdin --region <region>");
            }
            Ok(failed)
        }
        KeysOp::Revoke { consumer, id } => {
            Ok(write_everywhere(ctl, &regions, attempts, "DELETE", &format!("/consumers/{consumer}/keys/{id}"), None)
                .await)
        }
    }
}

/// One line of `ctl status` (and one object of its JSON output).
#[derive(Debug, Default, serde::Serialize)]
struct StatusRow {
    region: String,
    node: Option<String>,
    id: Option<u64>,
    role: Option<String>,
    term: Option<u64>,
    applied_version: Option<u64>,
    serving_version: Option<u64>,
    serving_error: Option<String>,
    applied_index: Option<u64>,
    /// `ok`, `behind`, `not-serving` (applied but not compiled there),
    /// `unreachable`, or why the region could not be asked.
    health: String,
}

/// The rows of one region's members.
fn status_rows(region: &str, view: &ClusterView) -> Vec<StatusRow> {
    let leader_version =
        view.members.iter().filter_map(|m| m.status.as_ref().map(|s| s.config_version)).max().unwrap_or(0);
    view.members
        .iter()
        .map(|m| {
            let s = m.status.as_ref();
            let health = match s {
                None => "unreachable",
                Some(s) if s.serving_version != s.config_version => "not-serving",
                Some(s) if s.config_version == leader_version => "ok",
                Some(_) => "behind",
            };
            StatusRow {
                region: region.to_string(),
                node: Some(s.map_or_else(|| m.id.to_string(), |s| s.name.clone())),
                id: Some(m.id),
                role: s.map(|s| s.role.clone()),
                term: s.map(|s| s.term),
                applied_version: s.map(|s| s.config_version),
                serving_version: s.map(|s| s.serving_version),
                serving_error: s.and_then(|s| s.serving_error.clone()),
                applied_index: s.and_then(|s| s.applied_index),
                health: health.into(),
            }
        })
        .collect()
}

/// `ctl status`: every member of the chosen regions, with its role, term,
/// applied and served version and health. True when some region failed.
async fn status(ctl: &Ctl, region: Option<&String>, all_regions: bool, output: &Output) -> anyhow::Result<bool> {
    let mut failed = false;
    let mut rows = Vec::new();
    for r in ctl.pick(region, all_regions)? {
        let view = match ctl.call(&r, "GET", "/cluster", None).await {
            Ok(a) if a.status == 200 => serde_json::from_value::<ClusterView>(a.body).map_err(|e| e.to_string()),
            Ok(a) => Err(format!("error {}", a.status)),
            Err(e) => Err(e.to_string()),
        };
        match view {
            Ok(view) => rows.extend(status_rows(&r, &view)),
            Err(health) => {
                failed = true;
                rows.push(StatusRow { region: r, health, ..Default::default() });
            }
        }
    }
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default()),
        Output::Table => {
            println!(
                "{:<8} {:<14} {:<4} {:<10} {:>6} {:>8} {:>8} {:<12}",
                "REGION", "NODE", "ID", "ROLE", "TERM", "APPLIED", "SERVING", "HEALTH"
            );
            let dash = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
            for row in &rows {
                println!(
                    "{:<8} {:<14} {:<4} {:<10} {:>6} {:>8} {:>8} {:<12}",
                    row.region,
                    row.node.as_deref().unwrap_or("-"),
                    dash(row.id),
                    row.role.as_deref().unwrap_or("-"),
                    dash(row.term),
                    dash(row.applied_version),
                    dash(row.serving_version),
                    row.health,
                );
            }
        }
    }
    Ok(failed)
}

/// `ctl vip list`: the region's VIP table. True when the call failed.
async fn vip_list(ctl: &Ctl, r: &str, output: &Output) -> anyhow::Result<bool> {
    let a = ctl.call(r, "GET", "/vips", None).await?;
    if a.status != 200 {
        println!("{r}: {} {}", a.status, a.body);
        return Ok(true);
    }
    let table: VipTableView = serde_json::from_value(a.body).context("reading GET /vips")?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&table).unwrap_or_default()),
        Output::Table => {
            println!("{:<20} {:>6} {:>6} {:<12}", "VIP", "OWNER", "EPOCH", "MOVING");
            let dash = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
            for v in &table.vips {
                let moving = match v.releasing_from {
                    Some(f) => format!("{f} -> {}", dash(v.next_owner)),
                    None => "-".into(),
                };
                println!("{:<20} {:>6} {:>6} {:<12}", v.vip, dash(v.owner), v.epoch, moving);
            }
        }
    }
    Ok(false)
}

pub async fn run(args: CtlArgs) -> anyhow::Result<ExitCode> {
    let ctl = Ctl::new(&args)?;
    let mut failed = false;
    match &args.command {
        CtlCommand::Apply { file, region, all_regions, expected_version } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let format = if file.extension().is_some_and(|e| e == "json") { Format::Json } else { Format::Toml };
            if let Err(errors) = parse_document(&text, format) {
                for e in errors.iter() {
                    eprintln!("{}: {e}", file.display());
                }
                return Ok(ExitCode::from(1));
            }
            let ct = if matches!(format, Format::Json) { "application/json" } else { "application/toml" };
            let path = match expected_version {
                Some(v) => format!("/config?expected_version={v}"),
                None => "/config".to_string(),
            };
            for r in ctl.pick(region.as_ref(), *all_regions)? {
                let a = ctl.call(&r, "PUT", &path, Some((text.clone(), ct))).await?;
                if a.status == 200 {
                    let ack: WriteAck = serde_json::from_value(a.body).context("reading the write's answer")?;
                    println!("{r}: applied, version {}", ack.version);
                } else {
                    failed = true;
                    println!("{r}: refused ({}): {}", a.status, a.body);
                }
            }
        }
        CtlCommand::Get { what: GetWhat::Config { region } } => {
            let r = ctl.pick(region.as_ref(), false)?.remove(0);
            let a = ctl.call(&r, "GET", "/config", None).await?;
            failed = a.status != 200;
            println!("{}", serde_json::to_string_pretty(&a.body).unwrap_or_default());
        }
        CtlCommand::Status { region, all_regions, output } => {
            failed = status(&ctl, region.as_ref(), *all_regions, output).await?;
        }
        CtlCommand::Vip { op, region } => {
            let r = ctl.pick(region.as_ref(), false)?.remove(0);
            match op {
                VipOp::List { output } => failed = vip_list(&ctl, &r, output).await?,
                VipOp::Move { vip, to } => {
                    let body = serde_json::to_string(&VipMove { vip: vip.clone(), to: *to })?;
                    let a = ctl.call(&r, "POST", "/vips/move", Some((body, "application/json"))).await?;
                    failed = a.status != 200;
                    println!("{r}: {} {}", a.status, a.body);
                }
            }
        }
        CtlCommand::Node { op: NodeOp::Drain { id, undo }, region } => {
            let r = ctl.pick(region.as_ref(), false)?.remove(0);
            let path = format!("/nodes/{id}/{}", if *undo { "undrain" } else { "drain" });
            let a = ctl.call(&r, "POST", &path, None).await?;
            failed = a.status != 200;
            println!("{r}: {} {}", a.status, a.body);
        }
        CtlCommand::Consumers { op, region, retries } => {
            failed = consumers(&ctl, op, region.as_ref(), retries + 1).await?
        }
        CtlCommand::Keys { op, region, retries } => failed = keys(&ctl, op, region.as_ref(), retries + 1).await?,
        CtlCommand::Members { op, region } => {
            let r = ctl.pick(region.as_ref(), false)?.remove(0);
            let a = match op {
                MembersOp::Add { id, address } => {
                    let body = serde_json::to_string(&AddMember { id: *id, address: address.clone() })?;
                    ctl.call(&r, "POST", "/cluster/members", Some((body, "application/json"))).await?
                }
                MembersOp::Remove { id } => ctl.call(&r, "DELETE", &format!("/cluster/members/{id}"), None).await?,
            };
            failed = a.status != 200;
            println!("{r}: {} {}", a.status, a.body);
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
