//! The web UI end to end: `web/tests/browser.mjs` drives Debian's Chromium (playwright-core)
//! through login, every page, Explore, the six dashboards with live data, silencing from the
//! Alerts page and the Silences form, at the root and under a sub-path. Screenshots go to
//! `target/ui-screenshots/<case>/` (kept as artifacts, not committed). Also: how the bundle
//! is served (gzip, ETag, 304) and what it weighs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn web() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// Node, Chromium and playwright-core (from `npm ci` in web/), or skip (fail under CI).
fn browser_available() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    available(
        node && Path::new("/usr/bin/chromium").exists()
            && web().join("node_modules/playwright-core").exists(),
        "node, /usr/bin/chromium and web/node_modules/playwright-core (the test command installs them)",
    )
}

const SERVICE: &str = "# TYPE http_requests_total counter
http_requests_total{handler=\"/api/orders\",method=\"GET\",status=\"200\"} 1200
http_requests_total{handler=\"/api/orders\",method=\"GET\",status=\"500\"} 7
http_requests_total{handler=\"/health\",method=\"GET\",status=\"200\"} 300
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{handler=\"/api/orders\",le=\"0.05\"} 900
http_request_duration_seconds_bucket{handler=\"/api/orders\",le=\"0.5\"} 1190
http_request_duration_seconds_bucket{handler=\"/api/orders\",le=\"+Inf\"} 1207
http_request_duration_seconds_sum{handler=\"/api/orders\"} 80.5
http_request_duration_seconds_count{handler=\"/api/orders\"} 1207
";

const USER_DASHBOARD: &str = r#"{
  "uid": "my-service", "title": "My service", "schemaVersion": 27, "time": {"from": "now-1h", "to": "now"},
  "templating": {"list": [
    {"name": "status", "type": "custom", "query": "200,500", "multi": true, "includeAll": true,
     "current": {"value": ["$__all"]}},
    {"name": "handler", "type": "query", "datasource": "Prometheus",
     "query": "label_values(http_requests_total{status=~\"$status\"}, handler)", "regex": "/\\/api.*/"}
  ]},
  "panels": [
    {"id": 1, "type": "text", "title": "About", "gridPos": {"x": 0, "y": 0, "w": 8, "h": 3},
     "options": {"content": "Requests for $handler"}},
    {"id": 2, "type": "graph", "title": "Legacy graph", "datasource": "Prometheus", "gridPos": {"x": 8, "y": 0, "w": 16, "h": 8},
     "targets": [{"expr": "sum by (status) (rate(http_requests_total{handler=~\"$handler\",status=~\"$status\"}[$__rate_interval]))", "legendFormat": "{{status}}", "refId": "A"}]},
    {"id": 3, "type": "singlestat", "title": "Legacy stat", "gridPos": {"x": 0, "y": 3, "w": 8, "h": 5},
     "targets": [{"expr": "sum(http_requests_total{status=~\"$status\"})", "refId": "A"}]},
    {"id": 4, "type": "piechart", "title": "Pie", "gridPos": {"x": 0, "y": 8, "w": 8, "h": 6},
     "targets": [{"expr": "http_requests_total", "refId": "A"}]},
    {"id": 5, "type": "stat", "title": "Variables interpolated", "gridPos": {"x": 8, "y": 8, "w": 8, "h": 6},
     "targets": [{"expr": "count(http_requests_total{handler=\"$handler\",status=~\"${status:regex}\"})", "refId": "A"}]},
    {"id": 6, "type": "timeseries", "title": "NaN half the time", "gridPos": {"x": 16, "y": 8, "w": 8, "h": 8},
     "fieldConfig": {"defaults": {"custom": {"fillOpacity": 0}}},
     "targets": [{"expr": "label_replace(vector(2), \"s\", \"steady\", \"\", \"\") or label_replace(vector((time() % 600 > bool 300) / (time() % 600 > bool 300)), \"s\", \"gappy\", \"\", \"\")", "legendFormat": "{{s}}", "refId": "A"}]},
    {"id": 7, "type": "timeseries", "title": "Nothing here", "gridPos": {"x": 0, "y": 14, "w": 12, "h": 5},
     "targets": [{"expr": "rate(nothing_total{handler=\"$handler\"}[5m])", "refId": "A"},
                 {"expr": "up", "refId": "B", "hide": true}]}
  ]
}"#;

const RULES: &str = "groups:
  - name: ui
    interval: 1s
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
        labels: {severity: warning}
        annotations: {summary: the UI silences this one}
";

/// Starts the appliance on `addr` with a service to scrape, a firing alert and the Celery
/// collector on the local broker; `web_yaml` is lines under `web:`.
fn start(dir: &Path, web_yaml: &str, addr: &str, args: &[&str]) -> Proc {
    let svc = static_server(vec![(
        "/metrics",
        "text/plain; version=0.0.4",
        SERVICE.to_string(),
    )]);
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
    let cfg = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s, external_labels: {{site: ui-test}}}}
rule_files: [rules.yml]
scrape_configs:
  - job_name: orders-api
    static_configs: [{{targets: ['{svc}']}}]
notify:
  route: {{receiver: quiet, group_wait: 1s}}
  receivers: [{{name: quiet, webhook_configs: [{{url: 'http://127.0.0.1:9/nobody-listens'}}]}}]
collectors:
  celery: {{enabled: true, broker_url: 'redis://127.0.0.1:6379/0', queues: [celery]}}
  probes: [{{target: 'http://{svc}/metrics', interval: 1s}}]
web:
{web_yaml}"
    );
    let cfg_path = dir.join("appliance.yml");
    std::fs::write(&cfg_path, cfg).unwrap();
    appliance_with_args(dir, Some(&cfg_path), addr, args)
}

fn run_browser(base: &str, case: &str) -> serde_json::Value {
    let shots = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/ui-screenshots")
        .join(case);
    let out = Command::new("node")
        .arg("tests/browser.mjs")
        .arg(base)
        .arg(ADMIN_PASSWORD)
        .arg(&shots)
        .current_dir(web())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser run failed ({case}):\n{stderr}\n{stdout}"
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!("{case}: {report}");
    eprintln!("{case}: screenshots in {}", shots.display());
    report
}

fn check_report(report: &serde_json::Value) {
    let dashboards = report["dashboards"].as_object().unwrap();
    for title in DASHBOARD_TITLES {
        let d = &dashboards
            .get(title)
            .unwrap_or_else(|| panic!("{title} not rendered: {report}"));
        assert!(d["withData"].as_u64().unwrap() > 0, "{title}: {d}");
    }
    let sys = &dashboards["System Overview"];
    for panel in ["Load (1m) per CPU", "File systems", "CPU busy", "Memory"] {
        assert!(
            !sys["noData"].as_array().unwrap().iter().any(|t| t == panel),
            "System Overview: {panel} has no data: {sys}"
        );
    }
    for (title, d) in dashboards {
        assert_eq!(
            d["tablesWithHoles"].as_array().map_or(0, |a| a.len()),
            0,
            "{title}: a merged table has empty cells: {d}"
        );
    }
    assert!(report["exploreSeries"].as_u64().unwrap() > 0);
    assert_eq!(report["consoleErrors"].as_array().unwrap().len(), 0);
}

fn silences(addr: &str, prefix: &str) -> Vec<serde_json::Value> {
    get_json(addr, &format!("{prefix}/api/v2/silences"))
        .as_array()
        .unwrap()
        .clone()
}

fn has_silence(list: &[serde_json::Value], alertname: &str, state: &str) -> bool {
    list.iter().any(|s| {
        s["status"]["state"] == state
            && s["matchers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["name"] == "alertname" && m["value"] == alertname)
    })
}

fn wait_until_scraped(addr: &str, prefix: &str) {
    // The dashboards need a few scrapes of everything before rates have two points.
    wait_for(60, "the service, collectors and alert", || {
        let v = get_json(
            addr,
            &format!("{prefix}/api/v1/query?query=count(rate(http_requests_total%5B1m%5D))%20and%20count(ALERTS%7Balertstate%3D%22firing%22%7D)"),
        );
        (v["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty()))
        .then_some(())
    });
}

#[test]
fn every_page_works_in_chromium() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A user's own dashboard beside the built-in ones: older panel types, a custom
    // multi-value variable, a text panel and a type only Grafana draws.
    let mine = dir.path().join("dashboards");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("mine.json"), USER_DASHBOARD).unwrap();
    // A Compose-labelled container that burns a little CPU, for the Containers dashboard.
    let mut containers = Containers(Vec::new());
    let docker = docker_engine();
    if docker {
        let name = format!("appliance-ui-test-{}", std::process::id());
        let label = "com.docker.compose.service=ui-web";
        containers.run(
            &name,
            &[
                "--label",
                label,
                busybox_image(),
                "sh",
                "-c",
                "while true; do yes > /dev/null & sleep 1; kill $!; done",
            ],
        );
    }
    let addr = format!("127.0.0.1:{}", free_port());
    let _app = start(
        dir.path(),
        &format!("  dashboards_dir: {}\n", mine.display()),
        &addr,
        &[],
    );
    wait_ready(&addr);
    wait_until_scraped(&addr, "");
    // The receiver's webhook has nobody listening: its failure is on the Overview.
    wait_failed_delivery(&addr, 60);
    let report = run_browser(&format!("http://{addr}/"), "root");
    check_report(&report);
    assert_eq!(report["overviewFailingReceivers"], 1, "{report}");
    if docker {
        // With a running container most of the Containers dashboard has data.
        let c = &report["dashboards"]["Containers"];
        assert!(c["withData"].as_u64().unwrap() >= 9, "{c}");
    }
    assert_eq!(report["multiValueUrl"], true, "{report}");
    assert_eq!(report["silencedMarker"], true, "{report}");
    assert_eq!(report["grafanaLink"], true, "{report}");
    let d = &report["dashboards"]["My service"];
    assert_eq!(d["panels"], 7, "{report}");
    assert_eq!(
        report["noDataExplore"], "rate(nothing_total{handler=\"/api/orders\"}[5m])",
        "{report}"
    );
    // One series with NaN for half the range: a gap in it, the other drawn (issue 18).
    assert!(
        report["exploreNaN"]["gappy"]["gap"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(
        report["dashboardNaN"]["steady"]["inked"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(d["withData"].as_u64().unwrap() >= 3, "{d}");
    let list = silences(&addr, "");
    assert!(has_silence(&list, "AlwaysFiring", "active"), "{list:?}");
    assert!(has_silence(&list, "FromTheForm", "expired"), "{list:?}");
    let alert = get_json(
        &addr,
        "/api/v2/alerts?filter=alertname%3D%22AlwaysFiring%22",
    );
    assert_eq!(alert[0]["status"]["state"], "suppressed", "{alert}");
    eprintln!(
        "Overview interactive after login: {} ms",
        report["overviewInteractiveMs"]
    );
}

#[test]
fn the_ui_works_under_a_sub_path() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    // Prometheus's flag, as a user moving from Prometheus would pass it.
    let _app = start(
        dir.path(),
        "  enable_admin_api: true\n",
        &addr,
        &[&format!(
            "--web.external-url=http://{addr}/monitoring/appliance/"
        )],
    );
    let prefix = "/monitoring/appliance";
    wait_for(30, "ready under the prefix", || {
        get(&addr, &format!("{prefix}/-/ready")).filter(|(c, _)| *c == 200)
    });
    wait_until_scraped(&addr, prefix);
    let report = run_browser(&format!("http://{addr}{prefix}/"), "sub-path");
    check_report(&report);
    assert!(has_silence(
        &silences(&addr, prefix),
        "AlwaysFiring",
        "active"
    ));
}

#[test]
fn the_ui_works_behind_a_proxy_that_strips_the_prefix() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let proxy = stripping_proxy("/tools/monitor", addr.clone());
    // The browser sees the proxy's URL; the appliance answers at its root.
    let _app = start(
        dir.path(),
        &format!("  external_url: http://{proxy}/tools/monitor/\n  route_prefix: /\n"),
        &addr,
        &[],
    );
    wait_ready(&addr);
    wait_until_scraped(&addr, "");
    let report = run_browser(&format!("http://{proxy}/tools/monitor/"), "proxy");
    check_report(&report);
    assert!(has_silence(&silences(&addr, ""), "AlwaysFiring", "active"));
}

#[test]
fn the_bundle_is_served_compressed_with_etags_and_is_small() {
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) = appliance_with_config(
        dir.path(),
        "collectors:\n  containers: {enabled: false}\n  postgres: {enabled: false}\n  redis: {enabled: false}\n",
    );
    let (code, head, plain) = request_with(&addr, "GET", "/assets/app.js", "", "").unwrap();
    assert_eq!(code, 200);
    assert!(
        head.contains("content-type: text/javascript")
            || head.contains("content-type: application/javascript"),
        "{head}"
    );
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("an ETag")
        .to_string();
    let (code, head, _) = request_with(
        &addr,
        "GET",
        "/assets/app.js",
        "Accept-Encoding: gzip, deflate\r\n",
        "",
    )
    .unwrap();
    assert_eq!(code, 200);
    assert!(head.contains("content-encoding: gzip"), "{head}");
    let (code, _, _) = request_with(
        &addr,
        "GET",
        "/assets/app.js",
        &format!("If-None-Match: {etag}\r\n"),
        "",
    )
    .unwrap();
    assert_eq!(code, 304);
    let (code, head, _) = request_with(&addr, "GET", "/assets/app.css", "", "").unwrap();
    assert_eq!(code, 200);
    assert!(head.contains("content-type: text/css"), "{head}");
    let (code, _, _) = request_with(&addr, "GET", "/assets/nope.js", "", "").unwrap();
    assert_eq!(code, 404);

    // Page weight: everything the UI loads, gzipped.
    let gz: u64 = ["app.js.gz", "app.css.gz"]
        .iter()
        .map(|f| {
            std::fs::metadata(web().join("dist/assets").join(f))
                .unwrap()
                .len()
        })
        .sum();
    eprintln!(
        "UI bundle: {} bytes of JavaScript uncompressed, {gz} bytes gzipped (js + css)",
        plain.len()
    );
    assert!(gz < 200 * 1024, "the UI bundle grew to {gz} bytes gzipped");

    // The dashboards the UI lists are the six in dashboards/.
    let v = get_json(&addr, "/api/v1/ui/dashboards");
    assert_eq!(v["data"].as_array().unwrap().len(), 6, "{v}");
    let d = get_json(&addr, "/api/v1/ui/dashboards/appliance-system-overview");
    assert_eq!(d["data"]["title"], "System Overview");
    let (code, _, _) = request_with(&addr, "GET", "/api/v1/ui/dashboards/nope", "", "").unwrap();
    assert_eq!(code, 404);
}

include!("../web/source_hash.rs");

#[test]
fn the_committed_bundle_matches_its_sources() {
    // build.rs rebuilds a stale bundle where Node is installed; a commit must carry the
    // bundle built from its own sources, or users without Node get an old UI.
    let recorded = std::fs::read_to_string(web().join("dist/.source-hash")).unwrap();
    assert_eq!(
        source_hash(&web()),
        recorded.trim(),
        "web/dist is stale: run `node web/build.mjs` (or cargo build) and commit web/dist"
    );
}

#[test]
fn ui_logic_unit_tests_pass() {
    // Interpolation, table merging, units, completion, error positions, silence matchers.
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available(
        node && web().join("node_modules/preact").exists(),
        "node and web/node_modules",
    ) {
        return;
    }
    let out = Command::new("node")
        .args(["--test", "tests/unit.test.mjs"])
        .current_dir(web())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
