/* Shared by startup.c and firmware.c: semihosting (output, exit) and stack painting. The C
 * library's stdio is not used: no FILE buffers, no heap. */
#ifndef KWS_FIRMWARE_H
#define KWS_FIRMWARE_H

#include <stdint.h>

#define KWS_STACK_PAINT 0xC5C5C5C5u

extern uint32_t __stack_bottom, __stack_top;

/* ARM semihosting call (bkpt 0xab on M-profile cores), as QEMU's -semihosting implements it. */
static inline int kws_fw_semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

/* Print a NUL-terminated string on the host's console (SYS_WRITE0). */
static inline void kws_fw_print(const char *text)
{
    kws_fw_semihost(0x04, text);
}

/* Stop the program: QEMU exits with ``status`` (SYS_EXIT_EXTENDED, ADP_Stopped_ApplicationExit). */
static inline __attribute__((noreturn)) void kws_fw_exit(int status)
{
    uint32_t block[2] = {0x20026u, (uint32_t)status};
    for (;;)
        kws_fw_semihost(0x20, block);
}

/* Fill the unused stack, from its bottom up to the current stack pointer, with KWS_STACK_PAINT.
 * Inlined: it must not push a frame of its own below the painted words. */
static inline __attribute__((always_inline)) void kws_fw_paint_stack(void)
{
    uint32_t *p = &__stack_bottom, *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    while (p < sp - 1)
        *(volatile uint32_t *)p++ = KWS_STACK_PAINT;
}

/* Lowest stack word written since the stack was painted. */
static inline const uint32_t *kws_fw_stack_low_water(void)
{
    const uint32_t *p = &__stack_bottom;
    while (p < &__stack_top && *p == KWS_STACK_PAINT)
        p++;
    return p;
}

#endif
