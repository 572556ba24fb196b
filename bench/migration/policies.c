/* SPDX-License-Identifier: MIT */
/*
 * bench/migration/policies.c - QEMU's, QEMU auto-converge's, Xen's and Cloud Hypervisor's
 * pre-copy stop rules, and ours with and without deferral, as pure `decide` callbacks.
 *
 * Written from the documented behaviour of each engine (cited at each rule), not from their
 * code. Invariant: the output depends only on (policy, rounds[0..n-1]); rounds[n-1] is the
 * round just harvested (its send fields unread), as in docs/policy.md "Inputs".
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "policies.h"

#define NS_PER_S 1e9

static int check_input(const struct dt_round_stats *rounds, unsigned n, struct dt_policy_out *out)
{
	if (out)
		memset(out, 0, sizeof(*out));
	if (!rounds || !out || !n)
		return -EINVAL;
	for (unsigned k = 0; k < n; k++)
		if (rounds[k].round != k || !rounds[k].page_size || !rounds[k].memory_bytes)
			return -EINVAL;
	return 0;
}

static uint64_t downtime_limit(const struct dt_policy *policy)
{
	return policy && policy->max_downtime_ns ? policy->max_downtime_ns
						 : QEMU_DEFAULT_DOWNTIME_NS;
}

/* Bytes still to send at a switchover now: the harvested pages (pinned ones included, since
 * these engines send them every round) and the device state. */
static double remaining_bytes(const struct dt_round_stats *s)
{
	return (double)s->dirty_pages * s->page_size + (double)s->device_bytes;
}

/*
 * QEMU (migration/migration.c, migration_iteration_run and the bandwidth update): the
 * bandwidth is the bytes transferred over the last measuring window (~100 ms, BUFFER_DELAY)
 * divided by its wall time; threshold_size = bandwidth x downtime-limit; the migration
 * completes once the pending bytes are <= threshold_size, else it iterates again, with no
 * limit on iterations. Our rounds stand for the windows: the newest sent round, over its
 * whole wall time (harvest included, as QEMU's window includes the sync). With
 * avail-switchover-bandwidth set (our bandwidth_override), that is used instead.
 */
static int qemu_decide(const struct dt_policy *policy, const struct dt_round_stats *rounds,
		       unsigned n, struct dt_policy_out *out, const char *name)
{
	const struct dt_round_stats *s = &rounds[n - 1];
	double bw = 0, remaining = remaining_bytes(s), threshold;
	uint64_t limit = downtime_limit(policy);

	if (policy && policy->bandwidth_override > 0)
		bw = policy->bandwidth_override;
	else if (n >= 2 && rounds[n - 2].round_ns)
		bw = (double)rounds[n - 2].sent_bytes * NS_PER_S / (double)rounds[n - 2].round_ns;
	out->bandwidth = bw;
	out->verdict = DT_VERDICT_UNKNOWN;
	/* QEMU's "expected downtime": the pending bytes at the measured bandwidth. */
	if (bw > 0 && remaining / bw * NS_PER_S < 0x1p63)
		out->predicted_downtime_ns = (uint64_t)(remaining / bw * NS_PER_S);
	else
		out->predicted_downtime_ns = remaining > 0 ? UINT64_MAX : 0;
	threshold = bw * ((double)limit / NS_PER_S);
	if (n >= 2 && remaining <= threshold) {
		out->decision = DT_DECISION_SWITCHOVER;
		snprintf(out->reason, sizeof(out->reason), "%s: pending %.0f B <= threshold %.0f B",
			 name, remaining, threshold);
	} else {
		out->decision = DT_DECISION_CONTINUE;
		snprintf(out->reason, sizeof(out->reason), "%s: pending %.0f B > threshold %.0f B",
			 name, remaining, threshold);
	}
	return 0;
}

int policy_qemu(void *opaque, const struct dt_policy *policy, const struct dt_round_stats *rounds,
		unsigned n, struct dt_policy_out *out)
{
	int ret = check_input(rounds, n, out);

	return ret ? ret : qemu_decide(policy, rounds, n, out, "qemu");
}

int policy_qemu_auto_converge(void *opaque, const struct dt_policy *policy,
			      const struct dt_round_stats *rounds, unsigned n,
			      struct dt_policy_out *out)
{
	int ret = check_input(rounds, n, out);

	return ret ? ret : qemu_decide(policy, rounds, n, out, "qemu-auto-converge");
}

/*
 * QEMU auto-converge (migration/ram.c, the throttle trigger run at each dirty bitmap sync;
 * parameters in qapi/migration.json): when the bytes dirtied during the period since the
 * previous sync exceed throttle-trigger-threshold (50 %) of the bytes transferred in it, a
 * counter goes up; when it reaches 2, the guest is throttled down and the counter restarts:
 * cpu-throttle-initial (20 %) the first time, + cpu-throttle-increment (10 %) after, capped
 * at max-cpu-throttle (99 %). As in QEMU, a period below the threshold leaves the counter
 * as it is (it counts high periods; "2 in a row" under a persistently dirty workload). A
 * period here is one round: the dirty pages harvested at sync k were written while round
 * k - 1 sent rounds[k - 1].sent_bytes. The first sync has no previous period.
 */
double policy_qemu_throttle(const struct dt_round_stats *rounds, unsigned n)
{
	unsigned high = 0;
	double pct = 0;

	if (!rounds)
		return 0;
	for (unsigned k = 1; k < n; k++) {
		double dirty = (double)rounds[k].dirty_pages * rounds[k].page_size;
		double xfer = (double)rounds[k - 1].sent_bytes;

		if (!(dirty > xfer * QEMU_AC_TRIGGER_PCT / 100.0) || ++high < QEMU_AC_HIGH_SYNCS)
			continue;
		high = 0;
		pct = pct == 0 ? QEMU_AC_INITIAL : pct + QEMU_AC_INCREMENT;
		if (pct > QEMU_AC_MAX)
			pct = QEMU_AC_MAX;
	}
	return pct;
}

/*
 * Xen (tools/libxc xc_domain_save, the classic pre-copy loop; xl's defaults): iterations
 * are counted from 1 (the full pass). The next iteration is the last one (the domain is
 * suspended and the rest sent) when the iteration count reached max_iters (29), or fewer
 * than 50 pages were dirty, or the total sent exceeds max_factor (3) x the memory size.
 * Xen reports no expected downtime. Its skip of pages re-dirtied during an iteration is an
 * engine feature (BENCH_XEN_SKIP), modelled in the simulator.
 */
int policy_xen(void *opaque, const struct dt_policy *policy, const struct dt_round_stats *rounds,
	       unsigned n, struct dt_policy_out *out)
{
	const struct dt_round_stats *s;
	uint64_t sent;
	int ret = check_input(rounds, n, out);

	if (ret)
		return ret;
	s = &rounds[n - 1];
	sent = rounds[n > 1 ? n - 2 : 0].total_bytes;
	out->verdict = DT_VERDICT_UNKNOWN;
	out->predicted_downtime_ns = UINT64_MAX;
	out->decision = DT_DECISION_SWITCHOVER;
	if (n == 1) {
		out->decision = DT_DECISION_CONTINUE;
		snprintf(out->reason, sizeof(out->reason), "xen: iteration 1 is the full pass");
	} else if (n - 1 >= XEN_MAX_ITERS) {
		snprintf(out->reason, sizeof(out->reason), "xen: %u iterations (max %u)", n - 1,
			 XEN_MAX_ITERS);
	} else if (s->dirty_pages < XEN_MIN_DIRTY_PAGES) {
		snprintf(out->reason, sizeof(out->reason), "xen: %llu pages dirty < %u",
			 (unsigned long long)s->dirty_pages, XEN_MIN_DIRTY_PAGES);
	} else if ((double)sent > (double)XEN_MAX_FACTOR * (double)s->memory_bytes) {
		snprintf(out->reason, sizeof(out->reason), "xen: %llu B sent > %u x memory",
			 (unsigned long long)sent, XEN_MAX_FACTOR);
	} else {
		out->decision = DT_DECISION_CONTINUE;
		snprintf(out->reason, sizeof(out->reason), "xen: iteration %u, %llu pages dirty", n,
			 (unsigned long long)s->dirty_pages);
	}
	return 0;
}

/*
 * Cloud Hypervisor before 2026 (vmm/src/lib.rs, the send-migration loop): the full memory,
 * then a fixed number of dirty-memory copy passes, leaving early when a pass finds nothing
 * dirty; then the VM is paused and the last dirty set sent. We count the full pass among
 * the CH_PRECOPY_ITERATIONS (5) pre-copy rounds. No downtime estimate, no verdict.
 */
int policy_cloud_hypervisor(void *opaque, const struct dt_policy *policy,
			    const struct dt_round_stats *rounds, unsigned n,
			    struct dt_policy_out *out)
{
	int ret = check_input(rounds, n, out);

	if (ret)
		return ret;
	out->verdict = DT_VERDICT_UNKNOWN;
	out->predicted_downtime_ns = UINT64_MAX;
	if (n >= 2 && (n - 1 >= CH_PRECOPY_ITERATIONS || rounds[n - 1].dirty_pages == 0)) {
		out->decision = DT_DECISION_SWITCHOVER;
		snprintf(out->reason, sizeof(out->reason),
			 "cloud-hypervisor: %u passes sent, %llu pages dirty", n - 1,
			 (unsigned long long)rounds[n - 1].dirty_pages);
	} else {
		out->decision = DT_DECISION_CONTINUE;
		snprintf(out->reason, sizeof(out->reason), "cloud-hypervisor: pass %u of %u", n,
			 CH_PRECOPY_ITERATIONS);
	}
	return 0;
}

static int ours(const struct dt_policy *policy, const struct dt_round_stats *rounds, unsigned n,
		struct dt_policy_out *out, bool no_defer)
{
	struct dt_policy p = {.size = sizeof(p)};

	if (policy)
		memcpy(&p, policy,
		       policy->size && policy->size < sizeof(p) ? policy->size : sizeof(p));
	p.size = sizeof(p);
	p.no_defer_pinned = no_defer;
	return dt_policy_decide(policy ? &p : NULL, rounds, n, out);
}

/* Ours (docs/policy.md): pinned pages deferred to the stop-and-copy. */
int policy_ours(void *opaque, const struct dt_policy *policy, const struct dt_round_stats *rounds,
		unsigned n, struct dt_policy_out *out)
{
	return ours(policy, rounds, n, out, false);
}

/* Ours with deferral off: pinned pages sent every round, as QEMU does. */
int policy_ours_nodefer(void *opaque, const struct dt_policy *policy,
			const struct dt_round_stats *rounds, unsigned n, struct dt_policy_out *out)
{
	return ours(policy, rounds, n, out, true);
}

const struct bench_policy bench_policies[] = {
	{"qemu", policy_qemu, BENCH_NO_DEFER_PINNED | BENCH_HARNESS_CAP},
	{"qemu-auto-converge", policy_qemu_auto_converge,
	 BENCH_NO_DEFER_PINNED | BENCH_HARNESS_CAP | BENCH_QEMU_THROTTLE},
	{"xen", policy_xen, BENCH_NO_DEFER_PINNED | BENCH_XEN_SKIP},
	{"cloud-hypervisor", policy_cloud_hypervisor, BENCH_NO_DEFER_PINNED},
	{"ours", policy_ours, 0},
	{"ours-nodefer", policy_ours_nodefer, BENCH_NO_DEFER_PINNED},
};
const unsigned bench_npolicies = sizeof(bench_policies) / sizeof(bench_policies[0]);

const struct bench_policy *bench_policy_find(const char *name)
{
	for (unsigned i = 0; name && i < bench_npolicies; i++)
		if (!strcmp(bench_policies[i].name, name))
			return &bench_policies[i];
	return NULL;
}
