"""The curated public names of ``labkit``: each resolves, and importing the package stays light."""
import subprocess
import sys

import labkit


def test_every_public_name_resolves():
    for name in labkit.__all__:
        assert getattr(labkit, name) is not None, name
    assert labkit.DEFAULT_MODEL in labkit.MODEL_NAMES
    assert labkit.load_image is labkit.imageio.load


def test_import_labkit_does_not_import_torch():
    code = "import sys, labkit; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_name_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        labkit.nope  # noqa: B018
