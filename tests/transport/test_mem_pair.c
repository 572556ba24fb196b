/* SPDX-License-Identifier: MIT */
/*
 * tests/transport/test_mem_pair.c - the in-memory pair (suite 'unit'): exact bytes through
 * rings far smaller and far larger than the records, 64 MiB with a concurrent reader,
 * sendv with many (and empty) iovecs, the byte counters, timeouts, a freed peer (drain then
 * -ECONNRESET, sends -EPIPE), shutdown from another thread waking a blocked recv or send on
 * either end, fail_after_bytes breaking at exactly that byte, and argument checks.
 * Randomized: the seed is printed, replay with --seed N.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "test_util.h"
#include "transport_test.h"

static void make_pair(size_t capacity, uint64_t fail_after, struct dt_transport **a,
		      struct dt_transport **b)
{
	struct dt_transport_pair_opts o = {
		.size = sizeof(o), .capacity = capacity, .fail_after_bytes = fail_after};

	assert_int_equal(dt_transport_pair(&o, a, b), 0);
	assert_non_null(*a);
	assert_non_null(*b);
}

static void test_roundtrip_random(void **state)
{
	static const size_t caps[] = {1, 7, 4096, 65536, 0};

	for (int round = 0; round < 40; round++) {
		struct dt_transport *a, *b;
		size_t cap = caps[rng_below(5)];
		/* a 1-byte ring hands over every byte alone: keep those streams short */
		uint64_t total =
			1 + rng_below(rng_below(2) ? (cap && cap < 4096 ? 20000 : 300000) : 64);
		size_t chunk = 1 + (size_t)rng_below(rng_below(2) ? 70000 : 16);

		make_pair(cap, 0, &a, &b);
		ctx_set("round %d capacity %zu", round, cap);
		check_stream(a, b, total, chunk, round & 1);
		/* and the other way on the same pair */
		check_stream(b, a, total / 2 + 1, chunk, !(round & 1));
		dt_transport_free(a);
		dt_transport_free(b);
	}
}

static void test_large_64m(void **state)
{
	struct dt_transport *a, *b;

	make_pair(0, 0, &a, &b);
	check_stream(a, b, 64ull << 20, 1u << 20, false);
	check_stream(a, b, 16ull << 20, 256u << 10, true);
	dt_transport_free(a);
	dt_transport_free(b);
}

static void test_sendv_many_iovecs(void **state)
{
	enum { NIOV = 3000 };
	struct iovec *iov = calloc(NIOV, sizeof(*iov));
	uint8_t *buf = malloc(NIOV * 300);
	uint64_t salt = rng_next(), total = 0;
	struct dt_transport *a, *b;
	struct reader r;

	assert_non_null(iov);
	assert_non_null(buf);
	for (int i = 0; i < NIOV; i++) {
		size_t n = rng_below(4) ? rng_below(300) : 0;

		iov[i].iov_base = n ? buf + total : NULL; /* an empty entry may be NULL */
		iov[i].iov_len = n;
		total += n;
	}
	pattern_fill(buf, salt, 0, total);
	make_pair(1000, 0, &a, &b); /* the ring fills many times during one call */
	reader_start(&r, b, total, salt, 777);
	EXPECT_EQ(dt_transport_sendv(a, iov, NIOV), 0);
	reader_join(&r);
	EXPECT_EQ(r.ret, 0);
	EXPECT_EQ(r.bad_at, UINT64_MAX);
	EXPECT_EQ(dt_transport_bytes_sent(a), total);
	EXPECT_EQ(dt_transport_bytes_received(b), total);
	dt_transport_free(a);
	dt_transport_free(b);
	free(buf);
	free(iov);
}

static void test_timeout(void **state)
{
	struct dt_transport *a, *b;
	uint8_t buf[64] = {0};
	uint64_t t0;

	make_pair(16, 0, &a, &b);
	assert_int_equal(dt_transport_set_timeout(b, 100), 0);
	t0 = now_ms();
	EXPECT_EQ(dt_transport_recv(b, buf, 1), (uint64_t)-ETIMEDOUT);
	EXPECT_TRUE(now_ms() - t0 >= 95 && now_ms() - t0 < 5000);

	/* a send that does not fit waits for room, then times out having moved what fit */
	assert_int_equal(dt_transport_set_timeout(a, 100), 0);
	t0 = now_ms();
	EXPECT_EQ(dt_transport_send(a, buf, 40), (uint64_t)-ETIMEDOUT);
	EXPECT_TRUE(now_ms() - t0 >= 95 && now_ms() - t0 < 5000);
	EXPECT_EQ(dt_transport_bytes_sent(a), 16);

	/* a partial receive times out too, counting its prefix */
	EXPECT_EQ(dt_transport_recv(b, buf, 20), (uint64_t)-ETIMEDOUT);
	EXPECT_EQ(dt_transport_bytes_received(b), 16);

	/* timeout 0: an immediate answer */
	assert_int_equal(dt_transport_set_timeout(b, 0), 0);
	EXPECT_EQ(dt_transport_recv(b, buf, 1), (uint64_t)-ETIMEDOUT);
	assert_int_equal(dt_transport_set_timeout(b, -1), 0);
	assert_int_equal(dt_transport_send(a, "xy", 2), 0);
	assert_int_equal(dt_transport_recv(b, buf, 2), 0);
	assert_memory_equal(buf, "xy", 2);
	dt_transport_free(a);
	dt_transport_free(b);
}

static void test_peer_freed(void **state)
{
	struct dt_transport *a, *b;
	uint8_t buf[32];

	make_pair(0, 0, &a, &b);
	assert_int_equal(dt_transport_send(a, "0123456789", 10), 0);
	dt_transport_free(a);
	/* what was sent before the close is still delivered, then the end of stream is an error */
	assert_int_equal(dt_transport_recv(b, buf, 4), 0);
	assert_memory_equal(buf, "0123", 4);
	EXPECT_EQ(dt_transport_recv(b, buf, 20), (uint64_t)-ECONNRESET);
	assert_memory_equal(buf, "456789", 6);
	EXPECT_EQ(dt_transport_bytes_received(b), 10);
	EXPECT_EQ(dt_transport_recv(b, buf, 1), (uint64_t)-ECONNRESET);
	EXPECT_EQ(dt_transport_send(b, buf, 1), (uint64_t)-EPIPE);
	EXPECT_EQ(dt_transport_bytes_sent(b), 0);
	dt_transport_free(b);
}

static void test_shutdown_wakes(void **state)
{
	static const uint8_t zeros[64];
	struct dt_transport *a, *b;
	uint8_t byte = 0;

	for (int variant = 0; variant < 4; variant++) {
		bool send = variant >= 2, same_end = variant & 1;

		ctx_set("blocked %s, shutdown on the %s end", send ? "send" : "recv",
			same_end ? "same" : "other");
		make_pair(64, 0, &a, &b);
		if (send) /* fill the ring so the next send blocks */
			assert_int_equal(dt_transport_send(a, zeros, sizeof(zeros)), 0);
		check_shutdown_wakes(send ? a : b, same_end ? (send ? a : b) : (send ? b : a), send,
				     10, send ? -EPIPE : -ECONNRESET);
		/* As a socket's shutdown(SHUT_RDWR): the shut end fails at once; its peer still
		 * gets what the shut end sent before (the 64 bytes), then the end of stream. */
		{
			struct dt_transport *shut = same_end ? (send ? a : b) : (send ? b : a);
			struct dt_transport *peer = shut == a ? b : a;
			uint8_t got[64];

			EXPECT_EQ(dt_transport_recv(shut, &byte, 1), (uint64_t)-ECONNRESET);
			EXPECT_EQ(dt_transport_send(shut, &byte, 1), (uint64_t)-EPIPE);
			EXPECT_EQ(dt_transport_send(peer, &byte, 1), (uint64_t)-EPIPE);
			if (send && shut == a)
				EXPECT_EQ(dt_transport_recv(peer, got, sizeof(got)), 0);
			EXPECT_EQ(dt_transport_recv(peer, &byte, 1), (uint64_t)-ECONNRESET);
		}
		dt_transport_shutdown(a); /* again: harmless */
		dt_transport_free(a);
		dt_transport_free(b);
	}
}

/* fail_after_bytes: exactly that many bytes go through (over both directions), every one can
 * be received, then sends fail with -EPIPE and receives with -ECONNRESET on both ends. */
static void test_fail_after_bytes(void **state)
{
	for (int round = 0; round < 20; round++) {
		uint64_t limit = 1 + rng_below(round < 10 ? 5000 : 3u << 20);
		uint64_t salt = rng_next(), off = 0;
		struct dt_transport *a, *b;
		uint8_t *buf = malloc(70000);
		struct reader r;
		int ret = 0;

		assert_non_null(buf);
		ctx_set("round %d, fail after %llu bytes", round, (unsigned long long)limit);
		make_pair(round & 1 ? 1000 : 0, limit, &a, &b);
		/* the reader asks for more than will come: it gets every byte, then the error */
		reader_start(&r, b, limit + 1, salt, 4096);
		while (!ret) {
			size_t n = 1 + rng_below(70000);

			pattern_fill(buf, salt, off, n);
			ret = dt_transport_send(a, buf, n);
			off += n;
		}
		reader_join(&r);
		EXPECT_EQ(ret, (uint64_t)-EPIPE);
		EXPECT_EQ(dt_transport_bytes_sent(a), limit);
		EXPECT_EQ(r.ret, (uint64_t)-ECONNRESET);
		EXPECT_EQ(r.bad_at, UINT64_MAX);
		EXPECT_EQ(dt_transport_bytes_received(b), limit);
		EXPECT_EQ(dt_transport_send(a, buf, 1), (uint64_t)-EPIPE);
		EXPECT_EQ(dt_transport_send(b, buf, 1), (uint64_t)-EPIPE);
		EXPECT_EQ(dt_transport_recv(a, buf, 1), (uint64_t)-ECONNRESET);
		EXPECT_EQ(dt_transport_bytes_sent(a), limit);
		dt_transport_free(a);
		dt_transport_free(b);
		free(buf);
	}
}

/* The limit counts both directions together. */
static void test_fail_after_both_ways(void **state)
{
	struct dt_transport *a, *b;
	uint8_t buf[100] = {0};

	make_pair(0, 150, &a, &b);
	assert_int_equal(dt_transport_send(a, buf, 100), 0);
	EXPECT_EQ(dt_transport_send(b, buf, 100), (uint64_t)-EPIPE);
	EXPECT_EQ(dt_transport_bytes_sent(b), 50);
	assert_int_equal(dt_transport_recv(a, buf, 50), 0);
	assert_int_equal(dt_transport_recv(b, buf, 100), 0);
	EXPECT_EQ(dt_transport_recv(b, buf, 1), (uint64_t)-ECONNRESET);
	dt_transport_free(a);
	dt_transport_free(b);
}

static void test_bad_arguments(void **state)
{
	struct dt_transport_pair_opts o = {.size = sizeof(o) - 1};
	struct dt_transport *a = (void *)1, *b = (void *)1;
	struct iovec iov[2] = {{.iov_base = NULL, .iov_len = 0}, {.iov_base = NULL, .iov_len = 1}};
	uint8_t byte;

	EXPECT_EQ(dt_transport_pair(NULL, NULL, &b), (uint64_t)-EINVAL);
	EXPECT_EQ(dt_transport_pair(NULL, &a, NULL), (uint64_t)-EINVAL);
	EXPECT_EQ(dt_transport_pair(&o, &a, &b), (uint64_t)-EINVAL);
	EXPECT_TRUE(a == NULL && b == NULL);
	assert_int_equal(dt_transport_pair(NULL, &a, &b), 0); /* NULL opts: the defaults */

	EXPECT_EQ(dt_transport_send(NULL, &byte, 1), (uint64_t)-EINVAL);
	EXPECT_EQ(dt_transport_send(a, NULL, 1), (uint64_t)-EINVAL);
	EXPECT_EQ(dt_transport_send(a, NULL, 0), 0);
	EXPECT_EQ(dt_transport_send(a, &byte, 0), 0);
	EXPECT_EQ(dt_transport_recv(NULL, &byte, 1), (uint64_t)-EINVAL);
	EXPECT_EQ(dt_transport_recv(b, NULL, 1), (uint64_t)-EINVAL);
	EXPECT_EQ(dt_transport_recv(b, NULL, 0), 0);
	EXPECT_EQ(dt_transport_sendv(NULL, iov, 1), (uint64_t)-EINVAL);
	EXPECT_EQ(dt_transport_sendv(a, NULL, 1), (uint64_t)-EINVAL);
	EXPECT_EQ(dt_transport_sendv(a, iov, -1), (uint64_t)-EINVAL);
	EXPECT_EQ(dt_transport_sendv(a, iov, 2), (uint64_t)-EINVAL); /* NULL base, length 1 */
	EXPECT_EQ(dt_transport_sendv(a, iov, 1), 0);
	EXPECT_EQ(dt_transport_sendv(a, NULL, 0), 0);
	iov[0] = (struct iovec){.iov_base = &byte, .iov_len = SIZE_MAX};
	iov[1] = (struct iovec){.iov_base = &byte, .iov_len = 2};
	EXPECT_EQ(dt_transport_sendv(a, iov, 2), (uint64_t)-EINVAL); /* total overflows */
	EXPECT_EQ(dt_transport_set_timeout(NULL, 1), (uint64_t)-EINVAL);
	EXPECT_EQ(dt_transport_set_timeout(a, -2), (uint64_t)-EINVAL);
	EXPECT_EQ(dt_transport_bytes_sent(NULL), 0);
	EXPECT_EQ(dt_transport_bytes_received(NULL), 0);
	EXPECT_EQ(dt_transport_bytes_sent(a), 0); /* nothing moved by the refused calls */
	dt_transport_shutdown(NULL);
	dt_transport_free(NULL);
	dt_transport_free(a);
	dt_transport_free(b);
}

/* Each allocation of dt_transport_pair failing in turn: -ENOMEM, nothing leaked (ASan). */
static void test_alloc_failure(void **state)
{
	struct dt_transport *a, *b;
	unsigned long n;
	int ret;

	for (n = 1;; n++) {
		alloc_fail_nth(n);
		ret = dt_transport_pair(NULL, &a, &b);
		if (alloc_fail_nth(0) < n) { /* fewer allocations than n: the injection never hit */
			assert_int_equal(ret, 0);
			dt_transport_free(a);
			dt_transport_free(b);
			break;
		}
		ctx_set("allocation %lu fails", n);
		EXPECT_EQ(ret, (uint64_t)-ENOMEM);
		EXPECT_TRUE(a == NULL && b == NULL);
	}
	EXPECT_TRUE(n > 3); /* two ends, the shared part and two rings */
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_random),
		cmocka_unit_test(test_large_64m),
		cmocka_unit_test(test_sendv_many_iovecs),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_peer_freed),
		cmocka_unit_test(test_shutdown_wakes),
		cmocka_unit_test(test_fail_after_bytes),
		cmocka_unit_test(test_fail_after_both_ways),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_alloc_failure),
	};

	test_seed_init(argc, argv);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
