//! `appliance test rules` and `appliance check rules` over Prometheus's own promtool fixtures
//! (`../shared/testdata/rules/promtool/`), file by file, with the outcomes its FORMAT.md lists.

mod common;

use common::run_cli as run;

use std::path::Path;
use std::process::Command;

/// Cases whose expected outcome needs what the appliance does not have yet; each with its
/// reason. A listed case that starts passing fails the test until it is taken off.
const KNOWN_GAPS: &[(&str, &str)] = &[];

#[test]
fn promtool_fixtures_give_the_listed_outcomes() {
    let Some(dir) = appliance::testsupport::shared_testdata("rules/promtool") else {
        return;
    };
    let cases: &[(&[&str], i32)] = &[
        (&["test", "rules", "unittest.yml"], 0),
        (&["test", "rules", "long-period.yml"], 0),
        (&["test", "rules", "no-test-group-interval.yml"], 0),
        (&["test", "rules", "start-time-test.yml"], 0),
        (&["test", "rules", "at-modifier-test.yml"], 0),
        (&["test", "rules", "negative-offset-test.yml"], 0),
        (&["test", "rules", "failing.yml"], 1),
        (&["test", "rules", "bad-input-series.yml"], 1),
        (&["test", "rules", "bad-promql.yml"], 1),
        (&["test", "rules", "bad-rules-syntax-test.yml"], 1),
        (&["test", "rules", "bad-rules-error-test.yml"], 1),
        (&["test", "rules", "rules_run.yml"], 1),
        (&["test", "rules", "--run", "correct", "rules_run.yml"], 0),
        (&["test", "rules", "--run", "wrong", "rules_run.yml"], 1),
        (
            &[
                "test",
                "rules",
                "--run",
                "correct",
                "--run",
                "wrong",
                "rules_run.yml",
            ],
            1,
        ),
        (&["test", "rules", "rules_run_extrafields.yml"], 1),
        (
            &[
                "test",
                "rules",
                "--ignore-unknown-fields",
                "rules_run_extrafields.yml",
            ],
            0,
        ),
        (&["test", "rules", "rules_run_no_fuzzy.yml"], 1),
        (&["test", "rules", "rules_run_fuzzy.yml"], 1),
        (
            &["test", "rules", "--run", "correct", "rules_run_fuzzy.yml"],
            0,
        ),
        (
            &["test", "rules", "--run", "wrong", "rules_run_fuzzy.yml"],
            1,
        ),
        (&["check", "rules", "rules.yml"], 0),
        (&["check", "rules", "rules-bad.yml"], 1),
        (
            &[
                "check",
                "rules",
                "--lint-fatal",
                "prometheus-rules.lint.yml",
            ],
            3,
        ),
        (&["check", "rules", "rules_large.yml"], 0),
    ];
    let mut wrong = Vec::new();
    let mut gaps_hit = Vec::new();
    for (args, want) in cases {
        let (code, out) = run(&dir, args);
        let key = args
            .iter()
            .filter(|a| !a.starts_with("--") && **a != "correct" && **a != "wrong")
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        let gap = KNOWN_GAPS
            .iter()
            .find(|(k, _)| *k == key && args.len() == 3);
        match (code == *want, gap) {
            (true, Some((k, _))) => wrong.push(format!("{k}: passes now; take it off KNOWN_GAPS")),
            (true, None) => {}
            (false, Some((k, why))) => gaps_hit.push(format!("{k}: {why}")),
            (false, None) => wrong.push(format!(
                "{}: exit {code}, want {want}\n{out}",
                args.join(" ")
            )),
        }
    }
    for g in &gaps_hit {
        eprintln!("known gap: {g}");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The duplicate report names the rule.
    let (code, out) = run(&dir, &["check", "rules", "rules_duplicates.yml"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 duplicate rule(s) found.\nMetric: job:test:count_over_time1m"),
        "{out}"
    );
}

#[test]
fn failures_print_an_exp_got_diff() {
    let Some(dir) = appliance::testsupport::shared_testdata("rules/promtool") else {
        return;
    };
    let (code, out) = run(&dir, &["test", "rules", "failing.yml"]);
    assert_eq!(code, 1);
    assert!(out.contains("Unit Testing:  failing.yml"), "{out}");
    assert!(out.contains("  FAILED:"), "{out}");
    assert!(out.contains("exp:[{Labels:{alertname=\"Test\"}"), "{out}");
    assert!(
        out.contains("got: [{Labels:{__name__=\"test\"} Value:0}]"),
        "{out}"
    );
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn alerts_with(addr: &str, state: &str) -> Vec<serde_json::Value> {
    let v = common::get_json(addr, "/api/v1/alerts");
    v["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == state)
        .cloned()
        .collect()
}

fn firing_series(addr: &str) -> usize {
    let v = common::get_json(
        addr,
        "/api/v1/query?query=ALERTS%7Balertstate%3D%22firing%22%2Calertname%3D%22TargetDown%22%7D",
    );
    v["data"]["result"].as_array().unwrap().len()
}

fn rfc3339_ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

const RULES: &str = r#"groups:
  - name: availability
    rules:
      - alert: TargetDown
        expr: up{job="node"} == 0
        for: 4s
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.instance }} of job {{ $labels.job }} is down"
          description: "up is {{ $value }}; external URL {{ $externalURL }}"
"#;

#[test]
fn target_down_alert_fires_after_for_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let Some(node) = common::node_exporter(port) else {
        return;
    };
    write(dir.path(), "alerts.yml", RULES);
    let (_app, addr) = common::appliance_with_config(
        dir.path(),
        &format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\nweb: {{external_url: 'http://mon.example/'}}\nrule_files: [alerts.yml]\nscrape_configs:\n  - job_name: node\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        ),
    );
    common::wait_for(20, "node up and the rule evaluated", || {
        let v = common::get_json(&addr, "/api/v1/rules");
        let r = &v["data"]["groups"][0]["rules"][0];
        (r["health"] == "ok" && r["state"] == "inactive").then_some(())
    });
    drop(node);
    let pending = common::wait_for(20, "a pending alert", || {
        alerts_with(&addr, "pending").into_iter().next()
    });
    let active_at = rfc3339_ms(pending["activeAt"].as_str().unwrap());
    assert_eq!(firing_series(&addr), 0);
    let firing = common::wait_for(20, "the alert to fire", || {
        alerts_with(&addr, "firing").into_iter().next()
    });
    let seen = chrono::Utc::now().timestamp_millis();
    assert!(
        seen - active_at >= 4000,
        "fired {} ms after becoming active",
        seen - active_at
    );
    assert_eq!(
        firing["annotations"]["summary"],
        format!("127.0.0.1:{port} of job node is down")
    );
    assert_eq!(
        firing["annotations"]["description"],
        "up is 0; external URL http://mon.example/"
    );
    assert_eq!(firing["labels"]["severity"], "critical");
    assert_eq!(firing["value"], "0e+00");
    common::wait_for(10, "ALERTS firing series", || {
        (firing_series(&addr) == 1).then_some(())
    });
    let v = common::get_json(&addr, "/api/v1/rules?type=alert");
    assert_eq!(v["data"]["groups"][0]["rules"][0]["state"], "firing", "{v}");
    let v = common::get_json(&addr, "/api/v1/rules?type=record");
    assert_eq!(v["data"]["groups"].as_array().unwrap().len(), 0, "{v}");
    // The target comes back: the alert resolves and its series goes away.
    let _node = common::node_exporter(port).unwrap();
    common::wait_for(20, "the alert to resolve", || {
        (firing_series(&addr) == 0 && alerts_with(&addr, "firing").is_empty()).then_some(())
    });
    let m = common::get(&addr, "/metrics").unwrap().1;
    assert!(
        m.contains("appliance_rule_group_last_duration_seconds{rule_group="),
        "{m}"
    );
}

#[test]
fn restart_keeps_the_pending_time() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    write(
        dir.path(),
        "alerts.yml",
        &RULES.replace("for: 4s", "for: 1h"),
    );
    // Nothing listens on `port`: the target is down from the start.
    let cfg = format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\nrules: {{for_grace_period: 1s}}\nrule_files: [alerts.yml]\nscrape_configs:\n  - job_name: node\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    );
    let (mut app, addr) = common::appliance_with_config(dir.path(), &cfg);
    let first = common::wait_for(20, "a pending alert", || {
        alerts_with(&addr, "pending").into_iter().next()
    });
    let active_at = rfc3339_ms(first["activeAt"].as_str().unwrap());
    // Pending for a while before the restart.
    common::wait_for(20, "five seconds of pending", || {
        (chrono::Utc::now().timestamp_millis() - active_at > 5000).then_some(())
    });
    let stopped = chrono::Utc::now().timestamp_millis();
    Command::new("kill")
        .args(["-TERM", &app.pid().to_string()])
        .status()
        .unwrap();
    let _ = app.0.wait();
    let (_app2, addr) = common::appliance_with_config(dir.path(), &cfg);
    let restarted = chrono::Utc::now().timestamp_millis();
    let again = common::wait_for(20, "the alert pending again", || {
        alerts_with(&addr, "pending").into_iter().next()
    });
    let restored = rfc3339_ms(again["activeAt"].as_str().unwrap());
    // Prometheus's rule: the time spent down does not count, the time pending before does.
    let down = restarted - stopped;
    assert!(restored >= active_at, "{restored} < {active_at}");
    assert!(
        restored <= active_at + down + 3000,
        "pending time lost: active at {active_at}, now {restored}, down for {down} ms"
    );
    assert!(
        restored < restarted - 3000,
        "restarted from scratch: {restored} vs {restarted}"
    );
}

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &Path) -> serde_json::Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const DEFAULT_RULE_FILES: &[&str] = &["services", "resources", "database", "celery"];

#[test]
fn default_rules_are_valid_and_documented() {
    let mut alerts = 0;
    for f in DEFAULT_RULE_FILES {
        let path = repo().join(format!("rules/{f}.yml"));
        let (code, out) = run(&repo(), &["check", "rules", path.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}");
        let v = yaml(&path);
        let tests = yaml(&repo().join(format!("rules/tests/{f}_test.yml")));
        let cases: Vec<serde_json::Value> = tests["tests"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["alert_rule_test"].as_array().cloned().unwrap_or_default())
            .collect();
        for g in v["groups"].as_array().unwrap() {
            for r in g["rules"].as_array().unwrap() {
                let Some(name) = r["alert"].as_str() else {
                    continue;
                };
                alerts += 1;
                assert!(r["labels"]["severity"].is_string(), "{name}: severity");
                for a in ["summary", "description"] {
                    assert!(r["annotations"][a].is_string(), "{name}: {a}");
                }
                let mine: Vec<_> = cases.iter().filter(|c| c["alertname"] == name).collect();
                let empty = |c: &&serde_json::Value| {
                    c["exp_alerts"]
                        .as_array()
                        .map(|a| a.is_empty())
                        .unwrap_or(true)
                };
                assert!(mine.iter().any(empty), "{f}: {name} has no not-firing case");
                assert!(!mine.iter().all(empty), "{f}: {name} has no firing case");
            }
        }
    }
    assert!(alerts >= 16, "{alerts} alerts");
}

#[test]
fn default_rule_tests_pass_here_and_under_promtool() {
    for f in DEFAULT_RULE_FILES {
        let t = repo().join(format!("rules/tests/{f}_test.yml"));
        let (code, out) = run(&repo(), &["test", "rules", t.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}");
    }
    if !common::prometheus_installed() {
        return;
    }
    for f in DEFAULT_RULE_FILES {
        let t = repo().join(format!("rules/tests/{f}_test.yml"));
        common::run_ok(
            Command::new("/usr/bin/promtool")
                .args(["test", "rules"])
                .arg(&t),
        );
        common::run_ok(
            Command::new("/usr/bin/promtool")
                .args(["check", "rules"])
                .arg(repo().join(format!("rules/{f}.yml"))),
        );
    }
}

#[test]
fn reload_keeps_unchanged_rules_and_refuses_bad_rule_files() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let other = "      - alert: Always\n        expr: vector(1)\n        for: 1h\n";
    write(
        dir.path(),
        "alerts.yml",
        &(RULES.replace("for: 4s", "for: 1h") + other),
    );
    let (_app, addr) = common::appliance_with_config(
        dir.path(),
        &format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\nrule_files: [alerts.yml]\nscrape_configs:\n  - job_name: node\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        ),
    );
    let first = common::wait_for(20, "a pending TargetDown", || {
        alerts_with(&addr, "pending")
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "TargetDown")
    });
    write(
        dir.path(),
        "alerts.yml",
        &(RULES.replace("for: 4s", "for: 1h") + &other.replace("vector(1)", "vector(2)")),
    );
    let (code, body) = common::request(&addr, "POST", "/-/reload", "").unwrap();
    assert_eq!(code, 200, "{body}");
    common::wait_for(10, "the changed rule", || {
        let v = common::get_json(&addr, "/api/v1/rules");
        (v["data"]["groups"][0]["rules"][1]["query"] == "vector(2)").then_some(())
    });
    let again = alerts_with(&addr, "pending")
        .into_iter()
        .find(|a| a["labels"]["alertname"] == "TargetDown")
        .unwrap();
    assert_eq!(
        again["activeAt"], first["activeAt"],
        "an unchanged rule keeps its state"
    );
    // A broken rule file: the reload fails, names it, and the running rules stay.
    write(
        dir.path(),
        "alerts.yml",
        "groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: rate(up)\n",
    );
    let (code, body) = common::request(&addr, "POST", "/-/reload", "").unwrap();
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("alerts.yml") && body.contains("parse error"),
        "{body}"
    );
    let v = common::get_json(&addr, "/api/v1/rules");
    assert_eq!(v["data"]["groups"][0]["rules"][1]["query"], "vector(2)");
}

#[test]
fn junit_report_has_a_case_per_test_group() {
    let Some(dir) = appliance::testsupport::shared_testdata("rules/promtool") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let report = out.path().join("junit.xml");
    let (code, _) = run(
        &dir,
        &[
            "test",
            "rules",
            "--junit",
            report.to_str().unwrap(),
            "rules_run.yml",
        ],
    );
    assert_eq!(code, 1);
    let x = std::fs::read_to_string(&report).unwrap();
    assert!(
        x.contains("<testsuite name=\"rules_run.yml\" tests=\"2\" failures=\"1\""),
        "{x}"
    );
    assert!(
        x.contains("<testcase name=\"correct test\"></testcase>"),
        "{x}"
    );
    assert!(
        x.contains("<testcase name=\"wrong test\"><failure message="),
        "{x}"
    );
}
