//! The built-in Redis collector beside Debian's redis_exporter on the same local server:
//! every family we print that the exporter prints has the same name, type, HELP and label
//! names, values that do not move between two reads agree, and a stopped server turns
//! `redis_up` to 0 within one scrape while other collectors keep their pace.

mod common;

use std::process::Command;

use common::*;

fn local_redis() -> bool {
    available(
        std::net::TcpStream::connect("127.0.0.1:6379").is_ok(),
        "Redis on 127.0.0.1:6379",
    )
}

#[test]
fn redis_collector_matches_redis_exporter() {
    let bin = "/usr/bin/prometheus-redis-exporter";
    if !available(std::path::Path::new(bin).exists(), bin) {
        return;
    }
    if !local_redis() {
        return;
    }
    let (_re, raddr) = exporter(
        Command::new(bin).arg("--redis.addr=redis://127.0.0.1:6379"),
        "redis_up 1",
    );
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) = appliance_with_config(
        dir.path(),
        "collectors: {appliance: {enabled: false}, node: {enabled: false}, containers: {enabled: false}, postgres: {enabled: false}, redis: {enabled: true, instances: [{url: 'redis://127.0.0.1:6379'}]}}\n",
    );
    let ours = families(&get(&addr, "/metrics/redis").unwrap().1);
    let theirs = families(&get(&raddr, "/metrics").unwrap().1);
    let mut only_ours = Vec::new();
    for (name, (kind, help, labels, _)) in &ours {
        match theirs.get(name) {
            None => only_ours.push(name.clone()),
            Some((k, h, l, _)) => {
                assert_eq!(kind, k, "{name}: type");
                assert_eq!(help, h, "{name}: HELP");
                assert_eq!(labels, l, "{name}: label names");
            }
        }
    }
    // Families that appear only with errors, slow commands or replicas may be absent on one
    // side at this moment; everything the exporter prints must be ours too.
    let exporter_internal = [
        "go_",
        "process_",
        "promhttp_",
        "redis_exporter_build_info",
        "redis_target_scrape_request_errors_total",
        "redis_last_key_groups_scrape_duration_milliseconds",
    ];
    let real: Vec<&String> = theirs
        .keys()
        .filter(|n| !exporter_internal.iter().any(|p| n.starts_with(p)))
        .collect();
    let missing: Vec<&&String> = real
        .iter()
        .filter(|n| !ours.contains_key(n.as_str()))
        .collect();
    eprintln!(
        "redis collector coverage: {} of redis_exporter's {} families (less go_/process_/promhttp_ and the exporter's own build info, request errors and key-group timing); only ours: {only_ours:?}",
        real.len() - missing.len(),
        real.len()
    );
    assert!(
        missing.is_empty(),
        "families only the exporter prints: {missing:?}"
    );
    for n in [
        "redis_up",
        "redis_memory_max_bytes",
        "redis_commands_total",
        "redis_commands_duration_seconds_total",
        "redis_db_keys",
        "redis_instance_info",
        "redis_connected_clients",
        "redis_keyspace_hits_total",
    ] {
        assert!(ours.contains_key(n), "{n}");
    }
    // Values that do not move between the two reads.
    for n in [
        "redis_config_maxclients",
        "redis_config_maxmemory",
        "redis_memory_max_bytes",
        "redis_process_id",
        "redis_instance_info",
        "redis_aof_enabled",
        "redis_replication_backlog_bytes",
        "redis_rdb_last_save_timestamp_seconds",
    ] {
        assert_eq!(ours[n].3, theirs[n].3, "{n}");
    }
    let start = |f: &Families| -> f64 {
        f["redis_start_time_seconds"]
            .3
            .values()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!((start(&ours) - start(&theirs)).abs() <= 2.0, "start time");
    assert_eq!(
        ours["redis_db_keys"].3.keys().collect::<Vec<_>>(),
        theirs["redis_db_keys"].3.keys().collect::<Vec<_>>(),
        "one redis_db_keys per database"
    );
}

#[test]
fn a_stopped_server_is_redis_up_0_within_one_scrape() {
    if !local_redis() {
        return;
    }
    let port = free_port();
    let server = || redis_server(port);
    let mut redis = server();
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) = appliance_with_config(
        dir.path(),
        &format!("global: {{scrape_interval: 1s, scrape_timeout: 1s}}\ncollectors: {{containers: {{enabled: false}}, postgres: {{enabled: false}}, redis: {{enabled: true, timeout: 800ms, instances: [{{url: 'redis://127.0.0.1:{port}'}}]}}}}\n"),
    );
    let q = |expr: &str| query_value(&addr, expr);
    wait_for(20, "redis_up 1", || (q("redis_up")? == 1.0).then_some(()));
    let _ = redis.0.kill();
    let _ = redis.0.wait();
    let stopped = std::time::Instant::now();
    wait_for(5, "redis_up 0 after the server stopped", || {
        (q("redis_up")? == 0.0).then_some(())
    });
    eprintln!(
        "redis_up went to 0 {:?} after the server stopped",
        stopped.elapsed()
    );
    let node = q("max_over_time(scrape_duration_seconds{job=\"node\"}[10s])").unwrap();
    assert!(node < 0.5, "node scrape took {node}s while redis was down");
    redis = server();
    wait_for(20, "redis_up 1 after the restart", || {
        (q("redis_up")? == 1.0).then_some(())
    });
    drop(redis);
}
