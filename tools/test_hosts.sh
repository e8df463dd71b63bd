#!/bin/sh
# The host examples, each against the mock server (make test-hosts; ctest runs the C host).
#   sh tools/test_hosts.sh [BUILD_DIR] [HOST...]
# HOSTs: host (examples/host, the C frame loop), sandbox (the same host without the os, io
# and debug globals), noexport (the same host linked without -Wl,-E, which must fail to
# load the module), luv (examples/luv.lua on lua5.4),
# nvim (examples/nvim, headless Neovim on LuaJIT), love (examples/love, LÖVE 11 on LuaJIT
# under xvfb-run). Default: all of them. nvim and love load the LuaJIT build of the module
# from LLM_BUILD_LUAJIT (default build-luajit; make build LUA=luajit).
# Every host asserts what it streamed itself and exits non-zero otherwise; this script also
# checks the final line it prints. Exits non-zero if any host failed.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${1:-build}
[ $# -gt 0 ] && shift
case $BUILD in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
JIT=${LLM_BUILD_LUAJIT:-build-luajit}
case $JIT in /*) ;; *) JIT="$ROOT/$JIT" ;; esac
HOSTS=${*:-host sandbox noexport luv nvim love}
LIMIT=60
EXPECTED="It is sunny in Paris and raining in Tokyo."

TMP=$(mktemp -d "${TMPDIR:-/tmp}/llm-hosts.XXXXXX")
MOCK_PID=
cleanup() {
  if [ -n "$MOCK_PID" ]; then kill "$MOCK_PID" 2>/dev/null; wait "$MOCK_PID" 2>/dev/null; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The mock server never runs under an ASan LD_PRELOAD (DESIGN "Toolchain facts").
env -u LD_PRELOAD "$BUILD/llm-mock" --port 0 --port-file "$TMP/port" --quiet >"$TMP/mock.log" 2>&1 &
MOCK_PID=$!
i=0
while [ ! -s "$TMP/port" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
[ -s "$TMP/port" ] || { echo "test_hosts: the mock server did not start" >&2; cat "$TMP/mock.log" >&2; exit 1; }
LLM_MOCK_URL="http://127.0.0.1:$(cat "$TMP/port")"
export LLM_MOCK_URL
# The examples choose the real API when a key is set; these runs stay offline.
unset OPENAI_API_KEY ANTHROPIC_API_KEY GEMINI_API_KEY OLLAMA_BASE_URL

failed=0
# check NAME EXPECT_RC PATTERN CMD...: run CMD, require its exit status and PATTERN in its output.
check() {
  name=$1 want=$2 pattern=$3; shift 3
  timeout "$LIMIT" "$@" >"$TMP/out" 2>&1
  rc=$?
  if { [ "$want" = 0 ] && [ $rc -eq 0 ]; } || { [ "$want" != 0 ] && [ $rc -ne 0 ]; }; then
    if grep -q -- "$pattern" "$TMP/out"; then
      echo "ok   $name: $(grep -- "$pattern" "$TMP/out" | tail -n 1)"
      grep '^llm-host: .* frames at' "$TMP/out" || true
      return 0
    fi
  fi
  echo "FAIL $name (exit $rc, expected $( [ "$want" = 0 ] && echo 0 || echo non-zero); wanted: $pattern):"
  sed 's/^/     /' "$TMP/out"
  failed=1
}

# Lua 5.4 hosts find the module here (the _5_4 names: LuaJIT hosts do not read them).
LUA_PATH_5_4="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
LUA_CPATH_5_4="$BUILD/?.so;;"
export LUA_PATH_5_4 LUA_CPATH_5_4

for h in $HOSTS; do
  case $h in nvim|love)
    if [ ! -e "$JIT/llm/core.so" ]; then
      echo "FAIL $h: no LuaJIT build of the module in $JIT (make build LUA=luajit)"
      failed=1
      continue
    fi ;;
  esac
  case $h in
    host)
      check "host (C, static Lua 5.4, 60 Hz)" 0 "streamed: $EXPECTED" \
        "$BUILD/llm-host" examples/host/game.lua ;;
    sandbox)
      check "host, sandboxed (no os, io, debug globals)" 0 "streamed: $EXPECTED" \
        "$BUILD/llm-host" --sandbox examples/host/game.lua "$LLM_MOCK_URL/v1" ;;
    noexport)
      check "host without -Wl,-E cannot load the module" 1 "undefined symbol: lua" \
        "$BUILD/llm-host-noexport" examples/host/game.lua ;;
    luv)
      check "luv (lua5.4 + lua-luv)" 0 "luv: .* wake-ups" \
        env LLM_BUILD="$BUILD" lua5.4 examples/luv.lua ;;
    nvim)
      check "nvim (Neovim $(nvim --version 2>/dev/null | sed -n '1s/^NVIM //p'), LuaJIT, headless)" 0 \
        "nvim: buffer has the 3 streamed lines" \
        env LLM_BUILD_LUAJIT="$JIT" nvim --headless -u NONE -i NONE -c "luafile $ROOT/examples/nvim/run.lua" ;;
    love)
      # LÖVE needs an OpenGL window: xvfb-run gives it an X server in memory (Mesa renders).
      check "love (LÖVE $(love --version 2>/dev/null | sed -n 's/^LOVE \([0-9.]*\).*/\1/p'), LuaJIT, xvfb-run)" 0 \
        "love: drew \"$EXPECTED\"" \
        env LLM_BUILD_LUAJIT="$JIT" LLM_LOVE_CHECK=1 xvfb-run -a love "$ROOT/examples/love" ;;
    *)
      echo "FAIL unknown host '$h' (host, sandbox, noexport, luv, nvim, love)"; failed=1 ;;
  esac
done
exit $failed
