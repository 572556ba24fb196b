/* SPDX-License-Identifier: MIT */
/*
 * tools/migrate_cmd.c - `dirtytrack migrate`: the command line, and the two sides.
 *
 * Destination (--listen): accepts one connection and receives a whole migration into memory
 * the library maps for the stream's layout, or into a region of --size at WORKLOAD_GPA.
 * Source (--to): builds the test workload of workload.c, starts its tracking and threads, and
 * migrates its region. What each side prints is in migrate_output.c.
 *
 * Exit status: 0 migrated (and dumped), 1 the migration (or the dump) failed, 2 bad usage.
 * The library validates what it is given and logs why it refuses; the checks here are of
 * what it cannot know (a missing --size, a hot set larger than memory, more than RAM).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <dirtytrack/dirtytrack.h>

#include "cli.h"
#include "endpoint.h"
#include "migrate_output.h"
#include "policies.h"
#include "workload.h"

struct migrate_args {
	const char *listen, *to, *dump;
	struct endpoint ep;
	uint64_t size, seed, dirty_rate, hot, pinned, max_bandwidth, phase_ms;
	const char *pinned_arg; /* as given: pages, a size with a unit, or a percentage */
	enum workload_pattern pattern;
	const struct bench_policy *policy; /* --policy; NULL: ours (dt_policy_decide) */
	double max_downtime_ms;
	bool no_defer, compress, json, verbose;
	const char *source_only; /* the first source option seen (its name), to refuse it with
				  * --listen */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dirtytrack migrate --listen tcp:HOST:PORT|unix:PATH [--size S] [--dump FILE]\n"
		"                          [--json] [-v]\n"
		"       dirtytrack migrate --to tcp:HOST:PORT|unix:PATH --size S [--seed N]\n"
		"                          [--dirty-rate PAGES/S] [--hot PAGES] [--pinned PAGES|S|P%%]\n"
		"                          [--pattern uniform|zipf|phase] [--phase-ms MS]\n"
		"                          [--max-downtime MS] [--max-bandwidth BYTES/S] [--no-defer]\n"
		"                          [--policy NAME] [--compress] [--dump FILE] [--json] [-v]\n"
		"\n"
		"  --listen EP          destination: accept one migration (PORT 0: any free port; the\n"
		"                       line 'listening tcp HOST:PORT' on stderr says which)\n"
		"  --to EP              source: migrate a test workload's memory to EP\n"
		"  --size S             bytes of memory (K, M, G suffixes); destination: receive into\n"
		"                       a region of that size rather than memory mapped for the stream\n"
		"  --seed N             initial contents and pages written (default 1)\n"
		"  --dirty-rate N       pages per second a writer thread dirties (default 0: none)\n"
		"  --hot N              the writer dirties a hot set of N pages (default: uniform)\n"
		"  --pinned N|S|P%%      a fake DMA device pins a ring and writes it: N pages, or S\n"
		"                       bytes with a unit (64M), or P percent of --size (25%%)\n"
		"  --pattern P          the writer's pages: uniform (default), zipf (popularity\n"
		"                       ~ 1/rank, ranks shuffled by the seed) or phase (uniform, the\n"
		"                       rate alternating between --dirty-rate and a tenth of it)\n"
		"  --phase-ms MS        the length of each phase of --pattern phase (default 1000)\n"
		"  --max-downtime MS    switch over when the predicted downtime fits (default 300)\n"
		"  --max-bandwidth B    bytes per second on the wire (K, M, G suffixes; default: no\n"
		"                       limit)\n"
		"  --no-defer           send pinned pages in every round (as QEMU) instead of once\n"
		"  --policy NAME        the pre-copy policy: ours (default), ours-nodefer, qemu,\n"
		"                       qemu-auto-converge, xen, cloud-hypervisor (their published\n"
		"                       rules, for comparison: docs/migration-bench.md)\n"
		"  --compress           zstd page batches\n"
		"  --dump FILE          write the final memory to FILE (source: as sent, at the\n"
		"                       switchover; destination: as received)\n"
		"  --json               one JSON object per round and a final one, on stdout\n"
		"  -v, --verbose        the library's info messages (decisions and their reasons)\n");
}

static int __attribute__((format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "dirtytrack migrate: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n\n");
	usage(stderr);
	return 2;
}

/* A decimal count with an optional K, M, G or T suffix (binary multiples). */
static bool parse_count(const char *s, uint64_t *out)
{
	static const char suffixes[] = "KMGT";
	uint64_t v, mul = 1;
	const char *sfx;
	char *end;

	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return false;
	if (*end && (sfx = strchr(suffixes, toupper((unsigned char)*end)))) {
		mul = 1ull << (10 * (sfx - suffixes + 1));
		end++;
	}
	if (*end || v > UINT64_MAX / mul)
		return false;
	*out = v * mul;
	return true;
}

/* A TCP port: 1 to 5 decimal digits, at most 65535. */
enum {
	OPT_LISTEN = 256,
	OPT_TO,
	OPT_SIZE,
	OPT_SEED,
	OPT_DIRTY_RATE,
	OPT_HOT,
	OPT_PINNED,
	OPT_MAX_DOWNTIME,
	OPT_MAX_BANDWIDTH,
	OPT_NO_DEFER,
	OPT_COMPRESS,
	OPT_DUMP,
	OPT_JSON,
	OPT_PATTERN,
	OPT_PHASE_MS,
	OPT_POLICY,
};

static const struct option long_options[] = {
	{"listen", required_argument, NULL, OPT_LISTEN},
	{"to", required_argument, NULL, OPT_TO},
	{"size", required_argument, NULL, OPT_SIZE},
	{"seed", required_argument, NULL, OPT_SEED},
	{"dirty-rate", required_argument, NULL, OPT_DIRTY_RATE},
	{"hot", required_argument, NULL, OPT_HOT},
	{"pinned", required_argument, NULL, OPT_PINNED},
	{"max-downtime", required_argument, NULL, OPT_MAX_DOWNTIME},
	{"max-bandwidth", required_argument, NULL, OPT_MAX_BANDWIDTH},
	{"no-defer", no_argument, NULL, OPT_NO_DEFER},
	{"compress", no_argument, NULL, OPT_COMPRESS},
	{"dump", required_argument, NULL, OPT_DUMP},
	{"json", no_argument, NULL, OPT_JSON},
	{"pattern", required_argument, NULL, OPT_PATTERN},
	{"phase-ms", required_argument, NULL, OPT_PHASE_MS},
	{"policy", required_argument, NULL, OPT_POLICY},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

/* The option's value into *out, or a usage error naming it. */
static int count_arg(const char *name, uint64_t *out)
{
	if (!parse_count(optarg, out))
		return usage_error("%s: expected a number (K, M, G suffixes allowed)", name);
	return 0;
}

/*
 * --pinned: a page count (digits alone, as before), a size with a unit (K, M, G, T: bytes,
 * rounded up to pages), or a percentage of --size (rounded down to pages). Resolved once
 * --size is known; 0 or 2 (said why).
 */
static int pinned_pages(struct migrate_args *a)
{
	const char *s = a->pinned_arg;
	size_t len = strlen(s);
	uint64_t v;

	if (len > 1 && s[len - 1] == '%') {
		char *end;
		double pct = strtod(s, &end);

		if (!isdigit((unsigned char)*s) || end != s + len - 1 || !(pct >= 0 && pct <= 100))
			return usage_error(
				"--pinned: '%s': expected a percentage from 0%% to 100%%", s);
		a->pinned = (uint64_t)((double)(a->size / WORKLOAD_PAGE) * pct / 100.0);
		return 0;
	}
	if (!parse_count(s, &v))
		return usage_error("--pinned: '%s': expected pages, a size with a unit (K, M, G) "
				   "or a percentage",
				   s);
	if (isdigit((unsigned char)s[len - 1]))
		a->pinned = v;
	else
		a->pinned = v / WORKLOAD_PAGE + !!(v % WORKLOAD_PAGE);
	return 0;
}

/* Milliseconds, fractions allowed: more than 0, at most 1e9. */
static int ms_arg(const char *name, double *out)
{
	char *end;

	*out = strtod(optarg, &end);
	if (end == optarg || *end || !isfinite(*out) || *out <= 0 || *out > 1e9)
		return usage_error("%s: expected milliseconds > 0, not '%s'", name, optarg);
	return 0;
}

/* 0, 2 for bad usage (said why), or -1 for --help (usage printed). */
static int parse_args(int argc, char **argv, struct migrate_args *a)
{
	uint64_t ram = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	int c, idx, ret = 0;

	memset(a, 0, sizeof(*a));
	a->seed = 1;
	a->phase_ms = 1000;
	optind = 1;
	while (!ret && (c = getopt_long(argc, argv, "vh", long_options, &idx)) != -1) {
		switch (c) {
		case OPT_LISTEN:
		case OPT_TO:
			if (a->listen || a->to)
				return usage_error("give exactly one of --listen (destination) and "
						   "--to (source)");
			*(c == OPT_LISTEN ? &a->listen : &a->to) = optarg;
			break;
		case OPT_SIZE:
			ret = count_arg("--size", &a->size);
			if (!ret && !a->size)
				ret = usage_error("--size: must be more than 0");
			break;
		case OPT_DUMP:
			a->dump = optarg;
			break;
		case OPT_JSON:
			a->json = true;
			break;
		case 'v':
			a->verbose = true;
			break;
		case 'h':
			usage(stdout);
			return -1;
		case '?':
			return usage_error("bad option (see above)");
		default:
			/* The rest are options of the source. */
			a->source_only = a->source_only ? a->source_only : long_options[idx].name;
			if (c == OPT_SEED)
				ret = count_arg("--seed", &a->seed);
			else if (c == OPT_DIRTY_RATE)
				ret = count_arg("--dirty-rate", &a->dirty_rate);
			else if (c == OPT_HOT)
				ret = count_arg("--hot", &a->hot);
			else if (c == OPT_PINNED)
				a->pinned_arg = optarg;
			else if (c == OPT_PHASE_MS)
				ret = count_arg("--phase-ms", &a->phase_ms) ? 2
				      : !a->phase_ms
					      ? usage_error("--phase-ms: must be more than 0")
					      : 0;
			else if (c == OPT_PATTERN && !strcmp(optarg, "uniform"))
				a->pattern = WORKLOAD_UNIFORM;
			else if (c == OPT_PATTERN && !strcmp(optarg, "zipf"))
				a->pattern = WORKLOAD_ZIPF;
			else if (c == OPT_PATTERN && !strcmp(optarg, "phase"))
				a->pattern = WORKLOAD_PHASE;
			else if (c == OPT_PATTERN)
				ret = usage_error("--pattern: expected uniform, zipf or phase, not "
						  "'%s'",
						  optarg);
			else if (c == OPT_POLICY && !(a->policy = bench_policy_find(optarg)))
				ret = usage_error(
					"--policy: no policy '%s' (ours, ours-nodefer, qemu, "
					"qemu-auto-converge, xen, cloud-hypervisor)",
					optarg);
			else if (c == OPT_MAX_BANDWIDTH)
				ret = count_arg("--max-bandwidth", &a->max_bandwidth);
			else if (c == OPT_NO_DEFER)
				a->no_defer = true;
			else if (c == OPT_COMPRESS)
				a->compress = true;
			else if (c == OPT_MAX_DOWNTIME)
				ret = ms_arg("--max-downtime", &a->max_downtime_ms);
			break;
		}
	}
	if (ret)
		return ret;
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (!a->listen == !a->to)
		return usage_error("give exactly one of --listen (destination) and --to "
				   "(source)");
	if (!endpoint_parse(a->listen ? a->listen : a->to, &a->ep))
		return usage_error("bad endpoint '%s': expected tcp:HOST:PORT or unix:PATH",
				   a->listen ? a->listen : a->to);
	if (a->size % WORKLOAD_PAGE)
		return usage_error("--size: must be a multiple of 4096 bytes");
	if (a->listen) {
		if (a->source_only)
			return usage_error("--%s is an option of the source (--to)",
					   a->source_only);
		return 0;
	}
	if (!a->size)
		return usage_error("the source needs --size (bytes > 0)");
	/* The workload populates about three quarters of it: more than RAM cannot work. */
	if (a->size > ram)
		return usage_error("--size: more than this machine's memory (%llu MiB)",
				   (unsigned long long)(ram >> 20));
	if (!a->ep.is_unix && (!a->ep.host[0] || !a->ep.port))
		return usage_error("--to %s: give a host and a port other than 0", a->to);
	if (a->dirty_rate > 100000000)
		return usage_error("--dirty-rate: at most 100M pages per second");
	if (a->hot > a->size / WORKLOAD_PAGE)
		return usage_error("--hot: more pages than --size holds");
	if (a->pinned_arg && pinned_pages(a))
		return 2;
	if (a->pinned > a->size / WORKLOAD_PAGE || a->pinned > (1u << 30))
		return usage_error("--pinned: more pages than --size holds");
	return 0;
}

/* ---- the destination -------------------------------------------------------------------- */

static uint64_t dest_bytes(const struct dt_region *r, unsigned n)
{
	uint64_t bytes = 0;

	for (unsigned i = 0; r && i < n; i++)
		bytes += r[i].size;
	return bytes;
}

static int run_dest(const struct migrate_args *a)
{
	struct dt_migrate_dest_result res = {0};
	struct dt_migrate_dest_opts opts = {.size = sizeof(opts)};
	struct dt_region region = {.addr = WORKLOAD_GPA, .size = a->size};
	struct dt_listener *l = endpoint_listen(&a->ep, "dirtytrack migrate");
	struct dt_transport *t;
	uint64_t t0;
	int ret, status = 1;

	if (!l)
		return 1;
	t = dt_listener_accept(l, -1);
	if (!t) {
		fprintf(stderr, "dirtytrack migrate: accept on %s failed: %s\n", a->ep.text,
			strerror(errno));
		dt_listener_free(l);
		return 1;
	}
	dt_listener_free(l);
	if (a->size) {
		region.host = mmap(NULL, a->size, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (region.host == MAP_FAILED) {
			fprintf(stderr, "dirtytrack migrate: cannot map %llu bytes: %s\n",
				(unsigned long long)a->size, strerror(errno));
			dt_transport_free(t);
			return 1;
		}
		opts.regions = &region;
		opts.nregions = 1;
	}
	opts.transport = t;
	t0 = out_now_ns();
	ret = dt_migrate_dest(&opts, &res);
	dt_transport_shutdown(t);
	if (!ret) {
		const struct dt_region *r = a->size ? &region : res.regions;
		unsigned n = a->size ? 1 : res.nregions;

		status = 0;
		if (a->dump && out_dump(a->dump, r, n))
			status = 1;
	}
	out_dest_result(a->json, ret, &res,
			dest_bytes(a->size ? &region : res.regions, a->size ? 1 : res.nregions),
			out_now_ns() - t0);
	dt_migrate_dest_result_release(&res);
	dt_transport_free(t);
	if (a->size)
		munmap(region.host, a->size);
	return status;
}

/* ---- the source ------------------------------------------------------------------------- */

/* The engine passes one opaque to every callback. */
struct source_ctx {
	struct workload *w;
	struct out_progress progress;
	const struct bench_policy *policy;
	struct dt_round_stats *rounds; /* every round so far, for QEMU's throttle */
	unsigned nrounds;
};

/* Another engine's policy (--policy). QEMU's never stops on its own: past its harness cap
 * the migration is given up (did not converge), as the simulator counts it. */
static int ctx_decide(void *opaque, const struct dt_policy *policy,
		      const struct dt_round_stats *rounds, unsigned n, struct dt_policy_out *out)
{
	const struct bench_policy *bp = ((struct source_ctx *)opaque)->policy;
	int ret = bp->decide(NULL, policy, rounds, n, out);

	if (!ret && (bp->needs_engine_features & BENCH_HARNESS_CAP) &&
	    n - 1 >= QEMU_HARNESS_MAX_ROUNDS && out->decision == DT_DECISION_CONTINUE) {
		out->decision = DT_DECISION_ASK;
		snprintf(out->reason, sizeof(out->reason), "%s: %u rounds, the harness's cap",
			 bp->name, n - 1);
	}
	return ret;
}

static int ctx_pause(void *opaque)
{
	return workload_pause(((struct source_ctx *)opaque)->w);
}

static void ctx_resume(void *opaque)
{
	workload_resume(((struct source_ctx *)opaque)->w);
}

static void ctx_round(void *opaque, const struct dt_round_stats *s, const char *json)
{
	struct source_ctx *ctx = opaque;
	struct dt_round_stats *more;

	out_round(&ctx->progress, s, json);
	if (!ctx->policy || !(ctx->policy->needs_engine_features & BENCH_QEMU_THROTTLE))
		return;
	/* Auto-converge: the throttle after this sync, applied to the writer (the vCPUs). */
	more = realloc(ctx->rounds, (ctx->nrounds + 1) * sizeof(*more));
	if (!more)
		return; /* the throttle stays as it was */
	ctx->rounds = more;
	ctx->rounds[ctx->nrounds++] = *s;
	workload_throttle(ctx->w, (unsigned)policy_qemu_throttle(ctx->rounds, ctx->nrounds));
}

static int run_source(const struct migrate_args *a)
{
	struct workload_opts wo = {.size = a->size,
				   .seed = a->seed,
				   .dirty_rate = a->dirty_rate,
				   .hot_pages = a->hot,
				   .ring_pages = a->pinned,
				   .pattern = a->pattern,
				   .phase_ms = a->phase_ms};
	struct dt_migrate_source_opts opts = {.size = sizeof(opts)};
	struct dt_migrate_result res;
	struct source_ctx ctx = {0};
	struct out_source_info info = {.size = a->size};
	struct workload *w = NULL;
	struct dt_transport *t = endpoint_connect(&a->ep, "dirtytrack migrate");
	int ret, status = 1;

	if (!t)
		return 1;
	ret = workload_new(&wo, &w);
	if (!ret)
		ret = workload_start(w);
	if (ret) {
		fprintf(stderr, "dirtytrack migrate: cannot set up the workload: %s (%d)\n",
			strerror(-ret), ret);
		goto out;
	}
	opts.transport = t;
	opts.set = workload_set(w);
	opts.regions = workload_region(w);
	opts.nregions = 1;
	opts.policy.max_downtime_ns = (uint64_t)(a->max_downtime_ms * 1e6);
	opts.policy.no_defer_pinned = a->no_defer;
	if (a->policy && strcmp(a->policy->name, "ours")) {
		ctx.policy = a->policy;
		opts.decide = ctx_decide;
		if (a->policy->needs_engine_features & BENCH_NO_DEFER_PINNED)
			opts.policy.no_defer_pinned = true;
	}
	opts.flags = a->compress ? DT_MIGRATE_COMPRESS : 0;
	opts.max_bandwidth = a->max_bandwidth;
	ctx.w = w;
	opts.opaque = &ctx;
	opts.pause = ctx_pause;
	opts.resume = ctx_resume;
	opts.on_round = ctx_round;
	out_progress_begin(&ctx.progress, a->json, !a->verbose);
	ret = dt_migrate_source(&opts, &res);
	out_progress_end(&ctx.progress);
	/* On success the workload stays paused: memory is exactly what was sent. */
	if (!ret) {
		status = 0;
		if (a->dump && out_dump(a->dump, workload_region(w), 1))
			status = 1;
	}
	info.source = workload_source_name(w);
	info.writes = workload_writes(w);
	info.device_writes = workload_device_writes(w);
	out_source_result(a->json, ret, &res, &info);
out:
	workload_free(w);
	free(ctx.rounds);
	dt_transport_shutdown(t);
	dt_transport_free(t);
	return status;
}

int migrate_cmd(int argc, char **argv)
{
	struct migrate_args a;
	int ret = parse_args(argc, argv, &a);

	if (ret)
		return ret < 0 ? 0 : ret;
	dt_set_log(dt_log_stderr, NULL, a.verbose ? DT_LOG_INFO : DT_LOG_WARN);
	ret = a.listen ? run_dest(&a) : run_source(&a);
	dt_set_log(NULL, NULL, DT_LOG_WARN);
	return ret;
}
