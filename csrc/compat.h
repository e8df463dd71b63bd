/* Version-sensitive Lua C API calls live here (STYLE §7). The core targets Lua 5.4. */
#ifndef LLM_COMPAT_H
#define LLM_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 504
#error "llm.core needs Lua 5.4 (lua_newuserdatauv, __close)"
#endif

#endif
