//! Digests: when one send has more than `alarms.digest_threshold` notifications for the same
//! recipients, a notifier that can sends them as one message (one mail, one webhook call). The
//! outbox keeps one row per alarm event; the one outcome of the digest is recorded on each.

use crate::model::{Level, Origin};
use crate::plugin::{Notification, NotificationKind};

/// Who a notification is still owed to: its origin, its recipients and those already done
/// for it (accepted or refused for good on an earlier try), each sorted. Rows with the same
/// audience are owed to exactly the same recipients, so one message serves them all.
type Audience = (Origin, Vec<String>, Vec<String>);

/// A digest's section key: origin and severity rank.
pub type SectionKey = (Origin, u8);

/// Splits claimed rows into what goes out together: groups of more than `threshold` rows with
/// the same origin, recipients and recipients already done, the rest one by one (in claim
/// order). Grouping by what is done as well keeps a deferred recipient's backlog a digest (a
/// greylisting server answering 4xx for one tick must not turn one digest into a mail per
/// row), while nobody is offered a row twice: every row of a group is owed to the same
/// recipients. `threshold` 0: no digests.
pub fn units<T>(
    rows: Vec<T>,
    threshold: u64,
    notification: impl Fn(&T) -> &Notification,
) -> Vec<Vec<T>> {
    if threshold == 0 {
        return rows.into_iter().map(|r| vec![r]).collect();
    }
    let mut groups: Vec<(Audience, Vec<T>)> = Vec::new();
    for r in rows {
        let n = notification(&r);
        let mut to = n.recipients.clone();
        to.sort();
        let mut done = n.done_recipients.clone();
        done.sort();
        done.dedup();
        let key = (n.origin, to, done);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    let mut out = Vec::new();
    for (_, g) in groups {
        if g.len() as u64 > threshold {
            out.push(g);
        } else {
            out.extend(g.into_iter().map(|r| vec![r]));
        }
    }
    out
}

/// Severity rank in a digest: critical first, then down (fail), warning, and recoveries last.
pub fn rank(n: &Notification) -> u8 {
    if n.kind == NotificationKind::Recovered {
        return 3;
    }
    match n.level {
        Level::Critical => 0,
        Level::Fail => 1,
        Level::Warning => 2,
    }
}

/// A digest's sections: (origin, rank) with their notifications, critical first, then by origin.
pub fn sections(batch: &[Notification]) -> Vec<(SectionKey, Vec<&Notification>)> {
    let mut out: Vec<(SectionKey, Vec<&Notification>)> = Vec::new();
    for n in batch {
        let key = (n.origin, rank(n));
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(n),
            None => out.push((key, vec![n])),
        }
    }
    out.sort_by_key(|((origin, rank), _)| (*rank, *origin));
    for (_, v) in &mut out {
        v.sort_by(|a, b| {
            a.target_name
                .cmp(&b.target_name)
                .then(a.alarm_type.cmp(&b.alarm_type))
        });
    }
    out
}

/// The name of a section's level: the level, or `recovered`.
pub fn rank_label(rank: u8, english: bool) -> &'static str {
    match (rank, english) {
        (0, _) => "critical",
        (1, _) => "fail",
        (2, _) => "warning",
        (_, true) => "recovered",
        (_, false) => "회복",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::NotificationKind;

    fn n(origin: Origin, level: &str, kind: NotificationKind, to: &[&str]) -> Notification {
        let now = chrono::Utc::now();
        Notification {
            id: 0,
            alarm_id: 1,
            kind,
            origin,
            alarm_type: crate::model::AlarmType::Cpu,
            level: level.parse().unwrap(),
            target_name: "vm/0".into(),
            ip: String::new(),
            app_name: None,
            app_index: None,
            cell_name: None,
            value: None,
            threshold: None,
            title: String::new(),
            message: String::new(),
            raised_at: now,
            event_at: now,
            recipients: to.iter().map(|s| s.to_string()).collect(),
            done_recipients: vec![],
            resource_url: None,
            language: "en".into(),
            console_url: None,
            history: None,
        }
    }

    #[test]
    fn more_than_the_threshold_for_the_same_recipients_go_together() {
        let o = NotificationKind::Opened;
        let mut rows: Vec<Notification> = (0..4)
            .map(|_| n(Origin::Pas, "critical", o, &["a@x.example", "b@x.example"]))
            .collect();
        // same addresses in another order: same recipients
        rows.push(n(
            Origin::Pas,
            "warning",
            o,
            &["b@x.example", "a@x.example"],
        ));
        rows.push(n(Origin::Con, "warning", o, &["a@x.example"]));
        let mut partly = n(Origin::Pas, "critical", o, &["a@x.example", "b@x.example"]);
        partly.done_recipients = vec!["a@x.example".into()];
        rows.push(partly);
        let u = units(rows.clone(), 3, |r| r);
        let sizes: Vec<usize> = u.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![5, 1, 1], "{u:?}");
        // at the threshold: one by one, as without digests
        let u = units(rows.clone(), 5, |r| r);
        assert!(u.iter().all(|g| g.len() == 1));
        assert!(units(rows, 0, |r| r).iter().all(|g| g.len() == 1));
    }

    #[test]
    fn rows_owed_to_the_same_recipients_go_together_and_never_with_others() {
        let o = NotificationKind::Opened;
        let to = ["a@x.example", "b@x.example"];
        let owed_to_b = |done: &[&str]| {
            let mut r = n(Origin::Pas, "critical", o, &to);
            r.done_recipients = done.iter().map(|s| s.to_string()).collect();
            r
        };
        let mut rows: Vec<Notification> = (0..12).map(|_| owed_to_b(&["a@x.example"])).collect();
        // done for b instead: owed to a, never in b's digest
        rows.extend((0..2).map(|_| owed_to_b(&["b@x.example"])));
        // fresh: owed to both
        rows.extend((0..3).map(|_| owed_to_b(&[])));
        let u = units(rows, 10, |r| r);
        let sizes: Vec<usize> = u.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![12, 1, 1, 1, 1, 1], "{u:?}");
        assert!(
            u[0].iter()
                .all(|r| r.done_recipients == vec!["a@x.example".to_string()])
        );
    }

    #[test]
    fn sections_put_critical_first_and_recoveries_last() {
        let batch = vec![
            n(Origin::Pas, "warning", NotificationKind::Opened, &[]),
            n(Origin::Pas, "critical", NotificationKind::Recovered, &[]),
            n(Origin::Con, "critical", NotificationKind::Opened, &[]),
            n(Origin::Pas, "fail", NotificationKind::Opened, &[]),
            n(Origin::Pas, "critical", NotificationKind::Escalated, &[]),
        ];
        let keys: Vec<(Origin, u8)> = sections(&batch).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            vec![
                (Origin::Pas, 0),
                (Origin::Con, 0),
                (Origin::Pas, 1),
                (Origin::Pas, 2),
                (Origin::Pas, 3)
            ]
        );
    }
}
