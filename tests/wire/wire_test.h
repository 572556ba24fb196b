/* SPDX-License-Identifier: MIT */
/*
 * tests/wire/wire_test.h - helpers shared by the wire tests: a seeded generator (the seed is
 * printed; WIRE_SEED=n replays it), a log capture to tell refusals apart by their message,
 * and decoding of one whole record held in memory through an exactly sized heap copy of its
 * payload (so ASan sees any read past the payload).
 */
#ifndef TESTS_WIRE_TEST_H
#define TESTS_WIRE_TEST_H

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dirtytrack/log.h>

#include "migrate/wire.h"

#define PS 4096u

/* ---- a seeded generator ---- */

static uint64_t rng_state;

static inline uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline uint64_t rng_below(uint64_t n)
{
	return n ? rng_next() % n : 0;
}

static inline uint64_t rng_seed(const char *test)
{
	const char *env = getenv("WIRE_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)clock();

	rng_state = seed;
	fprintf(stderr, "%s: seed %" PRIu64 " (WIRE_SEED=%" PRIu64 " replays it)\n", test, seed,
		seed);
	return seed;
}

/* Bytes that compress (a repeated pattern) or not (random), or a mix. */
static inline void rng_fill(uint8_t *p, size_t len, unsigned kind)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = kind == 0	 ? rng_next()
			     : kind == 1 ? 0x0101010101010101ull * (i / 512 % 7 + 1)
					 : (i / 64 % 3 ? 0 : rng_next());
		size_t n = len - i < 8 ? len - i : 8;

		memcpy(p + i, &v, n);
	}
}

/* ---- log capture ---- */

static char log_last[512];
static unsigned log_count;

static inline void log_capture(void *opaque, enum dt_log_level level, const char *msg)
{
	(void)opaque;
	(void)level;
	snprintf(log_last, sizeof(log_last), "%s", msg);
	log_count++;
}

static inline void log_start(void)
{
	log_last[0] = '\0';
	log_count = 0;
	dt_set_log(log_capture, NULL, DT_LOG_DEBUG);
}

/* ---- decoding a record in memory ---- */

/* The payload copy of the last decode_record(): views into it stay valid until the next. */
static uint8_t *decode_copy;

/* Decode the record at rec (len bytes in all): header, then the payload from an exact copy. */
static inline int decode_record(const void *rec, size_t len, struct wire_msg *m,
				struct wire_scratch *s)
{
	uint16_t type, flags;
	uint32_t plen;
	int ret;

	free(decode_copy);
	decode_copy = NULL;
	if (len < WIRE_HDR_LEN)
		return -EMSGSIZE;
	ret = wire_decode_header(rec, 0, &type, &flags, &plen);
	if (ret)
		return ret;
	if (plen != len - WIRE_HDR_LEN) {
		fprintf(stderr, "record header says %u payload bytes, %zu given\n", plen,
			len - WIRE_HDR_LEN);
		return -EMSGSIZE;
	}
	decode_copy = malloc(plen ? plen : 1);
	if (!decode_copy)
		return -ENOMEM;
	memcpy(decode_copy, (const uint8_t *)rec + WIRE_HDR_LEN, plen);
	return wire_decode(type, flags, decode_copy, plen, m, s);
}

/* Expect -EPROTO and a log line holding `why`; print both sides otherwise. */
#define expect_proto(expr, why)                                                                    \
	do {                                                                                       \
		int ret_ = (expr);                                                                 \
		if (ret_ != -EPROTO || !strstr(log_last, (why))) {                                 \
			fprintf(stderr,                                                            \
				"%s:%d: %s\n  expected -EPROTO (%d) and a log line with \"%s\"\n"  \
				"  seen %d and \"%s\"\n",                                          \
				__FILE__, __LINE__, #expr, -EPROTO, (why), ret_, log_last);        \
			fail();                                                                    \
		}                                                                                  \
		log_last[0] = '\0';                                                                \
	} while (0)

#endif
