//! Connection caps of a data-plane listener: at most `max_connections` open
//! at once, and at most `max_connections_per_client` from one client
//! address. A connection over a cap is closed as soon as it is accepted and
//! counted (`meridian_connections_refused_total{listener, reason}`), so a
//! flood from one address cannot take every slot of a listener.
//!
//! [`AddressLoad`] counts, per local address, the connections that are
//! waiting for or serving a request, so a VIP handed to another node is let
//! go once nothing is in flight on it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Listener,
    Client,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::Listener => "max_connections",
            Refused::Client => "max_connections_per_client",
        }
    }
}

/// Open connections per client address.
type PerClient = Arc<Mutex<HashMap<IpAddr, u32>>>;

/// The caps of one listener; shared by its accept loop.
pub struct ConnectionCaps {
    total: Arc<Semaphore>,
    /// Zero: no per-client cap.
    per_client: u32,
    clients: PerClient,
}

/// A listener slot, taken at accept, before the client is known.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// Held for a connection's life; gives its slots back when dropped.
pub struct Admitted {
    _total: Slot,
    client: Option<(IpAddr, PerClient)>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let Some((ip, clients)) = &self.client else { return };
        let mut map = clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(ip);
            }
        }
    }
}

impl ConnectionCaps {
    pub fn new(max_connections: usize, per_client: u32) -> Self {
        Self {
            total: Arc::new(Semaphore::new(max_connections.max(1))),
            per_client,
            clients: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A slot for a new connection from `client`, or why not.
    pub fn admit(&self, client: IpAddr) -> Result<Admitted, Refused> {
        self.admit_client(self.slot()?, client, false)
    }

    /// A listener slot for a connection just accepted.
    pub fn slot(&self) -> Result<Slot, Refused> {
        self.total.clone().try_acquire_owned().map(|p| Slot { _permit: p }).map_err(|_| Refused::Listener)
    }

    /// The connection holding `total` comes from `client`; a trusted proxy
    /// (`exempt`) carries many clients and is not held to the per-client cap.
    pub fn admit_client(&self, total: Slot, client: IpAddr, exempt: bool) -> Result<Admitted, Refused> {
        if self.per_client == 0 || exempt {
            return Ok(Admitted { _total: total, client: None });
        }
        let client = client.to_canonical();
        let mut map = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(client).or_insert(0);
        if *n >= self.per_client {
            return Err(Refused::Client);
        }
        *n += 1;
        Ok(Admitted { _total: total, client: Some((client, self.clients.clone())) })
    }
}

/// Busy connections per local address (the address a client connected to).
/// A connection is busy from its accept until its first request is
/// answered, and then while it serves a request; an idle keep-alive
/// connection or an upgraded tunnel is not.
#[derive(Debug, Default)]
pub struct AddressLoad {
    counters: Mutex<HashMap<IpAddr, Arc<AtomicU32>>>,
}

impl AddressLoad {
    /// The counter of `local`; one lookup per connection. Entries are never
    /// removed: there are as many as the addresses this host listens on.
    pub(crate) fn counter(&self, local: IpAddr) -> Arc<AtomicU32> {
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(local.to_canonical()).or_default().clone()
    }

    /// Connections busy on `local` now.
    pub fn busy(&self, local: IpAddr) -> u32 {
        let map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&local.to_canonical()).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// An accepted connection's busy count, given back if the connection ends
/// before it is served (refused, no PROXY header).
pub(crate) struct Pending(Option<Arc<AtomicU32>>);

impl Pending {
    /// Count a connection just accepted on the address of `counter` as busy
    /// until its first request takes the count over.
    pub(crate) fn new(counter: Arc<AtomicU32>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Pending(Some(counter))
    }

    /// The counter, now counted by whoever takes it.
    pub(crate) fn take(mut self) -> Arc<AtomicU32> {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_slots_come_back() {
        let caps = ConnectionCaps::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = caps.admit(a).unwrap();
        let _a2 = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).err(), Some(Refused::Client));
        let _b1 = caps.admit(b).unwrap();
        assert_eq!(caps.admit(b).err(), Some(Refused::Listener));
        drop(a1);
        assert!(caps.admit(a).is_ok());
        // The same client over IPv4-mapped IPv6 is the same client.
        let caps = ConnectionCaps::new(10, 1);
        let _x = caps.admit(a).unwrap();
        assert_eq!(caps.admit("::ffff:10.0.0.1".parse().unwrap()).err(), Some(Refused::Client));
    }
}
