//! What the operator configured: `alarm_policies` (what to compare against) and
//! `alarm_targets` (whom to tell).

use crate::evaluate::engine::Policy;
use crate::model::Origin;
use anyhow::Context as _;
use sqlx::{MySqlPool, Row};
use std::collections::HashMap;

/// Loads `alarm_policies`; rows with unknown codes or impossible thresholds are skipped with a
/// log line (they are the operator's to fix, and must not stop the other policies).
pub async fn load_policies(
    pool: &MySqlPool,
    default_measure_seconds: u64,
) -> anyhow::Result<Vec<Policy>> {
    let rows = sqlx::query(
        "SELECT CAST(id AS SIGNED) AS id, origin_type, alarm_type, CAST(warning_threshold AS DOUBLE) AS w, \
         CAST(critical_threshold AS DOUBLE) AS c, CAST(repeat_time AS SIGNED) AS r, CAST(measure_time AS SIGNED) AS m \
         FROM alarm_policies ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .context("reading alarm_policies")?;
    let mut out: Vec<Policy> = Vec::new();
    for row in rows {
        let id: i64 = row.try_get("id")?;
        // One bad row (a NULL, a value of the wrong type) is skipped, naming the policy and the
        // column; the other policies still run.
        let mut column_problem = None;
        let mut get = |column: &'static str| -> Option<Option<f64>> {
            row.try_get::<Option<f64>, _>(column)
                .map_err(|e| column_problem = Some(format!("{column}: {e}")))
                .ok()
        };
        let (w, c) = (get("w"), get("c"));
        let (origin, alarm_type) = match (
            row.try_get::<Option<String>, _>("origin_type"),
            row.try_get::<Option<String>, _>("alarm_type"),
        ) {
            (Ok(Some(o)), Ok(Some(a))) => (o, a),
            _ => {
                tracing::warn!(
                    policy_id = id,
                    "alarm_policies row skipped: origin_type or alarm_type is NULL or not text"
                );
                continue;
            }
        };
        let (Some(Some(warning)), Some(Some(critical))) = (w, c) else {
            let column = match (w, c) {
                (Some(Some(_)), _) => "critical_threshold",
                _ => "warning_threshold",
            };
            tracing::warn!(
                policy_id = id,
                column,
                problem = column_problem.as_deref().unwrap_or("NULL"),
                "alarm_policies row skipped: {column} is NULL or not a number"
            );
            continue;
        };
        let (origin, resource) = match (origin.parse::<Origin>(), alarm_type.parse()) {
            (Ok(o), Ok(r)) => (o, r),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(policy_id = id, "alarm_policies row skipped: {e}");
                continue;
            }
        };
        if critical < warning {
            tracing::warn!(
                policy_id = id,
                warning,
                critical,
                "alarm_policies row skipped: critical_threshold is below warning_threshold"
            );
            continue;
        }
        if out
            .iter()
            .any(|p| p.origin == origin && p.resource == resource)
        {
            tracing::warn!(policy_id = id, %origin, %resource, "alarm_policies row skipped: an earlier row has the same origin_type and alarm_type");
            continue;
        }
        // NULL (or unreadable) repeat / measure times take the defaults, as a 0 does
        let measure: i64 = row
            .try_get::<Option<i64>, _>("m")
            .ok()
            .flatten()
            .unwrap_or(0);
        let repeat: i64 = row
            .try_get::<Option<i64>, _>("r")
            .ok()
            .flatten()
            .unwrap_or(10);
        out.push(Policy {
            id,
            origin,
            resource,
            warning,
            critical,
            repeat_minutes: repeat.max(0),
            // 0 is what a 2.0 database upgraded by the original holds (defect D16)
            measure_seconds: if measure > 0 {
                measure as u64
            } else {
                default_measure_seconds
            },
        });
    }
    Ok(out)
}

/// Addresses of `alarm_targets` per origin, rows with mail_send_yn 'Y' (all of them, not only
/// the last as in the original).
pub async fn load_recipients(pool: &MySqlPool) -> anyhow::Result<HashMap<String, Vec<String>>> {
    let rows = sqlx::query(
        "SELECT origin_type, mail_address FROM alarm_targets WHERE UPPER(mail_send_yn) = 'Y' ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .context("reading alarm_targets")?;
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for row in rows {
        let origin: String = row.try_get("origin_type")?;
        let addr: String = row.try_get("mail_address")?;
        let addr = addr.trim().to_string();
        let list = out.entry(origin.trim().to_string()).or_default();
        if !addr.is_empty() && !list.contains(&addr) {
            list.push(addr);
        }
    }
    Ok(out)
}
