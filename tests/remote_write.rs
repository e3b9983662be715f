//! Remote write end to end: the appliance feeding Debian's Prometheus (a real receiver), an
//! outage with a SIGKILL in the middle, an outage longer than the WAL, a receiver that
//! answers 400 and 429, a 2.0 round trip into a second appliance, and the receiver's refusals.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Every sample of every series in `(end - secs, end]` as `labels → [(t_ms, value)]`, read
/// with a range selector (stale markers are not returned by either side).
fn window(
    addr: &str,
    end_ms: i64,
    secs: u64,
    extra_auth: Option<&str>,
) -> BTreeMap<String, Vec<(i64, String)>> {
    let q: String =
        form_urlencoded::byte_serialize(format!("{{__name__=~\".+\"}}[{secs}s]").as_bytes())
            .collect();
    let path = format!(
        "/api/v1/query?query={q}&time={}.{:03}",
        end_ms / 1000,
        end_ms % 1000
    );
    let body = match extra_auth {
        Some(h) => request_with(addr, "GET", &path, h, "").map(|(_, _, b)| b),
        None => get(addr, &path).map(|(_, b)| b),
    }
    .unwrap_or_else(|| panic!("query {addr}"));
    if std::env::var("RW_DEBUG").is_ok() {
        eprintln!("{addr} {path}: {}", &body[..body.len().min(300)]);
    }
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "success", "{body}");
    let mut out = BTreeMap::new();
    for r in v["data"]["result"].as_array().unwrap() {
        let labels: BTreeMap<String, String> = serde_json::from_value(r["metric"].clone()).unwrap();
        let key = format!("{labels:?}");
        let mut pts = Vec::new();
        for p in r["values"].as_array().unwrap() {
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            // The window's first second is left out on both sides: Prometheus 2 closes a range
            // on the left, the appliance (as Prometheus 3) opens it.
            if t > end_ms - secs as i64 * 1000 + 1000 {
                pts.push((t, p[1].as_str().unwrap().to_string()));
            }
        }
        if !pts.is_empty() {
            out.insert(key, pts);
        }
    }
    out
}

/// The appliance's series with the external label added, as the receiver stores them.
fn with_label(
    m: BTreeMap<String, Vec<(i64, String)>>,
    k: &str,
    v: &str,
) -> BTreeMap<String, Vec<(i64, String)>> {
    m.into_iter()
        .map(|(key, pts)| {
            let mut labels: BTreeMap<String, String> = parse_key(&key);
            labels.entry(k.into()).or_insert(v.into());
            (format!("{labels:?}"), pts)
        })
        .collect()
}

fn parse_key(key: &str) -> BTreeMap<String, String> {
    // Keys are `{"a": "b", ...}` from Debug of a BTreeMap<String, String>.
    let json = key.to_string();
    serde_json::from_str(&json).unwrap_or_default()
}

fn metric(addr: &str, name: &str) -> f64 {
    let (_, page) = get(addr, "/metrics").unwrap_or_default();
    page.lines()
        .filter(|l| {
            l.starts_with(name)
                && (l.as_bytes().get(name.len()) == Some(&b'{')
                    || l.as_bytes().get(name.len()) == Some(&b' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn diff(
    a: &BTreeMap<String, Vec<(i64, String)>>,
    b: &BTreeMap<String, Vec<(i64, String)>>,
) -> String {
    let mut out = String::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push_str(&format!("missing series {k} ({} samples)\n", v.len())),
            Some(w) if w != v => {
                let missing: Vec<_> = v.iter().filter(|p| !w.contains(p)).take(5).collect();
                let extra: Vec<_> = w.iter().filter(|p| !v.contains(p)).take(5).collect();
                out.push_str(&format!("{k}: missing {missing:?} extra {extra:?}\n"));
            }
            _ => {}
        }
        if out.len() > 4000 {
            break;
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            out.push_str(&format!("unexpected series {k}\n"));
        }
        if out.len() > 4000 {
            break;
        }
    }
    out
}

const QUIET: &str = "collectors: {containers: {enabled: false}, postgres: {enabled: false}, redis: {enabled: false}, celery: {enabled: false}}\n";

fn start_prometheus(dir: &std::path::Path, addr: &str) -> Proc {
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, "global: {scrape_interval: 1m}\n").unwrap();
    let p = prometheus_with_args(
        &cfg,
        &dir.join("pdata"),
        addr,
        &["--web.enable-remote-write-receiver"],
    );
    wait_for(30, "prometheus ready", || {
        TcpStream::connect(addr).ok()?;
        let (c, _) = request_with(addr, "GET", "/-/ready", "", "").map(|(c, h, _)| (c, h))?;
        (c == 200).then_some(())
    });
    p
}

/// Polls until the receiver holds exactly what the appliance holds in `(end - secs, end]`
/// (plus `site="test"`), failing with the difference after `deadline` seconds. Returns the
/// number of series compared.
fn assert_same_window(
    app: &str,
    recv: &str,
    recv_auth: Option<&str>,
    end: i64,
    secs: u64,
    deadline: u64,
    label: Option<(&str, &str)>,
) -> usize {
    let until = Instant::now() + Duration::from_secs(deadline);
    loop {
        let mut ours = window(app, end, secs, None);
        if let Some((k, v)) = label {
            ours = with_label(ours, k, v);
        }
        let theirs = window(recv, end, secs, recv_auth);
        if ours == theirs {
            return ours.len();
        }
        if Instant::now() > until {
            panic!(
                "after {deadline}s the receiver still differs ({} vs {} series):\n{}",
                ours.len(),
                theirs.len(),
                diff(&ours, &theirs)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn prometheus_receives_exactly_what_the_appliance_holds() {
    if !prometheus_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let paddr = format!("127.0.0.1:{}", free_port());
    let _prom = start_prometheus(dir.path(), &paddr);
    let (_app, addr) = appliance_with_config(
        dir.path(),
        &format!("global: {{scrape_interval: 1s, scrape_timeout: 1s, external_labels: {{site: test}}}}\n{QUIET}remote_write:\n  - url: http://{paddr}/api/v1/write\n    queue_config: {{batch_send_deadline: 500ms}}\n"),
    );
    let end = now_ms() + 10_000;
    wait_queue(&addr, "highestSentMs", end, 40);
    let n = assert_same_window(&addr, &paddr, Some(""), end, 8, 30, Some(("site", "test")));
    assert!(n > 50, "too few series to mean anything: {n}");
    let sent = metric(&addr, "appliance_remote_storage_samples_total");
    assert!(sent > 0.0);
    assert_eq!(
        metric(&addr, "appliance_remote_storage_samples_failed_total"),
        0.0
    );
    // Metadata went too (1.0 sends it on its own schedule, once at start).
    assert!(metric(&addr, "appliance_remote_storage_metadata_total") > 0.0);
}

/// Waits until the first queue's `field` (`highestSentMs`, `highestReadMs`) reaches `t_ms`.
fn wait_queue(addr: &str, field: &str, t_ms: i64, secs: u64) {
    wait_for(secs, field, || {
        let v = get_json(addr, "/api/v1/status/remote_write");
        (v["data"][0][field].as_i64().unwrap_or(0) >= t_ms).then_some(())
    });
}

/// Waits until the appliance has stored scrapes stamped at or after `t_ms` (the queue may be
/// stalled by an outage, so this asks the store).
fn wait_stored(addr: &str, t_ms: i64, secs: u64) {
    wait_for(secs, "scrapes stored", || {
        (query_value(addr, "max(timestamp(up))")? * 1000.0 >= t_ms as f64).then_some(())
    });
}

/// Kills the appliance with SIGKILL (no shutdown path runs).
fn sigkill(p: &mut Proc) {
    let _ = p.0.kill();
    let _ = p.0.wait();
}

#[test]
fn an_outage_with_a_sigkill_in_the_middle_loses_nothing() {
    if !prometheus_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let paddr = format!("127.0.0.1:{}", free_port());
    let mut prom = start_prometheus(dir.path(), &paddr);
    let yaml = format!("global: {{scrape_interval: 1s, scrape_timeout: 1s, external_labels: {{site: test}}}}\n{QUIET}remote_write:\n  - url: http://{paddr}/api/v1/write\n    queue_config: {{batch_send_deadline: 500ms, max_backoff: 1s, capacity: 2000, max_samples_per_send: 500}}\n");
    let (mut app, addr) = appliance_with_config(dir.path(), &yaml);
    let start = now_ms();
    wait_queue(&addr, "highestSentMs", start + 3_000, 30);
    // The receiver goes away; the appliance keeps scraping and its backlog grows.
    sigkill(&mut prom);
    wait_for(30, "pending samples to rise", || {
        (metric(&addr, "appliance_remote_storage_samples_pending") > 1000.0).then_some(())
    });
    // Mid-outage, the appliance itself is killed and started again on the same data.
    sigkill(&mut app);
    let cfg = dir.path().join("appliance.yml");
    let app2 = appliance(dir.path(), Some(&cfg), &addr);
    wait_ready(&addr);
    wait_stored(&addr, now_ms() + 3_000, 30);
    let _prom = start_prometheus(dir.path(), &paddr);
    // Everything the appliance holds from before the outage to now arrives.
    let end = now_ms() - 2_000;
    let secs = ((end - start) / 1000) as u64 + 2;
    let n = assert_same_window(
        &addr,
        &paddr,
        Some(""),
        end,
        secs,
        60,
        Some(("site", "test")),
    );
    assert!(n > 50);
    wait_for(30, "pending back to zero", || {
        (metric(&addr, "appliance_remote_storage_samples_pending") < 1000.0
            && get_json(&addr, "/api/v1/status/remote_write")["data"][0]["lagSeconds"]
                .as_f64()
                .unwrap_or(99.0)
                < 3.0)
            .then_some(())
    });
    drop(app2);
}

#[test]
fn an_outage_longer_than_the_wal_is_caught_up_from_blocks() {
    if !prometheus_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let paddr = format!("127.0.0.1:{}", free_port());
    let mut prom = start_prometheus(dir.path(), &paddr);
    // 4 s blocks: the head and WAL hold about 6 s, so a 25 s outage outlives the log.
    let yaml = format!("global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n{QUIET}storage: {{block_duration: 4s}}\nremote_write:\n  - url: http://{paddr}/api/v1/write\n    queue_config: {{batch_send_deadline: 500ms, max_backoff: 1s, capacity: 1000, max_samples_per_send: 500}}\n");
    let (_app, addr) = appliance_with_config(dir.path(), &yaml);
    wait_queue(&addr, "highestSentMs", now_ms() + 2_000, 30);
    sigkill(&mut prom);
    let start = now_ms();
    wait_for(60, "WAL segments removed under the queue", || {
        let removed = std::fs::read_to_string(dir.path().join("data/wal/removed-segments"))
            .unwrap_or_default();
        (removed.lines().count() >= 3).then_some(())
    });
    wait_stored(&addr, now_ms() + 5_000, 30);
    let _prom = start_prometheus(dir.path(), &paddr);
    wait_for(60, "the catch-up from blocks", || {
        let log = std::fs::read_to_string(dir.path().join("appliance.log")).unwrap_or_default();
        log.contains("caught up from the blocks").then_some(())
    });
    let end = now_ms() - 3_000;
    let secs = ((end - start) / 1000) as u64;
    let n = assert_same_window(&addr, &paddr, Some(""), end, secs, 60, None);
    assert!(n > 50);
}

/// When each request arrived and what it was answered.
type Arrivals = Arc<Mutex<Vec<(Instant, u16)>>>;

/// A receiver that answers each request with the next scripted status (then 204), with
/// `Retry-After` on 429s; records each request's arrival time.
fn scripted_receiver(script: Vec<(u16, Option<&'static str>)>) -> (String, Arrivals) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let log: Arrivals = Default::default();
    let l2 = log.clone();
    let next = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            if read_request(&mut s).is_none() {
                continue;
            }
            let i = next.fetch_add(1, Ordering::SeqCst);
            let (status, retry) = script.get(i).cloned().unwrap_or((204, None));
            l2.lock().unwrap().push((Instant::now(), status));
            let extra = retry
                .map(|r| format!("Retry-After: {r}\r\n"))
                .unwrap_or_default();
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 {status} X\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            );
        }
    });
    (addr, log)
}

#[test]
fn a_400_drops_one_batch_and_a_429_waits_for_retry_after() {
    let (raddr, log) = scripted_receiver(vec![(400, None), (429, Some("2")), (204, None)]);
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!("global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n{QUIET}remote_write:\n  - url: http://{raddr}/api/v1/write\n    name: scripted\n    metadata_config: {{send: false}}\n    queue_config: {{batch_send_deadline: 300ms, min_backoff: 10ms}}\n");
    let (_app, addr) = appliance_with_config(dir.path(), &yaml);
    wait_for(30, "batches after the 400 and the 429 delivered", || {
        (log.lock().unwrap().iter().filter(|x| x.1 == 204).count() >= 3).then_some(())
    });
    let l = log.lock().unwrap().clone();
    assert_eq!(l[0].1, 400);
    assert_eq!(l[1].1, 429);
    let waited = l[2].0.duration_since(l[1].0);
    assert!(
        waited >= Duration::from_millis(1900),
        "Retry-After: 2 honoured, waited {waited:?}"
    );
    assert!(
        metric(&addr, "appliance_remote_storage_samples_failed_total") > 0.0,
        "the 400 batch is counted"
    );
    assert!(
        metric(&addr, "appliance_remote_storage_samples_retried_total") > 0.0,
        "the 429 is counted"
    );
    assert!(metric(&addr, "appliance_remote_storage_samples_total") > 0.0);
    let st = get_json(&addr, "/api/v1/status/remote_write");
    assert!(
        st["data"][0]["lastError"].as_str().unwrap().contains("429"),
        "{st}"
    );
}

#[test]
fn a_2_0_round_trip_into_another_appliance_carries_samples_labels_and_metadata() {
    let rdir = tempfile::tempdir().unwrap();
    let (_recv, raddr) = appliance_with_config(
        rdir.path(),
        "collectors: {appliance: {enabled: false}, node: {enabled: false}, containers: {enabled: false}, postgres: {enabled: false}, redis: {enabled: false}, celery: {enabled: false}}\nweb:\n  enable_remote_write_receiver: true\n  auth: {write_tokens: [push-token]}\n",
    );
    let sdir = tempfile::tempdir().unwrap();
    let yaml = format!("global: {{scrape_interval: 1s, scrape_timeout: 1s, external_labels: {{origin: a}}}}\n{QUIET}remote_write:\n  - url: http://{raddr}/api/v1/write\n    protobuf_message: io.prometheus.write.v2.Request\n    authorization: {{credentials: push-token}}\n    queue_config: {{batch_send_deadline: 300ms}}\n");
    let (_send, saddr) = appliance_with_config(sdir.path(), &yaml);
    let end = now_ms() + 3_000;
    wait_queue(&saddr, "highestSentMs", end, 30);
    let n = assert_same_window(&saddr, &raddr, None, end, 3, 30, Some(("origin", "a")));
    assert!(n > 50);
    // Metadata: every family the sender's targets describe arrives with its type and help.
    // 2.0 sends metadata with the series, once the sender's table has it (within seconds).
    wait_for(30, "pushed metadata", || {
        (get_json(&raddr, "/api/v1/metadata")["data"]
            .as_object()?
            .len()
            > 20)
            .then_some(())
    });
    let sent = get_json(&saddr, "/api/v1/metadata");
    let got = get_json(&raddr, "/api/v1/metadata");
    let mut checked = 0;
    for (name, v) in sent["data"].as_object().unwrap() {
        // Only families with a sample in the window are sent (2.0 carries metadata inline).
        // The receiver names families as OpenMetrics does (2.0 sends no family names).
        let kind = v[0]["type"].as_str().unwrap_or("");
        let fam = appliance::remote::convert::family_name(name, kind);
        let Some(g) = got["data"].get(fam) else {
            continue;
        };
        assert!(
            g.as_array()
                .unwrap()
                .iter()
                .any(|e| e["type"] == v[0]["type"] && e["help"] == v[0]["help"]),
            "{name}: sent {v}, received {g}"
        );
        checked += 1;
    }
    assert!(
        checked > 20,
        "metadata arrived for only {checked} families: {got}"
    );
    assert!(metric(&saddr, "appliance_remote_storage_samples_failed_total") == 0.0);
}

/// POSTs raw bytes; returns the status.
fn post_bytes(addr: &str, path: &str, headers: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_receiver_refuses_without_credentials_too_large_and_garbage_and_keeps_its_data() {
    use appliance::remote::proto::{compress, v1};
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) = appliance_with_config(
        dir.path(),
        "collectors: {appliance: {enabled: false}, node: {enabled: false}, containers: {enabled: false}, postgres: {enabled: false}, redis: {enabled: false}, celery: {enabled: false}}\nweb:\n  enable_remote_write_receiver: true\n  auth: {write_tokens: [w-token], read_tokens: [r-token]}\n",
    );
    let t = now_ms() - 1000;
    let req = v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: vec![
                v1::Label {
                    name: "__name__".into(),
                    value: "pushed".into(),
                },
                v1::Label {
                    name: "job".into(),
                    value: "x".into(),
                },
            ],
            samples: vec![v1::Sample {
                value: 42.0,
                timestamp: t,
            }],
            ..Default::default()
        }],
        metadata: vec![],
    };
    let body = compress(&req.encode_to_vec());
    let proto = "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n";
    let good = format!("{proto}Authorization: Bearer w-token\r\n");
    assert_eq!(
        post_bytes(&addr, "/api/v1/write", proto, &body),
        401,
        "no credential"
    );
    assert_eq!(
        post_bytes(
            &addr,
            "/api/v1/write",
            &format!("{proto}Authorization: Bearer r-token\r\n"),
            &body
        ),
        401,
        "a read token cannot write"
    );
    assert_eq!(post_bytes(&addr, "/api/v1/write", &good, &body), 204);
    assert_eq!(
        post_bytes(&addr, "/api/v1/write", &good, b"this is not snappy"),
        400,
        "garbage"
    );
    assert_eq!(
        post_bytes(
            &addr,
            "/api/v1/write",
            &good,
            &compress(b"\xff\xff\xff not protobuf")
        ),
        400,
        "garbage inside snappy"
    );
    assert_eq!(
        post_bytes(&addr, "/api/v1/write", &good, &vec![0u8; 33 << 20]),
        413,
        "oversized"
    );
    // A snappy bomb: a small body that claims a huge decompressed size.
    let mut bomb = Vec::new();
    let mut n: u64 = 1 << 31;
    while n >= 0x80 {
        bomb.push((n as u8) | 0x80);
        n >>= 7;
    }
    bomb.push(n as u8);
    bomb.extend_from_slice(&[0u8; 64]);
    assert_eq!(
        post_bytes(&addr, "/api/v1/write", &good, &bomb),
        413,
        "decompression bomb"
    );
    // Older than what is stored for the series: refused per sample with 400, the rest written.
    let mixed = v1::WriteRequest {
        timeseries: vec![
            v1::TimeSeries {
                labels: req.timeseries[0].labels.clone(),
                samples: vec![v1::Sample {
                    value: 1.0,
                    timestamp: t - 500,
                }],
                ..Default::default()
            },
            v1::TimeSeries {
                labels: vec![v1::Label {
                    name: "__name__".into(),
                    value: "other".into(),
                }],
                samples: vec![v1::Sample {
                    value: 7.0,
                    timestamp: t,
                }],
                ..Default::default()
            },
        ],
        metadata: vec![],
    };
    assert_eq!(
        post_bytes(
            &addr,
            "/api/v1/write",
            &good,
            &compress(&mixed.encode_to_vec())
        ),
        400
    );
    assert_eq!(
        query_value(&addr, "pushed"),
        Some(42.0),
        "stored data intact"
    );
    assert_eq!(
        query_value(&addr, "other"),
        Some(7.0),
        "the acceptable part was written"
    );
}

/// Issue 20's differential check over a window: the appliance scrapes a protobuf page whose
/// native histogram grows at every scrape and remote-writes it to Debian's Prometheus 2.42
/// (`--enable-feature=native-histograms`), so both hold the very same samples; then `rate`,
/// `histogram_count`/`_sum`/`_fraction` of it agree within 1e-9, and `histogram_quantile`
/// lands in the same bucket at the same position (2.42 interpolates linearly inside it).
#[test]
fn native_histogram_rates_agree_with_prometheus_on_the_same_samples() {
    use appliance::model::exposition::protobuf::encode_delimited;
    use appliance::testsupport::native_histogram_family;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    if !prometheus_installed() {
        return;
    }
    // The page: at its k-th request, rpc_seconds has 10 + 4k observations (the bucket at
    // index 3 grows), so `rate` has something to measure.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let k = std::sync::Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let n = k.fetch_add(1, Ordering::SeqCst);
            let body = encode_delimited(&[native_histogram_family("rpc_seconds", 10 + 4 * n)]);
            let mut resp = format!("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
            resp.extend_from_slice(&body);
            let _ = s.write_all(&resp);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let paddr = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, "global: {scrape_interval: 1m}\n").unwrap();
    let _prom = prometheus_with_args(
        &cfg,
        &dir.path().join("pdata"),
        &paddr,
        &[
            "--web.enable-remote-write-receiver",
            "--enable-feature=native-histograms",
        ],
    );
    wait_for(30, "prometheus ready", || {
        let (c, _) = get(&paddr, "/-/ready")?;
        (c == 200).then_some(())
    });
    let (_app, addr) = appliance_with_config(
        dir.path(),
        &format!("global: {{scrape_interval: 1s, scrape_timeout: 1s, scrape_native_histograms: true}}\n{QUIET}scrape_configs:\n  - job_name: nh\n    static_configs: [{{targets: ['{target}']}}]\nremote_write:\n  - url: http://{paddr}/api/v1/write\n    send_native_histograms: true\n    queue_config: {{batch_send_deadline: 500ms}}\n"),
    );
    let end = now_ms() + 12_000;
    wait_queue(&addr, "highestSentMs", end, 60);
    // Evaluated at a time both hold every sample up to.
    let t = (end - 1_000) as f64 / 1000.0;
    let sel = "rpc_seconds{job=\"nh\"}";
    let at = format!("&time={t}");
    let answer = |a: &str, q: &str| -> serde_json::Value {
        let v = get_json(a, &format!("/api/v1/query?query={}{at}", enc(q)));
        v["data"]["result"].clone()
    };
    // The rate itself, bucket by bucket.
    let rate = format!("rate({sel}[5s])");
    let (p, a) = (answer(&paddr, &rate), answer(&addr, &rate));
    let hist = |v: &serde_json::Value| -> Vec<f64> {
        let h = &v[0]["histogram"][1];
        let mut out = vec![
            h["count"].as_str().unwrap().parse().unwrap(),
            h["sum"].as_str().unwrap().parse().unwrap(),
        ];
        for b in h["buckets"].as_array().into_iter().flatten() {
            for i in 1..4 {
                out.push(b[i].as_str().unwrap().parse().unwrap());
            }
        }
        out
    };
    assert!(a[0]["histogram"].is_array(), "{a}");
    let close = |x: f64, y: f64| x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs());
    let (ph, ah) = (hist(&p), hist(&a));
    assert!(ah[0] > 0.0, "the histogram grew: {a}");
    assert_eq!(ah.len(), ph.len(), "{a} vs {p}");
    assert!(ah.iter().zip(&ph).all(|(x, y)| close(*x, *y)), "{a} vs {p}");
    for q in [
        format!("histogram_count(rate({sel}[5s]))"),
        format!("histogram_sum(increase({sel}[5s]))"),
        format!("histogram_fraction(0, 1, rate({sel}[5s]))"),
        format!("histogram_count(delta({sel}[5s]))"),
    ] {
        let (p, a) = (answer(&paddr, &q), answer(&addr, &q));
        let f =
            |v: &serde_json::Value| -> f64 { v[0]["value"][1].as_str().unwrap().parse().unwrap() };
        assert!(close(f(&a), f(&p)), "{q}: appliance {a}, prometheus {p}");
    }
    for q in [0.9, 0.5, 0.1] {
        assert_same_native_quantile(&paddr, &addr, &rate, q, Some(t));
    }
}
