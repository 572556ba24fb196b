/* SPDX-License-Identifier: MIT */
/*
 * tools/vm_common.c - the micro-VM's options, the destination's job and the printing of
 * results, shared by `dirtytrack demo` and `dirtytrack vm` (vm_common.h).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vm_common.h"

static const char *const dev_names[VDEV_NTYPES] = {"emulated", "logging", "passthrough", "vmm"};

void vm_cli_defaults(struct vm_cli *c)
{
	memset(c, 0, sizeof(*c));
	machine_opts_defaults(&c->mo);
	c->warmup_s = 1.0;
	c->run_s = 1.0;
}

void vm_cli_usage(FILE *f)
{
	fprintf(f,
		"micro-VM options:\n"
		"  --mem-mib N           guest memory (default 512)\n"
		"  --hot N               guest: pages rewritten every iteration (default 32)\n"
		"  --sweep N             guest: pages of the sweep per iteration (default 32)\n"
		"  --iter-rate N         guest iterations per second (default 200; 0: no limit)\n"
		"  --dev-rate N          page writes per second of each device (default 2000)\n"
		"  --devices LIST        of emulated,logging,passthrough,vmm (default all; none)\n"
		"  --no-device-tracking  leave the devices' writes untracked (negative control)\n"
		"  --device vfio-user:PATH  the test device served at PATH (dirtytrack\n"
		"                        vfio-user-device) instead of the local one of its type\n"
		"  --max-bandwidth MB/S  the engine's bandwidth limit (default: none)\n"
		"  --max-downtime MS     the policy's downtime limit (default 300)\n"
		"  --warmup S            seconds the source runs before migrating (default 1)\n"
		"  --run S               seconds to run (vm run; destination after resuming: 1)\n"
		"  --seed N              the devices' random pages\n"
		"  --json                JSON lines instead of text\n"
		"  -v                    the library's log on stderr\n");
}

enum {
	OPT_MEM = 256,
	OPT_HOT,
	OPT_SWEEP,
	OPT_ITER,
	OPT_DEV_RATE,
	OPT_DEVICES,
	OPT_NO_DEV_TRACK,
	OPT_BW,
	OPT_DOWNTIME,
	OPT_WARMUP,
	OPT_RUN,
	OPT_SEED,
	OPT_JSON,
	OPT_LISTEN,
	OPT_TO,
	OPT_DEVICE,
};

static const struct option options[] = {
	{"mem-mib", required_argument, NULL, OPT_MEM},
	{"hot", required_argument, NULL, OPT_HOT},
	{"sweep", required_argument, NULL, OPT_SWEEP},
	{"iter-rate", required_argument, NULL, OPT_ITER},
	{"dev-rate", required_argument, NULL, OPT_DEV_RATE},
	{"devices", required_argument, NULL, OPT_DEVICES},
	{"no-device-tracking", no_argument, NULL, OPT_NO_DEV_TRACK},
	{"max-bandwidth", required_argument, NULL, OPT_BW},
	{"max-downtime", required_argument, NULL, OPT_DOWNTIME},
	{"warmup", required_argument, NULL, OPT_WARMUP},
	{"run", required_argument, NULL, OPT_RUN},
	{"seed", required_argument, NULL, OPT_SEED},
	{"json", no_argument, NULL, OPT_JSON},
	{"listen", required_argument, NULL, OPT_LISTEN},
	{"to", required_argument, NULL, OPT_TO},
	{"device", required_argument, NULL, OPT_DEVICE},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v > max)
		return false;
	*out = v;
	return true;
}

static bool parse_seconds(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v >= 0 && v <= 3600))
		return false;
	*out = v;
	return true;
}

static bool parse_devices(const char *s, unsigned *mask)
{
	char buf[128], *save = NULL;

	*mask = 0;
	if (!strcmp(s, "none"))
		return true;
	if (strlen(s) >= sizeof(buf))
		return false;
	strcpy(buf, s);
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned t;

		for (t = 0; t < VDEV_NTYPES && strcmp(tok, dev_names[t]); t++)
			;
		if (t == VDEV_NTYPES)
			return false;
		*mask |= 1u << t;
	}
	return *mask != 0;
}

static int bad(const char *cmd, const char *opt, const char *arg)
{
	fprintf(stderr, "%s: bad value for --%s: '%s'\n", cmd, opt, arg);
	return -1;
}

int vm_cli_parse(struct vm_cli *c, int argc, char **argv)
{
	int opt, idx = 0;
	uint64_t v;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "vh", options, &idx)) != -1) {
		const char *name = opt >= 256 ? options[opt - OPT_MEM].name : "";

		switch (opt) {
		case OPT_MEM:
			if (!parse_u64(optarg, GUEST_MEM_MAX >> 20, &v) || v % 2)
				return bad(argv[0], name, optarg);
			c->mo.vm.mem_size = v << 20;
			break;
		case OPT_HOT:
		case OPT_SWEEP:
		case OPT_ITER:
		case OPT_DEV_RATE:
			if (!parse_u64(optarg, 1u << 30, &v))
				return bad(argv[0], name, optarg);
			if (opt == OPT_HOT)
				c->mo.vm.hot_pages = (uint32_t)v;
			else if (opt == OPT_SWEEP)
				c->mo.vm.sweep_pages = (uint32_t)v;
			else if (opt == OPT_ITER)
				c->mo.vm.iter_per_sec = (uint32_t)v;
			else
				c->mo.dev.writes_per_sec = (uint32_t)v;
			break;
		case OPT_DEVICES:
			if (!parse_devices(optarg, &c->mo.devices))
				return bad(argv[0], name, optarg);
			break;
		case OPT_NO_DEV_TRACK:
			c->mo.device_tracking = false;
			break;
		case OPT_BW:
			if (!parse_u64(optarg, 1000000, &v))
				return bad(argv[0], name, optarg);
			c->max_bandwidth = v * 1000000;
			break;
		case OPT_DOWNTIME:
			if (!parse_u64(optarg, 3600000, &v) || !v)
				return bad(argv[0], name, optarg);
			c->max_downtime_ms = v;
			break;
		case OPT_WARMUP:
		case OPT_RUN:
			if (!parse_seconds(optarg, opt == OPT_WARMUP ? &c->warmup_s : &c->run_s))
				return bad(argv[0], name, optarg);
			break;
		case OPT_SEED:
			if (!parse_u64(optarg, UINT64_MAX, &c->mo.dev.seed))
				return bad(argv[0], name, optarg);
			break;
		case OPT_JSON:
			c->json = true;
			break;
		case OPT_LISTEN:
			c->listen = optarg;
			break;
		case OPT_TO:
			c->to = optarg;
			break;
		case OPT_DEVICE:
			if (strncmp(optarg, "vfio-user:", 10) || !optarg[10])
				return bad(argv[0], name, optarg);
			c->mo.vfu_path = optarg + 10;
			break;
		case 'v':
			c->verbose = true;
			break;
		case 'h':
			vm_cli_usage(stdout);
			exit(0);
		default:
			return -1;
		}
	}
	return optind;
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts = {.tv_sec = (time_t)s,
			      .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* After the stream: run the machine for c->run_s, check the guest and that everything moved. */
static void resume_and_check(const struct vm_cli *c, struct machine *m, struct dest_report *r)
{
	struct timespec t0;

	for (unsigned t = 0; t < VDEV_NTYPES; t++)
		r->dev_writes_before[t] = machine_dev_writes(m, t);
	if (machine_start(m))
		return;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r->guest_ret = vm_guest_verify(&m->vm, 60000, &r->guest);
	if (seconds_since(&t0) < c->run_s)
		sleep_s(c->run_s - seconds_since(&t0));
	r->gen_after = vm_generation(&m->vm);
	r->resumed = r->gen_after > r->gen_at_switchover;
	machine_pause(m);
	for (unsigned t = 0; t < VDEV_NTYPES; t++) {
		if (!machine_has_dev(m, t))
			continue;
		r->dev_writes_after[t] = machine_dev_writes(m, t);
		if (r->dev_writes_after[t] > r->dev_writes_before[t] || !c->mo.dev.writes_per_sec)
			r->devices_running++;
	}
}

int vm_destination(const struct vm_cli *c, struct dt_listener *l, struct dest_report *r)
{
	struct dt_migrate_dest_result res = {0};
	struct dt_transport *t;
	struct machine m;
	int ret;

	memset(r, 0, sizeof(*r));
	r->guest_ret = -ENOEXEC;
	r->ret = machine_new(&m, &c->mo, false);
	if (r->ret)
		return r->ret;
	for (unsigned i = 0; i < VDEV_NTYPES; i++)
		r->ndevices += machine_has_dev(&m, i);
	t = dt_listener_accept(l, 60000);
	if (!t) {
		r->ret = -errno;
		fprintf(stderr, "destination: no source came: %s\n", strerror(errno));
		machine_free(&m);
		return r->ret;
	}
	r->ret = machine_migrate_in(&m, t, &res);
	dt_transport_shutdown(t);
	dt_transport_free(t);
	r->digest = res.digest;
	r->bytes_received = res.bytes_received;
	r->pages_received = res.pages_received;
	/* the vCPU's state is one of the devices loaded */
	r->devices_loaded = res.ndevices_loaded ? res.ndevices_loaded - 1 : 0;
	r->gen_at_switchover = vm_generation(&m.vm);
	/* The stream ended with the memory and states in place, even when the digest differed
	 * (the negative control): check what we got, then let it run. */
	if (!r->ret || (r->ret == -EPROTO && res.ndevices_loaded == m.nmdev)) {
		machine_check(&m, &r->check);
		resume_and_check(c, &m, r);
	}
	machine_free(&m);
	ret = r->ret;
	if (!ret &&
	    (r->check.host.bad || r->check.dev_bad_total || r->guest_ret || r->guest.bad ||
	     !r->resumed || r->devices_running != r->ndevices || r->devices_loaded != r->ndevices))
		ret = -EIO;
	return ret;
}

void vm_print_source(const struct vm_cli *c, int ret, const struct dt_migrate_result *res,
		     const struct machine *m)
{
	uint64_t dev_writes = 0;

	for (unsigned t = 0; t < VDEV_NTYPES; t++)
		if (m->dev[t])
			dev_writes += vdev_writes(m->dev[t]);
	if (c->json) {
		printf("{\"source\":{\"ret\":%d,\"rounds\":%u,\"bytes_sent\":%" PRIu64
		       ",\"pages_sent\":%" PRIu64 ",\"zero_pages\":%" PRIu64
		       ",\"pinned_sent_precopy\":%" PRIu64 ",\"pinned_sent_final\":%" PRIu64
		       ",\"final_pages\":%" PRIu64 ",\"device_bytes\":%" PRIu64
		       ",\"predicted_downtime_ms\":%.3f,\"actual_downtime_ms\":%.3f"
		       ",\"total_ms\":%.1f,\"digest\":\"%016" PRIx64 "\",\"guest_generation\":%u"
		       ",\"device_writes\":%" PRIu64 "}}\n",
		       ret, res->rounds, res->bytes_sent, res->pages_sent, res->zero_pages,
		       res->pinned_sent_precopy, res->pinned_sent_final, res->final_pages,
		       res->device_bytes, (double)res->predicted_downtime_ns / 1e6,
		       (double)res->actual_downtime_ns / 1e6, (double)res->total_ns / 1e6,
		       res->digest, vm_generation(&m->vm), dev_writes);
		return;
	}
	if (ret) {
		printf("migration failed: %s (the source VM runs on)\n", strerror(-ret));
		return;
	}
	printf("switchover after %u rounds: predicted downtime %.1f ms, actual %.1f ms\n",
	       res->rounds, (double)res->predicted_downtime_ns / 1e6,
	       (double)res->actual_downtime_ns / 1e6);
	printf("sent %.1f MB (%" PRIu64 " pages, %" PRIu64
	       " zero) in %.2f s; pinned pages: %" PRIu64 " before the pause, %" PRIu64
	       " in stop-and-copy; device state %" PRIu64 " bytes\n",
	       (double)res->bytes_sent / 1e6, res->pages_sent, res->zero_pages,
	       (double)res->total_ns / 1e9, res->pinned_sent_precopy, res->pinned_sent_final,
	       res->device_bytes);
}

static const char *verdict(bool ok)
{
	return ok ? "PASS" : "FAIL";
}

int vm_print_dest(const struct vm_cli *c, const struct dest_report *r, uint64_t source_digest)
{
	bool mem_ok = !r->ret && r->digest == source_digest && !r->check.host.bad &&
		      !r->check.dev_bad_total;
	bool guest_ok = !r->guest_ret && !r->guest.bad && r->guest.checked && r->resumed;
	bool dev_ok = r->devices_loaded == r->ndevices && r->devices_running == r->ndevices &&
		      !r->check.dev_bad_total;

	if (c->json) {
		printf("{\"destination\":{\"ret\":%d,\"digest\":\"%016" PRIx64
		       "\",\"bytes_received\":%" PRIu64 ",\"memory_equal\":%s,\"ledger_bad\":%u"
		       ",\"device_bad\":%" PRIu64 ",\"guest_check\":%d,\"guest_bad\":%u"
		       ",\"guest_checked\":%u,\"generation\":[%u,%u],\"devices_loaded\":%u"
		       ",\"devices_running\":%u,\"ok\":%s}}\n",
		       r->ret, r->digest, r->bytes_received, mem_ok ? "true" : "false",
		       r->check.host.bad, r->check.dev_bad_total, r->guest_ret, r->guest.bad,
		       r->guest.checked, r->gen_at_switchover, r->gen_after, r->devices_loaded,
		       r->devices_running, mem_ok && guest_ok && dev_ok ? "true" : "false");
		return mem_ok && guest_ok && dev_ok ? 0 : -1;
	}
	if (r->ret == -EPROTO)
		printf("check 1, memory at switchover: %s (the destination's digest %016" PRIx64
		       " is not the source's: stream refused; %u stamps off the ledger, %" PRIu64
		       " device pages stale)\n",
		       verdict(mem_ok), r->digest, r->check.host.bad, r->check.dev_bad_total);
	else
		printf("check 1, memory at switchover: %s (digest %016" PRIx64
		       " on both sides; %u stamps off the ledger, %" PRIu64
		       " device pages stale)\n",
		       verdict(mem_ok), r->digest, r->check.host.bad, r->check.dev_bad_total);
	for (unsigned t = 0; t < VDEV_NTYPES; t++) {
		if (!r->check.dev_bad[t])
			continue;
		printf("  device %s: %" PRIu64 " stale pages, first at gpa", dev_names[t],
		       r->check.dev_bad[t]);
		for (unsigned i = 0; i < 4 && i < r->check.dev_bad[t]; i++)
			printf(" 0x%" PRIx64, r->check.dev_bad_gpa[t][i]);
		printf("\n");
	}
	if (r->guest_ret)
		printf("check 2, guest self-check on the destination: FAIL (%s)\n",
		       r->guest_ret == -ENOEXEC ? "not run" : strerror(-r->guest_ret));
	else
		printf("check 2, guest self-check on the destination: %s (%u pages checked, %u "
		       "bad; generation %u at switchover, %u after %.1f s)\n",
		       verdict(guest_ok), r->guest.checked, r->guest.bad, r->gen_at_switchover,
		       r->gen_after, c->run_s);
	printf("check 3, devices resumed: %s (%u of %u states loaded, %u writing again)\n",
	       verdict(dev_ok), r->devices_loaded, r->ndevices, r->devices_running);
	return mem_ok && guest_ok && dev_ok ? 0 : -1;
}
