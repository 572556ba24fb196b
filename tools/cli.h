/* SPDX-License-Identifier: MIT */
/* tools/cli.h - subcommands of the dirtytrack command-line tool. */
#ifndef DT_TOOLS_CLI_H
#define DT_TOOLS_CLI_H

/* `dirtytrack demo`: returns the process exit status. */
int demo_container(int argc, char **argv);
/* `dirtytrack migrate`: returns the process exit status (0, 1 failed, 2 bad usage). */
int migrate_cmd(int argc, char **argv);

#endif
