#!/usr/bin/env bash
# Storage budgets, side by side with Debian's Prometheus on identical data, in one run:
#
#  1. bytes per sample on disk after compaction: a simulated day of node_exporter-like data
#     (the series of a real node_exporter 1.5 page, every 15 s; counters climb at per-series
#     rates with jitter, most gauges hold still, some wander) imported by both tools
#     (`promtool tsdb create-blocks-from openmetrics`, `appliance tsdb import openmetrics`), each
#     then started on its store until compaction settles; block bytes / samples.
#  2. resident memory per active head series, and startup with SERIES series in the WAL: both
#     scrape the same SERIES-series page three times, are stopped with SIGKILL, and are restarted
#     on their data; RSS after the scrapes / SERIES, and the time from start to /-/ready.
#
#   bash benches/compare_storage.sh [SERIES]      (default 1000000; everything on 127.0.0.1)
set -euo pipefail
cd "$(dirname "$0")/.."
series=${1:-1000000}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release --quiet
app=./target/release/appliance

wait_ready() { for _ in $(seq 1 6000); do curl -sf "127.0.0.1:$1/-/ready" >/dev/null && return 0; sleep 0.05; done; return 1; }
blocks_bytes() { find "$1" -mindepth 2 -maxdepth 2 -type f \( -name index -o -name chunks -o -path '*/chunks/*' -o -name meta.json -o -name tombstones \) -printf '%s\n' 2>/dev/null | awk '{s+=$1} END {print s+0}'; }
blocks_bytes_prom() { find "$1" -path "$1/wal" -prune -o -path "$1/chunks_head" -prune -o -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }
nblocks() { find "$1" -mindepth 2 -maxdepth 2 -name meta.json | wc -l; }

echo "== 1. bytes per sample after compaction (one day of node_exporter-like data, 15 s)"
python3 benches/gen/node_day.py "$work/day.om" ../shared/testdata/exporters/node_exporter.txt
samples=$(grep -vc '^#' "$work/day.om")
promtool tsdb create-blocks-from openmetrics -q "$work/day.om" "$work/prom1" >/dev/null
$app tsdb import openmetrics "$work/day.om" --data-dir "$work/app1" >/dev/null
echo "global: {}" > "$work/prom.yml"
prometheus --config.file="$work/prom.yml" --storage.tsdb.path="$work/prom1" --storage.tsdb.retention.time=100y \
  --web.listen-address=127.0.0.1:19092 >/dev/null 2>&1 &
ppid=$!
wait_ready 19092
# Prometheus compacts backfilled blocks on its minute tick; wait for a compaction, then until
# the block count settles.
prev=-1
for _ in $(seq 1 60); do
  c=$(curl -s 127.0.0.1:19092/metrics | awk '/^prometheus_tsdb_compactions_total /{print $2}')
  n=$(nblocks "$work/prom1")
  [ "${c:-0}" != 0 ] && [ "$n" = "$prev" ] && break
  prev=$n; sleep 5
done
kill $ppid; wait $ppid 2>/dev/null || true
pb=$(blocks_bytes_prom "$work/prom1"); ab=$(blocks_bytes "$work/app1")
printf 'samples %d; prometheus %d blocks %d bytes (%.3f B/sample); appliance %d blocks %d bytes (%.3f B/sample); ratio %.2f\n' \
  "$samples" "$(nblocks "$work/prom1")" "$pb" "$(echo "$pb/$samples" | bc -l)" "$(nblocks "$work/app1")" "$ab" "$(echo "$ab/$samples" | bc -l)" "$(echo "$ab/$pb" | bc -l)"

echo "== 2. $series head series: RSS per series, restart to ready"
python3 benches/gen/page.py "$work/page.txt" "$series"
(cd "$work" && exec python3 -m http.server 19102 --bind 127.0.0.1 >/dev/null 2>&1) &
sleep 1
cat > "$work/p2.yml" <<YML
global: {scrape_interval: 20s, scrape_timeout: 19s}
scrape_configs:
  - job_name: big
    metrics_path: /page.txt
    static_configs: [{targets: ['127.0.0.1:19102']}]
YML
cat > "$work/a2.yml" <<YML
global: {scrape_interval: 20s, scrape_timeout: 19s}
collectors: {appliance: {enabled: false}}
scrape_configs:
  - job_name: big
    metrics_path: /page.txt
    static_configs: [{targets: ['127.0.0.1:19102']}]
YML
scraped() { curl -s "127.0.0.1:$1/api/v1/query?query=count(count_over_time(up%5B10m%5D)%3E%3D3)" | grep -q '"value":\[[0-9.]*,"1"\]'; }
start_prom() { prometheus --config.file="$work/p2.yml" --storage.tsdb.path="$work/prom2" --storage.tsdb.retention.time=100y --web.listen-address=127.0.0.1:19093 >>"$work/prom2.log" 2>&1 & echo $!; }
start_app() { $app run --config "$work/a2.yml" --data-dir "$work/app2" --listen 127.0.0.1:19083 >>"$work/app2.log" 2>&1 & echo $!; }
for who in prom app; do
  if [ $who = prom ]; then pid=$(start_prom); port=19093; else pid=$(start_app); port=19083; fi
  wait_ready $port || { echo "$who did not get ready:"; tail -5 "$work/${who}2.log"; exit 1; }
  for _ in $(seq 1 120); do scraped $port && break; sleep 1; done
  scraped $port || { echo "$who: no three scrapes in time"; exit 1; }
  rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  kill -9 $pid
  while kill -0 $pid 2>/dev/null; do sleep 0.05; done
  s=$(date +%s%N)
  if [ $who = prom ]; then pid=$(start_prom); else pid=$(start_app); fi
  wait_ready $port || { echo "$who did not get ready:"; tail -5 "$work/${who}2.log"; exit 1; }
  e=$(date +%s%N)
  ready_ms=$(( (e - s) / 1000000 ))
  rss2=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  kill $pid
  while kill -0 $pid 2>/dev/null; do sleep 0.05; done
  printf '%-10s RSS after 3 scrapes %8d KiB (%.0f B/series); restart to ready %6d ms (RSS then %d KiB)\n' \
    $who "$rss" "$(echo "$rss*1024/$series" | bc -l)" "$ready_ms" "$rss2"
  eval "${who}_rss=$rss ${who}_ready=$ready_ms"
done
printf 'appliance/prometheus: RSS %.2f, restart to ready %.2f\n' "$(echo "$app_rss/$prom_rss" | bc -l)" "$(echo "$app_ready/$prom_ready" | bc -l)"
