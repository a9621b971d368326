# Compiler directives (boundscheck, wraparound, cdivision, ...) come from setup.py.
"""Adaptive multi-symbol range coder (``labkit._arith``).

Low-level extension used by :mod:`labkit.coder`; call that module, not this one
(it validates arguments, this module trusts them except where memory safety is at
stake).

Coder
-----
A carry-propagating range coder with a 32-bit ``range`` register, a 33-bit ``low``
register and byte-wise renormalisation (``range`` is kept >= 2**24).  Carries are
propagated backwards into the bytes already written.  All state is integer, so the
decoded symbols depend on nothing but the payload bytes.

``range / total`` is computed as ``(range * INV[total]) >> 32`` with a table
``INV[t] = floor((2**32 - 1) / t)``: no division in the inner loops.  The result is
at most ``range / total`` (so intervals never overlap) and at least
``floor(range / total) - 2``; the rounding slack ``range - r * total`` is given to
symbol 0 -- the most probable symbol of quantised ReLU latents -- which makes the
slack nearly free on skewed data.

Model
-----
One frequency table per context.  Each table stores the *upper* cumulative counts
``Hc[s] = sum_{t >= s} f[t]`` (``Hc[0] = total``, ``Hc[A] = 0``), so symbol ``s``
owns ``[Hc[s+1], Hc[s])`` and symbol 0 sits on top of the interval.  Updating the
table after coding ``s`` touches ``Hc[0..s]`` only: one add for the zero symbol.
Counts start at 1, grow by ``increment`` and are halved (``f -> (f + 1) // 2``,
which keeps every count >= 1) as soon as the total exceeds ``limit``.  With
``limit <= 2**16 - 1`` and ``range >= 2**24`` every symbol gets ``r * f >= 254``, so no
interval can ever be empty, whatever ``increment``/``limit`` the wrapper accepted.

Contexts (ids are part of the bitstream format, never renumber them)
--------------------------------------------------------------------
0 none              one model
1 channel           one model per channel (re-initialised at each channel start)
2 neighbor          model chosen by (bucket(left), bucket(top)) in the same channel
3 neighbor+channel  as 2, the models re-initialised at each channel start
4 learned           as 3, but each channel's models start from the caller's prior
                    counts ``prior[c, bucket(left) * B + bucket(top), s]`` (uint16 >= 1,
                    a row's total <= limit) instead of all 1: the statistics a model
                    ships for its latent, so a small image does not pay to learn them
Out-of-image neighbours are 0.  ``bucket(v) = 0 if v == 0 else 1 + floor(log2 v)``.

Termination (format version 2)
------------------------------
The encoder ends with exactly one byte (``low`` rounded up to a multiple of 2**24)
and keeps every byte, so a payload is exactly as long as what the decoder
consumes, and the decoder ends with ``code - low < 2**24``; ``decode_raw`` reports
both so that the container can reject payloads that were cut or extended.
Version 1 dropped every trailing zero byte of the same payload.

Speed
-----
Decoding tests "is it symbol 0?" with one multiply; other symbols are found by
counting ``r * H[j] > d`` eight entries at a time (no division), and updates add to
``H[0..s]`` eight entries at a time, with GCC/Clang vector extensions (SSE2 on
x86-64, NEON on ARM, plain loops elsewhere; the results are the same integers).

Safety
------
The encoder checks every symbol against the alphabet before it is used (and reports
the first bad position), and every write against the output capacity.  The decoder
reads input bytes through an explicit ``pos < n`` test (bytes past the end read as
0), writes exactly ``n`` symbols, touches model tables only inside their padded
rows, and every decoded symbol is < alphabet by construction, whatever the payload.  ``range`` never becomes 0 in the decoder
(every interval is >= 254 wide), so renormalisation always terminates.
"""
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from cpython.bytes cimport PyBytes_FromStringAndSize

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define LK_UNLIKELY(x) __builtin_expect(!!(x), 0)
    #define LK_LIKELY(x) __builtin_expect(!!(x), 1)
    #else
    #define LK_UNLIKELY(x) (x)
    #define LK_LIKELY(x) (x)
    #endif
    #define LK_MASK32 ((uint64_t)0xFFFFFFFFu)
    #define LK_ALL32 ((uint32_t)0xFFFFFFFFu)
    #define LK_LOW24 ((uint64_t)0xFFFFFFu)

    /* Model-table kernels, 8 counts a step.  A table H has room for index A + 7
       and H[A..A+7] == 0 (see _model_init), so an 8-wide step that starts at
       j <= A stays inside it.  GCC/Clang vector extensions compile to SSE2 on
       x86-64 and NEON on ARM; other compilers get the plain loops.  Same results
       either way: these are exact integer operations. */
    #if defined(__GNUC__) || defined(__clang__)
    #include <string.h>
    typedef int32_t lk_i4 __attribute__((vector_size(16)));
    /* H[0..s] += inc (s <= A - 1), lanes past s add 0: one step for s < 8. */
    static inline void lk_add_prefix(uint32_t *H, int s, uint32_t inc) {
        const lk_i4 lane = {0, 1, 2, 3};
        const lk_i4 vinc = {(int32_t)inc, (int32_t)inc, (int32_t)inc, (int32_t)inc};
        lk_i4 h, h2;
        int j;
        for (j = 0; j <= s; j += 8) {
            memcpy(&h, H + j, sizeof h);
            memcpy(&h2, H + j + 4, sizeof h2);
            h += vinc & ((lane + j) <= s);
            h2 += vinc & ((lane + (j + 4)) <= s);
            memcpy(H + j, &h, sizeof h);
            memcpy(H + j + 4, &h2, sizeof h2);
        }
    }
    typedef uint32_t lk_u4 __attribute__((vector_size(16)));
    /* #{j in 1..A-1 : r * H[j] > d}, 8 entries a step.  H decreases and is 0 from
       H[A] on, so the hits form a prefix: stop at the first step with a miss (one
       step for the s < 8 that dominate).  No product overflows:
       r * H[j] <= r * H[0] <= range < 2**32. */
    static inline int lk_count_above(const uint32_t *H, uint32_t r, uint32_t d) {
        lk_u4 h, h2;
        lk_i4 gt;
        int j = 1, c, n = 0;
        do {
            memcpy(&h, H + j, sizeof h);
            memcpy(&h2, H + j + 4, sizeof h2);
            gt = (lk_i4)((h * r) > d) + (lk_i4)((h2 * r) > d);
            c = -(gt[0] + gt[1] + gt[2] + gt[3]);
            n += c;
            j += 8;
        } while (c == 8);
        return n;
    }
    #else
    static inline int lk_count_above(const uint32_t *H, uint32_t r, uint32_t d) {
        int j = 1;
        while (r * H[j] > d) j++;
        return j - 1;
    }
    static inline void lk_add_prefix(uint32_t *H, int s, uint32_t inc) {
        int j;
        for (j = 0; j <= s; j++) H[j] += inc;
    }
    #endif
    """
    void lk_add_prefix(uint32_t* H, int s, uint32_t inc) noexcept nogil
    int lk_count_above(const uint32_t* H, uint32_t r, uint32_t d) noexcept nogil
    const uint64_t LK_MASK32
    const uint32_t LK_ALL32
    const uint64_t LK_LOW24
    bint LK_UNLIKELY(bint) noexcept nogil
    bint LK_LIKELY(bint) noexcept nogil

cdef enum:
    RC_TOP = 1 << 24
    MAX_TOTAL = 0xFFFF   # largest limit: fits the container's 16-bit field
    MAX_ALPHABET = 256
    MASKED_MAX_ALPHABET = 0   # up to here the model update is a masked vector add
    MODE_NONE = 0
    MODE_CHANNEL = 1
    MODE_NEIGHBOR = 2
    MODE_NEIGHBOR_CHANNEL = 3
    MODE_LEARNED = 4
    N_MODES = 5

# Public constants mirrored by labkit.coder (kept here so the two cannot drift).
MAX_LIMIT = MAX_TOTAL
CONTEXT_MODES = ("none", "channel", "neighbor", "neighbor+channel", "learned")
#: Context modes whose models start from caller-given prior counts.
PRIOR_MODES = ("learned",)

cdef uint32_t _INV[MAX_TOTAL + 1]
cdef uint8_t _BUCKET[MAX_ALPHABET]


cdef void _init_tables() noexcept:
    cdef uint32_t t
    cdef int v, b
    _INV[0] = LK_ALL32
    for t in range(1, MAX_TOTAL + 1):
        _INV[t] = LK_ALL32 // t
    for v in range(MAX_ALPHABET):
        b = 0
        while (v >> b) > 0:
            b += 1
        _BUCKET[v] = <uint8_t>b  # 0 -> 0, 1 -> 1, 2..3 -> 2, 4..7 -> 3, ...


_init_tables()


def neighbor_buckets(int alphabet_size):
    """Number of buckets per neighbour for ``alphabet_size`` (contexts = buckets**2)."""
    return _BUCKET[alphabet_size - 1] + 1


# --------------------------------------------------------------------------- model
cdef inline void _model_init(uint32_t* H, int A) noexcept nogil:
    """Counts 1: ``H[s] = A - s`` for s = 0..A, and the padding ``H[A+1..A+3] = 0``."""
    cdef int s
    for s in range(A + 8):
        H[s] = <uint32_t>(A - s) if s < A else 0


cdef inline void _model_init_prior(uint32_t* H, const uint16_t* f, int A) noexcept nogil:
    """Counts ``f[0..A-1]`` (each >= 1): ``H[s] = f[s] + ... + f[A-1]``, padding 0."""
    cdef int s
    for s in range(A, A + 8):
        H[s] = 0
    for s in range(A - 1, -1, -1):
        H[s] = H[s + 1] + f[s]


cdef inline void _models_init(uint32_t* models, int mode, const uint16_t* prior, Py_ssize_t c,
                              int A, int B, Py_ssize_t stride) noexcept nogil:
    """Start channel ``c``'s neighbour models: lazily (marked ``H[0] == 0``, a live model
    has total >= A >= 2), or, in the learned mode, from the prior rows of channel ``c``."""
    cdef Py_ssize_t k
    for k in range(B * B):
        if mode == MODE_LEARNED:
            _model_init_prior(models + k * stride, prior + (c * B * B + k) * A, A)
        else:
            models[k * stride] = 0


cdef void _rescale(uint32_t* H, int A) noexcept nogil:
    cdef int s
    cdef uint32_t prev_old = 0
    cdef uint32_t old, f
    H[A] = 0
    for s in range(A - 1, -1, -1):
        old = H[s]
        f = old - prev_old
        prev_old = old
        H[s] = H[s + 1] + ((f + 1) >> 1)


# --------------------------------------------------------------------------- encoder
# Coder state is passed and returned *by value*: no pointer to it escapes, so the
# C compiler keeps it in registers although the loops store through uint8_t* and
# uint32_t* pointers (which could otherwise alias it and force reloads).
cdef struct Enc:
    uint64_t low
    uint32_t rng
    Py_ssize_t pos
    Py_ssize_t cap
    uint8_t* out
    int err
    uint32_t tot      # total count of the model in use (== its H[0])


cdef void _carry(uint8_t* out, Py_ssize_t pos) noexcept nogil:
    """Propagate a carry out of ``low`` into the bytes already written."""
    cdef Py_ssize_t i = pos - 1
    while i >= 0 and out[i] == 0xFF:
        out[i] = 0
        i -= 1
    if i >= 0:
        out[i] += 1


cdef inline Enc _enc_put(Enc st, uint32_t* H, int s, int A, uint32_t inc,
                         uint32_t limit) noexcept nogil:
    """Code ``s`` with the model ``H``, then count it in ``H`` (``st.tot`` == ``H[0]``
    on entry and on return, as in ``_dec_get``)."""
    cdef uint32_t r = <uint32_t>((<uint64_t>st.rng * _INV[st.tot]) >> 32)
    cdef uint32_t lo = r * H[s + 1]
    if s == 0:                 # symbol 0 (top of the interval) takes the slack
        st.rng = st.rng - lo
        H[0] += inc
    else:
        st.rng = r * H[s] - lo
        lk_add_prefix(H, s, inc)
    st.tot += inc
    if LK_UNLIKELY(st.tot > limit):
        _rescale(H, A)
        st.tot = H[0]
    st.low += lo
    if LK_UNLIKELY((st.low >> 32) != 0):
        _carry(st.out, st.pos)
        st.low &= LK_MASK32
    while st.rng < RC_TOP:
        if LK_UNLIKELY(st.pos >= st.cap):
            st.err = 1
            return st
        st.out[st.pos] = <uint8_t>(st.low >> 24)
        st.pos += 1
        st.low = (st.low << 8) & LK_MASK32
        st.rng <<= 8
    return st


cdef Enc _enc_finish(Enc st) noexcept nogil:
    """Terminate the stream with exactly one byte (format version 2).

    The value emitted is ``low`` rounded up to a multiple of 2**24: it lies in
    ``[low, low + range)`` because ``range >= 2**24``, its three low bytes are 0
    (the decoder reads bytes past the end as 0), and a carry out of it goes into
    the bytes already written.  Nothing is trimmed, so the payload length is
    exactly what the decoder consumes (bytes read minus the 3 implicit zeros) and
    the decoder's final ``code - low`` is below 2**24: ``decode_raw`` reports both,
    which lets the container detect payloads that were cut or extended.  (Version 1
    payloads were the same bytes with every trailing zero byte dropped.)
    """
    cdef uint64_t v = (st.low + LK_LOW24) & ~LK_LOW24
    if (v >> 32) != 0:
        _carry(st.out, st.pos)
    if st.pos >= st.cap:
        st.err = 1
        return st
    st.out[st.pos] = <uint8_t>((v >> 24) & 0xFF)
    st.pos += 1
    st.low = 0
    return st


cdef Py_ssize_t _encode_loop(const uint8_t* sym, Py_ssize_t C, Py_ssize_t Hh,
                             Py_ssize_t W, int A, int mode, uint32_t inc,
                             uint32_t limit, uint32_t* models, Py_ssize_t stride,
                             int B, const uint16_t* prior, Enc* result) noexcept nogil:
    """Code all symbols and flush; return -1 on success, else the flat index of the
    first symbol >= A (nothing useful is emitted then), or -2 if the output buffer
    was too small (cannot happen: the caller sizes it for the worst case)."""
    cdef Py_ssize_t n = C * Hh * W
    cdef Py_ssize_t i, c, y, x, k
    cdef Py_ssize_t HW = Hh * W
    cdef Py_ssize_t bad = -1
    cdef int s, left, top
    cdef uint32_t* H
    cdef const uint8_t* row
    cdef Enc st = result[0]
    if mode == MODE_NONE or (mode == MODE_CHANNEL and C <= 1):
        H = models
        _model_init(H, A)
        st.tot = H[0]
        for i in range(n):
            s = sym[i]
            if LK_UNLIKELY(s >= A):
                return i
            st = _enc_put(st, H, s, A, inc, limit)
    elif mode == MODE_CHANNEL:
        H = models
        i = 0
        for c in range(C):
            _model_init(H, A)
            st.tot = H[0]
            for k in range(HW):
                s = sym[i]
                if LK_UNLIKELY(s >= A):
                    return i
                st = _enc_put(st, H, s, A, inc, limit)
                i += 1
    else:
        # neighbour modes: a model is marked uninitialised by H[0] == 0 (a live
        # model has total >= A >= 2) and initialised lazily on first use; the
        # learned mode starts every channel's models from its prior rows.
        for c in range(C):
            if c == 0 or mode != MODE_NEIGHBOR:
                _models_init(models, mode, prior, c, A, B, stride)
            for y in range(Hh):
                row = sym + c * HW + y * W
                for x in range(W):
                    s = row[x]
                    if LK_UNLIKELY(s >= A):
                        return c * HW + y * W + x
                    left = row[x - 1] if x > 0 else 0
                    top = row[x - W] if y > 0 else 0
                    H = models + (_BUCKET[left] * B + _BUCKET[top]) * stride
                    if LK_UNLIKELY(H[0] == 0):
                        _model_init(H, A)
                    st.tot = H[0]
                    st = _enc_put(st, H, s, A, inc, limit)
    st = _enc_finish(st)
    result[0] = st
    return -2 if st.err else -1


cdef inline Py_ssize_t _n_models(int mode, int B) noexcept nogil:
    if mode == MODE_NEIGHBOR or mode == MODE_NEIGHBOR_CHANNEL or mode == MODE_LEARNED:
        return B * B
    return 1


cdef int _check_args(int A, int mode, uint32_t increment, uint32_t limit) except -1:
    if not (2 <= A <= MAX_ALPHABET) or not (0 <= mode < N_MODES):
        raise ValueError("bad alphabet size or context mode")
    if increment < 1 or limit > MAX_TOTAL or limit < <uint32_t>A + increment:
        raise ValueError("bad increment/limit")
    return 0


cdef int _check_prior(object prior, int mode, Py_ssize_t C, int A, uint32_t limit) except -1:
    """Check the learned mode's prior table in full (the other modes take none):
    shape ``(C, B*B, A)``, C-contiguous uint16, every count >= 1 and every row's total
    <= ``limit`` -- so no model can hold an empty interval or overflow, whatever the caller passed."""
    cdef const uint16_t[:, :, ::1] p
    cdef Py_ssize_t i, j, s
    cdef uint32_t total
    cdef int B = _BUCKET[A - 1] + 1
    if mode != MODE_LEARNED:
        if prior is not None:
            raise ValueError("a prior table is only used by the learned context mode")
        return 0
    if prior is None:
        raise ValueError("the learned context mode needs a prior table")
    p = prior
    if p.shape[0] != C or p.shape[1] != B * B or p.shape[2] != A:
        raise ValueError("prior table shape does not fit the symbols")
    for i in range(C):
        for j in range(B * B):
            total = 0
            for s in range(A):
                if p[i, j, s] == 0:
                    raise ValueError("prior counts must be >= 1")
                total += p[i, j, s]
            if total > limit:
                raise ValueError("a prior row's total exceeds the limit")
    return 0


def encode_raw(const uint8_t[:, :, ::1] sym, int alphabet_size, int mode,
               uint32_t increment, uint32_t limit, prior=None):
    """Encode the C-contiguous (C, H, W) uint8 array ``sym``.

    ``prior``: the learned mode's ``(C, B*B, A)`` uint16 counts (checked), else None.

    Returns the payload ``bytes``, or an ``int``: the flat index of the first symbol
    that is >= ``alphabet_size`` (nothing is emitted then).
    """
    cdef Py_ssize_t C = sym.shape[0]
    cdef Py_ssize_t H = sym.shape[1]
    cdef Py_ssize_t W = sym.shape[2]
    cdef Py_ssize_t n = C * H * W
    cdef int A = alphabet_size
    cdef int B
    cdef Py_ssize_t stride = (A + 8 + 7) & ~7   # A + 1 counts + 7 padding, 32-byte rows
    cdef Py_ssize_t res
    cdef Enc st
    cdef uint32_t* models
    cdef const uint16_t[:, :, ::1] pv     # held until return: the loop reads through it
    cdef const uint16_t* prior_data = NULL
    _check_args(A, mode, increment, limit)
    _check_prior(prior, mode, C, A, limit)
    if n == 0:
        return b""
    if mode == MODE_LEARNED:
        pv = prior
        prior_data = &pv[0, 0, 0]
    B = _BUCKET[A - 1] + 1
    st.low = 0
    st.rng = LK_ALL32
    st.pos = 0
    st.err = 0
    st.tot = 0
    st.cap = 3 * n + 16   # every symbol emits at most 3 bytes, the flush 1
    st.out = <uint8_t*>malloc(st.cap)
    models = <uint32_t*>malloc(_n_models(mode, B) * stride * sizeof(uint32_t))
    if st.out == NULL or models == NULL:
        free(st.out)
        free(models)
        raise MemoryError()
    try:
        with nogil:
            res = _encode_loop(&sym[0, 0, 0], C, H, W, A, mode, increment, limit,
                               models, stride, B, prior_data, &st)
        if res >= 0:
            return res
        if res == -2:
            raise RuntimeError("internal error: range coder output overflow")
        return PyBytes_FromStringAndSize(<char*>st.out, st.pos)
    finally:
        free(st.out)
        free(models)


# --------------------------------------------------------------------------- decoder
cdef struct Dec:
    uint32_t rng
    uint32_t d        # code value minus low, within the current 32-bit window
    const uint8_t* inp
    Py_ssize_t n_in
    Py_ssize_t pos
    int sym           # last decoded symbol
    uint32_t tot      # total count of the model in use (== its H[0])


cdef inline Dec _dec_get(Dec st, uint32_t* H, int A, uint32_t inc,
                         uint32_t limit) noexcept nogil:
    """Decode one symbol (into ``st.sym``) with the model ``H``, then count it.

    ``st.tot`` must equal ``H[0]`` on entry and equals it again on return: the total
    travels in a register instead of being reloaded right after it was stored.
    """
    cdef uint32_t r = <uint32_t>((<uint64_t>st.rng * _INV[st.tot]) >> 32)
    cdef uint32_t t = r * H[1]
    cdef uint32_t lo, b
    cdef int s
    if st.d >= t:
        s = 0
        st.d -= t
        st.rng -= t
        H[0] += inc
    else:
        # d < r * H[1], so s >= 1: symbol s owns r * [H[s+1], H[s]), so
        # s = #{j in 1..A-1 : r * H[j] > d}, counted 8 entries at a time.
        s = lk_count_above(H, r, st.d)
        lo = r * H[s + 1]      # s <= A - 1 and H[A] == 0: never reads past H[A]
        st.d -= lo             # d >= r * H[s + 1] by the count: no wrap-around
        st.rng = r * H[s] - lo
        lk_add_prefix(H, s, inc)
    st.tot += inc
    if LK_UNLIKELY(st.tot > limit):
        _rescale(H, A)
        st.tot = H[0]
    while st.rng < RC_TOP:
        b = 0
        if st.pos < st.n_in:   # explicit bounds check: past the end reads as 0
            b = st.inp[st.pos]
        st.pos += 1
        st.d = (st.d << 8) | b
        st.rng <<= 8
    st.sym = s
    return st


cdef Dec _decode_loop(uint8_t* out, Py_ssize_t C, Py_ssize_t Hh, Py_ssize_t W,
                      int A, int mode, uint32_t inc, uint32_t limit,
                      uint32_t* models, Py_ssize_t stride, int B,
                      const uint16_t* prior, Dec st) noexcept nogil:
    cdef Py_ssize_t n = C * Hh * W
    cdef Py_ssize_t i, c, y, x, k
    cdef Py_ssize_t HW = Hh * W
    cdef int left, top
    cdef uint32_t* H
    cdef uint8_t* row
    if mode == MODE_NONE or (mode == MODE_CHANNEL and C <= 1):
        H = models
        _model_init(H, A)
        st.tot = H[0]
        for i in range(n):
            st = _dec_get(st, H, A, inc, limit)
            out[i] = <uint8_t>st.sym
    elif mode == MODE_CHANNEL:
        H = models
        i = 0
        for c in range(C):
            _model_init(H, A)
            st.tot = H[0]
            for k in range(HW):
                st = _dec_get(st, H, A, inc, limit)
                out[i] = <uint8_t>st.sym
                i += 1
    else:
        for c in range(C):
            if c == 0 or mode != MODE_NEIGHBOR:
                _models_init(models, mode, prior, c, A, B, stride)
            for y in range(Hh):
                row = out + c * HW + y * W
                for x in range(W):
                    left = row[x - 1] if x > 0 else 0
                    top = row[x - W] if y > 0 else 0
                    H = models + (_BUCKET[left] * B + _BUCKET[top]) * stride
                    if LK_UNLIKELY(H[0] == 0):
                        _model_init(H, A)
                    st.tot = H[0]
                    st = _dec_get(st, H, A, inc, limit)
                    row[x] = <uint8_t>st.sym
    return st


def decode_raw(const uint8_t[::1] payload, uint8_t[:, :, ::1] out, int alphabet_size,
               int mode, uint32_t increment, uint32_t limit, prior=None):
    """Decode into the C-contiguous (C, H, W) uint8 array ``out`` (any bytes are safe).

    ``prior``: the learned mode's ``(C, B*B, A)`` uint16 counts (checked), else None.

    Returns ``(end, clean)``: ``end`` is the number of payload bytes the decoder
    used (bytes read minus the 3 that a terminated stream leaves implicit), which is
    exactly ``len(payload)`` for a payload written by ``encode_raw``; ``clean`` is
    True when the final code value sits where ``encode_raw``'s termination puts it
    (``code - low < 2**24``).  A version-1 payload (trailing zero bytes dropped) has
    ``len(payload) <= end``.  An empty output returns ``(0, True)``.
    """
    cdef Py_ssize_t C = out.shape[0]
    cdef Py_ssize_t H = out.shape[1]
    cdef Py_ssize_t W = out.shape[2]
    cdef Py_ssize_t n = C * H * W
    cdef int A = alphabet_size
    cdef int B
    cdef Py_ssize_t stride = (A + 8 + 7) & ~7   # A + 1 counts + 7 padding, 32-byte rows
    cdef Dec st
    cdef uint32_t* models
    cdef int k
    cdef const uint16_t[:, :, ::1] pv     # held until return: the loop reads through it
    cdef const uint16_t* prior_data = NULL
    _check_args(A, mode, increment, limit)
    _check_prior(prior, mode, C, A, limit)
    if n == 0:
        return 0, True
    if mode == MODE_LEARNED:
        pv = prior
        prior_data = &pv[0, 0, 0]
    B = _BUCKET[A - 1] + 1
    st.rng = LK_ALL32
    st.n_in = payload.shape[0]
    st.inp = &payload[0] if st.n_in > 0 else NULL
    st.d = 0
    st.sym = 0
    st.tot = 0
    for k in range(4):
        st.d <<= 8
        if k < st.n_in:
            st.d |= st.inp[k]
    st.pos = 4
    models = <uint32_t*>malloc(_n_models(mode, B) * stride * sizeof(uint32_t))
    if models == NULL:
        raise MemoryError()
    with nogil:
        st = _decode_loop(&out[0, 0, 0], C, H, W, A, mode, increment, limit, models,
                          stride, B, prior_data, st)
    free(models)
    return st.pos - 3, st.d < RC_TOP
