/* SPDX-License-Identifier: MIT */
/*
 * transport/transport.c - the public dt_transport_* calls: argument checks, the per-call
 * timeout turned into one deadline, the shutdown flag, the byte counters, and dispatch
 * through the transport's ops table (socket.c: TCP, UNIX, fds; mem_pair.c: in-memory pair).
 *
 * Invariants: an op is only called with a non-empty request and valid pointers; a call made
 * after dt_transport_shutdown() fails here without reaching the op (-EPIPE sending,
 * -ECONNRESET receiving), so a shut end never touches its channel again.
 */
#include "transport/transport_impl.h"

#include <errno.h>
#include <stdint.h>

#include "core/log.h"
#include "sys/sys.h"

void transport_init(struct dt_transport *t, const struct transport_ops *ops)
{
	t->ops = ops;
	atomic_init(&t->timeout_ms, -1);
	atomic_init(&t->shut, false);
	atomic_init(&t->sent, 0);
	atomic_init(&t->received, 0);
}

static uint64_t call_deadline(const struct dt_transport *t)
{
	return sys_deadline_ms(atomic_load_explicit(&t->timeout_ms, memory_order_relaxed));
}

int dt_transport_send(struct dt_transport *t, const void *buf, size_t len)
{
	if (!t || (!buf && len))
		return -EINVAL;
	if (transport_is_shut(t))
		return -EPIPE;
	if (!len)
		return 0;
	return t->ops->send(t, buf, len, call_deadline(t));
}

int dt_transport_sendv(struct dt_transport *t, const struct iovec *iov, int iovcnt)
{
	size_t total = 0;
	int i;

	if (!t || iovcnt < 0 || (!iov && iovcnt))
		return -EINVAL;
	for (i = 0; i < iovcnt; i++) {
		if (!iov[i].iov_base && iov[i].iov_len)
			return -EINVAL;
		if (iov[i].iov_len > SIZE_MAX - total)
			return -EINVAL;
		total += iov[i].iov_len;
	}
	if (transport_is_shut(t))
		return -EPIPE;
	if (!total)
		return 0;
	return t->ops->sendv(t, iov, iovcnt, call_deadline(t));
}

int dt_transport_recv(struct dt_transport *t, void *buf, size_t len)
{
	if (!t || (!buf && len))
		return -EINVAL;
	if (transport_is_shut(t))
		return -ECONNRESET;
	if (!len)
		return 0;
	return t->ops->recv(t, buf, len, call_deadline(t));
}

int dt_transport_set_timeout(struct dt_transport *t, int timeout_ms)
{
	if (!t || timeout_ms < -1)
		return -EINVAL;
	atomic_store_explicit(&t->timeout_ms, timeout_ms, memory_order_relaxed);
	return t->ops->set_timeout ? t->ops->set_timeout(t, timeout_ms) : 0;
}

uint64_t dt_transport_bytes_sent(const struct dt_transport *t)
{
	return t ? atomic_load_explicit(&t->sent, memory_order_relaxed) : 0;
}

int64_t dt_transport_unsent(struct dt_transport *t)
{
	if (!t)
		return -EINVAL;
	return t->ops->unsent ? t->ops->unsent(t) : -ENOTSUP;
}

uint64_t dt_transport_bytes_received(const struct dt_transport *t)
{
	return t ? atomic_load_explicit(&t->received, memory_order_relaxed) : 0;
}

void dt_transport_shutdown(struct dt_transport *t)
{
	if (!t)
		return;
	/* Once: a second call (another thread, or free after shutdown) has nothing to wake. */
	if (atomic_exchange_explicit(&t->shut, true, memory_order_acq_rel))
		return;
	log_debug("transport %s: shutdown", t->ops->name);
	t->ops->shutdown(t);
}

void dt_transport_free(struct dt_transport *t)
{
	if (t)
		t->ops->destroy(t);
}
