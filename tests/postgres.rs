//! The built-in PostgreSQL collector beside Debian's postgres_exporter on the same local
//! server: every family we print that the exporter prints has the same name, type, HELP and
//! label names; values that do not move between the two reads agree; a stopped server turns
//! `pg_up` to 0 within one scrape while other collectors keep their pace.

mod common;

use std::process::{Command, Stdio};

use common::*;

/// The three queries of the Debian package's example queries.yaml that the collector
/// implements, so the real exporter prints those families too.
fn example_queries(dir: &std::path::Path) -> std::path::PathBuf {
    let src = "/usr/share/doc/prometheus-postgres-exporter/examples/queries.yaml";
    let text = std::fs::read_to_string(src).unwrap();
    let mut keep = String::new();
    let mut on = false;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.starts_with('#') && line.ends_with(':') {
            on = matches!(
                line,
                "pg_replication:" | "pg_postmaster:" | "pg_stat_user_tables:"
            );
        }
        if on {
            keep.push_str(line);
            keep.push('\n');
        }
    }
    let p = dir.join("queries.yaml");
    std::fs::write(&p, keep).unwrap();
    p
}

#[test]
fn postgres_collector_matches_postgres_exporter() {
    let bin = "/usr/bin/prometheus-postgres-exporter";
    if !available(std::path::Path::new(bin).exists(), bin) {
        return;
    }
    if !local_postgres() {
        return;
    }
    // A user table so pg_stat_user_tables has rows on both sides.
    let schema = format!("appliance_test_{}", std::process::id());
    psql(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.orders (id int); INSERT INTO {schema}.orders SELECT generate_series(1, 10); ANALYZE {schema}.orders;"
    ));
    struct Drop_(String);
    impl Drop for Drop_ {
        fn drop(&mut self) {
            let _ = Command::new("psql")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
                .arg(format!("DROP SCHEMA {} CASCADE", self.0))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    let _cleanup = Drop_(schema.clone());

    let dir = tempfile::tempdir().unwrap();
    let dsn = "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable";
    let (_pe, paddr) = exporter(
        Command::new(bin)
            .arg(format!(
                "--extend.query-path={}",
                example_queries(dir.path()).display()
            ))
            .env("DATA_SOURCE_NAME", dsn),
        "pg_up 1",
    );
    let (_app, addr) = appliance_with_config(
        dir.path(),
        &format!("collectors: {{appliance: {{enabled: false}}, node: {{enabled: false}}, containers: {{enabled: false}}, postgres: {{enabled: true, instances: [{{dsn: '{dsn}'}}]}}}}\n"),
    );
    let ours = families(&get(&addr, "/metrics/postgres").unwrap().1);
    let theirs = families(&get(&paddr, "/metrics").unwrap().1);

    let mut same = 0;
    let mut only_ours = Vec::new();
    for (name, (kind, help, labels, _)) in &ours {
        match theirs.get(name) {
            None => only_ours.push(name.clone()),
            Some((k, h, l, _)) => {
                assert_eq!(kind, k, "{name}: type");
                assert_eq!(help, h, "{name}: HELP");
                assert_eq!(labels, l, "{name}: label names");
                same += 1;
            }
        }
    }
    assert!(
        only_ours.is_empty(),
        "families the exporter does not print: {only_ours:?}"
    );
    let real: Vec<&String> = theirs
        .keys()
        .filter(|n| {
            ![
                "go_",
                "process_",
                "promhttp_",
                "postgres_exporter_build_info",
                "pg_exporter_user_queries_load_error",
            ]
            .iter()
            .any(|p| n.starts_with(p))
        })
        .collect();
    let covered = real
        .iter()
        .filter(|n| ours.contains_key(n.as_str()))
        .count();
    eprintln!(
        "postgres collector coverage: {covered} of postgres_exporter's {} families (less go_/process_/promhttp_, build info and queries-file errors), {same} compared",
        real.len()
    );
    let missing: Vec<&&String> = real
        .iter()
        .filter(|n| !ours.contains_key(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "families only the exporter prints: {missing:?}"
    );
    for n in [
        "pg_stat_user_tables_n_live_tup",
        "pg_postmaster_start_time_seconds",
        "pg_settings_max_connections",
    ] {
        assert!(ours.contains_key(n), "{n}");
    }

    // Values that do not move between the two reads agree, series by series.
    let steady = |n: &str| {
        (n.starts_with("pg_settings_")
            && !n.starts_with("pg_settings_extra_float_digits") // set per session by the driver
            && !n.starts_with("pg_settings_statement_timeout"))
            || n == "pg_static"
            || n == "pg_postmaster_start_time_seconds"
            || n == "pg_stat_bgwriter_stats_reset_total"
            || n == "pg_stat_user_tables_n_live_tup"
            || n == "pg_database_size_bytes"
    };
    let mut compared = 0;
    for (name, (_, _, _, samples)) in ours.iter().filter(|(n, _)| steady(n)) {
        let theirs_samples = &theirs[name].3;
        for (series, v) in samples {
            let t = theirs_samples
                .get(series)
                .unwrap_or_else(|| panic!("{series}: not printed by postgres_exporter"));
            assert_eq!(v, t, "{series}");
            compared += 1;
        }
    }
    assert!(compared > 200, "only {compared} steady series compared");
    let rows = &ours["pg_stat_user_tables_n_live_tup"].3;
    assert!(
        rows.iter()
            .any(|(s, v)| s.contains(&format!("schemaname=\"{schema}\"")) && v == "10"),
        "{rows:?}"
    );
}

#[test]
fn a_stopped_server_is_pg_up_0_within_one_scrape() {
    if !local_postgres() {
        return;
    }
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    // Two instances: the throwaway server, and the local one over TLS (Debian's PostgreSQL
    // has ssl=on with its snakeoil certificate; sslmode=require encrypts without checking it,
    // as libpq does).
    let temp = format!("127.0.0.1:{}", pg.port);
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) = appliance_with_config(
        dir.path(),
        &format!("global: {{scrape_interval: 1s, scrape_timeout: 1s}}\ncollectors: {{containers: {{enabled: false}}, redis: {{enabled: false}}, postgres: {{enabled: true, timeout: 800ms, instances: [{{dsn: 'postgresql://postgres@{temp}/postgres?sslmode=disable'}}, {{dsn: 'postgresql://postgres@127.0.0.1:5432/postgres?sslmode=require'}}]}}}}\n"),
    );
    let q = |expr: &str| query_value(&addr, expr);
    let up = |server: &str| q(&format!("pg_up{{server=\"{server}\"}}"));
    wait_for(20, "pg_up 1 for both", || {
        (up(&temp)? == 1.0 && up("127.0.0.1:5432")? == 1.0).then_some(())
    });
    let out = run_ok(Command::new("psql").args([
        "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-Atc",
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name = 'appliance'",
    ]));
    let tls: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(tls >= 1, "the sslmode=require connection is encrypted");
    pg.ctl("stop");
    let stopped = std::time::Instant::now();
    wait_for(5, "pg_up 0 after the server stopped", || {
        (up(&temp)? == 0.0).then_some(())
    });
    let took = stopped.elapsed();
    eprintln!("pg_up went to 0 {took:?} after the server stopped");
    assert_eq!(
        up("127.0.0.1:5432"),
        Some(1.0),
        "the other instance is unaffected"
    );
    // The node collector's scrapes went on at their pace meanwhile.
    let node = q("max_over_time(scrape_duration_seconds{job=\"node\"}[10s])").unwrap();
    assert!(
        node < 0.5,
        "node scrape took {node}s while postgres was down"
    );
    let pgd = q("scrape_duration_seconds{job=\"postgres\"}").unwrap();
    assert!(pgd < 1.0, "postgres scrape took {pgd}s");
    // And back.
    pg.ctl("start");
    wait_for(20, "pg_up 1 after the restart", || {
        (up(&temp)? == 1.0).then_some(())
    });
}
