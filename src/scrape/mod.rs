//! Scraping: the `scrape_configs` types, target discovery (static and file), target labels
//! and relabelling, one loop per target with jittered offsets, limits, the synthetic `up` /
//! `scrape_*` series and staleness markers.
//!
//! Scrape writes through `storage::Appendable` and drives built-in `collect::Collector`s; it
//! knows nothing of PromQL, rules or HTTP serving.

mod cache;
pub mod config;
mod discovery;
pub mod http_client;
mod scrapeloop;
mod target;

pub use config::{GlobalConfig, ScrapeConfig, Secret};
pub use scrapeloop::{MetadataEntry, ScrapeMetrics};
pub use target::{DroppedTarget, Health, TargetStatus};

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::collect::Collector;
use crate::model::Labels;
use crate::storage::Appendable;

/// Why a scrape or a pool failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// Building the HTTP client (TLS files, certificates) failed.
    #[error("job {job:?}: {msg}")]
    Client {
        /// The job.
        job: String,
        /// What failed.
        msg: String,
    },
}

/// Where a job's targets come from.
#[derive(Clone)]
pub enum JobKind {
    /// HTTP targets from `static_configs` / `file_sd_configs`.
    Http,
    /// One in-process collector; its single target is `instance=<instance>`.
    Collector {
        /// The collector.
        collector: Arc<dyn Collector>,
        /// The `instance` label (the host name).
        instance: String,
    },
}

/// A job to run: its checked config and its kind.
#[derive(Clone)]
pub struct Job {
    /// Checked config with defaults applied.
    pub config: ScrapeConfig,
    /// HTTP or in-process.
    pub kind: JobKind,
}

struct Pool {
    config: ScrapeConfig,
    stop: watch::Sender<bool>,
    state: Arc<target::PoolState>,
}

/// Owns every scrape pool; `apply` moves it to a new set of jobs.
pub struct Manager {
    storage: Arc<dyn Appendable>,
    pools: Mutex<HashMap<String, Pool>>,
    order: Mutex<Vec<String>>,
    metrics: ScrapeMetrics,
    jitter_seed: u64,
}

impl Manager {
    /// A manager writing to `storage`; `jitter_seed` spreads scrape offsets per host.
    pub fn new(storage: Arc<dyn Appendable>, metrics: ScrapeMetrics, jitter_seed: u64) -> Self {
        Manager {
            storage,
            pools: Mutex::new(HashMap::new()),
            order: Mutex::new(Vec::new()),
            metrics,
            jitter_seed,
        }
    }

    /// Starts, restarts or stops pools so exactly `jobs` run. A pool whose config is
    /// unchanged keeps running untouched; a changed one keeps its targets' staleness state.
    pub fn apply(&self, jobs: Vec<Job>) -> Result<(), ScrapeError> {
        let mut pools = self.pools.lock();
        // Build every new client first: a bad TLS file must fail the whole apply before any
        // running pool is touched, so a failed reload leaves the old config fully in place.
        let mut changed = Vec::new();
        for job in &jobs {
            let name = &job.config.job_name;
            if pools
                .get(name)
                .map(|p| p.config == job.config)
                .unwrap_or(false)
            {
                continue;
            }
            let client =
                match job.kind {
                    JobKind::Http => Some(http_client::build(&job.config).map_err(|msg| {
                        ScrapeError::Client {
                            job: name.clone(),
                            msg,
                        }
                    })?),
                    JobKind::Collector { .. } => None,
                };
            changed.push((job, client));
        }
        let wanted: HashMap<String, &Job> = jobs
            .iter()
            .map(|j| (j.config.job_name.clone(), j))
            .collect();
        let names: Vec<String> = pools.keys().cloned().collect();
        for name in names {
            if !wanted.contains_key(&name) {
                if let Some(p) = pools.remove(&name) {
                    p.state.stop_all(true);
                    let _ = p.stop.send(true);
                }
            }
        }
        for (job, client) in changed {
            let name = &job.config.job_name;
            let previous = pools.remove(name);
            let state = Arc::new(target::PoolState::new(
                job.clone(),
                client,
                self.storage.clone(),
                self.metrics.clone(),
                self.jitter_seed,
            ));
            if let Some(p) = previous {
                let _ = p.stop.send(true);
                state.inherit(&p.state);
            }
            let (tx, rx) = watch::channel(false);
            tokio::spawn(discovery::run(state.clone(), rx));
            pools.insert(
                name.clone(),
                Pool {
                    config: job.config.clone(),
                    stop: tx,
                    state,
                },
            );
        }
        // Pools are listed by name, as Prometheus's targets API sorts them.
        let mut order: Vec<String> = jobs.iter().map(|j| j.config.job_name.clone()).collect();
        order.sort();
        *self.order.lock() = order;
        Ok(())
    }

    /// Stops everything, writing stale markers for every target.
    /// Returns the loops' tasks, which end once their stale markers are written.
    pub fn stop(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for (_, p) in self.pools.lock().drain() {
            tasks.extend(p.state.stop_all(true));
            let _ = p.stop.send(true);
        }
        tasks
    }

    /// Active targets, pools sorted by name.
    pub fn active_targets(&self) -> Vec<TargetStatus> {
        let pools = self.pools.lock();
        self.order
            .lock()
            .iter()
            .filter_map(|n| pools.get(n))
            .flat_map(|p| p.state.active())
            .collect()
    }

    /// Targets dropped by relabelling, pools sorted by name.
    pub fn dropped_targets(&self) -> Vec<DroppedTarget> {
        let pools = self.pools.lock();
        self.order
            .lock()
            .iter()
            .filter_map(|n| pools.get(n))
            .flat_map(|p| p.state.dropped())
            .collect()
    }

    /// Dropped-target counts per pool.
    pub fn dropped_counts(&self) -> Vec<(String, usize)> {
        let pools = self.pools.lock();
        self.order
            .lock()
            .iter()
            .filter_map(|n| pools.get(n).map(|p| (n.clone(), p.state.dropped_count())))
            .collect()
    }

    /// Metadata reported by targets: (target labels, entry).
    pub fn metadata(&self) -> Vec<(Labels, MetadataEntry)> {
        let pools = self.pools.lock();
        self.order
            .lock()
            .iter()
            .filter_map(|n| pools.get(n))
            .flat_map(|p| p.state.metadata())
            .collect()
    }
}

/// A per-host seed for scrape offsets, so two appliances scraping the same target don't align.
pub fn jitter_seed(hostname: &str) -> u64 {
    let mut h = crate::model::labels::Fnv64::default();
    h.write(hostname.as_bytes());
    h.finish()
}
