#!/bin/sh
# Runs one spec file under busted with Lua 5.4 (ctest calls this once per spec).
# LLM_ASAN=1 preloads libasan into lua5.4 for an ASan build of the module.
cd "$(dirname "$0")/../.." || exit 1
export LLM_ROOT="$(pwd)"
BUILD="${LLM_BUILD:-build}"
if [ -n "${LLM_ASAN:-}" ]; then
  LD_PRELOAD="$(gcc -print-file-name=libasan.so)" exec busted --lua=lua5.4 --cpath="$BUILD/?.so" -o utfTerminal "$@"
fi
exec busted --lua=lua5.4 --cpath="$BUILD/?.so" -o utfTerminal "$@"
