//! The protobuf scrape body parser (delimited `MetricFamily` messages), with native
//! histograms on and off: no input may panic, hang or allocate without bound, every
//! histogram it yields survives a resolution reduction, and turning native histograms off
//! never fails a body that parsed with them on.
#![no_main]

use appliance::model::exposition::{Entry, ProtoOptions, ProtoParser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut ok_native = true;
    for native in [true, false] {
        for classic in [true, false] {
            let opts = ProtoOptions {
                native_histograms: native,
                classic_histograms: classic,
            };
            let mut failed = false;
            for e in ProtoParser::new(data, opts) {
                match e {
                    Ok(Entry::Sample(s)) => {
                        if let Some(h) = s.histogram {
                            let mut h = (*h).clone();
                            h.reduce_resolution(h.schema.saturating_sub(3));
                            h.reduce_resolution(-4);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => failed = true,
                }
            }
            if native {
                ok_native &= !failed;
            } else if ok_native {
                assert!(!failed, "a body that parses with native histograms fails without them");
            }
        }
    }
});
