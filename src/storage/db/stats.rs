//! The store's figures: its metrics (`appliance_tsdb_*`), the gauges refreshed after each
//! change, and the cardinality statistics of `/api/v1/status/tsdb` and `tsdb analyze`.
//! Reads only; it changes no data.

use super::*;

impl Db {
    /// Registers the store's and the head's metrics.
    pub fn register_metrics(&self, reg: &mut Registry) {
        self.inner.head.register_metrics(reg);
        let m = &self.inner.metrics;
        let g = |reg: &mut Registry, n: &str, h: &str, x: &Gauge| reg.register(n, h, x.clone());
        let c = |reg: &mut Registry, n: &str, h: &str, x: &Counter| reg.register(n, h, x.clone());
        g(
            reg,
            "appliance_tsdb_blocks_loaded",
            "Number of currently loaded data blocks.",
            &m.blocks_loaded,
        );
        c(
            reg,
            "appliance_tsdb_compactions",
            "Total number of compactions that were executed.",
            &m.compactions,
        );
        c(
            reg,
            "appliance_tsdb_compactions_failed",
            "Total number of compactions that failed.",
            &m.compactions_failed,
        );
        reg.register(
            "appliance_tsdb_compaction_duration_seconds",
            "Duration of compaction runs.",
            m.compaction_duration.clone(),
        );
        c(
            reg,
            "appliance_tsdb_time_retentions",
            "Number of times that blocks were deleted because the maximum time limit was exceeded.",
            &m.time_retentions,
        );
        c(reg, "appliance_tsdb_size_retentions", "Number of times that blocks were deleted because the maximum number of bytes was exceeded.", &m.size_retentions);
        g(
            reg,
            "appliance_tsdb_storage_blocks_bytes",
            "The number of bytes that are currently used for local storage by all blocks.",
            &m.blocks_bytes,
        );
        g(
            reg,
            "appliance_tsdb_storage_bytes",
            "Bytes of blocks plus write-ahead log, the figure size retention compares.",
            &m.storage_bytes,
        );
        g(
            reg,
            "appliance_tsdb_retention_limit_bytes",
            "Max number of bytes to be retained in the tsdb blocks, configured 0 means disabled.",
            &m.retention_limit_bytes,
        );
        g(
            reg,
            "appliance_tsdb_lowest_timestamp_seconds",
            "Lowest timestamp value stored in the database.",
            &m.lowest_timestamp,
        );
        g(
            reg,
            "appliance_tsdb_head_min_time",
            "Minimum time bound of the head block (ms).",
            &m.head_min_time,
        );
        g(
            reg,
            "appliance_tsdb_head_max_time",
            "Maximum timestamp of the head block (ms).",
            &m.head_max_time,
        );
        c(
            reg,
            "appliance_tsdb_blocks_quarantined",
            "Blocks moved aside because a check failed.",
            &m.quarantined,
        );
        c(
            reg,
            "appliance_tsdb_checksum_failures",
            "Checksum or structure failures found in blocks.",
            &m.checksum_failures,
        );
        c(
            reg,
            "appliance_tsdb_head_compactions",
            "Blocks cut from the head.",
            &m.head_cuts,
        );
        c(
            reg,
            "appliance_tsdb_head_compactions_failed",
            "Failed attempts to cut a block from the head.",
            &m.head_cuts_failed,
        );
        c(
            reg,
            "appliance_tsdb_tombstone_cleanups",
            "Blocks rewritten without their tombstones.",
            &m.tombstone_cleanups,
        );
    }

    pub(super) fn update_gauges(&self) {
        let m = &self.inner.metrics;
        let blocks = self.inner.blocks.read();
        let bytes: u64 = blocks.iter().map(|b| b.size()).sum();
        m.blocks_loaded.set(blocks.len() as i64);
        m.blocks_bytes.set(bytes as i64);
        let wal = self.inner.head.wal_size();
        m.storage_bytes.set((bytes + wal) as i64);
        m.retention_limit_bytes
            .set(self.inner.opts.read().retention_bytes as i64);
        let (hmin, hmax) = self.inner.head.time_range();
        let lowest = blocks
            .first()
            .map(|b| b.meta().min_time)
            .unwrap_or(hmin)
            .min(hmin);
        if lowest != i64::MAX {
            m.lowest_timestamp.set(lowest.div_euclid(1000));
        }
        if hmin != i64::MAX {
            m.head_min_time.set(hmin);
            m.head_max_time.set(hmax);
        }
    }

    /// Cardinality of the whole store (blocks and head together) and of the head alone.
    pub fn stats(&self, limit: usize) -> TsdbStats {
        let mut st = self.inner.head.stats(limit);
        let blocks = self.inner.blocks.read().clone();
        let mut store = StoreStats {
            min_time: i64::MAX,
            max_time: i64::MIN,
            wal_bytes: self.inner.head.wal_size(),
            quarantined: self.inner.quarantined.lock().clone(),
            ..Default::default()
        };
        let (hmin, hmax) = self.inner.head.time_range();
        store.min_time = hmin;
        store.max_time = hmax;
        store.head = HeadFigures {
            num_series: st.num_series,
            num_label_pairs: st.num_label_pairs,
            chunk_count: st.chunk_count,
            min_time: if st.num_series == 0 { i64::MAX } else { hmin },
            max_time: if st.num_series == 0 { i64::MIN } else { hmax },
        };
        store.chunk_count = st.chunk_count;
        store.num_label_pairs = st.num_label_pairs;
        if !blocks.is_empty() {
            // Count each distinct series once, whichever blocks (and the head) hold it.
            let mut seen: HashSet<u64> = HashSet::new();
            let mut by_metric: HashMap<String, u64> = HashMap::new();
            let mut by_pair: HashMap<(String, String), u64> = HashMap::new();
            let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            let mut add = |labels: &Labels| {
                if !seen.insert(labels.stable_hash()) {
                    return;
                }
                *by_metric
                    .entry(labels.metric_name().to_string())
                    .or_default() += 1;
                for l in labels.iter() {
                    *by_pair
                        .entry((l.name.to_string(), l.value.to_string()))
                        .or_default() += 1;
                    values
                        .entry(l.name.to_string())
                        .or_default()
                        .insert(l.value.to_string());
                }
            };
            for s in self.inner.head.series(&[], i64::MIN, i64::MAX) {
                add(&s);
            }
            for b in &blocks {
                store.blocks.push(info(b));
                store.blocks_bytes += b.size();
                store.num_samples += b.meta().stats.num_samples;
                store.chunk_count += b.meta().stats.num_chunks;
                match b.all_series() {
                    Ok(all) => {
                        if let (Some(first), Some(last)) = (
                            all.iter()
                                .filter_map(|s| s.chunks.first())
                                .map(|c| c.min_t)
                                .min(),
                            all.iter()
                                .filter_map(|s| s.chunks.last())
                                .map(|c| c.max_t)
                                .max(),
                        ) {
                            store.min_time = store.min_time.min(first);
                            store.max_time = store.max_time.max(last);
                        }
                        for s in &all {
                            add(&s.labels);
                        }
                    }
                    Err(e) => {
                        crate::failure!(warn, "storage", "block_index", ulid = %b.meta().ulid, error = %e, "block index unreadable")
                    }
                }
            }
            store.num_series = seen.len() as u64;
            store.num_label_pairs = by_pair.len() as u64;
            let top = |mut v: Vec<(String, u64)>| {
                v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                v.truncate(limit);
                v
            };
            st.series_count_by_metric_name = top(by_metric.into_iter().collect());
            st.series_count_by_label_value_pair = top(by_pair
                .iter()
                .map(|((n, v), c)| (format!("{n}={v}"), *c))
                .collect());
            st.label_value_count_by_label_name = top(values
                .iter()
                .map(|(n, v)| (n.clone(), v.len() as u64))
                .collect());
            st.memory_in_bytes_by_label_name = top(values
                .keys()
                .map(|n| {
                    let bytes = by_pair
                        .iter()
                        .filter(|((k, _), _)| k == n)
                        .map(|((_, v), c)| v.len() as u64 * c)
                        .sum();
                    (n.clone(), bytes)
                })
                .collect());
        } else {
            store.num_series = st.num_series;
        }
        store.num_samples += self.inner.head.num_samples();
        if store.min_time > store.max_time {
            store.min_time = i64::MAX;
            store.max_time = i64::MIN;
        }
        st.store = store;
        st
    }

    /// Label pairs of series that start or end inside a block's range (more than five minutes
    /// from its edges): the series that come and go, which is what drives cardinality up.
    pub fn churn(&self, limit: usize) -> Vec<(String, u64)> {
        let slack = 5 * 60 * 1000;
        let mut by_pair: HashMap<String, u64> = HashMap::new();
        for b in self.inner.blocks.read().iter() {
            let Ok(all) = b.all_series() else { continue };
            for s in all {
                let (Some(first), Some(last)) = (s.chunks.first(), s.chunks.last()) else {
                    continue;
                };
                if first.min_t > b.meta().min_time + slack || last.max_t < b.meta().max_time - slack
                {
                    for l in s.labels.iter() {
                        *by_pair
                            .entry(format!("{}={}", l.name, l.value))
                            .or_default() += 1;
                    }
                }
            }
        }
        let mut v: Vec<(String, u64)> = by_pair.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(limit);
        v
    }
}
