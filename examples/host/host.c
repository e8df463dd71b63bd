/* llm-host: a C program that embeds Lua 5.4 the way a game does, and drives `llm` from its
 * own 60 Hz frame loop.
 *
 *   llm-host [--hz 60] [--max-seconds 30] [--quiet] [--sandbox] SCRIPT [script args...]
 *
 * --sandbox removes the `os`, `io` and `debug` globals before anything is loaded, as
 * sandboxed hosts do; `llm` still loads, and keys must then be passed as `api_key`.
 *
 * SCRIPT is a Lua file, called with its own path as its argument (`...`), returning a
 * "game" table:
 *   game.start(args)      once, before the first frame (args: the script arguments);
 *                         spawns tasks (an agent, streams) and returns at once
 *   game.update(frame)    every frame, after llm.step(0); returns true when the game is over
 *   game.draw(frame)      optional; every frame after update (a real game renders here)
 *   game.result()         at the end: true, or false plus a message (the exit status),
 *                         and optionally a string of `key=value` fields for the RESULT line
 *
 * Each frame the host calls `llm.step(0)` (never blocks), times it, runs the game's update,
 * and sleeps until the next frame is due. At the end it prints how long the steps took
 * (longest, 99th percentile, median) and how many frames were missed, plus one
 * `RESULT key=value ...` line for bench/run.sh. It exits non-zero when the script's result
 * says so, a step raised, or the game did not end within --max-seconds.
 *
 * Linking (see CMakeLists.txt here): the host links liblua5.4 statically, and the module
 * llm/core.so is deliberately NOT linked against liblua (a second copy would be a second
 * VM). The module's lua_* references are resolved by the dynamic linker from the host
 * executable, which therefore must export them: `-Wl,-E` (CMake: ENABLE_EXPORTS) and the
 * whole archive (`-Wl,--whole-archive`), so that API functions the host itself never calls
 * are linked in too. Without -Wl,-E, `require("llm")` fails with
 * "undefined symbol: lua_...". A host that links liblua dynamically needs neither.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_until(double t) {
  struct timespec ts;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L) { ts.tv_sec += 1; ts.tv_nsec -= 1000000000L; }
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The value at quantile q (0..1) of sorted xs, nearest rank. */
static double quantile(const double *xs, size_t n, double q) {
  if (n == 0) return 0;
  size_t rank = (size_t)ceil(q * (double)n);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return xs[rank - 1];
}

/* lua_pcall with a traceback; on error prints it and returns 0 (the value is popped). */
static int call(lua_State *L, int nargs, int nres, const char *what) {
  int base = lua_gettop(L) - nargs;
  lua_pushglobaltable(L);
  lua_getfield(L, -1, "debug");
  lua_remove(L, -2);
  int have_tb = lua_istable(L, -1);
  if (have_tb) {
    lua_getfield(L, -1, "traceback");
    lua_remove(L, -2);
  } else {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
  lua_insert(L, base);
  int rc = lua_pcall(L, nargs, nres, have_tb ? base : 0);
  lua_remove(L, base);
  if (rc != LUA_OK) {
    fprintf(stderr, "llm-host: %s: %s\n", what, lua_tostring(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

static void usage(void) {
  fprintf(stderr, "usage: llm-host [--hz N] [--max-seconds S] [--quiet] [--sandbox] SCRIPT [args...]\n");
  exit(2);
}

int main(int argc, char **argv) {
  double hz = 60, max_seconds = 30;
  int quiet = 0, sandbox = 0, i = 1;
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
    if (strcmp(argv[i], "--hz") == 0 && i + 1 < argc) hz = atof(argv[++i]);
    else if (strcmp(argv[i], "--max-seconds") == 0 && i + 1 < argc) max_seconds = atof(argv[++i]);
    else if (strcmp(argv[i], "--quiet") == 0) quiet = 1;
    else if (strcmp(argv[i], "--sandbox") == 0) sandbox = 1;
    else usage();
  }
  if (i >= argc || hz <= 0 || max_seconds <= 0) usage();
  const char *script = argv[i++];
  const double period = 1.0 / hz;

  lua_State *L = luaL_newstate();
  if (!L) { fprintf(stderr, "llm-host: out of memory\n"); return 1; }
  luaL_openlibs(L);
  if (sandbox) {
    static const char *const removed[] = { "os", "io", "debug" };
    for (size_t k = 0; k < sizeof removed / sizeof *removed; k++) {
      lua_pushnil(L);
      lua_setglobal(L, removed[k]);
    }
  }

  /* llm.step, kept in the registry: the call the frame loop makes. */
  lua_getglobal(L, "require");
  lua_pushstring(L, "llm");
  if (!call(L, 1, 1, "require(\"llm\")")) { lua_close(L); return 1; }
  lua_getfield(L, -1, "step");
  if (!lua_isfunction(L, -1)) { fprintf(stderr, "llm-host: llm.step is missing\n"); lua_close(L); return 1; }
  int step_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);

  /* The game table, and game.start(args). */
  if (luaL_loadfile(L, script) != LUA_OK) {
    fprintf(stderr, "llm-host: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return 1;
  }
  lua_pushstring(L, script);
  if (!call(L, 1, 1, script)) { lua_close(L); return 1; }
  if (!lua_istable(L, -1)) { fprintf(stderr, "llm-host: %s must return a table\n", script); lua_close(L); return 1; }
  int game_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_rawgeti(L, LUA_REGISTRYINDEX, game_ref);
  lua_getfield(L, -1, "start");
  lua_remove(L, -2);
  lua_createtable(L, argc - i, 0);
  for (int k = i; k < argc; k++) {
    lua_pushstring(L, argv[k]);
    lua_rawseti(L, -2, k - i + 1);
  }
  if (!call(L, 1, 0, "game.start")) { lua_close(L); return 1; }

  size_t cap = (size_t)(max_seconds * hz) + 2, nsteps = 0;
  double *steps = malloc(cap * sizeof *steps);
  if (!steps) { fprintf(stderr, "llm-host: out of memory\n"); lua_close(L); return 1; }

  long frame = 0, missed = 0, late_wakeups = 0;
  int over = 0, failed = 0;
  const double t_start = now_s();
  double due = t_start;                 /* when this frame should start */
  while (!over && !failed) {
    double t0 = now_s();
    int late = t0 - due > period * 0.5;   /* the OS woke us late: not the frame's work */
    late_wakeups += late;
    if (t0 - t_start > max_seconds) {
      fprintf(stderr, "llm-host: the game did not end within %.0f s (%ld frames)\n", max_seconds, frame);
      failed = 1;
      break;
    }

    lua_rawgeti(L, LUA_REGISTRYINDEX, step_ref);
    lua_pushnumber(L, 0);
    int ok = call(L, 1, 0, "llm.step(0)");
    double t1 = now_s();
    if (nsteps < cap) steps[nsteps++] = t1 - t0;
    if (!ok) { failed = 1; break; }

    lua_rawgeti(L, LUA_REGISTRYINDEX, game_ref);
    lua_getfield(L, -1, "update");
    lua_remove(L, -2);
    lua_pushinteger(L, frame);
    if (!call(L, 1, 1, "game.update")) { failed = 1; break; }
    over = lua_toboolean(L, -1);
    lua_pop(L, 1);

    lua_rawgeti(L, LUA_REGISTRYINDEX, game_ref);
    lua_getfield(L, -1, "draw");
    lua_remove(L, -2);
    if (lua_isfunction(L, -1)) {
      lua_pushinteger(L, frame);
      if (!call(L, 1, 0, "game.draw")) { failed = 1; break; }
    } else {
      lua_pop(L, 1);
    }

    frame++;
    /* A frame that started on time is missed when its work (step, update, draw) ran past
     * the start of the next one; count the frame slots it covered. Either way a late loop
     * starts the next frame at once and keeps the pace from there. */
    double next = due + period, t2 = now_s();
    if (t2 > next) {
      if (!late) missed += (long)((t2 - next) / period) + 1;
      next = t2;
    }
    due = next;
    if (!over) sleep_until(due);
  }
  double elapsed = now_s() - t_start;

  int result_ok = 0;
  char extra[512] = "";
  if (!failed) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, game_ref);
    lua_getfield(L, -1, "result");
    lua_remove(L, -2);
    if (call(L, 0, 3, "game.result")) {
      result_ok = lua_toboolean(L, -3);
      const char *msg = lua_tostring(L, -2);
      if (msg) fprintf(result_ok ? stdout : stderr, "%s%s\n", result_ok ? "" : "llm-host: ", msg);
      if (lua_type(L, -1) == LUA_TSTRING) snprintf(extra, sizeof extra, " %s", lua_tostring(L, -1));
      lua_pop(L, 3);
    }
  }

  double longest = 0, sum = 0;
  size_t longest_at = 0;
  for (size_t k = 0; k < nsteps; k++) {
    sum += steps[k];
    if (steps[k] > longest) { longest = steps[k]; longest_at = k; }
  }
  qsort(steps, nsteps, sizeof *steps, cmp_double);
  double p99 = quantile(steps, nsteps, 0.99), p50 = quantile(steps, nsteps, 0.5);
  if (!quiet) {
    printf("llm-host: %ld frames at %.0f Hz in %.2f s; llm.step(0): longest %.3f ms (frame %zu), "
           "p99 %.3f ms, median %.3f ms, mean %.3f ms; missed frames %ld; late wake-ups %ld\n",
           frame, hz, elapsed, longest * 1e3, longest_at, p99 * 1e3, p50 * 1e3,
           nsteps ? sum / (double)nsteps * 1e3 : 0.0, missed, late_wakeups);
  }
  printf("RESULT name=host frames=%ld steps=%zu longest_ms=%.4f longest_frame=%zu p99_ms=%.4f "
         "median_ms=%.4f missed=%ld late=%ld wall=%.3f ok=%d%s\n",
         frame, nsteps, longest * 1e3, longest_at, p99 * 1e3, p50 * 1e3, missed, late_wakeups, elapsed,
         result_ok && !failed, extra);
  free(steps);
  luaL_unref(L, LUA_REGISTRYINDEX, game_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, step_ref);
  lua_close(L);
  return result_ok && !failed ? 0 : 1;
}
