//! Targets of one pool: labels from discovery plus relabelling (Prometheus's
//! `PopulateLabels`), the scrape URL, health for the API, and starting/stopping loops.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::scrapeloop::{self, LoopState, MetadataEntry, ScrapeMetrics};
use super::{Job, JobKind};
use crate::model::relabel;
use crate::model::Labels;
use crate::storage::Appendable;

/// A group of targets sharing labels, as discovery produces it.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetGroup {
    /// Where it came from (file and index), for logs.
    pub source: String,
    /// `host:port` addresses.
    pub targets: Vec<String>,
    /// Labels of the group.
    pub labels: Labels,
}

/// Health of a target as the API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Not scraped yet.
    Unknown,
    /// Last scrape succeeded.
    Up,
    /// Last scrape failed.
    Down,
}

impl Health {
    /// `up`, `down` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// One active target for `/api/v1/targets`.
#[derive(Clone, Debug)]
pub struct TargetStatus {
    /// Labels before relabelling.
    pub discovered_labels: Labels,
    /// Labels after relabelling, without `__` labels.
    pub labels: Labels,
    /// The job.
    pub scrape_pool: String,
    /// The URL scraped.
    pub scrape_url: String,
    /// Last error text ("" when none).
    pub last_error: String,
    /// Last scrape start (ms), 0 when never.
    pub last_scrape_ms: i64,
    /// Last scrape duration (s).
    pub last_scrape_duration: f64,
    /// Health.
    pub health: Health,
    /// Interval.
    pub scrape_interval: String,
    /// Timeout.
    pub scrape_timeout: String,
}

/// A target dropped by relabelling.
#[derive(Clone, Debug)]
pub struct DroppedTarget {
    /// Labels before relabelling.
    pub discovered_labels: Labels,
    /// The job.
    pub scrape_pool: String,
}

/// A target with everything its loop needs.
#[derive(Debug)]
pub struct Target {
    /// Labels before relabelling.
    pub discovered: Labels,
    /// Public labels attached to every sample.
    pub labels: Labels,
    /// URL to scrape.
    pub url: String,
    /// Stable hash (labels + URL), seeds the scrape offset.
    pub hash: u64,
}

struct Running {
    target: Arc<Target>,
    state: Arc<LoopState>,
    stop: watch::Sender<Option<bool>>,
    task: tokio::task::JoinHandle<()>,
}

/// Everything one pool owns at run time.
pub struct PoolState {
    pub(super) job: Job,
    client: Option<reqwest::Client>,
    storage: Arc<dyn Appendable>,
    metrics: ScrapeMetrics,
    seed: u64,
    running: Mutex<Vec<Running>>,
    dropped: Mutex<Vec<DroppedTarget>>,
    inherited: Mutex<HashMap<u64, Arc<LoopState>>>,
}

fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds a target from one address and its group, or `Err(discovered)` when relabelling
/// drops it.
pub fn build_target(job: &Job, addr: &str, group: &Labels) -> Result<Target, Labels> {
    let c = &job.config;
    let mut lb = group.builder();
    lb.set("__address__".into(), addr.into());
    let preset = [
        ("job", c.job_name.clone()),
        ("__scrape_interval__", c.interval().to_string()),
        ("__scrape_timeout__", c.timeout().to_string()),
        ("__metrics_path__", c.metrics_path.clone()),
        ("__scheme__", c.scheme.clone()),
    ];
    for (n, v) in preset {
        if lb.get(n).is_empty() {
            lb.set(n.into(), v);
        }
    }
    for (name, vals) in &c.params {
        let key = format!("__param_{name}");
        if lb.get(&key).is_empty() {
            if let Some(v) = vals.first() {
                lb.set(key, v.clone());
            }
        }
    }
    let discovered = lb.labels();
    if !relabel::process(&c.relabel_configs, &mut lb) {
        return Err(discovered);
    }
    let all = lb.labels();
    let Some(address) = all.get("__address__").map(str::to_string) else {
        return Err(discovered);
    };
    if all.get("instance").is_none() {
        lb.set("instance".into(), address.clone());
    }
    let all = lb.labels();
    let mut query: Vec<(String, String)> = Vec::new();
    for (name, vals) in &c.params {
        match all.get(&format!("__param_{name}")) {
            Some(v) => query.push((name.clone(), v.to_string())),
            None => query.extend(vals.iter().map(|v| (name.clone(), v.clone()))),
        }
    }
    for l in all.iter() {
        if let Some(name) = l.name.strip_prefix("__param_") {
            if !c.params.contains_key(name) {
                query.push((name.to_string(), l.value.to_string()));
            }
        }
    }
    let scheme = all.get("__scheme__").unwrap_or("http");
    let path = all.get("__metrics_path__").unwrap_or("/metrics");
    let mut url = match &job.kind {
        JobKind::Collector { collector, .. } if !collector.targets().is_empty() => {
            format!("appliance://{}?target={address}", collector.name())
        }
        JobKind::Collector { collector, .. } => format!("appliance://{}", collector.name()),
        JobKind::Http => format!("{scheme}://{address}{path}"),
    };
    // Go's url.Values.Encode sorts by key; values of one key keep their order.
    query.sort_by(|a, b| a.0.cmp(&b.0));
    if !query.is_empty() {
        url.push('?');
        url.push_str(
            &query
                .iter()
                .map(|(k, v)| format!("{}={}", url_escape(k), url_escape(v)))
                .collect::<Vec<_>>()
                .join("&"),
        );
    }
    let mut pb = all.builder();
    pb.retain(|l| !l.name.starts_with("__"));
    let labels = pb.labels();
    let mut h = crate::model::labels::Fnv64::default();
    h.write(labels.to_string().as_bytes());
    h.write(url.as_bytes());
    Ok(Target {
        discovered,
        labels,
        url,
        hash: h.finish(),
    })
}

impl PoolState {
    /// A pool that has not discovered anything yet.
    pub fn new(
        job: Job,
        client: Option<reqwest::Client>,
        storage: Arc<dyn Appendable>,
        metrics: ScrapeMetrics,
        seed: u64,
    ) -> Self {
        PoolState {
            job,
            client,
            storage,
            metrics,
            seed,
            running: Mutex::new(Vec::new()),
            dropped: Mutex::new(Vec::new()),
            inherited: Mutex::new(HashMap::new()),
        }
    }

    /// The pool's scrape metrics.
    pub(super) fn metrics(&self) -> &ScrapeMetrics {
        &self.metrics
    }

    /// Takes over the loop state (staleness tracking, health) of a previous pool of the same
    /// job, whose loops stop without writing stale markers.
    pub fn inherit(&self, prev: &PoolState) {
        let mut running = prev.running.lock();
        let mut inh = self.inherited.lock();
        for r in running.drain(..) {
            let _ = r.stop.send(Some(false));
            inh.insert(r.target.hash, r.state);
        }
    }

    /// Moves to the targets of `groups`: new ones start, vanished ones stop with stale markers.
    pub fn sync(&self, groups: Vec<TargetGroup>) {
        let mut wanted: Vec<Target> = Vec::new();
        let mut dropped = Vec::new();
        for g in &groups {
            for addr in &g.targets {
                match build_target(&self.job, addr, &g.labels) {
                    Ok(t) => {
                        if !wanted.iter().any(|w| w.hash == t.hash) {
                            wanted.push(t);
                        }
                    }
                    Err(discovered) => dropped.push(DroppedTarget {
                        discovered_labels: discovered,
                        scrape_pool: self.job.config.job_name.clone(),
                    }),
                }
            }
        }
        let limit = self.job.config.target_limit as usize;
        if limit > 0 && wanted.len() > limit {
            crate::failure!(error, "scrape", "target_limit", job = %self.job.config.job_name, targets = wanted.len(), limit, "target_limit exceeded; scraping none of this job's targets");
            wanted.clear();
        }
        let keep = self.job.config.keep_dropped_targets as usize;
        if keep > 0 {
            dropped.truncate(keep);
        }
        *self.dropped.lock() = dropped;

        let mut running = self.running.lock();
        running.retain(|r| {
            let stay = wanted.iter().any(|w| w.hash == r.target.hash);
            if !stay {
                let _ = r.stop.send(Some(true));
            }
            stay
        });
        let mut inherited = std::mem::take(&mut *self.inherited.lock());
        for t in wanted {
            if running.iter().any(|r| r.target.hash == t.hash) {
                continue;
            }
            let state = inherited.remove(&t.hash).unwrap_or_default();
            let (tx, rx) = watch::channel(None);
            let target = Arc::new(t);
            let ctx = scrapeloop::LoopCtx {
                target: target.clone(),
                job: self.job.clone(),
                client: self.client.clone(),
                storage: self.storage.clone(),
                metrics: self.metrics.clone(),
                state: state.clone(),
                seed: self.seed,
            };
            let task = tokio::spawn(scrapeloop::run(ctx, rx));
            running.push(Running {
                target,
                state,
                task,
                stop: tx,
            });
        }
        // Targets of the previous config that this one no longer has go stale now.
        for (_, state) in inherited {
            scrapeloop::write_stale(&*self.storage, &state, crate::scrape::scrapeloop::now_ms());
        }
    }

    /// Stops every loop; `mark_stale` writes stale markers for their series.
    pub fn stop_all(&self, mark_stale: bool) -> Vec<tokio::task::JoinHandle<()>> {
        self.running
            .lock()
            .drain(..)
            .map(|r| {
                let _ = r.stop.send(Some(mark_stale));
                r.task
            })
            .collect()
    }

    /// Active targets.
    pub fn active(&self) -> Vec<TargetStatus> {
        let c = &self.job.config;
        self.running
            .lock()
            .iter()
            .map(|r| {
                let st = r.state.status.lock();
                TargetStatus {
                    discovered_labels: r.target.discovered.clone(),
                    labels: r.target.labels.clone(),
                    scrape_pool: c.job_name.clone(),
                    scrape_url: r.target.url.clone(),
                    last_error: st.last_error.clone(),
                    last_scrape_ms: st.last_scrape_ms,
                    last_scrape_duration: st.last_duration,
                    health: st.health,
                    scrape_interval: c.interval().to_string(),
                    scrape_timeout: c.timeout().to_string(),
                }
            })
            .collect()
    }

    /// Dropped targets.
    pub fn dropped(&self) -> Vec<DroppedTarget> {
        self.dropped.lock().clone()
    }

    /// Number of dropped targets.
    pub fn dropped_count(&self) -> usize {
        self.dropped.lock().len()
    }

    /// Metadata of every target.
    pub fn metadata(&self) -> Vec<(Labels, MetadataEntry)> {
        self.running
            .lock()
            .iter()
            .flat_map(|r| {
                r.state
                    .status
                    .lock()
                    .metadata
                    .iter()
                    .map(|m| (r.target.labels.clone(), m.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::config::{GlobalConfig, ScrapeConfig};

    fn job(yaml: &str) -> Job {
        let mut c: ScrapeConfig = serde_saphyr::from_str(yaml).unwrap();
        c.apply_defaults(&GlobalConfig::default()).unwrap();
        Job {
            config: c,
            kind: JobKind::Http,
        }
    }

    #[test]
    fn labels_url_and_instance_follow_prometheus() {
        let j = job("job_name: node\nscrape_interval: 30s\nmetrics_path: /probe\nparams:\n  module: [http_2xx]\n  collect[]: [cpu, mem]\n");
        let t = build_target(&j, "10.0.0.1:9100", &Labels::from_pairs([("env", "prod")])).unwrap();
        assert_eq!(
            t.url,
            "http://10.0.0.1:9100/probe?collect%5B%5D=cpu&module=http_2xx"
        );
        assert_eq!(
            t.labels.to_string(),
            r#"{env="prod", instance="10.0.0.1:9100", job="node"}"#
        );
        assert_eq!(t.discovered.get("__scrape_interval__"), Some("30s"));
        assert_eq!(t.discovered.get("__param_module"), Some("http_2xx"));
    }

    #[test]
    fn relabelling_moves_address_and_can_drop() {
        let j = job(
            "job_name: bb\nrelabel_configs:\n  - source_labels: [__address__]\n    target_label: __param_target\n  - source_labels: [__param_target]\n    target_label: instance\n  - target_label: __address__\n    replacement: 127.0.0.1:9115\n  - source_labels: [instance]\n    regex: 'skip.*'\n    action: drop\n",
        );
        let t = build_target(&j, "example.org", &Labels::default()).unwrap();
        assert_eq!(t.url, "http://127.0.0.1:9115/metrics?target=example.org");
        assert_eq!(t.labels.get("instance"), Some("example.org"));
        let dropped = build_target(&j, "skip.me", &Labels::default()).unwrap_err();
        assert_eq!(dropped.get("__address__"), Some("skip.me"));
    }

    #[test]
    fn scheme_and_path_from_labels() {
        let j = job("job_name: x\nscheme: https\n");
        let g = Labels::from_pairs([("__metrics_path__", "/m")]);
        let t = build_target(&j, "h:1", &g).unwrap();
        assert_eq!(t.url, "https://h:1/m");
    }
}
