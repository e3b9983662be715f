use super::*;
use crate::testsupport::shared_testdata;

type Flat = (String, Vec<(String, String)>, f64, Option<i64>);

fn samples(input: &str, f: Format) -> Vec<Flat> {
    parse_all(input.as_bytes(), f)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            Entry::Sample(s) => Some((
                s.name.to_string(),
                s.labels
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
                s.value,
                s.timestamp_ms,
            )),
            _ => None,
        })
        .collect()
}

fn text_err(input: &str) -> bool {
    parse_all(input.as_bytes(), Format::PrometheusText).is_err()
}

fn om_err(input: &str) -> bool {
    parse_all(input.as_bytes(), Format::OpenMetrics).is_err()
}

#[test]
fn text_lenient_label_grammar() {
    let s = samples(
        "a { x = \"1\" , y=\"2\", } 1\nb{ a = \"1\" b = \"2\" } 2 123\nc\t3\n",
        Format::PrometheusText,
    );
    assert_eq!(
        s[0].1,
        vec![("x".into(), "1".into()), ("y".into(), "2".into())]
    );
    assert_eq!(s[1].1.len(), 2);
    assert_eq!(s[1].3, Some(123));
    assert_eq!(s[2].2, 3.0);
}

#[test]
fn text_values_and_escapes() {
    let s = samples(
        "a NaN\nb +Inf\nc -Inf\nd Inf\ne{l=\"q\\\"\\\\\\n\\z\"} 1e3\n",
        Format::PrometheusText,
    );
    assert!(s[0].2.is_nan());
    assert_eq!(s[1].2, f64::INFINITY);
    assert_eq!(s[2].2, f64::NEG_INFINITY);
    assert_eq!(s[3].2, f64::INFINITY);
    assert_eq!(s[4].1[0].1, "q\"\\\n\\z");
    assert_eq!(s[4].2, 1000.0);
    for bad in [
        "a true\n",
        "a 1_2\n",
        "a 0x1p-3\n",
        "a\n",
        "a{l='x'} 1\n",
        "{a=\"ok\"} 1\n",
        "a{A} 0\n",
        "a{=\"x\"} 1\n",
        "a 1 2 3\n",
        "a 1 1.5\n",
        "# TYPE #\n",
        "# TYPE a foo\n",
        "a{l=\"1\",l=\"2\"} 1\n",
    ] {
        assert!(text_err(bad), "{bad:?} must fail");
    }
}

#[test]
fn text_comments_and_metadata() {
    let es = parse_all(b"# Hrandom x\n#\n# \tTYPE x summary\n# HELP x\n# HELP y a\\\\b\\nc\\t\nx{quantile=\"0\"} 1\n\n", Format::PrometheusText).unwrap();
    assert_eq!(
        es[0],
        Entry::Type {
            name: "x".into(),
            kind: MetricType::Summary
        }
    );
    assert_eq!(
        es[1],
        Entry::Help {
            name: "x".into(),
            text: "".into()
        }
    );
    assert_eq!(
        es[2],
        Entry::Help {
            name: "y".into(),
            text: "a\\b\nc\\t".into()
        }
    );
    let Entry::Sample(s) = &es[3] else { panic!() };
    assert_eq!(s.labels[0].1, "0.0", "quantile is normalised in summaries");
}

#[test]
fn le_normalised_only_in_histograms() {
    let s = samples("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"1e+06\"} 1\nh_bucket{le=\"+Inf\"} 1\n# TYPE t untyped\nt{le=\"10\"} 1\n", Format::PrometheusText);
    assert_eq!(s[0].1[0].1, "1.0");
    assert_eq!(s[1].1[0].1, "1e+06");
    assert_eq!(s[2].1[0].1, "+Inf");
    assert_eq!(s[3].1[0].1, "10");
}

#[test]
fn quoted_utf8_names() {
    let s = samples(
        "{\"my.metric\", a=\"b\"} 1\n{\"name\", \"strange ©\"=\"6\"} 10\n",
        Format::PrometheusText,
    );
    assert_eq!(s[0].0, "my.metric");
    assert_eq!(s[1].1[0].0, "strange ©");
}

#[test]
fn openmetrics_framing() {
    assert!(om_err(""));
    assert!(om_err("a 1\n"));
    assert!(om_err("a 1\n# EOF\n\n"));
    assert!(om_err("a 1\n# EOF\na 1"));
    assert!(om_err("a 1\n#EOF\n"));
    assert!(om_err("a  1\n# EOF\n"));
    assert!(om_err("a\t1\n# EOF\n"));
    assert!(om_err("# TYPE c  counter\n# EOF\n"));
    assert!(om_err("# HELP m\n# EOF\n"));
    assert!(om_err("{b=\"c\",} 1\n# EOF\n"));
    assert!(!om_err("a 1\n# EOF"));
    let s = samples("a 1 123.123\nb nan\n# EOF\n", Format::OpenMetrics);
    assert_eq!(s[0].3, Some(123_123));
    assert!(s[1].2.is_nan());
}

#[test]
fn openmetrics_exemplars() {
    let es = parse_all(
        b"# TYPE a counter\na_total 1 # {id=\"x # y\"} 0.5 12.5\n# EOF\n",
        Format::OpenMetrics,
    )
    .unwrap();
    let Entry::Sample(s) = &es[1] else { panic!() };
    let ex = s.exemplar.as_ref().unwrap();
    assert_eq!(ex.labels[0].1, "x # y");
    assert_eq!(ex.value, 0.5);
    assert_eq!(ex.timestamp_ms, Some(12_500));
    assert!(om_err("a_total 1 # {aa=bb} 1\n# EOF\n"));
    assert!(om_err("a_total 1 # {a=\"b\"}\n# EOF\n"));
    assert!(om_err("a_total 1 # {a=\"b\"} 1 NaN\n# EOF\n"));
}

#[test]
fn created_series_kept_by_default_and_skippable() {
    let body = b"# TYPE a counter\na_total 1\na_created 10\n# TYPE fizz_created gauge\nfizz_created 1\n# EOF\n";
    assert_eq!(parse_all(body, Format::OpenMetrics).unwrap().len(), 5);
    let skipped: Vec<_> = Parser::new(
        body,
        Format::OpenMetrics,
        ParserOptions {
            skip_created_series: true,
            ..Default::default()
        },
    )
    .collect::<Result<_, _>>()
    .unwrap();
    assert_eq!(
        skipped.len(),
        4,
        "only the counter's _created goes; the gauge named *_created stays"
    );
}

#[test]
fn go_float_formatting() {
    assert_eq!(format_openmetrics_float(1.0), "1.0");
    assert_eq!(format_openmetrics_float(0.1), "0.1");
    assert_eq!(format_openmetrics_float(100000.0), "100000.0");
    assert_eq!(format_openmetrics_float(1e6), "1e+06");
    assert_eq!(format_openmetrics_float(1e-5), "1e-05");
    assert_eq!(format_openmetrics_float(0.0001), "0.0001");
    assert_eq!(format_openmetrics_float(f64::INFINITY), "+Inf");
}

#[test]
fn content_type_negotiation() {
    assert_eq!(
        Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        Some(Format::OpenMetrics)
    );
    assert_eq!(
        Format::from_content_type("text/plain; version=0.0.4"),
        Some(Format::PrometheusText)
    );
    assert_eq!(Format::from_content_type(""), None);
    assert_eq!(Format::from_content_type("application/json"), None);
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    should_parse: bool,
    file: String,
}

#[test]
fn openmetrics_conformance_suite() {
    let Some(dir) = shared_testdata("exposition/openmetrics-conformance") else {
        return;
    };
    let mut failures = Vec::new();
    let mut n = 0;
    let mut entries = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect::<Vec<_>>();
    entries.sort();
    for case in entries {
        let meta: Case =
            serde_json::from_slice(&std::fs::read(case.join("test.json")).unwrap()).unwrap();
        let body = std::fs::read(case.join(&meta.file)).unwrap();
        let result = validate_openmetrics(&body);
        n += 1;
        if result.is_ok() != meta.should_parse {
            failures.push(format!(
                "{}: should_parse={} got {:?}",
                case.file_name().unwrap().to_string_lossy(),
                meta.should_parse,
                result
            ));
        }
    }
    assert_eq!(n, 211);
    assert!(
        failures.is_empty(),
        "{} of {n} conformance cases wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn good_conformance_cases_also_pass_the_scrape_parser() {
    let Some(dir) = shared_testdata("exposition/openmetrics-conformance") else {
        return;
    };
    for case in std::fs::read_dir(&dir).unwrap() {
        let case = case.unwrap().path();
        let meta: Case =
            serde_json::from_slice(&std::fs::read(case.join("test.json")).unwrap()).unwrap();
        if meta.should_parse {
            let body = std::fs::read(case.join(&meta.file)).unwrap();
            parse_all(&body, Format::OpenMetrics)
                .unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        }
    }
}

fn count_samples(path: &std::path::Path, f: Format) -> usize {
    let body = std::fs::read(path).unwrap();
    let es = parse_all(&body, f).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    es.iter().filter(|e| matches!(e, Entry::Sample(_))).count()
}

fn non_comment_lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count()
}

#[test]
fn real_world_files_parse_fully() {
    let Some(dir) = shared_testdata("exposition/prometheus-textparse") else {
        return;
    };
    for (file, f) in [
        ("alltypes.237mfs.prom.txt", Format::PrometheusText),
        ("alltypes.237mfs.nometa.prom.txt", Format::PrometheusText),
        ("promtool-metrics-test.prom", Format::PrometheusText),
        ("alltypes.5mfs.om.txt", Format::OpenMetrics),
        ("1histogram.om.txt", Format::OpenMetrics),
    ] {
        let p = dir.join(file);
        assert_eq!(
            count_samples(&p, f),
            non_comment_lines(&p),
            "{file}: every sample line yields one sample"
        );
    }
    validate_openmetrics(&std::fs::read(dir.join("1histogram.om.txt")).unwrap()).unwrap();
}

#[test]
fn exporter_captures_parse_fully() {
    let Some(dir) = shared_testdata("exporters") else {
        return;
    };
    let tsv = std::fs::read_to_string(dir.join("metric_names.tsv")).unwrap();
    for exporter in ["node_exporter", "postgres_exporter", "redis_exporter"] {
        let p = dir.join(format!("{exporter}.txt"));
        let n = count_samples(&p, Format::PrometheusText);
        assert_eq!(n, non_comment_lines(&p), "{exporter}");
        let want: usize = tsv
            .lines()
            .filter(|l| l.starts_with(&format!("{exporter}\t")))
            .filter_map(|l| l.split('\t').nth(3)?.parse::<usize>().ok())
            .sum();
        if want > 0 {
            assert_eq!(n, want, "{exporter}: sample count per metric_names.tsv");
        }
        let families = parse_all(&std::fs::read(&p).unwrap(), Format::PrometheusText)
            .unwrap()
            .iter()
            .filter(|e| matches!(e, Entry::Type { .. }))
            .count();
        assert!(families > 10, "{exporter}: {families} families");
    }
}

fn first_error(input: &str, opts: ParserOptions) -> String {
    Parser::new(input.as_bytes(), Format::PrometheusText, opts)
        .find_map(Result::err)
        .map(|e| e.to_string())
        .unwrap_or_default()
}

fn many_labels(n: usize) -> String {
    let mut line = String::from("m{");
    for i in 0..n {
        line.push_str(&format!("l{i}=\"v\","));
    }
    line
}

/// Issue 13: the duplicate check scanned every earlier label (100k labels took 28 s).
#[test]
fn duplicate_labels_are_found_among_many() {
    let line = many_labels(5000) + "l17=\"again\"} 1\n";
    let e = first_error(&line, ParserOptions::default());
    assert!(e.contains("label name \"l17\" is not unique"), "{e}");
    let line = many_labels(5000) + "} 1\n";
    assert_eq!(first_error(&line, ParserOptions::default()), "");
}

#[test]
fn label_limits_apply_while_parsing_with_prometheus_messages() {
    let limits = ParserOptions {
        label_limit: 5,
        reserved_labels: 3,
        label_name_length_limit: 10,
        label_value_length_limit: 4,
        ..ParserOptions::default()
    };
    let e = first_error("m{a=\"1\",b=\"2\",c=\"3\",d=\"4\"} 1\n", limits);
    assert_eq!(
        e,
        "line 1: label_limit exceeded (metric: m, number of labels: 7, limit: 5)"
    );
    let e = first_error("m{a_very_long_name=\"1\"} 1\n", limits);
    assert!(e.contains("label_name_length_limit exceeded (metric: m, label name: a_very_long_name, length: 16, limit: 10)"), "{e}");
    let e = first_error("m{a=\"12345\"} 1\n", limits);
    assert!(e.contains("label_value_length_limit exceeded (metric: m, label name: a, value: \"12345\", length: 5, limit: 4)"), "{e}");
    // Whatever the config, a million labels are refused at the hard cap.
    let e = first_error(&(many_labels(20_000) + "} 1\n"), ParserOptions::default());
    assert!(
        e.contains("number of labels: 20000, the most a series may have is 10000"),
        "{e}"
    );
}

/// Issue 13: an error quoting a 50 MB value made a 52 MB log line and API answer.
#[test]
fn errors_quote_at_most_fifty_characters() {
    let huge = "x".repeat(1 << 20);
    for input in [
        format!("m{{{huge}=\"1\",{huge}=\"2\"}} 1\n"),
        format!("m {huge}\n"),
        format!("m 1 {huge}\n"),
        format!("# TYPE m {huge}\n"),
        format!("m{{{huge} 1\n"),
    ] {
        let e = first_error(&input, ParserOptions::default());
        assert!(
            !e.is_empty() && e.len() < 400,
            "{} bytes: {} for {}",
            e.len(),
            &e[..e.len().min(200)],
            &input[..40]
        );
    }
    let big = ParserOptions {
        label_value_length_limit: 10,
        ..ParserOptions::default()
    };
    let e = first_error(&format!("m{{a=\"{huge}\"}} 1\n"), big);
    assert!(e.len() < 400, "{}", e.len());
}

/// Issue 13: `1e400` and `{__name__="x"}` were accepted where Prometheus refuses them.
#[test]
fn out_of_range_values_and_name_labels_are_refused() {
    for f in [Format::PrometheusText, Format::OpenMetrics] {
        let eof = if f == Format::OpenMetrics {
            "# EOF\n"
        } else {
            ""
        };
        for bad in [
            "m 1e400\n",
            "m -1e400\n",
            "{__name__=\"x\"} 1\n",
            "m{__name__=\"x\"} 1\n",
        ] {
            assert!(
                parse_all(format!("{bad}{eof}").as_bytes(), f).is_err(),
                "{f:?} accepted {bad:?}"
            );
        }
        for good in [
            "m +Inf\n",
            "m -Inf\n",
            "m 1e-400\n",
            "m 1.7976931348623157e308\n",
        ] {
            assert!(
                parse_all(format!("{good}{eof}").as_bytes(), f).is_ok(),
                "{f:?} refused {good:?}"
            );
        }
    }
}

/// Every sample as (name, labels, value, time), then the first error's line and text; with
/// `defer`, labels come from `series_labels`, as the scrape loop asks for a new series.
fn flat_run(body: &[u8], f: Format, opts: ParserOptions, defer: bool) -> (Vec<Flat>, String) {
    let mut p = Parser::new(
        body,
        f,
        ParserOptions {
            defer_labels: defer,
            ..opts
        },
    );
    let mut out = Vec::new();
    while let Some(e) = p.next() {
        let s = match e {
            Ok(Entry::Sample(s)) => s,
            Ok(_) => continue,
            Err(e) => return (out, e.to_string()),
        };
        assert!(defer || !s.labels_deferred);
        let (name, labels) = match p.series_labels(&s) {
            Ok(x) => x,
            Err(e) => return (out, e.to_string()),
        };
        out.push((
            name.to_string(),
            labels
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            s.value,
            s.timestamp_ms,
        ));
    }
    (out, String::new())
}

/// Deferred labels (issue 19: the scrape loop parses a series' labels only when its cache
/// does not know the series) give exactly the samples and the first error, at the same line,
/// of parsing in full: on every conformance case, real capture and hostile line here.
#[test]
fn deferred_labels_parse_exactly_as_in_place() {
    let mut bodies: Vec<(String, Vec<u8>, Format)> = Vec::new();
    for line in [
        "m{a=\"}\"} 1\n",
        "m{a=\"\\\"}\\\\\"} 1\n",
        "m {a=\"1\" , b = \"2\" ,} 1 1000\n",
        "m{a=\"1\"}x 1\n",
        "m{a=\"1\"} } 1\n",
        "m{a=\"1\",a=\"2\"} 1\n",
        "m{__name__=\"x\"} 1\n",
        "m{a=\"1\" 1\n",
        "m{a=1} 1\n",
        "m{\"quoted.name\"=\"v\"} 1\n",
        "{\"utf8.metric\",a=\"1\"} 1\n",
        "m{a=\"\\xff\"} 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n",
        "m{a=\"1\"} 1\nm{a=\"1\"} 2\nm{b=\"\"} 3\n",
    ] {
        bodies.push((
            line.into(),
            line.as_bytes().to_vec(),
            Format::PrometheusText,
        ));
        let om = format!("{line}# EOF\n");
        bodies.push((om.clone(), om.into_bytes(), Format::OpenMetrics));
    }
    if let Some(dir) = shared_testdata("exposition/openmetrics-conformance") {
        for case in std::fs::read_dir(&dir).unwrap() {
            let case = case.unwrap().path();
            let meta: Case =
                serde_json::from_slice(&std::fs::read(case.join("test.json")).unwrap()).unwrap();
            let body = std::fs::read(case.join(&meta.file)).unwrap();
            bodies.push((case.display().to_string(), body, Format::OpenMetrics));
        }
    }
    if let Some(dir) = shared_testdata("exposition/prometheus-textparse") {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let body = std::fs::read(&p).unwrap();
            for f in [Format::PrometheusText, Format::OpenMetrics] {
                bodies.push((p.display().to_string(), body.clone(), f));
            }
        }
    }
    if let Some(dir) = shared_testdata("exporters") {
        for e in ["node_exporter", "postgres_exporter", "redis_exporter"] {
            let p = dir.join(format!("{e}.txt"));
            bodies.push((e.into(), std::fs::read(p).unwrap(), Format::PrometheusText));
        }
    }
    let limits = ParserOptions {
        label_limit: 3,
        label_name_length_limit: 8,
        label_value_length_limit: 12,
        ..ParserOptions::default()
    };
    let mut compared = 0;
    for (what, body, f) in &bodies {
        for opts in [ParserOptions::default(), limits] {
            let full = flat_run(body, *f, opts, false);
            let deferred = flat_run(body, *f, opts, true);
            assert_eq!(full.1, deferred.1, "{what} ({f:?}): first error");
            let same = full.0.len() == deferred.0.len()
                && full.0.iter().zip(&deferred.0).all(|(a, b)| {
                    (&a.0, &a.1, a.2.to_bits(), a.3) == (&b.0, &b.1, b.2.to_bits(), b.3)
                });
            assert!(same, "{what} ({f:?}): samples differ");
            compared += full.0.len();
        }
    }
    assert!(compared > 10, "{compared} samples compared");
}
