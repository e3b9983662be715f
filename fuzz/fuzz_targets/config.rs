//! The configuration file: YAML, `${VAR}` expansion, every section's checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = appliance::config::parse(text, "fuzz.yml");
        let _ = appliance::notify::config::parse(text);
    }
});
