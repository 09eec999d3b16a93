//! Maintenance from the platform: while the BOSH director runs a task that changes a
//! deployment's VMs (deploy, recreate, stop, start, restart), their alarms are recorded but not
//! notified, for the task and `alarms.maintenance_grace_minutes` after it was last seen. A
//! director that cannot answer changes nothing: what was recorded stands.
//!
//! A hold has an end even when the task has none: `alarms.maintenance_max_hours` after the
//! deployment's hold began (`first_seen_at`), a task stuck in `processing` no longer holds
//! anything, and the notifications of the deployment's alarms say why they come now.

use crate::model::Timestamp;
use crate::plugin::{ChangeInProgress, InventorySnapshot};
use anyhow::Context as _;
use sqlx::{MySqlPool, QueryBuilder, Row};
use std::collections::{HashMap, HashSet};

/// Records the deployments a task is running on now.
pub async fn record_tasks(
    pool: &MySqlPool,
    tasks: &[ChangeInProgress],
    now: Timestamp,
) -> anyhow::Result<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::new(
        "INSERT INTO batch_maintenance (deployment, task_id, description, first_seen_at, last_seen_at) ",
    );
    q.push_values(tasks, |mut b, t| {
        b.push_bind(t.deployment.chars().take(200).collect::<String>())
            .push_bind(t.task_id)
            .push_bind(t.description.chars().take(500).collect::<String>())
            .push_bind(now)
            .push_bind(now);
    });
    q.push(
        " ON DUPLICATE KEY UPDATE task_id = VALUES(task_id), description = VALUES(description), \
         last_seen_at = VALUES(last_seen_at)",
    );
    q.build()
        .execute(pool)
        .await
        .context("recording BOSH tasks in batch_maintenance")?;
    Ok(())
}

/// A deployment under maintenance: the task last seen on it and since when it is held.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Hold {
    pub deployment: String,
    pub task_id: i64,
    /// what the director calls the task (`create deployment`, ...)
    pub description: String,
    /// when the batch first saw a task on the deployment; kept while tasks follow each other
    /// within the grace, so back-to-back tasks are one hold. None: the row holds no valid time,
    /// and the hold counts as over its bound (an alarm is never held on a guess).
    pub since: Option<Timestamp>,
}

impl Hold {
    /// How long the deployment has been held at `now`.
    pub fn age(&self, now: Timestamp) -> Option<chrono::Duration> {
        self.since.map(|s| now - s)
    }

    /// Past `alarms.maintenance_max_hours`: the task no longer holds the deployment's alarms.
    pub fn is_over(&self, now: Timestamp, max_hours: u64) -> bool {
        let max =
            chrono::Duration::hours(max_hours.min(crate::config::MAX_MAINTENANCE_HOURS) as i64);
        self.age(now).is_none_or(|age| age >= max)
    }

    /// The line that tells, in a notification of one of the deployment's alarms, why it comes
    /// although a task still runs. The deployment and the description come from the director:
    /// shown escaped, on one line.
    pub fn cut_short_line(&self, language: &str, max_hours: u64) -> String {
        let since = self
            .since
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "?".into());
        let (deployment, description) = (
            crate::config::visible::escape(&self.deployment),
            crate::config::visible::escape(&self.description),
        );
        let task = self.task_id;
        if language.eq_ignore_ascii_case("en") {
            format!(
                "{CUT_SHORT_EN} BOSH task {task} ({description}) on deployment {deployment}, \
                 in progress since {since}, ran past alarms.maintenance_max_hours ({max_hours} h): \
                 the deployment's alarms are notified again."
            )
        } else {
            format!(
                "{CUT_SHORT_KO} 배포 {deployment}의 BOSH 작업 {task} ({description})이(가) \
                 {since}부터 alarms.maintenance_max_hours({max_hours}시간)보다 오래 진행 중이어서 \
                 이 배포의 알림을 다시 보냅니다."
            )
        }
    }
}

/// How a cut-short line begins, in each language: a digest, which lists alarms without their
/// messages, finds the line by it (`cut_short_line_in`).
pub const CUT_SHORT_EN: &str = "[maintenance hold cut short]";
pub const CUT_SHORT_KO: &str = "[점검 보류 중단]";

/// The cut-short line of a notification's message, if it has one.
pub fn cut_short_line_in(message: &str) -> Option<&str> {
    message
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(CUT_SHORT_EN) || l.starts_with(CUT_SHORT_KO))
}

/// The deployments under maintenance at `now` (a task seen within the grace), oldest hold
/// first; older rows are deleted.
pub async fn active(
    pool: &MySqlPool,
    now: Timestamp,
    grace_minutes: u64,
) -> anyhow::Result<Vec<Hold>> {
    // `last_seen_at` holds whole seconds (rounded or truncated by the server): a second of
    // slack, so a task seen in this very tick counts with a grace of 0.
    let since = now
        - chrono::Duration::minutes(grace_minutes.min(7 * 24 * 60) as i64)
        - chrono::Duration::seconds(1);
    sqlx::query("DELETE FROM batch_maintenance WHERE last_seen_at < ?")
        .bind(since)
        .execute(pool)
        .await
        .context("pruning batch_maintenance")?;
    let rows = sqlx::query(
        "SELECT deployment, task_id, description, first_seen_at FROM batch_maintenance \
         ORDER BY first_seen_at, deployment",
    )
    .fetch_all(pool)
    .await
    .context("reading batch_maintenance")?;
    rows.iter()
        .map(|r| {
            Ok(Hold {
                deployment: r.try_get("deployment")?,
                task_id: r.try_get("task_id")?,
                description: r.try_get("description")?,
                since: r
                    .try_get::<Option<Timestamp>, _>("first_seen_at")
                    .ok()
                    .flatten(),
            })
        })
        .collect()
}

/// Remembers each VM's deployment from a complete inventory snapshot.
pub async fn record_vm_deployments(
    pool: &MySqlPool,
    snapshot: &InventorySnapshot,
) -> anyhow::Result<()> {
    let known: Vec<(&str, &str)> = snapshot
        .vms
        .iter()
        .filter(|v| !v.deployment.is_empty())
        .map(|v| (v.name.as_str(), v.deployment.as_str()))
        .collect();
    if known.is_empty() {
        return Ok(());
    }
    let mut tx = pool
        .begin()
        .await
        .context("starting the VM deployment update")?;
    sqlx::query("DELETE FROM batch_vm_deployment")
        .execute(&mut *tx)
        .await
        .context("clearing batch_vm_deployment")?;
    for chunk in known.chunks(500) {
        let mut q = QueryBuilder::new("INSERT INTO batch_vm_deployment (vm_name, deployment) ");
        q.push_values(chunk, |mut b, (name, deployment)| {
            b.push_bind(name.chars().take(200).collect::<String>())
                .push_bind(deployment.chars().take(200).collect::<String>());
        });
        q.push(" ON DUPLICATE KEY UPDATE deployment = VALUES(deployment)");
        q.build()
            .execute(&mut *tx)
            .await
            .context("writing batch_vm_deployment")?;
    }
    tx.commit()
        .await
        .context("committing batch_vm_deployment")?;
    Ok(())
}

/// VM name -> deployment, as last reported.
pub async fn vm_deployments(pool: &MySqlPool) -> anyhow::Result<HashMap<String, String>> {
    let rows = sqlx::query("SELECT vm_name, deployment FROM batch_vm_deployment")
        .fetch_all(pool)
        .await
        .context("reading batch_vm_deployment")?;
    rows.iter()
        .map(|r| Ok((r.try_get("vm_name")?, r.try_get("deployment")?)))
        .collect()
}

/// The maintenance holds split at `alarms.maintenance_max_hours`.
#[derive(Debug, Default)]
pub struct Bounded {
    /// deployments still held
    pub held: HashSet<String>,
    /// deployment -> the line its notifications carry (the hold was cut short)
    pub cut: HashMap<String, String>,
    /// the holds cut short (a task stuck for longer than the bound)
    pub cut_short: Vec<Hold>,
    /// age of the oldest hold, cut short or not (none: nothing under maintenance)
    pub oldest_seconds: Option<i64>,
}

/// Splits the holds at `max_hours`: the deployments still held, and those whose hold is cut
/// short, with the line their notifications carry. Says so in the log (WARN, every tick while
/// a stuck task lasts: it needs an operator) and the gauge of the oldest hold's age.
pub fn bound(holds: &[Hold], now: Timestamp, max_hours: u64, language: &str) -> Bounded {
    let mut out = Bounded::default();
    for h in holds {
        if h.is_over(now, max_hours) {
            tracing::warn!(
                deployment = %crate::config::visible::escape(&h.deployment),
                task = h.task_id,
                description = %crate::config::visible::escape(&h.description),
                since = %h.since.map(|t| t.to_rfc3339()).unwrap_or_else(|| "?".into()),
                max_hours,
                "maintenance hold cut short: the director task has run past \
                 alarms.maintenance_max_hours; the deployment's alarms are notified (is the task stuck?)"
            );
            out.cut
                .insert(h.deployment.clone(), h.cut_short_line(language, max_hours));
            out.cut_short.push(h.clone());
        } else {
            out.held.insert(h.deployment.clone());
        }
    }
    // the oldest hold, cut short or not: an operator alerting on it sees a stuck task grow
    out.oldest_seconds = holds
        .iter()
        .filter_map(|h| h.age(now))
        .max()
        .map(|age| age.num_seconds().max(0));
    metrics::gauge!("monit_maintenance_hold_oldest_seconds")
        .set(out.oldest_seconds.unwrap_or(0) as f64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(hours_ago: i64, now: Timestamp) -> Hold {
        Hold {
            deployment: "cf\nforged".into(),
            task_id: 7,
            description: "recreate\u{1b}[2J".into(),
            since: Some(now - chrono::Duration::hours(hours_ago)),
        }
    }

    #[test]
    fn a_hold_ends_at_its_bound_from_first_seen() {
        let now = chrono::Utc::now();
        assert!(!hold(5, now).is_over(now, 6));
        assert!(hold(6, now).is_over(now, 6));
        assert!(hold(24 * 30, now).is_over(now, 6));
        let unknown = Hold {
            since: None,
            ..hold(0, now)
        };
        assert!(
            unknown.is_over(now, 168),
            "a hold of unknown age holds nothing"
        );
    }

    #[test]
    fn the_cut_short_line_is_one_line_found_again_in_a_message() {
        let now = chrono::Utc::now();
        for lang in ["en", "ko"] {
            let line = hold(30, now).cut_short_line(lang, 6);
            assert!(
                !line.contains('\n') && !line.chars().any(char::is_control),
                "{line}"
            );
            assert!(line.contains("cf\\nforged"), "{line}");
            assert!(line.contains("task 7") || line.contains("작업 7"), "{line}");
            assert!(line.contains("alarms.maintenance_max_hours"), "{line}");
            let message = format!("[router]의 cpu 상태\n{line}");
            assert_eq!(cut_short_line_in(&message), Some(line.as_str()));
        }
        assert_eq!(cut_short_line_in("no note here"), None);
    }
}
