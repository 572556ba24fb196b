/* SPDX-License-Identifier: MIT */
/*
 * tests/vfio_user/test_vfu_client_migrate.c - live migration of guest memory written by a
 * vfio-user device in another process.
 *
 * The source "VMM" (this process) has two memfd regions of guest memory and a vfio-user
 * device served by a forked child process, which DMAs into that memory all through pre-copy
 * (dt_dma_rw, and direct writes it logs with dt_dma_log) and, when it is stopped (the arc to
 * STOP or STOP_COPY), writes a last burst of pages: written after every pre-copy round, they
 * reach the destination only through the final harvest's pre-harvest hook. The device has
 * state: a blob whose first part comes as pre-copy data and the rest in STOP_COPY. The
 * destination (a thread) receives the memory and loads the state into its own vfio-user
 * device (a server in another thread).
 *
 * Checked: the destination's memory equals the source's byte for byte, its device got the
 * whole blob, the engine harvested device pages (DT_CLASS_DEVICE) during pre-copy; with the
 * pending size given by the server (MIG_DATA_SIZE) and by the client's heuristic. Negative
 * control: the same migration without the client in the dirty set must NOT succeed with
 * equal memory (the destination refuses the digest, or the memory differs): the test of the
 * hook would catch its absence.
 *
 * Randomized: the device's writes; the seed is printed (DT_SEED=n to replay).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <dirtytrack/dirtytrack.h>
#include <dirtytrack/vfio_user.h>

#include "../migrate/dest_thread.h"
#include "../seed.h"

#define PAGE	4096ull
#define REGION	(2ull << 20)
#define IOVA_A	(2ull << 20)
#define IOVA_B	(IOVA_A + REGION)
#define NPAGES	(2 * REGION / PAGE)
#define BLOB	20000u /* device state */
#define PRE_LEN 6000u  /* of which pre-copy data */
#define BURST	24u    /* pages written by the device as it stops */

static void make_blob(uint8_t *b)
{
	uint64_t s = seed ^ 0x5eed;

	for (unsigned i = 0; i < BLOB; i++)
		b[i] = (uint8_t)rnd(&s);
}

/* ---- the device, in the child ---------------------------------------------------------------- */

struct device {
	struct dt_vfu_server *s;
	struct dt_device *dev;
	uint32_t state;
	uint8_t blob[BLOB];
	size_t pos;
	uint64_t rng;
};

static bool running(uint32_t s)
{
	return s == DT_VFU_MIG_RUNNING || s == DT_VFU_MIG_PRE_COPY;
}

/* One DMA write of a random page by a random path (no-op without mappings). */
static void dev_write_one(struct device *d, uint8_t tag)
{
	uint64_t r = rnd(&d->rng), iova = IOVA_A + (r % NPAGES) * PAGE;
	uint8_t data[16];

	memset(data, tag ? tag : (uint8_t)(r >> 8) | 1, sizeof(data));
	if (r >> 60 & 1) {
		dt_dma_rw(d->dev, iova + (r >> 20) % (PAGE - 16), data, sizeof(data), true);
	} else {
		void *va;

		/* A short pin to reach the memory, a direct write, then the log: the pin
		 * itself marks nothing lasting for the report after the unpin's one. */
		if (dt_pin_pages(d->dev, iova, 1, PROT_WRITE, &va) == 1) {
			memcpy((uint8_t *)va + (r >> 20) % (PAGE - 16), data, sizeof(data));
			dt_dma_log(d->dev, iova, PAGE);
			dt_unpin_pages(d->dev, iova, 1);
		}
	}
}

static int dev_mig_state(void *opaque, uint32_t from, uint32_t to)
{
	struct device *d = opaque;

	if (running(from) && !running(to))
		for (unsigned i = 0; i < BURST; i++)
			dev_write_one(d, (uint8_t)(0xe0 + i)); /* the last DMA before it stops */
	if (to == DT_VFU_MIG_PRE_COPY || (to == DT_VFU_MIG_STOP_COPY && from == DT_VFU_MIG_STOP))
		d->pos = 0;
	d->state = to;
	return 0;
}

static int64_t dev_mig_read(void *opaque, void *buf, uint64_t size)
{
	struct device *d = opaque;
	size_t end = d->state == DT_VFU_MIG_PRE_COPY ? PRE_LEN : BLOB;
	size_t n = d->pos < end ? end - d->pos : 0;

	if (n > size)
		n = size;
	memcpy(buf, d->blob + d->pos, n);
	d->pos += n;
	return (int64_t)n;
}

static int dev_mig_pending(void *opaque, uint64_t *bytes)
{
	struct device *d = opaque;

	*bytes = BLOB - d->pos; /* what is left for stop-and-copy */
	return 0;
}

static void child_main(int fd, bool give_size)
{
	struct dt_vfu_server_ops ops = {
		.mig_state = dev_mig_state,
		.mig_read = dev_mig_read,
		.mig_pending = give_size ? dev_mig_pending : NULL,
	};
	struct device *d = calloc(1, sizeof(*d));
	struct dt_vfu_server_opts so = {
		.size = sizeof(so),
		.fd = fd,
		.migration_flags = DT_VFU_MIGRATION_STOP_COPY | DT_VFU_MIGRATION_PRE_COPY,
		.ops = &ops,
		.opaque = d,
		.dma_kind = DT_DEVICE_EMULATED,
	};

	d->rng = seed * 31 + 7;
	d->state = DT_VFU_MIG_RUNNING;
	make_blob(d->blob);
	d->s = dt_vfu_server_new(&so);
	if (!d->s)
		_exit(2);
	d->dev = dt_vfu_server_device(d->s);
	for (;;) {
		struct pollfd p = {.fd = dt_vfu_server_fd(d->s), .events = POLLIN};
		int r = poll(&p, 1, 0);

		if (r > 0) {
			r = dt_vfu_server_process(d->s);
			if (r == -ECONNRESET)
				break;
			if (r)
				_exit(3);
			continue;
		}
		if (running(d->state))
			dev_write_one(d, 0);
		usleep(200);
	}
	dt_vfu_server_free(d->s);
	free(d);
	_exit(0);
}

/* ---- the destination's device: a server thread that keeps what it is given --------------- */

struct dest_dev {
	struct dt_vfu_server *s;
	pthread_t thread;
	uint8_t got[BLOB + 64];
	size_t len;
	uint32_t state;
};

static int dd_mig_state(void *opaque, uint32_t from, uint32_t to)
{
	((struct dest_dev *)opaque)->state = to;
	return 0;
}

static int64_t dd_mig_write(void *opaque, const void *buf, uint64_t size)
{
	struct dest_dev *d = opaque;

	if (d->len + size > sizeof(d->got))
		return -EFBIG;
	memcpy(d->got + d->len, buf, size);
	d->len += size;
	return (int64_t)size;
}

static void *dd_main(void *arg)
{
	dt_vfu_server_run(((struct dest_dev *)arg)->s);
	return NULL;
}

static const struct dt_vfu_server_ops dd_ops = {.mig_state = dd_mig_state,
						.mig_write = dd_mig_write};

static struct dt_vfu_client *dest_dev_start(struct dest_dev *d)
{
	struct dt_vfu_server_opts so = {
		.size = sizeof(so),
		.migration_flags = DT_VFU_MIGRATION_STOP_COPY,
		.ops = &dd_ops,
		.opaque = d,
	};
	struct dt_vfu_client_opts co = {.size = sizeof(co), .max_data_xfer_size = 4096};
	struct dt_vfu_client *c;
	int sp[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	so.fd = sp[1];
	d->s = dt_vfu_server_new(&so);
	assert_non_null(d->s);
	assert_int_equal(pthread_create(&d->thread, NULL, dd_main, d), 0);
	c = dt_vfu_client_from_fd(sp[0], &co);
	assert_non_null(c);
	return c;
}

/* ---- the migration ----------------------------------------------------------------------------- */

struct source {
	struct dt_vfu_client *c;
	uint64_t device_rounds; /* pre-copy rounds (>= 1) that harvested device pages */
	uint64_t device_bytes;	/* the pending estimate of the last round */
	int pauses, resumes;
};

static int src_pause(void *opaque)
{
	struct source *s = opaque;

	s->pauses++;
	/* Stop the device (its last DMA happens now) before the final harvest. */
	return dt_vfu_client_mig_set_state(s->c, DT_VFU_MIG_STOP_COPY);
}

static void src_resume(void *opaque)
{
	struct source *s = opaque;

	s->resumes++;
	dt_vfu_client_mig_set_state(s->c, DT_VFU_MIG_RUNNING);
}

static void src_round(void *opaque, const struct dt_round_stats *st, const char *json)
{
	struct source *s = opaque;

	if (st->round >= 1 && st->dirty[DT_CLASS_DEVICE])
		s->device_rounds++;
	s->device_bytes = st->device_bytes;
}

static uint8_t *memfd_region(int *fd, uint8_t fill)
{
	uint8_t *p;

	*fd = memfd_create("guest", MFD_CLOEXEC);
	assert_true(*fd >= 0);
	assert_int_equal(ftruncate(*fd, REGION), 0);
	p = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	assert_true(p != MAP_FAILED);
	for (uint64_t i = 0; i < REGION; i += PAGE)
		memset(p + i, (int)(fill + i / PAGE) | 1, PAGE);
	return p;
}

/* One migration; returns true when it succeeded with equal memory and device state. */
static bool migrate_once(bool hook, bool give_size, bool precopy)
{
	int fd_a, fd_b, sp[2], status;
	uint8_t *a = memfd_region(&fd_a, 1), *b = memfd_region(&fd_b, 2);
	uint8_t *da =
		mmap(NULL, 2 * REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct dt_dirty_set_opts dso = {.size = sizeof(dso), .base = IOVA_A, .length = 2 * REGION};
	struct dt_region src_regions[2] = {{.addr = IOVA_A, .size = REGION, .host = a},
					   {.addr = IOVA_B, .size = REGION, .host = b}};
	struct dt_region dst_regions[2] = {{.addr = IOVA_A, .size = REGION, .host = da},
					   {.addr = IOVA_B, .size = REGION, .host = da + REGION}};
	struct dt_migrate_device sdev, ddev;
	struct dt_migrate_source_opts so = {.size = sizeof(so)};
	struct dt_migrate_result res;
	struct dt_transport *ta, *tb;
	struct dest_dev *dd = calloc(1, sizeof(*dd));
	struct dest d = {0};
	struct source s = {0};
	struct dt_vfu_client_opts co = {.size = sizeof(co), .max_data_xfer_size = 4096};
	struct dt_dirty_set *set;
	struct dt_vfu_client *dc;
	uint8_t blob[BLOB];
	bool ok;
	pid_t pid;
	int ret;

	assert_true(da != MAP_FAILED);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sp[0]);
		child_main(sp[1], give_size);
	}
	close(sp[1]);
	s.c = dt_vfu_client_from_fd(sp[0], &co);
	assert_non_null(s.c);
	assert_int_equal(
		dt_vfu_client_dma_map(s.c, IOVA_A, REGION, fd_a, 0, a, PROT_READ | PROT_WRITE), 0);
	assert_int_equal(
		dt_vfu_client_dma_map(s.c, IOVA_B, REGION, fd_b, 0, b, PROT_READ | PROT_WRITE), 0);
	assert_int_equal(dt_vfu_client_dma_logging_start(s.c, NULL, 0, NULL), 0);
	set = dt_dirty_set_new(&dso);
	assert_non_null(set);
	if (hook)
		assert_int_equal(dt_vfu_client_add_to_set(s.c, set, IOVA_A), 0);
	assert_int_equal(dt_vfu_client_migrate_device(s.c, "vfu-dev", &sdev), 0);
	if (precopy)
		assert_int_equal(dt_vfu_client_mig_set_state(s.c, DT_VFU_MIG_PRE_COPY), 0);

	dc = dest_dev_start(dd);
	assert_int_equal(dt_vfu_client_migrate_device(dc, "vfu-dev", &ddev), 0);
	assert_int_equal(dt_transport_pair(NULL, &ta, &tb), 0);
	d.opts = (struct dt_migrate_dest_opts){.size = sizeof(d.opts),
					       .transport = tb,
					       .regions = dst_regions,
					       .nregions = 2,
					       .devices = &ddev,
					       .ndevices = 1};
	assert_int_equal(pthread_create(&d.thread, NULL, dest_main, &d), 0);

	so.transport = ta;
	so.set = set;
	so.regions = src_regions;
	so.nregions = 2;
	so.devices = &sdev;
	so.ndevices = 1;
	so.max_bandwidth = 40ull << 20; /* round 0 takes ~100 ms: the device writes meanwhile */
	so.opaque = &s;
	so.pause = src_pause;
	so.resume = src_resume;
	so.on_round = src_round;
	ret = dt_migrate_source(&so, &res);
	pthread_join(d.thread, NULL);

	make_blob(blob);
	ok = ret == 0 && d.ret == 0 && !memcmp(a, da, REGION) && !memcmp(b, da + REGION, REGION);
	printf("  hook %d, size from server %d, pre-copy %d: source %d, destination %d, "
	       "%u rounds, %llu with device pages, device state %zu bytes, memory %s\n",
	       hook, give_size, precopy, ret, d.ret, res.rounds,
	       (unsigned long long)s.device_rounds, dd->len,
	       ok ? "equal" : "DIFFERENT or not migrated");
	if (hook) {
		if (!ok)
			fail_msg("the migration failed (%d / %d) or the memory differs (seed %llu)",
				 ret, d.ret, (unsigned long long)seed);
		assert_int_equal(dd->len, BLOB);
		assert_memory_equal(dd->got, blob, BLOB);
		assert_int_equal(res.device_bytes, BLOB);
		assert_int_equal(s.pauses, 1);
		assert_int_equal(s.resumes, 0);
		assert_true(s.device_rounds >= 1 || res.rounds == 1);
		/* The pending estimate: exact from the server; with the heuristic in pre-copy,
		 * the drained data and as much again (no hint given). */
		if (give_size)
			assert_int_equal(s.device_bytes, BLOB);
		else if (precopy)
			assert_int_equal(s.device_bytes, 2 * PRE_LEN);
	} else if (s.pauses) {
		assert_int_equal(s.resumes, ret ? 1 : 0);
	}

	dt_vfu_client_free(dc);
	pthread_join(dd->thread, NULL);
	dt_vfu_server_free(dd->s);
	free(dd);
	dt_vfu_client_free(s.c);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	dt_dirty_set_free(set);
	dt_migrate_dest_result_release(&d.res);
	dt_transport_free(ta);
	dt_transport_free(tb);
	munmap(a, REGION);
	munmap(b, REGION);
	munmap(da, 2 * REGION);
	close(fd_a);
	close(fd_b);
	return ok;
}

static void test_migrate_with_device(void **state)
{
	assert_true(migrate_once(true, true, true));
}

static void test_migrate_pending_heuristic(void **state)
{
	assert_true(migrate_once(true, false, true));
	assert_true(migrate_once(true, false, false));
}

/* Without the client's hook the device's pages never reach the dirty set: the stopping
 * burst alone guarantees a loss, which the destination's digest (or the compare) sees. */
static void test_negative_control(void **state)
{
	if (migrate_once(false, true, true))
		fail_msg("the migration without the hook reproduced the memory: the hook test "
			 "proves nothing (seed %llu)",
			 (unsigned long long)seed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_migrate_with_device),
		cmocka_unit_test(test_migrate_pending_heuristic),
		cmocka_unit_test(test_negative_control),
	};

	seed_init("");
	signal(SIGPIPE, SIG_IGN);
	if (getenv("DT_TEST_LOG"))
		dt_set_log(dt_log_stderr, NULL, DT_LOG_DEBUG);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
