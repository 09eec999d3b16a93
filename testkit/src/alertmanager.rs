//! An Alertmanager of the test's own: Debian's `prometheus-alertmanager` (installed by
//! `scripts/services.sh`) on a free port, with its own config and storage directory and
//! clustering off, killed when dropped; so tests run in parallel and never see each other's
//! alerts. `down` and `up` stop and restart it on the same port and storage (an outage).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary, `MONIT_TEST_ALERTMANAGER` if set.
pub fn binary() -> String {
    std::env::var("MONIT_TEST_ALERTMANAGER").unwrap_or_else(|_| "prometheus-alertmanager".into())
}

/// How a test's Alertmanager is set up.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// A webhook every alert is routed to (`send_resolved: true`, grouped by alertname, sent
    /// within a second or two): a test sees what Alertmanager notifies. None: a receiver that
    /// sends nothing.
    pub receiver: Option<String>,
    /// The contents of `--web.config.file` (`tls_server_config`, `basic_auth_users`); with TLS
    /// the API is served over https.
    pub web_config: Option<String>,
    /// For the test's own API calls: the CA of the server certificate, and basic auth.
    pub ca_file: Option<PathBuf>,
    pub basic_auth: Option<(String, String)>,
}

pub struct Alertmanager {
    pub port: u16,
    dir: tempfile::TempDir,
    https: bool,
    api: reqwest::Client,
    basic_auth: Option<(String, String)>,
    child: Option<Child>,
}

impl Alertmanager {
    /// Plain http, no auth, alerts routed to `receiver` (a webhook URL) if given.
    pub fn start(receiver: Option<&str>) -> Alertmanager {
        Self::start_with(Options {
            receiver: receiver.map(str::to_string),
            ..Options::default()
        })
    }

    pub fn start_with(o: Options) -> Alertmanager {
        let dir = tempfile::tempdir().expect("a directory for Alertmanager");
        let receiver = match &o.receiver {
            Some(url) => format!(
                "  - name: test\n    webhook_configs:\n      - url: \"{url}\"\n        send_resolved: true\n"
            ),
            None => "  - name: test\n".to_string(),
        };
        let config = format!(
            "route:\n  receiver: test\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n{receiver}"
        );
        std::fs::write(dir.path().join("alertmanager.yml"), config)
            .expect("writing alertmanager.yml");
        if let Some(web) = &o.web_config {
            std::fs::write(dir.path().join("web.yml"), web).expect("writing web.yml");
        }
        let mut api = reqwest::Client::builder().timeout(Duration::from_secs(10));
        if let Some(ca) = &o.ca_file {
            let pem = std::fs::read(ca).unwrap_or_else(|e| panic!("{}: {e}", ca.display()));
            let certs = reqwest::Certificate::from_pem_bundle(&pem).expect("a PEM CA");
            api = api.tls_certs_merge(certs);
        }
        let mut am = Alertmanager {
            port: free_port(),
            https: o
                .web_config
                .as_deref()
                .is_some_and(|w| w.contains("tls_server_config")),
            dir,
            api: api.build().expect("an HTTP client"),
            basic_auth: o.basic_auth.clone(),
            child: None,
        };
        am.up();
        am
    }

    /// Starts it (again), on the same port and storage.
    pub fn up(&mut self) {
        let d = self.dir.path();
        let mut cmd = Command::new(binary());
        cmd.arg(format!(
            "--config.file={}",
            d.join("alertmanager.yml").display()
        ))
        .arg(format!("--storage.path={}", d.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
        .arg("--cluster.listen-address=")
        .arg("--log.level=warn");
        if d.join("web.yml").exists() {
            cmd.arg(format!("--web.config.file={}", d.join("web.yml").display()));
        }
        let log = std::fs::File::create(d.join("alertmanager.log")).expect("a log file");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (is scripts/services.sh run? it installs prometheus-alertmanager)",
                    binary()
                )
            });
        self.child = Some(child);
        wait_port(self.port, true, || self.log());
    }

    /// Kills it; the port is closed when this returns.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        wait_port(self.port, false, || self.log());
    }

    /// `http://127.0.0.1:PORT` (https with a TLS web config).
    pub fn url(&self) -> String {
        format!(
            "{}://127.0.0.1:{}",
            if self.https { "https" } else { "http" },
            self.port
        )
    }

    /// What it logged (warnings and errors), for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let r = self.api.get(format!("{}{path}", self.url()));
        match &self.basic_auth {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }

    /// `GET /api/v2/alerts`: the active, silenced and inhibited alerts (a resolved one is not
    /// listed), each as the API gives it (`labels`, `annotations`, `startsAt`, `endsAt`,
    /// `generatorURL`, `status.state`).
    pub async fn alerts(&self) -> Vec<serde_json::Value> {
        let r = self
            .get("/api/v2/alerts")
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {}/api/v2/alerts: {e}", self.url()));
        assert!(r.status().is_success(), "GET alerts: {}", r.status());
        r.json().await.expect("a JSON list of alerts")
    }

    /// Adds a silence for `minutes` matching every `(label, value)` exactly; returns its id.
    pub async fn silence(&self, matchers: &[(&str, &str)], minutes: i64) -> String {
        let now = chrono::Utc::now();
        let body = serde_json::json!({
            "matchers": matchers.iter().map(|(n, v)| serde_json::json!({
                "name": n, "value": v, "isRegex": false, "isEqual": true
            })).collect::<Vec<_>>(),
            "startsAt": (now - chrono::Duration::seconds(1)).to_rfc3339(),
            "endsAt": (now + chrono::Duration::minutes(minutes)).to_rfc3339(),
            "createdBy": "monit-batch tests",
            "comment": "a test's silence",
        });
        let mut r = self.api.post(format!("{}/api/v2/silences", self.url()));
        if let Some((u, p)) = &self.basic_auth {
            r = r.basic_auth(u, Some(p));
        }
        let r = r.json(&body).send().await.expect("POST silences");
        let status = r.status();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        assert!(status.is_success(), "POST silences: {status}: {v}");
        v["silenceID"].as_str().unwrap_or_default().to_string()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_port(port: u16, open: bool, log: impl Fn() -> String) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() != open {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Alertmanager on port {port} not {} after 60 s: {}",
            if open { "listening" } else { "stopped" },
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
