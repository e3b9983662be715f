#!/usr/bin/env bash
# One node collection, side by side: Debian's node_exporter and the appliance's built-in node
# collector answer N scrapes each on the same host; prints wall-clock latency per scrape
# (median and p90, from curl), CPU time per scrape (utime+stime of the serving process, from
# /proc), page size and RSS, and the ratios. node_exporter is measured twice: with its
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
ours="conntrack cpu cpufreq diskstats entropy filefd filesystem hwmon loadavg meminfo netdev netstat os pressure sockstat stat thermal_zone time uname vmstat"
/usr/bin/prometheus-node-exporter --web.listen-address=127.0.0.1:19100 >/dev/null 2>&1 &
ne_pid=$!
same=()
for c in $ours; do same+=("--collector.$c"); done
/usr/bin/prometheus-node-exporter --web.listen-address=127.0.0.1:19102 --collector.disable-defaults "${same[@]}" >/dev/null 2>&1 &
ne2_pid=$!
# A long interval keeps the scrape loop's own collections out of the measurement.
printf 'global: {scrape_interval: 1h}\ncollectors: {appliance: {enabled: false}, node: {enabled: true}, containers: {enabled: false}}\n' >"$work/a.yml"
./target/release/appliance run --config "$work/a.yml" --data-dir "$work/data" --listen 127.0.0.1:19180 >/dev/null 2>&1 &
app_pid=$!
for u in 127.0.0.1:19100/metrics 127.0.0.1:19102/metrics 127.0.0.1:19180/metrics/node; do
  for _ in $(seq 1 100); do curl -sf "http://$u" >/dev/null && break; sleep 0.1; done
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

measure() { # name pid url
  local name=$1 pid=$2 url=$3
  for _ in $(seq 1 10); do curl -s "$url" >/dev/null; done
  local c0 c1
  c0=$(cpu_ticks "$pid")
  for _ in $(seq 1 "$n"); do curl -s -o /dev/null -w '%{time_total}\n' "$url"; done >"$work/$name.lat"
  c1=$(cpu_ticks "$pid")
  local hz
  hz=$(getconf CLK_TCK)
  local cpu_ms
  cpu_ms=$(awk -v a="$c0" -v b="$c1" -v n="$n" -v hz="$hz" 'BEGIN {printf "%.3f", (b - a) * 1000 / hz / n}')
  local med p90
  med=$(sort -n "$work/$name.lat" | awk -v n="$n" 'NR == int(n / 2) + 1 {printf "%.3f", $1 * 1000}')
  p90=$(sort -n "$work/$name.lat" | awk -v n="$n" 'NR == int(n * 0.9) {printf "%.3f", $1 * 1000}')
  local bytes series
  bytes=$(curl -s "$url" | wc -c)
  series=$(curl -s "$url" | grep -vc '^#')
  echo "$name $med $p90 $cpu_ms $bytes $series $(rss_kb "$pid")" >>"$work/results"
}

measure node_exporter "$ne_pid" http://127.0.0.1:19100/metrics
measure node_exporter_same "$ne2_pid" http://127.0.0.1:19102/metrics
measure appliance "$app_pid" http://127.0.0.1:19180/metrics/node

echo "N=$n scrapes each"
printf '%-20s %12s %12s %14s %10s %8s %9s\n' who median_ms p90_ms cpu_ms/scrape bytes series rss_kb
while read -r who med p90 cpu bytes series rss; do
  printf '%-20s %12s %12s %14s %10s %8s %9s\n' "$who" "$med" "$p90" "$cpu" "$bytes" "$series" "$rss"
done <"$work/results"
awk '
  {med[$1] = $2; cpu[$1] = $4; rss[$1] = $7}
  END {
    printf "appliance / node_exporter (defaults):         latency %.2fx, CPU %.2fx, RSS %.2fx\n", med["appliance"] / med["node_exporter"], cpu["appliance"] / cpu["node_exporter"], rss["appliance"] / rss["node_exporter"]
    printf "appliance / node_exporter (same collectors):  latency %.2fx, CPU %.2fx\n", med["appliance"] / med["node_exporter_same"], cpu["appliance"] / cpu["node_exporter_same"]
  }' "$work/results"
