#!/usr/bin/env bash
# Runs the daemon from source: installs nasm when missing (openh264 silently
# builds a ~3x slower encoder without it), then `cargo run --release`.
# Any arguments go to portcast, e.g. scripts/run.sh --public-ip 51.161.209.200
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nasm >/dev/null; then
  if [[ $(id -u) -eq 0 ]]; then
    echo "installing nasm (openh264's assembly needs it)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nasm >/dev/null
  else
    echo "nasm is missing: run 'sudo apt-get install nasm' first (without it the H.264 encoder is ~3x slower)" >&2
    exit 1
  fi
  # A build made before nasm was there has no assembly: rebuild the encoder.
  cargo clean --release -p openh264-sys2 2>/dev/null || true
fi
exec cargo run --release -p portcast -- "$@"
