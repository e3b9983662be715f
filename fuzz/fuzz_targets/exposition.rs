//! The scrape body parser, both formats, with and without label limits: no input may panic,
//! hang or allocate without bound; and deferred labels (what the scrape loop uses) give the
//! same samples and the same first error as parsing every label block in place. The classic
//! to custom-bucket histogram conversion runs over every body too.
#![no_main]

use appliance::model::exposition::nhcb::NhcbDecoder;
use appliance::model::exposition::{
    Decoder, Entry, Format, Parser, ParserOptions, ProtoOptions, Wire,
};
use libfuzzer_sys::fuzz_target;

type Flat = (String, Vec<(String, String)>, u64, Option<i64>);

fn run(data: &[u8], format: Format, opts: ParserOptions) -> (Vec<Flat>, Option<String>) {
    let mut p = Parser::new(data, format, opts);
    let mut out = Vec::new();
    while let Some(e) = p.next() {
        let s = match e {
            Ok(Entry::Sample(s)) => s,
            Ok(_) => continue,
            Err(e) => return (out, Some(e.to_string())),
        };
        match p.series_labels(&s) {
            Ok((name, labels)) => out.push((
                name.into_owned(),
                labels
                    .into_iter()
                    .map(|(a, b)| (a.into_owned(), b.into_owned()))
                    .collect(),
                s.value.to_bits(),
                s.timestamp_ms,
            )),
            Err(e) => return (out, Some(e.to_string())),
        }
    }
    (out, None)
}

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
            let full = run(data, format, opts);
            let deferred = run(
                data,
                format,
                ParserOptions {
                    defer_labels: true,
                    ..opts
                },
            );
            assert_eq!(full, deferred, "deferred labels differ from parsing in place");
        }
        let _ = appliance::model::exposition::parse_all(data, format);
        for keep_classic in [false, true] {
            let dec = Decoder::new(
                data,
                Wire::Text(format),
                ParserOptions {
                    defer_labels: true,
                    ..ParserOptions::default()
                },
                ProtoOptions::default(),
            );
            let mut conv = NhcbDecoder::new(dec, true, keep_classic);
            while let Some(e) = conv.next() {
                match e {
                    Ok(Entry::Sample(s)) => {
                        let _ = conv.series_labels(&s);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
    }
});
