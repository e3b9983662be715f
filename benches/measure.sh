# Shared by the compare_* scripts: `measure NAME PID URL` scrapes URL $n times and appends
# "NAME median_ms p90_ms cpu_ms_per_scrape bytes series rss_kb" to $work/results, where the
# CPU is the serving process's utime+stime over the N scrapes.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

measure() {
  local name=$1 pid=$2 url=$3
  for _ in $(seq 1 10); do curl -s "$url" >/dev/null; done
  local c0 c1 hz cpu_ms med p90 bytes series
  c0=$(cpu_ticks "$pid")
  for _ in $(seq 1 "$n"); do curl -s -o /dev/null -w '%{time_total}\n' "$url"; done >"$work/$name.lat"
  c1=$(cpu_ticks "$pid")
  hz=$(getconf CLK_TCK)
  cpu_ms=$(awk -v a="$c0" -v b="$c1" -v n="$n" -v hz="$hz" 'BEGIN {printf "%.3f", (b - a) * 1000 / hz / n}')
  med=$(sort -n "$work/$name.lat" | awk -v n="$n" 'NR == int(n / 2) + 1 {printf "%.3f", $1 * 1000}')
  p90=$(sort -n "$work/$name.lat" | awk -v n="$n" 'NR == int(n * 0.9) {printf "%.3f", $1 * 1000}')
  bytes=$(curl -s "$url" | wc -c)
  series=$(curl -s "$url" | grep -vc '^#')
  echo "$name $med $p90 $cpu_ms $bytes $series $(rss_kb "$pid")" >>"$work/results"
}

wait_url() {
  for _ in $(seq 1 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done
  echo "no answer from $1" >&2
  return 1
}

print_results() {
  echo "N=$n scrapes each"
  printf '%-20s %12s %12s %14s %10s %8s %9s\n' who median_ms p90_ms cpu_ms/scrape bytes series rss_kb
  while read -r who med p90 cpu bytes series rss; do
    printf '%-20s %12s %12s %14s %10s %8s %9s\n' "$who" "$med" "$p90" "$cpu" "$bytes" "$series" "$rss"
  done <"$work/results"
}

# ratio A B: "latency x, CPU y" of A against B.
ratio() {
  awk -v a="$1" -v b="$2" '
    {med[$1] = $2; cpu[$1] = $4}
    END {printf "%s / %s: latency %.2fx, CPU %.2fx\n", a, b, med[a] / med[b], cpu[a] / cpu[b]}' "$work/results"
}
