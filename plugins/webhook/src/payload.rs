//! The body of each POST: the notification as a JSON document, or as a Slack message.

use crate::config::Format;
use monit_host::model::Timestamp;
use monit_host::plugin::{Notification, NotificationKind};
use serde::Serialize;
use serde_json::{Value, json};

/// The `format = "json"` body. Field names are a contract with the receivers: add, never rename.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Document<'a> {
    /// Same for every attempt at the same notification: the receiver's deduplication key.
    pub notification_id: i64,
    /// `opened`, `escalated`, `stepped_down`, `repeated` or `recovered`
    pub event: &'static str,
    pub event_at: Timestamp,
    pub alarm: Alarm<'a>,
    /// the alarm's level as stored: `warning`, `critical`, `fail`
    pub level: &'a str,
    pub target: Target<'a>,
    /// the measured value (percent) that raised or renewed the alarm; null when there is none
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// only http(s) URLs
    pub links: Vec<Link<'a>>,
    pub source: &'static str,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alarm<'a> {
    pub id: i64,
    /// `pas`, `bos` or `con`
    pub origin: &'static str,
    /// `cpu`, `memory`, `disk`, `fail`…
    #[serde(rename = "type")]
    pub alarm_type: &'a str,
    pub title: &'a str,
    pub message: &'a str,
    pub raised_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Target<'a> {
    /// VM name, or the app's name for a container alarm
    pub name: &'a str,
    pub ip: &'a str,
    pub app_name: Option<&'a str>,
    pub app_index: Option<i32>,
    pub cell_name: Option<&'a str>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Link<'a> {
    pub title: &'static str,
    pub url: &'a str,
}

pub const SOURCE: &str = "paasta-monitoring-batch";

pub fn document(n: &Notification) -> Document<'_> {
    Document {
        notification_id: n.id,
        event: n.kind.code(),
        event_at: n.event_at,
        alarm: Alarm {
            id: n.alarm_id,
            origin: n.origin.code(),
            alarm_type: n.alarm_type.code(),
            title: &n.title,
            message: &n.message,
            raised_at: n.raised_at,
        },
        level: n.level.code(),
        target: Target {
            name: &n.target_name,
            ip: &n.ip,
            app_name: n.app_name.as_deref(),
            app_index: n.app_index,
            cell_name: n.cell_name.as_deref(),
        },
        value: n.value.filter(|v| v.is_finite()),
        threshold: n.threshold.filter(|v| v.is_finite()),
        links: n
            .monitor_link()
            .map(|url| Link {
                title: "PaaS-TA Monitor",
                url,
            })
            .into_iter()
            .collect(),
        source: SOURCE,
    }
}

/// The serialized body in the configured format.
pub fn body(n: &Notification, format: Format) -> Vec<u8> {
    let value = match format {
        Format::Json => serde_json::to_value(document(n)).unwrap_or(Value::Null),
        Format::Slack => slack(n),
    };
    // A Value of strings and numbers always serializes.
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The body of a digest: `{"digest": true, "count", "notification_ids", "alarms": [...]}` with
/// every notification's document, critical first and grouped by origin (json); for Slack one
/// message with a line per alarm.
pub fn digest_body(batch: &[Notification], format: Format) -> Vec<u8> {
    let ordered: Vec<&Notification> = monit_host::notify::digest::sections(batch)
        .into_iter()
        .flat_map(|(_, list)| list)
        .collect();
    let value = match format {
        Format::Json => json!({
            "digest": true,
            "count": ordered.len(),
            "notification_ids": ordered.iter().map(|n| n.id).collect::<Vec<_>>(),
            "alarms": ordered.iter().map(|n| document(n)).collect::<Vec<_>>(),
            "source": SOURCE,
        }),
        Format::Slack => {
            let headline = format!("[DIGEST] {} alarms", ordered.len());
            let lines: Vec<String> = ordered
                .iter()
                .map(|n| {
                    let value = n
                        .value
                        .filter(|v| v.is_finite())
                        .map(|v| format!(" {v:.1}%"))
                        .unwrap_or_default();
                    format!(
                        "• [{}] {} {} {} {}{value}",
                        event_label(n.kind),
                        n.origin.code(),
                        n.level.code().to_uppercase(),
                        escape(&n.server_name()),
                        n.alarm_type.code()
                    )
                })
                .collect();
            let mut blocks = vec![json!({
                "type": "section",
                "text": { "type": "mrkdwn", "text": format!("*{headline}*") },
            })];
            // a section holds at most 3000 characters: the lines in as many as needed
            let mut chunk = String::new();
            for l in &lines {
                if chunk.len() + l.len() + 1 > 2900 {
                    blocks.push(
                        json!({"type": "section", "text": {"type": "mrkdwn", "text": chunk}}),
                    );
                    chunk = String::new();
                }
                chunk.push_str(l);
                chunk.push('\n');
            }
            if !chunk.is_empty() {
                blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": chunk}}));
            }
            blocks.truncate(50);
            json!({ "text": headline, "blocks": blocks })
        }
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// A Slack incoming-webhook message: `text` is the notification line (what Slack shows in a push
/// notification and what a client without Block Kit shows), `blocks` the full layout.
pub fn slack(n: &Notification) -> Value {
    let d = document(n);
    let headline = format!(
        "[{}] {}: {}",
        event_label(n.kind),
        d.level.to_uppercase(),
        n.server_name()
    );
    let mut fields = vec![field("Level", d.level), field("Target", &n.server_name())];
    if !d.target.ip.is_empty() {
        fields.push(field("IP", d.target.ip));
    }
    if let Some(v) = d.value {
        fields.push(field("Value", &format!("{v:.1}%")));
    }
    if let Some(t) = d.threshold {
        fields.push(field("Threshold", &format!("{t:.1}%")));
    }
    fields.push(json!({
        "type": "mrkdwn",
        "text": format!("*Raised at*\n{}", slack_date(d.alarm.raised_at)),
    }));
    let mut blocks = vec![
        json!({
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": clip(&format!("*{}*\n{}", escape(&headline), escape(d.alarm.title)), 3000),
            },
        }),
        json!({ "type": "section", "fields": fields }),
    ];
    if !d.alarm.message.trim().is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": clip(&escape(d.alarm.message), 3000) },
        }));
    }
    if let Some(link) = d.links.first() {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": { "type": "plain_text", "text": link.title },
                "url": clip(link.url, 3000),
            }],
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{
            "type": "mrkdwn",
            "text": format!(
                "{} · alarm {} · notification {} · {}",
                SOURCE, d.alarm.id, d.notification_id, slack_date(d.event_at)
            ),
        }],
    }));
    json!({
        "text": clip(&format!("{}: {}", escape(&headline), escape(d.alarm.title)), 3000),
        "blocks": blocks,
    })
}

fn event_label(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Opened => "ALARM",
        NotificationKind::Escalated => "ESCALATED",
        NotificationKind::SteppedDown => "STEPPED DOWN",
        NotificationKind::Repeated => "STILL FIRING",
        NotificationKind::Recovered => "RECOVERED",
    }
}

fn field(label: &str, value: &str) -> Value {
    json!({ "type": "mrkdwn", "text": clip(&format!("*{label}*\n{}", escape(value)), 2000) })
}

/// Slack shows it in the reader's own time zone; the text after `|` is the fallback.
fn slack_date(t: Timestamp) -> String {
    format!(
        "<!date^{}^{{date_num}} {{time_secs}}|{}>",
        t.timestamp(),
        t.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// Slack mrkdwn control characters, so that an app name cannot ping `<!channel>` or fake a link.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack rejects a block whose text is over its limit: cut on a character boundary.
fn clip(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max_chars - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_digest_lists_every_alarm_critical_first() {
        let mut warn = notification();
        warn.level = monit_host::model::Level::Warning;
        warn.id = 7;
        let mut crit = notification();
        crit.level = monit_host::model::Level::Critical;
        crit.id = 8;
        let v: Value =
            serde_json::from_slice(&digest_body(&[warn.clone(), crit.clone()], Format::Json))
                .unwrap();
        assert_eq!(v["digest"], true);
        assert_eq!(v["count"], 2);
        assert_eq!(v["notification_ids"], json!([8, 7]));
        assert_eq!(v["alarms"][0]["level"], "critical");
        let s: Value = serde_json::from_slice(&digest_body(&[warn, crit], Format::Slack)).unwrap();
        assert_eq!(s["text"], "[DIGEST] 2 alarms");
        let lines = s["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(
            lines.find("CRITICAL").unwrap() < lines.find("WARNING").unwrap(),
            "{lines}"
        );
    }

    use super::*;

    fn notification() -> Notification {
        Notification {
            app_name: Some("<!channel> shop".into()),
            message: "a & b".into(),
            resource_url: Some("javascript:alert(1)".into()),
            ..monit_host::testing::app_notification()
        }
    }

    #[test]
    fn slack_text_is_escaped_and_a_non_http_link_is_dropped() {
        let v = slack(&notification());
        let s = v.to_string();
        assert!(!s.contains("<!channel>"), "{s}");
        assert!(s.contains("&lt;!channel&gt; shop[2]"), "{s}");
        assert!(s.contains("a &amp; b"), "{s}");
        assert!(!s.contains("javascript:"), "{s}");
        assert!(v["text"].as_str().unwrap().starts_with("[ALARM] CRITICAL:"));
    }

    #[test]
    fn a_step_down_is_its_own_event() {
        let mut n = notification();
        n.kind = NotificationKind::SteppedDown;
        n.level = monit_host::model::Level::Warning;
        let d = serde_json::to_value(document(&n)).unwrap();
        assert_eq!(d["event"], "stepped_down");
        assert_eq!(d["level"], "warning");
        let v = slack(&n);
        assert!(
            v["text"]
                .as_str()
                .unwrap()
                .starts_with("[STEPPED DOWN] WARNING:"),
            "{v}"
        );
        // the outbox row round-trips the kind
        let back: Notification = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
        assert_eq!(back.kind, NotificationKind::SteppedDown);
    }

    #[test]
    fn non_finite_values_become_null() {
        let mut n = notification();
        n.value = Some(f64::NAN);
        let d = serde_json::to_value(document(&n)).unwrap();
        assert!(d["value"].is_null());
        assert_eq!(d["threshold"], 90.0);
    }

    #[test]
    fn clip_keeps_slack_limits() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
        let mut n = notification();
        n.message = "x".repeat(5000);
        let v = slack(&n);
        let longest = v["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["text"]["text"].as_str())
            .map(|t| t.chars().count())
            .max()
            .unwrap();
        assert!(longest <= 3000, "{longest}");
    }
}
