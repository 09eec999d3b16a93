//! `webhook` notifier: POSTs each alarm notification to the configured URLs, as a JSON document
//! of its own or as a Slack message, retrying network errors, timeouts and 5xx answers.

pub mod config;
pub mod notifier;
pub mod payload;

pub use config::{Format, WebhookConfig};
pub use notifier::WebhookNotifier;

use monit_host::plugin::{PluginContext, PluginParts};
use std::sync::Arc;
use std::time::Duration;

fn build(ctx: &PluginContext) -> anyhow::Result<PluginParts> {
    let config: WebhookConfig = ctx.plugin_config()?;
    config.check_numbers()?;
    let notifier = WebhookNotifier::new(config)?;
    let step = Duration::from_secs(ctx.settings.batch.step_timeout_seconds);
    if notifier.worst_case() >= step {
        // Not an error: a URL that answers in time is unaffected. But a dead one would make the
        // host give up on the whole notify step and retry every notification of the batch.
        tracing::warn!(
            worst_case_s = notifier.worst_case().as_secs(),
            step_timeout_s = step.as_secs(),
            "webhook: plugins.webhook.timeout_seconds × (retry_max_times + 1) plus the delays \
             reaches batch.step_timeout_seconds; lower them or raise the step timeout"
        );
    }
    tracing::info!(urls = ?notifier.url_labels(), format = %notifier.format(), "webhook notifier ready");
    Ok(PluginParts {
        notifier: Some(Arc::new(notifier)),
        ..PluginParts::default()
    })
}

monit_host::inventory::submit! {
    monit_host::PluginRegistration {
        name: "webhook",
        description: "POSTs alarm notifications as JSON or Slack messages to webhook URLs",
        sample: include_str!("../sample.toml"),
        build,
    }
}
