//! The HTTP client for one job: TLS settings from `tls_config` (rustls with ring), redirects,
//! HTTP/2. Decompression is done by the scrape loop so `body_size_limit` counts real bytes.

use super::config::ScrapeConfig;

/// Builds the job's client, reading CA and client certificate files now so a bad file is a
/// config error rather than a failed scrape.
pub fn build(cfg: &ScrapeConfig) -> Result<reqwest::Client, String> {
    let config = cfg.tls_config.clone().unwrap_or_default().client_config()?;
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
