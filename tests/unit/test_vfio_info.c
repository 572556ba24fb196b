/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_vfio_info.c - VFIO_IOMMU_GET_INFO through dt_vfio_ioctl (SEMANTICS.md
 * section 3): flags and page sizes, the capability chain walked by its offsets (the
 * migration capability: id 2, version 1, flags 0, exactly the container page, a bitmap limit
 * of at least 256 MiB, zero padding), the two-call protocol when argsz is too small for the
 * capabilities, argsz below the minimal struct, and -ENOTTY for unknown requests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "helpers.h"

#define MINSZ_INFO (offsetof(struct vfio_iommu_type1_info, iova_pgsizes) + sizeof(uint64_t))

/* GET_INFO into a buffer of `len` bytes pre-filled with 0xa5, argsz = len. */
static int get_info(struct dt_iommu *io, void *buf, uint32_t len)
{
	struct vfio_iommu_type1_info *info = buf;

	memset(buf, 0xa5, len);
	info->argsz = len;
	return dt_vfio_ioctl(io, VFIO_IOMMU_GET_INFO, buf);
}

/* The argsz the library asks for (first call with the bare struct). */
static uint32_t needed_argsz(struct dt_iommu *io)
{
	struct vfio_iommu_type1_info info;

	EXPECT_EQ(get_info(io, &info, sizeof(info)), 0);
	return info.argsz;
}

static void test_info_flags_and_pgsizes(void **state)
{
	struct dt_iommu *io = *state;
	struct vfio_iommu_type1_info info;

	EXPECT_EQ(get_info(io, &info, sizeof(info)), 0);
	EXPECT_EQ(info.flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
	EXPECT_TRUE(info.iova_pgsizes & PG);
	/* Nothing below the container page can be mapped. */
	EXPECT_EQ(info.iova_pgsizes & (PG - 1), 0);
	EXPECT_EQ(dt_iommu_pgsize(io), PG);
}

static void test_info_argsz_too_small_for_caps(void **state)
{
	struct dt_iommu *io = *state;
	struct vfio_iommu_type1_info info;

	ctx_set("argsz = sizeof(struct vfio_iommu_type1_info): no room for capabilities");
	EXPECT_EQ(get_info(io, &info, sizeof(info)), 0);
	EXPECT_TRUE(info.argsz > sizeof(info));
	EXPECT_EQ(info.cap_offset, 0);
	EXPECT_EQ(info.flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);

	/* One byte short of what it asked for: same answer, same size asked. */
	uint32_t need = info.argsz;
	uint8_t *buf = calloc(1, need);

	assert_non_null(buf);
	ctx_set("argsz = needed - 1 = %u", need - 1);
	EXPECT_EQ(get_info(io, buf, need - 1), 0);
	EXPECT_EQ(((struct vfio_iommu_type1_info *)buf)->argsz, need);
	EXPECT_EQ(((struct vfio_iommu_type1_info *)buf)->cap_offset, 0);
	free(buf);
}

static void test_info_minimal_argsz(void **state)
{
	struct dt_iommu *io = *state;
	struct vfio_iommu_type1_info info;

	ctx_set("argsz = offsetofend(iova_pgsizes) = %zu: minimal, accepted", MINSZ_INFO);
	EXPECT_EQ(get_info(io, &info, MINSZ_INFO), 0);
	EXPECT_EQ(info.flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
	EXPECT_TRUE(info.iova_pgsizes & PG);
	EXPECT_TRUE(info.argsz > sizeof(info));

	ctx_set("argsz %zu: cap_offset and what follows lie outside argsz: not written",
		MINSZ_INFO);
	uint8_t raw[64];
	memset(raw, 0xa5, sizeof(raw));
	((struct vfio_iommu_type1_info *)raw)->argsz = MINSZ_INFO;
	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_GET_INFO, raw), 0);
	for (size_t i = MINSZ_INFO; i < sizeof(raw); i++)
		EXPECT_EQ(raw[i], 0xa5);

	for (uint32_t sz = 0; sz < MINSZ_INFO; sz++) {
		ctx_set("argsz %u below the minimal %zu", sz, MINSZ_INFO);
		EXPECT_EQ(get_info(io, &info, sz), -EINVAL);
	}
}

static void test_info_cap_chain(void **state)
{
	struct dt_iommu *io = *state;
	uint32_t need = needed_argsz(io);
	uint8_t *buf = malloc(need);
	struct vfio_iommu_type1_info *info = (void *)buf;
	struct vfio_iommu_type1_info_cap_migration mig;
	uint32_t off, hops = 0;
	bool found = false;

	assert_non_null(buf);
	ctx_set("GET_INFO with argsz %u (the size it asked for)", need);
	EXPECT_EQ(get_info(io, buf, need), 0);
	EXPECT_EQ(info->flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
	EXPECT_TRUE(info->cap_offset >= sizeof(*info));
	EXPECT_TRUE(info->cap_offset < need);
	for (off = info->cap_offset; off; hops++) {
		struct vfio_info_cap_header hdr;

		ctx_set("capability at offset %u (hop %u), argsz %u", off, hops, need);
		EXPECT_TRUE(hops < 16);
		EXPECT_TRUE(off + sizeof(hdr) <= need);
		EXPECT_EQ(off % 4, 0);
		memcpy(&hdr, buf + off, sizeof(hdr));
		if (hdr.id == VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION) {
			EXPECT_TRUE(!found);
			EXPECT_TRUE(off + sizeof(mig) <= need);
			memcpy(&mig, buf + off, sizeof(mig));
			found = true;
		}
		/* The chain only moves forward: no loops. */
		EXPECT_TRUE(hdr.next == 0 || hdr.next > off);
		off = hdr.next;
	}
	ctx_set("the migration capability");
	EXPECT_TRUE(found);
	EXPECT_EQ(mig.header.id, 2);
	EXPECT_EQ(mig.header.version, 1);
	EXPECT_EQ(mig.flags, 0);
	EXPECT_EQ(mig.pgsize_bitmap, PG);
	EXPECT_TRUE(mig.max_dirty_bitmap_size >= 256ull << 20);
	free(buf);
}

static void test_info_cap_padding_zero(void **state)
{
	struct dt_iommu *io = *state;
	uint32_t need = needed_argsz(io);
	uint8_t *buf = malloc(need);
	struct vfio_iommu_type1_info *info = (void *)buf;
	size_t pad_at = offsetof(struct vfio_iommu_type1_info_cap_migration, flags) + 4;
	size_t pad_len =
		offsetof(struct vfio_iommu_type1_info_cap_migration, pgsize_bitmap) - pad_at;

	assert_non_null(buf);
	/* get_info pre-fills with 0xa5: stale bytes would show. */
	EXPECT_EQ(get_info(io, buf, need), 0);
	for (uint32_t off = info->cap_offset; off;) {
		struct vfio_info_cap_header hdr;

		memcpy(&hdr, buf + off, sizeof(hdr));
		if (hdr.id == VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION) {
			for (size_t i = 0; i < pad_len; i++) {
				ctx_set("migration capability padding byte %zu", pad_at + i);
				EXPECT_EQ(buf[off + pad_at + i], 0);
			}
			break;
		}
		off = hdr.next;
	}
	free(buf);
}

static void test_info_larger_argsz(void **state)
{
	struct dt_iommu *io = *state;
	uint32_t need = needed_argsz(io);
	uint8_t *buf = malloc(need + 256);
	struct vfio_iommu_type1_info *info = (void *)buf;

	assert_non_null(buf);
	ctx_set("argsz %u larger than needed %u", need + 256, need);
	EXPECT_EQ(get_info(io, buf, need + 256), 0);
	EXPECT_TRUE(info->cap_offset >= sizeof(*info));
	EXPECT_TRUE(info->cap_offset < need);
	free(buf);
}

static void test_unknown_request(void **state)
{
	struct dt_iommu *io = *state;
	uint8_t buf[256];

	memset(buf, 0, sizeof(buf));
	((struct vfio_iommu_type1_info *)buf)->argsz = sizeof(buf);
	ctx_set("VFIO_DEVICE_GET_INFO on a container");
	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_DEVICE_GET_INFO, buf), -ENOTTY);
	ctx_set("VFIO_IOMMU_ENABLE (sPAPR only)");
	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_ENABLE, buf), -ENOTTY);
	ctx_set("VFIO_IOMMU_SPAPR_TCE_CREATE");
	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_SPAPR_TCE_CREATE, buf), -ENOTTY);
	ctx_set("request 0x12345678");
	EXPECT_EQ(dt_vfio_ioctl(io, 0x12345678ul, buf), -ENOTTY);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		UT(test_info_flags_and_pgsizes), UT(test_info_argsz_too_small_for_caps),
		UT(test_info_minimal_argsz),	 UT(test_info_cap_chain),
		UT(test_info_cap_padding_zero),	 UT(test_info_larger_argsz),
		UT(test_unknown_request),
	};

	return cmocka_run_group_tests_name("vfio_info", tests, NULL, NULL);
}
