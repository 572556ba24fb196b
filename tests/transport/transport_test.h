/* SPDX-License-Identifier: MIT */
/*
 * tests/transport/transport_test.h - what the transport tests share: a byte pattern that
 * depends on the stream offset (so a lost, doubled or reordered byte is caught at its
 * offset), a writer that sends a stream in random pieces (send or sendv with random,
 * sometimes empty iovecs), a reader thread that receives it in other random pieces and checks
 * every byte, timing, temporary directories and an open-fd count for leak checks.
 *
 * Include after <cmocka.h> and test_util.h (tests/core: seed, EXPECT_EQ).
 */
#ifndef DT_TESTS_TRANSPORT_TEST_H
#define DT_TESTS_TRANSPORT_TEST_H

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <dirtytrack/transport.h>

static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The byte at stream offset off of the stream named salt. */
static inline uint8_t pattern_byte(uint64_t salt, uint64_t off)
{
	return (uint8_t)(mix64((off >> 3) ^ salt) >> (8 * (off & 7)));
}

static inline void pattern_fill(uint8_t *p, uint64_t salt, uint64_t off, size_t n)
{
	size_t i = 0;

	for (; i < n && ((off + i) & 7); i++)
		p[i] = pattern_byte(salt, off + i);
	for (; i + 8 <= n; i += 8) {
		uint64_t w = mix64(((off + i) >> 3) ^ salt);

		memcpy(p + i, &w, 8); /* little endian, as pattern_byte */
	}
	for (; i < n; i++)
		p[i] = pattern_byte(salt, off + i);
}

/* The stream offset of the first wrong byte, or UINT64_MAX. */
static inline uint64_t pattern_check(const uint8_t *p, uint64_t salt, uint64_t off, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != pattern_byte(salt, off + i))
			return off + i;
	return UINT64_MAX;
}

static inline uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline uint64_t local_rng(uint64_t *state)
{
	return mix64(*state += 0x9e3779b97f4a7c15ull);
}

/* ---- the reader thread -------------------------------------------------------------------- */

struct reader {
	struct dt_transport *t;
	uint64_t total;	  /* bytes to receive */
	uint64_t salt;	  /* the stream's pattern */
	size_t max_chunk; /* recv sizes 1..max_chunk */
	uint64_t rng;	  /* the thread's own PRNG state */
	int ret;	  /* first error, or 0 */
	uint64_t got;	  /* bytes received and checked */
	uint64_t bad_at;  /* offset of the first wrong byte, or UINT64_MAX */
	pthread_t thread;
};

static inline void *reader_main(void *arg)
{
	struct reader *r = arg;
	uint8_t *buf = malloc(r->max_chunk);

	r->bad_at = UINT64_MAX;
	while (buf && r->got < r->total) {
		size_t n = 1 + local_rng(&r->rng) % r->max_chunk;

		if (n > r->total - r->got)
			n = (size_t)(r->total - r->got);
		r->ret = dt_transport_recv(r->t, buf, n);
		if (r->ret)
			break;
		r->bad_at = pattern_check(buf, r->salt, r->got, n);
		if (r->bad_at != UINT64_MAX) {
			dt_transport_shutdown(r->t); /* the writer must not wait for us forever */
			break;
		}
		r->got += n;
	}
	if (!buf)
		r->ret = -ENOMEM;
	free(buf);
	return NULL;
}

static inline void reader_start(struct reader *r, struct dt_transport *t, uint64_t total,
				uint64_t salt, size_t max_chunk)
{
	*r = (struct reader){.t = t, .total = total, .salt = salt, .max_chunk = max_chunk};
	r->rng = rng_next();
	assert_int_equal(pthread_create(&r->thread, NULL, reader_main, r), 0);
}

static inline void reader_join(struct reader *r)
{
	pthread_join(r->thread, NULL);
}

/* ---- the writer --------------------------------------------------------------------------- */

/*
 * Send total bytes of stream salt in pieces of 1..max_chunk; with sendv, each piece is split
 * into up to max_iov iovecs, some of them empty. Returns the first error or 0.
 */
static inline int write_stream(struct dt_transport *t, uint64_t total, uint64_t salt,
			       size_t max_chunk, bool use_sendv, int max_iov)
{
	uint8_t *buf = malloc(max_chunk);
	struct iovec *iov = calloc((size_t)max_iov, sizeof(*iov));
	uint64_t off = 0;
	int ret = 0;

	assert_non_null(buf);
	assert_non_null(iov);
	while (!ret && off < total) {
		size_t n = 1 + rng_below(max_chunk);

		if (n > total - off)
			n = (size_t)(total - off);
		pattern_fill(buf, salt, off, n);
		if (!use_sendv) {
			ret = dt_transport_send(t, buf, n);
		} else {
			int cnt = 0;
			size_t done = 0;

			while (done < n && cnt < max_iov) {
				size_t piece =
					cnt == max_iov - 1 ? n - done : rng_below(n - done + 1);

				if (rng_below(8) == 0)
					piece = 0; /* an empty entry in the middle */
				iov[cnt].iov_base = buf + done;
				iov[cnt].iov_len = piece;
				done += piece;
				cnt++;
			}
			if (done < n) /* ran out of entries: stretch the last one */
				iov[cnt - 1].iov_len += n - done;
			ret = dt_transport_sendv(t, iov, cnt);
		}
		off += n;
	}
	free(iov);
	free(buf);
	return ret;
}

/* Stream total bytes from a to b (reader thread on b) and check everything arrived. */
static inline void check_stream(struct dt_transport *a, struct dt_transport *b, uint64_t total,
				size_t max_chunk, bool use_sendv)
{
	uint64_t salt = rng_next();
	uint64_t sent0 = dt_transport_bytes_sent(a), recv0 = dt_transport_bytes_received(b);
	struct reader r;
	int ret;

	ctx_set("stream of %llu bytes, chunks up to %zu, %s", (unsigned long long)total, max_chunk,
		use_sendv ? "sendv" : "send");
	reader_start(&r, b, total, salt, max_chunk);
	ret = write_stream(a, total, salt, max_chunk, use_sendv, 16);
	reader_join(&r);
	EXPECT_EQ(ret, 0);
	EXPECT_EQ(r.ret, 0);
	EXPECT_EQ(r.bad_at, UINT64_MAX);
	EXPECT_EQ(r.got, total);
	EXPECT_EQ(dt_transport_bytes_sent(a) - sent0, total);
	EXPECT_EQ(dt_transport_bytes_received(b) - recv0, total);
}

/* ---- a call that blocks ------------------------------------------------------------------- */

struct blocked_call {
	struct dt_transport *t;
	bool send;
	size_t len;
	_Atomic int ret; /* 1 while the call has not returned */
	uint64_t returned_ms;
	pthread_t thread;
};

static inline void *blocked_main(void *arg)
{
	struct blocked_call *c = arg;
	uint8_t *buf = calloc(1, c->len);

	c->ret = c->send ? dt_transport_send(c->t, buf, c->len)
			 : dt_transport_recv(c->t, buf, c->len);
	c->returned_ms = now_ms();
	free(buf);
	return NULL;
}

/*
 * Start a send or recv of len bytes on `blocked` in a thread, check it is still blocked
 * 100 ms later, call dt_transport_shutdown(who) and check the call returns `expect` within
 * 2 s.
 */
static inline void check_shutdown_wakes(struct dt_transport *blocked, struct dt_transport *who,
					bool send, size_t len, int expect)
{
	/* on the heap: a call that never returns keeps it after the test failed */
	struct blocked_call *c = calloc(1, sizeof(*c));
	struct timespec limit;
	uint64_t t0;

	assert_non_null(c);
	*c = (struct blocked_call){.t = blocked, .send = send, .len = len, .ret = 1};
	assert_int_equal(pthread_create(&c->thread, NULL, blocked_main, c), 0);
	usleep(100 * 1000);
	EXPECT_EQ(c->ret, 1); /* still blocked */
	t0 = now_ms();
	dt_transport_shutdown(who);
	clock_gettime(CLOCK_REALTIME, &limit);
	limit.tv_sec += 10;
	if (pthread_timedjoin_np(c->thread, NULL, &limit)) {
		print_error("the blocked call did not return 10 s after shutdown\n");
		EXPECT_TRUE(!"woken");
	}
	EXPECT_EQ(c->ret, (uint64_t)expect);
	EXPECT_TRUE(c->returned_ms - t0 < 2000);
	free(c);
}

/* ---- the process ---------------------------------------------------------------------------- */

static inline int count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

#endif
