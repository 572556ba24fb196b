/* SPDX-License-Identifier: MIT */
/*
 * tests/vmm/test_machine_vfu.c - end to end across a process boundary: the micro-VM with one
 * of its DMA test devices served over vfio-user by a child process (vdev_server.h), migrated
 * to a second machine whose device is served by another child process.
 *
 *  - for the LOGGING, PASSTHROUGH and EMULATED devices: the migration verifies (digests equal,
 *    every stamp of the guest and of the remote device's record in place on the destination,
 *    the device's state loaded there through MIG_DATA_WRITE), and the remote device writes on
 *    after the destination starts;
 *  - the negative control: without device tracking (no DMA logging, no pre-harvest hook) the
 *    digest refuses the stream and the remote device's record names stale pages: the checks
 *    above can fail, and what makes them pass is the DMA log fetched across the socket.
 *
 * Exits 77 without /dev/kvm.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/test_util.h"
#include "../kvm/kvm_check.h"
#include "machine.h"
#include "machine_test.h"
#include "vdev_server.h"

struct server {
	char path[64];
	pid_t pid;
};

/* A device server in a child process, serving one client; returns once it listens. */
static void server_start(struct server *s, const char *tag, enum vdev_type type)
{
	struct vdev_config cfg;
	struct stat st;

	snprintf(s->path, sizeof(s->path), "/tmp/dt-test-vfu-%d-%s.sock", (int)getpid(), tag);
	unlink(s->path);
	vdev_config_defaults(&cfg);
	cfg.writes_per_sec = 3000;
	cfg.pin_after_ms = 100;
	cfg.seed = test_seed;
	fflush(NULL);
	s->pid = fork();
	assert_true(s->pid >= 0);
	if (s->pid == 0) {
		struct vdev_server *srv = vdev_server_new(s->path, -1, type, &cfg);
		int ret = srv ? vdev_server_serve_one(srv) : -1;

		vdev_server_free(srv);
		_exit(ret ? 1 : 0);
	}
	for (int i = 0; i < 500 && stat(s->path, &st); i++)
		usleep(10000);
	assert_int_equal(stat(s->path, &st), 0);
	EXPECT_EQ(st.st_mode & 0777, 0600);
}

/* The server exits once its client went away. */
static void server_wait(struct server *s)
{
	int status = 0;

	for (int i = 0; i < 500 && waitpid(s->pid, &status, WNOHANG) == 0; i++)
		usleep(10000);
	if (waitpid(s->pid, &status, WNOHANG) == 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, &status, 0);
		fail_msg("device server %s still running after its client left", s->path);
	}
	EXPECT_TRUE(WIFEXITED(status));
	unlink(s->path);
}

/* Source with its device in server a, destination with its device in server b. */
static int migrate(enum vdev_type type, bool tracking, struct machine *src, struct dest *d,
		   struct server *a, struct server *b, struct dt_migrate_result *res)
{
	struct machine_opts os, od;

	server_start(a, "src", type);
	server_start(b, "dst", type);
	machine_test_opts(&os, tracking);
	machine_test_opts(&od, tracking);
	os.vfu_path = a->path;
	od.vfu_path = b->path;
	assert_int_equal(machine_new(src, &os, true), 0);
	assert_true(src->has_remote && src->remote.type == type && !src->dev[type]);
	assert_int_equal(machine_start(src), 0);
	assert_int_equal(machine_track_start(src), 0);
	usleep(400000);
	memset(d, 0, sizeof(*d));
	assert_int_equal(machine_new(&d->m, &od, false), 0);
	return machine_test_migrate(src, d, 0, true, res);
}

static void check_type(enum vdev_type type)
{
	struct server a, b;
	struct dt_migrate_result res;
	struct machine_check chk;
	struct machine src;
	struct dest d;
	uint64_t w0, w1;
	struct vm_verify v;

	ctx_set("remote device %s", vdev_type_name(type));
	assert_int_equal(migrate(type, true, &src, &d, &a, &b, &res), 0);
	/* the device server sealed guest memory against shrinking (it cannot SIGBUS) */
	for (unsigned bnk = 0; bnk < VM_NBANKS; bnk++)
		EXPECT_TRUE(fcntl(src.vm.bank_fd[bnk], F_GET_SEALS) & F_SEAL_SHRINK);
	assert_int_equal(d.ret, 0);
	EXPECT_EQ(d.res.digest, res.digest);
	EXPECT_EQ(d.res.ndevices_loaded, src.nmdev);
	machine_check(&d.m, &chk);
	EXPECT_EQ(chk.host.bad, 0);
	EXPECT_EQ(chk.dev_bad[type], 0);
	EXPECT_EQ(chk.dev_bad_total, 0);
	/* the remote device wrote, and its count moved with its state */
	w0 = machine_dev_writes(&src, type);
	EXPECT_TRUE(w0 > 0);
	EXPECT_EQ(machine_dev_writes(&d.m, type), w0);
	for (unsigned bnk = 0; bnk < VM_NBANKS; bnk++)
		EXPECT_EQ(memcmp(src.vm.banks[bnk].host, d.m.vm.banks[bnk].host,
				 src.vm.banks[bnk].size),
			  0);
	machine_free(&src);
	server_wait(&a);
	/* the destination's device runs on from the loaded state */
	assert_int_equal(machine_start(&d.m), 0);
	assert_int_equal(vm_guest_verify(&d.m.vm, 60000, &v), 0);
	EXPECT_EQ(v.bad, 0);
	usleep(300000);
	assert_int_equal(machine_pause(&d.m), 0);
	w1 = machine_dev_writes(&d.m, type);
	EXPECT_TRUE(w1 > w0);
	machine_check(&d.m, &chk);
	EXPECT_EQ(chk.dev_bad_total, 0);
	print_message("remote %s: %llu writes at switchover, %llu after running on; %u rounds\n",
		      vdev_type_name(type), (unsigned long long)w0, (unsigned long long)w1,
		      res.rounds);
	machine_free(&d.m);
	server_wait(&b);
}

static void test_logging(void **state)
{
	check_type(VDEV_LOGGING);
}

static void test_passthrough(void **state)
{
	check_type(VDEV_PASSTHROUGH);
}

static void test_emulated(void **state)
{
	check_type(VDEV_EMULATED);
}

/* Without the DMA log across the socket, the remote device's pages are stale. */
static void test_no_device_tracking(void **state)
{
	struct server a, b;
	struct dt_migrate_result res;
	struct machine_check chk;
	struct machine src;
	struct dest d;

	EXPECT_EQ(migrate(VDEV_LOGGING, false, &src, &d, &a, &b, &res), -EPROTO);
	EXPECT_EQ(d.ret, -EPROTO);
	machine_check(&d.m, &chk);
	EXPECT_EQ(chk.host.bad, 0);
	EXPECT_TRUE(chk.dev_bad[VDEV_LOGGING] > 0);
	print_message("without device tracking: %llu stale pages of the remote device, first "
		      "at 0x%llx\n",
		      (unsigned long long)chk.dev_bad[VDEV_LOGGING],
		      (unsigned long long)chk.dev_bad_gpa[VDEV_LOGGING][0]);
	machine_free(&src);
	machine_free(&d.m);
	server_wait(&a);
	server_wait(&b);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_logging),
		cmocka_unit_test(test_passthrough),
		cmocka_unit_test(test_emulated),
		cmocka_unit_test(test_no_device_tracking),
	};

	return machine_test_main(argc, argv, "machine_vfu", tests,
				 sizeof(tests) / sizeof(tests[0]));
}
