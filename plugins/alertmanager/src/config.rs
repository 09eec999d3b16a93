//! `[plugins.alertmanager]`: where Alertmanager is, how to reach it, and the labels every alert
//! carries besides the alarm's own.

use monit_host::config::check_range;
use monit_host::config::secret::Secret;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// The labels the notifier sets from the alarm: a configured label may not take one of these
/// names (it would change what an alert is, and silences written against it).
pub const ALARM_LABELS: &[&str] = &[
    "alertname",
    "origin",
    "vm",
    "app",
    "index",
    "resource",
    "level",
];

/// The most labels `labels` may add.
pub const MAX_EXTRA_LABELS: usize = 20;

/// The `[plugins.alertmanager]` section; `sample.toml` documents the same fields.
///
/// `Debug` is written by hand: the password, the token and header values are `Secret`s, and a
/// URL is shown without a password.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Post the alarms to Alertmanager.
    #[serde(default)]
    pub enabled: bool,
    /// Alertmanager's URL (`https://alertmanager.example:9093`, with its `--web.route-prefix`
    /// if it has one), or the URLs of every replica of a cluster: each gets every alert, as
    /// Prometheus sends them. The API path `/api/v2/alerts` is added.
    #[serde(
        deserialize_with = "monit_http_post::one_or_many",
        serialize_with = "urls_shown"
    )]
    pub url: Vec<String>,
    /// Limit, in seconds, for each attempt at one URL: connecting, sending, reading the answer.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Retries after the first attempt on a network error, a timeout or a 5xx answer; a 4xx
    /// answer is never retried. 0 = one attempt only.
    #[serde(default = "default_retry_max_times")]
    pub retry_max_times: usize,
    /// Basic auth (Alertmanager's `--web.config.file` `basic_auth_users`, or a proxy in front).
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Secret,
    /// Bearer token for a proxy in front of Alertmanager; wins over `user`/`password`.
    #[serde(default)]
    pub bearer_token: Secret,
    /// Extra request headers (a tenant header of a multi-tenant gateway). Every value is a
    /// secret.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// PEM file of the CA that signed Alertmanager's certificate, trusted besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip TLS certificate checks: only for a lab, logged loudly.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Labels added to every alert, e.g. which platform it comes from (`platform = "prod"`), as
    /// Prometheus' `external_labels`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

pub fn default_timeout_seconds() -> u64 {
    5
}

pub fn default_retry_max_times() -> usize {
    2
}

impl AlertmanagerConfig {
    /// An enabled config for this URL with every default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            enabled: true,
            url: vec![url.into()],
            timeout_seconds: default_timeout_seconds(),
            retry_max_times: default_retry_max_times(),
            user: None,
            password: Secret::default(),
            bearer_token: Secret::default(),
            headers: BTreeMap::new(),
            ca_file: None,
            insecure_skip_verify: false,
            labels: BTreeMap::new(),
        }
    }

    /// Numbers in range and labels Alertmanager takes; errors name the key. (The URLs, the
    /// headers and the CA file are checked when the notifier is built.)
    pub fn check(&self) -> anyhow::Result<()> {
        check_range(
            "plugins.alertmanager.timeout_seconds",
            self.timeout_seconds,
            1..=3600,
        )?;
        check_range(
            "plugins.alertmanager.retry_max_times",
            self.retry_max_times,
            0..=20,
        )?;
        if self.labels.len() > MAX_EXTRA_LABELS {
            anyhow::bail!(
                "plugins.alertmanager.labels: {} labels, at most {MAX_EXTRA_LABELS}",
                self.labels.len()
            );
        }
        for (name, value) in &self.labels {
            let key = format!("plugins.alertmanager.labels.{name}");
            let mut chars = name.chars();
            let valid = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid || name.starts_with("__") {
                anyhow::bail!(
                    "{key}: not a label name Alertmanager takes (letters, digits and _, not starting \
                     with a digit or __)"
                );
            }
            if ALARM_LABELS.contains(&name.as_str()) {
                anyhow::bail!(
                    "{key}: the notifier sets this label from the alarm ({}); choose another name",
                    ALARM_LABELS.join(", ")
                );
            }
            if value.trim().is_empty() {
                anyhow::bail!("{key} is empty: Alertmanager drops a label without a value");
            }
        }
        Ok(())
    }
}

impl fmt::Debug for AlertmanagerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self
            .url
            .iter()
            .map(|u| monit_host::config::redact::url(u))
            .collect();
        f.debug_struct("AlertmanagerConfig")
            .field("enabled", &self.enabled)
            .field("url", &urls)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("retry_max_times", &self.retry_max_times)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("bearer_token", &self.bearer_token)
            .field("headers", &self.headers)
            .field("ca_file", &self.ca_file)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("labels", &self.labels)
            .finish()
    }
}

/// The URLs as check-config shows them: a password in one is masked.
fn urls_shown<S: Serializer>(urls: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(urls.iter().map(|u| monit_host::config::redact::url(u)))
}
