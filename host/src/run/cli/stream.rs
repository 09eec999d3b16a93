//! `stream subscriptions [--remove NAME | --remove-ours]`, and the subscription `run` keeps
//! when `stream.subscribe` is on ([`crate::metric_store::subscription`] does the work).

use crate::config::Settings;
use crate::config::visible::escape;
use crate::metric_store::influx::InfluxClient;
use crate::metric_store::subscription::{self, EnsureReport, Keeper, Subscription};
use crate::run::scheduler::{BuiltPlugin, build_plugins};
use clap::Subcommand;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// A later check runs once per this many ticks: cheap (two statements per database), and a
/// subscription dropped by hand or with its database is back within minutes.
pub const RECHECK_TICKS: u64 = 10;

#[derive(Subcommand, Debug)]
pub enum StreamAction {
    /// List the subscriptions on the configured InfluxDB (this instance's marked `ours`,
    /// passwords masked), or remove some.
    Subscriptions {
        /// Remove the subscriptions of this name (on every retention policy of every database,
        /// or of --db).
        #[arg(long, conflicts_with = "remove_ours")]
        remove: Option<String>,
        /// Only on this database (with --remove).
        #[arg(long, requires = "remove")]
        db: Option<String>,
        /// Remove this instance's subscriptions: its name on the databases its collectors read
        /// (when the instance is retired).
        #[arg(long)]
        remove_ours: bool,
        #[arg(long)]
        json: bool,
    },
}

/// The InfluxDB databases the enabled collectors read (their stream series'), sorted, once each.
fn collector_databases(plugins: &[BuiltPlugin], settings: &Settings) -> Vec<String> {
    let set: std::collections::BTreeSet<String> = plugins
        .iter()
        .filter_map(|p| p.parts.collector.as_ref())
        .flat_map(|c| c.stream_series(settings))
        .map(|s| s.db)
        .collect();
    set.into_iter().collect()
}

fn our_name(settings: &Settings) -> anyhow::Result<String> {
    subscription::subscription_name(
        &settings.stream,
        settings.batch.instance_name.as_deref(),
        |k| std::env::var(k).ok(),
    )
}

pub(super) async fn command(
    settings: &Settings,
    action: &StreamAction,
) -> anyhow::Result<ExitCode> {
    let StreamAction::Subscriptions {
        remove,
        db,
        remove_ours,
        json,
    } = action;
    let client = InfluxClient::new(&settings.influx)?;
    let all = subscription::list(&client).await?;
    // ours: our name on the databases our collectors read; the same name elsewhere may be
    // another deployment's with the same instance name
    let databases = collector_databases(&build_plugins(&Arc::new(settings.clone()))?, settings);
    let ours = our_name(settings);
    let is_ours =
        |s: &Subscription| ours.as_deref().is_ok_and(|n| n == s.name) && databases.contains(&s.db);
    let target: Option<Vec<&Subscription>> = match (remove, remove_ours) {
        (Some(name), _) => Some(
            all.iter()
                .filter(|s| s.name == *name && db.as_ref().is_none_or(|d| *d == s.db))
                .collect(),
        ),
        (None, true) => {
            ours.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
            Some(all.iter().filter(|s| is_ours(s)).collect())
        }
        (None, false) => None,
    };
    if let Some(matching) = target {
        if matching.is_empty() {
            let name = match (remove, &ours) {
                (Some(n), _) => n.as_str(),
                (None, Ok(n)) => n.as_str(),
                (None, Err(_)) => "",
            };
            anyhow::bail!(
                "no subscription named {:?}{} on InfluxDB {}",
                escape(name),
                db.as_ref()
                    .map(|d| format!(" on database {:?}", escape(d)))
                    .unwrap_or_default(),
                client.url()
            );
        }
        for s in matching {
            subscription::remove(&client, s).await?;
            println!(
                "removed subscription {} on {}.{}",
                escape(&s.name),
                escape(&s.db),
                escape(&s.rp)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if *json {
        let rows: Vec<_> = all
            .iter()
            .map(|s| {
                serde_json::json!({
                    "db": s.db,
                    "retention_policy": s.rp,
                    "name": s.name,
                    "mode": s.mode,
                    "destinations": s.shown_destinations(),
                    "ours": is_ours(s),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "# subscriptions on InfluxDB {} (this instance's: {})",
        client.url(),
        ours.as_deref()
            .unwrap_or("no stable name, see stream.subscription_name")
    );
    if all.is_empty() {
        println!("(none)");
    }
    for s in &all {
        let mark = if is_ours(s) { "ours" } else { "-" };
        println!(
            "{:<5} {}.{} {} {} {}",
            mark,
            escape(&s.db),
            escape(&s.rp),
            escape(&s.name),
            escape(&s.mode),
            escape(&s.shown_destinations().join(","))
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn log_report(report: &EnsureReport, keeper: &Keeper) {
    let destination = keeper.shown_destination();
    let name = &keeper.name;
    for at in &report.created {
        tracing::info!(%name, at, %destination, "InfluxDB subscription created");
    }
    for at in &report.replaced {
        tracing::info!(%name, at, %destination, "InfluxDB subscription replaced (it had another destination or mode)");
    }
    for at in &report.dropped {
        tracing::info!(%name, at, "InfluxDB subscription dropped: it was on a retention policy that is no longer the default");
    }
    for at in &report.kept {
        tracing::debug!(%name, at, "InfluxDB subscription in place");
    }
    for at in &report.differs {
        tracing::warn!(
            %name, at, %destination,
            "InfluxDB subscription of this name has another destination: left as it is until \
             the next start (does another instance use the same batch.instance_name?)"
        );
    }
    for e in &report.errors {
        tracing::warn!(%name, error = %e, "InfluxDB subscription not ensured; retried next tick");
    }
}

/// `run` with `stream.subscribe`: ensures this instance's subscription now (replacing its own
/// stale ones), then keeps it in a task of its own, every [`RECHECK_TICKS`] ticks, or every
/// tick while InfluxDB fails. A store that is down at start does not stop the batch: the query
/// path works without the subscription. `keep`: false for `run --once`.
pub(super) async fn subscribe(
    settings: &Settings,
    plugins: &[BuiltPlugin],
    keep: bool,
) -> anyhow::Result<()> {
    if !settings.stream.subscribe {
        return Ok(());
    }
    let keeper = Keeper::new(settings, collector_databases(plugins, settings))?;
    if keeper.databases.is_empty() {
        tracing::warn!(
            "stream.subscribe is on but no enabled collector reads an InfluxDB database"
        );
    }
    let ok = ensure_once(&keeper, true).await;
    if !keep {
        return Ok(());
    }
    let tick = Duration::from_secs(settings.batch.interval_seconds.max(1));
    tokio::spawn(async move {
        let mut ok = ok;
        let mut replaced_at_start = ok;
        loop {
            tokio::time::sleep(if ok {
                tick * RECHECK_TICKS as u32
            } else {
                tick
            })
            .await;
            // until a first full pass, this is still the start: stale ones are replaced
            ok = ensure_once(&keeper, !replaced_at_start).await;
            replaced_at_start |= ok;
        }
    });
    Ok(())
}

async fn ensure_once(keeper: &Keeper, at_start: bool) -> bool {
    match keeper.ensure(at_start).await {
        Ok(report) => {
            log_report(&report, keeper);
            if !report.errors.is_empty() {
                metrics::counter!("monit_stream_subscription_errors_total").increment(1);
            }
            report.errors.is_empty()
        }
        Err(e) => {
            metrics::counter!("monit_stream_subscription_errors_total").increment(1);
            tracing::warn!(
                name = %keeper.name,
                error = %e,
                "InfluxDB subscriptions not listed; retried next tick"
            );
            false
        }
    }
}
