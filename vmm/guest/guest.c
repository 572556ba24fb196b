/* SPDX-License-Identifier: MIT */
/*
 * vmm/guest/guest.c - the micro-VM's guest payload: a freestanding 32-bit program (protected
 * mode, flat segments, no paging, no interrupts) linked at GUEST_CODE_GPA by guest.ld.
 *
 * It checks the mailbox the VMM filled (guest/mailbox.h), then loops forever. An iteration
 * with stamp g = generation + 1 stamps the hot pages (area pages [0, hot_pages)) and the next
 * sweep_pages pages of the sweep (area pages [hot_pages, area_pages), cycling from
 * sweep_pos), then publishes generation = g and reports it on GUEST_PORT_TICK. A VERIFY
 * command, read once per iteration, replaces one iteration by the self-check.
 *
 * Invariants:
 *  - a page's stamp is written before its ledger entry, and generation after every ledger
 *    entry of the iteration. Between iterations every page agrees with its ledger and every
 *    entry is <= generation; mid-iteration (where a pause may land) at most one page, the one
 *    being stamped, holds words of two generations, and its ledger still names the old one.
 *  - the state of an iteration lives in registers and in guest memory only, so a vCPU paused
 *    anywhere and resumed elsewhere (exact memory and registers) goes on as if never moved.
 *  - per stamped page: four stamp words and one ledger word, nothing else; guest writes cost
 *    microseconds each under an emulating KVM.
 */
#include <stdint.h>

#include "mailbox.h"

#define LEDGER_MAX_PAGES ((GUEST_AREA_GPA - GUEST_LEDGER_GPA) / 4u)
#define AREA_MAX_PAGES                                                                             \
	((uint32_t)((GUEST_MEM_MAX - GUEST_DEV_AREAS_SIZE - GUEST_AREA_GPA) / GUEST_PAGE))

_Static_assert(AREA_MAX_PAGES <= LEDGER_MAX_PAGES, "the ledger cannot cover the largest area");

/* Entry at the first byte of the image (guest.ld puts .text.entry first): a stack at the top
 * of the code region (guest_stack_top, from guest.ld), then guest_main(), which never
 * returns. */
__asm__(".section .text.entry, \"ax\", @progbits\n"
	".globl _start\n"
	"_start:\n"
	"	cli\n"
	"	movl $guest_stack_top, %esp\n"
	"	call guest_main\n"
	"1:	hlt\n"
	"	jmp 1b\n"
	".previous\n");

static volatile struct guest_mailbox *const mailbox =
	(volatile struct guest_mailbox *)GUEST_MAILBOX_GPA;
static volatile uint32_t *const ledger = (volatile uint32_t *)GUEST_LEDGER_GPA;

/* The port is in dx (out dx, eax: one byte, 0xef), so that the VMM's tests can tell an OUT
 * that completed from one still pending by the byte before RIP. */
static inline void port_out(uint16_t port, uint32_t value)
{
	__asm__ volatile("outl %0, %1" : : "a"(value), "d"(port) : "memory");
}

static __attribute__((noreturn)) void panic(uint32_t code)
{
	port_out(GUEST_PORT_PANIC, code);
	for (;;)
		__asm__ volatile("hlt");
}

static inline volatile uint32_t *area_page(uint32_t p)
{
	return (volatile uint32_t *)(uintptr_t)(GUEST_AREA_GPA + p * GUEST_PAGE);
}

static inline void stamp(uint32_t p, uint32_t g)
{
	volatile uint32_t *w = area_page(p);

	w[0] = g;
	w[1] = p;
	w[2] = guest_mix(g, p);
	w[GUEST_STAMP_LAST_WORD] = ~g;
	ledger[p] = g;
}

/* Same rules as vm_host_verify() (vm.c), between iterations: a page with a ledger entry
 * carries exactly that generation's stamp, a page without one was never written (word 0 is
 * 0), and no entry is from the future. */
static void self_check(uint32_t area_pages, uint32_t generation)
{
	uint32_t bad = 0, first_bad = UINT32_MAX, checked = 0;

	for (uint32_t p = 0; p < area_pages; p++) {
		volatile uint32_t *w = area_page(p);
		uint32_t g = ledger[p];
		int ok;

		if (!g) {
			ok = w[0] == 0;
		} else {
			checked++;
			ok = g <= generation && w[0] == g && w[1] == p && w[2] == guest_mix(g, p) &&
			     w[GUEST_STAMP_LAST_WORD] == ~g;
		}
		if (!ok && !bad++)
			first_bad = p;
	}
	mailbox->verify_bad = bad;
	mailbox->verify_first_bad = first_bad;
	mailbox->verify_checked = checked;
	mailbox->verify_runs = mailbox->verify_runs + 1;
	mailbox->cmd = GUEST_CMD_RUN;
	port_out(GUEST_PORT_VERIFY, bad);
}

void guest_main(void);

__attribute__((noreturn, used)) void guest_main(void)
{
	uint32_t area_pages, hot, sweep, sweep_len;

	if (mailbox->magic != GUEST_MAGIC || mailbox->version != GUEST_VERSION)
		panic(GUEST_PANIC_MAILBOX);
	area_pages = mailbox->area_pages;
	hot = mailbox->hot_pages;
	sweep = mailbox->sweep_pages;
	if (!area_pages || area_pages > AREA_MAX_PAGES || hot > area_pages ||
	    sweep > area_pages - hot)
		panic(GUEST_PANIC_CONFIG);
	sweep_len = area_pages - hot;
	if (mailbox->sweep_pos >= sweep_len && mailbox->sweep_pos)
		panic(GUEST_PANIC_CONFIG);

	for (;;) {
		uint32_t g = mailbox->generation + 1, pos = mailbox->sweep_pos;

		if (mailbox->cmd == GUEST_CMD_VERIFY) {
			self_check(area_pages, g - 1);
			continue;
		}
		for (uint32_t p = 0; p < hot; p++)
			stamp(p, g);
		for (uint32_t i = 0; i < sweep; i++) {
			stamp(hot + pos, g);
			if (++pos == sweep_len)
				pos = 0;
		}
		mailbox->sweep_pos = pos;
		mailbox->generation = g;
		port_out(GUEST_PORT_TICK, g);
	}
}
