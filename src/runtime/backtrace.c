/* Backtraces for np_dump. See backtrace.h. */
#include <dlfcn.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "os/os.h"
#include "runtime/backtrace.h"
#include "base/sanitizer.h"

#ifdef __linux__
#include <link.h>
#if UINTPTR_MAX == UINT64_MAX
#define SYM_TYPE(info) ELF64_ST_TYPE(info)
#else
#define SYM_TYPE(info) ELF32_ST_TYPE(info)
#endif
#endif

void np__peeker_init(np__peeker *p)
{
    memset(p, 0, sizeof *p);
    /* One read of our own stack says whether the call is allowed here. */
    uint64_t probe = 0x5eed, got = 0;
    p->direct = np__os_read_self(&got, (uintptr_t)&probe, sizeof got) != (long)sizeof got ||
                got != probe;
}

/* The fallback: plain reads of another task's stack, unsynchronised and
 * maybe inside AddressSanitizer's redzones, so uninstrumented. */
__attribute__((no_sanitize("address", "thread"), noinline)) static void
copy_direct(void *out, uintptr_t addr, size_t n)
{
    volatile const unsigned char *s = (const unsigned char *)addr;
    unsigned char *d = out;
    for (size_t i = 0; i < n; i++)
        d[i] = s[i];
}

bool np__peek(void *peeker, uintptr_t addr, void *out, size_t n)
{
    np__peeker *p = peeker;
    if (p->moved_len && addr >= p->moved_at && addr - p->moved_at <= p->moved_len &&
        n <= p->moved_len - (addr - p->moved_at))
        addr = p->moved_copy + (addr - p->moved_at);
    if (!addr)
        return false;
    if (p->direct) {
        copy_direct(out, addr, n);
        return true;
    }
    return np__os_read_self(out, addr, n) == (long)n;
}

int np__fp_walk(np__peeker *p, uintptr_t pc, uintptr_t fp, uintptr_t lo, uintptr_t hi,
                uintptr_t *out, int max)
{
    int n = 0;
    if (pc && n < max)
        out[n++] = pc;
    /* A frame record is two words at fp: the caller's fp, then the return
     * address (x86-64 rbp chain and AArch64 x29 chain alike). */
    while (n < max) {
        if (fp < lo || hi < 2 * sizeof(uintptr_t) || fp > hi - 2 * sizeof(uintptr_t) ||
            fp % sizeof(uintptr_t) != 0)
            break;
        uintptr_t rec[2];
        if (!np__peek(p, fp, rec, sizeof rec) || rec[1] == 0)
            break;
        out[n++] = rec[1];
        if (rec[0] <= fp) /* the outermost frame (0), or a broken chain */
            break;
        fp = rec[0];
    }
    return n;
}

/* ---- names ------------------------------------------------------------------ */

void np__syms_init(np__syms *s)
{
    memset(s, 0, sizeof *s);
}

void np__syms_fini(np__syms *s)
{
    for (int i = 0; i < s->nmod; i++)
        if (s->mod[i].map)
            munmap((void *)s->mod[i].map, s->mod[i].map_len);
    s->nmod = 0;
}

#ifdef __linux__
/* Maps path and finds its .symtab; false if it has none. */
static bool load_symtab(np__symmod *m, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    void *map = MAP_FAILED;
    if (fstat(fd, &st) == 0 && (size_t)st.st_size >= sizeof(ElfW(Ehdr)))
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return false;
    size_t len = (size_t)st.st_size;
    const ElfW(Ehdr) *eh = map;
    const unsigned char *b = map;
    bool ok = memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 && eh->e_shentsize == sizeof(ElfW(Shdr)) &&
              eh->e_shoff < len && eh->e_shnum <= (len - eh->e_shoff) / sizeof(ElfW(Shdr));
    for (unsigned i = 0; ok && i < eh->e_shnum; i++) {
        const ElfW(Shdr) *sh = (const ElfW(Shdr) *)(b + eh->e_shoff) + i;
        if (sh->sh_type != SHT_SYMTAB || sh->sh_link >= eh->e_shnum)
            continue;
        const ElfW(Shdr) *str = (const ElfW(Shdr) *)(b + eh->e_shoff) + sh->sh_link;
        if (sh->sh_offset > len || sh->sh_size > len - sh->sh_offset || str->sh_offset > len ||
            str->sh_size > len - str->sh_offset || str->sh_size == 0)
            break;
        m->map = map;
        m->map_len = len;
        m->syms = b + sh->sh_offset;
        m->nsyms = sh->sh_size / sizeof(ElfW(Sym));
        m->strs = (const char *)b + str->sh_offset;
        m->strs_len = str->sh_size;
        m->relative = eh->e_type == ET_DYN;
        return true;
    }
    munmap(map, len);
    return false;
}

static np__symmod *module_of(np__syms *s, const Dl_info *info)
{
    uintptr_t base = (uintptr_t)info->dli_fbase;
    for (int i = 0; i < s->nmod; i++)
        if (s->mod[i].base == base)
            return &s->mod[i];
    if (s->nmod == NP__SYM_MODULES)
        return NULL;
    np__symmod *m = &s->mod[s->nmod++];
    memset(m, 0, sizeof *m);
    m->base = base;
    /* The program itself may be named relatively (argv[0]), and the
     * working directory may have changed since: ask the kernel. */
    const char *path = info->dli_fname;
    if (!path || path[0] != '/')
        path = "/proc/self/exe";
    load_symtab(m, path);
    return m;
}

/* The function symbol of m containing pc, by a scan of its .symtab. */
static const char *symtab_lookup(const np__symmod *m, uintptr_t pc, uintptr_t *start)
{
    uintptr_t at = m->relative ? pc - m->base : pc;
    const ElfW(Sym) *syms = m->syms;
    const char *best = NULL;
    for (size_t i = 0; i < m->nsyms; i++) {
        const ElfW(Sym) *y = &syms[i];
        if (SYM_TYPE(y->st_info) != STT_FUNC || y->st_value == 0 || y->st_name >= m->strs_len)
            continue;
        if (at >= y->st_value && at - y->st_value < (y->st_size ? y->st_size : 1)) {
            best = m->strs + y->st_name;
            *start = (m->relative ? m->base : 0) + y->st_value;
            break;
        }
    }
    return best;
}

/* Fills cache[slot] for look: the exported symbol and its size from
 * dladdr1, else the file's .symtab. */
static void lookup(np__syms *s, uintptr_t look, unsigned slot)
{
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    if (!dladdr1((void *)look, &info, (void **)&sym, RTLD_DL_SYMENT))
        return;
    s->cache[slot].module = info.dli_fname;
    s->cache[slot].base = (uintptr_t)info.dli_fbase;
    uintptr_t sa = (uintptr_t)info.dli_saddr;
    if (info.dli_sname && sym && look >= sa && look - sa < (sym->st_size ? sym->st_size : 1)) {
        s->cache[slot].name = info.dli_sname;
        s->cache[slot].start = sa;
        return;
    }
    np__symmod *m = module_of(s, &info);
    uintptr_t start = 0;
    const char *n = m && m->map ? symtab_lookup(m, look, &start) : NULL;
    if (n) {
        s->cache[slot].name = n;
        s->cache[slot].start = start;
    }
}
#else
/* Elsewhere (macOS's Mach-O, FreeBSD without dladdr1): dladdr alone, which
 * gives no size: the nearest symbol at or below look, which for code in no
 * symbol it knows (a stripped static function) is a neighbour's name. */
static void lookup(np__syms *s, uintptr_t look, unsigned slot)
{
    Dl_info info;
    if (!dladdr((void *)look, &info))
        return;
    s->cache[slot].module = info.dli_fname;
    s->cache[slot].base = (uintptr_t)info.dli_fbase;
    if (info.dli_sname && info.dli_saddr && look >= (uintptr_t)info.dli_saddr) {
        s->cache[slot].name = info.dli_sname;
        s->cache[slot].start = (uintptr_t)info.dli_saddr;
    }
}
#endif

void np__symbolize(np__syms *s, uintptr_t pc, bool is_return, const char **name,
                   const char **module, uintptr_t *off)
{
    uintptr_t look = is_return && pc ? pc - 1 : pc;
    unsigned slot = (unsigned)((look >> 2) ^ (look >> 11)) % NP__SYM_CACHE;
    if (s->cache[slot].pc != look) {
        s->cache[slot].pc = look;
        s->cache[slot].name = NULL;
        s->cache[slot].module = NULL;
        s->cache[slot].base = 0;
        lookup(s, look, slot);
    }
    *name = s->cache[slot].name;
    *module = s->cache[slot].module;
    *off = *name ? pc - s->cache[slot].start : pc - s->cache[slot].base;
}
