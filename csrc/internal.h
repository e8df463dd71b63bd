/* Declarations shared between the core's files. Only luaopen_llm_core is exported. */
#ifndef LLM_INTERNAL_H
#define LLM_INTERNAL_H

#include <curl/curl.h>
#include "compat.h"
#include "buf.h"
#include "sse.h"
#include "pieces.h"

#define LLM_LOOP "llm.Loop"
#define LLM_TRANSFER "llm.Transfer"

#define LLM_DEFAULT_MAX_EVENT (16u * 1024u * 1024u)
#define LLM_REPORT_PIECE 64u   /* stream events per "events" record: a step stops between pieces */
#define LLM_DEFAULT_MAX_BODY (64u * 1024u * 1024u)
#define LLM_SPARE_EASY 64   /* easy handles a loop keeps for reuse (about 6 KiB each) */
/* Receive buffers: the first LLM_FULL_BUFFERS transfers running at once get libcurl's
 * default (16 KiB, a fast stream's reads); plain http transfers beyond get LLM_SMALL_BUFFER,
 * libcurl's minimum (1,000 streams of small events do not need 16 MiB of buffers). */
#define LLM_FULL_BUFFERS 16
#define LLM_SMALL_BUFFER 1024

struct transfer;

/* One entry of the loop's timer heap: a Lua timer (t == NULL, fired as a record) or the
 * nearest deadline of a transfer (its timeout, first-token, idle or restart time). */
struct timer {
  double at;              /* monotonic deadline */
  lua_Integer id;         /* Lua timers: the id loop:timer returned */
  struct transfer *t;     /* transfer deadlines: the transfer (whose heap_index tracks it) */
};

struct loop {
  CURLM *multi;           /* NULL once closed */
  int fd;                 /* the backend's pollable descriptor (epoll, kqueue); -1: none */
  int tfd, efd;           /* epoll backend: its timerfd and eventfd */
  int signalled;          /* the backend's wake-up is pending (fd readable for ready work) */
  int exposed;            /* loop:fd() handed the descriptor out: timer and wake-up follow */
  double armed_at;        /* the deadline the backend's timer is armed for; < 0: none */
  double curl_deadline;   /* when libcurl wants CURL_SOCKET_TIMEOUT; < 0: none */
  struct transfer *head;  /* every transfer created on this loop and not closed */
  struct transfer *dirty, *dirty_tail;  /* transfers with something to report, oldest first */
  struct timer *timers;   /* binary min-heap on `at`: Lua timers and transfer deadlines */
  size_t ntimers, captimers;
  size_t nlua, ntransfers;  /* Lua timers in the heap; live transfers (each may hold one slot) */
  lua_Integer *fired;     /* timer ids due, reported by the next step */
  size_t nfired, capfired;
  lua_Integer next_id;
  int in_step;
  int io_left;            /* the last wait left ready sockets for the next step */
  lua_Alloc alloc; void *alloc_ud;
  /* Easy handles of closed transfers, reset and kept for the next ones: curl_easy_init
   * callocs a large block (and glibc consolidates its free lists for it) on every request. */
  CURL *spare[LLM_SPARE_EASY];
  int nspare;
  size_t queued, queued_peak;  /* bytes of framed events waiting in transfers' queues; the most */
  size_t read_mark, high_water;   /* queued bytes: LLM_QUEUE_READ_MARK, LLM_QUEUE_HIGH_WATER */
  lua_Integer unread;     /* steps that left the sockets unread: the read mark reached */
  lua_Integer holds;      /* transfers stopped mid-read: the high water reached */
  int nattached;          /* transfers in the multi handle */
  lua_Integer small_buffers;  /* transfers started with the small receive buffer */
  /* counters for loop:stats() */
  lua_Integer waits, blocking_waits, events, new_connections, reused;
  lua_Integer deferred;   /* steps that left reports for the next step (budget reached) */
  lua_Integer deferred_starts;  /* steps that left transfers to start for the next step */
  lua_Integer deadline_checks;  /* transfer deadlines examined (only those due) */
  lua_Integer signals, rearms;  /* wake-ups written; timer re-arms */
};

/* Bytes of framed events waiting for Lua, summed over a loop's transfers. At the read mark a
 * step leaves its sockets unread (the data waits in the kernel, and TCP slows the sender)
 * until Lua has taken events below it; that costs no system call. At the high water, which
 * only one step's reads can reach, a transfer with events of its own waiting stops reading
 * (a libcurl pause: its socket leaves the poll set and comes back when its queue is taken).
 * Together they bound the memory of many streams whose events arrive faster than Lua takes
 * them. A transfer whose queue is empty always reads on. Defaults; loop:queue_limits sets
 * a loop's own. */
#define LLM_QUEUE_READ_MARK (512u << 10)
#define LLM_QUEUE_HIGH_WATER (1u << 20)

/* backend_*.c: how the loop waits for sockets, one deadline and a wake-up. Exactly one is
 * compiled in (CMake LLM_BACKEND). Each returns without raising. */
extern const char llm_backend_name[];                 /* "epoll", "kqueue" or "poll" */
int llm_backend_open(struct loop *lp);               /* 0, or an errno; sets lp->fd */
void llm_backend_close(struct loop *lp);
void llm_backend_arm(struct loop *lp, double deadline);  /* absolute monotonic; < 0 disarms */
void llm_backend_signal(struct loop *lp);            /* make the fd readable now */
void llm_backend_clear(struct loop *lp);             /* consume a signal */
/* Wait at most wait_ms for I/O, then drive libcurl on the sockets that are ready for about
 * `budget` seconds (at least one socket; it stops before a socket action as long as the last
 * would overshoot); ready sockets left over stay ready for the next step (level-triggered)
 * and set lp->io_left. Returns the moment the wait ended (the work began). */
double llm_backend_wait(struct loop *lp, int wait_ms, double budget);
void llm_backend_kick(struct loop *lp);              /* let libcurl start what was just added */
double llm_backend_curl_deadline(struct loop *lp);   /* libcurl's own next timeout; < 0 none */

/* loop.c, for the backends and transfers */
CURL *llm_loop_easy(struct loop *lp);                /* a spare easy handle, or a new one; NULL: OOM */
void llm_loop_release_easy(struct loop *lp, CURL *easy);  /* detached: keep it (reset) or clean up */
void llm_loop_rearm(struct loop *lp);                /* the earliest deadline changed */
void llm_loop_signal(struct loop *lp);               /* work is ready: wake the host */
void llm_loop_schedule(struct loop *lp, struct transfer *t, double at);  /* never allocates */
void llm_loop_unschedule(struct loop *lp, struct transfer *t);
int llm_loop_reserve(lua_State *L, struct loop *lp); /* room for one more transfer; may raise */
int llm_loop_curl_timer(CURLM *multi, long timeout_ms, void *ud);  /* CURLMOPT_TIMERFUNCTION */

double llm_now(void);
void llm_framer_register(lua_State *L);
void llm_json_register(lua_State *L);
void llm_base64_register(lua_State *L);
void llm_loop_register(lua_State *L);
void llm_transfer_register(lua_State *L);

/* transfer.c, called by loop.c */
int llm_transfer_new(lua_State *L);                    /* loop:transfer(spec) */
void llm_transfer_done(struct transfer *t, CURLcode rc); /* from curl_multi_info_read */
void llm_transfer_mark_dirty(struct transfer *t);
double llm_transfer_deadline(struct transfer *t);      /* nearest own deadline, < 0 none */
int llm_transfer_fire(struct transfer *t, double now);  /* its heap deadline came: act or re-arm;
                                                           1 when it started the transfer */
size_t *llm_transfer_heap_index(struct transfer *t);   /* its slot in the heap, or SIZE_MAX */
/* [-0, +0] appends t's records; at most *left events (decremented), in pieces of at most
 * LLM_REPORT_PIECE; a transfer with events left stays dirty */
int llm_transfer_report(lua_State *L, struct transfer *t, int records, int *n, size_t *left);
void llm_transfer_detach_all(struct loop *lp);         /* loop closing */
struct transfer *llm_transfer_next(struct transfer *t);
lua_Integer llm_transfer_id(struct transfer *t);
size_t llm_transfer_pending(struct transfer *t);        /* events queued for the next report */

#endif
