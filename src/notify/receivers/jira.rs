//! `jira_configs`: one Jira issue per alert group, found again by its label
//! `ALERT{<group hash>}`: created while firing, updated on each notification, resolved
//! (and with `reopen_transition`, reopened) by workflow transition, as Alertmanager does.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    host_of, join_url, truncate, Build, DeliveryContext, DeliveryError, Http, Integration, Msg,
    Receiver,
};
use crate::model::httpconf::HttpClientConfig;
use crate::model::time::Duration;
use crate::notify::config::GlobalConfig;
use crate::notify::dispatch::Notification;

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
    /// Summary (template).
    #[serde(default)]
    pub summary: Option<String>,
    /// Description (template).
    #[serde(default)]
    pub description: Option<String>,
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
    /// Other fields, passed through.
    #[serde(default)]
    pub fields: BTreeMap<String, Value>,
}

impl Integration for Config {
    const KIND: &'static str = "jira";

    fn check(&mut self, g: &GlobalConfig) -> Result<(), String> {
        if self.project.is_empty() {
            return Err("missing project in jira_config".into());
        }
        if self.issue_type.is_empty() {
            return Err("missing issue_type in jira_config".into());
        }
        if self.api_url.is_empty() {
            if g.jira_api_url.is_empty() {
                return Err("missing api_url in jira_config and no global jira_api_url set".into());
            }
            self.api_url = g.jira_api_url.clone();
        }
        url::Url::parse(&self.api_url).map_err(|e| format!("api_url: {e}"))?;
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

    fn build(&self, b: &Build<'_>) -> Result<Arc<dyn Receiver>, String> {
        Ok(Arc::new(Jira {
            http: Http::new(self.http_config.as_ref(), b, super::TIMEOUT)?,
            cfg: self.clone(),
            templates: b.templates.clone(),
        }))
    }
}

struct Jira {
    http: Http,
    cfg: Config,
    templates: crate::notify::template::Templates,
}

/// An issue as the search returns it.
struct Found {
    key: String,
    done: bool,
}

impl Jira {
    fn cloud(&self) -> bool {
        match self.cfg.api_type.as_str() {
            "cloud" => true,
            "datacenter" => false,
            _ => host_of(&self.cfg.api_url).ends_with(".atlassian.net"),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, DeliveryError> {
        let mut req = self
            .http
            .request(method, &join_url(&self.cfg.api_url, path))?
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let answer = self.http.send(req).await?;
        if answer.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&answer).unwrap_or(Value::Null))
    }

    async fn search(&self, label: &str, firing: bool) -> Result<Option<Found>, DeliveryError> {
        let c = &self.cfg;
        let mut jql = String::new();
        if !c.wont_fix_resolution.is_empty() {
            jql.push_str(&format!("resolution != {:?} and ", c.wont_fix_resolution));
        }
        if firing && c.reopen_transition.is_empty() {
            jql.push_str("statusCategory != Done and ");
        }
        if let Some(d) = c.reopen_duration.filter(|d| d.as_millis() > 0) {
            jql.push_str(&format!(
                "(resolutiondate is EMPTY OR resolutiondate >= -{}m) and ",
                d.as_millis() / 60_000
            ));
        }
        jql.push_str(&format!(
            "project={:?} and labels={label:?} order by status ASC,resolutiondate DESC",
            c.project
        ));
        let body = json!({"jql": jql, "maxResults": 2, "fields": ["status"]});
        let path = if self.cloud() { "search/jql" } else { "search" };
        let v = self.call(reqwest::Method::POST, path, Some(&body)).await?;
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

    async fn transition(&self, key: &str, name: &str) -> Result<(), DeliveryError> {
        let path = format!("issue/{key}/transitions");
        let v = self.call(reqwest::Method::GET, &path, None).await?;
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
            reqwest::Method::POST,
            &path,
            Some(&json!({"transition": {"id": id}})),
        )
        .await
        .map(|_| ())
    }

    fn fields(&self, m: &Msg<'_>, label: &str) -> Result<Value, DeliveryError> {
        let c = &self.cfg;
        let t = |v: &Option<String>, d: &str| m.text(v.as_deref().unwrap_or(d));
        let (summary, _) = truncate(
            &t(&c.summary, r#"{{ template "jira.default.summary" . }}"#)?,
            255,
        );
        let description = t(
            &c.description,
            r#"{{ template "jira.default.description" . }}"#,
        )?;
        let description = if self.cloud() {
            // API v3 takes the Atlassian Document Format.
            json!({"type": "doc", "version": 1, "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": description}]}
            ]})
        } else {
            Value::String(description)
        };
        let mut labels = Vec::new();
        for l in &c.labels {
            let l = m.text(l)?;
            if !l.is_empty() {
                labels.push(l);
            }
        }
        labels.push(label.to_string());
        let mut f = json!({
            "project": {"key": c.project},
            "issuetype": {"name": c.issue_type},
            "summary": summary,
            "description": description,
            "labels": labels,
        });
        let priority = t(&c.priority, r#"{{ template "jira.default.priority" . }}"#)?;
        if !priority.is_empty() {
            f["priority"] = json!({"name": priority});
        }
        for (k, v) in &c.fields {
            f[k] = v.clone();
        }
        Ok(f)
    }
}

impl Receiver for Jira {
    fn kind(&self) -> &'static str {
        "jira"
    }
    fn target(&self) -> String {
        format!("{} {}", host_of(&self.cfg.api_url), self.cfg.project)
    }
    fn send_resolved(&self) -> bool {
        self.cfg.send_resolved.unwrap_or(true)
    }
    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
        ctx: &'a DeliveryContext,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let c = &self.cfg;
            let m = Msg::new(n, ctx, &self.templates);
            let label = format!("ALERT{{{}}}", m.key_hash());
            let found = self.search(&label, !m.resolved()).await?;
            let fields = self.fields(&m, &label)?;
            match found {
                None if m.resolved() => Ok(()),
                None => self
                    .call(
                        reqwest::Method::POST,
                        "issue",
                        Some(&json!({"fields": fields})),
                    )
                    .await
                    .map(|_| ()),
                Some(issue) => {
                    // Project and type are fixed once the issue exists; Jira refuses them in
                    // an update on many screens.
                    let mut fields = fields;
                    if let Value::Object(f) = &mut fields {
                        f.remove("project");
                        f.remove("issuetype");
                    }
                    let path = format!("issue/{}", issue.key);
                    self.call(
                        reqwest::Method::PUT,
                        &path,
                        Some(&json!({"fields": fields})),
                    )
                    .await?;
                    if m.resolved() {
                        if !issue.done && !c.resolve_transition.is_empty() {
                            self.transition(&issue.key, &c.resolve_transition).await?;
                        }
                    } else if issue.done && !c.reopen_transition.is_empty() {
                        self.transition(&issue.key, &c.reopen_transition).await?;
                    }
                    Ok(())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;

    #[tokio::test]
    async fn golden_create_then_resolve() {
        // The search finds nothing while firing (create), then the open issue (resolve).
        let ctx = super::DeliveryContext {
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
                .build(&super::Build {
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
