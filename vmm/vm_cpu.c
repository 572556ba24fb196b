/* SPDX-License-Identifier: MIT */
/*
 * vmm/vm_cpu.c - the micro-VM's vCPU: its first state (32-bit protected mode through
 * KVM_SET_SREGS: flat 4 GiB code and data segments, no GDT in guest memory, no paging, no
 * interrupts), the vCPU thread with its pause protocol, and the vCPU state blob.
 *
 * The vCPU thread runs KVM_RUN and handles the payload's port exits: ticks are throttled to
 * cfg.iter_per_sec by waiting for the next slot before KVM_RUN is entered again (a timed wait
 * on vm->cond, so a pause is not delayed by it, and a vCPU paused mid-wait waits out the rest
 * after its resume), a self-check report bumps verify_seq, a panic or any other exit stops
 * the thread with -EIO.
 *
 * Pause protocol (KVM's api.rst, "immediate_exit"): the control thread sets state PAUSING and
 * run->immediate_exit under vm->lock, then kicks the thread with a signal. Either KVM_RUN is
 * running and the signal makes it return -EINTR, or it has not been entered yet and
 * immediate_exit makes it return -EINTR at once: no pause is lost. Before parking, the thread
 * enters KVM_RUN once more with immediate_exit set, which completes the exit it last handled
 * (an OUT is finished, RIP moved past it) and returns -EINTR; only then is the vCPU state
 * complete enough to save and resume elsewhere.
 *
 * The kick is VM_KICK_SIGNAL, a real-time signal with a handler that does nothing (installed
 * once per process unless a handler is already there: any handler interrupts KVM_RUN).
 *
 * Locking: vm->lock guards state, error, panic and verify_seq and run->immediate_exit while
 * the thread can be in KVM_RUN; vm->cond (CLOCK_MONOTONIC) is broadcast on every change.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include <linux/kvm.h>

#include "flat32.h"
#include "vm_cpu.h"

#define VM_KICK_SIGNAL (SIGRTMIN + 1)
#define CPU_MAGIC      0x55504356u /* "VCPU" */
#define CPU_VERSION    1u
#define RFLAGS_FIXED   (1ull << 1)
#define NSEC	       1000000000ll

/* The vCPU state blob: this header, then what KVM_GET_REGS/SREGS/FPU return. Same host
 * architecture and KVM UAPI on both sides, so the structs are copied as they are. */
struct cpu_state {
	uint32_t magic, version;
	uint32_t size;	   /* of the whole blob */
	uint32_t reserved; /* 0 */
	uint64_t mem_size; /* the VM's: the destination must match */
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
};

static void kick_handler(int sig)
{
	(void)sig;
}

static void kick_install(void)
{
	struct sigaction sa, old;

	if (!sigaction(VM_KICK_SIGNAL, NULL, &old) &&
	    (old.sa_flags & SA_SIGINFO ? old.sa_sigaction != NULL
				       : old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN))
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: interrupted calls return EINTR */
	sigaction(VM_KICK_SIGNAL, &sa, NULL);
}

static int vcpu_ioctl(struct vm *vm, unsigned long req, void *arg, const char *name)
{
	if (ioctl(vm->vcpu_fd, req, arg)) {
		int err = errno;

		fprintf(stderr, "vm: %s: %s\n", name, strerror(err));
		return -err;
	}
	return 0;
}

int vm_cpu_init(struct vm *vm)
{
	struct kvm_regs regs = {.rip = GUEST_CODE_GPA, .rflags = RFLAGS_FIXED};
	struct kvm_sregs sregs;
	pthread_condattr_t attr;
	int ret;

	ret = vcpu_ioctl(vm, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
	if (ret)
		return ret;
	flat32_sregs(&sregs);
	ret = vcpu_ioctl(vm, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
	if (!ret)
		ret = vcpu_ioctl(vm, KVM_SET_REGS, &regs, "KVM_SET_REGS");
	if (ret)
		return ret;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->cond, &attr);
	pthread_condattr_destroy(&attr);
	vm->state = VM_IDLE;
	return 0;
}

/* ---- the vCPU thread ------------------------------------------------------------------ */

static const char *exit_name(uint32_t reason)
{
	switch (reason) {
	case KVM_EXIT_IO:
		return "IO";
	case KVM_EXIT_HLT:
		return "HLT";
	case KVM_EXIT_MMIO:
		return "MMIO";
	case KVM_EXIT_SHUTDOWN:
		return "SHUTDOWN (triple fault)";
	case KVM_EXIT_FAIL_ENTRY:
		return "FAIL_ENTRY";
	case KVM_EXIT_INTERNAL_ERROR:
		return "INTERNAL_ERROR";
	case KVM_EXIT_DIRTY_RING_FULL:
		return "DIRTY_RING_FULL";
	default:
		return "?";
	}
}

static int unexpected_exit(struct vm *vm, const char *why)
{
	struct kvm_run *run = vm->run;
	struct kvm_regs regs = {0};

	ioctl(vm->vcpu_fd, KVM_GET_REGS, &regs);
	fprintf(stderr, "vm: %s: exit %u (%s) at rip 0x%llx", why, run->exit_reason,
		exit_name(run->exit_reason), (unsigned long long)regs.rip);
	if (run->exit_reason == KVM_EXIT_IO)
		fprintf(stderr, ", %s port 0x%x size %u count %u",
			run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in", run->io.port,
			run->io.size, run->io.count);
	else if (run->exit_reason == KVM_EXIT_MMIO)
		fprintf(stderr, ", %s gpa 0x%llx", run->mmio.is_write ? "write" : "read",
			(unsigned long long)run->mmio.phys_addr);
	else if (run->exit_reason == KVM_EXIT_FAIL_ENTRY)
		fprintf(stderr, ", reason 0x%llx",
			(unsigned long long)run->fail_entry.hardware_entry_failure_reason);
	else if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
		fprintf(stderr, ", suberror %u", run->internal.suberror);
	fprintf(stderr, "\n");
	return -EIO;
}

static void timespec_add_ns(struct timespec *t, long long ns)
{
	ns += t->tv_nsec;
	t->tv_sec += ns / NSEC;
	t->tv_nsec = ns % NSEC;
}

static bool timespec_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* A tick: the next iteration may start one period after this one's slot. A vCPU late by more
 * than a period starts afresh rather than bursting to catch up. */
static void tick_throttle(struct vm *vm, struct timespec *next)
{
	struct timespec now;

	if (!vm->cfg.iter_per_sec)
		return;
	timespec_add_ns(next, NSEC / vm->cfg.iter_per_sec);
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (timespec_before(next, &now))
		*next = now;
}

/* Before KVM_RUN, with vm->lock held: wait for the slot of the next iteration, or until the
 * state changes (the caller looks at it again). */
static void tick_wait(struct vm *vm, const struct timespec *next)
{
	struct timespec now;

	if (!vm->cfg.iter_per_sec)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	while (vm->state == VM_RUNNING && timespec_before(&now, next)) {
		if (pthread_cond_timedwait(&vm->cond, &vm->lock, next) == ETIMEDOUT)
			return;
		clock_gettime(CLOCK_MONOTONIC, &now);
	}
}

/* An exit of KVM_RUN, with vm->lock held: 0 to go on, or the error that stops the vCPU. */
static int vcpu_exit(struct vm *vm, struct timespec *next)
{
	struct kvm_run *run = vm->run;
	uint32_t value;

	if (run->exit_reason == KVM_EXIT_DIRTY_RING_FULL && vm->ring_full) {
		int ret;

		pthread_mutex_unlock(&vm->lock);
		ret = vm->ring_full(vm->ring_full_opaque);
		pthread_mutex_lock(&vm->lock);
		if (ret)
			fprintf(stderr, "vm: dirty ring full: %s\n", strerror(-ret));
		return ret;
	}
	if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT ||
	    run->io.size != 4 || run->io.count != 1)
		return unexpected_exit(vm, "unexpected exit");
	memcpy(&value, (uint8_t *)run + run->io.data_offset, sizeof(value));
	switch (run->io.port) {
	case GUEST_PORT_TICK:
		atomic_fetch_add(&vm->ticks, 1);
		tick_throttle(vm, next);
		return 0;
	case GUEST_PORT_VERIFY:
		vm->verify_seq++;
		pthread_cond_broadcast(&vm->cond);
		return 0;
	case GUEST_PORT_PANIC:
		vm->panic = value;
		fprintf(stderr, "vm: guest panic %u (%s)\n", value,
			value == GUEST_PANIC_MAILBOX  ? "mailbox magic or version"
			: value == GUEST_PANIC_CONFIG ? "workload config"
						      : "?");
		return -EIO;
	default:
		return unexpected_exit(vm, "unexpected port");
	}
}

/* Finish the exit last handled (see the top of the file). */
static int vcpu_complete(struct vm *vm)
{
	int ret;

	vm->run->immediate_exit = 1;
	ret = ioctl(vm->vcpu_fd, KVM_RUN, 0);
	if (ret < 0 && errno == EINTR)
		return 0;
	if (!ret)
		return unexpected_exit(vm, "completing the last exit");
	ret = -errno;
	fprintf(stderr, "vm: KVM_RUN to complete the last exit: %s\n", strerror(-ret));
	return ret;
}

static void *vcpu_thread(void *arg)
{
	struct vm *vm = arg;
	struct timespec next;
	sigset_t kick;
	int ret = 0;

	sigemptyset(&kick);
	sigaddset(&kick, VM_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
	clock_gettime(CLOCK_MONOTONIC, &next);

	pthread_mutex_lock(&vm->lock);
	while (vm->state != VM_QUIT) {
		if (vm->state == VM_PAUSED) {
			pthread_cond_wait(&vm->cond, &vm->lock);
			continue;
		}
		if (vm->state == VM_PAUSING) {
			ret = vcpu_complete(vm);
			if (ret)
				break;
			vm->state = VM_PAUSED;
			pthread_cond_broadcast(&vm->cond);
			continue;
		}
		tick_wait(vm, &next);
		if (vm->state != VM_RUNNING)
			continue;
		/* RUNNING: a pause from here on sets immediate_exit after this */
		vm->run->immediate_exit = 0;
		pthread_mutex_unlock(&vm->lock);
		ret = ioctl(vm->vcpu_fd, KVM_RUN, 0) ? -errno : 0;
		pthread_mutex_lock(&vm->lock);
		if (ret == -EINTR || ret == -EAGAIN) {
			ret = 0;
			continue;
		}
		if (ret) {
			fprintf(stderr, "vm: KVM_RUN: %s\n", strerror(-ret));
			break;
		}
		ret = vcpu_exit(vm, &next);
		if (ret)
			break;
	}
	if (ret) {
		vm->error = ret;
		if (vm->state != VM_QUIT)
			vm->state = VM_FAILED;
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

/* With vm->lock held, state RUNNING or PAUSING: make KVM_RUN return, now or at entry. */
static void vcpu_kick(struct vm *vm)
{
	vm->run->immediate_exit = 1;
	pthread_kill(vm->thread, VM_KICK_SIGNAL);
	pthread_cond_broadcast(&vm->cond);
}

int vm_start(struct vm *vm)
{
	static pthread_once_t kick_once = PTHREAD_ONCE_INIT;
	int ret = 0;

	pthread_once(&kick_once, kick_install);
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_IDLE) {
		fprintf(stderr, "vm: vm_start: the vCPU thread was started already\n");
		ret = -EBUSY;
	} else {
		vm->state = VM_RUNNING;
		ret = -pthread_create(&vm->thread, NULL, vcpu_thread, vm);
		if (ret) {
			vm->state = VM_IDLE;
			fprintf(stderr, "vm: vCPU thread: %s\n", strerror(-ret));
		} else {
			vm->thread_started = true;
		}
	}
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

int vm_pause(struct vm *vm)
{
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_RUNNING) {
		vm->state = VM_PAUSING;
		vcpu_kick(vm);
		while (vm->state == VM_PAUSING)
			pthread_cond_wait(&vm->cond, &vm->lock);
	}
	if (vm->state == VM_FAILED)
		ret = vm->error;
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

int vm_resume(struct vm *vm)
{
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	switch (vm->state) {
	case VM_PAUSED:
		vm->state = VM_RUNNING;
		pthread_cond_broadcast(&vm->cond);
		break;
	case VM_RUNNING:
		break;
	case VM_FAILED:
		ret = vm->error;
		break;
	default:
		fprintf(stderr, "vm: vm_resume: the vCPU thread was never started\n");
		ret = -EINVAL;
	}
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

void vm_cpu_fini(struct vm *vm)
{
	if (vm->thread_started) {
		pthread_mutex_lock(&vm->lock);
		vm->state = VM_QUIT;
		vcpu_kick(vm);
		pthread_mutex_unlock(&vm->lock);
		pthread_join(vm->thread, NULL);
		vm->thread_started = false;
	}
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
}

/* ---- vCPU state ----------------------------------------------------------------------- */

/* The vCPU is not in KVM_RUN and will not enter it: 0, else -EBUSY (logged). */
static int cpu_quiescent(struct vm *vm, const char *who)
{
	int state;

	pthread_mutex_lock(&vm->lock);
	state = vm->state;
	pthread_mutex_unlock(&vm->lock);
	if (state == VM_IDLE || state == VM_PAUSED || state == VM_FAILED)
		return 0;
	fprintf(stderr, "vm: %s: the vCPU is running; pause it first\n", who);
	return -EBUSY;
}

size_t vm_cpu_state_size(void)
{
	return sizeof(struct cpu_state);
}

int64_t vm_save_cpu(struct vm *vm, void *buf, size_t cap)
{
	struct cpu_state s = {
		.magic = CPU_MAGIC,
		.version = CPU_VERSION,
		.size = sizeof(s),
		.mem_size = vm->cfg.mem_size,
	};
	int ret;

	if (cap < sizeof(s))
		return -ENOSPC;
	ret = cpu_quiescent(vm, "vm_save_cpu");
	if (!ret)
		ret = vcpu_ioctl(vm, KVM_GET_REGS, &s.regs, "KVM_GET_REGS");
	if (!ret)
		ret = vcpu_ioctl(vm, KVM_GET_SREGS, &s.sregs, "KVM_GET_SREGS");
	if (!ret)
		ret = vcpu_ioctl(vm, KVM_GET_FPU, &s.fpu, "KVM_GET_FPU");
	if (ret)
		return ret;
	memcpy(buf, &s, sizeof(s));
	return sizeof(s);
}

/* What the payload can run in: 32-bit protected mode without paging, RIP in its code. */
static const char *cpu_state_invalid(const struct vm *vm, const struct cpu_state *s, size_t len)
{
	if (len != sizeof(*s))
		return "wrong length";
	if (s->magic != CPU_MAGIC)
		return "wrong magic";
	if (s->version != CPU_VERSION)
		return "unknown version";
	if (s->size != sizeof(*s) || s->reserved)
		return "wrong size field or reserved field set";
	if (s->mem_size != vm->cfg.mem_size)
		return "saved from a VM with another memory size";
	if (!(s->sregs.cr0 & CR0_PE) || (s->sregs.cr0 & CR0_PG) || !s->sregs.cs.db ||
	    !s->sregs.cs.present)
		return "not in 32-bit protected mode without paging";
	if (!(s->regs.rflags & RFLAGS_FIXED) || s->regs.rip < GUEST_CODE_GPA ||
	    s->regs.rip >= GUEST_CODE_GPA + GUEST_CODE_MAX)
		return "RIP outside the payload or RFLAGS malformed";
	return NULL;
}

int vm_load_cpu(struct vm *vm, const void *buf, size_t len)
{
	struct cpu_state s;
	const char *why;
	int ret;

	memset(&s, 0, sizeof(s));
	memcpy(&s, buf, len < sizeof(s) ? len : sizeof(s));
	why = cpu_state_invalid(vm, &s, len);
	if (why) {
		fprintf(stderr, "vm: vCPU state of %zu bytes refused: %s\n", len, why);
		return -EINVAL;
	}
	ret = cpu_quiescent(vm, "vm_load_cpu");
	if (!ret)
		ret = vcpu_ioctl(vm, KVM_SET_SREGS, &s.sregs, "KVM_SET_SREGS");
	if (!ret)
		ret = vcpu_ioctl(vm, KVM_SET_REGS, &s.regs, "KVM_SET_REGS");
	if (!ret)
		ret = vcpu_ioctl(vm, KVM_SET_FPU, &s.fpu, "KVM_SET_FPU");
	return ret;
}
