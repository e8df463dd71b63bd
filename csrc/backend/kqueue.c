/* The macOS and BSD backend: libcurl's sockets, one timer and a user event in a kqueue,
 * whose descriptor is pollable like Linux's epoll set. It mirrors epoll.c; it is built and
 * run only on those systems (on Linux it is compile-checked against tests/kqueue/). */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>

#include "../internal.h"

#define MAX_KEVENTS 256
#define TIMER_IDENT 1
#define WAKE_IDENT 2

const char llm_backend_name[] = "kqueue";

static void change(struct loop *lp, uintptr_t ident, short filter, unsigned short flags, unsigned int fflags, intptr_t data) {
  struct kevent kev;
  EV_SET(&kev, ident, filter, flags, fflags, data, NULL);
  kevent(lp->fd, &kev, 1, NULL, 0, NULL);   /* EV_DELETE of an absent filter fails harmlessly */
}

/* CURLMOPT_SOCKETFUNCTION: one read and one write filter per socket, enabled as asked. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *ud, void *sockp) {
  struct loop *lp = ud;
  (void)easy; (void)sockp;
  if (what == CURL_POLL_REMOVE) {
    change(lp, (uintptr_t)s, EVFILT_READ, EV_DELETE, 0, 0);
    change(lp, (uintptr_t)s, EVFILT_WRITE, EV_DELETE, 0, 0);
    return 0;
  }
  change(lp, (uintptr_t)s, EVFILT_READ, (what & CURL_POLL_IN) ? EV_ADD | EV_ENABLE : EV_DELETE, 0, 0);
  change(lp, (uintptr_t)s, EVFILT_WRITE, (what & CURL_POLL_OUT) ? EV_ADD | EV_ENABLE : EV_DELETE, 0, 0);
  return 0;
}

int llm_backend_open(struct loop *lp) {
  struct kevent kev;
  if ((lp->fd = kqueue()) < 0) return errno;
  EV_SET(&kev, WAKE_IDENT, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
  if (kevent(lp->fd, &kev, 1, NULL, 0, NULL) != 0) {
    int e = errno;
    close(lp->fd); lp->fd = -1;
    return e;
  }
  curl_multi_setopt(lp->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(lp->multi, CURLMOPT_SOCKETDATA, lp);
  curl_multi_setopt(lp->multi, CURLMOPT_TIMERFUNCTION, llm_loop_curl_timer);
  curl_multi_setopt(lp->multi, CURLMOPT_TIMERDATA, lp);
  return 0;
}

void llm_backend_close(struct loop *lp) {
  if (lp->fd >= 0) close(lp->fd);
  lp->fd = -1;
}

/* A one-shot relative timer (kqueue has no absolute monotonic one); re-armed on change. */
void llm_backend_arm(struct loop *lp, double deadline) {
  double ms;
  if (deadline < 0) { change(lp, TIMER_IDENT, EVFILT_TIMER, EV_DELETE, 0, 0); return; }
  ms = (deadline - llm_now()) * 1000.0;
  change(lp, TIMER_IDENT, EVFILT_TIMER, EV_ADD | EV_ENABLE | EV_ONESHOT, 0,
         (intptr_t)(ms > 0 ? ms + 0.999 : 0));
}

void llm_backend_signal(struct loop *lp) { change(lp, WAKE_IDENT, EVFILT_USER, 0, NOTE_TRIGGER, 0); }

/* EV_CLEAR resets the user event when a wait retrieves it. */
void llm_backend_clear(struct loop *lp) { (void)lp; }

double llm_backend_wait(struct loop *lp, int wait_ms, double budget) {
  struct kevent evs[MAX_KEVENTS];
  struct timespec ts;
  int n, i, running, acted = 0;
  double work, stop, before, cost = 0;
  ts.tv_sec = wait_ms / 1000;
  ts.tv_nsec = (long)(wait_ms % 1000) * 1000000L;
  n = kevent(lp->fd, NULL, 0, evs, MAX_KEVENTS, &ts);
  work = llm_now();
  stop = work + budget;
  lp->io_left = 0;
  for (i = 0; i < n; i++) {
    int mask = 0;
    if (evs[i].filter == EVFILT_TIMER) { lp->armed_at = -1; continue; }
    if (evs[i].filter == EVFILT_USER) continue;
    if (acted > 0 && llm_now() + cost >= stop) { lp->io_left = 1; continue; }   /* level-triggered */
    if (evs[i].filter == EVFILT_READ) mask |= CURL_CSELECT_IN;
    if (evs[i].filter == EVFILT_WRITE) mask |= CURL_CSELECT_OUT;
    if (evs[i].flags & EV_ERROR) mask |= CURL_CSELECT_ERR;
    lp->events++;
    acted++;
    before = llm_now();
    curl_multi_socket_action(lp->multi, (curl_socket_t)evs[i].ident, mask, &running);
    cost = llm_now() - before;   /* the next one may cost as much: stop before overshooting */
  }
  if (lp->curl_deadline >= 0 && llm_now() >= lp->curl_deadline) {
    lp->curl_deadline = -1;
    curl_multi_socket_action(lp->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  }
  return work;
}

void llm_backend_kick(struct loop *lp) {
  int running;
  curl_multi_socket_action(lp->multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

double llm_backend_curl_deadline(struct loop *lp) { return lp->curl_deadline; }
