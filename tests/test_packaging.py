"""Packaging stays consistent: environment.yml and pyproject.toml name the same packages and pins."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_specs() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    proj = data["project"]
    specs = list(proj["dependencies"])
    for extra in proj["optional-dependencies"].values():
        specs += extra
    return {_name(s): s.replace(" ", "") for s in specs}


def _environment_specs() -> dict[str, str]:
    out = {}
    text = (ROOT / "environment.yml").read_text()
    deps = text.split("dependencies:", 1)[1]
    for line in deps.splitlines():
        m = re.match(r"^\s*-\s+([A-Za-z0-9_.\-\[\]]+[^#]*)", line)
        if not m:
            continue
        spec = m.group(1).split("#")[0].strip()
        name = _name(spec)
        if name in {"python", "pip", "pip:", "compilers", "setuptools", "cython"} or spec.startswith("-e"):
            continue
        out[name] = spec.replace(" ", "")
    return out


def test_environment_yml_matches_pyproject():
    py, env = _pyproject_specs(), _environment_specs()
    assert set(py) == set(env), f"only in pyproject: {sorted(set(py) - set(env))}; only in environment.yml: {sorted(set(env) - set(py))}"
    for name in py:
        assert py[name] == env[name], f"{name}: pyproject says {py[name]!r}, environment.yml says {env[name]!r}"


def test_torch_is_pinned_everywhere():
    assert _pyproject_specs()["torch"] == "torch==2.13.0"
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()


def test_build_requirements_cover_the_extension():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    req = {_name(s) for s in data["build-system"]["requires"]}
    assert {"setuptools", "cython", "numpy"} <= req
    assert (ROOT / "ext" / "arith.pyx").is_file()


def test_every_extension_source_is_built_and_imports():
    """Each ext/*.pyx is named in setup.py (so a fresh install compiles it) and its module imports."""
    import importlib

    setup_text = (ROOT / "setup.py").read_text()
    sources = sorted(p.name for p in (ROOT / "ext").glob("*.pyx"))
    assert sources == ["arith.pyx", "colourmap.pyx"]
    for source in sources:
        assert f'"{source}"' in setup_text, f"setup.py does not build ext/{source}"
    for module in ("labkit._arith", "labkit._colourmap"):
        importlib.import_module(module)
    assert '"-ffp-contract=off"' in setup_text    # the float32 kernels give NumPy's bytes on FMA CPUs


def test_package_data_ships_every_weights_file():
    # a shipped model is its weights, its config and (resae-rd-fast, resae-rd) its coder prior:
    # a file the package-data globs miss would be absent from an installed wheel
    from fnmatch import fnmatch

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["labkit"]
    files = [p.relative_to(ROOT / "labkit").as_posix() for p in (ROOT / "labkit" / "weights").rglob("*") if p.is_file()]
    assert files and any(f.endswith("coder_prior.npz") for f in files)
    missed = [f for f in files if not any(fnmatch(f, g) for g in globs)]
    assert not missed, f"not in [tool.setuptools.package-data] labkit: {missed}"
