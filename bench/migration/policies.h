/* SPDX-License-Identifier: MIT */
/*
 * bench/migration/policies.h - other engines' pre-copy policies, each written from its
 * published rule as a pure function with exactly the signature of the engine's `decide`
 * callback (struct dt_migrate_source_opts), so that the engine and the simulator
 * (policy_sim) can run any of them in place of dt_policy_decide().
 *
 * Invariants: every function is pure (no clock, no state, no I/O): the same rounds give the
 * same output. It returns 0 with *out filled (decision, predicted_downtime_ns, verdict,
 * reason), or -EINVAL with *out zeroed. A policy that has no verdict of its own says
 * UNKNOWN; one that reports no downtime says UINT64_MAX. What a policy needs from the engine
 * beyond the decision (pinned pages sent every round, Xen's skip of re-dirtied pages, a CPU
 * throttle) is in needs_engine_features: the simulator models those, the callback cannot.
 */
#ifndef DT_BENCH_MIGRATION_POLICIES_H
#define DT_BENCH_MIGRATION_POLICIES_H

#include <stdint.h>

#include <dirtytrack/migrate.h>

/* QEMU never stops pre-copy on its own: the harness stops it here and counts "did not
 * converge". */
#define QEMU_HARNESS_MAX_ROUNDS 100
/* QEMU's default downtime-limit (migrate-set-parameters downtime-limit): 300 ms. */
#define QEMU_DEFAULT_DOWNTIME_NS 300000000ull
/* QEMU auto-converge parameters and their documented defaults (qapi/migration.json):
 * throttle-trigger-threshold 50 %, cpu-throttle-initial 20, cpu-throttle-increment 10,
 * max-cpu-throttle 99. */
#define QEMU_AC_TRIGGER_PCT 50
#define QEMU_AC_INITIAL	    20
#define QEMU_AC_INCREMENT   10
#define QEMU_AC_MAX	    99
#define QEMU_AC_HIGH_SYNCS  2
/* Xen's xc_domain_save defaults: DEF_MAX_ITERS 29, DEF_MAX_FACTOR 3, and the last
 * iteration once fewer than 50 pages were dirty. */
#define XEN_MAX_ITERS	    29
#define XEN_MIN_DIRTY_PAGES 50
#define XEN_MAX_FACTOR	    3
/* Cloud Hypervisor (before 2026): a fixed number of memory copy passes before the pause. */
#define CH_PRECOPY_ITERATIONS 5

enum bench_engine_feature {
	BENCH_NO_DEFER_PINNED = 1 << 0, /* pinned pages harvested and sent every round */
	BENCH_XEN_SKIP = 1 << 1,	/* skip pages re-dirtied before their send this round */
	BENCH_QEMU_THROTTLE = 1 << 2,	/* slow the vCPUs by policy_qemu_throttle() */
	BENCH_HARNESS_CAP = 1 << 3,	/* never stops on its own: the harness caps rounds */
};

typedef int (*bench_decide_fn)(void *opaque, const struct dt_policy *policy,
			       const struct dt_round_stats *rounds, unsigned n,
			       struct dt_policy_out *out);

struct bench_policy {
	const char *name;
	bench_decide_fn decide;
	unsigned needs_engine_features; /* enum bench_engine_feature */
};

extern const struct bench_policy bench_policies[];
extern const unsigned bench_npolicies;

/* NULL if there is no such policy. */
const struct bench_policy *bench_policy_find(const char *name);

int policy_qemu(void *opaque, const struct dt_policy *policy, const struct dt_round_stats *rounds,
		unsigned n, struct dt_policy_out *out);
int policy_qemu_auto_converge(void *opaque, const struct dt_policy *policy,
			      const struct dt_round_stats *rounds, unsigned n,
			      struct dt_policy_out *out);
int policy_xen(void *opaque, const struct dt_policy *policy, const struct dt_round_stats *rounds,
	       unsigned n, struct dt_policy_out *out);
int policy_cloud_hypervisor(void *opaque, const struct dt_policy *policy,
			    const struct dt_round_stats *rounds, unsigned n,
			    struct dt_policy_out *out);
int policy_ours(void *opaque, const struct dt_policy *policy, const struct dt_round_stats *rounds,
		unsigned n, struct dt_policy_out *out);
int policy_ours_nodefer(void *opaque, const struct dt_policy *policy,
			const struct dt_round_stats *rounds, unsigned n, struct dt_policy_out *out);

/*
 * The CPU throttle (percent, 0..99) QEMU's auto-converge would apply after the sync of
 * rounds[n - 1], recomputed from the whole trace (the callback returns only a decision).
 */
double policy_qemu_throttle(const struct dt_round_stats *rounds, unsigned n);

#endif
