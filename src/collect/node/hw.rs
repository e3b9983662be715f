//! node_exporter's `cpufreq`, `hwmon` and `thermal_zone` collectors: present on physical
//! hosts, usually absent in VMs (where they report nothing, as node_exporter does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{NodeCollector, Out};

fn read_num(p: &Path) -> Option<f64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn sorted_dirs(dir: &Path, prefix: &str) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<(String, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(prefix).then(|| (n, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// node_exporter's `cleanMetricName` for hwmon chip names.
fn clean_name(s: &str) -> String {
    let lower = s.trim().to_lowercase();
    let replaced: String = lower
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    replaced.trim_matches('_').to_string()
}

/// node_exporter's `hwmonName`: `<bus type>_<device>` from the device link, else the `name`
/// file, else `hwmonN`.
fn hwmon_chip(dir: &Path) -> String {
    if let Ok(dev) = std::fs::canonicalize(dir.join("device")) {
        let name = dev.file_name().map(|n| clean_name(&n.to_string_lossy()));
        let kind = dev
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| clean_name(&n.to_string_lossy()));
        match (kind, name) {
            (Some(k), Some(n)) if !k.is_empty() && !n.is_empty() => return format!("{k}_{n}"),
            (_, Some(n)) if !n.is_empty() => return n,
            _ => {}
        }
    }
    if let Ok(n) = std::fs::read_to_string(dir.join("name")) {
        let n = clean_name(&n);
        if !n.is_empty() {
            return n;
        }
    }
    let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    clean_name(&real.file_name().unwrap_or_default().to_string_lossy())
}

/// node_exporter's hwmon sensor types; other files in a hwmon directory are not sensors.
const HWMON_TYPES: &[&str] = &[
    "vrm",
    "beep_enable",
    "update_interval",
    "in",
    "cpu",
    "fan",
    "pwm",
    "temp",
    "curr",
    "power",
    "energy",
    "humidity",
    "intrusion",
];

/// A hwmon directory's sensor files grouped as node_exporter groups them: sensor (`temp1`) →
/// (type, property → value), from `<type><n>[_<property>]` file names.
fn hwmon_sensors(dir: &Path) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
    let mut out: BTreeMap<String, (String, BTreeMap<String, String>)> = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let f = e.file_name().to_string_lossy().into_owned();
        let kind_end = f.find(|c: char| c.is_ascii_digit()).unwrap_or(f.len());
        let (kind, rest) = f.split_at(kind_end);
        let (kind, num, prop) = match rest.split_once('_') {
            Some((n, p)) => (kind, n, p),
            None if rest.is_empty() => match kind.split_once('_') {
                // `beep_enable`, `update_interval`: whole-chip settings.
                _ if HWMON_TYPES.contains(&kind) => (kind, "", ""),
                Some((k, p)) => (k, "", p),
                None => (kind, "", ""),
            },
            None => (kind, rest, ""),
        };
        if !HWMON_TYPES.contains(&kind) {
            continue;
        }
        let Ok(v) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        out.entry(format!("{kind}{num}"))
            .or_insert_with(|| (kind.to_string(), BTreeMap::new()))
            .1
            .insert(prop.to_string(), v.trim().to_string());
    }
    out
}

/// One sensor's metrics, named and scaled as node_exporter's hwmon collector does.
fn hwmon_sensor(
    out: &mut Out,
    chip: &str,
    sensor: &str,
    kind: &str,
    props: &BTreeMap<String, String>,
) {
    let labels = [("chip", chip), ("sensor", sensor)];
    if let Some(l) = props.get("label") {
        out.add(
            "node_hwmon_sensor_label",
            "Label for given chip and sensor",
            "gauge",
            &[("chip", chip), ("label", l), ("sensor", sensor)],
            1.0,
        );
    }
    let num = |v: &str| v.parse::<f64>().ok();
    match kind {
        "beep_enable" => {
            if let Some(v) = props.get("").and_then(|v| num(v)) {
                out.add(
                    "node_hwmon_beep_enabled",
                    "Hardware beep enabled",
                    "gauge",
                    &labels,
                    v,
                );
            }
            return;
        }
        "vrm" => {
            if let Some(v) = props.get("").and_then(|v| num(v)) {
                out.add(
                    "node_hwmon_voltage_regulator_version",
                    "Hardware voltage regulator",
                    "gauge",
                    &labels,
                    v,
                );
            }
            return;
        }
        "update_interval" => {
            if let Some(v) = props.get("").and_then(|v| num(v)) {
                out.add(
                    "node_hwmon_update_interval_seconds",
                    "Hardware monitor update interval",
                    "gauge",
                    &labels,
                    v * 0.001,
                );
            }
            return;
        }
        _ => {}
    }
    let prefix = format!("node_hwmon_{kind}");
    for (element, value) in props {
        if element == "label" {
            continue;
        }
        let Some(v) = num(value) else { continue };
        let mut name = prefix.clone();
        if element == "input" {
            if props.contains_key("") {
                name.push_str("_input");
            }
        } else if !element.is_empty() {
            name.push('_');
            name.push_str(&clean_name(element));
        }
        let e = if element.is_empty() {
            "input"
        } else {
            element.as_str()
        };
        let (name, help, kind_, v) = match (kind, element.as_str()) {
            (_, "fault" | "alarm") => (
                name,
                format!("Hardware sensor {element} status ({kind})"),
                "gauge",
                v,
            ),
            (_, "beep") => (
                format!("{name}_enabled"),
                "Hardware monitor sensor has beeping enabled".to_string(),
                "gauge",
                v,
            ),
            ("in" | "cpu", _) => (
                format!("{name}_volts"),
                format!("Hardware monitor for voltage ({element})"),
                "gauge",
                v * 0.001,
            ),
            ("temp", el) if el != "type" => (
                format!("{name}_celsius"),
                format!("Hardware monitor for temperature ({e})"),
                "gauge",
                v * 0.001,
            ),
            ("curr", _) => (
                format!("{name}_amps"),
                format!("Hardware monitor for current ({element})"),
                "gauge",
                v * 0.001,
            ),
            ("energy", _) => (
                format!("{name}_joule_total"),
                format!("Hardware monitor for joules used so far ({element})"),
                "counter",
                v / 1e6,
            ),
            ("power", "accuracy") => (
                name,
                "Hardware monitor power meter accuracy, as a ratio".to_string(),
                "gauge",
                v / 1e6,
            ),
            ("power", "average_interval" | "average_interval_min" | "average_interval_max") => (
                format!("{name}_seconds"),
                format!("Hardware monitor power usage update interval ({element})"),
                "gauge",
                v * 0.001,
            ),
            ("power", _) => (
                format!("{name}_watt"),
                format!("Hardware monitor for power usage in watts ({element})"),
                "gauge",
                v / 1e6,
            ),
            ("humidity", _) => (
                name,
                format!("Hardware monitor for humidity ({element})"),
                "gauge",
                v * 0.001,
            ),
            ("fan", "input" | "min" | "max" | "target") => (
                format!("{name}_rpm"),
                format!("Hardware monitor for fan revolutions per minute ({element})"),
                "gauge",
                v,
            ),
            _ => (
                name,
                format!("Hardware monitor {kind} element {element}"),
                "gauge",
                v,
            ),
        };
        out.add(&name, &help, kind_, &labels, v);
    }
}

impl NodeCollector {
    /// The `cpu` collector's thermal-throttle counters (physical x86 hosts), read once per
    /// package and per core as node_exporter does.
    pub(super) fn cpu_throttles(&self, out: &mut Out) {
        let mut package: BTreeMap<u64, f64> = BTreeMap::new();
        let mut core: BTreeMap<(u64, u64), f64> = BTreeMap::new();
        for (name, dir) in sorted_dirs(&self.sys("devices/system/cpu"), "cpu") {
            if name[3..].parse::<u32>().is_err() {
                continue;
            }
            let id = |f: &str| read_num(&dir.join("topology").join(f)).map(|v| v as u64);
            let (Some(pkg), Some(c)) = (id("physical_package_id"), id("core_id")) else {
                continue;
            };
            let t = dir.join("thermal_throttle");
            if let std::collections::btree_map::Entry::Vacant(e) = core.entry((pkg, c)) {
                if let Some(v) = read_num(&t.join("core_throttle_count")) {
                    e.insert(v);
                }
            }
            if let std::collections::btree_map::Entry::Vacant(e) = package.entry(pkg) {
                if let Some(v) = read_num(&t.join("package_throttle_count")) {
                    e.insert(v);
                }
            }
        }
        for (pkg, v) in package {
            out.add(
                "node_cpu_package_throttles_total",
                "Number of times this CPU package has been throttled.",
                "counter",
                &[("package", &pkg.to_string())],
                v,
            );
        }
        for ((pkg, c), v) in core {
            out.add(
                "node_cpu_core_throttles_total",
                "Number of times this CPU core has been throttled.",
                "counter",
                &[("core", &c.to_string()), ("package", &pkg.to_string())],
                v,
            );
        }
    }

    pub(super) fn cpufreq(&self, out: &mut Out) -> Result<(), String> {
        const FILES: [(&str, &str, &str); 6] = [
            (
                "cpuinfo_cur_freq",
                "node_cpu_frequency_hertz",
                "Current cpu thread frequency in hertz.",
            ),
            (
                "cpuinfo_max_freq",
                "node_cpu_frequency_max_hertz",
                "Maximum cpu thread frequency in hertz.",
            ),
            (
                "cpuinfo_min_freq",
                "node_cpu_frequency_min_hertz",
                "Minimum cpu thread frequency in hertz.",
            ),
            (
                "scaling_cur_freq",
                "node_cpu_scaling_frequency_hertz",
                "Current scaled cpu thread frequency in hertz.",
            ),
            (
                "scaling_max_freq",
                "node_cpu_scaling_frequency_max_hertz",
                "Maximum scaled cpu thread frequency in hertz.",
            ),
            (
                "scaling_min_freq",
                "node_cpu_scaling_frequency_min_hertz",
                "Minimum scaled cpu thread frequency in hertz.",
            ),
        ];
        for (name, dir) in sorted_dirs(&self.sys("devices/system/cpu"), "cpu") {
            let Some(cpu) = name
                .strip_prefix("cpu")
                .filter(|c| c.parse::<u32>().is_ok())
            else {
                continue;
            };
            let d = dir.join("cpufreq");
            for (file, metric, help) in FILES {
                // sysfs gives kHz.
                if let Some(v) = read_num(&d.join(file)) {
                    out.add(metric, help, "gauge", &[("cpu", cpu)], v * 1000.0);
                }
            }
        }
        Ok(())
    }

    pub(super) fn thermal_zone(&self, out: &mut Out) -> Result<(), String> {
        let base = self.sys("class/thermal");
        for (name, dir) in sorted_dirs(&base, "thermal_zone") {
            let zone = name.trim_start_matches("thermal_zone");
            let kind = std::fs::read_to_string(dir.join("type")).unwrap_or_default();
            if let Some(t) = read_num(&dir.join("temp")) {
                out.add(
                    "node_thermal_zone_temp",
                    "Zone temperature in Celsius",
                    "gauge",
                    &[("type", kind.trim()), ("zone", zone)],
                    t / 1000.0,
                );
            }
        }
        for (name, dir) in sorted_dirs(&base, "cooling_device") {
            let dev = name.trim_start_matches("cooling_device");
            let kind = std::fs::read_to_string(dir.join("type")).unwrap_or_default();
            let labels = [("name", dev), ("type", kind.trim())];
            if let Some(v) = read_num(&dir.join("cur_state")) {
                out.add(
                    "node_cooling_device_cur_state",
                    "Current throttle state of the cooling device",
                    "gauge",
                    &labels,
                    v,
                );
            }
            if let Some(v) = read_num(&dir.join("max_state")) {
                out.add(
                    "node_cooling_device_max_state",
                    "Maximum throttle state of the cooling device",
                    "gauge",
                    &labels,
                    v,
                );
            }
        }
        Ok(())
    }

    pub(super) fn hwmon(&self, out: &mut Out) -> Result<(), String> {
        let base = self.sys("class/hwmon");
        if !base.is_dir() {
            return Err(format!("{}: not found", base.display()));
        }
        for (_, dir) in sorted_dirs(&base, "hwmon") {
            let chip = hwmon_chip(&dir);
            if let Ok(n) = std::fs::read_to_string(dir.join("name")) {
                out.add(
                    "node_hwmon_chip_names",
                    "Annotation metric for human-readable chip names",
                    "gauge",
                    &[("chip", &chip), ("chip_name", n.trim())],
                    1.0,
                );
            }
            for (sensor, (kind, props)) in hwmon_sensors(&dir) {
                hwmon_sensor(out, &chip, &sensor, &kind, &props);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chip_names_are_cleaned_like_node_exporter() {
        assert_eq!(clean_name("coretemp.0\n"), "coretemp_0");
        assert_eq!(clean_name("0000:00:18.3"), "0000:00:18_3");
        assert_eq!(clean_name("--ACPI--"), "acpi");
    }
}
