//! `sns_configs`: Amazon SNS `Publish` (the Query API, form-encoded) to a topic, a target or
//! a phone number, signed with AWS Signature Version 4 by the `aws-sigv4` crate (only the
//! signer: the appliance does not pull in the AWS SDK).
//!
//! Credentials come from `sigv4.access_key`/`secret_key`, else from `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`) in the environment. Profiles and role
//! assumption need the SDK's credential chain and are refused at config check.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::{truncate, DeliveryError, Http, Integration, Msg};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::Secret;
use crate::notify::config::GlobalConfig;

/// `sigv4`: how requests are signed.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigV4 {
    /// AWS region (default: from the ARN, else `AWS_REGION`).
    #[serde(default)]
    pub region: String,
    /// Access key id.
    #[serde(default)]
    pub access_key: String,
    /// Secret access key.
    #[serde(default)]
    pub secret_key: Option<Secret>,
    /// A named profile (not supported: needs the AWS SDK).
    #[serde(default)]
    pub profile: String,
    /// A role to assume (not supported: needs the AWS SDK).
    #[serde(default)]
    pub role_arn: String,
}

/// A `sns_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default true).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The HTTP client's settings.
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// The SNS endpoint (default `https://sns.<region>.amazonaws.com/`).
    #[serde(default)]
    pub api_url: String,
    /// Signing settings.
    #[serde(default)]
    pub sigv4: SigV4,
    /// Topic to publish to.
    #[serde(default)]
    pub topic_arn: String,
    /// Phone number to send an SMS to (E.164).
    #[serde(default)]
    pub phone_number: String,
    /// Mobile endpoint to publish to.
    #[serde(default)]
    pub target_arn: String,
    /// Subject, for e-mail endpoints (template).
    #[serde(default)]
    pub subject: Option<String>,
    /// Message (template).
    #[serde(default)]
    pub message: Option<String>,
    /// Message attributes (String type).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Use the AWS SDK's HTTP client (accepted; the appliance always uses its own client,
    /// with `http_config`).
    #[serde(default)]
    pub use_aws_http_client: bool,
}

/// `s` cut to at most `n` bytes on a character boundary.
fn cut_bytes(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut i = n;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    s[..i].to_string()
}

/// The region of an ARN (`arn:aws:sns:<region>:<account>:<name>`).
fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

impl Config {
    fn region(&self) -> Option<String> {
        if !self.sigv4.region.is_empty() {
            return Some(self.sigv4.region.clone());
        }
        arn_region(&self.topic_arn)
            .or_else(|| arn_region(&self.target_arn))
            .map(str::to_string)
            .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
            .or_else(|| {
                std::env::var("AWS_DEFAULT_REGION")
                    .ok()
                    .filter(|r| !r.is_empty())
            })
    }

    fn credentials(&self) -> Option<(String, String, Option<String>)> {
        match &self.sigv4.secret_key {
            Some(sk) if !self.sigv4.access_key.is_empty() => {
                Some((self.sigv4.access_key.clone(), sk.expose().to_string(), None))
            }
            _ => {
                let ak = std::env::var("AWS_ACCESS_KEY_ID")
                    .ok()
                    .filter(|s| !s.is_empty())?;
                let sk = std::env::var("AWS_SECRET_ACCESS_KEY")
                    .ok()
                    .filter(|s| !s.is_empty())?;
                Some((
                    ak,
                    sk,
                    std::env::var("AWS_SESSION_TOKEN")
                        .ok()
                        .filter(|s| !s.is_empty()),
                ))
            }
        }
    }
}

impl Integration for Config {
    const KIND: &'static str = "sns";
    const RESOLVED_BY_DEFAULT: bool = true;

    fn check(&mut self, _: &GlobalConfig) -> Result<(), String> {
        let n = [&self.target_arn, &self.topic_arn, &self.phone_number]
            .iter()
            .filter(|s| !s.is_empty())
            .count();
        if n != 1 {
            return Err(
                "must provide either a Target ARN, Topic ARN, or Phone Number for SNS config"
                    .into(),
            );
        }
        if !self.sigv4.profile.is_empty() || !self.sigv4.role_arn.is_empty() {
            return Err("sigv4.profile and sigv4.role_arn are not supported here; set sigv4.access_key and sigv4.secret_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment".into());
        }
        if self.sigv4.access_key.is_empty() != self.sigv4.secret_key.is_none() {
            return Err("sigv4: access_key and secret_key must be configured together".into());
        }
        let Some(region) = self.region() else {
            return Err(
                "no AWS region: set sigv4.region, use a topic ARN, or set AWS_REGION".into(),
            );
        };
        if self.credentials().is_none() {
            return Err("no AWS credentials: set sigv4.access_key and sigv4.secret_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment".into());
        }
        if self.api_url.is_empty() {
            self.api_url = format!("https://sns.{region}.amazonaws.com/");
        }
        if self.sigv4.region.is_empty() {
            self.sigv4.region = region;
        }
        Ok(())
    }

    common_settings!();

    fn target(&self) -> String {
        let c = self;
        [&c.topic_arn, &c.target_arn]
            .into_iter()
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| "phone number".into())
    }

    fn send<'a>(
        &'a self,
        http: &'a Http,
        m: &'a Msg<'a>,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let body = self.form(m)?;
            let mut req = http.request(reqwest::Method::POST, &self.api_url)?.header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            );
            for (k, v) in self.sign(&body)? {
                req = req.header(k, v);
            }
            http.send(req.body(body)).await.map(|_| ())
        })
    }
}

impl Config {
    /// The `Publish` form for `m`, as Alertmanager fills `PublishInput`.
    fn form(&self, m: &Msg<'_>) -> Result<String, DeliveryError> {
        let c = self;
        let t = |v: &Option<String>, d: &str| m.text(v.as_deref().unwrap_or(d));
        let mut f = form_urlencoded::Serializer::new(String::new());
        f.append_pair("Action", "Publish")
            .append_pair("Version", "2010-03-31");
        // 256 KB, but 1600 characters for an SMS.
        let mut limit = 256 * 1024;
        if !c.topic_arn.is_empty() {
            let topic = m.text(&c.topic_arn)?;
            f.append_pair("TopicArn", &topic);
            // A FIFO topic needs a group and a deduplication id: the group's key.
            if topic.ends_with(".fifo") {
                f.append_pair("MessageDeduplicationId", &m.key_hash());
                f.append_pair("MessageGroupId", &m.key_hash());
            }
        }
        if !c.phone_number.is_empty() {
            f.append_pair("PhoneNumber", &m.text(&c.phone_number)?);
            limit = 1600;
        }
        if !c.target_arn.is_empty() {
            f.append_pair("TargetArn", &m.text(&c.target_arn)?);
        }
        let message = t(&c.message, r#"{{ template "sns.default.message" . }}"#)?;
        let cut = if c.phone_number.is_empty() {
            cut_bytes(&message, limit)
        } else {
            truncate(&message, limit).0
        };
        let truncated = cut.len() < message.len();
        f.append_pair("Message", &cut);
        let mut attributes: Vec<(String, String)> = Vec::new();
        for (k, v) in &c.attributes {
            attributes.push((m.text(k)?, m.text(v)?));
        }
        if truncated {
            attributes.push(("truncated".into(), "true".into()));
        }
        for (i, (k, v)) in attributes.iter().enumerate() {
            let p = format!("MessageAttributes.entry.{}", i + 1);
            f.append_pair(&format!("{p}.Name"), k);
            f.append_pair(&format!("{p}.Value.DataType"), "String");
            f.append_pair(&format!("{p}.Value.StringValue"), v);
        }
        let subject = t(&c.subject, r#"{{ template "sns.default.subject" . }}"#)?;
        if !subject.is_empty() {
            f.append_pair("Subject", &subject);
        }
        Ok(f.finish())
    }

    /// The SigV4 headers for a POST of `body` to the endpoint.
    fn sign(&self, body: &str) -> Result<Vec<(String, String)>, DeliveryError> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        use aws_sigv4::sign::v4;
        let e = |x: &dyn std::fmt::Display| DeliveryError::Setup(format!("signing: {x}"));
        let (ak, sk, token) = self
            .credentials()
            .ok_or_else(|| DeliveryError::Setup("no AWS credentials".into()))?;
        let identity =
            aws_credential_types::Credentials::new(ak, sk, token, None, "appliance").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.sigv4.region)
            .name("sns")
            .time(std::time::SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|x| e(&x))?
            .into();
        let headers = [(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )];
        let signable = SignableRequest::new(
            "POST",
            &self.api_url,
            headers.into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|x| e(&x))?;
        let (instructions, _) = sign(signable, &params).map_err(|x| e(&x))?.into_parts();
        let (out, _) = instructions.into_parts();
        Ok(out
            .into_iter()
            .map(|h| (h.name().to_string(), h.value().to_string()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;

    #[tokio::test]
    async fn golden_requests() {
        testing::golden(
            "sns",
            "sns_configs:\n  - api_url: '{url}/'\n    topic_arn: 'arn:aws:sns:eu-west-1:123456789012:alerts'\n    sigv4: {access_key: AKIDEXAMPLE, secret_key: wJalrXUtnFEMI}\n    attributes: {severity: '{{ .CommonLabels.severity }}'}\n",
            &[],
        )
        .await;
    }

    #[test]
    fn the_region_comes_from_the_arn_and_a_profile_is_refused() {
        let e = crate::notify::config::parse(
            "route: {receiver: a}\nreceivers: [{name: a, sns_configs: [{topic_arn: 'arn:aws:sns:us-east-1:1:t', sigv4: {profile: p}}]}]\n",
        )
        .unwrap_err();
        assert!(e.0.contains("profile"), "{e}");
    }
}
