//! Keeps the embedded UI bundle (`web/dist`, committed) in step with its sources in `web/`:
//! when the sources' hash differs from `web/dist/.source-hash` (or the bundle is missing), it
//! runs `npm ci` (when `web/node_modules` is missing) and `node web/build.mjs`. Without Node
//! and npm, a stale bundle is used with a warning and a missing one stops the build with a
//! message saying what to install.

use std::path::PathBuf;
use std::process::Command;

include!("web/source_hash.rs");

fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn main() {
    let web = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("web");
    println!("cargo:rerun-if-changed=web/src");
    println!("cargo:rerun-if-changed=web/index.html");
    println!("cargo:rerun-if-changed=web/build.mjs");
    println!("cargo:rerun-if-changed=web/source_hash.rs");
    println!("cargo:rerun-if-changed=web/package-lock.json");
    println!("cargo:rerun-if-changed=web/dist");
    println!("cargo:rerun-if-changed=dashboards");
    let bundle = web.join("dist/assets/app.js");
    let want = source_hash(&web);
    let built = std::fs::read_to_string(web.join("dist/.source-hash")).unwrap_or_default();
    if bundle.exists() && built.trim() == want {
        return;
    }
    if !(have("node") && have("npm")) {
        if bundle.exists() {
            println!(
                "cargo:warning=web/dist is older than web/src; install Node.js and npm (apt install nodejs npm) to rebuild the UI"
            );
            return;
        }
        panic!(
            "the UI bundle web/dist is missing and Node.js/npm are not installed: \
             install them (apt install nodejs npm) or restore web/dist from git"
        );
    }
    if !web.join("node_modules/esbuild").exists() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&web)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            panic!("`npm ci` in web/ failed; see its output above");
        }
    }
    let ok = Command::new("node")
        .arg("build.mjs")
        .current_dir(&web)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        panic!("building the UI (node web/build.mjs) failed; see its output above");
    }
}
