// The UI bundle's source hash, shared by `build.rs` and `tests/ui.rs` (`include!`d), and the
// same as `web/build.mjs` writes to `web/dist/.source-hash`: SHA-256 over the sorted relative
// paths of index.html, build.mjs, package-lock.json and src/**, each `path\0contents\0`.

fn source_files(web: &std::path::Path) -> Vec<String> {
    fn walk(web: &std::path::Path, rel: &str, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(web.join(rel)) else {
            return;
        };
        for e in rd.flatten() {
            let p = format!("{rel}/{}", e.file_name().to_string_lossy());
            if e.path().is_dir() {
                walk(web, &p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = vec![
        "index.html".to_string(),
        "build.mjs".to_string(),
        "package-lock.json".to_string(),
    ];
    walk(web, "src", &mut out);
    out.sort();
    out
}

fn source_hash(web: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in source_files(web) {
        h.update(f.as_bytes());
        h.update([0]);
        h.update(std::fs::read(web.join(&f)).unwrap_or_default());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
