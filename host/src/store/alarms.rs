//! `alarms` and what hangs off them (`alarm_actions`, `batch_alarm_state`): the open alarms
//! read at the start of a tick, and the tick's one write: every alarm change with its
//! notifications (outbox rows) and the scale decisions, in one transaction.

use super::outbox::push_id_in;
use crate::evaluate::alarm_text;
use crate::evaluate::engine::{Change, OpenAlarm, OpenStatus, Subject};
use crate::model::first_chars;
use crate::model::{AlarmType, Level, Origin, Timestamp};
use crate::plugin::{Notification, NotificationKind};
use anyhow::Context as _;
use sqlx::{MySqlPool, QueryBuilder, Row};
use std::collections::HashMap;

pub async fn load_open_alarms(pool: &MySqlPool) -> anyhow::Result<Vec<OpenAlarm>> {
    let rows = sqlx::query(
        "SELECT CAST(a.id AS SIGNED) AS id, a.origin_type, CAST(a.origin_id AS SIGNED) AS origin_id, a.alarm_type, \
         a.level, a.resolve_status, a.reg_date, a.alarm_send_date, a.app_name, CAST(a.app_index AS SIGNED) AS app_index, \
         (s.recovered_at IS NOT NULL) AS recovered, s.notified_level, (s.held_since IS NOT NULL) AS held, \
         UNHEX(MD5(CONCAT(a.alarm_title, CHAR(10), a.alarm_message))) AS text_digest \
         FROM alarms a LEFT JOIN batch_alarm_state s ON s.alarm_id = a.id \
         WHERE a.resolve_status IN ('1', '2') ORDER BY a.id",
    )
    .fetch_all(pool)
    .await
    .context("reading open alarms")?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let parsed = (|| -> Result<_, String> {
            let origin: Origin = row
                .try_get::<String, _>("origin_type")
                .map_err(|e| e.to_string())?
                .parse()?;
            let alarm_type: AlarmType = row
                .try_get::<String, _>("alarm_type")
                .map_err(|e| e.to_string())?
                .parse()?;
            let level: Level = row
                .try_get::<String, _>("level")
                .map_err(|e| e.to_string())?
                .parse()?;
            Ok((origin, alarm_type, level))
        })();
        let (origin, alarm_type, level) = match parsed {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(alarm_id = id, "open alarm ignored: {e}");
                continue;
            }
        };
        let status: String = row.try_get("resolve_status")?;
        out.push(OpenAlarm {
            text_digest: row
                .try_get::<Option<Vec<u8>>, _>("text_digest")?
                .and_then(|d| <[u8; 16]>::try_from(d).ok()),
            id,
            origin,
            origin_id: row.try_get("origin_id")?,
            alarm_type,
            level,
            status: if status == "2" {
                OpenStatus::InProgress
            } else {
                OpenStatus::Raised
            },
            raised_at: row.try_get("reg_date")?,
            // A held alarm's row carries its occurrence time as alarm_send_date (for the app);
            // for the engine it was never notified.
            last_sent: if row.try_get::<i64, _>("held")? != 0 {
                None
            } else {
                row.try_get("alarm_send_date")?
            },
            app_name: row.try_get("app_name")?,
            app_index: row
                .try_get::<Option<i64>, _>("app_index")?
                .map(|i| i as i32),
            recovered: row.try_get::<i64, _>("recovered")? != 0,
            // none recorded (an alarm from before it was kept): the row's level was notified
            notified_level: row
                .try_get::<Option<String>, _>("notified_level")?
                .and_then(|l| l.parse().ok())
                .unwrap_or(level),
        });
    }
    Ok(out)
}

/// How notifications are rendered and to whom they are queued.
pub struct Outbox<'a> {
    pub notifiers: &'a [String],
    pub language: &'a str,
    pub resource_url: Option<&'a str>,
    /// alarms recorded but not notified this tick (silence, maintenance, inhibition)
    pub holds: &'a crate::hold::Holds,
    /// offset of the times written as text in `alarm_actions` notes (`alarms.display_utc_offset_hours`)
    pub display_offset: chrono::FixedOffset,
}

fn payload(
    kind: NotificationKind,
    alarm_id: i64,
    ev: Subject<'_>,
    (title, message): (String, String),
    (raised_at, now): (Timestamp, Timestamp),
    out: &Outbox<'_>,
) -> Notification {
    let Subject {
        target,
        alarm_type,
        level,
        value,
        threshold,
    } = ev;
    Notification {
        id: 0,
        alarm_id,
        kind,
        origin: target.origin,
        alarm_type,
        level,
        target_name: target.name.to_string(),
        ip: target.ip.to_string(),
        app_name: target.app.as_ref().map(|a| a.app_name.to_string()),
        app_index: target.app.as_ref().map(|a| a.app_index),
        cell_name: target.app.as_ref().map(|a| a.cell_name.to_string()),
        value,
        threshold,
        title,
        // a maintenance hold cut short: the notification says why it comes while a task runs
        message: match out.holds.note(target, alarm_type) {
            Some(line) if kind != NotificationKind::Recovered => format!("{message}\n{line}"),
            _ => message,
        },
        raised_at,
        event_at: now,
        recipients: Vec::new(),
        done_recipients: Vec::new(),
        resource_url: out.resource_url.map(str::to_string),
        language: out.language.to_string(),
        console_url: None,
        history: None,
    }
}

/// Writes one tick's alarm changes, their notifications and the scale decisions (history) in
/// one transaction. With a `fence` (leader election on), nothing is written unless this
/// instance still holds the lease.
pub async fn apply_changes(
    pool: &MySqlPool,
    changes: &[Change],
    decisions: &[crate::plugin::ScaleDecision],
    open: &[OpenAlarm],
    now: Timestamp,
    out: &Outbox<'_>,
    fence: Option<&crate::store::leader::Fence>,
) -> anyhow::Result<()> {
    if changes.is_empty() && decisions.is_empty() {
        return Ok(());
    }
    let known: HashMap<i64, &OpenAlarm> = open.iter().map(|a| (a.id, a)).collect();
    let raised_at = |id: i64| known.get(&id).map_or(now, |a| a.raised_at);
    let lang = out.language;
    let mut tx = pool
        .begin()
        .await
        .context("starting the alarm transaction")?;
    if let Some(fence) = fence {
        fence.check(&mut tx).await?;
    }
    let mut queued: Vec<Notification> = Vec::new();
    // (alarm, title, message) of alarms counted without a notification: the row shows the
    // current value and threshold all the same
    let mut counted: Vec<(i64, String, String)> = Vec::new();
    // new alarms whose notification is held, with the hold's code
    let mut held_opened: Vec<(i64, &'static str)> = Vec::new();
    // (alarm, level) of every notification: batch_alarm_state.notified_level
    let mut notified: Vec<(i64, Level)> = Vec::new();
    let rendered = |ch: &Change| {
        let s = ch.subject();
        alarm_text::title_and_message(lang, s.target, s.alarm_type, s.level, s.threshold, s.value)
    };
    let held = |ch: &Change| {
        let s = ch.subject();
        out.holds.reason(s.target, s.alarm_type).is_some()
    };
    for ch in changes {
        match ch {
            Change::Open {
                target,
                alarm_type,
                level,
                ..
            } => {
                let (title, message) = rendered(ch);
                let app = target.app.as_ref();
                // Held: recorded, not notified until the hold ends. alarm_send_date still gets
                // the time (the app shows a NULL one as 0001-01-01 and leaves the row out of
                // date-filtered counts); batch_alarm_state.held_since and a note say no mail went
                // out.
                let hold = out.holds.reason(target, *alarm_type);
                let res = sqlx::query(
                    "INSERT INTO alarms (origin_type, origin_id, alarm_type, level, ip, app_yn, app_name, app_index, \
                     container_name, alarm_title, alarm_message, resolve_status, alarm_cnt, reg_date, reg_user, \
                     modi_date, modi_user, alarm_send_date) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '1', 1, ?, 'Bat', ?, 'bat', ?)",
                )
                .bind(target.origin.code())
                .bind(target.origin_id)
                .bind(alarm_type.code())
                .bind(level.code())
                .bind(first_chars(&target.ip, 15))
                .bind(if app.is_some() { "Y" } else { "N" })
                .bind(app.map(|a| first_chars(&a.app_name, crate::model::ALARM_APP_NAME_CHARS)).unwrap_or_default())
                .bind(app.map(|a| a.app_index).unwrap_or(0))
                .bind(app.map(|a| first_chars(&a.container_name, 40)).unwrap_or_default())
                .bind(first_chars(&title, 5000))
                .bind(&message)
                .bind(now)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await
                .context("inserting an alarm")?;
                let id = res.last_insert_id() as i64;
                if let Some(reason) = hold {
                    held_opened.push((id, reason.code()));
                    continue;
                }
                notified.push((id, *level));
                queued.push(payload(
                    NotificationKind::Opened,
                    id,
                    ch.subject(),
                    (title, message),
                    (now, now),
                    out,
                ));
            }
            Change::Escalate {
                alarm_id, notify, ..
            }
            | Change::StepDown {
                alarm_id, notify, ..
            } => {
                let kind = match ch {
                    Change::Escalate { .. } => NotificationKind::Escalated,
                    _ => NotificationKind::SteppedDown,
                };
                let notify = *notify && !held(ch);
                let notification = relevel(&mut tx, ch, *alarm_id, notify, now, &rendered)
                    .await?
                    .map(|texts| {
                        payload(
                            kind,
                            *alarm_id,
                            ch.subject(),
                            texts,
                            (raised_at(*alarm_id), now),
                            out,
                        )
                    });
                if let Some(n) = notification {
                    notified.push((*alarm_id, ch.subject().level));
                    queued.push(n);
                }
            }
            Change::Rebreach {
                alarm_id, level, ..
            } => {
                let notify = !held(ch);
                let texts = relevel(&mut tx, ch, *alarm_id, notify, now, &rendered).await?;
                sqlx::query("UPDATE batch_alarm_state SET recovered_at = NULL WHERE alarm_id = ?")
                    .bind(alarm_id)
                    .execute(&mut *tx)
                    .await
                    .context("clearing the recovered mark of an alarm")?;
                if notify {
                    notified.push((*alarm_id, *level));
                }
                if let Some(texts) = texts {
                    queued.push(payload(
                        NotificationKind::Opened,
                        *alarm_id,
                        ch.subject(),
                        texts,
                        (raised_at(*alarm_id), now),
                        out,
                    ));
                }
            }
            Change::Continue {
                alarm_id,
                renotify,
                level,
                ..
            } => {
                let (title, message) = rendered(ch);
                if !renotify || held(ch) {
                    counted.push((*alarm_id, title, message));
                    continue;
                }
                sqlx::query(
                    "UPDATE alarms SET alarm_cnt = alarm_cnt + 1, alarm_title = ?, alarm_message = ?, \
                     alarm_send_date = ?, modi_date = ?, modi_user = 'bat' \
                     WHERE id = ? AND resolve_status IN ('1', '2')",
                )
                .bind(first_chars(&title, 5000))
                .bind(&message)
                .bind(now)
                .bind(now)
                .bind(alarm_id)
                .execute(&mut *tx)
                .await
                .context("counting an alarm")?;
                notified.push((*alarm_id, *level));
                queued.push(payload(
                    NotificationKind::Repeated,
                    *alarm_id,
                    ch.subject(),
                    (title, message),
                    (raised_at(*alarm_id), now),
                    out,
                ));
            }
            Change::Recover {
                alarm_ids,
                close_ids,
                target,
                alarm_type,
                value,
                ..
            } => {
                let keep_ids: Vec<i64> = alarm_ids
                    .iter()
                    .filter(|id| !close_ids.contains(id))
                    .copied()
                    .collect();
                if !close_ids.is_empty() {
                    let message =
                        alarm_text::recovery_message(lang, target, *alarm_type, *value, true);
                    let notes: Vec<(i64, &str)> =
                        close_ids.iter().map(|id| (*id, message.as_str())).collect();
                    close_by_system(&mut tx, &notes, now).await?;
                }
                if !keep_ids.is_empty() {
                    let note = alarm_text::recovery_note(
                        lang,
                        target,
                        *alarm_type,
                        *value,
                        (now, out.display_offset),
                    );
                    keep_recovered(&mut tx, &keep_ids, &note, now).await?;
                }
                let lead = alarm_ids.first().copied().unwrap_or(0);
                if held(ch) || !crate::hold::lead_was_notified(alarm_ids, open) {
                    continue;
                }
                let closed = close_ids.contains(&lead);
                let message =
                    alarm_text::recovery_message(lang, target, *alarm_type, *value, closed);
                // The alarm's own title: a notifier says "recovered" once (e-mail: in the subject).
                let (title, _) = alarm_text::title_and_message(
                    lang,
                    target,
                    *alarm_type,
                    ch.subject().level,
                    None,
                    *value,
                );
                queued.push(payload(
                    NotificationKind::Recovered,
                    lead,
                    ch.subject(),
                    (title, message),
                    (raised_at(lead), now),
                    out,
                ));
            }
        }
    }
    let stored_text = |id: &i64| known.get(id).and_then(|a| a.text_digest);
    count_unnotified(&mut tx, &counted, stored_text).await?;
    hold_new(&mut tx, &held_opened, lang, (now, out.display_offset)).await?;
    if !notified.is_empty() {
        let mut q = QueryBuilder::new("INSERT INTO batch_alarm_state (alarm_id, notified_level) ");
        q.push_values(&notified, |mut b, (id, level)| {
            b.push_bind(id).push_bind(level.code());
        });
        // notified: no longer a held alarm that was never told
        q.push(
            " ON DUPLICATE KEY UPDATE notified_level = VALUES(notified_level), held_since = NULL",
        );
        q.build()
            .execute(&mut *tx)
            .await
            .context("recording the notified level of alarms in batch_alarm_state")?;
    }
    if !queued.is_empty() && !out.notifiers.is_empty() {
        let rows: Vec<(&Notification, &String)> = queued
            .iter()
            .flat_map(|n| out.notifiers.iter().map(move |name| (n, name)))
            .collect();
        for chunk in rows.chunks(500) {
            let mut q = QueryBuilder::new(
                "INSERT INTO batch_notifications (alarm_id, notifier, kind, payload, status, attempts, next_attempt_at, created_at, priority) ",
            );
            q.push_values(chunk, |mut b, (n, name)| {
                b.push_bind(n.alarm_id)
                    .push_bind(name.as_str())
                    .push_bind(n.kind.code())
                    .push_bind(serde_json::to_string(n).unwrap_or_default())
                    .push("'pending'")
                    .push("0")
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(crate::store::outbox::priority(n.kind, n.level));
            });
            q.build()
                .execute(&mut *tx)
                .await
                .context("queueing notifications")?;
        }
    }
    crate::store::scaling_history::insert_decisions(&mut tx, decisions, now).await?;
    tx.commit()
        .await
        .context("committing the alarm transaction")?;
    Ok(())
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::MySql>;

/// Alarms still breaching at their level without a notification this tick: `alarm_cnt` + 1 and
/// the title and message rendered for the current value and threshold. Only rows whose text
/// differs from the stored one (`stored_text`: its digest, read with the open alarms) are
/// rewritten, a few hundred per statement (the rows differ in text, so one `IN (...)` cannot
/// carry them); the rest (a long-lived alarm whose value holds, a silent VM) only count, a
/// small in-place update instead of rewriting the text.
async fn count_unnotified(
    tx: &mut Tx<'_>,
    rows: &[(i64, String, String)],
    stored_text: impl Fn(&i64) -> Option<[u8; 16]>,
) -> anyhow::Result<()> {
    let (same, changed): (Vec<_>, Vec<_>) = rows.iter().partition(|(id, title, message)| {
        stored_text(id).is_some_and(|d| d == text_digest(first_chars(title, 5000), message))
    });
    for chunk in same.chunks(1000) {
        let mut q = QueryBuilder::new(
            "UPDATE alarms SET alarm_cnt = alarm_cnt + 1 WHERE resolve_status IN ('1', '2') AND ",
        );
        let ids: Vec<i64> = chunk.iter().map(|(id, _, _)| *id).collect();
        push_id_in(&mut q, "id", &ids);
        q.build()
            .execute(&mut **tx)
            .await
            .context("counting alarms")?;
    }
    for chunk in changed.chunks(500) {
        let mut q = QueryBuilder::new("UPDATE alarms a JOIN (");
        for (i, (id, title, message)) in chunk.iter().enumerate() {
            q.push(if i == 0 {
                "SELECT "
            } else {
                " UNION ALL SELECT "
            });
            q.push_bind(*id)
                .push(" AS id, ")
                .push_bind(first_chars(title, 5000))
                .push(" AS title, ")
                .push_bind(message.as_str())
                .push(" AS message");
        }
        q.push(
            ") v ON a.id = v.id SET a.alarm_cnt = a.alarm_cnt + 1, a.alarm_title = v.title, \
             a.alarm_message = v.message WHERE a.resolve_status IN ('1', '2')",
        );
        q.build()
            .execute(&mut **tx)
            .await
            .context("counting alarms")?;
    }
    Ok(())
}

/// The digest [`load_open_alarms`] reads (`text_digest`): MD5 of title, a newline and message,
/// as MariaDB's `MD5()` computes it over the same UTF-8 bytes.
fn text_digest(title: &str, message: &str) -> [u8; 16] {
    use md5::Digest as _;
    let mut h = md5::Md5::new();
    h.update(title.as_bytes());
    h.update(b"\n");
    h.update(message.as_bytes());
    h.finalize().into()
}

/// New alarms whose notification is held: marked held (the engine reads them as never
/// notified, whatever alarm_send_date says) and a `system` note saying no mail went out.
async fn hold_new(
    tx: &mut Tx<'_>,
    held: &[(i64, &'static str)],
    lang: &str,
    at: (Timestamp, chrono::FixedOffset),
) -> anyhow::Result<()> {
    // a maintenance hold can open thousands at once: bounded statements
    for chunk in held.chunks(1000) {
        let mut q = QueryBuilder::new("INSERT INTO batch_alarm_state (alarm_id, held_since) ");
        q.push_values(chunk, |mut b, (id, _)| {
            b.push_bind(id).push_bind(at.0);
        });
        q.push(" ON DUPLICATE KEY UPDATE held_since = VALUES(held_since)");
        q.build()
            .execute(&mut **tx)
            .await
            .context("marking held alarms in batch_alarm_state")?;
        let notes: Vec<(i64, String)> = chunk
            .iter()
            .map(|(id, reason)| (*id, alarm_text::held_note(lang, reason, at)))
            .collect();
        let notes: Vec<(i64, &str)> = notes.iter().map(|(id, n)| (*id, n.as_str())).collect();
        add_actions(tx, &notes, at.0).await?;
    }
    Ok(())
}

/// Moves an open alarm to the change's level in place: level, title, message (rendered for the
/// new level and value) and alarm_cnt; alarm_send_date only when it is notified. Returns the
/// (title, message) to notify with, if `notify`.
async fn relevel(
    tx: &mut Tx<'_>,
    ch: &Change,
    alarm_id: i64,
    notify: bool,
    now: Timestamp,
    rendered: &impl Fn(&Change) -> (String, String),
) -> anyhow::Result<Option<(String, String)>> {
    let (title, message) = rendered(ch);
    sqlx::query(
        "UPDATE alarms SET level = ?, alarm_title = ?, alarm_message = ?, alarm_cnt = alarm_cnt + 1, \
         alarm_send_date = COALESCE(?, alarm_send_date), modi_date = ?, modi_user = 'bat' \
         WHERE id = ? AND resolve_status IN ('1', '2')",
    )
    .bind(ch.subject().level.code())
    .bind(first_chars(&title, 5000))
    .bind(&message)
    .bind(notify.then_some(now))
    .bind(now)
    .bind(alarm_id)
    .execute(&mut **tx)
    .await
    .with_context(|| format!("changing the level of alarm {alarm_id}"))?;
    Ok(notify.then_some((title, message)))
}

/// Closes alarms as the batch: resolve_status 3 by `system`, one `alarm_actions` row per alarm
/// saying why, and the batch's own state of them dropped.
pub(crate) async fn close_by_system(
    tx: &mut Tx<'_>,
    notes: &[(i64, &str)],
    now: Timestamp,
) -> anyhow::Result<()> {
    if notes.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = notes.iter().map(|(id, _)| *id).collect();
    let mut q = QueryBuilder::new("UPDATE alarms SET resolve_status = '3', complete_date = ");
    q.push_bind(now)
        .push(", complete_user = 'system', modi_date = ")
        .push_bind(now)
        .push(", modi_user = 'system' WHERE resolve_status IN ('1', '2') AND ");
    push_id_in(&mut q, "id", &ids);
    q.build()
        .execute(&mut **tx)
        .await
        .context("resolving an alarm")?;
    add_actions(tx, notes, now).await?;
    let mut q = QueryBuilder::new("DELETE FROM batch_alarm_state WHERE ");
    push_id_in(&mut q, "alarm_id", &ids);
    q.build()
        .execute(&mut **tx)
        .await
        .context("dropping the batch state of closed alarms")?;
    Ok(())
}

/// Recovered alarms the batch leaves open (an operator's, or auto_resolve "none"): a note in
/// alarm_actions and the recovered mark, so the notice goes out once.
async fn keep_recovered(
    tx: &mut Tx<'_>,
    ids: &[i64],
    note: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    let notes: Vec<(i64, &str)> = ids.iter().map(|id| (*id, note)).collect();
    add_actions(tx, &notes, now).await?;
    let mut q = QueryBuilder::new("INSERT INTO batch_alarm_state (alarm_id, recovered_at) ");
    q.push_values(ids, |mut b, id| {
        b.push_bind(id).push_bind(now);
    });
    q.push(" ON DUPLICATE KEY UPDATE recovered_at = VALUES(recovered_at)");
    q.build()
        .execute(&mut **tx)
        .await
        .context("marking an alarm recovered")?;
    Ok(())
}

async fn add_actions(tx: &mut Tx<'_>, notes: &[(i64, &str)], now: Timestamp) -> anyhow::Result<()> {
    let mut q = QueryBuilder::new(
        "INSERT INTO alarm_actions (alarm_id, alarm_action_desc, reg_date, reg_user, modi_date, modi_user) ",
    );
    q.push_values(notes, |mut b, (id, text)| {
        b.push_bind(*id)
            .push_bind(*text)
            .push_bind(now)
            .push("'system'")
            .push_bind(now)
            .push("'system'");
    });
    q.build()
        .execute(&mut **tx)
        .await
        .context("writing a note in alarm_actions")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Target;
    use monit_testkit::TestDb;

    async fn open_alarm(db: &TestDb, title: &str, message: &str) -> i64 {
        sqlx::query(
            "INSERT INTO alarms (origin_type, origin_id, alarm_type, level, app_yn, alarm_title, \
             alarm_message, resolve_status) VALUES ('pas', 7, 'cpu', 'warning', 'N', ?, ?, '1')",
        )
        .bind(title)
        .bind(message)
        .execute(&db.pool)
        .await
        .unwrap()
        .last_insert_id() as i64
    }

    async fn row(db: &TestDb, id: i64) -> (i32, String, String) {
        sqlx::query_as("SELECT alarm_cnt, alarm_title, alarm_message FROM alarms WHERE id = ?")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap()
    }

    /// No notifier, no hold: the alarm rows alone.
    fn outbox<'a>(holds: &'a crate::hold::Holds, language: &'a str) -> Outbox<'a> {
        Outbox {
            notifiers: &[],
            language,
            resource_url: None,
            holds,
            display_offset: chrono::Offset::fix(&chrono::Utc),
        }
    }

    fn still_breaching(alarm_id: i64, value: f64) -> Change {
        Change::Continue {
            alarm_id,
            target: Target {
                origin: Origin::Pas,
                origin_id: 7,
                name: "vm/7".into(),
                ip: "10.0.0.7".into(),
                app: None,
            },
            alarm_type: AlarmType::Cpu,
            level: Level::Warning,
            value: Some(value),
            threshold: Some(85.0),
            renotify: false,
        }
    }

    /// The digest compared in Rust must be the one MariaDB computes over the stored text,
    /// multi-byte text included: otherwise every row would be rewritten every tick (no harm
    /// to the text, but the cost this comparison exists to save).
    #[tokio::test]
    async fn the_stored_text_digest_matches_the_rendered_one() {
        let db = TestDb::create("alarm_text_digest").await;
        crate::store::db::MIGRATOR.run(&db.pool).await.unwrap();
        let (title, message) = (
            "[vm/7] CPU 사용률 경고",
            "CPU 사용률이 91.50%입니다.\n(85%)",
        );
        let id = open_alarm(&db, title, message).await;
        let other = open_alarm(&db, "other", "text").await;
        let open = load_open_alarms(&db.pool).await.unwrap();
        let digest = |id| open.iter().find(|a| a.id == id).unwrap().text_digest;
        assert_eq!(digest(id), Some(text_digest(title, message)));
        assert_eq!(digest(other), Some(text_digest("other", "text")));
        assert_ne!(digest(other), digest(id));
    }

    /// The stored text's digest decides: where it equals the rendered text's, the row only
    /// counts and its text is not written (here the row says something else, so a write
    /// would show).
    #[tokio::test]
    async fn a_counted_alarm_whose_digest_matches_only_counts() {
        let db = TestDb::create("alarm_count_only").await;
        crate::store::db::MIGRATOR.run(&db.pool).await.unwrap();
        let id = open_alarm(&db, "kept", "kept").await;
        let holds = Default::default();
        let out = outbox(&holds, "en");
        let ch = still_breaching(id, 91.5);
        let s = ch.subject();
        let (title, message) = alarm_text::title_and_message(
            "en",
            s.target,
            s.alarm_type,
            s.level,
            s.threshold,
            s.value,
        );
        let mut open = load_open_alarms(&db.pool).await.unwrap();
        for a in &mut open {
            a.text_digest = Some(text_digest(&title, &message));
        }
        apply_changes(&db.pool, &[ch], &[], &open, chrono::Utc::now(), &out, None)
            .await
            .unwrap();
        assert_eq!(row(&db, id).await, (2, "kept".into(), "kept".into()));
    }

    /// A counted alarm counts on every tick; its text follows the value when the value moves
    /// and stays as it is when the value holds.
    #[tokio::test]
    async fn a_counted_alarm_counts_and_keeps_its_text_current() {
        let db = TestDb::create("alarm_count_text").await;
        crate::store::db::MIGRATOR.run(&db.pool).await.unwrap();
        let id = open_alarm(&db, "stale", "stale").await;
        let holds = Default::default();
        let out = outbox(&holds, "ko");
        let now = chrono::Utc::now();
        // as a tick does: the open alarms (with their text's digest) read first
        let tick = |value| {
            let ch = still_breaching(id, value);
            let db = &db;
            let out = &out;
            async move {
                let open = load_open_alarms(&db.pool).await.unwrap();
                apply_changes(&db.pool, &[ch], &[], &open, now, out, None)
                    .await
                    .unwrap();
            }
        };
        tick(91.5).await;
        let (cnt, title, message) = row(&db, id).await;
        assert_eq!(cnt, 2);
        assert!(message.contains("91.50"), "{message}");
        assert_ne!(title, "stale");
        tick(91.5).await;
        assert_eq!(row(&db, id).await, (3, title.clone(), message.clone()));
        tick(93.25).await;
        let (cnt, _, message) = row(&db, id).await;
        assert_eq!(cnt, 4);
        assert!(message.contains("93.25"), "{message}");
    }
}
