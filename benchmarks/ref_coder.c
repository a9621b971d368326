/* A plain adaptive multi-symbol range coder: the speed reference for labkit.coder.
 *
 * Textbook design (Schindler / Subbotin style, with carry propagation), written
 * the straightforward way, deliberately NOT tuned:
 *   - one frequency table f[0..A-1] (counts start at 1, grow by `inc`, halved with
 *     f -> (f + 1) / 2 when the total exceeds `limit`: the same adaptive model as
 *     labkit.coder's "none" context),
 *   - encoding sums f[0..s-1] for the cumulative count,
 *   - decoding divides the code value by range / total and searches linearly,
 *   - 32-bit range, 33-bit low, byte-wise renormalisation with range >= 2**24,
 *     one integer division (range / total) per symbol.
 * Built by benchmarks/ref_coder.py with the system C compiler (-O3, as labkit's
 * extension) and called through ctypes, one call per stream.  Not part of labkit.
 */
#include <stdint.h>
#include <stddef.h>

#define TOP (1u << 24)

static void init(uint32_t *f, int A, uint32_t *total)
{
    for (int s = 0; s < A; s++)
        f[s] = 1;
    *total = (uint32_t)A;
}

static void update(uint32_t *f, int A, int s, uint32_t inc, uint32_t limit, uint32_t *total)
{
    f[s] += inc;
    *total += inc;
    if (*total > limit) {
        uint32_t t = 0;
        for (int k = 0; k < A; k++) {
            f[k] = (f[k] + 1) >> 1;
            t += f[k];
        }
        *total = t;
    }
}

/* Returns the number of bytes written, or -1 if `cap` was too small / bad symbol. */
int64_t ref_encode(const uint8_t *sym, int64_t n, int A, uint32_t inc, uint32_t limit,
                   uint8_t *out, int64_t cap)
{
    uint32_t f[256], total;
    uint64_t low = 0;
    uint32_t range = 0xFFFFFFFFu;
    int64_t pos = 0;
    init(f, A, &total);
    for (int64_t i = 0; i < n; i++) {
        int s = sym[i];
        if (s >= A)
            return -1;
        uint32_t cum = 0;
        for (int k = 0; k < s; k++)
            cum += f[k];
        uint32_t r = range / total;
        low += (uint64_t)r * cum;
        range = r * f[s];
        if (low >> 32) { /* carry into the bytes already written */
            int64_t j = pos - 1;
            while (j >= 0 && out[j] == 0xFF)
                out[j--] = 0;
            if (j >= 0)
                out[j]++;
            low &= 0xFFFFFFFFu;
        }
        while (range < TOP) {
            if (pos >= cap)
                return -1;
            out[pos++] = (uint8_t)(low >> 24);
            low = (low << 8) & 0xFFFFFFFFu;
            range <<= 8;
        }
        update(f, A, s, inc, limit, &total);
    }
    /* flush all four bytes of low */
    for (int k = 0; k < 4; k++) {
        if (pos >= cap)
            return -1;
        out[pos++] = (uint8_t)(low >> 24);
        low = (low << 8) & 0xFFFFFFFFu;
    }
    return pos;
}

/* Decodes n symbols; bytes past the end read as 0.  Returns the bytes consumed. */
int64_t ref_decode(const uint8_t *in, int64_t n_in, uint8_t *out, int64_t n, int A,
                   uint32_t inc, uint32_t limit)
{
    uint32_t f[256], total;
    uint32_t range = 0xFFFFFFFFu, code = 0;
    int64_t pos = 0;
    init(f, A, &total);
    for (int k = 0; k < 4; k++, pos++)
        code = (code << 8) | (pos < n_in ? in[pos] : 0);
    for (int64_t i = 0; i < n; i++) {
        uint32_t r = range / total;
        uint32_t target = code / r;
        if (target >= total)
            target = total - 1;
        int s = 0;
        uint32_t cum = 0;
        while (cum + f[s] <= target) {
            cum += f[s];
            s++;
        }
        code -= r * cum;
        range = r * f[s];
        while (range < TOP) {
            code = (code << 8) | (pos < n_in ? in[pos] : 0);
            pos++;
            range <<= 8;
        }
        out[i] = (uint8_t)s;
        update(f, A, s, inc, limit, &total);
    }
    return pos;
}
