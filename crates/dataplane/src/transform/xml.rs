//! XML → JSON, for answers of legacy backends (`docs/transform.md` has the
//! mapping with examples). The document is read by a streaming parser with
//! caps on size, depth, elements and attributes; a `<!DOCTYPE` is refused
//! outright, so no entity is ever defined or expanded (no billion laughs, no
//! XXE): only the five predefined entities and character references are
//! read.
//!
//! The mapping, deterministic for a given document and rules:
//! - the root element becomes `{ "<root>": value }`;
//! - an element with neither attributes nor children is its text (trimmed),
//!   or `null` when it has none;
//! - otherwise an object: attributes as `"@name"`, children by name (keys in
//!   byte order), and its text, when it has some, as `"#text"`;
//! - a name seen more than once under the same parent is an array in
//!   document order; a path listed in `always_array` is an array even with
//!   one element, so that a count does not change a type;
//! - text is never converted to numbers or booleans; namespace prefixes and
//!   `xmlns` attributes are dropped unless `keep_prefixes` is set.

use std::collections::HashSet;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use serde_json::{Map, Value};

/// Limits and rules of a conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlRules {
    /// Dot paths of element names from the root, e.g. `accounts.account`.
    pub always_array: HashSet<String>,
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_elements: usize,
    pub max_attributes: usize,
    pub keep_prefixes: bool,
}

impl Default for XmlRules {
    fn default() -> Self {
        Self {
            always_array: HashSet::new(),
            max_bytes: 1 << 20,
            max_depth: 64,
            max_elements: 10_000,
            max_attributes: 64,
            keep_prefixes: false,
        }
    }
}

/// Why a document was not converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    #[error("nested deeper than {0} elements")]
    TooDeep(usize),
    #[error("more than {0} elements")]
    TooManyElements(usize),
    #[error("an element with more than {0} attributes")]
    TooManyAttributes(usize),
    #[error("a DOCTYPE is not accepted (no DTDs, no entity definitions)")]
    Doctype,
    #[error("unknown entity &{0};")]
    UnknownEntity(String),
    #[error("no root element")]
    NoRoot,
    #[error("text or a second root outside the root element")]
    OutsideRoot,
    #[error("malformed XML: {0}")]
    Malformed(String),
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

/// An element being read.
struct Frame {
    name: String,
    /// The length of the path buffer before this element's name was added.
    parent_path: usize,
    attrs: Vec<(String, String)>,
    children: Vec<(String, Value, bool)>,
    text: String,
}

/// Convert `input` under `rules`.
pub fn to_json(input: &[u8], rules: &XmlRules) -> Result<Value, XmlError> {
    if input.len() > rules.max_bytes {
        return Err(XmlError::TooLarge(rules.max_bytes));
    }
    let text = std::str::from_utf8(input).map_err(|_| XmlError::Malformed("not UTF-8".into()))?;
    let mut reader = Reader::from_str(text);
    let cfg = reader.config_mut();
    cfg.check_end_names = true;
    cfg.expand_empty_elements = false;
    let mut stack: Vec<Frame> = Vec::new();
    // The dot path of the open element, kept only when a rule needs it.
    let mut path = String::new();
    let mut root: Option<(String, Value)> = None;
    let mut elements = 0usize;
    loop {
        let event = reader.read_event().map_err(malformed)?;
        match event {
            Event::Start(e) | Event::Empty(e) if root.is_some() => {
                let _ = e;
                return Err(XmlError::OutsideRoot);
            }
            Event::Start(e) => {
                elements += 1;
                open(&mut stack, &mut path, &e, rules, elements)?;
            }
            Event::Empty(e) => {
                elements += 1;
                open(&mut stack, &mut path, &e, rules, elements)?;
                close(&mut stack, &mut path, &mut root, rules);
            }
            Event::End(_) => close(&mut stack, &mut path, &mut root, rules),
            Event::Text(t) => {
                let s = t.xml_content().map_err(malformed)?;
                push_text(&mut stack, &s)?;
            }
            Event::CData(t) => {
                let s = t.decode().map_err(malformed)?;
                match stack.last_mut() {
                    Some(f) => f.text.push_str(&s),
                    None => return Err(XmlError::OutsideRoot),
                }
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref().map_err(malformed)?.ok_or_else(|| malformed("invalid character reference"))?
                } else {
                    let name = r.decode().map_err(malformed)?;
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(s) => s.chars().next().unwrap_or('\0'),
                        None => return Err(XmlError::UnknownEntity(name.chars().take(64).collect())),
                    }
                };
                match stack.last_mut() {
                    Some(f) => f.text.push(resolved),
                    None => return Err(XmlError::OutsideRoot),
                }
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed("unclosed element"));
    }
    let (name, value) = root.ok_or(XmlError::NoRoot)?;
    let mut map = Map::new();
    map.insert(name, value);
    Ok(Value::Object(map))
}

/// A name, its prefix dropped unless kept, after `lead` (`@` for attributes).
fn name_of(raw: &[u8], keep_prefixes: bool, lead: &str) -> String {
    let local = if keep_prefixes { raw } else { raw.rsplit(|b| *b == b':').next().unwrap_or(raw) };
    let mut s = String::with_capacity(lead.len() + local.len());
    s.push_str(lead);
    match std::str::from_utf8(local) {
        Ok(text) => s.push_str(text),
        Err(_) => s.push_str(&String::from_utf8_lossy(local)),
    }
    s
}

fn open(
    stack: &mut Vec<Frame>,
    path: &mut String,
    e: &BytesStart<'_>,
    rules: &XmlRules,
    elements: usize,
) -> Result<(), XmlError> {
    if elements > rules.max_elements {
        return Err(XmlError::TooManyElements(rules.max_elements));
    }
    if stack.len() >= rules.max_depth {
        return Err(XmlError::TooDeep(rules.max_depth));
    }
    let name = name_of(e.name().as_ref(), rules.keep_prefixes, "");
    let parent_path = path.len();
    if !rules.always_array.is_empty() {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(&name);
    }
    let mut attrs = Vec::new();
    for (n, a) in e.attributes().enumerate() {
        if n >= rules.max_attributes {
            return Err(XmlError::TooManyAttributes(rules.max_attributes));
        }
        let a = a.map_err(malformed)?;
        let key = a.key.as_ref();
        if !rules.keep_prefixes && (key == b"xmlns" || key.starts_with(b"xmlns:")) {
            continue;
        }
        let value = a.unescape_value().map_err(|e| match e {
            quick_xml::Error::Escape(quick_xml::escape::EscapeError::UnrecognizedEntity(_, name)) => {
                XmlError::UnknownEntity(name.chars().take(64).collect())
            }
            other => malformed(other),
        })?;
        attrs.push((name_of(key, rules.keep_prefixes, "@"), value.into_owned()));
    }
    stack.push(Frame { name, parent_path, attrs, children: Vec::new(), text: String::new() });
    Ok(())
}

fn push_text(stack: &mut [Frame], s: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(f) => f.text.push_str(s),
        None if s.trim().is_empty() => {}
        None => return Err(XmlError::OutsideRoot),
    }
    Ok(())
}

/// The element on top is complete: its value goes to its parent (or is the root).
fn close(stack: &mut Vec<Frame>, path: &mut String, root: &mut Option<(String, Value)>, rules: &XmlRules) {
    let Some(f) = stack.pop() else { return };
    let array = !rules.always_array.is_empty() && rules.always_array.contains(path.as_str());
    path.truncate(f.parent_path);
    let value = value_of(f.attrs, f.children, f.text);
    match stack.last_mut() {
        Some(parent) => parent.children.push((f.name, value, array)),
        None => *root = Some((f.name, if array { Value::Array(vec![value]) } else { value })),
    }
}

/// `text` trimmed, reusing its allocation when nothing is cut.
fn trimmed(text: String) -> String {
    let t = text.trim();
    if t.len() == text.len() {
        text
    } else {
        t.to_string()
    }
}

fn value_of(attrs: Vec<(String, String)>, children: Vec<(String, Value, bool)>, text: String) -> Value {
    let text = trimmed(text);
    if attrs.is_empty() && children.is_empty() {
        return if text.is_empty() { Value::Null } else { Value::String(text) };
    }
    let mut map = Map::new();
    for (k, v) in attrs {
        map.insert(k, Value::String(v));
    }
    for (name, value, always) in children {
        match map.get_mut(&name) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                map.insert(name, if always { Value::Array(vec![value]) } else { value });
            }
        }
    }
    if !text.is_empty() {
        map.insert("#text".into(), Value::String(text));
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn convert(xml: &str) -> Result<Value, XmlError> {
        to_json(xml.as_bytes(), &XmlRules::default())
    }

    #[test]
    fn nested_elements_attributes_and_repeats_map_as_documented() {
        let xml = r#"<?xml version="1.0"?>
<!-- a comment -->
<bank:accounts xmlns:bank="urn:bank" owner="Ann &amp; Bob">
  <bank:account id="1"><balance currency="EUR">10.50</balance><note/></bank:account>
  <bank:account id="2"><balance>0</balance><note><![CDATA[<b>x</b>]]></note></bank:account>
  <total>10.50</total>
  <memo>mixed <em>text</em> here &#x263A;</memo>
</bank:accounts>"#;
        assert_eq!(
            convert(xml).unwrap(),
            json!({ "accounts": {
                "@owner": "Ann & Bob",
                "account": [
                    { "@id": "1", "balance": { "@currency": "EUR", "#text": "10.50" }, "note": null },
                    { "@id": "2", "balance": "0", "note": "<b>x</b>" }
                ],
                "total": "10.50",
                "memo": { "em": "text", "#text": "mixed  here ☺" }
            }})
        );
    }

    #[test]
    fn always_array_paths_keep_one_element_an_array() {
        let rules = XmlRules {
            always_array: ["list.item".to_string(), "list.item.tag".to_string()].into(),
            ..XmlRules::default()
        };
        let v = to_json(b"<list><item><tag>a</tag></item><other>b</other></list>", &rules).unwrap();
        assert_eq!(v, json!({ "list": { "item": [{ "tag": ["a"] }], "other": "b" } }));
    }

    /// Every input of the fuzz corpus converts or is refused, never panics.
    #[test]
    fn the_fuzz_corpus_converts_or_is_refused() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/xml_to_json");
        for entry in std::fs::read_dir(dir).expect("the corpus is in the repository") {
            let bytes = std::fs::read(entry.expect("a corpus entry").path()).expect("readable");
            let _ = to_json(&bytes, &XmlRules { max_depth: 16, max_elements: 256, ..XmlRules::default() });
        }
    }

    #[test]
    fn hostile_documents_are_refused() {
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><lolz>&lol2;</lolz>"#;
        assert_eq!(convert(laughs), Err(XmlError::Doctype));
        let xxe = r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"#;
        assert_eq!(convert(xxe), Err(XmlError::Doctype));
        assert_eq!(convert("<r>&x;</r>"), Err(XmlError::UnknownEntity("x".into())));
        assert_eq!(convert("<r a='&x;'/>"), Err(XmlError::UnknownEntity("x".into())));
        let deep = "<a>".repeat(65) + &"</a>".repeat(65);
        assert_eq!(convert(&deep), Err(XmlError::TooDeep(64)));
        let many = format!("<r>{}</r>", "<i/>".repeat(10_000));
        assert_eq!(convert(&many), Err(XmlError::TooManyElements(10_000)));
        let attrs: String = (0..65).map(|i| format!(" a{i}='x'")).collect();
        assert_eq!(convert(&format!("<r{attrs}/>")), Err(XmlError::TooManyAttributes(64)));
        let big = XmlRules { max_bytes: 10, ..XmlRules::default() };
        assert_eq!(to_json(b"<r>0123456789</r>", &big), Err(XmlError::TooLarge(10)));
        assert!(matches!(convert("<a><b></a>"), Err(XmlError::Malformed(_))));
        assert!(matches!(convert("<a>"), Err(XmlError::Malformed(_))));
        assert_eq!(convert("<a/><b/>"), Err(XmlError::OutsideRoot));
        assert_eq!(convert("text"), Err(XmlError::OutsideRoot));
        assert_eq!(convert(""), Err(XmlError::NoRoot));
    }
}
