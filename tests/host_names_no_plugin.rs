//! The host names no plugin: a plugin's name (a cargo feature of the root `Cargo.toml`) may not
//! appear in `host/src` as a string literal, a `plugins.<name>` config key, a `<name>_db` or
//! `<name>_measurement` setting, or a `monit_plugin_<name>` crate. The binary declares the
//! project's plugins (`src/main.rs`); each plugin owns its config.
//!
//! `STILL_IN_THE_HOST` lists what is left of the collectors' config in the host, per file and
//! count (issue 13, change 1: InfluxDB database and measurement names into `[plugins.*]`, legacy
//! config.ini keys declared by each plugin's registration). It may only shrink: a new occurrence,
//! anywhere, fails this test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const STILL_IN_THE_HOST: &[(&str, usize)] = &[("config.rs", 13), ("legacy_ini.rs", 38)];

/// The plugin features of the root Cargo.toml (`name = ["dep:monit-plugin-…"]`).
fn plugin_names(root: &Path) -> Vec<String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let features = manifest
        .split("[features]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .unwrap_or_default();
    features
        .lines()
        .filter(|l| l.contains("dep:monit-plugin-"))
        .filter_map(|l| l.split('=').next())
        .map(|n| n.trim().to_string())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Occurrences of `needle` not glued to identifier characters on the sides `bounded` asks for.
fn count(text: &str, needle: &str, left: bool, right: bool) -> usize {
    text.match_indices(needle)
        .filter(|(i, _)| {
            let before = text[..*i].chars().next_back();
            let after = text[i + needle.len()..].chars().next();
            (!left || !before.is_some_and(is_ident)) && (!right || !after.is_some_and(is_ident))
        })
        .count()
}

fn mentions(text: &str, name: &str) -> usize {
    count(text, &format!("\"{name}\""), false, false)
        + count(text, &format!("plugins.{name}"), true, true)
        + count(text, &format!("{name}_db"), true, true)
        + count(text, &format!("{name}_measurement"), true, true)
        + count(text, &format!("monit_plugin_{name}"), true, true)
}

#[test]
fn host_src_names_no_plugin() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let names = plugin_names(root);
    assert!(names.len() >= 6, "plugin features of Cargo.toml: {names:?}");
    let mut files = Vec::new();
    rust_files(&root.join("host/src"), &mut files);
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let n: usize = names.iter().map(|name| mentions(&text, name)).sum();
        if n > 0 {
            let rel = f.strip_prefix(root.join("host/src")).unwrap();
            found.insert(rel.display().to_string(), n);
        }
    }
    let allowed: BTreeMap<String, usize> = STILL_IN_THE_HOST
        .iter()
        .map(|(f, n)| (f.to_string(), *n))
        .collect();
    for (file, n) in &found {
        let ok = allowed.get(file).copied().unwrap_or(0);
        assert!(
            *n <= ok,
            "host/src/{file} names a plugin {n} times (allowed {ok}): the host must name no plugin"
        );
    }
}

/// The counter sees each form of a name, and not a longer word that contains it.
#[test]
fn mentions_counts_each_form() {
    let text = "let a = \"paasta\"; x.plugins.paasta.db; paasta_db; paasta_measurement; \
                monit_plugin_paasta; paastas; mypaasta_db";
    assert_eq!(mentions(text, "paasta"), 5);
}
