//! The accept loop in front of the router: a cap on open connections, timeouts for slow and
//! idle clients (slowloris), optional TLS (`web.tls_config`, certificate and key re-read when
//! their files change, optional client certificates), and graceful shutdown.
//!
//! Owns connections only; what a request may do is the router's business.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use tower_service::Service;

/// Longest a client may take to send a request's headers, or to start a TLS handshake and
/// finish it; also how long a kept-alive connection may sit idle.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client may take to send a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Open connections at most; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 1024;

/// `web.tls_config`, as in Prometheus's web configuration file (`tls_server_config`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// The server's certificate chain (PEM). Re-read when the file changes.
    pub cert_file: String,
    /// Its private key (PEM). Re-read when the file changes.
    pub key_file: String,
    /// CAs that client certificates must chain to (PEM).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_ca_file: String,
    /// `NoClientCert` (default), `VerifyClientCertIfGiven` or `RequireAndVerifyClientCert`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_auth_type: String,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A certificate, key or CA file is unreadable or invalid.
    #[error("web.tls_config.{field} {path:?}: {msg}")]
    File {
        /// The config field.
        field: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        msg: String,
    },
    /// A setting is invalid.
    #[error("web.tls_config: {0}")]
    Invalid(String),
}

impl TlsServerConfig {
    /// Checks the settings and loads every file once, so `check config` and a reload refuse
    /// what serving would.
    pub fn validate(&self) -> Result<(), ServeError> {
        self.server_config().map(|_| ())
    }

    fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, ServeError> {
        if self.cert_file.is_empty() || self.key_file.is_empty() {
            return Err(ServeError::Invalid(
                "cert_file and key_file are both required".into(),
            ));
        }
        let resolver = Arc::new(ReloadingCert::new(&self.cert_file, &self.key_file)?);
        let builder = rustls::ServerConfig::builder_with_provider(crate::model::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ServeError::Invalid(e.to_string()))?;
        let kind = if self.client_auth_type.is_empty() {
            "NoClientCert"
        } else {
            self.client_auth_type.as_str()
        };
        let builder = match kind {
            "NoClientCert" => builder.with_no_client_auth(),
            "VerifyClientCertIfGiven" | "RequireAndVerifyClientCert" => {
                if self.client_ca_file.is_empty() {
                    return Err(ServeError::Invalid(format!(
                        "client_auth_type {kind} needs client_ca_file"
                    )));
                }
                let mut roots = rustls::RootCertStore::empty();
                for c in read_certs("client_ca_file", &self.client_ca_file)? {
                    roots.add(c).map_err(|e| ServeError::File {
                        field: "client_ca_file",
                        path: self.client_ca_file.clone(),
                        msg: e.to_string(),
                    })?;
                }
                let v = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    crate::model::tls::provider(),
                );
                let v = if kind == "VerifyClientCertIfGiven" {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                builder.with_client_cert_verifier(
                    v.build().map_err(|e| ServeError::Invalid(e.to_string()))?,
                )
            }
            other => {
                return Err(ServeError::Invalid(format!(
                    "client_auth_type {other:?}: expected NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                )))
            }
        };
        let mut cfg = builder.with_cert_resolver(resolver);
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

fn read_certs(
    field: &'static str,
    path: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ServeError> {
    use rustls::pki_types::pem::PemObject;
    let err = |msg: String| ServeError::File {
        field,
        path: path.to_string(),
        msg,
    };
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(certs)
}

fn load_key(cert_file: &str, key_file: &str) -> Result<Arc<CertifiedKey>, ServeError> {
    use rustls::pki_types::pem::PemObject;
    let chain = read_certs("cert_file", cert_file)?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        ServeError::File {
            field: "key_file",
            path: key_file.to_string(),
            msg: e.to_string(),
        }
    })?;
    let signing = crate::model::tls::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| ServeError::File {
            field: "key_file",
            path: key_file.to_string(),
            msg: e.to_string(),
        })?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| ServeError::File {
        field: "key_file",
        path: key_file.to_string(),
        msg: format!("does not match cert_file: {e}"),
    })?;
    Ok(Arc::new(ck))
}

/// The certificate and key, re-read when either file's modification time changes (checked
/// at most once a second, at a handshake). A change that does not load keeps the old pair.
#[derive(Debug)]
struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    state: Mutex<CertState>,
}

#[derive(Debug)]
struct CertState {
    key: Arc<CertifiedKey>,
    stamps: (Option<SystemTime>, Option<SystemTime>),
    checked: std::time::Instant,
}

fn mtime(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl ReloadingCert {
    fn new(cert_file: &str, key_file: &str) -> Result<Self, ServeError> {
        let (c, k) = (PathBuf::from(cert_file), PathBuf::from(key_file));
        let stamps = (mtime(&c), mtime(&k));
        Ok(ReloadingCert {
            state: Mutex::new(CertState {
                key: load_key(cert_file, key_file)?,
                stamps,
                checked: std::time::Instant::now(),
            }),
            cert_file: c,
            key_file: k,
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut st = self.state.lock();
        if st.checked.elapsed() >= Duration::from_secs(1) {
            st.checked = std::time::Instant::now();
            let stamps = (mtime(&self.cert_file), mtime(&self.key_file));
            if stamps != st.stamps {
                match load_key(
                    &self.cert_file.to_string_lossy(),
                    &self.key_file.to_string_lossy(),
                ) {
                    Ok(k) => {
                        st.key = k;
                        st.stamps = stamps;
                        tracing::info!(cert_file = %self.cert_file.display(), "TLS certificate reloaded");
                    }
                    // Files are often replaced one at a time: try again at the next check.
                    Err(e) => {
                        crate::failure!(warn, "http", "tls_reload", error = %e, "TLS certificate not reloaded; keeping the old one")
                    }
                }
            }
        }
        Some(st.key.clone())
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets open requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<&TlsServerConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let acceptor = match tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(t.server_config()?)),
        None => None,
    };
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        BODY_TIMEOUT,
    ));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    // No HTTP/2 pings from our side: they would count as traffic and keep an idle
    // connection open past the idle timeout.
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    crate::failure!(warn, "http", "accept", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            router: router.clone(),
            builder: builder.clone(),
            peer,
            stop: stop_rx.clone(),
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                None => conn.run(stream).await,
                Some(a) => {
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(HEADER_TIMEOUT, a.accept(stream)).await
                    {
                        conn.run(tls).await;
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Requests under way finish (every connection gives its slot back); bounded, so a slow
    // client cannot hold the stop up.
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        slots.acquire_many(MAX_CONNECTIONS as u32),
    )
    .await;
    Ok(())
}

/// One accepted connection.
struct Conn {
    router: Router,
    builder: Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    peer: SocketAddr,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Conn {
    /// Serves requests until the client leaves, stays idle past [`HEADER_TIMEOUT`] with no
    /// request under way (hyper's own header timeout only starts at a request's first byte),
    /// or the server stops.
    async fn run<S>(mut self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let t0 = std::time::Instant::now();
        let last = Arc::new(AtomicU64::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (router, peer, busy) = (self.router.clone(), self.peer, in_flight.clone());
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo::<SocketAddr>(peer));
                let mut r = router.clone();
                let guard = InFlight::new(busy.clone());
                async move {
                    let resp = r.call(req.map(axum::body::Body::new)).await;
                    drop(guard);
                    resp
                }
            });
        let io = Tracked {
            inner: stream,
            last: last.clone(),
            t0,
        };
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut closing = false;
        loop {
            tokio::select! {
                _ = conn.as_mut() => break,
                _ = tick.tick(), if !closing => {
                    let idle = t0.elapsed().as_millis() as u64 - last.load(Ordering::Relaxed);
                    if in_flight.load(Ordering::Relaxed) == 0
                        && idle > HEADER_TIMEOUT.as_millis() as u64
                    {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
                _ = self.stop.changed(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// Counts a request under way for as long as it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(n: Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        InFlight(n)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that notes when bytes last moved (ms since `t0`), for the idle timeout.
struct Tracked<S> {
    inner: S,
    last: Arc<AtomicU64>,
    t0: std::time::Instant,
}

impl<S> Tracked<S> {
    fn touch(&self) {
        self.last
            .store(self.t0.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
