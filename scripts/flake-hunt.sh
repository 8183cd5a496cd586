#!/usr/bin/env bash
# Runs the Rust test suite again and again on a loaded machine to flush out
# start-up and timing races: each round runs `cargo test --workspace
# --no-fail-fast` beside CPU hogs (busy shell loops, one per core by default),
# and the script reports how many rounds passed and which tests failed.
#
# Usage: scripts/flake-hunt.sh [ROUNDS] [HOGS]     (defaults: 10 rounds, one hog per core)
#        FLAKE_HUNT_LOGS=DIR keeps each round's output there (default target/flake-hunt)
#        FLAKE_HUNT_E2E=1 also runs the Chromium end-to-end script (tests/e2e/run.sh,
#        as root) in each round, under the same hogs
# Bounded: at most 100 rounds, each round at most 20 minutes; the hogs stop with
# their round (they run under `timeout` too, so nothing outlives the script).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-10}
hogs=${2:-$(nproc)}
logs=${FLAKE_HUNT_LOGS:-target/flake-hunt}
((rounds >= 1 && rounds <= 100)) || { echo "ROUNDS must be 1-100" >&2; exit 2; }
((hogs >= 0 && hogs <= 16)) || { echo "HOGS must be 0-16" >&2; exit 2; }
mkdir -p "$logs"

cargo build --workspace --tests --bins -q 2>&1 | grep -v '^\[OpenH264\]' || true

hog_pids=()
stop_hogs() {
  local pid
  for pid in "${hog_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${hog_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  hog_pids=()
}
trap stop_hogs EXIT

passed=0
failures=()
for round in $(seq "$rounds"); do
  for _ in $(seq "$hogs"); do
    timeout 1200 sh -c 'while :; do :; done' &
    hog_pids+=($!)
  done
  log="$logs/round-$round.log"
  start=$SECONDS
  rc=0
  timeout -k 10 1200 cargo test --workspace --no-fail-fast >"$log" 2>&1 || rc=$?
  if [[ -n ${FLAKE_HUNT_E2E:-} ]]; then
    PORTCAST_BIN="$PWD/target/debug/portcast" timeout -k 10 600 bash tests/e2e/run.sh \
      >>"$log" 2>&1 || rc=$((rc ? rc : 1))
  fi
  stop_hogs
  if ((rc == 0)); then
    passed=$((passed + 1))
    echo "round $round: passed in $((SECONDS - start)) s"
  else
    failed_tests=$(grep -E '^test .* FAILED$|^    [A-Za-z_:0-9]+$|^FAIL ' "$log" | sed 's/^ *//' | sort -u | tr '\n' ' ')
    echo "round $round: FAILED (exit $rc) in $((SECONDS - start)) s: ${failed_tests:-see $log}"
    failures+=("round $round: $failed_tests")
  fi
done

echo "flake hunt: $passed of $rounds rounds passed with $hogs CPU hogs (logs in $logs)"
((passed == rounds))
