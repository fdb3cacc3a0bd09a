"""Small shared helpers of the edge-expansion tests (``tests/strategies`` and ``tests/train``)."""

from __future__ import annotations

import functools

import torch

from selfexpand.data import Dataset
from selfexpand.train.context import GrowthContext
from selfexpand.train.history import History
from selfexpand.train.metrics import task_loss, task_metric


def toy_dataset(n: int = 96, d: int = 6, k: int = 3, *, seed: int = 0, signed: bool = False,
                task: str = "classification") -> Dataset:
    """Random features (``U[0, 1)``, or ``N(0, 1)`` when ``signed``) and random labels / targets."""
    g = torch.Generator().manual_seed(seed)
    def feats(m):
        return torch.randn(m, d, generator=g) if signed else torch.rand(m, d, generator=g)
    def labels(m):
        if task == "classification":
            return torch.randint(0, k, (m,), generator=g)
        return torch.randn(m, k, generator=g)
    x, xv, xt = feats(n), feats(n // 4), feats(n // 4)
    return Dataset("toy", task, x, labels(n), xv, labels(n // 4), xt, labels(n // 4), (d,), k, {})


def dataset_from(x: torch.Tensor, y: torch.Tensor, task: str = "regression") -> Dataset:
    """A dataset whose three splits are all ``(x, y)``."""
    k = y.shape[1] if task == "regression" else int(y.max()) + 1
    return Dataset("planted", task, x, y, x, y, x, y, (x.shape[1],), k, {})


def make_ctx(net, data: Dataset, *, batch_size: int = 16, seed: int = 0, lr: float = 1e-3,
             max_params: int | None = None, epoch: int = 0) -> GrowthContext:
    """A ``GrowthContext`` with a fresh Adam, as the trainer builds it."""
    return GrowthContext(model=net, optimizer=torch.optim.Adam(net.parameters(), lr=lr),
                         loss_fn=task_loss(data.task), data=data, batch_size=batch_size,
                         generator=torch.Generator().manual_seed(seed), history=History(),
                         max_params=max_params, epoch=epoch, metric_name=task_metric(data.task))


@functools.lru_cache(maxsize=1)
def digits() -> Dataset:
    """scikit-learn's digits, split with seed 0 (loaded once per test process)."""
    from selfexpand.data import load_dataset

    return load_dataset("digits", seed=0)


def live_edges(net) -> set[tuple[str, str, int, int]]:
    """Every live edge as ``(source layer, target layer, source unit, target unit)``."""
    out = set()
    for c in net.connections.values():
        src = c.source_units(net.layers[c.source].size)
        tgt = c.target_units(net.layers[c.target].size)
        for r, col in torch.nonzero(c.live()).tolist():
            out.add((c.source, c.target, int(src[col]), int(tgt[r])))
    return out


def provisional_edges(net) -> set[tuple[str, str, int, int]]:
    """Every live provisional (eps-born) edge, keyed as :func:`live_edges`."""
    out = set()
    for c in net.connections.values():
        if c.provisional is None:
            continue
        src = c.source_units(net.layers[c.source].size)
        tgt = c.target_units(net.layers[c.target].size)
        for r, col in torch.nonzero(c.provisional & c.live()).tolist():
            out.add((c.source, c.target, int(src[col]), int(tgt[r])))
    return out
