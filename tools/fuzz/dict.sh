#!/bin/sh
# Prints a libFuzzer dictionary for a provider's stream decoder: the framing tokens and every
# string literal of the provider's Lua files, bare and as JSON keys, so the fuzzer reaches the
# decoders' branches (Lua compares interned strings by address, which libFuzzer cannot see).
#   sh tools/fuzz/dict.sh lua/llm/providers/anthropic.lua lua/llm/providers/common.lua
set -eu
printf '%s\n' '"data: "' '"event: "' '"id: "' '"retry: "' '": "' '"\x0a"' '"\x0a\x0a"' '"\x0d\x0a"' \
  '"[DONE]"' '"{"' '"}"' '"[]"' '"{}"' '"null"' '"true"' '"false"' '"\""' '"\\u00"'
cat "$@" | grep -o '"[A-Za-z_@.][A-Za-z0-9_@./:-]*"' | sort -u | while read -r s; do
  printf '%s\n' "$s" "\"\\$(printf '%s' "$s" | sed 's/"$//')\\\"\""
done
