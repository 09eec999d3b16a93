//! A digest mail: many notifications for the same recipients in one mail that lists every
//! alarm (origin, name, resource, level, value, link), grouped by origin and level, critical
//! first. Everything from outside is escaped as in single mails.

use crate::render::{ChartRef, RenderedMail, display_time, header_safe, html_escape, is_english};
use chrono::FixedOffset;
use monit_host::notify::digest::{rank, rank_label, sections};
use monit_host::plugin::Notification;
use std::collections::HashMap;
use std::fmt::Write as _;

fn value_text(n: &Notification) -> String {
    match (n.value, n.threshold) {
        (Some(v), Some(t)) => format!("{v:.2}% (> {t:.0}%)"),
        (Some(v), None) => format!("{v:.2}%"),
        (None, _) if n.is_down() => "no data".into(),
        (None, _) => "-".into(),
    }
}

/// Subject: how many, and how many of each level, critical first.
pub fn subject(batch: &[Notification]) -> String {
    let en = batch.first().is_some_and(is_english);
    let mut counts: Vec<(u8, usize)> = Vec::new();
    for n in batch {
        let r = rank(n);
        match counts.iter_mut().find(|(k, _)| *k == r) {
            Some((_, c)) => *c += 1,
            None => counts.push((r, 1)),
        }
    }
    counts.sort();
    let parts: Vec<String> = counts
        .iter()
        .map(|(r, c)| format!("{} {c}", rank_label(*r, en)))
        .collect();
    header_safe(&if en {
        format!("[DIGEST] {} alarms: {}", batch.len(), parts.join(", "))
    } else {
        format!("[요약] 알림 {}건: {}", batch.len(), parts.join(", "))
    })
}

pub fn render_digest(batch: &[Notification], offset: FixedOffset) -> RenderedMail {
    render_digest_with_charts(batch, offset, &HashMap::new())
}

/// [`render_digest`] with a chart below the line of each alarm in `charts` (by notification
/// id) in the HTML part; the text part is the same.
pub fn render_digest_with_charts(
    batch: &[Notification],
    offset: FixedOffset,
    charts: &HashMap<i64, ChartRef>,
) -> RenderedMail {
    let en = batch.first().is_some_and(is_english);
    let heads = if en {
        ["name", "resource", "level", "value", "since", "link"]
    } else {
        ["서버 이름", "자원", "등급", "값", "발생 시간", "링크"]
    };
    let e = html_escape;
    let mut text = String::new();
    let mut html = String::from(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>PaaS-TA Monitor</title>\n</head>\n\
         <body style=\"font-family:'Noto Sans',sans-serif;font-size:12px;color:#404040;\">\n",
    );
    let _ = writeln!(text, "{}\n", subject(batch));
    let _ = writeln!(html, "<h2>{}</h2>", e(&subject(batch)));
    // The list shows no messages: a maintenance hold cut short (why these alarms come while a
    // task runs) is said once per deployment, above it.
    let mut notes: Vec<&str> = Vec::new();
    for line in batch
        .iter()
        .filter_map(|n| monit_host::hold::maintenance::cut_short_line_in(&n.message))
    {
        if !notes.contains(&line) {
            notes.push(line);
        }
    }
    for line in &notes {
        let _ = writeln!(text, "{line}");
        let _ = writeln!(html, "<p>{}</p>", e(line));
    }
    if !notes.is_empty() {
        text.push('\n');
    }
    for ((origin, r), list) in sections(batch) {
        let title = format!("{} · {} ({})", origin.code(), rank_label(r, en), list.len());
        let _ = writeln!(text, "[{title}]");
        let _ = writeln!(
            html,
            "<h3 style=\"padding-top:12px;margin:0;\">{}</h3>\n<table style=\"border-collapse:collapse;width:100%;\">\n<tr>{}</tr>",
            e(&title),
            heads
                .iter()
                .map(|h| format!(
                    "<th style=\"text-align:left;background:#f5f5f5;padding:4px;\">{}</th>",
                    e(h)
                ))
                .collect::<String>()
        );
        for n in list {
            let name = n.server_name();
            let value = value_text(n);
            let since = display_time(n.raised_at, offset);
            let link = n.monitor_link();
            let _ = writeln!(
                text,
                "- {name} {} {} {value} since {since}{}",
                n.alarm_type.code(),
                n.level.code(),
                link.map(|l| format!(" {l}")).unwrap_or_default()
            );
            let mut link_cell = link
                .map(|l| format!("<a href=\"{}\">PaaS-TA Monitor</a>", e(l)))
                .unwrap_or_default();
            if let Some((label, url)) = crate::render::silence_link(n) {
                let _ = writeln!(text, "  {label}: {url}");
                let _ = write!(link_cell, " <a href=\"{}\">{}</a>", e(&url), e(label));
            }
            let _ = writeln!(
                html,
                "<tr>{}<td style=\"padding:4px;\">{link_cell}</td></tr>",
                [
                    name.as_str(),
                    n.alarm_type.code(),
                    n.level.code(),
                    &value,
                    &since
                ]
                .iter()
                .map(|v| format!("<td style=\"padding:4px;\">{}</td>", e(v)))
                .collect::<String>()
            );
            if let Some(chart) = charts.get(&n.id) {
                let _ = writeln!(
                    html,
                    "<tr><td colspan=\"{}\" style=\"padding:2px 4px 10px;\">{}</td></tr>",
                    heads.len(),
                    chart.img("display:block;border:1px solid #ddd;max-width:100%;height:auto;")
                );
            }
        }
        text.push('\n');
        html.push_str("</table>\n");
    }
    html.push_str("</body>\n</html>\n");
    RenderedMail {
        subject: subject(batch),
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monit_host::model::Origin;
    use monit_host::plugin::NotificationKind;

    fn n(origin: Origin, name: &str, level: &str, ty: &str, value: Option<f64>) -> Notification {
        let (level, ty) = (level.parse().unwrap(), ty.parse().unwrap());
        let now = chrono::Utc::now();
        Notification {
            id: 1,
            alarm_id: 1,
            kind: NotificationKind::Opened,
            origin,
            alarm_type: ty,
            level,
            target_name: name.into(),
            ip: String::new(),
            app_name: None,
            app_index: None,
            cell_name: None,
            value,
            threshold: value.map(|_| 90.0),
            title: String::new(),
            message: String::new(),
            raised_at: now,
            event_at: now,
            recipients: vec![],
            done_recipients: vec![],
            resource_url: Some("https://monitor.example".into()),
            language: "en".into(),
            console_url: None,
            history: None,
        }
    }

    #[test]
    fn lists_every_alarm_critical_first_escaped() {
        let batch = vec![
            n(Origin::Pas, "router/0", "warning", "cpu", Some(86.0)),
            n(Origin::Pas, "db/<0>", "critical", "memory", Some(97.5)),
            n(Origin::Bos, "director/0", "fail", "fail", None),
        ];
        let m = render_digest(&batch, FixedOffset::east_opt(0).unwrap());
        assert_eq!(
            m.subject,
            "[DIGEST] 3 alarms: critical 1, fail 1, warning 1"
        );
        let crit = m.text.find("db/<0>").unwrap();
        let fail = m.text.find("director/0").unwrap();
        let warn = m.text.find("router/0").unwrap();
        assert!(crit < fail && fail < warn, "{}", m.text);
        assert!(m.text.contains("97.50% (> 90%)") && m.text.contains("no data"));
        assert!(m.text.contains("https://monitor.example"));
        assert!(m.html.contains("db/&lt;0&gt;") && !m.html.contains("db/<0>"));
    }

    #[test]
    fn a_maintenance_hold_cut_short_is_said_once_above_the_list() {
        let line = "[maintenance hold cut short] BOSH task 7 (recreate) on deployment cf";
        let mut batch: Vec<Notification> = (0..3)
            .map(|i| n(Origin::Pas, &format!("cell/{i}"), "fail", "fail", None))
            .collect();
        for a in &mut batch[..2] {
            a.message = format!("cell down\n{line}");
        }
        let m = render_digest(&batch, FixedOffset::east_opt(0).unwrap());
        assert_eq!(m.text.matches(line).count(), 1, "{}", m.text);
        assert!(m.text.find(line) < m.text.find("cell/0"), "{}", m.text);
        assert_eq!(m.html.matches("BOSH task 7").count(), 1, "{}", m.html);
        let plain = render_digest(&batch[2..], FixedOffset::east_opt(0).unwrap());
        assert!(!plain.text.contains("cut short"));
    }

    #[test]
    fn korean_subject() {
        let mut a = n(Origin::Pas, "a/0", "critical", "cpu", Some(95.0));
        a.language = "ko".into();
        assert_eq!(subject(&[a.clone(), a]), "[요약] 알림 2건: critical 2");
    }
}
