"""Compute accounting: the FLOPs of training and of growth (DESIGN.md glossary, issue #22).

A FLOP count here is ``2 m n k`` summed over the matrix products and convolutions that the kernels
execute; elementwise work (activations, masks, modulators, biases, batch norm, pooling, losses,
optimizer updates other than the natural gradient's products) is not counted.

- **train_flops**: forward and backward of every training step of the run's model, integration
  epochs included. It is counted from the structure, not measured (measuring with
  ``torch.utils.flop_counter.FlopCounterMode`` makes an epoch about five times slower): per example,
  each connection's ``F.linear`` costs ``2 m k`` forward (``m x k`` its *stored* weight, masked
  entries included, as the kernel multiplies them), the same again backward for its weight's gradient
  when the weight (or anything it is made from, e.g. SWE's donations) requires a gradient, and again
  for its input's gradient when its source layer's output requires one (the network's input needs
  none; a layer's output requires one when anything before it or in it trains). A connection whose
  target does not reach the output has no backward. A fixed front's convolutions and linear maps are
  counted the same way (its first product needs no input gradient). FLOPs are linear in the batch,
  so an epoch costs the per-example count times the examples it trains on. A conv connection
  (``graph.conv``) costs ``2 * kernel entries * H' * W'`` per example and pass (``H' x W'`` its
  output maps, before pooling), as ``FlopCounterMode`` counts ``convolution`` and its backward; a
  dense connection across the flatten boundary counts as any ``F.linear`` (a column per channel and
  position).
- **live_train_flops**: the same over live entries only (DESIGN.md counts: an entry is live when its
  mask is 1 and both units it joins have a modulator factor other than 0); the front is dense.
  Summed over connections, the live forward count is ``2 weights_active``.
- **growth_flops**: the same products in the growth work (statistics passes, copies and their
  training, candidate searches, proposals, evaluations a growth part asks for), measured around the
  growth step (:class:`FlopMeter`), integration epochs excluded (they are training). Work done
  through ``GrowthContext``'s helpers on a :class:`GrowableNet` (a copy's training epoch, a gradient
  pass, an evaluation) is counted from the structure as above, with the meter paused, so the growth
  step is not slowed: callbacks run inside those helpers are therefore not measured (today they do
  only elementwise work). The meter counts what ``FlopCounterMode`` counts, by its own formulas
  (matrix products, convolutions, attention; factorisations and solves such as ``torch.linalg``'s
  are not counted), but without ``FlopCounterMode``'s module tracker: the tracker's hooks make
  ``torch.autograd.grad`` on leaf tensors fail (SENN's chain sample) and it costs more (an epoch
  measured with ``FlopCounterMode`` took 4-6 times as long, with this meter about twice).

The natural-gradient optimizer's conjugate-gradient products are counted too (:func:`natural_step_flops`):
its step does one backward pass to build the vector-Jacobian product and two per CG iteration (the
double-backward ``J v`` and the backward ``J^T (H J v)``), each with the products of an ordinary
backward pass; behind a front (whose convolutions' double backward costs more) the step is measured.
"""

from __future__ import annotations

import logging
import weakref
from contextlib import AbstractContextManager, contextmanager
from typing import Callable, NamedTuple

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from ..graph.conv import ConvConnection, spatial_sizes
from ..graph.network import GrowableNet
from ..report.summary import FLOP_KEYS

__all__ = ["FlopBreakdown", "flop_breakdown", "train_flops_per_example",
           "epoch_train_flops", "natural_step_flops", "FlopMeter", "warm_up", "FLOP_KEYS"]

log = logging.getLogger("selfexpand.train")

_PRODUCTS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class FlopBreakdown(NamedTuple):
    """Per-example FLOPs of one training step, forward and backward, stored and live."""

    forward: int
    forward_live: int
    backward: int
    backward_live: int

    @property
    def train(self) -> tuple[int, int]:
        """``(stored, live)`` of forward + backward."""
        return self.forward + self.backward, self.forward_live + self.backward_live


def flop_breakdown(model: GrowableNet) -> FlopBreakdown:
    """Per-example FLOPs of a training step of ``model`` under its current ``requires_grad`` flags.

    Raises:
        TypeError: ``model`` is not a :class:`GrowableNet`.
    """
    if not isinstance(model, GrowableNet):
        raise TypeError(f"FLOPs are counted for a GrowableNet, got {type(model).__name__}")
    forward, backward, needs = _front_flops(model.front, model.front_spec)
    forward_live, backward_live = forward, backward
    grad = {model.input_name: needs}  # layer -> whether its output requires a gradient
    factors = {model.input_name: None}
    reaches = _reaching_output(model)
    spatial = spatial_sizes(model)
    by_target: dict[str, list] = {}
    for conn in model.connections.values():
        by_target.setdefault(conn.target, []).append(conn)
    for name in model.order[1:]:
        layer = model.layers[name]
        own, factor = _layer_grad(layer)
        factors[name] = factor
        for conn in by_target.get(name, []):
            out_positions = _conv_positions(conn, spatial)
            entries = conn.weight.numel() * out_positions
            live = _live_entries(conn, factors[conn.source], factor) * out_positions
            w_grad = any(p.requires_grad for p in conn.parameters())
            x_grad = grad[conn.source]
            forward += 2 * entries
            forward_live += 2 * live
            if name in reaches:
                passes = int(w_grad) + int(x_grad)
                backward += 2 * entries * passes
                backward_live += 2 * live * passes
            own = own or w_grad or x_grad
        grad[name] = own
    return FlopBreakdown(forward, forward_live, backward, backward_live)


def train_flops_per_example(model: GrowableNet) -> tuple[int, int]:
    """``(stored, live)`` FLOPs of one training example, forward + backward, under the current
    ``requires_grad`` flags (frozen weights get no weight-gradient product)."""
    return flop_breakdown(model).train


def epoch_train_flops(model: GrowableNet, n_examples: int) -> tuple[int, int]:
    """``(stored, live)`` FLOPs of training on ``n_examples`` examples (an epoch over them), whatever
    the batch size: the products are linear in it. Forward and backward only: a ``NaturalGradient``
    step adds its solver's products, which depend on its CG iterations (:func:`natural_step_flops`)."""
    stored, live = train_flops_per_example(model)
    return stored * int(n_examples), live * int(n_examples)


def natural_step_flops(breakdown: FlopBreakdown, n_examples: int, iterations: int,
                       measured: int | None = None) -> tuple[int, int]:
    """``(stored, live)`` FLOPs of the products inside one ``NaturalGradient`` step on a batch of
    ``n_examples`` that ran ``iterations`` CG iterations: ``(1 + 2 iterations)`` backward passes.

    The formula holds for the graph's products; a front's convolutions cost more in the double
    backward, so behind a front the step is measured (:class:`FlopMeter`) and passed as ``measured``:
    the stored count is then the measurement, and the live count leaves out what the formula gives
    for the masked entries (the front is dense)."""
    k = int(n_examples) * (1 + 2 * int(iterations))
    stored, live = breakdown.backward * k, breakdown.backward_live * k
    if measured is None:
        return stored, live
    return int(measured), int(measured) - (stored - live)


# ---------------------------------------------------------------------- the growth meter
class _ProductCounter(TorchDispatchMode):
    """Counts every operation ``FlopCounterMode`` counts, with its formulas (``flop_registry``), and
    decomposes operations that have a composite kernel as it does, but tracks no modules."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        formula = flop_registry.get(func._overloadpacket)
        if formula is None and _decomposes(func):
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


_COMPOSITE: dict = {}


def _decomposes(func) -> bool:
    """Whether ``func.decompose`` has a composite kernel to run (cached per operation)."""
    known = _COMPOSITE.get(func)
    if known is None:
        key = torch._C.DispatchKey.CompositeImplicitAutograd
        known = _COMPOSITE[func] = key in func.py_kernels or torch._C._dispatch_has_kernel_for_dispatch_key(
            func.name(), key)
    return known


_WARM = [False]


def warm_up() -> None:
    """Pay once what the process's first dispatch mode costs (``torch`` imports ``torch._dynamo`` on
    first use, about 1.5 s on the project's CPU machine), so that it falls in no growth step's time."""
    if not _WARM[0]:
        with _ProductCounter():
            torch.zeros(1) + 1
        _WARM[0] = True


class FlopMeter:
    """Measures the FLOPs of a stretch of code as ``FlopCounterMode`` counts them, and can be paused
    (:meth:`paused`) where the work is counted otherwise (:meth:`add`). ``total``: the FLOPs measured
    and added so far.

    Use as a context manager; ``running`` is true inside it except while paused."""

    def __init__(self):
        self.total = 0
        self._mode: _ProductCounter | None = None

    @property
    def running(self) -> bool:
        return self._mode is not None

    def __enter__(self) -> "FlopMeter":
        self._start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop()

    def add(self, flops: int) -> None:
        self.total += int(flops)

    def repeats(self) -> Callable[[], AbstractContextManager]:
        """A context-manager factory for the iterations of a loop that all run the same products on
        tensors of the same shapes (a search's steps): the first iteration is measured, every later one
        runs with the meter paused and is counted as the first, so the total is the same as measuring
        them all, without the dispatch mode's cost on each operation. ``tick = meter.repeats()``, then
        ``with tick(): ...`` around each iteration. Nothing is measured when the meter is not running."""
        first: list[int] = []

        @contextmanager
        def tick():
            if not self.running:
                yield
            elif not first:
                before = self._count()
                yield
                first.append(self._count() - before)
            else:
                with self.paused():
                    yield
                self.add(first[0])

        return tick

    def _count(self) -> int:
        return self.total + (self._mode.total if self._mode is not None else 0)

    @contextmanager
    def paused(self):
        """Stop measuring inside the block (nothing happens when the meter is not running)."""
        was = self.running
        if was:
            self._stop()
        try:
            yield self
        finally:
            if was:
                self._start()

    def _start(self) -> None:
        self._mode = _ProductCounter()
        self._mode.__enter__()

    def _stop(self) -> None:
        if self._mode is not None:
            mode, self._mode = self._mode, None
            mode.__exit__(None, None, None)
            self.total += mode.total


# ---------------------------------------------------------------------- internals
def _layer_grad(layer) -> tuple[bool, torch.Tensor | None]:
    """Whether ``layer``'s own tensors make its output require a gradient (bias, activation
    coefficients, the modulator's factor), and the modulator's factor (None without one)."""
    if layer.is_input:
        return False, None
    own = any(p.requires_grad for n, p in layer.named_parameters() if not n.startswith("modulator."))
    factor = None
    if layer.modulator is not None:
        with torch.enable_grad():
            factor = layer.modulator()
        own = own or factor.requires_grad  # a detached factor (reference controller) passes none
        factor = factor.detach()
    return own, factor


def _conv_positions(conn, spatial: dict) -> int:
    """Output positions per example of a conv connection (``H' * W'`` of its convolution, before any
    pooling): each kernel entry is multiplied once per output position. 1 for a dense connection."""
    if not isinstance(conn, ConvConnection):
        return 1
    h, w = spatial[conn.target][0]
    return h * w


def _live_entries(conn, source_factor, target_factor) -> int:
    """Live entries of ``conn``: mask 1 and both units live (DESIGN.md counts)."""
    rows, cols = conn.shape[:2]
    if (conn.full or conn.sparse) and source_factor is None and target_factor is None:
        return conn.weight.numel()
    live_rows = None if target_factor is None else target_factor[conn.target_units(target_factor.numel())] != 0
    live_cols = None if source_factor is None else source_factor[conn.source_units(source_factor.numel())] != 0
    if conn.full:
        n_rows = rows if live_rows is None else int(live_rows.sum())
        n_cols = cols if live_cols is None else int(live_cols.sum())
        return n_rows * n_cols * (conn.weight.numel() // (rows * cols))
    live = conn.live()
    if live_rows is not None:
        live = live & live_rows[:, None].to(live.device)
    if live_cols is not None:
        live = live & live_cols[None, :].to(live.device)
    return int(live.sum())


def _reaching_output(model: GrowableNet) -> set[str]:
    """The layers from which a path of connections leads to the output (the output included)."""
    sources: dict[str, list[str]] = {}
    for conn in model.connections.values():
        sources.setdefault(conn.target, []).append(conn.source)
    seen, todo = {model.output_name}, [model.output_name]
    while todo:
        for source in sources.get(todo.pop(), []):
            if source not in seen:
                seen.add(source)
                todo.append(source)
    return seen


_FRONT_TRACES: "weakref.WeakKeyDictionary[nn.Module, list]" = weakref.WeakKeyDictionary()


def _front_flops(front: nn.Module | None, spec: dict | None = None) -> tuple[int, int, bool]:
    """``(forward, backward, output requires a gradient)`` per example for a fixed front, its
    modules taken in the order they run (a sequential front, as ``ConvFront``)."""
    if front is None:
        return 0, 0, False
    forward = backward = 0
    upstream = False  # whether the input of the module at hand requires a gradient
    for module, flops in _front_trace(front, (spec or {}).get("in_shape")):
        if flops:
            forward += flops
            backward += flops * (int(module.weight.requires_grad) + int(upstream))
        upstream = upstream or any(p.requires_grad for p in module.parameters(recurse=False))
    return forward, backward, upstream


def _front_trace(front: nn.Module, in_shape=None) -> list[tuple[nn.Module, int]]:
    """The front's leaf modules in the order they run, each with its forward FLOPs per example
    (0 for modules without a product), from one example's forward pass in evaluation mode (no
    statistic changes), made once per front: a front never changes shape. A front whose input shape
    is unknown (no ``in_shape`` attribute or spec entry) is not counted, with a warning."""
    trace = _FRONT_TRACES.get(front)
    if trace is not None:
        return trace
    shape = getattr(front, "in_shape", None) or in_shape
    if shape is None:
        log.warning("FLOPs: the front %s has no in_shape ([C, H, W]); its products are not counted",
                    type(front).__name__)
        _FRONT_TRACES[front] = []
        return []
    first = next(front.parameters(), None)
    x = torch.zeros(1, *shape, device=first.device if first is not None else "cpu",
                    dtype=first.dtype if first is not None else torch.float32)
    trace = []

    def hook(module, inputs, output):
        flops = 0
        if isinstance(module, nn.Linear):
            flops = 2 * output.numel() * module.in_features
        elif isinstance(module, _PRODUCTS):
            flops = 2 * output.numel() * module.weight[0].numel()  # (in / groups) x kernel per output
        elif any(True for _ in module.parameters(recurse=False)) and \
                not isinstance(module, nn.modules.batchnorm._NormBase):
            log.warning("FLOPs: front module %s is not a linear map or convolution; its products are "
                        "not counted", type(module).__name__)
        trace.append((module, flops))

    leaves = [m for m in front.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = front.training
    try:
        front.eval()
        with torch.no_grad():
            front(x)
    finally:
        front.train(was_training)
        for h in handles:
            h.remove()
    _FRONT_TRACES[front] = trace
    return trace
