/* SPDX-License-Identifier: MIT */
/*
 * migrate/wire_encode.c - the encoding half of the codec: any record into a caller's buffer
 * (raw: compression belongs to the writer), the run table and header encoders the writer
 * shares, the bound check of a batch's runs, and the page-to-region lookup the destination
 * uses to place a run.
 *
 * Invariant: wire_encode() writes a record only if it fits cap and its counts and lengths
 * are within the bounds of docs/wire-format.md; values the decoder checks beyond lengths
 * (magic aside, which is always ours) are written as given, so tests can craft bad records.
 */
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include "migrate/wire.h"

#include <errno.h>
#include <xxhash.h>

/* ---- records ------------------------------------------------------------------------------ */

int wire_runs_data_len(const struct wire_run *runs, uint32_t nruns, uint32_t page_size,
		       uint32_t *data_len)
{
	uint64_t max_index, pages = 0;

	if (!wire_page_size_valid(page_size) || !nruns || nruns > WIRE_MAX_RUNS)
		return -EINVAL;
	max_index = UINT64_MAX / page_size;
	for (uint32_t i = 0; i < nruns; i++) {
		const struct wire_run *r = &runs[i];

		if (!r->count || (r->flags & ~WIRE_RUN_ZERO) || r->first > max_index ||
		    r->count - 1 > max_index - r->first)
			return -EINVAL;
		if (!(r->flags & WIRE_RUN_ZERO)) {
			pages += r->count;
			if (pages > WIRE_MAX_BATCH_DATA / page_size)
				return -EINVAL;
		}
	}
	*data_len = (uint32_t)(pages * page_size);
	return 0;
}

void wire_encode_runs(uint8_t *dst, const struct wire_run *runs, uint32_t nruns)
{
	for (uint32_t i = 0; i < nruns; i++, dst += WIRE_RUN_LEN) {
		wire_put_le64(dst, runs[i].first);
		wire_put_le32(dst + 8, runs[i].count);
		wire_put_le32(dst + 12, runs[i].flags);
	}
}

void wire_encode_header(uint8_t *dst, uint16_t type, uint16_t flags, uint32_t len)
{
	wire_put_le16(dst, type);
	wire_put_le16(dst + 2, flags);
	wire_put_le32(dst + 4, len);
}

/* Payload length of m, 0 if m cannot be encoded. */
static uint64_t payload_len(const struct wire_msg *m, uint32_t page_size)
{
	uint32_t data_len;
	size_t n;

	if (m->flags & ~(wire_type_flags(m->type) & WIRE_RF_XXH3))
		return 0;
	switch (m->type) {
	case WIRE_LAYOUT:
		if (!m->layout.count || m->layout.count > WIRE_MAX_REGIONS || !m->layout.regions)
			return 0;
		return WIRE_LAYOUT_FIXED + (uint64_t)m->layout.count * WIRE_REGION_LEN;
	case WIRE_PAGES:
		if (!m->pages.runs ||
		    wire_runs_data_len(m->pages.runs, m->pages.nruns, page_size, &data_len) ||
		    data_len != m->pages.data_len || (data_len && !m->pages.data))
			return 0;
		return WIRE_PAGES_FIXED + (uint64_t)m->pages.nruns * WIRE_RUN_LEN + data_len;
	case WIRE_DEVICE:
		n = m->device.name ? strnlen(m->device.name, WIRE_MAX_DEVICE_NAME + 1) : 0;
		if (!n || n > WIRE_MAX_DEVICE_NAME || m->device.state_len > WIRE_MAX_DEVICE_STATE ||
		    (m->device.state_len && !m->device.state))
			return 0;
		return WIRE_DEVICE_FIXED + n + m->device.state_len;
	case WIRE_ERROR:
		n = m->error.msg ? strnlen(m->error.msg, WIRE_MAX_ERROR_MSG + 1) : 0;
		return n > WIRE_MAX_ERROR_MSG ? 0 : WIRE_ERROR_FIXED + n;
	case WIRE_HELLO:
		return 24;
	default:
		return wire_type_max_payload(m->type); /* fixed sizes; 0 if unknown */
	}
}

uint64_t wire_encoded_len(const struct wire_msg *m, uint32_t page_size)
{
	uint64_t n = payload_len(m, page_size);

	return n ? WIRE_HDR_LEN + n : 0;
}

static void encode_checksummed(uint8_t *p, uint16_t flags, const void *a, size_t alen,
			       const void *b, size_t blen)
{
	XXH3_state_t st;
	uint64_t sum = 0;

	if (flags & WIRE_RF_XXH3) {
		XXH3_64bits_reset(&st);
		XXH3_64bits_update(&st, a, alen);
		XXH3_64bits_update(&st, b, blen);
		sum = XXH3_64bits_digest(&st);
	}
	wire_put_le64(p, sum);
}

int64_t wire_encode(const struct wire_msg *m, uint32_t page_size, void *buf, size_t cap)
{
	uint64_t len = payload_len(m, page_size);
	uint8_t *p = (uint8_t *)buf + WIRE_HDR_LEN;
	size_t n;

	if (!len)
		return -EINVAL;
	if (WIRE_HDR_LEN + len > cap)
		return -ENOSPC;
	wire_encode_header(buf, m->type, m->flags, (uint32_t)len);
	memset(p, 0, len);
	switch (m->type) {
	case WIRE_HELLO:
		wire_put_le64(p, WIRE_MAGIC);
		wire_put_le32(p + 8, m->hello.version);
		wire_put_le32(p + 12, m->hello.features);
		wire_put_le32(p + 16, m->hello.page_size);
		break;
	case WIRE_LAYOUT:
		wire_put_le32(p, m->layout.count);
		for (uint32_t i = 0; i < m->layout.count; i++) {
			wire_put_le64(p + WIRE_LAYOUT_FIXED + i * WIRE_REGION_LEN,
				      m->layout.regions[i].addr);
			wire_put_le64(p + WIRE_LAYOUT_FIXED + i * WIRE_REGION_LEN + 8,
				      m->layout.regions[i].size);
		}
		break;
	case WIRE_PAGES:
		n = (size_t)m->pages.nruns * WIRE_RUN_LEN;
		wire_put_le32(p, m->pages.nruns);
		wire_put_le32(p + 4, m->pages.data_len);
		wire_encode_runs(p + WIRE_PAGES_FIXED, m->pages.runs, m->pages.nruns);
		if (m->pages.data_len)
			memcpy(p + WIRE_PAGES_FIXED + n, m->pages.data, m->pages.data_len);
		encode_checksummed(p + 8, m->flags, p + WIRE_PAGES_FIXED, n,
				   p + WIRE_PAGES_FIXED + n, m->pages.data_len);
		break;
	case WIRE_DEVICE:
		n = strlen(m->device.name);
		wire_put_le32(p, (uint32_t)n);
		wire_put_le32(p + 4, m->device.state_len);
		memcpy(p + WIRE_DEVICE_FIXED, m->device.name, n);
		if (m->device.state_len)
			memcpy(p + WIRE_DEVICE_FIXED + n, m->device.state, m->device.state_len);
		encode_checksummed(p + 8, m->flags, p + WIRE_DEVICE_FIXED, n,
				   p + WIRE_DEVICE_FIXED + n, m->device.state_len);
		break;
	case WIRE_ROUND:
		wire_put_le32(p, m->round.round);
		wire_put_le64(p + 8, m->round.pages);
		break;
	case WIRE_END:
		wire_put_le64(p, m->end.pages);
		wire_put_le64(p + 8, m->end.digest);
		wire_put_le32(p + 16, m->end.ndevices);
		break;
	case WIRE_ACK:
		wire_put_le32(p, (uint32_t)m->ack.status);
		wire_put_le64(p + 8, m->ack.digest);
		break;
	case WIRE_PING:
	case WIRE_PONG:
		wire_put_le64(p, m->ping);
		break;
	case WIRE_ERROR:
		n = len - WIRE_ERROR_FIXED;
		wire_put_le32(p, (uint32_t)m->error.err);
		wire_put_le32(p + 4, (uint32_t)n);
		memcpy(p + WIRE_ERROR_FIXED, m->error.msg, n);
		break;
	}
	return (int64_t)(WIRE_HDR_LEN + len);
}

/* ---- layout lookups ------------------------------------------------------------------------ */

int wire_layout_locate(const struct wire_layout *l, uint32_t page_size, uint64_t page,
		       uint32_t count, uint32_t *region, uint64_t *offset)
{
	uint32_t lo = 0, hi = l->count;
	uint64_t addr, last;

	if (!count || !page_size || page > UINT64_MAX / page_size)
		return -EPROTO;
	addr = page * page_size;
	if ((uint64_t)count * page_size - 1 > UINT64_MAX - addr)
		return -EPROTO;
	last = addr + ((uint64_t)count * page_size - 1);
	/* The last region starting at or below addr. */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (l->regions[mid].addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return -EPROTO;
	lo--;
	if (last - l->regions[lo].addr > l->regions[lo].size - 1)
		return -EPROTO;
	*region = lo;
	*offset = addr - l->regions[lo].addr;
	return 0;
}
