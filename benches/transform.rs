//! What conversions cost in-process: XML → JSON of a 10 KB document (the
//! sample backend's 100 accounts), a template rendered from request values,
//! and a GraphQL query measured before proxying.
//!
//! `cargo bench --bench transform -- [rounds] [json out]`

use std::borrow::Cow;
use std::time::Instant;

use meridian_core::template::{Scope, Template, Values, Var};
use meridian_dataplane::transform::{graphql, xml};

struct Request;
impl Values for Request {
    fn value(&self, var: &Var) -> Option<Cow<'_, str>> {
        Some(match var {
            Var::Path(..) => "42".into(),
            Var::Consumer => "acme".into(),
            _ => "value".into(),
        })
    }
}

fn per_op(rounds: usize, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..rounds {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / rounds as f64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(2000);
    // The document `?xml_items=100` of the sample backend answers.
    let doc = meridian_lab::backend::xml_document(100);
    let rules = xml::XmlRules { always_array: ["accounts.account".to_string()].into(), ..xml::XmlRules::default() };
    let xml_us = per_op(rounds, || {
        let v = xml::to_json(std::hint::black_box(doc.as_bytes()), &rules).expect("converts");
        std::hint::black_box(serde_json::to_vec(&v).expect("serialises"));
    });
    let mb_s = doc.len() as f64 / xml_us;
    println!("XML → JSON, {} bytes: {xml_us:8.2} µs ({mb_s:.0} MB/s)", doc.len());
    let captures: Vec<Box<str>> = vec!["id".into()];
    let t = Template::parse(
        "tenant=$(consumer);order=$(path.id);$(header.x-a)",
        Scope { captures: &captures, body: false },
    )
    .expect("a template");
    let template_us = per_op(rounds * 100, || {
        std::hint::black_box(t.render(&Request).expect("rendered"));
    });
    println!("template with 3 variables rendered: {:.3} µs", template_us);
    let query = "query Q($id: ID!) { user(id: $id) { name friends(first: 10) { ...F } } a: me { id } } fragment F on User { name posts { title } }";
    let graphql_us = per_op(rounds, || {
        std::hint::black_box(graphql::measure(query).expect("measured"));
    });
    println!("GraphQL query parsed and measured ({} bytes): {graphql_us:.2} µs", query.len());
    if let Some(out) = args.get(1) {
        let json = serde_json::json!({
            "xml_to_json": { "bytes": doc.len(), "us": xml_us, "mb_per_s": mb_s, "rounds": rounds },
            "template_render_us": template_us,
            "graphql_measure": { "bytes": query.len(), "us": graphql_us },
        });
        std::fs::write(out, serde_json::to_string_pretty(&json).expect("JSON")).expect("written");
        println!("raw: {out}");
    }
}
