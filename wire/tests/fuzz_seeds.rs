//! The `monit-wire` fuzz target bodies over their seed corpus, on stable: every
//! `cargo test -p monit-wire` checks what `cargo +nightly fuzz run wire_*` checks, on the seeds
//! and on every crash input copied into `fuzz/seeds/wire_*/` once fixed.

#[path = "../../fuzz/src/wire.rs"]
mod fuzz_bodies;

use monit_wire::gzip::{self, GzipError};
use monit_wire::remote_write::{self, RemoteWriteError};
use std::path::Path;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let data = std::fs::read(&p).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), data)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 5, "seed corpus {} is there", dir.display());
    out
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    seeds(target)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("seed {target}/{name}"))
        .1
}

#[test]
fn fuzz_body_wire_line_over_its_seeds() {
    for (name, data) in seeds("wire_line") {
        eprintln!("wire_line/{name}");
        fuzz_bodies::wire_line(&data);
    }
}

#[test]
fn fuzz_body_wire_remote_write_over_its_seeds() {
    for (name, data) in seeds("wire_remote_write") {
        eprintln!("wire_remote_write/{name}");
        fuzz_bodies::wire_remote_write(&data);
    }
    // the seeds are what their names say
    let pb = remote_write::decompress(&seed("wire_remote_write", "vmagent_like.snappy"), 1 << 20)
        .unwrap();
    let names: Vec<_> = remote_write::series(&pb)
        .map(|s| s.unwrap().name().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["cf_metrics_value", "container_metrics_app_mem", "stale"]
    );
    assert!(matches!(
        remote_write::decompress(&seed("wire_remote_write", "bomb_header.snappy"), 1 << 20),
        Err(RemoteWriteError::TooLarge { .. })
    ));
}

#[test]
fn fuzz_body_wire_gzip_over_its_seeds() {
    for (name, data) in seeds("wire_gzip") {
        eprintln!("wire_gzip/{name}");
        fuzz_bodies::wire_gzip(&data);
    }
    assert!(matches!(
        gzip::decompress(&seed("wire_gzip", "bomb_1mib_zeros.gz"), 64 << 10),
        Err(GzipError::TooLarge { .. })
    ));
    assert!(matches!(
        gzip::decompress(&seed("wire_gzip", "bad_crc.gz"), 64 << 10),
        Err(GzipError::Corrupt(_))
    ));
}
