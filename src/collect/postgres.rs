//! The PostgreSQL collector: postgres_exporter 0.11's families, labels, types and HELP texts
//! (its built-in metric maps, the `database` and `bgwriter` collectors, `pg_settings`, and the
//! `pg_postmaster`, `pg_replication` and `pg_stat_user_tables` queries of its example
//! queries.yaml), read through tokio-postgres with TLS by rustls.
//!
//! Each instance keeps one connection across scrapes; every statement runs under a timeout, so
//! a slow or dead server turns `pg_up` to 0 within the collector's deadline and never delays
//! the other collectors (each collector is its own scrape). Reads only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use serde::{Deserialize, Serialize};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row};

use super::{CollectError, CollectFuture, Collector, Page, PageBuilder};
use crate::model::exposition::Format;
use crate::model::time::Duration;

/// `collectors.postgres`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
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
    /// The servers; empty means 127.0.0.1:5432 as `$PGUSER` (default `postgres`) with
    /// `$PGPASSWORD`.
    pub instances: Vec<PgInstance>,
    /// How long one instance may take (connect plus every statement) before it counts as
    /// down for this scrape. Keep it under the scrape timeout.
    pub timeout: Duration,
    /// At most this many tables (most live rows first) in `pg_stat_user_tables_*`.
    pub max_tables: u32,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            enabled: None,
            scrape_interval: None,
            listen_address: None,
            instances: Vec::new(),
            timeout: Duration::from_millis(5000),
            max_tables: 100,
        }
    }
}

/// One server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgInstance {
    /// A libpq connection string or URL (`postgresql://user@host:5432/db?sslmode=disable`);
    /// `${VAR}` in it is expanded from the environment like everywhere in the config.
    pub dsn: crate::model::SecretUrl,
    /// A file holding the password (read at every connect), instead of one in the DSN.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password_file: String,
}

impl PostgresConfig {
    /// The configured instances, or the local default.
    pub fn effective_instances(&self) -> Vec<PgInstance> {
        if !self.instances.is_empty() {
            return self.instances.clone();
        }
        let user = std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into());
        vec![PgInstance {
            dsn: format!("host=127.0.0.1 port=5432 user={user} dbname=postgres").into(),
            password_file: String::new(),
        }]
    }
}

/// Why an instance could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The DSN does not parse.
    #[error("postgres dsn: {0}")]
    Dsn(String),
    /// Connecting or a statement failed.
    #[error("{0}")]
    Db(#[from] tokio_postgres::Error),
    /// The deadline passed.
    #[error("timed out after {0:?}")]
    Timeout(StdDuration),
    /// The password file could not be read.
    #[error("password_file {0}: {1}")]
    PasswordFile(String, std::io::Error),
}

/// libpq's sslmode, of which tokio-postgres knows only disable/prefer/require.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Verify {
    /// disable / allow / prefer / require: encrypt if asked, check nothing (as libpq does).
    No,
    /// verify-ca / verify-full: check the chain against the system roots (and `sslrootcert`).
    Yes,
}

struct Target {
    config: tokio_postgres::Config,
    verify: Verify,
    root_cert: Option<String>,
    password_file: String,
    /// `host:port`, postgres_exporter's `server` label.
    server: String,
    client: tokio::sync::Mutex<Option<Conn>>,
    scrapes: AtomicU64,
}

/// A connection with its prepared statements: each query is parsed once per connection, so
/// a scrape costs one round trip per query (all pipelined).
struct Conn {
    client: Client,
    statements: parking_lot::Mutex<HashMap<String, tokio_postgres::Statement>>,
}

impl Conn {
    async fn query(&self, sql: &str) -> Result<Vec<Row>, tokio_postgres::Error> {
        let cached = self.statements.lock().get(sql).cloned();
        let st = match cached {
            Some(st) => st,
            None => {
                let st = self.client.prepare(sql).await?;
                self.statements.lock().insert(sql.to_string(), st.clone());
                st
            }
        };
        self.client.query(&st, &[]).await
    }
}

/// Splits off what tokio-postgres does not parse (`sslmode=verify-*`, `sslrootcert`).
fn parse_dsn(dsn: &str) -> Result<(tokio_postgres::Config, Verify, Option<String>), PgError> {
    let mut verify = Verify::No;
    let mut root = None;
    let mut cleaned = dsn.to_string();
    let re = regex::Regex::new(r"(sslmode=)(verify-ca|verify-full)|sslrootcert=([^&\s]+)[&]?")
        .map_err(|e| PgError::Dsn(e.to_string()))?;
    for c in re.captures_iter(dsn) {
        if c.get(2).is_some() {
            verify = Verify::Yes;
        }
        if let Some(r) = c.get(3) {
            root = Some(r.as_str().to_string());
        }
    }
    cleaned = re
        .replace_all(&cleaned, |c: &regex::Captures| {
            if c.get(2).is_some() {
                "sslmode=require".to_string()
            } else {
                String::new()
            }
        })
        .trim_end_matches(['&', '?'])
        .to_string();
    let cfg: tokio_postgres::Config = cleaned
        .parse()
        .map_err(|e: tokio_postgres::Error| PgError::Dsn(e.to_string()))?;
    Ok((cfg, verify, root))
}

fn server_label(cfg: &tokio_postgres::Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

fn tls(verify: Verify, root: Option<&str>) -> tokio_postgres_rustls::MakeRustlsConnect {
    use crate::model::tls::{native_roots, provider, NoVerify};
    let mut roots = native_roots();
    if let Some(path) = root {
        if let Ok(pem) = std::fs::read(path) {
            use rustls::pki_types::pem::PemObject;
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem).flatten() {
                let _ = roots.add(c);
            }
        }
    }
    let mut cfg = match rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b.with_root_certificates(roots).with_no_client_auth(),
        // ring always offers the default versions; a failure here is a build problem.
        Err(e) => unreachable!("rustls defaults with ring: {e}"),
    };
    if verify == Verify::No {
        cfg.dangerous()
            .set_certificate_verifier(Arc::new(NoVerify(provider())));
    }
    tokio_postgres_rustls::MakeRustlsConnect::new(cfg)
}

/// Whether the configured (or default) instances answer now; for auto-detection. Runs its own
/// small runtime on a thread so it can be called from anywhere.
pub fn answers(cfg: &PostgresConfig) -> bool {
    let instances = cfg.effective_instances();
    super::check_on_thread(async move {
        for i in instances {
            let Ok(t) = Target::new(&i) else { continue };
            if t.connect(StdDuration::from_secs(2)).await.is_ok() {
                return true;
            }
        }
        false
    })
}

impl Target {
    fn new(i: &PgInstance) -> Result<Target, PgError> {
        let (mut config, verify, root_cert) = parse_dsn(i.dsn.expose())?;
        if config.get_password().is_none() && i.password_file.is_empty() {
            if let Ok(p) = std::env::var("PGPASSWORD") {
                config.password(p);
            }
        }
        if config.get_user().is_none() {
            config.user(std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into()));
        }
        config.application_name("appliance");
        let server = server_label(&config);
        Ok(Target {
            config,
            verify,
            root_cert,
            password_file: i.password_file.clone(),
            server,
            client: tokio::sync::Mutex::new(None),
            scrapes: AtomicU64::new(0),
        })
    }

    async fn connect(&self, timeout: StdDuration) -> Result<Client, PgError> {
        let mut config = self.config.clone();
        if !self.password_file.is_empty() {
            let p = std::fs::read_to_string(&self.password_file)
                .map_err(|e| PgError::PasswordFile(self.password_file.clone(), e))?;
            config.password(p.trim_end_matches(['\n', '\r']));
        }
        config.connect_timeout(timeout);
        let tls = tls(self.verify, self.root_cert.as_deref());
        let (client, conn) = tokio::time::timeout(timeout, config.connect(tls))
            .await
            .map_err(|_| PgError::Timeout(timeout))??;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "postgres connection ended");
            }
        });
        // A statement that outlives the scrape is cancelled by the server itself.
        client
            .batch_execute(&format!(
                "SET statement_timeout = {}; SET application_name = 'appliance'",
                timeout.as_millis()
            ))
            .await?;
        Ok(client)
    }
}

/// A column as postgres_exporter's `dbToFloat64` reads it: NULL is NaN, times are whole Unix
/// seconds, booleans 0/1.
fn float(row: &Row, i: usize) -> f64 {
    let t = row.columns()[i].type_().clone();
    let v: Option<f64> = match t {
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)
            .ok()
            .flatten()
            .map(f64::from),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .ok()
            .flatten()
            .map(f64::from),
        Type::INT8 => row
            .try_get::<_, Option<i64>>(i)
            .ok()
            .flatten()
            .map(|v| v as f64),
        Type::OID => row
            .try_get::<_, Option<u32>>(i)
            .ok()
            .flatten()
            .map(f64::from),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)
            .ok()
            .flatten()
            .map(f64::from),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).ok().flatten(),
        Type::BOOL => {
            row.try_get::<_, Option<bool>>(i)
                .ok()
                .flatten()
                .map(|b| if b { 1.0 } else { 0.0 })
        }
        Type::TIMESTAMPTZ => row
            .try_get::<_, Option<chrono::DateTime<chrono::Utc>>>(i)
            .ok()
            .flatten()
            // Go's time.Unix(): whole seconds.
            .map(|t| t.timestamp() as f64),
        Type::TEXT | Type::NAME | Type::VARCHAR => row
            .try_get::<_, Option<String>>(i)
            .ok()
            .flatten()
            .and_then(|s| s.parse().ok()),
        _ => None,
    };
    v.unwrap_or(f64::NAN)
}

/// A column as a label value (NULL is "").
fn text(row: &Row, i: usize) -> String {
    match row.columns()[i].type_().clone() {
        Type::OID => row
            .try_get::<_, Option<u32>>(i)
            .ok()
            .flatten()
            .map(|v| v.to_string()),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .ok()
            .flatten()
            .map(|v| v.to_string()),
        Type::INT8 => row
            .try_get::<_, Option<i64>>(i)
            .ok()
            .flatten()
            .map(|v| v.to_string()),
        _ => row.try_get::<_, Option<String>>(i).ok().flatten(),
    }
    .unwrap_or_default()
}

/// One column of a builtin metric map: how postgres_exporter 0.11 exports it.
enum Col {
    Label,
    Discard,
    Metric(&'static str, &'static str),
}

const STAT_DATABASE: &[(&str, Col)] = &[
    ("datid", Col::Label),
    ("datname", Col::Label),
    ("numbackends", Col::Metric("gauge", "Number of backends currently connected to this database. This is the only column in this view that returns a value reflecting current state; all other columns return the accumulated values since the last reset.")),
    ("xact_commit", Col::Metric("counter", "Number of transactions in this database that have been committed")),
    ("xact_rollback", Col::Metric("counter", "Number of transactions in this database that have been rolled back")),
    ("blks_read", Col::Metric("counter", "Number of disk blocks read in this database")),
    ("blks_hit", Col::Metric("counter", "Number of times disk blocks were found already in the buffer cache, so that a read was not necessary (this only includes hits in the PostgreSQL buffer cache, not the operating system's file system cache)")),
    ("tup_returned", Col::Metric("counter", "Number of rows returned by queries in this database")),
    ("tup_fetched", Col::Metric("counter", "Number of rows fetched by queries in this database")),
    ("tup_inserted", Col::Metric("counter", "Number of rows inserted by queries in this database")),
    ("tup_updated", Col::Metric("counter", "Number of rows updated by queries in this database")),
    ("tup_deleted", Col::Metric("counter", "Number of rows deleted by queries in this database")),
    ("conflicts", Col::Metric("counter", "Number of queries canceled due to conflicts with recovery in this database. (Conflicts occur only on standby servers; see pg_stat_database_conflicts for details.)")),
    ("temp_files", Col::Metric("counter", "Number of temporary files created by queries in this database. All temporary files are counted, regardless of why the temporary file was created (e.g., sorting or hashing), and regardless of the log_temp_files setting.")),
    ("temp_bytes", Col::Metric("counter", "Total amount of data written to temporary files by queries in this database. All temporary files are counted, regardless of why the temporary file was created, and regardless of the log_temp_files setting.")),
    ("deadlocks", Col::Metric("counter", "Number of deadlocks detected in this database")),
    ("blk_read_time", Col::Metric("counter", "Time spent reading data file blocks by backends in this database, in milliseconds")),
    ("blk_write_time", Col::Metric("counter", "Time spent writing data file blocks by backends in this database, in milliseconds")),
    ("stats_reset", Col::Metric("counter", "Time at which these statistics were last reset")),
];

const STAT_DATABASE_CONFLICTS: &[(&str, Col)] = &[
    ("datid", Col::Label),
    ("datname", Col::Label),
    (
        "confl_tablespace",
        Col::Metric(
            "counter",
            "Number of queries in this database that have been canceled due to dropped tablespaces",
        ),
    ),
    (
        "confl_lock",
        Col::Metric(
            "counter",
            "Number of queries in this database that have been canceled due to lock timeouts",
        ),
    ),
    (
        "confl_snapshot",
        Col::Metric(
            "counter",
            "Number of queries in this database that have been canceled due to old snapshots",
        ),
    ),
    (
        "confl_bufferpin",
        Col::Metric(
            "counter",
            "Number of queries in this database that have been canceled due to pinned buffers",
        ),
    ),
    (
        "confl_deadlock",
        Col::Metric(
            "counter",
            "Number of queries in this database that have been canceled due to deadlocks",
        ),
    ),
];

const STAT_ARCHIVER: &[(&str, Col)] = &[
    (
        "archived_count",
        Col::Metric(
            "counter",
            "Number of WAL files that have been successfully archived",
        ),
    ),
    ("last_archived_wal", Col::Discard),
    ("last_archived_time", Col::Discard),
    (
        "failed_count",
        Col::Metric(
            "counter",
            "Number of failed attempts for archiving WAL files",
        ),
    ),
    ("last_failed_wal", Col::Discard),
    ("last_failed_time", Col::Discard),
    ("stats_reset", Col::Discard),
    (
        "last_archive_age",
        Col::Metric(
            "gauge",
            "Time in seconds since last WAL segment was successfully archived",
        ),
    ),
];

const STAT_REPLICATION: &[(&str, Col)] = &[
    ("application_name", Col::Label),
    ("client_addr", Col::Label),
    ("state", Col::Label),
    ("slot_name", Col::Label),
    (
        "pg_current_wal_lsn_bytes",
        Col::Metric("gauge", "WAL position in bytes"),
    ),
    (
        "pg_wal_lsn_diff",
        Col::Metric("gauge", "Lag in bytes between master and slave"),
    ),
];

const REPLICATION_SLOTS: &[(&str, Col)] = &[
    ("slot_name", Col::Label),
    ("database", Col::Label),
    (
        "active",
        Col::Metric("gauge", "Flag indicating if the slot is active"),
    ),
    (
        "pg_wal_lsn_diff",
        Col::Metric("gauge", "Replication lag in bytes"),
    ),
];

const USER_TABLES: &[(&str, Col)] = &[
    ("datname", Col::Label),
    ("schemaname", Col::Label),
    ("relname", Col::Label),
    (
        "seq_scan",
        Col::Metric(
            "counter",
            "Number of sequential scans initiated on this table",
        ),
    ),
    (
        "seq_tup_read",
        Col::Metric("counter", "Number of live rows fetched by sequential scans"),
    ),
    (
        "idx_scan",
        Col::Metric("counter", "Number of index scans initiated on this table"),
    ),
    (
        "idx_tup_fetch",
        Col::Metric("counter", "Number of live rows fetched by index scans"),
    ),
    (
        "n_tup_ins",
        Col::Metric("counter", "Number of rows inserted"),
    ),
    (
        "n_tup_upd",
        Col::Metric("counter", "Number of rows updated"),
    ),
    (
        "n_tup_del",
        Col::Metric("counter", "Number of rows deleted"),
    ),
    (
        "n_tup_hot_upd",
        Col::Metric(
            "counter",
            "Number of rows HOT updated (i.e., with no separate index update required)",
        ),
    ),
    (
        "n_live_tup",
        Col::Metric("gauge", "Estimated number of live rows"),
    ),
    (
        "n_dead_tup",
        Col::Metric("gauge", "Estimated number of dead rows"),
    ),
    (
        "n_mod_since_analyze",
        Col::Metric(
            "gauge",
            "Estimated number of rows changed since last analyze",
        ),
    ),
    (
        "last_vacuum",
        Col::Metric(
            "gauge",
            "Last time at which this table was manually vacuumed (not counting VACUUM FULL)",
        ),
    ),
    (
        "last_autovacuum",
        Col::Metric(
            "gauge",
            "Last time at which this table was vacuumed by the autovacuum daemon",
        ),
    ),
    (
        "last_analyze",
        Col::Metric(
            "gauge",
            "Last time at which this table was manually analyzed",
        ),
    ),
    (
        "last_autoanalyze",
        Col::Metric(
            "gauge",
            "Last time at which this table was analyzed by the autovacuum daemon",
        ),
    ),
    (
        "vacuum_count",
        Col::Metric(
            "counter",
            "Number of times this table has been manually vacuumed (not counting VACUUM FULL)",
        ),
    ),
    (
        "autovacuum_count",
        Col::Metric(
            "counter",
            "Number of times this table has been vacuumed by the autovacuum daemon",
        ),
    ),
    (
        "analyze_count",
        Col::Metric(
            "counter",
            "Number of times this table has been manually analyzed",
        ),
    ),
    (
        "autoanalyze_count",
        Col::Metric(
            "counter",
            "Number of times this table has been analyzed by the autovacuum daemon",
        ),
    ),
];

const ACTIVITY_SQL: &str = "SELECT pg_database.datname, tmp.state, COALESCE(count,0) as count, COALESCE(max_tx_duration,0) as max_tx_duration FROM (VALUES ('active'), ('idle'), ('idle in transaction'), ('idle in transaction (aborted)'), ('fastpath function call'), ('disabled')) AS tmp(state) CROSS JOIN pg_database LEFT JOIN (SELECT datname, state, count(*) AS count, MAX(EXTRACT(EPOCH FROM now() - xact_start))::float AS max_tx_duration FROM pg_stat_activity GROUP BY datname,state) AS tmp2 ON tmp.state = tmp2.state AND pg_database.datname = tmp2.datname";

const LOCKS_SQL: &str = "SELECT pg_database.datname, tmp.mode, COALESCE(count,0) as count FROM (VALUES ('accesssharelock'), ('rowsharelock'), ('rowexclusivelock'), ('shareupdateexclusivelock'), ('sharelock'), ('sharerowexclusivelock'), ('exclusivelock'), ('accessexclusivelock'), ('sireadlock')) AS tmp(mode) CROSS JOIN pg_database LEFT JOIN (SELECT database, lower(mode) AS mode, count(*) AS count FROM pg_locks WHERE database IS NOT NULL GROUP BY database, lower(mode)) AS tmp2 ON tmp.mode=tmp2.mode and pg_database.oid = tmp2.database ORDER BY 1";

const BGWRITER: &[(&str, &str)] = &[
    ("checkpoints_timed", "Number of scheduled checkpoints that have been performed"),
    ("checkpoints_req", "Number of requested checkpoints that have been performed"),
    ("checkpoint_write_time", "Total amount of time that has been spent in the portion of checkpoint processing where files are written to disk, in milliseconds"),
    ("checkpoint_sync_time", "Total amount of time that has been spent in the portion of checkpoint processing where files are synchronized to disk, in milliseconds"),
    ("buffers_checkpoint", "Number of buffers written during checkpoints"),
    ("buffers_clean", "Number of buffers written by the background writer"),
    ("maxwritten_clean", "Number of times the background writer stopped a cleaning scan because it had written too many buffers"),
    ("buffers_backend", "Number of buffers written directly by a backend"),
    ("buffers_backend_fsync", "Number of times a backend had to execute its own fsync call (normally the background writer handles those even when the backend does its own write)"),
    ("buffers_alloc", "Number of buffers allocated"),
    ("stats_reset", "Time at which these statistics were last reset"),
];

/// Writes the rows of `SELECT * FROM <view>`-style results as postgres_exporter's builtin
/// metric maps do: named columns as mapped, unknown columns as untyped metrics.
fn emit_mapped(
    out: &mut PageBuilder,
    prefix: &str,
    map: &[(&str, Col)],
    rows: &[Row],
    server: &str,
) {
    let known: HashMap<&str, &Col> = map.iter().map(|(k, c)| (*k, c)).collect();
    for row in rows {
        let mut labels: Vec<(String, String)> = vec![("server".into(), server.into())];
        for (i, c) in row.columns().iter().enumerate() {
            if matches!(known.get(c.name()), Some(Col::Label)) {
                labels.push((c.name().to_string(), text(row, i)));
            }
        }
        let l: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        for (i, c) in row.columns().iter().enumerate() {
            let name = format!("{prefix}_{}", c.name());
            match known.get(c.name()) {
                Some(Col::Label) | Some(Col::Discard) => {}
                Some(Col::Metric(kind, help)) => out.add(&name, help, kind, &l, float(row, i)),
                None => out.add(
                    &name,
                    &format!("Unknown metric from {prefix}"),
                    "untyped",
                    &l,
                    float(row, i),
                ),
            }
        }
    }
}

/// pg_settings as postgres_exporter 0.11 exports it: booleans and numbers, units normalised
/// to seconds or bytes; `None` for units it does not know.
fn setting(name: &str, value: &str, unit: &str, vartype: &str) -> Option<(String, f64, String)> {
    let name = name.replace('.', "_");
    if vartype == "bool" {
        return Some((name, if value == "on" { 1.0 } else { 0.0 }, String::new()));
    }
    let v: f64 = value.parse().ok()?;
    let (suffix, factor) = match unit {
        "" => return Some((name, v, String::new())),
        "ms" => ("seconds", 1e-3),
        "s" => ("seconds", 1.0),
        "min" => ("seconds", 60.0),
        "h" => ("seconds", 3600.0),
        "d" => ("seconds", 86400.0),
        "B" => ("bytes", 1.0),
        "kB" | "1kB" => ("bytes", 1024.0),
        "2kB" => ("bytes", 2048.0),
        "4kB" => ("bytes", 4096.0),
        "8kB" => ("bytes", 8192.0),
        "16kB" => ("bytes", 16384.0),
        "32kB" => ("bytes", 32768.0),
        "64kB" => ("bytes", 65536.0),
        "MB" => ("bytes", 1048576.0),
        "16MB" => ("bytes", 16777216.0),
        "32MB" => ("bytes", 33554432.0),
        "64MB" => ("bytes", 67108864.0),
        "GB" => ("bytes", 1073741824.0),
        "TB" => ("bytes", 1099511627776.0),
        _ => return None,
    };
    // -1 means "off" and is kept as is.
    let v = if v == -1.0 { v } else { v * factor };
    Some((format!("{name}_{suffix}"), v, suffix.to_string()))
}

/// `short_version` of pg_static: the first version number of `version()`, as semver.
fn short_version(version: &str) -> String {
    let num = version.split_whitespace().nth(1).unwrap_or("");
    let parts: Vec<&str> = num
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()
        .unwrap_or("")
        .split('.')
        .filter(|p| !p.is_empty())
        .collect();
    let get = |i: usize| {
        parts
            .get(i)
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(0)
    };
    format!("{}.{}.{}", get(0), get(1), get(2))
}

/// The PostgreSQL collector (`job="postgres"`, `/metrics/postgres`).
pub struct PostgresCollector {
    targets: Vec<Arc<Target>>,
    timeout: StdDuration,
    max_tables: u32,
    /// Config errors (a DSN that does not parse), reported as failed scrapes.
    errors: Vec<String>,
}

impl PostgresCollector {
    /// A collector for `cfg`'s instances (or the local default).
    pub fn new(cfg: &PostgresConfig) -> Self {
        let mut targets = Vec::new();
        let mut errors = Vec::new();
        for i in cfg.effective_instances() {
            match Target::new(&i) {
                Ok(t) => targets.push(Arc::new(t)),
                Err(e) => errors.push(e.to_string()),
            }
        }
        PostgresCollector {
            targets,
            timeout: StdDuration::from_millis(cfg.timeout.as_millis().max(1) as u64),
            max_tables: cfg.max_tables,
            errors,
        }
    }
}

/// What one instance gave: its families, whether it answered, per sub-collector timings.
struct Scraped {
    out: PageBuilder,
    up: bool,
    error: bool,
    collectors: Vec<(&'static str, f64, bool)>,
    duration: f64,
    scrapes: u64,
}

async fn scrape(t: &Target, timeout: StdDuration, max_tables: u32) -> Scraped {
    let t0 = Instant::now();
    let mut s = Scraped {
        out: PageBuilder::default(),
        up: false,
        error: false,
        collectors: Vec::new(),
        duration: 0.0,
        scrapes: t.scrapes.fetch_add(1, Ordering::Relaxed) + 1,
    };
    let res = tokio::time::timeout(timeout, scrape_inner(t, timeout, max_tables, &mut s)).await;
    match res {
        Ok(Ok(())) if s.up => {}
        Ok(Ok(())) => {
            // Not even version() answered: the connection is not usable; start over.
            s.error = true;
            *t.client.lock().await = None;
        }
        Ok(Err(e)) => {
            tracing::debug!(server = t.server, error = %e, "postgres scrape failed");
            s.error = true;
            *t.client.lock().await = None;
        }
        Err(_) => {
            tracing::debug!(server = t.server, "postgres scrape timed out");
            s.error = true;
            s.up = false;
            // The connection may be stuck mid-statement: start over next time.
            *t.client.lock().await = None;
        }
    }
    s.duration = t0.elapsed().as_secs_f64();
    s
}

async fn scrape_inner(
    t: &Target,
    timeout: StdDuration,
    max_tables: u32,
    s: &mut Scraped,
) -> Result<(), PgError> {
    let mut guard = t.client.lock().await;
    if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
        *guard = Some(Conn {
            client: t.connect(timeout).await?,
            statements: parking_lot::Mutex::new(HashMap::new()),
        });
    }
    let Some(client) = guard.as_ref() else {
        return Ok(());
    };
    let server = t.server.as_str();
    let out = &mut s.out;
    let sl = [("server", server)];

    // Issued together: tokio-postgres pipelines them on the one connection.
    let q = |sql: &'static str| client.query(sql);
    let timed = |sql: String| async move {
        let t0 = Instant::now();
        let r = client.query(&sql).await;
        (r, t0.elapsed().as_secs_f64())
    };
    let bg_cols: Vec<&str> = BGWRITER.iter().map(|(c, _)| *c).collect();
    let user_tables_sql = format!(
        "SELECT current_database() datname, schemaname, relname, seq_scan, seq_tup_read, idx_scan, idx_tup_fetch, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd, n_live_tup, n_dead_tup, n_mod_since_analyze, COALESCE(last_vacuum, '1970-01-01Z') as last_vacuum, COALESCE(last_autovacuum, '1970-01-01Z') as last_autovacuum, COALESCE(last_analyze, '1970-01-01Z') as last_analyze, COALESCE(last_autoanalyze, '1970-01-01Z') as last_autoanalyze, vacuum_count, autovacuum_count, analyze_count, autoanalyze_count FROM pg_stat_user_tables ORDER BY n_live_tup DESC NULLS LAST, relname LIMIT {max_tables}"
    );
    let (version, settings, database, conflicts, activity, locks, archiver, replication, slots) = tokio::join!(
        q("SELECT version()"),
        // statement_timeout is our own session's; report the server's.
        q("SELECT name, CASE WHEN name = 'statement_timeout' THEN reset_val ELSE setting END, COALESCE(unit, ''), short_desc, vartype FROM pg_settings WHERE vartype IN ('bool', 'integer', 'real')"),
        q("SELECT * FROM pg_stat_database"),
        q("SELECT * FROM pg_stat_database_conflicts"),
        q(ACTIVITY_SQL),
        q(LOCKS_SQL),
        q("SELECT *, extract(epoch from now() - last_archived_time)::float AS last_archive_age FROM pg_stat_archiver"),
        q("SELECT application_name, client_addr::text, state, NULL::text AS slot_name, (case pg_is_in_recovery() when 't' then null else pg_wal_lsn_diff(pg_current_wal_lsn(), pg_lsn('0/0'))::float end) AS pg_current_wal_lsn_bytes, (case pg_is_in_recovery() when 't' then null else pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float end) AS pg_wal_lsn_diff FROM pg_stat_replication"),
        q("SELECT slot_name, database, active, (case pg_is_in_recovery() when 't' then null else pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float end) AS pg_wal_lsn_diff FROM pg_replication_slots"),
    );
    let (postmaster, lag, tables, (sizes, sizes_s), (bg, bg_s)) = tokio::join!(
        q("SELECT pg_postmaster_start_time() as start_time_seconds"),
        q("SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0 ELSE GREATEST (0, EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp())))::float END AS lag"),
        client.query(&user_tables_sql),
        // The two collectors of postgres_exporter's new-style framework, timed separately.
        timed("SELECT datname, pg_database_size(datname)::float8 FROM pg_database".into()),
        timed(format!("SELECT {} FROM pg_stat_bgwriter", bg_cols.join(", "))),
    );
    // postgres_exporter's pg_up: the server answered.
    s.up = version.is_ok();
    let mut failed = false;
    let mut ok = |r: Result<Vec<Row>, tokio_postgres::Error>, what: &str| match r {
        Ok(rows) => Some(rows),
        Err(e) => {
            tracing::debug!(server = t.server, query = what, error = %e, "postgres query failed");
            failed = true;
            None
        }
    };
    if let Some(rows) = ok(version, "version") {
        if let Some(r) = rows.first() {
            let v = text(r, 0);
            out.add(
                "pg_static",
                "Version string as reported by postgres",
                "untyped",
                &[
                    ("server", server),
                    ("short_version", &short_version(&v)),
                    ("version", &v),
                ],
                1.0,
            );
        }
    }
    if let Some(rows) = ok(settings, "pg_settings") {
        for r in rows {
            let (name, value, unit, desc, vartype) = (
                text(&r, 0),
                text(&r, 1),
                text(&r, 2),
                text(&r, 3),
                text(&r, 4),
            );
            if let Some((metric, v, suffix)) = setting(&name, &value, &unit, &vartype) {
                let help = if suffix.is_empty() {
                    desc
                } else {
                    format!("{desc} [Units converted to {suffix}.]")
                };
                out.add(&format!("pg_settings_{metric}"), &help, "gauge", &sl, v);
            }
        }
    }
    if let Some(rows) = ok(database, "pg_stat_database") {
        emit_mapped(out, "pg_stat_database", STAT_DATABASE, &rows, server);
    }
    if let Some(rows) = ok(conflicts, "pg_stat_database_conflicts") {
        emit_mapped(
            out,
            "pg_stat_database_conflicts",
            STAT_DATABASE_CONFLICTS,
            &rows,
            server,
        );
    }
    if let Some(rows) = ok(activity, "pg_stat_activity") {
        for r in rows {
            let l = [
                ("datname", text(&r, 0)),
                ("server", server.to_string()),
                ("state", text(&r, 1)),
            ];
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            out.add(
                "pg_stat_activity_count",
                "number of connections in this state",
                "gauge",
                &l,
                float(&r, 2),
            );
            out.add(
                "pg_stat_activity_max_tx_duration",
                "max duration in seconds any active transaction has been running",
                "gauge",
                &l,
                float(&r, 3),
            );
        }
    }
    if let Some(rows) = ok(locks, "pg_locks") {
        for r in rows {
            let (d, m) = (text(&r, 0), text(&r, 1));
            out.add(
                "pg_locks_count",
                "Number of locks",
                "gauge",
                &[("datname", &d), ("mode", &m), ("server", server)],
                float(&r, 2),
            );
        }
    }
    if let Some(rows) = ok(archiver, "pg_stat_archiver") {
        emit_mapped(out, "pg_stat_archiver", STAT_ARCHIVER, &rows, server);
    }
    if let Some(rows) = ok(replication, "pg_stat_replication") {
        emit_mapped(out, "pg_stat_replication", STAT_REPLICATION, &rows, server);
    }
    if let Some(rows) = ok(slots, "pg_replication_slots") {
        emit_mapped(
            out,
            "pg_replication_slots",
            REPLICATION_SLOTS,
            &rows,
            server,
        );
    }
    if let Some(rows) = ok(postmaster, "pg_postmaster") {
        for r in rows {
            out.add(
                "pg_postmaster_start_time_seconds",
                "Time at which postmaster started",
                "gauge",
                &sl,
                float(&r, 0),
            );
        }
    }
    if let Some(rows) = ok(lag, "pg_replication") {
        for r in rows {
            out.add(
                "pg_replication_lag",
                "Replication lag behind master in seconds",
                "gauge",
                &sl,
                float(&r, 0),
            );
        }
    }
    if let Some(rows) = ok(tables, "pg_stat_user_tables") {
        emit_mapped(out, "pg_stat_user_tables", USER_TABLES, &rows, server);
    }

    let ok_db = sizes.is_ok();
    if let Ok(rows) = sizes {
        for r in rows {
            let d = text(&r, 0);
            out.add(
                "pg_database_size_bytes",
                "Disk space used by the database",
                "gauge",
                &[("datname", &d), ("server", server)],
                float(&r, 1),
            );
        }
    }
    s.collectors.push(("database", sizes_s, ok_db));
    let ok_bg = bg.is_ok();
    if let Ok(rows) = bg {
        for r in rows {
            for (i, (c, help)) in BGWRITER.iter().enumerate() {
                out.add(
                    &format!("pg_stat_bgwriter_{c}_total"),
                    help,
                    "counter",
                    &sl,
                    float(&r, i),
                );
            }
        }
    }
    s.collectors.push(("bgwriter", bg_s, ok_bg));
    s.error = failed || !ok_db || !ok_bg;
    Ok(())
}

impl Collector for PostgresCollector {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn collect(&self) -> CollectFuture<'_> {
        Box::pin(async move {
            if let Some(e) = self.errors.first() {
                return Err(CollectError::Source(e.clone()));
            }
            let results = futures_util::future::join_all(
                self.targets
                    .iter()
                    .map(|t| scrape(t, self.timeout, self.max_tables)),
            )
            .await;
            // One instance is labelled exactly as postgres_exporter; several need `server` on
            // the per-instance self-metrics too, or their series would collide.
            let many = results.len() > 1;
            let mut page = String::new();
            let mut own = PageBuilder::default();
            for (t, s) in self.targets.iter().zip(results) {
                let server: Vec<(&str, &str)> = if many {
                    vec![("server", t.server.as_str())]
                } else {
                    Vec::new()
                };
                let with = |k: &'static str, v: &'static str| {
                    let mut l = server.clone();
                    l.push((k, v));
                    l
                };
                let b = |x: bool| if x { 1.0 } else { 0.0 };
                own.add(
                    "pg_up",
                    "Whether the last scrape of metrics from PostgreSQL was able to connect to the server (1 for yes, 0 for no).",
                    "gauge",
                    &server,
                    b(s.up),
                );
                own.add(
                    "pg_exporter_last_scrape_duration_seconds",
                    "Duration of the last scrape of metrics from PostgreSQL.",
                    "gauge",
                    &server,
                    s.duration,
                );
                own.add(
                    "pg_exporter_last_scrape_error",
                    "Whether the last scrape of metrics from PostgreSQL resulted in an error (1 for error, 0 for success).",
                    "gauge",
                    &server,
                    b(s.error || !s.up),
                );
                own.add(
                    "pg_exporter_scrapes_total",
                    "Total number of times PostgreSQL was scraped for metrics.",
                    "counter",
                    &server,
                    s.scrapes as f64,
                );
                for (c, secs, ok) in &s.collectors {
                    own.add(
                        "pg_scrape_collector_duration_seconds",
                        "postgres_exporter: Duration of a collector scrape.",
                        "gauge",
                        &with("collector", c),
                        *secs,
                    );
                    own.add(
                        "pg_scrape_collector_success",
                        "postgres_exporter: Whether a collector succeeded.",
                        "gauge",
                        &with("collector", c),
                        b(*ok),
                    );
                }
                page.push_str(&s.out.render());
            }
            // Families must not repeat across instances' pages: merge by re-rendering.
            let merged = super::merge_pages(&[own.render(), page].concat());
            Ok(Page {
                body: merged.into_bytes(),
                format: Format::PrometheusText,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_units_follow_postgres_exporter() {
        assert_eq!(
            setting("shared_buffers", "16384", "8kB", "integer"),
            Some(("shared_buffers_bytes".into(), 134217728.0, "bytes".into()))
        );
        assert_eq!(
            setting("archive_timeout", "0", "s", "integer"),
            Some(("archive_timeout_seconds".into(), 0.0, "seconds".into()))
        );
        assert_eq!(
            setting("log_min_duration_statement", "-1", "ms", "integer"),
            Some((
                "log_min_duration_statement_seconds".into(),
                -1.0,
                "seconds".into()
            ))
        );
        assert_eq!(
            setting("fsync", "on", "", "bool"),
            Some(("fsync".into(), 1.0, String::new()))
        );
        assert_eq!(setting("x", "1", "parsecs", "integer"), None);
    }

    #[test]
    fn short_version_is_semver() {
        assert_eq!(
            short_version("PostgreSQL 15.20 (Debian 15.20-0+deb12u1) on x86_64-pc-linux-gnu"),
            "15.20.0"
        );
        assert_eq!(short_version("PostgreSQL 9.6.24 on x86_64"), "9.6.24");
        assert_eq!(short_version("PostgreSQL 17beta1 on x86_64"), "17.0.0");
    }

    #[test]
    fn dsn_verify_modes_and_server_label() {
        let (c, v, r) =
            parse_dsn("postgresql://u@db.example:5433/app?sslmode=verify-full&sslrootcert=/ca.pem")
                .unwrap();
        assert_eq!(v, Verify::Yes);
        assert_eq!(r.as_deref(), Some("/ca.pem"));
        assert_eq!(server_label(&c), "db.example:5433");
        let (c, v, _) = parse_dsn("host=127.0.0.1 user=postgres sslmode=disable").unwrap();
        assert_eq!(v, Verify::No);
        assert_eq!(server_label(&c), "127.0.0.1:5432");
        assert!(parse_dsn("postgresql://u@h:notaport/x").is_err());
    }
}
