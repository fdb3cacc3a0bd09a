"""The static front's networks (DESIGN.md glossary; :mod:`.front`): their target ``params``, the widths
that reach them (a dense start's hidden widths, or a conv start's channels and hidden widths, scaled by
one factor), their names, and the architecture folders the front runs start from."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["FRONT_POINTS", "SCALABLE", "front_params", "front_widths", "conv_front_widths", "ConvLayout",
           "point_name", "point_label", "write_templates"]

log = logging.getLogger("selfexpand.bench")

FRONT_POINTS = 5

#: start networks whose hidden widths the front scales, and their hidden activation
SCALABLE = {"mlp": "relu", "senn": "tanh"}


def front_params(start: int, largest: int, points: int = FRONT_POINTS) -> list[float]:
    """``points`` target ``params``, geometric from ``start`` to ``2 * largest``."""
    top = max(2 * largest, start)
    return [start * (top / start) ** (k / (points - 1)) for k in range(points)]


def _chain_params(widths: list[int]) -> int:
    return sum((a + 1) * b for a, b in zip(widths, widths[1:]))


def _scaled_nearest(target: float, size: Callable[[list[int]], int], widths: list[int]) -> list[int]:
    """``widths`` scaled by one factor (each rounded, at least 1) whose ``size`` is nearest ``target``
    (on a tie, the one reaching it). ``size`` must not decrease when a width grows, so the scaled
    widths' sizes are monotone in the factor: the nearest is the smallest reaching ``target`` or the
    largest below it."""
    def scaled(s):
        return [max(1, round(s * w)) for w in widths]

    lo, hi = 0.0, 1.0
    while size(scaled(hi)) < target:
        hi *= 2
    for _ in range(60):  # the smallest factor reaching the target
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if size(scaled(mid)) >= target else (mid, hi)
    above, below = scaled(hi), scaled(lo)
    return min((above, below), key=lambda w: abs(size(w) - target))


def front_widths(target: float, n_in: int, n_out: int, hidden: list[int], offset: int = 0) -> list[int]:
    """Hidden widths whose chain ``[n_in, *widths, n_out]`` has ``params`` nearest ``target``.

    ``hidden`` scaled by one factor (each width rounded, at least 1); with no hidden layer, the start
    itself when ``target`` is at most its ``params``, else one hidden layer. ``offset``: ``params`` the
    chain does not hold (a front's), the same at every width.
    """
    def size(widths):
        return _chain_params([n_in, *widths, n_out]) + offset

    if not hidden:
        if target <= size([]):
            return []
        return [max(1, round((target - offset - n_out) / (n_in + 1 + n_out)))]
    return _scaled_nearest(target, size, hidden)


@dataclass(frozen=True)
class ConvLayout:
    """What a conv start's ``params`` depend on besides its widths, read from a built start network
    (:meth:`of`): so :meth:`params` is exact for the same chain at any widths, whatever the start's
    conventions (kernel size, batch norm, pooling).

    Attributes:
        in_channels: the images' channels.
        kernel_areas: per layer after the input (conv blocks, dense hidden layers, output), the weights
            per input and output unit (a conv layer's kernel area; 1 for a dense layer).
        per_unit: per layer after the input, the ``params`` of one unit besides its incoming weights
            (its bias, and a batch norm's affine weight and bias).
        positions: the positions per channel of the last block's maps (the flatten boundary).
        n_out: the outputs.
    """

    in_channels: int
    kernel_areas: tuple[int, ...]
    per_unit: tuple[int, ...]
    positions: int
    n_out: int

    @classmethod
    def of(cls, net) -> "ConvLayout":
        """The layout of ``net``: a chain of conv layers, then dense layers (``GrowableNet.cnn``'s).

        Raises:
            ValueError: ``net`` is not such a chain.
        """
        from ..graph.conv import ConvLayer

        if not net.is_chain() or not isinstance(net.layers[net.order[1]], ConvLayer):
            raise ValueError("a conv layout needs a chain of conv blocks then dense layers (GrowableNet.cnn)")
        areas, per_unit, positions = [], [], None
        for prev, name in zip(net.order, net.order[1:]):
            layer, (conn,) = net.layers[name], net.incoming(name)
            areas.append(int(conn.weight[0, 0].numel()) if conn.weight.dim() == 4 else 1)
            norm = getattr(layer, "norm", None)
            affine = 0 if norm is None else sum(p.numel() for p in norm.parameters()) // layer.size
            per_unit.append(1 + affine)
            if conn.weight.dim() == 2 and isinstance(net.layers[prev], ConvLayer):
                positions = conn.shape[1] // net.layers[prev].size
        return cls(net.layers[net.input_name].size, tuple(areas), tuple(per_unit), positions,
                   net.layers[net.output_name].size)

    def params(self, conv: list[int], hidden: list[int]) -> int:
        """``params`` of the chain with these conv channels and dense hidden widths (as many of each
        as the layout's): weights, biases and batch-norm affine parameters."""
        widths = [*conv, *hidden, self.n_out]
        if len(widths) != len(self.per_unit):
            raise ValueError(f"this layout has {len(self.per_unit) - 1} conv and hidden layers, got "
                             f"conv={list(conv)}, hidden={list(hidden)}")
        total, previous = 0, self.in_channels
        for i, width in enumerate(widths):
            fan_in = previous * (self.positions if i == len(conv) else 1)  # the flatten boundary
            total += (fan_in * self.kernel_areas[i] + self.per_unit[i]) * width
            previous = width
        return total


def conv_front_widths(target: float, layout: ConvLayout, conv: list[int], hidden: list[int],
                      offset: int = 0) -> tuple[list[int], list[int]]:
    """``(conv channels, dense hidden widths)`` of a conv start scaled by one factor (each rounded, at
    least 1) whose ``params`` (``layout.params`` + ``offset``) is nearest ``target``. ``offset``: what
    the layout does not count (learnable activation coefficients), the same at every width."""
    k = len(conv)
    widths = _scaled_nearest(target, lambda w: layout.params(w[:k], w[k:]) + offset, [*conv, *hidden])
    return widths[:k], widths[k:]


def point_name(conv: list[int], hidden: list[int]) -> str:
    """A front point's name (module docstring): ``16-8``, ``c8-16-32``, ``c8-16-32+h64``."""
    dense = "-".join(map(str, hidden))
    if not conv:
        return dense
    return "c" + "-".join(map(str, conv)) + (f"+h{dense}" if hidden else "")


def point_label(name: str) -> str:
    """A front point's name for reading: ``hidden 16-8``, ``hidden none``, ``c8-16-32+h64``."""
    return name if name.startswith("c") else f"hidden {name or 'none'}"


def write_templates(family, root: Path) -> list[tuple[str, Path]]:
    """The front's networks as architecture folders (``model.safetensors``) under ``root``, from the
    family's first run (inputs, outputs, fixed front, the start's conventions; values are drawn anew by
    each run).

    Returns:
        ``(point name, folder)`` per front point (:func:`point_name`), smallest first (repeated widths
        kept once).
    """
    from ..checkpoint import save_checkpoint

    run = family.runs[0]
    largest = max(int(r["params_final"]) for r in family.runs)
    targets = front_params(int(run["params_start"]), largest)
    points = _conv_points(family, run, targets) if family.conv else _dense_points(family, run, targets)
    out = []
    for name, folder_name, build in points:
        folder = root / folder_name
        folder.mkdir(parents=True, exist_ok=True)
        save_checkpoint(folder / "model.safetensors", build())
        out.append((name, folder))
    return out


def _dense_points(family, run: dict, targets: list[float]) -> list[tuple[str, str, Callable]]:
    """``(name, folder name, build)`` of a dense start's front: ``GrowableNet.mlp`` with the start's
    hidden activation, behind the run's fixed front (if any)."""
    from ..checkpoint import load_checkpoint
    from ..graph import GrowableNet

    model = load_checkpoint(Path(run["run_dir"]) / "model.safetensors").model
    n_in, n_out = model.layers[model.input_name].size, model.layers[model.output_name].size
    offset = int(run["params_start"]) - _chain_params([n_in, *family.hidden, n_out])
    out, seen = [], set()
    for target in targets:
        widths = front_widths(target, n_in, n_out, family.hidden, offset)
        name = point_name([], widths)
        if name in seen:
            continue
        seen.add(name)
        out.append((name, "h" + name if widths else "h0",
                    lambda w=widths: GrowableNet.mlp([n_in, *w, n_out], SCALABLE[family.start], seed=0,
                                                     front=model.front, front_spec=model.front_spec)))
    return out


def _conv_points(family, run: dict, targets: list[float]) -> list[tuple[str, str, Callable]]:
    """``(name, folder name, build)`` of a conv start's front: the family's start network (built as
    the run built it: its method's start class, its resolved settings) with ``conv`` and ``hidden``
    scaled; the first point is the start itself."""
    build = _start_builder(run)
    layout = ConvLayout.of(build(family.conv, family.hidden))
    offset = int(run["params_start"]) - layout.params(family.conv, family.hidden)
    out, seen = [], set()
    for target in targets:
        conv, hidden = conv_front_widths(target, layout, family.conv, family.hidden, offset)
        name = point_name(conv, hidden)
        if name in seen:
            continue
        seen.add(name)

        def make(conv=conv, hidden=hidden, name=name):
            net = build(conv, hidden)
            expected = layout.params(conv, hidden) + offset
            if net.counts()["params"] != expected:  # a start the layout does not describe: say so
                log.warning("front point %s of %s has %d params, %d expected from its start's layout", name,
                            family.label, net.counts()["params"], expected)
            return net

        out.append((name, name, make))
    return out


def _start_builder(run: dict) -> Callable[[list[int], list[int]], object]:
    """``build(conv, hidden)``: the start network of ``run``'s method with its resolved settings, ``conv``
    and ``hidden`` replaced, on a dataset of the run's shapes (``preprocessing.json``), values from seed 0."""
    import torch

    from ..data import Dataset
    from ..presets import build_start
    from ..runconfig import read_config, run_settings

    run_dir = Path(run["run_dir"])
    config, stored = read_config(run_dir)
    settings = dict(stored) if stored is not None else run_settings(config)
    prep = json.loads((run_dir / "preprocessing.json").read_text())
    empty = torch.empty(0)
    data = Dataset(name=str(config.dataset), task=prep["task"], x_train=empty, y_train=empty, x_val=empty,
                   y_val=empty, x_test=empty, y_test=empty, input_shape=prep["input_shape"],
                   n_outputs=prep["n_outputs"], preprocessing=prep["preprocessing"])

    def build(conv, hidden):
        return build_start(config.method, {**settings, "conv": list(conv), "hidden": list(hidden)}, data, 0,
                           config.front)

    return build
