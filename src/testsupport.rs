//! Test helpers shared by unit tests and `tests/`: where the acceptance data lives.
//!
//! Only tests use this module; it touches nothing at run time.

use std::path::PathBuf;

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
