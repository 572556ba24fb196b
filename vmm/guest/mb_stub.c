/* SPDX-License-Identifier: MIT */
/*
 * vmm/guest/mb_stub.c - boots the micro-VM's guest payload, byte for byte, on a PC that
 * loads Multiboot (v1) kernels: `qemu-system-x86_64 -kernel guest-mb.bin -append "hot=N
 * sweep=N mem=MIB"`. The stub plays the micro-VM's part of the start: it fills the mailbox as vm.c
 * does, then enters the payload. Linked with the payload by mb_image.ld (vmm/guest/meson.build).
 *
 * Why a stub and not the payload alone:
 *  - the payload expects the mailbox at GUEST_MAILBOX_GPA filled by the VMM (magic, version,
 *    workload); a PC firmware leaves it as it was. The workload comes from the Multiboot
 *    command line, the memory size from its mem=MIB or else the Multiboot memory fields.
 *  - the payload's own entry (_start at GUEST_CODE_GPA) puts its stack at 0x100000, growing
 *    down into 0xf0000-0xfffff: on a PC that is the BIOS's shadow, which SeaBIOS leaves
 *    read-only after POST (QEMU's `info mtree`: "pc.ram" as "rom" there). Under QEMU's tcg the
 *    stack writes are dropped and a payload entered at _start never finishes an iteration;
 *    under this machine's KVM (kvm_pvm, an emulator) they happen to land. So the stub enters
 *    the payload at guest_main (its address comes from guest.elf) on its own stack in
 *    conventional memory, mb_stack_top in mb_image.ld. Every byte of the payload is the one
 *    the micro-VM runs; only the way in differs (_start is cli, the stack, call guest_main).
 *
 * Multiboot gives 32-bit protected mode, flat 4 GiB code and data segments, paging off,
 * interrupts off: what the payload assumes. The a.out-kludge header (flag bit 16) gives the
 * load addresses, so the image is a flat binary and needs no ELF loader.
 *
 * Progress and errors go as text to the debugcon port (0xe9: `-debugcon file:PATH`); with no
 * such device the bytes go nowhere. A bad command line or memory size is reported there and on
 * GUEST_PORT_PANIC, then the stub halts.
 */
#include <stdint.h>

#include "mailbox.h"

#define MB_HEADER_MAGIC	    0x1badb002u
#define MB_HEADER_FLAGS	    ((1u << 1) | (1u << 16)) /* memory fields; load addresses given */
#define MB_BOOTLOADER_MAGIC 0x2badb002u
#define MB_INFO_MEM	    (1u << 0)
#define MB_INFO_CMDLINE	    (1u << 2)
#define DEBUGCON_PORT	    0xe9u

/* The Multiboot header (first 8 KiB of the image; mb_image.ld puts it first), then the entry:
 * our stack, then mb_main(eax, ebx), which does not return. */
__asm__(".section .mb_header, \"a\", @progbits\n"
	".align 4\n"
	"mb_header:\n"
	"	.long 0x1badb002\n"
	"	.long 0x00010002\n"
	"	.long -(0x1badb002 + 0x00010002)\n"
	"	.long mb_header\n"
	"	.long mb_load_start\n"
	"	.long mb_load_end\n"
	"	.long mb_bss_end\n"
	"	.long mb_entry\n"
	".previous\n"
	".text\n"
	".globl mb_entry\n"
	"mb_entry:\n"
	"	cli\n"
	"	movl $mb_stack_top, %esp\n"
	"	pushl %ebx\n"
	"	pushl %eax\n"
	"	call mb_main\n"
	"1:	hlt\n"
	"	jmp 1b\n");

_Static_assert(MB_HEADER_FLAGS == 0x00010002u, "the header above spells the flags out");
_Static_assert(MB_HEADER_MAGIC == 0x1badb002u, "the header above spells the magic out");

/* The fields of the Multiboot information structure the stub reads (spec section 3.3). */
struct mb_info {
	uint32_t flags;
	uint32_t mem_lower, mem_upper; /* KiB below 640 KiB, KiB from 1 MiB up to the first hole */
	uint32_t boot_device;
	uint32_t cmdline; /* physical address of a NUL-terminated string */
};

/* The payload's C entry (guest.c), resolved from guest.elf at link time (ld -R). */
extern void guest_main(void) __attribute__((noreturn));

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "d"(port) : "memory");
}

static void put_str(const char *s)
{
	while (*s)
		outb(DEBUGCON_PORT, (uint8_t)*s++);
}

static void put_u32(uint32_t v)
{
	char buf[11], *p = buf + sizeof(buf) - 1;

	*p = 0;
	do
		*--p = (char)('0' + v % 10);
	while (v /= 10);
	put_str(p);
}

static __attribute__((noreturn)) void fail(const char *why)
{
	put_str("mb_stub: ");
	put_str(why);
	put_str("\n");
	outl(GUEST_PORT_PANIC, GUEST_PANIC_CONFIG);
	for (;;)
		__asm__ volatile("hlt");
}

/* The length of prefix when s starts with it, else 0. */
static unsigned starts_with(const char *s, const char *prefix)
{
	unsigned n = 0;

	for (; prefix[n]; n++)
		if (s[n] != prefix[n])
			return 0;
	return n;
}

/* A decimal number at *s, up to a space or the end; advances *s. -1 on anything else. */
static int64_t parse_u32(const char **s)
{
	const char *p = *s;
	int64_t v = 0;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (*p - '0');
		if (v > UINT32_MAX)
			return -1;
	}
	if (*p && *p != ' ')
		return -1;
	*s = p;
	return v;
}

/* A "name=N" word at *s: stores N, advances *s past it. 0: not this name. */
static int parse_word(const char **s, const char *name, uint32_t *out)
{
	unsigned n = starts_with(*s, name);
	const char *p = *s + n;
	int64_t v;

	if (!n)
		return 0;
	v = parse_u32(&p);
	if (v < 0)
		fail("expected hot=N sweep=N mem=MIB with decimal numbers");
	*out = (uint32_t)v;
	*s = p;
	return 1;
}

/* "hot=N sweep=N mem=MIB", each optional, any order. Loaders put the image's own name first
 * (QEMU and GRUB do): a first word without '=' is skipped. */
static void parse_cmdline(const char *s, uint32_t *hot, uint32_t *sweep, uint32_t *mem_mib)
{
	const char *w;

	for (w = s; *w && *w != ' ' && *w != '='; w++)
		;
	if (*w != '=')
		s = w;
	while (*s) {
		if (*s == ' ')
			s++;
		else if (!parse_word(&s, "hot=", hot) && !parse_word(&s, "sweep=", sweep) &&
			 !parse_word(&s, "mem=", mem_mib))
			fail("unknown word on the command line (expected hot=N sweep=N mem=MIB)");
	}
}

void mb_main(uint32_t magic, const struct mb_info *mbi);

__attribute__((noreturn, used)) void mb_main(uint32_t magic, const struct mb_info *mbi)
{
	volatile uint32_t *page = (volatile uint32_t *)GUEST_MAILBOX_GPA;
	volatile struct guest_mailbox *mb = (volatile struct guest_mailbox *)GUEST_MAILBOX_GPA;
	uint32_t hot = 0, sweep = 0, mem_mib = 0, area;
	uint64_t mem, ram;

	if (magic != MB_BOOTLOADER_MAGIC)
		fail("not started by a Multiboot loader (eax is not 0x2badb002)");
	if (!(mbi->flags & MB_INFO_MEM))
		fail("the loader gave no memory size");
	if (mbi->flags & MB_INFO_CMDLINE)
		parse_cmdline((const char *)(uintptr_t)mbi->cmdline, &hot, &sweep, &mem_mib);
	/* RAM from 0 up to the first hole above 1 MiB. A PC's firmware keeps its tables at the
	 * top of it (QEMU -m 1024 reports less than 1024 MiB), so mem=MIB gives the micro-VM's
	 * size: only its workload area, below the device areas, has to be RAM. */
	ram = ((uint64_t)mbi->mem_upper + 1024) << 10;
	if (mem_mib) {
		mem = (uint64_t)mem_mib << 20;
		if (mem - GUEST_DEV_AREAS_SIZE > ram || mem > GUEST_MEM_MAX)
			fail("mem=: the workload area would reach past the RAM");
	} else {
		mem = ram < GUEST_MEM_MAX ? ram : GUEST_MEM_MAX;
		mem &= ~(uint64_t)((2u << 20) - 1); /* the micro-VM's sizes: multiples of 2 MiB */
	}
	if (mem < GUEST_MEM_MIN)
		fail("less memory than GUEST_MEM_MIN");
	/* the area as vm.c's area_pages_of() */
	area = (uint32_t)((mem - GUEST_DEV_AREAS_SIZE - GUEST_AREA_GPA) / GUEST_PAGE);
	if (hot > area || sweep > area - hot)
		fail("hot + sweep exceed the workload area");

	for (uint32_t i = 0; i < GUEST_PAGE / 4; i++)
		page[i] = 0;
	mb->magic = GUEST_MAGIC;
	mb->version = GUEST_VERSION;
	mb->area_pages = area;
	mb->hot_pages = hot;
	mb->sweep_pages = sweep;
	mb->cmd = GUEST_CMD_RUN;

	put_str("mb_stub: memory ");
	put_u32((uint32_t)(mem >> 20));
	put_str(" MiB, area ");
	put_u32(area);
	put_str(" pages, hot ");
	put_u32(hot);
	put_str(", sweep ");
	put_u32(sweep);
	put_str("; entering the payload\n");
	guest_main();
}
