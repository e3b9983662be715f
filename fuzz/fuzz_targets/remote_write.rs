//! Remote-write pushes (1.0 and 2.0): snappy framing, protobuf, labels, histograms, from
//! anyone holding a write token, decoded and appended to an in-memory head.
#![no_main]

use appliance::remote::proto::Protocol;
use appliance::remote::receive::{receive, Limits};
use appliance::storage::{Head, HeadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else {
        return;
    };
    let head = Head::new(HeadOptions::default());
    let limits = Limits {
        max_decompressed: 1 << 20,
        ..Limits::default()
    };
    let proto = if first & 1 == 0 { Protocol::V1 } else { Protocol::V2 };
    // Both the raw bytes as a body and the bytes snappy-framed, so the decoder behind the
    // framing is reached too.
    let _ = receive(body, proto, &head, &limits);
    let framed = appliance::remote::proto::compress(body);
    let _ = receive(&framed, proto, &head, &limits);
});
