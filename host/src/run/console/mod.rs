//! The operator console: server-rendered pages under `/ui/` on the batch's HTTP port, off
//! unless `[console] enabled`. What the management app cannot show: the open alarms with their
//! holds, silences (add, expire), the outbox (retry, drop), the last ticks, the scale decisions,
//! the leader and the metric store.
//!
//! Secure by default: every page needs a login ([`auth`]: `[[console.users]]` with Argon2
//! hashes, a session cookie that is HttpOnly and SameSite=Strict); `viewer`s read, `operator`s
//! may change things; every form carries the session's CSRF token (403 without it); every value
//! is HTML-escaped by the templates (askama); no secret is rendered; and the pages run no
//! script (a Content-Security-Policy without `script-src`). The changes go through
//! [`crate::run::operator`], the same code as `monit-batch silence` and `monit-batch outbox`.

pub mod auth;
pub mod chart;
pub mod views;

use crate::config::Settings;
use crate::config::console::Role;
use crate::hold::silence::{self, Matcher};
use crate::run::operator::{self, OutboxVerb};
use crate::store::leader::Leader;
use askama::Template;
use auth::{Auth, LOGIN_COOKIE, LoginError, SESSION_COOKIE, Session};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sqlx::MySqlPool;
use std::sync::Arc;

/// The largest form accepted (a silence with its matchers and comment is far smaller).
pub const MAX_FORM_BYTES: usize = 64 * 1024;
/// Matcher fields on the silence form.
const MATCHER_FIELDS: usize = 4;

const CSS: &str = include_str!("templates/console.css");

/// What the pages read and change.
pub struct Console {
    pub pool: MySqlPool,
    pub settings: Arc<Settings>,
    pub leader: Option<Arc<Leader>>,
    auth: Auth,
    /// the cookies get `Secure` when the console is reached over https (`public_url`)
    secure: bool,
}

impl Console {
    pub fn new(
        pool: MySqlPool,
        settings: Arc<Settings>,
        leader: Option<Arc<Leader>>,
    ) -> anyhow::Result<Console> {
        let auth = Auth::new(&settings.console)?;
        let secure = settings
            .console
            .public_url
            .as_deref()
            .is_some_and(|u| u.trim().to_ascii_lowercase().starts_with("https://"));
        Ok(Console {
            pool,
            settings,
            leader,
            auth,
            secure,
        })
    }
}

type Shared = Arc<Console>;

/// The console's routes, every answer with headers that keep it out of caches and frames and
/// forbid scripts.
pub fn router(console: Shared) -> Router {
    Router::new()
        .route("/ui", get(|| async { redirect("/ui/", None) }))
        .route("/ui/", get(overview))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/alarms", get(alarms))
        .route("/ui/silences", get(silences).post(add_silence))
        .route("/ui/silences/new", get(new_silence))
        .route("/ui/silences/{id}/expire", post(expire_silence))
        .route("/ui/outbox", get(outbox))
        .route("/ui/outbox/{id}/{verb}", post(outbox_act))
        .route("/ui/ticks", get(ticks))
        .route("/ui/scaling", get(scaling))
        .route("/ui/static/console.css", get(css))
        .route("/ui/{*rest}", get(not_found))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(console)
}

async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (k, v) in [
        (
            "content-security-policy",
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().append(SET_COOKIE, c);
    }
    r
}

/// What the layout shows of the session.
pub struct Nav {
    pub user: String,
    pub role: &'static str,
    pub csrf: String,
}

fn nav(s: &Session) -> Option<Nav> {
    Some(Nav {
        user: s.user.clone(),
        role: s.role.as_str(),
        csrf: s.csrf.clone(),
    })
}

fn html(code: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => (code, [(CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(),
        Err(e) => {
            tracing::warn!("console: rendering a page failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "rendering failed").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    page_title: String,
    nav: Option<Nav>,
    active: &'static str,
    flash: String,
    message: String,
    back: String,
}

fn message(
    code: StatusCode,
    s: Option<&Session>,
    title: &str,
    text: String,
    back: &str,
) -> Response {
    html(
        code,
        &MessagePage {
            page_title: title.into(),
            nav: s.and_then(nav),
            active: "",
            flash: String::new(),
            message: text,
            back: back.into(),
        },
    )
}

/// A page failed to read the DB: said on the page, logged, no detail beyond the error.
fn failed(s: &Session, what: &str, e: anyhow::Error) -> Response {
    tracing::warn!("console: {what}: {e:#}");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        Some(s),
        "Error",
        format!("{what}: {}", crate::config::redact::text(&format!("{e:#}"))),
        "/ui/",
    )
}

/// A local path to come back to after the login: only `/ui/...`, never another site.
fn safe_next(next: &str) -> String {
    let ok = next.starts_with("/ui/")
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control());
    if ok { next.to_string() } else { "/ui/".into() }
}

impl Console {
    /// The session of the request, or the answer to give instead (to the login page, coming
    /// back to `back` after it).
    fn page_session(&self, headers: &HeaderMap, back: &str) -> Result<Session, Box<Response>> {
        match auth::cookie(headers, SESSION_COOKIE).and_then(|id| self.auth.session(id)) {
            Some(s) => Ok(s),
            None => {
                let q = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", &safe_next(back))
                    .finish();
                Err(Box::new(redirect(&format!("/ui/login?{q}"), None)))
            }
        }
    }

    /// A form post that may change something: a session, its CSRF token, the operator role.
    fn operator_post(&self, headers: &HeaderMap, form: &Form) -> Result<Session, Box<Response>> {
        let Some(s) = auth::cookie(headers, SESSION_COOKIE).and_then(|id| self.auth.session(id))
        else {
            return Err(Box::new(message(
                StatusCode::FORBIDDEN,
                None,
                "Forbidden",
                "not logged in (or the session ended): log in again".into(),
                "/ui/login",
            )));
        };
        if !auth::same_token(form.get("csrf"), &s.csrf) {
            return Err(Box::new(message(
                StatusCode::FORBIDDEN,
                Some(&s),
                "Forbidden",
                "the form's CSRF token is missing or wrong: reload the page and try again".into(),
                "/ui/",
            )));
        }
        if s.role != Role::Operator {
            return Err(Box::new(message(
                StatusCode::FORBIDDEN,
                Some(&s),
                "Forbidden",
                format!(
                    "{} is a viewer: only an operator may change silences or the outbox",
                    s.user
                ),
                "/ui/",
            )));
        }
        Ok(s)
    }

    fn flash(&self, headers: &HeaderMap) -> String {
        auth::cookie(headers, SESSION_COOKIE)
            .and_then(|id| self.auth.take_flash(id))
            .unwrap_or_default()
    }

    fn set_flash(&self, headers: &HeaderMap, text: String) {
        if let Some(id) = auth::cookie(headers, SESSION_COOKIE) {
            self.auth.set_flash(id, text);
        }
    }
}

/// A url-encoded form or query: every pair, in order (a key may repeat: `match`).
pub struct Form(Vec<(String, String)>);

impl Form {
    fn parse(raw: &[u8]) -> Form {
        Form(url::form_urlencoded::parse(raw).into_owned().collect())
    }
    fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
    fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

// ---- login ----------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    page_title: &'static str,
    nav: Option<Nav>,
    active: &'static str,
    flash: String,
    error: String,
    csrf: String,
    next: String,
}

fn login_form(code: StatusCode, c: &Console, error: String, next: &str) -> Response {
    let token = match auth::random_token() {
        Ok(t) => t,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let mut r = html(
        code,
        &LoginPage {
            page_title: "Log in",
            nav: None,
            active: "",
            flash: String::new(),
            error,
            csrf: token.clone(),
            next: safe_next(next),
        },
    );
    let cookie = auth::set_cookie(
        LOGIN_COOKIE,
        &token,
        Some(std::time::Duration::from_secs(3600)),
        c.secure,
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(SET_COOKIE, v);
    }
    r
}

async fn login_page(State(c): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let q = Form::parse(q.unwrap_or_default().as_bytes());
    login_form(StatusCode::OK, &c, String::new(), q.get("next"))
}

async fn login(State(c): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let next = safe_next(form.get("next"));
    // the login form's token against its cookie: another site cannot log a browser in
    let cookie = auth::cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if !auth::same_token(form.get("csrf"), cookie) {
        return message(
            StatusCode::FORBIDDEN,
            None,
            "Forbidden",
            "the login form's CSRF token is missing or wrong: reload the login page".into(),
            "/ui/login",
        );
    }
    match c.auth.login(form.get("name"), form.get("password")).await {
        Ok(id) => {
            let mut r = redirect(
                &next,
                Some(auth::set_cookie(
                    SESSION_COOKIE,
                    &id,
                    Some(auth::MAX_AGE),
                    c.secure,
                )),
            );
            if let Ok(v) =
                HeaderValue::from_str(&auth::set_cookie(LOGIN_COOKIE, "", None, c.secure))
            {
                r.headers_mut().append(SET_COOKIE, v);
            }
            tracing::info!(user = %crate::config::visible::escape(form.get("name")), "console: logged in");
            r
        }
        Err(LoginError::Refused) => {
            tracing::warn!(user = %crate::config::visible::escape(form.get("name")), "console: login refused");
            login_form(
                StatusCode::UNAUTHORIZED,
                &c,
                "wrong name or password".into(),
                &next,
            )
        }
        Err(LoginError::LockedOut) => login_form(
            StatusCode::TOO_MANY_REQUESTS,
            &c,
            format!(
                "too many failed logins for this name: try again in {} minutes",
                auth::LOCKOUT.as_secs() / 60
            ),
            &next,
        ),
        Err(LoginError::Internal(e)) => {
            tracing::warn!("console: login failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "login failed").into_response()
        }
    }
}

async fn logout(State(c): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let Some(id) = auth::cookie(&headers, SESSION_COOKIE) else {
        return redirect("/ui/login", None);
    };
    match c.auth.session(id) {
        Some(s) if auth::same_token(form.get("csrf"), &s.csrf) => {
            c.auth.logout(id);
            redirect(
                "/ui/login",
                Some(auth::set_cookie(SESSION_COOKIE, "", None, c.secure)),
            )
        }
        Some(s) => message(
            StatusCode::FORBIDDEN,
            Some(&s),
            "Forbidden",
            "the form's CSRF token is missing or wrong".into(),
            "/ui/",
        ),
        None => redirect("/ui/login", None),
    }
}

async fn css() -> Response {
    ([(CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn not_found(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let s = match c.page_session(&headers, "/ui/") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    message(
        StatusCode::NOT_FOUND,
        Some(&s),
        "Not found",
        "no such page".into(),
        "/ui/",
    )
}

// ---- overview -------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    page_title: &'static str,
    nav: Option<Nav>,
    active: &'static str,
    flash: String,
    open_alarms: usize,
    held_alarms: usize,
    active_silences: usize,
    pending: i64,
    parked: i64,
    last_tick_ms: String,
    last_tick_at: String,
    instance: String,
    holder: String,
    leader: String,
    leases: Vec<views::LeaseView>,
    backend: &'static str,
    mode: &'static str,
    last_mode: String,
    store_url: String,
}

async fn overview(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let s = match c.page_session(&headers, "/ui/") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let now = chrono::Utc::now();
    let alarms = match views::open_alarms(&c.pool, &c.settings, now).await {
        Ok(a) => a,
        Err(e) => return failed(&s, "reading the open alarms", e),
    };
    let silences = silence::active(&c.pool, now).await.unwrap_or_default();
    let counts = crate::store::outbox::counts(&c.pool)
        .await
        .unwrap_or_default();
    let last = views::ticks(&c.pool, 1).await.unwrap_or_default();
    let leases = views::leases(&c.pool).await.unwrap_or_default();
    let (holder, leader) = match &c.leader {
        None => (String::new(), "off (run --once)".to_string()),
        Some(l) if !l.elected() => (
            l.holder().to_string(),
            "off (batch.leader_election = false): this instance ticks".into(),
        ),
        Some(l) => {
            let is = tokio::time::timeout(std::time::Duration::from_secs(2), l.is_leader())
                .await
                .unwrap_or(false);
            (
                l.holder().to_string(),
                if is {
                    "on: this instance is the leader".into()
                } else {
                    "on: this instance is a standby".into()
                },
            )
        }
    };
    let st = &c.settings;
    let store_url = match st.metrics.backend {
        crate::config::MetricBackend::Influxdb => &st.influx.url,
        crate::config::MetricBackend::Prometheus => &st.prometheus.url,
    };
    let flash = c.flash(&headers);
    html(
        StatusCode::OK,
        &OverviewPage {
            page_title: "Overview",
            nav: nav(&s),
            active: "overview",
            flash,
            open_alarms: alarms.len(),
            held_alarms: alarms.iter().filter(|a| !a.hold.is_empty()).count(),
            active_silences: silences.len(),
            pending: counts.get("pending").copied().unwrap_or(0),
            parked: counts.get("parked").copied().unwrap_or(0),
            last_tick_ms: last
                .first()
                .map(|t| format!("{} ms", t.duration_ms))
                .unwrap_or_else(|| "-".into()),
            last_tick_at: last
                .first()
                .map(|t| t.started_at.clone())
                .unwrap_or_default(),
            instance: st.instance_name(),
            holder,
            leader,
            leases,
            backend: st.metrics.backend.as_str(),
            mode: st.metrics.mode.as_str(),
            last_mode: last
                .first()
                .map(|t| t.metric_mode.clone())
                .unwrap_or_default(),
            store_url: crate::config::redact::url(store_url).to_string(),
        },
    )
}

// ---- alarms ---------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "alarms.html")]
struct AlarmsPage {
    page_title: &'static str,
    nav: Option<Nav>,
    active: &'static str,
    flash: String,
    alarms: Vec<views::AlarmView>,
    app_url: Option<String>,
    operator: bool,
}

/// The management app's address, only when it is http(s).
fn app_url(settings: &Settings) -> Option<String> {
    let url = settings.alarms.resource_url.as_deref()?.trim();
    let lower = url.to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")).then(|| url.to_string())
}

async fn alarms(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let s = match c.page_session(&headers, "/ui/alarms") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let alarms = match views::open_alarms(&c.pool, &c.settings, chrono::Utc::now()).await {
        Ok(a) => a,
        Err(e) => return failed(&s, "reading the open alarms", e),
    };
    let flash = c.flash(&headers);
    html(
        StatusCode::OK,
        &AlarmsPage {
            page_title: "Alarms",
            nav: nav(&s),
            active: "alarms",
            flash,
            alarms,
            app_url: app_url(&c.settings),
            operator: s.role == Role::Operator,
        },
    )
}

// ---- silences -------------------------------------------------------------------------------

pub struct SilenceRowView {
    pub id: i64,
    pub state: &'static str,
    pub matchers: String,
    pub author: String,
    pub comment: String,
    pub created_at: String,
    pub ends_at: String,
    pub expirable: bool,
}

#[derive(Template)]
#[template(path = "silences.html")]
struct SilencesPage {
    page_title: &'static str,
    nav: Option<Nav>,
    active: &'static str,
    flash: String,
    operator: bool,
    csrf: String,
    author: String,
    error: String,
    form_matchers: Vec<String>,
    form_for: String,
    form_comment: String,
    all: bool,
    silences: Vec<SilenceRowView>,
}

/// What the silence form holds: given values, then empty fields up to [`MATCHER_FIELDS`].
struct SilenceForm {
    matchers: Vec<String>,
    duration: String,
    comment: String,
}

impl SilenceForm {
    fn from(form: &Form) -> SilenceForm {
        let mut matchers: Vec<String> = form
            .all("match")
            .into_iter()
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .take(20)
            .collect();
        while matchers.len() < MATCHER_FIELDS {
            matchers.push(String::new());
        }
        SilenceForm {
            matchers,
            duration: form.get("for").trim().to_string(),
            comment: form.get("comment").to_string(),
        }
    }
}

async fn silences_page(
    c: &Console,
    s: &Session,
    headers: &HeaderMap,
    code: StatusCode,
    all: bool,
    form: SilenceForm,
    error: String,
) -> Response {
    let now = chrono::Utc::now();
    let list = match silence::list(&c.pool, now, all).await {
        Ok(l) => l,
        Err(e) => return failed(s, "reading the silences", e),
    };
    let silences = list
        .into_iter()
        .map(|r| {
            let active = r.ends_at.is_some_and(|t| t > now);
            SilenceRowView {
                id: r.id,
                state: match r.ends_at {
                    _ if !r.valid => "invalid",
                    Some(t) if t > now => "active",
                    _ => "ended",
                },
                matchers: if r.valid {
                    r.matchers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" ")
                } else {
                    format!("INVALID: {}", r.problems.join("; "))
                },
                author: r.author,
                comment: r.comment,
                created_at: views::time(r.created_at),
                ends_at: views::time(r.ends_at),
                // as `silence expire`: an active one, or one whose end is no time at all
                expirable: active || (!r.valid && r.ends_at.is_none()),
            }
        })
        .collect();
    let flash = c.flash(headers);
    html(
        code,
        &SilencesPage {
            page_title: "Silences",
            nav: nav(s),
            active: "silences",
            flash,
            operator: s.role == Role::Operator,
            csrf: s.csrf.clone(),
            author: s.user.clone(),
            error,
            form_matchers: form.matchers,
            form_for: if form.duration.is_empty() {
                "2h".into()
            } else {
                form.duration
            },
            form_comment: form.comment,
            all,
            silences,
        },
    )
}

async fn silences(State(c): State<Shared>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let s = match c.page_session(&headers, "/ui/silences") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let q = Form::parse(q.unwrap_or_default().as_bytes());
    let all = q.get("all") == "1";
    silences_page(
        &c,
        &s,
        &headers,
        StatusCode::OK,
        all,
        SilenceForm::from(&Form(Vec::new())),
        String::new(),
    )
    .await
}

/// The silence form filled in from the query (the link in an alarm mail).
async fn new_silence(
    State(c): State<Shared>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let raw = q.unwrap_or_default();
    let back = format!("/ui/silences/new?{raw}");
    let s = match c.page_session(&headers, &back) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let form = SilenceForm::from(&Form::parse(raw.as_bytes()));
    silences_page(&c, &s, &headers, StatusCode::OK, false, form, String::new()).await
}

async fn add_silence(State(c): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let s = match c.operator_post(&headers, &form) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let filled = SilenceForm::from(&form);
    let checked = (|| -> Result<(Vec<Matcher>, chrono::Duration), String> {
        let matchers = filled
            .matchers
            .iter()
            .filter(|m| !m.is_empty())
            .map(|m| m.parse::<Matcher>())
            .collect::<Result<Vec<_>, _>>()?;
        let duration =
            silence::parse_silence_duration(&filled.duration).map_err(|e| format!("for: {e}"))?;
        Ok((matchers, duration))
    })();
    let result = match checked {
        Ok((matchers, duration)) => operator::add_silence(
            &c.pool,
            &matchers,
            duration,
            &filled.comment,
            &s.user,
            chrono::Utc::now(),
        )
        .await
        .map(|(id, ends)| (id, ends, matchers))
        .map_err(|e| {
            format!("{e:#}")
                .replace("--comment", "comment")
                .replace("--match KEY=VALUE", "matcher KEY=VALUE")
                .replace("--for", "for")
        }),
        Err(e) => Err(e),
    };
    match result {
        Ok((id, ends, matchers)) => {
            let m: Vec<String> = matchers.iter().map(ToString::to_string).collect();
            tracing::info!(
                user = %s.user,
                silence_id = id,
                "console: silence added: {} until {}",
                m.join(" "),
                ends.to_rfc3339()
            );
            c.set_flash(
                &headers,
                format!(
                    "silence {id} added: {} until {}",
                    m.join(" "),
                    views::time(Some(ends))
                ),
            );
            redirect("/ui/silences", None)
        }
        Err(e) => silences_page(&c, &s, &headers, StatusCode::BAD_REQUEST, false, filled, e).await,
    }
}

async fn expire_silence(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let s = match c.operator_post(&headers, &form) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match operator::expire_silence(&c.pool, id, chrono::Utc::now()).await {
        Ok(()) => {
            tracing::info!(user = %s.user, silence_id = id, "console: silence expired");
            c.set_flash(&headers, format!("silence {id} expired"));
            redirect("/ui/silences", None)
        }
        Err(e) => message(
            StatusCode::CONFLICT,
            Some(&s),
            "Not expired",
            format!("{e:#}"),
            "/ui/silences",
        ),
    }
}

// ---- outbox ---------------------------------------------------------------------------------

pub struct OutboxRowView {
    pub id: i64,
    pub status: String,
    pub notifier: String,
    pub kind: String,
    pub alarm_id: i64,
    pub attempts: i64,
    pub created_at: String,
    pub next_attempt_at: String,
    pub claimed_by: String,
    pub last_error: String,
}

#[derive(Template)]
#[template(path = "outbox.html")]
struct OutboxPage {
    page_title: &'static str,
    nav: Option<Nav>,
    active: &'static str,
    flash: String,
    operator: bool,
    csrf: String,
    rows: Vec<OutboxRowView>,
}

async fn outbox(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let s = match c.page_session(&headers, "/ui/outbox") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let rows = match crate::store::outbox::list(&c.pool, None, views::MAX_ROWS as u32).await {
        Ok(r) => r,
        Err(e) => return failed(&s, "reading the outbox", e),
    };
    let flash = c.flash(&headers);
    html(
        StatusCode::OK,
        &OutboxPage {
            page_title: "Outbox",
            nav: nav(&s),
            active: "outbox",
            flash,
            operator: s.role == Role::Operator,
            csrf: s.csrf.clone(),
            rows: rows
                .into_iter()
                .map(|r| OutboxRowView {
                    id: r.id,
                    status: r.status,
                    notifier: r.notifier,
                    kind: r.kind,
                    alarm_id: r.alarm_id,
                    attempts: r.attempts,
                    created_at: views::time(Some(r.created_at)),
                    next_attempt_at: views::time(Some(r.next_attempt_at)),
                    claimed_by: r.claimed_by.unwrap_or_default(),
                    last_error: r.last_error.unwrap_or_default(),
                })
                .collect(),
        },
    )
}

async fn outbox_act(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path((id, verb)): Path<(i64, String)>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let s = match c.operator_post(&headers, &form) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let verb = match verb.as_str() {
        "retry" => OutboxVerb::Retry,
        "drop" => OutboxVerb::Drop,
        _ => {
            return message(
                StatusCode::NOT_FOUND,
                Some(&s),
                "Not found",
                "no such action".into(),
                "/ui/outbox",
            );
        }
    };
    // never waits for a claim: the page says who holds it, as the CLI without --wait
    match operator::outbox_act(&c.pool, verb, &[id], None, |_, _, _| {}).await {
        Ok((n, left)) => {
            let (_, done) = verb.words();
            let text = match left.first() {
                None if n > 0 => format!("notification {id} {done}"),
                Some((id, why)) => {
                    operator::untouched_text(verb, *id, why, "Try again when its claim has lapsed.")
                }
                None => format!("notification {id}: nothing changed"),
            };
            tracing::info!(user = %s.user, notification_id = id, "console: {text}");
            c.set_flash(&headers, text);
            redirect("/ui/outbox", None)
        }
        Err(e) => failed(&s, "changing the outbox", e),
    }
}

// ---- ticks, scaling -------------------------------------------------------------------------

/// Ticks charted and listed.
const TICKS_SHOWN: i64 = 40;

#[derive(Template)]
#[template(path = "ticks.html")]
struct TicksPage {
    page_title: &'static str,
    nav: Option<Nav>,
    active: &'static str,
    flash: String,
    charted: usize,
    chart: String,
    ticks: Vec<views::TickView>,
}

async fn ticks(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let s = match c.page_session(&headers, "/ui/ticks") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let ticks = match views::ticks(&c.pool, TICKS_SHOWN).await {
        Ok(t) => t,
        Err(e) => return failed(&s, "reading the ticks", e),
    };
    let flash = c.flash(&headers);
    html(
        StatusCode::OK,
        &TicksPage {
            page_title: "Ticks",
            nav: nav(&s),
            active: "ticks",
            flash,
            charted: ticks.len(),
            chart: chart::steps_svg(&ticks),
            ticks,
        },
    )
}

#[derive(Template)]
#[template(path = "scaling.html")]
struct ScalingPage {
    page_title: &'static str,
    nav: Option<Nav>,
    active: &'static str,
    flash: String,
    decisions: Vec<views::ScaleView>,
}

async fn scaling(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let s = match c.page_session(&headers, "/ui/scaling") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let decisions = match views::scaling(&c.pool).await {
        Ok(d) => d,
        Err(e) => return failed(&s, "reading the scale decisions", e),
    };
    let flash = c.flash(&headers);
    html(
        StatusCode::OK,
        &ScalingPage {
            page_title: "Scaling",
            nav: nav(&s),
            active: "scaling",
            flash,
            decisions,
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_console_path_is_a_place_to_come_back_to() {
        use super::safe_next;
        assert_eq!(
            safe_next("/ui/silences/new?match=vm%3Da"),
            "/ui/silences/new?match=vm%3Da"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui\\..",
            "/other",
            "",
        ] {
            assert_eq!(safe_next(bad), "/ui/", "{bad}");
        }
    }
}
