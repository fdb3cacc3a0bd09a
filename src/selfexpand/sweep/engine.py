"""Many small full-batch runs of a size-controlled network as one batched computation.

Every run has the network of ``graph/size_nets.py`` (``n_in -> n_max`` tanh units gated by a size
modulator ``-> n_out``); the runs differ in initial values, learning rate, size-loss settings and
start of the control scalar. Their weights are stacked along a leading run axis ``R``
(``w_in (R, n_max, n_in)``, ...); one forward and one hand-written backward pass
(:func:`objective_and_gradients`) serve all runs, each run getting exactly its own gradient, and the
optimizer update is one tensor operation per weight.
There is no Python loop over runs: the per-step cost is that of a few small batched kernels.

A state may also carry ``w_control``: the control scalar fed as one more input of every hidden unit,
as the reference code does (``pre += w_control * N``). The library's modulators do not do this
(docs/methods.md), so such runs exist only here; without ``w_control`` the engine is the library.

The arithmetic is the library's, step for step: the forward of ``GrowableNet`` with a
:class:`~selfexpand.graph.size_modulators.SizeWeightModulator` or
:class:`~selfexpand.graph.size_modulators.ControllerMaskModulator`, the task loss of
``train/metrics.py`` plus the modulator's size loss, and ``torch.optim.SGD`` (``gd``, no momentum) or
``torch.optim.Adam`` (default betas and eps) updates. ``tests/sweep`` checks both claims: the
batched runs equal the same runs one by one, and equal runs of the library's ``Trainer``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..graph.size_modulators import controller_mask
from ..validators import boolean, integer, one_of, positive_int

__all__ = ["BatchedState", "BatchedSettings", "BatchedResult", "train_batched", "SIZE_KINDS"]

SIZE_KINDS = ("size-weight", "controller-mask")
OPTIMIZERS = ("gd", "adam")
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


@dataclass
class BatchedState:
    """Stacked values of ``R`` runs (leading axis = run)."""

    w_in: torch.Tensor      # (R, n_max, n_in)
    b_hidden: torch.Tensor  # (R, n_max)
    w_out: torch.Tensor     # (R, n_out, n_max)
    b_out: torch.Tensor     # (R, n_out)
    control: torch.Tensor   # (R,): the size weight N, or the controller output c
    w_control: torch.Tensor | None = None  # (R, n_max): weights of the control scalar as an input

    def tensors(self) -> list[torch.Tensor]:
        extra = [] if self.w_control is None else [self.w_control]
        return [self.w_in, self.b_hidden, self.w_out, self.b_out, self.control, *extra]

    @property
    def n_runs(self) -> int:
        return int(self.control.shape[0])

    @classmethod
    def stack(cls, states: list["BatchedState"]) -> "BatchedState":
        return cls(*(torch.cat(parts) for parts in zip(*(s.tensors() for s in states))))

    @classmethod
    def from_nets(cls, nets) -> "BatchedState":
        """Stack the values of library networks built by ``graph/size_nets.py`` (one hidden layer)."""
        rows = []
        for net in nets:
            hidden = net.hidden_layers()[0]
            layer = net.layers[hidden]
            w_in = net.connections[net.connection_names(source="input", target=hidden)[0]].weight
            w_out = net.connections[net.connection_names(source=hidden, target="output")[0]].weight
            control = next(iter(layer.modulator.parameters()))
            rows.append(cls(w_in[None], layer.bias[None], w_out[None], net.layers["output"].bias[None],
                            control.reshape(1)))
        return cls(*(t.detach().clone() for t in cls.stack(rows).tensors()))


@dataclass
class BatchedSettings:
    """What the runs share (``kind``, ``task``, ``optimizer``, ``reference_defects``) and what each
    run has for itself (tensors of shape ``(R,)``).

    Attributes:
        kind: ``size-weight`` or ``controller-mask``.
        task: ``regression`` (mean squared error) or ``classification`` (cross-entropy).
        optimizer: ``gd`` (plain gradient descent) or ``adam``.
        lr: ``(R,)`` learning rates.
        size_lambda, n_inf, dn: ``(R,)`` size-weight settings (``lambda (N - N_inf)^2``, ramp width).
        size_weight: ``(R,)`` controller size-loss weight (``w (c - 1)^2``).
        reference_defects: controller only: ``c`` detached from the task, one scalar mask per layer.
    """

    kind: str
    task: str
    optimizer: str
    lr: torch.Tensor
    size_lambda: torch.Tensor | None = None
    n_inf: torch.Tensor | None = None
    dn: torch.Tensor | None = None
    size_weight: torch.Tensor | None = None
    reference_defects: bool = False

    def check(self, n_runs: int) -> None:
        """Raises ConfigError when a shared value is unknown or a per-run tensor is missing."""
        one_of("kind", self.kind, SIZE_KINDS)
        one_of("task", self.task, ("regression", "classification"))
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        boolean("reference_defects", self.reference_defects)
        needed = ("lr", "size_lambda", "n_inf", "dn") if self.kind == "size-weight" else ("lr", "size_weight")
        for name in needed:
            value = getattr(self, name)
            if value is None or tuple(value.shape) != (n_runs,):
                raise ConfigError(f"{name} must be a tensor of shape ({n_runs},), got {name}={value!r}")


@dataclass
class BatchedResult:
    """Per run, after training: final objective, task losses, test metric, live width, control value."""

    train_loss: torch.Tensor        # (R,) task loss on the training set after the last step
    objective: torch.Tensor         # (R,) task + size loss after the last step
    test_loss: torch.Tensor         # (R,)
    test_metric: torch.Tensor       # (R,) mse (regression) or accuracy (classification)
    final_size: torch.Tensor        # (R,) live hidden units (factor > 0)
    control: torch.Tensor           # (R,) final N or c
    state: BatchedState
    control_trace: torch.Tensor = field(default=None)  # (n_records, R) control every record_every steps
    seconds: float = 0.0


def _task_control(state: BatchedState, settings: BatchedSettings) -> torch.Tensor:
    """The control scalar as the task sees it (detached under the controller's reference defects)."""
    if settings.kind == "controller-mask" and settings.reference_defects:
        return state.control.detach()
    return state.control


def factors(state: BatchedState, settings: BatchedSettings, n_max: int) -> torch.Tensor:
    """``(R, n_max)`` per-unit factors of every run (the modulators' ``forward``)."""
    if settings.kind == "size-weight":
        offsets = torch.arange(n_max, dtype=state.control.dtype, device=state.control.device)
        u = state.control[:, None] - offsets
        dn = settings.dn[:, None].to(u.dtype)
        return torch.sin(torch.clamp(u, torch.zeros_like(dn), dn) * (math.pi / (2.0 * dn))) ** 2
    if settings.reference_defects:
        s = torch.sin(state.control.detach() * (math.pi / 2.0)) ** 2
        return s[:, None].expand(-1, n_max)
    return controller_mask(state.control, n_max)


def forward(state: BatchedState, settings: BatchedSettings, x: torch.Tensor) -> torch.Tensor:
    """Outputs ``(R, P, n_out)`` of every run for the shared inputs ``x (P, n_in)``."""
    n_max = state.b_hidden.shape[1]
    pre = torch.einsum("pd,rhd->rph", x, state.w_in) + state.b_hidden[:, None, :]
    if state.w_control is not None:
        pre = pre + (state.w_control * _task_control(state, settings)[:, None])[:, None, :]
    h = torch.tanh(pre) * factors(state, settings, n_max)[:, None, :]
    return torch.einsum("rph,roh->rpo", h, state.w_out) + state.b_out[:, None, :]


def task_losses(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """``(R,)`` mean task loss per run (``F.mse_loss`` / ``F.cross_entropy``, reduction mean)."""
    if task == "regression":
        return ((out - y[None]) ** 2).mean(dim=(1, 2))
    n_runs, n_points, n_out = out.shape
    flat = F.cross_entropy(out.reshape(-1, n_out), y.repeat(n_runs), reduction="none")
    return flat.view(n_runs, n_points).mean(1)


def size_losses(state: BatchedState, settings: BatchedSettings) -> torch.Tensor:
    """``(R,)`` size loss per run: ``lambda (N - N_inf)^2`` or ``w (c - 1)^2``."""
    if settings.kind == "size-weight":
        return settings.size_lambda * (state.control - settings.n_inf) ** 2
    return settings.size_weight * (state.control - 1.0) ** 2


BROADCAST_LIMIT = 1 << 22


def _outputs(hidden: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    """``out[p, r, o] = sum_h hidden[p, r, h] w_out[r, o, h]``: a broadcast product summed over its
    last axis while it is small (``torch.bmm`` launches one tiny product per run, several times slower
    at these sizes), else ``einsum``."""
    if hidden.shape[0] * w_out.numel() <= BROADCAST_LIMIT:
        return (hidden[:, :, None, :] * w_out).sum(-1)
    return torch.einsum("prh,roh->pro", hidden, w_out)


def _back_to_hidden(d_out: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    """``d_hidden[p, r, h] = sum_o d_out[p, r, o] w_out[r, o, h]``, as :func:`_outputs`."""
    if d_out.shape[0] * w_out.numel() <= BROADCAST_LIMIT:
        return (d_out[:, :, :, None] * w_out).sum(2)
    return torch.einsum("pro,roh->prh", d_out, w_out)


def _sum_points(t: torch.Tensor) -> torch.Tensor:
    """Sum over the first (points) axis as a matrix product with a row of ones: every run's sum is then
    added in the same order whatever the number of runs, so a batch of runs gives bit for bit what
    the runs give one by one (``Tensor.sum`` vectorises across the runs, in an order that depends on
    their number; Adam turns such last-bit differences into visible ones within a thousand steps)."""
    ones = torch.ones(t.shape[0], 1, dtype=t.dtype, device=t.device)
    return (t.reshape(t.shape[0], -1).T @ ones).view(t.shape[1:])


def objective_and_gradients(state: BatchedState, settings: BatchedSettings, x: torch.Tensor,
                            y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(R,)`` objectives (task + size loss) and their gradients, written out by hand.

    The same numbers as autograd through :func:`forward`, :func:`task_losses` and
    :func:`size_losses` (``tests/sweep`` checks it), without autograd's per-operation bookkeeping.
    Activations are laid out ``(P, R, H)`` (points, runs, units): the inputs are shared, so one
    matrix product serves every run's first layer, and every other operation is elementwise or a
    reduction over a contiguous axis.
    """
    n_runs, n_max = state.b_hidden.shape
    n_in = state.w_in.shape[2]
    pre = (x @ state.w_in.reshape(n_runs * n_max, n_in).T).view(-1, n_runs, n_max)
    control = state.control
    bias = state.b_hidden if state.w_control is None else state.b_hidden + state.w_control * control[:, None]
    act = torch.tanh(pre + bias)                                            # (P, R, H)
    units = torch.arange(n_max, dtype=control.dtype, device=control.device)
    if settings.kind == "size-weight":
        dn = settings.dn[:, None]
        scale = math.pi / (2.0 * dn)
        u = control[:, None] - units
        angle = torch.clamp(u, torch.zeros_like(dn), dn) * scale
        factor = torch.sin(angle) ** 2
        dfactor = torch.where((u >= 0) & (u <= dn), scale * torch.sin(2 * angle), torch.zeros_like(angle))
    elif settings.reference_defects:
        factor = (torch.sin(control * (math.pi / 2.0)) ** 2)[:, None].expand(-1, n_max)
        dfactor = None  # c is detached from the task
    else:
        v = (torch.sin(control * (math.pi / 2.0)) ** 2)[:, None] * n_max - units
        factor = torch.clamp(v, 0.0, 1.0)
        ds = (math.pi / 2.0) * torch.sin(math.pi * control)
        dfactor = torch.where((v >= 0) & (v <= 1), n_max * ds[:, None], torch.zeros_like(v))
    hidden = act * factor                                                   # (P, R, H)
    out = _outputs(hidden, state.w_out) + state.b_out                       # (P, R, O)
    n_points, n_out = out.shape[0], out.shape[2]
    if settings.task == "regression":
        diff = out - y[:, None, :]
        task = (diff * diff).sum((0, 2)) / (n_points * n_out)
        d_out = diff * (2.0 / (n_points * n_out))
    else:
        logp = torch.log_softmax(out, dim=-1)
        index = y[:, None, None].expand(-1, n_runs, 1)
        task = -logp.gather(-1, index).squeeze(-1).sum(0) / n_points
        d_out = torch.exp(logp).scatter_add_(-1, index, torch.full(index.shape, -1.0, dtype=out.dtype,
                                                                   device=out.device)) / n_points
    g_w_out = _sum_points(d_out[:, :, :, None] * hidden[:, :, None, :])     # (R, O, H)
    d_hidden = _back_to_hidden(d_out, state.w_out)                         # (P, R, H)
    d_pre = d_hidden * factor * (1 - act * act)
    # the bias gradient as the weight of an input fixed at 1: one product, summed like the weights'
    x_one = torch.cat([x, torch.ones(n_points, 1, dtype=x.dtype, device=x.device)], 1)
    g_in = (d_pre.reshape(n_points, n_runs * n_max).T @ x_one).view(n_runs, n_max, n_in + 1)
    if settings.kind == "size-weight":
        size = settings.size_lambda * (control - settings.n_inf) ** 2
        g_control = 2 * settings.size_lambda * (control - settings.n_inf)
    else:
        size = settings.size_weight * (control - 1.0) ** 2
        g_control = 2 * settings.size_weight * (control - 1.0)
    g_bias = g_in[:, :, n_in]
    if dfactor is not None:
        g_control = g_control + (_sum_points(d_hidden * act) * dfactor).sum(1)
    grads = [g_in[:, :, :n_in], g_bias, g_w_out, _sum_points(d_out), g_control]
    if state.w_control is not None:  # the control scalar as one more input of every hidden unit
        grads.append(g_bias * control[:, None])
        if not (settings.kind == "controller-mask" and settings.reference_defects):
            grads[4] = g_control + (g_bias * state.w_control).sum(1)
    return task + size, grads


def _metric(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "regression":
        return ((out - y[None]) ** 2).mean(dim=(1, 2))
    return (out.argmax(-1) == y[None]).to(out.dtype).mean(1)


def train_batched(state: BatchedState, settings: BatchedSettings, x_train: torch.Tensor, y_train: torch.Tensor,
                  x_test: torch.Tensor, y_test: torch.Tensor, steps: int, *, record_every: int = 0,
                  progress: Callable[[int], None] | None = None, progress_every: int = 100) -> BatchedResult:
    """Train every run of ``state`` (a copy; the argument is not changed) for ``steps`` full-batch steps.

    Gradients come from :func:`objective_and_gradients`; the loop runs under ``torch.no_grad``.

    Args:
        state: initial values of the ``R`` runs (their dtype and device are the computation's).
        settings: see :class:`BatchedSettings`.
        x_train, y_train, x_test, y_test: one data set shared by every run.
        steps: number of optimizer steps (epochs: one full-batch step each).
        record_every: keep the control scalars every this many steps (0: never).
        progress: called with the number of steps done, every ``progress_every`` steps and at the end.

    Returns:
        :class:`BatchedResult`.

    Raises:
        ConfigError: ``steps`` or ``progress_every`` not a positive integer, ``record_every`` not an
            integer >= 0, or bad settings.
    """
    import time

    positive_int("steps", steps)
    integer("record_every", record_every, 0)
    positive_int("progress_every", progress_every)
    settings.check(state.n_runs)
    start = time.perf_counter()
    dtype, device = state.control.dtype, state.control.device
    settings = dataclasses.replace(settings, **{
        k: getattr(settings, k).to(device, dtype) for k in ("lr", "size_lambda", "n_inf", "dn", "size_weight")
        if getattr(settings, k) is not None})
    x_train, x_test = x_train.to(device, dtype), x_test.to(device, dtype)
    if settings.task == "regression":
        y_train, y_test = y_train.to(device, dtype), y_test.to(device, dtype)
    else:
        y_train, y_test = y_train.to(device), y_test.to(device)
    params = [t.detach().clone() for t in state.tensors()]
    work = BatchedState(*params)
    lr = [settings.lr.to(device, dtype).view(-1, *([1] * (p.dim() - 1))) for p in params]
    adam = settings.optimizer == "adam"
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params] if adam else []
    trace = []
    with torch.no_grad():
        _loop(params, work, settings, x_train, y_train, steps, lr, moments, trace, record_every, progress,
              progress_every)
    with torch.no_grad():
        out = forward(work, settings, x_train)
        train_loss = task_losses(out, y_train, settings.task)
        objective = train_loss + size_losses(work, settings)
        test_out = forward(work, settings, x_test)
        size = (factors(work, settings, work.b_hidden.shape[1]) > 0).sum(1)
        final = BatchedState(*(p.detach() for p in params))
        return BatchedResult(
            train_loss=train_loss, objective=objective, test_loss=task_losses(test_out, y_test, settings.task),
            test_metric=_metric(test_out, y_test, settings.task), final_size=size, control=final.control.clone(),
            state=final, control_trace=torch.stack(trace) if trace else None,
            seconds=time.perf_counter() - start)


def _loop(params, work, settings, x_train, y_train, steps, lr, moments, trace, record_every, progress,
          progress_every) -> None:
    for step in range(1, steps + 1):
        _, grads = objective_and_gradients(work, settings, x_train, y_train)
        if moments:
            _adam_step(params, grads, moments, lr, step)
        else:
            for p, g, rate in zip(params, grads, lr):
                p.sub_(rate * g)
        if record_every and step % record_every == 0:
            trace.append(work.control.clone())
        if progress is not None and (step % progress_every == 0 or step == steps):
            progress(step)


def _adam_step(params, grads, moments, lr, step: int) -> None:
    """``torch.optim.Adam`` (no weight decay, no amsgrad) on every stacked tensor, per-run ``lr``."""
    beta1, beta2 = ADAM_BETAS
    bias1 = 1 - beta1 ** step
    bias2_sqrt = math.sqrt(1 - beta2 ** step)
    for p, g, (m, v), rate in zip(params, grads, moments, lr):
        m.mul_(beta1).add_(g, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        denom = (v.sqrt() / bias2_sqrt).add_(ADAM_EPS)
        p.sub_((rate / bias1) * m / denom)
