//! The built-in Celery collector against a real Celery worker (PyPI `celery[redis]`, started
//! with `-E`) on the local Redis: queue length follows enqueued-but-unconsumed tasks, task
//! counters equal a batch's counts (some tasks fail, some retry), and a killed worker goes
//! down after Celery's heartbeat timeout.

mod common;

use std::process::{Command, Stdio};

use common::*;

fn celery_installed() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import celery, redis"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    available(ok, "python3 celery[redis]")
        && available(
            std::net::TcpStream::connect("127.0.0.1:6379").is_ok(),
            "Redis on 127.0.0.1:6379",
        )
}

const TASKS: &str = r#"
from celery import Celery
import os
app = Celery("tasks", broker=os.environ["BROKER"])
app.conf.task_send_sent_event = True
app.conf.worker_hijack_root_logger = False

@app.task
def ok(x):
    return x

@app.task
def boom(x):
    raise ValueError("boom")

@app.task(bind=True, max_retries=2)
def flaky(self, x):
    raise self.retry(exc=ValueError("again"), countdown=0)
"#;

#[test]
fn celery_worker_tasks_and_queue() {
    if !celery_installed() {
        return;
    }
    // A database of its own on the local server, emptied first.
    let db = 9;
    let broker = format!("redis://127.0.0.1:6379/{db}");
    run_ok(Command::new("redis-cli").args(["-n", &db.to_string(), "FLUSHDB"]));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tasks.py"), TASKS).unwrap();
    let (_app, addr) = appliance_with_config(
        dir.path(),
        &format!("global: {{scrape_interval: 1s, scrape_timeout: 1s}}\ncollectors: {{appliance: {{enabled: false}}, node: {{enabled: false}}, containers: {{enabled: false}}, postgres: {{enabled: false}}, redis: {{enabled: false}}, celery: {{enabled: true, broker_url: '{broker}'}}}}\n"),
    );
    let q = |expr: &str| query_value(&addr, expr);
    wait_for(20, "up{job=celery} 1", || {
        (q("up{job=\"celery\"}")? == 1.0).then_some(())
    });
    let send = |script: &str| {
        run_ok(
            Command::new("python3")
                .args(["-c", &format!("import tasks\n{script}")])
                .current_dir(dir.path())
                .env("BROKER", &broker),
        )
    };

    // Enqueued with no worker: the queue holds them.
    let (k, n, f, r) = (4.0, 6.0, 3.0, 2.0);
    send("for i in range(4): tasks.ok.delay(i)");
    wait_for(20, "queue length 4", || {
        (q("celery_queue_length{queue_name=\"celery\"}")? == k).then_some(())
    });

    let mut worker = CeleryWorker::start(dir.path(), &broker, "w1@%h", 2);
    wait_for(30, "celery_worker_up 1", || {
        (q("max(celery_worker_up)")? == 1.0).then_some(())
    });
    wait_for(30, "queue drained", || {
        (q("celery_queue_length{queue_name=\"celery\"}")? == 0.0).then_some(())
    });

    send("for i in range(6): tasks.ok.delay(i)\nfor i in range(3): tasks.boom.delay(i)\nfor i in range(2): tasks.flaky.delay(i)");
    // Each flaky task runs three times (two retries) and then fails.
    let want = [
        ("sent", k + n + f + 3.0 * r),
        ("received", k + n + f + 3.0 * r),
        ("started", k + n + f + 3.0 * r),
        ("succeeded", k + n),
        ("failed", f + r),
        ("retried", 2.0 * r),
    ];
    let total = |kind: &str| q(&format!("sum(celery_task_{kind}_total)")).unwrap_or(0.0);
    wait_for(60, "every task event counted", || {
        want.iter().all(|(kind, v)| total(kind) == *v).then_some(())
    });
    // Nothing more arrives: the counts are exact, not just reached.
    for (kind, v) in want {
        assert_eq!(total(kind), v, "celery_task_{kind}_total");
    }
    assert_eq!(
        q("sum(celery_task_failed_total{name=\"tasks.flaky\"})"),
        Some(r),
        "failures by task name"
    );
    assert_eq!(
        q("sum(celery_task_runtime_seconds_count{name=\"tasks.ok\"})"),
        Some(k + n)
    );
    assert_eq!(q("celery_queue_length{queue_name=\"celery\"}"), Some(0.0));

    // Killed without a goodbye: down after two missed heartbeats.
    worker.kill();
    let stopped = std::time::Instant::now();
    wait_for(20, "celery_worker_up 0", || {
        (q("max(celery_worker_up)")? == 0.0).then_some(())
    });
    eprintln!(
        "celery_worker_up went to 0 {:?} after the worker was killed",
        stopped.elapsed()
    );
}

/// Issue 18: a configured broker with no Celery keys and no worker still runs the collector
/// (no silent switch-off), and after a restart with no worker alive the shipped
/// `CeleryNoWorkers` fires after its `for` (shortened here; the rule test checks 2m).
#[test]
fn a_restart_with_no_worker_fires_celery_no_workers() {
    if !celery_installed() {
        return;
    }
    let db = 10;
    let broker = format!("redis://127.0.0.1:6379/{db}");
    run_ok(Command::new("redis-cli").args(["-n", &db.to_string(), "FLUSHDB"]));
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/celery.yml"),
    )
    .unwrap();
    assert!(shipped.contains("for: 2m"));
    std::fs::write(
        dir.path().join("celery.yml"),
        shipped.replace("for: 2m", "for: 3s"),
    )
    .unwrap();
    // `enabled` left out: naming the broker is enough, even with nothing in it yet.
    let cfg = format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}
rule_files: [celery.yml]
collectors: {{appliance: {{enabled: false}}, node: {{enabled: false}}, containers: {{enabled: false}}, postgres: {{enabled: false}}, redis: {{enabled: false}}, celery: {{broker_url: '{broker}'}}}}
"
    );
    let (app, addr) = appliance_with_config(dir.path(), &cfg);
    let q = |addr: &str, expr: &str| query_value(addr, expr);
    wait_for(20, "up{job=celery} 1 and celery_workers 0", || {
        (q(&addr, "up{job=\"celery\"}")? == 1.0 && q(&addr, "celery_workers")? == 0.0).then_some(())
    });
    drop(app);
    // The restart: still no worker; the alert needs no worker ever to have been seen.
    let addr = format!("127.0.0.1:{}", free_port());
    let _app = appliance(dir.path(), Some(&dir.path().join("appliance.yml")), &addr);
    wait_ready(&addr);
    wait_for(40, "CeleryNoWorkers firing after the restart", || {
        (q(
            &addr,
            "ALERTS{alertname=\"CeleryNoWorkers\",alertstate=\"firing\",job=\"celery\"}",
        )? == 1.0)
            .then_some(())
    });

    // A broker that does not answer: the configured collector reports up 0, not nothing.
    let dir2 = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_app2, addr2) = appliance_with_config(
        dir2.path(),
        &format!("global: {{scrape_interval: 1s, scrape_timeout: 1s}}\ncollectors: {{appliance: {{enabled: false}}, node: {{enabled: false}}, containers: {{enabled: false}}, postgres: {{enabled: false}}, redis: {{enabled: false}}, celery: {{broker_url: 'redis://127.0.0.1:{port}/0'}}}}\n"),
    );
    wait_for(20, "up{job=celery} 0 for a dead broker", || {
        (q(&addr2, "up{job=\"celery\"}")? == 0.0).then_some(())
    });
}
