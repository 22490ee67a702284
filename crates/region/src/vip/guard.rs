//! VIPs die with their process. A gateway that owns VIPs starts a guard:
//! a child process (`meridian vip-guard`) holding the read end of a pipe
//! whose write end only the gateway holds. However the gateway ends (crash,
//! OOM kill, SIGKILL), the kernel closes that end; the guard reads EOF and
//! at once removes every VIP of the node still on this host, so a dead
//! process never leaves an address behind that answers ARP and refuses
//! connections. The pipe does not depend on which thread started the child
//! (unlike `PR_SET_PDEATHSIG`). The guard ignores the signals a terminal or
//! a service manager sends to the whole group, so it outlives the gateway's
//! own graceful shutdown (which removes the VIPs itself; removing an absent
//! address succeeds).

use std::io::Read;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use meridian_core::config::{VipBackend, VipConfig};

use super::actuator::Actuator;

/// The running guard; dropping it (at the gateway's exit) lets the guard
/// remove the addresses.
pub struct Guard {
    _pipe: ChildStdin,
    _child: Child,
}

/// Start the guard for the node file at `node_file`, when it moves addresses.
pub fn spawn(node_file: &Path, cfg: &VipConfig) -> std::io::Result<Option<Guard>> {
    if cfg.backend == VipBackend::None || cfg.addresses.is_empty() {
        return Ok(None);
    }
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("vip-guard")
        .arg("--config")
        .arg(node_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let pipe = child.stdin.take().ok_or_else(|| std::io::Error::other("no pipe to the guard"))?;
    Ok(Some(Guard { _pipe: pipe, _child: child }))
}

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("vip guard: {0}")]
    Io(#[from] std::io::Error),
    #[error("vip guard: {0}")]
    Actuator(#[from] super::actuator::ActuatorError),
}

/// The guard's life: wait for the gateway to end, then remove its VIPs.
pub fn run(cfg: &VipConfig) -> Result<(), GuardError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Ready before the gateway can die: the netlink socket is open now. A
    // terminal's Ctrl-C or a service manager's SIGTERM reach the whole group;
    // the gateway handles them and the guard waits for its end (a registered
    // handler replaces the default action for the process's life).
    let (actuator, _signals) = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let signals =
            [signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?, signal(SignalKind::hangup())?];
        Ok::<_, GuardError>((Actuator::from_config(cfg)?, signals))
    })?;
    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 64];
    while !matches!(stdin.read(&mut buf), Ok(0) | Err(_)) {}
    rt.block_on(async {
        for a in &cfg.addresses {
            match actuator.remove(&a.address).await {
                Ok(()) => tracing::info!(vip = %a.address, "VIP removed: the gateway process ended"),
                Err(e) => tracing::error!(vip = %a.address, error = %e, "could not remove a VIP of an ended gateway"),
            }
        }
    });
    Ok(())
}
