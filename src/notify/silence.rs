//! Silences, Alertmanager-compatible: matchers (equal / regex, negated), a time window,
//! creator and comment; states pending → active → expired; kept in a file so a restart
//! keeps them, expired ones for five days as Alertmanager's default retention.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::{Labels, MatchOp, Matcher};

/// One matcher of a silence, in the API's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SilenceMatcher {
    /// Label name.
    pub name: String,
    /// Value or regex.
    pub value: String,
    /// Regex match.
    pub is_regex: bool,
    /// Equal (true) or not equal.
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

/// A silence (times in ms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// Id.
    pub id: String,
    /// Matchers; all must match.
    pub matchers: Vec<SilenceMatcher>,
    /// Start.
    pub starts_at: i64,
    /// End.
    pub ends_at: i64,
    /// Last change.
    pub updated_at: i64,
    /// Who.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

impl Silence {
    /// `pending`, `active` or `expired` at `now`.
    pub fn state(&self, now: i64) -> &'static str {
        if self.ends_at <= now {
            "expired"
        } else if self.starts_at > now {
            "pending"
        } else {
            "active"
        }
    }

    fn matchers(&self) -> Vec<Matcher> {
        self.matchers
            .iter()
            .filter_map(|m| {
                let op = match (m.is_regex, m.is_equal) {
                    (false, true) => MatchOp::Equal,
                    (false, false) => MatchOp::NotEqual,
                    (true, true) => MatchOp::Regex,
                    (true, false) => MatchOp::NotRegex,
                };
                Matcher::new(op, &m.name, &m.value).ok()
            })
            .collect()
    }

    /// Whether it silences `labels` at `now`.
    pub fn mutes(&self, labels: &Labels, now: i64) -> bool {
        self.state(now) == "active"
            && self
                .matchers()
                .iter()
                .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
    }
}

/// Why a silence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    /// The request is invalid (the API's 400).
    #[error("{0}")]
    Invalid(String),
    /// No such silence (404).
    #[error("silence {0} not found")]
    NotFound(String),
}

/// Expired silences are kept this long (Alertmanager's `--data.retention` default).
const RETENTION_MS: i64 = 120 * 3600 * 1000;

/// The silences, persisted to a file.
#[derive(Default)]
pub struct Silences {
    by_id: BTreeMap<String, Silence>,
    file: Option<PathBuf>,
}

fn new_id() -> String {
    let u = ulid::Ulid::new().0.to_be_bytes();
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

impl Silences {
    /// Silences kept in `file` (loaded now when it exists).
    pub fn open(file: Option<PathBuf>) -> Silences {
        let mut s = Silences {
            by_id: BTreeMap::new(),
            file,
        };
        if let Some(f) = &s.file {
            if let Ok(b) = std::fs::read(f) {
                match serde_json::from_slice::<Vec<Silence>>(&b) {
                    Ok(list) => s.by_id = list.into_iter().map(|x| (x.id.clone(), x)).collect(),
                    Err(e) => {
                        crate::failure!(warn, "notify", "silences_read", file = %f.display(), error = %e, "silences file unreadable; starting empty")
                    }
                }
            }
        }
        s
    }

    fn save(&self) {
        let Some(f) = &self.file else { return };
        let list: Vec<&Silence> = self.by_id.values().collect();
        let write = || -> std::io::Result<()> {
            if let Some(d) = f.parent() {
                std::fs::create_dir_all(d)?;
            }
            let tmp = f.with_extension("tmp");
            std::fs::write(&tmp, serde_json::to_vec(&list).unwrap_or_default())?;
            std::fs::rename(&tmp, f)
        };
        if let Err(e) = write() {
            crate::failure!(warn, "notify", "silences_write", file = %f.display(), error = %e, "saving silences failed");
        }
    }

    /// Creates a silence, or replaces the one with `s.id`; returns its id.
    pub fn upsert(&mut self, mut s: Silence, now: i64) -> Result<String, SilenceError> {
        if s.matchers.is_empty() {
            return Err(SilenceError::Invalid(
                "silence invalid: at least one matcher required".into(),
            ));
        }
        for m in &s.matchers {
            if m.name.is_empty() {
                return Err(SilenceError::Invalid(
                    "silence invalid: invalid label matcher: empty label name".into(),
                ));
            }
            if m.is_regex {
                if let Err(e) = regex::Regex::new(&m.value) {
                    return Err(SilenceError::Invalid(format!(
                        "silence invalid: invalid regular expression {:?}: {e}",
                        m.value
                    )));
                }
            }
        }
        // A silence that every label set satisfies would mute every alert: Alertmanager
        // refuses it, and so do we.
        if s.matchers().iter().all(|m| m.matches("")) {
            return Err(SilenceError::Invalid(
                "silence invalid: at least one matcher must not match the empty string".into(),
            ));
        }
        if s.ends_at <= s.starts_at {
            return Err(SilenceError::Invalid(
                "silence invalid: end time must not be before start time".into(),
            ));
        }
        if s.ends_at <= now {
            return Err(SilenceError::Invalid(
                "silence invalid: end time can't be in the past".into(),
            ));
        }
        if !s.id.is_empty() && !self.by_id.contains_key(&s.id) {
            return Err(SilenceError::NotFound(s.id));
        }
        if s.id.is_empty() {
            s.id = new_id();
        }
        s.updated_at = now;
        let id = s.id.clone();
        self.by_id.insert(id.clone(), s);
        self.gc(now);
        self.save();
        Ok(id)
    }

    /// Expires a silence now.
    pub fn expire(&mut self, id: &str, now: i64) -> Result<(), SilenceError> {
        let s = self
            .by_id
            .get_mut(id)
            .ok_or_else(|| SilenceError::NotFound(id.to_string()))?;
        if s.state(now) == "expired" {
            return Err(SilenceError::Invalid(format!(
                "silence {id} already expired"
            )));
        }
        if s.starts_at > now {
            s.starts_at = now;
        }
        s.ends_at = now;
        s.updated_at = now;
        self.save();
        Ok(())
    }

    fn gc(&mut self, now: i64) {
        self.by_id.retain(|_, s| s.ends_at + RETENTION_MS > now);
    }

    /// A silence by id.
    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.by_id.get(id)
    }

    /// Every silence.
    pub fn all(&self) -> Vec<Silence> {
        self.by_id.values().cloned().collect()
    }

    /// Ids of the active silences muting `labels`.
    pub fn muting(&self, labels: &Labels, now: i64) -> Vec<String> {
        self.by_id
            .values()
            .filter(|s| s.mutes(labels, now))
            .map(|s| s.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, value: &str, is_regex: bool, is_equal: bool) -> SilenceMatcher {
        SilenceMatcher {
            name: name.into(),
            value: value.into(),
            is_regex,
            is_equal,
        }
    }

    fn silence(ms: Vec<SilenceMatcher>, start: i64, end: i64) -> Silence {
        Silence {
            id: String::new(),
            matchers: ms,
            starts_at: start,
            ends_at: end,
            updated_at: 0,
            created_by: "me".into(),
            comment: "maintenance".into(),
        }
    }

    #[test]
    fn lifecycle_matching_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("silences.json");
        let mut s = Silences::open(Some(file.clone()));
        let id = s
            .upsert(
                silence(
                    vec![
                        m("alertname", "Down", false, true),
                        m("env", "prod", false, false),
                    ],
                    1000,
                    5000,
                ),
                500,
            )
            .unwrap();
        let a = Labels::from_pairs([("alertname", "Down"), ("env", "dev")]);
        let b = Labels::from_pairs([("alertname", "Down"), ("env", "prod")]);
        assert!(s.muting(&a, 500).is_empty(), "pending");
        assert_eq!(s.muting(&a, 1000), vec![id.clone()]);
        assert!(s.muting(&b, 1000).is_empty(), "negated matcher");
        let s2 = Silences::open(Some(file.clone()));
        assert_eq!(s2.get(&id).unwrap().state(2000), "active", "persisted");
        s.expire(&id, 2000).unwrap();
        assert!(s.muting(&a, 2001).is_empty());
        assert_eq!(s.get(&id).unwrap().state(2001), "expired");
        assert!(s.expire(&id, 2002).is_err());
        assert!(matches!(
            s.expire("nope", 0),
            Err(SilenceError::NotFound(_))
        ));
        assert!(s.upsert(silence(vec![], 0, 10), 0).is_err());
        assert!(s
            .upsert(silence(vec![m("a", "(", true, true)], 0, 10), 0)
            .is_err());
        assert!(s
            .upsert(silence(vec![m("a", "b", false, true)], 10, 5), 0)
            .is_err());
        let re = s
            .upsert(
                silence(vec![m("alertname", "Do.*", true, true)], 0, 10_000),
                3000,
            )
            .unwrap();
        assert_eq!(s.muting(&a, 3000), vec![re]);
        assert_eq!(id.len(), 36);
    }

    /// Issue 13: a silence of `foo=~".*"` was accepted and muted every alert.
    #[test]
    fn a_silence_matching_everything_is_refused() {
        let mut ss = Silences::default();
        for ms in [
            vec![m("alertname", ".*", true, true)],
            vec![m("alertname", "", false, true)],
            vec![
                m("alertname", "x", false, false),
                m("job", "y|", true, true),
            ],
        ] {
            let s = silence(ms, 0, 10_000);
            let e = ss.upsert(s, 0).unwrap_err();
            assert!(
                e.to_string().contains("must not match the empty string"),
                "{e}"
            );
        }
        let ok = silence(
            vec![
                m("alertname", ".*", true, true),
                m("job", "api", false, true),
            ],
            0,
            10_000,
        );
        assert!(ss.upsert(ok, 0).is_ok());
    }
}
