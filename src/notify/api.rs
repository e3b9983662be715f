//! Alertmanager's API v2 as the notifier answers it, in typed views: alerts with their
//! receivers and silenced/inhibited state, alert groups, silences, status. The JSON shapes
//! live in `http/alertmanager.rs`; this module owns what the answers mean and must not
//! know about HTTP or JSON.

use std::collections::BTreeMap;

use super::dispatch::Alert;
use super::notifier::{Notifier, MAX_ALERT_LABELS};
use super::silence::{Silence, SilenceError};

/// An alert as the API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertView {
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Start (ms).
    pub starts_at: i64,
    /// End (ms).
    pub ends_at: i64,
    /// When the view was made (ms).
    pub updated_at: i64,
    /// Link to the source.
    pub generator_url: String,
    /// Fingerprint, hex.
    pub fingerprint: String,
    /// Receivers its routes reach.
    pub receivers: Vec<String>,
    /// Ids of the silences muting it.
    pub silenced_by: Vec<String>,
    /// Whether an inhibition rule mutes it.
    pub inhibited: bool,
}

impl AlertView {
    /// `active` or `suppressed`.
    pub fn state(&self) -> &'static str {
        if self.silenced_by.is_empty() && !self.inhibited {
            "active"
        } else {
            "suppressed"
        }
    }
}

/// An alert group as the API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupView {
    /// Group labels.
    pub labels: BTreeMap<String, String>,
    /// Receiver.
    pub receiver: String,
    /// Its alerts.
    pub alerts: Vec<AlertView>,
}

/// What `GET /status` shows.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusView {
    /// The configuration as YAML, secrets hidden.
    pub config_yaml: String,
    /// Start time (ms).
    pub started: i64,
}

/// Which alerts `GET /alerts` returns.
#[derive(Clone, Debug)]
pub struct AlertFilter {
    /// Label matchers, in Alertmanager's syntax, all of which must match.
    pub matchers: Vec<String>,
    /// Include active alerts.
    pub active: bool,
    /// Include silenced alerts.
    pub silenced: bool,
    /// Include inhibited alerts.
    pub inhibited: bool,
    /// Only alerts routed to a receiver matching this regex.
    pub receiver: Option<String>,
}

impl Default for AlertFilter {
    fn default() -> Self {
        AlertFilter {
            matchers: Vec::new(),
            active: true,
            silenced: true,
            inhibited: true,
            receiver: None,
        }
    }
}

/// A posted alert (times in ms; `None` takes Alertmanager's defaults).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewAlert {
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Start; default now.
    pub starts_at: Option<i64>,
    /// End; default now + `resolve_timeout`.
    pub ends_at: Option<i64>,
    /// Link to the source.
    pub generator_url: String,
}

/// Why an API request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such object (404).
    #[error("{0}")]
    NotFound(String),
}

impl From<SilenceError> for ApiError {
    fn from(e: SilenceError) -> Self {
        match e {
            SilenceError::NotFound(_) => ApiError::NotFound(e.to_string()),
            SilenceError::Invalid(_) => ApiError::BadRequest(e.to_string()),
        }
    }
}

fn labels_map(l: &crate::model::Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|x| (x.name.to_string(), x.value.to_string()))
        .collect()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Notifier {
    fn view(
        &self,
        a: &Alert,
        cfg: &super::config::NotifyConfig,
        all: &[Alert],
        now: i64,
    ) -> AlertView {
        AlertView {
            labels: labels_map(&a.labels),
            annotations: a.annotations.clone(),
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            updated_at: now,
            generator_url: a.generator_url.clone(),
            fingerprint: format!("{:016x}", a.fingerprint()),
            receivers: cfg
                .route
                .matching(&a.labels)
                .iter()
                .map(|r| r.receiver.clone())
                .collect(),
            silenced_by: self.silences.lock().muting(&a.labels, now),
            inhibited: super::dispatch::inhibited(&cfg.inhibit_rules, all.iter(), a, now),
        }
    }

    /// `GET /status`.
    pub fn api_status(&self) -> StatusView {
        StatusView {
            config_yaml: self.state.lock().original.clone(),
            started: self.started,
        }
    }

    /// `GET /receivers`: receiver names.
    pub fn api_receivers(&self) -> Vec<String> {
        let st = self.state.lock();
        st.config
            .iter()
            .flat_map(|c| c.receivers.iter().map(|r| r.name.clone()))
            .collect()
    }

    /// `GET /alerts`.
    pub fn api_alerts(&self, f: &AlertFilter) -> Result<Vec<AlertView>, ApiError> {
        let now = now_ms();
        let mut matchers = Vec::new();
        for m in &f.matchers {
            matchers.push(super::route::parse_matcher(m).map_err(|e| ApiError::BadRequest(e.0))?);
        }
        let receiver = f
            .receiver
            .as_ref()
            .map(|v| regex::Regex::new(&format!("^(?:{v})$")))
            .transpose()
            .map_err(|e| ApiError::BadRequest(format!("receiver: {e}")))?;
        let st = self.state.lock();
        let Some(cfg) = st.config.clone() else {
            return Ok(Vec::new());
        };
        let all = st.dispatcher.alerts();
        drop(st);
        let mut out = Vec::new();
        for a in all.iter().filter(|a| !a.resolved(now)) {
            if !matchers
                .iter()
                .all(|m| m.matches(a.labels.get(&m.name).unwrap_or("")))
            {
                continue;
            }
            let v = self.view(a, &cfg, &all, now);
            let silenced = !v.silenced_by.is_empty();
            let inhibited = v.inhibited && !silenced;
            let active = v.state() == "active";
            if (!silenced || f.silenced)
                && (!inhibited || f.inhibited)
                && (!active || f.active)
                && receiver
                    .as_ref()
                    .is_none_or(|re| v.receivers.iter().any(|r| re.is_match(r)))
            {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// `GET /alerts/groups`.
    pub fn api_groups(&self) -> Vec<GroupView> {
        let now = now_ms();
        let st = self.state.lock();
        let Some(cfg) = st.config.clone() else {
            return Vec::new();
        };
        let all = st.dispatcher.alerts();
        drop(st);
        let mut groups: BTreeMap<(String, String), GroupView> = BTreeMap::new();
        for a in all.iter().filter(|a| !a.resolved(now)) {
            for r in cfg.route.matching(&a.labels) {
                let gl = super::route::group_labels(r, &a.labels);
                let key = (r.receiver.clone(), format!("{}{gl:?}", r.key));
                groups
                    .entry(key)
                    .or_insert_with(|| GroupView {
                        labels: gl,
                        receiver: r.receiver.clone(),
                        alerts: Vec::new(),
                    })
                    .alerts
                    .push(self.view(a, &cfg, &all, now));
            }
        }
        groups.into_values().collect()
    }

    /// `POST /alerts`: alerts from other tools (start defaults to now, end to
    /// `resolve_timeout` from now, as Alertmanager does).
    pub fn api_post_alerts(&self, alerts: Vec<NewAlert>) -> Result<(), ApiError> {
        let now = now_ms();
        let resolve_ms = self
            .state
            .lock()
            .config
            .as_ref()
            .map(|c| c.global.resolve_timeout.as_millis())
            .filter(|ms| *ms > 0)
            .unwrap_or(5 * 60 * 1000);
        let mut out = Vec::new();
        for a in alerts {
            // Every label is hashed, routed and matched against silences and inhibitions:
            // a bound keeps one request from costing seconds of CPU.
            if a.labels.len() > MAX_ALERT_LABELS || a.annotations.len() > MAX_ALERT_LABELS {
                return Err(ApiError::BadRequest(format!(
                    "an alert may have at most {MAX_ALERT_LABELS} labels and {MAX_ALERT_LABELS} annotations"
                )));
            }
            let labels = crate::model::Labels::from_pairs(a.labels);
            if labels.is_empty() {
                return Err(ApiError::BadRequest(
                    "at least one label pair required".into(),
                ));
            }
            let starts_at = a.starts_at.unwrap_or(now);
            let ends_at = a.ends_at.unwrap_or(now + resolve_ms);
            if ends_at < starts_at {
                return Err(ApiError::BadRequest(
                    "start time must be before end time".into(),
                ));
            }
            out.push(Alert {
                labels,
                annotations: a.annotations,
                starts_at,
                ends_at,
                generator_url: a.generator_url,
            });
        }
        self.push(out, now);
        Ok(())
    }

    /// `GET /silences`: silences whose matchers include every one of `filters`.
    pub fn api_silences(&self, filters: &[String]) -> Result<Vec<Silence>, ApiError> {
        let mut wanted = Vec::new();
        for f in filters {
            wanted.push(super::route::parse_matcher(f).map_err(|e| ApiError::BadRequest(e.0))?);
        }
        Ok(self
            .silences
            .lock()
            .all()
            .into_iter()
            .filter(|s| {
                wanted.iter().all(|w| {
                    s.matchers
                        .iter()
                        .any(|m| m.name == w.name && w.matches(&m.value))
                })
            })
            .collect())
    }

    /// `GET /silence/{id}`.
    pub fn api_silence(&self, id: &str) -> Option<Silence> {
        self.silences.lock().get(id).cloned()
    }

    /// `POST /silences`: creates (or, with an `id`, replaces) a silence; returns its id. A
    /// silence cannot start in the past (Alertmanager moves it to now).
    pub fn api_post_silence(&self, mut s: Silence) -> Result<String, ApiError> {
        let now = now_ms();
        s.starts_at = s.starts_at.max(now);
        s.updated_at = now;
        let id = self.silences.lock().upsert(s, now)?;
        self.wake.notify_one();
        Ok(id)
    }

    /// `DELETE /silence/{id}`.
    pub fn api_expire_silence(&self, id: &str) -> Result<(), ApiError> {
        self.silences.lock().expire(id, now_ms())?;
        self.wake.notify_one();
        Ok(())
    }
}
