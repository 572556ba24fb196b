/* SPDX-License-Identifier: MIT */
/*
 * migrate/wire_writer.c - records onto a transport (or into memory): every record type,
 * page batches checksummed, optionally compressed and sent with one sendv, and the batch
 * builder that turns page ranges into zero / data runs.
 *
 * Invariants: a record is emitted whole or the writer returns an error (the stream is then
 * broken: the caller stops using it). A PAGES checksum covers exactly the bytes that are
 * sent: while memory may change (pre-copy) the data is copied into a staging buffer first
 * and checksummed, compressed and sent from the copy; only memory declared stable is sent
 * in place. Buffers grow to the largest record seen and are reused; nothing is global.
 * A batch holds at most WIRE_MAX_RUNS runs and WIRE_MAX_BATCH_DATA bytes of data, and is
 * flushed before adding a page would break either bound.
 */
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include "migrate/wire.h"

#include <errno.h>
#include <xxhash.h>
#include <zstd.h>

#include "core/alloc.h"
#include "core/log.h"

#define IOV_CHUNK 512 /* iovecs per sendv, well under IOV_MAX */

/* Make *buf hold need bytes; the contents are not kept. */
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

/* ---- the writer ---------------------------------------------------------------------------- */

int wire_writer_init(struct wire_writer *w, struct dt_transport *t, uint32_t features)
{
	memset(w, 0, sizeof(*w));
	if (!t)
		return -EINVAL;
	w->t = t;
	w->features = features & WIRE_F_ALL;
	w->zstd_level = 1;
	return 0;
}

int wire_writer_init_mem(struct wire_writer *w, uint32_t features)
{
	memset(w, 0, sizeof(*w));
	w->features = features & WIRE_F_ALL;
	w->zstd_level = 1;
	return 0;
}

void wire_writer_fini(struct wire_writer *w)
{
	ZSTD_freeCCtx(w->cctx);
	xfree(w->zbuf);
	xfree(w->stage);
	xfree(w->head);
	xfree(w->iov);
	xfree(w->mem);
	memset(w, 0, sizeof(*w));
}

void wire_writer_set_features(struct wire_writer *w, uint32_t features)
{
	w->features = features & WIRE_F_ALL;
}

void wire_writer_set_page_size(struct wire_writer *w, uint32_t page_size)
{
	w->page_size = page_size;
}

void wire_writer_set_memory_stable(struct wire_writer *w, bool stable)
{
	w->memory_stable = stable;
}

static int reserve_iov(struct wire_writer *w, size_t n)
{
	struct iovec *v;

	if (w->iov_cap >= n)
		return 0;
	v = xcalloc(n, sizeof(*v));
	if (!v)
		return -ENOMEM;
	xfree(w->iov);
	w->iov = v;
	w->iov_cap = n;
	return 0;
}

/* Send one whole record. */
static int emit(struct wire_writer *w, const struct iovec *iov, int n)
{
	uint64_t total = 0;
	int ret;

	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	if (!w->t) {
		if (w->mem_cap - w->mem_len < total) {
			size_t cap = w->mem_cap * 2 > w->mem_len + total ? w->mem_cap * 2
									 : w->mem_len + total;
			uint8_t *p = xrealloc_array(w->mem, cap, 1);

			if (!p)
				return -ENOMEM;
			w->mem = p;
			w->mem_cap = cap;
		}
		for (int i = 0; i < n; i++) {
			if (iov[i].iov_len)
				memcpy(w->mem + w->mem_len, iov[i].iov_base, iov[i].iov_len);
			w->mem_len += iov[i].iov_len;
		}
	} else {
		for (int i = 0; i < n; i += IOV_CHUNK) {
			ret = dt_transport_sendv(w->t, iov + i,
						 n - i < IOV_CHUNK ? n - i : IOV_CHUNK);
			if (ret < 0)
				return ret;
		}
	}
	w->bytes += total;
	w->records++;
	return 0;
}

static int send_msg(struct wire_writer *w, const struct wire_msg *m)
{
	uint64_t need = wire_encoded_len(m, w->page_size);
	struct iovec iov;
	int64_t len;
	int ret;

	if (!need)
		return -EINVAL;
	ret = reserve(&w->head, &w->head_cap, need);
	if (ret)
		return ret;
	len = wire_encode(m, w->page_size, w->head, w->head_cap);
	if (len < 0)
		return (int)len;
	iov = (struct iovec){w->head, (size_t)len};
	return emit(w, &iov, 1);
}

int wire_send_hello(struct wire_writer *w, uint32_t page_size)
{
	struct wire_msg m = {.type = WIRE_HELLO};

	if (!wire_page_size_valid(page_size))
		return -EINVAL;
	w->page_size = page_size;
	m.hello = (struct wire_hello){WIRE_VERSION, w->features, page_size};
	return send_msg(w, &m);
}

int wire_send_layout(struct wire_writer *w, const struct wire_region *regions, uint32_t count)
{
	struct wire_msg m = {.type = WIRE_LAYOUT, .layout = {regions, count}};
	uint64_t ps = w->page_size;

	if (!ps)
		return -EINVAL;
	for (uint32_t i = 0; i < count; i++) {
		const struct wire_region *r = &regions[i];

		if (!r->size || r->addr % ps || r->size % ps ||
		    r->size - 1 > UINT64_MAX - r->addr ||
		    (i && r->addr <= regions[i - 1].addr + (regions[i - 1].size - 1)))
			return -EINVAL;
	}
	return send_msg(w, &m);
}

int wire_send_round(struct wire_writer *w, uint32_t round, uint64_t pages)
{
	struct wire_msg m = {.type = WIRE_ROUND, .round = {round, pages}};

	return send_msg(w, &m);
}

int wire_send_end(struct wire_writer *w, uint64_t pages, uint64_t digest, uint32_t ndevices)
{
	struct wire_msg m = {.type = WIRE_END, .end = {pages, digest, ndevices}};

	return send_msg(w, &m);
}

int wire_send_ack(struct wire_writer *w, int32_t status, uint64_t digest)
{
	struct wire_msg m = {.type = WIRE_ACK, .ack = {status, digest}};

	if (status > 0 || status < -4095)
		return -EINVAL;
	return send_msg(w, &m);
}

int wire_send_ping(struct wire_writer *w, uint64_t value)
{
	struct wire_msg m = {.type = WIRE_PING, .ping = value};

	return send_msg(w, &m);
}

int wire_send_pong(struct wire_writer *w, uint64_t value)
{
	struct wire_msg m = {.type = WIRE_PONG, .ping = value};

	return send_msg(w, &m);
}

int wire_send_error(struct wire_writer *w, int32_t err, const char *msg)
{
	char text[WIRE_MAX_ERROR_MSG + 1];
	struct wire_msg m = {.type = WIRE_ERROR, .error = {err, text}};

	if (err >= 0 || err < -4095)
		return -EINVAL;
	text[0] = '\0';
	if (msg) {
		strncpy(text, msg, WIRE_MAX_ERROR_MSG);
		text[WIRE_MAX_ERROR_MSG] = '\0';
	}
	return send_msg(w, &m);
}

/* Compress the n pieces (together len bytes) into w->zbuf as one frame. Returns the
 * compressed length, or 0 if compression failed or would not shrink the data. */
static size_t compress_pieces(struct wire_writer *w, const struct iovec *pieces, int n, size_t len)
{
	ZSTD_outBuffer out;
	size_t r;

	if (!w->cctx) {
		w->cctx = ZSTD_createCCtx();
		if (!w->cctx)
			return 0;
	}
	if (reserve(&w->zbuf, &w->zcap, ZSTD_compressBound(len)))
		return 0;
	ZSTD_CCtx_reset(w->cctx, ZSTD_reset_session_only);
	ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, w->zstd_level);
	ZSTD_CCtx_setPledgedSrcSize(w->cctx, len);
	out = (ZSTD_outBuffer){w->zbuf, w->zcap, 0};
	for (int i = 0; i < n; i++) {
		ZSTD_EndDirective mode = i == n - 1 ? ZSTD_e_end : ZSTD_e_continue;
		ZSTD_inBuffer in = {pieces[i].iov_base, pieces[i].iov_len, 0};

		do {
			size_t before = out.pos + in.pos;

			r = ZSTD_compressStream2(w->cctx, &out, &in, mode);
			if (ZSTD_isError(r))
				return 0;
			if (r && out.pos + in.pos == before)
				return 0; /* no progress: out of room */
		} while (mode == ZSTD_e_end ? r != 0 : in.pos < in.size);
	}
	return out.pos < len ? out.pos : 0;
}

static uint64_t checksum_pieces(const void *head, size_t head_len, const struct iovec *pieces,
				int n)
{
	XXH3_state_t st;

	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, head, head_len);
	for (int i = 0; i < n; i++)
		XXH3_64bits_update(&st, pieces[i].iov_base, pieces[i].iov_len);
	return XXH3_64bits_digest(&st);
}

int wire_send_device(struct wire_writer *w, const char *name, const void *state, uint32_t len)
{
	size_t n = name ? strnlen(name, WIRE_MAX_DEVICE_NAME + 1) : 0;
	struct iovec iov[2];
	uint16_t flags = 0;
	uint64_t sum = 0;
	size_t head_len = WIRE_HDR_LEN + WIRE_DEVICE_FIXED + n, clen = 0;
	uint8_t *p;
	int ret;

	if (!n || n > WIRE_MAX_DEVICE_NAME || len > WIRE_MAX_DEVICE_STATE || (len && !state))
		return -EINVAL;
	ret = reserve(&w->head, &w->head_cap, head_len);
	if (ret)
		return ret;
	p = w->head + WIRE_HDR_LEN;
	memcpy(p + WIRE_DEVICE_FIXED, name, n);
	iov[0] = (struct iovec){w->head, head_len};
	iov[1] = (struct iovec){(void *)state, len};
	if (w->features & WIRE_F_XXH3) {
		flags |= WIRE_RF_XXH3;
		sum = checksum_pieces(name, n, &iov[1], 1);
	}
	if ((w->features & WIRE_F_ZSTD) && len)
		clen = compress_pieces(w, &iov[1], 1, len);
	if (clen) {
		flags |= WIRE_RF_ZSTD;
		iov[1] = (struct iovec){w->zbuf, clen};
	}
	wire_encode_header(w->head, WIRE_DEVICE, flags,
			   (uint32_t)(WIRE_DEVICE_FIXED + n + iov[1].iov_len));
	wire_put_le32(p, (uint32_t)n);
	wire_put_le32(p + 4, len);
	wire_put_le64(p + 8, sum);
	return emit(w, iov, 2);
}

int wire_send_pages(struct wire_writer *w, const struct wire_run *runs, uint32_t nruns,
		    const void *const *run_data, uint64_t *wire_bytes)
{
	size_t table = (size_t)nruns * WIRE_RUN_LEN, head_len, clen = 0;
	struct iovec *pieces;
	uint32_t data_len;
	uint16_t flags = 0;
	uint64_t sum = 0;
	int n = 0, ret;
	uint8_t *p;

	if (wire_runs_data_len(runs, nruns, w->page_size, &data_len))
		return -EINVAL;
	head_len = WIRE_HDR_LEN + WIRE_PAGES_FIXED + table;
	ret = reserve(&w->head, &w->head_cap, head_len);
	if (!ret)
		ret = reserve_iov(w, (size_t)nruns + 1);
	if (ret)
		return ret;
	pieces = w->iov + 1;
	for (uint32_t i = 0; i < nruns; i++) {
		size_t len = (size_t)runs[i].count * w->page_size;
		const uint8_t *src = run_data[i];

		if (runs[i].flags & WIRE_RUN_ZERO)
			continue;
		if (!src)
			return -EINVAL;
		if (n && (const uint8_t *)pieces[n - 1].iov_base + pieces[n - 1].iov_len == src)
			pieces[n - 1].iov_len += len; /* adjacent in memory: one piece */
		else
			pieces[n++] = (struct iovec){(void *)src, len};
	}
	if (!w->memory_stable && n) {
		size_t off = 0;

		ret = reserve(&w->stage, &w->stage_cap, data_len);
		if (ret)
			return ret;
		for (int i = 0; i < n; i++) {
			memcpy(w->stage + off, pieces[i].iov_base, pieces[i].iov_len);
			off += pieces[i].iov_len;
		}
		pieces[0] = (struct iovec){w->stage, data_len};
		n = 1;
	}
	p = w->head + WIRE_HDR_LEN;
	wire_encode_runs(p + WIRE_PAGES_FIXED, runs, nruns);
	if (w->features & WIRE_F_XXH3) {
		flags |= WIRE_RF_XXH3;
		sum = checksum_pieces(p + WIRE_PAGES_FIXED, table, pieces, n);
	}
	if ((w->features & WIRE_F_ZSTD) && n)
		clen = compress_pieces(w, pieces, n, data_len);
	if (clen) {
		flags |= WIRE_RF_ZSTD;
		pieces[0] = (struct iovec){w->zbuf, clen};
		n = 1;
	}
	wire_encode_header(w->head, WIRE_PAGES, flags,
			   (uint32_t)(WIRE_PAGES_FIXED + table + (clen ? clen : data_len)));
	wire_put_le32(p, nruns);
	wire_put_le32(p + 4, data_len);
	wire_put_le64(p + 8, sum);
	w->iov[0] = (struct iovec){w->head, head_len};
	ret = emit(w, w->iov, n + 1);
	if (!ret && wire_bytes)
		*wire_bytes = head_len + (clen ? clen : data_len);
	return ret;
}

/* ---- page batches -------------------------------------------------------------------------- */

bool wire_page_is_zero(const void *page, size_t len)
{
	const uint8_t *p = page;
	uint64_t word, acc;
	size_t i = 0;

	/* A page with data nearly always shows it in its first word. */
	if (len >= 8) {
		memcpy(&word, p, 8);
		if (word)
			return false;
	}
	for (; i + 64 <= len; i += 64) {
		acc = 0;
		for (unsigned j = 0; j < 64; j += 8) {
			memcpy(&word, p + i + j, 8);
			acc |= word;
		}
		if (acc)
			return false;
	}
	for (; i < len; i++)
		if (p[i])
			return false;
	return true;
}

int wire_batch_init(struct wire_batch *b)
{
	memset(b, 0, sizeof(*b));
	b->runs = xcalloc(WIRE_MAX_RUNS, sizeof(*b->runs));
	b->data = xcalloc(WIRE_MAX_RUNS, sizeof(*b->data));
	if (!b->runs || !b->data) {
		wire_batch_fini(b);
		return -ENOMEM;
	}
	return 0;
}

void wire_batch_fini(struct wire_batch *b)
{
	xfree(b->runs);
	xfree(b->data);
	memset(b, 0, sizeof(*b));
}

int wire_batch_flush(struct wire_writer *w, struct wire_batch *b)
{
	uint64_t bytes = 0, pages = 0, zero = 0;
	int ret;

	if (!b->nruns)
		return 0;
	for (uint32_t i = 0; i < b->nruns; i++) {
		pages += b->runs[i].count;
		if (b->runs[i].flags & WIRE_RUN_ZERO)
			zero += b->runs[i].count;
	}
	ret = wire_send_pages(w, b->runs, b->nruns, b->data, &bytes);
	b->nruns = 0;
	b->data_len = 0;
	if (ret)
		return ret;
	b->pages += pages;
	b->zero_pages += zero;
	b->wire_bytes += bytes;
	b->records++;
	return 0;
}

int wire_batch_add(struct wire_writer *w, struct wire_batch *b, uint64_t page_index,
		   const void *host, uint64_t npages)
{
	const uint64_t ps = w->page_size;
	const uint8_t *p = host;
	int ret;

	if (!wire_page_size_valid(w->page_size) || (npages && !host) ||
	    (npages &&
	     (page_index > UINT64_MAX / ps || npages - 1 > UINT64_MAX / ps - page_index))) {
		b->nruns = 0;
		b->data_len = 0;
		return -EINVAL;
	}
	for (uint64_t i = 0; i < npages; i++, p += ps) {
		bool zero = wire_page_is_zero(p, ps);
		struct wire_run *last = b->nruns ? &b->runs[b->nruns - 1] : NULL;
		bool extend;

		if (!zero && b->data_len + ps > WIRE_MAX_BATCH_DATA) {
			ret = wire_batch_flush(w, b);
			if (ret)
				return ret;
			last = NULL;
		}
		extend = last && last->first + last->count == page_index + i &&
			 last->count < UINT32_MAX && !(last->flags & WIRE_RUN_ZERO) == !zero &&
			 (zero || (const uint8_t *)b->data[b->nruns - 1] + last->count * ps == p);
		if (extend) {
			last->count++;
		} else {
			if (b->nruns == WIRE_MAX_RUNS) {
				ret = wire_batch_flush(w, b);
				if (ret)
					return ret;
			}
			b->runs[b->nruns] =
				(struct wire_run){page_index + i, 1, zero ? WIRE_RUN_ZERO : 0};
			b->data[b->nruns++] = zero ? NULL : p;
		}
		if (!zero)
			b->data_len += ps;
	}
	return 0;
}
