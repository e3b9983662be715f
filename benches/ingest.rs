//! Ingest throughput: exposition parsing and head appends, in samples per second.
//!
//! Inputs: node_exporter's real page (`../shared/testdata/exporters/node_exporter.txt`),
//! Prometheus's 237-family parser benchmark page, and a synthetic 10k-series page.
//! `cargo bench --bench ingest` prints `thrpt` in elements (= samples) per second.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use appliance::model::exposition::{Entry, Format, Parser, ParserOptions};
use appliance::model::Labels;
use appliance::storage::{Appendable, Head, HeadOptions};

fn inputs() -> Vec<(String, Vec<u8>, Format)> {
    let mut v = Vec::new();
    if let Some(d) = appliance::testsupport::shared_testdata("exporters") {
        v.push((
            "node_exporter".into(),
            std::fs::read(d.join("node_exporter.txt")).unwrap_or_default(),
            Format::PrometheusText,
        ));
    }
    if let Some(d) = appliance::testsupport::shared_testdata("exposition/prometheus-textparse") {
        v.push((
            "alltypes237".into(),
            std::fs::read(d.join("alltypes.237mfs.prom.txt")).unwrap_or_default(),
            Format::PrometheusText,
        ));
    }
    let mut synth =
        String::from("# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n");
    for i in 0..10_000 {
        synth.push_str(&format!(
            "http_requests_total{{method=\"GET\",handler=\"/api/v{}\",code=\"{}\"}} {}\n",
            i % 100,
            200 + i % 5,
            i * 7
        ));
    }
    v.push((
        "synthetic10k".into(),
        synth.into_bytes(),
        Format::PrometheusText,
    ));
    v
}

fn samples(body: &[u8], f: Format) -> Vec<(Labels, f64)> {
    Parser::new(body, f, ParserOptions::default())
        .filter_map(|e| match e {
            Ok(Entry::Sample(s)) => {
                let mut pairs: Vec<(String, String)> = s
                    .labels
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect();
                pairs.push(("__name__".into(), s.name.to_string()));
                pairs.push(("job".into(), "bench".into()));
                Some((Labels::from_pairs(pairs), s.value))
            }
            _ => None,
        })
        .collect()
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for (name, body, f) in inputs() {
        let n = Parser::new(&body, f, ParserOptions::default())
            .filter(|e| matches!(e, Ok(Entry::Sample(_))))
            .count();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(&name), &body, |b, body| {
            b.iter(|| {
                Parser::new(body, f, ParserOptions::default())
                    .filter(|e| e.is_ok())
                    .count()
            });
        });
    }
    g.finish();
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("head_append");
    for (name, body, f) in inputs() {
        let series = samples(&body, f);
        g.throughput(Throughput::Elements(series.len() as u64));
        let head = Head::new(HeadOptions::default());
        let mut t = 0i64;
        g.bench_function(BenchmarkId::from_parameter(&name), |b| {
            b.iter(|| {
                t += 15_000;
                let mut a = head.appender();
                for (l, v) in &series {
                    let _ = a.append(l, t, *v);
                }
                a.commit().ok()
            });
        });
    }
    g.finish();
}

/// Restart: replaying a WAL of 100k series and five scrapes into a new head (the figure behind
/// "restart with 1M series" in `benches/compare_all.sh`, at a tenth of the size).
fn wal_replay(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let wal = dir.path().join("wal");
    let series: Vec<Labels> = (0..100_000)
        .map(|i| {
            Labels::from_pairs([
                ("__name__", "http_requests_total".to_string()),
                ("handler", format!("/api/v{}/item", i % 1000)),
                ("pod", format!("pod-{}", i / 1000)),
                ("code", format!("{}", 200 + i % 5)),
                ("job", "bench".to_string()),
            ])
        })
        .collect();
    {
        let (head, _) = Head::open(&wal, HeadOptions::default()).expect("a head");
        for k in 0..5i64 {
            let mut a = head.appender();
            for (i, l) in series.iter().enumerate() {
                let _ = a.append(l, 1_700_000_000_000 + k * 10_000, (i as i64 + k) as f64);
            }
            a.commit().ok();
        }
        head.sync().ok();
    }
    let mut g = c.benchmark_group("wal_replay");
    g.sample_size(10);
    g.throughput(Throughput::Elements(series.len() as u64 * 5));
    g.bench_function("100k_series_5_scrapes", |b| {
        b.iter(|| Head::open(&wal, HeadOptions::default()).map(|(h, _)| h.num_samples()))
    });
    g.finish();
}

criterion_group!(benches, parse, append, wal_replay);
criterion_main!(benches);
