//! The appliance and Debian's Prometheus scrape the same real node_exporter; their API
//! answers must agree (series, label names, targets, error envelopes).

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;

/// Prometheus 2.x keeps `quantile="0"` as written where 3.x (and we) write `0.0`; compare in
/// the 3.x form.
fn normalize(series: &Value) -> BTreeSet<String> {
    series
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let mut m = s.as_object().unwrap().clone();
            let name = m
                .get("__name__")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string();
            for key in ["quantile", "le"] {
                let applies =
                    (key == "quantile" && !name.ends_with("_sum") && !name.ends_with("_count"))
                        || (key == "le" && name.ends_with("_bucket"));
                if let Some(Value::String(v)) = m.get(key).cloned() {
                    if let (true, Ok(f)) = (applies, v.parse::<f64>()) {
                        m.insert(
                            key.into(),
                            Value::String(appliance::model::exposition::format_openmetrics_float(
                                f,
                            )),
                        );
                    }
                }
            }
            serde_json::to_string(&m).unwrap()
        })
        .collect()
}

/// Debian's Prometheus (with `prom_args`) and the appliance, both on `scrape` (the appliance
/// with `appliance_extra` appended), in `dir`, both ready; (prometheus, its address,
/// appliance, its address).
fn side_by_side(
    dir: &std::path::Path,
    scrape: &str,
    appliance_extra: &str,
    prom_args: &[&str],
) -> (Proc, String, Proc, String) {
    std::fs::write(dir.join("prometheus.yml"), scrape).unwrap();
    std::fs::write(
        dir.join("appliance.yml"),
        format!("{scrape}{appliance_extra}"),
    )
    .unwrap();
    let paddr = format!("127.0.0.1:{}", free_port());
    let p = prometheus_with_args(
        &dir.join("prometheus.yml"),
        &dir.join("prom"),
        &paddr,
        prom_args,
    );
    let aaddr = format!("127.0.0.1:{}", free_port());
    let a = appliance(dir, Some(&dir.join("appliance.yml")), &aaddr);
    wait_ready(&aaddr);
    wait_for(30, "prometheus ready", || {
        get(&paddr, "/-/ready").filter(|(s, _)| *s == 200)
    });
    (p, paddr, a, aaddr)
}

#[test]
fn same_answers_as_prometheus_for_node_exporter() {
    if !prometheus_installed() {
        return;
    }
    let ne_port = free_port();
    let Some(_ne) = node_exporter(ne_port) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pages = static_server(vec![
        (
            "/ok",
            "text/plain; version=0.0.4",
            "a 1\nb 2\nc 3\n".to_string(),
        ),
        ("/big", "text/plain; version=0.0.4", "x 1\n".repeat(1000)),
        (
            "/bad",
            "text/plain; version=0.0.4",
            "a 1\nb{ 2\n".to_string(),
        ),
        (
            "/badvalue",
            "text/plain; version=0.0.4",
            "a one\n".to_string(),
        ),
    ]);
    let mut scrape = format!("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{ne_port}']\n        labels: {{env: test}}\n");
    for (job, path, extra) in [
        ("limit", "/ok", "    sample_limit: 2\n"),
        ("body", "/big", "    body_size_limit: 1KB\n"),
        ("bad", "/bad", ""),
        ("badvalue", "/badvalue", ""),
        ("missing", "/nope", ""),
    ] {
        scrape.push_str(&format!("  - job_name: {job}\n    metrics_path: {path}\n{extra}    static_configs:\n      - targets: ['{pages}']\n"));
    }
    let (_p, paddr, _a, aaddr) = side_by_side(
        dir.path(),
        &scrape,
        "collectors:\n  appliance:\n    enabled: false\n  containers:\n    enabled: false\n  postgres:\n    enabled: false\n  redis:\n    enabled: false\n",
        &[],
    );
    for addr in [&paddr, &aaddr] {
        wait_for(15, "every target scraped", || {
            let v = get_json(addr, "/api/v1/targets");
            v["data"]["activeTargets"]
                .as_array()
                .filter(|a| a.len() == 6 && a.iter().all(|t| t["health"] != "unknown"))
                .map(|_| ())
        });
    }

    for sel in [
        "node_cpu_seconds_total",
        "go_gc_duration_seconds",
        "node_filesystem_avail_bytes",
        "node_network_receive_bytes_total",
        "up",
        "scrape_samples_post_metric_relabeling",
        "node_exporter_build_info",
    ] {
        let path = format!("/api/v1/series?match[]={sel}");
        let p = normalize(&get_json(&paddr, &path)["data"]);
        let a = normalize(&get_json(&aaddr, &path)["data"]);
        assert!(!p.is_empty(), "{sel}: prometheus has no series");
        assert_eq!(a, p, "{sel}: series differ");
    }

    let path = "/api/v1/labels?match[]=node_cpu_seconds_total";
    assert_eq!(
        get_json(&aaddr, path)["data"],
        get_json(&paddr, path)["data"]
    );
    let path = "/api/v1/label/mode/values?match[]=node_cpu_seconds_total";
    assert_eq!(
        get_json(&aaddr, path)["data"],
        get_json(&paddr, path)["data"]
    );

    let pts = get_json(&paddr, "/api/v1/targets")["data"]["activeTargets"].clone();
    let ats = get_json(&aaddr, "/api/v1/targets")["data"]["activeTargets"].clone();
    assert_eq!(pts.as_array().unwrap().len(), ats.as_array().unwrap().len());
    for (pt, at) in pts.as_array().unwrap().iter().zip(ats.as_array().unwrap()) {
        let pool = pt["scrapePool"].as_str().unwrap();
        for key in [
            "labels",
            "discoveredLabels",
            "scrapePool",
            "scrapeUrl",
            "health",
            "scrapeInterval",
            "scrapeTimeout",
        ] {
            assert_eq!(at[key], pt[key], "targets of {pool}: {key}");
        }
        // Parse errors name the problem in our own words (Prometheus's come from its lexer's
        // token names); every other failure reads the same.
        if pool.starts_with("bad") {
            assert!(!at["lastError"].as_str().unwrap().is_empty(), "{pool}");
        } else {
            assert_eq!(
                at["lastError"], pt["lastError"],
                "targets of {pool}: lastError"
            );
        }
    }
    let pm = get_json(
        &paddr,
        "/api/v1/targets/metadata?metric=node_cpu_seconds_total",
    )["data"][0]
        .clone();
    let am = get_json(
        &aaddr,
        "/api/v1/targets/metadata?metric=node_cpu_seconds_total",
    )["data"][0]
        .clone();
    for key in ["target", "type", "help", "unit"] {
        assert_eq!(am[key], pm[key], "metadata: {key}");
    }

    // Instant queries whose answers do not depend on when each side scraped.
    // A moment ahead, so both sides' latest scrapes are inside the lookback window.
    let now = chrono::Utc::now().timestamp() + 2;
    for q in [
        "up",
        "sum by (job) (up)",
        "count by (mode) (node_cpu_seconds_total)",
        "count by (__name__) ({job=\"node\", __name__=~\"node_cpu.*\"})",
        "label_replace(up, \"port\", \"$1\", \"instance\", \".*:(.*)\")",
        "up == 0",
        "count(up) > bool 3",
        "scrape_samples_scraped{job!=\"node\"}",
        "scrape_samples_post_metric_relabeling{job!=\"node\"}",
        "absent(nope{job=\"x\"})",
        "vector(1) + on() group_left count(up)",
    ] {
        let path = format!("/api/v1/query?time={now}&query={}", enc(q));
        let p = get_json(&paddr, &path);
        let a = get_json(&aaddr, &path);
        assert_eq!(a["status"], "success", "{q}: {a}");
        assert_eq!(a["data"]["resultType"], p["data"]["resultType"], "{q}");
        let norm = |v: &Value| -> BTreeSet<String> {
            v["data"]["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| format!("{} {}", r["metric"], r["value"][1]))
                .collect()
        };
        assert_eq!(norm(&a), norm(&p), "{q}");
    }

    for path in [
        "/api/v1/series",
        "/api/v1/series?match[]=up&start=foo",
        "/api/v1/series?match[]=up&end=bar",
        "/api/v1/series?match[]=up{",
        "/api/v1/series?match[]={a=\"\"}",
        "/api/v1/labels?start=x",
    ] {
        let (pc, pb) = get(
            &paddr,
            &path
                .replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22"),
        )
        .unwrap();
        let (ac, ab) = get(
            &aaddr,
            &path
                .replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22"),
        )
        .unwrap();
        let pv: Value = serde_json::from_str(&pb).unwrap();
        let av: Value = serde_json::from_str(&ab).unwrap();
        assert_eq!(
            (ac, &av["status"], &av["errorType"]),
            (pc, &pv["status"], &pv["errorType"]),
            "{path}: {ab} vs {pb}"
        );
        if !path.contains("up{") && !path.contains("a=") {
            assert_eq!(av["error"], pv["error"], "{path}");
        }
    }
}

/// A `/federate` body with each sample's timestamp checked (recent) and cut off (each side
/// scraped at its own moment), lines sorted (Prometheus sorts by name only, unstably).
fn federated(body: &str, now_ms: i64) -> Vec<String> {
    let mut lines: Vec<String> = body
        .lines()
        .map(|l| {
            if l.starts_with('#') {
                return l.to_string();
            }
            let (rest, ts) = l.rsplit_once(' ').unwrap();
            let ts: i64 = ts.parse().unwrap_or_else(|_| panic!("timestamp in {l:?}"));
            assert!((now_ms - 120_000..=now_ms + 5_000).contains(&ts), "{l}");
            rest.to_string()
        })
        .collect();
    lines.sort();
    lines
}

/// Issue 18: `/api/v1/metadata`, `/api/v1/query_exemplars` and `/federate` answer as Debian's
/// Prometheus (exemplar storage on) does after both scrape the same OpenMetrics target.
#[test]
fn metadata_exemplars_and_federation_as_prometheus_answers() {
    if !prometheus_installed() {
        return;
    }
    // Exemplar times are written out, so both sides store the same ones.
    let t0 = chrono::Utc::now().timestamp() - 30;
    let page = format!(
        "# TYPE req counter\n# HELP req Requests served.\n\
         req_total{{code=\"200\"}} 10 # {{trace_id=\"abc\"}} 1.0 {t0}.123\n\
         req_total{{code=\"500\"}} 2 # {{trace_id=\"untimed\"}} 1\n\
         # TYPE lat_seconds histogram\n# HELP lat_seconds Latency \\\\ of \"requests\".\n# UNIT lat_seconds seconds\n\
         lat_seconds_bucket{{le=\"0.1\"}} 5 # {{trace_id=\"t1\"}} 0.05 {t0}.5\n\
         lat_seconds_bucket{{le=\"1.0\"}} 8 # {{span_id=\"s\",trace_id=\"t2\"}} 0.7 {t0}\n\
         lat_seconds_bucket{{le=\"+Inf\"}} 9\nlat_seconds_sum 4.2\nlat_seconds_count 9\n\
         # TYPE temp gauge\ntemp{{room=\"a b\"}} 21.5\ntemp{{room=\"q\\\"x\\\\y\"}} 1e+06\ntemp{{room=\"n\"}} -0.000012\n\
         # TYPE info_thing info\ninfo_thing_info{{version=\"1.2\"}} 1\n\
         # EOF\n"
    );
    let target = static_server(vec![(
        "/metrics",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        page,
    )]);
    let dir = tempfile::tempdir().unwrap();
    let scrape = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  external_labels: {{region: eu, job: not-used}}\nscrape_configs:\n  - job_name: fed\n    static_configs:\n      - targets: ['{target}']\n"
    );
    let (_p, paddr, _a, aaddr) = side_by_side(
        dir.path(),
        &scrape,
        "collectors: {appliance: {enabled: false}, node: {enabled: false}, containers: {enabled: false}, postgres: {enabled: false}, redis: {enabled: false}, celery: {enabled: false}}\n",
        &["--enable-feature=exemplar-storage"],
    );
    for addr in [&paddr, &aaddr] {
        wait_for(30, "the target scraped twice", || {
            (query_value(addr, "count_over_time(temp{room=\"n\"}[1m])")? >= 2.0).then_some(())
        });
    }
    let both = |path: &str| (get_json(&paddr, path), get_json(&aaddr, path));
    // An exemplar without a time gets its first scrape's, which differs between the two;
    // that each keeps it once (not once per scrape) is what must agree.
    let untimed = |mut v: serde_json::Value| {
        for s in v["data"].as_array_mut().into_iter().flatten() {
            for e in s["exemplars"].as_array_mut().into_iter().flatten() {
                if e["labels"]["trace_id"] == "untimed" {
                    e["timestamp"] = serde_json::json!(0);
                }
            }
        }
        v
    };

    // Metadata, whole and filtered.
    for path in [
        "/api/v1/metadata",
        "/api/v1/metadata?metric=lat_seconds",
        "/api/v1/metadata?metric=nope",
        "/api/v1/metadata?limit=2",
    ] {
        let (p, a) = both(path);
        if path.contains("limit=2") {
            // Which two is up to each side's map order; the count is not.
            assert_eq!(
                a["data"].as_object().unwrap().len(),
                p["data"].as_object().unwrap().len(),
                "{path}"
            );
        } else {
            assert_eq!(a, p, "{path}");
        }
    }

    // Exemplars: by the query's selectors, in a range, none outside it.
    let (s, e) = (t0 - 60, t0 + 600);
    for q in [
        "req_total",
        "lat_seconds_bucket",
        "sum(rate(lat_seconds_bucket{le!=\"+Inf\"}[5m])) / on() group_left sum(rate(req_total[1m]))",
        "temp",
    ] {
        let path = format!("/api/v1/query_exemplars?query={}&start={s}&end={e}", enc(q));
        let (p, a) = both(&path);
        assert_eq!(untimed(a), untimed(p), "{q}");
    }
    let path = format!("/api/v1/query_exemplars?query={}", enc("1 + 1"));
    assert_eq!(get(&aaddr, &path), get(&paddr, &path), "no selector");
    let path = format!(
        "/api/v1/query_exemplars?query=lat_seconds_bucket&start={}&end={e}",
        t0 + 10
    );
    let (p, a) = both(&path);
    assert_eq!(a, p);
    assert_eq!(a["data"], serde_json::json!([]));
    let (p, a) = both(&format!(
        "/api/v1/query_exemplars?query=req_total&start=0&end={}",
        t0 - 1000
    ));
    assert_eq!(a, p);
    let (pc, pb) = request(&paddr, "GET", "/api/v1/query_exemplars?query=sum(", "").unwrap();
    let (ac, ab) = request(&aaddr, "GET", "/api/v1/query_exemplars?query=sum(", "").unwrap();
    assert_eq!(
        (
            ac,
            serde_json::from_str::<serde_json::Value>(&ab).unwrap()["errorType"].clone()
        ),
        (
            pc,
            serde_json::from_str::<serde_json::Value>(&pb).unwrap()["errorType"].clone()
        )
    );

    // Federation: the same families, series, values and labels (external ones added).
    let now_ms = chrono::Utc::now().timestamp_millis();
    for query in [
        "match[]={job=\"fed\",__name__!~\"up|scrape_.*\"}",
        "match[]=temp&match[]={__name__=~\"req_total|temp\"}",
        "match[]=lat_seconds_bucket{le=\"%2BInf\"}",
        "match[]=nope",
        "",
    ] {
        let path = format!(
            "/federate?{}",
            query.replace('"', "%22").replace(' ', "%20")
        );
        let (pc, pb) = get(&paddr, &path).unwrap();
        let (ac, ab) = get(&aaddr, &path).unwrap();
        assert_eq!((ac, pc), (200, 200), "{path}");
        if query.contains("job") {
            assert!(ab.contains("# TYPE temp untyped\n"), "{ab}");
            assert!(ab.contains("region=\"eu\""), "{ab}");
            assert!(
                ab.contains("room=\"q\\\"x\\\\y\"") && ab.contains(" 1e+06 "),
                "{ab}"
            );
        }
        assert_eq!(
            federated(&ab, now_ms),
            federated(&pb, now_ms),
            "{path}\n{ab}\n--- prometheus:\n{pb}"
        );
    }
    let (code, _) = get(&aaddr, "/federate?match[]=sum(up)").unwrap();
    assert_eq!(code, get(&paddr, "/federate?match[]=sum(up)").unwrap().0);
}

/// Issue 20: the same protobuf page, with native histograms (integer and float counts, a
/// gauge histogram, one with classic buckets beside, one wide enough to need a schema
/// reduction under a bucket limit) and the other types, scraped by Debian's Prometheus with
/// `--enable-feature=native-histograms` and by the appliance with `scrape_native_histograms`;
/// every series and every value (histograms bucket by bucket, as the API prints them) agree.
#[test]
fn protobuf_native_histograms_as_prometheus_scrapes_them() {
    use appliance::model::exposition::protobuf::{encode_delimited, pb};
    if !prometheus_installed() {
        return;
    }
    let lp = |n: &str, v: &str| pb::LabelPair {
        name: n.into(),
        value: v.into(),
    };
    let span = |offset, length| pb::BucketSpan { offset, length };
    let hist = |labels: Vec<pb::LabelPair>, h: pb::Histogram| pb::Metric {
        label: labels,
        histogram: Some(h),
        ..Default::default()
    };
    let family = |name: &str, t: pb::MetricType, metric: Vec<pb::Metric>| pb::MetricFamily {
        name: name.into(),
        help: format!("{name} help."),
        r#type: t as i32,
        unit: String::new(),
        metric,
    };
    let fams = vec![
        family(
            "rpc_seconds",
            pb::MetricType::Histogram,
            vec![
                hist(
                    vec![lp("svc", "a")],
                    pb::Histogram {
                        sample_count: 18,
                        sample_sum: 8.25,
                        schema: 3,
                        zero_threshold: 1e-128,
                        zero_count: 1,
                        positive_span: vec![span(-2, 2), span(3, 3)],
                        positive_delta: vec![2, 1, -1, 0, 3],
                        negative_span: vec![span(0, 1)],
                        negative_delta: vec![3],
                        bucket: vec![
                            pb::Bucket {
                                cumulative_count: 3,
                                upper_bound: 0.5,
                                ..Default::default()
                            },
                            pb::Bucket {
                                cumulative_count: 17,
                                upper_bound: 1.0,
                                ..Default::default()
                            },
                        ],
                        ..Default::default()
                    },
                ),
                hist(
                    vec![lp("svc", "b")],
                    pb::Histogram {
                        sample_count: 0,
                        schema: 0,
                        zero_threshold: 0.001,
                        positive_span: vec![span(0, 0)],
                        ..Default::default()
                    },
                ),
            ],
        ),
        family(
            "float_seconds",
            pb::MetricType::Histogram,
            vec![hist(
                vec![],
                pb::Histogram {
                    sample_count_float: 6.5,
                    sample_sum: -2.75,
                    schema: -1,
                    zero_threshold: 0.01,
                    zero_count_float: 0.5,
                    positive_span: vec![span(1, 2), span(2, 1)],
                    positive_count: vec![1.5, 0.0, 2.5],
                    negative_span: vec![span(-1, 1)],
                    negative_count: vec![2.0],
                    ..Default::default()
                },
            )],
        ),
        family(
            "queue_gauge",
            pb::MetricType::GaugeHistogram,
            vec![hist(
                vec![lp("q", "x")],
                pb::Histogram {
                    sample_count: 5,
                    sample_sum: 40.0,
                    schema: 1,
                    positive_span: vec![span(5, 2)],
                    positive_delta: vec![1, 2],
                    zero_count: 1,
                    ..Default::default()
                },
            )],
        ),
        family(
            "classic_seconds",
            pb::MetricType::Histogram,
            vec![hist(
                vec![],
                pb::Histogram {
                    sample_count: 5,
                    sample_sum: 1.5,
                    bucket: vec![pb::Bucket {
                        cumulative_count: 2,
                        upper_bound: 0.25,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )],
        ),
        family(
            "jobs",
            pb::MetricType::Counter,
            vec![pb::Metric {
                label: vec![lp("kind", "x")],
                counter: Some(pb::Counter {
                    value: 12.0,
                    ..Default::default()
                }),
                ..Default::default()
            }],
        ),
        family(
            "lag",
            pb::MetricType::Summary,
            vec![pb::Metric {
                summary: Some(pb::Summary {
                    sample_count: 9,
                    sample_sum: 4.5,
                    quantile: vec![
                        pb::Quantile {
                            quantile: 0.5,
                            value: 0.25,
                        },
                        pb::Quantile {
                            quantile: 0.99,
                            value: 1.75,
                        },
                    ],
                    start_timestamp: None,
                }),
                ..Default::default()
            }],
        ),
        family(
            "temp",
            pb::MetricType::Gauge,
            vec![pb::Metric {
                gauge: Some(pb::Gauge { value: -3.5 }),
                ..Default::default()
            }],
        ),
    ];
    let target = static_bytes_server(vec![(
        "/metrics",
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
        encode_delimited(&fams),
    )]);
    let dir = tempfile::tempdir().unwrap();
    // Prometheus 2.42 knows neither `scrape_native_histograms` nor bucket limits under those
    // names in a job it shares; the appliance's switch goes in its own `global`.
    let scrape = format!(
        "scrape_configs:\n  - job_name: nh\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: ['{target}']\n"
    );
    let (_p, paddr, _a, aaddr) = side_by_side(
        dir.path(),
        &scrape,
        "global: {scrape_native_histograms: true}\ncollectors: {appliance: {enabled: false}, node: {enabled: false}, containers: {enabled: false}, postgres: {enabled: false}, redis: {enabled: false}, celery: {enabled: false}}\n",
        &["--enable-feature=native-histograms"],
    );
    let q = "{job=\"nh\",__name__!~\"up|scrape_.*\"}";
    let path = format!("/api/v1/query?query={}", enc(q));
    // Each side's answer with timestamps dropped, one line per series, sorted.
    let answer = |addr: &str| -> Option<Vec<String>> {
        let v = get_json(addr, &path);
        let mut out: Vec<String> = v["data"]["result"]
            .as_array()?
            .iter()
            .map(|s| {
                let value = s.get("value").map(|v| v[1].clone());
                let hist = s.get("histogram").map(|v| v[1].clone());
                format!("{} {:?} {:?}", s["metric"], value, hist)
            })
            .collect();
        out.sort();
        (out.len() >= 14).then_some(out)
    };
    let p = wait_for(30, "prometheus scraped the page", || answer(&paddr));
    let a = wait_for(30, "the appliance scraped the page", || answer(&aaddr));
    assert_eq!(a, p);
    // The histograms really are native on both sides.
    assert!(
        a.iter()
            .any(|l| l.contains("rpc_seconds") && l.contains("buckets")),
        "{a:#?}"
    );
    assert!(
        !a.iter().any(|l| l.contains("rpc_seconds_bucket")),
        "{a:#?}"
    );

    // The histogram functions over them, value by value.
    let values = |addr: &str, q: &str| instant_values(addr, q, None);
    let sel = "{job=\"nh\",__name__=~\"rpc_seconds|float_seconds|queue_gauge\"}";
    for q in [
        format!("histogram_count({sel})"),
        format!("histogram_sum({sel})"),
        // Bounds on bucket boundaries at every schema here: no interpolation inside a bucket.
        format!("histogram_fraction(0, 1, {sel})"),
        format!("histogram_fraction(-4, 4, {sel})"),
    ] {
        let (p, a) = (values(&paddr, &q), values(&aaddr, &q));
        assert_eq!(a.len(), p.len(), "{q}: {a:?} vs {p:?}");
        assert!(!a.is_empty(), "{q}");
        for ((al, af), (pl, pf)) in a.iter().zip(&p) {
            assert_eq!(al, pl, "{q}");
            let close = (af.is_nan() && pf.is_nan())
                || af == pf
                || (af - pf).abs() <= 1e-9 * af.abs().max(pf.abs());
            assert!(close, "{q} {al}: appliance {af}, prometheus {pf}");
        }
    }
    // Quantiles: Prometheus 2.42 interpolates linearly inside a native bucket, Prometheus 3
    // (and the appliance) exponentially.
    for qv in [0.9, 0.25, 0.6] {
        assert_same_native_quantile(&paddr, &aaddr, sel, qv, None);
    }
}
