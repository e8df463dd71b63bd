#!/bin/sh
# Runs one spec file under busted (ctest calls this once per spec), with Lua 5.4 or the Lua
# named by LLM_LUA (lua5.3, luajit, lua5.1: what a build-<lua> directory was built for).
# busted runs directly under that interpreter: its own --lua re-exec would pass through a
# Lua 5.1 wrapper that turns every exit code into 1, and ctest needs 77 to count a spec as
# skipped. Debian's busted and its dependencies are installed for every one of these Luas.
# Lua 5.1 has no tasks (API §11): there, tests tagged #tasks are left out.
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
LUA="${LLM_LUA:-lua5.4}"
if [ "$LUA" = lua5.1 ]; then
  set -- --exclude-tags=tasks "$@"
fi
if [ -n "${LLM_ASAN:-}" ]; then
  LD_PRELOAD="$(gcc -print-file-name=libasan.so)" exec "$LUA" "$BUSTED" -o utfTerminal "$@"
fi
exec "$LUA" "$BUSTED" -o utfTerminal "$@"
