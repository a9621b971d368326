"""The coder prior (labkit.coder_prior) and the codec's "learned" context mode that reads it."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from labkit import bitstream, coder, coder_prior, spec
from labkit.checkpoint import CheckpointError
from labkit.codec import Codec, CodecError, decode
from labkit.paths import WEIGHTS_DIR

DEFAULT = spec.DEFAULT_MODEL


def _bucket(v: int) -> int:
    return int(v).bit_length()


def test_contexts_are_the_coders():
    # the numpy derivation the fit uses must be the coder's: bucket(left) * B + bucket(top), same channel
    rng = np.random.default_rng(0)
    for a in (2, 8, 32):
        q = rng.integers(0, a, (3, 5, 7)).astype(np.uint8)
        nb = coder_prior.n_buckets(a)
        assert nb == coder.prior_shape(1, a)[1] ** 0.5
        want = np.zeros(q.shape, np.int64)
        for c, y, x in np.ndindex(q.shape):
            left = q[c, y, x - 1] if x else 0
            top = q[c, y - 1, x] if y else 0
            want[c, y, x] = _bucket(left) * nb + _bucket(top)
        np.testing.assert_array_equal(coder_prior.contexts(q, a), want)


def test_counts_and_table():
    rng = np.random.default_rng(1)
    arrays = [np.minimum(rng.geometric(0.5, (4, 6, 6)) - 1, 7).astype(np.uint8) for _ in range(10)]
    counts = coder_prior.count(arrays, 4, 3)
    assert counts.shape == (4, 16, 8) and counts.sum() == 10 * 4 * 36
    table = coder_prior.table_from_counts(counts, 3)
    assert table.dtype == np.uint16 and table.shape == coder.prior_shape(4, 8)
    assert table.min() >= 1 and table.sum(-1).max() <= coder_prior.LIMIT
    assert abs(float(table.sum(-1).mean()) - coder_prior.STRENGTH * 8) < 8 * 1.0  # rounding and the floor of 1
    seen = counts.sum(-1) > 50
    assert (table[seen].argmax(-1) == counts[seen].argmax(-1)).all()  # the likely symbol leads where data says so
    with pytest.raises(ValueError, match="channels"):
        coder_prior.count(arrays, 3, 3)
    with pytest.raises(ValueError, match="outside 0..3"):
        coder_prior.count(arrays, 4, 2)


def test_file_bytes_are_deterministic_and_load_checks_the_digest(tmp_path):
    rng = np.random.default_rng(2)
    tables = {b: rng.integers(1, 9, coder.prior_shape(3, 1 << b)).astype(np.uint16) for b in (1, 2, 3)}
    data = coder_prior.to_bytes(tables)
    assert coder_prior.to_bytes(tables) == data  # no time stamp inside
    sha = coder_prior.save(tables, tmp_path)
    assert sha == coder_prior.digest(data) == coder_prior.digest((tmp_path / coder_prior.FILE_NAME).read_bytes())
    back = coder_prior.load(tmp_path, 3, sha)
    assert sorted(back) == [1, 2, 3] and all(np.array_equal(back[b], tables[b]) for b in tables)
    with pytest.raises(coder_prior.CoderPriorError, match="not the coder prior its config.json records"):
        coder_prior.load(tmp_path, 3, "0" * 64)
    with pytest.raises(coder_prior.CoderPriorError, match="not the coder prior"):
        coder_prior.load(tmp_path, 3, None)  # an unrecorded table is refused too
    with pytest.raises(coder_prior.CoderPriorError, match=r"b=1 must be uint16 of shape \(4, 4, 2\)"):
        coder_prior.load(tmp_path, 4, sha)
    assert coder_prior.load(tmp_path / "elsewhere", 3, None) is None
    with pytest.raises(coder_prior.CoderPriorError, match="has no coder_prior.npz"):
        coder_prior.load(tmp_path / "elsewhere", 3, sha)


def test_the_default_model_codes_in_the_learned_context():
    for b in coder_prior.BITS:
        c = Codec.from_pretrained(DEFAULT, b=b)
        assert c.context == spec.PRIOR_CONTEXT and (c.increment, c.limit) == (coder_prior.INCREMENT, coder_prior.LIMIT)
        assert c.coder_prior[b].shape == coder.prior_shape(c.latent_channels, 1 << b)
    assert Codec.from_pretrained(DEFAULT, b=6).context == spec.DEFAULT_CONTEXT  # no table there
    assert Codec.from_pretrained("resae", b=3).context == spec.DEFAULT_CONTEXT  # the seed's keeps its coder
    with pytest.raises(CodecError, match="needs the model's coder prior for b=3.*has none"):
        Codec.from_pretrained("resae", b=3, context="learned")
    with pytest.raises(CodecError, match="needs the model's coder prior for b=6.*only for b=1, 2, 3, 4, 5"):
        Codec.from_pretrained(DEFAULT, b=6, context="learned")


@pytest.mark.parametrize("b", [2, 4])
def test_learned_files_are_smaller_with_the_same_pixels(eval_tiles, b):
    # the measured point of the mode: the same symbols in fewer bytes (whole files, real coder)
    learned, neighbor = Codec.from_pretrained(DEFAULT, b=b), Codec.from_pretrained(DEFAULT, b=b, context="neighbor")
    total_l = total_n = 0
    for tile in eval_tiles[::4]:
        rl, rn = learned.compress(tile), neighbor.compress(tile)
        np.testing.assert_array_equal(rl.symbols, rn.symbols)
        np.testing.assert_array_equal(rl.recon, rn.recon)
        np.testing.assert_array_equal(decode(rl.data), rl.recon)  # the module decoder finds the table
        total_l, total_n = total_l + len(rl.data), total_n + len(rn.data)
    assert total_l < 0.97 * total_n, (total_l, total_n)


def test_learned_files_need_the_models_table(eval_tiles):
    data = Codec.from_pretrained(DEFAULT, b=3).encode(eval_tiles[0])
    header, payload = bitstream.unpack(data)
    assert header.context == "learned"
    bare = Codec.from_pretrained(DEFAULT, b=3, coder_prior={})  # these weights without their table
    with pytest.raises(CodecError, match="needs the coder prior of model 'resae-rd-fast' for b=3"):
        bare.decode(data)
    crafted = bitstream.pack(replace(header, limit=100), payload)  # a limit the table's rows exceed
    with pytest.raises(CodecError, match="coder limit 100 is below"):
        Codec.from_pretrained(DEFAULT, b=3).decode(crafted)
    other = bitstream.pack(replace(header, limit=1000), payload)  # a limit that fits, but not this file's
    with pytest.raises(bitstream.BitstreamError, match="corrupt .lkc payload"):
        Codec.from_pretrained(DEFAULT, b=3).decode(other)


def test_a_changed_table_is_refused(tmp_path, eval_tiles):
    shutil.copytree(WEIGHTS_DIR / DEFAULT, tmp_path / DEFAULT)
    path = tmp_path / DEFAULT / coder_prior.FILE_NAME
    with np.load(path) as npz:
        tables = {int(k[1:]): npz[k].copy() for k in npz.files}
    tables[3][0, 0, 0] += 1
    path.write_bytes(coder_prior.to_bytes(tables))
    with pytest.raises(CheckpointError, match="not the coder prior its config.json records"):
        Codec.from_pretrained(DEFAULT, b=3, weights_dir=tmp_path)


def test_the_shipped_table_is_what_the_tool_fits():
    # tools/fit_coder_prior.py labkit/weights/resae-rd-fast, without writing: the same counts, up to
    # a latent value that another CPU's float rounding moves across a bin edge (here: exactly equal)
    from labkit.data import training_splits

    config = json.loads((WEIGHTS_DIR / DEFAULT / "config.json").read_text())["coder_prior"]
    assert config["images"] == len(training_splits(None)["train"]) and config["bits"] == list(coder_prior.BITS)
    tables, sha = coder_prior.fit_checkpoint(WEIGHTS_DIR / DEFAULT, training_splits(None)["train"], write=False)
    shipped = Codec.from_pretrained(DEFAULT, b=1).coder_prior
    for b in coder_prior.BITS:
        differ = np.count_nonzero(tables[b] != shipped[b])
        assert differ <= 0.01 * tables[b].size, (b, differ)
