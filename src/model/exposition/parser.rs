//! The tokenizer behind [`super::Parser`]: one line at a time, borrowing from the input.

use std::borrow::Cow;

use super::{format_openmetrics_float, Entry, Exemplar, Format, MetricType, ParseError, Sample};

type LabelPairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// Parser switches.
#[derive(Clone, Copy, Debug, Default)]
pub struct ParserOptions {
    /// Drop OpenMetrics `<family>_created` samples of counters, histograms and summaries
    /// (Prometheus does so only when created-timestamp ingestion is enabled; off by default).
    pub skip_created_series: bool,
    /// Keep `le` / `quantile` values as written instead of Prometheus's canonical float form
    /// (for checks that must see the original spelling).
    pub keep_raw_label_values: bool,
    /// A sample with more than this many labels, counting `reserved_labels`, is an error
    /// (0 = no limit): the scrape config's `label_limit`, checked before the line costs more.
    pub label_limit: u64,
    /// Labels the caller will add to every sample, counted against `label_limit`.
    pub reserved_labels: u64,
    /// Longest label name (0 = no limit).
    pub label_name_length_limit: u64,
    /// Longest label value (0 = no limit).
    pub label_value_length_limit: u64,
    /// Leave a sample's label block unparsed (`Sample::labels_deferred`): only its end is
    /// found. A scraper whose cache knows the series bytes needs no labels; for a new series
    /// it asks [`Parser::series_labels`], which parses and checks them in full.
    pub defer_labels: bool,
}

/// Most labels one sample may have, whatever the scrape config says: no real series comes
/// near it, and a hostile line of a million labels is refused before it costs memory.
pub const MAX_LABELS_PER_SAMPLE: usize = 10_000;

/// Up to this many labels the duplicate check scans the labels read so far; past it, a hash
/// set takes over, so a line of 100,000 labels costs linear time, not quadratic.
const LINEAR_DUP_CHECK: usize = 16;

/// `b` (text read from the body) quoted for an error message, bounded as [`bounded_quote`].
fn bounded_bytes(b: &[u8]) -> String {
    bounded_quote(&String::from_utf8_lossy(&b[..b.len().min(256)]))
}

/// `s` quoted for an error message, cut to 50 characters as Prometheus's `%.50q` does: a
/// hostile 50 MB label value must not become a 50 MB log line or API answer.
pub fn bounded_quote(s: &str) -> String {
    match s.char_indices().nth(50) {
        Some((i, _)) => format!("{:?}…", &s[..i]),
        None => format!("{s:?}"),
    }
}

/// A streaming parser over one exposition body; iterate it for entries.
pub struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    line: usize,
    format: Format,
    opts: ParserOptions,
    done: bool,
    family: Option<(String, MetricType)>,
}

struct Line<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    /// A parser for `buf` in `format`.
    pub fn new(buf: &'a [u8], format: Format, opts: ParserOptions) -> Self {
        Parser {
            buf,
            pos: 0,
            line: 0,
            format,
            opts,
            done: false,
            family: None,
        }
    }

    /// The 1-based number of the line last read.
    pub fn line(&self) -> usize {
        self.line
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: self.line,
            msg: msg.into(),
        })
    }

    fn next_entry(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        loop {
            if self.pos >= self.buf.len() {
                self.done = true;
                if self.format == Format::OpenMetrics {
                    self.line += 1;
                    return self.err("data does not end with # EOF");
                }
                return Ok(None);
            }
            let rest = &self.buf[self.pos..];
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            let line = &rest[..end];
            self.pos += end + 1;
            self.line += 1;
            let entry = match self.format {
                Format::PrometheusText => self.line_or_full_error(line, Self::text_line)?,
                Format::OpenMetrics => {
                    if line == b"# EOF" {
                        self.done = true;
                        if self.pos < self.buf.len() {
                            self.line += 1;
                            return self.err("unexpected data after # EOF");
                        }
                        return Ok(None);
                    }
                    self.line_or_full_error(line, Self::om_line)?
                }
            };
            if let Some(e) = entry {
                if let Entry::Type { name, kind } = &e {
                    self.family = Some((name.to_string(), *kind));
                }
                if let Entry::Sample(s) = &e {
                    if self.skip_sample(s) {
                        continue;
                    }
                }
                return Ok(Some(e));
            }
        }
    }

    /// Parses one line; when labels are deferred and the line is bad, parses it again in
    /// full, so the error is the one the label block would have raised first.
    fn line_or_full_error(
        &mut self,
        line: &'a [u8],
        parse: fn(&Self, &'a [u8]) -> Result<Option<Entry<'a>>, ParseError>,
    ) -> Result<Option<Entry<'a>>, ParseError> {
        match parse(self, line) {
            Err(_) if self.opts.defer_labels => {
                self.opts.defer_labels = false;
                let full = parse(self, line);
                self.opts.defer_labels = true;
                // A line the full parse accepts is accepted, with its labels parsed.
                full
            }
            r => r,
        }
    }

    fn skip_sample(&self, s: &Sample<'_>) -> bool {
        if !self.opts.skip_created_series || self.format != Format::OpenMetrics {
            return false;
        }
        match &self.family {
            Some((
                fam,
                MetricType::Counter
                | MetricType::Histogram
                | MetricType::Summary
                | MetricType::GaugeHistogram,
            )) => s.name.strip_prefix(fam.as_str()) == Some("_created"),
            _ => false,
        }
    }

    // ---- Prometheus text format ----

    fn text_line(&self, raw: &'a [u8]) -> Result<Option<Entry<'a>>, ParseError> {
        let mut l = Line { b: raw, i: 0 };
        l.skip_ws();
        if l.at_end() {
            return Ok(None);
        }
        if l.peek() == Some(b'#') {
            l.i += 1;
            l.skip_ws();
            let kw_help =
                l.rest().starts_with(b"HELP") && matches!(l.b.get(l.i + 4), Some(b' ' | b'\t'));
            let kw_type =
                l.rest().starts_with(b"TYPE") && matches!(l.b.get(l.i + 4), Some(b' ' | b'\t'));
            if !kw_help && !kw_type {
                return Ok(None);
            }
            l.i += 4;
            l.skip_ws();
            let name = self.metadata_name(&mut l)?;
            if kw_help {
                if l.at_end() {
                    return Ok(Some(Entry::Help {
                        name,
                        text: Cow::Borrowed(""),
                    }));
                }
                if !l.skip_ws() {
                    return self.err("invalid metric name in HELP");
                }
                let text = self.utf8(l.rest())?;
                return Ok(Some(Entry::Help {
                    name,
                    text: unescape(text, false),
                }));
            }
            if !l.skip_ws() {
                return self.err("expected type in TYPE line");
            }
            let word = l.take_while(|c| c != b' ' && c != b'\t');
            l.skip_ws();
            if !l.at_end() {
                return self.err("unexpected text after type in TYPE line");
            }
            let kind = match word {
                b"counter" => MetricType::Counter,
                b"gauge" => MetricType::Gauge,
                b"histogram" => MetricType::Histogram,
                b"gaugehistogram" => MetricType::GaugeHistogram,
                b"summary" => MetricType::Summary,
                b"untyped" => MetricType::Unknown,
                _ => return self.err(format!("invalid metric type {}", bounded_bytes(word))),
            };
            return Ok(Some(Entry::Type { name, kind }));
        }
        let series_start = l.i;
        let mut name = self.opt_metric_name(&mut l)?;
        let mut series_end = l.i;
        let mut spaced = l.skip_ws();
        let mut labels = Vec::new();
        let mut labels_deferred = false;
        if l.peek() == Some(b'{') {
            l.i += 1;
            match self.deferred_end(&l, &name) {
                Some(end) => {
                    l.i = end;
                    labels_deferred = true;
                }
                None => labels = self.labels(&mut l, &mut name, false)?,
            }
            series_end = l.i;
            spaced = l.skip_ws();
        }
        let Some(name) = name else {
            return self.err("metric name not set");
        };
        if !spaced {
            return self.err(if l.at_end() {
                "expected value after metric"
            } else {
                "invalid character after metric name or labels"
            });
        }
        let vtok = l.take_while(|c| c != b' ' && c != b'\t');
        if vtok.is_empty() {
            return self.err("expected value after metric");
        }
        let value = self.float(vtok)?;
        l.skip_ws();
        let mut timestamp_ms = None;
        if !l.at_end() {
            let ttok = l.take_while(|c| c != b' ' && c != b'\t');
            let s = std::str::from_utf8(ttok)
                .ok()
                .and_then(|s| s.parse::<i64>().ok());
            let Some(ts) = s else {
                return self.err(format!("invalid timestamp {}", bounded_bytes(ttok)));
            };
            timestamp_ms = Some(ts);
            l.skip_ws();
            if !l.at_end() {
                return self.err("unexpected text after timestamp");
            }
        }
        self.normalize(&name, &mut labels);
        Ok(Some(Entry::Sample(Sample {
            series: Cow::Borrowed(&raw[series_start..series_end]),
            name,
            labels,
            labels_deferred,
            value,
            timestamp_ms,
            timestamp_raw: timestamp_ms.map(|t| t as f64 / 1000.0),
            exemplar: None,
            histogram: None,
            more_exemplars: Vec::new(),
        })))
    }

    // ---- OpenMetrics ----

    fn om_line(&self, raw: &'a [u8]) -> Result<Option<Entry<'a>>, ParseError> {
        let mut l = Line { b: raw, i: 0 };
        if l.at_end() {
            return self.err("unexpected empty line");
        }
        if l.peek() == Some(b'#') {
            let rest = l.rest();
            let kw = if rest.starts_with(b"# HELP ") {
                "HELP"
            } else if rest.starts_with(b"# TYPE ") {
                "TYPE"
            } else if rest.starts_with(b"# UNIT ") {
                "UNIT"
            } else {
                return self.err(format!(
                    "invalid comment or metadata line {}",
                    bounded_bytes(raw)
                ));
            };
            l.i += 7;
            let name = self.metadata_name(&mut l)?;
            if !l.eat(b' ') {
                return self.err(format!("expected text in {kw}"));
            }
            let text = l.rest();
            match kw {
                "HELP" => {
                    let text = self.utf8(text)?;
                    Ok(Some(Entry::Help {
                        name,
                        text: unescape(text, true),
                    }))
                }
                "UNIT" => {
                    let unit = self.utf8(text)?;
                    if unit.contains([' ', '\t']) {
                        return self.err("invalid unit");
                    }
                    if !unit.is_empty() && !name.ends_with(&format!("_{unit}")) {
                        return self.err(format!(
                            "unit {} not a suffix of metric {}",
                            bounded_quote(unit),
                            bounded_quote(&name)
                        ));
                    }
                    Ok(Some(Entry::Unit {
                        name,
                        unit: Cow::Borrowed(unit),
                    }))
                }
                _ => {
                    let kind = match text {
                        b"counter" => MetricType::Counter,
                        b"gauge" => MetricType::Gauge,
                        b"histogram" => MetricType::Histogram,
                        b"gaugehistogram" => MetricType::GaugeHistogram,
                        b"summary" => MetricType::Summary,
                        b"info" => MetricType::Info,
                        b"stateset" => MetricType::StateSet,
                        b"unknown" => MetricType::Unknown,
                        _ => {
                            return self.err(format!("invalid metric type {}", bounded_bytes(text)))
                        }
                    };
                    Ok(Some(Entry::Type { name, kind }))
                }
            }
        } else {
            let mut name = self.opt_metric_name(&mut l)?;
            let mut labels = Vec::new();
            let mut labels_deferred = false;
            if l.peek() == Some(b'{') {
                l.i += 1;
                match self.deferred_end(&l, &name) {
                    Some(end) => {
                        l.i = end;
                        labels_deferred = true;
                    }
                    None => labels = self.labels(&mut l, &mut name, true)?,
                }
            }
            let series = &raw[..l.i];
            let Some(name) = name else {
                return self.err("metric name not set");
            };
            if !l.eat(b' ') {
                return self.err(if l.at_end() {
                    "expected value after metric"
                } else {
                    "invalid character after metric name or labels"
                });
            }
            let vtok = l.take_while(|c| c != b' ');
            let value = self.float(vtok)?;
            let mut timestamp_ms = None;
            let mut timestamp_raw = None;
            let mut exemplar = None;
            if !l.at_end() {
                if !l.eat(b' ') {
                    return self.err("invalid character after value");
                }
                if l.peek() != Some(b'#') {
                    let ttok = l.take_while(|c| c != b' ');
                    let (ms, raw) = self.om_timestamp(ttok)?;
                    timestamp_ms = Some(ms);
                    timestamp_raw = Some(raw);
                    if !l.at_end() && !l.eat(b' ') {
                        return self.err("invalid character after timestamp");
                    }
                }
                if !l.at_end() || l.b.last() == Some(&b' ') {
                    exemplar = Some(self.om_exemplar(&mut l)?);
                }
            }
            self.normalize(&name, &mut labels);
            Ok(Some(Entry::Sample(Sample {
                series: Cow::Borrowed(series),
                name,
                labels,
                labels_deferred,
                value,
                timestamp_ms,
                timestamp_raw,
                exemplar,
                histogram: None,
                more_exemplars: Vec::new(),
            })))
        }
    }

    fn om_exemplar(&self, l: &mut Line<'a>) -> Result<Exemplar<'a>, ParseError> {
        if !(l.eat(b'#') && l.eat(b' ') && l.eat(b'{')) {
            return self.err("invalid exemplar: expected \" # {\"");
        }
        let mut none = None;
        let labels = self.labels(l, &mut none, true)?;
        if none.is_some() {
            return self.err("invalid exemplar: metric name in exemplar labels");
        }
        if !l.eat(b' ') {
            return self.err("invalid exemplar: expected value");
        }
        let vtok = l.take_while(|c| c != b' ');
        let value = self.float(vtok)?;
        let mut timestamp_ms = None;
        if !l.at_end() {
            if !l.eat(b' ') {
                return self.err("invalid exemplar: junk after value");
            }
            let ttok = l.take_while(|c| c != b' ');
            timestamp_ms = Some(self.om_timestamp(ttok)?.0);
            if !l.at_end() {
                return self.err("invalid exemplar: junk after timestamp");
            }
        }
        Ok(Exemplar {
            labels,
            value,
            timestamp_ms,
        })
    }

    fn om_timestamp(&self, tok: &[u8]) -> Result<(i64, f64), ParseError> {
        let f = self.float(tok).map_err(|_| ParseError {
            line: self.line,
            msg: format!("invalid timestamp {}", bounded_bytes(tok)),
        })?;
        if !f.is_finite() {
            return self.err(format!("invalid timestamp {}", bounded_bytes(tok)));
        }
        Ok(((f * 1000.0).round() as i64, f))
    }

    // ---- deferred labels ----

    /// Where the label block that starts at `l` ends (after its `}`), when labels are
    /// deferred and the block can be skipped: the name is written before the braces and a
    /// closing brace outside quotes is on the line. Otherwise None, and the caller parses the
    /// block in full (which reports whatever is wrong with it).
    fn deferred_end(&self, l: &Line<'a>, name: &Option<Cow<'a, str>>) -> Option<usize> {
        if !self.opts.defer_labels || name.is_none() {
            return None;
        }
        let mut end = None;
        outside_quotes(&l.b[l.i..], |k, c| {
            if c == b'}' {
                end = Some(l.i + k + 1);
            }
            end.is_none()
        });
        end
    }

    /// The name and labels of a sample whose labels were deferred, parsed and checked in full
    /// as they would have been in place (errors name the sample's line). Call it before the
    /// next entry is read: the family context (for `le` / `quantile` forms) is the sample's.
    pub fn series_labels(
        &self,
        s: &Sample<'a>,
    ) -> Result<(Cow<'a, str>, LabelPairs<'a>), ParseError> {
        if !s.labels_deferred {
            return Ok((s.name.clone(), s.labels.clone()));
        }
        let b: &'a [u8] = match &s.series {
            Cow::Borrowed(b) => b,
            // Only the protobuf parser builds series bytes, and it never defers labels.
            Cow::Owned(_) => return self.err("labels of a built series cannot be re-read"),
        };
        let mut l = Line { b, i: 0 };
        let mut name = self.opt_metric_name(&mut l)?;
        if self.format == Format::PrometheusText {
            l.skip_ws();
        }
        if !l.eat(b'{') {
            return self.err("invalid label set");
        }
        let mut labels = self.labels(&mut l, &mut name, self.format == Format::OpenMetrics)?;
        if !l.at_end() {
            return self.err("invalid character after metric name or labels");
        }
        let Some(name) = name else {
            return self.err("metric name not set");
        };
        self.normalize(&name, &mut labels);
        Ok((name, labels))
    }

    // ---- shared pieces ----

    fn utf8(&self, b: &'a [u8]) -> Result<&'a str, ParseError> {
        std::str::from_utf8(b).map_err(|_| ParseError {
            line: self.line,
            msg: "invalid UTF-8".into(),
        })
    }

    fn float(&self, tok: &[u8]) -> Result<f64, ParseError> {
        let bad = || ParseError {
            line: self.line,
            msg: format!("invalid value {}", bounded_bytes(tok)),
        };
        let s = std::str::from_utf8(tok).map_err(|_| bad())?;
        // Rust's float grammar is Go's minus hex and underscores, which Prometheus rejects too;
        // only the spelled-out infinities differ, and Go accepts those as well.
        if s.is_empty() || s.bytes().any(|c| c == b'_' || c == b'x' || c == b'X') {
            return Err(bad());
        }
        let f = s.parse::<f64>().map_err(|_| bad())?;
        // Go's ParseFloat reports a finite literal beyond the float range (`1e400`) as a
        // range error, which Prometheus refuses; only spelled-out infinities are infinite.
        if f.is_infinite()
            && !s
                .trim_start_matches(['+', '-'])
                .to_ascii_lowercase()
                .starts_with("inf")
        {
            return Err(bad());
        }
        Ok(f)
    }

    fn metadata_name(&self, l: &mut Line<'a>) -> Result<Cow<'a, str>, ParseError> {
        if l.peek() == Some(b'"') {
            return self.quoted(l);
        }
        let tok = l.take_while(is_metric_char);
        if tok.is_empty() || tok[0].is_ascii_digit() {
            return self.err("invalid metric name in comment");
        }
        Ok(Cow::Borrowed(self.utf8(tok)?))
    }

    fn opt_metric_name(&self, l: &mut Line<'a>) -> Result<Option<Cow<'a, str>>, ParseError> {
        if l.peek() == Some(b'{') {
            return Ok(None);
        }
        let tok = l.take_while(is_metric_char);
        if tok.is_empty() || tok[0].is_ascii_digit() {
            return self.err(format!(
                "{:?} is not a valid start token",
                l.peek().map(char::from).unwrap_or(' ')
            ));
        }
        Ok(Some(Cow::Borrowed(self.utf8(tok)?)))
    }

    /// Parses label pairs after `{` up to and including `}`. In strict (OpenMetrics) mode,
    /// exactly the grammar of the spec; otherwise Prometheus's lenient text grammar.
    fn labels(
        &self,
        l: &mut Line<'a>,
        name: &mut Option<Cow<'a, str>>,
        strict: bool,
    ) -> Result<LabelPairs<'a>, ParseError> {
        let mut out: LabelPairs<'a> = Vec::new();
        let mut seen: Option<std::collections::HashSet<Cow<'a, str>>> = None;
        let mut first = true;
        let o = &self.opts;
        let metric = |name: &Option<Cow<'a, str>>| {
            let n = name.as_deref().unwrap_or("");
            n.chars().take(50).collect::<String>()
        };
        loop {
            if !strict {
                l.skip_ws();
            }
            if l.eat(b'}') {
                break;
            }
            let quoted = l.peek() == Some(b'"');
            let lname: Cow<'a, str> = if quoted {
                self.quoted(l)?
            } else {
                let tok = l.take_while(|c| c.is_ascii_alphanumeric() || c == b'_');
                if tok.is_empty() || tok[0].is_ascii_digit() {
                    return self.err(format!(
                        "unexpected {:?} in label set, expected label name",
                        l.peek().map(char::from).unwrap_or('\n')
                    ));
                }
                Cow::Borrowed(self.utf8(tok)?)
            };
            if !strict {
                l.skip_ws();
            }
            if l.eat(b'=') {
                if !strict {
                    l.skip_ws();
                }
                if l.peek() != Some(b'"') {
                    return self.err(format!(
                        "expected label value for {}, got {:?}",
                        bounded_quote(&lname),
                        l.peek().map(char::from).unwrap_or('\n')
                    ));
                }
                let v = self.quoted(l)?;
                if lname.is_empty() {
                    return self.err("empty label name");
                }
                // The name is written before the braces (or quoted first inside them), never
                // as a label: Prometheus refuses `{__name__="x"}`.
                if lname == "__name__" {
                    return self.err("invalid label name \"__name__\"");
                }
                let duplicate = match &mut seen {
                    Some(set) => !set.insert(lname.clone()),
                    None => out.iter().any(|(n, _)| *n == lname),
                };
                if duplicate {
                    return self.err(format!(
                        "label name {} is not unique",
                        bounded_quote(&lname)
                    ));
                }
                if o.label_name_length_limit > 0 && lname.len() as u64 > o.label_name_length_limit {
                    return self.err(format!(
                        "label_name_length_limit exceeded (metric: {}, label name: {}, length: {}, limit: {})",
                        metric(name),
                        lname.chars().take(50).collect::<String>(),
                        lname.len(),
                        o.label_name_length_limit
                    ));
                }
                if o.label_value_length_limit > 0 && v.len() as u64 > o.label_value_length_limit {
                    return self.err(format!(
                        "label_value_length_limit exceeded (metric: {}, label name: {}, value: {}, length: {}, limit: {})",
                        metric(name),
                        lname.chars().take(50).collect::<String>(),
                        bounded_quote(&v),
                        v.len(),
                        o.label_value_length_limit
                    ));
                }
                out.push((lname, v));
                if o.label_limit > 0 && out.len() as u64 + o.reserved_labels > o.label_limit {
                    // Count the rest cheaply for Prometheus's message (it reports the total).
                    let rest = count_assignments(l.rest());
                    return self.err(format!(
                        "label_limit exceeded (metric: {}, number of labels: {}, limit: {})",
                        metric(name),
                        out.len() as u64 + o.reserved_labels + rest,
                        o.label_limit
                    ));
                }
                if out.len() > MAX_LABELS_PER_SAMPLE {
                    return self.err(format!(
                        "too many labels (metric: {}, number of labels: {}, the most a series may have is {MAX_LABELS_PER_SAMPLE})",
                        metric(name),
                        out.len() as u64 + count_assignments(l.rest())
                    ));
                }
                if seen.is_none() && out.len() >= LINEAR_DUP_CHECK {
                    seen = Some(out.iter().map(|(n, _)| n.clone()).collect());
                }
            } else if quoted && first && name.is_none() {
                *name = Some(lname);
            } else {
                return self.err(format!(
                    "expected equal after label name {}",
                    bounded_quote(&lname)
                ));
            }
            first = false;
            if !strict {
                l.skip_ws();
                l.eat(b',');
                continue;
            }
            if l.eat(b',') {
                if l.peek() == Some(b'}') {
                    return self.err("unexpected \"}\" after \",\" in label set");
                }
                continue;
            }
            if l.eat(b'}') {
                break;
            }
            return self.err(format!(
                "unexpected {:?} in label set",
                l.peek().map(char::from).unwrap_or('\n')
            ));
        }
        Ok(out)
    }

    fn quoted(&self, l: &mut Line<'a>) -> Result<Cow<'a, str>, ParseError> {
        // Caller checked the opening quote.
        l.i += 1;
        let start = l.i;
        let mut has_escape = false;
        loop {
            match l.peek() {
                None => return self.err("unterminated quoted string"),
                Some(b'"') => break,
                Some(b'\\') => {
                    has_escape = true;
                    l.i += 2;
                    if l.i > l.b.len() {
                        return self.err("unterminated quoted string");
                    }
                }
                Some(_) => l.i += 1,
            }
        }
        let raw = self.utf8(&l.b[start..l.i])?;
        l.i += 1;
        if !has_escape {
            return Ok(Cow::Borrowed(raw));
        }
        Ok(unescape(raw, true))
    }

    /// Rewrites `le` of histograms and `quantile` of summaries into canonical float form, as
    /// Prometheus's parsers do, so `le="1"` and `le="1.0"` are the same series.
    fn normalize(&self, name: &str, labels: &mut LabelPairs<'a>) {
        let Some((fam, kind)) = &self.family else {
            return;
        };
        if self.opts.keep_raw_label_values {
            return;
        }
        let key = match kind {
            MetricType::Histogram => "le",
            MetricType::Summary => "quantile",
            _ => return,
        };
        if !name.starts_with(fam.as_str()) {
            return;
        }
        for (n, v) in labels.iter_mut() {
            if n == key {
                if let Ok(f) = v.parse::<f64>() {
                    let canon = format_openmetrics_float(f);
                    if canon != *v {
                        *v = Cow::Owned(canon);
                    }
                }
            }
        }
    }
}

/// `=` signs outside quotes up to the closing `}`: how many labels are left on the line.
fn count_assignments(b: &[u8]) -> u64 {
    let mut n = 0;
    outside_quotes(b, |_, c| match c {
        b'=' => {
            n += 1;
            true
        }
        b'}' | b'\n' => false,
        _ => true,
    });
    n
}

/// Hands `f` each byte of a label block outside quoted strings (with its offset) until `f`
/// returns false; quotes and backslash escapes inside them are skipped as the grammar reads
/// them.
fn outside_quotes(b: &[u8], mut f: impl FnMut(usize, u8) -> bool) {
    let (mut quoted, mut escaped) = (false, false);
    for (k, &c) in b.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted {
            match c {
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
        } else if c == b'"' {
            quoted = true;
        } else if !f(k, c) {
            return;
        }
    }
}

fn is_metric_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// Undoes `\\`, `\n` and (when `quote`) `\"`; any other escape is kept as written, as
/// Prometheus does for label values and HELP text.
fn unescape(text: &str, quote: bool) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    let mut s = String::with_capacity(text.len());
    let mut it = text.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            s.push(c);
            continue;
        }
        match it.next() {
            Some('\\') => s.push('\\'),
            Some('n') => s.push('\n'),
            Some('"') if quote => s.push('"'),
            Some(o) => {
                s.push('\\');
                s.push(o);
            }
            None => s.push('\\'),
        }
    }
    Cow::Owned(s)
}

impl<'a> Line<'a> {
    fn at_end(&self) -> bool {
        self.i >= self.b.len()
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn rest(&self) -> &'a [u8] {
        &self.b[self.i.min(self.b.len())..]
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    /// Skips spaces and tabs; true if it skipped any.
    fn skip_ws(&mut self) -> bool {
        let start = self.i;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        self.i > start
    }
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.i;
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.i += 1;
        }
        &self.b[start..self.i]
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
