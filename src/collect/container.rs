//! The container collector: cAdvisor's families for Docker containers, read from the Docker API
//! (bollard: version negotiation, container list and inspect, the event stream so short-lived
//! changes are seen) and from the cgroup files (v1 and v2), plus what cAdvisor leaves out
//! (state, restart count, health, exit code, OOM kill) as gauges with the same labels.
//!
//! Reads only: it never changes a container, and knows nothing of scraping or storage.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration as StdDuration, Instant};

use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use bollard::Docker;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{CollectError, CollectFuture, Collector, Page, PageBuilder};
use crate::model::exposition::Format;
use crate::model::time::Duration;

/// `collectors.containers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerConfig {
    /// `true` / `false`; left out, the collector runs when the Docker socket answers, looked for at
    /// start, on reload and every `collectors.discovery_interval`; once found it stays on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Overrides the global scrape interval for this collector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<Duration>,
    /// Also answer `GET /metrics` on this address (`:9100`, `host:port`), as the exporter it
    /// replaces does, for an existing Prometheus job; off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_address: Option<String>,
    /// The Docker engine's socket (`unix:///var/run/docker.sock`).
    pub docker_host: String,
    /// The cgroup mount (`/host/sys/fs/cgroup` inside a container).
    pub cgroupfs: String,
    /// procfs, for containers' network counters (`/host/proc` inside a container).
    pub procfs: String,
    /// sysfs, for block device names (`/host/sys` inside a container).
    pub sysfs: String,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        ContainerConfig {
            enabled: None,
            scrape_interval: None,
            listen_address: None,
            docker_host: "unix:///var/run/docker.sock".into(),
            cgroupfs: "/sys/fs/cgroup".into(),
            procfs: "/proc".into(),
            sysfs: "/sys".into(),
        }
    }
}

fn socket_path(host: &str) -> &str {
    host.strip_prefix("unix://").unwrap_or(host)
}

/// Whether a Docker engine answers `GET /_ping` on `host` within a second; used to switch the
/// collector on by itself.
pub fn docker_answers(host: &str) -> bool {
    let ping = || -> std::io::Result<bool> {
        let mut s = std::os::unix::net::UnixStream::connect(socket_path(host))?;
        s.set_read_timeout(Some(StdDuration::from_secs(1)))?;
        s.set_write_timeout(Some(StdDuration::from_secs(1)))?;
        s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf)?;
        let head = String::from_utf8_lossy(&buf[..n]);
        Ok(head.starts_with("HTTP/1.") && head.contains(" 200"))
    };
    ping().unwrap_or(false)
}

/// How long a removed container is still reported (its last state and exit code).
const KEEP_REMOVED: StdDuration = StdDuration::from_secs(60);

/// What is known of one container, from inspect and events.
#[derive(Clone, Debug, Default)]
struct Info {
    name: String,
    image: String,
    labels: BTreeMap<String, String>,
    state: String,
    restart_count: f64,
    health: String,
    exit_code: f64,
    oom_killed: bool,
    /// An `oom` event was seen since the container last started: Docker's own flag can miss
    /// it when the exit is processed before the OOM notification.
    oom_event: bool,
    started_at: Option<f64>,
    pid: i64,
    cgroup_parent: String,
    /// The cgroup path last seen while it ran: cAdvisor's `id` label.
    cgroup: Option<String>,
    /// Changed since the last inspect (an event arrived).
    dirty: bool,
    /// When it was destroyed (or first missing from the list): it is still reported for
    /// `KEEP_REMOVED`, so a scrape sees how a short-lived container ended.
    removed: Option<Instant>,
}

impl Info {
    fn from_attributes(attrs: &HashMap<String, String>) -> Info {
        let mut labels = BTreeMap::new();
        for (k, v) in attrs {
            // Event attributes are the container's labels plus these.
            if !matches!(
                k.as_str(),
                "name" | "image" | "exitCode" | "signal" | "execID"
            ) {
                labels.insert(k.clone(), v.clone());
            }
        }
        Info {
            name: attrs.get("name").cloned().unwrap_or_default(),
            image: attrs.get("image").cloned().unwrap_or_default(),
            labels,
            state: "created".into(),
            health: "none".into(),
            ..Info::default()
        }
    }

    fn from_inspect(c: bollard::models::ContainerInspectResponse, prev: Option<&Info>) -> Info {
        let st = c.state.unwrap_or_default();
        let cfg = c.config.unwrap_or_default();
        let hc = c.host_config.unwrap_or_default();
        Info {
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            image: cfg.image.unwrap_or_default(),
            labels: cfg.labels.unwrap_or_default().into_iter().collect(),
            state: st.status.map(|s| s.to_string()).unwrap_or_default(),
            restart_count: c.restart_count.unwrap_or(0) as f64,
            health: st
                .health
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "none".into()),
            exit_code: st.exit_code.unwrap_or(0) as f64,
            oom_killed: st.oom_killed.unwrap_or(false) || prev.is_some_and(|p| p.oom_event),
            oom_event: prev.is_some_and(|p| p.oom_event),
            started_at: st
                .started_at
                .as_deref()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.timestamp_millis() as f64 / 1000.0)
                .filter(|t| *t > 0.0),
            pid: st.pid.unwrap_or(0),
            cgroup_parent: hc.cgroup_parent.unwrap_or_default(),
            cgroup: prev.and_then(|p| p.cgroup.clone()),
            dirty: false,
            removed: prev.and_then(|p| p.removed),
        }
    }
}

#[derive(Default)]
struct Shared {
    docker: tokio::sync::Mutex<Option<(Docker, bool)>>,
    cache: Mutex<HashMap<String, Info>>,
    events: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(h) = self.events.lock().take() {
            h.abort();
        }
    }
}

/// The container collector (`job="containers"`, `/metrics/containers`).
pub struct ContainerCollector {
    cfg: ContainerConfig,
    shared: Arc<Shared>,
}

impl ContainerCollector {
    /// A collector for the engine and files named in `cfg`.
    pub fn new(cfg: ContainerConfig) -> Self {
        ContainerCollector {
            cfg,
            shared: Arc::new(Shared::default()),
        }
    }

    /// The engine client (API version negotiated) and whether it uses the systemd cgroup
    /// driver; reconnects after a failure.
    async fn docker(&self) -> Result<(Docker, bool), CollectError> {
        let mut g = self.shared.docker.lock().await;
        if let Some(d) = g.as_ref() {
            return Ok(d.clone());
        }
        let fail = |e: bollard::errors::Error| {
            CollectError::Source(format!("docker at {}: {e}", self.cfg.docker_host))
        };
        let d = Docker::connect_with_unix(&self.cfg.docker_host, 10, bollard::API_DEFAULT_VERSION)
            .map_err(fail)?
            .negotiate_version()
            .await
            .map_err(fail)?;
        let systemd = d
            .info()
            .await
            .map_err(fail)?
            .cgroup_driver
            .map(|c| c.to_string() == "systemd")
            .unwrap_or(false);
        *g = Some((d.clone(), systemd));
        Ok((d, systemd))
    }

    fn ensure_events(&self, docker: &Docker) {
        let mut ev = self.shared.events.lock();
        if ev.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        let docker = docker.clone();
        *ev = Some(tokio::spawn(async move {
            let opts = EventsOptions {
                filters: Some(HashMap::from([(
                    "type".to_string(),
                    vec!["container".to_string()],
                )])),
                ..Default::default()
            };
            let mut stream = docker.events(Some(opts));
            while let Some(msg) = stream.next().await {
                let Some(shared) = weak.upgrade() else { return };
                let Ok(msg) = msg else {
                    // Dropped connection: the next collect starts a new stream.
                    *shared.docker.lock().await = None;
                    return;
                };
                let Some(actor) = msg.actor else { continue };
                let (Some(id), attrs) = (actor.id, actor.attributes.unwrap_or_default()) else {
                    continue;
                };
                let action = msg.action.unwrap_or_default();
                let mut cache = shared.cache.lock();
                let e = cache
                    .entry(id)
                    .or_insert_with(|| Info::from_attributes(&attrs));
                e.dirty = true;
                if action == "die" {
                    e.state = "exited".into();
                    if let Some(c) = attrs.get("exitCode").and_then(|c| c.parse::<f64>().ok()) {
                        e.exit_code = c;
                    }
                } else if action == "oom" {
                    e.oom_killed = true;
                    e.oom_event = true;
                } else if action == "start" {
                    e.oom_event = false;
                } else if action == "destroy" {
                    e.removed.get_or_insert_with(Instant::now);
                }
            }
        }));
    }

    async fn refresh(&self, docker: &Docker) -> Result<Vec<(String, Info)>, CollectError> {
        let list = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .map_err(|e| CollectError::Source(format!("listing containers: {e}")))?;
        let mut listed = HashSet::new();
        for s in list {
            let Some(id) = s.id else { continue };
            let state = s.state.map(|x| x.to_string()).unwrap_or_default();
            let stale = {
                let cache = self.shared.cache.lock();
                cache.get(&id).is_none_or(|i| i.dirty || i.state != state)
            };
            listed.insert(id.clone());
            if !stale {
                continue;
            }
            match docker.inspect_container(&id, None).await {
                Ok(c) => {
                    let mut cache = self.shared.cache.lock();
                    let info = Info::from_inspect(c, cache.get(&id));
                    cache.insert(id, info);
                }
                // Removed between list and inspect: what the events said is kept.
                Err(e) => tracing::debug!(id, error = %e, "inspect failed"),
            }
        }
        let mut cache = self.shared.cache.lock();
        for (id, i) in cache.iter_mut() {
            if !listed.contains(id) {
                i.removed.get_or_insert_with(Instant::now);
            }
        }
        cache.retain(|_, i| i.removed.is_none_or(|t| t.elapsed() < KEEP_REMOVED));
        Ok(cache
            .iter()
            .map(|(id, i)| (id.clone(), i.clone()))
            .collect())
    }
}

impl Collector for ContainerCollector {
    fn name(&self) -> &'static str {
        "containers"
    }

    fn collect(&self) -> CollectFuture<'_> {
        Box::pin(async move {
            let t0 = std::time::Instant::now();
            let (docker, systemd) = self.docker().await?;
            self.ensure_events(&docker);
            let infos = match self.refresh(&docker).await {
                Ok(i) => i,
                Err(e) => {
                    *self.shared.docker.lock().await = None;
                    return Err(e);
                }
            };
            let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
            let files = Files {
                cgroupfs: PathBuf::from(&self.cfg.cgroupfs),
                procfs: PathBuf::from(&self.cfg.procfs),
                sysfs: PathBuf::from(&self.cfg.sysfs),
            };
            let shared = self.shared.clone();
            let docker_s = t0.elapsed().as_secs_f64();
            let body = tokio::task::spawn_blocking(move || {
                let t1 = std::time::Instant::now();
                let mut out = PageBuilder::default();
                let mut cgroups_ok = true;
                let v2 = files.cgroupfs.join("cgroup.controllers").exists();
                for (id, mut info) in infos {
                    if info.cgroup.is_none() || info.state == "running" {
                        if let Some(p) = files.cgroup_of_pid(info.pid, v2) {
                            info.cgroup = Some(p);
                        }
                    }
                    let cg = info
                        .cgroup
                        .clone()
                        .unwrap_or_else(|| default_cgroup(&id, &info.cgroup_parent, systemd));
                    if let Some(i) = shared.cache.lock().get_mut(&id) {
                        i.cgroup = Some(cg.clone());
                    }
                    if !files.render(&mut out, &info, &cg, v2, now) {
                        tracing::debug!(
                            container = info.name,
                            cgroup = cg,
                            "cgroup files not found"
                        );
                        cgroups_ok = false;
                    }
                }
                // node_exporter's per-collector self-report, and cAdvisor's error gauge: the
                // engine answered (else the whole scrape fails: up 0), but the cgroup files
                // of a running container may be missing (a wrong `cgroupfs`).
                let ok = |b: bool| if b { 1.0 } else { 0.0 };
                for (c, secs, success) in [
                    ("cgroups", t1.elapsed().as_secs_f64(), cgroups_ok),
                    ("docker", docker_s, true),
                ] {
                    out.add(
                        "container_scrape_collector_duration_seconds",
                        "Duration of a container collector scrape.",
                        "gauge",
                        &[("collector", c)],
                        secs,
                    );
                    out.add(
                        "container_scrape_collector_success",
                        "Whether a container collector succeeded.",
                        "gauge",
                        &[("collector", c)],
                        ok(success),
                    );
                }
                out.add(
                    "container_scrape_error",
                    "1 if there was an error while getting container metrics, 0 otherwise",
                    "gauge",
                    &[],
                    ok(!cgroups_ok),
                );
                out.render()
            })
            .await
            .map_err(|e| CollectError::Encode(e.to_string()))?;
            Ok(Page {
                body: body.into_bytes(),
                format: Format::PrometheusText,
            })
        })
    }
}

/// Where Docker puts a container's cgroup when no process is left to ask.
fn default_cgroup(id: &str, parent: &str, systemd: bool) -> String {
    if systemd {
        let slice = if parent.is_empty() {
            "system.slice"
        } else {
            parent
        };
        format!("/{}/docker-{id}.scope", slice.trim_matches('/'))
    } else {
        let parent = if parent.is_empty() { "/docker" } else { parent };
        format!("/{}/{id}", parent.trim_matches('/'))
    }
}

/// Label names from container labels, as cAdvisor makes them.
fn label_name(k: &str) -> String {
    let s: String = k
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("container_label_{s}")
}

struct Files {
    cgroupfs: PathBuf,
    procfs: PathBuf,
    sysfs: PathBuf,
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn num(p: &Path) -> Option<f64> {
    read(p)?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat).
fn kv(p: &Path) -> HashMap<String, f64> {
    read(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.parse().ok()?))
        })
        .collect()
}

const STATES: [&str; 7] = [
    "created",
    "running",
    "paused",
    "restarting",
    "removing",
    "exited",
    "dead",
];
const HEALTH: [&str; 4] = ["starting", "healthy", "unhealthy", "none"];

/// cgroup v1's "no limit" (PAGE_COUNTER_MAX pages); reported as 0 like v2's `max`.
const V1_UNLIMITED: f64 = 9.2e18;

impl Files {
    /// The process's cgroup path: the memory controller's in v1, the unified one in v2.
    fn cgroup_of_pid(&self, pid: i64, v2: bool) -> Option<String> {
        if pid <= 0 {
            return None;
        }
        let text = read(&self.procfs.join(format!("{pid}/cgroup")))?;
        text.lines().find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
            let hit = if v2 {
                ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| c == "memory")
            };
            hit.then(|| path.to_string())
        })
    }

    /// A v1 controller's directory for `cg` (`cpu` may be mounted as `cpu,cpuacct`).
    fn v1(&self, ctrl: &str, cg: &str) -> PathBuf {
        let rel = cg.trim_start_matches('/');
        for name in [ctrl, "cpu,cpuacct", "cpuacct,cpu"] {
            let d = self.cgroupfs.join(name).join(rel);
            if d.is_dir() {
                return d;
            }
        }
        self.cgroupfs.join(ctrl).join(rel)
    }

    /// `/dev/<name>` of a block device `major:minor`.
    fn device_name(&self, majmin: &str) -> String {
        read(&self.sysfs.join(format!("dev/block/{majmin}/uevent")))
            .and_then(|u| {
                u.lines()
                    .find_map(|l| l.strip_prefix("DEVNAME=").map(|n| format!("/dev/{n}")))
            })
            .unwrap_or_else(|| majmin.to_string())
    }

    /// Writes the container's families; false when it runs but its cgroup files are missing.
    fn render(&self, out: &mut PageBuilder, info: &Info, cg: &str, v2: bool, now: f64) -> bool {
        let mut labels: Vec<(String, String)> = vec![
            ("id".into(), cg.to_string()),
            ("image".into(), info.image.clone()),
            ("name".into(), info.name.clone()),
        ];
        for (k, v) in &info.labels {
            labels.push((label_name(k), v.clone()));
        }
        let base: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // Beyond cAdvisor: for every container, running or not.
        for s in STATES {
            out.add(
                "container_state",
                "Whether the container is in this state (1) or not (0): created, running, paused, restarting, removing, exited or dead.",
                "gauge",
                &with(&base, "state", s),
                if info.state == s { 1.0 } else { 0.0 },
            );
        }
        for h in HEALTH {
            out.add(
                "container_health_status",
                "Whether the container's health check reports this status (1) or not (0); none when it has no health check.",
                "gauge",
                &with(&base, "status", h),
                if info.health == h { 1.0 } else { 0.0 },
            );
        }
        out.add(
            "container_restart_count",
            "Number of times Docker restarted the container under its restart policy.",
            "gauge",
            &base,
            info.restart_count,
        );
        out.add(
            "container_exit_code",
            "Exit code of the container's last run (0 if it has not exited).",
            "gauge",
            &base,
            info.exit_code,
        );
        out.add(
            "container_oom_killed",
            "1 if the kernel's OOM killer stopped the container's last run, else 0.",
            "gauge",
            &base,
            if info.oom_killed { 1.0 } else { 0.0 },
        );
        if !matches!(info.state.as_str(), "running" | "paused" | "restarting") {
            return true;
        }
        // cAdvisor's families: only while the container has a cgroup.
        out.add(
            "container_last_seen",
            "Last time a container was seen by the exporter",
            "gauge",
            &base,
            now,
        );
        if let Some(t) = info.started_at {
            out.add(
                "container_start_time_seconds",
                "Start time of the container since unix epoch in seconds.",
                "gauge",
                &base,
                t,
            );
        }
        let c = if v2 {
            self.read_v2(cg)
        } else {
            self.read_v1(cg)
        };
        if let Some(v) = c.cpu_usage {
            out.add(
                "container_cpu_usage_seconds_total",
                "Cumulative cpu time consumed in seconds.",
                "counter",
                &with(&base, "cpu", "total"),
                v,
            );
        }
        let mut g = |name: &str, help: &str, kind: &'static str, v: Option<f64>| {
            if let Some(v) = v {
                out.add(name, help, kind, &base, v);
            }
        };
        g(
            "container_cpu_user_seconds_total",
            "Cumulative user cpu time consumed in seconds.",
            "counter",
            c.cpu_user,
        );
        g(
            "container_cpu_system_seconds_total",
            "Cumulative system cpu time consumed in seconds.",
            "counter",
            c.cpu_system,
        );
        let quota = c.quota.filter(|q| *q > 0.0);
        if quota.is_some() {
            g(
                "container_cpu_cfs_periods_total",
                "Number of elapsed enforcement period intervals.",
                "counter",
                c.cfs_periods,
            );
            g(
                "container_cpu_cfs_throttled_periods_total",
                "Number of throttled period intervals.",
                "counter",
                c.cfs_throttled,
            );
            g(
                "container_cpu_cfs_throttled_seconds_total",
                "Total time duration the container has been throttled.",
                "counter",
                c.cfs_throttled_s,
            );
        }
        g(
            "container_spec_cpu_quota",
            "CPU quota of the container.",
            "gauge",
            quota,
        );
        g(
            "container_spec_cpu_period",
            "CPU period of the container.",
            "gauge",
            c.period,
        );
        g(
            "container_spec_cpu_shares",
            "CPU share of the container.",
            "gauge",
            c.shares,
        );
        g(
            "container_memory_usage_bytes",
            "Current memory usage in bytes, including all memory regardless of when it was accessed",
            "gauge",
            c.mem_usage,
        );
        g(
            "container_memory_working_set_bytes",
            "Current working set in bytes.",
            "gauge",
            c.mem_usage
                .map(|u| (u - c.inactive_file.unwrap_or(0.0)).max(0.0)),
        );
        g(
            "container_memory_rss",
            "Size of RSS in bytes.",
            "gauge",
            c.rss,
        );
        g(
            "container_memory_cache",
            "Number of bytes of page cache memory.",
            "gauge",
            c.cache,
        );
        g(
            "container_memory_swap",
            "Container swap usage in bytes.",
            "gauge",
            c.swap,
        );
        g(
            "container_memory_mapped_file",
            "Size of memory mapped files in bytes.",
            "gauge",
            c.mapped_file,
        );
        g(
            "container_memory_max_usage_bytes",
            "Maximum memory usage recorded in bytes",
            "gauge",
            c.mem_max_usage,
        );
        g(
            "container_memory_failcnt",
            "Number of memory usage hits limits",
            "counter",
            c.failcnt,
        );
        g(
            "container_spec_memory_limit_bytes",
            "Memory limit for the container.",
            "gauge",
            c.mem_limit,
        );
        g(
            "container_processes",
            "Number of processes running inside the container.",
            "gauge",
            c.processes,
        );
        for (dev, r, w) in &c.io {
            let dev = self.device_name(dev);
            let l = with(&base, "device", dev.as_str());
            out.add(
                "container_fs_reads_bytes_total",
                "Cumulative count of bytes read",
                "counter",
                &l,
                *r,
            );
            out.add(
                "container_fs_writes_bytes_total",
                "Cumulative count of bytes written",
                "counter",
                &l,
                *w,
            );
        }
        self.network(out, info.pid, &base);
        // A container that stopped since the list is not an error; a live one without
        // cgroup files means `cgroupfs` points at the wrong place.
        c.cpu_usage.is_some() || !self.procfs.join(info.pid.to_string()).exists()
    }

    fn network(&self, out: &mut PageBuilder, pid: i64, base: &[(&str, &str)]) {
        if pid <= 0 {
            return;
        }
        let Some(text) = read(&self.procfs.join(format!("{pid}/net/dev"))) else {
            return;
        };
        // (column in /proc/net/dev, family, help)
        const COLS: [(usize, &str, &str); 8] = [
            (
                0,
                "receive_bytes_total",
                "Cumulative count of bytes received",
            ),
            (
                1,
                "receive_packets_total",
                "Cumulative count of packets received",
            ),
            (
                2,
                "receive_errors_total",
                "Cumulative count of errors encountered while receiving",
            ),
            (
                3,
                "receive_packets_dropped_total",
                "Cumulative count of packets dropped while receiving",
            ),
            (
                8,
                "transmit_bytes_total",
                "Cumulative count of bytes transmitted",
            ),
            (
                9,
                "transmit_packets_total",
                "Cumulative count of packets transmitted",
            ),
            (
                10,
                "transmit_errors_total",
                "Cumulative count of errors encountered while transmitting",
            ),
            (
                11,
                "transmit_packets_dropped_total",
                "Cumulative count of packets dropped while transmitting",
            ),
        ];
        for (dev, v) in super::net_dev(&text) {
            // cAdvisor leaves out the same interfaces.
            if ["lo", "veth", "docker", "nerdctl"]
                .iter()
                .any(|p| dev.starts_with(p))
            {
                continue;
            }
            let mut l = base.to_vec();
            l.push(("interface", dev));
            for (i, name, help) in COLS {
                out.add(
                    &format!("container_network_{name}"),
                    help,
                    "counter",
                    &l,
                    v.get(i).copied().unwrap_or(0.0),
                );
            }
        }
    }

    fn read_v1(&self, cg: &str) -> CgroupStats {
        let cpuacct = self.v1("cpuacct", cg);
        let cpu = self.v1("cpu", cg);
        let mem = self.v1("memory", cg);
        let stat = kv(&cpuacct.join("cpuacct.stat"));
        let cfs = kv(&cpu.join("cpu.stat"));
        let ms = kv(&mem.join("memory.stat"));
        let limit =
            num(&mem.join("memory.limit_in_bytes"))
                .map(|l| if l >= V1_UNLIMITED { 0.0 } else { l });
        let mut io = Vec::new();
        let mut acc: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for l in read(&self.v1("blkio", cg).join("blkio.throttle.io_service_bytes"))
            .unwrap_or_default()
            .lines()
        {
            let f: Vec<&str> = l.split_whitespace().collect();
            if let [dev, op, v] = f[..] {
                let v: f64 = v.parse().unwrap_or(0.0);
                let e = acc.entry(dev.to_string()).or_default();
                match op {
                    "Read" => e.0 += v,
                    "Write" => e.1 += v,
                    _ => {}
                }
            }
        }
        for (d, (r, w)) in acc {
            io.push((d, r, w));
        }
        CgroupStats {
            cpu_usage: num(&cpuacct.join("cpuacct.usage")).map(|ns| ns / 1e9),
            cpu_user: stat.get("user").map(|t| t / 100.0),
            cpu_system: stat.get("system").map(|t| t / 100.0),
            cfs_periods: cfs.get("nr_periods").copied(),
            cfs_throttled: cfs.get("nr_throttled").copied(),
            cfs_throttled_s: cfs.get("throttled_time").map(|ns| ns / 1e9),
            quota: num(&cpu.join("cpu.cfs_quota_us")),
            period: num(&cpu.join("cpu.cfs_period_us")),
            shares: num(&cpu.join("cpu.shares")),
            mem_usage: num(&mem.join("memory.usage_in_bytes")),
            mem_max_usage: num(&mem.join("memory.max_usage_in_bytes")),
            failcnt: num(&mem.join("memory.failcnt")),
            mem_limit: limit,
            rss: ms.get("total_rss").copied(),
            cache: ms.get("total_cache").copied(),
            swap: ms.get("total_swap").copied(),
            mapped_file: ms.get("total_mapped_file").copied(),
            inactive_file: ms.get("total_inactive_file").copied(),
            processes: count_lines(&self.v1("pids", cg).join("cgroup.procs"))
                .or_else(|| count_lines(&cpu.join("cgroup.procs"))),
            io,
        }
    }

    fn read_v2(&self, cg: &str) -> CgroupStats {
        let d = self.cgroupfs.join(cg.trim_start_matches('/'));
        let cpu = kv(&d.join("cpu.stat"));
        let ms = kv(&d.join("memory.stat"));
        let events = kv(&d.join("memory.events"));
        let (quota, period) = match read(&d.join("cpu.max")) {
            Some(t) => {
                let mut f = t.split_whitespace();
                let q = f.next().and_then(|q| q.parse::<f64>().ok());
                let p = f.next().and_then(|p| p.parse::<f64>().ok());
                (q, p)
            }
            None => (None, None),
        };
        // cAdvisor converts cgroup v2's weight back to v1 shares.
        let shares =
            num(&d.join("cpu.weight")).map(|w| 2.0 + ((w - 1.0) * 262142.0 / 9999.0).floor());
        let limit = read(&d.join("memory.max")).map(|m| m.trim().parse::<f64>().unwrap_or(0.0));
        let mut io = Vec::new();
        for l in read(&d.join("io.stat")).unwrap_or_default().lines() {
            let mut f = l.split_whitespace();
            let Some(dev) = f.next() else { continue };
            let (mut r, mut w) = (0.0, 0.0);
            for kv in f {
                match kv.split_once('=') {
                    Some(("rbytes", v)) => r = v.parse().unwrap_or(0.0),
                    Some(("wbytes", v)) => w = v.parse().unwrap_or(0.0),
                    _ => {}
                }
            }
            io.push((dev.to_string(), r, w));
        }
        CgroupStats {
            cpu_usage: cpu.get("usage_usec").map(|u| u / 1e6),
            cpu_user: cpu.get("user_usec").map(|u| u / 1e6),
            cpu_system: cpu.get("system_usec").map(|u| u / 1e6),
            cfs_periods: cpu.get("nr_periods").copied(),
            cfs_throttled: cpu.get("nr_throttled").copied(),
            cfs_throttled_s: cpu.get("throttled_usec").map(|u| u / 1e6),
            quota,
            period,
            shares,
            mem_usage: num(&d.join("memory.current")),
            mem_max_usage: num(&d.join("memory.peak")),
            failcnt: events.get("max").copied(),
            mem_limit: limit,
            rss: ms.get("anon").copied(),
            cache: ms.get("file").copied(),
            swap: num(&d.join("memory.swap.current")),
            mapped_file: ms.get("file_mapped").copied(),
            inactive_file: ms.get("inactive_file").copied(),
            processes: count_lines(&d.join("cgroup.procs")),
            io,
        }
    }
}

/// `base` plus one label.
fn with<'a>(base: &[(&'a str, &'a str)], k: &'a str, v: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut l = base.to_vec();
    l.push((k, v));
    l
}

fn count_lines(p: &Path) -> Option<f64> {
    read(p).map(|t| t.lines().filter(|l| !l.trim().is_empty()).count() as f64)
}

#[derive(Default)]
struct CgroupStats {
    cpu_usage: Option<f64>,
    cpu_user: Option<f64>,
    cpu_system: Option<f64>,
    cfs_periods: Option<f64>,
    cfs_throttled: Option<f64>,
    cfs_throttled_s: Option<f64>,
    quota: Option<f64>,
    period: Option<f64>,
    shares: Option<f64>,
    mem_usage: Option<f64>,
    mem_max_usage: Option<f64>,
    failcnt: Option<f64>,
    mem_limit: Option<f64>,
    rss: Option<f64>,
    cache: Option<f64>,
    swap: Option<f64>,
    mapped_file: Option<f64>,
    inactive_file: Option<f64>,
    processes: Option<f64>,
    /// (major:minor, bytes read, bytes written)
    io: Vec<(String, f64, f64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef";

    fn page(version: &str, cg: &str) -> String {
        let root =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/collect/testdata/containers");
        let d = root.join(version);
        let files = Files {
            cgroupfs: d.join("cgroup"),
            procfs: d.join("proc"),
            sysfs: d.join("sys"),
        };
        let info = Info {
            name: "shop-web-1".into(),
            image: "shop/web:1.2".into(),
            labels: BTreeMap::from([
                ("com.docker.compose.service".into(), "web".into()),
                ("com.docker.compose.project".into(), "shop".into()),
            ]),
            state: "running".into(),
            restart_count: 1.0,
            health: "healthy".into(),
            pid: 101,
            started_at: Some(1_700_000_000.0),
            ..Info::default()
        };
        let v2 = files.cgroupfs.join("cgroup.controllers").exists();
        assert_eq!(v2, version == "v2");
        let mut out = PageBuilder::default();
        assert!(files.render(&mut out, &info, cg, v2, 1_700_000_100.0));
        out.render()
    }

    fn values(page: &str) -> BTreeMap<String, String> {
        page.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, v) = l.rsplit_once(' ')?;
                let name = series.split('{').next()?;
                let extra = ["device=", "interface=", "state=", "status="]
                    .iter()
                    .filter_map(|k| series.split(k).nth(1))
                    .map(|r| r.split('"').nth(1).unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(",");
                Some((format!("{name}{{{extra}}}"), v.to_string()))
            })
            .collect()
    }

    #[test]
    fn cgroup_v1_and_v2_trees_give_the_golden_page() {
        let v1 = page("v1", &format!("/docker/{ID}"));
        let v2 = page("v2", &format!("/system.slice/docker-{ID}.scope"));
        let both = format!("# cgroup v1\n{v1}# cgroup v2\n{v2}");
        crate::testsupport::assert_golden("src/collect/testdata/containers/golden.prom", &both);
        // The trees describe the same container: v1 and v2 agree except where the
        // kernel interfaces differ (v2's limit is `max`, its weight maps to other shares).
        let (a, b) = (values(&v1), values(&v2));
        for (k, v) in &a {
            if k.starts_with("container_spec_memory_limit_bytes")
                || k.starts_with("container_spec_cpu_shares")
            {
                continue;
            }
            assert_eq!(b.get(k), Some(v), "{k}");
        }
        assert_eq!(a["container_spec_memory_limit_bytes{}"], "6.7108864e+07");
        assert_eq!(b["container_spec_memory_limit_bytes{}"], "0");
        assert_eq!(a["container_memory_working_set_bytes{}"], "9.437184e+06");
        assert_eq!(a["container_fs_reads_bytes_total{/dev/vda}"], "4096");
        assert_eq!(a["container_network_receive_bytes_total{eth0}"], "123456");
        assert!(!a.contains_key("container_network_receive_bytes_total{lo}"));
        assert!(v1.contains("container_label_com_docker_compose_service=\"web\""));
    }

    #[test]
    fn stopped_containers_report_state_but_no_cgroup_families() {
        let files = Files {
            cgroupfs: "/nonexistent".into(),
            procfs: "/nonexistent".into(),
            sysfs: "/nonexistent".into(),
        };
        let info = Info {
            name: "job".into(),
            state: "exited".into(),
            exit_code: 3.0,
            oom_killed: true,
            health: "none".into(),
            ..Info::default()
        };
        let mut out = PageBuilder::default();
        assert!(files.render(&mut out, &info, "/docker/x", false, 0.0));
        // Running, its process alive, but no cgroup files where they are looked for.
        let files = Files {
            procfs: "/proc".into(),
            ..files
        };
        let running = Info {
            state: "running".into(),
            pid: i64::from(std::process::id()),
            ..info.clone()
        };
        let mut scratch = PageBuilder::default();
        assert!(!files.render(&mut scratch, &running, "/docker/x", false, 0.0));
        // Its process gone since the list: it just stopped, not an error.
        let gone = Info {
            pid: i64::MAX,
            ..running
        };
        assert!(files.render(&mut scratch, &gone, "/docker/x", false, 0.0));
        let p = out.render();
        assert!(p.contains("container_exit_code{id=\"/docker/x\",image=\"\",name=\"job\"} 3"));
        assert!(p.contains("container_oom_killed{id=\"/docker/x\",image=\"\",name=\"job\"} 1"));
        assert!(p.contains("state=\"exited\"} 1"));
        assert!(!p.contains("container_cpu_usage_seconds_total"));
    }

    #[test]
    fn an_oom_event_outlives_dockers_missing_flag() {
        let r = bollard::models::ContainerInspectResponse {
            state: Some(bollard::models::ContainerState {
                oom_killed: Some(false),
                exit_code: Some(137),
                ..Default::default()
            }),
            ..Default::default()
        };
        let prev = Info {
            oom_event: true,
            ..Info::default()
        };
        assert!(Info::from_inspect(r.clone(), Some(&prev)).oom_killed);
        assert!(!Info::from_inspect(r, None).oom_killed);
    }

    #[test]
    fn cgroup_paths_and_label_names_follow_docker_and_cadvisor() {
        assert_eq!(default_cgroup("abc", "", false), "/docker/abc");
        assert_eq!(
            default_cgroup("abc", "", true),
            "/system.slice/docker-abc.scope"
        );
        assert_eq!(default_cgroup("abc", "/ci", false), "/ci/abc");
        assert_eq!(
            label_name("com.docker.compose.service"),
            "container_label_com_docker_compose_service"
        );
        let attrs = HashMap::from([
            ("name".to_string(), "x".to_string()),
            ("image".to_string(), "busybox".to_string()),
            ("exitCode".to_string(), "7".to_string()),
            ("com.docker.compose.service".to_string(), "job".to_string()),
        ]);
        let i = Info::from_attributes(&attrs);
        assert_eq!((i.name.as_str(), i.image.as_str()), ("x", "busybox"));
        assert_eq!(i.labels.len(), 1);
    }
}
