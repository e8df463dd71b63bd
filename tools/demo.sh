#!/bin/sh
# make demo: a streamed reply from the real API when a key is set, else from the mock server.
BUILD="${1:-build}"
cd "$(dirname "$0")/.." || exit 1
if [ -n "${OPENAI_API_KEY:-}${ANTHROPIC_API_KEY:-}" ]; then
  exec lua5.4 examples/stream.lua
fi
dir=$(mktemp -d)
"$BUILD/llm-mock" --port 0 --port-file "$dir/port" --quiet &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT INT TERM
i=0
while [ ! -s "$dir/port" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
[ -s "$dir/port" ] || { echo "the mock server did not start" >&2; exit 1; }
LLM_MOCK_URL="http://127.0.0.1:$(cat "$dir/port")" lua5.4 examples/stream.lua
