//! Bearer and basic auth of the Prometheus-API client against a real authenticating proxy:
//! `vmauth` (Debian's victoria-metrics package) started by each test on a free port in front of
//! the shared VictoriaMetrics, and `run --once` of the real binary through it (issue 18, item 10).
//!
//! vmauth 1.79 answers a request without credentials 401, and a wrong token or password 400 with
//! the refused credential in the body; the batch must name the status and the URL, and never
//! show the credential, in any form, in its output, its log or `batch_runs`.

mod common;

use common::{TestEnv, free_port, now_s, port_open, unique};
use monit_testkit::{victoria_metrics_url, write_victoria_metrics};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A vmauth of the test's own; stopped by pid when dropped.
struct Vmauth {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Vmauth {
    /// `users` is the YAML list of vmauth users, each proxying to the shared VictoriaMetrics.
    fn start(users: &[&str]) -> Vmauth {
        let dir = tempfile::tempdir().unwrap();
        let target = victoria_metrics_url();
        let mut yaml = String::from("users:\n");
        for u in users {
            yaml.push_str(&format!("- {u}\n  url_prefix: \"{target}\"\n"));
        }
        let config = dir.path().join("auth.yml");
        std::fs::write(&config, yaml).unwrap();
        let port = free_port();
        let child = Command::new("vmauth")
            .arg(format!("-auth.config={}", config.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("vmauth: {e} (scripts/services.sh installs it)"));
        let started = Instant::now();
        while !port_open(port) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "vmauth did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Vmauth {
            port,
            child,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Vmauth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// cf_metrics of one VM over the last 300 s: CPU at 95 % (a critical alarm), memory and disk 40 %.
fn hot_vm(ip: &str) -> String {
    let end = now_s();
    let mut out = String::new();
    let mut t = end - 300;
    while t <= end {
        for (metric, v) in [
            ("cpuStats.0", 95.0),
            ("memoryStats.UsedPercent", 40.0),
            ("diskStats.Usage", 40.0),
        ] {
            out.push_str(&format!(
                "cf_metrics,ip={ip},job=api,metricname={metric},origin=rep value={v} {t}\n"
            ));
        }
        t += 10;
    }
    out
}

/// A test env reading a hot VM from VictoriaMetrics through `url`, with `auth` added to the
/// `[prometheus]` section.
async fn env_through(tag: &str, url: &str, auth: &str) -> TestEnv {
    let env = TestEnv::new(
        tag,
        &format!(
            "[plugins.paasta]\nenabled = true\n[metrics]\nbackend = \"prometheus\"\n\
             [prometheus]\nurl = \"{url}\"\ntimeout_seconds = 10\n{auth}\n"
        ),
    )
    .await;
    env.exec("UPDATE alarm_policies SET measure_time = 240 WHERE origin_type = 'pas'")
        .await;
    env.add_vm("api_z1/0", "10.0.0.1", "vms").await;
    write_victoria_metrics(&victoria_metrics_url(), &env.cf_db, &hot_vm("10.0.0.1")).await;
    env
}

struct Outcome {
    code: Option<i32>,
    summary: serde_json::Value,
    /// stdout and stderr (the log)
    text: String,
    batch_runs_errors: String,
}

async fn run_once(env: &TestEnv) -> Outcome {
    let out = env.run(&["run", "--once", "--json"]);
    let summary = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let batch_runs_errors: Option<String> =
        sqlx::query_scalar("SELECT errors FROM batch_runs ORDER BY id DESC LIMIT 1")
            .fetch_one(&env.db)
            .await
            .unwrap();
    Outcome {
        code: out.status.code(),
        summary,
        text,
        batch_runs_errors: batch_runs_errors.unwrap_or_default(),
    }
}

/// The run read the hot VM through the proxy: three readings, its critical CPU alarm.
async fn assert_read_through(env: &TestEnv, o: &Outcome) {
    assert_eq!(o.code, Some(0), "{}", o.text);
    assert_eq!(o.summary["readings"]["paasta"], 3, "{}", o.summary);
    let level: String =
        sqlx::query_scalar("SELECT level FROM alarms WHERE ip = '10.0.0.1' AND alarm_type = 'cpu'")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert_eq!(level, "critical");
}

/// None of `secrets` anywhere an operator or a log collector would see it.
fn assert_never_shown(o: &Outcome, secrets: &[&str]) {
    for s in secrets {
        assert!(!o.text.contains(s), "{s:?} in the output:\n{}", o.text);
        assert!(
            !o.batch_runs_errors.contains(s),
            "{s:?} in batch_runs: {}",
            o.batch_runs_errors
        );
    }
}

#[tokio::test]
async fn bearer_token_reads_through_vmauth() {
    let token = unique("tok");
    let vmauth = Vmauth::start(&[&format!("bearer_token: \"{token}\"")]);
    let env = env_through(
        "auth_bearer",
        &vmauth.url(),
        &format!("bearer_token = \"{token}\""),
    )
    .await;
    let o = run_once(&env).await;
    assert_read_through(&env, &o).await;
    assert_never_shown(&o, &[&token]);
    env.cleanup().await;
}

#[tokio::test]
async fn basic_auth_reads_through_vmauth_from_keys_and_from_the_url() {
    let password = unique("pw");
    let vmauth = Vmauth::start(&[&format!("username: \"reader\"\n  password: \"{password}\"")]);
    let keys = env_through(
        "auth_basic",
        &vmauth.url(),
        &format!("user = \"reader\"\npassword = \"{password}\""),
    )
    .await;
    let o = run_once(&keys).await;
    assert_read_through(&keys, &o).await;
    assert_never_shown(&o, &[&password]);
    keys.cleanup().await;

    let in_url = format!("http://reader:{password}@127.0.0.1:{}", vmauth.port);
    let url = env_through("auth_basic_url", &in_url, "").await;
    let o = run_once(&url).await;
    assert_read_through(&url, &o).await;
    assert_never_shown(&o, &[&password]);
    url.cleanup().await;
}

#[tokio::test]
async fn refused_credentials_are_named_by_status_and_url_and_never_shown() {
    use base64::Engine as _;
    let (token, password) = (unique("tok"), unique("pw"));
    let vmauth = Vmauth::start(&[
        &format!("bearer_token: \"{token}\""),
        &format!("username: \"reader\"\n  password: \"{password}\""),
    ]);
    let query_url = format!("{}/api/v1/query", vmauth.url());

    // a wrong token: vmauth 1.79 answers 400 and echoes the token it refused
    let wrong_token = unique("wrong_tok");
    let bearer = env_through(
        "auth_wrong_tok",
        &vmauth.url(),
        &format!("bearer_token = \"{wrong_token}\""),
    )
    .await;
    let o = run_once(&bearer).await;
    assert_eq!(o.code, Some(2), "{}", o.text);
    let errors = o.summary["errors"].to_string();
    assert!(
        (errors.contains("HTTP 400") || errors.contains("HTTP 401")) && errors.contains(&query_url),
        "{errors}"
    );
    assert_never_shown(&o, &[&wrong_token, &token]);
    assert!(
        errors.contains("check prometheus.bearer_token"),
        "the error says which key to check: {errors}"
    );
    bearer.cleanup().await;

    // a wrong password: refused as the base64 of user:password
    let wrong_password = unique("wrong_pw");
    let basic = env_through(
        "auth_wrong_pw",
        &vmauth.url(),
        &format!("user = \"reader\"\npassword = \"{wrong_password}\""),
    )
    .await;
    let o = run_once(&basic).await;
    assert_eq!(o.code, Some(2), "{}", o.text);
    let basic_form =
        base64::engine::general_purpose::STANDARD.encode(format!("reader:{wrong_password}"));
    assert_never_shown(&o, &[&wrong_password, &basic_form, &password]);
    let errors = o.summary["errors"].to_string();
    assert!(errors.contains(&query_url), "{errors}");
    assert!(
        errors.contains("check prometheus.user and prometheus.password"),
        "{errors}"
    );
    basic.cleanup().await;
    // no credentials at all: 401
    let none = env_through("auth_none", &vmauth.url(), "").await;
    let o = run_once(&none).await;
    assert_eq!(o.code, Some(2), "a failed step: {}", o.text);
    let errors = o.summary["errors"].to_string();
    assert!(
        errors.contains("HTTP 401") && errors.contains(&query_url),
        "the error names the status and the URL: {errors}"
    );
    assert!(
        errors.contains("prometheus.bearer_token"),
        "and what to set: {errors}"
    );
    assert_eq!(
        none.scalar_i64("SELECT COUNT(*) FROM alarms").await,
        0,
        "a refused query is no reading"
    );
    none.cleanup().await;
}
