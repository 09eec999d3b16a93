//! The mail text as data: every folder under `tests/cases/` holds a `notification.json` (the
//! outbox payload, as the host queues it) and the mail it renders to: `expected.subject`,
//! `expected.txt` and `expected.html`, in the display time zone of `offset_hours` (file
//! `offset`, default 9). A wording change shows up as a change of these files.
//!
//! `MONIT_BLESS=1 cargo test -p monit-plugin-email --test golden` rewrites the expected files
//! from the current renderer; review the diff before committing it.

use chrono::FixedOffset;
use monit_host::plugin::Notification;
use monit_plugin_email::render::render;
use std::path::{Path, PathBuf};

fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("notification.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn offset(dir: &Path) -> FixedOffset {
    let hours: i32 = std::fs::read_to_string(dir.join("offset"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(9);
    FixedOffset::east_opt(hours * 3600).unwrap()
}

#[test]
fn mails_render_as_their_golden_files() {
    let dirs = case_dirs();
    assert!(dirs.len() >= 4, "cases under tests/cases");
    let bless = std::env::var_os("MONIT_BLESS").is_some();
    let mut failed = Vec::new();
    for dir in &dirs {
        let n: Notification =
            serde_json::from_str(&std::fs::read_to_string(dir.join("notification.json")).unwrap())
                .unwrap_or_else(|e| panic!("{}: notification.json: {e}", dir.display()));
        let mail = render(&n, offset(dir));
        for (file, got) in [
            ("expected.subject", format!("{}\n", mail.subject)),
            ("expected.txt", mail.text.clone()),
            ("expected.html", mail.html.clone()),
        ] {
            let path = dir.join(file);
            if bless {
                std::fs::write(&path, &got).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_default();
            if want != got {
                failed.push(format!(
                    "{}: differs\n--- want\n{want}\n--- got\n{got}",
                    path.display()
                ));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
