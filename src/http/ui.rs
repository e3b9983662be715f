//! The browser UI: the embedded bundle (`web/dist`, built from `web/` by `build.rs`), the
//! login page, and the dashboards (`dashboards/*.json`, embedded; a directory from the config
//! adds to or replaces them by `uid`).
//!
//! Owns how assets are served (content type, ETag, pre-compressed gzip) and the session
//! cookie's attributes; the credential check itself is `auth`'s.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use rust_embed::RustEmbed;
use serde::Deserialize;

use super::{auth, AppState};

#[derive(RustEmbed)]
#[folder = "web/dist"]
struct Assets;

/// Prometheus's own UI paths, sent to the matching page so bookmarks keep working.
const LEGACY: &[(&str, &str)] = &[
    ("/graph", "explore"),
    ("/query", "explore"),
    ("/alerts", "alerts"),
    ("/rules", "alerts"),
    ("/targets", "targets"),
    ("/service-discovery", "targets"),
    ("/status", "status"),
    ("/config", "status"),
    ("/flags", "status"),
    ("/tsdb-status", "status"),
    ("/silences", "silences"),
];

pub(super) fn routes() -> Router<AppState> {
    let mut r =
        Router::new()
            .route("/", get(index))
            .route("/index.html", get(index))
            .route("/assets/{*file}", get(asset))
            .route("/-/login", get(login_page).post(login))
            .route("/-/logout", post(logout))
            .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
            .route("/api/v1/ui/dashboards", get(dashboards))
            .route("/api/v1/ui/dashboards/{uid}", get(dashboard))
            .route(
                "/d/{uid}",
                get(
                    |Path(uid): Path<String>, Query(q): Query<Vec<(String, String)>>| async move {
                        grafana_link(&uid, "../", &q)
                    },
                ),
            )
            .route(
                "/d/{uid}/{slug}",
                get(
                    |Path((uid, _)): Path<(String, String)>,
                     Query(q): Query<Vec<(String, String)>>| async move {
                        grafana_link(&uid, "../../", &q)
                    },
                ),
            );
    for (from, to) in LEGACY {
        let page = *to;
        r =
            r.route(
                from,
                get(move |Query(q): Query<Vec<(String, String)>>| async move {
                    legacy_redirect(page, &q)
                }),
            );
    }
    r
}

/// Where a Prometheus UI path goes; `/graph?g0.expr=...&g0.range_input=1h` (Prometheus's
/// shared links) opens the same query in Explore.
fn legacy_redirect(page: &str, q: &[(String, String)]) -> Response {
    let mut params = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in q {
        match k.as_str() {
            "g0.expr" => {
                params.append_pair("expr", v);
            }
            "g0.range_input" => {
                params.append_pair("range", v);
            }
            "g0.tab" => {
                params.append_pair(
                    "tab",
                    if v == "1" || v == "table" {
                        "table"
                    } else {
                        "graph"
                    },
                );
            }
            _ => {}
        }
    }
    let qs = params.finish();
    let to = if qs.is_empty() {
        format!("./#/{page}")
    } else {
        format!("./#/{page}?{qs}")
    };
    Redirect::to(&to).into_response()
}

/// Grafana's dashboard link (`/d/<uid>/<slug>?var-x=a&from=now-6h&refresh=1m`) opened on the
/// same dashboard in the UI, variables and relative range kept. `up` leads from the link's
/// directory back to the root, so the redirect works under any prefix.
fn grafana_link(uid: &str, up: &str, q: &[(String, String)]) -> Response {
    let mut params = url::form_urlencoded::Serializer::new(String::new());
    let to_now = q
        .iter()
        .find(|(k, _)| k == "to")
        .is_none_or(|(_, v)| v == "now");
    for (k, v) in q {
        if k.starts_with("var-") || k == "refresh" {
            params.append_pair(k, v);
        } else if k == "from" && to_now {
            if let Some(r) = v.strip_prefix("now-") {
                params.append_pair("range", r);
            }
        }
    }
    let qs = params.finish();
    let uid: String = url::form_urlencoded::byte_serialize(uid.as_bytes()).collect();
    let mut to = format!("{up}#/dashboards/{uid}");
    if !qs.is_empty() {
        to.push('?');
        to.push_str(&qs);
    }
    Redirect::to(&to).into_response()
}

/// Whether `path` is a page of the UI (which needs the admin session).
pub(super) fn is_page(path: &str) -> bool {
    path == "/"
        || path == "/index.html"
        || path.starts_with("/d/")
        || LEGACY.iter().any(|(p, _)| *p == path)
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")))
}

async fn index(State(st): State<AppState>) -> Response {
    let Some(f) = Assets::get("index.html") else {
        return (StatusCode::NOT_FOUND, "the UI bundle is missing\n").into_response();
    };
    // The base element makes every relative URL of the UI (assets and API) resolve under
    // the prefix the browser sees, so a proxy can mount us anywhere.
    let html = String::from_utf8_lossy(&f.data).replace(
        "<base href=\"/\">",
        &format!("<base href=\"{}/\">", html_escape(&st.deps.base_path)),
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let file = format!("assets/{file}");
    let Some(f) = Assets::get(&file) else {
        return (StatusCode::NOT_FOUND, format!("no asset {file:?}\n")).into_response();
    };
    let etag = format!(
        "\"{}\"",
        f.metadata
            .sha256_hash()
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let mime = f.metadata.mimetype().to_string();
    let mut out = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, v);
    }
    // Revalidate each time: the names carry no hash, and a 304 costs one round trip.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if etag_matches(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    if let Ok(v) = HeaderValue::from_str(&mime) {
        out.insert(header::CONTENT_TYPE, v);
    }
    if accepts_gzip(&headers) {
        if let Some(gz) = Assets::get(&format!("{file}.gz")) {
            out.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            return (out, gz.data.into_owned()).into_response();
        }
    }
    (out, f.data.into_owned()).into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn login_html(base: &str, message: &str) -> String {
    let msg = if message.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"error\" role=\"alert\">{}</p>",
            html_escape(message)
        )
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Log in · appliance</title><link rel="icon" href="data:,">
<style>
body{{font:15px system-ui,sans-serif;background:#f4f5f7;display:flex;justify-content:center;align-items:center;height:100vh;margin:0}}
form{{background:#fff;padding:2em;border-radius:8px;box-shadow:0 1px 4px #0002;width:18em}}
h1{{font-size:1.3em;margin:0 0 1em}} label{{display:block;margin:.6em 0 .2em}}
input{{width:100%;box-sizing:border-box;padding:.5em;font:inherit}}
button{{margin-top:1.2em;width:100%;padding:.6em;font:inherit;background:#1f60c4;color:#fff;border:0;border-radius:4px}}
.error{{color:#b00020}}
</style></head>
<body><form method="post" action="{base}/-/login">
<h1>appliance</h1>{msg}
<label for="username">User</label><input id="username" name="username" value="admin" autocomplete="username">
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" autofocus>
<input type="hidden" name="next" id="next">
<button type="submit">Log in</button>
</form>
<script>{LOGIN_SCRIPT}</script>
</body></html>
"#,
        base = html_escape(base),
    )
}

/// The login page's one inline script (it carries the view in the URL's fragment through the
/// form); the content security policy allows exactly this text by its hash.
const LOGIN_SCRIPT: &str = "document.getElementById('next').value = location.hash;";

/// The `Content-Security-Policy` of every response: our own scripts (and the login page's one
/// inline script) only, no framing, forms and links to ourselves.
pub(super) fn content_security_policy() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let hash = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(LOGIN_SCRIPT.as_bytes()));
        format!(
            "default-src 'self'; script-src 'self' 'sha256-{hash}'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; \
             form-action 'self'; object-src 'none'"
        )
    })
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    failed: Option<String>,
    #[serde(default)]
    throttled: Option<String>,
}

async fn login_page(State(st): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    let msg = if q.throttled.is_some() {
        "Too many failed logins. Try again in a minute."
    } else if q.failed.is_some() {
        "Wrong user or password."
    } else {
        ""
    };
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::response::Html(login_html(&st.deps.base_path, msg)),
    )
        .into_response()
}

/// Browsers get to the login page by redirect after a failed attempt (post/redirect/get), so
/// the page loads cleanly and a reload does not post the password again; no cookie is set.
fn back_to_login(base: &str, why: &str) -> Response {
    Redirect::to(&format!("{base}/-/login?{why}=1")).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// The page's `#/...` view the browser was sent here from (a shared link), to return to.
    #[serde(default)]
    next: String,
}

fn cookie_path(base: &str) -> &str {
    if base.is_empty() {
        "/"
    } else {
        base
    }
}

async fn login(
    State(st): State<AppState>,
    parts: axum::http::request::Parts,
    Form(f): Form<LoginForm>,
) -> Response {
    let ip = super::client_ip(&parts.extensions, &parts.headers, &st.deps.trusted_proxies);
    let base = st.deps.base_path.clone();
    if st.deps.auth.password_throttled(&f.username, ip) {
        return back_to_login(&base, "throttled");
    }
    let a = st.deps.auth.clone();
    let (user, password) = (f.username, f.password);
    // Only a view of this UI: `#/` and URL-safe characters, never another site.
    let next = if f.next.starts_with("#/")
        && f.next.len() < 4096
        && f.next.chars().all(|c| c.is_ascii_graphic())
    {
        f.next
    } else {
        String::new()
    };
    // argon2 takes tens of milliseconds of CPU by design: keep it off the async threads.
    let ok = tokio::task::spawn_blocking(move || a.check_password(&user, &password, ip))
        .await
        .unwrap_or(false);
    if !ok {
        return back_to_login(
            &base,
            if st.deps.auth.password_throttled(auth::ADMIN, ip) {
                "throttled"
            } else {
                "failed"
            },
        );
    }
    let token = st.deps.auth.new_session();
    let cookie = format!(
        "{}={token}; Path={}; HttpOnly; SameSite=Strict{}",
        auth::COOKIE,
        cookie_path(&base),
        if st.deps.secure_cookies {
            "; Secure"
        } else {
            ""
        }
    );
    let mut resp = Redirect::to(&format!("{base}/{next}")).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn logout(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(c) = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()) {
        for part in c.split(';') {
            if let Some(t) = part.trim().strip_prefix(&format!("{}=", auth::COOKIE)) {
                st.deps.auth.end_session(t);
            }
        }
    }
    let base = st.deps.base_path.clone();
    let mut resp = Redirect::to(&format!("{base}/-/login")).into_response();
    let clear = format!(
        "{}=; Path={}; HttpOnly; SameSite=Strict; Max-Age=0",
        auth::COOKIE,
        cookie_path(&base)
    );
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Every dashboard by uid: the embedded ones, then the configured directory's (which win).
fn load_dashboards(dir: &std::path::Path) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    let mut add = |name: &str, data: &[u8]| match serde_json::from_slice::<serde_json::Value>(data)
    {
        Ok(v) => {
            let uid = v["uid"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| name.trim_end_matches(".json").to_string());
            out.insert(uid, v);
        }
        Err(e) => tracing::warn!(file = name, error = %e, "skipping a dashboard that is not JSON"),
    };
    for (name, data) in crate::config::builtin_dashboards() {
        add(&name, &data);
    }
    if dir.as_os_str().is_empty() {
        return out;
    }
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "json") {
                    match std::fs::read(&p) {
                        Ok(data) => add(&p.display().to_string(), &data),
                        Err(e) => {
                            tracing::warn!(file = %p.display(), error = %e, "reading a dashboard")
                        }
                    }
                }
            }
        }
        Err(e) => {
            crate::failure!(warn, "http", "dashboards", dir = %dir.display(), error = %e, "reading the dashboards directory")
        }
    }
    out
}

async fn dashboards(State(st): State<AppState>) -> Response {
    let list: Vec<serde_json::Value> = load_dashboards(&st.deps.status.dashboards_dir())
        .into_iter()
        .map(|(uid, d)| {
            serde_json::json!({
                "uid": uid,
                "title": d["title"],
                "tags": d["tags"],
                "description": d["description"],
            })
        })
        .collect();
    axum::Json(serde_json::json!({"status": "success", "data": list})).into_response()
}

async fn dashboard(State(st): State<AppState>, Path(uid): Path<String>) -> Response {
    match load_dashboards(&st.deps.status.dashboards_dir()).remove(&uid) {
        Some(d) => axum::Json(serde_json::json!({"status": "success", "data": d})).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({
                "status": "error",
                "errorType": "not_found",
                "error": format!("no dashboard with uid {uid:?}"),
            })),
        )
            .into_response(),
    }
}
