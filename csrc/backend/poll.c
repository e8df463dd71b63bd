/* The portable backend: curl_multi_poll waits on libcurl's sockets and curl_multi_wakeup
 * interrupts it. It has no pollable descriptor (llm.pollfd() is nil): hosts call step every
 * frame, or wait with llm.next_timeout(). Selected with -DLLM_BACKEND=poll; the default on
 * systems without epoll or kqueue. */
#include "../internal.h"

const char llm_backend_name[] = "poll";

int llm_backend_open(struct loop *lp) {
  lp->fd = -1;
  return 0;
}

void llm_backend_close(struct loop *lp) { (void)lp; }

/* The loop clips each wait to its earliest deadline; nothing to arm. */
void llm_backend_arm(struct loop *lp, double deadline) { (void)lp; (void)deadline; }

void llm_backend_signal(struct loop *lp) { curl_multi_wakeup(lp->multi); }

void llm_backend_clear(struct loop *lp) { (void)lp; }

/* curl_multi_perform serves every ready socket at once: the budget cannot cut it. */
double llm_backend_wait(struct loop *lp, int wait_ms, double budget) {
  int numfds = 0, running;
  double work;
  (void)budget;
  if (wait_ms > 0) curl_multi_poll(lp->multi, NULL, 0, wait_ms, &numfds);
  work = llm_now();
  lp->events += numfds;
  curl_multi_perform(lp->multi, &running);
  return work;
}

/* The next curl_multi_perform starts what was added. */
void llm_backend_kick(struct loop *lp) { (void)lp; }

double llm_backend_curl_deadline(struct loop *lp) {
  long ms = -1;
  if (curl_multi_timeout(lp->multi, &ms) != CURLM_OK || ms < 0) return -1;
  return llm_now() + (double)ms / 1000.0;
}
