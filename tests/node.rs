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
        || name.starts_with("node_network_")
        || name.starts_with("node_arp_")
        || name.starts_with("node_softnet_")
        || name.starts_with("node_udp_")
        || name.starts_with("node_timex_")
        || name.starts_with("node_selinux_")
        || name.starts_with("node_textfile_")
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
}

/// A textfile directory as cron jobs leave one: a good file (a gauge with HELP, a histogram,
/// an untyped counter without HELP), a broken one, and a file that is not `*.prom`.
fn textfile_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("backup.prom"),
        "# HELP backup_last_success_timestamp_seconds When the backup last succeeded.\n\
         # TYPE backup_last_success_timestamp_seconds gauge\n\
         backup_last_success_timestamp_seconds{job=\"nightly\"} 1.7e+09\n\
         backup_last_success_timestamp_seconds{job=\"weekly\",site=\"b\"} 1.6e+09\n\
         # TYPE backup_duration_seconds histogram\n\
         backup_duration_seconds_bucket{le=\"60.0\"} 3\n\
         backup_duration_seconds_bucket{le=\"+Inf\"} 4\n\
         backup_duration_seconds_sum 250.5\n\
         backup_duration_seconds_count 4\n\
         cron_runs_total 12\n",
    )
    .unwrap();
    std::fs::write(d.path().join("broken.prom"), "not { a metric\n").unwrap();
    std::fs::write(d.path().join("notes.txt"), "ignored 1\n").unwrap();
    d
}

#[test]
fn node_collector_matches_node_exporter() {
    let port = free_port();
    let text = textfile_dir();
    let text_path = text.path().display().to_string();
    let Some(_ne) = node_exporter_with(
        port,
        &[format!("--collector.textfile.directory={text_path}")],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) = appliance_with_config(
        dir.path(),
        &format!(
            "collectors: {{appliance: {{enabled: false}}, node: {{textfile_directory: {text_path:?}}}}}\n"
        ),
    );
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
    // Issue 20: at least 98 % of the families (node_exporter_build_info is node_exporter's own).
    assert!(
        have * 100 >= all.len() * 98,
        "{have} of {} families",
        all.len()
    );
    // The textfile directory gives node_exporter's families and values for the good file,
    // and the broken file sets the error.
    for n in [
        "backup_last_success_timestamp_seconds",
        "backup_duration_seconds",
        "cron_runs_total",
        "node_textfile_scrape_error",
        "node_textfile_mtime_seconds",
    ] {
        let (t, o) = (&theirs[n], &ours[n]);
        assert_eq!(
            (&o.0, &o.1, &o.2),
            (&t.0, &t.1, &t.2),
            "{n}: type, HELP, labels"
        );
        assert_eq!(o.3, t.3, "{n}: series and values");
    }
    // Same series where the host's state is stable between two reads.
    for n in [
        "node_network_up",
        "node_network_info",
        "node_network_mtu_bytes",
        "node_network_flags",
        "node_timex_tick_seconds",
        "node_selinux_enabled",
    ] {
        let (t, o) = (&theirs[n], &ours[n]);
        assert_eq!(o.3, t.3, "{n}: series and values");
    }
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
