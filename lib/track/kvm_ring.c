/* SPDX-License-Identifier: MIT */
/*
 * track/kvm_ring.c - the KVM dirty ring: one ring of dirtied guest frames per vCPU, shared
 * with the kernel (KVM_CAP_DIRTY_LOG_RING_ACQ_REL, else KVM_CAP_DIRTY_LOG_RING).
 *
 * Protocol (Documentation/virt/kvm/api.rst): KVM pushes {slot, offset} entries in order and
 * publishes each with flags = DIRTY (store-release). The consumer reads from its fetch index
 * while flags has DIRTY (load-acquire), then marks the entry RESET (store-release) and
 * advances; KVM_RESET_DIRTY_RINGS on the VM hands the RESET entries back and write-protects
 * their pages again. Entries must be consumed in order, none skipped.
 *
 * Sizing: a ring of N entries (a power of two, 16 bytes each) has a soft limit of N minus
 * what KVM reserves (64 entries, plus the CPU's dirty-log buffer, e.g. 512 for Intel PML).
 * When a vCPU reaches the soft limit it exits with KVM_EXIT_DIRTY_RING_FULL and refuses to
 * re-enter the guest until the ring is reset; the reserve absorbs the writes of the
 * instruction in flight. The VMM's vCPU thread must therefore call dt_source_kvm_ring_full()
 * on that exit before KVM_RUN again; that drains every ring into this source and resets
 * them, so nothing is lost whatever the write burst and the ring never overfills. Harvests
 * in between are still exact: pages drained early are kept here until the next harvest.
 * Choose N so that a harvest interval rarely fills it (N = 4096 covers 16 MiB of writes per
 * vCPU); the kernel's minimum is one page of entries and its maximum 65536.
 *
 * Overflow: some hosts (seen on kvm_pvm, whose vCPUs run in KVM's instruction emulator) do
 * not stop a vCPU at the soft limit and let it fill the ring completely, then overwrite its
 * oldest entries: those pages are lost to the ring. A drain that finds every entry of a ring
 * dirty cannot rule that out, so the source then stops being exact: it clears
 * DT_SOURCE_CAP_EXACT and reports every page of every region at each harvest from then on
 * (pessimistic, never wrong), and logs why; a restart (which the caller follows with a full
 * copy) makes it exact again. The kernel's indices are then off by the overwritten entries
 * (its reset index can no longer reach its push index), so the usable ring shrinks; a vCPU
 * that keeps exiting full while every ring is empty is wedged, and
 * dt_source_kvm_ring_full() fails with -EOVERFLOW instead of letting the VMM spin. On such
 * hosts (dmesg shows a WARNING in kvm_dirty_ring_push) use the dirty log.
 *
 * Locking: lock serialises draining (rings, fetch indices, RESET) and the accumulation
 * bitmap, so a vCPU thread in ring_full and a harvest never drain the same entry twice.
 *
 * Finding the fetch index: KVM does not tell where it will push next. A fresh ring (all
 * zeros) starts at 0; a ring with entries still dirty starts at the first of them; a ring
 * that somebody else already consumed and reset is "unsynced" and is scanned whole at each
 * drain until its first new entry appears. (Corner case: a ring consumed before whose only
 * entries were page 0 of memslot 0 looks fresh.)
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "core/alloc.h"
#include "core/bitops.h"
#include "core/log.h"
#include "sys/sys.h"
#include "track/source.h"

/* kvm_log.c (belong in source.h) */

#define RING_DEFAULT_ENTRIES 4096u
#define RING_MAX_ENTRIES     65536u /* KVM_DIRTY_RING_MAX_ENTRIES */

_Static_assert(sizeof(struct kvm_dirty_gfn) == 16, "kvm_dirty_gfn as in the UAPI");

struct ring_vcpu {
	struct kvm_dirty_gfn *gfns;
	uint32_t fetch; /* next entry to read, free running */
	bool synced;	/* fetch is where KVM pushes next */
};

struct slot_index {
	uint32_t slot;
	unsigned region;
};

struct kvm_ring {
	pthread_mutex_t lock;
	struct ring_vcpu *vcpus;
	size_t map_len;
	struct slot_index *by_slot; /* sorted by slot */
	uint64_t *acc;		    /* accumulated pages: region i from word acc_word[i] */
	uint64_t *acc_word;
	uint64_t acc_words;
	uint64_t acc_pending; /* bits set in acc (upper bound) */
	uint64_t strays;      /* entries outside every region, ignored */
	bool reset_pending;   /* entries marked RESET, KVM_RESET_DIRTY_RINGS not done */
	uint64_t drained;     /* entries consumed, all time */
	bool lossy;	      /* a ring overflowed: every harvest reports every page */
	unsigned empty_fulls; /* ring_full calls in a row that found nothing */
};

/* Ring-full exits in a row with nothing to drain before the vCPU is declared wedged: one is
 * normal (a harvest drained the ring between the exit and the call). */
#define WEDGED_AFTER 3u

static uint32_t round_pow2(uint32_t x)
{
	uint32_t p = 1;

	while (p < x && p < (1u << 31))
		p <<= 1;
	return p;
}

static long page_size(void)
{
	long ps = sysconf(_SC_PAGESIZE);

	return ps > 0 ? ps : 4096;
}

int dt_kvm_dirty_ring_enable(int vm_fd, uint32_t *entries)
{
	uint32_t cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL, want, max_entries, min_entries;
	int max_bytes, ret;

	if (vm_fd < 0 || !entries)
		return log_fail(-EINVAL, "dt_kvm_dirty_ring_enable: bad VM fd or NULL entries");
	if (!KVM_DIRTY_LOG_PAGE_OFFSET)
		return log_fail(-ENOTSUP, "dt_kvm_dirty_ring_enable: no dirty ring on this arch");
	max_bytes = sys_ioctl(vm_fd, KVM_CHECK_EXTENSION, (void *)(uintptr_t)cap);
	if (max_bytes <= 0) {
		cap = KVM_CAP_DIRTY_LOG_RING;
		max_bytes = sys_ioctl(vm_fd, KVM_CHECK_EXTENSION, (void *)(uintptr_t)cap);
	}
	if (max_bytes <= 0)
		return log_fail(max_bytes < 0 ? max_bytes : -ENOTSUP,
				"dt_kvm_dirty_ring_enable: the kernel offers no dirty ring (%s)",
				max_bytes < 0 ? strerror(-max_bytes) : "capability absent");
	max_entries = (uint32_t)max_bytes / sizeof(struct kvm_dirty_gfn);
	if (max_entries > RING_MAX_ENTRIES)
		max_entries = RING_MAX_ENTRIES;
	if (!is_pow2(max_entries))
		max_entries = round_pow2(max_entries) >> 1;
	min_entries = (uint32_t)page_size() / sizeof(struct kvm_dirty_gfn);
	want = round_pow2(*entries ? *entries : RING_DEFAULT_ENTRIES);
	if (want < min_entries)
		want = min_entries;
	if (want > max_entries)
		want = max_entries;
	/* The kernel also wants room for its reserved entries; it says EINVAL when short. */
	for (;;) {
		struct kvm_enable_cap ec = {.cap = cap,
					    .args[0] = want * sizeof(struct kvm_dirty_gfn)};

		ret = sys_ioctl(vm_fd, KVM_ENABLE_CAP, &ec);
		if (ret != -EINVAL || want >= max_entries)
			break;
		want <<= 1;
	}
	if (ret)
		return log_fail(ret,
				"dt_kvm_dirty_ring_enable: %u entries: %s (vCPUs already created, "
				"ring already enabled, or size refused)",
				want, strerror(-ret));
	log_info("kvm dirty ring: %u entries per vCPU (%s)", want,
		 cap == KVM_CAP_DIRTY_LOG_RING_ACQ_REL ? "acquire/release" : "plain");
	*entries = want;
	return 0;
}

static int ring_probe(const struct dt_source_opts *opts, char *why, size_t whylen)
{
	int ret;

	if (!KVM_DIRTY_LOG_PAGE_OFFSET) {
		snprintf(why, whylen, "no dirty ring on this architecture");
		return -ENODEV;
	}
	if (opts->vm_fd >= 0 && (!opts->nvcpus || !is_pow2(opts->ring_entries))) {
		snprintf(why, whylen,
			 "needs vCPU fds and ring_entries from dt_kvm_dirty_ring_enable");
		return -ENODEV;
	}
	ret = kvm_slots_probe(opts, true, why, whylen);
	if (ret)
		return ret;
	if (opts->ring_entries > RING_MAX_ENTRIES) {
		snprintf(why, whylen, "ring_entries %u above %u", opts->ring_entries,
			 RING_MAX_ENTRIES);
		return -EINVAL;
	}
	return 0;
}

static int slot_cmp(const void *a, const void *b)
{
	const struct slot_index *x = a, *y = b;

	return x->slot < y->slot ? -1 : x->slot > y->slot;
}

static void ring_destroy(struct dt_source *src)
{
	struct kvm_ring *kr = src->priv;

	if (!kr)
		return;
	for (unsigned v = 0; kr->vcpus && v < src->nvcpus; v++)
		if (kr->vcpus[v].gfns)
			sys_munmap(kr->vcpus[v].gfns, kr->map_len);
	if (kr->acc)
		xfree_big(kr->acc, kr->acc_words * 8);
	xfree(kr->acc_word);
	xfree(kr->by_slot);
	xfree(kr->vcpus);
	pthread_mutex_destroy(&kr->lock);
	xfree(kr);
	src->priv = NULL;
}

static uint32_t gfn_flags_acquire(struct kvm_dirty_gfn *e)
{
	return atomic_load_explicit((_Atomic uint32_t *)&e->flags, memory_order_acquire);
}

/* Where a ring whose position is unknown continues: the first dirty entry after one that is
 * not, if any. A ring with no dirty entry stays unsynced, unless it was never used at all. */
static void ring_resync(struct ring_vcpu *v, uint32_t n, bool at_init)
{
	bool pristine = at_init, all_dirty = true;

	for (uint32_t i = 0; i < n; i++) {
		struct kvm_dirty_gfn *e = &v->gfns[i];
		uint32_t f = gfn_flags_acquire(e);

		if (f & KVM_DIRTY_GFN_F_DIRTY &&
		    !(gfn_flags_acquire(&v->gfns[(i + n - 1) & (n - 1)]) & KVM_DIRTY_GFN_F_DIRTY)) {
			v->fetch = i;
			v->synced = true;
			return;
		}
		if (f || e->slot || e->offset)
			pristine = false;
		if (!(f & KVM_DIRTY_GFN_F_DIRTY))
			all_dirty = false;
	}
	/* Every entry dirty (a ring that overflowed): all are consumed, from anywhere. */
	if (pristine || all_dirty) {
		if (pristine)
			v->fetch = 0;
		v->synced = true;
	}
}

static int ring_init(struct dt_source *src)
{
	struct kvm_ring *kr = xzalloc(sizeof(*kr));
	uint32_t n = src->ring_entries;
	int err = -ENOMEM;

	if (!kr)
		return log_fail(-ENOMEM, "kvm-dirty-ring: out of memory");
	pthread_mutex_init(&kr->lock, NULL);
	src->priv = kr;
	kr->map_len = (size_t)n * sizeof(struct kvm_dirty_gfn);
	kr->vcpus = xcalloc(src->nvcpus, sizeof(*kr->vcpus));
	kr->by_slot = xcalloc(src->nregions, sizeof(*kr->by_slot));
	kr->acc_word = xcalloc(src->nregions, sizeof(*kr->acc_word));
	if (!kr->vcpus || !kr->by_slot || !kr->acc_word)
		goto fail;
	for (unsigned i = 0; i < src->nregions; i++) {
		kr->by_slot[i] = (struct slot_index){.slot = src->regions[i].slot, .region = i};
		kr->acc_word[i] = kr->acc_words;
		kr->acc_words += words_for_bits(src->regions[i].size >> SRC_PAGE_SHIFT);
	}
	qsort(kr->by_slot, src->nregions, sizeof(*kr->by_slot), slot_cmp);
	kr->acc = xzalloc_big(kr->acc_words * 8);
	if (!kr->acc)
		goto fail;
	for (unsigned v = 0; v < src->nvcpus; v++) {
		void *p = sys_mmap(NULL, kr->map_len, PROT_READ | PROT_WRITE, MAP_SHARED,
				   src->vcpu_fds[v], KVM_DIRTY_LOG_PAGE_OFFSET * page_size(), &err);

		if (!p) {
			log_err("kvm-dirty-ring: cannot map the ring of vCPU fd %d (%u entries): %s",
				src->vcpu_fds[v], n, strerror(-err));
			goto fail;
		}
		kr->vcpus[v].gfns = p;
		ring_resync(&kr->vcpus[v], n, true);
	}
	return 0;
fail:
	ring_destroy(src);
	return err == -ENOMEM ? log_fail(err, "kvm-dirty-ring: out of memory") : err;
}

static const struct slot_index *slot_lookup(const struct kvm_ring *kr, unsigned nregions,
					    uint32_t slot)
{
	struct slot_index key = {.slot = slot};

	return bsearch(&key, kr->by_slot, nregions, sizeof(key), slot_cmp);
}

/* A drain consumed a whole ring: KVM may have overwritten entries and may push next
 * anywhere. Resynchronise, and stop claiming exactness. */
static void ring_overflowed(struct dt_source *src, unsigned v)
{
	struct kvm_ring *kr = src->priv;

	kr->vcpus[v].synced = false;
	if (kr->lossy)
		return;
	kr->lossy = true;
	src->caps_off |= DT_SOURCE_CAP_EXACT;
	log_warn("kvm-dirty-ring: the ring of vCPU fd %d filled up (%u entries) before its vCPU "
		 "exited: the kernel may have overwritten entries; every page is reported dirty "
		 "from now on (use a larger ring, harvest more often, or the dirty log)",
		 src->vcpu_fds[v], src->ring_entries);
}

/* Move every dirty entry of every ring into acc (or drop it), mark it RESET, then hand the
 * entries back to KVM. Called with kr->lock held. */
static int ring_drain(struct dt_source *src, bool discard)
{
	struct kvm_ring *kr = src->priv;
	uint32_t n = src->ring_entries;
	const struct slot_index *hit = NULL;
	uint64_t got = 0;
	int ret;

	for (unsigned v = 0; v < src->nvcpus; v++) {
		struct ring_vcpu *rv = &kr->vcpus[v];
		uint32_t from;

		if (!rv->synced) {
			ring_resync(rv, n, false);
			if (!rv->synced)
				continue;
		}
		from = rv->fetch;
		for (;;) {
			struct kvm_dirty_gfn *e = &rv->gfns[rv->fetch & (n - 1)];
			uint32_t slot;
			uint64_t off;

			if (!(gfn_flags_acquire(e) & KVM_DIRTY_GFN_F_DIRTY))
				break;
			slot = e->slot;
			off = e->offset;
			atomic_store_explicit((_Atomic uint32_t *)&e->flags, KVM_DIRTY_GFN_F_RESET,
					      memory_order_release);
			rv->fetch++;
			got++;
			kr->drained++;
			if (discard)
				continue;
			if (!hit || hit->slot != slot)
				hit = slot_lookup(kr, src->nregions, slot);
			if (!hit || off >= src->regions[hit->region].size >> SRC_PAGE_SHIFT) {
				kr->strays++;
				continue;
			}
			ubuf_or(kr->acc, kr->acc_word[hit->region] + off / 64, 1ull << (off % 64));
			kr->acc_pending++;
		}
		if (rv->fetch - from >= n)
			ring_overflowed(src, v);
	}
	if (!got && !kr->reset_pending)
		return 0;
	kr->reset_pending = true;
	ret = sys_ioctl(src->vm_fd, KVM_RESET_DIRTY_RINGS, NULL);
	if (ret < 0)
		return log_fail(ret, "kvm-dirty-ring: KVM_RESET_DIRTY_RINGS: %s", strerror(-ret));
	kr->reset_pending = false;
	return 0;
}

static int ring_start(struct dt_source *src)
{
	struct kvm_ring *kr = src->priv;
	int ret;

	/* Whatever the rings hold predates this start: drop it. */
	pthread_mutex_lock(&kr->lock);
	ret = ring_drain(src, true);
	memset(kr->acc, 0, kr->acc_words * 8);
	kr->acc_pending = 0;
	/* The caller copies everything after a start: an earlier overflow no longer matters. */
	kr->lossy = false;
	src->caps_off &= ~DT_SOURCE_CAP_EXACT;
	pthread_mutex_unlock(&kr->lock);
	if (ret)
		return ret;
	return kvm_slots_set_logging(src, true);
}

static int ring_stop(struct dt_source *src)
{
	return kvm_slots_set_logging(src, false);
}

static int ring_full(struct dt_source *src)
{
	struct kvm_ring *kr = src->priv;
	uint64_t before;
	int ret;

	pthread_mutex_lock(&kr->lock);
	before = kr->drained;
	ret = ring_drain(src, false);
	if (!ret && kr->drained == before) {
		if (++kr->empty_fulls >= WEDGED_AFTER)
			ret = log_fail(
				-EOVERFLOW,
				"kvm-dirty-ring: a vCPU exited ring-full %u times with every "
				"ring empty: the kernel's ring indices are inconsistent (an "
				"overflow); this VM cannot run with the dirty ring",
				kr->empty_fulls);
	} else {
		kr->empty_fulls = 0;
	}
	pthread_mutex_unlock(&kr->lock);
	return ret;
}

static int64_t ring_harvest(struct dt_source *src, struct harvest_target *t, uint32_t flags)
{
	struct kvm_ring *kr = src->priv;
	int ret;

	pthread_mutex_lock(&kr->lock);
	ret = ring_drain(src, false);
	if (kr->lossy || kr->acc_pending) {
		for (unsigned i = 0; i < src->nregions; i++)
			if (kr->lossy)
				target_set_pages(t, src->regions[i].addr,
						 src->regions[i].size >> SRC_PAGE_SHIFT);
			else
				target_or_bitmap(t, src->regions[i].addr, kr->acc + kr->acc_word[i],
						 src->regions[i].size >> SRC_PAGE_SHIFT);
		memset(kr->acc, 0, kr->acc_words * 8);
		kr->acc_pending = 0;
	}
	if (kr->strays) {
		log_debug("kvm-dirty-ring: %llu entries outside the regions ignored",
			  (unsigned long long)kr->strays);
		kr->strays = 0;
	}
	pthread_mutex_unlock(&kr->lock);
	/* A failed reset loses nothing (the entries are RESET-marked, retried next drain), but
	 * the pages stay writable meanwhile: say so. */
	return ret;
}

const struct source_ops kvm_ring_ops = {
	.type = DT_SOURCE_KVM_RING,
	.name = "kvm-dirty-ring",
	.caps = DT_SOURCE_CAP_EXACT,
	.probe = ring_probe,
	.init = ring_init,
	.start = ring_start,
	.stop = ring_stop,
	.harvest = ring_harvest,
	.ring_full = ring_full,
	.destroy = ring_destroy,
};
