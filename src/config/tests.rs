use super::*;

#[test]
fn embedded_default_loads() {
    let c = Source::Embedded.load().unwrap();
    assert_eq!(c.global.scrape_interval.to_string(), "15s");
    assert!(c.collectors.appliance.enabled);
    // No rule_files: the embedded default rules.
    assert_eq!(c.rule_files, None);
    assert_eq!(c.collectors.discovery_interval.to_string(), "1m");
}

#[test]
fn the_embedded_rules_are_every_shipped_rule_file_and_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut shipped: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "yml"))
        .map(|e| format!("embedded:rules/{}", e.file_name().to_string_lossy()))
        .collect();
    shipped.sort();
    let mut embedded: Vec<String> = DEFAULT_RULES.iter().map(|(n, _)| n.to_string()).collect();
    embedded.sort();
    assert_eq!(embedded, shipped);
    for (name, text) in DEFAULT_RULES {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(name.trim_start_matches("embedded:"));
        assert_eq!(std::fs::read_to_string(file).unwrap(), *text);
        crate::rules::file::parse(text, name, Default::default()).unwrap();
    }
    assert_eq!(builtin_dashboards().len(), 6);
}

#[test]
fn rule_files_absent_empty_and_given_differ() {
    assert_eq!(parse("{}\n", "f.yml").unwrap().rule_files, None);
    assert_eq!(
        parse("rule_files: []\n", "f.yml").unwrap().rule_files,
        Some(vec![])
    );
    assert_eq!(
        parse("rule_files: [a.yml]\n", "f.yml").unwrap().rule_files,
        Some(vec!["a.yml".to_string()])
    );
}

#[test]
fn collector_ports_are_checked() {
    let c = parse(
        "collectors: {node: {listen_address: ':9100'}, postgres: {listen_address: '127.0.0.1:9187'}}\n",
        "f.yml",
    )
    .unwrap();
    assert_eq!(
        c.collectors.listen_addresses(),
        [("node", ":9100"), ("postgres", "127.0.0.1:9187")]
    );
    let e = parse("collectors: {redis: {listen_address: 'nope'}}\n", "f.yml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("collectors.redis.listen_address \"nope\""),
        "{e}"
    );
    let e = parse(
        "collectors: {node: {listen_address: ':9100'}, redis: {listen_address: '0.0.0.0:9100'}}\n",
        "f.yml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("node already listens there"), "{e}");
    let e = parse("collectors: {discovery_interval: 10ms}\n", "f.yml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("discovery_interval"), "{e}");
}

#[test]
fn errors_name_line_and_key() {
    let e = parse("global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: a\n    scrape_intervall: 5s\n", "f.yml").unwrap_err().to_string();
    assert!(e.starts_with("f.yml:5:"), "{e}");
    assert!(e.contains("scrape_configs[0].scrape_intervall:"), "{e}");
    let e = parse("global:\n  scrape_interval: 15x\n", "f.yml")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("f.yml:2:"), "{e}");
    assert!(e.contains("unknown unit"), "{e}");
    let e = parse("scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - source_labels: [a]\n        regex: '(('\n        target_label: b\n", "f.yml").unwrap_err().to_string();
    assert!(e.contains("error parsing regexp"), "{e}");
    assert!(
        e.contains("scrape_configs[0].relabel_configs[0].regex"),
        "{e}"
    );
    assert!(
        e.starts_with("f.yml:4:") || e.starts_with("f.yml:5:"),
        "{e}"
    );
}

#[test]
fn duplicate_jobs_and_timeouts_rejected() {
    let e = parse("scrape_configs:\n  - job_name: a\n  - job_name: a\n", "f")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("found multiple scrape configs with job name \"a\""),
        "{e}"
    );
    let e = parse(
        "scrape_configs:\n  - job_name: a\n    scrape_interval: 1s\n    scrape_timeout: 2s\n",
        "f",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("f:2:") && e.contains("scrape timeout greater than scrape interval"),
        "{e}"
    );
}

#[test]
fn env_expansion() {
    std::env::set_var("APPLIANCE_TEST_TARGET", "127.0.0.1:9100");
    let c = parse("scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['${APPLIANCE_TEST_TARGET}', '${APPLIANCE_UNSET_X:-h:1}']\n    relabel_configs:\n      - source_labels: [__address__]\n        target_label: x\n        replacement: '${1}'\n", "f").unwrap();
    assert_eq!(
        c.scrape_configs[0].static_configs[0].targets,
        vec!["127.0.0.1:9100", "h:1"]
    );
    assert_eq!(c.scrape_configs[0].relabel_configs[0].replacement, "${1}");
    let e = parse(
        "global:\n  external_labels:\n    a: ${APPLIANCE_SURELY_UNSET}\n",
        "f",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("f:3:") && e.contains("APPLIANCE_SURELY_UNSET"),
        "{e}"
    );
}

#[test]
fn secrets_redacted_in_yaml() {
    let c = parse("scrape_configs:\n  - job_name: a\n    basic_auth:\n      username: u\n      password: hunter2\n    authorization:\n      credentials: tok\n", "f");
    // basic_auth and authorization together are refused, as in Prometheus.
    assert!(c.is_err());
    let c = parse("scrape_configs:\n  - job_name: a\n    basic_auth:\n      username: u\n      password: hunter2\n", "f").unwrap();
    let y = c.to_redacted_yaml();
    assert!(!y.contains("hunter2") && y.contains("<secret>"), "{y}");
}

#[test]
fn prometheus_style_scrape_config_is_accepted() {
    let text = r#"
global:
  scrape_interval: 15s
  external_labels: {monitor: codelab}
scrape_configs:
  - job_name: node
    honor_labels: true
    metrics_path: /metrics
    scheme: http
    params:
      collect[]: [cpu, meminfo]
    sample_limit: 10000
    label_limit: 30
    label_name_length_limit: 200
    label_value_length_limit: 200
    body_size_limit: 10MB
    static_configs:
      - targets: ['localhost:9100']
        labels: {env: prod}
    file_sd_configs:
      - files: ['/etc/prometheus/targets/*.json']
        refresh_interval: 1m
    relabel_configs:
      - source_labels: [__address__]
        regex: '(.*):\d+'
        target_label: host
      - action: hashmod
        source_labels: [__address__]
        modulus: 4
        target_label: __tmp_hash
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: 'go_.*'
        action: drop
    tls_config:
      insecure_skip_verify: true
    authorization:
      credentials_file: /run/secrets/token
"#;
    let c = parse(text, "p.yml").unwrap();
    assert_eq!(c.scrape_configs[0].body_size_limit.unwrap().0, 10 << 20);
}

#[test]
fn readme_example_config_parses() {
    let readme = include_str!("../../README.md");
    // The annotated config (the README's other yaml blocks are Compose and rule files).
    let start = readme
        .find("```yaml\n# A value marked")
        .expect("README has the annotated config")
        + 8;
    let end = start + readme[start..].find("```").unwrap();
    let c = parse(&readme[start..end], "README.md").unwrap();
    assert_eq!(c.scrape_configs[0].job_name, "node");
}

#[test]
fn notify_section_is_checked_and_redacted() {
    let good = "notify:\n  route: {receiver: slack}\n  receivers:\n    - name: slack\n      slack_configs:\n        - api_url: https://hooks.slack.com/services/SECRET\n";
    let c = parse(good, "a.yml").unwrap();
    let y = c.to_redacted_yaml();
    assert!(!y.contains("SECRET") && y.contains("<secret>"), "{y}");
    let bad = "scrape_configs: []\nnotify:\n  route: {receiver: nobody}\n  receivers: []\n";
    let e = parse(bad, "b.yml").unwrap_err().to_string();
    assert!(
        e.contains("b.yml:2") && e.contains("undefined receiver \"nobody\" used in route"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("am.yml"),
        "route: {receiver: x}\nreceivers: [{name: x}]\n",
    )
    .unwrap();
    let p = dir.path().join("c.yml");
    std::fs::write(&p, "notify: {config_file: am.yml}\n").unwrap();
    parse(&std::fs::read_to_string(&p).unwrap(), p.to_str().unwrap()).unwrap();
    std::fs::write(dir.path().join("am.yml"), "route: {}\n").unwrap();
    let e = parse(&std::fs::read_to_string(&p).unwrap(), p.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("am.yml") && e.contains("root route must specify a default receiver"),
        "{e}"
    );
}

#[test]
fn env_references_in_comments_are_left_alone() {
    // A README example mentioned `${PGPASSWORD}` in a comment and failed to load.
    let text = "# set ${UNSET_IN_TESTS_X} first\nglobal:  # or ${UNSET_IN_TESTS_Y}\n  scrape_interval: \"15s\" # '${UNSET_IN_TESTS_Z}'\n";
    assert_eq!(super::expand_env(text, "t.yml").unwrap(), text);
    // Outside comments (also after a `#` inside quotes or inside a word) they are required.
    let err = super::expand_env("a: \"x #${UNSET_IN_TESTS_X}\"\n", "t.yml").unwrap_err();
    assert!(err.to_string().contains("UNSET_IN_TESTS_X"), "{err}");
    let err = super::expand_env("a: b#${UNSET_IN_TESTS_X}\n", "t.yml").unwrap_err();
    assert!(err.to_string().contains("UNSET_IN_TESTS_X"), "{err}");
}

#[test]
fn the_grafana_section_is_checked_and_its_secrets_redacted() {
    let c = parse(
        "grafana:\n  url: http://admin:urlpass@grafana:3000\n  basic_auth: {username: admin, password: basicpass}\n",
        "f.yml",
    )
    .unwrap();
    let g = c.grafana.as_ref().unwrap();
    assert_eq!(g.folder, "Appliance");
    assert_eq!(g.datasource_name, "Appliance");
    let yaml = c.to_redacted_yaml();
    assert!(
        !yaml.contains("urlpass") && !yaml.contains("basicpass"),
        "{yaml}"
    );
    let e = parse("grafana: {url: 'ftp://x'}\n", "f.yml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("f.yml:1:") && e.contains("grafana.url"), "{e}");
    let e = parse("grafana: {url: 'http://g', folders: x}\n", "f.yml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("folders"), "{e}");
}
