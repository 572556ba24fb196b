/* SPDX-License-Identifier: MIT */
/*
 * migrate/wire_reader.c - records from a transport (or from memory): framing, the limit on
 * a record's size checked before its payload is read, validation by wire_decode(); and the
 * digest of the whole memory that END and ACK carry (a sum of per-page terms, see wire.h).
 *
 * Invariants: a payload is read only after its header passed the type's bound and the
 * reader's max_payload, so a hostile length costs no allocation past that limit. The
 * reader's buffer and scratch are reused: a decoded view lives until the next wire_read().
 * A HELLO read sets the page size LAYOUT and PAGES are decoded with.
 */
#include "migrate/wire.h"

#include <errno.h>
#include <pthread.h>
#include <xxhash.h>

#include "core/alloc.h"

/* ---- the reader ---------------------------------------------------------------------------- */

int wire_reader_init(struct wire_reader *r, struct dt_transport *t, uint32_t max_payload)
{
	memset(r, 0, sizeof(*r));
	if (!t)
		return -EINVAL;
	r->t = t;
	r->max_payload = max_payload ? max_payload : WIRE_MAX_PAYLOAD;
	return wire_scratch_init(&r->scratch);
}

int wire_reader_init_mem(struct wire_reader *r, const void *src, size_t len, uint32_t max_payload)
{
	memset(r, 0, sizeof(*r));
	r->src = src;
	r->src_len = len;
	r->max_payload = max_payload ? max_payload : WIRE_MAX_PAYLOAD;
	return wire_scratch_init(&r->scratch);
}

void wire_reader_fini(struct wire_reader *r)
{
	wire_scratch_fini(&r->scratch);
	xfree(r->buf);
	memset(r, 0, sizeof(*r));
}

void wire_reader_set_features(struct wire_reader *r, uint32_t features)
{
	r->scratch.features = features & WIRE_F_ALL;
}

/* Make the payload buffer hold need bytes (exactly, so ASan sees any overread). */
static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
	uint8_t *p;

	if (*cap >= need)
		return 0;
	p = xzalloc(need ? need : 1);
	if (!p)
		return -ENOMEM;
	xfree(*buf);
	*buf = p;
	*cap = need;
	return 0;
}

static int pull(struct wire_reader *r, void *dst, size_t len, bool record_start)
{
	if (r->t)
		return dt_transport_recv(r->t, dst, len);
	if (r->src_len - r->src_pos < len) {
		bool clean = record_start && r->src_pos == r->src_len;

		r->src_pos = r->src_len;
		return clean ? -ENODATA : -ECONNRESET;
	}
	memcpy(dst, r->src + r->src_pos, len);
	r->src_pos += len;
	return 0;
}

int wire_read(struct wire_reader *r, struct wire_msg *m)
{
	uint8_t hdr[WIRE_HDR_LEN];
	uint16_t type, flags;
	uint32_t len;
	int ret;

	memset(m, 0, sizeof(*m));
	ret = pull(r, hdr, sizeof(hdr), true);
	if (ret < 0)
		return ret;
	ret = wire_decode_header(hdr, r->max_payload, &type, &flags, &len);
	if (ret)
		return ret;
	ret = reserve(&r->buf, &r->cap, len);
	if (ret)
		return ret;
	if (len) {
		ret = pull(r, r->buf, len, false);
		if (ret < 0)
			return ret;
	}
	r->bytes += WIRE_HDR_LEN + len;
	r->records++;
	ret = wire_decode(type, flags, r->buf, len, m, &r->scratch);
	if (!ret && type == WIRE_HELLO)
		r->scratch.page_size = m->hello.page_size;
	return ret;
}

/* ---- the memory digest --------------------------------------------------------------------- */

/*
 * How many threads wire_digest_regions() uses: DIGEST_THREADS, but no more than one per
 * DIGEST_MIN_SHARE bytes (below that, starting a thread costs more than it saves).
 *
 * Two, though the machine has two cores and the source's digest runs beside its final send
 * (and, in bench_migrate, beside the destination too): measured in release on the 2-core
 * machine, 1 GiB, one digest thread against two (bench_migrate medians), the source's digest
 * at switchover took 180 against 107 ms idle (--no-sweep), 184 against 149 ms with a 131 MiB
 * final send at full speed beside it (--bw-mbps 1000 --rate 0.6), 179 against 104 ms with a
 * paced one (--rate 0.9), and the downtime never grew. XXH3 here runs at ~6 GB/s per core,
 * about half of what memcpy gets from memory, so a second thread still finds bandwidth; the
 * send mostly waits on the socket. DIGEST_THREADS_MAX bounds what a caller may ask for.
 */
#define DIGEST_THREADS	   2u
#define DIGEST_MIN_SHARE   (8ull << 20)
#define DIGEST_THREADS_MAX 8u

uint64_t wire_digest_page_hash(const void *p)
{
	return XXH3_64bits(p, WIRE_DIGEST_PAGE);
}

uint64_t wire_digest_pages(uint64_t page, const void *host, uint64_t npages)
{
	const uint8_t *p = host;
	uint64_t sum = 0;

	for (uint64_t i = 0; i < npages; i++, p += WIRE_DIGEST_PAGE)
		sum += wire_digest_term(page + i, XXH3_64bits(p, WIRE_DIGEST_PAGE));
	return sum;
}

/* One thread's share: pages [from, to) of the regions counted in layout order. */
struct digest_share {
	const struct wire_region *regions;
	void *const *host;
	uint32_t count;
	uint64_t from, to;
	uint64_t sum;
};

static void *digest_share_main(void *arg)
{
	struct digest_share *s = arg;
	uint64_t skip = s->from, left = s->to - s->from;

	for (uint32_t i = 0; i < s->count && left; i++) {
		uint64_t n = s->regions[i].size / WIRE_DIGEST_PAGE, k;

		if (skip >= n) {
			skip -= n;
			continue;
		}
		k = n - skip < left ? n - skip : left;
		s->sum +=
			wire_digest_pages(s->regions[i].addr / WIRE_DIGEST_PAGE + skip,
					  (const uint8_t *)s->host[i] + skip * WIRE_DIGEST_PAGE, k);
		left -= k;
		skip = 0;
	}
	return NULL;
}

int wire_digest_regions_threads(const struct wire_region *regions, void *const *host,
				uint32_t count, unsigned nthreads, uint64_t *digest)
{
	struct digest_share share[DIGEST_THREADS_MAX];
	pthread_t thread[DIGEST_THREADS_MAX];
	bool started[DIGEST_THREADS_MAX] = {false};
	uint64_t pages = 0;

	for (uint32_t i = 0; i < count; i++) {
		if (regions[i].size % WIRE_DIGEST_PAGE)
			return -EINVAL;
		pages += regions[i].size / WIRE_DIGEST_PAGE;
	}
	if (nthreads > DIGEST_THREADS_MAX)
		nthreads = DIGEST_THREADS_MAX;
	if (nthreads > pages)
		nthreads = (unsigned)pages;
	if (!nthreads)
		nthreads = 1;
	for (unsigned t = 0; t < nthreads; t++)
		share[t] = (struct digest_share){
			regions, host, count, pages * t / nthreads, pages * (t + 1) / nthreads, 0};
	for (unsigned t = 1; t < nthreads; t++)
		started[t] = !pthread_create(&thread[t], NULL, digest_share_main, &share[t]);
	digest_share_main(&share[0]);
	*digest = share[0].sum;
	for (unsigned t = 1; t < nthreads; t++) {
		if (started[t])
			pthread_join(thread[t], NULL);
		else
			digest_share_main(&share[t]);
		*digest += share[t].sum;
	}
	return 0;
}

unsigned wire_digest_nthreads(uint64_t bytes)
{
	uint64_t n = bytes / DIGEST_MIN_SHARE;

	return n < 1 ? 1 : n > DIGEST_THREADS ? DIGEST_THREADS : (unsigned)n;
}

int wire_digest_regions(const struct wire_region *regions, void *const *host, uint32_t count,
			uint64_t *digest)
{
	uint64_t bytes = 0;

	for (uint32_t i = 0; i < count; i++)
		bytes += regions[i].size;
	return wire_digest_regions_threads(regions, host, count, wire_digest_nthreads(bytes),
					   digest);
}
