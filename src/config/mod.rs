//! The configuration file: one YAML document, `${VAR}` / `${VAR:-default}` expanded from the
//! environment, parsed strictly (unknown keys fail), then checked into a [`Config`]. Errors
//! name the file, the line and the key path. Each section's type lives in the module that
//! owns it; this module only assembles and checks them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::collect::CollectorsConfig;
use crate::http::WebConfig;
use crate::scrape::{GlobalConfig, ScrapeConfig};
use crate::storage::StorageConfig;

/// The embedded default: scrape the appliance itself and every built-in collector.
pub const DEFAULT_CONFIG: &str = include_str!("default.yml");

/// The default alert rules (`rules/*.yml`), embedded so that they load from any working
/// directory: used when the config has no `rule_files` key. Names are shown as the rules'
/// `file` in `/api/v1/rules`.
pub const DEFAULT_RULES: &[(&str, &str)] = &[
    (
        "embedded:rules/services.yml",
        include_str!("../../rules/services.yml"),
    ),
    (
        "embedded:rules/resources.yml",
        include_str!("../../rules/resources.yml"),
    ),
    (
        "embedded:rules/database.yml",
        include_str!("../../rules/database.yml"),
    ),
    (
        "embedded:rules/celery.yml",
        include_str!("../../rules/celery.yml"),
    ),
];

#[derive(rust_embed::RustEmbed)]
#[folder = "dashboards"]
#[include = "*.json"]
struct BuiltinDashboards;

/// The dashboards to hand to Grafana: those in `dir` (`web.dashboards_dir`; they win over a
/// shipped one with the same uid, so they come first), then the shipped ones.
pub fn all_dashboards(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if !dir.as_os_str().is_empty() {
        if let Ok(rd) = std::fs::read_dir(dir) {
            let mut files: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            for p in files {
                if let Ok(data) = crate::model::files::read_config_file(&p) {
                    out.push((p.display().to_string(), data.into_bytes()));
                }
            }
        }
    }
    out.extend(builtin_dashboards());
    out
}

/// The shipped dashboards (`dashboards/*.json`, embedded): file name and bytes, by name.
pub fn builtin_dashboards() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = BuiltinDashboards::iter()
        .filter_map(|name| {
            BuiltinDashboards::get(&name).map(|f| (name.to_string(), f.data.into_owned()))
        })
        .collect();
    out.sort();
    out
}

/// A config file that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Syntax, unknown key, bad value, or a failed check; `line` is 1-based when known.
    #[error("{path}:{line}: {msg}")]
    Invalid {
        /// The file.
        path: String,
        /// The line (0 when not known).
        line: usize,
        /// What is wrong, with the key path.
        msg: String,
    },
}

/// The whole checked configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Global defaults.
    #[serde(default)]
    pub global: GlobalConfig,
    /// Local storage.
    #[serde(default)]
    pub storage: StorageConfig,
    /// HTTP server.
    #[serde(default)]
    pub web: WebConfig,
    /// Built-in collectors.
    #[serde(default)]
    pub collectors: CollectorsConfig,
    /// Query limits.
    #[serde(default)]
    pub query: crate::promql::QueryConfig,
    /// Scrape jobs, in Prometheus syntax.
    #[serde(default)]
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Rule files (globs in the file name), relative to the config file's directory.
    /// Absent: the embedded default rules ([`DEFAULT_RULES`]); `[]`: no rules at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_files: Option<Vec<String>>,
    /// Rule evaluation settings (Prometheus's `--rules.*` flags).
    #[serde(default)]
    pub rules: crate::rules::manager::RulesConfig,
    /// External Alertmanagers, in Prometheus's syntax.
    #[serde(default, skip_serializing_if = "alerting_unset")]
    pub alerting: crate::notify::external::AlertingConfig,
    /// Remote write, in Prometheus's syntax.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_write: Vec<crate::remote::RemoteWriteConfig>,
    /// A Grafana to push the datasources and dashboards to over its HTTP API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana: Option<crate::grafana::GrafanaConfig>,
    /// Notifications: an Alertmanager configuration inline, or `{config_file: path}`.
    #[serde(default, skip_serializing_if = "notify_unset")]
    pub notify: crate::notify::config::NotifySection,
}

fn alerting_unset(a: &crate::notify::external::AlertingConfig) -> bool {
    a.alertmanagers.is_empty() && a.alert_relabel_configs.is_empty()
}

fn notify_unset(n: &crate::notify::config::NotifySection) -> bool {
    n.0.is_null()
}

impl Config {
    /// The config as YAML with every secret replaced by `<secret>`.
    pub fn to_redacted_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Where a loaded config came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file.
    File(PathBuf),
    /// The embedded default.
    Embedded,
}

impl Source {
    /// Picks `explicit`, else `./appliance.yml`, else `/etc/appliance/appliance.yml`, else
    /// the embedded default.
    pub fn resolve(explicit: Option<&Path>) -> Source {
        if let Some(p) = explicit {
            return Source::File(p.to_path_buf());
        }
        for p in ["appliance.yml", "/etc/appliance/appliance.yml"] {
            if Path::new(p).is_file() {
                return Source::File(PathBuf::from(p));
            }
        }
        Source::Embedded
    }

    /// Display name for messages.
    pub fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Embedded => "<embedded default>".into(),
        }
    }

    /// The directory relative paths in the config are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        match self {
            Source::File(p) => p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
            Source::Embedded => PathBuf::from("."),
        }
    }

    /// Loads and checks the config.
    pub fn load(&self) -> Result<Config, ConfigError> {
        match self {
            Source::File(p) => {
                let text =
                    crate::model::files::read_config_file(p).map_err(|e| ConfigError::Read {
                        path: p.display().to_string(),
                        source: e,
                    })?;
                let mut cfg = parse(&text, &p.display().to_string())?;
                // Relative to the config file, as rule_files are (and as Prometheus resolves
                // its paths), not to wherever the process was started.
                let dir = Path::new(&cfg.web.dashboards_dir);
                if !cfg.web.dashboards_dir.is_empty() && dir.is_relative() {
                    cfg.web.dashboards_dir = self.base_dir().join(dir).display().to_string();
                }
                Ok(cfg)
            }
            Source::Embedded => parse(DEFAULT_CONFIG, "<embedded default>"),
        }
    }
}

/// Expands `${NAME}` and `${NAME:-default}`; an unset variable without a default is an error
/// naming the line. `$1`, `${1}` and other `$` uses (relabel templates) are left alone.
pub fn expand_env(text: &str, path: &str) -> Result<String, ConfigError> {
    let re = regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}").map_err(|e| {
        ConfigError::Invalid {
            path: path.into(),
            line: 0,
            msg: e.to_string(),
        }
    })?;
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for caps in re.captures_iter(text) {
        let Some(m) = caps.get(0) else { continue };
        // A `${VAR}` in a comment is documentation, not a reference.
        if in_comment(text, m.start()) {
            continue;
        }
        out.push_str(&text[last..m.start()]);
        let name = &caps[1];
        match (std::env::var(name), caps.get(3)) {
            (Ok(v), None) => out.push_str(&v),
            (Ok(v), Some(_)) if !v.is_empty() => out.push_str(&v),
            (_, Some(d)) => out.push_str(d.as_str()),
            (Err(_), None) => {
                let line = text[..m.start()].matches('\n').count() + 1;
                return Err(ConfigError::Invalid { path: path.into(), line, msg: format!("environment variable {name} is not set (use ${{{name}:-default}} for a default)") });
            }
        }
        last = m.end();
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// Whether byte `at` of `text` lies in a YAML comment: after a `#` that starts its line or
/// follows a space, outside quotes, on the same line.
fn in_comment(text: &str, at: usize) -> bool {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for c in text[start..at].chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && (prev == ' ' || prev == '\t') => return true,
            None => {}
        }
        prev = c;
    }
    false
}

fn find_line(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or(0)
}

/// Parses and checks config text; `path` names it in errors.
pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
    let expanded = expand_env(text, path)?;
    let mut cfg: Config = serde_saphyr::from_str(&expanded).map_err(|e| {
        let msg = e.to_string();
        let line = error_line(&msg).unwrap_or(0);
        let key = key_path(&expanded, line);
        let msg = if key.is_empty() {
            first_line(&msg)
        } else {
            format!("{key}: {}", first_line(&msg))
        };
        ConfigError::Invalid {
            path: path.into(),
            line,
            msg,
        }
    })?;
    let mut seen = HashSet::new();
    let global = cfg.global.clone();
    for (i, sc) in cfg.scrape_configs.iter_mut().enumerate() {
        let line = find_line(&expanded, &format!("job_name: {}", sc.job_name)).max(find_line(
            &expanded,
            &format!("job_name: \"{}\"", sc.job_name),
        ));
        if !seen.insert(sc.job_name.clone()) {
            return Err(ConfigError::Invalid {
                path: path.into(),
                line,
                msg: format!(
                    "scrape_configs[{i}]: found multiple scrape configs with job name {:?}",
                    sc.job_name
                ),
            });
        }
        sc.apply_defaults(&global)
            .map_err(|msg| ConfigError::Invalid {
                path: path.into(),
                line,
                msg: format!("scrape_configs[{i}]: {msg}"),
            })?;
    }
    let base = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Err(msg) = cfg.collectors.validate() {
        return Err(ConfigError::Invalid {
            path: path.into(),
            line: find_line(&expanded, "probes:"),
            msg,
        });
    }
    let mut addresses = vec![("web", crate::http::bind_address(&cfg.web.listen_address))];
    for (name, addr) in cfg.collectors.listen_addresses() {
        let line = find_line(&expanded, &format!("{name}:"));
        if let Err(e) = crate::http::check_listen_address(addr) {
            return Err(ConfigError::Invalid {
                path: path.into(),
                line,
                msg: format!("collectors.{name}.listen_address {addr:?}: {e}"),
            });
        }
        let bind = crate::http::bind_address(addr);
        if let Some((other, _)) = addresses.iter().find(|(_, a)| *a == bind) {
            return Err(ConfigError::Invalid {
                path: path.into(),
                line,
                msg: format!(
                    "collectors.{name}.listen_address {addr:?}: {other} already listens there"
                ),
            });
        }
        addresses.push((name, bind));
    }
    if let Err(msg) = cfg.web.validate() {
        return Err(ConfigError::Invalid {
            path: path.into(),
            line: find_line(&expanded, "web:"),
            msg,
        });
    }
    if let Err(msg) = crate::remote::config::validate_all(&cfg.remote_write) {
        return Err(ConfigError::Invalid {
            path: path.into(),
            line: find_line(&expanded, "remote_write:"),
            msg,
        });
    }
    if let Some(Err(msg)) = cfg.grafana.as_ref().map(|g| g.validate()) {
        return Err(ConfigError::Invalid {
            path: path.into(),
            line: find_line(&expanded, "grafana:"),
            msg,
        });
    }
    if let Err(msg) = cfg.alerting.validate() {
        return Err(ConfigError::Invalid {
            path: path.into(),
            line: find_line(&expanded, "alerting:"),
            msg,
        });
    }
    if let Err(e) = cfg.notify.load(base) {
        return Err(ConfigError::Invalid {
            path: path.into(),
            line: find_line(&expanded, "notify:"),
            msg: e.to_string(),
        });
    }
    Ok(cfg)
}

/// The dotted key path (`scrape_configs[0].relabel_configs[1].regex`) of the key on `line`
/// (1-based), read from indentation; good enough for messages, never used for parsing.
fn key_path(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if line == 0 || line > lines.len() {
        return String::new();
    }
    let indent = |l: &str| l.len() - l.trim_start().len();
    let key_of = |l: &str| {
        let t = l.trim_start().trim_start_matches("- ").trim_start();
        t.split_once(':')
            .map(|(k, _)| k.trim().trim_matches(['"', '\'']).to_string())
            .filter(|k| !k.is_empty() && !k.contains(' '))
    };
    let mut parts = Vec::new();
    let mut cur = indent(lines[line - 1]);
    if let Some(k) = key_of(lines[line - 1]) {
        parts.push(k);
    }
    let mut item_indent: Option<usize> = None;
    let mut items = 0usize;
    if lines[line - 1].trim_start().starts_with("- ") {
        item_indent = Some(cur);
        items = 1;
    }
    for l in lines[..line - 1].iter().rev() {
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        let i = indent(l);
        let is_item = l.trim_start().starts_with("- ");
        if is_item && item_indent.is_none() && i < cur {
            item_indent = Some(i);
            cur = i;
            items = 1;
            if let Some(k) = key_of(l) {
                if parts.last() != Some(&k) {
                    // A key on the same line as the dash belongs to the item itself.
                }
            }
            continue;
        }
        if is_item && item_indent == Some(i) {
            items += 1;
            continue;
        }
        if i < cur {
            if let Some(k) = key_of(l) {
                if item_indent.take().is_some() {
                    parts.push(format!("{k}[{}]", items - 1));
                } else {
                    parts.push(k);
                }
            }
            cur = i;
        }
    }
    parts.reverse();
    parts.join(".")
}

pub(crate) use crate::model::yaml::{error_line, first_line};

#[cfg(test)]
mod tests;
