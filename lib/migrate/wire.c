/* SPDX-License-Identifier: MIT */
/*
 * migrate/wire.c - the decoding half of the wire format's codec: the bounds of each record
 * type and the validating decoder. No I/O: wire_reader.c frames records off a transport,
 * wire_encode.c and wire_writer.c produce them.
 *
 * Invariants: the decoder reads only payload[0, len) and writes only into the scratch. It
 * accepts a record only if every field is in bounds, every reserved field is zero, the
 * lengths add up exactly to the record length and, with WIRE_RF_XXH3, the checksum matches
 * the uncompressed bytes. Decompression never writes past the declared uncompressed size,
 * itself bounded by the type, so a decompression bomb fails as -EPROTO after bounded work.
 * The order of checks is cheap to expensive: a bad length is refused before any checksum
 * or decompression runs.
 */
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include "migrate/wire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <xxhash.h>
#include <zstd.h>

#include "core/alloc.h"
#include "core/log.h"

#define HELLO_LEN 24u
#define HELLO_MAX 256u /* a later version may grow HELLO: still report its version */
#define ROUND_LEN 16u
#define END_LEN	  24u
#define ACK_LEN	  16u
#define PING_LEN  8u
#define MAX_ERRNO 4095

static const char *const type_names[] = {
	[WIRE_HELLO] = "HELLO",	  [WIRE_LAYOUT] = "LAYOUT", [WIRE_PAGES] = "PAGES",
	[WIRE_DEVICE] = "DEVICE", [WIRE_ROUND] = "ROUND",   [WIRE_END] = "END",
	[WIRE_ACK] = "ACK",	  [WIRE_PING] = "PING",	    [WIRE_PONG] = "PONG",
	[WIRE_ERROR] = "ERROR",
};

const char *wire_type_name(uint16_t type)
{
	if (type < sizeof(type_names) / sizeof(type_names[0]) && type_names[type])
		return type_names[type];
	return "?";
}

uint32_t wire_type_max_payload(uint16_t type)
{
	switch (type) {
	case WIRE_HELLO:
		return HELLO_MAX;
	case WIRE_LAYOUT:
		return WIRE_LAYOUT_FIXED + WIRE_MAX_REGIONS * WIRE_REGION_LEN;
	case WIRE_PAGES:
		return WIRE_PAGES_FIXED + WIRE_MAX_RUNS * WIRE_RUN_LEN + WIRE_MAX_BATCH_DATA;
	case WIRE_DEVICE:
		return WIRE_MAX_PAYLOAD;
	case WIRE_ROUND:
		return ROUND_LEN;
	case WIRE_END:
		return END_LEN;
	case WIRE_ACK:
		return ACK_LEN;
	case WIRE_PING:
	case WIRE_PONG:
		return PING_LEN;
	case WIRE_ERROR:
		return WIRE_ERROR_FIXED + WIRE_MAX_ERROR_MSG;
	}
	return 0;
}

uint16_t wire_type_flags(uint16_t type)
{
	return type == WIRE_PAGES || type == WIRE_DEVICE ? WIRE_RF_ZSTD | WIRE_RF_XXH3 : 0;
}

bool wire_page_size_valid(uint32_t page_size)
{
	return page_size >= WIRE_MIN_PAGE_SIZE && page_size <= WIRE_MAX_PAGE_SIZE &&
	       !(page_size & (page_size - 1));
}

/* Log why a record is refused; every refusal is -EPROTO. */
__attribute__((format(printf, 2, 3))) static int proto_err(uint16_t type, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_err("wire: refused %s record (type %u): %s", wire_type_name(type), type, why);
	return -EPROTO;
}

static int check_len(uint16_t type, uint32_t len, uint64_t need)
{
	if (len < need)
		return proto_err(type, "truncated: %u bytes, needs %llu", len,
				 (unsigned long long)need);
	if (len > need)
		return proto_err(type, "too long: %u bytes, expected %llu", len,
				 (unsigned long long)need);
	return 0;
}

static int check_zero(uint16_t type, const char *what, uint64_t v)
{
	if (v)
		return proto_err(type, "reserved field %s is %#llx, must be 0", what,
				 (unsigned long long)v);
	return 0;
}

int wire_scratch_init(struct wire_scratch *s)
{
	memset(s, 0, sizeof(*s));
	s->features = WIRE_F_ALL;
	s->runs = xcalloc(WIRE_MAX_RUNS, sizeof(*s->runs));
	s->regions = xcalloc(WIRE_MAX_REGIONS, sizeof(*s->regions));
	if (!s->runs || !s->regions) {
		wire_scratch_fini(s);
		return -ENOMEM;
	}
	return 0;
}

void wire_scratch_fini(struct wire_scratch *s)
{
	xfree(s->runs);
	xfree(s->regions);
	xfree(s->zbuf);
	ZSTD_freeDCtx(s->dctx);
	memset(s, 0, sizeof(*s));
}

int wire_decode_header(const void *hdr, uint32_t max_payload, uint16_t *type, uint16_t *flags,
		       uint32_t *len)
{
	const uint8_t *p = hdr;
	uint32_t max;

	*type = wire_get_le16(p);
	*flags = wire_get_le16(p + 2);
	*len = wire_get_le32(p + 4);
	max = wire_type_max_payload(*type);
	if (!max)
		return proto_err(*type, "unknown record type");
	if (*len > max)
		return proto_err(*type, "%u bytes, at most %u for this type", *len, max);
	if (max_payload && *len > max_payload)
		return proto_err(*type, "%u bytes, past this reader's limit of %u", *len,
				 max_payload);
	return 0;
}

static int decode_hello(const uint8_t *p, uint32_t len, struct wire_hello *h)
{
	uint64_t magic;
	int ret;

	if (len < 12)
		return proto_err(WIRE_HELLO, "truncated: %u bytes", len);
	magic = wire_get_le64(p);
	if (magic != WIRE_MAGIC)
		return proto_err(
			WIRE_HELLO,
			"bad magic %#018llx (expected %#018llx): not a dirtytrack migration stream",
			(unsigned long long)magic, (unsigned long long)WIRE_MAGIC);
	h->version = wire_get_le32(p + 8);
	if (h->version != WIRE_VERSION)
		return proto_err(
			WIRE_HELLO,
			"version mismatch: the peer speaks wire version %u, this build speaks version %u",
			h->version, WIRE_VERSION);
	ret = check_len(WIRE_HELLO, len, HELLO_LEN);
	if (ret)
		return ret;
	h->features = wire_get_le32(p + 12);
	h->page_size = wire_get_le32(p + 16);
	ret = check_zero(WIRE_HELLO, "reserved", wire_get_le32(p + 20));
	if (ret)
		return ret;
	if (!wire_page_size_valid(h->page_size))
		return proto_err(WIRE_HELLO, "page size %u is not a power of two in [%u, %u]",
				 h->page_size, WIRE_MIN_PAGE_SIZE, WIRE_MAX_PAGE_SIZE);
	return 0;
}

static int decode_layout(const uint8_t *p, uint32_t len, struct wire_layout *l,
			 struct wire_scratch *s)
{
	uint64_t ps = s->page_size;
	uint32_t count;
	int ret;

	if (len < WIRE_LAYOUT_FIXED)
		return proto_err(WIRE_LAYOUT, "truncated: %u bytes", len);
	count = wire_get_le32(p);
	ret = check_zero(WIRE_LAYOUT, "reserved", wire_get_le32(p + 4));
	if (ret)
		return ret;
	if (!count || count > WIRE_MAX_REGIONS)
		return proto_err(WIRE_LAYOUT, "%u regions, expected 1 to %u", count,
				 WIRE_MAX_REGIONS);
	ret = check_len(WIRE_LAYOUT, len, WIRE_LAYOUT_FIXED + (uint64_t)count * WIRE_REGION_LEN);
	if (ret)
		return ret;
	if (!ps)
		return proto_err(WIRE_LAYOUT, "no page size known yet (LAYOUT before HELLO)");
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *q = p + WIRE_LAYOUT_FIXED + (size_t)i * WIRE_REGION_LEN;
		uint64_t addr = wire_get_le64(q), size = wire_get_le64(q + 8);

		if (!size || addr % ps || size % ps)
			return proto_err(
				WIRE_LAYOUT,
				"region %u [%#llx, +%#llx) is not a non-empty page multiple", i,
				(unsigned long long)addr, (unsigned long long)size);
		if (size - 1 > UINT64_MAX - addr)
			return proto_err(WIRE_LAYOUT,
					 "region %u [%#llx, +%#llx) wraps the address space", i,
					 (unsigned long long)addr, (unsigned long long)size);
		if (i && addr <= s->regions[i - 1].addr + (s->regions[i - 1].size - 1))
			return proto_err(WIRE_LAYOUT,
					 "region %u at %#llx overlaps or precedes region %u", i,
					 (unsigned long long)addr, i - 1);
		s->regions[i] = (struct wire_region){addr, size};
	}
	l->regions = s->regions;
	l->count = count;
	return 0;
}

/* The record flags of PAGES and DEVICE against what the decoder accepts. */
static int check_data_flags(uint16_t type, uint16_t flags, uint64_t sum,
			    const struct wire_scratch *s)
{
	if ((flags & WIRE_RF_ZSTD) && !(s->features & WIRE_F_ZSTD))
		return proto_err(type, "compressed, but zstd was not negotiated");
	if (!(flags & WIRE_RF_XXH3) && (s->features & WIRE_F_XXH3))
		return proto_err(type, "no checksum, but checksums were negotiated");
	if (!(flags & WIRE_RF_XXH3) && sum)
		return proto_err(type, "checksum field %#llx without the XXH3 flag",
				 (unsigned long long)sum);
	return 0;
}

/* Decompress src into the scratch buffer: exactly out_len bytes or -EPROTO. */
static int decompress(uint16_t type, struct wire_scratch *s, const uint8_t *src, size_t srclen,
		      uint32_t out_len, const uint8_t **out)
{
	size_t r;

	if (!out_len || !srclen)
		return proto_err(type, "compressed flag with %zu compressed and %u plain bytes",
				 srclen, out_len);
	if (s->zcap < out_len) {
		xfree(s->zbuf);
		s->zcap = 0;
		s->zbuf = xzalloc(out_len);
		if (!s->zbuf)
			return -ENOMEM;
		s->zcap = out_len;
	}
	if (!s->dctx) {
		s->dctx = ZSTD_createDCtx();
		if (!s->dctx)
			return -ENOMEM;
	}
	/* One shot into a buffer of the declared size: zstd stops at its end. */
	r = ZSTD_decompressDCtx(s->dctx, s->zbuf, out_len, src, srclen);
	if (ZSTD_isError(r))
		return proto_err(type, "zstd: %s (declared %u plain bytes)", ZSTD_getErrorName(r),
				 out_len);
	if (r != out_len)
		return proto_err(type, "decompressed to %zu bytes, %u declared", r, out_len);
	*out = s->zbuf;
	return 0;
}

static int check_sum(uint16_t type, uint64_t want, const void *a, size_t alen, const void *b,
		     size_t blen)
{
	XXH3_state_t st;
	uint64_t got;

	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, a, alen);
	XXH3_64bits_update(&st, b, blen);
	got = XXH3_64bits_digest(&st);
	if (got != want)
		return proto_err(type,
				 "checksum mismatch: computed %016llx, record carries %016llx",
				 (unsigned long long)got, (unsigned long long)want);
	return 0;
}

static int decode_pages(uint16_t flags, const uint8_t *p, uint32_t len, struct wire_pages *pg,
			struct wire_scratch *s)
{
	uint64_t ps = s->page_size, max_index, runs_end, data_pages = 0;
	uint64_t sum;
	const uint8_t *data;
	uint32_t nruns, data_len;
	int ret;

	if (len < WIRE_PAGES_FIXED)
		return proto_err(WIRE_PAGES, "truncated: %u bytes", len);
	nruns = wire_get_le32(p);
	data_len = wire_get_le32(p + 4);
	sum = wire_get_le64(p + 8);
	ret = check_data_flags(WIRE_PAGES, flags, sum, s);
	if (ret)
		return ret;
	if (!ps)
		return proto_err(WIRE_PAGES, "no page size known yet (PAGES before HELLO)");
	if (!nruns || nruns > WIRE_MAX_RUNS)
		return proto_err(WIRE_PAGES, "%u runs, expected 1 to %u", nruns, WIRE_MAX_RUNS);
	if (data_len > WIRE_MAX_BATCH_DATA)
		return proto_err(WIRE_PAGES, "%u data bytes declared, at most %u", data_len,
				 WIRE_MAX_BATCH_DATA);
	runs_end = WIRE_PAGES_FIXED + (uint64_t)nruns * WIRE_RUN_LEN;
	if (runs_end > len)
		return proto_err(WIRE_PAGES, "truncated: %u runs need %llu bytes, record has %u",
				 nruns, (unsigned long long)runs_end, len);
	max_index = UINT64_MAX / ps;
	pg->pages = pg->zero_pages = 0;
	for (uint32_t i = 0; i < nruns; i++) {
		const uint8_t *q = p + WIRE_PAGES_FIXED + (size_t)i * WIRE_RUN_LEN;
		struct wire_run run = {wire_get_le64(q), wire_get_le32(q + 8),
				       wire_get_le32(q + 12)};

		if (!run.count)
			return proto_err(WIRE_PAGES, "run %u is empty", i);
		if (run.flags & ~WIRE_RUN_ZERO)
			return proto_err(WIRE_PAGES, "run %u has unknown flags %#x", i, run.flags);
		if (run.first > max_index || run.count - 1 > max_index - run.first)
			return proto_err(WIRE_PAGES,
					 "run %u [%llu, +%u) ends past the address space", i,
					 (unsigned long long)run.first, run.count);
		pg->pages += run.count;
		if (run.flags & WIRE_RUN_ZERO) {
			pg->zero_pages += run.count;
		} else {
			data_pages += run.count;
			if (data_pages > data_len / ps)
				return proto_err(
					WIRE_PAGES,
					"runs up to %u hold more than the %u data bytes declared",
					i, data_len);
		}
		s->runs[i] = run;
	}
	if (data_pages * ps != data_len)
		return proto_err(WIRE_PAGES, "runs hold %llu data bytes, the record declares %u",
				 (unsigned long long)(data_pages * ps), data_len);
	data = p + runs_end;
	if (flags & WIRE_RF_ZSTD) {
		ret = decompress(WIRE_PAGES, s, data, len - runs_end, data_len, &data);
		if (ret)
			return ret;
	} else if (len - runs_end != data_len) {
		return proto_err(WIRE_PAGES, "%llu data bytes, %u declared",
				 (unsigned long long)(len - runs_end), data_len);
	}
	if (flags & WIRE_RF_XXH3) {
		ret = check_sum(WIRE_PAGES, sum, p + WIRE_PAGES_FIXED, runs_end - WIRE_PAGES_FIXED,
				data, data_len);
		if (ret)
			return ret;
	}
	pg->runs = s->runs;
	pg->nruns = nruns;
	pg->data_len = data_len;
	pg->data = data;
	return 0;
}

static int decode_device(uint16_t flags, const uint8_t *p, uint32_t len, struct wire_device *d,
			 struct wire_scratch *s)
{
	uint32_t name_len, state_len, off;
	const uint8_t *state;
	uint64_t sum;
	int ret;

	if (len < WIRE_DEVICE_FIXED)
		return proto_err(WIRE_DEVICE, "truncated: %u bytes", len);
	name_len = wire_get_le32(p);
	state_len = wire_get_le32(p + 4);
	sum = wire_get_le64(p + 8);
	ret = check_data_flags(WIRE_DEVICE, flags, sum, s);
	if (ret)
		return ret;
	if (!name_len || name_len > WIRE_MAX_DEVICE_NAME)
		return proto_err(WIRE_DEVICE, "name of %u bytes, expected 1 to %u", name_len,
				 WIRE_MAX_DEVICE_NAME);
	if (state_len > WIRE_MAX_DEVICE_STATE)
		return proto_err(WIRE_DEVICE, "state of %u bytes, at most %u", state_len,
				 WIRE_MAX_DEVICE_STATE);
	off = WIRE_DEVICE_FIXED + name_len;
	if (off > len)
		return proto_err(WIRE_DEVICE, "truncated: %u bytes, the name ends at %u", len, off);
	if (memchr(p + WIRE_DEVICE_FIXED, 0, name_len))
		return proto_err(WIRE_DEVICE, "the name holds a NUL byte");
	memcpy(s->name, p + WIRE_DEVICE_FIXED, name_len);
	s->name[name_len] = '\0';
	state = p + off;
	if (flags & WIRE_RF_ZSTD) {
		ret = decompress(WIRE_DEVICE, s, state, len - off, state_len, &state);
		if (ret)
			return ret;
	} else if (len - off != state_len) {
		return proto_err(WIRE_DEVICE, "device %s: %u state bytes, %u declared", s->name,
				 len - off, state_len);
	}
	if (flags & WIRE_RF_XXH3) {
		ret = check_sum(WIRE_DEVICE, sum, p + WIRE_DEVICE_FIXED, name_len, state,
				state_len);
		if (ret)
			return ret;
	}
	d->name = s->name;
	d->state = state;
	d->state_len = state_len;
	return 0;
}

static int decode_error(const uint8_t *p, uint32_t len, struct wire_error *e,
			struct wire_scratch *s)
{
	uint32_t msg_len;
	int ret;

	if (len < WIRE_ERROR_FIXED)
		return proto_err(WIRE_ERROR, "truncated: %u bytes", len);
	e->err = (int32_t)wire_get_le32(p);
	msg_len = wire_get_le32(p + 4);
	if (e->err >= 0 || e->err < -MAX_ERRNO)
		return proto_err(WIRE_ERROR, "errno %d is not in [-%d, -1]", e->err, MAX_ERRNO);
	if (msg_len > WIRE_MAX_ERROR_MSG)
		return proto_err(WIRE_ERROR, "message of %u bytes, at most %u", msg_len,
				 WIRE_MAX_ERROR_MSG);
	ret = check_len(WIRE_ERROR, len, WIRE_ERROR_FIXED + msg_len);
	if (ret)
		return ret;
	if (memchr(p + WIRE_ERROR_FIXED, 0, msg_len))
		return proto_err(WIRE_ERROR, "the message holds a NUL byte");
	memcpy(s->msg, p + WIRE_ERROR_FIXED, msg_len);
	s->msg[msg_len] = '\0';
	e->msg = s->msg;
	return 0;
}

int wire_decode(uint16_t type, uint16_t flags, const void *payload, uint32_t len,
		struct wire_msg *m, struct wire_scratch *s)
{
	const uint8_t *p = payload;
	uint32_t max = wire_type_max_payload(type);
	int ret;

	memset(m, 0, sizeof(*m));
	if (!max)
		return proto_err(type, "unknown record type");
	if (len > max)
		return proto_err(type, "%u bytes, at most %u for this type", len, max);
	if (flags & ~wire_type_flags(type))
		return proto_err(type, "unknown record flags %#x", flags);
	m->type = type;
	m->flags = flags;
	m->len = len;
	switch (type) {
	case WIRE_HELLO:
		return decode_hello(p, len, &m->hello);
	case WIRE_LAYOUT:
		return decode_layout(p, len, &m->layout, s);
	case WIRE_PAGES:
		return decode_pages(flags, p, len, &m->pages, s);
	case WIRE_DEVICE:
		return decode_device(flags, p, len, &m->device, s);
	case WIRE_ROUND:
		ret = check_len(type, len, ROUND_LEN);
		if (!ret)
			ret = check_zero(type, "reserved", wire_get_le32(p + 4));
		m->round.round = ret ? 0 : wire_get_le32(p);
		m->round.pages = ret ? 0 : wire_get_le64(p + 8);
		return ret;
	case WIRE_END:
		ret = check_len(type, len, END_LEN);
		if (!ret)
			ret = check_zero(type, "reserved", wire_get_le32(p + 20));
		if (ret)
			return ret;
		m->end.pages = wire_get_le64(p);
		m->end.digest = wire_get_le64(p + 8);
		m->end.ndevices = wire_get_le32(p + 16);
		return 0;
	case WIRE_ACK:
		ret = check_len(type, len, ACK_LEN);
		if (!ret)
			ret = check_zero(type, "reserved", wire_get_le32(p + 4));
		if (ret)
			return ret;
		m->ack.status = (int32_t)wire_get_le32(p);
		m->ack.digest = wire_get_le64(p + 8);
		if (m->ack.status > 0 || m->ack.status < -MAX_ERRNO)
			return proto_err(type, "status %d is neither 0 nor a negative errno",
					 m->ack.status);
		return 0;
	case WIRE_PING:
	case WIRE_PONG:
		ret = check_len(type, len, PING_LEN);
		m->ping = ret ? 0 : wire_get_le64(p);
		return ret;
	case WIRE_ERROR:
		return decode_error(p, len, &m->error, s);
	}
	return proto_err(type, "unknown record type");
}
