//! Titles and messages of `alarms` rows, in the original's wording (spec 4.4) or in English, and
//! the `system` notes the batch writes in `alarm_actions`, with their times at the display offset.

use crate::model::{AlarmType, Level, Origin, Target, Timestamp};
use chrono::FixedOffset;

fn level_word(level: Level) -> &'static str {
    match level {
        Level::Warning => "Warning",
        Level::Critical => "Critical",
        Level::Fail => "Fail",
    }
}

/// (alarm_title, alarm_message) of an alarm as the management UI shows it.
pub fn title_and_message(
    lang: &str,
    target: &Target,
    alarm_type: AlarmType,
    level: Level,
    threshold: Option<f64>,
    usage: Option<f64>,
) -> (String, String) {
    let thr = threshold.map(|t| format!("{t:.0}")).unwrap_or_default();
    let usage = usage.map(|u| format!("{u:.2}")).unwrap_or_default();
    let ty = alarm_type.code();
    let lvl = level.code();
    let en = lang == "en";
    if alarm_type == AlarmType::Fail {
        let who = target.label();
        let t = if en {
            format!("[{who}] is down (no metrics received).")
        } else {
            format!("[{who}]가 다운되었습니다.")
        };
        return (t.clone(), t);
    }
    match (&target.app, target.origin) {
        (Some(app), Origin::Con) if app.app_index == crate::evaluate::engine::APP_LEVEL_INDEX => {
            let usage = if usage.is_empty() {
                String::new()
            } else {
                format!(" ({ty} {usage}%)")
            };
            if en {
                (
                    format!("[{}] autoscale blocked at instance_max_cnt", app.app_name),
                    format!(
                        "[{}] needs more instances{usage} but is at instance_max_cnt: raise the maximum or the app's resources.",
                        app.app_name
                    ),
                )
            } else {
                (
                    format!("[{}] 오토스케일 최대 인스턴스 도달", app.app_name),
                    format!(
                        "[{}] 인스턴스 증설이 필요하나{usage} instance_max_cnt에 도달했습니다. 최대 인스턴스 수 또는 앱 자원을 늘려 주십시오.",
                        app.app_name
                    ),
                )
            }
        }
        (Some(app), Origin::Con) => {
            let word = level_word(level);
            if en {
                (
                    format!("{}[{}] App status {word}. ", app.app_name, app.app_index),
                    format!(
                        "App status: {word}. {}[{}], CellName:[{}], {ty} {lvl}.\n{} threshold {thr}% exceeded.\ncurrent usage [{usage}]%",
                        app.app_name, app.app_index, app.cell_name, app.app_name
                    ),
                )
            } else {
                (
                    format!("{}[{}] App 상태 {word}. ", app.app_name, app.app_index),
                    format!(
                        "App상태:{word}. {}[{}], CellName:[{}], {ty} 상태 {lvl}.\n{} 임계치 {thr}% 초과.\n현재 사용률 [{usage}]%",
                        app.app_name, app.app_index, app.cell_name, app.app_name
                    ),
                )
            }
        }
        _ => {
            let svc = &target.name;
            if en {
                (
                    format!("[{svc}] {ty} status [{lvl}]"),
                    format!(
                        "[{svc}] {ty} status [{lvl}]\n{ty} threshold {thr}% exceeded.\ncurrent usage [{usage}]%"
                    ),
                )
            } else {
                // Critical carries an extra space before 의 in the original; the UI shows it as is.
                let sp = if level == Level::Critical { " " } else { "" };
                (
                    format!("[{svc}]의 {ty} 상태 [{lvl}]"),
                    format!(
                        "[{svc}]{sp}의 {ty} 상태 [{lvl}]\n{ty} 임계치 {thr}% 초과.\n현재 사용률 [{usage}]%"
                    ),
                )
            }
        }
    }
}

/// Message of a recovery (no alarms row of its own: it goes to `alarm_actions` and the outbox).
/// `closed`: the batch closed the alarm; otherwise it stays open for its operator.
pub fn recovery_message(
    lang: &str,
    target: &Target,
    alarm_type: AlarmType,
    usage: Option<f64>,
    closed: bool,
) -> String {
    let who = target.label();
    let usage = usage.map(|u| format!(" [{u:.2}]%")).unwrap_or_default();
    let ty = alarm_type.code();
    match (lang == "en", closed) {
        (true, true) => format!("[{who}] {ty} recovered{usage}; alarm resolved by the batch."),
        (true, false) => format!(
            "[{who}] {ty} recovered{usage}; the alarm stays open (not resolved by the batch)."
        ),
        (false, true) => {
            format!("[{who}]의 {ty} 상태가 정상으로 회복되었습니다{usage}. (batch 자동 해제)")
        }
        (false, false) => format!(
            "[{who}]의 {ty} 상태가 정상으로 회복되었습니다{usage}. (자동 해제하지 않음: 처리 상태는 담당자가 정합니다)"
        ),
    }
}

/// The `alarm_actions` note on a recovered alarm the batch leaves open: when, and the value.
pub fn recovery_note(
    lang: &str,
    target: &Target,
    alarm_type: AlarmType,
    usage: Option<f64>,
    (at, offset): (Timestamp, FixedOffset),
) -> String {
    format!(
        "[{}] {}",
        display_time(at, offset),
        recovery_message(lang, target, alarm_type, usage, false)
    )
}

/// The `alarm_actions` note on an alarm recorded while its notification is held (`reason`: a
/// hold's code, `silenced`, `maintenance` or `inhibited`): the app shows a send date for it (the
/// time it was recorded), and this says that no mail went out and when one will.
pub fn held_note(lang: &str, reason: &str, (at, offset): (Timestamp, FixedOffset)) -> String {
    let at = display_time(at, offset);
    if lang == "en" {
        let why = match reason {
            "silenced" => "a silence matches it",
            "maintenance" => "its BOSH deployment is under maintenance",
            "inhibited" => "a bigger alarm inhibits it (its VM or cell is down)",
            other => other,
        };
        format!(
            "[{at}] Notification held ({why}): no mail was sent. If it still breaches when the hold ends, it is notified as a new alarm."
        )
    } else {
        let why = match reason {
            "silenced" => "사일런스 적용",
            "maintenance" => "BOSH 배포 작업 중",
            "inhibited" => "상위 알림에 의한 억제: VM 또는 셀 다운",
            other => other,
        };
        format!(
            "[{at}] 알림 보류({why}): 메일을 보내지 않았습니다. 보류가 끝난 뒤에도 계속되면 새 알림으로 보냅니다."
        )
    }
}

/// `2024-05-01 18:30:00 (UTC+09:00)`: a time at the display offset, with that offset named, as
/// the mail body writes it.
pub fn display_time(t: Timestamp, offset: FixedOffset) -> String {
    let zone = if offset.local_minus_utc() == 0 {
        "UTC".to_string()
    } else {
        format!("UTC{offset}")
    };
    format!(
        "{} ({zone})",
        t.with_timezone(&offset).format("%Y-%m-%d %H:%M:%S")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::offset_of_hours;
    use chrono::TimeZone;

    fn vm() -> Target {
        Target {
            origin: Origin::Pas,
            origin_id: 1,
            name: "cell_z1/0".into(),
            ip: "10.0.16.21".into(),
            app: None,
        }
    }

    #[test]
    fn a_recovery_note_says_when_and_the_value_in_the_configured_language_and_offset() {
        let at = chrono::Utc.with_ymd_and_hms(2026, 11, 29, 7, 5, 0).unwrap();
        let kst = offset_of_hours(9.0);
        let ko = recovery_note("ko", &vm(), AlarmType::Cpu, Some(12.345), (at, kst));
        assert_eq!(
            ko,
            "[2026-11-29 16:05:00 (UTC+09:00)] [cell_z1/0]의 cpu 상태가 정상으로 회복되었습니다 [12.35]%. (자동 해제하지 않음: 처리 상태는 담당자가 정합니다)"
        );
        let en = recovery_note(
            "en",
            &vm(),
            AlarmType::Cpu,
            Some(12.345),
            (at, offset_of_hours(0.0)),
        );
        assert!(
            en.starts_with(
                "[2026-11-29 07:05:00 (UTC)] [cell_z1/0] cpu recovered [12.35]%; the alarm stays open"
            ),
            "{en}"
        );
        assert!(
            recovery_message("en", &vm(), AlarmType::Cpu, None, true)
                .contains("resolved by the batch")
        );
    }

    #[test]
    fn offsets_cover_half_hours_and_never_panic() {
        let at = chrono::Utc
            .with_ymd_and_hms(2026, 11, 29, 23, 45, 0)
            .unwrap();
        assert_eq!(
            display_time(at, offset_of_hours(5.5)),
            "2026-11-30 05:15:00 (UTC+05:30)"
        );
        assert_eq!(
            display_time(at, offset_of_hours(-3.0)),
            "2026-11-29 20:45:00 (UTC-03:00)"
        );
        for bad in [f64::NAN, f64::INFINITY, 1e12, -30.0] {
            assert_eq!(offset_of_hours(bad).local_minus_utc(), 0, "{bad}");
        }
    }

    #[test]
    fn a_held_note_says_no_mail_went_out_and_why() {
        let at = chrono::Utc.with_ymd_and_hms(2026, 11, 29, 7, 5, 0).unwrap();
        let ko = held_note("ko", "silenced", (at, offset_of_hours(9.0)));
        assert!(
            ko.starts_with("[2026-11-29 16:05:00 (UTC+09:00)] 알림 보류(사일런스 적용)"),
            "{ko}"
        );
        let en = held_note("en", "maintenance", (at, offset_of_hours(9.0)));
        assert!(
            en.contains("no mail was sent") && en.contains("maintenance"),
            "{en}"
        );
    }
}
