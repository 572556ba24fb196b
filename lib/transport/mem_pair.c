/* SPDX-License-Identifier: MIT */
/*
 * transport/mem_pair.c - two connected in-memory ends, for tests and for running a source
 * and a destination in one process.
 *
 * Each direction is a bounded ring buffer; both rings share one mutex and each has two
 * condition variables (readable, writable) on CLOCK_MONOTONIC so a deadline is immune to
 * wall-clock jumps.
 *
 * Invariants:
 * - ring[i] is written only by end i and read only by the other end, one thread each (the
 *   header's rule). The bytes [head, head + used) (mod cap) belong to the reader, the rest
 *   to the writer, so each copies its part with the lock dropped and only the indices move
 *   under the lock.
 * - A closed ring takes no more bytes (its writer gets -EPIPE) but its reader drains what is
 *   there before getting -ECONNRESET, as from a socket whose peer closed. Freeing an end
 *   closes both rings; reaching fail_after_bytes (counted over both directions) closes both
 *   too, so exactly that many bytes go through and can all be received.
 * - shut[i] (dt_transport_shutdown on end i), as a socket's shutdown(SHUT_RDWR): every call
 *   on end i fails at once; the other end still receives what end i sent before, then
 *   -ECONNRESET, and its sends fail with -EPIPE. Every waiter is woken by a broadcast.
 * - The shared part is freed by whichever end is freed last.
 */
#include "transport/transport_impl.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"
#include "sys/sys.h"

#define DEFAULT_CAPACITY (4u << 20)

struct ring {
	unsigned char *buf;
	size_t cap;
	size_t head; /* first unread byte */
	size_t used; /* unread bytes */
	bool closed;
	pthread_cond_t readable, writable;
};

struct mem_shared {
	pthread_mutex_t lock;
	struct ring ring[2]; /* ring[i]: written by end i, read by end 1 - i */
	bool shut[2];	     /* dt_transport_shutdown() on end i */
	uint64_t fail_after; /* 0: never */
	uint64_t total_sent; /* over both directions, for fail_after */
	int ends;	     /* ends not yet freed */
};

struct mem_end {
	struct dt_transport head;
	struct mem_shared *sh;
	int side;
};

static struct mem_end *to_end(struct dt_transport *t)
{
	return (struct mem_end *)t;
}

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

static void wake_all(struct mem_shared *sh)
{
	for (int i = 0; i < 2; i++) {
		pthread_cond_broadcast(&sh->ring[i].readable);
		pthread_cond_broadcast(&sh->ring[i].writable);
	}
}

/* Wait on cv with sh->lock held; -ETIMEDOUT once deadline has passed. */
static int ring_wait(struct mem_shared *sh, pthread_cond_t *cv, uint64_t deadline)
{
	struct timespec ts;

	if (deadline == SYS_NO_DEADLINE) {
		pthread_cond_wait(cv, &sh->lock);
		return 0;
	}
	if (sys_monotonic_ns() >= deadline)
		return -ETIMEDOUT;
	ts.tv_sec = (time_t)(deadline / 1000000000ull);
	ts.tv_nsec = (long)(deadline % 1000000000ull);
	return pthread_cond_timedwait(cv, &sh->lock, &ts) == ETIMEDOUT ? -ETIMEDOUT : 0;
}

static int mem_write(struct mem_end *e, const unsigned char *buf, size_t len, uint64_t deadline)
{
	struct mem_shared *sh = e->sh;
	struct ring *rg = &sh->ring[e->side];
	size_t pos, n;
	int err = 0;

	pthread_mutex_lock(&sh->lock);
	while (len) {
		if (sh->shut[0] || sh->shut[1] || rg->closed) {
			err = -EPIPE;
			break;
		}
		if (rg->used == rg->cap) {
			err = ring_wait(sh, &rg->writable, deadline);
			if (err)
				break;
			continue;
		}
		pos = (rg->head + rg->used) % rg->cap;
		n = min_size(len, min_size(rg->cap - rg->used, rg->cap - pos));
		if (sh->fail_after && sh->fail_after - sh->total_sent < n)
			n = (size_t)(sh->fail_after - sh->total_sent);
		pthread_mutex_unlock(&sh->lock);
		memcpy(rg->buf + pos, buf, n); /* free space: the reader does not look there */
		pthread_mutex_lock(&sh->lock);
		rg->used += n;
		sh->total_sent += n;
		transport_count_sent(&e->head, n);
		buf += n;
		len -= n;
		pthread_cond_signal(&rg->readable);
		if (sh->fail_after && sh->total_sent >= sh->fail_after && !sh->ring[0].closed) {
			log_debug("transport mem: breaking after %llu bytes",
				  (unsigned long long)sh->total_sent);
			sh->ring[0].closed = sh->ring[1].closed = true;
			wake_all(sh);
		}
	}
	pthread_mutex_unlock(&sh->lock);
	return err;
}

static int mem_send(struct dt_transport *t, const void *buf, size_t len, uint64_t deadline)
{
	return mem_write(to_end(t), buf, len, deadline);
}

static int mem_sendv(struct dt_transport *t, const struct iovec *iov, int iovcnt, uint64_t deadline)
{
	int r = 0;

	for (int i = 0; i < iovcnt && !r; i++)
		if (iov[i].iov_len)
			r = mem_write(to_end(t), iov[i].iov_base, iov[i].iov_len, deadline);
	return r;
}

static int mem_recv(struct dt_transport *t, void *buf, size_t len, uint64_t deadline)
{
	struct mem_end *e = to_end(t);
	struct mem_shared *sh = e->sh;
	struct ring *rg = &sh->ring[1 - e->side];
	unsigned char *p = buf;
	size_t n;
	int err = 0;

	pthread_mutex_lock(&sh->lock);
	while (len) {
		if (sh->shut[e->side]) {
			err = -ECONNRESET;
			break;
		}
		if (!rg->used) {
			if (rg->closed || sh->shut[1 - e->side]) {
				err = -ECONNRESET;
				break;
			}
			err = ring_wait(sh, &rg->readable, deadline);
			if (err)
				break;
			continue;
		}
		n = min_size(len, min_size(rg->used, rg->cap - rg->head));
		pthread_mutex_unlock(&sh->lock);
		memcpy(p, rg->buf + rg->head, n); /* unread bytes: the writer does not look there */
		pthread_mutex_lock(&sh->lock);
		rg->head = (rg->head + n) % rg->cap;
		rg->used -= n;
		transport_count_received(t, n);
		p += n;
		len -= n;
		pthread_cond_signal(&rg->writable);
	}
	pthread_mutex_unlock(&sh->lock);
	return err;
}

static void mem_shutdown(struct dt_transport *t)
{
	struct mem_end *e = to_end(t);
	struct mem_shared *sh = e->sh;

	pthread_mutex_lock(&sh->lock);
	sh->shut[e->side] = true;
	wake_all(sh);
	pthread_mutex_unlock(&sh->lock);
}

static void shared_free(struct mem_shared *sh)
{
	for (int i = 0; i < 2; i++) {
		pthread_cond_destroy(&sh->ring[i].readable);
		pthread_cond_destroy(&sh->ring[i].writable);
		xfree(sh->ring[i].buf);
	}
	pthread_mutex_destroy(&sh->lock);
	xfree(sh);
}

static void mem_destroy(struct dt_transport *t)
{
	struct mem_end *e = to_end(t);
	struct mem_shared *sh = e->sh;
	bool last;

	pthread_mutex_lock(&sh->lock);
	sh->ring[0].closed = sh->ring[1].closed = true;
	wake_all(sh);
	last = --sh->ends == 0;
	pthread_mutex_unlock(&sh->lock);
	if (last)
		shared_free(sh);
	xfree(e);
}

static const struct transport_ops mem_ops = {
	.name = "mem",
	.send = mem_send,
	.sendv = mem_sendv,
	.recv = mem_recv,
	.shutdown = mem_shutdown,
	.destroy = mem_destroy,
};

static struct mem_shared *shared_new(size_t capacity, uint64_t fail_after)
{
	struct mem_shared *sh = xzalloc(sizeof(*sh));
	pthread_condattr_t attr;
	int i;

	if (!sh)
		return NULL;
	for (i = 0; i < 2; i++) {
		sh->ring[i].cap = capacity;
		sh->ring[i].buf = xzalloc(capacity);
		if (!sh->ring[i].buf) {
			xfree(sh->ring[0].buf);
			xfree(sh);
			return NULL;
		}
	}
	pthread_mutex_init(&sh->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	for (i = 0; i < 2; i++) {
		pthread_cond_init(&sh->ring[i].readable, &attr);
		pthread_cond_init(&sh->ring[i].writable, &attr);
	}
	pthread_condattr_destroy(&attr);
	sh->fail_after = fail_after;
	sh->ends = 2;
	return sh;
}

int dt_transport_pair(const struct dt_transport_pair_opts *opts, struct dt_transport **a,
		      struct dt_transport **b)
{
	size_t capacity = DEFAULT_CAPACITY;
	uint64_t fail_after = 0;
	struct mem_end *end[2] = {NULL, NULL};
	struct mem_shared *sh;

	if (!a || !b)
		return log_fail(-EINVAL, "dt_transport_pair: NULL end pointer");
	*a = *b = NULL;
	if (opts) {
		if (opts->size < sizeof(*opts))
			return log_fail(-EINVAL, "dt_transport_pair: opts.size %zu < %zu",
					opts->size, sizeof(*opts));
		if (opts->capacity)
			capacity = opts->capacity;
		fail_after = opts->fail_after_bytes;
	}
	end[0] = xzalloc(sizeof(*end[0]));
	end[1] = xzalloc(sizeof(*end[1]));
	sh = end[0] && end[1] ? shared_new(capacity, fail_after) : NULL;
	if (!sh) {
		xfree(end[0]);
		xfree(end[1]);
		return log_fail(-ENOMEM, "dt_transport_pair: out of memory (capacity %zu)",
				capacity);
	}
	for (int i = 0; i < 2; i++) {
		transport_init(&end[i]->head, &mem_ops);
		end[i]->sh = sh;
		end[i]->side = i;
	}
	*a = &end[0]->head;
	*b = &end[1]->head;
	return 0;
}
