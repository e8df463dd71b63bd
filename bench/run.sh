#!/bin/sh
# shellcheck disable=SC3045  # ulimit -n and -H: dash and bash both have them
# The benchmarks: the library against a plain libcurl C client (bench_ref_client, with and
# without decoding every event with cJSON) and a pure-Lua client (bench/luapeer.lua, LuaSocket
# + lua-cjson), side by side in one run.
#   sh bench/run.sh [BUILD_DIR]        (default: build; `make bench` builds first)
# Builds nothing: BUILD_DIR must hold llm/core.so, llm-mock and bench_ref_client.
# Environment (defaults in brackets):
#   BENCH_RUNS [3]            repetitions; the median of each figure is reported
#   BENCH_CASES [stream fanout small ttft h2 frame]   (and limiter: make bench-limiter)
#   BENCH_EVENTS [200000]     (a) text deltas in the one throughput stream
#   BENCH_STREAMS [1000], BENCH_FANOUT_EVENTS [200], BENCH_FANOUT_DELAY_MS [5]   (b)
#   BENCH_SMALL_REQUESTS [20000], BENCH_SMALL_CONCURRENCY [64]                  (c)
#   BENCH_TTFT_REQUESTS [500], BENCH_TTFT_EVENTS [5]                             (d)
#   BENCH_H2_STREAMS [= BENCH_STREAMS]   (b) over HTTP/2 and TLS against nghttpd
#   BENCH_FRAME_STREAMS [100], BENCH_FRAME_EVENTS [300], BENCH_FRAME_DELAY_MS [20]
#   BENCH_LIMITER_REQUESTS [2000]   calls queued against the rate-limited mock (one run)
#   BENCH_QUICK=1             every scale knob small (a run of about 30 s)
#   BENCH_CHART [bench/chart.png]  the chart gnuplot draws ("" for none)
#   BENCH_BASELINE [none]     another checkout of the library, built in its build/: its llm
#                             client is measured too, as the "before" row (bench/NOTES.md)
# Every measurement is its own process, so CPU time and peak RSS are per client.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$(cd "$BUILD" 2>/dev/null && pwd || echo "$PWD/$BUILD") ;; esac

if [ "${BENCH_QUICK:-0}" = 1 ]; then
  : "${BENCH_RUNS:=1}" "${BENCH_EVENTS:=20000}" "${BENCH_STREAMS:=200}" "${BENCH_FANOUT_EVENTS:=50}"
  : "${BENCH_SMALL_REQUESTS:=2000}" "${BENCH_TTFT_REQUESTS:=100}" "${BENCH_FRAME_EVENTS:=60}"
  : "${BENCH_LIMITER_REQUESTS:=300}"
fi
RUNS=${BENCH_RUNS:-3}
EVENTS=${BENCH_EVENTS:-200000}
STREAMS=${BENCH_STREAMS:-1000}
FEVENTS=${BENCH_FANOUT_EVENTS:-200}
FDELAY=${BENCH_FANOUT_DELAY_MS:-5}
SMALL=${BENCH_SMALL_REQUESTS:-20000}
SMALL_CONC=${BENCH_SMALL_CONCURRENCY:-64}
TTFT_N=${BENCH_TTFT_REQUESTS:-500}
TTFT_EVENTS=${BENCH_TTFT_EVENTS:-5}
H2_STREAMS=${BENCH_H2_STREAMS:-$STREAMS}
FSTREAMS=${BENCH_FRAME_STREAMS:-100}
FRAME_EVENTS=${BENCH_FRAME_EVENTS:-300}
FRAME_DELAY=${BENCH_FRAME_DELAY_MS:-20}
CASES=${BENCH_CASES:-stream fanout small ttft h2 frame}
CHART=${BENCH_CHART-$ROOT/bench/chart.png}
BASELINE=${BENCH_BASELINE:-}
if [ -n "$BASELINE" ]; then
  BASELINE=$(cd "$BASELINE" && pwd)
  [ -e "$BASELINE/build/llm/core.so" ] || { echo "bench: BENCH_BASELINE=$BASELINE has no build/llm/core.so" >&2; exit 1; }
fi
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
if has_case h2; then
  for c in nghttpd openssl; do
    command -v $c >/dev/null || { echo "bench: case h2 needs $c (make bench installs nghttp2-server)" >&2; exit 1; }
  done
fi

# 1,000 sockets plus the loop's own descriptors.
need=$((STREAMS + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
  hard=$(ulimit -Hn)
  if [ "$hard" = unlimited ] || [ "$hard" -ge "$need" ]; then ulimit -n "$need"
  else ulimit -n "$hard"; echo "bench: fd limit is $hard, below $need; fan-out may fail" >&2; fi
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/llm-bench.XXXXXX")
MOCK_PID=
H2_PID=
cleanup() {
  if [ -n "$MOCK_PID" ]; then kill "$MOCK_PID" 2>/dev/null || true; wait "$MOCK_PID" 2>/dev/null || true; fi
  if [ -n "$H2_PID" ]; then kill "$H2_PID" 2>/dev/null || true; wait "$H2_PID" 2>/dev/null || true; fi
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
SMALL_BODY='{"messages":[{"content":"hi","role":"user"}],"model":"m"}'

export LUA_PATH="$ROOT/?.lua;$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH="$BUILD/?.so;;"
BENCH_CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
export BENCH_CLK_TCK
RESULTS="$TMP/results"
: >"$RESULTS"

# HTTP/2: nghttpd (TLS, a certificate made for this run) serves the SSE body of one fan-out
# stream, recorded from the mock server, as a static file at the same path. No pacing: the
# file goes out as fast as nghttpd sends it.
H2_BASE=
if has_case h2; then
  mkdir -p "$TMP/h2/v1/chat"
  env -u LD_PRELOAD openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1
  env -u LD_PRELOAD curl -sS --max-time 10 -X POST -H "x-mock-events: $FEVENTS" -d "$BODY" "$URL" \
    >"$TMP/h2/v1/chat/completions"
  printf 'text/event-stream\tcompletions\n' >"$TMP/mime.types"
  H2_PORT=$(lua5.4 -e 'local s = require("socket").bind("127.0.0.1", 0); local _, p = s:getsockname(); print(p); s:close()')
  env -u LD_PRELOAD nghttpd -a 127.0.0.1 -d "$TMP/h2" --mime-types-file="$TMP/mime.types" \
    "$H2_PORT" "$TMP/key.pem" "$TMP/cert.pem" >"$TMP/h2.log" 2>&1 &
  H2_PID=$!
  H2_BASE="https://127.0.0.1:$H2_PORT/v1"
  i=0
  until env -u LD_PRELOAD curl -s -o /dev/null --cacert "$TMP/cert.pem" "$H2_BASE/chat/completions"; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "bench: nghttpd did not start" >&2; cat "$TMP/h2.log" >&2; exit 1; }
    sleep 0.05
  done
fi

mock() { env -u LD_PRELOAD curl -sS --max-time 10 "$@"; }

# measure LABEL CMD...: one process, its RESULT line appended to the results file. The mock
# server forgets its request log first: every client meets a server in the same state (the
# log of a 20,000-request case would otherwise grow the server's heap for the next client).
measure() {
  mock -X POST "http://127.0.0.1:$PORT/__mock/reset" >/dev/null
  label=$1; shift
  t_start=$(date +%s.%N)
  if out=$(timeout "$LIMIT" "$@" 2>"$TMP/err"); then
    grep -i "error" "$TMP/err" | head -n 3 | sed "s|^|bench: $label: |" >&2 || true
  else
    echo "bench: $label failed (exit $?):" >&2; cat "$TMP/err" >&2
  fi
  t_end=$(date +%s.%N)
  line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1)
  [ -n "$line" ] || line="RESULT name=$label events=0 streams=0 errors=1 wall=0 cpu=0 user=0 sys=0 maxrss_kb=0"
  printf '%s label=%s elapsed=%s\n' "$line" "$label" "$(awk "BEGIN { print $t_end - $t_start }")" >>"$RESULTS"
}

# baseline LABEL SCRIPT ARGS...: with BENCH_BASELINE, the same Lua script on another checkout
# of the library (its lua/ and build/llm/core.so): the "before" row of the same run.
baseline() {
  [ -n "$BASELINE" ] || return 0
  label=$1; shift
  LUA_PATH="$ROOT/?.lua;$BASELINE/lua/?.lua;$BASELINE/lua/?/init.lua;;" LUA_CPATH="$BASELINE/build/?.so;;" \
    "$@"
}

# fanout LABEL CMD...: as measure, with the mock server's peak of simultaneous requests.
fanout() {
  label=$1
  measure "$@"
  peak=$(mock "http://127.0.0.1:$PORT/__mock/stats" | sed -n 's/.*"peak_active":\([0-9]*\).*/\1/p')
  # rewrite the last line with the peak appended
  sed -i '$ s/$/ peak_active='"${peak:-0}"'/' "$RESULTS"
}

echo "llm benchmarks: $RUNS run(s) each, median shown; mock server on 127.0.0.1:$PORT; load: $(cut -d' ' -f1-3 /proc/loadavg)"
REF="$BUILD/bench_ref_client"
r=1
while [ $r -le "$RUNS" ]; do
  printf '  run %d/%d:' "$r" "$RUNS"
  if has_case stream; then
    printf ' stream'
    measure stream/ref "$REF" --name stream-ref --url "$URL" --body "$BODY" --events "$EVENTS"
    measure stream/refjson "$REF" --json --name stream-refjson --url "$URL" --body "$BODY" --events "$EVENTS"
    measure stream/lua lua5.4 "$ROOT/bench/luapeer.lua" --url "$URL" --body "$BODY" --events "$EVENTS"
    measure stream/http lua5.4 "$ROOT/bench/stream.lua" --layer http --url "$BASE" --body "$BODY" --events "$EVENTS"
    measure stream/client lua5.4 "$ROOT/bench/stream.lua" --layer client --url "$BASE" --events "$EVENTS"
    baseline stream/base measure stream/base lua5.4 "$ROOT/bench/stream.lua" --layer client --url "$BASE" --events "$EVENTS"
  fi
  if has_case fanout; then
    printf ' fanout'
    F="--events $FEVENTS --delay-ms $FDELAY --streams $STREAMS"
    # shellcheck disable=SC2086
    {
    fanout fanout/ref "$REF" --name fanout-ref --url "$URL" --body "$BODY" $F
    fanout fanout/refjson "$REF" --json --name fanout-refjson --url "$URL" --body "$BODY" $F
    fanout fanout/lua lua5.4 "$ROOT/bench/luapeer.lua" --url "$URL" --body "$BODY" $F
    fanout fanout/http lua5.4 "$ROOT/bench/fanout.lua" --layer http --url "$BASE" --body "$BODY" $F
    fanout fanout/client lua5.4 "$ROOT/bench/fanout.lua" --layer client --url "$BASE" $F
    baseline fanout/base fanout fanout/base lua5.4 "$ROOT/bench/fanout.lua" --layer client --url "$BASE" $F
    }
  fi
  if has_case small; then
    printf ' small'
    S="--requests $SMALL --concurrency $SMALL_CONC"
    # shellcheck disable=SC2086
    {
    measure small/ref "$REF" --mode small --name small-ref --url "$URL" --body "$SMALL_BODY" $S
    measure small/refjson "$REF" --mode small --json --name small-refjson --url "$URL" --body "$SMALL_BODY" $S
    measure small/lua lua5.4 "$ROOT/bench/luapeer.lua" --mode small --url "$URL" --body "$SMALL_BODY" $S
    measure small/http lua5.4 "$ROOT/bench/small.lua" --layer http --url "$BASE" --body "$SMALL_BODY" $S
    measure small/client lua5.4 "$ROOT/bench/small.lua" --layer client --url "$BASE" $S
    baseline small/base measure small/base lua5.4 "$ROOT/bench/small.lua" --layer client --url "$BASE" $S
    }
  fi
  if has_case ttft; then
    printf ' ttft'
    T="--requests $TTFT_N --events $TTFT_EVENTS"
    # shellcheck disable=SC2086
    {
    measure ttft/ref "$REF" --mode ttft --name ttft-ref --url "$URL" --body "$BODY" $T
    measure ttft/refjson "$REF" --mode ttft --json --name ttft-refjson --url "$URL" --body "$BODY" $T
    measure ttft/lua lua5.4 "$ROOT/bench/luapeer.lua" --mode ttft --url "$URL" --body "$BODY" $T
    measure ttft/http lua5.4 "$ROOT/bench/ttft.lua" --layer http --url "$BASE" --body "$BODY" $T
    measure ttft/client lua5.4 "$ROOT/bench/ttft.lua" --layer client --url "$BASE" $T
    baseline ttft/base measure ttft/base lua5.4 "$ROOT/bench/ttft.lua" --layer client --url "$BASE" $T
    }
  fi
  if has_case h2; then
    printf ' h2'
    H="--events $FEVENTS --delay-ms 0 --streams $H2_STREAMS"
    # shellcheck disable=SC2086
    {
    measure h2/ref "$REF" --name h2-ref --url "$H2_BASE/chat/completions" --cacert "$TMP/cert.pem" --body "$BODY" $H
    measure h2/refjson "$REF" --json --name h2-refjson --url "$H2_BASE/chat/completions" --cacert "$TMP/cert.pem" --body "$BODY" $H
    measure h2/http lua5.4 "$ROOT/bench/fanout.lua" --layer http --url "$H2_BASE" --ca-file "$TMP/cert.pem" --body "$BODY" $H
    measure h2/client lua5.4 "$ROOT/bench/fanout.lua" --layer client --url "$H2_BASE" --ca-file "$TMP/cert.pem" $H
    baseline h2/base measure h2/base lua5.4 "$ROOT/bench/fanout.lua" --layer client --url "$H2_BASE" --ca-file "$TMP/cert.pem" $H
    }
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
EXPECT_H2=$((H2_STREAMS * (FEVENTS + 4)))
EXPECT_TTFT=$((TTFT_N * (TTFT_EVENTS + 4)))

cpu_model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1)
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null | head -n 1)
echo
echo "machine: $(nproc) CPUs${cpu_model:+ ($cpu_model)}, $(uname -sr), $(lua5.4 -v 2>&1 | head -n 1)"
echo "libcurl: $(env -u LD_PRELOAD curl --version | head -n 1)"
echo "build:   $BUILD (${build_type:-RelWithDebInfo, the default}), fd limit $(ulimit -n)"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) at the end (load average: 1, 5, 15 min)"
status=0
BENCH_CHART_DATA="$TMP/chart.dat" \
BENCH_EXPECT="stream=$EXPECT_STREAM fanout=$EXPECT_FANOUT small=$SMALL ttft=$EXPECT_TTFT h2=$EXPECT_H2" \
BENCH_SHAPE="events=$EVENTS streams=$STREAMS fevents=$FEVENTS fdelay=$FDELAY small=$SMALL small_conc=$SMALL_CONC ttft=$TTFT_N ttft_events=$TTFT_EVENTS h2_streams=$H2_STREAMS frame_streams=$FSTREAMS frame_events=$FRAME_EVENTS frame_delay=$FRAME_DELAY" \
  lua5.4 "$ROOT/bench/report.lua" "$RESULTS" || status=$?
# The chart shows the table's cases (a run of the frame or limiter case alone draws none).
table_cases=no
for c in stream fanout small ttft h2; do if has_case $c; then table_cases=yes; fi; done
if [ -n "$CHART" ] && [ $table_cases = yes ] && [ -s "$TMP/chart.dat" ]; then
  if command -v gnuplot >/dev/null; then
    gnuplot -e "datafile='$TMP/chart.dat'; outfile='$CHART'; subtitle='$(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), median of $RUNS'" \
      "$ROOT/bench/chart.gp" && echo "chart:   $CHART"
  else
    echo "bench: no gnuplot (make bench installs gnuplot-nox): no chart" >&2
  fi
fi

# The limiter against a mock enforcing 60 requests/s (its own server; one run of ~35 s).
if has_case limiter; then
  echo
  LLM_MOCK_BIN="$BUILD/llm-mock" timeout 180 lua5.4 "$ROOT/bench/limiter.lua" \
    --requests "${BENCH_LIMITER_REQUESTS:-2000}" --rps 60 | grep -v '^RESULT ' || echo "bench: limiter failed" >&2
fi
exit $status
