//! The admin operations of the TSDB API: deleting series (tombstones), cleaning
//! tombstones by rewriting blocks, and snapshots. Each is an explicit request; none runs on its
//! own.

use super::*;

impl Db {
    /// Hides samples of matching series in `[mint, maxt]`: rewritten in the head, tombstoned
    /// in blocks. Returns the number of series touched.
    pub fn delete_series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<u64, DbError> {
        let _g = self.inner.maintain.lock();
        let mut touched = self.inner.head.delete(matchers, mint, maxt)?;
        let blocks = self.inner.blocks.read().clone();
        for b in blocks {
            if b.meta().max_time <= mint || b.meta().min_time > maxt {
                continue;
            }
            let series = match b.matching_series(matchers) {
                Ok(s) => s,
                Err(e) => {
                    self.quarantine(&b, &e);
                    continue;
                }
            };
            let stones: Vec<(u32, i64, i64)> = series
                .iter()
                .filter(|s| {
                    s.chunks
                        .iter()
                        .chain(&s.hchunks)
                        .any(|c| c.max_t >= mint && c.min_t <= maxt)
                })
                .map(|s| (s.id, mint, maxt))
                .collect();
            if stones.is_empty() {
                continue;
            }
            touched += stones.len() as u64;
            let mut nb = Block::open(b.dir())?;
            nb.add_tombstones(&stones)?;
            let mut list = self.inner.blocks.write();
            for x in list.iter_mut() {
                if Arc::ptr_eq(x, &b) {
                    *x = Arc::new(nb);
                    break;
                }
            }
        }
        Ok(touched)
    }

    /// Rewrites every block that has tombstones without the deleted data.
    pub fn clean_tombstones(&self) -> Result<usize, DbError> {
        let _g = self.inner.maintain.lock();
        let blocks = self.inner.blocks.read().clone();
        let mut n = 0;
        for b in blocks {
            if b.tombstones().intervals.is_empty() {
                continue;
            }
            // Compacting a group of one writes the block anew with tombstones applied.
            let meta = self.compact(std::slice::from_ref(&b))?;
            tracing::info!(old = %b.meta().ulid, new = %meta.ulid, "block rewritten without tombstones");
            self.inner.metrics.tombstone_cleanups.inc();
            n += 1;
        }
        self.update_gauges();
        Ok(n)
    }

    /// Writes a snapshot under `<data>/snapshots/<name>`: hard links of every block and,
    /// unless `skip_head`, the head's samples as a block of their own. Returns the name.
    pub fn snapshot(&self, skip_head: bool) -> Result<String, DbError> {
        let _g = self.inner.maintain.lock();
        let name = format!(
            "{}-{:016x}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
            rand_u64()
        );
        let root = self.inner.dir.join(SNAPSHOT_DIR).join(&name);
        fs::create_dir_all(&root).map_err(io(&root))?;
        for b in self.inner.blocks.read().iter() {
            let dst = root.join(&b.meta().ulid);
            fs::create_dir_all(&dst).map_err(io(&dst))?;
            for f in ["meta.json", "index", "chunks", "tombstones"] {
                let src = b.dir().join(f);
                if !src.exists() {
                    continue;
                }
                let to = dst.join(f);
                if fs::hard_link(&src, &to).is_err() {
                    fs::copy(&src, &to).map_err(io(&to))?;
                }
            }
        }
        if !skip_head {
            let (hmin, hmax) = self.inner.head.time_range();
            if hmin != i64::MAX {
                write_block_from_head(&root, &self.inner.head, hmin, hmax + 1)?;
            }
        }
        block::sync_dir(&root);
        Ok(name)
    }
}
