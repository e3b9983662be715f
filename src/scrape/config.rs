//! The `scrape_configs` section in Prometheus's own syntax, so blocks pasted from a
//! `prometheus.yml` work unchanged, plus the `global` scrape defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::relabel::RelabelConfig;
use crate::model::time::{ByteSize, Duration};

pub use crate::model::Secret;

/// Scrape defaults of the `global` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GlobalConfig {
    /// How often to scrape targets by default (Prometheus default: 1m).
    pub scrape_interval: Duration,
    /// How long until a scrape request times out (default: 10s).
    pub scrape_timeout: Duration,
    /// How often to evaluate rules (default: 1m).
    pub evaluation_interval: Duration,
    /// Labels added to every series sent elsewhere (remote write, alerts).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub external_labels: BTreeMap<String, String>,
    /// Default per-scrape sample limit (0 = none).
    #[serde(skip_serializing_if = "is_zero")]
    pub sample_limit: u64,
    /// Default label count limit per sample (0 = none).
    #[serde(skip_serializing_if = "is_zero")]
    pub label_limit: u64,
    /// Default label name length limit (0 = none).
    #[serde(skip_serializing_if = "is_zero")]
    pub label_name_length_limit: u64,
    /// Default label value length limit (0 = none).
    #[serde(skip_serializing_if = "is_zero")]
    pub label_value_length_limit: u64,
    /// Default uncompressed body size limit (0 = none).
    #[serde(skip_serializing_if = "is_zero_bytes")]
    pub body_size_limit: ByteSize,
    /// Default protocols offered in `Accept`, most preferred first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_protocols: Option<Vec<ScrapeProtocol>>,
    /// Default for storing native histograms (and offering protobuf first); off as in
    /// Prometheus.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_native_histograms: Option<bool>,
    /// Default for also storing the classic buckets of histograms stored as native.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub always_scrape_classic_histograms: Option<bool>,
    /// Default for storing classic histograms as native histograms with custom buckets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub convert_classic_histograms_to_nhcb: Option<bool>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_bytes(v: &ByteSize) -> bool {
    v.0 == 0
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: Duration::from_secs(60),
            scrape_timeout: Duration::from_secs(10),
            evaluation_interval: Duration::from_secs(60),
            external_labels: BTreeMap::new(),
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            body_size_limit: ByteSize(0),
            scrape_protocols: None,
            scrape_native_histograms: None,
            always_scrape_classic_histograms: None,
            convert_classic_histograms_to_nhcb: None,
        }
    }
}

/// A scrape protocol name as Prometheus spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScrapeProtocol {
    /// Protobuf (delimited `MetricFamily` messages), the format of native histograms.
    PrometheusProto,
    /// OpenMetrics 0.0.1
    #[serde(rename = "OpenMetricsText0.0.1")]
    OpenMetricsText001,
    /// OpenMetrics 1.0.0
    #[serde(rename = "OpenMetricsText1.0.0")]
    OpenMetricsText100,
    /// Prometheus text 0.0.4
    #[serde(rename = "PrometheusText0.0.4")]
    PrometheusText004,
    /// Prometheus text 1.0.0
    #[serde(rename = "PrometheusText1.0.0")]
    PrometheusText100,
}

impl ScrapeProtocol {
    /// The media type offered in `Accept`.
    pub fn header(self) -> Option<&'static str> {
        match self {
            ScrapeProtocol::PrometheusProto => Some(
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
            ),
            ScrapeProtocol::OpenMetricsText001 => {
                Some("application/openmetrics-text;version=0.0.1")
            }
            ScrapeProtocol::OpenMetricsText100 => {
                Some("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8")
            }
            ScrapeProtocol::PrometheusText004 => Some("text/plain;version=0.0.4"),
            ScrapeProtocol::PrometheusText100 => {
                Some("text/plain;version=1.0.0;escaping=allow-utf-8")
            }
        }
    }

    /// Prometheus 3's default order.
    pub fn defaults() -> Vec<ScrapeProtocol> {
        vec![
            ScrapeProtocol::OpenMetricsText100,
            ScrapeProtocol::OpenMetricsText001,
            ScrapeProtocol::PrometheusText100,
            ScrapeProtocol::PrometheusText004,
        ]
    }

    /// Prometheus 3's order when native histograms are scraped: protobuf first.
    pub fn proto_first() -> Vec<ScrapeProtocol> {
        let mut v = vec![ScrapeProtocol::PrometheusProto];
        v.extend(Self::defaults());
        v
    }
}

/// Builds the `Accept` header as Prometheus does: descending q-weights from 0.6, then `*/*`.
pub fn accept_header(protocols: &[ScrapeProtocol]) -> String {
    let mut weight = 6;
    let mut parts = Vec::new();
    for p in protocols {
        if let Some(h) = p.header() {
            parts.push(format!("{h};q=0.{weight}"));
            weight -= 1;
        }
    }
    parts.push(format!("*/*;q=0.{weight}"));
    parts.join(",")
}

/// `static_configs` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// `host:port` addresses.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels for every target of the group.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `file_sd_configs` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// Files (globs in the last path element allowed) holding target groups in JSON or YAML.
    pub files: Vec<String>,
    /// Re-read interval in addition to change detection (default 5m).
    #[serde(default = "five_minutes")]
    pub refresh_interval: Duration,
}

fn five_minutes() -> Duration {
    Duration::from_secs(300)
}

pub use crate::model::httpconf::{Authorization, BasicAuth, TlsConfig};

/// One `scrape_configs` entry. Options left out inherit from `global` when the config is
/// checked ([`ScrapeConfig::apply_defaults`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// Job name; the `job` label of every target.
    pub job_name: String,
    /// Let target labels win over the target's own on conflict.
    #[serde(default)]
    pub honor_labels: bool,
    /// Use timestamps the target exposes (default true).
    #[serde(default = "yes")]
    pub honor_timestamps: bool,
    /// Mark series with exposed timestamps stale too.
    #[serde(default)]
    pub track_timestamps_staleness: bool,
    /// URL query parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Vec<String>>,
    /// Scrape interval (default: global).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<Duration>,
    /// Scrape timeout (default: global, capped at the interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_timeout: Option<Duration>,
    /// Protocols offered in `Accept`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_protocols: Option<Vec<ScrapeProtocol>>,
    /// Protocol to assume when a target sends no or an unknown `Content-Type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_scrape_protocol: Option<ScrapeProtocol>,
    /// Store native histograms (default: global, else off, as Prometheus); with it, protobuf
    /// is offered first unless `scrape_protocols` says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_native_histograms: Option<bool>,
    /// Also store the classic buckets of a histogram stored as native (default: global, else
    /// off). `scrape_classic_histograms` is Prometheus 2's name for it.
    #[serde(
        default,
        alias = "scrape_classic_histograms",
        skip_serializing_if = "Option::is_none"
    )]
    pub always_scrape_classic_histograms: Option<bool>,
    /// Store classic histograms (`_bucket`/`_count`/`_sum` of a `histogram` family) as
    /// native histograms with custom buckets under the family's name, as Prometheus 3 does;
    /// their classic series are kept too only with `always_scrape_classic_histograms`
    /// (default: global, else off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convert_classic_histograms_to_nhcb: Option<bool>,
    /// Most buckets a native histogram may keep; over it its resolution is halved until it
    /// fits, and a scrape where that cannot be done fails (0 = no limit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub native_histogram_bucket_limit: u64,
    /// Smallest growth factor from one native bucket to the next; finer histograms are
    /// reduced to the highest schema that meets it (0 = keep as scraped).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub native_histogram_min_bucket_factor: f64,
    /// Ask for gzip (default true).
    #[serde(default = "yes")]
    pub enable_compression: bool,
    /// Path (default `/metrics`).
    #[serde(default = "default_path")]
    pub metrics_path: String,
    /// `http` or `https`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// Uncompressed body limit (default: global).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_size_limit: Option<ByteSize>,
    /// Samples per scrape after relabelling (default: global).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_limit: Option<u64>,
    /// Targets per job after relabelling (0 = none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub target_limit: u64,
    /// Labels per sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_limit: Option<u64>,
    /// Label name length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_name_length_limit: Option<u64>,
    /// Label value length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_value_length_limit: Option<u64>,
    /// Dropped targets kept for the API (0 = all).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keep_dropped_targets: u64,
    /// Static target groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_configs: Vec<StaticConfig>,
    /// File-based discovery.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_sd_configs: Vec<FileSdConfig>,
    /// Relabelling of targets before scraping.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relabel_configs: Vec<RelabelConfig>,
    /// Relabelling of scraped samples before storage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// HTTP basic auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// `Authorization` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// Deprecated Prometheus spelling of a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<Secret>,
    /// Deprecated Prometheus spelling of a bearer token file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bearer_token_file: String,
    /// TLS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
    /// Follow redirects (default true).
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    /// Allow HTTP/2 (default true).
    #[serde(default = "yes")]
    pub enable_http2: bool,
}

fn yes() -> bool {
    true
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

fn default_path() -> String {
    "/metrics".into()
}

fn default_scheme() -> String {
    "http".into()
}

impl ScrapeConfig {
    /// Fills unset options from `global` and checks the combination, with Prometheus's messages.
    pub fn apply_defaults(&mut self, g: &GlobalConfig) -> Result<(), String> {
        if self.job_name.is_empty() {
            return Err("job_name is empty".into());
        }
        let interval = *self.scrape_interval.get_or_insert(g.scrape_interval);
        match self.scrape_timeout {
            None => {
                self.scrape_timeout = Some(if g.scrape_timeout > interval {
                    interval
                } else {
                    g.scrape_timeout
                })
            }
            Some(t) if t > interval => {
                return Err(format!("scrape timeout greater than scrape interval for scrape config with job name {:?}", self.job_name));
            }
            _ => {}
        }
        if interval.is_zero() {
            return Err(format!(
                "scrape interval must be positive for scrape config with job name {:?}",
                self.job_name
            ));
        }
        if self.scheme != "http" && self.scheme != "https" {
            return Err(format!(
                "unsupported scheme {:?} for scrape config with job name {:?}",
                self.scheme, self.job_name
            ));
        }
        self.body_size_limit.get_or_insert(g.body_size_limit);
        self.sample_limit.get_or_insert(g.sample_limit);
        self.label_limit.get_or_insert(g.label_limit);
        self.label_name_length_limit
            .get_or_insert(g.label_name_length_limit);
        self.label_value_length_limit
            .get_or_insert(g.label_value_length_limit);
        if let Some(ps) = &self.scrape_protocols {
            if ps.is_empty() {
                return Err(format!(
                    "scrape_protocols cannot be empty for scrape config with job name {:?}",
                    self.job_name
                ));
            }
            for (i, p) in ps.iter().enumerate() {
                if ps[..i].contains(p) {
                    return Err(format!(
                        "duplicated protocol in scrape_protocols, got {ps:?}"
                    ));
                }
            }
        }
        let native = *self
            .scrape_native_histograms
            .get_or_insert(g.scrape_native_histograms.unwrap_or(false));
        self.always_scrape_classic_histograms
            .get_or_insert(g.always_scrape_classic_histograms.unwrap_or(false));
        self.convert_classic_histograms_to_nhcb
            .get_or_insert(g.convert_classic_histograms_to_nhcb.unwrap_or(false));
        if self.scrape_protocols.is_none() {
            self.scrape_protocols = Some(match &g.scrape_protocols {
                Some(p) => p.clone(),
                None if native => ScrapeProtocol::proto_first(),
                None => ScrapeProtocol::defaults(),
            });
        }
        let f = self.native_histogram_min_bucket_factor;
        if !(f.is_finite() && f >= 0.0) {
            return Err(format!(
                "native_histogram_min_bucket_factor of job {:?} must be a non-negative number, got {f}",
                self.job_name
            ));
        }
        let auths = [
            self.basic_auth.is_some(),
            self.authorization.is_some(),
            self.bearer_token.is_some() || !self.bearer_token_file.is_empty(),
        ];
        if auths.iter().filter(|x| **x).count() > 1 {
            return Err("at most one of basic_auth, authorization and bearer_token & bearer_token_file must be configured".into());
        }
        if let Some(b) = &self.basic_auth {
            if b.password.is_some() && !b.password_file.is_empty() {
                return Err(
                    "at most one of basic_auth password & password_file must be configured".into(),
                );
            }
        }
        if let Some(a) = &self.authorization {
            if a.credentials.is_some() && !a.credentials_file.is_empty() {
                return Err("at most one of authorization credentials & credentials_file must be configured".into());
            }
            if a.kind.eq_ignore_ascii_case("basic") {
                return Err(
                    "authorization type cannot be set to \"basic\", use \"basic_auth\" instead"
                        .into(),
                );
            }
        }
        for p in &self.params {
            if p.0.is_empty() {
                return Err("empty param name".into());
            }
        }
        for (i, sc) in self.static_configs.iter().enumerate() {
            for t in &sc.targets {
                if t.contains('/') {
                    return Err(format!("{t:?} is not a valid hostname (static_configs[{i}]); put the path in metrics_path"));
                }
            }
        }
        Ok(())
    }

    /// The effective scrape interval.
    pub fn interval(&self) -> Duration {
        self.scrape_interval.unwrap_or_default()
    }

    /// The effective scrape timeout.
    pub fn timeout(&self) -> Duration {
        self.scrape_timeout.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header_matches_prometheus() {
        assert_eq!(
            accept_header(&ScrapeProtocol::defaults()),
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        );
    }

    #[test]
    fn native_histograms_put_protobuf_first_unless_protocols_are_given() {
        let eff = |y: &str, g: &GlobalConfig| {
            let mut c: ScrapeConfig = serde_saphyr::from_str(y).unwrap();
            c.apply_defaults(g).unwrap();
            c
        };
        let g = GlobalConfig::default();
        let c = eff("job_name: a\n", &g);
        assert_eq!(c.scrape_protocols, Some(ScrapeProtocol::defaults()));
        assert_eq!(c.scrape_native_histograms, Some(false));
        let c = eff("job_name: a\nscrape_native_histograms: true\n", &g);
        assert_eq!(c.scrape_protocols, Some(ScrapeProtocol::proto_first()));
        assert_eq!(
            accept_header(c.scrape_protocols.as_deref().unwrap()),
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
        );
        let g = GlobalConfig {
            scrape_native_histograms: Some(true),
            always_scrape_classic_histograms: Some(true),
            ..GlobalConfig::default()
        };
        let c = eff("job_name: a\n", &g);
        assert_eq!(c.scrape_protocols, Some(ScrapeProtocol::proto_first()));
        assert_eq!(c.always_scrape_classic_histograms, Some(true));
        let c = eff(
            "job_name: a\nscrape_native_histograms: false\nscrape_classic_histograms: false\n",
            &g,
        );
        assert_eq!(c.scrape_native_histograms, Some(false));
        assert_eq!(c.always_scrape_classic_histograms, Some(false));
        let mut c: ScrapeConfig =
            serde_saphyr::from_str("job_name: a\nnative_histogram_min_bucket_factor: -1\n")
                .unwrap();
        assert!(c
            .apply_defaults(&GlobalConfig::default())
            .unwrap_err()
            .contains("native_histogram_min_bucket_factor"));
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(ByteSize::parse("10MB"), Ok(ByteSize(10 << 20)));
        assert_eq!(ByteSize::parse("1KiB"), Ok(ByteSize(1024)));
        assert_eq!(ByteSize::parse("0"), Ok(ByteSize(0)));
        assert_eq!(ByteSize::parse("100B"), Ok(ByteSize(100)));
        assert!(ByteSize::parse("10").is_err());
        assert!(ByteSize::parse("10XB").is_err());
    }

    #[test]
    fn defaults_and_timeout_check() {
        let mut c: ScrapeConfig = serde_saphyr::from_str(
            "job_name: a
scrape_interval: 5s
",
        )
        .unwrap();
        c.apply_defaults(&GlobalConfig::default()).unwrap();
        assert_eq!(c.timeout(), Duration::from_secs(5));
        assert_eq!(c.metrics_path, "/metrics");
        let mut c: ScrapeConfig = serde_saphyr::from_str(
            "job_name: a
scrape_interval: 5s
scrape_timeout: 6s
",
        )
        .unwrap();
        assert!(c
            .apply_defaults(&GlobalConfig::default())
            .unwrap_err()
            .contains("scrape timeout greater than scrape interval"));
    }

    #[test]
    fn scrape_protocols_are_checked() {
        let check = |y: &str| {
            let mut c: ScrapeConfig = serde_saphyr::from_str(y).unwrap();
            c.apply_defaults(&GlobalConfig::default())
        };
        assert!(check("job_name: a\nscrape_protocols: []\n")
            .unwrap_err()
            .contains("cannot be empty"));
        assert!(check(
            "job_name: a\nscrape_protocols: [PrometheusText0.0.4, PrometheusText0.0.4]\n"
        )
        .unwrap_err()
        .contains("duplicated"));
        assert!(check("job_name: a\nscrape_protocols: [PrometheusProto]\n").is_ok());
        assert!(check("job_name: a\nscrape_protocols: [PrometheusProto, OpenMetricsText1.0.0]\nfallback_scrape_protocol: PrometheusText0.0.4\n").is_ok());
        assert!(
            serde_saphyr::from_str::<ScrapeConfig>("job_name: a\nscrape_protocols: [Nope]\n")
                .is_err()
        );
    }

    #[test]
    fn secrets_never_serialize() {
        let c: ScrapeConfig = serde_saphyr::from_str(
            "job_name: a
basic_auth:
  username: u
  password: hunter2
",
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
