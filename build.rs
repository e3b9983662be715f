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

/// A command's trimmed stdout, when it ran and succeeded.
fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(cmd).args(args).output().ok()?;
    let s = String::from_utf8(o.stdout).ok()?.trim().to_string();
    (o.status.success() && !s.is_empty()).then_some(s)
}

/// Stamps the build for `/api/v1/status/buildinfo`: the git revision and branch (when built
/// from a checkout; `APPLIANCE_REVISION` etc. set by a packager win), the commit's date (so a
/// rebuild of the same commit is the same binary), the compiler and the builder.
fn stamp() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let git = root.join(".git");
    // Only files that exist: cargo would rebuild every time for a missing one.
    for f in ["HEAD", "packed-refs"] {
        if git.join(f).is_file() {
            println!("cargo:rerun-if-changed=.git/{f}");
        }
    }
    if let Ok(head) = std::fs::read_to_string(git.join("HEAD")) {
        if let Some(r) = head.trim().strip_prefix("ref: ") {
            if git.join(r).is_file() {
                println!("cargo:rerun-if-changed=.git/{r}");
            }
        }
    }
    let dir = root.to_string_lossy().to_string();
    let git_out = |args: &[&str]| {
        let mut all = vec!["-C", dir.as_str()];
        all.extend_from_slice(args);
        output("git", &all)
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let user = std::env::var("USER")
        .ok()
        .or_else(|| output("id", &["-un"]))
        .unwrap_or_else(|| "unknown".into());
    let host = output("hostname", &[]).unwrap_or_else(|| "unknown".into());
    let values = [
        (
            "APPLIANCE_REVISION",
            git_out(&["rev-parse", "--short=12", "HEAD"]),
        ),
        (
            "APPLIANCE_BRANCH",
            git_out(&["rev-parse", "--abbrev-ref", "HEAD"]),
        ),
        (
            "APPLIANCE_BUILD_DATE",
            git_out(&["log", "-1", "--format=%cd", "--date=format:%Y%m%d-%H:%M:%S"]),
        ),
        ("APPLIANCE_RUSTC", output(&rustc, &["--version"])),
        ("APPLIANCE_BUILD_USER", Some(format!("{user}@{host}"))),
    ];
    for (key, v) in values {
        println!("cargo:rerun-if-env-changed={key}");
        let v = std::env::var(key)
            .ok()
            .or(v)
            .unwrap_or_else(|| "unknown".into());
        println!("cargo:rustc-env={key}={v}");
    }
}

fn main() {
    stamp();
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
