/* SPDX-License-Identifier: MIT */
/*
 * tests/model/test_model.c - the container against a naive reference model of SEMANTICS.md.
 *
 * Long random sequences of every container operation (map, unmap with and without
 * GET_DIRTY_BITMAP, attach/detach of the three device kinds, pin, unpin, dma_rw, dma_log,
 * START/STOP, GET_BITMAP, the native report with every option, the pinned set, merge-back)
 * run against the library and against a model made of plain arrays: per page a one-shot
 * dirty flag per class, per device and page a pin count, the device kinds and whether a
 * passthrough device has pinned, tracking on or off. After every operation the return value
 * (with the errno of the invalid calls made on purpose), the reports (bitmap, runs, per-class
 * counts), the data copied and the container statistics must agree.
 *
 * The IOVA space is small (a few hundred pages) and mappings start at any page, so that
 * mappings collide, touch and straddle bitmap words. The seed is printed; replay with
 * --seed N (and --ops N). --break N flips one rule of the model, to show the test fails.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <linux/vfio.h>

#include <dirtytrack/dirtytrack.h>

#define PG	 4096ull
#define NPG	 256	       /* pages mappings may use */
#define SPG	 (NPG + 64)    /* pages a report or unmap range may reach */
#define APG	 (NPG + 64)    /* pages of the backing arena */
#define BASE	 0x40000000ull /* iova of model page 0, aligned to 64 KiB */
#define MAXDEV	 6
#define MAXMAP	 (NPG + 1)
#define MAXRUNS	 1024
#define HISTORY	 24
#define BAD_VA	 0x1000ull    /* below mmap_min_addr: never mapped */
#define MAX_BMAP (1ull << 40) /* larger than any max_dirty_bitmap_size */

/* One-shot dirty classes of a page (and the whole-mapping mark). */
enum { D_UNPIN = 1, D_RW = 2, D_LOG = 4, D_REQ = 8, D_WHOLE = 16 };

struct mmapping {
	bool live;
	int start, n; /* model pages */
	uint32_t flags;
	int vpage; /* arena page backing page `start` */
};

struct mdev {
	bool live;
	struct dt_device *d;
	enum dt_device_kind kind;
	bool has_pinned;
	bool cb, cb_unpins;
	uint32_t pins[SPG];
};

struct cb_rec {
	int dev;
	uint64_t iova, size;
};

/* ---- test state --------------------------------------------------------------------- */

static uint64_t seed, rng_s, nops = 100000, op_index;
static int break_rule;
static bool trace;
static char op_desc[512];
static char history[HISTORY][600];

static struct dt_iommu *io;
static uint8_t *arena, *shadow;

static struct mmapping maps[MAXMAP];
static int page_map[SPG];
static uint8_t dirty[SPG];
static struct mdev devs[MAXDEV];
static bool tracking;

static struct cb_rec cb_recs[512];
static int ncb;
static bool cb_failed;
static char cb_fail_msg[256];

struct run {
	uint64_t iova, len;
};
/* What the run exercised, printed at the end so a weak mix shows. */
static struct {
	uint64_t errors, reports, whole, pinned, unpinned, requeued, run_stops, unmap_bitmaps,
		callbacks, promotions, spanning_rw;
} cover;

static struct run seen_runs[MAXRUNS];
static int nseen_runs, run_fail_at;
static int run_fail_ret;

/* ---- helpers ------------------------------------------------------------------------ */

static uint64_t rnd(void)
{
	uint64_t z = (rng_s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t below(uint64_t n)
{
	return rnd() % n;
}

static bool chance(unsigned pct)
{
	return below(100) < pct;
}

static bool broken(int rule)
{
	return break_rule == rule;
}

static uint64_t iova_of(int64_t page)
{
	return BASE + (uint64_t)page * PG;
}

__attribute__((format(printf, 1, 2))) static void describe(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(op_desc, sizeof(op_desc), fmt, ap);
	va_end(ap);
	snprintf(history[op_index % HISTORY], sizeof(history[0]), "#%" PRIu64 " %s", op_index,
		 op_desc);
	if (trace)
		printf("#%" PRIu64 " %s\n", op_index, op_desc);
}

__attribute__((format(printf, 1, 2), noreturn)) static void mismatch(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "\nMODEL MISMATCH at op #%" PRIu64 ": %s\n  ", op_index, op_desc);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n  previous operations (oldest first):\n");
	for (uint64_t i = op_index >= HISTORY ? op_index - HISTORY + 1 : 0; i < op_index; i++)
		fprintf(stderr, "    %s\n", history[i % HISTORY]);
	fprintf(stderr, "  seed=%" PRIu64 " (replay: --seed %" PRIu64 " --ops %" PRIu64 ")\n", seed,
		seed, op_index + 1);
	fflush(stderr);
	fail();
	abort();
}

static const char *errname(long v)
{
	static char buf[4][32];
	static unsigned i;
	char *b = buf[i++ % 4];

	if (v >= 0)
		snprintf(b, sizeof(buf[0]), "%ld", v);
	else
		snprintf(b, sizeof(buf[0]), "%ld (%s)", v, strerrorname_np((int)-v) ?: "?");
	return b;
}

static void check_ret(const char *what, long seen, long exp)
{
	cover.errors += seen < 0;
	if (seen != exp)
		mismatch("%s: expected %s, seen %s", what, errname(exp), errname(seen));
}

static void check_ret2(const char *what, long seen, long a, long b)
{
	cover.errors += seen < 0;
	if (seen != a && seen != b)
		mismatch("%s: expected %s or %s, seen %s", what, errname(a), errname(b),
			 errname(seen));
}

static void check_u64(const char *what, uint64_t seen, uint64_t exp)
{
	if (seen != exp)
		mismatch("%s: expected %" PRIu64 " (0x%" PRIx64 "), seen %" PRIu64 " (0x%" PRIx64
			 ")",
			 what, exp, exp, seen, seen);
}

/* ---- the model ---------------------------------------------------------------------- */

static bool dev_dirties(const struct mdev *d)
{
	return d->kind == DT_DEVICE_EMULATED || (d->kind == DT_DEVICE_PASSTHROUGH && d->has_pinned);
}

/* The page is perpetually dirty: pinned by an EMULATED or promoted PASSTHROUGH device. */
static bool pinned(int p)
{
	for (int i = 0; i < MAXDEV; i++)
		if (devs[i].live && dev_dirties(&devs[i]) && devs[i].pins[p])
			return true;
	return false;
}

static bool pinned_any(int p)
{
	for (int i = 0; i < MAXDEV; i++)
		if (devs[i].live && devs[i].pins[p])
			return true;
	return false;
}

static bool whole_scope(void)
{
	for (int i = 0; i < MAXDEV; i++)
		if (devs[i].live && devs[i].kind == DT_DEVICE_PASSTHROUGH && !devs[i].has_pinned)
			return true;
	return false;
}

static bool mapped(int64_t p)
{
	return p >= 0 && p < SPG && page_map[p] >= 0;
}

/* Drop one pin: a page that leaves the pinned set is dirty once more. */
static void model_drop_pin(struct mdev *d, int p)
{
	bool was = pinned(p);

	d->pins[p]--;
	if (was && !pinned(p) && tracking && !broken(1))
		dirty[p] |= D_UNPIN;
}

static void model_mark_all_whole(void)
{
	for (int p = 0; p < SPG; p++)
		if (page_map[p] >= 0)
			dirty[p] |= D_WHOLE;
}

static void model_mark(int64_t first, int64_t last, uint8_t cls)
{
	if (!tracking)
		return;
	for (int64_t p = first; p <= last; p++)
		if (mapped(p))
			dirty[p] |= cls;
}

/* The mapping holding page p, or the first one after it; -1 if none. */
static int mapping_at_or_after(int p)
{
	for (; p < SPG; p++)
		if (page_map[p] >= 0)
			return page_map[p];
	return -1;
}

static bool range_cuts(int64_t s, int64_t e)
{
	if (mapped(s) && maps[page_map[s]].start != s)
		return true;
	if (mapped(e - 1) && maps[page_map[e - 1]].start + maps[page_map[e - 1]].n != e)
		return true;
	return false;
}

struct mrep {
	int64_t s, npg; /* container pages [s, s + npg) */
	unsigned k;	/* report page = PG << k */
	bool skip, pinned_only;
	uint64_t nbits;
	uint8_t bit[SPG];
	bool out[SPG]; /* container page in the output, by index from s */
	struct dt_report_counts c;
};

static void model_report(struct mrep *r, bool clear)
{
	memset(r->bit, 0, sizeof(r->bit));
	memset(r->out, 0, sizeof(r->out));
	memset(&r->c, 0, sizeof(r->c));
	r->nbits = ((uint64_t)r->npg + (1u << r->k) - 1) >> r->k;
	for (int64_t i = 0; i < r->npg; i++) {
		int64_t p = r->s + i;
		bool pin, whole, out;
		uint8_t f;

		if (!mapped(p))
			continue;
		pin = pinned((int)p);
		f = dirty[p];
		if (r->pinned_only) {
			out = pin;
			r->c.pinned += pin;
		} else {
			whole = whole_scope() || (f & D_WHOLE);
			r->c.unpinned += !!(f & D_UNPIN);
			r->c.dma_rw += !!(f & D_RW);
			r->c.logged += !!(f & D_LOG);
			r->c.requeued += !!(f & D_REQ);
			r->c.whole += whole;
			r->c.pinned += pin;
			out = (f & (D_UNPIN | D_RW | D_LOG | D_REQ)) || whole || pin;
			if (r->skip && pin && !broken(6))
				out = false;
			if (clear)
				dirty[p] = 0;
		}
		r->c.total += out;
		r->out[i] = out;
		if (out)
			r->bit[i >> r->k] = 1;
	}
}

static int model_runs(const struct mrep *r, struct run *runs)
{
	uint64_t rp = PG << r->k, end = iova_of(r->s + r->npg);
	int n = 0;

	for (uint64_t b = 0; b < r->nbits;) {
		uint64_t e;

		if (!r->bit[b]) {
			b++;
			continue;
		}
		for (e = b; e < r->nbits && r->bit[e]; e++)
			;
		runs[n].iova = iova_of(r->s) + b * rp;
		runs[n].len = iova_of(r->s) + e * rp;
		if (runs[n].len > end)
			runs[n].len = end;
		runs[n].len -= runs[n].iova;
		n++;
		b = e;
	}
	return n;
}

/* ---- checks against the library ------------------------------------------------------ */

static void check_stats(void)
{
	struct dt_iommu_stats st;
	uint64_t nm = 0, bytes = 0, nd = 0, npin = 0;

	check_ret("dt_iommu_get_stats", dt_iommu_get_stats(io, &st), 0);
	for (int i = 0; i < MAXMAP; i++)
		if (maps[i].live) {
			nm++;
			bytes += maps[i].n * PG;
		}
	for (int i = 0; i < MAXDEV; i++)
		nd += devs[i].live;
	for (int p = 0; p < SPG; p++)
		npin += pinned_any(p);
	check_u64("stats.mappings", st.mappings, nm);
	check_u64("stats.mapped_bytes", st.mapped_bytes, bytes);
	check_u64("stats.devices", st.devices, nd);
	check_u64("stats.pinned_pages", st.pinned_pages, npin);
	check_u64("stats.whole_scope", st.whole_scope, whole_scope());
	check_u64("dt_iommu_dirty_tracking", dt_iommu_dirty_tracking(io), tracking);
}

static void check_memory(void)
{
	for (uint64_t i = 0; i < APG * PG; i++)
		if (arena[i] != shadow[i])
			mismatch("guest memory at arena offset 0x%" PRIx64
				 ": expected 0x%02x, seen 0x%02x",
				 i, shadow[i], arena[i]);
}

static const uint8_t CANARY = 0xa5;

/* A bitmap buffer at a random misalignment, with canaries around `declared` bytes. */
struct bbuf {
	uint8_t *raw, *p;
	uint64_t need, declared, off;
	uint8_t *init;
};

static void bbuf_init(struct bbuf *b, uint64_t nbits, uint64_t extra, bool garbage)
{
	b->need = (nbits + 63) / 64 * 8;
	b->declared = b->need + extra;
	b->off = below(16);
	b->raw = malloc(b->declared + 64);
	b->init = malloc(b->declared + 64);
	assert_non_null(b->raw);
	assert_non_null(b->init);
	memset(b->raw, CANARY, b->declared + 64);
	b->p = b->raw + 16 + b->off;
	for (uint64_t i = 0; i < b->need; i++)
		b->p[i] = garbage ? (uint8_t)rnd() : 0;
	memcpy(b->init, b->raw, b->declared + 64);
}

static void bbuf_free(struct bbuf *b)
{
	free(b->raw);
	free(b->init);
}

/* Every byte unchanged except expected bits OR-ed into the bitmap. */
static void bbuf_check(const struct bbuf *b, const uint8_t *bits, uint64_t nbits, const char *what)
{
	for (uint64_t i = 0; i < b->declared + 64; i++) {
		uint8_t exp = b->init[i], seen = b->raw[i];
		int64_t j = (int64_t)i - 16 - (int64_t)b->off;

		if (bits && j >= 0 && (uint64_t)j < b->need)
			for (unsigned x = 0; x < 8; x++)
				if ((uint64_t)j * 8 + x < nbits && bits[j * 8 + x])
					exp |= 1u << x;
		if (exp != seen)
			mismatch("%s: bitmap byte %" PRId64 " (bits %" PRId64 "..%" PRId64
				 ", declared size %" PRIu64 "): expected 0x%02x, seen 0x%02x",
				 what, j, j * 8, j * 8 + 7, b->declared, exp, seen);
	}
}

static int run_cb(void *opaque, uint64_t iova, uint64_t length)
{
	(void)opaque;
	if (nseen_runs < MAXRUNS) {
		seen_runs[nseen_runs].iova = iova;
		seen_runs[nseen_runs].len = length;
	}
	if (nseen_runs++ == run_fail_at)
		return run_fail_ret;
	return 0;
}

static void check_runs(const struct run *exp, int nexp, const char *what)
{
	for (int i = 0; i < nexp && i < nseen_runs; i++)
		if (exp[i].iova != seen_runs[i].iova || exp[i].len != seen_runs[i].len)
			mismatch("%s: run %d: expected [0x%" PRIx64 ", +0x%" PRIx64
				 "), seen [0x%" PRIx64 ", +0x%" PRIx64 ")",
				 what, i, exp[i].iova, exp[i].len, seen_runs[i].iova,
				 seen_runs[i].len);
	if (nexp != nseen_runs)
		mismatch("%s: expected %d runs, seen %d (first extra/missing: [0x%" PRIx64
			 ", +0x%" PRIx64 "))",
			 what, nexp, nseen_runs,
			 nexp > nseen_runs ? exp[nseen_runs].iova
					   : (nexp < MAXRUNS ? seen_runs[nexp].iova : 0),
			 nexp > nseen_runs ? exp[nseen_runs].len
					   : (nexp < MAXRUNS ? seen_runs[nexp].len : 0));
}

static void check_counts(const struct dt_report_counts *seen, const struct dt_report_counts *exp)
{
#define C(f) check_u64("counts." #f, seen->f, exp->f)
	C(pinned);
	C(unpinned);
	C(dma_rw);
	C(logged);
	C(requeued);
	C(whole);
	C(total);
#undef C
}

/* ---- range choice ------------------------------------------------------------------- */

/* A range [s, e) of model pages, s a multiple of `align` pages; uncut unless allow_cut. */
static void pick_range(int64_t align, bool allow_cut, int64_t *s, int64_t *e)
{
	for (int t = 0; t < 40; t++) {
		int m = -1;

		switch (below(5)) {
		case 0:
			*s = 0;
			*e = SPG - (chance(50) ? 0 : (int64_t)below(64));
			break;
		case 1:
		case 2:
		case 3: {
			int64_t p = below(NPG);

			m = mapping_at_or_after((int)p);
			if (m < 0)
				continue;
			*s = maps[m].start - (chance(60) ? 0 : (int64_t)below(4));
			if (*s < 0)
				*s = 0;
			*s -= *s % align;
			for (unsigned more = below(4); more; more--) {
				int nx = mapping_at_or_after(maps[m].start + maps[m].n);

				if (nx < 0)
					break;
				m = nx;
			}
			*e = maps[m].start + maps[m].n + (chance(60) ? 0 : (int64_t)below(4));
			break;
		}
		default:
			*s = below(SPG);
			*s -= *s % align;
			*e = *s + 1 + below(SPG - *s);
			break;
		}
		if (*e > SPG)
			*e = SPG;
		if (*e <= *s)
			continue;
		if (allow_cut || !range_cuts(*s, *e))
			return;
	}
	*s = 0;
	*e = SPG;
}

static struct mdev *random_dev(void)
{
	int live[MAXDEV], n = 0;

	for (int i = 0; i < MAXDEV; i++)
		if (devs[i].live)
			live[n++] = i;
	return n ? &devs[live[below(n)]] : NULL;
}

static int random_mapping(void)
{
	int p = below(NPG), m = mapping_at_or_after(p);

	return m >= 0 ? m : mapping_at_or_after(0);
}

static const char *kind_name(enum dt_device_kind k)
{
	return k == DT_DEVICE_EMULATED ? "EMU" : k == DT_DEVICE_PASSTHROUGH ? "PT" : "LOG";
}

/* ---- operations --------------------------------------------------------------------- */

static void op_map(void)
{
	struct vfio_iommu_type1_dma_map mp = {.argsz = sizeof(mp)};
	int n = 1 + (int)(chance(70) ? below(12) : below(40)), start = -1, m;
	unsigned f = below(10);
	bool overlap = false;
	long exp, alt;
	int bad = chance(15) ? (int)below(9) : -1, ret;

	m = random_mapping();
	if (m >= 0 && chance(30))
		start = maps[m].start + maps[m].n;
	else if (m >= 0 && chance(40))
		start = maps[m].start - n;
	if (start < 0 || start + n > NPG)
		start = below(NPG - n + 1);
	mp.flags = f < 7   ? VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE
		   : f < 9 ? VFIO_DMA_MAP_FLAG_READ
			   : VFIO_DMA_MAP_FLAG_WRITE;
	int vpage = start + (int)below(64);

	mp.vaddr = (uint64_t)(uintptr_t)(arena + vpage * PG);
	mp.iova = iova_of(start);
	mp.size = n * PG;
	for (int p = start; p < start + n; p++)
		overlap |= mapped(p);
	exp = alt = overlap ? -EEXIST : 0;
	switch (bad) {
	case 0:
		mp.iova += 0x800;
		exp = alt = -EINVAL;
		break;
	case 1:
		mp.vaddr += 0x10;
		exp = alt = -EINVAL;
		break;
	case 2:
		mp.size += 0x200;
		exp = alt = -EINVAL;
		break;
	case 3:
		mp.size = 0;
		exp = alt = -EINVAL;
		break;
	case 4:
		mp.flags |= 1u << 7;
		exp = alt = -EINVAL;
		break;
	case 5:
		mp.flags = 0;
		exp = alt = -EINVAL;
		break;
	case 6:
		mp.iova = 0 - PG;
		mp.size = 2 * PG;
		exp = -EINVAL;
		alt = -EOVERFLOW;
		break;
	case 7:
		mp.vaddr = BAD_VA;
		if (n > 15)
			mp.size = 15 * PG;
		exp = -EFAULT;
		overlap = false;
		for (int p = start; p < start + (int)(mp.size / PG); p++)
			overlap |= mapped(p);
		alt = overlap ? -EEXIST : -EFAULT;
		break;
	case 8:
		mp.argsz = 16;
		exp = alt = -EINVAL;
		break;
	}
	describe(
		"MAP_DMA iova 0x%llx (page %d) size 0x%llx (%d pages) vaddr arena+%d pages flags %u "
		"argsz %u%s",
		(unsigned long long)mp.iova, start, (unsigned long long)mp.size, n, vpage, mp.flags,
		mp.argsz, bad >= 0 ? " [invalid on purpose]" : "");
	ret = dt_vfio_ioctl(io, VFIO_IOMMU_MAP_DMA, &mp);
	check_ret2("MAP_DMA", ret, exp, alt);
	if (ret)
		return;
	for (m = 0; maps[m].live; m++)
		;
	maps[m] = (struct mmapping){
		.live = true, .start = start, .n = n, .flags = mp.flags, .vpage = vpage};
	for (int p = start; p < start + n; p++) {
		page_map[p] = m;
		dirty[p] = 0;
	}
}

static void unmap_cb(void *opaque, uint64_t iova, uint64_t size)
{
	struct mdev *d = opaque;

	if (ncb < (int)(sizeof(cb_recs) / sizeof(cb_recs[0])))
		cb_recs[ncb++] = (struct cb_rec){(int)(d - devs), iova, size};
	if (!d->cb_unpins || iova < BASE || size % PG)
		return;
	for (uint64_t a = iova; a < iova + size && a < iova_of(SPG); a += PG) {
		int p = (int)((a - BASE) / PG);

		while (d->pins[p]) {
			int ret = dt_unpin_pages(d->d, a, 1);

			if (ret != 1 && !cb_failed) {
				cb_failed = true;
				snprintf(cb_fail_msg, sizeof(cb_fail_msg),
					 "dt_unpin_pages(0x%llx, 1) from the unmap callback: %d",
					 (unsigned long long)a, ret);
			}
			if (ret != 1)
				break;
			model_drop_pin(d, p);
		}
	}
}

/* Before an unmap of model pages [s, e): the pages each device with a callback holds. */
static void cb_expect(int64_t s, int64_t e, bool exp_pin[MAXDEV][SPG])
{
	memset(exp_pin, 0, sizeof(bool) * MAXDEV * SPG);
	for (int i = 0; i < MAXDEV; i++)
		for (int64_t p = s; p < e; p++)
			if (devs[i].live && devs[i].cb && mapped(p) && devs[i].pins[p])
				exp_pin[i][p] = true;
}

static void cb_check(int64_t s, int64_t e, bool ok, bool exp_pin[MAXDEV][SPG])
{
	if (cb_failed)
		mismatch("%s", cb_fail_msg);
	if (!ok && ncb)
		mismatch("rejected unmap called an unmap callback (device %d, [0x%" PRIx64
			 ", +0x%" PRIx64 "))",
			 cb_recs[0].dev, cb_recs[0].iova, cb_recs[0].size);
	if (!ok)
		return;
	for (int c = 0; c < ncb; c++) {
		struct cb_rec *r = &cb_recs[c];
		bool any = false;

		if (r->iova < iova_of(s) || r->iova + r->size > iova_of(e) || !r->size)
			mismatch("unmap callback of device %d got [0x%" PRIx64 ", +0x%" PRIx64
				 "), outside the unmapped range",
				 r->dev, r->iova, r->size);
		for (uint64_t a = r->iova; a < r->iova + r->size; a += PG)
			any |= exp_pin[r->dev][(a - BASE) / PG];
		if (!any)
			mismatch("unmap callback of device %d for [0x%" PRIx64 ", +0x%" PRIx64
				 ") where it pins nothing",
				 r->dev, r->iova, r->size);
	}
	for (int i = 0; i < MAXDEV; i++)
		for (int64_t p = s; p < e; p++) {
			bool told = false;

			if (!exp_pin[i][p])
				continue;
			for (int c = 0; c < ncb; c++)
				told |= cb_recs[c].dev == i && cb_recs[c].iova <= iova_of(p) &&
					cb_recs[c].iova + cb_recs[c].size > iova_of(p);
			if (!told)
				mismatch("device %d pins page 0x%" PRIx64
					 " of the unmapped range but its callback was not called",
					 i, iova_of(p));
		}
}

static void model_remove_range(int64_t s, int64_t e)
{
	for (int64_t p = s; p < e; p++) {
		if (!mapped(p))
			continue;
		for (int i = 0; i < MAXDEV; i++)
			while (devs[i].live && devs[i].pins[p])
				model_drop_pin(&devs[i], (int)p);
	}
	for (int64_t p = s; p < e; p++) {
		if (!mapped(p))
			continue;
		maps[page_map[p]].live = false;
		page_map[p] = -1;
		dirty[p] = 0;
	}
}

static void op_unmap(void)
{
	static bool exp_pin[MAXDEV][SPG];
	uint64_t raw[8] = {0};
	struct vfio_iommu_type1_dma_unmap *u = (void *)raw;
	struct vfio_bitmap *vb = (void *)((char *)raw + sizeof(*u));
	bool all = chance(1), want = !all && chance(50), invalid = false;
	int bad = chance(15) ? (int)below(10) : -1, ret;
	int64_t s = 0, e = SPG;
	uint64_t bytes = 0;
	struct bbuf bb = {0};
	struct mrep r = {0};

	if (!all)
		pick_range(1, chance(15), &s, &e);
	u->argsz = sizeof(*u) + (want ? sizeof(*vb) : 0);
	u->flags = (want ? VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP : 0) |
		   (all ? VFIO_DMA_UNMAP_FLAG_ALL : 0);
	u->iova = all ? 0 : iova_of(s);
	u->size = all ? 0 : (uint64_t)(e - s) * PG;
	if (want) {
		bbuf_init(&bb, e - s, chance(50) ? 0 : below(24), false);
		vb->pgsize = PG;
		vb->size = bb.declared;
		vb->data = (void *)bb.p;
		invalid |= !tracking;
	}
	invalid |= !all && range_cuts(s, e);
	switch (bad) {
	case 0:
		u->argsz = 16;
		break;
	case 1:
		u->flags |= 1u << 5;
		break;
	case 2:
		if (!want || all)
			return;
		u->argsz = sizeof(*u) + sizeof(*vb) - 1;
		break;
	case 3:
		if (!want || all)
			return;
		u->flags |= VFIO_DMA_UNMAP_FLAG_ALL;
		break;
	case 4:
		if (!want || all)
			return;
		vb->pgsize = chance(50) ? 2 * PG : 0;
		break;
	case 5:
		if (!want || all)
			return;
		vb->size = chance(30) ? 0 : bb.need - 1;
		break;
	case 6:
		if (all)
			u->iova = PG;
		else
			u->iova += 0x800;
		break;
	case 7:
		if (all)
			u->size = PG;
		else
			u->size = chance(50) ? 0 : u->size + 0x100;
		break;
	case 8:
		if (all)
			return;
		u->iova = 0 - PG;
		u->size = 2 * PG;
		break;
	case 9:
		if (!want || all)
			return;
		vb->size = MAX_BMAP;
		break;
	}
	if (bad >= 0)
		invalid = true;
	describe("UNMAP_DMA iova 0x%llx size 0x%llx (pages %" PRId64 "..%" PRId64 ") flags 0x%x "
		 "argsz %u bitmap pgsize 0x%llx size %llu%s",
		 (unsigned long long)u->iova, (unsigned long long)u->size, s, e - 1, u->flags,
		 u->argsz, (unsigned long long)vb->pgsize, (unsigned long long)vb->size,
		 bad >= 0 ? " [invalid on purpose]" : "");
	if (!invalid && want) {
		r.s = s;
		r.npg = e - s;
		model_report(&r, false);
	}
	for (int64_t p = s; p < e; p++)
		if (mapped(p) && maps[page_map[p]].start == p)
			bytes += maps[page_map[p]].n * PG;
	cb_expect(s, e, exp_pin);
	ncb = 0;
	cb_failed = false;
	ret = dt_vfio_ioctl(io, VFIO_IOMMU_UNMAP_DMA, u);
	check_ret("UNMAP_DMA", ret, invalid ? -EINVAL : 0);
	cb_check(s, e, !invalid, exp_pin);
	if (want) {
		bbuf_check(&bb, invalid ? NULL : r.bit, r.nbits, "UNMAP_DMA bitmap");
		bbuf_free(&bb);
	}
	if (invalid)
		return;
	check_u64("UNMAP_DMA size unmapped", u->size, bytes);
	cover.unmap_bitmaps += want;
	cover.callbacks += ncb;
	model_remove_range(s, e);
}

static void op_attach(void)
{
	int slot = -1;
	unsigned k = below(100);
	enum dt_device_kind kind = k < 40   ? DT_DEVICE_EMULATED
				   : k < 62 ? DT_DEVICE_PASSTHROUGH
					    : DT_DEVICE_LOGGING;
	struct dt_device *d;

	for (int i = 0; i < MAXDEV; i++)
		if (!devs[i].live)
			slot = i;
	if (chance(5) || slot < 0) {
		int bad = chance(50) ? 3 : -1;

		describe("dt_device_attach(kind %d) [invalid on purpose]", bad);
		errno = 0;
		d = dt_device_attach(io, (enum dt_device_kind)bad);
		if (d)
			mismatch("dt_device_attach with kind %d: expected NULL, seen a device",
				 bad);
		check_ret("errno of dt_device_attach", errno, EINVAL);
		return;
	}
	describe("attach %s device as %d", kind_name(kind), slot);
	d = dt_device_attach(io, kind);
	if (!d)
		mismatch("dt_device_attach(%s): NULL, errno %d", kind_name(kind), errno);
	memset(&devs[slot], 0, sizeof(devs[slot]));
	devs[slot].live = true;
	devs[slot].d = d;
	devs[slot].kind = kind;
	check_u64("dt_device_kind", dt_device_kind(d), kind);
	if (chance(60)) {
		devs[slot].cb = true;
		devs[slot].cb_unpins = chance(50);
		check_ret("dt_device_set_unmap_cb",
			  dt_device_set_unmap_cb(d, unmap_cb, &devs[slot]), 0);
	}
}

static void op_detach(void)
{
	struct mdev *d = random_dev();

	if (!d || chance(3)) {
		describe("dt_device_detach(NULL) [invalid on purpose]");
		check_ret("dt_device_detach(NULL)", dt_device_detach(NULL), -EINVAL);
		return;
	}
	describe("detach device %d (%s%s)", (int)(d - devs), kind_name(d->kind),
		 d->has_pinned ? ", has pinned" : "");
	check_ret("dt_device_detach", dt_device_detach(d->d), 0);
	for (int p = 0; p < SPG; p++)
		while (d->pins[p])
			model_drop_pin(d, p);
	d->live = false;
	if (d->kind == DT_DEVICE_PASSTHROUGH && !d->has_pinned && tracking && !broken(8))
		model_mark_all_whole();
}

static uint32_t prot_need(int prot)
{
	return (prot & PROT_READ ? VFIO_DMA_MAP_FLAG_READ : 0) |
	       (prot & PROT_WRITE ? VFIO_DMA_MAP_FLAG_WRITE : 0);
}

static void op_pin(void)
{
	struct mdev *d = random_dev();
	int m = random_mapping(), np = 1 + (int)(chance(80) ? below(4) : below(12)), p0, ret;
	int prot = chance(70) ? PROT_READ | PROT_WRITE : chance(50) ? PROT_READ : PROT_WRITE;
	int bad = chance(10) ? (int)below(4) : -1;
	bool outside = false, perm = false;
	void *vaddrs[16];
	bool want_va = chance(50);
	uint64_t iova;
	long exp, alt;

	if (!d)
		return;
	if (m >= 0 && chance(85))
		p0 = maps[m].start + (int)below(maps[m].n);
	else
		p0 = below(SPG);
	if (p0 + np > SPG)
		np = SPG - p0;
	iova = iova_of(p0);
	for (int p = p0; p < p0 + np; p++) {
		if (!mapped(p))
			outside = true;
		else if ((maps[page_map[p]].flags & prot_need(prot)) != prot_need(prot))
			perm = true;
	}
	exp = outside ? -EINVAL : perm ? -EPERM : np;
	alt = outside && perm ? -EPERM : exp;
	switch (bad) {
	case 0:
		np = chance(50) ? 0 : -1;
		exp = alt = -EINVAL;
		break;
	case 1:
		iova += chance(50) ? 0x800 : 1;
		exp = alt = -EINVAL;
		break;
	case 2:
		prot = chance(50) ? 0 : PROT_EXEC | PROT_READ;
		exp = alt = -EINVAL;
		break;
	case 3:
		d = NULL;
		exp = alt = -EINVAL;
		break;
	}
	describe("pin dev %d iova 0x%llx (page %d) npage %d prot %d%s", d ? (int)(d - devs) : -1,
		 (unsigned long long)iova, p0, np, prot, bad >= 0 ? " [invalid on purpose]" : "");
	ret = dt_pin_pages(d ? d->d : NULL, iova, np, prot, want_va ? vaddrs : NULL);
	check_ret2("dt_pin_pages", ret, exp, alt);
	if (ret <= 0)
		return;
	if (d->kind == DT_DEVICE_PASSTHROUGH && !d->has_pinned) {
		d->has_pinned = true;
		cover.promotions++;
		if (tracking && !broken(2))
			model_mark_all_whole();
	}
	for (int p = p0; p < p0 + np; p++) {
		struct mmapping *mp = &maps[page_map[p]];
		uint8_t *va = arena + (mp->vpage + (p - mp->start)) * PG;

		d->pins[p]++;
		if (want_va && vaddrs[p - p0] != va)
			mismatch("pin vaddrs[%d]: expected %p, seen %p", p - p0, (void *)va,
				 vaddrs[p - p0]);
	}
}

static void op_unpin(void)
{
	struct mdev *d = random_dev();
	int p0 = -1, np = 1 + (int)below(6), ret;
	int bad = chance(8) ? (int)below(3) : -1;
	uint64_t iova;
	long exp;

	if (!d)
		return;
	if (chance(80)) {
		int start = below(SPG);

		for (int i = 0; i < SPG; i++)
			if (d->pins[(start + i) % SPG]) {
				p0 = (start + i) % SPG;
				break;
			}
		if (p0 >= 0 && chance(80)) {
			int run = 0;

			while (p0 + run < SPG && d->pins[p0 + run])
				run++;
			np = 1 + (int)below(run);
		}
	}
	if (p0 < 0)
		p0 = below(SPG);
	if (p0 + np > SPG)
		np = SPG - p0;
	exp = np;
	for (int p = p0; p < p0 + np; p++)
		if (!d->pins[p])
			exp = -EINVAL;
	iova = iova_of(p0);
	switch (bad) {
	case 0:
		np = chance(50) ? 0 : -3;
		exp = -EINVAL;
		break;
	case 1:
		iova += 0x100;
		exp = -EINVAL;
		break;
	case 2:
		d = NULL;
		exp = -EINVAL;
		break;
	}
	describe("unpin dev %d iova 0x%llx (page %d) npage %d%s", d ? (int)(d - devs) : -1,
		 (unsigned long long)iova, p0, np, bad >= 0 ? " [invalid on purpose]" : "");
	ret = dt_unpin_pages(d ? d->d : NULL, iova, np);
	check_ret("dt_unpin_pages", ret, exp);
	if (ret <= 0)
		return;
	for (int p = p0; p < p0 + np; p++)
		model_drop_pin(d, p);
}

/* Check [iova, iova + len) byte by byte: 0, or the errors a call over it may return. */
static void access_check(uint64_t iova, uint64_t len, uint32_t need, bool *outside, bool *perm)
{
	*outside = *perm = false;
	for (uint64_t a = iova & ~(PG - 1); a < iova + len; a += PG) {
		int64_t p = (int64_t)(a - BASE) / (int64_t)PG;

		if (a < BASE || !mapped(p))
			*outside = true;
		else if ((maps[page_map[p]].flags & need) != need)
			*perm = true;
	}
}

static uint8_t *shadow_at(uint64_t a)
{
	int64_t p = (int64_t)((a - BASE) / PG);
	struct mmapping *m = &maps[page_map[p]];

	return shadow + (m->vpage + (p - m->start)) * PG + (a % PG);
}

static void op_dma_rw(void)
{
	static uint8_t buf[4 * PG + 64];
	struct mdev *d = random_dev();
	int m = random_mapping(), ret;
	bool write = chance(50), outside, perm;
	uint64_t len = chance(50) ? 1 + below(64) : 1 + below(3 * PG + 64), iova;
	int bad = chance(5) ? (int)below(2) : -1;
	long exp, alt, alt2;

	if (!d)
		return;
	if (m >= 0 && chance(85))
		iova = iova_of(maps[m].start) + below(maps[m].n * PG);
	else
		iova = iova_of(0) + below(SPG * PG);
	if (chance(15) && m >= 0) /* end exactly on the end of a mapping, or just past it */
		iova = iova_of(maps[m].start + maps[m].n) - len + below(2);
	access_check(iova, len, write ? VFIO_DMA_MAP_FLAG_WRITE : VFIO_DMA_MAP_FLAG_READ, &outside,
		     &perm);
	/* Outside the mappings: -EFAULT or -EINVAL; with both faults any of the three. */
	exp = outside ? -EINVAL : perm ? -EPERM : 0;
	alt = outside ? -EFAULT : exp;
	alt2 = outside && perm ? -EPERM : exp;
	if (bad == 0) {
		len = 0;
		exp = alt = alt2 = -EINVAL;
	} else if (bad == 1) {
		d = NULL;
		exp = alt = alt2 = -EINVAL;
	}
	for (uint64_t i = 0; i < len; i++)
		buf[i] = write ? (uint8_t)rnd() : 0x5a;
	describe("dma_rw dev %d %s iova 0x%llx len %llu%s", d ? (int)(d - devs) : -1,
		 write ? "write" : "read", (unsigned long long)iova, (unsigned long long)len,
		 bad >= 0 ? " [invalid on purpose]" : "");
	ret = dt_dma_rw(d ? d->d : NULL, iova, buf, len, write);
	if (ret != alt2)
		check_ret2("dt_dma_rw", ret, exp, alt);
	if (ret)
		return;
	for (uint64_t i = 0; i < len; i++) {
		uint8_t *sh = shadow_at(iova + i);

		if (write) {
			*sh = buf[i];
		} else if (buf[i] != *sh) {
			mismatch(
				"dma_rw read byte %llu (iova 0x%llx): expected 0x%02x, seen 0x%02x",
				(unsigned long long)i, (unsigned long long)(iova + i), *sh, buf[i]);
		}
	}
	cover.spanning_rw += page_map[(iova - BASE) / PG] != page_map[(iova + len - 1 - BASE) / PG];
	if (write || broken(3))
		model_mark((int64_t)((iova - BASE) / PG), (int64_t)((iova + len - 1 - BASE) / PG),
			   D_RW);
}

/* A range to log, mostly inside a mapping; one in 20 is invalid on purpose (bad = 0: len 0,
 * 2: wraps; 1 is left to the caller: a NULL device). *exp gets 0 or the errno. */
static struct dt_dma_range log_range(long *exp, int *bad)
{
	int m = random_mapping();
	uint64_t len = chance(50) ? 1 + below(64) : 1 + below(3 * PG + 64), iova;
	bool outside, perm;

	*bad = chance(5) ? (int)below(3) : -1;
	if (m >= 0 && chance(85))
		iova = iova_of(maps[m].start) + below(maps[m].n * PG);
	else
		iova = iova_of(0) + below(SPG * PG);
	access_check(iova, len, 0, &outside, &perm);
	*exp = outside ? -EINVAL : 0;
	if (*bad == 0) {
		len = 0;
		*exp = -EINVAL;
	} else if (*bad == 2) {
		len = 0 - iova + PG; /* wraps */
		*exp = -EINVAL;
	}
	return (struct dt_dma_range){iova, len};
}

static void model_mark_range(const struct dt_dma_range *r)
{
	model_mark((int64_t)((r->iova - BASE) / PG), (int64_t)((r->iova + r->len - 1 - BASE) / PG),
		   D_LOG);
}

/* dt_dma_log_batch of 1-6 ranges: the count logged up to the first rejected range (or that
 * range's errno when it is the first), and those marked. */
static void op_dma_log_batch(struct mdev *d)
{
	struct dt_dma_range r[6];
	unsigned n = 1 + (unsigned)below(6);
	long exp = n, e;
	bool rejected = false;
	int bad, ret;

	for (unsigned i = 0; i < n; i++) {
		r[i] = log_range(&e, &bad);
		if (e && !rejected)
			exp = i ? (long)i : e;
		rejected |= e != 0;
	}
	describe("dma_log_batch dev %d of %u ranges, the first at iova 0x%llx len %llu",
		 (int)(d - devs), n, (unsigned long long)r[0].iova, (unsigned long long)r[0].len);
	ret = dt_dma_log_batch(d->d, r, n);
	check_ret("dt_dma_log_batch", ret, exp);
	for (int i = 0; i < ret; i++)
		model_mark_range(&r[i]);
}

static void op_dma_log(void)
{
	struct mdev *d = random_dev();
	struct dt_dma_range r;
	long exp;
	int bad, ret;

	if (!d)
		return;
	if (chance(35)) {
		op_dma_log_batch(d);
		return;
	}
	r = log_range(&exp, &bad);
	if (bad == 1) {
		d = NULL;
		exp = -EINVAL;
	}
	describe("dma_log dev %d iova 0x%llx len %llu%s", d ? (int)(d - devs) : -1,
		 (unsigned long long)r.iova, (unsigned long long)r.len,
		 bad >= 0 ? " [invalid on purpose]" : "");
	ret = dt_dma_log(d ? d->d : NULL, r.iova, r.len);
	check_ret("dt_dma_log", ret, exp);
	if (ret)
		return;
	if (broken(7) && !tracking) {
		tracking = true;
		model_mark_range(&r);
		tracking = false;
		return;
	}
	model_mark_range(&r);
}

static void op_tracking(void)
{
	uint64_t raw[2] = {0};
	struct vfio_iommu_type1_dirty_bitmap *db = (void *)raw;
	bool start = tracking ? chance(40) : chance(90), vfio = chance(60);
	int bad = vfio && chance(10) ? (int)below(5) : -1, ret;

	db->argsz = sizeof(*db);
	db->flags = start ? VFIO_IOMMU_DIRTY_PAGES_FLAG_START : VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP;
	switch (bad) {
	case 0:
		db->argsz = 4;
		break;
	case 1:
		db->flags = 0;
		break;
	case 2:
		db->flags |= start ? VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP
				   : VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
		break;
	case 3:
		db->flags |= 1u << 6;
		break;
	case 4:
		db->flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP |
			    VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
		break;
	}
	describe("%s %s (tracking %s) flags 0x%x argsz %u%s", vfio ? "DIRTY_PAGES" : "native",
		 start ? "START" : "STOP", tracking ? "on" : "off", db->flags, db->argsz,
		 bad >= 0 ? " [invalid on purpose]" : "");
	if (vfio)
		ret = dt_vfio_ioctl(io, VFIO_IOMMU_DIRTY_PAGES, db);
	else
		ret = start ? dt_iommu_dirty_start(io) : dt_iommu_dirty_stop(io);
	check_ret(start ? "START" : "STOP", ret, bad >= 0 ? -EINVAL : 0);
	if (bad >= 0)
		return;
	if (start) {
		if (broken(4) && tracking)
			memset(dirty, 0, sizeof(dirty));
		tracking = true;
	} else {
		tracking = false;
		memset(dirty, 0, sizeof(dirty));
	}
}

static void op_get_bitmap(void)
{
	uint64_t raw[8] = {0};
	struct vfio_iommu_type1_dirty_bitmap *db = (void *)raw;
	struct vfio_iommu_type1_dirty_bitmap_get *g = (void *)db->data;
	int bad = chance(12) ? (int)below(11) : -1, ret;
	bool cut_ok = chance(10), hole_garbage = chance(50);
	int64_t s, e;
	struct bbuf bb;
	struct mrep r = {0};
	long exp;

	pick_range(1, cut_ok, &s, &e);
	r.s = s;
	r.npg = e - s;
	r.nbits = e - s;
	bbuf_init(&bb, e - s, chance(50) ? 0 : below(20), false);
	/* Words wholly in holes may hold anything: they are not written. */
	if (hole_garbage)
		for (uint64_t w = 0; w < bb.need / 8; w++) {
			bool hole = true;

			for (int64_t p = s + w * 64; p < s + (int64_t)w * 64 + 64 && p < e; p++)
				hole &= !mapped(p);
			if (hole)
				for (int x = 0; x < 8; x++)
					bb.p[w * 8 + x] = (uint8_t)rnd();
		}
	memcpy(bb.init, bb.raw, bb.declared + 64);
	db->argsz = sizeof(*db) + sizeof(*g);
	db->flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
	g->iova = iova_of(s);
	g->size = (uint64_t)(e - s) * PG;
	g->bitmap.pgsize = PG;
	g->bitmap.size = bb.declared;
	g->bitmap.data = (void *)bb.p;
	exp = !tracking || range_cuts(s, e) ? -EINVAL : 0;
	switch (bad) {
	case 0:
		db->argsz = sizeof(*db) + sizeof(*g) - 1;
		exp = -EINVAL;
		break;
	case 1:
		g->size = 0;
		exp = -EINVAL;
		break;
	case 2:
		g->iova = 0 - PG;
		g->size = 2 * PG;
		exp = -EOVERFLOW;
		break;
	case 3:
		g->bitmap.size = 0;
		exp = -EINVAL;
		break;
	case 4:
		g->bitmap.size = bb.need - 1 - below(bb.need > 8 ? 8 : bb.need - 1);
		exp = -EINVAL;
		break;
	case 5:
		g->bitmap.size = MAX_BMAP;
		exp = -EINVAL;
		break;
	case 6:
		g->bitmap.pgsize = 2 * PG;
		exp = -EINVAL;
		break;
	case 7:
		g->bitmap.pgsize = 0;
		exp = -EINVAL;
		break;
	case 8:
		g->iova += 0x800;
		exp = -EINVAL;
		break;
	case 9:
		g->size += 0x800;
		exp = -EINVAL;
		break;
	case 10:
		g->bitmap.pgsize = PG / 2;
		exp = -EINVAL;
		break;
	}
	describe("GET_BITMAP iova 0x%llx size 0x%llx (pages %" PRId64 "..%" PRId64 ") argsz %u "
		 "bitmap pgsize 0x%llx size %llu (need %llu, buffer +%llu) tracking %s%s",
		 (unsigned long long)g->iova, (unsigned long long)g->size, s, e - 1, db->argsz,
		 (unsigned long long)g->bitmap.pgsize, (unsigned long long)g->bitmap.size,
		 (unsigned long long)bb.need, (unsigned long long)bb.off, tracking ? "on" : "off",
		 bad >= 0 ? " [invalid on purpose]" : "");
	if (!exp)
		model_report(&r, true);
	ret = dt_vfio_ioctl(io, VFIO_IOMMU_DIRTY_PAGES, db);
	check_ret("GET_BITMAP", ret, exp);
	bbuf_check(&bb, exp ? NULL : r.bit, r.nbits, "GET_BITMAP");
	bbuf_free(&bb);
}

static void op_report(bool pinned_only)
{
	struct dt_report rep = {.size = sizeof(rep)};
	unsigned k = chance(50) ? 0 : 1 + below(4);
	int bad = chance(10) ? (int)below(10) : -1, ret;
	bool use_bitmap = chance(70), use_runs = chance(50), garbage = chance(50), null_rep = false;
	int64_t s, e;
	struct bbuf bb = {0};
	struct mrep r = {0};
	static struct run exp_runs[MAXRUNS];
	int nexp_runs = 0;
	long exp;

	pick_range(1 << k, chance(8), &s, &e);
	r.s = s;
	r.npg = e - s;
	r.k = k;
	r.pinned_only = pinned_only;
	r.nbits = ((uint64_t)r.npg + (1u << k) - 1) >> k;
	if (!pinned_only)
		rep.flags = (chance(25) ? DT_REPORT_NO_CLEAR : 0) |
			    (chance(25) ? DT_REPORT_SKIP_PINNED : 0);
	r.skip = rep.flags & DT_REPORT_SKIP_PINNED;
	rep.iova = iova_of(s);
	rep.length = (uint64_t)(e - s) * PG;
	rep.pgsize = k == 0 && chance(50) ? 0 : PG << k;
	if (use_bitmap) {
		bbuf_init(&bb, r.nbits, chance(50) ? 0 : below(20), garbage);
		rep.bitmap = bb.p;
		rep.bitmap_size = bb.declared;
	}
	if (use_runs) {
		rep.run = run_cb;
		rep.opaque = NULL;
	}
	run_fail_at = -1;
	nseen_runs = 0;
	exp = (!tracking && !pinned_only) || range_cuts(s, e) ? -EINVAL : 0;
	switch (bad) {
	case 0:
		rep.size = sizeof(rep) - 8;
		exp = -EINVAL;
		break;
	case 1:
		rep.length = 0;
		exp = -EINVAL;
		break;
	case 2:
		rep.iova += k ? PG : 0x800;
		exp = -EINVAL;
		break;
	case 3:
		rep.length += 0x800;
		exp = -EINVAL;
		break;
	case 4:
		rep.pgsize = chance(50) ? 3 * PG : PG / 2;
		exp = -EINVAL;
		break;
	case 5:
		rep.flags |= 1u << 7;
		exp = -EINVAL;
		break;
	case 6:
		if (!use_bitmap)
			return;
		rep.bitmap_size = bb.need - 1 - below(bb.need > 8 ? 8 : bb.need - 1);
		exp = -EINVAL;
		break;
	case 7:
		rep.iova = 0 - (PG << k);
		rep.length = 2 * (PG << k);
		rep.bitmap = NULL;
		exp = -EOVERFLOW;
		break;
	case 8:
		null_rep = true;
		exp = -EINVAL;
		break;
	case 9:
		if (pinned_only) {
			if (use_bitmap)
				bbuf_free(&bb);
			return;
		}
		rep.flags = DT_REPORT_NO_CLEAR | DT_REPORT_SKIP_PINNED | (1u << 2);
		exp = -EINVAL;
		break;
	}
	if (!pinned_only && !exp && use_runs && chance(25)) {
		run_fail_at = below(5);
		run_fail_ret = chance(50) ? -ECANCELED : 1 + (int)below(100);
	}
	describe("%s iova 0x%llx length 0x%llx (pages %" PRId64 "..%" PRId64 ") pgsize 0x%llx "
		 "flags 0x%x bitmap %s (size %llu, need %llu, +%llu) runs %s%s tracking %s%s",
		 pinned_only ? "dt_iommu_pinned" : "dt_iommu_report", (unsigned long long)rep.iova,
		 (unsigned long long)rep.length, s, e - 1, (unsigned long long)rep.pgsize,
		 rep.flags, use_bitmap ? (garbage ? "prefilled" : "zeroed") : "none",
		 (unsigned long long)rep.bitmap_size, (unsigned long long)bb.need,
		 (unsigned long long)bb.off, use_runs ? "yes" : "no",
		 run_fail_at >= 0 ? " (callback fails)" : "", tracking ? "on" : "off",
		 bad >= 0 ? " [invalid on purpose]" : "");
	if (!exp) {
		bool clear = !pinned_only && (!(rep.flags & DT_REPORT_NO_CLEAR) || broken(5));

		model_report(&r, clear);
		nexp_runs = model_runs(&r, exp_runs);
		if (run_fail_at >= nexp_runs)
			run_fail_at = -1;
		if (run_fail_at >= 0) {
			exp = run_fail_ret;
			/* the failed run and every later one are merged back */
			for (int i = run_fail_at; i < nexp_runs; i++)
				model_mark(
					(int64_t)((exp_runs[i].iova - BASE) / PG),
					(int64_t)((exp_runs[i].iova + exp_runs[i].len - 1 - BASE) /
						  PG),
					D_REQ);
			nexp_runs = run_fail_at + 1;
		}
	}
	if (pinned_only)
		ret = dt_iommu_pinned(io, null_rep ? NULL : &rep);
	else
		ret = dt_iommu_report(io, null_rep ? NULL : &rep);
	check_ret(pinned_only ? "dt_iommu_pinned" : "dt_iommu_report", ret, exp);
	if (run_fail_at >= 0) {
		cover.run_stops++;
		/* Stopped by the callback: only the runs delivered are specified. */
		check_runs(exp_runs, nexp_runs, "report runs");
		if (use_bitmap)
			bbuf_free(&bb);
		return;
	}
	if (use_bitmap) {
		bbuf_check(&bb, exp ? NULL : r.bit, r.nbits, "report bitmap");
		bbuf_free(&bb);
	}
	if (use_runs)
		check_runs(exp_runs, exp ? 0 : nexp_runs, "report runs");
	if (exp)
		return;
	check_counts(&rep.counts, &r.c);
	cover.reports++;
	cover.whole += r.c.whole > 0;
	cover.pinned += r.c.pinned > 0;
	cover.unpinned += r.c.unpinned > 0;
	cover.requeued += r.c.requeued > 0;
}

static void op_merge_back(void)
{
	int64_t s = below(SPG), n = 1 + below(40);
	uint64_t iova = iova_of(s), len = n * PG;
	int bad = chance(10) ? (int)below(4) : -1, ret;
	long exp = 0;

	if (chance(10)) { /* from below the model space */
		iova = BASE - 8 * PG;
		len = (n + 8) * PG;
		s = 0;
	}
	switch (bad) {
	case 0:
		len = 0;
		exp = -EINVAL;
		break;
	case 1:
		iova += 0x10;
		exp = -EINVAL;
		break;
	case 2:
		len += 0x10;
		exp = -EINVAL;
		break;
	case 3:
		iova = 0 - PG;
		len = 2 * PG;
		exp = -EOVERFLOW;
		break;
	}
	describe("merge_back iova 0x%llx length 0x%llx%s", (unsigned long long)iova,
		 (unsigned long long)len, bad >= 0 ? " [invalid on purpose]" : "");
	ret = dt_iommu_merge_back(io, iova, len);
	check_ret("dt_iommu_merge_back", ret, exp);
	if (!ret)
		model_mark(s, (int64_t)((iova + len - 1 - BASE) / PG), D_REQ);
}

static void op_merge_back_bitmap(void)
{
	unsigned k = below(5);
	int64_t s = below(SPG);
	uint64_t nbits = 1 + below(24), words[1] = {rnd() & rnd()};
	int ret;

	s -= s % (1 << k);
	if (nbits > 64)
		nbits = 64;
	describe("merge_back_bitmap iova 0x%llx pgsize 0x%llx bits 0x%llx nbits %llu",
		 (unsigned long long)iova_of(s), (unsigned long long)(PG << k),
		 (unsigned long long)words[0], (unsigned long long)nbits);
	ret = dt_iommu_merge_back_bitmap(io, iova_of(s), PG << k, words, nbits);
	check_ret("dt_iommu_merge_back_bitmap", ret, 0);
	for (uint64_t b = 0; b < nbits; b++)
		if (words[0] >> b & 1)
			model_mark(s + (int64_t)(b << k), s + (int64_t)((b + 1) << k) - 1, D_REQ);
}

static void check_info(void)
{
	uint64_t buf[64] = {0};
	struct vfio_iommu_type1_info *info = (void *)buf;
	struct vfio_info_cap_header *h;
	bool found = false;

	describe("GET_INFO");
	info->argsz = sizeof(*info);
	check_ret("GET_INFO (no room for caps)", dt_vfio_ioctl(io, VFIO_IOMMU_GET_INFO, info), 0);
	if (info->argsz <= sizeof(*info))
		mismatch("GET_INFO: argsz %u not raised to the size needed", info->argsz);
	check_u64("GET_INFO cap_offset without room", info->cap_offset, 0);
	if (info->argsz > sizeof(buf))
		mismatch("GET_INFO needs %u bytes", info->argsz);
	check_ret("GET_INFO", dt_vfio_ioctl(io, VFIO_IOMMU_GET_INFO, info), 0);
	check_u64("GET_INFO flags", info->flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
	check_u64("GET_INFO 4K in pgsizes", info->iova_pgsizes & PG, PG);
	for (uint32_t off = info->cap_offset; off; off = h->next) {
		if (off + sizeof(*h) > info->argsz)
			mismatch("GET_INFO: cap at %u beyond argsz %u", off, info->argsz);
		h = (void *)((char *)buf + off);
		if (h->id == VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION) {
			struct vfio_iommu_type1_info_cap_migration *mig = (void *)h;

			found = true;
			check_u64("migration cap version", h->version, 1);
			check_u64("migration cap flags", mig->flags, 0);
			check_u64("migration cap pgsize_bitmap", mig->pgsize_bitmap, PG);
			if (mig->max_dirty_bitmap_size < (256ull << 20))
				mismatch("max_dirty_bitmap_size %llu < 256 MiB",
					 (unsigned long long)mig->max_dirty_bitmap_size);
		}
	}
	if (!found)
		mismatch("GET_INFO: no migration capability");
}

/* ---- driver ------------------------------------------------------------------------- */

static void run_model(void **state)
{
	(void)state;
	time_t t0 = time(NULL);
	uint64_t counts[16] = {0};

	arena = mmap(NULL, APG * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(arena != MAP_FAILED);
	shadow = calloc(APG, PG);
	assert_non_null(shadow);
	for (uint64_t i = 0; i < APG * PG; i++)
		arena[i] = shadow[i] = (uint8_t)rnd();
	memset(page_map, -1, sizeof(page_map));
	io = dt_iommu_new();
	assert_non_null(io);
	check_info();

	for (op_index = 0; op_index < nops; op_index++) {
		unsigned w = below(100);

		snprintf(op_desc, sizeof(op_desc), "(skipped: nothing to act on)");
		snprintf(history[op_index % HISTORY], sizeof(history[0]), "#%" PRIu64 " %s",
			 op_index, op_desc);
		if (w < 10)
			op_map(), counts[0]++;
		else if (w < 16)
			op_unmap(), counts[1]++;
		else if (w < 19)
			op_attach(), counts[2]++;
		else if (w < 21)
			op_detach(), counts[3]++;
		else if (w < 32)
			op_pin(), counts[4]++;
		else if (w < 41)
			op_unpin(), counts[5]++;
		else if (w < 52)
			op_dma_rw(), counts[6]++;
		else if (w < 61)
			op_dma_log(), counts[7]++;
		else if (w < 65)
			op_tracking(), counts[8]++;
		else if (w < 73)
			op_get_bitmap(), counts[9]++;
		else if (w < 84)
			op_report(false), counts[10]++;
		else if (w < 87)
			op_report(true), counts[11]++;
		else if (w < 91)
			op_merge_back(), counts[12]++;
		else if (w < 93)
			op_merge_back_bitmap(), counts[13]++;
		else if (w < 96 && !tracking)
			op_tracking(), counts[8]++;
		else
			op_dma_log(), counts[7]++;
		check_stats();
		if (op_index % 997 == 0)
			check_memory();
	}
	check_memory();
	dt_iommu_free(io);
	munmap(arena, APG * PG);
	free(shadow);
	printf("model: %" PRIu64 " ops in %lds: map %" PRIu64 " unmap %" PRIu64 " attach %" PRIu64
	       " detach %" PRIu64 " pin %" PRIu64 " unpin %" PRIu64 " dma_rw %" PRIu64
	       " dma_log %" PRIu64 " start/stop %" PRIu64 " get_bitmap %" PRIu64 " report %" PRIu64
	       " pinned %" PRIu64 " merge_back %" PRIu64 "+%" PRIu64 "\n",
	       nops, (long)(time(NULL) - t0), counts[0], counts[1], counts[2], counts[3], counts[4],
	       counts[5], counts[6], counts[7], counts[8], counts[9], counts[10], counts[11],
	       counts[12], counts[13]);
	printf("model: %" PRIu64 " rejected calls; %" PRIu64 " native reports checked (%" PRIu64
	       " with whole-mapping pages, %" PRIu64 " pinned, %" PRIu64 " unpinned, %" PRIu64
	       " requeued), %" PRIu64 " stopped by the run callback, %" PRIu64
	       " unmaps with bitmap, %" PRIu64 " unmap callbacks, %" PRIu64 " promotions, %" PRIu64
	       " dma_rw across mappings\n",
	       cover.errors, cover.reports, cover.whole, cover.pinned, cover.unpinned,
	       cover.requeued, cover.run_stops, cover.unmap_bitmaps, cover.callbacks,
	       cover.promotions, cover.spanning_rw);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(run_model)};

	seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	if (getenv("DT_TEST_SEED"))
		seed = strtoull(getenv("DT_TEST_SEED"), NULL, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--ops") && i + 1 < argc)
			nops = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--break") && i + 1 < argc)
			break_rule = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--trace"))
			trace = true;
		else {
			fprintf(stderr,
				"usage: %s [--seed N] [--ops N] [--trace] [--break RULE]\n"
				"  --break flips one rule of the model (1 unpin once, 2 promotion,\n"
				"  3 reads dirty, 4 START clears, 5 NO_CLEAR, 6 SKIP_PINNED, 7 logs\n"
				"  while stopped, 8 passthrough detach): the test must then fail.\n",
				argv[0]);
			return 2;
		}
	}
	rng_s = seed;
	printf("seed=%" PRIu64 " ops=%" PRIu64 "%s\n", seed, nops,
	       break_rule ? " (model deliberately broken)" : "");
	fflush(stdout);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
