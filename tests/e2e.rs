//! The binary end to end: default config, a real node_exporter, reload, check config.

mod common;

use common::*;
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn embedded_default_is_ready_and_scrapes_itself() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let _app = appliance(dir.path(), None, &addr);
    wait_ready(&addr);
    let (code, body) = get(&addr, "/-/healthy").unwrap();
    assert_eq!(code, 200, "{body}");
    // The self target is already up when /-/ready first answers.
    let v = get_json(&addr, "/api/v1/targets");
    let active = v["data"]["activeTargets"].as_array().unwrap();
    let target = active
        .iter()
        .find(|t| t["labels"]["job"] == "appliance")
        .unwrap()
        .clone();
    assert_eq!(target["health"], "up", "{target}");
    assert_eq!(target["lastError"], "");
    let v = get_json(&addr, "/api/v1/series?match[]=appliance_tsdb_head_series");
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"][0]["job"], "appliance");
    let (code, metrics) = get(&addr, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("appliance_http_request_duration_seconds"),
        "{metrics}"
    );
    let (code, own) = get(&addr, "/metrics/appliance").unwrap();
    assert_eq!(code, 200);
    assert!(own.contains("appliance_config_last_reload_successful"));
    assert!(dir.path().join("data").is_dir());
}

#[test]
fn node_exporter_is_scraped_and_goes_stale_when_stopped() {
    let ne_port = free_port();
    let Some(mut ne) = node_exporter(ne_port) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "appliance.yml",
        &format!("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\ncollectors:\n  appliance:\n    enabled: false\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{ne_port}']\n"),
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let _app = appliance(dir.path(), Some(&cfg), &addr);
    wait_ready(&addr);
    let series = wait_for(10, "node_cpu_seconds_total series", || {
        let v = get_json(&addr, "/api/v1/series?match[]=node_cpu_seconds_total");
        v["data"].as_array().filter(|a| !a.is_empty()).cloned()
    });
    for s in &series {
        assert_eq!(s["job"], "node");
        assert_eq!(s["instance"], format!("127.0.0.1:{ne_port}"));
        assert!(s["cpu"].is_string() && s["mode"].is_string());
    }
    let meta = get_json(
        &addr,
        "/api/v1/targets/metadata?metric=node_cpu_seconds_total",
    );
    assert_eq!(meta["data"][0]["type"], "counter", "{meta}");
    drop(ne.0.kill());
    let _ = ne.0.wait();
    let t = wait_for(10, "node target down", || {
        let v = get_json(&addr, "/api/v1/targets");
        // Other built-in targets (containers, when Docker answers) may be listed too.
        let t = v["data"]["activeTargets"]
            .as_array()?
            .iter()
            .find(|t| t["labels"]["job"] == "node")?
            .clone();
        (t["health"] == "down").then_some(t)
    });
    assert!(
        t["lastError"].as_str().unwrap().contains("127.0.0.1"),
        "{t}"
    );
    // Through PromQL: `up` is 0 and the node series are stale, so an instant query finds none.
    let v = wait_for(10, "up 0 through the query API", || {
        let v = get_json(&addr, "/api/v1/query?query=up%7Bjob%3D%22node%22%7D");
        (v["data"]["result"][0]["value"][1] == "0").then_some(v)
    });
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1);
    let v = get_json(&addr, "/api/v1/query?query=node_cpu_seconds_total");
    assert_eq!(
        v["data"]["result"].as_array().unwrap().len(),
        0,
        "stale series must not answer: {v}"
    );
    // Stored series are kept (the samples before the stop are not lost).
    let v = get_json(&addr, "/api/v1/series?match[]=node_cpu_seconds_total");
    assert_eq!(v["data"].as_array().unwrap().len(), series.len());
}

#[test]
fn check_config_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("unknown-key.yml", "global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: a\n    static_config:\n      - targets: ['x:1']\n", ":5:", "static_config"),
        ("bad-duration.yml", "global:\n  scrape_interval: 15s\n  scrape_timeout: 10 s\n", ":3:", "global.scrape_timeout"),
        ("bad-regex.yml", "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - source_labels: [x]\n        regex: 'a[b'\n        target_label: y\n", ":5:", "regex"),
    ];
    for (name, text, line, key) in cases {
        let p = write(dir.path(), name, text);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_appliance"))
            .args(["check", "config"])
            .arg(&p)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} must fail");
        assert!(err.contains(&format!("{name}{line}")), "{name}: {err}");
        assert!(err.contains(key), "{name}: {err}");
    }
    let good = write(dir.path(), "good.yml", "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['localhost:9100']\n");
    run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_appliance"))
            .args(["check", "config"])
            .arg(&good),
    );
}

#[test]
fn bad_reload_keeps_the_running_config() {
    let dir = tempfile::tempdir().unwrap();
    let good = "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: first\n    static_configs:\n      - targets: ['127.0.0.1:1']\n";
    let cfg = write(dir.path(), "appliance.yml", good);
    let addr = format!("127.0.0.1:{}", free_port());
    let app = appliance(dir.path(), Some(&cfg), &addr);
    wait_ready(&addr);
    let pools = || -> Vec<String> {
        let v = get_json(&addr, "/api/v1/targets");
        v["data"]["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["scrapePool"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(pools().contains(&"first".to_string()));
    // A broken file: SIGHUP leaves the old config serving and the gauge at 0.
    write(
        dir.path(),
        "appliance.yml",
        "global:\n  scrape_interval: forever\n",
    );
    let st = std::process::Command::new("kill")
        .args(["-HUP", &app.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    wait_for(10, "reload failure gauge", || {
        get(&addr, "/metrics")
            .filter(|(_, b)| b.contains("appliance_config_last_reload_successful 0"))
    });
    assert!(pools().contains(&"first".to_string()));
    let (code, body) = request(&addr, "POST", "/-/reload", "").unwrap();
    assert_eq!(code, 500);
    assert!(body.contains("appliance.yml:2"), "{body}");
    // A good file through POST /-/reload applies the new targets.
    write(
        dir.path(),
        "appliance.yml",
        &good.replace("first", "second"),
    );
    let (code, body) = request(&addr, "POST", "/-/reload", "").unwrap();
    assert_eq!(code, 200, "{body}");
    let p = pools();
    assert!(
        p.contains(&"second".to_string()) && !p.contains(&"first".to_string()),
        "{p:?}"
    );
    assert!(get(&addr, "/metrics")
        .unwrap()
        .1
        .contains("appliance_config_last_reload_successful 1"));
    let v = get_json(&addr, "/api/v1/status/runtimeinfo");
    assert_eq!(v["data"]["reloadConfigSuccess"], true);
}

#[test]
fn api_errors_match_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let _app = appliance(dir.path(), None, &addr);
    wait_ready(&addr);
    let (code, body) = get(&addr, "/api/v1/series").unwrap();
    assert_eq!(code, 400);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["errorType"], "bad_data");
    assert_eq!(v["error"], "no match[] parameter provided");
    let (code, body) = get(&addr, "/api/v1/series?match[]=up&start=foo").unwrap();
    assert_eq!(code, 400);
    assert!(
        body.contains(
            "invalid parameter \\\"start\\\": Invalid time value for 'start': cannot parse \\\"foo\\\" to a valid timestamp"
        ),
        "{body}"
    );
    let (code, _) = get(&addr, "/api/v1/series?match[]=up{").unwrap();
    assert_eq!(code, 400);
    let (code, body) = request(
        &addr,
        "POST",
        "/api/v1/series",
        "match[]=up&start=2020-01-01T00:00:00Z",
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let v = get_json(&addr, "/api/v1/status/buildinfo");
    assert_eq!(v["data"]["version"], env!("CARGO_PKG_VERSION"));
    let v = get_json(&addr, "/api/v1/status/flags");
    assert!(v["data"]["listen"].is_string());
    let v = get_json(&addr, "/api/v1/labels?limit=1");
    if v["data"].as_array().map(|a| a.len()).unwrap_or(0) == 1 {
        // Either there is one label name, or the result was truncated with a warning.
        assert!(v["warnings"].is_null() || v["warnings"][0] == "results truncated due to limit");
    }
}

#[test]
fn query_api_answers_like_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let _app = appliance(dir.path(), None, &addr);
    wait_ready(&addr);
    let v = get_json(&addr, "/api/v1/query?query=up");
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"][0]["metric"]["job"], "appliance");
    assert_eq!(v["data"]["result"][0]["value"][1], "1");
    let v = get_json(&addr, "/api/v1/query?query=1%2B1&time=1700000000.5");
    assert_eq!(v["data"]["resultType"], "scalar");
    assert_eq!(v["data"]["result"][1], "2");
    assert_eq!(v["data"]["result"][0].as_f64(), Some(1_700_000_000.5));
    let now = chrono::Utc::now().timestamp();
    let v = get_json(
        &addr,
        &format!(
            "/api/v1/query_range?query=up&start={}&end={}&step=1",
            now - 10,
            now + 1
        ),
    );
    assert_eq!(v["data"]["resultType"], "matrix", "{v}");
    assert!(!v["data"]["result"][0]["values"]
        .as_array()
        .unwrap()
        .is_empty());
    let (code, body) = get(&addr, "/api/v1/query?query=sum(").unwrap();
    assert_eq!(code, 400, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["errorType"], "bad_data");
    let (code, body) = get(
        &addr,
        "/api/v1/query_range?query=up&start=0&end=100000&step=1",
    )
    .unwrap();
    assert_eq!(code, 400);
    assert!(
        body.contains("exceeded maximum resolution of 11,000 points per timeseries"),
        "{body}"
    );
    let (code, body) = request(&addr, "POST", "/api/v1/query", "query=rate(up%5B5m%5D)").unwrap();
    assert_eq!(code, 200, "{body}");
    let v = get_json(
        &addr,
        "/api/v1/format_query?query=sum(rate(up%5B5m%5D))by(job)",
    );
    assert_eq!(v["data"], "sum by (job) (rate(up[5m]))");
}

/// An appliance on its own metrics only, scraped every second, ready.
fn self_scraping_every_second() -> (tempfile::TempDir, std::path::PathBuf, String, Proc) {
    let dir = tempfile::tempdir().unwrap();
    let (app, addr) = appliance_with_config(
        dir.path(),
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n",
    );
    let cfg = dir.path().join("appliance.yml");
    (dir, cfg, addr, app)
}

#[test]
fn samples_survive_kill_minus_nine() {
    let (dir, cfg, addr, mut app) = self_scraping_every_second();
    wait_for(15, "several scrapes", || {
        let v = get_json(&addr, "/api/v1/query?query=count_over_time(up%5B1m%5D)");
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|n| *n >= 4.0)
    });
    // Two seconds back is outside the 1 s sync window: all of it must survive.
    let t = chrono::Utc::now().timestamp_millis() - 2000;
    let q = format!(
        "/api/v1/query?query=count_over_time(up%5B1m%5D)&time={}.{:03}",
        t / 1000,
        t % 1000
    );
    let before = get_json(&addr, &q)["data"]["result"][0]["value"][1].clone();
    std::process::Command::new("kill")
        .args(["-9", &app.pid().to_string()])
        .status()
        .unwrap();
    let _ = app.0.wait();
    let _app2 = appliance(dir.path(), Some(&cfg), &addr);
    wait_ready(&addr);
    let after = get_json(&addr, &q)["data"]["result"][0]["value"][1].clone();
    assert_eq!(
        after, before,
        "samples older than the sync window were lost"
    );
    assert!(dir.path().join("data/wal").is_dir());
}

#[test]
fn tsdb_import_and_analyze() {
    let dir = tempfile::tempdir().unwrap();
    let om = "# TYPE m counter\nm_total{a=\"1\"} 1 100\nm_total{a=\"1\"} 2 115\nm_total{a=\"2\"} 5 100\n# TYPE g gauge\ng 7 100\n# EOF\n";
    let f = write(dir.path(), "in.om", om);
    let bin = env!("CARGO_BIN_EXE_appliance");
    let data = dir.path().join("data");
    let out = std::process::Command::new(bin)
        .args(["tsdb", "import", "openmetrics"])
        .arg(&f)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 4 samples"));
    let out = std::process::Command::new(bin)
        .args(["tsdb", "analyze", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("Series: 3"), "{text}");
    assert!(text.contains("2 m_total"), "{text}");
    // A sample without a timestamp is refused with its line.
    let bad = write(dir.path(), "bad.om", "m 1\n# EOF\n");
    let out = std::process::Command::new(bin)
        .args(["tsdb", "import", "openmetrics"])
        .arg(&bad)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.om:1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn graceful_stop_persists_stale_markers() {
    let (dir, cfg, addr, mut app) = self_scraping_every_second();
    wait_for(10, "a scrape", || {
        get_json(&addr, "/api/v1/query?query=up")["data"]["result"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|_| ())
    });
    std::process::Command::new("kill")
        .args(["-TERM", &app.pid().to_string()])
        .status()
        .unwrap();
    assert!(app.0.wait().unwrap().success());
    let stopped = chrono::Utc::now().timestamp_millis();
    let _app2 = appliance(dir.path(), Some(&cfg), &addr);
    wait_ready(&addr);
    // Right after the stop the self target's series are stale, so `up` has no value there.
    let v = get_json(
        &addr,
        &format!(
            "/api/v1/query?query=up&time={}.{:03}",
            stopped / 1000,
            stopped % 1000
        ),
    );
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 0, "{v}");
}

/// Issue 18: logs to a file or journald (stderr not a terminal) are plain text: no ANSI
/// colour codes around levels and fields.
#[test]
fn logs_are_plain_text_when_not_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let (app, addr) = appliance_with_config(
        dir.path(),
        "scrape_configs:\n  - job_name: gone\n    scrape_interval: 1s\n    static_configs: [{targets: ['127.0.0.1:9']}]\n",
    );
    wait_for(20, "a scrape failure logged", || {
        let log = std::fs::read_to_string(dir.path().join("appliance.log")).ok()?;
        (log.contains("INFO") && get(&addr, "/-/ready").is_some()).then_some(())
    });
    drop(app);
    let log = std::fs::read_to_string(dir.path().join("appliance.log")).unwrap();
    assert!(
        !log.contains('\u{1b}'),
        "ANSI codes in a log that is not a terminal:\n{log}"
    );
}

/// Native histograms through the whole path: scraped from protobuf, summed by a recording
/// rule (stored as a histogram), alerted on with `histogram_quantile`, and returned by the
/// range API under `histograms`.
#[test]
fn native_histograms_flow_through_rules_alerts_and_the_api() {
    use appliance::model::exposition::protobuf::encode_delimited;
    use appliance::testsupport::native_histogram_family;
    let dir = tempfile::tempdir().unwrap();
    let target = static_bytes_server(vec![(
        "/metrics",
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
        encode_delimited(&[native_histogram_family("rpc_seconds", 10)]),
    )]);
    write(
        dir.path(),
        "rules.yml",
        r#"groups:
  - name: h
    interval: 1s
    rules:
      - record: job:rpc_seconds:sum
        expr: sum by (job) (rpc_seconds)
      - alert: RpcSlow
        expr: histogram_quantile(0.9, job:rpc_seconds:sum) > 0
        annotations: {summary: "p90 {{ $value }}"}
"#,
    );
    let (_app, addr) = appliance_with_config(
        dir.path(),
        &format!(
            "rule_files: [rules.yml]\nscrape_configs:\n  - job_name: rpc\n    scrape_interval: 1s\n    scrape_native_histograms: true\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    );
    let recorded = wait_for(30, "the recorded histogram", || {
        let v = get_json(&addr, "/api/v1/query?query=job:rpc_seconds:sum");
        let r = v["data"]["result"][0].clone();
        (!r["histogram"].is_null()).then_some(r)
    });
    assert_eq!(recorded["metric"]["job"], "rpc");
    assert_eq!(recorded["histogram"][1]["count"], "10");
    let firing = wait_for(30, "the alert on a histogram quantile", || {
        let v = get_json(&addr, "/api/v1/alerts");
        let a = v["data"]["alerts"][0].clone();
        (a["state"] == "firing").then_some(a)
    });
    assert_eq!(firing["labels"]["alertname"], "RpcSlow");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let range = get_json(
        &addr,
        &format!(
            // The end a little ahead: `now` in whole seconds may be before the first sample.
            "/api/v1/query_range?query=job:rpc_seconds:sum&start={}&end={}&step=1",
            now - 30,
            now + 5
        ),
    );
    let series = &range["data"]["result"][0];
    assert_eq!(range["status"], "success", "{range}");
    assert!(series["values"].is_null(), "{series}");
    assert!(
        series["histograms"]
            .as_array()
            .is_some_and(|h| !h.is_empty()),
        "{series}"
    );
}
