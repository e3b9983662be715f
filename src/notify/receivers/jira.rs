//! `jira_configs`: one Jira issue per alert group, found again by its label
//! `ALERT{<group hash>}`: created while firing, updated on each notification, resolved
//! (and with `reopen_transition`, reopened) by workflow transition, as Alertmanager does.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{host_of, join_url, truncate, DeliveryError, Http, Integration, Msg};
use crate::model::httpconf::HttpClientConfig;
use crate::model::time::Duration;
use crate::notify::config::GlobalConfig;

/// A templated issue field, as a string or `{template, enable_update}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Field {
    /// Just the template.
    Template(String),
    /// The template, and whether an update of an existing issue sets it (default true).
    Full {
        /// The template.
        #[serde(default)]
        template: String,
        /// Whether updates set it.
        #[serde(default)]
        enable_update: Option<bool>,
    },
}

impl Field {
    fn template(&self) -> &str {
        match self {
            Field::Template(t) | Field::Full { template: t, .. } => t,
        }
    }
    fn on_update(&self) -> bool {
        match self {
            Field::Template(_) => true,
            Field::Full { enable_update, .. } => enable_update.unwrap_or(true),
        }
    }
}

/// A `jira_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default true).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The HTTP client's settings (basic auth with an API token, or a bearer token).
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// The REST API, e.g. `https://example.atlassian.net/rest/api/2` (default
    /// `global.jira_api_url`).
    #[serde(default)]
    pub api_url: String,
    /// `auto` (default: `cloud` for `*.atlassian.net`), `cloud` or `datacenter`.
    #[serde(default)]
    pub api_type: String,
    /// Project key.
    #[serde(default)]
    pub project: String,
    /// Summary (template, or `{template, enable_update}`).
    #[serde(default)]
    pub summary: Option<Field>,
    /// Description (template, or `{template, enable_update}`); with an API v3 URL it must
    /// render to Atlassian Document Format JSON.
    #[serde(default)]
    pub description: Option<Field>,
    /// Labels (templates); the group's label is added.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Priority name (template).
    #[serde(default)]
    pub priority: Option<String>,
    /// Issue type name.
    #[serde(default)]
    pub issue_type: String,
    /// Transition that reopens a done issue when the group fires again.
    #[serde(default)]
    pub reopen_transition: String,
    /// Transition that resolves the issue once the group is resolved.
    #[serde(default)]
    pub resolve_transition: String,
    /// Resolution that keeps an issue closed (it is not reopened).
    #[serde(default)]
    pub wont_fix_resolution: String,
    /// How long after its resolution an issue may be reopened (default: always).
    #[serde(default)]
    pub reopen_duration: Option<Duration>,
    /// Other fields (custom fields by id), every string in them a template.
    #[serde(default)]
    pub fields: BTreeMap<String, Value>,
}

impl Integration for Config {
    const KIND: &'static str = "jira";
    const RESOLVED_BY_DEFAULT: bool = true;

    fn check(&mut self, g: &GlobalConfig) -> Result<(), String> {
        if self.project.is_empty() {
            return Err("missing project in jira_config".into());
        }
        if self.issue_type.is_empty() {
            return Err("missing issue_type in jira_config".into());
        }
        if self.api_url.is_empty() {
            if g.jira_api_url.is_empty() {
                return Err("no global Jira Cloud URL set".into());
            }
            self.api_url = g.jira_api_url.clone();
        }
        super::check_url("api_url", &self.api_url)?;
        match self.api_type.as_str() {
            "" => self.api_type = "auto".into(),
            "auto" | "cloud" | "datacenter" => {}
            other => {
                return Err(format!(
                    "unknown api_type {other:?}, must be auto, cloud or datacenter"
                ))
            }
        }
        Ok(())
    }

    common_settings!();

    fn target(&self) -> String {
        format!("{} {}", host_of(&self.api_url), self.project)
    }

    fn send<'a>(
        &'a self,
        http: &'a Http,
        m: &'a Msg<'a>,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let c = self;
            let label = format!("ALERT{{{}}}", m.key_hash());
            let found = self.search(http, m, &label, !m.resolved()).await?;
            match found {
                None if m.resolved() => Ok(()),
                None => {
                    let fields = self.fields(m, &label, false)?;
                    self.call(
                        http,
                        reqwest::Method::POST,
                        "issue",
                        Some(&json!({"fields": fields})),
                    )
                    .await
                    .map(|_| ())
                }
                Some(issue) => {
                    let fields = self.fields(m, &label, true)?;
                    let path = format!("issue/{}", issue.key);
                    self.call(
                        http,
                        reqwest::Method::PUT,
                        &path,
                        Some(&json!({"fields": fields})),
                    )
                    .await?;
                    if m.resolved() {
                        if !issue.done && !c.resolve_transition.is_empty() {
                            self.transition(http, &issue.key, &c.resolve_transition)
                                .await?;
                        }
                    } else if issue.done && !c.reopen_transition.is_empty() {
                        self.transition(http, &issue.key, &c.reopen_transition)
                            .await?;
                    }
                    Ok(())
                }
            }
        })
    }
}

/// Jira's limits, in characters.
const MAX_SUMMARY: usize = 255;
const MAX_DESCRIPTION: usize = 32767;

/// An issue as the search returns it.
struct Found {
    key: String,
    done: bool,
}

impl Config {
    /// Whether the search goes to Jira Cloud's `search/jql` (API v3).
    fn cloud(&self) -> bool {
        match self.api_type.as_str() {
            "cloud" => true,
            "datacenter" => false,
            _ => url::Url::parse(&self.api_url)
                .ok()
                .and_then(|u| u.host_str().map(|h| h.ends_with("atlassian.net")))
                .unwrap_or(false),
        }
    }

    /// Whether `api_url` is API v3, whose descriptions are Atlassian Document Format.
    fn v3(&self) -> bool {
        url::Url::parse(&self.api_url)
            .map(|u| u.path().trim_end_matches('/').ends_with("/3"))
            .unwrap_or(false)
    }

    async fn call(
        &self,
        http: &Http,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, DeliveryError> {
        self.call_url(http, method, &join_url(&self.api_url, path), body)
            .await
    }

    async fn call_url(
        &self,
        http: &Http,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, DeliveryError> {
        let mut req = http
            .request(method, url)?
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let answer = http.send(req).await?;
        if answer.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&answer).unwrap_or(Value::Null))
    }

    async fn search(
        &self,
        http: &Http,
        m: &Msg<'_>,
        label: &str,
        firing: bool,
    ) -> Result<Option<Found>, DeliveryError> {
        let c = self;
        let mut jql = String::new();
        if !c.wont_fix_resolution.is_empty() {
            jql.push_str(&format!(
                "(resolution is EMPTY or resolution != {:?}) and ",
                c.wont_fix_resolution
            ));
        }
        let reopen_minutes = c
            .reopen_duration
            .map(|d| d.as_millis() / 60_000)
            .unwrap_or(0);
        if firing && !c.reopen_transition.is_empty() && reopen_minutes > 0 {
            jql.push_str(&format!(
                "(resolutiondate is EMPTY OR resolutiondate >= -{reopen_minutes}m) and "
            ));
        } else {
            jql.push_str("statusCategory != Done and ");
        }
        jql.push_str(&format!(
            "project={:?} and labels={label:?} order by status ASC,resolutiondate DESC",
            m.text(&c.project)?
        ));
        let body = json!({"jql": jql, "maxResults": 2, "fields": ["status"]});
        let v = if self.cloud() {
            // Jira Cloud searches with API v3's `search/jql` whatever version api_url names.
            let url =
                join_url(&self.api_url, "search/jql").replacen("/rest/api/2/", "/rest/api/3/", 1);
            self.call_url(http, reqwest::Method::POST, &url, Some(&body))
                .await?
        } else {
            self.call(http, reqwest::Method::POST, "search", Some(&body))
                .await?
        };
        let Some(issue) = v
            .get("issues")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        else {
            return Ok(None);
        };
        let key = issue
            .get("key")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let done = issue["fields"]["status"]["statusCategory"]["key"] == "done";
        Ok(Some(Found { key, done }))
    }

    async fn transition(&self, http: &Http, key: &str, name: &str) -> Result<(), DeliveryError> {
        let path = format!("issue/{key}/transitions");
        let v = self.call(http, reqwest::Method::GET, &path, None).await?;
        let id = v
            .get("transitions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|t| t.get("id").cloned())
            .ok_or_else(|| {
                DeliveryError::Refused(format!("issue {key} has no transition {name:?}"))
            })?;
        self.call(
            http,
            reqwest::Method::POST,
            &path,
            Some(&json!({"transition": {"id": id}})),
        )
        .await
        .map(|_| ())
    }

    /// The issue's fields; `update` leaves out summary and description whose
    /// `enable_update` is false.
    fn fields(&self, m: &Msg<'_>, label: &str, update: bool) -> Result<Value, DeliveryError> {
        let c = self;
        let summary_t = c.summary.clone().unwrap_or(Field::Template(
            r#"{{ template "jira.default.summary" . }}"#.into(),
        ));
        let description_t = c.description.clone().unwrap_or(Field::Template(
            r#"{{ template "jira.default.description" . }}"#.into(),
        ));
        let (summary, _) = truncate(&m.text(summary_t.template())?, MAX_SUMMARY);
        let (description, _) = truncate(&m.text(description_t.template())?, MAX_DESCRIPTION);
        let mut f = serde_json::Map::new();
        for (k, v) in &c.fields {
            f.insert(k.clone(), m.deep(v)?);
        }
        f.insert("project".into(), json!({"key": m.text(&c.project)?}));
        f.insert("issuetype".into(), json!({"name": m.text(&c.issue_type)?}));
        if !update || summary_t.on_update() {
            f.insert("summary".into(), Value::String(summary));
        }
        if !update || description_t.on_update() {
            if self.v3() {
                let d = description.trim();
                if !d.is_empty() {
                    let adf: Value = serde_json::from_str(d).map_err(|_| {
                        DeliveryError::Setup("description template: invalid JSON for API v3 (Atlassian Document Format)".into())
                    })?;
                    f.insert("description".into(), adf);
                }
            } else if !description.is_empty() {
                f.insert("description".into(), Value::String(description));
            }
        }
        let mut labels = Vec::new();
        for l in &c.labels {
            labels.push(m.text(l)?);
        }
        labels.push(label.to_string());
        labels.sort();
        f.insert("labels".into(), json!(labels));
        let priority = m.text(
            c.priority
                .as_deref()
                .unwrap_or(r#"{{ template "jira.default.priority" . }}"#),
        )?;
        if !priority.is_empty() {
            f.insert("priority".into(), json!({"name": priority}));
        }
        Ok(Value::Object(f))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;

    #[tokio::test]
    async fn golden_create_then_resolve() {
        // The search finds nothing while firing (create), then the open issue (resolve).
        let ctx = super::super::DeliveryContext {
            external_url: "http://appliance.example:8080".into(),
        };
        let firing = testing::Recorder::start(&[
            ("POST", "/rest/api/2/search", 200, r#"{"issues":[]}"#),
            ("POST", "/rest/api/2/issue", 201, r#"{"key":"OPS-1"}"#),
        ])
        .await;
        let resolved = testing::Recorder::start(&[
            ("POST", "/rest/api/2/search", 200, r#"{"issues":[{"key":"OPS-1","fields":{"status":{"statusCategory":{"key":"indeterminate"}}}}]}"#),
            ("GET", "/rest/api/2/issue/OPS-1/transitions", 200, r#"{"transitions":[{"id":"21","name":"In Progress"},{"id":"31","name":"Done"}]}"#),
            ("PUT", "/rest/api/2/issue/OPS-1", 204, ""),
        ])
        .await;
        let mut all = Vec::new();
        for (rec, resolved_group) in [(&firing, false), (&resolved, true)] {
            let (cfg, i) = testing::integration(
                "jira_configs:\n  - api_url: '{url}/rest/api/2'\n    api_type: datacenter\n    project: OPS\n    issue_type: Bug\n    labels: ['{{ .CommonLabels.job }}']\n    resolve_transition: Done\n    http_config: {basic_auth: {username: bot@example.org, password: t0k3n}}\n",
                &rec.url,
            );
            let r = i
                .build(&super::super::Build {
                    global: &cfg.global,
                    templates: &cfg.template_set,
                })
                .unwrap();
            r.deliver(&testing::notification(resolved_group), &ctx)
                .await
                .unwrap();
            all.extend(rec.take());
        }
        crate::testsupport::assert_golden(
            "src/notify/receivers/testdata/jira.golden",
            &testing::render(&all),
        );
    }
}
