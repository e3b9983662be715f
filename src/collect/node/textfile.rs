//! node_exporter's `textfile` collector: the samples of every `*.prom` file in a directory
//! (written by cron jobs and scripts), each file's mtime, and whether any file failed.

use std::collections::BTreeMap;
use std::path::Path;

use super::{NodeCollector, Out};
use crate::model::exposition::{Entry, Format, MetricType, Parser, ParserOptions};

/// Debian's node_exporter reads this directory (`--collector.textfile.directory`).
pub const DEFAULT_DIR: &str = "/var/lib/prometheus/node-exporter";

/// Files bigger than this are refused (a script gone wrong must not fill memory).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// (sample-name suffix, labels, value)
type FileSample = (&'static str, Vec<(String, String)>, f64);

struct Family {
    help: Option<String>,
    kind: &'static str,
    samples: Vec<FileSample>,
}

fn kind_name(k: MetricType) -> &'static str {
    match k {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Summary => "summary",
        _ => "untyped",
    }
}

/// The family a sample named `name` belongs to, and its suffix, given the declared types.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, MetricType>) -> (&'a str, &'static str) {
    if types.contains_key(name) {
        return (name, "");
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            match types.get(base) {
                Some(MetricType::Histogram) => return (base, suffix),
                Some(MetricType::Summary) if suffix != "_bucket" => return (base, suffix),
                _ => {}
            }
        }
    }
    (name, "")
}

/// `le` and `quantile` as client_golang prints a bound it parsed (`60`, not `60.0`).
fn bound(name: &str, v: &str) -> String {
    match (name, v.parse::<f64>()) {
        ("le" | "quantile", Ok(f)) => crate::collect::num(f),
        _ => v.to_string(),
    }
}

/// One file's families, or why the whole file is skipped (as node_exporter skips it).
fn parse_file(body: &[u8]) -> Result<BTreeMap<String, Family>, String> {
    let mut types: BTreeMap<String, MetricType> = BTreeMap::new();
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    let opts = ParserOptions {
        keep_raw_label_values: true,
        ..ParserOptions::default()
    };
    for e in Parser::new(body, Format::PrometheusText, opts) {
        match e.map_err(|e| e.to_string())? {
            Entry::Help { name, text } => {
                helps.insert(name.into_owned(), text.into_owned());
            }
            Entry::Type { name, kind } => {
                types.insert(name.into_owned(), kind);
            }
            Entry::Unit { .. } => {}
            Entry::Sample(s) => {
                if s.timestamp_ms.is_some() {
                    return Err(
                        "contains unsupported client-side timestamps, skipping entire file".into(),
                    );
                }
                let (fam, suffix) = family_of(&s.name, &types);
                let f = fams.entry(fam.to_string()).or_insert_with(|| Family {
                    help: None,
                    kind: types.get(fam).map(|k| kind_name(*k)).unwrap_or("untyped"),
                    samples: Vec::new(),
                });
                let labels = s
                    .labels
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.to_string(), bound(k, v)))
                    .collect();
                f.samples.push((suffix, labels, s.value));
            }
        }
    }
    for (name, f) in fams.iter_mut() {
        f.help = helps.get(name).cloned();
    }
    Ok(fams)
}

impl NodeCollector {
    /// node_exporter's `textfile`. A file that cannot be read or parsed (or has timestamps)
    /// is left out whole and sets `node_textfile_scrape_error`; the others still count. The
    /// built-in default directory may be absent (no error); a configured one may not.
    pub(super) fn textfile(&self, out: &mut Out) -> Result<(), String> {
        let (dir, explicit) = match &self.roots.textfile_directory {
            Some(d) => (d.as_str(), true),
            None => (DEFAULT_DIR, false),
        };
        let mut errored = false;
        let mut fams: BTreeMap<String, (Family, Vec<String>)> = BTreeMap::new();
        let mut mtimes: BTreeMap<String, f64> = BTreeMap::new();
        if !dir.is_empty() {
            match std::fs::read_dir(dir) {
                Ok(rd) => {
                    let mut names: Vec<String> = rd
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.ends_with(".prom"))
                        .collect();
                    names.sort();
                    for n in names {
                        let path = Path::new(dir).join(&n);
                        let shown = path.display().to_string();
                        match read_file(&path) {
                            Ok((mtime, file_fams)) => {
                                mtimes.insert(shown.clone(), mtime);
                                for (name, f) in file_fams {
                                    match fams.get_mut(&name) {
                                        Some((have, files)) if have.kind == f.kind => {
                                            have.samples.extend(f.samples);
                                            have.help = have.help.take().or(f.help);
                                            files.push(shown.clone());
                                        }
                                        Some(_) => {
                                            errored = true;
                                            tracing::warn!(file = %shown, family = %name, "textfile: a family of another type in another file; left out");
                                        }
                                        None => {
                                            fams.insert(name, (f, vec![shown.clone()]));
                                        }
                                    }
                                }
                            }
                            Err(e) => {
                                errored = true;
                                tracing::warn!(file = %shown, error = %e, "textfile: file left out");
                            }
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {}
                Err(e) => {
                    errored = true;
                    tracing::warn!(dir, error = %e, "textfile: cannot read the directory");
                }
            }
        }
        for (name, (f, files)) in fams {
            let help = f
                .help
                .unwrap_or_else(|| format!("Metric read from {}", files.join(", ")));
            // node_exporter gives every sample of a family every label name any of them has,
            // empty where it had none (a bucket's `le` and a quantile are not such labels).
            let own = |k: &str| {
                (f.kind == "histogram" && k == "le") || (f.kind == "summary" && k == "quantile")
            };
            let names: std::collections::BTreeSet<&str> = f
                .samples
                .iter()
                .flat_map(|(_, l, _)| l.iter().map(|(k, _)| k.as_str()))
                .filter(|k| !own(k))
                .collect();
            for (suffix, labels, v) in &f.samples {
                let mut l: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                for n in &names {
                    if !labels.iter().any(|(k, _)| k == n) {
                        l.push((n, ""));
                    }
                }
                out.sample(&name, &help, f.kind, suffix, &l, *v);
            }
        }
        for (file, t) in mtimes {
            out.add(
                "node_textfile_mtime_seconds",
                "Unixtime mtime of textfiles successfully read.",
                "gauge",
                &[("file", &file)],
                t,
            );
        }
        out.add(
            "node_textfile_scrape_error",
            "1 if there was an error opening or reading a file, 0 otherwise",
            "gauge",
            &[],
            if errored { 1.0 } else { 0.0 },
        );
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<(f64, BTreeMap<String, Family>), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes, over the {MAX_FILE_BYTES}-byte limit",
            meta.len()
        ));
    }
    let body = std::fs::read(path).map_err(|e| e.to_string())?;
    let fams = parse_file(&body)?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as f64)
        .unwrap_or(0.0);
    Ok((mtime, fams))
}
