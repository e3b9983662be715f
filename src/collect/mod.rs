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

pub mod container;
pub mod node;
pub mod postgres;
use crate::model::time::Duration;

/// One metric family being written.
struct Family {
    name: String,
    help: String,
    kind: &'static str,
    samples: Vec<(Vec<(String, String)>, f64)>,
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
        f.samples.push((labels, v));
    }

    /// The page in the text format 0.0.4.
    pub fn render(self) -> String {
        let mut s = String::new();
        for f in self.families.into_values() {
            let _ = writeln!(s, "# HELP {} {}", f.name, escape_help(&f.help));
            let _ = writeln!(s, "# TYPE {} {}", f.name, f.kind);
            let mut samples = f.samples;
            samples.sort_by(|a, b| a.0.cmp(&b.0));
            for (labels, v) in samples {
                if labels.is_empty() {
                    let _ = writeln!(s, "{} {}", f.name, num(v));
                } else {
                    let ls: Vec<String> = labels
                        .iter()
                        .map(|(k, v)| format!("{k}=\"{}\"", escape_value(v)))
                        .collect();
                    let _ = writeln!(s, "{}{{{}}} {}", f.name, ls.join(","), num(v));
                }
            }
        }
        s
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
}

fn yes() -> bool {
    true
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            enabled: true,
            scrape_interval: None,
        }
    }
}

/// The `collectors:` section: one entry per built-in collector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
    /// procfs (`/host/proc` inside a container).
    pub procfs: String,
    /// sysfs (`/host/sys` inside a container).
    pub sysfs: String,
    /// The host's root file system (`/host/root` inside a container).
    pub rootfs: String,
    /// Mount points, file-system types and devices left out.
    pub filters: node::NodeFilters,
}

impl Default for NodeConfig {
    fn default() -> Self {
        let r = node::NodeRoots::default();
        NodeConfig {
            enabled: true,
            scrape_interval: None,
            procfs: r.procfs,
            sysfs: r.sysfs,
            rootfs: r.rootfs,
            filters: node::NodeFilters::default(),
        }
    }
}

/// What collectors need from the rest of the process.
pub struct Deps {
    /// The registry holding the appliance's own metrics.
    pub registry: Arc<Mutex<Registry>>,
}

/// The one list of built-in collectors, each with its config entry; the only place a new
/// collector is registered.
pub fn builtin(cfg: &CollectorsConfig, deps: &Deps) -> Vec<(Arc<dyn Collector>, CollectorConfig)> {
    let n = &cfg.node;
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
                },
                n.filters.clone(),
            )),
            CollectorConfig {
                enabled: n.enabled,
                scrape_interval: n.scrape_interval,
            },
        ),
        (
            Arc::new(container::ContainerCollector::new(cfg.containers.clone())),
            CollectorConfig {
                enabled: cfg
                    .containers
                    .enabled
                    .unwrap_or_else(|| container::docker_answers(&cfg.containers.docker_host)),
                scrape_interval: cfg.containers.scrape_interval,
            },
        ),
        (
            Arc::new(postgres::PostgresCollector::new(&cfg.postgres)),
            CollectorConfig {
                enabled: cfg
                    .postgres
                    .enabled
                    .unwrap_or_else(|| postgres::answers(&cfg.postgres)),
                scrape_interval: cfg.postgres.scrape_interval,
            },
        ),
    ];
    all.into_iter().filter(|(_, c)| c.enabled).collect()
}
