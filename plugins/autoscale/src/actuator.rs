//! Actuators: the platform APIs that change an app's instance count.
//!
//! * [`PortalActuator`]: the PaaS-TA portal endpoint the original called
//!   (`POST <portal_url>/external/app/updateApp`, every value a string). The portal adds or
//!   removes one instance per call and cannot report the current count.
//! * [`CfActuator`]: the Cloud Controller v3 API with a UAA token: reads the `web` process's
//!   instance count and sets it.
//!
//! Both retry a 5xx, a 408/429 and a network error with exponential backoff; any other 4xx is
//! the platform saying no (quota, unknown app, bad credentials) and is reported at once.

use crate::config::{ActuatorKind, ActuatorSettings, AutoscaleConfig, Grant};
use crate::decide::Cause;
use anyhow::Context as _;
use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable as _};
use monit_host::config::secret::Secret;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Why a call failed, and whether trying again may help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActError {
    /// 5xx, 408, 429, a timeout or a connection error
    #[error("{0}")]
    Transient(String),
    /// any other refusal: retrying would get the same answer
    #[error("{0}")]
    Permanent(String),
}

impl ActError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ActError::Transient(_))
    }
}

/// One change to make.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleRequest<'a> {
    pub app_guid: &'a str,
    pub app_name: &'a str,
    pub from: i64,
    pub to: i64,
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    pub cause: Cause,
}

#[async_trait]
pub trait Actuator: Send + Sync {
    fn kind(&self) -> ActuatorKind;
    /// The instance count the platform runs for the app; `None` when this actuator cannot tell.
    async fn current_instances(&self, app_guid: &str) -> Result<Option<i64>, ActError>;
    /// Makes the change; returns the instance count the platform now has (or will have).
    async fn scale(&self, req: &ScaleRequest<'_>) -> Result<i64, ActError>;
}

/// Retries transient failures with exponential backoff and jitter.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub max_times: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T, ActError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ActError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_times)
            .with_jitter();
        op.retry(backoff)
            .sleep(tokio::time::sleep)
            .when(ActError::is_transient)
            .notify(|e, delay| tracing::warn!(call = what, error = %e, retry_in = ?delay, "autoscale: call failed, retrying"))
            .await
    }
}

/// The HTTP client of both actuators: one timeout, optional private CA, optional no-verify.
pub fn http_client(cfg: &AutoscaleConfig) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(cfg.timeout())
        .connect_timeout(cfg.timeout().min(Duration::from_secs(10)))
        .user_agent(concat!("monit-batch-autoscale/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &cfg.ca_file {
        let pem = std::fs::read(ca).with_context(|| {
            format!("[plugins.autoscale] ca_file {}: cannot read", ca.display())
        })?;
        let cert = reqwest::Certificate::from_pem(&pem).with_context(|| {
            format!(
                "[plugins.autoscale] ca_file {}: not a PEM certificate",
                ca.display()
            )
        })?;
        b = b.add_root_certificate(cert);
    }
    if cfg.insecure_skip_verify {
        tracing::warn!(
            "[plugins.autoscale] insecure_skip_verify is on: portal, Cloud Controller and UAA TLS certificates are NOT verified"
        );
        b = b.danger_accept_invalid_certs(true);
    }
    b.build()
        .context("[plugins.autoscale] cannot build the HTTP client")
}

pub fn build(cfg: &AutoscaleConfig, retry: RetryPolicy) -> anyhow::Result<Arc<dyn Actuator>> {
    let http = http_client(cfg)?;
    Ok(match cfg.actuator_settings()? {
        ActuatorSettings::Portal { url, auth } => Arc::new(PortalActuator {
            http,
            url,
            auth,
            retry,
        }),
        ActuatorSettings::Cf { api, uaa, grant } => Arc::new(CfActuator {
            http,
            api,
            configured_uaa: uaa,
            grant,
            retry,
            state: Mutex::new(CfState::default()),
        }),
    })
}

fn transport_error(what: &str, e: reqwest::Error) -> ActError {
    // reqwest's own message is only "error sending request"; the cause (timed out, connection
    // refused, certificate) is in its source chain. The URL holds no secret here.
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut msg = format!("{what}: {kind}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        msg.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    ActError::Transient(msg)
}

fn status_error(what: &str, status: reqwest::StatusCode, body: &str) -> ActError {
    let detail = describe_error_body(body);
    let msg = if detail.is_empty() {
        format!("{what}: HTTP {}", status.as_u16())
    } else {
        format!("{what}: HTTP {}: {detail}", status.as_u16())
    };
    if status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
    {
        ActError::Transient(msg)
    } else {
        ActError::Permanent(msg)
    }
}

/// The useful part of an error body: CF's `errors[].title/detail`, UAA's
/// `error/error_description`, else the start of the text.
fn describe_error_body(body: &str) -> String {
    #[derive(Deserialize)]
    struct CfErrors {
        errors: Vec<CfError>,
    }
    #[derive(Deserialize)]
    struct CfError {
        #[serde(default)]
        title: String,
        #[serde(default)]
        detail: String,
    }
    #[derive(Deserialize)]
    struct UaaError {
        error: String,
        #[serde(default)]
        error_description: String,
    }
    if let Ok(cf) = serde_json::from_str::<CfErrors>(body) {
        return cf
            .errors
            .iter()
            .map(|e| format!("{} {}", e.title, e.detail).trim().to_string())
            .collect::<Vec<_>>()
            .join("; ");
    }
    if let Ok(u) = serde_json::from_str::<UaaError>(body) {
        return format!("{} {}", u.error, u.error_description)
            .trim()
            .to_string();
    }
    body.chars()
        .take(200)
        .collect::<String>()
        .trim()
        .to_string()
}

/// Sends a request; only a failure to get an answer is an error here.
async fn exchange(
    what: &str,
    req: reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, String), ActError> {
    let resp = req.send().await.map_err(|e| transport_error(what, e))?;
    let status = resp.status();
    let body = monit_host::metric_store::bounded::read(resp, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| match e {
            monit_host::metric_store::bounded::ReadError::Read(e) => transport_error(what, e),
            too_large => ActError::Permanent(format!("{what}: {too_large}")),
        })?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The portal, the Cloud Controller and UAA answer with small JSON documents (a process, a
/// token); anything larger is not one of them.
const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;

/// Sends a request and returns the body of a 2xx answer.
async fn send(what: &str, req: reqwest::RequestBuilder) -> Result<String, ActError> {
    let (status, body) = exchange(what, req).await?;
    if !status.is_success() {
        return Err(status_error(what, status, &body));
    }
    Ok(body)
}

// ---------------------------------------------------------------------------------------------
// PaaS-TA portal

pub struct PortalActuator {
    http: reqwest::Client,
    url: url::Url,
    auth: Option<monit_host::config::redact::UrlCredentials>,
    retry: RetryPolicy,
}

/// The body the portal expects: every value a string (spec 1.4).
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PortalBody<'a> {
    app_name: &'a str,
    app_guid: &'a str,
    cpu_usage: String,
    memory_usage: String,
    action: &'static str,
    instance_cnt: String,
    cause: &'static str,
}

fn usage_text(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}"))
        .unwrap_or_else(|| "0".to_string())
}

impl PortalActuator {
    fn endpoint(&self) -> String {
        format!(
            "{}/external/app/updateApp",
            self.url.as_str().trim_end_matches('/')
        )
    }
}

#[async_trait]
impl Actuator for PortalActuator {
    fn kind(&self) -> ActuatorKind {
        ActuatorKind::Portal
    }

    async fn current_instances(&self, _app_guid: &str) -> Result<Option<i64>, ActError> {
        Ok(None)
    }

    async fn scale(&self, req: &ScaleRequest<'_>) -> Result<i64, ActError> {
        let out = req.to > req.from;
        let body = PortalBody {
            app_name: req.app_name,
            app_guid: req.app_guid,
            cpu_usage: usage_text(req.cpu_percent),
            memory_usage: usage_text(req.memory_percent),
            action: if out { "O" } else { "I" },
            instance_cnt: req.from.to_string(),
            cause: req.cause.portal_code(),
        };
        let url = self.endpoint();
        let what = format!("PaaS-TA portal POST {url}");
        self.retry
            .run(&what, || async {
                let mut req = self.http.post(&url).json(&body);
                if let Some(a) = &self.auth {
                    req = req.basic_auth(&a.user, Some(a.password.expose()));
                }
                send(&what, req).await.map(|_| ())
            })
            .await?;
        // the portal moves one instance per call, whatever the distance to the target
        Ok(if out { req.from + 1 } else { req.from - 1 })
    }
}

// ---------------------------------------------------------------------------------------------
// Cloud Foundry Cloud Controller v3 + UAA

pub struct CfActuator {
    http: reqwest::Client,
    api: url::Url,
    configured_uaa: Option<url::Url>,
    grant: Grant,
    retry: RetryPolicy,
    state: Mutex<CfState>,
}

#[derive(Default)]
struct CfState {
    uaa: Option<url::Url>,
    token: Option<Token>,
}

struct Token {
    value: Secret,
    /// renew from here on, ahead of the real expiry
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct RootAnswer {
    links: RootLinks,
}
#[derive(Deserialize)]
struct RootLinks {
    uaa: Option<Link>,
}
#[derive(Deserialize)]
struct Link {
    href: String,
}

#[derive(Deserialize)]
struct Process {
    instances: i64,
}

/// The public client the cf CLI logs in with.
const CF_CLI_CLIENT: &str = "cf";

impl CfActuator {
    fn url(&self, segments: &[&str]) -> String {
        let mut u = self.api.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty().extend(segments);
        }
        u.to_string()
    }

    async fn uaa(&self, state: &mut CfState) -> Result<url::Url, ActError> {
        if let Some(u) = self.configured_uaa.clone().or_else(|| state.uaa.clone()) {
            return Ok(u);
        }
        let url = self.url(&[""]);
        let what = format!("Cloud Controller GET {url} (UAA discovery)");
        let body = send(
            &what,
            self.http.get(&url).header("accept", "application/json"),
        )
        .await?;
        let root: RootAnswer = serde_json::from_str(&body)
            .map_err(|e| ActError::Permanent(format!("{what}: unexpected answer: {e}")))?;
        let href = root.links.uaa.map(|l| l.href).ok_or_else(|| {
            ActError::Permanent(format!(
                "{what}: no links.uaa.href; set uaa_url in [plugins.autoscale]"
            ))
        })?;
        // a URL from an answer: any userinfo in it is neither kept nor shown
        let (uaa, _) =
            monit_host::config::redact::split_userinfo(&format!("{what}: links.uaa.href"), &href)
                .map_err(|e| ActError::Permanent(e.to_string()))?;
        state.uaa = Some(uaa.clone());
        Ok(uaa)
    }

    async fn token(&self) -> Result<Secret, ActError> {
        let mut state = self.state.lock().await;
        if let Some(t) = &state.token
            && Instant::now() < t.renew_at
        {
            return Ok(t.value.clone());
        }
        let uaa = self.uaa(&mut state).await?;
        let url = format!("{}/oauth/token", uaa.as_str().trim_end_matches('/'));
        let what = format!("UAA POST {url}");
        let req = self.http.post(&url).header("accept", "application/json");
        let req = match &self.grant {
            Grant::ClientCredentials {
                client_id,
                client_secret,
            } => req
                .basic_auth(client_id, Some(client_secret.expose()))
                .form(&[("grant_type", "client_credentials")]),
            Grant::Password { username, password } => {
                req.basic_auth(CF_CLI_CLIENT, Some("")).form(&[
                    ("grant_type", "password"),
                    ("username", username.as_str()),
                    ("password", password.expose()),
                ])
            }
        };
        let body = send(&what, req).await?;
        let answer: TokenAnswer = serde_json::from_str(&body)
            .map_err(|_| ActError::Permanent(format!("{what}: the answer has no access_token")))?;
        // bounded: a huge expires_in from outside must not overflow the clock
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(300).min(86_400));
        // renew a minute early (or at half-life for short tokens), so no call carries a token
        // that expires in flight
        let margin = Duration::from_secs(60).min(lifetime / 2);
        let value = Secret::new(answer.access_token);
        state.token = Some(Token {
            value: value.clone(),
            renew_at: Instant::now() + lifetime - margin,
        });
        Ok(value)
    }

    /// A Cloud Controller call with a token; a 401 drops the token so the retry gets a new one.
    async fn authorized(
        &self,
        what: &str,
        make: impl Fn(&Secret) -> reqwest::RequestBuilder,
    ) -> Result<String, ActError> {
        let token = self.token().await?;
        let (status, body) = exchange(what, make(&token)).await?;
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // revoked or expired early: worth exactly one more try with a new token
            self.state.lock().await.token = None;
            return Err(ActError::Transient(format!(
                "{}; the token is renewed for the next attempt",
                status_error(what, status, &body)
            )));
        }
        if !status.is_success() {
            return Err(status_error(what, status, &body));
        }
        Ok(body)
    }
}

#[async_trait]
impl Actuator for CfActuator {
    fn kind(&self) -> ActuatorKind {
        ActuatorKind::Cf
    }

    async fn current_instances(&self, app_guid: &str) -> Result<Option<i64>, ActError> {
        let url = self.url(&["v3", "apps", app_guid, "processes", "web"]);
        let what = format!("Cloud Controller GET {url}");
        let body = self
            .retry
            .run(&what, || {
                self.authorized(&what, |t| {
                    self.http
                        .get(&url)
                        .bearer_auth(t.expose())
                        .header("accept", "application/json")
                })
            })
            .await?;
        let p: Process = serde_json::from_str(&body)
            .map_err(|e| ActError::Permanent(format!("{what}: unexpected answer: {e}")))?;
        Ok(Some(p.instances))
    }

    async fn scale(&self, req: &ScaleRequest<'_>) -> Result<i64, ActError> {
        let url = self.url(&[
            "v3",
            "apps",
            req.app_guid,
            "processes",
            "web",
            "actions",
            "scale",
        ]);
        let what = format!("Cloud Controller POST {url}");
        let payload = serde_json::json!({ "instances": req.to });
        let body = self
            .retry
            .run(&what, || {
                self.authorized(&what, |t| {
                    self.http
                        .post(&url)
                        .bearer_auth(t.expose())
                        .header("accept", "application/json")
                        .json(&payload)
                })
            })
            .await?;
        // 202 carries the process; if it does not parse, the request was still accepted
        Ok(serde_json::from_str::<Process>(&body)
            .map(|p| p.instances)
            .unwrap_or(req.to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        use reqwest::StatusCode as S;
        assert!(status_error("x", S::SERVICE_UNAVAILABLE, "").is_transient());
        assert!(status_error("x", S::TOO_MANY_REQUESTS, "").is_transient());
        assert!(!status_error("x", S::UNPROCESSABLE_ENTITY, "").is_transient());
        assert!(!status_error("x", S::NOT_FOUND, "").is_transient());
    }

    #[test]
    fn cf_and_uaa_error_bodies_are_summarized() {
        let cf = r#"{"errors":[{"code":10008,"title":"CF-UnprocessableEntity","detail":"memory quota exceeded"}]}"#;
        let e = status_error("POST scale", reqwest::StatusCode::UNPROCESSABLE_ENTITY, cf);
        assert_eq!(
            e.to_string(),
            "POST scale: HTTP 422: CF-UnprocessableEntity memory quota exceeded"
        );
        let uaa = r#"{"error":"unauthorized","error_description":"Bad credentials"}"#;
        let e = status_error("token", reqwest::StatusCode::UNAUTHORIZED, uaa);
        assert_eq!(
            e.to_string(),
            "token: HTTP 401: unauthorized Bad credentials"
        );
    }

    #[test]
    fn portal_body_is_all_strings() {
        let body = PortalBody {
            app_name: "spring-music",
            app_guid: "g",
            cpu_usage: usage_text(Some(93.54)),
            memory_usage: usage_text(None),
            action: "O",
            instance_cnt: 3.to_string(),
            cause: Cause::Cpu.portal_code(),
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"appName":"spring-music","appGuid":"g","cpuUsage":"93.5","memoryUsage":"0",
                "action":"O","instanceCnt":"3","cause":"CPU"})
        );
    }

    #[tokio::test]
    async fn retries_only_transient_errors() {
        let policy = RetryPolicy {
            max_times: 2,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r: Result<(), _> = policy
            .run("t", || async {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err(ActError::Transient("503".into()))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "first try + 2 retries"
        );
        calls.store(0, std::sync::atomic::Ordering::SeqCst);
        let r: Result<(), _> = policy
            .run("t", || async {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err(ActError::Permanent("422".into()))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn app_guids_are_path_escaped() {
        let a = CfActuator {
            http: reqwest::Client::new(),
            api: url::Url::parse("https://api.sys.example/").unwrap(),
            configured_uaa: None,
            grant: Grant::Password {
                username: "u".into(),
                password: Secret::new("p"),
            },
            retry: RetryPolicy {
                max_times: 0,
                min_delay: Duration::ZERO,
                max_delay: Duration::ZERO,
            },
            state: Mutex::new(CfState::default()),
        };
        assert_eq!(
            a.url(&["v3", "apps", "a/../b c", "processes", "web"]),
            "https://api.sys.example/v3/apps/a%2F..%2Fb%20c/processes/web"
        );
        assert_eq!(a.url(&[""]), "https://api.sys.example/");
    }
}
