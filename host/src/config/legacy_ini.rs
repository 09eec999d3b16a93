//! The original batch's `config.ini`, accepted unchanged.
//!
//! Format: `key = value` per line, split at the first `=`; lines without `=` and lines starting
//! with `#` or `;` are ignored; the last duplicate wins. Unlike the original (defect D1), a trailing
//! comment on a value line (`⇒ comment`, or `#`/`;` after whitespace) is stripped, not read as
//! part of the value. Each key is translated to its place in the TOML layout.

use config::{ConfigError, Map, Source, Value, ValueKind};
use std::path::{Path, PathBuf};

/// What a plugin reads from the original batch's `config.ini` (this module reads the file;
/// it knows only the host's own keys, each plugin declares its own and the registry hands them in).
#[derive(Clone, Copy, Debug)]
pub struct LegacyConfig {
    pub keys: &'static [LegacyKey],
    /// Whether a config.ini without the plugin's own on/off key enables it.
    pub enabled: LegacyEnabled,
}

impl LegacyConfig {
    /// A plugin the original did not have: no config.ini key, never enabled by one.
    pub const NONE: LegacyConfig = LegacyConfig {
        keys: &[],
        enabled: LegacyEnabled::Never,
    };
}

/// One `config.ini` key: the setting it becomes, and how its text is read.
#[derive(Clone, Copy, Debug)]
pub struct LegacyKey {
    /// the key as config.ini writes it, e.g. `bosh.api.url`
    pub ini: &'static str,
    /// its key in `[plugins.<name>]` (dotted for a sub-table: `portal_db.host`); `None` for a
    /// key the original read but never used, accepted without a warning
    pub field: Option<&'static str>,
    pub kind: LegacyKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegacyKind {
    Str,
    Int,
    /// true/false, 1/0, t/f, yes/no, on/off
    Bool,
    /// a boolean that becomes one of two words: `(when true, when false)`
    BoolAs(&'static str, &'static str),
}

/// The original ran every component it had config for; mail only when `mail.alarm.send` said so.
#[derive(Clone, Copy, Debug)]
pub enum LegacyEnabled {
    Never,
    Always,
    /// when the file sets any of these fields of the plugin
    IfAnySet(&'static [&'static str]),
}

/// The host's own config.ini keys → (settings path, kind); `None` marks a key the original read
/// but never used. Each plugin declares its own keys in its registration (`legacy_ini`).
const HOST_KEYS: &[(&str, Option<&str>, LegacyKind)] = &[
    ("server.port", Some("server.port"), LegacyKind::Int),
    ("running.env", None, LegacyKind::Str),
    ("influx.url", Some("influx.url"), LegacyKind::Str),
    ("influx.user", Some("influx.user"), LegacyKind::Str),
    ("influx.pass", Some("influx.password"), LegacyKind::Str),
    ("influx.cf_measurement", None, LegacyKind::Str),
    ("influx.cf_process_measurement", None, LegacyKind::Str),
    ("influx.defaultTimeRange", None, LegacyKind::Str),
    (
        "monitoring.db.type",
        Some("monitoring_db.db_type"),
        LegacyKind::Str,
    ),
    (
        "monitoring.db.dbname",
        Some("monitoring_db.dbname"),
        LegacyKind::Str,
    ),
    (
        "monitoring.db.username",
        Some("monitoring_db.username"),
        LegacyKind::Str,
    ),
    (
        "monitoring.db.password",
        Some("monitoring_db.password"),
        LegacyKind::Str,
    ),
    (
        "monitoring.db.host",
        Some("monitoring_db.host"),
        LegacyKind::Str,
    ),
    (
        "monitoring.db.port",
        Some("monitoring_db.port"),
        LegacyKind::Int,
    ),
    (
        "mail.resource.url",
        Some("alarms.resource_url"),
        LegacyKind::Str,
    ),
    (
        "batch.interval.second",
        Some("batch.interval_seconds"),
        LegacyKind::Int,
    ),
    (
        "gmt.time.hour.gap",
        Some("alarms.gmt_time_hour_gap"),
        LegacyKind::Int,
    ),
    ("portal.api.url", None, LegacyKind::Str),
    ("redis.addr", None, LegacyKind::Str),
    ("redis.password", None, LegacyKind::Str),
    ("redis.db", None, LegacyKind::Str),
    ("user.portal.alarm.interval", None, LegacyKind::Str),
];

/// The plugins whose config.ini keys are read: `(name, what its registration declares)`.
pub type LegacyPlugins = Vec<(&'static str, LegacyConfig)>;

/// The legacy config of the given plugins (the registry's [`crate::config::PluginKeys`]).
pub fn legacy_plugins(plugins: &[crate::config::PluginKeys]) -> LegacyPlugins {
    plugins.iter().map(|p| (p.name, p.legacy_ini)).collect()
}

/// Where a config.ini key goes: `Some((Some(settings path), kind))`, `Some((None, _))` for a key
/// read but never used, `None` for a key neither the host nor a plugin knows.
fn resolve(key: &str, plugins: &LegacyPlugins) -> Option<(Option<String>, LegacyKind)> {
    if let Some((_, target, kind)) = HOST_KEYS.iter().find(|(k, _, _)| *k == key) {
        return Some((target.map(str::to_string), *kind));
    }
    plugins.iter().find_map(|(name, legacy)| {
        legacy
            .keys
            .iter()
            .find(|k| k.ini == key)
            .map(|k| (k.field.map(|f| format!("plugins.{name}.{f}")), k.kind))
    })
}

/// Whether the host or one of `plugins` reads this config.ini key.
pub fn is_known_key(key: &str, plugins: &LegacyPlugins) -> bool {
    resolve(key, plugins).is_some()
}

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
    /// the plugins whose keys are read, and which the file enables implicitly
    plugins: LegacyPlugins,
}

impl LegacyIni {
    pub fn new(path: &Path, plugins: LegacyPlugins) -> Self {
        Self {
            path: path.to_path_buf(),
            plugins,
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
            let Some((target, kind)) = resolve(&e.key, &self.plugins) else {
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
                LegacyKind::Str => ValueKind::String(e.value.clone()),
                LegacyKind::Int => ValueKind::I64(
                    e.value
                        .parse::<i64>()
                        .map_err(|_| bad("expected an integer"))?,
                ),
                LegacyKind::Bool => ValueKind::Boolean(
                    parse_bool(&e.value)
                        .ok_or_else(|| bad("expected a boolean (true/false, 1/0, t/f, yes/no)"))?,
                ),
                LegacyKind::BoolAs(yes, no) => ValueKind::String(
                    if parse_bool(&e.value).ok_or_else(|| bad("expected a boolean"))? {
                        yes.to_string()
                    } else {
                        no.to_string()
                    },
                ),
            };
            set(&mut out, &target, Value::new(Some(&origin), kind_value));
        }
        // The original ran every component it had config for (each plugin says which config
        // that is); a plugin's own on/off key wins.
        let has = |out: &[(String, Value)], k: &str| out.iter().any(|(key, _)| key == k);
        for (name, legacy) in &self.plugins {
            let key = format!("plugins.{name}.enabled");
            if has(&out, &key) {
                continue;
            }
            let on = match legacy.enabled {
                LegacyEnabled::Never => false,
                LegacyEnabled::Always => true,
                LegacyEnabled::IfAnySet(fields) => fields
                    .iter()
                    .any(|f| has(&out, &format!("plugins.{name}.{f}"))),
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
pub fn unknown_key_warnings(path: &Path, plugins: &LegacyPlugins) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    parse(&text)
        .into_iter()
        .filter(|e| resolve(&e.key, plugins).is_none())
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

    use super::LegacyKey;

    const MAILER: LegacyConfig = LegacyConfig {
        keys: &[
            LegacyKey {
                ini: "mail.alarm.send",
                field: Some("enabled"),
                kind: LegacyKind::Bool,
            },
            LegacyKey {
                ini: "mail.tls.send",
                field: Some("security"),
                kind: LegacyKind::BoolAs("tls", "plain"),
            },
        ],
        enabled: LegacyEnabled::Never,
    };
    const DIRECTOR: LegacyConfig = LegacyConfig {
        keys: &[
            LegacyKey {
                ini: "director.url",
                field: Some("api_url"),
                kind: LegacyKind::Str,
            },
            LegacyKey {
                ini: "director.ip",
                field: None,
                kind: LegacyKind::Str,
            },
        ],
        enabled: LegacyEnabled::IfAnySet(&["api_url"]),
    };

    fn translate(text: &str, plugins: LegacyPlugins) -> Vec<(String, String)> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.ini");
        std::fs::write(&p, text).unwrap();
        LegacyIni::new(&p, plugins)
            .translate()
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect()
    }

    fn get<'a>(out: &'a [(String, String)], k: &str) -> Option<&'a str> {
        out.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn plugin_keys_land_in_their_section_and_enable_it_as_declared() {
        let plugins = || {
            vec![
                ("mailer", MAILER),
                ("director", DIRECTOR),
                (
                    "reader",
                    LegacyConfig {
                        keys: &[],
                        enabled: LegacyEnabled::Always,
                    },
                ),
            ]
        };
        let out = translate(
            "mail.alarm.send = false\nmail.tls.send = true\ndirector.ip = 10.0.0.1\n",
            plugins(),
        );
        assert_eq!(get(&out, "plugins.mailer.enabled"), Some("false"));
        assert_eq!(get(&out, "plugins.mailer.security"), Some("tls"));
        assert_eq!(get(&out, "plugins.reader.enabled"), Some("true"));
        assert_eq!(
            get(&out, "plugins.director.enabled"),
            Some("false"),
            "no director.url"
        );
        assert!(!out.iter().any(|(k, _)| k.contains(".ip")), "{out:?}");

        let out = translate("director.url = d.example:25555\n", plugins());
        assert_eq!(
            get(&out, "plugins.director.api_url"),
            Some("d.example:25555")
        );
        assert_eq!(get(&out, "plugins.director.enabled"), Some("true"));
        assert_eq!(
            get(&out, "plugins.mailer.enabled"),
            Some("false"),
            "no mail.alarm.send: off"
        );
    }

    #[test]
    fn a_plugin_key_is_unknown_unless_its_plugin_is_compiled_in() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.ini");
        std::fs::write(&p, "director.url = d.example\nbatch.interval.second = 60\n").unwrap();
        let without = unknown_key_warnings(&p, &vec![]);
        assert_eq!(without.len(), 1, "{without:?}");
        assert!(without[0].contains("director.url") && without[0].contains("config.ini:1"));
        assert!(unknown_key_warnings(&p, &vec![("director", DIRECTOR)]).is_empty());
        assert_eq!(
            get(
                &translate("director.url = d.example\n", vec![]),
                "plugins.director.api_url"
            ),
            None
        );
    }
}
