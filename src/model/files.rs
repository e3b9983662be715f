//! Reading files named by the configuration (the config itself, rule files, templates, file
//! discovery, secrets) with a size bound: a path like `/dev/zero` or a runaway file must give
//! an error, not fill memory.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The most a configuration-like file may hold.
pub const MAX_CONFIG_FILE_BYTES: u64 = 16 << 20;

/// Reads `path` as UTF-8 text of at most `max` bytes. Only regular files are read (a device
/// or FIFO would never end or never answer).
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<String> {
    let f = std::fs::File::open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    String::from_utf8(buf)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// [`read_bounded`] with the configuration bound.
pub fn read_config_file(path: &Path) -> std::io::Result<String> {
    read_bounded(path, MAX_CONFIG_FILE_BYTES)
}

/// Files matching a path that may hold `*`, `?` or `[...]` in its last component.
pub fn glob_paths(p: &Path) -> Vec<PathBuf> {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?', '[']) {
        return if p.exists() {
            vec![p.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let dir = p.parent().unwrap_or(Path::new("."));
    let Some(re) = glob_regex(&name) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|x| {
                    x.file_name()
                        .map(|n| re.is_match(&n.to_string_lossy()))
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A shell glob as an anchored regex (`*`, `?`, `[...]`); None if it is malformed.
pub fn glob_regex(glob: &str) -> Option<regex::Regex> {
    let mut re = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' | ']' => re.push(c),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_oversized_files_are_refused() {
        assert!(read_config_file(Path::new("/dev/zero")).is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::write(&p, vec![b'a'; 11]).unwrap();
        assert!(read_bounded(&p, 10).is_err());
        assert_eq!(read_bounded(&p, 11).unwrap().len(), 11);
    }
}
