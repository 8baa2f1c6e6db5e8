/* Direct cost of what bench/churn's deadline server adds to each echo round
 * trip: np_set_read_deadline(c, np_now() + 30 s) and
 * np_set_write_deadline(c, np_now() + 30 s), on a live loopback TCP
 * connection, in a task, ITERS times; prints ns per pair of calls (the
 * median of REPS runs) as "deadline_pair_ns=..." — a noise-free companion
 * to the end-to-end figure, which moves with the machine's load.
 *
 *   deadline_cost [ITERS [REPS]]       (defaults 1000000, 5)
 */
#include <netpoll.h>

#include <stdio.h>
#include <stdlib.h>

static long iters = 1000000;
static int reps = 5;
static double result, io_nodl, io_dl;

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void main_task(void *arg)
{
    (void)arg;
    np_listener l;
    np_conn a, b;
    char addr[128];
    if (np_listen(&l, "tcp", "127.0.0.1:0") < 0 || np_listener_addr(l, addr, sizeof addr) < 0 ||
        np_dial(&a, "tcp", addr, 0) < 0 || np_accept(l, &b) < 0) {
        fprintf(stderr, "deadline_cost: cannot set up a loopback connection\n");
        exit(1);
    }
    double *v = calloc((size_t)reps, sizeof *v);
    if (v == NULL)
        exit(1);
    for (int r = 0; r < reps; r++) {
        int64_t t0 = np_now();
        for (long i = 0; i < iters; i++) {
            np_set_read_deadline(b, np_now() + 30 * NP_SECOND);
            np_set_write_deadline(b, np_now() + 30 * NP_SECOND);
        }
        v[r] = (double)(np_now() - t0) / (double)iters;
    }
    qsort(v, (size_t)reps, sizeof *v, cmpd);
    result = v[reps / 2];
    /* Write + read, without and with deadlines, alternating per rep. */
    double *nodl = calloc((size_t)reps, sizeof *nodl), *dl = calloc((size_t)reps, sizeof *dl);
    if (nodl == NULL || dl == NULL)
        exit(1);
    long io_iters = iters / 4 > 0 ? iters / 4 : 1;
    for (int r = 0; r < 2 * reps; r++) {
        int64_t d = (r & 1) ? np_now() + 3600 * NP_SECOND : 0;
        np_set_deadline(a, d);
        np_set_deadline(b, d);
        char c = 'x';
        int64_t t0 = np_now();
        for (long i = 0; i < io_iters; i++) {
            if (np_write(a, &c, 1) != 1 || np_read(b, &c, 1) != 1) {
                fprintf(stderr, "deadline_cost: echo failed\n");
                exit(1);
            }
        }
        ((r & 1) ? dl : nodl)[r / 2] = (double)(np_now() - t0) / (double)io_iters;
    }
    qsort(nodl, (size_t)reps, sizeof *nodl, cmpd);
    qsort(dl, (size_t)reps, sizeof *dl, cmpd);
    io_nodl = nodl[reps / 2];
    io_dl = dl[reps / 2];
    free(nodl);
    free(dl);
    free(v);
    np_close(a);
    np_close(b);
    np_listener_close(l);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        iters = atol(argv[1]);
    if (argc > 2)
        reps = atoi(argv[2]);
    if (iters < 1 || reps < 1) {
        fprintf(stderr, "usage: deadline_cost [ITERS [REPS]]\n");
        return 2;
    }
    np_config cfg = {.workers = 1};
    if (np_run(&cfg, main_task, NULL) < 0)
        return 1;
    printf("deadline_pair_ns=%.1f iters=%ld reps=%d\n", result, iters, reps);
    printf("io_nodl_ns=%.1f io_dl_ns=%.1f io_dl_ratio=%.3f\n", io_nodl, io_dl, io_dl / io_nodl);
    return 0;
}
