//! Target discovery for one pool: static groups, and `file_sd_configs` files (JSON or YAML)
//! re-read when they change. A file that fails to parse keeps its last good groups.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::sync::watch;

use super::target::{PoolState, TargetGroup};
use super::JobKind;
use crate::model::Labels;

/// How often file SD files are checked for changes; cheap (a stat per file).
const FILE_POLL: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

fn expand_glob(pattern: &str) -> Vec<PathBuf> {
    let p = Path::new(pattern);
    let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) else {
        return vec![p.to_path_buf()];
    };
    if !name.contains('*') && !name.contains('?') {
        return vec![p.to_path_buf()];
    }
    let re = regex::Regex::new(&format!(
        "^{}$",
        regex::escape(name).replace(r"\*", ".*").replace(r"\?", ".")
    ))
    .ok();
    let mut out: Vec<PathBuf> = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    })
    .into_iter()
    .flatten()
    .flatten()
    .map(|e| e.path())
    .filter(|f| {
        f.file_name()
            .and_then(|n| n.to_str())
            .map(|n| re.as_ref().map(|r| r.is_match(n)).unwrap_or(false))
            .unwrap_or(false)
    })
    .collect();
    out.sort();
    out
}

/// Reads one SD file; the error names the file.
pub fn read_sd_file(path: &Path) -> Result<Vec<TargetGroup>, String> {
    let body = crate::model::files::read_config_file(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let is_json = path.extension().map(|e| e == "json").unwrap_or(false);
    let groups: Vec<FileGroup> = if is_json {
        serde_json::from_str(&body).map_err(|e| format!("{}: {e}", path.display()))?
    } else {
        serde_saphyr::from_str(&body).map_err(|e| format!("{}: {e}", path.display()))?
    };
    Ok(groups
        .into_iter()
        .enumerate()
        .map(|(i, g)| TargetGroup {
            source: format!("{}:{i}", path.display()),
            targets: g.targets,
            labels: Labels::from_pairs(
                g.labels
                    .into_iter()
                    .chain([("__meta_filepath".to_string(), path.display().to_string())]),
            ),
        })
        .collect())
}

type Stamp = Option<(SystemTime, u64)>;

fn stamp(p: &Path) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Runs discovery for `pool` until `stop` flips, syncing targets whenever groups change.
pub async fn run(pool: Arc<PoolState>, mut stop: watch::Receiver<bool>) {
    let cfg = pool.job.config.clone();
    let mut statics: Vec<TargetGroup> = match &pool.job.kind {
        JobKind::Collector {
            instance,
            collector,
        } => {
            // A collector that probes others has one target (instance) per probed address.
            let probed = collector.targets();
            vec![TargetGroup {
                source: "collector".into(),
                targets: if probed.is_empty() {
                    vec![instance.clone()]
                } else {
                    probed
                },
                labels: Labels::default(),
            }]
        }
        JobKind::Http => cfg
            .static_configs
            .iter()
            .enumerate()
            .map(|(i, s)| TargetGroup {
                source: i.to_string(),
                targets: s.targets.clone(),
                labels: Labels::from_pairs(s.labels.clone()),
            })
            .collect(),
    };
    statics.retain(|g| !g.targets.is_empty());
    let mut files: HashMap<PathBuf, (Stamp, Vec<TargetGroup>)> = HashMap::new();
    let mut last_refresh = tokio::time::Instant::now();
    let refresh = cfg
        .file_sd_configs
        .iter()
        .map(|f| f.refresh_interval.std())
        .min()
        .unwrap_or(Duration::from_secs(300));
    let mut first = true;
    loop {
        let mut changed = first;
        let force = last_refresh.elapsed() >= refresh;
        if force {
            last_refresh = tokio::time::Instant::now();
        }
        let mut present = Vec::new();
        for f in &cfg.file_sd_configs {
            for pattern in &f.files {
                for path in expand_glob(pattern) {
                    let st = stamp(&path);
                    present.push(path.clone());
                    let known = files.get(&path).map(|(s, _)| *s);
                    if known == Some(st) && !force {
                        continue;
                    }
                    match read_sd_file(&path) {
                        Ok(g) => {
                            changed |= files.get(&path).map(|(_, old)| old != &g).unwrap_or(true);
                            files.insert(path, (st, g));
                        }
                        Err(e) => {
                            // Keep the last good groups; a half-written file must not drop targets.
                            if known != Some(st) {
                                pool.metrics().sd_file_errors.inc();
                                crate::failure!(error, "scrape", "file_sd", job = %cfg.job_name, error = %e, "file_sd: cannot read target file");
                            }
                            let old = files.remove(&path).map(|(_, g)| g).unwrap_or_default();
                            files.insert(path, (st, old));
                        }
                    }
                }
            }
        }
        let before = files.len();
        files.retain(|p, _| present.contains(p));
        changed |= files.len() != before;
        if changed {
            let mut groups = statics.clone();
            let mut paths: Vec<&PathBuf> = files.keys().collect();
            paths.sort();
            for p in paths {
                groups.extend(files[p].1.iter().cloned());
            }
            pool.sync(groups);
        }
        first = false;
        if cfg.file_sd_configs.is_empty() {
            let _ = stop.wait_for(|s| *s).await;
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(FILE_POLL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
