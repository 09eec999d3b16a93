//! The original's config.ini: `legacy_ini::parse`, then the translation through
//! `Settings::load_with_env` on a temporary file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"));
    monit_fuzz::legacy_ini(data, dir.path());
});
