#!/usr/bin/env bash
# Builds the proxy-wasm network filter in two variants:
#   target/wasm/shardcar_filter.wasm       query rules, access policy, row limits, metrics
#   target/wasm/shardcar_filter_lean.wasm  the same without the access policy, which is
#                                          the part that needs a full SQL parser
# The filter crate is a plain library; this builds it as a cdylib for wasm32-wasip1 with
# the `wasm` feature (the proxy-wasm entry points). Extra arguments go to cargo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target/wasm"
build() {
  local name="$1"; shift
  cargo rustc -p shardcar-filter --lib --target wasm32-wasip1 --profile wasm \
    --crate-type cdylib "$@"
  cp "$target/wasm32-wasip1/wasm/shardcar_filter.wasm" "$target/wasm/$name.wasm"
  printf '[build-wasm] %s: %s bytes\n' "$target/wasm/$name.wasm" \
    "$(stat -c %s "$target/wasm/$name.wasm")" >&2
}
build shardcar_filter --features wasm "$@"
build shardcar_filter_lean --no-default-features --features wasm "$@"
