/* SPDX-License-Identifier: MIT */
/*
 * bench/migration/sim.c - the simulated migration of sim.h. Each round, in the engine's
 * order (lib/migrate/source.c): harvest (the distinct pages written while the previous round
 * ran, pinned ones added unless deferred), decide on rounds[0..k] with the newest round's
 * send fields 0, then send and fill the send fields. Engine features a policy needs
 * (policies.h) are applied here: pinned pages in every round, Xen's skip, QEMU's throttle.
 * Invariant: a run is a function of (cfg, policy) only; the RNG is seeded from cfg->seed.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "sim.h"

struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull); /* splitmix64 */

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double rng_unit(struct rng *r)
{
	return ((double)(rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(struct rng *r)
{
	return sqrt(-2 * log(rng_unit(r))) * cos(2 * M_PI * rng_unit(r));
}

const char *bsim_workload_name(enum bsim_workload w)
{
	static const char *const names[] = {"idle", "uniform", "zipf", "phase"};

	return w < BSIM_NWORKLOADS ? names[w] : "?";
}

/* Zipf (s = 1) over W pages as geometric buckets of ranks, each with its page count and
 * the probability of one of its pages per write. */
#define ZIPF_BUCKETS 256
struct model {
	const struct bsim_cfg *c;
	uint64_t mem_pages, ws; /* working set of the CPU workload */
	unsigned nb;
	double bcount[ZIPF_BUCKETS], bprob[ZIPF_BUCKETS];
};

static void model_init(struct model *m, const struct bsim_cfg *c)
{
	m->c = c;
	m->mem_pages = c->mem_bytes / BSIM_PAGE;
	m->ws = m->mem_pages - c->pinned_pages;
	if (c->workload == BSIM_IDLE)
		m->ws = (uint64_t)ceil((double)m->mem_pages * BSIM_IDLE_HOT);
	m->nb = 0;
	if (c->workload == BSIM_ZIPF) {
		double harmonic = log((double)m->ws) + 0.5772156649 + 0.5 / (double)m->ws;
		double lo = 1;

		while (lo <= (double)m->ws && m->nb < ZIPF_BUCKETS) {
			double hi = fmin(floor(lo * 1.08) + 1, (double)m->ws + 1);

			m->bcount[m->nb] = hi - lo;
			/* mean of 1/i over [lo, hi): (ln hi - ln lo) / (hi - lo) */
			m->bprob[m->nb] = (log(hi) - log(lo)) / (hi - lo) / harmonic;
			m->nb++;
			lo = hi;
		}
	}
}

/* CPU writes (pages) during [t0, t1] seconds at throttle pct. */
static double writes(const struct model *m, double t0, double t1, double throttle)
{
	const struct bsim_cfg *c = m->c;
	double per_s = c->rate_ratio * c->link / BSIM_WIRE_PAGE, w;

	switch (c->workload) {
	case BSIM_IDLE:
		w = 100.0 * (double)m->ws * (t1 - t0); /* the hot set rewritten 100 times/s */
		break;
	case BSIM_PHASE: {
		double at = BSIM_PHASE_AT_FULL * (double)c->mem_bytes / c->link;
		double low = BSIM_PHASE_LOW * c->link / BSIM_WIRE_PAGE;
		double split = fmin(fmax(at, t0), t1);

		w = low * (split - t0) + per_s * (t1 - split);
		break;
	}
	default:
		w = per_s * (t1 - t0);
	}
	return w * (1 - throttle / 100);
}

/* Expected distinct pages hit by x writes. */
static double distinct(const struct model *m, double x)
{
	double d = 0;

	if (m->c->workload != BSIM_ZIPF)
		return (double)m->ws * -expm1(-x / (double)m->ws);
	for (unsigned b = 0; b < m->nb; b++)
		d += m->bcount[b] * -expm1(-x * m->bprob[b]);
	return d;
}

static uint64_t noisy(struct rng *r, double mean, double cap)
{
	double v = mean + rng_normal(r) * sqrt(mean * fmax(0, 1 - mean / cap));

	v = fmin(fmax(v, 0), cap);
	return (uint64_t)(v + 0.5);
}

static double link_at(const struct bsim_cfg *c, double t)
{
	return c->drop_at_s > 0 && t >= c->drop_at_s ? c->link / 2 : c->link;
}

/* Seconds to send `bytes` from t on, the halving included; jitter scales the rate. */
static double send_time(const struct bsim_cfg *c, double t, double bytes, double jitter)
{
	double rate = link_at(c, t) * jitter;

	if (c->drop_at_s > 0 && t < c->drop_at_s && bytes / rate > c->drop_at_s - t) {
		double before = (c->drop_at_s - t) * rate;

		return (c->drop_at_s - t) + (bytes - before) / (rate / 2);
	}
	return bytes / rate;
}

/* The harvest: 0.3 ms per GiB scanned plus 8.7 ms per GiB dirty (DESIGN.md, uffd-wp). */
static uint64_t harvest_ns(const struct bsim_cfg *c, uint64_t dirty_pages)
{
	double gib = (double)c->mem_bytes / (1u << 30);

	return (uint64_t)(0.3e6 * gib +
			  8.7e6 * gib * (double)dirty_pages / (double)(c->mem_bytes / BSIM_PAGE));
}

int bsim_run(const struct bsim_cfg *c, const struct bench_policy *p, struct bsim_result *r,
	     struct dt_round_stats *trace)
{
	static __thread struct dt_round_stats rounds[BSIM_MAX_ROUNDS];
	unsigned feat = p->needs_engine_features;
	bool defer = !(feat & BENCH_NO_DEFER_PINNED);
	struct dt_policy pol = {.size = sizeof(pol), .max_downtime_ns = c->max_downtime_ns};
	struct model m;
	struct rng rng = {c->seed * 0x2545f4914f6cdd1dull + 1};
	uint64_t total = 0, carry = 0; /* pages written while the previous round ran */
	double t = 0, throttle = 0;

	memset(r, 0, sizeof(*r));
	r->first_stall_round = -1;
	model_init(&m, c);
	for (unsigned k = 0; k < BSIM_MAX_ROUNDS; k++) {
		struct dt_round_stats *s = &rounds[k];
		struct dt_policy_out out;
		uint64_t cpu = k == 0 ? m.mem_pages - (defer ? c->pinned_pages : 0) : carry;
		uint64_t send_pages, skipped = 0, pinned_sent, bytes;
		double jitter = 0.97 + 0.06 * rng_unit(&rng), t0 = t, sent_s;
		int ret;

		memset(s, 0, sizeof(*s));
		s->round = k;
		s->page_size = BSIM_PAGE;
		s->memory_bytes = c->mem_bytes;
		s->pinned_pages = c->pinned_pages;
		s->dirty[DT_CLASS_PINNED] = c->pinned_pages;
		s->dirty[DT_CLASS_CPU] = k == 0 ? m.mem_pages - c->pinned_pages : cpu;
		/* Round 0 is every page; later the CPU set plus the pinned ones unless deferred
		 * (the CPU workload does not write the pinned pages). */
		s->dirty_pages = k == 0 ? cpu : cpu + (defer ? 0 : c->pinned_pages);
		s->device_bytes = BSIM_DEVICE_BYTES;
		s->harvest_ns = k == 0 ? 0 : harvest_ns(c, s->dirty_pages);
		s->fixed_cost_ns = c->rtt_ns + BSIM_PAUSE_NS + harvest_ns(c, s->dirty_pages);
		s->total_bytes = total;
		t += (double)(s->harvest_ns + BSIM_DECIDE_NS) / 1e9;

		ret = p->decide(NULL, &pol, rounds, k + 1, &out);
		if (ret)
			return ret;
		dt_round_stats_record(s, &out);
		if (trace)
			trace[k] = *s;
		if (r->first_stall_round < 0 &&
		    (out.verdict == DT_VERDICT_STALLED || out.verdict == DT_VERDICT_DIVERGING))
			r->first_stall_round = (int)k;
		r->last = out.decision;
		r->rounds = k;
		if (out.decision == DT_DECISION_SWITCHOVER) {
			/* Pause; what was written since the harvest is harvested once more. */
			double late = distinct(&m, writes(&m, t0, t, throttle));
			uint64_t fpages =
				s->dirty_pages +
				(uint64_t)(late * fmax(0, 1 - (double)cpu / (double)m.ws)) +
				(defer ? c->pinned_pages : 0);
			uint64_t fbytes = fpages * BSIM_WIRE_PAGE + BSIM_DEVICE_BYTES;
			uint64_t fh = harvest_ns(c, fpages);
			double tx = send_time(c, t, (double)fbytes, jitter);

			r->converged = true;
			r->final_pages = fpages;
			r->pinned_final_bytes = (uint64_t)c->pinned_pages * BSIM_WIRE_PAGE;
			r->predicted_downtime_ns = out.predicted_downtime_ns;
			r->actual_downtime_ns =
				fh + (uint64_t)(tx * 1e9) + c->rtt_ns + BSIM_PAUSE_NS;
			r->bytes = total + fbytes;
			/* Every page once (the pinned ones included), then the CPU pages still dirty. */
			r->lower_bound = (m.mem_pages + fpages - c->pinned_pages) * BSIM_WIRE_PAGE +
					 BSIM_DEVICE_BYTES;
			r->total_ns = (uint64_t)(t * 1e9) + r->actual_downtime_ns;
			return 0;
		}
		if (out.decision != DT_DECISION_CONTINUE)
			break;
		/* Send. Xen skips the pages re-dirtied before their turn (the dirty bitmap is
		 * peeked during the iteration): the always-written pinned pages, and about the
		 * share of the CPU set written during the first half of the send. */
		send_pages = s->dirty_pages;
		pinned_sent = defer ? 0 : c->pinned_pages;
		if ((feat & BENCH_XEN_SKIP) && k > 0) {
			double est = send_time(c, t, (double)send_pages * BSIM_WIRE_PAGE, jitter);
			double hit =
				distinct(&m, writes(&m, t, t + est / 2, throttle)) / (double)m.ws;

			skipped = pinned_sent + (uint64_t)((double)cpu * fmin(hit, 1));
			pinned_sent = 0;
			send_pages -= skipped;
		}
		bytes = send_pages * BSIM_WIRE_PAGE;
		sent_s = send_time(c, t, (double)bytes, jitter);
		s->sent_pages = send_pages;
		s->sent_bytes = bytes;
		s->send_ns = (uint64_t)ceil(sent_s * 1e9);
		t += (double)s->send_ns / 1e9;
		s->round_ns = (uint64_t)ceil((t - t0) * 1e9);
		if (s->send_ns > s->round_ns)
			s->round_ns = s->send_ns;
		total += bytes;
		s->total_bytes = total;
		if (trace)
			trace[k] = *s;
		r->pinned_precopy_bytes += pinned_sent * BSIM_WIRE_PAGE;
		r->rounds = k + 1;
		/* The next harvest: distinct pages written while this round ran. */
		carry = noisy(&rng, distinct(&m, writes(&m, t0, t, throttle)), (double)m.ws);
		if (feat & BENCH_QEMU_THROTTLE) {
			struct dt_round_stats next = {.dirty_pages =
							      carry + (defer ? 0 : c->pinned_pages),
						      .page_size = BSIM_PAGE};
			struct dt_round_stats saved = rounds[k + 1 < BSIM_MAX_ROUNDS ? k + 1 : k];

			/* The throttle QEMU sets at the sync that harvests `carry`. */
			if (k + 1 < BSIM_MAX_ROUNDS) {
				rounds[k + 1] = next;
				throttle = policy_qemu_throttle(rounds, k + 2);
				rounds[k + 1] = saved;
			}
			if (throttle > r->max_throttle)
				r->max_throttle = throttle;
		}
	}
	/* No switchover: capped or asked (ours without an ask callback gives up). */
	r->converged = false;
	r->predicted_downtime_ns = UINT64_MAX;
	r->bytes = total;
	r->lower_bound = m.mem_pages * BSIM_WIRE_PAGE;
	r->total_ns = (uint64_t)(t * 1e9);
	return 0;
}
