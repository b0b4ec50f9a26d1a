#!/usr/bin/env bash
# Ours vs Node socket.io-client 4.8.4 and the Rust crate rust_socketio 0.6
# (sync ClientBuilder, websocket transport; rust-socketio/), same machine, same run, same server.
#
#   benches/compare/run.sh            # 3 rounds, 5 s per measurement
#   ROUNDS=5 DURATION=10s benches/compare/run.sh
#   SKIP_BUILD=1 ...                  # use the binaries already in target/release
#   STATS_AB=1 ...                    # also ours without its counters (the cost of stats())
#   STATS_AB=only ROUNDS=10 ...       # just that comparison: ours with and without
#
# Starts one out-of-process volt-mock-server, then for ROUNDS rounds
# alternates `volt-bench --json` and node-bench.js (same workload) on:
#   throughput  CLIENTS x IN_FLIGHT (default 1 x 256) echo commands, 64-byte payloads
#   latency     1 x 1 in flight, unpinned and pinned to core 0 (taskset),
#               with a plain TCP ping-pong between two processes (tcp-pingpong),
#               in LATENCY_SLICES (3) alternating slices of LATENCY_SLICE (2s);
#               then pinned again with `volt-bench --interleave-tcp` (ours and
#               the ping-pong in alternating 50 ms turns, one process)
#   rss-1000    1 x 1000 in flight (one round): peak RSS
# and prints medians and ratios ours/theirs as a Markdown table. Raw JSON
# lines go to $OUT/results.jsonl (default target/volt-compare).
# Then, once each (ours only, no Node peer), two tables of their own:
#   fleet       `volt-bench --fleet $FLEET` daemons heartbeating every
#               $HEARTBEAT_MS ms for $FLEET_DURATION against the same
#               server ($OUT/fleet.json)
#   idle        `volt-bench --idle $IDLE` with an embedded server whose
#               pingInterval is $IDLE_PING_MS ms ($OUT/idle.json)
#   FLEET=1000 HEARTBEAT_MS=1000 FLEET_DURATION=10s IDLE=10s IDLE_PING_MS=5000
# STATS_AB builds volt-bench a second time with `--cfg volt_stats_off`
# (client/src/stats.rs: nothing counted, no clock read for the figures)
# into target/stats-off, and runs it as `ours-stats-off` right beside
# `ours` (the order alternating by round) on the throughput and unpinned
# latency workloads; summarize.js then prints ours / ours-stats-off.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
LATENCY_SLICES=${LATENCY_SLICES:-3}
LATENCY_SLICE=${LATENCY_SLICE:-2s}
CLIENTS=${CLIENTS:-1}
IN_FLIGHT=${IN_FLIGHT:-256}
PAYLOAD=${PAYLOAD:-64}
FLEET=${FLEET:-1000}
HEARTBEAT_MS=${HEARTBEAT_MS:-1000}
FLEET_DURATION=${FLEET_DURATION:-10s}
IDLE=${IDLE:-10s}
IDLE_PING_MS=${IDLE_PING_MS:-5000}
SERVER_FLAGS=${SERVER_FLAGS:-}
STATS_AB=${STATS_AB:-}
CLUSTER=bench-cluster
PASSWORD=bench-password

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-$ROOT/target/volt-compare}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
NPROC=$(nproc)

if [ -z "${SKIP_BUILD:-}" ]; then
  echo "== building (release)" >&2
  (cd "$ROOT" && cargo build --release -q -p volt-benches --bins -p volt-mock-server)
  # The rust_socketio peer is its own Cargo project (own workspace and
  # lockfile: its tokio never enters ours).
  if [ "$STATS_AB" != only ]; then
    (cd "$HERE/rust-socketio" && cargo build --release -q --locked --target-dir "$ROOT/target/compare-rust-socketio")
  fi
  if [ -n "$STATS_AB" ]; then
    echo "== building volt-bench without its counters (--cfg volt_stats_off)" >&2
    (cd "$ROOT" && RUSTFLAGS="${RUSTFLAGS:-} --cfg volt_stats_off" \
      cargo build --release -q -p volt-benches --bin volt-bench --target-dir "$ROOT/target/stats-off")
  fi
fi
OFF_BIN=$ROOT/target/stats-off/release/volt-bench
RSIO_BIN=$ROOT/target/compare-rust-socketio/release/rust-socketio-bench
BIN=$ROOT/target/release
if [ "$STATS_AB" != only ] && [ ! -d "$HERE/node_modules" ]; then
  echo "== npm ci" >&2
  (cd "$HERE" && npm ci --no-audit --no-fund >&2)
fi

SERVER_PID=
TCP_PID=
cleanup() {
  for p in $SERVER_PID $TCP_PID; do kill "$p" 2>/dev/null || true; done
  for p in $SERVER_PID $TCP_PID; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# start_bg VAR FILE CMD...: start CMD in the background, wait for its
# `listening X` first line, set VAR to X and VAR_PID to its pid.
wait_listening() {
  local file=$1 line=
  for _ in $(seq 100); do
    line=$(head -n1 "$file" 2>/dev/null || true)
    case $line in listening\ *) echo "${line#listening }"; return 0 ;; esac
    sleep 0.05
  done
  echo "no 'listening' line in $file" >&2
  return 1
}

# The server runs with its defaults (history on), as users start it;
# SERVER_FLAGS=--no-history gives the figures of earlier runs.
# shellcheck disable=SC2086
RUST_LOG=warn "$BIN/volt-mock-server" --listen 127.0.0.1:0 ${SERVER_FLAGS:-} --cluster "$CLUSTER:$PASSWORD" \
  >"$OUT/server.out" 2>"$OUT/server.err" &
SERVER_PID=$!
URL=$(wait_listening "$OUT/server.out")
"$BIN/tcp-pingpong" server --listen 127.0.0.1:0 >"$OUT/tcp.out" 2>&1 &
TCP_PID=$!
TCP_ADDR=$(wait_listening "$OUT/tcp.out")
echo "== mock server $URL (pid $SERVER_PID), tcp-pingpong $TCP_ADDR (pid $TCP_PID)" >&2

# record WORKLOAD IMPL ROUND CMD...: run CMD (prints one JSON line), tag it.
record() {
  local workload=$1 impl=$2 round=$3 json
  shift 3
  json=$("$@")
  jq -c --arg w "$workload" --arg i "$impl" --argjson r "$round" \
    '{workload: $w, impl: $i, round: $r} + .' <<<"$json" >>"$RESULTS"
  jq -r --arg w "$workload" --arg i "$impl" --argjson r "$round" \
    '"  round \($r) \($w) \($i): \(.throughput|floor)/s p50 \(.p50_us*10|round/10) us cpu/cmd \(.cpu_per_cmd_us*100|round/100) us"' \
    <<<"$json" >&2
}

ours() { # CLIENTS IN_FLIGHT DURATION [extra...]
  local c=$1 k=$2 d=$3
  shift 3
  "${BIN_OURS:-$BIN/volt-bench}" --url "$URL" --cluster "$CLUSTER" --password "$PASSWORD" \
    --clients "$c" --in-flight "$k" --duration "$d" --warmup "$WARMUP" \
    --payload-bytes "$PAYLOAD" --server-pid "$SERVER_PID" --json "$@"
}
# ours, then ours without counters, or the other way round in even rounds.
ours_ab() { # WORKLOAD ROUND CLIENTS IN_FLIGHT DURATION
  local w=$1 r=$2
  shift 2
  if [ -z "$STATS_AB" ]; then
    record "$w" ours "$r" ours "$@"
  elif [ $((r % 2)) = 1 ]; then
    record "$w" ours "$r" ours "$@"
    record "$w" ours-stats-off "$r" ours_off "$@"
  else
    record "$w" ours-stats-off "$r" ours_off "$@"
    record "$w" ours "$r" ours "$@"
  fi
}
ours_off() { BIN_OURS=$OFF_BIN ours "$@"; }
rsio() { # CLIENTS IN_FLIGHT DURATION
  "$RSIO_BIN" --url "$URL" --cluster "$CLUSTER" --password "$PASSWORD" \
    --clients "$1" --in-flight "$2" --duration "$3" --warmup "$WARMUP" \
    --payload-bytes "$PAYLOAD" --server-pid "$SERVER_PID" --json
}
theirs() { # CLIENTS IN_FLIGHT DURATION
  node "$HERE/node-bench.js" --url "$URL" --cluster "$CLUSTER" --password "$PASSWORD" \
    --clients "$1" --in-flight "$2" --duration "$3" --warmup "$WARMUP" \
    --payload-bytes "$PAYLOAD" --server-pid "$SERVER_PID" --json
}
# One pinned run of `volt-bench --interleave-tcp`: ours and the TCP
# ping-pong alternate in 50 ms turns within one process, so both see the
# same machine state; recorded as two rows.
record_interleaved() { # ROUND
  local json
  json=$(taskset -c 0 "$BIN/volt-bench" --interleave-tcp "$TCP_ADDR" --url "$URL" \
    --cluster "$CLUSTER" --password "$PASSWORD" --duration "$DURATION" --warmup "$WARMUP" \
    --payload-bytes "$PAYLOAD" --json)
  for side in ours tcp; do
    jq -c --arg s "$side" --argjson r "$1" \
      '{workload: "latency 1x1 pinned, interleaved", impl: $s, round: $r} + .[$s]' \
      <<<"$json" >>"$RESULTS"
  done
  jq -r --argjson r "$1" \
    '"  round \($r) latency 1x1 pinned, interleaved: ours p50 \(.ours.p50_us) us, tcp p50 \(.tcp.p50_us) us, ratio \(.p50_ratio*100|round/100)"' \
    <<<"$json" >&2
}
tcp() { # DURATION
  "$BIN/tcp-pingpong" client "$TCP_ADDR" --duration "$1" --warmup "$WARMUP" \
    --bytes "$PAYLOAD" --json
}
pin_servers() { # CPULIST
  taskset -apc "$1" "$SERVER_PID" >/dev/null
  taskset -apc "$1" "$TCP_PID" >/dev/null
}

for r in $(seq "$ROUNDS"); do
  echo "== round $r/$ROUNDS" >&2
  W="throughput ${CLIENTS}x${IN_FLIGHT}"
  ours_ab "$W" "$r" "$CLIENTS" "$IN_FLIGHT" "$DURATION"
  if [ "$STATS_AB" = only ]; then
    for _ in $(seq "$LATENCY_SLICES"); do
      ours_ab "latency 1x1 unpinned" "$r" 1 1 "$LATENCY_SLICE"
    done
    continue
  fi
  record "$W" node "$r" theirs "$CLIENTS" "$IN_FLIGHT" "$DURATION"
  record "$W" rust_socketio "$r" rsio "$CLIENTS" "$IN_FLIGHT" "$DURATION"

  # Latency in short slices, the three alternating: this VM drifts between
  # a fast and a slow state for seconds at a time, and a ratio is only
  # meaningful between runs made in the same state.
  for _ in $(seq "$LATENCY_SLICES"); do
    ours_ab "latency 1x1 unpinned" "$r" 1 1 "$LATENCY_SLICE"
    record "latency 1x1 unpinned" node "$r" theirs 1 1 "$LATENCY_SLICE"
    record "latency 1x1 unpinned" rust_socketio "$r" rsio 1 1 "$LATENCY_SLICE"
    record "latency 1x1 unpinned" tcp "$r" tcp "$LATENCY_SLICE"
  done

  pin_servers 0
  for _ in $(seq "$LATENCY_SLICES"); do
    record "latency 1x1 pinned" ours "$r" taskset -c 0 "$BIN/volt-bench" --url "$URL" \
      --cluster "$CLUSTER" --password "$PASSWORD" --clients 1 --in-flight 1 \
      --duration "$LATENCY_SLICE" --warmup "$WARMUP" --payload-bytes "$PAYLOAD" \
      --server-pid "$SERVER_PID" --json
    record "latency 1x1 pinned" node "$r" taskset -c 0 node "$HERE/node-bench.js" --url "$URL" \
      --cluster "$CLUSTER" --password "$PASSWORD" --clients 1 --in-flight 1 \
      --duration "$LATENCY_SLICE" --warmup "$WARMUP" --payload-bytes "$PAYLOAD" \
      --server-pid "$SERVER_PID" --json
    record "latency 1x1 pinned" rust_socketio "$r" taskset -c 0 "$RSIO_BIN" --url "$URL" \
      --cluster "$CLUSTER" --password "$PASSWORD" --clients 1 --in-flight 1 \
      --duration "$LATENCY_SLICE" --warmup "$WARMUP" --payload-bytes "$PAYLOAD" \
      --server-pid "$SERVER_PID" --json
    record "latency 1x1 pinned" tcp "$r" taskset -c 0 "$BIN/tcp-pingpong" client "$TCP_ADDR" \
      --duration "$LATENCY_SLICE" --warmup "$WARMUP" --bytes "$PAYLOAD" --json
  done
  record_interleaved "$r"
  pin_servers "0-$((NPROC - 1))"
done
if [ "$STATS_AB" = only ]; then
  echo "== $(date -u +%Y-%m-%dT%H:%MZ), nproc $NPROC, $ROUNDS rounds of $DURATION, payload $PAYLOAD bytes, ours with and without counters" >&2
  node "$HERE/summarize.js" "$RESULTS"
  exit 0
fi
echo "== rss with 1000 in flight" >&2
record "rss 1x1000" ours 1 ours 1 1000 2s
record "rss 1x1000" node 1 theirs 1 1000 2s
record "rss 1x1000" rust_socketio 1 rsio 1 1000 2s

# The fleet holds one socket per daemon (the server process another): raise
# the soft open-files limit for this shell (up to the hard limit; no
# privilege needed). volt-bench cannot do it itself (no setrlimit without
# unsafe code) and says so when the limit is too low.
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((FLEET * 2 + 256)) ]; then
  ulimit -n $((FLEET * 2 + 256)) 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
echo "== fleet: $FLEET daemons heartbeating every $HEARTBEAT_MS ms for $FLEET_DURATION (ulimit -n $(ulimit -n))" >&2
"$BIN/volt-bench" --fleet "$FLEET" --heartbeat-ms "$HEARTBEAT_MS" --duration "$FLEET_DURATION" \
  --warmup "$WARMUP" --url "$URL" --cluster "$CLUSTER" --password "$PASSWORD" \
  --server-pid "$SERVER_PID" --json >"$OUT/fleet.json" || echo "   (fleet run failed or unhealthy, see above)" >&2
echo "== idle: one client for $IDLE, embedded server pingInterval $IDLE_PING_MS ms" >&2
"$BIN/volt-bench" --idle "$IDLE" --ping-interval-ms "$IDLE_PING_MS" --warmup "$WARMUP" \
  --json >"$OUT/idle.json" || echo "   (idle run failed, see above)" >&2
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)

echo "== $(date -u +%Y-%m-%dT%H:%MZ), nproc $NPROC, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $ROUNDS rounds of $DURATION, payload $PAYLOAD bytes" >&2
node "$HERE/summarize.js" "$RESULTS"

if [ -s "$OUT/fleet.json" ]; then
  echo
  jq -r --arg load "$LOADAVG" '
    def r(d): if . == null then "—" else (. * pow(10; d) | round / pow(10; d) | tostring) end;
    "Fleet: \(.daemons) daemons, heartbeat every \(.heartbeat_ms) ms, \(.elapsed_s | r(1)) s measured against the out-of-process mock server (load average \($load)).",
    "",
    "| metric | value |",
    "| --- | ---: |",
    "| connected at end | \(.connected_at_end) / \(.daemons) (\(.disconnects) disconnects) |",
    "| heartbeats answered per second | \(.answered_per_s | r(0)) (expected \(.expected_per_s | r(0))) |",
    "| reply latency p50 (µs) | \(.p50_us | r(1)) |",
    "| reply latency p99 (µs) | \(.p99_us | r(1)) |",
    "| server CPU per second (ms/s) | \(if .server_cpu_per_s == null then null else .server_cpu_per_s * 1000 end | r(1)) |",
    "| server CPU per heartbeat (µs) | \(.server_cpu_per_heartbeat_us | r(2)) |",
    "| server RSS at the end (MiB) | \(if .server_rss_kib == null then null else .server_rss_kib / 1024 end | r(1)) |",
    "| volt-bench peak RSS, 1,000 raw sockets (MiB) | \(.peak_rss_kib / 1024 | r(1)) |"
  ' "$OUT/fleet.json"
fi
if [ -s "$OUT/idle.json" ]; then
  echo
  jq -r --arg load "$LOADAVG" '
    def r(d): if . == null then "—" else (. * pow(10; d) | round / pow(10; d) | tostring) end;
    "Idle: one connected client, \(.window_s | r(1)) s window, pingInterval \(.ping_interval_ms) ms, heartbeat every \(.heartbeat_interval_ms / 1000) s (load average \($load)); \(.server_frames_out) ping(s) in the window.",
    "",
    "| thread | CPU ticks | CPU (µs, schedstat) | voluntary switches | involuntary switches |",
    "| --- | ---: | ---: | ---: | ---: |",
    (.threads[] | "| \(.name)\(if .count > 1 then " (×\(.count))" else "" end) | \(.ticks) | \(.cpu_us | r(0)) | \(.voluntary_ctxt_switches) | \(.nonvoluntary_ctxt_switches) |"),
    "| **all client threads** | \(.client_ticks) | \(.client_cpu_us | r(0)) | \(.voluntary_ctxt_switches) | \(.nonvoluntary_ctxt_switches) |",
    "",
    "Switches per ping: \(.switches_per_ping | r(1))."
  ' "$OUT/idle.json"
fi
