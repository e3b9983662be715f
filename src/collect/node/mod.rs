//! The host collector: node_exporter's names, labels, types and HELP texts, read from procfs
//! and sysfs under a configurable root (`/proc`, `/sys` and `/etc` by default, or a host's
//! mounted at `/host/...` inside a container, or a fixture tree in tests).
//!
//! node_exporter's default collectors that apply to a typical Linux server (see `SUBS`), each
//! reporting `node_scrape_collector_success` and `node_scrape_collector_duration_seconds` like
//! node_exporter. Reads files only; never writes to the host or touches storage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{CollectError, CollectFuture, Collector, Page, PageBuilder as Out};
use crate::model::exposition::Format;

mod disk;
mod hw;
mod kernel;
mod net;
mod textfile;

pub use textfile::DEFAULT_DIR as TEXTFILE_DEFAULT_DIR;

/// Where the host's files are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeRoots {
    /// procfs (default `/proc`).
    pub procfs: String,
    /// sysfs (default `/sys`).
    pub sysfs: String,
    /// The root file system, for `/etc/os-release` (default `/`).
    pub rootfs: String,
    /// The textfile collector's directory (node_exporter's `--collector.textfile.directory`);
    /// None is Debian's `/var/lib/prometheus/node-exporter`, where a missing directory is no
    /// error; "" reads none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub textfile_directory: Option<String>,
}

impl Default for NodeRoots {
    fn default() -> Self {
        NodeRoots {
            procfs: "/proc".into(),
            sysfs: "/sys".into(),
            rootfs: "/".into(),
            textfile_directory: None,
        }
    }
}

/// An unanchored regular expression from the config (node_exporter's filter flags), checked
/// when the config is read.
#[derive(Clone, Debug)]
pub struct Pattern(regex::Regex);

impl Pattern {
    /// Compiles `src`.
    pub fn new(src: &str) -> Result<Self, String> {
        regex::Regex::new(src).map(Pattern).map_err(|e| {
            format!(
                "invalid regular expression {src:?}: {}",
                e.to_string().lines().last().unwrap_or("")
            )
        })
    }

    /// Whether `s` contains a match.
    pub fn is_match(&self, s: &str) -> bool {
        self.0.is_match(s)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, o: &Self) -> bool {
        self.0.as_str() == o.0.as_str()
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Pattern::new(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

/// What the filesystem and diskstats collectors leave out; the defaults are Debian's
/// node_exporter 1.5 flags (Debian adds `/run`, `/mnt` and `/media` to upstream's mount-point
/// exclude), so a Debian host shows the same series under both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeFilters {
    /// `--collector.filesystem.mount-points-exclude`.
    pub mount_points_exclude: Pattern,
    /// `--collector.filesystem.fs-types-exclude`.
    pub fs_types_exclude: Pattern,
    /// `--collector.diskstats.device-exclude`.
    pub disk_device_exclude: Pattern,
    /// `--collector.netdev.device-exclude`.
    pub netdev_device_exclude: Pattern,
}

impl Default for NodeFilters {
    fn default() -> Self {
        let p = |s| Pattern::new(s).unwrap_or_else(|e| unreachable!("built-in pattern: {e}"));
        NodeFilters {
            mount_points_exclude: p(disk::MOUNT_POINTS_EXCLUDE),
            fs_types_exclude: p(disk::FS_TYPES_EXCLUDE),
            disk_device_exclude: p(disk::DEVICE_EXCLUDE),
            netdev_device_exclude: p("^lo$"),
        }
    }
}

/// USER_HZ: /proc/stat counts CPU time in these ticks on every Linux architecture we run on.
const USER_HZ: f64 = 100.0;

/// The host collector.
#[derive(Clone)]
pub struct NodeCollector {
    roots: NodeRoots,
    filters: NodeFilters,
}

type Sub = fn(&NodeCollector, &mut Out) -> Result<(), String>;

const SUBS: &[(&str, Sub)] = &[
    ("arp", NodeCollector::arp),
    ("conntrack", NodeCollector::conntrack),
    ("cpu", NodeCollector::cpu),
    ("cpufreq", NodeCollector::cpufreq),
    ("diskstats", NodeCollector::diskstats),
    ("entropy", NodeCollector::entropy),
    ("filefd", NodeCollector::filefd),
    ("filesystem", NodeCollector::filesystem),
    ("hwmon", NodeCollector::hwmon),
    ("loadavg", NodeCollector::loadavg),
    ("meminfo", NodeCollector::meminfo),
    ("netclass", NodeCollector::netclass),
    ("netdev", NodeCollector::netdev),
    ("netstat", NodeCollector::netstat),
    ("os", NodeCollector::os),
    ("pressure", NodeCollector::pressure),
    ("selinux", NodeCollector::selinux),
    ("sockstat", NodeCollector::sockstat),
    ("softnet", NodeCollector::softnet),
    ("stat", NodeCollector::stat),
    ("textfile", NodeCollector::textfile),
    ("thermal_zone", NodeCollector::thermal_zone),
    ("time", NodeCollector::time),
    ("timex", NodeCollector::timex),
    ("udp_queues", NodeCollector::udp_queues),
    ("uname", NodeCollector::uname),
    ("vmstat", NodeCollector::vmstat),
];

impl NodeCollector {
    /// A collector reading under `roots`, leaving out what `filters` exclude.
    pub fn new(roots: NodeRoots, filters: NodeFilters) -> Self {
        NodeCollector { roots, filters }
    }

    fn proc(&self, rel: &str) -> PathBuf {
        Path::new(&self.roots.procfs).join(rel)
    }

    fn sys(&self, rel: &str) -> PathBuf {
        Path::new(&self.roots.sysfs).join(rel)
    }

    fn read(p: &Path) -> Result<String, String> {
        std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// Renders the page at the current moment (`now_s`, Unix seconds, for the time collector).
    pub fn render(&self, now_s: f64) -> String {
        let mut out = Out::default();
        for (name, f) in SUBS {
            let t0 = Instant::now();
            let ok = match f(self, &mut out) {
                Ok(()) => 1.0,
                Err(e) => {
                    tracing::debug!(collector = name, error = %e, "node collector failed");
                    0.0
                }
            };
            if *name == "time" {
                out.add(
                    "node_time_seconds",
                    "System time in seconds since epoch (1970).",
                    "gauge",
                    &[],
                    now_s,
                );
            }
            out.add(
                "node_scrape_collector_duration_seconds",
                "node_exporter: Duration of a collector scrape.",
                "gauge",
                &[("collector", name)],
                t0.elapsed().as_secs_f64(),
            );
            out.add(
                "node_scrape_collector_success",
                "node_exporter: Whether a collector succeeded.",
                "gauge",
                &[("collector", name)],
                ok,
            );
        }
        out.render()
    }

    fn cpu(&self, out: &mut Out) -> Result<(), String> {
        let text = Self::read(&self.proc("stat"))?;
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let Some(name) = f.next() else { continue };
            let Some(cpu) = name.strip_prefix("cpu").filter(|c| !c.is_empty()) else {
                continue;
            };
            let v: Vec<f64> = f
                .map(|x| x.parse::<f64>().unwrap_or(0.0) / USER_HZ)
                .collect();
            let get = |i: usize| v.get(i).copied().unwrap_or(0.0);
            for (i, mode) in [
                "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
            ]
            .iter()
            .enumerate()
            {
                out.add(
                    "node_cpu_seconds_total",
                    "Seconds the CPUs spent in each mode.",
                    "counter",
                    &[("cpu", cpu), ("mode", mode)],
                    get(i),
                );
            }
            for (i, mode) in [(8, "user"), (9, "nice")] {
                out.add(
                    "node_cpu_guest_seconds_total",
                    "Seconds the CPUs spent in guests (VMs) for each mode.",
                    "counter",
                    &[("cpu", cpu), ("mode", mode)],
                    get(i),
                );
            }
        }
        self.cpu_throttles(out);
        Ok(())
    }

    fn meminfo(&self, out: &mut Out) -> Result<(), String> {
        let text = Self::read(&self.proc("meminfo"))?;
        for line in text.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            let mut parts = rest.split_whitespace();
            let Some(v) = parts.next().and_then(|x| x.parse::<f64>().ok()) else {
                continue;
            };
            let key = key.replace('(', "_").replace(')', "");
            let (name, v) = match parts.next() {
                Some("kB") => (format!("{key}_bytes"), v * 1024.0),
                _ => (key.clone(), v),
            };
            out.add(
                &format!("node_memory_{name}"),
                &format!("Memory information field {name}."),
                "gauge",
                &[],
                v,
            );
        }
        Ok(())
    }

    fn loadavg(&self, out: &mut Out) -> Result<(), String> {
        let text = Self::read(&self.proc("loadavg"))?;
        let v: Vec<f64> = text
            .split_whitespace()
            .take(3)
            .map(|x| x.parse().map_err(|_| format!("loadavg: bad value {x:?}")))
            .collect::<Result<_, _>>()?;
        for (i, (n, h)) in [
            ("node_load1", "1m load average."),
            ("node_load5", "5m load average."),
            ("node_load15", "15m load average."),
        ]
        .iter()
        .enumerate()
        {
            out.add(n, h, "gauge", &[], v.get(i).copied().unwrap_or(0.0));
        }
        Ok(())
    }

    fn stat(&self, out: &mut Out) -> Result<(), String> {
        let text = Self::read(&self.proc("stat"))?;
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let key = f.next().unwrap_or("");
            let v = f.next().and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
            let (name, help, kind) = match key {
                "btime" => (
                    "node_boot_time_seconds",
                    "Node boot time, in unixtime.",
                    "gauge",
                ),
                "ctxt" => (
                    "node_context_switches_total",
                    "Total number of context switches.",
                    "counter",
                ),
                "processes" => ("node_forks_total", "Total number of forks.", "counter"),
                "intr" => (
                    "node_intr_total",
                    "Total number of interrupts serviced.",
                    "counter",
                ),
                "procs_running" => (
                    "node_procs_running",
                    "Number of processes in runnable state.",
                    "gauge",
                ),
                "procs_blocked" => (
                    "node_procs_blocked",
                    "Number of processes blocked waiting for I/O to complete.",
                    "gauge",
                ),
                _ => continue,
            };
            out.add(name, help, kind, &[], v);
        }
        Ok(())
    }

    fn time(&self, out: &mut Out) -> Result<(), String> {
        out.add(
            "node_time_zone_offset_seconds",
            "System time zone offset in seconds.",
            "gauge",
            &[("time_zone", "UTC")],
            0.0,
        );
        let base = self.sys("devices/system/clocksource");
        let Ok(rd) = std::fs::read_dir(&base) else {
            return Ok(());
        };
        let mut dirs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for d in dirs {
            let name = d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Some(dev) = name.strip_prefix("clocksource") else {
                continue;
            };
            if let Ok(a) = std::fs::read_to_string(d.join("available_clocksource")) {
                for c in a.split_whitespace() {
                    out.add(
                        "node_time_clocksource_available_info",
                        "Available clocksources read from '/sys/devices/system/clocksource'.",
                        "gauge",
                        &[("clocksource", c), ("device", dev)],
                        1.0,
                    );
                }
            }
            if let Ok(c) = std::fs::read_to_string(d.join("current_clocksource")) {
                out.add(
                    "node_time_clocksource_current_info",
                    "Current clocksource read from '/sys/devices/system/clocksource'.",
                    "gauge",
                    &[("clocksource", c.trim()), ("device", dev)],
                    1.0,
                );
            }
        }
        Ok(())
    }

    fn uname(&self, out: &mut Out) -> Result<(), String> {
        let k = |f: &str| {
            std::fs::read_to_string(self.proc(&format!("sys/kernel/{f}")))
                .map(|s| s.trim().to_string())
        };
        let sysname = k("ostype").map_err(|e| e.to_string())?;
        let release = k("osrelease").map_err(|e| e.to_string())?;
        let version = k("version").map_err(|e| e.to_string())?;
        let nodename = k("hostname").unwrap_or_default();
        let domainname = k("domainname").unwrap_or_default();
        out.add(
            "node_uname_info",
            "Labeled system information as provided by the uname system call.",
            "gauge",
            &[
                ("domainname", &domainname),
                ("machine", std::env::consts::ARCH),
                ("nodename", &nodename),
                ("release", &release),
                ("sysname", &sysname),
                ("version", &version),
            ],
            1.0,
        );
        Ok(())
    }

    fn filefd(&self, out: &mut Out) -> Result<(), String> {
        let text = Self::read(&self.proc("sys/fs/file-nr"))?;
        let v: Vec<f64> = text
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() < 3 {
            return Err("file-nr: expected three numbers".into());
        }
        out.add(
            "node_filefd_allocated",
            "File descriptor statistics: allocated.",
            "gauge",
            &[],
            v[0],
        );
        out.add(
            "node_filefd_maximum",
            "File descriptor statistics: maximum.",
            "gauge",
            &[],
            v[2],
        );
        Ok(())
    }

    /// A file under procfs holding one number.
    fn proc_num(&self, rel: &str) -> Result<f64, String> {
        Self::read(&self.proc(rel))?
            .trim()
            .parse()
            .map_err(|_| format!("{rel}: not a number"))
    }

    fn entropy(&self, out: &mut Out) -> Result<(), String> {
        let num = |f: &str| self.proc_num(&format!("sys/kernel/random/{f}"));
        out.add(
            "node_entropy_available_bits",
            "Bits of available entropy.",
            "gauge",
            &[],
            num("entropy_avail")?,
        );
        out.add(
            "node_entropy_pool_size_bits",
            "Bits of entropy pool.",
            "gauge",
            &[],
            num("poolsize")?,
        );
        Ok(())
    }

    fn netdev(&self, out: &mut Out) -> Result<(), String> {
        let text = Self::read(&self.proc("net/dev"))?;
        const RX: [&str; 8] = [
            "bytes",
            "packets",
            "errs",
            "drop",
            "fifo",
            "frame",
            "compressed",
            "multicast",
        ];
        const TX: [&str; 8] = [
            "bytes",
            "packets",
            "errs",
            "drop",
            "fifo",
            "colls",
            "carrier",
            "compressed",
        ];
        for (dev, v) in super::net_dev(&text) {
            if self.filters.netdev_device_exclude.is_match(dev) {
                continue;
            }
            for (i, name) in RX.iter().chain(TX.iter()).enumerate() {
                let dir = if i < 8 { "receive" } else { "transmit" };
                let stat = format!("{dir}_{name}");
                out.add(
                    &format!("node_network_{stat}_total"),
                    &format!("Network device statistic {stat}."),
                    "counter",
                    &[("device", dev)],
                    v.get(i).copied().unwrap_or(0.0),
                );
            }
            if let Ok(x) = std::fs::read_to_string(
                self.sys(&format!("class/net/{dev}/statistics/rx_nohandler")),
            ) {
                out.add(
                    "node_network_receive_nohandler_total",
                    "Network device statistic receive_nohandler.",
                    "counter",
                    &[("device", dev)],
                    x.trim().parse().unwrap_or(0.0),
                );
            }
        }
        Ok(())
    }

    fn vmstat(&self, out: &mut Out) -> Result<(), String> {
        let text = Self::read(&self.proc("vmstat"))?;
        // node_exporter's default field selection.
        static FIELDS: std::sync::LazyLock<Result<regex::Regex, regex::Error>> =
            std::sync::LazyLock::new(|| regex::Regex::new(r"^(oom_kill|pgpg|pswp|pg.*fault).*"));
        let re = FIELDS.as_ref().map_err(|e| e.to_string())?;
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(k), Some(v)) = (f.next(), f.next()) else {
                continue;
            };
            if !re.is_match(k) {
                continue;
            }
            out.add(
                &format!("node_vmstat_{k}"),
                &format!("/proc/vmstat information field {k}."),
                "untyped",
                &[],
                v.parse().unwrap_or(0.0),
            );
        }
        Ok(())
    }

    fn pressure(&self, out: &mut Out) -> Result<(), String> {
        let total = |res: &str, kind: &str| -> Result<Option<f64>, String> {
            let text = Self::read(&self.proc(&format!("pressure/{res}")))?;
            Ok(text
                .lines()
                .find(|l| l.starts_with(kind))
                .and_then(|l| l.split_whitespace().find_map(|x| x.strip_prefix("total=")))
                .and_then(|x| x.parse::<f64>().ok())
                .map(|us| us / 1e6))
        };
        let rows = [
            (
                "cpu",
                "some",
                "node_pressure_cpu_waiting_seconds_total",
                "Total time in seconds that processes have waited for CPU time",
            ),
            (
                "io",
                "some",
                "node_pressure_io_waiting_seconds_total",
                "Total time in seconds that processes have waited due to IO congestion",
            ),
            (
                "io",
                "full",
                "node_pressure_io_stalled_seconds_total",
                "Total time in seconds no process could make progress due to IO congestion",
            ),
            (
                "memory",
                "some",
                "node_pressure_memory_waiting_seconds_total",
                "Total time in seconds that processes have waited for memory",
            ),
            (
                "memory",
                "full",
                "node_pressure_memory_stalled_seconds_total",
                "Total time in seconds no process could make progress due to memory congestion",
            ),
        ];
        for (res, kind, name, help) in rows {
            if let Some(v) = total(res, kind)? {
                out.add(name, help, "counter", &[], v);
            }
        }
        Ok(())
    }

    fn os(&self, out: &mut Out) -> Result<(), String> {
        let root = Path::new(&self.roots.rootfs);
        let text = Self::read(&root.join("etc/os-release"))
            .or_else(|_| Self::read(&root.join("usr/lib/os-release")))?;
        let mut kv: BTreeMap<String, String> = BTreeMap::new();
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                kv.insert(
                    k.trim().to_string(),
                    v.trim().trim_matches(['"', '\'']).to_string(),
                );
            }
        }
        let g = |k: &str| kv.get(k).cloned().unwrap_or_default();
        let keys = [
            "build_id",
            "id",
            "id_like",
            "image_id",
            "image_version",
            "name",
            "pretty_name",
            "variant",
            "variant_id",
            "version",
            "version_codename",
            "version_id",
        ];
        let vals: Vec<String> = keys.iter().map(|k| g(&k.to_uppercase())).collect();
        let labels: Vec<(&str, &str)> = keys
            .iter()
            .zip(vals.iter())
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        out.add(
            "node_os_info",
            "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, name, pretty_name, variant, variant_id, version, version_codename, version_id.",
            "gauge",
            &labels,
            1.0,
        );
        let version_id = g("VERSION_ID");
        let major_minor: String = version_id.split('.').take(2).collect::<Vec<_>>().join(".");
        if let Ok(v) = major_minor.parse::<f64>() {
            out.add(
                "node_os_version",
                "Metric containing the major.minor part of the OS version.",
                "gauge",
                &[
                    ("id", &g("ID")),
                    ("id_like", &g("ID_LIKE")),
                    ("name", &g("NAME")),
                ],
                v,
            );
        }
        Ok(())
    }
}

impl Collector for NodeCollector {
    fn name(&self) -> &'static str {
        "node"
    }

    fn collect(&self) -> CollectFuture<'_> {
        Box::pin(async move {
            let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
            let me = self.clone();
            let body = tokio::task::spawn_blocking(move || me.render(now))
                .await
                .map_err(|e| CollectError::Encode(e.to_string()))?;
            Ok(Page {
                body: body.into_bytes(),
                format: Format::PrometheusText,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::num;

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/collect/testdata/node")
    }

    #[test]
    fn fixture_tree_gives_the_golden_page() {
        let root = fixture();
        let c = NodeCollector::new(
            NodeRoots {
                procfs: root.join("proc").display().to_string(),
                sysfs: root.join("sys").display().to_string(),
                rootfs: root.display().to_string(),
                textfile_directory: Some(root.join("textfile").display().to_string()),
            },
            NodeFilters::default(),
        );
        let page = c.render(1_700_000_000.0);
        // Durations, the files' mtimes (set by the checkout) and the kernel clock's state
        // (a system call, not a file) vary; everything else is fixed by the fixture.
        let stable: String = page
            .lines()
            .filter(|l| {
                !l.starts_with("node_scrape_collector_duration_seconds{")
                    && !l.starts_with("node_textfile_mtime_seconds{")
                    && !l.starts_with("node_timex_")
            })
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            // The textfile HELP names the file by its path, which depends on the checkout.
            .replace(&root.display().to_string(), "<fixture>");
        crate::testsupport::assert_golden("src/collect/testdata/node/golden.prom", &stable);
        // And it parses as Prometheus text.
        let p = crate::model::exposition::Parser::new(
            page.as_bytes(),
            Format::PrometheusText,
            Default::default(),
        );
        for e in p {
            e.unwrap();
        }
    }

    #[test]
    fn go_float_format() {
        assert_eq!(num(759.37), "759.37");
        assert_eq!(num(1e21), "1e+21");
        assert_eq!(num(286356365.0), "2.86356365e+08");
        assert_eq!(num(0.00001), "1e-05");
    }
}
