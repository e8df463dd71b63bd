/* base64 for media parts: core.base64_encode(s) and core.base64_decode(s). Files attached
 * to a request are encoded once, here, rather than byte by byte in Lua. Both work in a
 * luaL_Buffer, so an out-of-memory raise leaves nothing of ours to free. */
#include "internal.h"

static const char b64_alphabet[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* core.base64_encode(s) -> the standard (RFC 4648 §4) padded encoding of s. [-0, +1] */
static int base64_encode(lua_State *L) {
  size_t n, i;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  char *out, *o;
  size_t outlen;
  if (n > ((size_t)-1 / 4) * 3 - 3) return luaL_error(L, "base64: input too large");
  outlen = (n + 2) / 3 * 4;
  out = luaL_buffinitsize(L, &b, outlen);
  o = out;
  for (i = 0; i + 2 < n; i += 3) {
    unsigned v = ((unsigned)s[i] << 16) | ((unsigned)s[i + 1] << 8) | s[i + 2];
    *o++ = b64_alphabet[(v >> 18) & 63];
    *o++ = b64_alphabet[(v >> 12) & 63];
    *o++ = b64_alphabet[(v >> 6) & 63];
    *o++ = b64_alphabet[v & 63];
  }
  if (i < n) {
    unsigned v = (unsigned)s[i] << 16;
    if (i + 1 < n) v |= (unsigned)s[i + 1] << 8;
    *o++ = b64_alphabet[(v >> 18) & 63];
    *o++ = b64_alphabet[(v >> 12) & 63];
    *o++ = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  luaL_pushresultsize(&b, (size_t)(o - out));
  return 1;
}

/* The value of a base64 character, or -1. */
static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;   /* '-' and '_': the URL-safe alphabet */
  if (c == '/' || c == '_') return 63;
  return -1;
}

/* core.base64_decode(s) -> the bytes, or nil, message when s is not base64. Whitespace is
 * skipped; padding is optional. [-0, +1|2] */
static int base64_decode(lua_State *L) {
  size_t n, i;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  char *out, *o;
  unsigned acc = 0;
  int bits = 0, pad = 0;
  out = luaL_buffinitsize(L, &b, n / 4 * 3 + 3);
  o = out;
  for (i = 0; i < n; i++) {
    unsigned char c = s[i];
    int v;
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') { pad++; continue; }
    v = b64_value(c);
    if (v < 0 || pad) {
      luaL_pushresultsize(&b, 0);
      lua_pop(L, 1);
      lua_pushnil(L);
      lua_pushfstring(L, "not base64: unexpected byte at offset %d", (int)i);
      return 2;
    }
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      *o++ = (char)((acc >> bits) & 0xFF);
    }
  }
  if (bits >= 6 || pad > 2) {   /* a lone sixth bit group cannot end a byte */
    luaL_pushresultsize(&b, 0);
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_pushliteral(L, "not base64: truncated input");
    return 2;
  }
  luaL_pushresultsize(&b, (size_t)(o - out));
  return 1;
}

void llm_base64_register(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"base64_encode", base64_encode}, {"base64_decode", base64_decode}, {NULL, NULL}
  };
  luaL_setfuncs(L, fns, 0);
}
