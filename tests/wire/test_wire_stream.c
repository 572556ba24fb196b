/* SPDX-License-Identifier: MIT */
/*
 * tests/wire/test_wire_stream.c - the writer, the batch builder and the reader, over memory:
 * every record through wire_send_*() and wire_read(); random batches (seeded) of mixed zero
 * and data runs with and without zstd, from stable memory and through the staging copy,
 * compared byte for byte with a naive reference and with wire_encode(); the batch builder
 * against a naive zero/data split, its 16 MiB and 65536-run flushes and its counters; the
 * zero-page test against a byte loop at odd offsets; the reader's ends and limits; the
 * layout lookup; allocation failures. The memory digest is test_wire_digest.c's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "wire_test.h"

#define MiB (1u << 20)

static bool naive_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static void test_page_is_zero(void **state)
{
	static const size_t lens[] = {4096, 512, 8192, 65536, 4095, 13, 7, 64, 72, 0};
	static const size_t offs[] = {0, 2048, 0xff1, 1, 4};
	uint8_t *buf = aligned_alloc(4096, 3 * 65536);

	(void)state;
	assert_non_null(buf);
	rng_seed("test_page_is_zero");
	memset(buf, 0, 3 * 65536);
	for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
		for (size_t o = 0; o < sizeof(offs) / sizeof(offs[0]); o++) {
			uint8_t *p = buf + offs[o];
			size_t len = lens[l];

			assert_true(wire_page_is_zero(p, len));
			/* Each position (small pages) or 300 random ones holds the only bit. */
			for (size_t k = 0; k < (len <= 8192 ? len : 300); k++) {
				size_t pos = len <= 8192 ? k : rng_below(len);
				uint8_t bit = (uint8_t)(1u << rng_below(8));

				p[pos] = bit;
				if (wire_page_is_zero(p, len) != naive_zero(p, len))
					fail_msg("len %zu off %zu: byte %zu = %#x", len, offs[o],
						 pos, bit);
				/* A byte just outside must not count. */
				p[pos] = 0;
				p[len] = 0xff;
				assert_true(wire_page_is_zero(p, len));
				p[len] = 0;
				if (offs[o])
					p[-1] = 0xff;
				assert_true(wire_page_is_zero(p, len));
				if (offs[o])
					p[-1] = 0;
			}
		}
	}
	free(buf);
}

static void test_all_records(void **state)
{
	struct wire_region layout[2] = {{0, 64 * PS}, {1ull << 32, 16 * PS}};
	static uint8_t pages[3 * PS], dev[100000];
	struct wire_run runs[3] = {{3, 2, 0}, {5, 10, WIRE_RUN_ZERO}, {(1ull << 32) / PS, 1, 0}};
	const void *data[3] = {pages, NULL, pages + 2 * PS};
	char longmsg[400];
	struct wire_writer w;
	struct wire_reader r;
	struct wire_msg m;
	uint64_t bytes;

	(void)state;
	rng_state = 3;
	rng_fill(pages, sizeof(pages), 0);
	rng_fill(dev, sizeof(dev), 1);
	memset(longmsg, 'e', sizeof(longmsg) - 1);
	longmsg[sizeof(longmsg) - 1] = '\0';
	assert_int_equal(wire_writer_init_mem(&w, WIRE_F_ALL), 0);
	assert_int_equal(wire_send_pages(&w, runs, 3, data, NULL), -EINVAL); /* no page size */
	assert_int_equal(wire_send_layout(&w, layout, 2), -EINVAL);
	assert_int_equal(wire_send_hello(&w, 4097), -EINVAL);
	assert_int_equal(wire_send_hello(&w, PS), 0);
	assert_int_equal(wire_send_layout(&w, layout, 2), 0);
	assert_int_equal(wire_send_round(&w, 4, 13), 0);
	assert_int_equal(wire_send_pages(&w, runs, 3, data, &bytes), 0);
	assert_int_equal(wire_send_device(&w, "dev0", dev, sizeof(dev)), 0);
	assert_int_equal(wire_send_device(&w, "empty", NULL, 0), 0);
	assert_int_equal(wire_send_end(&w, 15, 0xabcdef, 2), 0);
	assert_int_equal(wire_send_ack(&w, -EPROTO, 0x1234), 0);
	assert_int_equal(wire_send_ping(&w, 42), 0);
	assert_int_equal(wire_send_pong(&w, 43), 0);
	assert_int_equal(wire_send_error(&w, -ENOENT, longmsg), 0);
	assert_int_equal(w.records, 11);
	assert_int_equal(w.bytes, w.mem_len);

	/* Refused arguments send nothing. */
	assert_int_equal(wire_send_ack(&w, 1, 0), -EINVAL);
	assert_int_equal(wire_send_error(&w, 0, "x"), -EINVAL);
	assert_int_equal(wire_send_device(&w, longmsg, NULL, 0), -EINVAL);
	assert_int_equal(wire_send_device(&w, "", NULL, 0), -EINVAL);
	assert_int_equal(wire_send_device(&w, "d", NULL, WIRE_MAX_DEVICE_STATE + 1), -EINVAL);
	layout[1].addr = 0;
	assert_int_equal(wire_send_layout(&w, layout, 2), -EINVAL);
	data[0] = NULL;
	assert_int_equal(wire_send_pages(&w, runs, 3, data, NULL), -EINVAL);
	runs[0].count = 4097;
	assert_int_equal(wire_send_pages(&w, runs, 3, data, NULL), -EINVAL); /* > 16 MiB */
	data[0] = pages;
	runs[0].count = 2;
	layout[1].addr = 1ull << 32;
	assert_int_equal(w.records, 11);

	assert_int_equal(wire_reader_init_mem(&r, w.mem, w.mem_len, 0), 0);
	assert_int_equal(wire_read(&r, &m), 0);
	assert_int_equal(m.type, WIRE_HELLO);
	assert_int_equal(m.hello.features, WIRE_F_ALL);
	assert_int_equal(r.scratch.page_size, PS);
	assert_int_equal(wire_read(&r, &m), 0);
	assert_int_equal(m.layout.count, 2);
	assert_memory_equal(m.layout.regions, layout, sizeof(layout));
	assert_int_equal(wire_read(&r, &m), 0);
	assert_int_equal(m.type, WIRE_ROUND);
	assert_int_equal(m.round.round, 4);
	assert_int_equal(m.round.pages, 13);
	assert_int_equal(wire_read(&r, &m), 0);
	assert_int_equal(m.type, WIRE_PAGES);
	assert_int_equal(WIRE_HDR_LEN + m.len, bytes);
	assert_memory_equal(m.pages.runs, runs, sizeof(runs));
	assert_memory_equal(m.pages.data, pages, sizeof(pages));
	assert_int_equal(wire_read(&r, &m), 0);
	assert_string_equal(m.device.name, "dev0");
	assert_true(m.flags & WIRE_RF_ZSTD); /* the pattern compresses */
	assert_true(m.len < sizeof(dev) / 10);
	assert_int_equal(m.device.state_len, sizeof(dev));
	assert_memory_equal(m.device.state, dev, sizeof(dev));
	assert_int_equal(wire_read(&r, &m), 0);
	assert_string_equal(m.device.name, "empty");
	assert_int_equal(m.device.state_len, 0);
	assert_int_equal(wire_read(&r, &m), 0);
	assert_int_equal(m.end.pages, 15);
	assert_int_equal(m.end.digest, 0xabcdef);
	assert_int_equal(m.end.ndevices, 2);
	assert_int_equal(wire_read(&r, &m), 0);
	assert_int_equal(m.ack.status, -EPROTO);
	assert_int_equal(m.ack.digest, 0x1234);
	assert_int_equal(wire_read(&r, &m), 0);
	assert_int_equal(m.type, WIRE_PING);
	assert_int_equal(m.ping, 42);
	assert_int_equal(wire_read(&r, &m), 0);
	assert_int_equal(m.type, WIRE_PONG);
	assert_int_equal(m.ping, 43);
	assert_int_equal(wire_read(&r, &m), 0);
	assert_int_equal(m.error.err, -ENOENT);
	assert_int_equal(strlen(m.error.msg), WIRE_MAX_ERROR_MSG);
	assert_int_equal(wire_read(&r, &m), -ENODATA);
	assert_int_equal(r.records, 11);
	assert_int_equal(r.bytes, w.bytes);
	wire_reader_fini(&r);

	/* Cut anywhere inside the last record: -ECONNRESET, never a partial record. */
	for (size_t cut = 1; cut < WIRE_HDR_LEN + WIRE_ERROR_FIXED + WIRE_MAX_ERROR_MSG; cut += 7) {
		int ret = 0;

		assert_int_equal(wire_reader_init_mem(&r, w.mem, w.mem_len - cut, 0), 0);
		while (!ret)
			ret = wire_read(&r, &m);
		assert_int_equal(ret, -ECONNRESET);
		assert_int_equal(r.records, 10);
		wire_reader_fini(&r);
	}
	/* A reader limit below the device record. */
	log_start();
	assert_int_equal(wire_reader_init_mem(&r, w.mem, w.mem_len, 1000), 0);
	for (int i = 0; i < 3; i++) /* HELLO, LAYOUT, ROUND; then PAGES is too long */
		assert_int_equal(wire_read(&r, &m), 0);
	expect_proto(wire_read(&r, &m), "past this reader's limit of 1000");
	wire_reader_fini(&r);
	wire_writer_fini(&w);
}

/* Naive reference: the data of the non-ZERO runs, in run order. */
static size_t gather(uint8_t *out, const struct wire_run *runs, const void *const *data, uint32_t n,
		     uint32_t ps)
{
	size_t off = 0;

	for (uint32_t i = 0; i < n; i++) {
		if (runs[i].flags & WIRE_RUN_ZERO)
			continue;
		memcpy(out + off, data[i], (size_t)runs[i].count * ps);
		off += (size_t)runs[i].count * ps;
	}
	return off;
}

static void test_random_batches(void **state)
{
	const uint32_t npages = 8192; /* 32 MiB of memory to pick runs from */
	uint8_t *mem = malloc((size_t)npages * PS), *expect = malloc(WIRE_MAX_BATCH_DATA);
	uint8_t *enc = malloc(WIRE_MAX_PAYLOAD);
	static struct wire_run runs[WIRE_MAX_RUNS];
	static const void *data[WIRE_MAX_RUNS];
	struct wire_writer w, w2; /* reused: their buffers grow once */

	(void)state;
	assert_int_equal(wire_writer_init_mem(&w, 0), 0);
	assert_int_equal(wire_writer_init_mem(&w2, 0), 0);
	wire_writer_set_page_size(&w, PS);
	wire_writer_set_page_size(&w2, PS);
	assert_non_null(mem);
	assert_non_null(expect);
	assert_non_null(enc);
	rng_seed("test_random_batches");
	/* Stretches of zero, random and compressible pages. */
	for (uint32_t i = 0; i < npages;) {
		uint32_t n = 1 + (uint32_t)rng_below(64), kind = (uint32_t)rng_below(4);

		n = n < npages - i ? n : npages - i;
		if (kind == 3)
			memset(mem + (size_t)i * PS, 0, (size_t)n * PS);
		else
			rng_fill(mem + (size_t)i * PS, (size_t)n * PS, kind);
		i += n;
	}
	for (int iter = 0; iter < 60; iter++) {
		uint32_t features = (uint32_t)rng_below(4), nruns = 0,
			 left = WIRE_MAX_BATCH_DATA / PS;
		uint32_t want = iter % 10 == 9 ? WIRE_MAX_RUNS
					       : 1 + (uint32_t)rng_below(iter % 3 ? 64 : 3000);
		bool stable = rng_below(2);
		struct wire_reader r;
		struct wire_msg m, em;
		uint64_t bytes;
		size_t len;

		for (; nruns < want; nruns++) {
			uint32_t count = 1 + (uint32_t)rng_below(iter % 10 == 9 ? 1 : 40);
			uint32_t at = (uint32_t)rng_below(npages - count);
			bool zero = rng_below(3) == 0 || left < count;

			runs[nruns] = (struct wire_run){rng_below(1ull << 40), count,
							zero ? WIRE_RUN_ZERO : 0};
			data[nruns] = zero ? NULL : mem + (size_t)at * PS;
			if (!zero)
				left -= count;
		}
		len = gather(expect, runs, data, nruns, PS);
		w.mem_len = w2.mem_len = 0;
		wire_writer_set_features(&w, features);
		wire_writer_set_memory_stable(&w, stable);
		assert_int_equal(wire_send_pages(&w, runs, nruns, data, &bytes), 0);
		assert_int_equal(bytes, w.mem_len);
		assert_int_equal(wire_reader_init_mem(&r, w.mem, w.mem_len, 0), 0);
		r.scratch.page_size = PS;
		wire_reader_set_features(&r, features);
		if (wire_read(&r, &m))
			fail_msg("iter %d: %u runs, features %#x: refused (%s)", iter, nruns,
				 features, log_last);
		assert_int_equal(m.pages.nruns, nruns);
		assert_memory_equal(m.pages.runs, runs, (size_t)nruns * sizeof(runs[0]));
		assert_int_equal(m.pages.data_len, len);
		if (len && memcmp(m.pages.data, expect, len))
			fail_msg("iter %d: data differ", iter);
		assert_int_equal(!!(m.flags & WIRE_RF_XXH3), !!(features & WIRE_F_XXH3));
		if (m.flags & WIRE_RF_ZSTD)
			assert_true(m.len < WIRE_PAGES_FIXED + nruns * WIRE_RUN_LEN + len);
		if (!(features & WIRE_F_ZSTD)) {
			/* Raw: the same bytes as the buffer encoder, and as the other copy mode. */
			em = (struct wire_msg){
				.type = WIRE_PAGES, .flags = m.flags, .pages = m.pages};
			em.pages.data = expect;
			assert_int_equal(wire_encode(&em, PS, enc, WIRE_MAX_PAYLOAD), w.mem_len);
			assert_memory_equal(enc, w.mem, w.mem_len);
			wire_writer_set_features(&w2, features);
			wire_writer_set_memory_stable(&w2, !stable);
			assert_int_equal(wire_send_pages(&w2, runs, nruns, data, NULL), 0);
			assert_int_equal(w2.mem_len, w.mem_len);
			assert_memory_equal(w2.mem, w.mem, w.mem_len);
		}
		assert_int_equal(wire_read(&r, &m), -ENODATA);
		wire_reader_fini(&r);
	}
	wire_writer_fini(&w);
	wire_writer_fini(&w2);
	free(mem);
	free(expect);
	free(enc);
}

/* Read every PAGES record of a stream and apply it to dst (indices relative to base). */
static void apply_stream(const struct wire_writer *w, uint8_t *dst, uint64_t base, uint32_t ps,
			 uint64_t *records, uint64_t *runs_seen)
{
	struct wire_reader r;
	struct wire_msg m;
	int ret;

	assert_int_equal(wire_reader_init_mem(&r, w->mem, w->mem_len, 0), 0);
	r.scratch.page_size = ps;
	while (!(ret = wire_read(&r, &m))) {
		size_t off = 0;

		assert_int_equal(m.type, WIRE_PAGES);
		assert_true(m.pages.nruns <= WIRE_MAX_RUNS);
		assert_true(m.pages.data_len <= WIRE_MAX_BATCH_DATA);
		for (uint32_t i = 0; i < m.pages.nruns; i++) {
			const struct wire_run *run = &m.pages.runs[i];
			uint8_t *to = dst + (run->first - base) * ps;

			if (run->flags & WIRE_RUN_ZERO) {
				memset(to, 0, (size_t)run->count * ps);
			} else {
				memcpy(to, m.pages.data + off, (size_t)run->count * ps);
				off += (size_t)run->count * ps;
			}
		}
		(*records)++;
		*runs_seen += m.pages.nruns;
	}
	assert_int_equal(ret, -ENODATA);
	wire_reader_fini(&r);
}

static void test_batch_builder(void **state)
{
	const uint32_t npages = 6000;
	const uint64_t base = 1ull << 30;
	uint8_t *src = malloc((size_t)npages * PS), *dst = malloc((size_t)npages * PS);
	uint64_t zero = 0, stretches = 0, records = 0, runs_seen = 0;
	struct wire_writer w;
	struct wire_batch b;

	(void)state;
	assert_non_null(src);
	assert_non_null(dst);
	rng_seed("test_batch_builder");
	for (uint32_t i = 0; i < npages; i++) {
		uint8_t *page = src + (size_t)i * PS;
		bool z;

		if (rng_below(i % 500 < 250 ? 2 : 20) == 0) {
			memset(page, 0, PS);
		} else if (rng_below(4) == 0) { /* data only in the last byte */
			memset(page, 0, PS - 1);
			page[PS - 1] = 1;
		} else {
			rng_fill(page, PS, (unsigned)rng_below(3));
		}
		z = naive_zero(page, PS);
		zero += z;
		stretches += !i || z != naive_zero(page - PS, PS);
	}
	memset(dst, 0xee, (size_t)npages * PS);
	assert_int_equal(wire_writer_init_mem(&w, WIRE_F_ALL), 0);
	assert_int_equal(wire_batch_init(&b), 0);
	assert_int_equal(wire_batch_add(&w, &b, base, src, 1), -EINVAL); /* no page size */
	wire_writer_set_page_size(&w, PS);
	/* Added in random pieces, in order: runs continue across calls. */
	for (uint32_t i = 0; i < npages;) {
		uint32_t n = 1 + (uint32_t)rng_below(300);

		n = n < npages - i ? n : npages - i;
		assert_int_equal(wire_batch_add(&w, &b, base + i, src + (size_t)i * PS, n), 0);
		i += n;
	}
	assert_int_equal(wire_batch_flush(&w, &b), 0);
	assert_int_equal(wire_batch_flush(&w, &b), 0); /* nothing pending: nothing sent */
	apply_stream(&w, dst, base, PS, &records, &runs_seen);
	assert_memory_equal(dst, src, (size_t)npages * PS);
	assert_int_equal(b.pages, npages);
	assert_int_equal(b.zero_pages, zero);
	assert_int_equal(b.records, records);
	assert_int_equal(b.wire_bytes, w.mem_len);
	/* 6000 pages with ~3000 data pages fit one record (<16 MiB) only if the data does:
	 * either way runs are maximal except where a record ends. */
	assert_true(runs_seen >= stretches && runs_seen < stretches + records);
	fprintf(stderr,
		"batch: %" PRIu64 " pages, %" PRIu64 " zero, %" PRIu64 " runs, %" PRIu64
		" records, %" PRIu64 " bytes\n",
		b.pages, b.zero_pages, runs_seen, records, b.wire_bytes);

	/* Not contiguous in memory or in index: new runs. */
	wire_writer_fini(&w);
	assert_int_equal(wire_writer_init_mem(&w, WIRE_F_XXH3), 0);
	wire_writer_set_page_size(&w, PS);
	b.pages = b.zero_pages = b.records = b.wire_bytes = 0;
	memset(src, 1, 3 * PS);
	assert_int_equal(wire_batch_add(&w, &b, 10, src, 1), 0);
	assert_int_equal(wire_batch_add(&w, &b, 11, src, 1), 0);      /* same memory again */
	assert_int_equal(wire_batch_add(&w, &b, 13, src + PS, 1), 0); /* index gap */
	assert_int_equal(wire_batch_add(&w, &b, 14, src + 2 * PS, 1), 0);
	assert_int_equal(b.nruns, 3);
	assert_int_equal(b.runs[0].count, 1);
	assert_int_equal(b.runs[2].count, 2);
	assert_int_equal(wire_batch_flush(&w, &b), 0);
	wire_batch_fini(&b);
	wire_writer_fini(&w);
	free(src);
	free(dst);
}

static void test_batch_bounds(void **state)
{
	const uint32_t npages = 20 * MiB / PS;
	uint8_t *src = malloc(20 * MiB), *dst = malloc(20 * MiB);
	static uint8_t small_zero[512];
	uint64_t records = 0, runs_seen = 0;
	struct wire_writer w;
	struct wire_batch b;
	struct wire_reader r;
	struct wire_msg m;

	(void)state;
	assert_non_null(src);
	assert_non_null(dst);
	/* 20 MiB of data: a record of exactly 16 MiB, then the rest. */
	memset(src, 0x5a, 20 * MiB);
	assert_int_equal(wire_writer_init_mem(&w, WIRE_F_XXH3), 0);
	wire_writer_set_page_size(&w, PS);
	assert_int_equal(wire_batch_init(&b), 0);
	assert_int_equal(wire_batch_add(&w, &b, 0, src, npages), 0);
	assert_int_equal(b.records, 1);
	assert_int_equal(b.pages, WIRE_MAX_BATCH_DATA / PS);
	assert_int_equal(wire_batch_flush(&w, &b), 0);
	assert_int_equal(b.records, 2);
	apply_stream(&w, dst, 0, PS, &records, &runs_seen);
	assert_int_equal(records, 2);
	assert_int_equal(runs_seen, 2);
	assert_memory_equal(dst, src, 20 * MiB);
	wire_writer_fini(&w);

	/* 70000 separate ZERO runs of 512-byte pages: a record at 65536 runs. */
	assert_int_equal(wire_writer_init_mem(&w, WIRE_F_XXH3), 0);
	wire_writer_set_page_size(&w, 512);
	b.records = b.pages = b.zero_pages = 0;
	for (uint32_t i = 0; i < 70000; i++)
		assert_int_equal(wire_batch_add(&w, &b, 2ull * i, small_zero, 1), 0);
	assert_int_equal(b.records, 1);
	assert_int_equal(b.nruns, 70000 - WIRE_MAX_RUNS);
	assert_int_equal(wire_batch_flush(&w, &b), 0);
	assert_int_equal(b.zero_pages, 70000);
	assert_int_equal(wire_reader_init_mem(&r, w.mem, w.mem_len, 0), 0);
	r.scratch.page_size = 512;
	assert_int_equal(wire_read(&r, &m), 0);
	assert_int_equal(m.pages.nruns, WIRE_MAX_RUNS);
	assert_int_equal(m.pages.data_len, 0);
	assert_int_equal(wire_read(&r, &m), 0);
	assert_int_equal(m.pages.runs[0].first, 2ull * WIRE_MAX_RUNS);
	wire_reader_fini(&r);
	wire_writer_fini(&w);
	wire_batch_fini(&b);
	free(src);
	free(dst);
}

static void test_layout_locate(void **state)
{
	const struct wire_region regions[3] = {{0, 3 * PS}, {16 * PS, PS}, {0ull - PS, PS}};
	const struct wire_layout l = {regions, 3};
	uint32_t region;
	uint64_t off;

	(void)state;
	assert_int_equal(wire_layout_locate(&l, PS, 1, 2, &region, &off), 0);
	assert_int_equal(region, 0);
	assert_int_equal(off, PS);
	assert_int_equal(wire_layout_locate(&l, PS, 2, 2, &region, &off), -EPROTO);
	assert_int_equal(wire_layout_locate(&l, PS, 3, 1, &region, &off), -EPROTO);
	assert_int_equal(wire_layout_locate(&l, PS, 16, 1, &region, &off), 0);
	assert_int_equal(region, 1);
	assert_int_equal(off, 0);
	assert_int_equal(wire_layout_locate(&l, PS, 15, 2, &region, &off), -EPROTO);
	assert_int_equal(wire_layout_locate(&l, PS, UINT64_MAX / PS, 1, &region, &off), 0);
	assert_int_equal(region, 2);
	assert_int_equal(wire_layout_locate(&l, PS, UINT64_MAX / PS, 2, &region, &off), -EPROTO);
	assert_int_equal(wire_layout_locate(&l, PS, UINT64_MAX, 1, &region, &off), -EPROTO);
	assert_int_equal(wire_layout_locate(&l, PS, 0, 0, &region, &off), -EPROTO);
}

/* Every allocation of a write-and-read cycle failing in turn: -ENOMEM, nothing leaks. */
static void test_alloc_failures(void **state)
{
	static uint8_t pages[4 * PS];
	struct wire_run run = {0, 4, 0};
	const void *data[1] = {pages};
	int ok = 0, nomem = 0;

	(void)state;
	rng_state = 5;
	rng_fill(pages, sizeof(pages), 1);
	for (unsigned long n = 1; n < 40; n++) {
		struct wire_writer w;
		struct wire_reader r;
		struct wire_batch b;
		struct wire_msg m;
		int ret;

		alloc_fail_nth(n);
		ret = wire_writer_init_mem(&w, WIRE_F_ALL);
		if (!ret)
			ret = wire_send_hello(&w, PS);
		if (!ret)
			ret = wire_send_pages(&w, &run, 1, data, NULL);
		if (!ret)
			ret = wire_send_device(&w, "d", pages, sizeof(pages));
		if (!ret) {
			ret = wire_batch_init(&b);
			if (!ret) {
				ret = wire_batch_add(&w, &b, 0, pages, 4);
				if (!ret)
					ret = wire_batch_flush(&w, &b);
				wire_batch_fini(&b);
			}
		}
		if (!ret) {
			ret = wire_reader_init_mem(&r, w.mem, w.mem_len, 0);
			while (!ret)
				ret = wire_read(&r, &m);
			if (ret == -ENODATA)
				ret = 0;
			wire_reader_fini(&r);
		}
		wire_writer_fini(&w);
		assert_true(ret == 0 || ret == -ENOMEM);
		ok += !ret;
		nomem += ret == -ENOMEM;
	}
	alloc_fail_nth(0);
	assert_true(nomem > 5);
	assert_true(ok > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_page_is_zero),   cmocka_unit_test(test_all_records),
		cmocka_unit_test(test_random_batches), cmocka_unit_test(test_batch_builder),
		cmocka_unit_test(test_batch_bounds),   cmocka_unit_test(test_layout_locate),
		cmocka_unit_test(test_alloc_failures),
	};

	log_start();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
