//! Tells the tests which cargo features this build has (`MONIT_BUILT_FEATURES`, comma
//! separated), so `tests/registry.rs` checks every plugin feature of `Cargo.toml` without a
//! hand-kept list.

fn main() {
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(str::to_string))
        .map(|f| f.to_ascii_lowercase().replace('_', "-"))
        .collect();
    features.sort();
    println!(
        "cargo:rustc-env=MONIT_BUILT_FEATURES={}",
        features.join(",")
    );
    println!("cargo:rerun-if-changed=build.rs");
}
