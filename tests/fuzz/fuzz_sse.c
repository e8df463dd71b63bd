/* libFuzzer target for the stream framers (SSE and NDJSON). The first input byte picks the
 * mode, the cap and a split point; the rest is the stream. The oracle: feeding the stream
 * whole and split at that point gives the same events, the same counters and the same
 * error, and nothing trips the sanitizers. Build and run: make fuzz. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

struct run {
  struct sse p;
  struct sse_queue q;
  int rc;
};

static void parse(struct run *r, enum sse_mode mode, size_t cap, const uint8_t *d, size_t n,
                  size_t cut) {
  sse_queue_init(&r->q, 0, NULL, NULL);
  sse_init(&r->p, mode, cap, NULL, NULL, sse_queue_emit, &r->q);
  r->rc = sse_feed(&r->p, (const char *)d, cut);
  if (r->rc == SSE_OK) r->rc = sse_feed(&r->p, (const char *)d + cut, n - cut);
  if (r->rc == SSE_OK) r->rc = sse_finish(&r->p);
}

static int same_field(const char *a, size_t alen, const char *b, size_t blen) {
  if ((a == NULL) != (b == NULL) || alen != blen) return 0;
  return a == NULL || memcmp(a, b, alen) == 0;
}

static void release(struct run *r) {
  sse_free(&r->p);
  sse_queue_free(&r->q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct run whole, split;
  struct sse_event a, b;
  size_t pa = 0, pb = 0, cut, cap;
  enum sse_mode mode;
  if (size < 1) return 0;
  mode = (data[0] & 1) ? SSE_MODE_NDJSON : SSE_MODE_SSE;
  cap = (data[0] & 2) ? 64 : 0;                 /* a small cap exercises SSE_ETOOBIG */
  data++, size--;
  cut = size ? (size_t)(data[0] * 131u) % (size + 1) : 0;
  parse(&whole, mode, cap, data, size, size);
  parse(&split, mode, cap, data, size, cut);
  if (whole.rc != split.rc) abort();
  if (whole.rc == SSE_OK) {
    if (whole.p.events != split.p.events || whole.p.comments != split.p.comments ||
        whole.p.partial != split.p.partial || whole.q.count != split.q.count) abort();
    while (sse_queue_next(&whole.q, &pa, &a)) {
      if (!sse_queue_next(&split.q, &pb, &b)) abort();
      if (!same_field(a.name, a.name_len, b.name, b.name_len) ||
          !same_field(a.data, a.data_len, b.data, b.data_len) ||
          !same_field(a.id, a.id_len, b.id, b.id_len)) abort();
    }
  }
  release(&whole);
  release(&split);
  return 0;
}
