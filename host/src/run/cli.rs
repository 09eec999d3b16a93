//! The command line: `run [--once] [--dry-run]`, `migrate`, `check-config`, `plugins`, `runs`,
//! `outbox`, `backtest`.

use crate::config::{Settings, default_config_path};
use crate::metric_store::MetricStore;
use crate::plugin::compiled_plugins;
use crate::run::http;
use crate::run::scheduler::{Scheduler, build_plugins};
use crate::store::db;
use crate::store::leader::Leader;
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[derive(Parser, Debug)]
#[command(
    name = "monit-batch",
    version,
    about = "PaaS-TA monitoring batch: alarms, BOSH inventory and autoscale"
)]
pub struct Cli {
    /// Config file: TOML, or the original's config.ini (by extension). Default: ./monit-batch.toml,
    /// ./config/monit-batch.toml, then ./config.ini.
    #[arg(long, short, global = true, env = "MONIT_BATCH_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Apply migrations, then tick every batch.interval_seconds until SIGTERM/SIGINT.
    Run {
        /// One tick, then print a summary and exit.
        #[arg(long)]
        once: bool,
        /// Evaluate everything and print what would be opened, notified and scaled; write and send nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --once: print the summary as JSON (steps, InfluxDB queries, alarms, ...).
        #[arg(long)]
        json: bool,
    },
    /// Apply the Monitoring DB migrations and exit.
    Migrate,
    /// Validate the config and print the effective settings, secrets masked.
    CheckConfig,
    /// List the plugins compiled into this binary and whether config enables each.
    Plugins,
    /// Print a documented config: the host's sections, then the sample of every plugin compiled
    /// into this binary (each plugin's own `sample.toml`).
    SampleConfig,
    /// Replay the stored InfluxDB history through the current policies and print, per policy,
    /// how many alarms and notifications they would have produced. Writes nothing.
    Backtest {
        /// Start, RFC 3339 (2026-11-24T00:00:00Z) or a duration back from now (24h, 90m, 3600s)
        #[arg(long)]
        from: String,
        /// End, as --from; default now
        #[arg(long, default_value = "0s")]
        to: String,
        /// Seconds between replayed ticks; default batch.interval_seconds
        #[arg(long)]
        step: Option<u64>,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show the last ticks recorded in batch_runs.
    Runs {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// The notification outbox: list pending and parked rows, retry or drop them.
    Outbox {
        #[command(subcommand)]
        action: Option<OutboxAction>,
    },
    /// Silences: alarms that match are recorded but not notified until the silence ends.
    Silence {
        #[command(subcommand)]
        action: SilenceAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum SilenceAction {
    /// Silence the alarms matching every --match, for --for.
    Add {
        /// KEY=VALUE; keys: vm (name, `*` globs), ip, origin (pas, bos, con), type (cpu,
        /// memory, disk, fail), app (`*` globs), deployment (`*` globs). Repeat: all must match.
        #[arg(long = "match", required = true, value_parser = parse_matcher)]
        matchers: Vec<crate::hold::silence::Matcher>,
        /// how long: 30m, 2h, 1d, 1h30m; at most 365d
        #[arg(long = "for", value_parser = parse_silence_duration)]
        duration: chrono::Duration,
        /// why (shown in `silence list`)
        #[arg(long)]
        comment: String,
        /// who; default the login name ($USER)
        #[arg(long)]
        author: Option<String>,
    },
    /// List the active silences (--all: ended ones too), and rows that hold nothing because
    /// they are invalid (a zero end date, unreadable matchers).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// End a silence now: what still breaches is notified at the next tick.
    Expire { id: i64 },
}

fn parse_matcher(s: &str) -> Result<crate::hold::silence::Matcher, String> {
    s.parse()
}

fn parse_silence_duration(s: &str) -> Result<chrono::Duration, String> {
    crate::hold::silence::parse_silence_duration(s)
}

#[derive(Subcommand, Debug)]
pub enum OutboxAction {
    /// List rows (default: pending and parked), highest priority and newest first.
    List {
        /// only rows in this state: pending, parked, sent, dropped
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Put rows back in the queue, due now (e.g. after fixing alarm_targets). A row an instance
    /// is sending (a live claim) is left as it is: exit status 1, naming the holder and when
    /// its claim lapses.
    Retry {
        /// outbox row ids (`outbox list`)
        ids: Vec<i64>,
        /// every parked row
        #[arg(long, conflicts_with = "ids")]
        all_parked: bool,
        /// wait for a live claim to end (at most SECONDS, default twice the claim's length:
        /// 2 x (2 x batch.step_timeout_seconds + 5)) instead of refusing at once
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, require_equals = true,
              default_missing_value = "0", value_parser = parse_wait)]
        wait: Option<u64>,
    },
    /// Drop rows for good: they are never sent. A row an instance is sending, or one already
    /// sent, is left as it is (exit status 1).
    Drop {
        #[arg(required = true)]
        ids: Vec<i64>,
        /// wait for a live claim to end, as for `retry`
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, require_equals = true,
              default_missing_value = "0", value_parser = parse_wait)]
        wait: Option<u64>,
    },
}

/// The longest `--wait=SECONDS` (an hour): a claim lasts 2 x step timeout + 5 s, at most a few
/// minutes, so a longer wait means a wrong number.
const MAX_WAIT_SECONDS: u64 = 3600;

fn parse_wait(s: &str) -> Result<u64, String> {
    let n: u64 = s
        .parse()
        .map_err(|_| format!("expected a number of seconds, got {s:?}"))?;
    if n > MAX_WAIT_SECONDS {
        return Err(format!(
            "at most {MAX_WAIT_SECONDS} seconds (a claim lasts 2 x batch.step_timeout_seconds + 5 s), got {n}"
        ));
    }
    Ok(n)
}

#[derive(sqlx::FromRow)]
struct RunRow {
    started_at: chrono::DateTime<chrono::Utc>,
    duration_ms: i64,
    instance: String,
    summary: String,
    errors: Option<String>,
}

pub fn init_logging(settings: Option<&Settings>) {
    let level = settings
        .map(|s| s.log.level.clone())
        .unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = settings.is_some_and(|s| s.log.format == "json");
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A full disk or a closed pipe must not end the process: tracing would report the
        // failed write with eprintln!, which panics when stderr itself cannot be written.
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    let _ = if json {
        b.json().try_init()
    } else {
        b.try_init()
    };
    // found while loading, before any subscriber could show them
    for w in settings.iter().flat_map(|s| &s.warnings) {
        tracing::warn!("{w}");
    }
}

/// Entry point of the binary: parses the command line, runs, and maps errors to exit codes.
/// The binary's entry point. `project_plugins`: every plugin name of the project the binary is
/// built from, compiled in or not (see [`crate::plugin::declare_project_plugins`]).
pub fn main(project_plugins: &'static [&'static str]) -> ExitCode {
    crate::plugin::declare_project_plugins(project_plugins);
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("monit-batch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("monit-batch: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `config/monit-batch.toml` up to its plugin blocks: the host's own sections, documented.
const HOST_SAMPLE: &str = include_str!("../../../config/monit-batch.toml");
/// Where the plugin blocks of `config/monit-batch.toml` start.
pub const PLUGINS_MARKER: &str = "# ---- plugins";

/// The host's documented sections followed by the sample of every compiled plugin, sorted by
/// name: what `monit-batch sample-config` prints.
pub fn sample_config() -> String {
    let host = HOST_SAMPLE
        .find(PLUGINS_MARKER)
        .map_or(HOST_SAMPLE, |i| &HOST_SAMPLE[..i]);
    let mut out = host.trim_end().to_string();
    out.push_str("\n\n");
    out.push_str(PLUGINS_MARKER);
    out.push_str(": each runs only if compiled in (cargo feature) AND enabled here ----\n");
    for p in compiled_plugins() {
        out.push('\n');
        out.push_str(p.sample.trim_end());
        out.push('\n');
    }
    out
}

fn load(cli: &Cli) -> anyhow::Result<Settings> {
    let path = cli.config.clone().or_else(default_config_path);
    crate::plugin::load_settings(path.as_deref())
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::SampleConfig => {
            print!("{}", sample_config());
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugins => {
            // Config is optional here: the listing is about the build.
            let settings = load(&cli).ok();
            for p in compiled_plugins() {
                let enabled = settings.as_ref().is_some_and(|s| s.plugin_enabled(p.name));
                println!(
                    "{:<10} compiled  {:<8}  {}",
                    p.name,
                    if enabled { "enabled" } else { "disabled" },
                    p.description
                );
            }
            for name in crate::plugin::project_plugins()
                .iter()
                .filter(|n| !compiled_plugins().iter().any(|p| p.name == **n))
            {
                println!("{name:<10} absent    (cargo feature `{name}`)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig => {
            let settings = load(&cli)?;
            // builds every enabled plugin: one not compiled in fails here, naming its feature
            build_plugins(&Arc::new(settings.clone()))?;
            for w in &settings.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "# effective config from {} (secrets masked)",
                settings.source
            );
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::plugin::masked_settings(&settings))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let settings = load(&cli)?;
            init_logging(Some(&settings));
            let pool = db::lazy_pool(&settings.monitoring_db);
            db::migrate(&pool, &settings.monitoring_db).await?;
            println!(
                "migrations applied to {}",
                db::describe(&settings.monitoring_db)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Outbox { action } => {
            let settings = load(&cli)?;
            let pool = db::lazy_pool(&settings.monitoring_db);
            let action = action.as_ref().unwrap_or(&OutboxAction::List {
                status: None,
                limit: 50,
                json: false,
            });
            let db = db::describe(&settings.monitoring_db);
            let claim_ttl = crate::store::outbox::claim_ttl(std::time::Duration::from_secs(
                settings.batch.step_timeout_seconds,
            ));
            outbox_command(&pool, action, claim_ttl)
                .await
                .with_context(|| format!("outbox of {db}"))
        }
        Command::Silence { action } => {
            let settings = load(&cli)?;
            let pool = db::lazy_pool(&settings.monitoring_db);
            let db = db::describe(&settings.monitoring_db);
            silence_command(&pool, action)
                .await
                .with_context(|| format!("silences of {db}"))
        }
        Command::Runs { limit } => {
            let settings = load(&cli)?;
            let pool = db::lazy_pool(&settings.monitoring_db);
            let rows: Vec<RunRow> = sqlx::query_as(
                "SELECT started_at, duration_ms, instance, summary, errors FROM batch_runs ORDER BY id DESC LIMIT ?",
            )
            .bind(limit)
            .fetch_all(&pool)
            .await
            .with_context(|| format!("reading batch_runs from {}", db::describe(&settings.monitoring_db)))?;
            for RunRow {
                started_at: started,
                duration_ms: ms,
                instance,
                summary,
                errors,
            } in rows
            {
                let s: serde_json::Value = serde_json::from_str(&summary).unwrap_or_default();
                println!(
                    "{} {:>6}ms {} readings={} alarms={} notifications={} scale={} errors={}",
                    started.format("%Y-%m-%dT%H:%M:%SZ"),
                    ms,
                    instance,
                    s["readings"],
                    s["alarms"],
                    s["notifications"],
                    s["scale"].as_array().map(|a| a.len()).unwrap_or(0),
                    errors.map(|e| e.lines().count()).unwrap_or(0)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backtest {
            from,
            to,
            step,
            json,
        } => {
            let settings = Arc::new(load(&cli)?);
            init_logging(Some(&settings));
            let now = chrono::Utc::now();
            let from = parse_time(from, now)?;
            let to = parse_time(to, now)?;
            if from >= to {
                anyhow::bail!("backtest: --from must be before --to");
            }
            let plugins = build_plugins(&settings)?;
            let pool = db::lazy_pool(&settings.monitoring_db);
            let policies =
                crate::store::load_policies(&pool, settings.alarms.default_measure_seconds).await?;
            let vms = crate::store::load_vms(&pool).await?;
            let metrics = MetricStore::new(
                settings.metrics.backend,
                &settings.influx,
                &settings.prometheus,
            )?;
            let replay = crate::run::backtest::Replay {
                settings: &settings,
                metrics: &metrics,
                plugins: &plugins,
                policies: &policies,
                vms: &vms,
            };
            let step =
                std::time::Duration::from_secs(step.unwrap_or(settings.batch.interval_seconds));
            let report = replay.run(from, to, step).await;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "backtest {} .. {} every {}s over {} VMs",
                    from.to_rfc3339(),
                    to.to_rfc3339(),
                    step.as_secs(),
                    vms.len()
                );
                crate::run::backtest::print(&report, &policies);
            }
            Ok(if report.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Run {
            once,
            dry_run,
            json,
        } => {
            let settings = Arc::new(load(&cli)?);
            init_logging(Some(&settings));
            run_batch(settings, *once, *dry_run, *json).await
        }
    }
}

async fn run_batch(
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
    let metric_store = MetricStore::new(
        settings.metrics.backend,
        &settings.influx,
        &settings.prometheus,
    )?;
    tracing::info!(
        metric_store = metric_store.backend().as_str(),
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
    };
    if once {
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
        http::serve(
            &settings.server,
            http::HttpState {
                pool: pool.clone(),
                status,
                metrics,
            },
        )
        .await?;
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

async fn outbox_command(
    pool: &sqlx::MySqlPool,
    action: &OutboxAction,
    claim_ttl: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    use crate::store::outbox;
    match action {
        OutboxAction::List {
            status,
            limit,
            json,
        } => {
            if let Some(s) = status
                && !matches!(s.as_str(), "pending" | "parked" | "sent" | "dropped")
            {
                anyhow::bail!("--status {s:?}: expected pending, parked, sent or dropped");
            }
            let rows = outbox::list(pool, status.as_deref(), *limit).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:>8} {:<8} {:<8} {:<9} {:>8} {:>3} {:>4} {:<20} last error",
                    "id", "status", "notifier", "kind", "alarm", "pri", "try", "created"
                );
                for r in rows {
                    println!(
                        "{:>8} {:<8} {:<8} {:<9} {:>8} {:>3} {:>4} {:<20} {}",
                        r.id,
                        r.status,
                        r.notifier,
                        r.kind,
                        r.alarm_id,
                        r.priority,
                        r.attempts,
                        r.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                        r.last_error
                            .unwrap_or_default()
                            .lines()
                            .next()
                            .unwrap_or_default()
                    );
                }
            }
        }
        OutboxAction::Retry {
            ids,
            all_parked,
            wait,
        } => {
            if *all_parked {
                let ids: Vec<i64> = outbox::list(pool, Some("parked"), u32::MAX)
                    .await?
                    .into_iter()
                    .map(|r| r.id)
                    .collect();
                let n = outbox::requeue(pool, &ids, chrono::Utc::now()).await?;
                println!("{n} notification(s) queued again");
                return Ok(ExitCode::SUCCESS);
            }
            if ids.is_empty() {
                anyhow::bail!("outbox retry: name the row ids, or --all-parked");
            }
            let wait = wait.map(|w| wait_bound(w, claim_ttl));
            let (n, left) = operator_act(pool, OperatorVerb::Retry, ids, wait).await?;
            println!("{n} notification(s) queued again");
            return Ok(report_untouched(OperatorVerb::Retry, &left));
        }
        OutboxAction::Drop { ids, wait } => {
            let wait = wait.map(|w| wait_bound(w, claim_ttl));
            let (n, left) = operator_act(pool, OperatorVerb::Drop, ids, wait).await?;
            println!("{n} notification(s) dropped");
            return Ok(report_untouched(OperatorVerb::Drop, &left));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OperatorVerb {
    Retry,
    Drop,
}

/// `--wait` without a value (0): twice the claim's length, time for the claim to be renewed
/// once before its send and still lapse.
fn wait_bound(seconds: u64, claim_ttl: std::time::Duration) -> std::time::Duration {
    if seconds == 0 {
        claim_ttl * 2
    } else {
        std::time::Duration::from_secs(seconds)
    }
}

/// Retries or drops each row with one conditional UPDATE (no live claim, in DB time), so an
/// operator never breaks the claim of an instance in the middle of a send; with `wait`, a row
/// under a live claim is tried again until the claim ends or the wait runs out. Returns how
/// many rows were changed and why the others were not.
async fn operator_act(
    pool: &sqlx::MySqlPool,
    verb: OperatorVerb,
    ids: &[i64],
    wait: Option<std::time::Duration>,
) -> anyhow::Result<(u64, Vec<(i64, crate::store::outbox::Untouched)>)> {
    use crate::store::outbox::{self, Untouched};
    let deadline = wait.map(|w| std::time::Instant::now() + w);
    let mut done = 0;
    let mut left = Vec::new();
    for &id in ids {
        // A claim that lapses between the UPDATE and the read shows the row free: try again,
        // a few times at most.
        let mut free_seen = 0;
        let mut announced = false;
        loop {
            let n = match verb {
                OperatorVerb::Retry => outbox::requeue(pool, &[id], chrono::Utc::now()).await?,
                OperatorVerb::Drop => outbox::drop_rows(pool, &[id]).await?,
            };
            if n > 0 {
                done += n;
                break;
            }
            let why = outbox::why_untouched(pool, id).await?;
            match &why {
                Untouched::Free if free_seen < 3 => {
                    free_seen += 1;
                    continue;
                }
                Untouched::Claimed {
                    holder,
                    seconds_left,
                    ..
                } if deadline.is_some_and(|d| std::time::Instant::now() < d) => {
                    if !announced {
                        eprintln!(
                            "notification {id}: being sent by {}; waiting for its claim to end (about {seconds_left} s)",
                            holder.escape_debug()
                        );
                        announced = true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
                _ => {
                    left.push((id, why));
                    break;
                }
            }
        }
    }
    Ok((done, left))
}

/// Says, on stderr, why each row was left as it was; exit status 1 when any was.
fn report_untouched(
    verb: OperatorVerb,
    left: &[(i64, crate::store::outbox::Untouched)],
) -> ExitCode {
    use crate::store::outbox::Untouched;
    let (cmd, done) = match verb {
        OperatorVerb::Retry => ("outbox retry", "queued again"),
        OperatorVerb::Drop => ("outbox drop", "dropped"),
    };
    for (id, why) in left {
        let text = match why {
            Untouched::Missing => format!("notification {id}: no such row in batch_notifications"),
            Untouched::Claimed {
                holder,
                until,
                seconds_left,
            } => format!(
                "notification {id} is being sent: claimed by {} until {} (in {seconds_left} s); \
                 its outcome is still to come, so it was not {done}. Run this again after that, or add --wait",
                holder.escape_debug(),
                until.format("%Y-%m-%dT%H:%M:%S%.3fZ")
            ),
            Untouched::Final { status } if status == "sent" => {
                format!("notification {id} was already sent: it was not {done}")
            }
            Untouched::Final { status } => format!(
                "notification {id} is {}: it was not {done}",
                status.escape_debug()
            ),
            Untouched::Free => format!(
                "notification {id} changed state while this ran: it was not {done}; run this again"
            ),
        };
        eprintln!("{cmd}: {text}");
    }
    if left.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
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

async fn silence_command(
    pool: &sqlx::MySqlPool,
    action: &SilenceAction,
) -> anyhow::Result<ExitCode> {
    use crate::config::visible::escape;
    let now = chrono::Utc::now();
    match action {
        SilenceAction::Add {
            matchers,
            duration,
            comment,
            author,
        } => {
            if comment.trim().is_empty() {
                anyhow::bail!("silence add: --comment must say why");
            }
            let author = author
                .clone()
                .or_else(|| std::env::var("USER").ok())
                .filter(|a| !a.trim().is_empty())
                .unwrap_or_else(|| "unknown".into());
            let ends_at = now
                .checked_add_signed(*duration)
                .ok_or_else(|| anyhow::anyhow!("silence add: --for reaches past any date"))?;
            let id =
                crate::hold::silence::add(pool, matchers, &author, comment, now, ends_at).await?;
            let m: Vec<String> = matchers.iter().map(ToString::to_string).collect();
            println!(
                "silence {id} added: {} until {} by {}",
                m.join(" "),
                ends_at.format("%Y-%m-%dT%H:%M:%SZ"),
                escape(&author)
            );
        }
        SilenceAction::List { all, json } => {
            let list = crate::hold::silence::list(pool, now, *all).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                // one line per row, whatever its author or comment hold (see `visible`)
                for s in &list {
                    let m: Vec<String> = s.matchers.iter().map(ToString::to_string).collect();
                    let state = match s.ends_at {
                        _ if !s.valid => "invalid",
                        Some(t) if t > now => "active ",
                        _ => "ended  ",
                    };
                    let until = s
                        .ends_at
                        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                        .unwrap_or_else(|| "?".repeat(20));
                    let problems = if s.valid {
                        String::new()
                    } else {
                        format!(" INVALID: {}", escape(&s.problems.join("; ")))
                    };
                    println!(
                        "{:>5} {state} until {until} {:<12} {} ({}){problems}",
                        s.id,
                        escape(&s.author),
                        m.join(" "),
                        escape(&s.comment)
                    );
                }
                let invalid = list.iter().filter(|s| !s.valid).count();
                if invalid > 0 {
                    eprintln!(
                        "warning: {invalid} silence row(s) hold nothing (INVALID above); \
                         `monit-batch silence expire ID` ends one"
                    );
                }
            }
        }
        SilenceAction::Expire { id } => {
            if !crate::hold::silence::expire(pool, *id, now).await? {
                anyhow::bail!("silence expire: no active silence with id {id} (`silence list`)");
            }
            println!("silence {id} expired");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `2026-11-24T00:00:00Z`, or a duration back from `now`: `24h`, `90m`, `3600s`, `2d`.
fn parse_time(
    s: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| {
        anyhow::anyhow!("not a time: {s:?} (RFC 3339, or a duration back from now like 24h)")
    })?;
    let unit_secs = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => anyhow::bail!("not a time: {s:?} (units: s, m, h, d)"),
    };
    n.checked_mul(unit_secs)
        .and_then(chrono::Duration::try_seconds)
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| anyhow::anyhow!("not a time: {s:?} reaches before any date"))
}

fn print_summary(sum: &crate::run::scheduler::TickSummary) {
    println!(
        "tick {} ({} ms){}",
        sum.started_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        sum.duration_ms,
        if sum.dry_run {
            " DRY RUN: nothing written or sent"
        } else {
            ""
        }
    );
    for (name, ch) in &sum.inventory {
        println!(
            "  inventory {name}: +{} zones, +{} vms, {} updated, -{} removed, {} missing (kept), {} alarms closed",
            ch.zones_added,
            ch.vms_added,
            ch.vms_updated,
            ch.vms_removed,
            ch.vms_absent,
            ch.alarms_closed
        );
    }
    let steps: Vec<String> = sum
        .steps_ms
        .iter()
        .map(|(k, v)| format!("{k} {v}ms"))
        .collect();
    println!("  steps     {}", steps.join(", "));
    println!(
        "  {:<9} {} queries, {} rows",
        sum.metric_store, sum.influx_queries, sum.influx_rows
    );
    for (name, n) in &sum.readings {
        println!("  readings  {name}: {n}");
    }
    for g in &sum.metric_gaps {
        println!(
            "  gap       {}: {} of {} targets without data (metrics pipeline, one alarm)",
            g.origin, g.silent, g.targets
        );
    }
    let a = &sum.alarms;
    println!(
        "  alarms    opened {}, escalated {}, stepped down {}, still open {} (re-notified {}), recovered {}",
        a.opened, a.escalated, a.stepped_down, a.continued, a.renotified, a.recovered
    );
    let n = &sum.notifications;
    println!(
        "  notify    sent {}, failed {}, parked {}, pending {}",
        n.sent, n.failed, n.parked, n.pending
    );
    if n.digests > 0 {
        println!(
            "  digests   {} (several notifications as one message)",
            n.digests
        );
    }
    let h = &sum.held;
    if h.silenced + h.maintenance + h.inhibited > 0 {
        println!(
            "  held      silenced {}, maintenance {}, inhibited {} (recorded, not notified)",
            h.silenced, h.maintenance, h.inhibited
        );
    }
    if !sum.maintenance.is_empty() {
        let names: Vec<_> = sum
            .maintenance
            .iter()
            .map(|d| crate::config::visible::escape(d))
            .collect();
        println!("  maintenance {}", names.join(", "));
    }
    for h in &sum.maintenance_cut_short {
        println!(
            "  maintenance {} CUT SHORT: task {} running since {} (alarms.maintenance_max_hours): alarms notified",
            crate::config::visible::escape(&h.deployment),
            h.task_id,
            h.since
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| "?".into())
        );
    }
    if let Some(age) = sum.maintenance_oldest_seconds {
        println!("  maintenance oldest hold {age} s");
    }
    for d in &sum.scale {
        println!(
            "  scale     {} ({}): {:?} {:?} {:?}->{:?}: {}",
            d.app_name,
            d.app_guid,
            d.action,
            d.outcome,
            d.instances_before,
            d.instances_after,
            d.reason
        );
    }
    for p in &sum.planned {
        println!("  would     {p}");
    }
    for e in &sum.errors {
        println!("  ERROR     {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtest_times_are_checked_not_overflowed() {
        let now = chrono::Utc::now();
        assert_eq!(
            parse_time("90m", now).unwrap(),
            now - chrono::Duration::minutes(90)
        );
        for bad in ["999999999999999d", "9223372036854775807s", "12x", "soon"] {
            let e = parse_time(bad, now).unwrap_err().to_string();
            assert!(e.contains("not a time"), "{bad}: {e}");
        }
    }
}
