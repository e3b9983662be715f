//! node_exporter's `filesystem` and `diskstats` collectors.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{NodeCollector, Out};

/// Debian's node_exporter 1.5 `--collector.filesystem.mount-points-exclude` default.
pub(super) const MOUNT_POINTS_EXCLUDE: &str =
    r"^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
/// node_exporter 1.5's `--collector.filesystem.fs-types-exclude` default.
pub(super) const FS_TYPES_EXCLUDE: &str = r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$";
/// node_exporter 1.5's `--collector.diskstats.device-exclude` default.
pub(super) const DEVICE_EXCLUDE: &str = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";
/// How long a statfs may take before its mount point counts as stuck (node_exporter's
/// `--collector.filesystem.mount-timeout`).
const MOUNT_TIMEOUT: Duration = Duration::from_secs(5);

/// Mount points whose statfs has not returned yet: reported as `device_error 1` without
/// asking again until the hung call returns, so a dead NFS server costs one thread, not one
/// per scrape.
static STUCK: Mutex<Option<HashSet<String>>> = Mutex::new(None);

struct FsStat {
    size: f64,
    free: f64,
    avail: f64,
    files: f64,
    files_free: f64,
}

fn statfs(path: &Path) -> Option<FsStat> {
    let s = rustix::fs::statvfs(path).ok()?;
    let bs = s.f_frsize as f64;
    Some(FsStat {
        size: s.f_blocks as f64 * bs,
        free: s.f_bfree as f64 * bs,
        avail: s.f_bavail as f64 * bs,
        files: s.f_files as f64,
        files_free: s.f_ffree as f64,
    })
}

/// statfs with a deadline; `None` when it failed or is stuck.
fn statfs_timeout(mount_point: &str, path: std::path::PathBuf) -> Option<FsStat> {
    if STUCK
        .lock()
        .as_ref()
        .is_some_and(|s| s.contains(mount_point))
    {
        return None;
    }
    let (tx, rx) = mpsc::channel();
    let mp = mount_point.to_string();
    let spawned = std::thread::Builder::new()
        .name("statfs".into())
        .spawn(move || {
            let r = statfs(&path);
            // The receiver is gone when the call was declared stuck: clear the mark.
            if tx.send(r).is_err() {
                if let Some(s) = STUCK.lock().as_mut() {
                    s.remove(&mp);
                }
            }
        });
    if spawned.is_err() {
        return None;
    }
    match rx.recv_timeout(MOUNT_TIMEOUT) {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(
                mount_point,
                "statfs did not return in time; mount point marked stuck"
            );
            STUCK
                .lock()
                .get_or_insert_with(HashSet::new)
                .insert(mount_point.to_string());
            None
        }
    }
}

/// fstab(5) escapes in /proc/mounts.
fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t")
}

impl NodeCollector {
    pub(super) fn filesystem(&self, out: &mut Out) -> Result<(), String> {
        let text =
            Self::read(&self.proc("1/mounts")).or_else(|_| Self::read(&self.proc("mounts")))?;
        let mp_ex = &self.filters.mount_points_exclude;
        let fs_ex = &self.filters.fs_types_exclude;
        let rootfs = Path::new(&self.roots.rootfs);
        let mut seen = HashSet::new();
        for line in text.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() < 4 {
                return Err(format!("malformed mount point information: {line:?}"));
            }
            let device = parts[0];
            let mut mount_point = unescape_mount(parts[1]);
            // Inside a container the host's mounts are seen under the root prefix.
            if rootfs != Path::new("/") {
                if let Ok(rel) = Path::new(&mount_point).strip_prefix(rootfs) {
                    mount_point = format!("/{}", rel.display());
                }
            }
            let fstype = parts[2];
            let options = parts[3];
            if mp_ex.is_match(&mount_point) || fs_ex.is_match(fstype) {
                continue;
            }
            if !seen.insert((device, mount_point.clone(), fstype, options)) {
                continue;
            }
            let labels = [
                ("device", device),
                ("fstype", fstype),
                ("mountpoint", mount_point.as_str()),
            ];
            let path = rootfs.join(mount_point.trim_start_matches('/'));
            let st = statfs_timeout(&mount_point, path);
            let ro = options.split(',').any(|o| o == "ro");
            out.add(
                "node_filesystem_device_error",
                "Whether an error occurred while getting statistics for the given device.",
                "gauge",
                &labels,
                if st.is_some() { 0.0 } else { 1.0 },
            );
            out.add(
                "node_filesystem_readonly",
                "Filesystem read-only status.",
                "gauge",
                &labels,
                if ro { 1.0 } else { 0.0 },
            );
            let Some(st) = st else { continue };
            for (name, help, v) in [
                ("size_bytes", "Filesystem size in bytes.", st.size),
                ("free_bytes", "Filesystem free space in bytes.", st.free),
                (
                    "avail_bytes",
                    "Filesystem space available to non-root users in bytes.",
                    st.avail,
                ),
                ("files", "Filesystem total file nodes.", st.files),
                (
                    "files_free",
                    "Filesystem total free file nodes.",
                    st.files_free,
                ),
            ] {
                out.add(
                    &format!("node_filesystem_{name}"),
                    help,
                    "gauge",
                    &labels,
                    v,
                );
            }
        }
        Ok(())
    }

    pub(super) fn diskstats(&self, out: &mut Out) -> Result<(), String> {
        const SECTOR: f64 = 512.0;
        const MS: f64 = 0.001;
        // (name, help, type, scale), in /proc/diskstats column order after the device name.
        const COLS: [(&str, &str, &str, f64); 17] = [
            (
                "reads_completed_total",
                "The total number of reads completed successfully.",
                "counter",
                1.0,
            ),
            (
                "reads_merged_total",
                "The total number of reads merged.",
                "counter",
                1.0,
            ),
            (
                "read_bytes_total",
                "The total number of bytes read successfully.",
                "counter",
                SECTOR,
            ),
            (
                "read_time_seconds_total",
                "The total number of seconds spent by all reads.",
                "counter",
                MS,
            ),
            (
                "writes_completed_total",
                "The total number of writes completed successfully.",
                "counter",
                1.0,
            ),
            (
                "writes_merged_total",
                "The number of writes merged.",
                "counter",
                1.0,
            ),
            (
                "written_bytes_total",
                "The total number of bytes written successfully.",
                "counter",
                SECTOR,
            ),
            (
                "write_time_seconds_total",
                "This is the total number of seconds spent by all writes.",
                "counter",
                MS,
            ),
            (
                "io_now",
                "The number of I/Os currently in progress.",
                "gauge",
                1.0,
            ),
            (
                "io_time_seconds_total",
                "Total seconds spent doing I/Os.",
                "counter",
                MS,
            ),
            (
                "io_time_weighted_seconds_total",
                "The weighted # of seconds spent doing I/Os.",
                "counter",
                MS,
            ),
            (
                "discards_completed_total",
                "The total number of discards completed successfully.",
                "counter",
                1.0,
            ),
            (
                "discards_merged_total",
                "The total number of discards merged.",
                "counter",
                1.0,
            ),
            (
                "discarded_sectors_total",
                "The total number of sectors discarded successfully.",
                "counter",
                1.0,
            ),
            (
                "discard_time_seconds_total",
                "This is the total number of seconds spent by all discards.",
                "counter",
                MS,
            ),
            (
                "flush_requests_total",
                "The total number of flush requests completed successfully",
                "counter",
                1.0,
            ),
            (
                "flush_requests_time_seconds_total",
                "This is the total number of seconds spent by all flush requests.",
                "counter",
                MS,
            ),
        ];
        let text = Self::read(&self.proc("diskstats"))?;
        let exclude = &self.filters.disk_device_exclude;
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 7 {
                return Err(format!("diskstats: short line {line:?}"));
            }
            let (major, minor, dev) = (f[0], f[1], f[2]);
            if exclude.is_match(dev) {
                continue;
            }
            let udev = self.udev_props(major, minor);
            let g = |k: &str| udev.get(k).map(String::as_str).unwrap_or("");
            out.add(
                "node_disk_info",
                "Info of /sys/block/<block_device>.",
                "gauge",
                &[
                    ("device", dev),
                    ("major", major),
                    ("minor", minor),
                    ("path", g("ID_PATH")),
                    ("wwn", g("ID_WWN")),
                    ("model", g("ID_MODEL")),
                    ("serial", g("ID_SERIAL_SHORT")),
                    ("revision", g("ID_REVISION")),
                ],
                1.0,
            );
            if let Some(dm) = udev.get("DM_NAME") {
                out.add(
                    "node_disk_device_mapper_info",
                    "Info about disk device mapper.",
                    "gauge",
                    &[
                        ("device", dev),
                        ("name", dm),
                        ("uuid", g("DM_UUID")),
                        ("vg_name", g("DM_VG_NAME")),
                        ("lv_name", g("DM_LV_NAME")),
                        ("lv_layer", g("DM_LV_LAYER")),
                    ],
                    1.0,
                );
            }
            if !g("ID_ATA").is_empty() {
                for (key, name, help) in [
                    (
                        "ID_ATA_FEATURE_SET_WRITE_CACHE",
                        "node_disk_ata_write_cache",
                        "ATA disk has a write cache.",
                    ),
                    (
                        "ID_ATA_FEATURE_SET_WRITE_CACHE_ENABLED",
                        "node_disk_ata_write_cache_enabled",
                        "ATA disk has its write cache enabled.",
                    ),
                    (
                        "ID_ATA_ROTATION_RATE_RPM",
                        "node_disk_ata_rotation_rate_rpm",
                        "ATA disk rotation rate in RPMs.",
                    ),
                ] {
                    if let Some(v) = udev.get(key).and_then(|v| v.parse::<f64>().ok()) {
                        out.add(name, help, "gauge", &[("device", dev)], v);
                    }
                }
            }
            for (col, (name, help, kind, scale)) in f[3..].iter().zip(COLS.iter()) {
                let v: f64 = col.parse().unwrap_or(0.0);
                out.add(
                    &format!("node_disk_{name}"),
                    help,
                    kind,
                    &[("device", dev)],
                    v * scale,
                );
            }
        }
        Ok(())
    }

    /// udev's properties of a block device (`E:KEY=value` lines), for `node_disk_info`.
    fn udev_props(&self, major: &str, minor: &str) -> HashMap<String, String> {
        let p = Path::new(&self.roots.rootfs).join(format!("run/udev/data/b{major}:{minor}"));
        let Ok(text) = std::fs::read_to_string(p) else {
            return HashMap::new();
        };
        text.lines()
            .filter_map(|l| l.strip_prefix("E:"))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}
