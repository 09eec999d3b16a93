//! `[plugins.webhook]`: where to POST the notifications, in which shape, and how hard to try.

use monit_host::config::secret::Secret;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// The body of each POST.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// The notification as a JSON document of its own (see README.md).
    #[default]
    Json,
    /// A Slack incoming-webhook message: `text` plus Block Kit `blocks`. Mattermost and Rocket.Chat
    /// accept it too.
    Slack,
}

/// By hand, so that a wrong value's error lists the right ones.
impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "slack" => Ok(Format::Slack),
            _ => Err(serde::de::Error::custom(format!(
                "format = {s:?}: expected \"json\" or \"slack\""
            ))),
        }
    }
}

/// As it is written in the config.
impl Serialize for Format {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Json => "json",
            Format::Slack => "slack",
        })
    }
}

/// The `[plugins.webhook]` section; `sample.toml` documents the same fields.
///
/// `Debug` is written by hand: a webhook URL often carries its token in the path or the query
/// (Slack, Teams, Discord), so only each URL's origin is shown, and header values are `Secret`s.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Send notifications to the webhooks.
    #[serde(default)]
    pub enabled: bool,
    /// Where to POST every notification. A single string is one URL (handy from the environment).
    #[serde(
        deserialize_with = "monit_http_post::one_or_many",
        serialize_with = "origins_only"
    )]
    pub urls: Vec<String>,
    /// `json` (default) or `slack`.
    #[serde(default)]
    pub format: Format,
    /// Limit, in seconds, for each attempt at one URL: connecting, sending and reading the answer.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Retries after the first attempt on a network error, a timeout or a 5xx answer; a 4xx answer
    /// is never retried. 0 = one attempt only.
    #[serde(default = "default_retry_max_times")]
    pub retry_max_times: usize,
    /// Extra request headers, e.g. `Authorization`. Every value is treated as a secret.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
}

pub fn default_timeout_seconds() -> u64 {
    5
}

pub fn default_retry_max_times() -> usize {
    2
}

impl WebhookConfig {
    /// An enabled config for these URLs with every default.
    pub fn new<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Self {
        Self {
            enabled: true,
            urls: urls.into_iter().map(Into::into).collect(),
            format: Format::default(),
            timeout_seconds: default_timeout_seconds(),
            retry_max_times: default_retry_max_times(),
            headers: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self
            .urls
            .iter()
            .map(|u| match reqwest::Url::parse(u) {
                Ok(u) => redacted_url(&u),
                Err(_) => "<not a URL>".to_string(),
            })
            .collect();
        f.debug_struct("WebhookConfig")
            .field("enabled", &self.enabled)
            .field("urls", &urls)
            .field("format", &self.format)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("retry_max_times", &self.retry_max_times)
            .field("headers", &self.headers)
            .finish()
    }
}

/// `scheme://host:port`, then `/…` when the URL has a path or a query: those are where webhook
/// tokens live, so they never reach a log, an error or the outbox's `last_error`.
pub fn redacted_url(u: &reqwest::Url) -> String {
    monit_host::config::redact::origin(u)
}

impl WebhookConfig {
    /// Numbers in range, so that the worst-case sum of timeouts and delays cannot overflow.
    pub fn check_numbers(&self) -> anyhow::Result<()> {
        use monit_host::config::check_range;
        check_range(
            "plugins.webhook.timeout_seconds",
            self.timeout_seconds,
            1..=3600,
        )?;
        check_range(
            "plugins.webhook.retry_max_times",
            self.retry_max_times,
            0..=20,
        )
    }
}

/// A webhook URL shown as its origin only: its path or query is often the token.
fn origins_only<S: Serializer>(urls: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(urls.iter().map(|u| match reqwest::Url::parse(u) {
        Ok(u) => monit_host::config::redact::origin(&u),
        Err(_) => monit_host::config::redact::url(u),
    }))
}
