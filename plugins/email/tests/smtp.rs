//! The email notifier against the real aiosmtpd sinks of scripts/services.sh: plain on 2525,
//! STARTTLS on 2526, implicit TLS on 2527, each writing a Maildir. Tests run in parallel on the
//! shared sinks, so each finds its own mail by a unique marker in the recipient address.

use chrono::{TimeDelta, Utc};
use mail_parser::MessageParser;
use monit_host::config::secret::Secret;
use monit_host::model::Origin;
use monit_host::plugin::{Delivery, Notification, NotificationKind, deliver_all};
use monit_plugin_email::{EmailConfig, EmailNotifier, Security};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const SENDER: &str = "PaaS-TA Monitor <monit-batch@example.org>";

fn sink_host() -> String {
    std::env::var("MONIT_TEST_SMTP_HOST").unwrap_or_else(|_| "127.0.0.1".into())
}

fn sink_dir(kind: &str) -> PathBuf {
    let root =
        std::env::var("MONIT_TEST_SMTP_SINK").unwrap_or_else(|_| "/var/tmp/smtp-sink".into());
    Path::new(&root).join(kind).join("new")
}

fn ca_pem() -> PathBuf {
    let pki = std::env::var("MONIT_PKI").unwrap_or_else(|_| "/var/tmp/ci-pki".into());
    Path::new(&pki).join("ca.pem")
}

/// Unique per call across parallel tests and repeated runs.
fn marker(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{test}-{}-{}-{}",
        std::process::id(),
        Utc::now().timestamp_micros(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn config(port: u16, security: Security) -> EmailConfig {
    let mut c = EmailConfig::new(sink_host(), SENDER);
    c.smtp_port = Some(port);
    c.security = security;
    c.timeout_seconds = 10;
    c
}

/// A `pas` warning whose target name and first recipient carry the marker.
fn notification(marker: &str) -> Notification {
    let raised = Utc::now() - TimeDelta::minutes(17) - TimeDelta::seconds(5);
    let target = format!("vm-{marker}");
    Notification {
        alarm_id: 10,
        target_name: target.clone(),
        value: Some(91.5),
        title: format!("[{target}]의 cpu 상태 [warning]"),
        message: format!(
            "[{target}]의 cpu 상태 [warning]\ncpu 임계치 85% 초과.\n현재 사용률 [91.50]%"
        ),
        raised_at: raised,
        event_at: raised + TimeDelta::minutes(17) + TimeDelta::seconds(5),
        recipients: vec![format!("to-{marker}@example.org")],
        resource_url: Some("https://monitor.example.org/".into()),
        ..monit_host::testing::vm_notification()
    }
}

/// The raw mail in `dir` that mentions `marker`; waits a little, as the sink writes it while
/// answering DATA.
fn find_mail(dir: &Path, marker: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if let Ok(bytes) = std::fs::read(e.path())
                    && bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
                {
                    return bytes;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no mail mentioning {marker} in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn header_block(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    text.split("\n\n").next().unwrap().to_string()
}

/// Header names at the start of a line, unfolded.
fn header_names(raw: &[u8]) -> Vec<String> {
    header_block(raw)
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('\t'))
        .filter_map(|l| l.split_once(':').map(|(k, _)| k.to_ascii_lowercase()))
        .collect()
}

async fn send(notifier: &EmailNotifier, batch: &[Notification]) -> Vec<anyhow::Result<()>> {
    deliver_all(notifier, batch)
        .await
        .into_iter()
        .map(Delivery::into_result)
        .collect()
}

fn assert_all_ok(results: &[anyhow::Result<()>]) {
    for (i, r) in results.iter().enumerate() {
        if let Err(e) = r {
            panic!("notification {i} failed: {e:#}");
        }
    }
}

#[tokio::test]
async fn plain_mail_has_headers_both_parts_the_link_and_every_recipient() {
    let m = marker("plain");
    let mut n = notification(&m);
    n.recipients = vec![
        format!("to-{m}@example.org"),
        "second@example.org".into(),
        " third@example.org ".into(),
        // a duplicate in other capitals is sent once
        format!("TO-{m}@EXAMPLE.ORG"),
    ];
    let notifier = EmailNotifier::new(config(2525, Security::Plain)).unwrap();
    let before = Utc::now();
    assert_all_ok(&send(&notifier, std::slice::from_ref(&n)).await);

    let raw = find_mail(&sink_dir("plain"), &m);
    let mail = MessageParser::default().parse(&raw).unwrap();

    let from = mail.from().unwrap().first().unwrap();
    assert_eq!(from.address(), Some("monit-batch@example.org"));
    assert_eq!(from.name(), Some("PaaS-TA Monitor"));
    let to: Vec<_> = mail
        .to()
        .unwrap()
        .iter()
        .filter_map(|a| a.address())
        .map(str::to_string)
        .collect();
    assert_eq!(
        to,
        vec![
            format!("to-{m}@example.org"),
            "second@example.org".into(),
            "third@example.org".into()
        ]
    );
    // the envelope, as the sink saw it
    let rcpt = mail.header_raw("X-RcptTo").unwrap().trim().to_string();
    assert_eq!(
        rcpt,
        format!("to-{m}@example.org, second@example.org, third@example.org")
    );

    // Korean subject: RFC 2047 on the wire, the original's title + "!" once decoded
    let names = header_names(&raw);
    assert!(
        names.contains(&"subject".to_string()) && names.contains(&"date".to_string()),
        "{names:?}"
    );
    assert!(
        header_block(&raw).is_ascii(),
        "raw headers must be ASCII (RFC 2047)"
    );
    assert_eq!(
        mail.subject(),
        Some(format!("[vm-{m}]의 cpu 상태 [warning]!").as_str())
    );
    let date = mail.date().unwrap().to_timestamp();
    assert!(
        (date - before.timestamp()).abs() < 120,
        "Date header {date} far from {before}"
    );
    assert!(mail.message_id().is_some());

    assert_eq!(mail.text_body_count(), 1);
    assert_eq!(mail.html_body_count(), 1);
    let text = mail.body_text(0).unwrap();
    let html = mail.body_html(0).unwrap();
    assert!(
        text.starts_with(&format!(
            "warning : vm-{m}의 cpu 사용량이 [85]%를 초과했습니다. 현재 사용률 [91.50]% 입니다."
        )),
        "{text}"
    );
    assert!(
        text.contains("PaaS-Ta Monitor로 이동: https://monitor.example.org/"),
        "{text}"
    );
    assert!(text.contains("경과 시간(분): 17(분)"), "{text}");
    assert!(text.contains("(UTC+09:00)"), "{text}");
    assert!(
        html.contains("<a href=\"https://monitor.example.org/\""),
        "{html}"
    );
    assert!(html.contains("PaaS-Ta Monitor로 이동"), "{html}");
    for th in ["상태", "서버 이름", "발생 시간", "경과 시간(분)"] {
        assert!(
            html.contains(&format!(">{th}</th>")),
            "missing column {th}: {html}"
        );
    }
    assert!(
        html.contains(&format!("<td style=\"padding:8px 6px;\">vm-{m}</td>")),
        "{html}"
    );
    assert!(
        html.contains("<td style=\"padding:8px 6px;\">17(분)</td>"),
        "{html}"
    );
}

#[tokio::test]
async fn an_app_name_cannot_inject_markup_or_a_header() {
    let m = marker("inject");
    let evil = "<script>alert(1)</script>\r\nBcc: x@y";
    let mut n = notification(&m);
    n.origin = Origin::Con;
    n.app_name = Some(evil.into());
    n.app_index = Some(3);
    n.cell_name = Some("cell_z1/0".into());
    n.title = format!("{evil}[3] App 상태 Warning. ");
    n.message = format!("App상태:Warning. {evil}[3], CellName:[cell_z1/0], cpu 상태 warning.");
    let notifier = EmailNotifier::new(config(2525, Security::Plain)).unwrap();
    assert_all_ok(&send(&notifier, &[n]).await);

    let raw = find_mail(&sink_dir("plain"), &m);
    let names = header_names(&raw);
    assert!(
        !names.contains(&"bcc".to_string()),
        "a Bcc header was injected: {names:?}"
    );
    let mail = MessageParser::default().parse(&raw).unwrap();
    assert!(mail.bcc().is_none());
    assert_eq!(
        mail.header_raw("X-RcptTo").unwrap().trim(),
        format!("to-{m}@example.org")
    );
    let subject = mail.subject().unwrap();
    assert!(
        !subject.contains('\r') && !subject.contains('\n'),
        "{subject:?}"
    );
    assert!(
        subject.starts_with("<script>alert(1)</script>  Bcc: x@y[3] App 상태 Warning."),
        "{subject:?}"
    );

    let html = mail.body_html(0).unwrap();
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    // the server name column is app[index], escaped
    assert!(
        html.contains("<td style=\"padding:8px 6px;\">&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
}

#[tokio::test]
async fn a_batch_of_three_goes_over_one_connection() {
    let notifier = EmailNotifier::new(config(2525, Security::Plain)).unwrap();
    let markers: Vec<String> = (0..3).map(|i| marker(&format!("batch{i}"))).collect();
    let batch: Vec<Notification> = markers.iter().map(|m| notification(m)).collect();
    let results = send(&notifier, &batch).await;
    assert_eq!(results.len(), 3);
    assert_all_ok(&results);
    assert_eq!(notifier.connections_opened(), 1);

    // aiosmtpd stamps each mail with the client's address and port (X-Peer): one connection
    // means one source port for all three.
    let peer = |m: &str| {
        let raw = find_mail(&sink_dir("plain"), m);
        let mail = MessageParser::default().parse(&raw).unwrap();
        mail.header_raw("X-Peer").unwrap().trim().to_string()
    };
    let peers: Vec<String> = markers.iter().map(|m| peer(m)).collect();
    assert!(peers[0].contains("127.0.0.1"), "{peers:?}");
    assert_eq!(peers[0], peers[1], "{peers:?}");
    assert_eq!(peers[0], peers[2], "{peers:?}");

    // ...and a second send() is a second connection, from another port.
    let later = marker("batch-later");
    assert_all_ok(&send(&notifier, &[notification(&later)]).await);
    assert_eq!(notifier.connections_opened(), 2);
    assert_ne!(peer(&later), peers[0]);
}

/// lettre writes a mail's body and its closing `.` separately; with Nagle on, each mail waited
/// ~40 ms for the server's delayed ACK. The notifier opens the socket itself with TCP_NODELAY.
#[tokio::test]
async fn a_batch_of_twenty_goes_over_one_connection_with_nagle_off() {
    let notifier = EmailNotifier::new(config(2525, Security::Plain)).unwrap();
    let markers: Vec<String> = (0..20).map(|i| marker(&format!("nodelay{i}"))).collect();
    let batch: Vec<Notification> = markers.iter().map(|m| notification(m)).collect();
    let results = send(&notifier, &batch).await;
    assert_eq!(results.len(), 20);
    assert_all_ok(&results);
    assert_eq!(notifier.connections_opened(), 1);
    assert_eq!(notifier.nodelay_connections(), 1);
    for m in &markers {
        find_mail(&sink_dir("plain"), m);
    }
}

#[tokio::test]
async fn a_notification_without_recipients_fails_alone() {
    let (a, b) = (marker("norcpt-a"), marker("norcpt-b"));
    let mut none = notification(&marker("norcpt-none"));
    none.origin = Origin::Con;
    none.recipients = vec![];
    let mut invalid = notification(&marker("norcpt-invalid"));
    invalid.recipients = vec!["not an address".into(), "".into()];
    let notifier = EmailNotifier::new(config(2525, Security::Plain)).unwrap();
    let results = send(
        &notifier,
        &[notification(&a), none, invalid, notification(&b)],
    )
    .await;
    assert_eq!(results.len(), 4);
    assert!(results[0].is_ok() && results[3].is_ok(), "{results:?}");
    let e = format!("{:#}", results[1].as_ref().unwrap_err());
    assert!(e.contains("add alarm_targets rows for origin con"), "{e}");
    let e = format!("{:#}", results[2].as_ref().unwrap_err());
    assert!(
        e.contains("not an address") && e.contains("alarm_targets"),
        "{e}"
    );
    find_mail(&sink_dir("plain"), &a);
    find_mail(&sink_dir("plain"), &b);
    assert_eq!(notifier.connections_opened(), 1);
}

#[tokio::test]
async fn starttls_with_the_private_ca() {
    let m = marker("starttls");
    let mut c = config(2526, Security::Starttls);
    c.ca_file = Some(ca_pem());
    let notifier = EmailNotifier::new(c).unwrap();
    let mut n = notification(&m);
    n.kind = NotificationKind::Escalated;
    n.level = monit_host::model::Level::Critical;
    n.title = format!("[vm-{m}]의 cpu 상태 [critical]");
    assert_all_ok(&send(&notifier, &[n]).await);
    // the socket under the STARTTLS upgrade is ours too
    assert_eq!(notifier.connections_opened(), 1);
    assert_eq!(notifier.nodelay_connections(), 1);
    let raw = find_mail(&sink_dir("tls"), &m);
    let mail = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        mail.subject(),
        Some(format!("[vm-{m}]의 cpu 상태 [critical]!").as_str())
    );
    let text = mail.body_text(0).unwrap();
    assert!(text.contains("critical(으)로 상향"), "{text}");
}

#[tokio::test]
async fn implicit_tls_on_the_smtps_port() {
    let m = marker("smtps");
    let mut c = config(2527, Security::Tls);
    c.ca_file = Some(ca_pem());
    c.display_utc_offset_hours = 0.0;
    let notifier = EmailNotifier::new(c).unwrap();
    let mut n = notification(&m);
    n.kind = NotificationKind::Recovered;
    n.language = "en".into();
    n.value = Some(12.0);
    assert_all_ok(&send(&notifier, &[n]).await);
    assert_eq!(notifier.connections_opened(), 1);
    assert_eq!(notifier.nodelay_connections(), 1);
    let raw = find_mail(&sink_dir("smtps"), &m);
    let mail = MessageParser::default().parse(&raw).unwrap();
    let subject = mail.subject().unwrap();
    assert!(subject.starts_with("[RECOVERED] "), "{subject}");
    let text = mail.body_text(0).unwrap();
    assert!(
        text.starts_with(&format!(
            "recovered (warning) : vm-{m}'s cpu is back to normal"
        )),
        "{text}"
    );
    assert!(
        text.contains("occurred at: ") && text.contains(" (UTC)\n"),
        "{text}"
    );
    assert!(
        text.contains("go to PaaS-Ta Monitor: https://monitor.example.org/"),
        "{text}"
    );
}

#[tokio::test]
async fn a_closed_port_fails_every_notification_naming_the_server() {
    let mut c = EmailConfig::new("127.0.0.1", SENDER);
    c.smtp_port = Some(1);
    c.security = Security::Plain;
    let notifier = EmailNotifier::new(c).unwrap();
    let batch: Vec<_> = (0..3)
        .map(|i| notification(&marker(&format!("closed{i}"))))
        .collect();
    let results = send(&notifier, &batch).await;
    assert_eq!(results.len(), 3);
    for r in &results {
        let e = format!("{:#}", r.as_ref().unwrap_err());
        assert!(e.contains("127.0.0.1:1"), "{e}");
        assert!(e.contains("cannot connect"), "{e}");
    }
    // the server is not tried again for each mail
    assert_eq!(notifier.connections_opened(), 1);
}

#[tokio::test]
async fn a_wrong_ca_fails_tls_with_a_clear_error() {
    let wrong = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wrong-ca.pem");
    let mut c = config(2527, Security::Tls);
    c.ca_file = Some(wrong);
    let notifier = EmailNotifier::new(c).unwrap();
    let results = send(&notifier, &[notification(&marker("wrongca"))]).await;
    let e = format!("{:#}", results[0].as_ref().unwrap_err());
    assert!(e.contains("127.0.0.1:2527"), "{e}");
    assert!(e.contains("UnknownIssuer"), "{e}");
    assert!(e.contains("plugins.email.ca_file"), "{e}");

    // STARTTLS without the private CA: the built-in roots do not trust the test CA either
    let notifier = EmailNotifier::new(config(2526, Security::Starttls)).unwrap();
    let results = send(&notifier, &[notification(&marker("noca"))]).await;
    let e = format!("{:#}", results[0].as_ref().unwrap_err());
    assert!(
        e.contains("127.0.0.1:2526") && e.contains("STARTTLS failed"),
        "{e}"
    );
    assert!(
        e.contains("UnknownIssuer") && e.contains("needs plugins.email.ca_file"),
        "{e}"
    );
}

#[tokio::test]
async fn plain_text_to_a_starttls_only_server_is_refused() {
    let notifier = EmailNotifier::new(config(2526, Security::Plain)).unwrap();
    let results = send(&notifier, &[notification(&marker("needtls"))]).await;
    let e = format!("{:#}", results[0].as_ref().unwrap_err());
    assert!(e.contains("127.0.0.1:2526") && e.contains("530"), "{e}");
}

/// Starts tests/auth_sink.py (aiosmtpd requiring AUTH) on a free port.
async fn auth_sink(maildir: &Path, user: &str, password: &str) -> (tokio::process::Child, u16) {
    use tokio::io::AsyncBufReadExt as _;
    // Python's Maildir creates its subfolders only when the folder itself is new.
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/auth_sink.py");
    let mut child = tokio::process::Command::new("/usr/bin/python3")
        .arg(script)
        .arg(port.to_string())
        .arg(maildir)
        .arg(user)
        .arg(password)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.as_deref(), Some("ready"));
    (child, port)
}

#[tokio::test]
async fn auth_uses_the_sender_as_user_and_keeps_the_password_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = auth_sink(dir.path(), "monit-batch@example.org", "s3cret-pw").await;

    let m = marker("auth");
    let mut c = config(port, Security::Plain);
    c.password = Secret::new("s3cret-pw");
    let notifier = EmailNotifier::new(c).unwrap();
    assert!(!format!("{notifier:?}").contains("s3cret-pw"));
    assert_all_ok(&send(&notifier, &[notification(&m)]).await);
    find_mail(&dir.path().join("new"), &m);

    let mut c = config(port, Security::Plain);
    c.password = Secret::new("wrong-pw-123");
    let notifier = EmailNotifier::new(c).unwrap();
    let results = send(&notifier, &[notification(&marker("badauth"))]).await;
    let e = format!("{:#}", results[0].as_ref().unwrap_err());
    assert!(
        e.contains("AUTH as \"monit-batch@example.org\" failed"),
        "{e}"
    );
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(!e.contains("wrong-pw-123"), "{e}");

    // without a password there is no AUTH, and this server insists on it
    let notifier = EmailNotifier::new(config(port, Security::Plain)).unwrap();
    let results = send(&notifier, &[notification(&marker("noauth"))]).await;
    assert!(results[0].is_err());
}

#[tokio::test]
async fn a_silent_server_times_out_as_configured() {
    // Accepts TCP and never says a word: no SMTP greeting ever comes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut c = config(port, Security::Plain);
    c.timeout_seconds = 1;
    let notifier = EmailNotifier::new(c).unwrap();
    let started = Instant::now();
    let results = send(
        &notifier,
        &[
            notification(&marker("silent")),
            notification(&marker("silent")),
        ],
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    for r in &results {
        let e = format!("{:#}", r.as_ref().unwrap_err());
        assert!(
            e.contains(&format!("127.0.0.1:{port}")) && e.contains("timed out after 1 s"),
            "{e}"
        );
    }
    drop(listener);
}
