#!/usr/bin/env bash
# Glass-to-glass bench: headless Chromium, through the FRP-like NAT of the end-to-end test
# (tests/e2e/netns.sh: client 198.18.1.2 -- NAT box 198.18.1.1 -- server 198.18.2.2), opens
# portcast's viewer page served by each server in turn and measures what it sees
# (benches/glass/glass.js). One server runs at a time, alone in the server namespace, all
# in one run: the figures compare.
#
# Servers (GLASS_SERVERS, comma-separated, in this order):
#   portcast        the daemon's busy test pattern at 1280x720, 30 fps, 2500 kbit/s, its voice
#                   on (the default avatar speaks: the page takes the audio, lip sync applies)
#   portcast-mute   the same with --test-pattern-audio off (video only, as the aiortc server)
#   portcast-off    portcast with --bandwidth-estimation off: no str0m pacer, no feedback (what
#                   estimation costs in latency on a link that carries everything)
#   portcast-tcp    portcast (voice on) with --ice-tcp-public-port 10110 while the client namespace
#                   drops all its UDP: media over ICE-TCP through the forwarded signaling port
#   portcast-capped      portcast (voice on) while the NAT box's link to the client is capped at
#                        GLASS_CAP_KBIT (1000) kbit/s with tc tbf from before the page opens:
#                        bandwidth estimation keeps the lone viewer's encoder under the cap
#                        (the tbf's sent/dropped/overlimits counters: <out>/<server>.tc.txt)
#   portcast-capped-off  the same with --bandwidth-estimation off (the configured bitrate
#                        whatever the link carries)
#   portcast-lift        portcast-capped whose cap is lifted when the window starts: glass.js
#                        times how long until the encoder is back at 2500 kbit/s. GLASS_LIFT says
#                        how: `change` (default) raises the tbf's rate to 100 Mbit/s and keeps
#                        its queue, as a link whose limit rises drops nothing; `del` removes the
#                        tbf, which drops what it queued (a loss burst at the instant of the lift)
#   portcast-shared-capped  two pages watch the avatar; once both decode, only the measured
#                        page's UDP port is capped at GLASS_CAP_KBIT (tc htb class in the NAT
#                        box): it is moved to a lower rendition while the escort keeps the top
#   aiortc          benches/aiortc/server.py, the same picture, size, rate and bitrate
#                   (reached straight at 198.18.2.2:8080 through the box, which routes it)
#
# Settings (environment): PORTCAST_BIN (release daemon), GLASS_PYTHON (a python with aiortc,
# for the aiortc server), GLASS_SECONDS (30), GLASS_PAGES (10), GLASS_SERVERS
# (all of the above, in that order), GLASS_OUT (folder; one <server>.json each, and logs),
# GLASS_PORTCAST_ARGS (more daemon flags, split on spaces, e.g. "--encoder-threads 2"),
# GLASS_RUST_LOG (the daemon's RUST_LOG, default info), GLASS_CAP_KBIT (the capped servers' link),
# GLASS_CAP_WARMUP_SECS (5: for the capped servers the window starts this long after the first
# frame, however few frames came by then), GLASS_LIFT (change or del, see portcast-lift).
# `portcast-bench glass` sets them all. Needs root (ip netns), iptables, node, chromium.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
E2E=$ROOT/tests/e2e
PORTCAST_BIN=${PORTCAST_BIN:-$ROOT/target/release/portcast}
SECONDS_EACH=${GLASS_SECONDS:-30}
PAGES=${GLASS_PAGES:-10}
SERVERS=${GLASS_SERVERS:-portcast,portcast-mute,aiortc,portcast-tcp,portcast-capped,portcast-capped-off,portcast-lift}
OUT=${GLASS_OUT:-$ROOT/target/glass}
# A bound on each server's whole measurement: the glass window, the fresh pages, start-up.
T_SERVER=$((SECONDS_EACH + 20 * PAGES + 90))

log() { printf '[glass] %s\n' "$*" >&2; }
[[ ${GLASS_LIFT:-change} == change || ${GLASS_LIFT:-change} == del ]] ||
  { log "GLASS_LIFT must be change or del, not ${GLASS_LIFT}"; exit 2; }

SERVER_PID=""
NETNS_MADE=()
# stop_pid, netns_up, netns_down: the e2e test's NAT topology and process helpers.
# shellcheck source=tests/e2e/netns.sh
source "$E2E/netns.sh"
cleanup() {
  local rc=$?
  stop_pid "$SERVER_PID"
  netns_down
  exit "$rc"
}

[[ $(id -u) -eq 0 ]] || { log "needs root (ip netns, iptables)"; exit 1; }
for tool in ip iptables node; do
  command -v "$tool" >/dev/null || { log "missing $tool"; exit 1; }
done
[[ -x /usr/bin/chromium ]] || { log "missing /usr/bin/chromium"; exit 1; }
[[ -d $E2E/node_modules/playwright-core ]] || (cd "$E2E" && timeout 300 npm ci --no-audit --no-fund >&2)
mkdir -p "$OUT"

trap cleanup EXIT
trap 'exit 130' INT TERM
C=pc-gc-$$ P=pc-gp-$$ D=pc-gd-$$
netns_up >&2 || { log "the NAT topology could not be built"; exit 1; }

# The rule lives in the client namespace: netns_down takes it away with the namespace.
block_udp() { ip netns exec "$C" iptables -w -A OUTPUT -p udp -j DROP; }
unblock_udp() { ip netns exec "$C" iptables -w -D OUTPUT -p udp -j DROP 2>/dev/null || true; }
# The NAT box's veth toward the client (vp) drains at the cap; a 100 ms queue as on a home router.
cap_link() { ip netns exec "$P" tc qdisc add dev vp root tbf rate "${GLASS_CAP_KBIT:-1000}kbit" burst 16kb latency 100ms; }
uncap_link() { ip netns exec "$P" tc qdisc del dev vp root 2>/dev/null || true; }
# portcast-lift's lift, run by glass.js when its window starts (GLASS_LIFT above).
lift_cmd() {
  case ${GLASS_LIFT:-change} in
    change) echo "ip netns exec $P tc qdisc change dev vp root tbf rate 100mbit burst 1mb latency 100ms" ;;
    del) echo "ip netns exec $P tc qdisc del dev vp root" ;;
  esac
}
# The same cap for one UDP destination port only ({port}, filled in by glass.js), the rest unshaped.
cap_port_script() {
  local k=${GLASS_CAP_KBIT:-1000}
  echo "tc qdisc add dev vp root handle 1: htb default 10 && tc class add dev vp parent 1: classid 1:10 htb rate 1gbit" \
    "&& tc class add dev vp parent 1: classid 1:20 htb rate ${k}kbit ceil ${k}kbit" \
    "&& tc qdisc add dev vp parent 1:20 handle 20: bfifo limit $((k * 1000 / 8 / 10))" \
    "&& tc filter add dev vp parent 1: protocol ip u32 match ip dport {port} 0xffff flowid 1:20"
}

loop_cpu() { # loop_cpu PID: CPU seconds of the daemon's main (event loop) thread so far
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/task/$1/stat"
}

measure() { # measure NAME PAGE_URL [METRICS_URL]: glass.js in the client namespace
  local name=$1 page=$2 metrics=${3:-} cpu0="" t0=$SECONDS warm=()
  [[ -n $metrics ]] && cpu0=$(loop_cpu "$SERVER_PID")
  [[ $name == portcast-capped* || $name == portcast-lift || $name == portcast-shared-capped ]] &&
    warm=(GLASS_WARMUP_FRAMES=0 GLASS_WARMUP_SECS="${GLASS_CAP_WARMUP_SECS:-5}")
  [[ $name == portcast-shared-capped ]] && warm+=(GLASS_CAP_PORT_CMD="ip netns exec $P sh -c '$(cap_port_script)'")
  [[ $name == portcast-lift ]] && warm+=(GLASS_LIFT_CMD="$(lift_cmd)")
  # Without estimation the capped link may show nothing at all: that is the finding (zeros in
  # its row), not a failed measurement; fresh pages would only time out on it.
  local pages=$PAGES
  [[ $name == portcast-capped-off ]] && { warm+=(GLASS_MAY_STALL=1); pages=0; }
  ip netns exec "$C" env GLASS_NAME="$name" GLASS_PAGE="$page" GLASS_METRICS="$metrics" "${warm[@]}" \
    GLASS_SECONDS="$SECONDS_EACH" GLASS_PAGES="$pages" \
    timeout -k 5 "$T_SERVER" node "$HERE/glass.js" >"$OUT/$name.out" 2>"$OUT/$name.err" || {
      log "$name: the measurement failed:"; sed 's/^/    /' "$OUT/$name.err" >&2; return 1; }
  tail -n 1 "$OUT/$name.out" >"$OUT/$name.json"
  # The loop thread's CPU over the whole measurement (one steady viewer plus the fresh pages).
  if [[ -n $cpu0 ]]; then
    echo "$(loop_cpu "$SERVER_PID") $cpu0 $((SECONDS - t0))" |
      awk '{ printf "{\"loop_cpu_s\": %.3f, \"wall_s\": %d}\n", $1 - $2, $3 }' >"$OUT/$name.cpu.json"
  fi
  log "$name: done"
}

wait_for() { # wait_for NAME SECONDS COMMAND...: until COMMAND succeeds, while the server runs
  local name=$1 until=$((SECONDS + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    kill -0 "$SERVER_PID" 2>/dev/null || { log "$name exited before it was ready"; return 1; }
    ((SECONDS < until)) || { log "$name was not ready within $2 s"; return 1; }
    sleep 0.3
  done
}

IFS=, read -r -a list <<<"$SERVERS"
for name in "${list[@]}"; do
  case $name in
    portcast | portcast-mute | portcast-off | portcast-tcp | portcast-capped | portcast-capped-off | portcast-lift | portcast-shared-capped)
      [[ -x $PORTCAST_BIN ]] || { log "no daemon binary at $PORTCAST_BIN"; exit 1; }
      audio=on tcp=()
      [[ $name == portcast-mute ]] && audio=off
      [[ $name == portcast-tcp ]] && tcp=(--ice-tcp-public-port 10110)
      [[ $name == portcast-capped-off || $name == portcast-off ]] && tcp=(--bandwidth-estimation off)
      RUST_LOG=${GLASS_RUST_LOG:-info} ip netns exec "$D" "$PORTCAST_BIN" --bind-ip 198.18.2.2 --public-ip 198.18.1.1 \
        --signal-port 9000 --udp-ports 10111-10115 --ingest-socket off \
        --width 1280 --height 720 --fps 30 --bitrate-kbps 2500 \
        --test-pattern-busy on --test-pattern-audio "$audio" "${tcp[@]}" ${GLASS_PORTCAST_ARGS:-} >"$OUT/$name.log" 2>&1 &
      SERVER_PID=$!
      wait_for "$name" 20 ip netns exec "$C" node "$E2E/wait-ready.js" http://198.18.1.1:10110/ 1000
      [[ $name == portcast-tcp ]] && block_udp
      [[ $name == portcast-capped* || $name == portcast-lift ]] && cap_link
      measure "$name" http://198.18.1.1:10110/ http://198.18.1.1:10110/metrics
      # What the cap itself did over the whole run (warm-up included): sent, dropped, overlimits.
      [[ $name == portcast-capped* ]] && ip netns exec "$P" tc -s qdisc show dev vp >"$OUT/$name.tc.txt" 2>&1
      [[ $name == portcast-tcp ]] && unblock_udp
      uncap_link
      ;;
    aiortc)
      python=${GLASS_PYTHON:-}
      [[ -x $python ]] || { log "GLASS_PYTHON must name a python with aiortc (portcast-bench glass sets it)"; exit 1; }
      # It stops when its standard input closes: a FIFO this script holds open (fd 3).
      rm -f "$OUT/aiortc.stdin" && mkfifo "$OUT/aiortc.stdin" && exec 3<>"$OUT/aiortc.stdin"
      ip netns exec "$D" "$python" "$ROOT/benches/aiortc/server.py" \
        --host 198.18.2.2 --port 8080 --width 1280 --height 720 --fps 30 --bitrate 2500000 --busy \
        --page "$ROOT/net/src/viewer.html" --timings "$OUT/aiortc-timings.jsonl" \
        --max-seconds "$T_SERVER" <"$OUT/aiortc.stdin" >"$OUT/$name.log" 2>&1 &
      SERVER_PID=$!
      wait_for "$name" 30 grep -q '^listening' "$OUT/$name.log"
      measure "$name" http://198.18.2.2:8080/
      ;;
    *) log "unknown server $name (portcast, portcast-mute, portcast-off, aiortc, portcast-tcp, portcast-capped, portcast-capped-off, portcast-lift, portcast-shared-capped)"; exit 1 ;;
  esac
  stop_pid "$SERVER_PID"
  SERVER_PID=""
done
