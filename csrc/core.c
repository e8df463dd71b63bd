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

LLM_EXPORT int luaopen_llm_core(lua_State *L) {
  static int curl_ready = 0;
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
  lua_pushcfunction(L, core_now);
  lua_setfield(L, -2, "now");
  {
    /* curl_version_info, not curl_version: the latter initializes libldap and SASL just to
     * print their versions, and those keep allocations valgrind reports as lost. */
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    lua_pushfstring(L, "libcurl/%s %s", v->version, v->ssl_version ? v->ssl_version : "");
    lua_setfield(L, -2, "curl_version");
  }
  return 1;
}
