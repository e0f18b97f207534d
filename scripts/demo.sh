#!/usr/bin/env bash
# THE run command: installs what is missing, builds the release binary and starts a local
# cluster (one real mariadbd + the sidecar) with the demo keyspace. Extra arguments go to
# `shardcar local` (e.g. --port 3307). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh
cargo build --release -p shardcar
exec target/release/shardcar local "$@"
