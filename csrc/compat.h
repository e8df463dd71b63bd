/* Version-sensitive Lua C API calls live here (STYLE §7). The core is written against Lua
 * 5.4; this header maps the few 5.4-only calls it uses onto Lua 5.3, and onto Lua 5.1 and
 * LuaJIT 2.1 through Debian's lua-compat53-dev (compat-5.3.h, compiled once by compat.c
 * under the llm_compat53_ prefix). Yields happen only in Lua, so C needs no continuation
 * shims (no lua_callk/lua_resume here). */
#ifndef LLM_COMPAT_H
#define LLM_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if !defined(LUA_VERSION_NUM) || (LUA_VERSION_NUM != 501 && LUA_VERSION_NUM != 503 && LUA_VERSION_NUM != 504)
#error "llm.core builds for Lua 5.4, Lua 5.3, LuaJIT 2.1 or Lua 5.1"
#endif

#if LUA_VERSION_NUM == 501
/* Every compat function is one hidden, prefixed copy in the module (compat.c), so a host
 * that links its own compat-5.3 sees no clash. */
#define COMPAT53_PREFIX llm_compat53
#define COMPAT53_API __attribute__((visibility("hidden"))) extern
#include <compat-5.3.h>
#endif

/* Integers in lua_pushfstring/luaL_error messages: "%I" is 5.3+; 5.1 and LuaJIT format
 * numbers with "%f" (LUA_NUMBER_FMT, "%.14g", which prints integers without a point). */
#if LUA_VERSION_NUM >= 503
#define LLM_FMT_INT "%I"
#define LLM_FMT_INT_ARG(x) ((lua_Integer)(x))
#define LLM_HAS_INTEGERS 1   /* a distinct integer subtype (math.type) */
#else
#define LLM_FMT_INT "%f"
#define LLM_FMT_INT_ARG(x) ((lua_Number)(x))
#define LLM_HAS_INTEGERS 0   /* numbers are doubles: integers up to 2^53 are exact */
#endif

#if LUA_VERSION_NUM < 504
/* Full userdata with at most one user value: 5.3 and 5.1 (via lua_setfenv, which needs a
 * table, which is all the core stores) have exactly one. */
#define lua_newuserdatauv(L, sz, nuv) lua_newuserdata((L), (sz))
#define lua_getiuservalue(L, idx, n) lua_getuservalue((L), (idx))
#define lua_setiuservalue(L, idx, n) lua_setuservalue((L), (idx))   /* used as a statement */
#endif

#endif
