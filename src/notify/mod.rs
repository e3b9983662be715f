//! Notifications, Alertmanager-compatible: the routing tree, grouping, inhibition,
//! silences, the notification log, every Alertmanager integration (`receivers/`), the API v2
//! in typed views, and the external-Alertmanager sender. It takes alerts through the rules
//! module's sink (wired by app.rs) and uses only `model`: never storage, scraping, PromQL,
//! the rules or the appliance config.

pub mod api;
pub mod config;
pub mod dispatch;
pub mod external;
pub mod history;
pub mod notifier;
pub mod receivers;
pub mod route;
pub mod silence;
pub mod template;
pub mod timeinterval;

#[cfg(test)]
mod tests {
    /// DESIGN.md: notify uses `model` only (and the crate's `failure!` macro); the rules,
    /// config, storage and HTTP modules reach it through app.rs.
    #[test]
    fn notify_uses_only_model() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/notify");
        let re = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
        let mut stack = vec![root];
        let mut seen = 0;
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                if p.extension().is_none_or(|x| x != "rs") {
                    continue;
                }
                seen += 1;
                let text = std::fs::read_to_string(&p).unwrap();
                for c in re.captures_iter(&text) {
                    assert!(
                        ["model", "notify", "failure", "testsupport"].contains(&&c[1]),
                        "{} uses crate::{}",
                        p.display(),
                        &c[1]
                    );
                }
            }
        }
        assert!(seen > 20, "{seen} files");
    }
}
