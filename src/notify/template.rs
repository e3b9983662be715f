//! Alertmanager notification templates: receiver fields (Slack `title`, `text`, …, e-mail
//! `subject`/`html`/`text`) and `templates:` files in Go `text/template` syntax over
//! Alertmanager's data (`.Status`, `.Receiver`, `.Alerts`, `.GroupLabels`, `.CommonLabels`,
//! `.CommonAnnotations`, `.ExternalURL`) through gotmpl.
//!
//! Go's data has methods (`.Alerts.Firing`, `.CommonLabels.SortedPairs`, `.Names`, `.Values`,
//! `.Remove`); gotmpl's values do not, so such calls are rewritten into helper functions
//! before parsing.

use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::{Template, Value as T};

use crate::model::gotmpl::arg_str;

use super::dispatch::Notification;

const METHODS: &[&str] = &[
    "Firing",
    "Resolved",
    "SortedPairs",
    "Names",
    "Values",
    "Remove",
];

/// Rewrites method calls on dotted paths (`.Alerts.Firing`) into helper calls
/// (`(__Firing .Alerts)`), inside actions only.
fn rewrite(src: &str) -> String {
    let re = match regex::Regex::new(r"\$?(?:\.[A-Za-z_][A-Za-z0-9_]*)+") {
        Ok(r) => r,
        Err(_) => return src.to_string(),
    };
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let end = after.find("}}").map(|e| e + 2).unwrap_or(after.len());
        let action = &after[..end];
        let replaced = re.replace_all(action, |c: &regex::Captures| {
            let path = &c[0];
            let (base, segs): (String, Vec<&str>) = if let Some(p) = path.strip_prefix('$') {
                ("$".into(), p.split('.').filter(|s| !s.is_empty()).collect())
            } else {
                (
                    String::new(),
                    path.split('.').filter(|s| !s.is_empty()).collect(),
                )
            };
            if !segs.iter().any(|s| METHODS.contains(s)) {
                return path.to_string();
            }
            let mut expr = base;
            for s in segs {
                if s == "Remove" {
                    let e = if expr.is_empty() {
                        ".".to_string()
                    } else {
                        expr.clone()
                    };
                    expr = format!("__Remove {e}");
                } else if METHODS.contains(&s) {
                    let e = if expr.is_empty() {
                        ".".to_string()
                    } else {
                        expr.clone()
                    };
                    expr = format!("(__{s} {e})");
                } else {
                    expr = format!("{expr}.{s}");
                }
            }
            expr
        });
        out.push_str(&replaced);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn s(v: &str) -> T {
    T::String(Arc::from(v))
}

fn kv(m: &BTreeMap<String, String>) -> T {
    T::Map(Arc::new(
        m.iter()
            .map(|(k, v)| (Arc::from(k.as_str()), s(v)))
            .collect(),
    ))
}

fn map_of(v: &T) -> Vec<(String, T)> {
    match v {
        T::Map(m) => m.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        _ => Vec::new(),
    }
}

fn list_of(v: &T) -> Vec<T> {
    match v {
        T::List(l) => l.to_vec(),
        _ => Vec::new(),
    }
}

fn with_funcs(t: Template) -> Template {
    let by_status = |want: &'static str| {
        move |a: &[T]| {
            Ok(T::List(Arc::from(
                a.first()
                    .map(list_of)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|x| x.field("Status").map(|s| s.to_string()) == Some(want.into()))
                    .collect::<Vec<_>>(),
            )))
        }
    };
    crate::model::gotmpl::string_funcs(t)
        .func("__Firing", by_status("firing"))
        .func("__Resolved", by_status("resolved"))
        .func("__SortedPairs", |a: &[T]| {
            Ok(T::List(Arc::from(
                a.first()
                    .map(map_of)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| {
                        T::Map(Arc::new(
                            [(Arc::from("Name"), s(&k)), (Arc::from("Value"), v)]
                                .into_iter()
                                .collect(),
                        ))
                    })
                    .collect::<Vec<_>>(),
            )))
        })
        .func("__Names", |a: &[T]| {
            Ok(T::List(Arc::from(
                a.first()
                    .map(map_of)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, _)| s(&k))
                    .collect::<Vec<_>>(),
            )))
        })
        .func("__Values", |a: &[T]| {
            let v = a.first().cloned().unwrap_or(T::Nil);
            let vals: Vec<T> = match &v {
                T::Map(_) => map_of(&v).into_iter().map(|(_, x)| x).collect(),
                // `.SortedPairs.Values`: the values of name/value pairs.
                T::List(l) => l.iter().filter_map(|p| p.field("Value").cloned()).collect(),
                _ => Vec::new(),
            };
            Ok(T::List(Arc::from(vals)))
        })
        .func("__Remove", |a: &[T]| {
            let drop: Vec<String> = a
                .get(1)
                .map(list_of)
                .unwrap_or_default()
                .iter()
                .map(|x| x.to_string())
                .collect();
            Ok(T::Map(Arc::new(
                a.first()
                    .map(map_of)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(k, _)| !drop.contains(k))
                    .map(|(k, v)| (Arc::from(k.as_str()), v))
                    .collect(),
            )))
        })
        .func("trimSpace", |a: &[T]| Ok(s(arg_str(a, 0).trim())))
        .func("join", |a: &[T]| {
            let sep = arg_str(a, 0);
            let items: Vec<String> = a
                .get(1)
                .map(list_of)
                .unwrap_or_default()
                .iter()
                .map(|x| x.to_string())
                .collect();
            Ok(s(&items.join(&sep)))
        })
        .func("safeHtml", |a: &[T]| {
            Ok(a.first().cloned().unwrap_or(T::Nil))
        })
        .func("stringSlice", |a: &[T]| Ok(T::List(Arc::from(a.to_vec()))))
}

/// Built-in named templates: Alertmanager's `default.tmpl` names (users' templates call
/// them), with the same data and wording; the e-mail HTML is our own, smaller layout.
const DEFAULTS: &str = r#"{{ define "__alertmanager" }}Alertmanager{{ end }}{{ define "__alertmanagerURL" }}{{ .ExternalURL }}{{ end }}{{ define "__subject" }}[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] {{ .GroupLabels.SortedPairs.Values | join " " }} {{ if gt (len .CommonLabels) (len .GroupLabels) }}({{ with .CommonLabels.Remove .GroupLabels.Names }}{{ .Values | join " " }}{{ end }}){{ end }}{{ end }}{{ define "__description" }}{{ end }}{{ define "__text_alert_list" }}{{ range . }}Labels:
{{ range .Labels.SortedPairs }} - {{ .Name }} = {{ .Value }}
{{ end }}Annotations:
{{ range .Annotations.SortedPairs }} - {{ .Name }} = {{ .Value }}
{{ end }}Source: {{ .GeneratorURL }}
{{ end }}{{ end }}{{ define "__text_alert_list_markdown" }}{{ range . }}
Labels:
{{ range .Labels.SortedPairs }}  - {{ .Name }} = {{ .Value }}
{{ end }}
Annotations:
{{ range .Annotations.SortedPairs }}  - {{ .Name }} = {{ .Value }}
{{ end }}
Source: {{ .GeneratorURL }}
{{ end }}
{{ end }}{{ define "__alerts_text" }}{{ if gt (len .Alerts.Firing) 0 }}
Alerts Firing:
{{ template "__text_alert_list" .Alerts.Firing }}
{{ end }}{{ if gt (len .Alerts.Resolved) 0 }}
Alerts Resolved:
{{ template "__text_alert_list" .Alerts.Resolved }}
{{ end }}{{ end }}{{ define "__alerts_markdown" }}
{{ if gt (len .Alerts.Firing) 0 }}
# Alerts Firing:
{{ template "__text_alert_list_markdown" .Alerts.Firing }}
{{ end }}
{{ if gt (len .Alerts.Resolved) 0 }}
# Alerts Resolved:
{{ template "__text_alert_list_markdown" .Alerts.Resolved }}
{{ end }}
{{ end }}{{ define "slack.default.title" }}{{ template "__subject" . }}{{ end }}{{ define "slack.default.username" }}{{ template "__alertmanager" . }}{{ end }}{{ define "slack.default.fallback" }}{{ template "slack.default.title" . }} | {{ template "slack.default.titlelink" . }}{{ end }}{{ define "slack.default.callbackid" }}{{ end }}{{ define "slack.default.pretext" }}{{ end }}{{ define "slack.default.titlelink" }}{{ template "__alertmanagerURL" . }}{{ end }}{{ define "slack.default.iconemoji" }}{{ end }}{{ define "slack.default.iconurl" }}{{ end }}{{ define "slack.default.text" }}{{ end }}{{ define "slack.default.footer" }}{{ end }}{{ define "pagerduty.default.description" }}{{ template "__subject" . }}{{ end }}{{ define "pagerduty.default.client" }}{{ template "__alertmanager" . }}{{ end }}{{ define "pagerduty.default.clientURL" }}{{ template "__alertmanagerURL" . }}{{ end }}{{ define "pagerduty.default.instances" }}{{ template "__text_alert_list" . }}{{ end }}{{ define "opsgenie.default.message" }}{{ template "__subject" . }}{{ end }}{{ define "opsgenie.default.description" }}{{ .CommonAnnotations.SortedPairs.Values | join " " }}
{{ if gt (len .Alerts.Firing) 0 -}}
Alerts Firing:
{{ template "__text_alert_list" .Alerts.Firing }}
{{- end }}
{{ if gt (len .Alerts.Resolved) 0 -}}
Alerts Resolved:
{{ template "__text_alert_list" .Alerts.Resolved }}
{{- end }}
{{- end }}{{ define "opsgenie.default.source" }}{{ template "__alertmanagerURL" . }}{{ end }}{{ define "wechat.default.message" }}{{ template "__subject" . }}
{{ .CommonAnnotations.SortedPairs.Values | join " " }}
{{ if gt (len .Alerts.Firing) 0 -}}
Alerts Firing:
{{ template "__text_alert_list" .Alerts.Firing }}
{{- end }}
{{ if gt (len .Alerts.Resolved) 0 -}}
Alerts Resolved:
{{ template "__text_alert_list" .Alerts.Resolved }}
{{- end }}
AlertmanagerUrl:
{{ template "__alertmanagerURL" . }}
{{- end }}{{ define "wechat.default.to_user" }}{{ end }}{{ define "wechat.default.to_party" }}{{ end }}{{ define "wechat.default.to_tag" }}{{ end }}{{ define "wechat.default.agent_id" }}{{ end }}{{ define "victorops.default.state_message" }}{{ .CommonAnnotations.SortedPairs.Values | join " " }}
{{ if gt (len .Alerts.Firing) 0 -}}
Alerts Firing:
{{ template "__text_alert_list" .Alerts.Firing }}
{{- end }}
{{ if gt (len .Alerts.Resolved) 0 -}}
Alerts Resolved:
{{ template "__text_alert_list" .Alerts.Resolved }}
{{- end }}
{{- end }}{{ define "victorops.default.entity_display_name" }}{{ template "__subject" . }}{{ end }}{{ define "victorops.default.monitoring_tool" }}{{ template "__alertmanager" . }}{{ end }}{{ define "pushover.default.title" }}{{ template "__subject" . }}{{ end }}{{ define "pushover.default.message" }}{{ .CommonAnnotations.SortedPairs.Values | join " " }}
{{ template "__alerts_text" . }}
{{ end }}{{ define "pushover.default.url" }}{{ template "__alertmanagerURL" . }}{{ end }}{{ define "sns.default.subject" }}{{ template "__subject" . }}{{ end }}{{ define "sns.default.message" }}{{ .CommonAnnotations.SortedPairs.Values | join " " }}
{{ template "__alerts_text" . }}
{{ end }}{{ define "telegram.default.message" }}
{{ template "__alerts_text" . }}
{{ end }}{{ define "discord.default.content" }}{{ end }}{{ define "discord.default.title" }}{{ template "__subject" . }}{{ end }}{{ define "discord.default.message" }}
{{ template "__alerts_text" . }}
{{ end }}{{ define "webex.default.message" }}{{ .CommonAnnotations.SortedPairs.Values | join " " }}
{{ template "__alerts_text" . }}
{{ end }}{{ define "msteams.default.summary" }}{{ template "__subject" . }}{{ end }}{{ define "msteams.default.title" }}{{ template "__subject" . }}{{ end }}{{ define "msteams.default.text" }}{{ template "__alerts_markdown" . }}{{ end }}{{ define "msteamsv2.default.title" }}{{ template "__subject" . }}{{ end }}{{ define "msteamsv2.default.text" }}{{ template "__alerts_markdown" . }}{{ end }}{{ define "jira.default.summary" }}{{ template "__subject" . }}{{ end }}{{ define "jira.default.description" }}{{ template "__alerts_markdown" . }}{{ end }}{{ define "jira.default.priority" }}{{ $p := "" }}{{ range .Alerts }}{{ $s := index .Labels "severity" }}{{ if eq $s "critical" }}{{ $p = "High" }}{{ else if and (eq $s "warning") (ne $p "High") }}{{ $p = "Medium" }}{{ else if and (eq $s "info") (eq $p "") }}{{ $p = "Low" }}{{ end }}{{ end }}{{ $p }}{{ end }}{{ define "rocketchat.default.title" }}{{ template "__subject" . }}{{ end }}{{ define "rocketchat.default.alias" }}{{ template "__alertmanager" . }}{{ end }}{{ define "rocketchat.default.titlelink" }}{{ template "__alertmanagerURL" . }}{{ end }}{{ define "rocketchat.default.emoji" }}{{ end }}{{ define "rocketchat.default.iconurl" }}{{ end }}{{ define "rocketchat.default.text" }}{{ end }}{{ define "mattermost.default.text" }}{{ template "__subject" . }}
{{ template "__alerts_text" . }}{{ end }}{{ define "appliance.slack.text" }}{{ range .Alerts }}*{{ .Status | toUpper }}* {{ if .Annotations.summary }}{{ .Annotations.summary }}{{ else }}{{ .Labels.alertname }}{{ end }}
{{ with .Annotations.description }}{{ . }}
{{ end }}{{ range $i, $p := .Labels.SortedPairs }}{{ if $i }} {{ end }}`{{ $p.Name }}={{ $p.Value }}`{{ end }}
{{ end }}{{ end }}{{ define "appliance.text" }}{{ template "__subject" . }}
{{ range .Alerts }}
{{ .Status | toUpper }} {{ if .Annotations.summary }}{{ .Annotations.summary }}{{ else }}{{ .Labels.alertname }}{{ end }}
{{ with .Annotations.description }}{{ . }}
{{ end }}{{ range $i, $p := .Labels.SortedPairs }}{{ if $i }} {{ end }}{{ $p.Name }}={{ $p.Value }}{{ end }}
{{ end }}
{{ template "__alertmanagerURL" . }}
{{ end }}{{ define "email.default.subject" }}{{ template "__subject" . }}{{ end }}{{ define "email.default.html" }}<!DOCTYPE html>
<html><head><meta charset="UTF-8"><title>{{ template "__subject" . }}</title></head>
<body style="font-family: Helvetica, Arial, sans-serif; font-size: 14px; background: #f6f6f6; margin: 0; padding: 20px;">
<table style="max-width: 600px; margin: 0 auto; background: #fff; border: 1px solid #e9e9e9; border-collapse: collapse; width: 100%;">
<tr><td style="background: {{ if eq .Status "firing" }}#E6522C{{ else }}#2DB369{{ end }}; color: #fff; padding: 16px; font-size: 16px;">{{ .Alerts | len }} alert{{ if gt (len .Alerts) 1 }}s{{ end }} for {{ range .GroupLabels.SortedPairs }}{{ .Name }}={{ .Value }} {{ end }}</td></tr>
<tr><td style="padding: 10px;"><a href="{{ template "__alertmanagerURL" . }}">View in {{ template "__alertmanager" . }}</a></td></tr>
{{ if gt (len .Alerts.Firing) 0 }}<tr><td style="padding: 10px;"><strong>[{{ .Alerts.Firing | len }}] Firing</strong></td></tr>{{ end }}
{{ range .Alerts.Firing }}<tr><td style="padding: 10px; border-top: 1px solid #eee;"><strong>Labels</strong><br>{{ range .Labels.SortedPairs }}{{ .Name }} = {{ .Value }}<br>{{ end }}{{ if gt (len .Annotations) 0 }}<strong>Annotations</strong><br>{{ end }}{{ range .Annotations.SortedPairs }}{{ .Name }} = {{ .Value }}<br>{{ end }}<a href="{{ .GeneratorURL }}">Source</a></td></tr>
{{ end }}{{ if gt (len .Alerts.Resolved) 0 }}<tr><td style="padding: 10px;"><strong>[{{ .Alerts.Resolved | len }}] Resolved</strong></td></tr>{{ end }}
{{ range .Alerts.Resolved }}<tr><td style="padding: 10px; border-top: 1px solid #eee;"><strong>Labels</strong><br>{{ range .Labels.SortedPairs }}{{ .Name }} = {{ .Value }}<br>{{ end }}{{ if gt (len .Annotations) 0 }}<strong>Annotations</strong><br>{{ end }}{{ range .Annotations.SortedPairs }}{{ .Name }} = {{ .Value }}<br>{{ end }}<a href="{{ .GeneratorURL }}">Source</a></td></tr>
{{ end }}<tr><td style="padding: 10px; color: #999; font-size: 12px;"><a href="{{ .ExternalURL }}">Sent by {{ template "__alertmanager" . }}</a></td></tr>
</table></body></html>
{{ end }}"#;

/// Templates for one configuration: built-ins plus the `templates:` files.
#[derive(Clone, Debug, Default)]
pub struct Templates {
    extra: String,
}

/// Why a template failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template: {0}")]
pub struct TemplateError(pub String);

impl Templates {
    /// Reads the `templates:` globs (relative to `base`).
    pub fn load(globs: &[String], base: &std::path::Path) -> Result<Templates, TemplateError> {
        let mut extra = String::new();
        for g in globs {
            let path = base.join(g);
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dir = path.parent().unwrap_or(std::path::Path::new("."));
            let Some(re) = crate::model::files::glob_regex(&name) else {
                continue;
            };
            let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| {
                            p.file_name()
                                .is_some_and(|n| re.is_match(&n.to_string_lossy()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            for f in files {
                let text = crate::model::files::read_config_file(&f)
                    .map_err(|e| TemplateError(format!("{}: {e}", f.display())))?;
                extra.push_str(&text);
            }
        }
        let t = Templates { extra };
        t.parse("check", "")?;
        Ok(t)
    }

    fn parse(&self, name: &str, text: &str) -> Result<Template, TemplateError> {
        let src = format!(
            "{}{}{}",
            rewrite(DEFAULTS),
            rewrite(&self.extra),
            rewrite(text)
        );
        with_funcs(Template::new(name))
            .parse(&src)
            .map_err(|e| TemplateError(e.to_string()))
    }

    /// Expands `text` for `n` (a field without `{{` is returned as it is).
    pub fn expand(
        &self,
        text: &str,
        n: &Notification,
        now: i64,
        external_url: &str,
    ) -> Result<String, TemplateError> {
        if !text.contains("{{") {
            return Ok(text.to_string());
        }
        let t = self.parse("field", text)?;
        t.execute_to_string(&data(n, now, external_url))
            .map_err(|e| TemplateError(e.to_string()))
    }
}

fn labels(l: &crate::model::Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|x| (x.name.clone(), x.value.clone()))
        .collect()
}

/// The labels every alert of `n` shares (`.CommonLabels`).
pub fn common_labels(n: &Notification) -> BTreeMap<String, String> {
    let mut it = n.alerts.iter().map(|a| labels(&a.labels));
    let mut acc = it.next().unwrap_or_default();
    for m in it {
        acc.retain(|k, v| m.get(k) == Some(v));
    }
    acc
}

/// Alertmanager's template data for a notification.
pub fn data(n: &Notification, now: i64, external_url: &str) -> T {
    let alerts: Vec<T> = n
        .alerts
        .iter()
        .map(|a| {
            let status = if a.resolved(now) {
                "resolved"
            } else {
                "firing"
            };
            T::Map(Arc::new(
                [
                    ("Status", s(status)),
                    ("Labels", kv(&labels(&a.labels))),
                    ("Annotations", kv(&a.annotations)),
                    (
                        "StartsAt",
                        s(&crate::model::time::format_rfc3339(a.starts_at)),
                    ),
                    ("EndsAt", s(&crate::model::time::format_rfc3339(a.ends_at))),
                    ("GeneratorURL", s(&a.generator_url)),
                    ("Fingerprint", s(&format!("{:016x}", a.fingerprint()))),
                ]
                .into_iter()
                .map(|(k, v)| (Arc::from(k), v))
                .collect(),
            ))
        })
        .collect();
    let common = |maps: Vec<BTreeMap<String, String>>| {
        let mut it = maps.into_iter();
        let mut acc = it.next().unwrap_or_default();
        for m in it {
            acc.retain(|k, v| m.get(k) == Some(v));
        }
        acc
    };
    T::Map(Arc::new(
        [
            ("Receiver", s(&n.receiver)),
            ("Status", s(n.status)),
            ("Alerts", T::List(Arc::from(alerts))),
            ("GroupLabels", kv(&n.group_labels)),
            (
                "CommonLabels",
                kv(&common(
                    n.alerts.iter().map(|a| labels(&a.labels)).collect(),
                )),
            ),
            (
                "CommonAnnotations",
                kv(&common(
                    n.alerts.iter().map(|a| a.annotations.clone()).collect(),
                )),
            ),
            ("ExternalURL", s(external_url)),
            ("GroupKey", s(&n.group_key)),
        ]
        .into_iter()
        .map(|(k, v)| (Arc::from(k), v))
        .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use crate::notify::dispatch::Alert;

    fn note() -> Notification {
        let a = |inst: &str, end: i64| Alert {
            labels: Labels::from_pairs([("alertname", "Down"), ("job", "api"), ("instance", inst)]),
            annotations: [("summary".to_string(), format!("{inst} down"))].into(),
            starts_at: 0,
            ends_at: end,
            generator_url: "http://x/graph".into(),
        };
        Notification {
            receiver: "team".into(),
            integration: 0,
            log_entry: Default::default(),
            group_key: "0:{}".into(),
            group_labels: [("alertname".to_string(), "Down".to_string())].into(),
            alerts: vec![a("a:1", 0), a("b:1", 10)],
            status: "firing",
        }
    }

    #[test]
    fn alertmanager_style_templates() {
        let t = Templates::default();
        let n = note();
        let x = |src: &str| t.expand(src, &n, 100, "http://am").unwrap();
        assert_eq!(
            x("{{ template \"slack.default.title\" . }}"),
            "[FIRING:1] Down (api)"
        );
        assert_eq!(x("{{ .Alerts.Firing | len }}/{{ len .Alerts }}"), "1/2");
        assert_eq!(
            x("{{ range .Alerts.Firing }}{{ .Annotations.summary }}{{ end }}"),
            "a:1 down"
        );
        assert_eq!(
            x("{{ .CommonLabels.job }} {{ .Receiver }} {{ .Status | toUpper }}"),
            "api team FIRING"
        );
        assert_eq!(
            x("{{ range .CommonLabels.SortedPairs }}{{ .Name }}={{ .Value }};{{ end }}"),
            "alertname=Down;job=api;"
        );
        assert_eq!(x("{{ .GroupLabels.Names | join \",\" }}"), "alertname");
        assert_eq!(x("plain"), "plain");
        assert!(t.expand("{{ .Nope", &n, 0, "").is_err());
    }

    #[test]
    fn template_files_define_named_templates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.tmpl"),
            "{{ define \"my.title\" }}Alert: {{ .CommonLabels.alertname }}{{ end }}",
        )
        .unwrap();
        let t = Templates::load(&["*.tmpl".into()], dir.path()).unwrap();
        assert_eq!(
            t.expand("{{ template \"my.title\" . }}", &note(), 0, "")
                .unwrap(),
            "Alert: Down"
        );
        std::fs::write(dir.path().join("b.tmpl"), "{{ define \"broken\" }}{{ .X ").unwrap();
        assert!(Templates::load(&["*.tmpl".into()], dir.path()).is_err());
    }
}
