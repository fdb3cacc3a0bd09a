"""TensorBoard logging: a trainer callback writing a run's figures where ``tensorboard --logdir`` reads.

Per epoch record of the history (integration epochs included; the global step is the record's epoch,
so a resumed run continues the same curves): ``loss/train``, ``loss/val``, ``metric/val_<metric>``,
``counts/params``, ``counts/weights_active``, ``counts/stored_params``, ``flops/train``,
``flops/live_train``, ``flops/growth``, ``inactive/units_fraction``, ``inactive/new_units_fraction``
(when the inactivity recorder ran) and ``width/<layer>`` for every hidden layer; the widths also as
the text ``widths`` (``input 64, h1 12, output 10``). Each growth step writes the text ``growth``: one
line per event (:func:`selfexpand.events.event_line`) and the trigger's reason.

Needs the ``tensorboard`` package (``pip install 'selfexpand[tensorboard]'``); torch's
``SummaryWriter`` writes the event files.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path

from ..errors import ConfigError
from ..events import event_line
from .callbacks import Callback

__all__ = ["TensorBoardLogger", "check_tensorboard"]

log = logging.getLogger("selfexpand.train")

#: epoch record key -> scalar tag
SCALARS = {"train_loss": "loss/train", "val_loss": "loss/val", "params": "counts/params",
           "weights_active": "counts/weights_active", "stored_params": "counts/stored_params",
           "train_flops": "flops/train", "live_train_flops": "flops/live_train", "growth_flops": "flops/growth",
           "inactive_units_fraction": "inactive/units_fraction",
           "inactive_new_units_fraction": "inactive/new_units_fraction"}


def check_tensorboard() -> None:
    """Raises ConfigError when the ``tensorboard`` package is not installed (it names the extra)."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("TensorBoard logging needs the tensorboard package, which is not installed: "
                          "pip install 'selfexpand[tensorboard]' (or pip install tensorboard)")


def _widths(model) -> dict[str, int]:
    layers = getattr(model, "layers", None)
    if layers is None:
        return {}
    return {name: int(layer.size) for name, layer in layers.items()}


class TensorBoardLogger(Callback):
    """Writes the run's epoch figures, widths and growth events to TensorBoard event files.

    Args:
        log_dir: the folder of the event files (created; several runs may share a parent folder,
            ``tensorboard --logdir PARENT`` then shows them side by side).

    Raises:
        ConfigError: the ``tensorboard`` package is not installed.

    The writer opens at ``on_train_begin`` and closes at ``on_train_end``; a resumed run (its
    context's epoch above 0) purges whatever the folder holds from later steps than its checkpoint,
    so steps an interrupted run logged after its last checkpoint are replaced, not doubled.
    """

    def __init__(self, log_dir):
        check_tensorboard()
        if not str(log_dir).strip():
            raise ConfigError(f"log_dir must be a folder path, got log_dir={str(log_dir)!r}")
        self.log_dir = Path(log_dir)
        self.writer = None
        self._logged = 0  # history records already looked at

    def on_train_begin(self, ctx, **kwargs) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(self.log_dir), purge_step=ctx.epoch + 1 if ctx.epoch > 0 else None)
        self._logged = len(ctx.history.records)
        if ctx.epoch == 0:
            self._widths(ctx, 0)

    def on_epoch_end(self, ctx, record: dict, **kwargs) -> None:
        if self.writer is None:
            return
        records = ctx.history.records[self._logged:]
        self._logged = len(ctx.history.records)
        for r in records:
            if r.get("type") == "epoch":
                self._scalars(ctx, r)
        self._widths(ctx, record["epoch"])
        self.writer.flush()

    def on_grow_end(self, ctx, events: list, reason: str = "", **kwargs) -> None:
        if self.writer is None:
            return
        lines = [event_line(e.to_dict()) for e in events]
        if reason:
            lines.append(f"reason: {reason}")
        self.writer.add_text("growth", "  \n".join(lines), global_step=ctx.epoch)

    def on_train_end(self, ctx, **kwargs) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _scalars(self, ctx, record: dict) -> None:
        step = int(record["epoch"])
        values = {tag: record.get(key) for key, tag in SCALARS.items()}
        values[f"metric/val_{ctx.metric_name}"] = record.get("val_metric")
        for tag, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(tag, value, global_step=step)

    def _widths(self, ctx, step: int) -> None:
        widths = _widths(ctx.model)
        if not widths:
            return
        for name in ctx.model.hidden_layers():
            self.writer.add_scalar(f"width/{name}", widths[name], global_step=step)
        self.writer.add_text("widths", ", ".join(f"{n} {s}" for n, s in widths.items()), global_step=step)

    def __getstate__(self):  # an open writer does not pickle (a fitted scikit-learn estimator holding this)
        return {**self.__dict__, "writer": None}
