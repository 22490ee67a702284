//! Network namespaces for tests and drills: a switch namespace with a bridge,
//! one namespace per host joined to it by a veth pair, addresses inside the
//! namespaces only. Names are unique per run (`mrd<run>-<host>`); everything
//! is removed when the [`Lab`] drops — also after a failed test — and labs
//! left behind by a killed run are swept by the next one.
//!
//! Partitions are `nft` rules inside a host's namespace (this kernel has no
//! netem): traffic to and from the named peers is dropped.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;

/// Where labs note their owner's PID, so a later run can sweep orphans.
const REGISTRY: &str = "/run/meridian-lab";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{command}: {reason}")]
    Command { command: String, reason: String },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Run a command (`args[0]` with the rest) and wait; a non-zero exit is an
/// error carrying its stderr.
pub fn run(args: &[&str]) -> Result<Output, LabError> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Command { command: args.join(" "), reason: e.to_string() })?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: args.join(" "),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// Whether this process may create namespaces (root, `ip` present).
pub fn available() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root (network namespaces)".into());
    }
    run(&["ip", "netns", "list"]).map(|_| ()).map_err(|e| format!("ip netns: {e}"))
}

/// A host of the lab.
#[derive(Debug, Clone)]
pub struct Host {
    pub label: String,
    /// Namespace name.
    pub ns: String,
    pub ip: Ipv4Addr,
}

pub struct Lab {
    pub id: String,
    pub prefix_len: u8,
    switch: String,
    hosts: Vec<Host>,
    children: Mutex<Vec<Child>>,
    cleaned: bool,
    /// Veth pairs made so far (names their switch-side ends).
    ports: usize,
    /// A cluster's lab: outlives this process; removed by [`remove_all`].
    persistent: bool,
}

/// The namespace name of a host of lab `id`.
pub fn ns_name(id: &str, label: &str) -> String {
    format!("mrd{id}-{label}")
}

impl Lab {
    /// A new, empty lab. Sweeps labs whose owning process is gone.
    pub fn new() -> Result<Lab, LabError> {
        sweep_stale();
        let id = format!("{:04x}", fastrand::u16(..));
        let switch = format!("mrd{id}-sw");
        run(&["ip", "netns", "add", &switch])?;
        let lab = Lab::with_switch(id, switch, false);
        let _ = std::fs::create_dir_all(REGISTRY);
        let _ = std::fs::write(PathBuf::from(REGISTRY).join(&lab.id), std::process::id().to_string());
        run(&["ip", "-n", &lab.switch, "link", "set", "lo", "up"])?;
        lab.add_bridge("br0")?;
        Ok(lab)
    }

    fn with_switch(id: String, switch: String, persistent: bool) -> Lab {
        Lab {
            id,
            prefix_len: 24,
            switch,
            hosts: Vec::new(),
            children: Mutex::new(Vec::new()),
            cleaned: false,
            ports: 0,
            persistent,
        }
    }

    /// A lab with a fixed id that outlives this process (a cluster's): not
    /// swept by other labs, not removed on drop; [`remove_all`] removes it.
    pub fn persistent(id: &str) -> Result<Lab, LabError> {
        let switch = ns_name(id, "sw");
        run(&["ip", "netns", "add", &switch])?;
        run(&["ip", "-n", &switch, "link", "set", "lo", "up"])?;
        Ok(Lab::with_switch(id.to_string(), switch, true))
    }

    /// Another bridge in the switch namespace.
    pub fn add_bridge(&self, name: &str) -> Result<(), LabError> {
        run(&["ip", "-n", &self.switch, "link", "add", name, "type", "bridge"])?;
        run(&["ip", "-n", &self.switch, "link", "set", name, "up"])?;
        Ok(())
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn host(&self, label: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.label == label)
    }

    /// A host with `eth0` on the lab's bridge and address `ip/prefix_len`.
    pub fn add_host(&mut self, label: &str, ip: Ipv4Addr) -> Result<Host, LabError> {
        self.add_host_on(label, "br0", ip, self.prefix_len, None)
    }

    /// A host with `eth0` on `bridge`, address `ip/prefix`, and a default
    /// route through `via` when given.
    pub fn add_host_on(
        &mut self,
        label: &str,
        bridge: &str,
        ip: Ipv4Addr,
        prefix: u8,
        via: Option<Ipv4Addr>,
    ) -> Result<Host, LabError> {
        let ns = ns_name(&self.id, label);
        run(&["ip", "netns", "add", &ns])?;
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        let host = Host { label: label.to_string(), ns, ip };
        self.hosts.push(host.clone());
        self.add_leg(&host, bridge, "eth0", ip, prefix)?;
        if let Some(gw) = via {
            run(&["ip", "-n", &host.ns, "route", "add", "default", "via", &gw.to_string()])?;
        }
        Ok(host)
    }

    /// One more interface `ifname` of `host` on `bridge`, with `ip/prefix`.
    pub fn add_leg(
        &mut self,
        host: &Host,
        bridge: &str,
        ifname: &str,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), LabError> {
        let port = format!("p{}{}", self.ports, self.id);
        self.ports += 1;
        let ns = host.ns.as_str();
        run(&["ip", "-n", &self.switch, "link", "add", &port, "type", "veth", "peer", "name", ifname, "netns", ns])?;
        run(&["ip", "-n", &self.switch, "link", "set", &port, "master", bridge])?;
        run(&["ip", "-n", &self.switch, "link", "set", &port, "up"])?;
        run(&["ip", "-n", ns, "addr", "add", &format!("{ip}/{prefix}"), "dev", ifname])?;
        run(&["ip", "-n", ns, "link", "set", ifname, "up"])?;
        Ok(())
    }

    /// Start `program args` inside the host's namespace; killed at cleanup.
    pub fn spawn(&self, host: &Host, program: &str, args: &[&str], log: Option<File>) -> Result<u32, LabError> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &host.ns, program]).args(args).stdin(Stdio::null());
        match log {
            Some(f) => {
                let f2 = f.try_clone()?;
                cmd.stdout(f).stderr(f2);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child =
            cmd.spawn().map_err(|e| LabError::Command { command: program.to_string(), reason: e.to_string() })?;
        let pid = child.id();
        if let Ok(mut c) = self.children.lock() {
            c.push(child);
        }
        Ok(pid)
    }

    /// Stop a process started with [`Lab::spawn`] (`SIGKILL` when `hard`).
    pub fn kill(&self, pid: u32, hard: bool) {
        let signal = if hard { nix::sys::signal::Signal::SIGKILL } else { nix::sys::signal::Signal::SIGTERM };
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
        if let Ok(mut c) = self.children.lock() {
            if let Some(pos) = c.iter().position(|ch| ch.id() == pid) {
                let mut child = c.remove(pos);
                if hard {
                    let _ = child.wait();
                } else {
                    std::thread::spawn(move || {
                        let _ = child.wait();
                    });
                }
            }
        }
    }

    /// Run a command in the host's namespace and wait for it.
    pub fn exec(&self, host: &Host, args: &[&str]) -> Result<Output, LabError> {
        let mut full = vec!["ip", "netns", "exec", &host.ns];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Drop everything between `host` and `peers`, both ways (the host still
    /// talks to everyone else).
    pub fn partition(&self, host: &Host, peers: &[Ipv4Addr]) -> Result<(), LabError> {
        cut_off(&host.ns, peers)
    }

    pub fn heal(&self, host: &Host) -> Result<(), LabError> {
        reconnect(&host.ns)
    }

    /// Run `f` on a thread that has entered the host's namespace (sockets it
    /// opens live there).
    pub fn in_namespace<F, T>(&self, host: &Host, f: F) -> std::thread::JoinHandle<Result<T, LabError>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let ns = host.ns.clone();
        std::thread::spawn(move || {
            enter(&ns)?;
            Ok(f())
        })
    }

    /// Remove every process, namespace and note of this lab. Idempotent.
    pub fn cleanup(&mut self) {
        if self.cleaned {
            return;
        }
        self.cleaned = true;
        if let Ok(mut c) = self.children.lock() {
            for child in c.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
            c.clear();
        }
        for h in &self.hosts {
            let _ = run(&["ip", "netns", "del", &h.ns]);
        }
        let _ = run(&["ip", "netns", "del", &self.switch]);
        let _ = std::fs::remove_file(PathBuf::from(REGISTRY).join(&self.id));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.persistent {
            self.cleanup();
        }
    }
}

/// Move the calling thread into namespace `ns`: sockets it opens from then
/// on live there.
pub fn enter(ns: &str) -> io::Result<()> {
    let fd = File::open(PathBuf::from("/var/run/netns").join(ns))?;
    nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

/// Drop everything between namespace `ns` and `peers`, both ways, with an
/// nft table inside `ns` (the namespace still talks to everyone else).
pub fn cut_off(ns: &str, peers: &[Ipv4Addr]) -> Result<(), LabError> {
    let set = peers.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
    let rules = format!(
        "table inet mrdpartition {{\n chain input {{ type filter hook input priority 0; ip saddr {{ {set} }} drop; }}\n \
         chain output {{ type filter hook output priority 0; ip daddr {{ {set} }} drop; }}\n}}\n"
    );
    let path = std::env::temp_dir().join(format!("{ns}.nft"));
    std::fs::write(&path, rules)?;
    let r = run(&["ip", "netns", "exec", ns, "nft", "-f", &path.to_string_lossy()]);
    let _ = std::fs::remove_file(&path);
    r.map(|_| ())
}

/// Undo [`cut_off`].
pub fn reconnect(ns: &str) -> Result<(), LabError> {
    run(&["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "mrdpartition"]).map(|_| ())
}

/// Start `program args` in namespace `ns` (or here when `None`) in a session
/// of its own, so it outlives this process; output goes to `log`.
pub fn spawn_detached(ns: Option<&str>, program: &str, args: &[&str], log: File) -> Result<u32, LabError> {
    use std::os::unix::process::CommandExt;
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).process_group(0);
    let child = cmd.spawn().map_err(|e| LabError::Command { command: program.to_string(), reason: e.to_string() })?;
    let pid = child.id();
    // Reaped by whoever outlives us; a zombie of ours is collected on exit.
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    Ok(pid)
}

/// Kill what runs in every namespace of lab `id` and remove them.
/// Idempotent: nothing left is fine.
pub fn remove_all(id: &str) {
    let netns =
        run(&["ip", "netns", "list"]).map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let prefix = ns_name(id, "");
    for line in netns.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.starts_with(&prefix) {
            kill_inside(name);
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
}

fn kill_inside(ns: &str) {
    if let Ok(o) = run(&["ip", "netns", "pids", ns]) {
        for p in String::from_utf8_lossy(&o.stdout).split_whitespace() {
            if let Ok(p) = p.parse::<i32>() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// Remove namespaces of labs whose owning process no longer exists.
pub fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(REGISTRY) else { return };
    let netns =
        run(&["ip", "netns", "list"]).map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    for e in entries.flatten() {
        let id = e.file_name().to_string_lossy().to_string();
        let pid: i32 = std::fs::read_to_string(e.path()).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        let alive = pid > 0 && PathBuf::from(format!("/proc/{pid}")).exists();
        if alive {
            continue;
        }
        let prefix = format!("mrd{id}-");
        for line in netns.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name.starts_with(&prefix) {
                // Kill what still runs inside, then remove it.
                kill_inside(name);
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
        let _ = std::fs::remove_file(e.path());
    }
}
