//! End-to-end harness: a Monitoring DB and InfluxDB databases of the test's own on the real
//! services, a config file pointing at them, and the real `monit-batch` binary.
#![allow(dead_code)]

use monit_testkit::{TestDb, create_influx_db, try_drop_influx_db};
// for the tests that name them; not every test binary does
#[allow(unused_imports)]
pub use monit_testkit::{influx_url, mysql_url, unique};
use sqlx::MySqlPool;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

pub const SINK: &str = "/var/tmp/smtp-sink";

pub fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub struct TestEnv {
    pub name: String,
    pub db: MySqlPool,
    test_db: TestDb,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub cf_db: String,
    pub bosh_db: String,
    pub container_db: String,
    http: reqwest::Client,
    pub mysql: String,
    pub influx: String,
}

impl TestEnv {
    /// `extra` is appended to the generated TOML (plugin sections, overrides).
    pub async fn new(tag: &str, extra: &str) -> TestEnv {
        Self::on(tag, extra, &mysql_url(), &influx_url()).await
    }

    /// On given servers (a test's private MariaDB or InfluxDB).
    pub async fn on(tag: &str, extra: &str, mysql: &str, influx: &str) -> TestEnv {
        let test_db = TestDb::create_on(mysql, &format!("e2e_{tag}")).await;
        let (name, db) = (test_db.name.clone(), test_db.pool.clone());
        monit_host_migrate(&db).await;
        let http = reqwest::Client::new();
        let (cf_db, bosh_db, container_db) = (
            format!("{name}_cf"),
            format!("{name}_bosh"),
            format!("{name}_con"),
        );
        for d in [&cf_db, &bosh_db, &container_db] {
            create_influx_db(influx, d).await;
        }
        let url = url::Url::parse(mysql).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("monit-batch.toml");
        std::fs::write(
            &config,
            format!(
                r#"[batch]
interval_seconds = 1
step_timeout_seconds = 20
leader_election = false
instance_name = "e2e"
[server]
enabled = false
[log]
level = "info"
[monitoring_db]
host = "{host}"
port = {port}
dbname = "{name}"
username = "{user}"
password = "{pw}"
[influx]
url = "{influx}"
paasta_db = "{cf_db}"
bosh_db = "{bosh_db}"
container_db = "{container_db}"
bucket_seconds = 30
[alarms]
retry_min_seconds = 0
resource_url = "https://monitor.example.com"
{extra}
"#,
                host = url.host_str().unwrap(),
                port = url.port().unwrap_or(3306),
                user = url.username(),
                pw = url.password().unwrap_or(""),
            ),
        )
        .unwrap();
        TestEnv {
            name,
            db,
            test_db,
            dir,
            config,
            cf_db,
            bosh_db,
            container_db,
            http,
            mysql: mysql.to_string(),
            influx: influx.to_string(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_monit-batch"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("PORT")
            .output()
            .unwrap();
        eprintln!(
            "--- monit-batch {args:?}: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn run_once(&self) -> Output {
        self.run(&["run", "--once"])
    }

    pub async fn write_points(&self, db: &str, lines: &str) {
        let r = self
            .http
            .post(format!("{}/write", self.influx))
            .query(&[("db", db), ("precision", "s")])
            .body(lines.to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    /// cf_metrics points of one VM, every 30 s over the last `span` seconds, for a metric.
    pub fn cf_series(ip: &str, metric: &str, span: i64, value: impl Fn(i64) -> f64) -> String {
        let now = now_s();
        let mut out = String::new();
        let mut t = now - span;
        while t <= now {
            out.push_str(&format!(
                "cf_metrics,eventtype=ValueMetric,index=0,ip={ip},job=cell,metricname={metric},origin=rep,zone=z1 delta=0,total=0,value={} {t}\n",
                value(now - t)
            ));
            t += 30;
        }
        out
    }

    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&self.db)
            .await
            .unwrap();
    }

    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    pub async fn add_vm(&self, name: &str, ip: &str, vm_type: &str) -> i64 {
        sqlx::query("INSERT IGNORE INTO zones (id, name) VALUES (1, 'z1')")
            .execute(&self.db)
            .await
            .unwrap();
        let r = sqlx::query("INSERT INTO vms (zone_id, name, ip, vm_type) VALUES (1, ?, ?, ?)")
            .bind(name)
            .bind(ip)
            .bind(vm_type)
            .execute(&self.db)
            .await
            .unwrap();
        r.last_insert_id() as i64
    }

    /// Best effort: a cleanup failing (a private server the test stopped) must not fail the test.
    pub async fn cleanup(self) {
        let _ = self.test_db.try_drop().await;
        for d in [&self.cf_db, &self.bosh_db, &self.container_db] {
            let _ = try_drop_influx_db(&self.influx, d).await;
        }
    }
}

async fn monit_host_migrate(db: &MySqlPool) {
    // The binary migrates on `run`; doing it here lets a test seed rows before the first tick.
    monit_host::store::db::MIGRATOR.run(db).await.unwrap();
}

/// Messages in a Maildir `new/` folder that contain `marker`, as raw RFC 5322 text.
pub fn mails_with(maildir: &str, marker: &str) -> Vec<String> {
    let dir = Path::new(SINK).join(maildir).join("new");
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            if let Ok(text) = std::fs::read_to_string(e.path())
                && text.contains(marker)
            {
                out.push(text);
            }
        }
    }
    out
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

pub fn wait_port(port: u16, open: bool) {
    let start = std::time::Instant::now();
    while port_open(port) != open {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "port {port} not {}",
            if open { "open" } else { "closed" }
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// An influxd of the test's own, keeping its data in `dir` across restarts.
pub struct PrivateInflux {
    pub port: u16,
    env: Vec<(String, String)>,
    rpc: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateInflux {
    pub fn start(dir: &Path) -> PrivateInflux {
        Self::start_with(dir, &[])
    }

    /// With extra `INFLUXDB_*` settings (auth, TLS).
    pub fn start_with(dir: &Path, env: &[(&str, String)]) -> PrivateInflux {
        let mut p = PrivateInflux {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            port: free_port(),
            rpc: free_port(),
            dir: dir.to_path_buf(),
            child: None,
        };
        p.up();
        p
    }
    pub fn up(&mut self) {
        let child = Command::new("influxd")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(["-config", "/etc/influxdb/influxdb.conf"])
            .env(
                "INFLUXDB_HTTP_BIND_ADDRESS",
                format!("127.0.0.1:{}", self.port),
            )
            .env("INFLUXDB_BIND_ADDRESS", format!("127.0.0.1:{}", self.rpc))
            .env("INFLUXDB_META_DIR", self.dir.join("meta"))
            .env("INFLUXDB_DATA_DIR", self.dir.join("data"))
            .env("INFLUXDB_DATA_WAL_DIR", self.dir.join("wal"))
            .env("INFLUXDB_REPORTING_DISABLED", "true")
            .env("INFLUXDB_MONITOR_STORE_ENABLED", "false")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_port(self.port, true);
    }
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        wait_port(self.port, false);
    }
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateInflux {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A mariadbd of the test's own (no grant tables: the test connects as root without password).
pub struct PrivateMariadb {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateMariadb {
    pub fn start(dir: &Path) -> PrivateMariadb {
        let st = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=root",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ])
            .arg(format!("--datadir={}", dir.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "mariadb-install-db");
        let mut m = PrivateMariadb {
            port: free_port(),
            dir: dir.to_path_buf(),
            child: None,
        };
        m.up();
        m
    }
    pub fn up(&mut self) {
        let child = Command::new("mariadbd")
            .args([
                "--no-defaults",
                "--user=root",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=16M",
            ])
            .arg(format!("--datadir={}", self.dir.display()))
            .arg(format!("--port={}", self.port))
            .arg(format!(
                "--socket={}",
                self.dir.join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mysqld.pid").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_port(self.port, true);
    }
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
        wait_port(self.port, false);
    }
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// cf_metrics of one VM over the last 300 s: two cores at `cpu`, memory and disk at 40%.
/// Written again with another `cpu`, the same points are overwritten.
pub fn vm_points(ip: &str, end: i64, cpu: f64) -> String {
    let mut out = String::new();
    let mut t = end - 300;
    while t <= end {
        for (metric, v) in [
            ("cpuStats.0", cpu),
            ("cpuStats.1", cpu),
            ("memoryStats.UsedPercent", 40.0),
            ("diskStats.Usage", 40.0),
        ] {
            out.push_str(&format!(
                "cf_metrics,eventtype=ValueMetric,index=0,ip={ip},job=cell,metricname={metric},origin=rep,zone=z1 delta=0,total=0,value={v} {t}\n"
            ));
        }
        t += 10;
    }
    out
}

/// `[plugins.paasta]` and `[plugins.bosh]` against a fake director.
pub fn bosh_section(director: &wiremock::MockServer) -> String {
    format!(
        "[plugins.paasta]\nenabled = true\n[plugins.bosh]\nenabled = true\napi_url = \"{}\"\nusername = \"admin\"\npassword = \"pw\"\n\
         cf_deployment = \"paasta\"\ncell_prefix = \"cell\"\nservice_name = \"micro-bosh\"\ntask_poll_millis = 50\n",
        director.uri()
    )
}

/// The router (10.0.16.11) and the director itself (10.0.1.6, its own `bos` metrics) report;
/// nothing else does.
pub async fn router_and_director_report(env: &TestEnv) {
    let now = now_s();
    env.write_points(&env.cf_db, &vm_points("10.0.16.11", now, 10.0))
        .await;
    let mut lines = String::new();
    let mut t = now - 300;
    while t <= now {
        for metric in [
            "cpuStats.core.0",
            "memoryStats.UsedPercent",
            "diskStats.Usage",
        ] {
            lines.push_str(&format!(
                "bosh_metrics,ip=10.0.1.6,metricname={metric},origin=micro-bosh value=10 {t}\n"
            ));
        }
        t += 30;
    }
    env.write_points(&env.bosh_db, &lines).await;
}

pub async fn director(tasks: serde_json::Value) -> wiremock::MockServer {
    let s = wiremock::MockServer::start().await;
    mount_director(&s, tasks).await;
    s
}

/// A fake BOSH director: deployment `paasta` with cell/0, cell/1 and router/0 (a `vms?format=full`
/// task), and `tasks` as the running tasks.
pub async fn mount_director(s: &wiremock::MockServer, tasks: serde_json::Value) {
    wiremock::Mock::given(wiremock::matchers::method("GET")).and(wiremock::matchers::path("/info"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "name": "micro-bosh", "uuid": "7c1f", "version": "271.2.0", "user": null, "cpi": "openstack_cpi",
            "user_authentication": {"type": "basic", "options": {}}
        })))
        .mount(s).await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/deployments"))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!([
                {"name": "paasta", "releases": [], "stemcells": [], "cloud_config": "latest"}
            ])),
        )
        .mount(s)
        .await;
    wiremock::Mock::given(wiremock::matchers::method("GET")).and(wiremock::matchers::path("/deployments/paasta/vms")).and(wiremock::matchers::query_param("format", "full"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!(
            {"id": 42, "state": "queued", "description": "retrieve vm-stats", "timestamp": 1700000000, "result": "", "user": "admin"})))
        .mount(s).await;
    wiremock::Mock::given(wiremock::matchers::method("GET")).and(wiremock::matchers::path("/tasks/42"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!(
            {"id": 42, "state": "done", "description": "retrieve vm-stats", "timestamp": 1700000000, "result": "", "user": "admin"})))
        .mount(s).await;
    let ndjson = [
        ("cell", 0, "10.0.16.21"),
        ("cell", 1, "10.0.16.22"),
        ("router", 0, "10.0.16.11"),
    ]
    .iter()
    .map(|(job, idx, ip)| {
        serde_json::json!({"vm_cid": format!("i-{ip}"), "ips": [ip], "job_name": job, "index": idx,
                "job_state": "running", "az": "z1", "id": format!("id-{ip}")})
        .to_string()
    })
    .collect::<Vec<_>>()
    .join("\n");
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/tasks/42/output"))
        .and(wiremock::matchers::query_param("type", "result"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string(ndjson + "\n"))
        .mount(s)
        .await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/tasks"))
        .and(wiremock::matchers::query_param(
            "state",
            "processing,queued",
        ))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(tasks))
        .mount(s)
        .await;
}

/// A Portal DB with the portal's `auto_scaling_config` table holding `rows` (SQL `VALUES` tuples:
/// no, guid, org, space, app, instance_min_cnt, instance_max_cnt, cpu_threshold_min_per,
/// cpu_threshold_max_per, memory_min_size, memory_max_size, check_time_sec, auto_increase_yn,
/// auto_decrease_yn).
pub async fn portal_db(tag: &str, rows: &str) -> TestDb {
    let portal = TestDb::create(tag).await;
    // the rows are the test's own literals
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE auto_scaling_config (no int NOT NULL, guid varchar(255) NOT NULL, org varchar(255), space varchar(255), app varchar(255), \
         instance_min_cnt int, instance_max_cnt int, cpu_threshold_min_per float, cpu_threshold_max_per float, memory_min_size int, \
         memory_max_size int, check_time_sec int NOT NULL, auto_increase_yn char(1) NOT NULL, auto_decrease_yn char(1) NOT NULL, PRIMARY KEY (no)); \
         INSERT INTO auto_scaling_config VALUES {rows};"
    )))
    .execute(&portal.pool)
    .await
    .unwrap();
    portal
}

/// A Cloud Controller with its UAA (documented v3 shapes): `GET /` names the UAA, which hands
/// out a token. The test mounts the app endpoints it needs.
pub async fn cloud_controller() -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let cc = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"links": {"uaa": {"href": cc.uri()}}})),
        )
        .mount(&cc)
        .await;
    Mock::given(method("POST")).and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!(
            {"access_token": "tok", "token_type": "bearer", "expires_in": 43199, "scope": "cloud_controller.admin", "jti": "j"})))
        .mount(&cc).await;
    cc
}

/// `[plugins.autoscale]` acting through `cc` on the policies of `portal`, with `keys` added.
pub fn autoscale_section(cc: &wiremock::MockServer, portal: &TestDb, keys: &str) -> String {
    let url = url::Url::parse(&mysql_url()).unwrap();
    format!(
        "[plugins.autoscale]\nenabled = true\nactuator = \"cf\"\ncf_api_url = \"{}\"\ncf_username = \"admin\"\ncf_password = \"pw\"\n{keys}\
         [plugins.autoscale.portal_db]\nhost = \"{}\"\nport = {}\ndbname = \"{}\"\nusername = \"{}\"\npassword = \"{}\"\n",
        cc.uri(),
        url.host_str().unwrap(),
        url.port().unwrap_or(3306),
        portal.name,
        url.username(),
        url.password().unwrap_or(""),
    )
}
