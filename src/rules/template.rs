//! Go `text/template` expansion of alert labels and annotations with Prometheus's variables
//! (`$labels`, `$value`, `$externalLabels`, `$externalURL`) and functions (`humanize`,
//! `query`, `reReplaceAll`, …), through the gotmpl crate.
//!
//! gotmpl prints floats the Rust way; Go prints `%v` (`1.234567891e+06`, `+Inf`). Every
//! output action is therefore piped through `__goprint`, which formats floats as Go does, so
//! output matches Prometheus byte for byte. Number formatting helpers (`go_g`) live here too.

use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::{Template, Value};

/// Runs a PromQL instant query for the `query` template function: samples as (labels, value).
pub type QueryFn =
    Arc<dyn Fn(&str) -> Result<Vec<(BTreeMap<String, String>, f64)>, String> + Send + Sync>;

/// What a template sees.
#[derive(Clone, Debug, Default)]
pub struct TemplateData {
    /// `$labels` / `.Labels`.
    pub labels: BTreeMap<String, String>,
    /// `$externalLabels`.
    pub external_labels: BTreeMap<String, String>,
    /// `$externalURL`.
    pub external_url: String,
    /// `$value` / `.Value`.
    pub value: f64,
}

const DEFS: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// Checks that `text` parses as an alert template, as Go's parser does (which also refuses
/// variables that are never declared).
pub fn check(text: &str) -> Result<(), String> {
    let src = format!("{DEFS}{}", add_go_print(text));
    with_funcs(Template::new("__alert"), None, "", 0)
        .parse(&src)
        .map_err(|e| e.to_string())?;
    undeclared_variable(text).map_or(Ok(()), |v| Err(format!("undefined variable \"${v}\"")))
}

/// The first `$name` used in an action but declared nowhere (scopes are not tracked: a
/// declaration anywhere counts, which errs on the side of accepting).
fn undeclared_variable(text: &str) -> Option<String> {
    let mut bodies = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let end = action_end(after)?;
        bodies.push(strip_strings(&after[..end]));
        rest = &after[end + 2..];
    }
    let decl = regex::Regex::new(r"\$(\w+)\s*(?:,\s*\$(\w+)\s*)?:=").ok()?;
    let uses = regex::Regex::new(r"\$(\w+)").ok()?;
    let mut known: std::collections::HashSet<String> =
        ["labels", "externalLabels", "externalURL", "value"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    for b in &bodies {
        for c in decl.captures_iter(b) {
            for g in [c.get(1), c.get(2)].into_iter().flatten() {
                known.insert(g.as_str().to_string());
            }
        }
    }
    for b in &bodies {
        for c in uses.captures_iter(b) {
            let v = &c[1];
            if !known.contains(v) {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// An action body with its quoted strings blanked out.
fn strip_strings(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in body.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q != '`' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '`' || c == '\'' => quote = Some(c),
            None => out.push(c),
        }
    }
    out
}

/// Expands `text` for an alert named `name` at `t_ms` (for `now`-style functions).
pub fn expand(
    name: &str,
    text: &str,
    data: &TemplateData,
    query: Option<QueryFn>,
    t_ms: i64,
) -> Result<String, String> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let src = format!("{DEFS}{}", add_go_print(text));
    let tmpl = with_funcs(
        Template::new(&format!("__alert_{name}")),
        query,
        &data.external_url,
        t_ms,
    )
    .parse(&src)
    .map_err(|e| e.to_string())?;
    let map = |m: &BTreeMap<String, String>| {
        Value::Map(Arc::new(
            m.iter()
                .map(|(k, v)| (Arc::from(k.as_str()), Value::String(Arc::from(v.as_str()))))
                .collect(),
        ))
    };
    let root = Value::Map(Arc::new(
        [
            (Arc::from("Labels"), map(&data.labels)),
            (Arc::from("ExternalLabels"), map(&data.external_labels)),
            (
                Arc::from("ExternalURL"),
                Value::String(Arc::from(data.external_url.as_str())),
            ),
            (Arc::from("Value"), Value::Float(data.value)),
        ]
        .into_iter()
        .collect(),
    ));
    tmpl.execute_to_string(&root).map_err(|e| e.to_string())
}

fn s(v: impl Into<String>) -> Value {
    Value::String(Arc::from(v.into().as_str()))
}

fn err(msg: impl Into<String>) -> gotmpl::TemplateError {
    gotmpl::TemplateError::Exec(msg.into())
}

/// Prometheus's `convertToFloat`: numbers, and strings that parse as numbers.
fn to_float(v: Option<&Value>) -> Result<f64, gotmpl::TemplateError> {
    match v {
        Some(Value::Float(f)) => Ok(*f),
        Some(Value::Int(i)) => Ok(*i as f64),
        Some(Value::Uint(u)) => Ok(*u as f64),
        Some(Value::String(x)) => crate::promql::testlang::parse_number(x)
            .or_else(|| x.parse::<f64>().ok())
            .ok_or_else(|| err(format!("strconv.ParseFloat: parsing {x:?}: invalid syntax"))),
        Some(other) => Err(err(format!("can't convert {} to float", other.type_name()))),
        None => Err(err("missing argument")),
    }
}

fn sample_value(labels: &BTreeMap<String, String>, v: f64) -> Value {
    Value::Map(Arc::new(
        [
            (
                Arc::from("Labels"),
                Value::Map(Arc::new(
                    labels
                        .iter()
                        .map(|(k, v)| (Arc::from(k.as_str()), s(v.as_str())))
                        .collect(),
                )),
            ),
            (Arc::from("Value"), Value::Float(v)),
        ]
        .into_iter()
        .collect(),
    ))
}

fn with_funcs(t: Template, query: Option<QueryFn>, external_url: &str, t_ms: i64) -> Template {
    let path_prefix = url_path(external_url);
    let ext = external_url.to_string();
    crate::model::gotmpl::string_funcs(t)
        .func("__goprint", |a| {
            Ok(match a.first() {
                Some(Value::Float(f)) => s(go_g(*f, None)),
                Some(v) => v.clone(),
                None => Value::Nil,
            })
        })
        .func("humanize", |a| Ok(s(humanize(to_float(a.first())?))))
        .func("humanize1024", |a| {
            Ok(s(humanize1024(to_float(a.first())?)))
        })
        .func("humanizeDuration", |a| {
            Ok(s(humanize_duration(to_float(a.first())?)))
        })
        .func("humanizePercentage", |a| {
            Ok(s(format!(
                "{}%",
                go_g(to_float(a.first())? * 100.0, Some(4))
            )))
        })
        .func("humanizeTimestamp", |a| {
            Ok(s(humanize_timestamp(to_float(a.first())?)))
        })
        .func("safeHtml", |a| Ok(s(arg_str(a, 0))))
        .func("graphLink", |a| Ok(s(graph_link(&arg_str(a, 0), 0))))
        .func("tableLink", |a| Ok(s(graph_link(&arg_str(a, 0), 1))))
        .func("pathPrefix", move |_| Ok(s(path_prefix.clone())))
        .func("externalURL", move |_| Ok(s(ext.clone())))
        .func("now", move |_| Ok(Value::Float(t_ms as f64 / 1000.0)))
        .func("args", |a| {
            Ok(Value::Map(Arc::new(
                a.iter()
                    .enumerate()
                    .map(|(i, v)| (Arc::from(format!("arg{i}").as_str()), v.clone()))
                    .collect(),
            )))
        })
        .func("first", |a| match a.first() {
            Some(Value::List(l)) => l
                .first()
                .cloned()
                .ok_or_else(|| err("first() called on vector with no elements")),
            _ => Err(err("first() called on vector with no elements")),
        })
        .func("label", |a| {
            let name = arg_str(a, 0);
            Ok(
                match a
                    .get(1)
                    .and_then(|v| v.field("Labels"))
                    .and_then(|l| l.field(&name))
                {
                    Some(v) => v.clone(),
                    None => s(""),
                },
            )
        })
        .func("value", |a| {
            Ok(a.first()
                .and_then(|v| v.field("Value"))
                .cloned()
                .unwrap_or(Value::Float(0.0)))
        })
        .func("strvalue", |a| {
            Ok(a.first()
                .and_then(|v| v.field("Labels"))
                .and_then(|l| l.field("__value__"))
                .cloned()
                .unwrap_or_else(|| s("")))
        })
        .func("sortByLabel", |a| {
            let name = arg_str(a, 0);
            let mut v: Vec<Value> = match a.get(1) {
                Some(Value::List(l)) => l.to_vec(),
                _ => Vec::new(),
            };
            let key = |x: &Value| {
                x.field("Labels")
                    .and_then(|l| l.field(&name))
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            };
            v.sort_by_key(key);
            Ok(Value::List(Arc::from(v)))
        })
        .func("stripPort", |a| Ok(s(strip_port(&arg_str(a, 0)))))
        .func("stripDomain", |a| {
            let hp = arg_str(a, 0);
            let (host, port) = match hp.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
                    (h.to_string(), format!(":{p}"))
                }
                _ => (hp.clone(), String::new()),
            };
            if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
                return Ok(s(hp));
            }
            Ok(s(format!(
                "{}{port}",
                host.split('.').next().unwrap_or(&host)
            )))
        })
        .func("parseDuration", |a| {
            let d = crate::model::time::Duration::parse(&arg_str(a, 0))
                .map_err(|e| err(e.to_string()))?;
            Ok(Value::Float(d.as_millis() as f64 / 1000.0))
        })
        .func("query", move |a| {
            let Some(q) = &query else {
                return Err(err("query is not available here"));
            };
            let rows = q(&arg_str(a, 0)).map_err(err)?;
            Ok(Value::List(Arc::from(
                rows.iter()
                    .map(|(l, v)| sample_value(l, *v))
                    .collect::<Vec<_>>(),
            )))
        })
}

fn url_path(u: &str) -> String {
    let rest = u.split_once("://").map(|(_, r)| r).unwrap_or(u);
    match rest.find('/') {
        Some(i) => rest[i..].trim_end_matches('/').to_string(),
        None => String::new(),
    }
}

fn strip_port(hp: &str) -> String {
    if let Some(rest) = hp.strip_prefix('[') {
        if let Some((h, _)) = rest.split_once(']') {
            return h.to_string();
        }
    }
    match hp.rsplit_once(':') {
        Some((h, _)) if !h.contains(':') => h.to_string(),
        _ => hp.to_string(),
    }
}

fn graph_link(expr: &str, tab: u8) -> String {
    let q: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    format!("/graph?g0.expr={q}&g0.tab={tab}")
}

pub use crate::model::gofmt::go_g;
use crate::model::gotmpl::arg_str;

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)` (`1e+00`, `1.234567891e+06`), as the rules
/// and alerts APIs print alert values.
pub fn go_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let e = format!("{v:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

fn humanize(mut v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return go_g(v, Some(4));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        (v, prefix) = small_prefix(v);
    }
    format!("{}{prefix}", go_g(v, Some(4)))
}

/// Scales a magnitude below 1 up by thousands: (value, SI prefix), as Prometheus does.
fn small_prefix(mut v: f64) -> (f64, &'static str) {
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    (v, prefix)
}

fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return go_g(v, Some(4));
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g(v, Some(4)))
}

fn humanize_duration(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return go_g(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", go_g(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (secs, mins, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {hours}h {mins}m {secs}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {mins}m {secs}s");
        }
        if mins != 0 {
            return format!("{sign}{mins}m {secs}s");
        }
        return format!("{sign}{}s", go_g(v, Some(4)));
    }
    let (v, prefix) = small_prefix(v);
    format!("{}{prefix}s", go_g(v, Some(4)))
}

/// Go's `time.Time.String()` of a Unix time in seconds, in UTC.
fn humanize_timestamp(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return go_g(v, Some(4));
    }
    // Prometheus goes through model.Time: nanoseconds truncated to milliseconds.
    let ns = v * 1e9;
    if ns >= i64::MAX as f64 || ns <= i64::MIN as f64 {
        return go_g(v, Some(4));
    }
    let ms = (ns as i64) / 1_000_000;
    let nanos = (ms.rem_euclid(1000) * 1_000_000) as u32;
    let Some(t) = chrono::DateTime::from_timestamp(ms.div_euclid(1000), nanos) else {
        return go_g(v, Some(4));
    };
    let mut frac = if nanos == 0 {
        String::new()
    } else {
        format!(".{:09}", nanos.min(999_999_999))
    };
    while frac.ends_with('0') {
        frac.pop();
    }
    format!("{}{frac} +0000 UTC", t.format("%Y-%m-%d %H:%M:%S"))
}

/// Appends `| __goprint` to every action that prints, so floats print as Go prints them.
fn add_go_print(src: &str) -> String {
    let mut out = String::with_capacity(src.len() + 32);
    let mut rest = src;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = action_end(after) else {
            out.push_str(&rest[i..]);
            return out;
        };
        let inner = &after[..end];
        let (lead, body) = match inner.strip_prefix("- ") {
            Some(b) => ("- ", b),
            None => ("", inner),
        };
        let (body, trail) = match body.strip_suffix(" -") {
            Some(b) => (b, " -"),
            None => (body, ""),
        };
        if prints(body) {
            out.push_str(&format!("{{{{{lead}({body}) | __goprint{trail}}}}}"));
        } else {
            out.push_str("{{");
            out.push_str(inner);
            out.push_str("}}");
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Where the action's closing `}}` is, skipping quoted strings and comments.
fn action_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let t = s.trim_start_matches('-').trim_start();
    if t.starts_with("/*") {
        let c = s.find("*/")?;
        return s[c..].find("}}").map(|x| x + c);
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether an action's body prints a value (not a keyword, comment or assignment).
fn prints(body: &str) -> bool {
    let t = body.trim();
    if t.is_empty() || t.starts_with("/*") {
        return false;
    }
    let word: String = t
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if matches!(
        word.as_str(),
        "if" | "else"
            | "end"
            | "range"
            | "with"
            | "define"
            | "template"
            | "block"
            | "break"
            | "continue"
    ) {
        return false;
    }
    if let Some(var) = t.strip_prefix('$') {
        let after_var = var.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_');
        let a = after_var.trim_start();
        if a.starts_with(":=") || (a.starts_with('=') && !a.starts_with("==")) {
            return false;
        }
        if a.starts_with(',') {
            return false; // `$i, $x := ...` (range declarations)
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(v: f64) -> TemplateData {
        TemplateData {
            labels: [("instance".to_string(), "web:9100".to_string())].into(),
            external_labels: [("site".to_string(), "prod".to_string())].into(),
            external_url: "http://am.example:9090/prom".into(),
            value: v,
        }
    }

    fn x(t: &str, v: f64) -> String {
        expand("A", t, &data(v), None, 0).unwrap()
    }

    #[test]
    fn values_print_as_go_prints_them() {
        assert_eq!(x("{{ $value }}", 1234567.891), "1.234567891e+06");
        assert_eq!(x("{{ $value }}", 80.5), "80.5");
        assert_eq!(x("{{ .Value }}", 123456.0), "123456");
        assert_eq!(x("{{$value}}", f64::INFINITY), "+Inf");
        assert_eq!(x("{{ $value }}", 0.00001), "1e-05");
        assert_eq!(x("{{ $value | printf \"%.2f\" }}", 1.23456), "1.23");
        assert_eq!(
            x("{{ if gt $value 80.0 }}high{{ else }}ok{{ end }}", 90.0),
            "high"
        );
        assert_eq!(
            x("{{ $labels.instance }} in {{ $externalLabels.site }}", 1.0),
            "web:9100 in prod"
        );
        assert_eq!(x("{{ $x := 2.5 }}{{ $x }}", 1.0), "2.5");
        assert_eq!(x("{{/* c }} */}}a{{- \" b\" -}} c", 1.0), "a bc");
        assert_eq!(
            x("{{ range $i, $v := args 1 2 }}{{ $v }}{{ end }}", 1.0),
            "12"
        );
    }

    #[test]
    fn prometheus_functions() {
        assert_eq!(x("{{ humanize $value }}", 1234567.0), "1.235M");
        assert_eq!(x("{{ humanize $value }}", 0.001234), "1.234m");
        assert_eq!(x("{{ humanize 0 }}", 1.0), "0");
        assert_eq!(x("{{ humanize1024 $value }}", 1048576.0), "1Mi");
        assert_eq!(x("{{ humanizeDuration $value }}", 90061.0), "1d 1h 1m 1s");
        assert_eq!(x("{{ humanizeDuration $value }}", 1.5), "1.5s");
        assert_eq!(x("{{ humanizeDuration $value }}", 0.0015), "1.5ms");
        assert_eq!(x("{{ humanizePercentage $value }}", 0.1234), "12.34%");
        assert_eq!(
            x("{{ humanizeTimestamp $value }}", 1435065584.128),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
        assert_eq!(x("{{ \"1234\" | humanize }}", 1.0), "1.234k");
        assert_eq!(
            x("{{ reReplaceAll \"(a*)b\" \"x$1\" \"aab\" }}", 1.0),
            "xaa"
        );
        assert_eq!(
            x(
                "{{ title \"hello world\" }} {{ toUpper \"a\" }}{{ toLower \"B\" }}",
                1.0
            ),
            "Hello World Ab"
        );
        assert_eq!(x("{{ match \"^web\" $labels.instance }}", 1.0), "true");
        assert_eq!(x("{{ pathPrefix }}", 1.0), "/prom");
        assert_eq!(
            x("{{ graphLink \"up == 0\" }}", 1.0),
            "/graph?g0.expr=up+%3D%3D+0&g0.tab=0"
        );
        assert_eq!(x("{{ stripPort $labels.instance }}", 1.0), "web");
        assert_eq!(x("{{ $externalURL }}", 1.0), "http://am.example:9090/prom");
    }

    #[test]
    fn undeclared_variables_are_refused_at_check() {
        assert!(check("{{ $labels.instance }} {{ $value }}").is_ok());
        assert!(
            check("{{ $x := 1 }}{{ $x }}{{ range $i, $v := args 1 }}{{ $i }}{{ end }}").is_ok()
        );
        assert!(check("{{ \"$nope\" }}").is_ok());
        let e = check("Instance {{ $label.foo }} down").unwrap_err();
        assert!(e.contains("undefined variable \"$label\""), "{e}");
    }

    #[test]
    fn query_function() {
        let q: QueryFn = Arc::new(|e: &str| {
            assert_eq!(e, "up");
            Ok(vec![([("job".to_string(), "a".to_string())].into(), 1.0)])
        });
        let out = expand(
            "A",
            "{{ with query \"up\" }}{{ . | first | label \"job\" }}={{ . | first | value }}{{ end }}",
            &data(0.0),
            Some(q),
            0,
        )
        .unwrap();
        assert_eq!(out, "a=1");
    }

    #[test]
    fn go_g_matches_go() {
        for (v, p, want) in [
            (1000.0, Some(4), "1000"),
            (12345.0, Some(4), "1.234e+04"),
            (12.5, Some(4), "12.5"),
            (0.5, Some(4), "0.5"),
            (100000.0, None, "100000"),
            (1000000.0, None, "1e+06"),
            (0.0001, None, "0.0001"),
            (-2.5, None, "-2.5"),
        ] {
            assert_eq!(go_g(v, p), want, "{v} {p:?}");
        }
    }
}
