//! `[stream]`: how the writers' points reach the batch. Here the keys of the InfluxDB
//! subscription the batch keeps (`subscribe`, `advertise_url`, `subscription_name`) and the
//! credentials the points arrive with (`username`, `password`).

use crate::config::secret::Secret;
use anyhow::bail;
use serde::{Deserialize, Serialize};

/// Longest subscription name: InfluxDB takes any identifier, but a name is shown in
/// `SHOW SUBSCRIPTIONS` and logs, and a hostname-derived one can be long.
pub const MAX_SUBSCRIPTION_NAME: usize = 128;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSettings {
    /// Create and keep an InfluxDB subscription (`CREATE SUBSCRIPTION ... DESTINATIONS ALL`) on
    /// each database the collectors read, so InfluxDB copies every write to `advertise_url`.
    pub subscribe: bool,
    /// The URL InfluxDB posts the copies to: this instance's HTTP endpoint as InfluxDB reaches it,
    /// e.g. `http://batch-0.example:8080`. http or https, no user or password in it: InfluxDB
    /// is given `username` / `password` below.
    pub advertise_url: Option<String>,
    /// The subscription's name. Default `monit_batch_<instance>` (`batch.instance_name`, letters,
    /// digits and `_` kept, anything else `_`): the same name on every start, so a restart
    /// replaces its own subscription instead of leaving one behind.
    pub subscription_name: Option<String>,
    /// Basic auth the writers (an InfluxDB subscription, vmagent) must send to the ingest
    /// endpoints, and the subscription sends with. Required in stream mode unless `token` is set.
    pub username: String,
    pub password: Secret,
    /// Bearer token accepted instead of (or beside) basic auth.
    pub token: Secret,
    /// Series kept in memory at most; points of new series beyond it are refused and counted.
    pub max_series: u64,
    /// Largest ingest body, after gzip or snappy decompression; a larger one is answered 413.
    pub max_body_bytes: u64,
    /// Every this many stream ticks the streamed collectors read the store too, and the
    /// difference from the stream's readings is reported (`monit_stream_drift`).
    pub reconcile_every: u64,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            subscribe: false,
            advertise_url: None,
            subscription_name: None,
            username: String::new(),
            password: Secret::default(),
            token: Secret::default(),
            max_series: 50_000,
            max_body_bytes: 64 * 1024 * 1024,
            reconcile_every: 10,
        }
    }
}

impl StreamSettings {
    /// The keys in range and consistent; `influx_in_use`: the metric store is InfluxDB.
    pub fn check(&self, influx_in_use: bool) -> anyhow::Result<()> {
        if let Some(name) = &self.subscription_name
            && !is_subscription_name(name)
        {
            bail!(
                "stream.subscription_name = {name:?}: letters, digits and _ only, 1 to \
                 {MAX_SUBSCRIPTION_NAME} characters"
            );
        }
        if let Some(raw) = &self.advertise_url {
            check_advertise_url(raw)?;
        }
        if !self.subscribe {
            return Ok(());
        }
        if !influx_in_use {
            bail!(
                "stream.subscribe = true needs metrics.backend = \"influxdb\": subscriptions are \
                 an InfluxDB 1.x feature (a Prometheus-API store sends with vmagent's \
                 -remoteWrite.url instead)"
            );
        }
        if self
            .advertise_url
            .as_deref()
            .is_none_or(|u| u.trim().is_empty())
        {
            bail!(
                "stream.subscribe = true needs stream.advertise_url: the URL InfluxDB posts the \
                 points to (this instance's HTTP endpoint, e.g. http://batch-0.example:8080)"
            );
        }
        if self.username.is_empty() || self.password.is_empty() {
            bail!(
                "stream.subscribe = true needs stream.username and stream.password: InfluxDB \
                 sends them with every write, and the endpoint refuses points without them"
            );
        }
        Ok(())
    }
}

fn check_advertise_url(raw: &str) -> anyhow::Result<()> {
    let shown = crate::config::redact::url(raw);
    let u = url::Url::parse(raw.trim())
        .map_err(|e| anyhow::anyhow!("stream.advertise_url = {shown:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        bail!(
            "stream.advertise_url = {shown:?}: scheme {:?}, expected http or https",
            u.scheme()
        );
    }
    if u.host_str().is_none_or(str::is_empty) {
        bail!("stream.advertise_url = {shown:?}: no host");
    }
    if !u.username().is_empty() || u.password().is_some() {
        // The URL is shown in SHOW SUBSCRIPTIONS, logs and check-config; the credentials go
        // in as their own keys, so only the subscription's destination ever holds them.
        bail!(
            "stream.advertise_url = {shown:?} has a user or password: set stream.username and \
             stream.password instead"
        );
    }
    if u.query().is_some() || u.fragment().is_some() {
        bail!(
            "stream.advertise_url = {shown:?}: no query or fragment (InfluxDB appends \
             /write?db=..&rp=.. to it)"
        );
    }
    Ok(())
}

/// A name InfluxDB takes unquoted and every tool shows as it is.
pub fn is_subscription_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SUBSCRIPTION_NAME
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(url: Option<&str>) -> StreamSettings {
        StreamSettings {
            subscribe: true,
            advertise_url: url.map(str::to_string),
            subscription_name: None,
            username: "influx".into(),
            password: Secret::new("pw"),
            ..StreamSettings::default()
        }
    }

    #[test]
    fn advertise_url_is_required_and_checked() {
        let e = on(None).check(true).unwrap_err().to_string();
        assert!(e.contains("stream.advertise_url"), "{e}");
        let e = on(Some("ftp://h:1")).check(true).unwrap_err().to_string();
        assert!(e.contains("http or https"), "{e}");
        let e = on(Some("http://u:hunter2@h:1"))
            .check(true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stream.username") && !e.contains("hunter2"),
            "{e}"
        );
        on(Some("http://batch-0.example:8080")).check(true).unwrap();
        let e = on(Some("http://h:1")).check(false).unwrap_err().to_string();
        assert!(e.contains("metrics.backend"), "{e}");
        let mut no_pw = on(Some("http://h:1"));
        no_pw.password = Secret::default();
        let e = no_pw.check(true).unwrap_err().to_string();
        assert!(e.contains("stream.password"), "{e}");
        // off: nothing is needed
        StreamSettings::default().check(false).unwrap();
    }

    #[test]
    fn subscription_names() {
        assert!(is_subscription_name("monit_batch_a1"));
        assert!(!is_subscription_name("a-b"));
        assert!(!is_subscription_name(""));
        assert!(!is_subscription_name(
            &"a".repeat(MAX_SUBSCRIPTION_NAME + 1)
        ));
    }
}
