#!/bin/sh
# Builds Lua 5.4 from Debian's own source package, instrumented for libFuzzer (coverage),
# ASan and UBSan, into $1 (liblua.a and the headers). A fuzz target that runs the Lua
# provider decoders needs this: Debian's liblua is not instrumented, so libFuzzer would see
# no coverage of the Lua code it drives. Reuses an existing build.
#
#   sh tools/fuzz/build-lua.sh build-fuzz/lua
set -eu
out=${1:?usage: build-lua.sh OUTDIR}
[ -f "$out/liblua.a" ] && [ -f "$out/include/lua.h" ] && exit 0

# apt-get source needs deb-src entries: as root, add them for the archives apt already uses
# (Debian's own); otherwise say what is missing (sudo runs only from `make deps`).
if ! apt-get source --print-uris lua5.4 >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "build-lua.sh: apt has no deb-src entries; add a 'Types: deb-src' copy of the" >&2
    echo "  entries in /etc/apt/sources.list.d/debian.sources, run apt-get update, retry" >&2
    exit 1
  fi
  src=/etc/apt/sources.list.d/llm-deb-src
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > $src.sources
  fi
  if [ -f /etc/apt/sources.list ] && grep -q '^deb ' /etc/apt/sources.list; then
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > $src.list
  fi
  apt-get update -qq
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get source -qq lua5.4 >/dev/null 2>&1) || (cd "$tmp" && apt-get source lua5.4)
srcdir=$(find "$tmp" -maxdepth 1 -type d -name 'lua5.4-*' | head -n 1)
[ -n "$srcdir" ] && [ -f "$srcdir/src/lapi.c" ] || { echo "build-lua.sh: no Lua source in $tmp" >&2; exit 1; }

mkdir -p "$out/obj" "$out/include"
for f in "$srcdir"/src/*.c; do
  case $(basename "$f") in lua.c|luac.c) continue ;; esac
  clang -c -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
    -fno-omit-frame-pointer -DLUA_USE_LINUX -DLUA_COMPAT_5_3 \
    -o "$out/obj/$(basename "$f" .c).o" "$f"
done
cp "$srcdir"/src/lua.h "$srcdir"/src/luaconf.h "$srcdir"/src/lualib.h "$srcdir"/src/lauxlib.h \
   "$srcdir"/src/lua.hpp "$out/include/"
rm -f "$out/liblua.a.tmp"
ar rcs "$out/liblua.a.tmp" "$out"/obj/*.o
mv "$out/liblua.a.tmp" "$out/liblua.a"
echo "instrumented Lua $(basename "$srcdir") in $out"
