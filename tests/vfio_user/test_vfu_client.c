/* SPDX-License-Identifier: MIT */
/*
 * tests/vfio_user/test_vfu_client.c - our vfio-user client against our server (in a thread,
 * over a socketpair). Guest memory: two memfd regions A and B, adjacent (passed by
 * SCM_RIGHTS), and a region C without fd (the server reaches it with DMA_READ / DMA_WRITE,
 * which the client serves). The device (EMULATED) writes through every path of the server's
 * API: dt_dma_rw, a direct write then dt_dma_log, a pin (perpetually dirty while pinned, then
 * once more after the unpin), and dt_vfu_dma_rw into C from a register write.
 *
 * Checked: DMA_LOGGING_REPORT returns exactly the written pages at 4 KiB, 2 KiB, 8 KiB and
 * 2 MiB page sizes over a range spanning A and B (every report clears: the next one has only
 * what was written since, and the pinned pages); with a server bitmap limit of 16 bytes the
 * same reports go through several requests each; DMA_UNMAP with the dirty bitmap returns
 * exactly the written pages; a dirty set with the client added (mirror + pre-harvest hook)
 * gets exactly the device's pages in DT_CLASS_DEVICE and nothing in the other classes; region
 * reads and writes, region info.
 *
 * Randomized: the pages and paths; the seed is printed (DT_SEED=n to replay).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <dirtytrack/dirtytrack.h>
#include <dirtytrack/vfio_user.h>

#include "../seed.h"

#define PAGE	 4096ull
#define REGION	 (2ull << 20) /* A and B: 2 MiB each */
#define IOVA_A	 (2ull << 20)
#define IOVA_B	 (IOVA_A + REGION)
#define IOVA_C	 (8ull << 20)
#define C_SIZE	 (16 * PAGE)
#define NPAGES	 (2 * REGION / PAGE) /* pages of A and B */
#define SET_BASE IOVA_A
#define SET_LEN	 (IOVA_C + C_SIZE - IOVA_A)

struct env {
	int fd_a, fd_b;
	uint8_t *a, *b, *cmem;
	struct dt_vfu_server *s;
	struct dt_device *dev;
	pthread_t thread;
	struct dt_vfu_client *c;
	uint64_t rng;
	/* the device's written pages: bit n = page IOVA_A + n * 4 KiB (A, B), and C's */
	uint64_t written[NPAGES / 64];
	uint64_t written_c;
	uint64_t pinned[NPAGES / 64];
	int dma_ret; /* of the last dt_vfu_dma_rw from the register callback */
	int irq_ret; /* of the last dt_vfu_irq_trigger */
};

/* Region 0, the doorbell: a 16-byte write {iova, len, byte} makes the device write len bytes
 * of `byte` at iova with dt_vfu_dma_rw (message mappings: DMA_WRITE to the client). */
static int64_t doorbell(void *opaque, uint32_t index, uint64_t offset, void *buf, uint32_t count,
			bool write)
{
	struct env *e = opaque;
	struct {
		uint64_t iova;
		uint32_t len;
		uint32_t byte;
	} cmd;
	uint8_t data[3 * 4096];

	if (!write) {
		memset(buf, 0xab, count);
		return count;
	}
	if (offset == 16 && count == 4) { /* interrupt: signal vector *buf of index 0 */
		uint32_t v;

		memcpy(&v, buf, 4);
		e->irq_ret = dt_vfu_irq_trigger(e->s, 0, v);
		return count;
	}
	if (offset != 0 || count != sizeof(cmd))
		return count;
	memcpy(&cmd, buf, sizeof(cmd));
	if (cmd.len > sizeof(data))
		return -EINVAL;
	memset(data, (int)cmd.byte, cmd.len);
	e->dma_ret = dt_vfu_dma_rw(e->s, cmd.iova, data, cmd.len, true);
	return count;
}

static const struct dt_vfu_server_ops ops = {.region_rw = doorbell};

static void *server_main(void *arg)
{
	struct env *e = arg;

	dt_vfu_server_run(e->s);
	return NULL;
}

static uint8_t *memfd_region(int *fd)
{
	uint8_t *p;

	*fd = memfd_create("guest", MFD_CLOEXEC);
	assert_true(*fd >= 0);
	assert_int_equal(ftruncate(*fd, REGION), 0);
	p = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	assert_true(p != MAP_FAILED);
	return p;
}

static struct env *env_new(uint64_t server_bitmap)
{
	static const struct dt_vfu_region regions[1] = {
		{.size = 4096, .flags = DT_VFU_REGION_READ | DT_VFU_REGION_WRITE, .fd = -1}};
	struct env *e = calloc(1, sizeof(*e));
	static const struct dt_vfu_irq irqs[1] = {{.count = 4, .flags = 1 /* EVENTFD */}};
	struct dt_vfu_server_opts so = {.size = sizeof(so),
					.num_regions = 1,
					.regions = regions,
					.num_irqs = 1,
					.irqs = irqs,
					.max_msg_fds = 2,
					.ops = &ops,
					.dma_kind = DT_DEVICE_EMULATED,
					.max_bitmap_size = server_bitmap};
	struct dt_vfu_client_opts co = {.size = sizeof(co)};
	int sp[2];

	e->rng = seed;
	e->a = memfd_region(&e->fd_a);
	e->b = memfd_region(&e->fd_b);
	e->cmem = mmap(NULL, C_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(e->cmem != MAP_FAILED);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	so.fd = sp[1];
	so.opaque = e;
	e->s = dt_vfu_server_new(&so);
	assert_non_null(e->s);
	e->dev = dt_vfu_server_device(e->s);
	assert_int_equal(pthread_create(&e->thread, NULL, server_main, e), 0);
	e->c = dt_vfu_client_from_fd(sp[0], &co);
	assert_non_null(e->c);
	/* A by fd only (the client maps it for its mirror), B by fd and our address, C by
	 * messages. */
	assert_int_equal(dt_vfu_client_dma_map(e->c, IOVA_A, REGION, e->fd_a, 0, NULL,
					       PROT_READ | PROT_WRITE),
			 0);
	assert_int_equal(dt_vfu_client_dma_map(e->c, IOVA_B, REGION, e->fd_b, 0, e->b,
					       PROT_READ | PROT_WRITE),
			 0);
	assert_int_equal(
		dt_vfu_client_dma_map(e->c, IOVA_C, C_SIZE, -1, 0, e->cmem, PROT_READ | PROT_WRITE),
		0);
	return e;
}

static void env_free(struct env *e)
{
	dt_vfu_client_free(e->c); /* the server sees the client go: run() returns */
	pthread_join(e->thread, NULL);
	dt_vfu_server_free(e->s);
	munmap(e->a, REGION);
	munmap(e->b, REGION);
	munmap(e->cmem, C_SIZE);
	close(e->fd_a);
	close(e->fd_b);
	free(e);
}

static void set_bit(uint64_t *b, uint64_t n)
{
	b[n / 64] |= 1ull << (n % 64);
}

static bool test_bit(const uint64_t *b, uint64_t n)
{
	return b[n / 64] >> (n % 64) & 1;
}

static uint8_t *host_of(struct env *e, uint64_t page)
{
	return page < REGION / PAGE ? e->a + page * PAGE : e->b + (page - REGION / PAGE) * PAGE;
}

/* The device writes page `page` of A|B through a random path; pinned pages stay pinned. */
static void device_write(struct env *e, uint64_t page, unsigned path)
{
	uint64_t iova = IOVA_A + page * PAGE, r = rnd(&e->rng);
	uint8_t data[8];
	void *va;

	memcpy(data, &r, 8);
	switch (path % 3) {
	case 0: /* dma_rw, at a random offset, inside the page */
		assert_int_equal(dt_dma_rw(e->dev, iova + r % (PAGE - 8), data, 8, true), 0);
		break;
	case 1: /* the device writes memory itself and logs it */
		memcpy(host_of(e, page) + r % (PAGE - 8), data, 8);
		assert_int_equal(dt_dma_log(e->dev, iova, PAGE), 0);
		break;
	case 2: /* a pin: dirty in every report while pinned */
		if (test_bit(e->pinned, page)) {
			assert_int_equal(dt_dma_rw(e->dev, iova, data, 8, true), 0);
			break;
		}
		assert_int_equal(dt_pin_pages(e->dev, iova, 1, PROT_WRITE, &va), 1);
		memcpy(va, data, 8);
		set_bit(e->pinned, page);
		break;
	}
	set_bit(e->written, page);
}

/* Write n random pages of A|B (in range [lo, hi) of pages) by random paths. */
static void device_write_random(struct env *e, unsigned n, uint64_t lo, uint64_t hi, bool pins)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t r = rnd(&e->rng);

		device_write(e, lo + r % (hi - lo), (unsigned)((r >> 40) % (pins ? 3 : 2)));
	}
	/* Runs across the A/B boundary. */
	if (lo < REGION / PAGE && hi > REGION / PAGE)
		device_write(e, REGION / PAGE - 1, 0), device_write(e, REGION / PAGE, 1);
}

static void unpin_all(struct env *e)
{
	for (uint64_t p = 0; p < NPAGES; p++)
		if (test_bit(e->pinned, p)) {
			assert_int_equal(dt_unpin_pages(e->dev, IOVA_A + p * PAGE, 1), 1);
			set_bit(e->written, p); /* dirty once more */
		}
	memset(e->pinned, 0, sizeof(e->pinned));
}

/* The expected report of [IOVA_A, IOVA_B + REGION) at ps from written | pinned, compared. */
static void check_report(struct env *e, uint64_t ps, const char *what)
{
	uint64_t nbits = 2 * REGION / ps, words = (nbits + 63) / 64, expect_n = 0;
	uint64_t *bm = calloc(words + 1, 8);
	int64_t n;

	bm[words] = 0xdeadbeef;
	n = dt_vfu_client_report(e->c, IOVA_A, 2 * REGION, ps, bm, words * 8);
	if (n < 0)
		fail_msg("%s: report at %llu failed (%lld) (seed %llu)", what,
			 (unsigned long long)ps, (long long)n, (unsigned long long)seed);
	for (uint64_t bit = 0; bit < nbits; bit++) {
		bool want = false;

		/* a bit covers pages [bit * ps, (bit + 1) * ps) of A|B */
		for (uint64_t off = 0; off < (ps > PAGE ? ps : PAGE) && !want; off += PAGE) {
			uint64_t pg = (bit * ps + off) / PAGE;

			want = test_bit(e->written, pg) || test_bit(e->pinned, pg);
		}
		expect_n += want;
		if (test_bit(bm, bit) != want)
			fail_msg("%s: page size %llu, bit %llu (iova 0x%llx): %d, expected %d "
				 "(seed %llu)",
				 what, (unsigned long long)ps, (unsigned long long)bit,
				 (unsigned long long)(IOVA_A + bit * ps), test_bit(bm, bit), want,
				 (unsigned long long)seed);
	}
	assert_int_equal(n, expect_n);
	assert_int_equal(bm[words], 0xdeadbeef);
	free(bm);
	memset(e->written, 0, sizeof(e->written));
}

static void ring_doorbell(struct env *e, uint64_t iova, uint32_t len, uint8_t byte)
{
	struct {
		uint64_t iova;
		uint32_t len;
		uint32_t byte;
	} cmd = {iova, len, byte};

	assert_int_equal(dt_vfu_client_region_write(e->c, 0, 0, &cmd, sizeof(cmd)), 0);
	assert_int_equal(e->dma_ret, 0);
}

static void run_reports(uint64_t server_bitmap)
{
	struct env *e = env_new(server_bitmap);
	uint64_t ps = 0, cbm[1];
	struct dt_vfu_client_info info;

	assert_int_equal(dt_vfu_client_get_info(e->c, &info), 0);
	if (server_bitmap)
		assert_int_equal(info.max_bitmap_size, server_bitmap);
	assert_int_equal(dt_vfu_client_dma_logging_start(e->c, NULL, 0, &ps), 0);
	assert_int_equal(ps, PAGE);

	device_write_random(e, 40, 0, NPAGES, true);
	check_report(e, PAGE, "4 KiB");
	check_report(e, PAGE, "4 KiB again: only the pinned pages");
	device_write_random(e, 40, 0, NPAGES, true);
	check_report(e, 2048, "2 KiB");
	device_write_random(e, 40, 0, NPAGES, true);
	check_report(e, 8192, "8 KiB");
	/* 2 MiB: one bit for A, one for B; then only B written (after the unpins of A's pins
	 * have been reported once). */
	device_write_random(e, 5, 0, NPAGES, true);
	check_report(e, 2ull << 20, "2 MiB");
	unpin_all(e);
	check_report(e, PAGE, "after the unpins: once more");
	device_write_random(e, 7, REGION / PAGE, NPAGES, false);
	check_report(e, 2ull << 20, "2 MiB, B only");
	check_report(e, 8192, "nothing since");

	/* C, through DMA_WRITE messages served by the client. */
	ring_doorbell(e, IOVA_C + 3 * PAGE - 100, 200, 0x5c); /* pages 2 and 3 */
	ring_doorbell(e, IOVA_C + 9 * PAGE, 4096, 0x77);      /* page 9 */
	assert_int_equal(e->cmem[3 * PAGE - 100], 0x5c);
	assert_int_equal(e->cmem[3 * PAGE + 99], 0x5c);
	assert_int_equal(e->cmem[9 * PAGE + 4095], 0x77);
	cbm[0] = 0;
	assert_int_equal(dt_vfu_client_report(e->c, IOVA_C, C_SIZE, PAGE, cbm, 8), 3);
	assert_int_equal(cbm[0], 1ull << 2 | 1ull << 3 | 1ull << 9);
	cbm[0] = 0;
	assert_int_equal(dt_vfu_client_report(e->c, IOVA_C, C_SIZE, PAGE, cbm, 8), 0);
	env_free(e);
}

static void test_reports(void **state)
{
	run_reports(0);
}

static void test_reports_split(void **state)
{
	run_reports(16); /* 128 bits a request: a 4 KiB report of A|B takes 8 */
}

/* DMA_UNMAP with the dirty bitmap: exactly the pages written, at 4 KiB and 8 KiB. */
static void test_unmap_bitmap(void **state)
{
	struct env *e = env_new(0);
	uint64_t bm[REGION / PAGE / 64 + 1], bm8[REGION / 8192 / 64];

	assert_int_equal(dt_vfu_client_dma_logging_start(e->c, NULL, 0, NULL), 0);
	device_write_random(e, 30, 0, REGION / PAGE, false);	  /* A */
	device_write_random(e, 30, REGION / PAGE, NPAGES, false); /* B */
	memset(bm, 0, sizeof(bm));
	bm[REGION / PAGE / 64] = 0x1234;
	assert_int_equal(dt_vfu_client_dma_unmap(e->c, IOVA_A, REGION, PAGE, bm, REGION / PAGE / 8),
			 0);
	for (uint64_t p = 0; p < REGION / PAGE; p++)
		if (test_bit(bm, p) != test_bit(e->written, p))
			fail_msg("unmap bitmap: page %llu is %d, expected %d (seed %llu)",
				 (unsigned long long)p, test_bit(bm, p), test_bit(e->written, p),
				 (unsigned long long)seed);
	assert_int_equal(bm[REGION / PAGE / 64], 0x1234);
	memset(bm8, 0, sizeof(bm8));
	assert_int_equal(dt_vfu_client_dma_unmap(e->c, IOVA_B, REGION, 8192, bm8, sizeof(bm8)), 0);
	for (uint64_t p = 0; p < REGION / 8192; p++) {
		uint64_t pg = REGION / PAGE + 2 * p;
		bool want = test_bit(e->written, pg) || test_bit(e->written, pg + 1);

		if (test_bit(bm8, p) != want)
			fail_msg("unmap bitmap at 8 KiB: bit %llu is %d, expected %d (seed %llu)",
				 (unsigned long long)p, test_bit(bm8, p), want,
				 (unsigned long long)seed);
	}
	/* Gone on the server: the device can no longer write there. */
	assert_int_not_equal(dt_dma_rw(e->dev, IOVA_A, bm, 8, true), 0);
	/* Retired in the mirror while logging: its pages are still there for a harvest. */
	{
		uint64_t got[NPAGES / 64] = {0};
		struct dt_report rep = {.size = sizeof(rep),
					.iova = IOVA_A,
					.length = 2 * REGION,
					.bitmap = got,
					.bitmap_size = sizeof(got)};

		assert_int_equal(dt_iommu_report(dt_vfu_client_mirror(e->c), &rep), 0);
		for (uint64_t p = 0; p < REGION / PAGE; p++)
			assert_int_equal(test_bit(got, p), test_bit(e->written, p));
	}
	env_free(e);
}

/* An unmap without a bitmap while logging: the client fetches the bitmap for its mirror
 * anyway (the server would drop those pages), so the device's last writes are not lost. */
static void test_unmap_without_bitmap(void **state)
{
	struct env *e = env_new(0);
	uint64_t got[NPAGES / 64] = {0};
	struct dt_report rep = {.size = sizeof(rep),
				.iova = IOVA_A,
				.length = REGION,
				.bitmap = got,
				.bitmap_size = sizeof(got)};

	assert_int_equal(dt_vfu_client_dma_logging_start(e->c, NULL, 0, NULL), 0);
	device_write_random(e, 30, 0, REGION / PAGE, false);
	assert_int_equal(dt_vfu_client_dma_unmap(e->c, IOVA_A, REGION, 0, NULL, 0), 0);
	assert_int_equal(dt_iommu_report(dt_vfu_client_mirror(e->c), &rep), 0);
	for (uint64_t p = 0; p < REGION / PAGE; p++)
		if (test_bit(got, p) != test_bit(e->written, p))
			fail_msg("page %llu in the mirror: %d, expected %d (seed %llu)",
				 (unsigned long long)p, test_bit(got, p), test_bit(e->written, p),
				 (unsigned long long)seed);
	env_free(e);
}

/* The dirty set: DT_CLASS_DEVICE has exactly the device's pages, other classes nothing. */
static void test_dirty_set_hook(void **state)
{
	struct env *e = env_new(0);
	struct dt_dirty_set_opts dso = {.size = sizeof(dso), .base = SET_BASE, .length = SET_LEN};
	struct dt_dirty_set *set = dt_dirty_set_new(&dso);
	struct dt_harvest h;
	uint64_t c_first = (IOVA_C - SET_BASE) / PAGE;

	assert_non_null(set);
	assert_int_equal(dt_vfu_client_add_to_set(e->c, set, SET_BASE), 0);
	/* Logging not started: the mirror is not tracking, the harvest says so. */
	assert_int_equal(dt_dirty_set_harvest(set, 0, &h), -EINVAL);
	assert_int_equal(dt_vfu_client_dma_logging_start(e->c, NULL, 0, NULL), 0);
	assert_int_equal(dt_dirty_set_harvest(set, 0, &h), 0);
	assert_int_equal(h.total, 0);

	for (int round = 0; round < 4; round++) {
		uint64_t expect = 0;

		if (round < 2)
			device_write_random(e, 50, 0, NPAGES, true);
		if (round == 2)
			unpin_all(e);
		if (round == 0)
			ring_doorbell(e, IOVA_C + PAGE, 10, 1); /* C's page 1 */
		assert_int_equal(dt_dirty_set_harvest(set, 0, &h), 0);
		for (uint64_t p = 0; p < SET_LEN / PAGE; p++) {
			bool want = p < NPAGES ? test_bit(e->written, p) || test_bit(e->pinned, p)
					       : round == 0 && p == c_first + 1;

			expect += want;
			if (test_bit(h.class_bits[DT_CLASS_DEVICE], p) != want)
				fail_msg("round %d: set page %llu in DEVICE: %d, expected %d (seed "
					 "%llu)",
					 round, (unsigned long long)p,
					 test_bit(h.class_bits[DT_CLASS_DEVICE], p), want,
					 (unsigned long long)seed);
		}
		assert_int_equal(h.count[DT_CLASS_DEVICE], expect);
		assert_int_equal(h.total, expect);
		assert_int_equal(h.count[DT_CLASS_CPU] + h.count[DT_CLASS_VMM] +
					 h.count[DT_CLASS_PINNED] + h.count[DT_CLASS_WHOLE],
				 0);
		memset(e->written, 0, sizeof(e->written));
		if (round == 3)
			assert_int_equal(expect, 0);
	}
	dt_dirty_set_free(set);
	env_free(e);
}

/* Region access and info: reads and writes split to the transfer size reach the device. */
static void test_regions(void **state)
{
	struct env *e = env_new(0);
	struct dt_vfu_region_info ri;
	struct dt_vfu_client_info info;
	uint8_t buf[64];

	assert_int_equal(dt_vfu_client_get_info(e->c, &info), 0);
	assert_int_equal(info.num_regions, 1);
	assert_int_equal(info.major, 0);
	assert_int_equal(dt_vfu_client_region_info(e->c, 0, &ri), 0);
	assert_int_equal(ri.size, 4096);
	assert_int_equal(ri.fd, -1);
	assert_true(ri.flags & 1);
	assert_int_equal(dt_vfu_client_region_info(e->c, 1, &ri), -EINVAL);
	assert_int_equal(dt_vfu_client_region_read(e->c, 0, 8, buf, sizeof(buf)), 0);
	for (unsigned i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0xab);
	/* Past the region: the server's error, the connection still fine. */
	assert_true(dt_vfu_client_region_read(e->c, 0, 4090, buf, 16) < 0);
	assert_int_equal(dt_vfu_client_region_read(e->c, 0, 0, buf, 8), 0);
	env_free(e);
}

/* Interrupts: info, four eventfds set in messages of the server's two fds each, a vector the
 * device signals wakes exactly its eventfd; de-assigned, nothing is signalled. */
static void test_irqs(void **state)
{
	struct env *e = env_new(0);
	struct dt_vfu_irq_info ii;
	int fds[4];
	uint32_t v = 2;
	uint64_t n;

	assert_int_equal(dt_vfu_client_irq_info(e->c, 0, &ii), 0);
	assert_int_equal(ii.count, 4);
	assert_int_equal(ii.flags, 1);
	assert_int_equal(dt_vfu_client_irq_info(e->c, 1, &ii), -EINVAL);
	for (int i = 0; i < 4; i++)
		assert_true((fds[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) >= 0);
	assert_int_equal(dt_vfu_client_set_irq_eventfds(e->c, 0, 0, 4, fds), 0);
	assert_int_equal(dt_vfu_client_region_write(e->c, 0, 16, &v, 4), 0);
	assert_int_equal(e->irq_ret, 0);
	for (int i = 0; i < 4; i++) {
		ssize_t r = read(fds[i], &n, 8);

		if (i == 2)
			assert_true(r == 8 && n == 1);
		else
			assert_int_equal(r, -1);
	}
	v = 3; /* set by the second message */
	assert_int_equal(dt_vfu_client_region_write(e->c, 0, 16, &v, 4), 0);
	assert_int_equal(read(fds[3], &n, 8), 8);
	assert_int_equal(dt_vfu_client_set_irq_eventfds(e->c, 0, 0, 4, NULL), 0);
	assert_int_equal(dt_vfu_client_region_write(e->c, 0, 16, &v, 4), 0);
	assert_int_equal(e->irq_ret, -ENOENT);
	assert_int_equal(read(fds[3], &n, 8), -1);
	assert_int_equal(dt_vfu_client_set_irq_eventfds(e->c, 0, 3, 2, fds), -EINVAL); /* server */
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	env_free(e);
}

/* Calls from several threads serialize on the client: region reads, reports, syncs and
 * DMA_WRITE messages served in between, all answered right (ASan/TSan see the locking). */
struct worker {
	struct env *e;
	int kind;
	int failures;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < 150; i++) {
		uint8_t buf[32];
		uint64_t bm[NPAGES / 64];

		switch (w->kind) {
		case 0:
			w->failures +=
				dt_vfu_client_region_read(w->e->c, 0, 0, buf, sizeof(buf)) != 0 ||
				buf[31] != 0xab;
			break;
		case 1:
			memset(bm, 0, sizeof(bm));
			w->failures += dt_vfu_client_report(w->e->c, IOVA_A, 2 * REGION, PAGE, bm,
							    sizeof(bm)) < 0;
			break;
		case 2:
			w->failures += dt_vfu_client_sync(w->e->c) < 0;
			break;
		}
	}
	return NULL;
}

static void test_concurrent_calls(void **state)
{
	struct env *e = env_new(0);
	struct worker w[3];
	pthread_t t[3];

	assert_int_equal(dt_vfu_client_dma_logging_start(e->c, NULL, 0, NULL), 0);
	for (int i = 0; i < 3; i++) {
		w[i] = (struct worker){.e = e, .kind = i};
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < 50; i++)
		ring_doorbell(e, IOVA_C + (uint64_t)(i % 16) * PAGE, 8, (uint8_t)i);
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].failures, 0);
	}
	env_free(e);
}

/* dt_vfu_client_connect over a socket path; a path nobody listens on fails cleanly. */
static void *accept_main(void *arg)
{
	struct dt_vfu_server *s = arg;

	if (dt_vfu_server_accept(s) == 0)
		dt_vfu_server_run(s);
	return NULL;
}

static void test_connect_path(void **state)
{
	static const struct dt_vfu_region regions[1] = {
		{.size = 4096, .flags = DT_VFU_REGION_READ, .fd = -1}};
	char path[64];
	struct dt_vfu_server_opts so = {
		.size = sizeof(so), .num_regions = 1, .regions = regions, .ops = &ops};
	struct dt_vfu_client_info info;
	struct dt_vfu_server *s;
	struct dt_vfu_client *c;
	pthread_t t;
	struct env e = {0};

	snprintf(path, sizeof(path), "/tmp/dt-vfu-client-%d.sock", (int)getpid());
	so.path = path;
	so.opaque = &e;
	s = dt_vfu_server_new(&so);
	assert_non_null(s);
	e.s = s;
	assert_int_equal(pthread_create(&t, NULL, accept_main, s), 0);
	c = dt_vfu_client_connect(path, NULL);
	assert_non_null(c);
	assert_int_equal(dt_vfu_client_get_info(c, &info), 0);
	assert_int_equal(info.num_regions, 1);
	assert_int_equal(info.mig_flags, 0); /* no migration: the probe's refusal is no error */
	{
		struct dt_migrate_device dev;

		assert_int_equal(dt_vfu_client_migrate_device(c, "x", &dev), -ENOTSUP);
		assert_int_equal(dt_vfu_client_mig_set_state(c, DT_VFU_MIG_STOP), -ENOTSUP);
	}
	dt_vfu_client_free(c);
	pthread_join(t, NULL);
	dt_vfu_server_free(s);
	unlink(path);
	errno = 0;
	assert_null(dt_vfu_client_connect(path, NULL));
	assert_true(errno == ENOENT || errno == ECONNREFUSED);
	assert_null(dt_vfu_client_connect(NULL, NULL));
	assert_int_equal(errno, EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reports),
		cmocka_unit_test(test_reports_split),
		cmocka_unit_test(test_unmap_bitmap),
		cmocka_unit_test(test_unmap_without_bitmap),
		cmocka_unit_test(test_dirty_set_hook),
		cmocka_unit_test(test_regions),
		cmocka_unit_test(test_irqs),
		cmocka_unit_test(test_connect_path),
		cmocka_unit_test(test_concurrent_calls),
	};

	seed_init("");
	if (getenv("DT_TEST_LOG"))
		dt_set_log(dt_log_stderr, NULL, DT_LOG_DEBUG);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
