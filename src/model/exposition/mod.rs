//! Our own parser for the Prometheus text format 0.0.4 and OpenMetrics 1.0.
//!
//! The parser is a streaming tokenizer that borrows from the input (labels and names are
//! `Cow`s that only allocate when an escape must be undone), as lenient or strict as
//! Prometheus's own parsers are for each format. [`validate_openmetrics`] adds the semantic
//! checks of the OpenMetrics specification (counter values, bucket order, grouping, ...) that
//! Prometheus does not make when scraping; it is used where spec conformance is wanted.

pub mod nhcb;
mod parser;
pub mod protobuf;
mod validate;

pub use parser::{bounded_quote, Parser, ParserOptions, MAX_LABELS_PER_SAMPLE};
pub use protobuf::{ProtoError, ProtoOptions, ProtoParser};
pub use validate::validate_openmetrics;

use std::borrow::Cow;

/// The two text formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    PrometheusText,
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
}

impl Format {
    /// Picks the parser for a response `Content-Type` as Prometheus does; `None` when the
    /// type is empty or not one of the text formats (the caller then applies its fallback).
    pub fn from_content_type(ct: &str) -> Option<Format> {
        match crate::model::httpconf::media_type(ct).as_str() {
            "application/openmetrics-text" => Some(Format::OpenMetrics),
            "text/plain" => Some(Format::PrometheusText),
            _ => None,
        }
    }
}

/// A metric family type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// counter
    Counter,
    /// gauge
    Gauge,
    /// histogram
    Histogram,
    /// gaugehistogram
    GaugeHistogram,
    /// summary
    Summary,
    /// info (OpenMetrics)
    Info,
    /// stateset (OpenMetrics)
    StateSet,
    /// unknown (OpenMetrics) / untyped (text)
    Unknown,
}

impl MetricType {
    /// The name used in Prometheus's metadata API (`unknown` for untyped).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

/// An exemplar attached to a sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar<'a> {
    /// Exemplar labels in written order.
    pub labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Exemplar value.
    pub value: f64,
    /// Timestamp in milliseconds, if given.
    pub timestamp_ms: Option<i64>,
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The series as written (name and label block), a cheap cache key for scrapers; built by
    /// the protobuf parser, which has no text to borrow.
    pub series: Cow<'a, [u8]>,
    /// Metric name (the series name, e.g. `x_bucket`).
    pub name: Cow<'a, str>,
    /// Labels in written order, without the name; empty when `labels_deferred`.
    pub labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The labels were left unparsed ([`ParserOptions::defer_labels`]): the parser's
    /// [`Parser::series_labels`] gives them.
    pub labels_deferred: bool,
    /// Value.
    pub value: f64,
    /// Timestamp in milliseconds, if given.
    pub timestamp_ms: Option<i64>,
    /// Timestamp as written, in seconds, for OpenMetrics ordering checks.
    pub timestamp_raw: Option<f64>,
    /// Exemplar, if any.
    pub exemplar: Option<Exemplar<'a>>,
    /// A native histogram (protobuf only); `value` is then meaningless.
    pub histogram: Option<std::sync::Arc<crate::model::histogram::FloatHistogram>>,
    /// A native histogram's further exemplars (it may carry several).
    pub more_exemplars: Vec<Exemplar<'a>>,
}

/// One entry of an exposition.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry<'a> {
    /// `# HELP name text`
    Help {
        /// Family name.
        name: Cow<'a, str>,
        /// Unescaped help text.
        text: Cow<'a, str>,
    },
    /// `# TYPE name type`
    Type {
        /// Family name.
        name: Cow<'a, str>,
        /// Declared type.
        kind: MetricType,
    },
    /// `# UNIT name unit` (OpenMetrics)
    Unit {
        /// Family name.
        name: Cow<'a, str>,
        /// Unit.
        unit: Cow<'a, str>,
    },
    /// A sample.
    Sample(Sample<'a>),
}

/// A sample's labels, in written order.
pub type LabelPairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// What a scraped body is written in: one of the text formats, or protobuf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// A text format.
    Text(Format),
    /// Delimited `io.prometheus.client.MetricFamily` messages.
    Protobuf,
}

impl Wire {
    /// Picks the parser for a response `Content-Type` as Prometheus does; `None` when the
    /// type is empty or unknown (the caller then applies its fallback).
    pub fn from_content_type(ct: &str) -> Option<Wire> {
        if crate::model::httpconf::media_type(ct) == protobuf::MEDIA_TYPE {
            return Some(Wire::Protobuf);
        }
        Format::from_content_type(ct).map(Wire::Text)
    }
}

/// Why a body could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A text format's error.
    #[error(transparent)]
    Text(#[from] ParseError),
    /// The protobuf format's error.
    #[error(transparent)]
    Proto(#[from] ProtoError),
}

/// A parser for either wire format, yielding the same entries.
pub enum Decoder<'a> {
    /// Text.
    Text(Parser<'a>),
    /// Protobuf.
    Proto(ProtoParser<'a>),
}

impl<'a> Decoder<'a> {
    /// A parser of `body` written in `wire`.
    pub fn new(body: &'a [u8], wire: Wire, text: ParserOptions, proto: ProtoOptions) -> Self {
        match wire {
            Wire::Text(f) => Decoder::Text(Parser::new(body, f, text)),
            Wire::Protobuf => Decoder::Proto(ProtoParser::new(body, proto)),
        }
    }

    /// A sample's name and labels, parsed in full when the text parser deferred them.
    pub fn series_labels(
        &self,
        s: &Sample<'a>,
    ) -> Result<(Cow<'a, str>, LabelPairs<'a>), DecodeError> {
        match self {
            Decoder::Text(p) => Ok(p.series_labels(s)?),
            Decoder::Proto(_) => Ok((s.name.clone(), s.labels.clone())),
        }
    }
}

impl<'a> Iterator for Decoder<'a> {
    type Item = Result<Entry<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Decoder::Text(p) => p.next().map(|r| r.map_err(DecodeError::from)),
            Decoder::Proto(p) => p.next().map(|r| r.map_err(DecodeError::from)),
        }
    }
}

/// A parse error with the 1-based line it was found on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

/// Parses all of `input`, returning every entry or the first error.
pub fn parse_all(input: &[u8], format: Format) -> Result<Vec<Entry<'_>>, ParseError> {
    Parser::new(input, format, ParserOptions::default()).collect()
}

/// A label value escaped for the text format: backslash, double quote and newline, as
/// client_golang writes them.
pub fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Formats a float as Prometheus's `formatOpenMetricsFloat` (`1.0`, `+Inf`, `1e-05`), used to
/// normalise `le` and `quantile` label values.
pub fn format_openmetrics_float(f: f64) -> String {
    if f == 1.0 {
        return "1.0".into();
    }
    if f == 0.0 {
        return "0.0".into();
    }
    if f == -1.0 {
        return "-1.0".into();
    }
    let s = format_go_g(f);
    if s.contains(['e', '.']) || !f.is_finite() {
        s
    } else {
        s + ".0"
    }
}

/// Formats like Go's `strconv.FormatFloat(f, 'g', -1, 64)`: shortest round-trip digits,
/// exponent form when the exponent is below -4 or at least 6 (strconv, not fmt `%v`).
pub fn format_go_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{f:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests;
