/* SPDX-License-Identifier: MIT */
/*
 * tests/vfio_user/vfu_test.h - the fixture of the server tests: a test device (regions in
 * memory, a migration state log, a migration data buffer), a server on one end of a
 * socketpair running in its own thread, and a raw client on the other end that sends
 * hand-built messages and reads the replies.
 *
 * The server thread only acts on a message the test sent, and the test waits for the reply
 * before it looks at the server's state, so the socket orders every access.
 */
#ifndef VFU_TEST_H
#define VFU_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>

#include <dirtytrack/vfio_user.h>

#include "vfio_user/msg.h"

/* count_open_fds() and friends. */
#include "../core/test_util.h"
#include "../transport/transport_test.h"

#define TD_NREGIONS  3
#define TD_REGION_SZ 4096
#define TD_MIG_MAX   (1 << 20)
#define TD_MAX_ARCS  64

struct test_dev {
	uint8_t region[TD_NREGIONS][TD_REGION_SZ];
	int region_calls;
	int resets;
	int client_lost;
	/* Every arc the server asked for, in order; fail_arc_to makes arcs into that state
	 * fail with -EIO. */
	uint32_t arcs[TD_MAX_ARCS][2];
	int narcs;
	uint32_t fail_arc_to;
	/* Migration data: the source hands out mig_src[mig_pos..mig_len); the destination
	 * appends to mig_dst. */
	uint8_t *mig_src;
	uint64_t mig_len, mig_pos;
	uint8_t *mig_dst;
	uint64_t mig_dst_len;
	/* A callback for REGION_WRITE to region 2 (e.g. to do DMA from inside a handler). */
	void (*on_write2)(struct test_dev *td, uint64_t offset, const void *buf, uint32_t n);
	struct dt_vfu_server *srv;
};

struct test_srv {
	struct dt_vfu_server *s;
	struct test_dev dev;
	int fd; /* the client's end */
	pthread_t thread;
	bool running;
	int result; /* of dt_vfu_server_run */
	uint16_t id;
	uint8_t buf[(1 << 20) + 65536]; /* the last reply */
	struct vfu_msg reply;
};

#define KB 1024ull
#define MB (1024ull * KB)
#define PG 4096ull

/* The one server of a test program, and the cmocka teardown that frees it. */
extern struct test_srv T;
int srv_teardown(void **state);

/* Options for the default test device; the caller may change them before srv_start. */
void srv_default_opts(struct test_srv *t, struct dt_vfu_server_opts *o);
/* Start the server thread with o (NULL: the defaults). */
void srv_start(struct test_srv *t, const struct dt_vfu_server_opts *o);
/* Close the client's end, wait for the server thread, return run()'s result. */
int srv_stop_client(struct test_srv *t);
/* srv_stop_client if needed, and free. */
void srv_free(struct test_srv *t);

/* Send a command (flags VFU_F_*), with fds. */
void srv_send(struct test_srv *t, uint16_t cmd, uint32_t flags, const void *payload, size_t len,
	      const int *fds, unsigned nfds);
/* Receive one message into t->reply; returns vfu_msg_recv's result. */
int srv_recv(struct test_srv *t);
/* Send and receive the reply; returns 0 or -error of an error reply; checks the reply's id,
 * command and type. */
int srv_call(struct test_srv *t, uint16_t cmd, const void *payload, size_t len, const int *fds,
	     unsigned nfds);
/* VERSION with the given JSON (NULL: none); returns as srv_call. */
int srv_version(struct test_srv *t, const char *json);
/* VERSION with max_msg_fds 8 and the migration capability. */
void srv_negotiate(struct test_srv *t);

/* DEVICE_FEATURE helpers: returns as srv_call; the reply data is at t->reply.payload + 8. */
int srv_feature(struct test_srv *t, uint32_t flags, uint32_t argsz, const void *data, size_t len);
int srv_set_state(struct test_srv *t, uint32_t state);
uint32_t srv_get_state(struct test_srv *t);

/* DMA_MAP of [iova, +size) from fd at offset (fd < 0: no descriptor) with flags. */
int srv_dma_map(struct test_srv *t, uint64_t iova, uint64_t size, int fd, uint64_t offset,
		uint32_t flags);
int srv_dma_unmap(struct test_srv *t, uint64_t iova, uint64_t size, uint32_t flags);

/* srv_start with the default device and dma_kind, then srv_negotiate. */
void srv_start_kind(struct test_srv *t, enum dt_device_kind kind);
/* DMA_LOGGING_START over n ranges; returns as srv_call. */
int srv_logging_start(struct test_srv *t, const struct vfu_dma_logging_range *r, uint32_t n,
		      uint64_t page_size);
/* DMA_LOGGING_REPORT with argsz for the whole bitmap; on success *bitmap points into the
 * reply (whose header fields are checked). */
int srv_report(struct test_srv *t, uint64_t iova, uint64_t length, uint64_t page_size,
	       const uint8_t **bitmap);
/* Bit n of a bitmap. */
bool bm_bit(const uint8_t *bm, uint64_t n);
/* Mappings in the server's container. */
uint64_t srv_mappings(struct test_srv *t);

/* A memfd of size bytes, mapped here at *va. */
int memfd_new(uint64_t size, void **va);

#endif
