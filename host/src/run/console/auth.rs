//! Who is logged in to the console: users from `[[console.users]]` (Argon2 password hashes),
//! sessions kept in memory (a random id in an HttpOnly, SameSite=Strict cookie), a CSRF token
//! per session for every form, and a bound on password guessing.

use crate::config::console::{ConsoleSettings, Role};
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie.
pub const SESSION_COOKIE: &str = "monit_console";
/// The login form's own CSRF cookie (there is no session yet to tie the token to).
pub const LOGIN_COOKIE: &str = "monit_console_login";
/// A session unused this long ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// A session ends this long after the login, used or not.
pub const MAX_AGE: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions kept at once; the oldest is ended to make room.
pub const MAX_SESSIONS: usize = 10_000;
/// Failed logins of one name within [`LOCKOUT`] after which that name is refused until the
/// window passes (a password cannot be guessed at argon2's speed times many tries).
pub const MAX_FAILURES: usize = 5;
pub const LOCKOUT: Duration = Duration::from_secs(10 * 60);

/// Hashes a password for `[[console.users]] password_hash` (Argon2id, default parameters,
/// random salt).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    if password.is_empty() {
        anyhow::bail!("an empty password");
    }
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

/// 32 random bytes, hex: a session id or a CSRF token.
pub fn random_token() -> anyhow::Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no random numbers: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Equal in constant time (a token compared byte by byte would leak its prefix).
pub fn same_token(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[derive(Clone, Debug)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// every form of this session carries it
    pub csrf: String,
    /// what the next page says once (the outcome of a form)
    flash: Option<String>,
    created: Instant,
    last_seen: Instant,
}

struct User {
    hash: String,
    role: Role,
}

/// The users, the sessions and the failed logins.
pub struct Auth {
    users: HashMap<String, User>,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
    /// what an unknown name is checked against, so it takes as long as a known one
    decoy: String,
    /// password checks at once: each takes ~20 MiB and a core for a moment, so a burst of
    /// logins queues instead of starving the ticks
    checking: tokio::sync::Semaphore,
}

/// Password checks run at once.
pub const CONCURRENT_CHECKS: usize = 2;

pub enum LoginError {
    /// a wrong name or password (the same answer for both)
    Refused,
    /// too many failures for this name lately
    LockedOut,
    Internal(String),
}

impl Auth {
    pub fn new(c: &ConsoleSettings) -> anyhow::Result<Auth> {
        let users = c
            .users
            .iter()
            .map(|u| {
                (
                    u.name.clone(),
                    User {
                        hash: u.password_hash.expose().trim().to_string(),
                        role: u.role,
                    },
                )
            })
            .collect();
        Ok(Auth {
            users,
            sessions: Default::default(),
            failures: Default::default(),
            decoy: hash_password(&random_token()?)?,
            checking: tokio::sync::Semaphore::new(CONCURRENT_CHECKS),
        })
    }

    /// Checks a name and password (Argon2 off the async threads), and opens a session:
    /// returns its id.
    pub async fn login(&self, name: &str, password: &str) -> Result<String, LoginError> {
        if self.locked_out(name) {
            metrics::counter!("monit_console_logins_total", "outcome" => "locked_out").increment(1);
            return Err(LoginError::LockedOut);
        }
        let (hash, role) = match self.users.get(name) {
            Some(u) => (u.hash.clone(), Some(u.role)),
            None => (self.decoy.clone(), None),
        };
        let pw = password.to_string();
        let _permit = self
            .checking
            .acquire()
            .await
            .map_err(|e| LoginError::Internal(format!("password checks closed: {e}")))?;
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| {
                argon2::Argon2::default()
                    .verify_password(pw.as_bytes(), &h)
                    .is_ok()
            })
        })
        .await
        .map_err(|e| LoginError::Internal(format!("checking the password: {e}")))?;
        let Some(role) = role.filter(|_| ok) else {
            self.failed(name);
            metrics::counter!("monit_console_logins_total", "outcome" => "refused").increment(1);
            return Err(LoginError::Refused);
        };
        if let Ok(mut f) = self.failures.lock() {
            f.remove(name);
        }
        let id = random_token().map_err(|e| LoginError::Internal(e.to_string()))?;
        let csrf = random_token().map_err(|e| LoginError::Internal(e.to_string()))?;
        let now = Instant::now();
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| LoginError::Internal("session table poisoned".into()))?;
        sessions.retain(|_, s| alive(s, now));
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                user: name.to_string(),
                role,
                csrf,
                flash: None,
                created: now,
                last_seen: now,
            },
        );
        metrics::counter!("monit_console_logins_total", "outcome" => "ok").increment(1);
        Ok(id)
    }

    /// The live session of this id, marked as used now.
    pub fn session(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().ok()?;
        let s = sessions.get_mut(id)?;
        if !alive(s, now) {
            sessions.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    pub fn set_flash(&self, id: &str, text: String) {
        if let Ok(mut s) = self.sessions.lock()
            && let Some(s) = s.get_mut(id)
        {
            s.flash = Some(text);
        }
    }

    pub fn take_flash(&self, id: &str) -> Option<String> {
        self.sessions.lock().ok()?.get_mut(id)?.flash.take()
    }

    pub fn logout(&self, id: &str) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(id);
        }
    }

    fn locked_out(&self, name: &str) -> bool {
        let now = Instant::now();
        let Ok(mut f) = self.failures.lock() else {
            return true;
        };
        let Some(times) = f.get_mut(name) else {
            return false;
        };
        times.retain(|t| now.duration_since(*t) < LOCKOUT);
        times.len() >= MAX_FAILURES
    }

    fn failed(&self, name: &str) {
        let Ok(mut f) = self.failures.lock() else {
            return;
        };
        // bounded: names are whatever a client sends
        if f.len() >= MAX_SESSIONS && !f.contains_key(name) {
            let now = Instant::now();
            f.retain(|_, t| t.iter().any(|t| now.duration_since(*t) < LOCKOUT));
            if f.len() >= MAX_SESSIONS {
                return;
            }
        }
        let name: String = name.chars().take(100).collect();
        f.entry(name).or_default().push(Instant::now());
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_seen) < IDLE_TIMEOUT && now.duration_since(s.created) < MAX_AGE
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, path `/ui`; `Secure` when the console is
/// reached over https; `max_age` None ends the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Option<Duration>, secure: bool) -> String {
    let age = max_age.map_or(0, |d| d.as_secs());
    format!(
        "{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={age}{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::console::ConsoleUser;
    use crate::config::secret::Secret;

    fn auth(pw: &str, role: Role) -> Auth {
        Auth::new(&ConsoleSettings {
            enabled: true,
            public_url: None,
            users: vec![ConsoleUser {
                name: "kim".into(),
                password_hash: Secret::new(hash_password(pw).unwrap()),
                role,
            }],
        })
        .unwrap()
    }

    #[tokio::test]
    async fn the_right_password_opens_a_session_and_the_wrong_one_locks_out_after_five() {
        let a = auth("correct horse", Role::Viewer);
        let id = a.login("kim", "correct horse").await.ok().unwrap();
        let s = a.session(&id).unwrap();
        assert_eq!((s.user.as_str(), s.role), ("kim", Role::Viewer));
        assert_eq!(s.csrf.len(), 64);
        assert!(a.session("not-a-session").is_none());
        a.logout(&id);
        assert!(a.session(&id).is_none());
        assert!(matches!(
            a.login("nobody", "correct horse").await,
            Err(LoginError::Refused)
        ));
        for _ in 0..MAX_FAILURES {
            assert!(matches!(
                a.login("kim", "wrong").await,
                Err(LoginError::Refused)
            ));
        }
        // locked: even the right password is refused for a while
        assert!(matches!(
            a.login("kim", "correct horse").await,
            Err(LoginError::LockedOut)
        ));
    }

    #[test]
    fn tokens_compare_whole_and_cookies_are_read_by_name() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd") && !same_token("abc", "ab") && !same_token("", ""));
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            "a=1; monit_console=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), None);
        let c = set_cookie(SESSION_COOKIE, "v", Some(MAX_AGE), true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
    }
}
