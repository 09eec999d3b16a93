//! The command line: `run [--once] [--dry-run]`, `migrate`, `check-config`, `plugins`, `runs`,
//! `outbox`, `backtest`, `stream`. Here: the clap definitions, logging, `sample-config`, and the dispatch,
//! which runs the short commands itself and hands the others to a submodule: `batch` for
//! `run` (once or until a signal), `summary` for what ticks did (`run --once`'s summary,
//! `runs`), `outbox`, `silence` and `stream` for those subcommands (their clap enums included),
//! `backtest` for reading `backtest`'s time range and printing its report.

mod backtest;
mod batch;
mod outbox;
mod silence;
mod stream;
mod summary;

pub use outbox::OutboxAction;
pub use silence::SilenceAction;
pub use stream::StreamAction;

use crate::config::{Settings, default_config_path};
use crate::plugin::compiled_plugins;
use crate::run::scheduler::build_plugins;
use crate::store::db;
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

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
    /// The stream of points the writers send: the InfluxDB subscriptions (`stream.subscribe`).
    Stream {
        #[command(subcommand)]
        action: StreamAction,
    },
    /// The operator console (`[console]`, served under /ui/ on the HTTP port).
    Console {
        #[command(subcommand)]
        action: ConsoleAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConsoleAction {
    /// Read a password on stdin (one line) and print its Argon2id hash, for
    /// `[[console.users]] password_hash`.
    HashPassword,
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
    crate::run::heap::limit_arenas();
    crate::run::heap::map_large_blocks();
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
const HOST_SAMPLE: &str = include_str!("../../../../config/monit-batch.toml");
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
            outbox::command(&pool, action, claim_ttl)
                .await
                .with_context(|| format!("outbox of {db}"))
        }
        Command::Silence { action } => {
            let settings = load(&cli)?;
            let pool = db::lazy_pool(&settings.monitoring_db);
            let db = db::describe(&settings.monitoring_db);
            silence::command(&pool, action)
                .await
                .with_context(|| format!("silences of {db}"))
        }
        Command::Console {
            action: ConsoleAction::HashPassword,
        } => {
            // one line; only its line ending is taken off (spaces are part of a password)
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password on stdin")?;
            let password = line.strip_suffix('\n').unwrap_or(&line);
            let password = password.strip_suffix('\r').unwrap_or(password);
            if password.is_empty() {
                anyhow::bail!(
                    "console hash-password: no password on stdin (e.g. `printf '%s\\n' \"$PW\" | monit-batch console hash-password`)"
                );
            }
            println!("{}", crate::run::console::auth::hash_password(password)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Stream { action } => {
            let settings = load(&cli)?;
            init_logging(Some(&settings));
            stream::command(&settings, action).await
        }
        Command::Runs { limit } => {
            let settings = load(&cli)?;
            summary::print_runs(&settings, *limit).await
        }
        Command::Backtest {
            from,
            to,
            step,
            json,
        } => {
            let settings = Arc::new(load(&cli)?);
            init_logging(Some(&settings));
            backtest::command(settings, from, to, *step, *json).await
        }
        Command::Run {
            once,
            dry_run,
            json,
        } => {
            let settings = Arc::new(load(&cli)?);
            init_logging(Some(&settings));
            batch::run_batch(settings, *once, *dry_run, *json).await
        }
    }
}
