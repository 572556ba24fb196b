/* SPDX-License-Identifier: MIT */
/*
 * fuzz/gen_wire_seeds.c - writes the seed corpus of fuzz_wire into a directory (built only
 * with -Dfuzz=true; run as `gen_wire_seeds fuzz/corpus/wire`). Each seed is fuzz_wire's
 * configuration byte followed by a stream made by the real writer: a whole migration in
 * order, streams without checksums (so mutations reach past them), compressed batches and
 * device states, and one record of each type alone.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/wire.h"

#define CFG_PS512  (1u << 2)
#define CFG_PS4096 (2u << 2)

static const char *dir;
static int nseed;

static void save(uint8_t cfg, const struct wire_writer *w)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/seed-%02d", dir, nseed++);
	f = fopen(path, "wb");
	if (!f || fwrite(&cfg, 1, 1, f) != 1 || fwrite(w->mem, 1, w->mem_len, f) != w->mem_len ||
	    fclose(f)) {
		perror(path);
		exit(1);
	}
}

static void fill(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed & 1 ? i * 7 + seed : (i / 64) % 5);
}

/* A small migration: HELLO, LAYOUT, ROUND, two batches, device, PING/PONG, END, ACK. */
static void migration(uint8_t cfg, uint32_t features, uint32_t ps)
{
	static uint8_t mem[16 * 4096];
	const struct wire_region regions[2] = {{0, 8ull * ps}, {1ull << 20, 8ull * ps}};
	struct wire_run runs[3] = {{1, 2, 0}, {3, 4, WIRE_RUN_ZERO}, {(1u << 20) / ps, 1, 0}};
	const void *data[3] = {mem, NULL, mem + 2 * ps};
	struct wire_writer w;
	struct wire_batch b;

	fill(mem, sizeof(mem), nseed);
	memset(mem + 5 * ps, 0, 3 * ps);
	if (wire_writer_init_mem(&w, features) || wire_batch_init(&b) || wire_send_hello(&w, ps) ||
	    wire_send_layout(&w, regions, 2) || wire_send_round(&w, 0, 16) ||
	    wire_send_pages(&w, runs, 3, data, NULL) || wire_batch_add(&w, &b, 0, mem, 8) ||
	    wire_batch_flush(&w, &b) || wire_send_ping(&w, 7) || wire_send_pong(&w, 7) ||
	    wire_send_device(&w, "uart0", mem, 200) || wire_send_end(&w, 15, 0x1234, 1) ||
	    wire_send_ack(&w, 0, 0x1234) || wire_send_error(&w, -EPROTO, "checksum mismatch")) {
		fprintf(stderr, "writing a seed failed\n");
		exit(1);
	}
	save(cfg, &w);
	wire_batch_fini(&b);
	wire_writer_fini(&w);
}

int main(int argc, char **argv)
{
	struct wire_writer w;
	static uint8_t page[4096];

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	migration(CFG_PS4096 | WIRE_F_ALL, WIRE_F_ALL, 4096);
	migration(CFG_PS512 | WIRE_F_ALL, WIRE_F_ALL, 512);
	migration(CFG_PS512, 0, 512);			      /* no checksums */
	migration(CFG_PS512 | WIRE_F_ZSTD, WIRE_F_ZSTD, 512); /* compressed, no checksums */
	migration(0x10 | WIRE_F_ZSTD, WIRE_F_ZSTD, 512);      /* page size from HELLO only */

	/* One record alone, no checksum, page size 512 known. */
	for (int t = WIRE_HELLO; t <= WIRE_ERROR; t++) {
		struct wire_region region = {512, 1024};
		struct wire_run run = {1, 2, 0};
		const void *data[1] = {page};

		fill(page, sizeof(page), (unsigned)t);
		if (wire_writer_init_mem(&w, t == WIRE_DEVICE ? WIRE_F_ZSTD : 0))
			return 1;
		wire_writer_set_page_size(&w, 512);
		switch (t) {
		case WIRE_HELLO:
			wire_send_hello(&w, 4096);
			break;
		case WIRE_LAYOUT:
			wire_send_layout(&w, &region, 1);
			break;
		case WIRE_PAGES:
			wire_send_pages(&w, &run, 1, data, NULL);
			break;
		case WIRE_DEVICE:
			wire_send_device(&w, "dev", page, sizeof(page));
			break;
		case WIRE_ROUND:
			wire_send_round(&w, 3, 99);
			break;
		case WIRE_END:
			wire_send_end(&w, 1, 2, 3);
			break;
		case WIRE_ACK:
			wire_send_ack(&w, -EIO, 5);
			break;
		case WIRE_PING:
			wire_send_ping(&w, 1);
			break;
		case WIRE_PONG:
			wire_send_pong(&w, 2);
			break;
		case WIRE_ERROR:
			wire_send_error(&w, -ENOENT, "no device uart0");
			break;
		}
		if (!w.records)
			return 1;
		save(CFG_PS512 | WIRE_F_ZSTD, &w);
		wire_writer_fini(&w);
	}
	printf("%d seeds in %s\n", nseed, dir);
	return 0;
}
