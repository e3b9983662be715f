//! Secrets in configuration: values the code uses but nothing prints. [`Secret`] is a
//! password or token, shown as `<secret>`; [`SecretUrl`] is a URL or connection string that may
//! carry one (`redis://:pw@host`, `postgres://u:pw@h/db?password=…`, `host=h password=pw`),
//! shown with only the secret parts replaced, so an operator still sees where it points.
//!
//! This module owns the redaction rules; it knows nothing of where values come from or go.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// What every redacted value is replaced with.
pub const REDACTED: &str = "<secret>";

/// A secret string: usable by the code, printed as `<secret>` everywhere else.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s`.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for building requests only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty (unset).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// A URL or libpq-style connection string that may hold a password. `Debug`, `Display` and
/// serialisation show it redacted by [`redact_url`]; [`SecretUrl::expose`] gives it whole.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps `s`.
    pub fn new(s: impl Into<String>) -> Self {
        SecretUrl(s.into())
    }

    /// The value itself, for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value with its secrets replaced, for labels, messages and the API.
    pub fn redacted(&self) -> String {
        redact_url(&self.0).into_owned()
    }

    /// The value with userinfo left out entirely and secret parameters hidden: an identity
    /// for labels (a probe's `instance`), where even `user:<secret>@` would be noise.
    pub fn without_userinfo(&self) -> String {
        match self.0.find("://") {
            Some(i) => redact_uri(&self.0, i + 3, false).unwrap_or_else(|| self.0.clone()),
            None => self.redacted(),
        }
    }

    /// Whether it is empty (unset).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretUrl {
    fn from(s: String) -> Self {
        SecretUrl(s)
    }
}

impl From<&str> for SecretUrl {
    fn from(s: &str) -> Self {
        SecretUrl(s.to_string())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact_url(&self.0))
    }
}

/// Whether a URL query key or connection-string keyword names a secret.
pub fn secret_keyword(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    k.contains("pass")
        || k.contains("pwd")
        || k.contains("secret")
        || k.contains("token")
        || k.ends_with("key")
        || k == "auth"
        || k == "credentials"
        || k == "signature"
        || k == "sig"
}

/// `s` with its secrets replaced by `<secret>`: a URL's userinfo becomes `user:<secret>@` (a
/// lone userinfo, often a token, becomes `<secret>@`), and the values of secret-looking query
/// parameters or `key=value` keywords (`password=`, `sslpassword=`, `token=`…) are hidden.
/// Anything else is kept, so the host, port and database stay visible.
pub fn redact_url(s: &str) -> Cow<'_, str> {
    let out = match s.find("://") {
        Some(i) => redact_uri(s, i + 3, true),
        None => redact_keywords(s),
    };
    match out {
        Some(o) => Cow::Owned(o),
        None => Cow::Borrowed(s),
    }
}

fn redact_uri(s: &str, auth_start: usize, keep_user: bool) -> Option<String> {
    let rest = &s[auth_start..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..auth_start]);
    let mut changed = false;
    match authority.rfind('@') {
        Some(at) if keep_user => {
            if let Some((user, _)) = authority[..at].split_once(':') {
                out.push_str(user);
                out.push(':');
            }
            out.push_str(REDACTED);
            out.push_str(&authority[at..]);
            changed = true;
        }
        Some(at) => {
            out.push_str(&authority[at + 1..]);
            changed = true;
        }
        None => out.push_str(authority),
    }
    let tail = &rest[auth_end..];
    let (path, query_and_fragment) = match tail.find('?') {
        Some(q) => (&tail[..q], Some(&tail[q + 1..])),
        None => (tail, None),
    };
    out.push_str(path);
    if let Some(qf) = query_and_fragment {
        let (query, fragment) = match qf.find('#') {
            Some(h) => (&qf[..h], Some(&qf[h..])),
            None => (qf, None),
        };
        out.push('?');
        for (n, pair) in query.split('&').enumerate() {
            if n > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((k, v)) if secret_keyword(k) && !v.is_empty() => {
                    out.push_str(k);
                    out.push('=');
                    out.push_str(REDACTED);
                    changed = true;
                }
                _ => out.push_str(pair),
            }
        }
        if let Some(f) = fragment {
            out.push_str(f);
        }
    }
    changed.then_some(out)
}

/// libpq's `key=value key='quoted \' value'` form.
fn redact_keywords(s: &str) -> Option<String> {
    if !s.contains('=') {
        return None;
    }
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    let mut i = 0;
    while i < b.len() {
        // Whitespace between pairs.
        let ws = i;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        out.push_str(&s[ws..i]);
        let key_start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &s[key_start..i];
        out.push_str(key);
        let ws = i;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            out.push_str(&s[ws..i]);
            continue;
        }
        i += 1;
        let eq_end = i;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let value_start = i;
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += step(s, i);
            }
            i = (i + 1).min(b.len());
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += step(s, i);
            }
            i = i.min(b.len());
        }
        if secret_keyword(key) && i > value_start {
            out.push_str(&s[ws..value_start]);
            out.push_str(REDACTED);
            changed = true;
        } else {
            out.push_str(&s[ws..eq_end]);
            out.push_str(&s[eq_end..i]);
        }
    }
    changed.then_some(out)
}

/// Bytes to the next character of a value: a backslash escapes the (possibly multi-byte)
/// character after it.
fn step(s: &str, i: usize) -> usize {
    let at = |j: usize| {
        s.get(j..)
            .and_then(|r| r.chars().next())
            .map_or(1, char::len_utf8)
    };
    if s.as_bytes()[i] == b'\\' {
        1 + if i + 1 < s.len() { at(i + 1) } else { 0 }
    } else {
        at(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_where_they_point_and_lose_the_password() {
        for (given, shown) in [
            (
                "redis://:pw1@cache:6379/0",
                "redis://:<secret>@cache:6379/0",
            ),
            (
                "redis://default:pw1@cache:6379",
                "redis://default:<secret>@cache:6379",
            ),
            (
                "https://tok3n@hooks.example/x",
                "https://<secret>@hooks.example/x",
            ),
            (
                "postgres://app:s3cr@t@db:5432/app?sslmode=require&password=x",
                "postgres://app:<secret>@db:5432/app?sslmode=require&password=<secret>",
            ),
            ("http://proxy:3128", "http://proxy:3128"),
            (
                "http://h/p?q=1&access_token=abc#f",
                "http://h/p?q=1&access_token=<secret>#f",
            ),
            (
                "host=db user=app password=pw1 dbname=app",
                "host=db user=app password=<secret> dbname=app",
            ),
            (
                "host=db password = 'p w\\' 1' sslmode=disable",
                "host=db password = <secret> sslmode=disable",
            ),
            ("host=db user=app", "host=db user=app"),
            ("password=\\é x=é\\", "password=<secret> x=é\\"),
            ("db:5432", "db:5432"),
        ] {
            assert_eq!(redact_url(given), shown, "{given}");
            assert!(!format!("{:?}", SecretUrl::new(given)).contains("pw1"));
        }
    }

    #[test]
    fn identities_have_no_userinfo() {
        let u = SecretUrl::new("https://probe:pw1@api.example:8443/health?token=t1");
        assert_eq!(
            u.without_userinfo(),
            "https://api.example:8443/health?token=<secret>"
        );
        assert_eq!(SecretUrl::new("db:5432").without_userinfo(), "db:5432");
    }

    #[test]
    fn serialised_forms_are_redacted() {
        let s = serde_json::to_string(&Secret::new("hunter2")).unwrap();
        assert_eq!(s, "\"<secret>\"");
        let u = serde_json::to_string(&SecretUrl::new("redis://u:hunter2@h")).unwrap();
        assert_eq!(u, "\"redis://u:<secret>@h\"");
    }
}
