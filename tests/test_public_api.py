"""The public API: what ``selfexpand`` and ``selfexpand.strategies`` export, loaded lazily, and what can be
imported without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import selfexpand
import selfexpand.strategies as strategies

EXTENSION_POINTS = ("Trigger", "Selector", "Initializer", "Site", "Decision", "GrowthMethod", "Callback",
                    "load_dataset", "Dataset", "method_names", "build_method", "resolve_config", "register_part",
                    "register_method", "Preset", "setting")


@pytest.mark.parametrize("name", selfexpand.__all__)
def test_every_exported_name_resolves(name):
    assert getattr(selfexpand, name) is not None


def test_the_extension_points_are_exported():
    assert set(EXTENSION_POINTS) <= set(selfexpand.__all__)
    for name in ("Trigger", "Selector", "Initializer", "Site", "Decision", "GrowthMethod", "register_part"):
        assert getattr(strategies, name) is getattr(selfexpand, name)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        selfexpand.nope  # noqa: B018


@pytest.mark.parametrize("statement", [
    "import selfexpand; selfexpand.__version__",
    "import selfexpand.presets as p; p.method_names(); p.get_preset('swe').rows['digits']",
    "import selfexpand.train.settings, selfexpand.validators, selfexpand.settings",
])
def test_importing_these_does_not_import_torch(statement):
    code = f"{statement}\nimport sys\nassert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:3]"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_version_is_declared_once():
    from importlib.metadata import version

    assert selfexpand.__version__ == version("selfexpand")
