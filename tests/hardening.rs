//! The probes of issue 13 (an attacker's and an unlucky operator's inputs), each as a test
//! against the binary: hostile queries, rule files and reloads must be refused while the
//! process lives and keeps answering.

mod common;

use common::run_cli as run;

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
    // The failure was logged and counted together (issue 13.9).
    let (_, metrics) = common::get(&addr, "/metrics").unwrap();
    assert!(
        metrics.contains("appliance_errors_total{component=\"config\",kind=\"reload\"} 1"),
        "{metrics}"
    );
}

/// Issue 13: a distinct marker in every secret-bearing field of the config; none may appear
/// in any endpoint, the UI's responses, the stored data or the debug log.
#[test]
fn no_secret_marker_appears_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let probe_port = common::free_port();
    let _probe = common::Target::start(probe_port, "ok 1\n");
    let markers: Vec<String> = (1..=16).map(|i| format!("Mark{i:02}Zq")).collect();
    let m = |i: usize| markers[i - 1].as_str();
    std::fs::write(
        dir.path().join("alerts.yml"),
        "groups:\n  - name: a\n    interval: 1s\n    rules:\n      - alert: Always\n        expr: vector(1)\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("token"), m(16)).unwrap();
    let cfg = format!(
        r#"global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}
rule_files: [alerts.yml]
web:
  auth:
    read_tokens: ['{m13}']
scrape_configs:
  - job_name: guarded
    basic_auth: {{username: scraper, password: '{m1}'}}
    static_configs: [{{targets: ['127.0.0.1:{probe_port}']}}]
  - job_name: bearer
    authorization: {{credentials: '{m2}'}}
    static_configs: [{{targets: ['127.0.0.1:{probe_port}']}}]
collectors:
  node: {{enabled: false}}
  containers: {{enabled: false}}
  postgres:
    enabled: true
    instances:
      - dsn: 'postgresql://postgres:{m3}@127.0.0.1:5432/postgres?sslmode=disable'
      - dsn: 'host=127.0.0.1 port=5432 user=postgres password={m4} dbname=postgres'
  redis:
    enabled: true
    instances: [{{url: 'redis://:{m5}@127.0.0.1:6379/0'}}]
  celery:
    enabled: true
    broker_url: 'redis://:{m6}@127.0.0.1:6379/0'
  probes:
    - target: 'http://probe:{m7}@127.0.0.1:{probe_port}/health?token={m14}'
notify:
  route: {{receiver: team, group_wait: 1s, group_interval: 2s}}
  receivers:
    - name: team
      webhook_configs:
        - url: 'http://127.0.0.1:1/hook/{m8}'
          http_config:
            proxy_url: 'http://proxyuser:{m9}@127.0.0.1:1'
            basic_auth: {{username: u, password: '{m10}'}}
      slack_configs:
        - api_url: 'http://127.0.0.1:1/services/{m11}'
          send_resolved: true
      email_configs:
        - to: ops@example.org
          from: appliance@example.org
          smarthost: '127.0.0.1:1'
          auth_username: ops
          auth_password: '{m12}'
          require_tls: false
          headers: {{X-Api-Token: '{m15}'}}
"#,
        m1 = m(1),
        m2 = m(2),
        m3 = m(3),
        m4 = m(4),
        m5 = m(5),
        m6 = m(6),
        m7 = m(7),
        m8 = m(8),
        m9 = m(9),
        m10 = m(10),
        m11 = m(11),
        m12 = m(12),
        m13 = m(13),
        m14 = m(14),
        m15 = m(15),
    );
    let cfg_path = dir.path().join("appliance.yml");
    std::fs::write(&cfg_path, &cfg).unwrap();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let _app = common::appliance_with_args(
        dir.path(),
        Some(&cfg_path),
        &addr,
        &["--log-level", "debug"],
    );
    common::wait_ready(&addr);
    // Let every collector, probe, rule and receiver run (and fail) at least once.
    common::wait_for(40, "a failed delivery of every receiver kind", || {
        let v = common::get_json(&addr, "/api/v1/notifications");
        let kinds: std::collections::BTreeSet<String> = v["data"]
            .as_array()?
            .iter()
            .filter(|e| e["success"] == false)
            .filter_map(|e| e["integration"].as_str().map(str::to_string))
            .collect();
        (kinds.len() == 3).then_some(())
    });
    common::wait_for(20, "the probe's series", || {
        common::query_value(&addr, "probe_success").map(|_| ())
    });
    let instances = common::get_json(&addr, "/api/v1/label/instance/values");
    assert!(
        instances["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == &format!("http://127.0.0.1:{probe_port}/health?token=<secret>")),
        "the probe's instance has no userinfo: {instances}"
    );
    let mut pages = Vec::new();
    for path in [
        "/",
        "/api/v1/status/config",
        "/api/v1/status/flags",
        "/api/v1/status/runtimeinfo",
        "/api/v1/status/buildinfo",
        "/api/v1/status/tsdb",
        "/api/v1/targets",
        "/api/v1/targets/metadata",
        "/api/v1/metadata",
        "/api/v1/labels",
        "/api/v1/label/instance/values",
        "/api/v1/label/addr/values",
        "/api/v1/series?match[]=%7B__name__%3D~%22.%2B%22%7D",
        "/api/v1/query?query=%7B__name__%3D~%22.%2B%22%7D",
        "/api/v1/rules",
        "/api/v1/alerts",
        "/api/v1/notifications",
        "/api/v2/status",
        "/api/v2/receivers",
        "/api/v2/alerts",
        "/api/v2/alerts/groups",
        "/api/v2/silences",
        "/metrics",
        "/metrics/redis",
        "/metrics/postgres",
        "/metrics/celery",
        "/federate?match[]=%7B__name__%3D~%22.%2B%22%7D",
    ] {
        let (code, body) = common::get(&addr, path).unwrap();
        pages.push((format!("GET {path} ({code})"), body));
    }
    let mut dump = |root: &Path| {
        let mut stack = vec![root.to_path_buf()];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else if p != cfg_path && !p.ends_with("token") {
                let bytes = std::fs::read(&p).unwrap();
                pages.push((
                    p.display().to_string(),
                    String::from_utf8_lossy(&bytes).into(),
                ));
            }
        }
    };
    dump(dir.path());
    let log = std::fs::read_to_string(dir.path().join("appliance.log")).unwrap();
    assert!(log.contains("DEBUG"), "the log is at debug level");
    // Work runs in spans: a delivery's and a scrape's lines say whose they are.
    assert!(
        log.contains("delivery{receiver=team"),
        "no delivery span in the log"
    );
    assert!(log.contains("scrape{job="), "no scrape span in the log");
    for (name, body) in &pages {
        for mk in &markers {
            assert!(
                !body.contains(mk.as_str()),
                "{mk} in {name}:\n{}",
                excerpt(body, mk)
            );
        }
    }
    let status = &pages[1].1;
    assert!(status.contains("<secret>"), "{status}");
}

fn excerpt(body: &str, marker: &str) -> String {
    let i = body.find(marker).unwrap_or(0);
    let start = body[..i]
        .char_indices()
        .rev()
        .nth(200)
        .map_or(0, |(j, _)| j);
    body[start..].chars().take(400).collect()
}

fn labels_line(n: usize) -> String {
    let mut line = String::from("wide{");
    for i in 0..n {
        line.push_str(&format!("l{i}=\"v\","));
    }
    line.push_str("} 1\n");
    line
}

/// Issue 13: 100k labels on one line took 28 s per scrape on an async worker, ignoring
/// `scrape_timeout` and pausing `/-/healthy`; 1M labels burned a core for minutes.
#[test]
fn a_scrape_of_100k_or_1m_labels_fails_fast_and_the_server_stays_responsive() {
    let dir = tempfile::tempdir().unwrap();
    let (p100k, p1m, plimited) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let _t100k = common::Target::start(p100k, Box::leak(labels_line(100_000).into_boxed_str()));
    let _t1m = common::Target::start(p1m, Box::leak(labels_line(1_000_000).into_boxed_str()));
    let _tl = common::Target::start(plimited, Box::leak(labels_line(40).into_boxed_str()));
    let (app, addr) = common::appliance_with_config(
        dir.path(),
        &format!(
            "global: {{scrape_interval: 2s, scrape_timeout: 2s}}
scrape_configs:
  - job_name: wide
    static_configs: [{{targets: ['127.0.0.1:{p100k}', '127.0.0.1:{p1m}']}}]
  - job_name: limited
    label_limit: 30
    static_configs: [{{targets: ['127.0.0.1:{plimited}']}}]
"
        ),
    );
    // While the hostile targets are scraped, the server answers at once, every time.
    let until = Instant::now() + Duration::from_secs(6);
    let mut slowest = Duration::ZERO;
    while Instant::now() < until {
        let t = Instant::now();
        let (code, _) = common::get(&addr, "/-/healthy").unwrap();
        assert_eq!(code, 200);
        slowest = slowest.max(t.elapsed());
        let t = Instant::now();
        common::get_json(&addr, "/api/v1/targets");
        slowest = slowest.max(t.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(1),
        "slowest answer {slowest:?}"
    );
    let errors: Vec<(String, String)> = common::wait_for(20, "three failed scrapes", || {
        let v = common::get_json(&addr, "/api/v1/targets");
        let errs: Vec<(String, String)> = v["data"]["activeTargets"]
            .as_array()?
            .iter()
            .filter(|t| t["health"] == "down")
            .map(|t| {
                (
                    t["scrapeUrl"].as_str().unwrap_or("").to_string(),
                    t["lastError"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        (errs.len() == 3).then_some(errs)
    });
    for (url, err) in &errors {
        assert!(
            err.len() < 300,
            "{url}: an unbounded error of {} bytes",
            err.len()
        );
        if url.contains(&plimited.to_string()) {
            assert!(
                err.contains(
                    "label_limit exceeded (metric: wide, number of labels: 43, limit: 30)"
                ),
                "{url}: {err}"
            );
        } else {
            assert!(
                err.contains("the most a series may have is 10000"),
                "{url}: {err}"
            );
        }
    }
    assert_eq!(
        common::query_value(&addr, "sum(up{job=~\"wide|limited\"})"),
        Some(0.0)
    );
    drop(app);
}

fn login_cookie(addr: &str) -> String {
    let body = format!("username=admin&password={}&next=", common::ADMIN_PASSWORD);
    let (code, head, _) = common::request_with(addr, "POST", "/-/login", "", &body).unwrap();
    assert_eq!(code, 303, "{head}");
    let line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    line.split_once(':')
        .unwrap()
        .1
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_string()
}

/// Issue 13: cookie-authenticated mutations were accepted cross-origin, a `text/plain` JSON
/// body was taken, logout was a GET, failed logins locked the admin's session out, and the
/// responses carried no framing or content policy.
#[test]
fn browser_requests_are_held_to_their_origin_and_types() {
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) = common::appliance_with_config(dir.path(), "global: {}\n");
    let cookie = login_cookie(&addr);
    let silence = r#"{"matchers":[{"name":"alertname","value":"X","isRegex":false}],"startsAt":"2026-01-01T00:00:00Z","endsAt":"2099-01-01T00:00:00Z","createdBy":"t","comment":"c"}"#;
    let json = |extra: &str| format!("Cookie: {cookie}\r\n{extra}").replace("\r\n\r\n", "\r\n");
    // The request helper sends a form content type; JSON needs its own.
    let post = |path: &str, headers: &str, ct: &str, body: &str| {
        common::request_typed(&addr, "POST", path, headers, ct, body)
            .unwrap()
            .0
    };
    let evil = json("Origin: http://evil.example\r\n");
    assert_eq!(
        post("/api/v2/silences", &evil, "application/json", silence),
        403
    );
    assert_eq!(
        post("/-/reload", &evil, "application/x-www-form-urlencoded", ""),
        403
    );
    let evil_referer = json("Referer: http://evil.example/page\r\n");
    assert_eq!(
        post(
            "/api/v2/silences",
            &evil_referer,
            "application/json",
            silence
        ),
        403
    );
    let own = json(&format!("Origin: http://{addr}\r\n"));
    assert_eq!(
        post("/api/v2/silences", &own, "application/json", silence),
        200
    );
    assert_eq!(post("/api/v2/silences", &own, "text/plain", silence), 415);
    // Basic auth (tools) is not a browser's ambient credential: no origin needed.
    let basic = format!("Authorization: {}\r\n", common::admin_basic_auth());
    assert_eq!(
        post("/api/v2/silences", &basic, "application/json", silence),
        200
    );
    // Logout only by POST.
    let (code, _) = common::get(&addr, "/-/logout").unwrap();
    assert_eq!(code, 405);
    // Failed logins throttle the address but not the admin's session.
    for _ in 0..6 {
        let bad = "username=admin&password=wrong&next=";
        common::request_with(&addr, "POST", "/-/login", "", bad).unwrap();
    }
    let wrong = "Authorization: Basic YWRtaW46d3Jvbmc=\r\n";
    let (code, _, _) = common::request_with(&addr, "GET", "/api/v2/silences", wrong, "").unwrap();
    assert!(code == 200 || code == 429, "{code}");
    let (code, _, _) = common::request_with(
        &addr,
        "POST",
        "/api/v1/admin/tsdb/clean_tombstones",
        wrong,
        "",
    )
    .unwrap();
    assert_eq!(code, 429, "the guesser is throttled");
    assert_eq!(
        post(
            "/api/v1/admin/tsdb/clean_tombstones",
            &own,
            "application/x-www-form-urlencoded",
            ""
        ),
        204
    );
    let (code, head, _) =
        common::request_with(&addr, "GET", "/", &format!("Cookie: {cookie}\r\n"), "").unwrap();
    assert_eq!(code, 200, "the admin's session still works: {head}");
    let head = head.to_ascii_lowercase();
    for h in [
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
        "content-security-policy: default-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(head.contains(h), "{h} missing in {head}");
    }
}

/// Issue 13: 200 slow connections stayed open. Clients that send half a request, or nothing,
/// are dropped after the header timeout, and others are served meanwhile.
#[test]
fn slow_and_idle_connections_are_closed() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) = common::appliance_with_config(dir.path(), "global: {}\n");
    let mut conns = Vec::new();
    for i in 0..200 {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
        }
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        conns.push(s);
    }
    let started = Instant::now();
    let (code, _) = common::get(&addr, "/-/healthy").unwrap();
    assert_eq!(code, 200, "served while 200 slow clients wait");
    for (i, s) in conns.iter_mut().enumerate() {
        let mut buf = [0u8; 512];
        // The server closes (0 bytes, or a reset, or a 408 then close); a timeout here means
        // it kept the connection.
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) if started.elapsed() < Duration::from_secs(25) => break,
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) => panic!(
                    "connection {i} still open after {:?}: {e}",
                    started.elapsed()
                ),
            }
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
}

fn curl(args: &[&str]) -> (bool, String) {
    common::outcome(
        Command::new("curl")
            .args(["-sS", "-v", "--max-time", "10"])
            .args(args),
    )
}

/// `web.tls_config`: HTTPS with the configured certificate, re-read when its files change,
/// and client certificates when asked for.
#[test]
fn https_with_certificate_reload_and_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pki) = common::Pki::new(dir.path()) else {
        return;
    };
    let (cert, key) = pki.issue("server", "first");
    let (client_cert, client_key) = pki.issue("client", "a-client");
    let port = common::free_port();
    let cfg = dir.path().join("appliance.yml");
    std::fs::write(
        &cfg,
        format!(
            "web:\n  tls_config:\n    cert_file: {cert}\n    key_file: {key}\n    client_ca_file: {ca}\n    client_auth_type: RequireAndVerifyClientCert\n",
            ca = pki.ca
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let _app = common::appliance(dir.path(), Some(&cfg), &addr);
    let url = format!("https://127.0.0.1:{port}/-/healthy");
    let with_client = [
        "--cacert",
        &pki.ca,
        "--cert",
        &client_cert,
        "--key",
        &client_key,
    ];
    let (ok, out) = common::wait_for(30, "the HTTPS server", || {
        let r = curl(&[&with_client[..], &[url.as_str()]].concat());
        r.0.then_some(r)
    });
    assert!(ok && out.contains("CN=first"), "{out}");
    let (ok, out) = curl(&["--cacert", &pki.ca, &url]);
    assert!(!ok, "no client certificate, no answer: {out}");
    let (ok, _) = curl(
        &["http://127.0.0.1:".to_string() + &port.to_string() + "/-/healthy"]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(!ok, "plain HTTP is not served");
    // A renewed certificate is picked up without a restart.
    let (new_cert, new_key) = pki.issue("renewed", "renewed");
    std::fs::copy(&new_key, &key).unwrap();
    std::fs::copy(&new_cert, &cert).unwrap();
    common::wait_for(20, "the renewed certificate served", || {
        let (ok, out) = curl(&[&with_client[..], &[url.as_str()]].concat());
        (ok && out.contains("CN=renewed")).then_some(())
    });
    // A broken tls_config is refused by check config, naming the field.
    std::fs::write(&key, "not a key").unwrap();
    let (code, out) = run(dir.path(), &["check", "config", "appliance.yml"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("web.tls_config.key_file"), "{out}");
}

/// Issue 13: a silence matching everything was accepted, an alert of 100k labels cost 15 s
/// of CPU, and `alerting.alertmanagers` refused Prometheus's `basic_auth`.
#[test]
fn alertmanager_api_parity_and_authenticated_external_alertmanagers() {
    let dir = tempfile::tempdir().unwrap();
    // B receives alerts; its API needs the admin for POST /api/v2/alerts.
    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    let (_b, b) = common::appliance_with_config(
        &b_dir,
        "notify:\n  route: {receiver: 'null'}\n  receivers: [{name: 'null'}]\n",
    );
    let json_post = |addr: &str, path: &str, body: &str| {
        let auth = format!("Authorization: {}\r\n", common::admin_basic_auth());
        let (code, _, out) =
            common::request_typed(addr, "POST", path, &auth, "application/json", body).unwrap();
        (code, out)
    };
    let everything = r#"{"matchers":[{"name":"alertname","value":".*","isRegex":true,"isEqual":true}],"startsAt":"2026-01-01T00:00:00Z","endsAt":"2099-01-01T00:00:00Z","createdBy":"t","comment":"c"}"#;
    let (code, out) = json_post(&b, "/api/v2/silences", everything);
    assert_eq!(code, 400, "{out}");
    assert!(out.contains("must not match the empty string"), "{out}");
    let labels: Vec<String> = (0..100_000).map(|i| format!("\"l{i}\":\"v\"")).collect();
    let wide = format!("[{{\"labels\":{{{}}}}}]", labels.join(","));
    let started = Instant::now();
    let (code, out) = json_post(&b, "/api/v2/alerts", &wide);
    assert_eq!(code, 400, "{}", &out[..out.len().min(300)]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A sends its alerts to B with basic auth, as a prometheus.yml would.
    std::fs::write(
        dir.path().join("alerts.yml"),
        "groups:\n  - name: a\n    interval: 1s\n    rules:\n      - alert: FromA\n        expr: vector(1)\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("am-pass"), common::ADMIN_PASSWORD).unwrap();
    let (_a, _a_addr) = common::appliance_with_config(
        dir.path(),
        &format!(
            "global: {{evaluation_interval: 1s}}
rule_files: [alerts.yml]
alerting:
  alertmanagers:
    - static_configs: [{{targets: ['{b}']}}]
      basic_auth: {{username: admin, password_file: am-pass}}
"
        ),
    );
    common::wait_for(30, "FromA received by B", || {
        let v = common::get_json(&b, "/api/v2/alerts");
        v.as_array()?
            .iter()
            .any(|a| a["labels"]["alertname"] == "FromA")
            .then_some(())
    });
}

/// Issue 13: `check config` read `rule_files: [/dev/zero]` without bound and passed what
/// `run` refuses (a bad `listen_address`, a missing `admin_password_file`).
#[test]
fn check_config_refuses_what_run_refuses() {
    let dir = tempfile::tempdir().unwrap();
    for (yaml, expect) in [
        ("rule_files: [/dev/zero]\n", "not a regular file"),
        ("web: {listen_address: 'nonsense'}\n", "web.listen_address"),
        ("web: {listen_address: ':99999'}\n", "web.listen_address"),
        (
            "web: {auth: {admin_password_file: /nonexistent/pw}}\n",
            "web.auth.admin_password_file",
        ),
    ] {
        std::fs::write(dir.path().join("c.yml"), yaml).unwrap();
        let (code, out) = run(dir.path(), &["check", "config", "c.yml"]);
        assert_ne!(code, 0, "{yaml}: {out}");
        assert!(out.contains(expect), "{yaml}: {out}");
        // And run refuses the same, without starting.
        let out = Command::new(env!("CARGO_BIN_EXE_appliance"))
            .current_dir(dir.path())
            .args([
                "run",
                "--config",
                "c.yml",
                "--data-dir",
                "d",
                "--listen",
                "127.0.0.1:0",
            ])
            .env("APPLIANCE_ADMIN_PASSWORD", "x")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{yaml}");
    }
}
