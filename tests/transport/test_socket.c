/* SPDX-License-Identifier: MIT */
/*
 * tests/transport/test_socket.c - TCP and UNIX loopback, and fds handed over (suite 'unit'):
 * exact bytes both ways in random pieces, 64 MiB with a concurrent reader, sendv with
 * thousands of iovecs through a 4 KiB send buffer (partial writes) with and without a
 * timeout (the blocking and the poll paths), recv/send/accept timeouts, a closed peer
 * (-ECONNRESET at the start or in the middle of a record, -EPIPE on send), shutdown from
 * another thread waking a blocked recv or send, the UNIX socket file (mode 0600 whatever the
 * umask, an old socket replaced, another file refused, removed at free), a refused connect,
 * the dual-stack listener, a file as a stream, and argument checks.
 * Randomized: the seed is printed, replay with --seed N.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "test_util.h"
#include "transport_test.h"

static char tmpdir[64];

static const char *tmp_path(const char *name)
{
	static char path[128];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return path;
}

enum kind { TCP4, TCP_ANY, UNIX_SOCK };
static const char *const kind_names[] = {"tcp 127.0.0.1", "tcp any", "unix"};

static struct dt_listener *listen_kind(enum kind k)
{
	struct dt_listener *l = k == UNIX_SOCK ? dt_listen_unix(tmp_path("sock"))
					       : dt_listen_tcp(k == TCP4 ? "127.0.0.1" : NULL, 0);

	assert_non_null(l);
	if (k != UNIX_SOCK)
		assert_int_not_equal(dt_listener_port(l), 0);
	return l;
}

static struct dt_transport *connect_kind(enum kind k, struct dt_listener *l)
{
	if (k == UNIX_SOCK)
		return dt_connect_unix(tmp_path("sock"), 5000);
	return dt_connect_tcp("127.0.0.1", dt_listener_port(l), 5000);
}

/* A connected pair of kind k: *a the connecting end, *b the accepted one. */
static void connect_pair(enum kind k, struct dt_transport **a, struct dt_transport **b)
{
	struct dt_listener *l = listen_kind(k);

	*a = connect_kind(k, l);
	assert_non_null(*a);
	*b = dt_listener_accept(l, 5000);
	assert_non_null(*b);
	dt_listener_free(l);
}

static void test_roundtrip_random(void **state)
{
	for (int k = TCP4; k <= UNIX_SOCK; k++) {
		struct dt_transport *a, *b;

		connect_pair(k, &a, &b);
		for (int round = 0; round < 12; round++) {
			size_t chunk = 1 + (size_t)rng_below(rng_below(2) ? 300000 : 16);
			/* tiny pieces are a system call each: keep those streams short */
			uint64_t total =
				1 + rng_below(rng_below(2) ? (chunk > 16 ? 2u << 20 : 30000) : 100);

			if (round == 6) { /* the poll path: every call has a deadline */
				dt_transport_set_timeout(a, 10000);
				dt_transport_set_timeout(b, 10000);
			}
			ctx_set("%s round %d", kind_names[k], round);
			check_stream(a, b, total, chunk, round & 1);
			check_stream(b, a, total / 3 + 1, chunk, !(round & 1));
		}
		dt_transport_free(a);
		dt_transport_free(b);
	}
}

static void test_large_64m(void **state)
{
	for (int k = TCP4; k <= UNIX_SOCK; k += UNIX_SOCK - TCP4) {
		struct dt_transport *a, *b;

		connect_pair(k, &a, &b);
		check_stream(a, b, 64ull << 20, 1u << 20, k == UNIX_SOCK);
		dt_transport_free(a);
		dt_transport_free(b);
	}
}

/*
 * sendv of 3000 iovecs (some empty) through a socket whose send buffer is 4 KiB: sendmsg
 * must take part of the vector many times over and the rest must follow in order.
 */
static void check_sendv_partial(int fd_writer, struct dt_transport *reader_end, int timeout_ms)
{
	enum { NIOV = 3000 };
	int small = 4096;
	struct iovec *iov = calloc(NIOV, sizeof(*iov));
	uint8_t *buf = malloc(NIOV * 2000);
	uint64_t salt = rng_next(), total = 0;
	struct dt_transport *w;
	struct reader r;

	assert_non_null(iov);
	assert_non_null(buf);
	assert_int_equal(setsockopt(fd_writer, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	w = dt_transport_from_fd(fd_writer);
	assert_non_null(w);
	dt_transport_set_timeout(w, timeout_ms);
	dt_transport_set_timeout(reader_end, timeout_ms);
	for (int i = 0; i < NIOV; i++) {
		size_t n = rng_below(5) ? rng_below(2000) : 0;

		iov[i] = (struct iovec){.iov_base = buf + total, .iov_len = n};
		total += n;
	}
	pattern_fill(buf, salt, 0, total);
	ctx_set("sendv %d iovecs, %llu bytes, timeout %d", NIOV, (unsigned long long)total,
		timeout_ms);
	reader_start(&r, reader_end, total, salt, 3000);
	EXPECT_EQ(dt_transport_sendv(w, iov, NIOV), 0);
	reader_join(&r);
	EXPECT_EQ(r.ret, 0);
	EXPECT_EQ(r.bad_at, UINT64_MAX);
	EXPECT_EQ(dt_transport_bytes_sent(w), total);
	dt_transport_free(w);
	free(buf);
	free(iov);
}

static void test_sendv_partial_writes(void **state)
{
	for (int timeout = -1; timeout <= 10000; timeout += 10001) {
		struct dt_listener *l = listen_kind(TCP4);
		struct sockaddr_in sin = {.sin_family = AF_INET,
					  .sin_port = htons(dt_listener_port(l)),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int fd = socket(AF_INET, SOCK_STREAM, 0), sv[2];
		struct dt_transport *b;

		/* TCP: a raw socket with a small buffer, handed over */
		assert_true(fd >= 0);
		assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
		b = dt_listener_accept(l, 5000);
		assert_non_null(b);
		check_sendv_partial(fd, b, timeout);
		dt_transport_free(b);
		dt_listener_free(l);

		/* UNIX: a socketpair */
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		b = dt_transport_from_fd(sv[1]);
		assert_non_null(b);
		check_sendv_partial(sv[0], b, timeout);
		dt_transport_free(b);
	}
}

static void test_timeouts(void **state)
{
	for (int k = TCP4; k <= UNIX_SOCK; k += UNIX_SOCK - TCP4) {
		struct dt_transport *a, *b;
		size_t big = 64u << 20;
		uint8_t *buf = calloc(1, big);
		uint64_t t0, dt;

		assert_non_null(buf);
		ctx_set("%s", kind_names[k]);
		connect_pair(k, &a, &b);
		assert_int_equal(dt_transport_set_timeout(b, 100), 0);
		t0 = now_ms();
		EXPECT_EQ(dt_transport_recv(b, buf, 1), (uint64_t)-ETIMEDOUT);
		dt = now_ms() - t0;
		EXPECT_TRUE(dt >= 95 && dt < 5000);

		/* nobody reads: the buffers fill, then the send times out having moved a part */
		assert_int_equal(dt_transport_set_timeout(a, 200), 0);
		t0 = now_ms();
		EXPECT_EQ(dt_transport_send(a, buf, big), (uint64_t)-ETIMEDOUT);
		dt = now_ms() - t0;
		EXPECT_TRUE(dt >= 195 && dt < 5000);
		EXPECT_TRUE(dt_transport_bytes_sent(a) > 0 && dt_transport_bytes_sent(a) < big);

		/* the stream is still usable: what went out arrives in order */
		assert_int_equal(dt_transport_set_timeout(b, 5000), 0);
		assert_int_equal(dt_transport_recv(b, buf, dt_transport_bytes_sent(a)), 0);
		dt_transport_free(a);
		dt_transport_free(b);
		free(buf);
	}
}

/* What was sent and not taken yet: the send queue, which the engine counts out of a round. */
static void test_unsent(void **state)
{
	for (int k = TCP4; k <= UNIX_SOCK; k += UNIX_SOCK - TCP4) {
		struct dt_transport *a, *b, *ma, *mb;
		uint8_t buf[65536] = {1};
		int64_t q = 0;

		ctx_set("%s", kind_names[k]);
		connect_pair(k, &a, &b);
		if (k == UNIX_SOCK) {
			EXPECT_EQ(dt_transport_unsent(a), -ENOTSUP);
		} else {
			EXPECT_EQ(dt_transport_unsent(a), 0);
			assert_int_equal(dt_transport_send(a, buf, sizeof(buf)), 0);
			/* unacknowledged bytes: loopback acks at once, so often 0 already */
			q = dt_transport_unsent(a);
			EXPECT_TRUE(q >= 0 && q <= (int64_t)sizeof(buf));
			assert_int_equal(dt_transport_recv(b, buf, sizeof(buf)), 0);
			for (int i = 0; i < 100 && dt_transport_unsent(a) > 0; i++)
				usleep(1000);
			EXPECT_EQ(dt_transport_unsent(a), 0);
			/* the peer stops reading: what its window refuses waits in our queue */
			{
				size_t big = 16u << 20;
				uint8_t *lots = calloc(1, big);

				assert_non_null(lots);
				assert_int_equal(dt_transport_set_timeout(a, 200), 0);
				EXPECT_EQ(dt_transport_send(a, lots, big), (uint64_t)-ETIMEDOUT);
				EXPECT_TRUE(dt_transport_unsent(a) > 0);
				free(lots);
			}
		}
		dt_transport_free(a);
		dt_transport_free(b);
		assert_int_equal(dt_transport_pair(NULL, &ma, &mb), 0);
		EXPECT_EQ(dt_transport_unsent(ma), -ENOTSUP);
		dt_transport_free(ma);
		dt_transport_free(mb);
	}
	EXPECT_EQ(dt_transport_unsent(NULL), -EINVAL);
}

static void test_accept_timeout(void **state)
{
	struct dt_listener *l = listen_kind(TCP4);
	uint64_t t0 = now_ms();

	errno = 0;
	assert_null(dt_listener_accept(l, 100));
	EXPECT_EQ(errno, ETIMEDOUT);
	EXPECT_TRUE(now_ms() - t0 >= 95);
	assert_null(dt_listener_accept(l, 0));
	EXPECT_EQ(errno, ETIMEDOUT);
	dt_listener_free(l);
}

static void test_peer_closed(void **state)
{
	for (int k = TCP4; k <= UNIX_SOCK; k += UNIX_SOCK - TCP4) {
		struct dt_transport *a, *b;
		uint8_t buf[4096] = {0};
		int ret = 0, tries;

		ctx_set("%s", kind_names[k]);
		/* end of stream at the start of a record */
		connect_pair(k, &a, &b);
		dt_transport_free(a);
		EXPECT_EQ(dt_transport_recv(b, buf, 8), (uint64_t)-ECONNRESET);
		/* sends fail with -EPIPE (TCP may take a first send before the reset comes) */
		for (tries = 0; tries < 100 && !ret; tries++)
			ret = dt_transport_send(b, buf, sizeof(buf));
		EXPECT_EQ(ret, (uint64_t)-EPIPE);
		dt_transport_free(b);

		/* end of stream in the middle of a record */
		connect_pair(k, &a, &b);
		assert_int_equal(dt_transport_send(a, "0123456789", 10), 0);
		dt_transport_free(a);
		EXPECT_EQ(dt_transport_recv(b, buf, 20), (uint64_t)-ECONNRESET);
		EXPECT_EQ(dt_transport_bytes_received(b), 10);
		assert_memory_equal(buf, "0123456789", 10);
		dt_transport_free(b);
	}
}

/* Receive until an error (at most 256 MiB): the error. */
static int drain(struct dt_transport *t)
{
	static uint8_t buf[65536];
	int ret = 0;

	for (int i = 0; i < 4096 && !ret; i++)
		ret = dt_transport_recv(t, buf, sizeof(buf));
	return ret;
}

static void test_shutdown_wakes(void **state)
{
	static const int timeouts[] = {-1, 30000}; /* the blocking and the poll paths */

	for (int k = TCP4; k <= UNIX_SOCK; k += UNIX_SOCK - TCP4) {
		for (int ti = 0; ti < 2; ti++) {
			for (int variant = 0; variant < 4; variant++) {
				bool send = variant >= 2, same_end = variant & 1;
				struct dt_transport *a, *b, *who;
				uint8_t byte = 0;

				ctx_set("%s timeout %d: blocked %s, shutdown on the %s end",
					kind_names[k], timeouts[ti], send ? "send" : "recv",
					same_end ? "same" : "other");
				connect_pair(k, &a, &b);
				dt_transport_set_timeout(a, timeouts[ti]);
				dt_transport_set_timeout(b, timeouts[ti]);
				who = same_end ? a : b;
				/* a recv with nothing coming, or a send far larger than the buffers
				 * with nobody reading */
				check_shutdown_wakes(a, who, send, send ? 64u << 20 : 100,
						     send ? -EPIPE : -ECONNRESET);
				/* both ends are broken for good; the peer of the end shut down may
				 * first read what was in flight */
				EXPECT_EQ(dt_transport_recv(who, &byte, 1), (uint64_t)-ECONNRESET);
				EXPECT_EQ(dt_transport_send(who, &byte, 1), (uint64_t)-EPIPE);
				EXPECT_EQ(drain(who == a ? b : a), (uint64_t)-ECONNRESET);
				dt_transport_free(a);
				dt_transport_free(b);
			}
		}
	}
}

/* As shutdown(SHUT_RDWR): the peer still receives what was sent before, then the end. */
static void test_shutdown_then_peer_drains(void **state)
{
	for (int k = TCP4; k <= UNIX_SOCK; k += UNIX_SOCK - TCP4) {
		struct dt_transport *a, *b;
		uint8_t buf[4096] = {0};
		int ret = 0;

		ctx_set("%s", kind_names[k]);
		connect_pair(k, &a, &b);
		assert_int_equal(dt_transport_send(a, "0123456789", 10), 0);
		dt_transport_shutdown(a);
		EXPECT_EQ(dt_transport_send(a, buf, 1), (uint64_t)-EPIPE);
		EXPECT_EQ(dt_transport_recv(a, buf, 1), (uint64_t)-ECONNRESET);
		assert_int_equal(dt_transport_recv(b, buf, 10), 0);
		assert_memory_equal(buf, "0123456789", 10);
		EXPECT_EQ(dt_transport_recv(b, buf, 1), (uint64_t)-ECONNRESET);
		/* TCP may take a first send before the reset comes back */
		for (int tries = 0; tries < 100 && !ret; tries++)
			ret = dt_transport_send(b, buf, sizeof(buf));
		EXPECT_EQ(ret, (uint64_t)-EPIPE);
		dt_transport_free(a);
		dt_transport_free(b);
	}
}

/* A pipe's read end handed over: no socket shutdown, the eventfd wakes the reader. */
static void test_shutdown_wakes_pipe(void **state)
{
	struct dt_transport *r, *w;
	uint8_t buf[8];
	int p[2];

	assert_int_equal(pipe(p), 0);
	r = dt_transport_from_fd(p[0]);
	w = dt_transport_from_fd(p[1]);
	assert_non_null(r);
	assert_non_null(w);
	assert_int_equal(dt_transport_send(w, "abc", 3), 0);
	assert_int_equal(dt_transport_recv(r, buf, 3), 0);
	assert_memory_equal(buf, "abc", 3);
	check_shutdown_wakes(r, r, false, 8, -ECONNRESET);
	/* a blocked write on a full pipe too */
	check_shutdown_wakes(w, w, true, 16u << 20, -EPIPE);
	dt_transport_free(r);
	dt_transport_free(w);
}

static void test_unix_socket_file(void **state)
{
	const char *path = tmp_path("file.sock");
	struct dt_listener *l1, *l2;
	struct dt_transport *a, *b;
	struct stat st;
	mode_t old = umask(0); /* the most permissive umask: the file must still be 0600 */
	int fd;

	l1 = dt_listen_unix(path);
	umask(old);
	assert_non_null(l1);
	assert_int_equal(lstat(path, &st), 0);
	EXPECT_TRUE(S_ISSOCK(st.st_mode));
	EXPECT_EQ(st.st_mode & 07777, 0600);

	/* an existing socket file is replaced: connections go to the new listener */
	l2 = dt_listen_unix(path);
	assert_non_null(l2);
	a = dt_connect_unix(path, 5000);
	assert_non_null(a);
	b = dt_listener_accept(l2, 5000);
	assert_non_null(b);
	errno = 0;
	assert_null(dt_listener_accept(l1, 0));
	EXPECT_EQ(errno, ETIMEDOUT);
	dt_transport_free(a);
	dt_transport_free(b);
	/* freeing the replaced listener leaves its successor's file alone */
	dt_listener_free(l1);
	assert_int_equal(lstat(path, &st), 0);
	dt_listener_free(l2);
	EXPECT_EQ(lstat(path, &st), (uint64_t)-1);
	EXPECT_EQ(errno, ENOENT);

	/* a file that is not a socket is never removed */
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "keep", 4), 4);
	close(fd);
	errno = 0;
	assert_null(dt_listen_unix(path));
	EXPECT_EQ(errno, EEXIST);
	assert_int_equal(lstat(path, &st), 0);
	EXPECT_TRUE(S_ISREG(st.st_mode));
	EXPECT_EQ(st.st_size, 4);
	unlink(path);
}

static void test_connect_refused(void **state)
{
	struct dt_listener *l = listen_kind(TCP4);
	uint16_t port = dt_listener_port(l);
	uint64_t t0;

	dt_listener_free(l); /* nobody listens on port now */
	errno = 0;
	t0 = now_ms();
	assert_null(dt_connect_tcp("127.0.0.1", port, 5000));
	EXPECT_EQ(errno, ECONNREFUSED);
	EXPECT_TRUE(now_ms() - t0 < 4000);
	errno = 0;
	assert_null(dt_connect_tcp("127.0.0.1", port, -1));
	EXPECT_EQ(errno, ECONNREFUSED);
	errno = 0;
	assert_null(dt_connect_unix(tmp_path("nobody"), 1000));
	EXPECT_EQ(errno, ENOENT);
}

static bool ipv6_loopback(void)
{
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) == 0;

	if (fd >= 0)
		close(fd);
	return ok;
}

/* Host NULL: every address, IPv4 and IPv6, on one port. */
static void test_listen_any_dual_stack(void **state)
{
	static const char *const hosts[] = {"127.0.0.1", "::1", "localhost"};
	struct dt_listener *l = listen_kind(TCP_ANY);
	bool v6 = ipv6_loopback();

	for (int i = 0; i < 3; i++) {
		struct dt_transport *a, *b;

		if (i == 1 && !v6) {
			printf("no IPv6 loopback here: ::1 not tried\n");
			continue;
		}
		ctx_set("connect to %s", hosts[i]);
		a = dt_connect_tcp(hosts[i], dt_listener_port(l), 5000);
		assert_non_null(a);
		b = dt_listener_accept(l, 5000);
		assert_non_null(b);
		check_stream(a, b, 100000, 5000, i & 1);
		check_stream(b, a, 100000, 5000, !(i & 1));
		dt_transport_free(a);
		dt_transport_free(b);
	}
	dt_listener_free(l);
	if (v6) { /* and an IPv6 address given by name */
		l = dt_listen_tcp("::1", 0);
		assert_non_null(l);
		dt_listener_free(l);
	}
}

/* A regular file as a stream: what is written reads back, its end is -ECONNRESET. */
static void test_file_fd(void **state)
{
	const char *path = tmp_path("stream.bin");
	uint64_t total = 3u << 20, salt = rng_next();
	struct dt_transport *w, *r;
	struct reader rd;
	uint8_t byte;
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	w = dt_transport_from_fd(fd);
	assert_non_null(w);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	r = dt_transport_from_fd(fd);
	assert_non_null(r);
	/* all written before reading starts: a reader at the end of a file sees the end */
	assert_int_equal(write_stream(w, total, salt, 100000, true, 16), 0);
	EXPECT_EQ(dt_transport_bytes_sent(w), total);
	reader_start(&rd, r, total, salt, 70000);
	reader_join(&rd);
	EXPECT_EQ(rd.ret, 0);
	EXPECT_EQ(rd.bad_at, UINT64_MAX);
	EXPECT_EQ(dt_transport_bytes_received(r), total);
	EXPECT_EQ(dt_transport_recv(r, &byte, 1), (uint64_t)-ECONNRESET);
	dt_transport_free(w);
	dt_transport_free(r);
	unlink(path);
}

static void test_bad_arguments(void **state)
{
	char longpath[200];
	int fd;

	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = 0;
	errno = 0;
	assert_null(dt_listen_unix(NULL));
	EXPECT_EQ(errno, EINVAL);
	assert_null(dt_listen_unix(""));
	EXPECT_EQ(errno, EINVAL);
	assert_null(dt_listen_unix(longpath));
	EXPECT_EQ(errno, ENAMETOOLONG);
	assert_null(dt_connect_unix(longpath, 10));
	EXPECT_EQ(errno, ENAMETOOLONG);
	assert_null(dt_connect_unix(NULL, 10));
	EXPECT_EQ(errno, EINVAL);
	assert_null(dt_connect_unix(tmp_path("x"), -2));
	EXPECT_EQ(errno, EINVAL);
	assert_null(dt_connect_tcp(NULL, 1, 10));
	EXPECT_EQ(errno, EINVAL);
	assert_null(dt_connect_tcp("127.0.0.1", 1, -5));
	EXPECT_EQ(errno, EINVAL);
	assert_null(dt_listener_accept(NULL, 10));
	EXPECT_EQ(errno, EINVAL);
	assert_null(dt_transport_from_fd(-1));
	EXPECT_EQ(errno, EINVAL);
	EXPECT_EQ(dt_listener_port(NULL), 0);
	dt_listener_free(NULL);

	/* a datagram socket is refused and stays the caller's */
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(fd >= 0);
	assert_null(dt_transport_from_fd(fd));
	EXPECT_EQ(errno, EINVAL);
	EXPECT_EQ(fcntl(fd, F_GETFD) >= 0, 1);
	close(fd);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_random),
		cmocka_unit_test(test_large_64m),
		cmocka_unit_test(test_sendv_partial_writes),
		cmocka_unit_test(test_timeouts),
		cmocka_unit_test(test_unsent),
		cmocka_unit_test(test_accept_timeout),
		cmocka_unit_test(test_peer_closed),
		cmocka_unit_test(test_shutdown_wakes),
		cmocka_unit_test(test_shutdown_then_peer_drains),
		cmocka_unit_test(test_shutdown_wakes_pipe),
		cmocka_unit_test(test_unix_socket_file),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_listen_any_dual_stack),
		cmocka_unit_test(test_file_fd),
		cmocka_unit_test(test_bad_arguments),
	};
	int ret;

	test_seed_init(argc, argv);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/dt-transport-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	rmdir(tmpdir);
	return ret;
}
