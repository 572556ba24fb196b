/* SPDX-License-Identifier: MIT */
/*
 * tests/wire/test_wire_codec.c - the pure codec: every record type through wire_encode()
 * and back through wire_decode() field for field, then every bound and malformation of
 * docs/wire-format.md refused as -EPROTO with the log line that names it (truncation, a
 * length past the type's bound, runs past 16 MiB, runs that do not add up, a flipped bit in
 * the runs or the data, reserved fields, unknown types and flags, bad magic, wrong version,
 * decompression past the declared size). Compressed records are crafted here with zstd
 * directly, so the decoder is not only tested against our own writer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <xxhash.h>
#include <zstd.h>

#include "wire_test.h"

static struct wire_scratch scratch;
static uint8_t rec[1 << 20];

static int setup(void **state)
{
	(void)state;
	log_start();
	assert_int_equal(wire_scratch_init(&scratch), 0);
	scratch.page_size = PS;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	wire_scratch_fini(&scratch);
	free(decode_copy);
	decode_copy = NULL;
	return 0;
}

static size_t encode(const struct wire_msg *m)
{
	int64_t n = wire_encode(m, PS, rec, sizeof(rec));

	assert_true(n >= WIRE_HDR_LEN);
	assert_int_equal((uint64_t)n, wire_encoded_len(m, PS));
	return (size_t)n;
}

/* Rewrite the header's length to new_len - 8 and decode the first new_len bytes. */
static int decode_as(size_t new_len, struct wire_msg *m)
{
	wire_put_le32(rec + 4, (uint32_t)(new_len - WIRE_HDR_LEN));
	return decode_record(rec, new_len, m, &scratch);
}

/* ---- round trips ---- */

static void test_roundtrip_small(void **state)
{
	struct wire_region regions[3] = {{0, 16 * PS}, {0x100000, PS}, {0xfffff000ull << 12, PS}};
	struct wire_msg in, out;

	(void)state;
	in = (struct wire_msg){.type = WIRE_HELLO, .hello = {WIRE_VERSION, WIRE_F_ALL | 0x80, PS}};
	assert_int_equal(decode_record(rec, encode(&in), &out, &scratch), 0);
	assert_int_equal(out.type, WIRE_HELLO);
	assert_int_equal(out.hello.version, WIRE_VERSION);
	assert_int_equal(out.hello.features, WIRE_F_ALL | 0x80); /* unknown bits pass */
	assert_int_equal(out.hello.page_size, PS);
	assert_memory_equal(rec + 8, "DTMIGR01", 8);

	in = (struct wire_msg){.type = WIRE_LAYOUT, .layout = {regions, 3}};
	assert_int_equal(decode_record(rec, encode(&in), &out, &scratch), 0);
	assert_int_equal(out.layout.count, 3);
	assert_memory_equal(out.layout.regions, regions, sizeof(regions));

	in = (struct wire_msg){.type = WIRE_ROUND, .round = {7, 123456789012ull}};
	assert_int_equal(decode_record(rec, encode(&in), &out, &scratch), 0);
	assert_int_equal(out.round.round, 7);
	assert_int_equal(out.round.pages, 123456789012ull);

	in = (struct wire_msg){.type = WIRE_END, .end = {99, 0xfeedfacecafebeefull, 3}};
	assert_int_equal(decode_record(rec, encode(&in), &out, &scratch), 0);
	assert_int_equal(out.end.pages, 99);
	assert_int_equal(out.end.digest, 0xfeedfacecafebeefull);
	assert_int_equal(out.end.ndevices, 3);

	for (int status = 0; status >= -4095; status -= 4095) {
		in = (struct wire_msg){.type = WIRE_ACK, .ack = {status, 0x0123456789abcdefull}};
		assert_int_equal(decode_record(rec, encode(&in), &out, &scratch), 0);
		assert_int_equal(out.ack.status, status);
		assert_int_equal(out.ack.digest, 0x0123456789abcdefull);
	}

	for (uint16_t t = WIRE_PING; t <= WIRE_PONG; t++) {
		in = (struct wire_msg){.type = t, .ping = ~0ull - t};
		assert_int_equal(decode_record(rec, encode(&in), &out, &scratch), 0);
		assert_int_equal(out.type, t);
		assert_int_equal(out.ping, ~0ull - t);
	}

	in = (struct wire_msg){.type = WIRE_ERROR, .error = {-EPROTO, "digest mismatch"}};
	assert_int_equal(decode_record(rec, encode(&in), &out, &scratch), 0);
	assert_int_equal(out.error.err, -EPROTO);
	assert_string_equal(out.error.msg, "digest mismatch");
	in.error.msg = "";
	assert_int_equal(decode_record(rec, encode(&in), &out, &scratch), 0);
	assert_string_equal(out.error.msg, "");
}

static void test_roundtrip_pages_device(void **state)
{
	struct wire_run runs[4] = {{10, 2, 0},
				   {12, 3, WIRE_RUN_ZERO},
				   {100, 1, 0},
				   {(UINT64_MAX / PS) - 4, 5, WIRE_RUN_ZERO}};
	static uint8_t data[3 * PS], st[1000];
	struct wire_msg in, out;

	(void)state;
	rng_state = 1;
	rng_fill(data, sizeof(data), 0);
	rng_fill(st, sizeof(st), 0);
	for (uint16_t flags = 0; flags <= WIRE_RF_XXH3; flags += WIRE_RF_XXH3) {
		scratch.features = flags ? WIRE_F_ALL : 0;
		in = (struct wire_msg){.type = WIRE_PAGES, .flags = flags};
		in.pages = (struct wire_pages){
			.runs = runs, .nruns = 4, .data_len = sizeof(data), .data = data};
		assert_int_equal(decode_record(rec, encode(&in), &out, &scratch), 0);
		assert_int_equal(out.pages.nruns, 4);
		assert_memory_equal(out.pages.runs, runs, sizeof(runs));
		assert_int_equal(out.pages.data_len, sizeof(data));
		assert_memory_equal(out.pages.data, data, sizeof(data));
		assert_int_equal(out.pages.pages, 11);
		assert_int_equal(out.pages.zero_pages, 8);

		in = (struct wire_msg){.type = WIRE_DEVICE, .flags = flags};
		in.device = (struct wire_device){"virtio-net@0000:00:03.0", st, sizeof(st)};
		assert_int_equal(decode_record(rec, encode(&in), &out, &scratch), 0);
		assert_string_equal(out.device.name, in.device.name);
		assert_int_equal(out.device.state_len, sizeof(st));
		assert_memory_equal(out.device.state, st, sizeof(st));
		in.device = (struct wire_device){"d", NULL, 0};
		assert_int_equal(decode_record(rec, encode(&in), &out, &scratch), 0);
		assert_string_equal(out.device.name, "d");
		assert_int_equal(out.device.state_len, 0);
	}
	/* A batch of ZERO runs only carries no data at all. */
	in = (struct wire_msg){.type = WIRE_PAGES, .flags = WIRE_RF_XXH3};
	in.pages = (struct wire_pages){.runs = &runs[1], .nruns = 1};
	assert_int_equal(encode(&in), 8 + 16 + 16);
	assert_int_equal(decode_record(rec, 40, &out, &scratch), 0);
	assert_int_equal(out.pages.zero_pages, 3);
}

static void test_encode_refuses(void **state)
{
	struct wire_run run = {0, 1, 0}, bad = {0, 0, 0};
	char name[80];
	uint8_t page[PS] = {1};
	struct wire_msg m = {.type = WIRE_PAGES};

	(void)state;
	m.pages = (struct wire_pages){&run, 1, PS, page, 0, 0};
	assert_int_equal(wire_encode(&m, PS, rec, 8 + 16 + 16 + PS - 1), -ENOSPC);
	assert_int_equal(wire_encode(&m, 3000, rec, sizeof(rec)), -EINVAL); /* page size */
	m.pages.data_len = 2 * PS;
	assert_int_equal(wire_encode(&m, PS, rec, sizeof(rec)), -EINVAL); /* does not add up */
	m.pages = (struct wire_pages){&bad, 1, 0, NULL, 0, 0};
	assert_int_equal(wire_encode(&m, PS, rec, sizeof(rec)), -EINVAL); /* empty run */
	m.pages = (struct wire_pages){&run, 1, PS, page, 0, 0};
	m.flags = WIRE_RF_ZSTD;
	assert_int_equal(wire_encode(&m, PS, rec, sizeof(rec)), -EINVAL);
	memset(name, 'n', sizeof(name));
	name[64] = '\0';
	m = (struct wire_msg){.type = WIRE_DEVICE, .device = {name, NULL, 0}};
	assert_int_equal(wire_encode(&m, PS, rec, sizeof(rec)), -EINVAL); /* 64-byte name */
	name[63] = '\0';
	assert_true(wire_encode(&m, PS, rec, sizeof(rec)) > 0);
	m = (struct wire_msg){.type = 99};
	assert_int_equal(wire_encode(&m, PS, rec, sizeof(rec)), -EINVAL);
	m = (struct wire_msg){.type = WIRE_ROUND, .flags = 1};
	assert_int_equal(wire_encode(&m, PS, rec, sizeof(rec)), -EINVAL);
}

/* ---- refusals: framing and fixed records ---- */

static void test_refuse_header(void **state)
{
	struct wire_msg m = {.type = WIRE_PING};
	uint16_t type, flags;
	uint32_t len;

	(void)state;
	encode(&m);
	wire_put_le16(rec, 0);
	expect_proto(wire_decode_header(rec, 0, &type, &flags, &len), "unknown record type");
	wire_put_le16(rec, 11);
	expect_proto(wire_decode_header(rec, 0, &type, &flags, &len), "unknown record type");
	expect_proto(wire_decode(0xffff, 0, rec + 8, 8, &m, &scratch), "unknown record type");
	for (uint16_t t = WIRE_HELLO; t <= WIRE_ERROR; t++) {
		uint32_t max = wire_type_max_payload(t);

		wire_encode_header(rec, t, 0, max);
		assert_int_equal(wire_decode_header(rec, 0, &type, &flags, &len), 0);
		assert_int_equal(len, max);
		wire_encode_header(rec, t, 0, max + 1);
		expect_proto(wire_decode_header(rec, 0, &type, &flags, &len), "at most");
		wire_encode_header(rec, t, 0, max);
		expect_proto(wire_decode_header(rec, max - 1, &type, &flags, &len),
			     "reader's limit");
	}
	/* Record flags on a type that takes none, unknown flags on PAGES. */
	m = (struct wire_msg){.type = WIRE_ROUND};
	encode(&m);
	wire_put_le16(rec + 2, WIRE_RF_XXH3);
	expect_proto(decode_record(rec, 8 + 16, &m, &scratch), "unknown record flags");
	expect_proto(wire_decode(WIRE_PAGES, 4, rec + 8, 16, &m, &scratch), "unknown record flags");
}

static void test_refuse_fixed(void **state)
{
	static const struct {
		struct wire_msg m;
		size_t reserved;    /* offset of a reserved field in the record, 0: none */
		const char *longer; /* why one byte more is refused */
	} cases[] = {
		/* HELLO may be longer in later versions: its bound is not its size. */
		{{.type = WIRE_HELLO, .hello = {WIRE_VERSION, 0, PS}}, 8 + 20, "too long"},
		{{.type = WIRE_ROUND, .round = {1, 2}}, 8 + 4, "at most 16"},
		{{.type = WIRE_END, .end = {1, 2, 3}}, 8 + 20, "at most 24"},
		{{.type = WIRE_ACK, .ack = {0, 2}}, 8 + 4, "at most 16"},
		{{.type = WIRE_PING, .ping = 1}, 0, "at most 8"},
		{{.type = WIRE_PONG, .ping = 1}, 0, "at most 8"},
	};
	struct wire_msg m;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = encode(&cases[i].m);

		assert_int_equal(decode_as(n, &m), 0);
		expect_proto(decode_as(n - 1, &m), "truncated");
		expect_proto(decode_as(n + 1, &m), cases[i].longer);
		expect_proto(decode_as(WIRE_HDR_LEN, &m), "truncated");
		if (cases[i].reserved) {
			n = encode(&cases[i].m);
			rec[cases[i].reserved + 3] = 0x80;
			expect_proto(decode_record(rec, n, &m, &scratch), "reserved field");
		}
	}
}

static void test_refuse_hello(void **state)
{
	struct wire_msg m = {.type = WIRE_HELLO, .hello = {WIRE_VERSION, WIRE_F_ALL, PS}};
	static const uint32_t bad_ps[] = {0, 256, 3 * 1024, 4 << 20, 0x80000000u};
	size_t n;

	(void)state;
	n = encode(&m);
	rec[8] ^= 1;
	expect_proto(decode_record(rec, n, &m, &scratch), "bad magic");
	/* Version 1 (the digest before it was a sum of page terms): refused, not misread. */
	m = (struct wire_msg){.type = WIRE_HELLO, .hello = {1, WIRE_F_ALL, PS}};
	n = encode(&m);
	expect_proto(decode_record(rec, n, &m, &scratch),
		     "the peer speaks wire version 1, this build speaks version 2");
	m = (struct wire_msg){.type = WIRE_HELLO, .hello = {3, WIRE_F_ALL, PS}};
	n = encode(&m);
	expect_proto(decode_record(rec, n, &m, &scratch), "version mismatch");
	/* A version 3 HELLO may be longer: the version is still what is reported. */
	expect_proto(decode_as(n + 8, &m), "the peer speaks wire version 3");
	m = (struct wire_msg){.type = WIRE_HELLO, .hello = {0, WIRE_F_ALL, PS}};
	expect_proto(decode_record(rec, encode(&m), &m, &scratch), "version mismatch");
	for (size_t i = 0; i < sizeof(bad_ps) / sizeof(bad_ps[0]); i++) {
		m = (struct wire_msg){.type = WIRE_HELLO, .hello = {WIRE_VERSION, 0, bad_ps[i]}};
		expect_proto(decode_record(rec, encode(&m), &m, &scratch), "page size");
	}
}

static void test_refuse_layout(void **state)
{
	static const struct {
		struct wire_region r[2];
		const char *why;
	} cases[] = {
		{{{0, PS}, {0, PS}}, "overlaps or precedes"},
		{{{PS, PS}, {0, PS}}, "overlaps or precedes"},
		{{{0, 2 * PS}, {PS, PS}}, "overlaps or precedes"},
		{{{0, PS}, {PS + 512, PS}}, "page multiple"},
		{{{0, PS}, {2 * PS, PS + 1}}, "page multiple"},
		{{{0, PS}, {2 * PS, 0}}, "page multiple"},
		{{{0, PS}, {0ull - PS, 2 * PS}}, "wraps"},
	};
	static struct wire_region many[WIRE_MAX_REGIONS + 1];
	struct wire_msg m;
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		m = (struct wire_msg){.type = WIRE_LAYOUT, .layout = {cases[i].r, 2}};
		expect_proto(decode_record(rec, encode(&m), &m, &scratch), cases[i].why);
	}
	/* The last page of the address space is a valid region. */
	m = (struct wire_msg){.type = WIRE_LAYOUT,
			      .layout = {&(struct wire_region){0ull - PS, PS}, 1}};
	assert_int_equal(decode_record(rec, encode(&m), &m, &scratch), 0);

	for (uint32_t i = 0; i <= WIRE_MAX_REGIONS; i++)
		many[i] = (struct wire_region){(uint64_t)i * 2 * PS, PS};
	m = (struct wire_msg){.type = WIRE_LAYOUT, .layout = {many, WIRE_MAX_REGIONS}};
	n = encode(&m);
	assert_int_equal(decode_record(rec, n, &m, &scratch), 0);
	assert_int_equal(m.layout.count, WIRE_MAX_REGIONS);
	wire_put_le32(rec + 8, WIRE_MAX_REGIONS + 1);
	expect_proto(decode_record(rec, n, &m, &scratch), "regions, expected 1 to 4096");
	wire_put_le32(rec + 8, 0);
	expect_proto(decode_record(rec, n, &m, &scratch), "regions, expected 1 to 4096");
	wire_put_le32(rec + 8, WIRE_MAX_REGIONS - 1);
	expect_proto(decode_record(rec, n, &m, &scratch), "too long");
	wire_put_le32(rec + 8, WIRE_MAX_REGIONS);
	expect_proto(decode_as(n - 1, &m), "truncated");
	n = encode(&(struct wire_msg){.type = WIRE_LAYOUT, .layout = {many, 1}});
	rec[8 + 7] = 1;
	expect_proto(decode_record(rec, n, &m, &scratch), "reserved field");
	rec[8 + 7] = 0;
	scratch.page_size = 0;
	expect_proto(decode_record(rec, n, &m, &scratch), "before HELLO");
	scratch.page_size = PS;
}

static void test_refuse_ack_error(void **state)
{
	struct wire_msg m = {.type = WIRE_ACK, .ack = {1, 0}};
	char longmsg[WIRE_MAX_ERROR_MSG + 1];
	size_t n;

	(void)state;
	expect_proto(decode_record(rec, encode(&m), &m, &scratch), "neither 0 nor");
	m = (struct wire_msg){.type = WIRE_ACK, .ack = {-4096, 0}};
	expect_proto(decode_record(rec, encode(&m), &m, &scratch), "neither 0 nor");
	m = (struct wire_msg){.type = WIRE_ERROR, .error = {0, "x"}};
	expect_proto(decode_record(rec, encode(&m), &m, &scratch), "errno 0");
	m = (struct wire_msg){.type = WIRE_ERROR, .error = {EIO, "x"}};
	expect_proto(decode_record(rec, encode(&m), &m, &scratch), "errno 5");
	memset(longmsg, 'x', sizeof(longmsg));
	longmsg[WIRE_MAX_ERROR_MSG] = '\0';
	m = (struct wire_msg){.type = WIRE_ERROR, .error = {-EIO, longmsg}};
	n = encode(&m);
	assert_int_equal(decode_record(rec, n, &m, &scratch), 0);
	assert_int_equal(strlen(m.error.msg), WIRE_MAX_ERROR_MSG);
	wire_put_le32(rec + 12, WIRE_MAX_ERROR_MSG + 1);
	expect_proto(decode_as(n + 1, &m), "at most 263 for this type");
	expect_proto(wire_decode(WIRE_ERROR, 0, rec + 8, n - 8, &m, &scratch), "at most 255");
	wire_put_le32(rec + 12, WIRE_MAX_ERROR_MSG);
	expect_proto(decode_as(n - 1, &m), "truncated");
	wire_put_le32(rec + 4, (uint32_t)(n - WIRE_HDR_LEN));
	rec[20] = '\0';
	expect_proto(decode_record(rec, n, &m, &scratch), "NUL");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_small),
		cmocka_unit_test(test_roundtrip_pages_device),
		cmocka_unit_test(test_encode_refuses),
		cmocka_unit_test(test_refuse_header),
		cmocka_unit_test(test_refuse_fixed),
		cmocka_unit_test(test_refuse_hello),
		cmocka_unit_test(test_refuse_layout),
		cmocka_unit_test(test_refuse_ack_error),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
