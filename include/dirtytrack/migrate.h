/* SPDX-License-Identifier: MIT */
/*
 * dirtytrack/migrate.h - pre-copy live migration of memory tracked by a dirty set.
 *
 * The source sends every non-zero page once (round 0), then runs rounds of harvest-and-send
 * until the policy says the rest fits the downtime limit. Then it pauses the caller (vCPUs
 * and devices stop), harvests a last time, sends the rest, the perpetually dirty pinned pages
 * (deferred out of every pre-copy round unless deferral is off) and the device state, and
 * waits for the destination's ack, which comes only after the destination has verified every
 * batch checksum and a digest of the whole memory. Until that ack the source may run again:
 * on any failure or abort the caller's resume callback runs and every page harvested during
 * the attempt is merged back into the dirty set, so a retry starts from correct dirty state.
 *
 * The policy is a pure function (dt_policy_decide): the stats of every round in, a decision
 * out. It is exported so that traces can be replayed and other policies compared with it.
 *
 * Aborting: dt_transport_shutdown() on the migration's transport, from any thread, makes the
 * running dt_migrate_source() / dt_migrate_dest() fail with -EPIPE or -ECONNRESET promptly.
 */
#ifndef DIRTYTRACK_MIGRATE_H
#define DIRTYTRACK_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dirtytrack/track.h>
#include <dirtytrack/transport.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- policy ----------------------------------------------------------------------------- */

enum dt_verdict {
	DT_VERDICT_UNKNOWN,    /* too few rounds to tell */
	DT_VERDICT_CONVERGING, /* dirty pages per round falling */
	DT_VERDICT_STALLED,    /* flat: the dirty rate matches what the link drains */
	DT_VERDICT_DIVERGING,  /* rising: the dirty rate beats the link */
};

enum dt_decision {
	DT_DECISION_CONTINUE,	/* another pre-copy round */
	DT_DECISION_SWITCHOVER, /* pause, send the rest: the predicted downtime fits */
	DT_DECISION_GIVE_UP,	/* abandon: the source keeps running, nothing is lost */
	DT_DECISION_ASK,	/* will not converge: the caller's ask callback decides */
};

/* What one round measured; filled by the engine (or a simulator replaying a trace). Round 0
 * is the first full pass; round r >= 1 sends what was harvested at its start. */
struct dt_round_stats {
	uint32_t round;
	uint64_t dirty[DT_NCLASSES]; /* pages harvested at the start of the round, per class */
	uint64_t dirty_pages;	     /* the union harvested: to send now (pinned ones deferred) */
	uint64_t pinned_pages;	     /* perpetually dirty pinned pages now (deferred or not) */
	uint64_t sent_pages;	     /* pages sent in this round, zero pages included */
	uint64_t zero_pages;	     /* of them, sent as a flag only */
	uint64_t sent_bytes;	     /* bytes on the wire this round (after compression) */
	uint64_t total_bytes;	     /* bytes on the wire since the start */
	uint64_t send_ns;	     /* time spent sending this round's pages */
	int64_t queued_bytes;	/* growth of the transport's send queue over send_ns (0: unknown):
			       * the link carried sent_bytes - queued_bytes meanwhile */
	uint64_t backlog_bytes; /* still in the transport's queue when this round is decided
				 * (0: unknown): they cross the link before the final pages */
	uint64_t round_ns;	/* the whole round: harvest, decide, send */
	uint64_t harvest_ns;	/* the harvest at the start of the round */
	uint64_t device_bytes;	/* device state expected at switchover (pending) */
	uint64_t fixed_cost_ns; /* measured switchover overhead: RTT, harvest, pause */
	uint64_t overlap_ns;	/* switchover work beside the final send (the source's digest):
			      * downtime = fixed + max(transfer, overlap) */
	uint64_t memory_bytes;	/* size of the migrated memory */
	uint32_t page_size;

	/* Filled from dt_policy_decide(), for the record. */
	double dirty_rate;		/* pages per second dirtied during the previous round */
	double bandwidth;		/* bytes per second, smoothed goodput (or the override) */
	uint64_t predicted_downtime_ns; /* if the switchover were now */
	enum dt_verdict verdict;
	enum dt_decision decision;
};

struct dt_policy {
	size_t size;		   /* sizeof(struct dt_policy), or 0 (embedded: every field read) */
	uint64_t max_downtime_ns;  /* 0: 300 ms */
	uint32_t max_rounds;	   /* 0: 30 pre-copy rounds, then give up or ask */
	double max_bytes_factor;   /* 0: 3.0; give up or ask past this x memory_bytes sent */
	double bandwidth_override; /* bytes per second; 0: measured */
	uint64_t fixed_cost_ns;	   /* override of the measured fixed cost; 0: measured */
	uint32_t stall_rounds;	   /* 0: 3; rounds not converging before giving up or asking */
	bool no_defer_pinned;	   /* send pinned pages in every round, as QEMU does */
	/* Share of max_downtime_ns held back for the prediction's error: switch over when the
	 * prediction fits (1 - margin) x the limit. 0: 0.1; negative: none. Below 1. */
	double margin;
};

struct dt_policy_out {
	enum dt_decision decision;
	enum dt_verdict verdict;
	double slope;			/* dirty pages per round, per round (least squares) */
	double dirty_rate;		/* pages per second */
	double bandwidth;		/* bytes per second */
	uint64_t predicted_downtime_ns; /* switchover now; UINT64_MAX: no bandwidth known */
	char reason[128];		/* one line for the log: why this decision */
	double rel_slope;	 /* slope / mean of the fitted counts: -0.3 = 30 % less a round */
	double link_ratio;	 /* dirty rate x page size / bandwidth; 0: unknown */
	uint32_t not_converging; /* consecutive rounds STALLED or DIVERGING, this one included */
	/* Where the dirty counts are headed: the count at which rounds would settle, projected
	 * from the newest two counts and their windows (docs/policy.md); -1: not projected. */
	double settle_pages;
};

/* Fill the defaults into the fields of *p left 0 (a field 0 means its default everywhere). */
void dt_policy_defaults(struct dt_policy *p);

/*
 * The decision after the harvest of the newest round, rounds[n - 1] (its send fields still
 * 0; they and its total_bytes are not read, so a recorded trace replays): continue, switch over, or ask (never GIVE_UP itself: the engine gives up
 * when there is no ask callback). n == 1 is always CONTINUE: round 0 is sent first. Pure: the
 * same input gives the same output; the fields "filled from dt_policy_decide()" of rounds[]
 * are not read. Returns 0, or -EINVAL (logged) for NULL pointers, n == 0, or inconsistent
 * stats (rounds not numbered 0..n-1, page size 0, not a power of two or changing, memory
 * size 0 or changing, more dirty pages than memory, total_bytes falling, zero_pages >
 * sent_pages, send_ns > round_ns) or policy (negative or non-finite factor or override).
 * The rules and their thresholds are in docs/policy.md.
 */
int dt_policy_decide(const struct dt_policy *policy, const struct dt_round_stats *rounds,
		     unsigned n, struct dt_policy_out *out);

/* Copy a decision into the round it was made for: the fields of s "filled from
 * dt_policy_decide()" (dirty rate, bandwidth, prediction, verdict, decision), as the engine
 * records them; for replaying traces and simulations. */
void dt_round_stats_record(struct dt_round_stats *s, const struct dt_policy_out *out);

/* One JSON object, no newline: round, pages per class, bytes, rate, bandwidth, predicted
 * downtime (null when unknown), verdict, decision; keys in docs/policy.md. Returns the
 * length it needs without the NUL, as snprintf (buf may be NULL when len is 0), or -EINVAL. */
int dt_round_stats_json(const struct dt_round_stats *s, char *buf, size_t len);
const char *dt_verdict_name(enum dt_verdict v);
const char *dt_decision_name(enum dt_decision d);

/* ---- devices ---------------------------------------------------------------------------- */

/* A device whose state travels in the stream. Matched on the destination by name. */
struct dt_migrate_device {
	const char *name; /* at most 63 bytes, unique */
	void *opaque;
	/* Source, after pause: write the state into buf; return its length, or -ENOSPC when
	 * cap is too small (the engine retries with more, up to 64 MiB). */
	int64_t (*save)(void *opaque, void *buf, size_t cap);
	/* Source, optional: state bytes expected at switchover, for the downtime prediction;
	 * also the first buffer size tried. */
	uint64_t (*pending)(void *opaque);
	/* Destination: load the state; a negative errno fails the migration. */
	int (*load)(void *opaque, const void *buf, size_t len);
};

/* ---- source ----------------------------------------------------------------------------- */

#define DT_MIGRATE_COMPRESS (1u << 0) /* zstd page batches (if the destination agrees) */

struct dt_migrate_source_opts {
	size_t size; /* sizeof(struct dt_migrate_source_opts) */
	struct dt_transport *transport;
	/* Tracking already started (sources started, containers' dirty tracking on): every page
	 * harvested from it during the migration is merged back if the migration fails. */
	struct dt_dirty_set *set;
	/* The memory to send: addr in the set's address space, host where it is mapped. */
	const struct dt_region *regions;
	unsigned nregions;
	const struct dt_migrate_device *devices;
	unsigned ndevices;
	struct dt_policy policy;
	uint32_t flags;
	/* Bytes per second the stream may use (0: as fast as the transport goes), as QEMU's
	 * max-bandwidth: pre-copy rounds and stop-and-copy alike, so the bandwidth the policy
	 * measures is the one the final phase gets. */
	uint64_t max_bandwidth;
	void *opaque;
	/* Stop vCPUs and devices (required). Resume them after a failure past the pause. */
	int (*pause)(void *opaque);
	void (*resume)(void *opaque);
	/* Optional: asked when the policy will not converge; return CONTINUE, SWITCHOVER or
	 * GIVE_UP. Without it the migration gives up (-ETIMEDOUT). */
	enum dt_decision (*ask)(void *opaque, const struct dt_round_stats *rounds, unsigned n);
	/* Optional: after every round, its stats and their JSON line. */
	void (*on_round)(void *opaque, const struct dt_round_stats *s, const char *json);
	/* Optional: the policy, in place of dt_policy_decide() and with its contract (pure,
	 * 0 or a negative errno, out filled); for comparing other engines' rules on the same
	 * engine (bench/migration/). */
	int (*decide)(void *opaque, const struct dt_policy *policy,
		      const struct dt_round_stats *rounds, unsigned n, struct dt_policy_out *out);
};

struct dt_migrate_result {
	uint32_t rounds;     /* pre-copy rounds, round 0 included */
	uint64_t bytes_sent; /* whole stream */
	uint64_t pages_sent; /* zero pages included */
	uint64_t zero_pages;
	uint64_t pinned_sent_precopy;	/* pinned pages sent before the pause (0 with deferral) */
	uint64_t pinned_sent_final;	/* pinned pages sent during stop-and-copy */
	uint64_t final_pages;		/* pages sent during stop-and-copy */
	uint64_t device_bytes;		/* device state sent */
	uint64_t predicted_downtime_ns; /* the prediction the switchover was decided on */
	uint64_t actual_downtime_ns;	/* pause to the destination's ack */
	uint64_t total_ns;
	uint64_t digest; /* of the whole memory at switchover, as the destination confirmed */
	enum dt_verdict verdict;
	enum dt_decision decision; /* the last one: SWITCHOVER on success */
};

/*
 * Migrate. 0 once the destination acknowledged: the source may be discarded (the caller's
 * vCPUs stay paused). Negative errno otherwise, with the caller running again (resume was
 * called if pause was) and every harvested page merged back: -ETIMEDOUT (gave up: will not
 * converge), -EPIPE/-ECONNRESET (transport broke or was shut down), -EPROTO (the destination
 * refused the stream: version, checksum, digest), -ECANCELED (a callback failed), -EINVAL.
 * res (optional) is filled in either case.
 */
int dt_migrate_source(const struct dt_migrate_source_opts *opts, struct dt_migrate_result *res);

/* ---- destination ------------------------------------------------------------------------ */

struct dt_migrate_dest_opts {
	size_t size; /* sizeof(struct dt_migrate_dest_opts) */
	struct dt_transport *transport;
	/* Where to put the memory: must match the stream's layout (addr and size of every
	 * region). NULL: the destination maps anonymous memory itself (see the result). */
	const struct dt_region *regions;
	unsigned nregions;
	const struct dt_migrate_device *devices;
	unsigned ndevices;
	void *opaque;
};

struct dt_migrate_dest_result {
	uint32_t rounds;
	uint64_t bytes_received;
	uint64_t pages_received;
	uint64_t zero_pages;
	uint64_t digest;
	unsigned ndevices_loaded;
	/* When opts.regions was NULL: the memory mapped for the layout, freed (munmap) with
	 * dt_migrate_dest_result_release(). */
	struct dt_region *regions;
	unsigned nregions;
};

/* Receive a whole migration; 0 after the ack was sent (the memory and every device state
 * are in place). Negative errno: -EPROTO (bad magic, version, checksum, digest, a length out
 * of bounds; the source is told), -ENOENT (a device state for no device of ours),
 * -EPIPE/-ECONNRESET (the source went away), -EINVAL. */
int dt_migrate_dest(const struct dt_migrate_dest_opts *opts, struct dt_migrate_dest_result *res);
void dt_migrate_dest_result_release(struct dt_migrate_dest_result *res);

#ifdef __cplusplus
}
#endif

#endif /* DIRTYTRACK_MIGRATE_H */
