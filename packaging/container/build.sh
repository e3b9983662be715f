#!/usr/bin/env bash
# Builds the container image from the release binary with a context of three files (the
# repository, target/ included, would be gigabytes).
#   bash packaging/container/build.sh [TAG]     # default appliance:latest
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-appliance:latest}
[ -x target/release/appliance ] || cargo build --release --locked
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp packaging/Dockerfile "$ctx/Dockerfile"
cp packaging/container/appliance.yml "$ctx/appliance.yml"
# Stripped, as in the .deb: the release profile keeps line tables for profiling.
strip -o "$ctx/appliance" target/release/appliance
docker build --network none -t "$tag" "$ctx"
