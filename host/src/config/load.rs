//! Loading: the file (TOML, or the original's `config.ini`), `VCAP_SERVICES`, the
//! `MONIT_BATCH__SECTION__KEY` environment and `PORT`, in that order; the keys plugins took over
//! moved into their `[plugins.<name>]` sections; the key of a number too large named; userinfo
//! taken out of the host's URLs. Then [`super::validate`] checks the result.

use super::legacy_ini::LegacyIni;
use super::{MetricBackend, Settings};
use anyhow::{Context as _, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const ENV_PREFIX: &str = "MONIT_BATCH";

/// Where settings come from: a file (TOML, or `.ini` for the legacy format) plus the environment.
pub fn default_config_path() -> Option<PathBuf> {
    ["monit-batch.toml", "config/monit-batch.toml", "config.ini"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn is_legacy(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ini"))
}

/// What configuration needs to know of one plugin, handed in as data by the registry
/// (`plugin::plugin_keys`): configuration reads the plugin sections, it does not know plugins.
#[derive(Clone, Copy, Debug)]
pub struct PluginKeys {
    pub name: &'static str,
    /// host keys this plugin took over, moved into `[plugins.<name>]` before the settings load
    pub moved_keys: &'static [MovedKey],
    /// the original's config.ini keys that set this plugin's settings
    pub legacy_ini: crate::config::legacy_ini::LegacyConfig,
}

/// A setting that moved from a host section into the plugin's own: `old` is its former dotted
/// path (a key such as `influx.<plugin>_db`, or a whole host section), `new` its key in
/// `[plugins.<name>]`.
#[derive(Clone, Copy, Debug)]
pub struct MovedKey {
    pub old: &'static str,
    pub new: &'static str,
}

impl Settings {
    /// Loads and validates the host's settings; `plugins` (what the registry knows of each
    /// compiled plugin, see `plugin::load_settings`) say which config.ini keys and which moved
    /// host keys belong to which `[plugins.<name>]` section, whose contents stay data here.
    /// Errors name the file, the key and the reason.
    pub fn load_with_plugins(
        path: Option<&Path>,
        env: std::collections::HashMap<String, String>,
        plugins: &[PluginKeys],
    ) -> anyhow::Result<Settings> {
        let mut builder = config::Config::builder();
        let source = match path {
            Some(p) if !p.is_file() => bail!("config file {} not found", p.display()),
            Some(p) if is_legacy(p) => {
                builder = builder.add_source(LegacyIni::new(
                    p,
                    crate::config::legacy_ini::legacy_plugins(plugins),
                ));
                p.display().to_string()
            }
            Some(p) => {
                builder = builder.add_source(
                    config::File::from(p.to_path_buf()).format(config::FileFormat::Toml),
                );
                p.display().to_string()
            }
            None => "environment".to_string(),
        };
        if let Some(vcap) = env.get("VCAP_SERVICES")
            && let Some(db) = vcap_mysql(vcap)?
        {
            builder = builder.add_source(config::File::from_str(
                &serde_json::json!({ "monitoring_db": db }).to_string(),
                config::FileFormat::Json,
            ));
        }
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(false)
                .source(Some(env.clone().into_iter().collect())),
        );
        if let Some(port) = env.get("PORT") {
            let port: u16 = port.parse().with_context(|| {
                format!("environment variable PORT: not a port number: {port:?}")
            })?;
            builder = builder.set_override("server.port", port as i64)?;
        }
        let raw = builder.build().map_err(|e| {
            // the TOML reader's "number too large to fit in target type" names neither key nor line
            let toml_text = path
                .filter(|p| !is_legacy(p))
                .and_then(|p| std::fs::read_to_string(p).ok());
            match toml_text.and_then(|t| huge_integer_in_toml(&t)) {
                Some((line, key)) => anyhow::anyhow!(
                    "invalid config in {source}: line {line}: {key}: the number is too large for any setting"
                ),
                None => anyhow::anyhow!("invalid config in {source}: {e}"),
            }
        })?;
        if let Some(key) = number_too_large(&raw) {
            bail!("invalid config in {source}: {key}: the number is too large for any setting");
        }
        let mut raw = raw;
        let moved = move_plugin_keys(&mut raw.cache, plugins);
        let mut settings: Settings = raw
            .clone()
            .try_deserialize()
            .map_err(|e| anyhow::anyhow!("invalid config in {source}: {e}"))?;
        if let Some(p) = path.filter(|p| is_legacy(p)) {
            settings
                .warnings
                .extend(crate::config::legacy_ini::unknown_key_warnings(
                    p,
                    &crate::config::legacy_ini::legacy_plugins(plugins),
                ));
        }
        settings.warnings.extend(moved);
        settings.source = source;
        settings.raw = Some(std::sync::Arc::new(raw));
        settings.take_url_credentials()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Takes userinfo out of the host's URL keys, so that no client, log line or error ever
    /// holds a URL with a password: `influx.url`'s becomes the InfluxDB credentials (unless
    /// `influx.user` is set), `alarms.resource_url`'s is dropped (it is a link in mails).
    fn take_url_credentials(&mut self) -> anyhow::Result<()> {
        let src = self.source.clone();
        // the URL of the store not in use may be anything: it is never read
        let backend = self.metrics.backend;
        for (key, url, user, password, in_use) in [
            (
                "influx",
                &mut self.influx.url,
                &mut self.influx.user,
                &mut self.influx.password,
                backend == MetricBackend::Influxdb,
            ),
            (
                "prometheus",
                &mut self.prometheus.url,
                &mut self.prometheus.user,
                &mut self.prometheus.password,
                backend == MetricBackend::Prometheus,
            ),
        ] {
            let (parsed, creds) =
                match crate::config::redact::split_userinfo(&format!("{key}.url"), url) {
                    Ok(x) => x,
                    Err(e) if in_use => bail!("invalid config in {src}: {e}"),
                    Err(_) => continue,
                };
            if let Some(c) = creds {
                if user.as_deref().is_none_or(str::is_empty) {
                    *user = Some(c.user);
                    *password = c.password;
                } else {
                    self.warnings.push(format!(
                        "{key}.url has a user and password; {key}.user and {key}.password are used instead"
                    ));
                }
                *url = parsed.to_string();
            }
        }
        if let Some(raw) = self.alarms.resource_url.clone()
            && let Ok((url, Some(_))) =
                crate::config::redact::split_userinfo("alarms.resource_url", &raw)
        {
            self.warnings.push(
                "alarms.resource_url has a user and password: dropped, the link is shown in every notification"
                    .into(),
            );
            self.alarms.resource_url = Some(url.to_string());
        }
        Ok(())
    }
}

/// Moves the keys the compiled plugins took over from host sections (`influx.<plugin>_db`,
/// `portal_db`) into their `[plugins.<name>]` sections, and returns one deprecation warning per
/// key found. A key set in both places keeps the new one.
pub fn move_plugin_keys(tree: &mut config::Value, plugins: &[PluginKeys]) -> Vec<String> {
    let mut warnings = Vec::new();
    for reg in plugins {
        for m in reg.moved_keys {
            let Some(value) = take_path(tree, m.old) else {
                continue;
            };
            let new = format!("plugins.{}.{}", reg.name, m.new);
            if get_path(tree, &new).is_some() {
                warnings.push(format!(
                    "{} is deprecated and ignored: {new} is set (the old key is read until the next release)",
                    m.old
                ));
            } else {
                warnings.push(format!(
                    "{} is deprecated: write it as `{}` in [plugins.{}] (the old key is read until the next release)",
                    m.old, m.new, reg.name
                ));
                set_path(tree, &new, value);
            }
        }
    }
    warnings
}

fn get_path<'a>(tree: &'a config::Value, path: &str) -> Option<&'a config::Value> {
    path.split('.').try_fold(tree, |v, k| match &v.kind {
        config::ValueKind::Table(t) => t.get(k),
        _ => None,
    })
}

fn take_path(tree: &mut config::Value, path: &str) -> Option<config::Value> {
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (
            p.split('.').try_fold(tree, |v, k| match &mut v.kind {
                config::ValueKind::Table(t) => t.get_mut(k),
                _ => None,
            })?,
            l,
        ),
        None => (tree, path),
    };
    match &mut parent.kind {
        config::ValueKind::Table(t) => t.remove(last),
        _ => None,
    }
}

fn set_path(tree: &mut config::Value, path: &str, value: config::Value) {
    let mut node = tree;
    for key in path.split('.') {
        if !matches!(node.kind, config::ValueKind::Table(_)) {
            node.kind = config::ValueKind::Table(Default::default());
        }
        let config::ValueKind::Table(t) = &mut node.kind else {
            return;
        };
        node = t.entry(key.to_string()).or_insert_with(|| {
            config::Value::new(None, config::ValueKind::Table(Default::default()))
        });
    }
    *node = value;
}

/// `(line, section.key)` of the first integer in a TOML text that does not fit 64 bits.
fn huge_integer_in_toml(text: &str) -> Option<(usize, String)> {
    let mut section = String::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if let Some(h) = line.strip_prefix('[') {
            section = h.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let digits = value.trim().trim_start_matches(['+', '-']).replace('_', "");
        if !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit())
            && value.trim().replace('_', "").parse::<i64>().is_err()
        {
            let key = key.trim();
            let full = if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            };
            return Some((i + 1, full));
        }
    }
    None
}

/// The key of a number beyond 64-bit range: serde's error for it ("number too large to fit in
/// target type") names no key, so it is found here first.
fn number_too_large(raw: &config::Config) -> Option<String> {
    use config::{Value, ValueKind};
    fn walk(prefix: &str, v: &Value) -> Option<String> {
        match &v.kind {
            ValueKind::U64(n) if *n > i64::MAX as u64 => Some(format!("{prefix} = {n}")),
            ValueKind::I128(n) => Some(format!("{prefix} = {n}")),
            ValueKind::U128(n) => Some(format!("{prefix} = {n}")),
            ValueKind::Table(t) => t.iter().find_map(|(k, v)| {
                walk(
                    &if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    },
                    v,
                )
            }),
            ValueKind::Array(a) => a
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(&format!("{prefix}[{i}]"), v)),
            _ => None,
        }
    }
    walk("", &raw.cache)
}

/// The Monitoring DB credentials of a MySQL service bound on Cloud Foundry (`VCAP_SERVICES`):
/// the first service whose label, tags or name mention mysql or mariadb. Its `uri`
/// (`mysql://user:pass@host:port/db`) or its hostname/port/name/username/password fields.
fn vcap_mysql(vcap: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let services: BTreeMap<String, Vec<serde_json::Value>> = serde_json::from_str(vcap)
        .context("environment variable VCAP_SERVICES is not the JSON Cloud Foundry writes")?;
    let is_mysql = |s: &serde_json::Value, label: &str| {
        let text = format!("{label} {} {}", s["name"], s["tags"]).to_ascii_lowercase();
        text.contains("mysql") || text.contains("mariadb")
    };
    let Some(svc) = services
        .iter()
        .flat_map(|(label, list)| list.iter().map(move |s| (label, s)))
        .find(|(label, s)| is_mysql(s, label))
        .map(|(_, s)| s)
    else {
        return Ok(None);
    };
    let c = &svc["credentials"];
    let name = svc["name"].as_str().unwrap_or("?");
    let mut db = serde_json::Map::new();
    if let Some(uri) = c["uri"].as_str().or(c["jdbcUrl"].as_str()) {
        let u = url::Url::parse(uri.trim_start_matches("jdbc:")).with_context(|| {
            format!("VCAP_SERVICES service {name:?}: credentials.uri is not a URL")
        })?;
        if let Some(h) = u.host_str() {
            db.insert("host".into(), h.into());
        }
        if let Some(p) = u.port() {
            db.insert("port".into(), p.into());
        }
        let dbname = u.path().trim_start_matches('/');
        if !dbname.is_empty() {
            db.insert("dbname".into(), dbname.into());
        }
        if !u.username().is_empty() {
            db.insert("username".into(), u.username().into());
        }
        if let Some(p) = u.password() {
            let p = percent_encoding::percent_decode_str(p).decode_utf8_lossy();
            db.insert("password".into(), p.into());
        }
    }
    for (from, to) in [
        ("hostname", "host"),
        ("host", "host"),
        ("name", "dbname"),
        ("database", "dbname"),
        ("username", "username"),
        ("user", "username"),
        ("password", "password"),
    ] {
        if let Some(v) = c[from].as_str() {
            db.insert(to.into(), v.into());
        }
    }
    if let Some(p) = c["port"]
        .as_u64()
        .or_else(|| c["port"].as_str().and_then(|p| p.parse().ok()))
    {
        db.insert("port".into(), p.into());
    }
    tracing::info!(
        service = name,
        "Monitoring DB credentials from VCAP_SERVICES"
    );
    Ok(Some(serde_json::Value::Object(db)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLLECTOR: PluginKeys = PluginKeys {
        name: "metrics",
        moved_keys: &[
            MovedKey {
                old: "influx.metrics_db",
                new: "db",
            },
            MovedKey {
                old: "metrics_source",
                new: "source",
            },
        ],
        legacy_ini: crate::config::legacy_ini::LegacyConfig::NONE,
    };

    fn tree(toml: &str) -> config::Value {
        config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()
            .unwrap()
            .cache
    }

    fn get(tree: &config::Value, path: &str) -> Option<String> {
        get_path(tree, path).map(|v| v.to_string())
    }

    #[test]
    fn moved_keys_land_in_the_plugin_section_with_a_warning() {
        let mut t = tree(
            "[influx]\nurl = \"http://i.example\"\nmetrics_db = \"old\"\n\
             [metrics_source]\nhost = \"h.example\"\nport = 1\n",
        );
        let warnings = move_plugin_keys(&mut t, &[COLLECTOR]);
        assert_eq!(get(&t, "plugins.metrics.db").as_deref(), Some("old"));
        assert_eq!(
            get(&t, "plugins.metrics.source.host").as_deref(),
            Some("h.example")
        );
        assert_eq!(get(&t, "influx.metrics_db"), None, "taken out of [influx]");
        assert_eq!(get(&t, "metrics_source"), None);
        assert_eq!(
            get(&t, "influx.url").as_deref(),
            Some("http://i.example"),
            "the rest of [influx] stays"
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("influx.metrics_db is deprecated")
                && warnings[0].contains("[plugins.metrics]"),
            "{warnings:?}"
        );
    }

    #[test]
    fn the_new_key_wins_over_the_old_one_and_no_key_no_warning() {
        let mut t = tree("[influx]\nmetrics_db = \"old\"\n[plugins.metrics]\ndb = \"new\"\n");
        let warnings = move_plugin_keys(&mut t, &[COLLECTOR]);
        assert_eq!(get(&t, "plugins.metrics.db").as_deref(), Some("new"));
        assert_eq!(get(&t, "influx.metrics_db"), None);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("ignored"), "{warnings:?}");

        let mut t = tree("[plugins.metrics]\ndb = \"new\"\n");
        assert!(move_plugin_keys(&mut t, &[COLLECTOR]).is_empty());
        assert_eq!(get(&t, "plugins.metrics.db").as_deref(), Some("new"));
    }
}
