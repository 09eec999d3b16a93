//! `run [--once] [--dry-run]`: builds the scheduler, then ticks once and prints the summary, or
//! serves health and metrics and ticks until SIGTERM/SIGINT.

use super::summary::print_summary;
use crate::config::MetricMode;
use crate::config::Settings;
use crate::metric_store::MetricStore;
use crate::metric_store::stream::{StreamHandle, StreamState};
use crate::run::http;
use crate::run::scheduler::{Scheduler, build_plugins};
use crate::store::db;
use crate::store::leader::Leader;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

pub(super) async fn run_batch(
    settings: Arc<Settings>,
    once: bool,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let metrics = crate::run::telemetry::install();
    let plugins = build_plugins(&settings)?;
    let pool = db::lazy_pool(&settings.monitoring_db);
    if !dry_run {
        db::migrate(&pool, &settings.monitoring_db).await?;
    }
    let mut metric_store = MetricStore::new(
        settings.metrics.backend,
        &settings.influx,
        &settings.prometheus,
    )?;
    // stream mode: the windows of the series the collectors and scalers declare, filled by
    // the HTTP endpoint (`run --once` serves nothing: it reads the store)
    let stream = (settings.metrics.mode == MetricMode::Stream && !once).then(|| {
        let series: Vec<_> = plugins
            .iter()
            .flat_map(|p| {
                let c = p
                    .parts
                    .collector
                    .iter()
                    .flat_map(|c| c.stream_series(&settings));
                let s = p
                    .parts
                    .scaler
                    .iter()
                    .flat_map(|s| s.stream_series(&settings));
                c.chain(s).collect::<Vec<_>>()
            })
            .collect();
        Arc::new(StreamState::new(&settings.stream, &series))
    });
    if let Some(state) = &stream {
        metric_store = MetricStore::Stream(StreamHandle {
            state: state.clone(),
            query: Box::new(metric_store),
        });
    }
    tracing::info!(
        metric_store = metric_store.backend().as_str(),
        metric_mode = if stream.is_some() { "stream" } else { "query" },
        metric_url = %metric_store.url(),
        config = %settings.source,
        plugins = ?plugins.iter().map(|p| p.name).collect::<Vec<_>>(),
        interval_s = settings.batch.interval_seconds,
        "monit-batch starting"
    );
    let status = Arc::new(Mutex::new(Default::default()));
    // `run --once` ticks whoever holds the lock: it is the operator's explicit request.
    let leader = Arc::new(Leader::new(
        (!once && settings.batch.leader_election)
            .then(|| db::connect_options(&settings.monitoring_db)),
        format!("monit-batch:{}", settings.monitoring_db.dbname),
    ));
    let scheduler = Scheduler {
        settings: settings.clone(),
        pool: pool.clone(),
        metrics: metric_store,
        plugins,
        status: status.clone(),
        leader,
        claim_owner: crate::run::scheduler::claim_owner(&settings),
        // `run --once` is how operators see the platform as it is now: never a reused inventory
        inventory_clock: if once {
            crate::store::inventory::SyncClock::always()
        } else {
            Default::default()
        },
        reconciliation: Default::default(),
    };
    if once {
        if !dry_run {
            super::stream::subscribe(&settings, &scheduler.plugins, false).await?;
        }
        let sum = scheduler.tick(dry_run).await;
        if json {
            println!("{}", serde_json::to_string_pretty(&sum)?);
        } else {
            print_summary(&sum);
        }
        return Ok(if sum.errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        });
    }
    if settings.server.enabled {
        let console = if settings.console.enabled {
            Some(Arc::new(crate::run::console::Console::new(
                pool.clone(),
                settings.clone(),
                Some(scheduler.leader.clone()),
            )?))
        } else {
            None
        };
        http::serve(
            &settings.server,
            http::HttpState {
                pool: pool.clone(),
                status,
                metrics,
                stream,
                console,
            },
        )
        .await?;
    }
    // after the endpoint listens: InfluxDB drops what it cannot deliver
    if !dry_run {
        super::stream::subscribe(&settings, &scheduler.plugins, true).await?;
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: finishing the tick in flight");
        let _ = tx.send(true);
    });
    scheduler.run(rx).await;
    pool.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
