//! A chart in every alarm mail, end to end through the binary against the real MariaDB,
//! InfluxDB (or VictoriaMetrics' Prometheus API) and SMTP sink: the mail has an inline PNG
//! (`Content-ID`) beside its HTML part, which shows it with `<img src="cid:...">`; the text
//! part is the same as without; a digest has a small one for each of its first alarms; one
//! history query per batch. `plugins.email.charts = false`: no image, no query. The store
//! unreachable for the chart: the mail goes without it and the log says why.

mod common;

use common::{TestEnv, mails_with, now_s, unique};
use mail_parser::{MessageParser, MimeHeaders, PartType};
use monit_plugin_email::chart::{BREACH_COLOUR, CRITICAL_COLOUR, MEAN_COLOUR, WARNING_COLOUR};
use monit_testkit::{victoria_metrics_url, write_victoria_metrics};

type Rgb = [u8; 3];

/// One of the renderer's colours as an RGB triple.
macro_rules! rgb_of {
    ($c:expr) => {
        [$c.0, $c.1, $c.2]
    };
}

fn email(port: u16, charts: bool) -> String {
    format!(
        "[plugins.email]\nenabled = true\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\n\
         security = \"plain\"\nsender = \"PaaS-TA Monitor <monit@example.com>\"\ntimeout_seconds = 5\n\
         charts = {charts}\n"
    )
}

/// An environment mailing every origin's alarms to one unique address (returned), with the
/// policies at warning 85, critical 90 over 240 s.
async fn env(tag: &str, extra: &str) -> (TestEnv, String) {
    let env = TestEnv::new(tag, extra).await;
    let ops = format!("{}@example.com", unique(tag));
    env.exec(&format!(
        "DELETE FROM alarm_targets; INSERT INTO alarm_targets (origin_type, mail_address, mail_send_yn) VALUES \
         ('pas', '{ops}', 'Y'), ('con', '{ops}', 'Y'), ('bos', '{ops}', 'Y'); \
         UPDATE alarm_policies SET measure_time = 240, warning_threshold = 85, critical_threshold = 90, repeat_time = 10;"
    ))
    .await;
    (env, ops)
}

/// An hour of one VM's cf_metrics, every 30 s: CPU at 40 % until 10 minutes ago, then
/// `cpu`; memory and disk at 40 %.
fn hour_of(ip: &str, now: i64, cpu: f64) -> String {
    let mut out = String::new();
    let mut t = now - 3600;
    while t <= now {
        let c = if t < now - 600 { 40.0 } else { cpu };
        for (metric, v) in [
            ("cpuStats.0", c),
            ("cpuStats.1", c),
            ("memoryStats.UsedPercent", 40.0),
            ("diskStats.Usage", 40.0),
        ] {
            out.push_str(&format!(
                "cf_metrics,eventtype=ValueMetric,index=0,ip={ip},job=cell,metricname={metric},origin=rep,zone=z1 delta=0,total=0,value={v} {t}\n"
            ));
        }
        t += 30;
    }
    out
}

/// The MIME tree of a mail: `multipart/alternative[text/plain, multipart/related[...]]`.
fn tree(m: &mail_parser::Message<'_>) -> String {
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
    walk(m, 0)
}

/// Every inline PNG of a mail: its Content-ID and its decoded (width, height, RGB).
fn charts(m: &mail_parser::Message<'_>) -> Vec<(String, u32, u32, Vec<u8>)> {
    m.parts
        .iter()
        .filter(|p| p.is_content_type("image", "png"))
        .map(|p| {
            let disposition = p.content_disposition().map(|d| d.ctype().to_string());
            assert_eq!(disposition.as_deref(), Some("inline"));
            let mut reader = png::Decoder::new(std::io::Cursor::new(p.contents().to_vec()))
                .read_info()
                .unwrap();
            let mut buf = vec![0; reader.output_buffer_size().unwrap()];
            let info = reader.next_frame(&mut buf).unwrap();
            buf.truncate(info.buffer_size());
            (
                p.content_id().unwrap_or_default().to_string(),
                info.width,
                info.height,
                buf,
            )
        })
        .collect()
}

fn pixels_of(rgb: &[u8], c: Rgb) -> usize {
    rgb.chunks(3).filter(|p| *p == c).count()
}

fn summary(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "summary: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
                .chars()
                .take(500)
                .collect::<String>()
        )
    })
}

/// One alarm mail to `ops`, parsed.
fn the_mail(ops: &str) -> String {
    let mails = mails_with("plain", ops);
    assert_eq!(mails.len(), 1, "one mail to {ops}");
    mails.into_iter().next().unwrap()
}

#[tokio::test]
async fn an_alarm_mail_shows_the_reading_over_the_last_hour_inline() {
    let (env, ops) = env(
        "chart_mail",
        &format!("[plugins.paasta]\nenabled = true\n{}", email(2525, true)),
    )
    .await;
    env.add_vm("router_z1/0", "10.0.30.1", "vms").await;
    // another VM, not alarmed: its series are not read for the chart
    env.add_vm("router_z1/1", "10.0.30.2", "vms").await;
    let now = now_s();
    env.write_points(
        &env.cf_db,
        &(hour_of("10.0.30.1", now, 97.0) + &hour_of("10.0.30.2", now, 50.0)),
    )
    .await;
    let out = env.run(&["run", "--once", "--json"]);
    assert!(out.status.success());
    let sum = summary(&out);
    assert_eq!(sum["alarms"]["opened"], 1, "{sum}");
    assert_eq!(
        sum["notifications"]["history_queries"], 1,
        "one history query for the batch: {sum}"
    );
    assert_eq!(
        sum["influx_queries"], 3,
        "the readings' own count (one query per resource) stays theirs: {sum}"
    );
    let raw = the_mail(&ops);
    let m = MessageParser::default().parse(raw.as_bytes()).unwrap();
    assert_eq!(
        tree(&m),
        "multipart/alternative[text/plain, multipart/related[text/html, image/png]]"
    );
    let imgs = charts(&m);
    assert_eq!(imgs.len(), 1);
    let (cid, w, h, rgb) = &imgs[0];
    assert_eq!((*w, *h), (600, 240));
    let alarm_id = env
        .scalar_i64("SELECT CAST(MAX(id) AS SIGNED) FROM alarms")
        .await;
    assert!(
        cid.starts_with("chart.") && cid.ends_with(&format!(".{alarm_id}@monit-batch")),
        "{cid}"
    );
    let html = m.body_html(0).unwrap();
    assert!(html.contains(&format!("src=\"cid:{cid}\"")), "{html}");
    // what the chart shows: both thresholds, the breach shaded, the reading's line
    for (what, colour, least) in [
        ("critical line", rgb_of!(CRITICAL_COLOUR), 300),
        ("warning line", rgb_of!(WARNING_COLOUR), 300),
        ("breach shade", rgb_of!(BREACH_COLOUR), 2000),
        ("mean", rgb_of!(MEAN_COLOUR), 300),
    ] {
        let n = pixels_of(rgb, colour);
        assert!(n >= least, "{what}: {n} pixels");
    }
    // the text part is what it was before charts
    let text = m.body_text(0).unwrap();
    assert!(
        text.starts_with("critical : router_z1/0의 cpu 사용량이 [90]%를 초과했습니다."),
        "{text}"
    );
    assert!(!text.contains("cid:") && !text.contains("chart"), "{text}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("without its chart"), "{log}");
    env.cleanup().await;
}

#[tokio::test]
async fn with_charts_off_the_mail_has_no_image_and_nothing_is_read() {
    let (env, ops) = env(
        "chart_off",
        &format!("[plugins.paasta]\nenabled = true\n{}", email(2525, false)),
    )
    .await;
    env.add_vm("router_z1/0", "10.0.31.1", "vms").await;
    env.write_points(&env.cf_db, &hour_of("10.0.31.1", now_s(), 97.0))
        .await;
    let out = env.run(&["run", "--once", "--json"]);
    assert!(out.status.success());
    let sum = summary(&out);
    assert_eq!(sum["alarms"]["opened"], 1, "{sum}");
    assert_eq!(sum["notifications"]["history_queries"], 0, "{sum}");
    let raw = the_mail(&ops);
    let m = MessageParser::default().parse(raw.as_bytes()).unwrap();
    assert_eq!(tree(&m), "multipart/alternative[text/plain, text/html]");
    assert!(charts(&m).is_empty());
    assert!(!m.body_html(0).unwrap().contains("cid:"));
    env.cleanup().await;
}

/// The store away when the mail goes out (the first try found the SMTP server down; by the
/// next tick the metric store is unreachable): the mail goes without its chart, and a warning
/// names the alarm and why.
#[tokio::test]
async fn the_store_unreachable_for_the_chart_the_mail_goes_without_it_and_the_log_says_why() {
    let closed = common::free_port();
    let (env, ops) = env(
        "chart_nostore",
        &format!("[plugins.paasta]\nenabled = true\n{}", email(closed, true)),
    )
    .await;
    env.add_vm("router_z1/0", "10.0.32.1", "vms").await;
    env.write_points(&env.cf_db, &hour_of("10.0.32.1", now_s(), 97.0))
        .await;
    env.run_once();
    assert!(
        mails_with("plain", &ops).is_empty(),
        "the SMTP server was down"
    );
    let pending = env
        .scalar_i64("SELECT COUNT(*) FROM batch_notifications WHERE status = 'pending'")
        .await;
    assert_eq!(pending, 1);
    // the SMTP server back, the metric store gone
    let dead_store = format!("http://127.0.0.1:{}", common::free_port());
    let cfg = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(&format!("smtp_port = {closed}"), "smtp_port = 2525")
        .replace(
            &format!("url = \"{}\"", env.influx),
            &format!("url = \"{dead_store}\""),
        );
    assert!(cfg.contains(&dead_store), "{cfg}");
    std::fs::write(&env.config, cfg).unwrap();
    let out = env.run_once();
    let raw = the_mail(&ops);
    let m = MessageParser::default().parse(raw.as_bytes()).unwrap();
    assert_eq!(tree(&m), "multipart/alternative[text/plain, text/html]");
    assert!(m.body_text(0).unwrap().contains("router_z1/0"));
    let alarm_id = env
        .scalar_i64("SELECT CAST(MAX(id) AS SIGNED) FROM alarms")
        .await;
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("without its chart"))
        .unwrap_or_else(|| panic!("no warning about the chart: {log}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&format!("alarm_id={alarm_id}")), "{line}");
    assert!(
        line.contains(&dead_store),
        "the reason names the store: {line}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_digest_has_a_small_chart_for_each_of_its_first_ten_alarms_from_one_query() {
    let (env, ops) = env(
        "chart_digest",
        &format!("[plugins.paasta]\nenabled = true\n{}", email(2525, true)),
    )
    .await;
    let now = now_s();
    let mut lines = String::new();
    for i in 0..12 {
        let ip = format!("10.0.33.{}", i + 1);
        env.add_vm(&format!("router_z1/{i}"), &ip, "vms").await;
        lines += &hour_of(&ip, now, 97.0);
    }
    env.write_points(&env.cf_db, &lines).await;
    let out = env.run(&["run", "--once", "--json"]);
    assert!(out.status.success());
    let sum = summary(&out);
    assert_eq!(sum["alarms"]["opened"], 12, "{sum}");
    assert_eq!(sum["notifications"]["digests"], 1, "{sum}");
    assert_eq!(
        sum["notifications"]["history_queries"], 1,
        "ten alarms' history in one query: {sum}"
    );
    let raw = the_mail(&ops);
    let m = MessageParser::default().parse(raw.as_bytes()).unwrap();
    let imgs = charts(&m);
    assert_eq!(imgs.len(), 10, "at most ten charts in a digest");
    let html = m.body_html(0).unwrap();
    for (cid, w, h, _) in &imgs {
        assert_eq!((*w, *h), (400, 160));
        assert!(html.contains(&format!("src=\"cid:{cid}\"")), "{cid}");
    }
    assert!(raw.len() < 400_000, "a bounded mail: {} bytes", raw.len());
    env.cleanup().await;
}

#[tokio::test]
async fn the_chart_is_read_from_a_prometheus_api_store_too() {
    let vm_url = victoria_metrics_url();
    let (env, ops) = env(
        "chart_prom",
        &format!(
            "[plugins.paasta]\nenabled = true\n{}[metrics]\nbackend = \"prometheus\"\n[prometheus]\nurl = \"{vm_url}\"\n",
            email(2525, true)
        ),
    )
    .await;
    env.add_vm("router_z1/0", "10.0.34.1", "vms").await;
    env.add_vm("router_z1/1", "10.0.34.2", "vms").await;
    let now = now_s();
    write_victoria_metrics(
        &vm_url,
        &env.cf_db,
        &(hour_of("10.0.34.1", now, 97.0) + &hour_of("10.0.34.2", now, 50.0)),
    )
    .await;
    let out = env.run(&["run", "--once", "--json"]);
    assert!(out.status.success());
    let sum = summary(&out);
    assert_eq!(sum["metric_store"], "prometheus", "{sum}");
    assert_eq!(sum["alarms"]["opened"], 1, "{sum}");
    assert_eq!(sum["notifications"]["history_queries"], 1, "{sum}");
    let raw = the_mail(&ops);
    let m = MessageParser::default().parse(raw.as_bytes()).unwrap();
    let imgs = charts(&m);
    assert_eq!(imgs.len(), 1, "{}", tree(&m));
    let (cid, w, h, rgb) = &imgs[0];
    assert_eq!((*w, *h), (600, 240));
    assert!(
        m.body_html(0)
            .unwrap()
            .contains(&format!("src=\"cid:{cid}\""))
    );
    assert!(pixels_of(rgb, rgb_of!(MEAN_COLOUR)) >= 300);
    assert!(pixels_of(rgb, rgb_of!(BREACH_COLOUR)) >= 2000);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("without its chart"), "{log}");
    env.cleanup().await;
}
