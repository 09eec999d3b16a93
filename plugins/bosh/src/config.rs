//! `[plugins.bosh]`: where the director is, how to log in, which deployments to sync.

use anyhow::bail;
use monit_host::config::check_range;
use monit_host::config::redact::{self, UrlCredentials};
use monit_host::config::secret::Secret;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// The plugin's config section. Every field is documented here; `sample.toml` mirrors it.
/// `Debug` shows `api_url` redacted and the secrets masked.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BoshConfig {
    /// Run this plugin (the host reads it too).
    #[serde(default)]
    pub enabled: bool,
    /// Director URL, e.g. `https://director.example:25555`. A bare `host:port` (legacy
    /// `bosh.api.url`) means `https://host:port`. A `user:password@` in it is used as
    /// `username` / `password` when those are unset, and never shown.
    pub api_url: String,
    /// Director user (legacy `bosh.admin`): basic auth, or the UAA password grant.
    #[serde(default)]
    pub username: String,
    /// Password of `username` (legacy `bosh.password`).
    #[serde(default)]
    pub password: Secret,
    /// UAA client for the client credentials grant. Unset: password grant with the BOSH CLI's
    /// public client `bosh_cli` (empty secret) and `username` / `password`.
    #[serde(default)]
    pub uaa_client_id: Option<String>,
    /// Secret of `uaa_client_id`.
    #[serde(default)]
    pub uaa_client_secret: Option<Secret>,
    /// The Cloud Foundry deployment (legacy `bosh.cf.deployment.name`).
    pub cf_deployment: String,
    /// The Diego deployment when Diego is deployed separately (legacy
    /// `bosh.diego.deployment.name`); empty or unset when Diego is part of `cf_deployment`.
    #[serde(default)]
    pub diego_deployment: Option<String>,
    /// Job name prefix of the Diego cells (legacy `bosh.diego.cell.name.prefix` /
    /// `bosh.cell.name.prefix`). A VM is a cell (`vm_type = cel`) when its job name starts with
    /// it, or, when the VM has an availability zone (modern naming), contains it.
    /// An empty prefix marks no VM as a cell.
    #[serde(default = "default_cell_prefix")]
    pub cell_prefix: String,
    /// Name of the director VM in the BOSH metrics (legacy `bosh.service.name`): the `bos`
    /// collector's target.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// PEM file of the CA(s) that signed the director's and UAA's certificates (directors use a
    /// private CA). Added to the system roots.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Accept any certificate from the director and UAA. Insecure; logged as a warning at start.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// InfluxDB database of the director's metrics (config.ini `influx.bosh.db_name`).
    #[serde(default = "default_db")]
    pub db: String,
    /// Measurement of the director's metrics in `db`, filtered on tag `origin` = `service_name`.
    #[serde(default = "default_measurement")]
    pub measurement: String,
    /// Timeout of each HTTP request to the director or UAA, in seconds.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// How long a director task (the VM list of one deployment) may run before the sync gives
    /// up, in seconds. Keep the whole sync below `batch.step_timeout_seconds`.
    #[serde(default = "default_task_timeout_seconds")]
    pub task_timeout_seconds: u64,
    /// Pause between two polls of a running task, in milliseconds.
    #[serde(default = "default_task_poll_millis")]
    pub task_poll_millis: u64,
    /// Largest answer read from the director or UAA, in bytes; a larger one is an error and
    /// leaves the inventory unchanged. The VM list is parsed line by line as it arrives, so
    /// memory follows the number of VMs, not this limit.
    #[serde(default = "default_max_answer_bytes")]
    pub max_answer_bytes: u64,
    /// How often the VM inventory is fetched, in seconds (0: every tick). Each VM list is a
    /// director task, so the ticks between use the last synced inventory; the director's tasks
    /// (maintenance) are still asked every tick, and one starting or ending syncs at once.
    #[serde(default = "default_sync_interval_seconds")]
    pub sync_interval_seconds: u64,
}

impl std::fmt::Debug for BoshConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoshConfig")
            .field("enabled", &self.enabled)
            .field("api_url", &redact::url(&self.api_url))
            .field("username", &self.username)
            .field("password", &self.password)
            .field("uaa_client_id", &self.uaa_client_id)
            .field("uaa_client_secret", &self.uaa_client_secret)
            .field("cf_deployment", &self.cf_deployment)
            .field("diego_deployment", &self.diego_deployment)
            .field("cell_prefix", &self.cell_prefix)
            .field("service_name", &self.service_name)
            .field("db", &self.db)
            .field("measurement", &self.measurement)
            .field("ca_cert", &self.ca_cert)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("task_timeout_seconds", &self.task_timeout_seconds)
            .field("task_poll_millis", &self.task_poll_millis)
            .field("max_answer_bytes", &self.max_answer_bytes)
            .field("sync_interval_seconds", &self.sync_interval_seconds)
            .finish()
    }
}

fn default_cell_prefix() -> String {
    "cell".into()
}
fn default_db() -> String {
    "bosh_metric_db".into()
}
fn default_measurement() -> String {
    "bosh_metrics".into()
}
fn default_service_name() -> String {
    "micro-bosh".into()
}
fn default_timeout_seconds() -> u64 {
    10
}
fn default_task_timeout_seconds() -> u64 {
    20
}
fn default_task_poll_millis() -> u64 {
    1000
}
fn default_sync_interval_seconds() -> u64 {
    300
}
fn default_max_answer_bytes() -> u64 {
    // a `vms?format=full` line is 1-3 KB: room for about 10,000 VMs
    32 * 1024 * 1024
}

impl BoshConfig {
    /// A config with the defaults, for tests and examples.
    pub fn new(api_url: impl Into<String>, cf_deployment: impl Into<String>) -> Self {
        Self {
            enabled: true,
            api_url: api_url.into(),
            username: String::new(),
            password: Secret::default(),
            uaa_client_id: None,
            uaa_client_secret: None,
            cf_deployment: cf_deployment.into(),
            diego_deployment: None,
            cell_prefix: default_cell_prefix(),
            service_name: default_service_name(),
            db: default_db(),
            measurement: default_measurement(),
            ca_cert: None,
            insecure_skip_verify: false,
            timeout_seconds: default_timeout_seconds(),
            task_timeout_seconds: default_task_timeout_seconds(),
            task_poll_millis: default_task_poll_millis(),
            max_answer_bytes: default_max_answer_bytes(),
            sync_interval_seconds: default_sync_interval_seconds(),
        }
    }

    /// Checks what can be checked without the director; errors name the config key.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.director_url()?;
        if self.cf_deployment.trim().is_empty() {
            bail!("plugins.bosh.cf_deployment is empty: name the Cloud Foundry deployment");
        }
        match (&self.uaa_client_id, &self.uaa_client_secret) {
            (Some(id), _) if id.trim().is_empty() => {
                bail!("plugins.bosh.uaa_client_id is empty: remove it or name the UAA client")
            }
            (Some(_), None) => {
                bail!("plugins.bosh.uaa_client_secret is missing for plugins.bosh.uaa_client_id")
            }
            (None, Some(_)) => {
                bail!("plugins.bosh.uaa_client_secret is set but plugins.bosh.uaa_client_id is not")
            }
            (None, None) if self.credentials()?.0.trim().is_empty() => bail!(
                "plugins.bosh.username is empty: set username/password, or uaa_client_id/uaa_client_secret"
            ),
            _ => {}
        }
        for (key, value, range) in [
            ("timeout_seconds", self.timeout_seconds, 1..=3600),
            (
                "task_timeout_seconds",
                self.task_timeout_seconds,
                1..=86_400,
            ),
            ("task_poll_millis", self.task_poll_millis, 1..=600_000),
            ("max_answer_bytes", self.max_answer_bytes, 1024..=4 << 30),
            (
                "sync_interval_seconds",
                self.sync_interval_seconds,
                0..=86_400,
            ),
        ] {
            check_range(&format!("plugins.bosh.{key}"), value, range)?;
        }
        Ok(())
    }

    /// The director's base URL, without userinfo; `host:port` gets `https://`.
    pub fn director_url(&self) -> anyhow::Result<Url> {
        Ok(self.split_api_url()?.0)
    }

    /// `username` / `password`, or the userinfo of `api_url` when `username` is unset.
    pub fn credentials(&self) -> anyhow::Result<(String, Secret)> {
        match self.split_api_url()?.1 {
            Some(c) if self.username.trim().is_empty() => Ok((c.user, c.password)),
            _ => Ok((self.username.clone(), self.password.clone())),
        }
    }

    fn split_api_url(&self) -> anyhow::Result<(Url, Option<UrlCredentials>)> {
        let raw = self.api_url.trim();
        if raw.is_empty() {
            bail!(
                "plugins.bosh.api_url is empty: set the director URL, e.g. https://director.example:25555"
            );
        }
        let with_scheme = if raw.contains("://") {
            raw.to_string()
        } else {
            format!("https://{raw}")
        };
        let shown = redact::url(raw);
        let (url, creds) = redact::split_userinfo("plugins.bosh.api_url", &with_scheme)?;
        if url.scheme() != "https" && url.scheme() != "http" {
            bail!("plugins.bosh.api_url {shown:?}: the scheme must be https (or http)");
        }
        if url.host_str().is_none() {
            bail!("plugins.bosh.api_url {shown:?} has no host");
        }
        Ok((url, creds))
    }

    /// The deployments to sync, in order, without duplicates or empty names.
    pub fn deployments(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for name in std::iter::once(&self.cf_deployment).chain(self.diego_deployment.iter()) {
            let name = name.trim();
            if !name.is_empty() && !out.iter().any(|d| d == name) {
                out.push(name.to_string());
            }
        }
        out
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }

    pub fn task_timeout(&self) -> Duration {
        Duration::from_secs(self.task_timeout_seconds)
    }

    pub fn task_poll_interval(&self) -> Duration {
        Duration::from_millis(self.task_poll_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str) -> anyhow::Result<BoshConfig> {
        let c = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()?;
        Ok(c.try_deserialize()?)
    }

    #[test]
    fn legacy_host_port_gets_https() {
        let c = BoshConfig::new("director.example:25555", "paasta");
        assert_eq!(
            c.director_url().unwrap().as_str(),
            "https://director.example:25555/"
        );
        let c = BoshConfig::new("http://director.example:25555", "paasta");
        assert_eq!(
            c.director_url().unwrap().as_str(),
            "http://director.example:25555/"
        );
    }

    #[test]
    fn defaults_and_unknown_keys() {
        let c = from_toml(
            "enabled = true\napi_url = \"d:25555\"\nusername = \"admin\"\npassword = \"pw\"\ncf_deployment = \"paasta\"\n",
        )
        .unwrap();
        assert_eq!(c.cell_prefix, "cell");
        assert_eq!(c.service_name, "micro-bosh");
        assert!(!c.insecure_skip_verify);
        assert_eq!(c.deployments(), vec!["paasta".to_string()]);
        c.validate().unwrap();
        assert!(!format!("{c:?}").contains("pw\""));

        let err =
            from_toml("api_url = \"d\"\ncf_deployment = \"x\"\nusernme = \"a\"\n").unwrap_err();
        assert!(err.to_string().contains("usernme"), "{err}");
    }

    #[test]
    fn userinfo_of_api_url_is_the_login_and_never_shown() {
        let mut c = BoshConfig::new("https://ad%40min:pw-in-url@director.example:25555", "p");
        assert_eq!(
            c.director_url().unwrap().as_str(),
            "https://director.example:25555/"
        );
        let (user, pw) = c.credentials().unwrap();
        assert_eq!((user.as_str(), pw.expose()), ("ad@min", "pw-in-url"));
        c.validate().unwrap();
        assert!(!format!("{c:?}").contains("pw-in-url"), "{c:?}");
        // an explicit username wins; the URL's password is still dropped
        c.username = "admin".into();
        assert_eq!(c.credentials().unwrap().0, "admin");
        c.api_url = "ftp://u:pw-in-url@director.example".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("plugins.bosh.api_url") && !e.contains("pw-in-url"),
            "{e}"
        );
    }

    #[test]
    fn numbers_are_range_checked() {
        let mut c = BoshConfig::new("d:1", "paasta");
        c.username = "admin".into();
        c.task_timeout_seconds = u64::MAX;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("plugins.bosh.task_timeout_seconds"), "{e}");
        c.task_timeout_seconds = 20;
        c.max_answer_bytes = 10;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("plugins.bosh.max_answer_bytes"), "{e}");
    }

    #[test]
    fn deployments_skip_empty_and_duplicate_names() {
        let mut c = BoshConfig::new("d:1", "paasta");
        c.diego_deployment = Some(String::new());
        assert_eq!(c.deployments(), vec!["paasta".to_string()]);
        c.diego_deployment = Some("paasta".into());
        assert_eq!(c.deployments(), vec!["paasta".to_string()]);
        c.diego_deployment = Some("paasta-diego".into());
        assert_eq!(
            c.deployments(),
            vec!["paasta".to_string(), "paasta-diego".to_string()]
        );
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = BoshConfig::new("d:1", "paasta");
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("plugins.bosh.username")
        );
        c.uaa_client_id = Some("monit".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("uaa_client_secret")
        );
        c.uaa_client_secret = Some(Secret::new("s"));
        c.validate().unwrap();
        c.task_poll_millis = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("task_poll_millis")
        );
        let c = BoshConfig::new("", "paasta");
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("plugins.bosh.api_url")
        );
    }
}
