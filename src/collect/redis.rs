//! The Redis collector: redis_exporter 1.45's families, labels, types and HELP texts, from
//! `INFO ALL` (server, clients, memory, persistence, stats, replication, CPU, command and
//! latency stats, error stats, keyspace), `CONFIG GET` and `SLOWLOG`, over one multiplexed
//! connection per instance kept across scrapes (the redis crate; `rediss://` through rustls).
//!
//! Reads only; a slow or dead server is `redis_up 0` within the collector's timeout.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use serde::{Deserialize, Serialize};

use super::{CollectError, CollectFuture, Collector, Page, PageBuilder};
use crate::model::exposition::Format;
use crate::model::time::Duration;

/// `collectors.redis`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `true` / `false`; left out, the collector runs when an instance answers, looked for at
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
    /// The servers; empty means `$REDIS_URL`, else `redis://127.0.0.1:6379`.
    pub instances: Vec<RedisInstance>,
    /// How long one instance may take (connect plus commands) before it counts as down.
    pub timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            enabled: None,
            scrape_interval: None,
            listen_address: None,
            instances: Vec::new(),
            timeout: Duration::from_millis(5000),
        }
    }
}

/// One server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisInstance {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…` for TLS.
    pub url: crate::model::SecretUrl,
    /// A file holding the password (read at every connect), instead of one in the URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password_file: String,
}

impl RedisConfig {
    /// The configured instances, or the local default.
    pub fn effective_instances(&self) -> Vec<RedisInstance> {
        if !self.instances.is_empty() {
            return self.instances.clone();
        }
        vec![RedisInstance {
            url: std::env::var("REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
                .into(),
            password_file: String::new(),
        }]
    }
}

/// INFO fields exported as gauges, and their metric names (redis_exporter 1.45's map).
const GAUGES: &[(&str, &str)] = &[
    ("uptime_in_seconds", "uptime_in_seconds"),
    ("process_id", "process_id"),
    ("io_threads_active", "io_threads_active"),
    ("connected_clients", "connected_clients"),
    ("blocked_clients", "blocked_clients"),
    ("tracking_clients", "tracking_clients"),
    ("clients_in_timeout_table", "clients_in_timeout_table"),
    ("client_longest_output_list", "client_longest_output_list"),
    ("client_biggest_input_buf", "client_biggest_input_buf"),
    (
        "client_recent_max_output_buffer",
        "client_recent_max_output_buffer_bytes",
    ),
    (
        "client_recent_max_input_buffer",
        "client_recent_max_input_buffer_bytes",
    ),
    ("allocator_active", "allocator_active_bytes"),
    ("allocator_allocated", "allocator_allocated_bytes"),
    ("allocator_resident", "allocator_resident_bytes"),
    ("allocator_frag_ratio", "allocator_frag_ratio"),
    ("allocator_frag_bytes", "allocator_frag_bytes"),
    ("allocator_rss_ratio", "allocator_rss_ratio"),
    ("allocator_rss_bytes", "allocator_rss_bytes"),
    ("used_memory", "memory_used_bytes"),
    ("used_memory_rss", "memory_used_rss_bytes"),
    ("used_memory_peak", "memory_used_peak_bytes"),
    ("used_memory_lua", "memory_used_lua_bytes"),
    ("used_memory_overhead", "memory_used_overhead_bytes"),
    ("used_memory_startup", "memory_used_startup_bytes"),
    ("used_memory_dataset", "memory_used_dataset_bytes"),
    ("used_memory_scripts", "memory_used_scripts_bytes"),
    ("number_of_cached_scripts", "number_of_cached_scripts"),
    ("maxmemory", "memory_max_bytes"),
    ("maxmemory_reservation", "memory_max_reservation_bytes"),
    (
        "maxmemory_desired_reservation",
        "memory_max_reservation_desired_bytes",
    ),
    (
        "maxfragmentationmemory_reservation",
        "memory_max_fragmentation_reservation_bytes",
    ),
    (
        "maxfragmentationmemory_desired_reservation",
        "memory_max_fragmentation_reservation_desired_bytes",
    ),
    ("mem_fragmentation_ratio", "mem_fragmentation_ratio"),
    ("mem_fragmentation_bytes", "mem_fragmentation_bytes"),
    ("mem_clients_slaves", "mem_clients_slaves"),
    ("mem_clients_normal", "mem_clients_normal"),
    ("expired_stale_perc", "expired_stale_percentage"),
    (
        "mem_not_counted_for_evict",
        "mem_not_counted_for_eviction_bytes",
    ),
    ("lazyfree_pending_objects", "lazyfree_pending_objects"),
    ("active_defrag_running", "active_defrag_running"),
    ("migrate_cached_sockets", "migrate_cached_sockets_total"),
    ("active_defrag_hits", "defrag_hits"),
    ("active_defrag_misses", "defrag_misses"),
    ("active_defrag_key_hits", "defrag_key_hits"),
    ("active_defrag_key_misses", "defrag_key_misses"),
    (
        "expired_time_cap_reached_count",
        "expired_time_cap_reached_total",
    ),
    ("loading", "loading_dump_file"),
    ("rdb_changes_since_last_save", "rdb_changes_since_last_save"),
    ("rdb_bgsave_in_progress", "rdb_bgsave_in_progress"),
    ("rdb_last_save_time", "rdb_last_save_timestamp_seconds"),
    ("rdb_last_bgsave_status", "rdb_last_bgsave_status"),
    ("rdb_last_bgsave_time_sec", "rdb_last_bgsave_duration_sec"),
    (
        "rdb_current_bgsave_time_sec",
        "rdb_current_bgsave_duration_sec",
    ),
    ("rdb_last_cow_size", "rdb_last_cow_size_bytes"),
    ("aof_enabled", "aof_enabled"),
    ("aof_rewrite_in_progress", "aof_rewrite_in_progress"),
    ("aof_rewrite_scheduled", "aof_rewrite_scheduled"),
    ("aof_last_rewrite_time_sec", "aof_last_rewrite_duration_sec"),
    (
        "aof_current_rewrite_time_sec",
        "aof_current_rewrite_duration_sec",
    ),
    ("aof_last_cow_size", "aof_last_cow_size_bytes"),
    ("aof_last_bgrewrite_status", "aof_last_bgrewrite_status"),
    ("aof_last_write_status", "aof_last_write_status"),
    ("module_fork_in_progress", "module_fork_in_progress"),
    ("module_fork_last_cow_size", "module_fork_last_cow_size"),
    ("pubsub_channels", "pubsub_channels"),
    ("pubsub_patterns", "pubsub_patterns"),
    ("latest_fork_usec", "latest_fork_usec"),
    ("tracking_total_keys", "tracking_total_keys"),
    ("tracking_total_items", "tracking_total_items"),
    ("tracking_total_prefixes", "tracking_total_prefixes"),
    ("connected_slaves", "connected_slaves"),
    ("repl_backlog_size", "replication_backlog_bytes"),
    ("repl_backlog_active", "repl_backlog_is_active"),
    (
        "repl_backlog_first_byte_offset",
        "repl_backlog_first_byte_offset",
    ),
    ("repl_backlog_histlen", "repl_backlog_history_bytes"),
    ("master_repl_offset", "master_repl_offset"),
    ("second_repl_offset", "second_repl_offset"),
    ("slave_expires_tracked_keys", "slave_expires_tracked_keys"),
    ("slave_priority", "slave_priority"),
    ("sync_full", "replica_resyncs_full"),
    ("sync_partial_ok", "replica_partial_resync_accepted"),
    ("sync_partial_err", "replica_partial_resync_denied"),
    ("cluster_stats_messages_sent", "cluster_messages_sent_total"),
    (
        "cluster_stats_messages_received",
        "cluster_messages_received_total",
    ),
];

/// INFO fields exported as counters.
const COUNTERS: &[(&str, &str)] = &[
    ("total_connections_received", "connections_received_total"),
    ("total_commands_processed", "commands_processed_total"),
    ("rejected_connections", "rejected_connections_total"),
    ("total_net_input_bytes", "net_input_bytes_total"),
    ("total_net_output_bytes", "net_output_bytes_total"),
    ("expired_keys", "expired_keys_total"),
    ("evicted_keys", "evicted_keys_total"),
    ("keyspace_hits", "keyspace_hits_total"),
    ("keyspace_misses", "keyspace_misses_total"),
    ("used_cpu_sys", "cpu_sys_seconds_total"),
    ("used_cpu_user", "cpu_user_seconds_total"),
    ("used_cpu_sys_children", "cpu_sys_children_seconds_total"),
    ("used_cpu_user_children", "cpu_user_children_seconds_total"),
    (
        "used_cpu_sys_main_thread",
        "cpu_sys_main_thread_seconds_total",
    ),
    (
        "used_cpu_user_main_thread",
        "cpu_user_main_thread_seconds_total",
    ),
    ("unexpected_error_replies", "unexpected_error_replies"),
    ("total_error_replies", "total_error_replies"),
    ("dump_payload_sanitizations", "dump_payload_sanitizations"),
    ("total_reads_processed", "total_reads_processed"),
    ("total_writes_processed", "total_writes_processed"),
    ("io_threaded_reads_processed", "io_threaded_reads_processed"),
    (
        "io_threaded_writes_processed",
        "io_threaded_writes_processed",
    ),
];

/// redis_exporter's value parsing: `ok`/`true` are 1, `err`/`fail`/`false` 0.
fn value(v: &str) -> f64 {
    match v {
        "ok" | "true" => 1.0,
        "err" | "fail" | "false" => 0.0,
        _ => v.parse().unwrap_or(0.0),
    }
}

/// `a=1,b=2` pairs.
fn pairs(v: &str) -> HashMap<&str, &str> {
    v.split(',').filter_map(|p| p.split_once('=')).collect()
}

/// Per-command statistics, gathered from Commandstats and Latencystats.
#[derive(Default)]
struct CmdStats {
    calls: f64,
    usec: f64,
    rejected: f64,
    failed: f64,
    percentiles: Vec<(String, f64)>,
}

/// Writes the families `INFO ALL` gives; `databases` is the `databases` setting (every db
/// gets `db_keys`, 0 when absent from the keyspace). Returns the INFO fields by name.
fn info_families(out: &mut PageBuilder, info: &str, databases: u32) -> HashMap<String, String> {
    let gauges: HashMap<&str, &str> = GAUGES.iter().copied().collect();
    let counters: HashMap<&str, &str> = COUNTERS.iter().copied().collect();
    let mut kv = HashMap::new();
    let mut section = String::new();
    let mut cmds: BTreeMap<String, CmdStats> = BTreeMap::new();
    let mut dbs_seen = std::collections::HashSet::new();
    let (mut master_host, mut master_port) = (String::new(), String::new());
    for line in info.lines() {
        let line = line.trim();
        if let Some(s) = line.strip_prefix("# ") {
            section = s.to_string();
            continue;
        }
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        kv.insert(key.to_string(), val.to_string());
        match key {
            "master_host" => master_host = val.to_string(),
            "master_port" => master_port = val.to_string(),
            _ => {}
        }
        match section.as_str() {
            "Replication" => {
                let ml = [
                    ("master_host", master_host.as_str()),
                    ("master_port", master_port.as_str()),
                ];
                match key {
                    "master_link_status" => {
                        out.add(
                            "redis_master_link_up",
                            "Master link status on Redis slave",
                            "gauge",
                            &ml,
                            if val == "up" { 1.0 } else { 0.0 },
                        );
                        continue;
                    }
                    "master_last_io_seconds_ago"
                    | "slave_repl_offset"
                    | "master_sync_in_progress" => {
                        let help = match key {
                            "master_last_io_seconds_ago" => "Master last io seconds ago",
                            "slave_repl_offset" => "Slave replication offset",
                            _ => "Master sync in progress",
                        };
                        out.add(
                            &format!("redis_{key}"),
                            help,
                            "gauge",
                            &ml,
                            val.parse::<i64>().unwrap_or(0) as f64,
                        );
                        continue;
                    }
                    _ => {}
                }
                // slave0:ip=10.0.0.2,port=6379,state=online,offset=123,lag=0
                if key.starts_with("slave") && key[5..].parse::<u32>().is_ok() {
                    let p = pairs(val);
                    let l = [
                        ("slave_ip", p.get("ip").copied().unwrap_or("")),
                        ("slave_port", p.get("port").copied().unwrap_or("")),
                        ("slave_state", p.get("state").copied().unwrap_or("")),
                    ];
                    out.add(
                        "redis_connected_slave_offset_bytes",
                        "Offset of connected slave",
                        "gauge",
                        &l,
                        value(p.get("offset").copied().unwrap_or("0")),
                    );
                    if let Some(lag) = p.get("lag") {
                        out.add(
                            "redis_connected_slave_lag_seconds",
                            "Lag of connected slave",
                            "gauge",
                            &l,
                            value(lag),
                        );
                    }
                    continue;
                }
            }
            "Commandstats" => {
                if let Some(cmd) = key.strip_prefix("cmdstat_") {
                    let p = pairs(val);
                    let e = cmds.entry(cmd.to_string()).or_default();
                    let g = |k: &str| p.get(k).map(|v| value(v)).unwrap_or(0.0);
                    e.calls = g("calls");
                    e.usec = g("usec");
                    e.rejected = g("rejected_calls");
                    e.failed = g("failed_calls");
                }
                continue;
            }
            "Latencystats" => {
                if let Some(cmd) = key.strip_prefix("latency_percentiles_usec_") {
                    let e = cmds.entry(cmd.to_string()).or_default();
                    for (q, v) in pairs(val) {
                        e.percentiles
                            .push((q.trim_start_matches('p').to_string(), value(v)));
                    }
                }
                continue;
            }
            "Errorstats" => {
                if let Some(err) = key.strip_prefix("errorstat_") {
                    let c = pairs(val).get("count").map(|v| value(v)).unwrap_or(0.0);
                    out.add(
                        "redis_errors_total",
                        "Total number of errors per error type",
                        "counter",
                        &[("err", err)],
                        c,
                    );
                }
                continue;
            }
            "Keyspace" => {
                // db0:keys=1,expires=0,avg_ttl=0
                let p = pairs(val);
                if let (Some(k), Some(e)) = (p.get("keys"), p.get("expires")) {
                    out.add(
                        "redis_db_keys",
                        "Total number of keys by DB",
                        "gauge",
                        &[("db", key)],
                        value(k),
                    );
                    out.add(
                        "redis_db_keys_expiring",
                        "Total number of expiring keys by DB",
                        "gauge",
                        &[("db", key)],
                        value(e),
                    );
                    if let Some(ttl) = p.get("avg_ttl").map(|t| value(t)).filter(|t| *t > -1.0) {
                        out.add(
                            "redis_db_avg_ttl_seconds",
                            "Avg TTL in seconds",
                            "gauge",
                            &[("db", key)],
                            ttl / 1000.0,
                        );
                    }
                    dbs_seen.insert(key.to_string());
                    continue;
                }
            }
            _ => {}
        }
        let (name, kind) = if let Some(n) = gauges.get(key) {
            (n.to_string(), "gauge")
        } else if let Some(n) = counters.get(key) {
            (n.to_string(), "counter")
        } else if key.starts_with("cluster_") {
            (key.to_string(), "gauge")
        } else {
            continue;
        };
        let mut v = value(val);
        let name = if name == "latest_fork_usec" {
            v /= 1e6;
            "latest_fork_seconds".to_string()
        } else {
            name
        };
        out.add(
            &format!("redis_{name}"),
            &format!("{name} metric"),
            kind,
            &[],
            v,
        );
    }
    for i in 0..databases {
        let db = format!("db{i}");
        if !dbs_seen.contains(&db) {
            out.add(
                "redis_db_keys",
                "Total number of keys by DB",
                "gauge",
                &[("db", &db)],
                0.0,
            );
            out.add(
                "redis_db_keys_expiring",
                "Total number of expiring keys by DB",
                "gauge",
                &[("db", &db)],
                0.0,
            );
        }
    }
    for (cmd, s) in &cmds {
        let l = [("cmd", cmd.as_str())];
        out.add(
            "redis_commands_total",
            "Total number of calls per command",
            "counter",
            &l,
            s.calls,
        );
        out.add(
            "redis_commands_duration_seconds_total",
            "Total amount of time in seconds spent per command",
            "counter",
            &l,
            s.usec / 1e6,
        );
        out.add(
            "redis_commands_rejected_calls_total",
            "Total number of errors within command execution per command",
            "counter",
            &l,
            s.rejected,
        );
        out.add(
            "redis_commands_failed_calls_total",
            "Total number of errors prior command execution per command",
            "counter",
            &l,
            s.failed,
        );
        if !s.percentiles.is_empty() {
            out.summary(
                "redis_latency_percentiles_usec",
                "A summary of latency percentile distribution per command",
                &l,
                &s.percentiles,
                s.usec,
                s.calls,
            );
        }
    }
    let g = |k: &str| kv.get(k).cloned().unwrap_or_default();
    out.add(
        "redis_instance_info",
        "Information about the Redis instance",
        "gauge",
        &[
            ("role", &g("role")),
            ("redis_version", &g("redis_version")),
            ("redis_build_id", &g("redis_build_id")),
            ("redis_mode", &g("redis_mode")),
            ("os", &g("os")),
            ("maxmemory_policy", &g("maxmemory_policy")),
            ("tcp_port", &g("tcp_port")),
            ("run_id", &g("run_id")),
            ("process_id", &g("process_id")),
        ],
        1.0,
    );
    kv
}

struct Target {
    client: Result<redis::Client, String>,
    url: String,
    password_file: String,
    conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    scrapes: AtomicU64,
    duration_sum: parking_lot::Mutex<f64>,
}

impl Target {
    fn new(i: &RedisInstance) -> Target {
        Target {
            client: redis::Client::open(i.url.expose())
                .map_err(|e| format!("redis url {}: {e}", i.url)),
            // The `addr` label and messages name the server, never its password.
            url: i.url.without_userinfo(),
            password_file: i.password_file.clone(),
            conn: tokio::sync::Mutex::new(None),
            scrapes: AtomicU64::new(0),
            duration_sum: parking_lot::Mutex::new(0.0),
        }
    }

    async fn connect(
        &self,
        timeout: StdDuration,
    ) -> Result<redis::aio::MultiplexedConnection, String> {
        let client = match (&self.client, self.password_file.is_empty()) {
            (Err(e), _) => return Err(e.clone()),
            (Ok(c), true) => c.clone(),
            (Ok(c), false) => {
                let p = std::fs::read_to_string(&self.password_file)
                    .map_err(|e| format!("password_file {}: {e}", self.password_file))?;
                let mut info = c.get_connection_info().clone();
                let redis_info = info
                    .redis_settings()
                    .clone()
                    .set_password(p.trim_end_matches(['\n', '\r']));
                info = info.set_redis_settings(redis_info);
                redis::Client::open(info).map_err(|e| e.to_string())?
            }
        };
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Whether the configured (or default) instances answer now; for auto-detection.
pub fn answers(cfg: &RedisConfig) -> bool {
    let instances = cfg.effective_instances();
    super::check_on_thread(async move {
        for i in instances {
            let t = Target::new(&i);
            if let Ok(mut c) = t.connect(StdDuration::from_secs(2)).await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
                {
                    return true;
                }
            }
        }
        false
    })
}

/// The Redis collector (`job="redis"`, `/metrics/redis`).
pub struct RedisCollector {
    targets: Vec<Arc<Target>>,
    timeout: StdDuration,
}

impl RedisCollector {
    /// A collector for `cfg`'s instances (or the local default).
    pub fn new(cfg: &RedisConfig) -> Self {
        RedisCollector {
            targets: cfg
                .effective_instances()
                .iter()
                .map(|i| Arc::new(Target::new(i)))
                .collect(),
            timeout: StdDuration::from_millis(cfg.timeout.as_millis().max(1) as u64),
        }
    }
}

/// What one instance gave.
struct Scraped {
    page: String,
    up: bool,
    error: String,
    connect_s: f64,
    duration: f64,
}

async fn scrape(t: &Target, timeout: StdDuration) -> Scraped {
    let t0 = Instant::now();
    let mut out = PageBuilder::default();
    let mut connect_s = 0.0;
    let res = tokio::time::timeout(timeout, async {
        let mut guard = t.conn.lock().await;
        if guard.is_none() {
            let c0 = Instant::now();
            *guard = Some(t.connect(timeout).await?);
            connect_s = c0.elapsed().as_secs_f64();
        }
        let Some(conn) = guard.as_mut() else {
            return Err("no connection".to_string());
        };
        let (info, slowlog_len, slowlog): (String, i64, redis::Value) = redis::pipe()
            .cmd("INFO")
            .arg("ALL")
            .cmd("SLOWLOG")
            .arg("LEN")
            .cmd("SLOWLOG")
            .arg("GET")
            .arg(1)
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        // CONFIG may be renamed away on managed servers; its families are then left out.
        let mut config: HashMap<String, String> = HashMap::new();
        for key in ["maxmemory", "maxclients", "io-threads", "databases"] {
            if let Ok(v) = redis::cmd("CONFIG")
                .arg("GET")
                .arg(key)
                .query_async::<Vec<String>>(conn)
                .await
            {
                for kv in v.chunks(2) {
                    if let [k, v] = kv {
                        config.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        Ok::<_, String>((info, slowlog_len, slowlog, config))
    })
    .await;
    let (up, error) = match res {
        Ok(Ok((info, slowlog_len, slowlog, config))) => {
            let databases = config
                .get("databases")
                .and_then(|d| d.parse().ok())
                .unwrap_or(16);
            let kv = info_families(&mut out, &info, databases);
            for (key, name) in [
                ("maxmemory", "config_maxmemory"),
                ("maxclients", "config_maxclients"),
                ("io-threads", "config_io_threads"),
            ] {
                if let Some(v) = config.get(key) {
                    out.add(
                        &format!("redis_{name}"),
                        &format!("{name} metric"),
                        "gauge",
                        &[],
                        value(v),
                    );
                }
            }
            let uptime = kv.get("uptime_in_seconds").map(|u| value(u)).unwrap_or(0.0);
            let now = chrono::Utc::now().timestamp() as f64;
            out.add(
                "redis_start_time_seconds",
                "Start time of the Redis instance since unix epoch in seconds.",
                "gauge",
                &[],
                now - uptime,
            );
            out.add(
                "redis_slowlog_length",
                "Total slowlog",
                "gauge",
                &[],
                slowlog_len as f64,
            );
            let (id, dur) = last_slow(&slowlog);
            out.add(
                "redis_slowlog_last_id",
                "Last id of slowlog",
                "gauge",
                &[],
                id,
            );
            out.add(
                "redis_last_slow_execution_duration_seconds",
                "The amount of time needed for last slow execution, in seconds",
                "gauge",
                &[],
                dur,
            );
            (true, String::new())
        }
        Ok(Err(e)) => {
            *t.conn.lock().await = None;
            (false, e)
        }
        Err(_) => {
            *t.conn.lock().await = None;
            (false, format!("timed out after {timeout:?}"))
        }
    };
    if !error.is_empty() {
        tracing::debug!(url = t.url, error, "redis scrape failed");
    }
    Scraped {
        page: out.render(),
        up,
        error,
        connect_s,
        duration: t0.elapsed().as_secs_f64(),
    }
}

/// (id, duration in seconds) of the newest SLOWLOG entry, zeros when there is none.
fn last_slow(v: &redis::Value) -> (f64, f64) {
    let int = |v: &redis::Value| match v {
        redis::Value::Int(i) => *i as f64,
        _ => 0.0,
    };
    if let redis::Value::Array(entries) = v {
        if let Some(redis::Value::Array(e)) = entries.first() {
            return (
                e.first().map(int).unwrap_or(0.0),
                e.get(2).map(int).unwrap_or(0.0) / 1e6,
            );
        }
    }
    (0.0, 0.0)
}

impl Collector for RedisCollector {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn collect(&self) -> CollectFuture<'_> {
        Box::pin(async move {
            let results = futures_util::future::join_all(
                self.targets.iter().map(|t| scrape(t, self.timeout)),
            )
            .await;
            let many = results.len() > 1;
            let mut own = PageBuilder::default();
            let mut pages = String::new();
            for (t, s) in self.targets.iter().zip(results) {
                // With several instances the per-instance self-metrics need telling apart.
                let mut base: Vec<(&str, &str)> = Vec::new();
                if many {
                    base.push(("addr", t.url.as_str()));
                }
                let scrapes = t.scrapes.fetch_add(1, Ordering::Relaxed) + 1;
                let sum = {
                    let mut g = t.duration_sum.lock();
                    *g += s.duration;
                    *g
                };
                own.add(
                    "redis_up",
                    "Information about the Redis instance",
                    "gauge",
                    &base,
                    if s.up { 1.0 } else { 0.0 },
                );
                own.add(
                    "redis_exporter_last_scrape_connect_time_seconds",
                    "exporter_last_scrape_connect_time_seconds metric",
                    "gauge",
                    &base,
                    s.connect_s,
                );
                own.add(
                    "redis_exporter_last_scrape_duration_seconds",
                    "exporter_last_scrape_duration_seconds metric",
                    "gauge",
                    &base,
                    s.duration,
                );
                let mut el = base.clone();
                el.push(("err", s.error.as_str()));
                own.add(
                    "redis_exporter_last_scrape_error",
                    "The last scrape error status.",
                    "gauge",
                    &el,
                    if s.error.is_empty() { 0.0 } else { 1.0 },
                );
                own.add(
                    "redis_exporter_scrapes_total",
                    "Current total redis scrapes.",
                    "counter",
                    &base,
                    scrapes as f64,
                );
                own.summary(
                    "redis_exporter_scrape_duration_seconds",
                    "Durations of scrapes by the exporter",
                    &base,
                    &[],
                    sum,
                    scrapes as f64,
                );
                pages.push_str(&s.page);
            }
            let body = if many {
                super::merge_pages(&[own.render(), pages].concat())
            } else {
                [own.render(), pages].concat()
            };
            if self.targets.is_empty() {
                return Err(CollectError::Source("no redis instances".into()));
            }
            Ok(Page {
                body: body.into_bytes(),
                format: Format::PrometheusText,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nos:Linux\r\nprocess_id:42\r\ntcp_port:6379\r\nrun_id:abc\r\nuptime_in_seconds:100\r\n# Memory\r\nused_memory:1000\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n# Persistence\r\nrdb_last_bgsave_status:ok\r\naof_last_write_status:err\r\n# Stats\r\ntotal_commands_processed:7\r\nlatest_fork_usec:2500\r\n# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=10.0.0.2,port=6380,state=online,offset=99,lag=1\r\n# Commandstats\r\ncmdstat_get:calls=3,usec=30,usec_per_call=10.00,rejected_calls=1,failed_calls=0\r\n# Latencystats\r\nlatency_percentiles_usec_get:p50=9.001,p99=20.002,p99.9=20.002\r\n# Errorstats\r\nerrorstat_ERR:count=2\r\n# Cluster\r\ncluster_enabled:0\r\n# Keyspace\r\ndb1:keys=5,expires=2,avg_ttl=3000\r\n";

    #[test]
    fn info_gives_redis_exporter_families() {
        let mut out = PageBuilder::default();
        info_families(&mut out, INFO, 2);
        let p = out.render();
        for want in [
            "# HELP redis_memory_used_bytes memory_used_bytes metric\n# TYPE redis_memory_used_bytes gauge\nredis_memory_used_bytes 1000\n",
            "# TYPE redis_commands_processed_total counter\nredis_commands_processed_total 7\n",
            "redis_latest_fork_seconds 0.0025\n",
            "redis_rdb_last_bgsave_status 1\n",
            "redis_aof_last_write_status 0\n",
            "redis_db_keys{db=\"db0\"} 0\n",
            "redis_db_keys{db=\"db1\"} 5\n",
            "redis_db_keys_expiring{db=\"db1\"} 2\n",
            "redis_db_avg_ttl_seconds{db=\"db1\"} 3\n",
            "redis_commands_total{cmd=\"get\"} 3\n",
            "redis_commands_duration_seconds_total{cmd=\"get\"} 3e-05\n",
            "redis_commands_rejected_calls_total{cmd=\"get\"} 1\n",
            "redis_latency_percentiles_usec{cmd=\"get\",quantile=\"99.9\"} 20.002\n",
            "redis_latency_percentiles_usec_sum{cmd=\"get\"} 30\n",
            "redis_latency_percentiles_usec_count{cmd=\"get\"} 3\n",
            "redis_errors_total{err=\"ERR\"} 2\n",
            "redis_connected_slave_offset_bytes{slave_ip=\"10.0.0.2\",slave_port=\"6380\",slave_state=\"online\"} 99\n",
            "redis_cluster_enabled 0\n",
            "redis_instance_info{maxmemory_policy=\"noeviction\",os=\"Linux\",process_id=\"42\",redis_build_id=\"\",redis_mode=\"standalone\",redis_version=\"7.0.15\",role=\"master\",run_id=\"abc\",tcp_port=\"6379\"} 1\n",
        ] {
            assert!(p.contains(want), "missing {want:?} in\n{p}");
        }
        assert!(!p.contains("redis_db_keys{db=\"db1\"} 0"));
        assert!(!p.contains("used_memory_human"));
    }
}
