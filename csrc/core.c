/* llm.core: registration only. The loop, transfers and framers live in their own files. */
#include "internal.h"

#if defined(__GNUC__)
#define LLM_EXPORT __attribute__((visibility("default")))
#else
#define LLM_EXPORT
#endif

LLM_EXPORT int luaopen_llm_core(lua_State *L);

static int core_now(lua_State *L) {
  lua_pushnumber(L, llm_now());
  return 1;
}

/* The Lua this core was built for, as lua/llm/init.lua names the running one. */
#if defined(LLM_LUAJIT)
#define LLM_BUILT_FOR "LuaJIT"
#else
#define LLM_BUILT_FOR LUA_VERSION   /* "Lua 5.4", as _VERSION says */
#endif

/* A core built for another Lua than the running one raises before touching anything
 * (init.lua turns the message into its "supported versions" error). Cores built for 5.1,
 * LuaJIT or 5.3 usually fail earlier, in dlopen, on a symbol the running Lua lacks. */
static void check_version(lua_State *L) {
#if LUA_VERSION_NUM == 504
  lua_Number running = lua_version(L);
#elif LUA_VERSION_NUM == 503
  lua_Number running = *lua_version(L);
#else
  lua_Number running = LUA_VERSION_NUM;   /* no lua_version: init.lua compares core.lua */
#endif
  if (running != LUA_VERSION_NUM)
    luaL_error(L, "llm.core was built for " LLM_BUILT_FOR ", not for the running Lua %d.%d",
               (int)running / 100, (int)running % 100);
}

LLM_EXPORT int luaopen_llm_core(lua_State *L) {
  static int curl_ready = 0;
  check_version(L);
  if (!curl_ready) {   /* once per process; libcurl 7.84+ makes this thread-safe anyway */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      return luaL_error(L, "curl_global_init failed");
    curl_ready = 1;
  }
  llm_transfer_register(L);
  lua_newtable(L);
  llm_loop_register(L);
  llm_framer_register(L);
  llm_json_register(L);
  llm_base64_register(L);
  llm_pieces_register(L);
  lua_pushcfunction(L, core_now);
  lua_setfield(L, -2, "now");
  lua_pushliteral(L, LLM_BUILT_FOR);
  lua_setfield(L, -2, "lua");
  {
    /* curl_version_info, not curl_version: the latter initializes libldap and SASL just to
     * print their versions, and those keep allocations valgrind reports as lost. */
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    lua_pushfstring(L, "libcurl/%s %s", v->version, v->ssl_version ? v->ssl_version : "");
    lua_setfield(L, -2, "curl_version");
  }
  return 1;
}
