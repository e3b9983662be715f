//! Grafana: `appliance grafana provision` writes files Grafana's provisioning reads, and the
//! `grafana:` section pushes the datasources, the folder and the dashboards to a stand-in
//! for Grafana's HTTP API (no Grafana package exists here) that answers 503 at first, as
//! Grafana does while it starts.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::Value;

/// One request the stand-in received.
#[derive(Clone, Debug)]
struct Call {
    method: String,
    path: String,
    authorization: String,
    content_type: String,
    body: Value,
}

type Calls = Arc<Mutex<Vec<Call>>>;

/// A stand-in for Grafana's HTTP API: `/api/health`, datasources by uid, folders by uid and
/// `POST /api/dashboards/db`, answering as Grafana documents; the first `unavailable`
/// requests get 503.
fn grafana_stand_in(unavailable: usize) -> (String, Calls) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let calls: Calls = Default::default();
    let c = calls.clone();
    let left = Arc::new(AtomicUsize::new(unavailable));
    std::thread::spawn(move || {
        let mut datasources: HashSet<String> = HashSet::new();
        let mut folders: HashSet<String> = HashSet::new();
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let Some((head, body)) = read_request(&mut s) else {
                continue;
            };
            let head = String::from_utf8_lossy(&head).to_string();
            let mut first = head.lines().next().unwrap_or("").split_whitespace();
            let method = first.next().unwrap_or("").to_string();
            let path = first.next().unwrap_or("").to_string();
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                    })
                    .unwrap_or_default()
            };
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            c.lock().unwrap().push(Call {
                method: method.clone(),
                path: path.clone(),
                authorization: header("authorization"),
                content_type: header("content-type"),
                body: body.clone(),
            });
            let (status, answer) = if left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                (503, r#"{"message":"starting"}"#.to_string())
            } else {
                match (method.as_str(), path.as_str()) {
                    ("GET", "/api/health") => {
                        (200, r#"{"database":"ok","version":"11.3.0"}"#.into())
                    }
                    ("GET", p) if p.starts_with("/api/datasources/uid/") => {
                        let uid = &p["/api/datasources/uid/".len()..];
                        if datasources.contains(uid) {
                            (200, format!(r#"{{"uid":"{uid}"}}"#))
                        } else {
                            (404, r#"{"message":"Data source not found"}"#.into())
                        }
                    }
                    ("POST", "/api/datasources") => {
                        let uid = body["uid"].as_str().unwrap_or("").to_string();
                        if datasources.insert(uid) {
                            (200, r#"{"message":"Datasource added","id":1}"#.into())
                        } else {
                            (
                                409,
                                r#"{"message":"data source with the same uid already exists"}"#
                                    .into(),
                            )
                        }
                    }
                    ("PUT", p) if p.starts_with("/api/datasources/uid/") => {
                        (200, r#"{"message":"Datasource updated"}"#.into())
                    }
                    ("GET", p) if p.starts_with("/api/folders/") => {
                        let uid = &p["/api/folders/".len()..];
                        if folders.contains(uid) {
                            (200, format!(r#"{{"uid":"{uid}","title":"Monitoring"}}"#))
                        } else {
                            (404, r#"{"message":"folder not found"}"#.into())
                        }
                    }
                    ("POST", "/api/folders") => {
                        folders.insert(body["uid"].as_str().unwrap_or("").to_string());
                        (200, r#"{"id":1}"#.into())
                    }
                    ("POST", "/api/dashboards/db") => (
                        200,
                        r#"{"status":"success","version":1,"id":1,"uid":"x","url":"/d/x"}"#.into(),
                    ),
                    _ => (404, r#"{"message":"Not found"}"#.into()),
                }
            };
            let resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = s.write_all(resp.as_bytes());
        }
    });
    (addr, calls)
}

fn shipped_uids() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let v: Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            v["uid"].as_str().unwrap().to_string()
        })
        .collect();
    out.sort();
    out
}

const EXTRA: &str = r#"{"uid":"team-extra","title":"Team extra","schemaVersion":39,
"templating":{"list":[{"name":"datasource","type":"datasource","query":"prometheus"}]},
"panels":[{"type":"timeseries","title":"Requests","datasource":{"type":"prometheus","uid":"${datasource}"},
"targets":[{"expr":"sum(rate(http_requests_total[5m]))","datasource":{"type":"prometheus","uid":"${datasource}"}}]}]}"#;

fn dashboards_pushed(calls: &Calls) -> Vec<Value> {
    calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.method == "POST" && c.path == "/api/dashboards/db")
        .map(|c| c.body.clone())
        .collect()
}

#[test]
fn the_api_sync_waits_for_grafana_pushes_everything_and_again_after_a_change() {
    let (grafana, calls) = grafana_stand_in(4);
    let dir = tempfile::tempdir().unwrap();
    let dash_dir = dir.path().join("dashboards");
    std::fs::create_dir_all(&dash_dir).unwrap();
    std::fs::write(dash_dir.join("extra.json"), EXTRA).unwrap();
    let password = "grafana-admin-S3cret";
    let cfg = dir.path().join("appliance.yml");
    std::fs::write(
        &cfg,
        format!(
            "web: {{external_url: 'http://mon.example:8080/appliance', route_prefix: /, dashboards_dir: {}}}\n\
             collectors: {{containers: {{enabled: false}}, postgres: {{enabled: false}}, redis: {{enabled: false}}, celery: {{enabled: false}}}}\n\
             grafana:\n  url: http://{grafana}/\n  basic_auth: {{username: admin, password: '${{GRAFANA_ADMIN_PASSWORD}}'}}\n  folder: Monitoring\n  datasource_name: Appliance\n",
            dash_dir.display()
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path().join("appliance.log")).unwrap();
    let _app = Proc(
        Command::new(env!("CARGO_BIN_EXE_appliance"))
            .current_dir(dir.path())
            .env("APPLIANCE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("GRAFANA_ADMIN_PASSWORD", password)
            .args(["run", "--log-level", "debug", "--listen", &addr, "--config"])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_ready(&addr);

    let mut want = shipped_uids();
    assert_eq!(want.len(), 6);
    want.push("team-extra".into());
    want.sort();
    wait_for(60, "every dashboard pushed", || {
        let mut got: Vec<String> = dashboards_pushed(&calls)
            .iter()
            .map(|b| b["dashboard"]["uid"].as_str().unwrap_or("").to_string())
            .collect();
        got.sort();
        got.dedup();
        (got == want).then_some(())
    });
    let all = calls.lock().unwrap().clone();
    // Grafana answered 503 at first; the appliance came back.
    assert!(
        all.iter().take(4).all(|c| c.path == "/api/health"),
        "{all:?}"
    );
    let expected_auth = {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}"))
        )
    };
    for c in &all {
        assert_eq!(c.authorization, expected_auth, "{} {}", c.method, c.path);
        if c.method != "GET" {
            assert_eq!(
                c.content_type, "application/json",
                "{} {}",
                c.method, c.path
            );
        }
    }
    // Datasources: created by uid with the fields Grafana's API documents.
    let ds: Vec<&Call> = all
        .iter()
        .filter(|c| c.method == "POST" && c.path == "/api/datasources")
        .collect();
    assert_eq!(ds.len(), 2, "{ds:?}");
    let prom = &ds
        .iter()
        .find(|c| c.body["type"] == "prometheus")
        .unwrap()
        .body;
    assert_eq!(prom["uid"], "appliance");
    assert_eq!(prom["name"], "Appliance");
    assert_eq!(prom["access"], "proxy");
    assert_eq!(prom["url"], "http://mon.example:8080/appliance");
    let am = &ds
        .iter()
        .find(|c| c.body["type"] == "alertmanager")
        .unwrap()
        .body;
    assert_eq!(am["jsonData"]["implementation"], "prometheus");
    assert_eq!(am["url"], "http://mon.example:8080/appliance");
    // The folder, then dashboards into it, overwriting.
    let folder = all
        .iter()
        .find(|c| c.method == "POST" && c.path == "/api/folders")
        .expect("folder created");
    assert_eq!(folder.body["uid"], "appliance");
    assert_eq!(folder.body["title"], "Monitoring");
    for b in dashboards_pushed(&calls) {
        assert_eq!(b["folderUid"], "appliance");
        assert_eq!(b["overwrite"], true);
        assert!(b["dashboard"]["id"].is_null());
        assert!(b["dashboard"]["title"].is_string());
        let text = b["dashboard"].to_string();
        assert!(!text.contains("${datasource}"), "{text}");
        assert!(text.contains(r#""uid":"appliance""#));
    }

    // Status page and metrics report each item; no secret anywhere.
    let status = get_json(&addr, "/api/v1/status/grafana");
    let items = status["data"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 2 + 1 + 7, "{status}");
    assert!(items.iter().all(|i| i["result"] == "ok"), "{status}");
    let (_, metrics) = get(&addr, "/metrics").unwrap();
    assert!(
        metrics.contains(
            "appliance_grafana_sync_items_total{kind=\"dashboard\",result=\"success\"} 7"
        ),
        "{metrics}"
    );

    // A dashboard file changes; a reload pushes it again.
    let before = dashboards_pushed(&calls).len();
    std::fs::write(
        dash_dir.join("extra.json"),
        EXTRA.replace("Team extra", "Team extra v2"),
    )
    .unwrap();
    let (code, body) = request(&addr, "POST", "/-/reload", "").unwrap();
    assert_eq!(code, 200, "{body}");
    wait_for(30, "the changed dashboard pushed again", || {
        dashboards_pushed(&calls)
            .iter()
            .skip(before)
            .any(|b| b["dashboard"]["title"] == "Team extra v2")
            .then_some(())
    });

    for path in [
        "/api/v1/status/grafana",
        "/api/v1/status/config",
        "/metrics",
    ] {
        let (_, body) = get(&addr, path).unwrap();
        assert!(!body.contains(password), "{path} shows the password");
    }
    let log = std::fs::read_to_string(dir.path().join("appliance.log")).unwrap();
    assert!(!log.contains(password), "the log shows the password");
    assert!(log.contains("pushed to Grafana"), "{log}");
}

#[test]
fn a_dashboard_file_change_is_pushed_without_a_reload_and_failures_are_retried() {
    // Grafana refuses a few times (backing off 0.5, 1, 2, 4, 8 s), then answers.
    let (grafana, calls) = grafana_stand_in(5);
    let dir = tempfile::tempdir().unwrap();
    let dash_dir = dir.path().join("dashboards");
    std::fs::create_dir_all(&dash_dir).unwrap();
    std::fs::write(dash_dir.join("extra.json"), EXTRA).unwrap();
    let (_app, addr) = appliance_with_config(
        dir.path(),
        &format!(
            "web: {{dashboards_dir: {}}}\n\
             collectors: {{containers: {{enabled: false}}, postgres: {{enabled: false}}, redis: {{enabled: false}}, celery: {{enabled: false}}}}\n\
             grafana: {{url: 'http://{grafana}', api_token: glsa_token_123, prometheus_url: 'http://prometheus:9090'}}\n",
            dash_dir.display()
        ),
    );
    wait_for(90, "dashboards pushed after Grafana came up", || {
        (dashboards_pushed(&calls).len() >= 7).then_some(())
    });
    let all = calls.lock().unwrap().clone();
    assert!(all
        .iter()
        .all(|c| c.authorization == "Bearer glsa_token_123"));
    let prom = all
        .iter()
        .find(|c| c.path == "/api/datasources" && c.body["type"] == "prometheus")
        .unwrap();
    assert_eq!(prom.body["url"], "http://prometheus:9090");
    let (_, metrics) = get(&addr, "/metrics").unwrap();
    assert!(
        metrics.contains("appliance_grafana_sync_runs_total{result=\"failure\"}"),
        "{metrics}"
    );

    let before = dashboards_pushed(&calls).len();
    std::fs::write(
        dash_dir.join("extra.json"),
        EXTRA.replace("Team extra", "Team extra v3"),
    )
    .unwrap();
    wait_for(30, "the changed dashboard pushed without a reload", || {
        dashboards_pushed(&calls)
            .iter()
            .skip(before)
            .any(|b| b["dashboard"]["title"] == "Team extra v3")
            .then_some(())
    });
    // Only what changed went again.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let again: Vec<Value> = dashboards_pushed(&calls).into_iter().skip(before).collect();
    assert_eq!(again.len(), 1, "{again:?}");
    let status = get_json(&addr, "/api/v1/status/grafana");
    assert!(status["data"]["lastSuccess"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
}

#[test]
fn grafana_provision_writes_the_datasources_provider_and_every_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let dash_dir = dir.path().join("mine");
    std::fs::create_dir_all(&dash_dir).unwrap();
    std::fs::write(dash_dir.join("extra.json"), EXTRA).unwrap();
    std::fs::write(
        dir.path().join("appliance.yml"),
        format!(
            "web: {{external_url: 'https://mon.example/appliance/', dashboards_dir: {}, auth: {{protect_reads: true, read_tokens: [grafana-read-token]}}}}\n",
            dash_dir.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("provisioning");
    let (code, text) = run_cli(
        dir.path(),
        &[
            "grafana",
            "provision",
            "--dir",
            out.to_str().unwrap(),
            "--config",
            "appliance.yml",
            "--dashboards-path",
            "/etc/grafana/provisioning/dashboards/appliance",
        ],
    );
    assert_eq!(code, 0, "{text}");
    let ds: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(out.join("datasources/appliance.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(ds["apiVersion"], 1);
    assert_eq!(ds["datasources"][0]["url"], "https://mon.example/appliance");
    assert_eq!(
        ds["datasources"][0]["secureJsonData"]["httpHeaderValue1"],
        "Bearer grafana-read-token"
    );
    let provider: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(out.join("dashboards/appliance.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        provider["providers"][0]["options"]["path"],
        "/etc/grafana/provisioning/dashboards/appliance"
    );
    let mut uids: Vec<String> = std::fs::read_dir(out.join("dashboards/appliance"))
        .unwrap()
        .flatten()
        .map(|e| {
            let v: Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            assert!(!v.to_string().contains("${datasource}"));
            v["uid"].as_str().unwrap().to_string()
        })
        .collect();
    uids.sort();
    let mut want = shipped_uids();
    want.push("team-extra".into());
    want.sort();
    assert_eq!(uids, want);

    // --prometheus-url points the metrics datasource at a real Prometheus, without the token.
    let (code, text) = run_cli(
        dir.path(),
        &[
            "grafana",
            "provision",
            "--dir",
            out.to_str().unwrap(),
            "--config",
            "appliance.yml",
            "--prometheus-url",
            "http://prometheus:9090",
        ],
    );
    assert_eq!(code, 0, "{text}");
    let ds: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(out.join("datasources/appliance.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(ds["datasources"][0]["url"], "http://prometheus:9090");
    assert!(ds["datasources"][0].get("secureJsonData").is_none());
}

#[test]
fn the_compose_stack_wires_remote_write_and_grafana_and_its_config_checks() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/compose");
    let compose: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(root.join("docker-compose.yml")).unwrap())
            .unwrap();
    let services = &compose["services"];
    for s in ["appliance", "prometheus", "grafana"] {
        assert!(services[s].is_object(), "service {s}");
    }
    let prom_cmd = services["prometheus"]["command"].to_string();
    assert!(
        prom_cmd.contains("--web.enable-remote-write-receiver"),
        "{prom_cmd}"
    );
    assert!(services["appliance"]["volumes"]
        .to_string()
        .contains("./appliance.yml:/etc/appliance/appliance.yml"));
    assert_eq!(
        services["appliance"]["build"]["dockerfile"],
        "packaging/container/Dockerfile.source"
    );
    assert!(root.join("../container/Dockerfile.source").is_file());
    // The appliance's config there points remote write at that Prometheus and Grafana at that
    // Grafana, and passes the config check.
    let text = std::fs::read_to_string(root.join("appliance.yml")).unwrap();
    assert!(text.contains("url: http://prometheus:9090/api/v1/write"));
    assert!(text.contains("url: http://grafana:3000"));
    let out = Command::new(env!("CARGO_BIN_EXE_appliance"))
        .args(["check", "config"])
        .arg(root.join("appliance.yml"))
        .env("GRAFANA_ADMIN_PASSWORD", "x")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
