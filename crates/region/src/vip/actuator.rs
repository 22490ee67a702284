//! What moves an address: netlink on the local interface (and gratuitous
//! ARP / unsolicited NA), an operator's command (cloud APIs), or nothing
//! (loopback clusters, where DNS hands out node addresses).

use std::net::IpAddr;
use std::time::Duration;

use futures_util::TryStreamExt;
use netlink_packet_route::link::LinkAttribute;
use rtnetlink::{AddressMessageBuilder, Handle};

use meridian_core::config::VipAddr;

use super::arp;

#[derive(Debug, thiserror::Error)]
pub enum ActuatorError {
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("interface {0} not found")]
    NoInterface(String),
    #[error("announce: {0}")]
    Announce(std::io::Error),
    #[error("command {command} failed: {reason}")]
    Exec { command: String, reason: String },
}

pub enum Actuator {
    Netlink(Netlink),
    Exec { command: Vec<String>, interface: String },
    None,
}

pub struct Netlink {
    handle: Handle,
    interface: String,
}

impl Netlink {
    /// Open a netlink connection in the current network namespace.
    pub fn new(interface: &str) -> Result<Self, ActuatorError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| ActuatorError::Netlink(e.to_string()))?;
        tokio::spawn(conn);
        Ok(Self { handle, interface: interface.to_string() })
    }

    async fn link(&self) -> Result<(u32, Option<[u8; 6]>), ActuatorError> {
        let mut links = self.handle.link().get().match_name(self.interface.clone()).execute();
        let link = links
            .try_next()
            .await
            .map_err(|_| ActuatorError::NoInterface(self.interface.clone()))?
            .ok_or_else(|| ActuatorError::NoInterface(self.interface.clone()))?;
        let mac = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(m) if m.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(m);
                Some(mac)
            }
            _ => None,
        });
        Ok((link.header.index, mac))
    }
}

impl Actuator {
    /// The actuator a node's `[vip]` section asks for (needs a tokio runtime).
    pub fn from_config(cfg: &meridian_core::config::VipConfig) -> Result<Self, ActuatorError> {
        use meridian_core::config::VipBackend;
        Ok(match cfg.backend {
            VipBackend::Netlink => Actuator::Netlink(Netlink::new(&cfg.interface)?),
            VipBackend::Exec => Actuator::Exec { command: cfg.command.clone(), interface: cfg.interface.clone() },
            VipBackend::None => Actuator::None,
        })
    }

    /// Put the VIP on the interface, or refresh it there; with `lifetime`
    /// (netlink only) the kernel removes it unless refreshed within that.
    /// Adding an address that is there already succeeds.
    pub async fn add(&self, vip: &VipAddr, lifetime: Option<Duration>) -> Result<(), ActuatorError> {
        match self {
            Actuator::Netlink(n) => {
                let (index, _) = n.link().await?;
                let mut req = n.handle.address().add(index, vip.ip, vip.prefix).replace();
                if let Some(l) = lifetime {
                    let secs = u32::try_from(l.as_secs()).unwrap_or(u32::MAX).max(1);
                    let mut info = netlink_packet_route::address::CacheInfo::default();
                    info.ifa_preferred = secs;
                    info.ifa_valid = secs;
                    req.message_mut().attributes.push(netlink_packet_route::address::AddressAttribute::CacheInfo(info));
                }
                match req.execute().await {
                    Ok(()) => Ok(()),
                    Err(e) if e.to_string().contains("File exists") => Ok(()),
                    Err(e) => Err(ActuatorError::Netlink(e.to_string())),
                }
            }
            Actuator::Exec { command, interface } => run(command, "add", vip, interface).await,
            Actuator::None => Ok(()),
        }
    }

    /// Take the VIP off. Removing an address that is not there succeeds.
    pub async fn remove(&self, vip: &VipAddr) -> Result<(), ActuatorError> {
        match self {
            Actuator::Netlink(n) => {
                let (index, _) = n.link().await?;
                let msg = match vip.ip {
                    IpAddr::V4(a) => {
                        AddressMessageBuilder::<std::net::Ipv4Addr>::new().index(index).address(a, vip.prefix).build()
                    }
                    IpAddr::V6(a) => {
                        AddressMessageBuilder::<std::net::Ipv6Addr>::new().index(index).address(a, vip.prefix).build()
                    }
                };
                match n.handle.address().del(msg).execute().await {
                    Ok(()) => Ok(()),
                    Err(e) if e.to_string().contains("Cannot assign requested address") => Ok(()),
                    Err(e) => Err(ActuatorError::Netlink(e.to_string())),
                }
            }
            Actuator::Exec { command, interface } => run(command, "del", vip, interface).await,
            Actuator::None => Ok(()),
        }
    }

    /// Tell the segment that this host now answers for the VIP.
    pub async fn announce(&self, vip: &VipAddr) -> Result<(), ActuatorError> {
        let Actuator::Netlink(n) = self else { return Ok(()) };
        let (index, mac) = n.link().await?;
        let Some(mac) = mac else { return Ok(()) };
        let frame = match vip.ip {
            IpAddr::V4(a) => arp::garp_frame(mac, a),
            IpAddr::V6(a) => arp::unsolicited_na_frame(mac, a),
        };
        tokio::task::spawn_blocking(move || arp::send_frame(index, &frame))
            .await
            .map_err(|e| ActuatorError::Announce(std::io::Error::other(e)))?
            .map_err(ActuatorError::Announce)
    }
}

async fn run(command: &[String], op: &str, vip: &VipAddr, interface: &str) -> Result<(), ActuatorError> {
    let Some((program, args)) = command.split_first() else {
        return Err(ActuatorError::Exec { command: String::new(), reason: "empty command".into() });
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).arg(op).arg(vip.to_string()).arg(interface).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .map_err(|_| ActuatorError::Exec { command: program.clone(), reason: "timed out after 30 s".into() })?;
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(ActuatorError::Exec {
            command: program.clone(),
            reason: format!("{}: {}", o.status, String::from_utf8_lossy(&o.stderr).trim()),
        }),
        Err(e) => Err(ActuatorError::Exec { command: program.clone(), reason: e.to_string() }),
    }
}
