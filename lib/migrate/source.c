/* SPDX-License-Identifier: MIT */
/*
 * migrate/source.c - the sending side of a pre-copy migration.
 *
 * Rounds: round 0 sends every page of the regions (zero pages as a flag); round r >= 1 sends
 * what the dirty set harvested at its start. After each harvest the pure policy decides:
 * another round, switch over, or give up / ask the caller. With deferral (the default)
 * harvests skip pinned pages, which are sent once, in stop-and-copy.
 *
 * Invariant for aborts: `unacked` holds every page of every class any harvest of this
 * attempt returned. Nothing is acknowledged before the destination's final ACK, so on any
 * failure all of it is merged back into the dirty set: the set is then as if this attempt
 * had never harvested, and a retry misses nothing.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <dirtytrack/migrate.h>

#include "core/alloc.h"
#include "core/bitops.h"
#include "core/log.h"
#include "migrate/memory.h"
#include "migrate/wire.h"

#define DEVICE_STATE_FIRST (64u << 10)

struct msrc {
	const struct dt_migrate_source_opts *o;
	struct dt_migrate_result *res;
	struct mig_memory mem;
	struct wire_writer w;
	struct wire_reader r;
	struct wire_batch b;
	uint64_t base, npages, nwords;
	uint64_t *region_mask; /* pages of the set inside the regions */
	uint64_t *unacked;     /* every page harvested in this attempt */
	uint64_t *tosend;
	struct dt_round_stats *stats;
	unsigned nstats, cap;
	uint64_t rtt_ns, digest_ns; /* digest_ns: the source's, estimated for the whole memory */
	uint64_t t_start;	    /* for max_bandwidth */
	bool paused;
};

static int harvest(struct msrc *m, bool skip_pinned, struct dt_harvest *h, uint64_t *ns)
{
	uint64_t t0 = mig_now_ns();
	int ret = dt_dirty_set_harvest(m->o->set, skip_pinned ? DT_HARVEST_SKIP_PINNED : 0, h);

	if (ret)
		return ret;
	for (unsigned c = 0; c < DT_NCLASSES; c++)
		for (uint64_t i = 0; i < m->nwords; i++)
			m->unacked[i] |= h->class_bits[c][i];
	*ns = mig_now_ns() - t0;
	return 0;
}

/* Pages of bits inside the regions, and of them those also in `also` (may be NULL). */
static uint64_t count_in_regions(const struct msrc *m, const uint64_t *bits, const uint64_t *also)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < m->nwords; i++)
		n += popcount64(bits[i] & m->region_mask[i] & (also ? also[i] : ~0ull));
	return n;
}

/* max_bandwidth: sleep until the bytes sent so far fit the rate since the stream began. */
static void throttle(struct msrc *m)
{
	uint64_t due, now;
	struct timespec ts;

	if (!m->o->max_bandwidth)
		return;
	due = m->t_start + (uint64_t)((double)m->w.bytes * 1e9 / (double)m->o->max_bandwidth);
	now = mig_now_ns();
	if (due <= now)
		return;
	ts.tv_sec = (time_t)((due - now) / 1000000000ull);
	ts.tv_nsec = (long)((due - now) % 1000000000ull);
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Pages go out in batches of at most THROTTLE_CHUNK pages when a rate is set, so the
 * stream is paced in steps of 1 MiB rather than of whole 16 MiB batches. */
#define THROTTLE_CHUNK 256u

static int add_run(void *arg, uint64_t page, void *host, uint64_t count)
{
	struct msrc *m = arg;
	int ret = 0;

	if (!m->o->max_bandwidth)
		return wire_batch_add(&m->w, &m->b, page, host, count);
	while (count && !ret) {
		uint64_t n = count < THROTTLE_CHUNK ? count : THROTTLE_CHUNK;

		ret = wire_batch_add(&m->w, &m->b, page, host, n);
		if (!ret && m->b.data_len >= THROTTLE_CHUNK * MIG_PAGE_SIZE)
			ret = wire_batch_flush(&m->w, &m->b);
		throttle(m);
		page += n;
		host = (char *)host + n * MIG_PAGE_SIZE;
		count -= n;
	}
	return ret;
}

/* Send the pages of m->tosend; the batch counters give pages, zero pages and bytes. */
static int send_pages(struct msrc *m)
{
	int ret = mig_memory_walk(&m->mem, m->base, m->tosend, m->npages, add_run, m);

	return ret ? ret : wire_batch_flush(&m->w, &m->b);
}

static struct dt_round_stats *new_round(struct msrc *m)
{
	struct dt_round_stats *s;

	if (m->nstats == m->cap) {
		unsigned cap = m->cap ? 2 * m->cap : 16;
		void *p = xrealloc_array(m->stats, cap, sizeof(*m->stats));

		if (!p)
			return NULL;
		m->stats = p;
		m->cap = cap;
	}
	s = &m->stats[m->nstats];
	memset(s, 0, sizeof(*s));
	s->round = m->nstats++;
	s->page_size = MIG_PAGE_SIZE;
	s->memory_bytes = m->mem.bytes;
	for (unsigned i = 0; i < m->o->ndevices; i++)
		if (m->o->devices[i].pending)
			s->device_bytes += m->o->devices[i].pending(m->o->devices[i].opaque);
	return s;
}

static void fill_from_harvest(struct msrc *m, struct dt_round_stats *s, const struct dt_harvest *h,
			      uint64_t harvest_ns)
{
	for (unsigned c = 0; c < DT_NCLASSES; c++)
		s->dirty[c] = count_in_regions(m, h->class_bits[c], NULL);
	s->pinned_pages = s->dirty[DT_CLASS_PINNED];
	s->harvest_ns = harvest_ns;
	/* The digest costs the source a pass over its memory, beside the final send (overlap);
	 * the destination keeps its own as it applies pages, and at END only scans which pages
	 * it got (microseconds): ~0. */
	s->fixed_cost_ns = m->rtt_ns + harvest_ns;
	s->overlap_ns = m->digest_ns;
}

static void report_round(struct msrc *m, struct dt_round_stats *s)
{
	char json[1024];

	if (!m->o->on_round)
		return;
	dt_round_stats_json(s, json, sizeof(json));
	m->o->on_round(m->o->opaque, s, json);
}

/* Send m->tosend as round s; pinned: the harvest's pinned pages (for the pinned counters). */
static int send_round(struct msrc *m, struct dt_round_stats *s, const uint64_t *pinned,
		      uint64_t t_round)
{
	uint64_t pages = m->b.pages, zero = m->b.zero_pages, bytes0 = m->w.bytes, t0 = mig_now_ns();
	int64_t q0 = dt_transport_unsent(m->o->transport), q1;
	int ret = wire_send_round(&m->w, s->round, s->dirty_pages);

	if (!ret)
		ret = send_pages(m);
	if (ret)
		return ret;
	s->send_ns = mig_now_ns() - t0;
	q1 = dt_transport_unsent(m->o->transport);
	s->queued_bytes = q0 >= 0 && q1 >= 0 ? q1 - q0 : 0;
	s->sent_pages = m->b.pages - pages;
	s->zero_pages = m->b.zero_pages - zero;
	s->sent_bytes = m->w.bytes - bytes0;
	s->total_bytes = m->w.bytes;
	s->round_ns = mig_now_ns() - t_round;
	if (pinned)
		m->res->pinned_sent_precopy += count_in_regions(m, m->tosend, pinned);
	report_round(m, s);
	return 0;
}

static int decide(struct msrc *m, struct dt_round_stats *s)
{
	struct dt_policy_out out;
	int ret = m->o->decide
			  ? m->o->decide(m->o->opaque, &m->o->policy, m->stats, m->nstats, &out)
			  : dt_policy_decide(&m->o->policy, m->stats, m->nstats, &out);

	if (ret)
		return ret;
	dt_round_stats_record(s, &out);
	log_info("migrate: round %u: %s (%s): %s", s->round, dt_decision_name(out.decision),
		 dt_verdict_name(out.verdict), out.reason);
	if (out.decision == DT_DECISION_ASK) {
		enum dt_decision d = DT_DECISION_GIVE_UP;

		if (m->o->ask)
			d = m->o->ask(m->o->opaque, m->stats, m->nstats);
		if (d != DT_DECISION_CONTINUE && d != DT_DECISION_SWITCHOVER)
			d = DT_DECISION_GIVE_UP;
		log_info("migrate: round %u: will not converge; %s %s", s->round,
			 m->o->ask ? "the caller says" : "no ask callback:", dt_decision_name(d));
		s->decision = d;
	}
	m->res->verdict = s->verdict;
	m->res->decision = s->decision;
	m->res->predicted_downtime_ns = s->predicted_downtime_ns;
	return 0;
}

/* PING, and wait for its PONG (or the destination's ERROR). */
static int ping(struct msrc *m, uint64_t value)
{
	struct wire_msg msg;
	int ret = wire_send_ping(&m->w, value);

	if (!ret)
		ret = wire_read(&m->r, &msg);
	if (ret)
		return ret;
	if (msg.type == WIRE_ERROR)
		return log_fail(-EPROTO, "migrate: the destination refused the stream: %s (%d)",
				msg.error.msg, msg.error.err);
	if (msg.type != WIRE_PONG || msg.ping != value)
		return log_fail(-EPROTO, "migrate: expected PONG, the destination sent %s",
				wire_type_name(msg.type));
	return 0;
}

/* HELLO both ways, a PING for the round-trip time, LAYOUT. */
static int handshake(struct msrc *m)
{
	uint32_t want = WIRE_F_XXH3 | (m->o->flags & DT_MIGRATE_COMPRESS ? WIRE_F_ZSTD : 0);
	struct wire_msg msg;
	uint64_t t0;
	int ret;

	wire_writer_set_features(&m->w, want);
	ret = wire_send_hello(&m->w, MIG_PAGE_SIZE);

	if (!ret)
		ret = wire_read(&m->r, &msg);
	if (ret)
		return ret;
	if (msg.type != WIRE_HELLO || msg.hello.features & ~want ||
	    !(msg.hello.features & WIRE_F_XXH3) || msg.hello.page_size != MIG_PAGE_SIZE)
		return log_fail(-EPROTO,
				"migrate: the destination answered %s (features 0x%x) to our HELLO",
				wire_type_name(msg.type), msg.hello.features);
	wire_writer_set_features(&m->w, msg.hello.features);
	wire_reader_set_features(&m->r, msg.hello.features);
	/* The round trip, timed before the destination has memory to set up; then the layout,
	 * and a second PING whose answer says the destination took it. */
	t0 = mig_now_ns();
	ret = ping(m, t0);
	m->rtt_ns = mig_now_ns() - t0;
	if (!ret)
		ret = wire_send_layout(&m->w, m->mem.regions, m->mem.count);
	return ret ? ret : ping(m, t0 + 1);
}

/*
 * What the whole-memory digest will cost the source at switchover (wire_digest_regions(), on
 * wire_digest_nthreads() threads). It runs over memory that is mostly out of the caches, so
 * time one cold pass, on as many threads, over a sample spread evenly over every region
 * (CALIBRATE_CHUNKS chunks, CALIBRATE_BYTES in all, fewer for small memory) and scale it: a
 * best-of-n over one hot megabyte predicted a third of the real cost.
 */
#define CALIBRATE_CHUNKS 64u
#define CALIBRATE_BYTES	 (16ull << 20)

/* One timed pass over the sample shifted by phase chunks into each stride; the estimate for
 * the whole memory, or 0 if it could not be taken. */
static uint64_t digest_sample_ns(struct msrc *m, unsigned phase)
{
	uint64_t chunk = CALIBRATE_BYTES / CALIBRATE_CHUNKS, sampled = 0, t0, digest;
	uint64_t stride = m->mem.bytes / CALIBRATE_CHUNKS / MIG_PAGE_SIZE * MIG_PAGE_SIZE;
	struct wire_region sample[CALIBRATE_CHUNKS];
	void *host[CALIBRATE_CHUNKS];
	uint32_t n = 0;

	if (stride < chunk)
		stride = chunk;
	for (uint64_t at = 0; at < m->mem.bytes && n < CALIBRATE_CHUNKS; at += stride) {
		uint64_t off = at + (phase * chunk) % stride, len = chunk;
		uint32_t i = 0;

		if (off >= m->mem.bytes)
			break;
		while (i < m->mem.count && off >= m->mem.regions[i].size)
			off -= m->mem.regions[i++].size;
		if (i == m->mem.count)
			break;
		if (len > m->mem.regions[i].size - off)
			len = m->mem.regions[i].size - off;
		sample[n] = (struct wire_region){m->mem.regions[i].addr + off, len};
		host[n++] = (uint8_t *)m->mem.host[i] + off;
		sampled += len;
	}
	t0 = mig_now_ns();
	if (!n || wire_digest_regions_threads(sample, host, n, wire_digest_nthreads(m->mem.bytes),
					      &digest))
		return 0;
	t0 = mig_now_ns() - t0;
	return (uint64_t)((double)t0 * (double)m->mem.bytes / (double)sampled);
}

/* Right after round 0 the destination is still applying what the source queued, and the
 * guest runs: one sample competes with both for the two cores (a 512 MiB VM estimated 65-98
 * ms for a digest that took ~30). The least of three disjoint samples is the estimate. */
static void calibrate_digest(struct msrc *m)
{
	uint64_t best = 0;

	for (unsigned phase = 0; phase < 3; phase++) {
		uint64_t ns = digest_sample_ns(m, phase);

		if (ns && (!best || ns < best))
			best = ns;
	}
	if (best)
		m->digest_ns = best;
}

static int send_devices(struct msrc *m)
{
	size_t cap = DEVICE_STATE_FIRST;
	void *buf = NULL;
	int ret = 0;

	for (unsigned i = 0; i < m->o->ndevices && !ret; i++) {
		const struct dt_migrate_device *d = &m->o->devices[i];
		uint64_t want = d->pending ? d->pending(d->opaque) : 0;
		int64_t n;

		if (want > cap && want <= WIRE_MAX_DEVICE_STATE)
			cap = want, xfree(buf), buf = NULL;
		for (;;) {
			if (!buf && !(buf = xzalloc(cap))) {
				ret = -ENOMEM;
				break;
			}
			n = d->save(d->opaque, buf, cap);
			if (n != -ENOSPC || cap >= WIRE_MAX_DEVICE_STATE)
				break;
			cap *= 2;
			xfree(buf);
			buf = NULL;
		}
		if (ret)
			break;
		if (n < 0 || n > (int64_t)cap) {
			log_err("migrate: saving device %s failed (%lld)", d->name, (long long)n);
			ret = -ECANCELED;
			break;
		}
		ret = wire_send_device(&m->w, d->name, buf, (uint32_t)n);
		m->res->device_bytes += (uint64_t)n;
	}
	xfree(buf);
	return ret;
}

/* The digest of the paused memory, computed beside the final send (memory is stable), on
 * wire_digest_nthreads() threads. */
struct digest_job {
	const struct mig_memory *mem;
	uint64_t digest;
	int ret;
};

static void *digest_main(void *arg)
{
	struct digest_job *j = arg;

	j->ret = wire_digest_regions(j->mem->regions, j->mem->host, j->mem->count, &j->digest);
	return NULL;
}

/* Send what is left while paused: the last harvest's pages and the device states. */
static int send_final(struct msrc *m)
{
	uint64_t pages_before = m->b.pages, ns;
	struct dt_harvest h;
	int ret = harvest(m, false, &h, &ns);

	if (ret)
		return ret;
	for (uint64_t i = 0; i < m->nwords; i++)
		m->tosend[i] |= h.all[i];
	m->res->pinned_sent_final = count_in_regions(m, m->tosend, h.class_bits[DT_CLASS_PINNED]);
	wire_writer_set_memory_stable(&m->w, true);
	ret = wire_send_round(&m->w, m->nstats, count_in_regions(m, m->tosend, NULL));
	if (!ret)
		ret = send_pages(m);
	m->res->final_pages = m->b.pages - pages_before;
	return ret ? ret : send_devices(m);
}

/* Pause, send the rest and the device state, END with the digest, wait for the ACK. */
static int switchover(struct msrc *m)
{
	uint64_t t_pause = mig_now_ns();
	struct digest_job job = {.mem = &m->mem};
	struct wire_msg msg;
	pthread_t thread;
	bool threaded;
	int ret = m->o->pause(m->o->opaque);

	if (ret)
		return log_fail(-ECANCELED, "migrate: the pause callback failed (%d)", ret);
	m->paused = true;
	threaded = !pthread_create(&thread, NULL, digest_main, &job);
	ret = send_final(m);
	if (threaded)
		pthread_join(thread, NULL);
	else
		digest_main(&job);
	if (!ret)
		ret = job.ret;
	if (!ret)
		ret = wire_send_end(&m->w, m->b.pages, job.digest, m->o->ndevices);
	if (!ret)
		ret = wire_read(&m->r, &msg);
	if (ret)
		return ret;
	if (msg.type == WIRE_ERROR)
		return log_fail(-EPROTO, "migrate: the destination refused the stream: %s (%d)",
				msg.error.msg, msg.error.err);
	if (msg.type != WIRE_ACK || msg.ack.status || msg.ack.digest != job.digest)
		return log_fail(
			-EPROTO,
			"migrate: no good ACK (%s, status %d, digest %016llx, ours %016llx)",
			wire_type_name(msg.type), msg.type == WIRE_ACK ? msg.ack.status : 0,
			(unsigned long long)(msg.type == WIRE_ACK ? msg.ack.digest : 0),
			(unsigned long long)job.digest);
	m->res->actual_downtime_ns = mig_now_ns() - t_pause;
	m->res->digest = job.digest;
	return 0;
}

static int precopy(struct msrc *m)
{
	bool defer = !m->o->policy.no_defer_pinned;
	struct dt_round_stats *s;
	struct dt_harvest h;
	uint64_t t_round, ns;
	int ret;

	for (;;) {
		t_round = mig_now_ns();
		ret = harvest(m, defer, &h, &ns);
		if (ret)
			return ret;
		s = new_round(m);
		if (!s)
			return -ENOMEM;
		fill_from_harvest(m, s, &h, ns);
		if (s->round == 0) {
			/* The full pass: every page, the deferred pinned ones excepted. */
			for (uint64_t i = 0; i < m->nwords; i++)
				m->tosend[i] = m->region_mask[i] &
					       ~(defer ? h.class_bits[DT_CLASS_PINNED][i] : 0);
		} else {
			for (uint64_t i = 0; i < m->nwords; i++)
				m->tosend[i] = h.all[i] & m->region_mask[i];
		}
		s->dirty_pages = count_in_regions(m, m->tosend, NULL);
		s->total_bytes = m->w.bytes;
		{
			/* what earlier rounds left in the socket goes out before the final pages */
			int64_t q = dt_transport_unsent(m->o->transport);

			s->backlog_bytes = q > 0 ? (uint64_t)q : 0;
		}
		ret = decide(m, s);
		if (ret)
			return ret;
		if (s->decision == DT_DECISION_SWITCHOVER) {
			report_round(m, s);
			return 0;
		}
		if (s->decision == DT_DECISION_GIVE_UP) {
			report_round(m, s);
			wire_send_error(&m->w, -ETIMEDOUT, "the source gave up: no convergence");
			return log_fail(-ETIMEDOUT, "migrate: gave up after %u rounds", m->nstats);
		}
		ret = send_round(m, s, h.class_bits[DT_CLASS_PINNED], t_round);
		if (ret)
			return ret;
		/* Calibrate the digest once round 0 has read every page, as the switchover will
		 * find them: before it, a sample of never-touched memory pays a first-touch fault
		 * per page that the switchover does not (a fresh 512 MiB VM: 70 ms predicted for
		 * a digest that took under 28). */
		if (s->round == 0) {
			calibrate_digest(m);
			log_info("migrate: round trip %.3f ms, memory digest ~%.1f ms (at the "
				 "source)",
				 m->rtt_ns / 1e6, m->digest_ns / 1e6);
		}
	}
}

static int check_opts(const struct dt_migrate_source_opts *o)
{
	if (!o || o->size < sizeof(*o) || !o->transport || !o->set || !o->pause)
		return log_fail(-EINVAL,
				"dt_migrate_source: size, transport, set and pause are required");
	if (o->flags & ~DT_MIGRATE_COMPRESS)
		return log_fail(-EINVAL, "dt_migrate_source: unknown flags 0x%x", o->flags);
	if (o->ndevices && !o->devices)
		return log_fail(-EINVAL, "dt_migrate_source: ndevices without devices");
	for (unsigned i = 0; i < o->ndevices; i++) {
		const struct dt_migrate_device *d = &o->devices[i];

		if (!d->name || !d->name[0] || strlen(d->name) > WIRE_MAX_DEVICE_NAME || !d->save)
			return log_fail(-EINVAL,
					"dt_migrate_source: device %u needs a name and save", i);
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(o->devices[j].name, d->name))
				return log_fail(-EINVAL, "dt_migrate_source: device name %s twice",
						d->name);
	}
	return 0;
}

/* After a failure: the transport broke, or the destination said why. */
static int peer_error(struct msrc *m, int ret)
{
	struct wire_msg msg;

	if (ret != -EPIPE && ret != -ECONNRESET)
		return ret;
	dt_transport_set_timeout(m->o->transport, 200);
	if (!wire_read(&m->r, &msg) && msg.type == WIRE_ERROR) {
		log_err("migrate: the destination failed: %s (%d)", msg.error.msg, msg.error.err);
		return -EPROTO;
	}
	return ret;
}

static int setup(struct msrc *m)
{
	int ret;

	m->base = dt_dirty_set_base(m->o->set);
	m->npages = dt_dirty_set_length(m->o->set) >> MIG_PAGE_SHIFT;
	m->nwords = (m->npages + 63) / 64;
	ret = mig_memory_init(&m->mem, m->o->regions, m->o->nregions, m->base,
			      m->npages << MIG_PAGE_SHIFT, "dt_migrate_source");
	if (ret)
		return ret;
	m->region_mask = xcalloc(m->nwords, 8);
	m->unacked = xcalloc(m->nwords, 8);
	m->tosend = xcalloc(m->nwords, 8);
	if (!m->region_mask || !m->unacked || !m->tosend)
		return -ENOMEM;
	mig_memory_mask(&m->mem, m->base, m->npages, m->region_mask);
	ret = wire_writer_init(&m->w, m->o->transport, WIRE_F_ALL);
	if (!ret)
		ret = wire_reader_init(&m->r, m->o->transport, 0);
	if (!ret)
		ret = wire_batch_init(&m->b);
	return ret;
}

int dt_migrate_source(const struct dt_migrate_source_opts *opts, struct dt_migrate_result *res)
{
	struct dt_migrate_result dummy;
	struct msrc m = {.o = opts, .res = res ? res : &dummy};
	uint64_t t0 = mig_now_ns();
	int ret = check_opts(opts);

	memset(m.res, 0, sizeof(*m.res));
	if (ret)
		return ret;
	ret = setup(&m);
	m.t_start = mig_now_ns();
	if (!ret)
		ret = handshake(&m);
	if (!ret) {
		ret = precopy(&m);
	}
	if (!ret)
		ret = switchover(&m);
	if (ret) {
		int mret;

		ret = peer_error(&m, ret);
		if (m.paused && opts->resume)
			opts->resume(opts->opaque);
		mret = m.unacked ? dt_dirty_set_merge_back(opts->set, m.unacked) : 0;
		log_err("migrate: failed (%d) after %u rounds; the source runs on, %s", ret,
			m.nstats,
			mret ? "and merging the harvested pages back FAILED: dirty state is lost"
			     : "every harvested page merged back");
	}
	m.res->rounds = m.nstats;
	m.res->bytes_sent = m.w.bytes;
	m.res->pages_sent = m.b.pages;
	m.res->zero_pages = m.b.zero_pages;
	m.res->total_ns = mig_now_ns() - t0;
	wire_batch_fini(&m.b);
	wire_reader_fini(&m.r);
	wire_writer_fini(&m.w);
	xfree(m.stats);
	xfree(m.region_mask);
	xfree(m.unacked);
	xfree(m.tosend);
	mig_memory_fini(&m.mem);
	return ret;
}
