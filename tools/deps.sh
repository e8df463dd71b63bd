#!/bin/sh
# Debian packages for the build: which are missing, and installing them.
#   tools/deps.sh install PKG...   (make deps) installs what is missing with apt-get, through
#                                  sudo when not root
#   tools/deps.sh ensure PKG...    (make build, make test) does nothing when all are there; as
#                                  root it installs what is missing and says so; otherwise it
#                                  names the missing packages and stops, never calling sudo
# Off Debian (no dpkg-query or apt-get) both print what is needed and leave it to you.
mode="$1"; shift
if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "llm: not a Debian system (no dpkg-query/apt-get); the build needs the equivalents of: $*"
  echo "llm: (a C compiler, cmake, pkg-config, Lua 5.4 with headers, libcurl with headers; busted for the tests)"
  [ "$mode" = install ] && exit 1
  exit 0
fi
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  sudo=""
elif [ "$mode" = install ]; then
  sudo="sudo"
else
  echo "llm: missing Debian packages:$missing"
  echo "llm: run 'make deps' (it uses sudo), or: sudo apt-get install$missing"
  exit 1
fi
echo "llm: installing missing Debian packages:$missing"
$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
