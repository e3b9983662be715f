//! Built-in collectors: the one `Collector` trait and the one list of collectors.
//!
//! A collector renders an exposition page in-process; the scrape loop drives it exactly like
//! an HTTP target, so each gets `up`, `scrape_*` and staleness without code of its own. This
//! module knows nothing of scraping or storage.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::model::exposition::Format;

pub mod celery;
pub mod container;
pub mod node;
pub mod postgres;
pub mod probe;
pub mod redis;
use crate::model::time::Duration;

/// One metric family being written.
/// (labels, sample-name suffix such as `_sum`, value)
type Sample = (Vec<(String, String)>, &'static str, f64);

struct Family {
    name: String,
    help: String,
    kind: &'static str,
    samples: Vec<Sample>,
}

/// A text exposition being built, families kept in name order as node_exporter and cAdvisor
/// print them, labels sorted as client_golang sorts them.
#[derive(Default)]
pub struct PageBuilder {
    families: BTreeMap<String, Family>,
}

impl PageBuilder {
    /// Adds one sample to family `name`, created with `help` and `kind` on first use.
    pub fn add(
        &mut self,
        name: &str,
        help: &str,
        kind: &'static str,
        labels: &[(&str, &str)],
        v: f64,
    ) {
        self.sample(name, help, kind, "", labels, v);
    }

    /// Adds one sample to family `name` whose sample name is `name` + `suffix` (`_bucket`,
    /// `_sum`, `_count` of a histogram or summary).
    pub fn sample(
        &mut self,
        name: &str,
        help: &str,
        kind: &'static str,
        suffix: &'static str,
        labels: &[(&str, &str)],
        v: f64,
    ) {
        let f = self
            .families
            .entry(name.to_string())
            .or_insert_with(|| Family {
                name: name.to_string(),
                help: help.to_string(),
                kind,
                samples: Vec::new(),
            });
        // client_golang prints label pairs sorted by name.
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        f.samples.push((labels, suffix, v));
    }

    /// Adds a histogram: `_bucket` per `(le, cumulative count)` plus `+Inf`, `_sum`, `_count`.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        buckets: &[(String, f64)],
        sum: f64,
        count: f64,
    ) {
        for (le, v) in buckets
            .iter()
            .map(|(l, v)| (l.as_str(), *v))
            .chain([("+Inf", count)])
        {
            let mut l = labels.to_vec();
            l.push(("le", le));
            self.sample(name, help, "histogram", "_bucket", &l, v);
        }
        self.sample(name, help, "histogram", "_sum", labels, sum);
        self.sample(name, help, "histogram", "_count", labels, count);
    }

    /// Adds a summary: one sample per `(quantile, value)`, then `_sum` and `_count`.
    pub fn summary(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        quantiles: &[(String, f64)],
        sum: f64,
        count: f64,
    ) {
        for (q, v) in quantiles {
            let mut l = labels.to_vec();
            l.push(("quantile", q));
            self.sample(name, help, "summary", "", &l, *v);
        }
        self.sample(name, help, "summary", "_sum", labels, sum);
        self.sample(name, help, "summary", "_count", labels, count);
    }

    /// The page in the text format 0.0.4.
    pub fn render(self) -> String {
        let mut s = String::new();
        for f in self.families.into_values() {
            let _ = writeln!(s, "# HELP {} {}", f.name, escape_help(&f.help));
            let _ = writeln!(s, "# TYPE {} {}", f.name, f.kind);
            let mut samples = f.samples;
            // Stable: a summary's quantiles keep their order before its _sum and _count.
            samples.sort_by_cached_key(|(labels, suffix, _)| {
                let series: Vec<(String, String)> = labels
                    .iter()
                    .filter(|(k, _)| k != "quantile" && k != "le")
                    .cloned()
                    .collect();
                let rank = match *suffix {
                    "_sum" => 1,
                    "_count" => 2,
                    _ => 0,
                };
                // Buckets and quantiles keep the order they were added in (the sort is stable).
                (series, rank)
            });
            for (labels, suffix, v) in samples {
                if labels.is_empty() {
                    let _ = writeln!(s, "{}{suffix} {}", f.name, num(v));
                } else {
                    let ls: Vec<String> = labels
                        .iter()
                        .map(|(k, v)| {
                            format!(
                                "{k}=\"{}\"",
                                crate::model::exposition::escape_label_value(v)
                            )
                        })
                        .collect();
                    let _ = writeln!(s, "{}{suffix}{{{}}} {}", f.name, ls.join(","), num(v));
                }
            }
        }
        s
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)`, as client_golang prints values.
pub(crate) fn num(v: f64) -> String {
    crate::model::gofmt::go_g(v, None)
}

/// The rows of a `/proc/net/dev` page: device name and its 16 counters (receive then
/// transmit), for the node and container collectors alike.
pub(crate) fn net_dev(text: &str) -> Vec<(&str, Vec<f64>)> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (dev, rest) = line.split_once(':')?;
            let v = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0.0))
                .collect();
            Some((dev.trim(), v))
        })
        .collect()
}

/// Joins text pages whose families may repeat (one page per instance) into one page with
/// each family once.
pub(crate) fn merge_pages(text: &str) -> String {
    let mut fams: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
        {
            current = rest.split(' ').next().unwrap_or("").to_string();
            let e = fams.entry(current.clone()).or_default();
            if !e.0.iter().any(|l| l == line) {
                e.0.push(line.to_string());
            }
        } else if !line.is_empty() {
            fams.entry(current.clone())
                .or_default()
                .1
                .push(line.to_string());
        }
    }
    let mut s = String::new();
    for (_, (meta, samples)) in fams {
        for l in meta.iter().chain(samples.iter()) {
            s.push_str(l);
            s.push('\n');
        }
    }
    s
}

/// Runs an async check on a thread with its own small runtime and waits for it, so config
/// code (sync, possibly inside the main runtime) can ask "does this service answer?".
pub(crate) fn check_on_thread<F>(f: F) -> bool
where
    F: Future<Output = bool> + Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            // A service that accepts but never answers must not hold a reload or the
            // discovery loop.
            .map(|rt| {
                rt.block_on(async {
                    tokio::time::timeout(std::time::Duration::from_secs(5), f)
                        .await
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false)
    })
    .join()
    .unwrap_or(false)
}

/// Why a collector failed; the scrape records it as `up 0` with this text.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// Rendering the page failed.
    #[error("encoding metrics: {0}")]
    Encode(String),
    /// The source (e.g. the Docker engine) did not answer.
    #[error("{0}")]
    Source(String),
}

/// One collected page.
pub struct Page {
    /// The exposition body.
    pub body: Vec<u8>,
    /// Its format.
    pub format: Format,
}

/// A future that yields a page.
pub type CollectFuture<'a> = Pin<Box<dyn Future<Output = Result<Page, CollectError>> + Send + 'a>>;

/// An in-process scrape target.
pub trait Collector: Send + Sync {
    /// The collector's name: its `job` label and its `/metrics/<name>` path.
    fn name(&self) -> &'static str;
    /// Renders the current page.
    fn collect(&self) -> CollectFuture<'_>;
    /// The targets of a collector that probes others (blackbox-style), each scraped as its
    /// own `instance`; empty (the default) for a collector of this host.
    fn targets(&self) -> Vec<String> {
        Vec::new()
    }
    /// Renders the page for one of `targets()`.
    fn collect_target<'a>(&'a self, _target: &'a str) -> CollectFuture<'a> {
        self.collect()
    }
}

/// The appliance's own metrics, from the shared prometheus-client registry.
pub struct SelfCollector {
    registry: Arc<Mutex<Registry>>,
}

impl SelfCollector {
    /// Renders `registry`.
    pub fn new(registry: Arc<Mutex<Registry>>) -> Self {
        SelfCollector { registry }
    }
}

impl Collector for SelfCollector {
    fn name(&self) -> &'static str {
        "appliance"
    }

    fn collect(&self) -> CollectFuture<'_> {
        Box::pin(async move {
            let mut s = String::new();
            prometheus_client::encoding::text::encode(&mut s, &self.registry.lock())
                .map_err(|e| CollectError::Encode(e.to_string()))?;
            Ok(Page {
                body: s.into_bytes(),
                format: Format::OpenMetrics,
            })
        })
    }
}

/// Per-collector switches in the `collectors:` config section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Whether the collector is scraped (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Overrides the global scrape interval for this collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<Duration>,
    /// Also answer `GET /metrics` on this address (`:9100`, `host:port`), as the exporter it
    /// replaces does, for an existing Prometheus job; off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_address: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            enabled: true,
            scrape_interval: None,
            listen_address: None,
        }
    }
}

/// The `collectors:` section: one entry per built-in collector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorsConfig {
    /// The appliance's own metrics (`job="appliance"`).
    #[serde(default)]
    pub appliance: CollectorConfig,
    /// The host (`job="node"`), node_exporter-compatible.
    #[serde(default)]
    pub node: NodeConfig,
    /// Docker containers (`job="containers"`), cAdvisor-compatible.
    #[serde(default)]
    pub containers: container::ContainerConfig,
    /// PostgreSQL servers (`job="postgres"`), postgres_exporter-compatible.
    #[serde(default)]
    pub postgres: postgres::PostgresConfig,
    /// Redis servers (`job="redis"`), redis_exporter-compatible.
    #[serde(default)]
    pub redis: redis::RedisConfig,
    /// Celery through its Redis broker (`job="celery"`), celery-exporter-compatible.
    #[serde(default)]
    pub celery: celery::CeleryConfig,
    /// HTTP and TCP probes (`job="blackbox"`, one `instance` per target).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<probe::ProbeConfig>,
    /// How often the services of auto-detected collectors (Docker, PostgreSQL, Redis, Celery)
    /// are looked for again, so one started after the appliance is scraped without a reload.
    #[serde(default = "discovery_interval")]
    pub discovery_interval: Duration,
}

fn discovery_interval() -> Duration {
    Duration::from_millis(60_000)
}

impl Default for CollectorsConfig {
    fn default() -> Self {
        CollectorsConfig {
            appliance: Default::default(),
            node: Default::default(),
            containers: Default::default(),
            postgres: Default::default(),
            redis: Default::default(),
            celery: Default::default(),
            probes: Vec::new(),
            discovery_interval: discovery_interval(),
        }
    }
}

impl CollectorsConfig {
    /// Each collector's `listen_address`, by collector name, where one is set.
    pub fn listen_addresses(&self) -> Vec<(&'static str, &str)> {
        [
            ("appliance", &self.appliance.listen_address),
            ("node", &self.node.listen_address),
            ("containers", &self.containers.listen_address),
            ("postgres", &self.postgres.listen_address),
            ("redis", &self.redis.listen_address),
            ("celery", &self.celery.listen_address),
        ]
        .into_iter()
        .filter_map(|(n, a)| a.as_deref().map(|a| (n, a)))
        .collect()
    }

    /// Checks what serde cannot: probe targets and regexes.
    pub fn validate(&self) -> Result<(), String> {
        if self.discovery_interval.as_millis() < 1000 {
            return Err(format!(
                "collectors.discovery_interval {}: must be at least 1s",
                self.discovery_interval
            ));
        }
        for (i, p) in self.probes.iter().enumerate() {
            p.validate()
                .map_err(|e| format!("collectors.probes[{i}]: {e}"))?;
        }
        Ok(())
    }
}

/// `collectors.node`: the switches plus where the host's files are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Whether the collector is scraped (default true).
    pub enabled: bool,
    /// Overrides the global scrape interval for this collector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<Duration>,
    /// Also answer `GET /metrics` on this address (`:9100`), as node_exporter does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_address: Option<String>,
    /// procfs (`/host/proc` inside a container).
    pub procfs: String,
    /// sysfs (`/host/sys` inside a container).
    pub sysfs: String,
    /// The host's root file system (`/host/root` inside a container).
    pub rootfs: String,
    /// The textfile collector's directory of `*.prom` files (default Debian's
    /// `/var/lib/prometheus/node-exporter`, where absence is no error; "" for none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub textfile_directory: Option<String>,
    /// Mount points, file-system types and devices left out.
    pub filters: node::NodeFilters,
}

impl Default for NodeConfig {
    fn default() -> Self {
        let r = node::NodeRoots::default();
        NodeConfig {
            enabled: true,
            scrape_interval: None,
            listen_address: None,
            procfs: r.procfs,
            sysfs: r.sysfs,
            rootfs: r.rootfs,
            textfile_directory: None,
            filters: node::NodeFilters::default(),
        }
    }
}

/// What collectors need from the rest of the process.
pub struct Deps {
    /// The registry holding the appliance's own metrics.
    pub registry: Arc<Mutex<Registry>>,
}

/// The collectors whose `enabled` is left unset (containers, postgres, redis, celery): they
/// are scraped once their service has been found.
pub const AUTO_DETECTED: &[&str] = &["containers", "postgres", "redis", "celery"];

/// Which of the auto-detected collectors' services answer now, leaving out those in `known`
/// (each probe is bounded by a few seconds, and they run side by side). Blocking: call it off
/// the async threads.
pub fn detect(
    cfg: &CollectorsConfig,
    known: &std::collections::BTreeSet<&'static str>,
) -> std::collections::BTreeSet<&'static str> {
    type Check<'a> = Box<dyn FnOnce() -> bool + Send + 'a>;
    let checks: Vec<(&'static str, Check<'_>)> = vec![
        (
            "containers",
            Box::new(|| {
                cfg.containers.enabled.is_none()
                    && container::docker_answers(&cfg.containers.docker_host)
            }),
        ),
        (
            "postgres",
            Box::new(|| cfg.postgres.enabled.is_none() && postgres::answers(&cfg.postgres)),
        ),
        (
            "redis",
            Box::new(|| cfg.redis.enabled.is_none() && redis::answers(&cfg.redis)),
        ),
        (
            "celery",
            Box::new(|| cfg.celery.switch().is_none() && celery::present(&cfg.celery)),
        ),
    ];
    std::thread::scope(|s| {
        let running: Vec<_> = checks
            .into_iter()
            .filter(|(name, _)| !known.contains(name))
            .map(|(name, f)| (name, s.spawn(f)))
            .collect();
        running
            .into_iter()
            .filter_map(|(name, h)| h.join().unwrap_or(false).then_some(name))
            .collect::<Vec<_>>()
    })
    .into_iter()
    .collect()
}

/// One built-in collector: the collector, its switches with `enabled` resolved, and the
/// address it answers on as a stand-alone exporter.
pub struct Builtin {
    /// The collector.
    pub collector: Arc<dyn Collector>,
    /// `enabled` (explicit, or found by [`detect`]) and the scrape interval.
    pub config: CollectorConfig,
}

/// The one list of built-in collectors, each with its config entry; the only place a new
/// collector is registered. Every collector is returned, scraped or not (`config.enabled`):
/// one with a `listen_address` answers there either way. An auto-detected collector is
/// enabled when its name is in `detected`.
pub fn builtin(
    cfg: &CollectorsConfig,
    global_interval: std::time::Duration,
    deps: &Deps,
    detected: &std::collections::BTreeSet<&'static str>,
) -> Vec<Builtin> {
    let n = &cfg.node;
    let auto = |explicit: Option<bool>, name: &str| explicit.unwrap_or(detected.contains(name));
    let switches =
        |enabled: bool, interval: Option<Duration>, listen: &Option<String>| CollectorConfig {
            enabled,
            scrape_interval: interval,
            listen_address: listen.clone(),
        };
    let all: Vec<(Arc<dyn Collector>, CollectorConfig)> = vec![
        (
            Arc::new(SelfCollector::new(deps.registry.clone())),
            cfg.appliance.clone(),
        ),
        (
            Arc::new(node::NodeCollector::new(
                node::NodeRoots {
                    procfs: n.procfs.clone(),
                    sysfs: n.sysfs.clone(),
                    rootfs: n.rootfs.clone(),
                    textfile_directory: n.textfile_directory.clone(),
                },
                n.filters.clone(),
            )),
            switches(n.enabled, n.scrape_interval, &n.listen_address),
        ),
        (
            Arc::new(container::ContainerCollector::new(cfg.containers.clone())),
            switches(
                auto(cfg.containers.enabled, "containers"),
                cfg.containers.scrape_interval,
                &cfg.containers.listen_address,
            ),
        ),
        (
            Arc::new(postgres::PostgresCollector::new(&cfg.postgres)),
            switches(
                auto(cfg.postgres.enabled, "postgres"),
                cfg.postgres.scrape_interval,
                &cfg.postgres.listen_address,
            ),
        ),
        (
            Arc::new(redis::RedisCollector::new(&cfg.redis)),
            switches(
                auto(cfg.redis.enabled, "redis"),
                cfg.redis.scrape_interval,
                &cfg.redis.listen_address,
            ),
        ),
        (
            Arc::new(celery::CeleryCollector::new(&cfg.celery)),
            switches(
                auto(cfg.celery.switch(), "celery"),
                cfg.celery.scrape_interval,
                &cfg.celery.listen_address,
            ),
        ),
        {
            let p = probe::ProbeCollector::new(&cfg.probes, global_interval);
            let interval = p
                .interval()
                .map(|d| Duration::from_millis(d.as_millis() as u64));
            (
                Arc::new(p),
                switches(!cfg.probes.is_empty(), interval, &None),
            )
        },
    ];
    all.into_iter()
        .map(|(collector, config)| Builtin { collector, config })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_pages_list_each_family_once() {
        let a = "# HELP x X.\n# TYPE x gauge\nx{server=\"a\"} 1\n";
        let b = "# HELP x X.\n# TYPE x gauge\nx{server=\"b\"} 2\n";
        assert_eq!(
            merge_pages(&format!("{a}{b}")),
            "# HELP x X.\n# TYPE x gauge\nx{server=\"a\"} 1\nx{server=\"b\"} 2\n"
        );
    }

    #[test]
    fn summaries_print_quantiles_sum_and_count() {
        let mut p = PageBuilder::default();
        p.summary(
            "s",
            "S.",
            &[("cmd", "get")],
            &[("50".into(), 1.0), ("99".into(), 2.0)],
            3.0,
            4.0,
        );
        assert_eq!(
            p.render(),
            "# HELP s S.\n# TYPE s summary\ns{cmd=\"get\",quantile=\"50\"} 1\ns{cmd=\"get\",quantile=\"99\"} 2\ns_sum{cmd=\"get\"} 3\ns_count{cmd=\"get\"} 4\n"
        );
    }
}
