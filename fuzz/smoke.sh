#!/usr/bin/env bash
# Runs every fuzz target for a while, its corpus seeded from ../shared/testdata (Prometheus's
# and OpenMetrics' own test inputs) and a few hand-made seeds.
#   bash fuzz/smoke.sh            # the test command's smoke: a few seconds per target
#   bash fuzz/smoke.sh 1800 -O    # a longer run: 30 min per target, optimised with ASan
# A crash fails the run and leaves its input in fuzz/artifacts/<target>/; each one found
# becomes a regression test beside the code it broke.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
shift || true
# Default: an unoptimised build without a sanitizer (quick to build, enough to catch panics,
# overflows and hangs); pass -O (and drop --sanitizer none) for real fuzzing.
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(--dev --sanitizer none)
shared=../shared/testdata
seeds=fuzz/seeds
rm -rf "$seeds"
mkdir -p "$seeds"/{exposition,exposition_proto,promql,config,rule_file,template,alertmanager_api,secret_url,remote_write,grafana_dashboard,wal_record}
n=0
seed() { n=$((n + 1)); cp "$2" "$seeds/$1/s$n" 2>/dev/null || true; }
text() { n=$((n + 1)); printf '%s' "$2" > "$seeds/$1/t$n"; }
if [ -d "$shared" ]; then
  while IFS= read -r -d '' f; do seed exposition "$f"; done < <(find "$shared/exposition" -type f -size -256k ! -name '*.md' ! -name '*.proto' -print0)
  # Every expression the PromQL test scripts evaluate.
  grep -h -E '^\s*eval(_fail|_warn|_info|_ordered)? (instant|range)' "$shared"/promql/*.test \
    | sed -E 's/^\s*eval[a-z_]* (instant|range) (at [^ ]+ )?(from [^ ]+ to [^ ]+ step [^ ]+ )?//' \
    | head -n 3000 | while IFS= read -r q; do text promql "$q"; done
  while IFS= read -r -d '' f; do seed rule_file "$f"; done < <(find "$shared/rules" -type f -name '*.y*ml' -size -64k -print0)
  while IFS= read -r -d '' f; do seed config "$f"; done < <(find "$shared/alertmanager" -type f -name '*.yml' -size -64k -print0)
else
  echo "fuzz: ../shared/testdata is absent; seeding from the repository only"
fi
seed config src/config/default.yml
for f in rules/*.yml; do seed rule_file "$f"; done
for f in dashboards/*.json; do seed grafana_dashboard "$f"; done
text template '{{ $labels.instance }} is down ({{ $value | humanize }})'
text template '{{ range query "up" }}{{ .Labels.job }} {{ .Value }}{{ end }}'
text template '{{ with $x := 1.5e9 }}{{ humanizeDuration $x }}{{ humanize1024 $x }}{{ end }}'
# Remote write: a selector byte (even 1.0, odd 2.0), then a WriteRequest with one series.
printf '\x00\x0a\x15\x0a\x06\x0a\x01a\x12\x01b\x12\x0b\x09\x00\x00\x00\x00\x00\x00\xf0\x3f\x10\x02' > "$seeds/remote_write/w1"
printf '\x01\x22\x00\x22\x08__name__\x22\x02up\x2a\x0e\x0a\x02\x01\x02\x12\x08\x09\x00\x00\x00\x00\x00\x00\xf0\x3f' > "$seeds/remote_write/w2"
# Protobuf exposition: testsupport::native_histogram_family("rpc_durations_seconds", 10), a
# native histogram (schema 3, zero bucket, two positive spans, a negative one) with two classic
# buckets and an exemplar.
printf '%b' '\xa3\x01\x0a\x15\x72\x70\x63\x5f\x64\x75\x72\x61\x74\x69\x6f\x6e\x73\x5f\x73\x65\x63\x6f\x6e\x64\x73\x12\x0c\x52\x50\x43\x20\x6c\x61\x74\x65\x6e\x63\x79\x2e\x18\x04\x22\x7a\x0a\x08\x0a\x03\x73\x76\x63\x12\x01\x61\x3a\x6e\x08\x0a\x11\x00\x00\x00\x00\x00\x00\x14\x40\x1a\x0b\x08\x03\x11\x00\x00\x00\x00\x00\x00\xe0\x3f\x1a\x2f\x08\x0a\x11\x00\x00\x00\x00\x00\x00\xf0\x3f\x1a\x22\x0a\x0f\x0a\x08\x74\x72\x61\x63\x65\x5f\x69\x64\x12\x03\x61\x62\x63\x11\x66\x66\x66\x66\x66\x66\xe6\x3f\x1a\x06\x08\x80\xe2\xcf\xaa\x06\x28\x06\x31\x9d\x97\x8c\xcf\x08\xba\x5b\x25\x38\x01\x4a\x02\x10\x01\x52\x01\x06\x62\x04\x08\x03\x10\x02\x62\x04\x08\x06\x10\x01\x6a\x03\x04\x02\x03' > "$seeds/exposition_proto/p1"
# WAL records: a kind byte, then the payload (compact kinds are snappy's raw format: the length,
# then one literal). A samples record (one integral sample) and a series record (`{__name__="up"}`).
printf '\x06\x05\x10\x01\x00\x01\x05\x04' > "$seeds/wal_record/r1"
printf '\x05\x0f\x38\x01\x01\x01\x08__name__\x02up' > "$seeds/wal_record/r2"
text alertmanager_api '[{"labels":{"alertname":"A","job":"x"},"annotations":{"s":"t"},"startsAt":"2026-01-01T00:00:00Z"}]'
text alertmanager_api '{"matchers":[{"name":"alertname","value":"A.*","isRegex":true,"isEqual":true}],"startsAt":"2026-01-01T00:00:00Z","endsAt":"2099-01-01T00:00:00Z","createdBy":"a","comment":"b"}'
text secret_url 'postgresql://app:pw@db:5432/app?sslmode=require&password=x'
text secret_url "host=db user=app password='p w' dbname=x"
text secret_url 'redis://:pw@cache:6379/0'
for t in exposition exposition_proto promql config rule_file template alertmanager_api secret_url remote_write grafana_dashboard wal_record; do
  mkdir -p "fuzz/corpus/$t"
  echo "fuzz: $t for ${secs}s"
  rm -rf "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t.log"
  mkdir -p fuzz/artifacts
  rc=0
  RUSTC_BOOTSTRAP=1 cargo fuzz run "${flags[@]}" "$t" "fuzz/corpus/$t" "$seeds/$t" -- \
    -max_total_time="$secs" -timeout=20 -rss_limit_mb=3072 -max_len=65536 -print_final_stats=1 \
    >"$log" 2>&1 || rc=$?
  grep -a -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" | tr '\n' ' ' || true
  echo
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "$log"
    echo "fuzz: $t failed (exit $rc); inputs in fuzz/artifacts/$t/, log in $log"
    exit 1
  fi
done
