/* Minimal Cortex-M vector table for the harness's qemu-system-arm run (mps2-an386, semihosting): the
 * initial stack pointer (top of the 4 MiB SSRAM at 0x20000000) and newlib's semihosting start-up. */
extern void _start(void);

__attribute__((section(".vectors"), used)) void (*const elstm_vectors[2])(void) = {
    (void (*)(void))0x20400000u, _start
};
