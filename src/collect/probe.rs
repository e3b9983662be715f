//! Probes, as blackbox_exporter runs them: HTTP(S) (status, latency by phase, TLS certificate
//! expiry, optional body regex, redirects) and TCP connect, each target its own `instance` of
//! job `blackbox`, each with its own interval and timeout, producing blackbox_exporter's
//! `probe_*` families. This is how the default rules see "service down" for services that
//! expose no metrics.
//!
//! The HTTP client is written out here (request, head, chunked or sized body) because the
//! phase timings (`resolve`, `connect`, `tls`, `processing`, `transfer`) are not observable
//! through reqwest. It sends GET (or the configured method) and reads; nothing else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{CollectError, CollectFuture, Collector, Page, PageBuilder};
use crate::model::exposition::Format;
use crate::model::time::Duration;

/// `probes:` entries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// `https://host:port/path` (HTTP probe) or `host:port` with `module: tcp`.
    pub target: crate::model::SecretUrl,
    /// `http` (default for URLs) or `tcp`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub module: String,
    /// How often (default: the global scrape interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// How long one probe may take (default 5s, at most the interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// HTTP method (default GET).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// Accepted status codes (default: any 2xx).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub valid_status_codes: Vec<u16>,
    /// The body must match this regex (blackbox's `fail_if_body_not_matches_regexp`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body_regex: String,
    /// Follow redirects (default true, at most 10).
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    /// TLS settings for HTTPS (and TCP with `tls: true`).
    #[serde(default)]
    pub tls_config: ProbeTls,
    /// Speak TLS over the TCP connection.
    #[serde(default)]
    pub tls: bool,
}

fn yes() -> bool {
    true
}

/// `tls_config` of a probe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeTls {
    /// Accept any certificate (still reporting its expiry).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Extra CA certificates (PEM).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_file: String,
}

impl ProbeConfig {
    /// Checks the probe's settings; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        match self.kind() {
            Kind::Http => {
                url::Url::parse(self.target.expose())
                    .map_err(|e| format!("target {:?}: {e}", self.target.redacted()))?;
            }
            Kind::Tcp => {
                if self.target.expose().rsplit_once(':').is_none() {
                    return Err(format!(
                        "target {:?}: expected host:port",
                        self.target.redacted()
                    ));
                }
            }
        }
        if !self.body_regex.is_empty() {
            regex::Regex::new(&self.body_regex).map_err(|e| {
                format!("body_regex: {}", e.to_string().lines().last().unwrap_or(""))
            })?;
        }
        if !matches!(self.module.as_str(), "" | "http" | "tcp") {
            return Err(format!("module {:?}: expected http or tcp", self.module));
        }
        Ok(())
    }

    fn kind(&self) -> Kind {
        if self.module == "tcp" || (self.module.is_empty() && !self.target.expose().contains("://"))
        {
            Kind::Tcp
        } else {
            Kind::Http
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Http,
    Tcp,
}

/// Why a probe failed (logged; the probe reports `probe_success 0`).
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

fn other(s: impl Into<String>) -> ProbeError {
    ProbeError::Other(s.into())
}

/// What one probe measured.
#[derive(Default)]
struct Outcome {
    success: bool,
    duration: f64,
    dns: f64,
    ipv6: bool,
    status: f64,
    phases: [f64; 5],
    content_length: f64,
    body_length: f64,
    redirects: f64,
    ssl: bool,
    http_version: f64,
    cert_expiry: Option<f64>,
    tls_version: Option<String>,
    regex_failed: bool,
    kind_http: bool,
}

const PHASES: [&str; 5] = ["resolve", "connect", "tls", "processing", "transfer"];

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

fn tls_connector(t: &ProbeTls) -> Result<tokio_rustls::TlsConnector, ProbeError> {
    use crate::model::tls::{native_roots, provider, NoVerify};
    let mut roots = native_roots();
    if !t.ca_file.is_empty() {
        use rustls::pki_types::pem::PemObject;
        let pem =
            std::fs::read(&t.ca_file).map_err(|e| other(format!("ca_file {}: {e}", t.ca_file)))?;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem).flatten() {
            let _ = roots.add(c);
        }
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| other(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if t.insecure_skip_verify {
        cfg.dangerous()
            .set_certificate_verifier(Arc::new(NoVerify(provider())));
    }
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

/// The earliest `notAfter` (Unix seconds) of the peer's chain.
fn earliest_expiry(certs: &[rustls::pki_types::CertificateDer<'_>]) -> Option<f64> {
    use x509_cert::der::Decode;
    certs
        .iter()
        .filter_map(|c| x509_cert::Certificate::from_der(c.as_ref()).ok())
        .map(|c| {
            c.tbs_certificate
                .validity
                .not_after
                .to_unix_duration()
                .as_secs() as f64
        })
        .reduce(f64::min)
}

async fn connect(
    host: &str,
    port: u16,
    tls: Option<&tokio_rustls::TlsConnector>,
    out: &mut Outcome,
) -> Result<Box<dyn Stream>, ProbeError> {
    let t0 = Instant::now();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| other(format!("no address for {host}")))?;
    let dns = t0.elapsed().as_secs_f64();
    out.dns += dns;
    out.phases[0] += dns;
    out.ipv6 = addr.is_ipv6();
    let t1 = Instant::now();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    out.phases[1] += t1.elapsed().as_secs_f64();
    let Some(tls) = tls else {
        return Ok(Box::new(tcp));
    };
    let t2 = Instant::now();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| other(format!("server name {host}: {e}")))?;
    let s = tls.connect(name, tcp).await?;
    out.phases[2] += t2.elapsed().as_secs_f64();
    let (_, conn) = s.get_ref();
    out.cert_expiry = conn.peer_certificates().and_then(earliest_expiry);
    out.tls_version = conn.protocol_version().map(|v| match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".to_string(),
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".to_string(),
        other => format!("{other:?}"),
    });
    Ok(Box::new(s))
}

/// Reads a response: head, then the body (sized, chunked or to EOF), at most 10 MiB.
async fn read_response(
    s: &mut Box<dyn Stream>,
    out: &mut Outcome,
    t_sent: Instant,
) -> Result<(u16, HashMap<String, String>, Vec<u8>), ProbeError> {
    const MAX: usize = 10 << 20;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(other("connection closed before the response head"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX {
            return Err(other("response head too large"));
        }
    };
    out.phases[3] += t_sent.elapsed().as_secs_f64();
    let t_body = Instant::now();
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    out.http_version = match version {
        "HTTP/1.0" => 1.0,
        "HTTP/1.1" => 1.1,
        _ => 0.0,
    };
    let status: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| other(format!("bad status line {status_line:?}")))?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[head_end..].to_vec();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let length: Option<usize> = headers.get("content-length").and_then(|l| l.parse().ok());
    loop {
        if let Some(l) = length {
            if body.len() >= l {
                body.truncate(l);
                break;
            }
        }
        if chunked && body.windows(5).any(|w| w == b"0\r\n\r\n") {
            break;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
        if body.len() > MAX {
            break;
        }
    }
    if chunked {
        body = dechunk(&body);
    }
    out.phases[4] += t_body.elapsed().as_secs_f64();
    out.content_length = length.map(|l| l as f64).unwrap_or(-1.0);
    out.body_length = body.len() as f64;
    Ok((status, headers, body))
}

/// Removes chunked transfer framing.
fn dechunk(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let Some(eol) = b[i..].windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let size_text = String::from_utf8_lossy(&b[i..i + eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        i += eol + 2;
        if size == 0 || i + size > b.len() {
            break;
        }
        out.extend_from_slice(&b[i..i + size]);
        i += size + 2;
    }
    out
}

async fn probe_http(p: &ProbeConfig, out: &mut Outcome) -> Result<(), ProbeError> {
    out.kind_http = true;
    let mut url = url::Url::parse(p.target.expose()).map_err(|e| other(e.to_string()))?;
    let tls = tls_connector(&p.tls_config)?;
    let method = if p.method.is_empty() {
        "GET"
    } else {
        &p.method
    };
    for hop in 0..=10 {
        let host = url
            .host_str()
            .ok_or_else(|| other("URL without host"))?
            .to_string();
        let https = url.scheme() == "https";
        let port = url.port_or_known_default().unwrap_or(80);
        let mut s = connect(&host, port, https.then_some(&tls), out).await?;
        out.ssl = https;
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let host_header = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: appliance-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        let t_sent = Instant::now();
        s.write_all(req.as_bytes()).await?;
        let (status, headers, body) = read_response(&mut s, out, t_sent).await?;
        out.status = f64::from(status);
        if p.follow_redirects && (300..400).contains(&status) {
            if let Some(loc) = headers.get("location") {
                if hop == 10 {
                    return Err(other("too many redirects"));
                }
                url = url
                    .join(loc)
                    .map_err(|e| other(format!("redirect {loc:?}: {e}")))?;
                out.redirects += 1.0;
                continue;
            }
        }
        let ok_status = if p.valid_status_codes.is_empty() {
            (200..300).contains(&status)
        } else {
            p.valid_status_codes.contains(&status)
        };
        if !ok_status {
            return Err(other(format!("status {status} not accepted")));
        }
        if !p.body_regex.is_empty() {
            let re = regex::Regex::new(&p.body_regex).map_err(|e| other(e.to_string()))?;
            if !re.is_match(&String::from_utf8_lossy(&body)) {
                out.regex_failed = true;
                return Err(other("body does not match body_regex"));
            }
        }
        return Ok(());
    }
    Err(other("too many redirects"))
}

async fn probe_tcp(p: &ProbeConfig, out: &mut Outcome) -> Result<(), ProbeError> {
    let (host, port) = p
        .target
        .expose()
        .rsplit_once(':')
        .ok_or_else(|| other("expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| other(format!("bad port {port:?}")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tls = if p.tls {
        Some(tls_connector(&p.tls_config)?)
    } else {
        None
    };
    connect(host, port, tls.as_ref(), out).await?;
    Ok(())
}

async fn run(p: &ProbeConfig, timeout: StdDuration) -> Outcome {
    let t0 = Instant::now();
    let mut out = Outcome::default();
    let r = tokio::time::timeout(timeout, async {
        match p.kind() {
            Kind::Http => probe_http(p, &mut out).await,
            Kind::Tcp => probe_tcp(p, &mut out).await,
        }
    })
    .await;
    match r {
        Ok(Ok(())) => out.success = true,
        Ok(Err(e)) => tracing::debug!(target = %p.target, error = %e, "probe failed"),
        Err(_) => tracing::debug!(target = %p.target, "probe timed out"),
    }
    out.kind_http = p.kind() == Kind::Http;
    out.duration = t0.elapsed().as_secs_f64();
    out
}

fn render(o: &Outcome) -> String {
    let mut b = PageBuilder::default();
    let bit = |x: bool| if x { 1.0 } else { 0.0 };
    b.add(
        "probe_success",
        "Displays whether or not the probe was a success",
        "gauge",
        &[],
        bit(o.success),
    );
    b.add(
        "probe_duration_seconds",
        "Returns how long the probe took to complete in seconds",
        "gauge",
        &[],
        o.duration,
    );
    b.add(
        "probe_dns_lookup_time_seconds",
        "Returns the time taken for probe dns lookup in seconds",
        "gauge",
        &[],
        o.dns,
    );
    b.add(
        "probe_ip_protocol",
        "Specifies whether probe ip protocol is IP4 or IP6",
        "gauge",
        &[],
        if o.ipv6 { 6.0 } else { 4.0 },
    );
    if o.kind_http {
        for (i, ph) in PHASES.iter().enumerate() {
            b.add(
                "probe_http_duration_seconds",
                "Duration of http request by phase, summed over all redirects",
                "gauge",
                &[("phase", ph)],
                o.phases[i],
            );
        }
        b.add(
            "probe_http_status_code",
            "Response HTTP status code",
            "gauge",
            &[],
            o.status,
        );
        b.add(
            "probe_http_content_length",
            "Length of http content response",
            "gauge",
            &[],
            o.content_length,
        );
        b.add(
            "probe_http_uncompressed_body_length",
            "Length of uncompressed response body",
            "gauge",
            &[],
            o.body_length,
        );
        b.add(
            "probe_http_redirects",
            "The number of redirects",
            "gauge",
            &[],
            o.redirects,
        );
        b.add(
            "probe_http_ssl",
            "Indicates if SSL was used for the final redirect",
            "gauge",
            &[],
            bit(o.ssl),
        );
        b.add(
            "probe_http_version",
            "Returns the version of HTTP of the probe response",
            "gauge",
            &[],
            o.http_version,
        );
        b.add(
            "probe_failed_due_to_regex",
            "Indicates if probe failed due to regex",
            "gauge",
            &[],
            bit(o.regex_failed),
        );
    }
    if let Some(t) = o.cert_expiry {
        b.add(
            "probe_ssl_earliest_cert_expiry",
            "Returns last SSL chain expiry in unixtime",
            "gauge",
            &[],
            t,
        );
    }
    if let Some(v) = &o.tls_version {
        b.add(
            "probe_tls_version_info",
            "Returns the TLS version used or NaN when unknown",
            "gauge",
            &[("version", v)],
            1.0,
        );
    }
    b.render()
}

/// The probes collector (`job="blackbox"`, one target per probe; `/metrics/blackbox?target=`).
pub struct ProbeCollector {
    probes: Vec<(ProbeConfig, StdDuration, StdDuration)>,
    /// The last result per target and when it was taken: a probe with a longer interval
    /// than the job's answers from here until it is due.
    last: Mutex<HashMap<String, (Instant, String)>>,
}

impl ProbeCollector {
    /// Probes `probes`; `default_interval` is the global scrape interval.
    pub fn new(probes: &[ProbeConfig], default_interval: StdDuration) -> Self {
        ProbeCollector {
            probes: probes
                .iter()
                .map(|p| {
                    let interval = p
                        .interval
                        .map(|d| StdDuration::from_millis(d.as_millis().max(1) as u64))
                        .unwrap_or(default_interval);
                    let timeout = p
                        .timeout
                        .map(|d| StdDuration::from_millis(d.as_millis().max(1) as u64))
                        .unwrap_or(StdDuration::from_secs(5))
                        .min(interval);
                    (p.clone(), interval, timeout)
                })
                .collect(),
            last: Mutex::new(HashMap::new()),
        }
    }

    /// The shortest probe interval: the job's scrape interval.
    pub fn interval(&self) -> Option<StdDuration> {
        self.probes.iter().map(|p| p.1).min()
    }
}

impl Collector for ProbeCollector {
    fn name(&self) -> &'static str {
        "blackbox"
    }

    fn targets(&self) -> Vec<String> {
        // The target's identity (its `instance` label, the `?target=` of
        // `/metrics/blackbox`) carries no credentials: labels end up in every series, the
        // API and the WAL.
        self.probes
            .iter()
            .map(|p| p.0.target.without_userinfo())
            .collect()
    }

    fn collect(&self) -> CollectFuture<'_> {
        Box::pin(async move {
            Err(CollectError::Source(
                "the blackbox collector probes one target: ask for ?target=<target>".into(),
            ))
        })
    }

    fn collect_target<'a>(&'a self, target: &'a str) -> CollectFuture<'a> {
        Box::pin(async move {
            let Some((p, interval, timeout)) = self
                .probes
                .iter()
                .find(|p| p.0.target.without_userinfo() == target)
            else {
                return Err(CollectError::Source(format!(
                    "no probe for target {target:?}"
                )));
            };
            if let Some((at, page)) = self.last.lock().get(target) {
                // Due again a little early, so jitter never skips a round.
                if at.elapsed() + StdDuration::from_millis(200) < *interval {
                    return Ok(Page {
                        body: page.clone().into_bytes(),
                        format: Format::PrometheusText,
                    });
                }
            }
            let page = render(&run(p, *timeout).await);
            self.last
                .lock()
                .insert(target.to_string(), (Instant::now(), page.clone()));
            Ok(Page {
                body: page.into_bytes(),
                format: Format::PrometheusText,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_unframed() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"),
            b"hello world"
        );
    }

    fn probe(target: &str, module: &str) -> ProbeConfig {
        ProbeConfig {
            target: target.into(),
            module: module.into(),
            interval: None,
            timeout: None,
            method: String::new(),
            valid_status_codes: Vec::new(),
            body_regex: String::new(),
            follow_redirects: true,
            tls_config: ProbeTls::default(),
            tls: false,
        }
    }

    #[test]
    fn probe_settings_are_checked() {
        let p = probe;
        assert!(p("https://example.com/health", "").validate().is_ok());
        assert!(p("127.0.0.1:5432", "").validate().is_ok());
        assert!(p("127.0.0.1:5432", "").kind() == Kind::Tcp);
        assert!(p("nohostport", "tcp").validate().is_err());
        assert!(p("http://x", "icmp").validate().is_err());
        let mut r = p("http://x", "");
        r.body_regex = "(".into();
        assert!(r.validate().unwrap_err().starts_with("body_regex"));
    }

    #[tokio::test]
    async fn a_closed_port_fails() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let p = probe(&format!("127.0.0.1:{port}"), "tcp");
        let o = run(&p, StdDuration::from_secs(2)).await;
        assert!(!o.success);
        assert!(render(&o).contains("probe_success 0\n"));
    }
}
