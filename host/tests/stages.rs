//! The host's folders are the stages of a tick, and data flows down them: a module may use
//! its own stage, an earlier stage, `model` and (from `evaluate` on) the plugin contract, never a
//! later stage. An arrow back up is how the old import circle began (configuration knew the
//! plugin registry, the registry the store clients, the clients configuration), so this test
//! reads the source, as `tests/host_names_no_plugin.rs` does, and names every such arrow.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// In the order a tick runs them.
const STAGES: &[&str] = &[
    "config",
    "metric_store",
    "evaluate",
    "hold",
    "store",
    "notify",
    "run",
];

/// Top-level modules every stage may use, and where the plugin contract becomes usable:
/// configuration and the store clients must not know plugins.
const SHARED: &[&str] = &["model"];
const PLUGIN_FROM: &str = "evaluate";

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module names a file refers to through `crate::` (or `super::` from a stage's
/// `mod.rs`), grouped imports (`use crate::{a, b::c}`) included. Comment lines are skipped.
fn referenced_modules(path: &Path, text: &str) -> BTreeSet<String> {
    let is_stage_root = path.file_name().is_some_and(|n| n == "mod.rs")
        && path.parent().and_then(Path::parent) == Some(src().as_path());
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut prefixes = vec!["crate::"];
        if is_stage_root {
            prefixes.push("super::");
        }
        for prefix in prefixes {
            let mut rest = code;
            while let Some(i) = rest.find(prefix) {
                // not the tail of a longer path such as `monit_host::crate::` or `a_crate::`
                let before = rest[..i].chars().next_back();
                rest = &rest[i + prefix.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                if let Some(group) = rest.strip_prefix('{') {
                    let end = group.find('}').unwrap_or(group.len());
                    for item in group[..end].split(',') {
                        let name: String = item
                            .trim()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if !name.is_empty() {
                            out.insert(name);
                        }
                    }
                } else {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            }
        }
    }
    out
}

fn stage_of(path: &Path) -> Option<&'static str> {
    let rel = path.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    STAGES.iter().copied().find(|s| *s == first)
}

fn rank(stage: &str) -> Option<usize> {
    STAGES.iter().position(|s| *s == stage)
}

#[test]
fn every_stage_is_a_folder_and_the_top_holds_only_the_shared_modules() {
    for stage in STAGES {
        let dir = src().join(stage);
        assert!(
            dir.join("mod.rs").is_file(),
            "{} has no mod.rs",
            dir.display()
        );
        let doc = std::fs::read_to_string(dir.join("mod.rs")).unwrap_or_default();
        assert!(
            doc.starts_with("//!"),
            "{stage}/mod.rs must open with its module doc (what enters, what leaves)"
        );
    }
    let mut top: Vec<String> = std::fs::read_dir(src())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    top.sort();
    assert_eq!(top, ["lib.rs", "model.rs", "plugin.rs", "testing.rs"]);
}

#[test]
fn no_module_uses_a_later_stage() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    assert!(
        files.len() > 20,
        "read {} files under {}",
        files.len(),
        src().display()
    );
    let mut arrows_up = Vec::new();
    for f in &files {
        let Some(stage) = stage_of(f) else { continue };
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let own = rank(stage).unwrap_or(0);
        for m in referenced_modules(f, &text) {
            let allowed = match rank(&m) {
                Some(r) => r <= own,
                None if m == "plugin" => own >= rank(PLUGIN_FROM).unwrap_or(0),
                None => SHARED.contains(&m.as_str()) || m == "testing",
            };
            if !allowed {
                arrows_up.push(format!(
                    "{} ({stage}) uses crate::{m}",
                    f.strip_prefix(src()).unwrap_or(f).display()
                ));
            }
        }
    }
    assert!(
        arrows_up.is_empty(),
        "arrows back up:\n{}",
        arrows_up.join("\n")
    );
}

#[test]
fn configuration_knows_no_plugin_and_the_store_clients_no_settings() {
    let mut config_files = Vec::new();
    rust_files(&src().join("config"), &mut config_files);
    for f in &config_files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let used = referenced_modules(f, &text);
        assert!(
            !used.contains("plugin"),
            "{} imports the plugin registry",
            f.display()
        );
    }
    for client in ["influx.rs", "prometheus.rs"] {
        let f = src().join("metric_store").join(client);
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        assert!(!text.is_empty(), "{} is missing", f.display());
        assert!(
            !text.contains("config::Settings"),
            "{} takes the whole Settings instead of its own settings type",
            f.display()
        );
    }
}

/// The plugin contract sits between the stages: the collectors read through the metric store,
/// the later stages call the plugins. If it used a stage after the store clients, that stage
/// and the contract would use each other.
#[test]
fn the_plugin_contract_uses_only_configuration_the_metric_store_and_the_model() {
    let f = src().join("plugin.rs");
    let text = std::fs::read_to_string(&f).unwrap_or_default();
    let used = referenced_modules(&f, &text);
    assert!(used.contains("model"), "read {}", f.display());
    let beyond: Vec<_> = used
        .iter()
        .filter(|m| !["config", "metric_store", "model"].contains(&m.as_str()))
        .collect();
    assert!(beyond.is_empty(), "plugin.rs uses {beyond:?}");
}

/// The checker itself: it sees plain, grouped and `super::` imports, and skips comments.
#[test]
fn the_reader_sees_every_form_of_import() {
    let stage_root = src().join("config").join("mod.rs");
    let text = "use crate::plugin::X;\nuse crate::{engine, store::vms};\n// crate::run\n\
                let x = super::hold::f();\n";
    let seen = referenced_modules(&stage_root, text);
    let want: BTreeSet<String> = ["plugin", "engine", "store", "hold"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(seen, want);
}
