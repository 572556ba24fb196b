/* SPDX-License-Identifier: MIT */
/*
 * tools/dirtytrack.c - the dirtytrack command-line tool: dispatch of subcommands.
 */
#include <stdio.h>
#include <string.h>

#include <dirtytrack/dirtytrack.h>

#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dirtytrack <command> [options]\n"
		"commands:\n"
		"  demo      live-migrate the micro-VM and its DMA devices to a second process\n"
		"  demo container\n"
		"            walk through the dirty-tracking semantics of the 2020 VFIO thread\n"
		"  vm        run the micro-VM, or migrate it out or in (run|migrate-out|migrate-in)\n"
		"  migrate   live-migrate a test workload's memory to another process\n"
		"  vfio-user-device\n"
		"            serve one of the micro-VM's DMA test devices over vfio-user\n"
		"  version   print the library version\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "demo") && argc > 2 && !strcmp(argv[2], "container"))
		return demo_container(argc - 2, argv + 2);
	if (!strcmp(argv[1], "demo"))
		return demo_vm(argc - 1, argv + 1);
	if (!strcmp(argv[1], "vm"))
		return vm_cmd(argc - 1, argv + 1);
#ifdef DT_HAVE_VFIO_USER
	if (!strcmp(argv[1], "vfio-user-device"))
		return vfu_device_cmd(argc - 1, argv + 1);
#endif
	if (!strcmp(argv[1], "migrate"))
		return migrate_cmd(argc - 1, argv + 1);
	if (!strcmp(argv[1], "version")) {
		printf("dirtytrack %s\n", dt_version());
		return 0;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "dirtytrack: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
