/* SPDX-License-Identifier: MIT */
/*
 * transport/transport_impl.h - what every transport shares: the ops table the public
 * dt_transport_* calls dispatch through, and the common head (byte counters, timeout,
 * shutdown flag) each implementation embeds as its first member.
 *
 * Invariants: transport.c validates arguments, turns the per-call timeout into one absolute
 * deadline and refuses calls after dt_transport_shutdown(); the ops then move every byte or
 * return a negative errno (-ETIMEDOUT at the deadline, -EPIPE on send and -ECONNRESET on
 * receive once the stream is broken or the peer closed), counting the bytes they actually
 * moved with transport_count_*() as they go, so a failed call still counts its prefix.
 */
#ifndef DT_TRANSPORT_IMPL_H
#define DT_TRANSPORT_IMPL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <dirtytrack/transport.h>

struct transport_ops {
	const char *name;
	/* len > 0, buf non-NULL; deadline: sys_monotonic_ns() value or SYS_NO_DEADLINE. */
	int (*send)(struct dt_transport *t, const void *buf, size_t len, uint64_t deadline);
	/* iovcnt > 0; entries may be empty; the caller's array is never written. */
	int (*sendv)(struct dt_transport *t, const struct iovec *iov, int iovcnt,
		     uint64_t deadline);
	int (*recv)(struct dt_transport *t, void *buf, size_t len, uint64_t deadline);
	/* Wake every waiter on both ends; called once, from any thread, after the flag is set. */
	void (*shutdown)(struct dt_transport *t);
	/* Release everything, the transport itself included. */
	void (*destroy)(struct dt_transport *t);
	/* Optional: told about a new timeout (already stored in the head). */
	int (*set_timeout)(struct dt_transport *t, int timeout_ms);
	/* Optional: bytes handed to the channel that the peer has not taken yet (a socket's
	 * send queue); negative errno when it cannot tell. */
	int64_t (*unsent)(struct dt_transport *t);
};

struct dt_transport {
	const struct transport_ops *ops;
	_Atomic int timeout_ms;	   /* -1: none */
	_Atomic bool shut;	   /* dt_transport_shutdown() was called on this end */
	_Atomic uint64_t sent;	   /* bytes handed to the channel */
	_Atomic uint64_t received; /* bytes taken from the channel */
};

void transport_init(struct dt_transport *t, const struct transport_ops *ops);

static inline void transport_count_sent(struct dt_transport *t, uint64_t n)
{
	atomic_fetch_add_explicit(&t->sent, n, memory_order_relaxed);
}

static inline void transport_count_received(struct dt_transport *t, uint64_t n)
{
	atomic_fetch_add_explicit(&t->received, n, memory_order_relaxed);
}

static inline bool transport_is_shut(const struct dt_transport *t)
{
	return atomic_load_explicit(&t->shut, memory_order_acquire);
}

#endif
