//! HTTP and TCP probes end to end: a local HTTPS service with a self-signed certificate
//! (its expiry reported to the second), a redirect followed, a body regex, a failing status,
//! a closed port (`probe_success 0`), and `/metrics/blackbox?target=` for an external
//! Prometheus.

mod common;

use std::process::{Command, Stdio};

use common::*;

/// A self-signed certificate for 127.0.0.1 valid for 30 days: (cert, key, notAfter as Unix
/// seconds), or None where openssl is missing outside CI.
fn self_signed(dir: &std::path::Path) -> Option<(String, String, i64)> {
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            &key,
            "-out",
            &cert,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !available(ok, "openssl") {
        return None;
    }
    let out = run_ok(Command::new("openssl").args(["x509", "-enddate", "-noout", "-in", &cert]));
    let text = String::from_utf8_lossy(&out.stdout);
    let date = text.trim().trim_start_matches("notAfter=");
    let t = chrono::NaiveDateTime::parse_from_str(date, "%b %e %H:%M:%S %Y GMT")
        .unwrap_or_else(|e| panic!("{date:?}: {e}"))
        .and_utc()
        .timestamp();
    Some((cert, key, t))
}

#[test]
fn http_and_tcp_probes() {
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key, not_after)) = self_signed(dir.path()) else {
        return;
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/testdata/https_health.py"
    );
    let (_svc, svc_addr) = spawn_with_port(Command::new("python3").args([script, &cert, &key]));
    let svc = format!("https://{svc_addr}");
    let closed = free_port();
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = open.local_addr().unwrap().port();
    let cfg = format!(
        r#"global: {{scrape_interval: 1s, scrape_timeout: 1s}}
collectors:
  appliance: {{enabled: false}}
  node: {{enabled: false}}
  containers: {{enabled: false}}
  postgres: {{enabled: false}}
  redis: {{enabled: false}}
  probes:
    - target: {svc}/health
      body_regex: 'status: ok'
      tls_config: {{insecure_skip_verify: true}}
    - target: {svc}/moved
      tls_config: {{insecure_skip_verify: true}}
    - target: {svc}/broken
      tls_config: {{insecure_skip_verify: true}}
    - target: {svc}/health?strict
      body_regex: 'never there'
      tls_config: {{insecure_skip_verify: true}}
    - target: {svc}/health?verified
      timeout: 800ms
    - target: 127.0.0.1:{closed}
      module: tcp
      timeout: 800ms
    - target: 127.0.0.1:{open_port}
      module: tcp
"#
    );
    let (_app, addr) = appliance_with_config(dir.path(), &cfg);
    let q = |expr: &str| query_value(&addr, expr);
    let inst = |t: &str| format!("{{job=\"blackbox\",instance=\"{t}\"}}");
    wait_for(20, "every probe ran", || {
        (q("count(probe_success{job=\"blackbox\"})")? == 7.0).then_some(())
    });
    let health = format!("{svc}/health");
    assert_eq!(q(&format!("probe_success{}", inst(&health))), Some(1.0));
    assert_eq!(
        q(&format!("probe_http_status_code{}", inst(&health))),
        Some(200.0)
    );
    assert_eq!(q(&format!("probe_http_ssl{}", inst(&health))), Some(1.0));
    assert_eq!(
        q(&format!("probe_ssl_earliest_cert_expiry{}", inst(&health))),
        Some(not_after as f64),
        "the certificate's notAfter"
    );
    assert!(
        q(&format!(
            "probe_http_duration_seconds{{instance=\"{health}\",phase=\"tls\"}}"
        ))
        .unwrap()
            > 0.0
    );
    assert!(q(&format!("probe_duration_seconds{}", inst(&health))).unwrap() > 0.0);
    let moved = format!("{svc}/moved");
    assert_eq!(q(&format!("probe_success{}", inst(&moved))), Some(1.0));
    assert_eq!(
        q(&format!("probe_http_redirects{}", inst(&moved))),
        Some(1.0)
    );
    let broken = format!("{svc}/broken");
    assert_eq!(q(&format!("probe_success{}", inst(&broken))), Some(0.0));
    assert_eq!(
        q(&format!("probe_http_status_code{}", inst(&broken))),
        Some(500.0)
    );
    let strict = format!("{svc}/health?strict");
    assert_eq!(q(&format!("probe_success{}", inst(&strict))), Some(0.0));
    assert_eq!(
        q(&format!("probe_failed_due_to_regex{}", inst(&strict))),
        Some(1.0)
    );
    // Without insecure_skip_verify a self-signed certificate fails the probe.
    let verified = format!("{svc}/health?verified");
    assert_eq!(q(&format!("probe_success{}", inst(&verified))), Some(0.0));
    let closed_t = format!("127.0.0.1:{closed}");
    assert_eq!(q(&format!("probe_success{}", inst(&closed_t))), Some(0.0));
    let open_t = format!("127.0.0.1:{open_port}");
    assert_eq!(q(&format!("probe_success{}", inst(&open_t))), Some(1.0));
    // Each probe is a target whose scrape succeeds even when the probe fails.
    assert_eq!(q("count(up{job=\"blackbox\"} == 1)"), Some(7.0));
    // The blackbox_exporter-style endpoint for an external Prometheus.
    let (s, page) = get(
        &addr,
        &format!(
            "/metrics/blackbox?target={}",
            form_urlencoded::byte_serialize(closed_t.as_bytes()).collect::<String>()
        ),
    )
    .unwrap();
    assert_eq!(s, 200);
    assert!(page.contains("probe_success 0\n"), "{page}");
    drop(open);
}

#[test]
fn a_bad_probe_is_a_config_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yml");
    std::fs::write(
        &cfg,
        "collectors:\n  probes:\n    - target: 'http://x'\n      body_regex: '('\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_appliance"))
        .args(["check", "config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("collectors.probes[0]: body_regex"), "{err}");
}
