/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_migrate.c - the pre-copy migration engine end to end, source and destination
 * in one process (two threads) over TCP loopback.
 *
 * The "VM": anonymous memory (--mem-mib, 1 GiB by default) tracked by a uffd-wp dt_source
 * and a dt_iommu container (no device) in one dt_dirty_set, filled from a fixed seed: 1/8 of
 * the pages zero, each other page 2 KiB of random bytes and 2 KiB of a repeated 64-byte
 * pattern (zstd level 1 about halves it). The destination receives into a prefaulted buffer,
 * one byte of each page scribbled before every migration; after each, the two memories must
 * be equal (not timed).
 *
 * Part 1, throughput: an idle migration (no writer) of the whole memory, GB/s of the bytes
 * on the wire and of the memory over the whole migration (handshake to ACK) and over round 0
 * alone (the full pass), with and without DT_MIGRATE_COMPRESS; beside them, in the same
 * repetition loop, memcpy of the memory and a plain TCP blast of it (dt_transport_send in
 * 1 MiB chunks to a thread that dt_transport_recv's them into the destination buffer).
 *
 * Part 2, sweep: max_bandwidth set in the engine (--bw-mbps, 100 MB/s), a writer thread
 * writing 8 bytes into uniformly random pages at 0.1, 0.3, 0.6, 0.9 and 1.2 x that rate
 * (pages/s x 4096 B); the pause callback stops it. The ask callback always answers
 * SWITCHOVER, so every run finishes; whether and with which verdict the policy asked is
 * recorded. Per run: rounds, final verdict, predicted and actual downtime, total time, bytes
 * sent against the lower bound, approximated as (non-zero pages at the start + pages sent
 * in stop-and-copy) x 4096. --seeds writer seeds per rate; the table shows medians.
 *
 * Output: one JSON object per line on stdout, the tables on stderr. Nothing here judges
 * speed; --quick (16 MiB, one repetition, one seed, rate 0.6) proves the program works.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include <linux/vfio.h>

#include <dirtytrack/dirtytrack.h>

#include "migrate/wire.h"

#define BENCH_NAME "migrate"
#include "bench_common.h"

#define PAGE	  4096ull
#define GPA	  0x100000000ull /* where the memory sits in the set's address space */
#define CHUNK	  (1ull << 20)	 /* TCP blast: bytes per send */
#define MAX_REPS  15u
#define MAX_SEEDS 15u
#define NRATES	  5u

static const double rates[NRATES] = {0.1, 0.3, 0.6, 0.9, 1.2};

struct opts {
	uint64_t mem_mib, bw_mbps, max_downtime_ms, seed;
	unsigned reps, seeds;
	double only_rate; /* < 0: all */
	bool quick, no_throughput, no_sweep;
};

/* What one migration saw; filled by the callbacks and the result. */
struct run {
	struct dt_migrate_result res;
	struct dt_round_stats r0, last; /* round 0, and the round the switchover was decided in */
	unsigned asks;
	enum dt_verdict ask_verdict;
	uint64_t nonzero, writes, write_ns, writer_cpu_ns;
	uint64_t t_pause,
		pause_ns;      /* the pause callback: when, and how long (stopping the writer) */
	uint64_t harvest[2];   /* the engine's last harvest: start, end */
	uint64_t digest[2][2]; /* its first two digests after the pause: source, destination */
	uint64_t t_end;	       /* when the source sent END (its digest and final send done) */
	unsigned ndigests;
	uint64_t cpu_ns; /* the whole process's CPU time during the migration */
};

struct bench {
	uint64_t bytes, npages;
	uint8_t *mem, *dst;
	struct dt_source *cpu;
	struct dt_iommu *iommu;
	struct dt_dirty_set *set;
	struct dt_region region, dst_region;
	struct run *cur;
	unsigned nruns; /* migrations so far: "run" in the JSON lines */
	/* the writer */
	pthread_t writer;
	atomic_bool stop;
	bool running;
	double rate; /* pages per second */
	uint64_t wseed;
};

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median_dbl(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_dbl);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint8_t *map_prefaulted(uint64_t bytes)
{
	uint8_t *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	BENCH_CHECK(p != MAP_FAILED, "mmap of %" PRIu64 " bytes", bytes);
	memset(p, 0xee, bytes);
	return p;
}

static void fill(struct bench *b, uint64_t seed)
{
	for (uint64_t p = 0; p < b->npages; p++) {
		uint64_t st = seed + p, h = splitmix64(&st);
		uint64_t *w = (uint64_t *)(b->mem + p * PAGE);

		if (!(h % 8)) {
			memset(w, 0, PAGE);
			continue;
		}
		st = h; /* the pages' random streams must not overlap */
		for (unsigned i = 0; i < PAGE / 16; i++)
			w[i] = splitmix64(&st);
		for (unsigned i = PAGE / 16; i < PAGE / 8; i++)
			w[i] = h + i % 8;
	}
}

static uint64_t count_nonzero(const struct bench *b)
{
	uint64_t n = 0;

	for (uint64_t p = 0; p < b->npages; p++)
		n += !wire_page_is_zero(b->mem + p * PAGE, PAGE);
	return n;
}

/* Returns false (after a "skipped" line) when uffd-wp is not available here. */
static bool bench_setup(struct bench *b, const struct opts *o)
{
	struct dt_source_opts so = {.size = sizeof(so), .type = DT_SOURCE_UFFD_WP, .vm_fd = -1};
	struct dt_dirty_set_opts dso = {.size = sizeof(dso), .base = GPA};
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.iova = GPA,
	};
	int ret;

	memset(b, 0, sizeof(*b));
	b->bytes = o->mem_mib << 20;
	b->npages = b->bytes / PAGE;
	b->mem = map_prefaulted(b->bytes);
	b->dst = map_prefaulted(b->bytes);
	fill(b, o->seed);
	b->region = (struct dt_region){.addr = GPA, .size = b->bytes, .host = b->mem};
	b->dst_region = (struct dt_region){.addr = GPA, .size = b->bytes, .host = b->dst};
	so.regions = &b->region;
	so.nregions = 1;
	b->cpu = dt_source_new(&so);
	if (!b->cpu) {
		printf("{\"bench\":\"migrate\",\"skipped\":true,\"reason\":\"uffd-wp source: %s\"}\n",
		       strerror(errno));
		fprintf(stderr, "bench_migrate: skipped: no uffd-wp source (%s)\n",
			strerror(errno));
		return false;
	}
	b->iommu = dt_iommu_new();
	BENCH_CHECK(b->iommu, "dt_iommu_new");
	map.vaddr = (uintptr_t)b->mem;
	map.size = b->bytes;
	ret = dt_vfio_ioctl(b->iommu, VFIO_IOMMU_MAP_DMA, &map);
	BENCH_CHECK(!ret, "MAP_DMA: %d", ret);
	dso.length = b->bytes;
	b->set = dt_dirty_set_new(&dso);
	BENCH_CHECK(b->set, "dt_dirty_set_new");
	BENCH_CHECK(!dt_dirty_set_add_source(b->set, b->cpu) &&
			    !dt_dirty_set_add_iommu(b->set, b->iommu, GPA),
		    "adding the source and the container to the set");
	BENCH_CHECK(!dt_source_start(b->cpu) && !dt_iommu_dirty_start(b->iommu),
		    "starting the tracking");
	return true;
}

static void bench_teardown(struct bench *b)
{
	dt_dirty_set_free(b->set);
	dt_source_free(b->cpu);
	dt_iommu_free(b->iommu);
	munmap(b->mem, b->bytes);
	munmap(b->dst, b->bytes);
}

/* ---- the writer, the engine's callbacks ------------------------------------------------- */

static void *writer_main(void *arg)
{
	struct bench *b = arg;
	uint64_t st = b->wseed, done = 0, t0 = now_ns();
	const struct timespec nap = {0, 1000000}; /* the writes due come every ms */
	struct timespec cpu;

	while (!atomic_load_explicit(&b->stop, memory_order_relaxed)) {
		uint64_t due = (uint64_t)(b->rate * (double)(now_ns() - t0) / 1e9);

		if (done >= due) {
			nanosleep(&nap, NULL);
			continue;
		}
		for (unsigned n = 0; done < due && n < 64; n++, done++) {
			uint64_t r = splitmix64(&st), pg = rand_below(&st, b->npages);

			__atomic_store_n((uint64_t *)(b->mem + pg * PAGE) + r % (PAGE / 8), r | 1,
					 __ATOMIC_RELAXED);
		}
	}
	b->cur->writes = done;
	b->cur->write_ns = now_ns() - t0;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
	b->cur->writer_cpu_ns = (uint64_t)cpu.tv_sec * 1000000000ull + (uint64_t)cpu.tv_nsec;
	return NULL;
}

static void writer_stop(struct bench *b)
{
	if (!b->running)
		return;
	atomic_store(&b->stop, true);
	pthread_join(b->writer, NULL);
	b->running = false;
}

static int cb_pause(void *opaque)
{
	struct bench *b = opaque;

	b->cur->t_pause = now_ns();
	writer_stop(b);
	b->cur->pause_ns = now_ns() - b->cur->t_pause;
	return 0;
}

static enum dt_decision cb_ask(void *opaque, const struct dt_round_stats *r, unsigned n)
{
	struct bench *b = opaque;

	b->cur->asks++;
	b->cur->ask_verdict = r[n - 1].verdict;
	return DT_DECISION_SWITCHOVER;
}

static void cb_round(void *opaque, const struct dt_round_stats *s, const char *json)
{
	struct bench *b = opaque;

	printf("{\"bench\":\"migrate_round\",\"run\":%u,\"stats\":%s}\n", b->nruns, json);
	if (!s->round)
		b->cur->r0 = *s;
	b->cur->last = *s;
}

/*
 * Where the downtime goes, without touching the engine: the link wraps (meson.build,
 * -Wl,--wrap) the engine's calls of these three, to time the last harvest, the two digests of
 * the switchover (the source's, beside its final send, then the destination's) and END.
 * One migration at a time.
 */
static struct run *volatile timed;

int __real_dt_dirty_set_harvest(struct dt_dirty_set *set, uint32_t flags, struct dt_harvest *out);
int __wrap_dt_dirty_set_harvest(struct dt_dirty_set *set, uint32_t flags, struct dt_harvest *out)
{
	uint64_t t0 = now_ns();
	int ret = __real_dt_dirty_set_harvest(set, flags, out);

	if (timed) {
		timed->harvest[0] = t0;
		timed->harvest[1] = now_ns();
	}
	return ret;
}

int __real_wire_digest_regions(const struct wire_region *r, void *const *host, uint32_t n,
			       uint64_t *digest);
int __wrap_wire_digest_regions(const struct wire_region *r, void *const *host, uint32_t n,
			       uint64_t *digest)
{
	uint64_t t0 = now_ns();
	int ret = __real_wire_digest_regions(r, host, n, digest);
	struct run *run = timed;

	if (run && run->t_pause && run->ndigests < 2) {
		unsigned i = __atomic_fetch_add(&run->ndigests, 1, __ATOMIC_RELAXED);

		run->digest[i][0] = t0;
		run->digest[i][1] = now_ns();
	}
	return ret;
}

int __real_wire_send_end(struct wire_writer *w, uint64_t pages, uint64_t digest, uint32_t ndev);
int __wrap_wire_send_end(struct wire_writer *w, uint64_t pages, uint64_t digest, uint32_t ndev)
{
	if (timed)
		timed->t_end = now_ns();
	return __real_wire_send_end(w, pages, digest, ndev);
}

static uint64_t process_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- one migration over a fresh loopback connection ------------------------------------- */

struct dest {
	struct dt_listener *l;
	struct dt_migrate_dest_opts o;
	struct dt_migrate_dest_result res;
	int ret;
};

static void *dest_main(void *arg)
{
	struct dest *d = arg;

	d->o.transport = dt_listener_accept(d->l, 10000);
	if (!d->o.transport) {
		d->ret = -errno;
		return NULL;
	}
	d->ret = dt_migrate_dest(&d->o, &d->res);
	dt_transport_shutdown(d->o.transport);
	return NULL;
}

static void migrate(struct bench *b, struct run *run, uint32_t flags, uint64_t max_bw, double rate,
		    uint64_t wseed, uint64_t max_downtime_ns)
{
	struct dest d = {.o = {.size = sizeof(d.o), .regions = &b->dst_region, .nregions = 1}};
	struct dt_migrate_source_opts so = {
		.size = sizeof(so),
		.set = b->set,
		.regions = &b->region,
		.nregions = 1,
		.policy = {.max_downtime_ns = max_downtime_ns},
		.flags = flags,
		.max_bandwidth = max_bw,
		.opaque = b,
		.pause = cb_pause,
		.ask = cb_ask,
		.on_round = cb_round,
	};
	pthread_t th;
	uint64_t cpu;
	int ret;

	memset(run, 0, sizeof(*run));
	b->cur = run;
	b->nruns++;
	for (uint64_t p = 0; p < b->npages; p++) /* the destination must overwrite every page */
		b->dst[p * PAGE + p % PAGE] ^= 0x5a;
	run->nonzero = count_nonzero(b);
	d.l = dt_listen_tcp("127.0.0.1", 0);
	BENCH_CHECK(d.l, "dt_listen_tcp: %s", strerror(errno));
	BENCH_CHECK(!pthread_create(&th, NULL, dest_main, &d), "pthread_create");
	so.transport = dt_connect_tcp("127.0.0.1", dt_listener_port(d.l), 5000);
	BENCH_CHECK(so.transport, "dt_connect_tcp: %s", strerror(errno));
	if (rate > 0) {
		b->rate = rate;
		b->wseed = wseed;
		atomic_store(&b->stop, false);
		BENCH_CHECK(!pthread_create(&b->writer, NULL, writer_main, b), "pthread_create");
		b->running = true;
	}
	cpu = process_cpu_ns();
	timed = run;
	ret = dt_migrate_source(&so, &run->res);
	writer_stop(b);
	dt_transport_shutdown(so.transport);
	pthread_join(th, NULL);
	dt_transport_free(so.transport);
	dt_transport_free(d.o.transport);
	dt_listener_free(d.l);
	timed = NULL;
	run->cpu_ns = process_cpu_ns() - cpu;
	BENCH_CHECK(!ret && !d.ret, "migration: source %d (%s), destination %d (%s)", ret,
		    strerror(-ret), d.ret, strerror(-d.ret));
	BENCH_CHECK(d.res.digest == run->res.digest && !memcmp(b->mem, b->dst, b->bytes),
		    "the destination's memory differs from the source's");
}

/* ---- part 1: throughput ----------------------------------------------------------------- */

struct blast {
	struct dt_listener *l;
	uint8_t *buf;
	uint64_t bytes, t_done;
	int ret;
};

static void *blast_recv(void *arg)
{
	struct blast *x = arg;
	struct dt_transport *t = dt_listener_accept(x->l, 10000);

	x->ret = t ? 0 : -errno;
	for (uint64_t off = 0; t && off < x->bytes && !x->ret; off += CHUNK)
		x->ret = dt_transport_recv(t, x->buf + off,
					   x->bytes - off < CHUNK ? x->bytes - off : CHUNK);
	x->t_done = now_ns();
	dt_transport_free(t);
	return NULL;
}

static uint64_t tcp_blast(struct bench *b)
{
	struct blast x = {.buf = b->dst, .bytes = b->bytes};
	struct dt_transport *t;
	pthread_t th;
	uint64_t t0;
	int ret = 0;

	memset(b->dst, 0, b->bytes);
	x.l = dt_listen_tcp("127.0.0.1", 0);
	BENCH_CHECK(x.l, "dt_listen_tcp: %s", strerror(errno));
	BENCH_CHECK(!pthread_create(&th, NULL, blast_recv, &x), "pthread_create");
	t = dt_connect_tcp("127.0.0.1", dt_listener_port(x.l), 5000);
	BENCH_CHECK(t, "dt_connect_tcp: %s", strerror(errno));
	t0 = now_ns();
	for (uint64_t off = 0; off < b->bytes && !ret; off += CHUNK)
		ret = dt_transport_send(t, b->mem + off,
					b->bytes - off < CHUNK ? b->bytes - off : CHUNK);
	pthread_join(th, NULL);
	dt_transport_free(t);
	dt_listener_free(x.l);
	BENCH_CHECK(!ret && !x.ret && !memcmp(b->mem, b->dst, b->bytes),
		    "TCP blast: send %d, recv %d, or the bytes differ", ret, x.ret);
	return x.t_done - t0;
}

enum { C_MEMCPY, C_TCP, C_ENGINE, C_ZSTD, NCASES };
static const char *const case_name[NCASES] = {"memcpy", "tcp_blast", "engine", "engine_zstd"};
/* Per case and repetition; from T_DOWN on, engine only: the table's last ms columns. */
enum {
	T_NS,
	T_WIRE,
	T_R0_NS,
	T_R0_WIRE,
	T_ROUNDS,
	T_ASKS,
	T_DOWN,
	T_HARVEST,
	T_SRC,
	T_WAIT,
	T_DST,
	NT
};
static const char *const t_key[NT] = {[T_DOWN] = "downtime_ns",
				      [T_HARVEST] = "down_harvest_ns",
				      [T_SRC] = "down_src_digest_ns",
				      [T_WAIT] = "down_dst_wait_ns",
				      [T_DST] = "down_dst_digest_ns"};

static void throughput(struct bench *b, const struct opts *o)
{
	static double v[NCASES][NT][MAX_REPS];
	double m[NCASES][NT] = {{0}}, mem = (double)b->bytes;
	struct run run;

	for (unsigned r = 0; r < o->reps; r++) {
		uint64_t t0 = now_ns();

		memcpy(b->dst, b->mem, b->bytes);
		compiler_barrier();
		v[C_MEMCPY][T_NS][r] = (double)(now_ns() - t0);
		v[C_TCP][T_NS][r] = (double)tcp_blast(b);
		v[C_MEMCPY][T_WIRE][r] = v[C_TCP][T_WIRE][r] = mem;
		for (unsigned c = C_ENGINE; c < NCASES; c++) {
			migrate(b, &run, c == C_ZSTD ? DT_MIGRATE_COMPRESS : 0, 0, 0, 0,
				o->max_downtime_ms * 1000000);
			v[c][T_NS][r] = (double)run.res.total_ns;
			v[c][T_WIRE][r] = (double)run.res.bytes_sent;
			v[c][T_R0_NS][r] = (double)run.r0.send_ns;
			v[c][T_R0_WIRE][r] = (double)run.r0.sent_bytes;
			v[c][T_ROUNDS][r] = run.res.rounds;
			v[c][T_ASKS][r] = run.asks;
			v[c][T_DOWN][r] = (double)run.res.actual_downtime_ns;
			v[c][T_HARVEST][r] = (double)(run.harvest[1] - run.t_pause);
			v[c][T_SRC][r] = (double)(run.digest[0][1] - run.digest[0][0]);
			v[c][T_WAIT][r] = (double)(run.digest[1][0] - run.t_end);
			v[c][T_DST][r] = (double)(run.digest[1][1] - run.digest[1][0]);
		}
	}
	for (unsigned c = 0; c < NCASES; c++)
		for (unsigned k = 0; k < NT; k++)
			m[c][k] = median_dbl(v[c][k], o->reps);
	fprintf(stderr,
		"\nbench_migrate: throughput, %" PRIu64 " MiB (%" PRIu64
		" non-zero pages), idle, no rate limit, median of %u\n%-12s %8s %8s %9s %8s %7s "
		"%7s %9s %7s %7s %8s %7s %6s %6s %6s %6s\n",
		o->mem_mib, run.nonzero, o->reps, "case", "ms", "wire MiB", "wire GB/s", "mem GB/s",
		"/memcpy", "/tcp", "round0 ms", "r0 wire", "r0 mem", "downtime", "harvest",
		"src dg", "wait", "dst dg", "rounds");
	for (unsigned c = 0; c < NCASES; c++) {
		const double *x = m[c];

		printf("{\"bench\":\"migrate_throughput\",\"case\":\"%s\",\"mem_bytes\":%" PRIu64
		       ",\"nonzero_pages\":%" PRIu64 ",\"reps\":%u,\"ns\":%.0f,\"wire_bytes\":%.0f"
		       ",\"wire_gb_per_s\":%.3f,\"mem_gb_per_s\":%.3f,\"time_over_memcpy\":%.2f"
		       ",\"time_over_tcp\":%.2f",
		       case_name[c], b->bytes, run.nonzero, o->reps, x[T_NS], x[T_WIRE],
		       x[T_WIRE] / x[T_NS], mem / x[T_NS], x[T_NS] / m[C_MEMCPY][T_NS],
		       x[T_NS] / m[C_TCP][T_NS]);
		fprintf(stderr, "%-12s %8.1f %8.1f %9.2f %8.2f %6.1fx %6.2fx", case_name[c],
			x[T_NS] / 1e6, x[T_WIRE] / 1048576.0, x[T_WIRE] / x[T_NS], mem / x[T_NS],
			x[T_NS] / m[C_MEMCPY][T_NS], x[T_NS] / m[C_TCP][T_NS]);
		if (c >= C_ENGINE) {
			printf(",\"rounds\":%.0f,\"asked\":%.0f,\"round0_ns\":%.0f"
			       ",\"round0_wire_bytes\":%.0f,\"round0_wire_gb_per_s\":%.3f"
			       ",\"round0_mem_gb_per_s\":%.3f",
			       x[T_ROUNDS], x[T_ASKS], x[T_R0_NS], x[T_R0_WIRE],
			       x[T_R0_WIRE] / x[T_R0_NS], mem / x[T_R0_NS]);
			fprintf(stderr, " %9.1f %7.2f %7.2f", x[T_R0_NS] / 1e6,
				x[T_R0_WIRE] / x[T_R0_NS], mem / x[T_R0_NS]);
			for (unsigned k = T_DOWN; k < NT; k++) {
				printf(",\"%s\":%.0f", t_key[k], x[k]);
				fprintf(stderr, k == T_DOWN ? " %8.1f" : " %6.1f", x[k] / 1e6);
			}
			fprintf(stderr, " %6.0f", x[T_ROUNDS]);
		}
		printf("}\n");
		fputc('\n', stderr);
	}
	fprintf(stderr,
		"GB/s: 1e9 bytes/s; wire: bytes on the wire, mem: memory bytes over the same time; "
		"round0: the full pass alone;\ndowntime: pause to ACK (ms), of which harvest: pause "
		"to the end of the final harvest, src dg: the source's digest\n(beside the final "
		"send), wait: END sent to the start of the destination's digest (dst dg)\n");
}

/* ---- part 2: predicted vs actual downtime over a sweep of dirty rates ------------------- */

/* Per run, and their medians per rate: index and JSON key. */
/* clang-format off */
#define STATS(X)								\
	X(ACHIEVED, "achieved_dirty_bytes_per_s") X(ROUNDS, "rounds")		\
	X(PRED, "predicted_downtime_ns") X(ACT, "actual_downtime_ns")		\
	X(ERR, "error_pct") X(FIXED, "predicted_fixed_ns")			\
	X(HARVEST, "last_harvest_ns") X(PAUSE, "pause_ns")			\
	X(DECIDED, "decision_dirty_pages")		\
	X(FINAL_PAGES, "final_pages") X(FINAL_WIRE, "final_wire_bytes")		\
	X(TOTAL, "total_ns") X(SENT, "bytes_sent") X(NONZERO, "nonzero_pages")	\
	X(BOUND, "lower_bound_bytes") X(OVER, "sent_over_bound")		\
	X(WCPU, "writer_cpu_ns") X(WWALL, "writer_wall_ns") X(CPU, "process_cpu_ns")	\
	X(D_HARVEST, "down_harvest_ns") X(D_END, "down_to_end_ns")			\
	X(D_SRC, "down_src_digest_ns") X(D_WAIT, "down_dst_wait_ns")			\
	X(D_DST, "down_dst_digest_ns") X(D_ACK, "down_ack_ns")
/* clang-format on */
#define STAT_ENUM(name, key) S_##name,
#define STAT_KEY(name, key)  key,
enum { STATS(STAT_ENUM) NSTATS };
static const char *const stat_key[NSTATS] = {STATS(STAT_KEY)};

static void sample(const struct run *run, double *v)
{
	const struct dt_migrate_result *r = &run->res;

	v[S_ACHIEVED] = ratio(run->writes, run->write_ns) * 1e9 * PAGE;
	v[S_ROUNDS] = r->rounds;
	v[S_PRED] = (double)r->predicted_downtime_ns;
	v[S_ACT] = (double)r->actual_downtime_ns;
	v[S_ERR] = 100.0 * (v[S_PRED] - v[S_ACT]) / v[S_ACT];
	v[S_FIXED] = (double)run->last.fixed_cost_ns;
	v[S_HARVEST] = (double)run->last.harvest_ns;
	v[S_PAUSE] = (double)run->pause_ns;
	v[S_DECIDED] = (double)run->last.dirty_pages;
	v[S_FINAL_PAGES] = (double)r->final_pages;
	v[S_FINAL_WIRE] = (double)(r->bytes_sent - run->last.total_bytes);
	v[S_TOTAL] = (double)r->total_ns;
	v[S_SENT] = (double)r->bytes_sent;
	v[S_NONZERO] = (double)run->nonzero;
	v[S_BOUND] = (double)(run->nonzero + r->final_pages) * PAGE;
	v[S_OVER] = v[S_SENT] / v[S_BOUND];
	v[S_WCPU] = (double)run->writer_cpu_ns;
	v[S_WWALL] = (double)run->write_ns;
	v[S_CPU] = (double)run->cpu_ns;
	/* The downtime, phase by phase: pause to the end of the final harvest; then to END (the
	 * final send, the source's digest beside it); to the start of the destination's digest
	 * (the destination catching up on what is queued); its digest; then to the ACK. */
	v[S_D_HARVEST] = (double)(run->harvest[1] - run->t_pause);
	v[S_D_END] = (double)(run->t_end - run->harvest[1]);
	v[S_D_SRC] = (double)(run->digest[0][1] - run->digest[0][0]);
	v[S_D_WAIT] = (double)(run->digest[1][0] - run->t_end);
	v[S_D_DST] = (double)(run->digest[1][1] - run->digest[1][0]);
	v[S_D_ACK] = (double)(run->t_pause + r->actual_downtime_ns - run->digest[1][1]);
}

static void print_stats(const double *v)
{
	for (unsigned k = 0; k < NSTATS; k++)
		printf(k == S_ERR || k == S_OVER ? ",\"%s\":%.3f" : ",\"%s\":%.0f", stat_key[k],
		       v[k]);
	printf("}\n");
	fflush(stdout);
}

static void sweep(struct bench *b, const struct opts *o)
{
	uint64_t bw = o->bw_mbps * 1000000;
	char limit[32] = "300 (default)";

	if (o->max_downtime_ms)
		snprintf(limit, sizeof(limit), "%" PRIu64, o->max_downtime_ms);
	fprintf(stderr,
		"\nbench_migrate: sweep, %" PRIu64 " MiB, max_bandwidth %" PRIu64
		" MB/s, max downtime %s ms, medians of %u seed(s)\n"
		"%4s %6s %6s %6s %5s %7s %7s %6s %6s %6s %6s %6s %6s %6s %6s %7s %8s %8s %6s  %s\n",
		o->mem_mib, o->bw_mbps, limit, o->seeds, "rate", "dirty", "achvd", "rounds",
		"asked", "pred ms", "act ms", "err %", "fixed", "harv", "to END", "src dg", "wait",
		"dst dg", "final", "total s", "sent MiB", "bnd MiB", "/bound",
		"verdict(s) at the end");
	for (unsigned i = 0; i < NRATES; i++) {
		double v[NSTATS][MAX_SEEDS], one[NSTATS], m[NSTATS], x = rates[i];
		char verdicts[64] = "";
		unsigned asked = 0;
		struct run run;

		if (o->only_rate >= 0 && x != o->only_rate)
			continue;
		for (unsigned s = 0; s < o->seeds; s++) {
			uint64_t seed = o->seed * 1000 + i * 100 + s;

			migrate(b, &run, 0, bw, x * (double)bw / PAGE, seed,
				o->max_downtime_ms * 1000000);
			sample(&run, one);
			for (unsigned k = 0; k < NSTATS; k++)
				v[k][s] = one[k];
			asked += run.asks > 0;
			snprintf(verdicts + strlen(verdicts), sizeof(verdicts) - strlen(verdicts),
				 "%s%s%s", s ? "," : "", dt_verdict_name(run.res.verdict),
				 run.asks ? "(asked)" : "");
			printf("{\"bench\":\"migrate_sweep_run\",\"run\":%u,\"mem_bytes\":%" PRIu64
			       ",\"max_bandwidth\":%" PRIu64 ",\"rate_x\":%g,\"seed\":%" PRIu64
			       ",\"target_dirty_bytes_per_s\":%.0f,\"writes\":%" PRIu64
			       ",\"verdict\":\"%s\",\"asked\":%u,\"ask_verdict\":\"%s\""
			       ",\"predicted_bandwidth\":%.0f,\"pages_sent\":%" PRIu64
			       ",\"zero_pages\":%" PRIu64,
			       b->nruns, b->bytes, bw, x, seed, x * (double)bw, run.writes,
			       dt_verdict_name(run.res.verdict), run.asks,
			       run.asks ? dt_verdict_name(run.ask_verdict) : "", run.last.bandwidth,
			       run.res.pages_sent, run.res.zero_pages);
			print_stats(one);
		}
		for (unsigned k = 0; k < NSTATS; k++)
			m[k] = median_dbl(v[k], o->seeds);
		printf("{\"bench\":\"migrate_sweep\",\"mem_bytes\":%" PRIu64
		       ",\"max_bandwidth\":%" PRIu64
		       ",\"rate_x\":%g,\"seeds\":%u,\"target_dirty_bytes_per_s\":%.0f"
		       ",\"verdicts\":\"%s\",\"asked\":%u",
		       b->bytes, bw, x, o->seeds, x * (double)bw, verdicts, asked);
		print_stats(m);
		fprintf(stderr,
			"%4.1f %6.1f %6.1f %6.0f %2u/%-2u %7.1f %7.1f %+6.1f %6.1f %6.1f %6.1f %6.1f "
			"%6.1f %6.1f %6.1f %7.2f %8.1f %8.1f %6.2f  %s\n",
			x, x * (double)bw / 1e6, m[S_ACHIEVED] / 1e6, m[S_ROUNDS], asked, o->seeds,
			m[S_PRED] / 1e6, m[S_ACT] / 1e6, m[S_ERR], m[S_FIXED] / 1e6,
			m[S_D_HARVEST] / 1e6, m[S_D_END] / 1e6, m[S_D_SRC] / 1e6, m[S_D_WAIT] / 1e6,
			m[S_D_DST] / 1e6, m[S_FINAL_WIRE] / 1048576.0, m[S_TOTAL] / 1e9,
			m[S_SENT] / 1048576.0, m[S_BOUND] / 1048576.0, m[S_OVER], verdicts);
	}
	fprintf(stderr,
		"dirty, achvd: MB/s asked of the writer and written (pages/s x 4096); err: "
		"(predicted - actual) / actual; fixed: the predicted fixed cost (RTT + harvest;\n"
		"the source's digest overlaps the final send); the actual downtime, ms: harv: pause to the end of the final harvest, "
		"to END: then until END is sent\n(the final send, the source's digest (src dg) "
		"beside it), wait: then until the destination's digest (dst dg) starts;\nfinal: MiB "
		"sent after the pause; "
		"bound: (non-zero pages at the start + pages sent after the pause) x 4096\n");
}

/* ---- options, main ---------------------------------------------------------------------- */

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [options]\n"
		"  --mem-mib N          migrated memory (default 1024)\n"
		"  --bw-mbps N          sweep: the engine's max_bandwidth in MB/s (default 100)\n"
		"  --max-downtime-ms N  the policy's limit (default: the engine's, 300)\n"
		"  --seeds N            sweep: writer seeds per rate (default 3, at most %u)\n"
		"  --reps N             throughput: repetitions (default 3, at most %u)\n"
		"  --rate X             sweep: only this rate (0.1, 0.3, 0.6, 0.9 or 1.2)\n"
		"  --no-throughput, --no-sweep   skip a part\n"
		"  --seed N             memory contents and writer seeds (fixed by default)\n"
		"  --quick              16 MiB, 1 repetition, 1 seed, rate 0.6 (CI)\n",
		argv0, MAX_SEEDS, MAX_REPS);
	exit(2);
}

static struct opts parse_opts(int argc, char **argv)
{
	struct opts o = {.mem_mib = 1024,
			 .bw_mbps = 100,
			 .seed = 42,
			 .reps = 3,
			 .seeds = 3,
			 .only_rate = -1};
	bool mem_set = false, reps_set = false, seeds_set = false, rate_set = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--quick"))
			o.quick = true;
		else if (!strcmp(a, "--no-throughput"))
			o.no_throughput = true;
		else if (!strcmp(a, "--no-sweep"))
			o.no_sweep = true;
		else if (!strcmp(a, "--mem-mib"))
			o.mem_mib = parse_u64(a, argv[++i]), mem_set = true;
		else if (!strcmp(a, "--bw-mbps"))
			o.bw_mbps = parse_u64(a, argv[++i]);
		else if (!strcmp(a, "--max-downtime-ms"))
			o.max_downtime_ms = parse_u64(a, argv[++i]);
		else if (!strcmp(a, "--seeds"))
			o.seeds = (unsigned)parse_u64(a, argv[++i]), seeds_set = true;
		else if (!strcmp(a, "--reps"))
			o.reps = (unsigned)parse_u64(a, argv[++i]), reps_set = true;
		else if (!strcmp(a, "--seed"))
			o.seed = parse_u64(a, argv[++i]);
		else if (!strcmp(a, "--rate") && i + 1 < argc)
			o.only_rate = strtod(argv[++i], NULL), rate_set = true;
		else
			usage(argv[0]);
	}
	if (o.quick) {
		o.mem_mib = mem_set ? o.mem_mib : 16;
		o.reps = reps_set ? o.reps : 1;
		o.seeds = seeds_set ? o.seeds : 1;
		o.only_rate = rate_set ? o.only_rate : 0.6;
	}
	if (o.only_rate >= 0) {
		bool known = false;

		for (unsigned i = 0; i < NRATES; i++)
			known |= rates[i] == o.only_rate;
		if (!known)
			usage(argv[0]);
	}
	if (!o.mem_mib || o.mem_mib > (1u << 20) || !o.bw_mbps || !o.reps || o.reps > MAX_REPS ||
	    !o.seeds || o.seeds > MAX_SEEDS)
		bench_fail("bad options: %" PRIu64 " MiB, %" PRIu64 " MB/s, %u reps (1..%u), "
			   "%u seeds (1..%u)",
			   o.mem_mib, o.bw_mbps, o.reps, MAX_REPS, o.seeds, MAX_SEEDS);
	return o;
}

int main(int argc, char **argv)
{
	struct opts o = parse_opts(argc, argv);
	struct bench b;

	print_env_json(BENCH_NAME, argc, argv);
	dt_set_log(dt_log_stderr, NULL, DT_LOG_WARN);
	if (!bench_setup(&b, &o))
		return 0;
	if (!o.no_throughput)
		throughput(&b, &o);
	if (!o.no_sweep)
		sweep(&b, &o);
	if (o.quick)
		fprintf(stderr, "[--quick: sizes too small for the figures to mean anything]\n");
	bench_teardown(&b);
	return 0;
}
