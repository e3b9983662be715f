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
    std::thread::sleep(Duration::from_secs(12));
    let end = now_ms() - 2_000;
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
