"""labkit: a reproducible lab for learned image compression.

Image -> model -> latent -> quantizer -> arithmetic coder -> ``.lkc`` file and back, one
module per arrow (README's layout section lists them).  The public names below are
imported on first use, so ``import labkit`` stays instant and torch-free (the command line
relies on it) and ``labkit.models`` works where the compiled coder was not built.

>>> import labkit
>>> codec = labkit.Codec.from_pretrained()          # the rate-distortion model, b=2
>>> data = codec.encode(image)                       # uint8 HxWx3 array, PIL image or path
>>> recon = labkit.decode(data)                      # model, b and coder settings from the file
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # the codec
    "Codec": "codec", "CodecError": "codec", "EncodeResult": "codec", "decode": "codec",
    "encode_file": "codec", "decode_file": "codec",
    "Header": "bitstream", "BitstreamError": "bitstream",
    # facts
    "MODEL_NAMES": "spec", "DEFAULT_MODEL": "spec", "BITS": "spec", "bits_per_pixel": "spec",
    # images
    "as_rgb8": "imageio", "load_image": "imageio",
    # models and training
    "build_model": "models", "TrainConfig": "train", "fit": "train",
    "CheckpointError": "checkpoint", "available_weights": "checkpoint",
}
_ALIASES = {"load_image": "load"}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        value = getattr(module, _ALIASES.get(name, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (``__all__``) and the modules already imported, not this file's helpers."""
    modules = {k for k, v in globals().items() if type(v).__name__ == "module" and k != "importlib"}
    return sorted(set(__all__) | modules)
