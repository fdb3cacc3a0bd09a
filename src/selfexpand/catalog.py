"""The names the command line lists, as plain data: methods with their one-line summaries, the
registered datasets and the conv fronts.

The registries they come from (``selfexpand.presets``, ``selfexpand.data``, ``selfexpand.graph.spec``)
import torch, or sit next to modules that do; ``selfexpand --help`` and ``selfexpand methods`` read this
module instead and so start in a fraction of a second. ``tests/cli/test_cli_help.py`` checks that every
entry equals its registry, so the two cannot drift apart: a new built-in method, dataset or front is
added here too. Names registered at run time (``register_method``, ``register_dataset``,
``register_front``) are not listed here; the library accepts them all the same.
"""

from __future__ import annotations

__all__ = ["METHODS", "DATASETS", "FRONTS", "TASKS"]

#: method -> its one-line summary (``selfexpand.presets.get_preset(name).summary``), sorted by name
METHODS: dict[str, str] = {
    "controller-mask": "a controller output c masks the hidden units per unit (size by gradient descent)",
    "controller-mask-reference": "controller-mask with the reference code's two defects (for reproduction)",
    "edge": "edge expansion: split significant output edges on a validation-loss plateau, prune useless eps edges",
    "edge-reference": "edge expansion with the reference code's settings (for reproduction)",
    "firefly": "new units and unit splits ranked by the loss decrease they promise (Firefly)",
    "gradmax": "new units whose outgoing weights maximise the gradient norm (GradMax)",
    "net2net": "new units as noisy copies of existing ones (Net2Net, function preserved)",
    "random": "new units with random incoming and outgoing weights",
    "senn": "SENN: the natural expansion score decides when and where to add units and layers",
    "senn-deep": "SENN with three layer slots (the reference's deep MNIST experiment)",
    "size-weight": "a trainable size weight N gates the hidden units (size by gradient descent)",
    "static": "no growth: the start network trained as it is",
    "svod-random": "SVoD's votes, new units with random outgoing weights",
    "svod-zero": "SVoD's votes, new units with zero outgoing weights",
    "swe": "SWE + SVoD: gradient votes share each round's units among layers, weight donations integrate them",
    "zero": "new units with zero outgoing weights (function preserved)",
}

#: the registered dataset names (``selfexpand.data.dataset_names()``), sorted
DATASETS: tuple[str, ...] = (
    "bessel", "bessel-sum", "cifar10", "cubic", "digits", "emnist-letters", "fashion-mnist",
    "gaussian-mixture", "mnist", "moons", "quadratic", "spirals", "step-sine", "teacher-student",
)

#: the registered conv fronts (``selfexpand.graph.spec.FRONTS``), sorted
FRONTS: tuple[str, ...] = ("conv", "conv-small")

#: the tasks a dataset may be read as (``selfexpand.data.base.TASKS``)
TASKS: tuple[str, ...] = ("classification", "regression")
