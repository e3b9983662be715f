//! Differential test: the same data in Debian's Prometheus (blocks built by `promtool tsdb
//! create-blocks-from openmetrics`) and in the appliance (`appliance tsdb import openmetrics`),
//! then a few hundred queries over the functions and operators compared through both HTTP
//! APIs, value by value (1e-9 relative).
//!
//! Debian ships Prometheus 2.42; where 2.x and 3.x differ (closed vs left-open range
//! boundaries), sample times are kept off the evaluation boundaries so both agree.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;
use serde_json::Value;

const BASE: i64 = 1_700_000_000_000; // a whole minute, in ms
const STEP: i64 = 15_000;
const POINTS: i64 = 480; // two hours
const JITTER: i64 = 1_234; // keeps samples off whole-minute evaluation times

/// A deterministic pseudo-random sequence, so there are no ties for topk/bottomk to break.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn openmetrics() -> String {
    let mut r = Lcg(42);
    let mut out = String::new();
    let ts = |i: i64| {
        format!(
            "{}.{:03}",
            (BASE + i * STEP + JITTER) / 1000,
            (BASE + i * STEP + JITTER) % 1000
        )
    };
    out.push_str("# TYPE node_cpu_seconds counter\n");
    for cpu in 0..3 {
        for mode in ["idle", "user", "system"] {
            let mut v = r.next() * 1000.0;
            for i in 0..POINTS {
                // An occasional counter reset.
                if i == 200 && cpu == 1 {
                    v = r.next();
                }
                v += r.next() * 15.0;
                out.push_str(&format!(
                    "node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"{mode}\"}} {v} {}\n",
                    ts(i)
                ));
            }
        }
    }
    out.push_str("# TYPE http_requests counter\n");
    for (job, inst) in [
        ("api", "a:1"),
        ("api", "b:1"),
        ("web", "c:1"),
        ("web", "d:1"),
    ] {
        for code in ["200", "500"] {
            let mut v = 0.0;
            for i in 0..POINTS {
                if (i + job.len() as i64) % 37 == 0 {
                    continue; // gaps
                }
                v += (r.next() * 10.0).floor();
                out.push_str(&format!("http_requests_total{{job=\"{job}\",instance=\"{inst}\",code=\"{code}\"}} {v} {}\n", ts(i)));
            }
        }
    }
    out.push_str("# TYPE mem_available_bytes gauge\n");
    for inst in ["a:1", "b:1", "c:1"] {
        for i in 0..POINTS {
            let v = 1e9 + r.next() * 5e8 + (i as f64) * 1e5;
            out.push_str(&format!(
                "mem_available_bytes{{instance=\"{inst}\"}} {v} {}\n",
                ts(i)
            ));
        }
    }
    out.push_str("# TYPE request_seconds histogram\n");
    for job in ["api", "web"] {
        let bounds = ["0.05", "0.1", "0.25", "0.5", "1.0", "+Inf"];
        let mut counts = [0.0f64; 6];
        let mut sum = 0.0;
        let mut lines: Vec<String> = Vec::new();
        for i in 0..POINTS {
            let n = (r.next() * 20.0).floor();
            for _ in 0..n as usize {
                let x = r.next() * 1.2;
                sum += x;
                for (k, b) in bounds.iter().enumerate() {
                    let ub: f64 = if *b == "+Inf" {
                        f64::INFINITY
                    } else {
                        b.parse().unwrap()
                    };
                    if x <= ub {
                        counts[k] += 1.0;
                    }
                }
            }
            for (k, b) in bounds.iter().enumerate() {
                lines.push(format!(
                    "request_seconds_bucket{{job=\"{job}\",le=\"{b}\"}} {} {}",
                    counts[k],
                    ts(i)
                ));
            }
            lines.push(format!(
                "request_seconds_sum{{job=\"{job}\"}} {sum} {}",
                ts(i)
            ));
            lines.push(format!(
                "request_seconds_count{{job=\"{job}\"}} {} {}",
                counts[5],
                ts(i)
            ));
        }
        // OpenMetrics wants each series' samples together; sort keeps time order per series.
        lines.sort_by_key(|l| l.split(' ').next().unwrap().to_string());
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

fn queries() -> Vec<String> {
    let mut q: Vec<String> = Vec::new();
    let counters = [
        "node_cpu_seconds_total",
        "http_requests_total",
        "http_requests_total{code=\"500\"}",
    ];
    for c in counters {
        for f in [
            "rate",
            "irate",
            "increase",
            "delta",
            "idelta",
            "deriv",
            "changes",
            "resets",
            "avg_over_time",
            "min_over_time",
            "max_over_time",
            "sum_over_time",
            "count_over_time",
            "last_over_time",
            "stddev_over_time",
            "stdvar_over_time",
            "present_over_time",
        ] {
            for r in ["1m", "5m", "17m"] {
                q.push(format!("{f}({c}[{r}])"));
            }
        }
        q.push(format!("quantile_over_time(0.9, {c}[10m])"));
        q.push(c.to_string());
        q.push(format!("{c} offset 7m"));
        q.push(format!("timestamp({c})"));
    }
    for agg in [
        "sum", "avg", "min", "max", "count", "stddev", "stdvar", "group",
    ] {
        q.push(format!("{agg}(rate(node_cpu_seconds_total[5m]))"));
        q.push(format!(
            "{agg} by (mode) (rate(node_cpu_seconds_total[5m]))"
        ));
        q.push(format!("{agg} without (cpu) (node_cpu_seconds_total)"));
        q.push(format!(
            "{agg} by (job) (increase(http_requests_total[10m]))"
        ));
    }
    q.extend(
        [
            "topk(3, rate(node_cpu_seconds_total[5m]))",
            "bottomk(2, mem_available_bytes)",
            "topk by (mode) (1, rate(node_cpu_seconds_total[5m]))",
            "quantile(0.5, rate(node_cpu_seconds_total[5m]))",
            "quantile by (job) (0.9, rate(http_requests_total[5m]))",
            "count_values(\"code\", http_requests_total > 0 > bool 0)",
            "sum by (mode) (rate(node_cpu_seconds_total[5m])) / on(mode) group_left sum(rate(node_cpu_seconds_total[5m]))",
            "rate(node_cpu_seconds_total[5m]) / on(cpu) group_left sum by (cpu) (rate(node_cpu_seconds_total[5m]))",
            "sum by (job, instance) (rate(http_requests_total{code=\"500\"}[5m])) / sum by (job, instance) (rate(http_requests_total[5m]))",
            "http_requests_total{code=\"500\"} > 100",
            "http_requests_total{code=\"500\"} > bool 100",
            "100 < http_requests_total",
            "mem_available_bytes - 1e9",
            "mem_available_bytes / 1024 / 1024",
            "-mem_available_bytes",
            "mem_available_bytes % 7",
            "mem_available_bytes ^ 0.5",
            "http_requests_total{code=\"200\"} and http_requests_total{job=\"api\"}",
            "http_requests_total{code=\"200\"} or mem_available_bytes",
            "http_requests_total unless on(job) http_requests_total{job=\"web\"}",
            "http_requests_total == ignoring(code) group_left http_requests_total{code=\"200\"}",
            "histogram_quantile(0.9, sum by (le) (rate(request_seconds_bucket[5m])))",
            "histogram_quantile(0.5, rate(request_seconds_bucket[10m]))",
            "histogram_quantile(0.99, sum by (job, le) (rate(request_seconds_bucket[5m])))",
            "rate(request_seconds_sum[5m]) / rate(request_seconds_count[5m])",
            "predict_linear(mem_available_bytes[30m], 3600)",
            "deriv(mem_available_bytes[30m])",
            "label_replace(mem_available_bytes, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
            "label_join(http_requests_total, \"id\", \"-\", \"job\", \"instance\", \"code\")",
            "abs(deriv(mem_available_bytes[10m]))",
            "ceil(rate(http_requests_total[5m]))",
            "floor(rate(http_requests_total[5m]))",
            "round(rate(http_requests_total[5m]), 0.1)",
            "clamp(rate(http_requests_total[5m]), 0.1, 0.5)",
            "clamp_min(mem_available_bytes, 1.2e9)",
            "clamp_max(mem_available_bytes, 1.2e9)",
            "sqrt(mem_available_bytes)",
            "ln(mem_available_bytes)",
            "log2(mem_available_bytes)",
            "exp(rate(http_requests_total[5m]) / 100)",
            "absent(nonexistent{job=\"x\"})",
            "absent(mem_available_bytes)",
            "absent_over_time(nonexistent[5m])",
            "max_over_time(rate(http_requests_total[1m])[10m:1m])",
            "avg_over_time(sum(rate(node_cpu_seconds_total[5m]))[15m:30s])",
            "min_over_time(mem_available_bytes[20m:2m] offset 3m)",
            "rate(http_requests_total[5m] offset 10m)",
            "vector(1) + scalar(sum(mem_available_bytes))",
            "scalar(count(mem_available_bytes)) * mem_available_bytes",
            "time() - timestamp(mem_available_bytes)",
            "sgn(deriv(mem_available_bytes[5m]))",
            "count(count by (cpu) (node_cpu_seconds_total))",
            "sum(http_requests_total) by (code) > 1000",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    q
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let scale = a.abs().max(b.abs());
    (a - b).abs() <= 1e-9 * scale || (a - b).abs() < 1e-12
}

fn parse_value(v: &Value) -> f64 {
    appliance::promql::testlang::parse_number(v.as_str().unwrap()).unwrap()
}

fn labels_of(m: &Value) -> String {
    m.to_string()
}

#[test]
fn queries_match_prometheus_on_the_same_data() {
    if !prometheus_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let om = openmetrics();
    let file = dir.path().join("data.om");
    std::fs::write(&file, &om).unwrap();
    let blocks = dir.path().join("prom");
    let st = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
        .arg(&file)
        .arg(&blocks)
        .status()
        .unwrap();
    assert!(st.success(), "promtool failed");
    std::fs::write(dir.path().join("prometheus.yml"), "global: {}\n").unwrap();
    let paddr = format!("127.0.0.1:{}", free_port());
    let _p = prometheus(&dir.path().join("prometheus.yml"), &blocks, &paddr);
    let out = Command::new(env!("CARGO_BIN_EXE_appliance"))
        .args(["tsdb", "import", "openmetrics"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = dir.path().join("appliance.yml");
    std::fs::write(
        &cfg,
        "storage:\n  retention:\n    time: 100y\ncollectors:\n  appliance:\n    enabled: false\n  containers:\n    enabled: false\n  postgres:\n    enabled: false\n  redis:\n    enabled: false\n",
    )
    .unwrap();
    let aaddr = format!("127.0.0.1:{}", free_port());
    let _a = appliance(dir.path(), Some(&cfg), &aaddr);
    wait_ready(&aaddr);
    wait_for(30, "prometheus ready", || {
        get(&paddr, "/-/ready").filter(|(s, _)| *s == 200)
    });
    wait_for(30, "prometheus sees the blocks", || {
        let v = get_json(
            &paddr,
            &format!(
                "/api/v1/query?query=count(mem_available_bytes)&time={}",
                (BASE + 3_600_000) / 1000
            ),
        );
        v["data"]["result"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|_| ())
    });

    let mut failures = Vec::new();
    let qs = queries();
    let instant_times = [BASE + 30 * 60_000, BASE + 90 * 60_000, BASE + 119 * 60_000];
    let (rstart, rend, rstep) = (BASE + 40 * 60_000, BASE + 70 * 60_000, 60_000);
    let mut compared = 0;
    let mut non_empty = 0;
    for q in &qs {
        for t in instant_times {
            let pv = get_json(
                &paddr,
                &format!("/api/v1/query?query={}&time={}", enc(q), t / 1000),
            );
            let av = get_json(
                &aaddr,
                &format!("/api/v1/query?query={}&time={}", enc(q), t / 1000),
            );
            compared += 1;
            if av["status"] != pv["status"] {
                failures.push(format!(
                    "{q} @ {t}: appliance {} {}, prometheus {} {}",
                    av["status"], av["error"], pv["status"], pv["error"]
                ));
                continue;
            }
            if pv["status"] != "success" {
                continue;
            }
            if av["data"]["resultType"] != pv["data"]["resultType"] {
                failures.push(format!(
                    "{q} @ {t}: type {} vs {}",
                    av["data"]["resultType"], pv["data"]["resultType"]
                ));
                continue;
            }
            let collect = |v: &Value| -> BTreeMap<String, f64> {
                match v["data"]["resultType"].as_str().unwrap() {
                    "scalar" => [("{}".to_string(), parse_value(&v["data"]["result"][1]))]
                        .into_iter()
                        .collect(),
                    _ => v["data"]["result"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| (labels_of(&s["metric"]), parse_value(&s["value"][1])))
                        .collect(),
                }
            };
            let (want, got) = (collect(&pv), collect(&av));
            if !want.is_empty() {
                non_empty += 1;
            }
            if want.keys().ne(got.keys()) || want.iter().any(|(k, w)| !close(*w, got[k])) {
                failures.push(format!(
                    "{q} @ {t}:\n  prometheus {want:?}\n  appliance  {got:?}"
                ));
            }
        }
        let pv = get_json(
            &paddr,
            &format!(
                "/api/v1/query_range?query={}&start={}&end={}&step={}",
                enc(q),
                rstart / 1000,
                rend / 1000,
                rstep / 1000
            ),
        );
        let av = get_json(
            &aaddr,
            &format!(
                "/api/v1/query_range?query={}&start={}&end={}&step={}",
                enc(q),
                rstart / 1000,
                rend / 1000,
                rstep / 1000
            ),
        );
        compared += 1;
        if av["status"] != pv["status"] {
            failures.push(format!(
                "{q} range: appliance {} {}, prometheus {}",
                av["status"], av["error"], pv["status"]
            ));
            continue;
        }
        let points = |v: &Value| -> BTreeMap<String, Vec<(i64, f64)>> {
            v["data"]["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        labels_of(&s["metric"]),
                        s["values"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|p| {
                                (
                                    (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                                    parse_value(&p[1]),
                                )
                            })
                            .collect(),
                    )
                })
                .collect()
        };
        let (want, got) = (points(&pv), points(&av));
        if !want.is_empty() {
            non_empty += 1;
        }
        let same = want.len() == got.len()
            && want.iter().all(|(k, w)| {
                got.get(k)
                    .map(|g| {
                        g.len() == w.len()
                            && g.iter().zip(w).all(|(a, b)| a.0 == b.0 && close(a.1, b.1))
                    })
                    .unwrap_or(false)
            });
        if !same {
            failures.push(format!(
                "{q} range:\n  prometheus {want:?}\n  appliance  {got:?}"
            ));
        }
    }
    println!(
        "compared {compared} results of {} queries ({non_empty} non-empty)",
        qs.len()
    );
    // Guard against a vacuous pass: nearly every query must have returned data.
    assert!(
        non_empty * 10 >= compared * 9,
        "only {non_empty} of {compared} results had data"
    );
    assert!(
        failures.is_empty(),
        "{} of {compared} results differ:\n{}",
        failures.len(),
        failures
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
