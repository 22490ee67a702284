//! Answering DNS: the authoritative zone (SOA, NS, static records) and the
//! service names, steered per query from the current [`AnswerTable`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, TXT};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use prometheus::{Histogram, IntCounter, IntCounterVec};

use super::config::{absolute, GslbConfig, PolicyKind};
use super::registry::AnswerTable;
use super::steer::{choose, Candidate, GeoTable, Location, Policy};

/// Largest UDP answer we offer (RFC 9715 / DNS flag day).
const MAX_UDP_PAYLOAD: u16 = 1232;

pub struct Service {
    pub label: String,
    pub policy: Policy,
    pub regions: Vec<String>,
    pub weights: HashMap<String, u32>,
    pub ttl: u32,
}

pub struct DnsMetrics {
    pub queries: IntCounterVec,
    pub answer_seconds: Histogram,
    pub fail_open: IntCounter,
}

/// The zone and its services, built once from the configuration.
pub struct Zone {
    pub origin: LowerName,
    soa: Record,
    ns: Vec<Record>,
    statics: HashMap<LowerName, Vec<Record>>,
    services: HashMap<LowerName, Service>,
    pub geo: GeoTable,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ZoneError(String);

fn name(s: &str) -> Result<Name, ZoneError> {
    Name::from_ascii(s).map_err(|e| ZoneError(format!("{s}: {e}")))
}

impl Zone {
    pub fn build(cfg: &GslbConfig) -> Result<Zone, ZoneError> {
        let z = &cfg.zone;
        let origin = name(&z.origin)?;
        let mname = name(&absolute(&z.nameservers[0], &z.origin))?;
        let rname = name(&absolute(&z.hostmaster, &z.origin))?;
        let soa = Record::from_rdata(
            origin.clone(),
            z.ttl,
            RData::SOA(SOA::new(mname, rname, z.serial, 3600, 600, 86_400, z.negative_ttl)),
        );
        let mut ns = Vec::new();
        for n in &z.nameservers {
            ns.push(Record::from_rdata(origin.clone(), z.ttl, RData::NS(NS(name(&absolute(n, &z.origin))?))));
        }
        let mut statics: HashMap<LowerName, Vec<Record>> = HashMap::new();
        for r in &z.records {
            let owner = name(&absolute(&r.name, &z.origin))?;
            let ttl = r.ttl.unwrap_or(z.ttl);
            let data = match r.kind.as_str() {
                "A" => RData::A(A(r.value.parse().map_err(|_| ZoneError(format!("{}: bad A", r.name)))?)),
                "AAAA" => RData::AAAA(AAAA(r.value.parse().map_err(|_| ZoneError(format!("{}: bad AAAA", r.name)))?)),
                "CNAME" => RData::CNAME(CNAME(name(&absolute(&r.value, &z.origin))?)),
                // Strings over 255 bytes are split: one TXT record holds several strings.
                "TXT" => RData::TXT(TXT::new(
                    r.value.as_bytes().chunks(255).map(|c| String::from_utf8_lossy(c).into_owned()).collect(),
                )),
                other => return Err(ZoneError(format!("unsupported record type {other}"))),
            };
            statics.entry(LowerName::from(&owner)).or_default().push(Record::from_rdata(owner, ttl, data));
        }
        let mut services = HashMap::new();
        for s in &cfg.services {
            let owner = name(&absolute(&s.name, &z.origin))?;
            let policy = match s.policy {
                PolicyKind::Nearest => Policy::Nearest,
                PolicyKind::Failover => Policy::Failover(s.order.clone()),
                PolicyKind::Weighted => Policy::Weighted,
            };
            let regions = if s.regions.is_empty() {
                cfg.regions.iter().map(|r| r.name.clone()).collect()
            } else {
                s.regions.clone()
            };
            let weights = cfg
                .regions
                .iter()
                .map(|r| (r.name.clone(), s.weights.get(&r.name).copied().unwrap_or(r.weight)))
                .collect();
            let label = s.name.trim_end_matches('.').split('.').next().unwrap_or(&s.name).to_string();
            services.insert(LowerName::from(&owner), Service { label, policy, regions, weights, ttl: s.ttl });
        }
        let geo = GeoTable::new(
            cfg.geo
                .iter()
                .filter_map(|g| {
                    let net = g.cidr.parse().ok()?;
                    let loc = match g.location {
                        Some(p) => Location::At(super::steer::Coordinates { lat: p.lat, lon: p.lon }),
                        None => Location::Order(g.order.clone()),
                    };
                    Some((net, loc))
                })
                .collect(),
        );
        Ok(Zone { origin: LowerName::from(&origin), soa, ns, statics, services, geo })
    }
}

pub struct GslbHandler {
    pub zone: Arc<Zone>,
    pub table: Arc<ArcSwap<AnswerTable>>,
    pub metrics: Arc<DnsMetrics>,
    /// Second of the last fail-open log line (one per second at most).
    pub fail_open_logged: std::sync::atomic::AtomicU64,
}

fn meta(request: &Request, rcode: ResponseCode, aa: bool) -> Metadata {
    let mut m = Metadata::response_from_request(&request.metadata);
    m.response_code = rcode;
    m.authoritative = aa;
    m
}

async fn send<R: ResponseHandler>(
    request: &Request,
    mut handle: R,
    metadata: Metadata,
    edns: Option<&Edns>,
    answers: &[Record],
    authorities: &[Record],
) -> ResponseInfo {
    let response = MessageResponseBuilder::new(&request.queries, edns).build(
        metadata,
        answers.iter(),
        authorities.iter(),
        std::iter::empty(),
        std::iter::empty(),
    );
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, "DNS response not sent");
            let mut m = Metadata::response_from_request(&request.metadata);
            m.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header { metadata: m, counts: HeaderCounts::default() })
        }
    }
}

fn type_label(t: RecordType) -> &'static str {
    match t {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::SOA => "SOA",
        RecordType::NS => "NS",
        RecordType::TXT => "TXT",
        RecordType::CNAME => "CNAME",
        RecordType::ANY => "ANY",
        _ => "other",
    }
}

fn rcode_label(r: ResponseCode) -> &'static str {
    match r {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::BADVERS => "BADVERS",
        _ => "SERVFAIL",
    }
}

/// The steered answer of a service: region and addresses, or fail-open.
pub struct Steered {
    pub region: String,
    pub addresses: Vec<IpAddr>,
    pub fail_open: bool,
}

impl GslbHandler {
    /// Choose a region for a client located at `client` and collect its addresses.
    pub fn steer(&self, svc: &Service, client: Option<&Location>) -> Steered {
        let table = self.table.load();
        let served: Vec<Candidate<'_>> = table
            .served()
            .filter(|r| svc.regions.contains(&r.name))
            .map(|r| Candidate {
                name: &r.name,
                at: r.location,
                weight: svc.weights.get(&r.name).copied().unwrap_or(r.weight),
            })
            .collect();
        match choose(&svc.policy, &served, client, fastrand::f64()) {
            Some(region) => {
                let mut addresses =
                    table.regions.iter().find(|r| r.name == region).map(|r| r.healthy.clone()).unwrap_or_default();
                fastrand::shuffle(&mut addresses);
                Steered { region: region.to_string(), addresses, fail_open: false }
            }
            None => {
                // Every region looks down: answer every configured address rather than nothing.
                let mut addresses: Vec<IpAddr> = table
                    .regions
                    .iter()
                    .filter(|r| svc.regions.contains(&r.name))
                    .flat_map(|r| r.all.iter().copied())
                    .collect();
                fastrand::shuffle(&mut addresses);
                Steered { region: "all".into(), addresses, fail_open: true }
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for GslbHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, response_handle: R) -> ResponseInfo {
        let started = Instant::now();
        let req_edns = request.edns.as_ref();
        let mut resp_edns: Option<Edns> = req_edns.map(|req| {
            let mut e = Edns::new();
            e.set_version(0);
            e.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            e
        });
        let count = |name: &str, qtype: &str, region: &str, rcode: ResponseCode| {
            self.metrics.queries.with_label_values(&[name, qtype, region, rcode_label(rcode)]).inc();
        };
        if req_edns.is_some_and(|e| e.version() > 0) {
            count("-", "-", "-", ResponseCode::BADVERS);
            return send(
                request,
                response_handle,
                meta(request, ResponseCode::BADVERS, false),
                resp_edns.as_ref(),
                &[],
                &[],
            )
            .await;
        }
        if request.metadata.op_code != OpCode::Query {
            count("-", "-", "-", ResponseCode::NotImp);
            return send(
                request,
                response_handle,
                meta(request, ResponseCode::NotImp, false),
                resp_edns.as_ref(),
                &[],
                &[],
            )
            .await;
        }
        let Ok(info) = request.request_info() else {
            count("-", "-", "-", ResponseCode::FormErr);
            return send(
                request,
                response_handle,
                meta(request, ResponseCode::FormErr, false),
                resp_edns.as_ref(),
                &[],
                &[],
            )
            .await;
        };
        let qname = info.query.name();
        let qtype = info.query.query_type();
        let zone = &self.zone;
        if info.query.query_class() != DNSClass::IN || !zone.origin.zone_of(qname) {
            count("-", type_label(qtype), "-", ResponseCode::Refused);
            return send(
                request,
                response_handle,
                meta(request, ResponseCode::Refused, false),
                resp_edns.as_ref(),
                &[],
                &[],
            )
            .await;
        }
        let owner = info.query.original().name().clone();
        let soa = std::slice::from_ref(&zone.soa);

        // The zone apex.
        if *qname == zone.origin {
            let answers: Vec<Record> = match qtype {
                RecordType::SOA => vec![zone.soa.clone()],
                RecordType::NS => zone.ns.clone(),
                _ => Vec::new(),
            };
            count("_apex", type_label(qtype), "-", ResponseCode::NoError);
            let auth: &[Record] = if answers.is_empty() { soa } else { &[] };
            return send(
                request,
                response_handle,
                meta(request, ResponseCode::NoError, true),
                resp_edns.as_ref(),
                &answers,
                auth,
            )
            .await;
        }

        // A service: steered.
        if let Some(svc) = zone.services.get(qname) {
            let ecs: Option<ClientSubnet> = match req_edns.and_then(|e| e.option(EdnsCode::Subnet)) {
                Some(EdnsOption::Subnet(cs)) if cs.source_prefix() > 0 => Some(*cs),
                _ => None,
            };
            let client_ip = ecs.map(|c| c.addr()).unwrap_or_else(|| request.src().ip());
            let located = zone.geo.locate(client_ip);
            let steered = self.steer(svc, located.map(|(l, _)| l));
            if steered.fail_open {
                self.metrics.fail_open.inc();
                let second = meridian_core::clock::mono_ms() / 1000;
                if self.fail_open_logged.swap(second, std::sync::atomic::Ordering::Relaxed) != second {
                    tracing::warn!(service = %svc.label, "every region looks down: answering with all addresses (fail open)");
                }
            }
            let answers: Vec<Record> = steered
                .addresses
                .iter()
                .filter_map(|ip| match (ip, qtype) {
                    (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => {
                        Some(Record::from_rdata(owner.clone(), svc.ttl, RData::A(A(*v4))))
                    }
                    (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => {
                        Some(Record::from_rdata(owner.clone(), svc.ttl, RData::AAAA(AAAA(*v6))))
                    }
                    _ => None,
                })
                .collect();
            if let (Some(e), Some(cs)) = (resp_edns.as_mut(), ecs) {
                // The answer holds for the whole matched network, not just this client.
                let scope = located.map_or(0, |(_, len)| len);
                e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(cs.addr(), cs.source_prefix(), scope)));
            }
            count(&svc.label, type_label(qtype), &steered.region, ResponseCode::NoError);
            self.metrics.answer_seconds.observe(started.elapsed().as_secs_f64());
            let auth: &[Record] = if answers.is_empty() { soa } else { &[] };
            return send(
                request,
                response_handle,
                meta(request, ResponseCode::NoError, true),
                resp_edns.as_ref(),
                &answers,
                auth,
            )
            .await;
        }

        // Static records.
        if let Some(records) = zone.statics.get(qname) {
            let answers: Vec<Record> = records
                .iter()
                .filter(|r| {
                    r.record_type() == qtype || r.record_type() == RecordType::CNAME || qtype == RecordType::ANY
                })
                .cloned()
                .map(|mut r| {
                    r.name = owner.clone();
                    r
                })
                .collect();
            count("_static", type_label(qtype), "-", ResponseCode::NoError);
            let auth: &[Record] = if answers.is_empty() { soa } else { &[] };
            return send(
                request,
                response_handle,
                meta(request, ResponseCode::NoError, true),
                resp_edns.as_ref(),
                &answers,
                auth,
            )
            .await;
        }

        count("_unknown", type_label(qtype), "-", ResponseCode::NXDomain);
        send(request, response_handle, meta(request, ResponseCode::NXDomain, true), resp_edns.as_ref(), &[], soa).await
    }
}
