//! PromQL range-query speed on 1,000 series x 24 h at 15 s (5.76 M samples):
//! `sum by (mode) (rate(...[5m]))` and a `histogram_quantile` over bucket series.
//! `cargo bench --bench promql`; `benches/compare_promql.sh` times Debian's Prometheus on the
//! same data in the same run.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};

use appliance::model::Labels;
use appliance::promql::{Engine, EngineOptions};
use appliance::storage::{Appendable, Head, HeadOptions};

pub const DAY_MS: i64 = 24 * 3600 * 1000;
pub const STEP_MS: i64 = 15_000;

/// 1,000 series: 100 cpu x 10 modes of a counter, plus 10 jobs x 10 `le` buckets.
fn head() -> Head {
    let head = Head::new(HeadOptions::default());
    let modes = [
        "idle",
        "user",
        "system",
        "iowait",
        "irq",
        "softirq",
        "steal",
        "nice",
        "guest",
        "guest_nice",
    ];
    let les = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "+Inf",
    ];
    let mut series: Vec<(Labels, f64)> = Vec::new();
    for cpu in 0..90 {
        for (k, mode) in modes.iter().enumerate() {
            series.push((
                Labels::from_pairs([
                    ("__name__", "node_cpu_seconds_total".to_string()),
                    ("cpu", cpu.to_string()),
                    ("mode", mode.to_string()),
                ]),
                (k + 1) as f64 * 0.1,
            ));
        }
    }
    for job in 0..10 {
        for (k, le) in les.iter().enumerate() {
            series.push((
                Labels::from_pairs([
                    ("__name__", "request_seconds_bucket".to_string()),
                    ("job", format!("j{job}")),
                    ("le", le.to_string()),
                ]),
                (k + 1) as f64,
            ));
        }
    }
    let mut a = head.appender();
    let refs: Vec<_> = series
        .iter()
        .map(|(l, _)| a.append(l, 0, 0.0).unwrap())
        .collect();
    a.commit().unwrap();
    let mut t = STEP_MS;
    while t < DAY_MS {
        let mut a = head.appender();
        for (i, (_, inc)) in series.iter().enumerate() {
            a.append_ref(refs[i], t, (t / STEP_MS) as f64 * inc)
                .unwrap();
        }
        a.commit().unwrap();
        t += STEP_MS;
    }
    head
}

/// The same data from an OpenMetrics file (what `benches/compare_promql.sh` also gives
/// Prometheus), when `PROMQL_BENCH_OM` names one.
fn head_from_file(path: &str) -> Head {
    use appliance::model::exposition::{Entry, Format, Parser, ParserOptions};
    let body = std::fs::read(path).expect("PROMQL_BENCH_OM file");
    let head = Head::new(HeadOptions::default());
    let mut a = head.appender();
    let mut refs: std::collections::HashMap<Vec<u8>, appliance::storage::SeriesRef> =
        std::collections::HashMap::new();
    for e in Parser::new(&body, Format::OpenMetrics, ParserOptions::default()) {
        if let Ok(Entry::Sample(s)) = e {
            let t = s.timestamp_ms.expect("timestamps");
            match refs.get(&s.series[..]) {
                Some(r) => a.append_ref(*r, t, s.value).unwrap(),
                None => {
                    let mut pairs: Vec<(String, String)> = s
                        .labels
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect();
                    pairs.push(("__name__".into(), s.name.to_string()));
                    let r = a.append(&Labels::from_pairs(pairs), t, s.value).unwrap();
                    refs.insert(s.series.to_vec(), r);
                }
            }
        }
    }
    a.commit().unwrap();
    head
}

fn bench(c: &mut Criterion) {
    let head = match std::env::var("PROMQL_BENCH_OM") {
        Ok(p) => head_from_file(&p),
        Err(_) => head(),
    };
    let engine = Engine::new(Arc::new(head), EngineOptions::default());
    let mut g = c.benchmark_group("range_24h_1000_series");
    g.sample_size(10);
    g.bench_function("sum_by_mode_rate_5m_step_1m", |b| {
        b.iter(|| {
            engine
                .range(
                    "sum by (mode) (rate(node_cpu_seconds_total[5m]))",
                    600_000,
                    DAY_MS - 60_000,
                    60_000,
                )
                .unwrap()
        })
    });
    // A subquery inside a range query: its inner steps are shared between outer steps.
    g.bench_function("max_over_time_subquery_30m_1m_step_1m", |b| {
        b.iter(|| {
            engine
                .range(
                    "max_over_time(sum by (mode) (rate(node_cpu_seconds_total[2m]))[30m:1m])",
                    600_000,
                    DAY_MS - 60_000,
                    60_000,
                )
                .unwrap()
        })
    });
    g.bench_function("histogram_quantile_step_1m", |b| {
        b.iter(|| {
            engine
                .range(
                    "histogram_quantile(0.9, sum by (job, le) (rate(request_seconds_bucket[5m])))",
                    600_000,
                    DAY_MS - 60_000,
                    60_000,
                )
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
