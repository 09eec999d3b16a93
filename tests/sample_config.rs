//! `monit-batch sample-config`: the host's documented sections plus the `sample.toml` every
//! compiled plugin embeds. The printed config must load and build every plugin it enables, and
//! the `[plugins.*]` blocks of `config/monit-batch.toml` may only set keys their plugin's
//! sample documents, so the two cannot drift apart.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_monit-batch"))
}

fn sample_config() -> String {
    let out = bin().arg("sample-config").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Each `[plugins.<name>]` block of a TOML text: the plugin's name and the keys it sets or
/// documents (`key =`, `# key =`), up to the next section that is not one of its sub-tables.
fn plugin_blocks(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(section) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            current = section.strip_prefix("plugins.").map(|rest| {
                let name = rest.split('.').next().unwrap_or(rest).to_string();
                out.entry(name.clone()).or_default();
                name
            });
            continue;
        }
        let Some(name) = &current else { continue };
        let body = t.trim_start_matches('#').trim();
        if let Some((key, _)) = body.split_once('=') {
            let key = key.trim();
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.entry(name.clone()).or_default().push(key.to_string());
            }
        }
    }
    out
}

#[test]
fn sample_config_has_every_compiled_plugin_and_passes_check_config() {
    let text = sample_config();
    let blocks = plugin_blocks(&text);
    let plugins = bin()
        .arg("plugins")
        .env("MONIT_BATCH_CONFIG", "/nonexistent/none.toml")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&plugins.stdout).to_string();
    let compiled: Vec<&str> = listing
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("compiled"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(!compiled.is_empty(), "{listing}");
    for name in &compiled {
        assert!(
            blocks.contains_key(*name),
            "sample-config has no [plugins.{name}] block:\n{text}"
        );
    }
    assert!(
        text.contains("[monitoring_db]"),
        "the host's sections come first"
    );

    // the printed config loads, and every plugin it enables builds from its sample
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sample.toml");
    std::fs::write(&path, &text).unwrap();
    let out = bin()
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        // autoscale reads the Portal DB, which the host's part leaves commented out
        .env("MONIT_BATCH__PORTAL_DB__DBNAME", "portaldb")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check-config on the sample config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_plugin_blocks_of_the_shipped_config_use_only_documented_keys() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read_to_string(root.join("config/monit-batch.toml")).unwrap();
    let shipped = plugin_blocks(&shipped);
    assert!(!shipped.is_empty());
    for (name, keys) in &shipped {
        let sample_path = root.join("plugins").join(name).join("sample.toml");
        let sample = std::fs::read_to_string(&sample_path)
            .unwrap_or_else(|e| panic!("[plugins.{name}]: {}: {e}", sample_path.display()));
        let documented = plugin_blocks(&sample).remove(name).unwrap_or_default();
        for key in keys {
            assert!(
                documented.contains(key),
                "config/monit-batch.toml [plugins.{name}] sets {key}, which {} does not document",
                sample_path.display()
            );
        }
    }
}

/// The blocks parser itself: a key only counts inside its plugin's block.
#[test]
fn plugin_blocks_reads_keys_per_plugin() {
    let b = plugin_blocks(
        "[batch]\nx = 1\n[plugins.a]\nenabled = true\n# secret = \"\"\n[plugins.a.headers]\nk = 1\n[alarms]\ny = 2\n",
    );
    assert_eq!(b.len(), 1);
    assert_eq!(b["a"], vec!["enabled", "secret", "k"]);
}
