//! `/api/v2/*`: Alertmanager's API v2 (status, receivers, alerts, alert groups, silences)
//! in its JSON shapes, so `amtool` and Grafana's Alertmanager data source work against the
//! appliance. The notifier behind [`super::AlertmanagerApi`] does the work.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::AppState;

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

fn error(code: u16, msg: String) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (code, Json(Value::String(msg))).into_response()
}

fn body_json(body: &Bytes) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

async fn status(State(st): State<AppState>) -> Response {
    Json(st.deps.alertmanager.status()).into_response()
}

async fn receivers(State(st): State<AppState>) -> Response {
    Json(st.deps.alertmanager.receivers()).into_response()
}

async fn alerts(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    match st.deps.alertmanager.alerts(&params(q)) {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(400, e),
    }
}

async fn groups(State(st): State<AppState>) -> Response {
    Json(st.deps.alertmanager.groups()).into_response()
}

async fn post_alerts(State(st): State<AppState>, body: Bytes) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(e) => return error(400, e),
    };
    match st.deps.alertmanager.post_alerts(&v) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error(400, e),
    }
}

async fn silences(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    match st.deps.alertmanager.silences(&params(q)) {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(400, e),
    }
}

async fn silence(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match st.deps.alertmanager.silence(&id) {
        Some(v) => Json(v).into_response(),
        None => error(404, format!("silence {id} not found")),
    }
}

async fn post_silence(State(st): State<AppState>, body: Bytes) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(e) => return error(400, e),
    };
    match st.deps.alertmanager.post_silence(&v) {
        Ok(id) => Json(serde_json::json!({"silenceID": id})).into_response(),
        Err((code, e)) => error(code, e),
    }
}

async fn expire_silence(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match st.deps.alertmanager.expire_silence(&id) {
        Ok(()) => StatusCode::OK.into_response(),
        Err((code, e)) => error(code, e),
    }
}
