#!/usr/bin/env bash
# One PostgreSQL and one Redis collection, side by side: Debian's postgres_exporter and
# redis_exporter and the appliance's built-in collectors answer N scrapes each against the same
# local servers (127.0.0.1:5432 as postgres, 127.0.0.1:6379); prints latency (median, p90), CPU
# time of the serving process per scrape, page size, RSS and the ratios. Everything stays on
# 127.0.0.1.
#
#   bash benches/compare_exporters.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-300}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet
. benches/measure.sh
dsn="postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable"
DATA_SOURCE_NAME="$dsn" /usr/bin/prometheus-postgres-exporter --web.listen-address=127.0.0.1:19187 >/dev/null 2>&1 &
pe_pid=$!
/usr/bin/prometheus-redis-exporter --web.listen-address=127.0.0.1:19121 --redis.addr=redis://127.0.0.1:6379 >/dev/null 2>&1 &
re_pid=$!
# A long interval keeps the scrape loop's own collections out of the measurement.
cat >"$work/a.yml" <<YML
global: {scrape_interval: 1h}
collectors:
  appliance: {enabled: false}
  node: {enabled: false}
  containers: {enabled: false}
  celery: {enabled: false}
  postgres: {enabled: true, instances: [{dsn: '$dsn'}]}
  redis: {enabled: true, instances: [{url: 'redis://127.0.0.1:6379'}]}
YML
./target/release/appliance run --config "$work/a.yml" --data-dir "$work/data" --listen 127.0.0.1:19180 >/dev/null 2>&1 &
app_pid=$!
for u in 127.0.0.1:19187/metrics 127.0.0.1:19121/metrics 127.0.0.1:19180/metrics/postgres; do
  wait_url "http://$u"
done

measure postgres_exporter "$pe_pid" http://127.0.0.1:19187/metrics
measure appliance_postgres "$app_pid" http://127.0.0.1:19180/metrics/postgres
measure redis_exporter "$re_pid" http://127.0.0.1:19121/metrics
measure appliance_redis "$app_pid" http://127.0.0.1:19180/metrics/redis

print_results
ratio appliance_postgres postgres_exporter
ratio appliance_redis redis_exporter
