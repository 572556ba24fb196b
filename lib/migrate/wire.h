/* SPDX-License-Identifier: MIT */
/*
 * migrate/wire.h - the migration stream's wire format: records, their encoders, a validating
 * decoder, a writer and a reader bound to a transport (or to memory), and the page batch
 * builder the engine feeds. docs/wire-format.md is the normative description.
 *
 * A record is an 8-byte little-endian header {u16 type, u16 flags, u32 payload length}
 * followed by the payload. Every decoded length is bounded by its type and checked against
 * the record length; anything malformed is -EPROTO with one log line saying what.
 *
 * Ownership: a writer or reader belongs to one thread at a time (the transport allows one
 * sender and one receiver). Decoded views point into the reader's buffers and stay valid
 * until the next wire_read() / wire_decode() on the same reader / scratch. No global state.
 */
#ifndef DT_MIGRATE_WIRE_H
#define DT_MIGRATE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <endian.h>
#include <string.h>

#include <dirtytrack/transport.h>

/* ---- constants ----------------------------------------------------------------------------- */

#define WIRE_MAGIC   0x31305247494d5444ull /* the bytes "DTMIGR01" read as a LE u64 */
#define WIRE_VERSION 2u			   /* 2: the digest is a sum of per-page terms */
#define WIRE_HDR_LEN 8u

/* HELLO features. The destination answers with the intersection; both sides then use it. */
#define WIRE_F_ZSTD (1u << 0) /* PAGES / DEVICE data may be zstd compressed */
#define WIRE_F_XXH3 (1u << 1) /* PAGES / DEVICE carry an XXH3-64 checksum (required if agreed) */
#define WIRE_F_ALL  (WIRE_F_ZSTD | WIRE_F_XXH3)

/* Record flags (header u16), only on PAGES and DEVICE; zero on every other type. */
#define WIRE_RF_ZSTD (1u << 0) /* the data part is one or more zstd frames */
#define WIRE_RF_XXH3 (1u << 1) /* the checksum field is valid (else it must be 0) */

/* Run flags. */
#define WIRE_RUN_ZERO (1u << 0) /* the pages are zero: no data in the record */

/* Bounds. */
#define WIRE_MAX_REGIONS      4096u
#define WIRE_MAX_RUNS	      65536u
#define WIRE_MAX_BATCH_DATA   (16u << 20) /* uncompressed data bytes per PAGES record */
#define WIRE_MAX_DEVICE_NAME  63u
#define WIRE_MAX_DEVICE_STATE (64u << 20)
#define WIRE_MAX_ERROR_MSG    255u
#define WIRE_MIN_PAGE_SIZE    512u
#define WIRE_MAX_PAGE_SIZE    (2u << 20)

/* Fixed parts of the variable records (bytes). */
#define WIRE_LAYOUT_FIXED 8u
#define WIRE_REGION_LEN	  16u
#define WIRE_PAGES_FIXED  16u
#define WIRE_RUN_LEN	  16u
#define WIRE_DEVICE_FIXED 16u
#define WIRE_ERROR_FIXED  8u

/* The largest payload of any record (DEVICE with the longest name and state). */
#define WIRE_MAX_PAYLOAD (WIRE_DEVICE_FIXED + WIRE_MAX_DEVICE_NAME + WIRE_MAX_DEVICE_STATE)

enum wire_type {
	WIRE_HELLO = 1,
	WIRE_LAYOUT = 2,
	WIRE_PAGES = 3,
	WIRE_DEVICE = 4,
	WIRE_ROUND = 5,
	WIRE_END = 6,
	WIRE_ACK = 7,
	WIRE_PING = 8,
	WIRE_PONG = 9,
	WIRE_ERROR = 10,
};

/* ---- decoded records ----------------------------------------------------------------------- */

struct wire_hello {
	uint32_t version;
	uint32_t features;
	uint32_t page_size;
};

struct wire_region {
	uint64_t addr; /* bytes, page multiple */
	uint64_t size; /* bytes, page multiple, > 0 */
};

struct wire_layout {
	const struct wire_region *regions; /* sorted by addr, non-overlapping */
	uint32_t count;			   /* 1 .. WIRE_MAX_REGIONS */
};

/* A run of pages: page indices [first, first + count) of the address space (addr / page
 * size). A ZERO run carries no data; the data of the others follows in run order. */
struct wire_run {
	uint64_t first;
	uint32_t count; /* > 0 */
	uint32_t flags; /* WIRE_RUN_ZERO */
};

struct wire_pages {
	const struct wire_run *runs;
	uint32_t nruns;	   /* 1 .. WIRE_MAX_RUNS */
	uint32_t data_len; /* uncompressed: page_size x pages of the non-ZERO runs */
	const uint8_t *data;
	uint64_t pages;	     /* every page of the batch, ZERO ones included */
	uint64_t zero_pages; /* of them in ZERO runs */
};

struct wire_device {
	const char *name; /* NUL-terminated, 1 .. 63 bytes, no NUL inside on the wire */
	const uint8_t *state;
	uint32_t state_len; /* uncompressed, <= WIRE_MAX_DEVICE_STATE */
};

struct wire_round {
	uint32_t round;
	uint64_t pages; /* pages the round is about to send */
};

struct wire_end {
	uint64_t pages;	   /* pages sent over the whole migration, zero ones included */
	uint64_t digest;   /* of the whole memory (wire_digest_regions()) */
	uint32_t ndevices; /* DEVICE records sent */
};

struct wire_ack {
	int32_t status; /* 0 or a negative errno (>= -4095) */
	uint64_t digest;
};

struct wire_error {
	int32_t err;	 /* a negative errno (-4095 .. -1) */
	const char *msg; /* NUL-terminated, at most 255 bytes */
};

struct wire_msg {
	uint16_t type;
	uint16_t flags; /* the record header's flags */
	uint32_t len;	/* payload bytes on the wire */
	union {
		struct wire_hello hello;
		struct wire_layout layout;
		struct wire_pages pages;
		struct wire_device device;
		struct wire_round round;
		struct wire_end end;
		struct wire_ack ack;
		uint64_t ping; /* PING and PONG: the value echoed */
		struct wire_error error;
	};
};

/* ---- the pure decoder ---------------------------------------------------------------------- */

/* State and buffers of a decoder; the views of a decoded record point into it. */
struct wire_scratch {
	uint32_t page_size; /* needed for LAYOUT and PAGES; 0 until known (then those fail) */
	/* What the decoder accepts: a record with WIRE_RF_ZSTD fails unless WIRE_F_ZSTD is
	 * here; a PAGES / DEVICE record without WIRE_RF_XXH3 fails if WIRE_F_XXH3 is here. */
	uint32_t features;
	struct wire_run *runs;	     /* WIRE_MAX_RUNS */
	struct wire_region *regions; /* WIRE_MAX_REGIONS */
	uint8_t *zbuf;		     /* decompressed data, grown up to the type's bound */
	size_t zcap;
	struct ZSTD_DCtx_s *dctx;
	char name[WIRE_MAX_DEVICE_NAME + 1];
	char msg[WIRE_MAX_ERROR_MSG + 1];
};

/* page_size 0 and features WIRE_F_ALL; -ENOMEM. */
int wire_scratch_init(struct wire_scratch *s);
void wire_scratch_fini(struct wire_scratch *s);

/* Name of a record type for logs ("PAGES"), "?" if unknown. */
const char *wire_type_name(uint16_t type);
/* The largest payload a record of this type may have; 0 for an unknown type. */
uint32_t wire_type_max_payload(uint16_t type);
/* The record flags this type may carry (WIRE_RF_*). */
uint16_t wire_type_flags(uint16_t type);

/* Decode and validate one record's header fields (type, flags, len) and payload. 0, or
 * -EPROTO (logged: what was wrong), or -ENOMEM. Never reads outside payload[0, len). */
int wire_decode(uint16_t type, uint16_t flags, const void *payload, uint32_t len,
		struct wire_msg *m, struct wire_scratch *s);

/* Check and decode an 8-byte record header: -EPROTO for an unknown type or a length past
 * the type's bound or past max_payload. */
int wire_decode_header(const void *hdr, uint32_t max_payload, uint16_t *type, uint16_t *flags,
		       uint32_t *len);

/* ---- encoders into a buffer ---------------------------------------------------------------- */

/*
 * Encode m as one record (header + payload) into buf: returns its length, -ENOSPC if cap
 * is too small, or -EINVAL if a count or length is out of its bound (runs, regions, name,
 * message, data that do not add up). Other values are written as given (HELLO's version,
 * ACK's status ...): tests craft refused records this way; the wire_send_*() check them.
 * PAGES and DEVICE are encoded raw (no compression), with the checksum when m->flags has
 * WIRE_RF_XXH3 (no other flag); page_size is needed for PAGES. Used by the writer for the
 * small records and by the tests.
 */
int64_t wire_encode(const struct wire_msg *m, uint32_t page_size, void *buf, size_t cap);
/* Bytes wire_encode() needs for m (header included); 0 if m is invalid. */
uint64_t wire_encoded_len(const struct wire_msg *m, uint32_t page_size);

/* ---- the writer ---------------------------------------------------------------------------- */

struct ZSTD_CCtx_s;

struct wire_writer {
	struct dt_transport *t; /* NULL: the writer appends to mem (tests, fuzz seeds) */
	uint32_t features;	/* what this writer uses: WIRE_F_ZSTD, WIRE_F_XXH3 */
	uint32_t page_size;	/* set by wire_send_hello() or wire_writer_set_page_size() */
	int zstd_level;		/* 1 unless changed */
	bool memory_stable;	/* see wire_writer_set_memory_stable() */
	struct ZSTD_CCtx_s *cctx;
	uint8_t *zbuf; /* compressed output */
	size_t zcap;
	uint8_t *stage; /* copy of live memory before checksum / compression */
	size_t stage_cap;
	uint8_t *head; /* header + fixed part + run table */
	size_t head_cap;
	struct iovec *iov; /* head, then the data pieces */
	size_t iov_cap;
	uint8_t *mem; /* memory sink */
	size_t mem_len, mem_cap;
	uint64_t bytes;	  /* bytes written, headers included */
	uint64_t records; /* records written */
};

/* features: what the writer may use (narrow it after the HELLO exchange). 0 or -ENOMEM. */
int wire_writer_init(struct wire_writer *w, struct dt_transport *t, uint32_t features);
/* A writer into memory: w->mem / w->mem_len hold every record written so far. */
int wire_writer_init_mem(struct wire_writer *w, uint32_t features);
void wire_writer_fini(struct wire_writer *w);
void wire_writer_set_features(struct wire_writer *w, uint32_t features);
void wire_writer_set_page_size(struct wire_writer *w, uint32_t page_size);
/*
 * Whether page memory may change while it is sent. Not stable (the default, pre-copy with
 * the guest running): page data is first copied into a staging buffer and checksummed,
 * compressed and sent from the copy, so the checksum matches the bytes sent even if the
 * guest writes meanwhile (the dirty log resends such pages). Stable (guest paused): data is
 * checksummed and sent straight from memory with one sendv, no copy (unless compressing).
 */
void wire_writer_set_memory_stable(struct wire_writer *w, bool stable);

/* Each sends one record; 0 or a negative errno (transport errors as they come, -EINVAL for
 * arguments that break a bound). hello sends w->features and page_size, and sets the
 * writer's page size. */
int wire_send_hello(struct wire_writer *w, uint32_t page_size);
int wire_send_layout(struct wire_writer *w, const struct wire_region *regions, uint32_t count);
int wire_send_round(struct wire_writer *w, uint32_t round, uint64_t pages);
int wire_send_end(struct wire_writer *w, uint64_t pages, uint64_t digest, uint32_t ndevices);
int wire_send_ack(struct wire_writer *w, int32_t status, uint64_t digest);
int wire_send_ping(struct wire_writer *w, uint64_t value);
int wire_send_pong(struct wire_writer *w, uint64_t value);
/* msg is truncated to 255 bytes; err must be a negative errno. */
int wire_send_error(struct wire_writer *w, int32_t err, const char *msg);
/* The state is compressed if WIRE_F_ZSTD and it shrinks. */
int wire_send_device(struct wire_writer *w, const char *name, const void *state, uint32_t len);
/*
 * One PAGES record. run_data[i] is the host memory of run i's first page (its count pages
 * contiguous), NULL for ZERO runs. Bounds: 1..WIRE_MAX_RUNS runs, at most
 * WIRE_MAX_BATCH_DATA bytes of data (else -EINVAL). *wire_bytes (optional) gets the record's
 * size on the wire, header included.
 */
int wire_send_pages(struct wire_writer *w, const struct wire_run *runs, uint32_t nruns,
		    const void *const *run_data, uint64_t *wire_bytes);

/* ---- page batches -------------------------------------------------------------------------- */

/* Whether a page (any alignment; page_size a multiple of 8) is all zero. */
bool wire_page_is_zero(const void *p, size_t page_size);

/* Collects pages into runs and sends a PAGES record when full or flushed. */
struct wire_batch {
	struct wire_run *runs; /* WIRE_MAX_RUNS */
	const void **data;     /* per run: host pointer of its first page, NULL if ZERO */
	uint32_t nruns;
	uint32_t data_len; /* pending uncompressed data */
	/* Totals since init (or the caller resetting them). */
	uint64_t pages;	     /* pages sent (flushed), zero ones included */
	uint64_t zero_pages; /* of them, sent as ZERO runs */
	uint64_t wire_bytes; /* bytes of PAGES records on the wire, headers included */
	uint64_t records;    /* PAGES records sent */
};

int wire_batch_init(struct wire_batch *b);
void wire_batch_fini(struct wire_batch *b);
/*
 * Add npages pages starting at page index page_index, mapped contiguously at host. Each page
 * is tested for zero now; a non-zero page's memory is read when its batch is sent (by this
 * call when a bound is reached, else by wire_batch_flush()), so host must stay mapped until
 * then. Needs w->page_size. 0 or a negative errno (the batch is then empty: the pending
 * pages are lost and must be treated as unsent).
 */
int wire_batch_add(struct wire_writer *w, struct wire_batch *b, uint64_t page_index,
		   const void *host, uint64_t npages);
/* Send the pending pages, if any. */
int wire_batch_flush(struct wire_writer *w, struct wire_batch *b);

/* ---- the reader ---------------------------------------------------------------------------- */

struct wire_reader {
	struct dt_transport *t; /* NULL: reads from src (memory) */
	const uint8_t *src;
	size_t src_len, src_pos;
	uint32_t max_payload;
	uint8_t *buf; /* the payload of the last record */
	size_t cap;
	struct wire_scratch scratch;
	uint64_t bytes;	  /* bytes read, headers included */
	uint64_t records; /* records read */
};

/* max_payload: larger records are refused (-EPROTO) before being read; 0: WIRE_MAX_PAYLOAD.
 * The reader accepts WIRE_F_ALL until wire_reader_set_features(). */
int wire_reader_init(struct wire_reader *r, struct dt_transport *t, uint32_t max_payload);
/* A reader over len bytes at src (not copied). At the end of the bytes, wire_read() returns
 * -ENODATA between records and -ECONNRESET inside one. */
int wire_reader_init_mem(struct wire_reader *r, const void *src, size_t len, uint32_t max_payload);
void wire_reader_fini(struct wire_reader *r);
/* The negotiated features: ZSTD allowed, checksums required (see wire_scratch). */
void wire_reader_set_features(struct wire_reader *r, uint32_t features);

/*
 * Read and validate one record. 0 with *m filled (views valid until the next call), or a
 * negative errno: transport errors as they come, -EPROTO for a malformed record (logged),
 * -ENOMEM. A HELLO sets the reader's page size (needed by LAYOUT and PAGES).
 */
int wire_read(struct wire_reader *r, struct wire_msg *m);

/* ---- memory digest ------------------------------------------------------------------------- */

/*
 * The END digest (docs/wire-format.md "The memory digest"): the sum modulo 2^64, over every
 * 4 KiB page of the layout, of wire_digest_term(page number, XXH3-64 of the page's bytes),
 * the page number being the page's address / 4096. A sum of independent terms, so the source
 * can split it over threads and the destination can keep it up to date page by page as it
 * applies PAGES (mig_digest in memory.h) instead of hashing its whole memory at END.
 * Regions must be multiples of WIRE_DIGEST_PAGE (the engine's page size on both sides).
 */
#define WIRE_DIGEST_PAGE 4096u
#define WIRE_DIGEST_ODD	 0x9e3779b97f4a7c15ull /* odd: page -> page x ODD is a bijection */

/* The term of page number `page` whose bytes hash (XXH3-64, seed 0) to `hash`: splitmix64's
 * finalizer of hash + page x WIRE_DIGEST_ODD, so equal pages at different places, or two
 * pages swapped, give unrelated terms. */
static inline uint64_t wire_digest_term(uint64_t page, uint64_t hash)
{
	uint64_t z = hash + page * WIRE_DIGEST_ODD;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* XXH3-64 (seed 0) of the WIRE_DIGEST_PAGE bytes at p (any alignment). */
uint64_t wire_digest_page_hash(const void *p);
/* The sum of the terms of npages pages mapped contiguously at host, the first numbered page. */
uint64_t wire_digest_pages(uint64_t page, const void *host, uint64_t npages);
/*
 * The digest of regions whose memory is at host[i] (count 0: 0), on nthreads threads (the
 * caller's and nthreads - 1 it starts; no more than pages, at most 8), each hashing one
 * contiguous share of the pages; the caller hashes the share of a thread that cannot be
 * started. -EINVAL if a region is not a multiple of WIRE_DIGEST_PAGE.
 */
int wire_digest_regions_threads(const struct wire_region *regions, void *const *host,
				uint32_t count, unsigned nthreads, uint64_t *digest);
/* The threads wire_digest_regions() uses for that many bytes: see wire_reader.c. */
unsigned wire_digest_nthreads(uint64_t bytes);
/* wire_digest_regions_threads() on wire_digest_nthreads() threads. */
int wire_digest_regions(const struct wire_region *regions, void *const *host, uint32_t count,
			uint64_t *digest);

/* Region index and byte offset in it of page index `page` for a run of count pages lying
 * wholly inside one region; -EPROTO (not logged) if it does not. For the destination. */
int wire_layout_locate(const struct wire_layout *l, uint32_t page_size, uint64_t page,
		       uint32_t count, uint32_t *region, uint64_t *offset);

/* ---- shared by the codec and the stream code ------------------------------------------------ */

/* Bytes of data the non-ZERO runs hold: -EINVAL if a run is empty, has unknown flags, ends
 * past the address space, or the data exceed WIRE_MAX_BATCH_DATA. */
int wire_runs_data_len(const struct wire_run *runs, uint32_t nruns, uint32_t page_size,
		       uint32_t *data_len);
/* The run table as on the wire (nruns x WIRE_RUN_LEN bytes). */
void wire_encode_runs(uint8_t *dst, const struct wire_run *runs, uint32_t nruns);
void wire_encode_header(uint8_t *dst, uint16_t type, uint16_t flags, uint32_t len);
bool wire_page_size_valid(uint32_t page_size);

/* Little-endian fields at any alignment. */
static inline void wire_put_le16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

static inline void wire_put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static inline void wire_put_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static inline uint16_t wire_get_le16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static inline uint32_t wire_get_le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static inline uint64_t wire_get_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

#endif
