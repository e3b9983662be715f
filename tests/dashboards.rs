//! The six dashboards in `dashboards/`: valid Grafana dashboard JSON in the current schema
//! (stable uid, a datasource variable so they import anywhere, known panel types, a sane grid),
//! every query parses and runs on a live appliance, and every metric name a query uses is one
//! the appliance's collectors (or the services' own instrumentation) produce.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use promql_parser::parser::Expr;

fn dashboards() -> BTreeMap<String, serde_json::Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            out.insert(p.file_name().unwrap().to_string_lossy().into_owned(), v);
        }
    }
    out
}

/// Every (panel title, expr) of a dashboard.
fn exprs(d: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap_or("").to_string(),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// What Grafana would send: its built-in and the dashboards' variables filled in.
fn substitute(expr: &str) -> String {
    let mut s = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h");
    let re = regex::Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?").unwrap();
    s = re.replace_all(&s, ".*").into_owned();
    s
}

fn metric_names(e: &Expr, out: &mut BTreeSet<String>) {
    match e {
        Expr::VectorSelector(vs) => {
            if let Some(n) = &vs.name {
                out.insert(n.clone());
            }
        }
        Expr::MatrixSelector(m) => {
            if let Some(n) = &m.vs.name {
                out.insert(n.clone());
            }
        }
        Expr::Aggregate(a) => {
            metric_names(&a.expr, out);
            if let Some(p) = &a.param {
                metric_names(p, out);
            }
        }
        Expr::Unary(u) => metric_names(&u.expr, out),
        Expr::Binary(b) => {
            metric_names(&b.lhs, out);
            metric_names(&b.rhs, out);
        }
        Expr::Paren(p) => metric_names(&p.expr, out),
        Expr::Subquery(s) => metric_names(&s.expr, out),
        Expr::Call(c) => {
            for a in &c.args.args {
                metric_names(a, out);
            }
        }
        _ => {}
    }
}

#[test]
fn metric_names_are_found_everywhere_in_a_query() {
    let ast = promql_parser::parser::parse(
        "sum by (x) (rate(a_total[1m])) / on() group_left max(b) + histogram_quantile(0.9, c_bucket) - -d",
    )
    .unwrap();
    let mut names = BTreeSet::new();
    metric_names(&ast, &mut names);
    assert_eq!(
        names,
        ["a_total", "b", "c_bucket", "d"].map(String::from).into()
    );
}

#[test]
fn dashboards_are_valid_grafana_json() {
    let all = dashboards();
    let titles: BTreeSet<&str> = all.values().map(|d| d["title"].as_str().unwrap()).collect();
    assert_eq!(
        titles,
        DASHBOARD_TITLES.into_iter().collect(),
        "the six dashboards"
    );
    let mut uids = BTreeSet::new();
    for (file, d) in &all {
        let uid = d["uid"].as_str().unwrap();
        assert!(
            uid.starts_with("appliance-") && uid.len() <= 40,
            "{file}: uid {uid}"
        );
        assert!(uids.insert(uid.to_string()), "{file}: duplicate uid");
        assert!(
            d["schemaVersion"].as_u64().unwrap() >= 39,
            "{file}: schemaVersion"
        );
        assert!(
            d["id"].is_null(),
            "{file}: id must be null to import anywhere"
        );
        let vars = d["templating"]["list"].as_array().unwrap();
        let ds = vars
            .iter()
            .find(|v| v["type"] == "datasource")
            .unwrap_or_else(|| panic!("{file}: no datasource variable"));
        assert_eq!(ds["query"], "prometheus", "{file}");
        let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());
        let mut ids = BTreeSet::new();
        for p in d["panels"].as_array().unwrap() {
            let title = p["title"].as_str().unwrap();
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{file}: {title}: duplicate id"
            );
            let kind = p["type"].as_str().unwrap();
            assert!(
                ["row", "timeseries", "stat", "gauge", "bargauge", "table"].contains(&kind),
                "{file}: {title}: panel type {kind}"
            );
            let g = &p["gridPos"];
            assert!(
                g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
                "{file}: {title}: grid"
            );
            if kind == "row" {
                continue;
            }
            assert_eq!(p["datasource"]["uid"], ds_ref.as_str(), "{file}: {title}");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file}: {title}: no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], ds_ref.as_str(), "{file}: {title}");
            }
        }
        for v in vars.iter().filter(|v| v["type"] == "query") {
            let q = v["query"]["query"].as_str().unwrap();
            assert!(
                q.starts_with("label_values(") || q.starts_with("query_result("),
                "{file}: variable {}: {q}",
                v["name"]
            );
        }
    }
}

/// Metric names the collectors produce, from their golden pages and live pages, plus the
/// families of collectors whose series need events or targets to appear.
fn known_names(addr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![
        std::fs::read_to_string(root.join("src/collect/testdata/node/golden.prom")).unwrap(),
        std::fs::read_to_string(root.join("src/collect/testdata/containers/golden.prom")).unwrap(),
    ];
    for c in ["node", "postgres", "redis", "appliance"] {
        if let Some((200, p)) = get(addr, &format!("/metrics/{c}")) {
            pages.push(p);
        }
    }
    for page in pages {
        for (name, (kind, _, _, _)) in families(&page) {
            if kind == "histogram" {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
            names.insert(name);
        }
    }
    // Celery (series appear with events; tests/celery.rs checks them live), probes
    // (tests/probes.rs), the scrape loop and rules, and the services' own instrumentation.
    for n in [
        "celery_queue_length",
        "celery_worker_up",
        "celery_worker_tasks_active",
        "celery_workers",
        "celery_task_sent_total",
        "celery_task_received_total",
        "celery_task_started_total",
        "celery_task_succeeded_total",
        "celery_task_failed_total",
        "celery_task_retried_total",
        "celery_task_rejected_total",
        "celery_task_revoked_total",
        "celery_task_runtime_seconds_bucket",
        "probe_success",
        "probe_duration_seconds",
        "probe_http_duration_seconds",
        "probe_ssl_earliest_cert_expiry",
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "ALERTS",
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_request_duration_seconds_sum",
        "http_request_duration_seconds_count",
    ] {
        names.insert(n.to_string());
    }
    names
}

#[test]
fn every_query_parses_runs_and_uses_known_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let pg = local_postgres();
    let (_app, addr) = appliance_with_config(
        dir.path(),
        &format!(
            "global: {{scrape_interval: 1s}}\ncollectors: {{containers: {{enabled: false}}, postgres: {{enabled: {pg}}}, redis: {{enabled: {pg}}}}}\n"
        ),
    );
    let known = known_names(&addr);
    let mut checked = 0;
    for (file, d) in dashboards() {
        for (panel, expr) in exprs(&d) {
            let q = substitute(&expr);
            let ast = promql_parser::parser::parse(&q)
                .unwrap_or_else(|e| panic!("{file}: {panel}: {q}: {e}"));
            let mut names = BTreeSet::new();
            metric_names(&ast, &mut names);
            for n in names {
                assert!(known.contains(&n), "{file}: {panel}: unknown metric {n}");
            }
            let v = get_json(
                &addr,
                &format!(
                    "/api/v1/query?query={}",
                    form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
                ),
            );
            assert_eq!(v["status"], "success", "{file}: {panel}: {q}: {v}");
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} queries");
    eprintln!("{checked} dashboard queries parse, run and use known metric names");
}

/// Issue 18: `web.dashboards_dir` is relative to the config file (as `rule_files` are), not to
/// the working directory, and a reload that points it elsewhere is followed; `/d/<uid>` (a
/// Grafana link) leads to the dashboard in the UI.
#[test]
fn the_dashboards_dir_is_relative_to_the_config_and_follows_a_reload() {
    let conf = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    for (sub, uid) in [("one", "first-board"), ("two", "second-board")] {
        std::fs::create_dir_all(conf.path().join(sub)).unwrap();
        std::fs::write(
            conf.path().join(sub).join("d.json"),
            format!(r#"{{"uid": "{uid}", "title": "{uid}", "panels": []}}"#),
        )
        .unwrap();
    }
    let cfg = conf.path().join("appliance.yml");
    let write = |sub: &str| {
        std::fs::write(
            &cfg,
            format!("web: {{dashboards_dir: {sub}}}\ncollectors: {{node: {{enabled: false}}, containers: {{enabled: false}}, postgres: {{enabled: false}}, redis: {{enabled: false}}, celery: {{enabled: false}}}}\n"),
        )
        .unwrap()
    };
    write("one");
    let addr = format!("127.0.0.1:{}", free_port());
    let _app = appliance(cwd.path(), Some(&cfg), &addr);
    wait_ready(&addr);
    let uids = || -> Vec<String> {
        get_json(&addr, "/api/v1/ui/dashboards")["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["uid"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(uids().contains(&"first-board".to_string()), "{:?}", uids());
    write("two");
    let (code, _) = request(&addr, "POST", "/-/reload", "").unwrap();
    assert_eq!(code, 200);
    let now = uids();
    assert!(now.contains(&"second-board".to_string()), "{now:?}");
    assert!(!now.contains(&"first-board".to_string()), "{now:?}");

    let (code, head, _) = request_with(
        &addr,
        "GET",
        "/d/second-board/second-board?orgId=1&var-job=api&var-job=web&from=now-3h&to=now",
        &format!("Authorization: {}\r\n", admin_basic_auth()),
        "",
    )
    .unwrap();
    assert!((300..400).contains(&code), "{code} {head}");
    assert!(
        head.contains("location: ../../#/dashboards/second-board?var-job=api&var-job=web&range=3h"),
        "{head}"
    );
}
