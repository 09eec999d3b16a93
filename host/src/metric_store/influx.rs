//! InfluxDB 1.x client: InfluxQL over HTTP, JSON answers, `epoch=s` timestamps.

use crate::config::InfluxSettings;
use crate::config::secret::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    #[error("InfluxDB {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("InfluxDB {url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("InfluxDB {url} database {db}: query error: {message}")]
    Query {
        url: String,
        db: String,
        message: String,
    },
    #[error("InfluxDB {url}: malformed answer: {message}")]
    Decode { url: String, message: String },
    #[error(
        "InfluxDB {url}: the answer is larger than influx.max_answer_bytes = {limit} bytes \
         (narrow the policies' windows or raise the limit)"
    )]
    TooLarge { url: String, limit: u64 },
    #[error("InfluxDB client: {0}")]
    Setup(String),
}

impl InfluxError {
    /// An answer that could not be read to its end: too large, or the connection failed.
    fn reading(url: &str, e: crate::metric_store::bounded::ReadError) -> Self {
        match e {
            crate::metric_store::bounded::ReadError::TooLarge { limit } => InfluxError::TooLarge {
                url: url.to_string(),
                limit,
            },
            crate::metric_store::bounded::ReadError::Read(source) => InfluxError::Http {
                url: url.to_string(),
                source,
            },
        }
    }
}

/// One series of an answer. Cells are numbers or null; `epoch=s` makes `time` a number too.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Series {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub columns: Vec<String>,
    #[serde(default)]
    pub values: Vec<Vec<Cell>>,
}

/// One value of an answer. Text is kept only as "not a number": the batch reads numbers, and a
/// cell of 16 bytes instead of 32 (with no untagged-enum buffering) halves what a large answer
/// costs to decode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell {
    Number(f64),
    Text,
    Bool(bool),
    Null,
}

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Cell;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number, string, boolean or null")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Cell, E> {
                Ok(Cell::Number(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Cell, E> {
                Ok(Cell::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Cell, E> {
                Ok(Cell::Number(v as f64))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Cell, E> {
                Ok(Cell::Bool(v))
            }
            fn visit_str<E>(self, _: &str) -> Result<Cell, E> {
                Ok(Cell::Text)
            }
            fn visit_unit<E>(self) -> Result<Cell, E> {
                Ok(Cell::Null)
            }
            fn visit_none<E>(self) -> Result<Cell, E> {
                Ok(Cell::Null)
            }
            fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Cell, D2::Error> {
                d.deserialize_any(V)
            }
        }
        d.deserialize_any(V)
    }
}

impl Cell {
    /// A finite number; NaN, infinities, text and null are not usable readings.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Number(n) if n.is_finite() => Some(*n),
            _ => None,
        }
    }
}

impl Series {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags.get(name).map(String::as_str)
    }
}

/// A series of an administrative answer, its cells as they came.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct TextSeries {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub values: Vec<Vec<serde_json::Value>>,
}

impl TextSeries {
    /// The cell of column `name` in `row`.
    pub fn cell<'a>(
        &self,
        row: &'a [serde_json::Value],
        name: &str,
    ) -> Option<&'a serde_json::Value> {
        row.get(self.columns.iter().position(|c| c == name)?)
    }
}

#[derive(Deserialize)]
struct TextAnswer {
    #[serde(default)]
    results: Vec<TextResult>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct TextResult {
    #[serde(default)]
    series: Vec<TextSeries>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    results: Vec<StatementResult>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct StatementResult {
    #[serde(default)]
    series: Vec<Series>,
    #[serde(default)]
    error: Option<String>,
}

/// Queries and rows this client has issued and read, for the tick summary and the benchmark.
#[derive(Debug, Default)]
pub struct InfluxStats {
    pub queries: std::sync::atomic::AtomicU64,
    pub rows: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
pub struct InfluxClient {
    http: reqwest::Client,
    base: String,
    user: Option<String>,
    password: Secret,
    max_answer_bytes: u64,
    pub stats: std::sync::Arc<InfluxStats>,
}

impl std::fmt::Debug for InfluxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxClient")
            .field("base", &self.base)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl InfluxClient {
    pub fn new(s: &InfluxSettings) -> Result<Self, InfluxError> {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(s.timeout_seconds.max(1)))
            .connect_timeout(Duration::from_secs(s.timeout_seconds.clamp(1, 10)));
        if let Some(ca) = &s.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| InfluxError::Setup(format!("influx.ca_file {}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| InfluxError::Setup(format!("influx.ca_file {}: {e}", ca.display())))?;
            b = b.add_root_certificate(cert);
        }
        if s.insecure_skip_verify {
            tracing::warn!(url = %s.url, "influx.insecure_skip_verify is on: InfluxDB TLS certificates are NOT verified");
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b
            .build()
            .map_err(|e| InfluxError::Setup(format!("HTTP client: {e}")))?;
        // Settings::load already took the userinfo out; a client built from other settings
        // must not hold a password in the URL that every error shows either.
        let (url, creds) = crate::config::redact::split_userinfo("influx.url", &s.url)
            .map_err(|e| InfluxError::Setup(e.to_string()))?;
        let (user, password) = match (s.user.clone().filter(|u| !u.is_empty()), creds) {
            (Some(u), _) => (Some(u), s.password.clone()),
            (None, Some(c)) => (Some(c.user), c.password),
            (None, None) => (None, s.password.clone()),
        };
        Ok(Self {
            http,
            base: url.as_str().trim_end_matches('/').to_string(),
            user,
            password,
            max_answer_bytes: s.max_answer_bytes,
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

    /// Runs one or more `;`-separated statements; returns the series of every statement in
    /// order. An `error` in a 200 answer is an error.
    pub async fn query(&self, db: &str, q: &str) -> Result<Vec<Series>, InfluxError> {
        let mut series = Vec::new();
        self.query_fold(db, q, |s| series.push(s)).await?;
        Ok(series)
    }

    /// [`InfluxClient::query`], handing each series to `fold` as soon as its chunk is decoded
    /// instead of keeping them: memory holds one chunk (`chunked=true`: InfluxDB's
    /// `chunk-size` rows, 10,000 by default) whatever the size of the answer, plus what `fold`
    /// keeps. On an error the series already handed out are to be thrown away. Returns the rows.
    pub async fn query_fold(
        &self,
        db: &str,
        q: &str,
        mut fold: impl FnMut(Series) + Send,
    ) -> Result<u64, InfluxError> {
        let url = format!("{}/query", self.base);
        let mut req =
            self.http
                .post(&url)
                .form(&[("db", db), ("q", q), ("epoch", "s"), ("chunked", "true")]);
        if let Some(u) = &self.user {
            req = req.basic_auth(u, Some(self.password.expose()));
        }
        metrics::counter!("monit_influx_queries_total").increment(1);
        let resp = req.send().await.map_err(|e| InfluxError::Http {
            url: url.clone(),
            source: e.without_url(),
        })?;
        let status = resp.status();
        if !status.is_success() {
            let text = crate::metric_store::bounded::prefix(resp, 4096).await;
            let text = crate::config::redact::scrub_credentials(
                &text,
                self.user.as_deref(),
                &self.password,
            );
            return Err(InfluxError::Status {
                url,
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
            });
        }
        // `chunked=true`: one JSON document per line, each a slice of the answer's series,
        // decoded and handed out as it arrives; memory holds one line
        let mut rows = 0u64;
        let mut line = Vec::new();
        let mut failed = None;
        let mut documents = 0u32;
        let mut take = |line: &mut Vec<u8>| {
            if failed.is_none() && line.iter().any(|b| !b.is_ascii_whitespace()) {
                documents += 1;
                match decode(&self.base, db, line) {
                    Ok(series) => {
                        for s in series {
                            rows += s.values.len() as u64;
                            fold(s);
                        }
                    }
                    Err(e) => failed = Some(e),
                }
            }
            line.clear();
        };
        let mut resp = resp;
        crate::metric_store::bounded::for_each_chunk(&mut resp, self.max_answer_bytes, |chunk| {
            for part in chunk.split_inclusive(|b| *b == b'\n') {
                line.extend_from_slice(part);
                if part.ends_with(b"\n") {
                    take(&mut line);
                }
            }
        })
        .await
        .map_err(|e| InfluxError::reading(&url, e))?;
        take(&mut line);
        if let Some(e) = failed {
            return Err(e);
        }
        if documents == 0 {
            // an empty 200 (a proxy, a dying server) is not "no data"
            return Err(InfluxError::Decode {
                url: self.base.clone(),
                message: "empty answer".into(),
            });
        }
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.queries.fetch_add(1, Relaxed);
        self.stats.rows.fetch_add(rows, Relaxed);
        Ok(rows)
    }

    /// Runs one administrative statement (`SHOW SUBSCRIPTIONS`, `CREATE SUBSCRIPTION`, ...) and
    /// returns its series with the cells as JSON: their text (names, destinations) is the
    /// answer, where [`Cell`] keeps only numbers. Not counted in [`InfluxStats`], which are the
    /// readings' queries. `secret`: a credential the statement carries, masked in any error
    /// InfluxDB echoes it in.
    pub async fn statement(
        &self,
        db: Option<&str>,
        q: &str,
        secret: Option<&Secret>,
    ) -> Result<Vec<TextSeries>, InfluxError> {
        let url = format!("{}/query", self.base);
        let mut form = vec![("q", q)];
        if let Some(db) = db {
            form.push(("db", db));
        }
        let mut req = self.http.post(&url).form(&form);
        if let Some(u) = &self.user {
            req = req.basic_auth(u, Some(self.password.expose()));
        }
        let scrub = |text: &str| {
            let text = crate::config::redact::scrub_credentials(
                text,
                self.user.as_deref(),
                &self.password,
            );
            let text = match secret {
                Some(s) => crate::config::redact::scrub_credentials(&text, None, s),
                None => text,
            };
            crate::config::redact::text(&text)
        };
        let resp = req.send().await.map_err(|e| InfluxError::Http {
            url: url.clone(),
            source: e.without_url(),
        })?;
        let status = resp.status();
        if !status.is_success() {
            let text = crate::metric_store::bounded::prefix(resp, 4096).await;
            return Err(InfluxError::Status {
                url,
                status: status.as_u16(),
                body: scrub(&text).chars().take(300).collect(),
            });
        }
        let body = crate::metric_store::bounded::read(resp, self.max_answer_bytes)
            .await
            .map_err(|e| InfluxError::reading(&url, e))?;
        let answer: TextAnswer =
            serde_json::from_slice(&body).map_err(|e| InfluxError::Decode {
                url: self.base.clone(),
                message: scrub(&format!(
                    "{e}; the answer begins {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(120)])
                )),
            })?;
        let query_error = |message: String| InfluxError::Query {
            url: self.base.clone(),
            db: db.unwrap_or_default().to_string(),
            message: scrub(&message),
        };
        if let Some(m) = answer.error {
            return Err(query_error(m));
        }
        let mut out = Vec::new();
        for r in answer.results {
            if let Some(m) = r.error {
                return Err(query_error(m));
            }
            out.extend(r.series);
        }
        Ok(out)
    }

    /// InfluxDB's count of subscription writes it dropped since it started (`SHOW STATS FOR
    /// 'write'`, column `subWriteDrop`): its subscriber drops a write when its queue is full,
    /// and the stream then misses those points. One cheap statement, not counted in
    /// [`InfluxStats`]. The `subscriber` module's `writeFailures` is not read: it counts the
    /// failures of every subscription on the server (another tool's dead destination would
    /// look like our loss), and a failed delivery to us shows as a quiet stream anyway.
    pub async fn sub_write_drop(&self) -> Result<i64, InfluxError> {
        let series = self.statement(None, "SHOW STATS FOR 'write'", None).await?;
        series
            .iter()
            .filter(|s| s.name == "write")
            .flat_map(|s| s.values.iter().map(move |row| (s, row)))
            .find_map(|(s, row)| s.cell(row, "subWriteDrop").and_then(|v| v.as_i64()))
            .ok_or_else(|| InfluxError::Decode {
                url: self.base.clone(),
                message: "SHOW STATS FOR 'write' has no subWriteDrop column".into(),
            })
    }

    /// Writes line protocol (tests, demo and bench seed data this way).
    pub async fn write(&self, db: &str, lines: &str) -> Result<(), InfluxError> {
        let url = format!("{}/write", self.base);
        let mut req = self
            .http
            .post(&url)
            .query(&[("db", db), ("precision", "s")])
            .body(lines.to_string());
        if let Some(u) = &self.user {
            req = req.basic_auth(u, Some(self.password.expose()));
        }
        let resp = req.send().await.map_err(|e| InfluxError::Http {
            url: url.clone(),
            source: e.without_url(),
        })?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = crate::metric_store::bounded::prefix(resp, 4096).await;
            let body = crate::config::redact::scrub_credentials(
                &body,
                self.user.as_deref(),
                &self.password,
            );
            return Err(InfluxError::Status { url, status, body });
        }
        Ok(())
    }
}

/// Decodes a `/query` answer. Public so the fuzz target can reach it.
pub fn decode(base: &str, db: &str, body: &[u8]) -> Result<Vec<Series>, InfluxError> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| InfluxError::Decode {
        url: base.to_string(),
        // the start of the body shows the cause (an HTML error page, a proxy's text, ...)
        message: format!(
            "{e}; the answer begins {:?}",
            String::from_utf8_lossy(&body[..body.len().min(120)])
        ),
    })?;
    if let Some(message) = answer.error {
        return Err(InfluxError::Query {
            url: base.to_string(),
            db: db.to_string(),
            message,
        });
    }
    let mut out = Vec::new();
    for r in answer.results {
        if let Some(message) = r.error {
            return Err(InfluxError::Query {
                url: base.to_string(),
                db: db.to_string(),
                message,
            });
        }
        out.extend(r.series);
    }
    metrics::counter!("monit_influx_rows_total")
        .increment(out.iter().map(|s| s.values.len() as u64).sum());
    Ok(out)
}

/// `"identifier"` with `\`, `"` and line breaks escaped: measurement, tag and field names from
/// config.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", escape(s, '"'))
}

/// `'string'` with `\`, `'` and line breaks escaped: tag values from the DB or config. InfluxQL
/// refuses a raw line break inside a string, so it is written `\n`.
pub fn string(s: &str) -> String {
    format!("'{}'", escape(s, '\''))
}

fn escape(s: &str, quote: char) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_identifiers_and_strings() {
        assert_eq!(ident(r#"cf"metrics"#), r#""cf\"metrics""#);
        assert_eq!(string("a' OR 1=1 --"), r"'a\' OR 1=1 --'");
        assert_eq!(string(r"back\slash"), r"'back\\slash'");
        assert_eq!(string("two\nlines"), r"'two\nlines'");
        assert_eq!(ident("a\nb\"c"), r#""a\nb\"c""#);
    }

    #[test]
    fn error_in_a_200_answer_is_an_error() {
        let e = decode(
            "http://x",
            "nope",
            br#"{"results":[{"statement_id":0,"error":"database not found: nope"}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("database not found"), "{e}");
        assert!(e.to_string().contains("nope"));
    }

    #[test]
    fn malformed_json_is_a_decode_error() {
        let e = decode("http://x", "db", b"{\"results\":[{").unwrap_err();
        assert!(matches!(e, InfluxError::Decode { .. }), "{e}");
    }

    #[test]
    fn decodes_series_with_nulls_and_text() {
        let s = decode(
            "http://x",
            "db",
            br#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"ip":"1.2.3.4"},"columns":["time","mean"],"values":[[10,1.5],[40,null],[70,"x"]]}]}]}"#,
        )
        .unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].tag("ip"), Some("1.2.3.4"));
        assert_eq!(s[0].values[0][1].as_f64(), Some(1.5));
        assert_eq!(s[0].values[1][1].as_f64(), None);
        assert_eq!(s[0].values[2][1].as_f64(), None);
    }
}
