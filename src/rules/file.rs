//! Rule files in Prometheus's format: parsing (several YAML documents per file allowed) and
//! validation with Prometheus's own messages, so `appliance check rules` and `promtool check
//! rules` reject the same files for the same reasons.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::labels::{is_legacy_label_name, is_legacy_metric_name};
use crate::model::time::Duration;
use crate::model::METRIC_NAME;

/// How label, annotation and metric names are checked: Prometheus 3's default accepts any
/// UTF-8; `Legacy` is the `[a-zA-Z_][a-zA-Z0-9_]*` rule of earlier versions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NameValidation {
    /// Any non-empty UTF-8 name.
    #[default]
    Utf8,
    /// Prometheus 2's character set.
    Legacy,
}

/// How a file is read.
#[derive(Clone, Copy, Debug, Default)]
pub struct ParseOptions {
    /// Skip unknown keys instead of refusing them (`--ignore-unknown-fields`).
    pub ignore_unknown_fields: bool,
    /// Name rules.
    pub names: NameValidation,
}

/// A rule file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleGroups {
    /// Its groups.
    #[serde(default)]
    pub groups: Vec<RuleGroup>,
}

/// One group: rules evaluated in order, on one interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleGroup {
    /// Unique within the file.
    #[serde(default)]
    pub name: String,
    /// Evaluation interval (default: `global.evaluation_interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Evaluate as of this long ago, for data that arrives late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_offset: Option<Duration>,
    /// Most series (recording) or alerts (alerting) a rule may produce; 0 = no limit.
    #[serde(default)]
    pub limit: usize,
    /// Labels added to every rule's output.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// A recording or alerting rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Name of the series a recording rule writes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub record: String,
    /// Name of an alerting rule.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alert: String,
    /// The PromQL expression.
    #[serde(default, deserialize_with = "scalar_string")]
    pub expr: String,
    /// Pending time before an alert fires.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<Duration>,
    /// How long an alert keeps firing after its condition clears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<Duration>,
    /// Labels added (templated for alerts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations of alerts (templated).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Rule {
    /// `record` or `alert`, whichever is set.
    pub fn name(&self) -> &str {
        if self.record.is_empty() {
            &self.alert
        } else {
            &self.record
        }
    }
}

/// `expr: 1` is a YAML number; Prometheus reads it as the string "1".
fn scalar_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(i64),
        Float(f64),
        Bool(bool),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::Text(s) => s,
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Bool(b) => b.to_string(),
    })
}

/// Why a rule file was refused: every problem found, each a line of text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct RuleFileError(pub Vec<String>);

/// Reads and validates a rule file.
pub fn load(path: &Path, opts: ParseOptions) -> Result<RuleGroups, RuleFileError> {
    let text = crate::model::files::read_config_file(path)
        .map_err(|e| RuleFileError(vec![format!("{}: {e}", path.display())]))?;
    parse(&text, &path.display().to_string(), opts)
}

/// Parses and validates rule-file text; `name` prefixes the messages.
pub fn parse(text: &str, name: &str, opts: ParseOptions) -> Result<RuleGroups, RuleFileError> {
    let mut text = text.to_string();
    let docs: Vec<RuleGroups> = loop {
        match serde_saphyr::from_multiple::<RuleGroups>(&text) {
            Ok(d) => break d,
            Err(e) => {
                let msg = e.to_string();
                let line = crate::model::yaml::error_line(&msg);
                if let (true, Some(line), Some(_)) =
                    (opts.ignore_unknown_fields, line, unknown_field(&msg))
                {
                    if let Some(t) = drop_key_at(&text, line) {
                        text = t;
                        continue;
                    }
                }
                return Err(RuleFileError(vec![yaml_error(name, &msg, line)]));
            }
        }
    };
    let mut file = RuleGroups::default();
    for d in docs {
        file.groups.extend(d.groups);
    }
    let errs = validate(&file, opts.names);
    if errs.is_empty() {
        Ok(file)
    } else {
        Err(RuleFileError(
            errs.into_iter().map(|e| format!("{name}: {e}")).collect(),
        ))
    }
}

/// Rules (recording or alerting) with the same name and labels (group labels included),
/// once per duplicated pair: what `promtool check rules` reports as duplicates.
pub fn duplicate_rules(file: &RuleGroups) -> Vec<(String, BTreeMap<String, String>)> {
    let mut all: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for g in &file.groups {
        for r in &g.rules {
            let mut labels = g.labels.clone();
            labels.extend(r.labels.clone());
            all.push((r.name().to_string(), labels));
        }
    }
    all.sort();
    let mut dups: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for w in all.windows(2) {
        if w[0] == w[1] && dups.last() != Some(&w[1]) {
            dups.push(w[1].clone());
        }
    }
    dups
}

/// `unknown field `x`, expected ...` → the key, for Prometheus's wording.
fn unknown_field(msg: &str) -> Option<String> {
    let rest = msg.split("unknown field `").nth(1)?;
    Some(rest.split('`').next()?.to_string())
}

fn yaml_error(name: &str, msg: &str, line: Option<usize>) -> String {
    let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
    if let Some(field) = unknown_field(msg) {
        let ty = if msg.contains("`expr`") {
            "rulefmt.Rule"
        } else if msg.contains("`rules`") {
            "rulefmt.RuleGroup"
        } else {
            "rulefmt.RuleGroups"
        };
        return format!(
            "{name}: yaml: unmarshal errors:\n  {at}field {field} not found in type {ty}"
        );
    }
    format!("{name}: {at}{}", crate::model::yaml::first_line(msg))
}

/// The text without the mapping key on `line` (1-based) and the lines nested under it.
fn drop_key_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = line.checked_sub(1)?;
    let first = *lines.get(start)?;
    let indent = first.len() - first.trim_start().len();
    let key_only = first.trim_start().trim_start_matches("- ");
    if !key_only.contains(':') {
        return None;
    }
    let mut end = start + 1;
    while end < lines.len() {
        let l = lines[end];
        if !l.trim().is_empty() && l.len() - l.trim_start().len() <= indent {
            break;
        }
        end += 1;
    }
    let mut out: Vec<String> = lines[..start].iter().map(|s| s.to_string()).collect();
    if first.trim_start().starts_with("- ") {
        // Keep the list item itself; only its first key goes.
        out.push(format!("{}- {{}}", " ".repeat(indent)));
    }
    out.extend(lines[end..].iter().map(|s| s.to_string()));
    Some(out.join("\n") + "\n")
}

fn label_name_ok(n: &str, names: NameValidation) -> bool {
    match names {
        NameValidation::Utf8 => !n.is_empty(),
        NameValidation::Legacy => is_legacy_label_name(n),
    }
}

/// Every problem of a parsed file, in Prometheus's words.
pub fn validate(file: &RuleGroups, names: NameValidation) -> Vec<String> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for g in &file.groups {
        if g.name.is_empty() {
            errs.push("Groupname must not be empty".to_string());
        }
        if !seen.insert(g.name.clone()) {
            errs.push(format!(
                "groupname: \"{}\" is repeated in the same file",
                g.name
            ));
        }
        for (k, v) in &g.labels {
            if !label_name_ok(k, names) || k == METRIC_NAME {
                errs.push(format!("group \"{}\": invalid label name: {k}", g.name));
            }
            let _ = v;
        }
        for (i, r) in g.rules.iter().enumerate() {
            for e in validate_rule(r, names) {
                errs.push(format!(
                    "group \"{}\", rule {}, \"{}\": {e}",
                    g.name,
                    i + 1,
                    r.name()
                ));
            }
        }
    }
    errs
}

fn validate_rule(r: &Rule, names: NameValidation) -> Vec<String> {
    let mut errs = Vec::new();
    if !r.record.is_empty() && !r.alert.is_empty() {
        errs.push("only one of 'record' and 'alert' must be set".to_string());
    }
    if r.record.is_empty() && r.alert.is_empty() {
        errs.push("one of 'record' or 'alert' must be set".to_string());
    }
    if r.expr.is_empty() {
        errs.push("field 'expr' must be set in rule".to_string());
    } else if let Err(e) = crate::promql::parse(&r.expr) {
        let msg = e.to_string();
        if msg.contains("parse error") {
            errs.push(format!("could not parse expression: {msg}"));
        } else {
            errs.push(format!("could not parse expression: parse error: {msg}"));
        }
    }
    if !r.record.is_empty() {
        if !r.annotations.is_empty() {
            errs.push("invalid field 'annotations' in recording rule".to_string());
        }
        if r.for_.is_some_and(|d| d.as_millis() != 0) {
            errs.push("invalid field 'for' in recording rule".to_string());
        }
        if r.keep_firing_for.is_some_and(|d| d.as_millis() != 0) {
            errs.push("invalid field 'keep_firing_for' in recording rule".to_string());
        }
        let valid = match names {
            NameValidation::Utf8 => !r.record.is_empty(),
            NameValidation::Legacy => is_legacy_metric_name(&r.record),
        };
        if !valid {
            errs.push(format!("invalid recording rule name: {}", r.record));
        }
        if r.record.contains('{') || r.record.contains('}') {
            errs.push("braces present in the recording rule name; should it be in expr?".into());
        }
    }
    for k in r.labels.keys() {
        if !label_name_ok(k, names) || k == METRIC_NAME {
            errs.push(format!("invalid label name: {k}"));
        }
    }
    for k in r.annotations.keys() {
        if !label_name_ok(k, names) {
            errs.push(format!("invalid annotation name: {k}"));
        }
    }
    if !r.alert.is_empty() {
        for (k, v) in r.labels.iter().chain(r.annotations.iter()) {
            if let Err(e) = super::template::check(v) {
                errs.push(format!("template: {k}: {e}"));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dir: &Path, file: &str, names: NameValidation) -> Result<RuleGroups, String> {
        load(
            &dir.join(file),
            ParseOptions {
                ignore_unknown_fields: false,
                names,
            },
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn prometheus_rulefmt_fixtures() {
        let Some(dir) = crate::testsupport::shared_testdata("rules/rulefmt") else {
            return;
        };
        let check = |f: &str, n: NameValidation| check(&dir, f, n);
        for good in [
            "test.yaml",
            "test_aliases.yaml",
            "utf-8_lname.good.yaml",
            "utf-8_annotation.good.yaml",
            "legacy_validation_annotation.good.yaml",
        ] {
            if let Err(e) = check(good, NameValidation::Utf8) {
                panic!("{good}: {e}");
            }
        }
        check(
            "legacy_validation_annotation.good.yaml",
            NameValidation::Legacy,
        )
        .unwrap();
        let bad = [
            (
                "duplicate_grp.bad.yaml",
                "groupname: \"yolo\" is repeated in the same file",
            ),
            ("bad_expr.bad.yaml", "parse error"),
            (
                "record_and_alert.bad.yaml",
                "only one of 'record' and 'alert' must be set",
            ),
            (
                "no_rec_alert.bad.yaml",
                "one of 'record' or 'alert' must be set",
            ),
            ("noexpr.bad.yaml", "field 'expr' must be set in rule"),
            (
                "invalid_record_name.bad.yaml",
                "braces present in the recording rule name; should it be in expr?",
            ),
            ("bad_field.bad.yaml", "field annotation not found"),
            ("invalid_label_name.bad.yaml", "invalid label name"),
            (
                "record_and_for.bad.yaml",
                "invalid field 'for' in recording rule",
            ),
            (
                "record_and_keep_firing_for.bad.yaml",
                "invalid field 'keep_firing_for' in recording rule",
            ),
        ];
        for (file, want) in bad {
            match check(file, NameValidation::Utf8) {
                Ok(_) => panic!("{file}: accepted"),
                Err(e) => assert!(e.contains(want), "{file}: {e}"),
            }
        }
        let e = check(
            "legacy_validation_annotation.bad.yaml",
            NameValidation::Legacy,
        )
        .unwrap_err();
        assert!(e.contains("invalid annotation name: ins-tance"), "{e}");
        check(
            "legacy_validation_annotation.bad.yaml",
            NameValidation::Utf8,
        )
        .unwrap();
    }

    #[test]
    fn unknown_fields_can_be_ignored() {
        let text = "groups:\n  - name: g\n    namespace: x\n    rules:\n      - alert: A\n        expr: up == 0\n        ownership:\n          team: a\n";
        let e = parse(text, "f.yml", ParseOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("field namespace not found in type rulefmt.RuleGroup"),
            "{e}"
        );
        let f = parse(
            text,
            "f.yml",
            ParseOptions {
                ignore_unknown_fields: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(f.groups[0].rules[0].alert, "A");
    }
}
