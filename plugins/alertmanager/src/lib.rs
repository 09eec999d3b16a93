//! `alertmanager` notifier: every alarm posted to Alertmanager's API v2 (`POST /api/v2/alerts`)
//! as an alert, restated every tick while it is open (Alertmanager resolves an alert nobody
//! posts again), resolved on recovery; so a platform that routes its alerts through
//! Alertmanager (Slack, PagerDuty, Opsgenie, its silences and inhibitions) gets the batch's too.

pub mod alerts;
pub mod config;
pub mod notifier;

pub use config::AlertmanagerConfig;
pub use notifier::AlertmanagerNotifier;

use monit_host::plugin::{PluginContext, PluginParts};
use std::sync::Arc;
use std::time::Duration;

/// The console's public URL (`[console] enabled` and `public_url`), for the alerts'
/// `generatorURL`; without it the monitoring web app is linked instead.
fn console_url(ctx: &PluginContext) -> Option<String> {
    ctx.settings.console.link_base()
}

fn build(ctx: &PluginContext) -> anyhow::Result<PluginParts> {
    let config: AlertmanagerConfig = ctx.plugin_config()?;
    let interval = Duration::from_secs(ctx.settings.batch.interval_seconds);
    let notifier = AlertmanagerNotifier::new(config, alerts::hold_for(interval))?
        .with_console(console_url(ctx));
    let step = Duration::from_secs(ctx.settings.batch.step_timeout_seconds);
    if notifier.worst_case() >= step {
        // Not an error: an Alertmanager that answers in time is unaffected. But one that is
        // down would make the host give up on the whole notify step.
        tracing::warn!(
            worst_case_s = notifier.worst_case().as_secs(),
            step_timeout_s = step.as_secs(),
            "alertmanager: plugins.alertmanager.timeout_seconds × (retry_max_times + 1) plus the \
             delays reaches batch.step_timeout_seconds; lower them or raise the step timeout"
        );
    }
    tracing::info!(
        urls = ?notifier.url_labels(),
        hold_s = notifier.hold().as_secs(),
        "alertmanager notifier ready"
    );
    Ok(PluginParts {
        notifier: Some(Arc::new(notifier)),
        ..PluginParts::default()
    })
}

monit_host::inventory::submit! {
    monit_host::PluginRegistration {
        name: "alertmanager",
        description: "Posts every alarm to Alertmanager (API v2) as an alert, restated while open, resolved on recovery",
        sample: include_str!("../sample.toml"),
        moved_keys: &[],
        legacy_ini: monit_host::plugin::LegacyConfig::NONE,
        show: monit_host::plugin::show_config::<config::AlertmanagerConfig>,
        build,
    }
}
