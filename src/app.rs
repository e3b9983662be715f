//! The composition root: builds each module from the config, wires the seams (the traits
//! `http` declares), handles reload (SIGHUP and `POST /-/reload`) and ordered shutdown.
//! This is the only file that names several modules' types together.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::collect::{self, Collector};
use crate::config::{Config, Source};
use crate::http::{self, Reloader, StatusSource, TargetsSource};
use crate::model::Labels;
use crate::scrape::{
    self, DroppedTarget, Job, JobKind, Manager, MetadataEntry, ScrapeConfig, ScrapeMetrics,
    TargetStatus,
};
use crate::storage::{Db, DbOptions, TsdbStats};

/// Options of `appliance run`.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--web.external-url` (wins over `web.external_url`).
    pub external_url: Option<String>,
    /// `--web.route-prefix` (wins over `web.route_prefix`).
    pub route_prefix: Option<String>,
    /// Every flag as given, for `/api/v1/status/flags`.
    pub flags: Vec<(String, String)>,
}

/// The host name, for `instance` labels of built-in collectors and the jitter seed.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn jobs(cfg: &Config, collectors: &[collect::Builtin], host: &str) -> anyhow::Result<Vec<Job>> {
    let mut out = Vec::new();
    for b in collectors.iter().filter(|b| b.config.enabled) {
        let (c, cc) = (&b.collector, &b.config);
        if cfg.scrape_configs.iter().any(|s| s.job_name == c.name()) {
            // A migrated prometheus.yml often scrapes node_exporter as job "node": the
            // user's job wins and the built-in collector of that name stands aside.
            tracing::info!(
                job = c.name(),
                "a scrape job has the built-in collector's name; the collector is not scraped"
            );
            continue;
        }
        let yaml = format!("job_name: {}\n", c.name());
        let mut sc: ScrapeConfig = serde_saphyr::from_str(&yaml).context("collector job")?;
        sc.scrape_interval = cc.scrape_interval;
        sc.apply_defaults(&cfg.global)
            .map_err(|e| anyhow::anyhow!("collector {}: {e}", c.name()))?;
        out.push(Job {
            config: sc,
            kind: JobKind::Collector {
                collector: c.clone(),
                instance: host.to_string(),
            },
        });
    }
    for sc in &cfg.scrape_configs {
        out.push(Job {
            config: sc.clone(),
            kind: JobKind::Http,
        });
    }
    Ok(out)
}

/// Hands alerts from the rules to the built-in notifier and to external Alertmanagers, as
/// Prometheus hands them to Alertmanager (external labels added, `alert_relabel_configs`
/// applied for external ones, `generatorURL` to the expression); logs them when neither is
/// configured.
struct NotifySink {
    notifier: Arc<crate::notify::notifier::Notifier>,
    external: Arc<crate::notify::external::ExternalSender>,
    external_labels: Mutex<std::collections::BTreeMap<String, String>>,
    alert_relabel: Mutex<Vec<crate::model::relabel::RelabelConfig>>,
    external_url: String,
}

impl crate::rules::group::AlertSink for NotifySink {
    fn send(&self, expr: &str, alerts: &[crate::rules::group::Alert]) {
        let internal = self.notifier.enabled();
        let external = self.external.enabled();
        if !internal && !external {
            crate::rules::group::LogSink.send(expr, alerts);
            return;
        }
        let ext = self.external_labels.lock().clone();
        let link = format!(
            "{}/graph?g0.expr={}&g0.tab=1",
            self.external_url.trim_end_matches('/'),
            form_urlencoded::byte_serialize(expr.as_bytes()).collect::<String>()
        );
        let out: Vec<crate::notify::dispatch::Alert> = alerts
            .iter()
            .map(|a| {
                let mut b = a.labels.builder();
                for (k, v) in &ext {
                    if a.labels.get(k).is_none() {
                        b.set(k.clone(), v.clone());
                    }
                }
                crate::notify::dispatch::Alert {
                    labels: b.labels(),
                    annotations: a.annotations.clone(),
                    starts_at: if a.fired_at != 0 {
                        a.fired_at
                    } else {
                        a.active_at
                    },
                    ends_at: if a.resolved_at != 0 {
                        a.resolved_at
                    } else {
                        a.valid_until
                    },
                    generator_url: link.clone(),
                }
            })
            .collect();
        if external {
            let rules = self.alert_relabel.lock().clone();
            let relabelled: Vec<crate::notify::dispatch::Alert> = out
                .iter()
                .filter_map(|a| {
                    let mut b = a.labels.builder();
                    crate::model::relabel::process(&rules, &mut b).then(|| {
                        let mut x = a.clone();
                        x.labels = b.labels();
                        x
                    })
                })
                .collect();
            self.external.send(relabelled);
        }
        if internal {
            self.notifier
                .push(out, chrono::Utc::now().timestamp_millis());
        }
    }
}

struct Runtime {
    source: Source,
    notifier: Arc<crate::notify::notifier::Notifier>,
    sink: Arc<NotifySink>,
    rules: Arc<crate::rules::manager::Manager>,
    external_url: String,
    config: Mutex<Config>,
    manager: Arc<Manager>,
    db: Db,
    collect_deps: collect::Deps,
    host: String,
    reload_ok: Gauge,
    reload_ts: Gauge,
    last_ok: AtomicBool,
    flags: Vec<(String, String)>,
    /// The built-in collectors of the running config and whether each is scraped, for
    /// `/metrics/<name>` and the collectors' own ports.
    collectors: CollectorsView,
    /// Auto-detected collectors whose service has been found; once found, a collector stays
    /// (a service that goes away is a service down, which its alerts must see).
    detected: Mutex<std::collections::BTreeSet<&'static str>>,
    /// The collectors' own ports, by collector name: address and the server's stop switch.
    ports:
        Mutex<std::collections::BTreeMap<&'static str, (String, tokio::sync::watch::Sender<bool>)>>,
    /// What the collectors' ports serve with.
    exporter_deps: http::ExporterDeps,
    /// Remote-write queues.
    remote: Arc<crate::remote::RemoteWrite>,
    /// Metadata other agents pushed, by family name.
    pushed_metadata:
        Mutex<std::collections::BTreeMap<(String, String), crate::remote::FamilyMetadata>>,
    /// The runtime the queues' shards run on.
    handle: tokio::runtime::Handle,
    /// Pushes datasources and dashboards to Grafana.
    grafana: Arc<crate::grafana::sync::GrafanaSync>,
    /// The "no receiver" hint was logged (it is said once).
    hinted: AtomicBool,
}

/// The scrape targets' metadata, one entry per family, for remote write.
struct TargetMetadata(Arc<Manager>);

impl crate::remote::MetadataSource for TargetMetadata {
    fn families(&self) -> Vec<crate::remote::FamilyMetadata> {
        let mut seen = std::collections::BTreeMap::new();
        for (_, m) in self.0.metadata() {
            seen.entry(m.metric.clone())
                .or_insert(crate::remote::FamilyMetadata {
                    metric: m.metric,
                    kind: m.kind,
                    help: m.help,
                    unit: m.unit,
                });
        }
        seen.into_values().collect()
    }
}

impl http::RemoteWriteSink for Runtime {
    fn receiver_enabled(&self) -> bool {
        self.config.lock().web.enable_remote_write_receiver
    }
    fn receive(
        &self,
        body: &[u8],
        protocol: crate::remote::proto::Protocol,
    ) -> Result<crate::remote::receive::Written, crate::remote::receive::ReceiveError> {
        let limits = {
            let c = self.config.lock();
            crate::remote::receive::Limits {
                max_name_len: c.global.label_name_length_limit as usize,
                max_value_len: c.global.label_value_length_limit as usize,
                max_labels: match c.global.label_limit {
                    0 => crate::model::exposition::MAX_LABELS_PER_SAMPLE,
                    n => n as usize,
                },
                ..Default::default()
            }
        };
        let w = crate::remote::receive::receive(body, protocol, &self.db, &limits)?;
        if !w.metadata.is_empty() {
            let mut m = self.pushed_metadata.lock();
            for f in &w.metadata {
                // Bounded: a push cannot grow this without limit.
                // One entry per family and type: two senders may disagree, and /api/v1/metadata
                // lists every variant, as Prometheus does across targets.
                let key = (f.metric.clone(), f.kind.clone());
                if m.len() < 100_000 || m.contains_key(&key) {
                    m.insert(key, f.clone());
                }
            }
        }
        Ok(w)
    }
    fn queues(&self) -> Vec<crate::remote::QueueStatus> {
        self.remote.status()
    }
    fn received_metadata(&self) -> Vec<crate::remote::FamilyMetadata> {
        self.pushed_metadata.lock().values().cloned().collect()
    }
}

/// The running collectors, shared by the main router, the collectors' ports and reloads.
#[derive(Clone, Default)]
struct CollectorsView(Arc<Mutex<Vec<Scraped>>>);

/// A built-in collector and whether the running config scrapes it.
type Scraped = (Arc<dyn Collector>, bool);

impl http::CollectorsSource for CollectorsView {
    fn collector(&self, name: &str) -> Option<Arc<dyn Collector>> {
        self.0
            .lock()
            .iter()
            .find(|(c, on)| *on && c.name() == name)
            .map(|(c, _)| c.clone())
    }
    fn exporter(&self, name: &str) -> Option<Arc<dyn Collector>> {
        self.0
            .lock()
            .iter()
            .find(|(c, _)| c.name() == name)
            .map(|(c, _)| c.clone())
    }
}

impl Runtime {
    /// Builds the collectors (auto-detected ones enabled as `detected` says) and hands their
    /// jobs to the scrape manager.
    fn apply_collectors(&self, cfg: &Config) -> anyhow::Result<()> {
        let detected = self.detected.lock().clone();
        let collectors = collect::builtin(
            &cfg.collectors,
            cfg.global.scrape_interval.std(),
            &self.collect_deps,
            &detected,
        );
        let jobs = jobs(cfg, &collectors, &self.host)?;
        self.manager.apply(jobs)?;
        *self.collectors.0.lock() = collectors
            .iter()
            .map(|b| (b.collector.clone(), b.config.enabled))
            .collect();
        Ok(())
    }

    /// Binds the collectors' ports that are new or moved; a port already taken is an error
    /// naming the collector, before anything running changes.
    fn bind_ports(
        &self,
        cfg: &Config,
    ) -> anyhow::Result<Vec<(&'static str, String, tokio::net::TcpListener)>> {
        let running = self.ports.lock();
        let mut out = Vec::new();
        for (name, addr) in cfg.collectors.listen_addresses() {
            if running.get(name).is_some_and(|(a, _)| a == addr) {
                continue;
            }
            let bind = http::bind_address(addr);
            let _guard = self.handle.enter();
            let l = std::net::TcpListener::bind(&bind)
                .and_then(|l| {
                    l.set_nonblocking(true)?;
                    tokio::net::TcpListener::from_std(l)
                })
                .with_context(|| {
                    format!("collectors.{name}.listen_address {addr:?}: listening on {bind}")
                })?;
            out.push((name, addr.to_string(), l));
        }
        Ok(out)
    }

    /// Serves the newly bound ports and stops those no longer configured.
    fn start_ports(
        &self,
        cfg: &Config,
        bound: Vec<(&'static str, String, tokio::net::TcpListener)>,
    ) {
        let wanted: std::collections::BTreeMap<&str, &str> =
            cfg.collectors.listen_addresses().into_iter().collect();
        let mut running = self.ports.lock();
        running.retain(|name, (addr, stop)| {
            let keep = wanted.get(name) == Some(&addr.as_str());
            if !keep {
                let _ = stop.send(true);
                tracing::info!(collector = *name, address = %addr, "collector port closed");
            }
            keep
        });
        for (name, addr, listener) in bound {
            let (tx, mut rx) = tokio::sync::watch::channel(false);
            let router = http::exporter_router(self.exporter_deps.clone(), name);
            let tls = cfg.web.tls_config.clone();
            tracing::info!(collector = name, address = %addr, "serving the collector's /metrics on its own port");
            self.handle.spawn(async move {
                let stop = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                if let Err(e) = http::serve::serve(listener, router, tls.as_ref(), stop).await {
                    crate::failure!(error, "http", "collector_port", collector = name, error = %e, "a collector's port stopped");
                }
            });
            running.insert(name, (addr, tx));
        }
    }

    /// Probes the auto-detected collectors' services again; a newly found one is scraped
    /// from now on, without a reload.
    fn rediscover(&self) {
        let cfg = self.config.lock().clone();
        let known = self.detected.lock().clone();
        let found = collect::detect(&cfg.collectors, &known);
        let new: Vec<&'static str> = {
            let d = self.detected.lock();
            found.into_iter().filter(|n| !d.contains(n)).collect()
        };
        if new.is_empty() {
            return;
        }
        self.detected.lock().extend(new.iter().copied());
        tracing::info!(collectors = ?new, "found new services; scraping them");
        if let Err(e) = self.apply_collectors(&cfg) {
            crate::failure!(error, "collect", "rediscover", error = %format!("{e:#}"), "starting the newly found collectors failed");
        }
    }

    fn apply(&self, cfg: &Config) -> anyhow::Result<()> {
        // Everything that can fail is checked before anything running changes.
        let interval = cfg.global.evaluation_interval.as_millis();
        let groups = match &cfg.rule_files {
            Some(patterns) => {
                let files = crate::rules::manager::resolve_files(patterns, &self.source.base_dir());
                crate::rules::manager::Manager::load(&files, interval)
            }
            None => {
                crate::rules::manager::Manager::load_texts(crate::config::DEFAULT_RULES, interval)
            }
        }
        .map_err(|e| anyhow::anyhow!("rule_files: {e}"))?;
        let mut notify = cfg
            .notify
            .load(&self.source.base_dir())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if notify.is_none() && cfg.alerting.alertmanagers.is_empty() {
            // No receiver configured: the plan's `.env` (SLACK_WEBHOOK_URL, ALERT_EMAIL) says
            // where alerts go.
            notify = crate::notify::config::from_env(|k| std::env::var(k).ok())
                .map_err(|e| anyhow::anyhow!("notifications: {e}"))?;
            if notify.is_none() && !self.hinted.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    "no notification receiver is configured: alerts are only logged; {}",
                    crate::notify::config::ENV_HINT
                );
            } else if notify.is_some() {
                tracing::info!("notifications go to the receivers set in the environment");
            }
        }
        let found = collect::detect(&cfg.collectors, &Default::default());
        let ports = self.bind_ports(cfg)?;
        {
            let mut d = self.detected.lock();
            d.extend(found);
        }
        self.apply_collectors(cfg)?;
        self.start_ports(cfg, ports);
        let o = db_options(cfg);
        self.db.set_retention(o.retention_ms, o.retention_bytes);
        self.rules.install(
            groups,
            cfg.global.external_labels.clone(),
            self.external_url.clone(),
            &cfg.rules,
        );
        *self.sink.external_labels.lock() = cfg.global.external_labels.clone();
        *self.sink.alert_relabel.lock() = cfg.alerting.alert_relabel_configs.clone();
        self.sink.external.apply(&cfg.alerting);
        self.notifier.apply(notify);
        self.remote
            .apply(&cfg.remote_write, &cfg.global.external_labels, &self.handle)
            .map_err(anyhow::Error::msg)?;
        self.grafana.apply(cfg.grafana.as_ref().map(|g| {
            let dir = PathBuf::from(&cfg.web.dashboards_dir);
            crate::grafana::sync::Job {
                config: g.clone(),
                datasources: grafana_datasources(cfg, g, &self.external_url, None),
                dashboards: Arc::new(move || crate::config::all_dashboards(&dir)),
            }
        }));
        Ok(())
    }
}

impl Reloader for Runtime {
    fn reload(&self) -> Result<(), String> {
        let result = self
            .source
            .load()
            .map_err(anyhow::Error::from)
            .and_then(|cfg| {
                self.apply(&cfg)?;
                Ok(cfg)
            });
        match result {
            Ok(cfg) => {
                *self.config.lock() = cfg;
                self.reload_ok.set(1);
                self.reload_ts.set(chrono::Utc::now().timestamp());
                self.last_ok.store(true, Ordering::Release);
                tracing::info!(file = %self.source.name(), "configuration reloaded");
                Ok(())
            }
            Err(e) => {
                self.reload_ok.set(0);
                self.last_ok.store(false, Ordering::Release);
                crate::failure!(error, "config", "reload", file = %self.source.name(), error = %format!("{e:#}"), "reload failed; keeping the running configuration");
                Err(format!("{e:#}"))
            }
        }
    }
}

impl TargetsSource for Runtime {
    fn active(&self) -> Vec<TargetStatus> {
        self.manager.active_targets()
    }
    fn dropped(&self) -> Vec<DroppedTarget> {
        self.manager.dropped_targets()
    }
    fn dropped_counts(&self) -> Vec<(String, usize)> {
        self.manager.dropped_counts()
    }
    fn metadata(&self) -> Vec<(Labels, MetadataEntry)> {
        self.manager.metadata()
    }
}

impl http::TsdbAdmin for Runtime {
    fn admin_enabled(&self) -> bool {
        self.config.lock().web.enable_admin_api
    }
    fn delete_series(
        &self,
        sets: &[Vec<crate::model::Matcher>],
        start: i64,
        end: i64,
    ) -> Result<(), String> {
        for m in sets {
            let n = self
                .db
                .delete_series(m, start, end)
                .map_err(|e| e.to_string())?;
            tracing::info!(series = n, start, end, "admin: series deleted");
        }
        Ok(())
    }
    fn clean_tombstones(&self) -> Result<(), String> {
        self.db
            .clean_tombstones()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn snapshot(&self, skip_head: bool) -> Result<String, String> {
        self.db.snapshot(skip_head).map_err(|e| e.to_string())
    }
}

impl http::AlertmanagerApi for Runtime {
    fn status(&self) -> crate::notify::api::StatusView {
        self.notifier.api_status()
    }
    fn receivers(&self) -> Vec<String> {
        self.notifier.api_receivers()
    }
    fn alerts(
        &self,
        f: &crate::notify::api::AlertFilter,
    ) -> Result<Vec<crate::notify::api::AlertView>, crate::notify::api::ApiError> {
        self.notifier.api_alerts(f)
    }
    fn groups(&self) -> Vec<crate::notify::api::GroupView> {
        self.notifier.api_groups()
    }
    fn post_alerts(
        &self,
        alerts: Vec<crate::notify::api::NewAlert>,
    ) -> Result<(), crate::notify::api::ApiError> {
        self.notifier.api_post_alerts(alerts)
    }
    fn silences(
        &self,
        filters: &[String],
    ) -> Result<Vec<crate::notify::silence::Silence>, crate::notify::api::ApiError> {
        self.notifier.api_silences(filters)
    }
    fn silence(&self, id: &str) -> Option<crate::notify::silence::Silence> {
        self.notifier.api_silence(id)
    }
    fn post_silence(
        &self,
        s: crate::notify::silence::Silence,
    ) -> Result<String, crate::notify::api::ApiError> {
        self.notifier.api_post_silence(s)
    }
    fn expire_silence(&self, id: &str) -> Result<(), crate::notify::api::ApiError> {
        self.notifier.api_expire_silence(id)
    }
}

impl http::RulesSource for Runtime {
    fn rule_groups(&self) -> Vec<crate::rules::manager::GroupSnapshot> {
        self.rules.snapshot()
    }
    fn notifications(&self) -> Vec<crate::notify::notifier::HistoryEntry> {
        self.notifier.history()
    }
    fn send_test(
        &self,
    ) -> futures_util::future::BoxFuture<'_, Vec<crate::notify::notifier::HistoryEntry>> {
        Box::pin(self.notifier.send_test())
    }
}

impl StatusSource for Runtime {
    fn config_yaml(&self) -> String {
        self.config.lock().to_redacted_yaml()
    }
    fn flags(&self) -> Vec<(String, String)> {
        self.flags.clone()
    }
    fn reload_status(&self) -> (bool, i64) {
        (self.last_ok.load(Ordering::Acquire), self.reload_ts.get())
    }
    fn storage_retention(&self) -> String {
        self.config.lock().storage.retention.time.to_string()
    }
    fn tsdb(&self, limit: usize) -> TsdbStats {
        self.db.stats(limit)
    }
    fn grafana(&self) -> serde_json::Value {
        self.grafana.status()
    }
    fn external_labels(&self) -> std::collections::BTreeMap<String, String> {
        self.config.lock().global.external_labels.clone()
    }
    fn lookback_ms(&self) -> i64 {
        crate::promql::EngineOptions::from_config(&self.config.lock().query).lookback_ms
    }
    fn dashboards_dir(&self) -> PathBuf {
        PathBuf::from(&self.config.lock().web.dashboards_dir)
    }
    fn data_dir(&self) -> String {
        let d = self.db.dir();
        std::fs::canonicalize(d)
            .unwrap_or_else(|_| d.to_path_buf())
            .display()
            .to_string()
    }
}

/// The URL the appliance is reached at: `web.external_url`, else `http://<host>:<port>`, as
/// Prometheus defaults its own.
fn external_url(cfg: &Config, listen: &str, host: &str) -> String {
    if cfg.web.external_url.is_empty() {
        format!(
            "http://{host}:{}",
            listen.rsplit(':').next().unwrap_or("8080")
        )
    } else {
        cfg.web.external_url.clone()
    }
}

/// The datasources Grafana gets: Prometheus at `grafana.prometheus_url` (or `prometheus_url`
/// given on the command line, or the appliance), Alertmanager at the appliance; with
/// `protect_reads`, the first read token.
fn grafana_datasources(
    cfg: &Config,
    g: &crate::grafana::GrafanaConfig,
    appliance_url: &str,
    prometheus_url: Option<&str>,
) -> crate::grafana::Datasources {
    let appliance_url = if g.appliance_url.is_empty() {
        appliance_url
    } else {
        &g.appliance_url
    }
    .trim_end_matches('/');
    let prometheus_url = prometheus_url
        .map(str::to_string)
        .or_else(|| (!g.prometheus_url.is_empty()).then(|| g.prometheus_url.clone()))
        .unwrap_or_else(|| appliance_url.to_string());
    crate::grafana::Datasources {
        name: g.datasource_name.clone(),
        prometheus_url,
        appliance_url: appliance_url.to_string(),
        read_token: cfg
            .web
            .auth
            .protect_reads
            .then(|| cfg.web.auth.read_tokens.first())
            .flatten()
            .map(|t| t.expose().to_string()),
        scrape_interval: cfg.global.scrape_interval.to_string(),
    }
}

/// The URL a command on this host reaches the appliance at, from the config `run` would use:
/// its listen address (the loopback address when it listens on all) and route prefix, `https`
/// with `web.tls_config`.
pub fn local_url(config: Option<&std::path::Path>) -> anyhow::Result<String> {
    let cfg = Source::resolve(config).load()?;
    let bind = http::bind_address(&cfg.web.listen_address);
    let (host, port) = bind.rsplit_once(':').unwrap_or(("", "8080"));
    let host = match host {
        "" | "0.0.0.0" | "[::]" | "::" => "127.0.0.1",
        h => h,
    };
    let scheme = if cfg.web.tls_config.is_some() {
        "https"
    } else {
        "http"
    };
    Ok(format!(
        "{scheme}://{host}:{port}{}",
        cfg.web.route_prefix()
    ))
}

/// Options of `appliance grafana provision`.
#[derive(Clone, Debug, Default)]
pub struct ProvisionOptions {
    /// The provisioning directory to write (Grafana's `provisioning/`).
    pub dir: PathBuf,
    /// `--config` (default as for `run`).
    pub config: Option<PathBuf>,
    /// A real Prometheus fed by remote write, for the Prometheus datasource.
    pub prometheus_url: Option<String>,
    /// The appliance's URL as Grafana reaches it (default: the external URL).
    pub appliance_url: Option<String>,
    /// Where Grafana sees the dashboards folder (e.g. inside its container).
    pub dashboards_path: Option<String>,
}

/// `appliance grafana provision`: writes Grafana's provisioning files; returns them.
pub fn grafana_provision(opts: &ProvisionOptions) -> anyhow::Result<Vec<PathBuf>> {
    let source = Source::resolve(opts.config.as_deref());
    let cfg = source.load()?;
    let g = cfg
        .grafana
        .clone()
        .unwrap_or(crate::grafana::GrafanaConfig {
            folder: "Appliance".into(),
            datasource_name: "Appliance".into(),
            ..Default::default()
        });
    let mut g = g;
    if let Some(u) = &opts.appliance_url {
        g.appliance_url = u.clone();
    }
    let appliance_url = external_url(&cfg, &cfg.web.listen_address, &hostname());
    let ds = grafana_datasources(&cfg, &g, &appliance_url, opts.prometheus_url.as_deref());
    let dashboards = crate::config::all_dashboards(std::path::Path::new(&cfg.web.dashboards_dir));
    // A dashboard directory may repeat a shipped uid: the first (the user's) wins.
    let mut seen = std::collections::HashSet::new();
    let dashboards: Vec<(String, Vec<u8>)> = dashboards
        .into_iter()
        .filter(|(_, data)| {
            serde_json::from_slice::<serde_json::Value>(data)
                .ok()
                .and_then(|v| v["uid"].as_str().map(str::to_string))
                .is_none_or(|uid| seen.insert(uid))
        })
        .collect();
    crate::grafana::write_provisioning(
        &opts.dir,
        &ds,
        &g.folder,
        &dashboards,
        opts.dashboards_path.as_deref(),
    )
    .map_err(anyhow::Error::from)
}

/// Gives the pages of freed heap memory back to the system. Cutting a block from the head and
/// compacting build an index of every series (~30 MB at 100k series) and free it; glibc keeps
/// freed pages inside its arenas resident, so each cut left the process that much larger
/// (the soak benchmark's 119 to 147 MiB at the first cut). `malloc_trim` returns them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only returns free pages to the system (madvise); it takes the
    // arenas' locks itself and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

/// Runs the appliance until SIGINT/SIGTERM.
pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let start_ms = chrono::Utc::now().timestamp_millis();
    let source = Source::resolve(opts.config.as_deref());
    let mut cfg = source.load()?;
    if let Some(u) = &opts.external_url {
        cfg.web.external_url = u.clone();
    }
    if let Some(p) = &opts.route_prefix {
        cfg.web.route_prefix = p.clone();
    }
    cfg.web
        .validate()
        .map_err(|e| anyhow::anyhow!("--web.external-url / --web.route-prefix: {e}"))?;
    tracing::info!(config = %source.name(), "starting appliance");
    let data_dir = opts
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&cfg.storage.path));
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;

    let registry = Arc::new(Mutex::new(Registry::default()));
    let replay_start = std::time::Instant::now();
    let db = open_db(&data_dir, &cfg)?;
    tracing::info!(
        series = db.head().stats(1).num_series,
        blocks = db.blocks().len(),
        elapsed_ms = replay_start.elapsed().as_millis() as u64,
        "storage opened: blocks loaded, write-ahead log replayed"
    );
    let head = db.head().clone();
    let scrape_metrics = ScrapeMetrics::default();
    let reload_ok = Gauge::default();
    let reload_ts = Gauge::default();
    {
        let mut reg = registry.lock();
        db.register_metrics(&mut reg);
        scrape_metrics.register(&mut reg);
        reg.register(
            "appliance_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            reload_ok.clone(),
        );
        reg.register(
            "appliance_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            reload_ts.clone(),
        );
    }
    let host = hostname();
    let manager = Arc::new(Manager::new(
        Arc::new(db.clone()),
        scrape_metrics,
        scrape::jitter_seed(&host),
    ));
    let collect_deps = collect::Deps {
        registry: registry.clone(),
    };
    let engine = crate::promql::Engine::new(
        Arc::new(db.clone()),
        crate::promql::EngineOptions::from_config(&cfg.query),
    );
    let listen_addr = opts
        .listen
        .clone()
        .unwrap_or_else(|| cfg.web.listen_address.clone());
    let external_url = external_url(&cfg, &listen_addr, &host);
    let notify_http = {
        let sc: ScrapeConfig =
            serde_saphyr::from_str("job_name: notify\n").context("notifier HTTP client")?;
        crate::scrape::http_client::build(&sc)
            .map_err(|e| anyhow::anyhow!("notifier HTTP client: {e}"))?
    };
    let notifier = crate::notify::notifier::Notifier::new(
        crate::notify::notifier::DeliveryContext {
            external_url: external_url.clone(),
        },
        Some(&data_dir.join("notify")),
    );
    notifier.register_metrics(&mut registry.lock());
    tokio::spawn(notifier.clone().run());
    let external = crate::notify::external::ExternalSender::new(notify_http.clone());
    external.register_metrics(&mut registry.lock());
    crate::model::event::register(&mut registry.lock());
    let sink = Arc::new(NotifySink {
        notifier: notifier.clone(),
        external: external.clone(),
        alert_relabel: Mutex::new(Vec::new()),
        external_labels: Mutex::new(cfg.global.external_labels.clone()),
        external_url: external_url.clone(),
    });
    let rules = crate::rules::manager::Manager::new(crate::rules::group::EvalContext {
        engine: Arc::new(RulesEngine(engine.clone())),
        storage: Arc::new(db.clone()),
        querier: Arc::new(db.clone()),
        sink: sink.clone(),
        external_labels: Default::default(),
        external_url: external_url.clone(),
        resend_delay_ms: 60_000,
        outage_tolerance_ms: 3_600_000,
        for_grace_period_ms: 600_000,
    });
    rules.register_metrics(&mut registry.lock());
    let remote = crate::remote::RemoteWrite::new(crate::remote::Deps {
        wal_dir: data_dir.join("wal"),
        state_dir: data_dir.join("remote_write"),
        querier: Arc::new(db.clone()),
        metadata: Arc::new(TargetMetadata(manager.clone())),
    });
    remote.register_metrics(&mut registry.lock());
    let env_password = std::env::var("APPLIANCE_ADMIN_PASSWORD").ok();
    let (admin_hash, pw_source) =
        http::auth::admin_hash(&cfg.web.auth, &data_dir, env_password.as_deref())
            .context("setting up the admin login")?;
    if let http::auth::Source::Generated(p) = &pw_source {
        // Printed once, to the terminal only (never to the log): afterwards only its hash
        // exists, in the data directory.
        eprintln!(
            "\n  Generated the admin password (user \"admin\"): {p}\n  It is not shown again; \
             set APPLIANCE_ADMIN_PASSWORD or web.auth.admin_password_file to choose one.\n"
        );
    }
    let from = match pw_source {
        http::auth::Source::Env => "APPLIANCE_ADMIN_PASSWORD",
        http::auth::Source::File => "web.auth.admin_password_file",
        http::auth::Source::Stored => "the data directory",
        http::auth::Source::Generated(_) => "generated at this start",
    };
    tracing::info!(password_from = from, "admin login ready");
    let auth = Arc::new(http::auth::Auth::new(admin_hash, &cfg.web.auth));
    let grafana = crate::grafana::sync::GrafanaSync::new()
        .map_err(|e| anyhow::anyhow!("Grafana client: {e}"))?;
    grafana.register_metrics(&mut registry.lock());
    tokio::spawn(grafana.clone().run());
    let collectors_view = CollectorsView::default();
    let exporter_deps = http::ExporterDeps {
        auth: auth.clone(),
        collectors: Arc::new(collectors_view.clone()),
        trusted_proxies: cfg.web.proxies().map_err(anyhow::Error::msg)?,
    };
    let rt = Arc::new(Runtime {
        source,
        notifier: notifier.clone(),
        sink: sink.clone(),
        rules: rules.clone(),
        external_url,
        config: Mutex::new(cfg.clone()),
        manager: manager.clone(),
        db: db.clone(),
        collect_deps,
        host,
        reload_ok: reload_ok.clone(),
        reload_ts: reload_ts.clone(),
        last_ok: AtomicBool::new(true),
        flags: opts.flags.clone(),
        collectors: collectors_view.clone(),
        detected: Mutex::new(Default::default()),
        ports: Mutex::new(Default::default()),
        exporter_deps,
        remote: remote.clone(),
        pushed_metadata: Mutex::new(Default::default()),
        handle: tokio::runtime::Handle::current(),
        hinted: AtomicBool::new(false),
        grafana: grafana.clone(),
    });
    rt.apply(&cfg)?;
    // Services that start after the appliance (a Celery worker, a database) are found by
    // probing again, without a reload.
    let rt_disc = rt.clone();
    tokio::spawn(async move {
        loop {
            let every = rt_disc.config.lock().collectors.discovery_interval.std();
            tokio::time::sleep(every).await;
            let r = rt_disc.clone();
            let _ = tokio::task::spawn_blocking(move || r.rediscover()).await;
        }
    });
    reload_ok.set(1);
    reload_ts.set(chrono::Utc::now().timestamp());

    let ready = Arc::new(AtomicBool::new(false));
    let router = http::router(http::Deps {
        auth,
        route_prefix: cfg.web.route_prefix(),
        base_path: cfg.web.base_path(),
        secure_cookies: cfg.web.secure_cookies(),
        trusted_proxies: cfg.web.proxies().map_err(anyhow::Error::msg)?,
        external_origin: cfg.web.external_origin(),
        remote: rt.clone(),
        querier: Arc::new(db.clone()),
        admin: rt.clone(),
        engine: Arc::new(engine),
        rules: rt.clone(),
        alertmanager: rt.clone(),
        targets: rt.clone(),
        status: rt.clone(),
        reloader: rt.clone(),
        registry: registry.clone(),
        collectors: Arc::new(collectors_view),
        ready: ready.clone(),
        start_ms,
    });
    let listen_flag = opts.listen.as_deref().unwrap_or(&cfg.web.listen_address);
    http::check_listen_address(listen_flag)
        .map_err(|e| anyhow::anyhow!("--listen {listen_flag:?}: {e}"))?;
    let listen = http::bind_address(listen_flag);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(address = %listen, "serving HTTP");

    let rt_hup = rt.clone();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            let r = rt_hup.clone();
            let _ = tokio::task::spawn_blocking(move || r.reload()).await;
        }
    });
    // At most `storage.wal.sync_interval` of acknowledged samples is at risk on a crash.
    let head_sync = head.clone();
    let sync_ms = cfg.storage.wal.sync_interval.as_millis();
    // With 0s every commit syncs; the ticker then only flushes what the log buffered.
    let sync_every =
        std::time::Duration::from_millis(if sync_ms > 0 { sync_ms as u64 } else { 1000 });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(sync_every);
        loop {
            tick.tick().await;
            let h = head_sync.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || h.sync()).await {
                crate::failure!(error, "storage", "wal_sync", error = %e, "syncing the write-ahead log failed");
            }
        }
    });
    // Cut blocks from the head, compact, apply retention: once at start, then every minute
    // (more often with a block duration under 8 minutes, so the head stays near 1.5 blocks).
    let db_gc = db.clone();
    let gc_every = std::time::Duration::from_millis(
        (cfg.storage.block_duration.as_millis() / 8).clamp(1000, 60_000) as u64,
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(gc_every);
        loop {
            tick.tick().await;
            let d = db_gc.clone();
            let _ = tokio::task::spawn_blocking(move || {
                d.maintain();
                release_free_memory();
            })
            .await;
        }
    });

    // Readiness waits (briefly) for the first scrape of the in-process collectors, so the
    // appliance's own target already shows `up` when /-/ready first answers 200.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline
        && manager.active_targets().iter().any(|t| {
            t.scrape_url.starts_with("appliance://") && t.health == scrape::Health::Unknown
        })
    {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    ready.store(true, Ordering::Release);
    // Every block's chunks are checked once in the background; reads check them anyway.
    let db_scrub = db.clone();
    tokio::task::spawn_blocking(move || db_scrub.scrub());
    http::serve::serve(
        listener,
        router,
        cfg.web.tls_config.as_ref(),
        shutdown_signal(),
    )
    .await
    .context("HTTP server")?;
    tracing::info!("shutting down: marking targets stale");
    let stopping = std::time::Instant::now();
    rules.stop();
    remote.stop();
    // The loops write their stale markers as they stop; wait for them (bounded), then sync.
    let loops = futures_util::future::join_all(manager.stop());
    if tokio::time::timeout(std::time::Duration::from_secs(5), loops)
        .await
        .is_err()
    {
        tracing::warn!("some scrape loops did not stop within 5 s");
    }
    let marked_ms = stopping.elapsed().as_millis() as u64;
    head.sync().context("syncing the write-ahead log")?;
    tracing::info!(
        stale_markers_ms = marked_ms,
        total_ms = stopping.elapsed().as_millis() as u64,
        "stopped"
    );
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn db_options(cfg: &Config) -> DbOptions {
    DbOptions {
        retention_ms: cfg.storage.retention.time.as_millis(),
        retention_bytes: cfg.storage.retention.size.0,
        wal_sync_every_commit: cfg.storage.wal.sync_interval.as_millis() == 0,
        block_range_ms: cfg.storage.block_duration.as_millis().max(1000),
    }
}

/// Opens the store, logging what opening found damaged.
fn open_db(data_dir: &std::path::Path, cfg: &Config) -> anyhow::Result<Db> {
    let (db, report) = Db::open(data_dir, db_options(cfg))
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    if let Some(c) = report.wal_corruption {
        crate::failure!(error, "storage", "wal_damaged", problem = %c, "write-ahead log was damaged; replayed up to the damage and cut the rest off");
    }
    for q in report.quarantined {
        tracing::error!(ulid = %q.ulid, reason = %q.reason, path = %q.path, "block quarantined");
    }
    Ok(db)
}

/// `appliance tsdb import openmetrics FILE` (see [`crate::storage::tools::import_openmetrics`]),
/// with the config's storage settings.
pub fn import_openmetrics(
    file: &std::path::Path,
    data_dir: &std::path::Path,
    cfg: &Config,
) -> anyhow::Result<u64> {
    Ok(crate::storage::tools::import_openmetrics(
        file,
        data_dir,
        db_options(cfg),
    )?)
}

/// `appliance tsdb analyze` (see [`crate::storage::tools::analyze`]), with the config's storage
/// settings.
pub fn analyze(data_dir: &std::path::Path, limit: usize, cfg: &Config) -> anyhow::Result<String> {
    Ok(crate::storage::tools::analyze(
        data_dir,
        limit,
        db_options(cfg),
    )?)
}

/// PromQL for rules: instant queries whose result is a vector or a scalar.
struct RulesEngine(crate::promql::Engine);

impl crate::rules::group::RuleEngine for RulesEngine {
    fn query(&self, expr: &str, t_ms: i64) -> Result<Vec<crate::rules::group::RuleSample>, String> {
        use crate::promql::Value;
        match self.0.instant(expr, t_ms).map_err(|e| e.to_string())?.value {
            Value::Vector(v) => Ok(v.into_iter().map(|s| (s.metric, s.f, s.h)).collect()),
            Value::Scalar(f) => Ok(vec![(Labels::default(), f, None)]),
            other => Err(format!(
                "rule result is not a vector or scalar: {}",
                other.type_name()
            )),
        }
    }
}

/// `appliance check rules FILE...`, as `promtool check rules`: 0 when every file is valid, 1
/// when one is not, 3 when only lint problems were found and `lint_fatal` is set.
pub fn check_rules(
    files: &[PathBuf],
    opts: crate::rules::file::ParseOptions,
    lint_fatal: bool,
) -> i32 {
    let mut failed = false;
    let mut lint = false;
    for f in files {
        println!("Checking {}", f.display());
        match crate::rules::file::load(f, opts) {
            Ok(groups) => {
                let n: usize = groups.groups.iter().map(|g| g.rules.len()).sum();
                let dups = crate::rules::file::duplicate_rules(&groups);
                if !dups.is_empty() {
                    lint = true;
                    println!("{} duplicate rule(s) found.", dups.len());
                    for (name, labels) in &dups {
                        println!("Metric: {name}\nLabel(s):");
                        for (k, v) in labels {
                            println!("\t{k}: {v}");
                        }
                    }
                    println!("Might cause inconsistency while recording expressions.");
                }
                println!("  SUCCESS: {n} rules found\n");
            }
            Err(e) => {
                failed = true;
                eprintln!("  FAILED:");
                for line in &e.0 {
                    eprintln!("{line}");
                }
                eprintln!();
            }
        }
    }
    if failed {
        1
    } else if lint && lint_fatal {
        3
    } else {
        0
    }
}

/// `appliance test rules FILE...`, as `promtool test rules`; returns whether all passed.
pub fn test_rules(files: &[PathBuf], opts: &crate::rules::unittest::TestOptions) -> bool {
    use crate::rules::unittest::TestEnv;
    use crate::storage::{Head, HeadOptions};
    let make = |subquery_step_ms: i64| {
        let head = Head::new(HeadOptions::default());
        let engine = crate::promql::Engine::new(
            Arc::new(head.clone()),
            crate::promql::EngineOptions {
                lookback_ms: 5 * 60 * 1000,
                max_samples: 50_000_000,
                timeout: std::time::Duration::from_secs(120),
                default_subquery_step_ms: subquery_step_ms,
                ..Default::default()
            },
        );
        TestEnv {
            storage: Arc::new(head.clone()),
            querier: Arc::new(head),
            engine: Arc::new(RulesEngine(engine)),
        }
    };
    crate::rules::unittest::run_files(
        files,
        opts,
        &make,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
}
