//! `remote_write:` in Prometheus's syntax, pasted unchanged from a prometheus.yml, with its
//! defaults and checks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::proto::Protocol;
use crate::model::httpconf::{Authorization, BasicAuth, TlsConfig};
use crate::model::relabel::RelabelConfig;
use crate::model::secret::{Secret, SecretUrl};
use crate::model::time::Duration;

/// One `remote_write` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The receiver's endpoint.
    pub url: SecretUrl,
    /// A name for metrics and logs (default: a hash of the URL).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Per-request timeout (default 30s).
    #[serde(default = "thirty_seconds")]
    pub remote_timeout: Duration,
    /// Extra headers on every request; values are hidden in the API (they often carry keys).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Secret>,
    /// HTTP basic auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// `Authorization` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// Deprecated Prometheus 2 spelling of a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<Secret>,
    /// Deprecated Prometheus 2 spelling of a bearer token file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bearer_token_file: String,
    /// OAuth 2.0 client credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2>,
    /// TLS settings for `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
    /// An HTTP proxy for the requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<SecretUrl>,
    /// Follow redirects (default true).
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    /// Allow HTTP/2 (default false, as Prometheus's remote write).
    #[serde(default)]
    pub enable_http2: bool,
    /// Relabelling of series before they are sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_relabel_configs: Vec<RelabelConfig>,
    /// Send exemplars (the store keeps none yet, so nothing is sent either way).
    #[serde(default)]
    pub send_exemplars: bool,
    /// Send native histogram samples (default false, as Prometheus).
    #[serde(default)]
    pub send_native_histograms: bool,
    /// `prometheus.WriteRequest` (1.0, default) or `io.prometheus.write.v2.Request` (2.0).
    #[serde(default)]
    pub protobuf_message: Protocol,
    /// Sharding, batching and retries.
    #[serde(default)]
    pub queue_config: QueueConfig,
    /// Metric metadata.
    #[serde(default)]
    pub metadata_config: MetadataConfig,
}

/// `oauth2` (client credentials grant).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    /// Client id.
    pub client_id: String,
    /// Client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// File holding the client secret, read at every token request.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_secret_file: String,
    /// Scopes asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The token endpoint.
    pub token_url: SecretUrl,
    /// Extra form parameters for the token request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoint_params: BTreeMap<String, Secret>,
    /// TLS for the token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
    /// A proxy for the token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<SecretUrl>,
}

/// `queue_config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Samples buffered per shard before reading the WAL pauses (default 10000).
    pub capacity: usize,
    /// Most concurrent senders (default 50).
    pub max_shards: usize,
    /// Fewest concurrent senders (default 1).
    pub min_shards: usize,
    /// Samples per request (default 2000).
    pub max_samples_per_send: usize,
    /// Longest a sample waits for its batch to fill (default 5s).
    pub batch_send_deadline: Duration,
    /// First retry delay (default 30ms), doubled per attempt.
    pub min_backoff: Duration,
    /// Longest retry delay (default 5s).
    pub max_backoff: Duration,
    /// Retry a 429 like a 5xx (default true: a rate-limited batch is delayed, not lost).
    pub retry_on_http_429: bool,
    /// Samples older than this are not sent (counted as dropped); 0s (default) sends all the
    /// local store keeps.
    pub sample_age_limit: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 10_000,
            max_shards: 50,
            min_shards: 1,
            max_samples_per_send: 2_000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: true,
            sample_age_limit: Duration::from_secs(0),
        }
    }
}

/// `metadata_config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataConfig {
    /// Send metadata (default true).
    pub send: bool,
    /// How often 1.0 sends the whole metadata set (default 1m); 2.0 sends it with the series.
    pub send_interval: Duration,
    /// Metadata entries per request (default 2000).
    pub max_samples_per_send: usize,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            send: true,
            send_interval: Duration::from_secs(60),
            max_samples_per_send: 2_000,
        }
    }
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

fn yes() -> bool {
    true
}

/// Most shards one remote may run.
const MAX_SHARDS: usize = 1_000;
/// Most samples in one request.
const MAX_BATCH: usize = 1_000_000;
/// Most samples one shard may buffer.
const MAX_CAPACITY: usize = 10_000_000;

/// Headers the protocol sets itself (Prometheus refuses them too).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "content-encoding",
    "content-type",
    "content-length",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "retry-attempt",
    "x-prometheus-remote-write-version",
];

impl RemoteWriteConfig {
    /// The name used in metrics, logs and the state directory: `name`, or the first six hex
    /// digits of a hash of the URL (stable across restarts, as Prometheus's config hash).
    pub fn queue_name(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        use sha2::Digest;
        let d = sha2::Sha256::digest(self.url.expose().as_bytes());
        d.iter().take(3).map(|b| format!("{b:02x}")).collect()
    }

    /// Checks what Prometheus checks, with its messages.
    pub fn validate(&self) -> Result<(), String> {
        let url = url::Url::parse(self.url.expose())
            .map_err(|e| format!("url {}: {e}", self.url.redacted()))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(format!(
                "url {}: scheme must be http or https",
                self.url.redacted()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("url {}: no host", self.url.redacted()));
        }
        for h in self.headers.keys() {
            if RESERVED_HEADERS.contains(&h.to_ascii_lowercase().as_str()) {
                return Err(format!("{h} is a reserved header. It must not be changed"));
            }
        }
        let auths = [
            self.basic_auth.is_some(),
            self.authorization.is_some(),
            self.oauth2.is_some(),
            self.bearer_token.is_some() || !self.bearer_token_file.is_empty(),
        ];
        if auths.iter().filter(|x| **x).count() > 1 {
            return Err(
                "at most one of basic_auth, oauth2, bearer_token & authorization must be configured"
                    .into(),
            );
        }
        if let Some(a) = &self.authorization {
            if a.kind.eq_ignore_ascii_case("basic") {
                return Err(
                    "authorization type cannot be set to \"basic\", use \"basic_auth\" instead"
                        .into(),
                );
            }
        }
        if let Some(o) = &self.oauth2 {
            if o.client_secret.is_some() && !o.client_secret_file.is_empty() {
                return Err(
                    "oauth2: at most one of client_secret & client_secret_file must be configured"
                        .into(),
                );
            }
            url::Url::parse(o.token_url.expose())
                .map_err(|e| format!("oauth2.token_url {}: {e}", o.token_url.redacted()))?;
            if let Some(t) = &o.tls_config {
                t.client_config()
                    .map_err(|e| format!("oauth2.tls_config: {e}"))?;
            }
        }
        if let Some(p) = &self.proxy_url {
            url::Url::parse(p.expose()).map_err(|e| format!("proxy_url {}: {e}", p.redacted()))?;
        }
        if let Some(t) = &self.tls_config {
            t.client_config().map_err(|e| format!("tls_config: {e}"))?;
        }
        let q = &self.queue_config;
        if q.max_samples_per_send == 0 {
            return Err("queue_config.max_samples_per_send must be greater than 0".into());
        }
        if q.min_shards == 0 || q.max_shards == 0 {
            return Err("queue_config: min_shards and max_shards must be greater than 0".into());
        }
        if q.min_shards > q.max_shards {
            return Err(format!(
                "queue_config: min_shards ({}) must not exceed max_shards ({})",
                q.min_shards, q.max_shards
            ));
        }
        // Bounds on what a config may make the process allocate or spawn.
        if q.max_shards > MAX_SHARDS {
            return Err(format!(
                "queue_config.max_shards ({}) exceeds {MAX_SHARDS}",
                q.max_shards
            ));
        }
        if q.max_samples_per_send > MAX_BATCH
            || self.metadata_config.max_samples_per_send > MAX_BATCH
        {
            return Err(format!("max_samples_per_send exceeds {MAX_BATCH}"));
        }
        if q.capacity > MAX_CAPACITY {
            return Err(format!(
                "queue_config.capacity ({}) exceeds {MAX_CAPACITY}",
                q.capacity
            ));
        }
        if q.capacity == 0 {
            return Err("queue_config.capacity must be greater than 0".into());
        }
        if q.min_backoff > q.max_backoff {
            return Err("queue_config: min_backoff must not exceed max_backoff".into());
        }
        if self.metadata_config.max_samples_per_send == 0 {
            return Err("metadata_config.max_samples_per_send must be greater than 0".into());
        }
        Ok(())
    }
}

/// Checks every entry and that names and URLs are unique, as Prometheus does.
pub fn validate_all(list: &[RemoteWriteConfig]) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    let mut urls = std::collections::HashSet::new();
    for (i, c) in list.iter().enumerate() {
        c.validate()
            .map_err(|e| format!("remote_write[{i}]: {e}"))?;
        if !c.name.is_empty() && !names.insert(c.name.clone()) {
            return Err(format!(
                "remote_write[{i}]: found multiple remote write configs with job name {:?}",
                c.name
            ));
        }
        if !urls.insert((c.url.expose().to_string(), c.name.clone())) {
            return Err(format!(
                "remote_write[{i}]: duplicate remote write configs are not allowed, found duplicate for URL: {}",
                c.url.redacted()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<Vec<RemoteWriteConfig>, String> {
        let v: Vec<RemoteWriteConfig> = serde_saphyr::from_str(y).map_err(|e| e.to_string())?;
        validate_all(&v)?;
        Ok(v)
    }

    #[test]
    fn a_full_prometheus_entry_parses_and_hides_its_secrets() {
        let y = r#"
- url: https://user:pw@mimir.example/api/v1/push
  name: mimir
  remote_timeout: 10s
  headers: {X-Scope-OrgID: tenant-1}
  basic_auth: {username: u, password: hunter2}
  proxy_url: http://proxyuser:proxypass@127.0.0.1:3128
  follow_redirects: false
  enable_http2: true
  write_relabel_configs:
    - source_labels: [__name__]
      regex: go_.*
      action: drop
  send_exemplars: true
  send_native_histograms: true
  protobuf_message: io.prometheus.write.v2.Request
  queue_config:
    capacity: 2500
    max_shards: 200
    min_shards: 1
    max_samples_per_send: 500
    batch_send_deadline: 5s
    min_backoff: 30ms
    max_backoff: 5s
    retry_on_http_429: true
    sample_age_limit: 1h
  metadata_config: {send: true, send_interval: 1m, max_samples_per_send: 500}
- url: http://127.0.0.1:9090/api/v1/write
  oauth2:
    client_id: c
    client_secret: s3cr3t
    token_url: http://127.0.0.1:1/token
    scopes: [a]
    endpoint_params: {audience: x}
"#;
        let v = parse(y).unwrap();
        assert_eq!(v[0].protobuf_message, Protocol::V2);
        assert_eq!(v[0].queue_config.max_samples_per_send, 500);
        assert_eq!(v[1].queue_config, QueueConfig::default());
        assert_eq!(v[1].queue_name().len(), 6);
        let out = serde_saphyr::to_string(&v).unwrap();
        for secret in [
            "hunter2",
            "pw@",
            "proxypass",
            "tenant-1",
            "s3cr3t",
            "audience: x",
        ] {
            assert!(!out.contains(secret), "{secret} leaked:\n{out}");
        }
        assert!(out.contains("mimir.example"));
    }

    #[test]
    fn mistakes_are_refused() {
        assert!(parse("- url: http://a/\n  queue_confg: {}\n")
            .unwrap_err()
            .contains("queue_confg"));
        assert!(parse("- url: ftp://a/\n").unwrap_err().contains("scheme"));
        assert!(parse("- url: http://a/\n  headers: {Authorization: x}\n")
            .unwrap_err()
            .contains("reserved header"));
        assert!(parse(
            "- url: http://a/\n  basic_auth: {username: u}\n  authorization: {credentials: x}\n"
        )
        .unwrap_err()
        .contains("at most one"));
        assert!(
            parse("- url: http://a/\n  name: x\n- url: http://b/\n  name: x\n")
                .unwrap_err()
                .contains("multiple")
        );
        assert!(
            parse("- url: http://a/\n  queue_config: {min_shards: 5, max_shards: 2}\n")
                .unwrap_err()
                .contains("min_shards")
        );
        assert!(parse("- url: http://a/\n  protobuf_message: foo\n").is_err());
        assert!(parse(
            "- url: http://a/\n  queue_config: {min_shards: 1, max_shards: 100000000}\n"
        )
        .unwrap_err()
        .contains("max_shards"));
    }
}
