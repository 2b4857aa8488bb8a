#!/usr/bin/env bash
# Makes sure a Rust toolchain (cargo) is available; installs one if it can.
# Debian: apt-get install rustup && rustup default stable
set -euo pipefail

if command -v cargo >/dev/null 2>&1; then
  exit 0
fi
if [ -x "$HOME/.cargo/bin/cargo" ]; then
  echo "cargo found in $HOME/.cargo/bin (add it to PATH: export PATH=\$HOME/.cargo/bin:\$PATH)" >&2
  exit 0
fi

echo "cargo not found: trying to install a Rust toolchain (apt-get install rustup && rustup default stable)" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi
if command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq rustup </dev/null || true
fi
if command -v rustup >/dev/null 2>&1; then
  rustup default stable || true
fi
if command -v cargo >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/cargo" ]; then
  exit 0
fi
cat >&2 <<'MSG'
No Rust toolchain could be installed automatically. Install one, then re-run:
  Debian/Ubuntu:  sudo apt-get install rustup && rustup default stable
  elsewhere:      see https://rustup.rs
MSG
exit 1
