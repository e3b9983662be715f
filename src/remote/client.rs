//! One remote's HTTP side: the client (TLS, proxy, redirects, HTTP/2), credentials (basic
//! auth, `authorization`, bearer token, OAuth 2.0 client credentials with a cached token) and
//! one POST with the protocol's headers. Retrying is the shard's business, not this file's.

use std::time::{Duration as StdDuration, Instant};

use parking_lot::Mutex;

use super::config::{OAuth2, RemoteWriteConfig};
use super::proto::Protocol;

/// How one attempt ended.
#[derive(Debug)]
pub enum Attempt {
    /// 2xx. The 2.0 `…-Written` headers, when the receiver sent them.
    Ok {
        /// `X-Prometheus-Remote-Write-Samples-Written`.
        samples_written: Option<u64>,
        /// `X-Prometheus-Remote-Write-Histograms-Written`.
        histograms_written: Option<u64>,
    },
    /// Worth retrying (5xx, 429 when configured, a network error), after at least `after`
    /// when the receiver said so (`Retry-After`).
    Retry {
        /// What went wrong.
        error: String,
        /// The receiver's `Retry-After`.
        after: Option<StdDuration>,
    },
    /// Will never succeed (another 4xx, a bad credential file): the batch is dropped.
    Permanent {
        /// What went wrong.
        error: String,
    },
}

enum Credential {
    None,
    Basic(String, Option<String>),
    Header(String),
}

/// A cached OAuth 2.0 token.
struct Token {
    value: String,
    expires: Instant,
}

/// The HTTP side of one remote.
pub struct Client {
    http: reqwest::Client,
    cfg: RemoteWriteConfig,
    token: Mutex<Option<Token>>,
    oauth_http: Option<reqwest::Client>,
}

fn build_http(
    tls: Option<&crate::model::httpconf::TlsConfig>,
    proxy: Option<&crate::model::secret::SecretUrl>,
    follow_redirects: bool,
    http2: bool,
    timeout: StdDuration,
) -> Result<reqwest::Client, String> {
    let config = tls.cloned().unwrap_or_default().client_config()?;
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .redirect(if follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        })
        .timeout(timeout)
        .no_proxy();
    if let Some(p) = proxy {
        b = b.proxy(
            reqwest::Proxy::all(p.expose())
                .map_err(|e| format!("proxy_url {}: {e}", p.redacted()))?,
        );
    }
    if !http2 {
        b = b.http1_only();
    }
    b.build().map_err(|e| e.to_string())
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<StdDuration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(StdDuration::from_secs(s));
    }
    let t = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = t.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    Some(StdDuration::from_millis(ms.max(0) as u64))
}

impl Client {
    /// The client for `cfg` (reads TLS files now, so a bad file is a config error).
    pub fn new(cfg: &RemoteWriteConfig) -> Result<Client, String> {
        let http = build_http(
            cfg.tls_config.as_ref(),
            cfg.proxy_url.as_ref(),
            cfg.follow_redirects,
            cfg.enable_http2,
            cfg.remote_timeout.std(),
        )?;
        let oauth_http = match &cfg.oauth2 {
            Some(o) => Some(build_http(
                o.tls_config.as_ref(),
                o.proxy_url.as_ref(),
                true,
                true,
                cfg.remote_timeout.std(),
            )?),
            None => None,
        };
        Ok(Client {
            http,
            cfg: cfg.clone(),
            token: Mutex::new(None),
            oauth_http,
        })
    }

    async fn oauth_token(&self, o: &OAuth2) -> Result<String, String> {
        if let Some(t) = self.token.lock().as_ref() {
            if t.expires > Instant::now() {
                return Ok(t.value.clone());
            }
        }
        let secret = match &o.client_secret {
            Some(s) => s.expose().to_string(),
            None if !o.client_secret_file.is_empty() => {
                std::fs::read_to_string(&o.client_secret_file)
                    .map(|s| s.trim().to_string())
                    .map_err(|e| {
                        format!("unable to read secret file {:?}: {e}", o.client_secret_file)
                    })?
            }
            None => String::new(),
        };
        let mut form: Vec<(String, String)> =
            vec![("grant_type".into(), "client_credentials".into())];
        if !o.scopes.is_empty() {
            form.push(("scope".into(), o.scopes.join(" ")));
        }
        for (k, v) in &o.endpoint_params {
            form.push((k.clone(), v.expose().to_string()));
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        let http = self.oauth_http.as_ref().unwrap_or(&self.http);
        let resp = http
            .post(o.token_url.expose())
            .basic_auth(&o.client_id, Some(secret))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "oauth2 token request: {}",
                    crate::model::secret::redact_url(&e.to_string())
                )
            })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("oauth2 token response: {e}"))?;
        if !status.is_success() {
            return Err(format!("oauth2 token endpoint answered {status}"));
        }
        #[derive(serde::Deserialize)]
        struct Resp {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let r: Resp =
            serde_json::from_slice(&bytes).map_err(|e| format!("oauth2 token response: {e}"))?;
        // Renew a little early, so a token never expires in flight.
        let life = r.expires_in.unwrap_or(3600).saturating_sub(10).max(1);
        *self.token.lock() = Some(Token {
            value: r.access_token.clone(),
            expires: Instant::now() + StdDuration::from_secs(life),
        });
        Ok(r.access_token)
    }

    async fn credential(&self) -> Result<Credential, String> {
        let cfg = &self.cfg;
        if let Some(b) = &cfg.basic_auth {
            let (u, p) = b.credentials()?;
            return Ok(Credential::Basic(u, p));
        }
        if let Some(a) = &cfg.authorization {
            return Ok(Credential::Header(a.header_value()?));
        }
        if let Some(t) = &cfg.bearer_token {
            return Ok(Credential::Header(format!("Bearer {}", t.expose())));
        }
        if !cfg.bearer_token_file.is_empty() {
            let t = std::fs::read_to_string(&cfg.bearer_token_file).map_err(|e| {
                format!(
                    "unable to read bearer token file {:?}: {e}",
                    cfg.bearer_token_file
                )
            })?;
            return Ok(Credential::Header(format!("Bearer {}", t.trim())));
        }
        if let Some(o) = &cfg.oauth2 {
            return Ok(Credential::Header(format!(
                "Bearer {}",
                self.oauth_token(o).await?
            )));
        }
        Ok(Credential::None)
    }

    /// POSTs one snappy-compressed body (shared, so a retry does not copy it). `attempt` is 0 for the first try (sent as
    /// `Retry-Attempt` on later ones, as Prometheus does).
    pub async fn post(&self, body: axum::body::Bytes, protocol: Protocol, attempt: u32) -> Attempt {
        let cfg = &self.cfg;
        let mut req = self
            .http
            .post(cfg.url.expose())
            .header("Content-Encoding", "snappy")
            .header("Content-Type", protocol.content_type())
            .header(
                "X-Prometheus-Remote-Write-Version",
                protocol.version_header(),
            )
            .header(
                "User-Agent",
                concat!("appliance/", env!("CARGO_PKG_VERSION")),
            );
        if attempt > 0 {
            req = req.header("Retry-Attempt", attempt.to_string());
        }
        for (k, v) in &cfg.headers {
            req = req.header(k.as_str(), v.expose());
        }
        match self.credential().await {
            Ok(Credential::None) => {}
            Ok(Credential::Basic(u, p)) => req = req.basic_auth(u, p),
            Ok(Credential::Header(v)) => req = req.header("Authorization", v),
            // A credential file may be fixed and a token endpoint may come back: keep the
            // batch and retry rather than lose it.
            Err(error) => return Attempt::Retry { error, after: None },
        }
        let resp = match req.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    error: crate::model::secret::redact_url(&error_chain(&e)).into_owned(),
                    after: None,
                }
            }
        };
        let status = resp.status();
        let header_u64 = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if status.is_success() {
            return Attempt::Ok {
                samples_written: header_u64("X-Prometheus-Remote-Write-Samples-Written"),
                histograms_written: header_u64("X-Prometheus-Remote-Write-Histograms-Written"),
            };
        }
        let after = resp
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        // The receiver's reason, bounded: it goes into logs and the UI.
        let text = resp.text().await.unwrap_or_default();
        let mut reason: String = text.trim().chars().take(256).collect();
        if reason.is_empty() {
            reason = status.canonical_reason().unwrap_or("").to_string();
        }
        let error = format!("server returned HTTP status {status}: {reason}");
        if status.is_server_error()
            || (status == reqwest::StatusCode::TOO_MANY_REQUESTS
                && cfg.queue_config.retry_on_http_429)
        {
            Attempt::Retry { error, after }
        } else {
            Attempt::Permanent { error }
        }
    }
}

/// An error with its causes (reqwest's top level says only "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        assert_eq!(parse_retry_after("7"), Some(StdDuration::from_secs(7)));
        let later = chrono::Utc::now() + chrono::Duration::seconds(30);
        let d = parse_retry_after(&later.to_rfc2822()).unwrap();
        assert!(d > StdDuration::from_secs(25) && d <= StdDuration::from_secs(30));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
