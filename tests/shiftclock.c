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
 * A wait until a moment of the wall clock (clock_nanosleep with TIMER_ABSTIME, sem_timedwait,
 * pthread_mutex_timedlock, and the clockwait and clocklock calls given a wall clock) is moved
 * back by the same offset, so it ends when the caller expects. Not pthread_cond_timedwait:
 * its clock is the condition variable's, which glibc does not tell; Python, PostgreSQL and
 * Chromium wait on condition variables by the monotonic clock, where nothing needs moving.
 *
 * Built for 64-bit Linux (glibc), where time_t is 64 bits and there are no *_time64 twins. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

typedef int (*gettime_fn)(clockid_t, struct timespec *);
typedef int (*timeofday_fn)(struct timeval *, void *);
typedef int (*nanosleep_fn)(clockid_t, int, const struct timespec *, struct timespec *);
typedef int (*timespec_get_fn)(struct timespec *, int);
typedef int (*sem_timedwait_fn)(sem_t *, const struct timespec *);
typedef int (*sem_clockwait_fn)(sem_t *, clockid_t, const struct timespec *);
typedef int (*mutex_timedlock_fn)(pthread_mutex_t *, const struct timespec *);
typedef int (*mutex_clocklock_fn)(pthread_mutex_t *, clockid_t, const struct timespec *);
typedef int (*cond_clockwait_fn)(pthread_cond_t *, pthread_mutex_t *, clockid_t, const struct timespec *);

static long long offset; /* whole seconds */
static gettime_fn real_clock_gettime;
static timeofday_fn real_gettimeofday;
static nanosleep_fn real_clock_nanosleep;
static timespec_get_fn real_timespec_get;
static sem_timedwait_fn real_sem_timedwait;
static sem_clockwait_fn real_sem_clockwait;
static mutex_timedlock_fn real_mutex_timedlock;
static mutex_clocklock_fn real_mutex_clocklock;
static cond_clockwait_fn real_cond_clockwait;

/* Before main() runs, and again on a first call that comes earlier still (a program's own
 * constructors may read the clock before this library's has run). Once it has run, the
 * wrappers call nothing but the real functions, so they are as safe in a signal handler
 * as those are. (Were malloc to read the clock before this ran, dlsym's own malloc could
 * come back here: no allocator the suite runs does.) */
__attribute__((constructor)) static void start(void) {
    if (real_clock_gettime != NULL) return;
    const char *text = getenv("TEST_CLOCK_OFFSET");
    offset = text ? strtoll(text, NULL, 10) : 0;
    real_gettimeofday = (timeofday_fn)dlsym(RTLD_NEXT, "gettimeofday");
    real_clock_nanosleep = (nanosleep_fn)dlsym(RTLD_NEXT, "clock_nanosleep");
    real_timespec_get = (timespec_get_fn)dlsym(RTLD_NEXT, "timespec_get");
    real_sem_timedwait = (sem_timedwait_fn)dlsym(RTLD_NEXT, "sem_timedwait");
    real_sem_clockwait = (sem_clockwait_fn)dlsym(RTLD_NEXT, "sem_clockwait");
    real_mutex_timedlock = (mutex_timedlock_fn)dlsym(RTLD_NEXT, "pthread_mutex_timedlock");
    real_mutex_clocklock = (mutex_clocklock_fn)dlsym(RTLD_NEXT, "pthread_mutex_clocklock");
    real_cond_clockwait = (cond_clockwait_fn)dlsym(RTLD_NEXT, "pthread_cond_clockwait");
    real_clock_gettime = (gettime_fn)dlsym(RTLD_NEXT, "clock_gettime"); /* last: "done" */
}

static int is_wall(clockid_t clock) {
    return clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE || clock == CLOCK_TAI ||
           clock == CLOCK_REALTIME_ALARM;
}

/* A moment of the moved wall clock as the real one (NULL stays NULL: the real call says). */
static const struct timespec *real_moment(const struct timespec *moved, struct timespec *out) {
    if (moved == NULL) return NULL;
    *out = *moved;
    out->tv_sec -= offset;
    return out;
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
    /* glibc declares now non-null, yet the kernel takes NULL: built with
     * -fno-delete-null-pointer-checks so this test stays. */
    if (done == 0 && now != NULL) now->tv_sec += offset;
    return done;
}

time_t time(time_t *out) {
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0) return (time_t)-1;
    if (out != NULL) *out = now.tv_sec;
    return now.tv_sec;
}

int timespec_get(struct timespec *now, int base) {
    start();
    int done = real_timespec_get(now, base);
    if (done == TIME_UTC) now->tv_sec += offset;
    return done;
}

int clock_nanosleep(clockid_t clock, int flags, const struct timespec *until, struct timespec *left) {
    start();
    struct timespec real;
    if ((flags & TIMER_ABSTIME) && is_wall(clock)) until = real_moment(until, &real);
    return real_clock_nanosleep(clock, flags, until, left);
}

int sem_timedwait(sem_t *sem, const struct timespec *until) {
    start();
    struct timespec real;
    return real_sem_timedwait(sem, real_moment(until, &real));
}

int sem_clockwait(sem_t *sem, clockid_t clock, const struct timespec *until) {
    start();
    struct timespec real;
    return real_sem_clockwait(sem, clock, is_wall(clock) ? real_moment(until, &real) : until);
}

int pthread_mutex_timedlock(pthread_mutex_t *mutex, const struct timespec *until) {
    start();
    struct timespec real;
    return real_mutex_timedlock(mutex, real_moment(until, &real));
}

int pthread_mutex_clocklock(pthread_mutex_t *mutex, clockid_t clock, const struct timespec *until) {
    start();
    struct timespec real;
    return real_mutex_clocklock(mutex, clock, is_wall(clock) ? real_moment(until, &real) : until);
}

int pthread_cond_clockwait(
    pthread_cond_t *cond, pthread_mutex_t *mutex, clockid_t clock, const struct timespec *until) {
    start();
    struct timespec real;
    return real_cond_clockwait(cond, mutex, clock, is_wall(clock) ? real_moment(until, &real) : until);
}
