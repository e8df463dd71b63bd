/* The "llm.Framer" type: the SSE / NDJSON framers of sse.c, usable from Lua.
 *
 *   local f = core.framer("sse" | "ndjson", max_event_size?)
 *   local events, err = f:feed(bytes)   -- { {name=, data=, id=}, ... } or nil, err
 *   local events, err = f:finish()
 *   f.comments, f.events, f.partial, f.retry_ms
 *
 * sse_feed runs with no Lua call in between: dispatched events go to a C
 * queue owned by the userdata (allocated with the state's allocator), and
 * the Lua tables are built only after sse_feed has returned, so a memory
 * error raised while building them cannot leak C memory. */
#include <limits.h>
#include <string.h>

#include "compat.h"
#include "sse.h"

#define LLM_FRAMER "llm.Framer"

struct framer {
  struct sse sse;
  struct sse_queue queue;    /* events of the current call, until they become tables */
  int open;                  /* 0 once closed: sse and queue hold no memory */
};

static const char *const framer_modes[] = { "sse", "ndjson", NULL };

void llm_framer_register(lua_State *L);

/* Releases the C memory; idempotent (used by close, __close and __gc). */
static void framer_release(struct framer *f) {
  if (!f->open)
    return;
  f->open = 0;               /* closed before releasing */
  sse_free(&f->sse);
  sse_queue_free(&f->queue);
}

/* Raises when the argument is not a framer or it is closed. */
static struct framer *checkframer(lua_State *L, int i) {
  struct framer *f = luaL_checkudata(L, i, LLM_FRAMER);
  if (!f->open)
    luaL_error(L, "attempt to use a closed framer");
  return f;
}

/* core.framer(mode, max_event_size?) -> framer. Raises on bad arguments. */
static int framer_new(lua_State *L) {
  int mode = luaL_checkoption(L, 1, NULL, framer_modes);
  lua_Integer max = luaL_optinteger(L, 2, 0);
  struct framer *f;
  lua_Alloc alloc;
  void *ud;
  luaL_argcheck(L, max >= 0, 2, "size must not be negative");
  alloc = lua_getallocf(L, &ud);
  f = lua_newuserdatauv(L, sizeof *f, 0);
  f->open = 0;               /* closed until built */
  luaL_setmetatable(L, LLM_FRAMER);
  /* neither init allocates, so nothing below can fail */
  sse_init(&f->sse, mode == 1 ? SSE_MODE_NDJSON : SSE_MODE_SSE, (size_t)max, alloc, ud,
           sse_queue_emit, &f->queue);
  sse_queue_init(&f->queue, 0, alloc, ud);   /* bounded by the input: ids are shared */
  f->open = 1;
  return 1;
}

/* [-0, +1] Pushes the queued events as a list and empties the queue. May
 * raise a memory error; the queue is still owned by f then. */
static void framer_push_events(lua_State *L, struct framer *f) {
  struct sse_event ev;
  size_t pos = 0;
  lua_Integer i = 0;
  lua_createtable(L, f->queue.count > INT_MAX ? INT_MAX : (int)f->queue.count, 0);
  while (sse_queue_next(&f->queue, &pos, &ev)) {
    lua_createtable(L, 0, 3);
    if (ev.name != NULL) {
      lua_pushlstring(L, ev.name, ev.name_len);
      lua_setfield(L, -2, "name");
    }
    lua_pushlstring(L, ev.data, ev.data_len);
    lua_setfield(L, -2, "data");
    if (ev.id != NULL) {
      lua_pushlstring(L, ev.id, ev.id_len);
      lua_setfield(L, -2, "id");
    }
    lua_rawseti(L, -2, ++i);
  }
  sse_queue_clear(&f->queue);
}

/* [-0, +3] nil, { kind = "protocol", message = ... }, events dispatched
 * before the failure. */
static int framer_fail(lua_State *L, struct framer *f, int rc) {
  lua_pushnil(L);
  lua_createtable(L, 0, 2);
  lua_pushliteral(L, "protocol");
  lua_setfield(L, -2, "kind");
  if (rc == SSE_ETOOBIG)
    lua_pushfstring(L, "event larger than " LLM_FMT_INT " bytes", LLM_FMT_INT_ARG(f->sse.max_event));
  else                       /* SSE_ENOMEM, or SSE_EEMIT: the queue could not grow */
    lua_pushliteral(L, "out of memory");
  lua_setfield(L, -2, "message");
  framer_push_events(L, f);
  return 3;
}

/* f:feed(bytes) -> events | nil, err, events */
static int framer_feed(lua_State *L) {
  struct framer *f = checkframer(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  int rc;
  sse_queue_clear(&f->queue);   /* left over if building tables raised last time */
  rc = sse_feed(&f->sse, s, len);
  if (rc != SSE_OK)
    return framer_fail(L, f, rc);
  framer_push_events(L, f);
  return 1;
}

/* f:finish() -> events | nil, err, events */
static int framer_finish(lua_State *L) {
  struct framer *f = checkframer(L, 1);
  int rc;
  sse_queue_clear(&f->queue);
  rc = sse_finish(&f->sse);
  if (rc != SSE_OK)
    return framer_fail(L, f, rc);
  framer_push_events(L, f);
  return 1;
}

/* f:close(): frees the buffers now; the counters stay readable. */
static int framer_close(lua_State *L) {
  framer_release(luaL_checkudata(L, 1, LLM_FRAMER));
  return 0;
}

static int framer__gc(lua_State *L) {
  framer_release(luaL_checkudata(L, 1, LLM_FRAMER));
  return 0;
}

static int framer__tostring(lua_State *L) {
  struct framer *f = luaL_checkudata(L, 1, LLM_FRAMER);
  if (!f->open)
    lua_pushliteral(L, LLM_FRAMER " (closed)");
  else
    lua_pushfstring(L, LLM_FRAMER " (%s): %p", framer_modes[f->sse.mode == SSE_MODE_NDJSON], (void *)f);
  return 1;
}

/* __index: the counters, then the methods table (upvalue 1). */
static int framer__index(lua_State *L) {
  struct framer *f = luaL_checkudata(L, 1, LLM_FRAMER);
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *k = lua_tostring(L, 2);
    if (strcmp(k, "comments") == 0) {
      lua_pushinteger(L, (lua_Integer)f->sse.comments);
      return 1;
    } else if (strcmp(k, "events") == 0) {
      lua_pushinteger(L, (lua_Integer)f->sse.events);
      return 1;
    } else if (strcmp(k, "partial") == 0) {
      lua_pushinteger(L, (lua_Integer)f->sse.partial);
      return 1;
    } else if (strcmp(k, "retry_ms") == 0) {
      if (f->sse.retry_ms < 0)
        lua_pushnil(L);
      else
        lua_pushinteger(L, (lua_Integer)f->sse.retry_ms);
      return 1;
    }
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static const luaL_Reg framer_methods[] = {
  { "feed", framer_feed },
  { "finish", framer_finish },
  { "close", framer_close },
  { NULL, NULL }
};

static const luaL_Reg framer_metamethods[] = {
  { "__gc", framer__gc },
  { "__close", framer__gc },
  { "__tostring", framer__tostring },
  { NULL, NULL }
};

/* [-0, +0] With the module table on top of the stack, sets its `framer`
 * field and creates the "llm.Framer" metatable once. */
void llm_framer_register(lua_State *L) {
  if (luaL_newmetatable(L, LLM_FRAMER)) {   /* sets __name */
    luaL_setfuncs(L, framer_metamethods, 0);
    luaL_newlib(L, framer_methods);          /* mt methods */
    lua_pushcclosure(L, framer__index, 1);   /* mt __index */
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);                             /* module */
  lua_pushcfunction(L, framer_new);
  lua_setfield(L, -2, "framer");
}
