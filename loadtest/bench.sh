#!/usr/bin/env bash
# Reproduces the "Loadtest" section of BENCHMARKS.md on this host: a fresh panel process for
# every measurement (so RSS per agent starts from a clean heap), the same data dir throughout
# (10,000 agents registered once and reused through --agents-file).
#
#   loadtest/bench.sh [OUT_DIR]        (default /tmp/loadtest-bench)
#
# Environment: CARGO_TARGET_DIR (where the release binaries are), SKIP_BUILD=1 (use them as
# they are), PORT (default 8443), PANEL_ADMIN_TOKEN.
#
# Needs a hard open-files limit of at least ~10,200 for each of panel and loadtest (both raise
# their soft limit to the hard one themselves): check `ulimit -Hn`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${1:-/tmp/loadtest-bench}
PORT=${PORT:-8443}
mkdir -p "$OUT"
if [ -z "${SKIP_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release -p panel -p loadtest)
fi
PANEL="$TARGET/release/panel"
LT="$TARGET/release/loadtest"
DATA="$OUT/data"
export PANEL_ADMIN_TOKEN=${PANEL_ADMIN_TOKEN:-bench-admin-token-0123456789}
PANEL_PID=

start_panel() {
    # Truncate here, not in the background job: the wait below must not read the last log.
    : >"$OUT/panel.log"
    "$PANEL" --listen "127.0.0.1:$PORT" --data-dir "$DATA" --max-conns-per-ip 0 \
        --admin-rate 1000000 --admin-burst 1000000 "$@" >>"$OUT/panel.log" 2>&1 &
    PANEL_PID=$!
    for _ in $(seq 100); do
        grep -q "listening on" "$OUT/panel.log" && return 0
        sleep 0.1
    done
    echo "panel did not start:" >&2
    cat "$OUT/panel.log" >&2
    exit 1
}

stop_panel() {
    kill "$PANEL_PID" 2>/dev/null || true
    wait "$PANEL_PID" 2>/dev/null || true
}
trap stop_panel EXIT

lt() {
    echo "== loadtest $*" | tee -a "$OUT/summary.txt"
    echo "   load average: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/summary.txt"
    "$LT" --panel "https://127.0.0.1:$PORT" --ca-cert "$DATA/tls/panel.crt" \
        --agents-file "$OUT/agents.json" --panel-pid "$PANEL_PID" --quiet "$@" |
        tee -a "$OUT/summary.txt"
}

# 0. Register 10,000 agents once (saved to agents.json); not a measurement.
start_panel; lt --agents 10000 --duration 0 --servers 1000; stop_panel

# 1. Idle agents: RSS per connected agent, command round trip.
start_panel; lt --agents 1000 --duration 30 --command-rate 50 --json "$OUT/idle-1k.json"; stop_panel
start_panel; lt --agents 10000 --duration 30 --command-rate 50 --json "$OUT/idle-10k.json"; stop_panel

# 2. Events to one subscriber (1,000 emitting agents).
for rate in 25000 50000 100000; do
    start_panel
    lt --agents 1000 --duration 20 --events-per-sec "$rate" --subscribers 1 \
        --json "$OUT/events-$rate.json"
    stop_panel
done

# Same with a deeper subscriber queue (default 1,024 frames), and above the target.
for rate in 100000 150000; do
    start_panel --event-queue 65536
    lt --agents 1000 --duration 20 --events-per-sec "$rate" --subscribers 1 \
        --json "$OUT/events-$rate-queue64k.json"
    stop_panel
done

# 3. Reconnect storm of 10,000 agents.
start_panel; lt --agents 10000 --duration 5 --storm --json "$OUT/storm-10k.json"; stop_panel
