/* SPDX-License-Identifier: MIT */
/* tools/cli.h - subcommands of the dirtytrack command-line tool. */
#ifndef DT_TOOLS_CLI_H
#define DT_TOOLS_CLI_H

/* `dirtytrack demo container`: returns the process exit status. */
int demo_container(int argc, char **argv);
/* `dirtytrack demo`: the micro-VM migrated; 0 when every check passed. */
int demo_vm(int argc, char **argv);
/* `dirtytrack vm run|migrate-out|migrate-in`. */
int vm_cmd(int argc, char **argv);
/* `dirtytrack migrate`: returns the process exit status (0, 1 failed, 2 bad usage). */
int migrate_cmd(int argc, char **argv);

/* `dirtytrack vfio-user-device`: a test device served over vfio-user. */
int vfu_device_cmd(int argc, char **argv);

#endif
