/* The event loop: one libcurl multi handle driven through a backend (backend/epoll.c,
 * kqueue.c, poll.c) so that the whole loop is one pollable descriptor where the system has
 * one, and step(0) costs nothing when idle. Lua timers and every transfer's deadline live in
 * one timer heap, so a step costs what its due work costs, not O(transfers). Once handed
 * out (loop:fd), the descriptor is readable whenever a step has work: the backend's timer is
 * re-armed as soon as the earliest deadline changes and a wake-up is signalled when work is
 * ready or already due (reports left by a bounded step, a transfer to start, a transfer
 * cancelled from Lua, a task made ready in Lua: loop:wake()).
 * libcurl's callbacks here touch only C state (STYLE §3); step() hands Lua plain records
 * once libcurl has returned. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "internal.h"

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

/* CURLMOPT_TIMERFUNCTION (epoll, kqueue): libcurl's single timeout; -1 removes it. Outside a
 * step (a transfer added, a pause lifted) the backend's timer follows at once. */
int llm_loop_curl_timer(CURLM *multi, long timeout_ms, void *ud) {
  struct loop *lp = ud;
  (void)multi;
  lp->curl_deadline = timeout_ms < 0 ? -1.0 : llm_now() + (double)timeout_ms / 1000.0;
  if (!lp->in_step) llm_loop_rearm(lp);
  return 0;
}

/* ---- the timer heap: a binary min-heap of Lua timers and transfer deadlines ---- */

/* Put entry `e` at slot i, keeping a transfer's back index right. */
static void heap_set(struct loop *lp, size_t i, struct timer e) {
  lp->timers[i] = e;
  if (e.t != NULL) *llm_transfer_heap_index(e.t) = i;
}

static void heap_up(struct loop *lp, size_t i) {
  struct timer e = lp->timers[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (lp->timers[p].at <= e.at) break;
    heap_set(lp, i, lp->timers[p]);
    i = p;
  }
  heap_set(lp, i, e);
}

static void heap_down(struct loop *lp, size_t i) {
  struct timer e = lp->timers[i];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = l;
    if (l >= lp->ntimers) break;
    if (r < lp->ntimers && lp->timers[r].at < lp->timers[l].at) m = r;
    if (lp->timers[m].at >= e.at) break;
    heap_set(lp, i, lp->timers[m]);
    i = m;
  }
  heap_set(lp, i, e);
}

/* Remove slot i (the entry's transfer, if any, is marked out of the heap). */
static void heap_remove(struct loop *lp, size_t i) {
  struct timer gone = lp->timers[i];
  if (gone.t != NULL) *llm_transfer_heap_index(gone.t) = SIZE_MAX;
  else lp->nlua--;
  if (i < --lp->ntimers) {
    heap_set(lp, i, lp->timers[lp->ntimers]);
    if (i > 0 && lp->timers[(i - 1) / 2].at > lp->timers[i].at) heap_up(lp, i);
    else heap_down(lp, i);
  }
}

/* The heap's capacity covers every Lua timer plus one slot per live transfer, and the fired
 * list every Lua timer, so scheduling a deadline (from a libcurl callback too) and firing
 * never allocate. Grows with the Lua allocator; raises on out-of-memory (nothing owned). */
static void reserve(lua_State *L, struct loop *lp, size_t heap_need, size_t fired_need) {
  if (heap_need > lp->captimers) {
    size_t ncap = lp->captimers ? lp->captimers * 2 : 16;
    void *np;
    while (ncap < heap_need) ncap *= 2;
    np = lp->alloc(lp->alloc_ud, lp->timers, lp->captimers * sizeof *lp->timers, ncap * sizeof *lp->timers);
    if (np == NULL) luaL_error(L, "not enough memory");
    lp->timers = np; lp->captimers = ncap;
  }
  if (fired_need > lp->capfired) {
    size_t ncap = lp->capfired ? lp->capfired * 2 : 16;
    void *np;
    while (ncap < fired_need) ncap *= 2;
    np = lp->alloc(lp->alloc_ud, lp->fired, lp->capfired * sizeof *lp->fired, ncap * sizeof *lp->fired);
    if (np == NULL) luaL_error(L, "not enough memory");
    lp->fired = np; lp->capfired = ncap;
  }
}

int llm_loop_reserve(lua_State *L, struct loop *lp) {
  reserve(L, lp, lp->nlua + lp->ntransfers + 1, 0);
  return 0;
}

/* The earliest moment anything in the loop needs attention; < 0 when nothing is scheduled. */
static double next_deadline(struct loop *lp) {
  double d = llm_backend_curl_deadline(lp);
  if (lp->ntimers > 0 && (d < 0 || lp->timers[0].at < d)) d = lp->timers[0].at;
  return d;
}

/* Whether the backend's timer and wake-up must show the loop's state. A descriptor that
 * loop:fd() never handed out cannot be polled by anyone, and the loop's own waits are
 * clipped to its earliest deadline and skipped when work is ready, so until then the loop
 * keeps that state in its fields only: a blocking script pays no timer or wake-up system
 * calls per request. The portable backend (no descriptor) signals as before. */
static int shown(struct loop *lp) { return lp->fd < 0 || lp->exposed; }

/* Keep the backend's timer at the earliest deadline, so its descriptor alone tells a host
 * (an editor's main loop) when to call step. Called whenever that deadline may have moved.
 * A deadline already due (a transfer set up to start now, libcurl asking to be called at
 * once) is a wake-up, not a timer: a timerfd armed for a time already past fires through
 * the kernel's timer interrupt, about 15 to 20 us on a virtual machine, against 2 for the
 * eventfd write. The timer keeps its older setting; firing late or early it is only a
 * spurious wake-up. The portable backend (no descriptor) clips its wait instead. */
void llm_loop_rearm(struct loop *lp) {
  double d;
  if (lp->multi == NULL || !shown(lp)) return;
  d = next_deadline(lp);
  if (d == lp->armed_at) return;
  if (d >= 0 && lp->fd >= 0 && d <= llm_now()) {
    llm_loop_signal(lp);
    return;
  }
  lp->armed_at = d;
  lp->rearms++;
  llm_backend_arm(lp, d);
}

/* Ready work: make the descriptor readable until the next step begins. */
void llm_loop_signal(struct loop *lp) {
  if (lp->signalled || lp->multi == NULL) return;
  lp->signalled = 1;
  if (!shown(lp)) return;
  lp->signals++;
  llm_backend_signal(lp);
}

/* The next step has begun, or no work is left: the descriptor stops being readable. */
static void unsignal(struct loop *lp) {
  lp->signalled = 0;
  if (shown(lp)) llm_backend_clear(lp);
}

/* Put transfer t's deadline at `at` (earlier or later). Never allocates: the slot was
 * reserved when t was created. */
void llm_loop_schedule(struct loop *lp, struct transfer *t, double at) {
  size_t *idx = llm_transfer_heap_index(t);
  if (*idx == SIZE_MAX) {
    struct timer e;
    e.at = at; e.id = 0; e.t = t;
    lp->timers[lp->ntimers] = e;
    *idx = lp->ntimers++;
    heap_up(lp, *idx);
  } else {
    double old = lp->timers[*idx].at;
    lp->timers[*idx].at = at;
    if (at < old) heap_up(lp, *idx); else heap_down(lp, *idx);
  }
  if (!lp->in_step && *idx == 0) llm_loop_rearm(lp);
}

void llm_loop_unschedule(struct loop *lp, struct transfer *t) {
  size_t *idx = llm_transfer_heap_index(t);
  if (*idx != SIZE_MAX) heap_remove(lp, *idx);   /* an earlier wake-up stays armed: spurious, never late */
}

/* A handle for a new transfer: the last one released (its options reset), or a new one. */
CURL *llm_loop_easy(struct loop *lp) {
  if (lp->nspare > 0) return lp->spare[--lp->nspare];
  return curl_easy_init();
}

/* A closed transfer's handle, already out of the multi handle. curl_easy_reset restores
 * every option to its default and keeps only caches (DNS, TLS sessions), which the multi
 * handle's shared connection pool holds anyway. */
void llm_loop_release_easy(struct loop *lp, CURL *easy) {
  if (lp != NULL && lp->multi != NULL && lp->nspare < LLM_SPARE_EASY) {
    curl_easy_reset(easy);
    lp->spare[lp->nspare++] = easy;
  } else {
    curl_easy_cleanup(easy);
  }
}

/* loop:timer(delay) -> id; fires a { type = "timer", id } record. */
static int loop_timer(lua_State *L) {
  struct loop *lp = checkloop(L, 1);
  double delay = luaL_checknumber(L, 2);
  struct timer e;
  reserve(L, lp, lp->nlua + lp->ntransfers + 1, lp->nlua + lp->nfired + 1);
  e.at = llm_now() + (delay > 0 ? delay : 0);
  e.id = ++lp->next_id;
  e.t = NULL;
  lp->timers[lp->ntimers] = e;
  lp->nlua++;
  heap_up(lp, lp->ntimers++);
  if (!lp->in_step) llm_loop_rearm(lp);
  lua_pushinteger(L, lp->next_id);
  return 1;
}

/* loop:cancel_timer(id) -> true if it was pending. */
static int loop_cancel_timer(lua_State *L) {
  struct loop *lp = checkloop(L, 1);
  lua_Integer id = luaL_checkinteger(L, 2);
  size_t i;
  for (i = 0; i < lp->ntimers; i++) {
    if (lp->timers[i].t == NULL && lp->timers[i].id == id) { heap_remove(lp, i); lua_pushboolean(L, 1); return 1; }
  }
  for (i = 0; i < lp->nfired; i++) {   /* due but not yet reported: drop it too */
    if (lp->fired[i] == id) { lp->fired[i] = lp->fired[--lp->nfired]; lua_pushboolean(L, 1); return 1; }
  }
  lua_pushboolean(L, 0);
  return 1;
}

/* Handle the heap entries that are due: Lua timers move to the fired list (room reserved),
 * transfers act on their deadline (start, restart, time out) or re-arm a later one. Only due
 * entries are touched, so idle transfers cost nothing. Starting a transfer (libcurl connects
 * and sends at once) is work: after the first, starts stop at `stop` and the rest stay due
 * for the next step. */
static void fire_due(struct loop *lp, double now, double stop, int *started) {
  while (lp->ntimers > 0 && lp->timers[0].at <= now) {
    struct timer e = lp->timers[0];
    if (e.t == NULL) {
      heap_remove(lp, 0);
      lp->fired[lp->nfired++] = e.id;
    } else {
      if (*started > 0 && llm_now() >= stop) break;   /* the rest stays due: next step */
      lp->deadline_checks++;
      llm_loop_unschedule(lp, e.t);
      if (llm_transfer_fire(e.t, now)) {   /* may also schedule it again, later */
        ++*started;
        llm_backend_kick(lp);
      }
    }
  }
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

/* loop:step(timeout, budget, max_events, out) -> records, more. Performs the I/O that is ready,
 * fires due timers and deadlines, and returns what completed: every fired timer, then the
 * reports of transfers with news, oldest first, until `budget` seconds (default 0.0005) are
 * spent or `max_events` stream events (default: no limit) are out (checked between reports;
 * at least one is made). A transfer's queued events go out in pieces of at most
 * LLM_REPORT_PIECE, in order; what is left waits for the next call. `more` is true when reports were
 * left for the next step, which then does not wait. Waits at most `timeout` seconds for I/O
 * (0: never blocks) and only when nothing is ready. With `out`, an empty table, the records
 * go there (from 1) and it is returned: a caller that steps often allocates no list per
 * step. */
static int loop_step(lua_State *L) {
  struct loop *lp = checkloop(L, 1);
  double timeout = luaL_optnumber(L, 2, 0);
  double budget = luaL_optnumber(L, 3, 0.0005);
  lua_Integer max_arg = luaL_optinteger(L, 4, -1);
  size_t max_events = max_arg < 0 ? SIZE_MAX : (size_t)max_arg;
  double now, left, stop, start = llm_now();
  int i, wait_ms, nrec = 0, more, started = 0;

  if (lp->in_step) return luaL_error(L, "loop:step called inside a step");
  lp->in_step = 1;
  /* A pending wake-up is consumed before a wait (it would end the wait at once); a step that
   * does not wait consumes it at its end, and only when no work is left: a host stepping
   * through a backlog pays no wake-up syscalls per step. */
  if (lp->signalled && timeout > 0) unsignal(lp);
  fire_due(lp, start, start + budget, &started);

  /* Nothing to report yet: wait for I/O, up to the earliest deadline. */
  wait_ms = 0;
  if (timeout > 0 && lp->dirty == NULL && lp->nfired == 0) {
    double deadline = next_deadline(lp), w = timeout;
    if (deadline >= 0 && deadline - start < w) w = deadline - start;
    if (w > 0) wait_ms = (int)(w * 1000.0 + 0.999);
  }
  lp->waits++;
  if (wait_ms > 0) lp->blocking_waits++;
  left = budget - (llm_now() - start);     /* the budget counts work, not the wait */
  if (left < 0) left = 0;
  /* One budget for the call: socket actions, starts and reports share what is left of it
   * once the wait ends. */
  if (lp->queued >= lp->read_mark && lp->dirty != NULL) {
    lp->unread++;                        /* Lua is behind: report, read nothing */
    stop = llm_now() + left;
  } else {
    stop = llm_backend_wait(lp, wait_ms, left) + left;
  }
  drain_info(lp);
  now = llm_now();
  fire_due(lp, now, stop, &started);
  drain_info(lp);   /* a restart or a removal may have completed something */
  if (lp->ntimers > 0 && lp->timers[0].t != NULL && lp->timers[0].at <= now) lp->deferred_starts++;
  lp->in_step = 0;  /* from here on only Lua allocations: a memory error must not wedge the loop */

  if (lua_istable(L, 5)) lua_pushvalue(L, 5);     /* the caller's empty table, kept across steps */
  else lua_createtable(L, (int)lp->nfired + 4, 0);
  for (i = 0; (size_t)i < lp->nfired; i++) {
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "timer"); lua_setfield(L, -2, "type");
    lua_pushinteger(L, lp->fired[i]); lua_setfield(L, -2, "id");
    lua_rawseti(L, -2, ++nrec);
  }
  lp->nfired = 0;
  /* Report dirty transfers, oldest first; each is unlinked before any Lua allocation for it,
   * so a collection that closes a transfer meanwhile cannot corrupt the list. */
  {
    int reported = 0;
    while (lp->dirty != NULL) {
      if (reported > 0 && (max_events == 0 || llm_now() >= stop)) { lp->deferred++; break; }
      llm_transfer_report(L, lp->dirty, lua_gettop(L), &nrec, &max_events);
      reported++;
    }
  }
  more = lp->dirty != NULL || lp->nfired > 0 || lp->io_left ||
         (lp->ntimers > 0 && lp->timers[0].at <= llm_now());
  if (more) llm_loop_signal(lp);
  else if (lp->signalled) unsignal(lp);
  llm_loop_rearm(lp);
  lua_pushboolean(L, more);
  return 2;
}

/* loop:wake(): Lua has work for the next step (a task made ready); the descriptor becomes
 * readable until that step begins. */
static int loop_wake(lua_State *L) {
  llm_loop_signal(checkloop(L, 1));
  return 0;
}

/* loop:next_timeout() -> seconds until the loop has timed work: 0 when reports are waiting,
 * nil when nothing is scheduled. */
static int loop_next_timeout(lua_State *L) {
  struct loop *lp = checkloop(L, 1);
  double d;
  if (lp->dirty != NULL || lp->nfired > 0 || lp->io_left) { lua_pushnumber(L, 0); return 1; }
  d = next_deadline(lp);
  if (d < 0) { lua_pushnil(L); return 1; }
  d -= llm_now();
  lua_pushnumber(L, d > 0 ? d : 0);
  return 1;
}

static int loop_now(lua_State *L) {   /* the clock needs no loop: no check of `self` */
  lua_pushnumber(L, llm_now());
  return 1;
}

/* loop:queue_limits([read_mark, high_water]) -> read_mark, high_water: the bytes of framed
 * events waiting for Lua at which a step leaves its sockets unread, and at which a transfer
 * with events of its own waiting stops reading (internal.h). Sets either when given. */
static void opt_bytes(lua_State *L, int arg, size_t *field) {
  if (!lua_isnoneornil(L, arg)) {
    lua_Integer v = luaL_checkinteger(L, arg);
    luaL_argcheck(L, v > 0, arg, "must be a positive number of bytes");
    *field = (size_t)v;
  }
}

static int loop_queue_limits(lua_State *L) {
  struct loop *lp = checkloop(L, 1);
  opt_bytes(L, 2, &lp->read_mark);
  opt_bytes(L, 3, &lp->high_water);
  lua_pushinteger(L, (lua_Integer)lp->read_mark);
  lua_pushinteger(L, (lua_Integer)lp->high_water);
  return 2;
}

/* loop:stats() -> counters for tests and benchmarks. */
static int loop_stats(lua_State *L) {
  struct loop *lp = checkloop(L, 1);
  lua_createtable(L, 0, 20);
  lua_pushinteger(L, (lua_Integer)lp->ntransfers); lua_setfield(L, -2, "transfers");
  lua_pushinteger(L, (lua_Integer)lp->nlua); lua_setfield(L, -2, "timers");
  lua_pushinteger(L, (lua_Integer)(lp->ntimers - lp->nlua)); lua_setfield(L, -2, "deadlines");
  lua_pushinteger(L, lp->waits); lua_setfield(L, -2, "waits");
  lua_pushinteger(L, lp->blocking_waits); lua_setfield(L, -2, "blocking_waits");
  lua_pushinteger(L, lp->events); lua_setfield(L, -2, "events");
  lua_pushinteger(L, lp->new_connections); lua_setfield(L, -2, "new_connections");
  lua_pushinteger(L, lp->reused); lua_setfield(L, -2, "connections_reused");
  lua_pushinteger(L, lp->deferred); lua_setfield(L, -2, "deferred");
  lua_pushinteger(L, lp->deferred_starts); lua_setfield(L, -2, "deferred_starts");
  lua_pushinteger(L, lp->deadline_checks); lua_setfield(L, -2, "deadline_checks");
  lua_pushinteger(L, lp->signals); lua_setfield(L, -2, "signals");
  lua_pushinteger(L, lp->rearms); lua_setfield(L, -2, "rearms");
  lua_pushinteger(L, lp->nspare); lua_setfield(L, -2, "spare_handles");
  lua_pushinteger(L, (lua_Integer)lp->queued); lua_setfield(L, -2, "queued_bytes");
  lua_pushinteger(L, (lua_Integer)lp->queued_peak); lua_setfield(L, -2, "queued_bytes_peak");
  lua_pushinteger(L, lp->unread); lua_setfield(L, -2, "unread_steps");
  lua_pushinteger(L, lp->holds); lua_setfield(L, -2, "holds");
  lua_pushinteger(L, lp->nattached); lua_setfield(L, -2, "attached");
  lua_pushinteger(L, lp->small_buffers); lua_setfield(L, -2, "small_buffers");
  return 1;
}

/* loop:fd() -> the backend's descriptor, readable whenever step has work; nil without one.
 * Handing it out is what makes the loop keep its timer and wake-up on it (shown()). */
static int loop_fd(lua_State *L) {
  struct loop *lp = checkloop(L, 1);
  if (lp->fd < 0) { lua_pushnil(L); return 1; }
  if (!lp->exposed) {          /* from now on the descriptor shows the loop's state */
    lp->exposed = 1;
    if (lp->signalled) { lp->signals++; llm_backend_signal(lp); }
    if (!lp->in_step) llm_loop_rearm(lp);
  }
  lua_pushinteger(L, lp->fd);
  return 1;
}

/* loop:backend() -> "epoll", "kqueue" or "poll". */
static int loop_backend(lua_State *L) {
  (void)checkloop(L, 1);
  lua_pushstring(L, llm_backend_name);
  return 1;
}

/* One idempotent close for __gc, __close and :close(): detach every transfer first
 * (curl_multi_remove_handle before curl_multi_cleanup), then release. Never raises. */
static int loop_close(lua_State *L) {
  struct loop *lp = luaL_checkudata(L, 1, LLM_LOOP);
  if (lp->multi != NULL) {
    CURLM *multi = lp->multi;
    llm_transfer_detach_all(lp);
    while (lp->nspare > 0) curl_easy_cleanup(lp->spare[--lp->nspare]);
    lp->multi = NULL;
    curl_multi_cleanup(multi);
    llm_backend_close(lp);
    lp->alloc(lp->alloc_ud, lp->timers, lp->captimers * sizeof *lp->timers, 0);
    lp->alloc(lp->alloc_ud, lp->fired, lp->capfired * sizeof *lp->fired, 0);
    lp->timers = NULL; lp->fired = NULL;
    lp->ntimers = lp->captimers = lp->nfired = lp->capfired = lp->nlua = 0;
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
  int e;
  memset(lp, 0, sizeof *lp);
  lp->fd = lp->tfd = lp->efd = -1;
  lp->curl_deadline = -1;
  lp->armed_at = -1;
  lp->read_mark = LLM_QUEUE_READ_MARK;
  lp->high_water = LLM_QUEUE_HIGH_WATER;
  lp->alloc = lua_getallocf(L, &lp->alloc_ud);
  luaL_setmetatable(L, LLM_LOOP);
  lua_newtable(L);                       /* uservalue: weak id -> transfer map */
  lua_newtable(L);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setiuservalue(L, -2, 1);

  if ((lp->multi = curl_multi_init()) == NULL) return luaL_error(L, "curl_multi_init failed");
  if ((e = llm_backend_open(lp)) != 0) {
    CURLM *multi = lp->multi;
    lp->multi = NULL;
    curl_multi_cleanup(multi);
    return luaL_error(L, "%s backend: %s", llm_backend_name, strerror(e));
  }
  curl_multi_setopt(lp->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  return 1;
}

static const luaL_Reg loop_methods[] = {
  {"step", loop_step}, {"now", loop_now}, {"timer", loop_timer},
  {"cancel_timer", loop_cancel_timer}, {"transfer", llm_transfer_new},
  {"stats", loop_stats}, {"fd", loop_fd}, {"wake", loop_wake},
  {"next_timeout", loop_next_timeout}, {"backend", loop_backend},
  {"queue_limits", loop_queue_limits}, {"close", loop_close}, {NULL, NULL}
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
