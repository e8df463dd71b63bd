/* Declarations shared between the core's files. Only luaopen_llm_core is exported. */
#ifndef LLM_INTERNAL_H
#define LLM_INTERNAL_H

#include <curl/curl.h>
#include "compat.h"
#include "buf.h"
#include "sse.h"

#define LLM_LOOP "llm.Loop"
#define LLM_TRANSFER "llm.Transfer"

#define LLM_DEFAULT_MAX_EVENT (16u * 1024u * 1024u)
#define LLM_DEFAULT_MAX_BODY (64u * 1024u * 1024u)

struct transfer;

struct timer {
  double at;              /* monotonic deadline */
  lua_Integer id;
};

struct loop {
  CURLM *multi;           /* NULL once closed */
  int epfd, tfd;          /* the epoll set (one pollable fd) and its timerfd */
  double curl_deadline;   /* when libcurl wants CURL_SOCKET_TIMEOUT; < 0: none */
  struct transfer *head;  /* every transfer created on this loop and not closed */
  struct transfer *dirty; /* transfers with something to report */
  struct timer *timers;   /* binary min-heap on `at` */
  size_t ntimers, captimers;
  lua_Integer *fired;     /* timer ids due, reported by the next step */
  size_t nfired, capfired;
  lua_Integer next_id;
  int in_step;
  lua_Alloc alloc; void *alloc_ud;
  /* counters for loop:stats() */
  lua_Integer waits, blocking_waits, events, new_connections, reused;
  lua_Integer deferred;   /* steps that left reports for the next step (budget reached) */
};

double llm_now(void);
void llm_framer_register(lua_State *L);
void llm_json_register(lua_State *L);
void llm_loop_register(lua_State *L);
void llm_transfer_register(lua_State *L);

/* transfer.c, called by loop.c */
int llm_transfer_new(lua_State *L);                    /* loop:transfer(spec) */
void llm_transfer_done(struct transfer *t, CURLcode rc); /* from curl_multi_info_read */
void llm_transfer_mark_dirty(struct transfer *t);
double llm_transfer_deadline(struct transfer *t);      /* nearest own deadline, < 0 none */
void llm_transfer_check(struct transfer *t, double now);  /* fire due deadlines and restarts */
int llm_transfer_report(lua_State *L, struct transfer *t, int records, int *n);  /* [-0, +0] */
void llm_transfer_detach_all(struct loop *lp);         /* loop closing */
struct transfer *llm_transfer_next(struct transfer *t);
lua_Integer llm_transfer_id(struct transfer *t);
size_t llm_transfer_pending(struct transfer *t);        /* events queued for the next report */

#endif
