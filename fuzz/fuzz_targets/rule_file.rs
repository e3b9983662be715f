//! Prometheus rule files (every expression and template in them is checked too).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = appliance::rules::file::parse(text, "fuzz.yml", Default::default());
    }
});
