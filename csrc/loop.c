/* The event loop: one libcurl multi handle driven by curl_multi_socket_action, an epoll set
 * and a timerfd, so the whole loop is one pollable file descriptor and step(0) costs nothing
 * when idle. libcurl's callbacks here touch only C state (STYLE §3); step() hands Lua plain
 * records once libcurl has returned. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>

#include "internal.h"

#define MAX_EPOLL_EVENTS 256
/* One step reports at most about this much work and leaves the rest for the next step (which
 * then does not wait), so a host calling step(0) every frame keeps its frame time. The budget
 * is checked between transfers: one transfer's batch (bounded by its queue cap) is whole. */
#define STEP_EVENT_BUDGET 4096
#define STEP_TIME_BUDGET 0.0005

double llm_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct loop *checkloop(lua_State *L, int i) {
  struct loop *lp = luaL_checkudata(L, i, LLM_LOOP);
  if (lp->multi == NULL) luaL_error(L, "attempt to use a closed loop");
  return lp;
}

/* ---- libcurl callbacks: C state only ---- */

/* CURLMOPT_SOCKETFUNCTION: keep the epoll set in step with what libcurl wants to watch. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *ud, void *sockp) {
  struct loop *lp = ud;
  struct epoll_event ev;
  (void)easy;
  memset(&ev, 0, sizeof ev);
  ev.data.fd = s;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(lp->epfd, EPOLL_CTL_DEL, s, NULL);
    curl_multi_assign(lp->multi, s, NULL);
    return 0;
  }
  ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
  if (sockp == NULL) {        /* first time: remember that this socket is in the set */
    if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST)
      epoll_ctl(lp->epfd, EPOLL_CTL_MOD, s, &ev);
    curl_multi_assign(lp->multi, s, lp);
  } else if (epoll_ctl(lp->epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT) {
    epoll_ctl(lp->epfd, EPOLL_CTL_ADD, s, &ev);
  }
  return 0;
}

/* CURLMOPT_TIMERFUNCTION: libcurl's single timeout; -1 removes it. */
static int on_timer(CURLM *multi, long timeout_ms, void *ud) {
  struct loop *lp = ud;
  (void)multi;
  lp->curl_deadline = timeout_ms < 0 ? -1.0 : llm_now() + (double)timeout_ms / 1000.0;
  return 0;
}

/* ---- timers: a binary min-heap of (deadline, id) ---- */

static void heap_swap(struct timer *a, struct timer *b) { struct timer t = *a; *a = *b; *b = t; }

static void heap_up(struct loop *lp, size_t i) {
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (lp->timers[p].at <= lp->timers[i].at) break;
    heap_swap(&lp->timers[p], &lp->timers[i]);
    i = p;
  }
}

static void heap_down(struct loop *lp, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < lp->ntimers && lp->timers[l].at < lp->timers[m].at) m = l;
    if (r < lp->ntimers && lp->timers[r].at < lp->timers[m].at) m = r;
    if (m == i) break;
    heap_swap(&lp->timers[m], &lp->timers[i]);
    i = m;
  }
}

static void heap_remove(struct loop *lp, size_t i) {
  lp->timers[i] = lp->timers[--lp->ntimers];
  if (i < lp->ntimers) { heap_up(lp, i); heap_down(lp, i); }
}

/* Grow an array with the Lua allocator; raises on out-of-memory (nothing is owned yet). */
static void *grow(lua_State *L, struct loop *lp, void *p, size_t *cap, size_t elem) {
  size_t ncap = *cap ? *cap * 2 : 16;
  void *np = lp->alloc(lp->alloc_ud, p, *cap * elem, ncap * elem);
  if (np == NULL) luaL_error(L, "not enough memory");
  *cap = ncap;
  return np;
}

/* loop:timer(delay) -> id; fires a { type = "timer", id } record. */
static int loop_timer(lua_State *L) {
  struct loop *lp = checkloop(L, 1);
  double delay = luaL_checknumber(L, 2);
  if (lp->ntimers == lp->captimers)
    lp->timers = grow(L, lp, lp->timers, &lp->captimers, sizeof *lp->timers);
  lp->timers[lp->ntimers].at = llm_now() + (delay > 0 ? delay : 0);
  lp->timers[lp->ntimers].id = ++lp->next_id;
  heap_up(lp, lp->ntimers++);
  lua_pushinteger(L, lp->next_id);
  return 1;
}

/* loop:cancel_timer(id) -> true if it was pending. */
static int loop_cancel_timer(lua_State *L) {
  struct loop *lp = checkloop(L, 1);
  lua_Integer id = luaL_checkinteger(L, 2);
  size_t i;
  for (i = 0; i < lp->ntimers; i++) {
    if (lp->timers[i].id == id) { heap_remove(lp, i); lua_pushboolean(L, 1); return 1; }
  }
  for (i = 0; i < lp->nfired; i++) {   /* due but not yet reported: drop it too */
    if (lp->fired[i] == id) { lp->fired[i] = lp->fired[--lp->nfired]; lua_pushboolean(L, 1); return 1; }
  }
  lua_pushboolean(L, 0);
  return 1;
}

/* Move due timers to the fired list (raises only on out-of-memory, before any state is lost). */
static void fire_timers(lua_State *L, struct loop *lp, double now) {
  while (lp->ntimers > 0 && lp->timers[0].at <= now) {
    if (lp->nfired == lp->capfired)
      lp->fired = grow(L, lp, lp->fired, &lp->capfired, sizeof *lp->fired);
    lp->fired[lp->nfired++] = lp->timers[0].id;
    heap_remove(lp, 0);
  }
}

/* The nearest moment anything in the loop needs attention; < 0 when nothing is scheduled. */
static double next_deadline(struct loop *lp) {
  double d = lp->curl_deadline;
  struct transfer *t;
  if (lp->ntimers > 0 && (d < 0 || lp->timers[0].at < d)) d = lp->timers[0].at;
  for (t = lp->head; t != NULL; t = llm_transfer_next(t)) {
    double td = llm_transfer_deadline(t);
    if (td >= 0 && (d < 0 || td < d)) d = td;
  }
  return d;
}

/* Keep the timerfd armed at the nearest deadline so the epoll fd alone tells a host
 * (an editor's main loop) when to call step. */
static void arm_timerfd(struct loop *lp, double deadline) {
  struct itimerspec its;
  memset(&its, 0, sizeof its);
  if (deadline >= 0) {
    double s = deadline;
    if (s <= 0) s = 1e-9;
    its.it_value.tv_sec = (time_t)s;
    its.it_value.tv_nsec = (long)((s - (double)its.it_value.tv_sec) * 1e9);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
  }
  timerfd_settime(lp->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void drain_info(struct loop *lp) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(lp->multi, &left)) != NULL) {
    if (msg->msg == CURLMSG_DONE) {
      struct transfer *t = NULL;
      CURL *easy = msg->easy_handle;
      CURLcode rc = msg->data.result;   /* read before the handle is removed (multi-uv.c) */
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
      if (t != NULL) llm_transfer_done(t, rc);
    }
  }
}

/* loop:step(timeout) -> records. Performs the I/O that is ready, fires due timers and
 * deadlines, and returns what completed. Waits at most `timeout` seconds (0: never blocks). */
static int loop_step(lua_State *L) {
  struct loop *lp = checkloop(L, 1);
  double timeout = luaL_optnumber(L, 2, 0);
  struct epoll_event evs[MAX_EPOLL_EVENTS];
  double now, deadline;
  int n, i, running, wait_ms, nrec = 0;
  struct transfer *t;

  if (lp->in_step) return luaL_error(L, "loop:step called inside a step");
  lp->in_step = 1;
  now = llm_now();
  for (t = lp->head; t != NULL; t = llm_transfer_next(t)) llm_transfer_check(t, now);

  /* Nothing to report yet: wait for I/O, up to the nearest deadline. */
  wait_ms = 0;
  if (timeout > 0 && lp->dirty == NULL && lp->nfired == 0) {
    deadline = next_deadline(lp);
    double w = timeout;
    if (deadline >= 0 && deadline - now < w) w = deadline - now;
    if (w > 0) wait_ms = (int)(w * 1000.0 + 0.999);
  }
  lp->waits++;
  if (wait_ms > 0) lp->blocking_waits++;
  n = epoll_wait(lp->epfd, evs, MAX_EPOLL_EVENTS, wait_ms);
  for (i = 0; i < n; i++) {
    int fd = evs[i].data.fd, mask = 0;
    if (fd == lp->tfd) {
      unsigned long long expirations;
      if (read(lp->tfd, &expirations, sizeof expirations) < 0) { /* already drained */ }
      continue;
    }
    if (evs[i].events & EPOLLIN) mask |= CURL_CSELECT_IN;
    if (evs[i].events & EPOLLOUT) mask |= CURL_CSELECT_OUT;
    if (evs[i].events & (EPOLLERR | EPOLLHUP)) mask |= CURL_CSELECT_ERR;
    lp->events++;
    curl_multi_socket_action(lp->multi, fd, mask, &running);
  }
  now = llm_now();
  if (lp->curl_deadline >= 0 && now >= lp->curl_deadline) {
    lp->curl_deadline = -1;
    curl_multi_socket_action(lp->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  }
  drain_info(lp);
  now = llm_now();
  for (t = lp->head; t != NULL; t = llm_transfer_next(t)) llm_transfer_check(t, now);
  drain_info(lp);   /* a restart or a removal may have completed something */
  lp->in_step = 0;  /* from here on only Lua allocations: a memory error must not wedge the loop */

  fire_timers(L, lp, now);
  lua_createtable(L, lp->nfired + 4, 0);
  for (i = 0; (size_t)i < lp->nfired; i++) {
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "timer"); lua_setfield(L, -2, "type");
    lua_pushinteger(L, lp->fired[i]); lua_setfield(L, -2, "id");
    lua_rawseti(L, -2, ++nrec);
  }
  lp->nfired = 0;
  /* Report dirty transfers; each is unlinked before any Lua allocation for it, so a
   * collection that closes a transfer meanwhile cannot corrupt the list. */
  {
    size_t reported = 0;
    double start = llm_now();
    while (lp->dirty != NULL) {
      if (reported >= STEP_EVENT_BUDGET || llm_now() - start > STEP_TIME_BUDGET) {
        lp->deferred++;
        break;
      }
      t = lp->dirty;
      reported += llm_transfer_pending(t) + 1;
      llm_transfer_report(L, t, lua_gettop(L), &nrec);
    }
  }
  arm_timerfd(lp, next_deadline(lp));
  return 1;
}

static int loop_now(lua_State *L) {
  (void)checkloop(L, 1);
  lua_pushnumber(L, llm_now());
  return 1;
}

/* loop:stats() -> counters for tests and benchmarks. */
static int loop_stats(lua_State *L) {
  struct loop *lp = checkloop(L, 1);
  struct transfer *t;
  lua_Integer nt = 0;
  for (t = lp->head; t != NULL; t = llm_transfer_next(t)) nt++;
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, nt); lua_setfield(L, -2, "transfers");
  lua_pushinteger(L, (lua_Integer)lp->ntimers); lua_setfield(L, -2, "timers");
  lua_pushinteger(L, lp->waits); lua_setfield(L, -2, "waits");
  lua_pushinteger(L, lp->blocking_waits); lua_setfield(L, -2, "blocking_waits");
  lua_pushinteger(L, lp->events); lua_setfield(L, -2, "events");
  lua_pushinteger(L, lp->new_connections); lua_setfield(L, -2, "new_connections");
  lua_pushinteger(L, lp->reused); lua_setfield(L, -2, "connections_reused");
  lua_pushinteger(L, lp->deferred); lua_setfield(L, -2, "deferred");
  return 1;
}

/* loop:fd() -> the epoll descriptor; readable whenever step has work to do. */
static int loop_fd(lua_State *L) {
  struct loop *lp = checkloop(L, 1);
  lua_pushinteger(L, lp->epfd);
  return 1;
}

/* One idempotent close for __gc, __close and :close(): detach every transfer first
 * (curl_multi_remove_handle before curl_multi_cleanup), then release. Never raises. */
static int loop_close(lua_State *L) {
  struct loop *lp = luaL_checkudata(L, 1, LLM_LOOP);
  if (lp->multi != NULL) {
    CURLM *multi = lp->multi;
    llm_transfer_detach_all(lp);
    lp->multi = NULL;
    curl_multi_cleanup(multi);
    close(lp->epfd);
    close(lp->tfd);
    lp->alloc(lp->alloc_ud, lp->timers, lp->captimers * sizeof *lp->timers, 0);
    lp->alloc(lp->alloc_ud, lp->fired, lp->capfired * sizeof *lp->fired, 0);
    lp->timers = NULL; lp->fired = NULL;
    lp->ntimers = lp->captimers = lp->nfired = lp->capfired = 0;
  }
  return 0;
}

static int loop_tostring(lua_State *L) {
  struct loop *lp = luaL_checkudata(L, 1, LLM_LOOP);
  lua_pushfstring(L, "llm.Loop (%s)", lp->multi ? "open" : "closed");
  return 1;
}

/* core.loop() -> a new loop. Created closed, then acquired (STYLE §2). */
static int loop_new(lua_State *L) {
  struct loop *lp = lua_newuserdatauv(L, sizeof *lp, 1);
  struct epoll_event ev;
  memset(lp, 0, sizeof *lp);
  lp->epfd = lp->tfd = -1;
  lp->curl_deadline = -1;
  lp->alloc = lua_getallocf(L, &lp->alloc_ud);
  luaL_setmetatable(L, LLM_LOOP);
  lua_newtable(L);                       /* uservalue: weak id -> transfer map */
  lua_newtable(L);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setiuservalue(L, -2, 1);

  if ((lp->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
    return luaL_error(L, "epoll_create1: %s", strerror(errno));
  if ((lp->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0) {
    int e = errno;
    close(lp->epfd); lp->epfd = -1;
    return luaL_error(L, "timerfd_create: %s", strerror(e));
  }
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.fd = lp->tfd;
  epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->tfd, &ev);
  if ((lp->multi = curl_multi_init()) == NULL) {
    close(lp->epfd); close(lp->tfd); lp->epfd = lp->tfd = -1;
    return luaL_error(L, "curl_multi_init failed");
  }
  curl_multi_setopt(lp->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(lp->multi, CURLMOPT_SOCKETDATA, lp);
  curl_multi_setopt(lp->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(lp->multi, CURLMOPT_TIMERDATA, lp);
  curl_multi_setopt(lp->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  return 1;
}

static const luaL_Reg loop_methods[] = {
  {"step", loop_step}, {"now", loop_now}, {"timer", loop_timer},
  {"cancel_timer", loop_cancel_timer}, {"transfer", llm_transfer_new},
  {"stats", loop_stats}, {"fd", loop_fd}, {"close", loop_close}, {NULL, NULL}
};

static const luaL_Reg loop_metamethods[] = {
  {"__gc", loop_close}, {"__close", loop_close}, {"__tostring", loop_tostring},
  {"__index", NULL}, {NULL, NULL}
};

void llm_loop_register(lua_State *L) {
  luaL_newmetatable(L, LLM_LOOP);
  luaL_setfuncs(L, loop_metamethods, 0);
  luaL_newlib(L, loop_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, loop_new);
  lua_setfield(L, -2, "loop");
}
