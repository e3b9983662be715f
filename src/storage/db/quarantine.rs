//! Damaged blocks: the background scrub, moving a block that fails its checks into
//! `quarantine/` (out of every query), and listing what earlier runs quarantined. It never
//! deletes data.

use super::*;

impl Db {
    /// Reads every chunk of every block and quarantines blocks whose checksums fail; run in
    /// the background after start. Returns the number of blocks quarantined.
    pub fn scrub(&self) -> usize {
        let blocks = self.inner.blocks.read().clone();
        let mut n = 0;
        for b in blocks {
            if let Err(e) = b.verify_chunks() {
                crate::failure!(error, "storage", "block_checksum", ulid = %b.meta().ulid, error = %e, "block failed its chunk checksums");
                self.quarantine(&b, &e);
                n += 1;
            }
        }
        n
    }

    /// Moves a damaged block out of service and out of the data directory's block list.
    pub(super) fn quarantine(&self, b: &Arc<Block>, err: &BlockError) {
        self.inner.metrics.checksum_failures.inc();
        let mut list = self.inner.blocks.write();
        let before = list.len();
        list.retain(|x| !Arc::ptr_eq(x, b));
        if list.len() == before {
            return; // another reader got there first
        }
        drop(list);
        let q = quarantine_dir(
            &self.inner.dir,
            b.dir(),
            &b.meta().ulid,
            &err.to_string(),
            &self.inner.metrics,
        );
        self.inner.quarantined.lock().push(q);
        self.update_gauges();
    }
}

pub(super) fn quarantine_dir(
    data: &Path,
    dir: &Path,
    ulid: &str,
    reason: &str,
    metrics: &DbMetrics,
) -> QuarantinedBlock {
    let qdir = data.join(QUARANTINE_DIR);
    let _ = fs::create_dir_all(&qdir);
    let dst = qdir.join(ulid);
    let moved = fs::rename(dir, &dst);
    metrics.quarantined.inc();
    tracing::error!(ulid, reason, to = %dst.display(), moved = moved.is_ok(), "block failed its checks and was moved aside");
    let _ = fs::write(dst.join("QUARANTINE_REASON"), reason);
    let (min_time, max_time) = meta_range(&dst);
    QuarantinedBlock {
        ulid: ulid.to_string(),
        reason: reason.to_string(),
        path: dst.display().to_string(),
        time: now_ms(),
        min_time,
        max_time,
    }
}

/// `minTime` and `maxTime` from a block directory's meta.json, if readable.
pub(super) fn meta_range(dir: &Path) -> (i64, i64) {
    let v: Option<serde_json::Value> =
        crate::model::files::read_bounded(&dir.join("meta.json"), 1 << 20)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
    let get = |k: &str| v.as_ref().and_then(|v| v[k].as_i64()).unwrap_or(0);
    (get("minTime"), get("maxTime"))
}

/// Blocks quarantined by earlier runs (the reason file tells why).
pub(super) fn earlier_quarantine(data: &Path) -> Vec<QuarantinedBlock> {
    let Ok(rd) = fs::read_dir(data.join(QUARANTINE_DIR)) else {
        return Vec::new();
    };
    let mut out: Vec<QuarantinedBlock> = rd
        .flatten()
        .map(|e| {
            let p = e.path();
            let (min_time, max_time) = meta_range(&p);
            QuarantinedBlock {
                min_time,
                max_time,
                ulid: e.file_name().to_string_lossy().into_owned(),
                reason: fs::read_to_string(p.join("QUARANTINE_REASON")).unwrap_or_default(),
                path: p.display().to_string(),
                time: e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0),
            }
        })
        .collect();
    out.sort_by(|a, b| a.ulid.cmp(&b.ulid));
    out
}
