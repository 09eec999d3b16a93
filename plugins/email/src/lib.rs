//! `email` notifier: mails each alarm notification to the origin's `alarm_targets` over SMTP
//! (implicit TLS, STARTTLS or plain, with or without AUTH), one connection per batch.

pub mod config;
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

monit_host::inventory::submit! {
    monit_host::PluginRegistration {
        name: "email",
        description: "mails alarm notifications to alarm_targets over SMTP (TLS, STARTTLS or plain)",
        sample: include_str!("../sample.toml"),
        build,
    }
}
