//! Remote write, both ways: queues that send the write-ahead log to Prometheus, Mimir,
//! VictoriaMetrics or another appliance (1.0 and 2.0 protocols), and the decoding of pushes
//! the appliance receives on `/api/v1/write`.
//!
//! Owns the `remote_write:` config, the wire messages, the queues and their state files under
//! `<data>/remote_write/`, and the `appliance_remote_storage_*` metrics. Reads storage (WAL
//! files, a [`Querier`]) and appends received samples through [`Appendable`]; it must not
//! touch scraping, rules or HTTP routing (the HTTP layer calls [`receive`]).

pub mod client;
pub mod config;
pub mod convert;
pub mod proto;
pub mod queue;
pub mod receive;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

pub use config::RemoteWriteConfig;

use crate::storage::Querier;

/// One metric family's metadata, as targets reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct FamilyMetadata {
    /// Family name.
    pub metric: String,
    /// `counter`, `gauge`, …
    pub kind: String,
    /// HELP.
    pub help: String,
    /// UNIT.
    pub unit: String,
}

/// Where metadata comes from (the scrape targets); wired in `app.rs`.
pub trait MetadataSource: Send + Sync {
    /// Every family's metadata, one entry per family name.
    fn families(&self) -> Vec<FamilyMetadata>;
}

/// One remote's state for the status page and `/api/v1/status/remote_write`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    /// Queue name.
    pub name: String,
    /// URL, secrets hidden.
    pub url: String,
    /// `1.0` or `2.0`.
    pub protocol: String,
    /// Running shards.
    pub shards: u64,
    /// Shards the load asks for.
    pub desired_shards: u64,
    /// Read from the log, not yet acknowledged.
    pub pending_samples: u64,
    /// Acknowledged samples.
    pub samples_sent: u64,
    /// Samples refused for good.
    pub samples_failed: u64,
    /// Sample sends retried.
    pub samples_retried: u64,
    /// Samples not sent (older than `sample_age_limit`).
    pub samples_dropped: u64,
    /// Newest sample time read (ms).
    pub highest_read_ms: Option<i64>,
    /// Newest sample time acknowledged (ms).
    pub highest_sent_ms: Option<i64>,
    /// How far the receiver is behind, in seconds (0 when nothing is pending).
    pub lag_seconds: f64,
    /// Sending what the log no longer holds, from the blocks.
    pub catching_up: bool,
    /// The last error.
    pub last_error: String,
    /// When it happened (ms).
    pub last_error_ms: Option<i64>,
    /// The last acknowledged send (ms).
    pub last_success_ms: Option<i64>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RemoteLabels {
    remote_name: String,
    url: String,
}

type HistFamily = Family<RemoteLabels, Histogram, fn() -> Histogram>;

fn batch_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.005, 2.0, 14,
    ))
}

/// The `appliance_remote_storage_*` families.
#[derive(Clone)]
struct Families {
    samples: Family<RemoteLabels, Counter>,
    samples_failed: Family<RemoteLabels, Counter>,
    samples_retried: Family<RemoteLabels, Counter>,
    samples_dropped: Family<RemoteLabels, Counter>,
    histograms: Family<RemoteLabels, Counter>,
    histograms_failed: Family<RemoteLabels, Counter>,
    histograms_retried: Family<RemoteLabels, Counter>,
    histograms_dropped: Family<RemoteLabels, Counter>,
    metadata: Family<RemoteLabels, Counter>,
    metadata_failed: Family<RemoteLabels, Counter>,
    metadata_retried: Family<RemoteLabels, Counter>,
    bytes: Family<RemoteLabels, Counter>,
    pending: Family<RemoteLabels, Gauge>,
    highest_sent: Family<RemoteLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    highest_read: Family<RemoteLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    shards: Family<RemoteLabels, Gauge>,
    shards_desired: Family<RemoteLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    shards_min: Family<RemoteLabels, Gauge>,
    shards_max: Family<RemoteLabels, Gauge>,
    batch_duration: HistFamily,
}

impl Default for Families {
    fn default() -> Self {
        Families {
            samples: Family::default(),
            samples_failed: Family::default(),
            samples_retried: Family::default(),
            samples_dropped: Family::default(),
            histograms: Family::default(),
            histograms_failed: Family::default(),
            histograms_retried: Family::default(),
            histograms_dropped: Family::default(),
            metadata: Family::default(),
            metadata_failed: Family::default(),
            metadata_retried: Family::default(),
            bytes: Family::default(),
            pending: Family::default(),
            highest_sent: Family::default(),
            highest_read: Family::default(),
            shards: Family::default(),
            shards_desired: Family::default(),
            shards_min: Family::default(),
            shards_max: Family::default(),
            batch_duration: Family::new_with_constructor(batch_histogram),
        }
    }
}

/// One queue's handles into the families.
#[derive(Clone)]
pub struct QueueMetrics {
    samples: Counter,
    samples_failed: Counter,
    samples_retried: Counter,
    samples_dropped: Counter,
    histograms: Counter,
    histograms_failed: Counter,
    histograms_retried: Counter,
    histograms_dropped: Counter,
    metadata: Counter,
    metadata_failed: Counter,
    metadata_retried: Counter,
    bytes: Counter,
    pending: Gauge,
    highest_sent: Gauge<f64, std::sync::atomic::AtomicU64>,
    highest_read: Gauge<f64, std::sync::atomic::AtomicU64>,
    shards: Gauge,
    shards_desired: Gauge<f64, std::sync::atomic::AtomicU64>,
    batch_duration: Histogram,
    started_ms: i64,
}

impl Families {
    fn for_queue(&self, cfg: &RemoteWriteConfig) -> QueueMetrics {
        let l = RemoteLabels {
            remote_name: cfg.queue_name(),
            url: cfg.url.redacted(),
        };
        self.shards_min
            .get_or_create(&l)
            .set(cfg.queue_config.min_shards as i64);
        self.shards_max
            .get_or_create(&l)
            .set(cfg.queue_config.max_shards as i64);
        QueueMetrics {
            samples: self.samples.get_or_create(&l).clone(),
            samples_failed: self.samples_failed.get_or_create(&l).clone(),
            samples_retried: self.samples_retried.get_or_create(&l).clone(),
            samples_dropped: self.samples_dropped.get_or_create(&l).clone(),
            histograms: self.histograms.get_or_create(&l).clone(),
            histograms_failed: self.histograms_failed.get_or_create(&l).clone(),
            histograms_retried: self.histograms_retried.get_or_create(&l).clone(),
            histograms_dropped: self.histograms_dropped.get_or_create(&l).clone(),
            metadata: self.metadata.get_or_create(&l).clone(),
            metadata_failed: self.metadata_failed.get_or_create(&l).clone(),
            metadata_retried: self.metadata_retried.get_or_create(&l).clone(),
            bytes: self.bytes.get_or_create(&l).clone(),
            pending: self.pending.get_or_create(&l).clone(),
            highest_sent: self.highest_sent.get_or_create(&l).clone(),
            highest_read: self.highest_read.get_or_create(&l).clone(),
            shards: self.shards.get_or_create(&l).clone(),
            shards_desired: self.shards_desired.get_or_create(&l).clone(),
            batch_duration: self.batch_duration.get_or_create(&l).clone(),
            started_ms: chrono::Utc::now().timestamp_millis(),
        }
    }

    fn register(&self, reg: &mut Registry) {
        let p = "appliance_remote_storage";
        let c: [(&str, &str, &Family<RemoteLabels, Counter>); 12] = [
            ("samples", "Samples acknowledged by the receiver.", &self.samples),
            ("samples_failed", "Samples the receiver refused for good (a 4xx other than 429); their batch was dropped.", &self.samples_failed),
            ("samples_retried", "Samples whose send failed and was retried.", &self.samples_retried),
            ("samples_dropped", "Samples not sent: older than queue_config.sample_age_limit.", &self.samples_dropped),
            ("histograms", "Native histogram samples acknowledged by the receiver.", &self.histograms),
            ("histograms_failed", "Native histogram samples refused for good.", &self.histograms_failed),
            ("histograms_retried", "Native histogram samples whose send was retried.", &self.histograms_retried),
            ("histograms_dropped", "Native histogram samples not sent (too old).", &self.histograms_dropped),
            ("metadata", "Metadata entries acknowledged by the receiver.", &self.metadata),
            ("metadata_failed", "Metadata entries that could not be sent.", &self.metadata_failed),
            ("metadata_retried", "Metadata entries whose send was retried.", &self.metadata_retried),
            ("bytes", "Compressed bytes sent.", &self.bytes),
        ];
        for (n, h, f) in c {
            reg.register(format!("{p}_{n}"), h, f.clone());
        }
        reg.register(
            format!("{p}_samples_pending"),
            "Samples read from the write-ahead log and not yet acknowledged.",
            self.pending.clone(),
        );
        reg.register(
            format!("{p}_queue_highest_sent_timestamp_seconds"),
            "Newest sample timestamp the receiver acknowledged.",
            self.highest_sent.clone(),
        );
        reg.register(
            format!("{p}_highest_timestamp_in_seconds"),
            "Newest sample timestamp read from the write-ahead log for this remote.",
            self.highest_read.clone(),
        );
        reg.register(
            format!("{p}_shards"),
            "Shards sending.",
            self.shards.clone(),
        );
        reg.register(
            format!("{p}_shards_desired"),
            "Shards the load asks for.",
            self.shards_desired.clone(),
        );
        reg.register(
            format!("{p}_shards_min"),
            "queue_config.min_shards.",
            self.shards_min.clone(),
        );
        reg.register(
            format!("{p}_shards_max"),
            "queue_config.max_shards.",
            self.shards_max.clone(),
        );
        reg.register(
            format!("{p}_sent_batch_duration_seconds"),
            "Time a send of one batch took, retries counted separately.",
            self.batch_duration.clone(),
        );
    }
}

/// What the queues need from the rest of the appliance.
pub struct Deps {
    /// The WAL directory.
    pub wal_dir: PathBuf,
    /// Where queue state is kept (`<data>/remote_write`).
    pub state_dir: PathBuf,
    /// The store, for catch-up from blocks.
    pub querier: Arc<dyn Querier>,
    /// Target metadata.
    pub metadata: Arc<dyn MetadataSource>,
}

/// A running queue with the config and external labels it was started with.
type Running = (RemoteWriteConfig, Vec<(String, String)>, queue::Queue);

/// All remote-write queues, restarted per entry when a reload changes it.
pub struct RemoteWrite {
    deps: Deps,
    families: Families,
    queues: Mutex<Vec<Running>>,
}

impl RemoteWrite {
    /// No queues yet; [`RemoteWrite::apply`] starts them.
    pub fn new(deps: Deps) -> Arc<RemoteWrite> {
        Arc::new(RemoteWrite {
            deps,
            families: Families::default(),
            queues: Mutex::new(Vec::new()),
        })
    }

    /// Registers the `appliance_remote_storage_*` families.
    pub fn register_metrics(&self, reg: &mut Registry) {
        self.families.register(reg);
    }

    /// Runs exactly the queues `cfgs` names: unchanged ones keep running, changed or new
    /// ones (re)start from their persisted position, removed ones stop.
    pub fn apply(
        &self,
        cfgs: &[RemoteWriteConfig],
        external_labels: &std::collections::BTreeMap<String, String>,
        rt: &tokio::runtime::Handle,
    ) -> Result<(), String> {
        let ext: Vec<(String, String)> = external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut running = self.queues.lock();
        let mut old: HashMap<String, Running> =
            running.drain(..).map(|q| (state_key(&q.0), q)).collect();
        let mut errors = Vec::new();
        for c in cfgs {
            let key = state_key(c);
            if let Some(q) = old.remove(&key) {
                if q.0 == *c && q.1 == ext {
                    running.push(q);
                    continue;
                }
                q.2.stop();
            }
            match queue::Queue::start(
                c.clone(),
                ext.clone(),
                self.deps.wal_dir.clone(),
                self.deps.state_dir.join(&key),
                self.deps.querier.clone(),
                self.deps.metadata.clone(),
                self.families.for_queue(c),
                rt.clone(),
            ) {
                Ok(q) => {
                    tracing::info!(remote = %c.queue_name(), url = %c.url.redacted(), "remote write queue started");
                    running.push((c.clone(), ext.clone(), q));
                }
                Err(e) => errors.push(format!("remote_write {}: {e}", c.queue_name())),
            }
        }
        for (_, (_, _, q)) in old {
            q.stop();
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Every queue's status.
    pub fn status(&self) -> Vec<QueueStatus> {
        self.queues
            .lock()
            .iter()
            .map(|q| q.2.shared.status())
            .collect()
    }

    /// Stops every queue (what is unacknowledged is sent after the next start).
    pub fn stop(&self) {
        for q in self.queues.lock().drain(..) {
            q.2.stop();
        }
    }
}

/// The state directory's name: the queue name and the URL's hash, so pointing a name at
/// another receiver starts it fresh instead of resuming someone else's position.
fn state_key(c: &RemoteWriteConfig) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(c.url.expose().as_bytes());
    let h: String = d.iter().take(3).map(|b| format!("{b:02x}")).collect();
    let name: String = c
        .queue_name()
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' {
                ch
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name == h {
        h
    } else {
        format!("{name}-{h}")
    }
}
