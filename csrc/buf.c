/* buf: bounded growable byte buffer; see buf.h. */
#include "buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BUF_MIN_CAP 64

static void *buf_default_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud; (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

void buf_init(struct buf *b, size_t max, buf_alloc_fn alloc, void *ud) {
  b->data = NULL;
  b->len = b->cap = 0;
  b->max = max ? max : SIZE_MAX;
  b->alloc = alloc ? alloc : buf_default_alloc;
  b->ud = alloc ? ud : NULL;
}

int buf_reserve(struct buf *b, size_t n) {
  size_t need, ncap;
  char *p;
  if (n > b->max - b->len)          /* also guards len + n against overflow */
    return BUF_ETOOBIG;
  need = b->len + n;
  if (need <= b->cap)
    return BUF_OK;
  ncap = b->cap < BUF_MIN_CAP ? BUF_MIN_CAP : b->cap;
  while (ncap < need)
    ncap = ncap > SIZE_MAX / 2 ? SIZE_MAX : ncap * 2;   /* doubling: amortized O(1) */
  if (ncap > b->max)
    ncap = b->max;                  /* need <= max, so this still fits */
  p = b->alloc(b->ud, b->data, b->cap, ncap);
  if (p == NULL)
    return BUF_ENOMEM;              /* the old block is still valid */
  b->data = p;
  b->cap = ncap;
  return BUF_OK;
}

int buf_append(struct buf *b, const void *p, size_t n) {
  int rc;
  if (n == 0)
    return BUF_OK;
  if ((rc = buf_reserve(b, n)) != BUF_OK)
    return rc;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return BUF_OK;
}

void buf_reset(struct buf *b) {
  b->len = 0;
}

void buf_consume(struct buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

void buf_free(struct buf *b) {
  if (b->data != NULL)
    b->alloc(b->ud, b->data, b->cap, 0);
  b->data = NULL;
  b->len = b->cap = 0;
}
