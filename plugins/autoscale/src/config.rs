//! `[plugins.autoscale]`: every key documented where it is declared (sample.toml mirrors this).

use anyhow::{Context as _, bail};
use monit_host::config::check_range;
use monit_host::config::secret::Secret;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Which platform API carries out a scaling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActuatorKind {
    /// PaaS-TA portal: `POST <portal_url>/external/app/updateApp`, one instance per call (2.0).
    Portal,
    /// Cloud Foundry Cloud Controller v3 with a UAA token (4.0 and any CF).
    Cf,
}

impl ActuatorKind {
    pub fn code(self) -> &'static str {
        match self {
            ActuatorKind::Portal => "portal",
            ActuatorKind::Cf => "cf",
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscaleConfig {
    /// Run the autoscaler each tick. Needs `portal_db` (the table `auto_scaling_config`).
    #[serde(default)]
    pub enabled: bool,
    /// The PaaS-TA Portal DB (config.ini `portal.db.*`; before this release the host section
    /// `[portal_db]`, still read with a deprecation warning).
    #[serde(default)]
    pub portal_db: Option<monit_host::config::DbSettings>,
    /// `"portal"` or `"cf"`. Unset: `"cf"` when `cf_api_url` is set, else `"portal"` when
    /// `portal_url` is set (a config.ini of 4.0 has `cf.client.*`, one of 2.0 only
    /// `autoscale.portal.url`).
    #[serde(default)]
    pub actuator: Option<ActuatorKind>,
    /// PaaS-TA portal base URL (`autoscale.portal.url` in config.ini), e.g. `http://portal-api.example:2225`.
    #[serde(default)]
    pub portal_url: Option<String>,
    /// Cloud Controller base URL (`cf.client.api_address`), e.g. `https://api.sys.example.com`.
    #[serde(default)]
    pub cf_api_url: Option<String>,
    /// UAA base URL (`cf.client.uaa_address`). Unset: read from `GET <cf_api_url>/`, `links.uaa.href`.
    #[serde(default)]
    pub uaa_url: Option<String>,
    /// User for the UAA password grant (client `cf`, empty secret, as the cf CLI does).
    #[serde(default)]
    pub cf_username: Option<String>,
    #[serde(default)]
    pub cf_password: Secret,
    /// UAA client for the client-credentials grant; when set it is used instead of the user.
    /// The client needs `cloud_controller.admin` (or `cloud_controller.write` plus space roles).
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Secret,
    /// Seconds after an app's last acted scaling during which it is not scaled again.
    /// Unset: the app's own `check_time_sec`, so the next decision sees only load measured after
    /// the change.
    #[serde(default)]
    pub cooldown_seconds: Option<u64>,
    /// Timeout of one HTTP call to the portal, the Cloud Controller or UAA.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Retries of a call that failed with a 5xx or a network error (a 4xx is never retried).
    #[serde(default = "default_retry_max_times")]
    pub retry_max_times: usize,
    /// CA file (PEM) for a portal or Cloud Controller behind a private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip TLS verification of the portal, Cloud Controller and UAA: only for a lab, and logged loudly.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Decide and record every decision in the scaling history (outcome `dry_run`), but never
    /// call the portal or the Cloud Controller: to watch what autoscale would do before letting
    /// it act. (`monit-batch run --once --dry-run` instead records nothing at all.)
    #[serde(default)]
    pub dry_run: bool,
}

fn default_timeout_seconds() -> u64 {
    30
}
fn default_retry_max_times() -> usize {
    3
}

/// How to get a UAA token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    ClientCredentials {
        client_id: String,
        client_secret: Secret,
    },
    /// password grant through the public client `cf` (empty secret), as the cf CLI logs in
    Password { username: String, password: Secret },
}

/// The checked form of [`AutoscaleConfig`]: what the actuator needs, nothing optional left that
/// it depends on.
#[derive(Clone, Debug)]
pub enum ActuatorSettings {
    Portal {
        url: url::Url,
        /// basic auth from the userinfo of `portal_url` (the URL itself keeps none)
        auth: Option<monit_host::config::redact::UrlCredentials>,
    },
    Cf {
        api: url::Url,
        uaa: Option<url::Url>,
        grant: Grant,
    },
}

/// The URL without its userinfo, and the credentials that were in it; errors show the value
/// redacted.
fn parse_url(
    key: &str,
    value: &str,
) -> anyhow::Result<(url::Url, Option<monit_host::config::redact::UrlCredentials>)> {
    let (u, creds) =
        monit_host::config::redact::split_userinfo(&format!("[plugins.autoscale] {key}"), value)?;
    if !matches!(u.scheme(), "http" | "https") {
        bail!(
            "[plugins.autoscale] {key} = {:?}: expected an http:// or https:// URL",
            monit_host::config::redact::url(value)
        );
    }
    Ok((u, creds))
}

/// A Cloud Controller or UAA URL: credentials go in client_id / cf_username, not in the URL.
fn parse_plain_url(key: &str, value: &str) -> anyhow::Result<url::Url> {
    match parse_url(key, value)? {
        (u, None) => Ok(u),
        (_, Some(_)) => bail!(
            "[plugins.autoscale] {key} = {:?} carries a user and password: set client_id and \
             client_secret (or cf_username and cf_password) instead",
            monit_host::config::redact::url(value)
        ),
    }
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl AutoscaleConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }

    pub fn actuator_kind(&self) -> anyhow::Result<ActuatorKind> {
        match self.actuator {
            Some(k) => Ok(k),
            None if non_empty(&self.cf_api_url).is_some() => Ok(ActuatorKind::Cf),
            None if non_empty(&self.portal_url).is_some() => Ok(ActuatorKind::Portal),
            None => bail!(
                "[plugins.autoscale] needs an actuator: set actuator = \"cf\" with cf_api_url, \
                 or actuator = \"portal\" with portal_url"
            ),
        }
    }

    /// Checks the keys the chosen actuator needs; errors name the key.
    pub fn actuator_settings(&self) -> anyhow::Result<ActuatorSettings> {
        check_range(
            "[plugins.autoscale] timeout_seconds",
            self.timeout_seconds,
            1..=3600,
        )?;
        check_range(
            "[plugins.autoscale] retry_max_times",
            self.retry_max_times,
            0..=20,
        )?;
        if let Some(c) = self.cooldown_seconds {
            check_range("[plugins.autoscale] cooldown_seconds", c, 0..=7 * 86_400)?;
        }
        if self.cooldown_seconds == Some(0) {
            tracing::warn!(
                "[plugins.autoscale] cooldown_seconds = 0: an app may be scaled every tick"
            );
        }
        match self.actuator_kind()? {
            ActuatorKind::Portal => {
                let url = non_empty(&self.portal_url).context(
                    "[plugins.autoscale] actuator = \"portal\" needs portal_url (autoscale.portal.url)",
                )?;
                let (url, auth) = parse_url("portal_url", url)?;
                Ok(ActuatorSettings::Portal { url, auth })
            }
            ActuatorKind::Cf => {
                let api = non_empty(&self.cf_api_url).context(
                    "[plugins.autoscale] actuator = \"cf\" needs cf_api_url (cf.client.api_address)",
                )?;
                let api = parse_plain_url("cf_api_url", api)?;
                let uaa = non_empty(&self.uaa_url)
                    .map(|u| parse_plain_url("uaa_url", u))
                    .transpose()?;
                // As go-cfclient (which 4.0 used) decides: a client id means client credentials.
                let grant = if let Some(id) = non_empty(&self.client_id) {
                    if self.client_secret.is_empty() {
                        bail!("[plugins.autoscale] client_id is set but client_secret is empty");
                    }
                    Grant::ClientCredentials {
                        client_id: id.to_string(),
                        client_secret: self.client_secret.clone(),
                    }
                } else if let Some(user) = non_empty(&self.cf_username) {
                    if self.cf_password.is_empty() {
                        bail!("[plugins.autoscale] cf_username is set but cf_password is empty");
                    }
                    Grant::Password {
                        username: user.to_string(),
                        password: self.cf_password.clone(),
                    }
                } else {
                    bail!(
                        "[plugins.autoscale] actuator = \"cf\" needs credentials: client_id and \
                         client_secret, or cf_username and cf_password"
                    );
                };
                Ok(ActuatorSettings::Cf { api, uaa, grant })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_like: serde_json::Value) -> anyhow::Result<AutoscaleConfig> {
        Ok(serde_json::from_value(toml_like)?)
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse(serde_json::json!({"enabled": true, "portal_uri": "http://x"})).unwrap_err();
        assert!(e.to_string().contains("portal_uri"), "{e}");
    }

    #[test]
    fn actuator_defaults_follow_the_configured_urls() {
        let cf =
            parse(serde_json::json!({"cf_api_url": "https://api.x", "portal_url": "http://p"}))
                .unwrap();
        assert_eq!(cf.actuator_kind().unwrap(), ActuatorKind::Cf);
        let portal = parse(serde_json::json!({"portal_url": "http://p"})).unwrap();
        assert_eq!(portal.actuator_kind().unwrap(), ActuatorKind::Portal);
        let none = parse(serde_json::json!({"enabled": true})).unwrap();
        assert!(
            none.actuator_kind()
                .unwrap_err()
                .to_string()
                .contains("actuator")
        );
        let explicit =
            parse(serde_json::json!({"actuator": "portal", "cf_api_url": "https://api.x"}))
                .unwrap();
        assert_eq!(explicit.actuator_kind().unwrap(), ActuatorKind::Portal);
    }

    #[test]
    fn client_id_wins_over_the_user_and_secrets_stay_hidden() {
        let c = parse(serde_json::json!({
            "actuator": "cf", "cf_api_url": "https://api.x",
            "cf_username": "admin", "cf_password": "pw-123",
            "client_id": "batch", "client_secret": "s3cr3t"
        }))
        .unwrap();
        let s = c.actuator_settings().unwrap();
        let ActuatorSettings::Cf { grant, uaa, .. } = &s else {
            panic!("{s:?}")
        };
        assert!(uaa.is_none());
        assert!(
            matches!(grant, Grant::ClientCredentials { client_id, .. } if client_id == "batch")
        );
        let shown = format!("{c:?} {s:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("pw-123"),
            "{shown}"
        );
    }

    #[test]
    fn url_userinfo_is_basic_auth_for_the_portal_and_refused_for_cf() {
        let c = parse(serde_json::json!({"portal_url": "http://pu:portal-pw@portal.example:2225"}))
            .unwrap();
        let ActuatorSettings::Portal { url, auth } = c.actuator_settings().unwrap() else {
            panic!()
        };
        assert_eq!(url.as_str(), "http://portal.example:2225/");
        let auth = auth.unwrap();
        assert_eq!(
            (auth.user.as_str(), auth.password.expose()),
            ("pu", "portal-pw")
        );
        for key in ["cf_api_url", "uaa_url"] {
            let mut v = serde_json::json!({"cf_api_url": "https://api.sys.example", "client_id": "c", "client_secret": "s"});
            v[key] = "https://u:cf-url-pw@api.sys.example".into();
            let e = parse(v)
                .unwrap()
                .actuator_settings()
                .unwrap_err()
                .to_string();
            assert!(e.contains(key) && !e.contains("cf-url-pw"), "{e}");
        }
    }

    #[test]
    fn user_without_client_is_a_password_grant() {
        let c = parse(serde_json::json!({"cf_api_url": "https://api.x", "cf_username": "admin", "cf_password": "pw"}))
            .unwrap();
        let ActuatorSettings::Cf { grant, .. } = c.actuator_settings().unwrap() else {
            panic!()
        };
        assert!(matches!(grant, Grant::Password { username, .. } if username == "admin"));
    }

    #[test]
    fn missing_pieces_are_named() {
        let no_creds = parse(serde_json::json!({"cf_api_url": "https://api.x"})).unwrap();
        assert!(
            no_creds
                .actuator_settings()
                .unwrap_err()
                .to_string()
                .contains("credentials")
        );
        let no_secret =
            parse(serde_json::json!({"cf_api_url": "https://api.x", "client_id": "c"})).unwrap();
        assert!(
            no_secret
                .actuator_settings()
                .unwrap_err()
                .to_string()
                .contains("client_secret")
        );
        let bad_url =
            parse(serde_json::json!({"actuator": "portal", "portal_url": "portal:8080"})).unwrap();
        let e = bad_url.actuator_settings().unwrap_err().to_string();
        assert!(e.contains("portal_url"), "{e}");
        let no_portal = parse(serde_json::json!({"actuator": "portal"})).unwrap();
        assert!(
            no_portal
                .actuator_settings()
                .unwrap_err()
                .to_string()
                .contains("portal_url")
        );
        let zero =
            parse(serde_json::json!({"portal_url": "http://p", "timeout_seconds": 0})).unwrap();
        assert!(
            zero.actuator_settings()
                .unwrap_err()
                .to_string()
                .contains("timeout_seconds")
        );
    }
}
