#!/bin/sh
# shellcheck disable=SC3045  # ulimit -n and -H: dash and bash both have them
# The benchmarks: the library against a plain libcurl C client, side by side.
#   sh bench/run.sh [BUILD_DIR]        (default: build; `make bench` builds first)
# Builds nothing: BUILD_DIR must hold llm/core.so, llm-mock and bench_ref_client.
# Environment: BENCH_RUNS (repetitions, median reported; default 3), BENCH_EVENTS (events in
# the throughput stream; default 200000), BENCH_STREAMS, BENCH_FANOUT_EVENTS,
# BENCH_FANOUT_DELAY_MS (fan-out shape; default 1000 streams x 20 events, 5 ms apart),
# BENCH_FRAME_STREAMS, BENCH_FRAME_EVENTS, BENCH_FRAME_DELAY_MS (the frame loop; default 100
# live streams x 300 events, 20 ms apart), BENCH_CASES (default "stream fanout frame limiter"),
# BENCH_LIMITER_REQUESTS (calls queued against the rate-limited mock; default 2000).
# Every measurement is its own process, so CPU time and peak RSS are per client.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$(cd "$BUILD" 2>/dev/null && pwd || echo "$PWD/$BUILD") ;; esac

RUNS=${BENCH_RUNS:-3}
EVENTS=${BENCH_EVENTS:-200000}
STREAMS=${BENCH_STREAMS:-1000}
FEVENTS=${BENCH_FANOUT_EVENTS:-20}
FDELAY=${BENCH_FANOUT_DELAY_MS:-5}
FSTREAMS=${BENCH_FRAME_STREAMS:-100}
FRAME_EVENTS=${BENCH_FRAME_EVENTS:-300}
FRAME_DELAY=${BENCH_FRAME_DELAY_MS:-20}
CASES=${BENCH_CASES:-stream fanout frame limiter}
LIMIT=60      # seconds any one measurement may take
has_case() { case " $CASES " in *" $1 "*) return 0 ;; esac; return 1; }

need_files="$BUILD/llm/core.so $BUILD/llm-mock $BUILD/bench_ref_client"
if has_case frame; then need_files="$need_files $BUILD/llm-host"; fi
for f in $need_files; do
  if [ ! -e "$f" ]; then
    echo "bench: missing $f (build first: make bench, or cmake --build $BUILD)" >&2
    exit 1
  fi
done
command -v curl >/dev/null || { echo "bench: needs the curl command (mock server stats)" >&2; exit 1; }

# 1,000 sockets plus the loop's own descriptors.
need=$((STREAMS + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
  hard=$(ulimit -Hn)
  if [ "$hard" = unlimited ] || [ "$hard" -ge "$need" ]; then ulimit -n "$need"
  else ulimit -n "$hard"; echo "bench: fd limit is $hard, below $need; fan-out may fail" >&2; fi
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/llm-bench.XXXXXX")
MOCK_PID=
cleanup() {
  if [ -n "$MOCK_PID" ]; then kill "$MOCK_PID" 2>/dev/null || true; wait "$MOCK_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The mock server never runs under an ASan LD_PRELOAD (DESIGN "Toolchain facts").
env -u LD_PRELOAD "$BUILD/llm-mock" --port 0 --port-file "$TMP/port" --quiet >"$TMP/mock.log" 2>&1 &
MOCK_PID=$!
i=0
while [ ! -s "$TMP/port" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
[ -s "$TMP/port" ] || { echo "bench: the mock server did not start" >&2; cat "$TMP/mock.log" >&2; exit 1; }
PORT=$(cat "$TMP/port")
BASE="http://127.0.0.1:$PORT/v1"
URL="$BASE/chat/completions"
# The body the library's openai client sends for "hi" with model "m" (checked by the
# mock server's request log); the http layer and the reference send it verbatim.
BODY='{"messages":[{"content":"hi","role":"user"}],"model":"m","stream":true,"stream_options":{"include_usage":true}}'

export LUA_PATH="$ROOT/?.lua;$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH="$BUILD/?.so;;"
BENCH_CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
export BENCH_CLK_TCK
RESULTS="$TMP/results"
: >"$RESULTS"

mock() { env -u LD_PRELOAD curl -sS --max-time 10 "$@"; }

# measure LABEL CMD...: one process, its RESULT line appended to the results file.
measure() {
  label=$1; shift
  if out=$(timeout "$LIMIT" "$@" 2>"$TMP/err"); then :; else
    echo "bench: $label failed (exit $?):" >&2; cat "$TMP/err" >&2
  fi
  line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1)
  [ -n "$line" ] || line="RESULT name=$label events=0 streams=0 errors=1 wall=0 cpu=0 user=0 sys=0 maxrss_kb=0"
  printf '%s label=%s\n' "$line" "$label" >>"$RESULTS"
}

# fanout LABEL CMD...: as measure, with the mock server's peak of simultaneous requests.
fanout() {
  mock -X POST "http://127.0.0.1:$PORT/__mock/reset" >/dev/null
  label=$1
  measure "$@"
  peak=$(mock "http://127.0.0.1:$PORT/__mock/stats" | sed -n 's/.*"peak_active":\([0-9]*\).*/\1/p')
  # rewrite the last line with the peak appended
  sed -i '$ s/$/ peak_active='"${peak:-0}"'/' "$RESULTS"
}

echo "llm benchmarks: $RUNS run(s) each, median shown; mock server on 127.0.0.1:$PORT"
r=1
while [ $r -le "$RUNS" ]; do
  printf '  run %d/%d:' "$r" "$RUNS"
  if has_case stream; then
    printf ' stream'
    measure stream/ref "$BUILD/bench_ref_client" --name stream-ref --url "$URL" --body "$BODY" --events "$EVENTS"
    measure stream/http lua5.4 "$ROOT/bench/stream.lua" --layer http --url "$BASE" --body "$BODY" --events "$EVENTS"
    measure stream/client lua5.4 "$ROOT/bench/stream.lua" --layer client --url "$BASE" --events "$EVENTS"
  fi
  if has_case fanout; then
    printf ' fanout'
    fanout fanout/ref "$BUILD/bench_ref_client" --name fanout-ref --url "$URL" --body "$BODY" \
      --events "$FEVENTS" --delay-ms "$FDELAY" --streams "$STREAMS"
    fanout fanout/http lua5.4 "$ROOT/bench/fanout.lua" --layer http --url "$BASE" --body "$BODY" \
      --events "$FEVENTS" --delay-ms "$FDELAY" --streams "$STREAMS"
    fanout fanout/client lua5.4 "$ROOT/bench/fanout.lua" --layer client --url "$BASE" \
      --events "$FEVENTS" --delay-ms "$FDELAY" --streams "$STREAMS"
  fi
  if has_case frame; then
    # The frame loop: the C host (examples/host) steps llm once per 60 Hz frame and times it.
    printf ' frame'
    measure frame/host "$BUILD/llm-host" --quiet --max-seconds "$((LIMIT - 10))" "$ROOT/bench/frame.lua" "$BASE" \
      "$FSTREAMS" "$FRAME_EVENTS" "$FRAME_DELAY"
  fi
  echo
  r=$((r + 1))
done

# Each stream carries EVENTS text deltas plus role, finish, usage and [DONE]: 4 more SSE
# events; the client turns them into as many normalized events (raw, text..., raw, usage, done).
EXPECT_STREAM=$((EVENTS + 4))
EXPECT_FANOUT=$((STREAMS * (FEVENTS + 4)))

cpu_model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1)
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null | head -n 1)
echo
echo "machine: $(nproc) CPUs${cpu_model:+ ($cpu_model)}, $(uname -sr), $(lua5.4 -v 2>&1 | head -n 1)"
echo "libcurl: $(env -u LD_PRELOAD curl --version | head -n 1)"
echo "build:   $BUILD (${build_type:-RelWithDebInfo, the default}), fd limit $(ulimit -n)"
lua5.4 "$ROOT/bench/report.lua" "$RESULTS" "$EXPECT_STREAM" "$EXPECT_FANOUT" "$STREAMS" \
  "$EVENTS" "$FEVENTS" "$FDELAY" "$FSTREAMS" "$FRAME_EVENTS" "$FRAME_DELAY"

# The limiter against a mock enforcing 60 requests/s (its own server; one run of ~35 s).
if has_case limiter; then
  echo
  LLM_MOCK_BIN="$BUILD/llm-mock" timeout 180 lua5.4 "$ROOT/bench/limiter.lua" \
    --requests "${BENCH_LIMITER_REQUESTS:-2000}" --rps 60 | grep -v '^RESULT ' || echo "bench: limiter failed" >&2
fi
