/* SPDX-License-Identifier: MIT */
/*
 * tools/vm_cmd.c - `dirtytrack vm run|migrate-out|migrate-in`: the two sides of the demo by
 * hand (two terminals, two network namespaces, two machines), and the VM on its own.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "endpoint.h"
#include "migrate_output.h"
#include "vm_common.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: dirtytrack vm run [options]\n"
		   "       dirtytrack vm migrate-out --to tcp:HOST:PORT|unix:PATH [options]\n"
		   "       dirtytrack vm migrate-in --listen tcp:HOST:PORT|unix:PATH [options]\n"
		   "Both sides need the same --mem-mib and --devices.\n\n");
	vm_cli_usage(f);
}

static int vm_run(const struct vm_cli *c)
{
	struct machine_check chk;
	struct vm_verify v = {0};
	struct machine m;
	int ret = machine_new(&m, &c->mo, true);

	if (ret)
		return 1;
	ret = machine_start(&m);
	for (double s = 0; !ret && s < c->run_s; s += 1.0) {
		sleep(c->run_s - s >= 1.0 ? 1 : 0);
		if (!c->json)
			printf("t=%.0fs guest generation %u\n", s + 1, vm_generation(&m.vm));
	}
	if (!ret)
		ret = vm_guest_verify(&m.vm, 60000, &v);
	machine_pause(&m);
	machine_check(&m, &chk);
	if (c->json)
		printf("{\"run\":{\"ret\":%d,\"generation\":%u,\"guest_checked\":%u,\"guest_bad\":%u,"
		       "\"host_bad\":%u,\"device_bad\":%llu}}\n",
		       ret, vm_generation(&m.vm), v.checked, v.bad, chk.host.bad,
		       (unsigned long long)chk.dev_bad_total);
	else
		printf("guest self-check: %u pages checked, %u bad; host check: %u bad; devices: "
		       "%llu stale pages\n",
		       v.checked, v.bad, chk.host.bad, (unsigned long long)chk.dev_bad_total);
	machine_free(&m);
	return ret || v.bad || chk.host.bad || chk.dev_bad_total ? 1 : 0;
}

static void on_round(void *opaque, const struct dt_round_stats *s, const char *json)
{
	out_round(opaque, s, json);
}

static int vm_migrate_out(const struct vm_cli *c, const struct endpoint *ep)
{
	struct dt_migrate_source_opts so = {.size = sizeof(so)};
	struct dt_migrate_result res = {0};
	struct out_progress progress;
	struct dt_transport *t;
	struct machine m;
	int ret = machine_new(&m, &c->mo, true);

	if (ret)
		return 1;
	ret = machine_start(&m);
	if (!ret)
		ret = machine_track_start(&m);
	if (!ret) {
		usleep((useconds_t)(c->warmup_s * 1e6));
		t = endpoint_connect(ep, "dirtytrack vm migrate-out");
		if (!t) {
			ret = -ECONNREFUSED;
		} else {
			out_progress_begin(&progress, c->json, !c->verbose);
			so.policy.max_downtime_ns = c->max_downtime_ms * 1000000;
			so.max_bandwidth = c->max_bandwidth;
			so.opaque = &progress;
			so.on_round = on_round;
			ret = machine_migrate_out(&m, t, &so, &res);
			out_progress_end(&progress);
			dt_transport_shutdown(t);
			dt_transport_free(t);
			vm_print_source(c, ret, &res, &m);
		}
	}
	machine_free(&m);
	return ret ? 1 : 0;
}

static int vm_migrate_in(const struct vm_cli *c, const struct endpoint *ep)
{
	struct dt_listener *l = endpoint_listen(ep, "dirtytrack vm migrate-in");
	struct dest_report r;

	if (!l)
		return 1;
	vm_destination(c, l, &r);
	dt_listener_free(l);
	/* The engine compared the digests: on success they are equal. */
	return vm_print_dest(c, &r, r.digest) ? 1 : 0;
}

int vm_cmd(int argc, char **argv)
{
	struct endpoint ep;
	struct vm_cli c;
	const char *sub = argc > 1 ? argv[1] : "";

	vm_cli_defaults(&c);
	if (argc < 2 || vm_cli_parse(&c, argc - 1, argv + 1) != argc - 1) {
		usage(stderr);
		return 2;
	}
	dt_set_log(dt_log_stderr, NULL, c.verbose ? DT_LOG_INFO : DT_LOG_WARN);
	if (!strcmp(sub, "run") && !c.listen && !c.to)
		return vm_run(&c);
	if (!strcmp(sub, "migrate-out") && c.to && !c.listen) {
		if (!endpoint_parse(c.to, &ep)) {
			fprintf(stderr, "dirtytrack vm: bad endpoint '%s'\n", c.to);
			return 2;
		}
		return vm_migrate_out(&c, &ep);
	}
	if (!strcmp(sub, "migrate-in") && c.listen && !c.to) {
		if (!endpoint_parse(c.listen, &ep)) {
			fprintf(stderr, "dirtytrack vm: bad endpoint '%s'\n", c.listen);
			return 2;
		}
		return vm_migrate_in(&c, &ep);
	}
	usage(stderr);
	return 2;
}
