use super::*;
use crate::storage::{Appendable, Head, HeadOptions};

type Fixture<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [(i64, f64)]);

fn engine(series: &[Fixture<'_>]) -> Engine {
    let head = Head::new(HeadOptions::default());
    let mut a = head.appender();
    for (name, labels, points) in series {
        let mut pairs: Vec<(&str, &str)> = labels.to_vec();
        pairs.push(("__name__", name));
        let l = Labels::from_pairs(pairs);
        for (t, v) in *points {
            a.append(&l, *t, *v).unwrap();
        }
    }
    a.commit().unwrap();
    Engine::new(std::sync::Arc::new(head), EngineOptions::default())
}

#[test]
fn rate_extrapolates_like_prometheus() {
    // 0, 10, 20, ... every 15 s: rate over 1 m is 10/15 per second.
    let pts: Vec<(i64, f64)> = (0..=20).map(|i| (i * 15_000, i as f64 * 10.0)).collect();
    let e = engine(&[("c_total", &[("job", "a")], &pts)]);
    let r = e.instant("rate(c_total[1m])", 300_000).unwrap();
    let Value::Vector(v) = r.value else { panic!() };
    assert_eq!(v.len(), 1);
    assert!((v[0].f - 10.0 / 15.0).abs() < 1e-9, "{}", v[0].f);
    assert_eq!(v[0].metric.get("__name__"), None);
    assert_eq!(v[0].metric.get("job"), Some("a"));
}

#[test]
fn syntax_errors_are_parse_errors() {
    let e = engine(&[]);
    assert!(matches!(e.instant("sum(", 0), Err(PromqlError::Parse(_))));
}

fn many_series(n: usize) -> Engine {
    let head = Head::new(HeadOptions::default());
    let mut a = head.appender();
    for i in 0..n {
        let l = Labels::from_pairs([("__name__", "m".to_string()), ("i", i.to_string())]);
        for t in 0..10 {
            a.append(&l, t * 15_000, t as f64).unwrap();
        }
    }
    a.commit().unwrap();
    Engine::new(std::sync::Arc::new(head), EngineOptions::default())
}

#[test]
fn limits_give_prometheus_errors() {
    let mut e = many_series(20);
    e.opts.max_samples = 10;
    let err = e.instant("m", 100_000).unwrap_err();
    assert_eq!(
        err.to_string(),
        "query processing would load too many samples into memory in query execution"
    );
    e.opts.max_samples = 100;
    // Each step fits, but the range result (20 series x 11 steps) does not.
    assert!(matches!(
        e.range("m", 0, 150_000, 15_000),
        Err(PromqlError::TooManySamples(_))
    ));
    e.opts.max_samples = 10_000;
    e.opts.timeout = std::time::Duration::ZERO;
    assert!(matches!(
        e.range("m", 0, 150_000, 15_000),
        Err(PromqlError::Timeout(_))
    ));
}

#[test]
fn range_query_of_a_matrix_is_refused() {
    let e = many_series(1);
    let err = e.range("m[1m]", 0, 60_000, 15_000).unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid expression type \"range vector\" for range query"),
        "{err}"
    );
}

#[test]
fn info_selectors_with_only_empty_matchers_parse() {
    assert!(parse("info(m, {data=~\".*\"})").is_ok());
    assert!(parse("sum(info(rate(m[5m]), {a=~\".*\", b!=\"x\"})) by (a)").is_ok());
    // Elsewhere such selectors stay errors, as in Prometheus.
    assert!(parse("{a=~\".*\"}").is_err());
    assert!(parse("rate({a=\"\"}[5m])").is_err());
    // Strings mentioning info( are left alone.
    assert!(parse("label_replace(m, \"x\", \"info(y, {a=~\\\".*\\\"})\", \"y\", \"é\")").is_ok());
}

#[test]
fn byte_escapes_follow_go() {
    // Go reads "\xff" as the byte 0xff (invalid UTF-8, so no valid label name) and
    // "\xc3\xa9" as "é"; the parser crate reads each escape as a character.
    let err = many_series(1)
        .instant(r#"label_replace(m, "\xff", "", "i", "(.*)")"#, 100_000)
        .unwrap_err();
    assert!(
        err.to_string().contains("invalid destination label name"),
        "{err}"
    );
    let r = many_series(1)
        .instant(r#"label_replace(m, "x", "\xc3\xa9", "i", "(.*)")"#, 100_000)
        .unwrap();
    let Value::Vector(v) = r.value else { panic!() };
    assert_eq!(v[0].metric.get("x"), Some("é"));
}

#[test]
fn native_histograms_flow_through_selectors_aggregations_and_range_queries() {
    use crate::model::histogram::FloatHistogram;
    let head = Head::new(HeadOptions::default());
    let mut a = head.appender();
    let l = Labels::from_pairs([("__name__", "req"), ("job", "a")]);
    let h = std::sync::Arc::new(FloatHistogram::parse("{{count:2 sum:3 buckets:[2]}}").unwrap());
    a.append_histogram(&l, 10_000, h.clone()).unwrap();
    a.append(
        &Labels::from_pairs([("__name__", "req"), ("job", "b")]),
        10_000,
        7.0,
    )
    .unwrap();
    a.commit().unwrap();
    let e = Engine::new(std::sync::Arc::new(head), EngineOptions::default());
    let r = e.instant("(req)", 20_000).unwrap();
    let Value::Vector(v) = r.value else { panic!() };
    assert_eq!(v.len(), 2);
    assert_eq!(
        v[0].h.as_deref().map(|h| h.to_string()),
        Some(h.to_string())
    );
    assert_eq!((v[1].f, v[1].h.is_none()), (7.0, true));
    // Later than the lookback: gone.
    let Value::Vector(v) = e.instant("req", 400_000).unwrap().value else {
        panic!()
    };
    assert!(v.is_empty());
    // A float and a histogram do not add up: no result, with Prometheus's warning.
    let r = e.instant("sum(req)", 20_000).unwrap();
    let Value::Vector(v) = r.value else { panic!() };
    assert!(v.is_empty(), "{v:?}");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("mix of histograms and floats")),
        "{:?}",
        r.warnings
    );
    // Histograms scale and add.
    let r = e.instant("sum(req{job=\"a\"} * 2)", 20_000).unwrap();
    let Value::Vector(v) = r.value else { panic!() };
    assert_eq!(v[0].h.as_ref().map(|h| h.count), Some(4.0));
    // A range query keeps them apart from floats, step by step.
    let r = e.range("req", 10_000, 30_000, 10_000).unwrap();
    let Value::Matrix(m) = r.value else { panic!() };
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].histograms.len(), 3);
    assert!(m[0].points.is_empty());
    assert_eq!(m[1].points.len(), 3);
}

#[test]
fn syntax_errors_say_where() {
    let msg = |q: &str| match parse(q) {
        Err(PromqlError::Parse(m)) => m,
        other => panic!("{q}: {other:?}"),
    };
    assert_eq!(msg("foo bar"), "1:5: parse error: unexpected \"bar\"");
    assert_eq!(msg("foo{a=}"), "1:7: parse error: unexpected \"}\"");
    assert_eq!(
        msg("sum(rate(x[5m])) by by (a)"),
        "1:21: parse error: unexpected \"by\""
    );
    assert_eq!(msg("up +"), "1:5: parse error: unexpected end of input");
    assert_eq!(
        msg("up\n  + on(a) group_left(b) x\n  ) 3"),
        "3:3: parse error: unexpected right parenthesis ')'"
    );
    // Valid beginnings of every kind are not blamed.
    for ok in [
        "rate(http_requests_total{code=~\"5..\"}[5m] offset 1m)",
        "sum by (job) (up) / on(job) group_left max(up) > bool 2",
        "max_over_time(up[1h:5m])",
    ] {
        assert!(parse(ok).is_ok(), "{ok}");
    }
    // The parser's own specific messages pass through.
    assert!(msg("sum(up").contains("unclosed"), "{}", msg("sum(up"));
}

/// Issue 13: open queries could run without limit at once; now at most
/// `max_concurrency`, the others wait within their timeout.
#[test]
fn queries_beyond_max_concurrency_wait_then_time_out() {
    let mut e = many_series(1);
    e.opts.timeout = std::time::Duration::from_millis(200);
    e.gate = std::sync::Arc::new(Gate {
        used: std::sync::Mutex::new(0),
        freed: std::sync::Condvar::new(),
        max: 1,
    });
    let slot = e
        .gate
        .enter(std::time::Instant::now() + std::time::Duration::from_secs(1))
        .unwrap();
    let err = e.instant("m", 100_000).unwrap_err();
    assert!(matches!(err, PromqlError::Timeout(_)), "{err:?}");
    drop(slot);
    assert!(e.instant("m", 100_000).is_ok());
}

/// Group labels are cached per input series across steps (and the cache starts over when
/// inputs are made anew at each step); each step's groups must still be the series' own.
#[test]
fn aggregations_group_each_series_by_its_own_labels_at_every_step() {
    let pts =
        |k: f64| -> Vec<(i64, f64)> { (0..=400).map(|i| (i * 15_000, i as f64 * k)).collect() };
    let (a, b, c) = (pts(1.0), pts(10.0), pts(100.0));
    let e = engine(&[
        ("c_total", &[("job", "a"), ("code", "200")], &a),
        ("c_total", &[("job", "a"), ("code", "500")], &b),
        ("c_total", &[("job", "b"), ("code", "200")], &c),
    ]);
    // (query, group label, its value, the fixture's multipliers summed, times)
    let cases: [(&str, &str, &str, f64); 4] = [
        ("sum by (code) (c_total)", "code", "200", 101.0),
        ("sum by (code) (c_total)", "code", "500", 10.0),
        ("sum by (job) (c_total * 2)", "job", "a", 22.0),
        ("sum by (job) (c_total * 2)", "job", "b", 200.0),
    ];
    for (q, name, value, k) in cases {
        let r = e.range(q, 0, 6_000_000, 15_000).unwrap();
        let Value::Matrix(m) = r.value else {
            panic!("{q}")
        };
        let s = m
            .iter()
            .find(|s| s.metric.get(name) == Some(value))
            .unwrap_or_else(|| panic!("{q}: no {name}={value} in {m:?}"));
        assert_eq!(s.points.len(), 401, "{q}");
        for (t, v) in &s.points {
            assert_eq!(*v, (t / 15_000) as f64 * k, "{q} {name}={value} @ {t}");
        }
    }
}

#[test]
fn a_range_query_answers_as_one_instant_query_per_step() {
    // Inner results are shared between outer steps (each inner step evaluated once per
    // query), and aggregations keep each input series' group across steps (inputs made
    // anew at each step, by an operator below, overflow that cache and start it over); every
    // step must still equal a fresh instant query at that time.
    let pts = |k: f64| -> Vec<(i64, f64)> {
        (0..=400)
            .map(|i| (i * 15_000, (i as f64 * k).floor() + (i % 7) as f64))
            .collect()
    };
    let (a, b) = (pts(1.5), pts(0.25));
    let e = engine(&[
        ("c_total", &[("job", "a"), ("code", "200")], &a),
        ("c_total", &[("job", "a"), ("code", "500")], &b),
        ("c_total", &[("job", "b"), ("code", "200")], &b),
    ]);
    for (q, step) in [
        (
            "max_over_time(sum by (code) (rate(c_total[2m]))[30m:1m])",
            60_000,
        ),
        ("avg_over_time(rate(c_total[1m])[10m:45s])", 60_000),
        (
            "max_over_time(min_over_time(c_total[5m:30s])[20m:2m])",
            60_000,
        ),
        ("count_over_time(c_total[7m:1m] offset 3m)", 60_000),
        ("sum_over_time(c_total[10m:1m] @ 3000)", 60_000),
        ("rate(c_total[5m:20s])", 60_000),
        ("sum by (code) (c_total)", 15_000),
        ("sum without (code) (rate(c_total[2m]))", 15_000),
        ("avg by (job) (c_total * 2)", 15_000),
        (
            "max by (x) (label_replace(c_total, \"x\", \"$1\", \"code\", \"(.).*\"))",
            15_000,
        ),
        ("count(sum by (job, code) (c_total > 300))", 15_000),
        ("stddev without (job) (c_total)", 15_000),
    ] {
        let (start, end) = (1_800_000, 5_400_000);
        let r = e.range(q, start, end, step).unwrap();
        let Value::Matrix(m) = r.value else {
            panic!("{q}")
        };
        let mut t = start;
        while t <= end {
            let Value::Vector(v) = e.instant(q, t).unwrap().value else {
                panic!("{q}")
            };
            for s in &v {
                let series = m
                    .iter()
                    .find(|x| x.metric == s.metric)
                    .unwrap_or_else(|| panic!("{q} @ {t}: {} missing", s.metric));
                let got = series
                    .points
                    .iter()
                    .find(|p| p.0 == t)
                    .unwrap_or_else(|| panic!("{q} @ {t}: no point"));
                assert!(
                    got.1 == s.f || (got.1.is_nan() && s.f.is_nan()),
                    "{q} @ {t}: range {} instant {}",
                    got.1,
                    s.f
                );
            }
            let in_range = m
                .iter()
                .filter(|x| x.points.iter().any(|p| p.0 == t))
                .count();
            assert_eq!(in_range, v.len(), "{q} @ {t}");
            t += step;
        }
    }
}

/// The `histogram_*` functions over native histograms, against hand-computed answers:
/// buckets (1,2] and (2,4] with 2 observations each, sum 10. Quantiles interpolate
/// exponentially (Prometheus 3), from below under 0.5 and from above at or over it.
#[test]
fn histogram_functions_read_native_histograms() {
    use crate::model::histogram::FloatHistogram;
    let head = Head::new(HeadOptions::default());
    let mut a = head.appender();
    let l = Labels::from_pairs([("__name__", "lat"), ("job", "a")]);
    let h = FloatHistogram::parse("{{schema:0 count:4 sum:10 offset:1 buckets:[2 2]}}").unwrap();
    a.append_histogram(&l, 10_000, std::sync::Arc::new(h))
        .unwrap();
    // A float series beside it is left out by the native-only functions.
    a.append(
        &Labels::from_pairs([("__name__", "lat"), ("job", "f")]),
        10_000,
        1.0,
    )
    .unwrap();
    a.commit().unwrap();
    let e = Engine::new(std::sync::Arc::new(head), EngineOptions::default());
    let one = |q: &str| -> f64 {
        let Value::Vector(v) = e.instant(q, 20_000).unwrap().value else {
            panic!("{q}")
        };
        assert_eq!(v.len(), 1, "{q}: {v:?}");
        assert_eq!(v[0].metric.get("__name__"), None, "{q}");
        assert_eq!(v[0].metric.get("job"), Some("a"), "{q}");
        v[0].f
    };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12 * b.abs().max(1.0);
    assert_eq!(one("histogram_count(lat)"), 4.0);
    assert_eq!(one("histogram_sum(lat)"), 10.0);
    assert_eq!(one("histogram_avg(lat)"), 2.5);
    assert!(close(one("histogram_quantile(0.25, lat)"), 2f64.sqrt()));
    assert!(close(one("histogram_quantile(0.75, lat)"), 8f64.sqrt()));
    assert_eq!(one("histogram_quantile(1, lat)"), 4.0);
    assert_eq!(one("histogram_quantile(2, lat)"), f64::INFINITY);
    assert!(close(one("histogram_fraction(0, 2, lat)"), 0.5));
    assert!(close(one("histogram_fraction(0, 8, lat)"), 1.0));
    // Half of (1,2] lies below sqrt(2) on a log scale.
    assert!(close(
        one(&format!("histogram_fraction(0, {}, lat)", 2f64.sqrt())),
        0.25
    ));
    // Observations at the geometric middles sqrt(2) and sqrt(8), mean 2.5.
    let var = (2.0 * (2f64.sqrt() - 2.5).powi(2) + 2.0 * (8f64.sqrt() - 2.5).powi(2)) / 4.0;
    assert!(close(one("histogram_stdvar(lat)"), var));
    assert!(close(one("histogram_stddev(lat)"), var.sqrt()));
}

/// `rate` and `increase` of native histograms, the way Prometheus extrapolates them, with a
/// counter reset added back; `histogram_*` read their result, and an instant `rate` returns
/// the histogram itself (hint `gauge`).
#[test]
fn rates_of_native_histograms_extrapolate_and_survive_resets() {
    use crate::model::histogram::{CounterResetHint, FloatHistogram};
    let head = Head::new(HeadOptions::default());
    let mut a = head.appender();
    let l = Labels::from_pairs([("__name__", "req_seconds"), ("job", "a")]);
    for (t, n) in [(0, 2), (60_000, 4), (120_000, 6), (180_000, 1)] {
        let h = FloatHistogram::parse(&format!("{{{{schema:0 count:{n} sum:{n} buckets:[{n}]}}}}"))
            .unwrap();
        a.append_histogram(&l, t, std::sync::Arc::new(h)).unwrap();
    }
    a.commit().unwrap();
    let e = Engine::new(std::sync::Arc::new(head), EngineOptions::default());
    let one = |q: &str, t: i64| -> Sample {
        let Value::Vector(v) = e.instant(q, t).unwrap().value else {
            panic!("{q}")
        };
        assert_eq!(v.len(), 1, "{q}: {v:?}");
        v.into_iter().next().unwrap()
    };
    // (0, 120 s] holds 4 and 6: +2 over 60 s, extrapolated 60 s back to the window's start
    // (not further: zero would be 120 s back), so 4 over the 2 minutes.
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(close(
        one("histogram_count(increase(req_seconds[2m]))", 120_000).f,
        4.0
    ));
    assert!(close(
        one("histogram_count(rate(req_seconds[2m]))", 120_000).f,
        4.0 / 120.0
    ));
    // (60, 180 s] holds 6 and then 1: a reset, so the increase is 1, extrapolated to 2.
    assert!(close(
        one("histogram_sum(increase(req_seconds[2m]))", 180_000).f,
        2.0
    ));
    let s = one("rate(req_seconds[2m])", 120_000);
    let h = s.h.expect("a histogram");
    assert_eq!(h.hint, CounterResetHint::Gauge);
    assert!(close(h.count, 4.0 / 120.0));
    assert_eq!(s.metric.get("__name__"), None);
    assert!(close(
        one("histogram_quantile(0.5, rate(req_seconds[2m]))", 120_000).f,
        2f64.powf(-0.5)
    ));
}

#[test]
fn experimental_syntax_formats_as_written() {
    for q in [
        "rate(x[5m] anchored)",
        "x offset (2 * 1m)",
        "h </ 5",
        "rate(x[1m+1m])",
    ] {
        assert_eq!(super::format_query(q).unwrap(), q);
    }
    assert_eq!(
        super::format_query("sum(x)by(a)").unwrap(),
        "sum by (a) (x)"
    );
}
