/* SPDX-License-Identifier: MIT */
/*
 * fuzz/fuzz_wire.c - libFuzzer target: the migration stream's decoder.
 *
 * Input: one configuration byte, then a byte stream read as records. The configuration
 * picks what the decoder accepts (bits 0-1: WIRE_F_ZSTD, WIRE_F_XXH3; with XXH3 off the
 * fuzzer gets past checksums), the page size known before any HELLO (bits 2-3: none, 512,
 * 4096, 64 KiB) and the reader's payload limit (bit 4: 1 MiB, else the largest).
 *
 * The stream is decoded twice. First by hand: each header through wire_decode_header(), each
 * payload copied into a heap buffer of exactly its length and given to wire_decode(), so a
 * read one byte past a payload is an ASan report. Every accepted record is then consumed
 * (every data and state byte read, every run placed with wire_layout_locate() against the
 * last layout) and re-encoded with wire_encode(): decoding that again must give the same
 * record, else the target aborts. Then the same bytes go through a reader over memory
 * (wire_reader_init_mem + wire_read), the code path a destination runs.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/wire.h"

#define MAX_RECORDS 64

static struct wire_scratch scratch, again;
static struct wire_reader reader; /* kept across inputs, re-pointed at each */
static uint8_t *enc;
static volatile uint64_t sink;

static uint64_t touch(const uint8_t *p, size_t len)
{
	uint64_t s = 0;

	for (size_t i = 0; i < len; i++)
		s += p[i];
	return s;
}

/* Read everything a consumer would read. */
static void consume(const struct wire_msg *m, uint32_t page_size, uint32_t nregions)
{
	const struct wire_layout l = {scratch.regions, nregions};
	uint64_t s = 0, off;
	uint32_t region;

	switch (m->type) {
	case WIRE_PAGES:
		s += touch(m->pages.data, m->pages.data_len);
		for (uint32_t i = 0; i < m->pages.nruns; i++) {
			s += m->pages.runs[i].first + m->pages.runs[i].count;
			if (nregions && !wire_layout_locate(&l, page_size, m->pages.runs[i].first,
							    m->pages.runs[i].count, &region, &off))
				s += region + off;
		}
		break;
	case WIRE_DEVICE:
		s += strlen(m->device.name) + touch(m->device.state, m->device.state_len);
		break;
	case WIRE_ERROR:
		s += strlen(m->error.msg);
		break;
	case WIRE_LAYOUT:
		for (uint32_t i = 0; i < m->layout.count; i++)
			s += m->layout.regions[i].addr + m->layout.regions[i].size;
		break;
	}
	sink += s;
}

static void check(int cond)
{
	if (!cond)
		abort();
}

/* Encode an accepted record again: it must decode to the same record. */
static void roundtrip(const struct wire_msg *m, uint32_t page_size)
{
	struct wire_msg e = *m, d;
	uint16_t type, flags;
	uint32_t len;
	int64_t n;

	e.flags &= WIRE_RF_XXH3; /* encoded raw */
	n = wire_encode(&e, page_size, enc, WIRE_HDR_LEN + WIRE_MAX_PAYLOAD);
	check(n >= WIRE_HDR_LEN);
	again.page_size = page_size;
	again.features = e.flags & WIRE_RF_XXH3 ? WIRE_F_XXH3 : 0;
	check(!wire_decode_header(enc, 0, &type, &flags, &len));
	check(!wire_decode(type, flags, enc + WIRE_HDR_LEN, len, &d, &again));
	check(d.type == m->type);
	switch (m->type) {
	case WIRE_HELLO:
		check(!memcmp(&d.hello, &m->hello, sizeof(d.hello)));
		break;
	case WIRE_LAYOUT:
		check(d.layout.count == m->layout.count);
		check(!memcmp(d.layout.regions, m->layout.regions,
			      m->layout.count * sizeof(*d.layout.regions)));
		break;
	case WIRE_PAGES:
		check(d.pages.nruns == m->pages.nruns && d.pages.data_len == m->pages.data_len);
		check(d.pages.pages == m->pages.pages && d.pages.zero_pages == m->pages.zero_pages);
		check(!memcmp(d.pages.runs, m->pages.runs, m->pages.nruns * sizeof(*d.pages.runs)));
		check(!m->pages.data_len ||
		      !memcmp(d.pages.data, m->pages.data, m->pages.data_len));
		break;
	case WIRE_DEVICE:
		check(!strcmp(d.device.name, m->device.name));
		check(d.device.state_len == m->device.state_len);
		check(!d.device.state_len ||
		      !memcmp(d.device.state, m->device.state, d.device.state_len));
		break;
	case WIRE_ROUND:
		check(d.round.round == m->round.round && d.round.pages == m->round.pages);
		break;
	case WIRE_END:
		check(!memcmp(&d.end, &m->end, sizeof(d.end)));
		break;
	case WIRE_ACK:
		check(d.ack.status == m->ack.status && d.ack.digest == m->ack.digest);
		break;
	case WIRE_PING:
	case WIRE_PONG:
		check(d.ping == m->ping);
		break;
	case WIRE_ERROR:
		check(d.error.err == m->error.err && !strcmp(d.error.msg, m->error.msg));
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t page_sizes[4] = {0, 512, 4096, 65536};
	uint32_t features, page_size, max_payload, nregions = 0;
	struct wire_msg m;
	size_t off = 0;
	uint8_t cfg;

	if (!enc) {
		enc = malloc(WIRE_HDR_LEN + WIRE_MAX_PAYLOAD);
		if (!enc || wire_scratch_init(&scratch) || wire_scratch_init(&again) ||
		    wire_reader_init_mem(&reader, NULL, 0, 0))
			abort();
	}
	if (!size)
		return 0;
	cfg = data[0];
	data++;
	size--;
	features = cfg & WIRE_F_ALL;
	page_size = page_sizes[(cfg >> 2) & 3];
	max_payload = cfg & 0x10 ? 1u << 20 : 0;

	/* By hand: exact payload copies, consume, re-encode. */
	scratch.features = features;
	scratch.page_size = page_size;
	for (int n = 0; n < MAX_RECORDS && size - off >= WIRE_HDR_LEN; n++) {
		uint16_t type, flags;
		uint32_t len;
		uint8_t *payload;

		if (wire_decode_header(data + off, max_payload, &type, &flags, &len))
			break;
		off += WIRE_HDR_LEN;
		if (len > size - off)
			break;
		payload = malloc(len ? len : 1);
		if (!payload)
			abort();
		memcpy(payload, data + off, len);
		off += len;
		if (!wire_decode(type, flags, payload, len, &m, &scratch)) {
			if (m.type == WIRE_HELLO)
				scratch.page_size = m.hello.page_size;
			if (m.type == WIRE_LAYOUT)
				nregions = m.layout.count;
			consume(&m, scratch.page_size, nregions);
			roundtrip(&m, scratch.page_size);
		} else if (type == WIRE_LAYOUT) {
			nregions = 0; /* the regions were partly overwritten */
		}
		free(payload);
	}

	/* Through the reader, as a destination reads (its buffers reused: init costs more
	 * than most inputs). */
	reader.src = data;
	reader.src_len = size;
	reader.src_pos = 0;
	reader.max_payload = max_payload ? max_payload : WIRE_MAX_PAYLOAD;
	wire_reader_set_features(&reader, features);
	reader.scratch.page_size = page_size;
	for (int n = 0; n < MAX_RECORDS; n++) {
		int ret = wire_read(&reader, &m);

		if (ret == -ENODATA || ret == -ECONNRESET)
			break;
		if (!ret && m.type == WIRE_PAGES)
			sink += touch(m.pages.data, m.pages.data_len);
		if (!ret && m.type == WIRE_DEVICE)
			sink += touch(m.device.state, m.device.state_len);
	}
	return 0;
}
