/* SPDX-License-Identifier: MIT */
/*
 * tools/migrate_output.h - what `dirtytrack migrate` prints: the progress line of every
 * round, the final results (human or JSON), and memory dumps.
 */
#ifndef DT_TOOLS_MIGRATE_OUTPUT_H
#define DT_TOOLS_MIGRATE_OUTPUT_H

#include <stdbool.h>
#include <stdint.h>

#include <dirtytrack/dirtytrack.h>

uint64_t out_now_ns(void);

struct out_progress {
	bool json;    /* the engine's JSON line per round rather than the human one */
	bool tty;     /* stdout is a terminal: one line, rewritten in place */
	bool pending; /* a rewritten line is on screen without its newline */
};

/* rewrite: on a terminal, rewrite the line in place (false when log lines would cut it). */
void out_progress_begin(struct out_progress *p, bool json, bool rewrite);
void out_round(struct out_progress *p, const struct dt_round_stats *s, const char *json);
void out_progress_end(struct out_progress *p);

/* What the source knows beside the engine's result. */
struct out_source_info {
	uint64_t size;
	const char *source; /* the tracker's name */
	uint64_t writes, device_writes;
};

/* ret: dt_migrate_source()'s. Failures also go to stderr with their strerror. */
void out_source_result(bool json, int ret, const struct dt_migrate_result *res,
		       const struct out_source_info *info);
void out_dest_result(bool json, int ret, const struct dt_migrate_dest_result *res, uint64_t size,
		     uint64_t ns);

/* Write the regions' memory one after the other to path: 0, or -1 after saying why. */
int out_dump(const char *path, const struct dt_region *regions, unsigned n);

#endif
