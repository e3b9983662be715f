//! Login: one user, `admin`, whose password is kept only as an argon2 hash. Browsers get a
//! session cookie from `/-/login`; tools send HTTP basic auth; Grafana may instead send a
//! read-only bearer token from the config. The UI and every mutating endpoint need the admin;
//! reads are open unless `web.auth.protect_reads`.
//!
//! Owns the credential check, sessions and login rate limiting; knows nothing of what the
//! endpoints do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration as StdDuration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine as _;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::scrape::Secret;

/// `web.auth`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// A file holding the admin password (`APPLIANCE_ADMIN_PASSWORD` wins over it). Without
    /// either, a password is generated at first start, printed once, and its hash kept in
    /// the data directory.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub admin_password_file: String,
    /// Bearer tokens that may read (queries, metadata, targets, alerts), e.g. for Grafana.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub read_tokens: Vec<Secret>,
    /// Bearer tokens that may push samples to `/api/v1/write` (and nothing else), for other
    /// agents and appliances sending here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub write_tokens: Vec<Secret>,
    /// Require a login (session, basic auth or a read token) for the read APIs too.
    pub protect_reads: bool,
    /// How long a browser session lasts.
    pub session_ttl: crate::model::time::Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            admin_password_file: String::new(),
            read_tokens: Vec::new(),
            write_tokens: Vec::new(),
            protect_reads: false,
            session_ttl: crate::model::time::Duration::from_millis(12 * 3600 * 1000),
        }
    }
}

/// Why the admin password could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Reading or writing a password or hash file failed.
    #[error("{0}: {1}")]
    File(String, std::io::Error),
    /// Hashing failed or a stored hash is not an argon2 hash.
    #[error("admin password hash: {0}")]
    Hash(String),
}

/// The user name.
pub const ADMIN: &str = "admin";
/// The session cookie's name.
pub const COOKIE: &str = "appliance_session";
/// Failed logins allowed per client address and minute before `429`.
const MAX_FAILURES: u32 = 5;
/// Failed logins allowed per user name and minute, from all addresses together: slows a
/// guesser spread over many addresses, while the admin's sessions and already verified
/// credentials keep working.
const MAX_USER_FAILURES: u32 = 30;
const FAILURE_WINDOW: StdDuration = StdDuration::from_secs(60);

/// What a request's credentials proved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The access they give.
    pub access: Access,
    /// It came from the session cookie (a browser): mutations must then come from our origin.
    pub session: bool,
    /// A password was offered but not checked: too many failures from this address or for
    /// this user.
    pub throttled: bool,
}

fn hash(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A readable generated password: 20 characters from an unambiguous alphabet.
fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 20];
    OsRng.fill_bytes(&mut b);
    b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect()
}

/// Where the admin password came from; `Generated` carries the password to print once.
#[derive(Debug, PartialEq)]
pub enum Source {
    /// `APPLIANCE_ADMIN_PASSWORD`.
    Env,
    /// `web.auth.admin_password_file`.
    File,
    /// A hash stored in the data directory by an earlier start.
    Stored,
    /// Generated now (printed once by the caller, then only its hash exists).
    Generated(String),
}

/// The argon2 hash of the admin password, from the environment, the password file, the data
/// directory, or a newly generated password (whose hash is then stored there).
/// `env_password` is `APPLIANCE_ADMIN_PASSWORD`, passed in so callers (and tests) decide.
pub fn admin_hash(
    cfg: &AuthConfig,
    data_dir: &Path,
    env_password: Option<&str>,
) -> Result<(String, Source), AuthError> {
    if let Some(p) = env_password.filter(|p| !p.is_empty()) {
        return Ok((hash(p)?, Source::Env));
    }
    if !cfg.admin_password_file.is_empty() {
        let p = crate::model::files::read_bounded(Path::new(&cfg.admin_password_file), 4096)
            .map_err(|e| AuthError::File(cfg.admin_password_file.clone(), e))?;
        return Ok((hash(p.trim_end_matches(['\n', '\r']))?, Source::File));
    }
    let stored = data_dir.join("admin_password.argon2");
    if let Ok(h) = std::fs::read_to_string(&stored) {
        let h = h.trim().to_string();
        PasswordHash::new(&h).map_err(|e| AuthError::Hash(format!("{}: {e}", stored.display())))?;
        return Ok((h, Source::Stored));
    }
    let p = generate_password();
    let h = hash(&p)?;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| AuthError::File(data_dir.display().to_string(), e))?;
    write_private(&stored, &h).map_err(|e| AuthError::File(stored.display().to_string(), e))?;
    Ok((h, Source::Generated(p)))
}

fn write_private(p: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = p.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(tmp, p)
}

/// Whether `t` is one of `tokens`, compared in constant time per token.
fn token_in(tokens: &[String], t: &str) -> bool {
    tokens.iter().any(|k| {
        k.len() == t.len()
            && k.bytes()
                .zip(t.bytes())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
    })
}

/// What a request proved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Nothing (or wrong credentials).
    None,
    /// A read token.
    Read,
    /// The admin (session or basic auth).
    Admin,
}

/// The credential check, sessions and login throttling.
pub struct Auth {
    hash: String,
    read_tokens: Vec<String>,
    write_tokens: Vec<String>,
    protect_reads: bool,
    session_ttl: StdDuration,
    sessions: Mutex<HashMap<String, Instant>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    user_failures: Mutex<HashMap<String, (u32, Instant)>>,
    /// SHA-256 of basic-auth credentials already verified, so a tool's every request does not
    /// pay argon2's cost; the plaintext is never kept.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Auth {
    /// Checks against `hash` (argon2 PHC string) with `cfg`'s tokens and settings.
    pub fn new(hash: String, cfg: &AuthConfig) -> Self {
        Auth {
            hash,
            read_tokens: cfg
                .read_tokens
                .iter()
                .map(|t| t.expose().to_string())
                .collect(),
            write_tokens: cfg
                .write_tokens
                .iter()
                .map(|t| t.expose().to_string())
                .collect(),
            protect_reads: cfg.protect_reads,
            session_ttl: cfg.session_ttl.std(),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            user_failures: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `authorization` carries one of the write tokens (`Bearer …`).
    pub fn is_writer(&self, authorization: Option<&str>, ip: IpAddr) -> bool {
        let Some(t) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
            return false;
        };
        let ok = token_in(&self.write_tokens, t.trim());
        if !ok {
            self.failed(None, ip);
        }
        ok
    }

    /// Whether reads need credentials.
    pub fn protect_reads(&self) -> bool {
        self.protect_reads
    }

    /// Whether `ip` has failed too often in the last minute.
    pub fn throttled(&self, ip: IpAddr) -> bool {
        let f = self.failures.lock();
        f.get(&ip)
            .is_some_and(|(n, since)| *n >= MAX_FAILURES && since.elapsed() < FAILURE_WINDOW)
    }

    /// Whether a password for `user` from `ip` is refused unchecked for now.
    pub fn password_throttled(&self, user: &str, ip: IpAddr) -> bool {
        self.throttled(ip)
            || self
                .user_failures
                .lock()
                .get(user)
                .is_some_and(|(n, since)| {
                    *n >= MAX_USER_FAILURES && since.elapsed() < FAILURE_WINDOW
                })
    }

    fn failed(&self, user: Option<&str>, ip: IpAddr) {
        fn count<K: std::hash::Hash + Eq>(m: &mut HashMap<K, (u32, Instant)>, k: K) -> u32 {
            // Many guessing addresses must not grow the table without bound.
            if m.len() >= 1024 {
                m.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
            }
            let e = m.entry(k).or_insert((0, Instant::now()));
            if e.1.elapsed() >= FAILURE_WINDOW {
                *e = (0, Instant::now());
            }
            e.0 += 1;
            e.0
        }
        let n = count(&mut self.failures.lock(), ip);
        if let Some(u) = user {
            // Only the real user's name is tracked: other names cannot fill the table.
            if u == ADMIN {
                count(&mut self.user_failures.lock(), u.to_string());
            }
        }
        tracing::warn!(client = %ip, failures = n, "login failed");
    }

    /// Checks `user`/`password`; counts failures per `ip` and per user. Credentials verified
    /// before pass at once; otherwise a throttled address or user is refused unchecked.
    pub fn check_password(&self, user: &str, password: &str, ip: IpAddr) -> bool {
        let digest: [u8; 32] = Sha256::digest(format!("{user}:{password}").as_bytes()).into();
        if let Some(t) = self.verified.lock().get(&digest) {
            if t.elapsed() < StdDuration::from_secs(300) {
                return true;
            }
        }
        if self.password_throttled(user, ip) {
            return false;
        }
        let ok = user == ADMIN
            && PasswordHash::new(&self.hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false);
        if ok {
            let mut v = self.verified.lock();
            v.retain(|_, t| t.elapsed() < StdDuration::from_secs(300));
            v.insert(digest, Instant::now());
        } else {
            self.failed(Some(user), ip);
        }
        ok
    }

    /// Starts a session; returns its token.
    pub fn new_session(&self) -> String {
        let t = random_token(32);
        let mut s = self.sessions.lock();
        s.retain(|_, exp| *exp > Instant::now());
        s.insert(t.clone(), Instant::now() + self.session_ttl);
        t
    }

    /// Ends a session.
    pub fn end_session(&self, token: &str) {
        self.sessions.lock().remove(token);
    }

    /// What the request's `Authorization` and `Cookie` headers prove.
    pub fn access(&self, authorization: Option<&str>, cookie: Option<&str>, ip: IpAddr) -> Access {
        self.grant(authorization, cookie, ip).access
    }

    /// What the request's `Authorization` and `Cookie` headers prove, and how. A valid
    /// session is never throttled: a guesser behind the admin's proxy cannot lock them out.
    pub fn grant(&self, authorization: Option<&str>, cookie: Option<&str>, ip: IpAddr) -> Grant {
        let plain = |access| Grant {
            access,
            session: false,
            throttled: false,
        };
        if let Some(c) = cookie {
            for part in c.split(';') {
                if let Some(tok) = part.trim().strip_prefix(&format!("{COOKIE}=")) {
                    if self
                        .sessions
                        .lock()
                        .get(tok)
                        .is_some_and(|exp| *exp > Instant::now())
                    {
                        return Grant {
                            access: Access::Admin,
                            session: true,
                            throttled: false,
                        };
                    }
                }
            }
        }
        let Some(a) = authorization else {
            return plain(Access::None);
        };
        if let Some(b) = a.strip_prefix("Basic ") {
            let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b.trim()) else {
                return plain(Access::None);
            };
            let text = String::from_utf8_lossy(&raw);
            let (u, p) = text.split_once(':').unwrap_or((&text, ""));
            if self.check_password(u, p, ip) {
                return plain(Access::Admin);
            }
            return Grant {
                access: Access::None,
                session: false,
                throttled: self.password_throttled(u, ip),
            };
        }
        if let Some(t) = a.strip_prefix("Bearer ") {
            let t = t.trim();
            if token_in(&self.read_tokens, t) {
                return plain(Access::Read);
            }
            // A write token is not a guess, but grants nothing here.
            if !token_in(&self.write_tokens, t) {
                self.failed(None, ip);
            }
        }
        plain(Access::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let cfg = AuthConfig {
            read_tokens: vec![Secret::new("grafana-token")],
            ..AuthConfig::default()
        };
        Auth::new(hash("s3cret").unwrap(), &cfg)
    }

    fn basic(u: &str, p: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    }

    #[test]
    fn credentials_sessions_and_tokens() {
        let a = auth();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            a.access(Some(&basic("admin", "s3cret")), None, ip),
            Access::Admin
        );
        assert_eq!(
            a.access(Some(&basic("admin", "wrong")), None, ip),
            Access::None
        );
        assert_eq!(
            a.access(Some(&basic("root", "s3cret")), None, ip),
            Access::None
        );
        assert_eq!(
            a.access(Some("Bearer grafana-token"), None, ip),
            Access::Read
        );
        assert_eq!(a.access(Some("Bearer nope"), None, ip), Access::None);
        let s = a.new_session();
        assert_eq!(
            a.access(None, Some(&format!("x=1; {COOKIE}={s}")), ip),
            Access::Admin
        );
        a.end_session(&s);
        assert_eq!(
            a.access(None, Some(&format!("{COOKIE}={s}")), ip),
            Access::None
        );
        assert_eq!(a.access(None, None, ip), Access::None);
    }

    #[test]
    fn failures_are_throttled_per_address() {
        let a = auth();
        let bad: IpAddr = "10.0.0.9".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(!a.check_password("admin", "guess", bad));
        }
        assert!(a.throttled(bad));
        assert!(!a.throttled("10.0.0.10".parse().unwrap()));
    }

    /// Issue 13: anyone behind the admin's proxy could keep the admin out by failing logins.
    #[test]
    fn a_throttled_address_keeps_valid_sessions_and_verified_credentials() {
        let a = auth();
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        assert!(a.check_password("admin", "s3cret", ip));
        let s = a.new_session();
        for _ in 0..MAX_FAILURES {
            a.check_password("admin", "guess", ip);
        }
        assert!(a.throttled(ip));
        let cookie = format!("{COOKIE}={s}");
        let g = a.grant(None, Some(&cookie), ip);
        assert_eq!((g.access, g.session), (Access::Admin, true));
        assert_eq!(
            a.access(Some(&basic("admin", "s3cret")), None, ip),
            Access::Admin
        );
        let g = a.grant(Some(&basic("admin", "other-guess")), None, ip);
        assert_eq!((g.access, g.throttled), (Access::None, true));
        // Guesses for the admin spread over many addresses are throttled per user too.
        for i in 0..MAX_USER_FAILURES {
            a.check_password(
                "admin",
                "guess",
                IpAddr::from([10, 1, (i / 250) as u8, (i % 250) as u8]),
            );
        }
        assert!(a.password_throttled("admin", "10.9.9.9".parse().unwrap()));
        assert!(!a.password_throttled("nobody", "10.9.9.9".parse().unwrap()));
    }

    #[test]
    fn a_generated_password_is_stored_as_a_hash_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AuthConfig::default();
        let (h1, s1) = admin_hash(&cfg, dir.path(), None).unwrap();
        let Source::Generated(p) = s1 else {
            panic!("expected a generated password")
        };
        let stored = std::fs::read_to_string(dir.path().join("admin_password.argon2")).unwrap();
        assert_eq!(stored, h1);
        assert!(!stored.contains(&p), "only the hash is stored");
        let (h2, s2) = admin_hash(&cfg, dir.path(), None).unwrap();
        assert_eq!((h2, s2), (h1.clone(), Source::Stored));
        // The environment wins over what is stored.
        let (h3, s3) = admin_hash(&cfg, dir.path(), Some("from-env")).unwrap();
        assert_eq!(s3, Source::Env);
        let e = Auth::new(h3, &cfg);
        assert!(e.check_password("admin", "from-env", "127.0.0.1".parse().unwrap()));
        assert!(!e.check_password("admin", &p, "127.0.0.1".parse().unwrap()));
        let a = Auth::new(h1, &cfg);
        assert!(a.check_password("admin", &p, "127.0.0.1".parse().unwrap()));
    }
}
