//! Decoding a push received on `/api/v1/write` (1.0 or 2.0) into appends, within limits, with
//! Prometheus's per-sample handling: samples the store refuses (out of order, too old, a
//! different value at the same time) are counted and reported, the rest are written.

use prost::Message;

use super::convert;
use super::proto::{self, v1, v2, DecodeError, Protocol};
use super::FamilyMetadata;
use crate::model::Labels;
use crate::storage::Appendable;

/// Bounds on one push.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest decompressed message.
    pub max_decompressed: usize,
    /// Most series in one push.
    pub max_series: usize,
    /// Most labels on one series.
    pub max_labels: usize,
    /// Longest label name (0: no limit).
    pub max_name_len: usize,
    /// Longest label value (0: no limit).
    pub max_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decompressed: 64 << 20,
            max_series: 1_000_000,
            max_labels: crate::model::exposition::MAX_LABELS_PER_SAMPLE,
            max_name_len: 0,
            max_value_len: 0,
        }
    }
}

/// What a push wrote.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Written {
    /// Float samples stored.
    pub samples: u64,
    /// Histogram samples stored.
    pub histograms: u64,
    /// Samples refused by the store (out of order, too old, duplicate).
    pub refused: u64,
    /// Metadata carried by the push.
    pub metadata: Vec<FamilyMetadata>,
}

/// Why a push was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// Not a body we can read (400).
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// Readable but invalid (400).
    #[error("{0}")]
    Invalid(String),
    /// The store failed (500).
    #[error("storage: {0}")]
    Storage(String),
}

fn check_labels(pairs: &[(String, String)], lim: &Limits) -> Result<Labels, ReceiveError> {
    if pairs.len() > lim.max_labels {
        return Err(ReceiveError::Invalid(format!(
            "series has {} labels, more than the limit of {}",
            pairs.len(),
            lim.max_labels
        )));
    }
    for (n, v) in pairs {
        // UTF-8 names are valid since Prometheus 3; only the empty name is not.
        if n.is_empty() {
            return Err(ReceiveError::Invalid(format!("invalid label name {n:?}")));
        }
        if lim.max_name_len > 0 && n.len() > lim.max_name_len {
            return Err(ReceiveError::Invalid(format!(
                "label name {n:?} is too long"
            )));
        }
        if lim.max_value_len > 0 && v.len() > lim.max_value_len {
            return Err(ReceiveError::Invalid(format!(
                "label {n:?} value is too long"
            )));
        }
    }
    let l = Labels::from_pairs(pairs.iter().cloned());
    if l.len() != pairs.iter().filter(|(_, v)| !v.is_empty()).count() {
        return Err(ReceiveError::Invalid(format!(
            "duplicate label names in {l:?}"
        )));
    }
    if l.get(crate::model::METRIC_NAME).is_none() {
        return Err(ReceiveError::Invalid(format!(
            "series {l:?} has no metric name"
        )));
    }
    Ok(l)
}

fn histograms(
    hs: &[proto::Histogram],
) -> Result<Vec<(i64, crate::model::histogram::FloatHistogram)>, ReceiveError> {
    hs.iter()
        .map(|h| {
            convert::from_proto(h)
                .map(|x| (h.timestamp, x))
                .map_err(|e| ReceiveError::Invalid(e.to_string()))
        })
        .collect()
}

struct Series {
    labels: Labels,
    samples: Vec<(i64, f64)>,
    histograms: Vec<(i64, crate::model::histogram::FloatHistogram)>,
}

fn decode_v1(raw: &[u8], lim: &Limits) -> Result<(Vec<Series>, Vec<FamilyMetadata>), ReceiveError> {
    let req = v1::WriteRequest::decode(raw).map_err(DecodeError::from)?;
    if req.timeseries.len() > lim.max_series {
        return Err(ReceiveError::Invalid(format!(
            "{} series in one push exceed the limit of {}",
            req.timeseries.len(),
            lim.max_series
        )));
    }
    let mut out = Vec::with_capacity(req.timeseries.len());
    for ts in req.timeseries {
        let pairs: Vec<(String, String)> =
            ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
        let labels = check_labels(&pairs, lim)?;
        let hs = histograms(&ts.histograms)?;
        out.push(Series {
            labels,
            samples: ts
                .samples
                .into_iter()
                .map(|s| (s.timestamp, s.value))
                .collect(),
            histograms: hs,
        });
    }
    let meta = req
        .metadata
        .into_iter()
        .map(|m| FamilyMetadata {
            metric: m.metric_family_name,
            kind: convert::type_name(m.r#type).into(),
            help: m.help,
            unit: m.unit,
        })
        .collect();
    Ok((out, meta))
}

fn decode_v2(raw: &[u8], lim: &Limits) -> Result<(Vec<Series>, Vec<FamilyMetadata>), ReceiveError> {
    let req = v2::Request::decode(raw).map_err(DecodeError::from)?;
    if req.timeseries.len() > lim.max_series {
        return Err(ReceiveError::Invalid(format!(
            "{} series in one push exceed the limit of {}",
            req.timeseries.len(),
            lim.max_series
        )));
    }
    let sym = |r: u32| -> Result<&str, ReceiveError> {
        req.symbols
            .get(r as usize)
            .map(String::as_str)
            .ok_or_else(|| ReceiveError::Invalid(format!("symbol reference {r} is out of range")))
    };
    let mut out = Vec::with_capacity(req.timeseries.len());
    let mut meta = Vec::new();
    for ts in &req.timeseries {
        if ts.labels_refs.len() % 2 != 0 {
            return Err(ReceiveError::Invalid(
                "labels_refs has an odd length".into(),
            ));
        }
        let mut pairs = Vec::with_capacity(ts.labels_refs.len() / 2);
        for c in ts.labels_refs.chunks(2) {
            pairs.push((sym(c[0])?.to_string(), sym(c[1])?.to_string()));
        }
        let labels = check_labels(&pairs, lim)?;
        if let Some(m) = &ts.metadata {
            let (help, unit) = (sym(m.help_ref)?, sym(m.unit_ref)?);
            if m.r#type != 0 || !help.is_empty() || !unit.is_empty() {
                let kind = convert::type_name(m.r#type);
                let name = labels.get(crate::model::METRIC_NAME).unwrap_or("");
                meta.push(FamilyMetadata {
                    metric: convert::family_name(name, kind).to_string(),
                    kind: kind.into(),
                    help: help.to_string(),
                    unit: unit.to_string(),
                });
            }
        }
        let hs = histograms(&ts.histograms)?;
        out.push(Series {
            labels,
            samples: ts.samples.iter().map(|s| (s.timestamp, s.value)).collect(),
            histograms: hs,
        });
    }
    Ok((out, meta))
}

/// Decodes `body` (snappy-compressed `protocol` message) and appends it to `store` in one
/// commit. Series are checked before anything is written, so a bad push writes nothing.
pub fn receive(
    body: &[u8],
    protocol: Protocol,
    store: &dyn Appendable,
    lim: &Limits,
) -> Result<Written, ReceiveError> {
    let raw = proto::decompress(body, lim.max_decompressed)?;
    let (series, metadata) = match protocol {
        Protocol::V1 => decode_v1(&raw, lim)?,
        Protocol::V2 => decode_v2(&raw, lim)?,
    };
    drop(raw);
    let mut app = store.appender();
    let mut w = Written {
        metadata,
        ..Default::default()
    };
    let mut floats = 0u64;
    for s in series {
        floats += s.samples.len() as u64;
        let mut r = None;
        // Each sample in its own order: the store refuses (and counts) what it must.
        for (t, v) in s.samples {
            let res = match r {
                Some(sref) => app.append_ref(sref, t, v),
                None => app.append(&s.labels, t, v).map(|x| {
                    r = Some(x);
                }),
            };
            if let Err(e) = res {
                app.rollback();
                return Err(ReceiveError::Storage(e.to_string()));
            }
        }
        for (t, h) in s.histograms {
            if let Err(e) = app.append_histogram(&s.labels, t, std::sync::Arc::new(h)) {
                app.rollback();
                return Err(ReceiveError::Storage(e.to_string()));
            }
            w.histograms += 1;
        }
    }
    let stats = app
        .commit()
        .map_err(|e| ReceiveError::Storage(e.to_string()))?;
    w.refused = stats.out_of_order + stats.out_of_bounds + stats.duplicate;
    w.samples = floats.saturating_sub(w.refused);
    Ok(w)
}
