//! Relabelling: the `relabel_configs` / `metric_relabel_configs` rules of Prometheus, with its
//! defaults, its validation messages and every action (`replace`, `keep`, `drop`, `keepequal`,
//! `dropequal`, `hashmod`, `labelmap`, `labeldrop`, `labelkeep`, `lowercase`, `uppercase`).

use std::fmt;

use md5::{Digest, Md5};
use regex::Regex;
use serde::{Deserialize, Serialize, Serializer};

use super::labels::LabelsBuilder;
use super::matcher::anchored_regex;

/// A relabel regex: anchored when compiled, printed as written.
#[derive(Clone, Debug)]
pub struct RelabelRegex {
    src: String,
    re: Regex,
}

impl RelabelRegex {
    /// Compiles `src` anchored at both ends.
    pub fn new(src: &str) -> Result<Self, String> {
        anchored_regex(src)
            .map(|re| RelabelRegex {
                src: src.to_string(),
                re,
            })
            .map_err(|e| format!("error parsing regexp: {}", first_line(&e.to_string())))
    }

    /// The source as written.
    pub fn as_str(&self) -> &str {
        &self.src
    }

    /// Whether the whole of `s` matches.
    pub fn is_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }
}

fn first_line(s: &str) -> String {
    // The regex crate's errors are multi-line diagrams; config errors must stay on one line.
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

impl PartialEq for RelabelRegex {
    fn eq(&self, o: &Self) -> bool {
        self.src == o.src
    }
}

impl Default for RelabelRegex {
    fn default() -> Self {
        RelabelRegex {
            src: "(.*)".into(),
            re: anchored_regex("(.*)").unwrap_or_else(|_| unreachable!()),
        }
    }
}

impl<'de> Deserialize<'de> for RelabelRegex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RelabelRegex::new(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for RelabelRegex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.src)
    }
}

/// A relabel action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Action {
    /// Set `target_label` to the expanded `replacement` when `regex` matches.
    #[default]
    Replace,
    /// Keep only when `regex` matches.
    Keep,
    /// Drop when `regex` matches.
    Drop,
    /// Keep only when the joined source values equal `target_label`'s value.
    KeepEqual,
    /// Drop when the joined source values equal `target_label`'s value.
    DropEqual,
    /// Set `target_label` to md5(source) mod `modulus`.
    HashMod,
    /// Copy labels whose names match `regex` to names built from `replacement`.
    LabelMap,
    /// Remove labels whose names match `regex`.
    LabelDrop,
    /// Remove labels whose names do not match `regex`.
    LabelKeep,
    /// Set `target_label` to the lower-cased source.
    Lowercase,
    /// Set `target_label` to the upper-cased source.
    Uppercase,
}

const ACTIONS: [(&str, Action); 11] = [
    ("replace", Action::Replace),
    ("keep", Action::Keep),
    ("drop", Action::Drop),
    ("keepequal", Action::KeepEqual),
    ("dropequal", Action::DropEqual),
    ("hashmod", Action::HashMod),
    ("labelmap", Action::LabelMap),
    ("labeldrop", Action::LabelDrop),
    ("labelkeep", Action::LabelKeep),
    ("lowercase", Action::Lowercase),
    ("uppercase", Action::Uppercase),
];

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = ACTIONS
            .iter()
            .find(|(_, a)| a == self)
            .map(|(n, _)| *n)
            .unwrap_or("replace");
        f.write_str(name)
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let lower = s.to_lowercase();
        ACTIONS
            .iter()
            .find(|(n, _)| *n == lower)
            .map(|(_, a)| *a)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown relabel action {s:?}")))
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// One relabel rule as written in YAML, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelabelConfig {
    #[serde(default)]
    source_labels: Option<Vec<String>>,
    #[serde(default)]
    separator: Option<String>,
    #[serde(default)]
    regex: Option<RelabelRegex>,
    #[serde(default)]
    modulus: Option<u64>,
    #[serde(default)]
    target_label: Option<String>,
    #[serde(default)]
    replacement: Option<String>,
    #[serde(default)]
    action: Option<Action>,
}

/// One validated relabel rule with Prometheus's defaults filled in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRelabelConfig")]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator` to form the input.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_labels: Vec<String>,
    /// Joins source values; default `;`.
    pub separator: String,
    /// Matched against the joined value (or label names for label* actions); default `(.*)`.
    pub regex: RelabelRegex,
    /// Modulus for `hashmod`.
    #[serde(skip_serializing_if = "is_zero")]
    pub modulus: u64,
    /// Label to write; may contain `$1`-style references for `replace`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target_label: String,
    /// Value template; default `$1`.
    pub replacement: String,
    /// What to do; default `replace`.
    pub action: Action,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Default for RelabelConfig {
    fn default() -> Self {
        RelabelConfig {
            source_labels: Vec::new(),
            separator: ";".into(),
            regex: RelabelRegex::default(),
            modulus: 0,
            target_label: String::new(),
            replacement: "$1".into(),
            action: Action::Replace,
        }
    }
}

fn has_template_var(s: &str) -> bool {
    s.contains('$')
}

fn is_legacy_target_template(s: &str) -> bool {
    // Prometheus's relabelTargetLegacy: ^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$
    static_regex_target().is_match(s)
}

fn static_regex_target() -> &'static Regex {
    use std::sync::OnceLock;
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$").unwrap_or_else(|_| unreachable!())
    })
}

impl TryFrom<RawRelabelConfig> for RelabelConfig {
    type Error = String;

    fn try_from(r: RawRelabelConfig) -> Result<Self, String> {
        let d = RelabelConfig::default();
        let c = RelabelConfig {
            source_labels: r.source_labels.clone().unwrap_or_default(),
            separator: r.separator.clone().unwrap_or(d.separator.clone()),
            regex: r.regex.clone().unwrap_or_default(),
            modulus: r.modulus.unwrap_or(0),
            target_label: r.target_label.clone().unwrap_or_default(),
            replacement: r.replacement.clone().unwrap_or(d.replacement.clone()),
            action: r.action.unwrap_or_default(),
        };
        use Action::*;
        let a = c.action;
        if c.modulus == 0 && a == HashMod {
            return Err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        if matches!(
            a,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        ) && c.target_label.is_empty()
        {
            return Err(format!(
                "relabel configuration for {a} action requires 'target_label' value"
            ));
        }
        if a == Replace
            && has_template_var(&c.target_label)
            && !is_legacy_target_template(&c.target_label)
        {
            return Err(format!(
                "{:?} is invalid 'target_label' for {a} action",
                c.target_label
            ));
        }
        if matches!(a, Lowercase | Uppercase | KeepEqual | DropEqual | HashMod)
            && has_template_var(&c.target_label)
        {
            return Err(format!(
                "{:?} is invalid 'target_label' for {a} action",
                c.target_label
            ));
        }
        if matches!(a, Lowercase | Uppercase | KeepEqual | DropEqual)
            && c.replacement != d.replacement
        {
            return Err(format!("'replacement' can not be set for {a} action"));
        }
        if a == LabelMap && !is_legacy_target_template(&c.replacement) {
            return Err(format!(
                "{:?} is invalid 'replacement' for {a} action",
                c.replacement
            ));
        }
        if matches!(a, DropEqual | KeepEqual)
            && (r.regex.is_some() && c.regex != d.regex
                || c.modulus != 0
                || c.separator != d.separator
                || c.replacement != d.replacement)
        {
            return Err(format!(
                "{a} action requires only 'source_labels' and `target_label`, and no other fields"
            ));
        }
        if matches!(a, LabelDrop | LabelKeep)
            && (r.source_labels.is_some()
                || !c.target_label.is_empty()
                || c.modulus != 0
                || c.separator != d.separator
                || c.replacement != d.replacement)
        {
            return Err(format!(
                "{a} action requires only 'regex', and no other fields"
            ));
        }
        Ok(c)
    }
}

/// Applies `rules` in order to `lb`; returns false when a rule drops the set, or when the
/// result has no labels at all.
pub fn process(rules: &[RelabelConfig], lb: &mut LabelsBuilder) -> bool {
    for r in rules {
        if !apply(r, lb) {
            return false;
        }
    }
    lb.iter().any(|l| !l.value.is_empty())
}

fn apply(c: &RelabelConfig, lb: &mut LabelsBuilder) -> bool {
    let val = c
        .source_labels
        .iter()
        .map(|n| lb.get(n))
        .collect::<Vec<_>>()
        .join(&c.separator);
    match c.action {
        Action::Drop => {
            if c.regex.is_match(&val) {
                return false;
            }
        }
        Action::Keep => {
            if !c.regex.is_match(&val) {
                return false;
            }
        }
        Action::DropEqual => {
            if lb.get(&c.target_label) == val {
                return false;
            }
        }
        Action::KeepEqual => {
            if lb.get(&c.target_label) != val {
                return false;
            }
        }
        Action::Replace => {
            if val.is_empty()
                && c.regex.src == "(.*)"
                && !has_template_var(&c.target_label)
                && !has_template_var(&c.replacement)
            {
                lb.set(c.target_label.clone(), c.replacement.clone());
                return true;
            }
            let Some(caps) = c.regex.re.captures(&val) else {
                return true;
            };
            let mut target = String::new();
            caps.expand(&c.target_label, &mut target);
            if target.is_empty() {
                return true;
            }
            let mut res = String::new();
            caps.expand(&c.replacement, &mut res);
            if res.is_empty() {
                lb.del(&target);
            } else {
                lb.set(target, res);
            }
        }
        Action::Lowercase => {
            lb.set(c.target_label.clone(), val.to_lowercase());
        }
        Action::Uppercase => {
            lb.set(c.target_label.clone(), val.to_uppercase());
        }
        Action::HashMod => {
            let sum = Md5::digest(val.as_bytes());
            let mut last = [0u8; 8];
            last.copy_from_slice(&sum[8..16]);
            let m = u64::from_be_bytes(last) % c.modulus;
            lb.set(c.target_label.clone(), m.to_string());
        }
        Action::LabelMap => {
            let snapshot: Vec<(String, String)> = lb
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            for (name, value) in snapshot {
                if c.regex.is_match(&name) {
                    let new = c
                        .regex
                        .re
                        .replace_all(&name, c.replacement.as_str())
                        .into_owned();
                    lb.set(new, value);
                }
            }
        }
        Action::LabelDrop => {
            lb.retain(|l| !c.regex.is_match(&l.name));
        }
        Action::LabelKeep => {
            lb.retain(|l| c.regex.is_match(&l.name));
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    fn rules(yaml: &str) -> Vec<RelabelConfig> {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn run(yaml: &str, input: &[(&str, &str)]) -> Option<Labels> {
        let mut lb = Labels::from_pairs(input.iter().copied()).builder();
        process(&rules(yaml), &mut lb).then(|| lb.labels())
    }

    #[test]
    fn replace_with_captures_and_defaults() {
        let out = run(
            "- source_labels: [a, b]\n  regex: 'f(.*);(.*)r'\n  target_label: 'x_${1}'\n  replacement: '$2-$1'\n",
            &[("a", "foo"), ("b", "bar")],
        )
        .unwrap();
        assert_eq!(out.get("x_oo"), Some("ba-oo"));
        // Default regex (.*) copies; an empty result deletes.
        let out = run(
            "- source_labels: [a]\n  target_label: b\n",
            &[("a", ""), ("b", "x"), ("c", "y")],
        )
        .unwrap();
        assert_eq!(out.get("b"), None);
        // No match: nothing changes.
        let out = run(
            "- source_labels: [a]\n  regex: 'zzz'\n  target_label: b\n",
            &[("a", "q")],
        )
        .unwrap();
        assert_eq!(out.get("b"), None);
    }

    #[test]
    fn keep_drop_equal() {
        assert!(run(
            "- source_labels: [a]\n  regex: 'x.*'\n  action: keep\n",
            &[("a", "xy")]
        )
        .is_some());
        assert!(run(
            "- source_labels: [a]\n  regex: 'x'\n  action: keep\n",
            &[("a", "xy")]
        )
        .is_none());
        assert!(run(
            "- source_labels: [a]\n  regex: 'x.*'\n  action: drop\n",
            &[("a", "xy")]
        )
        .is_none());
        assert!(run(
            "- source_labels: [a]\n  target_label: b\n  action: keepequal\n",
            &[("a", "1"), ("b", "1")]
        )
        .is_some());
        assert!(run(
            "- source_labels: [a]\n  target_label: b\n  action: dropequal\n",
            &[("a", "1"), ("b", "1")]
        )
        .is_none());
        assert!(run(
            "- source_labels: [a]\n  target_label: b\n  action: KeepEqual\n",
            &[("a", "1"), ("b", "2")]
        )
        .is_none());
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // Prometheus's relabel_test: "foo" with modulus 1000 gives 976... verified value below is
        // md5("foo")[8..] big-endian mod 1000.
        let out = run(
            "- source_labels: [a]\n  modulus: 1000\n  target_label: h\n  action: hashmod\n",
            &[("a", "foo")],
        )
        .unwrap();
        let sum = Md5::digest(b"foo");
        let want = u64::from_be_bytes(sum[8..16].try_into().unwrap()) % 1000;
        assert_eq!(out.get("h"), Some(want.to_string().as_str()));
    }

    #[test]
    fn label_actions_and_case() {
        let out = run(
            "- regex: '__meta_(.+)'\n  action: labelmap\n",
            &[("__meta_zone", "a"), ("x", "1")],
        )
        .unwrap();
        assert_eq!(out.get("zone"), Some("a"));
        assert_eq!(out.get("__meta_zone"), Some("a"));
        let out = run(
            "- regex: '__meta_.+'\n  action: labeldrop\n",
            &[("__meta_zone", "a"), ("x", "1")],
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        let out = run(
            "- regex: 'x'\n  action: labelkeep\n",
            &[("__meta_zone", "a"), ("x", "1")],
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        let out = run("- source_labels: [a]\n  target_label: b\n  action: lowercase\n- source_labels: [a]\n  target_label: c\n  action: uppercase\n", &[("a", "MiX")]).unwrap();
        assert_eq!((out.get("b"), out.get("c")), (Some("mix"), Some("MIX")));
    }

    #[test]
    fn validation_messages() {
        let err = |y: &str| {
            serde_saphyr::from_str::<Vec<RelabelConfig>>(y)
                .unwrap_err()
                .to_string()
        };
        assert!(err("- action: hashmod\n  target_label: a\n").contains("requires non-zero modulus"));
        assert!(err("- action: replace\n").contains("requires 'target_label' value"));
        assert!(
            err("- action: labeldrop\n  source_labels: [a]\n").contains("requires only 'regex'")
        );
        assert!(err("- action: nope\n").contains("unknown relabel action"));
        assert!(err("- regex: '(('\n  target_label: a\n").contains("error parsing regexp"));
        assert!(err("- regexx: 'a'\n").contains("regexx"));
    }

    #[test]
    fn dropping_every_label_drops_the_set() {
        assert!(run("- regex: '.*'\n  action: labeldrop\n", &[("a", "1")]).is_none());
    }
}
