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
