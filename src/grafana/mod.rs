//! Grafana: hands the appliance's dashboards and datasources to a Grafana, either as file
//! provisioning (`appliance grafana provision --dir DIR`) or over Grafana's HTTP API (the
//! `grafana:` config section), and reports how each item fared.
//!
//! Owns the provisioning file formats, the dashboard rewrite that binds panels to the
//! provisioned datasource, and the API client. It is handed the dashboards and URLs; it
//! never reads the appliance's config, storage or rules.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::model::httpconf::BasicAuth;
use crate::model::secret::Secret;

pub mod sync;

/// The uid of the provisioned Prometheus datasource every dashboard panel is bound to.
pub const PROMETHEUS_UID: &str = "appliance";
/// The uid of the provisioned Alertmanager datasource (the appliance's `/api/v2`).
pub const ALERTMANAGER_UID: &str = "appliance-alertmanager";

/// Why provisioning or a sync step failed.
#[derive(Debug, thiserror::Error)]
pub enum GrafanaError {
    /// A dashboard file is not a JSON object.
    #[error("dashboard {name}: {msg}")]
    Dashboard {
        /// The file name.
        name: String,
        /// What is wrong.
        msg: String,
    },
    /// Writing a provisioning file failed.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A credential file could not be read.
    #[error("{0}")]
    Credential(String),
    /// Grafana did not answer, or answered with an error.
    #[error("{0}")]
    Api(String),
}

/// The `grafana:` config section: a Grafana to push datasources and dashboards to over its
/// HTTP API.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrafanaConfig {
    /// Grafana's base URL, e.g. `http://grafana:3000` (with its sub-path behind a proxy);
    /// userinfo in it is a secret like the password.
    pub url: crate::model::secret::SecretUrl,
    /// The admin's basic auth (password usually `${GRAFANA_ADMIN_PASSWORD}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// A service-account token, sent as a bearer token (instead of basic auth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token: Option<Secret>,
    /// A file holding the service-account token, read at every sync.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_token_file: String,
    /// The folder the dashboards go into (title; its uid is `appliance`).
    #[serde(default = "default_folder")]
    pub folder: String,
    /// The Prometheus datasource's name (its uid is always `appliance`).
    #[serde(default = "default_datasource_name")]
    pub datasource_name: String,
    /// The URL Grafana queries for metrics: the appliance's external URL by default, or a
    /// real Prometheus fed by remote write.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prometheus_url: String,
    /// The appliance's URL as Grafana reaches it (e.g. `http://appliance:8080` on a compose
    /// network), for the Alertmanager datasource and the default Prometheus one; default:
    /// the appliance's external URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub appliance_url: String,
    /// TLS to Grafana: CA, client certificate, server name (Prometheus's `tls_config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<crate::model::httpconf::TlsConfig>,
}

fn default_folder() -> String {
    "Appliance".into()
}

fn default_datasource_name() -> String {
    "Appliance".into()
}

impl GrafanaConfig {
    /// Checks the URL and that at most one credential is given.
    pub fn validate(&self) -> Result<(), String> {
        let shown = self.url.redacted();
        let u = url::Url::parse(self.url.expose())
            .map_err(|e| format!("grafana.url {shown:?}: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!(
                "grafana.url {shown:?}: the scheme must be http or https"
            ));
        }
        let creds = [
            self.basic_auth.is_some(),
            self.api_token.is_some(),
            !self.api_token_file.is_empty(),
        ];
        if creds.iter().filter(|c| **c).count() > 1 {
            return Err(
                "grafana: at most one of basic_auth, api_token and api_token_file may be set"
                    .into(),
            );
        }
        if !self.appliance_url.is_empty() {
            url::Url::parse(&self.appliance_url)
                .map_err(|e| format!("grafana.appliance_url {:?}: {e}", self.appliance_url))?;
        }
        if !self.prometheus_url.is_empty() {
            url::Url::parse(&self.prometheus_url)
                .map_err(|e| format!("grafana.prometheus_url {:?}: {e}", self.prometheus_url))?;
        }
        if let Some(t) = &self.tls_config {
            t.client_config()
                .map_err(|e| format!("grafana.tls_config: {e}"))?;
        }
        if self.folder.trim().is_empty() {
            return Err("grafana.folder must not be empty".into());
        }
        Ok(())
    }
}

/// Where the provisioned datasources point and how they authenticate.
#[derive(Clone, Debug, PartialEq)]
pub struct Datasources {
    /// The Prometheus datasource's name.
    pub name: String,
    /// The URL Grafana queries for metrics.
    pub prometheus_url: String,
    /// The appliance's external URL (its Alertmanager v2 API lives below it).
    pub appliance_url: String,
    /// A read token for the appliance (`web.auth.protect_reads`); sent only to the
    /// appliance, never to another Prometheus.
    pub read_token: Option<String>,
    /// The scrape interval, Grafana's `timeInterval` (the smallest step it asks for).
    pub scrape_interval: String,
}

impl Datasources {
    /// The datasources as Grafana's provisioning file and API take them (the same fields).
    pub fn list(&self) -> Vec<Value> {
        let own = |url: &str| url.trim_end_matches('/') == self.appliance_url.trim_end_matches('/');
        let with_auth = |mut ds: Value, url: &str| {
            if let (Some(t), true) = (&self.read_token, own(url)) {
                ds["jsonData"]["httpHeaderName1"] = json!("Authorization");
                ds["secureJsonData"] = json!({"httpHeaderValue1": format!("Bearer {t}")});
            }
            ds
        };
        let prom = json!({
            "name": self.name,
            "type": "prometheus",
            "uid": PROMETHEUS_UID,
            "access": "proxy",
            "url": self.prometheus_url,
            "isDefault": false,
            "editable": false,
            "jsonData": {
                "httpMethod": "POST",
                "timeInterval": self.scrape_interval,
                "prometheusType": "Prometheus",
            },
        });
        let am = json!({
            "name": format!("{} Alertmanager", self.name),
            "type": "alertmanager",
            "uid": ALERTMANAGER_UID,
            "access": "proxy",
            "url": self.appliance_url,
            "isDefault": false,
            "editable": false,
            "jsonData": {
                "implementation": "prometheus",
                "handleGrafanaManagedAlerts": false,
            },
        });
        vec![
            with_auth(prom, &self.prometheus_url),
            with_auth(am, &self.appliance_url),
        ]
    }

    /// Grafana's datasource provisioning file (`apiVersion: 1`).
    pub fn provisioning_file(&self) -> Value {
        json!({"apiVersion": 1, "datasources": self.list()})
    }
}

/// Grafana's dashboard provider file (`apiVersion: 1`, one `file` provider reading `path`,
/// the path as Grafana sees it, e.g. inside its container).
pub fn provider_file(folder: &str, path: &str) -> Value {
    json!({
        "apiVersion": 1,
        "providers": [{
            "name": "appliance",
            "orgId": 1,
            "folder": folder,
            "folderUid": PROMETHEUS_UID,
            "type": "file",
            "disableDeletion": false,
            "allowUiUpdates": false,
            "updateIntervalSeconds": 30,
            "options": {"path": path, "foldersFromFilesStructure": false},
        }],
    })
}

/// A dashboard ready for a Grafana that has the provisioned datasource: every Prometheus
/// reference that names a template variable or no uid is bound to [`PROMETHEUS_UID`], the
/// `datasource` variable defaults to it, and import-only fields (`__inputs`, `id`) go.
pub fn bind_dashboard(
    name: &str,
    data: &[u8],
    datasource_name: &str,
) -> Result<Value, GrafanaError> {
    let bad = |msg: String| GrafanaError::Dashboard {
        name: name.to_string(),
        msg,
    };
    let mut d: Value = serde_json::from_slice(data).map_err(|e| bad(e.to_string()))?;
    let Some(obj) = d.as_object_mut() else {
        return Err(bad("not a JSON object".into()));
    };
    if !obj.get("uid").is_some_and(Value::is_string) {
        return Err(bad("has no uid".into()));
    }
    obj.remove("__inputs");
    obj.insert("id".into(), Value::Null);
    bind_refs(&mut d, 0);
    if let Some(vars) = d
        .pointer_mut("/templating/list")
        .and_then(Value::as_array_mut)
    {
        for v in vars {
            if v["type"] == "datasource" && v["query"] == "prometheus" {
                v["current"] = json!({
                    "selected": true,
                    "text": datasource_name,
                    "value": PROMETHEUS_UID,
                });
            }
        }
    }
    Ok(d)
}

/// Dashboards nest panels in rows a few levels deep; the bound keeps a hostile file from
/// recursing without end.
const MAX_DEPTH: usize = 64;

fn bind_refs(v: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::Object(m) => {
            if let Some(ds) = m.get_mut("datasource") {
                bind_ref(ds);
            }
            for (k, x) in m.iter_mut() {
                if k != "datasource" {
                    bind_refs(x, depth + 1);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| bind_refs(x, depth + 1)),
        _ => {}
    }
}

fn bind_ref(ds: &mut Value) {
    let is_var = |s: &str| s.starts_with('$');
    match ds {
        // Grafana 7's form: a datasource name or variable.
        Value::String(s) if is_var(s) => {
            *ds = json!({"type": "prometheus", "uid": PROMETHEUS_UID});
        }
        Value::Object(m) if m.get("type").and_then(Value::as_str) == Some("prometheus") => {
            let unbound = m
                .get("uid")
                .and_then(Value::as_str)
                .is_none_or(|u| u.is_empty() || is_var(u));
            if unbound {
                m.insert("uid".into(), json!(PROMETHEUS_UID));
            }
        }
        _ => {}
    }
}

/// Writes Grafana's file provisioning into `dir`: `datasources/appliance.yaml`,
/// `dashboards/appliance.yaml` (the provider) and the dashboards in
/// `dashboards/appliance/*.json`. `dashboards_path` is where Grafana will see that last
/// folder (default: its absolute path here). Returns the files written.
pub fn write_provisioning(
    dir: &std::path::Path,
    ds: &Datasources,
    folder: &str,
    dashboards: &[(String, Vec<u8>)],
    dashboards_path: Option<&str>,
) -> Result<Vec<std::path::PathBuf>, GrafanaError> {
    let io = |p: &std::path::Path| {
        let path = p.display().to_string();
        move |source| GrafanaError::Write { path, source }
    };
    let ds_dir = dir.join("datasources");
    let db_dir = dir.join("dashboards");
    let json_dir = db_dir.join("appliance");
    for d in [&ds_dir, &json_dir] {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let mut written = Vec::new();
    let ds_file = ds_dir.join("appliance.yaml");
    let text = yaml(&ds.provisioning_file());
    // A read token in the file: only its owner may read it.
    write_file(&ds_file, &text, ds.read_token.is_some()).map_err(io(&ds_file))?;
    written.push(ds_file);
    let path = match dashboards_path {
        Some(p) => p.to_string(),
        None => std::path::absolute(&json_dir)
            .unwrap_or_else(|_| json_dir.clone())
            .display()
            .to_string(),
    };
    let provider = db_dir.join("appliance.yaml");
    write_file(&provider, &yaml(&provider_file(folder, &path)), false).map_err(io(&provider))?;
    written.push(provider);
    for (name, data) in dashboards {
        let d = bind_dashboard(name, data, &ds.name)?;
        let file_name = std::path::Path::new(name)
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_else(|| format!("{}.json", d["uid"].as_str().unwrap_or("dashboard")));
        let f = json_dir.join(file_name);
        let text = serde_json::to_string_pretty(&d).unwrap_or_default() + "\n";
        write_file(&f, &text, false).map_err(io(&f))?;
        written.push(f);
    }
    Ok(written)
}

fn yaml(v: &Value) -> String {
    // JSON is YAML; Grafana reads either. serde-saphyr gives the familiar block style.
    serde_saphyr::to_string(v).unwrap_or_else(|_| v.to_string())
}

fn write_file(path: &std::path::Path, text: &str, private: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests;
