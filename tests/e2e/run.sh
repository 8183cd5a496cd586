#!/usr/bin/env bash
# End-to-end test: real headless Chromium against the portcast daemon.
#
# mode netns (default when `ip netns add` and iptables NAT work): three namespaces made here,
#   pc-client-$$ (Chromium, 198.18.1.2) -- pc-public-$$ (FRP-like NAT box, 198.18.1.1 / 198.18.2.1)
#   -- pc-daemon-$$ (portcast, 198.18.2.2). The NAT box forwards TCP 10110 -> 9000 and
#   UDP 10111-10115 -> 10111-10115 and masquerades, so the daemon sees the box, not the browser.
# mode loopback (fallback, or PORTCAST_E2E_MODE=loopback): daemon and Chromium on 127.0.0.1,
#   inside a private network namespace holding only `lo` (unshare -n), so Chromium cannot
#   gather, and the daemon cannot answer, any of this machine's real addresses.
#
# Settings: PORTCAST_BIN (default <repo>/target/debug/portcast), PORTCAST_E2E_MODE
# (auto|netns|loopback), PORTCAST_E2E_WIDTH/HEIGHT (expected picture, default 1280x720),
# PORTCAST_E2E_ONLY (e.g. "a,e" to run some scenarios), PORTCAST_E2E_LOSS_WINDOW_S and
# PORTCAST_E2E_LOSS (scenario q's window, default 10 s, and loss, default 0.05: 60 gives freezes
# a minute). Output lands in tests/e2e/out/, and the
# daemon's ingest socket is tests/e2e/out/ingest.sock (a renderer started by e2e.js, scenario i,
# connects to it by path: a Unix socket at a path is reachable across network namespaces).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PORTCAST_BIN=${PORTCAST_BIN:-$ROOT/target/debug/portcast}
OUT=$HERE/out
DAEMON_LOG=$OUT/daemon.log
INGEST_SOCK=$OUT/ingest.sock
MODE=${PORTCAST_E2E_MODE:-auto}

# Time bounds (seconds).
T_READY=20     # daemon answering GET / and /ws/
T_SCENARIOS=300 # all scenarios together

DAEMON_PID=""
CHILD_PID="" # the long-running step, run in the background so that a signal reaches our trap
NETNS_MADE=()
INNER=0 # 1 in the second half of loopback mode (the outer half prints the log)

log() { printf '[run.sh] %s\n' "$*"; }

# stop_pid, netns_up, netns_down: tests/e2e/netns.sh, shared with benches/glass/run.sh.
# shellcheck source=tests/e2e/netns.sh
source "$HERE/netns.sh"

cleanup() {
  local rc=$?
  stop_pid "$CHILD_PID"
  stop_pid "$DAEMON_PID"
  netns_down # only processes inside the namespaces this run created
  # The daemon removes its socket when it stops; not when it was killed.
  if [[ -S $INGEST_SOCK ]]; then rm -f "$INGEST_SOCK"; fi
  if [[ $rc -ne 0 && $INNER -eq 0 && -s $DAEMON_LOG ]]; then
    log "last daemon log lines ($DAEMON_LOG):"
    tail -n 25 "$DAEMON_LOG" | sed 's/^/    /'
  fi
  exit "$rc"
}

start_daemon() { # start_daemon [ip netns exec NS] BIN ARGS...; sets DAEMON_PID
  local size=() # a non-default expected picture is also what the daemon is asked to send
  [[ -n ${PORTCAST_E2E_WIDTH:-} ]] && size+=(--width "$PORTCAST_E2E_WIDTH")
  [[ -n ${PORTCAST_E2E_HEIGHT:-} ]] && size+=(--height "$PORTCAST_E2E_HEIGHT")
  # The ingest socket lives in the output folder (sun_path holds at most 107 bytes).
  [[ -d $OUT ]] || { log "output folder $OUT is missing"; return 1; }
  if ((${#INGEST_SOCK} > 107)); then
    log "ingest socket path too long for a Unix socket (${#INGEST_SOCK} bytes): $INGEST_SOCK"; return 1
  fi
  : >"$DAEMON_LOG"
  RUST_LOG=info,portcast=debug "$@" "${size[@]}" >>"$DAEMON_LOG" 2>&1 &
  DAEMON_PID=$!
  log "daemon pid $DAEMON_PID: $* ${size[*]}"
}

run_scenarios() { # run_scenarios MODE PAGE_URL PUBLIC_IP UDP_MIN UDP_MAX [prefix command...]
  local mode=$1 url=$2 public=$3 umin=$4 umax=$5 rc=0
  shift 5
  local ready_by=$((SECONDS + T_READY))
  until "$@" timeout -k 2 5 node "$HERE/wait-ready.js" "$url" 1000 >/dev/null; do
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
      wait "$DAEMON_PID" && rc=0 || rc=$?
      log "the daemon exited (status $rc) before answering at $url"; return 1
    fi
    if ((SECONDS >= ready_by)); then
      log "the daemon did not answer GET / and /ws/ at $url within ${T_READY} s"; return 1
    fi
    sleep 0.5
  done
  log "daemon ready at $url"
  # exec all the way down to `timeout`, which passes a TERM on to node (and node to Chromium).
  (cd "$HERE" && exec "$@" env PORTCAST_E2E_MODE="$mode" PORTCAST_E2E_URL="$url" \
    PORTCAST_E2E_PUBLIC_IP="$public" PORTCAST_E2E_UDP_MIN="$umin" PORTCAST_E2E_UDP_MAX="$umax" \
    PORTCAST_E2E_DAEMON_LOG="$DAEMON_LOG" PORTCAST_E2E_OUT="$OUT" PORTCAST_E2E_INGEST_SOCKET="$INGEST_SOCK" \
    PORTCAST_E2E_NAT_NS="${P:-}" \
    PORTCAST_E2E_BUDGET_MS=$(((T_SCENARIOS - 10) * 1000)) \
    timeout -k 5 "$T_SCENARIOS" node "$HERE/e2e.js") &
  CHILD_PID=$!
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=""
  if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
    log "the daemon is no longer running after the scenarios"; rc=1
  fi
  return $rc
}

# --- loopback mode, second half: already inside the private namespace -------------------------
if [[ ${1:-} == __loopback_inner ]]; then
  INNER=1
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  ip link set lo up
  if [[ -n $(ip -o -4 addr show | awk '$2 != "lo"') ]]; then
    log "refusing: the loopback namespace has interfaces other than lo"; exit 1
  fi
  start_daemon "$PORTCAST_BIN" --bind-ip 127.0.0.1 --public-ip 127.0.0.1 \
    --signal-port 19000 --udp-ports 19111-19115 --ingest-socket "$INGEST_SOCK" --ice-tcp-public-port 19000
  run_scenarios loopback http://127.0.0.1:19000/ 127.0.0.1 19111 19115
  exit $?
fi

# --- prerequisites ---------------------------------------------------------------------------
missing=()
command -v chromium >/dev/null || missing+=(chromium)
[[ -x /usr/bin/firefox-esr ]] || missing+=(firefox-esr) # scenario m
command -v ip >/dev/null || missing+=(iproute2)
command -v iptables >/dev/null || missing+=(iptables)
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing ${missing[*]}"
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${missing[@]}"
  else
    log "missing ${missing[*]} (install them, or run as root on Debian)"; exit 1
  fi
fi
command -v node >/dev/null || { log "node (>= 20) is required"; exit 1; }
# npm ci when any pinned package is missing (playwright-core, puppeteer-core for Firefox, and
# the WHEP players of scenario n).
missing_npm=0
for pkg in playwright-core puppeteer-core whip-whep @eyevinn/webrtc-player; do
  [[ -d $HERE/node_modules/$pkg ]] || missing_npm=1
done
if ((missing_npm)); then
  log "npm ci in $HERE"
  (cd "$HERE" && timeout 300 npm ci --no-audit --no-fund)
fi
[[ -x $PORTCAST_BIN ]] || { log "daemon binary not found: $PORTCAST_BIN (set PORTCAST_BIN)"; exit 1; }
mkdir -p "$OUT"
rm -f "$OUT/viewer.png"

trap cleanup EXIT
trap 'exit 130' INT TERM

# --- netns mode ------------------------------------------------------------------------------
C=pc-client-$$ P=pc-public-$$ D=pc-daemon-$$


if [[ $MODE == auto || $MODE == netns ]]; then
  if netns_up; then
    echo "mode: netns"
    start_daemon ip netns exec "$D" "$PORTCAST_BIN" --bind-ip 198.18.2.2 --public-ip 198.18.1.1 \
      --signal-port 9000 --udp-ports 10111-10115 --ingest-socket "$INGEST_SOCK" --ice-tcp-public-port 10110
    run_scenarios netns http://198.18.1.1:10110/ 198.18.1.1 10111 10115 ip netns exec "$C"
    exit $?
  fi
  netns_down
  [[ $MODE == netns ]] && { log "netns mode was asked for and is not available"; exit 1; }
  log "falling back to loopback mode"
fi

# --- loopback mode, first half: enter a private namespace with only lo -------------------------
echo "mode: loopback"
if [[ $(id -u) -eq 0 ]]; then unshare_args=(-n); else unshare_args=(-r -n); fi
if ! unshare "${unshare_args[@]}" true 2>/dev/null; then
  log "loopback mode needs a private network namespace (unshare -n): without one Chromium"
  log "would use this machine's real interfaces. Not running."
  exit 1
fi
# --kill-child=TERM: if this script is stopped, the inner half gets TERM and cleans up.
unshare "${unshare_args[@]}" --kill-child=TERM -- bash "$HERE/run.sh" __loopback_inner &
CHILD_PID=$!
rc=0
wait "$CHILD_PID" || rc=$?
CHILD_PID=""
exit "$rc"
