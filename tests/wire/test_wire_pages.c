/* SPDX-License-Identifier: MIT */
/*
 * tests/wire/test_wire_pages.c - PAGES and DEVICE records built by hand (header, run table,
 * checksum, raw or zstd data made here with libzstd) and every way they can be wrong:
 * truncation, run counts out of bounds, runs holding more than 16 MiB or not adding up to
 * the declared data, empty runs, runs past the address space, a flipped bit in the runs or
 * the data (seeded), checksums missing or unexpected, compression not negotiated, and
 * decompression bombs: frames expanding past the declared size fail as -EPROTO.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <xxhash.h>
#include <zstd.h>

#include "wire_test.h"

#define MiB	     (1u << 20)
#define REC_CAP	     (WIRE_HDR_LEN + WIRE_PAGES_FIXED + WIRE_MAX_RUNS * WIRE_RUN_LEN + 80 * MiB)
#define ZERO_R(f, n) ((struct wire_run){(f), (n), WIRE_RUN_ZERO})
#define DATA_R(f, n) ((struct wire_run){(f), (n), 0})

static struct wire_scratch scratch;
static uint8_t *rec, *plain, *packed;
static struct wire_run runs[WIRE_MAX_RUNS + 1];

static int setup(void **state)
{
	(void)state;
	log_start();
	rec = malloc(REC_CAP);
	plain = malloc(80 * MiB);
	packed = malloc(ZSTD_compressBound(80 * MiB));
	assert_non_null(rec);
	assert_non_null(plain);
	assert_non_null(packed);
	assert_int_equal(wire_scratch_init(&scratch), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	wire_scratch_fini(&scratch);
	free(rec);
	free(plain);
	free(packed);
	free(decode_copy);
	decode_copy = NULL;
	return 0;
}

static int reset(void **state)
{
	(void)state;
	scratch.page_size = PS;
	scratch.features = WIRE_F_ALL;
	return 0;
}

static uint64_t sum2(const void *a, size_t alen, const void *b, size_t blen)
{
	XXH3_state_t *st = XXH3_createState();
	uint64_t h;

	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, a, alen);
	XXH3_64bits_update(st, b, blen);
	h = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return h;
}

/*
 * A PAGES record: nruns runs from runs[], declared data_len; its data part is wire (wire_len
 * bytes: the plain data, or zstd frames); with WIRE_RF_XXH3 the checksum is computed over
 * the run table and plain_len bytes of plain. Returns the record length.
 */
static size_t pages_rec(uint16_t flags, uint32_t nruns, uint32_t data_len, const void *plain_,
			size_t plain_len, const void *wire, size_t wire_len)
{
	uint8_t *p = rec + WIRE_HDR_LEN;
	size_t table = (size_t)nruns * WIRE_RUN_LEN;

	wire_encode_header(rec, WIRE_PAGES, flags, (uint32_t)(WIRE_PAGES_FIXED + table + wire_len));
	wire_put_le32(p, nruns);
	wire_put_le32(p + 4, data_len);
	wire_encode_runs(p + WIRE_PAGES_FIXED, runs, nruns);
	wire_put_le64(p + 8, flags & WIRE_RF_XXH3
				     ? sum2(p + WIRE_PAGES_FIXED, table, plain_, plain_len)
				     : 0);
	if (wire_len)
		memmove(p + WIRE_PAGES_FIXED + table, wire, wire_len);
	return WIRE_HDR_LEN + WIRE_PAGES_FIXED + table + wire_len;
}

/* The same with raw data: data_len bytes of plain. */
static size_t raw_rec(uint16_t flags, uint32_t nruns, uint32_t data_len)
{
	return pages_rec(flags, nruns, data_len, plain, data_len, plain, data_len);
}

static size_t zstd_of(const void *src, size_t len)
{
	size_t n = ZSTD_compress(packed, ZSTD_compressBound(len), src, len, 1);

	assert_false(ZSTD_isError(n));
	return n;
}

static int dec(size_t len, struct wire_msg *m)
{
	return decode_record(rec, len, m, &scratch);
}

static void test_valid(void **state)
{
	struct wire_msg m;
	size_t n, z;

	(void)state;
	rng_state = 7;
	rng_fill(plain, 3 * PS, 2);
	runs[0] = DATA_R(5, 2);
	runs[1] = ZERO_R(7, 9);
	runs[2] = DATA_R(1000, 1);
	assert_int_equal(dec(raw_rec(WIRE_RF_XXH3, 3, 3 * PS), &m), 0);
	assert_int_equal(m.pages.pages, 12);
	assert_memory_equal(m.pages.data, plain, 3 * PS);

	z = zstd_of(plain, 3 * PS);
	n = pages_rec(WIRE_RF_XXH3 | WIRE_RF_ZSTD, 3, 3 * PS, plain, 3 * PS, packed, z);
	assert_int_equal(dec(n, &m), 0);
	assert_memory_equal(m.pages.data, plain, 3 * PS);
	/* Two concatenated frames are one data part. */
	z = zstd_of(plain, PS);
	z += ZSTD_compress(packed + z, ZSTD_compressBound(2 * PS), plain + PS, 2 * PS, 3);
	n = pages_rec(WIRE_RF_XXH3 | WIRE_RF_ZSTD, 3, 3 * PS, plain, 3 * PS, packed, z);
	assert_int_equal(dec(n, &m), 0);
	assert_memory_equal(m.pages.data, plain, 3 * PS);
}

static void test_bounds(void **state)
{
	struct wire_msg m;
	uint32_t i;

	(void)state;
	memset(plain, 0xa5, 17 * MiB);
	/* The largest batch: 65536 runs, 16 MiB of data. */
	for (i = 0; i < WIRE_MAX_RUNS; i++)
		runs[i] = i % 16 ? ZERO_R(2 * i, 1) : DATA_R(2 * i, 1);
	assert_int_equal(dec(raw_rec(WIRE_RF_XXH3, WIRE_MAX_RUNS, 16 * MiB), &m), 0);
	assert_int_equal(m.pages.nruns, WIRE_MAX_RUNS);
	assert_int_equal(m.pages.pages, WIRE_MAX_RUNS);
	assert_int_equal(m.pages.zero_pages, WIRE_MAX_RUNS - 4096);
	runs[WIRE_MAX_RUNS] = ZERO_R(1ull << 40, 1);
	expect_proto(dec(raw_rec(WIRE_RF_XXH3, WIRE_MAX_RUNS + 1, 16 * MiB), &m),
		     "at most"); /* past the type's bound: refused at the header */
	wire_put_le32(rec + 8, WIRE_MAX_RUNS + 1);
	expect_proto(wire_decode(WIRE_PAGES, WIRE_RF_XXH3, rec + 8, 16, &m, &scratch),
		     "65537 runs, expected 1 to 65536");
	runs[0] = ZERO_R(0, 1);
	expect_proto(dec(raw_rec(WIRE_RF_XXH3, 0, 0), &m), "0 runs, expected 1 to 65536");

	/* Runs holding more than 16 MiB: declared as such, or declared 16 MiB. */
	runs[0] = DATA_R(0, 4097);
	expect_proto(dec(pages_rec(WIRE_RF_XXH3, 1, 16 * MiB + PS, NULL, 0, NULL, 0), &m),
		     "16781312 data bytes declared, at most 16777216");
	expect_proto(dec(pages_rec(WIRE_RF_XXH3, 1, 16 * MiB, NULL, 0, NULL, 0), &m),
		     "hold more than the 16777216 data bytes declared");
	runs[0] = DATA_R(0, UINT32_MAX);
	expect_proto(dec(pages_rec(WIRE_RF_XXH3, 1, 16 * MiB, NULL, 0, NULL, 0), &m),
		     "hold more than");
	/* ZERO runs are not data: 4 Gi pages in one run is a valid batch. */
	runs[0] = ZERO_R(0, UINT32_MAX);
	assert_int_equal(dec(raw_rec(WIRE_RF_XXH3, 1, 0), &m), 0);
	assert_int_equal(m.pages.zero_pages, UINT32_MAX);
}

static void test_runs_add_up(void **state)
{
	struct wire_msg m;
	size_t n;

	(void)state;
	rng_fill(plain, 4 * PS, 0);
	runs[0] = DATA_R(0, 1);
	runs[1] = ZERO_R(1, 1);
	runs[2] = DATA_R(2, 2);
	expect_proto(dec(raw_rec(WIRE_RF_XXH3, 3, 4 * PS), &m),
		     "runs hold 12288 data bytes, the record declares 16384");
	expect_proto(dec(raw_rec(WIRE_RF_XXH3, 3, 2 * PS), &m), "hold more than");
	expect_proto(dec(raw_rec(WIRE_RF_XXH3, 3, 3 * PS - 1), &m), "hold more than");
	expect_proto(dec(raw_rec(WIRE_RF_XXH3, 3, 3 * PS + 8), &m), "the record declares");
	runs[0] = ZERO_R(0, 1);
	expect_proto(dec(raw_rec(WIRE_RF_XXH3, 1, 100), &m),
		     "runs hold 0 data bytes, the record declares 100");
	/* The data part one byte short or long of what the runs hold. */
	runs[0] = DATA_R(0, 1);
	n = pages_rec(WIRE_RF_XXH3, 1, PS, plain, PS, plain, PS - 1);
	expect_proto(dec(n, &m), "4095 data bytes, 4096 declared");
	n = pages_rec(WIRE_RF_XXH3, 1, PS, plain, PS, plain, PS + 1);
	expect_proto(dec(n, &m), "4097 data bytes, 4096 declared");
	/* The run table cut. */
	runs[1] = DATA_R(1, 1);
	n = raw_rec(WIRE_RF_XXH3, 2, 2 * PS);
	wire_put_le32(rec + 4, WIRE_PAGES_FIXED + WIRE_RUN_LEN + 8);
	expect_proto(dec(WIRE_HDR_LEN + WIRE_PAGES_FIXED + WIRE_RUN_LEN + 8, &m),
		     "truncated: 2 runs need 48 bytes, record has 40");
	wire_put_le32(rec + 4, 15);
	expect_proto(dec(WIRE_HDR_LEN + 15, &m), "truncated: 15 bytes");
	(void)n;
}

static void test_bad_runs(void **state)
{
	const uint64_t top = UINT64_MAX / PS; /* the last page index */
	struct wire_msg m;

	(void)state;
	rng_fill(plain, 2 * PS, 0);
	runs[0] = DATA_R(0, 0);
	expect_proto(dec(raw_rec(WIRE_RF_XXH3, 1, 0), &m), "run 0 is empty");
	runs[0] = DATA_R(0, 1);
	runs[1] = (struct wire_run){5, 1, 2};
	expect_proto(dec(raw_rec(WIRE_RF_XXH3, 2, PS), &m), "run 1 has unknown flags 0x2");
	runs[1] = ZERO_R(top, 2);
	expect_proto(dec(raw_rec(WIRE_RF_XXH3, 2, PS), &m), "ends past the address space");
	runs[1] = ZERO_R(UINT64_MAX, 1);
	expect_proto(dec(raw_rec(WIRE_RF_XXH3, 2, PS), &m), "ends past the address space");
	runs[1] = DATA_R(top, 1); /* the very last page is fine */
	assert_int_equal(dec(raw_rec(WIRE_RF_XXH3, 2, 2 * PS), &m), 0);
	scratch.page_size = 0;
	expect_proto(dec(raw_rec(WIRE_RF_XXH3, 2, 2 * PS), &m), "PAGES before HELLO");
}

static void test_checksum(void **state)
{
	const size_t table = 3 * WIRE_RUN_LEN, data_off = WIRE_HDR_LEN + WIRE_PAGES_FIXED + table;
	struct wire_msg m;
	size_t n, z;

	(void)state;
	rng_seed("test_checksum");
	rng_fill(plain, 3 * PS, 0);
	runs[0] = DATA_R(rng_below(1ull << 30), 2);
	runs[1] = ZERO_R(rng_below(1ull << 30), 3);
	runs[2] = DATA_R(rng_below(1ull << 30), 1);
	n = raw_rec(WIRE_RF_XXH3, 3, 3 * PS);
	assert_int_equal(dec(n, &m), 0);
	/* One bit anywhere in the data, in a run's first page (staying in range), or in the
	 * checksum itself. */
	for (int i = 0; i < 200; i++) {
		size_t byte;
		unsigned bit = rng_below(8);

		switch (i % 3) {
		case 0:
			byte = data_off + rng_below(3 * PS);
			break;
		case 1:
			byte = WIRE_HDR_LEN + WIRE_PAGES_FIXED + rng_below(3) * WIRE_RUN_LEN +
			       rng_below(5);
			break;
		default:
			byte = WIRE_HDR_LEN + 8 + rng_below(8);
		}
		rec[byte] ^= 1u << bit;
		expect_proto(dec(n, &m), "checksum mismatch");
		rec[byte] ^= 1u << bit;
	}
	assert_int_equal(dec(n, &m), 0);

	/* Compressed: the checksum covers the plain data, not the frames. */
	z = zstd_of(plain, 3 * PS);
	n = pages_rec(WIRE_RF_XXH3 | WIRE_RF_ZSTD, 3, 3 * PS, plain, 3 * PS, packed, z);
	assert_int_equal(dec(n, &m), 0);
	assert_memory_equal(m.pages.data, plain, 3 * PS);
	plain[77] ^= 0x10; /* the sum now covers other data than the frames hold */
	n = pages_rec(WIRE_RF_XXH3 | WIRE_RF_ZSTD, 3, 3 * PS, plain, 3 * PS, packed, z);
	plain[77] ^= 0x10;
	expect_proto(dec(n, &m), "checksum mismatch");
}

static void test_checksum_flags(void **state)
{
	struct wire_msg m;
	size_t n;

	(void)state;
	rng_fill(plain, PS, 0);
	runs[0] = DATA_R(0, 1);
	n = raw_rec(0, 1, PS);
	expect_proto(dec(n, &m), "no checksum, but checksums were negotiated");
	scratch.features = 0;
	assert_int_equal(dec(n, &m), 0);
	wire_put_le64(rec + WIRE_HDR_LEN + 8, 1);
	expect_proto(dec(n, &m), "checksum field 0x1 without the XXH3 flag");
	n = pages_rec(WIRE_RF_ZSTD, 1, PS, plain, PS, packed, zstd_of(plain, PS));
	expect_proto(dec(n, &m), "compressed, but zstd was not negotiated");
	scratch.features = WIRE_F_ZSTD;
	assert_int_equal(dec(n, &m), 0);
}

static void test_zstd_refusals(void **state)
{
	struct wire_msg m;
	size_t n, z;

	(void)state;
	memset(plain, 0, 80 * MiB);
	/* A bomb: one page declared, 16 MiB of zeros in the frame. */
	runs[0] = DATA_R(0, 1);
	z = zstd_of(plain, 16 * MiB);
	n = pages_rec(WIRE_RF_XXH3 | WIRE_RF_ZSTD, 1, PS, plain, PS, packed, z);
	expect_proto(dec(n, &m), "zstd: Destination buffer is too small (declared 4096");
	/* The largest batch declared, a frame one page longer; then one of 80 MiB. */
	runs[0] = DATA_R(0, 4096);
	z = zstd_of(plain, 16 * MiB + PS);
	n = pages_rec(WIRE_RF_XXH3 | WIRE_RF_ZSTD, 1, 16 * MiB, plain, 16 * MiB, packed, z);
	expect_proto(dec(n, &m), "zstd: Destination buffer is too small");
	z = zstd_of(plain, 80 * MiB);
	n = pages_rec(WIRE_RF_XXH3 | WIRE_RF_ZSTD, 1, 16 * MiB, plain, 16 * MiB, packed, z);
	expect_proto(dec(n, &m), "zstd: Destination buffer is too small");
	/* Fewer bytes than declared. */
	runs[0] = DATA_R(0, 2);
	z = zstd_of(plain, PS);
	n = pages_rec(WIRE_RF_XXH3 | WIRE_RF_ZSTD, 1, 2 * PS, plain, 2 * PS, packed, z);
	expect_proto(dec(n, &m), "decompressed to 4096 bytes, 8192 declared");
	/* Not zstd, truncated zstd, nothing at all. */
	rng_fill(packed, 64, 0);
	n = pages_rec(WIRE_RF_XXH3 | WIRE_RF_ZSTD, 1, 2 * PS, plain, 2 * PS, packed, 64);
	expect_proto(dec(n, &m), "zstd: ");
	z = zstd_of(plain, 2 * PS);
	n = pages_rec(WIRE_RF_XXH3 | WIRE_RF_ZSTD, 1, 2 * PS, plain, 2 * PS, packed, z - 1);
	expect_proto(dec(n, &m), "zstd: ");
	n = pages_rec(WIRE_RF_XXH3 | WIRE_RF_ZSTD, 1, 2 * PS, plain, 2 * PS, packed, 0);
	expect_proto(dec(n, &m), "compressed flag with 0 compressed");
	runs[0] = ZERO_R(0, 2);
	z = zstd_of(plain, 10);
	n = pages_rec(WIRE_RF_XXH3 | WIRE_RF_ZSTD, 1, 0, plain, 0, packed, z);
	expect_proto(dec(n, &m), "plain bytes");
}

/* DEVICE: {u32 name_len, u32 state_len, u64 checksum, name, state}. */
static size_t device_rec(uint16_t flags, uint32_t name_len, const char *name, uint32_t state_len,
			 const void *state, const void *wire, size_t wire_len)
{
	uint8_t *p = rec + WIRE_HDR_LEN;

	wire_encode_header(rec, WIRE_DEVICE, flags,
			   (uint32_t)(WIRE_DEVICE_FIXED + name_len + wire_len));
	wire_put_le32(p, name_len);
	wire_put_le32(p + 4, state_len);
	wire_put_le64(p + 8, flags & WIRE_RF_XXH3 ? sum2(name, name_len, state, state_len) : 0);
	memcpy(p + WIRE_DEVICE_FIXED, name, name_len);
	if (wire_len)
		memmove(p + WIRE_DEVICE_FIXED + name_len, wire, wire_len);
	return WIRE_HDR_LEN + WIRE_DEVICE_FIXED + name_len + wire_len;
}

static void test_device(void **state)
{
	const char name[] = "nvme0\0zz";
	char longname[80];
	struct wire_msg m;
	size_t n, z;

	(void)state;
	memset(longname, 'x', sizeof(longname));
	rng_fill(plain, 4096, 1);
	n = device_rec(WIRE_RF_XXH3, 5, name, 4096, plain, plain, 4096);
	assert_int_equal(dec(n, &m), 0);
	assert_string_equal(m.device.name, "nvme0");
	assert_memory_equal(m.device.state, plain, 4096);
	rec[WIRE_HDR_LEN + WIRE_DEVICE_FIXED + 5 + 100] ^= 4;
	expect_proto(dec(n, &m), "checksum mismatch");
	rec[WIRE_HDR_LEN + WIRE_DEVICE_FIXED + 5 + 100] ^= 4;
	rec[WIRE_HDR_LEN + WIRE_DEVICE_FIXED + 2] ^= 1;
	expect_proto(dec(n, &m), "checksum mismatch");

	expect_proto(dec(device_rec(WIRE_RF_XXH3, 0, name, 0, NULL, NULL, 0), &m),
		     "name of 0 bytes");
	expect_proto(dec(device_rec(WIRE_RF_XXH3, 64, longname, 0, NULL, NULL, 0), &m),
		     "name of 64 bytes");
	assert_int_equal(dec(device_rec(WIRE_RF_XXH3, 63, longname, 0, NULL, NULL, 0), &m), 0);
	assert_int_equal(strlen(m.device.name), 63);
	expect_proto(dec(device_rec(WIRE_RF_XXH3, 8, name, 0, NULL, NULL, 0), &m), "NUL byte");
	n = device_rec(WIRE_RF_XXH3, 5, name, WIRE_MAX_DEVICE_STATE + 1, plain, plain, 0);
	expect_proto(dec(n, &m), "state of 67108865 bytes, at most 67108864");
	n = device_rec(WIRE_RF_XXH3, 5, name, 4096, plain, plain, 4095);
	expect_proto(dec(n, &m), "nvme0: 4095 state bytes, 4096 declared");
	n = device_rec(WIRE_RF_XXH3, 40, longname, 0, NULL, NULL, 0);
	wire_put_le32(rec + 4, WIRE_DEVICE_FIXED + 30);
	expect_proto(dec(WIRE_HDR_LEN + WIRE_DEVICE_FIXED + 30, &m), "the name ends at 56");
	expect_proto(dec(device_rec(0, 5, name, 0, NULL, NULL, 0), &m), "no checksum");

	/* Compressed state: fine, then a bomb of 64 MiB + 1 against 64 MiB declared. */
	z = zstd_of(plain, 4096);
	assert_int_equal(
		dec(device_rec(WIRE_RF_XXH3 | WIRE_RF_ZSTD, 5, name, 4096, plain, packed, z), &m),
		0);
	assert_memory_equal(m.device.state, plain, 4096);
	memset(plain, 0, 65 * MiB);
	z = zstd_of(plain, 64 * MiB + 1);
	n = device_rec(WIRE_RF_XXH3 | WIRE_RF_ZSTD, 5, name, 64 * MiB, plain, packed, z);
	expect_proto(dec(n, &m), "zstd: Destination buffer is too small (declared 67108864");
	scratch.features = WIRE_F_XXH3;
	expect_proto(dec(n, &m), "zstd was not negotiated");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_valid, reset),
		cmocka_unit_test_setup(test_bounds, reset),
		cmocka_unit_test_setup(test_runs_add_up, reset),
		cmocka_unit_test_setup(test_bad_runs, reset),
		cmocka_unit_test_setup(test_checksum, reset),
		cmocka_unit_test_setup(test_checksum_flags, reset),
		cmocka_unit_test_setup(test_zstd_refusals, reset),
		cmocka_unit_test_setup(test_device, reset),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
