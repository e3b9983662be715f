//! The probes of issue 13 (an attacker's and an unlucky operator's inputs), each as a test
//! against the binary: hostile queries, rule files and reloads must be refused while the
//! process lives and keeps answering.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn form(expr: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("query", expr)
        .append_pair("start", "0")
        .append_pair("end", "60")
        .append_pair("step", "15")
        .finish()
}

/// The queries that aborted the process before the nesting bound.
fn deep_queries() -> Vec<(&'static str, String)> {
    vec![
        ("2,000 chained terms", vec!["1"; 2000].join(" + ")),
        (
            "abs( 5,000 deep",
            format!("{}1{}", "abs(".repeat(5000), ")".repeat(5000)),
        ),
        (
            "35,000 parentheses",
            format!("{}1{}", "(".repeat(35_000), ")".repeat(35_000)),
        ),
        (
            "3,000 parentheses",
            format!("{}up{}", "(".repeat(3000), ")".repeat(3000)),
        ),
    ]
}

#[test]
fn deep_and_long_queries_are_refused_and_the_process_lives() {
    let dir = tempfile::tempdir().unwrap();
    let (mut app, addr) = common::appliance_with_config(dir.path(), "global: {}\n");
    for (what, q) in deep_queries() {
        for path in [
            "/api/v1/query",
            "/api/v1/query_range",
            "/api/v1/parse_query",
            "/api/v1/format_query",
        ] {
            let started = Instant::now();
            let (code, body) = common::request(&addr, "POST", path, &form(&q))
                .unwrap_or_else(|| panic!("{path} with {what}: no answer (crashed?)"));
            assert_eq!(code, 400, "{path} with {what}: {body}");
            assert!(body.contains("bad_data"), "{path} with {what}: {body}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{path} with {what} took {:?}",
                started.elapsed()
            );
        }
    }
    // The deepest accepted shapes are answered.
    let ok = vec!["1"; 400].join("+");
    let (code, body) = common::request(&addr, "POST", "/api/v1/query", &form(&ok)).unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"400\""), "{body}");
    let (code, body) = common::request(&addr, "POST", "/api/v1/format_query", &form(&ok)).unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(app.0.try_wait().unwrap().is_none(), "the appliance exited");
    let (code, _) = common::get(&addr, "/-/healthy").unwrap();
    assert_eq!(code, 200);
}

fn run(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_appliance"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn rule_file(expr: &str) -> String {
    format!("groups:\n  - name: g\n    interval: 1s\n    rules:\n      - record: deep\n        expr: '{expr}'\n")
}

#[test]
fn a_rule_run_would_refuse_is_refused_by_check_rules_and_by_reload() {
    let dir = tempfile::tempdir().unwrap();
    let deep = vec!["1"; 2000].join(" + ");
    std::fs::write(dir.path().join("deep.yml"), rule_file(&deep)).unwrap();
    let (code, out) = run(dir.path(), &["check", "rules", "deep.yml"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("exceeds the limit"), "{out}");

    // Running with a good rule, then reloading to the deep one: refused, the old rule stays.
    std::fs::write(dir.path().join("rules.yml"), rule_file("vector(7)")).unwrap();
    let (mut app, addr) = common::appliance_with_config(
        dir.path(),
        "global: {evaluation_interval: 1s}\nrule_files: [rules.yml]\n",
    );
    common::wait_for(20, "the recording rule's first result", || {
        common::query_value(&addr, "deep").filter(|v| *v == 7.0)
    });
    std::fs::write(dir.path().join("rules.yml"), rule_file(&deep)).unwrap();
    let (code, body) = common::request(&addr, "POST", "/-/reload", "").unwrap();
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("rules.yml") && body.contains("exceeds the limit"),
        "{body}"
    );
    let v = common::get_json(&addr, "/api/v1/rules");
    assert_eq!(v["data"]["groups"][0]["rules"][0]["query"], "vector(7)");
    assert!(app.0.try_wait().unwrap().is_none(), "the appliance exited");
}
