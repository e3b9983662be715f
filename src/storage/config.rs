//! The `storage` config section.

use serde::{Deserialize, Serialize};

use crate::model::time::{ByteSize, Duration};

/// `storage:` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Data directory (default `./data`; `--data-dir` overrides).
    pub path: String,
    /// Retention limits.
    pub retention: RetentionConfig,
    /// Write-ahead log settings.
    pub wal: WalConfig,
    /// Time span of a block cut from the head (Prometheus's `--storage.tsdb.min-block-duration`,
    /// default 2h). The head and WAL hold about 1.5 of these; shorter means less memory and a
    /// shorter WAL. Meant for small machines and tests.
    #[serde(skip_serializing_if = "is_two_hours")]
    pub block_duration: Duration,
}

fn is_two_hours(d: &Duration) -> bool {
    d.as_millis() == 2 * 3600 * 1000
}

/// `storage.wal`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalConfig {
    /// How often the log is fsynced: the most acknowledged samples a crash can lose (default
    /// 1s). `0s` fsyncs every commit (every scrape), at a cost in disk writes.
    pub sync_interval: Duration,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            sync_interval: Duration::from_secs(1),
        }
    }
}

/// `storage.retention`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Keep blocks ending within this span of the newest block's end (default 15d).
    pub time: Duration,
    /// Keep at most this many bytes of WAL and blocks (0 = no limit); whole blocks are deleted.
    #[serde(skip_serializing_if = "is_zero")]
    pub size: ByteSize,
}

fn is_zero(b: &ByteSize) -> bool {
    b.0 == 0
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: "./data".into(),
            retention: RetentionConfig::default(),
            wal: WalConfig::default(),
            block_duration: Duration::from_secs(2 * 3600),
        }
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            time: Duration::from_secs(15 * 24 * 3600),
            size: ByteSize(0),
        }
    }
}
