#!/bin/sh
# make demo: a streamed reply. examples/common.lua picks the server: the mock at LLM_MOCK_URL
# when set (an offline run never spends money), else the real API when a key is set, else a
# mock server started for the run (llm.mock). LLM_LUA: the Lua the build is for (make demo
# LUA=luajit sets both).
BUILD="${1:-build}"
cd "$(dirname "$0")/.." || exit 1
case "$BUILD" in /*) ;; *) BUILD="$PWD/$BUILD" ;; esac
LLM_BUILD="$BUILD" exec "${LLM_LUA:-lua5.4}" examples/stream.lua
