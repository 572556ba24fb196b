/* SPDX-License-Identifier: MIT */
/*
 * migrate/policy.c - the pre-copy policy: the stats of every round in, one decision out.
 *
 * Owns dt_policy_defaults() and dt_policy_decide(). The decision after the harvest of round
 * n - 1 is made from three estimates, each a function of rounds[0..n-1] only:
 *
 *   bandwidth   a smoothed goodput of the rounds already sent (or the caller's override);
 *   verdict     the trend of the dirty counts of rounds >= 1 (a least-squares slope over
 *               the last TREND_ROUNDS, relative to their mean), vetoed by the ratio of the
 *               dirty rate to the bandwidth (a link that cannot drain the dirtying makes no
 *               progress whatever the counts did lately);
 *   downtime    (dirty pages now + deferred pinned pages) x page size + device state, over
 *               the bandwidth, plus the fixed switchover cost.
 *
 * Then: switch over when the downtime fits; else ask the caller (the engine gives up without
 * a callback) past the round cap, the byte cap, or after stall_rounds consecutive verdicts
 * STALLED or DIVERGING; else another round. docs/policy.md has the math and the reasons for
 * the thresholds.
 *
 * Invariants: pure. No I/O but the error log, no clock, no state: earlier verdicts are
 * recomputed from the prefixes of rounds[], never read from the fields the engine records,
 * so a trace replays to the same decisions. Doubles are formatted without printf's %f,
 * which would follow the process's locale.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <dirtytrack/migrate.h>

#include "core/log.h"

#define DEFAULT_MAX_DOWNTIME_NS	 300000000ull
#define DEFAULT_MAX_ROUNDS	 30u
#define DEFAULT_MAX_BYTES_FACTOR 3.0
#define DEFAULT_STALL_ROUNDS	 3u
/* A prediction's error was 2 % at p50 and 6 % at p95 over real links (docs/migration-bench.md):
 * switching over at 90 % of the limit keeps the actual downtime under it. */
#define DEFAULT_MARGIN 0.1

/* Dirty counts of rounds >= 1 in the least-squares fit. */
#define TREND_ROUNDS 4u
/* A relative slope beyond +-5 % of the mean per round is a trend; within it, flat. */
#define SLOPE_CLEAR 0.05
/* Dirty rate / link rate from which a round cannot gain on the dirtying (stalled)... */
#define RATIO_STALL 0.95
/* ...and from which, with a single post-round-0 count, the counts are bound to rise. */
#define RATIO_DIVERGE 1.05

/* Bandwidth: rounds weigh BW_DECAY^age, times (bytes / BW_TRUSTED_BYTES)^2 below it. */
#define BW_DECAY	 0.5
#define BW_ROUNDS	 8u
#define BW_TRUSTED_BYTES (4u << 20)

#define NS_PER_S	 1e9

struct policy_eff {
	uint64_t max_downtime_ns;
	uint32_t max_rounds;
	double max_bytes_factor;
	double bandwidth_override;
	uint64_t fixed_cost_ns;
	uint32_t stall_rounds;
	bool defer_pinned;
	uint64_t switch_ns; /* the prediction that switches over: (1 - margin) x the limit */
};

/* What a prefix of the rounds says, before the decision. */
struct assessment {
	enum dt_verdict verdict;
	double slope;	   /* pages per round, per round */
	double rel_slope;  /* slope / mean count */
	double dirty_rate; /* pages per second during the previous round; 0 unknown */
	double bandwidth;  /* bytes per second; 0 unknown */
	double link_ratio; /* dirty_rate x page size / bandwidth; 0 unknown */
	double settle;	   /* pages a round settles at, projected; < 0 not projected */
};

static uint64_t predict_downtime(const struct policy_eff *p, const struct dt_round_stats *s,
				 double bandwidth);

/* A caller of an older, shorter struct dt_policy set only the fields inside its size. */
#define POLICY_HAS(p, f)                                                                           \
	((p)->size == 0 || (p)->size >= offsetof(struct dt_policy, f) + sizeof((p)->f))

void dt_policy_defaults(struct dt_policy *p)
{
	if (!p)
		return;
	if (!p->size)
		p->size = sizeof(*p);
	if (POLICY_HAS(p, max_downtime_ns) && !p->max_downtime_ns)
		p->max_downtime_ns = DEFAULT_MAX_DOWNTIME_NS;
	if (POLICY_HAS(p, max_rounds) && !p->max_rounds)
		p->max_rounds = DEFAULT_MAX_ROUNDS;
	if (POLICY_HAS(p, max_bytes_factor) && p->max_bytes_factor == 0)
		p->max_bytes_factor = DEFAULT_MAX_BYTES_FACTOR;
	if (POLICY_HAS(p, stall_rounds) && !p->stall_rounds)
		p->stall_rounds = DEFAULT_STALL_ROUNDS;
	if (POLICY_HAS(p, margin) && p->margin == 0)
		p->margin = DEFAULT_MARGIN;
}

static int policy_resolve(const struct dt_policy *p, struct policy_eff *e)
{
	struct dt_policy d = {.size = sizeof(d)};

	if (POLICY_HAS(p, max_downtime_ns))
		d.max_downtime_ns = p->max_downtime_ns;
	if (POLICY_HAS(p, max_rounds))
		d.max_rounds = p->max_rounds;
	if (POLICY_HAS(p, max_bytes_factor))
		d.max_bytes_factor = p->max_bytes_factor;
	if (POLICY_HAS(p, bandwidth_override))
		d.bandwidth_override = p->bandwidth_override;
	if (POLICY_HAS(p, fixed_cost_ns))
		d.fixed_cost_ns = p->fixed_cost_ns;
	if (POLICY_HAS(p, stall_rounds))
		d.stall_rounds = p->stall_rounds;
	if (POLICY_HAS(p, no_defer_pinned))
		d.no_defer_pinned = p->no_defer_pinned;
	if (POLICY_HAS(p, margin))
		d.margin = p->margin;
	if (!isfinite(d.max_bytes_factor) || d.max_bytes_factor < 0 ||
	    !isfinite(d.bandwidth_override) || d.bandwidth_override < 0)
		return log_fail(-EINVAL,
				"dt_policy_decide: max_bytes_factor and bandwidth_override must be "
				"finite and >= 0");
	if (!isfinite(d.margin) || d.margin >= 1)
		return log_fail(-EINVAL, "dt_policy_decide: margin must be finite and below 1");
	dt_policy_defaults(&d);
	*e = (struct policy_eff){
		.max_downtime_ns = d.max_downtime_ns,
		.max_rounds = d.max_rounds,
		.max_bytes_factor = d.max_bytes_factor,
		.bandwidth_override = d.bandwidth_override,
		.fixed_cost_ns = d.fixed_cost_ns,
		.stall_rounds = d.stall_rounds,
		.defer_pinned = !d.no_defer_pinned,
		.switch_ns = d.margin > 0 ? (uint64_t)((double)d.max_downtime_ns * (1 - d.margin))
					  : d.max_downtime_ns,
	};
	return 0;
}

static int check_rounds(const struct dt_round_stats *r, unsigned n)
{
	uint32_t ps = r[0].page_size;
	uint64_t mem = r[0].memory_bytes, mem_pages;

	if (!ps || (ps & (ps - 1)))
		return log_fail(-EINVAL, "dt_policy_decide: page size %u is not a power of two",
				ps);
	if (!mem)
		return log_fail(-EINVAL, "dt_policy_decide: memory_bytes is 0");
	mem_pages = mem / ps + (mem % ps != 0);
	for (unsigned i = 0; i < n; i++) {
		const struct dt_round_stats *s = &r[i];

		if (s->round != i)
			return log_fail(-EINVAL, "dt_policy_decide: rounds[%u] is round %u", i,
					s->round);
		if (s->page_size != ps || s->memory_bytes != mem)
			return log_fail(-EINVAL,
					"dt_policy_decide: round %u: page size %u or memory %llu "
					"differs from round 0's",
					i, s->page_size, (unsigned long long)s->memory_bytes);
		if (s->dirty_pages > mem_pages || s->pinned_pages > mem_pages)
			return log_fail(-EINVAL,
					"dt_policy_decide: round %u: %llu dirty, %llu pinned pages "
					"of %llu",
					i, (unsigned long long)s->dirty_pages,
					(unsigned long long)s->pinned_pages,
					(unsigned long long)mem_pages);
		if (i + 1 == n)
			break; /* the newest round: not sent yet, its send fields are not read */
		if (i && s->total_bytes < r[i - 1].total_bytes)
			return log_fail(-EINVAL, "dt_policy_decide: round %u: total_bytes fell", i);
		if (s->zero_pages > s->sent_pages || (s->round_ns && s->send_ns > s->round_ns))
			return log_fail(-EINVAL,
					"dt_policy_decide: round %u: more zero pages than pages "
					"sent, or send_ns > round_ns",
					i);
	}
	return 0;
}

/*
 * Goodput of the rounds sent so far (all but rounds[n - 1]), a weighted harmonic mean: the
 * harmonic mean averages the time per byte, which is what the downtime prediction
 * multiplies. A round's weight halves with each round of age, so a slower link shows within
 * two rounds. A round that sent less than BW_TRUSTED_BYTES is timed mostly by jitter: its
 * time per byte is 1/bw + jitter/bytes, whose variance goes as 1/bytes^2, so its weight is
 * scaled by (bytes / BW_TRUSTED_BYTES)^2 (inverse variance). 0: nothing measured.
 */
static double smoothed_goodput(const struct dt_round_stats *r, unsigned n)
{
	double weight = 1, wsum = 0, ns_per_byte = 0;

	for (unsigned i = n - 1, age = 0; i-- > 0 && age < BW_ROUNDS; age++, weight *= BW_DECAY) {
		/* What the link carried: a round the socket's buffer swallowed went nowhere yet. */
		double bytes = (double)r[i].sent_bytes - (double)r[i].queued_bytes;
		double trust = bytes / BW_TRUSTED_BYTES;

		if (!(bytes > 0) || !r[i].send_ns)
			continue;
		trust = trust < 1 ? trust * trust : 1;
		wsum += weight * trust;
		ns_per_byte += weight * trust * ((double)r[i].send_ns / bytes);
	}
	return wsum > 0 ? NS_PER_S * wsum / ns_per_byte : 0;
}

/* Least squares over the counts of rounds max(1, m - TREND_ROUNDS) .. m - 1 (m >= 3). */
static void fit_trend(const struct dt_round_stats *r, unsigned m, struct assessment *a)
{
	unsigned first = m > TREND_ROUNDS + 1 ? m - TREND_ROUNDS : 1, k = m - first;
	double xmean = (k - 1) / 2.0, ymean = 0, sxy = 0, sxx = 0;

	for (unsigned i = 0; i < k; i++)
		ymean += (double)r[first + i].dirty_pages;
	ymean /= k;
	for (unsigned i = 0; i < k; i++) {
		sxy += (i - xmean) * ((double)r[first + i].dirty_pages - ymean);
		sxx += (i - xmean) * (i - xmean);
	}
	a->slope = sxy / sxx;
	a->rel_slope = ymean > 0 ? a->slope / ymean : 0;
}

/*
 * The pages dirtied in a window of t ns by a stationary writer: a concave curve through 0
 * that saturates at the working set. For uniform random writes over amp pages at w pages/ns
 * it is exactly amp (1 - exp(-t / tau)), tau = amp / w; tau infinite: the line amp x t.
 * A round's window is the time to send its count plus the round's own overhead, and pin
 * pinned pages are sent in every round (without deferral): next() is the count after c.
 */
struct dirty_curve {
	double amp, tau, pin, ns_per_page, overhead_ns;
};

static double curve_next(const struct dirty_curve *k, double c)
{
	double t = c * k->ns_per_page + k->overhead_ns;

	return k->pin + (isinf(k->tau) ? k->amp * t : k->amp * -expm1(-t / k->tau));
}

/*
 * Where the dirty counts settle. The newest two counts and the windows they were dirtied in
 * (the rounds before them) fix amp and tau; the counts then follow c -> curve_next(c) and
 * settle at its largest fixed point no higher than the newest count. That is known after
 * round 2, while the counts themselves still fall for many rounds towards it when the writer
 * outruns the link (uniform at 1.2 x link: 70, 57, 49, 45 ... % of memory, settling at 31 %).
 * Returns the settled count, or -1 when the counts do not fit the curve (the window and the
 * count moved in opposite ways: the writer changed) or too little is known.
 */
static double settle_count(const struct policy_eff *p, const struct dt_round_stats *r, unsigned m,
			   double bandwidth)
{
	const struct dt_round_stats *s = &r[m - 1];
	struct dirty_curve k = {.pin = p->defer_pinned ? 0 : (double)s->pinned_pages};
	double c1 = (double)r[m - 2].dirty_pages - (p->defer_pinned ? 0 : r[m - 2].pinned_pages);
	double c2 = (double)s->dirty_pages - k.pin;
	double t1 = (double)r[m - 3].round_ns, t2 = (double)r[m - 2].round_ns;
	double q = c2 / c1, lin = t2 / t1, lo, hi;

	if (!(bandwidth > 0) || !(t1 > 0) || !(t2 > 0) || !(c1 > 0) || c2 < 0 || t1 == t2)
		return -1;
	/* The count moved by q while the window moved by lin: a line through 0 moves it as
	 * much, a saturating curve less, and a stationary writer never the other way. */
	if ((q - 1) * (lin - 1) < 0 || (q == 1) != (lin == 1))
		return -1;
	if (fabs(q - 1) >= fabs(lin - 1)) {
		k.tau = INFINITY; /* nothing saturates in these windows: the rate c2 / t2 holds */
		k.amp = c2 / t2;
	} else {
		/* (1 - e^(-t2/tau)) / (1 - e^(-t1/tau)) runs monotonically from 1 (tau -> 0) to
		 * lin (tau -> inf): bisect for q in log tau. */
		lo = log(fmin(t1, t2)) - 40;
		hi = log(fmax(t1, t2)) + 40;
		for (int i = 0; i < 100; i++) {
			double mid = (lo + hi) / 2, tau = exp(mid);

			if (fabs(expm1(-t2 / tau) / expm1(-t1 / tau) - 1) < fabs(q - 1))
				lo = mid;
			else
				hi = mid;
		}
		k.tau = exp((lo + hi) / 2);
		k.amp = c2 / -expm1(-t2 / k.tau);
	}
	/* A round's window: its send, at the time per page the newest sent round took (what
	 * the link and the send queue really gave it, not the goodput the downtime prediction
	 * is careful with), plus the rest of that round (harvest, decision). */
	if (r[m - 2].sent_pages && r[m - 2].send_ns)
		k.ns_per_page = (double)r[m - 2].send_ns / (double)r[m - 2].sent_pages;
	else
		k.ns_per_page = (double)s->page_size * NS_PER_S / bandwidth;
	k.overhead_ns = fmax(0, (double)r[m - 2].round_ns - (double)r[m - 2].send_ns);
	/* next(c) - c is concave and next(0) >= 0: bisect its last zero in [0, count]. */
	if (curve_next(&k, (double)s->dirty_pages) >= (double)s->dirty_pages)
		return (double)s->dirty_pages; /* not falling at all */
	lo = 0;
	hi = (double)s->dirty_pages;
	for (int i = 0; i < 100 && hi - lo > 0.5; i++) {
		double mid = (lo + hi) / 2;

		if (curve_next(&k, mid) >= mid)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* The counts fall, but towards a level whose downtime would not fit. Only the dirtying is
 * judged here: work beside the final send (overlap_ns) is left out, and a switchover floor
 * too high for the limit is the decision's own reason (switchover_floor). */
static bool settles_too_high(const struct policy_eff *p, const struct dt_round_stats *s,
			     const struct assessment *a)
{
	struct dt_round_stats settled = *s;

	if (a->settle < 0)
		return false;
	settled.dirty_pages = (uint64_t)a->settle;
	settled.backlog_bytes = 0; /* drains meanwhile */
	settled.overlap_ns = 0;
	return predict_downtime(p, &settled, a->bandwidth) > p->switch_ns;
}

/* The downtime even with nothing dirty: the fixed cost, the deferred pinned pages, the
 * device state and the work beside the final send. No round can bring it lower. */
static uint64_t switchover_floor(const struct policy_eff *p, const struct dt_round_stats *s,
				 double bandwidth)
{
	struct dt_round_stats none = *s;

	none.dirty_pages = 0;
	none.backlog_bytes = 0;
	return predict_downtime(p, &none, bandwidth);
}

/* The estimates after the harvest of round m - 1, from rounds[0..m-1] only. */
static void assess(const struct policy_eff *p, const struct dt_round_stats *r, unsigned m,
		   struct assessment *a)
{
	bool ratio_known;

	memset(a, 0, sizeof(*a));
	a->settle = -1;
	a->bandwidth = p->bandwidth_override > 0 ? p->bandwidth_override : smoothed_goodput(r, m);
	if (m < 2)
		return; /* UNKNOWN: round 0 only */
	if (r[m - 2].round_ns)
		a->dirty_rate = (double)r[m - 1].dirty_pages * NS_PER_S / (double)r[m - 2].round_ns;
	ratio_known = a->bandwidth > 0 && r[m - 2].round_ns;
	if (ratio_known)
		a->link_ratio = a->dirty_rate * r[m - 1].page_size / a->bandwidth;
	if (m == 2) {
		/* One count, no trend. A link ratio >= 1 is reliable (a working set that saturates
		 * only lowers the measured rate); a low one proves nothing. */
		if (ratio_known && a->link_ratio >= RATIO_DIVERGE)
			a->verdict = DT_VERDICT_DIVERGING;
		else if (ratio_known && a->link_ratio >= RATIO_STALL)
			a->verdict = DT_VERDICT_STALLED;
		return;
	}
	fit_trend(r, m, a);
	a->settle = settle_count(p, r, m, a->bandwidth);
	if (a->rel_slope >= SLOPE_CLEAR)
		a->verdict = DT_VERDICT_DIVERGING;
	else if (a->rel_slope <= -SLOPE_CLEAR && !(ratio_known && a->link_ratio >= RATIO_STALL) &&
		 !settles_too_high(p, &r[m - 1], a))
		a->verdict = DT_VERDICT_CONVERGING;
	else
		a->verdict = DT_VERDICT_STALLED; /* flat (even at 0), the link cannot drain, or
						  * the counts fall towards a level that never fits */
}

/*
 * Consecutive prefixes, ending with m = n, that make no progress: verdict STALLED or
 * DIVERGING, or a switchover floor (nothing dirty at all) that exceeds the limit by itself,
 * which no number of rounds can lower (a large pinned set, a digest of a large memory).
 */
static uint32_t not_converging_streak(const struct policy_eff *p, const struct dt_round_stats *r,
				      unsigned n, const struct assessment *newest)
{
	uint32_t streak = 0;
	struct assessment a = *newest;

	for (unsigned m = n; m >= 2 && streak < p->stall_rounds; m--) {
		if (m != n)
			assess(p, r, m, &a);
		if (a.verdict != DT_VERDICT_STALLED && a.verdict != DT_VERDICT_DIVERGING &&
		    switchover_floor(p, &r[m - 1], a.bandwidth) <= p->switch_ns)
			break;
		streak++;
	}
	return streak;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t predict_downtime(const struct policy_eff *p, const struct dt_round_stats *s,
				 double bandwidth)
{
	uint64_t pages = s->dirty_pages + (p->defer_pinned ? s->pinned_pages : 0);
	uint64_t fixed = p->fixed_cost_ns ? p->fixed_cost_ns : s->fixed_cost_ns;
	double transfer_ns;

	if (!(bandwidth > 0))
		return UINT64_MAX;
	transfer_ns = ((double)pages * s->page_size + (double)s->device_bytes +
		       (double)s->backlog_bytes) *
		      NS_PER_S / bandwidth;
	if (!(transfer_ns < 0x1p64))
		return UINT64_MAX;
	/* What runs beside the final send (the source's digest) costs only what it outlasts. */
	if (transfer_ns < (double)s->overlap_ns)
		transfer_ns = (double)s->overlap_ns;
	return sat_add((uint64_t)transfer_ns + ((double)(uint64_t)transfer_ns < transfer_ns),
		       fixed);
}

/* x (>= 0) with one decimal, whatever the locale: "12.3"; "inf" past 2^50. No libm. */
static const char *dec1(char *buf, size_t len, double x)
{
	uint64_t tenths;

	if (!(x >= 0 && x < 0x1p50)) {
		snprintf(buf, len, "inf");
		return buf;
	}
	tenths = (uint64_t)(x * 10 + 0.5);
	snprintf(buf, len, "%llu.%llu", (unsigned long long)(tenths / 10),
		 (unsigned long long)(tenths % 10));
	return buf;
}

#define MS(ns)	 dec1((char[32]){0}, 32, (ns) == UINT64_MAX ? INFINITY : (double)(ns) / 1e6)
#define MBPS(bw) dec1((char[32]){0}, 32, (bw) / 1e6)
#define PCT(x)	 dec1((char[32]){0}, 32, ((x) < 0 ? -(x) : (x)) * 100)

static void explain(struct dt_policy_out *out, const struct policy_eff *p,
		    const struct dt_round_stats *r, unsigned n, const struct assessment *a,
		    const char *ask_why)
{
	const struct dt_round_stats *s = &r[n - 1];
	char *b = out->reason;
	size_t len = sizeof(out->reason);

	switch (out->decision) {
	case DT_DECISION_SWITCHOVER:
		snprintf(
			b, len,
			"predicted %s ms <= %s ms: %llu pages + %llu pinned + %llu B dev at %s MB/s",
			MS(out->predicted_downtime_ns), MS(p->switch_ns),
			(unsigned long long)s->dirty_pages,
			(unsigned long long)(p->defer_pinned ? s->pinned_pages : 0),
			(unsigned long long)s->device_bytes, MBPS(a->bandwidth));
		break;
	case DT_DECISION_ASK:
		snprintf(b, len, "%s; predicted %s ms > %s ms", ask_why,
			 MS(out->predicted_downtime_ns), MS(p->switch_ns));
		break;
	default:
		if (n == 1 && out->predicted_downtime_ns == UINT64_MAX)
			snprintf(b, len, "round 0: the full pass goes first");
		else if (n == 1)
			snprintf(b, len, "round 0: the full pass goes first (predicted %s ms)",
				 MS(out->predicted_downtime_ns));
		else if (!(a->bandwidth > 0))
			snprintf(b, len, "no bandwidth measured yet (%llu pages dirty)",
				 (unsigned long long)s->dirty_pages);
		else
			snprintf(
				b, len,
				"predicted %s ms > %s ms: %llu pages at %s MB/s; %s (%s%s%s dirty/link %s %%)",
				MS(out->predicted_downtime_ns), MS(p->switch_ns),
				(unsigned long long)s->dirty_pages, MBPS(a->bandwidth),
				dt_verdict_name(a->verdict),
				n == 2		   ? "one count,"
				: a->rel_slope < 0 ? "-"
						   : "+",
				n == 2 ? "" : PCT(a->rel_slope), n == 2 ? "" : " %/round,",
				PCT(a->link_ratio));
		break;
	}
}

int dt_policy_decide(const struct dt_policy *policy, const struct dt_round_stats *rounds,
		     unsigned n, struct dt_policy_out *out)
{
	const struct dt_round_stats *s;
	uint64_t sent;
	struct policy_eff p;
	struct assessment a;
	char why[96] = "";
	uint64_t floor_ns;
	int ret;

	if (out) {
		memset(out, 0, sizeof(*out));
		out->settle_pages = -1;
	}
	if (!policy || !rounds || !out || !n)
		return log_fail(-EINVAL, "dt_policy_decide: policy, rounds, out and n > 0 needed");
	ret = policy_resolve(policy, &p);
	if (!ret)
		ret = check_rounds(rounds, n);
	if (ret) {
		snprintf(out->reason, sizeof(out->reason), "invalid input");
		return ret;
	}
	s = &rounds[n - 1];
	/* Bytes on the wire so far: the total after the previous round's send (the newest
	 * round's total_bytes is the same in the engine, but a recorded trace holds the total
	 * after its send). */
	sent = rounds[n > 1 ? n - 2 : 0].total_bytes;
	assess(&p, rounds, n, &a);
	out->verdict = a.verdict;
	out->slope = a.slope;
	out->rel_slope = a.rel_slope;
	out->dirty_rate = a.dirty_rate;
	out->bandwidth = a.bandwidth;
	out->link_ratio = a.link_ratio;
	out->settle_pages = a.settle;
	out->predicted_downtime_ns = predict_downtime(&p, s, a.bandwidth);
	out->not_converging = not_converging_streak(&p, rounds, n, &a);
	out->decision = DT_DECISION_CONTINUE;
	if (n == 1) {
		/* Round 0 is the full pass; nothing is measured before it. */
	} else if (out->predicted_downtime_ns <= p.switch_ns) {
		out->decision = DT_DECISION_SWITCHOVER;
	} else if (out->not_converging >= p.stall_rounds) {
		/* The cause first; the caps below are backstops for slow convergence. */
		out->decision = DT_DECISION_ASK;
		floor_ns = switchover_floor(&p, s, a.bandwidth);
		if (floor_ns > p.switch_ns)
			snprintf(why, sizeof(why),
				 "the floor %s ms (fixed, pinned, device, overlap) > %s ms for %u "
				 "rounds",
				 MS(floor_ns), MS(p.switch_ns), out->not_converging);
		else
			snprintf(why, sizeof(why),
				 "%s, not converging for %u rounds (dirty/link %s %%)",
				 dt_verdict_name(a.verdict), out->not_converging,
				 PCT(a.link_ratio));
	} else if (n - 1 >= p.max_rounds) {
		out->decision = DT_DECISION_ASK;
		snprintf(why, sizeof(why), "%u pre-copy rounds sent (max %u)", n - 1, p.max_rounds);
	} else if ((double)sent > p.max_bytes_factor * (double)s->memory_bytes) {
		out->decision = DT_DECISION_ASK;
		snprintf(why, sizeof(why), "%llu MiB sent > %s x %llu MiB memory",
			 (unsigned long long)(sent >> 20),
			 dec1((char[32]){0}, 32, p.max_bytes_factor),
			 (unsigned long long)(s->memory_bytes >> 20));
	}
	explain(out, &p, rounds, n, &a, why);
	return 0;
}

void dt_round_stats_record(struct dt_round_stats *s, const struct dt_policy_out *out)
{
	s->dirty_rate = out->dirty_rate;
	s->bandwidth = out->bandwidth;
	s->predicted_downtime_ns = out->predicted_downtime_ns;
	s->verdict = out->verdict;
	s->decision = out->decision;
}
