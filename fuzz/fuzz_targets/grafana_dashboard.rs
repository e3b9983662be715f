//! Dashboard files (`web.dashboards_dir`, anyone who can write there) rewritten for Grafana:
//! JSON of any shape and depth, datasource references in every form.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = appliance::grafana::bind_dashboard("fuzz.json", data, "Appliance") {
        // Whatever is bound must serialise again (it is what Grafana is sent).
        let _ = serde_json::to_vec(&v);
    }
});
