//! The scrape body parser, both formats, with and without label limits: no input may panic,
//! hang or allocate without bound.
#![no_main]

use appliance::model::exposition::{Format, Parser, ParserOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limited = ParserOptions {
        label_limit: 8,
        reserved_labels: 2,
        label_name_length_limit: 16,
        label_value_length_limit: 32,
        ..ParserOptions::default()
    };
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        for opts in [ParserOptions::default(), limited] {
            for e in Parser::new(data, format, opts) {
                if e.is_err() {
                    break;
                }
            }
        }
        let _ = appliance::model::exposition::parse_all(data, format);
    }
});
