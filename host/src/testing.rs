//! Shared test fixtures (cargo feature `testing`): the notifications every notifier's tests
//! start from, so that a field added to [`Notification`] is filled in one place. A test changes
//! what it is about with struct update syntax: `Notification { level: Level::Fail,
//! ..testing::vm_notification() }`.

use crate::evaluate::engine::{OpenAlarm, OpenStatus};
use crate::model::{AlarmType, AppInstance, Level, Origin, Policy, Resource, Target};
use crate::plugin::{Notification, NotificationKind};
use chrono::{TimeDelta, TimeZone, Utc};

/// A `pas` VM's CPU warning, opened, in Korean (the original's wording), raised 2024-05-01
/// 09:30 UTC and sent 42 min 59 s later, with an http monitor link.
pub fn vm_notification() -> Notification {
    let raised = Utc
        .with_ymd_and_hms(2024, 5, 1, 9, 30, 0)
        .single()
        .unwrap_or_default();
    Notification {
        id: 1,
        alarm_id: 7,
        kind: NotificationKind::Opened,
        origin: Origin::Pas,
        alarm_type: AlarmType::Cpu,
        level: Level::Warning,
        target_name: "router_z1/0".into(),
        ip: "10.0.0.5".into(),
        app_name: None,
        app_index: None,
        cell_name: None,
        value: Some(91.234),
        threshold: Some(85.0),
        title: "[router_z1/0]의 cpu 상태 [warning]".into(),
        message: "[router_z1/0]의 cpu 상태 [warning]\ncpu 임계치 85% 초과.\n현재 사용률 [91.23]%"
            .into(),
        raised_at: raised,
        event_at: raised + TimeDelta::minutes(42) + TimeDelta::seconds(59),
        recipients: vec!["ops@example.org".into()],
        done_recipients: Vec::new(),
        resource_url: Some("http://monitor.example.org".into()),
        language: "ko".into(),
        console_url: None,
        history: None,
    }
}

/// An app container's CPU alarm (`con`, app `shop` instance 2 on `diego-cell/0`), critical,
/// opened 2024-05-01 09:30 UTC, in English.
pub fn app_notification() -> Notification {
    let raised = Utc
        .with_ymd_and_hms(2024, 5, 1, 9, 30, 0)
        .single()
        .unwrap_or_default();
    Notification {
        id: 42,
        alarm_id: 7,
        kind: NotificationKind::Opened,
        origin: Origin::Con,
        alarm_type: AlarmType::Cpu,
        level: Level::Critical,
        target_name: "shop".into(),
        ip: "10.0.1.5".into(),
        app_name: Some("shop".into()),
        app_index: Some(2),
        cell_name: Some("diego-cell/0".into()),
        value: Some(93.25),
        threshold: Some(90.0),
        title: "CPU high".into(),
        message: "shop CPU over 90%".into(),
        raised_at: raised,
        event_at: raised,
        recipients: vec!["ops@example.org".into()],
        done_recipients: Vec::new(),
        resource_url: Some("http://monitor.example.org".into()),
        language: "en".into(),
        console_url: None,
        history: None,
    }
}

/// The target of `pas` VM `id`: named `vm/{id}`, at 10.0.0.{id}.
pub fn vm_target(id: i64) -> Target {
    Target {
        origin: Origin::Pas,
        origin_id: id,
        name: format!("vm/{id}").into(),
        ip: format!("10.0.0.{id}").into(),
        app: None,
    }
}

/// Instance `index` of app `app`, a container on cell 7 (`diego-cell/7`, 10.0.16.21).
pub fn container_target(app: &str, index: i32) -> Target {
    Target {
        origin: Origin::Con,
        origin_id: 7,
        name: app.into(),
        ip: "10.0.16.21".into(),
        app: Some(AppInstance {
            app_name: app.into(),
            app_index: index,
            container_name: format!("{app}-{index}").into(),
            cell_name: "diego-cell/7".into(),
        }),
    }
}

/// A policy with these thresholds, a 10-minute repeat and a 5-minute window.
pub fn policy(id: i64, origin: Origin, resource: Resource, warning: f64, critical: f64) -> Policy {
    Policy {
        id,
        origin,
        resource,
        warning,
        critical,
        repeat_minutes: 10,
        measure_seconds: 300,
    }
}

/// An open alarm on `t`, raised and notified at `level` 30 minutes ago.
pub fn open_alarm(id: i64, t: &Target, alarm_type: AlarmType, level: Level) -> OpenAlarm {
    let at = Utc::now() - TimeDelta::minutes(30);
    OpenAlarm {
        id,
        origin: t.origin,
        origin_id: if t.app.is_some() { 0 } else { t.origin_id },
        alarm_type,
        level,
        status: OpenStatus::Raised,
        raised_at: at,
        last_sent: Some(at),
        app_name: t.app.as_ref().map(|a| a.app_name.to_string()),
        app_index: t.app.as_ref().map(|a| a.app_index),
        recovered: false,
        notified_level: level,
        text_digest: None,
    }
}
