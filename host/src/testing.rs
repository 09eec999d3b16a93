//! Shared test fixtures (cargo feature `testing`): the notifications every notifier's tests
//! start from, so that a field added to [`Notification`] is filled in one place. A test changes
//! what it is about with struct update syntax: `Notification { level: Level::Fail,
//! ..testing::vm_notification() }`.

use crate::model::{AlarmType, Level, Origin};
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
