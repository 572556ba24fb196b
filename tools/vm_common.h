/* SPDX-License-Identifier: MIT */
/*
 * tools/vm_common.h - what `dirtytrack demo` and `dirtytrack vm` share: the micro-VM's
 * command-line options, the destination's whole job (receive, check, resume, check again)
 * and its report, and the printing of results and checks.
 */
#ifndef DT_TOOLS_VM_COMMON_H
#define DT_TOOLS_VM_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <dirtytrack/dirtytrack.h>

#include "machine.h"

struct vm_cli {
	struct machine_opts mo;
	uint64_t max_bandwidth;	  /* bytes/s, 0: unlimited */
	uint64_t max_downtime_ms; /* 0: the engine's default */
	double warmup_s;	  /* the source runs this long before migrating */
	double run_s;		  /* `vm run`, and the destination after resuming */
	const char *listen, *to;  /* `vm migrate-in` / `vm migrate-out` */
	bool json;
	bool verbose;
};

void vm_cli_defaults(struct vm_cli *c);
/* Options of demo and vm (vm_cli_usage); argv[0] is the command's name. Returns the index of
 * the first operand, or -1 after printing why on stderr (bad usage). */
int vm_cli_parse(struct vm_cli *c, int argc, char **argv);
void vm_cli_usage(FILE *f);

/* What the destination found; passed from a child process to the demo through a pipe. */
struct dest_report {
	int ret;       /* dt_migrate_dest's */
	int guest_ret; /* vm_guest_verify's after resuming (-ENOEXEC: not run) */
	int resumed;   /* the vCPU ran on: its generation advanced */
	uint32_t gen_at_switchover, gen_after;
	uint32_t ndevices, devices_loaded, devices_running;
	uint64_t digest, bytes_received, pages_received;
	uint64_t dev_writes_before[VDEV_NTYPES], dev_writes_after[VDEV_NTYPES];
	struct machine_check check; /* memory against the ledger and the devices' records */
	struct vm_verify guest;	    /* the guest's own check, on the destination */
};

/* Accept one migration on listener l into a new machine built from c, check it, resume it
 * for c->run_s seconds, ask the guest to check itself. Fills r; returns 0 when every check
 * passed. */
int vm_destination(const struct vm_cli *c, struct dt_listener *l, struct dest_report *r);

/* Print the destination's checks (human or JSON); returns 0 when all passed. */
int vm_print_dest(const struct vm_cli *c, const struct dest_report *r, uint64_t source_digest);

/* Print the source's result: rounds, predicted vs actual downtime, bytes. */
void vm_print_source(const struct vm_cli *c, int ret, const struct dt_migrate_result *res,
		     const struct machine *m);

#endif
