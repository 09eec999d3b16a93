//! What an operator changes, with the same rules whether it comes from the command line
//! (`monit-batch silence`, `monit-batch outbox`) or the console: a silence needs a reason, at
//! least one matcher and an end within a year; an outbox row is retried or dropped by one
//! conditional UPDATE that never breaks the live claim of an instance in the middle of a send.

use crate::hold::silence::{self, Matcher};
use crate::model::Timestamp;
use crate::store::outbox::{self, Untouched};
use sqlx::MySqlPool;

/// Adds a silence from `now` for `duration`; returns its id and end. `duration` is bounded by
/// [`silence::parse_silence_duration`] where it is read.
pub async fn add_silence(
    pool: &MySqlPool,
    matchers: &[Matcher],
    duration: chrono::Duration,
    comment: &str,
    author: &str,
    now: Timestamp,
) -> anyhow::Result<(i64, Timestamp)> {
    if comment.trim().is_empty() {
        anyhow::bail!("silence add: --comment must say why");
    }
    if matchers.is_empty() {
        anyhow::bail!("silence add: at least one --match KEY=VALUE");
    }
    let ends_at = now
        .checked_add_signed(duration)
        .ok_or_else(|| anyhow::anyhow!("silence add: --for reaches past any date"))?;
    let id = silence::add(pool, matchers, author, comment, now, ends_at).await?;
    Ok((id, ends_at))
}

/// Ends a silence now; an error when there is no active silence with that id.
pub async fn expire_silence(pool: &MySqlPool, id: i64, now: Timestamp) -> anyhow::Result<()> {
    if !silence::expire(pool, id, now).await? {
        anyhow::bail!("silence expire: no active silence with id {id} (`silence list`)");
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxVerb {
    Retry,
    Drop,
}

impl OutboxVerb {
    /// The command, and what it does to a row, for messages.
    pub fn words(self) -> (&'static str, &'static str) {
        match self {
            OutboxVerb::Retry => ("outbox retry", "queued again"),
            OutboxVerb::Drop => ("outbox drop", "dropped"),
        }
    }
}

/// Retries or drops each row with one conditional UPDATE (no live claim, in DB time), so an
/// operator never breaks the claim of an instance in the middle of a send; with `wait`, a row
/// under a live claim is tried again until the claim ends or the wait runs out (`waiting` is
/// told once per row, with the holder and the seconds left). Returns how many rows were
/// changed and why the others were not.
pub async fn outbox_act(
    pool: &MySqlPool,
    verb: OutboxVerb,
    ids: &[i64],
    wait: Option<std::time::Duration>,
    mut waiting: impl FnMut(i64, &str, i64),
) -> anyhow::Result<(u64, Vec<(i64, Untouched)>)> {
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
                OutboxVerb::Retry => outbox::requeue(pool, &[id], chrono::Utc::now()).await?,
                OutboxVerb::Drop => outbox::drop_rows(pool, &[id]).await?,
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
                        waiting(id, holder, *seconds_left);
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

/// Why a row was left as it was, in one sentence (the holder's name shown escaped). `hint`:
/// what to do about a live claim (the CLI offers `--wait`).
pub fn untouched_text(verb: OutboxVerb, id: i64, why: &Untouched, hint: &str) -> String {
    let (_, done) = verb.words();
    match why {
        Untouched::Missing => format!("notification {id}: no such row in batch_notifications"),
        Untouched::Claimed {
            holder,
            until,
            seconds_left,
        } => format!(
            "notification {id} is being sent: claimed by {} until {} (in {seconds_left} s); \
             its outcome is still to come, so it was not {done}. {hint}",
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
    }
}
