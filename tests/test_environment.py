"""CI's environment: every optional extra installed (so no test of an extra is skipped there), and none of
them moved the pinned CPU torch (``torch==2.13.0``, installed first by ``.ci/run`` and the README)."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

PINNED_TORCH = "2.13.0"
#: extra -> the modules it brings (pyproject.toml's optional dependencies)
EXTRAS = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "tensorboard": ("tensorboard",),
          "lightning": ("lightning",), "optuna": ("optuna",), "test": ("pytest", "hypothesis", "pandas")}

pytestmark = pytest.mark.skipif(os.environ.get("CI") != "true", reason="CI's environment (CI=true) only")


def test_no_extra_moved_the_pinned_torch():
    assert torch.__version__.split("+")[0] == PINNED_TORCH, torch.__version__


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_every_extra_is_installed(extra):
    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    assert not missing, f"extra {extra!r}: {missing} not installed (pip install -e '.[test,all]')"


def test_the_all_extra_names_every_other_extra():
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    named = extras["all"][0].split("[")[1].rstrip("]").split(",")
    assert sorted(named) == sorted(set(extras) - {"all", "test"})
