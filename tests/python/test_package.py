"""The package's metadata: version agreement, typing markers, docstrings."""

import pathlib
import re

import sluice

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_version_matches_pyproject_and_cmake():
    pyproject = (ROOT / "pyproject.toml").read_text()
    cmake = (ROOT / "CMakeLists.txt").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    assert sluice.__version__ == version
    assert f"set(sluice_version {version})" in cmake


def test_typed_package():
    package = pathlib.Path(sluice.__file__).parent
    assert (package / "py.typed").exists()
    assert (package / "_core.pyi").exists()


def test_every_public_name_is_documented():
    for name in sluice.__all__:
        obj = getattr(sluice, name)
        assert obj.__doc__ and obj.__doc__.strip(), name
