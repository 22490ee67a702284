//! Every sample config in the repository parses and validates.

use std::path::{Path, PathBuf};

fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            toml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn every_sample_config_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["cluster", "docs", "benches"] {
        toml_files(&root.join(dir), &mut files);
    }
    assert!(!files.is_empty());
    let mut checked = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if table.contains_key("node") {
            if let Err(e) = meridian::config::load_node_file(f) {
                panic!("{}:\n{e}", f.display());
            }
            checked += 1;
        } else if table.contains_key("routes") || table.contains_key("upstreams") {
            if let Err(e) = meridian::config::parse_document(&text, meridian::config::Format::Toml) {
                panic!("{}:\n{e}", f.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 1, "no node file or document found among {files:?}");
}
