//! WAL records as replay and remote write's tail decode them: any kind byte, any payload.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((kind, payload)) = data.split_first() {
        let mut scratch = Vec::new();
        let _ = appliance::storage::wal::decode_into(*kind, payload, &mut scratch, &mut |_| {});
    }
});
