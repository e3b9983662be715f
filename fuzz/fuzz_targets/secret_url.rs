//! Redaction of URLs and connection strings: any text, no panic, and the result never
//! contains a password given in the userinfo.
#![no_main]

use appliance::model::secret::{redact_url, SecretUrl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = redact_url(s);
    let u = SecretUrl::new(s);
    let _ = u.without_userinfo();
    let planted = format!("http://user:Plant3dPw@{s}");
    if !s.contains("Plant3dPw") && !s.contains(['/', '?', '#']) {
        assert!(!redact_url(&planted).contains("Plant3dPw"), "{planted}");
    }
});
