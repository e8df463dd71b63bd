/*
 * bench_ref_client: the reference for bench/run.sh. A plain libcurl C client doing the work
 * the library does in the same benchmark: K concurrent POSTs (same URL, headers and body as
 * the library sends), each response split into SSE events on blank lines and counted.
 *
 * The loop is the one the library's core uses (curl_multi_socket_action driven by epoll,
 * libcurl's timeout on a timerfd), so the comparison measures what the library adds on top
 * of libcurl, not a difference between event-loop styles. The SSE splitter is minimal (LF
 * line endings only) but copies each event's bytes out as a real consumer would.
 *
 *   bench_ref_client --url URL [--body JSON] [--events N] [--delay-ms D] [--streams K]
 *                    [--name NAME] [--timeout S]
 *
 * Prints one line: RESULT name=... events=... streams=... errors=... wall=... cpu=...
 * user=... sys=... maxrss_kb=...; wall covers the transfers only, CPU and peak RSS the whole
 * process (getrusage).
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

#define DEFAULT_BODY \
  "{\"messages\":[{\"content\":\"hi\",\"role\":\"user\"}],\"model\":\"m\",\"stream\":true," \
  "\"stream_options\":{\"include_usage\":true}}"

/* One response: the SSE splitter's state and the event being collected. */
struct stream {
  CURL *easy;
  struct curl_slist *headers;
  char *ev;           /* bytes of the current event (its lines, each ending in LF) */
  size_t evlen, evcap;
  int line_start;     /* the next byte begins a line */
  long long events;   /* events dispatched */
  int failed;
};

static struct {
  CURLM *multi;
  int ep, tfd;
  long long events, bytes_out;
  int running;
} g;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int ev_append(struct stream *s, const char *p, size_t n) {
  if (s->evlen + n > s->evcap) {
    size_t cap = s->evcap ? s->evcap : 1024;
    while (cap < s->evlen + n) cap *= 2;
    char *q = realloc(s->ev, cap);
    if (!q) return -1;
    s->ev = q;
    s->evcap = cap;
  }
  memcpy(s->ev + s->evlen, p, n);
  s->evlen += n;
  return 0;
}

/* An event is complete: hand it over (here: count it and touch its bytes) and reset. */
static void ev_dispatch(struct stream *s) {
  if (s->evlen == 0) return;  /* a blank line with no event before it dispatches nothing */
  s->events++;
  g.bytes_out += (long long)s->evlen;
  s->evlen = 0;
}

/* Write callback: split on LF, a blank line ends an event. Touches only C state. */
static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  struct stream *s = ud;
  size_t len = size * n, i = 0;
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

static void drain_done(void) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(g.multi, &left)) != NULL) {
    if (msg->msg != CURLMSG_DONE) continue;
    struct stream *s;
    long status = 0;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
    curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
    if (msg->data.result != CURLE_OK || status != 200) {
      s->failed = 1;
      fprintf(stderr, "transfer failed: %s (status %ld)\n", curl_easy_strerror(msg->data.result), status);
    }
  }
}

static void usage(void) {
  fprintf(stderr, "usage: bench_ref_client --url URL [--body JSON] [--events N] [--delay-ms D]\n"
                  "                        [--streams K] [--name NAME] [--timeout S]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *url = NULL, *body = DEFAULT_BODY, *name = "ref";
  const char *events = "20", *delay = NULL;
  long streams = 1;
  double timeout = 300;
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) usage();
    const char *k = argv[i], *v = argv[i + 1];
    if (strcmp(k, "--url") == 0) url = v;
    else if (strcmp(k, "--body") == 0) body = v;
    else if (strcmp(k, "--events") == 0) events = v;
    else if (strcmp(k, "--delay-ms") == 0) delay = v;
    else if (strcmp(k, "--streams") == 0) streams = strtol(v, NULL, 10);
    else if (strcmp(k, "--name") == 0) name = v;
    else if (strcmp(k, "--timeout") == 0) timeout = strtod(v, NULL);
    else usage();
  }
  if (!url || streams < 1) usage();

  curl_global_init(CURL_GLOBAL_DEFAULT);
  g.multi = curl_multi_init();
  g.ep = epoll_create1(EPOLL_CLOEXEC);
  g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (!g.multi || g.ep < 0 || g.tfd < 0) { perror("init"); return 1; }
  struct epoll_event tev = { .events = EPOLLIN, .data.fd = g.tfd };
  epoll_ctl(g.ep, EPOLL_CTL_ADD, g.tfd, &tev);
  curl_multi_setopt(g.multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(g.multi, CURLMOPT_TIMERFUNCTION, on_timer);

  char h_events[64], h_delay[64];
  snprintf(h_events, sizeof h_events, "x-mock-events: %s", events);
  if (delay) snprintf(h_delay, sizeof h_delay, "x-mock-delay-ms: %s", delay);

  struct stream *all = calloc((size_t)streams, sizeof *all);
  if (!all) { perror("calloc"); return 1; }
  double t0 = now();
  for (long i = 0; i < streams; i++) {
    struct stream *s = &all[i];
    s->line_start = 1;
    s->easy = curl_easy_init();
    /* The headers the library's openai client sends (accept-encoding comes from
     * CURLOPT_ACCEPT_ENCODING, as in the library). */
    s->headers = curl_slist_append(s->headers, "content-type: application/json");
    s->headers = curl_slist_append(s->headers, "accept: text/event-stream");
    s->headers = curl_slist_append(s->headers, "authorization: Bearer bench");
    s->headers = curl_slist_append(s->headers, h_events);
    if (delay) s->headers = curl_slist_append(s->headers, h_delay);
    curl_easy_setopt(s->easy, CURLOPT_URL, url);
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->easy, CURLOPT_PRIVATE, (char *)s);
    curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->easy, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
    curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000));
    curl_multi_add_handle(g.multi, s->easy);
  }

  /* Kick off, then run until every transfer is done (each has CURLOPT_TIMEOUT). */
  curl_multi_socket_action(g.multi, CURL_SOCKET_TIMEOUT, 0, &g.running);
  struct epoll_event evs[256];
  while (g.running > 0) {
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
    drain_done();
  }
  drain_done();
  double wall = now() - t0;

  long long total = 0;
  long failed = 0;
  for (long i = 0; i < streams; i++) {
    total += all[i].events;
    failed += all[i].failed;
    curl_multi_remove_handle(g.multi, all[i].easy);  /* detach before cleanup */
    curl_easy_cleanup(all[i].easy);
    curl_slist_free_all(all[i].headers);
    free(all[i].ev);
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
  printf("RESULT name=%s events=%lld streams=%ld errors=%ld wall=%.6f cpu=%.6f user=%.3f sys=%.3f "
         "maxrss_kb=%ld event_bytes=%lld\n",
         name, total, streams - failed, failed, wall, user + sys, user, sys, ru.ru_maxrss, g.bytes_out);
  return failed ? 1 : 0;
}
