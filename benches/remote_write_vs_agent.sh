#!/usr/bin/env bash
# Remote-write throughput against the real tool, in one run on one machine: samples sent per
# CPU-second by the appliance and by Debian's `prometheus --enable-feature=agent`, both
# scraping the same target every second and sending to the same Prometheus receiver (with
# different external labels, so their series do not collide). CPU is user + system time of
# each sender's process over the measured span; the receiver's is not counted.
#   cargo build --release && bash benches/remote_write_vs_agent.sh     # SERIES=20000 SECS=60
set -euo pipefail
cd "$(dirname "$0")/.."
series=${SERIES:-20000}
secs=${SECS:-60}
bin=${APPLIANCE_BIN:-target/release/appliance}
[ -x "$bin" ] || { echo "build first: cargo build --release"; exit 1; }
command -v prometheus >/dev/null || { echo "needs Debian's prometheus"; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pt=$(port); pr=$(port); pa=$(port); pp=$(port)

# The target: $series gauges in 200 families, as a static text page.
python3 - "$series" > "$work/metrics.txt" <<'PY'
import sys
n = int(sys.argv[1])
for f in range(200):
    print(f"# TYPE load_family_{f} gauge")
    for i in range(n // 200):
        print(f'load_family_{f}{{instance_id="{i}",zone="z{i % 7}"}} {i * 1.5 + f}')
PY
(cd "$work" && exec python3 -m http.server "$pt" --bind 127.0.0.1 >/dev/null 2>&1) & pids+=($!)

cat > "$work/recv.yml" <<Y
global: {scrape_interval: 1m}
Y
prometheus --config.file="$work/recv.yml" --storage.tsdb.path="$work/recv" \
  --web.listen-address=127.0.0.1:$pr --web.enable-remote-write-receiver >/dev/null 2>&1 & pids+=($!)

scrape="scrape_configs: [{job_name: load, metrics_path: /metrics.txt, static_configs: [{targets: ['127.0.0.1:$pt']}]}]"
cat > "$work/agent.yml" <<Y
global: {scrape_interval: 1s, scrape_timeout: 1s, external_labels: {sender: agent}}
$scrape
remote_write: [{url: 'http://127.0.0.1:$pr/api/v1/write'}]
Y
prometheus --enable-feature=agent --config.file="$work/agent.yml" --storage.agent.path="$work/agent" \
  --web.listen-address=127.0.0.1:$pp >/dev/null 2>&1 & agent=$!; pids+=($agent)

cat > "$work/app.yml" <<Y
global: {scrape_interval: 1s, scrape_timeout: 1s, external_labels: {sender: appliance}}
collectors: {appliance: {enabled: false}, node: {enabled: false}, containers: {enabled: false}, postgres: {enabled: false}, redis: {enabled: false}, celery: {enabled: false}}
$scrape
remote_write: [{url: 'http://127.0.0.1:$pr/api/v1/write'}]
Y
APPLIANCE_ADMIN_PASSWORD=bench "$bin" run --config "$work/app.yml" --data-dir "$work/app" \
  --listen 127.0.0.1:$pa >"$work/app.log" 2>&1 & app=$!; pids+=($app)

metric() { curl -s "http://$1/metrics" | awk -v m="$2" '$1 ~ "^"m"({|$)" {s += $NF} END {printf "%.0f", s}'; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "warming up (15 s)…"; sleep 15
t0=$(date +%s.%N); ca0=$(cpu $app); cg0=$(cpu $agent)
sa0=$(metric 127.0.0.1:$pa appliance_remote_storage_samples_total)
sg0=$(metric 127.0.0.1:$pp prometheus_remote_storage_samples_total)
[ -n "${PERF_OUT:-}" ] && (perf record -F 199 --call-graph dwarf,16384 -p $app -o "$PERF_OUT" -- sleep "$secs" >/dev/null 2>&1 &)
sleep "$secs"
t1=$(date +%s.%N); ca1=$(cpu $app); cg1=$(cpu $agent)
sa1=$(metric 127.0.0.1:$pa appliance_remote_storage_samples_total)
sg1=$(metric 127.0.0.1:$pp prometheus_remote_storage_samples_total)
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
python3 - <<PY
hz = $hz
wall = $t1 - $t0
a_s, g_s = $sa1 - $sa0, $sg1 - $sg0
a_c, g_c = ($ca1 - $ca0) / hz, ($cg1 - $cg0) / hz
print(f"{'':12}{'samples':>12}{'cpu s':>8}{'samples/cpu-s':>15}{'RSS MB':>8}")
print(f"{'appliance':12}{a_s:>12}{a_c:>8.2f}{a_s / max(a_c, 0.01):>15.0f}{$(rss $app) / 1024:>8.0f}")
print(f"{'prom agent':12}{g_s:>12}{g_c:>8.2f}{g_s / max(g_c, 0.01):>15.0f}{$(rss $agent) / 1024:>8.0f}")
print(f"over {wall:.0f} s, {$series} series at 1 s; ratio (appliance / agent, samples per CPU-second): "
      f"{(a_s / max(a_c, 0.01)) / (g_s / max(g_c, 0.01)):.2f}x")
PY
