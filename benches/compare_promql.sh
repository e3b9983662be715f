#!/usr/bin/env bash
# Range-query speed, side by side: the same 1,000 series x 24 h at 15 s go into Debian's
# Prometheus (blocks built by promtool) and into the appliance's engine; both run the same three
# range queries (a rate sum, a histogram_quantile, a subquery) over the whole day at a 1 m step. Prints Prometheus's median time next to
# criterion's figures for ours. Everything stays on 127.0.0.1.
#
#   bash benches/compare_promql.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
day=86400000
python3 benches/gen/promql_day.py "$work/data.om"
promtool tsdb create-blocks-from openmetrics -q "$work/data.om" "$work/prom"
echo "global: {}" > "$work/prometheus.yml"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom" --storage.tsdb.retention.time=100y \
  --web.listen-address=127.0.0.1:19091 >/dev/null 2>&1 &
for _ in $(seq 1 300); do curl -sf 127.0.0.1:19091/-/ready >/dev/null && break; sleep 0.1; done
cargo build --release --quiet
./target/release/appliance tsdb import openmetrics "$work/data.om" --data-dir "$work/app" >/dev/null
printf 'storage:\n  retention:\n    time: 100y\ncollectors:\n  appliance:\n    enabled: false\n' > "$work/appliance.yml"
./target/release/appliance run --config "$work/appliance.yml" --data-dir "$work/app" --listen 127.0.0.1:19081 2>/dev/null &
for _ in $(seq 1 600); do curl -sf 127.0.0.1:19081/-/ready >/dev/null && break; sleep 0.1; done
q1='sum by (mode) (rate(node_cpu_seconds_total[5m]))'
q2='histogram_quantile(0.9, sum by (job, le) (rate(request_seconds_bucket[5m])))'
q3='max_over_time(sum by (mode) (rate(node_cpu_seconds_total[2m]))[30m:1m])'
for q in "$q1" "$q2" "$q3"; do
  for target in prometheus:19091 appliance:19081; do
    port=${target#*:}
    curl -sf -G 127.0.0.1:$port/api/v1/query_range --data-urlencode "query=$q" -d start=600 -d end=$(( day / 1000 - 60 )) -d step=60 >/dev/null
    times=()
    for _ in 1 2 3 4 5 6 7; do
      s=$(date +%s%N)
      curl -sf -G 127.0.0.1:$port/api/v1/query_range --data-urlencode "query=$q" -d start=600 -d end=$(( day / 1000 - 60 )) -d step=60 >/dev/null
      e=$(date +%s%N)
      times+=($(( (e - s) / 1000000 )))
    done
    median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 4p)
    echo "${target%%:*}: $q: median ${median} ms over HTTP"
  done
done
# The engine alone (criterion), on the same file:
PROMQL_BENCH_OM="$work/data.om" cargo bench --bench promql -- --warm-up-time 1 --measurement-time 5 2>&1 | grep -E "^range_24h|time:"
