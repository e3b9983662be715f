//! Persisted storage end to end, through the binary: a simulated day imported into blocks and
//! queried together with freshly scraped head data; a damaged WAL tail and a damaged block;
//! retention by time and by size.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const STEP: i64 = 15_000;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// node_exporter-like series (name, labels) of one host.
fn node_series() -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    for cpu in 0..2 {
        for mode in [
            "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
        ] {
            out.push((
                "node_cpu_seconds_total".to_string(),
                vec![
                    ("cpu".into(), cpu.to_string()),
                    ("mode".into(), mode.into()),
                ],
            ));
        }
    }
    for dev in ["eth0", "lo"] {
        out.push((
            "node_network_receive_bytes_total".into(),
            vec![("device".into(), dev.into())],
        ));
    }
    for (dev, mp) in [("/dev/sda1", "/"), ("/dev/sdb1", "/data")] {
        out.push((
            "node_filesystem_avail_bytes".into(),
            vec![
                ("device".into(), dev.into()),
                ("fstype".into(), "ext4".into()),
                ("mountpoint".into(), mp.into()),
            ],
        ));
    }
    out.push(("node_load1".into(), vec![]));
    out.push(("node_memory_MemAvailable_bytes".into(), vec![]));
    out
}

/// The value of series `k` at `t`: counters climb, gauges wander; exact in decimal text.
fn value(k: usize, name: &str, t: i64) -> f64 {
    let i = t / STEP;
    if name.ends_with("_total") {
        (i * (k as i64 % 7 + 1)) as f64 * 0.25
    } else {
        ((i * 7919 + k as i64 * 13) % 1000) as f64 * 4096.0 + 0.5
    }
}

fn label_text(job_instance: &[(&str, &str)], extra: &[(String, String)]) -> String {
    let mut all: Vec<String> = extra.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    all.extend(job_instance.iter().map(|(k, v)| format!("{k}=\"{v}\"")));
    all.join(",")
}

/// OpenMetrics text with every series sampled every 15 s in `[from, to)`.
fn node_day(from: i64, to: i64, instance: &str) -> String {
    let mut out = String::new();
    let series = node_series();
    let mut last_family = String::new();
    for (k, (name, labels)) in series.iter().enumerate() {
        if *name != last_family {
            out.push_str(&format!("# TYPE {name} unknown\n"));
            last_family = name.clone();
        }
        let l = label_text(&[("instance", instance), ("job", "node")], labels);
        let mut t = from;
        while t < to {
            out.push_str(&format!(
                "{name}{{{l}}} {} {}\n",
                value(k, name, t),
                t / 1000
            ));
            t += STEP;
        }
    }
    out.push_str("# EOF\n");
    out
}

fn import(dir: &Path, file: &Path) {
    run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_appliance"))
            .args(["tsdb", "import", "openmetrics"])
            .arg(file)
            .arg("--data-dir")
            .arg(dir.join("data")),
    );
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn secs(t: i64) -> String {
    format!("{}.{:03}", t.div_euclid(1000), t.rem_euclid(1000))
}

/// `(ulid, min_time, max_time)` of the blocks in the data directory, oldest first.
fn blocks_on_disk(data: &Path) -> Vec<(String, i64, i64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(data).unwrap().flatten() {
        let meta = e.path().join("meta.json");
        if let Ok(body) = std::fs::read_to_string(&meta) {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            out.push((
                v["ulid"].as_str().unwrap().to_string(),
                v["minTime"].as_i64().unwrap(),
                v["maxTime"].as_i64().unwrap(),
            ));
        }
    }
    out.sort_by_key(|b| (b.1, b.0.clone()));
    out
}

fn blocks_served(addr: &str) -> Vec<String> {
    let v = get_json(addr, "/api/v1/status/tsdb");
    v["data"]["storageStats"]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["ulid"].as_str().unwrap().to_string())
        .collect()
}

fn metric(addr: &str, name: &str) -> Option<f64> {
    let (_, body) = get(addr, "/metrics")?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_simulated_day_is_answered_from_blocks_and_head_together() {
    let dir = tempfile::tempdir().unwrap();
    // The live target serves the same series, so the newest part of each comes from the head.
    let live: String = node_series()
        .iter()
        .enumerate()
        .map(|(k, (name, labels))| {
            let l = label_text(&[], labels);
            format!("{name}{{{l}}} {}\n", 1000 + k)
        })
        .collect();
    let target = static_server(vec![("/metrics", "text/plain; version=0.0.4", live)]);
    let end_import = (now_ms() - 10 * 60 * 1000).div_euclid(STEP) * STEP;
    let start = end_import - 24 * 3600 * 1000;
    let om = write(dir.path(), "day.om", &node_day(start, end_import, &target));
    import(dir.path(), &om);
    assert!(!blocks_on_disk(&dir.path().join("data")).is_empty());
    let (_app, addr) = appliance_with_config(
        dir.path(),
        &format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\ncollectors: {{appliance: {{enabled: false}}, containers: {{enabled: false}}, postgres: {{enabled: false}}, redis: {{enabled: false}}}}\nscrape_configs:\n  - job_name: node\n    static_configs: [{{targets: ['{target}']}}]\n"
        ),
    );
    wait_for(15, "a scrape of the live target", || {
        let v = get_json(&addr, "/api/v1/query?query=node_load1");
        (v["data"]["result"][0]["value"][1].as_str()
            == Some(&*format!("{}", 1000 + series_index("node_load1"))))
        .then_some(())
    });
    // One step past now, so the last step sees the head's newest sample.
    let end = now_ms() + STEP;
    let series = node_series();
    for (k, (name, labels)) in series.iter().enumerate() {
        let sel = format!("{name}{{{}}}", label_text(&[], labels));
        let q: String = form_urlencoded::byte_serialize(sel.as_bytes()).collect();
        let v = get_json(
            &addr,
            &format!(
                "/api/v1/query_range?query={q}&start={}&end={}&step=15",
                secs(start),
                secs(end)
            ),
        );
        let result = v["data"]["result"].as_array().unwrap();
        assert_eq!(result.len(), 1, "{sel}: {v}");
        let values = result[0]["values"].as_array().unwrap();
        let mut checked = 0;
        for p in values {
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            let got: f64 = p[1].as_str().unwrap().parse().unwrap();
            if t < end_import {
                assert_eq!(got, value(k, name, t), "{sel} at {t}");
                checked += 1;
            }
        }
        assert_eq!(checked, 24 * 3600 / 15, "{sel}: every step of the day");
        let last: f64 = values.last().unwrap()[1].as_str().unwrap().parse().unwrap();
        assert_eq!(last, (1000 + k) as f64, "{sel}: newest point from the head");
    }
    let st = get_json(&addr, "/api/v1/status/tsdb")["data"].clone();
    let store = &st["storageStats"];
    assert_eq!(store["minTime"].as_i64(), Some(start), "{st}");
    assert!(store["maxTime"].as_i64().unwrap() >= end_import, "{st}");
    assert!(!store["blocks"].as_array().unwrap().is_empty(), "{st}");
    assert!(
        store["head"]["numSeries"].as_u64().unwrap() >= series.len() as u64,
        "{st}"
    );
    // headStats describes everything stored, so the imported day shows there too.
    assert_eq!(st["headStats"]["minTime"].as_i64(), Some(start), "{st}");
    assert_eq!(st["headStats"]["numSeries"], store["numSeries"], "{st}");
    assert!(
        st["headStats"]["chunkCount"].as_u64().unwrap() > 24 * 22,
        "{st}"
    );
    // Imported and scraped series are the same series: counted once.
    assert_eq!(
        store["numSeries"].as_u64(),
        Some(series.len() as u64 + 5),
        "the node series plus up and the four scrape_* series: {st}"
    );
    let by_name = st["seriesCountByMetricName"].as_array().unwrap();
    assert!(
        by_name
            .iter()
            .any(|e| e["name"] == "node_cpu_seconds_total" && e["value"] == 16),
        "{st}"
    );
}

#[test]
fn damaged_wal_tail_and_damaged_block() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let end_import = (now_ms() - 3 * 3600 * 1000).div_euclid(STEP) * STEP;
    let start = end_import - 2 * 24 * 3600 * 1000;
    let om = write(
        dir.path(),
        "old.om",
        &node_day(start, end_import, "host:9100"),
    );
    import(dir.path(), &om);
    let blocks = blocks_on_disk(&data);
    assert!(blocks.len() >= 2, "{blocks:?}");
    let (mut app, addr) = appliance_with_config(
        dir.path(),
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n",
    );
    let cfg = dir.path().join("appliance.yml");
    wait_for(15, "several scrapes", || {
        let v = get_json(&addr, "/api/v1/query?query=count_over_time(up%5B1m%5D)");
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|n| *n >= 3.0)
    });
    let t = now_ms() - 2000;
    let count_q = format!(
        "/api/v1/query?query=count_over_time(up%5B1m%5D)&time={}",
        secs(t)
    );
    let before: f64 = get_json(&addr, &count_q)["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    std::process::Command::new("kill")
        .args(["-9", &app.pid().to_string()])
        .status()
        .unwrap();
    let _ = app.0.wait();

    // A torn record at the WAL's end, and a flipped byte in the oldest block's chunks.
    let wal = data.join("wal");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&wal)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().len() == 8)
        .collect();
    segs.sort();
    let last = segs
        .iter()
        .rev()
        .find(|p| std::fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    let mut body = std::fs::read(last).unwrap();
    body.extend_from_slice(&[2, 0xff, 0xff, 0, 0, 1, 2, 3, 4, 9, 9]);
    std::fs::write(last, &body).unwrap();
    let victim = blocks[0].clone();
    let chunks = data.join(&victim.0).join("chunks");
    let mut c = std::fs::read(&chunks).unwrap();
    let mid = c.len() / 2;
    c[mid] ^= 0x5a;
    std::fs::write(&chunks, &c).unwrap();

    let _app2 = appliance(dir.path(), Some(&cfg), &addr);
    wait_ready(&addr);
    // Everything acknowledged before the sync window is back.
    let after: f64 = get_json(&addr, &count_q)["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(after, before);
    // The damaged block is out of service, reported, counted and set aside (by the background
    // check that follows start, or by the first read that touches it).
    let st = wait_for(20, "the damaged block to be quarantined", || {
        let st = get_json(&addr, "/api/v1/status/tsdb")["data"].clone();
        (!st["storageStats"]["quarantined"].as_array()?.is_empty()).then_some(st)
    });
    let q = st["storageStats"]["quarantined"].as_array().unwrap();
    assert_eq!(q.len(), 1, "{st}");
    assert_eq!(q[0]["ulid"], victim.0.as_str());
    assert!(
        q[0]["reason"].as_str().unwrap().contains("checksum"),
        "{st}"
    );
    assert!(!blocks_served(&addr).contains(&victim.0));
    assert!(data.join("quarantine").join(&victim.0).is_dir());
    assert_eq!(
        metric(&addr, "appliance_tsdb_blocks_quarantined_total"),
        Some(1.0)
    );
    assert_eq!(
        metric(&addr, "appliance_tsdb_wal_corruptions_total"),
        Some(1.0)
    );
    let log = std::fs::read_to_string(dir.path().join("appliance.log")).unwrap();
    assert!(log.contains(&victim.0), "{log}");
    assert!(log.contains("write-ahead log was damaged"), "{log}");
    // Other blocks keep serving: the newest imported sample is there.
    let v = get_json(
        &addr,
        &format!(
            "/api/v1/query?query=node_load1&time={}",
            secs(end_import - STEP)
        ),
    );
    let got: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        got,
        value(series_index("node_load1"), "node_load1", end_import - STEP)
    );
}

fn series_index(name: &str) -> usize {
    node_series().iter().position(|(n, _)| n == name).unwrap()
}

/// A store with several days of blocks and no scraping, for retention checks.
fn store_with_days(days: i64) -> (tempfile::TempDir, Vec<(String, i64, i64)>) {
    let dir = tempfile::tempdir().unwrap();
    let end = (now_ms() - 3600 * 1000).div_euclid(60_000) * 60_000;
    let mut om = String::from("# TYPE x gauge\n");
    let mut t = end - days * 24 * 3600 * 1000;
    while t < end {
        om.push_str(&format!("x{{job=\"j\"}} {} {}\n", t / 60_000, t / 1000));
        t += 60_000;
    }
    om.push_str("# EOF\n");
    let f = write(dir.path(), "days.om", &om);
    import(dir.path(), &f);
    let blocks = blocks_on_disk(&dir.path().join("data"));
    (dir, blocks)
}

fn run_with_storage(dir: &Path, storage: &str) -> (Proc, String) {
    appliance_with_config(
        dir,
        // Nothing may write to the WAL: its size counts against size retention.
        &format!("collectors: {{appliance: {{enabled: false}}, node: {{enabled: false}}, containers: {{enabled: false}}, postgres: {{enabled: false}}, redis: {{enabled: false}}, celery: {{enabled: false}}}}\nstorage:\n{storage}"),
    )
}

#[test]
fn time_retention_deletes_the_oldest_blocks_and_nothing_newer() {
    let (dir, blocks) = store_with_days(5);
    assert!(blocks.len() >= 4, "{blocks:?}");
    let newest_end = blocks.iter().map(|b| b.2).max().unwrap();
    let keep: Vec<String> = blocks
        .iter()
        .filter(|b| newest_end - b.2 <= 2 * 24 * 3600 * 1000)
        .map(|b| b.0.clone())
        .collect();
    assert!(keep.len() < blocks.len(), "some block must be old enough");
    let (_app, addr) = run_with_storage(dir.path(), "  retention: {time: 2d}\n");
    wait_for(20, "retention to run", || {
        (blocks_served(&addr) == keep).then_some(())
    });
    let on_disk: Vec<String> = blocks_on_disk(&dir.path().join("data"))
        .into_iter()
        .map(|b| b.0)
        .collect();
    assert_eq!(on_disk, keep);
    // Data in kept blocks answers; data in deleted ones is gone.
    let oldest_kept = blocks.iter().find(|b| b.0 == keep[0]).unwrap();
    let probe = |t: i64| {
        get_json(&addr, &format!("/api/v1/query?query=x&time={}", secs(t)))["data"]["result"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(probe(oldest_kept.1 + 120_000), 1);
    assert_eq!(probe(blocks[0].1 + 120_000), 0);
    assert!(metric(&addr, "appliance_tsdb_time_retentions_total").unwrap() >= 1.0);
}

#[test]
fn size_retention_deletes_the_oldest_blocks_and_nothing_newer() {
    let (dir, blocks) = store_with_days(5);
    let data = dir.path().join("data");
    let size_of = |ulid: &str| -> u64 {
        std::fs::read_dir(data.join(ulid))
            .unwrap()
            .flatten()
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    // Room for the newest two blocks (and a WAL that stays empty: nothing is scraped).
    let n = blocks.len();
    let limit = size_of(&blocks[n - 1].0) + size_of(&blocks[n - 2].0) + 100;
    let keep: Vec<String> = blocks[n - 2..].iter().map(|b| b.0.clone()).collect();
    let (_app, addr) = run_with_storage(dir.path(), &format!("  retention: {{size: {limit}B}}\n"));
    wait_for(20, "size retention to run", || {
        (blocks_served(&addr) == keep).then_some(())
    });
    assert!(metric(&addr, "appliance_tsdb_size_retentions_total").unwrap() >= 1.0);
    assert_eq!(
        metric(&addr, "appliance_tsdb_retention_limit_bytes"),
        Some(limit as f64)
    );
    let on_disk: Vec<String> = blocks_on_disk(&data).into_iter().map(|b| b.0).collect();
    assert_eq!(on_disk, keep);
}

fn count_x(addr: &str, at: i64) -> f64 {
    let v = get_json(
        addr,
        &format!(
            "/api/v1/query?query=count_over_time(x%5B2d%5D)&time={}",
            secs(at)
        ),
    );
    v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn admin_api_deletes_series_cleans_tombstones_and_snapshots() {
    let (dir, blocks) = store_with_days(1);
    let (_app, addr) = run_with_storage(dir.path(), "  retention: {time: 15d}\n");
    let end = blocks.iter().map(|b| b.2).max().unwrap();
    let total = count_x(&addr, end);
    assert_eq!(total, 24.0 * 60.0);
    // Deleting needs a selector.
    let (code, body) = request(&addr, "POST", "/api/v1/admin/tsdb/delete_series", "").unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("no match[] parameter provided"), "{body}");
    // Ten minutes spanning a block boundary, inclusive at both ends.
    let boundary = blocks[1].1;
    let (a, b) = (boundary - 5 * 60_000, boundary + 4 * 60_000);
    let form = format!(
        "match[]=x%7Bjob%3D%22j%22%7D&start={}&end={}",
        secs(a),
        secs(b)
    );
    let (code, body) = request(&addr, "POST", "/api/v1/admin/tsdb/delete_series", &form).unwrap();
    assert_eq!(code, 204, "{body}");
    assert_eq!(count_x(&addr, end), total - 10.0);
    let with_stones: Vec<String> = get_json(&addr, "/api/v1/status/tsdb")["data"]["storageStats"]
        ["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["numTombstones"].as_u64() > Some(0))
        .map(|b| b["ulid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(with_stones.len(), 2, "the range spans two blocks");
    let (code, body) = request(&addr, "PUT", "/api/v1/admin/tsdb/clean_tombstones", "").unwrap();
    assert_eq!(code, 204, "{body}");
    let served = blocks_served(&addr);
    assert!(with_stones.iter().all(|u| !served.contains(u)), "rewritten");
    assert_eq!(served.len(), blocks.len());
    assert_eq!(count_x(&addr, end), total - 10.0);
    // A snapshot holds every block (the head is skipped here: the built-in collectors have
    // put fresh samples in it), and opens as a store of its own.
    let (code, body) = request(
        &addr,
        "POST",
        "/api/v1/admin/tsdb/snapshot?skip_head=true",
        "",
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let name = v["data"]["name"].as_str().unwrap();
    let snap = dir.path().join("data/snapshots").join(name);
    assert_eq!(blocks_on_disk(&snap).len(), served.len());
    let (code, body) = request(
        &addr,
        "POST",
        "/api/v1/admin/tsdb/snapshot?skip_head=maybe",
        "",
    )
    .unwrap();
    assert_eq!(code, 400, "{body}");
}

#[test]
fn admin_api_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) = appliance_with_config(dir.path(), "web: {enable_admin_api: false}\n");
    for p in ["delete_series?match[]=up", "clean_tombstones", "snapshot"] {
        let (code, body) = request(&addr, "POST", &format!("/api/v1/admin/tsdb/{p}"), "").unwrap();
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("admin APIs disabled"), "{body}");
    }
}
