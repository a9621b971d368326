"""A file's CRC covers the weights that decode it (``labkit.checkpoint.decoder_tag``, ``bitstream.WEIGHTS_FLAG``).

A new-user trial trained their own ``ae1``, encoded with it, and decoded without ``--weights``: the
shipped ``ae1`` decoded the file to noise without a word, because the header names a model, not its
weights.  Files written since 2026-11-28 start their CRC from a fingerprint of the decoder's
weights and coder prior, at no cost in bytes, so that case is refused with what to do.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

import labkit.codec
from labkit import bitstream, checkpoint
from labkit.bitstream import ChecksumError, Header
from labkit.checkpoint import available_weights, decoder_tag
from labkit.cli import main
from labkit.codec import Codec, CodecError
from labkit.paths import WEIGHTS_DIR


def test_the_registry_holds_every_shipped_weights_tag(load_model):
    """SHIPPED_WEIGHTS_TAGS is what decoder_tag computes from every shipped folder (and nothing else)."""
    shipped = available_weights()
    assert sorted(bitstream.SHIPPED_WEIGHTS_TAGS) == sorted(shipped)
    for name in shipped:
        model = load_model(name)
        assert decoder_tag(model) == bitstream.SHIPPED_WEIGHTS_TAGS[name], name
        assert model.config["name"] == name     # so Codec(model, b) writes the name these weights decode under
    assert len(set(bitstream.SHIPPED_WEIGHTS_TAGS.values())) == len(shipped)


def test_the_tag_covers_the_decoder_only_whatever_its_layout_or_wrapper(load_model):
    import copy

    from labkit.inference import optimize_for_inference

    model = copy.deepcopy(load_model("resae-rd-fast"))
    tag = decoder_tag(model)
    with torch.no_grad():
        next(model.encoder.parameters()).view(-1)[0] += 1.0        # a retrained encoder: files the same decoder reads
    assert decoder_tag(model) == tag
    assert decoder_tag(copy.deepcopy(model).to(memory_format=torch.channels_last)) == tag
    assert decoder_tag(copy.deepcopy(model).train()) == tag
    wrapper = torch.nn.Module()
    wrapper.decoder, wrapper.encoder = model.decoder, model.encoder  # e.g. torch.compile's _orig_mod. prefix
    assert decoder_tag(wrapper) == tag
    assert decoder_tag(optimize_for_inference(model)) != tag       # folded BatchNorm: the codec tags before folding
    with torch.no_grad():
        next(model.decoder.parameters()).view(-1)[0] += 1e-6        # one decoder weight, one ulp-ish change
    assert decoder_tag(model) != tag


def test_a_codec_without_the_prior_writes_files_the_shipped_decoder_reads(make_codec, eval_tiles):
    """The prior is not in the tag: a neighbor-context file of a codec told to use no prior decodes as usual."""
    bare = make_codec("resae-rd-fast", 3, "neighbor", coder_prior={})
    data = bare.encode(eval_tiles[1])
    assert np.array_equal(labkit.codec.decode(data), bare.decode(data))


def test_container_round_trip_with_a_tag():
    h = Header(model="ae1", b=2, height=16, width=24, latent_channels=16, downsample=8, ymax=1.5,
               context="neighbor", weights_tag=0xDEADBEEF)
    data = bitstream.pack(h, b"payload")
    assert data[2] == 2 | bitstream.WEIGHTS_FLAG
    assert len(data) == len(bitstream.pack(replace(h, weights_tag=None), b"payload"))   # no byte added
    assert bitstream.unpack(data, weights_tag=0xDEADBEEF) == (h, b"payload")
    with pytest.raises(ChecksumError, match="written with other weights than these weights; decode it with the "
                                            "weights that wrote it"):
        bitstream.unpack(data, weights_tag=0xDEADBEEE)
    with pytest.raises(ChecksumError, match="other weights than the shipped 'ae1' weights"):
        bitstream.unpack(data)                                      # default: the shipped ae1's tag
    assert bitstream.unpack(data, verify=False)[0].model == "ae1"
    shipped = replace(h, weights_tag=bitstream.SHIPPED_WEIGHTS_TAGS["ae1"])
    assert bitstream.unpack(bitstream.pack(shipped, b"payload")) == (shipped, b"payload")
    legacy = bitstream.pack(replace(h, weights_tag=None), b"payload")  # a file from before: CRC over the bytes only
    assert legacy[2] == 2 and bitstream.unpack(legacy, weights_tag=0x1234)[0].weights_tag is None
    with pytest.raises(bitstream.BitstreamError, match="unsupported .lkc format version 129"):
        bitstream.unpack(bytes([*legacy[:2], 1 | bitstream.WEIGHTS_FLAG, *legacy[3:]]))
    with pytest.raises(bitstream.BitstreamError, match="model 'resae-ps', an experiment this version of labkit no "
                                                       "longer builds"):   # a retired id: no --weights can help
        bitstream.unpack(bitstream.pack(replace(h, model="resae-ps"), b"payload"))
    shipped_tags = dict(bitstream.SHIPPED_WEIGHTS_TAGS)
    try:                                                            # a registered model without shipped weights
        del bitstream.SHIPPED_WEIGHTS_TAGS["ae1"]
        with pytest.raises(bitstream.BitstreamError, match="model 'ae1' ships none here; decode it with the weights "
                                                           r"that wrote it \(labkit decode --weights DIR\)"):
            bitstream.unpack(data)
    finally:
        bitstream.SHIPPED_WEIGHTS_TAGS.clear()
        bitstream.SHIPPED_WEIGHTS_TAGS.update(shipped_tags)
    newer = bytearray(data)
    newer[3] = 200                                                  # a model id from a newer labkit
    with pytest.raises(bitstream.BitstreamError, match="unknown model id 200; the file was written by a newer labkit"):
        bitstream.unpack(bytes(newer))
    with pytest.raises(bitstream.BitstreamError, match="weights tag"):
        bitstream.pack(replace(h, weights_tag=1 << 32), b"payload")


@pytest.fixture(scope="module")
def own_weights(tmp_path_factory):
    """A weights folder holding "ae1" with another decoder: a user's own training run under a shipped name."""
    root = tmp_path_factory.mktemp("own")
    shutil.copytree(WEIGHTS_DIR / "ae1", root / "ae1")
    state = torch.load(root / "ae1" / "model.pt", weights_only=True)
    key = next(k for k in sorted(state) if k.startswith("decoder.") and k.endswith("weight"))
    state[key] = state[key] * 0.99
    torch.save(state, root / "ae1" / "model.pt")
    return root


def test_a_file_from_own_weights_is_refused_by_the_shipped_ones(own_weights, eval_tiles):
    tile = eval_tiles[3]
    own = Codec.from_pretrained("ae1", b=2, weights_dir=own_weights)
    shipped = Codec.from_pretrained("ae1", b=2)
    assert own.weights_tag != shipped.weights_tag == bitstream.SHIPPED_WEIGHTS_TAGS["ae1"]
    data = own.encode(tile)
    with pytest.raises(ChecksumError, match="other weights than the shipped 'ae1' weights.*--weights DIR"):
        labkit.codec.decode(data)                                   # decoded to noise before
    with pytest.raises(ChecksumError, match="other weights than these weights"):
        shipped.decode(data)
    mine = labkit.codec.decode(data, weights_dir=own_weights)
    assert np.array_equal(mine, own.decode(data))
    theirs = shipped.encode(tile)                                   # and the other way round
    with pytest.raises(ChecksumError, match="written with the shipped 'ae1' weights, not with this codec's; decode "
                                            "it with those \\(labkit decode without --weights"):
        labkit.codec.decode(theirs, weights_dir=own_weights)
    assert np.array_equal(labkit.codec.decode(theirs), shipped.decode(theirs))


def test_the_cli_says_which_weights_to_pass(own_weights, eval_tiles, tmp_path, capsys):
    from PIL import Image

    Image.fromarray(eval_tiles[5]).save(tmp_path / "tile.png")
    assert main(["encode", str(tmp_path / "tile.png"), str(tmp_path / "t.lkc"), "--model", "ae1",
                 "--weights", str(own_weights)]) == 0
    capsys.readouterr()
    assert main(["decode", str(tmp_path / "t.lkc"), str(tmp_path / "t.png")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "other weights than the shipped 'ae1' weights" in err and "--weights DIR" in err
    assert not (tmp_path / "t.png").exists()
    assert main(["decode", str(tmp_path / "t.lkc"), str(tmp_path / "t.png"), "--weights", str(own_weights)]) == 0
    assert (tmp_path / "t.png").is_file()
    assert main(["info", str(tmp_path / "t.lkc")]) == 1             # info checks against the shipped tag
    out = capsys.readouterr()
    assert "model       ae1 " in out.out and "other weights than the shipped 'ae1' weights" in out.err
    assert main(["info", str(tmp_path / "t.lkc"), "--weights", str(own_weights)]) == 0   # or the folder given
    out = capsys.readouterr()
    assert out.out.splitlines()[-1].endswith("CRC over the bytes and the decoder's weights: ok") and out.err == ""
    assert main(["info", str(tmp_path / "t.lkc"), "--json"]) == 1
    record = json.loads(capsys.readouterr().out)
    assert record["crc_ok"] is False and record["weights_tag"] is None and record["crc_covers_weights"] is True
    assert main(["info", str(tmp_path / "t.lkc"), "--weights", str(WEIGHTS_DIR)]) == 1
    assert "other weights than these weights" in capsys.readouterr().err


def test_decode_asks_for_bytes_not_a_path(tmp_path):
    with pytest.raises(CodecError, match="decode takes the file's bytes, got str"):
        labkit.codec.decode(str(tmp_path / "x.lkc"))


def test_checkpoint_exports_the_tag():
    assert "decoder_tag" in checkpoint.__all__


def test_codec_repr_names_what_it_writes(make_codec):
    c = make_codec("ae1", 3, "neighbor", refine=2)
    assert repr(c) == ("Codec(model='ae1', b=3, context='neighbor', scale='max', colour_map=False, refine=2, "
                       f"weights_tag=0x{bitstream.SHIPPED_WEIGHTS_TAGS['ae1']:08X})")


def test_a_corrupted_header_is_called_a_crc_mismatch_not_diagnosed_from_its_fields(make_codec, eval_tiles):
    """Before a field of a header is used to explain a failure, the header must be intact."""
    codec = make_codec("ae1", 2)
    data = codec.encode(eval_tiles[2])
    for offset, value in ((3, 2), (6, 0xFF), (7, 0xFF), (4, (1 << 4) | 4)):      # model, height, context
        bad = bytearray(data)
        bad[offset] = value
        with pytest.raises(ChecksumError, match="CRC mismatch"):
            codec.decode(bytes(bad))
        with pytest.raises(ChecksumError, match="CRC mismatch"):
            labkit.codec.decode(bytes(bad))


def test_a_run_folder_decodes_its_own_files(own_weights, eval_tiles, tmp_path):
    """decode(data, weights_dir=RUN) for a `labkit train --out RUN` folder (it asked for a parent of <model>/)."""
    run = tmp_path / "my-run"
    shutil.copytree(own_weights / "ae1", run)
    codec = Codec.from_checkpoint(run, b=2)
    data = codec.encode(eval_tiles[4])
    assert np.array_equal(labkit.codec.decode(data, weights_dir=run), codec.decode(data))
    other = Codec.from_pretrained("ae2", b=2).encode(eval_tiles[4])      # a file of another model: said plainly
    with pytest.raises(CodecError, match=r"no weights of model 'ae2' in .*my-run is a run folder of 'ae1'"):
        labkit.codec.decode(other, weights_dir=run)
