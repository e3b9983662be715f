//! Retention: deleting the oldest blocks past the time or size limit, and truncating the
//! head and its WAL with them. It deletes whole blocks only.

use super::*;

impl Db {
    /// Deletes whole blocks beyond the time or size limit, oldest first, as Prometheus does:
    /// by time, blocks ending more than the retention before the newest block's end; by size,
    /// counting the WAL and the head's chunk files first and then blocks newest to oldest, every
    /// block from the one that crosses the limit on.
    pub(super) fn apply_retention(&self) {
        let opts = self.inner.opts.read().clone();
        let blocks = self.inner.blocks.read().clone();
        let mut doomed: Vec<(Arc<Block>, &str)> = Vec::new();
        let newest_first: Vec<&Arc<Block>> = blocks.iter().rev().collect();
        if opts.retention_ms > 0 {
            if let Some(newest) = newest_first.first() {
                let top = newest.meta().max_time;
                for b in newest_first.iter().skip(1) {
                    if top - b.meta().max_time > opts.retention_ms {
                        doomed.push(((*b).clone(), "time"));
                    }
                }
            }
        }
        if opts.retention_bytes > 0 {
            let mut size = self.inner.head.wal_size() + self.inner.head.chunks_storage_size();
            let mut over = false;
            for b in &newest_first {
                size += b.size();
                over |= size > opts.retention_bytes;
                if over && !doomed.iter().any(|(d, _)| Arc::ptr_eq(d, b)) {
                    doomed.push(((*b).clone(), "size"));
                }
            }
        }
        if doomed.is_empty() {
            return;
        }
        if doomed.iter().any(|(_, why)| *why == "time") {
            self.inner.metrics.time_retentions.inc();
        }
        if doomed.iter().any(|(_, why)| *why == "size") {
            self.inner.metrics.size_retentions.inc();
        }
        self.inner
            .blocks
            .write()
            .retain(|x| !doomed.iter().any(|(d, _)| Arc::ptr_eq(d, x)));
        for (b, why) in doomed {
            tracing::info!(ulid = %b.meta().ulid, min_time = b.meta().min_time, max_time = b.meta().max_time, reason = why, "retention deleted a block");
            delete_block_dir(b.dir());
        }
    }
}
