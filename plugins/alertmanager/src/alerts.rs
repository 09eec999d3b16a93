//! The alerts posted to `POST /api/v2/alerts`: one alarm is one alert per level, identified by
//! its labels (Alertmanager's fingerprint), so the same alarm posted again is the same alert.
//!
//! - firing: `endsAt` a hold ahead (never shorter than Alertmanager's default `resolve_timeout`
//!   of 5 min, and 4 ticks at least); the notifier restates it every tick while the alarm is
//!   open, so it ends on its own only when the batch stops saying so;
//! - a level change (escalated, stepped down, a repeat at another level) fires the new level
//!   and resolves the others of the alarm in the same POST;
//! - recovered: every level of the alarm resolved at the recovery time.

use chrono::{DateTime, Utc};
use monit_host::model::Level;
use monit_host::plugin::{Notification, NotificationKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One element of the body, as Alertmanager's API v2 names the fields (`postableAlert`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: DateTime<Utc>,
    #[serde(rename = "endsAt")]
    pub ends_at: DateTime<Utc>,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

/// What every alert of this notifier shares.
#[derive(Clone, Debug, Default)]
pub struct Shape {
    /// how long a firing alert holds without being posted again
    pub hold: Duration,
    /// `plugins.alertmanager.labels`
    pub extra_labels: BTreeMap<String, String>,
}

/// The shortest hold: Alertmanager's default `resolve_timeout`.
pub const MIN_HOLD: Duration = Duration::from_secs(300);

/// The hold for a batch ticking every `interval`: four ticks (three may fail or be slow
/// before an alert ends by itself, as Prometheus' `4 × resend delay`), at least [`MIN_HOLD`].
pub fn hold_for(interval: Duration) -> Duration {
    (interval * 4).max(MIN_HOLD)
}

/// `alertname`: which kind of alarm, one per resource (`paasta_cpu`, `paasta_fail`…).
pub fn alert_name(n: &Notification) -> String {
    format!("paasta_{}", n.alarm_type.code())
}

/// The labels of the alarm's alert at `level`: alertname, origin, who (`vm`, or `app` and
/// `index` for a container, `app` alone for a whole app), resource, level, then the
/// configured ones.
pub fn labels(n: &Notification, level: Level, shape: &Shape) -> BTreeMap<String, String> {
    let mut l = shape.extra_labels.clone();
    l.insert("alertname".into(), alert_name(n));
    l.insert("origin".into(), n.origin.code().into());
    match &n.app_name {
        Some(app) => {
            l.insert("app".into(), app.clone());
            // an app-level alarm (autoscale blocked) has index -1: no instance
            if let Some(i) = n.app_index.filter(|i| *i >= 0) {
                l.insert("index".into(), i.to_string());
            }
        }
        None => {
            l.insert("vm".into(), n.target_name.clone());
        }
    }
    l.insert("resource".into(), n.alarm_type.code().into());
    l.insert("level".into(), level.code().into());
    l
}

/// `title` and `message` as stored (the batch's language), and what else tells the alarm apart
/// in a receiver's template: its id in the Monitoring DB, the IP, a container's cell.
pub fn annotations(n: &Notification) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert("title".into(), n.title.clone());
    a.insert("message".into(), n.message.clone());
    a.insert("alarm_id".into(), n.alarm_id.to_string());
    if !n.ip.is_empty() {
        a.insert("ip".into(), n.ip.clone());
    }
    if let Some(cell) = n.cell_name.as_deref().filter(|c| !c.is_empty()) {
        a.insert("cell".into(), cell.to_string());
    }
    a
}

/// Where Alertmanager's "Source" link points: the operator console's alarm list when the
/// console has a public URL, else the monitoring web app (`alarms.resource_url`). Only http(s).
pub fn generator_url(n: &Notification, console: Option<&str>) -> Option<String> {
    let http = |u: &str| {
        let lower = u.to_ascii_lowercase();
        lower.starts_with("http://") || lower.starts_with("https://")
    };
    match console.map(str::trim).filter(|c| http(c)) {
        Some(base) => Some(format!("{}/ui/alarms", base.trim_end_matches('/'))),
        None => n.monitor_link().map(str::to_string),
    }
}

/// The levels an alarm of this kind can have: `fail` for a host that is down, else warning and
/// critical (the one it has included).
fn levels_of(n: &Notification) -> Vec<Level> {
    let mut levels = if n.is_down() {
        vec![Level::Fail]
    } else {
        vec![Level::Warning, Level::Critical]
    };
    if !levels.contains(&n.level) {
        levels.push(n.level);
    }
    levels
}

fn alert(
    n: &Notification,
    level: Level,
    ends_at: DateTime<Utc>,
    shape: &Shape,
    console: Option<&str>,
) -> Alert {
    Alert {
        labels: labels(n, level, shape),
        annotations: annotations(n),
        starts_at: n.raised_at,
        // Alertmanager refuses an alert that ends before it starts
        ends_at: ends_at.max(n.raised_at),
        generator_url: generator_url(n, console),
    }
}

fn hold(shape: &Shape) -> chrono::Duration {
    chrono::Duration::from_std(shape.hold).unwrap_or(chrono::Duration::minutes(5))
}

/// The alerts one notification posts. A firing one holds from the event: a notification
/// delivered late (Alertmanager was down longer than the hold) arrives already ended, and the
/// restatement that follows it in the same tick fires it again only if the alarm is still open.
pub fn for_notification(n: &Notification, shape: &Shape, console: Option<&str>) -> Vec<Alert> {
    if n.kind == NotificationKind::Recovered {
        return levels_of(n)
            .into_iter()
            .map(|level| alert(n, level, n.event_at, shape, console))
            .collect();
    }
    let mut out = vec![alert(n, n.level, n.event_at + hold(shape), shape, console)];
    // A new alarm has no other level to end; any later event may follow a level change.
    if n.kind != NotificationKind::Opened {
        out.extend(
            levels_of(n)
                .into_iter()
                .filter(|l| *l != n.level)
                .map(|level| alert(n, level, n.event_at, shape, console)),
        );
    }
    out
}

/// The alert that says again that an alarm is firing, at the level last told, until a hold
/// from `now`.
pub fn restated(
    n: &Notification,
    now: DateTime<Utc>,
    shape: &Shape,
    console: Option<&str>,
) -> Alert {
    alert(n, n.level, now + hold(shape), shape, console)
}

/// The body of one POST: the alerts of these notifications in the order they happened (by
/// outbox row id), so that two events of one alarm in a digest end as the later says.
pub fn body(batch: &[Notification], shape: &Shape, console: Option<&str>) -> Vec<u8> {
    let mut ordered: Vec<&Notification> = batch.iter().collect();
    ordered.sort_by_key(|n| n.id);
    let alerts: Vec<Alert> = ordered
        .into_iter()
        .flat_map(|n| for_notification(n, shape, console))
        .collect();
    serde_json::to_vec(&alerts).unwrap_or_else(|_| b"[]".to_vec())
}

/// The body of a restatement.
pub fn restated_body(
    firing: &[Notification],
    now: DateTime<Utc>,
    shape: &Shape,
    console: Option<&str>,
) -> Vec<u8> {
    let alerts: Vec<Alert> = firing
        .iter()
        .map(|n| restated(n, now, shape, console))
        .collect();
    serde_json::to_vec(&alerts).unwrap_or_else(|_| b"[]".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use monit_host::model::AlarmType;
    use monit_host::testing::{app_notification, vm_notification};

    fn shape() -> Shape {
        Shape {
            hold: Duration::from_secs(600),
            extra_labels: BTreeMap::from([("platform".to_string(), "lab".to_string())]),
        }
    }

    fn names(l: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
        l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn a_vm_alarm_is_labelled_by_vm_a_container_by_app_and_index() {
        let vm = vm_notification();
        assert_eq!(
            names(&labels(&vm, vm.level, &shape())),
            [
                ("alertname", "paasta_cpu"),
                ("level", "warning"),
                ("origin", "pas"),
                ("platform", "lab"),
                ("resource", "cpu"),
                ("vm", "router_z1/0"),
            ]
        );
        let app = app_notification();
        let l = labels(&app, app.level, &shape());
        assert_eq!(
            (
                l.get("app").map(String::as_str),
                l.get("index").map(String::as_str)
            ),
            (Some("shop"), Some("2"))
        );
        assert!(!l.contains_key("vm"));
        let whole_app = Notification {
            app_index: Some(-1),
            ..app
        };
        assert!(!labels(&whole_app, Level::Critical, &shape()).contains_key("index"));
    }

    #[test]
    fn opened_fires_for_the_hold_from_the_event() {
        let n = vm_notification();
        let a = for_notification(&n, &shape(), None);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].starts_at, n.raised_at);
        assert_eq!(a[0].ends_at, n.event_at + chrono::Duration::minutes(10));
        assert_eq!(a[0].annotations["title"], n.title);
        assert_eq!(a[0].annotations["message"], n.message);
        assert_eq!(a[0].annotations["alarm_id"], "7");
        assert_eq!(
            a[0].generator_url.as_deref(),
            Some("http://monitor.example.org")
        );
    }

    #[test]
    fn an_escalation_fires_critical_and_ends_warning() {
        let n = Notification {
            kind: NotificationKind::Escalated,
            level: Level::Critical,
            ..vm_notification()
        };
        let a = for_notification(&n, &shape(), None);
        let by_level: Vec<(&str, DateTime<Utc>)> = a
            .iter()
            .map(|x| (x.labels["level"].as_str(), x.ends_at))
            .collect();
        assert_eq!(
            by_level,
            [
                ("critical", n.event_at + chrono::Duration::minutes(10)),
                ("warning", n.event_at)
            ]
        );
    }

    #[test]
    fn a_recovery_ends_every_level_at_the_recovery() {
        let n = Notification {
            kind: NotificationKind::Recovered,
            ..vm_notification()
        };
        let a = for_notification(&n, &shape(), None);
        assert_eq!(a.len(), 2);
        assert!(a.iter().all(|x| x.ends_at == n.event_at));
        let down = Notification {
            kind: NotificationKind::Recovered,
            alarm_type: AlarmType::Fail,
            level: Level::Fail,
            ..vm_notification()
        };
        let a = for_notification(&down, &shape(), None);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].labels["level"], "fail");
        assert_eq!(a[0].labels["alertname"], "paasta_fail");
    }

    #[test]
    fn the_console_wins_as_generator_url_and_only_http_is_a_link() {
        let n = vm_notification();
        assert_eq!(
            generator_url(&n, Some("https://batch.example:9999/")).as_deref(),
            Some("https://batch.example:9999/ui/alarms")
        );
        assert_eq!(
            generator_url(&n, Some("javascript:alert(1)")).as_deref(),
            Some("http://monitor.example.org")
        );
        let no_link = Notification {
            resource_url: Some("javascript:alert(1)".into()),
            ..vm_notification()
        };
        assert_eq!(generator_url(&no_link, None), None);
        let json = String::from_utf8(body(&[no_link], &shape(), None)).unwrap();
        assert!(!json.contains("generatorURL"), "{json}");
    }

    #[test]
    fn a_digest_keeps_the_order_of_events() {
        let opened = Notification {
            id: 10,
            ..vm_notification()
        };
        let recovered = Notification {
            id: 11,
            kind: NotificationKind::Recovered,
            ..vm_notification()
        };
        let v: serde_json::Value =
            serde_json::from_slice(&body(&[recovered, opened], &shape(), None)).unwrap();
        let ends: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["endsAt"].as_str().unwrap())
            .collect();
        // the opened alert first, then its recovery (both levels)
        assert_eq!(ends.len(), 3);
        assert!(ends[0] > ends[1], "{ends:?}");
    }

    #[test]
    fn the_hold_is_four_ticks_and_at_least_five_minutes() {
        assert_eq!(hold_for(Duration::from_secs(1)), MIN_HOLD);
        assert_eq!(hold_for(Duration::from_secs(60)), MIN_HOLD);
        assert_eq!(hold_for(Duration::from_secs(120)), Duration::from_secs(480));
    }
}
