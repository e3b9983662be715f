//! Helpers for the end-to-end tests: free ports, a minimal HTTP client over std sockets,
//! polling with a deadline, and child processes that are killed when dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The admin password every appliance started by these helpers gets.
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// `Authorization` value for the admin.
pub fn admin_basic_auth() -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"))
    )
}

/// Sends one HTTP/1.0 request as the admin (basic auth); returns status and body (None if
/// the connection failed).
pub fn request(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let auth = format!("Authorization: {}\r\n", admin_basic_auth());
    request_with(addr, method, path, &auth, body).map(|(c, _, b)| (c, b))
}

/// Sends one HTTP/1.0 request with `extra` header lines (each ending in CRLF); returns status,
/// response head and body.
pub fn request_with(
    addr: &str,
    method: &str,
    path: &str,
    extra: &str,
    body: &str,
) -> Option<(u16, String, String)> {
    request_typed(
        addr,
        method,
        path,
        extra,
        "application/x-www-form-urlencoded",
        body,
    )
}

/// As [`request_with`], with the body's `Content-Type`.
pub fn request_typed(
    addr: &str,
    method: &str,
    path: &str,
    extra: &str,
    content_type: &str,
    body: &str,
) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head.to_string(), body.to_string()))
}

pub fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    request(addr, "GET", path, "")
}

pub fn get_json(addr: &str, path: &str) -> serde_json::Value {
    let (_, body) = get(addr, path).unwrap_or_else(|| panic!("GET {path} failed"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Polls `f` until it returns Some, or panics with `what` after `secs`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// Starts the appliance binary on `listen` with `config` (None = embedded default) in `dir`.
pub fn appliance(dir: &Path, config: Option<&Path>, listen: &str) -> Proc {
    appliance_with_args(dir, config, listen, &[])
}

/// As [`appliance`], with more `run` flags.
pub fn appliance_with_args(dir: &Path, config: Option<&Path>, listen: &str, args: &[&str]) -> Proc {
    appliance_with_env(dir, config, listen, args, &[])
}

/// As [`appliance_with_args`], with more environment variables.
pub fn appliance_with_env(
    dir: &Path,
    config: Option<&Path>,
    listen: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Proc {
    let mut c = Command::new(env!("CARGO_BIN_EXE_appliance"));
    c.envs(env.iter().copied());
    c.current_dir(dir)
        .env("APPLIANCE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        // A host's notification settings must not reach tests that expect no receiver.
        .env_remove("SLACK_WEBHOOK_URL")
        .env_remove("ALERT_EMAIL")
        .arg("run")
        .arg("--listen")
        .arg(listen)
        .arg("--data-dir")
        .arg(dir.join("data"));
    if let Some(cfg) = config {
        c.arg("--config").arg(cfg);
    }
    c.args(args);
    let log = std::fs::File::create(dir.join("appliance.log")).unwrap();
    c.stdout(Stdio::null()).stderr(log);
    Proc(c.spawn().expect("start appliance"))
}

/// Writes `yaml` as `dir/appliance.yml`, starts the appliance on it on a free port and waits
/// until it is ready; returns the process and its address.
pub fn appliance_with_config(dir: &Path, yaml: &str) -> (Proc, String) {
    let cfg = dir.join("appliance.yml");
    std::fs::write(&cfg, yaml).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let app = appliance(dir, Some(&cfg), &addr);
    wait_ready(&addr);
    (app, addr)
}

pub fn wait_ready(addr: &str) {
    wait_for(30, "appliance /-/ready", || {
        get(addr, "/-/ready").filter(|(s, _)| *s == 200)
    });
}

/// The Debian node_exporter binary, or None (skip) when it is not installed outside CI.
pub fn node_exporter_bin() -> Option<&'static str> {
    let p = "/usr/bin/prometheus-node-exporter";
    if Path::new(p).exists() {
        return Some(p);
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("{p} missing under CI; the test command installs prometheus-node-exporter");
    }
    eprintln!("skipping: {p} not installed");
    None
}

/// Starts node_exporter on 127.0.0.1:`port` and waits until it answers.
pub fn node_exporter(port: u16) -> Option<Proc> {
    node_exporter_with(port, &[])
}

/// node_exporter with extra flags.
pub fn node_exporter_with(port: u16, flags: &[String]) -> Option<Proc> {
    let bin = node_exporter_bin()?;
    let child = Command::new(bin)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(flags)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node_exporter");
    let p = Proc(child);
    let addr = format!("127.0.0.1:{port}");
    wait_for(20, "node_exporter", || {
        get(&addr, "/metrics").filter(|(s, _)| *s == 200)
    });
    Some(p)
}

/// A static HTTP server on 127.0.0.1: each path maps to (content type, body). Runs until the
/// process exits; returns its address.
pub fn static_server(pages: Vec<(&'static str, &'static str, String)>) -> String {
    static_bytes_server(
        pages
            .into_iter()
            .map(|(p, ct, b)| (p, ct, b.into_bytes()))
            .collect(),
    )
}

/// As [`static_server`], with bodies of any bytes (a protobuf exposition).
pub fn static_bytes_server(pages: Vec<(&'static str, &'static str, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
            let page = pages.iter().find(|(p, _, _)| *p == path);
            let resp: Vec<u8> = match page {
                Some((_, ct, body)) => {
                    let ct_line = if ct.is_empty() {
                        String::new()
                    } else {
                        format!("Content-Type: {ct}\r\n")
                    };
                    let mut r = format!("HTTP/1.1 200 OK\r\n{ct_line}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
                    r.extend_from_slice(body);
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = s.write_all(&resp);
        }
    });
    addr
}

/// Debian's Prometheus (with promtool), or None (skip) when missing outside CI.
pub fn prometheus_installed() -> bool {
    for p in ["/usr/bin/prometheus", "/usr/bin/promtool"] {
        if !Path::new(p).exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{p} missing under CI; the test command installs prometheus"
            );
            eprintln!("skipping: {p} not installed");
            return false;
        }
    }
    true
}

/// Starts Debian's Prometheus with `config` and `storage` on `addr`, killed when dropped.
pub fn prometheus(config: &Path, storage: &Path, addr: &str) -> Proc {
    prometheus_with_args(config, storage, addr, &[])
}

/// As [`prometheus`], with more flags.
pub fn prometheus_with_args(config: &Path, storage: &Path, addr: &str, args: &[&str]) -> Proc {
    let child = Command::new("/usr/bin/prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", storage.display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--storage.tsdb.retention.time=100y")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    Proc(child)
}

/// Runs `cmd` and fails the test, showing its output, unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("start command");
    assert!(
        out.status.success(),
        "{:?} failed: {}{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// What a recording HTTP server has received: (path, body) per request.
pub type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// Reads one HTTP/1 request (head up to the blank line, then `Content-Length` bytes of body);
/// None when the peer closes first.
pub fn read_request(s: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let (start, len) = loop {
        let n = s.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (i + 4, len);
        }
    };
    while buf.len() < start + len {
        let n = s.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf.split_off(start);
    Some((buf, body))
}

/// An HTTP server on 127.0.0.1 that records every request's path and body and answers
/// `status` (standing in for Slack, a webhook, PagerDuty…). Returns its address.
pub fn recorder(status: u16) -> (String, Received) {
    let (addr, got, _) = switchable_recorder(status);
    (addr, got)
}

/// As [`recorder`], answering 200 with `body` as JSON (services whose answers are read:
/// Slack's Web API, Telegram, WeChat, Jira).
pub fn json_recorder(body: &'static str) -> (String, Received) {
    let (addr, got, _) = recorder_answering(200, body);
    (addr, got)
}

/// As [`recorder`], with the answer's status changeable while it runs (a receiver outage).
pub fn switchable_recorder(
    status: u16,
) -> (
    String,
    Received,
    std::sync::Arc<std::sync::atomic::AtomicU16>,
) {
    recorder_answering(status, "ok")
}

fn recorder_answering(
    status: u16,
    answer_body: &'static str,
) -> (
    String,
    Received,
    std::sync::Arc<std::sync::atomic::AtomicU16>,
) {
    let answer = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(status));
    let a = answer.clone();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let got: Received = Default::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let Some((head, body)) = read_request(&mut s) else {
                continue;
            };
            let head = String::from_utf8_lossy(&head).to_string();
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            let body = String::from_utf8_lossy(&body).to_string();
            g.lock().unwrap().push((path, body));
            let status = a.load(std::sync::atomic::Ordering::SeqCst);
            let resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer_body}",
                answer_body.len()
            );
            let _ = s.write_all(resp.as_bytes());
        }
    });
    (addr, got, answer)
}

/// Messages an SMTP stand-in received: (envelope from, recipients, data).
pub type Mails = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<String>, String)>>>;

/// A minimal SMTP server on 127.0.0.1 (no TLS, no auth) that records each message as
/// (envelope from, envelope recipients, data). Returns its address.
pub fn smtp_server() -> (String, Mails) {
    use std::io::BufRead;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let got: Mails = Default::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut w) = stream else { continue };
            let g = g.clone();
            std::thread::spawn(move || {
                let Ok(r) = w.try_clone() else { return };
                let mut r = std::io::BufReader::new(r);
                let _ = w.write_all(b"220 localhost ESMTP test\r\n");
                let (mut from, mut to, mut line) = (String::new(), Vec::new(), String::new());
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_string();
                    let upper = cmd.to_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250 localhost\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        from = cmd[10..].trim().trim_matches(['<', '>']).to_string();
                        b"250 ok\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        to.push(cmd[8..].trim().trim_matches(['<', '>']).to_string());
                        b"250 ok\r\n"
                    } else if upper == "DATA" {
                        let _ = w.write_all(b"354 go ahead\r\n");
                        let mut data = String::new();
                        loop {
                            line.clear();
                            if r.read_line(&mut line).unwrap_or(0) == 0 || line == ".\r\n" {
                                break;
                            }
                            data.push_str(&line);
                        }
                        g.lock()
                            .unwrap()
                            .push((from.clone(), std::mem::take(&mut to), data));
                        b"250 queued\r\n"
                    } else if upper == "QUIT" {
                        let _ = w.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = w.write_all(reply);
                }
            });
        }
    });
    (addr, got)
}

/// A metrics target on 127.0.0.1:`port` that can be stopped (its socket closed) and
/// started again on the same port.
pub struct Target {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    port: u16,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Target {
    /// Serves `body` (text format) on `port` until stopped.
    pub fn start(port: u16, body: &'static str) -> Target {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        // A blocking accept: `stop` wakes it with a connection of its own.
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s2.load(std::sync::atomic::Ordering::Acquire) {
                    break;
                }
                let Ok(mut s) = conn else { continue };
                let mut b = [0u8; 2048];
                let _ = s.read(&mut b);
                let _ = s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes());
            }
        });
        Target {
            stop,
            port,
            thread: Some(thread),
        }
    }

    /// Closes the socket (the target is then down).
    pub fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether a Docker engine answers; outside CI a missing engine skips (says so), under CI
/// it fails (the test command starts one).
pub fn docker_engine() -> bool {
    let ok = Command::new("docker")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    available(ok, "a Docker engine")
}

/// The local test image: busybox-static imported into Docker (no registry is reachable).
pub fn busybox_image() -> &'static str {
    const IMAGE: &str = "appliance-test-busybox:latest";
    let have = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !have {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("root/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static at /bin/busybox");
        for c in ["sh", "sleep", "yes", "cat", "true", "false", "dd", "head"] {
            std::os::unix::fs::symlink("busybox", bin.join(c)).unwrap();
        }
        let tar = dir.path().join("image.tar");
        run_ok(
            Command::new("tar")
                .arg("-C")
                .arg(dir.path().join("root"))
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        );
        run_ok(Command::new("docker").arg("import").arg(&tar).arg(IMAGE));
    }
    IMAGE
}

/// Containers removed (`docker rm -f`) when dropped.
pub struct Containers(pub Vec<String>);

impl Containers {
    /// `docker run -d --name <name> <args...>`; returns the container's id.
    pub fn run(&mut self, name: &str, args: &[&str]) -> String {
        let out = run_ok(
            Command::new("docker")
                .args(["run", "-d", "--name", name])
                .args(args),
        );
        self.0.push(name.to_string());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("docker")
                .args(["rm", "-f", n])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Whether the local PostgreSQL (127.0.0.1:5432, trust auth) answers; outside CI a missing
/// server skips (says so), under CI it fails.
pub fn local_postgres() -> bool {
    available(
        std::net::TcpStream::connect("127.0.0.1:5432").is_ok(),
        "PostgreSQL on 127.0.0.1:5432",
    )
}

/// `psql` against the local server as `postgres`; fails the test unless it succeeds.
pub fn psql(sql: &str) {
    run_ok(Command::new("psql").args([
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-v",
        "ON_ERROR_STOP=1",
        "-qc",
        sql,
    ]));
}

/// A throwaway PostgreSQL server (initdb in a temporary directory, run as the `postgres` user
/// on its own port) that a test may stop; stopped and removed when dropped.
pub struct TempPostgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
}

impl TempPostgres {
    /// None (after saying why) where the server binaries or the `postgres` user are missing.
    pub fn start() -> Option<TempPostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists());
        let Some(bin) = bin else {
            eprintln!("skipping: no PostgreSQL server binaries");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        run_ok(Command::new("chown").arg("postgres").arg(dir.path()));
        let data = dir.path().join("data");
        run_ok(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin.join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "-D"])
                .arg(&data),
        );
        let port = free_port();
        let t = TempPostgres { port, dir, bin };
        t.ctl("start");
        Some(t)
    }

    /// `pg_ctl start|stop` (waits until done).
    pub fn ctl(&self, what: &str) {
        let data = self.dir.path().join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-w", "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-o", &opts]);
        if what == "stop" {
            c.args(["-m", "immediate"]);
        }
        c.arg(what);
        run_ok(&mut c);
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A page's families: name → (type, HELP, the label-name sets its series use (less
/// `quantile`/`le`), samples: series text → value text). `_sum`/`_count`/`_bucket` samples
/// count under their summary or histogram.
pub type Families = std::collections::BTreeMap<
    String,
    (
        String,
        String,
        std::collections::BTreeSet<Vec<String>>,
        std::collections::BTreeMap<String, String>,
    ),
>;

/// Parses a text exposition page into [`Families`], for side-by-side comparisons.
pub fn families(page: &str) -> Families {
    let mut out: Families = Default::default();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (n, h) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(n.to_string()).or_default().1 = h.to_string();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (n, t) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(n.to_string()).or_default().0 = t.to_string();
        } else if !line.starts_with('#') && !line.is_empty() {
            let (series, v) = line.rsplit_once(' ').unwrap();
            let (mut name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            for suffix in ["_sum", "_count", "_bucket"] {
                if let Some(base) = name.strip_suffix(suffix) {
                    if out
                        .get(base)
                        .is_some_and(|f| f.0 == "summary" || f.0 == "histogram")
                    {
                        name = base;
                    }
                }
            }
            let mut names: Vec<String> = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| p.split('=').next().unwrap().to_string())
                .filter(|n| n != "quantile" && n != "le")
                .collect();
            names.sort();
            let e = out.entry(name.to_string()).or_default();
            e.2.insert(names);
            e.3.insert(series.to_string(), v.to_string());
        }
    }
    out
}

/// The value of the first series an instant query at `addr` returns.
pub fn query_value(addr: &str, expr: &str) -> Option<f64> {
    let v = get_json(
        addr,
        &format!(
            "/api/v1/query?query={}",
            form_urlencoded::byte_serialize(expr.as_bytes()).collect::<String>()
        ),
    );
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// `ok`, or (after saying why) false outside CI; under CI (`CI=true`) a missing `what` fails,
/// because the test command installs and starts what the tests need.
pub fn available(ok: bool, what: &str) -> bool {
    if !ok {
        if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
            panic!("{what} missing under CI; the test command provides it");
        }
        eprintln!("skipping: {what} not available");
    }
    ok
}

/// Starts `cmd` (which prints its port on its first stdout line) and returns it with
/// `127.0.0.1:<port>`.
pub fn spawn_with_port(cmd: &mut Command) -> (Proc, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start server");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("port line");
    (Proc(child), format!("127.0.0.1:{}", line.trim()))
}

/// Starts a Prometheus exporter `cmd` on a free 127.0.0.1 port (`--web.listen-address`) and
/// waits until its `/metrics` contains `ready`.
pub fn exporter(cmd: &mut Command, ready: &str) -> (Proc, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = cmd
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start exporter");
    let p = Proc(child);
    wait_for(20, ready, || {
        get(&addr, "/metrics").filter(|(s, b)| *s == 200 && b.contains(ready))
    });
    (p, addr)
}

/// The titles of the six dashboards in `dashboards/`.
pub const DASHBOARD_TITLES: [&str; 6] = [
    "System Overview",
    "Service Health",
    "API Performance",
    "Database",
    "Celery",
    "Containers",
];

/// A reverse proxy on 127.0.0.1 that forwards `<prefix>/...` to `upstream` with the prefix cut
/// (as a proxy configured with `proxy_pass http://upstream/;` does); one request per
/// connection. Returns its address.
pub fn stripping_proxy(prefix: &'static str, upstream: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                // The head, then as much body as Content-Length says.
                let head_end = loop {
                    let Ok(n) = client.read(&mut chunk) else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let Ok(n) = client.read(&mut chunk) else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let mut lines = head.split("\r\n");
                let first = lines.next().unwrap_or_default();
                let mut parts = first.splitn(3, ' ');
                let (method, path, version) = (
                    parts.next().unwrap_or("GET"),
                    parts.next().unwrap_or("/"),
                    parts.next().unwrap_or("HTTP/1.1"),
                );
                let Some(rest) = path.strip_prefix(prefix) else {
                    let _ = client.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return;
                };
                let rest = if rest.is_empty() { "/" } else { rest };
                let mut out = format!("{method} {rest} {version}\r\n");
                for l in lines.filter(|l| !l.is_empty()) {
                    let k = l.split(':').next().unwrap_or("").to_ascii_lowercase();
                    if k != "connection" && k != "keep-alive" {
                        out.push_str(l);
                        out.push_str("\r\n");
                    }
                }
                out.push_str("Connection: close\r\n\r\n");
                let Ok(mut up) = TcpStream::connect(&upstream) else {
                    return;
                };
                let _ = up.write_all(out.as_bytes());
                let _ = up.write_all(&buf[head_end..]);
                let mut resp = Vec::new();
                let _ = up.read_to_end(&mut resp);
                let _ = client.write_all(&resp);
            });
        }
    });
    addr
}

/// Runs `cmd`; whether it succeeded, and its stdout and stderr together.
pub fn outcome(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("start command");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Runs the appliance binary with `args` in `dir`; returns its exit code and its stdout and
/// stderr together.
pub fn run_cli(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_appliance"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A throwaway certificate authority made with `openssl` in `dir`, for the TLS tests.
pub struct Pki {
    /// The CA certificate (PEM).
    pub ca: String,
    ca_key: String,
    dir: std::path::PathBuf,
}

impl Pki {
    /// A new CA, or None (skip) where openssl is missing outside CI.
    pub fn new(dir: &Path) -> Option<Pki> {
        let p = |n: &str| dir.join(n).display().to_string();
        let (ca, ca_key) = (p("ca.pem"), p("ca.key"));
        let ok = openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
        ]);
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "openssl is needed for the TLS tests"
            );
            eprintln!("skipping: openssl not available");
            return None;
        }
        Some(Pki {
            ca,
            ca_key,
            dir: dir.to_path_buf(),
        })
    }

    /// Issues `<name>.pem` and `<name>.key` for 127.0.0.1 with common name `cn`; returns
    /// their paths.
    pub fn issue(&self, name: &str, cn: &str) -> (String, String) {
        let p = |n: &str| self.dir.join(n).display().to_string();
        let (cert, key, csr, ext) = (
            p(&format!("{name}.pem")),
            p(&format!("{name}.key")),
            p(&format!("{name}.csr")),
            p(&format!("{name}.cnf")),
        );
        std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\n").unwrap();
        let subj = format!("/CN={cn}");
        assert!(openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", &subj, "-keyout", &key, "-out", &csr,
        ]));
        assert!(openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &self.ca,
            "-CAkey",
            &self.ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ]));
        (cert, key)
    }
}

fn openssl(args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A private `redis-server` on 127.0.0.1:`port` (nothing saved), ready when returned.
pub fn redis_server(port: u16) -> Proc {
    let p = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Proc)
        .expect("redis-server");
    wait_for(10, "redis-server", || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    p
}

/// A Celery worker (`celery -A tasks worker -E`, `tasks.py` in `dir`, broker in `$BROKER`) in
/// its own process group, killed (SIGKILL, so no offline event) when dropped.
pub struct CeleryWorker(pub Child);

impl CeleryWorker {
    /// Starts a worker called `name` with `concurrency` processes.
    pub fn start(dir: &Path, broker: &str, name: &str, concurrency: u32) -> CeleryWorker {
        use std::os::unix::process::CommandExt;
        CeleryWorker(
            Command::new("celery")
                .args(["-A", "tasks", "worker", "-E", "-c"])
                .arg(concurrency.to_string())
                .args(["-n", name, "--loglevel=WARNING"])
                .current_dir(dir)
                .env("BROKER", broker)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("start celery worker"),
        )
    }

    /// Kills the worker and its pool (the whole group).
    pub fn kill(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for CeleryWorker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Percent-encodes a query parameter (every byte but ASCII letters and digits).
pub fn enc(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Waits up to `secs` for a failed delivery in `/api/v1/notifications`.
pub fn wait_failed_delivery(addr: &str, secs: u64) {
    wait_for(secs, "a failed delivery in the history", || {
        let v = get_json(addr, "/api/v1/notifications");
        v["data"]
            .as_array()?
            .iter()
            .any(|e| e["success"] == false)
            .then_some(())
    });
}

/// An instant query's float answers as (labels JSON, value), sorted by labels; at `time`
/// (seconds) or now.
pub fn instant_values(addr: &str, expr: &str, time: Option<f64>) -> Vec<(String, f64)> {
    let at = time.map(|t| format!("&time={t}")).unwrap_or_default();
    let v = get_json(addr, &format!("/api/v1/query?query={}{at}", enc(expr)));
    let mut out: Vec<(String, f64)> = v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{expr}: {v}"))
        .iter()
        .map(|s| {
            let f = s["value"][1].as_str().unwrap().parse::<f64>().unwrap();
            (s["metric"].to_string(), f)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `histogram_quantile(q, <hist>)` asked of Prometheus 2.42 (`paddr`) and the appliance
/// (`aaddr`), at `time` (seconds) or now. 2.42 interpolates linearly inside a native bucket,
/// Prometheus 3 and the appliance exponentially; so both answers must lie in the same bucket
/// (read from the appliance's own answer for `hist`) at the same position, linear on one side
/// and logarithmic on the other.
pub fn assert_same_native_quantile(
    paddr: &str,
    aaddr: &str,
    hist: &str,
    q: f64,
    time: Option<f64>,
) {
    let at = time.map(|t| format!("&time={t}")).unwrap_or_default();
    let values = |addr: &str, expr: &str| instant_values(addr, expr, time);
    let h = get_json(aaddr, &format!("/api/v1/query?query={}{at}", enc(hist)));
    let mut buckets: std::collections::HashMap<String, Vec<(f64, f64)>> = Default::default();
    for s in h["data"]["result"].as_array().unwrap() {
        let mut m = s["metric"].as_object().unwrap().clone();
        m.remove("__name__");
        let bs = s["histogram"][1]["buckets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                let f = |i: usize| b[i].as_str().unwrap().parse::<f64>().unwrap();
                (f(1), f(2))
            })
            .collect();
        buckets.insert(serde_json::Value::Object(m).to_string(), bs);
    }
    let expr = format!("histogram_quantile({q}, {hist})");
    let (p, a) = (values(paddr, &expr), values(aaddr, &expr));
    assert_eq!(a.len(), p.len(), "{expr}: {a:?} vs {p:?}");
    assert!(!a.is_empty(), "{expr}");
    for ((al, af), (pl, pf)) in a.iter().zip(&p) {
        assert_eq!(al, pl, "{expr}");
        if pf.is_nan() {
            assert!(af.is_nan(), "{expr} {al}: {af}");
            continue;
        }
        let (lo, hi) = buckets[al]
            .iter()
            .copied()
            .find(|(lo, hi)| lo <= pf && pf <= hi)
            .unwrap_or_else(|| panic!("{expr} {al}: {pf} in no bucket"));
        assert!(
            lo <= *af && af <= &hi,
            "{expr} {al}: {af} outside ({lo}, {hi}]"
        );
        if lo == hi {
            assert_eq!(af, pf, "{expr} {al}");
            continue;
        }
        let linear = (pf - lo) / (hi - lo);
        let logarithmic = if lo <= 0.0 && hi >= 0.0 {
            (af - lo) / (hi - lo)
        } else if lo > 0.0 {
            (af / lo).ln() / (hi / lo).ln()
        } else {
            1.0 - (af / hi).ln() / (lo / hi).ln()
        };
        assert!(
            (linear - logarithmic).abs() < 1e-9,
            "{expr} {al}: prometheus {pf} at {linear} of ({lo}, {hi}], appliance {af} at {logarithmic}"
        );
    }
}
