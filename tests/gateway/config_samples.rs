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
    for dir in ["cluster", "docs", "benches", "chaos"] {
        toml_files(&root.join(dir), &mut files);
    }
    assert!(!files.is_empty());
    let mut checked = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if table.contains_key("wan") && table.contains_key("regions") {
            if let Err(e) = meridian_lab::cluster::topology::Topology::load(f) {
                panic!("{}:\n{e}", f.display());
            }
            checked += 1;
        } else if table.contains_key("fault") {
            if let Err(e) = meridian_lab::chaos::drill::Drill::load(f) {
                panic!("{}:\n{e}", f.display());
            }
            checked += 1;
        } else if table.contains_key("gslb") {
            if let Err(e) = meridian_gslb::config::load(f) {
                panic!("{}:\n{e}", f.display());
            }
            checked += 1;
        } else if table.contains_key("node") {
            if let Err(e) = meridian_region::gateway::load_node_file(f) {
                panic!("{}:\n{e}", f.display());
            }
            checked += 1;
        } else if table.contains_key("routes") || table.contains_key("upstreams") {
            if let Err(e) = meridian_core::config::parse_document(&text, meridian_core::config::Format::Toml) {
                panic!("{}:\n{e}", f.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "too few known files among {files:?}");
}

/// The node and balancer files `meridian cluster up` writes for the local
/// topology are valid, on namespaces and on loopback.
#[test]
fn rendered_cluster_files_are_valid() {
    use meridian_lab::cluster::{render::Context, topology::Topology, Mode};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let topo = Topology::load(&root.join("cluster/local.toml")).unwrap().into_inner();
    let dir = tempfile::tempdir().unwrap();
    for r in &topo.regions {
        for kind in ["cluster-secret", "report-secret"] {
            std::fs::write(dir.path().join(format!("{}.{kind}", r.name)), "0123456789abcdef0123456789abcdef").unwrap();
        }
    }
    for mode in [Mode::Netns, Mode::Loopback] {
        let ctx = Context { topo: &topo, mode, dir: dir.path(), token: "0123456789abcdef0123456789abcdef" };
        ctx.write_admin_pki().unwrap();
        for r in &topo.regions {
            for i in 1..=r.nodes {
                let f = dir.path().join(format!("{}-n{i}.toml", r.name));
                std::fs::write(&f, ctx.node(r, i)).unwrap();
                if let Err(e) = meridian_region::gateway::load_node_file(&f) {
                    panic!("{mode:?} {}:\n{e}\n{}", f.display(), ctx.node(r, i));
                }
            }
        }
        for g in &topo.gslbs {
            let f = dir.path().join(format!("{}.toml", g.name));
            std::fs::write(&f, ctx.gslb(&g.name)).unwrap();
            if let Err(e) = meridian_gslb::config::load(&f) {
                panic!("{mode:?} {}:\n{e}\n{}", f.display(), ctx.gslb(&g.name));
            }
        }
    }
}
