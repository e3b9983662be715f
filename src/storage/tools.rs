//! Offline tools over a data directory: `appliance tsdb import openmetrics` (backfill as
//! blocks) and `appliance tsdb analyze` (cardinality, in the spirit of `promtool tsdb analyze`).
//! They use the store's public operations only and never run beside the store's own process
//! on the same directory (the store's lock refuses that).

use std::fmt::Write;
use std::path::Path;

use super::db::{write_block_from_head, Db, DbError, DbOptions};
use super::{Appendable, Head, HeadOptions, SeriesRef, StorageError};
use crate::model::exposition::{Entry, Format, ParseError, Parser, ParserOptions};
use crate::model::Labels;

/// What an offline tool can fail on; each message names the file or directory.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The input is not valid OpenMetrics (the error names the line).
    #[error("{file}: {source}")]
    Parse {
        /// The input file.
        file: String,
        /// The parser's error.
        source: ParseError,
    },
    /// An imported sample carries no timestamp.
    #[error("{file}:{line}: sample {name} has no timestamp; imports need them")]
    NoTimestamp {
        /// The input file.
        file: String,
        /// The 1-based line.
        line: usize,
        /// The metric name.
        name: String,
    },
    /// Appending to the in-memory head failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The store refused an operation.
    #[error("{what}: {source}")]
    Db {
        /// What was being done.
        what: String,
        /// The error.
        source: DbError,
    },
    /// Formatting the report failed (it cannot: it writes to a string).
    #[error(transparent)]
    Fmt(#[from] std::fmt::Error),
}

/// Backfills timestamped OpenMetrics samples from `file` as persisted blocks (one per 2 h
/// range, then compacted) in `data_dir`, which `run` serves (a running appliance loads them
/// within a minute). Returns the samples imported.
pub fn import_openmetrics(file: &Path, data_dir: &Path, opts: DbOptions) -> Result<u64, ToolError> {
    let body = std::fs::read(file).map_err(|source| ToolError::Io {
        what: format!("reading {}", file.display()),
        source,
    })?;
    // The samples are gathered compressed in an in-memory head, then written out per range.
    let head = Head::new(HeadOptions::default());
    let mut refs: std::collections::HashMap<Vec<u8>, SeriesRef> = std::collections::HashMap::new();
    let mut app = head.appender();
    let (mut n, mut in_batch) = (0u64, 0usize);
    let mut out_of_order = 0;
    let mut parser = Parser::new(&body, Format::OpenMetrics, ParserOptions::default());
    while let Some(e) = parser.next() {
        let e = e.map_err(|source| ToolError::Parse {
            file: file.display().to_string(),
            source,
        })?;
        let Entry::Sample(s) = e else { continue };
        let Some(t) = s.timestamp_ms else {
            return Err(ToolError::NoTimestamp {
                file: file.display().to_string(),
                line: parser.line(),
                name: s.name.to_string(),
            });
        };
        match refs.get(&s.series[..]) {
            Some(r) => app.append_ref(*r, t, s.value)?,
            None => {
                let mut pairs: Vec<(String, String)> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                pairs.push((crate::model::METRIC_NAME.into(), s.name.to_string()));
                let r = app.append(&Labels::from_pairs(pairs), t, s.value)?;
                refs.insert(s.series.to_vec(), r);
            }
        }
        n += 1;
        in_batch += 1;
        if in_batch >= 100_000 {
            out_of_order += app.commit()?.out_of_order;
            app = head.appender();
            in_batch = 0;
        }
    }
    out_of_order += app.commit()?.out_of_order;
    if out_of_order > 0 {
        tracing::warn!(
            count = out_of_order,
            "samples out of order within their series were skipped"
        );
    }
    std::fs::create_dir_all(data_dir).map_err(|source| ToolError::Io {
        what: format!("creating {}", data_dir.display()),
        source,
    })?;
    let range = DbOptions::default().block_range_ms;
    let (min, max) = head.time_range();
    if min <= max {
        let mut a = min.div_euclid(range) * range;
        while a <= max {
            write_block_from_head(data_dir, &head, a, a + range).map_err(|source| {
                ToolError::Db {
                    what: format!("writing a block into {}", data_dir.display()),
                    source,
                }
            })?;
            a += range;
        }
    }
    drop(head);
    // Compact now, or, when the appliance is running on this directory, leave the blocks to
    // it: it picks them up and compacts them within a minute.
    match Db::open(data_dir, opts) {
        Ok((db, _)) => db.compact_now(),
        Err(DbError::Locked(_)) => tracing::info!(
            "the appliance is running on this data directory; it will load the new blocks within a minute"
        ),
        Err(source) => {
            return Err(ToolError::Db {
                what: "opening the store to compact the new blocks".into(),
                source,
            })
        }
    }
    Ok(n - out_of_order)
}

/// The store's cardinality as text. Reads the data directory; run it while the appliance is
/// stopped.
pub fn analyze(data_dir: &Path, limit: usize, opts: DbOptions) -> Result<String, ToolError> {
    let (db, report) = Db::open(data_dir, opts).map_err(|source| ToolError::Db {
        what: format!("opening the store in {}", data_dir.display()),
        source,
    })?;
    let corruption = report.wal_corruption;
    let s = db.stats(limit);
    let st = &s.store;
    let mut out = String::new();
    if let Some(c) = corruption {
        writeln!(
            out,
            "warning: write-ahead log damaged ({c}); figures cover what precedes the damage"
        )?;
    }
    let span = if st.min_time > st.max_time {
        "empty".to_string()
    } else {
        format!(
            "{} .. {}",
            crate::model::time::format_rfc3339(st.min_time),
            crate::model::time::format_rfc3339(st.max_time)
        )
    };
    writeln!(out, "Time range: {span}")?;
    writeln!(out, "Series: {}", st.num_series)?;
    writeln!(out, "Samples: {}", st.num_samples)?;
    writeln!(
        out,
        "Blocks: {} ({} bytes); write-ahead log: {} bytes",
        st.blocks.len(),
        st.blocks_bytes,
        st.wal_bytes
    )?;
    for q in &st.quarantined {
        writeln!(out, "Quarantined block {}: {}", q.ulid, q.reason)?;
    }
    writeln!(
        out,
        "Head: {} series, {} label pairs, {} chunks",
        s.num_series, s.num_label_pairs, s.chunk_count
    )?;
    let churn = db.churn(limit);
    let lists = [
        (
            "Highest cardinality metric names",
            &s.series_count_by_metric_name,
        ),
        (
            "Highest cardinality labels (distinct values)",
            &s.label_value_count_by_label_name,
        ),
        (
            "Most common label pairs (series)",
            &s.series_count_by_label_value_pair,
        ),
        (
            "Label names with highest cumulative value length (bytes)",
            &s.memory_in_bytes_by_label_name,
        ),
        (
            "Label pairs most involved in churning (series starting or ending inside a block)",
            &churn,
        ),
    ];
    for (title, list) in lists {
        writeln!(out, "\n{title}:")?;
        for (name, n) in list.iter() {
            writeln!(out, "{n:>10} {name}")?;
        }
    }
    Ok(out)
}
