//! `email` notifier: mails each alarm notification to the origin's `alarm_targets` over SMTP
//! (implicit TLS, STARTTLS or plain, with or without AUTH), one connection per batch.

pub mod chart;
pub mod config;
pub mod digest;
pub mod notifier;
pub mod render;
mod transport;

pub use config::{EmailConfig, Security};
pub use notifier::EmailNotifier;

use anyhow::Context as _;
use monit_host::plugin::{PluginContext, PluginParts};
use std::sync::Arc;

fn build(ctx: &PluginContext) -> anyhow::Result<PluginParts> {
    let config: EmailConfig = ctx.plugin_config()?;
    config.check_numbers()?;
    let notifier = EmailNotifier::new(config).context("invalid config section [plugins.email]")?;
    tracing::info!(server = %notifier.server(), "email notifier ready");
    Ok(PluginParts {
        notifier: Some(Arc::new(notifier)),
        ..PluginParts::default()
    })
}

use monit_host::plugin::{LegacyConfig, LegacyEnabled, LegacyKey, LegacyKind};

monit_host::inventory::submit! {
    monit_host::PluginRegistration {
        name: "email",
        description: "mails alarm notifications to alarm_targets over SMTP (TLS, STARTTLS or plain)",
        sample: include_str!("../sample.toml"),
        moved_keys: &[],
        legacy_ini: LegacyConfig {
            keys: &[
                LegacyKey { ini: "mail.smtp.host", field: Some("smtp_host"), kind: LegacyKind::Str },
                LegacyKey { ini: "mail.smtp.port", field: Some("smtp_port"), kind: LegacyKind::Int },
                LegacyKey { ini: "mail.sender", field: Some("sender"), kind: LegacyKind::Str },
                LegacyKey { ini: "mail.sender.password", field: Some("password"), kind: LegacyKind::Str },
                LegacyKey { ini: "mail.receiver.email", field: None, kind: LegacyKind::Str },
                LegacyKey { ini: "mail.alarm.send", field: Some("enabled"), kind: LegacyKind::Bool },
                LegacyKey { ini: "mail.tls.send", field: Some("security"), kind: LegacyKind::BoolAs("tls", "plain") },
            ],
            enabled: LegacyEnabled::Never,
        },
        show: monit_host::plugin::show_config::<config::EmailConfig>,
        build,
    }
}
