#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need when it is missing,
# then runs formatting, lint, every test and a build of the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/bin/prometheus-node-exporter ] || need+=(prometheus-node-exporter)
[ -x /usr/bin/prometheus ] || need+=(prometheus)
[ -x /usr/bin/amtool ] || need+=(prometheus-alertmanager)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo build --benches --locked
cargo test --locked --lib --bins --tests
