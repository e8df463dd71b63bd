#!/bin/sh
# Runs one spec file under busted with Lua 5.4 (ctest calls this once per spec). busted runs
# directly under lua5.4: its own --lua re-exec would pass through a Lua 5.1 wrapper that turns
# every exit code into 1, and ctest needs 77 to count a spec as skipped.
# LLM_ASAN=1 preloads libasan into lua5.4 for an ASan build of the module.
cd "$(dirname "$0")/../.." || exit 1
export LLM_ROOT="$(pwd)"
BUSTED="$(command -v busted)"
# A spec whose first line says "-- needs: fixtures" is skipped plainly (77) without them.
if head -n 1 "$1" | grep -q '^-- needs: fixtures'; then
  dir="${LLM_FIXTURES:-$LLM_ROOT/../shared/fixtures}"
  if [ ! -d "$dir" ]; then
    echo "fixtures absent ($dir): $1 skipped"
    exit 77
  fi
fi
if [ -n "${LLM_ASAN:-}" ]; then
  LD_PRELOAD="$(gcc -print-file-name=libasan.so)" exec lua5.4 "$BUSTED" -o utfTerminal "$@"
fi
exec lua5.4 "$BUSTED" -o utfTerminal "$@"
