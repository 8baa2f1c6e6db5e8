/* addr_fuzz_replay: runs addr_fuzz.c's target without libFuzzer, so any
 * compiler's build checks the corpus (the ctest addr_fuzz_corpus).
 *
 *   addr_fuzz_replay [--mutate N] FILE_OR_DIR...
 *
 * Each file is one input. --mutate N then runs N inputs made from the
 * corpus by random byte edits (a fixed seed: the same inputs every time). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct input {
    uint8_t *data;
    size_t size;
} input;

static input *inputs;
static size_t ninputs, cap;

static void add_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    uint8_t *buf = malloc(4097);
    size_t n = fread(buf, 1, 4097, f);
    fclose(f);
    if (ninputs == cap)
        inputs = realloc(inputs, (cap = cap * 2 + 32) * sizeof *inputs);
    inputs[ninputs++] = (input){ buf, n };
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void add_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        add_file(path);
        return;
    }
    DIR *d = opendir(path);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, c = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == c)
            names = realloc(names, (c = c * 2 + 32) * sizeof *names);
        size_t l = strlen(path) + strlen(e->d_name) + 2;
        names[n] = malloc(l);
        snprintf(names[n++], l, "%s/%s", path, e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp);
    for (size_t i = 0; i < n; i++) {
        add_file(names[i]);
        free(names[i]);
    }
    free(names);
}

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(int argc, char **argv)
{
    long mutate = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mutate") && i + 1 < argc)
            mutate = atol(argv[++i]);
        else
            add_path(argv[i]);
    }
    if (!ninputs) {
        fprintf(stderr, "usage: addr_fuzz_replay [--mutate N] FILE_OR_DIR...\n");
        return 2;
    }
    for (size_t i = 0; i < ninputs; i++)
        LLVMFuzzerTestOneInput(inputs[i].data, inputs[i].size);
    static const char dict[] = "0123456789:[]%@./abcdefx-+ \n";
    uint8_t buf[600];
    for (long m = 0; m < mutate; m++) {
        input *in = &inputs[next() % ninputs];
        size_t n = in->size < sizeof buf ? in->size : sizeof buf;
        memcpy(buf, in->data, n);
        int edits = 1 + (int)(next() % 4);
        for (int e = 0; e < edits; e++) {
            size_t pos = n ? next() % n : 0;
            switch (next() % 5) {
            case 0: if (n) buf[pos] = (uint8_t)next(); break;
            case 1: if (n) buf[pos] = (uint8_t)dict[next() % (sizeof dict - 1)]; break;
            case 2: if (n > 1) { memmove(buf + pos, buf + pos + 1, n - pos - 1); n--; } break;
            case 3:
                if (n < sizeof buf) {
                    memmove(buf + pos + 1, buf + pos, n - pos);
                    buf[pos] = (uint8_t)dict[next() % (sizeof dict - 1)];
                    n++;
                }
                break;
            default: if (n) buf[0] = (uint8_t)('0' + next() % 8); break;
            }
        }
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("addr_fuzz_replay: %zu corpus inputs and %ld mutations, no property failed\n",
           ninputs, mutate);
    for (size_t i = 0; i < ninputs; i++)
        free(inputs[i].data);
    free(inputs);
    return 0;
}
