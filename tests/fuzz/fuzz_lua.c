/* libFuzzer harness for the targets that run Lua: the JSON decoder (csrc/json.c) and each
 * provider's stream decoder (core framer -> lua/llm/providers/<name>.lua). It links a Lua 5.4
 * built from Debian's source with coverage instrumentation (tools/fuzz/build-lua.sh) and the
 * core's C files, so libFuzzer sees the branches of both the C core and the Lua it drives.
 *
 * The target is picked at build time (-DFUZZ_TARGET="json" or "stream_openai", ...). Each
 * input goes through tests/fuzz/driver.lua's run(target, data) under lua_pcall: any raise,
 * be it a decoder's Lua error or a failed oracle, prints the message and aborts, as does any
 * ASan or UBSan report. -DFUZZ_ROOT gives the repository, for package.path.
 * Build and run: make fuzz FUZZ_TARGET=json (see the Makefile). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#ifndef FUZZ_TARGET
#error "define FUZZ_TARGET"
#endif
#ifndef FUZZ_ROOT
#define FUZZ_ROOT "."
#endif

int luaopen_llm_core(lua_State *L);

static lua_State *L;
static int run_ref = LUA_NOREF;
static unsigned long runs;

/* Lua-level coverage. The instrumented VM shows libFuzzer which C paths of the interpreter
 * ran, not which lines of the decoders did, so a line hook also counts line-to-line edges
 * (AFL style: previous line hashed with the current one) in libFuzzer's extra counters.
 * The driver's own lines are left out: its oracles would reward inputs for their shape. */
#define LUA_EDGES 65536
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t lua_edges[LUA_EDGES];
static const char *hook_source;   /* the chunk of the last line event, and whether it counts */
static int hook_counts;
static uintptr_t hook_prev;

static void line_hook(lua_State *S, lua_Debug *ar) {
  uintptr_t cur;
  if (!lua_getinfo(S, "S", ar)) return;
  if (ar->source != hook_source) {
    hook_source = ar->source;
    hook_counts = strstr(ar->source, "tests/fuzz/") == NULL;
  }
  if (!hook_counts) return;
  cur = ((uintptr_t)ar->source >> 4) * 0x9E3779B1u ^ (uintptr_t)ar->currentline * 0x85EBCA77u;
  lua_edges[(cur ^ hook_prev) % LUA_EDGES]++;
  hook_prev = cur >> 1;
}

static int traceback(lua_State *S) {
  luaL_traceback(S, S, lua_tostring(S, 1), 1);
  return 1;
}

static void die(const char *what) {
  fprintf(stderr, "fuzz_lua[%s]: %s\n", FUZZ_TARGET, what);
  abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  L = luaL_newstate();
  if (L == NULL) die("no Lua state");
  luaL_openlibs(L);
  /* llm.core is linked in; llm.* and the driver come from the repository's sources */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_llm_core);
  lua_setfield(L, -2, "llm.core");
  lua_pop(L, 1);
  lua_getglobal(L, "package");
  lua_pushstring(L, FUZZ_ROOT "/lua/?.lua;" FUZZ_ROOT "/lua/?/init.lua;" FUZZ_ROOT "/tests/fuzz/?.lua;" FUZZ_ROOT "/spec/?.lua");
  lua_setfield(L, -2, "path");
  lua_pushstring(L, "");
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
  lua_pushcfunction(L, traceback);
  lua_getglobal(L, "require");
  lua_pushstring(L, "driver");
  if (lua_pcall(L, 1, 1, 1) != LUA_OK) die(lua_tostring(L, -1));
  lua_getfield(L, -1, "run");
  if (!lua_isfunction(L, -1)) die("driver.run is not a function");
  run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, 0);
  lua_sethook(L, line_hook, LUA_MASKLINE, 0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, run_ref);
  lua_pushliteral(L, FUZZ_TARGET);
  lua_pushlstring(L, (const char *)data, size);
  hook_prev = 0;
  if (lua_pcall(L, 2, 0, 1) != LUA_OK) die(lua_tostring(L, -1));
  lua_settop(L, 0);
  /* a full collection now and then runs every finalizer (framers' __gc) under ASan */
  if (++runs % 256 == 0) lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
