#!/usr/bin/env bash
# Installs everything Shardcar's demo and tests need on Debian 12 with only Rust installed:
# apt packages (MariaDB, etcd, sysbench, protoc, Python, valgrind), cargo-nextest, the
# wasm32-wasip1 target and a Python venv at .venv. Idempotent: re-running skips what is there.
# The system MariaDB service is never used (tests start their own mariadbd); it is stopped so
# it does not hold port 3306.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    log "not root and no sudo: apt packages cannot be installed"; fi
fi

# --- apt packages ------------------------------------------------------------------------
APT_PACKAGES=(mariadb-server mariadb-client etcd-server sysbench protobuf-compiler
              python3-venv python3-pip valgrind curl ca-certificates)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Keep package scripts from starting the system mariadb/etcd services.
  policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ] && [ -z "$SUDO" ] && [ "$(id -u)" -eq 0 ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy_created=1
  fi
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" || {
    [ "$policy_created" -eq 1 ] && rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ "$policy_created" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
else
  log "apt packages present"
fi

# The system services must not get in the way (port 3306, port 2379).
for svc in mariadb etcd; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    log "stopping and disabling the system $svc service (Shardcar runs its own)"
    $SUDO systemctl stop "$svc" || true
    $SUDO systemctl disable "$svc" >/dev/null 2>&1 || true
  elif command -v service >/dev/null 2>&1 && service "$svc" status >/dev/null 2>&1; then
    log "stopping the system $svc service (Shardcar runs its own)"
    $SUDO service "$svc" stop || true
  fi
done

# --- Rust tools --------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
  log "cargo not found: install Rust first (https://rustup.rs)"; exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install cargo-nextest --locked
else
  log "cargo-nextest present"
fi
if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
    rustup target add wasm32-wasip1 || log "WARNING: could not add wasm32-wasip1 (the wasm filter build will be skipped)"
  fi
else
  log "WARNING: rustup not found; cannot add the wasm32-wasip1 target"
fi

# --- Python venv -------------------------------------------------------------------------
REQS=tests/python/requirements.txt
STAMP=.venv/.requirements.sha256
want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ]; then
  log "creating the Python venv at .venv"
  python3 -m venv .venv
fi
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]; then
  log "installing Python requirements"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$REQS"
  echo "$want" > "$STAMP"
else
  log "Python requirements present"
fi

log "done"
