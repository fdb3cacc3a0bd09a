"""``NaturalGradient``: SENN's optimizer, a damped Gauss-Newton step solved by conjugate gradient.

Each step solves ``(G + damping I) x = g`` by conjugate gradient (CG) and sets ``theta -= lr * x``
(ALGORITHMS.md §3, "Training"; arXiv 2307.04526). ``G = J^T H J`` is the generalised Gauss-Newton
(GGN) matrix of the batch: ``J`` the Jacobian of all the batch's outputs with respect to the
parameters, ``H`` the Hessian of the *batch-mean* loss with respect to the outputs, so that ``G`` is
scaled exactly as ``g``, the gradient of the mean loss:

- ``cross_entropy`` (logits ``(N, C, ...)``, classes on dim 1, mean over the ``M = numel / C``
  positions): ``H = (1 / M) blockdiag(diag(p_i) - p_i p_i^T)``, ``p_i = softmax`` of position ``i``.
- ``mse`` (``F.mse_loss``, mean over all ``numel`` entries): ``H = (2 / numel) I``.

``G`` is never formed: CG needs only products ``G v``, taken through the autograd graph of the
stored outputs (``J v`` by the double-backward trick, then ``J^T (H J v)`` by one backward), so the
optimizer works for any module and keeps no per-parameter state: parameters added to a group later
(growth) simply take part in the next step.

Protocol (the class attribute ``needs_outputs`` tells a training loop to follow it)::

    loss = loss_fn(outputs := model(x), y)
    loss.backward(retain_graph=True)     # g in .grad; keep the graph for the curvature products
    optimizer.set_outputs(outputs)
    optimizer.step()                     # frees the stored outputs
"""

from __future__ import annotations

import logging
import math

import torch

from ..checkpoint import register_optimizer
from ..errors import ConfigError
from ..validators import number, one_of, positive_int

__all__ = ["NaturalGradient", "NATURAL_GRADIENT_LOSSES"]

log = logging.getLogger("selfexpand.train")

NATURAL_GRADIENT_LOSSES = ("cross_entropy", "mse")

_USAGE = ("call loss.backward(retain_graph=True), then optimizer.set_outputs(outputs) with the batch's "
          "model outputs, then optimizer.step()")


@register_optimizer
class NaturalGradient(torch.optim.Optimizer):
    """Natural-gradient (damped Gauss-Newton) steps by matrix-free conjugate gradient.

    Solves ``(J^T H J + damping I) x = g`` (scaling in the module docstring) from ``x = 0`` until the
    relative residual ``||g - A x|| / ||g||`` is at most ``tol`` or ``max_iter`` iterations are done,
    then updates ``theta -= lr * x``. ``g`` is ``.grad`` plus ``weight_decay * theta`` (L2; the
    curvature has no weight-decay term). Parameters with ``requires_grad`` off or no ``.grad`` are
    skipped; a parameter that has a gradient but does not affect the outputs has no curvature, so its
    step is ``lr * g / damping``.

    ``lr`` and ``weight_decay`` may differ between parameter groups; ``damping``, ``max_iter``,
    ``tol`` and ``loss`` define one system over all groups and must agree.

    After each step ``last_info`` holds ``iterations``, ``residual`` (relative), ``parameters``
    (number of tensors solved for) and ``converged``.

    Args:
        params: parameters or parameter groups.
        lr: step size.
        damping: Tikhonov damping added to the curvature (> 0, so the system is positive definite).
        max_iter: most CG iterations per step.
        tol: relative residual at which CG stops.
        weight_decay: L2 coefficient added to the gradient.
        loss: ``cross_entropy`` (outputs are logits) or ``mse`` (``F.mse_loss`` with mean reduction).

    Raises:
        ConfigError: an argument out of range.
    """

    needs_outputs = True

    def __init__(self, params, lr: float = 0.1, damping: float = 0.1, max_iter: int = 100,
                 tol: float = 1e-10, weight_decay: float = 0.0, loss: str = "cross_entropy"):
        number("lr", lr, 0, low_open=True)
        number("damping", damping, 0, low_open=True)
        number("tol", tol, 0)
        number("weight_decay", weight_decay, 0)
        positive_int("max_iter", max_iter)
        one_of("loss", loss, NATURAL_GRADIENT_LOSSES)
        defaults = dict(lr=lr, damping=damping, max_iter=max_iter, tol=tol, weight_decay=weight_decay,
                        loss=loss)
        super().__init__(params, defaults)
        self._outputs: torch.Tensor | None = None
        self.last_info: dict = {}

    def set_outputs(self, outputs: torch.Tensor) -> None:
        """Store the batch's model outputs (their graph still alive) for the next :meth:`step`.

        Raises:
            ConfigError: ``outputs`` is not a tensor with an autograd graph.
        """
        if not torch.is_tensor(outputs) or not outputs.requires_grad:
            raise ConfigError("outputs must be the model's output tensor with its autograd graph "
                              f"(requires_grad=True); got {type(outputs).__name__} "
                              f"requires_grad={getattr(outputs, 'requires_grad', None)}")
        self._outputs = outputs

    def step(self, closure=None):
        """One natural-gradient step (see the class docstring).

        Args:
            closure: optional; re-evaluates the loss, calls ``backward(retain_graph=True)`` and
                :meth:`set_outputs`, and returns the loss.

        Returns:
            The closure's loss, or None.

        Raises:
            RuntimeError: no outputs were set since the last step.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        outputs, self._outputs = self._outputs, None
        if outputs is None:
            raise RuntimeError(f"NaturalGradient.step() needs the batch's outputs: {_USAGE}")
        settings = self._settings()
        params, lrs, grads = [], [], []
        for group in self.param_groups:
            for p in group["params"]:
                if not p.requires_grad or p.grad is None:
                    continue
                g = p.grad.detach()
                if group["weight_decay"]:
                    g = g + group["weight_decay"] * p.detach()
                params.append(p)
                lrs.append(group["lr"])
                grads.append(g)
        if not params:
            self.last_info = {"iterations": 0, "residual": 0.0, "parameters": 0, "converged": True}
            return loss
        with torch.enable_grad():
            directions = self._solve(outputs, params, grads, settings)
        with torch.no_grad():
            for p, lr, x in zip(params, lrs, directions):
                p.add_(x.to(p.dtype), alpha=-lr)
        return loss

    # ------------------------------------------------------------------ internals
    def _settings(self) -> dict:
        keys = ("damping", "max_iter", "tol", "loss")
        first = self.param_groups[0]
        for group in self.param_groups[1:]:
            for key in keys:
                if group[key] != first[key]:
                    raise ConfigError(f"{key} must be the same in every parameter group (one system is "
                                      f"solved), got {key}={first[key]!r} and {key}={group[key]!r}")
        return {key: first[key] for key in keys}

    def _solve(self, outputs: torch.Tensor, params: list, grads: list, settings: dict) -> list[torch.Tensor]:
        """CG on ``(G + damping I) x = g``; returns ``x`` split per parameter."""
        damping, tol = settings["damping"], settings["tol"]
        curvature = self._curvature(outputs, params, settings["loss"])
        g = torch.cat([t.reshape(-1) for t in grads])
        sizes = [t.numel() for t in grads]
        x = torch.zeros_like(g)
        r = g.clone()
        rr = torch.dot(r, r)
        g_norm = math.sqrt(float(rr))
        iterations, residual = 0, 0.0 if g_norm == 0 else 1.0
        if g_norm > 0 and math.isfinite(g_norm):
            d = r.clone()
            while iterations < settings["max_iter"] and residual > tol and float(rr) > 0:
                ad = curvature(d, sizes) + damping * d
                dad = torch.dot(d, ad)
                if not float(dad) > 0:  # A >= damping I, so only underflow or non-finite values
                    if not math.isfinite(float(dad)):
                        log.warning("natural gradient: CG stopped at iteration %d on a non-finite "
                                    "curvature product; keeping the iterate so far", iterations)
                    break
                alpha = rr / dad
                x.add_(d, alpha=float(alpha))
                r.sub_(ad, alpha=float(alpha))
                rr_new = torch.dot(r, r)
                iterations += 1
                residual = math.sqrt(float(rr_new)) / g_norm
                d.mul_(float(rr_new / rr)).add_(r)
                rr = rr_new
        self.last_info = {"iterations": iterations, "residual": residual, "parameters": len(params),
                          "converged": residual <= tol}
        log.debug("natural gradient: %d CG iterations, relative residual %.3g", iterations, residual)
        return [piece.view_as(t) for piece, t in zip(torch.split(x, sizes), grads)]

    @staticmethod
    def _curvature(outputs: torch.Tensor, params: list, loss: str):
        """``v -> G v`` (flat vectors) through the graph of ``outputs``."""
        out = outputs.detach()
        if loss == "cross_entropy":
            if out.dim() < 2:
                raise ConfigError("cross_entropy needs logits of shape (N, C, ...), "
                                  f"got outputs of shape {tuple(out.shape)}")
            probs = torch.softmax(out, dim=1)
            positions = out.numel() // out.shape[1]

            def hessian(v):
                return (probs * v - probs * (probs * v).sum(1, keepdim=True)) / positions
        else:
            scale = 2.0 / out.numel()

            def hessian(v):
                return scale * v
        # J^T u with the graph kept: linear in the dummy u, so d/du (J^T u . v) = J v
        dummy = torch.zeros_like(outputs, requires_grad=True)
        vjp = torch.autograd.grad(outputs, params, dummy, create_graph=True, allow_unused=True)
        used = [i for i, t in enumerate(vjp) if t is not None and t.requires_grad]
        if not used:
            log.debug("natural gradient: no parameter affects the outputs; curvature is zero")
        used_params = [params[i] for i in used]

        def product(v: torch.Tensor, sizes: list[int]) -> torch.Tensor:
            if not used:
                return torch.zeros_like(v)
            pieces = torch.split(v, sizes)
            tangents = [_as(pieces[i].view_as(vjp[i]), vjp[i].dtype) for i in used]
            jv = torch.autograd.grad([vjp[i] for i in used], dummy, tangents, retain_graph=True,
                                     allow_unused=True)[0]
            if jv is None:  # the outputs do not depend on these parameters' values
                return torch.zeros_like(v)
            back = torch.autograd.grad(outputs, used_params, _as(hessian(jv.detach()), outputs.dtype),
                                       retain_graph=True, allow_unused=True)
            result = [None] * len(sizes)
            for i, b in zip(used, back):
                if b is not None:
                    result[i] = _as(b.reshape(-1), v.dtype)
            return torch.cat([r if r is not None else v.new_zeros(n) for r, n in zip(result, sizes)])

        return product


def _as(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return tensor if tensor.dtype == dtype else tensor.to(dtype)
