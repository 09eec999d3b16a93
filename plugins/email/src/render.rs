//! The mail's subject and its text and HTML bodies, in the original's layout and wording.
//!
//! Everything that comes from outside (app names, titles, messages, URLs) is HTML-escaped in the
//! HTML body, and control characters are removed from the subject, so a CF app name can inject
//! neither markup nor a header.

use chrono::{FixedOffset, TimeDelta};
use monit_host::model::Timestamp;
use monit_host::plugin::{Notification, NotificationKind};
use std::fmt::Write as _;

/// A rendered mail, before addressing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedMail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The labels of one language. `ko` is the original's wording.
struct Words {
    button: &'static str,
    info: &'static str,
    status: &'static str,
    server: &'static str,
    occurred: &'static str,
    elapsed: &'static str,
    /// after the number of minutes in the elapsed cell: the original wrote `0(분)`
    minutes: &'static str,
    details: &'static str,
    recovered: &'static str,
    copyright: &'static str,
}

const KO: Words = Words {
    button: "PaaS-Ta Monitor로 이동",
    info: "알림 정보",
    status: "상태",
    server: "서버 이름",
    occurred: "발생 시간",
    elapsed: "경과 시간(분)",
    minutes: "(분)",
    details: "상세 내용",
    recovered: "회복",
    copyright: "Copyright © PaaS-Ta All rights reserved",
};

const EN: Words = Words {
    button: "go to PaaS-Ta Monitor",
    info: "alarm info",
    status: "status",
    server: "server name",
    occurred: "occurred at",
    elapsed: "elapsed (min)",
    minutes: " min",
    details: "details",
    recovered: "recovered",
    copyright: "Copyright © PaaS-Ta All rights reserved",
};

pub(crate) fn is_english(n: &Notification) -> bool {
    n.language.eq_ignore_ascii_case("en")
}

/// Header-safe text: every control character (CR, LF, TAB…) becomes a space.
pub fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub use monit_host::config::visible::html_escape;

/// Escaped, with line breaks kept as `<br>`.
fn html_lines(s: &str) -> String {
    s.lines()
        .map(|l| html_escape(l.trim()))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("<br>")
}

/// `2024-05-01 18:30:00 (UTC+09:00)`: the time at the display offset, with that offset named
/// (the host writes its `alarm_actions` notes the same way).
pub fn display_time(t: Timestamp, offset: FixedOffset) -> String {
    monit_host::evaluate::alarm_text::display_time(t, offset)
}

/// Whole minutes from the alarm's start to this event, never negative.
pub fn elapsed_minutes(n: &Notification) -> i64 {
    (n.event_at - n.raised_at)
        .max(TimeDelta::zero())
        .num_minutes()
}

/// Subject: the alarm title followed by `!`, as the original; a recovery says so up front.
pub fn subject(n: &Notification) -> String {
    let title = header_safe(&n.title);
    let en = is_english(n);
    match n.kind {
        // said once, up front; the body tells the rest
        NotificationKind::Recovered if en => format!("[RECOVERED] {}", title.trim_end()),
        NotificationKind::Recovered => format!("[회복] {}", title.trim_end()),
        _ => format!("{title}!"),
    }
}

/// The short message after `{status} : ` (the original's mail wording, shorter than alarm_message).
fn status_message(n: &Notification) -> String {
    let name = n.server_name();
    let ty = &n.alarm_type;
    let en = is_english(n);
    let usage = n.value.map(|u| format!("{u:.2}"));
    match n.kind {
        NotificationKind::Recovered => {
            let now = usage.map(|u| (u, en));
            match now {
                Some((u, true)) => {
                    format!("{name}'s {ty} is back to normal, current usage [{u}]%.")
                }
                Some((u, false)) => {
                    format!(
                        "{name}의 {ty} 상태가 정상으로 회복되었습니다. 현재 사용률 [{u}]% 입니다."
                    )
                }
                None if en => format!("{name}'s {ty} is back to normal."),
                None => format!("{name}의 {ty} 상태가 정상으로 회복되었습니다."),
            }
        }
        _ if n.is_down() => {
            if en {
                format!("{name} is down (no metrics received).")
            } else {
                format!("{name}이 Down 되었습니다.")
            }
        }
        _ => match (n.threshold, usage) {
            (Some(thr), Some(u)) if en => {
                format!("{name}'s {ty} threshold [{thr:.0}]% exceeded, current usage [{u}]%.")
            }
            // the original's words (2.0; 4.0 wrote 임계치 for 사용량이)
            (Some(thr), Some(u)) => {
                format!(
                    "{name}의 {ty} 사용량이 [{thr:.0}]%를 초과했습니다. 현재 사용률 [{u}]% 입니다."
                )
            }
            _ => n.message.trim().to_string(),
        },
    }
}

/// One line on what kind of event this is; the first mail of an alarm needs none.
fn kind_note(n: &Notification) -> Option<String> {
    let en = is_english(n);
    let level = &n.level;
    match n.kind {
        NotificationKind::Opened => None,
        NotificationKind::Escalated if en => Some(format!("The alarm was escalated to {level}.")),
        NotificationKind::Escalated => Some(format!("알림 등급이 {level}(으)로 상향되었습니다.")),
        NotificationKind::SteppedDown if en => Some(format!(
            "The alarm stepped down to {level} and is still open."
        )),
        NotificationKind::SteppedDown => Some(format!(
            "알림 등급이 {level}(으)로 하향되었습니다. 아직 해결되지 않은 알림입니다."
        )),
        NotificationKind::Repeated if en => Some("Reminder: this alarm is still active.".into()),
        NotificationKind::Repeated => Some("재알림: 아직 해결되지 않은 알림입니다.".into()),
        NotificationKind::Recovered if en => Some(format!("The {level} alarm has recovered.")),
        NotificationKind::Recovered => Some(format!("{level} 알림이 정상으로 회복되었습니다.")),
    }
}

fn status_cell(n: &Notification, w: &Words) -> String {
    match n.kind {
        NotificationKind::Recovered => format!("{} ({})", w.recovered, n.level),
        _ => n.level.to_string(),
    }
}

/// A chart attached inline to the mail, as the HTML refers to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartRef {
    /// the image part's `Content-ID`, without the angle brackets
    pub content_id: String,
    pub width: u32,
    pub height: u32,
    /// the image's text for a client that shows no images
    pub alt: String,
}

impl ChartRef {
    /// `<img src="cid:...">` of the chart.
    pub fn img(&self, style: &str) -> String {
        format!(
            "<img src=\"cid:{}\" width=\"{}\" height=\"{}\" alt=\"{}\" style=\"{}\">",
            html_escape(&self.content_id),
            self.width,
            self.height,
            html_escape(&self.alt),
            html_escape(style)
        )
    }
}

/// The console's "silence this for 2 h" link and its label (the console enabled with a
/// `public_url`); none on a recovery, which there is nothing left to silence.
pub fn silence_link(n: &Notification) -> Option<(&'static str, String)> {
    if n.kind == NotificationKind::Recovered {
        return None;
    }
    let label = if is_english(n) {
        "silence this for 2 h"
    } else {
        "2시간 동안 알림 끄기 (silence this for 2 h)"
    };
    Some((label, n.silence_link()?))
}

#[cfg(test)]
mod silence_link_tests {
    use super::*;

    #[test]
    fn a_mail_links_the_filled_silence_form_only_with_the_console_on() {
        let offset = FixedOffset::east_opt(9 * 3600).unwrap();
        let mut n = monit_host::testing::vm_notification();
        let plain = render(&n, offset);
        assert!(!plain.text.contains("/ui/silences") && !plain.html.contains("/ui/silences"));
        n.console_url = Some("https://batch.example:9999/".into());
        n.target_name = "router/<0>".into();
        let m = render(&n, offset);
        let url = "https://batch.example:9999/ui/silences/new?match=vm%3Drouter%2F%3C0%3E\
                   &match=type%3Dcpu&for=2h&comment=silenced+from+the+mail+of+alarm+";
        assert!(
            m.text.contains(&format!("(silence this for 2 h): {url}")),
            "{}",
            m.text
        );
        assert!(
            m.html
                .contains(&format!("<a href=\"{}", url.replace('&', "&amp;"))),
            "{}",
            m.html
        );
        n.kind = NotificationKind::Recovered;
        assert!(!render(&n, offset).text.contains("/ui/silences"));
        n.kind = NotificationKind::Opened;
        n.console_url = Some("javascript:alert(1)".into());
        assert!(!render(&n, offset).html.contains("javascript:"));
    }
}

pub fn render(n: &Notification, offset: FixedOffset) -> RenderedMail {
    render_with_chart(n, offset, None)
}

/// [`render`] with a chart in the HTML part, below the message (the text part is the same).
pub fn render_with_chart(
    n: &Notification,
    offset: FixedOffset,
    chart: Option<&ChartRef>,
) -> RenderedMail {
    let w = if is_english(n) { &EN } else { &KO };
    let status = status_cell(n, w);
    let message = status_message(n);
    let note = kind_note(n);
    let server = n.server_name();
    let occurred = display_time(n.raised_at, offset);
    let elapsed = format!("{}{}", elapsed_minutes(n), w.minutes);
    let link = n.monitor_link();
    // The stored alarm_message carries what the short line leaves out (the cell, the IP…).
    let details = n.message.trim();
    let details = (!details.is_empty() && details != message).then_some(details);

    let mut text = String::new();
    let _ = writeln!(text, "{status} : {message}");
    if let Some(note) = &note {
        let _ = writeln!(text, "{note}");
    }
    text.push('\n');
    if let Some(url) = link {
        let _ = writeln!(text, "{}: {url}\n", w.button);
    }
    let silence = silence_link(n);
    if let Some((label, url)) = &silence {
        let _ = writeln!(text, "{label}: {url}\n");
    }
    let _ = writeln!(text, "[{}]", w.info);
    let _ = writeln!(text, "{}: {status}", w.status);
    let _ = writeln!(text, "{}: {server}", w.server);
    let _ = writeln!(text, "{}: {occurred}", w.occurred);
    let _ = writeln!(text, "{}: {elapsed}", w.elapsed);
    if let Some(d) = details {
        let _ = writeln!(text, "\n[{}]\n{d}", w.details);
    }
    let _ = writeln!(text, "\n{}", w.copyright);

    let e = html_escape;
    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>PaaS-TA Monitor</title>\n</head>\n");
    html.push_str("<body style=\"margin:0;padding:0;font-family:'Noto Sans',sans-serif;font-size:12px;color:#555;\">\n");
    html.push_str(
        "<div style=\"width:708px;padding:19px 30px;margin:0 auto;background:#f8f8f8;\">\n",
    );
    if let Some(url) = link {
        let base = url.trim_end_matches('/');
        let _ = writeln!(
            html,
            "<div style=\"padding-bottom:25px;\"><img src=\"{}\" alt=\"PaaS-TA Monitor\" style=\"border:0 none;width:279px;\"></div>",
            e(&format!("{base}/public/resources/img/email/logo.png"))
        );
    }
    html.push_str("<div style=\"padding:18px 18px 12px;border:1px solid #ddd;border-top:6px solid #007dc4;background:#fff;\">\n");
    let _ = writeln!(
        html,
        "<p style=\"font-size:15.5px;line-height:26px;color:#404040;text-align:center;\"><strong>{} : </strong>{}</p>",
        e(&status),
        html_lines(&message)
    );
    if let Some(note) = &note {
        let _ = writeln!(
            html,
            "<p style=\"text-align:center;color:#404040;\">{}</p>",
            e(note)
        );
    }
    if let Some(chart) = chart {
        let _ = writeln!(
            html,
            "<p style=\"text-align:center;margin:10px 0 14px;\">{}</p>",
            chart.img(
                "display:block;margin:0 auto;border:1px solid #ddd;max-width:100%;height:auto;"
            )
        );
    }
    if let Some(url) = link {
        let _ = writeln!(
            html,
            "<a href=\"{}\" style=\"display:block;padding:5px 12px;font-size:14px;color:#fff;text-align:center;border-radius:3px;background:#124379;font-weight:600;text-decoration:none;\">{}</a>",
            e(url),
            e(w.button)
        );
    }
    if let Some((label, url)) = &silence {
        let _ = writeln!(
            html,
            "<p style=\"text-align:center;\"><a href=\"{}\">{}</a></p>",
            e(url),
            e(label)
        );
    }
    let _ = writeln!(
        html,
        "<h3 style=\"font-size:15px;color:#555;font-weight:600;padding-top:35px;padding-bottom:6px;margin:0;\">{}</h3>",
        e(w.info)
    );
    html.push_str("<table style=\"text-align:left;border-top:3px solid #888;border-bottom:1px solid #bbb;width:100%;border-collapse:collapse;color:#404040;\">\n<tr>");
    for h in [w.status, w.server, w.occurred, w.elapsed] {
        let _ = write!(
            html,
            "<th style=\"background-color:#f5f5f5;padding:4px;\">{}</th>",
            e(h)
        );
    }
    html.push_str("</tr>\n<tr>");
    for v in [&status, &server, &occurred, &elapsed] {
        let _ = write!(html, "<td style=\"padding:8px 6px;\">{}</td>", e(v));
    }
    html.push_str("</tr>\n</table>\n");
    if let Some(d) = details {
        let _ = writeln!(
            html,
            "<h3 style=\"font-size:15px;color:#555;font-weight:600;padding-top:20px;padding-bottom:6px;margin:0;\">{}</h3>\n<p style=\"color:#404040;\">{}</p>",
            e(w.details),
            html_lines(d)
        );
    }
    html.push_str("</div>\n");
    let _ = writeln!(html, "<p style=\"color:#6f6f6f;\">{}</p>", e(w.copyright));
    html.push_str("</div>\n</body>\n</html>\n");

    RenderedMail {
        subject: subject(n),
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monit_host::model::Origin;

    fn notification() -> Notification {
        monit_host::testing::vm_notification()
    }

    fn kst() -> FixedOffset {
        FixedOffset::east_opt(9 * 3600).unwrap()
    }

    #[test]
    fn korean_opened_mail_keeps_the_original_layout() {
        let m = render(&notification(), kst());
        assert_eq!(m.subject, "[router_z1/0]의 cpu 상태 [warning]!");
        assert!(m.text.starts_with(
            "warning : router_z1/0의 cpu 사용량이 [85]%를 초과했습니다. 현재 사용률 [91.23]% 입니다.\n"
        ));
        assert!(
            m.text
                .contains("PaaS-Ta Monitor로 이동: http://monitor.example.org")
        );
        assert!(
            m.text
                .contains("발생 시간: 2024-05-01 18:30:00 (UTC+09:00)"),
            "{}",
            m.text
        );
        assert!(m.text.contains("경과 시간(분): 42(분)\n"), "{}", m.text);
        assert!(m.html.contains(">42(분)</td>"), "{}", m.html);
        assert!(m.html.contains("<a href=\"http://monitor.example.org\""));
        assert!(
            m.html
                .contains("<td style=\"padding:8px 6px;\">router_z1/0</td>")
        );
    }

    #[test]
    fn english_and_utc_display() {
        let mut n = notification();
        n.language = "en".into();
        let m = render(&n, FixedOffset::east_opt(0).unwrap());
        assert!(m.text.starts_with(
            "warning : router_z1/0's cpu threshold [85]% exceeded, current usage [91.23]%."
        ));
        assert!(
            m.text.contains("occurred at: 2024-05-01 09:30:00 (UTC)"),
            "{}",
            m.text
        );
        assert!(
            m.text
                .contains("go to PaaS-Ta Monitor: http://monitor.example.org")
        );
    }

    #[test]
    fn recovered_says_so_in_the_subject() {
        let mut n = notification();
        n.kind = NotificationKind::Recovered;
        n.value = Some(12.0);
        assert_eq!(subject(&n), "[회복] [router_z1/0]의 cpu 상태 [warning]");
        n.language = "en".into();
        let m = render(&n, kst());
        assert_eq!(m.subject, "[RECOVERED] [router_z1/0]의 cpu 상태 [warning]");
        assert!(
            m.text
                .starts_with("recovered (warning) : router_z1/0's cpu is back to normal")
        );
    }

    #[test]
    fn a_step_down_says_so_and_states_the_threshold_it_exceeds() {
        let mut n = notification();
        n.kind = NotificationKind::SteppedDown;
        n.level = monit_host::model::Level::Warning;
        n.threshold = Some(95.0);
        n.value = Some(97.03);
        let m = render(&n, kst());
        assert_eq!(m.subject, "[router_z1/0]의 cpu 상태 [warning]!");
        assert!(
            m.text.starts_with(
                "warning : router_z1/0의 cpu 사용량이 [95]%를 초과했습니다. 현재 사용률 [97.03]% 입니다.\n알림 등급이 warning(으)로 하향되었습니다."
            ),
            "{}",
            m.text
        );
        assert!(m.html.contains("하향되었습니다"), "{}", m.html);
        n.language = "en".into();
        assert!(
            render(&n, kst())
                .text
                .contains("The alarm stepped down to warning and is still open."),
        );
    }

    #[test]
    fn container_server_name_and_escaping() {
        let mut n = notification();
        n.origin = Origin::Con;
        n.app_name = Some("<b>x</b>\r\nBcc: a@b".into());
        n.app_index = Some(2);
        n.title = format!("{}[2] App 상태 Warning. ", n.app_name.as_deref().unwrap());
        let m = render(&n, kst());
        assert!(!m.subject.contains('\r') && !m.subject.contains('\n'));
        assert_eq!(m.subject, "<b>x</b>  Bcc: a@b[2] App 상태 Warning. !");
        assert!(!m.html.contains("<b>x</b>"));
        assert!(m.html.contains("&lt;b&gt;x&lt;/b&gt;"));
    }

    #[test]
    fn a_non_http_resource_url_is_not_linked() {
        let mut n = notification();
        n.resource_url = Some("javascript:alert(1)".into());
        let m = render(&n, kst());
        assert!(!m.html.contains("javascript:"));
        assert!(!m.html.contains("<a href"));
    }

    #[test]
    fn down_and_no_threshold_messages() {
        let mut n = notification();
        n.level = monit_host::model::Level::Fail;
        n.alarm_type = monit_host::model::AlarmType::Fail;
        assert!(
            render(&n, kst())
                .text
                .starts_with("fail : router_z1/0이 Down 되었습니다.")
        );
        let mut n = notification();
        n.threshold = None;
        n.message = "stored message".into();
        assert!(
            render(&n, kst())
                .text
                .starts_with("warning : stored message\n")
        );
    }
}
