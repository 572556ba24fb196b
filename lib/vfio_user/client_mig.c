/* SPDX-License-Identifier: MIT */
/*
 * vfio_user/client_mig.c - the device's v2 migration state machine as the client drives it,
 * and the struct dt_migrate_device that carries the device state in a migration stream.
 *
 * State changes go one arc at a time (the direct arcs of the spec), on the shortest path
 * with no saving state (PRE_COPY, STOP_COPY) inside it, so that a server that implements
 * only the direct arcs works too. After an arc fails the client asks the server where it is.
 *
 * Migration data: what the device gives in the saving states is read into one buffer
 * (mig_buf) that lives while the device stays in them. In PRE_COPY, pending() drains what the
 * device has ready (MIG_DATA_READ until a short read); in STOP_COPY, save() reads the rest to
 * its end (a short read) and hands the whole buffer out, again if the engine retries with a
 * larger buffer. Pre-copy and stop-copy data are one stream, as in VFIO: the destination
 * writes it all in RESUMING. Leaving the saving states drops the buffer.
 */
#include <errno.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "vfio_user/client_priv.h"

static const char *state_name(enum dt_vfu_mig_state s)
{
	switch (s) {
	case DT_VFU_MIG_ERROR:
		return "ERROR";
	case DT_VFU_MIG_STOP:
		return "STOP";
	case DT_VFU_MIG_RUNNING:
		return "RUNNING";
	case DT_VFU_MIG_STOP_COPY:
		return "STOP_COPY";
	case DT_VFU_MIG_RESUMING:
		return "RESUMING";
	case DT_VFU_MIG_PRE_COPY:
		return "PRE_COPY";
	}
	return "unknown";
}

static bool saving(enum dt_vfu_mig_state s)
{
	return s == DT_VFU_MIG_PRE_COPY || s == DT_VFU_MIG_STOP_COPY;
}

void client_mig_reset(struct dt_vfu_client *c)
{
	xfree(c->mig_buf);
	c->mig_buf = NULL;
	c->mig_len = c->mig_cap = 0;
	c->mig_complete = false;
	c->mig_last_chunk = 0;
}

/* The next state on the way from cur to want; DT_VFU_MIG_ERROR when there is no way. */
static enum dt_vfu_mig_state next_arc(enum dt_vfu_mig_state cur, enum dt_vfu_mig_state want)
{
	if (cur == want)
		return cur;
	switch (cur) {
	case DT_VFU_MIG_RUNNING:
		return want == DT_VFU_MIG_PRE_COPY ? DT_VFU_MIG_PRE_COPY : DT_VFU_MIG_STOP;
	case DT_VFU_MIG_PRE_COPY:
		return want == DT_VFU_MIG_STOP_COPY ? DT_VFU_MIG_STOP_COPY : DT_VFU_MIG_RUNNING;
	case DT_VFU_MIG_STOP_COPY:
		return want == DT_VFU_MIG_PRE_COPY ? DT_VFU_MIG_ERROR : DT_VFU_MIG_STOP;
	case DT_VFU_MIG_RESUMING:
		return DT_VFU_MIG_STOP;
	case DT_VFU_MIG_STOP:
		if (want == DT_VFU_MIG_RUNNING || want == DT_VFU_MIG_PRE_COPY)
			return DT_VFU_MIG_RUNNING;
		return want; /* STOP_COPY, RESUMING */
	case DT_VFU_MIG_ERROR:
		break;
	}
	return DT_VFU_MIG_ERROR;
}

static int get_state(struct dt_vfu_client *c, enum dt_vfu_mig_state *state)
{
	struct vfu_feature_mig_state ms;
	int ret = client_feature_get(c, VFU_FEATURE_MIG_DEVICE_STATE, &ms, sizeof(ms),
				     "MIG_DEVICE_STATE");

	if (ret)
		return ret;
	switch (ms.device_state) {
	case DT_VFU_MIG_ERROR:
	case DT_VFU_MIG_STOP:
	case DT_VFU_MIG_RUNNING:
	case DT_VFU_MIG_STOP_COPY:
	case DT_VFU_MIG_RESUMING:
	case DT_VFU_MIG_PRE_COPY:
		*state = (enum dt_vfu_mig_state)ms.device_state;
		return 0;
	}
	return client_break(c, log_fail(-EPROTO, "vfio-user client: the device is in state %u",
					ms.device_state));
}

static int set_arc(struct dt_vfu_client *c, enum dt_vfu_mig_state s)
{
	struct vfu_feature_mig_state ms = {.device_state = s};
	struct client_reply r;
	int ret = client_feature(c, VFU_FEATURE_SET | VFU_FEATURE_MIG_DEVICE_STATE, &ms, sizeof(ms),
				 sizeof(ms), &r);

	if (!ret) {
		client_reply_done(&r);
		if (r.msg.len != sizeof(struct vfu_device_feature) &&
		    r.msg.len != sizeof(struct vfu_device_feature) + sizeof(ms))
			return client_break(
				c, log_fail(-EPROTO,
					    "vfio-user client: MIG_DEVICE_STATE SET reply of %u "
					    "bytes",
					    r.msg.len));
		if (!saving(c->mig_state) || !saving(s))
			client_mig_reset(c); /* a new data session, or none */
		c->mig_state = s;
		return 0;
	}
	log_err("vfio-user client: the device refused %s -> %s (%d)", state_name(c->mig_state),
		state_name(s), ret);
	if (!c->broken && !get_state(c, &c->mig_state) && !saving(c->mig_state))
		client_mig_reset(c);
	return ret;
}

static int set_state(struct dt_vfu_client *c, enum dt_vfu_mig_state want)
{
	if (!c->info.mig_flags)
		return log_fail(-ENOTSUP, "vfio-user client: the device cannot migrate");
	if (want == DT_VFU_MIG_ERROR ||
	    (want == DT_VFU_MIG_PRE_COPY && !(c->info.mig_flags & DT_VFU_MIGRATION_PRE_COPY)) ||
	    next_arc(c->mig_state, want) == DT_VFU_MIG_ERROR)
		return log_fail(-EINVAL, "vfio-user client: no way from %s to %s",
				state_name(c->mig_state), state_name(want));
	while (c->mig_state != want) {
		int ret = set_arc(c, next_arc(c->mig_state, want));

		if (ret)
			return ret;
	}
	return 0;
}

int dt_vfu_client_mig_get_state(struct dt_vfu_client *c, enum dt_vfu_mig_state *state)
{
	int ret;

	if (!c || !state)
		return log_fail(-EINVAL, "dt_vfu_client_mig_get_state: NULL argument");
	pthread_mutex_lock(&c->lock);
	ret = c->info.mig_flags ? get_state(c, state)
				: log_fail(-ENOTSUP, "vfio-user client: the device cannot migrate");
	pthread_mutex_unlock(&c->lock);
	return ret;
}

int dt_vfu_client_mig_set_state(struct dt_vfu_client *c, enum dt_vfu_mig_state state)
{
	int ret;

	if (!c)
		return log_fail(-EINVAL, "dt_vfu_client_mig_set_state: NULL client");
	pthread_mutex_lock(&c->lock);
	ret = set_state(c, state);
	pthread_mutex_unlock(&c->lock);
	return ret;
}

/* ---- migration data ------------------------------------------------------------------------ */

static int buf_reserve(struct dt_vfu_client *c, size_t more)
{
	size_t cap = c->mig_cap ? c->mig_cap : 64 * 1024;
	uint8_t *p;

	if (c->mig_len + more > CLIENT_MAX_DEVICE_DATA)
		return log_fail(-EFBIG, "vfio-user client: device state past %llu bytes",
				(unsigned long long)CLIENT_MAX_DEVICE_DATA);
	if (c->mig_len + more <= c->mig_cap)
		return 0;
	while (cap < c->mig_len + more)
		cap *= 2;
	p = xrealloc_array(c->mig_buf, cap, 1);
	if (!p)
		return log_fail(-ENOMEM,
				"vfio-user client: no memory for %zu bytes of device state", cap);
	c->mig_buf = p;
	c->mig_cap = cap;
	return 0;
}

/* MIG_DATA_READ until a short read: what the device has now (PRE_COPY) or the rest of its
 * state (STOP_COPY, then mig_complete). */
static int drain(struct dt_vfu_client *c)
{
	uint32_t chunk = (uint32_t)(c->xfer < UINT32_MAX - 64 ? c->xfer : UINT32_MAX - 64);

	if (c->mig_complete)
		return 0;
	for (;;) {
		struct vfu_mig_data md = {.argsz = (uint32_t)sizeof(md) + chunk, .size = chunk},
				    got;
		struct iovec iov = {&md, sizeof(md)};
		struct client_reply r;
		int ret = buf_reserve(c, chunk);

		if (!ret)
			ret = client_xact(c, VFU_CMD_MIG_DATA_READ, &iov, 1, NULL, 0,
					  sizeof(md) + chunk, &r);
		if (ret)
			return ret;
		if (r.msg.len < sizeof(got))
			goto bad;
		memcpy(&got, r.msg.payload, sizeof(got));
		if (got.size > chunk || r.msg.len != sizeof(got) + got.size)
			goto bad;
		memcpy(c->mig_buf + c->mig_len, r.msg.payload + sizeof(got), got.size);
		c->mig_len += got.size;
		client_reply_done(&r);
		if (got.size < chunk) {
			c->mig_complete = c->mig_state == DT_VFU_MIG_STOP_COPY;
			return 0;
		}
		continue;
	bad:
		client_reply_done(&r);
		return client_break(
			c, log_fail(-EPROTO,
				    "vfio-user client: MIG_DATA_READ of %u bytes: a reply of "
				    "%u bytes that does not add up",
				    chunk, r.msg.len));
	}
}

static int query_data_size(struct dt_vfu_client *c, uint64_t *size)
{
	struct vfu_feature_mig_data_size ds;
	int ret =
		client_feature_get(c, VFU_FEATURE_MIG_DATA_SIZE, &ds, sizeof(ds), "MIG_DATA_SIZE");

	if (ret)
		return ret;
	*size = ds.stop_copy_length;
	return 0;
}

/*
 * Bytes of device state expected at switchover. STOP_COPY: everything is read first, exact.
 * Otherwise the server's MIG_DATA_SIZE when it answers, else the short-read heuristic: what
 * pre-copy already brought plus the most one drain (MIG_DATA_READ to a short read) brought
 * so far (a device whose state changed by that much in a round may send that much again in
 * stop-copy), at least the hint of the options.
 */
static uint64_t mig_pending(void *opaque)
{
	struct dt_vfu_client *c = opaque;
	uint64_t est = 0, size = 0;
	size_t before;

	pthread_mutex_lock(&c->lock);
	before = c->mig_len;
	if (c->mig_state == DT_VFU_MIG_STOP_COPY) {
		if (drain(c))
			log_warn("vfio-user client: pending: reading the device state failed");
		est = c->mig_len;
		goto out;
	}
	if (c->mig_state == DT_VFU_MIG_PRE_COPY) {
		if (drain(c))
			log_warn("vfio-user client: pending: reading pre-copy data failed");
		if (c->mig_len - before > c->mig_last_chunk)
			c->mig_last_chunk = c->mig_len - before;
	}
	if (c->info.mig_data_size && !c->broken && !query_data_size(c, &size))
		est = c->mig_len + size;
	else
		est = c->mig_len +
		      (c->mig_last_chunk > c->mig_data_hint ? c->mig_last_chunk : c->mig_data_hint);
out:
	pthread_mutex_unlock(&c->lock);
	return est;
}

static int64_t mig_save(void *opaque, void *buf, size_t cap)
{
	struct dt_vfu_client *c = opaque;
	int64_t ret;

	pthread_mutex_lock(&c->lock);
	if (c->mig_state != DT_VFU_MIG_STOP_COPY) {
		ret = log_fail(
			-EINVAL,
			"vfio-user client: save with the device in %s: the pause callback must "
			"move it to STOP_COPY (its last DMA must be harvested)",
			state_name(c->mig_state));
		goto out;
	}
	ret = drain(c);
	if (ret)
		goto out;
	if (c->mig_len > cap) {
		ret = -ENOSPC;
		goto out;
	}
	if (c->mig_len)
		memcpy(buf, c->mig_buf, c->mig_len);
	ret = (int64_t)c->mig_len;
out:
	pthread_mutex_unlock(&c->lock);
	return ret;
}

static int mig_load(void *opaque, const void *buf, size_t len)
{
	struct dt_vfu_client *c = opaque;
	const uint8_t *p = buf;
	int ret;

	pthread_mutex_lock(&c->lock);
	ret = set_state(c, DT_VFU_MIG_RESUMING);
	while (!ret && len) {
		uint32_t n = (uint32_t)(len < c->xfer ? len : c->xfer);
		struct vfu_mig_data md = {.argsz = sizeof(md), .size = n};
		struct iovec iov[2] = {{&md, sizeof(md)}, {(void *)p, n}};
		struct client_reply r;

		ret = client_xact(c, VFU_CMD_MIG_DATA_WRITE, iov, 2, NULL, 0, sizeof(md), &r);
		if (ret)
			break;
		client_reply_done(&r);
		if (r.msg.len && r.msg.len != sizeof(md))
			ret = client_break(
				c, log_fail(-EPROTO,
					    "vfio-user client: MIG_DATA_WRITE reply of %u bytes",
					    r.msg.len));
		p += n;
		len -= n;
	}
	if (!ret)
		ret = set_state(c, DT_VFU_MIG_STOP); /* the device checks what it got */
	pthread_mutex_unlock(&c->lock);
	return ret;
}

int dt_vfu_client_migrate_device(struct dt_vfu_client *c, const char *name,
				 struct dt_migrate_device *dev)
{
	if (!c || !name || !dev || !name[0] || strlen(name) >= sizeof(c->mig_name))
		return log_fail(-EINVAL, "dt_vfu_client_migrate_device: a client, a name of 1 to "
					 "63 bytes and a device are needed");
	if (!c->info.mig_flags)
		return log_fail(-ENOTSUP,
				"dt_vfu_client_migrate_device: the device cannot migrate");
	pthread_mutex_lock(&c->lock);
	strcpy(c->mig_name, name);
	pthread_mutex_unlock(&c->lock);
	*dev = (struct dt_migrate_device){
		.name = c->mig_name,
		.opaque = c,
		.save = mig_save,
		.pending = mig_pending,
		.load = mig_load,
	};
	return 0;
}
