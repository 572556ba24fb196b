/* SPDX-License-Identifier: MIT */
/*
 * tests/wire/test_wire_transport.c - the wire format over dt_transport_pair(), both ends
 * running: a miniature migration in the order docs/wire-format.md gives (HELLO both ways
 * with the features intersected, LAYOUT, ROUND + PAGES built by the batch builder from live
 * and then stable memory, PING/PONG, DEVICE, END, ACK with the destination's digest), the
 * destination placing every run with wire_layout_locate() and ending with a byte-identical
 * copy; then a corrupted record answered by ERROR, and a pair broken mid-batch failing both
 * ends with transport errors, not hangs.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "wire_test.h"

#define NREG 2

struct side {
	struct dt_transport *t;
	uint32_t features; /* what this side supports */
	uint8_t *mem[NREG];
	struct wire_region regions[NREG];
	uint64_t digest;
	uint64_t pages, rounds;
	int ret;
	char why[600];
};

#define DEST_FAIL(d, r, ...)                                                                       \
	do {                                                                                       \
		snprintf((d)->why, sizeof((d)->why), __VA_ARGS__);                                 \
		(d)->ret = (r);                                                                    \
		goto out;                                                                          \
	} while (0)

/* The destination: a small engine over the wire API. */
static void *dest_main(void *arg)
{
	struct side *d = arg;
	struct wire_writer w;
	struct wire_reader r;
	struct wire_msg m;
	uint32_t nreg = 0, ps = 0;
	int ret;

	d->ret = wire_writer_init(&w, d->t, 0);
	if (d->ret || (d->ret = wire_reader_init(&r, d->t, 0)))
		return NULL;
	ret = wire_read(&r, &m);
	if (ret || m.type != WIRE_HELLO)
		DEST_FAIL(d, ret ? ret : -EPROTO, "no HELLO");
	ps = m.hello.page_size;
	wire_writer_set_features(&w, m.hello.features & d->features);
	wire_reader_set_features(&r, m.hello.features & d->features);
	ret = wire_send_hello(&w, ps);
	if (ret)
		DEST_FAIL(d, ret, "send HELLO");
	for (;;) {
		ret = wire_read(&r, &m);
		if (ret) {
			wire_send_error(&w, ret, log_last);
			DEST_FAIL(d, ret, "read: %s", log_last);
		}
		switch (m.type) {
		case WIRE_LAYOUT:
			nreg = m.layout.count;
			if (nreg != NREG)
				DEST_FAIL(d, -EPROTO, "layout of %u regions", nreg);
			for (uint32_t i = 0; i < nreg; i++) {
				d->regions[i] = m.layout.regions[i];
				d->mem[i] = malloc(m.layout.regions[i].size);
				memset(d->mem[i], 0xee, m.layout.regions[i].size);
			}
			break;
		case WIRE_ROUND:
			d->rounds++;
			break;
		case WIRE_PAGES: {
			struct wire_layout l = {d->regions, nreg};
			size_t off = 0;

			for (uint32_t i = 0; i < m.pages.nruns; i++) {
				const struct wire_run *run = &m.pages.runs[i];
				uint64_t at;
				uint32_t reg;

				if (wire_layout_locate(&l, ps, run->first, run->count, &reg, &at))
					DEST_FAIL(d, -EPROTO, "run %u outside the layout", i);
				if (run->flags & WIRE_RUN_ZERO) {
					memset(d->mem[reg] + at, 0, (size_t)run->count * ps);
				} else {
					memcpy(d->mem[reg] + at, m.pages.data + off,
					       (size_t)run->count * ps);
					off += (size_t)run->count * ps;
				}
			}
			d->pages += m.pages.pages;
			break;
		}
		case WIRE_PING:
			ret = wire_send_pong(&w, m.ping);
			if (ret)
				DEST_FAIL(d, ret, "send PONG");
			break;
		case WIRE_DEVICE:
			if (strcmp(m.device.name, "uart") || m.device.state_len != 5 ||
			    memcmp(m.device.state, "hello", 5))
				DEST_FAIL(d, -ENOENT, "device %s", m.device.name);
			break;
		case WIRE_END: {
			void *host[NREG] = {d->mem[0], d->mem[1]};

			ret = wire_digest_regions(d->regions, host, nreg, &d->digest);
			if (ret)
				DEST_FAIL(d, ret, "digest");
			ret = d->digest == m.end.digest && d->pages == m.end.pages ? 0 : -EPROTO;
			d->ret = wire_send_ack(&w, ret, d->digest);
			if (!d->ret)
				d->ret = ret;
			goto out;
		}
		default:
			DEST_FAIL(d, -EPROTO, "unexpected %s", wire_type_name(m.type));
		}
	}
out:
	wire_reader_fini(&r);
	wire_writer_fini(&w);
	return NULL;
}

static void make_pair(struct dt_transport **a, struct dt_transport **b, uint64_t fail_after)
{
	struct dt_transport_pair_opts o = {
		.size = sizeof(o), .capacity = 1 << 20, .fail_after_bytes = fail_after};

	assert_int_equal(dt_transport_pair(&o, a, b), 0);
	assert_int_equal(dt_transport_set_timeout(*a, 20000), 0);
	assert_int_equal(dt_transport_set_timeout(*b, 20000), 0);
}

/* Random pages: zero, random or compressible. */
static void fill_region(uint8_t *p, size_t pages)
{
	for (size_t i = 0; i < pages; i++) {
		unsigned kind = (unsigned)rng_below(4);

		if (kind == 3)
			memset(p + i * PS, 0, PS);
		else
			rng_fill(p + i * PS, PS, kind);
	}
}

static void migrate(uint32_t src_features, uint32_t dst_features)
{
	struct side s = {0}, d = {.features = dst_features};
	struct wire_writer w;
	struct wire_reader r;
	struct wire_batch b;
	struct wire_msg m;
	pthread_t th;
	uint64_t digest, sent = 0;
	void *host[NREG];

	make_pair(&s.t, &d.t, 0);
	s.regions[0] = (struct wire_region){1ull << 20, 1024 * PS};
	s.regions[1] = (struct wire_region){1ull << 32, 300 * PS};
	for (int i = 0; i < NREG; i++) {
		s.mem[i] = malloc(s.regions[i].size);
		assert_non_null(s.mem[i]);
		fill_region(s.mem[i], s.regions[i].size / PS);
		host[i] = s.mem[i];
	}
	assert_int_equal(pthread_create(&th, NULL, dest_main, &d), 0);
	assert_int_equal(wire_writer_init(&w, s.t, src_features), 0);
	assert_int_equal(wire_reader_init(&r, s.t, 0), 0);
	assert_int_equal(wire_batch_init(&b), 0);

	assert_int_equal(wire_send_hello(&w, PS), 0);
	assert_int_equal(wire_read(&r, &m), 0);
	assert_int_equal(m.type, WIRE_HELLO);
	assert_int_equal(m.hello.features, src_features & dst_features);
	wire_writer_set_features(&w, m.hello.features);
	wire_reader_set_features(&r, m.hello.features);
	assert_int_equal(wire_send_layout(&w, s.regions, NREG), 0);

	/* Round 0 (everything), two rounds of random dirty pages, then the stop-and-copy
	 * round from stable memory. */
	for (uint32_t round = 0; round < 4; round++) {
		wire_writer_set_memory_stable(&w, round == 3);
		assert_int_equal(wire_send_round(&w, round, 0), 0);
		for (int i = 0; i < NREG; i++) {
			uint64_t first = s.regions[i].addr / PS, n = s.regions[i].size / PS;

			if (!round) {
				assert_int_equal(wire_batch_add(&w, &b, first, s.mem[i], n), 0);
				continue;
			}
			for (int k = 0; k < 20; k++) {
				uint64_t at = rng_below(n),
					 len = 1 + rng_below(n - at < 64 ? n - at : 64);

				fill_region(s.mem[i] + at * PS, len);
				assert_int_equal(
					wire_batch_add(&w, &b, first + at, s.mem[i] + at * PS, len),
					0);
			}
		}
		assert_int_equal(wire_batch_flush(&w, &b), 0);
		assert_int_equal(wire_send_ping(&w, 1000 + round), 0);
		assert_int_equal(wire_read(&r, &m), 0);
		assert_int_equal(m.type, WIRE_PONG);
		assert_int_equal(m.ping, 1000 + round);
	}
	sent = b.pages;
	assert_int_equal(wire_send_device(&w, "uart", "hello", 5), 0);
	assert_int_equal(wire_digest_regions(s.regions, host, NREG, &digest), 0);
	assert_int_equal(wire_send_end(&w, sent, digest, 1), 0);
	assert_int_equal(wire_read(&r, &m), 0);
	assert_int_equal(m.type, WIRE_ACK);
	assert_int_equal(pthread_join(th, NULL), 0);
	if (d.ret)
		fail_msg("destination: %d (%s)", d.ret, d.why);
	assert_int_equal(m.ack.status, 0);
	assert_int_equal(m.ack.digest, digest);
	assert_int_equal(d.rounds, 4);
	for (int i = 0; i < NREG; i++)
		assert_memory_equal(d.mem[i], s.mem[i], s.regions[i].size);
	assert_int_equal(w.bytes, dt_transport_bytes_sent(s.t));
	assert_int_equal(r.bytes, dt_transport_bytes_received(s.t));
	fprintf(stderr,
		"features %#x/%#x: %" PRIu64 " pages (%" PRIu64 " zero) in %" PRIu64
		" bytes of PAGES, %" PRIu64 " bytes in all\n",
		src_features, dst_features, b.pages, b.zero_pages, b.wire_bytes, w.bytes);

	wire_batch_fini(&b);
	wire_reader_fini(&r);
	wire_writer_fini(&w);
	for (int i = 0; i < NREG; i++) {
		free(s.mem[i]);
		free(d.mem[i]);
	}
	dt_transport_free(s.t);
	dt_transport_free(d.t);
}

static void test_migrate(void **state)
{
	(void)state;
	rng_seed("test_migrate");
	migrate(WIRE_F_ALL, WIRE_F_ALL);
	migrate(WIRE_F_ALL, WIRE_F_XXH3); /* the destination refuses compression */
	migrate(WIRE_F_XXH3, WIRE_F_ALL);
	migrate(0, WIRE_F_ALL);
}

/* A PAGES record with one flipped bit: the destination answers ERROR and stops. */
static void test_corrupt(void **state)
{
	struct side d = {.features = WIRE_F_ALL};
	struct wire_run run = {256, 1, 0};
	static uint8_t page[PS];
	const void *data[1] = {page};
	struct dt_transport *t;
	struct wire_writer w, mw;
	struct wire_reader r;
	struct wire_msg m;
	pthread_t th;

	(void)state;
	log_start();
	make_pair(&t, &d.t, 0);
	memset(page, 0x33, sizeof(page));
	assert_int_equal(pthread_create(&th, NULL, dest_main, &d), 0);
	assert_int_equal(wire_writer_init(&w, t, WIRE_F_ALL), 0);
	assert_int_equal(wire_reader_init(&r, t, 0), 0);
	assert_int_equal(wire_send_hello(&w, PS), 0);
	assert_int_equal(wire_read(&r, &m), 0);
	assert_int_equal(
		wire_send_layout(&w, (struct wire_region[]){{0, 1024 * PS}, {1ull << 40, PS}}, 2),
		0);
	/* The record made in memory (raw: page does not compress under XXH3 only), one bit
	 * flipped, then sent as bytes. */
	assert_int_equal(wire_writer_init_mem(&mw, WIRE_F_XXH3), 0);
	wire_writer_set_page_size(&mw, PS);
	rng_fill(page, PS, 0);
	assert_int_equal(wire_send_pages(&mw, &run, 1, data, NULL), 0);
	mw.mem[mw.mem_len - 100] ^= 8;
	assert_int_equal(dt_transport_send(t, mw.mem, mw.mem_len), 0);
	assert_int_equal(wire_read(&r, &m), 0);
	assert_int_equal(m.type, WIRE_ERROR);
	assert_int_equal(m.error.err, -EPROTO);
	assert_non_null(strstr(m.error.msg, "checksum mismatch"));
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(d.ret, -EPROTO);
	wire_writer_fini(&mw);
	wire_reader_fini(&r);
	wire_writer_fini(&w);
	free(d.mem[0]);
	free(d.mem[1]);
	dt_transport_free(t);
	dt_transport_free(d.t);
}

/* The pair breaks 300 KiB into the stream: the writer and the destination both fail. */
static void test_broken(void **state)
{
	struct side d = {.features = WIRE_F_ALL};
	struct wire_region regions[NREG] = {{0, 2048 * PS}, {1ull << 40, PS}};
	uint8_t *mem = malloc(regions[0].size);
	struct dt_transport *t;
	struct wire_writer w;
	struct wire_batch b;
	pthread_t th;
	int ret;

	(void)state;
	assert_non_null(mem);
	rng_fill(mem, regions[0].size, 0); /* incompressible: the bytes go on the wire */
	make_pair(&t, &d.t, 300 << 10);
	assert_int_equal(pthread_create(&th, NULL, dest_main, &d), 0);
	assert_int_equal(wire_writer_init(&w, t, WIRE_F_XXH3), 0);
	assert_int_equal(wire_batch_init(&b), 0);
	assert_int_equal(wire_send_hello(&w, PS), 0);
	assert_int_equal(wire_send_layout(&w, regions, NREG), 0);
	ret = wire_batch_add(&w, &b, 0, mem, 2048);
	if (!ret)
		ret = wire_batch_flush(&w, &b);
	assert_true(ret == -EPIPE || ret == -ECONNRESET);
	assert_int_equal(b.pages, 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	if (d.ret != -ECONNRESET && d.ret != -EPIPE)
		fail_msg("destination: %d (%s)", d.ret, d.why);
	wire_batch_fini(&b);
	wire_writer_fini(&w);
	free(d.mem[0]);
	free(d.mem[1]);
	free(mem);
	dt_transport_free(t);
	dt_transport_free(d.t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_migrate),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_broken),
	};

	log_start();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
