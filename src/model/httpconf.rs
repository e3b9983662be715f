//! HTTP client settings shared by everything that calls out in Prometheus's syntax
//! (`basic_auth`, `authorization`, `tls_config`): scrape jobs, external Alertmanagers. The
//! types and how they become a TLS configuration or an `Authorization` header live here; each
//! user decides when to read them.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use super::tls::{native_roots, provider, NoVerify};
use super::Secret;

/// `basic_auth`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// File holding the user name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username_file: String,
    /// Password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// File holding the password, read at every scrape.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password_file: String,
}

/// `authorization`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// Scheme (default `Bearer`).
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Secret>,
    /// File holding the credentials, read at every scrape.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credentials_file: String,
}

/// `tls_config`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA bundle file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_file: String,
    /// CA bundle inline (PEM).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca: String,
    /// Client certificate file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cert_file: String,
    /// Client certificate inline (PEM).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cert: String,
    /// Client key file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_file: String,
    /// Client key inline (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Secret>,
    /// Server name to verify (and send as SNI).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_name: String,
    /// Skip certificate verification.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Minimum TLS version (`TLS12`, `TLS13`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub min_version: String,
    /// Maximum TLS version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_version: String,
}

fn read_file(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("unable to read secret file {path:?}: {e}"))
}

impl BasicAuth {
    /// User and password, reading the `_file` forms now (so rotation needs no reload).
    pub fn credentials(&self) -> Result<(String, Option<String>), String> {
        let user = if self.username_file.is_empty() {
            self.username.clone()
        } else {
            read_file(&self.username_file)?
        };
        let pass = match (&self.password, self.password_file.is_empty()) {
            (Some(p), _) => Some(p.expose().to_string()),
            (None, false) => Some(read_file(&self.password_file)?),
            (None, true) => None,
        };
        Ok((user, pass))
    }
}

impl Authorization {
    /// The `Authorization` header value (`Bearer` unless `type` says otherwise), reading
    /// `credentials_file` now.
    pub fn header_value(&self) -> Result<String, String> {
        let cred = match &self.credentials {
            Some(c) => c.expose().to_string(),
            None if !self.credentials_file.is_empty() => read_file(&self.credentials_file)?,
            None => String::new(),
        };
        Ok(bearer(&self.kind, &cred))
    }
}

/// The media type of a `Content-Type` value, lower-cased, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// `<kind> <credentials>`, `Bearer` by default.
pub fn bearer(kind: &str, cred: &str) -> String {
    format!("{} {cred}", if kind.is_empty() { "Bearer" } else { kind })
}

impl TlsConfig {
    /// The rustls client configuration, reading CA and client certificate files now so a
    /// bad file is a config error rather than a failed request.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        let tls = self;
        let mut roots = native_roots();
        let mut add_pem = |pem: &[u8], what: &str| -> Result<(), String> {
            for c in CertificateDer::pem_slice_iter(pem) {
                let c = c.map_err(|e| format!("{what}: {e}"))?;
                roots.add(c).map_err(|e| format!("{what}: {e}"))?;
            }
            Ok(())
        };
        if !tls.ca_file.is_empty() {
            let pem = std::fs::read(&tls.ca_file)
                .map_err(|e| format!("unable to read CA cert {:?}: {e}", tls.ca_file))?;
            add_pem(&pem, &tls.ca_file)?;
        }
        if !tls.ca.is_empty() {
            add_pem(tls.ca.as_bytes(), "tls_config.ca")?;
        }
        let versions: Vec<&'static rustls::SupportedProtocolVersion> =
            match tls.min_version.as_str() {
                "TLS13" => vec![&rustls::version::TLS13],
                "" | "TLS12" | "TLS11" | "TLS10" => {
                    vec![&rustls::version::TLS13, &rustls::version::TLS12]
                }
                other => return Err(format!("unknown TLS version {other:?}")),
            };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions)
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let cert_pem = if !tls.cert_file.is_empty() {
            Some(
                std::fs::read(&tls.cert_file)
                    .map_err(|e| format!("unable to read client cert {:?}: {e}", tls.cert_file))?,
            )
        } else if !tls.cert.is_empty() {
            Some(tls.cert.as_bytes().to_vec())
        } else {
            None
        };
        let key_pem = if !tls.key_file.is_empty() {
            Some(
                std::fs::read(&tls.key_file)
                    .map_err(|e| format!("unable to read client key {:?}: {e}", tls.key_file))?,
            )
        } else {
            tls.key.as_ref().map(|k| k.expose().as_bytes().to_vec())
        };
        let mut config = match (cert_pem, key_pem) {
            (Some(c), Some(k)) => {
                let certs = CertificateDer::pem_slice_iter(&c)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("client cert: {e}"))?;
                let key =
                    PrivateKeyDer::from_pem_slice(&k).map_err(|e| format!("client key: {e}"))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("client cert/key: {e}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("client cert and key must be configured together".into()),
        };
        if tls.insecure_skip_verify {
            config
                .dangerous()
                .set_certificate_verifier(Arc::new(NoVerify(provider())));
        }
        Ok(config)
    }
}

fn yes() -> bool {
    true
}

/// One entry of `http_headers`: plain values, secret values and files whose content is a
/// value (read at every request).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValues {
    /// Values shown as they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Values that are secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<Secret>,
    /// Files holding a value each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

/// Prometheus's `http_config` (common `HTTPClientConfig`), as Alertmanager's receivers take
/// it: authentication, TLS, proxy, redirects and extra headers. `oauth2` is read so a config
/// that has it gets a clear refusal instead of a parse error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpClientConfig {
    /// `basic_auth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// `authorization` (type and credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// `oauth2`: not supported by the appliance's own HTTP clients (refused at check time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<serde_json::Value>,
    /// Deprecated `bearer_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<Secret>,
    /// Deprecated `bearer_token_file`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bearer_token_file: String,
    /// `tls_config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
    /// `proxy_url` (a URL without scheme is taken as `http://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<super::SecretUrl>,
    /// `no_proxy`: comma-separated hosts that bypass the proxy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub no_proxy: String,
    /// `proxy_from_environment`: use `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY`.
    #[serde(default)]
    pub proxy_from_environment: bool,
    /// `proxy_connect_header`: headers sent to the proxy on CONNECT.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub proxy_connect_header: std::collections::BTreeMap<String, Vec<Secret>>,
    /// `follow_redirects` (default true).
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    /// `enable_http2` (default true).
    #[serde(default = "yes")]
    pub enable_http2: bool,
    /// `http_headers`: extra headers on every request.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub http_headers: std::collections::BTreeMap<String, HeaderValues>,
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        HttpClientConfig {
            basic_auth: None,
            authorization: None,
            oauth2: None,
            bearer_token: None,
            bearer_token_file: String::new(),
            tls_config: None,
            proxy_url: None,
            no_proxy: String::new(),
            proxy_from_environment: false,
            proxy_connect_header: Default::default(),
            follow_redirects: true,
            enable_http2: true,
            http_headers: Default::default(),
        }
    }
}

impl HttpClientConfig {
    /// Prometheus's checks: one way of authenticating at most, no `oauth2` (the appliance's
    /// clients do not fetch tokens), a proxy URL that parses.
    pub fn validate(&self) -> Result<(), String> {
        let n = usize::from(self.basic_auth.is_some())
            + usize::from(self.authorization.is_some())
            + usize::from(self.oauth2.is_some());
        if n > 1 {
            return Err(
                "at most one of basic_auth, oauth2 & authorization must be configured".into(),
            );
        }
        let bearer = self.bearer_token.is_some() || !self.bearer_token_file.is_empty();
        if bearer && (self.authorization.is_some() || self.basic_auth.is_some()) {
            return Err(
                "at most one of basic_auth, bearer_token & bearer_token_file, authorization must be configured"
                    .into(),
            );
        }
        if self.bearer_token.is_some() && !self.bearer_token_file.is_empty() {
            return Err(
                "at most one of bearer_token & bearer_token_file must be configured".into(),
            );
        }
        if self.oauth2.is_some() {
            return Err("oauth2 is not supported in http_config here; use authorization with a token, or basic_auth".into());
        }
        if let Some(a) = &self.authorization {
            if a.kind.eq_ignore_ascii_case("basic") {
                return Err(
                    "authorization type cannot be set to \"basic\", use \"basic_auth\" instead"
                        .into(),
                );
            }
            if a.credentials.is_some() && !a.credentials_file.is_empty() {
                return Err(
                    "at most one of authorization.credentials & authorization.credentials_file must be configured"
                        .into(),
                );
            }
        }
        if self.proxy_from_environment && self.proxy_url.is_some() {
            return Err(
                "if proxy_from_environment is configured, proxy_url must not be configured".into(),
            );
        }
        if let Some(p) = &self.proxy_url {
            reqwest::Proxy::all(proxy_url(p.expose()))
                .map_err(|e| format!("proxy_url {}: {e}", p.redacted()))?;
        }
        for name in self.http_headers.keys() {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("http_headers: {name:?}: {e}"))?;
        }
        Ok(())
    }

    /// The client these settings describe (reads TLS files now: a bad file is a config
    /// error, not a failed delivery). `timeout` bounds every request.
    pub fn client(&self, timeout: std::time::Duration) -> Result<reqwest::Client, String> {
        self.validate()?;
        let tls = self
            .tls_config
            .clone()
            .unwrap_or_default()
            .client_config()?;
        let mut b = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .redirect(if self.follow_redirects {
                reqwest::redirect::Policy::limited(10)
            } else {
                reqwest::redirect::Policy::none()
            });
        if !self.proxy_from_environment {
            b = b.no_proxy();
        }
        if let Some(p) = &self.proxy_url {
            let mut proxy = reqwest::Proxy::all(proxy_url(p.expose()))
                .map_err(|e| format!("proxy_url {}: {e}", p.redacted()))?;
            if !self.no_proxy.is_empty() {
                proxy = proxy.no_proxy(reqwest::NoProxy::from_string(&self.no_proxy));
            }
            let mut headers = reqwest::header::HeaderMap::new();
            for (k, vs) in &self.proxy_connect_header {
                for v in vs {
                    let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|e| format!("proxy_connect_header {k:?}: {e}"))?;
                    let value = reqwest::header::HeaderValue::from_str(v.expose())
                        .map_err(|e| format!("proxy_connect_header {k:?}: {e}"))?;
                    headers.append(name, value);
                }
            }
            if !headers.is_empty() {
                proxy = proxy.headers(headers);
            }
            b = b.proxy(proxy);
        }
        if !self.enable_http2 {
            b = b.http1_only();
        }
        b.build().map_err(|e| e.to_string())
    }

    /// `req` with the configured credentials and `http_headers` (files read now, so rotated
    /// secrets need no reload).
    pub fn authorize(
        &self,
        mut req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, String> {
        if let Some(b) = &self.basic_auth {
            let (user, pass) = b.credentials()?;
            req = req.basic_auth(user, pass);
        }
        if let Some(a) = &self.authorization {
            req = req.header(reqwest::header::AUTHORIZATION, a.header_value()?);
        }
        if let Some(t) = &self.bearer_token {
            req = req.header(reqwest::header::AUTHORIZATION, bearer("", t.expose()));
        } else if !self.bearer_token_file.is_empty() {
            let t = read_file(&self.bearer_token_file)?;
            req = req.header(reqwest::header::AUTHORIZATION, bearer("", &t));
        }
        for (name, h) in &self.http_headers {
            for v in &h.values {
                req = req.header(name.as_str(), v.as_str());
            }
            for v in &h.secrets {
                req = req.header(name.as_str(), v.expose());
            }
            for f in &h.files {
                req = req.header(name.as_str(), read_file(f)?);
            }
        }
        Ok(req)
    }

    /// Whether it sets an `Authorization` header (basic, bearer or another scheme).
    pub fn has_authorization(&self) -> bool {
        self.basic_auth.is_some()
            || self.authorization.is_some()
            || self.bearer_token.is_some()
            || !self.bearer_token_file.is_empty()
    }
}

/// A proxy URL as Go's `url.Parse` would take it: a bare `host[:port]` gets `http://`.
fn proxy_url(u: &str) -> String {
    if u.contains("://") {
        u.to_string()
    } else {
        format!("http://{u}")
    }
}
