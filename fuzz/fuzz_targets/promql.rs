//! PromQL: parse, evaluate (instant and range) over a small store, pretty-print and list the
//! selectors. Any query text must give a result or an error, never a crash, a stack overflow
//! or a stall past the timeout.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use appliance::model::Labels;
use appliance::promql::{Engine, EngineOptions};
use appliance::storage::{Appendable, Head, HeadOptions};
use libfuzzer_sys::fuzz_target;

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let head = Head::new(HeadOptions::default());
        let mut a = head.appender();
        for (name, job) in [("up", "a"), ("up", "b"), ("http_requests_total", "a")] {
            let l = Labels::from_pairs([("__name__", name), ("job", job), ("instance", "x")]);
            for i in 0..40 {
                let _ = a.append(&l, i * 15_000, (i * 3) as f64);
            }
        }
        let _ = a.commit();
        let opts = EngineOptions {
            timeout: Duration::from_secs(2),
            max_samples: 200_000,
            ..EngineOptions::default()
        };
        Engine::new(Arc::new(head), opts)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let e = engine();
    let _ = e.instant(q, 300_000);
    let _ = e.range(q, 0, 600_000, 30_000);
    let _ = appliance::promql::format_query(q);
    // /api/v1/query_exemplars walks every selector of the query.
    let _ = appliance::promql::selectors(q);
});
