#!/usr/bin/env bash
# Runs the daemon from source: installs nasm (openh264 silently builds a ~3x
# slower encoder without it), libopus-dev (the voice's Opus encoder) and
# libvpx-dev (the VP8 encoder) when missing, then `cargo run --release`.
# Any arguments go to portcast, e.g. scripts/run.sh --public-ip 51.161.209.200
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v nasm >/dev/null || need+=(nasm)
# The Opus encoder links Debian's libopus (found through pkg-config).
pkg-config --exists opus 2>/dev/null || need+=(libopus-dev pkg-config)
# The VP8 encoder (for browsers without H.264) links Debian's libvpx.
pkg-config --exists vpx 2>/dev/null || need+=(libvpx-dev pkg-config)
if ((${#need[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "installing ${need[*]} (openh264's assembly needs nasm; the voice needs libopus; VP8 needs libvpx)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing: run 'sudo apt-get install ${need[*]}' first (without nasm the H.264 encoder is ~3x slower)" >&2
    exit 1
  fi
  # A build made before nasm was there has no assembly: rebuild the encoder.
  if [[ " ${need[*]} " == *" nasm "* ]]; then
    cargo clean --release -p openh264-sys2 2>/dev/null || true
  fi
fi
exec cargo run --release -p portcast -- "$@"
