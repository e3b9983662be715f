//! Alertmanager's routing tree: parsing of `route` (with `matchers`, legacy `match` /
//! `match_re`, `continue`, `group_by` incl. `...`, timing settings inherited from the parent)
//! and the match that picks the routes an alert goes to, in Alertmanager's order.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::model::time::Duration;
use crate::model::{Labels, MatchOp, Matcher};

/// Why a `route` (or a matcher) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RouteError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, RouteError> {
    Err(RouteError(msg.into()))
}

/// How alerts of a route are grouped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// By these label names (empty: one group for all).
    Labels(Vec<String>),
    /// `...`: by every label, so each alert is its own group.
    All,
}

/// A node of the routing tree, with inherited settings resolved.
#[derive(Clone, Debug)]
pub struct Route {
    /// Receiver name.
    pub receiver: String,
    /// Grouping.
    pub group_by: GroupBy,
    /// Alerts must match all of these.
    pub matchers: Vec<Matcher>,
    /// Keep matching siblings after this route matched.
    pub continue_matching: bool,
    /// Wait before the first notification of a new group.
    pub group_wait: Duration,
    /// Wait before notifying about new alerts in a group already notified.
    pub group_interval: Duration,
    /// Wait before repeating a notification.
    pub repeat_interval: Duration,
    /// Time intervals during which notifications are muted.
    pub mute_time_intervals: Vec<String>,
    /// Time intervals outside which notifications are muted.
    pub active_time_intervals: Vec<String>,
    /// Children.
    pub routes: Vec<Route>,
    /// Position in the tree (`0.1.0`), a stable identity for groups and the log.
    pub key: String,
}

/// Parses one matcher in Alertmanager's syntax: `name="value"`, `name=~"re"`, `name!=value`,
/// `name!~re` (quotes optional, spaces allowed around the operator).
pub fn parse_matcher(s: &str) -> Result<Matcher, RouteError> {
    let t = s.trim();
    let name_end = t
        .find(['=', '!', '~'])
        .ok_or_else(|| RouteError(format!("bad matcher format: {s}")))?;
    let name = t[..name_end].trim().trim_matches('"');
    let rest = &t[name_end..];
    let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
        (MatchOp::Regex, v)
    } else if let Some(v) = rest.strip_prefix("!~") {
        (MatchOp::NotRegex, v)
    } else if let Some(v) = rest.strip_prefix("!=") {
        (MatchOp::NotEqual, v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (MatchOp::Equal, v)
    } else {
        return err(format!("bad matcher format: {s}"));
    };
    if name.is_empty() {
        return err(format!("bad matcher format: {s}"));
    }
    let v = value.trim();
    let v = if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        serde_json::from_str::<String>(v)
            .map_err(|_| RouteError(format!("bad matcher value: {s}")))?
    } else {
        v.to_string()
    };
    Matcher::new(op, name, &v).map_err(|e| RouteError(format!("{s}: {e}")))
}

/// Parses a `matchers` entry, which may also be a `{a="b", c=~"d"}` list.
fn parse_matchers(s: &str) -> Result<Vec<Matcher>, RouteError> {
    let t = s.trim();
    match t.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
        Some(inner) => split_outside_quotes(inner)
            .into_iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| parse_matcher(&p))
            .collect(),
        None => Ok(vec![parse_matcher(t)?]),
    }
}

fn split_outside_quotes(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        if quoted {
            cur.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                cur.push(c);
            }
            ',' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

const ROUTE_KEYS: &[&str] = &[
    "receiver",
    "group_by",
    "continue",
    "matchers",
    "match",
    "match_re",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "mute_time_intervals",
    "active_time_intervals",
    "routes",
];

fn duration(v: &Value, key: &str) -> Result<Option<Duration>, RouteError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Duration::parse(s)
            .map(Some)
            .map_err(|e| RouteError(format!("{key}: {e}"))),
        Some(other) => err(format!("{key}: not a duration: {other}")),
    }
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>, RouteError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                other => err(format!("{key}: not a string: {other}")),
            })
            .collect(),
        Some(other) => err(format!("{key}: not a list: {other}")),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Matchers of a route (or inhibit rule) from `matchers`, `match` and `match_re` keys named
/// `prefix` + key (`source_`, `target_` or nothing).
pub fn matchers_of(v: &Value, prefix: &str) -> Result<Vec<Matcher>, RouteError> {
    let mut out = Vec::new();
    for m in strings(v, &format!("{prefix}matchers"))? {
        out.extend(parse_matchers(&m)?);
    }
    if let Some(Value::Object(map)) = v.get(format!("{prefix}match")) {
        for (k, val) in map {
            let Some(val) = scalar(val) else {
                return err(format!("invalid value for label {k} in {prefix}match"));
            };
            out.push(Matcher::new(MatchOp::Equal, k, &val).map_err(|e| RouteError(e.to_string()))?);
        }
    }
    if let Some(Value::Object(map)) = v.get(format!("{prefix}match_re")) {
        for (k, val) in map {
            let Some(val) = scalar(val) else {
                return err(format!(
                    "invalid regular expression for label {k} in {prefix}match_re: a value is required"
                ));
            };
            out.push(
                Matcher::new(MatchOp::Regex, k, &val)
                    .map_err(|e| RouteError(format!("{prefix}match_re {k}: {e}")))?,
            );
        }
    }
    Ok(out)
}

impl Route {
    /// Parses the root `route` (it needs a receiver and may not have matchers).
    pub fn parse_root(v: &Value) -> Result<Route, RouteError> {
        let defaults = Route {
            receiver: String::new(),
            group_by: GroupBy::Labels(Vec::new()),
            matchers: Vec::new(),
            continue_matching: false,
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
            routes: Vec::new(),
            key: "0".into(),
        };
        let root = Route::parse(v, &defaults, "0".into())?;
        if root.receiver.is_empty() {
            return err("root route must specify a default receiver");
        }
        if !root.matchers.is_empty() {
            return err("root route must not have any matchers");
        }
        if root.continue_matching {
            return err("cannot have continue in root route");
        }
        if !root.mute_time_intervals.is_empty() {
            return err("root route must not have any mute time intervals");
        }
        if !root.active_time_intervals.is_empty() {
            return err("root route must not have any active time intervals");
        }
        Ok(root)
    }

    fn parse(v: &Value, parent: &Route, key: String) -> Result<Route, RouteError> {
        let Value::Object(map) = v else {
            return err("route must be a mapping");
        };
        for k in map.keys() {
            if !ROUTE_KEYS.contains(&k.as_str()) {
                return err(format!("field {k} not found in type config.plain"));
            }
        }
        let group_by = match v.get("group_by") {
            None | Some(Value::Null) => parent.group_by.clone(),
            Some(_) => {
                let names = strings(v, "group_by")?;
                if names.iter().any(|n| n == "...") {
                    if names.len() > 1 {
                        return err("cannot have wildcard group_by (`...`) and other other labels at the same time");
                    }
                    GroupBy::All
                } else {
                    let mut seen = std::collections::HashSet::new();
                    for n in &names {
                        if !seen.insert(n) {
                            return err(format!("duplicated label {n:?} in group_by"));
                        }
                    }
                    GroupBy::Labels(names)
                }
            }
        };
        let group_interval = duration(v, "group_interval")?.unwrap_or(parent.group_interval);
        if group_interval.as_millis() == 0 {
            return err("group_interval cannot be zero");
        }
        let repeat_interval = duration(v, "repeat_interval")?.unwrap_or(parent.repeat_interval);
        if repeat_interval.as_millis() == 0 {
            return err("repeat_interval cannot be zero");
        }
        let mut route = Route {
            receiver: v
                .get("receiver")
                .and_then(scalar)
                .unwrap_or_else(|| parent.receiver.clone()),
            group_by,
            matchers: matchers_of(v, "")?,
            continue_matching: v.get("continue").and_then(Value::as_bool).unwrap_or(false),
            group_wait: duration(v, "group_wait")?.unwrap_or(parent.group_wait),
            group_interval,
            repeat_interval,
            mute_time_intervals: strings(v, "mute_time_intervals")?,
            active_time_intervals: strings(v, "active_time_intervals")?,
            routes: Vec::new(),
            key: key.clone(),
        };
        if let Some(Value::Array(children)) = v.get("routes") {
            let mut out = Vec::with_capacity(children.len());
            for (i, c) in children.iter().enumerate() {
                out.push(Route::parse(c, &route, format!("{key}.{i}"))?);
            }
            route.routes = out;
        }
        Ok(route)
    }

    /// The routes an alert with `labels` goes to, in order: the deepest matching routes,
    /// siblings after a match only when that route has `continue`; the route itself when no
    /// child matches.
    pub fn matching(&self, labels: &Labels) -> Vec<&Route> {
        if !self
            .matchers
            .iter()
            .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
        {
            return Vec::new();
        }
        let mut all = Vec::new();
        for c in &self.routes {
            let found = c.matching(labels);
            let matched = !found.is_empty();
            all.extend(found);
            if matched && !c.continue_matching {
                break;
            }
        }
        if all.is_empty() {
            all.push(self);
        }
        all
    }

    /// Every receiver name the tree uses.
    pub fn receivers(&self) -> Vec<&str> {
        let mut out = vec![self.receiver.as_str()];
        for c in &self.routes {
            out.extend(c.receivers());
        }
        out
    }

    /// Every time-interval name the tree refers to.
    pub fn time_intervals(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .mute_time_intervals
            .iter()
            .chain(&self.active_time_intervals)
            .map(String::as_str)
            .collect();
        for c in &self.routes {
            out.extend(c.time_intervals());
        }
        out
    }
}

/// The label set of an alert's group on `route`: the `group_by` labels (all labels for `...`).
pub fn group_labels(route: &Route, labels: &Labels) -> BTreeMap<String, String> {
    match &route.group_by {
        GroupBy::All => labels
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect(),
        GroupBy::Labels(names) => names
            .iter()
            .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.to_string())))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(path: &std::path::Path) -> Value {
        serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn receivers_for(root: &Route, pairs: &[(&str, &str)]) -> Vec<String> {
        root.matching(&Labels::from_pairs(pairs.iter().copied()))
            .iter()
            .map(|r| r.receiver.clone())
            .collect()
    }

    #[test]
    fn amtool_routing_fixtures() {
        let Some(dir) = crate::testsupport::shared_testdata("alertmanager/cli-testdata") else {
            return;
        };
        let r = Route::parse_root(&load(&dir.join("conf.routing.yml"))["route"]).unwrap();
        assert_eq!(receivers_for(&r, &[("test", "1")]), vec!["test1"]);
        assert_eq!(receivers_for(&r, &[("test", "2")]), vec!["test1", "test2"]);
        assert_eq!(receivers_for(&r, &[("test", "volovina")]), vec!["default"]);
        let r = Route::parse_root(&load(&dir.join("conf.routing-reverted.yml"))["route"]).unwrap();
        assert_eq!(receivers_for(&r, &[("test", "2")]), vec!["test2", "test1"]);
    }

    #[test]
    fn a_null_match_re_names_the_label() {
        let Some(dir) = crate::testsupport::shared_testdata("alertmanager/config-testdata") else {
            return;
        };
        let e = Route::parse_root(&load(&dir.join("conf.nil-match_re-route.yml"))["route"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid_label"), "{e}");
    }

    #[test]
    fn matchers_syntax_and_inheritance() {
        let v: Value = serde_saphyr::from_str(
            "receiver: a\ngroup_by: [alertname]\ngroup_wait: 10s\nroutes:\n  - matchers: ['service=~\"foo|bar\"', 'env != prod']\n    receiver: b\n    routes:\n      - matchers: ['{severity=\"critical\", team=\"x\"}']\n        receiver: c\n        group_by: ['...']\n",
        )
        .unwrap();
        let r = Route::parse_root(&v).unwrap();
        let b = &r.routes[0];
        assert_eq!(b.group_wait, Duration::from_secs(10));
        assert_eq!(b.group_by, GroupBy::Labels(vec!["alertname".into()]));
        assert_eq!(b.routes[0].group_by, GroupBy::All);
        assert_eq!(b.routes[0].key, "0.0.0");
        assert_eq!(
            receivers_for(
                &r,
                &[
                    ("service", "foo"),
                    ("env", "dev"),
                    ("severity", "critical"),
                    ("team", "x")
                ]
            ),
            vec!["c"]
        );
        assert_eq!(
            receivers_for(&r, &[("service", "foo"), ("env", "prod")]),
            vec!["a"]
        );
        assert_eq!(receivers_for(&r, &[("service", "foo")]), vec!["b"]);
        assert!(parse_matcher("=x").is_err());
        let bad: Value = serde_saphyr::from_str("receiver: a\nmatchers: ['x=\"y\"']\n").unwrap();
        assert_eq!(
            Route::parse_root(&bad).unwrap_err().to_string(),
            "root route must not have any matchers"
        );
        let bad: Value = serde_saphyr::from_str("group_by: [a]\n").unwrap();
        assert!(Route::parse_root(&bad).is_err());
    }
}
