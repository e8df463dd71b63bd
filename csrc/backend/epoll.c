/* The Linux backend: libcurl's sockets in an epoll set, with a timerfd for the earliest
 * deadline and an eventfd for ready work, so the epoll descriptor alone tells a host when a
 * step has something to do. Everything here is C state only (STYLE §3). */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>

#include "../internal.h"

#define MAX_EPOLL_EVENTS 256

const char llm_backend_name[] = "epoll";

/* CURLMOPT_SOCKETFUNCTION: keep the epoll set in step with what libcurl wants to watch. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *ud, void *sockp) {
  struct loop *lp = ud;
  struct epoll_event ev;
  (void)easy;
  memset(&ev, 0, sizeof ev);
  ev.data.fd = s;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(lp->fd, EPOLL_CTL_DEL, s, NULL);
    curl_multi_assign(lp->multi, s, NULL);
    return 0;
  }
  ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
  if (sockp == NULL) {        /* first time: remember that this socket is in the set */
    if (epoll_ctl(lp->fd, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST)
      epoll_ctl(lp->fd, EPOLL_CTL_MOD, s, &ev);
    curl_multi_assign(lp->multi, s, lp);
  } else if (epoll_ctl(lp->fd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT) {
    epoll_ctl(lp->fd, EPOLL_CTL_ADD, s, &ev);
  }
  return 0;
}

static int watch(int epfd, int fd) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int llm_backend_open(struct loop *lp) {
  int e;
  lp->fd = epoll_create1(EPOLL_CLOEXEC);
  lp->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  lp->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (lp->fd < 0 || lp->tfd < 0 || lp->efd < 0 || watch(lp->fd, lp->tfd) != 0 || watch(lp->fd, lp->efd) != 0) {
    e = errno;
    llm_backend_close(lp);
    return e ? e : EINVAL;
  }
  curl_multi_setopt(lp->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(lp->multi, CURLMOPT_SOCKETDATA, lp);
  curl_multi_setopt(lp->multi, CURLMOPT_TIMERFUNCTION, llm_loop_curl_timer);
  curl_multi_setopt(lp->multi, CURLMOPT_TIMERDATA, lp);
  return 0;
}

void llm_backend_close(struct loop *lp) {
  if (lp->fd >= 0) close(lp->fd);
  if (lp->tfd >= 0) close(lp->tfd);
  if (lp->efd >= 0) close(lp->efd);
  lp->fd = lp->tfd = lp->efd = -1;
}

void llm_backend_arm(struct loop *lp, double deadline) {
  struct itimerspec its;
  memset(&its, 0, sizeof its);   /* all zero disarms */
  if (deadline >= 0) {
    its.it_value.tv_sec = (time_t)deadline;
    its.it_value.tv_nsec = (long)((deadline - (double)its.it_value.tv_sec) * 1e9);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
  }
  timerfd_settime(lp->tfd, TFD_TIMER_ABSTIME, &its, NULL);   /* a past time fires at once */
}

void llm_backend_signal(struct loop *lp) {
  uint64_t one = 1;
  if (write(lp->efd, &one, sizeof one) < 0) { /* already at its maximum: still readable */ }
}

void llm_backend_clear(struct loop *lp) {
  uint64_t n;
  if (read(lp->efd, &n, sizeof n) < 0) { /* nothing pending */ }
}

double llm_backend_wait(struct loop *lp, int wait_ms, double budget) {
  struct epoll_event evs[MAX_EPOLL_EVENTS];
  int n, i, running, acted = 0;
  double work, stop, before, cost = 0;
  n = epoll_wait(lp->fd, evs, MAX_EPOLL_EVENTS, wait_ms);
  work = llm_now();
  stop = work + budget;
  lp->io_left = 0;
  for (i = 0; i < n; i++) {
    int fd = evs[i].data.fd, mask = 0;
    if (acted > 0 && fd != lp->tfd && fd != lp->efd && llm_now() + cost >= stop) {
      lp->io_left = 1;          /* still readable: the next epoll_wait reports it again */
      continue;
    }
    if (fd == lp->tfd) {
      uint64_t expirations;
      if (read(lp->tfd, &expirations, sizeof expirations) < 0) { /* already drained */ }
      lp->armed_at = -1;        /* consumed: the end of the step arms it again */
      continue;
    }
    if (fd == lp->efd) continue;  /* the loop clears it */
    if (evs[i].events & EPOLLIN) mask |= CURL_CSELECT_IN;
    if (evs[i].events & EPOLLOUT) mask |= CURL_CSELECT_OUT;
    if (evs[i].events & (EPOLLERR | EPOLLHUP)) mask |= CURL_CSELECT_ERR;
    lp->events++;
    acted++;
    before = llm_now();
    curl_multi_socket_action(lp->multi, fd, mask, &running);
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
