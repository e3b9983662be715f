//! Notable failures as events: one macro call writes the log line and counts it in
//! `appliance_errors_total{component, kind}`, so no failure is logged without a series an
//! alert can watch (Vector's `internal_events` habit). The counter family is process-wide;
//! `app.rs` registers it once.
//!
//! Owns the counter only; the call sites say what failed.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    component: String,
    kind: String,
}

fn family() -> &'static Family<Labels, Counter> {
    static F: OnceLock<Family<Labels, Counter>> = OnceLock::new();
    F.get_or_init(Family::default)
}

/// Registers `appliance_errors_total` in `reg`.
pub fn register(reg: &mut Registry) {
    reg.register(
        "appliance_errors",
        "Notable failures by component and kind; each one is also logged.",
        family().clone(),
    );
}

/// Counts one failure. Use [`crate::failure!`], which logs it too.
pub fn count(component: &str, kind: &str) {
    family()
        .get_or_create(&Labels {
            component: component.to_string(),
            kind: kind.to_string(),
        })
        .inc();
}

/// How many failures of `kind` in `component` were counted (for tests).
pub fn counted(component: &str, kind: &str) -> u64 {
    family()
        .get_or_create(&Labels {
            component: component.to_string(),
            kind: kind.to_string(),
        })
        .get()
}

/// Logs a failure at `error` (or `warn`) level and counts it in
/// `appliance_errors_total{component, kind}`:
/// `failure!(error, "storage", "wal_write", error = %e, "writing the WAL failed")`.
#[macro_export]
macro_rules! failure {
    (error, $component:expr, $kind:expr, $($rest:tt)+) => {{
        $crate::model::event::count($component, $kind);
        tracing::error!(component = $component, kind = $kind, $($rest)+);
    }};
    (warn, $component:expr, $kind:expr, $($rest:tt)+) => {{
        $crate::model::event::count($component, $kind);
        tracing::warn!(component = $component, kind = $kind, $($rest)+);
    }};
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failure_is_counted_as_it_is_logged() {
        let before = super::counted("test", "thing");
        crate::failure!(error, "test", "thing", detail = 3, "a thing failed");
        crate::failure!(warn, "test", "thing", "a thing failed again");
        assert_eq!(super::counted("test", "thing"), before + 2);
    }
}
