"""Data-parallel training over ``torch.distributed`` processes (``selfexpand train --nproc N``, torchrun).

Each rank holds the whole network and the whole dataset. A training step of the run's model splits
every batch of the shared data order into ``N`` shards (rank ``r`` takes examples ``r, r + N, ...``),
each rank's loss is its shard's sum scaled by ``N / batch``, and after ``backward`` the gradients are
averaged over the ranks in one all-reduce (what ``DistributedDataParallel`` does, done by hand because
a growing network changes its parameters at every growth step): every rank then holds the gradient of
the whole batch's mean loss, the same as one process would, and takes the same optimizer step.

**Growth is decided once, identically.** Everything a growth step reads is the same on every rank:
the statistics gathered during the epoch come from the averaged gradients, and the growth step's own
passes (gradient passes, evaluations, copies trained, searches) run on the whole data on every rank
from the same generator, so every rank computes the same decision and the same new tensors (a growth
step costs each rank what it costs one process). :meth:`DataParallel.check_same` then compares a
digest of the model (spec and every tensor) and the optimizer state across the ranks after every
epoch's growth step, and stops the run if they differ.

An optimizer that needs the batch's outputs (the natural gradient, ``optimizer=natural``) is not split: each rank steps on
the whole batch (the same step as one process, no speed-up).

The process group is made from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...):
gloo on the CPU, NCCL on CUDA, with a timeout of :data:`TIMEOUT_S` seconds so that a rank left alone
by a dead one stops with an error instead of waiting forever (under torchrun the others are stopped at
once: its agent ends every worker when one fails). It is long enough for rank 0's own work while the
others wait: a checkpoint written, the test set evaluated and the run's files written at the end.
"""

from __future__ import annotations

import atexit
import datetime
import hashlib
import json
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError

__all__ = ["DataParallel", "from_environment", "TIMEOUT_S", "environment_size"]

TIMEOUT_S = 300


def environment_size() -> int:
    """``WORLD_SIZE`` of a torchrun worker (1 outside one)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE must be an integer, got {os.environ.get('WORLD_SIZE')!r}") from None


def from_environment(device: torch.device) -> "DataParallel | None":
    """The data-parallel group of this torchrun worker (made on first use), or None in a single process."""
    if environment_size() <= 1:
        return None
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=TIMEOUT_S))
        atexit.register(_close)  # a process ending with its group open may abort in gloo's threads
    return DataParallel(dist.get_rank(), dist.get_world_size(), device)


def _close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@dataclass
class DataParallel:
    """This process's place in the group: ``rank`` of ``size``, training on ``device`` (where the
    tensors it reduces live: NCCL reduces CUDA tensors only)."""

    rank: int
    size: int
    device: torch.device = torch.device("cpu")

    def barrier(self) -> None:
        """Wait until every rank is here."""
        dist.barrier()

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run directory; the others only train."""
        return self.rank == 0

    def shard(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """This rank's examples of a batch and the factor of its mean loss (``n_rank * N / batch``)."""
        xs, ys = x[self.rank::self.size], y[self.rank::self.size]
        return xs, ys, xs.shape[0] * self.size / max(x.shape[0], 1)

    def average_gradients(self, params) -> None:
        """Every parameter's ``.grad`` replaced by its mean over the ranks (one all-reduce)."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def sum(self, *values: float) -> list[float]:
        """Each value summed over the ranks (float64)."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def check_same(self, model, optimizer, where: str) -> None:
        """Stop with an error naming ``where`` unless every rank holds the same model and optimizer state.

        Raises:
            RuntimeError: the ranks' digests differ (their growth decisions or values diverged).
        """
        mine = digest(model, optimizer)
        every = [None] * self.size
        dist.all_gather_object(every, mine)
        differ = [r for r, d in enumerate(every) if d != every[0]]
        if differ:
            raise RuntimeError(f"ranks {differ} hold another model or optimizer state than rank 0 after {where}: "
                               "their growth decisions or values diverged")


def digest(model, optimizer) -> str:
    """SHA-256 of the model's spec (if it has one), every tensor of its state dict, and the optimizer's
    per-parameter state in parameter order."""
    h = hashlib.sha256()
    spec = getattr(model, "spec", None)
    if callable(spec):
        h.update(json.dumps(spec(), sort_keys=True, default=str).encode())
    tensors = list(model.state_dict().items())
    if optimizer is not None:
        for i, p in enumerate(q for g in optimizer.param_groups for q in g["params"]):
            for key, value in sorted(optimizer.state.get(p, {}).items()):
                tensors.append((f"optimizer.{i}.{key}", torch.as_tensor(value)))
    for name, t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
