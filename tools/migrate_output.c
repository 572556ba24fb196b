/* SPDX-License-Identifier: MIT */
/*
 * tools/migrate_output.c - what `dirtytrack migrate` prints, and its memory dumps.
 *
 * stdout carries the results: a progress line per round (rewritten in place with \r on a
 * terminal, one line each otherwise) and a summary; or, with --json, only JSON objects, one
 * per line: the engine's per round and a final one. Every line is flushed as it is written,
 * so a script reading a pipe or a file sees a round as soon as it ended. stderr carries the
 * errors, the library's log, and the destination's "listening" line.
 *
 * JSON numbers are printed with %.3f under the C locale (the CLI never sets another); the
 * 64-bit digest is a hex string, as a JSON number would lose bits.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "migrate_output.h"

uint64_t out_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

/* "1 GiB", "256 MiB", or bytes: the sizes a user typed come back the same way. */
static const char *human_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = {"TiB", "GiB", "MiB", "KiB"};

	for (unsigned i = 0; i < 4; i++) {
		unsigned shift = 10 * (4 - i);

		if (bytes && !(bytes & ((1ull << shift) - 1))) {
			snprintf(buf, len, "%llu %s", (unsigned long long)(bytes >> shift),
				 units[i]);
			return buf;
		}
	}
	snprintf(buf, len, "%llu bytes", (unsigned long long)bytes);
	return buf;
}

/* ---- progress --------------------------------------------------------------------------- */

void out_progress_begin(struct out_progress *p, bool json, bool rewrite)
{
	p->json = json;
	p->tty = !json && rewrite && isatty(STDOUT_FILENO);
	p->pending = false;
}

/* Columns of the terminal on stdout; 0 when unknown. */
static unsigned terminal_width(void)
{
	struct winsize ws;

	return ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) ? 0 : ws.ws_col;
}

/* The compact line, for a terminal too narrow for the full one: what matters most first (the
 * decision, the verdict, the predicted downtime), classes that are 0 left out (but the
 * CPU's), short labels. Whatever still does not fit is cut from the end. */
static void compact_line(char *buf, size_t len, const struct dt_round_stats *s,
			 const char *downtime)
{
	static const char *const names[DT_NCLASSES] = {"cpu", "vmm", "pin", "dev", "whole"};
	size_t n =
		(size_t)snprintf(buf, len, "r%u %s %s %s", s->round, dt_decision_name(s->decision),
				 dt_verdict_name(s->verdict), downtime);

	for (unsigned c = 0; c < DT_NCLASSES && n < len; c++)
		if (c == DT_CLASS_CPU || s->dirty[c])
			n += (size_t)snprintf(buf + n, len - n, " %s %llu", names[c],
					      (unsigned long long)s->dirty[c]);
	if (n < len)
		snprintf(buf + n, len - n, " %.1fMB %.0fp/s %.1fMB/s", (double)s->total_bytes / 1e6,
			 s->dirty_rate, s->bandwidth / 1e6);
}

void out_round(struct out_progress *p, const struct dt_round_stats *s, const char *json)
{
	char downtime[32], line[512];
	unsigned width;

	if (p->json) {
		printf("%s\n", json);
		fflush(stdout);
		return;
	}
	if (s->predicted_downtime_ns == UINT64_MAX)
		snprintf(downtime, sizeof(downtime), "?");
	else
		snprintf(downtime, sizeof(downtime), "%.1f ms", ms(s->predicted_downtime_ns));
	snprintf(line, sizeof(line),
		 "round %u  cpu %llu vmm %llu pinned %llu device %llu whole %llu  sent %.1f MB  "
		 "rate %.0f p/s  bw %.1f MB/s  downtime %s  %s  %s",
		 s->round, (unsigned long long)s->dirty[DT_CLASS_CPU],
		 (unsigned long long)s->dirty[DT_CLASS_VMM],
		 (unsigned long long)s->dirty[DT_CLASS_PINNED],
		 (unsigned long long)s->dirty[DT_CLASS_DEVICE],
		 (unsigned long long)s->dirty[DT_CLASS_WHOLE], (double)s->total_bytes / 1e6,
		 s->dirty_rate, s->bandwidth / 1e6, downtime, dt_verdict_name(s->verdict),
		 dt_decision_name(s->decision));
	if (!p->tty) {
		printf("%s\n", line);
	} else {
		/* A line that wraps cannot be rewritten with \r: fit it to the terminal. */
		width = terminal_width();
		if (width > 1 && strlen(line) >= width)
			compact_line(line, sizeof(line), s, downtime);
		if (width > 1 && strlen(line) >= width)
			line[width - 1] = '\0';
		printf("\r%s\033[K", line);
		p->pending = true;
	}
	fflush(stdout);
}

void out_progress_end(struct out_progress *p)
{
	if (p->pending)
		printf("\n");
	p->pending = false;
	fflush(stdout);
}

/* ---- results ---------------------------------------------------------------------------- */

static void json_downtime(const char *key, uint64_t ns)
{
	if (ns == UINT64_MAX)
		printf("\"%s\":null,", key);
	else
		printf("\"%s\":%.3f,", key, ms(ns));
}

/* What the errno of dt_migrate_source() means here (migrate.h lists them). */
static const char *failure_hint(int ret)
{
	switch (ret) {
	case -EPIPE:
	case -ECONNRESET:
		return ": the destination went away";
	case -ETIMEDOUT:
		return ": no convergence, the writer dirties memory faster than the link drains "
		       "it (a larger --max-downtime or a lower --dirty-rate helps)";
	case -EPROTO:
		return ": the destination refused the stream (the log above says why)";
	case -ECANCELED:
		return ": the workload could not be paused";
	default:
		return "";
	}
}

/* The digest only means something once the destination confirmed it. */
static void json_digest(int ret, uint64_t digest)
{
	if (ret)
		printf("\"digest\":null");
	else
		printf("\"digest\":\"%016llx\"", (unsigned long long)digest);
}

void out_source_result(bool json, int ret, const struct dt_migrate_result *res,
		       const struct out_source_info *info)
{
	char size[32];

	if (ret)
		fprintf(stderr, "dirtytrack migrate: migration failed after %u rounds: %s (%d)%s\n",
			res->rounds, strerror(-ret), ret, failure_hint(ret));
	if (json) {
		printf("{\"status\":\"%s\",", ret ? "failed" : "ok");
		if (ret)
			printf("\"error\":%d,\"message\":\"%s\",", ret, strerror(-ret));
		printf("\"size\":%llu,\"source\":\"%s\",\"rounds\":%u,\"bytes_sent\":%llu,"
		       "\"pages_sent\":%llu,\"zero_pages\":%llu,\"final_pages\":%llu,"
		       "\"pinned_sent_precopy\":%llu,\"pinned_sent_final\":%llu,",
		       (unsigned long long)info->size, info->source, res->rounds,
		       (unsigned long long)res->bytes_sent, (unsigned long long)res->pages_sent,
		       (unsigned long long)res->zero_pages, (unsigned long long)res->final_pages,
		       (unsigned long long)res->pinned_sent_precopy,
		       (unsigned long long)res->pinned_sent_final);
		json_downtime("predicted_downtime_ms", res->predicted_downtime_ns);
		json_downtime("actual_downtime_ms", ret ? UINT64_MAX : res->actual_downtime_ns);
		printf("\"total_ms\":%.3f,", ms(res->total_ns));
		json_digest(ret, res->digest);
		printf(",\"verdict\":\"%s\",\"decision\":\"%s\",\"writes\":%llu,"
		       "\"device_writes\":%llu}\n",
		       dt_verdict_name(res->verdict), dt_decision_name(res->decision),
		       (unsigned long long)info->writes, (unsigned long long)info->device_writes);
		fflush(stdout);
		return;
	}
	if (ret)
		return;
	printf("migrated %s (%s tracking) in %u rounds, %.2f s\n",
	       human_size(info->size, size, sizeof(size)), info->source, res->rounds,
	       (double)res->total_ns / 1e9);
	printf("  sent      %llu pages (%llu zero), %.1f MB on the wire; %llu pages in "
	       "stop-and-copy\n",
	       (unsigned long long)res->pages_sent, (unsigned long long)res->zero_pages,
	       (double)res->bytes_sent / 1e6, (unsigned long long)res->final_pages);
	printf("  pinned    %llu pages sent during pre-copy, %llu in stop-and-copy\n",
	       (unsigned long long)res->pinned_sent_precopy,
	       (unsigned long long)res->pinned_sent_final);
	printf("  downtime  %.1f ms (predicted %.1f ms)\n", ms(res->actual_downtime_ns),
	       ms(res->predicted_downtime_ns));
	printf("  digest    %016llx, verified by the destination\n",
	       (unsigned long long)res->digest);
	printf("  workload  %llu pages written by the writer, %llu ring pages by the device\n",
	       (unsigned long long)info->writes, (unsigned long long)info->device_writes);
	fflush(stdout);
}

void out_dest_result(bool json, int ret, const struct dt_migrate_dest_result *res, uint64_t size,
		     uint64_t ns)
{
	char sz[32];

	if (ret)
		fprintf(stderr, "dirtytrack migrate: receiving failed after %u rounds: %s (%d)\n",
			res->rounds, strerror(-ret), ret);
	if (json) {
		printf("{\"status\":\"%s\",", ret ? "failed" : "ok");
		if (ret)
			printf("\"error\":%d,\"message\":\"%s\",", ret, strerror(-ret));
		printf("\"size\":%llu,\"rounds\":%u,\"bytes_received\":%llu,"
		       "\"pages_received\":%llu,\"zero_pages\":%llu,\"total_ms\":%.3f,",
		       (unsigned long long)size, res->rounds,
		       (unsigned long long)res->bytes_received,
		       (unsigned long long)res->pages_received, (unsigned long long)res->zero_pages,
		       ms(ns));
		json_digest(ret, res->digest);
		printf("}\n");
		fflush(stdout);
		return;
	}
	if (ret)
		return;
	printf("received %s in %u rounds, %.2f s: %llu pages (%llu zero), %.1f MB; digest "
	       "%016llx verified\n",
	       human_size(size, sz, sizeof(sz)), res->rounds, (double)ns / 1e9,
	       (unsigned long long)res->pages_received, (unsigned long long)res->zero_pages,
	       (double)res->bytes_received / 1e6, (unsigned long long)res->digest);
	fflush(stdout);
}

/* ---- dumps ------------------------------------------------------------------------------ */

static int write_all(int fd, const char *p, uint64_t len, uint64_t off)
{
	while (len) {
		size_t chunk = len < (1u << 30) ? (size_t)len : (1u << 30);
		ssize_t n = pwrite(fd, p, chunk, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

#define DUMP_PAGE 4096u

/* Zero pages become holes: a dump of 1 GiB costs what its data costs, and reads the same. */
static int dump_region(int fd, const char *mem, uint64_t size, uint64_t off)
{
	static const char zero[DUMP_PAGE];
	uint64_t run = 0, pos;
	int ret = 0;

	for (pos = 0; pos < size && !ret; pos += DUMP_PAGE) {
		uint64_t len = size - pos < DUMP_PAGE ? size - pos : DUMP_PAGE;

		if (memcmp(mem + pos, zero, len))
			continue;
		if (run < pos)
			ret = write_all(fd, mem + run, pos - run, off + run);
		run = pos + len;
	}
	if (!ret && run < size)
		ret = write_all(fd, mem + run, size - run, off + run);
	return ret;
}

int out_dump(const char *path, const struct dt_region *regions, unsigned n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), ret = 0;
	uint64_t off = 0;

	if (fd < 0) {
		fprintf(stderr, "dirtytrack migrate: cannot create %s: %s\n", path,
			strerror(errno));
		return -1;
	}
	for (unsigned i = 0; i < n && !ret; i++) {
		ret = dump_region(fd, regions[i].host, regions[i].size, off);
		off += regions[i].size;
	}
	if (!ret && ftruncate(fd, (off_t)off))
		ret = -errno;
	if (close(fd) && !ret)
		ret = -errno;
	if (ret) {
		fprintf(stderr, "dirtytrack migrate: cannot write %s: %s\n", path, strerror(-ret));
		return -1;
	}
	return 0;
}
