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

#[cfg(test)]
mod tests {
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
