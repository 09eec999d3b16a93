//! What the console's pages show, read from the Monitoring DB: the open alarms with what holds
//! their notifications now (and why), the last ticks from the `batch_runs` ledger, the scale
//! decisions with their evidence, and the leader. Reads only; every value is text for the
//! templates to escape.

use crate::config::Settings;
use crate::evaluate::engine::Change;
use crate::hold::silence::AlarmFacts;
use crate::hold::{HoldInputs, HoldReason, Holds, maintenance, silence};
use crate::model::{AlarmType, AppInstance, Origin, Target, Timestamp};
use anyhow::Context as _;
use sqlx::{MySqlPool, Row};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The most rows a page lists.
pub const MAX_ROWS: i64 = 500;

pub fn time(t: Option<Timestamp>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

/// One open alarm as the alarms page shows it.
#[derive(Clone, Debug)]
pub struct AlarmView {
    pub id: i64,
    pub origin: String,
    pub alarm_type: String,
    pub level: String,
    /// raised, or accepted (an operator took it: status 2)
    pub status: &'static str,
    pub who: String,
    pub ip: String,
    pub title: String,
    pub count: i64,
    pub raised_at: String,
    /// when the last mail went out; `never` for an alarm held since it opened
    pub last_mail: String,
    /// silenced, maintenance, inhibited, or empty
    pub hold: &'static str,
    /// why, in words
    pub why: String,
    /// a maintenance hold of its deployment was cut short (`alarms.maintenance_max_hours`)
    pub note: String,
    /// the console's silence form filled in for this alarm
    pub silence_query: String,
}

/// The bos alarm's name: the `[name]` its title starts with (the director's name is the bosh
/// plugin's config, which the host does not read).
fn title_name(title: &str) -> Option<String> {
    let rest = title.trim_start().strip_prefix('[')?;
    let end = rest.find(']')?;
    Some(rest[..end].to_string())
}

fn opt_time(row: &sqlx::mysql::MySqlRow, col: &str) -> Option<Timestamp> {
    row.try_get::<Option<Timestamp>, _>(col).ok().flatten()
}

fn text(row: &sqlx::mysql::MySqlRow, col: &str) -> Option<String> {
    row.try_get::<Option<String>, _>(col).ok().flatten()
}

/// The open alarms (status 1 and 2), newest first, each with the hold that keeps its
/// notifications back at `now`: the same decision a tick makes (silence, then maintenance,
/// then inhibition).
pub async fn open_alarms(
    pool: &MySqlPool,
    settings: &Settings,
    now: Timestamp,
) -> anyhow::Result<Vec<AlarmView>> {
    let rows = sqlx::query(
        "SELECT CAST(a.id AS SIGNED) AS id, a.origin_type, CAST(a.origin_id AS SIGNED) AS origin_id, \
         a.alarm_type, a.level, a.ip, a.app_name, CAST(a.app_index AS SIGNED) AS app_index, a.container_name, \
         a.alarm_title, a.resolve_status, CAST(a.alarm_cnt AS SIGNED) AS alarm_cnt, a.reg_date, a.alarm_send_date, \
         CAST(s.held_since IS NOT NULL AS SIGNED) AS held, v.name AS vm_name, v.ip AS vm_ip \
         FROM alarms a LEFT JOIN batch_alarm_state s ON s.alarm_id = a.id \
         LEFT JOIN vms v ON v.id = a.origin_id AND a.origin_type IN ('pas', 'con') \
         WHERE a.resolve_status IN ('1', '2') ORDER BY a.id DESC LIMIT ?",
    )
    .bind(MAX_ROWS)
    .fetch_all(pool)
    .await
    .context("reading the open alarms")?;
    let open = crate::store::load_open_alarms(pool).await?;
    let vms = crate::store::load_vms(pool).await?;
    // what holds: read as the tick reads it; unreadable, the page says "unknown"
    let silences = silence::active(pool, now).await.unwrap_or_default();
    let deployments = maintenance::vm_deployments(pool).await.unwrap_or_default();
    let a = &settings.alarms;
    let holds = maintenance::active(pool, now, a.maintenance_grace_minutes)
        .await
        .unwrap_or_default();
    let (held, cut): (Vec<_>, Vec<_>) = holds
        .iter()
        .partition(|h| !h.is_over(now, a.maintenance_max_hours));
    let held_set: HashSet<String> = held.iter().map(|h| h.deployment.clone()).collect();
    let cut_map: HashMap<String, String> = cut
        .iter()
        .map(|h| {
            (
                h.deployment.clone(),
                h.cut_short_line("en", a.maintenance_max_hours),
            )
        })
        .collect();

    struct Row1 {
        view: AlarmView,
        target: Target,
        alarm_type: AlarmType,
    }
    let mut listed = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row.try_get("id").unwrap_or_default();
        let origin_code = text(row, "origin_type").unwrap_or_default();
        let type_code = text(row, "alarm_type").unwrap_or_default();
        let title = text(row, "alarm_title").unwrap_or_default();
        let vm_name = text(row, "vm_name");
        let app_name = text(row, "app_name").filter(|a| !a.is_empty());
        let app_index = row
            .try_get::<Option<i64>, _>("app_index")
            .ok()
            .flatten()
            .map(|i| i as i32);
        let origin = origin_code.parse::<Origin>().ok();
        let alarm_type = type_code.parse::<AlarmType>().ok();
        let ip = text(row, "ip")
            .filter(|ip| !ip.is_empty())
            .or_else(|| text(row, "vm_ip"))
            .unwrap_or_default();
        let app = match (origin, &app_name) {
            (Some(Origin::Con), Some(app)) => Some(AppInstance {
                app_name: app.as_str().into(),
                app_index: app_index.unwrap_or(0),
                container_name: text(row, "container_name").unwrap_or_default().into(),
                cell_name: vm_name.clone().unwrap_or_default().into(),
            }),
            _ => None,
        };
        let name = match &app {
            Some(a) => a.app_name.to_string(),
            None => vm_name
                .clone()
                .or_else(|| title_name(&title))
                .unwrap_or_default(),
        };
        let who = match &app {
            Some(a) if a.app_index >= 0 => format!("{}[{}] on {}", a.app_name, a.app_index, {
                if a.cell_name.is_empty() {
                    "?"
                } else {
                    &a.cell_name
                }
            }),
            Some(a) => a.app_name.to_string(),
            None => name.clone(),
        };
        let held_since_open = row.try_get::<i64, _>("held").unwrap_or(0) != 0;
        let last_mail = if held_since_open {
            "never (held)".to_string()
        } else {
            time(opt_time(row, "alarm_send_date"))
        };
        let silence_query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "match",
                &match &app {
                    Some(a) => format!("app={}", a.app_name),
                    None => format!("vm={name}"),
                },
            )
            .append_pair("match", &format!("type={type_code}"))
            .append_pair("for", "2h")
            .append_pair("comment", &format!("alarm {id}"))
            .finish();
        let view = AlarmView {
            id,
            origin: origin_code.clone(),
            alarm_type: type_code.clone(),
            level: text(row, "level").unwrap_or_default(),
            status: if text(row, "resolve_status").as_deref() == Some("2") {
                "accepted"
            } else {
                "raised"
            },
            who,
            ip: ip.clone(),
            title,
            count: row.try_get("alarm_cnt").unwrap_or_default(),
            raised_at: time(opt_time(row, "reg_date")),
            last_mail,
            hold: "",
            why: String::new(),
            note: String::new(),
            silence_query,
        };
        match (origin, alarm_type) {
            (Some(origin), Some(alarm_type)) => listed.push(Row1 {
                view,
                target: Target {
                    origin,
                    origin_id: row.try_get("origin_id").unwrap_or_default(),
                    name: name.into(),
                    ip: ip.into(),
                    app,
                },
                alarm_type,
            }),
            // a row the batch cannot read holds nothing: listed as it is
            _ => listed.push(Row1 {
                view: AlarmView {
                    why: "unreadable origin or type: the batch ignores this row".into(),
                    ..view
                },
                target: Target {
                    origin: Origin::Pas,
                    origin_id: -1,
                    name: "".into(),
                    ip: "".into(),
                    app: None,
                },
                alarm_type: AlarmType::Fail,
            }),
        }
    }
    let changes: Vec<Change> = listed
        .iter()
        .filter(|r| r.target.origin_id != -1)
        .map(|r| Change::Continue {
            alarm_id: r.view.id,
            target: r.target.clone(),
            alarm_type: r.alarm_type,
            level: crate::model::Level::Warning,
            value: None,
            threshold: None,
            renotify: false,
        })
        .collect();
    let inp = HoldInputs {
        open: &open,
        vms: &vms,
        inhibit: a.inhibit,
        silences: &silences,
        deployments: &deployments,
        maintenance: &held_set,
        cut_short: &cut_map,
        now,
    };
    let decided = Holds::decide(&changes, &inp);
    let down_cells: HashSet<&str> = open
        .iter()
        .filter(|o| o.origin == Origin::Pas && o.alarm_type == AlarmType::Fail && !o.recovered)
        .filter_map(|o| vms.iter().find(|v| v.id == o.origin_id))
        .map(|v| v.name.as_str())
        .collect();
    let mut out = Vec::with_capacity(listed.len());
    for Row1 {
        mut view,
        target,
        alarm_type,
    } in listed
    {
        if target.origin_id == -1 {
            out.push(view);
            continue;
        }
        let vm_name = target
            .app
            .as_ref()
            .map(|a| &*a.cell_name)
            .unwrap_or(&*target.name);
        let deployment = deployments.get(vm_name).map(String::as_str);
        let facts = AlarmFacts {
            target: &target,
            alarm_type,
            deployment,
        };
        match decided.reason(&target, alarm_type) {
            Some(HoldReason::Silenced) => {
                view.hold = HoldReason::Silenced.code();
                if let Some(s) = silences.iter().find(|s| s.silences(&facts, now)) {
                    let m: Vec<String> = s.matchers.iter().map(ToString::to_string).collect();
                    view.why = format!(
                        "silence {} ({}) by {} until {}: {}",
                        s.id,
                        m.join(" "),
                        s.author,
                        time(Some(s.ends_at)),
                        s.comment
                    );
                }
            }
            Some(HoldReason::Maintenance) => {
                view.hold = HoldReason::Maintenance.code();
                if let Some(h) = held
                    .iter()
                    .find(|h| Some(h.deployment.as_str()) == deployment)
                {
                    view.why = format!(
                        "BOSH task {} ({}) on deployment {} since {}",
                        h.task_id,
                        h.description,
                        h.deployment,
                        time(h.since)
                    );
                }
            }
            Some(HoldReason::Inhibited) => {
                view.hold = HoldReason::Inhibited.code();
                view.why = match &target.app {
                    Some(a) if down_cells.contains(&*a.cell_name) => {
                        format!("its cell {} is down (a fail alarm is open)", a.cell_name)
                    }
                    Some(a) => format!(
                        "the app-level {} alarm of {} is open",
                        alarm_type.code(),
                        a.app_name
                    ),
                    None => "the VM is down (its fail alarm is open)".into(),
                };
            }
            None => {}
        }
        if let Some(line) = decided.note(&target, alarm_type) {
            view.note = line.to_string();
        }
        out.push(view);
    }
    Ok(out)
}

/// One tick of the ledger.
#[derive(Clone, Debug)]
pub struct TickView {
    pub id: i64,
    pub started_at: String,
    pub duration_ms: i64,
    pub instance: String,
    pub dry_run: bool,
    pub metric_mode: String,
    pub steps: BTreeMap<String, u64>,
    pub alarms: String,
    pub held: String,
    pub errors: Vec<String>,
}

fn counts(v: &serde_json::Value) -> String {
    match v.as_object() {
        Some(o) => o
            .iter()
            .filter(|(_, n)| n.as_u64().is_some_and(|n| n > 0))
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        None => String::new(),
    }
}

/// The last `limit` ticks, newest first.
pub async fn ticks(pool: &MySqlPool, limit: i64) -> anyhow::Result<Vec<TickView>> {
    let rows = sqlx::query(
        "SELECT CAST(id AS SIGNED) AS id, started_at, CAST(duration_ms AS SIGNED) AS duration_ms, instance, \
         CAST(dry_run AS SIGNED) AS dry_run, summary, errors FROM batch_runs ORDER BY id DESC LIMIT ?",
    )
    .bind(limit.clamp(1, MAX_ROWS))
    .fetch_all(pool)
    .await
    .context("reading batch_runs")?;
    Ok(rows
        .iter()
        .map(|row| {
            let summary: serde_json::Value = text(row, "summary")
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default();
            let steps = summary["steps_ms"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                        .collect()
                })
                .unwrap_or_default();
            TickView {
                id: row.try_get("id").unwrap_or_default(),
                started_at: time(opt_time(row, "started_at")),
                duration_ms: row.try_get("duration_ms").unwrap_or_default(),
                instance: text(row, "instance").unwrap_or_default(),
                dry_run: row.try_get::<i64, _>("dry_run").unwrap_or(0) != 0,
                metric_mode: summary["metric_mode"].as_str().unwrap_or("").to_string(),
                steps,
                alarms: counts(&summary["alarms"]),
                held: counts(&summary["held"]),
                errors: text(row, "errors")
                    .map(|e| e.lines().map(str::to_string).collect())
                    .unwrap_or_default(),
            }
        })
        .collect())
}

/// One scale decision with what it was decided on.
#[derive(Clone, Debug)]
pub struct ScaleView {
    pub decided_at: String,
    pub app_name: String,
    pub app_guid: String,
    pub action: String,
    pub outcome: String,
    pub instances: String,
    pub cpu: String,
    pub memory: String,
    pub reason: String,
}

pub async fn scaling(pool: &MySqlPool) -> anyhow::Result<Vec<ScaleView>> {
    let rows = sqlx::query(
        "SELECT decided_at, app_guid, app_name, action, outcome, CAST(instances_before AS SIGNED) AS ib, \
         CAST(instances_after AS SIGNED) AS ia, cpu_percent, memory_percent, reason \
         FROM batch_scaling_history ORDER BY id DESC LIMIT ?",
    )
    .bind(MAX_ROWS)
    .fetch_all(pool)
    .await
    .context("reading batch_scaling_history")?;
    let pct = |v: Option<f64>| v.map(|v| format!("{v:.1} %")).unwrap_or_else(|| "-".into());
    let n = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    Ok(rows
        .iter()
        .map(|row| ScaleView {
            decided_at: time(opt_time(row, "decided_at")),
            app_name: text(row, "app_name").unwrap_or_default(),
            app_guid: text(row, "app_guid").unwrap_or_default(),
            action: text(row, "action").unwrap_or_default(),
            outcome: text(row, "outcome").unwrap_or_default(),
            instances: format!(
                "{} → {}",
                n(row.try_get("ib").ok().flatten()),
                n(row.try_get("ia").ok().flatten())
            ),
            cpu: pct(row.try_get("cpu_percent").ok().flatten()),
            memory: pct(row.try_get("memory_percent").ok().flatten()),
            reason: text(row, "reason").unwrap_or_default(),
        })
        .collect())
}

/// The leader lease (`batch_leader`) as recorded.
#[derive(Clone, Debug, Default)]
pub struct LeaseView {
    pub lock_name: String,
    pub holder: String,
    pub epoch: i64,
    pub acquired_at: String,
}

pub async fn leases(pool: &MySqlPool) -> anyhow::Result<Vec<LeaseView>> {
    let rows = sqlx::query(
        "SELECT lock_name, holder, CAST(epoch AS SIGNED) AS epoch, acquired_at FROM batch_leader ORDER BY lock_name",
    )
    .fetch_all(pool)
    .await
    .context("reading batch_leader")?;
    Ok(rows
        .iter()
        .map(|row| LeaseView {
            lock_name: text(row, "lock_name").unwrap_or_default(),
            holder: text(row, "holder").unwrap_or_default(),
            epoch: row.try_get("epoch").unwrap_or_default(),
            acquired_at: time(opt_time(row, "acquired_at")),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bos_alarm_is_named_by_its_title() {
        assert_eq!(
            super::title_name("[bosh-director]의 cpu 상태 [critical]").as_deref(),
            Some("bosh-director")
        );
        assert_eq!(super::title_name("no brackets"), None);
    }
}
