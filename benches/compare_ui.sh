#!/usr/bin/env bash
# Page weight and time to interactive, cold cache, in Debian's Chromium: the appliance's
# Overview against Prometheus's own UI (Debian's build: the classic /graph page), both on
# the same machine in the same run. Needs chromium and web/node_modules (`npm ci` in web/).
# Usage: bash benches/compare_ui.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release --locked -q
printf 'global: {scrape_interval: 5s}\nscrape_configs:\n  - job_name: self\n    static_configs: [{targets: ["127.0.0.1:19390"]}]\n' >"$work/prom.yml"
/usr/bin/prometheus --config.file="$work/prom.yml" --storage.tsdb.path="$work/prom" \
  --web.listen-address=127.0.0.1:19390 >"$work/prom.log" 2>&1 &
APPLIANCE_ADMIN_PASSWORD=bench ./target/release/appliance run --listen 127.0.0.1:19391 \
  --data-dir "$work/app" >"$work/app.log" 2>&1 &
for u in http://127.0.0.1:19390/-/ready http://127.0.0.1:19391/-/ready; do
  for _ in $(seq 1 100); do curl -sf "$u" >/dev/null && break; sleep 0.1; done
done
# Both pages show data once each has scraped: wait for it rather than for a fixed time.
for u in "http://127.0.0.1:19390/api/v1/query?query=up" "http://127.0.0.1:19391/api/v1/query?query=node_load1"; do
  for _ in $(seq 1 300); do curl -sf "$u" | grep -q '"value"' && break; sleep 0.1; done
done
cd web
{
  node tests/page_weight.mjs appliance-overview http://127.0.0.1:19391/ .stat-value bench
  node tests/page_weight.mjs prometheus-graph http://127.0.0.1:19390/graph/ textarea
} | tee "$work/results"
echo "(name bytes-on-wire requests ms-to-ready; median of 5 cold loads)"
awk '{b[$1]=$2; t[$1]=$4} END {printf "appliance/prometheus: bytes %.2fx, time %.2fx\n", b["appliance-overview"]/b["prometheus-graph"], t["appliance-overview"]/t["prometheus-graph"]}' "$work/results"
