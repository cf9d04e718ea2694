/* Moves the wall clock of a process and of everything it starts by TEST_CLOCK_OFFSET seconds
 * (loaded with LD_PRELOAD by tests/clock.py, for `make test-dates`).
 *
 * Only the wall clock moves (CLOCK_REALTIME and its variants, gettimeofday, time): the
 * monotonic clock, which sleeps, timeouts and waits are measured by, stays real. That is
 * what libfaketime 0.9.10 gets wrong for this suite: faking the monotonic clock hangs
 * Python's threading waits, leaving it real makes Python's time.sleep fail with EINVAL,
 * and since it reads the real clock inside its own poll()/epoll_wait() wrappers, a signal
 * handler running there (PostgreSQL's statement and lock timeouts) sees the real time and
 * a timeout set by the moved clock never fires.
 *
 * An absolute sleep on the wall clock (clock_nanosleep with TIMER_ABSTIME) is moved back
 * by the same offset, so it ends when the caller expects. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long long offset;  /* whole seconds */
static int (*real_clock_gettime)(clockid_t, struct timespec *);
static int (*real_gettimeofday)(struct timeval *, void *);
static int (*real_clock_nanosleep)(clockid_t, int, const struct timespec *, struct timespec *);

/* Before main() runs, and again on a first call that comes earlier still (a program's own
 * constructors may read the clock before this library's has run). */
__attribute__((constructor)) static void start(void) {
    if (real_clock_gettime != NULL) return;
    const char *text = getenv("TEST_CLOCK_OFFSET");
    offset = text ? strtoll(text, NULL, 10) : 0;
    real_gettimeofday = (int (*)(struct timeval *, void *))dlsym(RTLD_NEXT, "gettimeofday");
    real_clock_nanosleep = (int (*)(clockid_t, int, const struct timespec *, struct timespec *))dlsym(
        RTLD_NEXT, "clock_nanosleep");
    real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
}

static int is_wall(clockid_t clock) {
    return clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE || clock == CLOCK_TAI;
}

int clock_gettime(clockid_t clock, struct timespec *now) {
    start();
    int done = real_clock_gettime(clock, now);
    if (done == 0 && is_wall(clock)) now->tv_sec += offset;
    return done;
}

int gettimeofday(struct timeval *now, void *zone) {
    start();
    int done = real_gettimeofday(now, zone);
    if (done == 0) now->tv_sec += offset;
    return done;
}

time_t time(time_t *out) {
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0) return (time_t)-1;
    if (out != NULL) *out = now.tv_sec;
    return now.tv_sec;
}

int timespec_get(struct timespec *now, int base) {
    return base == TIME_UTC && clock_gettime(CLOCK_REALTIME, now) == 0 ? base : 0;
}

int clock_nanosleep(clockid_t clock, int flags, const struct timespec *until, struct timespec *left) {
    start();
    if ((flags & TIMER_ABSTIME) && is_wall(clock) && until != NULL) {
        struct timespec real = *until;
        real.tv_sec -= offset;
        return real_clock_nanosleep(clock, flags, &real, left);
    }
    return real_clock_nanosleep(clock, flags, until, left);
}
