//! Client of a store that speaks the Prometheus HTTP API (VictoriaMetrics, Prometheus, Thanos,
//! Mimir): instant PromQL queries at a given time, the answer read in chunks up to
//! `prometheus.max_answer_bytes` and decoded without an intermediate JSON tree, each sample handed
//! to the caller's fold as it is decoded (no `Vec` of every sample is built).
//!
//! The host owns this client (as it owns [`crate::metric_store::influx::InfluxClient`]): it counts queries and
//! samples for the tick summary and bounds what it reads; the PromQL itself belongs to the
//! readers of the metric schema.

use crate::config::PrometheusSettings;
use crate::config::secret::Secret;
use crate::metric_store::influx::InfluxStats;
use serde::Deserialize;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("Prometheus API {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Prometheus API {url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("Prometheus API {url}: query error ({kind}): {message}")]
    Query {
        url: String,
        kind: String,
        message: String,
    },
    #[error("Prometheus API {url}: malformed answer: {message}")]
    Decode { url: String, message: String },
    #[error(
        "Prometheus API {url}: the answer is larger than prometheus.max_answer_bytes = {limit} \
         bytes (narrow the policies' windows or raise the limit)"
    )]
    TooLarge { url: String, limit: u64 },
    #[error("Prometheus API client: {0}")]
    Setup(String),
}

/// One sample of an instant vector: its labels and its value (NaN when the store sent a value
/// that is not a number, e.g. `"NaN"`; callers keep finite values only).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

#[derive(Clone)]
enum Auth {
    None,
    Basic(String, Secret),
    Bearer(Secret),
}

#[derive(Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    max_answer_bytes: u64,
    db_label: String,
    /// queries sent and samples read (shared type with the InfluxDB client: `rows` = samples)
    pub stats: std::sync::Arc<InfluxStats>,
}

impl fmt::Debug for PrometheusClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::None => "none",
            Auth::Basic(..) => "basic",
            Auth::Bearer(_) => "bearer",
        };
        f.debug_struct("PrometheusClient")
            .field("base", &self.base)
            .field("auth", &auth)
            .finish_non_exhaustive()
    }
}

impl PrometheusClient {
    pub fn new(s: &PrometheusSettings) -> Result<Self, PrometheusError> {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(s.timeout_seconds.max(1)))
            .connect_timeout(Duration::from_secs(s.timeout_seconds.clamp(1, 10)));
        if let Some(ca) = &s.ca_file {
            let setup = |e: &dyn fmt::Display| {
                PrometheusError::Setup(format!("prometheus.ca_file {}: {e}", ca.display()))
            };
            let pem = std::fs::read(ca).map_err(|e| setup(&e))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| setup(&e))?;
            b = b.add_root_certificate(cert);
        }
        if s.insecure_skip_verify {
            tracing::warn!(url = %s.url, "prometheus.insecure_skip_verify is on: TLS certificates of the metric store are NOT verified");
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b
            .build()
            .map_err(|e| PrometheusError::Setup(format!("HTTP client: {e}")))?;
        // Settings::load already took userinfo out of the URL; a client built from other
        // settings must not keep a password in the URL every error shows either
        let (url, url_user) = crate::config::redact::split_userinfo("prometheus.url", &s.url)
            .map_err(|e| PrometheusError::Setup(e.to_string()))?;
        let url_user = url_user.map(|c| (c.user, c.password));
        let auth = if !s.bearer_token.is_empty() {
            Auth::Bearer(s.bearer_token.clone())
        } else if let Some(u) = s.user.clone().filter(|u| !u.is_empty()) {
            Auth::Basic(u, s.password.clone())
        } else if let Some((u, p)) = url_user {
            Auth::Basic(u, p)
        } else {
            Auth::None
        };
        Ok(Self {
            http,
            base: url.as_str().trim_end_matches('/').to_string(),
            auth,
            max_answer_bytes: s.max_answer_bytes,
            db_label: s.db_label.clone(),
            stats: Default::default(),
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// The same client with counts of its own (see `MetricStore::history_client`).
    pub fn with_own_stats(&self) -> Self {
        Self {
            stats: Default::default(),
            ..self.clone()
        }
    }

    /// The label holding the InfluxDB database name of a series (`prometheus.db_label`; empty:
    /// the store has no such label and series are not filtered on it).
    pub fn db_label(&self) -> &str {
        &self.db_label
    }

    /// Evaluates `promql` as an instant query at `at_epoch` (seconds) and hands every sample of
    /// the vector to `fold` as it is decoded. Returns the number of samples.
    pub async fn query_fold(
        &self,
        promql: &str,
        at_epoch: i64,
        mut fold: impl FnMut(Sample) + Send,
    ) -> Result<u64, PrometheusError> {
        let url = format!("{}/api/v1/query", self.base);
        let mut resp = self
            .post(&url, &[("query", promql), ("time", &at_epoch.to_string())])
            .await?;
        let http_err = |e: reqwest::Error| PrometheusError::Http {
            url: url.clone(),
            source: e.without_url(),
        };
        // the samples are decoded and folded as their bytes arrive: memory holds one sample and
        // the answer's small rest, whatever the number of series
        let mut splitter = Splitter::new(self.max_answer_bytes);
        let mut read = 0u64;
        let mut emit = |s: Sample| fold(s);
        while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
            read += chunk.len() as u64;
            if read > self.max_answer_bytes {
                return Err(PrometheusError::TooLarge {
                    url,
                    limit: self.max_answer_bytes,
                });
            }
            splitter
                .feed(&chunk, &mut emit)
                .map_err(|message| self.decode_error(message))?;
        }
        let n = splitter.finish(&self.base).map_err(|e| match e {
            PrometheusError::Decode { message, .. } => self.decode_error(message),
            e => e,
        })?;
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.queries.fetch_add(1, Relaxed);
        self.stats.rows.fetch_add(n, Relaxed);
        metrics::counter!("monit_prometheus_samples_total").increment(n);
        Ok(n)
    }

    /// Sends one API request (credentials attached, counted); an answer that is not a success
    /// is the error it says (a query error, or the status with the start of the body).
    async fn post(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<reqwest::Response, PrometheusError> {
        let mut req = self.http.post(url).form(form);
        req = match &self.auth {
            Auth::None => req,
            Auth::Basic(u, p) => req.basic_auth(u, Some(p.expose())),
            Auth::Bearer(t) => req.bearer_auth(t.expose()),
        };
        metrics::counter!("monit_prometheus_queries_total").increment(1);
        let resp = req.send().await.map_err(|e| PrometheusError::Http {
            url: url.to_string(),
            source: e.without_url(),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        // Prometheus answers a bad query with 400/422 and a small JSON error body
        let body = crate::metric_store::bounded::prefix(resp, 64 * 1024)
            .await
            .into_bytes();
        Err(match decode_fold(&self.base, &body, &mut |_| {}) {
            Err(PrometheusError::Query { url, kind, message }) => PrometheusError::Query {
                url,
                kind,
                message: self.scrub(&message),
            },
            _ => {
                let text = self.scrub(&String::from_utf8_lossy(&body));
                let mut body: String = text.trim().chars().take(300).collect();
                if let Some(hint) = self.auth_hint(status.as_u16(), &text) {
                    body.push_str(hint);
                }
                PrometheusError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                    body,
                }
            }
        })
    }

    /// Evaluates `promql` as a range query (`/api/v1/query_range`) from `start` to `end`
    /// (seconds) every `step_seconds`: each series with its points. The answer is read whole,
    /// at most `prometheus.max_answer_bytes`: for small answers (the history of a few alarmed
    /// readings), not for the fleet.
    pub async fn query_range(
        &self,
        promql: &str,
        start: i64,
        end: i64,
        step_seconds: u64,
    ) -> Result<Vec<RangeSeries>, PrometheusError> {
        let url = format!("{}/api/v1/query_range", self.base);
        let resp = self
            .post(
                &url,
                &[
                    ("query", promql),
                    ("start", &start.to_string()),
                    ("end", &end.to_string()),
                    ("step", &format!("{}s", step_seconds.max(1))),
                ],
            )
            .await?;
        let body = crate::metric_store::bounded::read(resp, self.max_answer_bytes)
            .await
            .map_err(|e| match e {
                crate::metric_store::bounded::ReadError::TooLarge { limit } => {
                    PrometheusError::TooLarge {
                        url: url.clone(),
                        limit,
                    }
                }
                crate::metric_store::bounded::ReadError::Read(source) => PrometheusError::Http {
                    url: url.clone(),
                    source,
                },
            })?;
        let series = decode_matrix(&self.base, &body)?;
        let n: u64 = series.iter().map(|s| s.points.len() as u64).sum();
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.queries.fetch_add(1, Relaxed);
        self.stats.rows.fetch_add(n, Relaxed);
        metrics::counter!("monit_prometheus_samples_total").increment(n);
        Ok(series)
    }

    /// `text` from the store without the configured credential in any form (see
    /// [`crate::config::redact::scrub_credentials`]).
    fn scrub(&self, text: &str) -> String {
        match &self.auth {
            Auth::None => text.to_string(),
            Auth::Bearer(t) => crate::config::redact::scrub_credentials(text, None, t),
            Auth::Basic(u, p) => crate::config::redact::scrub_credentials(text, Some(u), p),
        }
    }

    /// What an operator should check when the store (or a proxy in front of it) refused the
    /// request's credentials. vmauth before 1.80 answers a wrong credential 400, not 401.
    fn auth_hint(&self, status: u16, body: &str) -> Option<&'static str> {
        let refused = matches!(status, 401 | 403)
            || (status == 400 && body.to_ascii_lowercase().contains("auth"));
        if !refused {
            return None;
        }
        Some(match self.auth {
            Auth::None => {
                " (the store wants credentials: set prometheus.bearer_token, or prometheus.user \
                 and prometheus.password)"
            }
            Auth::Bearer(_) => {
                " (the store refused the credentials: check prometheus.bearer_token)"
            }
            Auth::Basic(..) => {
                " (the store refused the credentials: check prometheus.user and \
                 prometheus.password, or the user:password in prometheus.url)"
            }
        })
    }

    fn decode_error(&self, message: String) -> PrometheusError {
        PrometheusError::Decode {
            url: self.base.clone(),
            message,
        }
    }

    /// The samples of an instant query, collected (tests and small answers).
    pub async fn query(&self, promql: &str, at_epoch: i64) -> Result<Vec<Sample>, PrometheusError> {
        let mut out = Vec::new();
        self.query_fold(promql, at_epoch, |s| out.push(s)).await?;
        Ok(out)
    }
}

/// One series of a range query's answer: its labels and its points (time in seconds, value;
/// NaN for a value that is not a number).
#[derive(Clone, Debug, PartialEq)]
pub struct RangeSeries {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(i64, f64)>,
}

impl RangeSeries {
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// Decodes an `/api/v1/query_range` answer (a matrix). Public so the fuzz target can reach it.
pub fn decode_matrix(base: &str, body: &[u8]) -> Result<Vec<RangeSeries>, PrometheusError> {
    #[derive(Deserialize)]
    struct Answer {
        status: String,
        #[serde(default, rename = "errorType")]
        error_type: Option<String>,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        data: Option<Data>,
    }
    #[derive(Deserialize)]
    struct Data {
        #[serde(rename = "resultType")]
        result_type: String,
        #[serde(default)]
        result: Vec<RawRange>,
    }
    #[derive(Deserialize)]
    struct RawRange {
        #[serde(default)]
        metric: BTreeMap<String, String>,
        #[serde(default)]
        values: Vec<(f64, String)>,
    }
    let decode_error = |message: String| PrometheusError::Decode {
        url: base.to_string(),
        message,
    };
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        decode_error(format!(
            "{e}; the answer begins {:?}",
            String::from_utf8_lossy(&body[..body.len().min(120)])
        ))
    })?;
    match answer.status.as_str() {
        "success" => {}
        "error" => {
            return Err(PrometheusError::Query {
                url: base.to_string(),
                kind: answer.error_type.unwrap_or_default(),
                message: answer.error.unwrap_or_default(),
            });
        }
        other => {
            return Err(decode_error(format!(
                "status {other:?}, expected \"success\" or \"error\""
            )));
        }
    }
    let Some(data) = answer.data else {
        return Err(decode_error("a success without data".into()));
    };
    if data.result_type != "matrix" {
        return Err(decode_error(format!(
            "result type {:?}, expected \"matrix\" (a range query)",
            data.result_type
        )));
    }
    Ok(data
        .result
        .into_iter()
        .map(|r| RangeSeries {
            labels: r.metric,
            points: r
                .values
                .into_iter()
                .filter(|(t, _)| t.is_finite())
                .map(|(t, v)| (t.round() as i64, v.parse().unwrap_or(f64::NAN)))
                .collect(),
        })
        .collect())
}

/// Decodes an `/api/v1/query` answer, calling `fold` per sample of a vector (or once for a
/// scalar). Public so the fuzz target can reach it.
pub fn decode_fold(
    base: &str,
    body: &[u8],
    fold: &mut dyn FnMut(Sample),
) -> Result<u64, PrometheusError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let answer = AnswerSeed { fold, count: 0 }
        .deserialize(&mut de)
        .and_then(|a| de.end().map(|_| a))
        .map_err(|e| PrometheusError::Decode {
            url: base.to_string(),
            message: format!(
                "{e}; the answer begins {:?}",
                String::from_utf8_lossy(&body[..body.len().min(120)])
            ),
        })?;
    match answer.status.as_deref() {
        Some("success") => Ok(answer.count),
        Some("error") => Err(PrometheusError::Query {
            url: base.to_string(),
            kind: answer.error_type.unwrap_or_default(),
            message: answer.error.unwrap_or_default(),
        }),
        other => Err(PrometheusError::Decode {
            url: base.to_string(),
            message: format!("status {other:?}, expected \"success\" or \"error\""),
        }),
    }
}

struct AnswerSeed<'f> {
    fold: &'f mut dyn FnMut(Sample),
    count: u64,
}

struct Answer {
    status: Option<String>,
    error_type: Option<String>,
    error: Option<String>,
    count: u64,
}

impl<'de> DeserializeSeed<'de> for AnswerSeed<'_> {
    type Value = Answer;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Answer, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AnswerSeed<'_> {
    type Value = Answer;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Prometheus API answer object")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut m: A) -> Result<Answer, A::Error> {
        let mut a = Answer {
            status: None,
            error_type: None,
            error: None,
            count: 0,
        };
        while let Some(key) = m.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "status" => a.status = Some(m.next_value()?),
                "errorType" => a.error_type = m.next_value()?,
                "error" => a.error = m.next_value()?,
                "data" => {
                    self.count += m.next_value_seed(DataSeed {
                        fold: &mut *self.fold,
                    })?
                }
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        a.count = self.count;
        Ok(a)
    }
}

struct DataSeed<'f> {
    fold: &'f mut dyn FnMut(Sample),
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = u64;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_> {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the data object of a Prometheus API answer")
    }
    fn visit_unit<E>(self) -> Result<u64, E> {
        Ok(0)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<u64, A::Error> {
        let mut n = 0;
        while let Some(key) = m.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                // `resultType` comes first in both stores' answers; a scalar or string result
                // is an error of the query's author, and its shape is rejected below
                "result" => {
                    n += m.next_value_seed(ResultSeed {
                        fold: &mut *self.fold,
                    })?
                }
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(n)
    }
}

struct ResultSeed<'f> {
    fold: &'f mut dyn FnMut(Sample),
}

impl<'de> DeserializeSeed<'de> for ResultSeed<'_> {
    type Value = u64;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ResultSeed<'_> {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an instant vector (a list of samples)")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<u64, A::Error> {
        let mut n = 0;
        while let Some(sample) = s.next_element::<RawSample>()? {
            n += 1;
            (self.fold)(Sample {
                labels: sample.metric,
                value: sample.value.1.parse().unwrap_or(f64::NAN),
            });
        }
        Ok(n)
    }
}

#[derive(Deserialize)]
struct RawSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (IgnoredAny, String),
}

/// A streamed `/api/v1/query` answer taken apart as it arrives: each sample of `data.result` is
/// decoded as soon as its bytes are complete and handed out; the rest of the answer (status,
/// error, result type: a few bytes) is kept and decoded at the end by [`decode_fold`].
pub struct Splitter {
    /// the answer without its samples
    rest: Vec<u8>,
    /// bytes of the sample being read
    sample: Vec<u8>,
    /// open containers: `Some(key)` for an object (its current key), `None` for an array
    stack: Vec<Option<Vec<u8>>>,
    expect_key: bool,
    in_string: bool,
    in_key: bool,
    escaped: bool,
    /// depth of the `data.result` array while inside it
    result_depth: Option<usize>,
    samples: u64,
    max_sample: u64,
}

impl Splitter {
    pub fn new(max_sample_bytes: u64) -> Self {
        Self {
            rest: Vec::new(),
            sample: Vec::new(),
            stack: Vec::new(),
            expect_key: false,
            in_string: false,
            in_key: false,
            escaped: false,
            result_depth: None,
            samples: 0,
            max_sample: max_sample_bytes,
        }
    }

    /// Takes the next bytes of the answer; calls `emit` for every sample completed in them.
    pub fn feed(&mut self, bytes: &[u8], emit: &mut dyn FnMut(Sample)) -> Result<(), String> {
        for &b in bytes {
            let in_sample = self.result_depth.is_some_and(|d| self.stack.len() > d);
            if self.in_string {
                if self.in_key
                    && let Some(Some(key)) = self.stack.last_mut()
                    && (b != b'"' || self.escaped)
                {
                    key.push(b);
                }
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                    self.in_key = false;
                }
                self.keep(b, in_sample)?;
                continue;
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    if self.expect_key
                        && let Some(Some(key)) = self.stack.last_mut()
                    {
                        key.clear();
                        self.in_key = true;
                    }
                    self.keep(b, in_sample)?;
                }
                b'{' | b'[' => {
                    let opens_result = b == b'['
                        && self.result_depth.is_none()
                        && self.stack.len() == 2
                        && matches!(&self.stack[0], Some(k) if k == b"data")
                        && matches!(&self.stack[1], Some(k) if k == b"result");
                    if self.result_depth.is_some() && !in_sample && b == b'[' {
                        return Err(
                            "data.result holds arrays, not samples (not an instant vector)".into(),
                        );
                    }
                    self.keep(
                        b,
                        in_sample || self.result_depth.is_some_and(|d| self.stack.len() == d),
                    )?;
                    self.stack.push((b == b'{').then(Vec::new));
                    self.expect_key = b == b'{';
                    if opens_result {
                        self.result_depth = Some(self.stack.len());
                    }
                }
                b'}' | b']' => {
                    let closes_sample =
                        self.result_depth.is_some_and(|d| self.stack.len() == d + 1);
                    let closes_result = self.result_depth == Some(self.stack.len());
                    self.keep(b, in_sample && !closes_result)?;
                    if self.stack.pop().is_none() {
                        return Err("unbalanced JSON".into());
                    }
                    self.expect_key = false;
                    if closes_sample {
                        let raw: RawSample = serde_json::from_slice(&self.sample)
                            .map_err(|e| format!("sample {}: {e}", self.samples + 1))?;
                        self.sample.clear();
                        self.samples += 1;
                        emit(Sample {
                            labels: raw.metric,
                            value: raw.value.1.parse().unwrap_or(f64::NAN),
                        });
                    }
                    if closes_result {
                        self.result_depth = None;
                        self.rest.push(b']');
                    }
                }
                b':' => {
                    self.expect_key = false;
                    self.keep(b, in_sample)?;
                }
                b',' => {
                    self.expect_key = matches!(self.stack.last(), Some(Some(_)));
                    self.keep(b, in_sample)?;
                }
                _ => self.keep(b, in_sample)?,
            }
        }
        Ok(())
    }

    /// A byte goes to the sample being read, or to the rest of the answer; between samples
    /// (commas, spaces) it goes nowhere.
    fn keep(&mut self, b: u8, in_sample: bool) -> Result<(), String> {
        if in_sample {
            self.sample.push(b);
            if self.sample.len() as u64 > self.max_sample {
                return Err("one sample larger than the answer limit".into());
            }
        } else if self.result_depth.is_none_or(|d| self.stack.len() < d) {
            self.rest.push(b);
            if self.rest.len() > 1024 * 1024 {
                return Err("more than 1 MiB of the answer outside data.result".into());
            }
        }
        Ok(())
    }

    /// The end of the answer: its status (an `error` answer is an error) and the number of
    /// samples handed out.
    pub fn finish(self, base: &str) -> Result<u64, PrometheusError> {
        if !self.stack.is_empty() || self.in_string {
            return Err(PrometheusError::Decode {
                url: base.to_string(),
                message: "the answer ends in the middle".into(),
            });
        }
        decode_fold(base, &self.rest, &mut |_| {})?;
        Ok(self.samples)
    }
}

/// `"text"` for a PromQL label matcher, with `\`, `"` and line breaks escaped, so a value from
/// config or the inventory can never end the string and add a matcher of its own.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A regular expression matching `s` literally (for `=~`): RE2 metacharacters escaped, then
/// quoted with [`string`].
pub fn literal_regex(s: &str) -> String {
    let mut re = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            re.push('\\');
        }
        re.push(c);
    }
    string(&re)
}

pub use crate::config::is_label_name;

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &str) -> Result<Vec<Sample>, PrometheusError> {
        let mut out = Vec::new();
        decode_fold("http://x", body.as_bytes(), &mut |s| out.push(s))?;
        Ok(out)
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(string("a\"b"), r#""a\"b""#);
        assert_eq!(string("a\\b"), r#""a\\b""#);
        assert_eq!(string("a\nb"), r#""a\nb""#);
        assert_eq!(string(r#"x"} or vector(1) #"#), r#""x\"} or vector(1) #""#);
        assert_eq!(literal_regex("a.b|c"), r#""a\\.b\\|c""#);
        assert!(is_label_name("db") && is_label_name("_x1"));
        assert!(!is_label_name("1x") && !is_label_name("a-b") && !is_label_name(""));
    }

    #[test]
    fn decodes_a_vector() {
        let s = decode(
            r#"{"status":"success","data":{"resultType":"vector","result":[
              {"metric":{"ip":"10.0.0.1","m":"x"},"value":[1700000000.5,"42.5"]},
              {"metric":{},"value":[1700000000,"NaN"]}]}}"#,
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].label("ip"), "10.0.0.1");
        assert_eq!(s[0].value, 42.5);
        assert!(s[1].value.is_nan());
    }

    /// The answer cut at every byte, then fed in pieces: the same samples as decoded at once.
    #[test]
    fn a_split_answer_folds_the_same_samples() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
              {"metric":{"ip":"10.0.0.1","q":"a\\\"]}{,"},"value":[1700000000.5,"42.5"]} ,
              {"metric":{},"value":[1700000000,"NaN"]}]},"stats":{"seriesFetched":"2"}}"#;
        let whole = decode(body).unwrap();
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].label("q"), "a\\\"]}{,");
        for size in [1, 2, 3, 7, 64, body.len()] {
            let mut got = Vec::new();
            let mut sp = Splitter::new(1 << 20);
            for piece in body.as_bytes().chunks(size) {
                sp.feed(piece, &mut |s| got.push(s)).unwrap();
            }
            assert_eq!(sp.finish("http://x").unwrap(), 2, "pieces of {size}");
            assert_eq!(got[0], whole[0], "pieces of {size}");
            assert!(got[1].value.is_nan());
            assert!(sp_rest_is_small(body, size));
        }
        let mut sp = Splitter::new(1 << 20);
        sp.feed(
            br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
            &mut |_| {},
        )
        .unwrap();
        let e = sp.finish("http://x").unwrap_err();
        assert!(e.to_string().contains("parse error"), "{e}");
        let mut sp = Splitter::new(1 << 20);
        sp.feed(
            br#"{"status":"success","data":{"result":[{"metric":{}"#,
            &mut |_| {},
        )
        .unwrap();
        assert!(sp.finish("http://x").is_err(), "a cut answer is an error");
    }

    /// What is kept between samples does not grow with their number.
    fn sp_rest_is_small(body: &str, size: usize) -> bool {
        let mut sp = Splitter::new(1 << 20);
        for piece in body.as_bytes().chunks(size) {
            sp.feed(piece, &mut |_| {}).unwrap();
        }
        sp.rest.len() < 120 && sp.sample.is_empty()
    }

    #[test]
    fn decodes_a_matrix() {
        let s = decode_matrix(
            "http://x",
            br#"{"status":"success","data":{"resultType":"matrix","result":[
              {"metric":{"ip":"10.0.0.1"},"values":[[1700000000,"42.5"],[1700000060.4,"NaN"]]},
              {"metric":{},"values":[]}]}}"#,
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].label("ip"), "10.0.0.1");
        assert_eq!(s[0].points[0], (1_700_000_000, 42.5));
        assert_eq!(s[0].points[1].0, 1_700_000_060);
        assert!(s[0].points[1].1.is_nan());
        let e = decode_matrix(
            "http://x",
            br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("matrix"), "{e}");
        let e = decode_matrix(
            "http://x",
            br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
        )
        .unwrap_err();
        assert!(matches!(e, PrometheusError::Query { .. }), "{e}");
    }

    #[test]
    fn an_error_answer_is_an_error() {
        let e =
            decode(r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#)
                .unwrap_err();
        assert!(matches!(e, PrometheusError::Query { .. }), "{e}");
        assert!(e.to_string().contains("parse error"), "{e}");
    }

    #[test]
    fn malformed_answers_are_decode_errors() {
        for body in [
            "",
            "<html>",
            r#"{"status":"success","data":{"result":[{"metric":{},"value":[1]}]}}"#,
            r#"{"status":"success","data":{"result":[]}} trailing"#,
            r#"{"status":"pending"}"#,
        ] {
            let e = decode(body).unwrap_err();
            assert!(matches!(e, PrometheusError::Decode { .. }), "{body}: {e}");
        }
    }
}
