//! Examples and docs name only `*.example` hosts or loopback: a dry run of an example config must
//! never contact a real host (issue 11, item 11). Scans config/, docs/, README.md and every
//! plugin's sample.toml and README.md for URLs, host keys, e-mail domains and IPv4 literals.

use std::path::{Path, PathBuf};

/// Names in the docs that are not hosts to contact, each with the reason it may stay.
const DOCUMENTED_EXCEPTIONS: &[(&str, &str)] = &[
    (
        "host",
        "placeholder in `host:port` / `scheme://host:port` explanations",
    ),
    ("...", "placeholder in `https://...`"),
    (
        "hooks.slack.com",
        "the form of Slack's webhook URLs, commented out",
    ),
];

fn files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![root.join("README.md")];
    for dir in ["config", "docs"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
    }
    for e in std::fs::read_dir(root.join("plugins")).unwrap().flatten() {
        for f in ["sample.toml", "README.md"] {
            let p = e.path().join(f);
            if p.is_file() {
                out.push(p);
            }
        }
    }
    out
}

fn allowed_host(host: &str) -> bool {
    let h = host
        .trim_matches(|c| c == '[' || c == ']')
        .to_ascii_lowercase();
    h == "localhost"
        || h == "::1"
        || h == "0.0.0.0"
        || h.starts_with("127.")
        || h == "example"
        || h.ends_with(".example")
        || h.contains('{') // a format placeholder in a code sample
        || DOCUMENTED_EXCEPTIONS.iter().any(|(e, _)| *e == h)
}

/// An IPv4 literal is fine as loopback, the bind-all address, or data (a VM's IP in a payload
/// sample) from the documentation ranges of RFC 5737, which route nowhere.
fn allowed_ipv4(ip: &str) -> bool {
    ["127.", "0.0.0.0", "192.0.2.", "198.51.100.", "203.0.113."]
        .iter()
        .any(|p| ip.starts_with(p))
}

fn hosts_of_urls(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("://") {
        let rest = &text[i + 3..];
        let end = rest
            .find(|c: char| c.is_whitespace() || "/?#\"'`<>),;".contains(c))
            .unwrap_or(rest.len());
        let authority = &rest[..end];
        let host_port = authority.rsplit('@').next().unwrap_or_default();
        let host = if let Some(v6) = host_port.strip_prefix('[') {
            v6.split(']').next().unwrap_or_default().to_string()
        } else {
            host_port.split(':').next().unwrap_or_default().to_string()
        };
        if !host.is_empty() {
            out.push(host);
        }
    }
    out
}

/// `host = "x"`, `smtp_host = "x"`, `bosh.api.url=x:1`, `mail.smtp.host=x`: config values that
/// name a host without a scheme.
fn hosts_of_keys(line: &str) -> Option<String> {
    let line = line.trim_start_matches(['#', ' ']);
    let (key, value) = line.split_once('=')?;
    let key = key.trim().to_ascii_lowercase();
    let is_key = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !is_key || !(key.ends_with("host") || key.ends_with("url") || key.ends_with("address")) {
        return None;
    }
    let value = value.trim().trim_matches('"');
    if value.contains("://") || value.is_empty() {
        return None;
    }
    Some(value.split([':', ' ', '/']).next()?.to_string())
}

fn mail_domains(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices('@') {
        let before = text[..i].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            continue;
        }
        let domain: String = text[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
            .collect();
        let domain = domain.trim_end_matches('.');
        if domain.contains('.') && domain.chars().any(|c| c.is_ascii_alphabetic()) {
            out.push(domain.to_string());
        }
    }
    out
}

fn ipv4_literals(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit()
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'.'))
        {
            let cand: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let cand = cand.trim_end_matches('.');
            let parts: Vec<&str> = cand.split('.').collect();
            if parts.len() == 4
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.parse::<u8>().is_ok())
            {
                out.push(cand.to_string());
            }
            i += cand.len().max(1);
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn examples_and_docs_name_only_example_hosts_or_loopback() {
    let mut bad = Vec::new();
    let files = files();
    assert!(files.len() > 10, "scanned too few files: {files:?}");
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let at = format!("{}:{}", f.display(), n + 1);
            for h in hosts_of_urls(line)
                .into_iter()
                .chain(hosts_of_keys(line))
                .chain(mail_domains(line))
            {
                if !allowed_host(&h) && !allowed_ipv4(&h) {
                    bad.push(format!("{at}: host {h:?}"));
                }
            }
            for ip in ipv4_literals(line) {
                if !allowed_ipv4(&ip) {
                    bad.push(format!("{at}: address {ip}"));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "routable hosts in examples/docs (use *.example or loopback):\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_scanner_finds_what_it_must() {
    assert_eq!(
        hosts_of_urls("x https://u:p@10.0.1.6:25555/a and http://[fd00::6]:1 y"),
        vec!["10.0.1.6", "fd00::6"]
    );
    assert_eq!(
        hosts_of_keys("bosh.api.url=10.0.1.6:25555").as_deref(),
        Some("10.0.1.6")
    );
    assert_eq!(
        hosts_of_keys("smtp_host = \"smtp.gmail.com\"").as_deref(),
        Some("smtp.gmail.com")
    );
    assert_eq!(
        mail_domains("sender = \"a <x@corp.com>\""),
        vec!["corp.com"]
    );
    assert_eq!(
        ipv4_literals("ip 172.16.0.9, v1.2.3.4.5"),
        vec!["172.16.0.9"]
    );
    assert!(!allowed_host("10.0.1.6") && !allowed_ipv4("10.0.1.6"));
    assert!(allowed_host("director.example") && allowed_host("127.0.0.1"));
    assert!(!allowed_host("example.com.evil"));
}
