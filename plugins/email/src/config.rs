//! `[plugins.email]`: where and how to send the alarm mails.

use monit_host::config::secret::Secret;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Security {
    /// Implicit TLS from the first byte (SMTPS, port 465). `mail.tls.send = true` in config.ini,
    /// and what 2.0 always did.
    #[default]
    Tls,
    /// Plain connection upgraded with STARTTLS before anything else; a server that does not offer
    /// STARTTLS is an error, never a silent fallback to plain text (submission, port 587).
    Starttls,
    /// No TLS at all (a local relay, port 25). `mail.tls.send = false` in config.ini.
    Plain,
}

impl Security {
    pub fn default_port(self) -> u16 {
        match self {
            Security::Tls => 465,
            Security::Starttls => 587,
            Security::Plain => 25,
        }
    }
}

/// By hand, so that a wrong value's error lists the right ones (config's own error does not).
impl<'de> Deserialize<'de> for Security {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.trim().to_ascii_lowercase().as_str() {
            "tls" => Ok(Security::Tls),
            "starttls" => Ok(Security::Starttls),
            "plain" => Ok(Security::Plain),
            _ => Err(serde::de::Error::custom(format!(
                "security = {s:?}: expected \"tls\" (implicit TLS), \"starttls\" or \"plain\""
            ))),
        }
    }
}

/// As it is written in the config.
impl Serialize for Security {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Security::Tls => "tls",
            Security::Starttls => "starttls",
            Security::Plain => "plain",
        })
    }
}

/// The `[plugins.email]` section. Every key of config.ini's `mail.*` maps onto one of these
/// (the host translates them); `sample.toml` documents the same fields.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Send alarm mails (`mail.alarm.send`).
    #[serde(default)]
    pub enabled: bool,
    /// SMTP server name or IP (`mail.smtp.host`). With TLS, the server's certificate must be
    /// issued for this name.
    pub smtp_host: String,
    /// SMTP port (`mail.smtp.port`). Default: 465 for `tls`, 587 for `starttls`, 25 for `plain`.
    #[serde(default)]
    pub smtp_port: Option<u16>,
    /// `tls` (implicit TLS), `starttls` or `plain` (`mail.tls.send`: true → tls, false → plain).
    #[serde(default)]
    pub security: Security,
    /// SMTP AUTH user name. Default: the sender's address.
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP AUTH password (`mail.sender.password`). AUTH is done only when it is set.
    #[serde(default)]
    pub password: Secret,
    /// The From address and envelope sender (`mail.sender`): `ops@example.org` or
    /// `PaaS-TA Monitor <ops@example.org>`.
    pub sender: String,
    /// PEM file of a CA to trust in addition to the built-in web roots, for a server whose
    /// certificate comes from a private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Limit, in seconds, for opening the connection (TCP, TLS, EHLO, AUTH) and for each mail.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Offset from UTC, in hours, of the times shown in the mail body ("occurred at"); the zone
    /// is printed next to each time. The original always added 9 (Korea); 0 shows UTC.
    #[serde(default = "default_display_utc_offset_hours")]
    pub display_utc_offset_hours: f64,
    /// Put a chart of the alarmed reading over the last hour in each alarm mail (a PNG inline
    /// in the HTML part; a digest gets one for each of its first 10 alarms). The host reads
    /// the alarmed series only, one store query per origin and batch; a chart that cannot be
    /// read or drawn leaves the mail without it and a warning in the log.
    #[serde(default = "default_charts")]
    pub charts: bool,
}

fn default_charts() -> bool {
    true
}

fn default_timeout_seconds() -> u64 {
    30
}

fn default_display_utc_offset_hours() -> f64 {
    9.0
}

impl EmailConfig {
    /// A config with every default, for `sender` through `smtp_host`.
    pub fn new(smtp_host: impl Into<String>, sender: impl Into<String>) -> Self {
        Self {
            enabled: true,
            smtp_host: smtp_host.into(),
            smtp_port: None,
            security: Security::default(),
            username: None,
            password: Secret::default(),
            sender: sender.into(),
            ca_file: None,
            timeout_seconds: default_timeout_seconds(),
            display_utc_offset_hours: default_display_utc_offset_hours(),
            charts: default_charts(),
        }
    }

    /// Numbers in range, so that no timeout overflows the clock; errors name the key.
    pub fn check_numbers(&self) -> anyhow::Result<()> {
        monit_host::config::check_range(
            "plugins.email.timeout_seconds",
            self.timeout_seconds,
            1..=3600,
        )
    }

    pub fn port(&self) -> u16 {
        self.smtp_port.unwrap_or(self.security.default_port())
    }
}
