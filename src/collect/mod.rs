//! Built-in collectors: the one `Collector` trait and the one list of collectors.
//!
//! A collector renders an exposition page in-process; the scrape loop drives it exactly like
//! an HTTP target, so each gets `up`, `scrape_*` and staleness without code of its own. This
//! module knows nothing of scraping or storage.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::model::exposition::Format;

pub mod node;
use crate::model::time::Duration;

/// Why a collector failed; the scrape records it as `up 0` with this text.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// Rendering the page failed.
    #[error("encoding metrics: {0}")]
    Encode(String),
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
    ];
    all.into_iter().filter(|(_, c)| c.enabled).collect()
}
