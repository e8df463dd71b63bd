/* buf: a bounded, growable byte buffer with a pluggable allocator.
 *
 * Plain C (no lua.h) so it can be used from libcurl callbacks and from the
 * framers alike. The allocator has lua_Alloc's signature, so a Lua state's
 * allocator (lua_getallocf) can be passed straight in; nsize == 0 frees.
 * Nothing here aborts: growth failures are reported as BUF_ENOMEM, and a
 * buffer never grows past its max (BUF_ETOOBIG). */
#ifndef LLM_BUF_H
#define LLM_BUF_H

#include <stddef.h>

typedef void *(*buf_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);

enum {
  BUF_OK = 0,
  BUF_ENOMEM = 1,   /* the allocator failed; the buffer is unchanged */
  BUF_ETOOBIG = 2   /* the append would make len exceed max; unchanged */
};

struct buf {
  char *data;       /* NULL until the first append */
  size_t len, cap, max;
  buf_alloc_fn alloc;
  void *ud;
};

/* max == 0 means no limit (SIZE_MAX); alloc == NULL means realloc/free.
 * Allocates nothing. */
void buf_init(struct buf *b, size_t max, buf_alloc_fn alloc, void *ud);
/* Appends n bytes (growth is amortized). Returns BUF_OK, BUF_ENOMEM or
 * BUF_ETOOBIG; on failure the contents are untouched. */
int buf_append(struct buf *b, const void *p, size_t n);
/* Makes room for at least n more bytes without changing len. */
int buf_reserve(struct buf *b, size_t n);
/* Empties the buffer but keeps its memory for reuse. */
void buf_reset(struct buf *b);
/* Drops n bytes from the front (all of them when n >= len). */
void buf_consume(struct buf *b, size_t n);
/* Releases the memory; the buffer is then empty and may be reused. */
void buf_free(struct buf *b);

#endif
