/* SPDX-License-Identifier: MIT */
/*
 * migrate/dest.c - the receiving side of a migration.
 *
 * Reads HELLO (answers with the features it accepts), LAYOUT (checked against the caller's
 * memory, or mapped here), then rounds of PAGES, the DEVICE states and END. Every record is
 * validated by the wire decoder (bounds, checksums) before anything is applied. At END the
 * destination checks the page count, that every device state arrived, and the digest of its
 * whole memory against the source's; only then does it ACK. Any failure is answered with
 * an ERROR record (best effort) so the source can tell the user why.
 *
 * The digest is kept as pages are applied (struct mig_digest): each page written updates its
 * term from the bytes just copied (or, for a zero page, from the precomputed zero hash), so
 * END reads no memory except pages the stream never sent. Invariant: every write into the
 * memory goes through apply_pages(), which updates the digest of every 4 KiB page it touched.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <dirtytrack/migrate.h>

#include "core/alloc.h"
#include "core/log.h"
#include "migrate/memory.h"
#include "migrate/wire.h"
#include "sys/sys.h"

struct mdst {
	const struct dt_migrate_dest_opts *o;
	struct dt_migrate_dest_result *res;
	struct wire_reader r;
	struct wire_writer w;
	struct mig_memory mem;
	struct mig_digest digest;
	struct wire_layout layout;
	uint32_t page_size;
	bool *loaded;			  /* per device of opts */
	char why[WIRE_MAX_ERROR_MSG + 1]; /* the reason of a refusal, sent in ERROR */
};

/* Refuse the stream: log why, and keep the reason for the ERROR record to the source. */
static int __attribute__((format(printf, 3, 4)))
refuse(struct mdst *d, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->why, sizeof(d->why), fmt, ap);
	va_end(ap);
	log_err("dt_migrate_dest: %s", d->why);
	return err;
}

/* Map anonymous memory for the stream's layout; the result owns it. */
static int map_layout(struct mdst *d, const struct wire_layout *l)
{
	struct dt_region *regs = xcalloc(l->count, sizeof(*regs));
	int ret = 0;

	if (!regs)
		return -ENOMEM;
	d->res->regions = regs;
	for (uint32_t i = 0; i < l->count && !ret; i++) {
		regs[i].addr = l->regions[i].addr;
		regs[i].size = l->regions[i].size;
		regs[i].host = sys_mmap(NULL, l->regions[i].size, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0, &ret);
		if (ret)
			break;
		d->res->nregions = i + 1;
		/* The whole memory is about to be written: fault it in now, in one call per region
		 * (a fault per page costs 20x more, and more still in a nested guest). Advice
		 * only: on a kernel without MADV_POPULATE_WRITE the copies fault the pages in. */
		sys_madvise(regs[i].host, regs[i].size, MADV_POPULATE_WRITE);
	}
	if (ret)
		return refuse(d, ret, "cannot map the memory of the layout (%d)", ret);
	return mig_memory_init(&d->mem, regs, l->count, 0, 0, "dt_migrate_dest");
}

static int take_layout(struct mdst *d, const struct wire_layout *l)
{
	int ret;

	if (!d->o->regions)
		ret = map_layout(d, l);
	else
		ret = mig_memory_init(&d->mem, d->o->regions, d->o->nregions, 0, 0,
				      "dt_migrate_dest");
	if (ret)
		return ret;
	if (d->mem.count != l->count)
		return refuse(d, -EPROTO, "the stream has %u regions, we have %u", l->count,
			      d->mem.count);
	for (uint32_t i = 0; i < l->count; i++)
		if (d->mem.regions[i].addr != l->regions[i].addr ||
		    d->mem.regions[i].size != l->regions[i].size)
			return refuse(
				d, -EPROTO,
				"stream region [0x%llx, +0x%llx) is not ours [0x%llx, +0x%llx)",
				(unsigned long long)l->regions[i].addr,
				(unsigned long long)l->regions[i].size,
				(unsigned long long)d->mem.regions[i].addr,
				(unsigned long long)d->mem.regions[i].size);
	/* wire_layout_locate() searches the layout: keep our sorted copy of it. */
	d->layout.regions = d->mem.regions;
	d->layout.count = d->mem.count;
	return mig_digest_init(&d->digest, &d->mem);
}

/*
 * The digest after bytes [off, off + len) of region reg were written: data holds them (NULL:
 * zeros), or is not usable because the written range does not cover whole digest pages (a
 * stream page size below 4 KiB); such pages are hashed from memory, which holds their bytes.
 */
static void digest_written(struct mdst *d, uint32_t reg, uint64_t off, uint64_t len,
			   const uint8_t *data)
{
	const char *host = d->mem.host[reg];
	uint64_t first = off / WIRE_DIGEST_PAGE, end = (off + len - 1) / WIRE_DIGEST_PAGE + 1;

	for (uint64_t p = first; p < end; p++) {
		uint64_t at = p * WIRE_DIGEST_PAGE;

		if (at < off || at + WIRE_DIGEST_PAGE > off + len)
			mig_digest_apply(&d->digest, reg, p, host + at);
		else
			mig_digest_apply(&d->digest, reg, p, data ? data + (at - off) : NULL);
	}
}

/* Copy a run's data and keep the digest: page by page when pages are at least 4 KiB, so each
 * page is hashed right after its copy, from the cache. */
static void apply_data(struct mdst *d, uint32_t reg, uint64_t off, char *dst, const uint8_t *data,
		       uint64_t len)
{
	if (d->page_size < WIRE_DIGEST_PAGE) {
		memcpy(dst, data, len);
		digest_written(d, reg, off, len, data);
		return;
	}
	for (uint64_t o = 0; o < len; o += WIRE_DIGEST_PAGE) {
		memcpy(dst + o, data + o, WIRE_DIGEST_PAGE);
		mig_digest_apply(&d->digest, reg, (off + o) / WIRE_DIGEST_PAGE, data + o);
	}
}

/* Apply pages [first, first + count) of one run, given its data (NULL: zero pages), in
 * pieces that each lie in one region: a run may cross from a region into the next when they
 * are contiguous (the source's batches join adjacent runs, ZERO ones whatever their host). */
static int apply_run(struct mdst *d, uint64_t first, uint64_t count, const uint8_t *data)
{
	const uint64_t run_first = first, run_count = count;

	while (count) {
		uint64_t off, n, len;
		uint32_t reg;
		char *dst;

		if (wire_layout_locate(&d->layout, d->page_size, first, 1, &reg, &off))
			return refuse(d, -EPROTO, "pages [%llu, +%llu) lie outside the layout",
				      (unsigned long long)run_first, (unsigned long long)run_count);
		n = (d->layout.regions[reg].size - off) / d->page_size;
		n = n < count ? n : count;
		len = n * d->page_size;
		dst = (char *)d->mem.host[reg] + off;
		if (data) {
			apply_data(d, reg, off, dst, data, len);
			data += len;
		} else {
			/* Test before writing: never-touched memory stays unpopulated. */
			for (uint64_t o = 0; o < len; o += d->page_size)
				if (!wire_page_is_zero(dst + o, d->page_size))
					memset(dst + o, 0, d->page_size);
			digest_written(d, reg, off, len, NULL);
		}
		first += n;
		count -= n;
	}
	return 0;
}

static int apply_pages(struct mdst *d, const struct wire_pages *p)
{
	const uint8_t *data = p->data;

	for (uint32_t i = 0; i < p->nruns; i++) {
		const struct wire_run *run = &p->runs[i];
		bool zero = run->flags & WIRE_RUN_ZERO;
		int ret = apply_run(d, run->first, run->count, zero ? NULL : data);

		if (ret)
			return ret;
		if (!zero)
			data += (uint64_t)run->count * d->page_size;
	}
	d->res->pages_received += p->pages;
	d->res->zero_pages += p->zero_pages;
	return 0;
}

static int load_device(struct mdst *d, const struct wire_device *dev)
{
	for (unsigned i = 0; i < d->o->ndevices; i++) {
		const struct dt_migrate_device *md = &d->o->devices[i];
		int ret;

		if (strcmp(md->name, dev->name))
			continue;
		if (d->loaded[i])
			return refuse(d, -EPROTO, "device %s sent twice", dev->name);
		ret = md->load(md->opaque, dev->state, dev->state_len);
		if (ret)
			return refuse(d, ret < 0 ? ret : -ECANCELED,
				      "device %s refused its state (%d)", dev->name, ret);
		d->loaded[i] = true;
		d->res->ndevices_loaded++;
		return 0;
	}
	return refuse(d, -ENOENT, "state for device %s, which we do not have", dev->name);
}

static int finish(struct mdst *d, const struct wire_end *end)
{
	uint64_t digest;
	int ret = mig_digest_final(&d->digest, &digest);

	if (ret)
		return ret;
	d->res->digest = digest;
	if (end->pages != d->res->pages_received)
		return refuse(d, -EPROTO, "END counts %llu pages, we got %llu",
			      (unsigned long long)end->pages,
			      (unsigned long long)d->res->pages_received);
	if (end->ndevices != d->res->ndevices_loaded)
		return refuse(d, -EPROTO, "END counts %u device states, we got %u", end->ndevices,
			      d->res->ndevices_loaded);
	if (end->digest != digest)
		return refuse(d, -EPROTO, "memory digest %016llx differs from the source's %016llx",
			      (unsigned long long)digest, (unsigned long long)end->digest);
	return wire_send_ack(&d->w, 0, digest);
}

/* After HELLO and LAYOUT: records until END. */
static int receive(struct mdst *d)
{
	struct wire_msg m;
	int ret;

	for (;;) {
		ret = wire_read(&d->r, &m);
		if (ret)
			return ret;
		switch (m.type) {
		case WIRE_ROUND:
			if (m.round.round + 1 > d->res->rounds)
				d->res->rounds = m.round.round + 1;
			break;
		case WIRE_PAGES:
			ret = apply_pages(d, &m.pages);
			break;
		case WIRE_DEVICE:
			ret = load_device(d, &m.device);
			break;
		case WIRE_PING:
			ret = wire_send_pong(&d->w, m.ping);
			break;
		case WIRE_END:
			return finish(d, &m.end);
		case WIRE_ERROR:
			log_err("dt_migrate_dest: the source ended the migration: %s (%d)",
				m.error.msg, m.error.err);
			return -ECANCELED;
		default:
			return refuse(d, -EPROTO, "unexpected %s record", wire_type_name(m.type));
		}
		if (ret)
			return ret;
	}
}

static int handshake(struct mdst *d)
{
	struct wire_msg m;
	uint32_t features;
	int ret = wire_read(&d->r, &m);

	if (ret)
		return ret;
	if (m.type != WIRE_HELLO)
		return refuse(d, -EPROTO, "the stream starts with %s, not HELLO",
			      wire_type_name(m.type));
	features = m.hello.features & WIRE_F_ALL;
	d->page_size = m.hello.page_size;
	wire_writer_set_features(&d->w, features);
	ret = wire_send_hello(&d->w, d->page_size);
	if (ret)
		return ret;
	wire_reader_set_features(&d->r, features);
	/* PINGs (the source timing the round trip) until the LAYOUT. */
	while (!(ret = wire_read(&d->r, &m)) && m.type == WIRE_PING)
		if ((ret = wire_send_pong(&d->w, m.ping)))
			return ret;
	if (ret)
		return ret;
	if (m.type != WIRE_LAYOUT)
		return refuse(d, -EPROTO, "expected LAYOUT, got %s", wire_type_name(m.type));
	return take_layout(d, &m.layout);
}

static int check_opts(const struct dt_migrate_dest_opts *o)
{
	if (!o || o->size < sizeof(*o) || !o->transport)
		return log_fail(-EINVAL, "dt_migrate_dest: size and transport are required");
	if ((o->ndevices && !o->devices) || (o->nregions && !o->regions) ||
	    (o->regions && !o->nregions))
		return log_fail(-EINVAL, "dt_migrate_dest: a count without its array");
	for (unsigned i = 0; i < o->ndevices; i++)
		if (!o->devices[i].name || !o->devices[i].load)
			return log_fail(-EINVAL, "dt_migrate_dest: device %u needs a name and load",
					i);
	return 0;
}

int dt_migrate_dest(const struct dt_migrate_dest_opts *opts, struct dt_migrate_dest_result *res)
{
	struct dt_migrate_dest_result dummy;
	struct mdst d = {.o = opts, .res = res ? res : &dummy};
	int ret = check_opts(opts);

	memset(d.res, 0, sizeof(*d.res));
	if (ret)
		return ret;
	d.loaded = xcalloc(opts->ndevices + 1, sizeof(bool));
	ret = d.loaded ? wire_reader_init(&d.r, opts->transport, 0) : -ENOMEM;
	if (!ret)
		ret = wire_writer_init(&d.w, opts->transport, WIRE_F_ALL);
	if (!ret)
		ret = handshake(&d);
	if (!ret)
		ret = receive(&d);
	if (ret && ret != -EPIPE && ret != -ECONNRESET && ret != -ECANCELED)
		wire_send_error(&d.w, ret,
				d.why[0] ? d.why : "malformed record (see the destination's log)");
	d.res->bytes_received = d.r.bytes;
	wire_reader_fini(&d.r);
	wire_writer_fini(&d.w);
	mig_digest_fini(&d.digest);
	mig_memory_fini(&d.mem);
	xfree(d.loaded);
	if (!res) /* nobody to hand mapped memory to */
		dt_migrate_dest_result_release(&dummy);
	return ret;
}

void dt_migrate_dest_result_release(struct dt_migrate_dest_result *res)
{
	if (!res || !res->regions)
		return;
	for (unsigned i = 0; i < res->nregions; i++)
		sys_munmap(res->regions[i].host, res->regions[i].size);
	xfree(res->regions);
	res->regions = NULL;
	res->nregions = 0;
}
