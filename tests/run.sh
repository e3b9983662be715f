#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need when it is missing,
# then runs formatting, lint, every test and a build of the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/bin/prometheus-node-exporter ] || need+=(prometheus-node-exporter)
[ -x /usr/bin/prometheus ] || need+=(prometheus)
[ -x /usr/bin/amtool ] || need+=(prometheus-alertmanager)
[ -x /usr/bin/prometheus-postgres-exporter ] || need+=(prometheus-postgres-exporter)
[ -x /usr/bin/prometheus-redis-exporter ] || need+=(prometheus-redis-exporter)
command -v psql >/dev/null || need+=(postgresql-client)
command -v dockerd >/dev/null || need+=(docker.io)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
[ -x /usr/bin/chromium ] || need+=(chromium)
# The .deb's checks.
command -v lintian >/dev/null || need+=(lintian)
# The container image's base, made locally when no registry answers.
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# The Celery collector's test runs a real worker.
python3 -c "import celery, redis" 2>/dev/null || python3 -m pip install -q 'celery[redis]'

# The container collector's tests need a Docker engine; no registry is reachable, so the
# tests build their image from busybox with `docker import`.
if ! docker version >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo sh -c 'nohup dockerd --bridge=none --iptables=false >/tmp/appliance-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do docker version >/dev/null 2>&1 && break; sleep 1; done
  docker version >/dev/null || { echo "dockerd did not start; see /tmp/appliance-dockerd.log"; exit 1; }
fi

# The browser tests drive Debian's Chromium with playwright-core from web/'s lockfile.
[ -d web/node_modules/playwright-core ] || (cd web && npm ci --no-audit --no-fund --loglevel=error)

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo build --benches --locked
# The .deb (release build, stripped) that tests/packaging.rs installs and purges.
bash packaging/deb/build.sh --quiet
cargo test --locked --lib --bins --tests

# Fuzz smoke: every parser's fuzz target for a few seconds (libFuzzer through cargo-fuzz; the
# stable toolchain takes its flags with RUSTC_BOOTSTRAP). The longer run is documented in the
# README.
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
bash fuzz/smoke.sh 5
