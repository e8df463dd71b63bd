#!/bin/sh
# make test-valgrind: specs under valgrind with a continuously running collector. Zero
# leaks means definite + indirect = 0 (libcurl and OpenSSL keep a few KB still reachable).
# The mock server and curl run outside valgrind. Usage: tools/valgrind.sh [spec files...]
cd "$(dirname "$0")/.." || exit 1
export LLM_ROOT="$(pwd)" LLM_GC_AGGRESSIVE=1
[ $# -gt 0 ] || set -- spec/async_spec.lua spec/transport_spec.lua spec/framer_spec.lua spec/conversation_spec.lua
status=0
for spec in "$@"; do
  echo "== valgrind: $spec"
  valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
    --error-exitcode=99 lua5.4 "$(command -v busted)" -o utfTerminal "$spec" || status=1
done
[ $status -eq 0 ] && echo "valgrind: no errors, no definite or indirect leaks"
exit $status
