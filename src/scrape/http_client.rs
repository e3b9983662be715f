//! The HTTP client for one job: TLS settings from `tls_config` (rustls with ring), redirects,
//! HTTP/2. Decompression is done by the scrape loop so `body_size_limit` counts real bytes.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::model::tls::{native_roots, provider, NoVerify};

use super::config::ScrapeConfig;

/// Builds the job's client, reading CA and client certificate files now so a bad file is a
/// config error rather than a failed scrape.
pub fn build(cfg: &ScrapeConfig) -> Result<reqwest::Client, String> {
    let tls = cfg.tls_config.clone().unwrap_or_default();
    let mut roots = native_roots();
    let mut add_pem = |pem: &[u8], what: &str| -> Result<(), String> {
        for c in CertificateDer::pem_slice_iter(pem) {
            let c = c.map_err(|e| format!("{what}: {e}"))?;
            roots.add(c).map_err(|e| format!("{what}: {e}"))?;
        }
        Ok(())
    };
    if !tls.ca_file.is_empty() {
        let pem = std::fs::read(&tls.ca_file)
            .map_err(|e| format!("unable to read CA cert {:?}: {e}", tls.ca_file))?;
        add_pem(&pem, &tls.ca_file)?;
    }
    if !tls.ca.is_empty() {
        add_pem(tls.ca.as_bytes(), "tls_config.ca")?;
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match tls.min_version.as_str() {
        "TLS13" => vec![&rustls::version::TLS13],
        "" | "TLS12" | "TLS11" | "TLS10" => vec![&rustls::version::TLS13, &rustls::version::TLS12],
        other => return Err(format!("unknown TLS version {other:?}")),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let cert_pem = if !tls.cert_file.is_empty() {
        Some(
            std::fs::read(&tls.cert_file)
                .map_err(|e| format!("unable to read client cert {:?}: {e}", tls.cert_file))?,
        )
    } else if !tls.cert.is_empty() {
        Some(tls.cert.as_bytes().to_vec())
    } else {
        None
    };
    let key_pem = if !tls.key_file.is_empty() {
        Some(
            std::fs::read(&tls.key_file)
                .map_err(|e| format!("unable to read client key {:?}: {e}", tls.key_file))?,
        )
    } else {
        tls.key.as_ref().map(|k| k.expose().as_bytes().to_vec())
    };
    let mut config = match (cert_pem, key_pem) {
        (Some(c), Some(k)) => {
            let certs = CertificateDer::pem_slice_iter(&c)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client cert: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(&k).map_err(|e| format!("client key: {e}"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("client cert/key: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("client cert and key must be configured together".into()),
    };
    if tls.insecure_skip_verify {
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(NoVerify(provider())));
    }
    let redirect = if cfg.follow_redirects {
        reqwest::redirect::Policy::limited(10)
    } else {
        reqwest::redirect::Policy::none()
    };
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .redirect(redirect)
        .no_proxy();
    if !cfg.enable_http2 {
        b = b.http1_only();
    }
    b.build().map_err(|e| e.to_string())
}
