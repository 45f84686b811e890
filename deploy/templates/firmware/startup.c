/* Startup code for the MPS2 board under QEMU (Cortex-M4 AN386, Cortex-M7 AN500): the vector
 * table, the reset handler (copy .data, zero .bss, enable the FPU, paint the stack) and default
 * fault handlers. Written for this firmware; no vendor library. */
#include <stdint.h>

#include "firmware.h"

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end;
extern uint32_t __stack_bottom, __stack_top;
extern int main(void);

void Reset_Handler(void);
void Default_Handler(void);

/* Any fault or unexpected interrupt: report through semihosting and stop QEMU with status 3. */
void Default_Handler(void)
{
    kws_fw_print("firmware: fault or unexpected exception\n");
    kws_fw_exit(3);
}

__attribute__((section(".vectors"), used))
static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&__stack_top,   /* initial stack pointer */
    Reset_Handler,
    Default_Handler,   /* NMI */
    Default_Handler,   /* HardFault */
    Default_Handler,   /* MemManage */
    Default_Handler,   /* BusFault */
    Default_Handler,   /* UsageFault */
    0, 0, 0, 0,
    Default_Handler,   /* SVCall */
    Default_Handler,   /* DebugMonitor */
    0,
    Default_Handler,   /* PendSV */
    Default_Handler,   /* SysTick (never enabled as an interrupt) */
};

void Reset_Handler(void)
{
    uint32_t *src = &__data_load, *dst = &__data_start;
    while (dst < &__data_end)
        *dst++ = *src++;
    for (dst = &__bss_start; dst < &__bss_end; dst++)
        *dst = 0;
    /* CPACR: full access to coprocessors 10 and 11 (the FPU), before any float code runs. */
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    kws_fw_paint_stack();
    kws_fw_exit(main());
}
