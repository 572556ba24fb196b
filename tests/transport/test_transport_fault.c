/* SPDX-License-Identifier: MIT */
/*
 * tests/transport/test_transport_fault.c - failure injection into the transport
 * constructors (suites 'fault' and 'unit').
 *
 * For every scenario (listen TCP on an address and on every address, listen UNIX, connect
 * TCP and UNIX, accept, wrap a socket or a pipe fd) the n-th system call of the call under
 * test is made to fail (sys_fail_nth), then the n-th allocation (alloc_fail_nth), for
 * n = 1, 2, ... until the call makes fewer than n. Each time the call must fail with exactly
 * the injected error (-EIO, -ENOMEM) and leave no descriptor open (counted in
 * /proc/self/fd) and no socket file behind; the caller's fd of a failed dt_transport_from_fd
 * stays open. ASan's leak check runs at exit. Then the scenario without injection succeeds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "sys/sys.h"
#include "test_util.h"
#include "transport_test.h"

static char tmpdir[64];
static char sock_path[128];

struct world {
	struct dt_listener *l;	   /* set up beforehand */
	struct dt_transport *peer; /* set up beforehand */
	int fd[2];
	struct dt_listener *made_l; /* made by the call under test */
	struct dt_transport *made;
};

struct scenario {
	const char *name;
	void (*setup)(struct world *w);
	int (*op)(struct world *w); /* the call under test: 0 or -errno */
};

static int made_or_errno(const void *p)
{
	return p ? 0 : -errno;
}

static void setup_nothing(struct world *w)
{
}

static void setup_tcp_listener(struct world *w)
{
	w->l = dt_listen_tcp("127.0.0.1", 0);
	assert_non_null(w->l);
}

static void setup_unix_listener(struct world *w)
{
	w->l = dt_listen_unix(sock_path);
	assert_non_null(w->l);
}

static void setup_pending_connection(struct world *w)
{
	setup_tcp_listener(w);
	w->peer = dt_connect_tcp("127.0.0.1", dt_listener_port(w->l), 5000);
	assert_non_null(w->peer);
}

static void setup_socketpair(struct world *w)
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, w->fd), 0);
}

static void setup_pipe(struct world *w)
{
	assert_int_equal(pipe2(w->fd, O_CLOEXEC), 0);
}

static int op_listen_tcp_addr(struct world *w)
{
	return made_or_errno(w->made_l = dt_listen_tcp("127.0.0.1", 0));
}

static int op_listen_tcp_any(struct world *w)
{
	return made_or_errno(w->made_l = dt_listen_tcp(NULL, 0));
}

static int op_listen_unix(struct world *w)
{
	return made_or_errno(w->made_l = dt_listen_unix(sock_path));
}

static int op_connect_tcp(struct world *w)
{
	return made_or_errno(w->made = dt_connect_tcp("127.0.0.1", dt_listener_port(w->l), 5000));
}

static int op_connect_unix(struct world *w)
{
	return made_or_errno(w->made = dt_connect_unix(sock_path, 5000));
}

static int op_accept(struct world *w)
{
	return made_or_errno(w->made = dt_listener_accept(w->l, 5000));
}

static int op_from_fd(struct world *w)
{
	return made_or_errno(w->made = dt_transport_from_fd(w->fd[0]));
}

static const struct scenario scenarios[] = {
	{"dt_listen_tcp(127.0.0.1)", setup_nothing, op_listen_tcp_addr},
	{"dt_listen_tcp(NULL)", setup_nothing, op_listen_tcp_any},
	{"dt_listen_unix", setup_nothing, op_listen_unix},
	{"dt_connect_tcp", setup_tcp_listener, op_connect_tcp},
	{"dt_connect_unix", setup_unix_listener, op_connect_unix},
	{"dt_listener_accept", setup_pending_connection, op_accept},
	{"dt_transport_from_fd(socket)", setup_socketpair, op_from_fd},
	{"dt_transport_from_fd(pipe)", setup_pipe, op_from_fd},
};

/* Did the armed sys_fail_nth() fire? If not, the call made fewer system calls than n. */
static bool sys_injection_fired(void)
{
	for (int i = 0; i < 100000; i++)
		if (sys_should_fail())
			return false; /* it was still armed: it fired just now, on our count */
	sys_fail_nth(0);
	return true;
}

static void world_free(struct world *w)
{
	/* a from_fd transport owns fd[0]; a failed one left it to us */
	if (w->fd[0] >= 0 && !w->made)
		close(w->fd[0]);
	if (w->fd[1] >= 0)
		close(w->fd[1]);
	dt_transport_free(w->made);
	dt_transport_free(w->peer);
	dt_listener_free(w->made_l);
	dt_listener_free(w->l);
}

/* Run scenario s with the n-th syscall (sys) or allocation failing; false once n is past
 * the calls it makes. */
static bool run_injected(const struct scenario *s, unsigned long n, bool sys)
{
	struct world w = {.fd = {-1, -1}};
	int fds0 = count_open_fds(), fds1, ret;
	struct stat st;
	bool fired;

	ctx_set("%s, %s %lu fails", s->name, sys ? "system call" : "allocation", n);
	s->setup(&w);
	fds1 = count_open_fds();
	if (sys) {
		sys_fail_nth(n);
		ret = s->op(&w);
		fired = sys_injection_fired();
	} else {
		alloc_fail_nth(n);
		ret = s->op(&w);
		fired = alloc_fail_nth(0) >= n;
	}
	if (fired) {
		EXPECT_EQ(ret, (uint64_t)(sys ? -EIO : -ENOMEM));
		EXPECT_EQ(count_open_fds(), fds1);
		if (w.fd[0] >= 0) /* the caller's fd is still open */
			EXPECT_TRUE(fcntl(w.fd[0], F_GETFD) >= 0);
		if (s->op == op_listen_unix) /* nothing left at the path */
			EXPECT_TRUE(lstat(sock_path, &st) < 0 && errno == ENOENT);
	} else {
		EXPECT_EQ(ret, 0);
	}
	world_free(&w);
	EXPECT_EQ(count_open_fds(), fds0);
	return fired;
}

static void test_sys_failures(void **state)
{
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		unsigned long n;

		for (n = 1; run_injected(&scenarios[i], n, true); n++)
			;
		printf("%s: %lu system calls, each failed once\n", scenarios[i].name, n - 1);
		EXPECT_TRUE(n > 1);
	}
}

static void test_alloc_failures(void **state)
{
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		unsigned long n;

		for (n = 1; run_injected(&scenarios[i], n, false); n++)
			;
		printf("%s: %lu allocations, each failed once\n", scenarios[i].name, n - 1);
		EXPECT_TRUE(n > 1);
	}
}

/* A transport whose send or recv hits an injected failure reports it and frees cleanly. */
static void test_stream_failure(void **state)
{
	struct world w = {.fd = {-1, -1}};
	struct dt_transport *a, *b;
	uint8_t buf[4096] = {0};

	setup_pending_connection(&w);
	a = w.peer;
	b = dt_listener_accept(w.l, 5000);
	assert_non_null(b);
	sys_fail_nth(1);
	EXPECT_EQ(dt_transport_send(a, buf, sizeof(buf)), (uint64_t)-EIO);
	EXPECT_EQ(dt_transport_bytes_sent(a), 0);
	assert_int_equal(dt_transport_send(a, buf, sizeof(buf)), 0);
	sys_fail_nth(1);
	EXPECT_EQ(dt_transport_recv(b, buf, sizeof(buf)), (uint64_t)-EIO);
	assert_int_equal(dt_transport_recv(b, buf, sizeof(buf)), 0);
	dt_transport_free(b);
	world_free(&w);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sys_failures),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_stream_failure),
	};
	int ret;

	test_seed_init(argc, argv);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/dt-transport-fault-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(sock_path, sizeof(sock_path), "%s/sock", tmpdir);
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	unlink(sock_path);
	rmdir(tmpdir);
	return ret;
}
