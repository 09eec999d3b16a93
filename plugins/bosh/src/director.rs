//! A small client of the BOSH director's HTTP API: what the VM inventory sync needs, no more.
//!
//! `GET /info` tells how to log in (basic auth or a UAA token). The VM list of a deployment is a
//! director task: `GET /deployments/<name>/vms?format=full` starts it (302 to `/tasks/<id>`, or
//! 200 with the task), `GET /tasks/<id>` is polled until the task ends, and
//! `GET /tasks/<id>/output?type=result` holds one VM per line (JSON).

use crate::config::BoshConfig;
use anyhow::{Context as _, anyhow, bail};
use monit_host::config::secret::Secret;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

/// The public UAA client of the BOSH CLI, used for the password grant.
const BOSH_CLI_CLIENT: &str = "bosh_cli";

/// `GET /info`
#[derive(Clone, Debug, Deserialize)]
pub struct Info {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    pub user_authentication: UserAuthentication,
}

#[derive(Clone, Debug, Deserialize)]
pub struct UserAuthentication {
    /// `basic` or `uaa`
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub options: AuthOptions,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuthOptions {
    /// The UAA base URL when `type` is `uaa`.
    #[serde(default)]
    pub url: Option<String>,
}

/// One entry of `GET /deployments`.
#[derive(Clone, Debug, Deserialize)]
pub struct Deployment {
    pub name: String,
}

/// A director task (`GET /tasks/<id>`).
#[derive(Clone, Debug, Deserialize)]
pub struct Task {
    pub id: u64,
    /// queued, processing, cancelling, done, error, cancelled, timeout
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The error text when the task failed.
    #[serde(default)]
    pub result: Option<String>,
    /// the deployment the task works on (none for director-wide tasks)
    #[serde(default)]
    pub deployment: Option<String>,
}

/// One line of the `vms?format=full` task result; the fields the inventory reads. The rest
/// (vitals, processes, …) is ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct DirectorVm {
    #[serde(default)]
    pub job_name: Option<String>,
    #[serde(default)]
    pub index: Option<i64>,
    /// the instance id (a UUID)
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub ips: Option<Vec<String>>,
    #[serde(default)]
    pub az: Option<String>,
    #[serde(default)]
    pub vm_cid: Option<String>,
    #[serde(default)]
    pub job_state: Option<String>,
}

/// How the director wants to be called, learned from `GET /info`.
#[derive(Clone, Debug)]
enum AuthMode {
    Basic,
    Uaa { token_url: Url },
}

struct Token {
    value: Secret,
    refresh_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Secret,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct UaaError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// Client of one director (and its UAA). Cheap to share; the token is cached inside.
pub struct DirectorClient {
    http: reqwest::Client,
    base: Url,
    username: String,
    password: Secret,
    uaa_client: Option<(String, Secret)>,
    task_timeout: Duration,
    task_poll: Duration,
    max_answer_bytes: u64,
    auth: Mutex<Option<AuthMode>>,
    token: Mutex<Option<Token>>,
}

impl DirectorClient {
    /// Builds the HTTP client (timeouts, CA, no automatic redirects). Does not call the director.
    pub fn new(config: &BoshConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let base = config.director_url()?;
        let mut builder = reqwest::Client::builder()
            .timeout(config.request_timeout())
            .connect_timeout(config.request_timeout())
            // The task redirect is followed by hand: it must keep the auth header, and a
            // redirect anywhere else is an error worth seeing.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("monit-batch/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("plugins.bosh.ca_cert: cannot read {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!(
                    "plugins.bosh.ca_cert: {} is not a PEM certificate file",
                    path.display()
                )
            })?;
            if certs.is_empty() {
                bail!(
                    "plugins.bosh.ca_cert: {} holds no PEM certificate",
                    path.display()
                );
            }
            builder = builder.tls_certs_merge(certs);
        }
        if config.insecure_skip_verify {
            tracing::warn!(
                director = %base,
                "plugins.bosh.insecure_skip_verify = true: TLS certificates of the BOSH director and UAA \
                 are NOT verified; anyone on the network path can read the credentials. Set ca_cert instead."
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .context("building the HTTP client of the BOSH director")?;
        let uaa_client = match (&config.uaa_client_id, &config.uaa_client_secret) {
            (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
            _ => None,
        };
        let (username, password) = config.credentials()?;
        Ok(Self {
            http,
            base,
            username,
            password,
            uaa_client,
            task_timeout: config.task_timeout(),
            task_poll: config.task_poll_interval(),
            max_answer_bytes: config.max_answer_bytes,
            auth: Mutex::new(None),
            token: Mutex::new(None),
        })
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> anyhow::Result<Url> {
        self.base
            .join(path)
            .with_context(|| format!("BOSH director URL {} + {path}", self.base))
    }

    /// `GET /info`, unauthenticated.
    pub async fn info(&self) -> anyhow::Result<Info> {
        let url = self.url("/info")?;
        let resp = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| request_error(e, format!("BOSH director GET {url}")))?;
        let resp = expect_success(resp, "BOSH director", &url).await?;
        self.read_json(resp, "BOSH director", &url).await
    }

    /// The whole answer as JSON, at most `max_answer_bytes`.
    async fn read_json<T: DeserializeOwned>(
        &self,
        resp: Response,
        service: &str,
        url: &Url,
    ) -> anyhow::Result<T> {
        let body = monit_host::metric_store::bounded::read(resp, self.max_answer_bytes)
            .await
            .map_err(|e| self.read_error(e, service, url))?;
        serde_json::from_slice(&body).with_context(|| {
            format!(
                "{service} GET {url}: unexpected answer {}",
                snippet(&String::from_utf8_lossy(&body[..body.len().min(400)]))
            )
        })
    }

    fn read_error(
        &self,
        e: monit_host::metric_store::bounded::ReadError,
        service: &str,
        url: &Url,
    ) -> anyhow::Error {
        match e {
            monit_host::metric_store::bounded::ReadError::TooLarge { limit } => anyhow!(
                "{service} GET {url}: the answer is larger than plugins.bosh.max_answer_bytes = {limit} bytes"
            ),
            other => anyhow!("{service} GET {url}: {other}"),
        }
    }

    async fn auth_mode(&self) -> anyhow::Result<AuthMode> {
        let mut guard = self.auth.lock().await;
        if let Some(mode) = guard.as_ref() {
            return Ok(mode.clone());
        }
        let info = self.info().await?;
        let mode = match info.user_authentication.kind.as_str() {
            "basic" => AuthMode::Basic,
            "uaa" => {
                let raw = info.user_authentication.options.url.as_deref().ok_or_else(|| {
                    anyhow!(
                        "BOSH director {}/info says user_authentication.type = uaa but gives no options.url",
                        self.base
                    )
                })?;
                // a URL from an answer: its userinfo (if any) is neither kept nor shown
                let (uaa, _) = monit_host::config::redact::split_userinfo(
                    &format!("BOSH director {}/info: UAA URL", self.base),
                    raw,
                )?;
                let token_url = uaa
                    .join(&format!("{}/oauth/token", uaa.path().trim_end_matches('/')))
                    .with_context(|| {
                        format!(
                            "UAA token URL from {:?}",
                            monit_host::config::redact::url(raw)
                        )
                    })?;
                AuthMode::Uaa { token_url }
            }
            other => bail!(
                "BOSH director {}/info: unknown user_authentication.type {other:?} (expected basic or uaa)",
                self.base
            ),
        };
        tracing::debug!(director = %self.base, mode = ?mode, "BOSH director authentication");
        *guard = Some(mode.clone());
        Ok(mode)
    }

    /// A token that is valid for a while yet; a new one when the cached one is about to expire
    /// or was rejected (`force`).
    async fn token(&self, token_url: &Url, force: bool) -> anyhow::Result<Secret> {
        let mut guard = self.token.lock().await;
        if !force
            && let Some(t) = guard.as_ref()
            && Instant::now() < t.refresh_at
        {
            return Ok(t.value.clone());
        }
        *guard = None;
        let token = self.request_token(token_url).await?;
        let value = token.value.clone();
        *guard = Some(token);
        Ok(value)
    }

    async fn request_token(&self, token_url: &Url) -> anyhow::Result<Token> {
        let (who, request) = match &self.uaa_client {
            Some((id, secret)) => (
                format!("client {id:?} (client credentials grant)"),
                self.http
                    .post(token_url.clone())
                    .basic_auth(id, Some(secret.expose()))
                    .form(&[("grant_type", "client_credentials")]),
            ),
            None => (
                format!(
                    "user {:?} (password grant, client {BOSH_CLI_CLIENT})",
                    self.username
                ),
                self.http
                    .post(token_url.clone())
                    .basic_auth(BOSH_CLI_CLIENT, Some(""))
                    .form(&[
                        ("grant_type", "password"),
                        ("username", self.username.as_str()),
                        ("password", self.password.expose()),
                    ]),
            ),
        };
        let started = Instant::now();
        let resp = request
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| request_error(e, format!("UAA POST {token_url} for {who}")))?;
        let status = resp.status();
        if !status.is_success() {
            let body = monit_host::metric_store::bounded::prefix(resp, 64 * 1024).await;
            let detail = match serde_json::from_str::<UaaError>(&body) {
                Ok(e) => format!(
                    "{}: {}",
                    e.error.unwrap_or_default(),
                    e.error_description.unwrap_or_default()
                ),
                Err(_) => snippet(&body),
            };
            bail!("UAA POST {token_url} refused a token for {who}: HTTP {status}: {detail}");
        }
        let body = monit_host::metric_store::bounded::read(resp, self.max_answer_bytes)
            .await
            .map_err(|e| self.read_error(e, "UAA", token_url))?;
        // The body holds the token: report where the JSON broke, never what it said.
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            anyhow!(
                "UAA POST {token_url}: the answer is not a token response ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            )
        })?;
        if parsed.access_token.is_empty() {
            bail!("UAA POST {token_url}: the answer has an empty access_token");
        }
        // Renew a little before expiry: a tenth of the lifetime, at most a minute. Without
        // expires_in, renew after 5 minutes rather than guess the UAA's setting.
        // bounded: a huge expires_in from outside must not overflow the clock
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(300).min(86_400));
        let margin = (lifetime / 10).min(Duration::from_secs(60));
        Ok(Token {
            value: parsed.access_token,
            refresh_at: started + lifetime.saturating_sub(margin),
        })
    }

    /// Sends an authorized request; on a 401 with UAA, gets a fresh token and tries once more.
    async fn send(
        &self,
        method: Method,
        url: &Url,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> anyhow::Result<Response> {
        let what = format!("BOSH director {method} {url}");
        match self.auth_mode().await? {
            AuthMode::Basic => {
                let req = build(
                    self.http
                        .request(method.clone(), url.clone())
                        .basic_auth(&self.username, Some(self.password.expose())),
                );
                let resp = req
                    .send()
                    .await
                    .map_err(|e| request_error(e, what.clone()))?;
                if resp.status() == StatusCode::UNAUTHORIZED {
                    // The director may have moved to UAA: read /info again next time.
                    *self.auth.lock().await = None;
                    bail!(
                        "{what}: HTTP 401: the director refused user {:?} (basic auth)",
                        self.username
                    );
                }
                Ok(resp)
            }
            AuthMode::Uaa { token_url } => {
                for attempt in 0..2 {
                    let token = self.token(&token_url, attempt > 0).await?;
                    let req = build(
                        self.http
                            .request(method.clone(), url.clone())
                            .bearer_auth(token.expose()),
                    );
                    let resp = req
                        .send()
                        .await
                        .map_err(|e| request_error(e, what.clone()))?;
                    if resp.status() != StatusCode::UNAUTHORIZED {
                        return Ok(resp);
                    }
                    tracing::info!(request = %what, "BOSH director answered 401; getting a fresh UAA token");
                }
                *self.auth.lock().await = None;
                bail!(
                    "{what}: HTTP 401 even with a fresh UAA token from {token_url}: the account lacks access"
                )
            }
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = self.url(path)?;
        let resp = self.send(Method::GET, &url, |r| r).await?;
        let resp = expect_success(resp, "BOSH director", &url).await?;
        self.read_json(resp, "BOSH director", &url).await
    }

    /// `GET /deployments`
    pub async fn deployments(&self) -> anyhow::Result<Vec<Deployment>> {
        self.get_json("/deployments").await
    }

    /// `GET /tasks?state=processing,queued&verbose=1`: the tasks running or waiting to run.
    pub async fn tasks_in_progress(&self) -> anyhow::Result<Vec<Task>> {
        self.get_json("/tasks?state=processing,queued&verbose=1")
            .await
    }

    /// `GET /tasks/<id>`
    pub async fn task(&self, id: u64) -> anyhow::Result<Task> {
        self.get_json(&format!("/tasks/{id}")).await
    }

    /// The VMs of one deployment, complete or an error: starts the `vms?format=full` task,
    /// waits for it (bounded by `task_timeout_seconds`) and parses its result.
    pub async fn deployment_vms(&self, deployment: &str) -> anyhow::Result<Vec<DirectorVm>> {
        let mut url = self.url("/deployments/")?;
        url.path_segments_mut()
            .map_err(|()| anyhow!("BOSH director URL {} cannot take a path", self.base))?
            .pop_if_empty()
            .push(deployment)
            .push("vms");
        url.query_pairs_mut().append_pair("format", "full");
        let resp = self.send(Method::GET, &url, |r| r).await?;
        let task = match resp.status() {
            s if s.is_redirection() => {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        anyhow!("BOSH director GET {url}: HTTP {s} without a Location")
                    })?;
                let id = task_id_from_location(location).ok_or_else(|| {
                    anyhow!("BOSH director GET {url}: HTTP {s} to {location:?}, which is not /tasks/<id>")
                })?;
                self.task(id).await?
            }
            _ => {
                let resp = expect_success(resp, "BOSH director", &url).await?;
                self.read_json::<Task>(resp, "BOSH director", &url).await?
            }
        };
        let task = self.wait_for_task(task, deployment).await?;
        self.task_result_vms(task.id).await
    }

    async fn wait_for_task(&self, mut task: Task, deployment: &str) -> anyhow::Result<Task> {
        let deadline = Instant::now() + self.task_timeout;
        loop {
            match task.state.as_str() {
                "done" => return Ok(task),
                "error" | "cancelled" | "timeout" => bail!(
                    "BOSH director task {} ({}) for the VMs of deployment {deployment:?} ended in state {:?}: {}",
                    task.id,
                    task.description.as_deref().unwrap_or("vms"),
                    task.state,
                    task.result.as_deref().unwrap_or("no message")
                ),
                _ => {}
            }
            if Instant::now() + self.task_poll > deadline {
                bail!(
                    "BOSH director task {} for the VMs of deployment {deployment:?} did not finish within {} s \
                     (still {:?}; plugins.bosh.task_timeout_seconds)",
                    task.id,
                    self.task_timeout.as_secs(),
                    task.state
                );
            }
            tokio::time::sleep(self.task_poll).await;
            task = self.task(task.id).await?;
        }
    }

    /// `GET /tasks/<id>/output?type=result`: one JSON VM per line.
    async fn task_result_vms(&self, id: u64) -> anyhow::Result<Vec<DirectorVm>> {
        let mut url = self.url(&format!("/tasks/{id}/output"))?;
        url.query_pairs_mut().append_pair("type", "result");
        let resp = self.send(Method::GET, &url, |r| r).await?;
        let mut resp = expect_success(resp, "BOSH director", &url).await?;
        // Parsed line by line as it arrives: memory follows the number of VMs (the fields kept),
        // not the size of the answer (vitals, processes, ...).
        let mut lines = VmLines::default();
        let read = monit_host::metric_store::bounded::for_each_chunk(
            &mut resp,
            self.max_answer_bytes,
            |chunk| lines.push(chunk),
        )
        .await;
        read.map_err(|e| self.read_error(e, "BOSH director", &url))?;
        lines
            .finish()
            .with_context(|| format!("BOSH director GET {url}"))
    }
}

/// The newline-delimited JSON of a `vms` task result, parsed a line at a time as chunks come;
/// any bad line fails the whole answer.
#[derive(Default)]
pub struct VmLines {
    partial: Vec<u8>,
    line: usize,
    vms: Vec<DirectorVm>,
    error: Option<anyhow::Error>,
}

impl VmLines {
    pub fn push(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while self.error.is_none() {
            let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
                self.partial.extend_from_slice(rest);
                return;
            };
            self.partial.extend_from_slice(&rest[..nl]);
            rest = &rest[nl + 1..];
            let line = std::mem::take(&mut self.partial);
            self.parse_line(&line);
        }
    }

    fn parse_line(&mut self, line: &[u8]) {
        self.line += 1;
        let line = line.trim_ascii();
        if line.is_empty() {
            return;
        }
        match serde_json::from_slice::<DirectorVm>(line) {
            Ok(vm) => self.vms.push(vm),
            Err(e) => {
                self.error = Some(anyhow!(
                    "task output line {} is not a VM JSON object: {e}: {}",
                    self.line,
                    snippet(&String::from_utf8_lossy(&line[..line.len().min(400)]))
                ))
            }
        }
    }

    pub fn finish(mut self) -> anyhow::Result<Vec<DirectorVm>> {
        if self.error.is_none() && !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.parse_line(&last);
        }
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.vms),
        }
    }
}

/// Parses a whole `vms` task result (see [`VmLines`]).
pub fn parse_vm_lines(text: &str) -> anyhow::Result<Vec<DirectorVm>> {
    let mut lines = VmLines::default();
    lines.push(text.as_bytes());
    lines.finish()
}

/// `https://director.example:25555/tasks/42` or `/tasks/42` → 42.
fn task_id_from_location(location: &str) -> Option<u64> {
    let path = location.split(['?', '#']).next()?;
    let (_, rest) = path.rsplit_once("/tasks/")?;
    rest.trim_end_matches('/').parse().ok()
}

async fn expect_success(resp: Response, service: &str, url: &Url) -> anyhow::Result<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = monit_host::metric_store::bounded::prefix(resp, 64 * 1024).await;
    bail!("{service} GET {url}: HTTP {status}: {}", snippet(&body))
}

/// A failed request, with a hint when the certificate was the problem.
fn request_error(e: reqwest::Error, what: String) -> anyhow::Error {
    let err = anyhow::Error::new(e);
    let chain = format!("{err:#}");
    if chain.contains("certificate") {
        err.context(format!(
            "{what} (TLS: set plugins.bosh.ca_cert to the PEM file of the CA that signed this server's certificate)"
        ))
    } else {
        err.context(what)
    }
}

/// The start of a body, for an error message.
fn snippet(text: &str) -> String {
    const MAX: usize = 200;
    let text = text.trim();
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut:?}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_from_locations() {
        assert_eq!(
            task_id_from_location("https://director.example:25555/tasks/42"),
            Some(42)
        );
        assert_eq!(task_id_from_location("/tasks/7"), Some(7));
        assert_eq!(task_id_from_location("/tasks/7?x=1"), Some(7));
        assert_eq!(task_id_from_location("/deployments/x"), None);
        assert_eq!(task_id_from_location("/tasks/abc"), None);
    }

    #[test]
    fn vm_lines() {
        let vms = parse_vm_lines(
            "{\"job_name\":\"cell_z1\",\"index\":0,\"ips\":[\"10.0.0.1\"],\"az\":null,\"vitals\":{}}\n\n\
             {\"job_name\":\"router\",\"index\":null,\"id\":\"abc\",\"ips\":[]}\n",
        )
        .unwrap();
        assert_eq!(vms.len(), 2);
        assert_eq!(vms[0].job_name.as_deref(), Some("cell_z1"));
        assert_eq!(vms[1].index, None);
        let err = parse_vm_lines("{\"job_name\":\"a\"}\nnot json\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
        let err = parse_vm_lines("{\"job_name\":\"a\",\"ips\":\"10.0.0.1\"}").unwrap_err();
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
    }

    #[test]
    fn vm_lines_split_anywhere_across_chunks() {
        let text = "{\"job_name\":\"a\",\"index\":0}\r\n\n{\"job_name\":\"b\",\"index\":1}";
        let mut lines = VmLines::default();
        for b in text.as_bytes() {
            lines.push(std::slice::from_ref(b));
        }
        let vms = lines.finish().unwrap();
        assert_eq!(vms.len(), 2, "the last line needs no newline");
        assert_eq!(vms[1].job_name.as_deref(), Some("b"));
        let mut lines = VmLines::default();
        lines.push(b"{\"job_name\":\"a\"}\nnot js");
        lines.push(b"on\n{\"job_name\":\"c\"}\n");
        let err = lines.finish().unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("not json"), "{err}");
    }

    #[test]
    fn snippets_are_bounded() {
        let long = "x".repeat(1000);
        assert!(snippet(&long).len() < 220);
    }
}
