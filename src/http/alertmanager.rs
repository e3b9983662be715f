//! `/api/v2/*`: Alertmanager's API v2 (status, receivers, alerts, alert groups, silences)
//! in its JSON shapes, so `amtool` and Grafana's Alertmanager data source work against the
//! appliance. This file owns the JSON: it reads request bodies into the notifier's typed
//! inputs and writes its typed views out; the notifier behind [`super::AlertmanagerApi`]
//! decides what they mean.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::AppState;
use crate::notify::api::{AlertFilter, AlertView, ApiError, GroupView, NewAlert};
use crate::notify::silence::{Silence, SilenceMatcher};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v2/status", get(status))
        .route("/api/v2/receivers", get(receivers))
        .route("/api/v2/alerts", get(alerts).post(post_alerts))
        .route("/api/v2/alerts/groups", get(groups))
        .route("/api/v2/silences", get(silences).post(post_silence))
        .route("/api/v2/silence/{id}", get(silence).delete(expire_silence))
}

fn params(q: Option<String>) -> Vec<(String, String)> {
    q.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn error(code: StatusCode, msg: String) -> Response {
    (code, Json(Value::String(msg))).into_response()
}

fn api_error(e: ApiError) -> Response {
    match e {
        ApiError::BadRequest(m) => error(StatusCode::BAD_REQUEST, m),
        ApiError::NotFound(m) => error(StatusCode::NOT_FOUND, m),
    }
}

fn rfc3339(ms: i64) -> String {
    if ms == 0 {
        "0001-01-01T00:00:00Z".into()
    } else {
        crate::model::time::format_rfc3339(ms)
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `gettableAlert`.
fn alert_json(a: &AlertView) -> Value {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(a.starts_at),
        "endsAt": rfc3339(a.ends_at),
        "updatedAt": rfc3339(a.updated_at),
        "generatorURL": a.generator_url,
        "fingerprint": a.fingerprint,
        "receivers": a.receivers.iter().map(|r| json!({"name": r})).collect::<Vec<_>>(),
        "status": {
            "state": a.state(),
            "silencedBy": a.silenced_by,
            "inhibitedBy": [],
            "mutedBy": [],
        },
    })
}

/// `alertGroup`.
fn group_json(g: &GroupView) -> Value {
    json!({
        "labels": g.labels,
        "receiver": {"name": g.receiver},
        "routeLabels": {},
        "alerts": g.alerts.iter().map(alert_json).collect::<Vec<_>>(),
    })
}

/// `gettableSilence`.
fn silence_json(s: &Silence, now: i64) -> Value {
    json!({
        "id": s.id,
        "status": {"state": s.state(now)},
        "updatedAt": rfc3339(s.updated_at),
        "matchers": s.matchers,
        "startsAt": rfc3339(s.starts_at),
        "endsAt": rfc3339(s.ends_at),
        "createdBy": s.created_by,
        "comment": s.comment,
        "annotations": {},
    })
}

/// A label or annotation value: strings as they are, anything else as its JSON text
/// (Alertmanager refuses non-strings; tools that send numbers still get their alert in).
fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    match v {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Go's zero `time.Time` (`0001-01-01T00:00:00Z`) in ms: what `amtool alert add` sends for
/// a start or end it was not given, and what Alertmanager reads as "not set".
const GO_ZERO_TIME_MS: i64 = -62_135_596_800_000;

fn time(v: Option<&Value>, what: &str) -> Result<Option<i64>, String> {
    match v.and_then(Value::as_str).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| Some(d.timestamp_millis()).filter(|ms| *ms != GO_ZERO_TIME_MS))
            .map_err(|e| format!("{what}: bad time {s:?}: {e}")),
    }
}

/// `postableAlerts`: a JSON array of alerts.
pub fn parse_alerts(body: &[u8]) -> Result<Vec<NewAlert>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    let Some(list) = v.as_array() else {
        return Err("body must be a JSON array of alerts".into());
    };
    let mut out = Vec::with_capacity(list.len());
    for a in list {
        let Some(Value::Object(_)) = a.get("labels") else {
            return Err("labels are required".into());
        };
        out.push(NewAlert {
            labels: string_map(a.get("labels")).into_iter().collect(),
            annotations: string_map(a.get("annotations")),
            starts_at: time(a.get("startsAt"), "startsAt")?,
            ends_at: time(a.get("endsAt"), "endsAt")?,
            generator_url: a
                .get("generatorURL")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        });
    }
    Ok(out)
}

/// `postableSilence`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostableSilence {
    #[serde(default)]
    id: String,
    matchers: Vec<SilenceMatcher>,
    starts_at: String,
    ends_at: String,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    comment: String,
}

/// A silence from its JSON body (the id empty for a new one).
pub fn parse_silence(body: &[u8]) -> Result<Silence, String> {
    let p: PostableSilence =
        serde_json::from_slice(body).map_err(|e| format!("invalid silence: {e}"))?;
    let at = |s: &str, what: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_millis())
            .map_err(|e| format!("{what}: {e}"))
    };
    Ok(Silence {
        id: p.id,
        matchers: p.matchers,
        starts_at: at(&p.starts_at, "startsAt")?,
        ends_at: at(&p.ends_at, "endsAt")?,
        updated_at: 0,
        created_by: p.created_by,
        comment: p.comment,
    })
}

/// `GET /alerts` query parameters: `filter` matchers, `active`, `silenced`, `inhibited`
/// (default true), `receiver` regex.
fn alert_filter(params: &[(String, String)]) -> AlertFilter {
    let flag = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v != "false")
            .unwrap_or(true)
    };
    AlertFilter {
        matchers: params
            .iter()
            .filter(|(k, _)| k == "filter")
            .map(|(_, v)| v.clone())
            .collect(),
        active: flag("active"),
        silenced: flag("silenced"),
        inhibited: flag("inhibited"),
        receiver: params
            .iter()
            .find(|(k, _)| k == "receiver")
            .map(|(_, v)| v.clone()),
    }
}

async fn status(State(st): State<AppState>) -> Response {
    let s = st.deps.alertmanager.status();
    Json(json!({
        "cluster": {"status": "disabled", "peers": [], "name": ""},
        // The spec requires every field, goVersion included (the compiler's, here).
        "versionInfo": {
            "version": env!("CARGO_PKG_VERSION"), "revision": env!("APPLIANCE_REVISION"),
            "branch": env!("APPLIANCE_BRANCH"), "buildUser": env!("APPLIANCE_BUILD_USER"),
            "buildDate": env!("APPLIANCE_BUILD_DATE"), "goVersion": env!("APPLIANCE_RUSTC"),
        },
        "config": {"original": s.config_yaml},
        "uptime": rfc3339(s.started),
    }))
    .into_response()
}

async fn receivers(State(st): State<AppState>) -> Response {
    let names: Vec<Value> = st
        .deps
        .alertmanager
        .receivers()
        .into_iter()
        .map(|n| json!({"name": n}))
        .collect();
    Json(names).into_response()
}

async fn alerts(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    match st.deps.alertmanager.alerts(&alert_filter(&params(q))) {
        Ok(v) => Json(v.iter().map(alert_json).collect::<Vec<_>>()).into_response(),
        Err(e) => api_error(e),
    }
}

async fn groups(State(st): State<AppState>) -> Response {
    let g = st.deps.alertmanager.groups();
    Json(g.iter().map(group_json).collect::<Vec<_>>()).into_response()
}

async fn post_alerts(State(st): State<AppState>, body: Bytes) -> Response {
    let alerts = match parse_alerts(&body) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match st.deps.alertmanager.post_alerts(alerts) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => api_error(e),
    }
}

async fn silences(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let filters: Vec<String> = params(q)
        .into_iter()
        .filter(|(k, _)| k == "filter")
        .map(|(_, v)| v)
        .collect();
    let now = now_ms();
    match st.deps.alertmanager.silences(&filters) {
        Ok(v) => Json(v.iter().map(|s| silence_json(s, now)).collect::<Vec<_>>()).into_response(),
        Err(e) => api_error(e),
    }
}

async fn silence(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match st.deps.alertmanager.silence(&id) {
        Some(s) => Json(silence_json(&s, now_ms())).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("silence {id} not found")),
    }
}

async fn post_silence(State(st): State<AppState>, body: Bytes) -> Response {
    let s = match parse_silence(&body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match st.deps.alertmanager.post_silence(s) {
        Ok(id) => Json(json!({"silenceID": id})).into_response(),
        Err(e) => api_error(e),
    }
}

async fn expire_silence(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match st.deps.alertmanager.expire_silence(&id) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => api_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_zero_times_are_unset() {
        // amtool alert add without --start/--end.
        let a = parse_alerts(
            br#"[{"labels":{"alertname":"X"},"annotations":{},"startsAt":"0001-01-01T00:00:00.000Z","endsAt":"0001-01-01T00:00:00.000Z","generatorURL":""}]"#,
        )
        .unwrap();
        assert_eq!((a[0].starts_at, a[0].ends_at), (None, None));
        let a = parse_alerts(br#"[{"labels":{"alertname":"X"},"endsAt":"2030-01-01T00:00:00Z"}]"#)
            .unwrap();
        assert_eq!(a[0].ends_at, Some(1_893_456_000_000));
        assert!(parse_alerts(br#"[{"labels":{"a":"b"},"startsAt":"yesterday"}]"#).is_err());
        assert!(parse_alerts(br#"{"labels":{}}"#).is_err());
    }
}
