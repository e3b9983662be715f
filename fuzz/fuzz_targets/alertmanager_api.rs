//! Alertmanager API v2 bodies: posted alerts and silences, as JSON from anyone, through the
//! HTTP layer's parsers into the notifier.
#![no_main]

use std::sync::{Arc, OnceLock};

use appliance::notify::notifier::{DeliveryContext, Notifier};
use libfuzzer_sys::fuzz_target;

fn notifier() -> &'static Arc<Notifier> {
    static N: OnceLock<Arc<Notifier>> = OnceLock::new();
    N.get_or_init(|| {
        let ctx = DeliveryContext {
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
    let n = notifier();
    if let Ok(alerts) = appliance::http::alertmanager::parse_alerts(data) {
        let _ = n.api_post_alerts(alerts);
    }
    if let Ok(s) = appliance::http::alertmanager::parse_silence(data) {
        let _ = n.api_post_silence(s);
    }
    let filter = appliance::notify::api::AlertFilter {
        matchers: vec![String::from_utf8_lossy(data).into_owned()],
        ..Default::default()
    };
    let _ = n.api_alerts(&filter);
});
