//! The chart in the mail: an inline PNG (`Content-ID`) in a multipart/related beside the HTML
//! part, referenced by `<img src="cid:...">`, the text part unchanged; none when the history
//! could not be read or charts are off; at most ten smaller ones in a digest.

use chrono::{TimeDelta, Utc};
use mail_parser::{MessageParser, MimeHeaders, PartType};
use monit_host::model::{Level, Resource};
use monit_host::plugin::{History, Notification, Notifier, ReadingHistory};
use monit_plugin_email::chart::DIGEST_CHARTS;
use monit_plugin_email::{EmailConfig, EmailNotifier, Security};
use std::sync::Arc;

fn notifier(charts: bool) -> EmailNotifier {
    let mut c = EmailConfig::new("127.0.0.1", "PaaS-TA Monitor <monit@example.org>");
    c.security = Security::Plain;
    c.charts = charts;
    EmailNotifier::new(c).unwrap()
}

fn history(n: &Notification) -> History {
    let to = n.event_at;
    let from = to - TimeDelta::hours(1);
    History::Read(Arc::new(ReadingHistory {
        resource: Resource::Cpu,
        from,
        to,
        points: (1..=60)
            .map(|m| (from + TimeDelta::minutes(m), 50.0 + m as f64 * 0.7))
            .collect(),
        warning: Some(80.0),
        critical: Some(90.0),
        breach: Some((to - TimeDelta::minutes(10), to)),
    }))
}

fn notification() -> Notification {
    let mut n = monit_host::testing::vm_notification();
    n.event_at = Utc::now();
    n.raised_at = n.event_at - TimeDelta::minutes(5);
    n.history = Some(history(&n));
    n
}

/// The MIME tree: `multipart/alternative[text/plain, multipart/related[text/html, image/png]]`.
fn tree(raw: &[u8]) -> String {
    let m = MessageParser::default().parse(raw).unwrap();
    fn walk(m: &mail_parser::Message<'_>, id: u32) -> String {
        let p = m.part(id).unwrap();
        let ct = p
            .content_type()
            .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default()))
            .unwrap_or_default();
        match &p.body {
            PartType::Multipart(kids) => format!(
                "{ct}[{}]",
                kids.iter()
                    .map(|k| walk(m, *k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => ct,
        }
    }
    walk(&m, 0)
}

/// Every image part: its Content-ID (without brackets) and its bytes.
fn images(raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    let m = MessageParser::default().parse(raw).unwrap();
    m.parts
        .iter()
        .filter(|p| p.is_content_type("image", "png"))
        .map(|p| {
            (
                p.content_id().unwrap_or_default().to_string(),
                p.contents().to_vec(),
            )
        })
        .collect()
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    let info = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap()
        .info()
        .clone();
    (info.width, info.height)
}

fn bodies(raw: &[u8]) -> (String, String) {
    let m = MessageParser::default().parse(raw).unwrap();
    (
        m.body_text(0).unwrap().to_string(),
        m.body_html(0).unwrap().to_string(),
    )
}

#[test]
fn a_mail_with_history_carries_its_chart_inline_beside_the_html() {
    let n = notification();
    let raw = notifier(true).compose(&n).unwrap().message.formatted();
    assert_eq!(
        tree(&raw),
        "multipart/alternative[text/plain, multipart/related[text/html, image/png]]"
    );
    let imgs = images(&raw);
    assert_eq!(imgs.len(), 1);
    let (cid, png) = &imgs[0];
    assert_eq!(cid, "chart.1.7@monit-batch");
    assert_eq!(png_size(png), (600, 240));
    let (text, html) = bodies(&raw);
    assert!(html.contains(&format!("src=\"cid:{cid}\"")), "{html}");
    assert!(html.contains("width=\"600\" height=\"240\""), "{html}");
    // the text part is the one of a mail without a chart
    let mut plain = n.clone();
    plain.history = None;
    let (text_before, html_before) =
        bodies(&notifier(true).compose(&plain).unwrap().message.formatted());
    assert_eq!(text, text_before);
    assert!(!html_before.contains("cid:"));
    // the mail stays small
    assert!(raw.len() < 60_000, "{} bytes", raw.len());
}

#[test]
fn without_a_history_or_with_charts_off_the_mail_is_as_before() {
    let before = "multipart/alternative[text/plain, text/html]";
    let mut n = notification();
    let off = notifier(false).compose(&n).unwrap().message.formatted();
    assert_eq!(tree(&off), before, "charts = false");
    assert!(images(&off).is_empty());
    n.history = Some(History::Unavailable("the store is down".into()));
    let raw = notifier(true).compose(&n).unwrap().message.formatted();
    assert_eq!(tree(&raw), before);
    assert!(!bodies(&raw).1.contains("cid:"));
    // a history that cannot be drawn (an empty span): sent without it
    let mut n = notification();
    if let Some(History::Read(h)) = &n.history {
        let mut h = (**h).clone();
        h.to = h.from;
        n.history = Some(History::Read(Arc::new(h)));
    }
    let raw = notifier(true).compose(&n).unwrap().message.formatted();
    assert_eq!(tree(&raw), before);
}

#[test]
fn the_session_asks_for_the_last_hour_only_with_charts_on() {
    let on = notifier(true);
    let wish = on.session().history_wish().unwrap();
    assert_eq!(wish.span, std::time::Duration::from_secs(3600));
    assert_eq!(wish.per_digest, DIGEST_CHARTS);
    assert!(notifier(false).session().history_wish().is_none());
}

#[test]
fn a_digest_has_a_small_chart_for_each_of_its_first_alarms_only() {
    let mut batch: Vec<Notification> = (0..12)
        .map(|i| {
            let mut n = notification();
            n.id = 100 + i;
            n.alarm_id = 200 + i;
            n.target_name = format!("vm_z1/{i:02}");
            n.level = Level::Critical;
            n
        })
        .collect();
    // a warning comes after every critical in a digest: no chart for it
    batch[0].level = Level::Warning;
    let raw = notifier(true)
        .compose_digest(&batch)
        .unwrap()
        .message
        .formatted();
    let imgs = images(&raw);
    assert_eq!(imgs.len(), DIGEST_CHARTS);
    let (_, html) = bodies(&raw);
    for (cid, png) in &imgs {
        assert_eq!(png_size(png), (400, 160));
        assert!(html.contains(&format!("src=\"cid:{cid}\"")), "{cid}");
    }
    let cids: Vec<&str> = imgs.iter().map(|(c, _)| c.as_str()).collect();
    // critical first, by name: vm_z1/01 .. vm_z1/10; not the 11th critical nor the warning
    assert!(cids.contains(&"chart.101.201@monit-batch"), "{cids:?}");
    assert!(cids.contains(&"chart.110.210@monit-batch"), "{cids:?}");
    assert!(!cids.contains(&"chart.111.211@monit-batch"), "{cids:?}");
    assert!(!cids.contains(&"chart.100.200@monit-batch"), "{cids:?}");
    assert!(raw.len() < 300_000, "{} bytes", raw.len());
}
