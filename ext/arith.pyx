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
Out-of-image neighbours are 0.  ``bucket(v) = 0 if v == 0 else 1 + floor(log2 v)``.

Safety
------
The encoder checks every symbol against the alphabet before it is used (and reports
the first bad position), and every write against the output capacity.  The decoder
reads input bytes through an explicit ``pos < n`` test (bytes past the end read as
0), writes exactly ``n`` symbols, and every decoded symbol is < alphabet by
construction, whatever the payload.  ``range`` never becomes 0 in the decoder
(every interval is >= 254 wide), so renormalisation always terminates.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, calloc, free
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
    """
    const uint64_t LK_MASK32
    const uint32_t LK_ALL32
    const uint64_t LK_LOW24
    bint LK_UNLIKELY(bint) noexcept nogil
    bint LK_LIKELY(bint) noexcept nogil

cdef enum:
    RC_TOP = 1 << 24
    MAX_TOTAL = 0xFFFF   # largest limit: fits the container's 16-bit field
    MAX_ALPHABET = 256
    MODE_NONE = 0
    MODE_CHANNEL = 1
    MODE_NEIGHBOR = 2
    MODE_NEIGHBOR_CHANNEL = 3
    N_MODES = 4

# Public constants mirrored by labkit.coder (kept here so the two cannot drift).
MAX_LIMIT = MAX_TOTAL
CONTEXT_MODES = ("none", "channel", "neighbor", "neighbor+channel")

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
    cdef int s
    for s in range(A + 1):
        H[s] = <uint32_t>(A - s)


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


cdef inline void _update(uint32_t* H, int s, int A, uint32_t inc,
                         uint32_t limit) noexcept nogil:
    cdef int j
    for j in range(s + 1):
        H[j] += inc
    if LK_UNLIKELY(H[0] > limit):
        _rescale(H, A)


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


cdef void _carry(uint8_t* out, Py_ssize_t pos) noexcept nogil:
    """Propagate a carry out of ``low`` into the bytes already written."""
    cdef Py_ssize_t i = pos - 1
    while i >= 0 and out[i] == 0xFF:
        out[i] = 0
        i -= 1
    if i >= 0:
        out[i] += 1


cdef inline Enc _enc_put(Enc st, const uint32_t* H, int s) noexcept nogil:
    cdef uint32_t r = <uint32_t>((<uint64_t>st.rng * _INV[H[0]]) >> 32)
    cdef uint32_t lo = r * H[s + 1]
    if s == 0:                 # symbol 0 (top of the interval) takes the slack
        st.rng = st.rng - lo
    else:
        st.rng = r * H[s] - lo
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
    """Emit the fewest bytes that pin a value inside [low, low + range).

    The decoder reads missing bytes as 0, so the value chosen is the one with the
    most trailing zero bytes (2**32 -> no byte at all, else low rounded up to a
    multiple of 2**24 -> one byte, always inside since range >= 2**24), and trailing
    zero bytes of the whole payload are dropped.
    """
    cdef uint64_t v
    if st.low != 0:
        if st.low + st.rng > (<uint64_t>1 << 32):
            _carry(st.out, st.pos)
        else:
            v = (st.low + LK_LOW24) & ~LK_LOW24
            if (v >> 32) != 0:
                _carry(st.out, st.pos)
            elif st.pos >= st.cap:
                st.err = 1
                return st
            else:
                st.out[st.pos] = <uint8_t>(v >> 24)
                st.pos += 1
    st.low = 0
    while st.pos > 0 and st.out[st.pos - 1] == 0:
        st.pos -= 1
    return st


cdef Py_ssize_t _encode_loop(const uint8_t* sym, Py_ssize_t C, Py_ssize_t Hh,
                             Py_ssize_t W, int A, int mode, uint32_t inc,
                             uint32_t limit, uint32_t* models, Py_ssize_t stride,
                             int B, Enc* result) noexcept nogil:
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
        for i in range(n):
            s = sym[i]
            if LK_UNLIKELY(s >= A):
                return i
            st = _enc_put(st, H, s)
            _update(H, s, A, inc, limit)
    elif mode == MODE_CHANNEL:
        H = models
        i = 0
        for c in range(C):
            _model_init(H, A)
            for k in range(HW):
                s = sym[i]
                if LK_UNLIKELY(s >= A):
                    return i
                st = _enc_put(st, H, s)
                _update(H, s, A, inc, limit)
                i += 1
    else:
        # neighbour modes: a model is marked uninitialised by H[0] == 0 (a live
        # model has total >= A >= 2) and initialised lazily on first use.
        for c in range(C):
            if c == 0 or mode == MODE_NEIGHBOR_CHANNEL:
                for k in range(B * B):
                    models[k * stride] = 0
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
                    st = _enc_put(st, H, s)
                    _update(H, s, A, inc, limit)
    st = _enc_finish(st)
    result[0] = st
    return -2 if st.err else -1


cdef inline Py_ssize_t _n_models(int mode, int B) noexcept nogil:
    if mode == MODE_NEIGHBOR or mode == MODE_NEIGHBOR_CHANNEL:
        return B * B
    return 1


cdef int _check_args(int A, int mode, uint32_t increment, uint32_t limit) except -1:
    if not (2 <= A <= MAX_ALPHABET) or not (0 <= mode < N_MODES):
        raise ValueError("bad alphabet size or context mode")
    if increment < 1 or limit > MAX_TOTAL or limit < <uint32_t>A + increment:
        raise ValueError("bad increment/limit")
    return 0


def encode_raw(const uint8_t[:, :, ::1] sym, int alphabet_size, int mode,
               uint32_t increment, uint32_t limit):
    """Encode the C-contiguous (C, H, W) uint8 array ``sym``.

    Returns the payload ``bytes``, or an ``int``: the flat index of the first symbol
    that is >= ``alphabet_size`` (nothing is emitted then).
    """
    cdef Py_ssize_t C = sym.shape[0]
    cdef Py_ssize_t H = sym.shape[1]
    cdef Py_ssize_t W = sym.shape[2]
    cdef Py_ssize_t n = C * H * W
    cdef int A = alphabet_size
    cdef int B
    cdef Py_ssize_t stride = (A + 1 + 7) & ~7
    cdef Py_ssize_t res
    cdef Enc st
    cdef uint32_t* models
    _check_args(A, mode, increment, limit)
    if n == 0:
        return b""
    B = _BUCKET[A - 1] + 1
    st.low = 0
    st.rng = LK_ALL32
    st.pos = 0
    st.err = 0
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
                               models, stride, B, &st)
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


cdef inline Dec _dec_get(Dec st, const uint32_t* H, int A) noexcept nogil:
    cdef uint32_t r = <uint32_t>((<uint64_t>st.rng * _INV[H[0]]) >> 32)
    cdef uint32_t t = r * H[1]
    cdef uint32_t lo, b
    cdef int s
    if st.d >= t:
        s = 0
        st.d -= t
        st.rng -= t
    else:
        s = 1
        lo = r * H[2]          # H has A + 1 >= 3 entries, H[A] == 0
        while st.d < lo and s < A - 1:
            s += 1
            lo = r * H[s + 1]
        if st.d < lo:          # unreachable (H[A] == 0); keeps d from wrapping
            lo = 0
        st.d -= lo
        st.rng = r * H[s] - lo
    while st.rng < RC_TOP:
        b = 0
        if st.pos < st.n_in:   # explicit bounds check: past the end reads as 0
            b = st.inp[st.pos]
        st.pos += 1
        st.d = (st.d << 8) | b
        st.rng <<= 8
    st.sym = s
    return st


cdef void _decode_loop(uint8_t* out, Py_ssize_t C, Py_ssize_t Hh, Py_ssize_t W,
                       int A, int mode, uint32_t inc, uint32_t limit,
                       uint32_t* models, Py_ssize_t stride, int B,
                       Dec st) noexcept nogil:
    cdef Py_ssize_t n = C * Hh * W
    cdef Py_ssize_t i, c, y, x, k
    cdef Py_ssize_t HW = Hh * W
    cdef int s, left, top
    cdef uint32_t* H
    cdef uint8_t* row
    if mode == MODE_NONE or (mode == MODE_CHANNEL and C <= 1):
        H = models
        _model_init(H, A)
        for i in range(n):
            st = _dec_get(st, H, A)
            s = st.sym
            out[i] = <uint8_t>s
            _update(H, s, A, inc, limit)
    elif mode == MODE_CHANNEL:
        H = models
        i = 0
        for c in range(C):
            _model_init(H, A)
            for k in range(HW):
                st = _dec_get(st, H, A)
                s = st.sym
                out[i] = <uint8_t>s
                _update(H, s, A, inc, limit)
                i += 1
    else:
        for c in range(C):
            if c == 0 or mode == MODE_NEIGHBOR_CHANNEL:
                for k in range(B * B):
                    models[k * stride] = 0
            for y in range(Hh):
                row = out + c * HW + y * W
                for x in range(W):
                    left = row[x - 1] if x > 0 else 0
                    top = row[x - W] if y > 0 else 0
                    H = models + (_BUCKET[left] * B + _BUCKET[top]) * stride
                    if LK_UNLIKELY(H[0] == 0):
                        _model_init(H, A)
                    st = _dec_get(st, H, A)
                    s = st.sym
                    row[x] = <uint8_t>s
                    _update(H, s, A, inc, limit)


def decode_raw(const uint8_t[::1] payload, uint8_t[:, :, ::1] out, int alphabet_size,
               int mode, uint32_t increment, uint32_t limit):
    """Decode into the C-contiguous (C, H, W) uint8 array ``out`` (any bytes are safe)."""
    cdef Py_ssize_t C = out.shape[0]
    cdef Py_ssize_t H = out.shape[1]
    cdef Py_ssize_t W = out.shape[2]
    cdef Py_ssize_t n = C * H * W
    cdef int A = alphabet_size
    cdef int B
    cdef Py_ssize_t stride = (A + 1 + 7) & ~7
    cdef Dec st
    cdef uint32_t* models
    cdef int k
    _check_args(A, mode, increment, limit)
    if n == 0:
        return
    B = _BUCKET[A - 1] + 1
    st.rng = LK_ALL32
    st.n_in = payload.shape[0]
    st.inp = &payload[0] if st.n_in > 0 else NULL
    st.d = 0
    st.sym = 0
    for k in range(4):
        st.d <<= 8
        if k < st.n_in:
            st.d |= st.inp[k]
    st.pos = 4
    models = <uint32_t*>malloc(_n_models(mode, B) * stride * sizeof(uint32_t))
    if models == NULL:
        raise MemoryError()
    with nogil:
        _decode_loop(&out[0, 0, 0], C, H, W, A, mode, increment, limit, models, stride,
                     B, st)
    free(models)
