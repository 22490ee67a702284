//! Answering DNS: the authoritative zone (SOA, NS, static records) and the
//! service names, steered per query from the current [`AnswerTable`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, TXT};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, BinEncoder};
use hickory_server::net::runtime::{Time, TokioTime};
use hickory_server::net::{xfer::Protocol, NetError};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
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
    fail_open_logged: std::sync::atomic::AtomicU64,
}

impl GslbHandler {
    pub fn new(zone: Arc<Zone>, table: Arc<ArcSwap<AnswerTable>>, metrics: Arc<DnsMetrics>) -> Self {
        Self { zone, table, metrics, fail_open_logged: std::sync::atomic::AtomicU64::new(u64::MAX) }
    }
}

fn meta(request: &Request, rcode: ResponseCode, aa: bool) -> Metadata {
    let mut m = Metadata::response_from_request(&request.metadata);
    m.response_code = rcode;
    m.authoritative = aa;
    m
}

async fn send<R: ResponseHandler>(
    request: &Request,
    handle: R,
    metadata: Metadata,
    edns: Option<&Edns>,
    answers: &[Record],
    authorities: &[Record],
) -> ResponseInfo {
    send_with(&request.queries, handle, metadata, edns, answers, authorities).await
}

async fn send_with<R: ResponseHandler>(
    queries: &Queries,
    mut handle: R,
    metadata: Metadata,
    edns: Option<&Edns>,
    answers: &[Record],
    authorities: &[Record],
) -> ResponseInfo {
    let response = MessageResponseBuilder::new(queries, edns).build(
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
            let mut m = metadata;
            m.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header { metadata: m, counts: HeaderCounts::default() })
        }
    }
}

/// Whether a question section (as received) uses a compression pointer.
fn compressed_question(mut bytes: &[u8]) -> bool {
    while let Some((&len, rest)) = bytes.split_first() {
        match len {
            0 => bytes = rest.get(4..).unwrap_or_default(), // end of a name; type and class follow
            l if l & 0xC0 != 0 => return true,
            l => bytes = rest.get(usize::from(l)..).unwrap_or_default(),
        }
    }
    false
}

/// An answer with no question section (FORMERR to a question that cannot be echoed).
async fn send_without_question<R: ResponseHandler>(handle: R, metadata: Metadata) -> ResponseInfo {
    let none = Queries::read(&mut BinDecoder::new(&[]), 0);
    match none {
        Ok(none) => send_with(&none, handle, metadata, None, &[], &[]).await,
        Err(_) => ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() }),
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

/// What to answer a query with, before it is sent; and how it is counted.
struct Reply<'a> {
    rcode: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    authority: Vec<Record>,
    /// Metric labels: the name asked (`_apex`, a service, `_static`, ...),
    /// the query type and the region steered to.
    name: &'a str,
    qtype: &'static str,
    region: String,
    /// A service answer, timed in `answer_seconds`.
    steered: bool,
}

impl<'a> Reply<'a> {
    /// An error answer, not authoritative, with nothing in it.
    fn refuse(rcode: ResponseCode, qtype: &'static str) -> Self {
        Reply {
            rcode,
            authoritative: false,
            answers: Vec::new(),
            authority: Vec::new(),
            name: "-",
            qtype,
            region: "-".into(),
            steered: false,
        }
    }

    /// An authoritative answer; with no records, the zone's SOA says why (RFC 2308).
    fn answer(zone: &Zone, rcode: ResponseCode, answers: Vec<Record>, name: &'a str, qtype: &'static str) -> Self {
        let authority = if answers.is_empty() { vec![zone.soa.clone()] } else { Vec::new() };
        Reply { rcode, authoritative: true, answers, authority, name, qtype, region: "-".into(), steered: false }
    }
}

impl GslbHandler {
    /// The answer to `request`: refusals, the zone apex, steered services,
    /// static records, NXDOMAIN.
    fn reply<'a>(&'a self, request: &Request, resp_edns: Option<&mut Edns>) -> Reply<'a> {
        let req_edns = request.edns.as_ref();
        if req_edns.is_some_and(|e| e.version() > 0) {
            return Reply::refuse(ResponseCode::BADVERS, "-");
        }
        if request.metadata.op_code != OpCode::Query {
            return Reply::refuse(ResponseCode::NotImp, "-");
        }
        let Ok(info) = request.request_info() else { return Reply::refuse(ResponseCode::FormErr, "-") };
        let qname = info.query.name();
        let qtype = info.query.query_type();
        let zone = &self.zone;
        if info.query.query_class() != DNSClass::IN || !zone.origin.zone_of(qname) {
            return Reply::refuse(ResponseCode::Refused, type_label(qtype));
        }
        let owner = info.query.original().name().clone();
        if *qname == zone.origin {
            let answers: Vec<Record> = match qtype {
                RecordType::SOA => vec![zone.soa.clone()],
                RecordType::NS => zone.ns.clone(),
                _ => Vec::new(),
            };
            return Reply::answer(zone, ResponseCode::NoError, answers, "_apex", type_label(qtype));
        }
        if let Some(svc) = zone.services.get(qname) {
            return self.steered_reply(request, svc, owner, qtype, resp_edns);
        }
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
            return Reply::answer(zone, ResponseCode::NoError, answers, "_static", type_label(qtype));
        }
        Reply::answer(zone, ResponseCode::NXDomain, Vec::new(), "_unknown", type_label(qtype))
    }

    /// A service name: the addresses of the region steering picks for the
    /// client (its EDNS Client Subnet, else the resolver's address).
    fn steered_reply<'a>(
        &'a self,
        request: &Request,
        svc: &'a Service,
        owner: Name,
        qtype: RecordType,
        resp_edns: Option<&mut Edns>,
    ) -> Reply<'a> {
        let ecs: Option<ClientSubnet> = match request.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)) {
            Some(EdnsOption::Subnet(cs)) if cs.source_prefix() > 0 => Some(*cs),
            _ => None,
        };
        let client_ip = ecs.map(|c| c.addr()).unwrap_or_else(|| request.src().ip());
        let located = self.zone.geo.locate(client_ip);
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
        if let (Some(e), Some(cs)) = (resp_edns, ecs) {
            // The answer holds for the whole matched network, not just this client.
            let scope = located.map_or(0, |(_, len)| len);
            e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(cs.addr(), cs.source_prefix(), scope)));
        }
        let mut reply = Reply::answer(&self.zone, ResponseCode::NoError, answers, &svc.label, type_label(qtype));
        reply.region = steered.region;
        reply.steered = true;
        reply
    }
}

impl GslbHandler {
    /// Answer one UDP packet from `src` as the server does: hickory's
    /// decoder (its limits), this handler, and an answer no larger than the
    /// client's EDNS buffer (512 bytes without EDNS). `None` when the packet
    /// does not decode (the server drops those).
    pub async fn answer_packet(&self, packet: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        let request = Request::from_bytes(packet.to_vec(), src, Protocol::Udp).ok()?;
        let capture = Capture::default();
        self.handle_request::<_, TokioTime>(&request, capture.clone()).await;
        let answer = capture.0.lock().ok()?.take();
        answer
    }
}

/// Keeps the encoded answer instead of sending it.
#[derive(Clone, Default)]
struct Capture(Arc<std::sync::Mutex<Option<Vec<u8>>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(response.edns().map_or(512, |e| e.max_payload()));
        let info = response.destructive_emit(&mut encoder)?;
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(bytes);
        }
        Ok(info)
    }
}

#[async_trait::async_trait]
impl RequestHandler for GslbHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, response_handle: R) -> ResponseInfo {
        let started = Instant::now();
        let mut resp_edns: Option<Edns> = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_version(0);
            e.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            e
        });
        // A question that points into the header cannot be echoed: the
        // pointer would name the answer's header bytes (hickory copies the
        // question as received). Nothing legitimate compresses a question.
        if compressed_question(request.queries.as_bytes()) {
            let metadata = meta(request, ResponseCode::FormErr, false);
            self.metrics.queries.with_label_values(&["-", "-", "-", rcode_label(ResponseCode::FormErr)]).inc();
            return send_without_question(response_handle, metadata).await;
        }
        let reply = self.reply(request, resp_edns.as_mut());
        self.metrics
            .queries
            .with_label_values(&[reply.name, reply.qtype, &reply.region, rcode_label(reply.rcode)])
            .inc();
        if reply.steered {
            self.metrics.answer_seconds.observe(started.elapsed().as_secs_f64());
        }
        let metadata = meta(request, reply.rcode, reply.authoritative);
        send(request, response_handle, metadata, resp_edns.as_ref(), &reply.answers, &reply.authority).await
    }
}

/// A zone with every kind of name (apex, a steered service, static
/// records) for answering packets without a balancer running: the DNS fuzz
/// target and the replay of its corpus.
pub const SAMPLE_CONFIG: &str = r#"
[gslb]
name = "sample"
dns = "127.0.0.1:0"
api = "127.0.0.1:0"

[zone]
origin = "example.test."
nameservers = ["ns1"]
[[zone.records]]
name = "ns1"
type = "A"
value = "192.0.2.53"
[[zone.records]]
name = "www"
type = "CNAME"
value = "api"
[[zone.records]]
name = "info"
type = "TXT"
value = "meridian sample zone"

[[regions]]
name = "eu"
secret_env = "MERIDIAN_SAMPLE_SECRET"
location = { lat = 50.1, lon = 8.7 }
vips = ["192.0.2.1", "2001:db8::1"]

[[regions]]
name = "us"
secret_env = "MERIDIAN_SAMPLE_SECRET"
location = { lat = 38.9, lon = -77.0 }
vips = ["198.51.100.1"]

[[services]]
name = "api"
policy = "nearest"
ttl = 5

[[geo]]
cidr = "192.0.2.0/24"
location = { lat = 48.8, lon = 2.3 }
"#;

/// A handler over [`SAMPLE_CONFIG`].
pub fn sample_handler() -> Result<GslbHandler, crate::GslbError> {
    let cfg: GslbConfig = meridian_core::config::parse(SAMPLE_CONFIG, meridian_core::config::Format::Toml)?;
    let cfg = crate::config::validate(cfg)?;
    crate::offline_handler(&cfg.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Message;

    /// Every input the DNS fuzz target found is answered without a panic,
    /// with a well-formed message within the client's buffer.
    #[tokio::test]
    async fn the_fuzz_corpus_gets_well_formed_answers() {
        let h = sample_handler().expect("the sample zone builds");
        let src: SocketAddr = "192.0.2.77:5353".parse().expect("an address");
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/dns_packet");
        let mut answered = 0;
        for entry in std::fs::read_dir(dir).expect("the corpus is in the repository") {
            let bytes = std::fs::read(entry.expect("a corpus entry").path()).expect("readable");
            if let Some(answer) = h.answer_packet(&bytes, src).await {
                let m = Message::from_vec(&answer).expect("the answer decodes");
                assert!(answer.len() <= MAX_UDP_PAYLOAD as usize, "{} bytes", answer.len());
                assert_eq!(m.metadata.id, u16::from_be_bytes([bytes[0], bytes[1]]));
                answered += 1;
            }
        }
        assert!(answered > 0, "the corpus holds answerable queries");
    }
}
