//! Notifications end to end: a scraped target goes down, the alert fires, and the webhook and
//! Slack stand-ins receive Alertmanager-shaped payloads; a failing receiver is retried without
//! delaying the others; resolution is announced.

mod common;

use common::*;

fn json_bodies(r: &Received, path: &str) -> Vec<serde_json::Value> {
    r.lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, b)| serde_json::from_str(b).unwrap())
        .collect()
}

#[test]
fn target_down_reaches_webhook_and_slack_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let (ok_addr, ok) = recorder(200);
    let (bad_addr, bad) = recorder(500);
    let (smtp, mails) = smtp_server();
    std::fs::write(
        dir.path().join("alerts.yml"),
        "groups:\n  - name: a\n    rules:\n      - alert: TargetDown\n        expr: up{job=\"web\"} == 0\n        for: 2s\n        labels: {severity: critical}\n        annotations:\n          summary: '{{ $labels.instance }} is down'\n",
    )
    .unwrap();
    let cfg = format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}
rule_files: [alerts.yml]
scrape_configs:
  - job_name: web
    static_configs: [{{targets: ['{target}']}}]
notify:
  route:
    receiver: team
    group_by: [alertname]
    group_wait: 1s
    group_interval: 2s
    repeat_interval: 1h
  receivers:
    - name: team
      webhook_configs:
        - url: http://{ok_addr}/hook
        - url: http://{bad_addr}/broken
      slack_configs:
        - api_url: http://{ok_addr}/slack
          channel: '#ops'
          send_resolved: true
      email_configs:
        - to: ops@example.org
          from: appliance@example.org
          smarthost: '{smtp}'
          require_tls: false
          send_resolved: true
"
    );
    // The target is up first; the test then stops it.
    let up = Target::start(port, "app_requests_total 1\n");
    let (_app, addr) = appliance_with_config(dir.path(), &cfg);
    wait_for(20, "the target up", || {
        let v = get_json(&addr, "/api/v1/query?query=up%7Bjob%3D%22web%22%7D");
        (v["data"]["result"][0]["value"][1] == "1").then_some(())
    });
    up.stop();
    let hook = wait_for(30, "the webhook notification", || {
        json_bodies(&ok, "/hook").into_iter().next()
    });
    assert_eq!(hook["version"], "4");
    assert_eq!(hook["status"], "firing");
    assert_eq!(hook["receiver"], "team");
    assert_eq!(hook["groupLabels"]["alertname"], "TargetDown");
    let a = &hook["alerts"][0];
    assert_eq!(a["labels"]["instance"], target.as_str());
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["annotations"]["summary"], format!("{target} is down"));
    assert!(a["generatorURL"]
        .as_str()
        .unwrap()
        .contains("/graph?g0.expr="));
    let slack = wait_for(10, "the Slack notification", || {
        json_bodies(&ok, "/slack").into_iter().next()
    });
    assert_eq!(slack["channel"], "#ops");
    let att = &slack["attachments"][0];
    assert!(
        att["title"]
            .as_str()
            .unwrap()
            .starts_with("[FIRING:1] TargetDown"),
        "{slack}"
    );
    assert!(
        att["text"]
            .as_str()
            .unwrap()
            .contains(&format!("{target} is down")),
        "{slack}"
    );
    assert_eq!(att["color"], "danger");
    // The broken receiver is retried with backoff; its failure is recorded and counted, and
    // it did not hold back the others (they were delivered first).
    let failed = wait_for(30, "the failure in the history", || {
        let v = get_json(&addr, "/api/v1/notifications");
        v["data"]
            .as_array()?
            .iter()
            .find(|e| e["success"] == false)
            .cloned()
    });
    assert_eq!(failed["attempts"], 5, "{failed}");
    assert_eq!(failed["target"], format!("http://{bad_addr}"), "{failed}");
    let history = get_json(&addr, "/api/v1/notifications");
    assert!(
        history["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["integration"] == "email"
                && e["target"] == "ops@example.org"
                && e["success"] == true),
        "{history}"
    );
    assert!(
        failed["error"].as_str().unwrap().contains("500"),
        "{failed}"
    );
    assert!(bad.lock().unwrap().len() >= 5);
    let m = get(&addr, "/metrics").unwrap().1;
    assert!(
        m.contains("appliance_notifications_failed_total{integration=\"webhook\"} 1"),
        "{m}"
    );
    // The target comes back: resolved notifications arrive.
    let _back = Target::start(port, "app_requests_total 2\n");
    wait_for(40, "the resolved webhook notification", || {
        json_bodies(&ok, "/hook")
            .into_iter()
            .find(|h| h["status"] == "resolved")
    });
    let resolved = wait_for(10, "the resolved Slack notification", || {
        json_bodies(&ok, "/slack")
            .into_iter()
            .find(|s| s["attachments"][0]["color"] == "good")
    });
    assert!(
        resolved["attachments"][0]["title"]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED] TargetDown"),
        "{resolved}"
    );
    // The e-mail went out when it fired, and again when it resolved.
    wait_for(20, "the firing and the resolved e-mail", || {
        let m = mails.lock().unwrap();
        let firing = m
            .iter()
            .any(|(_, _, d)| d.contains("Subject: [FIRING:1] TargetDown"));
        let resolved = m
            .iter()
            .any(|(_, _, d)| d.contains("Subject: [RESOLVED] TargetDown"));
        (firing && resolved).then_some(())
    });
}

#[test]
fn a_restart_while_an_alert_fires_sends_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (ok_addr, ok) = recorder(200);
    std::fs::write(
        dir.path().join("alerts.yml"),
        "groups:\n  - name: a\n    rules:\n      - alert: TargetDown\n        expr: up{job=\"web\"} == 0\n        for: 1s\n",
    )
    .unwrap();
    let cfg = format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}
rule_files: [alerts.yml]
scrape_configs:
  - job_name: web
    static_configs: [{{targets: ['127.0.0.1:{port}']}}]
notify:
  route: {{receiver: team, group_by: [alertname], group_wait: 1s, group_interval: 1s, repeat_interval: 1h}}
  receivers:
    - name: team
      webhook_configs: [{{url: 'http://{ok_addr}/hook'}}]
"
    );
    let (mut app, addr) = appliance_with_config(dir.path(), &cfg);
    wait_for(30, "the first notification", || {
        (!json_bodies(&ok, "/hook").is_empty()).then_some(())
    });
    std::process::Command::new("kill")
        .args(["-TERM", &app.pid().to_string()])
        .status()
        .unwrap();
    let _ = app.0.wait();
    let (_app2, addr2) = appliance_with_config(dir.path(), &cfg.clone());
    let _ = addr;
    // The alert fires again after the restart (its pending time is restored or re-run)…
    wait_for(30, "the alert firing again", || {
        let v = get_json(&addr2, "/api/v1/alerts");
        v["data"]["alerts"]
            .as_array()?
            .iter()
            .any(|a| a["state"] == "firing")
            .then_some(())
    });
    // …and several group intervals later still nothing new was sent.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    wait_for(10, "five quiet seconds", || {
        assert_eq!(json_bodies(&ok, "/hook").len(), 1, "a duplicate was sent");
        (std::time::Instant::now() > until).then_some(())
    });
}

/// amtool's `--http.config.file` with the admin's basic auth, as a user would configure it.
fn amtool_http_config() -> &'static std::path::Path {
    static FILE: std::sync::OnceLock<tempfile::TempPath> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            f.path(),
            format!(
                "basic_auth:\n  username: admin\n  password: {}\n",
                common::ADMIN_PASSWORD
            ),
        )
        .unwrap();
        f.into_temp_path()
    })
}

fn amtool(addr: &str, args: &[&str]) -> (bool, String) {
    common::outcome(
        std::process::Command::new("/usr/bin/amtool")
            .arg(format!("--alertmanager.url=http://{addr}"))
            .arg(format!(
                "--http.config.file={}",
                amtool_http_config().display()
            ))
            .args(args),
    )
}

fn amtool_installed() -> bool {
    if std::path::Path::new("/usr/bin/amtool").exists() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "amtool missing under CI; the test command installs prometheus-alertmanager"
    );
    eprintln!("skipping: amtool not installed");
    false
}

#[test]
fn amtool_silences_an_alert_and_expires_the_silence() {
    if !amtool_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ok_addr, ok) = recorder(200);
    std::fs::write(
        dir.path().join("alerts.yml"),
        "groups:\n  - name: a\n    rules:\n      - alert: AlwaysOn\n        expr: vector(1)\n        labels: {team: ops}\n",
    )
    .unwrap();
    let cfg = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}
collectors: {{appliance: {{enabled: false}}}}
rule_files: [alerts.yml]
notify:
  route: {{receiver: team, group_by: [alertname], group_wait: 1s, group_interval: 1s, repeat_interval: 2s}}
  receivers:
    - name: team
      webhook_configs: [{{url: 'http://{ok_addr}/hook'}}]
"
    );
    let (_app, addr) = appliance_with_config(dir.path(), &cfg);
    wait_for(30, "the first notification", || {
        (!json_bodies(&ok, "/hook").is_empty()).then_some(())
    });
    let (good, out) = amtool(&addr, &["alert", "query"]);
    assert!(good && out.contains("AlwaysOn"), "{out}");
    let (good, out) = amtool(&addr, &["config", "routes", "test", "alertname=AlwaysOn"]);
    assert!(good && out.contains("team"), "{out}");
    let (good, id) = amtool(
        &addr,
        &[
            "silence",
            "add",
            "alertname=AlwaysOn",
            "--comment=maintenance",
            "--duration=1h",
        ],
    );
    assert!(good, "{id}");
    // stdout has the id; stderr may add amtool's version warning.
    let id = id
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 36 && l.matches('-').count() == 4)
        .unwrap_or_else(|| panic!("no silence id in {id:?}"))
        .to_string();
    assert_eq!(id.len(), 36, "{id}");
    let (good, out) = amtool(&addr, &["silence", "query"]);
    assert!(
        good && out.contains(&id) && out.contains("maintenance"),
        "{out}"
    );
    // With repeat_interval 2s the alert would be re-sent twice in five seconds; silenced, it
    // is not sent at all.
    let n = json_bodies(&ok, "/hook").len();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    wait_for(10, "five silent seconds", || {
        assert_eq!(
            json_bodies(&ok, "/hook").len(),
            n,
            "delivered while silenced"
        );
        (std::time::Instant::now() > until).then_some(())
    });
    let v = get_json(&addr, "/api/v2/alerts");
    assert_eq!(v[0]["status"]["state"], "suppressed", "{v}");
    assert_eq!(v[0]["status"]["silencedBy"][0], id.as_str(), "{v}");
    let (good, out) = amtool(&addr, &["silence", "expire", &id]);
    assert!(good, "{out}");
    wait_for(15, "notifications after the silence expired", || {
        (json_bodies(&ok, "/hook").len() > n).then_some(())
    });
    let (_, out) = amtool(&addr, &["silence", "query"]);
    assert!(
        !out.contains(&id),
        "expired silences are not listed by default: {out}"
    );
}

#[test]
fn a_refusal_is_not_retried_and_the_history_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (ok_addr, ok) = recorder(200);
    let (bad_addr, bad) = recorder(400);
    std::fs::write(
        dir.path().join("alerts.yml"),
        "groups:\n  - name: a\n    rules:\n      - alert: AlwaysOn\n        expr: vector(1)\n",
    )
    .unwrap();
    let cfg = format!(
        "global: {{evaluation_interval: 1s}}
collectors: {{appliance: {{enabled: false}}}}
rule_files: [alerts.yml]
notify:
  route: {{receiver: team, group_by: [alertname], group_wait: 1s, group_interval: 1h, repeat_interval: 1h}}
  receivers:
    - name: team
      webhook_configs:
        - url: 'http://{ok_addr}/hook'
        - url: 'http://{bad_addr}/refuses'
"
    );
    let (mut app, addr) = appliance_with_config(dir.path(), &cfg);
    // A 400 will not change by asking again: one attempt, the status in the error.
    let failed = wait_for(30, "the refused delivery in the history", || {
        get_json(&addr, "/api/v1/notifications")["data"]
            .as_array()?
            .iter()
            .find(|e| e["success"] == false)
            .cloned()
    });
    assert_eq!(failed["attempts"], 1, "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("400"),
        "{failed}"
    );
    assert_eq!(bad.lock().unwrap().len(), 1);
    wait_for(10, "the delivered one", || {
        (!json_bodies(&ok, "/hook").is_empty()).then_some(())
    });
    let before = get_json(&addr, "/api/v1/notifications")["data"].clone();
    std::process::Command::new("kill")
        .args(["-TERM", &app.pid().to_string()])
        .status()
        .unwrap();
    let _ = app.0.wait();
    let (_app2, addr2) = appliance_with_config(dir.path(), &cfg);
    let after = get_json(&addr2, "/api/v1/notifications")["data"].clone();
    let key = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["time"].to_string(),
                    e["success"].to_string(),
                    e["target"].to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    // Right after the restart, before anything new is sent, the history is what it was.
    assert!(key(&after).ends_with(&key(&before)), "{before} / {after}");
}

#[test]
fn amtool_adds_an_alert_that_starts_now() {
    if !amtool_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ok_addr, ok) = recorder(200);
    let cfg = format!(
        "rule_files: []
collectors: {{appliance: {{enabled: false}}}}
notify:
  route: {{receiver: team, group_by: [alertname], group_wait: 1s}}
  receivers:
    - name: team
      webhook_configs: [{{url: 'http://{ok_addr}/hook'}}]
"
    );
    let (_app, addr) = appliance_with_config(dir.path(), &cfg);
    // Without --start/--end amtool sends Go's zero time for both: Alertmanager reads that as
    // "now" and "resolve_timeout from now" (the alert used to be resolved at once).
    let (good, out) = amtool(
        &addr,
        &[
            "alert",
            "add",
            "AddedByHand",
            "team=ops",
            "--annotation=summary=by hand",
        ],
    );
    assert!(good, "{out}");
    let (good, out) = amtool(&addr, &["alert", "query", "alertname=AddedByHand"]);
    assert!(
        good && out.contains("AddedByHand") && !out.contains("0001-01-01"),
        "{out}"
    );
    let body = wait_for(30, "the hand-made alert's notification", || {
        json_bodies(&ok, "/hook").into_iter().next()
    });
    assert_eq!(body["status"], "firing", "{body}");
    assert_eq!(body["commonAnnotations"]["summary"], "by hand", "{body}");
}

#[test]
fn email_reaches_an_smtp_server() {
    let dir = tempfile::tempdir().unwrap();
    let (smtp, mails) = smtp_server();
    std::fs::write(
        dir.path().join("alerts.yml"),
        "groups:\n  - name: a\n    rules:\n      - alert: DiskFull\n        expr: vector(1)\n        labels: {instance: db1}\n        annotations: {summary: 'disk of db1 is full', description: 'only 2% left'}\n",
    )
    .unwrap();
    let cfg = format!(
        "global: {{evaluation_interval: 1s}}
collectors: {{appliance: {{enabled: false}}}}
rule_files: [alerts.yml]
notify:
  global: {{smtp_smarthost: '{smtp}', smtp_from: 'appliance@example.org', smtp_require_tls: false}}
  route: {{receiver: mail, group_wait: 1s}}
  receivers:
    - name: mail
      email_configs: [{{to: '${{ALERT_EMAIL:-ops@example.org}}, oncall@example.org'}}]
"
    );
    let (_app, _addr) = appliance_with_config(dir.path(), &cfg);
    let (from, to, data) = wait_for(30, "an e-mail", || mails.lock().unwrap().first().cloned());
    assert_eq!(from, "appliance@example.org");
    assert_eq!(to, vec!["ops@example.org", "oncall@example.org"]);
    // Alertmanager's subject: no group labels (no group_by), so the common labels follow in
    // parentheses.
    assert!(
        data.contains("Subject: [FIRING:1]  (DiskFull db1)"),
        "{data}"
    );
    assert!(
        data.contains("disk of db1 is full") && data.contains("only 2% left"),
        "{data}"
    );
    assert!(data.contains("text/html"), "{data}");
}

#[test]
fn alerts_reach_an_external_alertmanager() {
    if !amtool_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let am_port = free_port();
    std::fs::write(
        dir.path().join("am.yml"),
        "route: {receiver: 'null'}\nreceivers: [{name: 'null'}]\n",
    )
    .unwrap();
    let _am = Proc(
        std::process::Command::new("/usr/bin/prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.path().join("am.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let am = format!("127.0.0.1:{am_port}");
    wait_for(30, "Alertmanager ready", || {
        get(&am, "/-/ready").filter(|(s, _)| *s == 200)
    });
    std::fs::write(
        dir.path().join("alerts.yml"),
        "groups:\n  - name: a\n    rules:\n      - alert: ExternalCheck\n        expr: vector(1)\n        labels: {team: ops, drop_me: x}\n        annotations: {summary: sent out}\n",
    )
    .unwrap();
    let cfg = format!(
        "global: {{evaluation_interval: 1s, external_labels: {{site: lab}}}}
collectors: {{appliance: {{enabled: false}}}}
rule_files: [alerts.yml]
alerting:
  alert_relabel_configs: [{{action: labeldrop, regex: drop_me}}]
  alertmanagers:
    - static_configs: [{{targets: ['{am}']}}]
"
    );
    let (_app, addr) = appliance_with_config(dir.path(), &cfg);
    let out = wait_for(30, "the alert in the external Alertmanager", || {
        let o = std::process::Command::new("/usr/bin/amtool")
            .arg(format!("--alertmanager.url=http://{am}"))
            .args(["alert", "query", "-o", "extended"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        text.contains("ExternalCheck").then_some(text)
    });
    assert!(out.contains("site=\"lab\""), "external labels added: {out}");
    assert!(
        !out.contains("drop_me"),
        "alert_relabel_configs applied: {out}"
    );
    let m = get(&addr, "/metrics").unwrap().1;
    assert!(
        m.contains("appliance_notifications_sent_total{alertmanager="),
        "{m}"
    );
}

#[test]
fn pagerduty_events_v2_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, got) = recorder(202);
    std::fs::write(
        dir.path().join("alerts.yml"),
        "groups:\n  - name: a\n    rules:\n      - alert: PagerCheck\n        expr: vector(1)\n        annotations: {summary: wake up}\n",
    )
    .unwrap();
    let cfg = format!(
        "global: {{evaluation_interval: 1s}}
collectors: {{appliance: {{enabled: false}}}}
rule_files: [alerts.yml]
notify:
  route: {{receiver: pager, group_by: [alertname], group_wait: 1s}}
  receivers:
    - name: pager
      pagerduty_configs: [{{routing_key: R0UT1NG, url: 'http://{rec}/v2/enqueue', severity: critical}}]
"
    );
    let (_app, addr) = appliance_with_config(dir.path(), &cfg);
    let ev = wait_for(30, "a PagerDuty event", || {
        json_bodies(&got, "/v2/enqueue").into_iter().next()
    });
    assert_eq!(ev["routing_key"], "R0UT1NG");
    assert_eq!(ev["event_action"], "trigger");
    assert_eq!(ev["payload"]["severity"], "critical");
    assert!(
        ev["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("PagerCheck"),
        "{ev}"
    );
    // Alertmanager's dedup key: the SHA-256 of the group key, hex.
    assert_eq!(ev["dedup_key"].as_str().unwrap().len(), 64);
    // The routing key is a secret: not in the status API.
    let v = get_json(&addr, "/api/v1/status/config");
    assert!(
        !v["data"]["yaml"].as_str().unwrap().contains("R0UT1NG"),
        "{v}"
    );
    let s = get_json(&addr, "/api/v2/status");
    assert!(
        !s["config"]["original"]
            .as_str()
            .unwrap()
            .contains("R0UT1NG"),
        "{s}"
    );
}

#[test]
fn receiver_fields_use_alertmanager_templates() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, got) = recorder(200);
    let (smtp, mails) = smtp_server();
    std::fs::write(
        dir.path().join("alerts.yml"),
        "groups:\n  - name: a\n    rules:\n      - alert: QueueBacklog\n        expr: vector(1)\n        labels: {queue: emails}\n        annotations: {summary: 'emails is backing up'}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("custom.tmpl"),
        "{{ define \"custom.subject\" }}[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}/{{ .CommonLabels.queue }}{{ end }}",
    )
    .unwrap();
    let cfg = format!(
        "global: {{evaluation_interval: 1s}}
collectors: {{appliance: {{enabled: false}}}}
rule_files: [alerts.yml]
notify:
  global: {{smtp_smarthost: '{smtp}', smtp_from: 'a@example.org', smtp_require_tls: false}}
  templates: ['*.tmpl']
  route: {{receiver: team, group_wait: 1s}}
  receivers:
    - name: team
      slack_configs:
        - api_url: http://{rec}/slack
          title: '{{{{ template \"custom.subject\" . }}}}'
          text: '{{{{ range .Alerts.Firing }}}}* {{{{ .Annotations.summary }}}}{{{{ end }}}}'
          fields: [{{title: Queue, value: '{{{{ .CommonLabels.queue }}}}', short: true}}]
      email_configs:
        - to: ops@example.org
          headers: {{Subject: '{{{{ template \"custom.subject\" . }}}}'}}
"
    );
    let (_app, _addr) = appliance_with_config(dir.path(), &cfg);
    let slack = wait_for(30, "the Slack message", || {
        json_bodies(&got, "/slack").into_iter().next()
    });
    let att = &slack["attachments"][0];
    assert_eq!(att["title"], "[FIRING] QueueBacklog/emails", "{slack}");
    assert_eq!(att["text"], "* emails is backing up", "{slack}");
    assert_eq!(att["fields"][0]["value"], "emails", "{slack}");
    let (_, _, data) = wait_for(30, "the e-mail", || mails.lock().unwrap().first().cloned());
    assert!(
        data.contains("Subject: [FIRING] QueueBacklog/emails"),
        "{data}"
    );
}

fn always_firing(dir: &std::path::Path, hook: &str, group_interval: &str) -> String {
    std::fs::write(
        dir.join("alerts.yml"),
        "groups:\n  - name: a\n    interval: 1s\n    rules:\n      - alert: Always\n        expr: vector(1)\n",
    )
    .unwrap();
    format!(
        "global: {{evaluation_interval: 1s}}
rule_files: [alerts.yml]
notify:
  route: {{receiver: team, group_by: [alertname], group_wait: 1s, group_interval: {group_interval}, repeat_interval: 4h}}
  receivers:
    - name: team
      webhook_configs: [{{url: 'http://{hook}/hook'}}]
"
    )
}

/// Issue 13: the log was written before delivery, so a receiver outage longer than the
/// retries (about 8 s) lost the alert until `repeat_interval` (4 h).
#[test]
fn a_receiver_down_for_30s_gets_the_alert_at_the_next_group_interval() {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let (hook, got, answer) = switchable_recorder(500);
    let cfg = always_firing(dir.path(), &hook, "10s");
    let (_app, addr) = appliance_with_config(dir.path(), &cfg);
    wait_for(30, "the first (failing) attempt", || {
        (!got.lock().unwrap().is_empty()).then_some(())
    });
    let outage_start = Instant::now();
    wait_for(60, "30 s of outage with every attempt failing", || {
        (outage_start.elapsed() > Duration::from_secs(30)).then_some(())
    });
    let failed_requests = got.lock().unwrap().len();
    assert!(
        failed_requests >= 6,
        "retried across intervals: {failed_requests}"
    );
    answer.store(200, Ordering::SeqCst);
    let back = Instant::now();
    // The next flush is at most one group_interval away, plus one round of retry backoff.
    wait_for(25, "the alert delivered once the receiver is back", || {
        let v = get_json(&addr, "/api/v1/notifications");
        v["data"]
            .as_array()?
            .iter()
            .find(|e| e["success"] == true)
            .cloned()
    });
    assert!(back.elapsed() < Duration::from_secs(25));
    let bodies = json_bodies(&got, "/hook");
    let last = bodies.last().unwrap();
    assert_eq!(last["status"], "firing");
    assert_eq!(last["alerts"][0]["labels"]["alertname"], "Always");
    // Delivered: no more sends until repeat_interval.
    let n = got.lock().unwrap().len();
    let quiet = Instant::now() + Duration::from_secs(12);
    wait_for(20, "a quiet group interval", || {
        assert_eq!(got.lock().unwrap().len(), n, "sent again after it landed");
        (Instant::now() > quiet).then_some(())
    });
}

#[test]
fn an_alert_that_failed_before_a_restart_is_sent_after_it() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let (hook, got, answer) = switchable_recorder(500);
    let cfg = always_firing(dir.path(), &hook, "1h");
    let (mut app, addr) = appliance_with_config(dir.path(), &cfg);
    wait_failed_delivery(&addr, 30);
    std::process::Command::new("kill")
        .args(["-TERM", &app.pid().to_string()])
        .status()
        .unwrap();
    let _ = app.0.wait();
    answer.store(200, Ordering::SeqCst);
    let before = got.lock().unwrap().len();
    let (_app2, _addr2) = appliance_with_config(dir.path(), &cfg);
    wait_for(30, "the alert delivered after the restart", || {
        (got.lock().unwrap().len() > before).then_some(())
    });
    let bodies = json_bodies(&got, "/hook");
    assert_eq!(bodies.last().unwrap()["status"], "firing");
}
