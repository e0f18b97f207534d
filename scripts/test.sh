#!/usr/bin/env bash
# THE test command: installs what is missing (scripts/setup.sh), then checks formatting,
# lints, builds and runs every test against real mariadbd/etcd processes. Exits non-zero if
# any step fails; every step runs and a summary is printed at the end.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh || { echo "[test] setup failed" >&2; exit 1; }

declare -a results
overall=0
step() {
  local name="$1"; shift
  printf '\n[test] ==> %s: %s\n' "$name" "$*" >&2
  local start=$SECONDS
  if "$@"; then results+=("PASS  $name ($((SECONDS - start))s)")
  else results+=("FAIL  $name ($((SECONDS - start))s)"); overall=1; fi
}

step fmt cargo fmt --all --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
step clippy-wasm cargo clippy -p shardcar-filter --features wasm --target wasm32-wasip1 -- -D warnings
step build cargo build --workspace
step wasm scripts/build-wasm.sh
step tests cargo nextest run --workspace --no-fail-fast
# The fuzz bodies on stable Rust over their seeds and deterministic mutations.
step fuzz bash -c 'cd fuzz && FUZZ_ITERATIONS=50000 cargo test --release --no-default-features'

printf '\n[test] summary\n' >&2
for r in "${results[@]}"; do printf '  %s\n' "$r" >&2; done
if [ "$overall" -eq 0 ]; then echo "[test] ALL PASSED" >&2; else echo "[test] FAILED" >&2; fi
exit "$overall"
