//! No secret anywhere (issue 11, item 8): a distinct secret in every credential-bearing key (URL
//! userinfo included), every command run at `log.level = "trace"` against reachable and
//! unreachable services, and none of them may appear in stdout, stderr or any row of the
//! Monitoring DB (batch_runs, batch_notifications, alarms, ...: the whole DB is dumped).

mod common;

use common::{PrivateMariadb, TestEnv, free_port, influx_url, unique};
use monit_testkit::TestDb;
use std::process::Command;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Every planted secret starts with this; finding it anywhere is a leak.
const MARK: &str = "S3CR3T";

fn secret(key: &str) -> String {
    format!("{MARK}{key}")
}

/// A fake BOSH director that sends clients to a UAA whose URL (from `/info`) carries userinfo,
/// and a UAA that hands out a secret token.
async fn director() -> MockServer {
    let s = MockServer::start().await;
    let uaa = format!(
        "http://uaauser:{}@127.0.0.1:{}/uaa",
        secret("uaaurl"),
        s.address().port()
    );
    Mock::given(method("GET")).and(path("/info"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "name": "bosh", "version": "271", "user_authentication": {"type": "uaa", "options": {"url": uaa}}})))
        .mount(&s).await;
    Mock::given(method("POST"))
        .and(path("/uaa/oauth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"access_token": secret("boshtoken"), "expires_in": 3600}),
        ))
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path("/deployments"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!([{"name": "paasta"}])),
        )
        .mount(&s)
        .await;
    let task = serde_json::json!({"id": 42, "state": "done", "description": "vms"});
    for p in ["/deployments/paasta/vms", "/tasks/42"] {
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(ResponseTemplate::new(200).set_body_json(task.clone()))
            .mount(&s)
            .await;
    }
    let vm = |job: &str, ip: &str| {
        serde_json::json!({"job_name": job, "index": 0, "id": format!("id-{ip}"), "ips": [ip], "az": "z1", "vm_cid": "c", "job_state": "running"})
            .to_string()
    };
    Mock::given(method("GET"))
        .and(path("/tasks/42/output"))
        .respond_with(ResponseTemplate::new(200).set_body_string(format!(
            "{}\n{}\n",
            vm("router", "127.0.0.21"),
            vm("diego-cell", "127.0.0.22")
        )))
        .mount(&s)
        .await;
    s
}

/// A webhook that always fails, so its errors are recorded.
async fn failing_hook() -> MockServer {
    let s = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("down"))
        .mount(&s)
        .await;
    s
}

struct Endpoints {
    influx: u16,
    mysql_port: u16,
    director: u16,
    smtp: u16,
    hook: u16,
    portal_db_port: u16,
    alertmanager: u16,
}

/// The whole config, every credential a distinct secret.
fn config(env: &TestEnv, mdb_user: &str, portal: &str, e: &Endpoints) -> String {
    let webhook = if cfg!(feature = "webhook") {
        format!(
            r#"[plugins.webhook]
enabled = true
urls = ["http://127.0.0.1:{hook}/hooks/{path}", "http://hookuser:{user}@127.0.0.1:{hook}/x"]
retry_max_times = 0
timeout_seconds = 2
[plugins.webhook.headers]
Authorization = "Bearer {header}"
"#,
            hook = e.hook,
            path = secret("webhookpath"),
            user = secret("webhookuser"),
            header = secret("webhookheader"),
        )
    } else {
        String::new()
    };
    // Alertmanager's own basic auth takes `monit` and the password; the userinfo of the URL and
    // the header are secrets it never needs
    let alertmanager = if cfg!(feature = "alertmanager") {
        format!(
            r#"[plugins.alertmanager]
enabled = true
url = "http://amuser:{url}@127.0.0.1:{port}"
user = "monit"
password = "{pw}"
retry_max_times = 0
timeout_seconds = 2
[plugins.alertmanager.headers]
X-Scope-OrgID = "{header}"
"#,
            port = e.alertmanager,
            url = secret("amurl"),
            pw = secret("ampw"),
            header = secret("amheader"),
        )
    } else {
        String::new()
    };
    format!(
        r#"[batch]
interval_seconds = 1
step_timeout_seconds = 20
leader_election = false
instance_name = "redaction"
[server]
enabled = false
[log]
level = "trace"
[monitoring_db]
host = "127.0.0.1"
port = {mysql_port}
dbname = "{db}"
username = "{mdb_user}"
password = "{mdb_pw}"
[portal_db]
host = "127.0.0.1"
port = {portal_db_port}
dbname = "{portal}"
username = "{mdb_user}_p"
password = "{portal_pw}"
[influx]
url = "http://iu:{influx_url}@127.0.0.1:{influx}"
user = "iu"
password = "{influx_pw}"
paasta_db = "{cf_db}"
bosh_db = "{bosh_db}"
container_db = "{con_db}"
timeout_seconds = 3
[alarms]
retry_min_seconds = 0
resource_url = "https://ru:{resource}@monitoring.example"
[plugins.paasta]
enabled = true
[plugins.container]
enabled = true
[plugins.bosh]
enabled = true
api_url = "http://bu:{bosh_url}@127.0.0.1:{director}"
username = "admin"
password = "{bosh_pw}"
uaa_client_id = "monit"
uaa_client_secret = "{bosh_client}"
cf_deployment = "paasta"
timeout_seconds = 3
task_poll_millis = 50
[plugins.email]
enabled = true
smtp_host = "127.0.0.1"
smtp_port = {smtp}
security = "plain"
username = "mailer"
password = "{smtp_pw}"
sender = "monit@mail.example"
timeout_seconds = 3
[plugins.autoscale]
enabled = true
actuator = "cf"
cf_api_url = "http://127.0.0.1:{director}"
portal_url = "http://pu:{portal_url}@127.0.0.1:{director}"
cf_username = "admin"
cf_password = "{cf_pw}"
client_id = "batch"
client_secret = "{cf_client}"
timeout_seconds = 3
retry_max_times = 0
{webhook}{alertmanager}"#,
        mysql_port = e.mysql_port,
        db = env.name,
        mdb_pw = secret("mdb"),
        portal_db_port = e.portal_db_port,
        portal_pw = secret("portaldb"),
        influx = e.influx,
        influx_url = secret("influxurl"),
        influx_pw = secret("influxpw"),
        cf_db = env.cf_db,
        bosh_db = env.bosh_db,
        con_db = env.container_db,
        resource = secret("resourceurl"),
        director = e.director,
        bosh_url = secret("boshurl"),
        bosh_pw = secret("boshpw"),
        bosh_client = secret("boshclient"),
        smtp = e.smtp,
        smtp_pw = secret("smtp"),
        portal_url = secret("portalurl"),
        cf_pw = secret("cfpw"),
        cf_client = secret("cfclient"),
    )
}

async fn create_user(root: &sqlx::MySqlPool, user: &str, password: &str, db: &str) {
    for sql in [
        format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"),
        format!("GRANT ALL PRIVILEGES ON `{db}`.* TO '{user}'@'%'"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(root)
            .await
            .unwrap();
    }
}

/// stdout + stderr of one command, with the environment given.
fn run(config: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("PORT")
        .env_remove("RUST_LOG")
        .env_remove("VCAP_SERVICES")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "--- monit-batch {args:?}: {} ({} bytes of output), last lines:\n{}",
        out.status,
        text.len(),
        text.lines().rev().take(4).collect::<Vec<_>>().join("\n")
    );
    text
}

/// Standard base64, for the forms secrets take on the wire (basic auth, SMTP AUTH PLAIN).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What a secret looks like in a header a trace log might print: `user:secret` in base64.
fn wire_forms() -> Vec<String> {
    [
        ("iu:", "influxpw"),
        ("monit:", "boshclient"),
        ("admin:", "boshpw"),
        ("batch:", "cfclient"),
        ("\0mailer\0", "smtp"),
        ("monit:", "ampw"),
        ("amuser:", "amurl"),
    ]
    .iter()
    .map(|(user, key)| base64(format!("{user}{}", secret(key)).as_bytes()))
    .collect()
}

fn leaks(what: &str, text: &str) -> Vec<String> {
    let wire = wire_forms();
    text.lines()
        .filter(|l| l.contains(MARK) || wire.iter().any(|w| l.contains(w.as_str())))
        .map(|l| format!("{what}: {}", l.chars().take(400).collect::<String>()))
        .collect()
}

#[test]
fn base64_is_standard() {
    assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"a"), "YQ==");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_in_any_output_or_row_at_trace_level() {
    // a MariaDB of the test's own, whose root may create users with passwords of their own
    let data = tempfile::tempdir().unwrap();
    let mariadb = PrivateMariadb::start(data.path());
    let env = TestEnv::on("redact", "", &mariadb.url(), &influx_url()).await;
    let portal = TestDb::create_on(&mariadb.url(), "e2e_redact_portal").await;
    sqlx::raw_sql(
        "CREATE TABLE auto_scaling_config (no int NOT NULL, guid varchar(255) NOT NULL, org varchar(255), space varchar(255), app varchar(255), \
         instance_min_cnt int, instance_max_cnt int, cpu_threshold_min_per float, cpu_threshold_max_per float, memory_min_size int, \
         memory_max_size int, check_time_sec int NOT NULL, auto_increase_yn char(1) NOT NULL, auto_decrease_yn char(1) NOT NULL, PRIMARY KEY (no)); \
         INSERT INTO auto_scaling_config VALUES (1, 'guid-a', 'org', 'space', 'a', 1, 4, 20, 80, 10, 90, 120, 'Y', 'Y');",
    )
    .execute(&portal.pool)
    .await
    .unwrap();
    env.exec(
        "INSERT INTO alarm_targets (origin_type, mail_address, mail_send_yn) VALUES \
         ('pas', 'ops@mail.example', 'Y'), ('bos', 'ops@mail.example', 'Y')",
    )
    .await;
    // users of our own, so that the Monitoring and Portal DB passwords are secrets of their own
    let root = env.db.clone();
    let host = "127.0.0.1";
    let user = format!("r{}", unique("").replace('_', ""));
    create_user(&root, &user, &secret("mdb"), &env.name).await;
    create_user(
        &root,
        &format!("{user}_p"),
        &secret("portaldb"),
        &portal.name,
    )
    .await;
    create_user(&root, &format!("{user}_v"), &secret("vcap"), &env.name).await;

    let dir = director().await;
    let hook = failing_hook().await;
    let am = monit_testkit::alertmanager::Alertmanager::start_with(
        monit_testkit::alertmanager::Options {
            web_config: Some(format!(
                "basic_auth_users:\n  monit: {}\n",
                bcrypt::hash(secret("ampw"), 4).unwrap()
            )),
            basic_auth: Some(("monit".into(), secret("ampw"))),
            ..Default::default()
        },
    );
    let mysql = url::Url::parse(&mariadb.url()).unwrap();
    let influx = url::Url::parse(&env.influx).unwrap();
    let reachable = Endpoints {
        influx: influx.port().unwrap_or(8086),
        mysql_port: mysql.port().unwrap_or(3306),
        director: dir.address().port(),
        smtp: 2525,
        hook: hook.address().port(),
        portal_db_port: mysql.port().unwrap_or(3306),
        alertmanager: am.port,
    };
    let closed = free_port();
    let unreachable = Endpoints {
        influx: closed,
        director: closed,
        smtp: closed,
        hook: closed,
        portal_db_port: closed,
        alertmanager: closed,
        ..reachable
    };
    let db_down = Endpoints {
        mysql_port: closed,
        ..unreachable
    };
    let vcap = vec![(
        "VCAP_SERVICES",
        serde_json::json!({"p.mysql": [{"name": "monitoring-db", "credentials": {
            "uri": format!("mysql://{user}_v:{}@127.0.0.1:{}/{}", secret("vcap"), reachable.mysql_port, env.name)}}]})
        .to_string(),
    )];

    let mut found = Vec::new();
    let mut outputs = 0;
    for (variant, endpoints, extra_env) in [
        ("reachable", &reachable, vec![]),
        ("vcap", &reachable, vcap),
        ("unreachable", &unreachable, vec![]),
        ("db down", &db_down, vec![]),
    ] {
        let path = env
            .dir
            .path()
            .join(format!("{}.toml", variant.replace(' ', "_")));
        std::fs::write(&path, config(&env, &user, &portal.name, endpoints)).unwrap();
        let commands: &[&[&str]] = if variant == "db down" {
            // each waits out the pool's acquire timeout: the errors of three are enough
            &[&["migrate"], &["run", "--once"], &["runs"]]
        } else {
            &[
                &["check-config"],
                &["plugins"],
                &["migrate"],
                &["run", "--once"],
                &["run", "--once", "--json"],
                &["runs"],
                &["backtest", "--from", "10m"],
            ]
        };
        for args in commands {
            let text = run(&path, args, &extra_env);
            outputs += text.len();
            found.extend(leaks(&format!("{variant} {args:?}"), &text));
        }
    }
    // the runs did something: alarms opened, notifications queued, errors recorded
    let runs = env.scalar_i64("SELECT COUNT(*) FROM batch_runs").await;
    let errors = env
        .scalar_i64("SELECT COUNT(*) FROM batch_runs WHERE errors IS NOT NULL AND errors <> ''")
        .await;
    let alarms = env.scalar_i64("SELECT COUNT(*) FROM alarms").await;
    let notes = env
        .scalar_i64("SELECT COUNT(*) FROM batch_notifications")
        .await;
    assert!(
        runs >= 4 && errors >= 1 && alarms >= 1 && notes >= 1,
        "runs {runs}, with errors {errors}, alarms {alarms}, notifications {notes}"
    );
    assert!(
        outputs > 10_000,
        "trace logging produced only {outputs} bytes"
    );
    let errors_text: Vec<String> =
        sqlx::query_scalar("SELECT errors FROM batch_runs WHERE errors IS NOT NULL")
            .fetch_all(&env.db)
            .await
            .unwrap();
    let all_errors = errors_text.join("\n");
    assert!(
        all_errors.contains("127.0.0.1:") && all_errors.contains("InfluxDB"),
        "the errors name the services and URLs (redacted): {all_errors}"
    );

    let dump = Command::new("mysqldump")
        .args([
            "-h",
            host,
            "-P",
            &reachable.mysql_port.to_string(),
            "-u",
            mysql.username(),
            "--skip-extended-insert",
            &env.name,
        ])
        .args(mysql.password().map(|p| format!("--password={p}")))
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("INSERT INTO `batch_runs`"),
        "dump has the ledger"
    );
    found.extend(leaks("Monitoring DB", &dump));

    for u in [user.clone(), format!("{user}_p"), format!("{user}_v")] {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP USER IF EXISTS '{u}'@'%'"
        )))
        .execute(&root)
        .await;
    }
    if cfg!(feature = "alertmanager") {
        // the reachable runs posted with the right password: the secrets were in use
        assert!(
            !am.alerts().await.is_empty(),
            "Alertmanager got no alert: {}",
            am.log()
        );
    }
    let _ = portal.try_drop().await;
    env.cleanup().await;
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
}
