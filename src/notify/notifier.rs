//! The notifier at run time: takes alerts from the rules (through the `AlertSink` app.rs
//! plugs in), runs the dispatcher on a timer, and delivers each notification to every
//! integration of its receiver through the one [`Receiver`] trait, with retries and
//! exponential backoff. Every delivery's outcome is kept in a bounded history (served by the
//! API) and counted in `appliance_notifications_*`. A failing integration never delays the
//! others: each delivery runs in its own task.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::config::NotifyConfig;
use super::dispatch::{Alert, Dispatcher, Notification};

pub use super::receivers::{DeliveryContext, DeliveryError, Receiver};

/// Deliverable integrations by receiver name.
pub type ReceiverMap = HashMap<String, Vec<Arc<dyn Receiver>>>;

/// The receivers of `cfg`, by name, each integration built from its checked config. An
/// integration that cannot be built (a TLS file gone since the check) is an error naming it.
pub fn build_receivers(cfg: &NotifyConfig) -> Result<ReceiverMap, String> {
    let b = super::receivers::Build {
        global: &cfg.global,
        templates: &cfg.template_set,
    };
    let mut out: ReceiverMap = HashMap::new();
    for r in &cfg.receivers {
        let list = out.entry(r.name.clone()).or_default();
        for (i, c) in r.integrations.iter().enumerate() {
            let built = c
                .build(&b)
                .map_err(|e| format!("receiver {:?}: {}_configs[{i}]: {e}", r.name, c.kind()))?;
            list.push(built);
        }
    }
    Ok(out)
}

pub use super::history::HistoryEntry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntegrationLabel {
    integration: String,
}

#[derive(Clone, Default)]
struct Metrics {
    sent: Family<IntegrationLabel, Counter>,
    failed: Family<IntegrationLabel, Counter>,
    requests: Family<IntegrationLabel, Counter>,
    requests_failed: Family<IntegrationLabel, Counter>,
}

pub(super) struct State {
    pub(super) dispatcher: Dispatcher,
    pub(super) config: Option<NotifyConfig>,
    receivers: ReceiverMap,
    /// The configuration as YAML with secrets hidden, for `/api/v2/status`.
    pub(super) original: String,
}

/// The alert name of `send_test`'s notifications.
pub const TEST_ALERT: &str = "ApplianceTestNotification";
/// Labels (and annotations) one posted alert may have.
pub const MAX_ALERT_LABELS: usize = 256;
const ATTEMPTS: u32 = 5;

/// The running notifier.
pub struct Notifier {
    pub(super) state: Mutex<State>,
    history: super::history::History,
    metrics: Metrics,
    ctx: DeliveryContext,
    pub(super) wake: tokio::sync::Notify,
    /// First retry delay; doubles each attempt.
    backoff: StdDuration,
    /// Where the notification log is kept, so a restart neither re-sends nor forgets.
    log_file: Option<std::path::PathBuf>,
    /// Silences.
    pub(super) silences: Mutex<super::silence::Silences>,
    /// Start time (ms), for the status API.
    pub(super) started: i64,
}

impl Notifier {
    /// A notifier delivering through `ctx`, keeping its notification log in `state_dir`.
    pub fn new(ctx: DeliveryContext, state_dir: Option<&std::path::Path>) -> Arc<Notifier> {
        let log_file = state_dir.map(|d| d.join("nflog.json"));
        let mut dispatcher = Dispatcher::default();
        if let Some(f) = &log_file {
            match std::fs::read(f) {
                Ok(b) => match serde_json::from_slice(&b) {
                    Ok(log) => dispatcher.log = log,
                    Err(e) => {
                        crate::failure!(warn, "notify", "nflog_read", file = %f.display(), error = %e, "notification log unreadable; starting empty")
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %f.display(), error = %e, "notification log unreadable; starting empty")
                }
            }
        }
        Arc::new(Notifier {
            log_file,
            silences: Mutex::new(super::silence::Silences::open(
                state_dir.map(|d| d.join("silences.json")),
            )),
            started: chrono::Utc::now().timestamp_millis(),
            state: Mutex::new(State {
                dispatcher,
                config: None,
                receivers: HashMap::new(),
                original: String::new(),
            }),
            history: super::history::History::open(state_dir.map(|d| d.join("history.jsonl"))),
            metrics: Metrics::default(),
            ctx,
            wake: tokio::sync::Notify::new(),
            backoff: StdDuration::from_millis(500),
        })
    }

    /// Registers `appliance_notifications_*`.
    pub fn register_metrics(&self, reg: &mut Registry) {
        let m = &self.metrics;
        reg.register(
            "appliance_notifications",
            "The total number of attempted notifications.",
            m.sent.clone(),
        );
        reg.register(
            "appliance_notifications_failed",
            "The total number of failed notifications (after all retries).",
            m.failed.clone(),
        );
        reg.register(
            "appliance_notification_requests",
            "The total number of attempted notification requests.",
            m.requests.clone(),
        );
        reg.register(
            "appliance_notification_requests_failed",
            "The total number of failed notification requests.",
            m.requests_failed.clone(),
        );
    }

    /// Installs a configuration (None: notifications off, alerts only logged).
    pub fn apply(&self, cfg: Option<NotifyConfig>) {
        let mut st = self.state.lock();
        st.original = cfg
            .as_ref()
            .map(|c| serde_saphyr::to_string(&super::config::redacted(&c.raw)).unwrap_or_default())
            .unwrap_or_default();
        let receivers = match cfg.as_ref().map(build_receivers).transpose() {
            Ok(r) => r.unwrap_or_default(),
            Err(e) => {
                // The check built these too; only a file changed since can fail here. The
                // rest of the config still applies, and the failure is visible.
                crate::failure!(error, "notify", "receiver_build", error = %e, "a receiver could not be built; its notifications fail until the next reload");
                HashMap::new()
            }
        };
        st.receivers = receivers;
        st.config = cfg;
        drop(st);
        self.wake.notify_one();
    }

    /// Whether a configuration is installed.
    pub fn enabled(&self) -> bool {
        self.state.lock().config.is_some()
    }

    /// Takes in alerts (firing or resolved) at `now`.
    pub fn push(&self, alerts: Vec<Alert>, now: i64) {
        let mut st = self.state.lock();
        let Some(cfg) = st.config.clone() else {
            return;
        };
        for a in alerts {
            st.dispatcher.insert(&cfg.route, a, now);
        }
        drop(st);
        self.wake.notify_one();
    }

    /// The delivery history, newest first.
    pub fn history(&self) -> Vec<HistoryEntry> {
        self.history.list()
    }

    /// Runs the dispatch loop until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        loop {
            let now = chrono::Utc::now().timestamp_millis();
            let due = self.state.lock().dispatcher.next_due();
            let wait = match due {
                Some(t) if t <= now => StdDuration::ZERO,
                Some(t) => StdDuration::from_millis((t - now) as u64),
                None => StdDuration::from_secs(3600),
            };
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.wake.notified() => continue,
                }
            }
            let now = chrono::Utc::now().timestamp_millis();
            let jobs = self.flush(now);
            for (n, r) in jobs {
                let me = self.clone();
                let span = tracing::info_span!("delivery", receiver = %n.receiver, integration = r.kind(), group = %n.group_key);
                tokio::spawn(tracing::Instrument::instrument(
                    async move { me.deliver(n, r).await },
                    span,
                ));
            }
        }
    }

    fn flush(&self, now: i64) -> Vec<(Notification, Arc<dyn Receiver>)> {
        let mut st = self.state.lock();
        let Some(cfg) = st.config.clone() else {
            return Vec::new();
        };
        let receivers = st.receivers.clone();
        let integrations = |name: &str| {
            receivers
                .get(name)
                .map(|v| v.iter().map(|r| r.send_resolved()).collect())
                .unwrap_or_default()
        };
        let snapshot = st.dispatcher.alerts();
        let silences = self.silences.lock();
        let muted = |a: &Alert| {
            !silences.muting(&a.labels, now).is_empty()
                || super::dispatch::inhibited(&cfg.inhibit_rules, snapshot.iter(), a, now)
        };
        let before = st.dispatcher.log.clone();
        let in_interval = |name: &str| {
            cfg.time_intervals
                .get(name)
                .is_some_and(|t| super::timeinterval::any_contains(t, now))
        };
        let notes = st
            .dispatcher
            .flush(now, &integrations, &muted, &in_interval);
        if st.dispatcher.log != before {
            self.save_log(&st.dispatcher.log);
        }
        drop(silences);
        let mut out = Vec::new();
        for n in notes {
            match receivers
                .get(&n.receiver)
                .and_then(|v| v.get(n.integration))
            {
                Some(r) => out.push((n, r.clone())),
                // The receiver changed under a reload between flush and here: nothing to
                // deliver to; the group settles and the next flush uses the new receivers.
                None => st.dispatcher.delivered(&n, false),
            }
        }
        out
    }

    fn save_log(&self, log: &HashMap<String, super::dispatch::LogEntry>) {
        let Some(f) = &self.log_file else { return };
        let write = || -> std::io::Result<()> {
            if let Some(d) = f.parent() {
                std::fs::create_dir_all(d)?;
            }
            let tmp = f.with_extension("tmp");
            std::fs::write(&tmp, serde_json::to_vec(log).unwrap_or_default())?;
            std::fs::rename(&tmp, f)
        };
        if let Err(e) = write() {
            crate::failure!(warn, "notify", "nflog_write", file = %f.display(), error = %e, "saving the notification log failed");
        }
    }

    /// Sends one test notification to every integration of every receiver, once each (no
    /// routing, grouping or retries), and returns how each went; each is in the history too.
    /// For `appliance doctor --send-test`.
    pub async fn send_test(&self) -> Vec<HistoryEntry> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut targets: Vec<(String, usize, Arc<dyn Receiver>)> = {
            let st = self.state.lock();
            st.receivers
                .iter()
                .flat_map(|(name, v)| {
                    v.iter()
                        .enumerate()
                        .map(|(i, r)| (name.clone(), i, r.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        targets.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut out = Vec::new();
        for (name, i, r) in targets {
            let labels = crate::model::Labels::from_pairs(vec![
                ("alertname".to_string(), TEST_ALERT.to_string()),
                ("receiver".to_string(), name.clone()),
                ("severity".to_string(), "info".to_string()),
            ]);
            let annotations = BTreeMap::from([
                (
                    "summary".to_string(),
                    "Test notification from appliance doctor --send-test".to_string(),
                ),
                (
                    "description".to_string(),
                    "If you can read this, the appliance reaches this receiver.".to_string(),
                ),
            ]);
            let n = Notification {
                receiver: name.clone(),
                integration: i,
                log_entry: Default::default(),
                group_key: format!("{{}}:{{alertname=\"{TEST_ALERT}\"}}"),
                group_labels: BTreeMap::from([("alertname".to_string(), TEST_ALERT.to_string())]),
                alerts: vec![Alert {
                    labels,
                    annotations,
                    starts_at: now,
                    ends_at: now + 5 * 60 * 1000,
                    generator_url: self.ctx.external_url.clone(),
                }],
                status: "firing",
            };
            let label = IntegrationLabel {
                integration: r.kind().to_string(),
            };
            self.metrics.requests.get_or_create(&label).inc();
            let result = r.deliver(&n, &self.ctx).await;
            if result.is_err() {
                self.metrics.requests_failed.get_or_create(&label).inc();
            }
            let entry = HistoryEntry {
                time: crate::model::time::format_rfc3339(chrono::Utc::now().timestamp_millis()),
                receiver: name,
                integration: r.kind().to_string(),
                target: r.target(),
                group_key: n.group_key.clone(),
                status: "test".into(),
                alerts: vec![format!("{TEST_ALERT}×1")],
                success: result.is_ok(),
                attempts: 1,
                error: result.err().map(|e| e.to_string()).unwrap_or_default(),
            };
            tracing::info!(receiver = %entry.receiver, integration = %entry.integration, success = entry.success, error = %entry.error, "test notification sent");
            self.history.record(entry.clone());
            out.push(entry);
        }
        out
    }

    async fn deliver(&self, n: Notification, r: Arc<dyn Receiver>) {
        let label = IntegrationLabel {
            integration: r.kind().to_string(),
        };
        self.metrics.sent.get_or_create(&label).inc();
        let mut delay = self.backoff;
        let mut last_err = String::new();
        let mut attempts = 0;
        let mut ok = false;
        while attempts < ATTEMPTS {
            attempts += 1;
            self.metrics.requests.get_or_create(&label).inc();
            match r.deliver(&n, &self.ctx).await {
                Ok(()) => {
                    ok = true;
                    break;
                }
                Err(e) => {
                    self.metrics.requests_failed.get_or_create(&label).inc();
                    last_err = e.to_string();
                    if !e.retryable() {
                        tracing::warn!(receiver = %n.receiver, integration = r.kind(), attempt = attempts, error = %e, "notification refused; not retried (the group tries again at its next interval)");
                        break;
                    }
                    tracing::warn!(receiver = %n.receiver, integration = r.kind(), attempt = attempts, error = %e, "notification failed; retrying");
                    if attempts < ATTEMPTS {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        }
        if !ok {
            self.metrics.failed.get_or_create(&label).inc();
            crate::failure!(error, "notify", "delivery", receiver = %n.receiver, integration = r.kind(), error = %last_err, "notification failed after all retries; sent again at the group's next interval");
        }
        // Only a delivered notification enters the log; a failed one is sent again at the
        // group's next flush.
        {
            let mut st = self.state.lock();
            st.dispatcher.delivered(&n, ok);
            if ok {
                self.save_log(&st.dispatcher.log);
            }
        }
        self.wake.notify_one();
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for a in &n.alerts {
            *names
                .entry(a.labels.get("alertname").unwrap_or("").to_string())
                .or_default() += 1;
        }
        let entry = HistoryEntry {
            time: crate::model::time::format_rfc3339(chrono::Utc::now().timestamp_millis()),
            receiver: n.receiver.clone(),
            integration: r.kind().to_string(),
            target: r.target(),
            group_key: n.group_key.clone(),
            status: n.status.to_string(),
            alerts: names.into_iter().map(|(k, c)| format!("{k}×{c}")).collect(),
            success: ok,
            attempts,
            error: if ok { String::new() } else { last_err },
        };
        self.history.record(entry);
    }
}
