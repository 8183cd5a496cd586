#!/usr/bin/env bash
# The whole portcast test suite, runnable on a fresh Debian 12 machine as root:
#   installs what it needs, checks openh264 was built with its nasm assembly,
#   runs lint, the Rust tests (engine in memory, daemon over loopback) and the
#   headless-Chromium end-to-end test through an FRP-like NAT.
# Usage: scripts/test.sh            everything
#        PORTCAST_SKIP_E2E=1 ...    Rust tests only
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

log() { printf '\n== %s\n' "$*"; }

need_apt=()
command -v nasm >/dev/null || need_apt+=(nasm)
command -v cc >/dev/null || need_apt+=(build-essential)
# The Opus encoder (the `opus` crate) links Debian's libopus through pkg-config.
pkg-config --exists opus 2>/dev/null || need_apt+=(libopus-dev pkg-config)
# The VP8 encoder (`env-libvpx-sys`) links Debian's libvpx through pkg-config.
pkg-config --exists vpx 2>/dev/null || need_apt+=(libvpx-dev pkg-config)
# tests/ingest/ drives the Python ingest client (standard library only).
command -v python3 >/dev/null || need_apt+=(python3)
if [[ -z "${PORTCAST_SKIP_E2E:-}" ]]; then
  [[ -x /usr/bin/chromium ]] || need_apt+=(chromium)
  # Scenario m: Debian's Firefox ESR (no OpenH264 plugin: it is offered VP8), driven by puppeteer-core.
  [[ -x /usr/bin/firefox-esr ]] || need_apt+=(firefox-esr)
  command -v ip >/dev/null || need_apt+=(iproute2)
  command -v iptables >/dev/null || need_apt+=(iptables)
  command -v node >/dev/null || need_apt+=(nodejs npm)
  # Scenario l: GStreamer's webrtcbin through Debian's own python3 (tests/e2e/gst_viewer.py).
  # The plugin packages pull in -base and -good; -bad's openh264dec decodes (no libav needed).
  /usr/bin/python3 -c 'import gi; gi.require_version("GstWebRTC", "1.0"); gi.require_version("Soup", "3.0")
from gi.repository import Gst; Gst.init(None)
assert all(map(Gst.ElementFactory.find, ["webrtcbin", "nicesrc", "rtph264depay", "openh264dec"]))' \
    2>/dev/null || need_apt+=(python3-gi gir1.2-gst-plugins-bad-1.0 gir1.2-soup-3.0
    gstreamer1.0-plugins-bad gstreamer1.0-nice)
fi
if ((${#need_apt[@]})); then
  log "installing: ${need_apt[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing packages (${need_apt[*]}) and not root: install them and run again" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# openh264 silently builds a ~3x slower encoder when nasm is missing at build
# time; a stale build from before nasm was installed must be rebuilt.
check_openh264_asm() {
  local ok=1 found=0 d
  for d in target/debug/build/openh264-sys2-*/out; do
    [[ -f $d/libopenh264_encoder.a ]] || continue
    found=1
    [[ -f $d/cpuid.o && -f $d/satd_sad.o ]] || ok=0
  done
  [[ $found -eq 1 && $ok -eq 1 ]]
}

log "building tests"
cargo build --workspace --tests --bins
if ! check_openh264_asm; then
  log "openh264 was built WITHOUT its nasm assembly: rebuilding it"
  cargo clean -p openh264-sys2
  cargo build --workspace --tests --bins
  if ! check_openh264_asm; then
    echo "FATAL: openh264 still has no assembly objects (is nasm working?)" >&2
    exit 1
  fi
fi
echo "openh264: nasm assembly present"

log "format and lint"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

# Every stage runs even when an earlier one failed (and cargo runs every test
# binary: --no-fail-fast), so one failure never hides another; the run still
# fails at the end, naming the stages that failed.
failed=()
stage() { # stage NAME COMMAND...: runs it, filtering openh264's chatter, and records a failure
  local name=$1 rc=0
  shift
  log "$name"
  "$@" 2>&1 | grep --line-buffered -v '^\[OpenH264\]' || rc=${PIPESTATUS[0]}
  if ((rc != 0)); then
    echo "FAILED: $name (exit $rc)" >&2
    failed+=("$name")
  fi
}

stage "cargo test" cargo test --workspace --no-fail-fast
# The binaries the workspace build above made: `cargo run -p X` would resolve
# features for X alone and rebuild str0m and friends a second time.
stage "replaying captured offers" \
  target/debug/portcast replay fixtures/offers --expect fixtures/offers/expected.json
# Numbers come from full runs (benches/results/README.md); this only proves the harness works.
stage "benchmark harness smoke run" \
  target/debug/portcast-bench --smoke --out target/bench-smoke all
# The aiortc side installs aiortc from PyPI into target/aiortc-venv once, and
# runs in a network namespace of its own (aiortc gathers every local address).
stage "benchmark smoke run beside aiortc" \
  target/debug/portcast-bench --smoke --out target/bench-smoke compare-aiortc
if [[ -z "${PORTCAST_SKIP_E2E:-}" ]]; then
  stage "end-to-end: headless Chromium through an FRP-like NAT" \
    env PORTCAST_BIN="$ROOT/target/debug/portcast" bash tests/e2e/run.sh
  # The glass-to-glass bench needs the same NAT and Chromium (about a minute in smoke mode).
  stage "glass-to-glass bench smoke run" \
    target/debug/portcast-bench --smoke --out target/bench-smoke glass --daemon target/debug/portcast
fi

if ((${#failed[@]})); then
  log "FAILED stages: ${failed[*]}"
  exit 1
fi
log "all tests passed"
