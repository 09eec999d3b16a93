//! The operator console, end to end in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven through WebDriver) against the real binary (`monit-batch run` with
//! its HTTP port), MariaDB, InfluxDB and the SMTP sink: log in, retry a parked notification,
//! open the "silence this for 2 h" link of the real alarm mail, see the next tick hold the
//! alarm, expire the silence; an XSS attempt stays text; a post without the CSRF token and a
//! viewer's post are refused. Each page is saved as a PNG in docs/console/ (shown in README.md).
//! And with the console off: no `/ui/`, no link in mails.

mod common;

use common::{TestEnv, free_port, mails_with, now_s, unique, vm_points, wait_port};
use fantoccini::{Client, ClientBuilder, Locator};
use mail_parser::MessageParser;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OPERATOR: (&str, &str) = ("olive", "correct horse battery");
const VIEWER: (&str, &str) = ("vera", "viewer pass phrase");
const XSS: &str = "<img src=x onerror=alert(1)><script>alert(2)</script>";

/// A child process ended (by its pid) when the test ends, passed or not.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hash(password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .args(["console", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{password}").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let h = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(h.starts_with("$argon2id$"), "{h}");
    assert!(!h.contains(password));
    h
}

/// The environment: paasta and e-mail on, `[server]` on `port`, and `console` (a TOML block)
/// appended. Mails of every origin go to `targets`.
async fn env(tag: &str, port: u16, console: &str, targets: &str) -> TestEnv {
    let email = "[plugins.paasta]\nenabled = true\n[plugins.email]\nenabled = true\nsmtp_host = \"127.0.0.1\"\n\
                 smtp_port = 2525\nsecurity = \"plain\"\nsender = \"PaaS-TA Monitor <monit@example.com>\"\ntimeout_seconds = 5\n";
    let env = TestEnv::new(tag, &format!("{email}{console}")).await;
    let cfg = std::fs::read_to_string(&env.config).unwrap().replace(
        "[server]\nenabled = false\n",
        &format!("[server]\nenabled = true\nbind = \"127.0.0.1\"\nport = {port}\n"),
    );
    std::fs::write(&env.config, cfg).unwrap();
    env.exec(&format!(
        "DELETE FROM alarm_targets; INSERT INTO alarm_targets (origin_type, mail_address, mail_send_yn) VALUES \
         ('pas', '{targets}', 'Y'); \
         UPDATE alarm_policies SET measure_time = 240, warning_threshold = 85, critical_threshold = 90, repeat_time = 10;"
    ))
    .await;
    env
}

fn start(env: &TestEnv, port: u16) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .arg("--config")
        .arg(&env.config)
        .arg("run")
        .env_remove("PORT")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let p = Proc(child);
    wait_port(port, true);
    p
}

/// Polls `f` every 250 ms until it gives a value, for at most `secs` seconds.
async fn until<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn chromium() -> (Proc, Client) {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver: scripts/services.sh installs it)");
    let driver = Proc(driver);
    wait_port(port, true);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--lang=en-US"]
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session in headless Chromium");
    (driver, client)
}

async fn screenshot(b: &Client, name: &str) {
    let png = b.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn text(b: &Client, css: &str) -> String {
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn click(b: &Client, css: &str) {
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Clicks a button that submits a form, and waits until the page it leads to has replaced this
/// one (the old document's element is gone), so nothing is read from the page being left.
async fn submit(b: &Client, css: &str) {
    let old = b.find(Locator::Css("html")).await.unwrap();
    click(b, css).await;
    let start = Instant::now();
    while old.tag_name().await.is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{css}: no new page within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fill(b: &Client, css: &str, value: &str) {
    let e = b
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

async fn log_in(b: &Client, (name, password): (&str, &str)) {
    fill(b, "#name", name).await;
    fill(b, "#password", password).await;
    submit(b, "#login").await;
}

/// The `value` of a hidden `csrf` input in `html`.
fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + 64].to_string()
}

fn cookie_in(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap_or("").to_string())
}

/// Logs in over plain HTTP: the session cookie.
async fn http_login(http: &reqwest::Client, base: &str, (name, pw): (&str, &str)) -> String {
    let page = http.get(format!("{base}/ui/login")).send().await.unwrap();
    let login_cookie = cookie_in(&page, "monit_console_login").unwrap();
    let token = csrf_in(&page.text().await.unwrap());
    let r = http
        .post(format!("{base}/ui/login"))
        .header("cookie", format!("monit_console_login={login_cookie}"))
        .form(&[
            ("name", name),
            ("password", pw),
            ("csrf", &token),
            ("next", "/ui/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{name} logs in");
    let set = r
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("monit_console="))
        .unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/ui"),
        "{set}"
    );
    cookie_in(&r, "monit_console").unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_silences_an_alarm_from_its_mail_and_steers_the_outbox_in_a_real_browser() {
    tokio::time::timeout(Duration::from_secs(420), browser_scenario())
        .await
        .expect("the console scenario within 7 minutes");
}

async fn browser_scenario() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let ops = format!("{}@example.com", unique("console"));
    let (op_hash, viewer_hash) = (hash(OPERATOR.1), hash(VIEWER.1));
    let console = format!(
        "[console]\nenabled = true\npublic_url = \"{base}\"\n\
         [[console.users]]\nname = \"{}\"\npassword_hash = \"{op_hash}\"\nrole = \"operator\"\n\
         [[console.users]]\nname = \"{}\"\npassword_hash = \"{viewer_hash}\"\nrole = \"viewer\"\n",
        OPERATOR.0, VIEWER.0
    );
    // the first mail is parked: the only recipient is no address (fixed later, then retried)
    let env = env("console", port, &console, "ops-at-nowhere").await;
    env.add_vm("router_z1/0", "10.0.40.1", "vms").await;
    let feed = || async {
        env.write_points(&env.cf_db, &vm_points("10.0.40.1", now_s(), 97.0))
            .await
    };
    feed().await;
    // two decisions as the autoscale plugin records them, one with markup in its app name
    env.exec(
        "INSERT INTO batch_scaling_history (decided_at, app_guid, app_name, action, outcome, instances_before, \
         instances_after, cpu_percent, memory_percent, reason) VALUES \
         (UTC_TIMESTAMP() - INTERVAL 5 MINUTE, 'guid-1', 'shop', 'out', 'scaled', 2, 3, 91.5, 40.2, \
          'cpu 91.5% >= out threshold 80% over 300 s'), \
         (UTC_TIMESTAMP(), 'guid-2', '<b>cart</b>', 'in', 'skipped', 3, 3, 5.0, 10.0, 'cooldown: last scaled 2 min ago')",
    )
    .await;
    let _batch = start(&env, port);
    let db = env.db.clone();
    let parked: (i64, i64) = until("the first mail parked", 60, || {
        let db = db.clone();
        async move {
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT CAST(id AS SIGNED), CAST(alarm_id AS SIGNED) FROM batch_notifications WHERE status = 'parked'",
            )
            .fetch_optional(&db)
            .await
            .unwrap()
        }
    })
    .await;
    let (row, alarm) = parked;

    let (_driver, b) = chromium().await;
    // the browser is closed whatever happens, then a failure goes on
    let result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(drive(
        &b, &env, &base, &ops, row, alarm, &feed,
    )))
    .await;
    let _ = b.close().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }

    // the rules hold without a browser too: no token, a wrong one, a viewer's post, no session
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let op = http_login(&http, &base, OPERATOR).await;
    let silences_before = env.scalar_i64("SELECT COUNT(*) FROM batch_silences").await;
    for body in [
        "match=vm%3Dx&for=1h&comment=no+token".to_string(),
        format!(
            "match=vm%3Dx&for=1h&comment=wrong+token&csrf={}",
            "0".repeat(64)
        ),
    ] {
        let r = http
            .post(format!("{base}/ui/silences"))
            .header("cookie", format!("monit_console={op}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("CSRF token"));
    }
    let viewer = http_login(&http, &base, VIEWER).await;
    let page = http
        .get(format!("{base}/ui/silences"))
        .header("cookie", format!("monit_console={viewer}"))
        .send()
        .await
        .unwrap();
    let headers = page.headers().clone();
    let page = page.text().await.unwrap();
    assert!(page.contains("id=\"silences\""), "a viewer reads");
    assert!(
        !page.contains("silence-form") && !page.contains("class=\"expire\""),
        "a viewer gets no form"
    );
    let viewer_csrf = csrf_in(&page);
    let r = http
        .post(format!("{base}/ui/silences"))
        .header("cookie", format!("monit_console={viewer}"))
        .form(&[
            ("match", "vm=x"),
            ("for", "1h"),
            ("comment", "viewer"),
            ("csrf", &viewer_csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a viewer cannot add a silence");
    assert!(r.text().await.unwrap().contains("is a viewer"));
    let r = http
        .post(format!("{base}/ui/outbox/{row}/drop"))
        .header("cookie", format!("monit_console={viewer}"))
        .form(&[("csrf", &viewer_csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a viewer cannot drop");
    let r = http
        .post(format!("{base}/ui/silences"))
        .form(&[("match", "vm=x"), ("for", "1h"), ("comment", "anon")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no session");
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM batch_silences").await,
        silences_before
    );
    assert_eq!(
        env.scalar_i64(&format!(
            "SELECT COUNT(*) FROM batch_notifications WHERE id = {row} AND status = 'sent'"
        ))
        .await,
        1
    );
    // a row another instance is sending (a live claim) is left as it is, the page says by whom
    env.exec(&format!(
        "UPDATE batch_notifications SET status = 'pending', next_attempt_at = UTC_TIMESTAMP() + INTERVAL 1 DAY, \
         claimed_by = 'batch-b:42', claim_until = UTC_TIMESTAMP(3) + INTERVAL 1 HOUR WHERE id = {row}"
    ))
    .await;
    let page = http
        .get(format!("{base}/ui/outbox"))
        .header("cookie", format!("monit_console={op}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = http
        .post(format!("{base}/ui/outbox/{row}/drop"))
        .header("cookie", format!("monit_console={op}"))
        .form(&[("csrf", csrf_in(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let page = http
        .get(format!("{base}/ui/outbox"))
        .header("cookie", format!("monit_console={op}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!(
            "notification {row} is being sent: claimed by batch-b:42"
        )),
        "{page}"
    );
    assert_eq!(
        env.scalar_i64(&format!(
            "SELECT COUNT(*) FROM batch_notifications WHERE id = {row} AND status = 'pending' AND claimed_by = 'batch-b:42'"
        ))
        .await,
        1,
        "the claim is not broken"
    );
    // no script may run on a page, none may frame it
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    // a wrong password: the login form again, 401
    let page = http.get(format!("{base}/ui/login")).send().await.unwrap();
    let lc = cookie_in(&page, "monit_console_login").unwrap();
    let token = csrf_in(&page.text().await.unwrap());
    let r = http
        .post(format!("{base}/ui/login"))
        .header("cookie", format!("monit_console_login={lc}"))
        .form(&[
            ("name", OPERATOR.0),
            ("password", "wrong"),
            ("csrf", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // the probes and the metrics as before
    assert_eq!(
        http.get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("monit_console_logins_total"), "{metrics}");
    env.cleanup().await;
}

#[allow(clippy::too_many_arguments)]
async fn drive<F, Fut>(
    b: &Client,
    env: &TestEnv,
    base: &str,
    ops: &str,
    row: i64,
    alarm: i64,
    feed: &F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // every page asks for a login first, and comes back after it
    b.goto(&format!("{base}/ui/outbox")).await.unwrap();
    let url = b.current_url().await.unwrap();
    assert_eq!(url.path(), "/ui/login", "{url}");
    assert_eq!(url.query(), Some("next=%2Fui%2Foutbox"));
    screenshot(b, "login").await;
    log_in(b, OPERATOR).await;
    assert_eq!(text(b, "#user").await, OPERATOR.0);
    assert_eq!(b.current_url().await.unwrap().path(), "/ui/outbox");

    // the parked row with its reason; the operator fixes alarm_targets (in the management
    // app), then retries it here
    let reason = text(b, &format!("#outbox-{row} .reason")).await;
    assert!(reason.contains("ops-at-nowhere"), "{reason}");
    assert_eq!(text(b, &format!("#outbox-{row} .status")).await, "parked");
    screenshot(b, "outbox").await;
    env.exec(&format!("UPDATE alarm_targets SET mail_address = '{ops}'"))
        .await;
    submit(b, &format!("#outbox-{row} .retry")).await;
    assert_eq!(
        text(b, "#flash").await,
        format!("notification {row} queued again")
    );
    let mail = until("the retried mail in the SMTP sink", 60, || async {
        mails_with("plain", ops).into_iter().next()
    })
    .await;
    let parsed = MessageParser::default().parse(mail.as_bytes()).unwrap();
    let body = parsed.body_text(0).unwrap().to_string();
    let link = body
        .lines()
        .find_map(|l| {
            l.split(": ")
                .nth(1)
                .filter(|u| u.starts_with(&format!("{base}/ui/silences/new?")))
        })
        .unwrap_or_else(|| panic!("a silence link in the mail:\n{body}"))
        .trim()
        .to_string();
    assert!(body.contains("silence this for 2 h"), "{body}");

    // the link, logged out: the login, then the silence form filled in
    submit(b, "header form.who button").await;
    assert_eq!(b.current_url().await.unwrap().path(), "/ui/login");
    b.goto(&link).await.unwrap();
    assert_eq!(b.current_url().await.unwrap().path(), "/ui/login");
    log_in(b, OPERATOR).await;
    assert_eq!(b.current_url().await.unwrap().path(), "/ui/silences/new");
    let mut matchers = Vec::new();
    for m in b.find_all(Locator::Css("input.match")).await.unwrap() {
        matchers.push(m.prop("value").await.unwrap().unwrap_or_default());
    }
    assert_eq!(
        &matchers[..2],
        ["vm=router_z1/0", "type=cpu"],
        "{matchers:?}"
    );
    let value = |css: &'static str| async move {
        b.find(Locator::Css(css))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    };
    assert_eq!(value("#for").await, "2h");
    assert_eq!(
        value("#comment").await,
        format!("silenced from the mail of alarm {alarm}")
    );
    screenshot(b, "silence-form").await;
    submit(b, "#add-silence").await;
    let flash = text(b, "#flash").await;
    assert!(
        flash.starts_with("silence ") && flash.contains("vm=router_z1/0 type=cpu"),
        "{flash}"
    );
    let (silence, author, matchers): (i64, String, String) = sqlx::query_as(
        "SELECT CAST(id AS SIGNED), author, matchers FROM batch_silences ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(author, OPERATOR.0);
    assert!(
        matchers.contains("router_z1/0") && matchers.contains("cpu"),
        "{matchers}"
    );
    let ends: i64 = env
        .scalar_i64(&format!("SELECT TIMESTAMPDIFF(MINUTE, UTC_TIMESTAMP(), ends_at) FROM batch_silences WHERE id = {silence}"))
        .await;
    assert!((118..=120).contains(&ends), "two hours: {ends} min");

    // a repeat is due now: the next tick holds it (silenced), no mail, no outbox row
    feed().await;
    let last_run = env
        .scalar_i64("SELECT CAST(COALESCE(MAX(id), 0) AS SIGNED) FROM batch_runs")
        .await;
    env.exec(&format!(
        "UPDATE alarms SET alarm_send_date = UTC_TIMESTAMP() - INTERVAL 1 HOUR WHERE id = {alarm}"
    ))
    .await;
    let db = env.db.clone();
    until("a tick holding the repeat as silenced", 60, || {
        let db = db.clone();
        async move {
            let s: Option<String> = sqlx::query_scalar(
                "SELECT summary FROM batch_runs WHERE id > ? AND JSON_VALUE(summary, '$.held.silenced') >= 1 LIMIT 1",
            )
            .bind(last_run)
            .fetch_optional(&db)
            .await
            .unwrap();
            s
        }
    })
    .await;
    assert_eq!(
        env.scalar_i64(&format!(
            "SELECT COUNT(*) FROM batch_notifications WHERE alarm_id = {alarm}"
        ))
        .await,
        1,
        "the held repeat queued nothing"
    );
    assert_eq!(mails_with("plain", ops).len(), 1);
    b.goto(&format!("{base}/ui/alarms")).await.unwrap();
    let hold = text(b, &format!("#alarm-{alarm} .hold")).await;
    assert!(
        hold.contains("silenced") && hold.contains(&format!("silence {silence}")),
        "{hold}"
    );
    screenshot(b, "alarms").await;

    // an XSS attempt in a comment is text, on the page and in the DOM
    b.goto(&format!("{base}/ui/silences")).await.unwrap();
    fill(b, "input.match", "vm=nothing/*").await;
    fill(b, "#comment", XSS).await;
    submit(b, "#add-silence").await;
    assert!(text(b, "#flash").await.contains("vm=nothing/*"));
    let xss_id: i64 = env
        .scalar_i64("SELECT CAST(MAX(id) AS SIGNED) FROM batch_silences")
        .await;
    assert_eq!(text(b, &format!("#silence-{xss_id} .comment")).await, XSS);
    assert!(
        b.find_all(Locator::Css("#silences img"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(b.find_all(Locator::Css("script")).await.unwrap().is_empty());
    assert!(b.get_alert_text().await.is_err(), "no alert opened");
    let source = b.source().await.unwrap();
    assert!(
        source.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "escaped in the HTML"
    );
    screenshot(b, "silences").await;

    // expire: the next due repeat is mailed
    submit(b, &format!("#silence-{silence} .expire")).await;
    assert_eq!(
        text(b, "#flash").await,
        format!("silence {silence} expired")
    );
    // (the held repeats left alarm_send_date an hour back: the repeat is due at once)
    feed().await;
    until("the repeat mail after the silence expired", 60, || async {
        (mails_with("plain", ops).len() >= 2).then_some(())
    })
    .await;

    // the ticks, charted; the scale decisions; the overview
    b.goto(&format!("{base}/ui/ticks")).await.unwrap();
    let bars = b.find_all(Locator::Css("#chart svg rect")).await.unwrap();
    assert!(bars.len() > 5, "{} bars", bars.len());
    assert!(text(b, "#ticks").await.contains("query"));
    screenshot(b, "ticks").await;
    b.goto(&format!("{base}/ui/scaling")).await.unwrap();
    let table = text(b, "#scaling").await;
    assert!(
        table.contains("<b>cart</b>") && table.contains("cpu 91.5% >= out threshold"),
        "{table}"
    );
    assert!(
        b.find_all(Locator::Css("#scaling b"))
            .await
            .unwrap()
            .is_empty()
    );
    screenshot(b, "scaling").await;
    b.goto(&format!("{base}/ui/")).await.unwrap();
    assert!(text(b, "#leader").await.contains("leader_election = false"));
    assert_eq!(text(b, "#backend").await, "influxdb");
    assert_eq!(text(b, "#mode").await, "query");
    assert_eq!(text(b, "#open-alarms").await, "1");
    screenshot(b, "overview").await;
    // no secret on any page
    for page in [
        "/ui/",
        "/ui/alarms",
        "/ui/silences",
        "/ui/outbox",
        "/ui/ticks",
        "/ui/scaling",
    ] {
        b.goto(&format!("{base}{page}")).await.unwrap();
        let html = b.source().await.unwrap();
        assert!(
            !html.contains("$argon2") && !html.contains(OPERATOR.1),
            "{page}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_console_off_there_is_no_ui_and_mails_carry_no_silence_link() {
    let port = free_port();
    let ops = format!("{}@example.com", unique("consoleoff"));
    // public_url alone does not turn it on
    let env = env(
        "consoleoff",
        port,
        &format!("[console]\npublic_url = \"http://127.0.0.1:{port}\"\n"),
        &ops,
    )
    .await;
    env.add_vm("router_z1/0", "10.0.41.1", "vms").await;
    env.write_points(&env.cf_db, &vm_points("10.0.41.1", now_s(), 97.0))
        .await;
    let _batch = start(&env, port);
    let mail = until("the alarm mail", 60, || async {
        mails_with("plain", &ops).into_iter().next()
    })
    .await;
    assert!(!mail.contains("/ui/silences"), "{mail}");
    let http = reqwest::Client::new();
    for path in ["/ui/", "/ui/login", "/ui/silences/new?match=vm%3Dx"] {
        let r = http
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = http
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "ok");
    env.cleanup().await;
}
