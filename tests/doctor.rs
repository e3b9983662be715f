//! `appliance doctor` against a running appliance: green on a healthy setup, red naming the
//! target that stopped; `--send-test` reaches every receiver.

mod common;

use std::process::Command;

use common::*;

fn doctor(addr: &str, extra: &[&str], password: Option<&str>) -> (bool, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_appliance"));
    c.args(["doctor", "--url", &format!("http://{addr}")])
        .args(extra)
        .env_remove("APPLIANCE_ADMIN_PASSWORD");
    if let Some(p) = password {
        c.env("APPLIANCE_ADMIN_PASSWORD", p);
    }
    outcome(&mut c)
}

#[test]
fn doctor_is_green_when_healthy_and_names_a_stopped_target() {
    let port = free_port();
    let target = Target::start(port, "# TYPE jobs_total counter\njobs_total 1\n");
    let (hook, got) = recorder(200);
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) = appliance_with_config(
        dir.path(),
        &format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
             collectors: {{containers: {{enabled: false}}, postgres: {{enabled: false}}, redis: {{enabled: false}}, celery: {{enabled: false}}}}\n\
             scrape_configs:\n  - job_name: api\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n\
             notify:\n  route: {{receiver: team, group_wait: 1s}}\n  receivers:\n    - name: team\n      webhook_configs: [{{url: 'http://{hook}/hook'}}]\n"
        ),
    );
    wait_for(20, "every target up and the rules evaluated", || {
        let (ok, out) = doctor(&addr, &[], None);
        (ok && !out.contains("WARN")).then_some(out)
    });
    let (ok, out) = doctor(&addr, &[], None);
    assert!(ok, "{out}");
    for line in [
        "PASS  ready",
        "PASS  storage",
        &format!("PASS  target api 127.0.0.1:{port}: up"),
        "PASS  collector node: up",
        "PASS  collector appliance: up",
        "PASS  rules: ",
        "PASS  receiver team",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert!(out.contains(" 0 failed"), "{out}");

    // A test notification to every receiver, with the admin's password.
    let (ok, out) = doctor(&addr, &["--send-test"], None);
    assert!(!ok, "--send-test without a password must fail:\n{out}");
    assert!(out.contains("needs the admin password"), "{out}");
    let (ok, out) = doctor(&addr, &["--send-test"], Some(ADMIN_PASSWORD));
    assert!(ok, "{out}");
    assert!(
        out.contains("PASS  test notification team webhook"),
        "{out}"
    );
    let body = wait_for(10, "the test notification at the webhook", || {
        got.lock()
            .unwrap()
            .iter()
            .find(|(p, b)| p == "/hook" && b.contains("ApplianceTestNotification"))
            .map(|(_, b)| b.clone())
    });
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["receiver"], "team");
    assert_eq!(v["status"], "firing");

    // The service stops: red, naming it and why.
    target.stop();
    let out = wait_for(20, "doctor to fail on the stopped target", || {
        let (ok, out) = doctor(&addr, &[], None);
        (!ok).then_some(out)
    });
    assert!(
        out.contains(&format!("FAIL  target api 127.0.0.1:{port}: down: ")),
        "{out}"
    );
    assert!(out.contains("PASS  collector node: up"), "{out}");

    // No appliance at the address: red at the first line.
    let (ok, out) = doctor("127.0.0.1:1", &[], None);
    assert!(!ok);
    assert!(out.contains("FAIL  ready"), "{out}");
}

#[test]
fn doctor_needs_the_password_when_reads_are_protected() {
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) = appliance_with_config(
        dir.path(),
        "web: {auth: {protect_reads: true}}\ncollectors: {containers: {enabled: false}, postgres: {enabled: false}, redis: {enabled: false}, celery: {enabled: false}}\n",
    );
    let (ok, out) = doctor(&addr, &[], None);
    assert!(!ok);
    assert!(out.contains("APPLIANCE_ADMIN_PASSWORD"), "{out}");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{ADMIN_PASSWORD}\n")).unwrap();
    let out = wait_for(20, "doctor green with the password file", || {
        let (ok, out) = doctor(&addr, &["--password-file", pw.to_str().unwrap()], None);
        (ok && !out.contains("not scraped yet")).then_some(out)
    });
    assert!(out.contains("PASS  collector node: up"), "{out}");
}
