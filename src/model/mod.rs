//! The data model shared by every other module: label sets, matchers, Prometheus durations and
//! timestamps, the exposition-format parser and relabelling.
//!
//! This module depends on nothing else in the crate and must stay that way: storage, scrape,
//! promql and http all build on it, so it holds no I/O, no clocks and no global state (`tls` reads the system's root
//! certificates when asked, nothing more).

pub mod event;
pub mod exposition;
pub mod files;
pub mod gofmt;
pub mod gotmpl;
pub mod histogram;
pub mod histogram_ops;
pub mod httpconf;
pub mod labels;
pub mod matcher;
pub mod nhcb;
pub mod relabel;
pub mod secret;
pub mod time;
pub mod tls;
pub mod yaml;

pub use labels::{Label, LabelIter, LabelRef, Labels, LabelsBuilder};
pub use matcher::{MatchOp, Matcher};
pub use secret::{Secret, SecretUrl};

/// The value Prometheus writes to mark a series stale: a NaN with a payload that ordinary
/// arithmetic never produces, so it survives storage bit-for-bit and can be told apart.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The stale-marker value as an `f64`.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is a staleness marker (compares bits, since every NaN compares unequal).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The reserved label that carries a metric's name.
pub const METRIC_NAME: &str = "__name__";
