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

/// Alertmanager's template functions: the shared string ones, the method helpers the
/// rewrite produces, and `join`, `trimSpace`, `safeHtml`, `stringSlice`, `toJson`.
fn func_map() -> gotmpl::FuncMap {
    let by_status = |want: &'static str| -> gotmpl::ValueFunc {
        Arc::new(move |a: &[T]| {
            Ok(T::List(Arc::from(
                a.first()
                    .map(list_of)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|x| x.field("Status").map(|s| s.to_string()) == Some(want.into()))
                    .collect::<Vec<_>>(),
            )))
        })
    };
    let mut m = crate::model::gotmpl::string_func_map();
    let mut add = |name: &str, f: gotmpl::ValueFunc| {
        m.insert(name.to_string(), f);
    };
    add("__Firing", by_status("firing"));
    add("__Resolved", by_status("resolved"));
    add(
        "__SortedPairs",
        Arc::new(|a: &[T]| {
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
        }),
    );
    add(
        "__Names",
        Arc::new(|a: &[T]| {
            Ok(T::List(Arc::from(
                a.first()
                    .map(map_of)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, _)| s(&k))
                    .collect::<Vec<_>>(),
            )))
        }),
    );
    add(
        "__Values",
        Arc::new(|a: &[T]| {
            let v = a.first().cloned().unwrap_or(T::Nil);
            let vals: Vec<T> = match &v {
                T::Map(_) => map_of(&v).into_iter().map(|(_, x)| x).collect(),
                // `.SortedPairs.Values`: the values of name/value pairs.
                T::List(l) => l.iter().filter_map(|p| p.field("Value").cloned()).collect(),
                _ => Vec::new(),
            };
            Ok(T::List(Arc::from(vals)))
        }),
    );
    add(
        "__Remove",
        Arc::new(|a: &[T]| {
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
        }),
    );
    add("trimSpace", Arc::new(|a: &[T]| Ok(s(arg_str(a, 0).trim()))));
    add(
        "join",
        Arc::new(|a: &[T]| {
            let sep = arg_str(a, 0);
            let items: Vec<String> = a
                .get(1)
                .map(list_of)
                .unwrap_or_default()
                .iter()
                .map(|x| x.to_string())
                .collect();
            Ok(s(&items.join(&sep)))
        }),
    );
    add(
        "safeHtml",
        Arc::new(|a: &[T]| Ok(a.first().cloned().unwrap_or(T::Nil))),
    );
    add(
        "stringSlice",
        Arc::new(|a: &[T]| Ok(T::List(Arc::from(a.to_vec())))),
    );
    add(
        "toJson",
        Arc::new(|a: &[T]| Ok(s(&to_json(a.first().unwrap_or(&T::Nil)).to_string()))),
    );
    m
}

/// Go's `json.Marshal` of template data: the alert fields by their JSON names, an empty
/// alert list (Go's nil slice) as `null`.
fn to_json(v: &T) -> serde_json::Value {
    use serde_json::Value as J;
    let json_name = |k: &str| -> String {
        match k {
            "Status" => "status",
            "Labels" => "labels",
            "Annotations" => "annotations",
            "StartsAt" => "startsAt",
            "EndsAt" => "endsAt",
            "GeneratorURL" => "generatorURL",
            "Fingerprint" => "fingerprint",
            other => other,
        }
        .to_string()
    };
    match v {
        T::Nil => J::Null,
        T::Bool(b) => J::Bool(*b),
        T::String(x) => J::String(x.to_string()),
        T::List(l) if l.is_empty() => J::Null,
        T::List(l) => J::Array(l.iter().map(to_json).collect()),
        T::Map(m) => J::Object(m.iter().map(|(k, x)| (json_name(k), to_json(x))).collect()),
        other => serde_json::from_str(&other.to_string()).unwrap_or(J::String(other.to_string())),
    }
}

/// Built-in named templates: Alertmanager's `default.tmpl` names (users' templates call
/// them), with the same data and wording; the e-mail HTML is our own, smaller layout.
const DEFAULTS: &str = include_str!("default.tmpl");

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

    /// The whole source: built-ins, `templates:` files, and `text` as the named template
    /// [`FIELD`], so text outside `define` blocks in the files never reaches the output.
    fn source(&self, text: &str) -> String {
        format!(
            "{}{}{{{{ define \"{FIELD}\" }}}}{}{{{{ end }}}}",
            rewrite(DEFAULTS),
            rewrite(&self.extra),
            rewrite(text)
        )
    }

    fn parse(&self, name: &str, text: &str) -> Result<Template, TemplateError> {
        Template::new(name)
            .funcs(func_map())
            .parse(&self.source(text))
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
        t.execute_template_to_string(FIELD, &data(n, now, external_url))
            .map_err(|e| TemplateError(e.to_string()))
    }

    /// As [`Templates::expand`], escaping the data for HTML by its context as Go's
    /// `html/template` does (Alertmanager's e-mail HTML and Telegram's HTML mode).
    pub fn expand_html(
        &self,
        text: &str,
        n: &Notification,
        now: i64,
        external_url: &str,
    ) -> Result<String, TemplateError> {
        if !text.contains("{{") {
            return Ok(text.to_string());
        }
        gotmpl::html::Template::new("field")
            .funcs(func_map())
            .parse(&self.source(text))
            .and_then(|t| t.execute_template_to_string(FIELD, &data(n, now, external_url)))
            .map_err(|e| TemplateError(e.to_string()))
    }
}

/// The name a field's text is parsed under.
const FIELD: &str = "__appliance_field";

fn labels(l: &crate::model::Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|x| (x.name.to_string(), x.value.to_string()))
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

#[cfg(test)]
mod more_tests {
    use super::*;
    use crate::model::Labels;
    use crate::notify::dispatch::Alert;

    fn note(summary: &str) -> Notification {
        Notification {
            receiver: "team a".into(),
            integration: 0,
            log_entry: Default::default(),
            group_key: "0:{}".into(),
            group_labels: [("alertname".to_string(), "Down".to_string())].into(),
            alerts: vec![Alert {
                labels: Labels::from_pairs([("alertname", "Down"), ("severity", "warning")]),
                annotations: [("summary".to_string(), summary.to_string())].into(),
                starts_at: 0,
                ends_at: 0,
                generator_url: "http://x/graph".into(),
            }],
            status: "firing",
        }
    }

    #[test]
    fn html_expansion_escapes_the_data_not_the_template() {
        let t = Templates::default();
        let n = note("<b>disk</b> & more");
        let html = t
            .expand_html(
                "<i>{{ .CommonAnnotations.summary }}</i>",
                &n,
                1,
                "http://am",
            )
            .unwrap();
        assert_eq!(html, "<i>&lt;b&gt;disk&lt;/b&gt; &amp; more</i>");
        let text = t
            .expand(
                "<i>{{ .CommonAnnotations.summary }}</i>",
                &n,
                1,
                "http://am",
            )
            .unwrap();
        assert_eq!(text, "<i><b>disk</b> & more</i>");
    }

    #[test]
    fn text_between_definitions_in_template_files_stays_out_of_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.tmpl"),
            "# a comment line outside any define\n{{ define \"x\" }}X{{ end }}\n\n{{ define \"y\" }}Y{{ end }}\n",
        )
        .unwrap();
        let t = Templates::load(&["*.tmpl".into()], dir.path()).unwrap();
        let n = note("s");
        assert_eq!(
            t.expand("{{ template \"x\" . }}{{ template \"y\" . }}", &n, 1, "")
                .unwrap(),
            "XY"
        );
    }

    #[test]
    fn alertmanager_functions_and_defaults() {
        let t = Templates::default();
        let n = note("s");
        let x = |src: &str| t.expand(src, &n, 1, "http://am").unwrap();
        assert_eq!(
            x("{{ template \"__alertmanagerURL\" . }}"),
            "http://am/#/alerts?receiver=team+a"
        );
        assert_eq!(x("{{ template \"jira.default.priority\" . }}"), "Medium");
        assert_eq!(x("{{ .Alerts.Resolved | toJson }}"), "null");
        let j: serde_json::Value =
            serde_json::from_str(&x("{{ .Alerts.Firing | toJson }}")).unwrap();
        assert_eq!(j[0]["labels"]["severity"], "warning");
        assert_eq!(j[0]["status"], "firing");
    }
}
