/* sse: incremental stream framers for server-sent events (WHATWG) and
 * newline-delimited JSON, plus a small event queue.
 *
 * Plain C (no lua.h): the framer is fed from libcurl's write callback, where
 * no Lua call is allowed, and the queue lets the caller keep the dispatched
 * events as plain bytes until it is safe to build Lua values. The rules are
 * described in docs/framing.md. */
#ifndef LLM_SSE_H
#define LLM_SSE_H

#include <stddef.h>

#include "buf.h"

#define SSE_DEFAULT_MAX_EVENT ((size_t)16 << 20)   /* 16 MiB */

enum sse_mode { SSE_MODE_SSE, SSE_MODE_NDJSON };

enum {
  SSE_OK = 0,
  SSE_ENOMEM = 1,    /* the allocator failed */
  SSE_ETOOBIG = 2,   /* one event grew past max_event */
  SSE_EEMIT = 3      /* the emit callback returned nonzero */
};

struct sse_event {
  const char *name; size_t name_len;   /* name NULL when no (or an empty) event: field */
  const char *data; size_t data_len;
  const char *id; size_t id_len;       /* last event id, NULL when none (or empty) */
};

/* Called once per dispatched event; the pointers are valid only during the
 * call. A nonzero return aborts sse_feed/sse_finish with SSE_EEMIT. */
typedef int (*sse_emit_fn)(void *ud, const struct sse_event *ev);

struct sse {
  /* readable by callers */
  size_t events;     /* events dispatched */
  size_t comments;   /* comment lines seen (SSE only) */
  long retry_ms;     /* last valid retry: field, -1 when none */
  size_t partial;    /* bytes of an unterminated trailing event dropped by sse_finish */
  /* private */
  enum sse_mode mode;
  size_t max_event;
  int failed;        /* sticky error code, SSE_OK while healthy */
  int last_cr;       /* the previous feed ended with a CR line end */
  int cr_pending;    /* ... and that line counts towards `pending` */
  int bom;           /* bytes of a leading BOM matched so far; -1 once decided */
  size_t pending;    /* raw bytes of field lines since the last blank line */
  struct buf line;   /* a line not yet terminated, carried across feeds */
  struct buf data;   /* data lines of the current event, each followed by LF */
  struct buf name;   /* event: of the current event */
  struct buf id;     /* last event id (persists across events) */
  sse_emit_fn emit;
  void *emit_ud;
};

/* Allocates nothing; max_event == 0 means SSE_DEFAULT_MAX_EVENT. alloc may be
 * NULL (realloc/free). */
void sse_init(struct sse *p, enum sse_mode mode, size_t max_event,
              buf_alloc_fn alloc, void *alloc_ud, sse_emit_fn emit, void *emit_ud);
/* Feeds len bytes; emits every event they complete. Returns SSE_OK or an
 * error code; after an error the parser stays failed and returns it again. */
int sse_feed(struct sse *p, const char *data, size_t len);
/* End of input. NDJSON dispatches a last line without a newline; SSE drops
 * an event not followed by a blank line and sets p->partial. The parser can
 * then be fed again as if a new stream followed (see also sse_reset). */
int sse_finish(struct sse *p);
/* Forgets all stream state and counters, as after sse_init; keeps memory. */
void sse_reset(struct sse *p);
/* Releases the memory; the parser may be reused after sse_reset. */
void sse_free(struct sse *p);

/* sse_queue: dispatched events copied into one buf, so they can be kept past
 * the emit call (e.g. from a libcurl write callback until `step`). A record
 * repeating the previous record's id refers to it instead of copying it, so
 * the queue stays proportional to the input. */
struct sse_queue {
  struct buf b;
  size_t count;      /* events queued */
  int err;           /* BUF_* code of the last failed push, 0 when none */
  size_t last_id_off, last_id_len;   /* id of the last record, for sharing */
  int has_last_id;
};

/* max bounds the queue's bytes (0: no limit). Allocates nothing. */
void sse_queue_init(struct sse_queue *q, size_t max, buf_alloc_fn alloc, void *ud);
/* Copies ev into the queue. Returns BUF_OK, BUF_ENOMEM or BUF_ETOOBIG (also
 * kept in q->err); on failure the queue is unchanged. */
int sse_queue_push(struct sse_queue *q, const struct sse_event *ev);
/* An sse_emit_fn whose ud is a struct sse_queue *: pushes the event. */
int sse_queue_emit(void *q, const struct sse_event *ev);
/* Iterates: start with *pos = 0; fills ev (pointers into the queue, valid
 * until the next push, clear or free) and returns 1, or returns 0 at the end. */
int sse_queue_next(const struct sse_queue *q, size_t *pos, struct sse_event *ev);
/* Drops every record (keeps memory) and clears q->err. */
void sse_queue_clear(struct sse_queue *q);
void sse_queue_free(struct sse_queue *q);

#endif
