/* One HTTP transfer: a libcurl easy handle with its request, response buffers, stream
 * framer and deadlines. The write and header callbacks only fill C buffers (STYLE §3);
 * the loop's step turns what they gathered into Lua records. */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "internal.h"

enum state { ST_IDLE, ST_WAITING, ST_RUNNING, ST_DONE, ST_CLOSED };
enum framing { FR_NONE, FR_SSE, FR_NDJSON };
/* Failures decided by us rather than by libcurl. */
enum fail { F_NONE, F_CANCELLED, F_T_HEADERS, F_T_FIRST, F_T_IDLE, F_TOOBIG, F_NOMEM, F_BODY,
            F_HEADERS };

/* A drained queue keeps its buffer up to this size; a larger one (a burst) is freed. */
#define QUEUE_KEEP (4u << 10)

struct transfer {
  struct loop *loop;                /* NULL once the loop is closed */
  struct transfer *next, *prev;     /* the loop's list */
  struct transfer *dirty_next;
  int dirty;
  size_t heap_index;                /* its deadline's slot in the loop's timer heap; SIZE_MAX: none */
  CURL *easy;                       /* NULL once closed */
  struct curl_slist *headers;       /* owned until curl_easy_cleanup */
  char errbuf[CURL_ERROR_SIZE];
  lua_Integer id;
  enum state state;
  enum framing framing;
  int framing_on;                   /* framing applies to this response (2xx) */
  int attached;                     /* in the multi handle */
  int paused;                       /* paused by Lua (t:pause) */
  int held;                         /* paused by the write callback until step drains the queue */
  int tls;                          /* https: may speak HTTP/2 */
  long buffer_size;                 /* the receive buffer asked of libcurl for this attempt */
  size_t max_chunk;                 /* the most bytes one write callback brought */
  enum fail fail;
  CURLcode result;
  long status;
  int headers_ready, headers_reported, done_reported;
  double timeout, idle_timeout, first_token_timeout, connect_timeout;
  double t_start, t_last_content, restart_at;
  int got_content;                  /* Lua has reported a content event (t:content()) */
  struct sse sse;
  struct sse_queue queue;
  size_t qpos;                      /* where the queue's unreported events begin */
  size_t qcounted;                  /* the queue's bytes as counted in loop->queued */
  struct buf body, hdrs, debug;
  size_t max_body;
  int verbose;
};

static struct transfer *checktransfer(lua_State *L, int i) {
  struct transfer *t = luaL_checkudata(L, i, LLM_TRANSFER);
  if (t->state == ST_CLOSED) luaL_error(L, "attempt to use a closed transfer");
  return t;
}

struct transfer *llm_transfer_next(struct transfer *t) { return t->next; }
lua_Integer llm_transfer_id(struct transfer *t) { return t->id; }
size_t llm_transfer_pending(struct transfer *t) { return t->queue.count; }
size_t *llm_transfer_heap_index(struct transfer *t) { return &t->heap_index; }

/* Queue t for the next report, after those already waiting (a step bounded by its budget
 * reports the oldest first). Outside a step, the loop's descriptor is signalled. */
void llm_transfer_mark_dirty(struct transfer *t) {
  struct loop *lp = t->loop;
  if (t->dirty || lp == NULL) return;
  t->dirty = 1;
  t->dirty_next = NULL;
  if (lp->dirty_tail) lp->dirty_tail->dirty_next = t; else lp->dirty = t;
  lp->dirty_tail = t;
  if (!lp->in_step) llm_loop_signal(lp);
}

static void unlink_dirty(struct transfer *t) {
  struct transfer **pp, *prev = NULL;
  if (!t->dirty || t->loop == NULL) return;
  for (pp = &t->loop->dirty; *pp != NULL; prev = *pp, pp = &(*pp)->dirty_next) {
    if (*pp == t) {
      *pp = t->dirty_next;
      if (t->loop->dirty_tail == t) t->loop->dirty_tail = prev;
      break;
    }
  }
  t->dirty = 0;
  t->dirty_next = NULL;
}

/* Keep t's entry in the timer heap at its nearest deadline. A deadline that moved later is
 * left in place unless `exact` (the entry fires early, finds nothing due and re-arms:
 * an idle clock reset by every content event costs nothing); one that moved earlier, or
 * a restart time, is put in place now. Never allocates (the slot is reserved). */
static void update_deadline(struct transfer *t, int exact) {
  double d;
  if (t->loop == NULL || t->loop->multi == NULL) return;
  d = llm_transfer_deadline(t);
  if (d < 0) llm_loop_unschedule(t->loop, t);
  else if (exact || t->heap_index == SIZE_MAX || d < t->loop->timers[t->heap_index].at)
    llm_loop_schedule(t->loop, t, d);
}

/* Lua decoded content (t:content()): end the first-token clock, (re)start the idle clock. */
static void note_content(struct transfer *t) {
  t->t_last_content = llm_now();
  if (!t->got_content) {
    t->got_content = 1;
    update_deadline(t, 0);     /* the idle deadline may come before the first-token one */
  }
}

/* ---- libcurl callbacks: C state only ---- */

/* sse_emit_fn: queue the event for step. Whether it is content is decided in Lua, after
 * decoding (DESIGN "Timeouts and content"): see transfer_content. */
static int on_event(void *ud, const struct sse_event *ev) {
  struct transfer *t = ud;
  return sse_queue_push(&t->queue, ev) != BUF_OK;
}

/* CURLOPT_HEADERFUNCTION: collect the final response's header block. */
static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  struct transfer *t = ud;
  size_t len = size * n;
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {   /* a new block: 100 Continue, then the real one */
    const char *sp = memchr(p, ' ', len);
    buf_reset(&t->hdrs);
    t->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    return len;
  }
  if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {
    if (t->status >= 200) {
      t->headers_ready = 1;
      t->framing_on = t->framing != FR_NONE && t->status >= 200 && t->status < 300;
      llm_transfer_mark_dirty(t);
    }
    return len;
  }
  switch (buf_append(&t->hdrs, p, len)) {
    case BUF_OK: break;
    case BUF_ETOOBIG: t->fail = F_HEADERS; return 0;   /* more than the header cap */
    default: t->fail = F_NOMEM; return 0;
  }
  return len;
}

/* Bring the loop's count of queued bytes up to date with t's queue. */
static void queue_sync(struct transfer *t) {
  struct loop *lp = t->loop;
  if (lp == NULL) { t->qcounted = 0; return; }
  lp->queued -= t->qcounted;
  t->qcounted = t->queue.b.len;
  lp->queued += t->qcounted;
  if (lp->queued > lp->queued_peak) lp->queued_peak = lp->queued;
}

/* CURLOPT_WRITEFUNCTION: feed the framer, or buffer the body (also an error body of a stream). */
static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  struct transfer *t = ud;
  size_t len = size * n;
  if (len > t->max_chunk) t->max_chunk = len;
  if (t->framing_on) {
    size_t before = t->queue.count;
    if (t->queue.b.len > 0 && t->loop != NULL && t->loop->queued >= t->loop->high_water) {
      t->held = 1;                  /* libcurl keeps these bytes and re-delivers them */
      t->loop->holds++;
      return CURL_WRITEFUNC_PAUSE;
    }
    int rc = sse_feed(&t->sse, p, len);
    queue_sync(t);
    if (rc != SSE_OK) {
      t->fail = rc == SSE_ETOOBIG ? F_TOOBIG : F_NOMEM;
      if (rc == SSE_EEMIT && t->queue.err == BUF_ETOOBIG) t->fail = F_TOOBIG;
      return 0;                 /* abort now; step reports it */
    }
    if (t->queue.count != before) llm_transfer_mark_dirty(t);
    return len;
  }
  switch (buf_append(&t->body, p, len)) {
    case BUF_OK: return len;
    case BUF_ETOOBIG: t->fail = F_BODY; return 0;
    default: t->fail = F_NOMEM; return 0;
  }
}

/* CURLOPT_DEBUGFUNCTION: libcurl's verbose text, kept for a "debug" record (redacted in Lua). */
static int on_debug(CURL *easy, curl_infotype type, char *p, size_t n, void *ud) {
  struct transfer *t = ud;
  (void)easy;
  if (type == CURLINFO_TEXT || type == CURLINFO_HEADER_IN || type == CURLINFO_HEADER_OUT) {
    if (t->debug.len < 256 * 1024) {
      if (type == CURLINFO_HEADER_IN) buf_append(&t->debug, "< ", 2);
      else if (type == CURLINFO_HEADER_OUT) buf_append(&t->debug, "> ", 2);
      else buf_append(&t->debug, "* ", 2);
      buf_append(&t->debug, p, n);
      llm_transfer_mark_dirty(t);
    }
  }
  return 0;
}

/* ---- attach, detach, restart ---- */

static void reset_response(struct transfer *t) {
  sse_reset(&t->sse);
  sse_queue_clear(&t->queue);
  t->qpos = 0;
  queue_sync(t);
  buf_reset(&t->body);
  buf_reset(&t->hdrs);
  t->status = 0;
  t->headers_ready = t->headers_reported = t->done_reported = 0;
  t->framing_on = 0;
  t->got_content = 0;
  t->fail = F_NONE;
  t->held = 0;
  t->max_chunk = 0;
  t->result = CURLE_OK;
  t->errbuf[0] = '\0';
}

/* The receive buffer for an attempt about to start. libcurl allocates it when the transfer
 * connects and frees it when the transfer is done or removed, and refuses the option while
 * it holds one, so it is set here, before the handle is added. Only plain http gets the
 * small one: libcurl 7.88 receives an HTTP/2 stream's DATA into this buffer and pauses the
 * stream when it is full, and 1,000 HTTP/2 streams with 1 KiB buffers stalled for good. */
static void set_buffer(struct transfer *t) {
  struct loop *lp = t->loop;
  long size = CURL_MAX_WRITE_SIZE;   /* libcurl's default */
  if (!t->tls && lp->nattached >= LLM_FULL_BUFFERS) { size = LLM_SMALL_BUFFER; lp->small_buffers++; }
  if (size != t->buffer_size && curl_easy_setopt(t->easy, CURLOPT_BUFFERSIZE, size) == CURLE_OK)
    t->buffer_size = size;
}

static void attach(struct transfer *t) {
  t->t_start = llm_now();
  t->state = ST_RUNNING;
  update_deadline(t, 1);
  set_buffer(t);
  if (curl_multi_add_handle(t->loop->multi, t->easy) == CURLM_OK) { t->attached = 1; t->loop->nattached++; }
  else { t->state = ST_DONE; t->result = CURLE_FAILED_INIT; llm_transfer_mark_dirty(t); }
}

static void detach(struct transfer *t) {   /* never from inside a libcurl callback */
  if (t->loop != NULL && t->loop->multi != NULL) {
    llm_loop_unschedule(t->loop, t);
    if (t->attached) { curl_multi_remove_handle(t->loop->multi, t->easy); t->loop->nattached--; }
  }
  t->attached = 0;
}

/* Finish with a failure of our own (timeouts, cancel): detach and report. */
static void finish(struct transfer *t, enum fail f) {
  detach(t);
  t->fail = f;
  t->state = ST_DONE;
  llm_transfer_mark_dirty(t);
}

void llm_transfer_done(struct transfer *t, CURLcode rc) {
  curl_off_t nconn = 0;
  detach(t);
  t->result = rc;
  t->state = ST_DONE;
  if (rc == CURLE_OK && t->framing_on) {
    int frc = sse_finish(&t->sse);
    if (frc != SSE_OK && t->fail == F_NONE) t->fail = frc == SSE_ETOOBIG ? F_TOOBIG : F_NOMEM;
  }
  if (curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK && t->loop) {
    if (nconn > 0) t->loop->new_connections += (lua_Integer)nconn;
    else t->loop->reused++;
  }
  llm_transfer_mark_dirty(t);
}

double llm_transfer_deadline(struct transfer *t) {
  double d = -1;
  if (t->state == ST_WAITING) return t->restart_at;
  if (t->state != ST_RUNNING || t->framing == FR_NONE || t->paused) return -1;
  if (!t->headers_ready && t->timeout > 0) d = t->t_start + t->timeout;
  if (!t->got_content && t->first_token_timeout > 0) {
    double f = t->t_start + t->first_token_timeout;
    if (d < 0 || f < d) d = f;
  }
  if (t->got_content && t->idle_timeout > 0) {
    double i = t->t_last_content + t->idle_timeout;
    if (d < 0 || i < d) d = i;
  }
  return d;
}

/* Its heap entry came due (the loop took it out of the heap): start a waiting restart, fail
 * a deadline that has passed, or put the entry at the next deadline. */
int llm_transfer_fire(struct transfer *t, double now) {
  if (t->state == ST_WAITING) {
    if (now >= t->restart_at) { attach(t); return 1; }
    update_deadline(t, 1);
    return 0;
  }
  if (t->state != ST_RUNNING || t->framing == FR_NONE || t->paused) return 0;
  if (!t->headers_ready && t->timeout > 0 && now >= t->t_start + t->timeout) finish(t, F_T_HEADERS);
  else if (!t->got_content && t->first_token_timeout > 0 && now >= t->t_start + t->first_token_timeout)
    finish(t, F_T_FIRST);
  else if (t->got_content && t->idle_timeout > 0 && now >= t->t_last_content + t->idle_timeout)
    finish(t, F_T_IDLE);
  else update_deadline(t, 1);
  return 0;
}

/* ---- records for Lua ---- */

/* [-0, +1] the response headers as a table of lower-case names; repeats joined with ", ".
 * The table is made at its size (one slot per line) and a name is lower-cased straight into
 * a buffer of its length: no rehash and no character-by-character buffer calls. */
static void push_headers(lua_State *L, struct transfer *t) {
  const char *p = t->hdrs.data, *end = p + t->hdrs.len, *q;
  int lines = 0;
  if (p != NULL)
    for (q = p; (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++) lines++;
  lua_createtable(L, 0, lines + 1);
  while (p != NULL && p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *line_end = eol ? eol : end;
    const char *colon = memchr(p, ':', (size_t)(line_end - p));
    if (colon != NULL && colon > p) {
      const char *v = colon + 1, *ve = line_end;
      size_t i, nlen = (size_t)(colon - p);
      luaL_Buffer name;
      char *d = luaL_buffinitsize(L, &name, nlen);
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      for (i = 0; i < nlen; i++) d[i] = (char)tolower((unsigned char)p[i]);
      luaL_pushresultsize(&name, nlen);           /* headers name */
      lua_pushvalue(L, -1);
      if (lua_rawget(L, -3) == LUA_TSTRING) {     /* headers name old */
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      }
      lua_rawset(L, -3);
    }
    p = eol ? eol + 1 : end;
  }
}

/* A plain decimal number ("2", "1.5", surrounding blanks allowed); < 0 when `v` is anything
 * else. strtod would also take "0x10", "1e3", "inf" and "-1", which no server means. */
static double parse_decimal(const char *v) {
  double n = 0, scale = 1;
  int digits = 0, dot = 0;
  while (*v == ' ' || *v == '\t') v++;
  for (; *v; v++) {
    if (*v >= '0' && *v <= '9') {
      if (dot) { scale /= 10; n += (*v - '0') * scale; }
      else n = n * 10 + (*v - '0');
      digits++;
    } else if (*v == '.' && !dot) {
      dot = 1;
    } else {
      break;
    }
  }
  while (*v == ' ' || *v == '\t') v++;
  return (digits > 0 && *v == '\0') ? n : -1;
}

/* Seconds from a Retry-After value: delta-seconds or an HTTP date; < 0 when unparseable.
 * Every HTTP date form (IMF-fixdate, RFC 850, asctime) has a space and a month name. */
static double parse_retry_after(const char *v) {
  double s = parse_decimal(v);
  if (s >= 0) return s;
  if (strchr(v, ' ') == NULL || strpbrk(v, "JFMASONDjfmasond") == NULL) return -1;
  {
    time_t when = curl_getdate(v, NULL);
    if (when == (time_t)-1) return -1;
    s = difftime(when, time(NULL));
    return s > 0 ? s : 0;
  }
}

/* [-0, +0] From the headers table at the top of the stack: retry-after-ms, retry-after and
 * x-should-retry, set as the fields retry_after and should_retry of the record at `rec`. */
static void set_retry_fields(lua_State *L, int rec) {
  double secs = -1;
  if (lua_getfield(L, -1, "retry-after-ms") == LUA_TSTRING) {
    double ms = parse_decimal(lua_tostring(L, -1));
    if (ms >= 0) secs = ms / 1000.0;
  }
  lua_pop(L, 1);
  if (secs < 0 && lua_getfield(L, -1, "retry-after") == LUA_TSTRING) {
    secs = parse_retry_after(lua_tostring(L, -1));
    lua_pop(L, 1);
  } else if (secs < 0) {
    lua_pop(L, 1);
  }
  if (secs >= 0) {
    if (secs == (double)(lua_Integer)secs) lua_pushinteger(L, (lua_Integer)secs);  /* "2", not 2.0 */
    else lua_pushnumber(L, secs);
    lua_setfield(L, rec, "retry_after");
  }
  if (lua_getfield(L, -1, "x-should-retry") == LUA_TSTRING) {
    const char *v = lua_tostring(L, -1);
    if (strcasecmp(v, "true") == 0) { lua_pushboolean(L, 1); lua_setfield(L, rec, "should_retry"); }
    else if (strcasecmp(v, "false") == 0) { lua_pushboolean(L, 0); lua_setfield(L, rec, "should_retry"); }
  }
  lua_pop(L, 1);
}

/* [-0, +1] a new record { type, id } */
static void push_record(lua_State *L, struct transfer *t, const char *type) {
  lua_createtable(L, 0, 8);
  lua_pushstring(L, type); lua_setfield(L, -2, "type");
  lua_pushinteger(L, t->id); lua_setfield(L, -2, "id");
}

static int is_tls_verify(CURLcode rc) {
  return rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
         rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_ISSUER_ERROR ||
         rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH;
}

/* The error kind of a libcurl result code (never of its message text). */
static const char *kind_of_code(CURLcode rc) {
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_UNSUPPORTED_PROTOCOL: case CURLE_URL_MALFORMAT:
      return "bad_request";          /* the request can never be sent as given */
    case CURLE_OUT_OF_MEMORY:        /* also a header line over libcurl's 100 KiB limit */
    case CURLE_WEIRD_SERVER_REPLY: case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_FILESIZE_EXCEEDED: case CURLE_TOO_MANY_REDIRECTS:
      return "protocol";             /* the server's reply is unusable: retrying will not help */
    default:
      return "connection";
  }
}

/* Which limit a CURLE_OPERATION_TIMEDOUT hit, from the transfer's own times rather than the
 * message text. A stream has no CURLOPT_TIMEOUT, so it is the connect timeout; otherwise it
 * is the total one if the connection was up (made or reused), or if the total limit is the
 * shorter of the two while connecting. */
static const char *timeout_which(struct transfer *t) {
  curl_off_t connect_us = 0, pretransfer_us = 0;
  double connect_limit = t->connect_timeout > 0 ? t->connect_timeout : 300;  /* libcurl's default */
  if (t->framing != FR_NONE || t->timeout <= 0) return "connect";
  curl_easy_getinfo(t->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
  curl_easy_getinfo(t->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer_us);
  if (connect_us > 0 || pretransfer_us > 0) return "total";   /* connected, or reused */
  return t->timeout <= connect_limit ? "total" : "connect";
}

/* [-0, +1] the error of a finished transfer, or nil when it succeeded at the transport level. */
static void push_error(lua_State *L, struct transfer *t) {
  const char *kind = NULL, *which = NULL, *msg = NULL;
  char text[CURL_ERROR_SIZE + 64];
  switch (t->fail) {
    case F_CANCELLED: kind = "cancelled"; msg = "cancelled"; break;
    case F_T_HEADERS: kind = "timeout"; which = "headers"; msg = "no response headers in time"; break;
    case F_T_FIRST: kind = "timeout"; which = "first_token"; msg = "no content event in time"; break;
    case F_T_IDLE: kind = "timeout"; which = "idle"; msg = "stream idle: no content event in time"; break;
    case F_TOOBIG: kind = "protocol"; msg = "stream event larger than the size cap"; break;
    case F_BODY: kind = "protocol"; msg = "response body larger than the size cap"; break;
    case F_NOMEM: kind = "protocol"; msg = "out of memory while reading the response"; break;
    case F_HEADERS: kind = "protocol"; msg = "response headers larger than 256 KiB"; break;
    case F_NONE: break;
  }
  if (kind == NULL && t->result != CURLE_OK) {
    CURLcode rc = t->result;
    msg = t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc);
    kind = kind_of_code(rc);
    if (rc == CURLE_OPERATION_TIMEDOUT) which = timeout_which(t);
    snprintf(text, sizeof text, "%s (curl %d)", msg, (int)rc);
    msg = text;
  }
  if (kind == NULL) { lua_pushnil(L); return; }
  lua_createtable(L, 0, 5);
  lua_pushstring(L, kind); lua_setfield(L, -2, "kind");
  lua_pushstring(L, msg); lua_setfield(L, -2, "message");
  lua_pushinteger(L, (lua_Integer)t->result); lua_setfield(L, -2, "code");
  if (which) { lua_pushstring(L, which); lua_setfield(L, -2, "which"); }
  if (is_tls_verify(t->result)) { lua_pushboolean(L, 1); lua_setfield(L, -2, "tls"); }
}

/* Append the transfer's pending records to the list at `records`. The transfer is taken off
 * the dirty list first and anchored on the stack through the loop's weak map (loop at 1), so
 * a collection during the Lua allocations below cannot free it; a transfer whose object is
 * already unreachable reports nothing (its __gc detaches it). */
int llm_transfer_report(lua_State *L, struct transfer *t, int records, int *n, size_t *left) {
  int top = lua_gettop(L);
  unlink_dirty(t);
  lua_getiuservalue(L, 1, 1);
  if (lua_rawgeti(L, -1, t->id) != LUA_TUSERDATA) { lua_settop(L, top); return 0; }
  if (t->debug.len > 0) {
    push_record(L, t, "debug");
    lua_pushlstring(L, t->debug.data, t->debug.len); lua_setfield(L, -2, "text");
    lua_rawseti(L, records, ++*n);
    buf_reset(&t->debug);
  }
  if (t->framing != FR_NONE && t->headers_ready && !t->headers_reported) {
    int rec;
    t->headers_reported = 1;
    push_record(L, t, "headers");
    rec = lua_gettop(L);
    lua_pushinteger(L, t->status); lua_setfield(L, rec, "status");
    push_headers(L, t);
    set_retry_fields(L, rec);
    lua_setfield(L, rec, "headers");
    lua_rawseti(L, records, ++*n);
  }
  if (t->queue.count > 0 && *left > 0) {
    /* One piece of the queue: { type = "events", id, n, data1..datan, names = {[i] = name},
     * ids = {[i] = id} } (names and ids only when some event has one). The rest stays queued
     * and the transfer dirty, so a step can stop between pieces. Each event leaves the queue
     * as it is copied out: a memory error cannot report one twice. */
    size_t k = t->queue.count < LLM_REPORT_PIECE ? t->queue.count : LLM_REPORT_PIECE;
    struct sse_event ev;
    lua_Integer i;
    int rec, names = 0, ids = 0;
    if (k > *left) k = *left;
    lua_createtable(L, (int)k, 4);   /* type, id, n and names: ids, which are rare, rehash */
    rec = lua_gettop(L);
    lua_pushliteral(L, "events"); lua_setfield(L, rec, "type");
    lua_pushinteger(L, t->id); lua_setfield(L, rec, "id");
    for (i = 1; i <= (lua_Integer)k; i++) {
      if (!sse_queue_next(&t->queue, &t->qpos, &ev)) break;
      t->queue.count--;
      lua_pushlstring(L, ev.data, ev.data_len);
      lua_rawseti(L, rec, i);
      if (ev.name) {
        if (!names) { lua_newtable(L); names = lua_gettop(L); }
        lua_pushlstring(L, ev.name, ev.name_len);
        lua_rawseti(L, names, i);
      }
      if (ev.id) {
        if (!ids) { lua_newtable(L); ids = lua_gettop(L); }
        lua_pushlstring(L, ev.id, ev.id_len);
        lua_rawseti(L, ids, i);
      }
    }
    *left -= (size_t)(i - 1);
    lua_pushinteger(L, i - 1); lua_setfield(L, rec, "n");
    if (names) { lua_pushvalue(L, names); lua_setfield(L, rec, "names"); }
    if (ids) { lua_pushvalue(L, ids); lua_setfield(L, rec, "ids"); }
    lua_settop(L, rec);
    lua_rawseti(L, records, ++*n);
    if (t->queue.count == 0) {
      if (t->queue.b.cap > QUEUE_KEEP) sse_queue_free(&t->queue);
      else sse_queue_clear(&t->queue);
      t->qpos = 0;
      queue_sync(t);
    }
  }
  if (t->held && t->queue.count == 0 && t->state == ST_RUNNING) {   /* the batch is out: read on */
    t->held = 0;
    if (!t->paused && t->attached) curl_easy_pause(t->easy, CURLPAUSE_CONT);
  }
  if (t->state == ST_DONE && !t->done_reported && t->queue.count == 0) {
    int rec;
    t->done_reported = 1;
    push_record(L, t, "done");
    rec = lua_gettop(L);
    if (t->status) { lua_pushinteger(L, t->status); lua_setfield(L, rec, "status"); }
    if (!t->headers_reported) {   /* a stream's headers record already carried them */
      push_headers(L, t);
      set_retry_fields(L, rec);
      lua_setfield(L, rec, "headers");
    }
    if (!t->framing_on && t->body.len > 0) {
      lua_pushlstring(L, t->body.data, t->body.len);
      lua_setfield(L, rec, "body");
    } else if (!t->framing_on && t->status) {
      lua_pushliteral(L, ""); lua_setfield(L, rec, "body");
    }
    if (t->framing_on) {
      lua_pushinteger(L, (lua_Integer)t->sse.partial); lua_setfield(L, rec, "partial");
    }
    push_error(L, t);
    lua_setfield(L, rec, "error");
    lua_rawseti(L, records, ++*n);
  }
  if (t->queue.count > 0) llm_transfer_mark_dirty(t);   /* the rest: a later piece */
  lua_settop(L, top);
  return 1;
}

/* ---- Lua methods ---- */

static int transfer_cancel(lua_State *L) {
  struct transfer *t = luaL_checkudata(L, 1, LLM_TRANSFER);
  if (t->state == ST_RUNNING || t->state == ST_WAITING || t->state == ST_IDLE) {
    finish(t, F_CANCELLED);
  }
  return 0;
}

/* t:restart(delay): re-issue the same request after `delay` seconds (the retry machinery). */
static int transfer_restart(lua_State *L) {
  struct transfer *t = checktransfer(L, 1);
  double delay = luaL_optnumber(L, 2, 0);
  if (t->loop == NULL || t->loop->multi == NULL) return luaL_error(L, "the loop is closed");
  detach(t);
  unlink_dirty(t);
  reset_response(t);
  t->state = ST_WAITING;
  t->restart_at = llm_now() + (delay > 0 ? delay : 0);
  update_deadline(t, 1);
  return 0;
}

/* t:pause(on): stop reading (the idle clock stops too); resume with pause(false). */
static int transfer_pause(lua_State *L) {
  struct transfer *t = checktransfer(L, 1);
  int on = lua_toboolean(L, 2);
  if (on == t->paused) return 0;
  t->paused = on;
  if (t->attached && !(t->held && !on)) curl_easy_pause(t->easy, on ? CURLPAUSE_RECV : CURLPAUSE_CONT);
  if (!on) t->t_last_content = llm_now();
  update_deadline(t, 0);      /* paused: no deadline; resumed: the idle clock restarts */
  return 0;
}

/* t:content(): the batch Lua just decoded held a content event (text, reasoning, tool call,
 * refusal). Ends the first-token clock and restarts the idle clock; Lua calls it at most
 * once per batch, so metadata, pings and empty deltas never count. */
static int transfer_content(lua_State *L) {
  note_content(checktransfer(L, 1));
  return 0;
}

/* One idempotent close for __gc, __close and :close(): detach, then release (STYLE §6). */
static int transfer_close(lua_State *L) {
  struct transfer *t = luaL_checkudata(L, 1, LLM_TRANSFER);
  struct loop *lp = t->loop;           /* NULL once the loop has closed */
  if (t->state == ST_CLOSED) return 0;
  detach(t);
  unlink_dirty(t);
  if (t->loop != NULL) {               /* unlink from the loop's list */
    if (t->prev) t->prev->next = t->next; else t->loop->head = t->next;
    if (t->next) t->next->prev = t->prev;
    t->loop->ntransfers--;
    t->loop->queued -= t->qcounted;
    t->qcounted = 0;
    t->loop = NULL;
  }
  t->state = ST_CLOSED;
  if (t->easy) { llm_loop_release_easy(lp, t->easy); t->easy = NULL; }
  if (t->headers) { curl_slist_free_all(t->headers); t->headers = NULL; }
  sse_free(&t->sse);
  sse_queue_free(&t->queue);
  buf_free(&t->body);
  buf_free(&t->hdrs);
  buf_free(&t->debug);
  return 0;
}

/* The loop is closing: detach every transfer and forget the back pointers. */
void llm_transfer_detach_all(struct loop *lp) {
  struct transfer *t = lp->head;
  while (t != NULL) {
    struct transfer *next = t->next;
    detach(t);
    t->dirty = 0;
    t->heap_index = SIZE_MAX;
    t->loop = NULL;
    t->next = t->prev = NULL;
    if (t->state == ST_RUNNING || t->state == ST_WAITING) t->state = ST_DONE;
    t = next;
  }
  lp->head = NULL;
  lp->dirty = lp->dirty_tail = NULL;
  lp->ntransfers = 0;
}

/* __index: a method from the methods table (upvalue 1), else a field by its number in the
 * fields table (upvalue 2): two table lookups, no string comparison. */
enum { FIELD_ID = 1, FIELD_STATUS, FIELD_PENDING, FIELD_HELD, FIELD_BUFFER_SIZE, FIELD_MAX_CHUNK };
static int transfer_index(lua_State *L) {
  struct transfer *t = luaL_checkudata(L, 1, LLM_TRANSFER);
  lua_settop(L, 2);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(2));
  switch ((int)lua_tointeger(L, -1)) {
    case FIELD_ID: lua_pushinteger(L, t->id); return 1;
    case FIELD_STATUS: lua_pushinteger(L, t->status); return 1;
    case FIELD_PENDING: lua_pushinteger(L, (lua_Integer)t->queue.count); return 1;   /* events queued in C */
    case FIELD_HELD: lua_pushboolean(L, t->held); return 1;   /* stopped reading until step drains it */
    case FIELD_BUFFER_SIZE: lua_pushinteger(L, t->buffer_size); return 1;   /* receive buffer asked for */
    case FIELD_MAX_CHUNK: lua_pushinteger(L, (lua_Integer)t->max_chunk); return 1;   /* largest body write */
    default: lua_pushnil(L); return 1;
  }
}

static int transfer_tostring(lua_State *L) {
  struct transfer *t = luaL_checkudata(L, 1, LLM_TRANSFER);
  static const char *names[] = { "idle", "waiting", "running", "done", "closed" };
  lua_pushfstring(L, "llm.Transfer " LLM_FMT_INT " (%s)", LLM_FMT_INT_ARG(t->id), names[t->state]);
  return 1;
}

/* ---- construction ---- */

static double optfield_number(lua_State *L, int spec, const char *k, double def) {
  double v = def;
  if (lua_getfield(L, spec, k) != LUA_TNIL) {
    if (!lua_isnumber(L, -1)) luaL_error(L, "transfer option '%s' must be a number", k);
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static const char *optfield_string(lua_State *L, int spec, const char *k) {
  const char *s = NULL;
  int tp = lua_getfield(L, spec, k);
  if (tp == LUA_TSTRING) s = lua_tostring(L, -1);
  else if (tp != LUA_TNIL) luaL_error(L, "transfer option '%s' must be a string", k);
  lua_pop(L, 1);   /* the string stays alive: the spec table holds it while we copy it */
  return s;
}

static void check_header_text(lua_State *L, const char *s, size_t len) {
  if (memchr(s, '\r', len) || memchr(s, '\n', len) || memchr(s, '\0', len))
    luaL_error(L, "header contains CR, LF or NUL (refused to prevent header injection)");
}

/* Append one "Name: value" line to t->headers; the slist is owned by t from the start. */
static void add_header(lua_State *L, struct transfer *t, const char *line) {
  struct curl_slist *n = curl_slist_append(t->headers, line);
  if (n == NULL) luaL_error(L, "not enough memory");
  t->headers = n;
}

static void set_headers(lua_State *L, struct transfer *t, int spec) {
  char line[512];
  if (lua_getfield(L, spec, "headers") == LUA_TTABLE) {
    int h = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, h)) {
      size_t klen, vlen;
      const char *v;
      if (lua_type(L, -2) == LUA_TNUMBER) {          /* { "Name: value" } */
        v = luaL_checklstring(L, -1, &vlen);
        check_header_text(L, v, vlen);
        add_header(L, t, v);
      } else {                                        /* { name = value } */
        const char *k = luaL_checklstring(L, -2, &klen);
        v = luaL_checklstring(L, -1, &vlen);
        check_header_text(L, k, klen);
        check_header_text(L, v, vlen);
        if (memchr(k, ':', klen)) luaL_error(L, "header name contains ':'");
        {   /* "Name: value", or "Name;" for an empty value; curl_slist_append copies it */
          size_t need = klen + vlen + 3;
          char *d = need <= sizeof line ? line : lua_newuserdatauv(L, need, 0);
          memcpy(d, k, klen);
          if (vlen) { d[klen] = ':'; d[klen + 1] = ' '; memcpy(d + klen + 2, v, vlen); d[klen + 2 + vlen] = '\0'; }
          else { d[klen] = ';'; d[klen + 1] = '\0'; }
          add_header(L, t, d);
          if (d != line) lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  add_header(L, t, "Expect:");   /* no 100-continue round trip for large bodies */
}

/* loop:transfer(spec) -> transfer. Created closed, then acquired: __gc is safe from the
 * moment the metatable is set. The transfer starts at the next step. */
int llm_transfer_new(lua_State *L) {
  struct loop *lp = luaL_checkudata(L, 1, LLM_LOOP);
  struct transfer *t;
  const char *method, *url, *s;
  size_t blen = 0;
  int spec = 2;
  double connect_timeout, max_event;
  if (lp->multi == NULL) return luaL_error(L, "attempt to use a closed loop");
  luaL_checktype(L, spec, LUA_TTABLE);
  lua_settop(L, 2);

  llm_loop_reserve(L, lp);                        /* its heap slot, before anything is owned */
  t = lua_newuserdatauv(L, sizeof *t, 1);
  memset(t, 0, sizeof *t);
  t->heap_index = SIZE_MAX;
  t->buffer_size = CURL_MAX_WRITE_SIZE;           /* a new or reset handle has libcurl's default */
  t->state = ST_CLOSED;                           /* closed until fully built */
  buf_init(&t->body, 0, (buf_alloc_fn)lp->alloc, lp->alloc_ud);
  buf_init(&t->hdrs, 256 * 1024, (buf_alloc_fn)lp->alloc, lp->alloc_ud);
  buf_init(&t->debug, 0, (buf_alloc_fn)lp->alloc, lp->alloc_ud);
  sse_queue_init(&t->queue, 0, (buf_alloc_fn)lp->alloc, lp->alloc_ud);
  sse_init(&t->sse, SSE_MODE_SSE, 0, (buf_alloc_fn)lp->alloc, lp->alloc_ud, on_event, t);
  luaL_setmetatable(L, LLM_TRANSFER);
  lua_createtable(L, 0, 2);                       /* uservalue: anchors body and loop */
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "loop");
  lua_setiuservalue(L, -2, 1);
  t->state = ST_IDLE;
  if ((t->easy = llm_loop_easy(lp)) == NULL) { t->state = ST_CLOSED; return luaL_error(L, "curl_easy_init failed"); }

  url = optfield_string(L, spec, "url");
  if (url == NULL) return luaL_error(L, "transfer needs a url");
  method = optfield_string(L, spec, "method");
  if (method == NULL) method = "GET";
  curl_easy_setopt(t->easy, CURLOPT_URL, url);    /* libcurl copies string options */
  if (strcmp(method, "GET") == 0) curl_easy_setopt(t->easy, CURLOPT_HTTPGET, 1L);
  else if (strcmp(method, "POST") != 0) curl_easy_setopt(t->easy, CURLOPT_CUSTOMREQUEST, method);

  if (lua_getfield(L, spec, "body") == LUA_TSTRING) {   /* [loop, spec, t, body] */
    const char *body = lua_tolstring(L, -1, &blen);
    lua_getiuservalue(L, 3, 1);                         /* [loop, spec, t, body, anchors] */
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "body");                        /* POSTFIELDS is not copied: anchor it */
    lua_pop(L, 1);
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, body);
  } else if (strcmp(method, "POST") == 0) {
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, "");
  }
  lua_pop(L, 1);

  set_headers(L, t, spec);
  curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);

  s = optfield_string(L, spec, "framing");
  if (s == NULL) t->framing = FR_NONE;
  else if (strcmp(s, "sse") == 0) t->framing = FR_SSE;
  else if (strcmp(s, "ndjson") == 0) t->framing = FR_NDJSON;
  else return luaL_error(L, "framing must be 'sse' or 'ndjson'");
  max_event = optfield_number(L, spec, "max_event_size", (double)LLM_DEFAULT_MAX_EVENT);
  sse_free(&t->sse);
  sse_init(&t->sse, t->framing == FR_NDJSON ? SSE_MODE_NDJSON : SSE_MODE_SSE, (size_t)max_event,
           (buf_alloc_fn)lp->alloc, lp->alloc_ud, on_event, t);
  t->max_body = (size_t)optfield_number(L, spec, "max_body_size", (double)LLM_DEFAULT_MAX_BODY);
  t->body.max = t->max_body;
  t->queue.b.max = (size_t)max_event * 4 + 1024 * 1024;

  t->timeout = optfield_number(L, spec, "timeout", 600);
  t->idle_timeout = optfield_number(L, spec, "idle_timeout", 0);
  t->first_token_timeout = optfield_number(L, spec, "first_token_timeout", 0);
  connect_timeout = optfield_number(L, spec, "connect_timeout", 10);
  t->connect_timeout = connect_timeout;
  if (connect_timeout > 0) curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(connect_timeout * 1000));
  if (t->framing == FR_NONE && t->timeout > 0)   /* a stream's timeout bounds only the headers */
    curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, (long)(t->timeout * 1000));

  if ((s = optfield_string(L, spec, "ca_file")) != NULL) curl_easy_setopt(t->easy, CURLOPT_CAINFO, s);
  if ((s = optfield_string(L, spec, "proxy")) != NULL) curl_easy_setopt(t->easy, CURLOPT_PROXY, s);
  lua_getfield(L, spec, "insecure");
  if (lua_toboolean(L, -1)) {
    curl_easy_setopt(t->easy, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(t->easy, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  lua_pop(L, 1);
  lua_getfield(L, spec, "verbose");
  t->verbose = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (t->verbose) {
    curl_easy_setopt(t->easy, CURLOPT_DEBUGFUNCTION, on_debug);
    curl_easy_setopt(t->easy, CURLOPT_DEBUGDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_VERBOSE, 1L);
  }

  curl_easy_setopt(t->easy, CURLOPT_PRIVATE, (char *)t);
  curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
  curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
  curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(t->easy, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(t->easy, CURLOPT_ACCEPT_ENCODING, "");      /* any encoding libcurl can decode */
  /* HTTP/2 where TLS offers it (ALPN), HTTP/1.1 otherwise; the loop multiplexes (CURLMOPT_
   * PIPELINING). PIPEWAIT: a transfer started while a connection to the same host is still
   * being set up waits to learn whether it can share it, instead of opening its own; many
   * requests started at once then share a few HTTP/2 connections. Plain http:// never
   * multiplexes, and waiting there would only serialize the starts. */
  curl_easy_setopt(t->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  t->tls = strncasecmp(url, "https:", 6) == 0;
  if (t->tls) curl_easy_setopt(t->easy, CURLOPT_PIPEWAIT, 1L);
  curl_easy_setopt(t->easy, CURLOPT_FOLLOWLOCATION, 0L);      /* redirects are decided in Lua */
  curl_easy_setopt(t->easy, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");

  /* Link into the loop and its weak id map, then start. */
  t->loop = lp;
  lp->ntransfers++;
  t->id = ++lp->next_id;
  t->next = lp->head;
  if (lp->head) lp->head->prev = t;
  lp->head = t;
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, t->id);
  lua_pop(L, 1);
  /* Start at the next step, through the timer heap like a restart: a step starts transfers
   * (libcurl's connect and send) only within its budget, so many requests set up in one
   * frame spread over the next steps. */
  t->state = ST_WAITING;
  t->restart_at = llm_now();
  update_deadline(t, 1);
  return 1;
}

static const luaL_Reg transfer_methods[] = {
  {"cancel", transfer_cancel}, {"restart", transfer_restart}, {"pause", transfer_pause},
  {"content", transfer_content}, {"close", transfer_close}, {NULL, NULL}
};

static const luaL_Reg transfer_metamethods[] = {
  {"__gc", transfer_close}, {"__close", transfer_close},
  {"__tostring", transfer_tostring}, {NULL, NULL}
};

void llm_transfer_register(lua_State *L) {
  luaL_newmetatable(L, LLM_TRANSFER);
  luaL_setfuncs(L, transfer_metamethods, 0);
  luaL_newlib(L, transfer_methods);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "methods");
  lua_createtable(L, 0, 6);                       /* the fields __index answers */
  lua_pushinteger(L, FIELD_ID); lua_setfield(L, -2, "id");
  lua_pushinteger(L, FIELD_STATUS); lua_setfield(L, -2, "status");
  lua_pushinteger(L, FIELD_PENDING); lua_setfield(L, -2, "pending");
  lua_pushinteger(L, FIELD_HELD); lua_setfield(L, -2, "held");
  lua_pushinteger(L, FIELD_BUFFER_SIZE); lua_setfield(L, -2, "buffer_size");
  lua_pushinteger(L, FIELD_MAX_CHUNK); lua_setfield(L, -2, "max_chunk");
  lua_pushcclosure(L, transfer_index, 2);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
