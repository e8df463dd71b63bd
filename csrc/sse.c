/* sse: incremental SSE / NDJSON framers and the event queue; see sse.h and
 * docs/framing.md for the rules.
 *
 * Lines are found with memchr (one scan for LF and one for CR per feed,
 * advanced only when passed), and a line that lies wholly inside the fed
 * buffer is interpreted in place; only a line cut by a feed boundary is
 * copied into p->line. */
#include "sse.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

static const char sse_bom[3] = { '\xEF', '\xBB', '\xBF' };

static int sse_fail(struct sse *p, int rc) {
  p->failed = rc;
  return rc;
}

static int sse_buf_error(int rc) {
  return rc == BUF_ENOMEM ? SSE_ENOMEM : SSE_ETOOBIG;
}

void sse_init(struct sse *p, enum sse_mode mode, size_t max_event,
              buf_alloc_fn alloc, void *alloc_ud, sse_emit_fn emit, void *emit_ud) {
  p->mode = mode;
  p->max_event = max_event ? max_event : SSE_DEFAULT_MAX_EVENT;
  buf_init(&p->line, p->max_event, alloc, alloc_ud);
  buf_init(&p->data, p->max_event, alloc, alloc_ud);
  buf_init(&p->name, p->max_event, alloc, alloc_ud);
  buf_init(&p->id, p->max_event, alloc, alloc_ud);
  p->emit = emit;
  p->emit_ud = emit_ud;
  sse_reset(p);
}

void sse_reset(struct sse *p) {
  p->events = p->comments = p->partial = 0;
  p->retry_ms = -1;
  p->failed = SSE_OK;
  p->last_cr = p->cr_pending = 0;
  p->bom = 0;
  p->pending = 0;
  buf_reset(&p->line);
  buf_reset(&p->data);
  buf_reset(&p->name);
  buf_reset(&p->id);
}

void sse_free(struct sse *p) {
  buf_free(&p->line);
  buf_free(&p->data);
  buf_free(&p->name);
  buf_free(&p->id);
}

static int sse_call(struct sse *p, const struct sse_event *ev) {
  if (p->emit != NULL && p->emit(p->emit_ud, ev) != 0)
    return SSE_EEMIT;
  p->events++;
  return SSE_OK;
}

/* A blank line: dispatch the event if any data line was seen. */
static int sse_dispatch(struct sse *p) {
  struct sse_event ev;
  int rc;
  p->pending = 0;
  if (p->data.len == 0) {          /* WHATWG: empty data buffer, nothing to dispatch */
    buf_reset(&p->name);
    return SSE_OK;
  }
  ev.name = p->name.len ? p->name.data : NULL;    /* empty event: means the default type */
  ev.name_len = p->name.len;
  ev.data = p->data.data;
  ev.data_len = p->data.len - 1;   /* each data line was stored with a trailing LF */
  ev.id = p->id.len ? p->id.data : NULL;
  ev.id_len = p->id.len;
  rc = sse_call(p, &ev);
  buf_reset(&p->name);
  buf_reset(&p->data);
  return rc;
}

static void sse_retry(struct sse *p, const char *v, size_t n) {
  long ms = 0;
  size_t i;
  if (n == 0)
    return;
  for (i = 0; i < n; i++) {
    int d = (unsigned char)v[i] - '0';
    if (d < 0 || d > 9)
      return;                      /* not all ASCII digits: ignored */
    ms = ms > (LONG_MAX - d) / 10 ? LONG_MAX : ms * 10 + d;
  }
  p->retry_ms = ms;
}

/* One complete SSE line (without its line end), n <= max_event - event size. */
static int sse_line(struct sse *p, const char *s, size_t n) {
  const char *colon, *v;
  size_t flen, vlen;
  int rc;
  if (n == 0)
    return sse_dispatch(p);
  if (s[0] == ':') {
    p->comments++;
    return SSE_OK;
  }
  if ((colon = memchr(s, ':', n)) != NULL) {
    flen = (size_t)(colon - s);
    v = colon + 1;
    vlen = n - flen - 1;
    if (vlen > 0 && v[0] == ' ') {   /* only one leading space is removed */
      v++;
      vlen--;
    }
  } else {                           /* no colon: the whole line names the field */
    flen = n;
    v = s + n;
    vlen = 0;
  }
  switch (flen) {
  case 4:
    if (memcmp(s, "data", 4) == 0) {
      if ((rc = buf_reserve(&p->data, vlen + 1)) != BUF_OK)
        return sse_buf_error(rc);
      buf_append(&p->data, v, vlen);   /* reserved: cannot fail */
      buf_append(&p->data, "\n", 1);
    }
    break;
  case 5:
    if (memcmp(s, "event", 5) == 0) {
      buf_reset(&p->name);
      if ((rc = buf_append(&p->name, v, vlen)) != BUF_OK)
        return sse_buf_error(rc);
    } else if (memcmp(s, "retry", 5) == 0) {
      sse_retry(p, v, vlen);
    }
    break;
  case 2:
    if (memcmp(s, "id", 2) == 0 && (vlen == 0 || memchr(v, '\0', vlen) == NULL)) {
      buf_reset(&p->id);
      if ((rc = buf_append(&p->id, v, vlen)) != BUF_OK)
        return sse_buf_error(rc);
    }
    break;
  default:
    break;                         /* unknown fields are ignored */
  }
  return SSE_OK;
}

static int ndjson_line(struct sse *p, const char *s, size_t n) {
  struct sse_event ev;
  size_t i;
  if (n > 0 && s[n - 1] == '\r')   /* CRLF line end */
    n--;
  for (i = 0; i < n; i++) {
    char c = s[i];
    if (c != ' ' && c != '\t' && c != '\r' && c != '\f' && c != '\v')
      break;
  }
  if (i == n)
    return SSE_OK;                 /* blank or whitespace-only: not an event */
  ev.name = NULL;
  ev.name_len = 0;
  ev.data = s;
  ev.data_len = n;
  ev.id = NULL;
  ev.id_len = 0;
  return sse_call(p, &ev);
}

/* Bytes the current event may still grow by (name + data + line <= max). */
static size_t sse_room(const struct sse *p) {
  return p->max_event - p->name.len - p->data.len - p->line.len;
}

static int sse_feed_sse(struct sse *p, const char *s, size_t len) {
  const char *end = s + len, *lf, *cr, *eol, *ls;
  size_t n, ln;
  int rc, counted;
  if ((lf = memchr(s, '\n', len)) == NULL) lf = end;
  if ((cr = memchr(s, '\r', len)) == NULL) cr = end;
  while (s < end) {
    if (lf < s && (lf = memchr(s, '\n', (size_t)(end - s))) == NULL) lf = end;
    if (cr < s && (cr = memchr(s, '\r', (size_t)(end - s))) == NULL) cr = end;
    eol = lf < cr ? lf : cr;
    n = (size_t)(eol - s);
    if (n > sse_room(p))
      return SSE_ETOOBIG;
    if (eol == end) {              /* the line continues in a later feed */
      if ((rc = buf_append(&p->line, s, n)) != BUF_OK)
        return sse_buf_error(rc);
      return SSE_OK;
    }
    if (p->line.len > 0) {         /* finish a line begun in an earlier feed */
      if ((rc = buf_append(&p->line, s, n)) != BUF_OK)
        return sse_buf_error(rc);
      ls = p->line.data;
      ln = p->line.len;
    } else {                       /* whole line in this buffer: no copy */
      ls = s;
      ln = n;
    }
    counted = ln > 0 && ls[0] != ':';
    if (counted)
      p->pending += ln + 1;
    rc = sse_line(p, ls, ln);
    buf_reset(&p->line);
    if (rc != SSE_OK)
      return rc;
    s = eol + 1;
    if (*eol == '\r') {
      if (s == end) {              /* an LF may start the next feed */
        p->last_cr = 1;
        p->cr_pending = counted;
      } else if (*s == '\n') {
        s++;
        if (counted)
          p->pending++;
      }
    }
  }
  return SSE_OK;
}

static int sse_feed_ndjson(struct sse *p, const char *s, size_t len) {
  const char *end = s + len, *lf;
  size_t n;
  int rc;
  while (s < end) {
    if ((lf = memchr(s, '\n', (size_t)(end - s))) == NULL)
      lf = end;
    n = (size_t)(lf - s);
    if (n > p->max_event - p->line.len)
      return SSE_ETOOBIG;
    if (lf == end) {
      if ((rc = buf_append(&p->line, s, n)) != BUF_OK)
        return sse_buf_error(rc);
      return SSE_OK;
    }
    if (p->line.len > 0) {
      if ((rc = buf_append(&p->line, s, n)) != BUF_OK)
        return sse_buf_error(rc);
      rc = ndjson_line(p, p->line.data, p->line.len);
      buf_reset(&p->line);
    } else {
      rc = ndjson_line(p, s, n);
    }
    if (rc != SSE_OK)
      return rc;
    s = lf + 1;
  }
  return SSE_OK;
}

static int sse_feed_lines(struct sse *p, const char *s, size_t len) {
  return p->mode == SSE_MODE_NDJSON ? sse_feed_ndjson(p, s, len) : sse_feed_sse(p, s, len);
}

int sse_feed(struct sse *p, const char *s, size_t len) {
  int rc;
  if (p->failed)
    return p->failed;
  while (p->bom >= 0 && len > 0) {   /* a UTF-8 BOM at the very start is skipped */
    if (*s == sse_bom[p->bom]) {
      s++;
      len--;
      if (++p->bom == 3)
        p->bom = -1;
    } else {
      int k = p->bom;
      p->bom = -1;
      if (k > 0 && (rc = sse_feed_lines(p, sse_bom, (size_t)k)) != SSE_OK)
        return sse_fail(p, rc);    /* a BOM prefix that was not a BOM is data */
    }
  }
  if (len == 0)
    return SSE_OK;
  if (p->last_cr) {                /* CR at the end of the last feed, LF now: one line end */
    p->last_cr = 0;
    if (*s == '\n') {
      s++;
      len--;
      if (p->cr_pending)
        p->pending++;
    }
    p->cr_pending = 0;
  }
  if ((rc = sse_feed_lines(p, s, len)) != SSE_OK)
    return sse_fail(p, rc);
  return SSE_OK;
}

int sse_finish(struct sse *p) {
  int rc = SSE_OK;
  if (p->failed)
    return p->failed;
  if (p->bom > 0) {
    int k = p->bom;
    p->bom = -1;
    if ((rc = sse_feed_lines(p, sse_bom, (size_t)k)) != SSE_OK)
      return sse_fail(p, rc);
  }
  if (p->mode == SSE_MODE_NDJSON) {
    p->partial = 0;
    if (p->line.len > 0)
      rc = ndjson_line(p, p->line.data, p->line.len);
  } else {                         /* an event without its blank line is dropped */
    p->partial = p->pending;
    if (p->line.len > 0 && p->line.data[0] != ':')
      p->partial += p->line.len;
  }
  buf_reset(&p->line);
  buf_reset(&p->data);
  buf_reset(&p->name);
  p->pending = 0;
  p->last_cr = p->cr_pending = 0;
  p->bom = 0;                      /* a following stream may start with a BOM again */
  if (rc != SSE_OK)
    return sse_fail(p, rc);
  return SSE_OK;
}

/* ---- event queue ---- */

#define SSE_QNONE SIZE_MAX         /* a NULL name or id */

struct sse_qrec {                  /* stored unaligned (memcpy) before the bytes */
  size_t size;                     /* whole record, header included */
  size_t name_len, data_len, id_len;
  size_t id_off;                   /* offset of the id bytes in the queue */
};

void sse_queue_init(struct sse_queue *q, size_t max, buf_alloc_fn alloc, void *ud) {
  buf_init(&q->b, max, alloc, ud);
  sse_queue_clear(q);
}

void sse_queue_clear(struct sse_queue *q) {
  buf_reset(&q->b);
  q->count = 0;
  q->err = 0;
  q->has_last_id = 0;
  q->last_id_off = q->last_id_len = 0;
}

void sse_queue_free(struct sse_queue *q) {
  buf_free(&q->b);
  sse_queue_clear(q);
}

int sse_queue_push(struct sse_queue *q, const struct sse_event *ev) {
  struct sse_qrec h;
  size_t name_len = ev->name ? ev->name_len : 0, id_len = ev->id ? ev->id_len : 0;
  size_t id_copy, limit = (SIZE_MAX - sizeof h) / 4;
  char *w;
  int rc, share;
  if (name_len > limit || ev->data_len > limit || id_len > limit) {
    q->err = BUF_ETOOBIG;
    return BUF_ETOOBIG;
  }
  share = ev->id != NULL && q->has_last_id && q->last_id_len == id_len &&
          (id_len == 0 || memcmp(q->b.data + q->last_id_off, ev->id, id_len) == 0);
  id_copy = ev->id != NULL && !share ? id_len : 0;
  h.size = sizeof h + name_len + ev->data_len + id_copy;
  if ((rc = buf_reserve(&q->b, h.size)) != BUF_OK) {
    q->err = rc;
    return rc;
  }
  h.name_len = ev->name ? name_len : SSE_QNONE;
  h.data_len = ev->data_len;
  h.id_len = ev->id ? id_len : SSE_QNONE;
  h.id_off = share ? q->last_id_off : q->b.len + sizeof h + name_len + ev->data_len;
  w = q->b.data + q->b.len;
  memcpy(w, &h, sizeof h);
  w += sizeof h;
  if (name_len) memcpy(w, ev->name, name_len);
  w += name_len;
  if (ev->data_len) memcpy(w, ev->data, ev->data_len);
  w += ev->data_len;
  if (id_copy) memcpy(w, ev->id, id_copy);
  q->b.len += h.size;
  if (ev->id != NULL) {
    q->has_last_id = 1;
    q->last_id_off = h.id_off;
    q->last_id_len = id_len;
  }
  q->count++;
  return BUF_OK;
}

int sse_queue_emit(void *q, const struct sse_event *ev) {
  return sse_queue_push(q, ev) != BUF_OK;
}

int sse_queue_next(const struct sse_queue *q, size_t *pos, struct sse_event *ev) {
  struct sse_qrec h;
  const char *r;
  if (*pos + sizeof h > q->b.len)
    return 0;
  r = q->b.data + *pos;
  memcpy(&h, r, sizeof h);
  r += sizeof h;
  ev->name = h.name_len == SSE_QNONE ? NULL : r;
  ev->name_len = h.name_len == SSE_QNONE ? 0 : h.name_len;
  r += ev->name_len;
  ev->data = r;
  ev->data_len = h.data_len;
  ev->id = h.id_len == SSE_QNONE ? NULL : q->b.data + h.id_off;
  ev->id_len = h.id_len == SSE_QNONE ? 0 : h.id_len;
  *pos += h.size;
  return 1;
}
