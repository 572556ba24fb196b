/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_track_kvm.c - part 1 of bench_track for the KVM sources: the harvest of the
 * dirty log and of the dirty ring, dirtied by a guest.
 *
 * KVM logs only guest writes, so the memory of part 1 (b->mem, resident) becomes memslot 0 of
 * a VM at guest-physical 0, and a one-vCPU guest writes the pattern into it. The guest runs
 * in 32-bit protected mode, flat segments set through KVM_SET_SREGS, no paging, so a
 * guest-physical address is the address the guest writes. Its code and its list of addresses
 * live in memslot 1 (never logged) just above the tracked slot, so the tracked slot holds
 * nothing but the pattern's pages and a harvest must equal the pattern bit for bit:
 *
 *	list:	e3 05	jecxz 7		; ESI = list of addresses, ECX = their count
 *		ad	lodsd		; a read: dirties nothing
 *		fe 00	inc byte [eax]	; the only write
 *		e2 fb	loop list+2
 *		f4	hlt
 *		eb fd	jmp hlt
 *
 *	stride:	e3 06	jecxz 8		; EAX = first page, ECX = pages, EDX = 4096
 *		fe 00	inc byte [eax]
 *		01 d0	add eax, edx
 *		e2 fa	loop stride+2
 *		f4	hlt
 *		eb fd	jmp hlt
 *
 * The list program writes the 1 % pattern, the stride program every page (100 %); at 0 %
 * the guest does not run. The guest's writes are emulated on this project's hosts (~2 us
 * each) and never timed. Timed, as for the other sources: dt_source_harvest() into a zeroed
 * bitmap with caches scrubbed before. Beside it in the same loop: for the dirty log, naive =
 * KVM_GET_DIRTY_LOG into a flat bitmap then one KVM_CLEAR_DIRTY_LOG per reported 64-page
 * word (after the guest wrote the pattern again; its GET alone is reported too, kvm_get_ns:
 * the bitmap copy, the rest is re-protection), and the memcpy bounds of bench_track.c.
 *
 * The dirty ring (65536 entries) is exact while a burst fits it. A host that overfills it
 * (kvm_pvm, docs/tracking.md) loses entries: the source then drops DT_SOURCE_CAP_EXACT or
 * dt_source_kvm_ring_full() fails with -EOVERFLOW; that level is reported as skipped, with
 * the reason, and is the last one measured (the VM cannot go on).
 */
#include "sys/compat.h"

#include <linux/kvm.h>

#include "../vmm/flat32.h"
#include "bench_track.h"

#define STRIDE_OFF   0x10u	   /* the stride program; the list program is at 0 */
#define LIST_OFF     PAGE_SIZE	   /* the list of addresses, after the code's page */
#define GPA_LIMIT    0xf0000000ull /* the slots stay below KVM's TSS pages */
#define TSS_GPA	     0xfffbd000ul  /* VMX without unrestricted guest needs one */
#define RING_ENTRIES 65536u

static const uint8_t list_code[] = {0xe3, 0x05, 0xad, 0xfe, 0x00, 0xe2, 0xfb, 0xf4, 0xeb, 0xfd};
static const uint8_t stride_code[] = {0xe3, 0x06, 0xfe, 0x00, 0x01, 0xd0,
				      0xe2, 0xfa, 0xf4, 0xeb, 0xfd};

struct guest {
	int kvm, fd, vcpu;
	struct kvm_run *run;
	size_t run_size;
	uint8_t *aux; /* memslot 1: code and list */
	uint64_t aux_gpa, aux_size;
	struct dt_region region;
	uint32_t ring_entries;
	unsigned ring_full_exits;
};

static void vcpu_flat_protected_mode(struct guest *g)
{
	struct kvm_sregs sregs;

	BENCH_CHECK(!ioctl(g->vcpu, KVM_GET_SREGS, &sregs), "KVM_GET_SREGS: %s", strerror(errno));
	flat32_sregs(&sregs);
	BENCH_CHECK(!ioctl(g->vcpu, KVM_SET_SREGS, &sregs), "KVM_SET_SREGS: %s", strerror(errno));
}

static void set_slot(struct guest *g, uint32_t slot, uint64_t gpa, uint64_t size, void *host)
{
	struct kvm_userspace_memory_region m = {.slot = slot,
						.guest_phys_addr = gpa,
						.memory_size = size,
						.userspace_addr = (uint64_t)(uintptr_t)host};

	BENCH_CHECK(!ioctl(g->fd, KVM_SET_USER_MEMORY_REGION, &m), "memslot %u: %s", slot,
		    strerror(errno));
}

/* A VM over b->mem (with a dirty ring if ring); false and why if this host cannot. */
static bool guest_create(struct guest *g, const struct src_bench *b, uint64_t list_max, bool ring,
			 char *why, size_t len)
{
	memset(g, 0, sizeof(*g));
	g->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (g->kvm < 0) {
		snprintf(why, len, "no /dev/kvm (%s)", strerror(errno));
		return false;
	}
	if (ioctl(g->kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		snprintf(why, len, "/dev/kvm does not answer KVM API version %d", KVM_API_VERSION);
		close(g->kvm);
		return false;
	}
	g->aux_size = LIST_OFF + (list_max * 4 + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
	g->aux_gpa = b->size;
	if (g->aux_gpa + g->aux_size > GPA_LIMIT) {
		snprintf(why, len, "--size-mib %" PRIu64 " does not fit a 32-bit guest's space",
			 b->size >> 20);
		close(g->kvm);
		return false;
	}
	g->fd = ioctl(g->kvm, KVM_CREATE_VM, 0);
	BENCH_CHECK(g->fd >= 0, "KVM_CREATE_VM: %s", strerror(errno));
	ioctl(g->fd, KVM_SET_TSS_ADDR, TSS_GPA);
	if (ring) {
		int ret;

		g->ring_entries = RING_ENTRIES;
		ret = dt_kvm_dirty_ring_enable(g->fd, &g->ring_entries);
		if (ret) {
			snprintf(why, len, "no dirty ring of %u entries (%s)", RING_ENTRIES,
				 strerror(-ret));
			close(g->fd);
			close(g->kvm);
			return false;
		}
	}
	g->aux = alloc_zeroed(g->aux_size);
	memcpy(g->aux, list_code, sizeof(list_code));
	memcpy(g->aux + STRIDE_OFF, stride_code, sizeof(stride_code));
	set_slot(g, 0, 0, b->size, b->mem);
	set_slot(g, 1, g->aux_gpa, g->aux_size, g->aux);
	g->region = (struct dt_region){.addr = 0, .size = b->size, .host = b->mem, .slot = 0};
	g->vcpu = ioctl(g->fd, KVM_CREATE_VCPU, 0);
	BENCH_CHECK(g->vcpu >= 0, "KVM_CREATE_VCPU: %s", strerror(errno));
	g->run_size = (size_t)ioctl(g->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	g->run = mmap(NULL, g->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, g->vcpu, 0);
	BENCH_CHECK(g->run != MAP_FAILED, "mmap of kvm_run: %s", strerror(errno));
	vcpu_flat_protected_mode(g);
	return true;
}

static void guest_destroy(struct guest *g)
{
	munmap(g->run, g->run_size);
	close(g->vcpu);
	close(g->fd);
	munmap(g->aux, g->aux_size);
	close(g->kvm);
}

/* The guest writes one byte into every page of p. 0, or what dt_source_kvm_ring_full()
 * failed with: the vCPU cannot run on. */
static int guest_write(struct guest *g, struct dt_source *src, const struct pattern *p)
{
	struct kvm_regs regs = {.rflags = 2, .rcx = p->count};
	unsigned fulls = 0;

	if (!p->count)
		return 0;
	if (p->all) {
		regs.rip = g->aux_gpa + STRIDE_OFF;
		regs.rax = 0;
		regs.rdx = PAGE_SIZE;
	} else {
		uint32_t *list = (uint32_t *)(g->aux + LIST_OFF);

		for (uint64_t i = 0; i < p->count; i++)
			list[i] = (uint32_t)((p->pages[i] << PAGE_SHIFT) + i % PAGE_SIZE);
		regs.rip = g->aux_gpa;
		regs.rsi = g->aux_gpa + LIST_OFF;
	}
	BENCH_CHECK(!ioctl(g->vcpu, KVM_SET_REGS, &regs), "KVM_SET_REGS: %s", strerror(errno));
	for (;;) {
		int ret = ioctl(g->vcpu, KVM_RUN, 0);

		if (ret < 0 && errno == EINTR)
			continue;
		BENCH_CHECK(!ret, "KVM_RUN: %s", strerror(errno));
		if (g->run->exit_reason == KVM_EXIT_HLT)
			break;
		BENCH_CHECK(g->run->exit_reason == KVM_EXIT_DIRTY_RING_FULL,
			    "unexpected KVM exit %u", g->run->exit_reason);
		ret = dt_source_kvm_ring_full(src);
		if (ret)
			return ret;
		g->ring_full_exits++;
		BENCH_CHECK(++fulls <= p->count, "the vCPU spins on ring-full exits");
	}
	BENCH_CHECK(!ioctl(g->vcpu, KVM_GET_REGS, &regs) && !regs.rcx,
		    "the guest stopped with %llu pages to write", (unsigned long long)regs.rcx);
	return 0;
}

/* The dirty log the simplest way: the whole bitmap, then one CLEAR per reported word.
 * Returns when the GET returned: the rest is re-protection. */
static uint64_t naive_log(struct guest *g, struct src_bench *b, bool manual)
{
	struct kvm_dirty_log log = {.slot = 0, .dirty_bitmap = b->naive_bm};
	uint64_t got;

	BENCH_CHECK(!ioctl(g->fd, KVM_GET_DIRTY_LOG, &log), "naive KVM_GET_DIRTY_LOG: %s",
		    strerror(errno));
	got = now_ns();
	for (uint64_t w = 0; manual && w < b->nwords; w++) {
		struct kvm_clear_dirty_log clear = {.slot = 0,
						    .num_pages = 64,
						    .first_page = w * 64,
						    .dirty_bitmap = &b->naive_bm[w]};

		if (!b->naive_bm[w])
			continue;
		BENCH_CHECK(!ioctl(g->fd, KVM_CLEAR_DIRTY_LOG, &clear),
			    "naive KVM_CLEAR_DIRTY_LOG of page %" PRIu64 ": %s", w * 64,
			    strerror(errno));
	}
	compiler_barrier();
	return got;
}

/* One level; false and why when the ring lost entries (then the VM cannot go on). */
static bool measure_kvm(const struct opts *o, struct src_bench *b, struct guest *g,
			struct dt_source *src, const struct pattern *p, struct src_result *res,
			char *why, size_t len)
{
	uint64_t t_h[MAX_REPS], t_n[MAX_REPS], t_g[MAX_REPS], t_c[MAX_REPS], t_pte[MAX_REPS];
	uint64_t faults = 0;
	bool ring = dt_source_type(src) == DT_SOURCE_KVM_RING;
	bool manual = dt_source_caps(src) & DT_SOURCE_CAP_DEFER_CLEAR;
	const char *name = dt_source_name(src);

	memset(res, 0, sizeof(*res));
	res->has_naive = res->has_get = !ring;
	for (int r = -1; r < (int)o->reps; r++) { /* repetition -1 warms up */
		uint64_t t0, t1, t2 = 0, t3 = 0, tg = 0, t4, t5, t6, t7, f0;
		int64_t n;
		int ret;

		memset(b->bitmap, 0, b->nwords * 8);
		ret = guest_write(g, src, p);
		if (ret || !(dt_source_caps(src) & DT_SOURCE_CAP_EXACT)) {
			BENCH_CHECK(ring, "%s lost exactness at %g %%: %d", name, p->pct, ret);
			snprintf(why, len,
				 "at %g %% (%" PRIu64 " pages, a %u-entry ring): %s after %u "
				 "ring-full exits; this host's KVM overfills the ring "
				 "(docs/tracking.md)",
				 p->pct, p->count, g->ring_entries,
				 ret ? "the vCPU wedged (-EOVERFLOW)" : "the ring overflowed",
				 g->ring_full_exits);
			return false;
		}
		if (!o->warm)
			cache_scrub();
		f0 = faults_now();
		t0 = now_ns();
		n = dt_source_harvest(src, 0, b->npages, b->bitmap, 0);
		t1 = now_ns();
		faults += r >= 0 ? faults_now() - f0 : 0;
		BENCH_CHECK(n >= 0, "dt_source_harvest(%s): %" PRId64, name, n);
		if (ring && !(dt_source_caps(src) & DT_SOURCE_CAP_EXACT)) {
			snprintf(why, len,
				 "at %g %% (%" PRIu64 " pages, a %u-entry ring): the ring "
				 "overflowed, every page reported; this host's KVM overfills the "
				 "ring (docs/tracking.md)",
				 p->pct, p->count, g->ring_entries);
			return false;
		}
		BENCH_CHECK((uint64_t)n == p->count,
			    "dt_source_harvest(%s) at %g %% returned %" PRId64, name, p->pct, n);
		check_bitmap("harvest", name, p, b->bitmap, b->npages, true);

		if (res->has_naive) {
			memset(b->naive_bm, 0, b->nwords * 8);
			BENCH_CHECK(!guest_write(g, src, p), "guest run");
			if (!o->warm)
				cache_scrub();
			t2 = now_ns();
			tg = naive_log(g, b, manual);
			t3 = now_ns();
			check_bitmap("naive", name, p, b->naive_bm, b->npages, true);
		}
		if (!o->warm)
			cache_scrub();
		t4 = now_ns();
		memcpy(b->copy_dst, b->copy_src, b->nwords * 8);
		compiler_barrier();
		t5 = now_ns();
		if (!o->warm)
			cache_scrub();
		t6 = now_ns();
		memcpy(b->copy_dst, b->copy_src, b->npages * 8);
		compiler_barrier();
		t7 = now_ns();
		if (r < 0)
			continue;
		t_h[r] = t1 - t0;
		t_n[r] = t3 - t2;
		t_g[r] = tg - t2;
		t_c[r] = t5 - t4;
		t_pte[r] = t7 - t6;
	}
	res->pct = p->pct;
	res->written = res->pages = p->count;
	res->harvest = median_u64(t_h, o->reps);
	res->harvest_min = min_sorted(t_h, o->reps);
	res->harvest_max = max_sorted(t_h, o->reps);
	res->naive = median_u64(t_n, o->reps);
	res->get = median_u64(t_g, o->reps);
	res->copy = median_u64(t_c, o->reps);
	res->copy_pte = median_u64(t_pte, o->reps);
	res->faults = faults;
	return true;
}

void run_kvm_source(const struct opts *o, struct src_bench *b, enum dt_source_type type,
		    const char *name, const struct pattern pats[NLEVELS])
{
	uint64_t list_max = 0;
	struct dt_source_opts so = {.size = sizeof(so), .type = type, .nregions = 1, .nvcpus = 1};
	struct dt_source *src;
	struct guest g;
	char why[600];
	int ret;

	for (unsigned l = 0; l < NLEVELS; l++)
		if (!pats[l].all && pats[l].count > list_max)
			list_max = pats[l].count;
	if (!guest_create(&g, b, list_max, type == DT_SOURCE_KVM_RING, why, sizeof(why))) {
		print_skip("track_source", name, why);
		return;
	}
	so.regions = &g.region;
	so.vm_fd = g.fd;
	so.vcpu_fds = &g.vcpu;
	so.ring_entries = g.ring_entries;
	src = dt_source_new(&so);
	if (!src) {
		snprintf(why, sizeof(why), "dt_source_new: %s", strerror(errno));
		print_skip("track_source", name, why);
		guest_destroy(&g);
		return;
	}
	ret = dt_source_start(src);
	BENCH_CHECK(!ret, "dt_source_start(%s): %d", name, ret);
	for (unsigned l = 0; l < NLEVELS; l++) {
		struct src_result res;

		if (!measure_kvm(o, b, &g, src, &pats[l], &res, why, sizeof(why))) {
			print_skip("track_source", name, why);
			break; /* the ring lost entries: the VM cannot go on */
		}
		print_source_json(o, name, &res, b->size);
		source_table_row(name, &res, b->size);
	}
	dt_source_free(src);
	guest_destroy(&g);
}
