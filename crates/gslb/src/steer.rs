//! Where a client is and which region should answer it: pure functions over
//! the configured geo table and the set of regions being served.

use std::net::IpAddr;

use ipnet::IpNet;

/// Degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coordinates {
    pub lat: f64,
    pub lon: f64,
}

/// Great-circle distance in kilometres (haversine).
pub fn distance_km(a: Coordinates, b: Coordinates) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

/// Where a client is, as configured for its network.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    At(Coordinates),
    /// Regions in order of preference.
    Order(Vec<String>),
}

/// CIDR → location, most specific match wins.
#[derive(Debug, Clone, Default)]
pub struct GeoTable {
    entries: Vec<(IpNet, Location)>,
}

impl GeoTable {
    pub fn new(mut entries: Vec<(IpNet, Location)>) -> Self {
        entries.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        Self { entries }
    }

    /// The location of `ip` and the prefix length of the matching entry.
    pub fn locate(&self, ip: IpAddr) -> Option<(&Location, u8)> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.entries.iter().find(|(net, _)| net.contains(&ip)).map(|(net, loc)| (loc, net.prefix_len()))
    }
}

/// A region as steering sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub at: Option<Coordinates>,
    pub weight: u32,
}

/// How a service chooses among served regions.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    Nearest,
    /// Regions in order; the first served one answers.
    Failover(Vec<String>),
    Weighted,
}

/// Pick the answering region among `served` (already filtered to healthy
/// regions of the service, in configuration order). `roll` in [0, 1) drives
/// the weighted policy.
pub fn choose<'a>(policy: &Policy, served: &[Candidate<'a>], client: Option<&Location>, roll: f64) -> Option<&'a str> {
    if served.is_empty() {
        return None;
    }
    match policy {
        Policy::Failover(order) => order.iter().find_map(|r| served.iter().find(|c| c.name == r).map(|c| c.name)),
        Policy::Weighted => {
            let total: u64 = served.iter().map(|c| u64::from(c.weight)).sum();
            if total == 0 {
                return Some(served[0].name);
            }
            let mut point = (roll * total as f64) as u64;
            for c in served {
                if point < u64::from(c.weight) {
                    return Some(c.name);
                }
                point -= u64::from(c.weight);
            }
            served.last().map(|c| c.name)
        }
        Policy::Nearest => match client {
            Some(Location::Order(order)) => {
                order.iter().find_map(|r| served.iter().find(|c| c.name == r).map(|c| c.name)).or(Some(served[0].name))
            }
            Some(Location::At(at)) => served
                .iter()
                .filter_map(|c| c.at.map(|r| (distance_km(*at, r), c.name)))
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, n)| n)
                .or(Some(served[0].name)),
            None => Some(served[0].name),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRANKFURT: Coordinates = Coordinates { lat: 50.1, lon: 8.7 };
    const VIRGINIA: Coordinates = Coordinates { lat: 38.9, lon: -77.0 };

    fn regions() -> Vec<Candidate<'static>> {
        vec![
            Candidate { name: "eu", at: Some(FRANKFURT), weight: 3 },
            Candidate { name: "us", at: Some(VIRGINIA), weight: 1 },
        ]
    }

    #[test]
    fn nearest_by_distance_and_by_order() {
        let paris = Location::At(Coordinates { lat: 48.9, lon: 2.35 });
        let nyc = Location::At(Coordinates { lat: 40.7, lon: -74.0 });
        assert_eq!(choose(&Policy::Nearest, &regions(), Some(&paris), 0.0), Some("eu"));
        assert_eq!(choose(&Policy::Nearest, &regions(), Some(&nyc), 0.0), Some("us"));
        let ordered = Location::Order(vec!["us".into(), "eu".into()]);
        assert_eq!(choose(&Policy::Nearest, &regions(), Some(&ordered), 0.0), Some("us"));
        // The nearest is down: the next nearest answers.
        assert_eq!(choose(&Policy::Nearest, &regions()[1..], Some(&paris), 0.0), Some("us"));
        assert!((distance_km(FRANKFURT, VIRGINIA) - 6_550.0).abs() < 100.0);
    }

    #[test]
    fn failover_and_weighted() {
        let order = Policy::Failover(vec!["us".into(), "eu".into()]);
        assert_eq!(choose(&order, &regions(), None, 0.0), Some("us"));
        assert_eq!(choose(&order, &regions()[..1], None, 0.0), Some("eu"));
        let picks: Vec<_> = (0..100).map(|i| choose(&Policy::Weighted, &regions(), None, i as f64 / 100.0)).collect();
        assert_eq!(picks.iter().filter(|p| **p == Some("eu")).count(), 75);
    }

    #[test]
    fn most_specific_cidr_wins() {
        let t = GeoTable::new(vec![
            ("10.0.0.0/8".parse().unwrap(), Location::Order(vec!["us".into()])),
            ("10.1.0.0/16".parse().unwrap(), Location::Order(vec!["eu".into()])),
        ]);
        let (loc, len) = t.locate("10.1.2.3".parse().unwrap()).unwrap();
        assert_eq!((loc, len), (&Location::Order(vec!["eu".into()]), 16));
        assert_eq!(t.locate("10.2.0.1".parse().unwrap()).unwrap().1, 8);
        assert!(t.locate("192.0.2.1".parse().unwrap()).is_none());
    }
}
