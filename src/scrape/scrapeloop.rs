//! One loop per target: fetch (HTTP or in-process), parse, label, limit, append, report, and
//! staleness. A failed scrape is data: it writes `up 0` and marks the previous series stale,
//! exactly like Prometheus's "a failed scrape is an empty scrape".

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::config::{accept_header, ScrapeProtocol};
use super::target::{Health, Target};
use super::{Job, JobKind};
use crate::model::exposition::{Decoder, Entry, Format, ParserOptions, ProtoOptions, Wire};
use crate::model::{relabel, stale_nan, Labels, LabelsBuilder};
use crate::storage::{Appendable, Appender, SeriesRef};

/// Metadata a target reported for one metric family.
#[derive(Clone, Debug, PartialEq)]
pub struct MetadataEntry {
    /// Family name.
    pub metric: String,
    /// Type (`counter`, `gauge`, ..., `unknown`).
    pub kind: String,
    /// HELP text.
    pub help: String,
    /// Unit.
    pub unit: String,
}

use super::cache::{CacheEntry, SeriesCache};

/// Per-target state that outlives a config reload: the series the loop writes, locked for a
/// whole scrape, and the status the API reads, locked only briefly, so a slow scrape never
/// holds up `/api/v1/targets`.
#[derive(Default)]
pub struct LoopState {
    pub(super) series: Mutex<SeriesState>,
    pub(super) status: Mutex<Status>,
}

/// What the API shows of a target.
pub struct Status {
    pub(super) health: Health,
    pub(super) last_error: String,
    pub(super) last_scrape_ms: i64,
    pub(super) last_duration: f64,
    pub(super) metadata: Vec<MetadataEntry>,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            health: Health::Unknown,
            last_error: String::new(),
            last_scrape_ms: 0,
            last_duration: 0.0,
            metadata: Vec::new(),
        }
    }
}

/// The series a target writes, for staleness and the scrape cache.
#[derive(Default)]
pub struct SeriesState {
    /// Keyed by the series as the target wrote it.
    cache: SeriesCache,
    counts: Counts,
    /// The settings the cached labels were made with: a reload that changes them empties
    /// the cache (as Prometheus's `reusableCache`), or old relabelling would live on.
    made_with: Option<CacheKey>,
    /// Report series (`up`, `scrape_*`), stale-marked when the target goes away.
    report_series: Vec<(Labels, Option<SeriesRef>)>,
}

/// What a cache entry's labels depend on besides the series and the target.
struct CacheKey {
    relabel: Vec<relabel::RelabelConfig>,
    flags: (bool, bool, bool),
    limits: (Option<u64>, Option<u64>, Option<u64>),
}

impl CacheKey {
    /// Whether `cfg` has these settings (compared in place: this runs every scrape).
    fn matches(&self, cfg: &super::config::ScrapeConfig) -> bool {
        self.relabel == cfg.metric_relabel_configs
            && self.flags
                == (
                    cfg.honor_labels,
                    cfg.honor_timestamps,
                    cfg.track_timestamps_staleness,
                )
            && self.limits
                == (
                    cfg.label_limit,
                    cfg.label_name_length_limit,
                    cfg.label_value_length_limit,
                )
    }

    fn of(cfg: &super::config::ScrapeConfig) -> Self {
        CacheKey {
            relabel: cfg.metric_relabel_configs.clone(),
            flags: (
                cfg.honor_labels,
                cfg.honor_timestamps,
                cfg.track_timestamps_staleness,
            ),
            limits: (
                cfg.label_limit,
                cfg.label_name_length_limit,
                cfg.label_value_length_limit,
            ),
        }
    }
}

/// Scrape numbers and the counts that tell whether a scrape left any live series out.
#[derive(Default)]
struct Counts {
    iter: u64,
    /// The scrape number whose series are live (candidates for stale markers).
    live_iter: u64,
    /// How many series are live (tracked, with labels, seen in `live_iter`).
    live_count: u64,
    /// Of the scrape in progress: live series it wrote again, and tracked series it wrote.
    carried: u64,
    written: u64,
}

impl Counts {
    /// Starts scrape number `iter`.
    fn begin(&mut self) -> u64 {
        self.iter += 1;
        self.carried = 0;
        self.written = 0;
        self.iter
    }

    /// Records that the scrape in progress wrote the series of `e`.
    fn touch(&mut self, e: &mut CacheEntry, tracked: bool) {
        if e.seen == self.iter {
            // Written twice in one scrape: only its last state counts.
            self.written = self.written + u64::from(tracked) - u64::from(e.tracked);
            e.tracked = tracked;
            return;
        }
        if self.live_iter != 0 && e.seen == self.live_iter && e.tracked {
            self.carried += 1;
        }
        (e.prev_seen, e.prev_tracked) = (e.seen, e.tracked);
        e.seen = self.iter;
        e.tracked = tracked;
        self.written += u64::from(tracked);
    }
}

impl SeriesState {
    /// Takes back what the failed scrape in progress recorded.
    fn revert(&mut self) {
        let iter = self.counts.iter;
        for e in self.cache.entries_mut() {
            if e.seen == iter {
                (e.seen, e.tracked) = (e.prev_seen, e.prev_tracked);
            }
        }
    }

    /// Appends stale markers at `t` for live series not written by scrape `now_iter` (all of
    /// them when `now_iter` is 0), then makes `now_iter` the live scrape. When the scrape
    /// wrote every live series again (the usual case) nothing is scanned.
    fn mark_vanished(&mut self, app: &mut dyn Appender, t: i64, now_iter: u64) {
        let c = &mut self.counts;
        let live = c.live_iter;
        let all_carried = now_iter != 0 && c.carried == c.live_count;
        if live != 0 && !all_carried {
            for e in self.cache.entries_mut() {
                if e.seen == live && e.tracked {
                    if let Some(l) = &e.labels {
                        append_any(app, l, &mut e.sref, t, stale_nan());
                    }
                }
            }
        }
        c.live_iter = now_iter;
        c.live_count = if now_iter != 0 { c.written } else { 0 };
        if now_iter != 0 {
            self.cache.keep_order();
        } else {
            self.cache.drop_order();
        }
        // Bound the cache: forget series the target has not written for a while (checked
        // every few scrapes; a scan per scrape costs as much as the appends).
        if c.iter.is_multiple_of(8) {
            let keep_after = c.iter.saturating_sub(10);
            self.cache.retain(|e| e.seen > keep_after);
        }
    }
}

/// Appends by ref when there is a valid one, else by labels (refreshing the ref).
fn append_any(
    app: &mut dyn Appender,
    labels: &Labels,
    sref: &mut Option<SeriesRef>,
    t: i64,
    v: f64,
) {
    if let Some(r) = *sref {
        if app.append_ref(r, t, v).is_ok() {
            return;
        }
    }
    *sref = app.append(labels, t, v).ok();
}

/// Scrape counters, registered as `appliance_target_*`.
#[derive(Clone)]
pub struct ScrapeMetrics {
    scrapes: Counter,
    failures: Counter,
    sample_limit: Counter,
    bucket_limit: Counter,
    body_limit: Counter,
    out_of_order: Counter,
    duplicate: Counter,
    duration: Histogram,
    pub(super) sd_file_errors: Counter,
}

impl Default for ScrapeMetrics {
    fn default() -> Self {
        ScrapeMetrics {
            scrapes: Counter::default(),
            failures: Counter::default(),
            sample_limit: Counter::default(),
            bucket_limit: Counter::default(),
            body_limit: Counter::default(),
            out_of_order: Counter::default(),
            duplicate: Counter::default(),
            duration: Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0]),
            sd_file_errors: Counter::default(),
        }
    }
}

impl ScrapeMetrics {
    /// Registers the counters in `reg`.
    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "appliance_target_scrapes",
            "Total number of scrapes.",
            self.scrapes.clone(),
        );
        reg.register(
            "appliance_target_scrape_failures",
            "Total number of failed scrapes.",
            self.failures.clone(),
        );
        reg.register(
            "appliance_target_scrapes_exceeded_sample_limit",
            "Scrapes that hit the sample limit and were rejected.",
            self.sample_limit.clone(),
        );
        reg.register(
            "appliance_target_scrapes_exceeded_native_histogram_bucket_limit",
            "Scrapes with a native histogram over native_histogram_bucket_limit at the lowest resolution, rejected.",
            self.bucket_limit.clone(),
        );
        reg.register(
            "appliance_target_scrapes_exceeded_body_size_limit",
            "Scrapes that hit the body size limit.",
            self.body_limit.clone(),
        );
        reg.register(
            "appliance_target_scrapes_sample_out_of_order",
            "Samples rejected as out of order.",
            self.out_of_order.clone(),
        );
        reg.register(
            "appliance_target_scrapes_sample_duplicate_timestamp",
            "Samples rejected as duplicates with different values.",
            self.duplicate.clone(),
        );
        reg.register(
            "appliance_target_scrape_duration_seconds",
            "Scrape durations.",
            self.duration.clone(),
        );
        reg.register(
            "appliance_sd_file_read_errors",
            "File discovery reads that failed (the last good targets are kept).",
            self.sd_file_errors.clone(),
        );
    }

    /// File discovery read failures so far.
    pub fn sd_file_errors(&self) -> u64 {
        self.sd_file_errors.get()
    }
}

/// What a loop needs.
pub struct LoopCtx {
    pub(super) target: Arc<Target>,
    pub(super) job: Job,
    pub(super) client: Option<reqwest::Client>,
    pub(super) storage: Arc<dyn Appendable>,
    pub(super) metrics: ScrapeMetrics,
    pub(super) state: Arc<LoopState>,
    pub(super) seed: u64,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The first scrape time at or after `now` that falls on this target's offset, so a target is
/// scraped at the same phase of its interval on every run (Prometheus's jittered offset).
pub fn offset_ms(hash: u64, seed: u64, interval_ms: i64, now: i64) -> i64 {
    let interval = interval_ms.max(1);
    let base = ((hash ^ seed) % interval as u64) as i64;
    let phase = now.rem_euclid(interval);
    (base - phase).rem_euclid(interval)
}

/// Runs until `stop` carries `Some(mark_stale)`.
pub async fn run(ctx: LoopCtx, mut stop: watch::Receiver<Option<bool>>) {
    let ctx = Arc::new(ctx);
    let interval = ctx.job.config.interval().std();
    // In-process collectors cost nothing to scrape and nobody else depends on their phase, so
    // they start at once: the appliance's own target is up as soon as it is ready.
    let wait = match ctx.job.kind {
        JobKind::Collector { .. } => 0,
        JobKind::Http => offset_ms(
            ctx.target.hash,
            ctx.seed,
            interval.as_millis() as i64,
            now_ms(),
        ),
    };
    let start = tokio::time::Instant::now() + Duration::from_millis(wait as u64);
    let mut ticker = tokio::time::interval_at(start, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mark = loop {
        // A stop does not wait for a scrape in flight: a million-series page takes seconds
        // to fetch. Dropping the scrape abandons its fetch; once its samples are being
        // appended, that work runs to its end on its own thread and holds the series lock,
        // so the stale markers below still come after it.
        tokio::select! {
            _ = async {
                ticker.tick().await;
                scrape_once(&ctx).await
            } => {}
            r = stop.changed() => {
                match r {
                    Ok(()) => if let Some(m) = *stop.borrow() { break m },
                    Err(_) => break true,
                }
            }
        }
    };
    if mark {
        write_stale(&*ctx.storage, &ctx.state, now_ms());
    }
}

/// Writes stale markers at `t` for every series the loop last wrote, report series included.
pub fn write_stale(storage: &dyn Appendable, state: &LoopState, t: i64) {
    let mut st = state.series.lock();
    let mut app = storage.appender();
    st.mark_vanished(&mut *app, t, 0);
    for (l, r) in std::mem::take(&mut st.report_series) {
        let mut r = r;
        append_any(&mut *app, &l, &mut r, t, stale_nan());
    }
    if let Err(e) = app.commit() {
        crate::failure!(warn, "scrape", "stale_markers", error = %e, "writing stale markers failed");
    }
}

/// Why a scrape failed; the text is what `/api/v1/targets` shows as `lastError`.
#[derive(Debug, thiserror::Error)]
enum Fail {
    #[error("{0}")]
    Fetch(String),
    #[error("body size limit exceeded")]
    BodySize,
    #[error("sample limit exceeded")]
    SampleLimit,
    #[error("histogram bucket limit exceeded")]
    BucketLimit,
    #[error("{0}")]
    Parse(String),
    #[error("{0}")]
    LabelLimit(String),
    #[error("{0}")]
    Timeout(String),
}

/// What a scrape that ran past `scrape_timeout` reports, as Prometheus words it.
fn timeout_message(ctx: &LoopCtx) -> String {
    match ctx.job.kind {
        JobKind::Collector { .. } => "collector timed out".into(),
        JobKind::Http => format!("Get {:?}: context deadline exceeded", ctx.target.url),
    }
}

async fn fetch(ctx: &LoopCtx) -> Result<(Vec<u8>, Wire), Fail> {
    let cfg = &ctx.job.config;
    let timeout = cfg.timeout().std();
    match (&ctx.job.kind, &ctx.client) {
        (JobKind::Collector { collector, .. }, _) => {
            let address = ctx.target.discovered.get("__address__").unwrap_or("");
            let page = if collector.targets().is_empty() {
                collector.collect()
            } else {
                collector.collect_target(address)
            };
            let page = tokio::time::timeout(timeout, page)
                .await
                .map_err(|_| Fail::Timeout(timeout_message(ctx)))?
                .map_err(|e| Fail::Fetch(e.to_string()))?;
            Ok((page.body, Wire::Text(page.format)))
        }
        (JobKind::Http, Some(client)) => tokio::time::timeout(timeout, fetch_http(ctx, client))
            .await
            .map_err(|_| Fail::Timeout(timeout_message(ctx)))?,
        (JobKind::Http, None) => Err(Fail::Fetch("no HTTP client".into())),
    }
}

fn read_secret_file(path: &str) -> Result<String, Fail> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| Fail::Fetch(format!("unable to read secret file {path:?}: {e}")))
}

async fn fetch_http(ctx: &LoopCtx, client: &reqwest::Client) -> Result<(Vec<u8>, Wire), Fail> {
    let cfg = &ctx.job.config;
    let protocols = cfg.scrape_protocols.clone().unwrap_or_default();
    let mut req = client
        .get(&ctx.target.url)
        .header("Accept", accept_header(&protocols))
        .header(
            "User-Agent",
            concat!("appliance/", env!("CARGO_PKG_VERSION")),
        )
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", cfg.timeout().std().as_secs_f64()),
        );
    if cfg.enable_compression {
        req = req.header("Accept-Encoding", "gzip");
    } else {
        req = req.header("Accept-Encoding", "identity");
    }
    if let Some(b) = &cfg.basic_auth {
        let (user, pass) = b.credentials().map_err(Fail::Fetch)?;
        req = req.basic_auth(user, pass);
    }
    use crate::model::httpconf::bearer;
    if let Some(a) = &cfg.authorization {
        req = req.header("Authorization", a.header_value().map_err(Fail::Fetch)?);
    } else if let Some(t) = &cfg.bearer_token {
        req = req.header("Authorization", bearer("", t.expose()));
    } else if !cfg.bearer_token_file.is_empty() {
        req = req.header(
            "Authorization",
            bearer("", &read_secret_file(&cfg.bearer_token_file)?),
        );
    }
    let resp = req
        .send()
        .await
        .map_err(|e| Fail::Fetch(format!("Get {:?}: {}", ctx.target.url, error_chain(&e))))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(Fail::Fetch(format!(
            "server returned HTTP status {}",
            resp.status()
        )));
    }
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let gz = resp
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.eq_ignore_ascii_case("gzip"))
        .unwrap_or(false);
    let limit = cfg.body_size_limit.map(|b| b.0).unwrap_or(0);
    let mut raw = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Fail::Fetch(format!("reading body: {}", error_chain(&e))))?;
        raw.extend_from_slice(&chunk);
        if limit > 0 && !gz && raw.len() as u64 > limit {
            return Err(Fail::BodySize);
        }
        if limit > 0 && gz && raw.len() as u64 > limit.saturating_mul(64) {
            return Err(Fail::BodySize);
        }
    }
    let body = if gz {
        let mut out = Vec::new();
        let dec = flate2::read::GzDecoder::new(&raw[..]);
        let cap = if limit > 0 { limit + 1 } else { u64::MAX };
        dec.take(cap)
            .read_to_end(&mut out)
            .map_err(|e| Fail::Fetch(format!("decompressing body: {e}")))?;
        out
    } else {
        raw
    };
    if limit > 0 && body.len() as u64 > limit {
        return Err(Fail::BodySize);
    }
    let format = match Wire::from_content_type(&ct) {
        Some(f) => f,
        None => match cfg.fallback_scrape_protocol {
            Some(ScrapeProtocol::PrometheusProto) => Wire::Protobuf,
            Some(ScrapeProtocol::OpenMetricsText001 | ScrapeProtocol::OpenMetricsText100) => Wire::Text(Format::OpenMetrics),
            Some(ScrapeProtocol::PrometheusText004 | ScrapeProtocol::PrometheusText100) => Wire::Text(Format::PrometheusText),
            None if ct.trim().is_empty() => return Err(Fail::Fetch("non-compliant scrape target sending blank Content-Type and no fallback_scrape_protocol specified for target".into())),
            None => return Err(Fail::Fetch(format!("received unsupported Content-Type {ct:?} and no fallback_scrape_protocol specified for target"))),
        },
    };
    Ok((body, format))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

struct Appended {
    scraped: u64,
    post_relabel: u64,
    metadata: Vec<MetadataEntry>,
}

/// Merges target labels into a sample's, as Prometheus's `mutateSampleLabels`.
fn sample_labels(
    target: &Labels,
    name: &str,
    labels: &[(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)],
    honor: bool,
) -> LabelsBuilder {
    let mut lb = LabelsBuilder::default();
    lb.set(crate::model::METRIC_NAME.into(), name.to_string());
    for (n, v) in labels {
        // The parser refuses duplicate names; a `__name__` among them (OpenMetrics' quoted
        // form) is the one case that needs the checked path.
        if n == crate::model::METRIC_NAME {
            lb.set(n.to_string(), v.to_string());
        } else {
            lb.push_new(n.to_string(), v.to_string());
        }
    }
    if honor {
        for l in target.iter() {
            if lb.get(l.name).is_empty() {
                lb.set(l.name.to_string(), l.value.to_string());
            }
        }
    } else {
        for l in target.iter() {
            let existing = lb.get(l.name).to_string();
            if !existing.is_empty() {
                let mut key = format!("exported_{}", l.name);
                while !lb.get(&key).is_empty() {
                    key = format!("exported_{key}");
                }
                lb.set(key, existing);
            }
            lb.set(l.name.to_string(), l.value.to_string());
        }
    }
    lb
}

/// Builds, relabels and checks the final labels of a series seen for the first time.
fn new_entry(
    ctx: &LoopCtx,
    name: &str,
    pairs: &[(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)],
) -> Result<CacheEntry, Fail> {
    let cfg = &ctx.job.config;
    let mut entry = CacheEntry::new(None);
    let mut lb = sample_labels(&ctx.target.labels, name, pairs, cfg.honor_labels);
    if !cfg.metric_relabel_configs.is_empty()
        && !relabel::process(&cfg.metric_relabel_configs, &mut lb)
    {
        return Ok(entry);
    }
    let labels = lb.labels();
    if labels.metric_name().is_empty() {
        return Ok(entry);
    }
    let label_limit = cfg.label_limit.unwrap_or(0);
    let name_len = cfg.label_name_length_limit.unwrap_or(0);
    let value_len = cfg.label_value_length_limit.unwrap_or(0);
    if label_limit > 0 && labels.len() as u64 > label_limit {
        return Err(Fail::LabelLimit(format!(
            "label_limit exceeded (metric: {}, number of labels: {}, limit: {label_limit})",
            clip(labels.metric_name()),
            labels.len()
        )));
    }
    for l in labels.iter() {
        if name_len > 0 && l.name.len() as u64 > name_len {
            return Err(Fail::LabelLimit(format!(
                "label_name_length_limit exceeded (metric: {}, label name: {}, length: {}, limit: {name_len})",
                clip(labels.metric_name()),
                clip(l.name),
                l.name.len()
            )));
        }
        if value_len > 0 && l.value.len() as u64 > value_len {
            return Err(Fail::LabelLimit(format!(
                "label_value_length_limit exceeded (metric: {}, label name: {}, value: {}, length: {}, limit: {value_len})",
                clip(labels.metric_name()),
                clip(l.name),
                crate::model::exposition::bounded_quote(l.value),
                l.value.len()
            )));
        }
    }
    entry.labels = Some(labels);
    Ok(entry)
}

/// The first 50 characters, as Prometheus's `%.50s` in limit messages.
fn clip(s: &str) -> String {
    s.chars().take(50).collect()
}

fn append_body(
    ctx: &LoopCtx,
    st: &mut SeriesState,
    app: &mut dyn Appender,
    body: &[u8],
    format: Wire,
    t: i64,
    deadline: Instant,
) -> (Appended, Option<Fail>) {
    let cfg = &ctx.job.config;
    let sample_limit = cfg.sample_limit.unwrap_or(0);
    let mut over_limit = false;
    let mut over_bucket_limit = false;
    let hist_limits = HistogramLimits::of(cfg);
    let mut out = Appended {
        scraped: 0,
        post_relabel: 0,
        metadata: Vec::new(),
    };
    let mut meta: Vec<MetadataEntry> = Vec::new();
    let mut meta_index: HashMap<String, usize> = HashMap::new();
    let mut meta_for = |meta: &mut Vec<MetadataEntry>, name: &str| -> usize {
        if let Some(i) = meta_index.get(name) {
            return *i;
        }
        meta.push(MetadataEntry {
            metric: name.to_string(),
            kind: "unknown".into(),
            help: String::new(),
            unit: String::new(),
        });
        meta_index.insert(name.to_string(), meta.len() - 1);
        meta.len() - 1
    };
    // The label limits are enforced while parsing, before a hostile line costs anything,
    // where no metric relabelling could still drop labels; otherwise after relabelling.
    let opts = if cfg.metric_relabel_configs.is_empty() {
        ParserOptions {
            label_limit: cfg.label_limit.unwrap_or(0),
            label_name_length_limit: cfg.label_name_length_limit.unwrap_or(0),
            label_value_length_limit: cfg.label_value_length_limit.unwrap_or(0),
            // `__name__`, and the target's labels, which are added beside the sample's own
            // (a clash keeps the sample's as `exported_…`) unless `honor_labels`.
            reserved_labels: 1 + if cfg.honor_labels {
                0
            } else {
                ctx.target.labels.len() as u64
            },
            defer_labels: true,
            ..ParserOptions::default()
        }
    } else {
        ParserOptions {
            defer_labels: true,
            ..ParserOptions::default()
        }
    };
    let proto = ProtoOptions {
        native_histograms: cfg.scrape_native_histograms.unwrap_or(false),
        classic_histograms: cfg.always_scrape_classic_histograms.unwrap_or(false),
    };
    let mut parser = crate::model::exposition::nhcb::NhcbDecoder::new(
        Decoder::new(body, format, opts, proto),
        cfg.convert_classic_histograms_to_nhcb.unwrap_or(false),
        cfg.always_scrape_classic_histograms.unwrap_or(false),
    );
    let mut n = 0usize;
    while let Some(e) = parser.next() {
        n += 1;
        if n.is_multiple_of(256) && Instant::now() > deadline {
            return (out, Some(Fail::Timeout(timeout_message(ctx))));
        }
        let e = match e {
            Ok(e) => e,
            Err(e) => return (out, Some(Fail::Parse(e.to_string()))),
        };
        let s = match e {
            Entry::Help { name, text } => {
                let i = meta_for(&mut meta, &name);
                meta[i].help = text.into_owned();
                continue;
            }
            Entry::Type { name, kind } => {
                let i = meta_for(&mut meta, &name);
                meta[i].kind = kind.as_str().into();
                continue;
            }
            Entry::Unit { name, unit } => {
                let i = meta_for(&mut meta, &name);
                meta[i].unit = unit.into_owned();
                continue;
            }
            Entry::Sample(s) => s,
        };
        out.scraped += 1;
        // One lookup on the usual path (a known series).
        let pos = (out.scraped - 1) as usize;
        let i = match st.cache.find(&s.series, pos) {
            Some(i) => i,
            None => {
                // A series not seen before: now its labels are parsed (and checked).
                let (name, labels) = match parser.series_labels(&s) {
                    Ok(x) => x,
                    Err(e) => return (out, Some(Fail::Parse(e.to_string()))),
                };
                match new_entry(ctx, &name, &labels) {
                    Ok(e) => st.cache.insert(&s.series, e),
                    Err(f) => return (out, Some(f)),
                }
            }
        };
        let e = st.cache.get_mut(i);
        if e.labels.is_none() {
            continue;
        }
        out.post_relabel += 1;
        // Like Prometheus, keep counting past the sample limit so the report shows how many
        // samples the target really has; nothing of this scrape is stored.
        if sample_limit > 0 && out.post_relabel > sample_limit {
            over_limit = true;
        }
        if over_limit {
            continue;
        }
        let ts = match s.timestamp_ms {
            Some(ts) if cfg.honor_timestamps => ts,
            _ => t,
        };
        st.counts
            .touch(e, ts == t || cfg.track_timestamps_staleness);
        let Some(labels) = &e.labels else {
            continue;
        };
        let sref = match s.histogram {
            Some(h) => match hist_limits.apply(h) {
                Some(h) => app.append_histogram(labels, ts, h).ok(),
                None => {
                    // As Prometheus: keep reading, so the report counts every sample,
                    // and fail the scrape at the end.
                    over_bucket_limit = true;
                    continue;
                }
            },
            None => {
                append_any(app, labels, &mut e.sref, ts, s.value);
                e.sref
            }
        };
        // As Prometheus: the exemplar of a stored sample, at the sample's time when it has
        // none of its own.
        for e in s.exemplar.iter().chain(&s.more_exemplars) {
            if sref.is_none() {
                break;
            }
            app.append_exemplar(
                labels,
                crate::storage::Exemplar {
                    labels: Labels::from_pairs(
                        e.labels.iter().map(|(k, v)| (k.as_ref(), v.as_ref())),
                    ),
                    value: e.value,
                    t_ms: e.timestamp_ms.unwrap_or(ts),
                    has_ts: e.timestamp_ms.is_some(),
                },
            );
        }
    }
    out.metadata = meta;
    let fail = if over_limit {
        Some(Fail::SampleLimit)
    } else {
        over_bucket_limit.then_some(Fail::BucketLimit)
    };
    (out, fail)
}

/// The job's limits on native histograms, applied to each before it is stored, as
/// Prometheus's `bucketLimitAppender` and `maxSchemaAppender`.
struct HistogramLimits {
    bucket_limit: usize,
    max_schema: i32,
}

impl HistogramLimits {
    fn of(cfg: &super::config::ScrapeConfig) -> Self {
        HistogramLimits {
            bucket_limit: usize::try_from(cfg.native_histogram_bucket_limit).unwrap_or(usize::MAX),
            max_schema: pick_schema(cfg.native_histogram_min_bucket_factor),
        }
    }

    /// The histogram to store, at a lower resolution where the limits ask for one; `None`
    /// when it has more buckets than the limit even at the lowest resolution (or has custom
    /// buckets, which cannot be merged).
    fn apply(
        &self,
        h: Arc<crate::model::histogram::FloatHistogram>,
    ) -> Option<Arc<crate::model::histogram::FloatHistogram>> {
        use crate::model::histogram::{EXPONENTIAL_SCHEMA_MAX, EXPONENTIAL_SCHEMA_MIN};
        let buckets =
            |h: &crate::model::histogram::FloatHistogram| h.positive.len() + h.negative.len();
        let exponential =
            (EXPONENTIAL_SCHEMA_MIN..=EXPONENTIAL_SCHEMA_MAX_RESERVED).contains(&h.schema);
        let over = self.bucket_limit > 0 && buckets(&h) > self.bucket_limit;
        // Schemas above 8 (reserved for finer resolutions) are stored at 8, as Prometheus's
        // head does.
        let cap = self.max_schema.min(EXPONENTIAL_SCHEMA_MAX);
        if !(over || exponential && h.schema > cap) {
            return Some(h);
        }
        if over && !exponential {
            return None;
        }
        let mut h = Arc::unwrap_or_clone(h);
        if h.schema > cap {
            h.reduce_resolution(cap);
        }
        while self.bucket_limit > 0 && buckets(&h) > self.bucket_limit {
            if h.schema <= EXPONENTIAL_SCHEMA_MIN {
                return None;
            }
            h.reduce_resolution(h.schema - 1);
        }
        Some(Arc::new(h))
    }
}

/// Highest schema reserved for future finer resolutions; scraped ones are reduced to 8.
const EXPONENTIAL_SCHEMA_MAX_RESERVED: i32 = 52;

/// Prometheus's `pickSchema`: the highest schema whose bucket growth factor is at least
/// `factor` (`native_histogram_min_bucket_factor`; 0 or 1 keeps the finest).
fn pick_schema(factor: f64) -> i32 {
    use crate::model::histogram::{EXPONENTIAL_SCHEMA_MAX, EXPONENTIAL_SCHEMA_MIN};
    let factor = if factor <= 1.0 { 1.00271 } else { factor };
    let floor = (-factor.log2().log2()).floor();
    if floor >= f64::from(EXPONENTIAL_SCHEMA_MAX) {
        EXPONENTIAL_SCHEMA_MAX
    } else if floor <= f64::from(EXPONENTIAL_SCHEMA_MIN) {
        EXPONENTIAL_SCHEMA_MIN
    } else {
        floor as i32
    }
}

async fn scrape_once(ctx: &Arc<LoopCtx>) {
    let started = Instant::now();
    let deadline = started + ctx.job.config.timeout().std();
    let t = now_ms();
    let span =
        tracing::info_span!("scrape", job = %ctx.job.config.job_name, target = %ctx.target.url);
    let fetched = tracing::Instrument::instrument(fetch(ctx), span.clone()).await;
    // Parsing and appending cost time in proportion to the body: they run off the async
    // threads (a hostile body must not stall other scrapes or `/-/healthy`), under the same
    // deadline as the fetch.
    let c = ctx.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || {
        let _enter = span.enter();
        process(&c, fetched, t, started, deadline)
    })
    .await
    {
        crate::failure!(error, "scrape", "processing", job = %ctx.job.config.job_name, target = %ctx.target.url, error = %e, "scrape processing failed");
    }
}

/// Everything after the fetch: parse, append, staleness, report series, status.
fn process(
    ctx: &LoopCtx,
    fetched: Result<(Vec<u8>, Wire), Fail>,
    t: i64,
    started: Instant,
    deadline: Instant,
) {
    let mut st = ctx.state.series.lock();
    if !st
        .made_with
        .as_ref()
        .is_some_and(|k| k.matches(&ctx.job.config))
    {
        if st.made_with.is_some() {
            // Series the new settings no longer write go stale by lookback, as in Prometheus.
            st.cache.clear();
            st.counts.live_iter = 0;
        }
        st.made_with = Some(CacheKey::of(&ctx.job.config));
    }
    let iter = st.counts.begin();
    let mut app = ctx.storage.appender();
    let (result, counts) = match fetched {
        Ok((body, format)) => {
            let (a, fail) = append_body(ctx, &mut st, &mut *app, &body, format, t, deadline);
            let counts = (a.scraped, a.post_relabel);
            (fail.map_or(Ok(a), Err), counts)
        }
        Err(e) => (Err(e), (0, 0)),
    };
    // A failed scrape still reports how many samples it saw before failing, as Prometheus.
    let (scraped, post) = counts;
    let (err, metadata) = match result {
        Ok(a) => (None, Some(a.metadata)),
        Err(e) => {
            // Nothing of a failed scrape is kept; like Prometheus, it counts as an empty one
            // so every series of the previous scrape is marked stale.
            app.rollback();
            st.revert();
            app = ctx.storage.appender();
            match e {
                Fail::SampleLimit => ctx.metrics.sample_limit.inc(),
                Fail::BucketLimit => ctx.metrics.bucket_limit.inc(),
                Fail::BodySize => ctx.metrics.body_limit.inc(),
                _ => 0,
            };
            (Some(e.to_string()), None)
        }
    };
    // The metadata is in place before the samples become visible, so a client that sees a
    // series can always ask for its type.
    if let Some(m) = metadata {
        ctx.state.status.lock().metadata = m;
    }
    st.mark_vanished(&mut *app, t, if err.is_none() { iter } else { 0 });
    let duration = started.elapsed().as_secs_f64();
    let up = if err.is_none() { 1.0 } else { 0.0 };
    // series_added is only known after commit; write the report in a second batch.
    let stats = app.commit();
    let added = stats.as_ref().map(|s| s.series_added).unwrap_or(0);
    if let Ok(s) = &stats {
        ctx.metrics.out_of_order.inc_by(s.out_of_order);
        ctx.metrics.duplicate.inc_by(s.duplicate);
    }
    let mut rep = ctx.storage.appender();
    if st.report_series.is_empty() {
        st.report_series = REPORT_NAMES
            .iter()
            .map(|name| {
                let mut lb = ctx.target.labels.builder();
                lb.set(crate::model::METRIC_NAME.into(), (*name).into());
                (lb.labels(), None)
            })
            .collect();
    }
    let values = [up, duration, scraped as f64, post as f64, added as f64];
    for ((l, r), v) in st.report_series.iter_mut().zip(values) {
        append_any(&mut *rep, l, r, t, v);
    }
    if let Err(e) = rep.commit() {
        crate::failure!(warn, "scrape", "report_series", error = %e, "writing report series failed");
    }
    drop(st);
    ctx.metrics.scrapes.inc();
    ctx.metrics.duration.observe(duration);
    let mut status = ctx.state.status.lock();
    status.last_scrape_ms = t;
    status.last_duration = duration;
    match err {
        None => {
            status.health = Health::Up;
            status.last_error.clear();
        }
        Some(e) => {
            ctx.metrics.failures.inc();
            if status.health != Health::Down || status.last_error != e {
                tracing::warn!(job = %ctx.job.config.job_name, target = %ctx.target.url, error = %e, "scrape failed");
            }
            status.health = Health::Down;
            status.last_error = e;
        }
    }
}

/// The synthetic series every scrape writes, in the order of their values.
const REPORT_NAMES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_stable_and_within_interval() {
        let a = offset_ms(42, 7, 15_000, 1_000_000);
        assert!((0..15_000).contains(&a));
        // The phase is the same one interval later.
        assert_eq!(offset_ms(42, 7, 15_000, 1_000_000 + 15_000), a);
        let base = (42u64 ^ 7) as i64;
        assert_eq!((1_000_000 + a) % 15_000, base % 15_000);
    }

    #[test]
    fn conflicting_labels_become_exported() {
        let target = Labels::from_pairs([("job", "j"), ("instance", "i")]);
        let labels = vec![("job".into(), "mine".into())];
        let l = sample_labels(&target, "m", &labels, false).labels();
        assert_eq!(l.get("job"), Some("j"));
        assert_eq!(l.get("exported_job"), Some("mine"));
        let l = sample_labels(&target, "m", &labels, true).labels();
        assert_eq!(l.get("job"), Some("mine"));
        assert_eq!(l.get("instance"), Some("i"));
    }

    #[test]
    fn min_bucket_factor_picks_prometheus_schemas() {
        // pickSchema's table: factor 2 → schema 0, 1.1 → 2, 1.01 → 6, 65536 → -4.
        assert_eq!(pick_schema(0.0), 8);
        assert_eq!(pick_schema(1.0), 8);
        assert_eq!(pick_schema(2.0), 0);
        assert_eq!(pick_schema(1.1), 2);
        assert_eq!(pick_schema(1.01), 6);
        assert_eq!(pick_schema(65536.0), -4);
        assert_eq!(pick_schema(1e300), -4);
    }

    fn hist(schema: i32, pos: &[(i32, f64)]) -> Arc<crate::model::histogram::FloatHistogram> {
        Arc::new(crate::model::histogram::FloatHistogram {
            schema,
            count: pos.iter().map(|p| p.1).sum(),
            positive: pos.iter().copied().collect(),
            ..Default::default()
        })
    }

    #[test]
    fn histograms_over_the_bucket_limit_lose_resolution_until_they_fit() {
        let limits = |bucket_limit, max_schema| HistogramLimits {
            bucket_limit,
            max_schema,
        };
        // Schema 2, buckets 1..=8: at schema 1 they pair up (1,2)(3,4)(5,6)(7,8) → 4 buckets;
        // at schema 0, (1,2)(3,4) → 2.
        let h = hist(2, &(1..=8).map(|i| (i, 1.0)).collect::<Vec<_>>());
        let got = limits(4, 8).apply(h.clone()).unwrap();
        assert_eq!(got.schema, 1);
        assert_eq!(got.positive.values().copied().collect::<Vec<_>>(), [2.0; 4]);
        let got = limits(2, 8).apply(h.clone()).unwrap();
        assert_eq!((got.schema, got.positive.len()), (0, 2));
        assert_eq!(got.count, 8.0);
        // Within the limit: the same allocation comes back.
        assert!(Arc::ptr_eq(&limits(8, 8).apply(h.clone()).unwrap(), &h));
        // Indexes at or below zero floor the same way: 0 and -1 share schema-1 bucket 0.
        let got = limits(0, 1)
            .apply(hist(2, &[(0, 1.0), (-1, 1.0), (-2, 1.0)]))
            .unwrap();
        assert_eq!(
            got.positive
                .iter()
                .map(|(i, c)| (*i, *c))
                .collect::<Vec<_>>(),
            [(-1, 1.0), (0, 2.0)]
        );
        // A schema above 8 is stored at 8; a min bucket factor caps it lower.
        assert_eq!(
            limits(0, 8).apply(hist(12, &[(16, 1.0)])).unwrap().schema,
            8
        );
        assert_eq!(limits(0, 3).apply(hist(5, &[(16, 1.0)])).unwrap().schema, 3);
        // Too many buckets even at schema -4: refused.
        let wide = hist(-4, &[(1, 1.0), (5, 1.0), (9, 1.0)]);
        assert!(limits(2, 8).apply(wide).is_none());
    }

    /// One scrape of `keys` at `t` as `append_body` records it, then its staleness; `fail`
    /// makes it a failed scrape after the writes.
    fn scrape(
        st: &mut SeriesState,
        head: &crate::storage::Head,
        keys: &[&str],
        t: i64,
        fail: bool,
    ) {
        let iter = st.counts.begin();
        let mut app = head.appender();
        for k in keys {
            let i = match st.cache.find(k.as_bytes(), 0) {
                Some(i) => i,
                None => st.cache.insert(
                    k.as_bytes(),
                    CacheEntry::new(Some(Labels::from_pairs([("__name__", *k)]))),
                ),
            };
            let e = st.cache.get_mut(i);
            st.counts.touch(e, true);
            let l = e.labels.clone().unwrap();
            append_any(&mut *app, &l, &mut e.sref, t, 1.0);
        }
        if fail {
            app.rollback();
            st.revert();
            app = head.appender();
        }
        st.mark_vanished(&mut *app, t, if fail { 0 } else { iter });
        app.commit().unwrap();
    }

    /// The series whose newest sample is a stale marker.
    fn stale(head: &crate::storage::Head) -> Vec<String> {
        use crate::storage::Querier;
        let m = crate::model::Matcher::new(crate::model::MatchOp::Regex, "__name__", ".+").unwrap();
        let mut v: Vec<String> = head
            .select(&[m], i64::MIN, i64::MAX)
            .into_iter()
            .filter(|s| {
                s.samples
                    .last()
                    .is_some_and(|x| crate::model::is_stale_nan(x.1))
            })
            .map(|s| s.labels.metric_name().to_string())
            .collect();
        v.sort();
        v
    }

    /// Staleness skips its scan when a scrape wrote every live series again, and still marks
    /// exactly the vanished series otherwise (issue 19: the scan per scrape cost as much as
    /// the appends).
    #[test]
    fn vanished_series_are_marked_with_and_without_the_scan() {
        let head = crate::storage::Head::new(Default::default());
        let mut st = SeriesState::default();
        scrape(&mut st, &head, &["a", "b"], 1000, false);
        assert!(stale(&head).is_empty());
        scrape(&mut st, &head, &["a", "b"], 2000, false);
        assert!(stale(&head).is_empty());
        // b vanishes: the counts differ, the scan runs.
        scrape(&mut st, &head, &["a"], 3000, false);
        assert_eq!(stale(&head), ["b"]);
        // b is back and c is new: no live series is missing, nothing is stale.
        scrape(&mut st, &head, &["a", "b", "c"], 4000, false);
        assert!(stale(&head).is_empty());
        // A duplicate of a counts once, a new d not at all: c is found missing.
        scrape(&mut st, &head, &["a", "a", "b", "d"], 5000, false);
        assert_eq!(stale(&head), ["c"]);
        // A scrape that fails after writing a: every live series goes stale, a included.
        scrape(&mut st, &head, &["a"], 6000, true);
        assert_eq!(stale(&head), ["a", "b", "c", "d"]);
        // After the failure nothing is live, so the next scrape marks nothing.
        scrape(&mut st, &head, &["a"], 7000, false);
        assert_eq!(stale(&head), ["b", "c", "d"]);
    }
}
