//! The rule manager: loads `rule_files`, runs each group on its interval in its own task,
//! keeps the state of unchanged rules across reloads, restores `for` state after a restart,
//! exposes snapshots for the API and evaluation metrics.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;

use super::file::{self, ParseOptions};
use super::group::{Alert, EvalContext, Group, RuleHealth, RuleKind};
use crate::model::time::Duration;

/// The `rules` config section: Prometheus's `--rules.*` flags.
#[derive(Clone, Debug, PartialEq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Restore `for` state only from `ALERTS_FOR_STATE` this recent (default 1h).
    pub for_outage_tolerance: Duration,
    /// Minimum pending time left after a restore (default 10m).
    pub for_grace_period: Duration,
    /// Resend firing alerts this often (default 1m).
    pub resend_delay: Duration,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            for_outage_tolerance: Duration::from_secs(3600),
            for_grace_period: Duration::from_secs(600),
            resend_delay: Duration::from_secs(60),
        }
    }
}

/// A group's state as the API shows it.
#[derive(Clone, Debug)]
pub struct GroupSnapshot {
    /// Name.
    pub name: String,
    /// File.
    pub file: String,
    /// Interval (s).
    pub interval_s: f64,
    /// Limit.
    pub limit: usize,
    /// Last evaluation (ms; 0 = never).
    pub last_eval_ms: i64,
    /// Its duration (s).
    pub eval_seconds: f64,
    /// Rules.
    pub rules: Vec<RuleSnapshot>,
}

/// A rule's state as the API shows it.
#[derive(Clone, Debug)]
pub struct RuleSnapshot {
    /// `record` or `alert` name.
    pub name: String,
    /// Expression.
    pub query: String,
    /// Alerting (true) or recording.
    pub alerting: bool,
    /// `for` (s).
    pub for_s: f64,
    /// `keep_firing_for` (s).
    pub keep_firing_for_s: f64,
    /// Labels (rule and group).
    pub labels: BTreeMap<String, String>,
    /// Annotation templates.
    pub annotations: BTreeMap<String, String>,
    /// Active alerts.
    pub alerts: Vec<Alert>,
    /// Health.
    pub health: RuleHealth,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    rule_group: String,
}

#[derive(Clone, Default)]
struct Metrics {
    last_duration: Family<GroupLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    last_eval: Family<GroupLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    interval: Family<GroupLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    missed: Family<GroupLabel, Counter>,
    iterations: Family<GroupLabel, Counter>,
    evaluations: Family<GroupLabel, Counter>,
    failures: Family<GroupLabel, Counter>,
    rules: Family<GroupLabel, Gauge>,
}

struct Running {
    group: Arc<Mutex<Group>>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs rule groups.
pub struct Manager {
    ctx: Mutex<EvalContext>,
    groups: Mutex<Vec<Running>>,
    metrics: Metrics,
}

/// The files matching `rule_files` patterns (globs in the last path component).
pub fn resolve_files(patterns: &[String], base: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in patterns {
        let path = base.join(p);
        let found = crate::model::files::glob_paths(&path);
        if found.is_empty() {
            tracing::warn!(pattern = %p, "rule_files pattern matches no file");
        }
        out.extend(found);
    }
    out.sort();
    out.dedup();
    out
}

impl Manager {
    /// A manager evaluating through `ctx`.
    pub fn new(ctx: EvalContext) -> Arc<Manager> {
        Arc::new(Manager {
            ctx: Mutex::new(ctx),
            groups: Mutex::new(Vec::new()),
            metrics: Metrics::default(),
        })
    }

    /// Registers `appliance_rule_*` metrics.
    pub fn register_metrics(&self, reg: &mut Registry) {
        let m = &self.metrics;
        reg.register(
            "appliance_rule_group_last_duration_seconds",
            "The duration of the last rule group evaluation.",
            m.last_duration.clone(),
        );
        reg.register(
            "appliance_rule_group_last_evaluation_timestamp_seconds",
            "The timestamp of the last rule group evaluation in seconds.",
            m.last_eval.clone(),
        );
        reg.register(
            "appliance_rule_group_interval_seconds",
            "The interval of a rule group.",
            m.interval.clone(),
        );
        reg.register(
            "appliance_rule_group_iterations_missed",
            "The total number of rule group evaluations missed due to slow rule group evaluation.",
            m.missed.clone(),
        );
        reg.register(
            "appliance_rule_group_iterations",
            "The total number of scheduled rule group evaluations, whether executed or missed.",
            m.iterations.clone(),
        );
        reg.register(
            "appliance_rule_evaluations",
            "The total number of rule evaluations.",
            m.evaluations.clone(),
        );
        reg.register(
            "appliance_rule_evaluation_failures",
            "The total number of rule evaluation failures.",
            m.failures.clone(),
        );
        reg.register(
            "appliance_rule_group_rules",
            "The number of rules.",
            m.rules.clone(),
        );
    }

    /// Loads and validates `files` into groups, without touching the running ones.
    pub fn load(files: &[PathBuf], default_interval_ms: i64) -> Result<Vec<Group>, String> {
        let mut groups = Vec::new();
        for f in files {
            let parsed = file::load(f, ParseOptions::default()).map_err(|e| e.to_string())?;
            for g in &parsed.groups {
                groups.push(Group::new(g, &f.display().to_string(), default_interval_ms));
            }
        }
        Ok(groups)
    }

    /// Parses and validates rule-file texts (`(name, text)`, e.g. the embedded defaults) into
    /// groups, as [`Manager::load`] does for files.
    pub fn load_texts(
        texts: &[(&str, &str)],
        default_interval_ms: i64,
    ) -> Result<Vec<Group>, String> {
        let mut groups = Vec::new();
        for (name, text) in texts {
            let parsed =
                file::parse(text, name, ParseOptions::default()).map_err(|e| e.to_string())?;
            for g in &parsed.groups {
                groups.push(Group::new(g, name, default_interval_ms));
            }
        }
        Ok(groups)
    }

    /// Replaces the running groups with `new_groups` (from [`Manager::load`]). Unchanged
    /// rules keep their state (pending times, alerts); removed groups' alerts go stale.
    pub fn install(
        self: &Arc<Self>,
        new_groups: Vec<Group>,
        external_labels: BTreeMap<String, String>,
        external_url: String,
        cfg: &RulesConfig,
    ) {
        {
            let mut ctx = self.ctx.lock();
            ctx.external_labels = external_labels;
            ctx.external_url = external_url;
            ctx.for_grace_period_ms = cfg.for_grace_period.as_millis();
            ctx.outage_tolerance_ms = cfg.for_outage_tolerance.as_millis();
            ctx.resend_delay_ms = cfg.resend_delay.as_millis();
        }
        let mut running = self.groups.lock();
        let mut old: HashMap<(String, String), Running> = running
            .drain(..)
            .map(|r| {
                let key = {
                    let g = r.group.lock();
                    (g.file.clone(), g.name.clone())
                };
                (key, r)
            })
            .collect();
        for mut g in new_groups {
            let mut adopted = false;
            if let Some(o) = old.remove(&(g.file.clone(), g.name.clone())) {
                o.task.abort();
                g.adopt_state(&mut o.group.lock());
                adopted = true;
            }
            let label = GroupLabel {
                rule_group: format!("{};{}", g.file, g.name),
            };
            self.metrics
                .interval
                .get_or_create(&label)
                .set(g.interval_ms as f64 / 1000.0);
            self.metrics
                .rules
                .get_or_create(&label)
                .set(g.rules.len() as i64);
            let group = Arc::new(Mutex::new(g));
            let task = tokio::spawn(self.clone().run_group(group.clone(), label, adopted));
            running.push(Running { group, task });
        }
        for (_, o) in old {
            o.task.abort();
            // Alerts of a removed group are resolved: mark their series stale.
            let ctx = self.ctx.lock().clone();
            let now = chrono::Utc::now().timestamp_millis();
            let mut g = o.group.lock();
            let mut app = ctx.storage.appender();
            for r in &g.rules {
                if let RuleKind::Alerting(_) = r.kind {
                    for a in r.alerts() {
                        for (name, state) in [("ALERTS", Some(a.state)), ("ALERTS_FOR_STATE", None)]
                        {
                            let mut b = a.labels.builder();
                            b.set(crate::model::METRIC_NAME.into(), name.into());
                            if let Some(s) = state {
                                b.set("alertstate".into(), s.as_str().into());
                            }
                            let _ = app.append(&b.labels(), now, crate::model::stale_nan());
                        }
                    }
                }
            }
            let _ = app.commit();
            g.rules.clear();
        }
    }

    async fn run_group(
        self: Arc<Self>,
        group: Arc<Mutex<Group>>,
        label: GroupLabel,
        adopted: bool,
    ) {
        let interval = group.lock().interval_ms.max(1);
        // Prometheus spreads groups over the interval by a hash of their identity.
        let mut h = crate::model::labels::Fnv64::default();
        h.write(label.rule_group.as_bytes());
        let offset = (h.finish() % interval as u64) as i64;
        let mut restored = adopted;
        loop {
            // The first evaluation waits for the group's next slot, as Prometheus's does, so
            // the first scrapes after a start are in before alerts are judged and restored.
            let now = chrono::Utc::now().timestamp_millis();
            let ts = now - (now - offset).rem_euclid(interval) + interval;
            tokio::time::sleep(std::time::Duration::from_millis((ts - now).max(0) as u64)).await;
            let ctx = self.ctx.lock().clone();
            let g2 = group.clone();
            let m = self.metrics.clone();
            let l2 = label.clone();
            let span = tracing::info_span!("rule_group", group = %label.rule_group);
            let res = tokio::task::spawn_blocking(move || {
                let _enter = span.enter();
                let mut g = g2.lock();
                let before_missed = g.missed_iterations;
                let before_fail = g.failures;
                let before_evals = g.evaluations;
                let errs = g.eval(ts, &ctx);
                if !restored {
                    g.restore_for_state(ts, &ctx);
                }
                m.last_duration.get_or_create(&l2).set(g.last_duration_s);
                m.last_eval.get_or_create(&l2).set(ts as f64 / 1000.0);
                m.iterations
                    .get_or_create(&l2)
                    .inc_by(1 + g.missed_iterations - before_missed);
                m.missed
                    .get_or_create(&l2)
                    .inc_by(g.missed_iterations - before_missed);
                m.evaluations
                    .get_or_create(&l2)
                    .inc_by(g.evaluations - before_evals);
                m.failures
                    .get_or_create(&l2)
                    .inc_by(g.failures - before_fail);
                errs
            })
            .await;
            restored = true;
            if let Ok(errs) = res {
                for e in errs {
                    crate::failure!(warn, "rules", "evaluation", group = %label.rule_group, error = %e, "rule evaluation failed");
                }
            }
        }
    }

    /// Stops every group.
    pub fn stop(&self) {
        for r in self.groups.lock().drain(..) {
            r.task.abort();
        }
    }

    /// Every group's state, in file and group order.
    pub fn snapshot(&self) -> Vec<GroupSnapshot> {
        self.groups
            .lock()
            .iter()
            .map(|r| {
                let g = r.group.lock();
                GroupSnapshot {
                    name: g.name.clone(),
                    file: g.file.clone(),
                    interval_s: g.interval_ms as f64 / 1000.0,
                    limit: g.limit,
                    last_eval_ms: g.last_eval_ms,
                    eval_seconds: g.last_duration_s,
                    rules: g
                        .rules
                        .iter()
                        .map(|r| RuleSnapshot {
                            name: r.def.name().to_string(),
                            query: r.def.expr.clone(),
                            alerting: matches!(r.kind, RuleKind::Alerting(_)),
                            for_s: r.def.for_.map(|d| d.as_millis()).unwrap_or(0) as f64 / 1000.0,
                            keep_firing_for_s: r
                                .def
                                .keep_firing_for
                                .map(|d| d.as_millis())
                                .unwrap_or(0) as f64
                                / 1000.0,
                            labels: r.labels.clone(),
                            annotations: r.def.annotations.clone(),
                            alerts: r.alerts(),
                            health: r.health.clone(),
                        })
                        .collect(),
                }
            })
            .collect()
    }
}
