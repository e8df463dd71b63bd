/* A stand-in for the BSD/macOS <sys/event.h>, with the declarations csrc/backend/kqueue.c
 * uses (values as in FreeBSD's header), so that backend is compile-checked on Linux.
 * Never linked or run: kqueue exists only on macOS and the BSDs. */
#ifndef LLM_TEST_SYS_EVENT_H
#define LLM_TEST_SYS_EVENT_H

#include <stdint.h>
#include <time.h>

struct kevent {
  uintptr_t ident;
  short filter;
  unsigned short flags;
  unsigned int fflags;
  intptr_t data;
  void *udata;
};

#define EVFILT_READ (-1)
#define EVFILT_WRITE (-2)
#define EVFILT_TIMER (-7)
#define EVFILT_USER (-11)

#define EV_ADD 0x0001
#define EV_DELETE 0x0002
#define EV_ENABLE 0x0004
#define EV_DISABLE 0x0008
#define EV_ONESHOT 0x0010
#define EV_CLEAR 0x0020
#define EV_ERROR 0x4000
#define EV_EOF 0x8000

#define NOTE_TRIGGER 0x01000000

#define EV_SET(kevp, a, b, c, d, e, f) do {   \
    struct kevent *ev_ = (kevp);              \
    ev_->ident = (a); ev_->filter = (b);      \
    ev_->flags = (c); ev_->fflags = (d);      \
    ev_->data = (e); ev_->udata = (f);        \
  } while (0)

int kqueue(void);
int kevent(int kq, const struct kevent *changelist, int nchanges, struct kevent *eventlist,
           int nevents, const struct timespec *timeout);

#endif
