//! Alert templates (Go text/template through gotmpl): checking and expanding.
#![no_main]

use appliance::rules::template::{check, expand, TemplateData};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = check(text);
    let d = TemplateData {
        labels: [("instance".to_string(), "a:1".to_string())].into(),
        external_labels: Default::default(),
        external_url: "http://x".into(),
        value: 1.5,
    };
    let _ = expand("Fuzz", text, &d, None, 0);
});
