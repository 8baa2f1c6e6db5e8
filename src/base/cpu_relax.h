/* A spin-wait hint for the CPU: lets the sibling hyperthread (or, under a
 * hypervisor, another vCPU) run while this one waits on a memory word. */
#ifndef NP_CPU_RELAX_H
#define NP_CPU_RELAX_H

static inline void np__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

#endif
