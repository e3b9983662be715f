//! The built-in node collector beside Debian's node_exporter on the same host: for the
//! collectors implemented so far, every family node_exporter prints is present with the same
//! type, HELP and label names, and values that can be read at the same moment agree.

mod common;

use std::collections::BTreeMap;

use common::*;

/// Families of the collectors the appliance implements.
fn in_scope(name: &str) -> bool {
    let exact = [
        "node_boot_time_seconds",
        "node_context_switches_total",
        "node_forks_total",
        "node_intr_total",
        "node_procs_running",
        "node_procs_blocked",
        "node_load1",
        "node_load5",
        "node_load15",
        "node_time_seconds",
        "node_time_zone_offset_seconds",
        "node_time_clocksource_available_info",
        "node_time_clocksource_current_info",
        "node_uname_info",
        "node_filefd_allocated",
        "node_filefd_maximum",
        "node_entropy_available_bits",
        "node_entropy_pool_size_bits",
        "node_cpu_seconds_total",
        "node_cpu_guest_seconds_total",
        "node_cpu_core_throttles_total",
        "node_cpu_package_throttles_total",
        "node_os_info",
        "node_os_version",
    ];
    exact.contains(&name)
        || name.starts_with("node_memory_")
        || name.starts_with("node_vmstat_")
        || name.starts_with("node_pressure_")
        || [
            "node_filesystem_",
            "node_disk_",
            "node_netstat_",
            "node_sockstat_",
            "node_nf_conntrack_",
            "node_cpu_frequency_",
            "node_cpu_scaling_frequency_",
            "node_hwmon_",
            "node_thermal_zone_",
            "node_cooling_device_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
        || ((name.starts_with("node_network_receive_")
            || name.starts_with("node_network_transmit_"))
            && name.ends_with("_total"))
}

#[test]
fn node_collector_matches_node_exporter() {
    let port = free_port();
    let Some(_ne) = node_exporter(port) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) =
        appliance_with_config(dir.path(), "collectors: {appliance: {enabled: false}}\n");
    let theirs = families(&get(&format!("127.0.0.1:{port}"), "/metrics").unwrap().1);
    let ours = families(&get(&addr, "/metrics/node").unwrap().1);
    let mut checked = 0;
    let mut missing = Vec::new();
    for (name, (kind, help, labels, _)) in theirs.iter().filter(|(n, _)| in_scope(n)) {
        checked += 1;
        match ours.get(name) {
            None => missing.push(name.clone()),
            Some((k, h, l, _)) => {
                assert_eq!(k, kind, "{name}: type");
                assert_eq!(h, help, "{name}: HELP");
                assert_eq!(l, labels, "{name}: label names");
            }
        }
    }
    assert!(missing.is_empty(), "missing families: {missing:?}");
    assert!(checked > 60, "only {checked} families in scope");
    let all: Vec<&String> = theirs
        .keys()
        .filter(|n| {
            !["go_", "process_", "promhttp_"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    let have = all.iter().filter(|n| ours.contains_key(n.as_str())).count();
    eprintln!(
        "node collector coverage: {have} of the {} families node_exporter prints here (less go_/process_/promhttp_)",
        all.len()
    );
    eprintln!("node collector: {checked} of node_exporter's families for the implemented collectors present with the same type, HELP and labels");
    // Values read at (nearly) the same moment.
    let one = |f: &Families, n: &str| -> f64 { f[n].3.values().next().unwrap().parse().unwrap() };
    for n in [
        "node_memory_MemTotal_bytes",
        "node_filefd_maximum",
        "node_entropy_pool_size_bits",
        "node_boot_time_seconds",
    ] {
        let (a, b) = (one(&theirs, n), one(&ours, n));
        assert!(
            (a - b).abs() <= 1.0,
            "{n}: node_exporter {a}, appliance {b}"
        );
    }
    assert_eq!(
        theirs["node_cpu_seconds_total"].3.len(),
        ours["node_cpu_seconds_total"].3.len(),
        "one series per CPU and mode"
    );
    let up = |f: &Families| f["node_uname_info"].3.keys().next().unwrap().clone();
    assert_eq!(up(&theirs), up(&ours), "uname labels");
    // Same series (label values too) where the host's state is stable between two reads.
    for n in [
        "node_filesystem_size_bytes",
        "node_disk_info",
        "node_cpu_seconds_total",
        "node_network_receive_bytes_total",
    ] {
        let series = |f: &Families| -> Vec<String> { f[n].3.keys().cloned().collect() };
        assert_eq!(series(&theirs), series(&ours), "{n}: series");
    }
    let by_labels = |f: &Families, n: &str| -> BTreeMap<String, f64> {
        f[n].3
            .iter()
            .map(|(k, v)| (k.clone(), v.parse().unwrap_or(f64::NAN)))
            .collect()
    };
    let (a, b) = (
        by_labels(&theirs, "node_filesystem_size_bytes"),
        by_labels(&ours, "node_filesystem_size_bytes"),
    );
    assert_eq!(a, b, "filesystem sizes");
    // Every sub-collector we implement succeeds or fails where node_exporter's does.
    let ours_ok = by_labels(&ours, "node_scrape_collector_success");
    for (l, v) in by_labels(&theirs, "node_scrape_collector_success") {
        if let Some(o) = ours_ok.get(&l) {
            assert_eq!(*o, v, "node_scrape_collector_success{{{l}}}");
        }
    }
    assert!(ours_ok.len() >= 20, "{ours_ok:?}");
}
