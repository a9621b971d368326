"""A file decodes to the same symbols on any CPU, and to pixels within a stated tolerance.

The coder is integer-only (exact); the decoder network is float, so oneDNN's kernels for other
vector instructions may round a few pixels differently.  Simulated here by holding oneDNN to
SSE4.1 (``ONEDNN_MAX_CPU_ISA``; on a CPU where that setting does not apply both decodes are native
and agree exactly).  Tolerance: at most 4 levels and 0.1 % of the values apart
(``tools/exp_isa_decode.py`` measured at most 2 levels and 0.003 %).
"""
from __future__ import annotations

import importlib.util

import numpy as np

from labkit import photos
from labkit.codec import Codec
from labkit.paths import ROOT


def _tool():
    """``tools/exp_isa_decode.py``, whose decode-in-a-fresh-process this test shares."""
    spec = importlib.util.spec_from_file_location("exp_isa_decode", ROOT / "tools" / "exp_isa_decode.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_same_symbols_and_near_pixels_with_older_vector_instructions(tmp_path):
    img = photos.photo("astronaut.png")[128:384, 128:384]
    lkc = tmp_path / "a.lkc"
    lkc.write_bytes(Codec.from_pretrained("resae-rd-fast", b=4).encode(img))
    tool = _tool()
    native = tool._decode_in_process(lkc, tmp_path / "n.npz", "native")
    old = tool._decode_in_process(lkc, tmp_path / "o.npz", "SSE41")
    np.testing.assert_array_equal(old["symbols"], native["symbols"])  # exact: the integer coder
    diff = np.abs(old["recon"].astype(int) - native["recon"].astype(int))
    assert diff.max() <= 4, diff.max()
    assert (diff > 0).mean() <= 1e-3, (diff > 0).mean()
