/* SPDX-License-Identifier: MIT */
/*
 * bench/migration/delay_relay.c - a TCP relay that adds a fixed one-way delay, because this
 * kernel has no sch_netem (tc cannot delay packets here).
 *
 *   delay_relay --listen HOST:PORT --connect HOST:PORT --delay-us US [--once]
 *   delay_relay --selftest [--delay-us US] [--bytes N]
 *
 * Every connection accepted on --listen is paired with a new connection to --connect, and
 * each direction is forwarded by two threads: a reader that reads chunks (up to 256 KiB) and
 * queues each with the time it may leave (now + the delay), and a writer that sleeps until the
 * head of the queue is due (clock_nanosleep, TIMER_ABSTIME; no polling) and writes it. So the
 * relay adds US microseconds each way: a ping-pong through it sees RTT + 2 x US. Bytes held per
 * direction are capped at 64 MiB (the reader waits), far above rate x delay at 10 Gbit/s and
 * 2 ms (2.5 MB). An end of stream is forwarded, delayed like the data, as a shutdown of the
 * write side; an error on one side shuts both down.
 *
 * What it does not emulate: the relay terminates TCP, so the sender's congestion window and
 * ACK clock see the link without the delay; only the application's round trips (and the
 * stream's bytes) see it.
 *
 * --listen prints "listening HOST:PORT" on stderr once it listens (PORT 0: any free port,
 * the line says which). --once: exit after the first connection ends.
 *
 * --selftest: in one process, an echo server, a relay in front of it, and a client: the median
 * round trip of 64-byte ping-pongs directly and through the relay (added latency against the
 * expected 2 x delay), then a one-way transfer of --bytes (default 4 GiB) directly and through
 * the relay (throughput). One JSON line per measurement on stdout.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define CHUNK	   (256u << 10)
#define MAX_QUEUED (64ull << 20)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* How late clock_nanosleep wakes up here (median, ns): measured at start, and taken off
 * every deadline, so that a chunk leaves on time rather than a wake-up latency late (about
 * 50 us in this VM, 10% of the 2 ms RTT). */
static uint64_t wake_latency_ns;

static void sleep_until(uint64_t t)
{
	struct timespec ts;

	if (t > wake_latency_ns)
		t -= wake_latency_ns;
	if (t <= now_ns())
		return;
	ts.tv_sec = (time_t)(t / 1000000000ull);
	ts.tv_nsec = (long)(t % 1000000000ull);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void calibrate(void)
{
	uint64_t late[101];

	for (int i = 0; i < 101; i++) {
		uint64_t due = now_ns() + 100000;

		sleep_until(due);
		late[i] = now_ns() - due;
	}
	qsort(late, 101, sizeof(*late), cmp_u64);
	wake_latency_ns = late[50];
}

struct chunk {
	struct chunk *next;
	uint64_t due;
	size_t len; /* 0: the end of the stream */
	char data[CHUNK];
};

struct dir {
	int from, to;
	uint64_t delay_ns;
	pthread_mutex_t mu;
	pthread_cond_t more, space;
	struct chunk *head, *tail, *spare;
	uint64_t queued;
	bool dead; /* the writer failed: the reader stops */
};

struct conn {
	int fd[2];
	struct dir d[2];
};

static void die(const char *what)
{
	fprintf(stderr, "delay_relay: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* The oldest queued chunk, waiting for one (d->mu held). */
static struct chunk *take(struct dir *d)
{
	struct chunk *c;

	while (!d->head)
		pthread_cond_wait(&d->more, &d->mu);
	c = d->head;
	d->head = c->next;
	if (!d->head)
		d->tail = NULL;
	return c;
}

/* A chunk written (or dropped) goes back to the spares, its bytes out of the queue (d->mu
 * held); the reader may reuse it once the lock goes. */
static void recycle(struct dir *d, struct chunk *c)
{
	d->queued -= c->len;
	c->next = d->spare;
	d->spare = c;
}

static void push(struct dir *d, struct chunk *c)
{
	pthread_mutex_lock(&d->mu);
	c->next = NULL;
	if (d->tail)
		d->tail->next = c;
	else
		d->head = c;
	d->tail = c;
	d->queued += c->len;
	pthread_cond_signal(&d->more);
	pthread_mutex_unlock(&d->mu);
}

/*
 * read(), and when the data arrived: the kernel's receive time of the last segment read
 * (SO_TIMESTAMPNS, realtime, moved to the monotonic clock), so that the reader's own wake-up
 * latency is not added to the delay; the time of the read when the kernel gives none.
 */
static ssize_t read_stamped(int fd, char *buf, size_t len, uint64_t *arrived)
{
	union {
		char buf[CMSG_SPACE(sizeof(struct timespec))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	do {
		msg.msg_control = ctl.buf;
		msg.msg_controllen = sizeof(ctl.buf);
		n = recvmsg(fd, &msg, 0);
	} while (n < 0 && errno == EINTR);
	*arrived = now_ns();
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); n > 0 && c; c = CMSG_NXTHDR(&msg, c)) {
		struct timespec rt, ts;
		uint64_t at, now_rt;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_TIMESTAMPNS)
			continue;
		memcpy(&ts, CMSG_DATA(c), sizeof(ts));
		clock_gettime(CLOCK_REALTIME, &rt);
		now_rt = (uint64_t)rt.tv_sec * 1000000000ull + (uint64_t)rt.tv_nsec;
		at = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
		/* A stamp from the future or older than 100 ms is not believed. */
		if (at && at <= now_rt && now_rt - at < 100000000ull)
			*arrived -= now_rt - at;
	}
	return n;
}

static void *reader_main(void *arg)
{
	struct dir *d = arg;
	uint64_t arrived;

	for (;;) {
		struct chunk *c;
		ssize_t n;

		pthread_mutex_lock(&d->mu);
		while (d->queued >= MAX_QUEUED && !d->dead)
			pthread_cond_wait(&d->space, &d->mu);
		if (d->dead) {
			pthread_mutex_unlock(&d->mu);
			break;
		}
		c = d->spare;
		if (c)
			d->spare = c->next;
		pthread_mutex_unlock(&d->mu);
		if (!c && !(c = malloc(sizeof(*c))))
			die("malloc");
		n = read_stamped(d->from, c->data, CHUNK, &arrived);
		c->len = n > 0 ? (size_t)n : 0;
		c->due = arrived + d->delay_ns;
		push(d, c);
		if (n <= 0)
			break;
	}
	return NULL;
}

static bool write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static void *writer_main(void *arg)
{
	struct dir *d = arg;

	for (;;) {
		struct chunk *c;
		bool ok, end;

		pthread_mutex_lock(&d->mu);
		c = take(d);
		pthread_mutex_unlock(&d->mu);
		sleep_until(c->due);
		end = !c->len;
		ok = !end && write_all(d->to, c->data, c->len);
		pthread_mutex_lock(&d->mu);
		recycle(d, c); /* the reader may refill it as soon as the lock goes */
		if (!ok)
			d->dead = true;
		pthread_cond_signal(&d->space);
		pthread_mutex_unlock(&d->mu);
		if (end) { /* the end of the stream, on time */
			shutdown(d->to, SHUT_WR);
			break;
		}
		if (!ok) { /* the receiver is gone: stop both ends of this direction */
			shutdown(d->to, SHUT_RDWR);
			shutdown(d->from, SHUT_RDWR);
			/* The reader ends with a chunk of length 0 (read returns 0 or fails). */
			do {
				pthread_mutex_lock(&d->mu);
				c = take(d);
				end = !c->len;
				recycle(d, c);
				pthread_mutex_unlock(&d->mu);
			} while (!end);
			break;
		}
	}
	return NULL;
}

static void free_chunks(struct chunk *c)
{
	while (c) {
		struct chunk *n = c->next;

		free(c);
		c = n;
	}
}

/* Forwards both directions of one pair of sockets until both have ended; then closes them. */
static void *conn_main(void *arg)
{
	struct conn *cn = arg;
	pthread_t th[4];

	for (int i = 0; i < 2; i++)
		if (pthread_create(&th[2 * i], NULL, reader_main, &cn->d[i]) ||
		    pthread_create(&th[2 * i + 1], NULL, writer_main, &cn->d[i]))
			die("pthread_create");
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 2; i++) {
		close(cn->fd[i]);
		free_chunks(cn->d[i].head);
		free_chunks(cn->d[i].spare);
		pthread_mutex_destroy(&cn->d[i].mu);
		pthread_cond_destroy(&cn->d[i].more);
		pthread_cond_destroy(&cn->d[i].space);
	}
	free(cn);
	return NULL;
}

static void set_nodelay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
}

static struct conn *conn_new(int a, int b, uint64_t delay_ns)
{
	struct conn *cn = calloc(1, sizeof(*cn));

	if (!cn)
		die("calloc");
	cn->fd[0] = a;
	cn->fd[1] = b;
	for (int i = 0; i < 2; i++) {
		cn->d[i].from = cn->fd[i];
		cn->d[i].to = cn->fd[1 - i];
		cn->d[i].delay_ns = delay_ns;
		pthread_mutex_init(&cn->d[i].mu, NULL);
		pthread_cond_init(&cn->d[i].more, NULL);
		pthread_cond_init(&cn->d[i].space, NULL);
	}
	return cn;
}

/* HOST:PORT (HOST may be empty or '*': any address) into a sockaddr. */
static bool parse_addr(const char *s, bool passive, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
	const char *colon = strrchr(s, ':');
	char host[256];
	size_t hl;

	if (!colon || (hl = (size_t)(colon - s)) >= sizeof(host))
		return false;
	memcpy(host, s, hl);
	host[hl] = 0;
	if (passive)
		hints.ai_flags = AI_PASSIVE;
	if (getaddrinfo(hl && strcmp(host, "*") ? host : NULL, colon + 1, &hints, &ai))
		return false;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return true;
}

static int listen_on(const struct sockaddr *sa, socklen_t len)
{
	int one = 1, fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, sa, len) || listen(fd, 16))
		die("bind/listen");
	return fd;
}

static int connect_to(const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	if (connect(fd, sa, len)) {
		close(fd);
		return -1;
	}
	set_nodelay(fd);
	return fd;
}

static uint16_t port_of(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len))
		die("getsockname");
	return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					      : ((struct sockaddr_in *)&ss)->sin_port);
}

struct relay {
	int lfd;
	struct sockaddr_storage to;
	socklen_t tolen;
	uint64_t delay_ns;
	bool once;
};

/* Accepts connections and starts a forwarder for each; with once, returns after the first
 * one ends. */
static void *relay_main(void *arg)
{
	struct relay *r = arg;

	for (;;) {
		int a = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC), b;
		pthread_t th;

		if (a < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die("accept");
		}
		set_nodelay(a);
		b = connect_to((struct sockaddr *)&r->to, r->tolen);
		if (b < 0) {
			fprintf(stderr, "delay_relay: connect: %s\n", strerror(errno));
			close(a);
			continue;
		}
		if (pthread_create(&th, NULL, conn_main, conn_new(a, b, r->delay_ns)))
			die("pthread_create");
		if (r->once) {
			pthread_join(th, NULL);
			return NULL;
		}
		pthread_detach(th);
	}
}

/* ---- --selftest ------------------------------------------------------------------------- */

struct server {
	int lfd;
	bool echo; /* else a sink: reads to the end, then closes */
};

static void *server_main(void *arg)
{
	struct server *s = arg;
	static char buf[CHUNK];
	int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		die("accept");
	set_nodelay(fd);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (s->echo && !write_all(fd, buf, (size_t)n))
			break;
	close(fd);
	return NULL;
}

/* A connection to 127.0.0.1:port, or -1. */
static int connect_loopback(uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

	return connect_to((struct sockaddr *)&sa, sizeof(sa));
}

/* Median round trip (ns) of n ping-pongs of 64 bytes to port. */
static uint64_t ping_pong(uint16_t port, int n)
{
	int fd = connect_loopback(port);
	uint64_t *rtt = calloc((size_t)n, sizeof(*rtt)), med;
	char msg[64] = "ping";

	if (fd < 0 || !rtt)
		die("ping-pong setup");
	for (int i = 0; i < n; i++) {
		uint64_t t0 = now_ns();
		size_t got = 0;

		if (!write_all(fd, msg, sizeof(msg)))
			die("ping write");
		while (got < sizeof(msg)) {
			ssize_t r = read(fd, msg + got, sizeof(msg) - got);

			if (r <= 0)
				die("ping read");
			got += (size_t)r;
		}
		rtt[i] = now_ns() - t0;
	}
	close(fd);
	qsort(rtt, (size_t)n, sizeof(*rtt), cmp_u64);
	med = rtt[n / 2];
	free(rtt);
	return med;
}

/* Seconds to send bytes to port and see the far end close (everything delivered). */
static double blast(uint16_t port, uint64_t bytes)
{
	int fd = connect_loopback(port);
	char *buf = malloc(CHUNK), c;
	uint64_t t0 = now_ns();

	if (fd < 0 || !buf)
		die("blast setup");
	memset(buf, 0x5a, CHUNK);
	for (uint64_t sent = 0; sent < bytes; sent += CHUNK)
		if (!write_all(fd, buf, CHUNK))
			die("blast write");
	shutdown(fd, SHUT_WR);
	if (read(fd, &c, 1) != 0)
		die("blast: expected the end of the stream");
	close(fd);
	free(buf);
	return (double)(now_ns() - t0) / 1e9;
}

/* A server (echo or sink) on a free loopback port; the relay in front of it, unless direct.
 * Returns the port to connect to; *th is the server's thread. */
static uint16_t start_pair(bool echo, bool direct, uint64_t delay_ns, pthread_t *th,
			   struct server *srv, struct relay *rel)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	pthread_t rth;

	srv->lfd = listen_on((struct sockaddr *)&sa, sizeof(sa));
	srv->echo = echo;
	if (pthread_create(th, NULL, server_main, srv))
		die("pthread_create");
	if (direct)
		return port_of(srv->lfd);
	sa.sin_port = htons(port_of(srv->lfd));
	memcpy(&rel->to, &sa, sizeof(sa));
	rel->tolen = sizeof(sa);
	sa.sin_port = 0;
	rel->lfd = listen_on((struct sockaddr *)&sa, sizeof(sa));
	rel->delay_ns = delay_ns;
	rel->once = true;
	if (pthread_create(&rth, NULL, relay_main, rel))
		die("pthread_create");
	pthread_detach(rth);
	return port_of(rel->lfd);
}

static int selftest(uint64_t delay_ns, uint64_t bytes)
{
	double us = (double)delay_ns / 1e3;
	uint64_t med[2];
	double secs[2];

	for (int via = 0; via < 2; via++) {
		struct server srv;
		struct relay rel;
		pthread_t th;
		uint16_t port = start_pair(true, !via, delay_ns, &th, &srv, &rel);

		med[via] = ping_pong(port, delay_ns >= 1000000 ? 200 : 2000);
		pthread_join(th, NULL);
		close(srv.lfd);
	}
	printf("{\"test\":\"latency\",\"delay_us\":%.1f,\"wake_latency_us\":%.1f,\"direct_rtt_us\":%.1f,\"relay_rtt_us\":%.1f,"
	       "\"added_us\":%.1f,\"expected_added_us\":%.1f,\"error_us\":%.1f}\n",
	       us, (double)wake_latency_ns / 1e3, (double)med[0] / 1e3, (double)med[1] / 1e3,
	       (double)(med[1] - med[0]) / 1e3, 2 * us, (double)(med[1] - med[0]) / 1e3 - 2 * us);
	fflush(stdout);
	for (int via = 0; via < 2; via++) {
		struct server srv;
		struct relay rel;
		pthread_t th;
		uint16_t port = start_pair(false, !via, delay_ns, &th, &srv, &rel);

		secs[via] = blast(port, bytes);
		pthread_join(th, NULL);
		close(srv.lfd);
	}
	printf("{\"test\":\"throughput\",\"delay_us\":%.1f,\"bytes\":%llu,\"direct_gbps\":%.2f,"
	       "\"relay_gbps\":%.2f}\n",
	       us, (unsigned long long)bytes, (double)bytes * 8 / secs[0] / 1e9,
	       (double)bytes * 8 / secs[1] / 1e9);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: delay_relay --listen HOST:PORT --connect HOST:PORT --delay-us US "
		   "[--once]\n"
		   "       delay_relay --selftest [--delay-us US] [--bytes N]\n");
}

int main(int argc, char **argv)
{
	const char *listen_s = NULL, *connect_s = NULL;
	uint64_t delay_us = 0, bytes = 4ull << 30;
	bool self = false, once = false;
	struct relay r = {0};
	struct sockaddr_storage la;
	socklen_t lalen;

	signal(SIGPIPE, SIG_IGN);
	/* Wake-ups within ~1 us of the deadline rather than the default 50 us slack. */
	(void)prctl(PR_SET_TIMERSLACK, 1000ul, 0, 0, 0);
	calibrate();
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end;

		if (!strcmp(a, "--selftest")) {
			self = true;
		} else if (!strcmp(a, "--once")) {
			once = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (v && !strcmp(a, "--listen")) {
			listen_s = v;
			i++;
		} else if (v && !strcmp(a, "--connect")) {
			connect_s = v;
			i++;
		} else if (v && (!strcmp(a, "--delay-us") || !strcmp(a, "--bytes"))) {
			uint64_t x = strtoull(v, &end, 10);

			if (end == v || *end || x > (1ull << 40)) {
				fprintf(stderr, "delay_relay: %s: bad number '%s'\n", a, v);
				return 2;
			}
			*(!strcmp(a, "--bytes") ? &bytes : &delay_us) = x;
			i++;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (self)
		return selftest(delay_us * 1000, bytes ? bytes : 1);
	if (!listen_s || !connect_s) {
		usage(stderr);
		return 2;
	}
	if (!parse_addr(listen_s, true, &la, &lalen) ||
	    !parse_addr(connect_s, false, &r.to, &r.tolen)) {
		fprintf(stderr, "delay_relay: bad address (expected HOST:PORT)\n");
		return 2;
	}
	r.lfd = listen_on((struct sockaddr *)&la, lalen);
	r.delay_ns = delay_us * 1000;
	r.once = once;
	fprintf(stderr, "listening %.*s:%u\n", (int)(strrchr(listen_s, ':') - listen_s), listen_s,
		port_of(r.lfd));
	relay_main(&r);
	return 0;
}
