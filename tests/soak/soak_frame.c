/* The soak's frames: the PRNG, frame generation, and the verifier that
 * regenerates what each end should have received and compares every byte
 * (soak.h describes the frame layout). */
#include <inttypes.h>
#include <string.h>

#include "soak.h"

/* ---- PRNG ------------------------------------------------------------------------------------ */

uint64_t soak_mix64(uint64_t z) /* splitmix64's finaliser: a good 64-bit mix */
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ---- frames ---------------------------------------------------------------------------------- */

static inline uint64_t frame_key(uint32_t conn_id, uint32_t seq)
{
    return ((uint64_t)conn_id << 32) | seq;
}

/* Sizes spread over every power of two (log-uniform), so small frames
 * (a few bytes: many per read) and large ones (64 KiB: many reads and
 * writes per frame, partial sends) both come up often; 1 in 64 is the
 * 64 KiB maximum exactly. */
uint32_t soak_frame_len(uint32_t conn_id, uint32_t seq)
{
    uint64_t r = soak_mix64(frame_key(conn_id, seq) ^ 0x6C656E67746821ull);
    if ((r >> 58) == 0)
        return FRAME_MAX_PAYLOAD;
    unsigned k = (unsigned)(r % 17); /* 2^0 .. 2^16 */
    return 1 + (uint32_t)((r >> 8) % ((uint64_t)1 << k));
}

static inline void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t header_sum(const uint8_t *h)
{
    uint64_t a = (uint64_t)get32(h) | (uint64_t)get32(h + 4) << 32;
    uint64_t b = (uint64_t)get32(h + 8) | (uint64_t)get32(h + 12) << 32;
    return (uint32_t)soak_mix64(a ^ soak_mix64(b));
}

void fg_start(frame_gen *g, uint32_t conn_id, uint32_t seq, uint32_t flags)
{
    g->conn_id = conn_id;
    g->seq = seq;
    g->flags = flags;
    g->len = soak_frame_len(conn_id, seq);
    g->off = 0;
    g->total = FRAME_HDR + g->len + FRAME_TRL;
    g->fnv = 2166136261u;
    g->seed = soak_mix64(frame_key(conn_id, seq) ^ 0x7061796C6F6164ull);
    put32(g->hdr, FRAME_MAGIC);
    put32(g->hdr + 4, conn_id);
    put32(g->hdr + 8, seq);
    put32(g->hdr + 12, g->len | flags << 24);
    put32(g->hdr + 16, header_sum(g->hdr));
}

/* Payload byte i is byte i % 8 of mix64(seed + (i / 8) * golden): any
 * offset can be produced without the bytes before it. */
static void gen_payload(frame_gen *g, uint32_t i, uint8_t *out, uint32_t m)
{
    uint64_t w = soak_mix64(g->seed + (uint64_t)(i >> 3) * 0x9E3779B97F4A7C15ull);
    unsigned sh = i & 7;
    uint32_t h = g->fnv;
    for (uint32_t j = 0; j < m; j++) {
        if (sh == 8) {
            w = soak_mix64(g->seed + (uint64_t)((i + j) >> 3) * 0x9E3779B97F4A7C15ull);
            sh = 0;
        }
        uint8_t b = (uint8_t)(w >> (8 * sh++));
        out[j] = b;
        h = (h ^ b) * 16777619u;
    }
    g->fnv = h;
}

size_t fg_fill(frame_gen *g, uint8_t *out, size_t n)
{
    size_t want = n < fg_left(g) ? n : fg_left(g), k = 0;
    while (k < want) {
        uint32_t o = g->off, m, room = (uint32_t)(want - k);
        if (o < FRAME_HDR) {
            m = FRAME_HDR - o < room ? FRAME_HDR - o : room;
            memcpy(out + k, g->hdr + o, m);
        } else if (o < FRAME_HDR + g->len) {
            uint32_t i = o - FRAME_HDR;
            m = g->len - i < room ? g->len - i : room;
            gen_payload(g, i, out + k, m);
        } else {
            /* The payload is complete (bytes are produced in order): the
             * checksum is final. */
            uint8_t t[FRAME_TRL];
            put32(t, g->fnv);
            uint32_t j = o - FRAME_HDR - g->len;
            m = FRAME_TRL - j < room ? FRAME_TRL - j : room;
            memcpy(out + k, t + j, m);
        }
        g->off += m;
        k += m;
    }
    return want;
}

/* ---- verifier -------------------------------------------------------------------------------- */

void verifier_init(verifier *v, bool server, uint32_t conn_id)
{
    memset(v, 0, sizeof *v);
    v->server = server;
    v->conn_id = conn_id;
    v->reset_seq = UINT32_MAX;
    v->max_procs = g_proc.cfg->procs;
}

static uint64_t count_diff(const uint8_t *a, const uint8_t *b, size_t n, size_t *first)
{
    uint64_t d = 0;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) {
            if (d == 0)
                *first = i;
            d++;
        }
    return d;
}

/* Server: the header is complete in v->hdr; check it whole against the one
 * regenerated from (conn id, expected seq, the flags it carries). A wrong
 * header leaves the stream unparseable: the connection is desynchronised
 * and the rest of it is not checked (the header's bytes are counted). */
static void server_header(verifier *v, const char *who)
{
    uint32_t conn = get32(v->hdr + 4);
    uint32_t flags = get32(v->hdr + 12) >> 24;
    if (v->conn_id == 0) {
        uint32_t proc = conn >> 24;
        if (proc >= 1 && proc <= (uint32_t)v->max_procs)
            v->conn_id = conn;
    }
    if (flags & ~FLAG_RESET_ME)
        flags = 0; /* unknown flags: the comparison below fails */
    fg_start(&v->g, v->conn_id ? v->conn_id : conn, v->next_seq, flags);
    size_t first = 0;
    uint64_t d = count_diff(v->g.hdr, v->hdr, FRAME_HDR, &first);
    if (d) {
        v->desync = true;
        v->corrupt += d;
        STAT_ADD(corrupt, d);
        soak_fail(&g_proc.st->bad_frames,
                  "%s: conn %#x: bad header for seq %u at stream offset %" PRIu64
                  " (%" PRIu64 " bytes differ, first at %zu: got %#x want %#x)",
                  who, v->conn_id, v->next_seq, v->offset - FRAME_HDR, d, first, v->hdr[first],
                  v->g.hdr[first]);
        return;
    }
    v->g.off = FRAME_HDR;
    v->in_frame = true;
    if (flags & FLAG_RESET_ME)
        v->reset_hdr_end = v->offset;
}

void verifier_feed(verifier *v, const uint8_t *p, size_t n, const char *who)
{
    uint8_t exp[4096];
    while (n > 0) {
        if (v->desync) {
            v->offset += n;
            return;
        }
        if (!v->in_frame) {
            if (!v->server) {
                fg_start(&v->g, v->conn_id, v->next_seq,
                         v->next_seq == v->reset_seq ? FLAG_RESET_ME : 0);
                v->in_frame = true;
            } else {
                size_t m = FRAME_HDR - v->hdr_got < n ? FRAME_HDR - v->hdr_got : n;
                memcpy(v->hdr + v->hdr_got, p, m);
                v->hdr_got += (uint32_t)m;
                p += m;
                n -= m;
                v->offset += m;
                if (v->hdr_got < FRAME_HDR)
                    return;
                v->hdr_got = 0;
                server_header(v, who);
                continue;
            }
        }
        size_t m = n;
        if (m > fg_left(&v->g))
            m = fg_left(&v->g);
        if (m > sizeof exp)
            m = sizeof exp;
        uint32_t at = v->g.off;
        fg_fill(&v->g, exp, m);
        if (memcmp(exp, p, m) != 0) {
            size_t first = 0;
            uint64_t d = count_diff(exp, p, m, &first);
            if (v->corrupt == 0)
                soak_fail(&g_proc.st->bad_frames,
                          "%s: conn %#x seq %u: %" PRIu64 " corrupt bytes, first at frame offset %zu"
                          " (stream %" PRIu64 "): got %#x want %#x",
                          who, v->conn_id, v->g.seq, d, at + first, v->offset + first, p[first],
                          exp[first]);
            v->corrupt += d;
            STAT_ADD(corrupt, d);
        }
        p += m;
        n -= m;
        v->offset += m;
        if (fg_left(&v->g) == 0) {
            v->in_frame = false;
            v->frames++;
            STAT_INC(frames);
            if (!v->server && v->g.seq == v->reset_seq)
                soak_fail(&g_proc.st->bad_frames,
                          "%s: conn %#x: frame %u came back whole; the server was to cut it", who,
                          v->conn_id, v->g.seq);
            v->next_seq++;
        }
    }
}
