/*
 * bench_ref_client: the C reference for bench/run.sh. A plain libcurl client doing the work
 * the library does in the same benchmark, with the same URL, headers and body.
 *
 * The loop is the one the library's core uses (curl_multi_socket_action driven by epoll,
 * libcurl's timeout on a timerfd), so the comparison measures what the library adds on top
 * of libcurl, not a difference between event-loop styles. Every easy handle gets the options
 * the library sets that change libcurl's work (HTTP/2 over TLS with multiplexing, and
 * PIPEWAIT for https, accept-encoding, no signals).
 *
 * Modes:
 *   stream (default)  K concurrent streaming POSTs, each response split into SSE events
 *                     (LF line endings; each event's bytes copied out) and counted
 *   small             N non-streaming POSTs, C at a time, easy handles reused: each reply
 *                     body is collected (and decoded with --json)
 *   ttft              N streams one after another: the time from adding the request to the
 *                     first text delta, p50 and p99
 * --json decodes every event's data (and every small reply) with cJSON into a tree, finds
 * the delta's text, and frees the tree: the work of a client that uses every event.
 *
 *   bench_ref_client --url URL [--mode stream|small|ttft] [--json] [--body JSON]
 *                    [--events N] [--delay-ms D] [--streams K] [--requests N]
 *                    [--concurrency C] [--cacert FILE] [--name NAME] [--timeout S]
 *
 * Prints one line: RESULT name=... events=... streams=... errors=... wall=... cpu=...
 * user=... sys=... maxrss_kb=... (and requests=, p50_us=, p99_us=, connections=); wall
 * covers the transfers only, CPU and peak RSS the whole process (getrusage).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#ifdef HAVE_CJSON
#include <cjson/cJSON.h>
#endif

#define DEFAULT_BODY \
  "{\"messages\":[{\"content\":\"hi\",\"role\":\"user\"}],\"model\":\"m\",\"stream\":true," \
  "\"stream_options\":{\"include_usage\":true}}"

enum mode { M_STREAM, M_SMALL, M_TTFT };

/* One request slot: the easy handle, the SSE splitter's state, the event being collected. */
struct stream {
  CURL *easy;
  struct curl_slist *headers;
  char *ev;           /* bytes of the current event (its lines, each ending in LF), or the body */
  size_t evlen, evcap;
  char *data;         /* --json: the event's data lines joined */
  size_t datalen, datacap;
  int line_start;     /* the next byte begins a line */
  long long events;   /* events dispatched */
  int failed;
  int got_text;       /* ttft: a text delta arrived */
  double t_start;
};

static struct {
  CURLM *multi;
  int ep, tfd;
  long long events, bytes_out, texts, connects;
  int running;
  int json;
  enum mode mode;
  double ttft_at;     /* ttft: when the current request's first text delta arrived */
} g;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int grow(char **p, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : 1024;
  while (c < need) c *= 2;
  char *q = realloc(*p, c);
  if (!q) return -1;
  *p = q;
  *cap = c;
  return 0;
}

static int ev_append(struct stream *s, const char *p, size_t n) {
  if (grow(&s->ev, &s->evcap, s->evlen + n) != 0) return -1;
  memcpy(s->ev + s->evlen, p, n);
  s->evlen += n;
  return 0;
}

#ifdef HAVE_CJSON
/* The text of a decoded chunk: choices[0].delta.content (stream) or .message.content. */
static const char *chunk_text(const cJSON *doc, const char *which) {
  const cJSON *choices = cJSON_GetObjectItemCaseSensitive(doc, "choices");
  const cJSON *c0 = cJSON_IsArray(choices) ? cJSON_GetArrayItem(choices, 0) : NULL;
  const cJSON *d = c0 ? cJSON_GetObjectItemCaseSensitive(c0, which) : NULL;
  const cJSON *t = d ? cJSON_GetObjectItemCaseSensitive(d, "content") : NULL;
  return cJSON_IsString(t) ? t->valuestring : NULL;
}
#endif

/* Whether the event's data is a text delta (non-empty content). Without --json: the bytes
 * say so (the role chunk has "delta":{"role"...). */
static int ev_is_text(struct stream *s) {
  if (!g.json) return memmem(s->ev, s->evlen, "\"delta\":{\"content\":\"", 20) != NULL;
#ifdef HAVE_CJSON
  /* Join the data lines (one each in practice), then decode the whole document. */
  s->datalen = 0;
  const char *p = s->ev, *end = s->ev + s->evlen;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    if (le - p >= 5 && memcmp(p, "data:", 5) == 0) {
      const char *v = p + 5;
      if (v < le && *v == ' ') v++;
      size_t n = (size_t)(le - v);
      if (grow(&s->data, &s->datacap, s->datalen + n + 1) != 0) return 0;
      if (s->datalen) s->data[s->datalen++] = '\n';
      memcpy(s->data + s->datalen, v, n);
      s->datalen += n;
    }
    p = nl ? nl + 1 : end;
  }
  if (s->datalen == 0 || (s->datalen == 6 && memcmp(s->data, "[DONE]", 6) == 0)) return 0;
  cJSON *doc = cJSON_ParseWithLength(s->data, s->datalen);
  if (!doc) { s->failed = 1; return 0; }
  const char *text = chunk_text(doc, "delta");
  int is_text = text != NULL && text[0] != '\0';
  cJSON_Delete(doc);
  return is_text;
#else
  return 0;
#endif
}

/* An event is complete: hand it over (count it, decode it with --json) and reset. */
static void ev_dispatch(struct stream *s) {
  if (s->evlen == 0) return;  /* a blank line with no event before it dispatches nothing */
  s->events++;
  g.bytes_out += (long long)s->evlen;
  if ((g.json || g.mode == M_TTFT) && ev_is_text(s)) {
    g.texts++;
    if (!s->got_text) { s->got_text = 1; if (g.mode == M_TTFT) g.ttft_at = now(); }
  }
  s->evlen = 0;
}

/* Write callback: split on LF, a blank line ends an event. Touches only C state. */
static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  struct stream *s = ud;
  size_t len = size * n, i = 0;
  if (g.mode == M_SMALL) return ev_append(s, p, len) == 0 ? len : 0;   /* the whole body */
  while (i < len) {
    if (s->line_start && p[i] == '\n') {  /* blank line */
      ev_dispatch(s);
      i++;
      continue;
    }
    const char *nl = memchr(p + i, '\n', len - i);
    size_t end = nl ? (size_t)(nl - p) + 1 : len;  /* through the LF, or the rest */
    if (ev_append(s, p + i, end - i) != 0) return 0;  /* OOM: abort the transfer */
    s->line_start = nl != NULL;
    i = end;
  }
  return len;
}

/* CURLMOPT_SOCKETFUNCTION: keep the epoll set in step with what libcurl wants. */
static int on_socket(CURL *e, curl_socket_t fd, int what, void *up, void *sp) {
  (void)e; (void)up;
  struct epoll_event ev = { 0 };
  ev.data.fd = fd;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(g.ep, EPOLL_CTL_DEL, fd, NULL);
    return 0;
  }
  ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
  if (sp == NULL) {  /* first time libcurl mentions this socket */
    epoll_ctl(g.ep, EPOLL_CTL_ADD, fd, &ev);
    curl_multi_assign(g.multi, fd, (void *)1);
  } else {
    epoll_ctl(g.ep, EPOLL_CTL_MOD, fd, &ev);
  }
  return 0;
}

/* CURLMOPT_TIMERFUNCTION: arm (or disarm, -1) the timerfd. */
static int on_timer(CURLM *m, long ms, void *up) {
  (void)m; (void)up;
  struct itimerspec its = { 0 };
  if (ms == 0) its.it_value.tv_nsec = 1;  /* "now": the smallest nonzero expiry */
  else if (ms > 0) {
    its.it_value.tv_sec = ms / 1000;
    its.it_value.tv_nsec = (ms % 1000) * 1000000L;
  }
  timerfd_settime(g.tfd, 0, &its, NULL);
  return 0;
}

/* A finished transfer: check it; small mode decodes the body. Returns the slot. */
static struct stream *finish_one(CURLMsg *msg) {
  struct stream *s;
  long status = 0;
  curl_off_t nconn = 0;
  curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
  curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
  if (curl_easy_getinfo(msg->easy_handle, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK) g.connects += nconn;
  if (msg->data.result != CURLE_OK || status != 200) {
    s->failed = 1;
    fprintf(stderr, "transfer failed: %s (status %ld)\n", curl_easy_strerror(msg->data.result), status);
  } else if (g.mode == M_SMALL) {
    s->events++;
#ifdef HAVE_CJSON
    if (g.json) {
      cJSON *doc = cJSON_ParseWithLength(s->ev, s->evlen);
      const char *text = doc ? chunk_text(doc, "message") : NULL;
      if (text) g.bytes_out += (long long)strlen(text); else s->failed = 1;
      cJSON_Delete(doc);
    }
#endif
  }
  s->evlen = 0;
  s->line_start = 1;
  return s;
}

/* Run the loop until `stop()` says so or nothing runs; each finished transfer goes to done(). */
static void run_loop(int (*keep_going)(void), void (*done)(CURLMsg *)) {
  struct epoll_event evs[256];
  curl_multi_socket_action(g.multi, CURL_SOCKET_TIMEOUT, 0, &g.running);
  while (keep_going()) {
    int n = epoll_wait(g.ep, evs, 256, 1000);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("epoll_wait");
      break;
    }
    for (int i = 0; i < n; i++) {
      if (evs[i].data.fd == g.tfd) {
        uint64_t x;
        if (read(g.tfd, &x, sizeof x) < 0) { /* spurious wake: nothing expired */ }
        curl_multi_socket_action(g.multi, CURL_SOCKET_TIMEOUT, 0, &g.running);
      } else {
        int mask = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                   (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                   (evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
        curl_multi_socket_action(g.multi, evs[i].data.fd, mask, &g.running);
      }
    }
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(g.multi, &left)) != NULL)
      if (msg->msg == CURLMSG_DONE) done(msg);
  }
}

/* ---- the modes' bookkeeping ---- */
static long next_request, total_requests, finished_requests;
static int ttft_waiting;

static int while_running(void) { return g.running > 0; }
static void stream_done(CURLMsg *msg) { finish_one(msg); }

static void small_done(CURLMsg *msg) {
  CURL *easy = msg->easy_handle;
  finish_one(msg);
  finished_requests++;
  curl_multi_remove_handle(g.multi, easy);
  if (next_request < total_requests) {          /* the same handle carries the next request */
    next_request++;
    curl_multi_add_handle(g.multi, easy);
  }
}
static int small_going(void) { return finished_requests < total_requests; }

static void ttft_done(CURLMsg *msg) {
  finish_one(msg);
  curl_multi_remove_handle(g.multi, msg->easy_handle);
  ttft_waiting = 0;
}
static int ttft_going(void) { return ttft_waiting; }

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void usage(void) {
  fprintf(stderr, "usage: bench_ref_client --url URL [--mode stream|small|ttft] [--json] [--body JSON]\n"
                  "        [--events N] [--delay-ms D] [--streams K] [--requests N] [--concurrency C]\n"
                  "        [--cacert FILE] [--name NAME] [--timeout S]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *url = NULL, *body = DEFAULT_BODY, *name = "ref", *cacert = NULL;
  const char *events = "20", *delay = NULL;
  long streams = 1, requests = 0, concurrency = 64;
  double timeout = 300;
  for (int i = 1; i < argc; i += 2) {
    const char *k = argv[i];
    if (strcmp(k, "--json") == 0) { g.json = 1; i--; continue; }
    if (i + 1 >= argc) usage();
    const char *v = argv[i + 1];
    if (strcmp(k, "--url") == 0) url = v;
    else if (strcmp(k, "--mode") == 0) {
      if (strcmp(v, "stream") == 0) g.mode = M_STREAM;
      else if (strcmp(v, "small") == 0) g.mode = M_SMALL;
      else if (strcmp(v, "ttft") == 0) g.mode = M_TTFT;
      else usage();
    }
    else if (strcmp(k, "--body") == 0) body = v;
    else if (strcmp(k, "--events") == 0) events = v;
    else if (strcmp(k, "--delay-ms") == 0) delay = v;
    else if (strcmp(k, "--streams") == 0) streams = strtol(v, NULL, 10);
    else if (strcmp(k, "--requests") == 0) requests = strtol(v, NULL, 10);
    else if (strcmp(k, "--concurrency") == 0) concurrency = strtol(v, NULL, 10);
    else if (strcmp(k, "--cacert") == 0) cacert = v;
    else if (strcmp(k, "--name") == 0) name = v;
    else if (strcmp(k, "--timeout") == 0) timeout = strtod(v, NULL);
    else usage();
  }
  if (!url || streams < 1) usage();
#ifndef HAVE_CJSON
  if (g.json) { fprintf(stderr, "bench_ref_client: built without cJSON (libcjson-dev): no --json\n"); return 2; }
#endif
  if (g.mode != M_STREAM && requests < 1) usage();
  if (g.mode == M_SMALL) streams = concurrency < requests ? concurrency : requests;
  if (g.mode == M_TTFT) streams = 1;

  curl_global_init(CURL_GLOBAL_DEFAULT);
  g.multi = curl_multi_init();
  g.ep = epoll_create1(EPOLL_CLOEXEC);
  g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (!g.multi || g.ep < 0 || g.tfd < 0) { perror("init"); return 1; }
  struct epoll_event tev = { .events = EPOLLIN, .data.fd = g.tfd };
  epoll_ctl(g.ep, EPOLL_CTL_ADD, g.tfd, &tev);
  curl_multi_setopt(g.multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(g.multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(g.multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);

  char h_events[64], h_delay[64];
  snprintf(h_events, sizeof h_events, "x-mock-events: %s", events);
  if (delay) snprintf(h_delay, sizeof h_delay, "x-mock-delay-ms: %s", delay);

  struct stream *all = calloc((size_t)streams, sizeof *all);
  if (!all) { perror("calloc"); return 1; }
  for (long i = 0; i < streams; i++) {
    struct stream *s = &all[i];
    s->line_start = 1;
    s->easy = curl_easy_init();
    /* The headers the library's openai client sends (accept-encoding comes from
     * CURLOPT_ACCEPT_ENCODING, as in the library). */
    s->headers = curl_slist_append(s->headers, "content-type: application/json");
    s->headers = curl_slist_append(s->headers, g.mode == M_SMALL ? "accept: application/json"
                                                                 : "accept: text/event-stream");
    s->headers = curl_slist_append(s->headers, "authorization: Bearer bench");
    if (g.mode != M_SMALL) s->headers = curl_slist_append(s->headers, h_events);
    if (delay && g.mode != M_SMALL) s->headers = curl_slist_append(s->headers, h_delay);
    s->headers = curl_slist_append(s->headers, "Expect:");
    curl_easy_setopt(s->easy, CURLOPT_URL, url);
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->easy, CURLOPT_PRIVATE, (char *)s);
    curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->easy, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(s->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    if (strncmp(url, "https:", 6) == 0) curl_easy_setopt(s->easy, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
    curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000));
    if (cacert) curl_easy_setopt(s->easy, CURLOPT_CAINFO, cacert);
  }

  double t0 = now(), p50 = 0, p99 = 0;
  if (g.mode == M_STREAM) {
    for (long i = 0; i < streams; i++) curl_multi_add_handle(g.multi, all[i].easy);
    run_loop(while_running, stream_done);
    for (long i = 0; i < streams; i++) curl_multi_remove_handle(g.multi, all[i].easy);
  } else if (g.mode == M_SMALL) {
    total_requests = requests;
    for (long i = 0; i < streams; i++) { next_request++; curl_multi_add_handle(g.multi, all[i].easy); }
    run_loop(small_going, small_done);
  } else {
    double *lat = calloc((size_t)requests, sizeof *lat);
    long n = 0;
    if (!lat) { perror("calloc"); return 1; }
    for (long r = 0; r < requests; r++) {
      struct stream *s = &all[0];
      s->got_text = 0;
      g.ttft_at = 0;
      s->t_start = now();
      ttft_waiting = 1;
      curl_multi_add_handle(g.multi, s->easy);
      run_loop(ttft_going, ttft_done);
      if (g.ttft_at > 0) lat[n++] = (g.ttft_at - s->t_start) * 1e6;
      else s->failed = 1;
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    if (n > 0) { p50 = lat[(n - 1) / 2]; p99 = lat[(long)((double)(n - 1) * 0.99)]; }
    free(lat);
  }
  double wall = now() - t0;

  long long total = 0;
  long failed = 0;
  for (long i = 0; i < streams; i++) {
    total += all[i].events;
    failed += all[i].failed;
    curl_easy_cleanup(all[i].easy);
    curl_slist_free_all(all[i].headers);
    free(all[i].ev);
    free(all[i].data);
  }
  free(all);
  curl_multi_cleanup(g.multi);
  close(g.tfd);
  close(g.ep);
  curl_global_cleanup();

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
  double sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  long nstreams = g.mode == M_STREAM ? streams : requests;
  printf("RESULT name=%s events=%lld streams=%ld errors=%ld wall=%.6f cpu=%.6f user=%.3f sys=%.3f "
         "maxrss_kb=%ld event_bytes=%lld texts=%lld connections=%lld",
         name, total, nstreams - failed, failed, wall, user + sys, user, sys, ru.ru_maxrss, g.bytes_out,
         g.texts, g.connects);
  if (g.mode != M_STREAM) printf(" requests=%ld", requests);
  if (g.mode == M_TTFT) printf(" p50_us=%.1f p99_us=%.1f", p50, p99);
  printf("\n");
  return failed ? 1 : 0;
}
