//! node_exporter's `netstat`, `sockstat` and `conntrack` collectors.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::{NodeCollector, Out};

/// node_exporter 1.5's `--collector.netstat.fields` default.
const NETSTAT_FIELDS: &str = r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";

/// protocol → field → value.
type Stats = BTreeMap<String, BTreeMap<String, String>>;

/// `/proc/net/netstat` and `/proc/net/snmp`: a header line of names, then a line of values,
/// both prefixed with the protocol.
fn parse_pairs(text: &str, into: &mut Stats) -> Result<(), String> {
    let mut lines = text.lines();
    while let Some(names) = lines.next() {
        let Some(values) = lines.next() else {
            return Err(format!("odd number of lines after {names:?}"));
        };
        let (proto, names) = names.split_once(':').unwrap_or(("", names));
        let (_, values) = values.split_once(':').unwrap_or(("", values));
        let e = into.entry(proto.to_string()).or_default();
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            e.insert(n.to_string(), v.to_string());
        }
    }
    Ok(())
}

/// `/proc/net/snmp6`: `Ip6InReceives 123`, the protocol ending at the first `6`.
fn parse_snmp6(text: &str, into: &mut Stats) {
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(k), Some(v)) = (f.next(), f.next()) else {
            continue;
        };
        if let Some(i) = k.find('6') {
            into.entry(k[..=i].to_string())
                .or_default()
                .insert(k[i + 1..].to_string(), v.to_string());
        }
    }
}

impl NodeCollector {
    pub(super) fn netstat(&self, out: &mut Out) -> Result<(), String> {
        let mut stats = Stats::new();
        parse_pairs(&Self::read(&self.proc("net/netstat"))?, &mut stats)?;
        parse_pairs(&Self::read(&self.proc("net/snmp"))?, &mut stats)?;
        // Absent when IPv6 is disabled, which is not an error.
        if let Ok(t) = std::fs::read_to_string(self.proc("net/snmp6")) {
            parse_snmp6(&t, &mut stats);
        }
        // Compiled once: compiling this alternation cost more than reading the files.
        static FIELDS: LazyLock<Result<Regex, regex::Error>> =
            LazyLock::new(|| Regex::new(NETSTAT_FIELDS));
        let fields = FIELDS.as_ref().map_err(|e| e.to_string())?;
        for (proto, kv) in &stats {
            for (k, v) in kv {
                let key = format!("{proto}_{k}");
                if !fields.is_match(&key) {
                    continue;
                }
                let v: f64 = v
                    .parse()
                    .map_err(|_| format!("netstat: {key}: bad value {v:?}"))?;
                out.add(
                    &format!("node_netstat_{key}"),
                    &format!("Statistic {proto}{k}."),
                    "untyped",
                    &[],
                    v,
                );
            }
        }
        Ok(())
    }

    pub(super) fn sockstat(&self, out: &mut Out) -> Result<(), String> {
        let page = rustix::param::page_size() as f64;
        let mut emit = |text: &str| {
            for line in text.lines() {
                let Some((proto, rest)) = line.split_once(':') else {
                    continue;
                };
                let f: Vec<&str> = rest.split_whitespace().collect();
                for kv in f.chunks(2) {
                    let [k, v] = kv else { continue };
                    let Ok(v) = v.parse::<f64>() else { continue };
                    if proto == "sockets" {
                        if *k == "used" {
                            out.add(
                                "node_sockstat_sockets_used",
                                "Number of IPv4 sockets in use.",
                                "gauge",
                                &[],
                                v,
                            );
                        }
                        continue;
                    }
                    out.add(
                        &format!("node_sockstat_{proto}_{k}"),
                        &format!("Number of {proto} sockets in state {k}."),
                        "gauge",
                        &[],
                        v,
                    );
                    if *k == "mem" {
                        out.add(
                            &format!("node_sockstat_{proto}_mem_bytes"),
                            &format!("Number of {proto} sockets in state mem_bytes."),
                            "gauge",
                            &[],
                            v * page,
                        );
                    }
                }
            }
        };
        emit(&Self::read(&self.proc("net/sockstat"))?);
        if let Ok(t) = std::fs::read_to_string(self.proc("net/sockstat6")) {
            emit(&t);
        }
        Ok(())
    }

    pub(super) fn conntrack(&self, out: &mut Out) -> Result<(), String> {
        let num = |f: &str| self.proc_num(&format!("sys/net/netfilter/{f}"));
        out.add(
            "node_nf_conntrack_entries",
            "Number of currently allocated flow entries for connection tracking.",
            "gauge",
            &[],
            num("nf_conntrack_count")?,
        );
        out.add(
            "node_nf_conntrack_entries_limit",
            "Maximum size of connection tracking table.",
            "gauge",
            &[],
            num("nf_conntrack_max")?,
        );
        const STATS: [(&str, &str); 8] = [
            ("found", "Number of searched entries which were successful."),
            ("invalid", "Number of packets seen which can not be tracked."),
            ("ignore", "Number of packets seen which are already connected to a conntrack entry."),
            ("insert", "Number of entries inserted into the list."),
            ("insert_failed", "Number of entries for which list insertion was attempted but failed."),
            ("drop", "Number of packets dropped due to conntrack failure."),
            ("early_drop", "Number of dropped conntrack entries to make room for new ones, if maximum table size was reached."),
            ("search_restart", "Number of conntrack table lookups which had to be restarted due to hashtable resizes."),
        ];
        // Per-CPU rows of hex counters under a header naming the columns; summed.
        let text = Self::read(&self.proc("net/stat/nf_conntrack"))?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
        let mut sums = vec![0.0; header.len()];
        for line in lines {
            for (i, x) in line.split_whitespace().enumerate() {
                if let (Some(s), Ok(v)) = (sums.get_mut(i), u64::from_str_radix(x, 16)) {
                    *s += v as f64;
                }
            }
        }
        for (name, help) in STATS {
            if let Some(i) = header.iter().position(|h| *h == name) {
                out.add(
                    &format!("node_nf_conntrack_stat_{name}"),
                    help,
                    "gauge",
                    &[],
                    sums[i],
                );
            }
        }
        Ok(())
    }
}

/// `/sys/class/net/<iface>` attributes node_exporter's `netclass` collector turns into
/// `node_network_<name>` gauges and counters (procfs's sysfs names → node_exporter's).
const NETCLASS_FIELDS: &[(&str, &str, &str)] = &[
    ("addr_assign_type", "address_assign_type", "gauge"),
    ("carrier", "carrier", "gauge"),
    ("carrier_changes", "carrier_changes_total", "counter"),
    ("carrier_up_count", "carrier_up_changes_total", "counter"),
    (
        "carrier_down_count",
        "carrier_down_changes_total",
        "counter",
    ),
    ("dev_id", "device_id", "gauge"),
    ("dormant", "dormant", "gauge"),
    ("flags", "flags", "gauge"),
    ("ifindex", "iface_id", "gauge"),
    ("iflink", "iface_link", "gauge"),
    ("link_mode", "iface_link_mode", "gauge"),
    ("mtu", "mtu_bytes", "gauge"),
    ("name_assign_type", "name_assign_type", "gauge"),
    ("netdev_group", "net_dev_group", "gauge"),
    ("tx_queue_len", "transmit_queue_length", "gauge"),
    ("type", "protocol_type", "gauge"),
];

/// An integer as Go's `strconv.ParseInt(s, 0, 64)` reads it: decimal, or `0x` hex (`flags`,
/// `dev_id`), `0o`/leading-0 octal, `0b` binary; a sign allowed.
fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let lower = body.to_ascii_lowercase();
    let v = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(b) = lower.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if lower.len() > 1 && lower.starts_with('0') {
        i64::from_str_radix(&lower[1..], 8).ok()?
    } else {
        lower.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

impl NodeCollector {
    /// node_exporter's `netclass`: every device under `/sys/class/net` (loopback included),
    /// attributes that cannot be read (EINVAL from a device that is down) left out.
    pub(super) fn netclass(&self, out: &mut Out) -> Result<(), String> {
        let dir = self.sys("class/net");
        let mut devices: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .flatten()
            .filter(|e| e.file_type().map(|t| !t.is_file()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        devices.sort();
        for dev in &devices {
            let attr = |name: &str| -> Option<String> {
                std::fs::read_to_string(dir.join(dev).join(name))
                    .ok()
                    .map(|s| s.trim().to_string())
            };
            let operstate = attr("operstate").unwrap_or_default();
            out.add(
                "node_network_up",
                "Value is 1 if operstate is 'up', 0 otherwise.",
                "gauge",
                &[("device", dev)],
                if operstate == "up" { 1.0 } else { 0.0 },
            );
            let (address, broadcast, duplex, ifalias) = (
                attr("address").unwrap_or_default(),
                attr("broadcast").unwrap_or_default(),
                attr("duplex").unwrap_or_default(),
                attr("ifalias").unwrap_or_default(),
            );
            out.add(
                "node_network_info",
                "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
                "gauge",
                &[
                    ("address", &address),
                    ("broadcast", &broadcast),
                    ("device", dev),
                    ("duplex", &duplex),
                    ("ifalias", &ifalias),
                    ("operstate", &operstate),
                ],
                1.0,
            );
            for (file, name, kind) in NETCLASS_FIELDS {
                let Some(v) = attr(file).and_then(|s| parse_go_int(&s)) else {
                    continue;
                };
                out.add(
                    &format!("node_network_{name}"),
                    &format!("Network device property: {name}"),
                    kind,
                    &[("device", dev)],
                    v as f64,
                );
            }
            // Mb/s; -1 (unknown) is kept, as node_exporter 1.5 does without
            // --collector.netclass.ignore-invalid-speed.
            if let Some(mbps) = attr("speed").and_then(|s| parse_go_int(&s)) {
                out.add(
                    "node_network_speed_bytes",
                    "Network device property: speed_bytes",
                    "gauge",
                    &[("device", dev)],
                    (mbps.saturating_mul(1_000_000) / 8) as f64,
                );
            }
        }
        Ok(())
    }

    /// node_exporter's `arp`: entries of `/proc/net/arp` per device.
    pub(super) fn arp(&self, out: &mut Out) -> Result<(), String> {
        let text = Self::read(&self.proc("net/arp"))?;
        let mut per: BTreeMap<&str, u32> = BTreeMap::new();
        for line in text.lines() {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 6 {
                return Err("unexpected ARP table format".into());
            }
            if cols[0] != "IP" {
                *per.entry(cols[cols.len() - 1]).or_default() += 1;
            }
        }
        for (dev, n) in per {
            out.add(
                "node_arp_entries",
                "ARP entries by device",
                "gauge",
                &[("device", dev)],
                f64::from(n),
            );
        }
        Ok(())
    }

    /// node_exporter's `softnet`: `/proc/net/softnet_stat`, one line of hex counters per CPU.
    pub(super) fn softnet(&self, out: &mut Out) -> Result<(), String> {
        let text = Self::read(&self.proc("net/softnet_stat"))?;
        for (cpu, line) in text.lines().enumerate() {
            let cols: Vec<u64> = line
                .split_whitespace()
                .map(|x| {
                    u64::from_str_radix(x, 16).map_err(|_| format!("softnet_stat: bad value {x:?}"))
                })
                .collect::<Result<_, _>>()?;
            if cols.len() < 3 {
                return Err(format!(
                    "softnet_stat: {} columns in line {}",
                    cols.len(),
                    cpu + 1
                ));
            }
            let cpu = cpu.to_string();
            for (i, name, help) in [
                (
                    0,
                    "node_softnet_processed_total",
                    "Number of processed packets",
                ),
                (1, "node_softnet_dropped_total", "Number of dropped packets"),
                (
                    2,
                    "node_softnet_times_squeezed_total",
                    "Number of times processing packets ran out of quota",
                ),
            ] {
                out.add(name, help, "counter", &[("cpu", &cpu)], cols[i] as f64);
            }
        }
        Ok(())
    }

    /// node_exporter's `udp_queues`: bytes queued in UDP sockets, summed over
    /// `/proc/net/udp` and `/proc/net/udp6` (`tx_queue:rx_queue`, hex, fifth column).
    pub(super) fn udp_queues(&self, out: &mut Out) -> Result<(), String> {
        let mut any = false;
        for (file, ip) in [("net/udp", "v4"), ("net/udp6", "v6")] {
            let Ok(text) = std::fs::read_to_string(self.proc(file)) else {
                continue;
            };
            any = true;
            let (mut tx, mut rx) = (0u64, 0u64);
            for line in text.lines().skip(1) {
                let Some(q) = line.split_whitespace().nth(4) else {
                    return Err(format!("{file}: short line {line:?}"));
                };
                let (t, r) = q
                    .split_once(':')
                    .and_then(|(t, r)| {
                        Some((
                            u64::from_str_radix(t, 16).ok()?,
                            u64::from_str_radix(r, 16).ok()?,
                        ))
                    })
                    .ok_or_else(|| format!("{file}: bad queue column {q:?}"))?;
                tx += t;
                rx += r;
            }
            let help = "Number of allocated memory in the kernel for UDP datagrams in bytes.";
            out.add(
                "node_udp_queues",
                help,
                "gauge",
                &[("ip", ip), ("queue", "tx")],
                tx as f64,
            );
            out.add(
                "node_udp_queues",
                help,
                "gauge",
                &[("ip", ip), ("queue", "rx")],
                rx as f64,
            );
        }
        if any {
            Ok(())
        } else {
            Err("neither /proc/net/udp nor udp6".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_go_int;

    #[test]
    fn integers_read_as_go_reads_them() {
        assert_eq!(parse_go_int("0x1003"), Some(4099));
        assert_eq!(parse_go_int("1400"), Some(1400));
        assert_eq!(parse_go_int("-1"), Some(-1));
        assert_eq!(parse_go_int("0"), Some(0));
        assert_eq!(parse_go_int("010"), Some(8));
        assert_eq!(parse_go_int("0b11"), Some(3));
        assert_eq!(parse_go_int("up"), None);
        assert_eq!(parse_go_int(""), None);
    }

    use super::*;

    #[test]
    fn snmp6_protocol_ends_at_the_six() {
        let mut s = Stats::new();
        parse_snmp6(
            "Ip6InOctets 10\nUdpLite6InErrors 2\nIcmp6OutMsgs 3\n",
            &mut s,
        );
        assert_eq!(s["Ip6"]["InOctets"], "10");
        assert_eq!(s["UdpLite6"]["InErrors"], "2");
        assert_eq!(s["Icmp6"]["OutMsgs"], "3");
    }

    #[test]
    fn odd_netstat_is_an_error() {
        let mut s = Stats::new();
        assert!(parse_pairs("Tcp: A B\n", &mut s).is_err());
    }
}
