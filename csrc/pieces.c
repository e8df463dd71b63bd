/* The pieces of a streamed reply (text deltas, tool-call arguments) that its final response
 * concatenates. A list of one string per delta costs a table slot and often a string of its
 * own for a few bytes of text: a stream of 200 deltas held 4 KiB of slots. Every
 * LLM_PIECES pieces after the list's leading chunks become one chunk (the list's field
 * `chunks` counts the chunks), so a list holds about one string per LLM_PIECES deltas and
 * table.concat(list) gives the same text. Used by the C fast path (json.c) and, as
 * core.add_piece, by the providers. */
#include "pieces.h"

#define LLM_PIECES 16

void llm_pieces_add(lua_State *L, int list, int s) {
  lua_Integer n, chunks;
  list = lua_absindex(L, list);
  s = lua_absindex(L, s);
  n = (lua_Integer)lua_rawlen(L, list) + 1;
  lua_pushvalue(L, s);
  lua_rawseti(L, list, n);
  lua_pushliteral(L, "chunks");
  lua_rawget(L, list);
  chunks = lua_tointeger(L, -1);                   /* 0 when absent */
  lua_pop(L, 1);
  if (n - chunks >= LLM_PIECES) {
    luaL_Buffer b;
    lua_Integer i;
    luaL_buffinit(L, &b);
    for (i = chunks + 1; i <= n; i++) {
      lua_rawgeti(L, list, i);
      luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lua_rawseti(L, list, chunks + 1);
    for (i = n; i >= chunks + 2; i--) {
      lua_pushnil(L);
      lua_rawseti(L, list, i);
    }
    lua_pushliteral(L, "chunks");
    lua_pushinteger(L, chunks + 1);
    lua_rawset(L, list);
  }
}

/* core.add_piece(list, s): append a piece as above. */
static int add_piece(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TSTRING);
  llm_pieces_add(L, 1, 2);
  return 0;
}

/* [-0, +0] with the core module table on top. */
void llm_pieces_register(lua_State *L) {
  static const luaL_Reg fns[] = {{"add_piece", add_piece}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  lua_pushinteger(L, LLM_PIECES);
  lua_setfield(L, -2, "PIECES");
}
