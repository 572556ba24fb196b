/* SPDX-License-Identifier: MIT */
/*
 * vmm/vdev.c - the DMA test devices: creation on a container, the writer thread, its pacing,
 * and pause/resume. The state blob and the check of guest memory are in vdev_state.c.
 *
 * Invariants:
 * - expected[i] is the stamp page i of the area holds in memory: the writer sets it after the
 *   page is written, under the lock, so a paused device's table is what memory says.
 * - seq only grows; every write takes seq + 1, so a page's stamp tells when it was written.
 * - The dirty tracking of every write is the container's business, by kind: EMULATED and
 *   promoted PASSTHROUGH write only their pinned ring (pinned pages are in every report),
 *   unpinned PASSTHROUGH relies on the whole-mapping scope, LOGGING calls dt_dma_log after
 *   the write, VMM writes with dt_dma_rw, which marks the pages itself.
 * - PASSTHROUGH pins after pin_after_ms of running time (pauses do not count), measured
 *   across migrations: the time is part of the state.
 *
 * Pacing: writes_per_sec from absolute CLOCK_MONOTONIC deadlines (write k of a run is due at
 * t0 + k / rate), done in bursts at least a millisecond apart, so a high rate is not a syscall
 * per write and a late wake-up catches up (up to a bound: a long stall is not repaid).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "guest/mailbox.h"
#include "vdev_priv.h"

#define NSEC_PER_SEC  1000000000ull
#define NSEC_PER_MSEC 1000000ull
/* The writer sleeps at least this long between bursts. */
#define BURST_NS NSEC_PER_MSEC
/* Writes owed beyond this many milliseconds' worth are dropped, not caught up. */
#define CATCH_UP_MS 100u

static const char *const type_names[VDEV_NTYPES] = {"emulated", "logging", "passthrough", "vmm"};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void vdev_config_defaults(struct vdev_config *cfg)
{
	*cfg = (struct vdev_config){
		.writes_per_sec = 2000, .ring_pages = 16, .pin_after_ms = 200, .seed = 1};
}

const char *vdev_name(const struct vdev *d)
{
	return type_names[d->type];
}

const char *vdev_type_name(enum vdev_type t)
{
	return (unsigned)t < VDEV_NTYPES ? type_names[t] : NULL;
}

int vdev_type_parse(const char *name)
{
	for (unsigned t = 0; t < VDEV_NTYPES; t++)
		if (!strcmp(name, type_names[t]))
			return (int)t;
	return -EINVAL;
}

enum vdev_type vdev_type(const struct vdev *d)
{
	return d->type;
}

struct dt_device *vdev_device(const struct vdev *d)
{
	return d->dev;
}

uint64_t vdev_writes(const struct vdev *d)
{
	return atomic_load(&((struct vdev *)d)->writes);
}

static bool has_ring(enum vdev_type type)
{
	return type == VDEV_EMULATED || type == VDEV_PASSTHROUGH;
}

/* ---- the ring ------------------------------------------------------------------------------ */

int vdev_pin_ring(struct vdev *d, uint64_t ring_gpa, uint32_t ring_pages, void ***vaddrs)
{
	void **v = calloc(ring_pages, sizeof(*v));
	int ret;

	if (!v) {
		fprintf(stderr, "vdev %s: out of memory for the ring\n", vdev_name(d));
		return -ENOMEM;
	}
	ret = dt_pin_pages(d->dev, ring_gpa, (int)ring_pages, PROT_READ | PROT_WRITE, v);
	if (ret < 0) {
		fprintf(stderr, "vdev %s: pinning %u ring pages at gpa 0x%llx: %s\n", vdev_name(d),
			ring_pages, (unsigned long long)ring_gpa, strerror(-ret));
		free(v);
		return ret;
	}
	*vaddrs = v;
	return 0;
}

void vdev_unpin_ring(struct vdev *d)
{
	if (d->pinned) {
		int ret = dt_unpin_pages(d->dev, d->ring_gpa, (int)d->cfg.ring_pages);

		if (ret < 0)
			fprintf(stderr, "vdev %s: unpinning the ring: %s\n", vdev_name(d),
				strerror(-ret));
	}
	d->pinned = false;
	free(d->ring_vaddrs);
	d->ring_vaddrs = NULL;
}

/* The container is unmapping pages we pinned: stop writing, give the pins back. Pages the
 * writer would have reached through the host mapping are no longer the device's to write. */
static void vdev_unmapped(void *opaque, uint64_t iova, uint64_t size)
{
	struct vdev *d = opaque;

	atomic_store(&d->pause_req, true);
	pthread_mutex_lock(&d->lock);
	if (!d->error)
		fprintf(stderr, "vdev %s: gpa 0x%llx+0x%llx unmapped under the device: it stops\n",
			vdev_name(d), (unsigned long long)iova, (unsigned long long)size);
	d->error = -ENXIO;
	vdev_unpin_ring(d);
	pthread_mutex_unlock(&d->lock);
}

/* ---- one write ----------------------------------------------------------------------------- */

/* The guest's stamp (guest/mailbox.h), word 0 last: a reader that sees the new word 0 sees
 * the whole stamp. */
static void stamp_page(void *page, uint32_t s, uint32_t p)
{
	uint32_t *w = page;

	__atomic_store_n(&w[1], p, __ATOMIC_RELAXED);
	__atomic_store_n(&w[2], guest_mix(s, p), __ATOMIC_RELAXED);
	__atomic_store_n(&w[GUEST_STAMP_LAST_WORD], ~s, __ATOMIC_RELAXED);
	__atomic_store_n(&w[0], s, __ATOMIC_RELEASE);
}

static uint32_t random_page(struct vdev *d)
{
	return (uint32_t)(rng_next(&d->rng) % d->area_pages);
}

/* The VMM's device writes like the VMM does: through the container, which marks the pages. */
static int vmm_stamp(struct vdev *d, uint32_t i, uint32_t s)
{
	uint64_t iova = d->area_gpa + (uint64_t)i * VDEV_PAGE;
	uint32_t head[3] = {s, i, guest_mix(s, i)}, tail = ~s;
	int ret;

	ret = dt_dma_rw(d->dev, iova + GUEST_STAMP_LAST_WORD * 4, &tail, sizeof(tail), true);
	if (ret == 0)
		ret = dt_dma_rw(d->dev, iova, head, sizeof(head), true);
	return ret;
}

/* Write the next stamp. 0, or a negative errno: the device stops. Lock held. */
static int write_one(struct vdev *d)
{
	uint32_t s = d->seq + 1, i;
	int ret = 0;

	if (d->type == VDEV_EMULATED || (d->type == VDEV_PASSTHROUGH && d->pinned)) {
		i = (uint32_t)((d->ring_gpa - d->area_gpa) / VDEV_PAGE) + d->ring_next;
		stamp_page(d->ring_vaddrs[d->ring_next], s, i);
		d->ring_next = (d->ring_next + 1) % d->cfg.ring_pages;
	} else if (d->type == VDEV_VMM) {
		i = random_page(d);
		ret = vmm_stamp(d, i, s);
		if (ret < 0) {
			fprintf(stderr, "vdev vmm: dt_dma_rw of page %u: %s\n", i, strerror(-ret));
			return ret; /* the page may hold half a stamp: verify will say so */
		}
	} else {
		i = random_page(d);
		stamp_page(d->area_host + (uint64_t)i * VDEV_PAGE, s, i);
		if (d->type == VDEV_LOGGING) {
			ret = dt_dma_log(d->dev, d->area_gpa + (uint64_t)i * VDEV_PAGE, VDEV_PAGE);
			if (ret < 0)
				fprintf(stderr, "vdev logging: dt_dma_log of page %u: %s\n", i,
					strerror(-ret));
		}
	}
	d->seq = s;
	d->expected[i] = s;
	atomic_fetch_add(&d->writes, 1);
	return ret;
}

/* ---- the writer thread --------------------------------------------------------------------- */

static uint64_t pin_due_ns(const struct vdev *d)
{
	uint64_t after = (uint64_t)d->cfg.pin_after_ms * NSEC_PER_MSEC;

	if (d->type != VDEV_PASSTHROUGH || d->pinned)
		return UINT64_MAX;
	return d->pt_elapsed_ns >= after ? d->run_since_ns
					 : d->run_since_ns + (after - d->pt_elapsed_ns);
}

/* Write k of the run is due at t0 + ceil(k * 1e9 / rate). */
static uint64_t write_due_ns(const struct vdev *d, uint64_t k)
{
	unsigned __int128 ns = (unsigned __int128)k * NSEC_PER_SEC + d->cfg.writes_per_sec - 1;

	return d->t0_ns + (uint64_t)(ns / d->cfg.writes_per_sec);
}

/* Every write due by now, in one burst. Lock held. */
static void write_burst(struct vdev *d, uint64_t now)
{
	uint32_t rate = d->cfg.writes_per_sec;
	uint64_t due, owed;

	if (!rate)
		return;
	due = (uint64_t)((unsigned __int128)(now - d->t0_ns) * rate / NSEC_PER_SEC) + 1;
	if (due <= d->writes_done)
		return;
	owed = due - d->writes_done;
	if (owed > (uint64_t)rate * CATCH_UP_MS / 1000 + 1) {
		/* A long stall (a loaded host): forget the debt rather than write it in one go. */
		d->writes_done = due - 1;
		owed = 1;
	}
	while (owed--) {
		int ret;

		if (atomic_load_explicit(&d->pause_req, memory_order_relaxed))
			return;
		if (d->seq == UINT32_MAX) {
			fprintf(stderr, "vdev %s: sequence numbers exhausted, it stops\n",
				vdev_name(d));
			d->error = -EOVERFLOW;
			return;
		}
		ret = write_one(d);
		d->writes_done++;
		if (ret < 0) {
			d->error = ret;
			return;
		}
	}
}

static void wait_until(struct vdev *d, uint64_t deadline)
{
	struct timespec ts;

	if (deadline == UINT64_MAX) {
		pthread_cond_wait(&d->cond, &d->lock);
		return;
	}
	ts.tv_sec = (time_t)(deadline / NSEC_PER_SEC);
	ts.tv_nsec = (long)(deadline % NSEC_PER_SEC);
	pthread_cond_timedwait(&d->cond, &d->lock, &ts);
}

static void *vdev_writer(void *arg)
{
	struct vdev *d = arg;

	pthread_mutex_lock(&d->lock);
	while (!d->stop) {
		uint64_t now, wake = UINT64_MAX;

		if (!d->running || d->error) {
			pthread_cond_wait(&d->cond, &d->lock);
			continue;
		}
		now = now_ns();
		if (now >= pin_due_ns(d)) {
			int ret = vdev_pin_ring(d, d->ring_gpa, d->cfg.ring_pages, &d->ring_vaddrs);

			if (ret < 0) {
				d->error = ret;
				continue;
			}
			d->pinned = true;
			d->ring_next = 0;
			d->pt_elapsed_ns += now - d->run_since_ns;
			d->run_since_ns = now;
		}
		write_burst(d, now);
		if (d->cfg.writes_per_sec) {
			wake = write_due_ns(d, d->writes_done);
			if (wake < now + BURST_NS)
				wake = now + BURST_NS;
		}
		if (pin_due_ns(d) < wake)
			wake = pin_due_ns(d);
		wait_until(d, wake);
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

/* ---- life cycle ---------------------------------------------------------------------------- */

static int vdev_check_args(enum vdev_type type, struct dt_iommu *iommu,
			   const struct dt_region *regions, unsigned nregions, uint64_t area_gpa,
			   uint64_t area_size, const struct vdev_config *cfg, uint8_t **host)
{
	const struct dt_region *r = NULL;

	if ((unsigned)type >= VDEV_NTYPES || !iommu || !regions || !nregions) {
		fprintf(stderr, "vdev: bad arguments (type %d, container %p, %u regions)\n",
			(int)type, (void *)iommu, nregions);
		return -EINVAL;
	}
	if (!area_size || (area_gpa | area_size) % VDEV_PAGE || area_gpa + area_size < area_gpa ||
	    area_size / VDEV_PAGE > UINT32_MAX) {
		fprintf(stderr,
			"vdev %s: area 0x%llx+0x%llx not page aligned, empty or too large\n",
			type_names[type], (unsigned long long)area_gpa,
			(unsigned long long)area_size);
		return -EINVAL;
	}
	for (unsigned i = 0; i < nregions && !r; i++)
		if (area_gpa >= regions[i].addr && area_gpa - regions[i].addr < regions[i].size &&
		    area_size <= regions[i].size - (area_gpa - regions[i].addr) && regions[i].host)
			r = &regions[i];
	if (!r) {
		fprintf(stderr, "vdev %s: area 0x%llx+0x%llx is not inside one region\n",
			type_names[type], (unsigned long long)area_gpa,
			(unsigned long long)area_size);
		return -EINVAL;
	}
	if (has_ring(type) && (!cfg->ring_pages || cfg->ring_pages > area_size / VDEV_PAGE ||
			       cfg->ring_pages > INT_MAX)) {
		fprintf(stderr, "vdev %s: ring of %u pages does not fit the area of %llu pages\n",
			type_names[type], cfg->ring_pages,
			(unsigned long long)(area_size / VDEV_PAGE));
		return -EINVAL;
	}
	*host = (uint8_t *)r->host + (area_gpa - r->addr);
	return 0;
}

static int vdev_init_sync(struct vdev *d)
{
	pthread_condattr_t attr;
	int ret;

	ret = pthread_condattr_init(&attr);
	if (ret)
		return -ret;
	ret = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (!ret)
		ret = pthread_cond_init(&d->cond, &attr);
	pthread_condattr_destroy(&attr);
	if (ret)
		return -ret;
	ret = pthread_mutex_init(&d->lock, NULL);
	if (ret) {
		pthread_cond_destroy(&d->cond);
		return -ret;
	}
	return 0;
}

struct vdev *vdev_new(enum vdev_type type, struct dt_iommu *iommu, const struct dt_region *regions,
		      unsigned nregions, uint64_t area_gpa, uint64_t area_size,
		      const struct vdev_config *cfg)
{
	static const enum dt_device_kind kinds[VDEV_NTYPES] = {
		[VDEV_EMULATED] = DT_DEVICE_EMULATED,
		[VDEV_LOGGING] = DT_DEVICE_LOGGING,
		[VDEV_PASSTHROUGH] = DT_DEVICE_PASSTHROUGH,
		/* Touches memory only through dt_dma_rw: the kind whose writes are exactly its
		 * dt_dma_rw writes; the flag files them under "vmm". */
		[VDEV_VMM] = DT_DEVICE_EMULATED,
	};
	struct vdev_config defaults;
	struct vdev *d;
	uint8_t *host;
	int ret;

	if (!cfg) {
		vdev_config_defaults(&defaults);
		cfg = &defaults;
	}
	ret = vdev_check_args(type, iommu, regions, nregions, area_gpa, area_size, cfg, &host);
	if (ret) {
		errno = -ret;
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (d)
		d->expected = calloc(area_size / VDEV_PAGE, sizeof(*d->expected));
	if (!d || !d->expected) {
		fprintf(stderr, "vdev %s: out of memory\n", type_names[type]);
		free(d);
		errno = ENOMEM;
		return NULL;
	}
	d->type = type;
	d->iommu = iommu;
	d->area_gpa = area_gpa;
	d->area_size = area_size;
	d->area_pages = (uint32_t)(area_size / VDEV_PAGE);
	d->area_host = host;
	d->cfg = *cfg;
	d->rng = cfg->seed ^ ((uint64_t)(type + 1) << 56);
	d->ring_gpa = area_gpa;
	ret = vdev_init_sync(d);
	if (ret) {
		fprintf(stderr, "vdev %s: pthread init: %s\n", type_names[type], strerror(-ret));
		goto fail;
	}
	d->dev = dt_device_attach(iommu, kinds[type]);
	if (!d->dev) {
		ret = -errno;
		fprintf(stderr, "vdev %s: dt_device_attach: %s\n", type_names[type],
			strerror(errno));
		goto fail_sync;
	}
	ret = dt_device_set_unmap_cb(d->dev, vdev_unmapped, d);
	if (!ret && type == VDEV_VMM)
		ret = dt_device_set_flags(d->dev, DT_DEVICE_F_VMM);
	if (ret) {
		fprintf(stderr, "vdev %s: device setup: %s\n", type_names[type], strerror(-ret));
		dt_device_detach(d->dev);
		goto fail_sync;
	}
	return d;

fail_sync:
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cond);
fail:
	free(d->expected);
	free(d);
	errno = -ret;
	return NULL;
}

void vdev_free(struct vdev *d)
{
	if (!d)
		return;
	atomic_store(&d->pause_req, true);
	pthread_mutex_lock(&d->lock);
	d->stop = true;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	if (d->thread_started)
		pthread_join(d->thread, NULL);
	vdev_unpin_ring(d);
	dt_device_detach(d->dev);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cond);
	free(d->expected);
	free(d);
}

/* Start or resume the writer's clock. Lock held. */
static void run_from_now(struct vdev *d)
{
	uint64_t now = now_ns();

	d->t0_ns = now;
	d->writes_done = 0;
	d->run_since_ns = now;
	atomic_store(&d->pause_req, false);
	d->running = true;
	pthread_cond_broadcast(&d->cond);
}

int vdev_start(struct vdev *d)
{
	int ret = 0;

	pthread_mutex_lock(&d->lock);
	if (d->started) {
		fprintf(stderr, "vdev %s: already started\n", vdev_name(d));
		ret = -EALREADY;
		goto out;
	}
	/* EMULATED pins before its first write; a loaded one may hold its pins already. */
	if (d->type == VDEV_EMULATED && !d->pinned) {
		ret = vdev_pin_ring(d, d->ring_gpa, d->cfg.ring_pages, &d->ring_vaddrs);
		if (ret)
			goto out;
		d->pinned = true;
	}
	ret = -pthread_create(&d->thread, NULL, vdev_writer, d);
	if (ret) {
		fprintf(stderr, "vdev %s: pthread_create: %s\n", vdev_name(d), strerror(-ret));
		goto out;
	}
	d->thread_started = true;
	d->started = true;
	run_from_now(d);
out:
	pthread_mutex_unlock(&d->lock);
	return ret;
}

int vdev_pause(struct vdev *d)
{
	int ret;

	atomic_store(&d->pause_req, true);
	pthread_mutex_lock(&d->lock);
	if (d->running) {
		d->running = false;
		if (d->type == VDEV_PASSTHROUGH && !d->pinned)
			d->pt_elapsed_ns += now_ns() - d->run_since_ns;
	}
	ret = d->error;
	pthread_mutex_unlock(&d->lock);
	return ret;
}

int vdev_resume(struct vdev *d)
{
	int ret;

	pthread_mutex_lock(&d->lock);
	if (!d->started) {
		/* A destination device after vdev_load: resuming is its start. */
		pthread_mutex_unlock(&d->lock);
		return vdev_start(d);
	}
	if (!d->running)
		run_from_now(d);
	ret = d->error;
	pthread_mutex_unlock(&d->lock);
	return ret;
}
