"""labkit: a reproducible lab for learned image compression.

Data -> model -> latent -> quantizer -> coder -> bitstream, one module per arrow
(see ``docs`` in README.md).  Submodules are imported lazily so that, e.g.,
``labkit.models`` works on a machine where the compiled coder was not built.
"""
__version__ = "0.1.0"
