//! Fakes of the BOSH director and its UAA (wiremock), serving the documented shapes of the real
//! APIs, and a throwaway Monitoring DB on the real MariaDB.
#![allow(dead_code)]

use monit_plugin_bosh::BoshConfig;
use monit_testkit::TestDb as TestkitDb;
use serde_json::json;
use std::ops::Deref;
use wiremock::matchers::{
    basic_auth, bearer_token, body_string_contains, method, path, query_param,
};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

pub const PAASTA_VMS: &str = include_str!("../fixtures/paasta-vms.ndjson");
pub const CF_VMS: &str = include_str!("../fixtures/cf-vms.ndjson");

pub const USER: &str = "admin";
pub const PASSWORD: &str = "director-pw-123";
pub const CLIENT: &str = "monit-batch";
pub const CLIENT_SECRET: &str = "client-secret-456";

/// How the fake director expects to be called.
#[derive(Clone, Debug)]
pub enum Auth {
    Bearer(String),
    Basic,
}

impl Auth {
    fn on(&self, m: MockBuilder) -> MockBuilder {
        match self {
            Auth::Bearer(t) => m.and(bearer_token(t)),
            Auth::Basic => m.and(basic_auth(USER, PASSWORD)),
        }
    }
}

/// How `GET /deployments/<d>/vms?format=full` answers.
#[derive(Clone, Copy, Debug)]
pub enum Start {
    /// 302 Location: <director>/tasks/<id>, as the director does
    Redirect,
    /// 200 with the task JSON
    Inline,
}

/// How the director runs the `vms` task of one deployment.
pub struct TaskScript<'a> {
    pub deployment: &'a str,
    pub id: u64,
    pub start: Start,
    /// answers `processing` this many times before the final state
    pub processing_polls: u64,
    pub final_state: &'a str,
    /// the task's `result` field: the error text of a failed task
    pub final_result: &'a str,
    /// the NDJSON of `GET /tasks/<id>/output?type=result`
    pub output: &'a str,
}

impl<'a> TaskScript<'a> {
    /// Redirect to the task, done at the first poll, with this output.
    pub fn done(deployment: &'a str, id: u64, output: &'a str) -> Self {
        Self {
            deployment,
            id,
            start: Start::Redirect,
            processing_polls: 0,
            final_state: "done",
            final_result: "",
            output,
        }
    }
    pub fn inline(mut self) -> Self {
        self.start = Start::Inline;
        self
    }
    pub fn polls(mut self, processing: u64) -> Self {
        self.processing_polls = processing;
        self
    }
    pub fn ends(mut self, state: &'a str, result: &'a str) -> Self {
        self.final_state = state;
        self.final_result = result;
        self
    }
}

pub struct FakeBosh {
    pub director: MockServer,
    pub uaa: MockServer,
}

impl FakeBosh {
    pub async fn start() -> Self {
        Self {
            director: MockServer::start().await,
            uaa: MockServer::start().await,
        }
    }

    /// A config for this fake with the password grant; tests adjust it.
    pub fn config(&self, cf_deployment: &str) -> BoshConfig {
        let mut c = BoshConfig::new(self.director.uri(), cf_deployment);
        c.username = USER.into();
        c.password = monit_host::config::secret::Secret::new(PASSWORD);
        c.task_poll_millis = 20;
        c.task_timeout_seconds = 5;
        c.timeout_seconds = 5;
        c
    }

    pub async fn info_uaa(&self) {
        Mock::given(method("GET"))
            .and(path("/info"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "name": "micro-bosh", "uuid": "7c1f0e5e-0000-4000-8000-000000000001", "version": "271.2.0",
                "user": null, "cpi": "openstack_cpi", "stemcell_os": "ubuntu-jammy", "stemcell_version": "1.1",
                "user_authentication": {"type": "uaa", "options": {"url": self.uaa.uri(), "urls": [self.uaa.uri()]}},
                "features": {"dns": {"status": true}, "snapshots": {"status": false}}
            })))
            .mount(&self.director)
            .await;
    }

    pub async fn info_basic(&self) {
        Mock::given(method("GET"))
            .and(path("/info"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "name": "micro-bosh", "uuid": "7c1f0e5e-0000-4000-8000-000000000001", "version": "270.0.0",
                "user": null, "cpi": "vsphere_cpi",
                "user_authentication": {"type": "basic", "options": {}},
                "features": {}
            })))
            .mount(&self.director)
            .await;
    }

    fn token_body(token: &str, expires_in: u64) -> serde_json::Value {
        json!({"access_token": token, "token_type": "bearer", "expires_in": expires_in,
               "scope": "bosh.admin", "jti": "f00dfeed"})
    }

    /// UAA client credentials grant for CLIENT / CLIENT_SECRET (not mounted yet).
    pub fn client_credentials_grant(&self, token: &str, expires_in: u64) -> Mock {
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .and(basic_auth(CLIENT, CLIENT_SECRET))
            .and(body_string_contains("grant_type=client_credentials"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(Self::token_body(token, expires_in)),
            )
    }

    /// UAA password grant for USER / PASSWORD with the public client `bosh_cli` (not mounted yet).
    pub fn password_grant(&self, token: &str, expires_in: u64) -> Mock {
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .and(basic_auth("bosh_cli", ""))
            .and(body_string_contains("grant_type=password"))
            .and(body_string_contains(format!("username={USER}")))
            .and(body_string_contains(format!("password={PASSWORD}")))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(Self::token_body(token, expires_in)),
            )
    }

    /// Anything else the UAA gets is a wrong credential.
    pub async fn uaa_rejects_the_rest(&self) {
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .respond_with(ResponseTemplate::new(401).set_body_json(
                json!({"error": "unauthorized", "error_description": "Bad credentials"}),
            ))
            .with_priority(100)
            .mount(&self.uaa)
            .await;
    }

    pub async fn deployments(&self, names: &[&str], auth: &Auth) {
        let body: Vec<_> = names
            .iter()
            .map(|n| json!({"name": n, "releases": [{"name": "cf", "version": "1.0"}],
                            "stemcells": [{"name": "bosh-openstack-kvm-ubuntu-jammy-go_agent", "version": "1.1"}],
                            "cloud_config": "latest", "teams": []}))
            .collect();
        auth.on(Mock::given(method("GET")).and(path("/deployments")))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&self.director)
            .await;
    }

    fn task_json(id: u64, state: &str, result: &str) -> serde_json::Value {
        json!({"id": id, "state": state, "description": "retrieve vm-stats", "timestamp": 1700000000,
               "started_at": 1699999990, "result": result, "user": USER, "deployment": "x", "context_id": ""})
    }

    /// The whole task flow of one deployment: start, `processing` polls, final state, output.
    pub async fn vms_task(&self, t: &TaskScript<'_>, auth: &Auth) {
        let (deployment, task_id) = (t.deployment, t.id);
        let started = auth.on(Mock::given(method("GET"))
            .and(path(format!("/deployments/{deployment}/vms")))
            .and(query_param("format", "full")));
        let answer = match t.start {
            Start::Redirect => ResponseTemplate::new(302).insert_header(
                "Location",
                format!("{}/tasks/{task_id}", self.director.uri()).as_str(),
            ),
            Start::Inline => {
                ResponseTemplate::new(200).set_body_json(Self::task_json(task_id, "queued", ""))
            }
        };
        started.respond_with(answer).mount(&self.director).await;
        let task_path = format!("/tasks/{task_id}");
        if t.processing_polls > 0 {
            auth.on(Mock::given(method("GET")).and(path(task_path.as_str())))
                .respond_with(ResponseTemplate::new(200).set_body_json(Self::task_json(
                    task_id,
                    "processing",
                    "",
                )))
                .up_to_n_times(t.processing_polls)
                .with_priority(1)
                .mount(&self.director)
                .await;
        }
        auth.on(Mock::given(method("GET")).and(path(task_path.as_str())))
            .respond_with(ResponseTemplate::new(200).set_body_json(Self::task_json(
                task_id,
                t.final_state,
                t.final_result,
            )))
            .with_priority(5)
            .mount(&self.director)
            .await;
        auth.on(Mock::given(method("GET"))
            .and(path(format!("/tasks/{task_id}/output")))
            .and(query_param("type", "result")))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw(t.output.to_string(), "text/plain"),
            )
            .mount(&self.director)
            .await;
    }

    /// A deployment whose VMs must never be asked for.
    pub async fn never_list(&self, deployment: &str) {
        Mock::given(method("GET"))
            .and(path(format!("/deployments/{deployment}/vms")))
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .named(format!("vms of unconfigured deployment {deployment}"))
            .mount(&self.director)
            .await;
    }

    pub async fn token_requests(&self) -> usize {
        self.uaa
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == "/oauth/token")
            .count()
    }
}

pub fn sync_ctx() -> monit_host::plugin::SyncContext {
    monit_host::plugin::SyncContext {
        now: chrono::Utc::now(),
    }
}

// ---------------------------------------------------------------------------------------------
// A throwaway Monitoring DB

/// A migrated Monitoring DB of the test's own, with the query the assertions read.
pub struct TestDb(TestkitDb);

impl Deref for TestDb {
    type Target = TestkitDb;
    fn deref(&self) -> &TestkitDb {
        &self.0
    }
}

impl TestDb {
    pub async fn new() -> Self {
        let db = TestkitDb::create("bosh").await;
        monit_host::store::db::MIGRATOR.run(&db.pool).await.unwrap();
        Self(db)
    }

    pub async fn drop_db(self) {
        self.0.drop().await;
    }

    /// (id, name, ip, vm_type, zone name) ordered by name
    pub async fn vms(&self) -> Vec<(i64, String, String, String, Option<String>)> {
        sqlx::query_as(
            "SELECT CAST(v.id AS SIGNED), v.name, v.ip, v.vm_type, z.name \
             FROM vms v LEFT JOIN zones z ON z.id = v.zone_id ORDER BY v.name",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }
}
