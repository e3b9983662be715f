//! The Celery collector, read from the broker (Redis): queue lengths (priority sub-queues
//! counted) and, from the event stream workers publish with `-E`, worker liveness and task
//! counters in the names of the widely used celery-exporter (danihodovic/celery-exporter).
//!
//! Subscribes and reads only; it never sends a task or a control command.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration as StdDuration, Instant};

use base64::Engine as _;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{CollectError, CollectFuture, Collector, Page, PageBuilder};
use crate::model::exposition::Format;
use crate::model::time::Duration;

/// `collectors.celery`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CeleryConfig {
    /// `true` / `false`; left out, the collector runs when the broker answers and holds
    /// Celery's keys, looked for at start, on reload and every
    /// `collectors.discovery_interval`; once found it stays on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Overrides the global scrape interval for this collector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<Duration>,
    /// Also answer `GET /metrics` on this address (`:9100`, `host:port`), as the exporter it
    /// replaces does, for an existing Prometheus job; off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_address: Option<String>,
    /// The broker; empty means `$CELERY_BROKER_URL`, else `$REDIS_URL`, else
    /// `redis://127.0.0.1:6379/0`.
    pub broker_url: crate::model::SecretUrl,
    /// Queues whose length is reported besides those found in the broker's bindings and in
    /// task-sent events.
    pub queues: Vec<String>,
    /// `celery_task_runtime_seconds` buckets (celery-exporter's defaults).
    pub buckets: Vec<f64>,
}

impl Default for CeleryConfig {
    fn default() -> Self {
        CeleryConfig {
            enabled: None,
            scrape_interval: None,
            listen_address: None,
            broker_url: Default::default(),
            queues: Vec::new(),
            buckets: vec![
                0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
            ],
        }
    }
}

impl CeleryConfig {
    /// `enabled` in effect before detection: a user who names a broker or queues has
    /// configured Celery, and the collector then runs (and reports `up 0` while the broker
    /// fails) instead of waiting to find Celery's keys.
    pub fn switch(&self) -> Option<bool> {
        self.enabled
            .or_else(|| (!self.broker_url.is_empty() || !self.queues.is_empty()).then_some(true))
    }

    /// The broker URL in effect.
    pub fn effective_broker(&self) -> String {
        if !self.broker_url.is_empty() {
            return self.broker_url.expose().to_string();
        }
        std::env::var("CELERY_BROKER_URL")
            .or_else(|_| std::env::var("REDIS_URL"))
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
    }
}

/// Kombu's separator between a queue's name and its priority.
const PRIORITY_SEP: &str = "\x06\x16";
/// Celery's `HEARTBEAT_EXPIRE_WINDOW` (200 %): a worker is alive until two heartbeat
/// intervals pass without one.
const EXPIRE_FACTOR: f64 = 2.0;
/// How many tasks' name and queue are remembered to label later events of the same task.
const REMEMBERED_TASKS: usize = 100_000;

/// The task event types counted, as `celery_task_<kind>_total`, with celery-exporter's HELP.
const TASK_EVENTS: &[(&str, &str)] = &[
    ("sent", "Sent when a task message is published."),
    ("received", "Sent when the worker receives a task."),
    ("started", "Sent just before the worker executes the task."),
    ("succeeded", "Sent if the task executed successfully."),
    ("failed", "Sent if the execution of the task failed."),
    ("rejected", "The task was rejected by the worker, possibly to be re-queued or moved to a dead letter queue."),
    ("revoked", "Sent if the task has been revoked."),
    ("retried", "Sent if the task failed, but will be retried in the future."),
];

/// (name, hostname, queue_name)
type TaskKey = (String, String, String);

#[derive(Default)]
struct Worker {
    last: Option<Instant>,
    freq: f64,
    active: f64,
    offline: bool,
}

#[derive(Default)]
struct State {
    counters: BTreeMap<(&'static str, TaskKey), f64>,
    runtime: BTreeMap<TaskKey, (Vec<f64>, f64, f64)>,
    tasks: HashMap<String, (String, String)>,
    order: VecDeque<String>,
    /// Keyed by the full worker name (`w1@host`).
    workers: BTreeMap<String, Worker>,
    queues: BTreeSet<String>,
}

/// celery-exporter's `get_hostname`: the part after `@`.
fn short_host(h: &str) -> String {
    h.rsplit_once('@').map(|(_, h)| h).unwrap_or(h).to_string()
}

impl State {
    fn event(&mut self, e: &serde_json::Value, buckets: &[f64], now: Instant) {
        let s = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let kind = s("type");
        let hostname = s("hostname");
        if let Some(w) = kind.strip_prefix("worker-") {
            let wk = self.workers.entry(hostname.to_string()).or_default();
            match w {
                "offline" => wk.offline = true,
                "online" | "heartbeat" => {
                    wk.offline = false;
                    wk.last = Some(now);
                    wk.freq = e.get("freq").and_then(|f| f.as_f64()).unwrap_or(2.0);
                    wk.active = e.get("active").and_then(|a| a.as_f64()).unwrap_or(0.0);
                }
                _ => {}
            }
            return;
        }
        let Some(t) = kind.strip_prefix("task-") else {
            return;
        };
        let Some((kind, _)) = TASK_EVENTS.iter().find(|(k, _)| *k == t) else {
            return;
        };
        let uuid = s("uuid").to_string();
        let known = self.tasks.get(&uuid).cloned();
        let name = match s("name") {
            "" => known.as_ref().map(|k| k.0.clone()).unwrap_or_default(),
            n => n.to_string(),
        };
        // Only task-sent and task-received carry the name; a later event of a task received
        // before the collector started (or forgotten) would count under `name=""`.
        if name.is_empty() {
            return;
        }
        let queue = match (s("queue"), s("routing_key")) {
            ("", "") => known
                .as_ref()
                .map(|k| k.1.clone())
                .unwrap_or_else(|| "celery".into()),
            ("", rk) => rk.to_string(),
            (q, _) => q.to_string(),
        };
        if !uuid.is_empty() && known.as_ref() != Some(&(name.clone(), queue.clone())) {
            if known.is_none() {
                self.order.push_back(uuid.clone());
                if self.order.len() > REMEMBERED_TASKS {
                    if let Some(old) = self.order.pop_front() {
                        self.tasks.remove(&old);
                    }
                }
            }
            self.tasks.insert(uuid, (name.clone(), queue.clone()));
        }
        if *kind == "sent" {
            self.queues.insert(queue.clone());
        }
        let key = (name, short_host(hostname), queue);
        *self.counters.entry((kind, key.clone())).or_default() += 1.0;
        if *kind == "succeeded" {
            if let Some(rt) = e.get("runtime").and_then(|r| r.as_f64()) {
                let h = self
                    .runtime
                    .entry(key)
                    .or_insert_with(|| (vec![0.0; buckets.len()], 0.0, 0.0));
                for (i, b) in buckets.iter().enumerate() {
                    if rt <= *b {
                        h.0[i] += 1.0;
                    }
                }
                h.1 += rt;
                h.2 += 1.0;
            }
        }
    }

    fn render(&self, out: &mut PageBuilder, buckets: &[f64], now: Instant) {
        for ((kind, (name, host, queue)), v) in &self.counters {
            let help = TASK_EVENTS
                .iter()
                .find(|(k, _)| k == kind)
                .map(|(_, h)| *h)
                .unwrap_or("");
            out.add(
                &format!("celery_task_{kind}_total"),
                help,
                "counter",
                &[("hostname", host), ("name", name), ("queue_name", queue)],
                *v,
            );
        }
        let le: Vec<String> = buckets.iter().map(|b| super::num(*b)).collect();
        for ((name, host, queue), (counts, sum, count)) in &self.runtime {
            let l = [
                ("hostname", host.as_str()),
                ("name", name.as_str()),
                ("queue_name", queue.as_str()),
            ];
            let bs: Vec<(String, f64)> = le.iter().cloned().zip(counts.iter().copied()).collect();
            out.histogram(
                "celery_task_runtime_seconds",
                "Histogram of task runtime measurements.",
                &l,
                &bs,
                *sum,
                *count,
            );
        }
        // Per host, as celery-exporter labels workers: alive if any worker there is.
        let mut hosts: BTreeMap<String, (bool, f64)> = BTreeMap::new();
        for (name, w) in &self.workers {
            let alive = !w.offline
                && w.last.is_some_and(|t| {
                    now.duration_since(t).as_secs_f64() < w.freq.max(0.1) * EXPIRE_FACTOR
                });
            let e = hosts.entry(short_host(name)).or_default();
            e.0 |= alive;
            if alive {
                e.1 += w.active;
            }
        }
        // Present with no worker at all (after a restart with every worker dead), so that
        // "no worker" is a value an alert can see rather than a missing series.
        out.add(
            "celery_workers",
            "The number of workers that have sent a heartbeat recently.",
            "gauge",
            &[],
            hosts.values().filter(|(up, _)| *up).count() as f64,
        );
        for (host, (up, active)) in hosts {
            out.add(
                "celery_worker_up",
                "Indicates if a worker has recently sent a heartbeat.",
                "gauge",
                &[("hostname", &host)],
                if up { 1.0 } else { 0.0 },
            );
            out.add(
                "celery_worker_tasks_active",
                "The number of tasks the worker is currently processing",
                "gauge",
                &[("hostname", &host)],
                active,
            );
        }
    }
}

/// One message from the event fanout: kombu's envelope around one event or a list of them.
fn decode(payload: &[u8]) -> Vec<serde_json::Value> {
    let Ok(env) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return Vec::new();
    };
    let body = env.get("body").and_then(|b| b.as_str()).unwrap_or("");
    let base64 = env
        .pointer("/properties/body_encoding")
        .and_then(|e| e.as_str())
        == Some("base64");
    let bytes = if base64 {
        match base64::engine::general_purpose::STANDARD.decode(body) {
            Ok(b) => b,
            Err(_) => return Vec::new(),
        }
    } else {
        body.as_bytes().to_vec()
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Array(v)) => v,
        Ok(v @ serde_json::Value::Object(_)) => vec![v],
        _ => Vec::new(),
    }
}

struct Shared {
    state: Mutex<State>,
    events: Mutex<Option<tokio::task::JoinHandle<()>>>,
    conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(h) = self.events.lock().take() {
            h.abort();
        }
    }
}

/// The Celery collector (`job="celery"`, `/metrics/celery`).
pub struct CeleryCollector {
    client: Result<redis::Client, String>,
    db: i64,
    cfg: CeleryConfig,
    shared: Arc<Shared>,
}

/// Whether the broker answers and holds Celery's keys (kombu's bindings or the default
/// queue); for auto-detection.
pub fn present(cfg: &CeleryConfig) -> bool {
    let url = cfg.effective_broker();
    std::thread::spawn(move || {
        let Ok(client) = redis::Client::open(url.as_str()) else {
            return false;
        };
        let Ok(mut c) = client.get_connection_with_timeout(StdDuration::from_secs(2)) else {
            return false;
        };
        let _ = c.set_read_timeout(Some(StdDuration::from_secs(2)));
        let queue: bool = redis::cmd("EXISTS")
            .arg("celery")
            .query(&mut c)
            .unwrap_or(false);
        queue || has_bindings(&mut c)
    })
    .join()
    .unwrap_or(false)
}

/// Whether kombu's binding keys exist, looked for with `SCAN` (never `KEYS`, which blocks
/// the server for as long as it walks the whole key space), at most 64 steps of 1,000 keys.
fn has_bindings(c: &mut redis::Connection) -> bool {
    let mut cursor: u64 = 0;
    for _ in 0..64 {
        let Ok((next, keys)): Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("_kombu.binding.*")
            .arg("COUNT")
            .arg(1000)
            .query(c)
        else {
            return false;
        };
        if !keys.is_empty() {
            return true;
        }
        if next == 0 {
            return false;
        }
        cursor = next;
    }
    false
}

impl CeleryCollector {
    /// A collector for `cfg`'s broker.
    pub fn new(cfg: &CeleryConfig) -> Self {
        let client = redis::Client::open(cfg.effective_broker().as_str())
            .map_err(|e| format!("celery broker url: {e}"));
        let db = client
            .as_ref()
            .map(|c| c.get_connection_info().redis_settings().db())
            .unwrap_or(0);
        CeleryCollector {
            client,
            db,
            cfg: cfg.clone(),
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                events: Mutex::new(None),
                conn: tokio::sync::Mutex::new(None),
            }),
        }
    }

    fn ensure_events(&self, client: &redis::Client) {
        let mut ev = self.shared.events.lock();
        if ev.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        let client = client.clone();
        let patterns = [format!("/{}.celeryev/*", self.db), "celeryev*".to_string()];
        let buckets = self.cfg.buckets.clone();
        *ev = Some(tokio::spawn(async move {
            let mut ps = match client.get_async_pubsub().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(error = %e, "celery events: subscribe failed");
                    return;
                }
            };
            for p in &patterns {
                if let Err(e) = ps.psubscribe(p).await {
                    tracing::debug!(error = %e, "celery events: psubscribe failed");
                    return;
                }
            }
            let mut stream = ps.into_on_message();
            while let Some(msg) = stream.next().await {
                let Some(shared) = weak.upgrade() else { return };
                let now = Instant::now();
                let mut st = shared.state.lock();
                for e in decode(msg.get_payload_bytes()) {
                    st.event(&e, &buckets, now);
                }
            }
        }));
    }

    async fn queue_lengths(&self, client: &redis::Client) -> Result<Vec<(String, f64)>, String> {
        let mut guard = self.shared.conn.lock().await;
        if guard.is_none() {
            let cfg = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(StdDuration::from_secs(5)))
                .set_response_timeout(Some(StdDuration::from_secs(5)));
            *guard = Some(
                client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await
                    .map_err(|e| format!("celery broker: {e}"))?,
            );
        }
        let Some(conn) = guard.as_mut() else {
            return Ok(Vec::new());
        };
        let bindings: Vec<String> = redis::cmd("SMEMBERS")
            .arg("_kombu.binding.celery")
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        let mut queues: BTreeSet<String> = self.cfg.queues.iter().cloned().collect();
        for b in bindings {
            // routing_key SEP pattern SEP queue
            if let Some(q) = b.rsplit(PRIORITY_SEP).next().filter(|q| !q.is_empty()) {
                queues.insert(q.to_string());
            }
        }
        queues.extend(self.shared.state.lock().queues.iter().cloned());
        if queues.is_empty() {
            // Celery's default queue, before any worker has declared it: its length is
            // reported (0) so a broker without workers is visible.
            queues.insert("celery".to_string());
        }
        let mut pipe = redis::pipe();
        for q in &queues {
            pipe.cmd("LLEN").arg(q);
            for p in 0..=9 {
                pipe.cmd("LLEN").arg(format!("{q}{PRIORITY_SEP}{p}"));
            }
        }
        let lens: Vec<i64> = pipe.query_async(conn).await.map_err(|e| e.to_string())?;
        Ok(queues
            .into_iter()
            .zip(lens.chunks(11))
            .map(|(q, l)| (q, l.iter().sum::<i64>() as f64))
            .collect())
    }
}

impl Collector for CeleryCollector {
    fn name(&self) -> &'static str {
        "celery"
    }

    fn collect(&self) -> CollectFuture<'_> {
        Box::pin(async move {
            let client = self.client.clone().map_err(CollectError::Source)?;
            self.ensure_events(&client);
            let lengths = match self.queue_lengths(&client).await {
                Ok(l) => l,
                Err(e) => {
                    *self.shared.conn.lock().await = None;
                    return Err(CollectError::Source(e));
                }
            };
            let mut out = PageBuilder::default();
            for (q, n) in lengths {
                out.add(
                    "celery_queue_length",
                    "The number of message in broker queue.",
                    "gauge",
                    &[("queue_name", &q)],
                    n,
                );
            }
            self.shared
                .state
                .lock()
                .render(&mut out, &self.cfg.buckets, Instant::now());
            Ok(Page {
                body: out.render().into_bytes(),
                format: Format::PrometheusText,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(e: serde_json::Value) -> Vec<u8> {
        let body = base64::engine::general_purpose::STANDARD.encode(e.to_string());
        json!({"body": body, "content-type": "application/json", "properties": {"body_encoding": "base64"}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn events_count_tasks_and_keep_workers_alive() {
        let mut st = State::default();
        let b = CeleryConfig::default().buckets;
        let t0 = Instant::now();
        let evs = [
            json!({"type": "worker-online", "hostname": "w1@box", "freq": 2.0, "active": 0}),
            json!({"type": "task-sent", "hostname": "gen1@web", "uuid": "a", "name": "app.add", "queue": "q1"}),
            json!({"type": "task-received", "hostname": "w1@box", "uuid": "a", "name": "app.add"}),
            json!({"type": "task-started", "hostname": "w1@box", "uuid": "a"}),
            json!({"type": "task-succeeded", "hostname": "w1@box", "uuid": "a", "runtime": 0.02}),
            json!({"type": "task-received", "hostname": "w1@box", "uuid": "b", "name": "app.boom"}),
            json!({"type": "task-failed", "hostname": "w1@box", "uuid": "b"}),
            json!({"type": "worker-heartbeat", "hostname": "w1@box", "freq": 2.0, "active": 3}),
            // A task received before the collector started: no name to count it under.
            json!({"type": "task-succeeded", "hostname": "w1@box", "uuid": "old", "runtime": 0.5}),
            json!({"type": "task-failed", "hostname": "w1@box", "uuid": "old2"}),
        ];
        for e in evs {
            for d in decode(&envelope(e)) {
                st.event(&d, &b, t0);
            }
        }
        let mut out = PageBuilder::default();
        st.render(&mut out, &b, t0 + StdDuration::from_secs(1));
        let p = out.render();
        for want in [
            "celery_task_sent_total{hostname=\"web\",name=\"app.add\",queue_name=\"q1\"} 1\n",
            "celery_task_started_total{hostname=\"box\",name=\"app.add\",queue_name=\"q1\"} 1\n",
            "celery_task_succeeded_total{hostname=\"box\",name=\"app.add\",queue_name=\"q1\"} 1\n",
            "celery_task_failed_total{hostname=\"box\",name=\"app.boom\",queue_name=\"celery\"} 1\n",
            "celery_task_runtime_seconds_bucket{hostname=\"box\",le=\"0.025\",name=\"app.add\",queue_name=\"q1\"} 1\n",
            "celery_task_runtime_seconds_bucket{hostname=\"box\",le=\"0.01\",name=\"app.add\",queue_name=\"q1\"} 0\n",
            "celery_task_runtime_seconds_count{hostname=\"box\",name=\"app.add\",queue_name=\"q1\"} 1\n",
            "celery_worker_up{hostname=\"box\"} 1\n",
            "celery_worker_tasks_active{hostname=\"box\"} 3\n",
            "celery_workers 1\n",
        ] {
            assert!(p.contains(want), "missing {want:?} in\n{p}");
        }
        assert!(
            !p.contains("name=\"\""),
            "a series without a task name:\n{p}"
        );
        // Two heartbeat intervals without one: down.
        let mut out = PageBuilder::default();
        st.render(&mut out, &b, t0 + StdDuration::from_secs(5));
        assert!(out
            .render()
            .contains("celery_worker_up{hostname=\"box\"} 0\n"));
        // An offline event: down at once.
        st.event(
            &json!({"type": "worker-heartbeat", "hostname": "w1@box", "freq": 2.0}),
            &b,
            t0,
        );
        st.event(
            &json!({"type": "worker-offline", "hostname": "w1@box"}),
            &b,
            t0,
        );
        let mut out = PageBuilder::default();
        st.render(&mut out, &b, t0);
        assert!(out
            .render()
            .contains("celery_worker_up{hostname=\"box\"} 0\n"));
    }

    #[test]
    fn no_worker_ever_seen_is_a_zero_not_a_missing_series() {
        let mut out = PageBuilder::default();
        State::default().render(&mut out, &CeleryConfig::default().buckets, Instant::now());
        assert!(out.render().contains("celery_workers 0\n"));
    }

    #[test]
    fn naming_a_broker_or_queues_turns_the_collector_on() {
        let mut c = CeleryConfig::default();
        assert_eq!(c.switch(), None, "left to detection");
        c.queues = vec!["emails".into()];
        assert_eq!(c.switch(), Some(true));
        let c: CeleryConfig =
            serde_json::from_value(json!({"broker_url": "redis://127.0.0.1:6379/3"})).unwrap();
        assert_eq!(c.switch(), Some(true));
        let c: CeleryConfig = serde_json::from_value(
            json!({"broker_url": "redis://127.0.0.1:6379/3", "enabled": false}),
        )
        .unwrap();
        assert_eq!(c.switch(), Some(false));
    }

    #[test]
    fn garbage_payloads_are_ignored() {
        assert!(decode(b"not json").is_empty());
        assert!(
            decode(br#"{"body": "%%%", "properties": {"body_encoding": "base64"}}"#).is_empty()
        );
        assert_eq!(decode(br#"{"body": "[{\"type\": \"x\"}]"}"#).len(), 1);
    }
}
