//! The plugins a build carries are exactly its cargo features: checked on the binary itself, so
//! a plugin crate the linker dropped (no `use ... as _;` in main.rs) fails here.

use std::process::Command;

/// Every plugin feature of the root Cargo.toml (`name = ["dep:monit-plugin-…"]`), and whether
/// this build has it (from build.rs): a new plugin is checked without touching this file.
fn features() -> Vec<(String, bool)> {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let section = manifest
        .split("[features]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .unwrap_or_default();
    let built: Vec<&str> = env!("MONIT_BUILT_FEATURES").split(',').collect();
    let names: Vec<(String, bool)> = section
        .lines()
        .filter(|l| l.contains("dep:monit-plugin-"))
        .filter_map(|l| l.split('=').next())
        .map(|n| n.trim().to_string())
        .map(|n| {
            let on = built.contains(&n.as_str());
            (n, on)
        })
        .collect();
    assert!(names.len() >= 6, "plugin features in Cargo.toml: {names:?}");
    names
}

#[test]
fn plugins_listed_are_the_features_built() {
    let out = Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .arg("plugins")
        .env("MONIT_BATCH_CONFIG", "/nonexistent/none.toml")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for (name, built) in features() {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{name} not listed:\n{text}"));
        let compiled = line.split_whitespace().nth(1) == Some("compiled");
        assert_eq!(compiled, built, "{name}: {line}");
    }
}

#[test]
fn enabling_a_plugin_that_is_not_compiled_in_names_the_feature() {
    let features = features();
    let missing = features.iter().find(|(_, built)| !built);
    let Some((name, _)) = missing else {
        // every plugin is built: enable an unknown one instead, which must fail too
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("m.toml");
        std::fs::write(
            &cfg,
            "[monitoring_db]\ndbname = \"x\"\n[plugins.nosuch]\nenabled = true\n",
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_monit-batch"))
            .args(["--config"])
            .arg(&cfg)
            .arg("check-config")
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("unknown plugin"));
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m.toml");
    std::fs::write(
        &cfg,
        format!("[monitoring_db]\ndbname = \"x\"\n[plugins.{name}]\nenabled = true\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .args(["--config"])
        .arg(&cfg)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cargo feature `{name}`")), "{err}");
}
