//! Local storage: the `Appender` / `Querier` seams every writer and reader uses; the in-memory
//! head (XOR chunks, inverted index, write-ahead log); persisted blocks; and the `Db` that
//! merges them and manages their life (cut, compaction, retention, quarantine).
//!
//! Storage knows nothing of scraping, PromQL or HTTP.

pub mod block;
pub mod chunk;
pub mod config;
pub mod db;
pub mod exemplar;
pub mod head;
pub mod head_chunks;
pub mod tools;
pub mod wal;

pub use config::StorageConfig;
pub use db::{BlockInfo, Db, DbOptions, HeadFigures, QuarantinedBlock, StoreStats};
pub use exemplar::{Exemplar, ExemplarSeries};
pub use head::{Head, HeadOptions};

use crate::model::{Labels, Matcher};

/// Why storage refused something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The sample is older than the newest one already stored for its series.
    #[error("out of order sample")]
    OutOfOrder,
    /// Same timestamp as the newest sample, different value.
    #[error("duplicate sample for timestamp")]
    Duplicate,
    /// Older than what the head still keeps.
    #[error("out of bounds")]
    OutOfBounds,
    /// A label set without a metric name or with an empty name.
    #[error("invalid series labels: {0}")]
    InvalidLabels(String),
    /// The write-ahead log could not be read or written.
    #[error("wal: {0}")]
    Wal(String),
    /// A series ref whose series no longer exists (removed by retention); append by labels.
    #[error("unknown series reference")]
    UnknownRef,
}

/// A handle to a stored series, returned by [`Appender::append`]; appending by ref skips the
/// label lookup. It stays valid until retention removes the series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeriesRef(pub u64);

impl From<SeriesRef> for u64 {
    fn from(r: SeriesRef) -> u64 {
        r.0
    }
}

/// What a commit did, for the caller's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Samples stored.
    pub appended: u64,
    /// Series created by this commit.
    pub series_added: u64,
    /// Samples refused as out of order.
    pub out_of_order: u64,
    /// Samples refused as duplicates with a different value.
    pub duplicate: u64,
    /// Samples refused as too old.
    pub out_of_bounds: u64,
}

/// A batch of samples that becomes visible all at once on `commit`, or not at all.
pub trait Appender: Send {
    /// Adds a sample to the batch, creating the series if needed; returns its ref.
    fn append(&mut self, labels: &Labels, t_ms: i64, v: f64) -> Result<SeriesRef, StorageError>;
    /// Adds a native histogram sample, creating the series if needed; returns its ref.
    fn append_histogram(
        &mut self,
        labels: &Labels,
        t_ms: i64,
        h: std::sync::Arc<crate::model::histogram::FloatHistogram>,
    ) -> Result<SeriesRef, StorageError>;
    /// Adds a sample by a ref from an earlier `append`.
    fn append_ref(&mut self, r: SeriesRef, t_ms: i64, v: f64) -> Result<(), StorageError>;
    /// Adds an exemplar of the series `labels`, kept on commit (stores without exemplars
    /// drop it).
    fn append_exemplar(&mut self, _labels: &Labels, _e: Exemplar) {}
    /// Makes the batch visible; per-sample refusals are counted, not fatal.
    fn commit(self: Box<Self>) -> Result<CommitStats, StorageError>;
    /// Discards the batch.
    fn rollback(self: Box<Self>);
}

/// Something that hands out appenders.
pub trait Appendable: Send + Sync {
    /// A new, empty batch.
    fn appender(&self) -> Box<dyn Appender>;
}

/// One series with its samples in a time range.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The series' labels.
    pub labels: Labels,
    /// Float samples in time order.
    pub samples: Vec<(i64, f64)>,
    /// Native histogram samples in time order.
    pub histograms: Vec<(i64, std::sync::Arc<crate::model::histogram::FloatHistogram>)>,
}

/// Read access to stored series.
pub trait Querier: Send + Sync {
    /// Series matching all `matchers` that have samples in `[mint, maxt]`, with those samples.
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series>;
    /// Warnings about data in `[mint, maxt]` the store cannot give (blocks quarantined as
    /// damaged), for queries to pass on.
    fn missing(&self, _mint: i64, _maxt: i64) -> Vec<String> {
        Vec::new()
    }
    /// Exemplars in `[mint, maxt]` of series matching any of the matcher `sets`, sorted by
    /// series labels (none from a store that keeps none).
    fn exemplars(&self, _sets: &[Vec<Matcher>], _mint: i64, _maxt: i64) -> Vec<ExemplarSeries> {
        Vec::new()
    }
    /// Label sets of series matching all `matchers` with samples in `[mint, maxt]`.
    fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels>;
    /// Sorted label names of matching series (all series when `matchers` is empty).
    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<String>;
    /// Sorted values of label `name` over matching series.
    fn label_values(&self, name: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<String>;
}

/// Cardinality figures for `/api/v1/status/tsdb`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TsdbStats {
    /// Live series.
    pub num_series: u64,
    /// Distinct label pairs.
    pub num_label_pairs: u64,
    /// Chunks held.
    pub chunk_count: u64,
    /// Oldest sample (ms), or `i64::MAX` when empty.
    pub min_time: i64,
    /// Newest sample (ms), or `i64::MIN` when empty.
    pub max_time: i64,
    /// Top metric names by series count.
    pub series_count_by_metric_name: Vec<(String, u64)>,
    /// Top label names by number of distinct values.
    pub label_value_count_by_label_name: Vec<(String, u64)>,
    /// Top label names by bytes of their values.
    pub memory_in_bytes_by_label_name: Vec<(String, u64)>,
    /// Top label pairs by series count.
    pub series_count_by_label_value_pair: Vec<(String, u64)>,
    /// Figures of the whole store (blocks and head) and of the head alone; the fields above
    /// describe the head, except the top lists, which cover the whole store once blocks exist.
    pub store: StoreStats,
}
