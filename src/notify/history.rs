//! The delivery history: every delivery's outcome (receiver, integration, to whom, status,
//! attempts, error), the newest [`HISTORY`] in memory for `/api/v1/notifications` and in
//! `<data-dir>/notify/history.jsonl`, so a restart keeps what was sent and what failed. It
//! knows nothing of routing or delivery.

use std::collections::VecDeque;
use std::path::PathBuf;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// How many deliveries are kept.
pub const HISTORY: usize = 1000;

/// One delivery, as the history shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// When it finished (RFC 3339).
    pub time: String,
    /// Receiver name.
    pub receiver: String,
    /// Integration kind.
    pub integration: String,
    /// To whom (addresses, channel, host; never a secret).
    pub target: String,
    /// Group key.
    pub group_key: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// Alert names and counts.
    pub alerts: Vec<String>,
    /// Whether it was delivered.
    pub success: bool,
    /// Attempts made.
    pub attempts: u32,
    /// The last error, if any.
    pub error: String,
}

/// The history, bounded, kept on disk when a file is given.
pub struct History {
    entries: Mutex<VecDeque<HistoryEntry>>,
    /// One JSON line per delivery.
    file: Option<PathBuf>,
    /// Lines in the file, to know when to rewrite it bounded.
    lines: Mutex<usize>,
}

impl History {
    /// The history kept in `file` (what it holds is read now).
    pub fn open(file: Option<PathBuf>) -> History {
        let (entries, lines) = file.as_deref().map(read).unwrap_or_default();
        History {
            entries: Mutex::new(entries),
            file,
            lines: Mutex::new(lines),
        }
    }

    /// The deliveries, newest first.
    pub fn list(&self) -> Vec<HistoryEntry> {
        self.entries.lock().iter().rev().cloned().collect()
    }

    /// Keeps `entry` in the history, in memory and on disk (appended; the file is rewritten
    /// with the newest [`HISTORY`] entries once it holds twice that many).
    pub fn record(&self, entry: HistoryEntry) {
        let mut h = self.entries.lock();
        if h.len() >= HISTORY {
            h.pop_front();
        }
        h.push_back(entry.clone());
        let Some(f) = &self.file else { return };
        let mut lines = self.lines.lock();
        let write = || -> std::io::Result<usize> {
            use std::io::Write;
            if let Some(d) = f.parent() {
                std::fs::create_dir_all(d)?;
            }
            if *lines + 1 > 2 * HISTORY {
                let tmp = f.with_extension("tmp");
                let mut text = String::new();
                for e in h.iter() {
                    text.push_str(&serde_json::to_string(e).unwrap_or_default());
                    text.push('\n');
                }
                std::fs::write(&tmp, text)?;
                std::fs::rename(&tmp, f)?;
                return Ok(h.len());
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)?;
            writeln!(
                file,
                "{}",
                serde_json::to_string(&entry).unwrap_or_default()
            )?;
            Ok(*lines + 1)
        };
        match write() {
            Ok(n) => *lines = n,
            Err(e) => {
                crate::failure!(warn, "notify", "history_write", file = %f.display(), error = %e, "saving the delivery history failed")
            }
        }
    }
}

/// The newest [`HISTORY`] entries of a history file, and how many lines it has; a missing
/// or partly unreadable file gives what can be read (a torn last line is skipped).
fn read(f: &std::path::Path) -> (VecDeque<HistoryEntry>, usize) {
    let text = match std::fs::read_to_string(f) {
        Ok(t) => t,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %f.display(), error = %e, "delivery history unreadable; starting empty");
            }
            return (VecDeque::new(), 0);
        }
    };
    let mut out = VecDeque::new();
    let mut lines = 0;
    for l in text.lines() {
        lines += 1;
        if let Ok(e) = serde_json::from_str::<HistoryEntry>(l) {
            if out.len() >= HISTORY {
                out.pop_front();
            }
            out.push_back(e);
        }
    }
    (out, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> HistoryEntry {
        HistoryEntry {
            time: format!("t{i}"),
            receiver: "r".into(),
            integration: "webhook".into(),
            target: "http://h".into(),
            group_key: "g".into(),
            status: "firing".into(),
            alerts: vec!["A×1".into()],
            success: i.is_multiple_of(2),
            attempts: 1,
            error: String::new(),
        }
    }

    #[test]
    fn survives_a_restart_bounded_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("notify/history.jsonl");
        let h = History::open(Some(f.clone()));
        for i in 0..(2 * HISTORY + 10) {
            h.record(entry(i));
        }
        let lines = std::fs::read_to_string(&f).unwrap().lines().count();
        assert!(lines <= 2 * HISTORY, "{lines} lines");
        // A crash mid-write leaves a torn last line: it is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&f)
            .and_then(|mut x| std::io::Write::write_all(&mut x, b"{\"time\":\"t"))
            .unwrap();
        let again = History::open(Some(f));
        let list = again.list();
        assert_eq!(list.len(), HISTORY);
        assert_eq!(list[0].time, format!("t{}", 2 * HISTORY + 9));
        assert_eq!(list[HISTORY - 1].time, format!("t{}", HISTORY + 10));
    }
}
