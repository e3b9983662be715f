//! Reading files named by the configuration (the config itself, rule files, templates, file
//! discovery, secrets) with a size bound: a path like `/dev/zero` or a runaway file must give
//! an error, not fill memory.

use std::io::Read;
use std::path::Path;

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
