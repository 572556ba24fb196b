/* SPDX-License-Identifier: MIT */
/*
 * vmm/vm.c - the micro-VM's body: its config, the KVM VM with two memory banks and one vCPU,
 * the guest payload and its mailbox, and the self-check asked of the guest or done by the
 * host. The vCPU thread, pause/resume and vCPU state are in vm_cpu.c.
 *
 * Memory: two anonymous private mappings of mem_size / 2 (MAP_NORESERVE: a 3 GiB VM costs
 * only what the guest and the devices touch), memslots 0 and 1 at guest-physical 0 and
 * mem_size / 2. The layout inside is guest/mailbox.h's; the ledger, mailbox and code always
 * lie in bank 0 (bank 0 is at least 36 MiB), the workload area may straddle both banks.
 *
 * The self-check rules (the guest's self_check() in guest/guest.c, and vm_host_verify()):
 * a page whose ledger entry is g != 0 carries the stamp of g (guest_mix) and g is not from
 * the future; a page with entry 0 has word 0 == 0. The host may look mid-iteration (a pause
 * lands between any two guest instructions): it then forgives exactly one page of the
 * iteration in flight whose ledger still names its old generation and whose stamp words are
 * each either the old or the new generation's, which is what a half-stamped page looks like.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "guest/payload.h"
#include "vm_cpu.h"

#define MIB		 (1ull << 20)
#define BANK_ALIGN	 (2 * MIB)
#define TSS_GPA		 0xfffbd000ul /* VMX without unrestricted guest needs 3 pages for a TSS */
#define PAYLOAD_MAX	 (GUEST_CODE_MAX - 0x10000u) /* guest.ld keeps 64 KiB of stack */
#define NO_BAD		 UINT32_MAX		     /* first_bad when nothing is bad */
#define AREA_MAX_PAGES	 ((GUEST_MEM_MAX - GUEST_DEV_AREAS_SIZE - GUEST_AREA_GPA) / GUEST_PAGE)
#define LEDGER_MAX_PAGES ((GUEST_AREA_GPA - GUEST_LEDGER_GPA) / 4u)

_Static_assert(AREA_MAX_PAGES <= LEDGER_MAX_PAGES, "the ledger cannot cover the largest area");
_Static_assert(sizeof(struct guest_mailbox) <= GUEST_PAGE, "the mailbox is one page");

void vm_config_defaults(struct vm_config *cfg)
{
	*cfg = (struct vm_config){
		.mem_size = 512 * MIB,
		.hot_pages = 32,
		.sweep_pages = 32,
		.iter_per_sec = 200,
		.dirty_ring = 0,
	};
}

static uint32_t area_pages_of(uint64_t mem_size)
{
	return (uint32_t)((mem_size - GUEST_DEV_AREAS_SIZE - GUEST_AREA_GPA) / GUEST_PAGE);
}

static int config_check(const struct vm_config *cfg)
{
	uint32_t area;

	if (cfg->mem_size % BANK_ALIGN || cfg->mem_size < GUEST_MEM_MIN ||
	    cfg->mem_size > GUEST_MEM_MAX) {
		fprintf(stderr,
			"vm: mem_size %llu is not a multiple of 2 MiB in [%llu, %llu] MiB\n",
			(unsigned long long)cfg->mem_size, (unsigned long long)GUEST_MEM_MIN / MIB,
			(unsigned long long)GUEST_MEM_MAX / MIB);
		return -EINVAL;
	}
	area = area_pages_of(cfg->mem_size);
	if ((uint64_t)cfg->hot_pages + cfg->sweep_pages > area) {
		fprintf(stderr,
			"vm: hot_pages %u + sweep_pages %u exceed the %u pages of the area\n",
			cfg->hot_pages, cfg->sweep_pages, area);
		return -EINVAL;
	}
	return 0;
}

void *vm_gpa_to_host(const struct vm *vm, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < VM_NBANKS; i++) {
		const struct dt_region *b = &vm->banks[i];

		if (b->host && gpa >= b->addr && len <= b->size && gpa - b->addr <= b->size - len)
			return (uint8_t *)b->host + (gpa - b->addr);
	}
	return NULL;
}

uint64_t vm_dev_area_gpa(const struct vm *vm, unsigned i)
{
	return vm->cfg.mem_size - GUEST_DEV_AREAS_SIZE + (uint64_t)i * GUEST_DEV_AREA_SIZE;
}

uint32_t vm_generation(const struct vm *vm)
{
	const volatile struct guest_mailbox *mb = vm->mailbox;

	return mb ? mb->generation : 0;
}

static int host_write_memcpy(void *opaque, uint64_t gpa, const void *data, size_t len)
{
	void *host = vm_gpa_to_host(opaque, gpa, len);

	if (!host)
		return -EFAULT;
	memcpy(host, data, len);
	return 0;
}

/* Undo what vm_create() did so far; every field it sets is NULL/-1 until set. */
static void vm_release(struct vm *vm)
{
	if (vm->run)
		munmap(vm->run, vm->run_size);
	if (vm->vcpu_fd >= 0)
		close(vm->vcpu_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	for (unsigned i = 0; i < VM_NBANKS; i++) {
		if (vm->banks[i].host)
			munmap(vm->banks[i].host, vm->banks[i].size);
		if (vm->bank_fd[i] >= 0)
			close(vm->bank_fd[i]);
		vm->bank_fd[i] = -1;
	}
	vm->run = NULL;
	vm->vcpu_fd = vm->vm_fd = vm->kvm_fd = -1;
	memset(vm->banks, 0, sizeof(vm->banks));
	vm->mailbox = NULL;
}

static int kvm_open(struct vm *vm)
{
	int version;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		int err = errno;

		fprintf(stderr, "vm: /dev/kvm: %s\n", strerror(err));
		return err == ENOENT || err == ENXIO || err == ENODEV ? -ENODEV : -err;
	}
	version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION) {
		fprintf(stderr, "vm: KVM API version %d, expected %d\n", version, KVM_API_VERSION);
		return -ENODEV;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		int err = errno;

		fprintf(stderr, "vm: KVM_CREATE_VM: %s\n", strerror(err));
		return -err;
	}
	/* Only VMX without unrestricted guest needs it; elsewhere a failure is harmless. */
	(void)ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, TSS_GPA);
	return 0;
}

static int banks_create(struct vm *vm)
{
	uint64_t bank_size = vm->cfg.mem_size / VM_NBANKS;

	for (unsigned i = 0; i < VM_NBANKS; i++) {
		struct kvm_userspace_memory_region m = {0};
		void *host = MAP_FAILED;
		char name[32];

		snprintf(name, sizeof(name), "dt-vm-bank%u", i);
		vm->bank_fd[i] = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (vm->bank_fd[i] >= 0 && !ftruncate(vm->bank_fd[i], (off_t)bank_size))
			host = mmap(NULL, bank_size, PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_NORESERVE, vm->bank_fd[i], 0);
		if (host == MAP_FAILED) {
			int err = errno;

			fprintf(stderr, "vm: memfd bank %u (%llu MiB): %s\n", i,
				(unsigned long long)(bank_size / MIB), strerror(err));
			return -err;
		}
		vm->banks[i] = (struct dt_region){
			.addr = i * bank_size, .size = bank_size, .host = host, .slot = i};
		m.slot = i;
		m.guest_phys_addr = vm->banks[i].addr;
		m.memory_size = bank_size;
		m.userspace_addr = (uintptr_t)host;
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &m)) {
			int err = errno;

			fprintf(stderr, "vm: KVM_SET_USER_MEMORY_REGION slot %u: %s\n", i,
				strerror(err));
			return -err;
		}
	}
	return 0;
}

static int vcpu_create(struct vm *vm)
{
	int size;

	if (vm->cfg.dirty_ring) {
		int ret = dt_kvm_dirty_ring_enable(vm->vm_fd, &vm->cfg.dirty_ring);

		if (ret) {
			fprintf(stderr, "vm: dirty ring of %u entries: %s\n", vm->cfg.dirty_ring,
				strerror(-ret));
			return ret;
		}
	}
	vm->vcpu_fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, 0);
	if (vm->vcpu_fd < 0) {
		int err = errno;

		fprintf(stderr, "vm: KVM_CREATE_VCPU: %s\n", strerror(err));
		return -err;
	}
	size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (size < (int)sizeof(struct kvm_run)) {
		fprintf(stderr, "vm: KVM_GET_VCPU_MMAP_SIZE: %d\n", size);
		return size < 0 ? -errno : -EPROTO;
	}
	vm->run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu_fd, 0);
	if (vm->run == MAP_FAILED) {
		int err = errno;

		vm->run = NULL;
		fprintf(stderr, "vm: mmap of kvm_run: %s\n", strerror(err));
		return -err;
	}
	vm->run_size = (size_t)size;
	return 0;
}

static int payload_load(struct vm *vm)
{
	void *code = vm_gpa_to_host(vm, GUEST_CODE_GPA, PAYLOAD_MAX);
	struct guest_mailbox *mb = vm->mailbox;

	if (guest_payload_len > PAYLOAD_MAX || !code) {
		fprintf(stderr, "vm: the guest payload (%u bytes) does not fit in %u\n",
			guest_payload_len, PAYLOAD_MAX);
		return -E2BIG;
	}
	memcpy(code, guest_payload, guest_payload_len);
	*mb = (struct guest_mailbox){
		.magic = GUEST_MAGIC,
		.version = GUEST_VERSION,
		.area_pages = area_pages_of(vm->cfg.mem_size),
		.hot_pages = vm->cfg.hot_pages,
		.sweep_pages = vm->cfg.sweep_pages,
		.cmd = GUEST_CMD_RUN,
		.verify_first_bad = NO_BAD,
	};
	return 0;
}

int vm_create(struct vm *vm, const struct vm_config *cfg, bool load_payload)
{
	int ret;

	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->vcpu_fd = -1;
	for (unsigned i = 0; i < VM_NBANKS; i++)
		vm->bank_fd[i] = -1;
	vm->state = VM_NONE;
	ret = config_check(cfg);
	if (ret)
		return ret;
	vm->cfg = *cfg;
	vm->host_write = host_write_memcpy;
	vm->host_write_opaque = vm;
	ret = kvm_open(vm);
	if (!ret)
		ret = banks_create(vm);
	if (!ret)
		ret = vcpu_create(vm);
	if (!ret) {
		vm->mailbox = vm_gpa_to_host(vm, GUEST_MAILBOX_GPA, GUEST_PAGE);
		if (load_payload)
			ret = payload_load(vm);
	}
	if (!ret)
		ret = vm_cpu_init(vm);
	if (ret)
		vm_release(vm);
	return ret;
}

void vm_destroy(struct vm *vm)
{
	if (vm->state == VM_NONE)
		return;
	vm_cpu_fini(vm);
	vm_release(vm);
	vm->state = VM_NONE;
}

/* ---- the self-check ------------------------------------------------------------------- */

static bool stamp_is(const volatile uint32_t *w, uint32_t g, uint32_t p)
{
	return w[0] == g && w[1] == p && w[2] == guest_mix(g, p) && w[GUEST_STAMP_LAST_WORD] == ~g;
}

/* Each stamp word is old's (all zero for a page never written) or new's: a page the guest
 * was stamping when it stopped. */
static bool stamp_is_between(const volatile uint32_t *w, uint32_t old, uint32_t new, uint32_t p)
{
	uint32_t want_old[4] = {old, p, guest_mix(old, p), ~old};
	uint32_t want_new[4] = {new, p, guest_mix(new, p), ~new};
	uint32_t seen[4] = {w[0], w[1], w[2], w[GUEST_STAMP_LAST_WORD]};

	if (!old)
		memset(want_old, 0, sizeof(want_old));
	for (unsigned i = 0; i < 4; i++)
		if (seen[i] != want_old[i] && seen[i] != want_new[i])
			return false;
	return true;
}

/* Page p is stamped by the iteration that starts at generation gen + 1 and sweep_pos pos. */
static bool in_iteration(const struct guest_mailbox *cfg, uint32_t p, uint32_t pos)
{
	uint32_t sweep_len = cfg->area_pages - cfg->hot_pages;

	if (p < cfg->hot_pages)
		return true;
	return sweep_len && (p - cfg->hot_pages + sweep_len - pos) % sweep_len < cfg->sweep_pages;
}

void vm_host_verify(const struct vm *vm, struct vm_verify *out, uint32_t *bad, unsigned maxbad)
{
	const volatile struct guest_mailbox *mb = vm->mailbox;
	struct guest_mailbox cfg = {
		.area_pages = area_pages_of(vm->cfg.mem_size),
		.hot_pages = mb->hot_pages,
		.sweep_pages = mb->sweep_pages,
	};
	const volatile uint32_t *ledger;
	uint32_t gen = mb->generation, pos = mb->sweep_pos;
	bool forgiven = false;

	*out = (struct vm_verify){.first_bad = NO_BAD};
	/* Mailbox values the guest would have refused: nothing is in flight. */
	if (cfg.hot_pages > cfg.area_pages || cfg.sweep_pages > cfg.area_pages - cfg.hot_pages ||
	    (pos && pos >= cfg.area_pages - cfg.hot_pages))
		forgiven = true;
	ledger = vm_gpa_to_host(vm, GUEST_LEDGER_GPA, (uint64_t)cfg.area_pages * 4);
	for (uint32_t p = 0; p < cfg.area_pages; p++) {
		const volatile uint32_t *w =
			vm_gpa_to_host(vm, GUEST_AREA_GPA + (uint64_t)p * GUEST_PAGE, GUEST_PAGE);
		uint32_t g = ledger[p];
		bool ok;

		if (!g) {
			ok = w[0] == 0;
		} else {
			out->checked++;
			/* g == gen + 1: stamped earlier in the iteration in flight */
			ok = g <= gen + 1 && stamp_is(w, g, p);
		}
		if (!ok && !forgiven && g <= gen && in_iteration(&cfg, p, pos) &&
		    stamp_is_between(w, g, gen + 1, p)) {
			forgiven = true;
			out->checked -= g != 0;
			continue;
		}
		if (ok)
			continue;
		if (out->bad < maxbad)
			bad[out->bad] = p;
		if (!out->bad++)
			out->first_bad = p;
	}
}

int vm_guest_verify(struct vm *vm, int timeout_ms, struct vm_verify *out)
{
	uint32_t cmd = GUEST_CMD_VERIFY, seq;
	struct timespec deadline;
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_RUNNING) {
		ret = vm->state == VM_FAILED ? vm->error : -EINVAL;
		pthread_mutex_unlock(&vm->lock);
		if (ret == -EINVAL)
			fprintf(stderr, "vm: the guest's self-check needs a running vCPU\n");
		return ret;
	}
	seq = vm->verify_seq;
	pthread_mutex_unlock(&vm->lock);

	ret = vm->host_write(vm->host_write_opaque,
			     GUEST_MAILBOX_GPA + offsetof(struct guest_mailbox, cmd), &cmd,
			     sizeof(cmd));
	if (ret) {
		fprintf(stderr, "vm: writing the VERIFY command: %s\n", strerror(-ret));
		return ret;
	}
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&vm->lock);
	while (vm->verify_seq == seq && vm->state == VM_RUNNING)
		if (pthread_cond_timedwait(&vm->cond, &vm->lock, &deadline) == ETIMEDOUT)
			break;
	if (vm->state == VM_FAILED)
		ret = vm->error;
	else if (vm->verify_seq == seq)
		ret = -ETIMEDOUT;
	pthread_mutex_unlock(&vm->lock);
	if (ret) {
		fprintf(stderr, "vm: no self-check report: %s\n", strerror(-ret));
		return ret;
	}
	*out = (struct vm_verify){
		.bad = vm->mailbox->verify_bad,
		.first_bad = vm->mailbox->verify_first_bad,
		.checked = vm->mailbox->verify_checked,
	};
	return 0;
}
