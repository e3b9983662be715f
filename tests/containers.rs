//! The built-in container collector against a real Docker engine (Debian's docker.io, images
//! made with `docker import` from busybox-static): cAdvisor's families and labels for real
//! containers, the states cAdvisor leaves out, events for short-lived containers, and the
//! auto-detection of the embedded default.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;

/// Samples of `query` as (labels, value).
fn query(addr: &str, q: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let path = format!(
        "/api/v1/query?query={}",
        form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
    );
    let v = get_json(addr, &path);
    v["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let val = r["value"][1]
                .as_str()
                .unwrap_or("NaN")
                .parse()
                .unwrap_or(f64::NAN);
            (labels, val)
        })
        .collect()
}

/// The value of the one series `q` selects, once it exists.
fn one(addr: &str, q: &str) -> f64 {
    wait_for(30, q, || query(addr, q).first().map(|s| s.1))
}

/// `name{name="<container>"}` from a fresh `/metrics/containers` page.
fn page_value(addr: &str, metric: &str, container: &str) -> Option<f64> {
    let (_, page) = get(addr, "/metrics/containers")?;
    let want = format!("name=\"{container}\"");
    page.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&want))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
}

#[test]
fn cadvisor_families_and_states_from_a_real_engine() {
    if !docker_engine() {
        return;
    }
    let image = busybox_image();
    let p = format!("apt{}", std::process::id());
    let (burn, lim, fail, flaky, oom, short) = (
        format!("{p}-burn"),
        format!("{p}-lim"),
        format!("{p}-fail"),
        format!("{p}-flaky"),
        format!("{p}-oom"),
        format!("{p}-short"),
    );
    let mut c = Containers(Vec::new());
    c.run(
        &burn,
        &[
            "-l",
            "com.docker.compose.service=burner",
            "-l",
            "com.docker.compose.project=apptest",
            image,
            "sh",
            "-c",
            "yes > /dev/null",
        ],
    );
    c.run(
        &lim,
        &["--memory", "64m", "--cpus", "0.5", image, "sleep", "600"],
    );
    c.run(&fail, &[image, "sh", "-c", "exit 3"]);
    c.run(
        &flaky,
        &["--restart", "on-failure:2", image, "sh", "-c", "exit 1"],
    );
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) = appliance_with_config(
        dir.path(),
        "global: {scrape_interval: 1s}\ncollectors: {appliance: {enabled: false}, node: {enabled: false}, containers: {enabled: true}}\n",
    );
    assert_eq!(one(&addr, "up{job=\"containers\"}"), 1.0);
    assert_eq!(
        one(
            &addr,
            "container_scrape_collector_success{collector=\"cgroups\"}"
        ),
        1.0,
        "the running containers' cgroup files were found"
    );
    assert_eq!(one(&addr, "container_scrape_error"), 0.0);

    // A CPU-burning container uses about one core-second per second.
    let cpu = |a: &str| page_value(a, "container_cpu_usage_seconds_total", &burn);
    let (v0, t0) = (wait_for(30, "burner cpu", || cpu(&addr)), Instant::now());
    // Measured over a few seconds of CPU time: read until the counter has moved by 3 s
    // (a burner at about one core gets there in about 3 s; one that does not burn never does).
    let (v1, t1) = wait_for(30, "3 s of the burner's CPU time", || {
        let v = cpu(&addr)?;
        (v - v0 >= 3.0).then(|| (v, Instant::now()))
    });
    let rate = (v1 - v0) / (t1 - t0).as_secs_f64();
    assert!((0.6..=1.4).contains(&rate), "burner used {rate} cores");
    eprintln!("container_cpu_usage_seconds_total of a `yes` loop: {rate:.2} core-seconds/s");

    // Through the scrape path into storage, with cAdvisor's labels.
    let series = query(
        &addr,
        &format!("container_cpu_usage_seconds_total{{name=\"{burn}\"}}"),
    );
    let l = &series.first().expect("burner's cpu series stored").0;
    assert_eq!(l["container_label_com_docker_compose_service"], "burner");
    assert_eq!(l["container_label_com_docker_compose_project"], "apptest");
    assert_eq!(l["cpu"], "total");
    assert_eq!(l["image"], image, "the image as given to docker run");
    assert!(l["id"].ends_with(&c_id(&burn)), "id label {}", l["id"]);
    assert_eq!(l["job"], "containers");

    // Limits.
    let q = |m: &str, n: &str| format!("{m}{{name=\"{n}\"}}");
    assert_eq!(
        one(&addr, &q("container_spec_memory_limit_bytes", &lim)),
        67108864.0
    );
    assert_eq!(one(&addr, &q("container_spec_cpu_quota", &lim)), 50000.0);
    assert_eq!(one(&addr, &q("container_spec_cpu_period", &lim)), 100000.0);
    assert!(one(&addr, &q("container_memory_working_set_bytes", &lim)) > 0.0);
    assert_eq!(one(&addr, &q("container_processes", &lim)), 1.0);

    // What cAdvisor leaves out: state, exit code, restarts, OOM kills.
    assert_eq!(
        one(
            &addr,
            &format!("container_state{{name=\"{fail}\",state=\"exited\"}}")
        ),
        1.0
    );
    assert_eq!(
        one(
            &addr,
            &format!("container_state{{name=\"{burn}\",state=\"running\"}}")
        ),
        1.0
    );
    assert_eq!(one(&addr, &q("container_exit_code", &fail)), 3.0);
    wait_for(30, "flaky restarted twice", || {
        query(
            &addr,
            &format!("container_restart_count{{name=\"{flaky}\"}} == 2"),
        )
        .first()
        .cloned()
    });
    // Started now that the collector follows the events, so the OOM kill is seen even where
    // Docker's own OOMKilled flag misses it.
    c.run(
        &oom,
        &[
            "--memory",
            "8m",
            "--memory-swap",
            "8m",
            image,
            "sh",
            "-c",
            "x=$(yes | head -c 200000000)",
        ],
    );
    wait_for(30, "oom container OOM-killed", || {
        query(
            &addr,
            &format!("container_oom_killed{{name=\"{oom}\"}} == 1"),
        )
        .first()
        .cloned()
    });

    // A container that lives and is removed between two scrapes is still seen (events).
    let st = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--name",
            &short,
            "-l",
            "com.docker.compose.service=oneshot",
            image,
            "sh",
            "-c",
            "exit 7",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(7));
    let got = wait_for(30, "short-lived container's exit code", || {
        query(&addr, &q("container_exit_code", &short))
            .first()
            .cloned()
    });
    assert_eq!(got.1, 7.0);
    assert_eq!(
        got.0["container_label_com_docker_compose_service"],
        "oneshot"
    );
}

fn c_id(name: &str) -> String {
    let out = run_ok(Command::new("docker").args(["inspect", "-f", "{{.Id}}", name]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An appliance whose container collector points at a socket nobody listens on.
fn appliance_without_docker(dir: &std::path::Path, enabled: &str) -> (Proc, String) {
    let sock = dir.join("no-docker.sock");
    appliance_with_config(
        dir,
        &format!(
            "global: {{scrape_interval: 1s}}\ncollectors: {{node: {{enabled: false}}, containers: {{{enabled} docker_host: 'unix://{}'}}}}\n",
            sock.display()
        ),
    )
}

#[test]
fn explicitly_enabled_without_docker_is_up_0_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) = appliance_without_docker(dir.path(), "enabled: true,");
    assert_eq!(one(&addr, "up{job=\"containers\"}"), 0.0);
    let t = get_json(&addr, "/api/v1/targets");
    let err = t["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["labels"]["job"] == "containers")
        .map(|t| t["lastError"].as_str().unwrap_or("").to_string())
        .unwrap();
    assert!(err.contains("no-docker.sock"), "lastError: {err}");
}

#[test]
fn left_to_auto_it_is_off_without_docker_and_on_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) = appliance_without_docker(dir.path(), "");
    // The self-scrape runs; the container job does not exist at all.
    one(&addr, "up{job=\"appliance\"}");
    let t = get_json(&addr, "/api/v1/targets");
    assert!(
        !t.to_string().contains("\"containers\""),
        "no container target without docker: {t}"
    );
    if !docker_engine() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) = appliance_with_config(dir.path(), "global: {scrape_interval: 1s}\n");
    assert_eq!(one(&addr, "up{job=\"containers\"}"), 1.0);
}
