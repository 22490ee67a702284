//! What a GraphQL query costs before it reaches the upstream: its depth,
//! aliases and cost, with fragments expanded. The text is checked for raw
//! nesting before it is parsed, fragment cycles are refused, and the walk
//! stops after a fixed number of visited selections (a fragment reused at
//! every level cannot make the check itself expensive).

use async_graphql_parser::types::{ExecutableDocument, Field, Selection, SelectionSet};
use meridian_core::config::{graphql_nesting_exceeds, GRAPHQL_MAX_NESTING};

/// Most selections one check visits.
const MAX_VISITS: usize = 100_000;
/// Largest page a `first`/`last`/`limit` argument counts for.
const MAX_PAGE: u64 = 10_000;

/// What a query asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measure {
    pub depth: usize,
    pub aliases: usize,
    pub cost: u64,
}

/// Why a query was not measured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("nested deeper than {GRAPHQL_MAX_NESTING} brackets")]
    Nesting,
    #[error("not a GraphQL query: {0}")]
    Syntax(String),
    #[error("fragment {0} spreads itself")]
    Cycle(String),
    #[error("unknown fragment {0}")]
    UnknownFragment(String),
    #[error("too complex to measure")]
    TooComplex,
}

/// Measure every operation of `text`; the largest of each figure.
pub fn measure(text: &str) -> Result<Measure, QueryError> {
    if graphql_nesting_exceeds(text, GRAPHQL_MAX_NESTING) {
        return Err(QueryError::Nesting);
    }
    let doc =
        async_graphql_parser::parse_query(text).map_err(|e| QueryError::Syntax(super::shorten(e.to_string(), 200)))?;
    measure_document(&doc)
}

fn measure_document(doc: &ExecutableDocument) -> Result<Measure, QueryError> {
    let mut total = Measure::default();
    for (_, op) in doc.operations.iter() {
        let mut walk = Walk { doc, visiting: Vec::new(), visits: 0, m: Measure::default() };
        walk.m.cost = walk.set(&op.node.selection_set.node, 0)?;
        total.depth = total.depth.max(walk.m.depth);
        total.aliases = total.aliases.max(walk.m.aliases);
        total.cost = total.cost.max(walk.m.cost);
    }
    Ok(total)
}

struct Walk<'d> {
    doc: &'d ExecutableDocument,
    visiting: Vec<&'d str>,
    visits: usize,
    m: Measure,
}

impl<'d> Walk<'d> {
    /// The cost of `set`, its fields at `depth + 1`.
    fn set(&mut self, set: &'d SelectionSet, depth: usize) -> Result<u64, QueryError> {
        let mut cost = 0u64;
        for item in &set.items {
            self.visits += 1;
            if self.visits > MAX_VISITS {
                return Err(QueryError::TooComplex);
            }
            cost = cost.saturating_add(match &item.node {
                Selection::Field(f) => self.field(&f.node, depth + 1)?,
                Selection::InlineFragment(i) => self.set(&i.node.selection_set.node, depth)?,
                Selection::FragmentSpread(s) => {
                    let name = s.node.fragment_name.node.as_str();
                    if self.visiting.contains(&name) {
                        return Err(QueryError::Cycle(name.to_string()));
                    }
                    let frag = self
                        .doc
                        .fragments
                        .get(&s.node.fragment_name.node)
                        .ok_or_else(|| QueryError::UnknownFragment(name.to_string()))?;
                    self.visiting.push(name);
                    let c = self.set(&frag.node.selection_set.node, depth)?;
                    self.visiting.pop();
                    c
                }
            });
        }
        Ok(cost)
    }

    fn field(&mut self, f: &'d Field, depth: usize) -> Result<u64, QueryError> {
        self.m.depth = self.m.depth.max(depth);
        if f.alias.is_some() {
            self.m.aliases += 1;
        }
        let page = f
            .arguments
            .iter()
            .filter(|(n, _)| matches!(n.node.as_str(), "first" | "last" | "limit"))
            .find_map(|(_, v)| v.node.to_string().parse::<u64>().ok())
            .map_or(1, |n| n.clamp(1, MAX_PAGE));
        let children = self.set(&f.selection_set.node, depth)?;
        Ok(1u64.saturating_add(page.saturating_mul(children)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_aliases_and_cost_count_fragments_and_pages() {
        let q = r#"
            query Q { me { name friends(first: 10) { ...F } } a: me { id } b: me { id } }
            fragment F on User { name posts { title } }
        "#;
        // me(1 + name 1 + friends(1 + 10 × (name 1 + posts(1 + title 1)))) + a(2) + b(2)
        assert_eq!(measure(q).unwrap(), Measure { depth: 4, aliases: 2, cost: 1 + 1 + (1 + 10 * 3) + 2 + 2 });
    }

    /// Every input of the fuzz corpus is measured or refused, never panics.
    #[test]
    fn the_fuzz_corpus_is_measured_or_refused() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/graphql_query");
        for entry in std::fs::read_dir(dir).expect("the corpus is in the repository") {
            let bytes = std::fs::read(entry.expect("a corpus entry").path()).expect("readable");
            let _ = measure(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn hostile_queries_are_refused() {
        let cycle = "{ ...A } fragment A on Q { ...B } fragment B on Q { ...A }";
        assert_eq!(measure(cycle), Err(QueryError::Cycle("A".into())));
        assert_eq!(measure(&("{a".repeat(200) + &"}".repeat(200))), Err(QueryError::Nesting));
        assert!(matches!(measure("{ a "), Err(QueryError::Syntax(_))));
        assert_eq!(measure("{ ...Nope }"), Err(QueryError::UnknownFragment("Nope".into())));
        // Each fragment spreads the next ten times: 10^8 fields if expanded.
        let mut bomb = String::from("{ ...F0 }");
        for i in 0..8 {
            bomb.push_str(&format!(" fragment F{i} on Q {{ {} }}", format!("...F{} ", i + 1).repeat(10)));
        }
        bomb.push_str(" fragment F8 on Q { x }");
        assert_eq!(measure(&bomb), Err(QueryError::TooComplex));
    }
}
