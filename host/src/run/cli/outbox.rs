//! `outbox list|retry|drop`: the notification outbox seen and steered by the operator, never
//! breaking the claim of an instance in the middle of a send.

use crate::run::operator::{self, OutboxVerb};
use clap::Subcommand;
use std::process::ExitCode;

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

pub(super) async fn command(
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
            let (n, left) = operator_act(pool, OutboxVerb::Retry, ids, wait).await?;
            println!("{n} notification(s) queued again");
            return Ok(report_untouched(OutboxVerb::Retry, &left));
        }
        OutboxAction::Drop { ids, wait } => {
            let wait = wait.map(|w| wait_bound(w, claim_ttl));
            let (n, left) = operator_act(pool, OutboxVerb::Drop, ids, wait).await?;
            println!("{n} notification(s) dropped");
            return Ok(report_untouched(OutboxVerb::Drop, &left));
        }
    }
    Ok(ExitCode::SUCCESS)
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

/// [`operator::outbox_act`], saying on stderr when it waits for a claim.
async fn operator_act(
    pool: &sqlx::MySqlPool,
    verb: OutboxVerb,
    ids: &[i64],
    wait: Option<std::time::Duration>,
) -> anyhow::Result<(u64, Vec<(i64, crate::store::outbox::Untouched)>)> {
    operator::outbox_act(pool, verb, ids, wait, |id, holder, seconds_left| {
        eprintln!(
            "notification {id}: being sent by {}; waiting for its claim to end (about {seconds_left} s)",
            holder.escape_debug()
        );
    })
    .await
}

/// Says, on stderr, why each row was left as it was; exit status 1 when any was.
fn report_untouched(verb: OutboxVerb, left: &[(i64, crate::store::outbox::Untouched)]) -> ExitCode {
    let (cmd, _) = verb.words();
    for (id, why) in left {
        let hint = "Run this again after that, or add --wait";
        eprintln!("{cmd}: {}", operator::untouched_text(verb, *id, why, hint));
    }
    if left.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
