//! The scrape manager against real HTTP servers: limits, malformed pages, staleness,
//! relabelling, gzip, file discovery, and a real node_exporter going away.

mod common;

use std::io::Write;
use std::sync::Arc;

use appliance::model::{is_stale_nan, MatchOp, Matcher};
use appliance::scrape::{Job, JobKind, Manager, ScrapeConfig, ScrapeMetrics};
use appliance::storage::{Head, HeadOptions, Querier};
use parking_lot::Mutex;

#[derive(Clone)]
struct Page {
    content_type: String,
    body: Vec<u8>,
    gzip: bool,
}

/// A test target whose page can be changed between scrapes.
async fn serve(page: Arc<Mutex<Page>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let p = page.lock().clone();
            async move {
                let mut headers = vec![(axum::http::header::CONTENT_TYPE, p.content_type.clone())];
                let body = if p.gzip {
                    headers.push((axum::http::header::CONTENT_ENCODING, "gzip".into()));
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                    e.write_all(&p.body).unwrap();
                    e.finish().unwrap()
                } else {
                    p.body.clone()
                };
                let mut resp = axum::response::Response::new(axum::body::Body::from(body));
                for (k, v) in headers {
                    resp.headers_mut().insert(k, v.parse().unwrap());
                }
                resp
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn text(body: &str) -> Page {
    Page {
        content_type: "text/plain; version=0.0.4".into(),
        body: body.as_bytes().to_vec(),
        gzip: false,
    }
}

fn job(yaml: &str) -> Job {
    let mut c: ScrapeConfig = serde_saphyr::from_str(yaml).unwrap();
    c.apply_defaults(&Default::default()).unwrap();
    Job {
        config: c,
        kind: JobKind::Http,
    }
}

fn m(name: &str, v: &str) -> Matcher {
    Matcher::new(MatchOp::Equal, name, v).unwrap()
}

fn last(head: &Head, metric: &str) -> Option<f64> {
    let s = head.select(&[m("__name__", metric)], i64::MIN, i64::MAX);
    s.first()?.samples.last().map(|(_, v)| *v)
}

async fn until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn setup() -> (Head, Manager) {
    let head = Head::new(HeadOptions::default());
    let mgr = Manager::new(Arc::new(head.clone()), ScrapeMetrics::default(), 1);
    (head, mgr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_bad_pages_give_up_zero_and_keep_stored_data() {
    let page = Arc::new(Mutex::new(text(
        "# TYPE a gauge\na 1\nb{x=\"1\"} 2\nb{x=\"2\"} 3\n",
    )));
    let addr = serve(page.clone()).await;
    let (head, mgr) = setup();
    mgr.apply(vec![job(&format!("job_name: t\nscrape_interval: 200ms\nsample_limit: 3\nbody_size_limit: 1KB\nstatic_configs:\n  - targets: ['{addr}']\n"))]).unwrap();
    until(5, "first good scrape", || last(&head, "up") == Some(1.0)).await;
    assert_eq!(last(&head, "scrape_samples_scraped"), Some(3.0));
    let stored_before = head.select(&[m("__name__", "a")], i64::MIN, i64::MAX)[0]
        .samples
        .len();

    let cases: Vec<(Page, &str)> = vec![
        (text("a 1\nb 2\nc 3\nd 4\n"), "sample limit exceeded"),
        (text(&"x 1\n".repeat(400)), "body size limit exceeded"),
        (text("a 1\nthis is { not a metric\n"), "line 2"),
        (
            Page {
                content_type: "".into(),
                body: b"a 1\n".to_vec(),
                gzip: false,
            },
            "blank Content-Type",
        ),
    ];
    for (p, want) in cases {
        *page.lock() = p;
        until(5, want, || {
            mgr.active_targets()[0].last_error.contains(want)
        })
        .await;
        assert_eq!(last(&head, "up"), Some(0.0));
        if want == "sample limit exceeded" {
            // Prometheus reports what the target had even when the scrape is refused.
            assert_eq!(last(&head, "scrape_samples_scraped"), Some(4.0));
            assert_eq!(
                last(&head, "scrape_samples_post_metric_relabeling"),
                Some(4.0)
            );
        }
        // The failed scrape marked the previous series stale but kept their history.
        let a = head.select(&[m("__name__", "a")], i64::MIN, i64::MAX);
        assert!(a[0].samples.len() >= stored_before);
        assert!(is_stale_nan(a[0].samples.last().unwrap().1));
        *page.lock() = text("# TYPE a gauge\na 1\nb{x=\"1\"} 2\nb{x=\"2\"} 3\n");
        until(5, "recovery", || last(&head, "up") == Some(1.0)).await;
    }
    assert_eq!(mgr.active_targets()[0].health.as_str(), "up");
    mgr.stop();

    // With a fallback protocol a target without Content-Type is parsed as that protocol.
    *page.lock() = Page {
        content_type: "".into(),
        body: b"a 1\n".to_vec(),
        gzip: false,
    };
    let (head, mgr) = setup();
    mgr.apply(vec![job(&format!("job_name: t\nscrape_interval: 200ms\nfallback_scrape_protocol: PrometheusText0.0.4\nstatic_configs:\n  - targets: ['{addr}']\n"))]).unwrap();
    until(5, "fallback scrape", || last(&head, "up") == Some(1.0)).await;
    mgr.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_series_and_targets_get_stale_markers() {
    let page = Arc::new(Mutex::new(text("keep 1\ngone 2\n")));
    let addr = serve(page.clone()).await;
    let (head, mgr) = setup();
    let j = job(&format!(
        "job_name: t\nscrape_interval: 200ms\nstatic_configs:\n  - targets: ['{addr}']\n"
    ));
    mgr.apply(vec![j.clone()]).unwrap();
    until(5, "scrape", || last(&head, "gone") == Some(2.0)).await;
    *page.lock() = text("keep 1\n");
    until(5, "stale marker for gone", || {
        last(&head, "gone").map(is_stale_nan).unwrap_or(false)
    })
    .await;
    assert_eq!(last(&head, "keep"), Some(1.0));
    // Removing the job marks everything of its target stale, report series included.
    mgr.apply(vec![]).unwrap();
    until(5, "stale markers on removal", || {
        last(&head, "keep").map(is_stale_nan).unwrap_or(false)
            && last(&head, "up").map(is_stale_nan).unwrap_or(false)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabelling_honor_labels_gzip_and_openmetrics() {
    let page = Arc::new(Mutex::new(Page {
        content_type: "application/openmetrics-text; version=1.0.0".into(),
        body: b"# TYPE c counter\nc_total{job=\"inner\"} 5\nc_created 1\n# TYPE drop_me gauge\ndrop_me 1\n# EOF\n".to_vec(),
        gzip: true,
    }));
    let addr = serve(page.clone()).await;
    let (head, mgr) = setup();
    let yaml = format!(
        "job_name: t\nscrape_interval: 200ms\nstatic_configs:\n  - targets: ['{addr}']\n    labels: {{env: prod}}\nrelabel_configs:\n  - source_labels: [__address__]\n    regex: '127\\.0\\.0\\.1:(\\d+)'\n    target_label: port\n    replacement: 'p$1'\nmetric_relabel_configs:\n  - source_labels: [__name__]\n    regex: drop_me\n    action: drop\n"
    );
    mgr.apply(vec![job(&yaml)]).unwrap();
    until(5, "scrape", || last(&head, "c_total").is_some()).await;
    let s = head.select(&[m("__name__", "c_total")], i64::MIN, i64::MAX);
    let l = &s[0].labels;
    assert_eq!(l.get("job"), Some("t"));
    assert_eq!(l.get("exported_job"), Some("inner"));
    assert_eq!(l.get("env"), Some("prod"));
    assert!(l.get("port").unwrap().starts_with('p'));
    assert!(last(&head, "drop_me").is_none());
    assert_eq!(
        last(&head, "c_created"),
        Some(1.0),
        "Prometheus ingests _created as a sample by default"
    );
    assert_eq!(
        last(&head, "scrape_samples_post_metric_relabeling"),
        Some(2.0)
    );
    let t = &mgr.active_targets()[0];
    assert_eq!(t.discovered_labels.get("__address__"), Some(addr.as_str()));
    assert_eq!(t.labels.get("instance"), Some(addr.as_str()));
    mgr.stop();

    let (head, mgr) = setup();
    mgr.apply(vec![job(&format!("job_name: t\nhonor_labels: true\nscrape_interval: 200ms\nstatic_configs:\n  - targets: ['{addr}']\n"))]).unwrap();
    until(5, "scrape", || last(&head, "c_total").is_some()).await;
    assert_eq!(
        head.select(&[m("__name__", "c_total")], i64::MIN, i64::MAX)[0]
            .labels
            .get("job"),
        Some("inner")
    );
    mgr.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_follows_file_changes() {
    let page = Arc::new(Mutex::new(text("x 1\n")));
    let a1 = serve(page.clone()).await;
    let a2 = serve(page.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("targets.json");
    std::fs::write(
        &f,
        format!("[{{\"targets\": [\"{a1}\"], \"labels\": {{\"team\": \"a\"}}}}]"),
    )
    .unwrap();
    let head = Head::new(HeadOptions::default());
    let metrics = ScrapeMetrics::default();
    let mgr = Manager::new(Arc::new(head.clone()), metrics.clone(), 1);
    mgr.apply(vec![job(&format!(
        "job_name: t\nscrape_interval: 200ms\nfile_sd_configs:\n  - files: ['{}/*.json']\n",
        dir.path().display()
    ))])
    .unwrap();
    until(5, "first target", || {
        mgr.active_targets().iter().any(|t| {
            t.labels.get("instance") == Some(a1.as_str()) && t.labels.get("team") == Some("a")
        })
    })
    .await;
    std::fs::write(&f, format!("[{{\"targets\": [\"{a2}\"]}}]")).unwrap();
    until(5, "target switch", || {
        let t = mgr.active_targets();
        t.len() == 1 && t[0].labels.get("instance") == Some(a2.as_str())
    })
    .await;
    // A broken file keeps the last good targets.
    std::fs::write(&f, "[{not json").unwrap();
    until(5, "the broken file to be read", || {
        metrics.sd_file_errors() > 0
    })
    .await;
    assert_eq!(mgr.active_targets().len(), 1);
    assert_eq!(
        mgr.active_targets()[0].labels.get("instance"),
        Some(a2.as_str())
    );
    mgr.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_node_exporter_series_go_stale_when_it_stops() {
    let port = common::free_port();
    let Some(mut ne) = common::node_exporter(port) else {
        return;
    };
    let (head, mgr) = setup();
    mgr.apply(vec![job(&format!("job_name: node\nscrape_interval: 500ms\nscrape_timeout: 500ms\nstatic_configs:\n  - targets: ['127.0.0.1:{port}']\n"))]).unwrap();
    until(10, "node scrape", || {
        last(&head, "up") == Some(1.0) && last(&head, "node_cpu_seconds_total").is_some()
    })
    .await;
    let before = head.select(
        &[m("__name__", "node_cpu_seconds_total")],
        i64::MIN,
        i64::MAX,
    );
    assert!(before.iter().all(|s| s.labels.get("job") == Some("node")));
    let _ = ne.0.kill();
    let _ = ne.0.wait();
    until(10, "up 0", || last(&head, "up") == Some(0.0)).await;
    let after = head.select(
        &[m("__name__", "node_cpu_seconds_total")],
        i64::MIN,
        i64::MAX,
    );
    assert_eq!(after.len(), before.len());
    for s in &after {
        assert!(
            is_stale_nan(s.samples.last().unwrap().1),
            "{} not stale",
            s.labels
        );
        assert!(s.samples.len() >= 2, "history kept");
    }
    mgr.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_apply_changes_nothing() {
    let (_head, mgr) = setup();
    mgr.apply(vec![job(
        "job_name: a\nstatic_configs:\n  - targets: ['127.0.0.1:1']\n",
    )])
    .unwrap();
    until(5, "pool a", || mgr.active_targets().len() == 1).await;
    let err = mgr
        .apply(vec![
            job("job_name: b\nstatic_configs:\n  - targets: ['127.0.0.1:2']\n"),
            job("job_name: c\ntls_config:\n  ca_file: /nonexistent/ca.pem\nstatic_configs:\n  - targets: ['127.0.0.1:3']\n"),
        ])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("job \"c\"") && err.contains("/nonexistent/ca.pem"),
        "{err}"
    );
    let pools: Vec<String> = mgr
        .active_targets()
        .into_iter()
        .map(|t| t.scrape_pool)
        .collect();
    assert_eq!(pools, vec!["a"]);
    mgr.stop();
}

/// An HTTPS target needing auth, with a fresh self-signed certificate for 127.0.0.1.
struct TlsTarget {
    _proc: common::Proc,
    addr: String,
    ca: std::path::PathBuf,
    dir: tempfile::TempDir,
}

fn tls_target() -> Option<TlsTarget> {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::Pki::new(dir.path())?;
    let (cert, key) = pki.issue("cert", "127.0.0.1");
    let ca = pki.ca.clone();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testdata/tls_server.py");
    let (proc_, addr) = common::spawn_with_port(
        std::process::Command::new("python3")
            .arg(script)
            .arg(&cert)
            .arg(&key)
            .args(["scraper", "s3cret", "tok3n"]),
    );
    Some(TlsTarget {
        _proc: proc_,
        addr,
        ca: ca.into(),
        dir,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_with_ca_insecure_and_auth_from_files() {
    let Some(t) = tls_target() else { return };
    let pass_file = t.dir.path().join("pass");
    std::fs::write(&pass_file, "s3cret\n").unwrap();
    let token_file = t.dir.path().join("token");
    std::fs::write(&token_file, "tok3n").unwrap();
    let (head, mgr) = setup();
    let base = |name: &str, extra: &str| {
        job(&format!("job_name: {name}\nscheme: https\nscrape_interval: 200ms\n{extra}static_configs:\n  - targets: ['{}']\n", t.addr))
    };
    mgr.apply(vec![
        base("ca", &format!("tls_config:\n  ca_file: {}\nbasic_auth:\n  username: scraper\n  password_file: {}\n", t.ca.display(), pass_file.display())),
        base("insecure", &format!("tls_config:\n  insecure_skip_verify: true\nauthorization:\n  credentials_file: {}\n", token_file.display())),
        base("untrusted", "bearer_token: tok3n\n"),
        base("wrongpass", &format!("tls_config:\n  ca_file: {}\nbasic_auth:\n  username: scraper\n  password: nope\n", t.ca.display())),
    ])
    .unwrap();
    until(10, "all four scraped", || {
        let t = mgr.active_targets();
        t.len() == 4 && t.iter().all(|t| t.health.as_str() != "unknown")
    })
    .await;
    let by_pool = |p: &str| {
        mgr.active_targets()
            .into_iter()
            .find(|t| t.scrape_pool == p)
            .unwrap()
    };
    assert_eq!(
        by_pool("ca").health.as_str(),
        "up",
        "{}",
        by_pool("ca").last_error
    );
    assert_eq!(
        by_pool("insecure").health.as_str(),
        "up",
        "{}",
        by_pool("insecure").last_error
    );
    let untrusted = by_pool("untrusted");
    assert_eq!(untrusted.health.as_str(), "down");
    assert!(
        untrusted.last_error.to_lowercase().contains("certificate"),
        "{}",
        untrusted.last_error
    );
    let wrong = by_pool("wrongpass");
    assert_eq!(
        wrong.last_error,
        "server returned HTTP status 401 Unauthorized"
    );
    let ok = head.select(&[m("__name__", "auth_ok")], i64::MIN, i64::MAX);
    assert_eq!(ok.len(), 2);
    mgr.stop();
}

/// A reload that changes `metric_relabel_configs` applies to series already known: the scrape
/// cache that outlives the reload is emptied when the settings its labels came from change
/// (found in issue 19 while reworking the cache; before, the old relabelling lived on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_metric_relabelling_applies_to_known_series() {
    let page = Arc::new(Mutex::new(text("# TYPE g gauge\ng{a=\"1\"} 1\n")));
    let addr = serve(page.clone()).await;
    let (head, mgr) = setup();
    let cfg = |tier: &str| {
        job(&format!("job_name: t\nscrape_interval: 200ms\nstatic_configs:\n  - targets: ['{addr}']\nmetric_relabel_configs:\n  - target_label: tier\n    replacement: {tier}\n"))
    };
    let with_tier = |tier: &'static str| {
        let head = head.clone();
        move || {
            !head
                .select(&[m("__name__", "g"), m("tier", tier)], i64::MIN, i64::MAX)
                .is_empty()
        }
    };
    mgr.apply(vec![cfg("gold")]).unwrap();
    until(5, "g{tier=gold}", with_tier("gold")).await;
    mgr.apply(vec![cfg("silver")]).unwrap();
    until(5, "g{tier=silver} after the reload", with_tier("silver")).await;
    mgr.stop();
}

/// Stopping does not wait out a scrape in flight (a million-series page takes seconds): the
/// fetch is abandoned, so no `up 0` of a timed-out scrape is written on the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_abandons_a_scrape_in_flight() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = accepted.clone();
    // Accepts and never answers.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(s);
        }
    });
    let (head, mgr) = setup();
    let j = job(&format!(
        "job_name: t\nscrape_interval: 3s\nscrape_timeout: 3s\nstatic_configs:\n  - targets: ['{addr}']\n"
    ));
    mgr.apply(vec![j]).unwrap();
    until(10, "the scrape to start", || {
        accepted.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .await;
    for t in mgr.stop() {
        t.await.unwrap();
    }
    let ups = head.select(&[m("__name__", "up")], i64::MIN, i64::MAX);
    let zeros = ups
        .iter()
        .flat_map(|s| s.samples.iter())
        .filter(|(_, v)| *v == 0.0)
        .count();
    assert_eq!(zeros, 0, "the scrape in flight ran to its timeout: {ups:?}");
}

const PROTO_CT: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Issue 20: a protobuf target is asked for protobuf first when native histograms are on, and
/// its native histogram is stored as one (with its classic series when asked for); with them
/// off the same body gives the classic series only; over `native_histogram_bucket_limit` the
/// histogram is stored at a lower resolution, and when even schema -4 is too fine the scrape
/// fails with Prometheus's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_targets_give_native_histograms() {
    use appliance::model::exposition::protobuf::encode_delimited;
    use appliance::testsupport::native_histogram_family;
    let page = Arc::new(Mutex::new(Page {
        content_type: PROTO_CT.into(),
        body: encode_delimited(&[native_histogram_family("rpc_seconds", 10)]),
        gzip: false,
    }));
    let accept = Arc::new(Mutex::new(String::new()));
    let addr = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (page, accept) = (page.clone(), accept.clone());
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move |h: axum::http::HeaderMap| {
                *accept.lock() = h
                    .get("accept")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let p = page.lock().clone();
                async move { ([(axum::http::header::CONTENT_TYPE, p.content_type)], p.body) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    };
    let hist = |head: &Head| {
        head.select(&[m("__name__", "rpc_seconds")], i64::MIN, i64::MAX)
            .first()
            .and_then(|s| s.histograms.last().map(|(_, h)| (**h).clone()))
    };

    let (head, mgr) = setup();
    mgr.apply(vec![job(&format!("job_name: t\nscrape_interval: 200ms\nscrape_native_histograms: true\nalways_scrape_classic_histograms: true\nstatic_configs:\n  - targets: ['{addr}']\n"))]).unwrap();
    until(5, "a native histogram", || hist(&head).is_some()).await;
    assert!(
        accept.lock().starts_with("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,"),
        "{}",
        accept.lock()
    );
    let h = hist(&head).unwrap();
    assert_eq!(
        (h.schema, h.count, h.sum, h.zero_count),
        (3, 10.0, 5.0, 1.0)
    );
    assert_eq!(
        h.positive.iter().map(|(i, c)| (*i, *c)).collect::<Vec<_>>(),
        [(-2, 2.0), (-1, 3.0), (3, 1.0)]
    );
    assert_eq!(h.negative.get(&0), Some(&3.0));
    // The classic series beside it, +Inf added.
    let bucket = |head: &Head, le: &str| {
        head.select(
            &[m("__name__", "rpc_seconds_bucket"), m("le", le)],
            i64::MIN,
            i64::MAX,
        )
        .first()
        .and_then(|s| s.samples.last().map(|x| x.1))
    };
    assert_eq!(bucket(&head, "+Inf"), Some(10.0));
    assert_eq!(bucket(&head, "0.5"), Some(3.0));
    assert_eq!(last(&head, "rpc_seconds_count"), Some(10.0));
    // A new count is picked up (the cache keys histograms apart from floats).
    *page.lock() = Page {
        content_type: PROTO_CT.into(),
        body: encode_delimited(&[native_histogram_family("rpc_seconds", 20)]),
        gzip: false,
    };
    until(5, "the second histogram", || {
        hist(&head).is_some_and(|h| h.count == 20.0)
    })
    .await;
    mgr.stop();

    // Native histograms off (the default): text first in Accept, classic series only.
    let (head, mgr) = setup();
    mgr.apply(vec![job(&format!(
        "job_name: t\nscrape_interval: 200ms\nstatic_configs:\n  - targets: ['{addr}']\n"
    ))])
    .unwrap();
    until(5, "classic series", || {
        last(&head, "rpc_seconds_count").is_some()
    })
    .await;
    assert!(accept.lock().starts_with("application/openmetrics-text"));
    assert!(hist(&head).is_none());
    assert_eq!(bucket(&head, "1.0"), Some(20.0));
    mgr.stop();

    // Four buckets over a limit of 3: at schema 1 positive -2,-1 merge into 0 and 3 becomes 1;
    // with the negative bucket, three.
    let (head, mgr) = setup();
    mgr.apply(vec![job(&format!("job_name: t\nscrape_interval: 200ms\nscrape_native_histograms: true\nnative_histogram_bucket_limit: 3\nstatic_configs:\n  - targets: ['{addr}']\n"))]).unwrap();
    until(5, "a reduced histogram", || hist(&head).is_some()).await;
    let h = hist(&head).unwrap();
    assert_eq!(h.schema, 1);
    assert_eq!(
        h.positive.iter().map(|(i, c)| (*i, *c)).collect::<Vec<_>>(),
        [(0, 5.0), (1, 11.0)]
    );
    assert_eq!(h.count, 20.0);
    assert_eq!(last(&head, "up"), Some(1.0));
    mgr.stop();

    // A limit of 2 cannot be met: two positive buckets and a negative one remain at any
    // schema (indexes 0 and 1 never merge: bucket 0 holds (1/b, 1], bucket 1 (1, b]).
    let (head, mgr) = setup();
    mgr.apply(vec![job(&format!("job_name: t\nscrape_interval: 200ms\nscrape_native_histograms: true\nnative_histogram_bucket_limit: 2\nstatic_configs:\n  - targets: ['{addr}']\n"))]).unwrap();
    until(5, "a failed scrape", || last(&head, "up") == Some(0.0)).await;
    assert!(hist(&head).is_none());
    assert_eq!(
        mgr.active_targets()[0].last_error,
        "histogram bucket limit exceeded"
    );
    mgr.stop();
}

/// `convert_classic_histograms_to_nhcb`: a classic histogram on a text page is stored as one
/// custom-bucket native histogram under its family name, its classic series only when
/// `always_scrape_classic_histograms` asks for them.
#[tokio::test]
async fn classic_histograms_convert_to_custom_bucket_histograms() {
    let page = Arc::new(Mutex::new(Page {
        content_type: "text/plain; version=0.0.4".into(),
        body: b"# TYPE rpc_seconds histogram\n\
rpc_seconds_bucket{le=\"0.1\"} 2\n\
rpc_seconds_bucket{le=\"1\"} 5\n\
rpc_seconds_bucket{le=\"+Inf\"} 6\n\
rpc_seconds_sum 3.5\n\
rpc_seconds_count 6\n"
            .to_vec(),
        gzip: false,
    }));
    let addr = serve(page.clone()).await;
    let hist = |head: &Head| {
        head.select(&[m("__name__", "rpc_seconds")], i64::MIN, i64::MAX)
            .first()
            .and_then(|s| s.histograms.last().map(|(_, h)| (**h).clone()))
    };
    let classic = |head: &Head| {
        !head
            .select(&[m("__name__", "rpc_seconds_bucket")], i64::MIN, i64::MAX)
            .is_empty()
    };
    for keep in [false, true] {
        let (head, mgr) = setup();
        mgr.apply(vec![job(&format!("job_name: t\nscrape_interval: 200ms\nconvert_classic_histograms_to_nhcb: true\nalways_scrape_classic_histograms: {keep}\nstatic_configs:\n  - targets: ['{addr}']\n"))]).unwrap();
        until(5, "a converted histogram", || hist(&head).is_some()).await;
        let h = hist(&head).unwrap();
        assert_eq!(
            h.to_string(),
            "{{schema:-53 count:6 sum:3.5 custom_values:[0.1 1] buckets:[2 3 1]}}"
        );
        assert_eq!(classic(&head), keep, "classic series kept: {keep}");
        mgr.stop();
    }
}
