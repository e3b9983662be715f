#!/usr/bin/env bash
# Builds the .deb into target/debian/: the release binary, stripped, with the unit, config,
# rules, dashboards and man page laid out as Cargo.toml's [package.metadata.deb] says.
#   bash packaging/deb/build.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version 3.8.0
mkdir -p target/man
gzip -9n -c packaging/deb/appliance.1 > target/man/appliance.1.gz
# --strip: the release profile keeps line tables for profiling; the package drops them.
cargo deb --locked --strip "$@"
ls target/debian/appliance_*.deb
