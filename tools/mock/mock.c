/*
 * llm-mock: a small epoll HTTP/1.1 server whose behaviour lives in Lua.
 *
 * C owns the mechanics: sockets, HTTP request framing, timers, output buffering and
 * back-pressure, connection endings (close, RST, stall) and the counters. For each request
 * it calls the Lua handler once; the handler returns a response plan (see README.md) that C
 * then executes without calling Lua again, so a slow or stalled reply never blocks others.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <time.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#ifndef LLM_MOCK_SCRIPTS_DIR
#define LLM_MOCK_SCRIPTS_DIR "tools/mock/scripts"
#endif
#ifndef LLM_MOCK_FIXTURES_DIR
#define LLM_MOCK_FIXTURES_DIR "../shared/fixtures"
#endif

#define MAX_HEAD (64 * 1024)          /* request line + headers */
#define MAX_BODY (256u * 1024 * 1024) /* request body */
#define MAX_HEADERS 128
#define FRAME_MAX (64 * 1024)         /* coalesce undelayed chunks into frames this big */
#define OUT_HIGH (512 * 1024)         /* stop producing until the socket drains below this */

/* ---------------------------------------------------------------- buffers */

struct buf {
  char *p;
  size_t off, len, cap; /* live bytes are p[off .. len) */
};

static int buf_reserve(struct buf *b, size_t n) {
  if (b->off > 0 && (b->off == b->len || b->len + n > b->cap)) { /* compact before growing */
    memmove(b->p, b->p + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
  }
  if (b->len + n <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + n) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

static int buf_add(struct buf *b, const void *s, size_t n) {
  if (buf_reserve(b, n) != 0) return -1;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  return 0;
}

static int buf_printf(struct buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || buf_reserve(b, (size_t)n + 1) != 0) return -1;
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

static size_t buf_size(const struct buf *b) { return b->len - b->off; }
static void buf_free(struct buf *b) { free(b->p); memset(b, 0, sizeof *b); }

/* ---------------------------------------------------------------- state */

enum { K_LISTEN, K_SIGNAL, K_STDIN, K_CONN };
enum { AFTER_KEEP, AFTER_CLOSE, AFTER_RESET, AFTER_STALL, AFTER_EOF };
enum {
  S_READ,     /* waiting for (the rest of) a request */
  S_HEADERS,  /* plan accepted, status line waits for its timer */
  S_BODY,     /* sending chunks */
  S_FINISH,   /* everything queued; act on `after` once the output drains */
  S_LINGER,   /* RST pending: wait until the kernel has sent everything we wrote */
  S_STALL     /* hold the connection open and say nothing */
};

struct conn {
  int kind; /* K_CONN; first so epoll data can be told apart */
  int fd;
  lua_Integer id;
  struct buf in, out;
  int state;
  uint32_t mask;    /* events registered with epoll */
  int dead;
  struct conn *next_dead;
  /* request framing */
  int sent_100;
  int keepalive;    /* the client allows another request on this connection */
  int counted;      /* this request counts in active/peak */
  int served;       /* requests seen on this connection */
  int control;      /* opened for a /__mock/ request: left out of the connection counters */
  /* plan */
  int chunks_ref, delays_ref;
  lua_Integer nchunks, next;
  size_t piece_off;
  double delay, split_delay, headers_delay;
  int stream, after, split;
  uint64_t rng;
  int linger_polls;
  int processing;   /* inside conn_process: do not re-enter it from conn_pump */
  /* timers */
  double wake_at;
  int heap_idx; /* -1 when not scheduled */
};

static struct {
  int ep, lfd, sfd;
  lua_State *L;
  int handler_ref;
  int quiet;
  struct timespec t0;
  lua_Integer conn_ids, seqs;
  long long connections, open, requests, active, peak;
  struct conn **heap;
  int nheap, capheap;
  struct conn *dead;
} g;

static int listen_kind = K_LISTEN, signal_kind = K_SIGNAL, stdin_kind = K_STDIN;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - g.t0.tv_sec) + (double)(t.tv_nsec - g.t0.tv_nsec) / 1e9;
}

static void logf_(const char *fmt, ...) {
  if (g.quiet) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
}

/* ---------------------------------------------------------------- timer heap */

static int heap_less(int a, int b) { return g.heap[a]->wake_at < g.heap[b]->wake_at; }

static void heap_swap(int a, int b) {
  struct conn *t = g.heap[a];
  g.heap[a] = g.heap[b];
  g.heap[b] = t;
  g.heap[a]->heap_idx = a;
  g.heap[b]->heap_idx = b;
}

static void heap_up(int i) {
  while (i > 0 && heap_less(i, (i - 1) / 2)) { heap_swap(i, (i - 1) / 2); i = (i - 1) / 2; }
}

static void heap_down(int i) {
  for (;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    if (l < g.nheap && heap_less(l, m)) m = l;
    if (r < g.nheap && heap_less(r, m)) m = r;
    if (m == i) return;
    heap_swap(i, m);
    i = m;
  }
}

static void timer_cancel(struct conn *c) {
  int i = c->heap_idx;
  if (i < 0) return;
  g.nheap--;
  if (i != g.nheap) {
    g.heap[i] = g.heap[g.nheap];
    g.heap[i]->heap_idx = i;
    heap_down(i);
    heap_up(i);
  }
  c->heap_idx = -1;
}

static int timer_set(struct conn *c, double delay) {
  timer_cancel(c);
  if (g.nheap == g.capheap) {
    int cap = g.capheap ? g.capheap * 2 : 64;
    struct conn **h = realloc(g.heap, (size_t)cap * sizeof *h);
    if (!h) return -1;
    g.heap = h;
    g.capheap = cap;
  }
  c->wake_at = now() + delay;
  c->heap_idx = g.nheap;
  g.heap[g.nheap++] = c;
  heap_up(c->heap_idx);
  return 0;
}

/* ---------------------------------------------------------------- connections */

static void set_mask(struct conn *c, uint32_t mask) {
  if (c->mask == mask) return;
  struct epoll_event ev = { .events = mask, .data.ptr = c };
  if (epoll_ctl(g.ep, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->mask = mask;
}

static void plan_release(struct conn *c) {
  luaL_unref(g.L, LUA_REGISTRYINDEX, c->chunks_ref);
  luaL_unref(g.L, LUA_REGISTRYINDEX, c->delays_ref);
  c->chunks_ref = c->delays_ref = LUA_NOREF;
  c->nchunks = c->next = 0;
  c->piece_off = 0;
}

static void request_done(struct conn *c) {
  if (c->counted) { g.active--; c->counted = 0; }
}

/* Closes the socket now (with an RST when `reset`) and queues the struct for freeing after
 * the current epoll batch, which may still hold pointers to it. */
static void conn_close(struct conn *c, int reset) {
  if (c->dead) return;
  if (reset) {
    struct linger lg = { 1, 0 }; /* SO_LINGER 0: close() sends RST and drops unsent data */
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  request_done(c);
  timer_cancel(c);
  plan_release(c);
  close(c->fd);
  c->dead = 1;
  if (!c->control) g.open--;
  c->next_dead = g.dead;
  g.dead = c;
}

/* Sends what is buffered. Returns -1 when the connection failed (and was closed). */
static int conn_flush(struct conn *c) {
  while (buf_size(&c->out) > 0) {
    ssize_t n = send(c->fd, c->out.p + c->out.off, buf_size(&c->out), MSG_NOSIGNAL);
    if (n > 0) { c->out.off += (size_t)n; continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      set_mask(c, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
      return 0;
    }
    conn_close(c, 0);
    return -1;
  }
  c->out.off = c->out.len = 0;
  set_mask(c, EPOLLIN | EPOLLRDHUP);
  return 0;
}

/* ---------------------------------------------------------------- HTTP requests */

struct hdr { const char *name, *value; size_t nlen, vlen; };

struct req {
  const char *method, *target, *version;
  size_t mlen, tlen, vlen;
  struct hdr h[MAX_HEADERS];
  int nh;
  size_t head_len;      /* bytes up to and including the blank line */
  int chunked;
  long long clen;       /* -1: none */
  int expect_continue;
  int keepalive;
};

/* Parses the head at p[0..n). Returns 1 with *r filled, 0 if incomplete, -1 if malformed. */
static int parse_head(const char *p, size_t n, struct req *r) {
  const char *end = memmem(p, n, "\r\n\r\n", 4);
  if (!end) return n > MAX_HEAD ? -1 : 0;
  memset(r, 0, sizeof *r);
  r->head_len = (size_t)(end - p) + 4;
  r->clen = -1;
  const char *line = p, *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
  const char *sp1 = memchr(line, ' ', (size_t)(eol - line));
  if (!sp1) return -1;
  const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
  if (!sp2) return -1;
  r->method = line; r->mlen = (size_t)(sp1 - line);
  r->target = sp1 + 1; r->tlen = (size_t)(sp2 - sp1 - 1);
  r->version = sp2 + 1; r->vlen = (size_t)(eol - sp2 - 1);
  if (r->vlen != 8 || memcmp(r->version, "HTTP/1.", 7) != 0) return -1;
  r->keepalive = r->version[7] == '1';
  for (line = eol + 2; line < end + 2; line = eol + 2) {
    eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
    const char *colon = memchr(line, ':', (size_t)(eol - line));
    if (!colon || r->nh == MAX_HEADERS) return -1;
    struct hdr *h = &r->h[r->nh++];
    h->name = line; h->nlen = (size_t)(colon - line);
    const char *v = colon + 1, *ve = eol;
    while (v < ve && (*v == ' ' || *v == '\t')) v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    h->value = v; h->vlen = (size_t)(ve - v);
#define IS(s) (h->nlen == sizeof(s) - 1 && strncasecmp(h->name, s, h->nlen) == 0)
    if (IS("content-length")) {
      char tmp[32];
      if (h->vlen == 0 || h->vlen >= sizeof tmp) return -1;
      memcpy(tmp, v, h->vlen); tmp[h->vlen] = 0;
      char *e; r->clen = strtoll(tmp, &e, 10);
      if (*e || r->clen < 0) return -1;
    } else if (IS("transfer-encoding")) {
      r->chunked = h->vlen >= 7 && strncasecmp(ve - 7, "chunked", 7) == 0;
    } else if (IS("expect")) {
      r->expect_continue = h->vlen == 12 && strncasecmp(v, "100-continue", 12) == 0;
    } else if (IS("connection")) {
      if (memmem(v, h->vlen, "close", 5)) r->keepalive = 0;
      else if (strncasecmp(v, "keep-alive", 10) == 0) r->keepalive = 1;
    }
#undef IS
  }
  return 1;
}

/* Decodes a chunked body at p[0..n) into out. Returns 1 complete (with *used = bytes taken
 * including trailers), 0 incomplete, -1 malformed. Restarted from the top on every read,
 * which is fine for request bodies of the sizes clients send. */
static int dechunk(const char *p, size_t n, struct buf *out, size_t *used) {
  size_t i = 0;
  out->off = out->len = 0;
  for (;;) {
    const char *eol = memmem(p + i, n - i, "\r\n", 2);
    if (!eol) return 0;
    char *e;
    unsigned long long sz = strtoull(p + i, &e, 16);
    if (e == p + i) return -1;
    i = (size_t)(eol - p) + 2;
    if (sz == 0) {
      for (;;) { /* trailers end with an empty line */
        eol = memmem(p + i, n - i, "\r\n", 2);
        if (!eol) return 0;
        size_t l = (size_t)(eol - (p + i));
        i += l + 2;
        if (l == 0) { *used = i; return 1; }
      }
    }
    if (sz > MAX_BODY) return -1;
    if (n - i < sz + 2) return 0;
    if (buf_add(out, p + i, (size_t)sz) != 0) return -1;
    i += (size_t)sz + 2;
  }
}

/* ---------------------------------------------------------------- Lua side */

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

static int core_stats(lua_State *L) {
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, g.connections); lua_setfield(L, -2, "connections");
  lua_pushinteger(L, g.open); lua_setfield(L, -2, "open_connections");
  lua_pushinteger(L, g.requests); lua_setfield(L, -2, "requests");
  lua_pushinteger(L, g.active); lua_setfield(L, -2, "active");
  lua_pushinteger(L, g.peak); lua_setfield(L, -2, "peak_active");
  return 1;
}

/* Live gauges (open connections, active requests) survive a reset; the peak restarts from
 * what is active now, so a test sees only its own concurrency. */
static int core_reset(lua_State *L) {
  (void)L;
  g.connections = 0;
  g.requests = 0;
  g.peak = g.active;
  return 0;
}

static int core_now(lua_State *L) { lua_pushnumber(L, now()); return 1; }

static int core_log(lua_State *L) {
  if (!g.quiet) fprintf(stderr, "llm-mock: %s\n", luaL_checkstring(L, 1));
  return 0;
}

/* Builds the request table for the handler. [-0, +1] */
static void push_request(lua_State *L, struct conn *c, const struct req *r, const char *body,
                         size_t blen) {
  lua_createtable(L, 0, 9);
  lua_pushlstring(L, r->method, r->mlen); lua_setfield(L, -2, "method");
  const char *q = memchr(r->target, '?', r->tlen);
  size_t plen = q ? (size_t)(q - r->target) : r->tlen;
  lua_pushlstring(L, r->target, plen); lua_setfield(L, -2, "path");
  if (q) lua_pushlstring(L, q + 1, r->tlen - plen - 1); else lua_pushliteral(L, "");
  lua_setfield(L, -2, "query");
  lua_createtable(L, 0, r->nh);
  for (int i = 0; i < r->nh; i++) {
    char name[256];
    size_t nl = r->h[i].nlen < sizeof name ? r->h[i].nlen : sizeof name - 1;
    for (size_t k = 0; k < nl; k++) name[k] = (char)(r->h[i].name[k] | ((r->h[i].name[k] >= 'A' && r->h[i].name[k] <= 'Z') ? 0x20 : 0));
    lua_pushlstring(L, name, nl);                  /* headers name */
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);                              /* headers name old */
    if (lua_isstring(L, -1)) {                      /* repeated header: join as RFC 9110 allows */
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, r->h[i].value, r->h[i].vlen);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, r->h[i].value, r->h[i].vlen);
    }
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, body, blen); lua_setfield(L, -2, "body");
  lua_pushinteger(L, c->id); lua_setfield(L, -2, "conn");
  lua_pushinteger(L, ++g.seqs); lua_setfield(L, -2, "seq");
  lua_pushnumber(L, now()); lua_setfield(L, -2, "t");
}

static const char *reason_for(int status) {
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 402: return "Payment Required";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 408: return "Request Timeout";
  case 413: return "Payload Too Large";
  case 422: return "Unprocessable Entity";
  case 429: return "Too Many Requests";
  case 500: return "Internal Server Error";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 529: return "Site Overloaded";
  default: return "Status";
  }
}

static void conn_pump(struct conn *c);
static void write_head(struct conn *c);


/* Reads the plan at the stack top into c and starts executing it. [-1, +0] */
static void start_plan(struct conn *c, int keepalive) {
  lua_State *L = g.L;
  int plan = lua_gettop(L);
  if (!lua_istable(L, plan)) { /* the handler gave nothing usable */
    lua_pop(L, 1);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, 500); lua_setfield(L, -2, "status");
    lua_pushliteral(L, "llm-mock: handler returned no plan\n"); lua_setfield(L, -2, "body");
  }
  const char *after = (lua_getfield(L, plan, "after"), lua_tostring(L, -1));
  c->after = !after ? AFTER_KEEP
           : strcmp(after, "close") == 0 ? AFTER_CLOSE
           : strcmp(after, "reset") == 0 ? AFTER_RESET
           : strcmp(after, "stall") == 0 ? AFTER_STALL
           : strcmp(after, "eof") == 0 ? AFTER_EOF : AFTER_KEEP;
  lua_pop(L, 1);
  if (c->after == AFTER_KEEP && !keepalive) c->after = AFTER_CLOSE;
  c->stream = (lua_getfield(L, plan, "stream"), lua_toboolean(L, -1)); lua_pop(L, 1);
  c->delay = (lua_getfield(L, plan, "delay"), lua_tonumber(L, -1)); lua_pop(L, 1);
  c->headers_delay = (lua_getfield(L, plan, "headers_delay"), lua_tonumber(L, -1)); lua_pop(L, 1);
  c->split_delay = (lua_getfield(L, plan, "split_delay"), lua_tonumber(L, -1)); lua_pop(L, 1);
  const char *split = (lua_getfield(L, plan, "split"), lua_tostring(L, -1));
  c->split = split && strcmp(split, "random") == 0;
  lua_pop(L, 1);
  lua_getfield(L, plan, "seed");
  c->rng = lua_isinteger(L, -1) ? (uint64_t)lua_tointeger(L, -1) : (uint64_t)c->id * 7919u + (uint64_t)g.seqs;
  c->rng = c->rng * 0x9E3779B97F4A7C15ull + 1; /* never zero for xorshift */
  lua_pop(L, 1);
  /* chunks: `chunks` table, or `body` string as a single chunk */
  if (lua_getfield(L, plan, "chunks") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 1, 0);
    if (lua_getfield(L, plan, "body") == LUA_TSTRING) lua_rawseti(L, -2, 1);
    else lua_pop(L, 1);
  }
  c->nchunks = (lua_Integer)lua_rawlen(L, -1);
  c->chunks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (lua_getfield(L, plan, "delays") == LUA_TTABLE) c->delays_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else lua_pop(L, 1);
  c->next = 1;
  c->piece_off = 0;

  int stall = (lua_getfield(L, plan, "stall_before_headers"), lua_toboolean(L, -1));
  lua_pop(L, 1);
  if (stall) {
    lua_pop(L, 1);
    c->state = S_STALL; /* never answer; stays active until the client gives up */
    return;
  }
  int reset_now = (lua_getfield(L, plan, "reset_before_headers"), lua_toboolean(L, -1));
  lua_pop(L, 1);
  if (reset_now) {
    lua_pop(L, 1);
    conn_close(c, 1); /* an RST instead of a status line */
    return;
  }
  /* Format the head now, while the plan is on the stack; it is written when due. */
  struct buf *o = &c->out;
  size_t mark = o->len;
  int status = (lua_getfield(L, plan, "status"), lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 200);
  lua_pop(L, 1);
  const char *reason = (lua_getfield(L, plan, "reason"), lua_tostring(L, -1));
  buf_printf(o, "HTTP/1.1 %d %s\r\n", status, reason ? reason : reason_for(status));
  lua_pop(L, 1);
  if (lua_getfield(L, plan, "headers") == LUA_TTABLE) {
    lua_Integer nh = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= nh; i++) {
      lua_rawgeti(L, -1, i);
      if (lua_istable(L, -1)) {
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        size_t nl, vl;
        const char *n = lua_tolstring(L, -2, &nl), *v = lua_tolstring(L, -1, &vl);
        if (n && v) {
          buf_add(o, n, nl); buf_add(o, ": ", 2); buf_add(o, v, vl); buf_add(o, "\r\n", 2);
        }
        lua_pop(L, 2);
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  if (c->stream) {
    buf_printf(o, "Transfer-Encoding: chunked\r\n");
  } else {
    long long total = 0;
    if (lua_getfield(L, plan, "content_length") == LUA_TNUMBER) {
      total = (long long)lua_tointeger(L, -1); /* deliberately larger than what is sent */
    } else {
      lua_rawgeti(L, LUA_REGISTRYINDEX, c->chunks_ref);
      for (lua_Integer i = 1; i <= c->nchunks; i++) {
        lua_rawgeti(L, -1, i);
        total += (long long)lua_rawlen(L, -1);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    buf_printf(o, "Content-Length: %lld\r\n", total);
  }
  if (c->after == AFTER_CLOSE) buf_printf(o, "Connection: close\r\n");
  buf_add(o, "\r\n", 2);
  lua_pop(L, 1); /* plan */
  if (c->headers_delay > 0) {
    /* Keep the formatted head aside until the timer fires. */
    size_t hl = o->len - mark;
    lua_pushlstring(L, o->p + mark, hl);
    o->len = mark;
    lua_rawsetp(L, LUA_REGISTRYINDEX, c);
    c->state = S_HEADERS;
    timer_set(c, c->headers_delay);
    return;
  }
  c->state = S_BODY;
  conn_pump(c);
}

static void write_head(struct conn *c) {
  lua_State *L = g.L;
  lua_rawgetp(L, LUA_REGISTRYINDEX, c);
  size_t hl;
  const char *h = lua_tolstring(L, -1, &hl);
  if (h) buf_add(&c->out, h, hl);
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, c);
}

static uint64_t rng_next(struct conn *c) {
  uint64_t x = c->rng;
  x ^= x << 13; x ^= x >> 7; x ^= x << 17;
  return c->rng = x;
}

/* Delay before chunk i (1-based): delays[i] if given, else `delay` for every chunk but the first. */
static double delay_before(struct conn *c, lua_Integer i) {
  if (c->delays_ref != LUA_NOREF) {
    lua_rawgeti(g.L, LUA_REGISTRYINDEX, c->delays_ref);
    lua_rawgeti(g.L, -1, i);
    double d = lua_tonumber(g.L, -1);
    lua_pop(g.L, 2);
    return d;
  }
  return i > 1 ? c->delay : 0;
}

static void frame_add(struct conn *c, const char *s, size_t n) {
  if (c->stream) {
    buf_printf(&c->out, "%zx\r\n", n);
    buf_add(&c->out, s, n);
    buf_add(&c->out, "\r\n", 2);
  } else {
    buf_add(&c->out, s, n);
  }
}

/* Ends the response according to `after`, once the output has drained. */
static void conn_after(struct conn *c) {
  switch (c->after) {
  case AFTER_KEEP:
    request_done(c);
    plan_release(c);
    c->state = S_READ;
    break;
  case AFTER_CLOSE:
  case AFTER_EOF:   /* a FIN without the last-chunk marker: a truncated chunked body */
    conn_close(c, 0);
    break;
  case AFTER_RESET: {
    /* RST discards whatever the kernel has not sent yet, so wait until the send queue is
     * empty; on loopback that takes at most a few polls. */
    int outq = 0;
    if (ioctl(c->fd, SIOCOUTQ, &outq) == 0 && outq > 0 && c->linger_polls++ < 1000) {
      c->state = S_LINGER;
      timer_set(c, 0.001);
      return;
    }
    conn_close(c, 1);
    break;
  }
  case AFTER_STALL:
    plan_release(c);
    c->state = S_STALL; /* still active: the client is waiting for the rest */
    break;
  }
}

static void conn_process(struct conn *c);

/* Produces output for the current plan until it is done, a timer is due, or the socket
 * pushes back. Undelayed chunks are coalesced so a long stream costs few syscalls. */
static void conn_pump(struct conn *c) {
  lua_State *L = g.L;
  while (!c->dead && c->state == S_BODY) {
    if (buf_size(&c->out) >= OUT_HIGH) {
      if (conn_flush(c) != 0) return;
      if (buf_size(&c->out) > 0) return; /* EPOLLOUT resumes us */
    }
    if (c->next > c->nchunks) {
      /* Only a clean ending gets the last-chunk marker; a reset or stall must look cut off. */
      if (c->stream && (c->after == AFTER_KEEP || c->after == AFTER_CLOSE))
        buf_add(&c->out, "0\r\n\r\n", 5);
      c->state = S_FINISH;
      break;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->chunks_ref);
    if (c->split) {
      lua_rawgeti(L, -1, c->next);
      size_t n;
      const char *s = lua_tolstring(L, -1, &n);
      if (!s) n = 0;
      size_t want = 1 + (size_t)(rng_next(c) % 64);
      if (want > n - c->piece_off) want = n - c->piece_off;
      if (want > 0) frame_add(c, s + c->piece_off, want);
      c->piece_off += want;
      lua_pop(L, 2);
      if (c->piece_off >= n) { c->next++; c->piece_off = 0; }
      if (conn_flush(c) != 0) return; /* each piece is its own send() */
      double d = c->next <= c->nchunks && c->piece_off == 0 ? delay_before(c, c->next) : 0;
      if (d <= 0) d = c->split_delay;
      if (d > 0 && c->next <= c->nchunks) { timer_set(c, d); return; }
      continue;
    }
    /* Gather undelayed chunks into one frame. */
    size_t total = 0;
    lua_Integer first = c->next, last = c->next;
    for (;;) {
      lua_rawgeti(L, -1, last);
      total += lua_rawlen(L, -1);
      lua_pop(L, 1);
      if (last + 1 > c->nchunks || total >= FRAME_MAX || delay_before(c, last + 1) > 0) break;
      last++;
    }
    if (c->stream && total > 0) buf_printf(&c->out, "%zx\r\n", total);
    for (lua_Integer i = first; i <= last; i++) {
      lua_rawgeti(L, -1, i);
      size_t n;
      const char *s = lua_tolstring(L, -1, &n);
      if (s && n) buf_add(&c->out, s, n);
      lua_pop(L, 1);
    }
    if (c->stream && total > 0) buf_add(&c->out, "\r\n", 2);
    lua_pop(L, 1);
    c->next = last + 1;
    if (c->next <= c->nchunks) {
      double d = delay_before(c, c->next);
      if (d > 0) {
        if (conn_flush(c) != 0) return;
        timer_set(c, d);
        return;
      }
    }
  }
  if (c->dead) return;
  if (conn_flush(c) != 0) return;
  if (c->state == S_FINISH && buf_size(&c->out) == 0) {
    conn_after(c);
    if (!c->dead && !c->processing && c->state == S_READ && buf_size(&c->in) > 0)
      conn_process(c); /* a pipelined request was waiting behind this response */
  }
}

/* Runs the Lua handler for one complete request. */
static void dispatch(struct conn *c, const struct req *r, const char *body, size_t blen) {
  lua_State *L = g.L;
  int control = r->tlen >= 8 && memcmp(r->target, "/__mock/", 8) == 0;
  if (control && c->served == 0 && !c->control) {
    /* A connection that starts with a control request belongs to the test harness, not to
     * the client under test: keep it out of `connections` and `open_connections`. */
    c->control = 1;
    g.connections--;
    g.open--;
  }
  c->served++;
  if (!control) {
    g.requests++;
    g.active++;
    if (g.active > g.peak) g.peak = g.active;
    c->counted = 1;
  }
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g.handler_ref);
  push_request(L, c, r, body, blen);
  if (lua_pcall(L, 1, 1, -3) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "llm-mock: handler error: %s\n", msg ? msg : "?");
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, 500); lua_setfield(L, -2, "status");
    lua_pushfstring(L, "llm-mock handler error: %s\n", msg ? msg : "?");
    lua_setfield(L, -2, "body");
    lua_remove(L, -2);
  }
  lua_remove(L, -2); /* traceback function */
  if (!control && !g.quiet && lua_istable(L, -1)) {
    lua_getfield(L, -1, "status");
    logf_("llm-mock: %.*s %.*s -> %d\n", (int)r->mlen, r->method, (int)r->tlen, r->target,
          lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 200);
    lua_pop(L, 1);
  }
  start_plan(c, r->keepalive);
}

/* Parses and dispatches buffered requests while the connection is idle. */
static void conn_process_loop(struct conn *c);
static void conn_process(struct conn *c) {
  c->processing = 1;
  conn_process_loop(c);
  c->processing = 0; /* c is freed only after the epoll batch, so this write is safe */
}

static void conn_process_loop(struct conn *c) {
  while (!c->dead && c->state == S_READ && buf_size(&c->in) > 0) {
    const char *p = c->in.p + c->in.off;
    size_t n = buf_size(&c->in);
    struct req r;
    int rc = parse_head(p, n, &r);
    if (rc == 0) return;
    if (rc < 0) {
      buf_printf(&c->out, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      c->after = AFTER_CLOSE;
      c->state = S_FINISH;
      conn_pump(c);
      return;
    }
    const char *body = p + r.head_len;
    size_t avail = n - r.head_len, blen = 0, used = 0;
    struct buf tmp = { 0 };
    int complete;
    if (r.chunked) {
      int d = dechunk(body, avail, &tmp, &used);
      if (d < 0) { buf_free(&tmp); conn_close(c, 0); return; }
      complete = d == 1;
      body = tmp.p ? tmp.p : "";
      blen = tmp.len;
    } else {
      long long cl = r.clen < 0 ? 0 : r.clen;
      if (cl > (long long)MAX_BODY) { conn_close(c, 0); return; }
      complete = (long long)avail >= cl;
      blen = used = (size_t)cl;
    }
    if (!complete) {
      buf_free(&tmp);
      if (r.expect_continue && !c->sent_100) {
        c->sent_100 = 1; /* curl waits up to a second for this before sending the body */
        buf_printf(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
        conn_flush(c);
      }
      return;
    }
    c->sent_100 = 0;
    c->in.off += r.head_len + used; /* the request's bytes are consumed before Lua runs, */
    dispatch(c, &r, body, blen);    /* but `body` points into c->in, still untouched */
    buf_free(&tmp);
  }
}

static void conn_read(struct conn *c) {
  for (;;) {
    if (buf_reserve(&c->in, 64 * 1024) != 0) { conn_close(c, 0); return; }
    ssize_t n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
    if (n > 0) {
      c->in.len += (size_t)n;
      if (c->state == S_STALL) c->in.off = c->in.len = 0; /* nobody will answer; drop it */
      if (buf_size(&c->in) > MAX_HEAD + (size_t)MAX_BODY) { conn_close(c, 0); return; }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    conn_close(c, 0); /* EOF or error: the client is gone */
    return;
  }
  conn_process(c);
}

static void conn_timer(struct conn *c) {
  switch (c->state) {
  case S_HEADERS:
    write_head(c);
    c->state = S_BODY;
    conn_pump(c);
    break;
  case S_BODY:
    conn_pump(c);
    break;
  case S_LINGER:
    conn_after(c);
    break;
  default:
    break;
  }
}

static void do_accept(void) {
  for (;;) {
    int fd = accept4(g.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) logf_("llm-mock: accept: %s\n", strerror(errno));
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* events go out as written */
    struct conn *c = calloc(1, sizeof *c);
    if (!c) { close(fd); continue; }
    c->kind = K_CONN;
    c->fd = fd;
    c->id = ++g.conn_ids;
    c->heap_idx = -1;
    c->chunks_ref = c->delays_ref = LUA_NOREF;
    c->state = S_READ;
    c->mask = EPOLLIN | EPOLLRDHUP;
    struct epoll_event ev = { .events = c->mask, .data.ptr = c };
    if (epoll_ctl(g.ep, EPOLL_CTL_ADD, fd, &ev) != 0) { close(fd); free(c); continue; }
    g.connections++;
    g.open++;
  }
}

static void free_dead(void) {
  while (g.dead) {
    struct conn *c = g.dead;
    g.dead = c->next_dead;
    lua_pushnil(g.L);
    lua_rawsetp(g.L, LUA_REGISTRYINDEX, c); /* a pending delayed head */
    buf_free(&c->in);
    buf_free(&c->out);
    free(c);
  }
}

/* ---------------------------------------------------------------- start-up */

static int load_handler(const char *scripts, const char *fixtures) {
  lua_State *L = g.L;
  luaL_openlibs(L);
  /* Scripts find each other through package.path. */
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", scripts, scripts);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "loaded");
  static const luaL_Reg fns[] = {
    { "stats", core_stats }, { "reset", core_reset }, { "now", core_now }, { "log", core_log },
    { NULL, NULL }
  };
  luaL_newlib(L, fns);
  lua_pushstring(L, scripts); lua_setfield(L, -2, "scripts");
  lua_pushstring(L, fixtures); lua_setfield(L, -2, "fixtures");
  lua_pushboolean(L, g.quiet); lua_setfield(L, -2, "quiet");
  lua_setfield(L, -2, "mock.core");
  lua_pop(L, 2);

  lua_pushcfunction(L, traceback);
  lua_pushfstring(L, "%s/main.lua", scripts);
  const char *path = lua_tostring(L, -1);
  if (luaL_loadfile(L, path) != LUA_OK || lua_pcall(L, 0, 1, -3) != LUA_OK) {
    fprintf(stderr, "llm-mock: cannot load %s\n", lua_tostring(L, -1));
    return -1;
  }
  if (!lua_isfunction(L, -1)) {
    fprintf(stderr, "llm-mock: %s must return the handler function\n", path);
    return -1;
  }
  g.handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 2);
  return 0;
}

static int write_port_file(const char *file, int port) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", file, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) return -1;
  fprintf(f, "%d\n", port);
  if (fclose(f) != 0) return -1;
  return rename(tmp, file); /* readers never see a half-written file */
}

static void usage(FILE *to) {
  fprintf(to,
          "usage: llm-mock [--host 127.0.0.1] [--port N] [--port-file F] [--fixtures DIR]\n"
          "                [--scripts DIR] [--quiet] [--watch-stdin]\n");
}

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The default scripts folder: the source tree's when it exists (a build tree), else
 * `mock-scripts` next to the executable (an installed rock, which may have been built in a
 * folder that is gone). Returns a static string. */
static const char *default_scripts(void) {
  static char path[PATH_MAX];
  if (is_dir(LLM_MOCK_SCRIPTS_DIR)) return LLM_MOCK_SCRIPTS_DIR;
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 16);
  if (n <= 0) return LLM_MOCK_SCRIPTS_DIR;
  path[n] = '\0';
  char *slash = strrchr(path, '/');
  if (!slash) return LLM_MOCK_SCRIPTS_DIR;
  strcpy(slash + 1, "mock-scripts");
  return is_dir(path) ? path : LLM_MOCK_SCRIPTS_DIR;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *port_file = NULL, *scripts = NULL;
  int watch_stdin = 0;
  const char *fixtures = getenv("LLM_FIXTURES");
  int port = 0;
  if (!fixtures || !*fixtures) fixtures = LLM_MOCK_FIXTURES_DIR;
  static const struct option opts[] = {
    { "host", required_argument, 0, 'h' }, { "port", required_argument, 0, 'p' },
    { "port-file", required_argument, 0, 'f' }, { "fixtures", required_argument, 0, 'x' },
    { "scripts", required_argument, 0, 's' }, { "quiet", no_argument, 0, 'q' },
    { "watch-stdin", no_argument, 0, 'w' }, { "help", no_argument, 0, 'H' }, { 0, 0, 0, 0 }
  };
  for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
    switch (o) {
    case 'h': host = optarg; break;
    case 'p': port = atoi(optarg); break;
    case 'f': port_file = optarg; break;
    case 'x': fixtures = optarg; break;
    case 's': scripts = optarg; break;
    case 'q': g.quiet = 1; break;
    case 'w': watch_stdin = 1; break;
    case 'H': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (!scripts) scripts = default_scripts();
  if (watch_stdin) {
    /* Started by llm.mock with a pipe on stdin: end of file means the starting process
     * closed it (m:stop()) or died, and the server must not outlive it. The parent-death
     * signal covers a parent that dies before the pipe is watched. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
  }
  clock_gettime(CLOCK_MONOTONIC, &g.t0);
  signal(SIGPIPE, SIG_IGN); /* a vanished client must not kill the server */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max; /* benchmarks hold 1,000+ connections */
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  g.L = luaL_newstate();
  if (!g.L || load_handler(scripts, fixtures) != 0) return 1;

  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "llm-mock: bad --host %s (IPv4 address expected)\n", host);
    return 2;
  }
  g.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(g.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (g.lfd < 0 || bind(g.lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(g.lfd, 4096) != 0) {
    fprintf(stderr, "llm-mock: cannot listen on %s:%d: %s\n", host, port, strerror(errno));
    return 1;
  }
  socklen_t sl = sizeof sa;
  getsockname(g.lfd, (struct sockaddr *)&sa, &sl);
  port = ntohs(sa.sin_port);

  sigset_t ss;
  sigemptyset(&ss);
  sigaddset(&ss, SIGTERM);
  sigaddset(&ss, SIGINT);
  sigprocmask(SIG_BLOCK, &ss, NULL); /* delivered through signalfd, so shutdown is orderly */
  g.sfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
  g.ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &listen_kind };
  epoll_ctl(g.ep, EPOLL_CTL_ADD, g.lfd, &ev);
  ev.data.ptr = &signal_kind;
  epoll_ctl(g.ep, EPOLL_CTL_ADD, g.sfd, &ev);
  if (watch_stdin) {
    ev.data.ptr = &stdin_kind;
    if (epoll_ctl(g.ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev) != 0) {
      fprintf(stderr, "llm-mock: --watch-stdin needs a pipe or socket on stdin\n");
      return 2;
    }
  }

  if (port_file && write_port_file(port_file, port) != 0) {
    fprintf(stderr, "llm-mock: cannot write %s: %s\n", port_file, strerror(errno));
    return 1;
  }
  printf("llm-mock listening on %s:%d\n", host, port);
  fflush(stdout);

  struct epoll_event evs[256];
  for (int running = 1; running;) {
    int timeout = -1;
    if (g.nheap > 0) {
      double d = g.heap[0]->wake_at - now();
      timeout = d <= 0 ? 0 : (int)ceil(d * 1000.0);
    }
    int n = epoll_wait(g.ep, evs, 256, timeout);
    if (n < 0 && errno != EINTR) { perror("epoll_wait"); break; }
    for (int i = 0; i < n; i++) {
      int kind = *(int *)evs[i].data.ptr;
      if (kind == K_LISTEN) { do_accept(); continue; }
      if (kind == K_SIGNAL) { running = 0; continue; }
      if (kind == K_STDIN) {
        char sink[256];
        ssize_t r = read(STDIN_FILENO, sink, sizeof sink);   /* bytes are ignored */
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) running = 0;
        continue;
      }
      struct conn *c = evs[i].data.ptr;
      if (c->dead) continue;
      if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) conn_read(c);
      if (!c->dead && (evs[i].events & EPOLLOUT)) {
        if (conn_flush(c) == 0 && buf_size(&c->out) == 0) {
          if (c->state == S_BODY || c->state == S_FINISH) conn_pump(c);
        }
      }
    }
    double t = now();
    while (g.nheap > 0 && g.heap[0]->wake_at <= t) {
      struct conn *c = g.heap[0];
      timer_cancel(c);
      conn_timer(c);
    }
    free_dead();
  }
  if (port_file) unlink(port_file);
  lua_close(g.L);
  return 0;
}
