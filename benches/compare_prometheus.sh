#!/usr/bin/env bash
# Scrape-ingest cost, side by side: Debian's Prometheus and the appliance scrape the same
# targets (one synthetic 10k-series page and a real node_exporter) every second for DURATION
# seconds; prints CPU seconds, peak RSS and the ratio. Everything stays on 127.0.0.1.
#
#   bash benches/compare_prometheus.sh [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-60}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet
python3 - "$work/page.txt" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n")
    for i in range(10000):
        f.write(f'http_requests_total{{method="GET",handler="/api/v{i%100}",code="{200+i%5}"}} {i*7}\n')
PY
(cd "$work" && exec python3 -m http.server 19101 --bind 127.0.0.1 >/dev/null 2>&1) &
/usr/bin/prometheus-node-exporter --web.listen-address=127.0.0.1:19100 >/dev/null 2>&1 &
sleep 1

targets="['127.0.0.1:19101']"
cat > "$work/prometheus.yml" <<YML
global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
  - job_name: synth
    metrics_path: /page.txt
    static_configs: [{targets: $targets}]
  - job_name: node
    static_configs: [{targets: ['127.0.0.1:19100']}]
YML
cat > "$work/appliance.yml" <<YML
global: {scrape_interval: 1s, scrape_timeout: 1s}
collectors: {appliance: {enabled: false}}
scrape_configs:
  - job_name: synth
    metrics_path: /page.txt
    static_configs: [{targets: $targets}]
  - job_name: node
    static_configs: [{targets: ['127.0.0.1:19100']}]
YML

prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom" --web.listen-address=127.0.0.1:19090 >/dev/null 2>&1 &
ppid=$!
./target/release/appliance run --config "$work/appliance.yml" --data-dir "$work/app" --listen 127.0.0.1:19080 2>/dev/null &
apid=$!
sleep "$dur"
for p in 19090 19080; do curl -s "127.0.0.1:$p/api/v1/targets" | python3 -c "import json,sys; d=json.load(sys.stdin); print('$p', [(t[\"scrapePool\"], t[\"health\"], t[\"lastError\"]) for t in d[\"data\"][\"activeTargets\"]])"; done

cpu() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; }
rss() { awk '/VmHWM/{print $2}' "/proc/$1/status"; }
pc=$(cpu $ppid); pr=$(rss $ppid); ac=$(cpu $apid); ar=$(rss $apid)
echo "over ${dur}s, 2 targets (10k-series page + node_exporter), 1s interval:"
printf '%-12s cpu %6.2fs  peak RSS %8d KiB\n' prometheus "$pc" "$pr" appliance "$ac" "$ar"
awk -v pc="$pc" -v ac="$ac" -v pr="$pr" -v ar="$ar" 'BEGIN{printf "appliance/prometheus: cpu %.2f, peak RSS %.2f\n", ac/pc, ar/pr}'
