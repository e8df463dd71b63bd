/* core.json_decode: a strict RFC 8259 JSON decoder that builds Lua values directly.
 *
 *   local v, err = core.json_decode(s, array_mt, object_mt, null)
 *
 * Arrays get array_mt, objects get object_mt (either may be nil: no metatable), JSON null
 * becomes the value `null` (any Lua value). A number literal without '.', 'e' or 'E' that
 * fits in a lua_Integer becomes an integer; every other literal is converted exactly as
 * Lua's tonumber converts it (so 2^63 and beyond, and 1e400 = inf, are floats), except
 * that a float zero is always +0.0, as in the Lua decoder (see positive_zero). \u escapes
 * become UTF-8; a surrogate pair becomes one 4-byte sequence and a lone surrogate becomes
 * U+FFFD, as lua/llm/json.lua's Lua decoder does. Raw bytes that are not valid UTF-8
 * (overlong forms, surrogates, stray or missing continuation bytes) become U+FFFD too, one
 * per byte, so a reply never goes back out as invalid JSON in the next request (DESIGN
 * "JSON"). Duplicate keys: the last one wins. Malformed input, and nesting deeper than
 * JSON_MAX_DEPTH, return nil and "JSON: <what> at byte <1-based offset>".
 *
 * Memory: the parser reads the Lua string in place and owns no C memory. Strings without
 * escapes are pushed straight from the input; strings with escapes are decoded into a
 * luaL_Buffer (Lua-owned). So the only raise possible, a memory error from the Lua API,
 * longjmps over frames that hold nothing to release. Parse errors never raise: each
 * parse function returns NULL and the message is built once the recursion has unwound.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "pieces.h"

#define JSON_MAX_DEPTH 1000   /* containers inside containers; deeper input is an error */
#define JSON_STACK_SLACK 12   /* Lua stack slots a container needs besides its staged
                                 children (see JSON_STAGE): the table's slot, a key, a
                                 value, a luaL_Buffer's box and a metatable */

#if defined(__GNUC__)
#define JSON_NOINLINE __attribute__((noinline))
#else
#define JSON_NOINLINE
#endif

void llm_json_register(lua_State *L);

struct json_parser {
  lua_State *L;
  const char *text;          /* the input, for byte offsets in messages */
  const char *end;           /* one past the last byte; *end == '\0' (Lua strings end so) */
  const char *err;           /* the first error's description; NULL while all is well */
  const char *err_at;        /* where it was found */
  int array_mt, object_mt, null; /* stack indices; 0: no metatable */
};

/* Bytes that end the fast scan of a string: control characters, '"', '\\' and every byte
 * of a multi-byte UTF-8 sequence (checked, and replaced when invalid, on the slow path). The
 * '\0' entry also stops every scan at the end of the input. */
#define HI8(b) [b] = 1, [b + 1] = 1, [b + 2] = 1, [b + 3] = 1, [b + 4] = 1, [b + 5] = 1, \
               [b + 6] = 1, [b + 7] = 1
#define HI64(b) HI8(b), HI8(b + 8), HI8(b + 16), HI8(b + 24), HI8(b + 32), HI8(b + 40), \
                HI8(b + 48), HI8(b + 56)
static const unsigned char str_stop[256] = {
  [0x00] = 1, [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1,
  [0x07] = 1, [0x08] = 1, [0x09] = 1, [0x0a] = 1, [0x0b] = 1, [0x0c] = 1, [0x0d] = 1,
  [0x0e] = 1, [0x0f] = 1, [0x10] = 1, [0x11] = 1, [0x12] = 1, [0x13] = 1, [0x14] = 1,
  [0x15] = 1, [0x16] = 1, [0x17] = 1, [0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1,
  [0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1, [0x22] = 1, [0x5c] = 1,
  HI64(0x80), HI64(0xC0)
};

/* The length of the valid UTF-8 sequence at p (a byte >= 0x80), or 0 when it is not one:
 * overlong forms, surrogates (ED A0..BF) and code points past U+10FFFF are invalid. Reads
 * at most up to `end`. */
static size_t utf8_seq(const char *p, const char *end) {
  const unsigned char *s = (const unsigned char *)p;
  size_t avail = (size_t)(end - p);
  unsigned c = s[0];
  if (c < 0xC2) return 0;                          /* a stray continuation, or overlong */
  if (c < 0xE0) return avail >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
  if (c < 0xF0) {
    if (avail < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0)) return 0;
    return 3;
  }
  if (c < 0xF5) {
    if (avail < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
      return 0;
    if ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90)) return 0;
    return 4;
  }
  return 0;
}

/* Hex digit value plus one; 0 for anything else. */
static const unsigned char hex_value[256] = {
  [0x30] = 1, [0x31] = 2, [0x32] = 3, [0x33] = 4, [0x34] = 5, [0x35] = 6, [0x36] = 7,
  [0x37] = 8, [0x38] = 9, [0x39] = 10, [0x41] = 11, [0x42] = 12, [0x43] = 13, [0x44] = 14,
  [0x45] = 15, [0x46] = 16, [0x61] = 11, [0x62] = 12, [0x63] = 13, [0x64] = 14, [0x65] = 15,
  [0x66] = 16
};

#define IS_WS(c) ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')
#define IS_DIGIT(c) ((unsigned char)((c) - '0') < 10)

static inline const char *skip_ws(const char *p) {
  while (IS_WS(*p))          /* stops at the terminating '\0' */
    p++;
  return p;
}

/* Records the first error and returns NULL, so callers can `return fail(...)`. */
static const char *fail(struct json_parser *jp, const char *at, const char *what) {
  if (jp->err == NULL) {
    jp->err = what;
    jp->err_at = at;
  }
  return NULL;
}

/* Four hex digits at p as a code unit, or -1. Reads stop at the first non-hex byte, so
 * they never pass the closing quote the caller has already found. */
static int hex4(const unsigned char *p) {
  int a, b, c, d;
  if (!(a = hex_value[p[0]]) || !(b = hex_value[p[1]]) || !(c = hex_value[p[2]]) ||
      !(d = hex_value[p[3]]))
    return -1;
  return ((a - 1) << 12) | ((b - 1) << 8) | ((c - 1) << 4) | (d - 1);
}

static char *put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) {
    *o++ = (char)cp;
  } else if (cp < 0x800) {
    *o++ = (char)(0xC0 | (cp >> 6));
    *o++ = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *o++ = (char)(0xE0 | (cp >> 12));
    *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
    *o++ = (char)(0x80 | (cp & 0x3F));
  } else {
    *o++ = (char)(0xF0 | (cp >> 18));
    *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
    *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
    *o++ = (char)(0x80 | (cp & 0x3F));
  }
  return o;
}

/* The slow path of parse_string: p is just after the opening quote, q at the first '\\'
 * or control byte. Finds the closing quote first, so the decoded text (never longer than
 * the raw text) goes into one buffer of known size. [-0, +1] on success; on failure the
 * stack holds leftovers the caller discards. Kept out of line: the luaL_Buffer is large
 * and must not sit in every recursive frame. */
static JSON_NOINLINE const char *parse_string_escaped(struct json_parser *jp, const char *p,
                                                      const char *q) {
  const char *r = q;
  size_t extra = 0;              /* bytes the U+FFFD replacements add (3 for 1) */
  for (;;) {
    while (!str_stop[(unsigned char)*r])
      r++;
    if (*r == '"')
      break;
    if (*r == '\\') {
      if (r + 1 >= jp->end)
        return fail(jp, jp->end, "unterminated string");
      r += 2;                    /* the escaped byte is checked while decoding */
      continue;
    }
    if ((unsigned char)*r >= 0x80) {
      size_t n = utf8_seq(r, jp->end);
      if (n == 0) { extra += 2; n = 1; }   /* invalid UTF-8 from a server: U+FFFD */
      r += n;
      continue;
    }
    if (r == jp->end)
      return fail(jp, jp->end, "unterminated string");
    return fail(jp, r, "control character in string");
  }

  luaL_Buffer b;
  char *out = luaL_buffinitsize(jp->L, &b, (size_t)(r - p) + extra);
  char *o = out;
  const char *s = p;
  while (s < r) {
    const char *bs = s;
    while (bs < r && *bs != '\\' && (unsigned char)*bs < 0x80)
      bs++;
    memcpy(o, s, (size_t)(bs - s));
    o += bs - s;
    s = bs;
    if (s == r)
      break;
    if ((unsigned char)*s >= 0x80) {
      size_t n = utf8_seq(s, r);
      if (n > 0) {
        memcpy(o, s, n);
        o += n;
        s += n;
      } else {                   /* one replacement character per invalid byte */
        *o++ = (char)0xEF; *o++ = (char)0xBF; *o++ = (char)0xBD;
        s++;
      }
      continue;
    }
    switch (s[1]) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '/': *o++ = '/'; break;
    case 'b': *o++ = '\b'; break;
    case 'f': *o++ = '\f'; break;
    case 'n': *o++ = '\n'; break;
    case 'r': *o++ = '\r'; break;
    case 't': *o++ = '\t'; break;
    case 'u': {
      int cp = hex4((const unsigned char *)s + 2);
      if (cp < 0)
        return fail(jp, s, "bad \\u escape");
      s += 6;
      /* A high surrogate followed by an escaped low one is a pair; anything else leaves
       * the surrogate alone and the next escape is read on its own. */
      if (cp >= 0xD800 && cp <= 0xDBFF && s[0] == '\\' && s[1] == 'u') {
        int lo = hex4((const unsigned char *)s + 2);
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          s += 6;
        }
      }
      if (cp >= 0xD800 && cp <= 0xDFFF)
        cp = 0xFFFD;             /* a lone surrogate is no character: U+FFFD, as for raw bytes */
      o = put_utf8(o, (unsigned)cp);
      continue;
    }
    default:
      return fail(jp, s, "bad escape");
    }
    s += 2;
  }
  luaL_pushresultsize(&b, (size_t)(o - out));
  return r + 1;
}

/* p is just after the opening quote. [-0, +1] on success. */
static inline const char *parse_string(struct json_parser *jp, const char *p) {
  const char *q = p;
  for (;;) {                     /* each test guards the next read: a stop byte (the
                                    final '\0' included) ends the scan before it */
    if (str_stop[(unsigned char)q[0]]) break;
    if (str_stop[(unsigned char)q[1]]) { q += 1; break; }
    if (str_stop[(unsigned char)q[2]]) { q += 2; break; }
    if (str_stop[(unsigned char)q[3]]) { q += 3; break; }
    q += 4;
  }
  if (*q == '"') {
    lua_pushlstring(jp->L, p, (size_t)(q - p));
    return q + 1;
  }
  return parse_string_escaped(jp, p, q);
}

/* A float zero becomes +0.0: the Lua decoder computes `tonumber(lit) + 0.0`, which drops
 * the sign of -0.0 (and of an underflow such as -1e-400), and both decoders must give the
 * same values. [-1, +1] */
static void positive_zero(lua_State *L) {
  if ((!LLM_HAS_INTEGERS || !lua_isinteger(L, -1)) && lua_tonumber(L, -1) == 0) {
    lua_pop(L, 1);
    lua_pushnumber(L, 0.0);
  }
}

/* Literals other than short integers: converted by Lua itself so the result is exactly
 * tonumber's (integer if it fits, else float; locale-proof). [-0, +1] on success */
static JSON_NOINLINE const char *push_number_slow(struct json_parser *jp, const char *p,
                                                  const char *e) {
  size_t len = (size_t)(e - p);
  char tmp[64];
  if (len < sizeof tmp) {
    memcpy(tmp, p, len);
    tmp[len] = '\0';
    if (lua_stringtonumber(jp->L, tmp) != 0) {
      positive_zero(jp->L);
      return e;
    }
  } else {                       /* a long literal: let Lua hold the NUL-terminated copy */
    lua_pushlstring(jp->L, p, len);
    if (lua_stringtonumber(jp->L, lua_tostring(jp->L, -1)) != 0) {
      lua_remove(jp->L, -2);
      positive_zero(jp->L);
      return e;
    }
  }
  return fail(jp, p, "number out of range");
}

/* p at '-' or a digit. [-0, +1] on success. */
static inline const char *parse_number(struct json_parser *jp, const char *p) {
  const char *q = p;
  int neg = 0;
  if (*q == '-') {
    neg = 1;
    q++;
  }
  const char *digits = q;
  uint64_t u = 0;
  if (*q == '0') {
    q++;
    if (IS_DIGIT(*q))
      return fail(jp, p, "leading zero in number");
  } else if (IS_DIGIT(*q)) {
    do
      u = u * 10 + (uint64_t)(*q++ - '0');   /* may wrap; only used for <= 18 digits */
    while (IS_DIGIT(*q));
  } else {
    return fail(jp, p, "unexpected character");
  }
  int isint = 1;
  if (*q == '.') {
    q++;
    if (!IS_DIGIT(*q))
      return fail(jp, q, "digit expected after '.'");
    while (IS_DIGIT(*q))
      q++;
    isint = 0;
  }
  if (*q == 'e' || *q == 'E') {
    q++;
    if (*q == '+' || *q == '-')
      q++;
    if (!IS_DIGIT(*q))
      return fail(jp, q, "digit expected in exponent");
    while (IS_DIGIT(*q))
      q++;
    isint = 0;
  }
  if (isint && q - digits <= 18) {   /* 10^18 - 1 < 2^63: cannot overflow */
    lua_pushinteger(jp->L, neg ? -(lua_Integer)u : (lua_Integer)u);
    return q;
  }
  return push_number_slow(jp, p, q);
}

static const char *parse_value(struct json_parser *jp, const char *p, int depth);

/* Containers are built in two phases so that each table is allocated at its final size:
 * up to JSON_STAGE elements (or key-value pairs) wait on the Lua stack above a slot
 * reserved for the table, which is then created with the exact count and filled. Growing
 * a table one key at a time instead reallocates its hash part at 1, 2, 4, 8... keys, and
 * those reallocations cost more than the whole parse. A container longer than JSON_STAGE
 * gets its table at that point and is filled directly from then on, so the stack use of
 * one level stays bounded. */
#define JSON_STAGE 16

/* Creates the table of the container whose slot is t, moves the n values staged above it
 * into it (pairs = 1: key-value pairs) and leaves it in slot t, the stack ending at t.
 * size is the table's size hint. [-(n or 2n), +0] */
static void flush_container(struct json_parser *jp, int t, int n, int pairs, int size) {
  lua_State *L = jp->L;
  if (pairs) {
    lua_createtable(L, 0, size);
    if (jp->object_mt) {
      lua_pushvalue(L, jp->object_mt);
      lua_setmetatable(L, -2);
    }
    for (int i = 0; i < n; i++) {  /* in order: for a repeated key the last one wins */
      lua_pushvalue(L, t + 1 + 2 * i);
      lua_pushvalue(L, t + 2 + 2 * i);
      lua_rawset(L, -3);
    }
    lua_replace(L, t);
    lua_settop(L, t);
  } else {
    lua_createtable(L, size, 0);
    if (jp->array_mt) {
      lua_pushvalue(L, jp->array_mt);
      lua_setmetatable(L, -2);
    }
    lua_replace(L, t);           /* the staged values are now on top, the last one first */
    for (int i = n; i >= 1; i--)
      lua_rawseti(L, t, i);
  }
}

/* p just after '['. [-0, +1] on success. */
static const char *parse_array(struct json_parser *jp, const char *p, int depth) {
  lua_State *L = jp->L;
  if (depth >= JSON_MAX_DEPTH)
    return fail(jp, p - 1, "nesting too deep");
  if (!lua_checkstack(L, JSON_STAGE + JSON_STACK_SLACK))
    return fail(jp, p - 1, "nesting too deep");
  lua_pushnil(L);                /* the table's slot */
  int t = lua_gettop(L);
  int n = 0;
  p = skip_ws(p);
  if (*p == ']') {
    flush_container(jp, t, 0, 0, 0);
    return p + 1;
  }
  for (;;) {
    if ((p = parse_value(jp, p, depth + 1)) == NULL)
      return NULL;
    if (++n > JSON_STAGE) {
      if (n == JSON_STAGE + 1)   /* too long to stage: the table now, at twice the size */
        flush_container(jp, t, n, 0, 2 * n);
      else
        lua_rawseti(L, t, n);
    }
    p = skip_ws(p);
    if (*p == ',') {
      p = skip_ws(p + 1);
      continue;
    }
    if (*p == ']') {
      if (n <= JSON_STAGE)
        flush_container(jp, t, n, 0, n);
      return p + 1;
    }
    return fail(jp, p, p < jp->end ? "expected ',' or ']'" : "unterminated array");
  }
}
/* p just after '{'. [-0, +1] on success. */
static const char *parse_object(struct json_parser *jp, const char *p, int depth) {
  lua_State *L = jp->L;
  if (depth >= JSON_MAX_DEPTH)
    return fail(jp, p - 1, "nesting too deep");
  if (!lua_checkstack(L, 2 * JSON_STAGE + JSON_STACK_SLACK))
    return fail(jp, p - 1, "nesting too deep");
  lua_pushnil(L);                /* the table's slot */
  int t = lua_gettop(L);
  int n = 0;
  p = skip_ws(p);
  if (*p == '}') {
    flush_container(jp, t, 0, 1, 0);
    return p + 1;
  }
  for (;;) {
    if (*p != '"')
      return fail(jp, p, p < jp->end ? "expected a string key" : "unterminated object");
    if ((p = parse_string(jp, p + 1)) == NULL)
      return NULL;
    p = skip_ws(p);
    if (*p != ':')
      return fail(jp, p, "expected ':'");
    if ((p = parse_value(jp, skip_ws(p + 1), depth + 1)) == NULL)
      return NULL;
    if (++n > JSON_STAGE) {
      if (n == JSON_STAGE + 1)   /* too many to stage: the table now, at twice the size */
        flush_container(jp, t, n, 1, 2 * n);
      else
        lua_rawset(L, t);        /* a repeated key overwrites: the last one wins */
    }
    p = skip_ws(p);
    if (*p == ',') {
      p = skip_ws(p + 1);
      continue;
    }
    if (*p == '}') {
      if (n <= JSON_STAGE)
        flush_container(jp, t, n, 1, n);
      return p + 1;
    }
    return fail(jp, p, p < jp->end ? "expected ',' or '}'" : "unterminated object");
  }
}

/* p at the first byte of a value (whitespace already skipped). [-0, +1] on success. */
static const char *parse_value(struct json_parser *jp, const char *p, int depth) {
  switch (*p) {
  case '"':
    return parse_string(jp, p + 1);
  case '{':
    return parse_object(jp, p + 1, depth);
  case '[':
    return parse_array(jp, p + 1, depth);
  case '-': case '0': case '1': case '2': case '3': case '4':
  case '5': case '6': case '7': case '8': case '9':
    return parse_number(jp, p);
  case 't':
    if (jp->end - p >= 4 && memcmp(p, "true", 4) == 0) {
      lua_pushboolean(jp->L, 1);
      return p + 4;
    }
    break;
  case 'f':
    if (jp->end - p >= 5 && memcmp(p, "false", 5) == 0) {
      lua_pushboolean(jp->L, 0);
      return p + 5;
    }
    break;
  case 'n':
    if (jp->end - p >= 4 && memcmp(p, "null", 4) == 0) {
      lua_pushvalue(jp->L, jp->null);
      return p + 4;
    }
    break;
  case '\0':
    if (p == jp->end)
      return fail(jp, p, "unexpected end of input");
    break;
  }
  return fail(jp, p, "unexpected character");
}

/* core.json_decode(s, array_mt?, object_mt?, null?) -> value | nil, message.
 * Raises only on misuse (s not a string, a metatable that is not a table) or when Lua
 * runs out of memory. */
static int json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, 3))
    luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 4);              /* index 4 is the null value, nil when absent */
  struct json_parser jp = {
    .L = L, .text = s, .end = s + len, .err = NULL, .err_at = NULL,
    .array_mt = lua_isnil(L, 2) ? 0 : 2,
    .object_mt = lua_isnil(L, 3) ? 0 : 3,
    .null = 4,
  };
  const char *p = parse_value(&jp, skip_ws(s), 0);
  if (p != NULL) {
    p = skip_ws(p);
    if (p == jp.end)
      return 1;                  /* the value is on top */
    fail(&jp, p, "trailing characters");
  }
  lua_pushnil(L);
  lua_pushfstring(L, "JSON: %s at byte " LLM_FMT_INT, jp.err, LLM_FMT_INT_ARG(jp.err_at - s + 1));
  return 2;
}

/* ---- Fast paths: the text of the common stream events without building their tables ----
 *
 * A stream of text deltas decodes, per event, a few nested tables only to read one string
 * out of them. The functions below read that string (and the one or two fields that decide
 * what the event means) straight from the text, and validate the rest of the document
 * without building anything, accepting exactly what json_decode accepts. Whenever anything
 * is unusual (another shape, a field the normalization would read, a duplicate of such a
 * field, an escaped key, bad JSON) they return nothing and the caller decodes the event in
 * full, so the normalized events are the same either way. */

/* Skips a string whose opening quote is at p[-1]; the same strings as parse_string. */
static const char *skip_string(struct json_parser *jp, const char *p) {
  for (;;) {
    while (!str_stop[(unsigned char)*p])
      p++;
    if (*p == '"')
      return p + 1;
    if (*p == '\\') {
      switch (p[1]) {
      case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        p += 2;
        continue;
      case 'u':
        if (hex4((const unsigned char *)p + 2) < 0)
          return fail(jp, p, "bad \\u escape");
        p += 6;
        continue;
      default:
        return fail(jp, p, "bad escape");
      }
    }
    if ((unsigned char)*p >= 0x80) {   /* invalid UTF-8 is replaced, never an error */
      p++;
      continue;
    }
    return fail(jp, p, "control character in string");   /* also the end of the input */
  }
}

/* Skips a number at p; the same literals as parse_number (every one of them converts). */
static const char *skip_number(struct json_parser *jp, const char *p) {
  if (*p == '-')
    p++;
  if (*p == '0') {
    p++;
    if (IS_DIGIT(*p))
      return fail(jp, p, "leading zero in number");
  } else if (IS_DIGIT(*p)) {
    while (IS_DIGIT(*p))
      p++;
  } else {
    return fail(jp, p, "unexpected character");
  }
  if (*p == '.') {
    p++;
    if (!IS_DIGIT(*p))
      return fail(jp, p, "digit expected after '.'");
    while (IS_DIGIT(*p))
      p++;
  }
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '+' || *p == '-')
      p++;
    if (!IS_DIGIT(*p))
      return fail(jp, p, "digit expected in exponent");
    while (IS_DIGIT(*p))
      p++;
  }
  return p;
}

/* Skips the value at p (whitespace skipped) at nesting `depth`, as parse_value would read it. */
static const char *skip_value(struct json_parser *jp, const char *p, int depth) {
  switch (*p) {
  case '"':
    return skip_string(jp, p + 1);
  case '{': case '[': {
    char close = *p == '{' ? '}' : ']';
    if (depth >= JSON_MAX_DEPTH)
      return fail(jp, p, "nesting too deep");
    p = skip_ws(p + 1);
    if (*p == close)
      return p + 1;
    for (;;) {
      if (close == '}') {
        if (*p != '"' || (p = skip_string(jp, p + 1)) == NULL)
          return fail(jp, p, "expected a string key");
        p = skip_ws(p);
        if (*p != ':')
          return fail(jp, p, "expected ':'");
        p = skip_ws(p + 1);
      }
      if ((p = skip_value(jp, p, depth + 1)) == NULL)
        return NULL;
      p = skip_ws(p);
      if (*p == ',') {
        p = skip_ws(p + 1);
        continue;
      }
      if (*p == close)
        return p + 1;
      return fail(jp, p, "expected ',' or a closing bracket");
    }
  }
  case '-': case '0': case '1': case '2': case '3': case '4':
  case '5': case '6': case '7': case '8': case '9':
    return skip_number(jp, p);
  case 't':
    return jp->end - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : fail(jp, p, "bad literal");
  case 'f':
    return jp->end - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : fail(jp, p, "bad literal");
  case 'n':
    return jp->end - p >= 4 && memcmp(p, "null", 4) == 0 ? p + 4 : fail(jp, p, "bad literal");
  }
  return fail(jp, p, "unexpected character");
}

/* The next member of an object whose '{' was read (*first = 1 before the first call). Returns
 * 1 with the key's raw bytes and *pp at the value, 0 at the closing brace (*pp after it), -1
 * for malformed input or a key that is not plain ASCII without escapes (it might spell a key
 * the caller looks for: the full decoder decides). */
static int member(const char **pp, int *first, const char **key, size_t *klen) {
  const char *p = skip_ws(*pp);
  if (*p == '}') {
    *pp = p + 1;
    return 0;
  }
  if (!*first) {
    if (*p != ',')
      return -1;
    p = skip_ws(p + 1);      /* a '}' here (a trailing comma) is no key: -1 below */
  }
  *first = 0;
  if (*p != '"')
    return -1;
  *key = ++p;
  while (!str_stop[(unsigned char)*p])
    p++;
  if (*p != '"')
    return -1;
  *klen = (size_t)(p - *key);
  p = skip_ws(p + 1);
  if (*p != ':')
    return -1;
  *pp = skip_ws(p + 1);
  return 1;
}

#define KEY_IS(lit) (klen == sizeof(lit) - 1 && memcmp(key, lit, sizeof(lit) - 1) == 0)
/* The value at *pp is the string `lit` written without escapes; on a match *pp moves
 * past it. */
static int string_is(struct json_parser *jp, const char **pp, const char *lit, size_t n) {
  const char *p = *pp;
  if ((size_t)(jp->end - p) < n + 2 || p[0] != '"' || memcmp(p + 1, lit, n) != 0 || p[n + 1] != '"')
    return 0;
  *pp = p + n + 2;
  return 1;
}
#define STRING_IS(pp, lit) string_is(&jp, pp, lit, sizeof(lit) - 1)

/* The value at *pp is null; *pp moves past it. */
static int null_at(struct json_parser *jp, const char **pp) {
  if (jp->end - *pp >= 4 && memcmp(*pp, "null", 4) == 0) {
    *pp += 4;
    return 1;
  }
  return 0;
}

/* Pushes the string at *pp (decoded as json_decode does) and moves past it. [-0, +1] on success */
static int push_string(struct json_parser *jp, const char **pp) {
  if (**pp != '"')
    return 0;
  *pp = parse_string(jp, *pp + 1);
  return *pp != NULL;
}

#define FAST_INIT(L, s, len) \
  struct json_parser jp = { .L = L, .text = s, .end = s + len, .err = NULL, .err_at = NULL, \
                            .array_mt = 0, .object_mt = 0, .null = 0 }
/* Skips the member value at p (nesting `depth`) or gives up. */
#define SKIP(p, depth) do { if (((p) = skip_value(&jp, (p), (depth))) == NULL) return 0; } while (0)

/* scan_chat: core.fast_chat_text(s) -> text | nothing. A Chat Completions chunk whose only news is a
 * text delta of choice 0: exactly one choice, its index absent, null or 0, its delta with a
 * non-empty string `content` and null (or absent) refusal, reasoning, reasoning_content and
 * tool_calls, its finish_reason null or absent; no usage or error (null is fine). Every
 * other member is skipped (validated). */
static int scan_chat(lua_State *L, const char *s, size_t len) {
  const char *p, *key;
  size_t klen;
  int first = 1, r, have_choices = 0, have_text = 0;
  FAST_INIT(L, s, len);
  p = skip_ws(s);
  if (*p++ != '{')
    return 0;
  while ((r = member(&p, &first, &key, &klen)) == 1) {
    if (KEY_IS("choices")) {
      int cfirst = 1, seen = 0;
      if (have_choices++ || *p++ != '[')
        return 0;
      p = skip_ws(p);
      if (*p++ != '{')            /* exactly one choice, an object */
        return 0;
      while ((r = member(&p, &cfirst, &key, &klen)) == 1) {
        if (KEY_IS("index")) {
          if (seen & 1) return 0;
          seen |= 1;
          if (*p == '0' && !IS_DIGIT(p[1]) && p[1] != '.' && p[1] != 'e' && p[1] != 'E') p++;
          else if (!null_at(&jp, &p)) return 0;
        } else if (KEY_IS("finish_reason")) {
          if (seen & 2) return 0;
          seen |= 2;
          if (!null_at(&jp, &p)) return 0;
        } else if (KEY_IS("delta")) {
          int dfirst = 1, dseen = 0;
          if (seen & 4) return 0;
          seen |= 4;
          if (*p++ != '{') return 0;
          while ((r = member(&p, &dfirst, &key, &klen)) == 1) {
            if (KEY_IS("content")) {
              if (dseen++ || !push_string(&jp, &p)) return 0;
              have_text = 1;
            } else if (KEY_IS("refusal") || KEY_IS("reasoning") || KEY_IS("reasoning_content") ||
                       KEY_IS("tool_calls")) {
              if (!null_at(&jp, &p)) return 0;   /* (a repeat of a null is still null) */
            } else {
              SKIP(p, 4);
            }
          }
          if (r < 0) return 0;
        } else {
          SKIP(p, 3);
        }
      }
      if (r < 0) return 0;
      p = skip_ws(p);
      if (*p++ != ']')
        return 0;
    } else if (KEY_IS("usage") || KEY_IS("error")) {
      if (!null_at(&jp, &p)) return 0;
    } else {
      SKIP(p, 1);
    }
  }
  if (r < 0 || !have_text || skip_ws(p) != jp.end)
    return 0;
  if (lua_rawlen(L, -1) == 0)
    return 0;
  return 1;
}

/* scan_anthropic: core.fast_anthropic_text(s) -> index, text | nothing. A content_block_delta whose delta is
 * a text_delta with a non-empty string `text`; `index` an integer literal. */
static int scan_anthropic(lua_State *L, const char *s, size_t len) {
  const char *p, *key;
  size_t klen;
  int first = 1, r, seen = 0, base = lua_gettop(L);
  FAST_INIT(L, s, len);
  lua_pushnil(L);                 /* base + 1: the index */
  lua_pushnil(L);                 /* base + 2: the text */
  p = skip_ws(s);
  if (*p++ != '{')
    return 0;
  while ((r = member(&p, &first, &key, &klen)) == 1) {
    if (KEY_IS("type")) {
      if ((seen & 1) || !STRING_IS(&p, "content_block_delta")) return 0;
      seen |= 1;
    } else if (KEY_IS("index")) {
      const char *q = p;
      int64_t v = 0;
      if (seen & 2) return 0;
      seen |= 2;
      while (IS_DIGIT(*q) && q - p < 9) v = v * 10 + (*q++ - '0');
      if (q == p || (*p == '0' && q - p > 1) || IS_DIGIT(*q) || *q == '.' || *q == 'e' || *q == 'E')
        return 0;
      lua_pushinteger(L, (lua_Integer)v);
      lua_replace(L, base + 1);
      p = q;
    } else if (KEY_IS("delta")) {
      int dfirst = 1, dseen = 0;
      if (seen & 4) return 0;
      seen |= 4;
      if (*p++ != '{') return 0;
      while ((r = member(&p, &dfirst, &key, &klen)) == 1) {
        if (KEY_IS("type")) {
          if ((dseen & 1) || !STRING_IS(&p, "text_delta")) return 0;
          dseen |= 1;
        } else if (KEY_IS("text")) {
          if ((dseen & 2) || !push_string(&jp, &p)) return 0;
          dseen |= 2;
          lua_replace(L, base + 2);
        } else {
          SKIP(p, 2);
        }
      }
      if (r < 0 || dseen != 3) return 0;
    } else {
      SKIP(p, 1);
    }
  }
  if (r < 0 || seen != 7 || skip_ws(p) != jp.end || lua_rawlen(L, base + 2) == 0)
    return 0;
  return 2;
}

/* scan_responses: core.fast_responses_text(s) -> text | nothing. A Responses API event of type
 * response.output_text.delta with a non-empty string `delta`. */
static int scan_responses(lua_State *L, const char *s, size_t len) {
  const char *p, *key;
  size_t klen;
  int first = 1, r, seen = 0, base = lua_gettop(L);
  FAST_INIT(L, s, len);
  lua_pushnil(L);                 /* base + 1: the text */
  p = skip_ws(s);
  if (*p++ != '{')
    return 0;
  while ((r = member(&p, &first, &key, &klen)) == 1) {
    if (KEY_IS("type")) {
      if ((seen & 1) || !STRING_IS(&p, "response.output_text.delta")) return 0;
      seen |= 1;
    } else if (KEY_IS("delta")) {
      if ((seen & 2) || !push_string(&jp, &p)) return 0;
      seen |= 2;
      lua_replace(L, base + 1);
    } else {
      SKIP(p, 1);
    }
  }
  if (r < 0 || seen != 3 || skip_ws(p) != jp.end || lua_rawlen(L, base + 1) == 0)
    return 0;
  return 1;
}

/* scan_ollama: core.fast_ollama_text(s) -> text | nothing. An Ollama chat line whose only
 * news is text: `message` an object with a non-empty string `content` and null (or absent)
 * thinking and tool_calls; `done` false, null or absent; no error (null is fine). */
static int scan_ollama(lua_State *L, const char *s, size_t len) {
  const char *p, *key;
  size_t klen;
  int first = 1, r, seen = 0, base = lua_gettop(L);
  FAST_INIT(L, s, len);
  lua_pushnil(L);                 /* base + 1: the text */
  p = skip_ws(s);
  if (*p++ != '{')
    return 0;
  while ((r = member(&p, &first, &key, &klen)) == 1) {
    if (KEY_IS("message")) {
      int mfirst = 1, mseen = 0;
      if (seen & 1) return 0;
      seen |= 1;
      if (*p++ != '{') return 0;
      while ((r = member(&p, &mfirst, &key, &klen)) == 1) {
        if (KEY_IS("content")) {
          if (mseen++ || !push_string(&jp, &p)) return 0;
          lua_replace(L, base + 1);
        } else if (KEY_IS("thinking") || KEY_IS("tool_calls")) {
          if (!null_at(&jp, &p)) return 0;
        } else {
          SKIP(p, 2);
        }
      }
      if (r < 0 || !mseen) return 0;
    } else if (KEY_IS("done")) {
      if (seen & 2) return 0;
      seen |= 2;
      if (jp.end - p >= 5 && memcmp(p, "false", 5) == 0) p += 5;
      else if (!null_at(&jp, &p)) return 0;
    } else if (KEY_IS("error")) {
      if (!null_at(&jp, &p)) return 0;
    } else {
      SKIP(p, 1);
    }
  }
  if (r < 0 || !(seen & 1) || skip_ws(p) != jp.end || lua_rawlen(L, base + 1) == 0)
    return 0;
  return 1;
}

typedef int (*scan_fn)(lua_State *L, const char *s, size_t len);
enum { FAST_CHAT, FAST_ANTHROPIC, FAST_RESPONSES, FAST_OLLAMA };
static const scan_fn scanners[] = { scan_chat, scan_anthropic, scan_responses, scan_ollama };

/* The Lua functions core.fast_*_text(s): the scanner's values, or nothing. The scanners
 * push their values on success; on failure whatever they pushed is dropped here. */
static int fast_text(lua_State *L, int kind) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  int n;
  lua_settop(L, 1);
  n = scanners[kind](L, s, len);
  if (n == 0) lua_settop(L, 1);
  return n;
}
static int fast_chat_text(lua_State *L) { return fast_text(L, FAST_CHAT); }
static int fast_anthropic_text(lua_State *L) { return fast_text(L, FAST_ANTHROPIC); }
static int fast_responses_text(lua_State *L) { return fast_text(L, FAST_RESPONSES); }
static int fast_ollama_text(lua_State *L) { return fast_text(L, FAST_OLLAMA); }

/* The list in `target` that a text delta is appended to, pushed: the target itself (chat:
 * choice 0's text list; responses and ollama: the output text list), or for anthropic the text list
 * of block `index` (the value below the text) when that block is a text block. 0 when
 * there is none: the event is not a common one. */
static int push_text_list(lua_State *L, int kind, int target) {
  if (kind != FAST_ANTHROPIC) {
    lua_pushvalue(L, target);
    return 1;
  }
  lua_pushvalue(L, -2);
  if (lua_rawget(L, target) != LUA_TTABLE) {          /* blocks[index] */
    lua_pop(L, 1);
    return 0;
  }
  lua_pushliteral(L, "type");
  lua_rawget(L, -2);
  if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), "text") != 0) {
    lua_pop(L, 2);
    return 0;
  }
  lua_pop(L, 1);
  lua_pushliteral(L, "text");
  lua_rawget(L, -2);
  lua_remove(L, -2);
  if (lua_type(L, -1) != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

/* decode(batch, from, target, queue) -> next, count: the common events of a batch of stream
 * records, from `from` on, straight into `queue` (an llm.queue: fields first, last). A
 * batch is the core's "events" record: n, the data strings at 1..n, names = { [i] = name }.
 * Each common event (see the scanners) appends its text to the target's list and becomes
 * the event { type = "text", text, name } with the metatable upvalue 2 and its data text in
 * the weak table upvalue 3, from which `raw` is decoded on first read (see
 * llm.providers.common). Stops at the first other event: `next` is its index (n + 1 when
 * all were common), `count` the events queued. Upvalue 1: the scanner. */
static int fast_batch(lua_State *L) {
  int kind = (int)lua_tointeger(L, lua_upvalueindex(1));
  lua_Integer i = luaL_checkinteger(L, 2), n, last, count = 0;
  int names;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
  lua_settop(L, 4);
  lua_pushliteral(L, "n");
  lua_rawget(L, 1);
  n = lua_tointeger(L, -1);
  lua_pushliteral(L, "names");
  lua_rawget(L, 1);                /* 6: names or nil */
  names = lua_istable(L, 6) ? 6 : 0;
  lua_pushliteral(L, "last");
  lua_rawget(L, 4);
  last = lua_tointeger(L, -1);
  lua_settop(L, 6);
  for (; i <= n; i++) {
    size_t len;
    const char *s;
    int ok;
    if (lua_rawgeti(L, 1, i) != LUA_TSTRING) { lua_settop(L, 6); break; }   /* 7: data */
    if (names) lua_rawgeti(L, names, i); else lua_pushnil(L);              /* 8: name */
    if (kind == FAST_ANTHROPIC && lua_type(L, 8) == LUA_TSTRING && strcmp(lua_tostring(L, 8), "ping") == 0) {
      lua_settop(L, 6);
      break;
    }
    s = lua_tolstring(L, 7, &len);
    ok = scanners[kind](L, s, len) > 0 && push_text_list(L, kind, 3);  /* ... text [list] */
    if (!ok) { lua_settop(L, 6); break; }
    llm_pieces_add(L, -1, -2);                              /* the text joins the list */
    lua_pop(L, 1);                                          /* 7 data, 8 name, ... text */
    lua_createtable(L, 0, 3);                               /* the event */
    lua_pushliteral(L, "text");
    lua_setfield(L, -2, "type");
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "text");
    if (!lua_isnil(L, 8)) { lua_pushvalue(L, 8); lua_setfield(L, -2, "name"); }
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);                                   /* lazy[ev] = data */
    lua_pushvalue(L, 7);
    lua_rawset(L, lua_upvalueindex(3));
    lua_rawseti(L, 4, ++last);                              /* queue[last + 1] = ev */
    lua_pushliteral(L, "last");                             /* (kept right at every step) */
    lua_pushinteger(L, last);
    lua_rawset(L, 4);
    count++;
    lua_settop(L, 6);
  }
  lua_pushinteger(L, i);
  lua_pushinteger(L, count);
  return 2;
}

/* core.fast_batch(kind, event_mt, lazy) -> decode: a batch decoder (fast_batch) for "chat",
 * "anthropic", "responses" or "ollama". */
static int fast_batch_new(lua_State *L) {
  static const char *const kinds[] = { "chat", "anthropic", "responses", "ollama", NULL };
  int kind = luaL_checkoption(L, 1, NULL, kinds);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_pushinteger(L, kind);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_pushcclosure(L, fast_batch, 3);
  return 1;
}

/* ---- The encoder: core.json_encoder(array_mt, object_mt, null, tostring, format) -> encode ----
 *
 *   local encode = core.json_encoder(json.ARRAY_MT, json.OBJECT_MT, json.null, tostring,
 *                                    string.format)
 *   local text = encode(v)          -- raises "llm.json.encode: $.path ..." on a bad value
 *
 * What llm.json.encode writes (lua/llm/json.lua has the rules; spec/support/json_oracle.lua
 * the Lua encoder this one replaced, which spec/json_encode_spec.lua checks it against):
 * tables with array_mt are arrays (1..#t), with object_mt objects; an unmarked table is an
 * object when empty or when all its keys are strings, an array when its keys are exactly
 * 1..n, and an error otherwise. Object keys are sorted by their bytes. Integers are written
 * as integers (on 5.1 and LuaJIT: integral numbers up to 2^53); floats with the shortest of
 * %.15g, %.16g and %.17g that strtod reads back exactly, plus ".0" when that looks like an
 * integer. Strings escape '"', '\\', the control characters and DEL, and keep every other
 * byte as it is. A table that has some other metatable is read as Lua reads it: __eq (for
 * `== null`), __metatable, __pairs and __len (5.3 and 5.4), __index.
 *
 * Errors name the path of the bad value ($.messages[2].content), built only then from a
 * chain of frames on the C stack; `tostring` (upvalue 4) writes the bad value or key in
 * the message, as the Lua encoder's `tostring` did. Nesting deeper than JSON_MAX_DEPTH is an
 * error, so whatever is written also decodes.
 *
 * Floats are formatted by snprintf, which is what string.format calls on PUC Lua; on LuaJIT,
 * whose string.format has digits of its own, by string.format itself (upvalue 6).
 *
 * Memory: the output and the object-key lists grow in C memory (from the state's allocator)
 * owned by a buffer userdata (ENC_BUFFER, with __gc), never by a C frame: any raise (a bad
 * value, a metamethod's error, out of memory) leaves it to the collector. One buffer is
 * kept in upvalue 5 between calls; a call takes it out while it runs (false there), so a
 * nested call from a metamethod, or the call after a raise, makes a fresh one. Key strings
 * are kept alive on the Lua stack (or, past ENC_KEYS_ON_STACK keys in one object, in a
 * table) while their pointers are in use. */

#define ENC_BUFFER "llm.json.EncodeBuffer"
#define ENC_KEYS_ON_STACK 64            /* keys of one object anchored on the stack; more: a table */
#define ENC_KEEP_BYTES (64 * 1024)      /* a larger output buffer is released after the call */
#define ENC_KEEP_KEYS 1024              /* and a larger key list */
#define ENC_NULL lua_upvalueindex(3)
#define ENC_TOSTRING lua_upvalueindex(4)
#define ENC_CACHE lua_upvalueindex(5)
#define ENC_FORMAT lua_upvalueindex(6)

struct enc_key {
  const char *s;
  size_t len;
  int slot;                  /* > 0: its stack index; <= 0: -slot is its index in the anchor table */
};

struct enc_buffer {
  lua_Alloc alloc;
  void *ud;
  char *p;                   /* the text so far: n bytes of cap */
  size_t n, cap;
  struct enc_key *keys;      /* the keys of the objects being written, outermost first */
  size_t nkeys, kcap;
};

/* One step of the path from the root to the value being written: the table that holds it
 * (for cycles) and its index or key there. */
struct enc_frame {
  const struct enc_frame *up;
  const void *table;
  lua_Integer index;         /* the array index, or 0 for an object key */
  const char *key;
  size_t klen;
};

struct enc {
  lua_State *L;
  struct enc_buffer *b;
};

static void enc_buffer_release(struct enc_buffer *b) {
  if (b->p != NULL) b->alloc(b->ud, b->p, b->cap, 0);
  if (b->keys != NULL) b->alloc(b->ud, b->keys, b->kcap * sizeof *b->keys, 0);
  b->p = NULL;
  b->keys = NULL;
  b->n = b->cap = b->nkeys = b->kcap = 0;
}

static int enc_buffer__gc(lua_State *L) {
  enc_buffer_release(luaL_checkudata(L, 1, ENC_BUFFER));
  return 0;
}

/* [-0, +1] A new, empty buffer. */
static struct enc_buffer *enc_buffer_new(lua_State *L) {
  struct enc_buffer *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  b->alloc = lua_getallocf(L, &b->ud);
  luaL_setmetatable(L, ENC_BUFFER);
  return b;
}

/* Room for `need` more bytes: where to write them. Raises on out of memory (the buffer
 * stays valid and owned by its userdata). */
static JSON_NOINLINE char *enc_grow(struct enc *e, size_t need) {
  struct enc_buffer *b = e->b;
  size_t cap = b->cap ? b->cap : 1024;
  char *p;
  while (cap - b->n < need) {
    if (cap > (size_t)-1 / 4) luaL_error(e->L, "not enough memory");
    cap *= 2;
  }
  if ((p = b->alloc(b->ud, b->p, b->cap, cap)) == NULL)
    luaL_error(e->L, "not enough memory");
  b->p = p;
  b->cap = cap;
  return p + b->n;
}

static inline char *enc_reserve(struct enc *e, size_t need) {
  struct enc_buffer *b = e->b;
  return b->cap - b->n >= need ? b->p + b->n : enc_grow(e, need);
}

static inline void enc_put(struct enc *e, const char *s, size_t len) {
  memcpy(enc_reserve(e, len), s, len);
  e->b->n += len;
}

static inline void enc_putc(struct enc *e, char c) {
  *enc_reserve(e, 1) = c;
  e->b->n++;
}

/* [-0, +0] The path of the value that `f` leads to, from the root: $, [i] or .key per step. */
static void enc_add_path(luaL_Buffer *B, const struct enc_frame *f) {
  char num[32];
  if (f == NULL) {
    luaL_addchar(B, '$');
    return;
  }
  enc_add_path(B, f->up);
  if (f->key != NULL) {
    luaL_addchar(B, '.');
    luaL_addlstring(B, f->key, f->klen);
  } else {
    luaL_addlstring(B, num, (size_t)snprintf(num, sizeof num, "[%lld]", (long long)f->index));
  }
}

/* Raises "llm.json.encode: <path><what><what2>", plus " (<tostring(value)>)" when `detail`
 * is a stack index (0: none). Never returns. */
static JSON_NOINLINE void enc_raise(struct enc *e, const struct enc_frame *path, const char *what,
                                    const char *what2, int detail) {
  lua_State *L = e->L;
  luaL_Buffer B;
  int shown = 0;
  luaL_checkstack(L, 4, NULL);
  if (detail != 0) {
    detail = lua_absindex(L, detail);
    lua_pushvalue(L, ENC_TOSTRING);
    lua_pushvalue(L, detail);
    lua_call(L, 1, 1);
    shown = lua_gettop(L);
  }
  luaL_buffinit(L, &B);
  luaL_addstring(&B, "llm.json.encode: ");
  enc_add_path(&B, path);
  luaL_addstring(&B, what);
  if (what2 != NULL) luaL_addstring(&B, what2);
  if (shown) {
    luaL_addstring(&B, " (");
    lua_pushvalue(L, shown);
    luaL_addvalue(&B);
    luaL_addchar(&B, ')');
  }
  luaL_pushresult(&B);
  lua_error(L);
}

/* Bytes a JSON string cannot hold as they are: the control characters, '"', '\\' and DEL. */
static const unsigned char enc_escaped[256] = {
  [0x00] = 1, [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1,
  [0x07] = 1, [0x08] = 1, [0x09] = 1, [0x0a] = 1, [0x0b] = 1, [0x0c] = 1, [0x0d] = 1,
  [0x0e] = 1, [0x0f] = 1, [0x10] = 1, [0x11] = 1, [0x12] = 1, [0x13] = 1, [0x14] = 1,
  [0x15] = 1, [0x16] = 1, [0x17] = 1, [0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1,
  [0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1, [0x22] = 1, [0x5c] = 1, [0x7f] = 1
};

static void enc_string(struct enc *e, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const char *end = s + len;
  enc_putc(e, '"');
  while (s < end) {
    const char *run = s;
    while (s < end && !enc_escaped[(unsigned char)*s])
      s++;
    if (s > run) enc_put(e, run, (size_t)(s - run));
    if (s < end) {
      unsigned char c = (unsigned char)*s++;
      char *o = enc_reserve(e, 6);
      size_t n = 2;
      o[0] = '\\';
      switch (c) {
      case '"': o[1] = '"'; break;
      case '\\': o[1] = '\\'; break;
      case '\b': o[1] = 'b'; break;
      case '\f': o[1] = 'f'; break;
      case '\n': o[1] = 'n'; break;
      case '\r': o[1] = 'r'; break;
      case '\t': o[1] = 't'; break;
      default:
        o[1] = 'u'; o[2] = '0'; o[3] = '0'; o[4] = hex[c >> 4]; o[5] = hex[c & 15];
        n = 6;
      }
      e->b->n += n;
    }
  }
  enc_putc(e, '"');
}

#if !LLM_HAS_INTEGERS
/* llm.compat's integers on 5.1 and LuaJIT: integral numbers with |n| <= 2^53. */
static int enc_integral(lua_Number n) {
  return n == floor(n) && n >= -9007199254740992.0 && n <= 9007199254740992.0;
}
#endif

static void enc_integer(struct enc *e, long long v) {
  char tmp[24], *p = tmp + sizeof tmp;
  unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
  do {
    *--p = (char)('0' + u % 10);
    u /= 10;
  } while (u != 0);
  if (v < 0) *--p = '-';
  enc_put(e, p, (size_t)(tmp + sizeof tmp - p));
}

/* n in the form fmt ("%.15g" ...) as string.format writes it, into tmp: the C library's
 * snprintf, as PUC Lua's string.format; on LuaJIT its own string.format (upvalue 6), whose
 * digits differ from glibc's on exact ties (it rounds half away from zero). */
static int enc_format(struct enc *e, const char *fmt, lua_Number n, char *tmp, size_t size) {
#if defined(LLM_LUAJIT)
  if (lua_isfunction(e->L, ENC_FORMAT)) {
    lua_State *L = e->L;
    size_t len;
    const char *s;
    lua_pushvalue(L, ENC_FORMAT);
    lua_pushstring(L, fmt);
    lua_pushnumber(L, n);
    lua_call(L, 2, 1);
    s = lua_tolstring(L, -1, &len);
    if (s == NULL || len >= size) luaL_error(L, "llm.json.encode: string.format wrote no number");
    memcpy(tmp, s, len + 1);
    lua_pop(L, 1);
    return (int)len;
  }
#else
  (void)e;
#endif
  return snprintf(tmp, size, fmt, (double)n);
}

static void enc_number(struct enc *e, int idx, const struct enc_frame *path) {
  lua_State *L = e->L;
  char tmp[40];
  int len;
  lua_Number n;
#if LLM_HAS_INTEGERS
  if (lua_isinteger(L, idx)) {
    enc_integer(e, (long long)lua_tointeger(L, idx));
    return;
  }
  n = lua_tonumber(L, idx);
#else
  n = lua_tonumber(L, idx);
  if (enc_integral(n)) {
    enc_integer(e, (long long)n);
    return;
  }
#endif
  if (n != n || n == (lua_Number)HUGE_VAL || n == -(lua_Number)HUGE_VAL)
    enc_raise(e, path, " is not a finite number", NULL, idx);
  len = enc_format(e, "%.15g", n, tmp, sizeof tmp - 2);
  if (strtod(tmp, NULL) != n) {
    len = enc_format(e, "%.16g", n, tmp, sizeof tmp - 2);
    if (strtod(tmp, NULL) != n) len = enc_format(e, "%.17g", n, tmp, sizeof tmp - 2);
  }
  if (strpbrk(tmp, ".eEn") == NULL) {        /* an integral float reads back as a float */
    tmp[len++] = '.';
    tmp[len++] = '0';
  }
  enc_put(e, tmp, (size_t)len);
}

static void enc_value(struct enc *e, int idx, const struct enc_frame *path, int depth);

/* Iterating a table's keys as `pairs` does: lua_next, or (5.3, 5.4) its __pairs. The state
 * is on the stack: the key (next), or the iterator, its state and the key (__pairs). */
static int enc_iter_start(lua_State *L, int idx, int foreign) {
#if LUA_VERSION_NUM >= 502
  if (foreign && luaL_getmetafield(L, idx, "__pairs") != LUA_TNIL) {
    lua_pushvalue(L, idx);
    lua_call(L, 1, 3);
    return 3;
  }
#else
  (void)idx;
  (void)foreign;
#endif
  lua_pushnil(L);
  return 1;
}

/* The next key, on top of the stack (it is the last slot of the state); 0 at the end, with
 * the state popped. */
static int enc_iter_next(lua_State *L, int idx, int nstate) {
  if (nstate == 1) {
    if (lua_next(L, idx) == 0) return 0;
    lua_pop(L, 1);
    return 1;
  }
  lua_pushvalue(L, -3);
  lua_pushvalue(L, -3);
  lua_pushvalue(L, -3);
  lua_call(L, 2, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 4);
    return 0;
  }
  lua_replace(L, -2);
  return 1;
}

static int enc_key_cmp(const void *a, const void *b) {
  const struct enc_key *x = a, *y = b;
  int c = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);
  return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

/* Appends a key to the buffer's key list (the key string is already anchored). */
static void enc_add_key(struct enc *e, const char *s, size_t len, int slot) {
  struct enc_buffer *b = e->b;
  if (b->nkeys == b->kcap) {
    size_t kcap = b->kcap ? b->kcap * 2 : 64;
    struct enc_key *k = b->alloc(b->ud, b->keys, b->kcap * sizeof *k, kcap * sizeof *k);
    if (k == NULL) luaL_error(e->L, "not enough memory");
    b->keys = k;
    b->kcap = kcap;
  }
  b->keys[b->nkeys].s = s;
  b->keys[b->nkeys].len = len;
  b->keys[b->nkeys].slot = slot;
  b->nkeys++;
}

static int enc_is_positive_integer(lua_State *L, int idx, lua_Integer *k) {
#if LLM_HAS_INTEGERS
  if (!lua_isinteger(L, idx)) return 0;
  *k = lua_tointeger(L, idx);
  return *k > 0;
#else
  lua_Number n = lua_tonumber(L, idx);
  if (!enc_integral(n)) return 0;
  *k = (lua_Integer)n;
  return n > 0;
#endif
}

/* `#t` as the Lua encoder read it: raw, or through __len on 5.3 and 5.4; a `for` limit. */
static lua_Integer enc_len(struct enc *e, int idx, int foreign) {
#if LUA_VERSION_NUM >= 502
  if (foreign) {
    lua_State *L = e->L;
    int isnum;
    lua_Number n;
    lua_Integer len;
    lua_len(L, idx);
    if (lua_isinteger(L, -1)) {
      len = lua_tointeger(L, -1);
    } else {
      n = lua_tonumberx(L, -1, &isnum);
      if (!isnum) luaL_error(L, "'for' limit must be a number");
      n = floor(n);
      len = n >= 9.2e18 ? (lua_Integer)9.2e18 : n <= 0 ? 0 : (lua_Integer)n;
    }
    lua_pop(L, 1);
    return len;
  }
#else
  (void)foreign;
#endif
  return (lua_Integer)lua_rawlen(e->L, idx);
}

enum { ENC_PLAIN, ENC_ARRAY, ENC_OBJECT };

static void enc_table(struct enc *e, int idx, const struct enc_frame *path, int depth) {
  lua_State *L = e->L;
  int kind = ENC_PLAIN, foreign = 0, top = lua_gettop(L);
  const void *ptr;
  const struct enc_frame *up;
  struct enc_frame f;
  if (lua_getmetatable(L, idx)) {
    if (lua_rawequal(L, -1, lua_upvalueindex(1))) kind = ENC_ARRAY;
    else if (lua_rawequal(L, -1, lua_upvalueindex(2))) kind = ENC_OBJECT;
    else foreign = 1;
    lua_pop(L, 1);
  }
  if (foreign) {
    if (lua_compare(L, idx, ENC_NULL, LUA_OPEQ)) {   /* `v == null` may call v's __eq */
      enc_put(e, "null", 4);
      return;
    }
    if (luaL_getmetafield(L, idx, "__metatable") != LUA_TNIL) {   /* what getmetatable says */
      if (lua_rawequal(L, -1, lua_upvalueindex(1))) kind = ENC_ARRAY;
      else if (lua_rawequal(L, -1, lua_upvalueindex(2))) kind = ENC_OBJECT;
      lua_pop(L, 1);
    }
  }
  ptr = lua_topointer(L, idx);
  for (up = path; up != NULL; up = up->up)
    if (up->table == ptr) enc_raise(e, path, " is a cycle", NULL, 0);
  if (depth >= JSON_MAX_DEPTH) enc_raise(e, path, " is nested more than 1000 levels deep", NULL, 0);
  luaL_checkstack(L, ENC_KEYS_ON_STACK + 10, "llm.json.encode");
  f.up = path;
  f.table = ptr;
  f.index = 0;
  f.key = NULL;
  f.klen = 0;

  if (kind != ENC_ARRAY) {
    /* Walk the keys: classify an unmarked table as the Lua encoder did (its first bad key
     * in pairs order raises), and anchor the string keys for the object. */
    size_t base = e->b->nkeys, nk, i;
    lua_Integer count = 0, maxn = 0, k;
    int nstate = enc_iter_start(L, idx, foreign), anchor = 0, onstack = 0, intable = 0;
    while (enc_iter_next(L, idx, nstate)) {
      count++;
      if (lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        lua_pushvalue(L, -1);
        if (onstack < ENC_KEYS_ON_STACK) {
          lua_insert(L, -(nstate + 1));
          enc_add_key(e, s, len, lua_gettop(L) - nstate);
          onstack++;
        } else {
          if (anchor == 0) {
            lua_newtable(L);
            lua_insert(L, -(nstate + 2));
            anchor = lua_gettop(L) - nstate - 1;
          }
          lua_rawseti(L, anchor, ++intable);
          enc_add_key(e, s, len, -intable);
        }
      } else if (kind == ENC_OBJECT) {
        enc_raise(e, path, " is an object with a non-string key", NULL, -1);
      } else if (enc_is_positive_integer(L, -1, &k)) {
        if (k > maxn) maxn = k;
      } else {
        enc_raise(e, path, " has a key of type ", luaL_typename(L, -1), -1);
      }
    }
    nk = e->b->nkeys - base;
    if (kind == ENC_PLAIN && count != 0 && (lua_Integer)nk != count) {
      if (nk != 0 || maxn != count)
        enc_raise(e, path, " mixes array and object keys or is a sparse array", NULL, 0);
      lua_settop(L, top);
      kind = ENC_ARRAY;
    } else {
      if (nk > 1) {
        struct enc_key *keys = e->b->keys + base;
        if (nk <= 12) {                      /* small objects: an insertion sort */
          for (i = 1; i < nk; i++) {
            struct enc_key x = keys[i];
            size_t j = i;
            while (j > 0 && enc_key_cmp(&keys[j - 1], &x) > 0) {
              keys[j] = keys[j - 1];
              j--;
            }
            keys[j] = x;
          }
        } else {
          qsort(keys, nk, sizeof *keys, enc_key_cmp);
        }
      }
      enc_putc(e, '{');
      for (i = 0; i < nk; i++) {
        struct enc_key key = e->b->keys[base + i];   /* (the list may move while below) */
        if (i > 0) enc_putc(e, ',');
        enc_string(e, key.s, key.len);
        enc_putc(e, ':');
        if (key.slot > 0) lua_pushvalue(L, key.slot);
        else lua_rawgeti(L, anchor, -key.slot);
        if (foreign) lua_gettable(L, idx);
        else lua_rawget(L, idx);
        f.key = key.s;
        f.klen = key.len;
        enc_value(e, lua_gettop(L), &f, depth + 1);
        lua_pop(L, 1);
      }
      enc_putc(e, '}');
      e->b->nkeys = base;
      lua_settop(L, top);
      return;
    }
  }

  {
    lua_Integer len = enc_len(e, idx, foreign), i;
    enc_putc(e, '[');
    for (i = 1; i <= len; i++) {
      if (i > 1) enc_putc(e, ',');
      if (foreign) {
        lua_pushinteger(L, i);
        lua_gettable(L, idx);
      } else {
        lua_rawgeti(L, idx, i);
      }
      f.index = i;
      enc_value(e, lua_gettop(L), &f, depth + 1);
      lua_pop(L, 1);
    }
    enc_putc(e, ']');
  }
}

static void enc_value(struct enc *e, int idx, const struct enc_frame *path, int depth) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    enc_string(e, s, len);
    return;
  }
  case LUA_TNUMBER:
    enc_number(e, idx, path);
    return;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx)) enc_put(e, "true", 4);
    else enc_put(e, "false", 5);
    return;
  case LUA_TNIL:
    enc_put(e, "null", 4);
    return;
  case LUA_TTABLE:
    if (lua_rawequal(L, idx, ENC_NULL)) enc_put(e, "null", 4);
    else enc_table(e, idx, path, depth);
    return;
  default:
    enc_raise(e, path, " cannot encode a ", luaL_typename(L, idx), 0);
  }
}

/* encode(v) -> text: the closure made by json_encoder (upvalues: array_mt, object_mt,
 * null, tostring, the kept buffer or false). Raises on a value JSON cannot express. */
static int json_encode(lua_State *L) {
  struct enc e;
  lua_settop(L, 1);
  lua_pushvalue(L, ENC_CACHE);                        /* 2: the buffer */
  if (lua_type(L, 2) == LUA_TUSERDATA) {
    lua_pushboolean(L, 0);
    lua_replace(L, ENC_CACHE);                        /* taken while this call runs */
  } else {
    lua_pop(L, 1);
    enc_buffer_new(L);
  }
  e.L = L;
  e.b = lua_touserdata(L, 2);
  e.b->n = 0;
  e.b->nkeys = 0;
  enc_value(&e, 1, NULL, 0);
  lua_pushlstring(L, e.b->p, e.b->n);                 /* 3 */
  if (e.b->cap > ENC_KEEP_BYTES || e.b->kcap > ENC_KEEP_KEYS) enc_buffer_release(e.b);
  lua_pushvalue(L, 2);
  lua_replace(L, ENC_CACHE);
  return 1;
}

/* core.json_encoder(array_mt, object_mt, null, tostring, format) -> encode. `format` is
 * string.format, used on LuaJIT only (see enc_format). */
static int json_encoder(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checkany(L, 3);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  luaL_checktype(L, 5, LUA_TFUNCTION);
  lua_settop(L, 5);
  lua_pushboolean(L, 0);                              /* no buffer yet */
  lua_insert(L, 5);                                   /* 5: no buffer yet, 6: format */
  lua_pushcclosure(L, json_encode, 6);
  return 1;
}

/* [-0, +0] with the core module table on top. */
void llm_json_register(lua_State *L) {
  luaL_newmetatable(L, ENC_BUFFER);
  lua_pushcfunction(L, enc_buffer__gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushcfunction(L, json_encoder);
  lua_setfield(L, -2, "json_encoder");
  lua_pushcfunction(L, json_decode);
  lua_setfield(L, -2, "json_decode");
  lua_pushcfunction(L, fast_chat_text);
  lua_setfield(L, -2, "fast_chat_text");
  lua_pushcfunction(L, fast_anthropic_text);
  lua_setfield(L, -2, "fast_anthropic_text");
  lua_pushcfunction(L, fast_responses_text);
  lua_setfield(L, -2, "fast_responses_text");
  lua_pushcfunction(L, fast_ollama_text);
  lua_setfield(L, -2, "fast_ollama_text");
  lua_pushcfunction(L, fast_batch_new);
  lua_setfield(L, -2, "fast_batch");
}
