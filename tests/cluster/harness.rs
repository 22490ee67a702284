//! A region of in-process members with their own data directories.

use std::net::SocketAddr;
use std::time::Duration;

use meridian_region::gateway::RunningGateway;

use crate::support::*;

pub struct Region {
    pub dir: tempfile::TempDir,
    pub raft_ports: Vec<u16>,
    pub nodes: Vec<Option<RunningGateway>>,
    pub backend: meridian_lab::backend::Backend,
    pub tuning: String,
    /// Appended to every node file (e.g. a `[vip]` section).
    pub extra: String,
}

pub fn doc(backend: SocketAddr, route: &str) -> String {
    format!("[upstreams.u]\ntargets = [{{ address = \"{backend}\" }}]\n\n[[routes]]\nname = \"{route}\"\nupstream = \"u\"\n")
}

impl Region {
    /// `n` members; member 1 bootstraps the group with all of them.
    pub async fn start(n: usize, tuning: &str) -> Region {
        Self::start_with(n, tuning, "").await
    }

    pub async fn start_with(n: usize, tuning: &str, extra: &str) -> Region {
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "region-secret-for-tests-0123456789").unwrap();
        let raft_ports = (0..n).map(|_| closed_port().port()).collect();
        let backend = backend("b").await;
        let mut r = Region {
            dir,
            raft_ports,
            nodes: (0..n).map(|_| None).collect(),
            backend,
            tuning: tuning.to_string(),
            extra: extra.to_string(),
        };
        for i in 0..n {
            r.start_node(i).await;
        }
        r
    }

    pub fn node_config(&self, i: usize, bootstrap: bool) -> String {
        let dir = self.dir.path().display();
        let members: Vec<String> = self
            .raft_ports
            .iter()
            .enumerate()
            .map(|(j, p)| format!("{{ id = {}, address = \"127.0.0.1:{p}\" }}", j + 1))
            .collect();
        let tuning = &self.tuning;
        format!(
            r#"
[node]
name = "n{id}"
region = "eu"

[[listeners]]
name = "http"
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"
token = "{TOKEN}"

[telemetry]
access_log = false

[cluster]
node_id = {id}
listen = "127.0.0.1:{port}"
data_dir = "{dir}/n{id}"
bootstrap = {bootstrap}
members = [{members}]
secret_file = "{dir}/secret"
write_timeout = "2s"

[cluster.raft]
{tuning}

[gateway.upstreams.u]
targets = [{{ address = "{backend}" }}]

[[gateway.routes]]
name = "initial"
upstream = "u"

{extra}
"#,
            extra = self.extra,
            id = i + 1,
            port = self.raft_ports[i],
            members = members.join(", "),
            backend = self.backend.addr,
        )
    }

    pub async fn start_node(&mut self, i: usize) {
        let path = self.dir.path().join(format!("n{}.toml", i + 1));
        std::fs::write(&path, self.node_config(i, i == 0)).unwrap();
        let cfg = meridian_region::gateway::load_node_file(&path).unwrap_or_else(|e| panic!("{e}"));
        self.nodes[i] = Some(meridian_region::gateway::start(cfg).await.unwrap());
    }

    pub async fn stop_node(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            n.shutdown().await;
        }
    }

    pub fn node(&self, i: usize) -> &RunningGateway {
        self.nodes[i].as_ref().expect("node running")
    }

    pub fn running(&self) -> impl Iterator<Item = (usize, &RunningGateway)> {
        self.nodes.iter().enumerate().filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
    }

    /// The index of the running member that leads, once one does.
    pub async fn leader(&self) -> usize {
        let mut found = None;
        assert!(
            eventually(Duration::from_secs(10), || {
                let r = self
                    .running()
                    .find(|(_, n)| n.region.as_ref().is_some_and(|r| r.leader() == Some(r.id)))
                    .map(|(i, _)| i);
                found = r;
                async move { r.is_some() }
            })
            .await,
            "no leader elected"
        );
        found.unwrap_or(0)
    }

    /// Wait until every running member serves `version`.
    pub async fn converged(&self, version: u64) {
        assert!(
            eventually(Duration::from_secs(15), || async {
                self.running().all(|(_, n)| n.gateway.version() == version)
            })
            .await,
            "members did not converge on version {version}: {:?}",
            self.running().map(|(i, n)| (i, n.gateway.version())).collect::<Vec<_>>()
        );
    }

    pub async fn put(&self, i: usize, body: &str, if_match: Option<u64>) -> Reply {
        let mut b = http::Request::put(format!("http://{}/config", self.node(i).admin_addr))
            .header("authorization", format!("Bearer {TOKEN}"));
        if let Some(v) = if_match {
            b = b.header("if-match", v.to_string());
        }
        send(&client(), b.body(body.to_string().into()).unwrap()).await
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            self.stop_node(i).await;
        }
    }
}

/// `meridian ctl ARGS` with `config` and the test token: (success, stdout, stderr).
pub fn ctl(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("ctl")
        .args(args)
        .env("MERIDIAN_CTL_CONFIG", config)
        .env("MERIDIAN_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`ctl`] off the async runtime's threads.
pub async fn ctl_async(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || ctl(&config, &args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}
