//! The plan's three alert scenarios, end to end against real processes and the shipped
//! default rules, with alerts going where the plan's `.env` sends them (`SLACK_WEBHOOK_URL`,
//! here a recorder standing in for Slack): a service stops, the CPU is burnt, a disk fills.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::*;
use serde_json::Value;

/// Slack messages received, as parsed JSON.
fn slack_messages(got: &Received) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .filter_map(|(_, b)| serde_json::from_str(b).ok())
        .collect()
}

/// The first Slack message whose title contains every one of `words`.
fn wait_message(got: &Received, secs: u64, words: &[&str]) -> Value {
    wait_for(secs, &format!("a Slack message with {words:?}"), || {
        slack_messages(got).into_iter().find(|m| {
            let t = m["attachments"][0]["title"].as_str().unwrap_or("");
            words.iter().all(|w| t.contains(w))
        })
    })
}

/// Starts the appliance in `dir` on `yaml` with Slack at `slack`; waits until ready.
fn appliance_to_slack(dir: &std::path::Path, yaml: &str, slack: &str) -> (Proc, String) {
    std::fs::write(dir.join("appliance.yml"), yaml).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.join("appliance.log")).unwrap();
    let p = Proc(
        Command::new(env!("CARGO_BIN_EXE_appliance"))
            .current_dir(dir)
            .env("APPLIANCE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env(
                "SLACK_WEBHOOK_URL",
                format!("http://{slack}/services/T/B/X"),
            )
            .env_remove("ALERT_EMAIL")
            .args(["run", "--config", "appliance.yml", "--listen", &addr])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_ready(&addr);
    (p, addr)
}

/// The shipped `rules/resources.yml` with `alert`'s `for` set to `for_`, written into `dir`.
fn resources_with_for(dir: &std::path::Path, alert: &str, for_: &str) -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/resources.yml"),
    )
    .unwrap();
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert:") {
            inside = name.trim() == alert;
        }
        if inside && line.trim().starts_with("for:") {
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push_str(&format!("{indent}for: {for_}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(out != text, "no `for` of {alert} in rules/resources.yml");
    std::fs::write(dir.join("resources.yml"), &out).unwrap();
    "resources.yml".into()
}

const ONLY_NODE: &str = "collectors: {containers: {enabled: false}, postgres: {enabled: false}, redis: {enabled: false}, celery: {enabled: false}}\n";

#[test]
fn a_stopped_service_reaches_slack_with_default_timings_and_resolves_when_back() {
    let port = free_port();
    let target = Target::start(
        port,
        "# TYPE http_requests_total counter\nhttp_requests_total{status=\"200\"} 1\n",
    );
    let (slack, got) = recorder(200);
    let dir = tempfile::tempdir().unwrap();
    // Default timings: 15 s scrapes and evaluations, the shipped rules (`TargetDown` after 1 m).
    let (_app, addr) = appliance_to_slack(
        dir.path(),
        &format!("global: {{scrape_interval: 15s, evaluation_interval: 15s}}\n{ONLY_NODE}scrape_configs:\n  - job_name: api-gateway\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"),
        &slack,
    );
    wait_for(40, "api-gateway up", || {
        let up = query_value(&addr, "up{job=\"api-gateway\"}");
        if up.is_none() || up == Some(0.0) {
            eprintln!(
                "{}",
                get(&addr, "/api/v1/targets")
                    .map(|t| t.1)
                    .unwrap_or_default()
            );
        }
        (up? == 1.0).then_some(())
    });
    target.stop();
    let stopped = Instant::now();
    let firing = wait_message(&got, 180, &["FIRING", "TargetDown"]);
    let took = stopped.elapsed();
    eprintln!("TargetDown reached Slack {took:?} after the service stopped");
    // Alertmanager's default Slack title: status, group labels, then the common labels.
    let title = firing["attachments"][0]["title"].as_str().unwrap_or("");
    assert!(title.contains("api-gateway"), "{firing}");
    assert!(title.contains(&format!("127.0.0.1:{port}")), "{firing}");
    assert!(
        !slack_messages(&got)
            .iter()
            .any(|m| m.to_string().contains("job=\"node\"")),
        "only the stopped service alerted"
    );

    let _back = Target::start(
        port,
        "# TYPE http_requests_total counter\nhttp_requests_total{status=\"200\"} 2\n",
    );
    let back = Instant::now();
    wait_message(&got, 180, &["RESOLVED", "TargetDown"]);
    eprintln!(
        "the resolve reached Slack {:?} after the service returned",
        back.elapsed()
    );
}

/// Processes that burn a CPU each until dropped.
struct Burners(Vec<Child>);

impl Drop for Burners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_cpu_stress_fires_host_high_cpu() {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (slack, got) = recorder(200);
    let dir = tempfile::tempdir().unwrap();
    let rules = resources_with_for(dir.path(), "HostHighCpu", "10s");
    // Every CPU busy before the first scrape: the rate over the rule's window sees only that.
    let _burn = Burners(
        (0..cpus)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    let (_app, _addr) = appliance_to_slack(
        dir.path(),
        &format!("global: {{scrape_interval: 2s, evaluation_interval: 2s}}\n{ONLY_NODE}rule_files: [{rules}]\n"),
        &slack,
    );
    let m = wait_message(&got, 120, &["FIRING", "HostHighCpu"]);
    assert!(
        m["attachments"][0]["title"]
            .as_str()
            .is_some_and(|t| t.contains("warning")),
        "{m}"
    );
}

/// A small ext4 file system on a loop device, unmounted when dropped.
struct SmallDisk {
    mount: std::path::PathBuf,
}

impl SmallDisk {
    fn new(dir: &std::path::Path, mb: u32) -> Option<SmallDisk> {
        let img = dir.join("disk.img");
        let mount = dir.join("mnt");
        std::fs::create_dir_all(&mount).ok()?;
        let ok = |c: &mut Command| c.stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        let made = ok(Command::new("truncate")
            .args(["-s", &format!("{mb}M")])
            .arg(&img))
            && ok(Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0"])
                .arg(&img))
            && ok(Command::new("mount")
                .args(["-o", "loop"])
                .arg(&img)
                .arg(&mount));
        made.then_some(SmallDisk { mount })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

#[test]
fn a_filling_disk_fires_host_disk_space_low() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::new(dir.path(), 32);
    // Mounting needs root and loop devices; the test command runs as root (CI does).
    if !available(disk.is_some(), "a loop-mounted ext4 file system (root)") {
        return;
    }
    let disk = disk.unwrap();
    let mount = disk.mount.display().to_string();
    let (slack, got) = recorder(200);
    let rules = resources_with_for(dir.path(), "HostDiskSpaceLow", "4s");
    let (_app, addr) = appliance_to_slack(
        dir.path(),
        &format!("global: {{scrape_interval: 2s, evaluation_interval: 2s}}\n{ONLY_NODE}rule_files: [{rules}]\n"),
        &slack,
    );
    let free = |addr: &str| {
        query_value(
            addr,
            &format!("node_filesystem_avail_bytes{{mountpoint=\"{mount}\"}}"),
        )
    };
    let before = wait_for(20, "the small disk in node_filesystem_avail_bytes", || {
        free(&addr)
    });
    // Fill it to about 97 %.
    let fill = (before * 0.97) as u64;
    let data = vec![7u8; 1 << 20];
    let mut f = std::fs::File::create(disk.mount.join("fill")).unwrap();
    let mut written = 0u64;
    while written + (1 << 20) <= fill {
        std::io::Write::write_all(&mut f, &data).unwrap();
        written += 1 << 20;
    }
    f.sync_all().unwrap();
    drop(f);
    let m = wait_message(&got, 60, &["FIRING", "HostDiskSpaceLow"]);
    assert!(m.to_string().contains(&mount), "{m}");
    // Only the full disk alerted, not the host's others.
    let alerts = get_json(&addr, "/api/v1/alerts");
    let disks: Vec<&Value> = alerts["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["alertname"] == "HostDiskSpaceLow")
        .collect();
    assert!(
        disks
            .iter()
            .any(|a| a["labels"]["mountpoint"] == mount.as_str()),
        "{alerts}"
    );
}
