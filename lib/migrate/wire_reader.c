/* SPDX-License-Identifier: MIT */
/*
 * migrate/wire_reader.c - records from a transport (or from memory): framing, the limit on
 * a record's size checked before its payload is read, validation by wire_decode(), and the
 * XXH3 digest of the whole memory that END and ACK carry.
 *
 * Invariants: a payload is read only after its header passed the type's bound and the
 * reader's max_payload, so a hostile length costs no allocation past that limit. The
 * reader's buffer and scratch are reused: a decoded view lives until the next wire_read().
 * A HELLO read sets the page size LAYOUT and PAGES are decoded with.
 */
#include "migrate/wire.h"

#include <errno.h>
#include <xxhash.h>

#include "core/alloc.h"

/* ---- the reader ---------------------------------------------------------------------------- */

int wire_reader_init(struct wire_reader *r, struct dt_transport *t, uint32_t max_payload)
{
	memset(r, 0, sizeof(*r));
	if (!t)
		return -EINVAL;
	r->t = t;
	r->max_payload = max_payload ? max_payload : WIRE_MAX_PAYLOAD;
	return wire_scratch_init(&r->scratch);
}

int wire_reader_init_mem(struct wire_reader *r, const void *src, size_t len, uint32_t max_payload)
{
	memset(r, 0, sizeof(*r));
	r->src = src;
	r->src_len = len;
	r->max_payload = max_payload ? max_payload : WIRE_MAX_PAYLOAD;
	return wire_scratch_init(&r->scratch);
}

void wire_reader_fini(struct wire_reader *r)
{
	wire_scratch_fini(&r->scratch);
	xfree(r->buf);
	memset(r, 0, sizeof(*r));
}

void wire_reader_set_features(struct wire_reader *r, uint32_t features)
{
	r->scratch.features = features & WIRE_F_ALL;
}

/* Make the payload buffer hold need bytes (exactly, so ASan sees any overread). */
static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
	uint8_t *p;

	if (*cap >= need)
		return 0;
	p = xzalloc(need ? need : 1);
	if (!p)
		return -ENOMEM;
	xfree(*buf);
	*buf = p;
	*cap = need;
	return 0;
}

static int pull(struct wire_reader *r, void *dst, size_t len, bool record_start)
{
	if (r->t)
		return dt_transport_recv(r->t, dst, len);
	if (r->src_len - r->src_pos < len) {
		bool clean = record_start && r->src_pos == r->src_len;

		r->src_pos = r->src_len;
		return clean ? -ENODATA : -ECONNRESET;
	}
	memcpy(dst, r->src + r->src_pos, len);
	r->src_pos += len;
	return 0;
}

int wire_read(struct wire_reader *r, struct wire_msg *m)
{
	uint8_t hdr[WIRE_HDR_LEN];
	uint16_t type, flags;
	uint32_t len;
	int ret;

	memset(m, 0, sizeof(*m));
	ret = pull(r, hdr, sizeof(hdr), true);
	if (ret < 0)
		return ret;
	ret = wire_decode_header(hdr, r->max_payload, &type, &flags, &len);
	if (ret)
		return ret;
	ret = reserve(&r->buf, &r->cap, len);
	if (ret)
		return ret;
	if (len) {
		ret = pull(r, r->buf, len, false);
		if (ret < 0)
			return ret;
	}
	r->bytes += WIRE_HDR_LEN + len;
	r->records++;
	ret = wire_decode(type, flags, r->buf, len, m, &r->scratch);
	if (!ret && type == WIRE_HELLO)
		r->scratch.page_size = m->hello.page_size;
	return ret;
}

/* ---- the memory digest --------------------------------------------------------------------- */

/* XXH3_createState rather than xzalloc: the state needs 64-byte alignment. */
int wire_digest_init(struct wire_digest *d)
{
	d->state = XXH3_createState();
	if (!d->state)
		return -ENOMEM;
	XXH3_64bits_reset(d->state);
	return 0;
}

void wire_digest_update(struct wire_digest *d, const void *p, size_t len)
{
	XXH3_64bits_update(d->state, p, len);
}

uint64_t wire_digest_final(struct wire_digest *d)
{
	return XXH3_64bits_digest(d->state);
}

void wire_digest_fini(struct wire_digest *d)
{
	XXH3_freeState(d->state);
	d->state = NULL;
}

int wire_digest_regions(const struct wire_region *regions, void *const *host, uint32_t count,
			uint64_t *digest)
{
	struct wire_digest d;
	int ret = wire_digest_init(&d);

	if (ret)
		return ret;
	for (uint32_t i = 0; i < count; i++)
		wire_digest_update(&d, host[i], regions[i].size);
	*digest = wire_digest_final(&d);
	wire_digest_fini(&d);
	return 0;
}
