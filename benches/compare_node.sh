#!/usr/bin/env bash
# One node collection, side by side: Debian's node_exporter and the appliance's built-in node
# collector answer N scrapes each on the same host; prints wall-clock latency per scrape
# (median and p90, from curl), CPU time per scrape (utime+stime of the serving process, from
# /proc), page size and RSS, and the ratios. The appliance is measured at /metrics/node and on
# the collector's own port (listen_address). node_exporter is measured twice: with its
# defaults and limited to the collectors the appliance implements. Everything stays on
# 127.0.0.1.
#
#   bash benches/compare_node.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-300}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet
. benches/measure.sh
ours="conntrack cpu cpufreq diskstats entropy filefd filesystem hwmon loadavg meminfo netdev netstat os pressure sockstat stat thermal_zone time uname vmstat"
/usr/bin/prometheus-node-exporter --web.listen-address=127.0.0.1:19100 >/dev/null 2>&1 &
ne_pid=$!
same=()
for c in $ours; do same+=("--collector.$c"); done
/usr/bin/prometheus-node-exporter --web.listen-address=127.0.0.1:19102 --collector.disable-defaults "${same[@]}" >/dev/null 2>&1 &
ne2_pid=$!
# A long interval keeps the scrape loop's own collections out of the measurement.
printf 'global: {scrape_interval: 1h}\ncollectors: {appliance: {enabled: false}, node: {enabled: true, listen_address: "127.0.0.1:19181"}, containers: {enabled: false}, postgres: {enabled: false}, redis: {enabled: false}, celery: {enabled: false}}\n' >"$work/a.yml"
./target/release/appliance run --config "$work/a.yml" --data-dir "$work/data" --listen 127.0.0.1:19180 >/dev/null 2>&1 &
app_pid=$!
for u in 127.0.0.1:19100/metrics 127.0.0.1:19102/metrics 127.0.0.1:19180/metrics/node 127.0.0.1:19181/metrics; do
  wait_url "http://$u"
done

measure node_exporter "$ne_pid" http://127.0.0.1:19100/metrics
measure node_exporter_same "$ne2_pid" http://127.0.0.1:19102/metrics
measure appliance "$app_pid" http://127.0.0.1:19180/metrics/node
# The same collector on its own port (collectors.node.listen_address), as a prometheus.yml
# written for node_exporter scrapes it.
measure appliance_port "$app_pid" http://127.0.0.1:19181/metrics

print_results
awk '{rss[$1] = $7} END {printf "appliance / node_exporter RSS %.2fx\n", rss["appliance"] / rss["node_exporter"]}' "$work/results"
ratio appliance node_exporter
ratio appliance node_exporter_same
ratio appliance_port node_exporter
