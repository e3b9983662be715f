//! `email_configs`: a message through SMTP (STARTTLS, implicit TLS or plain, with optional
//! PLAIN/LOGIN authentication), HTML and plain text, as Alertmanager sends it.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::{DeliveryError, Integration, Msg, SecretSource};
use crate::model::httpconf::TlsConfig;
use crate::model::secret::Secret;
use crate::notify::config::GlobalConfig;

/// An `email_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default false).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// Recipients, comma-separated.
    #[serde(default)]
    pub to: String,
    /// Sender (default `global.smtp_from`).
    #[serde(default)]
    pub from: String,
    /// Name sent in EHLO (default `global.smtp_hello`).
    #[serde(default)]
    pub hello: String,
    /// SMTP server, `host:port` (default `global.smtp_smarthost`).
    #[serde(default)]
    pub smarthost: String,
    /// SMTP user (default `global.smtp_auth_username`).
    #[serde(default)]
    pub auth_username: String,
    /// SMTP password (default `global.smtp_auth_password`).
    #[serde(default)]
    pub auth_password: Option<Secret>,
    /// A file holding the SMTP password.
    #[serde(default)]
    pub auth_password_file: String,
    /// CRAM-MD5 secret (not offered by the appliance's SMTP client; PLAIN/LOGIN are).
    #[serde(default)]
    pub auth_secret: Option<Secret>,
    /// A file holding the CRAM-MD5 secret.
    #[serde(default)]
    pub auth_secret_file: String,
    /// PLAIN identity.
    #[serde(default)]
    pub auth_identity: String,
    /// Extra headers (templates); `Subject`, `To` and `From` replace the defaults.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// HTML body (template; default Alertmanager's `email.default.html`).
    #[serde(default)]
    pub html: Option<String>,
    /// Plain-text body (template; default a summary of each alert).
    #[serde(default)]
    pub text: Option<String>,
    /// Require STARTTLS (default `global.smtp_require_tls`, true).
    #[serde(default)]
    pub require_tls: Option<bool>,
    /// TLS settings (CA, server name, skipping verification).
    #[serde(default)]
    pub tls_config: Option<TlsConfig>,
    /// Threading headers (accepted; messages are not threaded).
    #[serde(default)]
    pub threading: Option<serde_json::Value>,
    /// Implicit TLS whatever the port (default `global.smtp_force_implicit_tls`).
    #[serde(default)]
    pub force_implicit_tls: Option<bool>,
}

impl Integration for Config {
    const KIND: &'static str = "email";
    const RESOLVED_BY_DEFAULT: bool = false;

    fn check(&mut self, g: &GlobalConfig) -> Result<(), String> {
        if self.to.is_empty() {
            return Err("missing to address in email config".into());
        }
        // Header names are case-insensitive; Alertmanager refuses duplicates.
        let mut seen = std::collections::HashSet::new();
        for k in self.headers.keys() {
            if !seen.insert(k.to_ascii_lowercase()) {
                return Err(format!("duplicate header {k:?} in email config"));
            }
        }
        if self.smarthost.is_empty() {
            if g.smtp_smarthost.is_empty() {
                return Err("no global SMTP smarthost set".into());
            }
            self.smarthost = g.smtp_smarthost.clone();
        }
        if self.from.is_empty() {
            if g.smtp_from.is_empty() {
                return Err("no global SMTP from set".into());
            }
            self.from = g.smtp_from.clone();
        }
        if self.hello.is_empty() {
            self.hello = g.smtp_hello.clone();
        }
        super::at_most_one(
            "auth_password",
            self.auth_password.is_some(),
            &self.auth_password_file,
        )?;
        if self.auth_username.is_empty() {
            self.auth_username = g.smtp_auth_username.clone();
        }
        if self.auth_password.is_none() && self.auth_password_file.is_empty() {
            self.auth_password = g.smtp_auth_password.clone();
            self.auth_password_file = g.smtp_auth_password_file.clone();
        }
        if self.auth_identity.is_empty() {
            self.auth_identity = g.smtp_auth_identity.clone();
        }
        if self.require_tls.is_none() {
            self.require_tls = Some(g.smtp_require_tls.unwrap_or(true));
        }
        if self.force_implicit_tls.is_none() {
            self.force_implicit_tls = g.smtp_force_implicit_tls;
        }
        if self.tls_config.is_none() {
            self.tls_config = g.smtp_tls_config.clone();
        }
        split_host(&self.smarthost)?;
        for t in self
            .to
            .split(',')
            .map(str::trim)
            .filter(|t| !t.contains("{{"))
        {
            t.parse::<lettre::message::Mailbox>()
                .map_err(|e| format!("to {t:?}: {e}"))?;
        }
        if !self.from.contains("{{") {
            self.from
                .parse::<lettre::message::Mailbox>()
                .map_err(|e| format!("from {:?}: {e}", self.from))?;
        }
        Ok(())
    }

    fn send_resolved(&self) -> Option<bool> {
        self.send_resolved
    }

    fn http_config(&self) -> Option<&crate::model::httpconf::HttpClientConfig> {
        // SMTP has no HTTP settings; Alertmanager's e-mail has no http_config either.
        None
    }

    fn target(&self) -> String {
        self.to.clone()
    }

    fn send<'a>(
        &'a self,
        _: &'a super::Http,
        m: &'a Msg<'a>,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        use lettre::message::header::{HeaderName, HeaderValue};
        use lettre::message::{Mailbox, MultiPart};
        use lettre::transport::smtp::authentication::Credentials;
        use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
        use lettre::transport::smtp::extension::ClientId;
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
        Box::pin(async move {
            let c = self;
            let password = SecretSource::new(self.auth_password.as_ref(), &self.auth_password_file);
            let e = |what: &str, x: &dyn std::fmt::Display| {
                DeliveryError::Setup(format!("{what}: {x}"))
            };
            let header = |name: &str| {
                c.headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
            };
            let subject =
                m.text(header("Subject").unwrap_or(r#"{{ template "email.default.subject" . }}"#))?;
            let to = m.text(header("To").unwrap_or(&c.to))?;
            let from = m.text(header("From").unwrap_or(&c.from))?;
            let html = m.text(
                c.html
                    .as_deref()
                    .unwrap_or(r#"{{ template "email.default.html" . }}"#),
            )?;
            let text = m.text(
                c.text
                    .as_deref()
                    .unwrap_or(r#"{{ template "appliance.text" . }}"#),
            )?;
            let mut b = Message::builder()
                .from(from.parse::<Mailbox>().map_err(|x| e("from", &x))?)
                .subject(subject);
            for t in to.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                b = b.to(t.parse::<Mailbox>().map_err(|x| e("to", &x))?);
            }
            let mut msg = b
                .multipart(MultiPart::alternative_plain_html(text, html))
                .map_err(|x| e("building the message", &x))?;
            for (k, v) in &c.headers {
                if ["subject", "to", "from"].contains(&k.to_ascii_lowercase().as_str()) {
                    continue;
                }
                let name = HeaderName::new_from_ascii(k.clone()).map_err(|x| e("header", &x))?;
                msg.headers_mut()
                    .insert_raw(HeaderValue::new(name, m.text(v)?));
            }
            let (host, port) = split_host(&c.smarthost).map_err(DeliveryError::Setup)?;
            let tls_params = || -> Result<TlsParameters, DeliveryError> {
                let t = c.tls_config.clone().unwrap_or_default();
                let name = if t.server_name.is_empty() {
                    host.clone()
                } else {
                    t.server_name.clone()
                };
                let mut p = TlsParameters::builder(name)
                    .dangerous_accept_invalid_certs(t.insecure_skip_verify);
                if !t.ca_file.is_empty() {
                    let pem = std::fs::read(&t.ca_file).map_err(|x| e("tls_config.ca_file", &x))?;
                    p = p.add_root_certificate(
                        Certificate::from_pem(&pem).map_err(|x| e("tls_config.ca_file", &x))?,
                    );
                }
                p.build().map_err(|x| e("tls_config", &x))
            };
            let tls = if c.force_implicit_tls.unwrap_or(port == 465) {
                Tls::Wrapper(tls_params()?)
            } else if c.require_tls.unwrap_or(true) {
                Tls::Required(tls_params()?)
            } else {
                Tls::None
            };
            let mut t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
                .port(port)
                .tls(tls)
                .timeout(Some(StdDuration::from_secs(10)));
            if !c.hello.is_empty() {
                t = t.hello_name(ClientId::Domain(c.hello.clone()));
            }
            if !c.auth_username.is_empty() {
                let pass = if password.is_set() {
                    password.get("auth_password")?
                } else {
                    String::new()
                };
                t = t.credentials(Credentials::new(c.auth_username.clone(), pass));
            }
            t.build()
                .send(msg)
                .await
                .map(|_| ())
                .map_err(|x| DeliveryError::Request(format!("sending mail: {x}")))
        })
    }
}

/// `host` and `port` of a smarthost (`host:port`; port 25 when absent).
fn split_host(s: &str) -> Result<(String, u16), String> {
    match s.rsplit_once(':') {
        Some((h, p)) => Ok((
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse::<u16>()
                .map_err(|e| format!("smarthost {s:?}: port: {e}"))?,
        )),
        None => Ok((s.to_string(), 25)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;

    #[tokio::test]
    async fn golden_message() {
        let smtp = testing::SmtpRecorder::start().await;
        let (cfg, i) = testing::integration(
            "email_configs:\n  - to: 'ops@example.org, oncall@example.org'\n    from: 'appliance@example.org'\n    smarthost: '{url}'\n    require_tls: false\n    send_resolved: true\n    headers: {X-Team: '{{ .CommonLabels.job }}'}\n",
            &smtp.addr,
        );
        let r = i
            .build(&super::super::Build {
                global: &cfg.global,
                templates: &cfg.template_set,
            })
            .unwrap();
        let ctx = super::super::DeliveryContext {
            external_url: "http://appliance.example:8080".into(),
        };
        let mut out = String::new();
        for resolved in [false, true] {
            r.deliver(&testing::notification(resolved), &ctx)
                .await
                .unwrap();
            out.push_str(&smtp.take());
        }
        crate::testsupport::assert_golden("src/notify/receivers/testdata/email.golden", &out);
    }
}
