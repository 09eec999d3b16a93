//! `silence add|list|expire`: the operator's silences, stored by [`crate::hold::silence`].

use clap::Subcommand;
use std::process::ExitCode;

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

pub(super) async fn command(
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
            let author = author
                .clone()
                .or_else(|| std::env::var("USER").ok())
                .filter(|a| !a.trim().is_empty())
                .unwrap_or_else(|| "unknown".into());
            let (id, ends_at) =
                crate::run::operator::add_silence(pool, matchers, *duration, comment, &author, now)
                    .await?;
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
            crate::run::operator::expire_silence(pool, *id, now).await?;
            println!("silence {id} expired");
        }
    }
    Ok(ExitCode::SUCCESS)
}
