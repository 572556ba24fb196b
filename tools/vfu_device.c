/* SPDX-License-Identifier: MIT */
/*
 * tools/vfu_device.c - `dirtytrack vfio-user-device`: one of the micro-VM's DMA test devices
 * served over vfio-user from this process (vmm/vdev_server.h), for `dirtytrack vm
 * run|migrate-out|migrate-in --device vfio-user:PATH` and `dirtytrack demo --vfio-user`.
 *
 * Prints "listening PATH" on stderr once the socket accepts connections. Serves one client
 * after another until killed, or one only with --once.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirtytrack/dirtytrack.h>

#include "cli.h"
#include "vdev_server.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: dirtytrack vfio-user-device --socket PATH [--type T] [--dev-rate N]\n"
		   "                                   [--seed N] [--once] [-v]\n"
		   "\n"
		   "  --socket PATH   the UNIX socket to serve on (created mode 0600)\n"
		   "  --type T        emulated, logging (default), passthrough or vmm\n"
		   "  --dev-rate N    page writes per second (default 2000)\n"
		   "  --seed N        the device's random pages (default 1)\n"
		   "  --once          exit when the first client goes away\n"
		   "  -v, --verbose   the library's messages\n");
}

static int number(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end || v > max || *s == '-') {
		fprintf(stderr, "dirtytrack vfio-user-device: bad value for --%s: '%s'\n", opt, s);
		return -1;
	}
	*out = v;
	return 0;
}

int vfu_device_cmd(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},   {"type", required_argument, NULL, 't'},
		{"dev-rate", required_argument, NULL, 'r'}, {"seed", required_argument, NULL, 'S'},
		{"once", no_argument, NULL, '1'},	    {"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},	    {NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	int type = VDEV_LOGGING, c, ret;
	bool once = false;
	struct vdev_config cfg;
	struct vdev_server *s;
	uint64_t v;

	vdev_config_defaults(&cfg);
	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			path = optarg;
			break;
		case 't':
			type = vdev_type_parse(optarg);
			if (type < 0) {
				fprintf(stderr,
					"dirtytrack vfio-user-device: --type: emulated, "
					"logging, passthrough or vmm, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'r':
			if (number("dev-rate", optarg, UINT32_MAX, &v))
				return 2;
			cfg.writes_per_sec = (uint32_t)v;
			break;
		case 'S':
			if (number("seed", optarg, UINT64_MAX, &v))
				return 2;
			cfg.seed = v;
			break;
		case '1':
			once = true;
			break;
		case 'v':
			dt_set_log(dt_log_stderr, NULL, DT_LOG_INFO);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!path || optind < argc) {
		usage(stderr);
		return 2;
	}
	if (!(s = vdev_server_new(path, -1, (enum vdev_type)type, &cfg)))
		return 1;
	fprintf(stderr, "listening %s\n", path);
	do {
		/* A client that went away or broke the protocol ends its session only. */
		ret = vdev_server_serve_one(s);
		if (ret == -ECONNRESET || ret == -EPROTO) {
			fprintf(stderr, "dirtytrack vfio-user-device: client lost: %s\n",
				strerror(-ret));
			ret = 0;
		}
	} while (!once && !ret);
	if (ret)
		fprintf(stderr, "dirtytrack vfio-user-device: %s\n", strerror(-ret));
	vdev_server_free(s);
	return ret ? 1 : 0;
}
