//! The semantic rules of the OpenMetrics 1.0 specification that a tokenizer cannot see:
//! family grouping and metadata placement, per-type sample names and labels, counter-like
//! values, histogram bucket order and totals, stateset/info values, exemplar placement and
//! size, and non-decreasing timestamps. Prometheus does not enforce these when scraping, so
//! the scraper does not call this; conformance checks and `check metrics` style tools do.

use std::collections::{HashMap, HashSet};

use super::{Entry, Format, MetricType, ParseError, Parser, ParserOptions, Sample};

/// Parses `input` as OpenMetrics and applies every rule of the specification; the error names
/// the line that broke a rule.
pub fn validate_openmetrics(input: &[u8]) -> Result<(), ParseError> {
    let mut v = Validator::default();
    let mut p = Parser::new(
        input,
        Format::OpenMetrics,
        ParserOptions {
            keep_raw_label_values: true,
            ..Default::default()
        },
    );
    let mut line = 0;
    while let Some(e) = p.next() {
        line = p.line();
        let e = e?;
        v.entry(e).map_err(|msg| ParseError { line, msg })?;
    }
    v.finish_family().map_err(|msg| ParseError { line, msg })
}

#[derive(Default)]
struct Family {
    name: String,
    kind: Option<MetricType>,
    has_help: bool,
    has_unit: bool,
    has_samples: bool,
    groups_seen: HashSet<String>,
    group: Option<(String, Option<i64>)>,
    hist: HistState,
}

#[derive(Default)]
struct HistState {
    any: bool,
    last_le: Option<f64>,
    last_bucket_value: f64,
    count: Option<f64>,
    has_sum: bool,
    has_gsum: bool,
    negative_gsum: bool,
    negative_buckets: bool,
}

#[derive(Default)]
struct Validator {
    cur: Option<Family>,
    seen_families: HashSet<String>,
    claimed_names: HashMap<String, String>,
    series_ts: HashMap<String, Option<f64>>,
}

fn suffixes(kind: MetricType) -> &'static [&'static str] {
    match kind {
        MetricType::Counter => &["_total", "_created"],
        MetricType::Histogram => &["_bucket", "_count", "_sum", "_created"],
        MetricType::GaugeHistogram => &["_bucket", "_gcount", "_gsum"],
        MetricType::Summary => &["", "_count", "_sum", "_created"],
        MetricType::Info => &["_info"],
        MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[""],
    }
}

fn is_om_float(s: &str) -> bool {
    if matches!(s, "+Inf" | "-Inf" | "Inf" | "NaN") {
        return true;
    }
    let b = s.strip_prefix(['+', '-']).unwrap_or(s).as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
        && s.parse::<f64>().is_ok()
}

impl Validator {
    fn kind(&self) -> MetricType {
        self.cur
            .as_ref()
            .and_then(|f| f.kind)
            .unwrap_or(MetricType::Unknown)
    }

    fn start_family(&mut self, name: &str) -> Result<(), String> {
        self.finish_family()?;
        if !self.seen_families.insert(name.to_string()) {
            return Err(format!(
                "metric family {} appears more than once (interleaved families)",
                bq(name)
            ));
        }
        if let Some(owner) = self.claimed_names.get(name) {
            if owner != name {
                return Err(format!(
                    "metric family {} clashes with a series name of family {}",
                    bq(name),
                    bq(owner)
                ));
            }
        }
        self.cur = Some(Family {
            name: name.to_string(),
            ..Default::default()
        });
        Ok(())
    }

    fn claim(&mut self, name: &str, kind: MetricType) -> Result<(), String> {
        for suf in suffixes(kind) {
            let s = format!("{name}{suf}");
            if s != name && self.seen_families.contains(&s) {
                return Err(format!(
                    "series name {} of family {} clashes with another family",
                    bq(&s),
                    bq(name)
                ));
            }
            if let Some(owner) = self.claimed_names.get(&s) {
                if owner != name {
                    return Err(format!(
                        "series name {} clashes with family {}",
                        bq(&s),
                        bq(owner)
                    ));
                }
            }
            self.claimed_names.insert(s, name.to_string());
        }
        Ok(())
    }

    fn entry(&mut self, e: Entry<'_>) -> Result<(), String> {
        let meta_name = match &e {
            Entry::Sample(_) => None,
            Entry::Help { name, .. } | Entry::Type { name, .. } | Entry::Unit { name, .. } => {
                Some(name.to_string())
            }
        };
        match (meta_name, e) {
            (None, Entry::Sample(s)) => self.sample(s),
            (Some(name), e) => {
                if self.cur.as_ref().map(|f| f.name.as_str()) != Some(name.as_str()) {
                    self.start_family(&name)?;
                }
                self.entry_meta(e)
            }
            (None, _) => Ok(()),
        }
    }

    fn entry_meta(&mut self, e: Entry<'_>) -> Result<(), String> {
        let Some(f) = self.cur.as_mut() else {
            return Err("metadata without family".into());
        };
        if f.has_samples {
            return Err(format!("metadata for {} after its samples", bq(&f.name)));
        }
        match e {
            Entry::Help { .. } => {
                if std::mem::replace(&mut f.has_help, true) {
                    return Err("repeated HELP".into());
                }
            }
            Entry::Unit { .. } => {
                if std::mem::replace(&mut f.has_unit, true) {
                    return Err("repeated UNIT".into());
                }
                if matches!(f.kind, Some(MetricType::Info | MetricType::StateSet)) {
                    return Err("info and stateset families may not have a unit".into());
                }
            }
            Entry::Type { kind, .. } => {
                if f.kind.replace(kind).is_some() {
                    return Err("repeated TYPE".into());
                }
                if f.has_unit && matches!(kind, MetricType::Info | MetricType::StateSet) {
                    return Err("info and stateset families may not have a unit".into());
                }
                let name = f.name.clone();
                self.claim(&name, kind)?;
            }
            Entry::Sample(_) => {}
        }
        Ok(())
    }

    fn belongs(&self, name: &str) -> bool {
        let Some(f) = &self.cur else { return false };
        let Some(rest) = name.strip_prefix(f.name.as_str()) else {
            return false;
        };
        suffixes(self.kind()).contains(&rest)
    }

    fn sample(&mut self, s: Sample<'_>) -> Result<(), String> {
        if !self.belongs(&s.name) {
            self.start_family(&s.name)?;
            self.claim(&s.name.clone(), MetricType::Unknown)?;
        }
        let kind = self.kind();
        let Some(f) = self.cur.as_mut() else {
            return Err("sample without family".into());
        };
        f.has_samples = true;
        let suffix = s.name[f.name.len()..].to_string();
        let label = |n: &str| {
            s.labels
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.to_string())
        };
        let v = s.value;
        let counter_like = |what: &str| {
            if v.is_nan() || v < 0.0 {
                Err(format!("{what} value must not be negative or NaN"))
            } else {
                Ok(())
            }
        };

        if let Some(ex) = &s.exemplar {
            let ok = (matches!(kind, MetricType::Histogram | MetricType::GaugeHistogram)
                && suffix == "_bucket")
                || (kind == MetricType::Counter && suffix == "_total");
            if !ok {
                return Err(
                    "exemplars are only allowed on histogram buckets and counter totals".into(),
                );
            }
            let len: usize = ex
                .labels
                .iter()
                .map(|(n, v)| n.chars().count() + v.chars().count())
                .sum();
            if len > 128 {
                return Err("exemplar labels exceed 128 UTF-8 code points".into());
            }
        }

        match (kind, suffix.as_str()) {
            (MetricType::Counter, "_total") => counter_like("counter")?,
            (MetricType::Summary, "") => {
                let q =
                    label("quantile").ok_or("summary quantile sample without quantile label")?;
                let qf: f64 = q
                    .parse()
                    .map_err(|_| format!("invalid quantile {}", bq(&q)))?;
                if !is_om_float(&q) || qf.is_nan() || !(0.0..=1.0).contains(&qf) {
                    return Err(format!("invalid quantile {}", bq(&q)));
                }
                if v < 0.0 {
                    return Err("summary quantile value must not be negative".into());
                }
            }
            (MetricType::Summary, "_sum" | "_count") => counter_like("summary")?,
            (MetricType::StateSet, _) => {
                if label(&f.name).is_none() {
                    return Err("stateset sample without a label named after the family".into());
                }
                if v != 0.0 && v != 1.0 {
                    return Err("stateset value must be 0 or 1".into());
                }
            }
            (MetricType::Info, _) if v != 1.0 => return Err("info value must be 1".into()),
            _ => {}
        }

        // Series timestamps: a series may repeat only with timestamps, never going backwards.
        let mut key = s.name.to_string();
        for (n, val) in &s.labels {
            key.push('\u{0}');
            key.push_str(n);
            key.push('=');
            key.push_str(val);
        }
        if let Some(prev) = self.series_ts.insert(key, s.timestamp_raw) {
            match (prev, s.timestamp_raw) {
                (Some(p), Some(c)) if c >= p => {}
                _ => return Err("repeated series must carry non-decreasing timestamps".into()),
            }
        }

        let Some(f) = self.cur.as_mut() else {
            return Ok(());
        };
        if matches!(
            kind,
            MetricType::Histogram | MetricType::GaugeHistogram | MetricType::Summary
        ) {
            let skip = if kind == MetricType::Summary {
                "quantile"
            } else {
                "le"
            };
            let mut g: Vec<String> = s
                .labels
                .iter()
                .filter(|(n, _)| n != skip)
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            g.sort();
            let gkey = g.join("\u{0}");
            let changed = f
                .group
                .as_ref()
                .map(|(k, t)| k != &gkey || *t != s.timestamp_ms)
                .unwrap_or(true);
            if changed {
                if f.group.is_some() {
                    check_hist(kind, &std::mem::take(&mut f.hist))?;
                }
                if f.group.as_ref().map(|(k, _)| k != &gkey).unwrap_or(true)
                    && !f.groups_seen.insert(gkey.clone())
                {
                    return Err("samples of one group are not contiguous".into());
                }
                f.group = Some((gkey, s.timestamp_ms));
            }
            if kind != MetricType::Summary {
                hist_sample(&mut f.hist, kind, &suffix, v, label("le"))?;
            }
        }
        Ok(())
    }

    fn finish_family(&mut self) -> Result<(), String> {
        if let Some(mut f) = self.cur.take() {
            let kind = f.kind.unwrap_or(MetricType::Unknown);
            if f.group.is_some() && kind != MetricType::Summary {
                check_hist(kind, &std::mem::take(&mut f.hist))?;
            }
        }
        Ok(())
    }
}

fn hist_sample(
    h: &mut HistState,
    kind: MetricType,
    suffix: &str,
    v: f64,
    le: Option<String>,
) -> Result<(), String> {
    h.any = true;
    match suffix {
        "_bucket" => {
            let le = le.ok_or("histogram bucket without le label")?;
            if !is_om_float(&le) {
                return Err(format!("invalid le {}", bq(&le)));
            }
            let b: f64 = le.parse().map_err(|_| format!("invalid le {}", bq(&le)))?;
            if v.is_nan() || v < 0.0 {
                return Err("bucket value must not be negative or NaN".into());
            }
            if b < 0.0 {
                h.negative_buckets = true;
            }
            if let Some(last) = h.last_le {
                if b <= last {
                    return Err("buckets out of order".into());
                }
            }
            if v < h.last_bucket_value {
                return Err("bucket values decrease".into());
            }
            h.last_le = Some(b);
            h.last_bucket_value = v;
        }
        "_count" | "_gcount" => {
            if v.is_nan() || v < 0.0 {
                return Err("count must not be negative or NaN".into());
            }
            h.count = Some(v);
        }
        "_sum" => {
            if v.is_nan() || v < 0.0 {
                return Err("histogram sum must not be negative or NaN".into());
            }
            h.has_sum = true;
        }
        "_gsum" => {
            if v.is_nan() {
                return Err("gsum must not be NaN".into());
            }
            h.has_gsum = true;
            h.negative_gsum |= v < 0.0;
        }
        _ => {}
    }
    let _ = kind;
    Ok(())
}

fn check_hist(kind: MetricType, h: &HistState) -> Result<(), String> {
    if !h.any {
        return Ok(());
    }
    if h.last_le != Some(f64::INFINITY) {
        return Err("histogram without +Inf bucket".into());
    }
    if let Some(c) = h.count {
        if c != h.last_bucket_value {
            return Err("count does not match the +Inf bucket".into());
        }
    }
    if (h.has_sum || h.has_gsum) && h.count.is_none() {
        return Err("sum without count".into());
    }
    if !(h.has_sum || h.has_gsum) && h.count.is_some() {
        return Err("count without sum".into());
    }
    if h.negative_buckets && h.has_sum {
        return Err("a histogram with negative buckets may not have a sum".into());
    }
    if kind == MetricType::GaugeHistogram && h.negative_gsum && !h.negative_buckets {
        return Err("negative gsum without negative buckets".into());
    }
    Ok(())
}

/// A name or value quoted for a message, bounded.
fn bq(s: &str) -> String {
    super::parser::bounded_quote(s)
}
