//! Test helpers shared by unit tests and `tests/`: where the acceptance data lives.
//!
//! Only tests use this module; it touches nothing at run time.

use std::path::PathBuf;

use crate::model::exposition::protobuf::pb;

/// The folder `../shared/testdata/<rel>` beside the checkout, or `None` when it is absent
/// (a user's clone). Under CI (`CI=true`) absence is a failure, because there the suites are
/// the acceptance tests and skipping them would pass a build that proves nothing.
pub fn shared_testdata(rel: &str) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata");
    let p = root.join(rel);
    if p.exists() {
        return Some(p);
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!(
            "{} is missing; under CI the shared acceptance data must be present",
            p.display()
        );
    }
    eprintln!(
        "skipping: {} is absent (shared acceptance data not checked out)",
        p.display()
    );
    None
}

/// Compares `actual` with the golden file `rel` (under the crate root); with `UPDATE_GOLDEN`
/// set, writes it first, so a change is regenerated on purpose and reviewed in the diff.
pub fn assert_golden(rel: &str, actual: &str) {
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel);
    if std::env::var("UPDATE_GOLDEN").is_ok() {
        if let Err(e) = std::fs::write(&golden, actual) {
            panic!("writing {}: {e}", golden.display());
        }
    }
    let want = std::fs::read_to_string(&golden)
        .unwrap_or_else(|e| panic!("reading {}: {e}", golden.display()));
    assert_eq!(
        actual, want,
        "{rel}: set UPDATE_GOLDEN=1 to regenerate after reviewing the change"
    );
}

/// A client_golang-shaped native histogram family `name` with `count` observations (at least
/// 10): schema 3, a zero bucket of one, positive buckets 2, 3 and `count - 9` at indexes -2,
/// -1 and 3, a negative bucket of 3 at index 0 (so the buckets hold exactly `count`), and
/// classic buckets `le=0.5` (3) and `le=1` (`count`, with an exemplar), labelled `svc="a"`.
pub fn native_histogram_family(name: &str, count: u64) -> pb::MetricFamily {
    pb::MetricFamily {
        name: name.into(),
        help: "RPC latency.".into(),
        r#type: pb::MetricType::Histogram as i32,
        unit: String::new(),
        metric: vec![pb::Metric {
            label: vec![pb::LabelPair {
                name: "svc".into(),
                value: "a".into(),
            }],
            histogram: Some(pb::Histogram {
                sample_count: count,
                sample_sum: count as f64 * 0.5,
                schema: 3,
                zero_threshold: 1e-128,
                zero_count: 1,
                positive_span: vec![
                    pb::BucketSpan {
                        offset: -2,
                        length: 2,
                    },
                    pb::BucketSpan {
                        offset: 3,
                        length: 1,
                    },
                ],
                positive_delta: vec![2, 1, count as i64 - 12],
                negative_span: vec![pb::BucketSpan {
                    offset: 0,
                    length: 1,
                }],
                negative_delta: vec![3],
                bucket: vec![
                    pb::Bucket {
                        cumulative_count: 3,
                        upper_bound: 0.5,
                        ..Default::default()
                    },
                    pb::Bucket {
                        cumulative_count: count,
                        upper_bound: 1.0,
                        exemplar: Some(pb::Exemplar {
                            label: vec![pb::LabelPair {
                                name: "trace_id".into(),
                                value: "abc".into(),
                            }],
                            value: 0.7,
                            timestamp: Some(pb::Timestamp {
                                seconds: 1_700_000_000,
                                nanos: 0,
                            }),
                        }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        }],
    }
}
