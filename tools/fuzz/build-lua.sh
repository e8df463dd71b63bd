#!/bin/sh
# Builds Lua 5.4 from Debian's own source package, instrumented for libFuzzer (coverage),
# ASan and UBSan, into $1 (liblua.a and the headers). A fuzz target that runs the Lua
# provider decoders needs this: Debian's liblua is not instrumented, so libFuzzer would see
# no coverage of the interpreter it drives. Reuses an existing build.
#
# When the source cannot be had (no deb-src entries and not root, no network), it falls back
# to Debian's static liblua5.4.a with a warning: the targets still get the core's coverage
# and the Lua line coverage of tests/fuzz/fuzz_lua.c, but no sanitizer checks inside the
# interpreter. The fallback is retried on the next build.
#
#   sh tools/fuzz/build-lua.sh build-fuzz/lua
set -eu
out=${1:?usage: build-lua.sh OUTDIR}
[ -f "$out/liblua.a" ] && [ -f "$out/include/lua.h" ] && [ ! -f "$out/UNINSTRUMENTED" ] && exit 0

# apt-get source needs deb-src entries: as root, add them for the archives apt already uses
# (Debian's own); otherwise say what is missing (sudo runs only from `make deps`).
deb_src() {
  apt-get source --print-uris lua5.4 >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "build-lua.sh: apt has no deb-src entries; add a 'Types: deb-src' copy of the" >&2
    echo "  entries in /etc/apt/sources.list.d/debian.sources and run apt-get update" >&2
    return 1
  fi
  src=/etc/apt/sources.list.d/llm-deb-src
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > $src.sources
  fi
  if [ -f /etc/apt/sources.list ] && grep -q '^deb ' /etc/apt/sources.list; then
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > $src.list
  fi
  apt-get update -qq || return 1
  apt-get source --print-uris lua5.4 >/dev/null 2>&1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
srcdir=""
if deb_src && (cd "$tmp" && apt-get source -qq lua5.4 >"$tmp/log" 2>&1); then
  srcdir=$(find "$tmp" -maxdepth 1 -type d -name 'lua5.4-*' | head -n 1)
fi
mkdir -p "$out/include"
if [ -z "$srcdir" ] || [ ! -f "$srcdir/src/lapi.c" ]; then
  [ -f "$tmp/log" ] && cat "$tmp/log" >&2
  lib=$(find /usr/lib -name liblua5.4.a | head -n 1)
  [ -n "$lib" ] || { echo "build-lua.sh: no Lua source and no liblua5.4.a" >&2; exit 1; }
  echo "build-lua.sh: WARNING: no Lua source; using $lib (the interpreter is not instrumented)" >&2
  cp /usr/include/lua5.4/*.h "$out/include/"
  cp "$lib" "$out/liblua.a"
  touch "$out/UNINSTRUMENTED"
  exit 0
fi

mkdir -p "$out/obj"
for f in "$srcdir"/src/*.c; do
  case $(basename "$f") in lua.c|luac.c) continue ;; esac
  clang -c -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
    -fno-omit-frame-pointer -DLUA_USE_LINUX -DLUA_COMPAT_5_3 \
    -o "$out/obj/$(basename "$f" .c).o" "$f"
done
cp "$srcdir"/src/lua.h "$srcdir"/src/luaconf.h "$srcdir"/src/lualib.h "$srcdir"/src/lauxlib.h \
   "$srcdir"/src/lua.hpp "$out/include/"
rm -f "$out/liblua.a.tmp" "$out/UNINSTRUMENTED"
ar rcs "$out/liblua.a.tmp" "$out"/obj/*.o
mv "$out/liblua.a.tmp" "$out/liblua.a"
echo "instrumented Lua $(basename "$srcdir") in $out"
