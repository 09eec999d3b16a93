//! The original batch's `config.ini`, accepted unchanged.
//!
//! Format: `key = value` per line, split at the first `=`; lines without `=` and lines starting
//! with `#` or `;` are ignored; the last duplicate wins. Unlike the original (defect D1), a trailing
//! comment on a value line (`⇒ comment`, or `#`/`;` after whitespace) is stripped, not read as
//! part of the value. Each key is translated to its place in the TOML layout.

use config::{ConfigError, Map, Source, Value, ValueKind};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Bool,
    /// `mail.tls.send`: true means implicit TLS, false plain SMTP (4.0)
    MailTls,
}

/// legacy key → (settings path, kind); `None` marks a key the original read but never used.
const KEYS: &[(&str, Option<&str>, Kind)] = &[
    ("server.port", Some("server.port"), Kind::Int),
    ("running.env", None, Kind::Str),
    ("influx.url", Some("influx.url"), Kind::Str),
    ("influx.user", Some("influx.user"), Kind::Str),
    ("influx.pass", Some("influx.password"), Kind::Str),
    ("influx.paasta.db_name", Some("influx.paasta_db"), Kind::Str),
    ("influx.bosh.db_name", Some("influx.bosh_db"), Kind::Str),
    (
        "influx.container.db_name",
        Some("influx.container_db"),
        Kind::Str,
    ),
    ("influx.cf_measurement", None, Kind::Str),
    ("influx.cf_process_measurement", None, Kind::Str),
    ("influx.defaultTimeRange", None, Kind::Str),
    (
        "monitoring.db.type",
        Some("monitoring_db.db_type"),
        Kind::Str,
    ),
    (
        "monitoring.db.dbname",
        Some("monitoring_db.dbname"),
        Kind::Str,
    ),
    (
        "monitoring.db.username",
        Some("monitoring_db.username"),
        Kind::Str,
    ),
    (
        "monitoring.db.password",
        Some("monitoring_db.password"),
        Kind::Str,
    ),
    ("monitoring.db.host", Some("monitoring_db.host"), Kind::Str),
    ("monitoring.db.port", Some("monitoring_db.port"), Kind::Int),
    ("portal.db.type", Some("portal_db.db_type"), Kind::Str),
    ("portal.db.dbname", Some("portal_db.dbname"), Kind::Str),
    ("portal.db.username", Some("portal_db.username"), Kind::Str),
    ("portal.db.password", Some("portal_db.password"), Kind::Str),
    ("portal.db.host", Some("portal_db.host"), Kind::Str),
    ("portal.db.port", Some("portal_db.port"), Kind::Int),
    ("bosh.api.url", Some("plugins.bosh.api_url"), Kind::Str),
    ("bosh.ip", None, Kind::Str),
    ("bosh.admin", Some("plugins.bosh.username"), Kind::Str),
    ("bosh.password", Some("plugins.bosh.password"), Kind::Str),
    (
        "bosh.cf.deployment.name",
        Some("plugins.bosh.cf_deployment"),
        Kind::Str,
    ),
    (
        "bosh.diego.deployment.name",
        Some("plugins.bosh.diego_deployment"),
        Kind::Str,
    ),
    (
        "bosh.diego.cell.name.prefix",
        Some("plugins.bosh.cell_prefix"),
        Kind::Str,
    ),
    (
        "bosh.cell.name.prefix",
        Some("plugins.bosh.cell_prefix"),
        Kind::Str,
    ),
    (
        "bosh.service.name",
        Some("plugins.bosh.service_name"),
        Kind::Str,
    ),
    ("mail.smtp.host", Some("plugins.email.smtp_host"), Kind::Str),
    ("mail.smtp.port", Some("plugins.email.smtp_port"), Kind::Int),
    ("mail.sender", Some("plugins.email.sender"), Kind::Str),
    (
        "mail.sender.password",
        Some("plugins.email.password"),
        Kind::Str,
    ),
    ("mail.resource.url", Some("alarms.resource_url"), Kind::Str),
    ("mail.receiver.email", None, Kind::Str),
    ("mail.alarm.send", Some("plugins.email.enabled"), Kind::Bool),
    (
        "mail.tls.send",
        Some("plugins.email.security"),
        Kind::MailTls,
    ),
    (
        "batch.interval.second",
        Some("batch.interval_seconds"),
        Kind::Int,
    ),
    (
        "gmt.time.hour.gap",
        Some("alarms.gmt_time_hour_gap"),
        Kind::Int,
    ),
    (
        "autoscale.portal.url",
        Some("plugins.autoscale.portal_url"),
        Kind::Str,
    ),
    ("portal.api.url", None, Kind::Str),
    ("redis.addr", None, Kind::Str),
    ("redis.password", None, Kind::Str),
    ("redis.db", None, Kind::Str),
    ("user.portal.alarm.interval", None, Kind::Str),
    (
        "cf.client.api_address",
        Some("plugins.autoscale.cf_api_url"),
        Kind::Str,
    ),
    (
        "cf.client.uaa_address",
        Some("plugins.autoscale.uaa_url"),
        Kind::Str,
    ),
    (
        "cf.client.username",
        Some("plugins.autoscale.cf_username"),
        Kind::Str,
    ),
    (
        "cf.client.password",
        Some("plugins.autoscale.cf_password"),
        Kind::Str,
    ),
    (
        "cf.client.clientid",
        Some("plugins.autoscale.client_id"),
        Kind::Str,
    ),
    (
        "cf.client.clientpassword",
        Some("plugins.autoscale.client_secret"),
        Kind::Str,
    ),
];

/// One `key = value` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub key: String,
    pub value: String,
}

/// Splits the file into entries, comments stripped. Never fails: every line is either an entry
/// or ignored, as in the original.
pub fn parse(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start_matches('\u{feff}').trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() {
            continue;
        }
        out.push(Entry {
            line: i + 1,
            key: key.to_string(),
            value: strip_trailing_comment(value).to_string(),
        });
    }
    out
}

/// `60 ⇒ seconds` → `60`; `true # send mail` → `true`; `pa#ss` stays (no whitespace before `#`).
fn strip_trailing_comment(value: &str) -> &str {
    let mut end = value.len();
    if let Some(p) = value.find('⇒') {
        end = end.min(p);
    }
    let bytes = value.as_bytes();
    for (i, c) in value.char_indices() {
        if (c == '#' || c == ';') && i > 0 && (bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') {
            end = end.min(i);
            break;
        }
    }
    value[..end].trim()
}

/// A `config` source reading a legacy `config.ini`.
#[derive(Clone, Debug)]
pub struct LegacyIni {
    path: PathBuf,
    /// plugins the file enables implicitly (the original always ran them), if compiled in
    implicit_plugins: Vec<String>,
}

impl LegacyIni {
    pub fn new(path: &Path, implicit_plugins: Vec<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            implicit_plugins,
        }
    }

    /// Translated `settings.path → value` pairs, or an error naming the file, line and key.
    pub fn translate(&self) -> Result<Vec<(String, Value)>, ConfigError> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            ConfigError::Message(format!("cannot read {}: {e}", self.path.display()))
        })?;
        let file = self.path.display().to_string();
        let mut out: Vec<(String, Value)> = Vec::new();
        fn set(out: &mut Vec<(String, Value)>, k: &str, v: Value) {
            out.retain(|(old, _)| old != k);
            out.push((k.to_string(), v));
        }
        for e in parse(&text) {
            let origin = format!("{file}:{}", e.line);
            // reported by unknown_key_warnings once logging has started
            let Some((_, target, kind)) = KEYS.iter().find(|(k, _, _)| *k == e.key) else {
                continue;
            };
            let Some(target) = target else {
                tracing::debug!(key = %e.key, "config.ini key accepted but unused");
                continue;
            };
            let bad = |what: &str| {
                ConfigError::Message(format!(
                    "{origin}: key `{}`: {what}, got {:?}",
                    e.key, e.value
                ))
            };
            let kind_value = match kind {
                Kind::Str => ValueKind::String(e.value.clone()),
                Kind::Int => ValueKind::I64(
                    e.value
                        .parse::<i64>()
                        .map_err(|_| bad("expected an integer"))?,
                ),
                Kind::Bool => ValueKind::Boolean(
                    parse_bool(&e.value)
                        .ok_or_else(|| bad("expected a boolean (true/false, 1/0, t/f, yes/no)"))?,
                ),
                Kind::MailTls => ValueKind::String(
                    if parse_bool(&e.value).ok_or_else(|| bad("expected a boolean"))? {
                        "tls".to_string()
                    } else {
                        "plain".to_string()
                    },
                ),
            };
            set(&mut out, target, Value::new(Some(&origin), kind_value));
        }
        // The original ran every component it had config for: collectors always, BOSH with a
        // director URL, autoscale with a portal or CF API URL; mail only if mail.alarm.send says so.
        let has = |out: &[(String, Value)], k: &str| out.iter().any(|(key, _)| key == k);
        for plugin in &self.implicit_plugins {
            let key = format!("plugins.{plugin}.enabled");
            if has(&out, &key) {
                continue;
            }
            let on = match plugin.as_str() {
                "paasta" | "container" => true,
                "bosh" => has(&out, "plugins.bosh.api_url"),
                "autoscale" => {
                    has(&out, "plugins.autoscale.portal_url")
                        || has(&out, "plugins.autoscale.cf_api_url")
                }
                _ => false,
            };
            set(
                &mut out,
                &key,
                Value::new(Some(&file), ValueKind::Boolean(on)),
            );
        }
        Ok(out)
    }
}

/// One warning per key of the file that the original never read (a typo, most likely), naming
/// the file and line. Collected at load and logged once logging has started: a warning raised
/// while the config is read would reach no subscriber.
pub fn unknown_key_warnings(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    parse(&text)
        .into_iter()
        .filter(|e| !KEYS.iter().any(|(k, _, _)| *k == e.key))
        .map(|e| {
            format!(
                "{}:{}: unknown config.ini key `{}` ignored",
                path.display(),
                e.line,
                e.key
            )
        })
        .collect()
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "y" | "yes" | "on" => Some(true),
        "0" | "f" | "false" | "n" | "no" | "off" => Some(false),
        _ => None,
    }
}

impl Source for LegacyIni {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, ConfigError> {
        Ok(self.translate()?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_trailing_comments_but_not_hashes_inside_values() {
        let e = parse(
            "# header\nbatch.interval.second = 60 ⇒ seconds between ticks\n\
             mail.alarm.send = true # send mail\nmail.sender.password = pa#ss\n\
             ; other comment\nnot a pair\nbosh.cf.deployment.name=paasta-controller\t# cf\n",
        );
        let kv: Vec<_> = e
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(
            kv,
            vec![
                ("batch.interval.second", "60", 2),
                ("mail.alarm.send", "true", 3),
                ("mail.sender.password", "pa#ss", 4),
                ("bosh.cf.deployment.name", "paasta-controller", 7),
            ]
        );
    }

    #[test]
    fn non_numeric_interval_names_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.ini");
        std::fs::write(
            &p,
            "monitoring.db.dbname = x\nbatch.interval.second = sixty\n",
        )
        .unwrap();
        let err = LegacyIni::new(&p, vec![])
            .translate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.ini:2"), "{err}");
        assert!(err.contains("batch.interval.second"), "{err}");
        assert!(err.contains("integer"), "{err}");
    }

    #[test]
    fn implicit_plugins_follow_mail_alarm_send() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.ini");
        std::fs::write(&p, "mail.alarm.send = false\nmail.tls.send = true\n").unwrap();
        let out = LegacyIni::new(&p, vec!["email".into(), "paasta".into(), "bosh".into()])
            .translate()
            .unwrap();
        let get = |k: &str| {
            out.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.to_string())
        };
        assert_eq!(get("plugins.email.enabled").as_deref(), Some("false"));
        assert_eq!(get("plugins.paasta.enabled").as_deref(), Some("true"));
        assert_eq!(
            get("plugins.bosh.enabled").as_deref(),
            Some("false"),
            "no bosh.api.url"
        );
        assert_eq!(get("plugins.email.security").as_deref(), Some("tls"));
    }
}
