//! Alertmanager API v2 bodies: posted alerts and silences, as JSON from anyone.
#![no_main]

use std::sync::{Arc, OnceLock};

use appliance::notify::notifier::{DeliveryContext, Notifier};
use libfuzzer_sys::fuzz_target;

fn notifier() -> &'static Arc<Notifier> {
    static N: OnceLock<Arc<Notifier>> = OnceLock::new();
    N.get_or_init(|| {
        // The appliance's client, with its rustls provider (nothing is sent here).
        let tls = appliance::model::httpconf::TlsConfig::default()
            .client_config()
            .expect("default TLS settings");
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .expect("HTTP client");
        let ctx = DeliveryContext {
            http,
            external_url: "http://x".into(),
        };
        let n = Notifier::new(ctx, None);
        let cfg = appliance::notify::config::parse(
            "route: {receiver: 'null', group_by: [alertname]}\nreceivers: [{name: 'null'}]\n",
        )
        .ok();
        n.apply(cfg);
        n
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let n = notifier();
    let _ = n.api_post_alerts(&v);
    let _ = n.api_post_silence(&v);
    let _ = n.api_alerts(&[("filter".to_string(), v.to_string())]);
});
