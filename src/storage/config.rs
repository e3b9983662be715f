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
}

/// `storage.retention`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Keep samples this long (default 15d).
    pub time: Duration,
    /// Keep at most this many bytes (0 = no limit); enforced once blocks are persisted.
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
