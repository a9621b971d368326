# Compiler directives (boundscheck, wraparound, cdivision, ...) come from setup.py.
"""Colour-map kernels (``labkit._colourmap``): apply an affine RGB map, or a grid of them, to pixel
rows (:func:`map_rows`), and sum what the encoder's grid fit needs per block (:func:`block_sums`).

Low-level extension used by :mod:`labkit.colour`; call that module, not this one.  :func:`map_rows` is the
elementwise float32 arithmetic ``labkit.colour`` defines, done in one pass per pixel instead of
a dozen NumPy temporaries (about 10x faster on a 768x512 photo), and it gives the same bytes:

* ``x = pixel * float32(1 / 255)``;
* ``y0 = ((x_r * P[c] + x_g * P[3 + c]) + x_b * P[6 + c]) + P[9 + c]`` for output channel ``c``,
  with ``P`` the 12 parameters (``G`` row-major, then ``o``) of the column's left node;
  ``y1`` the same with its right node;
* blended: ``y = y0 * vx + y1 * wx`` (the grid's bilinear weights along x); unblended
  (one global map): ``y = y0``;
* ``out = uint8(clip(rint(y * 255), 0, 255))``, rounding half to even as NumPy's ``rint``.

Every operation is one IEEE float32 operation in that order.  setup.py compiles this file with
``-ffp-contract=off`` so no compiler fuses a multiply and an add (which would change the last
bit on CPUs with FMA), and without ``-ffast-math``: every CPU gives the bytes NumPy gives.
Every index is checked before the loop runs, so nothing reads outside its buffer.
"""
from libc.math cimport rintf
from libc.stdint cimport int32_t, uint8_t


def map_rows(const uint8_t[:, :, ::1] src, const float[:, :, ::1] params,
             const int32_t[::1] left, const int32_t[::1] right,
             const float[::1] wx, const float[::1] vx,
             uint8_t[:, :, ::1] out, bint blend):
    """Map the pixel rows ``src [r, w, 3]`` into ``out [r, w, 3]`` (see the module docstring).

    ``params [r or 1, nodes, 12]``: each row's node parameters (one row: shared by all rows);
    ``left``, ``right`` ``[w]``: each column's two node indices; ``wx``, ``vx`` ``[w]``: its
    blend weights (``vx = 1 - wx``, computed by the caller in float32).  ``blend=False`` maps
    every pixel by its left node alone (a global map: one node, ``left = 0``).
    """
    cdef Py_ssize_t rows = src.shape[0], width = src.shape[1]
    cdef Py_ssize_t nodes = params.shape[1]
    cdef Py_ssize_t r, col, c, pr
    cdef int32_t j0, j1
    cdef float x0, x1, x2, y0, y1, y, v
    cdef const float *p0
    cdef const float *p1
    cdef float inv255 = <float>(1.0 / 255.0)
    if src.shape[2] != 3 or out.shape[0] != rows or out.shape[1] != width or out.shape[2] != 3:
        raise ValueError(f"src and out must both be [rows, width, 3], got ({src.shape[0]}, {src.shape[1]}, {src.shape[2]}) "
                         f"and ({out.shape[0]}, {out.shape[1]}, {out.shape[2]})")
    if params.shape[2] != 12 or params.shape[0] not in (1, rows) or nodes < 1:
        raise ValueError(f"params must be [1 or rows, nodes >= 1, 12], got ({params.shape[0]}, {params.shape[1]}, {params.shape[2]})")
    if left.shape[0] != width or right.shape[0] != width or wx.shape[0] != width or vx.shape[0] != width:
        raise ValueError("left, right, wx and vx must each have one entry per column")
    for col in range(width):
        if not (0 <= left[col] < nodes and 0 <= right[col] < nodes):
            raise ValueError(f"column {col} names node {left[col]} / {right[col]}; there are {nodes}")
    with nogil:
        for r in range(rows):
            pr = r if params.shape[0] > 1 else 0
            for col in range(width):
                x0 = src[r, col, 0] * inv255
                x1 = src[r, col, 1] * inv255
                x2 = src[r, col, 2] * inv255
                j0 = left[col]
                j1 = right[col]
                p0 = &params[pr, j0, 0]
                p1 = &params[pr, j1, 0]
                for c in range(3):
                    y0 = x0 * p0[c]
                    y0 = y0 + x1 * p0[3 + c]
                    y0 = y0 + x2 * p0[6 + c]
                    y0 = y0 + p0[9 + c]
                    if blend:
                        y1 = x0 * p1[c]
                        y1 = y1 + x1 * p1[3 + c]
                        y1 = y1 + x2 * p1[6 + c]
                        y1 = y1 + p1[9 + c]
                        y = y0 * vx[col] + y1 * wx[col]
                    else:
                        y = y0
                    v = rintf(y * <float>255.0)
                    if v < 0:
                        v = 0
                    elif v > 255:
                        v = 255
                    out[r, col, c] = <uint8_t>v


def block_sums(const uint8_t[:, :, ::1] recon, const uint8_t[:, :, ::1] original,
               double mu0, double mu1, double mu2, Py_ssize_t block, double[:, :, :, ::1] sums):
    """Add each ``block x block`` block's sums ``f^T (f, t)`` into ``sums [nby, nbx, 4, 7]``; return
    ``sum |t|^2`` over the image (float64 throughout).

    ``f = (recon / 255 - mu, 1)`` and ``t = original / 255 - mu`` per pixel (``mu`` the
    reconstruction's mean colour): what ``labkit.colour``'s grid fit needs of the pixels, in one pass
    (the partial blocks at the right and bottom edges sum the pixels they have).
    """
    cdef Py_ssize_t h = recon.shape[0], w = recon.shape[1]
    cdef Py_ssize_t r, c, i, j, by
    cdef double g[7]
    cdef double *s
    cdef double tt = 0.0
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    if (original.shape[0] != h or original.shape[1] != w or recon.shape[2] != 3 or original.shape[2] != 3):
        raise ValueError("recon and original must both be [height, width, 3] of one size")
    if (sums.shape[0] != (h + block - 1) // block or sums.shape[1] != (w + block - 1) // block
            or sums.shape[2] != 4 or sums.shape[3] != 7):
        raise ValueError(f"sums must be [{(h + block - 1) // block}, {(w + block - 1) // block}, 4, 7] "
                         f"for a {h}x{w} image in blocks of {block}")
    with nogil:
        g[3] = 1.0
        for r in range(h):
            by = r // block
            for c in range(w):
                g[0] = recon[r, c, 0] / 255.0 - mu0
                g[1] = recon[r, c, 1] / 255.0 - mu1
                g[2] = recon[r, c, 2] / 255.0 - mu2
                g[4] = original[r, c, 0] / 255.0 - mu0
                g[5] = original[r, c, 1] / 255.0 - mu1
                g[6] = original[r, c, 2] / 255.0 - mu2
                tt += g[4] * g[4] + g[5] * g[5] + g[6] * g[6]
                s = &sums[by, c // block, 0, 0]
                for i in range(4):
                    for j in range(7):
                        s[i * 7 + j] += g[i] * g[j]
    return tt
