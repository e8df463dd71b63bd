/* Unit tests for csrc/buf.c and csrc/sse.c.
 *
 *   test_sse transcripts   hand-written transcripts in tests/transcripts/, each
 *                          whole, split at every offset (two and, for small
 *                          files, three ways) and byte by byte
 *   test_sse fixtures      every *.sse of the shared fixtures against the
 *                          stream_facts of its .expect.json, whole and split;
 *                          exits 77 when the folder is absent (LLM_FIXTURES
 *                          names the folder, LLM_SPLIT_STRIDE thins the
 *                          two-way splits for valgrind runs)
 *   test_sse alloc         allocator use, ENOMEM at every allocation, the cap,
 *                          buf and the event queue
 *
 * Every parse runs on a counting allocator and must end with nothing live. */
#define _POSIX_C_SOURCE 200809L  /* strdup, opendir */

#include <dirent.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "sse.h"

#ifndef TRANSCRIPTS_DIR
#define TRANSCRIPTS_DIR "tests/transcripts"
#endif
#ifndef FIXTURES_DIR
#define FIXTURES_DIR "../shared/fixtures"
#endif

static int failures;

static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "FAIL: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  failures++;
}

/* ---- a counting allocator that can be told to fail ---- */

struct talloc {
  size_t live, peak;     /* bytes */
  long calls;            /* allocations and growths so far */
  long fail_at;          /* the first call that fails (and all later ones), -1 never */
};

static void *talloc_fn(void *ud, void *ptr, size_t osize, size_t nsize) {
  struct talloc *a = ud;
  void *np;
  if (ptr == NULL)
    osize = 0;
  if (nsize == 0) {
    a->live -= osize;
    free(ptr);
    return NULL;
  }
  if (a->calls++ >= a->fail_at && a->fail_at >= 0)
    return NULL;                 /* fails from call fail_at on */
  if ((np = realloc(ptr, nsize)) == NULL)
    return NULL;
  a->live = a->live - osize + nsize;
  if (a->live > a->peak)
    a->peak = a->live;
  return np;
}

static void talloc_init(struct talloc *a, long fail_at) {
  a->live = a->peak = 0;
  a->calls = 0;
  a->fail_at = fail_at;
}

/* ---- growable text for serialized output ---- */

struct text { char *s; size_t len, cap; };

static void text_add(struct text *t, const char *p, size_t n) {
  if (t->len + n + 1 > t->cap) {
    size_t c = t->cap ? t->cap : 256;
    while (c < t->len + n + 1) c *= 2;
    if ((t->s = realloc(t->s, c)) == NULL) { perror("realloc"); exit(2); }
    t->cap = c;
  }
  memcpy(t->s + t->len, p, n);
  t->len += n;
  t->s[t->len] = '\0';
}

static void text_fmt(struct text *t, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  text_add(t, tmp, (size_t)n);
}

/* `\N` stands for NULL; backslash, LF, CR, TAB and NUL are escaped. */
static void text_esc(struct text *t, const char *p, size_t n) {
  size_t i;
  if (p == NULL) { text_add(t, "\\N", 2); return; }
  for (i = 0; i < n; i++) {
    switch (p[i]) {
    case '\\': text_add(t, "\\\\", 2); break;
    case '\n': text_add(t, "\\n", 2); break;
    case '\r': text_add(t, "\\r", 2); break;
    case '\t': text_add(t, "\\t", 2); break;
    case '\0': text_add(t, "\\0", 2); break;
    default: text_add(t, p + i, 1);
    }
  }
}

static int text_emit(void *ud, const struct sse_event *ev) {
  struct text *t = ud;
  text_add(t, "ev\t", 3);
  text_esc(t, ev->name, ev->name_len);
  text_add(t, "\t", 1);
  text_esc(t, ev->id, ev->id_len);
  text_add(t, "\t", 1);
  text_esc(t, ev->data, ev->data_len);
  text_add(t, "\n", 1);
  return 0;
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *s = NULL;
  size_t cap = 0, n = 0, r;
  if (f == NULL)
    return NULL;
  do {
    if (n + 4096 + 1 > cap) {
      cap = cap ? cap * 2 : 8192;
      if ((s = realloc(s, cap)) == NULL) { perror("realloc"); exit(2); }
    }
    r = fread(s + n, 1, cap - n - 1, f);
    n += r;
  } while (r > 0);
  fclose(f);
  s[n] = '\0';
  *len = n;
  return s;
}

static int has_suffix(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && strcmp(s + a - b, suf) == 0;
}

static const char *rc_name(int rc) {
  switch (rc) {
  case SSE_OK: return "ok";
  case SSE_ENOMEM: return "enomem";
  case SSE_ETOOBIG: return "toobig";
  case SSE_EEMIT: return "eemit";
  }
  return "?";
}

/* ---- one parse: feed `input` cut at cuts[0..ncuts), then finish ---- */

struct run {
  enum sse_mode mode;
  size_t max;
  long fail_at;          /* allocator failure, -1 none */
  struct talloc alloc;   /* after the run */
  int rc;
};

static void run_parse(struct run *r, const char *in, size_t len, const size_t *cuts, int ncuts,
                      sse_emit_fn emit, void *ud, struct sse *out_counts) {
  struct sse p;
  size_t at = 0;
  int i, rc = SSE_OK;
  talloc_init(&r->alloc, r->fail_at);
  sse_init(&p, r->mode, r->max, talloc_fn, &r->alloc, emit, ud);
  for (i = 0; i <= ncuts && rc == SSE_OK; i++) {
    size_t to = i < ncuts ? cuts[i] : len;
    rc = sse_feed(&p, in + at, to - at);
    at = to;
  }
  if (rc == SSE_OK)
    rc = sse_finish(&p);
  else if (sse_feed(&p, "\n\n", 2) != rc || sse_finish(&p) != rc)
    fail("an error is not sticky");
  r->rc = rc;
  *out_counts = p;
  sse_free(&p);
  if (r->alloc.live != 0)
    fail("%zu bytes still allocated after sse_free", r->alloc.live);
}

static void serialize_tail(struct text *t, const struct sse *p, int rc) {
  if (p->comments) text_fmt(t, "comments %zu\n", p->comments);
  if (p->retry_ms >= 0) text_fmt(t, "retry %ld\n", p->retry_ms);
  if (p->partial) text_fmt(t, "partial %zu\n", p->partial);
  if (rc != SSE_OK) text_fmt(t, "error %s\n", rc_name(rc));
}

static void run_text(struct run *r, const char *in, size_t len, const size_t *cuts, int ncuts,
                     struct text *t) {
  struct sse counts;
  t->len = 0;
  text_add(t, "", 0);
  run_parse(r, in, len, cuts, ncuts, text_emit, t, &counts);
  serialize_tail(t, &counts, r->rc);
}

/* ---- hand-written transcripts ---- */

/* The .events file: lines starting with '#' are notes, `max N` sets the cap,
 * every other line is expected output as serialized above. */
static void load_expect(const char *path, struct text *t, size_t *max) {
  size_t len;
  char *s = read_file(path, &len), *line, *nl;
  t->len = 0;
  text_add(t, "", 0);
  *max = 0;
  if (s == NULL) { fail("cannot read %s", path); return; }
  for (line = s; *line; line = nl + 1) {
    if ((nl = strchr(line, '\n')) == NULL) nl = line + strlen(line);
    if (line[0] == '#' || nl == line) {
    } else if (strncmp(line, "max ", 4) == 0) {
      *max = (size_t)strtoul(line + 4, NULL, 10);
    } else {
      text_add(t, line, (size_t)(nl - line));
      text_add(t, "\n", 1);
    }
    if (*nl == '\0') break;
  }
  free(s);
}

static int test_transcript(const char *dir, const char *file) {
  char path[1024], epath[1024];
  size_t len, max, i, j, cuts[2], runs = 0;
  char *in;
  struct text want = {0}, got = {0};
  struct run r;
  int before = failures;
  snprintf(path, sizeof path, "%s/%s", dir, file);
  snprintf(epath, sizeof epath, "%.*s.events", (int)(strrchr(path, '.') - path), path);
  if ((in = read_file(path, &len)) == NULL) { fail("cannot read %s", path); return 0; }
  load_expect(epath, &want, &max);
  r.mode = has_suffix(file, ".ndjson") ? SSE_MODE_NDJSON : SSE_MODE_SSE;
  r.max = max;
  r.fail_at = -1;
  run_text(&r, in, len, NULL, 0, &got);
  if (strcmp(got.s, want.s) != 0)
    fail("%s whole:\n--- want\n%s--- got\n%s", file, want.s, got.s);
  if (max && r.alloc.peak > 2 * max)
    fail("%s: %zu bytes allocated with a cap of %zu", file, r.alloc.peak, max);
  for (i = 0; i <= len && failures == before; i++, runs++) {   /* every two-way split */
    cuts[0] = i;
    run_text(&r, in, len, cuts, 1, &got);
    if (strcmp(got.s, want.s) != 0)
      fail("%s split at %zu:\n--- want\n%s--- got\n%s", file, i, want.s, got.s);
  }
  if (len <= 512) {                                             /* every three-way split */
    for (i = 0; i <= len && failures == before; i++)
      for (j = i; j <= len && failures == before; j++, runs++) {
        cuts[0] = i;
        cuts[1] = j;
        run_text(&r, in, len, cuts, 2, &got);
        if (strcmp(got.s, want.s) != 0)
          fail("%s split at %zu,%zu:\n--- want\n%s--- got\n%s", file, i, j, want.s, got.s);
      }
  }
  if (failures == before) {                                     /* byte by byte */
    size_t *all = malloc((len + 1) * sizeof *all);
    for (i = 0; i < len; i++) all[i] = i + 1;
    run_text(&r, in, len, all, (int)len, &got);
    runs++;
    if (strcmp(got.s, want.s) != 0)
      fail("%s byte by byte:\n--- want\n%s--- got\n%s", file, want.s, got.s);
    free(all);
  }
  printf("%s %s (%zu bytes, %zu parses)\n", failures == before ? "ok  " : "FAIL", file, len, runs);
  free(in);
  free(want.s);
  free(got.s);
  return 1;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int test_transcripts(void) {
  DIR *d = opendir(TRANSCRIPTS_DIR);
  struct dirent *e;
  char *names[512];
  int n = 0, i, count = 0;
  if (d == NULL) { fail("no transcripts at %s", TRANSCRIPTS_DIR); return 1; }
  while ((e = readdir(d)) != NULL && n < 512)
    if (has_suffix(e->d_name, ".sse") || has_suffix(e->d_name, ".ndjson"))
      names[n++] = strdup(e->d_name);
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  for (i = 0; i < n; i++) {
    count += test_transcript(TRANSCRIPTS_DIR, names[i]);
    free(names[i]);
  }
  printf("%d transcripts at %s\n", count, TRANSCRIPTS_DIR);
  if (count < 20) fail("expected at least 20 transcripts, found %d", count);
  return failures ? 1 : 0;
}

/* ---- shared fixtures ---- */

/* Compares the events of a parse with a reference queue as they come. */
struct cmp {
  const struct sse_queue *ref;
  size_t pos;
  int bad;
};

static int same(const char *a, size_t an, const char *b, size_t bn) {
  if ((a == NULL) != (b == NULL)) return 0;
  return a == NULL || (an == bn && memcmp(a, b, an) == 0);
}

static int cmp_emit(void *ud, const struct sse_event *ev) {
  struct cmp *c = ud;
  struct sse_event want;
  if (!sse_queue_next(c->ref, &c->pos, &want) || !same(ev->name, ev->name_len, want.name, want.name_len) ||
      !same(ev->data, ev->data_len, want.data, want.data_len) || !same(ev->id, ev->id_len, want.id, want.id_len))
    c->bad = 1;
  return 0;
}

/* The integer after "key": inside the "stream_facts" object, -1 when absent. */
static long facts_int(const char *json, const char *key) {
  char pat[64];
  const char *s = strstr(json, "\"stream_facts\"");
  if (s == NULL) return -1;
  snprintf(pat, sizeof pat, "\"%s\"", key);
  if ((s = strstr(s, pat)) == NULL) return -1;
  s += strlen(pat);
  while (*s == ' ' || *s == ':' || *s == '\n' || *s == '\t' || *s == '\r') s++;
  if (*s < '0' || *s > '9') return -1;
  return strtol(s, NULL, 10);
}

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;   /* fixed seed: runs are reproducible */
static size_t rng_below(size_t n) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (size_t)(rng_state % n);
}

static int cmp_size(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return x < y ? -1 : x > y;
}

static void check_split(const char *name, const char *in, size_t len, size_t *cuts, int ncuts,
                        const struct sse_queue *ref, const struct sse *want, const char *how) {
  struct cmp c = { ref, 0, 0 };
  struct run r = { SSE_MODE_SSE, 0, -1, {0, 0, 0, 0}, 0 };
  struct sse got;
  run_parse(&r, in, len, cuts, ncuts, cmp_emit, &c, &got);
  if (c.bad || r.rc != SSE_OK || got.events != want->events || got.comments != want->comments ||
      got.partial != want->partial || got.retry_ms != want->retry_ms)
    fail("%s: %s (cuts %zu %zu) differs from the whole parse", name, how,
         ncuts > 0 ? cuts[0] : 0, ncuts > 1 ? cuts[1] : 0);
}

/* LLM_SPLIT_STRIDE=N tries only every Nth two-way split of a fixture: for
 * slow runs under valgrind (the default, 1, tries all of them). */
static size_t split_stride = 1;

static int test_fixture(const char *dir, const char *sub, const char *file) {
  char path[1024], epath[1024];
  size_t len, elen, i, cuts[2], *all;
  char *in, *expect;
  long want_events, want_comments;
  struct sse_queue ref;
  struct sse whole;
  struct run r = { SSE_MODE_SSE, 0, -1, {0, 0, 0, 0}, 0 };
  int before = failures, k;
  snprintf(path, sizeof path, "%s/%s/%s", dir, sub, file);
  snprintf(epath, sizeof epath, "%s/%s/%.*s.expect.json", dir, sub, (int)(strlen(file) - 4), file);
  if ((in = read_file(path, &len)) == NULL) { fail("cannot read %s", path); return 0; }
  if ((expect = read_file(epath, &elen)) == NULL) { fail("cannot read %s", epath); free(in); return 0; }
  want_events = facts_int(expect, "events");
  want_comments = facts_int(expect, "comment_lines");
  sse_queue_init(&ref, 0, NULL, NULL);
  run_parse(&r, in, len, NULL, 0, sse_queue_emit, &ref, &whole);
  if (r.rc != SSE_OK) fail("%s/%s: %s", sub, file, rc_name(r.rc));
  if (want_events < 0 || (long)whole.events != want_events || (long)ref.count != want_events)
    fail("%s/%s: %zu events, expected %ld", sub, file, whole.events, want_events);
  if (want_comments < 0 || (long)whole.comments != want_comments)
    fail("%s/%s: %zu comment lines, expected %ld", sub, file, whole.comments, want_comments);
  if (whole.partial != 0)
    fail("%s/%s: %zu bytes of an unterminated event", sub, file, whole.partial);
  all = malloc((len + 1) * sizeof *all);
  for (i = 0; i < len; i++) all[i] = i + 1;
  check_split(file, in, len, all, (int)len, &ref, &whole, "byte by byte");
  free(all);
  if (len <= 32768) {
    for (i = 0; i <= len && failures == before; i += split_stride) {
      cuts[0] = i;
      check_split(file, in, len, cuts, 1, &ref, &whole, "two-way split");
    }
  } else {
    for (k = 0; k < 2000 && failures == before; k++) {
      cuts[0] = rng_below(len + 1);
      cuts[1] = rng_below(len + 1);
      qsort(cuts, 2, sizeof *cuts, cmp_size);
      check_split(file, in, len, cuts, 1 + (k & 1), &ref, &whole,
                  k & 1 ? "random three-way split" : "random two-way split");
    }
  }
  printf("%s %s/%s (%zu bytes, %zu events, %zu comments)\n", failures == before ? "ok  " : "FAIL",
         sub, file, len, whole.events, whole.comments);
  sse_queue_free(&ref);
  free(in);
  free(expect);
  return 1;
}

static int test_fixtures(void) {
  const char *dir = getenv("LLM_FIXTURES");
  DIR *d, *sd;
  struct dirent *e, *f;
  char *subs[64], *files[256], sub[1024];
  int nsubs = 0, nfiles, i, j, count = 0;
  const char *stride = getenv("LLM_SPLIT_STRIDE");
  if (stride != NULL && atoi(stride) > 1)
    split_stride = (size_t)atoi(stride);
  if (dir == NULL || *dir == '\0')
    dir = FIXTURES_DIR;
  if ((d = opendir(dir)) == NULL) {
    printf("fixtures absent (%s)\n", dir);
    return 77;
  }
  while ((e = readdir(d)) != NULL && nsubs < 64)
    if (e->d_name[0] != '.')
      subs[nsubs++] = strdup(e->d_name);
  closedir(d);
  qsort(subs, (size_t)nsubs, sizeof *subs, cmp_str);
  for (i = 0; i < nsubs; i++) {
    snprintf(sub, sizeof sub, "%s/%s", dir, subs[i]);
    if ((sd = opendir(sub)) != NULL) {
      nfiles = 0;
      while ((f = readdir(sd)) != NULL && nfiles < 256)
        if (has_suffix(f->d_name, ".sse"))
          files[nfiles++] = strdup(f->d_name);
      closedir(sd);
      qsort(files, (size_t)nfiles, sizeof *files, cmp_str);
      for (j = 0; j < nfiles; j++) {
        count += test_fixture(dir, subs[i], files[j]);
        free(files[j]);
      }
    }
    free(subs[i]);
  }
  printf("%d fixtures at %s\n", count, dir);
  if (count == 0) {
    printf("fixtures absent (no .sse files in %s)\n", dir);
    return 77;
  }
  return failures ? 1 : 0;
}

/* ---- allocator, ENOMEM, cap, buf, queue ---- */

static const char nomem_input[] =
  "\xEF\xBB\xBF: hello\r\nevent: update\r\nid: 42\r\ndata: first line\r\ndata: second line\r\n\r\n"
  "data: {\"a\": 1}\n\nevent: end\nid: 43\ndata: done\n\n";

/* Length of the leading "ev\t..." lines of a serialized parse. */
static size_t event_lines(const char *s) {
  const char *p = s;
  while (strncmp(p, "ev\t", 3) == 0 && strchr(p, '\n') != NULL)
    p = strchr(p, '\n') + 1;
  return (size_t)(p - s);
}

static void test_nomem(void) {
  struct text want = {0}, got = {0};
  struct run r = { SSE_MODE_SSE, 0, -1, {0, 0, 0, 0}, 0 };
  size_t len = sizeof nomem_input - 1, *all = malloc(len * sizeof *all), i;
  long n, ok = 0, nomem = 0;
  int split;
  for (i = 0; i < len; i++) all[i] = i + 1;
  run_text(&r, nomem_input, len, NULL, 0, &want);
  if (r.alloc.peak == 0) fail("the allocator was not used");
  for (split = 0; split < 2; split++) {
    for (n = 0; n < 64; n++) {
      r.fail_at = n;
      run_text(&r, nomem_input, len, all, split ? (int)len : 0, &got);
      if (r.rc == SSE_OK) {
        ok++;
        if (strcmp(got.s, want.s) != 0) fail("fail_at %ld: output differs:\n%s", n, got.s);
      } else if (r.rc == SSE_ENOMEM) {
        size_t evs = event_lines(got.s);
        nomem++;
        if (strstr(got.s, "error enomem") == NULL || strncmp(got.s, want.s, evs) != 0)
          fail("fail_at %ld: bad partial output:\n%s", n, got.s);
      } else {
        fail("fail_at %ld: unexpected %s", n, rc_name(r.rc));
      }
    }
  }
  if (nomem == 0 || ok == 0) fail("ENOMEM never (or always) reported: %ld/%ld", nomem, ok);
  free(all);
  free(want.s);
  free(got.s);
}

static void test_cap(void) {
  struct talloc a;
  struct sse p;
  char chunk[1000];
  int i, rc = SSE_OK;
  size_t max = 4096;
  memset(chunk, 'x', sizeof chunk);
  talloc_init(&a, -1);
  sse_init(&p, SSE_MODE_SSE, max, talloc_fn, &a, NULL, NULL);
  rc = sse_feed(&p, "data: ", 6);
  for (i = 0; i < 1000 && rc == SSE_OK; i++)   /* one endless line */
    rc = sse_feed(&p, chunk, sizeof chunk);
  if (rc != SSE_ETOOBIG || i > 5) fail("endless line: %s after %d chunks", rc_name(rc), i);
  if (a.peak > 2 * max) fail("endless line: %zu bytes allocated with a cap of %zu", a.peak, max);
  sse_free(&p);
  talloc_init(&a, -1);
  sse_init(&p, SSE_MODE_SSE, max, talloc_fn, &a, NULL, NULL);
  rc = SSE_OK;
  for (i = 0; i < 100000 && rc == SSE_OK; i++)   /* endless event of short data lines */
    rc = sse_feed(&p, "data: 0123456789abcdef\n", 23);
  if (rc != SSE_ETOOBIG || i > 300) fail("endless event: %s after %d lines", rc_name(rc), i);
  if (a.peak > 2 * max) fail("endless event: %zu bytes allocated with a cap of %zu", a.peak, max);
  sse_free(&p);
  talloc_init(&a, -1);
  sse_init(&p, SSE_MODE_NDJSON, max, talloc_fn, &a, NULL, NULL);
  rc = SSE_OK;
  for (i = 0; i < 1000 && rc == SSE_OK; i++)
    rc = sse_feed(&p, chunk, sizeof chunk);
  if (rc != SSE_ETOOBIG || a.peak > 2 * max) fail("ndjson endless line: %s, %zu bytes", rc_name(rc), a.peak);
  sse_free(&p);
  if (a.live != 0) fail("cap: %zu bytes leaked", a.live);
  /* the default cap is 16 MiB */
  sse_init(&p, SSE_MODE_SSE, 0, NULL, NULL, NULL, NULL);
  if (p.max_event != SSE_DEFAULT_MAX_EVENT || SSE_DEFAULT_MAX_EVENT != 16u << 20) fail("default cap");
  sse_free(&p);
}

static void test_buf(void) {
  struct talloc a;
  struct buf b;
  size_t i;
  talloc_init(&a, -1);
  buf_init(&b, 100, talloc_fn, &a);
  if (b.data != NULL || a.peak != 0) fail("buf_init allocates");
  for (i = 0; i < 100; i++)
    if (buf_append(&b, "x", 1) != BUF_OK) fail("buf_append %zu", i);
  if (buf_append(&b, "x", 1) != BUF_ETOOBIG || b.len != 100 || b.cap > 100) fail("buf max");
  if (a.calls > 2 || a.peak > 100) fail("buf growth: %zu bytes", a.peak);
  buf_consume(&b, 40);
  if (b.len != 60) fail("buf_consume");
  buf_consume(&b, 1000);
  if (b.len != 0) fail("buf_consume all");
  if (buf_append(&b, "abc", 3) != BUF_OK || memcmp(b.data, "abc", 3) != 0) fail("append after consume");
  buf_consume(&b, 1);
  if (b.len != 2 || memcmp(b.data, "bc", 2) != 0) fail("consume keeps the rest");
  buf_reset(&b);
  if (b.len != 0 || b.data == NULL) fail("buf_reset keeps memory");
  buf_free(&b);
  if (a.live != 0 || b.data != NULL) fail("buf_free");
  /* amortized growth: few reallocations for many appends */
  talloc_init(&a, -1);
  buf_init(&b, 0, talloc_fn, &a);
  for (i = 0; i < 100000; i++) buf_append(&b, "0123456789", 10);
  if (b.len != 1000000 || a.calls > 20) fail("growth not amortized: %ld allocations", a.calls);
  buf_free(&b);
  /* ENOMEM leaves the buffer as it was */
  talloc_init(&a, 1);
  buf_init(&b, 0, talloc_fn, &a);
  if (buf_append(&b, "abc", 3) != BUF_OK) fail("first append");
  if (buf_append(&b, nomem_input, sizeof nomem_input) != BUF_ENOMEM) fail("ENOMEM not reported");
  if (b.len != 3 || memcmp(b.data, "abc", 3) != 0) fail("ENOMEM changed the buffer");
  buf_free(&b);
  if (a.live != 0) fail("buf leak");
  /* the default allocator */
  buf_init(&b, 0, NULL, NULL);
  if (buf_append(&b, "abc", 3) != BUF_OK) fail("default allocator");
  buf_free(&b);
}

static void test_queue(void) {
  struct talloc a;
  struct sse_queue q;
  struct sse_event ev, in[4] = {
    { "update", 6, "one", 3, "7", 1 },
    { NULL, 0, "", 0, "7", 1 },
    { NULL, 0, "three\nlines\n", 12, NULL, 0 },
    { "", 0, "four", 4, "8", 1 },
  };
  size_t pos = 0;
  int i, j;
  talloc_init(&a, -1);
  sse_queue_init(&q, 0, talloc_fn, &a);
  for (j = 0; j < 2; j++) {
    for (i = 0; i < 4; i++)
      if (sse_queue_push(&q, &in[i]) != BUF_OK) fail("queue push");
    if (q.count != 4) fail("queue count");
    for (i = 0, pos = 0; sse_queue_next(&q, &pos, &ev); i++)
      if (i >= 4 || !same(ev.name, ev.name_len, in[i].name, in[i].name_len) ||
          !same(ev.data, ev.data_len, in[i].data, in[i].data_len) ||
          !same(ev.id, ev.id_len, in[i].id, in[i].id_len))
        fail("queue record %d", i);
    if (i != 4) fail("queue iterated %d records", i);
    sse_queue_clear(&q);
    if (q.count != 0 || sse_queue_next(&q, (pos = 0, &pos), &ev)) fail("queue clear");
  }
  sse_queue_free(&q);
  /* a failed push leaves the queue as it was and is reported */
  talloc_init(&a, 1);
  sse_queue_init(&q, 0, talloc_fn, &a);
  if (sse_queue_push(&q, &in[0]) != BUF_OK) fail("first push");
  {
    static char big[4096];
    struct sse_event e = { NULL, 0, big, sizeof big, NULL, 0 };
    if (sse_queue_push(&q, &e) != BUF_ENOMEM || q.err != BUF_ENOMEM || q.count != 1)
      fail("queue ENOMEM");
    if (sse_queue_emit(&q, &e) == 0) fail("sse_queue_emit hides the failure");
  }
  sse_queue_free(&q);
  if (a.live != 0) fail("queue leak");
  /* an emit failure stops the parser with SSE_EEMIT */
  {
    struct sse p;
    talloc_init(&a, -1);
    sse_queue_init(&q, 64, talloc_fn, &a);   /* room for about one record */
    sse_init(&p, SSE_MODE_NDJSON, 0, talloc_fn, &a, sse_queue_emit, &q);
    if (sse_feed(&p, "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n", 24) != SSE_EEMIT || q.err != BUF_ETOOBIG ||
        q.count != 1 || p.events != 1)
      fail("EEMIT: events %zu queued %zu", p.events, q.count);
    sse_free(&p);
    sse_queue_free(&q);
    if (a.live != 0) fail("EEMIT leak");
  }
}

static int test_alloc(void) {
  test_buf();
  test_queue();
  test_cap();
  test_nomem();
  printf("%s alloc\n", failures ? "FAIL" : "ok  ");
  return failures ? 1 : 0;
}

int main(int argc, char **argv) {
  const char *what = argc > 1 ? argv[1] : "all";
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (strcmp(what, "transcripts") == 0) return test_transcripts();
  if (strcmp(what, "fixtures") == 0) return test_fixtures();
  if (strcmp(what, "alloc") == 0) return test_alloc();
  if (strcmp(what, "all") == 0) {
    int rc = test_alloc() | test_transcripts(), frc = test_fixtures();
    return rc ? 1 : frc == 77 ? 0 : frc;
  }
  fprintf(stderr, "usage: %s [transcripts|fixtures|alloc|all]\n", argv[0]);
  return 2;
}
