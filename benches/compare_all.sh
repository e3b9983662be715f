#!/usr/bin/env bash
# The whole performance comparison in one command: the appliance and Debian's tools on the same
# inputs, in one run, on this machine; prints one table (figure, appliance, real tool, ratio,
# goal). Everything stays on 127.0.0.1. About 25 minutes.
#
#   bash benches/compare_all.sh              every row
#   SCALE=0.2 BIG=100000 bash benches/compare_all.sh   a quick check of the script itself
#   bash benches/compare_all.sh soak [MIN] [BLOCK]
#       RSS of both every minute at a steady 100k-series load for MIN minutes (default 30), both
#       cutting blocks of BLOCK (default 10m: the head is cut at 1.5 blocks, so a 30-minute soak
#       sees two head cuts; `2h` is both tools' default, whose first cut is at 3 h)
#
# Rows: ingest (samples per CPU-second) at 100k series every 2 s and 1M series every 10 s; RSS at
# the steady 100k load; RSS per series and WAL bytes per sample at 1M; restart to ready after
# SIGKILL and clean shutdown with 1M series; bytes per sample on disk for a node-like day;
# dashboard range queries and a subquery over 24 h; the memory of one query returning 5.76M
# samples; and the plan workload (the appliance on its embedded default config against
# Prometheus + Alertmanager + node/postgres/redis exporters on the same host). The appliance runs
# with `rule_files: []` where Prometheus has no rules, so both do the same work.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
work=$(mktemp -d)
# Tools started in subshells are not jobs of this shell: their pids are kept in $work/pids.
trap 'kill $(jobs -p) $(cat "$work/pids" 2>/dev/null) 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
cargo build --release --quiet
app=$PWD/target/release/appliance
rows=$work/rows
scale=${SCALE:-1}
big=${BIG:-1000000}
secs() { awk -v s="$1" -v k="$scale" 'BEGIN {x = int(s * k); print (x < 10 ? 10 : x)}'; }
hz=$(getconf CLK_TCK)

cpu_s() { awk -v hz="$hz" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
anon_kib() { awk '/^RssAnon/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
wait_ready() { for _ in $(seq 1 12000); do curl -sf "127.0.0.1:$1/-/ready" >/dev/null && return 0; sleep 0.05; done; echo "no /-/ready on $1" >&2; return 1; }
# Until the process has exited (a zombie counts: the tools were started from subshells, so
# init reaps them, and late).
# Until the process has exited: gone, or a zombie whose threads have all exited (the tools were
# started from subshells, so init reaps them, and late; a leader shows Z while its other threads
# still tear down, holding the data directory's lock).
wait_gone() {
  while [ -e "/proc/$1" ]; do
    [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ] && [ "$(ls "/proc/$1/task" 2>/dev/null | wc -l)" -le 1 ] && break
    sleep 0.01
  done
}
now_ms() { date +%s%3N; }
# One PromQL value (the first result's) from the tool on port $1.
q1() { curl -sf -G "127.0.0.1:$1/api/v1/query" --data-urlencode "query=$2" | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0) print "-"; else printf "%.2fx", a / b}'; }
row() { printf '%s|%s|%s|%s|%s\n' "$@" >>"$rows"; echo "  $1: appliance $2, prometheus $3 ($4)"; }
serve_dir() { (cd "$1" && exec python3 -m http.server "$2" --bind 127.0.0.1 >/dev/null 2>&1) & echo $! >>"$work/pids"; }
scrape_cfg() { # job port interval [extra yaml for the appliance]
  printf 'global: {scrape_interval: %s, scrape_timeout: %s}\nscrape_configs:\n  - job_name: %s\n    metrics_path: /page.txt\n    static_configs: [{targets: ["127.0.0.1:%s"]}]\n' "$3" "$3" "$1" "$2"
}
start_prom() { # yml data port [extra flags]
  prometheus --config.file="$1" --storage.tsdb.path="$2" --storage.tsdb.retention.time=100y \
    --web.listen-address="127.0.0.1:$3" "${@:4}" >>"$work/prom.log" 2>&1 &
  echo $! | tee -a "$work/pids"
}
start_app() { # yml data port
  "$app" run --config "$1" --data-dir "$2" --listen "127.0.0.1:$3" >>"$work/app.log" 2>&1 &
  echo $! | tee -a "$work/pids"
}
app_yml() { # from a Prometheus config: no rules, no built-in collectors (Prometheus has neither)
  { cat "$1"; printf 'rule_files: []\ncollectors: {appliance: {enabled: false}, node: {enabled: false}, containers: {enabled: false}, postgres: {enabled: false}, redis: {enabled: false}, celery: {enabled: false}}\n'; } >"$2"
}

# Both tools scrape the same page; their pids are left in AP and PP.
steady_load() { # series interval tag [block duration, both tools]
  # The page's port stays clear of the tools' 1938x/1939x and the exporters' 1950x: a page server left from an earlier
  # row on 19392 once kept Prometheus from starting for the on-disk row.
  local series=$1 interval=$2 tag=$3 block=${4:-} port=$((19600 + RANDOM % 300)) pflags=()
  mkdir -p "$work/$tag"
  python3 benches/gen/page.py "$work/$tag/page.txt" "$series"
  serve_dir "$work/$tag" "$port"
  scrape_cfg big "$port" "$interval" >"$work/$tag/p.yml"
  app_yml "$work/$tag/p.yml" "$work/$tag/a.yml"
  if [ -n "$block" ]; then
    printf 'storage: {block_duration: %s}\n' "$block" >>"$work/$tag/a.yml"
    pflags=(--storage.tsdb.min-block-duration="$block" --storage.tsdb.max-block-duration="$block")
  fi
  PP=$(start_prom "$work/$tag/p.yml" "$work/$tag/prom" 19391 "${pflags[@]}")
  AP=$(start_app "$work/$tag/a.yml" "$work/$tag/app" 19381)
  wait_ready 19391; wait_ready 19381
}

ingest_rows() { # series interval warm window tag label
  local series=$1 interval=$2 warm=$3 window=$4 tag=$5 label=$6
  steady_load "$series" "$interval" "$tag"
  sleep "$warm"
  local a0 p0 a1 p1 an pn
  a0=$(cpu_s "$AP"); p0=$(cpu_s "$PP")
  sleep "$window"
  a1=$(cpu_s "$AP"); p1=$(cpu_s "$PP")
  # Scrapes in the window, from each tool's own `up`.
  an=$(q1 19381 "count_over_time(up{job=\"big\"}[${window}s])")
  pn=$(q1 19391 "count_over_time(up{job=\"big\"}[${window}s])")
  local ar pr
  ar=$(awk -v n="$an" -v s="$series" -v c0="$a0" -v c1="$a1" 'BEGIN {printf "%.2f", n * s / (c1 - c0) / 1e6}')
  pr=$(awk -v n="$pn" -v s="$series" -v c0="$p0" -v c1="$p1" 'BEGIN {printf "%.2f", n * s / (c1 - c0) / 1e6}')
  row "ingest, $label (M samples/CPU-s)" "$ar" "$pr" "$(ratio "$ar" "$pr")" ">= 2 M"
}

# Minutes of samples a tool's head holds, from its own /metrics (prefix: appliance or prometheus).
head_span() { # port prefix
  curl -sf "127.0.0.1:$1/metrics" | awk -v p="$2" '
    $1 == p "_tsdb_head_min_time" {lo = $2} $1 == p "_tsdb_head_max_time" {hi = $2}
    END {if (lo == "" || hi == "" || hi < lo) print "-"; else printf "%.1f", (hi - lo) / 60000}'
}

soak() {
  local mins=${1:-30} block=${2:-10m}
  steady_load 100000 2s soak "$block"
  # RSS counts the file pages each process has mapped (its binary, its blocks' indexes) as
  # well as its heap; the anonymous part is the heap alone. Both rise and fall with the head
  # (it grows from 0.5 to 1.5 blocks of samples, then a block is cut from it), so the head's
  # span is printed beside them: compare minutes at the same span, e.g. just after each cut.
  echo "minute appliance_rss_mib (anon) head_min prometheus_rss_mib (anon) head_min (100k series every 2 s, blocks of $block)"
  for m in $(seq 1 "$mins"); do
    sleep 60
    printf '%6d %18d %6d %8s %18d %6d %8s\n' "$m" \
      $(( $(rss_kib "$AP") / 1024 )) $(( $(anon_kib "$AP") / 1024 )) "$(head_span 19381 appliance)" \
      $(( $(rss_kib "$PP") / 1024 )) $(( $(anon_kib "$PP") / 1024 )) "$(head_span 19391 prometheus)"
  done
}

if [ "$mode" = soak ]; then
  soak "${2:-30}" "${3:-10m}"
  exit 0
fi

# FROM=disk starts at the on-disk row (skipping ingest, memory, restart and shutdown).
if [ -z "${FROM:-}" ]; then
echo "== ingest and steady memory, 100k series every 2 s"
ingest_rows 100000 2s "$(secs 60)" "$(secs 180)" s100k "100k series at 2 s"
row "RSS at a steady 100k-series load after $(( ($(secs 60) + $(secs 180)) / 60 )) min (MiB)" $(( $(rss_kib "$AP") / 1024 )) $(( $(rss_kib "$PP") / 1024 )) "$(ratio "$(rss_kib "$AP")" "$(rss_kib "$PP")")" "<= 0.33x, flat"
kill "$AP" "$PP"; wait_gone "$AP"; wait_gone "$PP"

echo "== $big series every 10 s, then restart and shutdown"
ingest_rows "$big" 10s "$(secs 40)" "$(secs 80)" s1m "$big series at 10 s"
ar=$(rss_kib "$AP"); pr=$(rss_kib "$PP"); a_before=$ar; p_before=$pr
row "RSS per series at $big (KB)" "$(awk -v r="$ar" -v n="$big" 'BEGIN {printf "%.2f", r * 1.024 / n}')" "$(awk -v r="$pr" -v n="$big" 'BEGIN {printf "%.2f", r * 1.024 / n}')" "$(ratio "$ar" "$pr")" "<= 1 KB"
an=$(q1 19381 'count_over_time(up{job="big"}[1h])'); pn=$(q1 19391 'count_over_time(up{job="big"}[1h])')
aw=$(du -sb "$work/s1m/app/wal" | cut -f1); pw=$(du -sb "$work/s1m/prom/wal" | cut -f1)
awb=$(awk -v b="$aw" -v n="$an" -v s="$big" 'BEGIN {printf "%.2f", b / (n * s)}'); pwb=$(awk -v b="$pw" -v n="$pn" -v s="$big" 'BEGIN {printf "%.2f", b / (n * s)}')
row "WAL bytes per sample at $big ($an / $pn scrapes, series records included)" "$awb" "$pwb" "$(ratio "$awb" "$pwb")" "<= 1x"
kill -9 "$AP" "$PP"; wait_gone "$AP"; wait_gone "$PP"
s=$(now_ms); AP=$(start_app "$work/s1m/a.yml" "$work/s1m/app" 19381); wait_ready 19381; ar=$(( $(now_ms) - s ))
s=$(now_ms); PP=$(start_prom "$work/s1m/p.yml" "$work/s1m/prom" 19391); wait_ready 19391; pr=$(( $(now_ms) - s ))
row "restart to ready with $big series after SIGKILL (s)" "$(awk -v x="$ar" 'BEGIN {printf "%.1f", x / 1000}')" "$(awk -v x="$pr" 'BEGIN {printf "%.1f", x / 1000}')" "$(ratio "$ar" "$pr")" "< 5 s"
ah=$(hwm_kib "$AP"); ph=$(hwm_kib "$PP")
row "peak RSS of that restart, over RSS before the kill" "$(ratio "$ah" "$a_before")" "$(ratio "$ph" "$p_before")" "-" "about 1x (replay streams)"
# One scrape after the restart, so there are live series to mark stale.
for _ in $(seq 1 60); do [ "$(q1 19381 'count_over_time(up{job="big"}[15s])')" != 0 ] && break; sleep 0.5; done
s=$(now_ms); kill "$AP"; wait_gone "$AP"; ar=$(( $(now_ms) - s ))
s=$(now_ms); kill "$PP"; wait_gone "$PP"; pr=$(( $(now_ms) - s ))
row "clean shutdown with $big series (s; the appliance writes a stale marker for each)" "$(awk -v x="$ar" 'BEGIN {printf "%.2f", x / 1000}')" "$(awk -v x="$pr" 'BEGIN {printf "%.2f", x / 1000}')" "$(ratio "$ar" "$pr")" "< 1 s"
rm -rf "$work/s1m"
fi

echo "== bytes per sample on disk, a node-like day"
python3 benches/gen/node_day.py "$work/day.om" ../shared/testdata/exporters/node_exporter.txt
samples=$(grep -vc '^#' "$work/day.om")
promtool tsdb create-blocks-from openmetrics -q "$work/day.om" "$work/d_prom" >/dev/null
"$app" tsdb import openmetrics "$work/day.om" --data-dir "$work/d_app" >/dev/null
echo "global: {}" >"$work/empty.yml"
PP=$(start_prom "$work/empty.yml" "$work/d_prom" 19392); wait_ready 19392
# Prometheus compacts backfilled blocks on its minute tick; wait for one, then for the count to
# settle.
prev=-1
for _ in $(seq 1 60); do
  c=$(curl -s 127.0.0.1:19392/metrics | awk '/^prometheus_tsdb_compactions_total /{print $2}')
  nb=$({ find "$work/d_prom" -mindepth 2 -maxdepth 2 -name meta.json 2>/dev/null || true; } | wc -l)
  [ "${c:-0}" != 0 ] && [ "$nb" = "$prev" ] && break
  prev=$nb; sleep 5
done
kill "$PP"; wait_gone "$PP"
# (A file removed while find walks is not an error here.)
pb=$({ find "$work/d_prom" -path "$work/d_prom/wal" -prune -o -path "$work/d_prom/chunks_head" -prune -o -type f -printf '%s\n' 2>/dev/null || true; } | awk '{s+=$1} END {print s+0}')
# Every file of the block directories (those with a meta.json), nothing of the WAL.
ab=$(for d in "$work"/d_app/*/; do [ ! -f "$d/meta.json" ] || find "$d" -type f -printf '%s\n' 2>/dev/null || true; done | awk '{s+=$1} END {print s+0}')
row "bytes per sample on disk, node-like day ($samples samples)" "$(awk -v b="$ab" -v n="$samples" 'BEGIN {printf "%.3f", b / n}')" "$(awk -v b="$pb" -v n="$samples" 'BEGIN {printf "%.3f", b / n}')" "$(ratio "$ab" "$pb")" "<= 1.0 B"
rm -rf "$work/d_prom" "$work/d_app" "$work/day.om"

echo "== PromQL over 24 h at a 60 s step (1,000 series at 15 s)"
python3 benches/gen/promql_day.py "$work/q.om"
promtool tsdb create-blocks-from openmetrics -q "$work/q.om" "$work/q_prom" >/dev/null
"$app" tsdb import openmetrics "$work/q.om" --data-dir "$work/q_app" >/dev/null
printf 'storage: {retention: {time: 100y}}\nrule_files: []\ncollectors: {appliance: {enabled: false}}\n' >"$work/q_app.yml"
PP=$(start_prom "$work/empty.yml" "$work/q_prom" 19393)
AP=$(start_app "$work/q_app.yml" "$work/q_app" 19383)
wait_ready 19393; wait_ready 19383
end=$((86400 - 60))
median_ms() { # port query step
  curl -sf -G "127.0.0.1:$1/api/v1/query_range" --data-urlencode "query=$2" -d start=600 -d end=$end -d step="$3" >/dev/null
  for _ in 1 2 3 4 5; do
    local s; s=$(now_ms)
    curl -sf -G "127.0.0.1:$1/api/v1/query_range" --data-urlencode "query=$2" -d start=600 -d end=$end -d step="$3" >/dev/null
    echo $(( $(now_ms) - s ))
  done | sort -n | sed -n 3p
}
while IFS='|' read -r label q; do
  a=$(median_ms 19383 "$q" 60); p=$(median_ms 19393 "$q" 60)
  row "PromQL $label (ms, median of 5 over HTTP)" "$a" "$p" "$(ratio "$a" "$p")" "<= 0.5x"
done <<'Q'
rate sum|sum by (mode) (rate(node_cpu_seconds_total[5m]))
ratio|sum by (cpu) (rate(node_cpu_seconds_total{mode!="idle"}[5m])) / sum by (cpu) (rate(node_cpu_seconds_total[5m]))
histogram_quantile|histogram_quantile(0.9, sum by (job, le) (rate(request_seconds_bucket[5m])))
topk over increase|topk(5, sum by (cpu) (increase(node_cpu_seconds_total[1h])))
subquery|max_over_time(sum by (mode) (rate(node_cpu_seconds_total[2m]))[30m:1m])
Q
# One query returning every sample (1,000 series x 5,760 points = 5.76M): peak RSS above the
# RSS before it.
peak_mib() { # pid port
  local before; before=$(rss_kib "$1")
  echo 5 >"/proc/$1/clear_refs"
  local n
  n=$(curl -s -G "127.0.0.1:$2/api/v1/query_range" --data-urlencode 'query={__name__=~"node_cpu_seconds_total|request_seconds_bucket"}' -d start=15 -d end=86400 -d step=15 \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(len(r["values"]) for r in d["data"]["result"]) if d.get("status") == "success" else d)')
  echo "$n" >"$work/answered_$2"
  echo $(( ($(hwm_kib "$1") - before) / 1024 ))
}
a=$(peak_mib "$AP" 19383); p=$(peak_mib "$PP" 19393)
row "memory of one query returning 5.76M samples (MiB above idle)" "$a" "$p" "$(ratio "$a" "$p")" "<= 1x"
# The same data must come back, or the timings above compare different work.
an=$(cat "$work/answered_19383"); pn=$(cat "$work/answered_19393")
row "samples that query answered (the same data in both)" "$an" "$pn" "$(ratio "$an" "$pn")" "= 1x"
kill "$AP" "$PP"; wait_gone "$AP"; wait_gone "$PP"
rm -rf "$work/q_prom" "$work/q_app" "$work/q.om"

plan=$(secs 300)
echo "== plan workload, $plan s: the appliance's default config against the stack it replaces (no cAdvisor or Celery exporter here)"
dsn="postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable"
/usr/bin/prometheus-node-exporter --web.listen-address=127.0.0.1:19500 >/dev/null 2>&1 & ne=$!
DATA_SOURCE_NAME="$dsn" /usr/bin/prometheus-postgres-exporter --web.listen-address=127.0.0.1:19501 >/dev/null 2>&1 & pe=$!
/usr/bin/prometheus-redis-exporter --web.listen-address=127.0.0.1:19502 --redis.addr=redis://127.0.0.1:6379 >/dev/null 2>&1 & re=$!
printf 'route: {receiver: none}\nreceivers: [{name: none}]\n' >"$work/am.yml"
prometheus-alertmanager --config.file="$work/am.yml" --storage.path="$work/am" --web.listen-address=127.0.0.1:19503 \
  --cluster.listen-address= >/dev/null 2>&1 & am=$!
cat >"$work/stack.yml" <<YML
global: {scrape_interval: 15s, evaluation_interval: 15s}
rule_files: ['$PWD/rules/*.yml']
alerting: {alertmanagers: [{static_configs: [{targets: ['127.0.0.1:19503']}]}]}
scrape_configs:
  - {job_name: prometheus, static_configs: [{targets: ['127.0.0.1:19394']}]}
  - {job_name: node, static_configs: [{targets: ['127.0.0.1:19500']}]}
  - {job_name: postgres, static_configs: [{targets: ['127.0.0.1:19501']}]}
  - {job_name: redis, static_configs: [{targets: ['127.0.0.1:19502']}]}
  - {job_name: alertmanager, static_configs: [{targets: ['127.0.0.1:19503']}]}
YML
PP=$(start_prom "$work/stack.yml" "$work/stack" 19394)
mkdir -p "$work/plan"
(cd "$work/plan" && exec env APPLIANCE_ADMIN_PASSWORD=bench "$app" run --data-dir data --listen 127.0.0.1:19384 >>"$work/app.log" 2>&1) & AP=$!
wait_ready 19394; wait_ready 19384
stack="$PP $ne $pe $re $am"
sum_rss() { local t=0; for p in "$@"; do t=$((t + $(rss_kib "$p"))); done; echo $t; }
sum_cpu() { local t=0; for p in "$@"; do t=$(awk -v a="$t" -v b="$(cpu_s "$p")" 'BEGIN {print a + b}'); done; echo "$t"; }
sleep 30
a0=$(sum_cpu "$AP"); s0=$(sum_cpu $stack)
ar=0; sr=0; apk=0; k=$((plan / 10))
for _ in $(seq 1 "$k"); do
  sleep 10
  x=$(rss_kib "$AP"); ar=$((ar + x)); [ "$x" -gt "$apk" ] && apk=$x
  sr=$((sr + $(sum_rss $stack)))
done
a1=$(sum_cpu "$AP"); s1=$(sum_cpu $stack)
am_=$((ar / k / 1024)); sm=$((sr / k / 1024))
row "plan workload mean RSS (MiB; appliance peak $((apk / 1024)))" "$am_" "$sm" "$(ratio "$am_" "$sm")" "<= 0.15x"
ac=$(awk -v a="$a0" -v b="$a1" 'BEGIN {printf "%.2f", b - a}'); sc=$(awk -v a="$s0" -v b="$s1" 'BEGIN {printf "%.2f", b - a}')
row "plan workload CPU-s per $plan s" "$ac" "$sc" "$(ratio "$ac" "$sc")" "<= 0.33x"

echo
echo "host: $(nproc) CPUs; Prometheus $(prometheus --version 2>&1 | awk 'NR == 1 {print $3}'); appliance $(git rev-parse --short HEAD)"
printf '| %s | %s | %s | %s | %s |\n' figure appliance "real tool" ratio goal
printf '|---|---|---|---|---|\n'
while IFS='|' read -r f a p r g; do printf '| %s | %s | %s | %s | %s |\n' "$f" "$a" "$p" "$r" "$g"; done <"$rows"
