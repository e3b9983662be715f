//! Every Alertmanager integration end to end: one alert posted to the appliance's
//! Alertmanager API goes, through a config holding every `*_configs` kind, to a local
//! recorder standing in for each service; then its resolution. The request shapes are
//! checked in detail by the golden files beside each integration
//! (`src/notify/receivers/testdata/`); here each service must get its request, the history
//! must show every delivery as a success, and no secret may appear in the log or the API.

mod common;

use common::*;

/// Answers every integration that reads its answer: Slack's Web API and Telegram (`ok`),
/// WeChat (`errcode`, `access_token`), Jira (no issue found, so one is created).
const ANSWER: &str = r#"{"ok":true,"errcode":0,"access_token":"acc3ss","issues":[]}"#;

/// Secrets in the config below; none may leave the process except to its service.
const SECRETS: &[&str] = &[
    "xoxb-b0tt0k3n",
    "R0UT1NGK3Y",
    "S3RV1C3K3Y",
    "G3N13K3Y",
    "V1CT0RK3Y",
    "PUSH0V3RUS3R",
    "PUSH0V3RT0K3N",
    "123:T3L3GR4M",
    "W3B3XT0K3N",
    "R0CK3TT0K3N",
    "W3CH4TS3CR3T",
    "wJalrXUtnFEMIK7MDENG",
    "J1R4P4SS",
    "1NC1D3NTT0K3N",
];

fn config(rec: &str, smtp: &str) -> String {
    format!(
        "global: {{scrape_interval: 1h, evaluation_interval: 1h}}
rule_files: []
notify:
  route:
    receiver: everyone
    group_by: [alertname]
    group_wait: 1s
    group_interval: 1s
    repeat_interval: 1h
  receivers:
    - name: everyone
      webhook_configs: [{{url: 'http://{rec}/webhook'}}]
      slack_configs:
        - {{api_url: 'http://{rec}/slack/hook', send_resolved: true}}
        - {{app_token: xoxb-b0tt0k3n, app_url: 'http://{rec}/slackapi/chat.postMessage', channel: '#ops'}}
      email_configs:
        - {{to: ops@example.org, from: appliance@example.org, smarthost: '{smtp}', require_tls: false}}
      pagerduty_configs:
        - {{routing_key: R0UT1NGK3Y, url: 'http://{rec}/pagerduty/v2/enqueue'}}
        - {{service_key: S3RV1C3K3Y, url: 'http://{rec}/pagerduty/v1'}}
      opsgenie_configs: [{{api_key: G3N13K3Y, api_url: 'http://{rec}/opsgenie/'}}]
      victorops_configs: [{{api_key: V1CT0RK3Y, routing_key: team-a, api_url: 'http://{rec}/victorops/'}}]
      pushover_configs: [{{user_key: PUSH0V3RUS3R, token: PUSH0V3RT0K3N}}]
      telegram_configs: [{{bot_token: '123:T3L3GR4M', chat_id: -100123, api_url: 'http://{rec}/telegram'}}]
      discord_configs: [{{webhook_url: 'http://{rec}/discord'}}]
      msteams_configs: [{{webhook_url: 'http://{rec}/msteams'}}]
      msteamsv2_configs: [{{webhook_url: 'http://{rec}/msteamsv2'}}]
      webex_configs:
        - {{room_id: R00M, api_url: 'http://{rec}/webex', http_config: {{authorization: {{credentials: W3B3XT0K3N}}}}}}
      rocketchat_configs:
        - {{token: R0CK3TT0K3N, token_id: us3r, api_url: 'http://{rec}/rocketchat', send_resolved: true}}
      wechat_configs:
        - {{api_secret: W3CH4TS3CR3T, corp_id: corp, api_url: 'http://{rec}/wechat/', to_user: '@all'}}
      sns_configs:
        - {{topic_arn: 'arn:aws:sns:eu-west-1:123456789012:alerts', api_url: 'http://{rec}/sns/', sigv4: {{access_key: AKIDEXAMPLE, secret_key: wJalrXUtnFEMIK7MDENG}}}}
      jira_configs:
        - {{api_url: 'http://{rec}/jira/rest/api/2', api_type: datacenter, project: OPS, issue_type: Bug, http_config: {{basic_auth: {{username: bot, password: J1R4P4SS}}}}}}
      incidentio_configs: [{{url: 'http://{rec}/incidentio', alert_source_token: 1NC1D3NTT0K3N}}]
      mattermost_configs: [{{webhook_url: 'http://{rec}/mattermost'}}]
"
    )
}

/// Where each integration's request lands at the recorder (a path prefix).
const PATHS: &[(&str, &str)] = &[
    ("webhook", "/webhook"),
    ("slack", "/slack/hook"),
    ("slack (bot token)", "/slackapi/chat.postMessage"),
    ("pagerduty v2", "/pagerduty/v2/enqueue"),
    ("pagerduty v1", "/pagerduty/v1"),
    ("opsgenie", "/opsgenie/v2/alerts"),
    ("victorops", "/victorops/V1CT0RK3Y/team-a"),
    ("pushover", "/pushover/1/messages.json"),
    ("telegram", "/telegram/bot123:T3L3GR4M/sendMessage"),
    ("discord", "/discord"),
    ("msteams", "/msteams"),
    ("msteamsv2", "/msteamsv2"),
    ("webex", "/webex"),
    ("rocketchat", "/rocketchat/api/v1/chat.postMessage"),
    ("wechat", "/wechat/message/send"),
    ("sns", "/sns/"),
    ("jira", "/jira/rest/api/2/issue"),
    ("incidentio", "/incidentio"),
    ("mattermost", "/mattermost"),
];

fn alert_body(ends_at: Option<&str>) -> String {
    let end = ends_at
        .map(|e| format!(r#","endsAt":"{e}""#))
        .unwrap_or_default();
    format!(
        r#"[{{"labels":{{"alertname":"EveryIntegration","job":"api","severity":"critical"}},"annotations":{{"summary":"one alert for every integration"}},"startsAt":"2026-01-01T00:00:00Z"{end}}}]"#
    )
}

#[test]
fn one_alert_reaches_every_integration_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, got) = json_recorder(ANSWER);
    let (smtp, mails) = smtp_server();
    let cfg = dir.path().join("appliance.yml");
    std::fs::write(&cfg, config(&rec, &smtp)).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let pushover = format!("http://{rec}/pushover/1/messages.json");
    let _app = appliance_with_env(
        dir.path(),
        Some(&cfg),
        &addr,
        &[],
        &[("APPLIANCE_PUSHOVER_API_URL", &pushover)],
    );
    wait_ready(&addr);

    post_alerts(&addr, &alert_body(None));
    let firing = |path: &str| {
        got.lock()
            .unwrap()
            .iter()
            .any(|(p, b)| p.starts_with(path) && b.contains("EveryIntegration"))
    };
    for (name, path) in PATHS {
        wait_for(20, &format!("{name} at {path}"), || {
            firing(path).then_some(())
        });
    }
    wait_for(20, "the e-mail", || {
        mails
            .lock()
            .unwrap()
            .iter()
            .any(|(_, _, data)| data.contains("EveryIntegration"))
            .then_some(())
    });
    // WeChat fetched its token first; Jira searched before creating.
    let paths: Vec<String> = got.lock().unwrap().iter().map(|(p, _)| p.clone()).collect();
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/wechat/gettoken?corpid=corp")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p == "/jira/rest/api/2/search"),
        "{paths:?}"
    );

    // Every delivery is in the history as a success, one per integration.
    let history = wait_for(10, "20 successful deliveries in the history", || {
        let h = get_json(&addr, "/api/v1/notifications");
        let list = h["data"].as_array().cloned().unwrap_or_default();
        (list.iter().filter(|e| e["success"] == true).count() >= 20).then_some(list)
    });
    let kinds: std::collections::BTreeSet<&str> = history
        .iter()
        .filter_map(|e| e["integration"].as_str())
        .collect();
    assert_eq!(kinds.len(), 18, "{kinds:?}");
    assert!(history.iter().all(|e| e["success"] == true), "{history:?}");

    // Resolved: the integrations that announce resolution do (Opsgenie closes by alias,
    // PagerDuty resolves, Slack's webhook with send_resolved shows it).
    got.lock().unwrap().clear();
    let now = chrono_now();
    post_alerts(&addr, &alert_body(Some(&now)));
    wait_for(20, "Opsgenie's close", || {
        got.lock()
            .unwrap()
            .iter()
            .any(|(p, _)| p.contains("/close?identifierType=alias"))
            .then_some(())
    });
    wait_for(20, "PagerDuty's resolve", || {
        got.lock()
            .unwrap()
            .iter()
            .any(|(p, b)| {
                p.starts_with("/pagerduty/v2") && b.contains(r#""event_action":"resolve""#)
            })
            .then_some(())
    });
    wait_for(20, "Slack's resolved message", || {
        got.lock()
            .unwrap()
            .iter()
            .any(|(p, b)| p == "/slack/hook" && b.contains("[RESOLVED]"))
            .then_some(())
    });
    // Slack's bot-token entry has send_resolved off (Alertmanager's default for Slack).
    assert!(!got
        .lock()
        .unwrap()
        .iter()
        .any(|(p, _)| p.starts_with("/slackapi")));

    // No secret in the log, the history, the notifier's status or the config API.
    let log = std::fs::read_to_string(dir.path().join("appliance.log")).unwrap();
    let status = request(&addr, "GET", "/api/v2/status", "").unwrap().1;
    let config_api = request(&addr, "GET", "/api/v1/status/config", "")
        .unwrap()
        .1;
    let history = request(&addr, "GET", "/api/v1/notifications", "")
        .unwrap()
        .1;
    for s in SECRETS {
        for (what, text) in [
            ("log", &log),
            ("/api/v2/status", &status),
            ("/api/v1/status/config", &config_api),
            ("/api/v1/notifications", &history),
        ] {
            assert!(!text.contains(s), "{s} in {what}");
        }
    }
    assert!(!log.contains("not delivered"), "{log}");
}

fn post_alerts(addr: &str, body: &str) {
    let auth = format!("Authorization: {}\r\n", admin_basic_auth());
    let (code, _, answer) = request_typed(
        addr,
        "POST",
        "/api/v2/alerts",
        &auth,
        "application/json",
        body,
    )
    .unwrap();
    assert_eq!(code, 200, "{answer}");
}

fn chrono_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn an_integration_alertmanager_does_not_know_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("appliance.yml"),
        "notify:\n  route: {receiver: a}\n  receivers:\n    - name: a\n      hipchat_configs: [{room_id: '1'}]\n",
    )
    .unwrap();
    let (code, out) = run_cli(dir.path(), &["check", "config", "appliance.yml"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("hipchat_configs"), "{out}");
    // A known integration the service would refuse: Webex without its token.
    std::fs::write(
        dir.path().join("appliance.yml"),
        "notify:\n  route: {receiver: a}\n  receivers:\n    - name: a\n      webex_configs: [{room_id: r}]\n",
    )
    .unwrap();
    let (code, out) = run_cli(dir.path(), &["check", "config", "appliance.yml"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("http_config.authorization"), "{out}");
}
