"""The tensors a :class:`~selfexpand.lightning.GrowthCallback`'s parts read, as a
:class:`~selfexpand.data.Dataset`: given by the user, or gathered from the trainer's dataloaders.

Growth parts work on in-memory tensors (statistics over training batches, the validation loss their
triggers watch, SWE's integration epochs), as the selfexpand trainer gives them. Gathering reads each
dataloader's dataset **in order** through a sequential loader with the same ``collate_fn`` (a
``TensorDataset`` is taken as it is), under ``torch.random.fork_rng``, so it neither draws from nor
changes the global random state that Lightning's shuffling uses. Every batch must be an ``(x, y)`` pair
of tensors. The task follows the targets: integer class indices are a classification, floats a
regression. The test split is empty (growth never reads it). Imports no ``lightning``.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from .data import Dataset
from .errors import ConfigError

__all__ = ["growth_dataset", "dataset_from_tensors"]

_GATHER_BATCH = 1024  # rows per batch when a dataset is read in order


def growth_dataset(data, trainer, net, device) -> Dataset:
    """``data`` (a ``Dataset`` or ``(x_train, y_train, x_val, y_val)``) as a ``Dataset`` on ``device``;
    when None, the trainer's training dataloader and first validation dataloader, gathered.

    Raises:
        ConfigError: ``data`` of another kind, no validation dataloader, dataloaders whose batches are
            not ``(x, y)`` tensor pairs, or targets that do not fit the network's outputs.
    """
    if isinstance(data, Dataset):
        dataset = data
    elif data is not None:
        if not isinstance(data, (tuple, list)) or len(data) != 4 or \
                not all(isinstance(t, torch.Tensor) for t in data):
            raise ConfigError(f"data must be a selfexpand.data.Dataset or a tuple of 4 tensors (x_train, y_train, "
                              f"x_val, y_val), got {type(data).__name__}"
                              + (f" of {len(data)}" if isinstance(data, (tuple, list)) else ""))
        dataset = dataset_from_tensors(*data, n_outputs=net.layers[net.output_name].size)
    else:
        val = trainer.val_dataloaders
        if isinstance(val, (list, tuple)):
            val = val[0] if val else None
        if val is None:
            raise ConfigError("GrowthCallback needs validation data (its triggers watch the validation loss): give "
                              "trainer.fit validation dataloaders, or GrowthCallback(data=...)")
        x_train, y_train = _gather(trainer.train_dataloader, "training")
        x_val, y_val = _gather(val, "validation")
        dataset = dataset_from_tensors(x_train, y_train, x_val, y_val, n_outputs=net.layers[net.output_name].size)
    moved = {f"{k}_{s}": getattr(dataset, f"{k}_{s}").to(device) for k in ("x", "y") for s in ("train", "val", "test")}
    dtype = next((p.dtype for p in net.parameters() if p.is_floating_point()), torch.float32)
    for key in ("x_train", "x_val", "x_test"):
        moved[key] = moved[key].to(dtype)
    return Dataset(**{**{f: getattr(dataset, f) for f in ("name", "task", "input_shape", "n_outputs",
                                                           "preprocessing")}, **moved})


def dataset_from_tensors(x_train, y_train, x_val, y_val, *, n_outputs: int) -> Dataset:
    """A ``Dataset`` of the four tensors: classification when ``y_train`` holds integers (class indices
    below ``n_outputs``), else regression (``y`` of one dimension becomes one column).

    Raises:
        ConfigError: rows and targets that differ in number, or class indices outside ``[0, n_outputs)``.
    """
    for name, x, y in (("train", x_train, y_train), ("val", x_val, y_val)):
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ConfigError(f"the {name} split must have as many targets as rows, and some rows, got "
                              f"x_{name} {list(x.shape)} and y_{name} {list(y.shape)}")
    classification = not y_train.is_floating_point()
    if classification:
        y_train, y_val = y_train.long().reshape(-1), y_val.long().reshape(-1)
        low, high = int(torch.cat([y_train, y_val]).min()), int(torch.cat([y_train, y_val]).max())
        if low < 0 or high >= n_outputs:
            raise ConfigError(f"class indices must lie in [0, {n_outputs}) for a network of {n_outputs} outputs, "
                              f"got labels from {low} to {high}")
    else:
        y_train, y_val = (y.float().reshape(y.shape[0], -1) for y in (y_train, y_val))
    x_train, x_val = x_train.float(), x_val.float()
    task = "classification" if classification else "regression"
    shape = tuple(x_train.shape[1:])
    return Dataset(name="lightning", task=task, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
                   x_test=x_train[:0], y_test=y_train[:0], input_shape=shape, n_outputs=int(n_outputs),
                   preprocessing={"task": task, "input_shape": list(shape)})


def _gather(loader, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ``(x, y)`` of ``loader``'s dataset, in order, concatenated."""
    dataset = getattr(loader, "dataset", None)
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return dataset.tensors[0], dataset.tensors[1]
    if dataset is not None and not isinstance(dataset, IterableDataset):
        loader = DataLoader(dataset, batch_size=_GATHER_BATCH, shuffle=False, num_workers=0,
                            collate_fn=getattr(loader, "collate_fn", None))
    xs, ys = [], []
    with torch.random.fork_rng(devices=[]):
        for batch in loader:
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2
                    and all(isinstance(t, torch.Tensor) for t in batch)):
                raise ConfigError(f"the {what} dataloader must yield (x, y) pairs of tensors for GrowthCallback to "
                                  f"gather, got a {type(batch).__name__}"
                                  + (f" of {len(batch)}" if isinstance(batch, (tuple, list)) else "")
                                  + "; pass GrowthCallback(data=(x_train, y_train, x_val, y_val)) instead")
            xs.append(batch[0].detach().cpu())
            ys.append(batch[1].detach().cpu())
    if not xs:
        raise ConfigError(f"the {what} dataloader yielded no batches")
    return torch.cat(xs), torch.cat(ys)
